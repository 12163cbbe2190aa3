//! Frame codec for CALIN prepaid smart meters on LoRaWAN.
//!
//! Pure functions only: no I/O, no async, no clock. The network-server adapter moves the bytes
//! (FPort 1, confirmed downlinks); this crate turns a [`Command`] into those bytes and the meter's
//! bytes into a typed [`Response`], and does the reverse for meter simulators
//! ([`decode_request`], [`encode_response`]).
//!
//! # Frame format
//!
//! Requests and responses use a DL/T 645-style frame. There is no `FE FE` wake-up preamble on
//! this transport (a leading `0xFE` is rejected like any other bad start byte) and no encryption
//! beyond the +0x33 offset (LoRaWAN's session keys protect the link; STS tokens are encrypted
//! by STS).
//!
//! ```text
//! offset  0    1..=6        7    8     9    10  11   12 ..= 9+L      10+L  11+L
//!        +----+------------+----+-----+----+-------+--------------+-----+----+
//!        | 68 | A0 .. A5   | 68 | C   | L  | DI lo | data         | CS  | 16 |
//!        |    |            |    |     |    | DI hi | (+0x33 each) |     |    |
//!        +----+------------+----+-----+----+-------+--------------+-----+----+
//!              address BCD, least    L = bytes of DI + data    CS = sum of bytes
//!              significant byte first                          0 ..= 9+L, mod 256
//!              (no offset)
//! ```
//!
//! * **Address**: the meter serial left-padded to 12 digits, packed BCD, byte-reversed:
//!   `47003333623` → `04 70 03 33 36 23` → on the wire `23 36 33 03 70 04` ([`MeterAddress`]).
//! * **Data field**: every byte has 0x33 added (mod 256). The DI comes first, low byte first
//!   (`E421` → `21 E4` → `54 17`); multi-byte values follow little-endian (BCD or binary).
//! * **Writes** (control `0x04`) carry a 4-byte password, all zeros (`33 33 33 33` on the wire),
//!   between the DI and the value. Token deliveries (control `0x00`) carry none.
//! * **Refusals** (`0xC0`, `0xC1`, `0xC4`) carry no DI, only one error byte (L = 1), e.g.
//!   `68 23 36 33 03 70 04 68 C0 01 34 C8 16`: token rejected, code `0x01` (token already used).
//!
//! The power-limit read is the exception: a fixed DLMS/COSEM GET request and a DLMS
//! GET-Response, without address or checksum (see [`READ_POWER_LIMIT_REQUEST`]). An uplink that
//! starts with `0x00` is decoded as that reply.
//!
//! | command | control | DI | data (logical) | L |
//! |---|---|---|---|---|
//! | [`Command::ReadCredit`] | `01` | `E421` | – | 2 |
//! | [`Command::ReadVoltage`] / [`Current`](Command::ReadCurrent) / [`Power`](Command::ReadPower) | `01` | `B611..3` / `B621..3` / `B630..2` | – | 2 |
//! | [`Command::ReadDate`] / [`ReadTime`](Command::ReadTime) | `01` | `C010` / `C011` | – | 2 |
//! | [`Command::TurnOn`] / [`TurnOff`](Command::TurnOff) | `04` | `C03D` / `C03C` | password, `96` / `35` | 7 |
//! | [`Command::SetDate`] | `04` | `C010` | password, weekday, day, month, yy (BCD) | 10 |
//! | [`Command::SetTime`] | `04` | `C011` | password, second, minute, hour (BCD) | 9 |
//! | [`Command::DeliverToken`] | `00` | `A120` | 20-digit token as 10 BCD bytes, LSB first | 12 |
//! | [`Command::ReadPowerLimit`] | DLMS | – | fixed 21-byte GET | – |
//!
//! | response | control | DI | data after the DI (logical) | L |
//! |---|---|---|---|---|
//! | [`Response::Credit`] | `81` | `E421` | credit 4 BCD (0.01 kWh), level, relay (0 = on) | 8 |
//! | [`Response::Voltage`] | `81` | `B61x` | unused byte, voltage 3 BCD (0.01 V) | 6 |
//! | [`Response::Current`] | `81` | `B62x` | current 2 BCD (0.01 A) | 4 |
//! | [`Response::Power`] | `81` | `B63x` | power 4 BCD (0.1 W) | 6 |
//! | [`Response::Date`] | `81` | `C010` | weekday, day, month, yy (BCD) | 6 |
//! | [`Response::Time`] | `81` | `C011` | second, minute, hour (BCD) | 5 |
//! | [`Response::HourlyReport`] | `81` | `C111` | see [`HourlyReport`] | 35 |
//! | [`Response::WriteAccepted`] / [`TokenAccepted`](Response::TokenAccepted) | `84` / `80` | – | – | 0 |
//! | [`Response::Nack`] | `C1` / `C4` / `C0` | – | error byte | 1 |
//! | [`Response::PowerLimit`] | DLMS | – | GET-Response, double-long-unsigned (W) | – |
//!
//! # Strictness
//!
//! [`decode`] rejects, as a [`DecodeError`], anything it cannot account for: wrong delimiters, a
//! length byte that disagrees with the frame size, a bad checksum, a non-BCD address, an unknown
//! control code or DI, a data field of the wrong length, non-BCD digits, impossible dates and
//! times. It never panics. (The predecessor only logged checksum mismatches and read fixed
//! offsets without looking at L; this codec does neither.)
//!
//! # Example
//!
//! ```
//! use calin::{Command, MeterAddress, Response, decode, encode};
//!
//! let meter = MeterAddress::new("47003333623")?;
//! let frame = encode(meter, &Command::ReadCredit);
//! assert_eq!(frame, [0x68, 0x23, 0x36, 0x33, 0x03, 0x70, 0x04, 0x68, 0x01, 0x02, 0x54, 0x17, 0x41, 0x16]);
//!
//! let reply = [0x68, 0x23, 0x36, 0x33, 0x03, 0x70, 0x04, 0x68, 0xC0, 0x01, 0x34, 0xC8, 0x16];
//! assert!(matches!(decode(&reply)?, Response::Nack(n) if n.reason() == calin::NackReason::TokenAlreadyUsed));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod address;
mod bcd;
mod command;
mod di;
mod dlms;
mod error;
mod frame;
mod response;
mod values;

pub use address::MeterAddress;
pub use command::{Command, Downlink, decode_request, encode};
pub use di::DataId;
pub use dlms::READ_POWER_LIMIT_REQUEST;
pub use error::{DecodeError, ValueError};
pub use frame::control;
pub use response::{
    CreditReading, HourlyReport, Nack, NackOperation, NackReason, Response, SourceRegisters,
    Uplink, decode, decode_uplink, encode_response,
};
pub use values::{
    Credit, Current, Date, Energy, FloatKwh, FreezeTime, MeterStatus, Phase, Power, PowerLimit,
    RelayState, ReportCurrent, ReportVoltage, StsToken, TimeOfDay, Voltage, Weekday,
};
