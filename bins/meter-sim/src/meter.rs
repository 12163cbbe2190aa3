//! One simulated CALIN meter: its state and how it answers each command.

use std::collections::{HashMap, HashSet};

use calin::{
    Command, Credit, CreditReading, Current, Date, Energy, FloatKwh, FreezeTime, HourlyReport,
    MeterStatus, Nack, NackOperation, Power, PowerLimit, RelayState, ReportCurrent, ReportVoltage,
    Response, SourceRegisters, StsToken, TimeOfDay, Voltage,
};
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Timelike, Utc};

/// What a simulated meter holds. Every field can be read and set through
/// [`SimHandle`](crate::SimHandle).
#[derive(Debug, Clone, PartialEq)]
pub struct MeterState {
    /// Whether the load relay is closed (the customer has power).
    pub relay_on: bool,
    /// Prepaid energy left, in Wh.
    pub credit_wh: i64,
    /// Energy consumed since the meter was created, in Wh (the hourly report's counter).
    pub consumed_wh: i64,
    /// The limiter threshold, in W.
    pub power_limit_w: u32,
    /// Line voltage, in hundredths of a volt.
    pub voltage_centivolts: u32,
    /// Load drawn while the relay is closed, in W.
    pub load_w: u32,
    /// Tokens accepted so far.
    pub tokens_accepted: u32,
    /// Every token delivered to the meter, accepted or not, in order.
    pub tokens_seen: Vec<String>,
    /// Cover or magnetic tamper detected.
    pub tamper: bool,
    /// The meter clock's offset from the real clock (SET_DATE / SET_TIME move it).
    pub clock_offset_secs: i64,
}

impl Default for MeterState {
    fn default() -> Self {
        Self {
            relay_on: true,
            credit_wh: 50_000,
            consumed_wh: 0,
            power_limit_w: 1_000,
            voltage_centivolts: 23_000,
            load_w: 120,
            tokens_accepted: 0,
            tokens_seen: Vec::new(),
            tamper: false,
            clock_offset_secs: 0,
        }
    }
}

/// What an STS token does once accepted. The simulator cannot decrypt STS, so a test that knows
/// which token it generated tells the meter its meaning with
/// [`SimHandle::prime_token`](crate::SimHandle::prime_token); other tokens are accepted without
/// effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEffect {
    AddCredit { wh: i64 },
    ClearCredit,
    ClearTamper,
    SetPowerLimit { watts: u32 },
}

/// A meter with what it remembers beyond its visible state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meter {
    pub state: MeterState,
    pub used_tokens: HashSet<u128>,
    pub primed: HashMap<u128, TokenEffect>,
}

/// The error byte of a simulated refusal: no documented reason (the `nak` fault), except the
/// DLMS read, which gets "temporary failure".
fn refusal(operation: NackOperation) -> Response {
    let code = match operation {
        NackOperation::PowerLimitRead => 2,
        NackOperation::Read | NackOperation::Write | NackOperation::Token => 0,
    };
    Response::Nack(Nack { operation, code })
}

/// The refusal a meter sends for `command` when it will not execute it.
pub(crate) fn refuse(command: &Command) -> Response {
    refusal(match command {
        Command::ReadCredit
        | Command::ReadVoltage(_)
        | Command::ReadCurrent(_)
        | Command::ReadPower(_)
        | Command::ReadDate
        | Command::ReadTime => NackOperation::Read,
        Command::ReadPowerLimit => NackOperation::PowerLimitRead,
        Command::TurnOn | Command::TurnOff | Command::SetDate(_) | Command::SetTime(_) => {
            NackOperation::Write
        }
        Command::DeliverToken(_) => NackOperation::Token,
    })
}

impl Meter {
    fn clock(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + Duration::seconds(self.state.clock_offset_secs)
    }

    fn power_w(&self) -> u32 {
        if self.state.relay_on {
            self.state.load_w
        } else {
            0
        }
    }

    /// Executes `command` at `now` and answers what the meter would send back.
    pub fn execute(&mut self, command: &Command, now: DateTime<Utc>) -> Response {
        let read_failed = || refusal(NackOperation::Read);
        match *command {
            Command::TurnOn => {
                self.state.relay_on = true;
                Response::WriteAccepted
            }
            Command::TurnOff => {
                self.state.relay_on = false;
                Response::WriteAccepted
            }
            Command::SetDate(date) => {
                let clock = self.clock(now);
                match NaiveDate::from_ymd_opt(
                    i32::from(date.year()),
                    u32::from(date.month()),
                    u32::from(date.day()),
                ) {
                    Some(d) => {
                        let target = d.and_time(clock.time()).and_utc();
                        self.state.clock_offset_secs = (target - now).num_seconds();
                        Response::WriteAccepted
                    }
                    None => refusal(NackOperation::Write),
                }
            }
            Command::SetTime(time) => {
                let clock = self.clock(now);
                match NaiveTime::from_hms_opt(
                    u32::from(time.hour()),
                    u32::from(time.minute()),
                    u32::from(time.second()),
                ) {
                    Some(t) => {
                        let target = clock.date_naive().and_time(t).and_utc();
                        self.state.clock_offset_secs = (target - now).num_seconds();
                        Response::WriteAccepted
                    }
                    None => refusal(NackOperation::Write),
                }
            }
            Command::DeliverToken(token) => self.deliver(token),
            Command::ReadCredit => {
                // The register holds 10 Wh steps; a negative balance reads as empty.
                let wh = self.state.credit_wh.max(0) / 10 * 10;
                match Credit::from_watt_hours(wh) {
                    Ok(credit) => Response::Credit(CreditReading {
                        credit,
                        credit_level: 0,
                        relay: if self.state.relay_on {
                            RelayState::On
                        } else {
                            RelayState::Off
                        },
                    }),
                    Err(_) => read_failed(),
                }
            }
            Command::ReadVoltage(phase) => {
                match Voltage::from_centivolts(self.state.voltage_centivolts) {
                    Ok(voltage) => Response::Voltage { phase, voltage },
                    Err(_) => read_failed(),
                }
            }
            Command::ReadCurrent(phase) => {
                let centiamps = u64::from(self.power_w()) * 10_000
                    / u64::from(self.state.voltage_centivolts.max(1));
                match u16::try_from(centiamps).map(Current::from_centiamps) {
                    Ok(Ok(current)) => Response::Current { phase, current },
                    _ => read_failed(),
                }
            }
            Command::ReadPower(phase) => {
                match Power::from_deciwatts(self.power_w().saturating_mul(10)) {
                    Ok(power) => Response::Power { phase, power },
                    Err(_) => read_failed(),
                }
            }
            Command::ReadDate => {
                let clock = self.clock(now);
                match u16::try_from(clock.year())
                    .ok()
                    .and_then(|y| Date::new(y, clock.month() as u8, clock.day() as u8).ok())
                {
                    Some(date) => Response::Date {
                        date,
                        weekday: date.weekday(),
                    },
                    None => read_failed(),
                }
            }
            Command::ReadTime => {
                let clock = self.clock(now);
                match TimeOfDay::new(
                    clock.hour() as u8,
                    clock.minute() as u8,
                    clock.second() as u8,
                ) {
                    Ok(time) => Response::Time { time },
                    Err(_) => read_failed(),
                }
            }
            Command::ReadPowerLimit => match PowerLimit::from_watts(self.state.power_limit_w) {
                Ok(limit) => Response::PowerLimit { limit },
                Err(_) => refusal(NackOperation::PowerLimitRead),
            },
        }
    }

    fn deliver(&mut self, token: StsToken) -> Response {
        self.state.tokens_seen.push(token.to_string());
        if !self.used_tokens.insert(token.number()) {
            return Response::Nack(Nack {
                operation: NackOperation::Token,
                code: 0x01,
            });
        }
        self.state.tokens_accepted += 1;
        match self.primed.remove(&token.number()) {
            Some(TokenEffect::AddCredit { wh }) => self.state.credit_wh += wh,
            Some(TokenEffect::ClearCredit) => self.state.credit_wh = 0,
            Some(TokenEffect::ClearTamper) => self.state.tamper = false,
            Some(TokenEffect::SetPowerLimit { watts }) => self.state.power_limit_w = watts,
            None => {}
        }
        Response::TokenAccepted
    }

    /// Consumes energy for `elapsed` at the current load; the relay opens when credit runs out.
    pub fn consume(&mut self, elapsed: std::time::Duration) {
        let wh = i64::from(self.power_w()) * elapsed.as_millis() as i64 / 3_600_000;
        self.state.consumed_wh += wh;
        self.state.credit_wh = (self.state.credit_wh - wh).max(0);
        if wh > 0 && self.state.credit_wh == 0 {
            self.state.relay_on = false;
        }
    }

    /// The unsolicited hourly report (`C111`) as of `now`.
    pub fn hourly_report(&self, now: DateTime<Utc>) -> Option<Response> {
        let clock = self.clock(now);
        let date = Date::new(
            u16::try_from(clock.year()).ok()?,
            clock.month() as u8,
            clock.day() as u8,
        )
        .ok()?;
        let mut status = 0;
        if !self.state.relay_on {
            status |= MeterStatus::RELAY_OPEN;
        }
        if self.state.tamper {
            status |= MeterStatus::COVER_OPEN;
        }
        let milliamps =
            u64::from(self.power_w()) * 100_000 / u64::from(self.state.voltage_centivolts.max(1));
        Some(Response::HourlyReport(HourlyReport {
            freeze_time: FreezeTime::new(date, clock.hour() as u8, 0).ok()?,
            source_1: SourceRegisters {
                consumption: Energy::from_centi_kwh(
                    u32::try_from(self.state.consumed_wh / 10).ok()?,
                )
                .ok()?,
                remaining: FloatKwh::from_kwh(self.state.credit_wh as f32 / 1000.0),
            },
            source_2: SourceRegisters {
                consumption: Energy::default(),
                remaining: FloatKwh::from_kwh(0.0),
            },
            interval_demand: self.power_w(),
            voltage: ReportVoltage::from_decivolts(
                u16::try_from(self.state.voltage_centivolts / 10).ok()?,
            )
            .ok()?,
            current: ReportCurrent::from_milliamps(u32::try_from(milliamps).ok()?).ok()?,
            status: MeterStatus::from_bits(status),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calin::{NackReason, Phase};

    fn now() -> DateTime<Utc> {
        "2026-11-27T10:15:30Z".parse().unwrap()
    }

    #[test]
    fn relay_writes_and_reads_follow_the_state() {
        let mut m = Meter::default();
        assert_eq!(m.execute(&Command::TurnOff, now()), Response::WriteAccepted);
        assert!(!m.state.relay_on);
        match m.execute(&Command::ReadCredit, now()) {
            Response::Credit(c) => {
                assert_eq!(c.relay, RelayState::Off);
                assert_eq!(c.credit.watt_hours(), 50_000);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            m.execute(&Command::ReadPower(Phase::A), now()),
            Response::Power { power, .. } if power.get() == 0
        ));
        m.execute(&Command::TurnOn, now());
        assert!(matches!(
            m.execute(&Command::ReadPower(Phase::A), now()),
            Response::Power { power, .. } if power.get() == 1_200
        ));
    }

    #[test]
    fn a_token_is_accepted_once_and_primed_effects_apply() {
        let mut m = Meter::default();
        let token = StsToken::new("12345678901234567890").unwrap();
        m.primed
            .insert(token.number(), TokenEffect::AddCredit { wh: 1_000 });
        assert_eq!(
            m.execute(&Command::DeliverToken(token), now()),
            Response::TokenAccepted
        );
        assert_eq!(m.state.credit_wh, 51_000);
        match m.execute(&Command::DeliverToken(token), now()) {
            Response::Nack(n) => assert_eq!(n.reason(), NackReason::TokenAlreadyUsed),
            other => panic!("{other:?}"),
        }
        assert_eq!(m.state.tokens_accepted, 1);
        assert_eq!(m.state.tokens_seen.len(), 2);
    }

    #[test]
    fn setting_the_clock_moves_date_and_time_reads() {
        let mut m = Meter::default();
        m.execute(&Command::SetTime(TimeOfDay::new(8, 0, 0).unwrap()), now());
        assert!(matches!(
            m.execute(&Command::ReadTime, now()),
            Response::Time { time } if time.hour() == 8 && time.minute() == 0
        ));
        m.execute(&Command::SetDate(Date::new(2027, 1, 2).unwrap()), now());
        assert!(matches!(
            m.execute(&Command::ReadDate, now()),
            Response::Date { date, .. } if date == Date::new(2027, 1, 2).unwrap()
        ));
    }

    #[test]
    fn consumption_runs_credit_down_and_opens_the_relay() {
        let mut m = Meter::default();
        m.state.credit_wh = 100;
        m.state.load_w = 1_200;
        m.consume(std::time::Duration::from_secs(3_600));
        assert_eq!(m.state.credit_wh, 0);
        assert!(!m.state.relay_on);
        let report = m.hourly_report(now()).unwrap();
        match report {
            Response::HourlyReport(r) => assert!(r.status.relay_open()),
            other => panic!("{other:?}"),
        }
    }
}
