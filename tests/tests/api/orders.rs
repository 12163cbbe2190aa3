//! Wallets, orders, statements and revenue through the HTTP API: happy paths, validation,
//! authentication, permissions and tenancy.

use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use serde_json::json;
use tiamat_tests::{As, TestApp};

use crate::ledger::{balance, books, deposit, meter_wallet, transfer, verify, wallet_of};
use crate::money::report_revenue;

#[actix_web::test]
async fn money_flows_from_deposit_to_agent_to_meter_and_back() {
    let app = TestApp::start().await;
    let b = books(&app, "Flow").await;
    let (_, meter) = meter_wallet(&app, &b, "FLOW-1").await;
    // New grids are hidden from reporting until an operator shows them.
    report_revenue(&app, &b).await;

    let d = deposit(&app, b.org_wallet, 100_000).await;
    assert_eq!(d["order_type"], "ORGANIZATION_TOPUP");
    assert_eq!(d["sender_owner_type"], "SYSTEM");
    let (s, float) = transfer(&app, &b.finance, b.org_wallet, b.agent_wallet, 50_000).await;
    assert_eq!(s, StatusCode::CREATED, "{float:?}");
    assert_eq!(float["order_type"], "AGENT_TOPUP");
    assert_eq!(float["status"], "COMPLETED");
    assert_eq!(float["grid_id"], b.grid);

    let (s, topup) = transfer(&app, &b.agent_token, b.agent_wallet, meter, 10_000).await;
    assert_eq!(s, StatusCode::CREATED, "{topup:?}");
    assert_eq!(topup["order_type"], "ENERGY_TOPUP");
    assert!(topup["completed_at"].is_string());
    assert_eq!(balance(&app, b.agent_wallet).await, 40_000);
    assert_eq!(balance(&app, meter).await, 10_000);
    assert_eq!(balance(&app, b.org_wallet).await, 50_000);

    // A customer pays its own connection fee.
    let (s, _) = transfer(&app, &b.finance, b.org_wallet, b.customer_wallet, 3_000).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, fee) = transfer(
        &app,
        &b.customer_token,
        b.customer_wallet,
        b.connection_wallet,
        2_500,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{fee:?}");
    assert_eq!(fee["order_type"], "CONNECTION_PAYMENT");
    let cn = app
        .get(&format!("/api/v1/connections/{}", b.connection), &b.manager)
        .await;
    assert_eq!(cn.body["paid"], 2_500, "{:?}", cn.body);

    // The agent's statement: running balances, newest last; and as CSV.
    let st = app
        .get(
            &format!("/api/v1/wallets/{}/statement?limit=1", b.agent_wallet),
            &b.agent_token,
        )
        .await;
    assert_eq!(st.status, StatusCode::OK, "{:?}", st.body);
    assert_eq!(st.body["items"][0]["amount"], 50_000);
    assert_eq!(st.body["items"][0]["balance_after"], 50_000);
    assert_eq!(st.body["items"][0]["counterparty_wallet_id"], b.org_wallet);
    let cursor = st.body["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let st2 = app
        .get(
            &format!(
                "/api/v1/wallets/{}/statement?limit=1&cursor={cursor}",
                b.agent_wallet
            ),
            &b.agent_token,
        )
        .await;
    assert_eq!(st2.body["items"][0]["amount"], -10_000);
    assert_eq!(st2.body["items"][0]["balance_after"], 40_000);
    assert_eq!(st2.body["items"][0]["order_id"], topup["id"]);
    assert!(st2.body["next_cursor"].is_null());
    let csv = app
        .get(
            &format!("/api/v1/wallets/{}/statement.csv", b.agent_wallet),
            &b.finance,
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.body.as_str().expect("CSV text").to_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("entry_id,created_at,order_id"));
    assert!(
        lines[2].ends_with(&format!(",-10000,40000,{meter}")),
        "{text}"
    );

    // Revenue counts the completed top-up for the grid; the refund takes it back.
    let now = chrono::Utc::now();
    let period = format!(
        "from={}&to={}",
        (now - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ"),
        (now + chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ")
    );
    let rev = app
        .get(
            &format!("/api/v1/revenue?grid_id={}&{period}", b.grid),
            &b.finance,
        )
        .await;
    assert_eq!(rev.status, StatusCode::OK, "{:?}", rev.body);
    assert_eq!(rev.body[0]["energy_topup_count"], 1);
    assert_eq!(rev.body[0]["energy_topup_amount"], 10_000);
    assert_eq!(rev.body[0]["connection_payment_amount"], 2_500);
    assert_eq!(rev.body[0]["net_amount"], 12_500);

    let r = app
        .post(
            &format!("/api/v1/orders/{}/refund", topup["id"]),
            &b.finance,
            json!({"reason": "wrong meter"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"], "COMPLETED");
    assert_eq!(r.body["reverses_order_id"], topup["id"]);
    assert_eq!(r.body["sender_wallet_id"], meter);
    assert_eq!(r.body["receiver_wallet_id"], b.agent_wallet);
    assert_eq!(balance(&app, b.agent_wallet).await, 50_000);
    assert_eq!(balance(&app, meter).await, 0);
    let again = app
        .post(
            &format!("/api/v1/orders/{}/refund", topup["id"]),
            &b.finance,
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "refunded once only");
    let rev = app
        .get(
            &format!("/api/v1/revenue?grid_id={}&{period}", b.grid),
            &b.finance,
        )
        .await;
    assert_eq!(rev.body[0]["refunded_amount"], 10_000);
    assert_eq!(rev.body[0]["net_amount"], 2_500);

    // A connection fee refund keeps the paid total in step.
    let r = app
        .post(
            &format!("/api/v1/orders/{}/refund", fee["id"]),
            &b.finance,
            json!({}),
        )
        .await;
    assert_eq!(r.body["order_type"], "CONNECTION_REFUND", "{:?}", r.body);
    let cn = app
        .get(&format!("/api/v1/connections/{}", b.connection), &b.manager)
        .await;
    assert_eq!(cn.body["paid"], 0);

    // Lists and filters.
    let all = app.get("/api/v1/orders", &b.finance).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 7);
    let topups = app
        .get("/api/v1/orders?order_type=ENERGY_TOPUP", &b.finance)
        .await;
    assert_eq!(topups.body["items"].as_array().unwrap().len(), 1);
    let by_wallet = app
        .get(
            &format!("/api/v1/orders?wallet_id={meter}&status=COMPLETED"),
            &b.finance,
        )
        .await;
    assert_eq!(by_wallet.body["items"].as_array().unwrap().len(), 2);
    let mine = app.get("/api/v1/orders", &b.agent_token).await;
    assert_eq!(
        mine.body["items"].as_array().unwrap().len(),
        3,
        "the agent sees its own orders"
    );
    let mine = app.get("/api/v1/wallets", &b.customer_token).await;
    let ids: Vec<i64> = mine.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![b.customer_wallet, b.connection_wallet, meter],
        "own, connection and meter wallets"
    );

    // Every movement is audited.
    let audit = app
        .get(
            &format!(
                "/api/v1/audit-events?resource_type=order&resource_id={}",
                topup["id"]
            ),
            &app.root,
        )
        .await;
    assert_eq!(
        audit.body["items"][0]["action"], "order.transferred",
        "{:?}",
        audit.body
    );
    assert_eq!(audit.body["items"][0]["details"]["status"], "COMPLETED");
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}

#[actix_web::test]
async fn orders_are_validated_authorized_and_tenant_scoped() {
    let app = TestApp::start().await;
    let b = books(&app, "Rules").await;
    let other = books(&app, "Other").await;
    let (_, meter) = meter_wallet(&app, &b, "RULES-1").await;
    deposit(&app, b.org_wallet, 10_000).await;

    // 401 without credentials.
    let (s, _) = transfer(&app, &As::Nobody, b.org_wallet, b.agent_wallet, 1).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/api/v1/wallets", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/api/v1/orders", &As::Nobody).await.status,
        StatusCode::UNAUTHORIZED
    );

    // 422: amount, same wallet, sender given twice or not at all, currency of the wallets.
    let (s, body) = transfer(&app, &b.finance, b.org_wallet, b.org_wallet, 0).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body:?}");
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body:?}");
    let r = app
        .post("/api/v1/orders", &b.finance, json!({"sender_wallet_id": b.org_wallet, "sender_system": "CASH", "receiver_wallet_id": b.agent_wallet, "amount": 5, "currency": "NGN"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .post("/api/v1/orders", &b.finance, json!({"sender_wallet_id": b.org_wallet, "receiver_wallet_id": b.agent_wallet, "amount": 5, "currency": "USD"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "currency");
    // Unknown fields (e.g. a status) are refused.
    let r = app
        .post("/api/v1/orders", &b.finance, json!({"sender_wallet_id": b.org_wallet, "receiver_wallet_id": b.agent_wallet, "amount": 5, "currency": "NGN", "order_status": "COMPLETED"}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "mass assignment refused"
    );
    let r = app.get("/api/v1/wallets?owner_type=BANK", &b.finance).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .get(
            &format!(
                "/api/v1/revenue?grid_id={}&from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
                b.grid
            ),
            &b.finance,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);

    // 403: roles without money rights, an agent spending from another wallet or into another
    // grid, a customer paying into someone else's wallet, finance touching system wallets.
    let (_, developer) = app.member(b.org, "DEVELOPER").await;
    let (s, _) = transfer(&app, &developer, b.org_wallet, b.agent_wallet, 1).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = transfer(&app, &b.manager, b.org_wallet, b.agent_wallet, 1).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "MANAGER reads money but does not move it"
    );
    let (s, _) = transfer(&app, &b.agent_token, b.org_wallet, b.agent_wallet, 1).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = transfer(&app, &b.agent_token, b.agent_wallet, b.customer_wallet, 1).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "agents top up meters and connections only"
    );
    let (s, _) = transfer(
        &app,
        &b.customer_token,
        b.customer_wallet,
        b.agent_wallet,
        1,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let r = app
        .post("/api/v1/orders", &b.finance, json!({"sender_system": "CASH", "receiver_wallet_id": b.org_wallet, "amount": 5, "currency": "NGN"}))
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "money from outside needs a SUPERADMIN"
    );
    let r = app
        .post(
            &format!("/api/v1/orders/{}/refund", 1),
            &b.manager,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/api/v1/wallets", &app.key(b.org, "TECH").await)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let rev = app
        .get(
            "/api/v1/revenue?from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z",
            &b.customer_token,
        )
        .await;
    assert_eq!(rev.status, StatusCode::FORBIDDEN);
    // A wallet the agent may not see is absent, not forbidden.
    let r = app
        .get(&format!("/api/v1/wallets/{}", b.org_wallet), &b.agent_token)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // 404: another tenant's wallets and orders.
    let r = app
        .get(&format!("/api/v1/wallets/{}", other.org_wallet), &b.finance)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .get(
            &format!("/api/v1/wallets/{}/statement", other.org_wallet),
            &b.finance,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .get(
            &format!("/api/v1/wallets/{}/statement.csv", other.org_wallet),
            &b.finance,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let (s, _) = transfer(&app, &b.finance, b.org_wallet, other.agent_wallet, 1).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "money cannot be sent into another tenant"
    );
    let (s, _) = transfer(&app, &b.finance, other.org_wallet, b.agent_wallet, 1).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let theirs = deposit(&app, other.org_wallet, 5).await;
    let r = app
        .get(&format!("/api/v1/orders/{}", theirs["id"]), &b.finance)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .post(
            &format!("/api/v1/orders/{}/refund", theirs["id"]),
            &b.finance,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let listed = app.get("/api/v1/wallets", &b.finance).await;
    assert!(
        listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["organization_id"] == b.org)
    );

    // Insufficient funds: a FAILED order with the reason, and nothing moved.
    let (s, body) = transfer(&app, &b.finance, b.agent_wallet, meter, 1).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(body["status"], "FAILED");
    assert!(
        body["failure_reason"]
            .as_str()
            .unwrap()
            .contains("insufficient funds"),
        "{body:?}"
    );
    let st = app
        .get(
            &format!("/api/v1/wallets/{}/statement", b.agent_wallet),
            &b.finance,
        )
        .await;
    assert!(st.body["items"].as_array().unwrap().is_empty());
    let r = app
        .post(
            &format!("/api/v1/orders/{}/refund", body["id"]),
            &b.finance,
            json!({}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CONFLICT,
        "only completed orders are refunded"
    );
    // A meter's money leaves only as delivered energy or a refund, whoever asks.
    let (s, body) = transfer(&app, &b.finance, meter, b.org_wallet, 1).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body:?}");
    assert!(
        body["detail"].as_str().unwrap().contains("meter wallet"),
        "{body:?}"
    );

    // Idempotency-Key: a retry returns the first answer and moves nothing twice.
    let send = || {
        TestRequest::post()
            .uri("/api/v1/orders")
            .insert_header(("Authorization", match &b.finance { As::Token(t) => format!("Bearer {t}"), _ => unreachable!() }))
            .insert_header(("Idempotency-Key", "float-1"))
            .set_json(json!({"sender_wallet_id": b.org_wallet, "receiver_wallet_id": b.agent_wallet, "amount": 1_000, "currency": "NGN"}))
            .to_request()
    };
    let first = app.send(send()).await;
    let second = app.send(send()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    assert_eq!(second.body["id"], first.body["id"]);
    assert_eq!(second.headers.get("Idempotent-Replayed").unwrap(), "true");
    assert_eq!(balance(&app, b.agent_wallet).await, 1_000);

    // Wallet lookups by owner.
    assert_eq!(
        wallet_of(&app, "CONNECTION", b.connection).await,
        b.connection_wallet
    );
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}
