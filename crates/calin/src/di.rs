//! Data identifiers (DI): the two-byte register numbers of the DL/T 645-style frames.

use std::fmt;

use crate::values::Phase;

/// A data identifier this codec knows.
///
/// On the wire a DI is the first two bytes of the data field, low byte first, each byte +0x33
/// (`E421` → `54 17`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataId {
    /// `E421`: remaining credit, credit level, relay status.
    Credit,
    /// `B611` / `B612` / `B613`: voltage of phase A / B / C.
    Voltage(Phase),
    /// `B621` / `B622` / `B623`: current of phase A / B / C.
    Current(Phase),
    /// `B630` / `B631` / `B632`: active power of phase A / B / C.
    Power(Phase),
    /// `C010`: date (and weekday).
    Date,
    /// `C011`: time of day.
    Time,
    /// `C03C`: relay off (open), written with data `0x35`.
    RelayOff,
    /// `C03D`: relay on (close), written with data `0x96`.
    RelayOn,
    /// `A120`: STS token delivery.
    Token,
    /// `C111`: the hourly report the meter sends on its own.
    HourlyReport,
}

impl DataId {
    /// The logical 16-bit identifier (`0xE421` for [`DataId::Credit`]).
    pub fn code(self) -> u16 {
        match self {
            DataId::Credit => 0xE421,
            DataId::Voltage(p) => 0xB611 + p.index(),
            DataId::Current(p) => 0xB621 + p.index(),
            DataId::Power(p) => 0xB630 + p.index(),
            DataId::Date => 0xC010,
            DataId::Time => 0xC011,
            DataId::RelayOff => 0xC03C,
            DataId::RelayOn => 0xC03D,
            DataId::Token => 0xA120,
            DataId::HourlyReport => 0xC111,
        }
    }

    /// The identifier for a logical code, `None` when the codec does not know it.
    pub fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            0xE421 => DataId::Credit,
            0xB611..=0xB613 => DataId::Voltage(Phase::from_index(code - 0xB611)?),
            0xB621..=0xB623 => DataId::Current(Phase::from_index(code - 0xB621)?),
            0xB630..=0xB632 => DataId::Power(Phase::from_index(code - 0xB630)?),
            0xC010 => DataId::Date,
            0xC011 => DataId::Time,
            0xC03C => DataId::RelayOff,
            0xC03D => DataId::RelayOn,
            0xA120 => DataId::Token,
            0xC111 => DataId::HourlyReport,
            _ => return None,
        })
    }

    /// Every identifier the codec knows.
    pub fn all() -> impl Iterator<Item = DataId> {
        let fixed = [
            DataId::Credit,
            DataId::Date,
            DataId::Time,
            DataId::RelayOff,
            DataId::RelayOn,
            DataId::Token,
            DataId::HourlyReport,
        ];
        let phased = Phase::ALL
            .into_iter()
            .flat_map(|p| [DataId::Voltage(p), DataId::Current(p), DataId::Power(p)]);
        fixed.into_iter().chain(phased)
    }
}

impl fmt::Display for DataId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04X}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        let all: Vec<DataId> = DataId::all().collect();
        assert_eq!(all.len(), 16);
        for di in all {
            assert_eq!(DataId::from_code(di.code()), Some(di));
        }
        assert_eq!(DataId::from_code(0xB614), None);
        assert_eq!(DataId::from_code(0xB633), None);
        assert_eq!(DataId::from_code(0x9010), None);
        assert_eq!(DataId::Power(Phase::C).to_string(), "B632");
    }
}
