//! Error types: [`DecodeError`] for rejected frames, [`ValueError`] for values that cannot be put
//! on the wire.

/// Why a frame was rejected.
///
/// Every malformed, inconsistent or unknown frame is an error: the codec never "decodes with a
/// warning" and never panics, whatever the input bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the smallest frame of this kind.
    #[error("frame is {len} bytes long, the smallest valid frame is {min} bytes")]
    TooShort { len: usize, min: usize },

    /// A fixed framing byte (start `0x68`, second start `0x68`, end `0x16`) or a fixed byte of the
    /// DLMS wrapper has the wrong value.
    #[error("byte {offset} is {found:#04x}, expected {expected:#04x}")]
    BadDelimiter {
        offset: usize,
        expected: u8,
        found: u8,
    },

    /// The frame's size does not agree with the length field it carries.
    #[error(
        "length field announces {declared} data bytes, so the frame should be {expected_len} bytes long, but it is {actual_len}"
    )]
    LengthMismatch {
        declared: usize,
        expected_len: usize,
        actual_len: usize,
    },

    /// The checksum byte is not the sum (mod 256) of the bytes before it.
    #[error("checksum byte is {found:#04x}, the frame sums to {computed:#04x}")]
    BadChecksum { computed: u8, found: u8 },

    /// One of the six address bytes is not packed BCD.
    #[error("meter address byte {byte:#04x} is not packed BCD")]
    BadAddress { byte: u8 },

    /// The control code is not one this codec knows in this direction.
    #[error("unknown control code {0:#04x}")]
    UnknownControlCode(u8),

    /// The data identifier is unknown, or known but not valid with this control code.
    #[error("data identifier {di:#06x} is not known with control code {control:#04x}")]
    UnknownDataId { control: u8, di: u16 },

    /// The data field is shorter or longer than the layout for this control code and data
    /// identifier.
    #[error("data field of {what} is {actual} bytes long, expected {expected}")]
    DataLength {
        what: &'static str,
        expected: usize,
        actual: usize,
    },

    /// A field that must be packed BCD has a nibble above 9.
    #[error("field {field} holds {byte:#04x}, which is not packed BCD")]
    InvalidBcd { field: &'static str, byte: u8 },

    /// A field decodes to a value outside its range (month 13, hour 24, weekday 7, ...).
    #[error("field {field} holds {value}, which is out of range")]
    OutOfRange { field: &'static str, value: u32 },

    /// A fixed value inside the data field (the relay command byte, the write password) is not
    /// the one the protocol uses.
    #[error("field {field} holds {found:#04x}, expected {expected:#04x}")]
    UnexpectedValue {
        field: &'static str,
        expected: u8,
        found: u8,
    },

    /// A DLMS APDU tag or choice that this codec does not handle.
    #[error("unsupported DLMS {what} {found:#04x}")]
    UnsupportedDlms { what: &'static str, found: u8 },
}

/// A value that cannot be represented in a CALIN frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A meter serial must be 1 to 12 ASCII decimal digits.
    #[error("meter serial {0:?} is not 1 to 12 decimal digits")]
    MeterSerial(String),

    /// An STS token must be exactly 20 ASCII decimal digits. The token itself is not echoed.
    #[error("an STS token must be exactly 20 decimal digits (got {len} characters)")]
    Token { len: usize },

    /// A calendar date that does not exist or that the two-digit year field cannot carry.
    #[error("{year:04}-{month:02}-{day:02} is not a valid date between 2000-01-01 and 2099-12-31")]
    Date { year: u16, month: u8, day: u8 },

    /// A time of day outside 00:00:00 ..= 23:59:59.
    #[error("{hour:02}:{minute:02}:{second:02} is not a valid time of day")]
    Time { hour: u8, minute: u8, second: u8 },

    /// A quantity larger than its field can carry.
    #[error("{what} {value} exceeds the maximum {max}")]
    TooLarge {
        what: &'static str,
        value: u64,
        max: u64,
    },

    /// A quantity the field cannot carry exactly (negative, or finer than the field's resolution).
    #[error("{what} {value} cannot be represented exactly")]
    NotRepresentable { what: &'static str, value: i64 },
}
