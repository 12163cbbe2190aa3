//! Packed BCD helpers (two decimal digits per byte, high nibble first).

use crate::error::DecodeError;

/// Packs a value below 100 into one BCD byte (`42` → `0x42`).
pub(crate) fn to_byte(v: u8) -> u8 {
    debug_assert!(v < 100, "BCD byte out of range: {v}");
    ((v / 10) << 4) | (v % 10)
}

/// Unpacks one BCD byte, or `None` when a nibble is above 9.
pub(crate) fn from_byte(b: u8) -> Option<u8> {
    let (hi, lo) = (b >> 4, b & 0x0F);
    (hi <= 9 && lo <= 9).then_some(hi * 10 + lo)
}

/// Unpacks one BCD byte of a named field.
pub(crate) fn byte(b: u8, field: &'static str) -> Result<u8, DecodeError> {
    from_byte(b).ok_or(DecodeError::InvalidBcd { field, byte: b })
}

/// Writes `value` as BCD into `out`, least significant byte first. The caller guarantees that
/// the value has at most `2 * out.len()` digits.
pub(crate) fn write_le(out: &mut [u8], value: impl Into<u128>) {
    let mut v: u128 = value.into();
    for slot in out.iter_mut() {
        // `v % 100` is below 100, so the narrowing is exact.
        *slot = to_byte((v % 100) as u8);
        v /= 100;
    }
    debug_assert_eq!(v, 0, "value does not fit the BCD field");
}

/// Reads BCD bytes stored least significant byte first (at most 19 bytes, so the result fits).
pub(crate) fn read_le(bytes: &[u8], field: &'static str) -> Result<u128, DecodeError> {
    let mut v: u128 = 0;
    for &b in bytes.iter().rev() {
        v = v * 100 + u128::from(byte(b, field)?);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(to_byte(0), 0x00);
        assert_eq!(to_byte(47), 0x47);
        assert_eq!(to_byte(99), 0x99);
        assert_eq!(from_byte(0x47), Some(47));
        assert_eq!(from_byte(0x4A), None);
        assert_eq!(from_byte(0xA4), None);
        for v in 0..100u8 {
            assert_eq!(from_byte(to_byte(v)), Some(v));
        }
    }

    #[test]
    fn little_endian_round_trip() {
        let mut out = [0u8; 4];
        write_le(&mut out, 12_345_678u32);
        assert_eq!(out, [0x78, 0x56, 0x34, 0x12]);
        assert_eq!(read_le(&out, "x").unwrap(), 12_345_678);
        assert_eq!(
            read_le(&[0x78, 0x5F], "x"),
            Err(DecodeError::InvalidBcd {
                field: "x",
                byte: 0x5F
            })
        );
    }
}
