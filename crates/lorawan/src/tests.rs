use std::collections::BTreeMap;

use chrono::TimeZone;
use grids::vocab::{CommunicationProtocol, MeterPhase};
use kernel::{GridId, MeterId, OrganizationId};
use meters::{InteractionId, InteractionStatus, Origin, StsToken};

use super::*;

const SERIAL: &str = "47003333623";

fn delivery(kind: InteractionType) -> Delivery {
    Delivery {
        id: InteractionId(7),
        organization_id: OrganizationId(1),
        grid_id: GridId(2),
        meter_id: MeterId(3),
        kind,
        origin: Origin::User,
        status: InteractionStatus::Processing,
        priority: 5,
        attempt: 1,
        retries: 0,
        stage: None,
        phase: None,
        phase_results: BTreeMap::new(),
        token: None,
        power_limit_w: None,
        energy_wh: None,
        intended: None,
        protocol: CommunicationProtocol::CalinLorawan,
        meter_phase: MeterPhase::SinglePhase,
        external_reference: SERIAL.into(),
        dev_eui: None,
        timezone: "Africa/Lagos".into(),
        sent_at: None,
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 22, 30, 15).unwrap()
}

fn sent(d: &Delivery) -> calin::Downlink {
    let downlink = CalinLorawan.downlink(d, now()).unwrap();
    assert_eq!(downlink.dev_eui, "0000047003333623");
    assert_eq!(downlink.f_port, 1);
    assert!(downlink.confirmed);
    calin::decode_request(&downlink.data).unwrap()
}

#[test]
fn commands_become_the_calin_frames_the_meter_understands() {
    let address = calin::MeterAddress::new(SERIAL).unwrap();
    let off = sent(&delivery(InteractionType::TurnOff));
    assert_eq!(off.command, calin::Command::TurnOff);
    assert_eq!(off.address, Some(address));
    assert_eq!(
        CalinLorawan
            .downlink(&delivery(InteractionType::TurnOff), now())
            .unwrap()
            .data,
        calin::encode(address, &calin::Command::TurnOff)
    );
    assert_eq!(
        sent(&delivery(InteractionType::ReadCredit)).command,
        calin::Command::ReadCredit
    );
    let mut phase_b = delivery(InteractionType::ReadVoltage);
    phase_b.phase = Some(Phase::B);
    assert_eq!(
        sent(&phase_b).command,
        calin::Command::ReadVoltage(calin::Phase::B)
    );
    let mut top_up = delivery(InteractionType::TopUp);
    top_up.token = Some(StsToken::new("1234 5678 9012 3456 7890"));
    assert_eq!(
        sent(&top_up).command,
        calin::Command::DeliverToken(calin::StsToken::new("12345678901234567890").unwrap())
    );
}

#[test]
fn the_meter_clock_is_set_to_the_grid_local_time() {
    // 22:30:15 UTC is 23:30:15 in Lagos (UTC+1), still 1 March.
    assert_eq!(
        sent(&delivery(InteractionType::SetTime)).command,
        calin::Command::SetTime(calin::TimeOfDay::new(23, 30, 15).unwrap())
    );
    let mut d = delivery(InteractionType::SetDate);
    d.timezone = "Asia/Tokyo".into();
    assert_eq!(
        sent(&d).command,
        calin::Command::SetDate(calin::Date::new(2026, 3, 2).unwrap())
    );
}

#[test]
fn what_cannot_be_sent_is_refused_before_the_network() {
    for kind in [
        InteractionType::ReadVersion,
        InteractionType::ReadReport,
        InteractionType::JoinNetwork,
        // A token command without its token.
        InteractionType::ClearTamper,
    ] {
        assert!(
            CalinLorawan.downlink(&delivery(kind), now()).is_err(),
            "{kind}"
        );
    }
    let mut bad = delivery(InteractionType::TurnOn);
    bad.external_reference = "not-a-serial".into();
    assert!(CalinLorawan.downlink(&bad, now()).is_err());
    let mut v1 = delivery(InteractionType::TurnOn);
    v1.protocol = CommunicationProtocol::CalinV1;
    assert_eq!(
        CalinLorawan.downlink(&v1, now()).unwrap_err(),
        "no delivery adapter for CALIN_V1 meters"
    );
}

#[test]
fn answers_carry_observations_and_refusals_their_reason() {
    let address = calin::MeterAddress::new(SERIAL).unwrap();
    let credit = calin::Response::Credit(calin::CreditReading {
        credit: calin::Credit::from_watt_hours(12_340).unwrap(),
        credit_level: 0,
        relay: calin::RelayState::Off,
    });
    let reply = CalinLorawan
        .uplink(&calin::encode_response(address, &credit))
        .unwrap();
    assert_eq!(
        reply,
        DeviceReply::Answer {
            to: AnswerTo::Read {
                kind: Some(InteractionType::ReadCredit),
                phase: None
            },
            outcome: ReplyOutcome::Executed {
                observations: vec![
                    AttributeValue::Credit(12_340),
                    AttributeValue::Relay(RelayState::Off)
                ]
            }
        }
    );
    let nack = calin::Response::Nack(calin::Nack {
        operation: calin::NackOperation::Token,
        code: 0x01,
    });
    match CalinLorawan
        .uplink(&calin::encode_response(address, &nack))
        .unwrap()
    {
        DeviceReply::Answer {
            to: AnswerTo::Token,
            outcome: ReplyOutcome::Refused { reason, code },
        } => {
            assert_eq!(reason, "token already used");
            assert_eq!(code.as_deref(), Some("calin_01"));
        }
        other => panic!("{other:?}"),
    }
    let accepted = CalinLorawan
        .uplink(&calin::encode_response(
            address,
            &calin::Response::WriteAccepted,
        ))
        .unwrap();
    assert!(matches!(
        accepted,
        DeviceReply::Answer {
            to: AnswerTo::Write,
            ..
        }
    ));
    assert!(CalinLorawan.uplink(&[0x68, 0x00]).is_err());
}
