//! Durable delivery end to end: commands go out through a recording network server, the meter's
//! answers come back as real ChirpStack webhooks through the inbox, and timeouts, verification,
//! retries and the reconciler do what the pipeline promises.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use async_trait::async_trait;
use base64::Engine;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use meters::{
    DeliveryService, DeliveryTimings, Downlink, DownlinkQueue, FixedJitter, NetworkError,
    ReconcilePolicy, RetryPolicy,
};
use serde_json::{Value, json};
use tiamat_tests::{As, TestApp, WEBHOOK_SECRET};

/// A network server that records every downlink it accepts.
#[derive(Clone, Default)]
struct RecordingNetwork {
    sent: Arc<Mutex<Vec<(String, Downlink)>>>,
    next: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
}

#[async_trait]
impl DownlinkQueue for RecordingNetwork {
    async fn enqueue(&self, downlink: Downlink) -> Result<String, NetworkError> {
        if AtomicBool::load(&self.down, Ordering::SeqCst) {
            return Err(NetworkError::Transient("connection refused".into()));
        }
        let id = format!(
            "00000000-0000-4000-8000-{:012}",
            self.next.fetch_add(1, Ordering::SeqCst)
        );
        self.sent
            .lock()
            .unwrap()
            .push((id.clone(), downlink.clone()));
        Ok(id)
    }
}

impl RecordingNetwork {
    fn commands(&self) -> Vec<(String, String, calin::Command)> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(id, d)| {
                let frame = calin::decode_request(&d.data).expect("a valid CALIN frame");
                (id.clone(), d.dev_eui.clone(), frame.command)
            })
            .collect()
    }

    fn last(&self) -> (String, String, calin::Command) {
        self.commands().pop().expect("a downlink")
    }
}

/// A network server whose answer to an enqueue can be held back (while `hold` is set) after it
/// queued the downlink: ChirpStack's events about the queue item can then overtake the answer,
/// as they can on a fast network.
#[derive(Clone, Default)]
struct SlowAnswerNetwork {
    inner: RecordingNetwork,
    hold: Arc<AtomicBool>,
    /// Notified when a held enqueue has queued its downlink.
    queued: Arc<tokio::sync::Notify>,
    /// Lets the held enqueue answer.
    answer: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl DownlinkQueue for SlowAnswerNetwork {
    async fn enqueue(&self, downlink: Downlink) -> Result<String, NetworkError> {
        let id = self.inner.enqueue(downlink).await?;
        if AtomicBool::load(&self.hold, Ordering::SeqCst) {
            self.queued.notify_one();
            self.answer.notified().await;
        }
        Ok(id)
    }
}

fn timings() -> DeliveryTimings {
    DeliveryTimings {
        pacing: chrono::Duration::zero(),
        ..DeliveryTimings::default()
    }
}

fn service(app: &TestApp, net: &RecordingNetwork, timings: DeliveryTimings) -> DeliveryService {
    service_on(app, Arc::new(net.clone()), timings)
}

fn service_on(
    app: &TestApp,
    net: Arc<dyn DownlinkQueue>,
    timings: DeliveryTimings,
) -> DeliveryService {
    let db = Arc::new(app.app.db.clone());
    DeliveryService::new(
        db.clone(),
        db,
        net,
        Arc::new(lorawan::CalinLorawan),
        Arc::new(meters::SystemClock),
        Arc::new(Mutex::new(FixedJitter(0.0))),
    )
    .with_timings(timings)
    .with_retry(RetryPolicy {
        max_retries: 3,
        ..RetryPolicy::default()
    })
}

async fn sql(app: &TestApp, q: &str) {
    let mut c = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(q).execute(&mut c).await.unwrap();
}

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(app: &TestApp, q: &str) -> i64 {
    let mut c = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(q)
        .get_result::<N>(&mut c)
        .await
        .unwrap()
        .n
}

struct Site {
    org: i64,
    grid: i64,
    gateway: i64,
    manager: As,
    key: As,
}

/// An organization with an energised grid and an online LoRaWAN gateway.
async fn site(app: &TestApp, name: &str) -> Site {
    let org = app.organization(name).await;
    let grid = app.grid(org, &format!("{name} grid")).await;
    let (_, manager) = app.member(org, "MANAGER").await;
    let key = app.key(org, "SERVICE").await;
    let gateway = app.online_gateway(&manager, &key, grid, name).await;
    app.energise(&key, grid, true).await;
    Site {
        org,
        grid,
        gateway,
        manager,
        key,
    }
}

/// `n` assigned CALIN LoRaWAN meters on the site's grid, heard from just now (bulk SQL: the
/// HTTP path is tested elsewhere). Answers their ids and serials, in order.
async fn meters_on(app: &TestApp, s: &Site, first_serial: u64, n: usize) -> Vec<(i64, String)> {
    let c = app
        .post(
            "/api/v1/customers",
            &s.manager,
            json!({"grid_id": s.grid, "full_name": "Bulk"}),
        )
        .await;
    let customer = c.body["id"].as_i64().unwrap();
    sql(
        app,
        &format!(
            "WITH c AS (INSERT INTO connections (organization_id, grid_id, customer_id, currency) \
             SELECT {org}, {grid}, {customer}, 'NGN' FROM generate_series(1, {n}) RETURNING id), \
             numbered AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS i FROM c) \
             INSERT INTO meters (organization_id, external_system, external_reference, grid_id, \
             connection_id, dcu_id, assigned_at, last_seen_at, commissioned_at) \
             SELECT {org}, 'CALIN', ({first_serial} + i)::text, {grid}, id, {gw}, now(), now(), now() \
             FROM numbered",
            org = s.org,
            grid = s.grid,
            gw = s.gateway,
        ),
    )
    .await;
    #[derive(diesel::QueryableByName)]
    struct M {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        external_reference: String,
    }
    let mut conn = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(format!(
        "SELECT id, external_reference FROM meters WHERE grid_id = {} \
         AND external_reference::bigint >= {first_serial} ORDER BY external_reference LIMIT {n}",
        s.grid
    ))
    .load::<M>(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .map(|m| (m.id, m.external_reference))
    .collect()
}

async fn command(app: &TestApp, who: &As, meter: i64, kind: &str) -> i64 {
    let r = app
        .post(
            &format!("/api/v1/meters/{meter}/commands"),
            who,
            json!({"kind": kind}),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    r.body["id"].as_i64().unwrap()
}

async fn interaction(app: &TestApp, who: &As, id: i64) -> Value {
    let r = app.get(&format!("/api/v1/interactions/{id}"), who).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

async fn webhook(app: &TestApp, event: &str, body: Value) {
    let req = TestRequest::post()
        .uri(&format!(
            "/api/v1/integrations/chirpstack/events?event={event}"
        ))
        .insert_header(("content-type", "application/json"))
        .insert_header(("X-Webhook-Token", WEBHOOK_SECRET))
        .set_payload(body.to_string())
        .to_request();
    let r = app.send(req).await;
    assert!(r.status.is_success(), "{event}: {:?}", r.body);
}

fn device(dev_eui: &str) -> Value {
    json!({"tenantId": "t", "applicationId": "a", "deviceName": "m", "devEui": dev_eui})
}

async fn txack(app: &TestApp, queue_item: &str, dev_eui: &str) {
    txack_of_downlink(app, queue_item, dev_eui, 1).await;
}

/// A `txack` of one transmission (`downlink_id`): another id is another event at ingest.
async fn txack_of_downlink(app: &TestApp, queue_item: &str, dev_eui: &str, downlink_id: i64) {
    webhook(
        app,
        "txack",
        json!({"downlinkId": downlink_id, "queueItemId": queue_item, "gatewayId": "0016c001f153a14c",
               "deviceInfo": device(dev_eui), "time": chrono::Utc::now().to_rfc3339()}),
    )
    .await;
}

async fn ack(app: &TestApp, queue_item: &str, dev_eui: &str, dedup: &str, acknowledged: bool) {
    webhook(
        app,
        "ack",
        json!({"deduplicationId": dedup, "queueItemId": queue_item, "acknowledged": acknowledged,
               "deviceInfo": device(dev_eui), "time": chrono::Utc::now().to_rfc3339()}),
    )
    .await;
}

async fn up(app: &TestApp, serial: &str, dev_eui: &str, dedup: &str, response: calin::Response) {
    let address = calin::MeterAddress::new(serial).unwrap();
    let data = base64::engine::general_purpose::STANDARD
        .encode(calin::encode_response(address, &response));
    webhook(
        app,
        "up",
        json!({"deduplicationId": dedup, "time": chrono::Utc::now().to_rfc3339(),
               "deviceInfo": device(dev_eui), "devAddr": "00189440", "fCnt": 7, "fPort": 1,
               "data": data, "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": -91, "snr": 7.5}]}),
    )
    .await;
}

async fn process(app: &TestApp, d: &DeliveryService) -> usize {
    tiamat::inbox_worker::run_once(app.app.state.inbox.as_ref(), &app.app.db, Some(d))
        .await
        .unwrap()
}

/// The meter executes and answers: txack, ack and the reply uplink.
async fn answer(
    app: &TestApp,
    d: &DeliveryService,
    queue_item: &str,
    serial: &str,
    dev_eui: &str,
    response: calin::Response,
) {
    let dedup = format!("dd-{queue_item}");
    txack(app, queue_item, dev_eui).await;
    ack(app, queue_item, dev_eui, &dedup, true).await;
    up(app, serial, dev_eui, &dedup, response).await;
    process(app, d).await;
}

fn credit(relay: calin::RelayState) -> calin::Response {
    calin::Response::Credit(calin::CreditReading {
        credit: calin::Credit::from_watt_hours(5_000).unwrap(),
        credit_level: 0,
        relay,
    })
}

async fn shadow_relay(app: &TestApp, meter: i64) -> Value {
    #[derive(diesel::QueryableByName)]
    struct S {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        state: Value,
    }
    let mut c = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    let s: S = diesel::sql_query(format!(
        "SELECT state FROM meter_shadows WHERE meter_id = {meter}"
    ))
    .get_result(&mut c)
    .await
    .unwrap();
    s.state
}

#[actix_web::test]
async fn a_command_goes_out_once_and_succeeds_on_the_meters_answer() {
    let app = TestApp::start().await;
    let s = site(&app, "Deliver").await;
    let (meter, serial) = meters_on(&app, &s, 47003333623, 1).await.remove(0);
    let net = RecordingNetwork::default();
    let d = service(&app, &net, timings());

    let id = command(&app, &s.manager, meter, "TURN_OFF").await;
    let pass = d.send_due(10).await.unwrap();
    assert_eq!(pass.sent, 1);
    let (queue_item, dev_eui, cmd) = net.last();
    assert_eq!(dev_eui, "0000047003333623");
    assert_eq!(cmd, calin::Command::TurnOff);
    let row = interaction(&app, &s.manager, id).await;
    assert_eq!(row["status"], "PROCESSING");
    let status = app
        .get(&format!("/api/v1/interactions/{id}/delivery"), &s.manager)
        .await;
    assert_eq!(status.body["stage"], "DELIVERED_TO_NS", "{:?}", status.body);
    assert_eq!(status.body["queue_item_id"], queue_item.as_str());
    // Nothing else is due: the row is on the wire.
    assert_eq!(d.send_due(10).await.unwrap().sent, 0);

    answer(
        &app,
        &d,
        &queue_item,
        &serial,
        &dev_eui,
        calin::Response::WriteAccepted,
    )
    .await;
    let row = interaction(&app, &s.manager, id).await;
    assert_eq!(row["status"], "SUCCESSFUL", "{row:?}");
    let shadow = shadow_relay(&app, meter).await;
    assert_eq!(
        shadow["attributes"]["relay"]["reported"]["value"]["value"], "OFF",
        "{shadow}"
    );
    // The meter's observed state follows what it reported.
    let m = app
        .get(&format!("/api/v1/meters/{meter}"), &s.manager)
        .await;
    assert_eq!(m.body["observed"]["is_on"], false, "{:?}", m.body);
    // A duplicate delivery of the same events changes nothing, and nothing is sent again.
    answer(
        &app,
        &d,
        &queue_item,
        &serial,
        &dev_eui,
        calin::Response::WriteAccepted,
    )
    .await;
    assert_eq!(d.send_due(10).await.unwrap().sent, 0);
    assert_eq!(net.commands().len(), 1);
    assert_eq!(
        interaction(&app, &s.manager, id).await["status"],
        "SUCCESSFUL"
    );
}

#[actix_web::test]
async fn a_lost_acknowledgement_is_verified_by_a_read_not_a_second_write() {
    let app = TestApp::start().await;
    let s = site(&app, "Ghost").await;
    let (meter, serial) = meters_on(&app, &s, 47003333624, 1).await.remove(0);
    let net = RecordingNetwork::default();
    let d = service(
        &app,
        &net,
        DeliveryTimings {
            reply_timeout: chrono::Duration::zero(),
            ..timings()
        },
    );
    let id = command(&app, &s.manager, meter, "TURN_OFF").await;
    d.send_due(10).await.unwrap();
    let (queue_item, dev_eui, _) = net.last();
    // Transmitted; the meter executed it but its answer was lost.
    txack(&app, &queue_item, &dev_eui).await;
    process(&app, &d).await;
    assert_eq!(d.reap(100).await.unwrap(), 1);
    let row = interaction(&app, &s.manager, id).await;
    assert_eq!(row["status"], "VERIFYING", "{row:?}");
    let status = app
        .get(&format!("/api/v1/interactions/{id}/delivery"), &s.manager)
        .await;
    assert_eq!(status.status, StatusCode::OK, "{:?}", status.body);
    assert_eq!(status.body["status"], "VERIFYING");
    assert_eq!(status.body["attempts"], 1);
    assert!(status.body["verified_by"].is_i64(), "{:?}", status.body);
    assert!(status.body["stage"].is_null());
    assert_eq!(status.body["history"][0]["code"], "timeout");
    assert_eq!(
        app.get(&format!("/api/v1/interactions/{id}/delivery"), &As::Nobody)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let stranger = app.organization("Stranger").await;
    let (_, outsider) = app.member(stranger, "ADMIN").await;
    assert_eq!(
        app.get(&format!("/api/v1/interactions/{id}/delivery"), &outsider)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // The next downlink is a read, not the command again.
    assert_eq!(d.send_due(10).await.unwrap().sent, 1);
    let (read_item, _, cmd) = net.last();
    assert_eq!(cmd, calin::Command::ReadCredit);
    answer(
        &app,
        &d,
        &read_item,
        &serial,
        &dev_eui,
        credit(calin::RelayState::Off),
    )
    .await;
    let row = interaction(&app, &s.manager, id).await;
    assert_eq!(row["status"], "SUCCESSFUL", "{row:?}");
    assert_eq!(row["history"][0]["code"], "verified");
    let writes = net
        .commands()
        .iter()
        .filter(|(_, _, c)| *c == calin::Command::TurnOff)
        .count();
    assert_eq!(writes, 1, "exactly one write");
}

#[actix_web::test]
async fn a_missed_command_fails_after_verification_and_the_reconciler_corrects_it() {
    let app = TestApp::start().await;
    let s = site(&app, "Missed").await;
    let (meter, serial) = meters_on(&app, &s, 47003333625, 1).await.remove(0);
    let net = RecordingNetwork::default();
    let d = service(&app, &net, timings());
    let id = command(&app, &s.manager, meter, "TURN_OFF").await;
    d.send_due(10).await.unwrap();
    let (queue_item, dev_eui, _) = net.last();
    // The device never acknowledged it.
    ack(&app, &queue_item, &dev_eui, "dd-nack", false).await;
    process(&app, &d).await;
    assert_eq!(
        interaction(&app, &s.manager, id).await["status"],
        "VERIFYING"
    );
    d.send_due(10).await.unwrap();
    let (read_item, _, cmd) = net.last();
    assert_eq!(cmd, calin::Command::ReadCredit);
    // The relay is still on: the command really missed.
    answer(
        &app,
        &d,
        &read_item,
        &serial,
        &dev_eui,
        credit(calin::RelayState::On),
    )
    .await;
    let row = interaction(&app, &s.manager, id).await;
    assert_eq!(row["status"], "FAILED", "{row:?}");
    assert_eq!(row["history"][0]["code"], "verification_mismatch");

    // The reconciler closes the drift with one corrective command, and only one.
    let reconciler = app.app.reconciler(ReconcilePolicy {
        intent_cooldown: chrono::Duration::zero(),
        attribute_cooldown: chrono::Duration::hours(1),
        max_attempts: 3,
    });
    // Not while an operator has the meter in manual mode.
    sql(
        &app,
        &format!("UPDATE meters SET manual_mode = true WHERE id = {meter}"),
    )
    .await;
    let report = reconciler.run_once().await.unwrap();
    assert!(report.ran);
    assert_eq!(report.corrected, 0, "{report:?}");
    sql(
        &app,
        &format!("UPDATE meters SET manual_mode = false WHERE id = {meter}"),
    )
    .await;
    let report = reconciler.run_once().await.unwrap();
    assert_eq!(report.corrected, 1, "{report:?}");
    assert_eq!(reconciler.run_once().await.unwrap().corrected, 0);
    d.send_due(10).await.unwrap();
    let (fix_item, _, cmd) = net.last();
    assert_eq!(cmd, calin::Command::TurnOff);
    answer(
        &app,
        &d,
        &fix_item,
        &serial,
        &dev_eui,
        calin::Response::WriteAccepted,
    )
    .await;
    let fixes = app
        .get(
            &format!("/api/v1/interactions?meter_id={meter}&kind=TURN_OFF"),
            &s.manager,
        )
        .await;
    let items = fixes.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        items
            .iter()
            .any(|i| i["origin"] == "reconciler" && i["status"] == "SUCCESSFUL"),
        "{items:?}"
    );
    // Converged: nothing more to correct.
    let later = app.app.reconciler(ReconcilePolicy {
        intent_cooldown: chrono::Duration::zero(),
        attribute_cooldown: chrono::Duration::zero(),
        max_attempts: 3,
    });
    assert_eq!(later.run_once().await.unwrap().corrected, 0);
}

#[actix_web::test]
async fn a_refusal_fails_at_once_and_network_errors_are_retried() {
    let app = TestApp::start().await;
    let s = site(&app, "Refuse").await;
    let (meter, serial) = meters_on(&app, &s, 47003333626, 1).await.remove(0);
    let net = RecordingNetwork::default();
    let d = service(&app, &net, timings());

    // The network server is down: the read waits out a backoff, then goes.
    net.down.store(true, Ordering::SeqCst);
    let read = command(&app, &s.manager, meter, "READ_CREDIT").await;
    assert_eq!(d.send_due(10).await.unwrap().failed, 1);
    let row = interaction(&app, &s.manager, read).await;
    assert_eq!(row["status"], "PROCESSING");
    assert_eq!(row["history"][0]["code"], "network_server_unavailable");
    net.down.store(false, Ordering::SeqCst);
    assert_eq!(d.send_due(10).await.unwrap().sent, 0, "backing off");
    sql(
        &app,
        &format!("UPDATE meter_interactions SET send_after = now() WHERE id = {read}"),
    )
    .await;
    assert_eq!(d.send_due(10).await.unwrap().sent, 1);
    let (item, dev_eui, _) = net.last();
    answer(
        &app,
        &d,
        &item,
        &serial,
        &dev_eui,
        credit(calin::RelayState::On),
    )
    .await;
    assert_eq!(
        interaction(&app, &s.manager, read).await["status"],
        "SUCCESSFUL"
    );

    // The meter refuses a token: FAILED without verification or retry.
    let (_, support) = app.member(s.org, "SUPPORT").await;
    let token = app
        .post(
            &format!("/api/v1/meters/{meter}/commands"),
            &support,
            json!({"kind": "DELIVER_PREEXISTING_TOKEN", "token": "12345678901234567890"}),
        )
        .await;
    assert!(token.status.is_success(), "{:?}", token.body);
    let token = token.body["id"].as_i64().unwrap();
    d.send_due(10).await.unwrap();
    let (item, dev_eui, cmd) = net.last();
    assert!(matches!(cmd, calin::Command::DeliverToken(_)));
    answer(
        &app,
        &d,
        &item,
        &serial,
        &dev_eui,
        calin::Response::Nack(calin::Nack {
            operation: calin::NackOperation::Token,
            code: 0x01,
        }),
    )
    .await;
    let row = interaction(&app, &s.manager, token).await;
    assert_eq!(row["status"], "FAILED", "{row:?}");
    assert!(
        row["history"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("token already used")
    );
    assert_eq!(d.send_due(10).await.unwrap().sent, 0);
}

#[actix_web::test]
async fn a_read_past_its_ttl_expires_and_is_never_sent() {
    let app = TestApp::start().await;
    let s = site(&app, "Ttl").await;
    let (meter, _) = meters_on(&app, &s, 47003333627, 1).await.remove(0);
    let net = RecordingNetwork::default();
    let d = service(&app, &net, timings());
    let read = command(&app, &s.manager, meter, "READ_VOLTAGE").await;
    sql(
        &app,
        &format!(
            "UPDATE meter_interactions SET expires_at = now() - interval '1 second' WHERE id = {read}"
        ),
    )
    .await;
    assert_eq!(d.send_due(10).await.unwrap().sent, 0);
    assert!(net.commands().is_empty());
    assert_eq!(
        interaction(&app, &s.manager, read).await["status"],
        "EXPIRED"
    );
}

#[actix_web::test]
async fn a_worker_killed_mid_delivery_loses_nothing() {
    let app = TestApp::start().await;
    let s = site(&app, "Crash").await;
    let (meter, serial) = meters_on(&app, &s, 47003333628, 1).await.remove(0);
    let net = RecordingNetwork::default();
    let d = service(&app, &net, timings());
    let read = command(&app, &s.manager, meter, "READ_CREDIT").await;
    // A worker claims the read and dies before the network server answers: its lease is all
    // that is left (it ran out at once here).
    let claimed = meters::DeliveryRepo::claim(
        &app.app.db,
        10,
        chrono::Duration::zero(),
        chrono::Utc::now() - chrono::Duration::seconds(1),
    )
    .await
    .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        d.send_due(10).await.unwrap().sent,
        0,
        "leased, not sent twice"
    );
    assert_eq!(d.reap(10).await.unwrap(), 1);
    let row = interaction(&app, &s.manager, read).await;
    assert_eq!(row["status"], "PROCESSING");
    assert_eq!(row["history"][0]["code"], "timeout");
    // Another worker sends it after the backoff and it completes.
    sql(
        &app,
        &format!("UPDATE meter_interactions SET send_after = now() WHERE id = {read}"),
    )
    .await;
    assert_eq!(d.send_due(10).await.unwrap().sent, 1);
    let (item, dev_eui, _) = net.last();
    answer(
        &app,
        &d,
        &item,
        &serial,
        &dev_eui,
        credit(calin::RelayState::On),
    )
    .await;
    assert_eq!(
        interaction(&app, &s.manager, read).await["status"],
        "SUCCESSFUL"
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM meter_interactions WHERE status IN ('QUEUED','PROCESSING','VERIFYING')").await,
        0,
        "nothing stuck"
    );
}

#[actix_web::test]
async fn two_workers_on_one_database_never_send_the_same_command_twice() {
    let app = TestApp::start().await;
    let mut all = Vec::new();
    for g in 0..4u64 {
        let s = site(&app, &format!("Race{g}")).await;
        for (meter, _) in meters_on(&app, &s, 47100000000 + g * 1000, 15).await {
            all.push(command(&app, &s.manager, meter, "READ_CREDIT").await);
        }
    }
    let net = RecordingNetwork::default();
    let a = service(&app, &net, timings());
    let b = service(&app, &net, timings());
    let drain = |d: DeliveryService| async move {
        let mut idle = 0;
        while idle < 3 {
            match d.send_due(2).await.unwrap().sent {
                0 => idle += 1,
                _ => idle = 0,
            }
        }
    };
    tokio::join!(drain(a), drain(b));
    let sent = net.commands();
    assert_eq!(sent.len(), all.len(), "every command sent");
    let mut devices: Vec<String> = sent.iter().map(|(_, e, _)| e.clone()).collect();
    devices.sort();
    devices.dedup();
    assert_eq!(devices.len(), all.len(), "none sent twice");
}

#[actix_web::test]
async fn pacing_sends_at_most_one_downlink_per_grid_per_interval() {
    let app = TestApp::start().await;
    let s = site(&app, "Pace").await;
    let meters = meters_on(&app, &s, 47200000000, 3).await;
    for (m, _) in &meters {
        command(&app, &s.manager, *m, "READ_CREDIT").await;
    }
    let other = site(&app, "Pace2").await;
    let (m2, _) = meters_on(&app, &other, 47300000000, 1).await.remove(0);
    command(&app, &other.manager, m2, "READ_CREDIT").await;
    let net = RecordingNetwork::default();
    let d = service(
        &app,
        &net,
        DeliveryTimings {
            pacing: chrono::Duration::hours(1),
            ..timings()
        },
    );
    // One per grid now; the rest wait for their grid's next slot.
    assert_eq!(d.send_due(10).await.unwrap().sent, 2);
    assert_eq!(d.send_due(10).await.unwrap().sent, 0);
    sql(
        &app,
        &format!(
            "UPDATE downlink_lanes SET next_send_at = now() WHERE grid_id = {}",
            s.grid
        ),
    )
    .await;
    assert_eq!(d.send_due(10).await.unwrap().sent, 1);
}

#[actix_web::test]
async fn commands_queued_during_an_outage_leave_one_per_meter_when_the_gateway_returns() {
    let app = TestApp::start().await;
    let s = site(&app, "Outage").await;
    let meters = meters_on(&app, &s, 47400000000, 600).await;
    app.gateway_online(&s.key, s.gateway, false).await;
    for (m, _) in &meters {
        command(&app, &s.key, *m, "TURN_OFF").await;
    }
    for (m, _) in &meters {
        command(&app, &s.key, *m, "TURN_ON").await;
    }
    let net = RecordingNetwork::default();
    let d = service(&app, &net, timings());
    assert_eq!(d.send_due(1000).await.unwrap().sent, 0, "suspended");
    app.gateway_online(&s.key, s.gateway, true).await;
    let report = app
        .app
        .reconciler(ReconcilePolicy::default())
        .run_once()
        .await
        .unwrap();
    assert_eq!(report.resumed, 600, "{report:?}");
    let pending = count(
        &app,
        &format!(
            "SELECT count(*) AS n FROM meter_interactions WHERE grid_id = {} \
             AND status IN ('QUEUED','SUSPENDED','DEFERRED','PROCESSING','VERIFYING')",
            s.grid
        ),
    )
    .await;
    assert_eq!(pending, 600, "one command per meter");
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) AS n FROM meter_interactions WHERE grid_id = {} \
                 AND status = 'QUEUED' AND kind = 'TURN_ON'",
                s.grid
            )
        )
        .await,
        600
    );
}

#[actix_web::test]
async fn a_three_phase_read_goes_out_per_phase_and_aggregates() {
    let app = TestApp::start().await;
    let s = site(&app, "Phases").await;
    let (meter, serial) = meters_on(&app, &s, 47003333629, 1).await.remove(0);
    sql(
        &app,
        &format!("UPDATE meters SET meter_phase = 'THREE_PHASE' WHERE id = {meter}"),
    )
    .await;
    let net = RecordingNetwork::default();
    let d = service(&app, &net, timings());
    let read = command(&app, &s.manager, meter, "READ_VOLTAGE").await;
    for (phase, centivolts) in [
        (calin::Phase::A, 23_000),
        (calin::Phase::B, 23_100),
        (calin::Phase::C, 23_250),
    ] {
        assert_eq!(d.send_due(10).await.unwrap().sent, 1, "{phase:?}");
        let (item, dev_eui, cmd) = net.last();
        assert_eq!(cmd, calin::Command::ReadVoltage(phase));
        let response = calin::Response::Voltage {
            phase,
            voltage: calin::Voltage::from_centivolts(centivolts).unwrap(),
        };
        answer(&app, &d, &item, &serial, &dev_eui, response).await;
    }
    let row = interaction(&app, &s.manager, read).await;
    assert_eq!(row["status"], "SUCCESSFUL", "{row:?}");
    assert_eq!(d.send_due(10).await.unwrap().sent, 0);
    let shadow = shadow_relay(&app, meter).await;
    assert_eq!(
        shadow["attributes"]["voltage"]["reported"]["value"]["value"], 231.2,
        "{shadow}"
    );
}

#[actix_web::test]
async fn the_reconciliation_mode_is_per_grid_and_shadow_mode_sends_nothing() {
    let app = TestApp::start().await;
    let s = site(&app, "Modes").await;
    let (meter, _) = meters_on(&app, &s, 47003333630, 1).await.remove(0);
    let path = format!("/api/v1/grids/{}/reconciliation", s.grid);
    let r = app.get(&path, &s.manager).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["mode"], "ON");

    // A meter that drifted: the operator wants it off, nothing is on the way.
    let net = RecordingNetwork::default();
    let d = service(&app, &net, timings());
    let id = command(&app, &s.manager, meter, "TURN_OFF").await;
    d.send_due(10).await.unwrap();
    sql(&app, &format!("UPDATE meter_interactions SET status = 'FAILED', delivery_stage = NULL, stage_deadline = NULL WHERE id = {id}")).await;
    let eager = ReconcilePolicy {
        intent_cooldown: chrono::Duration::zero(),
        attribute_cooldown: chrono::Duration::zero(),
        max_attempts: 3,
    };

    let r = app.put(&path, &s.manager, json!({"mode": "SHADOW"})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["mode"], "SHADOW");
    let report = app.app.reconciler(eager).run_once().await.unwrap();
    assert_eq!((report.corrected, report.reported), (0, 1), "{report:?}");
    // The operator sees what SHADOW mode would have sent, without anything being sent.
    let r = app.get(&path, &s.manager).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let shadow = &r.body["shadow_report"];
    assert_eq!(shadow["total"], 1, "{:?}", r.body);
    assert!(shadow["observed_at"].is_string(), "{:?}", r.body);
    let finding = &shadow["findings"][0];
    assert_eq!(finding["meter_id"], meter, "{finding:?}");
    assert_eq!(finding["attribute"], "relay", "{finding:?}");
    assert_eq!(finding["command"], "TURN_OFF", "{finding:?}");
    assert_eq!(finding["attempt"], 1, "{finding:?}");
    app.put(&path, &s.manager, json!({"mode": "OFF"})).await;
    let report = app.app.reconciler(eager).run_once().await.unwrap();
    assert_eq!((report.corrected, report.reported), (0, 0), "{report:?}");
    // The report described that SHADOW period: gone once the mode changed, even on return to
    // SHADOW before the next pass.
    let r = app.get(&path, &s.manager).await;
    assert!(r.body.get("shadow_report").is_none(), "{:?}", r.body);
    app.put(&path, &s.manager, json!({"mode": "SHADOW"})).await;
    let r = app.get(&path, &s.manager).await;
    assert_eq!(r.body["mode"], "SHADOW");
    assert!(r.body.get("shadow_report").is_none(), "{:?}", r.body);
    app.put(&path, &s.manager, json!({"mode": "OFF"})).await;
    app.put(&path, &s.manager, json!({"mode": "ON"})).await;
    // Not within an hour of a batch on the grid: a scan scheduled 30 minutes from now.
    let soon = (chrono::Utc::now() + chrono::Duration::minutes(30))
        .with_timezone(&chrono_tz::Africa::Lagos)
        .format("%H:%M")
        .to_string();
    let rule = app
        .post(
            "/api/v1/directive-batches",
            &s.manager,
            json!({"grid_id": s.grid, "local_time": soon, "is_repeating": true, "action": "SCAN", "scan_kind": "READ_CREDIT"}),
        )
        .await;
    assert_eq!(rule.status, StatusCode::CREATED, "{:?}", rule.body);
    let held = app.app.reconciler(eager).run_once().await.unwrap();
    assert_eq!(held.corrected, 0, "{held:?}");
    let removed = app
        .delete(
            &format!("/api/v1/directive-batches/{}", rule.body["id"]),
            &s.manager,
        )
        .await;
    assert!(removed.status.is_success(), "{:?}", removed.body);
    let report = app.app.reconciler(eager).run_once().await.unwrap();
    assert_eq!(report.corrected, 1, "{report:?}");

    let audit = app
        .get(
            "/api/v1/audit-events?action=grid.reconciliation_mode_changed",
            &s.manager,
        )
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{:?}", audit.body);
    assert_eq!(
        audit.body["items"].as_array().map(Vec::len),
        Some(5),
        "{:?}",
        audit.body
    );

    // Validation, authentication, permission, tenancy.
    let bad = app
        .put(&path, &s.manager, json!({"mode": "SOMETIMES"}))
        .await;
    assert!(
        bad.status == StatusCode::BAD_REQUEST || bad.status == StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        bad.body
    );
    assert_eq!(
        app.put(&path, &As::Nobody, json!({"mode": "ON"}))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let (_, support) = app.member(s.org, "SUPPORT").await;
    assert_eq!(
        app.put(&path, &support, json!({"mode": "ON"})).await.status,
        StatusCode::FORBIDDEN
    );
    let other = app.organization("Elsewhere").await;
    let (_, admin) = app.member(other, "ADMIN").await;
    assert_eq!(
        app.put(&path, &admin, json!({"mode": "OFF"})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get(&path, &admin).await.status, StatusCode::NOT_FOUND);
}

#[derive(diesel::QueryableByName, Debug)]
struct Inbound {
    #[diesel(sql_type = diesel::sql_types::Text)]
    event_type: String,
    #[diesel(sql_type = diesel::sql_types::Int4)]
    attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    processed: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    outcome: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    last_error: Option<String>,
}

/// The stored events about a queue item (by their payload), oldest first.
async fn inbound_about(app: &TestApp, queue_item: &str) -> Vec<Inbound> {
    let mut c = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    diesel::sql_query(
        "SELECT event_type, attempts, processed_at IS NOT NULL AS processed, outcome, last_error \
         FROM inbound_events WHERE payload->>'queueItemId' = $1 ORDER BY id",
    )
    .bind::<diesel::sql_types::Text, _>(queue_item)
    .load(&mut c)
    .await
    .unwrap()
}

async fn delivery_of(app: &TestApp, who: &As, id: i64) -> Value {
    let r = app
        .get(&format!("/api/v1/interactions/{id}/delivery"), who)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

fn deadline_in(status: &Value) -> chrono::Duration {
    let deadline: chrono::DateTime<chrono::Utc> = status["stage_deadline"]
        .as_str()
        .expect("a stage deadline")
        .parse()
        .unwrap();
    deadline - chrono::Utc::now()
}

#[actix_web::test]
async fn a_txack_that_overtakes_the_hand_over_is_retried_and_then_applied() {
    let app = TestApp::start().await;
    let s = site(&app, "Early").await;
    let (meter, _) = meters_on(&app, &s, 47003333631, 1).await.remove(0);
    let net = SlowAnswerNetwork::default();
    AtomicBool::store(&net.hold, true, Ordering::SeqCst);
    let d = service_on(&app, Arc::new(net.clone()), timings());
    let id = command(&app, &s.manager, meter, "TURN_OFF").await;

    let events = async {
        net.queued.notified().await;
        let (queue_item, dev_eui, _) = net.inner.last();
        // ChirpStack transmitted it and the device acknowledged it before tiamat heard back.
        txack(&app, &queue_item, &dev_eui).await;
        ack(&app, &queue_item, &dev_eui, "dd-early", true).await;
        assert_eq!(process(&app, &d).await, 2);
        let waiting = inbound_about(&app, &queue_item).await;
        assert_eq!(waiting.len(), 2, "{waiting:?}");
        for e in &waiting {
            assert!(!e.processed, "{e:?}");
            assert!(
                e.last_error
                    .as_deref()
                    .is_some_and(|m| m.contains("before the hand-over")),
                "{e:?}"
            );
        }
        assert_eq!(delivery_of(&app, &s.manager, id).await["stage"], "SENDING");
        net.answer.notify_one();
        queue_item
    };
    let (pass, queue_item) = tokio::join!(d.send_due(10), events);
    assert_eq!(pass.unwrap().sent, 1);
    assert_eq!(
        delivery_of(&app, &s.manager, id).await["stage"],
        "DELIVERED_TO_NS"
    );

    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(process(&app, &d).await, 2);
    let done = inbound_about(&app, &queue_item).await;
    let outcomes: Vec<_> = done
        .iter()
        .map(|e| {
            (
                e.event_type.as_str(),
                e.processed,
                e.outcome.as_deref(),
                e.attempts,
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("txack", true, Some("transmitted"), 2),
            ("ack", true, Some("acknowledged"), 2)
        ]
    );
    let status = delivery_of(&app, &s.manager, id).await;
    assert_eq!(status["stage"], "SENT_TO_DEVICE", "{status:?}");
    assert!(status["acked_at"].is_string(), "{status:?}");
    // The 12 s reply deadline, not the 15 min transmit one.
    let left = deadline_in(&status);
    assert!(
        left > chrono::Duration::zero() && left <= chrono::Duration::seconds(12),
        "{left:?}"
    );
}

#[actix_web::test]
async fn a_txack_no_hand_over_takes_is_dropped_after_the_window_without_holding_up_others() {
    let app = TestApp::start().await;
    let s = site(&app, "Stray").await;
    let mut meters = meters_on(&app, &s, 47003333632, 2).await;
    let (_, other_serial) = meters.remove(1);
    let (meter, _) = meters.remove(0);
    let net = SlowAnswerNetwork::default();
    AtomicBool::store(&net.hold, true, Ordering::SeqCst);
    let d = service_on(&app, Arc::new(net.clone()), timings());
    command(&app, &s.manager, meter, "READ_CREDIT").await;
    let stray = "00000000-0000-4000-8000-999999999999";

    let events = async {
        net.queued.notified().await;
        let (_, dev_eui, _) = net.inner.last();
        // A txack that no hand-over will record, while one is in flight: it may be early.
        txack(&app, stray, &dev_eui).await;
        assert_eq!(process(&app, &d).await, 1);
        let e = inbound_about(&app, stray).await.remove(0);
        assert!(!e.processed, "{e:?}");
        // Another meter's uplink behind it is processed meanwhile.
        let other_eui = format!("00000{other_serial}");
        up(
            &app,
            &other_serial,
            &other_eui,
            "dd-other",
            credit(calin::RelayState::On),
        )
        .await;
        // (The stray one may be due again by now too: only the uplink is certain.)
        assert!(process(&app, &d).await >= 1);
        assert!(!inbound_about(&app, stray).await[0].processed);
        assert_eq!(
            count(
                &app,
                "SELECT count(*) AS n FROM inbound_events WHERE event_type = 'up' \
                 AND processed_at IS NOT NULL"
            )
            .await,
            1
        );
        // Due again, still within the window: retried again.
        sql(
            &app,
            "UPDATE inbound_events SET locked_until = now() WHERE processed_at IS NULL",
        )
        .await;
        assert_eq!(process(&app, &d).await, 1);
        let e = inbound_about(&app, stray).await.remove(0);
        assert!(!e.processed && e.attempts >= 2, "{e:?}");
        // 31 s pass (the event and the claim move back together), the hand-over still hangs:
        // the window, counted from receipt, is over and the event is dropped as unmatched.
        sql(
            &app,
            "UPDATE inbound_events SET locked_until = now(), \
             received_at = received_at - interval '31 seconds' WHERE processed_at IS NULL",
        )
        .await;
        sql(
            &app,
            "UPDATE meter_interactions SET sent_at = sent_at - interval '31 seconds' \
             WHERE delivery_stage = 'SENDING'",
        )
        .await;
        assert_eq!(process(&app, &d).await, 1);
        net.answer.notify_one();
    };
    let (pass, ()) = tokio::join!(d.send_due(10), events);
    assert_eq!(pass.unwrap().sent, 1);
    let e = inbound_about(&app, stray).await.remove(0);
    assert!(e.processed && e.attempts >= 3, "{e:?}");
    assert!(
        e.outcome
            .as_deref()
            .is_some_and(|o| o.starts_with("txack unmatched")),
        "{e:?}"
    );

    // With no hand-over in flight an unknown id can never become ours: dropped at once.
    let (_, dev_eui, _) = net.inner.last();
    let unknown = "00000000-0000-4000-8000-888888888888";
    txack(&app, unknown, &dev_eui).await;
    assert_eq!(process(&app, &d).await, 1);
    let e = inbound_about(&app, unknown).await.remove(0);
    assert_eq!(
        (e.processed, e.attempts, e.outcome.as_deref()),
        (
            true,
            1,
            Some("txack for nothing on the wire (late or duplicate)")
        )
    );
}

#[actix_web::test]
async fn a_duplicate_txack_after_the_row_moved_on_is_dropped_at_once() {
    let app = TestApp::start().await;
    let s = site(&app, "Dupe").await;
    let mut meters = meters_on(&app, &s, 47003333634, 2).await;
    let (second, _) = meters.remove(1);
    let (first, _) = meters.remove(0);
    let net = SlowAnswerNetwork::default();
    let d = service_on(&app, Arc::new(net.clone()), timings());
    let id = command(&app, &s.manager, first, "TURN_OFF").await;
    assert_eq!(d.send_due(10).await.unwrap().sent, 1);
    let (queue_item, dev_eui, _) = net.inner.last();
    txack(&app, &queue_item, &dev_eui).await;
    assert_eq!(process(&app, &d).await, 1);
    let before = delivery_of(&app, &s.manager, id).await;
    assert_eq!(before["stage"], "SENT_TO_DEVICE");

    // Another meter's command is being handed over when a second transmission's txack of the
    // first downlink comes in: it names a row already past that stage, so it is not retried.
    AtomicBool::store(&net.hold, true, Ordering::SeqCst);
    command(&app, &s.manager, second, "TURN_OFF").await;
    let events = async {
        net.queued.notified().await;
        txack_of_downlink(&app, &queue_item, &dev_eui, 2).await;
        assert_eq!(process(&app, &d).await, 1);
        net.answer.notify_one();
    };
    let (pass, ()) = tokio::join!(d.send_due(10), events);
    assert_eq!(pass.unwrap().sent, 1);
    let events = inbound_about(&app, &queue_item).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        (
            events[1].processed,
            events[1].attempts,
            events[1].outcome.as_deref()
        ),
        (
            true,
            1,
            Some("txack for nothing on the wire (late or duplicate)")
        )
    );
    let after = delivery_of(&app, &s.manager, id).await;
    assert_eq!(after["stage_deadline"], before["stage_deadline"]);
}
