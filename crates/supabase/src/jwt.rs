//! Verification of Supabase-compatible access tokens.
//!
//! The algorithm is pinned before any key is chosen: HS256 only with the configured shared
//! secret, ES256/RS256 only with a JWKS key (found by `kid`) whose own type and `alg` agree with
//! the header. Nothing here logs a token.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;
use uuid::Uuid;

use crate::jwks::{AsymmetricAlg, KeyMap, ParsedJwks, VerificationKey, parse_jwks};

/// The shortest HS256 secret accepted (Supabase's own minimum for the legacy JWT secret).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// An unknown `kid` refreshes the JWKS at most once per this interval.
pub const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Tokens longer than this are rejected before any parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Time limit for one JWKS download.
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS document larger than this is refused.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// The only `role` claim a user access token may carry.
const USER_ROLE: &str = "authenticated";

/// How access tokens are verified.
#[derive(Clone, Debug)]
pub struct JwtSettings {
    /// Legacy shared secret (HS256). At least [`MIN_HS256_SECRET_BYTES`] bytes.
    pub hs256_secret: Option<SecretString>,
    /// JWKS with the ES256/RS256 public keys, keyed by `kid`
    /// (Supabase: `https://<ref>.supabase.co/auth/v1/.well-known/jwks.json`).
    pub jwks_url: Option<Url>,
    /// Required audience; default `authenticated`.
    pub audience: String,
    /// Required issuer when set (Supabase: `https://<ref>.supabase.co/auth/v1`).
    pub issuer: Option<String>,
    /// How long a fetched key set is used before it is fetched again; default 5 minutes.
    pub jwks_ttl: Duration,
    /// Clock skew allowed on `exp` and `nbf`, in seconds; default 30.
    pub leeway_secs: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            hs256_secret: None,
            jwks_url: None,
            audience: USER_ROLE.to_owned(),
            issuer: None,
            jwks_ttl: Duration::from_secs(300),
            leeway_secs: 30,
        }
    }
}

/// A configuration that must stop the boot.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("set TIAMAT_JWT_SECRET (HS256) and/or TIAMAT_JWKS_URL (ES256/RS256)")]
    NoKeySource,
    #[error("TIAMAT_JWT_SECRET is too short: HS256 needs at least {MIN_HS256_SECRET_BYTES} bytes")]
    SecretTooShort,
    #[error("TIAMAT_JWKS_URL must be an http(s) URL, not `{0}:`")]
    UnsupportedJwksScheme(String),
    #[error("the JWT audience must not be empty")]
    EmptyAudience,
    #[error("the JWT issuer, when set, must not be empty")]
    EmptyIssuer,
    #[error("the JWKS cache TTL must be greater than zero")]
    ZeroJwksTtl,
}

/// Why a token was refused. Every variant is a 401 for the caller.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum JwtError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token comes from another issuer")]
    WrongIssuer,
    #[error("the token's signing algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("the token was signed with an unknown key")]
    UnknownKey,
    #[error("the token has no user id (sub must be a UUID)")]
    MissingSubject,
    #[error("the token is not a user access token (role)")]
    WrongRole,
    #[error("the signing keys could not be loaded")]
    KeysUnavailable,
}

impl JwtError {
    /// A stable snake_case label, e.g. for a `reason` metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadSignature => "bad_signature",
            Self::WrongAudience => "wrong_audience",
            Self::WrongIssuer => "wrong_issuer",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::UnknownKey => "unknown_key",
            Self::MissingSubject => "missing_subject",
            Self::WrongRole => "wrong_role",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// What a valid token says about its user.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The auth user's id (`sub`), i.e. `accounts.auth_user_id`.
    pub sub: Uuid,
    /// `email`; `None` when absent or empty (phone users).
    pub email: Option<String>,
    /// Supabase's `session_id` claim, when present.
    pub session_id: Option<Uuid>,
    /// `exp`, unix seconds.
    pub expires_at: i64,
}

/// The state of the JWKS cache, for `/health/ready`.
#[derive(Debug, Clone, Serialize)]
pub struct JwksHealth {
    /// Whether a JWKS URL is configured.
    pub configured: bool,
    /// Number of usable keys in the cache.
    pub keys: usize,
    /// Whether the latest refresh attempt succeeded; `false` before the first attempt, `true`
    /// when no JWKS is configured (nothing to refresh).
    pub last_refresh_ok: bool,
    /// The error of the latest refresh attempt, when it failed.
    pub last_error: Option<String>,
    /// Unix seconds of the latest successful refresh.
    pub last_success_unix: Option<i64>,
}

/// Verifies access tokens. Cheap to clone; clones share the key cache.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    hs256: Option<DecodingKey>,
    jwks_url: Option<Url>,
    audience: String,
    issuer: Option<String>,
    jwks_ttl: Duration,
    leeway_secs: u64,
    http: reqwest::Client,
    cache: RwLock<JwksCache>,
    /// Held for the whole of a JWKS download so that concurrent callers share one.
    refresh_gate: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct JwksCache {
    keys: KeyMap,
    /// Bumped after every download attempt, good or bad.
    generation: u64,
    last_attempt: Option<Instant>,
    last_attempt_ok: bool,
    last_error: Option<String>,
    last_success_unix: Option<i64>,
    /// The latest download caused by an unknown `kid` (rate limited).
    last_unknown_kid_refresh: Option<Instant>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("hs256", &self.inner.hs256.is_some())
            .field("jwks_url", &self.inner.jwks_url.as_ref().map(Url::as_str))
            .field("audience", &self.inner.audience)
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Checks the settings. Does not fetch the JWKS: call [`JwtVerifier::refresh_jwks`] at
    /// start-up (the first verification fetches it otherwise).
    pub fn new(settings: JwtSettings, http: reqwest::Client) -> Result<Self, JwtConfigError> {
        if settings.hs256_secret.is_none() && settings.jwks_url.is_none() {
            return Err(JwtConfigError::NoKeySource);
        }
        let hs256 = match &settings.hs256_secret {
            Some(secret) => {
                let bytes = secret.expose_secret().as_bytes();
                if bytes.len() < MIN_HS256_SECRET_BYTES {
                    return Err(JwtConfigError::SecretTooShort);
                }
                Some(DecodingKey::from_secret(bytes))
            }
            None => None,
        };
        if let Some(url) = &settings.jwks_url {
            match url.scheme() {
                "https" => {}
                "http" => {
                    if !is_loopback(url) {
                        tracing::warn!(
                            jwks_url = %url,
                            "the JWKS URL uses plain http; signing keys can be tampered with in transit"
                        );
                    }
                }
                other => return Err(JwtConfigError::UnsupportedJwksScheme(other.to_owned())),
            }
        }
        if settings.audience.trim().is_empty() {
            return Err(JwtConfigError::EmptyAudience);
        }
        if settings
            .issuer
            .as_deref()
            .is_some_and(|issuer| issuer.trim().is_empty())
        {
            return Err(JwtConfigError::EmptyIssuer);
        }
        if settings.jwks_ttl.is_zero() {
            return Err(JwtConfigError::ZeroJwksTtl);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                hs256,
                jwks_url: settings.jwks_url,
                audience: settings.audience,
                issuer: settings.issuer,
                jwks_ttl: settings.jwks_ttl,
                leeway_secs: settings.leeway_secs,
                http,
                cache: RwLock::new(JwksCache::default()),
                refresh_gate: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Verifies a bearer token (without the `Bearer ` prefix).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        let header = parse_header(token)?;
        match header.alg.as_str() {
            "HS256" => {
                let key = self
                    .inner
                    .hs256
                    .as_ref()
                    .ok_or(JwtError::AlgorithmNotAllowed)?;
                self.decode(token, key, Algorithm::HS256)
            }
            alg => {
                let alg = AsymmetricAlg::from_header(alg).ok_or(JwtError::AlgorithmNotAllowed)?;
                if self.inner.jwks_url.is_none() {
                    return Err(JwtError::AlgorithmNotAllowed);
                }
                let kid = header
                    .kid
                    .as_deref()
                    .filter(|kid| !kid.is_empty())
                    .ok_or(JwtError::UnknownKey)?;
                let key = self.key_for(kid).await?;
                // The key decides what it may verify, never the token header.
                if key.alg != alg {
                    return Err(JwtError::AlgorithmNotAllowed);
                }
                self.decode(token, &key.key, alg.algorithm())
            }
        }
    }

    /// Downloads the JWKS now and replaces the cached keys. Returns the number of usable keys.
    /// On failure the last good key set stays in use and the error shows in
    /// [`JwtVerifier::jwks_health`]. Without a JWKS URL this does nothing and returns `Ok(0)`.
    pub async fn refresh_jwks(&self) -> Result<usize, JwtError> {
        if self.inner.jwks_url.is_none() {
            return Ok(0);
        }
        let _gate = self.inner.refresh_gate.lock().await;
        self.download_and_store().await
    }

    /// The JWKS cache state for `/health/ready`.
    pub fn jwks_health(&self) -> JwksHealth {
        let configured = self.inner.jwks_url.is_some();
        let cache = self.read_cache();
        JwksHealth {
            configured,
            keys: cache.keys.len(),
            last_refresh_ok: if configured {
                cache.last_attempt.is_some() && cache.last_attempt_ok
            } else {
                true
            },
            last_error: cache.last_error.clone(),
            last_success_unix: cache.last_success_unix,
        }
    }

    fn decode(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
    ) -> Result<VerifiedToken, JwtError> {
        let mut validation = Validation::new(alg);
        validation.leeway = self.inner.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_audience(&[self.inner.audience.as_str()]);
        let mut required = vec!["exp", "aud"];
        if let Some(issuer) = &self.inner.issuer {
            validation.set_issuer(&[issuer.as_str()]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let data =
            jsonwebtoken::decode::<RawClaims>(token, key, &validation).map_err(map_jwt_error)?;
        data.claims.into_verified()
    }

    /// Finds the key for `kid`, downloading the JWKS when the cache is stale or, rate limited,
    /// when the kid is unknown (key rotation).
    async fn key_for(&self, kid: &str) -> Result<Arc<VerificationKey>, JwtError> {
        let generation_at_start = self.read_cache().generation;
        self.refresh_if_stale().await;
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        self.refresh_for_unknown_kid(generation_at_start).await;
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        let cache = self.read_cache();
        if cache.last_success_unix.is_none() {
            // No key set was ever loaded: this is an outage, not a bad token.
            return Err(JwtError::KeysUnavailable);
        }
        Err(JwtError::UnknownKey)
    }

    fn lookup(&self, kid: &str) -> Option<Arc<VerificationKey>> {
        self.read_cache().keys.get(kid).cloned()
    }

    async fn refresh_if_stale(&self) {
        let generation = {
            let cache = self.read_cache();
            if !self.is_stale(&cache) {
                return;
            }
            cache.generation
        };
        let _gate = self.inner.refresh_gate.lock().await;
        if self.read_cache().generation != generation {
            // Someone else downloaded while we waited for the gate.
            return;
        }
        // A failure is recorded in the cache state; the old keys stay in use.
        let _ = self.download_and_store().await;
    }

    fn is_stale(&self, cache: &JwksCache) -> bool {
        match cache.last_attempt {
            None => true,
            Some(at) => {
                let wait = if cache.last_attempt_ok {
                    self.inner.jwks_ttl
                } else {
                    // Retry a failed download sooner, but never on every request.
                    self.inner.jwks_ttl.min(UNKNOWN_KID_REFRESH_INTERVAL)
                };
                at.elapsed() >= wait
            }
        }
    }

    async fn refresh_for_unknown_kid(&self, generation_at_start: u64) {
        if self.read_cache().generation != generation_at_start {
            // The keys were downloaded during this very call: they are as fresh as they get.
            return;
        }
        let _gate = self.inner.refresh_gate.lock().await;
        {
            let mut cache = self.write_cache();
            if cache.generation != generation_at_start {
                // A download finished while we waited for the gate; the caller looks again.
                return;
            }
            if cache
                .last_unknown_kid_refresh
                .is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFRESH_INTERVAL)
            {
                return;
            }
            cache.last_unknown_kid_refresh = Some(Instant::now());
        }
        tracing::info!("access token names an unknown kid; refreshing the JWKS");
        let _ = self.download_and_store().await;
    }

    /// Downloads the JWKS and records the outcome. Call only while holding `refresh_gate`.
    async fn download_and_store(&self) -> Result<usize, JwtError> {
        let Some(url) = &self.inner.jwks_url else {
            return Ok(0);
        };
        let result = download_jwks(&self.inner.http, url).await;
        let mut cache = self.write_cache();
        cache.generation = cache.generation.wrapping_add(1);
        cache.last_attempt = Some(Instant::now());
        match result {
            Ok(ParsedJwks { keys, skipped }) => {
                let count = keys.len();
                cache.keys = keys;
                cache.last_attempt_ok = true;
                cache.last_error = None;
                cache.last_success_unix = Some(chrono::Utc::now().timestamp());
                drop(cache);
                metrics::counter!("tiamat_jwks_refresh_total", "outcome" => "ok").increment(1);
                tracing::debug!(keys = count, skipped, "JWKS refreshed");
                Ok(count)
            }
            Err(message) => {
                let kept = cache.keys.len();
                cache.last_attempt_ok = false;
                cache.last_error = Some(message.clone());
                drop(cache);
                metrics::counter!("tiamat_jwks_refresh_total", "outcome" => "error").increment(1);
                tracing::warn!(error = %message, kept_keys = kept, "JWKS refresh failed; keeping the last good key set");
                Err(JwtError::KeysUnavailable)
            }
        }
    }

    fn read_cache(&self) -> RwLockReadGuard<'_, JwksCache> {
        self.inner
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_cache(&self) -> RwLockWriteGuard<'_, JwksCache> {
        self.inner
            .cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

async fn download_jwks(http: &reqwest::Client, url: &Url) -> Result<ParsedJwks, String> {
    let mut response = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(JWKS_FETCH_TIMEOUT)
        .send()
        .await
        .map_err(describe_http_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("JWKS endpoint answered HTTP {}", status.as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
    {
        return Err("JWKS document is too large".to_owned());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe_http_error)? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err("JWKS document is too large".to_owned());
        }
        body.extend_from_slice(&chunk);
    }
    parse_jwks(&body)
}

fn describe_http_error(err: reqwest::Error) -> String {
    if err.is_timeout() {
        "JWKS download timed out".to_owned()
    } else if err.is_connect() {
        format!("cannot connect to the JWKS endpoint: {}", err.without_url())
    } else {
        format!("JWKS download failed: {}", err.without_url())
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
}

struct TokenHeader {
    alg: String,
    kid: Option<String>,
}

/// Reads the protected header without trusting it for anything but choosing the key source.
fn parse_header(token: &str) -> Result<TokenHeader, JwtError> {
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(JwtError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| JwtError::Malformed)?;
    let raw: RawHeader = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
    if raw.crit.is_some() {
        // We understand no critical header extensions, so we must not accept any.
        return Err(JwtError::Malformed);
    }
    let alg = raw.alg.ok_or(JwtError::Malformed)?;
    Ok(TokenHeader { alg, kid: raw.kid })
}

/// The claims we read. Loosely typed on purpose so that a wrong type maps to the right error;
/// unknown claims (custom access-token hooks) are ignored.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    role: Option<Value>,
    #[serde(default)]
    email: Option<Value>,
    #[serde(default)]
    session_id: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
}

impl RawClaims {
    fn into_verified(self) -> Result<VerifiedToken, JwtError> {
        match self.role {
            None | Some(Value::Null) => {}
            Some(Value::String(role)) if role == USER_ROLE => {}
            Some(_) => return Err(JwtError::WrongRole),
        }
        let sub = match self.sub {
            Some(Value::String(sub)) => Uuid::try_parse(&sub)
                .ok()
                .filter(|id| !id.is_nil())
                .ok_or(JwtError::MissingSubject)?,
            _ => return Err(JwtError::MissingSubject),
        };
        let email = match self.email {
            None | Some(Value::Null) => None,
            Some(Value::String(email)) if email.is_empty() => None,
            Some(Value::String(email)) => Some(email),
            Some(_) => return Err(JwtError::Malformed),
        };
        let session_id = match self.session_id {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(Uuid::try_parse(&id).map_err(|_| JwtError::Malformed)?),
            Some(_) => return Err(JwtError::Malformed),
        };
        let expires_at = self
            .exp
            .as_ref()
            .and_then(numeric_date)
            .ok_or(JwtError::Malformed)?;
        Ok(VerifiedToken {
            sub,
            email,
            session_id,
            expires_at,
        })
    }
}

fn numeric_date(value: &Value) -> Option<i64> {
    if let Some(seconds) = value.as_i64() {
        return Some(seconds);
    }
    let seconds = value.as_f64()?;
    // Bounded far inside i64, so the cast cannot saturate surprisingly.
    (seconds.is_finite() && (0.0..1e15).contains(&seconds)).then(|| seconds.round() as i64)
}

fn map_jwt_error(err: jsonwebtoken::errors::Error) -> JwtError {
    match err.kind() {
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => JwtError::BadSignature,
        ErrorKind::InvalidAudience => JwtError::WrongAudience,
        ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
        ErrorKind::InvalidSubject => JwtError::MissingSubject,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName => JwtError::AlgorithmNotAllowed,
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "aud" => JwtError::WrongAudience,
            "iss" => JwtError::WrongIssuer,
            "sub" => JwtError::MissingSubject,
            _ => JwtError::Malformed,
        },
        _ => JwtError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(value: &str) -> String {
        URL_SAFE_NO_PAD.encode(value)
    }

    #[test]
    fn header_must_have_three_parts_and_an_alg() {
        assert_eq!(parse_header("").err(), Some(JwtError::Malformed));
        assert_eq!(parse_header("a.b").err(), Some(JwtError::Malformed));
        assert_eq!(parse_header("a.b.c.d").err(), Some(JwtError::Malformed));
        let no_alg = format!("{}.{}.sig", b64(r#"{"typ":"JWT"}"#), b64("{}"));
        assert_eq!(parse_header(&no_alg).err(), Some(JwtError::Malformed));
        let crit = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#),
            b64("{}")
        );
        assert_eq!(parse_header(&crit).err(), Some(JwtError::Malformed));
        let ok = format!("{}.{}.sig", b64(r#"{"alg":"ES256","kid":"k"}"#), b64("{}"));
        let header = parse_header(&ok).unwrap();
        assert_eq!(header.alg, "ES256");
        assert_eq!(header.kid.as_deref(), Some("k"));
    }

    #[test]
    fn oversized_token_is_malformed() {
        let token = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(parse_header(&token).err(), Some(JwtError::Malformed));
    }

    #[test]
    fn reasons_are_snake_case_and_distinct() {
        let all = [
            JwtError::Malformed,
            JwtError::Expired,
            JwtError::NotYetValid,
            JwtError::BadSignature,
            JwtError::WrongAudience,
            JwtError::WrongIssuer,
            JwtError::AlgorithmNotAllowed,
            JwtError::UnknownKey,
            JwtError::MissingSubject,
            JwtError::WrongRole,
            JwtError::KeysUnavailable,
        ];
        let reasons: std::collections::HashSet<_> = all.iter().map(JwtError::reason).collect();
        assert_eq!(reasons.len(), all.len());
        for reason in reasons {
            assert!(reason.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        assert_eq!(JwtError::Expired.reason(), "expired");
    }

    #[test]
    fn claims_mapping() {
        let sub = Uuid::new_v4();
        let claims = |value: Value| serde_json::from_value::<RawClaims>(value).unwrap();
        let ok = claims(serde_json::json!({
            "sub": sub.to_string(), "role": "authenticated", "email": "", "exp": 1.7e9
        }))
        .into_verified()
        .unwrap();
        assert_eq!(ok.sub, sub);
        assert_eq!(ok.email, None);
        assert_eq!(ok.expires_at, 1_700_000_000);
        let wrong_role = claims(serde_json::json!({"sub": sub.to_string(), "role": 1, "exp": 1}));
        assert_eq!(wrong_role.into_verified(), Err(JwtError::WrongRole));
        let nil = claims(serde_json::json!({"sub": Uuid::nil().to_string(), "exp": 1}));
        assert_eq!(nil.into_verified(), Err(JwtError::MissingSubject));
        let bad_session =
            claims(serde_json::json!({"sub": sub.to_string(), "session_id": "x", "exp": 1}));
        assert_eq!(bad_session.into_verified(), Err(JwtError::Malformed));
    }

    #[test]
    fn config_errors() {
        let http = reqwest::Client::new();
        let err = JwtVerifier::new(JwtSettings::default(), http.clone()).unwrap_err();
        assert!(matches!(err, JwtConfigError::NoKeySource));
        let short = JwtSettings {
            hs256_secret: Some(SecretString::from("short")),
            ..JwtSettings::default()
        };
        assert!(matches!(
            JwtVerifier::new(short, http.clone()),
            Err(JwtConfigError::SecretTooShort)
        ));
        let ftp = JwtSettings {
            jwks_url: Some(Url::parse("ftp://example.test/jwks.json").unwrap()),
            ..JwtSettings::default()
        };
        assert!(matches!(
            JwtVerifier::new(ftp, http.clone()),
            Err(JwtConfigError::UnsupportedJwksScheme(_))
        ));
        let no_aud = JwtSettings {
            hs256_secret: Some(SecretString::from("x".repeat(32))),
            audience: " ".to_owned(),
            ..JwtSettings::default()
        };
        assert!(matches!(
            JwtVerifier::new(no_aud, http.clone()),
            Err(JwtConfigError::EmptyAudience)
        ));
        let zero_ttl = JwtSettings {
            hs256_secret: Some(SecretString::from("x".repeat(32))),
            jwks_ttl: Duration::ZERO,
            ..JwtSettings::default()
        };
        assert!(matches!(
            JwtVerifier::new(zero_ttl, http),
            Err(JwtConfigError::ZeroJwksTtl)
        ));
    }
}
