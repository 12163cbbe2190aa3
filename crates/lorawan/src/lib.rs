//! CALIN meters over LoRaWAN, as the delivery pipeline sees them ([`meters::DeviceProtocol`]):
//! an interaction becomes a CALIN frame on FPort 1 (a confirmed downlink), and an uplink becomes
//! either an answer to a request or the meter's hourly report, with its values as shadow
//! observations.

use chrono::{DateTime, Datelike, Timelike, Utc};
use meters::{
    AnswerTo, AttributeValue, Delivery, DeviceProtocol, DeviceReply, Downlink, InteractionType,
    MeterClock, Phase, RelayState, ReplyOutcome, dev_eui_for,
};

/// The FPort CALIN frames travel on.
pub const F_PORT: u32 = 1;

/// The CALIN LoRaWAN protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct CalinLorawan;

fn calin_phase(p: Option<Phase>) -> calin::Phase {
    match p {
        None | Some(Phase::A) => calin::Phase::A,
        Some(Phase::B) => calin::Phase::B,
        Some(Phase::C) => calin::Phase::C,
    }
}

fn our_phase(p: calin::Phase) -> Phase {
    match p {
        calin::Phase::A => Phase::A,
        calin::Phase::B => Phase::B,
        calin::Phase::C => Phase::C,
    }
}

/// The meter's local time (its clock runs on the grid's timezone; UTC when that is unknown).
fn local(now: DateTime<Utc>, timezone: &str) -> chrono::NaiveDateTime {
    match timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) => now.with_timezone(&tz).naive_local(),
        Err(_) => now.naive_utc(),
    }
}

/// The CALIN command for a delivery's current phase.
pub fn command(d: &Delivery, now: DateTime<Utc>) -> Result<calin::Command, String> {
    use InteractionType as T;
    let token = || {
        let t = d
            .token
            .as_ref()
            .ok_or_else(|| format!("{} has no token to deliver", d.kind))?;
        calin::StsToken::new(t.expose()).map_err(|e| format!("the token is not deliverable: {e}"))
    };
    Ok(match d.kind {
        T::ReadCredit => calin::Command::ReadCredit,
        T::ReadVoltage => calin::Command::ReadVoltage(calin_phase(d.phase)),
        T::ReadCurrent => calin::Command::ReadCurrent(calin_phase(d.phase)),
        T::ReadPower => calin::Command::ReadPower(calin_phase(d.phase)),
        T::ReadPowerLimit => calin::Command::ReadPowerLimit,
        T::ReadDate => calin::Command::ReadDate,
        T::ReadTime => calin::Command::ReadTime,
        T::TurnOn => calin::Command::TurnOn,
        T::TurnOff => calin::Command::TurnOff,
        T::SetDate => {
            let t = local(now, &d.timezone);
            let year = u16::try_from(t.year()).map_err(|_| "the year is out of range")?;
            let month = u8::try_from(t.month()).map_err(|_| "bad month")?;
            let day = u8::try_from(t.day()).map_err(|_| "bad day")?;
            calin::Command::SetDate(calin::Date::new(year, month, day).map_err(|e| e.to_string())?)
        }
        T::SetTime => {
            let t = local(now, &d.timezone);
            let h = u8::try_from(t.hour()).map_err(|_| "bad hour")?;
            let m = u8::try_from(t.minute()).map_err(|_| "bad minute")?;
            let s = u8::try_from(t.second()).map_err(|_| "bad second")?;
            calin::Command::SetTime(calin::TimeOfDay::new(h, m, s).map_err(|e| e.to_string())?)
        }
        T::TopUp
        | T::ClearCredit
        | T::ClearTamper
        | T::SetPowerLimit
        | T::DeliverPreexistingToken => calin::Command::DeliverToken(token()?),
        T::ReadVersion => return Err("the firmware version cannot be read over LoRaWAN".into()),
        T::ReadReport | T::JoinNetwork => {
            return Err(format!("{} is sent by the meter, not to it", d.kind));
        }
    })
}

impl DeviceProtocol for CalinLorawan {
    fn downlink(&self, d: &Delivery, now: DateTime<Utc>) -> Result<Downlink, String> {
        // CALIN API V1/V2 meters are reached through CALIN's HTTP APIs (pull adapters), which
        // tiamat does not have: their commands fail visibly instead of going out as LoRaWAN.
        if d.protocol != grids::vocab::CommunicationProtocol::CalinLorawan {
            return Err(format!(
                "no delivery adapter for {} meters",
                d.protocol.as_str()
            ));
        }
        let address = calin::MeterAddress::new(&d.external_reference)
            .map_err(|e| format!("the serial number is not a CALIN address: {e}"))?;
        let dev_eui = dev_eui_for(&d.external_reference, d.dev_eui.as_deref())
            .ok_or_else(|| "the meter has no LoRaWAN DevEUI".to_owned())?;
        let command = command(d, now)?;
        Ok(Downlink {
            dev_eui,
            f_port: F_PORT,
            confirmed: true,
            data: calin::encode(address, &command),
        })
    }

    fn uplink(&self, data: &[u8]) -> Result<DeviceReply, String> {
        let response = calin::decode(data).map_err(|e| e.to_string())?;
        Ok(reply(&response))
    }
}

fn relay(r: calin::RelayState) -> AttributeValue {
    AttributeValue::Relay(match r {
        calin::RelayState::On => RelayState::On,
        calin::RelayState::Off => RelayState::Off,
    })
}

fn read(
    kind: InteractionType,
    phase: Option<Phase>,
    observations: Vec<AttributeValue>,
) -> DeviceReply {
    DeviceReply::Answer {
        to: AnswerTo::Read {
            kind: Some(kind),
            phase,
        },
        outcome: ReplyOutcome::Executed { observations },
    }
}

/// What a decoded response means for the pipeline.
pub fn reply(response: &calin::Response) -> DeviceReply {
    use calin::Response as R;
    match response {
        R::Credit(c) => read(
            InteractionType::ReadCredit,
            None,
            vec![
                AttributeValue::Credit(c.credit.watt_hours()),
                relay(c.relay),
            ],
        ),
        R::Voltage { phase, voltage } => read(
            InteractionType::ReadVoltage,
            Some(our_phase(*phase)),
            vec![AttributeValue::Voltage(f64::from(voltage.get()) / 100.0)],
        ),
        R::Current { phase, current } => read(
            InteractionType::ReadCurrent,
            Some(our_phase(*phase)),
            vec![AttributeValue::Current(f64::from(current.get()) / 100.0)],
        ),
        R::Power { phase, power } => read(
            InteractionType::ReadPower,
            Some(our_phase(*phase)),
            vec![AttributeValue::Power(f64::from(power.get()) / 10.0)],
        ),
        R::Date { date, .. } => read(
            InteractionType::ReadDate,
            None,
            vec![AttributeValue::Clock(MeterClock {
                date: chrono::NaiveDate::from_ymd_opt(
                    i32::from(date.year()),
                    u32::from(date.month()),
                    u32::from(date.day()),
                ),
                time: None,
            })],
        ),
        R::Time { time } => read(
            InteractionType::ReadTime,
            None,
            vec![AttributeValue::Clock(MeterClock {
                date: None,
                time: chrono::NaiveTime::from_hms_opt(
                    u32::from(time.hour()),
                    u32::from(time.minute()),
                    u32::from(time.second()),
                ),
            })],
        ),
        R::PowerLimit { limit } => read(
            InteractionType::ReadPowerLimit,
            None,
            vec![AttributeValue::PowerLimit(
                i32::try_from(limit.get()).unwrap_or(i32::MAX),
            )],
        ),
        R::HourlyReport(r) => {
            let mut observations = vec![
                relay(r.status.relay()),
                AttributeValue::Voltage(f64::from(r.voltage.get()) / 10.0),
                AttributeValue::Current(f64::from(r.current.get()) / 1000.0),
                AttributeValue::Tamper(r.status.tampered()),
            ];
            if let Some(wh) = r.source_1.remaining.watt_hours() {
                observations.push(AttributeValue::Credit(wh));
            }
            DeviceReply::Report { observations }
        }
        R::WriteAccepted => DeviceReply::Answer {
            to: AnswerTo::Write,
            outcome: ReplyOutcome::Executed {
                observations: vec![],
            },
        },
        R::TokenAccepted => DeviceReply::Answer {
            to: AnswerTo::Token,
            outcome: ReplyOutcome::Executed {
                observations: vec![],
            },
        },
        R::Nack(n) => {
            let to = match n.operation {
                calin::NackOperation::Read => AnswerTo::Read {
                    kind: None,
                    phase: None,
                },
                calin::NackOperation::PowerLimitRead => AnswerTo::Read {
                    kind: Some(InteractionType::ReadPowerLimit),
                    phase: None,
                },
                calin::NackOperation::Write => AnswerTo::Write,
                calin::NackOperation::Token => AnswerTo::Token,
            };
            DeviceReply::Answer {
                to,
                outcome: ReplyOutcome::Refused {
                    reason: n.reason().description().to_owned(),
                    code: Some(format!("calin_{:02x}", n.code)),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests;
