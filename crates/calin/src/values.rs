//! Typed values carried by commands and responses.
//!
//! Every quantity keeps the resolution the wire uses (0.01 kWh, 0.01 V, ...), as an integer, so
//! that decoding and encoding are exact; accessors convert to the units the rest of tiamat uses
//! (watt-hours for energy).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::ValueError;

/// An electrical phase. Single-phase meters answer on phase A, the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum Phase {
    #[default]
    A,
    B,
    C,
}

impl Phase {
    /// All phases, in order.
    pub const ALL: [Phase; 3] = [Phase::A, Phase::B, Phase::C];

    /// 0 for A, 1 for B, 2 for C: the last digit of the phase-specific data identifiers.
    pub(crate) fn index(self) -> u16 {
        match self {
            Phase::A => 0,
            Phase::B => 1,
            Phase::C => 2,
        }
    }

    pub(crate) fn from_index(i: u16) -> Option<Self> {
        match i {
            0 => Some(Phase::A),
            1 => Some(Phase::B),
            2 => Some(Phase::C),
            _ => None,
        }
    }
}

/// State of the meter's load relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayState {
    /// Relay closed: the customer has power.
    On,
    /// Relay open: the customer is cut off.
    Off,
}

/// Day of the week as the meter counts it: 0 = Sunday ..= 6 = Saturday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Weekday {
    Sunday,
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
}

impl Weekday {
    /// The meter's number for the day (0 = Sunday).
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The day for a meter day number, `None` above 6.
    pub fn from_number(n: u8) -> Option<Self> {
        use Weekday::*;
        [
            Sunday, Monday, Tuesday, Wednesday, Thursday, Friday, Saturday,
        ]
        .get(usize::from(n))
        .copied()
    }
}

/// A calendar date the meter can carry: 2000-01-01 ..= 2099-12-31 (the year is sent as two
/// digits and read back as `20yy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// A date between 2000-01-01 and 2099-12-31 that exists in the Gregorian calendar.
    pub fn new(year: u16, month: u8, day: u8) -> Result<Self, ValueError> {
        let ok = (2000..=2099).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month);
        if ok {
            Ok(Self { year, month, day })
        } else {
            Err(ValueError::Date { year, month, day })
        }
    }

    pub fn year(self) -> u16 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    pub fn day(self) -> u8 {
        self.day
    }

    /// The two digits the wire carries (`2024` → `24`).
    pub(crate) fn short_year(self) -> u8 {
        // year is 2000..=2099, so the remainder is below 100.
        (self.year % 100) as u8
    }

    /// Day of the week of this (proleptic Gregorian) date.
    pub fn weekday(self) -> Weekday {
        // Sakamoto's method: 0 = Sunday.
        const T: [u16; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
        let y = if self.month < 3 {
            self.year - 1
        } else {
            self.year
        };
        let n =
            (y + y / 4 - y / 100 + y / 400 + T[usize::from(self.month - 1)] + u16::from(self.day))
                % 7;
        // n is below 7, so the narrowing is exact and the lookup always succeeds.
        Weekday::from_number(n as u8).unwrap_or(Weekday::Sunday)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A time of day, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TimeOfDay {
    hour: u8,
    minute: u8,
    second: u8,
}

impl TimeOfDay {
    pub fn new(hour: u8, minute: u8, second: u8) -> Result<Self, ValueError> {
        if hour < 24 && minute < 60 && second < 60 {
            Ok(Self {
                hour,
                minute,
                second,
            })
        } else {
            Err(ValueError::Time {
                hour,
                minute,
                second,
            })
        }
    }

    /// `hh:mm:00`: the predecessor's default when no seconds are given.
    pub fn hm(hour: u8, minute: u8) -> Result<Self, ValueError> {
        Self::new(hour, minute, 0)
    }

    pub fn hour(self) -> u8 {
        self.hour
    }

    pub fn minute(self) -> u8 {
        self.minute
    }

    pub fn second(self) -> u8 {
        self.second
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

/// The moment an hourly report was frozen, to the minute (the report carries no seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FreezeTime {
    date: Date,
    hour: u8,
    minute: u8,
}

impl FreezeTime {
    pub fn new(date: Date, hour: u8, minute: u8) -> Result<Self, ValueError> {
        if hour < 24 && minute < 60 {
            Ok(Self { date, hour, minute })
        } else {
            Err(ValueError::Time {
                hour,
                minute,
                second: 0,
            })
        }
    }

    pub fn date(self) -> Date {
        self.date
    }

    pub fn hour(self) -> u8 {
        self.hour
    }

    pub fn minute(self) -> u8 {
        self.minute
    }
}

impl fmt::Display for FreezeTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:02}:{:02}", self.date, self.hour, self.minute)
    }
}

/// Writes `value / 10^decimals` with exactly `decimals` fraction digits.
fn fmt_fixed(f: &mut fmt::Formatter<'_>, value: u64, decimals: u32, unit: &str) -> fmt::Result {
    if decimals == 0 {
        return write!(f, "{value} {unit}");
    }
    let scale = 10u64.pow(decimals);
    write!(
        f,
        "{}.{:0width$} {unit}",
        value / scale,
        value % scale,
        width = decimals as usize
    )
}

/// Declares an integer quantity newtype kept at the wire's resolution.
macro_rules! quantity {
    (
        $(#[$doc:meta])*
        $name:ident($repr:ty), max = $max:expr, unit = $unit:literal, decimals = $dec:literal,
        raw = $raw:ident
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
        #[serde(transparent)]
        pub struct $name($repr);

        impl $name {
            /// Largest value the field can carry, in the raw unit.
            pub const MAX: $repr = $max;

            /// Builds the quantity from its raw unit (see the type's documentation).
            pub fn $raw(value: $repr) -> Result<Self, ValueError> {
                if value <= Self::MAX {
                    Ok(Self(value))
                } else {
                    Err(ValueError::TooLarge {
                        what: stringify!($name),
                        value: u64::from(value),
                        max: u64::from(Self::MAX),
                    })
                }
            }

            /// The value in its raw unit.
            pub fn get(self) -> $repr {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_fixed(f, u64::from(self.0), $dec, $unit)
            }
        }
    };
}

quantity! {
    /// Prepaid energy credit held by the meter, in hundredths of a kWh (10 Wh steps), as READ_CREDIT
    /// reports it: 8 BCD digits, so at most 999 999.99 kWh.
    Credit(u32), max = 99_999_999, unit = "kWh", decimals = 2, raw = from_centi_kwh
}

impl Credit {
    /// The credit in watt-hours (tiamat's energy unit).
    pub fn watt_hours(self) -> i64 {
        i64::from(self.0) * 10
    }

    /// The credit for a number of watt-hours; it must be a non-negative multiple of 10 Wh that
    /// fits the field.
    pub fn from_watt_hours(wh: i64) -> Result<Self, ValueError> {
        if wh < 0 || wh % 10 != 0 {
            return Err(ValueError::NotRepresentable {
                what: "credit in Wh",
                value: wh,
            });
        }
        let too_large = ValueError::TooLarge {
            what: "credit in Wh",
            value: wh.unsigned_abs(),
            max: u64::from(Self::MAX) * 10,
        };
        let centi = u32::try_from(wh / 10).map_err(|_| too_large.clone())?;
        Self::from_centi_kwh(centi).map_err(|_| too_large)
    }
}

quantity! {
    /// Energy counter of the hourly report, in hundredths of a kWh (10 Wh steps); a 32-bit binary
    /// field, so every `u32` is valid.
    Energy(u32), max = u32::MAX, unit = "kWh", decimals = 2, raw = from_centi_kwh
}

impl Energy {
    /// The energy in watt-hours.
    pub fn watt_hours(self) -> i64 {
        i64::from(self.0) * 10
    }
}

quantity! {
    /// RMS voltage as a voltage read returns it, in hundredths of a volt: 6 BCD digits, so at most
    /// 9 999.99 V.
    Voltage(u32), max = 999_999, unit = "V", decimals = 2, raw = from_centivolts
}

quantity! {
    /// Current as a current read returns it, in hundredths of an ampere: 4 BCD digits, so at most
    /// 99.99 A.
    Current(u16), max = 9_999, unit = "A", decimals = 2, raw = from_centiamps
}

quantity! {
    /// Active power as a power read returns it, in tenths of a watt: 8 BCD digits, so at most
    /// 9 999 999.9 W.
    Power(u32), max = 99_999_999, unit = "W", decimals = 1, raw = from_deciwatts
}

quantity! {
    /// The power threshold of the meter's limiter (DLMS class 71, attribute 3), in watts.
    PowerLimit(u32), max = u32::MAX, unit = "W", decimals = 0, raw = from_watts
}

quantity! {
    /// Line voltage in the hourly report, in tenths of a volt (16-bit binary field).
    ReportVoltage(u16), max = u16::MAX, unit = "V", decimals = 1, raw = from_decivolts
}

quantity! {
    /// Line current in the hourly report, in thousandths of an ampere (32-bit binary field).
    ReportCurrent(u32), max = u32::MAX, unit = "A", decimals = 3, raw = from_milliamps
}

/// A kWh figure the meter sends as an IEEE-754 single-precision float (the hourly report's
/// "purchase remain" registers).
///
/// The raw bit pattern is kept, so decoding and re-encoding are exact even for NaN; equality
/// compares bit patterns.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FloatKwh(u32);

impl FloatKwh {
    pub fn from_kwh(kwh: f32) -> Self {
        Self(kwh.to_bits())
    }

    pub fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    pub fn to_bits(self) -> u32 {
        self.0
    }

    pub fn kwh(self) -> f32 {
        f32::from_bits(self.0)
    }

    /// Watt-hours rounded to the nearest integer, or `None` when the float is NaN, infinite or
    /// beyond ±2^53 Wh.
    pub fn watt_hours(self) -> Option<i64> {
        let wh = (f64::from(self.kwh()) * 1000.0).round();
        // 2^53: every integer up to here is exact in an f64, so the cast below is exact.
        const LIMIT: f64 = 9_007_199_254_740_992.0;
        (wh.is_finite() && wh.abs() <= LIMIT).then_some(wh as i64)
    }
}

impl fmt::Debug for FloatKwh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FloatKwh({:?} kWh, bits {:#010x})", self.kwh(), self.0)
    }
}

impl Serialize for FloatKwh {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Non-finite values have no JSON form: they become null.
        let v = self.kwh();
        if v.is_finite() {
            s.serialize_some(&v)
        } else {
            s.serialize_none()
        }
    }
}

/// The status byte of the hourly report: eight independent flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MeterStatus(u8);

impl MeterStatus {
    pub const RELAY_OPEN: u8 = 1 << 0;
    pub const BATTERY_LOW: u8 = 1 << 1;
    pub const MAGNETIC_INTERFERENCE: u8 = 1 << 2;
    pub const TERMINAL_COVER_OPEN: u8 = 1 << 3;
    pub const COVER_OPEN: u8 = 1 << 4;
    pub const SOURCE_2_ACTIVATED: u8 = 1 << 5;
    pub const CURRENT_REVERSE: u8 = 1 << 6;
    pub const CURRENT_UNBALANCE: u8 = 1 << 7;

    pub fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }

    /// Bit 0: the load relay is open (customer cut off).
    pub fn relay_open(self) -> bool {
        self.has(Self::RELAY_OPEN)
    }

    /// The relay state implied by bit 0 (open → [`RelayState::Off`]).
    ///
    /// The predecessor stored `relay_open` itself as `is_on`, which is inverted; this is the
    /// physically meaningful reading.
    pub fn relay(self) -> RelayState {
        if self.relay_open() {
            RelayState::Off
        } else {
            RelayState::On
        }
    }

    pub fn battery_low(self) -> bool {
        self.has(Self::BATTERY_LOW)
    }

    pub fn magnetic_interference(self) -> bool {
        self.has(Self::MAGNETIC_INTERFERENCE)
    }

    pub fn terminal_cover_open(self) -> bool {
        self.has(Self::TERMINAL_COVER_OPEN)
    }

    pub fn cover_open(self) -> bool {
        self.has(Self::COVER_OPEN)
    }

    pub fn source_2_activated(self) -> bool {
        self.has(Self::SOURCE_2_ACTIVATED)
    }

    pub fn current_reverse(self) -> bool {
        self.has(Self::CURRENT_REVERSE)
    }

    pub fn current_unbalance(self) -> bool {
        self.has(Self::CURRENT_UNBALANCE)
    }

    /// Any tamper indication: magnetic interference, terminal cover open or cover open.
    pub fn tampered(self) -> bool {
        self.has(Self::MAGNETIC_INTERFERENCE | Self::TERMINAL_COVER_OPEN | Self::COVER_OPEN)
    }
}

impl fmt::Debug for MeterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeterStatus({:#010b})", self.0)
    }
}

impl Serialize for MeterStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Flags {
            bits: u8,
            relay_open: bool,
            battery_low: bool,
            magnetic_interference: bool,
            terminal_cover_open: bool,
            cover_open: bool,
            source_2_activated: bool,
            current_reverse: bool,
            current_unbalance: bool,
        }
        Flags {
            bits: self.0,
            relay_open: self.relay_open(),
            battery_low: self.battery_low(),
            magnetic_interference: self.magnetic_interference(),
            terminal_cover_open: self.terminal_cover_open(),
            cover_open: self.cover_open(),
            source_2_activated: self.source_2_activated(),
            current_reverse: self.current_reverse(),
            current_unbalance: self.current_unbalance(),
        }
        .serialize(s)
    }
}

/// A 20-digit STS token (IEC 62055-41), the only way to top up, clear credit, clear tamper or
/// set the power limit of a CALIN LoRaWAN meter.
///
/// On the wire the 20 digits are packed BCD (10 bytes), least significant byte first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StsToken(u128);

impl StsToken {
    /// Number of decimal digits in a token.
    pub const DIGITS: usize = 20;

    /// Parses exactly 20 ASCII decimal digits (no separators).
    pub fn new(digits: &str) -> Result<Self, ValueError> {
        if digits.len() != Self::DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValueError::Token {
                len: digits.chars().count(),
            });
        }
        digits
            .parse::<u128>()
            .map(Self)
            .map_err(|_| ValueError::Token { len: Self::DIGITS })
    }

    /// The token from its numeric value (below 10^20).
    pub fn from_number(value: u128) -> Result<Self, ValueError> {
        if value < 10u128.pow(20) {
            Ok(Self(value))
        } else {
            Err(ValueError::Token {
                len: value.to_string().len(),
            })
        }
    }

    /// The token as a number.
    pub fn number(self) -> u128 {
        self.0
    }
}

impl fmt::Display for StsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020}", self.0)
    }
}

impl fmt::Debug for StsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StsToken({:020})", self.0)
    }
}

impl FromStr for StsToken {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for StsToken {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<StsToken> for String {
    fn from(t: StsToken) -> Self {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekday_matches_known_dates() {
        // 2000-01-01 was a Saturday, 2024-04-19 a Friday, 2099-12-31 a Thursday, 2024-02-29 a Thursday.
        let cases = [
            ((2000, 1, 1), Weekday::Saturday),
            ((2024, 4, 19), Weekday::Friday),
            ((2024, 2, 29), Weekday::Thursday),
            ((2025, 1, 5), Weekday::Sunday),
            ((2099, 12, 31), Weekday::Thursday),
        ];
        for ((y, m, d), wd) in cases {
            assert_eq!(Date::new(y, m, d).unwrap().weekday(), wd, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn date_validation() {
        assert!(Date::new(2024, 2, 29).is_ok());
        assert!(Date::new(2023, 2, 29).is_err());
        assert!(Date::new(2000, 2, 29).is_ok());
        assert!(Date::new(1999, 12, 31).is_err());
        assert!(Date::new(2100, 1, 1).is_err());
        assert!(Date::new(2024, 0, 1).is_err());
        assert!(Date::new(2024, 13, 1).is_err());
        assert!(Date::new(2024, 4, 31).is_err());
        assert!(Date::new(2024, 4, 0).is_err());
    }

    #[test]
    fn time_validation() {
        assert!(TimeOfDay::new(23, 59, 59).is_ok());
        assert!(TimeOfDay::new(24, 0, 0).is_err());
        assert!(TimeOfDay::new(0, 60, 0).is_err());
        assert!(TimeOfDay::new(0, 0, 60).is_err());
        assert_eq!(TimeOfDay::hm(7, 5).unwrap().to_string(), "07:05:00");
    }

    #[test]
    fn token_validation() {
        let t = StsToken::new("12345678901234567890").unwrap();
        assert_eq!(t.to_string(), "12345678901234567890");
        assert_eq!(StsToken::new("00000000000000000001").unwrap().number(), 1);
        for bad in [
            "",
            "1234567890123456789",
            "123456789012345678901",
            "1234 5678 9012 3456 78",
            "1234567890123456789a",
        ] {
            assert!(StsToken::new(bad).is_err(), "{bad:?}");
        }
        assert!(StsToken::from_number(10u128.pow(20)).is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(
            Credit::from_centi_kwh(12_345).unwrap().watt_hours(),
            123_450
        );
        assert_eq!(
            Credit::from_centi_kwh(12_345).unwrap().to_string(),
            "123.45 kWh"
        );
        assert!(Credit::from_centi_kwh(100_000_000).is_err());
        assert_eq!(Credit::from_watt_hours(123_450).unwrap().get(), 12_345);
        assert!(Credit::from_watt_hours(123_455).is_err());
        assert!(Credit::from_watt_hours(-10).is_err());
        assert_eq!(
            Voltage::from_centivolts(23_012).unwrap().to_string(),
            "230.12 V"
        );
        assert!(Voltage::from_centivolts(1_000_000).is_err());
        assert_eq!(Current::from_centiamps(505).unwrap().to_string(), "5.05 A");
        assert_eq!(
            Power::from_deciwatts(12_345).unwrap().to_string(),
            "1234.5 W"
        );
        assert_eq!(PowerLimit::from_watts(1_500).unwrap().to_string(), "1500 W");
        assert_eq!(
            ReportCurrent::from_milliamps(1_005).unwrap().to_string(),
            "1.005 A"
        );
        assert_eq!(FloatKwh::from_kwh(12.5).watt_hours(), Some(12_500));
        assert_eq!(FloatKwh::from_kwh(f32::NAN).watt_hours(), None);
    }

    #[test]
    fn status_flags() {
        let s = MeterStatus::from_bits(0b0001_0001);
        assert!(s.relay_open() && s.cover_open() && s.tampered());
        assert_eq!(s.relay(), RelayState::Off);
        assert!(!MeterStatus::from_bits(0b0010_0010).tampered());
        assert_eq!(MeterStatus::from_bits(0).relay(), RelayState::On);
    }
}
