use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use tiamat_tests::{As, TestApp, WEBHOOK_SECRET};

const PATH: &str = "/api/v1/integrations/chirpstack/events";

fn uplink(dedup: &str, dev_eui: &str, gateway: &str, time: &str) -> Value {
    json!({
        "deduplicationId": dedup, "time": time,
        "deviceInfo": {"tenantId": "t", "applicationId": "a", "deviceName": "m", "devEui": dev_eui},
        "devAddr": "00189440", "fCnt": 7, "fPort": 1, "data": "aGk=",
        "rxInfo": [{"gatewayId": gateway, "rssi": -91, "snr": 7.5}]
    })
}

async fn post(
    app: &TestApp,
    event: &str,
    token: Option<&str>,
    body: &[u8],
    content_type: &str,
) -> tiamat_tests::Reply {
    let mut req = TestRequest::post()
        .uri(&format!("{PATH}?event={event}"))
        .insert_header(("content-type", content_type))
        .set_payload(body.to_vec());
    if let Some(t) = token {
        req = req.insert_header(("X-Webhook-Token", t));
    }
    app.send(req.to_request()).await
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut c = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut c)
        .await
        .unwrap()
        .n
}

#[actix_web::test]
async fn events_are_authenticated_stored_once_and_malformed_ones_nowhere() {
    let app = TestApp::start().await;
    let body = uplink(
        "dd-1",
        "0101010101010101",
        "0016c001f153a14c",
        "2026-11-27T10:00:00Z",
    )
    .to_string();

    assert_eq!(
        post(&app, "up", None, body.as_bytes(), "application/json")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(
            &app,
            "up",
            Some("wrong-secret-wrong"),
            body.as_bytes(),
            "application/json"
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .send(
            TestRequest::post()
                .uri(&format!("{PATH}?event=up"))
                .insert_header(("Authorization", format!("Bearer {WEBHOOK_SECRET}")))
                .insert_header(("content-type", "application/json"))
                .set_payload(body.clone())
                .to_request(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"stored": true, "duplicate": false, "ignored": false})
    );
    let again = post(
        &app,
        "up",
        Some(WEBHOOK_SECRET),
        body.as_bytes(),
        "application/json",
    )
    .await;
    assert_eq!(
        again.body,
        json!({"stored": false, "duplicate": true, "ignored": false})
    );

    let bad = post(
        &app,
        "up",
        Some(WEBHOOK_SECRET),
        b"{\"deduplicationId\": ",
        "application/json",
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = post(
        &app,
        "ack",
        Some(WEBHOOK_SECRET),
        &[0xff, 0x01],
        "application/octet-stream",
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let ignored = post(
        &app,
        "integration",
        Some(WEBHOOK_SECRET),
        b"{}",
        "application/json",
    )
    .await;
    assert_eq!(ignored.body["ignored"], true);
    assert_eq!(
        post(&app, "", Some(WEBHOOK_SECRET), b"{}", "application/json")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM inbound_events").await,
        1,
        "one stored row: no duplicate, no malformed, no ignored"
    );
}

#[actix_web::test]
async fn uplinks_mark_meters_and_gateways_seen() {
    let app = TestApp::start().await;
    let org = app.organization("A").await;
    let grid = app.grid(org, "G").await;
    let (_, manager) = app.member(org, "MANAGER").await;
    let c = app
        .post(
            "/api/v1/customers",
            &manager,
            json!({"grid_id": grid, "full_name": "C"}),
        )
        .await;
    let conn = app
        .post(
            "/api/v1/connections",
            &manager,
            json!({"customer_id": c.body["id"]}),
        )
        .await;
    let m = app.post("/api/v1/meters", &manager, json!({"external_system": "CALIN", "external_reference": "47003333623", "lorawan_dev_eui": "0101010101010101"})).await;
    assert_eq!(m.status, StatusCode::CREATED, "{:?}", m.body);
    let mid = m.body["id"].as_i64().unwrap();
    app.post(
        &format!("/api/v1/meters/{mid}/assign"),
        &manager,
        json!({"connection_id": conn.body["id"]}),
    )
    .await;
    let gw = app.post("/api/v1/dcus", &manager, json!({"external_system": "CHIRPSTACK", "external_reference": "0016c001f153a14c", "communication_protocol": "CALIN_LORAWAN"})).await;
    let gw = gw.body["id"].as_i64().unwrap();
    let bad_eui = app
        .patch(
            &format!("/api/v1/meters/{mid}"),
            &manager,
            json!({"lorawan_dev_eui": "xyz"}),
        )
        .await;
    assert_eq!(bad_eui.status, StatusCode::UNPROCESSABLE_ENTITY);

    let now = chrono::Utc::now();
    let later = now.to_rfc3339();
    let earlier = (now - chrono::Duration::minutes(10)).to_rfc3339();
    for (dedup, t) in [("u-2", &later), ("u-1", &earlier)] {
        let r = post(
            &app,
            "up",
            Some(WEBHOOK_SECRET),
            uplink(dedup, "0101010101010101", "0016C001F153A14C", t)
                .to_string()
                .as_bytes(),
            "application/json",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let unknown = uplink("u-3", "ffffffffffffffff", "0016c001f153a14c", &later).to_string();
    post(
        &app,
        "up",
        Some(WEBHOOK_SECRET),
        unknown.as_bytes(),
        "application/json",
    )
    .await;
    let processed = tiamat::inbox_worker::run_once(app.app.state.inbox.as_ref(), &app.app.db, None)
        .await
        .unwrap();
    assert_eq!(processed, 3);

    let meter = app.get(&format!("/api/v1/meters/{mid}"), &manager).await;
    let seen = chrono::DateTime::parse_from_rfc3339(
        meter.body["observed"]["last_seen_at"].as_str().unwrap(),
    )
    .unwrap();
    assert!(
        (seen.timestamp() - now.timestamp()).abs() <= 1,
        "the older uplink, processed last, did not move last_seen_at back"
    );
    assert_eq!(meter.body["observed"]["signal_rssi"], -91);
    let gateway = app.get(&format!("/api/v1/dcus/{gw}"), &manager).await;
    assert_eq!(gateway.body["is_online"], true);
    let conn_stats = app
        .get(
            &format!("/api/v1/grids/{grid}/connectivity?minutes=5"),
            &manager,
        )
        .await;
    assert_eq!(conn_stats.body["meters"]["share_seen"], 1.0);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM inbound_events WHERE processed_at IS NOT NULL"
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM inbound_events WHERE outcome = 'no meter has this DevEUI'"
        )
        .await,
        1
    );
    let _ = As::Nobody;
}

#[actix_web::test]
async fn two_workers_never_process_an_event_twice_and_abandoned_leases_are_taken_over() {
    let app = TestApp::start().await;
    for i in 0..120 {
        let body = uplink(
            &format!("d-{i}"),
            "0202020202020202",
            "aa",
            "2026-11-27T10:00:00Z",
        )
        .to_string();
        post(
            &app,
            "up",
            Some(WEBHOOK_SECRET),
            body.as_bytes(),
            "application/json",
        )
        .await;
    }
    // A worker that claims events and dies before finishing them.
    let abandoned = app.app.state.inbox.claim(20, 1).await.unwrap();
    assert_eq!(abandoned.len(), 20);
    let inbox = app.app.state.inbox.clone();
    let (a, b) = tokio::join!(
        tiamat::inbox_worker::run_once(inbox.as_ref(), &app.app.db, None),
        tiamat::inbox_worker::run_once(inbox.as_ref(), &app.app.db, None)
    );
    assert_eq!(
        a.unwrap() + b.unwrap(),
        100,
        "the leased 20 are skipped; the rest split between the workers"
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM inbound_events WHERE attempts > 1"
        )
        .await,
        0,
        "nothing claimed twice"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let taken_over = tiamat::inbox_worker::run_once(inbox.as_ref(), &app.app.db, None)
        .await
        .unwrap();
    assert_eq!(taken_over, 20, "expired leases are picked up");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM inbound_events WHERE processed_at IS NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM inbound_events WHERE attempts = 2"
        )
        .await,
        20
    );
}

#[actix_web::test]
async fn early_retries_leave_an_event_its_whole_error_budget() {
    let app = TestApp::start().await;
    let mut c = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    // An event this worker fails on every time (no payment pipeline is given to it).
    diesel::sql_query(
        "INSERT INTO inbound_events (source, event_type, dedup_key, payload) \
         VALUES ('flutterwave', 'charge.completed', 'early-budget', '{}')",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let inbox = app.app.state.inbox.clone();
    // It came early ten times first (as a txack before its hand-over does, every 200 ms → 5 s).
    for _ in 0..10 {
        let claimed = inbox.claim(10, 30).await.unwrap();
        assert_eq!(claimed.len(), 1);
        inbox
            .retry_early(claimed[0].id, "too early".into(), chrono::Duration::zero())
            .await
            .unwrap();
    }
    let state = || async {
        count(
            &app,
            "SELECT (attempts * 1000 + early_retries * 10 + (processed_at IS NOT NULL)::int)::bigint \
             AS n FROM inbound_events WHERE dedup_key = 'early-budget'",
        )
        .await
    };
    assert_eq!(state().await, 10_100);
    let due_now = "UPDATE inbound_events SET locked_until = now() WHERE processed_at IS NULL";
    // Then it fails: nine errors are retried ...
    for errors in 1..=9 {
        diesel::sql_query(due_now).execute(&mut c).await.unwrap();
        let n = tiamat::inbox_worker::run_once(inbox.as_ref(), &app.app.db, None)
            .await
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(state().await, (10 + errors) * 1000 + 100, "error {errors}");
    }
    // ... and the tenth parks it as failed.
    diesel::sql_query(due_now).execute(&mut c).await.unwrap();
    tiamat::inbox_worker::run_once(inbox.as_ref(), &app.app.db, None)
        .await
        .unwrap();
    assert_eq!(state().await, 20_101);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) AS n FROM inbound_events WHERE dedup_key = 'early-budget' \
             AND outcome = 'failed' AND last_error LIKE '%no payment pipeline%'"
        )
        .await,
        1
    );
}
