//! The one DLMS/COSEM exchange CALIN LoRaWAN meters need: reading the limiter threshold
//! (READ_POWER_LIMIT).
//!
//! Both directions use the DLMS wrapper (IEC 62056-47): version, source wPort, destination wPort
//! and APDU length, each a big-endian u16, then the APDU. The client uses wPort `0x66`, the meter
//! wPort `0x01`. There is no meter address and no checksum, so the reply is checked byte by byte.

use crate::error::DecodeError;
use crate::values::PowerLimit;

/// The fixed GET request: wrapper (version 1, from wPort 0x66 to wPort 1, 13 APDU bytes), then
/// GET-Request-Normal, invoke-id-and-priority 0xC1, class 71 (Limiter), OBIS 0-0:17.0.0.255,
/// attribute 3 (threshold active), no selective access.
pub const READ_POWER_LIMIT_REQUEST: [u8; 21] = [
    0x00, 0x01, 0x00, 0x66, 0x00, 0x01, 0x00, 0x0D, // wrapper
    0xC0, 0x01, INVOKE_ID, // GET-Request, Normal, invoke-id-and-priority
    0x00, 0x47, // class-id 71
    0x00, 0x00, 0x11, 0x00, 0x00, 0xFF, // OBIS 0-0:17.0.0.255
    0x03, // attribute 3
    0x00, // no access selection
];

const INVOKE_ID: u8 = 0xC1;
/// Wrapper of a reply: version 1, from the meter's wPort 1 to the client's wPort 0x66.
const REPLY_WRAPPER: [u8; 6] = [0x00, 0x01, 0x00, 0x01, 0x00, 0x66];
const WRAPPER_LEN: usize = 8;
const GET_RESPONSE: u8 = 0xC4;
const GET_RESPONSE_NORMAL: u8 = 0x01;
const RESULT_DATA: u8 = 0x00;
const RESULT_ACCESS_ERROR: u8 = 0x01;
const TYPE_DOUBLE_LONG_UNSIGNED: u8 = 0x06;
/// APDU of a successful reply: tag, choice, invoke id, result choice, type tag, 4 value bytes.
const DATA_APDU_LEN: usize = 9;
/// APDU of a failed reply: tag, choice, invoke id, result choice, Data-Access-Result.
const ERROR_APDU_LEN: usize = 5;

/// The decoded reply to [`READ_POWER_LIMIT_REQUEST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    Limit(PowerLimit),
    /// The meter answered with a Data-Access-Result error code.
    AccessError(u8),
}

/// Encodes the meter's reply.
pub(crate) fn encode_reply(reply: Reply) -> Vec<u8> {
    let mut apdu = vec![GET_RESPONSE, GET_RESPONSE_NORMAL, INVOKE_ID];
    match reply {
        Reply::Limit(limit) => {
            apdu.extend([RESULT_DATA, TYPE_DOUBLE_LONG_UNSIGNED]);
            apdu.extend(limit.get().to_be_bytes());
        }
        Reply::AccessError(code) => apdu.extend([RESULT_ACCESS_ERROR, code]),
    }
    let mut out = Vec::with_capacity(WRAPPER_LEN + apdu.len());
    out.extend(REPLY_WRAPPER);
    // The APDU is 5 or 9 bytes long.
    out.extend((apdu.len() as u16).to_be_bytes());
    out.extend(apdu);
    out
}

/// Compares `bytes[offset..]` with `expected`, reporting the first differing byte.
fn expect_bytes(bytes: &[u8], offset: usize, expected: &[u8]) -> Result<(), DecodeError> {
    for (i, &e) in expected.iter().enumerate() {
        let found = bytes.get(offset + i).copied();
        if found != Some(e) {
            return Err(match found {
                Some(found) => DecodeError::BadDelimiter {
                    offset: offset + i,
                    expected: e,
                    found,
                },
                None => DecodeError::TooShort {
                    len: bytes.len(),
                    min: offset + expected.len(),
                },
            });
        }
    }
    Ok(())
}

/// Decodes the meter's reply. Everything except the value (or error code) must be exactly as
/// specified, because the wrapper carries no checksum.
pub(crate) fn decode_reply(bytes: &[u8]) -> Result<Reply, DecodeError> {
    let min = WRAPPER_LEN + ERROR_APDU_LEN;
    if bytes.len() < WRAPPER_LEN {
        return Err(DecodeError::TooShort {
            len: bytes.len(),
            min,
        });
    }
    expect_bytes(bytes, 0, &REPLY_WRAPPER)?;
    let declared = usize::from(u16::from_be_bytes([bytes[6], bytes[7]]));
    let expected_len = WRAPPER_LEN + declared;
    if bytes.len() != expected_len {
        return Err(DecodeError::LengthMismatch {
            declared,
            expected_len,
            actual_len: bytes.len(),
        });
    }
    let apdu = &bytes[WRAPPER_LEN..];
    let short = DecodeError::DataLength {
        what: "DLMS GET response",
        expected: DATA_APDU_LEN,
        actual: apdu.len(),
    };
    let tag = *apdu.first().ok_or(short)?;
    if tag != GET_RESPONSE {
        return Err(DecodeError::UnsupportedDlms {
            what: "APDU tag",
            found: tag,
        });
    }
    let choice = *apdu.get(1).ok_or(short)?;
    if choice != GET_RESPONSE_NORMAL {
        return Err(DecodeError::UnsupportedDlms {
            what: "GET-Response choice",
            found: choice,
        });
    }
    let invoke = *apdu.get(2).ok_or(short)?;
    if invoke != INVOKE_ID {
        return Err(DecodeError::UnexpectedValue {
            field: "invoke-id-and-priority",
            expected: INVOKE_ID,
            found: invoke,
        });
    }
    match *apdu.get(3).ok_or(short)? {
        RESULT_DATA => {
            if apdu.len() != DATA_APDU_LEN {
                return Err(DecodeError::DataLength {
                    what: "DLMS GET response with data",
                    expected: DATA_APDU_LEN,
                    actual: apdu.len(),
                });
            }
            if apdu[4] != TYPE_DOUBLE_LONG_UNSIGNED {
                return Err(DecodeError::UnsupportedDlms {
                    what: "data type",
                    found: apdu[4],
                });
            }
            let watts = u32::from_be_bytes([apdu[5], apdu[6], apdu[7], apdu[8]]);
            // Every u32 is a valid PowerLimit.
            Ok(Reply::Limit(
                PowerLimit::from_watts(watts).unwrap_or_default(),
            ))
        }
        RESULT_ACCESS_ERROR => {
            if apdu.len() != ERROR_APDU_LEN {
                return Err(DecodeError::DataLength {
                    what: "DLMS GET response with access error",
                    expected: ERROR_APDU_LEN,
                    actual: apdu.len(),
                });
            }
            Ok(Reply::AccessError(apdu[4]))
        }
        other => Err(DecodeError::UnsupportedDlms {
            what: "Get-Data-Result choice",
            found: other,
        }),
    }
}

/// Accepts exactly [`READ_POWER_LIMIT_REQUEST`].
pub(crate) fn decode_request(bytes: &[u8]) -> Result<(), DecodeError> {
    expect_bytes(bytes, 0, &READ_POWER_LIMIT_REQUEST)?;
    let n = READ_POWER_LIMIT_REQUEST.len();
    if bytes.len() != n {
        // The prefix matched, so the frame announced the 13-byte APDU and carries more.
        return Err(DecodeError::LengthMismatch {
            declared: n - WRAPPER_LEN,
            expected_len: n,
            actual_len: bytes.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_the_spec_frame() {
        assert_eq!(
            READ_POWER_LIMIT_REQUEST,
            [
                0x00, 0x01, 0x00, 0x66, 0x00, 0x01, 0x00, 0x0D, 0xC0, 0x01, 0xC1, 0x00, 0x47, 0x00,
                0x00, 0x11, 0x00, 0x00, 0xFF, 0x03, 0x00
            ]
        );
        // The APDU length field matches the APDU.
        assert_eq!(
            usize::from(READ_POWER_LIMIT_REQUEST[7]),
            READ_POWER_LIMIT_REQUEST.len() - 8
        );
        assert_eq!(decode_request(&READ_POWER_LIMIT_REQUEST), Ok(()));
        assert!(decode_request(&READ_POWER_LIMIT_REQUEST[..20]).is_err());
    }

    #[test]
    fn reply_layouts() {
        let ok = encode_reply(Reply::Limit(PowerLimit::from_watts(1500).unwrap()));
        assert_eq!(
            ok,
            [
                0x00, 0x01, 0x00, 0x01, 0x00, 0x66, 0x00, 0x09, 0xC4, 0x01, 0xC1, 0x00, 0x06, 0x00,
                0x00, 0x05, 0xDC
            ]
        );
        assert_eq!(
            decode_reply(&ok),
            Ok(Reply::Limit(PowerLimit::from_watts(1500).unwrap()))
        );

        let err = encode_reply(Reply::AccessError(4));
        assert_eq!(
            err,
            [
                0x00, 0x01, 0x00, 0x01, 0x00, 0x66, 0x00, 0x05, 0xC4, 0x01, 0xC1, 0x01, 0x04
            ]
        );
        assert_eq!(decode_reply(&err), Ok(Reply::AccessError(4)));
    }

    #[test]
    fn reply_rejections() {
        let ok = encode_reply(Reply::Limit(PowerLimit::from_watts(1500).unwrap()));
        let mut b = ok.clone();
        b[12] = 0x05; // double-long instead of double-long-unsigned
        assert_eq!(
            decode_reply(&b),
            Err(DecodeError::UnsupportedDlms {
                what: "data type",
                found: 0x05
            })
        );
        let mut b = ok.clone();
        b[7] = 0x0A;
        assert!(matches!(
            decode_reply(&b),
            Err(DecodeError::LengthMismatch { .. })
        ));
        let mut b = ok.clone();
        b[3] = 0x66; // request direction
        assert!(matches!(
            decode_reply(&b),
            Err(DecodeError::BadDelimiter { offset: 3, .. })
        ));
        assert!(matches!(
            decode_reply(&ok[..7]),
            Err(DecodeError::TooShort { .. })
        ));
        // Header announcing an APDU of 2 bytes.
        let b = [0x00, 0x01, 0x00, 0x01, 0x00, 0x66, 0x00, 0x02, 0xC4, 0x01];
        assert!(matches!(
            decode_reply(&b),
            Err(DecodeError::DataLength { .. })
        ));
    }
}
