//! The meter address: the meter serial as 12 packed-BCD digits.

use std::fmt;
use std::str::FromStr;

use crate::bcd;
use crate::error::{DecodeError, ValueError};

/// Largest serial the 6-byte address field can carry (12 decimal digits).
const MAX_SERIAL: u64 = 999_999_999_999;

/// A CALIN meter address, built from the meter serial (its "external reference", e.g.
/// `47003333623`).
///
/// The serial must be 1 to 12 ASCII decimal digits. It is left-padded with zeros to 12 digits,
/// packed two digits per byte (BCD) and sent least significant byte first:
///
/// ```text
/// serial      47003333623
/// padded      0 4 7 0 0 3 3 3 3 6 2 3
/// BCD bytes   04 70 03 33 36 23
/// on the wire 23 36 33 03 70 04        (frame bytes 1..=6, no +0x33 offset)
/// ```
///
/// Because of the padding, serials that differ only in leading zeros (`"0047"` and `"47"`) are
/// the same address; [`Display`](fmt::Display) prints the number without leading zeros and
/// [`MeterAddress::to_padded`] prints all 12 digits.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct MeterAddress(u64);

impl MeterAddress {
    /// Parses a meter serial: 1 to 12 ASCII decimal digits, nothing else (no sign, no spaces).
    pub fn new(serial: &str) -> Result<Self, ValueError> {
        let valid =
            !serial.is_empty() && serial.len() <= 12 && serial.bytes().all(|b| b.is_ascii_digit());
        if !valid {
            return Err(ValueError::MeterSerial(serial.to_owned()));
        }
        // At most 12 digits, so the value fits a u64 and the parse cannot fail.
        serial
            .parse::<u64>()
            .map(Self)
            .map_err(|_| ValueError::MeterSerial(serial.to_owned()))
    }

    /// Builds an address from the serial as a number (at most 12 digits).
    pub fn from_number(serial: u64) -> Result<Self, ValueError> {
        if serial > MAX_SERIAL {
            return Err(ValueError::TooLarge {
                what: "meter serial",
                value: serial,
                max: MAX_SERIAL,
            });
        }
        Ok(Self(serial))
    }

    /// The serial as a number.
    pub fn number(self) -> u64 {
        self.0
    }

    /// The serial left-padded with zeros to the 12 digits the address field carries.
    pub fn to_padded(self) -> String {
        format!("{:012}", self.0)
    }

    /// The six address bytes in frame order (least significant BCD byte first).
    pub fn to_wire(self) -> [u8; 6] {
        let mut out = [0u8; 6];
        bcd::write_le(&mut out, self.0);
        out
    }

    /// Reads the six address bytes of a frame (least significant BCD byte first).
    pub fn from_wire(bytes: [u8; 6]) -> Result<Self, DecodeError> {
        for &b in &bytes {
            if bcd::from_byte(b).is_none() {
                return Err(DecodeError::BadAddress { byte: b });
            }
        }
        let value = bcd::read_le(&bytes, "address")?;
        // Twelve BCD digits always fit a u64.
        u64::try_from(value)
            .map(Self)
            .map_err(|_| DecodeError::BadAddress { byte: bytes[5] })
    }
}

impl fmt::Display for MeterAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for MeterAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeterAddress({})", self.to_padded())
    }
}

impl FromStr for MeterAddress {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for MeterAddress {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<MeterAddress> for String {
    fn from(a: MeterAddress) -> Self {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_address_bytes() {
        let a = MeterAddress::new("47003333623").unwrap();
        assert_eq!(a.to_wire(), [0x23, 0x36, 0x33, 0x03, 0x70, 0x04]);
        assert_eq!(a.to_padded(), "047003333623");
        assert_eq!(a.to_string(), "47003333623");
        assert_eq!(MeterAddress::from_wire(a.to_wire()).unwrap(), a);
    }

    #[test]
    fn serial_validation() {
        for bad in [
            "",
            "1234567890123",
            "12a",
            " 12",
            "+12",
            "-1",
            "1_000",
            "４７",
        ] {
            assert!(
                MeterAddress::new(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        for good in ["0", "1", "47003333623", "999999999999", "000000000047"] {
            assert!(
                MeterAddress::new(good).is_ok(),
                "{good:?} should be accepted"
            );
        }
        assert_eq!(
            MeterAddress::new("0047").unwrap(),
            MeterAddress::new("47").unwrap()
        );
        assert!(MeterAddress::from_number(1_000_000_000_000).is_err());
    }

    #[test]
    fn non_bcd_address_is_rejected() {
        assert_eq!(
            MeterAddress::from_wire([0x23, 0x36, 0x3A, 0x03, 0x70, 0x04]),
            Err(DecodeError::BadAddress { byte: 0x3A })
        );
        assert!(MeterAddress::from_wire([0xAA; 6]).is_err());
    }

    #[test]
    fn serde_as_string() {
        let a = MeterAddress::new("47003333623").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"47003333623\"");
        let back: MeterAddress = serde_json::from_str("\"47003333623\"").unwrap();
        assert_eq!(back, a);
        assert!(serde_json::from_str::<MeterAddress>("\"47x\"").is_err());
    }
}
