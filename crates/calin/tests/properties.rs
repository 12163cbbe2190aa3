//! Property tests: round trips through the simulator side of the codec, robustness on arbitrary
//! bytes, and single-byte corruption.

use calin::{
    Command, Credit, CreditReading, Current, Date, Downlink, Energy, FloatKwh, FreezeTime,
    HourlyReport, MeterAddress, MeterStatus, Nack, NackOperation, Phase, Power, PowerLimit,
    RelayState, ReportCurrent, ReportVoltage, Response, SourceRegisters, StsToken, TimeOfDay,
    Uplink, Voltage, Weekday, decode, decode_request, decode_uplink, encode, encode_response,
};
use proptest::prelude::*;

fn address() -> impl Strategy<Value = MeterAddress> {
    (0u64..=999_999_999_999).prop_map(|n| MeterAddress::from_number(n).unwrap())
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![Just(Phase::A), Just(Phase::B), Just(Phase::C)]
}

fn date() -> impl Strategy<Value = Date> {
    (2000u16..=2099, 1u8..=12, 1u8..=31)
        .prop_filter_map("no such day", |(y, m, d)| Date::new(y, m, d).ok())
}

fn time() -> impl Strategy<Value = TimeOfDay> {
    (0u8..24, 0u8..60, 0u8..60).prop_map(|(h, m, s)| TimeOfDay::new(h, m, s).unwrap())
}

fn token() -> impl Strategy<Value = StsToken> {
    (0u128..10u128.pow(20)).prop_map(|n| StsToken::from_number(n).unwrap())
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::ReadCredit),
        phase().prop_map(Command::ReadVoltage),
        phase().prop_map(Command::ReadCurrent),
        phase().prop_map(Command::ReadPower),
        Just(Command::ReadDate),
        Just(Command::ReadTime),
        Just(Command::ReadPowerLimit),
        Just(Command::TurnOn),
        Just(Command::TurnOff),
        date().prop_map(Command::SetDate),
        time().prop_map(Command::SetTime),
        token().prop_map(Command::DeliverToken),
    ]
}

fn weekday() -> impl Strategy<Value = Weekday> {
    (0u8..7).prop_map(|n| Weekday::from_number(n).unwrap())
}

fn relay() -> impl Strategy<Value = RelayState> {
    prop_oneof![Just(RelayState::On), Just(RelayState::Off)]
}

fn source() -> impl Strategy<Value = SourceRegisters> {
    (any::<u32>(), any::<u32>()).prop_map(|(c, r)| SourceRegisters {
        consumption: Energy::from_centi_kwh(c).unwrap(),
        remaining: FloatKwh::from_bits(r),
    })
}

fn report() -> impl Strategy<Value = HourlyReport> {
    (
        (date(), 0u8..24, 0u8..60),
        source(),
        source(),
        any::<u32>(),
        any::<u16>(),
        any::<u32>(),
        any::<u8>(),
    )
        .prop_map(
            |((d, h, m), source_1, source_2, demand, volts, amps, status)| HourlyReport {
                freeze_time: FreezeTime::new(d, h, m).unwrap(),
                source_1,
                source_2,
                interval_demand: demand,
                voltage: ReportVoltage::from_decivolts(volts).unwrap(),
                current: ReportCurrent::from_milliamps(amps).unwrap(),
                status: MeterStatus::from_bits(status),
            },
        )
}

fn nack_operation() -> impl Strategy<Value = NackOperation> {
    prop_oneof![
        Just(NackOperation::Read),
        Just(NackOperation::Write),
        Just(NackOperation::Token),
        Just(NackOperation::PowerLimitRead),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (0..=Credit::MAX, any::<u8>(), relay()).prop_map(|(c, level, relay)| Response::Credit(
            CreditReading {
                credit: Credit::from_centi_kwh(c).unwrap(),
                credit_level: level,
                relay,
            }
        )),
        (phase(), 0..=Voltage::MAX).prop_map(|(phase, v)| Response::Voltage {
            phase,
            voltage: Voltage::from_centivolts(v).unwrap()
        }),
        (phase(), 0..=Current::MAX).prop_map(|(phase, v)| Response::Current {
            phase,
            current: Current::from_centiamps(v).unwrap()
        }),
        (phase(), 0..=Power::MAX).prop_map(|(phase, v)| Response::Power {
            phase,
            power: Power::from_deciwatts(v).unwrap()
        }),
        (date(), weekday()).prop_map(|(date, weekday)| Response::Date { date, weekday }),
        time().prop_map(|time| Response::Time { time }),
        report().prop_map(Response::HourlyReport),
        any::<u32>().prop_map(|w| Response::PowerLimit {
            limit: PowerLimit::from_watts(w).unwrap()
        }),
        Just(Response::WriteAccepted),
        Just(Response::TokenAccepted),
        (nack_operation(), any::<u8>())
            .prop_map(|(operation, code)| Response::Nack(Nack { operation, code })),
    ]
}

fn is_dlms(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x00)
}

fn fix_checksum(frame: &mut [u8]) {
    let n = frame.len();
    frame[n - 2] = frame[..n - 2].iter().fold(0u8, |a, b| a.wrapping_add(*b));
}

/// Bytes of a DL/T response frame that the spec gives no meaning, so a change there (with the
/// checksum fixed) legitimately leaves the decoded value unchanged.
fn is_dont_care(response: &Response, offset: usize, mutated: &[u8]) -> bool {
    match response {
        // Voltage: byte 12 precedes the three value bytes. Hourly report: byte 12 precedes the
        // freeze time.
        Response::Voltage { .. } | Response::HourlyReport(_) => offset == 12,
        // Credit: any non-zero relay byte means off; 0x01 is only the encoder's choice.
        Response::Credit(c) => {
            offset == 17 && c.relay == RelayState::Off && mutated[17].wrapping_sub(0x33) != 0
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Every command survives encode → decode_request, address included (none for DLMS).
    #[test]
    fn request_round_trip(a in address(), c in command()) {
        let bytes = encode(a, &c);
        let expected_address = if c == Command::ReadPowerLimit { None } else { Some(a) };
        prop_assert_eq!(decode_request(&bytes), Ok(Downlink { address: expected_address, command: c }));
        if !is_dlms(&bytes) {
            prop_assert_eq!(usize::from(bytes[9]) + 12, bytes.len());
        }
        // A request is never mistaken for a response.
        prop_assert!(decode(&bytes).is_err());
    }

    /// Every response survives encode_response → decode, address included (none for DLMS).
    #[test]
    fn response_round_trip(a in address(), r in response()) {
        let bytes = encode_response(a, &r);
        let up = decode_uplink(&bytes);
        let expected_address = if is_dlms(&bytes) { None } else { Some(a) };
        prop_assert_eq!(up, Ok(Uplink { address: expected_address, response: r }));
        // A response is never mistaken for a request.
        prop_assert!(decode_request(&bytes).is_err());
    }

    /// Any single corrupted byte of a response frame is rejected or decodes to something else.
    #[test]
    fn response_single_byte_flip(a in address(), r in response(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let mut bytes = encode_response(a, &r);
        let i = pos.index(bytes.len());
        bytes[i] ^= x;
        let after = decode_uplink(&bytes);
        prop_assert!(after.as_ref().map(|u| u.response) != Ok(r), "byte {} ^ {:#04x}: {:?}", i, x, after);
        // With a checksum, every such flip is caught by the framing.
        if !is_dlms(&encode_response(a, &r)) {
            prop_assert!(after.is_err());
        }
    }

    /// Same for requests.
    #[test]
    fn request_single_byte_flip(a in address(), c in command(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let mut bytes = encode(a, &c);
        let i = pos.index(bytes.len());
        bytes[i] ^= x;
        let after = decode_request(&bytes);
        prop_assert!(after.map(|d| d.command) != Ok(c));
    }

    /// Even if the checksum is recomputed after the corruption (a frame that is consistent but
    /// different), the decoded uplink changes or the frame is rejected, except at the bytes the
    /// spec leaves without meaning.
    #[test]
    fn response_mutation_with_fixed_checksum(a in address(), r in response(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let original = encode_response(a, &r);
        prop_assume!(!is_dlms(&original));
        // Address and data bytes only (delimiters, control and length are covered above).
        let mut candidates: Vec<usize> = (1..=6).collect();
        candidates.extend(10..original.len() - 2);
        let i = candidates[pos.index(candidates.len())];
        let mut bytes = original.clone();
        bytes[i] ^= x;
        fix_checksum(&mut bytes);
        let before = decode_uplink(&original).unwrap();
        match decode_uplink(&bytes) {
            Err(_) => {}
            Ok(after) if after != before => {}
            Ok(_) => prop_assert!(is_dont_care(&r, i, &bytes), "byte {} ^ {:#04x} went unnoticed in {:?}", i, x, r),
        }
    }

    /// Same for requests: no byte of a request is without meaning.
    #[test]
    fn request_mutation_with_fixed_checksum(a in address(), c in command(), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
        let original = encode(a, &c);
        prop_assume!(!is_dlms(&original));
        let mut candidates: Vec<usize> = (1..=6).collect();
        candidates.extend(10..original.len() - 2);
        let i = candidates[pos.index(candidates.len())];
        let mut bytes = original.clone();
        bytes[i] ^= x;
        fix_checksum(&mut bytes);
        let before = decode_request(&original).unwrap();
        prop_assert!(decode_request(&bytes) != Ok(before), "byte {} ^ {:#04x} went unnoticed in {:?}", i, x, c);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// Arbitrary bytes never panic either decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
        let _ = decode_request(&bytes);
    }

    /// Arbitrary data inside a valid envelope (right delimiters, length and checksum) never
    /// panics either, and whatever decodes re-encodes to a frame that decodes the same.
    #[test]
    fn arbitrary_payload_in_valid_envelope(
        a in address(),
        control in prop_oneof![Just(0x00u8), Just(0x01), Just(0x04), Just(0x80), Just(0x81), Just(0x84), Just(0xC0), Just(0xC1), Just(0xC4), any::<u8>()],
        di in prop_oneof![
            Just([0x21u8, 0xE4]), Just([0x11, 0xB6]), Just([0x22, 0xB6]), Just([0x30, 0xB6]), Just([0x10, 0xC0]),
            Just([0x11, 0xC0]), Just([0x11, 0xC1]), Just([0x3C, 0xC0]), Just([0x3D, 0xC0]), Just([0x20, 0xA1]),
            any::<[u8; 2]>()
        ],
        data in prop::collection::vec(any::<u8>(), 0..40),
        with_di in any::<bool>(),
    ) {
        let mut logical = Vec::new();
        if with_di {
            logical.extend(di);
        }
        logical.extend(data);
        let mut frame = vec![0x68];
        frame.extend(a.to_wire());
        frame.extend([0x68, control, logical.len() as u8]);
        frame.extend(logical.iter().map(|b| b.wrapping_add(0x33)));
        frame.extend([0, 0x16]);
        fix_checksum(&mut frame);
        if let Ok(up) = decode_uplink(&frame) {
            prop_assert_eq!(up.address, Some(a));
            prop_assert_eq!(decode(&encode_response(a, &up.response)), Ok(up.response));
        }
        if let Ok(down) = decode_request(&frame) {
            prop_assert_eq!(decode_request(&encode(a, &down.command)), Ok(down));
        }
    }

    /// Arbitrary DLMS-looking uplinks never panic.
    #[test]
    fn arbitrary_dlms_never_panics(tail in prop::collection::vec(any::<u8>(), 0..30), apdu_len in any::<u8>()) {
        let mut bytes = vec![0x00, 0x01, 0x00, 0x01, 0x00, 0x66, 0x00, apdu_len];
        bytes.extend(tail);
        let _ = decode(&bytes);
        let _ = decode_request(&bytes);
    }
}
