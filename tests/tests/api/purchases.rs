//! Meter credit purchases: a completed top-up becomes exactly one TOP_UP with the energy it paid
//! for; failures are visible and recoverable (re-deliver, refund); access rules.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use meters::{InteractionId, InteractionRepo, InteractionStatus, Transition};
use serde_json::{Value, json};
use tiamat_tests::{As, Reply, TestApp};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::ledger::{balance, deposit, statement, verify, wallet_of};
use crate::money::post_order_refund;

/// An organization with a grid priced at ₦250/kWh (HPS) and ₦300/kWh (FS), an energised grid,
/// an online LoRaWAN gateway and an installed, recently seen meter with a decoder key.
struct Site {
    org: i64,
    meter: i64,
    meter_wallet: i64,
    manager: As,
    finance: As,
    support: As,
}

async fn site(app: &TestApp, name: &str) -> Site {
    let org = app.organization(name).await;
    let (_, manager) = app.member(org, "MANAGER").await;
    let (_, finance) = app.member(org, "FINANCE").await;
    let (_, support) = app.member(org, "SUPPORT").await;
    let key = app.key(org, "SERVICE").await;
    let g = app
        .post(
            "/api/v1/grids",
            &app.root,
            json!({"name": format!("{name} grid"), "currency": "NGN", "organization_id": org,
                   "hps_tariff_minor_per_kwh": 25_000, "fs_tariff_minor_per_kwh": 30_000}),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{:?}", g.body);
    let grid = g.body["id"].as_i64().unwrap();
    app.online_gateway(&manager, &key, grid, name).await;
    app.energise(&key, grid, true).await;
    let meter = app
        .connected_meter(
            &manager,
            grid,
            json!({"external_system": "CALIN", "external_reference": format!("{name}-1"), "decoder_key": "0123456789ABCDEF"}),
        )
        .await;
    app.heard_now(&key, meter).await;
    Site {
        org,
        meter,
        meter_wallet: wallet_of(app, "METER", meter).await,
        manager,
        finance,
        support,
    }
}

/// An STS generator whose first `failures` answers are 503.
async fn sts(failures: u64) -> MockServer {
    let server = MockServer::start().await;
    if failures > 0 {
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(failures)
            .with_priority(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"token": "1234 5678 9012 3456 7890"})),
        )
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

async fn app_with(sts: &MockServer) -> TestApp {
    let base = sts.uri();
    TestApp::start_with(|cfg| cfg.sts_generator_url = Some(base.parse().unwrap())).await
}

async fn work(app: &TestApp) {
    tiamat::purchase_worker::run_once(&app.app.state.services.purchases)
        .await
        .expect("purchase worker pass");
}

async fn purchases_of(app: &TestApp, who: &As, meter: i64) -> Vec<Value> {
    let r = app
        .get(&format!("/api/v1/purchases?meter_id={meter}"), who)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

/// Asks for a fresh token for purchase `p`.
async fn redeliver(app: &TestApp, who: &As, p: &Value) -> Reply {
    app.post(
        &format!("/api/v1/purchases/{}/redeliver", p["id"]),
        who,
        json!({}),
    )
    .await
}

/// Refunds purchase `p` to its payer.
async fn refund_purchase(app: &TestApp, who: &As, p: &Value) -> Reply {
    app.post(
        &format!("/api/v1/purchases/{}/refund", p["id"]),
        who,
        json!({}),
    )
    .await
}

/// Sets (or with `null` clears) the meter's own tariff.
async fn put_tariff(app: &TestApp, who: &As, meter: i64, tariff: Value) -> Reply {
    app.put(
        &format!("/api/v1/meters/{meter}/tariff"),
        who,
        json!({"tariff_minor_per_kwh": tariff}),
    )
    .await
}

/// `r` is a 409 whose detail says `why`.
fn assert_conflict(r: &Reply, why: &str) {
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(
        r.body["detail"].as_str().unwrap().contains(why),
        "{:?}",
        r.body
    );
}

async fn interaction(app: &TestApp, who: &As, id: &Value) -> Value {
    let r = app.get(&format!("/api/v1/interactions/{id}"), who).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

#[actix_web::test]
async fn a_completed_top_up_becomes_one_top_up_with_the_energy_paid_for() {
    let sts = sts(0).await;
    let app = app_with(&sts).await;
    let s = site(&app, "Buy").await;
    // Dashboards hear of the purchase on its grid's room.
    let heard: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = heard.clone();
    let listener = store::listener::spawn(
        app.db.url.clone(),
        move |_, payload| {
            if let Ok(e) = serde_json::from_str::<Value>(&payload) {
                sink.lock().unwrap().push(e);
            }
        },
        |_| {},
    );
    assert!(listener.wait_listening(Duration::from_secs(5)).await);
    // ₦1,000 at ₦300/kWh (the meter's own tariff) = 3.33… kWh → 3.4 kWh.
    let r = put_tariff(&app, &s.manager, s.meter, json!(30_000)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let org_wallet = wallet_of(&app, "ORGANIZATION", s.org).await;
    let org_before = balance(&app, org_wallet).await;
    let order = deposit(&app, s.meter_wallet, 100_000).await;
    assert_eq!(order["order_type"], "ENERGY_TOPUP");
    assert_eq!(balance(&app, s.meter_wallet).await, 100_000);

    // Two workers see the completion at once, then again: one purchase, one token.
    tokio::join!(work(&app), work(&app));
    work(&app).await;
    let list = purchases_of(&app, &s.finance, s.meter).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let p = &list[0];
    assert_eq!(p["order_id"], order["id"]);
    assert_eq!(p["energy_wh"], 3_400);
    assert_eq!(p["tariff_minor_per_kwh"], 30_000);
    assert_eq!(p["tariff_source"], "METER");
    assert_eq!(p["status"], "PENDING");
    assert_eq!(p["attempts"], 1);
    assert_eq!(sts.received_requests().await.unwrap().len(), 1);
    let i = interaction(&app, &s.manager, &p["interaction_id"]).await;
    assert_eq!(i["kind"], "TOP_UP");
    assert_eq!(i["origin"], "order");
    assert_eq!(i["energy_wh"], 3_400);

    // The meter accepts the token: the purchase is DELIVERED.
    let id = InteractionId(p["interaction_id"].as_i64().unwrap());
    let db = &app.app.db;
    db.transition(id, InteractionStatus::Queued, Transition::Claim, None)
        .await
        .unwrap()
        .expect("claimed");
    db.transition(id, InteractionStatus::Processing, Transition::Acked, None)
        .await
        .unwrap()
        .expect("acked");
    work(&app).await;
    let r = app
        .get(&format!("/api/v1/purchases/{}", p["id"]), &s.finance)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "DELIVERED");
    // Opened (PENDING), its TOP_UP attached (PENDING with the interaction), then DELIVERED.
    let mut seen: Vec<(String, String, Value)> = Vec::new();
    for _ in 0..100 {
        seen = heard
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "meter_purchase" && e["data"]["id"] == p["id"])
            .map(|e| {
                (
                    e["operation"].as_str().unwrap().to_owned(),
                    e["data"]["status"].as_str().unwrap().to_owned(),
                    e["data"]["interaction_id"].clone(),
                )
            })
            .collect();
        if seen.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        seen,
        vec![
            ("CREATE".into(), "PENDING".into(), Value::Null),
            (
                "UPDATE".into(),
                "PENDING".into(),
                p["interaction_id"].clone()
            ),
            (
                "UPDATE".into(),
                "DELIVERED".into(),
                p["interaction_id"].clone()
            ),
        ]
    );
    // Delivered energy is sold: the money moved from the meter's wallet to the organization's,
    // on the top-up's order, and both statements show it.
    assert_eq!(balance(&app, s.meter_wallet).await, 0);
    assert_eq!(balance(&app, org_wallet).await, org_before + 100_000);
    for (wallet, amount, other) in [
        (s.meter_wallet, -100_000, org_wallet),
        (org_wallet, 100_000, s.meter_wallet),
    ] {
        let lines = statement(&app, wallet).await;
        let sale: Vec<&Value> = lines
            .iter()
            .filter(|l| l["kind"] == "ENERGY_SALE")
            .collect();
        assert_eq!(sale.len(), 1, "{lines:?}");
        assert_eq!(sale[0]["amount"], amount);
        assert_eq!(sale[0]["order_id"], order["id"]);
        assert_eq!(sale[0]["counterparty_wallet_id"], other);
    }
    // Its order can no longer be refunded through /orders: the customer has the energy.
    let r = post_order_refund(&app, &s.finance, &order["id"]).await;
    assert_conflict(&r, "energy already delivered");
    assert_eq!(balance(&app, s.meter_wallet).await, 0);
    assert_eq!(balance(&app, org_wallet).await, org_before + 100_000);
    // A delivered purchase is neither re-delivered nor refunded.
    let r = refund_purchase(&app, &s.finance, p).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    let r = redeliver(&app, &s.support, p).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    // An order refunded before the worker saw it buys nothing.
    let refunded = deposit(&app, s.meter_wallet, 20_000).await;
    let r = post_order_refund(&app, &s.finance, &refunded["id"]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    work(&app).await;
    assert_eq!(purchases_of(&app, &s.finance, s.meter).await.len(), 1);
    // Priced at the grid's HPS tariff once the meter's own is cleared: ₦500 at ₦250 = 2 kWh.
    let r = put_tariff(&app, &s.manager, s.meter, Value::Null).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    deposit(&app, s.meter_wallet, 50_000).await;
    work(&app).await;
    let list = purchases_of(&app, &s.finance, s.meter).await;
    assert_eq!(list.len(), 2);
    assert_eq!(list[1]["energy_wh"], 2_000);
    assert_eq!(list[1]["tariff_source"], "GRID_HPS");
    // Its energy is on its way: refunding its order now would pay twice if it arrives.
    let r = post_order_refund(&app, &s.finance, &list[1]["order_id"]).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(balance(&app, s.meter_wallet).await, 50_000);
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}

#[actix_web::test]
async fn a_token_failure_is_visible_and_redelivered_with_a_fresh_token() {
    let sts = sts(1).await;
    let app = app_with(&sts).await;
    let s = site(&app, "Fail").await;
    deposit(&app, s.meter_wallet, 100_000).await;
    work(&app).await;
    let list = purchases_of(&app, &s.finance, s.meter).await;
    assert_eq!(list.len(), 1);
    let p = &list[0];
    assert_eq!(p["status"], "FAILED", "{p:?}");
    assert_eq!(p["energy_wh"], 4_000);
    assert!(p["interaction_id"].is_null());
    let reason = p["failure_reason"].as_str().unwrap();
    assert!(reason.contains("STS generator"), "{reason}");
    // Nothing is retried behind the operator's back.
    work(&app).await;
    assert_eq!(
        purchases_of(&app, &s.finance, s.meter).await[0]["status"],
        "FAILED"
    );

    let r = redeliver(&app, &s.support, p).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "PENDING");
    assert_eq!(r.body["attempts"], 1);
    let i = interaction(&app, &s.manager, &r.body["interaction_id"]).await;
    assert_eq!(i["energy_wh"], 4_000);
    assert_eq!(i["kind"], "TOP_UP");
    assert_eq!(sts.received_requests().await.unwrap().len(), 2);

    // That delivery fails too (cancelled): FAILED with the interaction's reason; re-delivered
    // again with another fresh token.
    let r = app
        .post(
            &format!("/api/v1/interactions/{}/cancel", i["id"]),
            &s.manager,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    work(&app).await;
    let r = app
        .get(&format!("/api/v1/purchases/{}", p["id"]), &s.finance)
        .await;
    assert_eq!(r.body["status"], "FAILED");
    assert!(
        r.body["failure_reason"]
            .as_str()
            .unwrap()
            .contains("ABORTED"),
        "{:?}",
        r.body
    );
    let r = redeliver(&app, &s.support, p).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["attempts"], 2);
    assert_ne!(r.body["interaction_id"], i["id"]);
    assert_eq!(sts.received_requests().await.unwrap().len(), 3);
}

#[actix_web::test]
async fn an_undelivered_purchase_is_refunded_to_the_payer_once() {
    let sts = sts(2).await;
    let app = app_with(&sts).await;
    let s = site(&app, "Refund").await;
    let order = deposit(&app, s.meter_wallet, 100_000).await;
    work(&app).await;
    let p = purchases_of(&app, &s.finance, s.meter).await[0].clone();
    assert_eq!(p["status"], "FAILED");
    assert_eq!(balance(&app, s.meter_wallet).await, 100_000);

    // The generator is still down: the re-delivery shows it FAILED again, with the reason.
    let r = redeliver(&app, &s.support, &p).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "FAILED");
    assert!(r.body["interaction_id"].is_null());
    assert!(
        r.body["failure_reason"]
            .as_str()
            .unwrap()
            .contains("STS generator")
    );

    // SUPPORT re-delivers tokens but does not move money.
    let r = refund_purchase(&app, &s.support, &p).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    // Not around the purchase through /orders: a re-delivery could race such a refund.
    let r = post_order_refund(&app, &s.finance, &order["id"]).await;
    assert_conflict(&r, "refund its purchase");
    let r = refund_purchase(&app, &s.finance, &p).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "REFUNDED");
    assert!(r.body["refund_order_id"].is_i64());
    assert_eq!(balance(&app, s.meter_wallet).await, 0);
    let refund = app
        .get(
            &format!("/api/v1/orders/{}", r.body["refund_order_id"]),
            &s.finance,
        )
        .await;
    assert_eq!(refund.status, StatusCode::OK, "{:?}", refund.body);
    assert_eq!(refund.body["reverses_order_id"], order["id"]);
    assert_eq!(refund.body["receiver_wallet_id"], order["sender_wallet_id"]);

    // Neither refunded twice nor re-delivered after the refund.
    let again = refund_purchase(&app, &s.finance, &p).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{:?}", again.body);
    let r = redeliver(&app, &s.support, &p).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert_eq!(balance(&app, s.meter_wallet).await, 0);
    // Nothing was sold: no energy sale on either wallet.
    let lines = statement(&app, s.meter_wallet).await;
    assert!(
        lines.iter().all(|l| l["kind"] != "ENERGY_SALE"),
        "{lines:?}"
    );
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}

#[actix_web::test]
async fn purchases_need_staff_with_the_right_permission_in_the_same_tenant() {
    let sts = sts(1).await;
    let app = app_with(&sts).await;
    let s = site(&app, "Own").await;
    deposit(&app, s.meter_wallet, 100_000).await;
    work(&app).await;
    let p = purchases_of(&app, &s.finance, s.meter).await[0].clone();
    let one = format!("/api/v1/purchases/{}", p["id"]);

    // 401 without credentials.
    for (m, url) in [
        ("GET", "/api/v1/purchases".to_owned()),
        ("GET", one.clone()),
    ] {
        let r = app.call(m.parse().unwrap(), &url, &As::Nobody, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{url}");
    }
    let r = redeliver(&app, &As::Nobody, &p).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // 403: TECH reads no money; FINANCE does not re-deliver tokens; MANAGER does not refund.
    let (_, tech) = app.member(s.org, "TECH").await;
    assert_eq!(
        app.get("/api/v1/purchases", &tech).await.status,
        StatusCode::FORBIDDEN
    );
    let r = redeliver(&app, &s.finance, &p).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = refund_purchase(&app, &s.manager, &p).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = put_tariff(&app, &s.finance, s.meter, json!(1)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // 422: a bad filter, a zero tariff, an unknown field.
    let r = app.get("/api/v1/purchases?status=LOST", &s.finance).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    for body in [
        json!({"tariff_minor_per_kwh": 0}),
        json!({"tariff_minor_per_kwh": 5, "extra": 1}),
    ] {
        let r = app
            .put(
                &format!("/api/v1/meters/{}/tariff", s.meter),
                &s.manager,
                body,
            )
            .await;
        assert!(r.status.is_client_error(), "{:?}", r.body);
        assert_ne!(r.status, StatusCode::NO_CONTENT);
    }
    // 404 from another tenant, and their lists do not show it.
    let other = app.organization("Other").await;
    let (_, other_finance) = app.member(other, "FINANCE").await;
    let (_, other_support) = app.member(other, "SUPPORT").await;
    let (_, other_manager) = app.member(other, "MANAGER").await;
    assert_eq!(
        app.get(&one, &other_finance).await.status,
        StatusCode::NOT_FOUND
    );
    let r = redeliver(&app, &other_support, &p).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = refund_purchase(&app, &other_finance, &p).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = put_tariff(&app, &other_manager, s.meter, json!(1)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.get("/api/v1/purchases", &other_finance).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 0);
}

#[actix_web::test]
async fn purchase_and_payout_routes_are_in_the_openapi_document() {
    let app = TestApp::start().await;
    let r = app.get("/api/v1/openapi.json", &As::Nobody).await;
    assert_eq!(r.status, StatusCode::OK);
    let paths = &r.body["paths"];
    for p in [
        "/api/v1/purchases",
        "/api/v1/purchases/{id}",
        "/api/v1/purchases/{id}/redeliver",
        "/api/v1/purchases/{id}/refund",
        "/api/v1/meters/{id}/tariff",
        "/api/v1/payouts",
        "/api/v1/payouts/{id}",
        "/api/v1/payouts/{id}/approve",
        "/api/v1/payouts/{id}/pay",
        "/api/v1/grids/{id}/payout-terms",
    ] {
        assert!(
            paths.get(p).is_some(),
            "{p} is missing from the OpenAPI document"
        );
    }
}
