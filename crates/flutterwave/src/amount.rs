//! Exact conversion between our minor units and the provider's major-unit decimals. No floats:
//! the decimal text is built from and parsed into integers.

use kernel::Currency;

/// Digits after the decimal point for the currencies we take payments in. Anything else is
/// refused rather than guessed (a wrong exponent is a hundredfold error).
pub fn decimals(currency: Currency) -> Option<u32> {
    match currency.as_str() {
        "NGN" | "USD" | "EUR" => Some(2),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("currency {0} is not supported")]
    UnsupportedCurrency(Currency),
    #[error("the amount must be positive")]
    NotPositive,
    #[error("{0:?} is not a decimal amount")]
    Malformed(String),
    #[error("{0:?} has more decimals than the currency's minor unit")]
    TooPrecise(String),
    #[error("the amount is too large")]
    TooLarge,
}

/// `150050` NGN → `"1500.50"`. Only positive amounts are ever sent to the provider.
pub fn to_major(minor: i64, currency: Currency) -> Result<String, AmountError> {
    let places = decimals(currency).ok_or(AmountError::UnsupportedCurrency(currency))?;
    if minor <= 0 {
        return Err(AmountError::NotPositive);
    }
    let unit = 10_i64.pow(places);
    let whole = minor / unit;
    let fraction = minor % unit;
    if places == 0 {
        return Ok(whole.to_string());
    }
    Ok(format!(
        "{whole}.{fraction:0width$}",
        width = places as usize
    ))
}

/// `"1500.5"`, `"1500.50"` or `1500` (as sent) → `150050` minor units. Zero and negative amounts
/// are valid answers (a failed charge may report 0); a fraction finer than the minor unit, an
/// exponent or any other shape is refused.
pub fn to_minor(text: &str, currency: Currency) -> Result<i64, AmountError> {
    let places = decimals(currency).ok_or(AmountError::UnsupportedCurrency(currency))?;
    let malformed = || AmountError::Malformed(text.chars().take(40).collect());
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (whole, fraction) = match t.split_once('.') {
        Some((w, f)) => (w, f),
        None => (t, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || (t.contains('.') && fraction.is_empty())
    {
        return Err(malformed());
    }
    // Trailing zeros beyond the minor unit are harmless ("100.500" NGN); other digits are not.
    let significant = fraction.trim_end_matches('0');
    if significant.len() > places as usize {
        return Err(AmountError::TooPrecise(text.chars().take(40).collect()));
    }
    let whole: i64 = whole.parse().map_err(|_| AmountError::TooLarge)?;
    let mut padded = significant.to_owned();
    while padded.len() < places as usize {
        padded.push('0');
    }
    let fraction: i64 = if padded.is_empty() {
        0
    } else {
        padded.parse().map_err(|_| malformed())?
    };
    let minor = whole
        .checked_mul(10_i64.pow(places))
        .and_then(|m| m.checked_add(fraction))
        .ok_or(AmountError::TooLarge)?;
    Ok(if negative { -minor } else { minor })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ngn() -> Currency {
        Currency::parse("NGN").unwrap()
    }

    #[test]
    fn major_units_have_two_decimals() {
        assert_eq!(to_major(150050, ngn()).unwrap(), "1500.50");
        assert_eq!(to_major(1, ngn()).unwrap(), "0.01");
        assert_eq!(to_major(100, ngn()).unwrap(), "1.00");
        assert_eq!(to_major(0, ngn()), Err(AmountError::NotPositive));
        assert_eq!(to_major(-5, ngn()), Err(AmountError::NotPositive));
        let kes = Currency::parse("KES").unwrap();
        assert_eq!(
            to_major(100, kes),
            Err(AmountError::UnsupportedCurrency(kes))
        );
    }

    #[test]
    fn decimals_parse_exactly() {
        for (text, minor) in [
            ("1500.50", 150050),
            ("1500.5", 150050),
            ("1500", 150000),
            ("0.01", 1),
            ("100.500", 10050),
            ("0", 0),
            ("-2.5", -250),
            // 0.1 + 0.2 style values that floats get wrong.
            ("0.29", 29),
            ("1.15", 115),
            ("92233720368547758.07", i64::MAX),
        ] {
            assert_eq!(to_minor(text, ngn()), Ok(minor), "{text}");
        }
        for bad in ["", "1.", ".5", "1e3", "1,5", "abc", "1.2.3", "+1", " 1 2"] {
            assert!(to_minor(bad, ngn()).is_err(), "{bad} accepted");
        }
        assert!(matches!(
            to_minor("1.005", ngn()),
            Err(AmountError::TooPrecise(_))
        ));
        assert_eq!(
            to_minor("92233720368547758.08", ngn()),
            Err(AmountError::TooLarge)
        );
    }

    proptest! {
        #[test]
        fn minor_to_major_and_back_round_trips(minor in 1_i64..=i64::MAX) {
            for code in ["NGN", "USD", "EUR"] {
                let c = Currency::parse(code).unwrap();
                let text = to_major(minor, c).unwrap();
                prop_assert_eq!(to_minor(&text, c), Ok(minor));
            }
        }

        #[test]
        fn trailing_zeros_do_not_change_the_amount(minor in 1_i64..=1_000_000_000_000, zeros in 0usize..5) {
            let text = format!("{}{}", to_major(minor, ngn()).unwrap(), "0".repeat(zeros));
            prop_assert_eq!(to_minor(&text, ngn()), Ok(minor));
        }
    }
}
