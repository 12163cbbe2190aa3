//! Responses (uplinks): [`Response`], [`decode`] and, for meter simulators, [`encode_response`].

use std::fmt;

use serde::Serialize;

use crate::address::MeterAddress;
use crate::bcd;
use crate::command::{decode_date, decode_time, split_di};
use crate::di::DataId;
use crate::dlms::{self, Reply};
use crate::error::DecodeError;
use crate::frame::{self, DataReader, DataWriter, control};
use crate::values::{
    Credit, Current, Date, Energy, FloatKwh, FreezeTime, MeterStatus, Phase, Power, PowerLimit,
    RelayState, ReportCurrent, ReportVoltage, TimeOfDay, Voltage, Weekday,
};

/// Logical data length (after the DI) of each read response.
const CREDIT_LEN: usize = 6;
const VOLTAGE_LEN: usize = 4;
const CURRENT_LEN: usize = 2;
const POWER_LEN: usize = 4;
const DATE_LEN: usize = 4;
const TIME_LEN: usize = 3;
const REPORT_LEN: usize = 33;

/// A READ_CREDIT answer (`E421`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct CreditReading {
    /// Remaining prepaid energy (0.01 kWh resolution; [`Credit::watt_hours`] converts).
    pub credit: Credit,
    /// The meter's credit-level byte, passed through; the spec gives it no meaning.
    pub credit_level: u8,
    /// Relay status byte: 0 is on, any other value off. [`encode_response`] writes 1 for off.
    pub relay: RelayState,
}

/// The two registers the hourly report carries per supply source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct SourceRegisters {
    /// Energy consumed (binary counter, 0.01 kWh).
    pub consumption: Energy,
    /// Purchased energy remaining ("purchase remain"), an f32 in kWh. For source 1 this is the
    /// customer's credit.
    pub remaining: FloatKwh,
}

/// The report a meter sends by itself every hour (`C111`, control `0x81`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct HourlyReport {
    pub freeze_time: FreezeTime,
    pub source_1: SourceRegisters,
    pub source_2: SourceRegisters,
    /// Demand over the last interval, passed through as the raw 32-bit counter: the spec names
    /// the field but gives no unit.
    pub interval_demand: u32,
    pub voltage: ReportVoltage,
    pub current: ReportCurrent,
    /// Relay, battery, tamper and supply flags.
    pub status: MeterStatus,
}

/// Which request a refusal answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NackOperation {
    /// Control `0xC1`: a read was not executed.
    Read,
    /// Control `0xC4`: a write (relay, date, time) was not executed.
    Write,
    /// Control `0xC0`: the token was rejected.
    Token,
    /// DLMS GET-Response carrying a Data-Access-Result instead of the power limit.
    PowerLimitRead,
}

/// A meter's refusal: the failure control code (or DLMS access error) and its error byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nack {
    pub operation: NackOperation,
    /// The error byte (offset removed), or the DLMS Data-Access-Result.
    pub code: u8,
}

/// What a [`Nack`]'s error byte means, as far as the spec documents it. The raw byte is always
/// kept in [`Nack::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NackReason {
    /// `0x01` on a token refusal: the token was already used.
    TokenAlreadyUsed,
    /// `0x0F`: power limit breached.
    PowerLimitBreached,
    /// `0x24`: credit exhausted.
    CreditExhausted,
    /// `0x26`: remotely switched off.
    RemoteSwitchedOff,
    /// `0x27`: over-voltage.
    OverVoltage,
    /// `0x2D`: meter not activated.
    MeterNotActivated,
    /// `0x2E`: tamper (cover lifted).
    TamperCoverLifted,
    /// `0x2F`: low voltage.
    LowVoltage,
    /// DLMS Data-Access-Result 1.
    DlmsHardwareFault,
    /// DLMS Data-Access-Result 2.
    DlmsTemporaryFailure,
    /// DLMS Data-Access-Result 3.
    DlmsReadWriteDenied,
    /// DLMS Data-Access-Result 4.
    DlmsObjectUndefined,
    /// DLMS Data-Access-Result 11.
    DlmsObjectUnavailable,
    /// Any other code: see [`Nack::code`].
    Unknown,
}

impl NackReason {
    /// A short English description.
    pub fn description(self) -> &'static str {
        match self {
            NackReason::TokenAlreadyUsed => "token already used",
            NackReason::PowerLimitBreached => "power limit breached",
            NackReason::CreditExhausted => "credit exhausted",
            NackReason::RemoteSwitchedOff => "remotely switched off",
            NackReason::OverVoltage => "over-voltage",
            NackReason::MeterNotActivated => "meter not activated",
            NackReason::TamperCoverLifted => "tamper: cover lifted",
            NackReason::LowVoltage => "low voltage",
            NackReason::DlmsHardwareFault => "hardware fault",
            NackReason::DlmsTemporaryFailure => "temporary failure",
            NackReason::DlmsReadWriteDenied => "read/write denied",
            NackReason::DlmsObjectUndefined => "object undefined",
            NackReason::DlmsObjectUnavailable => "object unavailable",
            NackReason::Unknown => "unknown error code",
        }
    }
}

impl Nack {
    /// The documented meaning of the error byte for this operation.
    pub fn reason(&self) -> NackReason {
        match (self.operation, self.code) {
            (NackOperation::PowerLimitRead, 1) => NackReason::DlmsHardwareFault,
            (NackOperation::PowerLimitRead, 2) => NackReason::DlmsTemporaryFailure,
            (NackOperation::PowerLimitRead, 3) => NackReason::DlmsReadWriteDenied,
            (NackOperation::PowerLimitRead, 4) => NackReason::DlmsObjectUndefined,
            (NackOperation::PowerLimitRead, 11) => NackReason::DlmsObjectUnavailable,
            (NackOperation::PowerLimitRead, _) => NackReason::Unknown,
            (NackOperation::Token, 0x01) => NackReason::TokenAlreadyUsed,
            (_, 0x0F) => NackReason::PowerLimitBreached,
            (_, 0x24) => NackReason::CreditExhausted,
            (_, 0x26) => NackReason::RemoteSwitchedOff,
            (_, 0x27) => NackReason::OverVoltage,
            (_, 0x2D) => NackReason::MeterNotActivated,
            (_, 0x2E) => NackReason::TamperCoverLifted,
            (_, 0x2F) => NackReason::LowVoltage,
            _ => NackReason::Unknown,
        }
    }
}

impl fmt::Display for Nack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operation {
            NackOperation::Read => "read",
            NackOperation::Write => "write",
            NackOperation::Token => "token",
            NackOperation::PowerLimitRead => "power-limit read",
        };
        write!(
            f,
            "{op} refused: {} (code {:#04x})",
            self.reason().description(),
            self.code
        )
    }
}

impl Serialize for Nack {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Repr {
            operation: NackOperation,
            code: u8,
            reason: NackReason,
        }
        Repr {
            operation: self.operation,
            code: self.code,
            reason: self.reason(),
        }
        .serialize(s)
    }
}

/// Everything a CALIN LoRaWAN meter sends on FPort 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// `0x81` + `E421`.
    Credit(CreditReading),
    /// `0x81` + `B611`/`B612`/`B613`.
    Voltage { phase: Phase, voltage: Voltage },
    /// `0x81` + `B621`/`B622`/`B623`.
    Current { phase: Phase, current: Current },
    /// `0x81` + `B630`/`B631`/`B632`.
    Power { phase: Phase, power: Power },
    /// `0x81` + `C010`: the meter's date and the weekday it reports (not cross-checked).
    Date { date: Date, weekday: Weekday },
    /// `0x81` + `C011`.
    Time { time: TimeOfDay },
    /// `0x81` + `C111`, unsolicited.
    HourlyReport(HourlyReport),
    /// DLMS GET-Response with the limiter threshold.
    PowerLimit { limit: PowerLimit },
    /// `0x84`: the relay, date or time write was executed.
    WriteAccepted,
    /// `0x80`: the token was accepted.
    TokenAccepted,
    /// `0xC1` / `0xC4` / `0xC0`, or a DLMS access error.
    Nack(Nack),
}

impl Response {
    /// Whether the meter executed what was asked (everything except a [`Nack`]).
    pub fn is_success(&self) -> bool {
        !matches!(self, Response::Nack(_))
    }

    /// Whether the meter sends this on its own rather than in answer to a request.
    pub fn is_unsolicited(&self) -> bool {
        matches!(self, Response::HourlyReport(_))
    }
}

/// A decoded uplink with the address it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uplink {
    /// The meter address in the frame; `None` for the DLMS power-limit reply, which carries none.
    /// The codec does not compare it with the LoRaWAN DevEUI: that is the caller's job.
    pub address: Option<MeterAddress>,
    pub response: Response,
}

/// Decodes an uplink payload into a [`Response`]. See [`decode_uplink`] for the address.
pub fn decode(bytes: &[u8]) -> Result<Response, DecodeError> {
    decode_uplink(bytes).map(|u| u.response)
}

/// Decodes an uplink payload.
///
/// A payload starting with `0x00` is a DLMS reply (power limit); anything else must be a complete
/// `0x68 … 0x16` frame: exact length, correct checksum, BCD address, a known response control
/// code, and for `0x81` a known DI whose data has exactly the documented length and valid values.
pub fn decode_uplink(bytes: &[u8]) -> Result<Uplink, DecodeError> {
    if bytes.first() == Some(&0x00) {
        let response = match dlms::decode_reply(bytes)? {
            Reply::Limit(limit) => Response::PowerLimit { limit },
            Reply::AccessError(code) => Response::Nack(Nack {
                operation: NackOperation::PowerLimitRead,
                code,
            }),
        };
        return Ok(Uplink {
            address: None,
            response,
        });
    }
    let f = frame::decode(bytes)?;
    let nack = |operation| -> Result<Response, DecodeError> {
        let mut r = DataReader::exact(&f.data, 1, "error reply")?;
        Ok(Response::Nack(Nack {
            operation,
            code: r.u8()?,
        }))
    };
    let response = match f.control {
        control::READ_OK => decode_read(f.control, &f.data)?,
        control::WRITE_OK => {
            DataReader::exact(&f.data, 0, "write acknowledgement")?;
            Response::WriteAccepted
        }
        control::TOKEN_OK => {
            DataReader::exact(&f.data, 0, "token acknowledgement")?;
            Response::TokenAccepted
        }
        control::READ_FAILED => nack(NackOperation::Read)?,
        control::WRITE_FAILED => nack(NackOperation::Write)?,
        control::TOKEN_FAILED => nack(NackOperation::Token)?,
        other => return Err(DecodeError::UnknownControlCode(other)),
    };
    Ok(Uplink {
        address: Some(f.address),
        response,
    })
}

fn bcd_field(bytes: &[u8], field: &'static str) -> Result<u32, DecodeError> {
    // At most 4 bytes (8 digits) per call, which always fits a u32.
    let v = bcd::read_le(bytes, field)?;
    u32::try_from(v).map_err(|_| DecodeError::OutOfRange {
        field,
        value: u32::MAX,
    })
}

fn decode_read(control: u8, data: &[u8]) -> Result<Response, DecodeError> {
    let (di, rest) = split_di(control, data, "read response")?;
    Ok(match di {
        DataId::Credit => {
            let mut r = DataReader::exact(rest, CREDIT_LEN, "credit (E421)")?;
            let credit = bcd_field(&r.take::<4>()?, "credit")?;
            let credit_level = r.u8()?;
            let relay = if r.u8()? == 0 {
                RelayState::On
            } else {
                RelayState::Off
            };
            // Eight BCD digits never exceed Credit::MAX.
            let credit = Credit::from_centi_kwh(credit).map_err(|_| DecodeError::OutOfRange {
                field: "credit",
                value: credit,
            })?;
            Response::Credit(CreditReading {
                credit,
                credit_level,
                relay,
            })
        }
        DataId::Voltage(phase) => {
            let mut r = DataReader::exact(rest, VOLTAGE_LEN, "voltage (B61x)")?;
            // The first byte carries no documented meaning; the value is the next three.
            let _ignored = r.u8()?;
            let v = bcd_field(&r.take::<3>()?, "voltage")?;
            let voltage = Voltage::from_centivolts(v).map_err(|_| DecodeError::OutOfRange {
                field: "voltage",
                value: v,
            })?;
            Response::Voltage { phase, voltage }
        }
        DataId::Current(phase) => {
            let mut r = DataReader::exact(rest, CURRENT_LEN, "current (B62x)")?;
            let v = bcd_field(&r.take::<2>()?, "current")?;
            let current = u16::try_from(v)
                .ok()
                .and_then(|v| Current::from_centiamps(v).ok())
                .ok_or(DecodeError::OutOfRange {
                    field: "current",
                    value: v,
                })?;
            Response::Current { phase, current }
        }
        DataId::Power(phase) => {
            let mut r = DataReader::exact(rest, POWER_LEN, "power (B63x)")?;
            let v = bcd_field(&r.take::<4>()?, "power")?;
            let power = Power::from_deciwatts(v).map_err(|_| DecodeError::OutOfRange {
                field: "power",
                value: v,
            })?;
            Response::Power { phase, power }
        }
        DataId::Date => {
            let mut r = DataReader::exact(rest, DATE_LEN, "date (C010)")?;
            let (date, weekday) = decode_date(&mut r)?;
            Response::Date { date, weekday }
        }
        DataId::Time => {
            let mut r = DataReader::exact(rest, TIME_LEN, "time (C011)")?;
            Response::Time {
                time: decode_time(&mut r)?,
            }
        }
        DataId::HourlyReport => Response::HourlyReport(decode_report(rest)?),
        DataId::RelayOn | DataId::RelayOff | DataId::Token => {
            return Err(DecodeError::UnknownDataId {
                control,
                di: di.code(),
            });
        }
    })
}

fn decode_report(rest: &[u8]) -> Result<HourlyReport, DecodeError> {
    let mut r = DataReader::exact(rest, REPORT_LEN, "hourly report (C111)")?;
    // Byte 12 of the frame carries no documented meaning.
    let _ignored = r.u8()?;
    let [mi, hh, dd, mo, yy] = r.take::<5>()?;
    let minute = bcd::byte(mi, "freeze minute")?;
    let hour = bcd::byte(hh, "freeze hour")?;
    let day = bcd::byte(dd, "freeze day")?;
    let month = bcd::byte(mo, "freeze month")?;
    let year = 2000 + u16::from(bcd::byte(yy, "freeze year")?);
    let date = Date::new(year, month, day).map_err(|_| match month {
        1..=12 => DecodeError::OutOfRange {
            field: "freeze day",
            value: day.into(),
        },
        _ => DecodeError::OutOfRange {
            field: "freeze month",
            value: month.into(),
        },
    })?;
    let freeze_time = FreezeTime::new(date, hour, minute).map_err(|_| {
        let (field, value) = if hour > 23 {
            ("freeze hour", hour)
        } else {
            ("freeze minute", minute)
        };
        DecodeError::OutOfRange {
            field,
            value: value.into(),
        }
    })?;
    let source = |r: &mut DataReader<'_>| -> Result<SourceRegisters, DecodeError> {
        let consumption =
            Energy::from_centi_kwh(u32::from_le_bytes(r.take::<4>()?)).unwrap_or_default();
        let remaining = FloatKwh::from_bits(u32::from_le_bytes(r.take::<4>()?));
        Ok(SourceRegisters {
            consumption,
            remaining,
        })
    };
    let source_1 = source(&mut r)?;
    let source_2 = source(&mut r)?;
    let interval_demand = u32::from_le_bytes(r.take::<4>()?);
    // Every u16 / u32 is valid for these binary fields.
    let voltage =
        ReportVoltage::from_decivolts(u16::from_le_bytes(r.take::<2>()?)).unwrap_or_default();
    let current =
        ReportCurrent::from_milliamps(u32::from_le_bytes(r.take::<4>()?)).unwrap_or_default();
    let status = MeterStatus::from_bits(r.u8()?);
    Ok(HourlyReport {
        freeze_time,
        source_1,
        source_2,
        interval_demand,
        voltage,
        current,
        status,
    })
}

/// Encodes `response` as the meter at `address` would send it (for simulators and tests).
///
/// [`Response::PowerLimit`] and a [`Nack`] with [`NackOperation::PowerLimitRead`] are DLMS
/// replies and ignore the address. `decode(&encode_response(a, &r)) == Ok(r)` for every `r`.
pub fn encode_response(address: MeterAddress, response: &Response) -> Vec<u8> {
    let read = |di: DataId| DataWriter::new().di(di.code());
    let (ctrl, data) = match *response {
        Response::Credit(c) => (
            control::READ_OK,
            read(DataId::Credit)
                .bcd_le(c.credit.get(), 4)
                .u8(c.credit_level)
                .u8(match c.relay {
                    RelayState::On => 0,
                    RelayState::Off => 1,
                })
                .finish(),
        ),
        Response::Voltage { phase, voltage } => (
            control::READ_OK,
            read(DataId::Voltage(phase))
                .u8(0)
                .bcd_le(voltage.get(), 3)
                .finish(),
        ),
        Response::Current { phase, current } => (
            control::READ_OK,
            read(DataId::Current(phase))
                .bcd_le(current.get(), 2)
                .finish(),
        ),
        Response::Power { phase, power } => (
            control::READ_OK,
            read(DataId::Power(phase)).bcd_le(power.get(), 4).finish(),
        ),
        Response::Date { date, weekday } => (
            control::READ_OK,
            read(DataId::Date)
                .bcd_byte(weekday.number())
                .bcd_byte(date.day())
                .bcd_byte(date.month())
                .bcd_byte(date.short_year())
                .finish(),
        ),
        Response::Time { time } => (
            control::READ_OK,
            read(DataId::Time)
                .bcd_byte(time.second())
                .bcd_byte(time.minute())
                .bcd_byte(time.hour())
                .finish(),
        ),
        Response::HourlyReport(rep) => {
            let t = rep.freeze_time;
            let w = read(DataId::HourlyReport)
                .u8(0)
                .bcd_byte(t.minute())
                .bcd_byte(t.hour())
                .bcd_byte(t.date().day())
                .bcd_byte(t.date().month())
                .bcd_byte(t.date().short_year());
            let w = [rep.source_1, rep.source_2].iter().fold(w, |w, s| {
                w.le(&s.consumption.get().to_le_bytes())
                    .le(&s.remaining.to_bits().to_le_bytes())
            });
            let data = w
                .le(&rep.interval_demand.to_le_bytes())
                .le(&rep.voltage.get().to_le_bytes())
                .le(&rep.current.get().to_le_bytes())
                .u8(rep.status.bits())
                .finish();
            (control::READ_OK, data)
        }
        Response::PowerLimit { limit } => return dlms::encode_reply(Reply::Limit(limit)),
        Response::WriteAccepted => (control::WRITE_OK, Vec::new()),
        Response::TokenAccepted => (control::TOKEN_OK, Vec::new()),
        Response::Nack(n) => {
            let ctrl = match n.operation {
                NackOperation::Read => control::READ_FAILED,
                NackOperation::Write => control::WRITE_FAILED,
                NackOperation::Token => control::TOKEN_FAILED,
                NackOperation::PowerLimitRead => {
                    return dlms::encode_reply(Reply::AccessError(n.code));
                }
            };
            (ctrl, vec![n.code])
        }
    };
    frame::encode(address, ctrl, &data)
}
