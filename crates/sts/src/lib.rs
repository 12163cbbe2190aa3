//! The NXT STS generator service: [`StsGenerator`] is the [`TokenGenerator`] for CALIN LoRaWAN
//! meters (predecessor §5.1). The CALIN V1/V2 APIs generate their own tokens elsewhere.
//!
//! One call is `POST {base}/token` with
//! `{"decoderKey", "randomNumber", "issueDate", "type", "kwh"?, "powerLimit"?}` and answers
//! `{"token": "…"}`: 20 digits, possibly grouped with spaces.
//!
//! A token is worth money, so a call is never retried: a lost answer must surface as an error
//! rather than a second, silently different token. Neither the token nor the decoder key ever
//! reaches a log, an error message or a `Debug` output.
//!
//! Refusals before any HTTP call:
//! * a protocol other than `CALIN_LORAWAN` → `Unavailable("no STS generator for this meter's
//!   protocol")`: another generator (the CALIN APIs) is responsible, this one is "not configured";
//! * no decoder key → `Validation` on `decoder_key`: the meter's data is incomplete, which an
//!   operator can fix, and no amount of waiting for a vendor will;
//! * a TOP_UP of zero or negative energy → `Validation` on `energy_wh`; a negative power limit →
//!   `Validation` on `power_limit_w`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use grids::vocab::CommunicationProtocol;
use kernel::DomainError;
use meters::{StsToken, TokenGenerator, TokenKind, TokenRequest};
use rand::Rng as _;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use url::Url;

/// Time limit for one call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `randomNumber` is drawn from `0..=MAX_RANDOM_NUMBER` (the predecessor's
/// `floor(random·12)`; STS's field has 4 bits, so any of these is valid).
pub const MAX_RANDOM_NUMBER: u8 = 11;
/// Digits in an STS token.
const TOKEN_DIGITS: usize = 20;
/// Answers larger than this are cut (we need a token or an error message).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Service messages kept in a `Validation` error are cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 300;
const API_KEY_HEADER: &str = "X-API-Key";

/// Client for the NXT STS generator service. Cheap to clone; `Debug` hides the API key.
#[derive(Debug, Clone)]
pub struct StsGenerator {
    endpoint: Url,
    api_key: Option<SecretString>,
    http: reqwest::Client,
    timeout: Duration,
}

impl StsGenerator {
    /// `base_url` is the service root (`STS_GENERATOR_API`); calls go to `{base_url}/token`.
    /// When `api_key` is set it is sent as `X-API-Key`.
    pub fn new(base_url: Url, api_key: Option<SecretString>, http: reqwest::Client) -> Self {
        Self {
            endpoint: token_endpoint(base_url),
            api_key,
            http,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Replaces the per-call time limit (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn call(&self, body: &GenerateBody<'_>) -> Result<StsToken, DomainError> {
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .timeout(self.timeout)
            .json(body);
        if let Some(key) = &self.api_key {
            request = request.header(API_KEY_HEADER, key.expose_secret());
        }
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            let room = MAX_RESPONSE_BYTES.saturating_sub(bytes.len());
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        if status.is_success() {
            return parse_token(&bytes);
        }
        if status == StatusCode::TOO_MANY_REQUESTS || !status.is_client_error() {
            return Err(unavailable(&format!("HTTP {}", status.as_u16())));
        }
        let message = refusal_message(status, &bytes, body.decoder_key);
        Err(DomainError::invalid("token", &message))
    }
}

#[async_trait]
impl TokenGenerator for StsGenerator {
    async fn generate(&self, request: TokenRequest) -> Result<StsToken, DomainError> {
        let result = match build_body(&request) {
            Ok(body) => self.call(&body).await,
            // Refused before any call: nothing to count as an integration call.
            Err(err) => return Err(err),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(DomainError::Unavailable(_)) => "unavailable",
            Err(_) => "error",
        };
        metrics::counter!(
            "tiamat_integration_calls_total",
            "vendor" => "sts",
            "operation" => "generate",
            "outcome" => outcome
        )
        .increment(1);
        match &result {
            Ok(_) => tracing::debug!(meter = request.meter_id.0, "STS token generated"),
            Err(err) => {
                tracing::warn!(meter = request.meter_id.0, error = %err, "STS generation failed")
            }
        }
        result
    }
}

/// The JSON the service takes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateBody<'a> {
    decoder_key: &'a str,
    random_number: u8,
    issue_date: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kwh: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    power_limit: Option<i32>,
}

fn build_body(request: &TokenRequest) -> Result<GenerateBody<'_>, DomainError> {
    if request.protocol != CommunicationProtocol::CalinLorawan {
        return Err(DomainError::Unavailable(
            "no STS generator for this meter's protocol".to_owned(),
        ));
    }
    let decoder_key = request
        .decoder_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| DomainError::invalid("decoder_key", "the meter has no STS decoder key"))?;
    let (kind, kwh, power_limit) = match request.kind {
        TokenKind::TopUp { energy_wh } => ("TOP_UP", Some(kwh_rounded_up(energy_wh)?), None),
        TokenKind::SetPowerLimit { watts } => {
            if watts < 0 {
                return Err(DomainError::invalid(
                    "power_limit_w",
                    "must not be negative",
                ));
            }
            ("SET_POWER_LIMIT", None, Some(watts))
        }
        TokenKind::ClearCredit => ("CLEAR_CREDIT", None, None),
        TokenKind::ClearTamper => ("CLEAR_TAMPER", None, None),
    };
    Ok(GenerateBody {
        decoder_key,
        random_number: rand::rng().random_range(0..=MAX_RANDOM_NUMBER),
        issue_date: issue_date(request.issued_at),
        kind,
        kwh,
        power_limit,
    })
}

/// kWh with 0.1 resolution, rounded up (in the customer's favour): 1234 Wh → 1.3.
fn kwh_rounded_up(energy_wh: i64) -> Result<f64, DomainError> {
    if energy_wh <= 0 {
        return Err(DomainError::invalid("energy_wh", "must be positive"));
    }
    let tenths = energy_wh / 100 + i64::from(energy_wh % 100 != 0);
    // Exact for any realistic amount; dividing (not multiplying by 0.1) keeps 13 → 1.3.
    Ok(tenths as f64 / 10.0)
}

/// RFC 3339 in UTC with milliseconds and `Z`, as JavaScript's `toISOString` (the predecessor's
/// format): `2025-03-01T12:00:00.000Z`.
fn issue_date(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn token_endpoint(mut base: Url) -> Url {
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    // A base path is kept: `https://h/sts` → `https://h/sts/token`.
    base.join("token").unwrap_or(base)
}

fn parse_token(bytes: &[u8]) -> Result<StsToken, DomainError> {
    let json: Option<Value> = serde_json::from_slice(bytes).ok();
    let Some(raw) = json
        .as_ref()
        .and_then(|j| j.get("token"))
        .and_then(Value::as_str)
    else {
        return Err(DomainError::Internal(
            "STS generator: the answer has no token".to_owned(),
        ));
    };
    let token = StsToken::new(raw);
    let digits = token.expose();
    if digits.len() != TOKEN_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        // The token itself is not quoted: it may be a valid one in an odd shape.
        return Err(DomainError::Internal(format!(
            "STS generator: the answer is not a {TOKEN_DIGITS}-digit token"
        )));
    }
    Ok(token)
}

/// The service's reason for a 4xx: its `message` or `error` field, else the body text; the
/// decoder key is masked should the service echo it.
fn refusal_message(status: StatusCode, bytes: &[u8], decoder_key: &str) -> String {
    let json: Option<Value> = serde_json::from_slice(bytes).ok();
    let from_json = json.as_ref().and_then(|j| {
        ["message", "error"]
            .iter()
            .find_map(|f| j.get(*f).and_then(Value::as_str).map(str::to_owned))
    });
    let text = from_json
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned())
        .trim()
        .to_owned();
    let text = if decoder_key.is_empty() {
        text
    } else {
        text.replace(decoder_key, "…")
    };
    let text: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    if text.is_empty() {
        format!(
            "the STS generator refused the request (HTTP {})",
            status.as_u16()
        )
    } else {
        format!("the STS generator refused the request: {text}")
    }
}

fn transport_error(err: reqwest::Error) -> DomainError {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    unavailable(what)
}

fn unavailable(what: &str) -> DomainError {
    DomainError::Unavailable(format!("STS generator: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kwh_rounds_up_to_a_tenth() {
        assert_eq!(kwh_rounded_up(1234).unwrap(), 1.3);
        assert_eq!(kwh_rounded_up(1200).unwrap(), 1.2);
        assert_eq!(kwh_rounded_up(1201).unwrap(), 1.3);
        assert_eq!(kwh_rounded_up(1).unwrap(), 0.1);
        assert_eq!(kwh_rounded_up(100_000).unwrap(), 100.0);
        assert!(kwh_rounded_up(0).is_err());
        assert!(kwh_rounded_up(-5).is_err());
        assert_eq!(serde_json::to_string(&1.3_f64).unwrap(), "1.3");
    }

    #[test]
    fn endpoint_keeps_the_base_path() {
        let u = |s: &str| token_endpoint(Url::parse(s).unwrap()).to_string();
        assert_eq!(u("http://h:1"), "http://h:1/token");
        assert_eq!(u("http://h/sts"), "http://h/sts/token");
        assert_eq!(u("http://h/sts/"), "http://h/sts/token");
    }

    #[test]
    fn refusals_mask_the_decoder_key() {
        let m = refusal_message(
            StatusCode::BAD_REQUEST,
            br#"{"message":"bad key 0123ABCD"}"#,
            "0123ABCD",
        );
        assert!(!m.contains("0123ABCD"), "{m}");
        assert!(m.contains("bad key"), "{m}");
    }
}
