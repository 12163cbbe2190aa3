//! Payouts to grid owners: the monthly draft from completed top-ups, approval, payment by a
//! Flutterwave transfer (wiremock) and its outcome; access rules.

use actix_web::http::StatusCode;
use base64::Engine as _;
use serde_json::{Value, json};
use tiamat_tests::{As, Reply, TestApp};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::ledger::{
    Books, balance, books, deposit, meter_wallet, statement, system_balance, verify,
};
use crate::money::{
    WEBHOOK, approve_payout, bank, draft_payout, drain_inbox, impatient_gateway, mount_transfer,
    mount_transfer_answer, post_draft, post_order_refund, post_webhook, report_revenue, this_month,
    transfer_event, use_flutterwave,
};

const SECRET: &str = "FLWSECK_TEST-x";
const WEBHOOK_HASH: &str = "hash";

async fn flutterwave() -> MockServer {
    MockServer::start().await
}

async fn app_with(fw: &MockServer) -> TestApp {
    let base = fw.uri();
    TestApp::start_with(|cfg| use_flutterwave(cfg, &base, SECRET, WEBHOOK_HASH)).await
}

/// Flutterwave answers the next transfer call once, with `status` and `body`.
async fn transfer_answers(fw: &MockServer, status: u16, body: Value) {
    mount_transfer_answer(fw, SECRET, status, body).await;
}

/// Pays the payout at `one` (its path).
async fn pay(app: &TestApp, who: &As, one: &str) -> Reply {
    app.post(&format!("{one}/pay"), who, json!({})).await
}

#[actix_web::test]
async fn a_month_is_drafted_approved_and_paid_by_transfer() {
    let fw = flutterwave().await;
    let app = app_with(&fw).await;
    let b = books(&app, "Payday").await;
    let (_, meter) = meter_wallet(&app, &b, "PAY-1").await;
    // Sold while the grid was hidden from reporting (the default): not revenue.
    deposit(&app, meter, 70_000).await;
    report_revenue(&app, &b).await;
    // ₦1,000 and ₦500 of energy this month; ₦300 more, refunded (not revenue).
    deposit(&app, meter, 100_000).await;
    deposit(&app, meter, 50_000).await;
    let refunded = deposit(&app, meter, 30_000).await;
    let r = post_order_refund(&app, &b.finance, &refunded["id"]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"], "COMPLETED", "{:?}", r.body);

    let month = this_month();
    let draft = draft_payout(&app, &b, &month).await;
    let id = draft["id"].as_i64().unwrap();
    let one = format!("/api/v1/payouts/{id}");
    let d = &draft["breakdown"];
    assert_eq!(d["energy_topup_revenue_minor"], 150_000);
    assert_eq!(d["support_fee_minor"], 15_000);
    assert_eq!(d["insurance_fee_minor"], 3_000);
    assert_eq!(d["processing_fee_minor"], 3_000);
    assert_eq!(draft["proposed_amount_minor"], 129_000);
    assert_eq!(draft["status"], "WAITING_FOR_APPROVAL");
    assert_eq!(draft["period"]["month"], month);

    // More revenue before approval: the draft is recomputed in place.
    deposit(&app, meter, 100_000).await;
    let r = post_draft(&app, &b.finance, b.grid, &month).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["id"], id);
    assert_eq!(r.body["proposed_amount_minor"], 215_000);

    let approved = approve_payout(&app, &b, id, None).await;
    assert_eq!(approved["status"], "APPROVED");
    assert_eq!(approved["approved_amount_minor"], 215_000);
    // Approved: neither recomputed nor approved again.
    let r = post_draft(&app, &b.finance, b.grid, &month).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    let r = app
        .post(
            &format!("/api/v1/payouts/{id}/approve"),
            &b.finance,
            json!({"bank_account": bank()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);

    // The organization's wallet holds what the payout pays (top-ups reach it as their energy is
    // delivered; here as cash).
    deposit(&app, b.org_wallet, 215_000).await;
    let provider_before = system_balance(&app, "FLUTTERWAVE").await;

    // The provider does not know the call (404): nothing was made, the payout is APPROVED again
    // and its money is back. (A 5xx or a timeout may have paid: see the tests below.)
    transfer_answers(&fw, 404, json!({"status": "error", "message": "not found"})).await;
    let r = pay(&app, &b.finance, &one).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    let r = app.get(&one, &b.finance).await;
    assert_eq!(r.body["status"], "APPROVED");
    let first_reference = r.body["transfer_reference"].clone();
    assert_eq!(balance(&app, b.org_wallet).await, 215_000);
    assert_eq!(system_balance(&app, "FLUTTERWAVE").await, provider_before);

    // Rate limited (429): turned away unprocessed, so the same at once: APPROVED, money back,
    // same reference, and no hour of waiting for a read-back.
    transfer_answers(&fw, 429, json!({"status": "error", "message": "slow down"})).await;
    let r = pay(&app, &b.finance, &one).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    let r = app.get(&one, &b.finance).await;
    assert_eq!(r.body["status"], "APPROVED", "{:?}", r.body);
    assert_eq!(r.body["transfer_reference"], first_reference);
    assert_eq!(balance(&app, b.org_wallet).await, 215_000);
    assert_eq!(system_balance(&app, "FLUTTERWAVE").await, provider_before);

    // Paid: the same reference (the provider deduplicates), ₦2,150.00 to the account.
    Mock::given(method("POST"))
        .and(path("/v3/transfers"))
        .and(body_partial_json(
            json!({"account_bank": "044", "account_number": "0690000031",
            "currency": "NGN", "reference": first_reference}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success",
            "message": "Transfer Queued Successfully",
            "data": {"id": 190626, "reference": first_reference, "status": "NEW"}})),
        )
        .expect(1)
        .mount(&fw)
        .await;
    let r = pay(&app, &b.finance, &one).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let sent = fw.received_requests().await.unwrap();
    let last = String::from_utf8_lossy(&sent[sent.len() - 1].body).into_owned();
    assert!(last.contains("\"amount\":2150.00"), "{last}");
    assert_eq!(r.body["status"], "PROCESSING");
    assert_eq!(r.body["provider_transfer_id"], "190626");
    assert_eq!(balance(&app, b.org_wallet).await, 0);
    assert_eq!(
        system_balance(&app, "FLUTTERWAVE").await,
        provider_before + 215_000
    );
    assert_eq!(r.body["transfer_reference"], first_reference);
    // A second pay while the transfer runs is refused (no second transfer).
    let r = pay(&app, &b.finance, &one).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);

    // The provider reports the outcome (the transfer.completed webhook's handler).
    let payouts = &app.app.state.services.payouts;
    let reference = first_reference.as_str().unwrap();
    let moved = payouts
        .transfer_outcome(reference, Some("190626".into()), true, None)
        .await
        .unwrap();
    assert_eq!(moved.map(|p| p.get()), Some(id));
    let again = payouts
        .transfer_outcome(reference, Some("190626".into()), false, Some("late".into()))
        .await
        .unwrap();
    assert_eq!(again, None, "a repeated or stale outcome changes nothing");
    let r = app.get(&one, &b.finance).await;
    assert_eq!(r.body["status"], "PAID", "{:?}", r.body);
    assert!(r.body["paid_at"].is_string());
    // Paid moves nothing more: the money left when the transfer started.
    assert_eq!(balance(&app, b.org_wallet).await, 0);
    assert_eq!(
        system_balance(&app, "FLUTTERWAVE").await,
        provider_before + 215_000
    );
    assert_eq!(
        kinds(&statement(&app, b.org_wallet).await),
        vec![
            json!("TRANSFER"),
            json!("PAYOUT"),
            json!("PAYOUT_REVERSAL"),
            json!("PAYOUT"),
            json!("PAYOUT_REVERSAL"),
            json!("PAYOUT")
        ]
    );

    let r = app
        .get(
            &format!("/api/v1/payouts?grid_id={}&status=PAID", b.grid),
            &b.manager,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}

#[actix_web::test]
async fn a_refused_transfer_fails_and_a_new_attempt_gets_a_new_reference() {
    let fw = flutterwave().await;
    let app = app_with(&fw).await;
    let b = books(&app, "Refused").await;
    let (_, meter) = meter_wallet(&app, &b, "REF-1").await;
    deposit(&app, meter, 100_000).await;
    let id = draft_payout(&app, &b, &this_month()).await["id"]
        .as_i64()
        .unwrap();
    approve_payout(&app, &b, id, Some(80_000)).await;
    let one = format!("/api/v1/payouts/{id}");
    deposit(&app, b.org_wallet, 80_000).await;
    transfer_answers(
        &fw,
        400,
        json!({"status": "error", "message": "Invalid account"}),
    )
    .await;
    let r = pay(&app, &b.finance, &one).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "FAILED");
    assert!(
        r.body["failure_reason"]
            .as_str()
            .unwrap()
            .contains("refused")
    );
    let failed_reference = r.body["transfer_reference"].clone();
    // Refused: the money is back in the organization's wallet.
    assert_eq!(balance(&app, b.org_wallet).await, 80_000);
    transfer_answers(
        &fw,
        200,
        json!({"status": "success", "data": {"id": 7, "status": "SUCCESSFUL"}}),
    )
    .await;
    let r = pay(&app, &b.finance, &one).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "PAID");
    assert_ne!(r.body["transfer_reference"], failed_reference);
    let sent: Vec<Value> = fw
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1]["amount"].as_f64(), Some(800.0));
    assert_eq!(balance(&app, b.org_wallet).await, 0);
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}

#[actix_web::test]
async fn a_month_without_top_ups_is_a_zero_payout_and_rentals_need_a_rate() {
    let fw = flutterwave().await;
    let app = app_with(&fw).await;
    let b = books(&app, "Quiet").await;
    let draft = draft_payout(&app, &b, "2020-01").await;
    assert_eq!(draft["proposed_amount_minor"], 0);
    assert_eq!(draft["breakdown"]["total_revenue_minor"], 0);
    assert_eq!(draft["period"]["start"], "2019-12-31T23:00:00Z");
    // A zero payout cannot be approved for payment.
    let r = app
        .post(
            &format!("/api/v1/payouts/{}/approve", draft["id"]),
            &b.finance,
            json!({"bank_account": bank()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);

    // A rental in USD on 10 kWp: the owner owes it in a quiet month, at the given rate.
    let r = app
        .patch(
            &format!("/api/v1/grids/{}", b.grid),
            &app.root,
            json!({"pv_capacity_wp": 10_000}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .put(
            &format!("/api/v1/grids/{}/payout-terms", b.grid),
            &b.finance,
            json!({"pv_rental_minor_per_kwp_month": 1_000, "storage_rental_minor_per_kwh_month": 0,
                   "rental_currency": "USD"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["rental"]["currency"], "USD");
    let r = post_draft(&app, &b.finance, b.grid, "2020-02").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "exchange_rate");
    let r = app
        .post(
            "/api/v1/payouts",
            &b.finance,
            json!({"grid_id": b.grid, "month": "2020-02", "exchange_rate": "1530.5"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // 10 kWp × $10 × 1530.5 = ₦153,050.00
    assert_eq!(r.body["breakdown"]["pv_rental_minor"], 15_305_000);
    assert_eq!(r.body["proposed_amount_minor"], -15_305_000);
}

#[actix_web::test]
async fn payouts_are_for_finance_in_the_same_tenant() {
    let app = TestApp::start().await;
    let b = books(&app, "Rules").await;
    let one = format!(
        "/api/v1/payouts/{}",
        draft_payout(&app, &b, "2021-05").await["id"]
    );

    // 401
    assert_eq!(
        app.get("/api/v1/payouts", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = pay(&app, &As::Nobody, &one).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // 403: MANAGER reads money but neither drafts, approves nor pays; TECH reads no money.
    let r = post_draft(&app, &b.manager, b.grid, "2021-06").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = app
        .post(
            &format!("{one}/approve"),
            &b.manager,
            json!({"approved_amount_minor": 1, "bank_account": bank()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(
        pay(&app, &b.manager, &one).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(app.get(&one, &b.manager).await.status, StatusCode::OK);
    let (_, tech) = app.member(b.org, "TECH").await;
    assert_eq!(app.get(&one, &tech).await.status, StatusCode::FORBIDDEN);
    // 422: a bad month, a bad bank account, an unknown field.
    for body in [
        json!({"grid_id": b.grid, "month": "2021-13"}),
        json!({"grid_id": b.grid, "month": "2021-05", "exchange_rate": "-1"}),
        json!({"grid_id": b.grid, "month": "2021-05", "extra": true}),
    ] {
        let r = app.post("/api/v1/payouts", &b.finance, body).await;
        assert!(r.status.is_client_error(), "{:?}", r.body);
        assert_ne!(r.status, StatusCode::NOT_FOUND);
    }
    let r = app
        .post(
            &format!("{one}/approve"),
            &b.finance,
            json!({"approved_amount_minor": 5, "bank_account": {"bank_code": "", "account_number": "12"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    // Approved, but no provider is configured: 503, still APPROVED.
    let r = app
        .post(
            &format!("{one}/approve"),
            &b.finance,
            json!({"approved_amount_minor": 5, "bank_account": bank()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = pay(&app, &b.finance, &one).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(app.get(&one, &b.finance).await.body["status"], "APPROVED");
    // 404 from another tenant: the payout, its actions and the grid.
    let other = books(&app, "Elsewhere").await;
    assert_eq!(
        app.get(&one, &other.finance).await.status,
        StatusCode::NOT_FOUND
    );
    for action in ["approve", "pay"] {
        let r = app
            .post(
                &format!("{one}/{action}"),
                &other.finance,
                json!({"bank_account": bank()}),
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{action}: {:?}", r.body);
    }
    let r = post_draft(&app, &other.finance, b.grid, "2021-07").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .get(
            &format!("/api/v1/grids/{}/payout-terms", b.grid),
            &other.finance,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.get("/api/v1/payouts", &other.finance).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
}

/// The payout's money in the ledger: refused without funds (nothing sent), debited from the
/// organization when the transfer starts, given back once when the provider fails it, debited
/// once more by the retry, left alone when it is paid.
#[actix_web::test]
async fn a_payout_moves_the_organizations_money_to_the_provider_once() {
    let fw = flutterwave().await;
    let app = app_with(&fw).await;
    let b = books(&app, "Moves").await;
    let id = draft_payout(&app, &b, "2021-03").await["id"]
        .as_i64()
        .unwrap();
    let one = format!("/api/v1/payouts/{id}");
    approve_payout(&app, &b, id, Some(60_000)).await;
    let provider_before = system_balance(&app, "FLUTTERWAVE").await;

    // The organization's wallet is empty: 409, still APPROVED, nothing sent, nothing posted.
    let r = pay(&app, &b.finance, &one).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(r.body["status"], 409);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was sent"),
        "{:?}",
        r.body
    );
    assert_eq!(app.get(&one, &b.finance).await.body["status"], "APPROVED");
    assert_eq!(fw.received_requests().await.unwrap().len(), 0);
    assert!(statement(&app, b.org_wallet).await.is_empty());
    assert_eq!(system_balance(&app, "FLUTTERWAVE").await, provider_before);

    // Funded: the transfer starts, the money leaves the organization for the provider.
    deposit(&app, b.org_wallet, 100_000).await;
    let queued = json!({"status": "success", "data": {"id": 31, "status": "NEW"}});
    transfer_answers(&fw, 200, queued.clone()).await;
    let r = pay(&app, &b.finance, &one).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "PROCESSING");
    let first = r.body["transfer_reference"].as_str().unwrap().to_owned();
    assert_eq!(balance(&app, b.org_wallet).await, 40_000);
    assert_eq!(
        system_balance(&app, "FLUTTERWAVE").await,
        provider_before + 60_000
    );
    let lines = statement(&app, b.org_wallet).await;
    let payout = lines.last().unwrap();
    assert_eq!(payout["kind"], "PAYOUT");
    assert_eq!(payout["amount"], -60_000);
    let withdrawal = payout["order_id"].clone();
    let order = app
        .get(&format!("/api/v1/orders/{withdrawal}"), &b.finance)
        .await;
    assert_eq!(order.status, StatusCode::OK, "{:?}", order.body);
    assert_eq!(order.body["order_type"], "ORGANIZATION_WITHDRAWAL");
    assert_eq!(order.body["sender_wallet_id"], b.org_wallet);
    // A payout's withdrawal is not refunded through /orders.
    let r = post_order_refund(&app, &b.finance, &withdrawal).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(balance(&app, b.org_wallet).await, 40_000);

    // The provider fails it (webhook): the money is back, once however often it is reported.
    let payouts = &app.app.state.services.payouts;
    for _ in 0..2 {
        payouts
            .transfer_outcome(&first, Some("31".into()), false, Some("bank down".into()))
            .await
            .unwrap();
    }
    assert_eq!(app.get(&one, &b.finance).await.body["status"], "FAILED");
    assert_eq!(balance(&app, b.org_wallet).await, 100_000);
    assert_eq!(system_balance(&app, "FLUTTERWAVE").await, provider_before);
    let reversal = statement(&app, b.org_wallet).await;
    let reversal = reversal.last().unwrap();
    assert_eq!(reversal["kind"], "PAYOUT_REVERSAL");
    assert_eq!(reversal["amount"], 60_000);

    // The retry is debited again (one debit in all), and being paid changes nothing.
    transfer_answers(&fw, 200, queued).await;
    let r = pay(&app, &b.finance, &one).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "PROCESSING");
    let second = r.body["transfer_reference"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(balance(&app, b.org_wallet).await, 40_000);
    payouts
        .transfer_outcome(&second, Some("32".into()), true, None)
        .await
        .unwrap();
    assert_eq!(app.get(&one, &b.finance).await.body["status"], "PAID");
    assert_eq!(balance(&app, b.org_wallet).await, 40_000);
    assert_eq!(
        system_balance(&app, "FLUTTERWAVE").await,
        provider_before + 60_000
    );
    // A stale failure of the first attempt gives nothing back.
    payouts
        .transfer_outcome(&first, None, false, Some("late".into()))
        .await
        .unwrap();
    assert_eq!(balance(&app, b.org_wallet).await, 40_000);
    assert_eq!(fw.received_requests().await.unwrap().len(), 2);
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}

/// An app whose payouts call Flutterwave with a short time limit (so a slow answer times out).
async fn app_with_short_timeout(fw: &MockServer) -> TestApp {
    let platform = fw.uri();
    let gateway = impatient_gateway(fw, SECRET);
    TestApp::start_with_state(
        |cfg| use_flutterwave(cfg, &platform, SECRET, WEBHOOK_HASH),
        |state| {
            state.services.payouts = state
                .services
                .payouts
                .clone()
                .with_gateway(std::sync::Arc::new(gateway));
        },
    )
    .await
}

/// A payout of ₦600 whose transfer call timed out: the answer came after the client gave up.
/// Answers the app, the books, the payout's path and its transfer reference.
async fn unanswered_payout(fw: &MockServer, name: &str) -> (TestApp, Books, String, String, i64) {
    let app = app_with_short_timeout(fw).await;
    let b = books(&app, name).await;
    let id = draft_payout(&app, &b, "2021-05").await["id"]
        .as_i64()
        .unwrap();
    let one = format!("/api/v1/payouts/{id}");
    approve_payout(&app, &b, id, Some(60_000)).await;
    deposit(&app, b.org_wallet, 100_000).await;
    let provider_before = system_balance(&app, "FLUTTERWAVE").await;
    Mock::given(method("POST"))
        .and(path("/v3/transfers"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "success", "data": {"id": 77, "status": "NEW"}}))
                .set_delay(std::time::Duration::from_secs(2)),
        )
        .up_to_n_times(1)
        .mount(fw)
        .await;
    let r = pay(&app, &b.finance, &one).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains("timed out"),
        "{:?}",
        r.body
    );
    assert_eq!(fw.received_requests().await.unwrap().len(), 1);
    let r = app.get(&one, &b.finance).await;
    // The provider may have made it: still PROCESSING, the money still with the provider.
    assert_eq!(r.body["status"], "PROCESSING", "{:?}", r.body);
    assert_eq!(r.body["provider_transfer_id"], Value::Null);
    let reference = r.body["transfer_reference"].as_str().unwrap().to_owned();
    assert_eq!(balance(&app, b.org_wallet).await, 40_000);
    assert_eq!(
        system_balance(&app, "FLUTTERWAVE").await,
        provider_before + 60_000
    );
    (app, b, one, reference, provider_before)
}

/// Flutterwave's answer to reading transfers back by our reference.
async fn read_back_answers(fw: &MockServer, reference: &str, transfers: Value) {
    fw.reset().await;
    Mock::given(method("GET"))
        .and(path("/v3/transfers"))
        .and(query_param("reference", reference))
        .and(header("authorization", format!("Bearer {SECRET}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"status": "success", "message": "Transfers fetched", "data": transfers}),
        ))
        .mount(fw)
        .await;
}

async fn read_back(
    app: &TestApp,
    at: chrono::DateTime<chrono::Utc>,
) -> payments::payouts::ReadBack {
    app.app
        .state
        .services
        .payouts
        .read_back_transfers(at, chrono::Duration::hours(1))
        .await
        .unwrap()
}

fn kinds(lines: &[Value]) -> Vec<Value> {
    lines.iter().map(|l| l["kind"].clone()).collect()
}

/// The ₦600 of a timed-out payout went to the provider, once: the organization keeps ₦400 of
/// its ₦1,000, its statement shows the deposit and the payout only, and the books balance.
async fn assert_paid_out_once(app: &TestApp, b: &Books, provider_before: i64) {
    assert_eq!(balance(app, b.org_wallet).await, 40_000);
    assert_eq!(
        system_balance(app, "FLUTTERWAVE").await,
        provider_before + 60_000
    );
    assert_eq!(
        kinds(&statement(app, b.org_wallet).await),
        vec![json!("TRANSFER"), json!("PAYOUT")]
    );
    let (sound, report) = verify(app).await;
    assert!(sound, "{report}");
}

/// The ₦600 of a timed-out payout came back, once: the organization has its ₦1,000 again, its
/// statement shows the deposit, the payout and one reversal, and the books balance.
async fn assert_given_back_once(app: &TestApp, b: &Books, provider_before: i64) {
    assert_eq!(balance(app, b.org_wallet).await, 100_000);
    assert_eq!(system_balance(app, "FLUTTERWAVE").await, provider_before);
    assert_eq!(
        kinds(&statement(app, b.org_wallet).await),
        vec![json!("TRANSFER"), json!("PAYOUT"), json!("PAYOUT_REVERSAL")]
    );
    let (sound, report) = verify(app).await;
    assert!(sound, "{report}");
}

#[actix_web::test]
async fn a_timed_out_transfer_the_provider_made_is_paid_and_never_given_back() {
    let fw = flutterwave().await;
    let (app, b, one, reference, provider) = unanswered_payout(&fw, "Timeout paid").await;
    // Still pending at the provider: its id is recorded, nothing else moves.
    read_back_answers(
        &fw,
        &reference,
        json!([{"id": 77, "reference": reference, "status": "NEW"}]),
    )
    .await;
    let pass = read_back(&app, chrono::Utc::now()).await;
    assert_eq!((pass.settled, pass.waiting, pass.errors), (0, 1, 0));
    let r = app.get(&one, &b.finance).await;
    assert_eq!(r.body["status"], "PROCESSING");
    assert_eq!(r.body["provider_transfer_id"], "77");

    // Then read back (by the provider's id now) as SUCCESSFUL: PAID, nothing given back.
    fw.reset().await;
    mount_transfer(
        &fw,
        json!({"id": 77, "reference": reference, "status": "SUCCESSFUL"}),
    )
    .await;
    let pass = read_back(&app, chrono::Utc::now()).await;
    assert_eq!(pass.settled, 1);
    let r = app.get(&one, &b.finance).await;
    assert_eq!(r.body["status"], "PAID", "{:?}", r.body);
    assert_paid_out_once(&app, &b, provider).await;
    // Nothing is PROCESSING any more: a later pass reads nothing.
    assert_eq!(
        read_back(&app, chrono::Utc::now()).await,
        Default::default()
    );
}

#[actix_web::test]
async fn a_timed_out_transfer_the_provider_failed_is_given_back_once() {
    let fw = flutterwave().await;
    let (app, b, one, reference, provider) = unanswered_payout(&fw, "Timeout failed").await;
    read_back_answers(
        &fw,
        &reference,
        json!([{"id": 78, "reference": reference, "status": "FAILED",
                "complete_message": "DISBURSE FAILED: account closed"}]),
    )
    .await;
    assert_eq!(read_back(&app, chrono::Utc::now()).await.settled, 1);
    assert_eq!(read_back(&app, chrono::Utc::now()).await.settled, 0);
    let r = app.get(&one, &b.finance).await;
    assert_eq!(r.body["status"], "FAILED", "{:?}", r.body);
    assert!(
        r.body["failure_reason"]
            .as_str()
            .unwrap()
            .contains("account closed")
    );
    assert_eq!(r.body["provider_transfer_id"], "78");
    assert_given_back_once(&app, &b, provider).await;
}

#[actix_web::test]
async fn a_timed_out_transfer_the_provider_never_made_is_given_back_after_the_grace_period() {
    let fw = flutterwave().await;
    let (app, b, one, reference, provider) = unanswered_payout(&fw, "Timeout none").await;
    read_back_answers(&fw, &reference, json!([])).await;
    // Within the grace period "none" proves nothing yet.
    let pass = read_back(&app, chrono::Utc::now()).await;
    assert_eq!((pass.settled, pass.waiting), (0, 1));
    assert_eq!(app.get(&one, &b.finance).await.body["status"], "PROCESSING");
    assert_eq!(balance(&app, b.org_wallet).await, 40_000);

    // A list that is not filtered to our reference proves nothing either.
    read_back_answers(
        &fw,
        &reference,
        json!([{"id": 5, "reference": "someone-else", "status": "SUCCESSFUL"}]),
    )
    .await;
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    let pass = read_back(&app, later).await;
    assert_eq!((pass.settled, pass.errors), (0, 1));
    assert_eq!(app.get(&one, &b.finance).await.body["status"], "PROCESSING");

    // No such transfer after the grace period: APPROVED again with the same reference, money
    // back once.
    read_back_answers(&fw, &reference, json!([])).await;
    assert_eq!(read_back(&app, later).await.settled, 1);
    assert_eq!(read_back(&app, later).await.settled, 0);
    let r = app.get(&one, &b.finance).await;
    assert_eq!(r.body["status"], "APPROVED", "{:?}", r.body);
    assert_eq!(r.body["transfer_reference"], reference.as_str());
    assert_given_back_once(&app, &b, provider).await;
}

/// The transfer webhook settles a timed-out payout too (it is still PROCESSING), from the
/// provider's answer.
#[actix_web::test]
async fn a_timed_out_transfer_is_paid_by_its_webhook() {
    let fw = flutterwave().await;
    let (app, b, one, reference, provider) = unanswered_payout(&fw, "Timeout webhook").await;
    fw.reset().await;
    mount_transfer(
        &fw,
        json!({"id": 79, "reference": reference, "status": "SUCCESSFUL"}),
    )
    .await;
    let body = transfer_event(79, &reference, "SUCCESSFUL");
    let r = post_webhook(&app, WEBHOOK, &body, &[("verif-hash", WEBHOOK_HASH)]).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    drain_inbox(&app).await;
    let r = app.get(&one, &b.finance).await;
    assert_eq!(r.body["status"], "PAID", "{:?}", r.body);
    assert_eq!(r.body["provider_transfer_id"], "79");
    assert_paid_out_once(&app, &b, provider).await;
}

/// An organization with its own Flutterwave account: its payout's transfer is made with that
/// account, and the transfer webhook (to its own webhook URL, with its own hash) is read back
/// with that account too; the platform account knows nothing of the transfer.
#[actix_web::test]
async fn an_organizations_own_account_makes_and_reads_back_its_payout_transfer() {
    const ORG_SECRET: &str = "FLWSECK_TEST-payout-organization-key";
    const ORG_HASH: &str = "payout-organization-webhook-hash-1234";
    let fw = flutterwave().await;
    let base = fw.uri();
    let app = TestApp::start_with(|cfg| {
        use_flutterwave(cfg, &base, SECRET, WEBHOOK_HASH);
        cfg.payments.credentials_key = Some(secrecy::SecretString::from(
            base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        ));
    })
    .await;
    let b = books(&app, "Own account payout").await;
    let r = app
        .put(
            &format!("/api/v1/organizations/{}/payment-credentials", b.org),
            &b.finance,
            json!({"public_key": "FLWPUBK_TEST-own", "secret_key": ORG_SECRET,
                   "webhook_hash": ORG_HASH}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let id = draft_payout(&app, &b, "2021-06").await["id"]
        .as_i64()
        .unwrap();
    let one = format!("/api/v1/payouts/{id}");
    approve_payout(&app, &b, id, Some(30_000)).await;
    deposit(&app, b.org_wallet, 30_000).await;
    let provider = system_balance(&app, "FLUTTERWAVE").await;

    let reference = format!("tiamat-payout-{id}-1");
    mount_transfer_answer(
        &fw,
        ORG_SECRET,
        200,
        json!({"status": "success", "data": {"id": 191, "reference": reference, "status": "NEW"}}),
    )
    .await;
    let r = pay(&app, &b.finance, &one).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "PROCESSING");
    assert_eq!(r.body["provider_transfer_id"], "191");

    // Only the organization's key can read the transfer back.
    Mock::given(method("GET"))
        .and(path("/v3/transfers/191"))
        .and(header(
            "authorization",
            format!("Bearer {ORG_SECRET}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success",
                "data": {"id": 191, "reference": reference, "status": "SUCCESSFUL"}})),
        )
        .expect(1)
        .mount(&fw)
        .await;
    let body = transfer_event(191, &reference, "SUCCESSFUL");
    let hook = format!("{WEBHOOK}/{}", b.org);
    let r = post_webhook(&app, &hook, &body, &[("verif-hash", ORG_HASH)]).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    drain_inbox(&app).await;
    let r = app.get(&one, &b.finance).await;
    assert_eq!(r.body["status"], "PAID", "{:?}", r.body);
    assert_eq!(balance(&app, b.org_wallet).await, 0);
    assert_eq!(system_balance(&app, "FLUTTERWAVE").await, provider + 30_000);
}
