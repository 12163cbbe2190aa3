//! Byte-exact test vectors.
//!
//! The "spec" vectors are copied from the reference document (§3.2, §3.3, §3.6); the others were
//! computed by hand (outside this crate) from the layouts of §3.1 and the offsets of §3.5, for
//! meter 47003333623.

use calin::{
    Command, Credit, CreditReading, Current, DataId, Date, DecodeError, Energy, FloatKwh,
    MeterAddress, MeterStatus, Nack, NackOperation, NackReason, Phase, Power, PowerLimit,
    READ_POWER_LIMIT_REQUEST, RelayState, ReportCurrent, ReportVoltage, Response, StsToken,
    TimeOfDay, Voltage, Weekday, decode, decode_request, decode_uplink, encode, encode_response,
};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).expect("test vector is hex"))
        .collect()
}

fn meter() -> MeterAddress {
    MeterAddress::new("47003333623").unwrap()
}

fn token() -> StsToken {
    StsToken::new("12345678901234567890").unwrap()
}

// ---------------------------------------------------------------------------------------------
// §3.3 worked examples (requests), byte for byte.
// ---------------------------------------------------------------------------------------------

#[test]
fn spec_3_3_turn_off() {
    let frame = hex("68 23 36 33 03 70 04 68 04 07 6F F3 33 33 33 33 68 74 16");
    assert_eq!(encode(meter(), &Command::TurnOff), frame);
    assert_eq!(decode_request(&frame).unwrap().command, Command::TurnOff);
}

#[test]
fn spec_3_3_turn_on() {
    let frame = hex("68 23 36 33 03 70 04 68 04 07 70 F3 33 33 33 33 C9 D6 16");
    assert_eq!(encode(meter(), &Command::TurnOn), frame);
    assert_eq!(decode_request(&frame).unwrap().command, Command::TurnOn);
}

#[test]
fn spec_3_3_read_credit() {
    let frame = hex("68 23 36 33 03 70 04 68 01 02 54 17 41 16");
    assert_eq!(encode(meter(), &Command::ReadCredit), frame);
    assert_eq!(decode_request(&frame).unwrap().command, Command::ReadCredit);
}

#[test]
fn spec_3_3_read_voltage_phase_a() {
    let frame = hex("68 23 36 33 03 70 04 68 01 02 44 E9 03 16");
    assert_eq!(encode(meter(), &Command::ReadVoltage(Phase::A)), frame);
    assert_eq!(
        encode(meter(), &Command::ReadVoltage(Phase::default())),
        frame
    );
    assert_eq!(
        decode_request(&frame).unwrap().command,
        Command::ReadVoltage(Phase::A)
    );
}

#[test]
fn spec_3_3_token() {
    let frame = hex("68 23 36 33 03 70 04 68 00 0C 53 D4 C3 AB 89 67 45 C3 AB 89 67 45 4C 16");
    assert_eq!(encode(meter(), &Command::DeliverToken(token())), frame);
    let down = decode_request(&frame).unwrap();
    assert_eq!(down.address, Some(meter()));
    assert_eq!(down.command, Command::DeliverToken(token()));
}

#[test]
fn spec_3_3_token_already_used_reply() {
    // base64 aCM2MwNwBGjAATTIFg== from the predecessor's code comment.
    let frame = hex("68 23 36 33 03 70 04 68 C0 01 34 C8 16");
    let up = decode_uplink(&frame).unwrap();
    assert_eq!(up.address, Some(meter()));
    let nack = Nack {
        operation: NackOperation::Token,
        code: 0x01,
    };
    assert_eq!(up.response, Response::Nack(nack));
    assert_eq!(nack.reason(), NackReason::TokenAlreadyUsed);
    assert!(!up.response.is_success());
    assert_eq!(encode_response(meter(), &up.response), frame);
}

// ---------------------------------------------------------------------------------------------
// §3.2 request table: control code, DI on the wire and L of every request.
// ---------------------------------------------------------------------------------------------

#[test]
fn spec_3_2_request_table() {
    let date = Date::new(2024, 4, 19).unwrap();
    let time = TimeOfDay::new(13, 45, 7).unwrap();
    // (command, control, DI bytes on the wire, L)
    let table: Vec<(Command, u8, [u8; 2], u8)> = vec![
        (Command::TurnOn, 0x04, [0x70, 0xF3], 7),
        (Command::TurnOff, 0x04, [0x6F, 0xF3], 7),
        (Command::SetDate(date), 0x04, [0x43, 0xF3], 10),
        (Command::SetTime(time), 0x04, [0x44, 0xF3], 9),
        (Command::ReadCredit, 0x01, [0x54, 0x17], 2),
        (Command::ReadDate, 0x01, [0x43, 0xF3], 2),
        (Command::ReadTime, 0x01, [0x44, 0xF3], 2),
        (Command::ReadVoltage(Phase::A), 0x01, [0x44, 0xE9], 2),
        (Command::ReadVoltage(Phase::B), 0x01, [0x45, 0xE9], 2),
        (Command::ReadVoltage(Phase::C), 0x01, [0x46, 0xE9], 2),
        (Command::ReadCurrent(Phase::A), 0x01, [0x54, 0xE9], 2),
        (Command::ReadCurrent(Phase::B), 0x01, [0x55, 0xE9], 2),
        (Command::ReadCurrent(Phase::C), 0x01, [0x56, 0xE9], 2),
        (Command::ReadPower(Phase::A), 0x01, [0x63, 0xE9], 2),
        (Command::ReadPower(Phase::B), 0x01, [0x64, 0xE9], 2),
        (Command::ReadPower(Phase::C), 0x01, [0x65, 0xE9], 2),
        (Command::DeliverToken(token()), 0x00, [0x53, 0xD4], 12),
    ];
    for (command, ctrl, di, len) in table {
        let f = encode(meter(), &command);
        assert_eq!(f[8], ctrl, "{command:?} control");
        assert_eq!(f[9], len, "{command:?} L");
        assert_eq!([f[10], f[11]], di, "{command:?} DI");
        assert_eq!(f.len(), 12 + usize::from(len), "{command:?} size");
        // Writes carry the zero password (33 33 33 33 on the wire) right after the DI.
        if ctrl == 0x04 {
            assert_eq!(f[12..16], [0x33; 4], "{command:?} password");
        }
        let di_code = command.data_id().unwrap().code();
        assert_eq!(DataId::from_code(di_code), command.data_id());
    }
}

#[test]
fn set_date_vector() {
    // 2024-04-19 is a Friday (weekday 5): data wd dd mm yy = 05 19 04 24, each +0x33.
    let frame = hex("68 23 36 33 03 70 04 68 04 0A 43 F3 33 33 33 33 38 4C 37 57 F5 16");
    let cmd = Command::SetDate(Date::new(2024, 4, 19).unwrap());
    assert_eq!(encode(meter(), &cmd), frame);
    assert_eq!(decode_request(&frame).unwrap().command, cmd);
}

#[test]
fn set_date_with_wrong_weekday_is_rejected_by_the_simulator() {
    // Same frame with weekday 04 instead of 05 (checksum fixed).
    let frame = hex("68 23 36 33 03 70 04 68 04 0A 43 F3 33 33 33 33 37 4C 37 57 F4 16");
    assert_eq!(
        decode_request(&frame),
        Err(DecodeError::UnexpectedValue {
            field: "weekday",
            expected: 5,
            found: 4
        })
    );
}

#[test]
fn set_time_vector() {
    // 13:45:07: data ss mm hh = 07 45 13, each +0x33.
    let frame = hex("68 23 36 33 03 70 04 68 04 09 44 F3 33 33 33 33 3A 78 46 DB 16");
    let cmd = Command::SetTime(TimeOfDay::new(13, 45, 7).unwrap());
    assert_eq!(encode(meter(), &cmd), frame);
    assert_eq!(decode_request(&frame).unwrap().command, cmd);
}

#[test]
fn other_read_request_vectors() {
    let cases = [
        (
            Command::ReadDate,
            "68 23 36 33 03 70 04 68 01 02 43 F3 0C 16",
        ),
        (
            Command::ReadTime,
            "68 23 36 33 03 70 04 68 01 02 44 F3 0D 16",
        ),
        (
            Command::ReadCurrent(Phase::B),
            "68 23 36 33 03 70 04 68 01 02 55 E9 14 16",
        ),
        (
            Command::ReadPower(Phase::C),
            "68 23 36 33 03 70 04 68 01 02 65 E9 24 16",
        ),
        (
            Command::ReadVoltage(Phase::C),
            "68 23 36 33 03 70 04 68 01 02 46 E9 05 16",
        ),
    ];
    for (cmd, frame) in cases {
        assert_eq!(encode(meter(), &cmd), hex(frame), "{cmd:?}");
        assert_eq!(decode_request(&hex(frame)).unwrap().command, cmd);
    }
}

// ---------------------------------------------------------------------------------------------
// §3.6 DLMS power-limit read.
// ---------------------------------------------------------------------------------------------

#[test]
fn spec_3_6_read_power_limit_request() {
    let frame = hex("00 01 00 66 00 01 00 0D C0 01 C1 00 47 00 00 11 00 00 FF 03 00");
    assert_eq!(frame.len(), 21);
    assert_eq!(encode(meter(), &Command::ReadPowerLimit), frame);
    assert_eq!(READ_POWER_LIMIT_REQUEST.to_vec(), frame);
    // The request carries no address: any meter gets the same bytes.
    assert_eq!(
        encode(MeterAddress::new("1").unwrap(), &Command::ReadPowerLimit),
        frame
    );
    let down = decode_request(&frame).unwrap();
    assert_eq!(down.address, None);
    assert_eq!(down.command, Command::ReadPowerLimit);
}

#[test]
fn spec_3_6_power_limit_reply() {
    // GET-Response-Normal, invoke id C1, data double-long-unsigned 0x000005DC = 1500 W: the last
    // four bytes, big-endian, as §3.6 says.
    let frame = hex("00 01 00 01 00 66 00 09 C4 01 C1 00 06 00 00 05 DC");
    let up = decode_uplink(&frame).unwrap();
    assert_eq!(up.address, None);
    assert_eq!(
        up.response,
        Response::PowerLimit {
            limit: PowerLimit::from_watts(1500).unwrap()
        }
    );
    assert_eq!(encode_response(meter(), &up.response), frame);
}

#[test]
fn power_limit_access_error_reply() {
    // GET-Response-Normal with Data-Access-Result 4 (object undefined).
    let frame = hex("00 01 00 01 00 66 00 05 C4 01 C1 01 04");
    let nack = Nack {
        operation: NackOperation::PowerLimitRead,
        code: 4,
    };
    assert_eq!(decode(&frame), Ok(Response::Nack(nack)));
    assert_eq!(nack.reason(), NackReason::DlmsObjectUndefined);
}

// ---------------------------------------------------------------------------------------------
// §3.4 control codes and §3.5 parsers (responses).
// ---------------------------------------------------------------------------------------------

fn check_response(frame: &str, expected: Response) {
    let bytes = hex(frame);
    let up = decode_uplink(&bytes).unwrap_or_else(|e| panic!("{frame}: {e}"));
    assert_eq!(up.address, Some(meter()));
    assert_eq!(up.response, expected, "{frame}");
    assert_eq!(encode_response(meter(), &expected), bytes, "{expected:?}");
}

#[test]
fn credit_reply() {
    // BCD(12..15) = 00 01 23 45 → 123.45 kWh; level 2; relay byte 0 → on.
    check_response(
        "68 23 36 33 03 70 04 68 81 08 54 17 78 56 34 33 35 33 64 16",
        Response::Credit(CreditReading {
            credit: Credit::from_centi_kwh(12_345).unwrap(),
            credit_level: 2,
            relay: RelayState::On,
        }),
    );
    // 0.07 kWh, relay byte 1 → off.
    check_response(
        "68 23 36 33 03 70 04 68 81 08 54 17 3A 33 33 33 33 34 01 16",
        Response::Credit(CreditReading {
            credit: Credit::from_centi_kwh(7).unwrap(),
            credit_level: 0,
            relay: RelayState::Off,
        }),
    );
    let Ok(Response::Credit(c)) = decode(&hex(
        "68 23 36 33 03 70 04 68 81 08 54 17 78 56 34 33 35 33 64 16",
    )) else {
        panic!()
    };
    assert_eq!(c.credit.watt_hours(), 123_450);
}

#[test]
fn credit_relay_byte_other_than_zero_is_off() {
    // Relay byte 0x05 (wire 0x38): not 0, so off, as in the predecessor.
    let frame = hex("68 23 36 33 03 70 04 68 81 08 54 17 3A 33 33 33 33 38 05 16");
    let Ok(Response::Credit(c)) = decode(&frame) else {
        panic!("{:?}", decode(&frame))
    };
    assert_eq!(c.relay, RelayState::Off);
}

#[test]
fn voltage_reply() {
    // Byte 12 unused; BCD(13..15) = 02 30 12 → 230.12 V.
    check_response(
        "68 23 36 33 03 70 04 68 81 06 44 E9 33 45 63 35 97 16",
        Response::Voltage {
            phase: Phase::A,
            voltage: Voltage::from_centivolts(23_012).unwrap(),
        },
    );
}

#[test]
fn current_reply() {
    check_response(
        "68 23 36 33 03 70 04 68 81 04 55 E9 38 38 06 16",
        Response::Current {
            phase: Phase::B,
            current: Current::from_centiamps(505).unwrap(),
        },
    );
}

#[test]
fn power_reply() {
    // BCD(12..15) = 00 01 23 45 → 1234.5 W.
    check_response(
        "68 23 36 33 03 70 04 68 81 06 63 E9 78 56 34 33 DB 16",
        Response::Power {
            phase: Phase::A,
            power: Power::from_deciwatts(12_345).unwrap(),
        },
    );
}

#[test]
fn date_reply() {
    check_response(
        "68 23 36 33 03 70 04 68 81 06 43 F3 38 4C 37 57 A2 16",
        Response::Date {
            date: Date::new(2024, 4, 19).unwrap(),
            weekday: Weekday::Friday,
        },
    );
}

#[test]
fn time_reply() {
    check_response(
        "68 23 36 33 03 70 04 68 81 05 44 F3 3A 78 46 88 16",
        Response::Time {
            time: TimeOfDay::new(13, 45, 7).unwrap(),
        },
    );
}

#[test]
fn write_and_token_acknowledgements() {
    check_response(
        "68 23 36 33 03 70 04 68 84 00 57 16",
        Response::WriteAccepted,
    );
    check_response(
        "68 23 36 33 03 70 04 68 80 00 53 16",
        Response::TokenAccepted,
    );
}

#[test]
fn refusals() {
    let write = Nack {
        operation: NackOperation::Write,
        code: 0x24,
    };
    check_response(
        "68 23 36 33 03 70 04 68 C4 01 57 EF 16",
        Response::Nack(write),
    );
    assert_eq!(write.reason(), NackReason::CreditExhausted);
    let read = Nack {
        operation: NackOperation::Read,
        code: 0x01,
    };
    check_response(
        "68 23 36 33 03 70 04 68 C1 01 34 C9 16",
        Response::Nack(read),
    );
    assert_eq!(read.reason(), NackReason::Unknown);
}

#[test]
fn hourly_report() {
    // Freeze 2024-04-19 14:00; source 1: 1234.56 kWh used, 42.5 kWh left (f32); source 2: zero;
    // interval demand 250; 230.1 V; 1.234 A; status relay_open | cover_open.
    let frame = "68 23 36 33 03 70 04 68 81 23 44 F4 33 33 47 4C 37 57 73 15 34 33 33 33 5D 75 \
                 33 33 33 33 33 33 33 33 2D 33 33 33 30 3B 05 37 33 33 44 0C 16";
    let Ok(Response::HourlyReport(r)) = decode(&hex(frame)) else {
        panic!("{:?}", decode(&hex(frame)))
    };
    assert_eq!(r.freeze_time.to_string(), "2024-04-19 14:00");
    assert_eq!(
        r.source_1.consumption,
        Energy::from_centi_kwh(123_456).unwrap()
    );
    assert_eq!(r.source_1.consumption.watt_hours(), 1_234_560);
    assert_eq!(r.source_1.remaining, FloatKwh::from_kwh(42.5));
    assert_eq!(r.source_1.remaining.watt_hours(), Some(42_500));
    assert_eq!(r.source_2.consumption.get(), 0);
    assert_eq!(r.source_2.remaining.kwh(), 0.0);
    assert_eq!(r.interval_demand, 250);
    assert_eq!(r.voltage, ReportVoltage::from_decivolts(2301).unwrap());
    assert_eq!(r.current, ReportCurrent::from_milliamps(1234).unwrap());
    assert_eq!(r.status, MeterStatus::from_bits(0b0001_0001));
    assert!(r.status.relay_open() && r.status.cover_open() && r.status.tampered());
    assert_eq!(r.status.relay(), RelayState::Off);
    let response = Response::HourlyReport(r);
    assert!(response.is_unsolicited());
    check_response(frame, response);
}

// ---------------------------------------------------------------------------------------------
// Rejections: every one is a DecodeError, none is a warning.
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_checksum_is_rejected() {
    // The token-used reply with checksum C9 instead of C8.
    assert_eq!(
        decode(&hex("68 23 36 33 03 70 04 68 C0 01 34 C9 16")),
        Err(DecodeError::BadChecksum {
            computed: 0xC8,
            found: 0xC9
        })
    );
}

#[test]
fn framing_errors_are_rejected() {
    assert!(matches!(decode(&[]), Err(DecodeError::TooShort { .. })));
    // No FE wake-up preamble exists on this transport: it is a bad start byte.
    assert_eq!(
        decode(&hex("FE FE 68 23 36 33 03 70 04 68 C0 01 34 C8 16")),
        Err(DecodeError::BadDelimiter {
            offset: 0,
            expected: 0x68,
            found: 0xFE
        })
    );
    assert!(matches!(
        decode(&hex("68 23 36 33 03 70 04 68 C0 01 34 C8 17")),
        Err(DecodeError::BadDelimiter { offset: 12, .. })
    ));
    assert!(matches!(
        decode(&hex("68 23 36 33 03 70 04 68 C0 02 34 C8 16")),
        Err(DecodeError::LengthMismatch { declared: 2, .. })
    ));
}

#[test]
fn unknown_control_code_is_rejected() {
    // A request echoed back is not a response.
    assert_eq!(
        decode(&hex("68 23 36 33 03 70 04 68 01 02 54 17 41 16")),
        Err(DecodeError::UnknownControlCode(0x01))
    );
    // 0x91 with an otherwise valid frame (checksum 0x57 + 0x0D).
    assert_eq!(
        decode(&hex("68 23 36 33 03 70 04 68 91 00 64 16")),
        Err(DecodeError::UnknownControlCode(0x91))
    );
}

#[test]
fn unknown_data_identifier_is_rejected() {
    // 0x81 with DI 9010 (total active energy, not decoded) and 4 data bytes.
    let mut f = hex("68 23 36 33 03 70 04 68 81 06 43 C3 33 33 33 33 00 16");
    let n = f.len();
    f[n - 2] = f[..n - 2].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    assert_eq!(
        decode(&f),
        Err(DecodeError::UnknownDataId {
            control: 0x81,
            di: 0x9010
        })
    );
}

#[test]
fn wrong_data_length_for_a_known_identifier_is_rejected() {
    // Credit reply with only 5 data bytes after the DI.
    let mut f = hex("68 23 36 33 03 70 04 68 81 07 54 17 78 56 34 33 35 00 16");
    let n = f.len();
    f[n - 2] = f[..n - 2].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    assert_eq!(
        decode(&f),
        Err(DecodeError::DataLength {
            what: "credit (E421)",
            expected: 6,
            actual: 5
        })
    );
}

#[test]
fn invalid_values_are_rejected() {
    let fix = |mut f: Vec<u8>| {
        let n = f.len();
        f[n - 2] = f[..n - 2].iter().fold(0u8, |a, b| a.wrapping_add(*b));
        f
    };
    // Month 13 in a date reply.
    let f = fix(hex("68 23 36 33 03 70 04 68 81 06 43 F3 38 4C 46 57 00 16"));
    assert_eq!(
        decode(&f),
        Err(DecodeError::OutOfRange {
            field: "month",
            value: 13
        })
    );
    // Hour 0x1A (not BCD) in a time reply.
    let f = fix(hex("68 23 36 33 03 70 04 68 81 05 44 F3 3A 78 4D 00 16"));
    assert_eq!(
        decode(&f),
        Err(DecodeError::InvalidBcd {
            field: "hour",
            byte: 0x1A
        })
    );
    // Credit digit 0xF in a credit reply.
    let f = fix(hex(
        "68 23 36 33 03 70 04 68 81 08 54 17 42 56 34 33 35 33 00 16",
    ));
    assert_eq!(
        decode(&f),
        Err(DecodeError::InvalidBcd {
            field: "credit",
            byte: 0x0F
        })
    );
    // A refusal with two error bytes.
    let f = fix(hex("68 23 36 33 03 70 04 68 C0 02 34 34 00 16"));
    assert!(matches!(
        decode(&f),
        Err(DecodeError::DataLength {
            expected: 1,
            actual: 2,
            ..
        })
    ));
    // An acknowledgement carrying data.
    let f = fix(hex("68 23 36 33 03 70 04 68 84 02 70 F3 00 16"));
    assert!(matches!(
        decode(&f),
        Err(DecodeError::DataLength {
            expected: 0,
            actual: 2,
            ..
        })
    ));
}

#[test]
fn simulator_rejects_malformed_requests() {
    let fix = |mut f: Vec<u8>| {
        let n = f.len();
        f[n - 2] = f[..n - 2].iter().fold(0u8, |a, b| a.wrapping_add(*b));
        f
    };
    // TURN_ON with a non-zero password.
    let f = fix(hex(
        "68 23 36 33 03 70 04 68 04 07 70 F3 34 33 33 33 C9 00 16",
    ));
    assert!(matches!(
        decode_request(&f),
        Err(DecodeError::UnexpectedValue {
            field: "password",
            ..
        })
    ));
    // TURN_ON DI with the TURN_OFF data byte.
    let f = fix(hex(
        "68 23 36 33 03 70 04 68 04 07 70 F3 33 33 33 33 68 00 16",
    ));
    assert!(matches!(
        decode_request(&f),
        Err(DecodeError::UnexpectedValue {
            field: "relay command",
            ..
        })
    ));
    // A read of the token DI.
    let f = fix(hex("68 23 36 33 03 70 04 68 01 02 53 D4 00 16"));
    assert_eq!(
        decode_request(&f),
        Err(DecodeError::UnknownDataId {
            control: 0x01,
            di: 0xA120
        })
    );
    // A response is not a request.
    assert_eq!(
        decode_request(&hex("68 23 36 33 03 70 04 68 C0 01 34 C8 16")),
        Err(DecodeError::UnknownControlCode(0xC0))
    );
}

#[test]
fn commands_recognise_their_answers() {
    let ok = Response::WriteAccepted;
    let token_nack = Response::Nack(Nack {
        operation: NackOperation::Token,
        code: 1,
    });
    assert!(Command::TurnOn.answered_by(&ok));
    assert!(!Command::TurnOn.answered_by(&token_nack));
    assert!(Command::DeliverToken(token()).answered_by(&token_nack));
    let volt_b = Response::Voltage {
        phase: Phase::B,
        voltage: Voltage::from_centivolts(1).unwrap(),
    };
    assert!(Command::ReadVoltage(Phase::B).answered_by(&volt_b));
    assert!(!Command::ReadVoltage(Phase::A).answered_by(&volt_b));
    assert!(Command::ReadPowerLimit.answered_by(&Response::PowerLimit {
        limit: PowerLimit::from_watts(1).unwrap()
    }));
}

#[test]
fn responses_serialize_to_json() {
    let c = Response::Credit(CreditReading {
        credit: Credit::from_centi_kwh(12_345).unwrap(),
        credit_level: 2,
        relay: RelayState::On,
    });
    let v = serde_json::to_value(c).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"type": "credit", "credit": 12345, "credit_level": 2, "relay": "on"})
    );
    let n = Response::Nack(Nack {
        operation: NackOperation::Token,
        code: 1,
    });
    assert_eq!(
        serde_json::to_value(n).unwrap(),
        serde_json::json!({"type": "nack", "operation": "token", "code": 1, "reason": "token_already_used"})
    );
    let frame = "68 23 36 33 03 70 04 68 81 23 44 F4 33 33 47 4C 37 57 73 15 34 33 33 33 5D 75 \
                 33 33 33 33 33 33 33 33 2D 33 33 33 30 3B 05 37 33 33 44 0C 16";
    let report = decode(&hex(frame)).unwrap();
    let v = serde_json::to_value(report).unwrap();
    assert_eq!(v["type"], "hourly_report");
    assert_eq!(v["source_1"]["remaining"], 42.5);
    assert_eq!(v["status"]["cover_open"], true);
    for r in [
        Response::WriteAccepted,
        Response::TokenAccepted,
        Response::PowerLimit {
            limit: PowerLimit::from_watts(9).unwrap(),
        },
    ] {
        serde_json::to_value(r).unwrap();
    }
}

#[test]
fn commands_serialize_to_json() {
    let set = Command::SetDate(Date::new(2024, 4, 19).unwrap());
    assert_eq!(
        serde_json::to_value(set).unwrap(),
        serde_json::json!({"type": "set_date", "value": {"year": 2024, "month": 4, "day": 19}})
    );
    assert_eq!(
        serde_json::to_value(Command::DeliverToken(token())).unwrap(),
        serde_json::json!({"type": "deliver_token", "value": "12345678901234567890"})
    );
    assert_eq!(
        serde_json::to_value(Command::ReadVoltage(Phase::B)).unwrap(),
        serde_json::json!({"type": "read_voltage", "value": "B"})
    );
    assert_eq!(
        serde_json::to_value(Command::TurnOn).unwrap(),
        serde_json::json!({"type": "turn_on"})
    );
}
