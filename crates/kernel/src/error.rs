//! The error every domain service returns. The `api` crate maps it to problem+json once.

use serde::Serialize;

/// One invalid input field and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The resource does not exist, or exists in a tenant the caller cannot see.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    /// A known principal lacks the right.
    #[error("{0}")]
    Forbidden(String),
    /// A vendor the operation needs is down or not configured.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    pub fn invalid(field: &str, message: &str) -> Self {
        DomainError::Validation(vec![FieldError::new(field, message)])
    }
}

/// Collects every problem with an input before failing, so a client sees them all at once.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn check(&mut self, ok: bool, field: &str, message: &str) -> &mut Self {
        if !ok {
            self.errors.push(FieldError::new(field, message));
        }
        self
    }

    pub fn push(&mut self, error: FieldError) -> &mut Self {
        self.errors.push(error);
        self
    }

    /// A trimmed, non-empty text of at most `max` characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) -> &mut Self {
        let t = value.trim();
        self.check(!t.is_empty(), field, "must not be empty");
        self.check(
            t.chars().count() <= max,
            field,
            &format!("must be at most {max} characters"),
        )
    }

    pub fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) -> &mut Self {
        match value {
            Some(v) => self.text(field, v, max),
            None => self,
        }
    }

    /// A plausible e-mail address: one `@`, something on each side, a dot in the domain.
    pub fn email(&mut self, field: &str, value: &str) -> &mut Self {
        let ok = match value.trim().split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
                    && !value.contains(char::is_whitespace)
                    && value.len() <= 254
            }
            None => false,
        };
        self.check(ok, field, "must be an e-mail address")
    }

    /// An E.164 phone number: `+` then 8 to 15 digits.
    pub fn phone(&mut self, field: &str, value: &str) -> &mut Self {
        let digits = value.strip_prefix('+').unwrap_or("");
        let ok = (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        self.check(
            ok,
            field,
            "must be an E.164 phone number such as +2348012345678",
        )
    }

    pub fn non_negative(&mut self, field: &str, value: Option<i64>) -> &mut Self {
        self.check(value.is_none_or(|v| v >= 0), field, "must not be negative")
    }

    pub fn finish(&mut self) -> Result<(), DomainError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(std::mem::take(&mut self.errors)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_error() {
        let err = Validator::new()
            .text("name", "  ", 10)
            .email("email", "nobody")
            .phone("phone", "0801")
            .finish()
            .unwrap_err();
        match err {
            DomainError::Validation(errs) => {
                let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["name", "email", "phone"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn accepts_good_input() {
        Validator::new()
            .text("name", "Ada", 10)
            .email("email", "ada@example.com")
            .phone("phone", "+2348012345678")
            .non_negative("fee", Some(0))
            .finish()
            .unwrap();
    }

    #[test]
    fn rejects_bad_emails() {
        for bad in ["a@b", "@b.com", "a@.com", "a@b.", "a b@c.com", "a@b@c.com"] {
            assert!(
                Validator::new().email("e", bad).finish().is_err(),
                "{bad} accepted"
            );
        }
    }
}
