//! The DL/T 645-style envelope: delimiters, address, control code, length, +0x33 data, checksum.

use crate::address::MeterAddress;
use crate::error::DecodeError;

/// Frame start delimiter (bytes 0 and 7).
pub(crate) const START: u8 = 0x68;
/// Frame end delimiter (last byte).
pub(crate) const END: u8 = 0x16;
/// Added (mod 256) to every byte of the data field on the wire.
pub(crate) const OFFSET: u8 = 0x33;
/// Bytes around the data field: start, 6 address bytes, start, control, length, checksum, end.
pub(crate) const OVERHEAD: usize = 12;

/// Control codes of the frames, requests and responses.
pub mod control {
    /// Request: read a register.
    pub const READ: u8 = 0x01;
    /// Request: write a register (relay, date, time), with a password.
    pub const WRITE: u8 = 0x04;
    /// Request: deliver an STS token.
    pub const TOKEN: u8 = 0x00;
    /// Response: read succeeded, data follows.
    pub const READ_OK: u8 = 0x81;
    /// Response: read failed, one error byte follows.
    pub const READ_FAILED: u8 = 0xC1;
    /// Response: write executed.
    pub const WRITE_OK: u8 = 0x84;
    /// Response: write refused, one error byte follows.
    pub const WRITE_FAILED: u8 = 0xC4;
    /// Response: token accepted.
    pub const TOKEN_OK: u8 = 0x80;
    /// Response: token rejected, one error byte follows.
    pub const TOKEN_FAILED: u8 = 0xC0;
}

/// Sum of the bytes, mod 256.
pub(crate) fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, &b| acc.wrapping_add(b))
}

/// A parsed envelope. `data` is the logical data field: the +0x33 offset is already removed, the
/// DI (if any) is its first two bytes, low byte first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub address: MeterAddress,
    pub control: u8,
    pub data: Vec<u8>,
}

/// Wraps a logical data field (without the offset) into a complete frame.
pub(crate) fn encode(address: MeterAddress, control: u8, data: &[u8]) -> Vec<u8> {
    // Every data field this crate builds is at most 35 bytes; the length byte cannot overflow.
    debug_assert!(
        data.len() <= usize::from(u8::MAX),
        "data field longer than 255 bytes"
    );
    let len = u8::try_from(data.len()).unwrap_or(u8::MAX);
    let mut out = Vec::with_capacity(OVERHEAD + data.len());
    out.push(START);
    out.extend_from_slice(&address.to_wire());
    out.push(START);
    out.push(control);
    out.push(len);
    out.extend(data.iter().map(|b| b.wrapping_add(OFFSET)));
    out.push(checksum(&out));
    out.push(END);
    out
}

/// Checks the envelope and unwraps the data field. Rejects, in this order: a frame shorter than
/// 12 bytes, a wrong start byte, a wrong second start byte, a size that disagrees with the length
/// byte, a wrong end byte, a wrong checksum, and an address that is not BCD.
pub(crate) fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
    if bytes.len() < OVERHEAD {
        return Err(DecodeError::TooShort {
            len: bytes.len(),
            min: OVERHEAD,
        });
    }
    for offset in [0, 7] {
        if bytes[offset] != START {
            return Err(DecodeError::BadDelimiter {
                offset,
                expected: START,
                found: bytes[offset],
            });
        }
    }
    let declared = usize::from(bytes[9]);
    let expected_len = OVERHEAD + declared;
    if bytes.len() != expected_len {
        return Err(DecodeError::LengthMismatch {
            declared,
            expected_len,
            actual_len: bytes.len(),
        });
    }
    let last = bytes.len() - 1;
    if bytes[last] != END {
        return Err(DecodeError::BadDelimiter {
            offset: last,
            expected: END,
            found: bytes[last],
        });
    }
    let computed = checksum(&bytes[..last - 1]);
    if computed != bytes[last - 1] {
        return Err(DecodeError::BadChecksum {
            computed,
            found: bytes[last - 1],
        });
    }
    let mut addr = [0u8; 6];
    addr.copy_from_slice(&bytes[1..7]);
    let address = MeterAddress::from_wire(addr)?;
    let data = bytes[10..10 + declared]
        .iter()
        .map(|b| b.wrapping_sub(OFFSET))
        .collect();
    Ok(Frame {
        address,
        control: bytes[8],
        data,
    })
}

/// Builder for a logical data field.
#[derive(Debug, Default)]
pub(crate) struct DataWriter(Vec<u8>);

impl DataWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }

    pub fn le(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        self
    }

    pub fn di(self, code: u16) -> Self {
        self.le(&code.to_le_bytes())
    }

    pub fn bcd_le(mut self, value: impl Into<u128>, width: usize) -> Self {
        let start = self.0.len();
        self.0.resize(start + width, 0);
        crate::bcd::write_le(&mut self.0[start..], value);
        self
    }

    pub fn bcd_byte(self, v: u8) -> Self {
        self.u8(crate::bcd::to_byte(v))
    }

    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

/// Cursor over a logical data field whose total length the caller has already checked.
pub(crate) struct DataReader<'a> {
    bytes: &'a [u8],
    what: &'static str,
    expected: usize,
}

impl<'a> DataReader<'a> {
    /// Reads `bytes`, which must be exactly `expected` bytes long.
    pub fn exact(
        bytes: &'a [u8],
        expected: usize,
        what: &'static str,
    ) -> Result<Self, DecodeError> {
        if bytes.len() != expected {
            return Err(DecodeError::DataLength {
                what,
                expected,
                actual: bytes.len(),
            });
        }
        Ok(Self {
            bytes,
            what,
            expected,
        })
    }

    pub fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let short = DecodeError::DataLength {
            what: self.what,
            expected: self.expected,
            actual: self.bytes.len(),
        };
        let (head, rest) = self.bytes.split_at_checked(N).ok_or(short)?;
        self.bytes = rest;
        head.try_into().map_err(|_| short)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> MeterAddress {
        MeterAddress::new("47003333623").unwrap()
    }

    #[test]
    fn envelope_round_trip() {
        let bytes = encode(addr(), 0x81, &[0x21, 0xE4, 1, 2, 3]);
        let f = decode(&bytes).unwrap();
        assert_eq!(
            f,
            Frame {
                address: addr(),
                control: 0x81,
                data: vec![0x21, 0xE4, 1, 2, 3]
            }
        );
    }

    #[test]
    fn envelope_errors() {
        let good = encode(addr(), 0x84, &[]);
        assert_eq!(good.len(), 12);
        assert!(decode(&good).is_ok());
        assert_eq!(
            decode(&good[..11]),
            Err(DecodeError::TooShort { len: 11, min: 12 })
        );

        let mut b = good.clone();
        b[0] = 0xFE;
        assert_eq!(
            decode(&b),
            Err(DecodeError::BadDelimiter {
                offset: 0,
                expected: 0x68,
                found: 0xFE
            })
        );

        let mut b = good.clone();
        b[7] = 0x69;
        assert_eq!(
            decode(&b),
            Err(DecodeError::BadDelimiter {
                offset: 7,
                expected: 0x68,
                found: 0x69
            })
        );

        let mut b = good.clone();
        b[9] = 1;
        assert_eq!(
            decode(&b),
            Err(DecodeError::LengthMismatch {
                declared: 1,
                expected_len: 13,
                actual_len: 12
            })
        );

        let mut b = good.clone();
        b[11] = 0x17;
        assert_eq!(
            decode(&b),
            Err(DecodeError::BadDelimiter {
                offset: 11,
                expected: 0x16,
                found: 0x17
            })
        );

        let mut b = good.clone();
        b[10] = b[10].wrapping_add(1);
        assert!(matches!(decode(&b), Err(DecodeError::BadChecksum { .. })));

        let mut with_tail = good.clone();
        with_tail.push(0x00);
        assert!(matches!(
            decode(&with_tail),
            Err(DecodeError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn non_bcd_address_with_valid_checksum_is_rejected() {
        let mut b = encode(addr(), 0x84, &[]);
        b[3] = 0x3F;
        let sum = checksum(&b[..10]);
        b[10] = sum;
        assert_eq!(decode(&b), Err(DecodeError::BadAddress { byte: 0x3F }));
    }
}
