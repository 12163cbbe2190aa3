//! The whole pipeline against meter-sim: a real tiamat instance (HTTP, inbox worker, delivery
//! workers) sends CALIN frames through the real ChirpStack gRPC adapter to the simulator, whose
//! meters execute them and post the real webhook sequence back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use chirpstack::{ChirpstackDeviceApi, ChirpstackSettings};
use meter_sim::{Faults, SimConfig, SimHandle, Webhook};
use meters::{DeliveryService, DeliveryTimings, FixedJitter, RetryPolicy};
use serde_json::{Value, json};
use tiamat_tests::{As, Server, TestApp, WEBHOOK_SECRET};

const EVENTS: &str = "/api/v1/integrations/chirpstack/events";

struct Rig {
    app: TestApp,
    _server: Server,
    sim: SimHandle,
    manager: As,
    meters: Vec<(i64, String)>,
    _workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for w in &self._workers {
            w.abort();
        }
    }
}

async fn rig(n: usize, faults: Faults, reply_timeout: chrono::Duration) -> Rig {
    let app = TestApp::start().await;
    let server = app.serve().await;
    let sim = meter_sim::start(SimConfig {
        webhook: Some(Webhook {
            url: server.url(EVENTS).parse().unwrap(),
            secret: Some(WEBHOOK_SECRET.into()),
        }),
        latency: Duration::ZERO,
        faults,
        seed: Some(7),
        ..SimConfig::default()
    })
    .await
    .expect("meter-sim starts");
    let api = ChirpstackDeviceApi::new(ChirpstackSettings {
        url: sim.grpc_url(),
        api_token: secrecy::SecretString::from("sim-token".to_owned()),
        application_id: "00000000-0000-4000-8000-000000000001".into(),
        device_profile_id: "00000000-0000-4000-8000-000000000002".into(),
        app_key: secrecy::SecretString::from("00112233445566778899aabbccddeeff".to_owned()),
        timeout: Duration::from_secs(5),
    })
    .expect("client");
    let db = Arc::new(server.app.db.clone());
    let delivery = DeliveryService::new(
        db.clone(),
        db,
        Arc::new(api),
        Arc::new(lorawan::CalinLorawan),
        Arc::new(meters::SystemClock),
        Arc::new(Mutex::new(FixedJitter(0.0))),
    )
    .with_timings(DeliveryTimings {
        pacing: chrono::Duration::zero(),
        reply_timeout,
        ..DeliveryTimings::default()
    })
    .with_retry(RetryPolicy {
        base: chrono::Duration::milliseconds(100),
        ..RetryPolicy::default()
    });
    let mut workers = tiamat::delivery_worker::spawn(
        delivery.clone(),
        tiamat::delivery_worker::Polling {
            sender: Duration::from_millis(20),
            reaper: Duration::from_millis(100),
        },
        server.app.state.wakes.delivery.clone(),
    );
    workers.push(tiamat::inbox_worker::spawn(
        &server.app,
        Some(delivery),
        Duration::from_millis(20),
    ));

    let org = app.organization("Sim Co").await;
    let grid = app.grid(org, "Sim grid").await;
    let (_, manager) = app.member(org, "MANAGER").await;
    let key = app.key(org, "SERVICE").await;
    let gw = app.post("/api/v1/dcus", &manager, json!({"external_system": "CHIRPSTACK", "external_reference": "0016c001f153a14c", "communication_protocol": "CALIN_LORAWAN"})).await;
    let gw = gw.body["id"].as_i64().unwrap();
    app.post(
        &format!("/api/v1/dcus/{gw}/assign"),
        &manager,
        json!({"grid_id": grid}),
    )
    .await;
    app.put(
        "/api/v1/dcus/state",
        &key,
        json!({"states": [{"id": gw, "is_online": true}]}),
    )
    .await;
    app.put(
        &format!("/api/v1/grids/{grid}/state"),
        &key,
        json!({"is_hps_on": true}),
    )
    .await;
    let mut meters = Vec::new();
    for i in 0..n {
        let serial = format!("{}", 47_500_000_000u64 + i as u64);
        let c = app
            .post(
                "/api/v1/customers",
                &manager,
                json!({"grid_id": grid, "full_name": format!("C{i}")}),
            )
            .await;
        let conn = app
            .post(
                "/api/v1/connections",
                &manager,
                json!({"customer_id": c.body["id"]}),
            )
            .await;
        let m = app
            .post("/api/v1/meters", &manager, json!({"external_system": "CALIN", "external_reference": serial, "communication_protocol": "CALIN_LORAWAN"}))
            .await;
        let id = m.body["id"].as_i64().unwrap();
        let r = app
            .post(
                &format!("/api/v1/meters/{id}/assign"),
                &manager,
                json!({"connection_id": conn.body["id"]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        app.put(
            "/api/v1/meters/state",
            &key,
            json!({"states": [{"id": id, "last_seen_at": chrono::Utc::now().to_rfc3339()}]}),
        )
        .await;
        meters.push((id, serial));
    }
    Rig {
        app,
        _server: server,
        sim,
        manager,
        meters,
        _workers: workers,
    }
}

fn dev_eui(serial: &str) -> String {
    format!("{serial:0>16}")
}

async fn command(r: &Rig, meter: i64, kind: &str) -> i64 {
    let c = r
        .app
        .post(
            &format!("/api/v1/meters/{meter}/commands"),
            &r.manager,
            json!({"kind": kind}),
        )
        .await;
    assert!(c.status.is_success(), "{:?}", c.body);
    c.body["id"].as_i64().unwrap()
}

/// Polls until the interaction is terminal (or 20 s pass).
async fn settled(r: &Rig, id: i64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = r
            .app
            .get(&format!("/api/v1/interactions/{id}"), &r.manager)
            .await;
        let status = got.body["status"].as_str().unwrap_or_default().to_owned();
        if ["SUCCESSFUL", "FAILED", "ABORTED", "SUPERSEDED", "EXPIRED"].contains(&status.as_str())
            || std::time::Instant::now() > deadline
        {
            return got.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn commands_complete_through_the_simulated_network_and_meters() {
    let r = rig(5, Faults::default(), chrono::Duration::seconds(5)).await;
    let mut ids = Vec::new();
    for (meter, _) in &r.meters {
        ids.push(command(&r, *meter, "TURN_OFF").await);
        ids.push(command(&r, *meter, "READ_CREDIT").await);
    }
    for id in ids {
        let row = settled(&r, id).await;
        assert_eq!(row["status"], "SUCCESSFUL", "{row:?}");
    }
    for (_, serial) in &r.meters {
        let state = r
            .sim
            .meter(&dev_eui(serial))
            .expect("the sim knows the meter");
        assert!(!state.relay_on, "{state:?}");
        let counters = r.sim.counters_for(&dev_eui(serial)).unwrap();
        assert_eq!(counters.downlinks_received, 2, "one downlink per command");
    }
}

#[actix_web::test]
async fn a_ghost_success_is_verified_by_a_read_without_a_second_write() {
    let r = rig(1, Faults::default(), chrono::Duration::milliseconds(500)).await;
    let (meter, serial) = r.meters[0].clone();
    let eui = dev_eui(&serial);
    // The meter executes the command but its acknowledgement and answer are lost.
    r.sim
        .set_faults(Faults {
            ghost: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let id = command(&r, meter, "TURN_OFF").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while r.sim.counters_for(&eui).map_or(0, |c| c.ghosted) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sim never got the downlink"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    r.sim.set_faults(Faults::default()).unwrap();
    let row = settled(&r, id).await;
    assert_eq!(row["status"], "SUCCESSFUL", "{row:?}");
    assert_eq!(row["history"][0]["code"], "verified", "{row:?}");
    let counters = r.sim.counters_for(&eui).unwrap();
    assert_eq!(
        counters.downlinks_received, 2,
        "the command once, then a read: {counters:?}"
    );
    assert!(!r.sim.meter(&eui).unwrap().relay_on);
}

#[actix_web::test]
async fn a_refused_command_fails_without_retrying() {
    let r = rig(1, Faults::default(), chrono::Duration::seconds(5)).await;
    let (meter, serial) = r.meters[0].clone();
    r.sim
        .set_faults(Faults {
            nak: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let id = command(&r, meter, "TURN_ON").await;
    let row = settled(&r, id).await;
    assert_eq!(row["status"], "FAILED", "{row:?}");
    assert_eq!(
        r.sim
            .counters_for(&dev_eui(&serial))
            .unwrap()
            .downlinks_received,
        1
    );
}
