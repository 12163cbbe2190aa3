//! Refunds of provider payments reach the provider: a reversed Flutterwave payment is refunded at
//! Flutterwave (wiremock) exactly once by the refund worker, read back until settled, retried
//! after outages, read back before any resend after a timeout, FAILED with the provider's reason
//! on a refusal; cash orders never reach the provider; `GET /orders/{id}/provider-refund` shows it
//! to the order's tenant. Flutterwave's refund webhook settles a SENT refund at once, from a read
//! back of the refund (never from the webhook body), once.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use payments::refunds::{
    ProviderRefundRecord, ProviderRefundService, ProviderRefundStatus, ProviderRefundStore,
    RefundOutcome, RefundPolicy, RefundReport,
};
use serde_json::{Value, json};
use tiamat_tests::{As, Reply, TestApp};
use wiremock::matchers::{body_json, method, path, query_param};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

use crate::ledger::{Books, balance, books, deposit, meter_wallet, system_balance, verify};
use crate::money::{
    WEBHOOK, count, drain_inbox, impatient_gateway, mount_initialise, post_payment, post_webhook,
    success, transaction, use_flutterwave,
};

const SECRET: &str = "FLWSECK_TEST-refunds-platform-key";
const WEBHOOK_HASH: &str = "refunds-webhook-hash-0123456789";

async fn start(server: &MockServer) -> TestApp {
    let uri = server.uri();
    TestApp::start_with(move |c| use_flutterwave(c, &uri, SECRET, WEBHOOK_HASH)).await
}

/// A payment of `minor` kobo into the organization's wallet through Flutterwave (transaction
/// `tx`), verified and COMPLETED: the order id.
async fn card_paid_order(
    app: &TestApp,
    server: &MockServer,
    b: &Books,
    tx: u64,
    minor: i64,
) -> i64 {
    card_paid_into(app, server, b, b.org_wallet, tx, minor).await
}

/// Like [`card_paid_order`], into `wallet`.
async fn card_paid_into(
    app: &TestApp,
    server: &MockServer,
    b: &Books,
    wallet: i64,
    tx: u64,
    minor: i64,
) -> i64 {
    mount_initialise(server, SECRET).await;
    let r = post_payment(
        app,
        &b.finance,
        json!({"wallet_id": wallet, "amount": minor, "currency": "NGN",
               "redirect_url": "https://ops.example/paid"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let reference = r.body["reference"].as_str().unwrap().to_owned();
    let order = r.body["order_id"].as_i64().unwrap();
    let major = format!("{}.{:02}", minor / 100, minor % 100);
    Mock::given(method("GET"))
        .and(path("/v3/transactions/verify_by_reference"))
        .and(query_param("tx_ref", reference.as_str()))
        .respond_with(transaction(tx, &reference, &major, "NGN"))
        .mount(server)
        .await;
    let v = app
        .post(
            &format!("/api/v1/payments/{reference}/verify"),
            &b.finance,
            json!({}),
        )
        .await;
    assert_eq!(v.status, StatusCode::OK, "{:?}", v.body);
    assert_eq!(v.body["status"], "COMPLETED");
    order
}

/// Refunds the order through the ledger (finance): the reversing order's id.
async fn refund(app: &TestApp, b: &Books, order: i64) -> i64 {
    let r = app
        .post(
            &format!("/api/v1/orders/{order}/refund"),
            &b.finance,
            json!({"reason": "customer asked"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"], "COMPLETED");
    r.body["id"].as_i64().unwrap()
}

async fn provider_refund(app: &TestApp, who: &As, order: i64) -> (StatusCode, Value) {
    let r = app
        .get(&format!("/api/v1/orders/{order}/provider-refund"), who)
        .await;
    (r.status, r.body)
}

async fn pass(service: &ProviderRefundService, at: DateTime<Utc>) -> RefundReport {
    let report = tiamat::refund_worker::run_once(service, at)
        .await
        .expect("refund pass");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report
}

fn refund_answer(id: u64, tx: u64, major: f64, status: &str) -> Value {
    json!({"id": id, "tx_id": tx, "transaction_id": tx, "flw_ref": "URF_1",
           "amount_refunded": major, "status": status})
}

/// The app's refund service with a gateway that gives up after 300 ms (the app's waits 15 s).
fn impatient(app: &TestApp, server: &MockServer, policy: RefundPolicy) -> ProviderRefundService {
    impatient_over(app, Arc::new(app.app.db.clone()), server, policy)
}

/// [`impatient`], over `store`.
fn impatient_over(
    app: &TestApp,
    store: Arc<dyn ProviderRefundStore>,
    server: &MockServer,
    policy: RefundPolicy,
) -> ProviderRefundService {
    let gateway = impatient_gateway(server, SECRET);
    ProviderRefundService::new(
        store,
        payments::MoneyService::new(Arc::new(app.app.db.clone())),
    )
    .with_gateway(Arc::new(gateway))
    .with_policy(policy)
}

/// Flutterwave's call that refunds payment `tx`.
fn refund_post(tx: u64) -> MockBuilder {
    Mock::given(method("POST")).and(path(format!("/v3/transactions/{tx}/refund")))
}

/// Flutterwave accepts refunding ₦100 of payment `tx` (once) as the pending refund `refund_id`.
async fn mount_refund_sent(server: &MockServer, tx: u64, refund_id: u64) {
    refund_post(tx)
        .respond_with(success(refund_answer(refund_id, tx, 100.0, "pending")))
        .expect(1)
        .mount(server)
        .await;
}

/// Flutterwave answers reading back refund `refund_id` (of ₦100 of payment `tx`) `times` times:
/// it is `status`.
async fn mount_read_back(server: &MockServer, refund_id: u64, tx: u64, status: &str, times: u64) {
    Mock::given(method("GET"))
        .and(path(format!("/v3/refunds/{refund_id}")))
        .respond_with(success(refund_answer(refund_id, tx, 100.0, status)))
        .expect(times)
        .mount(server)
        .await;
}

/// Flutterwave answers listing the refunds of payment `tx` `times` times: `refunds`.
async fn mount_refunds_of(server: &MockServer, tx: u64, refunds: Value, times: u64) {
    Mock::given(method("GET"))
        .and(path("/v3/refunds"))
        .and(query_param("id", tx.to_string()))
        .respond_with(success(refunds))
        .expect(times)
        .mount(server)
        .await;
}

/// Refunds `paid` and works its provider refund with a worker that gives up after two
/// attempts, 2 h apart, each left unanswered: the provider refund then (FAILED, if the worker
/// gives up as it should).
async fn refund_after_two_failed_attempts(
    app: &TestApp,
    server: &MockServer,
    b: &Books,
    paid: i64,
) -> Value {
    let reversal = refund(app, b, paid).await;
    let policy = RefundPolicy {
        max_attempts: 2,
        ..RefundPolicy::default()
    };
    let service = impatient(app, server, policy);
    let mut at = Utc::now();
    for _ in 0..2 {
        assert_eq!(pass(&service, at).await.retried, 1);
        at += chrono::Duration::hours(2);
    }
    assert_eq!(pass(&service, at).await.failed, 1);
    provider_refund(app, &b.finance, reversal).await.1
}

/// How many `action` audit events order `order` has.
async fn audited(app: &TestApp, order: i64, action: &str) -> i64 {
    count(
        app,
        &format!(
            "SELECT count(*) AS n FROM audit_events WHERE resource_id = {order}
             AND action = '{action}'"
        ),
    )
    .await
}

#[actix_web::test]
async fn a_card_payment_refund_is_sent_once_and_completed_after_read_back() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, "CardRefund").await;
    let paid = card_paid_order(&app, &server, &b, 7001, 10_000).await;
    assert_eq!(balance(&app, b.org_wallet).await, 10_000);
    refund_post(7001)
        .and(body_json(
            json!({"amount": 100.0, "comments": "Refund of a reversed order"}),
        ))
        .respond_with(success(refund_answer(880001, 7001, 100.0, "pending")))
        .expect(1)
        .mount(&server)
        .await;
    mount_read_back(&server, 880001, 7001, "completed", 1).await;

    let reversal = refund(&app, &b, paid).await;
    // The ledger moved the money back to Flutterwave's system wallet at once ...
    assert_eq!(balance(&app, b.org_wallet).await, 0);
    assert_eq!(system_balance(&app, "FLUTTERWAVE").await, 0);
    // ... and the provider refund is owed, in the same transaction.
    let (status, body) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["order_id"], reversal);
    assert_eq!(body["original_order_id"], paid);
    assert_eq!(body["provider"], "FLUTTERWAVE");
    assert_eq!(body["provider_transaction_id"], "7001");
    assert_eq!(body["amount"], 10_000);
    assert_eq!(body["currency"], "NGN");
    assert_eq!(body["provider_refund_id"], Value::Null);

    let service = app.app.state.services.provider_refunds.clone();
    let now = Utc::now();
    let report = pass(&service, now).await;
    assert_eq!(report.sent, 1, "{report:?}");
    let (_, body) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(body["status"], "SENT");
    assert_eq!(body["provider_refund_id"], "880001");
    assert_eq!(body["attempts"], 1);
    // Not read back before its time, and never sent again.
    assert_eq!(pass(&service, now).await, RefundReport::default());
    let report = pass(&service, now + chrono::Duration::minutes(11)).await;
    assert_eq!(report.completed, 1, "{report:?}");
    let (_, body) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(body["status"], "COMPLETED");
    assert_eq!(body["failure_reason"], Value::Null);
    assert!(body["completed_at"].is_string());
    assert_eq!(body["next_attempt_at"], Value::Null);
    assert_eq!(
        pass(&service, now + chrono::Duration::days(30)).await,
        RefundReport::default()
    );
    // Every status change is audited on the reversing order.
    assert_eq!(audits(&app, reversal).await, 3);
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}

#[actix_web::test]
async fn a_timed_out_refund_is_read_back_and_never_sent_twice() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, "Timeout").await;
    let paid = card_paid_order(&app, &server, &b, 7002, 10_000).await;
    // Flutterwave does the refund but answers after the client gave up.
    refund_post(7002)
        .respond_with(
            success(refund_answer(880002, 7002, 100.0, "pending"))
                .set_delay(Duration::from_secs(2)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let found = refund_answer(880002, 7002, 100.0, "pending");
    mount_refunds_of(&server, 7002, json!([found]), 1).await;
    mount_read_back(&server, 880002, 7002, "completed", 1).await;
    let reversal = refund(&app, &b, paid).await;
    let service = impatient(&app, &server, RefundPolicy::default());
    let now = Utc::now();
    let report = pass(&service, now).await;
    assert_eq!(report.retried, 1, "{report:?}");
    let (_, body) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["attempts"], 1);
    assert!(
        body["last_error"].as_str().unwrap().contains("timed out"),
        "{body:?}"
    );
    // Backing off: not due 10 s later.
    assert_eq!(
        pass(&service, now + chrono::Duration::seconds(10)).await,
        RefundReport::default()
    );
    // The next attempt reads the payment's refunds back and adopts the one it finds.
    let later = now + chrono::Duration::minutes(1);
    assert_eq!(pass(&service, later).await.sent, 1);
    let (_, body) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(body["status"], "SENT");
    assert_eq!(body["provider_refund_id"], "880002");
    assert_eq!(pass(&service, later).await.completed, 1);
    let (_, body) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(body["status"], "COMPLETED");
    // The expectations (one POST) are checked when the server drops.
}

#[actix_web::test]
async fn an_outage_is_retried_after_a_read_back_and_refused_refunds_fail_visibly() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, "Outage").await;
    let paid = card_paid_order(&app, &server, &b, 7003, 25_050).await;
    let refused = card_paid_order(&app, &server, &b, 7004, 5_000).await;
    refund_post(7003)
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    refund_post(7003)
        .and(body_json(
            json!({"amount": 250.5, "comments": "Refund of a reversed order"}),
        ))
        .respond_with(success(refund_answer(880003, 7003, 250.5, "completed")))
        .expect(1)
        .mount(&server)
        .await;
    mount_refunds_of(&server, 7003, json!([]), 1).await;
    refund_post(7004)
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": "error", "message": "Refund window has elapsed for this transaction",
            "data": null
        })))
        .expect(1)
        .mount(&server)
        .await;
    let first = refund(&app, &b, paid).await;
    let second = refund(&app, &b, refused).await;
    let service = app.app.state.services.provider_refunds.clone();
    let now = Utc::now();
    let report = pass(&service, now).await;
    assert_eq!((report.retried, report.failed), (1, 1), "{report:?}");

    let (_, body) = provider_refund(&app, &b.finance, first).await;
    assert_eq!(body["status"], "PENDING");
    assert!(
        body["last_error"].as_str().unwrap().contains("500"),
        "{body:?}"
    );
    let (_, body) = provider_refund(&app, &b.finance, second).await;
    assert_eq!(body["status"], "FAILED");
    assert!(
        body["failure_reason"]
            .as_str()
            .unwrap()
            .contains("Refund window has elapsed"),
        "{body:?}"
    );
    assert_eq!(body["provider_refund_id"], Value::Null);
    // A failed provider refund leaves the ledger's reversal in place (an operator settles it).
    let order = app
        .get(&format!("/api/v1/orders/{second}"), &b.finance)
        .await;
    assert_eq!(order.body["status"], "COMPLETED");
    assert_eq!(audited(&app, second, "provider_refund.failed").await, 1);

    // After the backoff: read back (nothing there: a 500 did nothing), sent once more.
    let report = pass(&service, now + chrono::Duration::minutes(1)).await;
    assert_eq!(report.sent, 1, "{report:?}");
    let (_, body) = provider_refund(&app, &b.finance, first).await;
    assert_eq!(body["status"], "SENT");
    assert_eq!(body["provider_refund_id"], "880003");
    assert_eq!(body["attempts"], 2);
    assert_eq!(body["last_error"], Value::Null);
}

#[actix_web::test]
async fn a_refund_the_provider_never_answers_fails_after_the_capped_attempts() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, "NoAnswer").await;
    let paid = card_paid_order(&app, &server, &b, 7005, 10_000).await;
    refund_post(7005)
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&server)
        .await;
    mount_refunds_of(&server, 7005, json!([]), 2).await;
    let body = refund_after_two_failed_attempts(&app, &server, &b, paid).await;
    assert_eq!(body["status"], "FAILED");
    let reason = body["failure_reason"].as_str().unwrap();
    assert!(reason.contains("did not answer 2 attempts"), "{reason}");
    assert!(reason.contains("503"), "{reason}");
}

#[actix_web::test]
async fn cash_refunds_never_reach_the_provider_and_the_route_keeps_to_its_tenant() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, "Cash").await;
    let other = books(&app, "OtherTenant").await;
    let cash = deposit(&app, b.org_wallet, 20_000).await;
    let cash_reversal = refund(&app, &b, cash["id"].as_i64().unwrap()).await;
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM provider_refunds").await,
        0
    );
    let (status, _) = provider_refund(&app, &b.finance, cash_reversal).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let service = app.app.state.services.provider_refunds.clone();
    assert_eq!(
        pass(&service, Utc::now() + chrono::Duration::days(1)).await,
        RefundReport::default()
    );
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty(),
        "a cash refund called the provider"
    );

    // Access rules of GET /orders/{id}/provider-refund.
    let paid = card_paid_order(&app, &server, &b, 7006, 10_000).await;
    let reversal = refund(&app, &b, paid).await;
    let url = format!("/api/v1/orders/{reversal}/provider-refund");
    assert_eq!(
        app.get(&url, &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (_, tech) = app.member(b.org, "TECH").await;
    let r = app.get(&url, &tech).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    let r = app.get(&url, &other.finance).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    // A customer whose wallets the order does not touch does not see it either.
    assert_eq!(
        app.get(&url, &b.customer_token).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/v1/orders/abc/provider-refund", &b.finance)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // The original payment is not the reversing order: it has no provider refund.
    assert_eq!(
        provider_refund(&app, &b.finance, paid).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = provider_refund(&app, &b.manager, reversal).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(body["status"], "PENDING");
    let (status, _) = provider_refund(&app, &app.root, reversal).await;
    assert_eq!(status, StatusCode::OK);
    let doc = app.get("/api/v1/openapi.json", &As::Nobody).await;
    assert!(
        doc.body["paths"]["/api/v1/orders/{id}/provider-refund"]["get"].is_object(),
        "not in the OpenAPI document"
    );
}

#[actix_web::test]
async fn racing_workers_send_a_refund_once() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, "Race").await;
    let paid = card_paid_order(&app, &server, &b, 7007, 10_000).await;
    mount_refund_sent(&server, 7007, 880007).await;
    let reversal = refund(&app, &b, paid).await;
    let service = app.app.state.services.provider_refunds.clone();
    let now = Utc::now();
    let (a, b2, c) = tokio::join!(
        pass(&service, now),
        pass(&service, now),
        pass(&service, now)
    );
    assert_eq!(a.sent + b2.sent + c.sent, 1, "{a:?} {b2:?} {c:?}");
    let (_, body) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(body["status"], "SENT");
    assert_eq!(body["attempts"], 1);
}

/// The store of a worker that stalls past its lease right after claiming: before its (now
/// stale) refunds are handed over, their lease runs out and `rival`, a second worker, claims and
/// works them.
struct StalledClaim {
    db: store::Db,
    url: String,
    rival: ProviderRefundService,
    rival_report: tokio::sync::Mutex<Option<RefundReport>>,
}

#[async_trait::async_trait]
impl ProviderRefundStore for StalledClaim {
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<ProviderRefundRecord>, kernel::DomainError> {
        let claimed = self.db.claim_due(now, lease, limit).await?;
        // The lease runs out (as if 300 s of slow calls had passed) ...
        let mut conn = AsyncPgConnection::establish(&self.url).await.unwrap();
        diesel::sql_query(
            "UPDATE provider_refunds SET next_attempt_at = next_attempt_at - interval '10 minutes'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        // ... and another worker claims the refunds and works them meanwhile.
        let report = self.rival.run_once(now).await?;
        *self.rival_report.lock().await = Some(report);
        Ok(claimed)
    }

    async fn retake(
        &self,
        id: i64,
        attempts: i32,
        lease: Duration,
    ) -> Result<bool, kernel::DomainError> {
        self.db.retake(id, attempts, lease).await
    }

    async fn record_outcome(
        &self,
        id: i64,
        from: ProviderRefundStatus,
        attempts: i32,
        outcome: RefundOutcome,
    ) -> Result<bool, kernel::DomainError> {
        self.db.record_outcome(id, from, attempts, outcome).await
    }

    async fn by_provider_refund_id(
        &self,
        provider: &str,
        provider_refund_id: &str,
    ) -> Result<Option<ProviderRefundRecord>, kernel::DomainError> {
        self.db
            .by_provider_refund_id(provider, provider_refund_id)
            .await
    }

    async fn for_payment(
        &self,
        provider: &str,
        provider_transaction_id: &str,
    ) -> Result<Vec<ProviderRefundRecord>, kernel::DomainError> {
        self.db.for_payment(provider, provider_transaction_id).await
    }

    async fn for_order(
        &self,
        scope: kernel::TenantScope,
        order: kernel::OrderId,
    ) -> Result<Option<ProviderRefundRecord>, kernel::DomainError> {
        self.db.for_order(scope, order).await
    }
}

#[actix_web::test]
async fn a_worker_whose_lease_ran_out_does_not_send_the_refund_another_worker_sent() {
    stalled_worker_sends_nothing(7011, false).await;
}

#[actix_web::test]
async fn a_worker_whose_lease_ran_out_does_not_resend_a_refund_another_worker_left_pending() {
    stalled_worker_sends_nothing(7012, true).await;
}

/// Worker A claims a refund (attempts = 1) and stalls past its lease; worker B claims it again
/// (attempts = 2), reads back, finds nothing and sends it: the provider answers (SENT), or not in
/// time though the refund reached it (PENDING, only the attempt count tells the claims apart).
/// Then A reaches the refund: its copy needs no read-back, and only the re-take keeps it from
/// sending a second refund. Exactly one POST reaches the provider.
async fn stalled_worker_sends_nothing(tx: u64, rival_times_out: bool) {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, &format!("Lease{tx}")).await;
    let paid = card_paid_order(&app, &server, &b, tx, 10_000).await;
    let refund_id = 880_000 + tx;
    let answer = success(refund_answer(refund_id, tx, 100.0, "pending"));
    refund_post(tx)
        .respond_with(match rival_times_out {
            true => answer.set_delay(Duration::from_secs(1)),
            false => answer,
        })
        .expect(1)
        .mount(&server)
        .await;
    // B's claim is the second: it reads back first and finds nothing sent.
    mount_refunds_of(&server, tx, json!([]), 1).await;
    let reversal = refund(&app, &b, paid).await;
    let stalled = Arc::new(StalledClaim {
        db: app.app.db.clone(),
        url: app.db.url.clone(),
        rival: impatient(&app, &server, RefundPolicy::default()),
        rival_report: tokio::sync::Mutex::new(None),
    });
    let worker = impatient_over(&app, stalled.clone(), &server, RefundPolicy::default());

    let report = pass(&worker, Utc::now()).await;
    let rival = stalled
        .rival_report
        .lock()
        .await
        .clone()
        .expect("the rival ran");
    let (_, body) = provider_refund(&app, &b.finance, reversal).await;
    let id = count(
        &app,
        &format!("SELECT id AS n FROM provider_refunds WHERE order_id = {reversal}"),
    )
    .await;
    let stale_write = if rival_times_out {
        assert_eq!(rival.retried, 1, "{rival:?}");
        assert_eq!(body["status"], "PENDING", "{body:?}");
        app.app.db.record_outcome(
            id,
            ProviderRefundStatus::Pending,
            1,
            RefundOutcome::Failed {
                reason: "stale".into(),
            },
        )
    } else {
        assert_eq!(rival.sent, 1, "{rival:?}");
        assert_eq!(body["status"], "SENT", "{body:?}");
        assert_eq!(body["provider_refund_id"], refund_id.to_string());
        app.app.db.record_outcome(
            id,
            ProviderRefundStatus::Sent,
            1,
            RefundOutcome::Completed {
                provider_refund_id: refund_id.to_string(),
            },
        )
    };
    assert_eq!(body["attempts"], 2, "{body:?}");
    assert_eq!(
        report.sent + report.retried + report.failed,
        0,
        "{report:?}"
    );
    assert_eq!(report.lost_claims, 1, "{report:?}");
    // An outcome from the stale claim is refused too.
    assert!(!stale_write.await.unwrap());
    let (_, after) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(after["status"], body["status"], "{after:?}");
    // The expectations (one POST, one read-back) are checked when the server drops.
}

#[actix_web::test]
async fn refunding_an_undelivered_card_paid_purchase_refunds_the_card() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, "Purchase").await;
    let (meter, wallet) = meter_wallet(&app, &b, "47009990001").await;
    let paid = card_paid_into(&app, &server, &b, wallet, 7008, 10_000).await;
    // A purchase whose energy never arrived (its delivery failed).
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(format!(
        "INSERT INTO meter_purchases (organization_id, order_id, meter_id, amount_minor, currency,
             energy_wh, status, failure_reason, payer_wallet_id, meter_wallet_id)
         SELECT organization_id, id, {meter}, amount_minor, currency, 0, 'FAILED',
                'delivery failed', sender_wallet_id, receiver_wallet_id
         FROM orders WHERE id = {paid}"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let purchase = count(
        &app,
        &format!("SELECT id AS n FROM meter_purchases WHERE order_id = {paid}"),
    )
    .await;
    mount_refund_sent(&server, 7008, 880008).await;
    let r = app
        .post(
            &format!("/api/v1/purchases/{purchase}/refund"),
            &b.finance,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "REFUNDED");
    let reversal = r.body["refund_order_id"].as_i64().unwrap();
    let (status, body) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(body["status"], "PENDING");
    assert_eq!(body["original_order_id"], paid);
    let service = app.app.state.services.provider_refunds.clone();
    assert_eq!(pass(&service, Utc::now()).await.sent, 1);
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}

#[actix_web::test]
async fn a_refund_that_cannot_be_read_back_is_never_resent_and_fails_for_an_operator() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, "Unknowable").await;
    let paid = card_paid_order(&app, &server, &b, 7009, 10_000).await;
    refund_post(7009)
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/refunds"))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&server)
        .await;
    let body = refund_after_two_failed_attempts(&app, &server, &b, paid).await;
    assert_eq!(body["status"], "FAILED");
    let reason = body["failure_reason"].as_str().unwrap();
    assert!(reason.contains("unknown"), "{reason}");
}

/// Delivers a Flutterwave webhook with `verif-hash` (`None`: unsigned).
async fn refund_webhook(app: &TestApp, body: &Value, verif_hash: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = verif_hash.map(|h| ("verif-hash", h)).into_iter().collect();
    post_webhook(app, WEBHOOK, &body.to_string(), &headers).await
}

/// A card payment `tx` refunded and its provider refund SENT as `refund_id`: the reversal.
async fn sent_refund(
    app: &TestApp,
    server: &MockServer,
    b: &Books,
    tx: u64,
    refund_id: u64,
) -> i64 {
    let paid = card_paid_order(app, server, b, tx, 10_000).await;
    mount_refund_sent(server, tx, refund_id).await;
    let reversal = refund(app, b, paid).await;
    let service = app.app.state.services.provider_refunds.clone();
    assert_eq!(pass(&service, Utc::now()).await.sent, 1);
    let (_, body) = provider_refund(app, &b.finance, reversal).await;
    assert_eq!(body["status"], "SENT");
    reversal
}

async fn audits(app: &TestApp, reversal: i64) -> i64 {
    count(
        app,
        &format!(
            "SELECT count(*) AS n FROM audit_events WHERE resource_type = 'order'
             AND resource_id = {reversal} AND action LIKE 'provider_refund.%'"
        ),
    )
    .await
}

async fn unprocessed_events(app: &TestApp) -> i64 {
    count(
        app,
        "SELECT count(*) AS n FROM inbound_events WHERE processed_at IS NULL",
    )
    .await
}

#[actix_web::test]
async fn a_refund_webhook_completes_a_sent_refund_at_once_from_the_read_back_and_only_once() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, "RefundHook").await;
    let reversal = sent_refund(&app, &server, &b, 7011, 880011).await;
    assert_eq!(audits(&app, reversal).await, 2);
    // Read back exactly once, though the webhook comes three times.
    mount_read_back(&server, 880011, 7011, "completed", 1).await;
    let event = json!({"event": "refund.completed",
                       "data": {"id": 880011, "tx_id": 7011, "amount_refunded": 100,
                                "currency": "NGN", "status": "completed"}});
    let r = refund_webhook(&app, &event, Some(WEBHOOK_HASH)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"stored": true, "duplicate": false}));
    drain_inbox(&app).await;
    // COMPLETED now, without waiting for the 10-minute poll.
    let (_, body) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(body["status"], "COMPLETED", "{body:?}");
    assert_eq!(body["provider_refund_id"], "880011");
    assert!(body["completed_at"].is_string());
    assert_eq!(body["next_attempt_at"], Value::Null);
    assert_eq!(audits(&app, reversal).await, 3);
    assert_eq!(
        audited(&app, reversal, "provider_refund.completed").await,
        1
    );
    assert_eq!(unprocessed_events(&app).await, 0);

    // The same delivery again is a duplicate; a redelivery in another shape is processed but
    // finds the refund settled: nothing changes, nothing is read back.
    let r = refund_webhook(&app, &event, Some(WEBHOOK_HASH)).await;
    assert_eq!(r.body, json!({"stored": false, "duplicate": true}));
    let reshaped = json!({"event": "refund.completed",
                          "data": {"id": "880011", "status": "completed-mpgs"}});
    let r = refund_webhook(&app, &reshaped, Some(WEBHOOK_HASH)).await;
    assert_eq!(r.body, json!({"stored": true, "duplicate": false}));
    drain_inbox(&app).await;
    assert_eq!(unprocessed_events(&app).await, 0);
    assert_eq!(audits(&app, reversal).await, 3);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM inbound_events WHERE outcome LIKE '%already COMPLETED%'"
        )
        .await,
        1
    );
    // The poll has nothing left to do.
    let service = app.app.state.services.provider_refunds.clone();
    assert_eq!(
        pass(&service, Utc::now() + chrono::Duration::days(1)).await,
        RefundReport::default()
    );
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}

#[actix_web::test]
async fn a_refund_webhook_body_is_not_trusted_the_provider_api_decides() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, "RefundHookFailed").await;
    let reversal = sent_refund(&app, &server, &b, 7012, 880012).await;
    mount_read_back(&server, 880012, 7012, "failed", 1).await;
    // No refund id in the body: found by the payment and the amount.
    let event = json!({"event": "refund.completed",
                       "data": {"transaction_id": 7012, "amount": "100.00",
                                "currency": "NGN", "status": "completed"}});
    let r = refund_webhook(&app, &event, Some(WEBHOOK_HASH)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    drain_inbox(&app).await;
    let (_, body) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(body["status"], "FAILED", "{body:?}");
    assert!(
        body["failure_reason"]
            .as_str()
            .unwrap()
            .contains("Flutterwave reports the refund failed"),
        "{body:?}"
    );
    assert_eq!(audited(&app, reversal, "provider_refund.failed").await, 1);
    // The ledger's reversal stands (an operator settles a failed provider refund).
    let order = app
        .get(&format!("/api/v1/orders/{reversal}"), &b.finance)
        .await;
    assert_eq!(order.body["status"], "COMPLETED");
}

#[actix_web::test]
async fn unknown_refunds_forged_webhooks_and_pending_read_backs_change_nothing() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, "RefundHookUnknown").await;
    let reversal = sent_refund(&app, &server, &b, 7013, 880013).await;
    mount_read_back(&server, 880013, 7013, "pending", 1).await;
    // An unknown refund id is never read back.
    mount_read_back(&server, 999999, 7013, "failed", 0).await;
    let before = audits(&app, reversal).await;

    // A forged signature is refused before anything is stored.
    let forged = json!({"event": "refund.completed", "data": {"id": 880013, "status": "failed"}});
    let r = refund_webhook(&app, &forged, Some("not-the-hash-0123456789")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    let r = refund_webhook(&app, &forged, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM inbound_events").await,
        0
    );

    // Unknown: by id, and by a payment/amount of no refund of ours.
    for event in [
        json!({"event": "refund.completed", "data": {"id": 999999, "status": "completed"}}),
        json!({"event": "refund.completed",
               "data": {"tx_id": 7013, "amount_refunded": 55, "currency": "NGN"}}),
    ] {
        let r = refund_webhook(&app, &event, Some(WEBHOOK_HASH)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    drain_inbox(&app).await;
    assert_eq!(unprocessed_events(&app).await, 0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM inbound_events WHERE outcome LIKE '%no refund of ours%'"
        )
        .await,
        2
    );
    let (_, body) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(body["status"], "SENT");
    assert_eq!(audits(&app, reversal).await, before);

    // Ours, but the provider still has it pending: it stays SENT for the poll.
    let ours = json!({"event": "refund.completed", "data": {"id": 880013, "status": "completed"}});
    refund_webhook(&app, &ours, Some(WEBHOOK_HASH)).await;
    drain_inbox(&app).await;
    assert_eq!(unprocessed_events(&app).await, 0);
    let (_, body) = provider_refund(&app, &b.finance, reversal).await;
    assert_eq!(body["status"], "SENT", "{body:?}");
    assert!(body["next_attempt_at"].is_string());
    assert_eq!(audits(&app, reversal).await, before);
}
