//! The simulator end to end: tiamat's real ChirpStack gRPC adapter enqueues CALIN frames, a
//! wiremock server stands in for tiamat's webhook, and the events it receives are parsed with
//! tiamat's own parser.

use std::time::Duration;

use calin::{Command, MeterAddress, NackOperation, NackReason, Response, StsToken};
use chirpstack::{ChirpstackDeviceApi, ChirpstackSettings, Detail, DeviceEvent, Encoding};
use meter_sim::{Faults, MeterState, SimConfig, SimHandle, TokenEffect, Webhook};
use meters::{DeviceRegistration, DeviceRegistry, Downlink, DownlinkQueue, Registered};
use secrecy::SecretString;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SERIAL: &str = "47003333623";
const DEV_EUI: &str = "0000047003333623";
const SECRET: &str = "webhook-secret-1234";
const EVENTS_PATH: &str = "/api/v1/integrations/chirpstack/events";

struct Rig {
    sim: SimHandle,
    tiamat: MockServer,
    api: ChirpstackDeviceApi,
}

async fn rig(faults: Faults, auto_register: bool) -> Rig {
    let tiamat = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(EVENTS_PATH))
        .and(header("X-Webhook-Token", SECRET))
        .respond_with(ResponseTemplate::new(202))
        .mount(&tiamat)
        .await;
    let sim = meter_sim::start(SimConfig {
        webhook: Some(Webhook {
            url: format!("{}{EVENTS_PATH}", tiamat.uri()).parse().unwrap(),
            secret: Some(SECRET.into()),
        }),
        latency: Duration::from_millis(20),
        faults,
        seed: Some(7),
        auto_register,
        api_token: Some("sim-token".into()),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let api = ChirpstackDeviceApi::new(ChirpstackSettings {
        url: sim.grpc_url(),
        api_token: SecretString::from("sim-token"),
        application_id: meter_sim::DEFAULT_APPLICATION_ID.into(),
        device_profile_id: meter_sim::DEFAULT_DEVICE_PROFILE_ID.into(),
        app_key: SecretString::from("00112233445566778899aabbccddeeff"),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    Rig { sim, tiamat, api }
}

fn frame(command: Command) -> Downlink {
    Downlink {
        dev_eui: DEV_EUI.into(),
        f_port: 1,
        confirmed: true,
        data: calin::encode(MeterAddress::new(SERIAL).unwrap(), &command),
    }
}

/// The events tiamat received, parsed as tiamat parses them.
async fn received(tiamat: &MockServer) -> Vec<DeviceEvent> {
    let requests = tiamat.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .map(|r| {
            let event = r
                .url
                .query_pairs()
                .find(|(k, _)| k == "event")
                .map(|(_, v)| v.into_owned())
                .expect("?event=");
            chirpstack::parse(&event, Encoding::Json, &r.body).expect("tiamat parses the event")
        })
        .collect()
}

/// Waits until tiamat has received `n` events (or a few seconds pass).
async fn wait_for(tiamat: &MockServer, n: usize) -> Vec<DeviceEvent> {
    for _ in 0..200 {
        let events = received(tiamat).await;
        if events.len() >= n {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    received(tiamat).await
}

/// Waits for `n` events, then a little longer to see that nothing more comes.
async fn settle(tiamat: &MockServer, n: usize) -> Vec<DeviceEvent> {
    wait_for(tiamat, n).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    received(tiamat).await
}

fn reply(events: &[DeviceEvent]) -> Response {
    let data = events
        .iter()
        .find_map(|e| match &e.detail {
            Detail::Up { data, .. } => Some(data.clone()),
            _ => None,
        })
        .expect("an up event");
    let uplink = calin::decode_uplink(&data).expect("a CALIN reply");
    // The DLMS power-limit reply is the one frame without an address.
    if !matches!(uplink.response, Response::PowerLimit { .. }) {
        assert_eq!(uplink.address, Some(MeterAddress::new(SERIAL).unwrap()));
    }
    uplink.response
}

#[tokio::test]
async fn turn_off_posts_txack_ack_and_a_write_accepted_reply() {
    let rig = rig(Faults::default(), true).await;
    let id = rig.api.enqueue(frame(Command::TurnOff)).await.unwrap();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);

    let events = settle(&rig.tiamat, 3).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    assert_eq!(events[0].event, "txack", "txack comes first");
    assert!(
        matches!(&events[0].detail, Detail::TxAck { queue_item_id, gateway_id }
        if *queue_item_id == id && gateway_id == "0016c001f153a14c")
    );
    let ack = events
        .iter()
        .find(|e| e.event == "ack")
        .expect("an ack event");
    assert!(
        matches!(&ack.detail, Detail::Ack { queue_item_id, acknowledged: true } if *queue_item_id == id)
    );
    let up = events
        .iter()
        .find(|e| e.event == "up")
        .expect("an up event");
    // The ack and the uplink that carried it share the deduplication id.
    assert_eq!(
        ack.json["deduplicationId"], up.json["deduplicationId"],
        "{ack:#?} {up:#?}"
    );
    assert!(matches!(
        &up.detail,
        Detail::Up {
            f_port: 1,
            best_rssi: Some(_),
            ..
        }
    ));
    for e in &events {
        assert_eq!(e.dev_eui.as_deref(), Some(DEV_EUI));
    }
    assert_eq!(reply(&events), Response::WriteAccepted);

    let meter = rig.sim.meter(DEV_EUI).unwrap();
    assert!(!meter.relay_on);
    let c = rig.sim.counters_for(DEV_EUI).unwrap();
    assert_eq!(
        (
            c.downlinks_received,
            c.txacks_sent,
            c.executed,
            c.replies_sent,
            c.acks_sent
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(c.webhook_posts, 3);
    assert_eq!(rig.sim.queue_len(DEV_EUI), 0);
}

#[tokio::test]
async fn reads_answer_from_the_meter_state() {
    let rig = rig(Faults::default(), true).await;
    rig.sim.set_meter(
        DEV_EUI,
        MeterState {
            credit_wh: 12_340,
            relay_on: false,
            power_limit_w: 600,
            ..MeterState::default()
        },
    );
    rig.api.enqueue(frame(Command::ReadCredit)).await.unwrap();
    match reply(&wait_for(&rig.tiamat, 3).await) {
        Response::Credit(c) => {
            assert_eq!(c.credit.watt_hours(), 12_340);
            assert_eq!(c.relay, calin::RelayState::Off);
        }
        other => panic!("{other:?}"),
    }
    rig.tiamat.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&rig.tiamat)
        .await;
    rig.api
        .enqueue(frame(Command::ReadPowerLimit))
        .await
        .unwrap();
    match reply(&wait_for(&rig.tiamat, 3).await) {
        Response::PowerLimit { limit } => assert_eq!(limit.get(), 600),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_reused_token_is_refused() {
    let rig = rig(Faults::default(), true).await;
    let token = "12345678901234567890";
    rig.sim
        .prime_token(DEV_EUI, token, TokenEffect::AddCredit { wh: 5_000 })
        .unwrap();
    let deliver = || frame(Command::DeliverToken(StsToken::new(token).unwrap()));
    rig.api.enqueue(deliver()).await.unwrap();
    assert_eq!(
        reply(&wait_for(&rig.tiamat, 3).await),
        Response::TokenAccepted
    );
    assert_eq!(rig.sim.meter(DEV_EUI).unwrap().credit_wh, 55_000);

    rig.tiamat.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&rig.tiamat)
        .await;
    rig.api.enqueue(deliver()).await.unwrap();
    match reply(&wait_for(&rig.tiamat, 3).await) {
        Response::Nack(n) => {
            assert_eq!(n.operation, NackOperation::Token);
            assert_eq!(n.reason(), NackReason::TokenAlreadyUsed);
        }
        other => panic!("{other:?}"),
    }
    let meter = rig.sim.meter(DEV_EUI).unwrap();
    assert_eq!(meter.credit_wh, 55_000, "credited once");
    assert_eq!(meter.tokens_accepted, 1);
    assert_eq!(meter.tokens_seen, [token, token]);
}

#[tokio::test]
async fn a_ghost_executes_but_only_the_txack_arrives() {
    let rig = rig(
        Faults {
            ghost: 1.0,
            ..Faults::default()
        },
        true,
    )
    .await;
    let id = rig.api.enqueue(frame(Command::TurnOff)).await.unwrap();
    let events = settle(&rig.tiamat, 1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(
        matches!(&events[0].detail, Detail::TxAck { queue_item_id, .. } if *queue_item_id == id)
    );
    assert!(!rig.sim.meter(DEV_EUI).unwrap().relay_on, "executed");
    let c = rig.sim.counters();
    assert_eq!((c.executed, c.ghosted, c.replies_sent), (1, 1, 0));
}

#[tokio::test]
async fn a_lost_downlink_is_not_executed() {
    let rig = rig(
        Faults {
            loss: 1.0,
            ..Faults::default()
        },
        true,
    )
    .await;
    rig.api.enqueue(frame(Command::TurnOff)).await.unwrap();
    let events = settle(&rig.tiamat, 1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].event, "txack");
    assert!(rig.sim.meter(DEV_EUI).unwrap().relay_on, "not executed");
    assert_eq!(rig.sim.counters().executed, 0);
    assert_eq!(rig.sim.counters().lost, 1);
}

#[tokio::test]
async fn faults_change_at_runtime_nak_and_ack_false() {
    let rig = rig(Faults::default(), true).await;
    rig.sim
        .set_faults(Faults {
            nak: 1.0,
            ..Faults::default()
        })
        .unwrap();
    rig.api.enqueue(frame(Command::TurnOff)).await.unwrap();
    let events = settle(&rig.tiamat, 3).await;
    assert!(matches!(reply(&events), Response::Nack(n) if n.operation == NackOperation::Write));
    assert!(
        rig.sim.meter(DEV_EUI).unwrap().relay_on,
        "refused, not executed"
    );

    rig.sim
        .set_faults(Faults {
            ack_false: 1.0,
            ..Faults::default()
        })
        .unwrap();
    rig.tiamat.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&rig.tiamat)
        .await;
    let id = rig.api.enqueue(frame(Command::TurnOff)).await.unwrap();
    let events = settle(&rig.tiamat, 2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(events.iter().any(|e| matches!(&e.detail,
        Detail::Ack { queue_item_id, acknowledged: false } if *queue_item_id == id)));
    assert!(rig.sim.meter(DEV_EUI).unwrap().relay_on);
    assert!(
        rig.sim
            .set_faults(Faults {
                loss: 0.7,
                nak: 0.7,
                ..Faults::default()
            })
            .is_err()
    );
}

#[tokio::test]
async fn a_frame_for_another_meter_gets_no_reply() {
    let rig = rig(Faults::default(), true).await;
    let mut downlink = frame(Command::TurnOff);
    downlink.dev_eui = "0000047003333624".into();
    rig.api.enqueue(downlink).await.unwrap();
    let events = settle(&rig.tiamat, 1).await;
    assert_eq!(events.len(), 1, "only the txack: {events:#?}");
    assert!(rig.sim.meter("0000047003333624").unwrap().relay_on);
    assert_eq!(rig.sim.counters().ignored, 1);
}

#[tokio::test]
async fn unknown_devices_are_refused_like_chirpstack_unless_auto_registered() {
    let rig = rig(Faults::default(), false).await;
    let err = rig.api.enqueue(frame(Command::TurnOff)).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("not registered"), "{err}");

    let device = DeviceRegistration {
        dev_eui: DEV_EUI.into(),
        name: SERIAL.into(),
        description: "test meter".into(),
    };
    assert_eq!(
        rig.api.register(device.clone()).await.unwrap(),
        Registered::Created
    );
    assert_eq!(
        rig.api.register(device).await.unwrap(),
        Registered::AlreadyExisted
    );
    rig.api.enqueue(frame(Command::TurnOff)).await.unwrap();
    assert_eq!(
        reply(&wait_for(&rig.tiamat, 3).await),
        Response::WriteAccepted
    );
    // Events name the application the device was registered in.
    let events = received(&rig.tiamat).await;
    assert_eq!(
        events[0].json["deviceInfo"]["applicationId"],
        meter_sim::DEFAULT_APPLICATION_ID
    );
    rig.api.remove(DEV_EUI).await.unwrap();
    rig.api.remove(DEV_EUI).await.unwrap();
    assert!(rig.sim.devices().is_empty());
}

#[tokio::test]
async fn a_wrong_api_token_is_unauthenticated() {
    let rig = rig(Faults::default(), true).await;
    let api = ChirpstackDeviceApi::new(ChirpstackSettings {
        url: rig.sim.grpc_url(),
        api_token: SecretString::from("wrong"),
        application_id: "a".into(),
        device_profile_id: "p".into(),
        app_key: SecretString::from("00112233445566778899aabbccddeeff"),
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let err = api.enqueue(frame(Command::TurnOff)).await.unwrap_err();
    assert!(
        matches!(&err, meters::NetworkError::Permanent { code: Some(c), .. } if c == "Unauthenticated"),
        "{err:?}"
    );
    assert_eq!(rig.sim.counters().downlinks_received, 0);
}

#[tokio::test]
async fn webhook_failures_are_counted_not_fatal() {
    let rig = rig(Faults::default(), true).await;
    rig.tiamat.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&rig.tiamat)
        .await;
    rig.api.enqueue(frame(Command::TurnOn)).await.unwrap();
    wait_for(&rig.tiamat, 3).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rig.sim.counters().webhook_failures, 3);
    assert_eq!(rig.sim.events().len(), 3);
    // Still serving.
    rig.api.enqueue(frame(Command::TurnOff)).await.unwrap();
}

#[tokio::test]
async fn hourly_reports_are_sent_when_configured() {
    let tiamat = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&tiamat)
        .await;
    let sim = meter_sim::start(SimConfig {
        webhook: Some(Webhook {
            url: format!("{}{EVENTS_PATH}", tiamat.uri()).parse().unwrap(),
            secret: None,
        }),
        report_interval: Some(Duration::from_millis(50)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.set_meter(DEV_EUI, MeterState::default());
    let events = wait_for(&tiamat, 1).await;
    let Detail::Up { data, .. } = &events[0].detail else {
        panic!("{events:#?}")
    };
    let report = calin::decode(data).unwrap();
    assert!(report.is_unsolicited(), "{report:?}");
}
