//! Flutterwave end to end, with a wiremock Flutterwave: webhook authentication and storage, the
//! worker's re-verification and exactly-once crediting under races, mismatches, the public meter
//! flow (status, cancel), authenticated payments and per-organization credentials.

use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use base64::Engine as _;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;
use serde_json::{Value, json};
use tiamat_tests::{As, Reply, TestApp};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::ledger::{Books, balance, books, deposit, meter_wallet, verify};
use crate::money::{
    WEBHOOK, approve_payout, count, draft_payout, drain_inbox, mount_initialise, mount_transfer,
    post_payment, post_webhook, report_revenue, this_month, transaction, transfer_event,
    use_flutterwave,
};

const PLATFORM_SECRET: &str = "FLWSECK_TEST-platform-secret-key";
const WEBHOOK_HASH: &str = "platform-webhook-hash-0123456789";
const ORG_SECRET: &str = "FLWSECK_TEST-organization-own-key";
const ORG_HASH: &str = "organization-webhook-hash-98765";

async fn start(server: &MockServer) -> TestApp {
    let uri = server.uri();
    TestApp::start_with(move |c| {
        use_flutterwave(c, &uri, PLATFORM_SECRET, WEBHOOK_HASH);
        c.payments.credentials_key = Some(SecretString::from(
            base64::engine::general_purpose::STANDARD.encode([42u8; 32]),
        ));
    })
    .await
}

/// Marks `meter` commissioned (`true`) or not.
async fn set_commissioned(app: &TestApp, meter: i64, commissioned: bool) {
    let at = if commissioned { "now()" } else { "NULL" };
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(format!(
        "UPDATE meters SET commissioned_at = {at} WHERE id = {meter}"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

/// Delivers `body` to the platform's webhook, signed with the platform's hash.
async fn platform_webhook(app: &TestApp, body: &str) -> Reply {
    post_webhook(app, WEBHOOK, body, &[("verif-hash", WEBHOOK_HASH)]).await
}

/// Flutterwave answers verifying transaction `id` for the account with `secret`.
async fn mount_verify(server: &MockServer, secret: &str, id: u64, answer: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(format!("/v3/transactions/{id}/verify")))
        .and(header("authorization", format!("Bearer {secret}").as_str()))
        .respond_with(answer)
        .mount(server)
        .await;
}

fn charge_event(id: u64, tx_ref: &str, amount: &str) -> String {
    format!(
        r#"{{"event":"charge.completed","data":{{"id":{id},"tx_ref":"{tx_ref}","amount":{amount},"currency":"NGN","status":"successful"}},"event.type":"CARD_TRANSACTION"}}"#
    )
}

/// A commissioned meter on the books' grid: (meter id, wallet id).
async fn commissioned_meter(app: &TestApp, b: &Books, serial: &str) -> (i64, i64) {
    let (meter, wallet) = meter_wallet(app, b, serial).await;
    set_commissioned(app, meter, true).await;
    (meter, wallet)
}

/// Starts a public payment to the meter `serial` with `body`.
async fn post_public_payment(app: &TestApp, serial: &str, body: Value) -> Reply {
    app.post(
        &format!("/api/v1/public/meters/{serial}/payments"),
        &As::Nobody,
        body,
    )
    .await
}

async fn start_public_payment(app: &TestApp, serial: &str, amount: i64) -> Reply {
    post_public_payment(
        app,
        serial,
        json!({"amount": amount, "currency": "NGN", "redirect_url": "https://pay.example/back",
               "customer_email": "payer@example.com"}),
    )
    .await
}

/// The public status of the payment `reference`.
async fn public_status(app: &TestApp, reference: &str) -> Reply {
    app.get(&format!("/api/v1/public/payments/{reference}"), &As::Nobody)
        .await
}

/// Cancels the payment `reference` through the public route.
async fn public_cancel(app: &TestApp, reference: &str) -> Reply {
    app.post(
        &format!("/api/v1/public/payments/{reference}/cancel"),
        &As::Nobody,
        json!({}),
    )
    .await
}

#[actix_web::test]
async fn forged_or_missing_webhook_signatures_are_401_and_store_nothing() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let body = charge_event(1001, "ref-x", "100");
    let hmac_of_other = flutterwave::webhook::signature("not-the-secret", body.as_bytes());
    for headers in [
        vec![],
        vec![("verif-hash", "wrong-hash-0123456789")],
        vec![("verif-hash", "")],
        vec![("flutterwave-signature", hmac_of_other.as_str())],
        // The hash itself is not a signature.
        vec![("flutterwave-signature", WEBHOOK_HASH)],
    ] {
        let r = post_webhook(&app, WEBHOOK, &body, &headers).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{headers:?}: {:?}",
            r.body
        );
        assert_eq!(r.body["status"], 401);
    }
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM inbound_events").await,
        0
    );

    // A valid verif-hash is stored once; the same event again is a duplicate.
    let r = platform_webhook(&app, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"stored": true, "duplicate": false}));
    let r = platform_webhook(&app, &body).await;
    assert_eq!(r.body, json!({"stored": false, "duplicate": true}));
    // The HMAC signature of the raw body is accepted too.
    let other = charge_event(1002, "ref-y", "100");
    let signed = flutterwave::webhook::signature(WEBHOOK_HASH, other.as_bytes());
    let r = post_webhook(
        &app,
        WEBHOOK,
        &other,
        &[("flutterwave-signature", signed.as_str())],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM inbound_events WHERE source = 'flutterwave'"
        )
        .await,
        2
    );
    // Authentic but not JSON: 400, stored nowhere.
    let r = platform_webhook(&app, "nonsense").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM inbound_events").await,
        2
    );
}

#[actix_web::test]
async fn one_payment_raced_by_webhooks_status_checks_and_verifications_is_credited_once() {
    let server = MockServer::start().await;
    mount_initialise(&server, PLATFORM_SECRET).await;
    let app = start(&server).await;
    let b = books(&app, "Race").await;
    let (_, wallet) = commissioned_meter(&app, &b, "47001112223").await;
    let r = start_public_payment(&app, "47001112223", 5_000).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        r.body["link"],
        "https://checkout.flutterwave.com/v3/hosted/pay/test"
    );
    assert_eq!(r.body["status"], "INITIALISED");
    let reference = r.body["reference"].as_str().unwrap().to_owned();
    assert_eq!(reference.len(), 36, "an unguessable UUID reference");

    let paid = transaction(777001, &reference, "50.00", "NGN");
    mount_verify(&server, PLATFORM_SECRET, 777001, paid).await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/verify_by_reference"))
        .and(query_param("tx_ref", reference.as_str()))
        .respond_with(transaction(777001, &reference, "50", "NGN"))
        .mount(&server)
        .await;

    // The webhook body claims far more than was paid: only the API's answer counts.
    let body = charge_event(777001, &reference, "5000000");
    let app = std::rc::Rc::new(app);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let app = app.clone();
        let body = body.clone();
        let reference = reference.clone();
        let finance = b.finance.clone();
        tasks.push(actix_web::rt::spawn(async move {
            let hook = platform_webhook(&app, &body).await;
            assert_eq!(hook.status, StatusCode::OK, "{:?}", hook.body);
            let check = if i % 2 == 0 {
                public_status(&app, &reference).await
            } else {
                app.post(
                    &format!("/api/v1/payments/{reference}/verify"),
                    &finance,
                    json!({}),
                )
                .await
            };
            assert_eq!(check.status, StatusCode::OK, "{:?}", check.body);
            drain_inbox(&app).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drain_inbox(&app).await;
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM inbound_events WHERE source = 'flutterwave'"
        )
        .await,
        1,
        "ten deliveries of one event are stored once"
    );
    assert_eq!(balance(&app, wallet).await, 5_000);
    assert_eq!(
        count(
            &app,
            &format!("SELECT count(*) AS n FROM ledger_entries WHERE wallet_id = {wallet}")
        )
        .await,
        1
    );
    let s = public_status(&app, &reference).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(
        (s.body["status"].as_str(), s.body["amount"].as_i64()),
        (Some("COMPLETED"), Some(5_000))
    );
    let processed = count(
        &app,
        "SELECT count(*) AS n FROM inbound_events WHERE source = 'flutterwave' AND processed_at IS NOT NULL AND outcome <> 'failed'",
    )
    .await;
    assert_eq!(processed, 1);
    // Completed payments cannot be cancelled.
    let c = public_cancel(&app, &reference).await;
    assert_eq!(c.status, StatusCode::CONFLICT, "{:?}", c.body);
}

#[actix_web::test]
async fn amount_or_currency_mismatch_fails_the_order_and_credits_nothing() {
    let server = MockServer::start().await;
    mount_initialise(&server, PLATFORM_SECRET).await;
    let app = start(&server).await;
    let b = books(&app, "Mismatch").await;
    let (_, wallet) = commissioned_meter(&app, &b, "47002223334").await;
    for (i, (amount, currency)) in [("40.00", "NGN"), ("50.00", "USD")].into_iter().enumerate() {
        let r = start_public_payment(&app, "47002223334", 5_000).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let reference = r.body["reference"].as_str().unwrap().to_owned();
        let id = 880_000 + i as u64;
        let answer = transaction(id, &reference, amount, currency);
        mount_verify(&server, PLATFORM_SECRET, id, answer).await;
        let body = charge_event(id, &reference, "50");
        let hook = platform_webhook(&app, &body).await;
        assert_eq!(hook.status, StatusCode::OK);
        drain_inbox(&app).await;
        let s = public_status(&app, &reference).await;
        assert_eq!(
            s.body["status"], "FAILED",
            "{amount} {currency}: {:?}",
            s.body
        );
    }
    assert_eq!(balance(&app, wallet).await, 0);
}

#[actix_web::test]
async fn public_meter_payments_validate_strictly_and_cancel_only_initialised() {
    let server = MockServer::start().await;
    mount_initialise(&server, PLATFORM_SECRET).await;
    let app = start(&server).await;
    let b = books(&app, "Public").await;
    let (meter, _) = commissioned_meter(&app, &b, "47003334445").await;

    let bad = post_public_payment(
        &app,
        "47003334445",
        json!({"amount": 0, "redirect_url": "javascript:alert(1)", "customer_email": "nope"}),
    )
    .await;
    assert_eq!(
        bad.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.body
    );
    let fields: Vec<&str> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["amount", "customer_email", "redirect_url"]);
    let unknown_field = post_public_payment(
        &app,
        "47003334445",
        json!({"amount": 100, "redirect_url": "https://x.example", "order_status": "COMPLETED"}),
    )
    .await;
    // Unknown fields (mass assignment) are refused.
    assert_eq!(
        unknown_field.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        unknown_field.body
    );
    assert_eq!(unknown_field.body["errors"][0]["field"], "order_status");
    let r = start_public_payment(&app, "99999999999", 100).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    let r = start_public_payment(&app, "bad%20serial", 100).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    // Installed but not commissioned.
    set_commissioned(&app, meter, false).await;
    let r = start_public_payment(&app, "47003334445", 100).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    set_commissioned(&app, meter, true).await;
    let usd = post_public_payment(
        &app,
        "47003334445",
        json!({"amount": 100, "currency": "USD", "redirect_url": "https://x.example"}),
    )
    .await;
    assert_eq!(
        usd.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        usd.body
    );

    let r = start_public_payment(&app, "47003334445", 2_500).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["grid_name"], "Public grid");
    let reference = r.body["reference"].as_str().unwrap().to_owned();
    // Nothing paid yet: Flutterwave does not know the reference.
    Mock::given(method("GET"))
        .and(path("/v3/transactions/verify_by_reference"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"status": "error", "message": "No transaction was found for this id", "data": null}),
        ))
        .mount(&server)
        .await;
    let s = public_status(&app, &reference).await;
    assert_eq!(s.status, StatusCode::OK, "{:?}", s.body);
    assert_eq!(
        (s.body["status"].as_str(), s.body["amount"].as_i64()),
        (Some("INITIALISED"), Some(2_500))
    );
    let c = public_cancel(&app, &reference).await;
    assert_eq!(c.status, StatusCode::OK, "{:?}", c.body);
    assert_eq!(c.body["status"], "CANCELLED");
    let again = public_cancel(&app, &reference).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{:?}", again.body);
    for unknown in ["0b5e6c2a-0000-4000-8000-000000000000", "1"] {
        let s = public_status(&app, unknown).await;
        assert_eq!(s.status, StatusCode::NOT_FOUND, "{unknown}");
        let c = public_cancel(&app, unknown).await;
        assert_eq!(c.status, StatusCode::NOT_FOUND, "{unknown}");
    }
}

#[actix_web::test]
async fn public_payments_answer_503_without_a_provider() {
    let app = TestApp::start().await;
    let b = books(&app, "NoProvider").await;
    commissioned_meter(&app, &b, "47004445556").await;
    let r = start_public_payment(&app, "47004445556", 100).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(count(&app, "SELECT count(*) AS n FROM orders").await, 0);
    let r = platform_webhook(&app, &charge_event(1, "r", "1")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[actix_web::test]
async fn authenticated_payments_check_roles_tenants_and_idempotency() {
    let server = MockServer::start().await;
    mount_initialise(&server, PLATFORM_SECRET).await;
    let app = start(&server).await;
    let b = books(&app, "Auth").await;
    let other = books(&app, "Other").await;
    let body = |wallet: i64| {
        json!({"wallet_id": wallet, "amount": 10_000, "currency": "NGN",
               "redirect_url": "https://ops.example/paid"})
    };
    let r = post_payment(&app, &As::Nobody, body(b.org_wallet)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let (_, developer) = app.member(b.org, "DEVELOPER").await;
    let r = post_payment(&app, &developer, body(b.org_wallet)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = post_payment(&app, &b.finance, body(other.org_wallet)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
    let r = post_payment(&app, &b.finance, json!({"wallet_id": b.org_wallet, "amount": -5, "currency": "NGN", "redirect_url": "ftp://x"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    // A customer pays into its own connection, not into someone else's wallet.
    let r = post_payment(&app, &b.customer_token, body(b.connection_wallet)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = post_payment(&app, &b.customer_token, body(b.agent_wallet)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);

    let send = |key: &'static str| {
        let finance = b.finance.clone();
        let app = &app;
        let wallet = b.org_wallet;
        async move {
            let As::Token(t) = finance else {
                unreachable!()
            };
            let req = TestRequest::post()
                .uri("/api/v1/payments/flutterwave")
                .insert_header(("Authorization", format!("Bearer {t}")))
                .insert_header(("Idempotency-Key", key))
                .set_json(body(wallet))
                .to_request();
            app.send(req).await
        }
    };
    let first = send("pay-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let repeat = send("pay-1").await;
    assert_eq!(repeat.status, StatusCode::CREATED);
    assert_eq!(repeat.body["reference"], first.body["reference"]);
    assert_eq!(
        repeat
            .headers
            .get("Idempotent-Replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let reference = first.body["reference"].as_str().unwrap().to_owned();
    let orders = count(
        &app,
        &format!(
            "SELECT count(*) AS n FROM orders WHERE receiver_wallet_id = {}",
            b.org_wallet
        ),
    )
    .await;
    assert_eq!(orders, 1);

    // Verification: authenticated, tenant-scoped.
    Mock::given(method("GET"))
        .and(path("/v3/transactions/verify_by_reference"))
        .respond_with(transaction(990001, &reference, "100", "NGN"))
        .mount(&server)
        .await;
    let verify = format!("/api/v1/payments/{reference}/verify");
    assert_eq!(
        app.post(&verify, &As::Nobody, json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(&verify, &other.finance, json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(&verify, &b.customer_token, json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    let v = app.post(&verify, &b.finance, json!({})).await;
    assert_eq!(v.status, StatusCode::OK, "{:?}", v.body);
    assert_eq!(v.body["status"], "COMPLETED");
    assert_eq!(balance(&app, b.org_wallet).await, 10_000);
}

#[actix_web::test]
async fn organizations_keep_their_own_encrypted_credentials_and_webhook() {
    let server = MockServer::start().await;
    mount_initialise(&server, ORG_SECRET).await;
    let app = start(&server).await;
    let b = books(&app, "OwnAccount").await;
    let other = books(&app, "Stranger").await;
    let url = format!("/api/v1/organizations/{}/payment-credentials", b.org);
    let creds = json!({"public_key": "FLWPUBK_TEST-own", "secret_key": ORG_SECRET, "webhook_hash": ORG_HASH});

    assert_eq!(
        app.put(&url, &As::Nobody, creds.clone()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.put(&url, &b.manager, creds.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.put(&url, &other.finance, creds.clone()).await.status,
        StatusCode::NOT_FOUND
    );
    let short = app
        .put(
            &url,
            &b.finance,
            json!({"secret_key": "k", "webhook_hash": "short"}),
        )
        .await;
    assert_eq!(
        short.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        short.body
    );
    let g = app.get(&url, &b.finance).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body["configured"], false);

    let p = app.put(&url, &b.finance, creds.clone()).await;
    assert_eq!(p.status, StatusCode::OK, "{:?}", p.body);
    let g = app.get(&url, &b.finance).await;
    assert_eq!(
        (
            g.body["configured"].as_bool(),
            g.body["secret_key_set"].as_bool(),
            g.body["webhook_hash_set"].as_bool()
        ),
        (Some(true), Some(true), Some(true))
    );
    let text = g.body.to_string();
    assert!(
        !text.contains(ORG_SECRET) && !text.contains(ORG_HASH) && !text.contains("FLWPUBK"),
        "{text}"
    );
    assert_eq!(
        app.get(&url, &b.manager).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&url, &other.finance).await.status,
        StatusCode::NOT_FOUND
    );
    // Sealed at rest.
    let plain = count(
        &app,
        &format!("SELECT count(*) AS n FROM payment_provider_credentials WHERE position(convert_to('{ORG_SECRET}', 'UTF8') in secret_key_encrypted) > 0 OR position(convert_to('{ORG_HASH}', 'UTF8') in webhook_hash_encrypted) > 0"),
    )
    .await;
    assert_eq!(plain, 0);
    assert_eq!(
        count(&app, &format!("SELECT count(*) AS n FROM audit_events WHERE organization_id = {} AND action = 'payment_credentials.put'", b.org)).await,
        1
    );

    // The organization's payments use its own key (the initialise mock only accepts it).
    let (_, wallet) = commissioned_meter(&app, &b, "47005556667").await;
    let r = start_public_payment(&app, "47005556667", 1_000).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let reference = r.body["reference"].as_str().unwrap().to_owned();
    // Its webhooks are checked against its own hash, and verified with its own key.
    let paid = transaction(555001, &reference, "10", "NGN");
    mount_verify(&server, ORG_SECRET, 555001, paid).await;
    let own_hook = format!("{WEBHOOK}/{}", b.org);
    let body = charge_event(555001, &reference, "10");
    let r = post_webhook(&app, &own_hook, &body, &[("verif-hash", WEBHOOK_HASH)]).await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the platform hash is not this account's"
    );
    let r = post_webhook(&app, &own_hook, &body, &[("verif-hash", ORG_HASH)]).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    drain_inbox(&app).await;
    assert_eq!(balance(&app, wallet).await, 1_000);

    // Deleted: back to the platform account.
    assert_eq!(
        app.delete(&url, &b.manager).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(&url, &b.finance).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&url, &b.finance).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&url, &b.finance).await.body["configured"], false);
}

#[actix_web::test]
async fn transfer_webhooks_settle_payouts_from_the_providers_answer() {
    let server = MockServer::start().await;
    let app = start(&server).await;
    let b = books(&app, "Payout").await;
    let (_, meter) = meter_wallet(&app, &b, "PAYOUT-1").await;
    report_revenue(&app, &b).await;
    deposit(&app, meter, 100_000).await;
    let id = draft_payout(&app, &b, &this_month()).await["id"]
        .as_i64()
        .unwrap();
    approve_payout(&app, &b, id, None).await;
    // The payout's money leaves the organization's wallet when the transfer starts.
    deposit(&app, b.org_wallet, 100_000).await;
    Mock::given(method("POST"))
        .and(path("/v3/transfers"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success",
            "message": "Transfer Queued Successfully", "data": {"id": 190626, "status": "NEW"}})),
        )
        .mount(&server)
        .await;
    let r = app
        .post(&format!("/api/v1/payouts/{id}/pay"), &b.finance, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "PROCESSING");
    let reference = r.body["transfer_reference"].as_str().unwrap().to_owned();

    // The body says SUCCESSFUL; Flutterwave's API says it failed: the API wins.
    mount_transfer(
        &server,
        json!({"id": 190626, "reference": reference, "status": "FAILED",
               "complete_message": "DISBURSE FAILED: Insufficient funds"}),
    )
    .await;
    let body = transfer_event(190626, &reference, "SUCCESSFUL");
    let r = platform_webhook(&app, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    drain_inbox(&app).await;
    let r = app.get(&format!("/api/v1/payouts/{id}"), &b.finance).await;
    assert_eq!(r.body["status"], "FAILED", "{:?}", r.body);
    assert!(
        r.body["failure_reason"]
            .as_str()
            .unwrap_or("")
            .contains("Insufficient funds"),
        "{:?}",
        r.body
    );
    // The failed transfer's money is back in the organization's wallet.
    assert_eq!(balance(&app, b.org_wallet).await, 100_000);
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}
