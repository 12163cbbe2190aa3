use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use meters::{
    DeviceRegistration, DeviceRegistry, InteractionId, InteractionRepo, InteractionStatus,
    NetworkError, Registered, Transition,
};
use serde_json::{Value, json};
use tiamat_tests::{As, TestApp};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A network server that records what it was asked and can be told to refuse.
#[derive(Default)]
pub struct FakeRegistry {
    pub registered: Mutex<Vec<String>>,
    pub removed: Mutex<Vec<String>>,
    pub refuse: Mutex<Option<NetworkError>>,
}

#[async_trait::async_trait]
impl DeviceRegistry for FakeRegistry {
    async fn register(&self, device: DeviceRegistration) -> Result<Registered, NetworkError> {
        if let Some(e) = self.refuse.lock().unwrap().clone() {
            return Err(e);
        }
        self.registered.lock().unwrap().push(device.dev_eui);
        Ok(Registered::Created)
    }
    async fn remove(&self, dev_eui: &str) -> Result<(), NetworkError> {
        self.removed.lock().unwrap().push(dev_eui.to_owned());
        Ok(())
    }
}

/// An STS generator answering every request with a token.
pub async fn sts() -> MockServer {
    let sts = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"token": "1234 5678 9012 3456 7890"})),
        )
        .mount(&sts)
        .await;
    sts
}

/// The app with an STS generator and (if given) a network server.
pub async fn app_with(sts: Option<&MockServer>, registry: Option<Arc<FakeRegistry>>) -> TestApp {
    let url = sts.map(|s| s.uri());
    TestApp::start_with_state(
        |cfg| cfg.sts_generator_url = url.map(|u| u.parse().unwrap()),
        |state| state.devices = registry.map(|r| r as Arc<dyn DeviceRegistry>),
    )
    .await
}

/// An organization with an energised grid, an online LoRaWAN gateway and a meter (with a
/// decoder key, recently heard) assigned to a connection.
pub struct Site {
    pub org: i64,
    pub meter: i64,
    pub serial: String,
    pub manager: As,
    pub tech: As,
}

pub async fn site(app: &TestApp, name: &str) -> Site {
    let org = app.organization(name).await;
    let grid = app.grid(org, &format!("{name} grid")).await;
    let (_, manager) = app.member(org, "MANAGER").await;
    let (_, tech) = app.member(org, "TECH").await;
    let key = app.key(org, "SERVICE").await;
    app.online_gateway(&manager, &key, grid, name).await;
    app.energise(&key, grid, true).await;
    let serial = format!("4700{:07}", org);
    let meter = app
        .connected_meter(
            &manager,
            grid,
            json!({"external_system": "CALIN", "external_reference": serial, "decoder_key": "0123456789ABCDEF"}),
        )
        .await;
    app.heard_now(&key, meter).await;
    Site {
        org,
        meter,
        serial,
        manager,
        tech,
    }
}

/// Moves an interaction as the delivery pipeline would.
pub async fn drive(app: &TestApp, id: i64, steps: &[(InteractionStatus, Transition)]) {
    for (from, event) in steps {
        let moved = app
            .app
            .db
            .transition(InteractionId(id), *from, *event, None)
            .await
            .unwrap();
        assert!(moved.is_some(), "interaction {id} was not {from:?}");
    }
}

pub const SUCCEED: [(InteractionStatus, Transition); 2] = [
    (InteractionStatus::Queued, Transition::Claim),
    (InteractionStatus::Processing, Transition::Acked),
];
pub const FAIL: [(InteractionStatus, Transition); 2] = [
    (InteractionStatus::Queued, Transition::Claim),
    (InteractionStatus::Processing, Transition::Rejected),
];

async fn advance(app: &TestApp) -> usize {
    tiamat::commissioning_worker::run_once(&app.app.state.services.installs)
        .await
        .unwrap()
}

fn statuses(c: &Value) -> Vec<String> {
    c["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_owned())
        .collect()
}

fn step_id(c: &Value, i: usize) -> i64 {
    c["steps"][i]["interaction_id"].as_i64().unwrap()
}

async fn commissioned_at_is_set(app: &TestApp, meter: i64) -> bool {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        done: bool,
    }
    let mut c = AsyncPgConnection::establish(&app.db.url).await.unwrap();
    let r: Row = diesel::sql_query(format!(
        "SELECT commissioned_at IS NOT NULL AS done FROM meters WHERE id = {meter}"
    ))
    .get_result(&mut c)
    .await
    .unwrap();
    r.done
}

#[actix_web::test]
async fn install_registers_the_device_and_commissions_step_by_step() {
    let sts = sts().await;
    let registry = Arc::new(FakeRegistry::default());
    let app = app_with(Some(&sts), Some(registry.clone())).await;
    let s = site(&app, "A").await;

    let r = app
        .post(
            &format!("/api/v1/meters/{}/install", s.meter),
            &s.tech,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["session"]["operation"], "INSTALL");
    assert_eq!(r.body["session"]["registration_status"], "SUCCESSFUL");
    assert_eq!(
        *registry.registered.lock().unwrap(),
        [format!("{:0>16}", s.serial)]
    );
    let c = &r.body["commissioning"];
    assert_eq!(c["status"], "PENDING");
    let kinds: Vec<_> = c["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "CLEAR_TAMPER",
            "CLEAR_CREDIT",
            "SET_POWER_LIMIT",
            "READ_VOLTAGE",
            "READ_POWER"
        ]
    );
    assert_eq!(
        statuses(c),
        ["QUEUED", "DEFERRED", "DEFERRED", "DEFERRED", "DEFERRED"]
    );
    let id = c["id"].as_i64().unwrap();
    // Full service is off: the limit is the meter's high-priority-service limit.
    let limit = app
        .get(
            &format!("/api/v1/interactions/{}", step_id(c, 2)),
            &s.manager,
        )
        .await;
    assert_eq!(limit.body["power_limit_w"], 200);
    assert_eq!(limit.body["commissioning_id"], id);

    let again = app
        .post(
            &format!("/api/v1/meters/{}/install", s.meter),
            &s.tech,
            json!({}),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "a running commissioning is answered"
    );
    assert_eq!(again.body["commissioning"]["id"], id);
    assert_eq!(registry.registered.lock().unwrap().len(), 1);

    let mut c = c.clone();
    for i in 0..5 {
        drive(&app, step_id(&c, i), &SUCCEED).await;
        let before = app
            .get(&format!("/api/v1/commissionings/{id}"), &s.manager)
            .await;
        if i < 4 {
            assert_eq!(
                before.body["steps"][i + 1]["status"],
                "DEFERRED",
                "one at a time"
            );
        }
        assert!(advance(&app).await >= 1);
        let now = app
            .get(&format!("/api/v1/commissionings/{id}"), &s.manager)
            .await;
        assert_eq!(now.status, StatusCode::OK);
        c = now.body;
        if i < 4 {
            assert_eq!(c["status"], "PROCESSING");
            assert_eq!(
                c["steps"][i + 1]["status"],
                "QUEUED",
                "step {i} released the next"
            );
            assert!(!commissioned_at_is_set(&app, s.meter).await);
        }
    }
    assert_eq!(c["status"], "SUCCESSFUL");
    assert!(c["finished_at"].is_string());
    assert!(commissioned_at_is_set(&app, s.meter).await);
    let meter = app
        .get(&format!("/api/v1/meters/{}", s.meter), &s.manager)
        .await;
    assert!(meter.body["commissioned_at"].is_string(), "{}", meter.body);
    assert_eq!(meter.body["manual_mode"], false);
    let manual = app
        .patch(
            &format!("/api/v1/meters/{}", s.meter),
            &s.manager,
            json!({"manual_mode": true}),
        )
        .await;
    assert_eq!(manual.status, StatusCode::OK, "{:?}", manual.body);
    assert_eq!(manual.body["manual_mode"], true);
    let r = app
        .patch(
            &format!("/api/v1/meters/{}", s.meter),
            &s.manager,
            json!({"manual_mode": "yes"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(advance(&app).await, 0, "nothing changed, nothing to do");

    let list = app
        .get(
            &format!("/api/v1/meters/{}/commissionings", s.meter),
            &s.manager,
        )
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["items"][0]["id"], id);
    let trail = app
        .get(
            "/api/v1/audit-events?resource_type=meter_commissioning",
            &s.manager,
        )
        .await;
    let actions: Vec<_> = trail.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "meter_commissioning.started",
            "meter_commissioning.succeeded"
        ]
    );
}

#[actix_web::test]
async fn a_failed_step_aborts_the_rest_and_a_retry_starts_afresh() {
    let sts = sts().await;
    let registry = Arc::new(FakeRegistry::default());
    let app = app_with(Some(&sts), Some(registry)).await;
    let s = site(&app, "A").await;
    let r = app
        .post(
            &format!("/api/v1/meters/{}/install", s.meter),
            &s.tech,
            json!({}),
        )
        .await;
    let first = r.body["commissioning"].clone();
    let first_id = first["id"].as_i64().unwrap();
    drive(&app, step_id(&first, 0), &SUCCEED).await;
    advance(&app).await;
    drive(&app, step_id(&first, 1), &FAIL).await;
    advance(&app).await;
    let failed = app
        .get(&format!("/api/v1/commissionings/{first_id}"), &s.manager)
        .await
        .body;
    assert_eq!(failed["status"], "FAILED");
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .contains("CLEAR_CREDIT"),
        "{failed}"
    );
    assert_eq!(
        statuses(&failed),
        ["SUCCESSFUL", "FAILED", "ABORTED", "ABORTED", "ABORTED"]
    );
    assert!(!commissioned_at_is_set(&app, s.meter).await);

    // Access to retry.
    let (_, developer) = app.member(s.org, "DEVELOPER").await;
    let other = site(&app, "B").await;
    let url = format!("/api/v1/commissionings/{first_id}/retry");
    assert_eq!(
        app.post(&url, &As::Nobody, json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(&url, &developer, json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post(&url, &other.tech, json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(
            &format!("/api/v1/commissionings/{first_id}"),
            &other.manager
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post("/api/v1/commissionings/999999/retry", &s.tech, json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let retried = app.post(&url, &s.tech, json!({})).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{:?}", retried.body);
    assert_eq!(retried.body["retry_of"], first_id);
    assert_eq!(
        statuses(&retried.body),
        ["QUEUED", "DEFERRED", "DEFERRED", "DEFERRED", "DEFERRED"]
    );
    let second_id = retried.body["id"].as_i64().unwrap();
    assert_eq!(
        app.post(&url, &s.tech, json!({})).await.status,
        StatusCode::CONFLICT,
        "the meter already has a running commissioning"
    );

    // A PENDING one counts as stalled: its pending steps are aborted and a new one starts.
    let third = app
        .post(
            &format!("/api/v1/commissionings/{second_id}/retry"),
            &s.tech,
            json!({}),
        )
        .await;
    assert_eq!(third.status, StatusCode::CREATED, "{:?}", third.body);
    let second = app
        .get(&format!("/api/v1/commissionings/{second_id}"), &s.manager)
        .await
        .body;
    assert_eq!(second["status"], "FAILED");
    assert_eq!(statuses(&second), ["ABORTED"; 5]);

    // A PROCESSING one is under way: 409.
    let third_id = third.body["id"].as_i64().unwrap();
    drive(&app, step_id(&third.body, 0), &SUCCEED[..1]).await;
    advance(&app).await;
    let r = app
        .post(
            &format!("/api/v1/commissionings/{third_id}/retry"),
            &s.tech,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
}

#[actix_web::test]
async fn install_refusals() {
    let sts = sts().await;
    let registry = Arc::new(FakeRegistry::default());
    let app = app_with(Some(&sts), Some(registry.clone())).await;
    let s = site(&app, "A").await;
    let other = site(&app, "B").await;
    let url = format!("/api/v1/meters/{}/install", s.meter);
    assert_eq!(
        app.post(&url, &As::Nobody, json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(&url, &s.manager, json!({})).await.status,
        StatusCode::FORBIDDEN,
        "installing is for technicians"
    );
    assert_eq!(
        app.post(&url, &other.tech, json!({})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post("/api/v1/meters/abc/install", &s.tech, json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let inventory = app
        .post(
            "/api/v1/meters",
            &s.manager,
            json!({"external_system": "CALIN", "external_reference": "47009999999"}),
        )
        .await;
    let r = app
        .post(
            &format!("/api/v1/meters/{}/install", inventory.body["id"]),
            &s.tech,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "not assigned: {:?}", r.body);
    let keyless = app
        .patch(
            &format!("/api/v1/meters/{}", s.meter),
            &s.manager,
            json!({"decoder_key": null}),
        )
        .await;
    assert_eq!(keyless.body["has_decoder_key"], false);
    let r = app.post(&url, &s.tech, json!({})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["errors"][0]["field"], "decoder_key");
    assert!(
        registry.registered.lock().unwrap().is_empty(),
        "nothing was done"
    );
    app.patch(
        &format!("/api/v1/meters/{}", s.meter),
        &s.manager,
        json!({"decoder_key": "0123456789ABCDEF"}),
    )
    .await;

    *registry.refuse.lock().unwrap() = Some(NetworkError::Permanent {
        reason: "device profile missing".into(),
        code: None,
    });
    let r = app.post(&url, &s.tech, json!({})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("device profile")
    );
    *registry.refuse.lock().unwrap() = Some(NetworkError::Transient("timeout".into()));
    let r = app.post(&url, &s.tech, json!({})).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.body["code"], "integration_unavailable");
    let list = app
        .get(
            &format!("/api/v1/meters/{}/commissionings", s.meter),
            &s.manager,
        )
        .await;
    assert_eq!(list.body["items"], json!([]), "nothing started");
    let trail = app
        .get(
            "/api/v1/audit-events?resource_type=install_session",
            &s.manager,
        )
        .await;
    assert!(
        trail.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["details"]["status"] == "FAILED"),
        "failed attempts are kept: {}",
        trail.body
    );

    // No network server, or no STS generator: 503.
    let bare = app_with(Some(&sts), None).await;
    let s = site(&bare, "C").await;
    let r = bare
        .post(
            &format!("/api/v1/meters/{}/install", s.meter),
            &s.tech,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("network server")
    );
    let no_sts = app_with(None, Some(Arc::new(FakeRegistry::default()))).await;
    let s = site(&no_sts, "D").await;
    let r = no_sts
        .post(
            &format!("/api/v1/meters/{}/install", s.meter),
            &s.tech,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert!(r.body["detail"].as_str().unwrap().contains("STS"));
}

#[actix_web::test]
async fn uninstall_removes_the_device_aborts_work_and_unassigns() {
    let sts = sts().await;
    let registry = Arc::new(FakeRegistry::default());
    let app = app_with(Some(&sts), Some(registry.clone())).await;
    let s = site(&app, "A").await;
    let other = site(&app, "B").await;
    let r = app
        .post(
            &format!("/api/v1/meters/{}/install", s.meter),
            &s.tech,
            json!({}),
        )
        .await;
    let commissioning = r.body["commissioning"]["id"].as_i64().unwrap();
    let off = app
        .post(
            &format!("/api/v1/meters/{}/commands", s.meter),
            &s.manager,
            json!({"kind": "TURN_OFF"}),
        )
        .await;
    assert_eq!(off.status, StatusCode::CREATED, "{:?}", off.body);

    let url = format!("/api/v1/meters/{}/uninstall", s.meter);
    assert_eq!(
        app.post(&url, &As::Nobody, json!({})).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post(&url, &s.manager, json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post(&url, &other.tech, json!({})).await.status,
        StatusCode::NOT_FOUND
    );

    let r = app.post(&url, &s.tech, json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["session"]["operation"], "UNINSTALL");
    assert_eq!(r.body["session"]["registration_status"], "SUCCESSFUL");
    assert_eq!(
        *registry.removed.lock().unwrap(),
        [format!("{:0>16}", s.serial)]
    );
    assert_eq!(r.body["meter"]["connection_id"], Value::Null);
    assert_eq!(r.body["meter"]["grid_id"], Value::Null);
    assert_eq!(r.body["meter"]["commissioned_at"], Value::Null);
    assert_eq!(
        r.body["aborted_interactions"].as_array().unwrap().len(),
        6,
        "five commissioning steps and the TURN_OFF"
    );
    let off_now = app
        .get(
            &format!("/api/v1/interactions/{}", off.body["id"]),
            &s.manager,
        )
        .await;
    assert_eq!(off_now.body["status"], "ABORTED");
    assert_eq!(off_now.body["history"][0]["code"], "uninstalled");
    let c = app
        .get(
            &format!("/api/v1/commissionings/{commissioning}"),
            &s.manager,
        )
        .await;
    assert_eq!(c.body["status"], "FAILED");
    assert_eq!(statuses(&c.body), ["ABORTED"; 5]);
    assert_eq!(
        app.post(&url, &s.tech, json!({})).await.status,
        StatusCode::CONFLICT,
        "not installed any more"
    );
    // The runner leaves a finished commissioning alone.
    advance(&app).await;
    let c = app
        .get(
            &format!("/api/v1/commissionings/{commissioning}"),
            &s.manager,
        )
        .await;
    assert_eq!(c.body["status"], "FAILED");
}

#[actix_web::test]
async fn a_step_held_for_a_silent_meter_goes_out_once_the_meter_is_heard() {
    let sts = sts().await;
    let app = app_with(Some(&sts), Some(Arc::new(FakeRegistry::default()))).await;
    let s = site(&app, "A").await;
    let key = app.key(s.org, "SERVICE").await;
    let heard = |at: chrono::DateTime<chrono::Utc>| json!({"states": [{"id": s.meter, "last_seen_at": at.to_rfc3339()}]});
    let two_hours_ago = chrono::Utc::now() - chrono::Duration::hours(2);
    app.put("/api/v1/meters/state", &key, heard(two_hours_ago))
        .await;
    let r = app
        .post(
            &format!("/api/v1/meters/{}/install", s.meter),
            &s.tech,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["commissioning"]["id"].as_i64().unwrap();
    let first = &r.body["commissioning"]["steps"][0];
    assert_eq!(first["status"], "DEFERRED");
    assert_eq!(first["last_event"]["code"], "meter_silent");
    advance(&app).await;
    let c = app
        .get(&format!("/api/v1/commissionings/{id}"), &s.manager)
        .await;
    assert_eq!(
        statuses(&c.body),
        ["DEFERRED"; 5],
        "still silent: nothing moves"
    );

    app.put("/api/v1/meters/state", &key, heard(chrono::Utc::now()))
        .await;
    assert_eq!(advance(&app).await, 1);
    let c = app
        .get(&format!("/api/v1/commissionings/{id}"), &s.manager)
        .await;
    assert_eq!(
        statuses(&c.body),
        ["QUEUED", "DEFERRED", "DEFERRED", "DEFERRED", "DEFERRED"],
        "heard: the first step goes out, the rest keep waiting their turn"
    );
}

#[actix_web::test]
async fn two_runners_never_take_the_same_commissioning() {
    let sts = sts().await;
    let app = app_with(Some(&sts), Some(Arc::new(FakeRegistry::default()))).await;
    let mut started = Vec::new();
    for name in ["A", "B", "C"] {
        let s = site(&app, name).await;
        let r = app
            .post(
                &format!("/api/v1/meters/{}/install", s.meter),
                &s.tech,
                json!({}),
            )
            .await;
        started.push((r.body["commissioning"]["id"].as_i64().unwrap(), s.tech));
    }
    // The first pass sees every new commissioning once.
    advance(&app).await;
    for (id, tech) in &started {
        let c = app.get(&format!("/api/v1/commissionings/{id}"), tech).await;
        drive(&app, step_id(&c.body, 0), &SUCCEED).await;
    }
    // A second instance on the same database; both run at once. A runner may look at a
    // commissioning again after the other released its step (a no-op), but no step is released
    // twice and none is skipped.
    let other = app.serve().await;
    let (a, b) = tokio::join!(
        tiamat::commissioning_worker::run_once(&app.app.state.services.installs),
        tiamat::commissioning_worker::run_once(&other.app.state.services.installs),
    );
    assert!(a.unwrap() + b.unwrap() >= 3, "every commissioning advanced");
    while advance(&app).await > 0 {}
    for (id, tech) in &started {
        let c = app.get(&format!("/api/v1/commissionings/{id}"), tech).await;
        let st = statuses(&c.body);
        assert_eq!(st[0], "SUCCESSFUL", "{st:?}");
        assert_eq!(st[1], "QUEUED", "the second step released: {st:?}");
        assert!(
            st[2..].iter().all(|s| s == "DEFERRED"),
            "nothing skipped: {st:?}"
        );
        let second = app
            .get(
                &format!("/api/v1/interactions/{}", step_id(&c.body, 1)),
                tech,
            )
            .await;
        let releases = second.body["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["code"] == "commissioning_step_released")
            .count();
        assert_eq!(releases, 1, "released once: {:?}", second.body["history"]);
    }
}

#[actix_web::test]
async fn the_openapi_document_lists_install_and_token_routes() {
    let app = TestApp::start().await;
    let doc = app.get("/api/v1/openapi.json", &As::Nobody).await;
    let paths = doc.body["paths"].as_object().unwrap();
    for (p, verb) in [
        ("/api/v1/meters/{id}/install", "post"),
        ("/api/v1/meters/{id}/uninstall", "post"),
        ("/api/v1/meters/{id}/commissionings", "get"),
        ("/api/v1/commissionings/{id}", "get"),
        ("/api/v1/commissionings/{id}/retry", "post"),
        ("/api/v1/meters/{id}/tokens", "post"),
        ("/api/v1/meters/offline-clear-tamper-tokens", "post"),
        ("/api/v1/interactions/{id}/retry", "post"),
    ] {
        assert!(
            paths.get(p).and_then(|o| o.get(verb)).is_some(),
            "{verb} {p}"
        );
    }
}

#[actix_web::test]
async fn the_grid_hears_when_a_meter_is_commissioned() {
    let sts = sts().await;
    let app = app_with(Some(&sts), Some(Arc::new(FakeRegistry::default()))).await;
    let s = site(&app, "A").await;
    let heard: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = heard.clone();
    let listener = store::listener::spawn(
        app.db.url.clone(),
        move |_grid, payload| {
            sink.lock()
                .unwrap()
                .push(serde_json::from_str(&payload).unwrap())
        },
        |_| {},
    );
    assert!(
        listener
            .wait_listening(std::time::Duration::from_secs(5))
            .await
    );
    let r = app
        .post(
            &format!("/api/v1/meters/{}/install", s.meter),
            &s.tech,
            json!({}),
        )
        .await;
    let mut c = r.body["commissioning"].clone();
    let id = c["id"].as_i64().unwrap();
    for i in 0..5 {
        drive(&app, step_id(&c, i), &SUCCEED).await;
        advance(&app).await;
        c = app
            .get(&format!("/api/v1/commissionings/{id}"), &s.manager)
            .await
            .body;
    }
    assert_eq!(c["status"], "SUCCESSFUL");
    let mut commissioned = false;
    for _ in 0..100 {
        commissioned = heard.lock().unwrap().iter().any(|e| {
            e["type"] == "meter"
                && e["data"]["id"] == s.meter
                && e["data"]["commissioned_at"].is_string()
        });
        if commissioned {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(commissioned, "a meter event carries commissioned_at");
}
