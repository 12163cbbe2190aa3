//! Fixtures the payments tests share (refunds, payouts, Flutterwave, purchases): a wiremock
//! Flutterwave's answers, its webhook and the inbox worker behind it, orders refunded through
//! the ledger, payouts drafted and approved.

use std::fmt::Display;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;
use serde_json::{Value, json};
use tiamat::config::{Config, FlutterwavePlatform};
use tiamat_tests::{As, Reply, TestApp};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::ledger::Books;

/// Flutterwave's webhook for the platform account (an organization's own: `{WEBHOOK}/{org}`).
pub const WEBHOOK: &str = "/api/v1/integrations/flutterwave/webhook";

/// Points `cfg` at the Flutterwave at `base_url` as the platform's account.
pub fn use_flutterwave(cfg: &mut Config, base_url: &str, secret: &str, webhook_hash: &str) {
    cfg.payments.flutterwave_base_url = url::Url::parse(base_url).unwrap();
    cfg.payments.flutterwave = Some(FlutterwavePlatform {
        secret_key: SecretString::from(secret),
        webhook_hash: SecretString::from(webhook_hash),
    });
}

/// A gateway to `server` that gives up after 300 ms (the app's waits 15 s), so that a slow
/// answer times out.
pub fn impatient_gateway(server: &MockServer, secret: &str) -> flutterwave::FlutterwaveGateway {
    flutterwave::FlutterwaveGateway::new(
        url::Url::parse(&server.uri()).unwrap(),
        Some(payments::ProviderCredentials {
            public_key: None,
            secret_key: SecretString::from(secret),
            webhook_hash: None,
        }),
        reqwest::Client::new(),
    )
    .with_timeout(Duration::from_millis(300))
}

/// The single bigint column `n` of `query`.
pub async fn count(app: &TestApp, query: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    let n: N = diesel::sql_query(query)
        .get_result(&mut conn)
        .await
        .unwrap();
    n.n
}

/// Flutterwave's success envelope around `data`.
pub fn success(data: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"status": "success", "message": "ok", "data": data}))
}

/// Flutterwave's answer about a successful card transaction. `amount` is written as given (a
/// JSON number such as `50` or `50.00`).
pub fn transaction(id: u64, tx_ref: &str, amount: &str, currency: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(
        format!(
            r#"{{"status":"success","message":"Transaction fetched successfully","data":{{"id":{id},"tx_ref":"{tx_ref}","amount":{amount},"currency":"{currency}","status":"successful","payment_type":"card"}}}}"#
        ),
        "application/json",
    )
}

/// Flutterwave opens hosted payments for the account with `secret` (and for no other).
pub async fn mount_initialise(server: &MockServer, secret: &str) {
    Mock::given(method("POST"))
        .and(path("/v3/payments"))
        .and(header("authorization", format!("Bearer {secret}").as_str()))
        .respond_with(success(
            json!({"link": "https://checkout.flutterwave.com/v3/hosted/pay/test"}),
        ))
        .mount(server)
        .await;
}

/// Starts an authenticated Flutterwave payment.
pub async fn post_payment(app: &TestApp, who: &As, body: Value) -> Reply {
    app.post("/api/v1/payments/flutterwave", who, body).await
}

/// Delivers `body` to a Flutterwave webhook at `uri` with `headers`.
pub async fn post_webhook(app: &TestApp, uri: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = TestRequest::post()
        .uri(uri)
        .insert_header(("content-type", "application/json"))
        .set_payload(body.to_owned());
    for (name, value) in headers {
        req = req.insert_header((*name, *value));
    }
    app.send(req.to_request()).await
}

/// Runs the inbox worker (with every payments handler) until the inbox is empty.
pub async fn drain_inbox(app: &TestApp) {
    loop {
        let n = tiamat::inbox_worker::run_once_with_payments(
            app.app.state.inbox.as_ref(),
            &app.app.db,
            None,
            Some(&app.app.state.checkout),
            Some(&app.app.state.services.payouts),
            Some(&app.app.state.services.provider_refunds),
        )
        .await
        .expect("inbox worker");
        if n == 0 {
            break;
        }
    }
}

/// Refunds `order` through the ledger's `/orders` route.
pub async fn post_order_refund(app: &TestApp, who: &As, order: impl Display) -> Reply {
    app.post(&format!("/api/v1/orders/{order}/refund"), who, json!({}))
        .await
}

/// This month in the grids' time zone (payouts are drafted by month).
pub fn this_month() -> String {
    let tz: chrono_tz::Tz = "Africa/Lagos".parse().unwrap();
    chrono::Utc::now()
        .with_timezone(&tz)
        .format("%Y-%m")
        .to_string()
}

/// The grid owner's bank account (Flutterwave's test account).
pub fn bank() -> Value {
    json!({"bank_code": "044", "account_number": "0690000031", "account_name": "Grid Owner"})
}

/// Makes the books' grid count for reporting: its top-ups are revenue from now on.
pub async fn report_revenue(app: &TestApp, b: &Books) {
    let r = app
        .patch(
            &format!("/api/v1/grids/{}", b.grid),
            &app.root,
            json!({"is_hidden_from_reporting": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// Asks for the payout draft of `grid` for `month` (drafted anew, or recomputed in place).
pub async fn post_draft(app: &TestApp, who: &As, grid: i64, month: &str) -> Reply {
    app.post(
        "/api/v1/payouts",
        who,
        json!({"grid_id": grid, "month": month}),
    )
    .await
}

/// A new payout draft of the books' grid for `month`: its body.
pub async fn draft_payout(app: &TestApp, b: &Books, month: &str) -> Value {
    let r = post_draft(app, &b.finance, b.grid, month).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body
}

/// Approves payout `id` to [`bank`] (`amount`: the approved amount, `None`: as proposed).
pub async fn approve_payout(app: &TestApp, b: &Books, id: i64, amount: Option<i64>) -> Value {
    let mut body = json!({"bank_account": bank()});
    if let Some(amount) = amount {
        body["approved_amount_minor"] = json!(amount);
    }
    let r = app
        .post(&format!("/api/v1/payouts/{id}/approve"), &b.finance, body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

/// Flutterwave answers the next transfer call of the account with `secret` once, with
/// `status` and `body`.
pub async fn mount_transfer_answer(server: &MockServer, secret: &str, status: u16, body: Value) {
    Mock::given(method("POST"))
        .and(path("/v3/transfers"))
        .and(header("authorization", format!("Bearer {secret}").as_str()))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .up_to_n_times(1)
        .mount(server)
        .await;
}

/// Flutterwave answers reading back the transfer `transfer` (by its `id`).
pub async fn mount_transfer(server: &MockServer, transfer: Value) {
    Mock::given(method("GET"))
        .and(path(format!("/v3/transfers/{}", transfer["id"])))
        .respond_with(success(transfer))
        .mount(server)
        .await;
}

/// Flutterwave's `transfer.completed` webhook body about transfer `id`.
pub fn transfer_event(id: u64, reference: &str, status: &str) -> String {
    json!({"event": "transfer.completed", "event.type": "Transfer",
           "data": {"id": id, "reference": reference, "status": status}})
    .to_string()
}
