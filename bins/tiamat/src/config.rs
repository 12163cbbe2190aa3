//! Configuration from `TIAMAT_*` environment variables, validated at start with every problem
//! reported at once. Secrets are `SecretString`: they never reach logs or `Debug`.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct SupabaseAdmin {
    pub url: Url,
    pub service_role_key: SecretString,
}

/// The platform's Flutterwave account: `TIAMAT_FLUTTERWAVE_SECRET_KEY` and
/// `TIAMAT_FLUTTERWAVE_WEBHOOK_HASH` together (or neither).
#[derive(Debug, Clone)]
pub struct FlutterwavePlatform {
    pub secret_key: SecretString,
    pub webhook_hash: SecretString,
}

/// Payments through Flutterwave.
#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    /// `TIAMAT_FLUTTERWAVE_BASE_URL`, default `https://api.flutterwave.com`.
    pub flutterwave_base_url: Url,
    /// Unset: only organizations' own accounts (if enabled) take payments.
    pub flutterwave: Option<FlutterwavePlatform>,
    /// `TIAMAT_PAYMENT_CREDENTIALS_KEY`: base64 of 32 random bytes, the AES-256-GCM key that
    /// seals organizations' own provider keys. Unset: organizations cannot set their own.
    pub credentials_key: Option<SecretString>,
    /// INITIALISED payments older than this are timed out by the sweeper
    /// (`TIAMAT_PAYMENT_TIMEOUT_MINUTES`, default 60).
    pub abandoned_after: Duration,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        Self {
            flutterwave_base_url: Url::parse(flutterwave::DEFAULT_BASE_URL)
                .unwrap_or_else(|_| unreachable!("a valid constant URL")),
            flutterwave: None,
            credentials_key: None,
            abandoned_after: Duration::from_secs(3600),
        }
    }
}

impl PaymentsConfig {
    /// The AES-256 key, once validated at start.
    pub fn credentials_key_bytes(&self) -> Option<[u8; 32]> {
        use secrecy::ExposeSecret;
        self.credentials_key
            .as_ref()
            .and_then(|k| decode_key(k.expose_secret()))
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: SecretString,
    pub listen: SocketAddr,
    pub jwt_secret: Option<SecretString>,
    pub jwks_url: Option<Url>,
    pub jwt_audience: String,
    pub jwt_issuer: Option<String>,
    pub auto_migrate: bool,
    pub log: String,
    pub log_format: LogFormat,
    pub pool_size: usize,
    pub supabase: Option<SupabaseAdmin>,
    pub jwks_ttl: Duration,
    /// How long a resolved API key is reused before it is read again (0 disables).
    pub api_key_cache_ttl: Duration,
    /// Secret ChirpStack's HTTP integration sends (`X-Webhook-Token` or `Authorization: Bearer`);
    /// unset disables the webhook (it answers 503).
    pub chirpstack_webhook_secret: Option<SecretString>,
    /// The NXT STS token generator (LoRaWAN meters); unset: token commands answer 503.
    pub sts_generator_url: Option<Url>,
    pub sts_generator_api_key: Option<SecretString>,
    /// ChirpStack's gRPC API (downlinks, device registration); unset: commands are not sent.
    pub chirpstack_api: Option<chirpstack::ChirpstackSettings>,
    /// Downlink pacing and stage timeouts.
    pub delivery: meters::DeliveryTimings,
    /// Flutterwave and organizations' own payment accounts.
    pub payments: PaymentsConfig,
}

fn parse_bool(name: &str, v: &str, errors: &mut Vec<String>) -> bool {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => true,
        "0" | "false" | "no" | "off" => false,
        _ => {
            errors.push(format!("{name} must be true or false, not {v:?}"));
            false
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, Vec<String>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads configuration through `get`; empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, Vec<String>> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut errors = Vec::new();

        let database_url = var("TIAMAT_DATABASE_URL").or_else(|| var("DATABASE_URL"));
        if database_url.is_none() {
            errors.push("TIAMAT_DATABASE_URL (or DATABASE_URL) is required, e.g. postgres://user@host/tiamat".into());
        }
        let listen = match var("TIAMAT_LISTEN")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse()
        {
            Ok(a) => a,
            Err(_) => {
                errors.push("TIAMAT_LISTEN must be host:port, e.g. 127.0.0.1:8080".into());
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        };
        let jwt_secret = var("TIAMAT_JWT_SECRET");
        if jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            errors.push("TIAMAT_JWT_SECRET must be at least 32 bytes (Supabase's minimum)".into());
        }
        let jwks_url = match var("TIAMAT_JWKS_URL").map(|u| Url::parse(&u)) {
            None => None,
            Some(Ok(u)) if matches!(u.scheme(), "http" | "https") => Some(u),
            Some(_) => {
                errors.push("TIAMAT_JWKS_URL must be an http(s) URL".into());
                None
            }
        };
        if jwt_secret.is_none() && jwks_url.is_none() {
            errors.push(
                "no way to verify tokens: set TIAMAT_JWT_SECRET (HS256) and/or TIAMAT_JWKS_URL (ES256/RS256)".into(),
            );
        }
        let auto_migrate = var("TIAMAT_AUTO_MIGRATE")
            .map(|v| parse_bool("TIAMAT_AUTO_MIGRATE", &v, &mut errors))
            .unwrap_or(true);
        let log_format = match var("TIAMAT_LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                errors.push(format!(
                    "TIAMAT_LOG_FORMAT must be json or pretty, not {other:?}"
                ));
                LogFormat::Pretty
            }
        };
        let pool_size = match var("TIAMAT_DB_POOL_SIZE").map(|v| v.parse::<usize>()) {
            None => 16,
            Some(Ok(n)) if (1..=1000).contains(&n) => n,
            Some(_) => {
                errors.push("TIAMAT_DB_POOL_SIZE must be a number from 1 to 1000".into());
                16
            }
        };
        let supabase = match (
            var("TIAMAT_SUPABASE_URL"),
            var("TIAMAT_SUPABASE_SERVICE_ROLE_KEY"),
        ) {
            (None, None) => None,
            (Some(u), Some(k)) => match Url::parse(&u) {
                Ok(url) => Some(SupabaseAdmin {
                    url,
                    service_role_key: SecretString::from(k),
                }),
                Err(_) => {
                    errors.push(
                        "TIAMAT_SUPABASE_URL must be a URL such as https://<ref>.supabase.co"
                            .into(),
                    );
                    None
                }
            },
            _ => {
                errors.push(
                    "set both TIAMAT_SUPABASE_URL and TIAMAT_SUPABASE_SERVICE_ROLE_KEY, or neither"
                        .into(),
                );
                None
            }
        };
        let api_key_cache_ttl = match var("TIAMAT_API_KEY_CACHE_SECONDS").map(|v| v.parse::<u64>())
        {
            None => Duration::from_secs(5),
            Some(Ok(n)) if n <= 300 => Duration::from_secs(n),
            Some(_) => {
                errors.push(
                    "TIAMAT_API_KEY_CACHE_SECONDS must be a number of seconds from 0 to 300".into(),
                );
                Duration::ZERO
            }
        };
        let chirpstack_webhook_secret = var("TIAMAT_CHIRPSTACK_WEBHOOK_SECRET");
        if chirpstack_webhook_secret
            .as_ref()
            .is_some_and(|s| s.len() < 16)
        {
            errors.push("TIAMAT_CHIRPSTACK_WEBHOOK_SECRET must be at least 16 characters".into());
        }
        let sts_generator_url = match var("TIAMAT_STS_GENERATOR_URL").map(|u| Url::parse(&u)) {
            None => None,
            Some(Ok(u)) if matches!(u.scheme(), "http" | "https") => Some(u),
            Some(_) => {
                errors.push("TIAMAT_STS_GENERATOR_URL must be an http(s) URL".into());
                None
            }
        };
        let chirpstack_api = chirpstack_api_settings(&var, &mut errors);
        let delivery = delivery_timings(&var, &mut errors);
        let payments = payments_config(&var, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Config {
            database_url: SecretString::from(database_url.unwrap_or_default()),
            listen,
            jwt_secret: jwt_secret.map(SecretString::from),
            jwks_url,
            jwt_audience: var("TIAMAT_JWT_AUDIENCE").unwrap_or_else(|| "authenticated".into()),
            jwt_issuer: var("TIAMAT_JWT_ISSUER"),
            auto_migrate,
            log: var("TIAMAT_LOG").unwrap_or_else(|| "info".into()),
            log_format,
            pool_size,
            supabase,
            jwks_ttl: Duration::from_secs(300),
            api_key_cache_ttl,
            chirpstack_webhook_secret: chirpstack_webhook_secret.map(SecretString::from),
            sts_generator_url,
            sts_generator_api_key: var("TIAMAT_STS_GENERATOR_API_KEY").map(SecretString::from),
            chirpstack_api,
            delivery,
            payments,
        })
    }
}

/// The five ChirpStack API variables: all set, or none.
const CHIRPSTACK_API_VARS: [&str; 5] = [
    "TIAMAT_CHIRPSTACK_API_URL",
    "TIAMAT_CHIRPSTACK_API_TOKEN",
    "TIAMAT_CHIRPSTACK_APPLICATION_ID",
    "TIAMAT_CHIRPSTACK_DEVICE_PROFILE_ID",
    "TIAMAT_CHIRPSTACK_APP_KEY",
];

fn chirpstack_api_settings(
    var: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> Option<chirpstack::ChirpstackSettings> {
    let [url, token, application_id, device_profile_id, app_key] = CHIRPSTACK_API_VARS.map(var);
    let timeout = match var("TIAMAT_CHIRPSTACK_API_TIMEOUT_SECONDS").map(|v| v.parse::<u64>()) {
        None => chirpstack::grpc::DEFAULT_TIMEOUT,
        // Below the 20 s delivery lease, so a hung call ends before the delivery is taken again.
        Some(Ok(n)) if (1..=15).contains(&n) => Duration::from_secs(n),
        Some(_) => {
            errors.push(
                "TIAMAT_CHIRPSTACK_API_TIMEOUT_SECONDS must be a number of seconds from 1 to 15"
                    .into(),
            );
            chirpstack::grpc::DEFAULT_TIMEOUT
        }
    };
    let (Some(url), Some(token), Some(application_id), Some(device_profile_id), Some(app_key)) =
        (url, token, application_id, device_profile_id, app_key)
    else {
        let set: Vec<&str> = CHIRPSTACK_API_VARS
            .iter()
            .copied()
            .filter(|k| var(k).is_some())
            .collect();
        if !set.is_empty() {
            errors.push(format!(
                "set all of {} or none (only {} set)",
                CHIRPSTACK_API_VARS.join(", "),
                set.join(", ")
            ));
        }
        return None;
    };
    let before = errors.len();
    match Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => errors.push(
            "TIAMAT_CHIRPSTACK_API_URL must be the gRPC API's http(s) URL, e.g. http://chirpstack:8080"
                .into(),
        ),
    }
    for (name, value) in [
        ("TIAMAT_CHIRPSTACK_APPLICATION_ID", &application_id),
        ("TIAMAT_CHIRPSTACK_DEVICE_PROFILE_ID", &device_profile_id),
    ] {
        if uuid::Uuid::parse_str(value).is_err() {
            errors.push(format!(
                "{name} must be a UUID (as ChirpStack's console shows it)"
            ));
        }
    }
    if !chirpstack::grpc::is_valid_app_key(&app_key) {
        errors.push(
            "TIAMAT_CHIRPSTACK_APP_KEY must be 32 hexadecimal digits (the LoRaWAN AppKey)".into(),
        );
    }
    if token.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
        errors.push("TIAMAT_CHIRPSTACK_API_TOKEN must be printable ASCII".into());
    }
    (errors.len() == before).then(|| chirpstack::ChirpstackSettings {
        url,
        api_token: SecretString::from(token),
        application_id,
        device_profile_id,
        app_key: SecretString::from(app_key),
        timeout,
    })
}

/// `TIAMAT_FLUTTERWAVE_*` and `TIAMAT_PAYMENT_*`.
fn payments_config(
    var: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> PaymentsConfig {
    let mut p = PaymentsConfig::default();
    match var("TIAMAT_FLUTTERWAVE_BASE_URL").map(|u| Url::parse(&u)) {
        None => {}
        Some(Ok(u)) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            p.flutterwave_base_url = u;
        }
        Some(_) => errors.push(
            "TIAMAT_FLUTTERWAVE_BASE_URL must be an http(s) URL such as https://api.flutterwave.com"
                .into(),
        ),
    }
    match (
        var("TIAMAT_FLUTTERWAVE_SECRET_KEY"),
        var("TIAMAT_FLUTTERWAVE_WEBHOOK_HASH"),
    ) {
        (None, None) => {}
        (Some(key), Some(hash)) => {
            let printable = |s: &str| s.bytes().all(|b| (0x21..0x7f).contains(&b));
            if !printable(&key) {
                errors.push("TIAMAT_FLUTTERWAVE_SECRET_KEY must be printable ASCII without spaces".into());
            }
            if hash.len() < 16 || !printable(&hash) {
                errors.push(
                    "TIAMAT_FLUTTERWAVE_WEBHOOK_HASH must be at least 16 printable characters (the dashboard's secret hash)"
                        .into(),
                );
            }
            p.flutterwave = Some(FlutterwavePlatform {
                secret_key: SecretString::from(key),
                webhook_hash: SecretString::from(hash),
            });
        }
        (Some(_), None) | (None, Some(_)) => errors.push(
            "set both TIAMAT_FLUTTERWAVE_SECRET_KEY and TIAMAT_FLUTTERWAVE_WEBHOOK_HASH, or neither"
                .into(),
        ),
    }
    if let Some(key) = var("TIAMAT_PAYMENT_CREDENTIALS_KEY") {
        if decode_key(&key).is_none() {
            errors.push(
                "TIAMAT_PAYMENT_CREDENTIALS_KEY must be base64 of exactly 32 bytes (e.g. `openssl rand -base64 32`)"
                    .into(),
            );
        }
        p.credentials_key = Some(SecretString::from(key));
    }
    match var("TIAMAT_PAYMENT_TIMEOUT_MINUTES").map(|v| v.parse::<u64>()) {
        None => {}
        Some(Ok(n)) if (5..=10_080).contains(&n) => p.abandoned_after = Duration::from_secs(n * 60),
        Some(_) => errors.push(
            "TIAMAT_PAYMENT_TIMEOUT_MINUTES must be a whole number of minutes from 5 to 10080"
                .into(),
        ),
    }
    p
}

/// `TIAMAT_LORAWAN_DOWNLINK_INTERVAL_MS` (per grid, default 2000),
/// `TIAMAT_DOWNLINK_TRANSMIT_TIMEOUT_SECS` (default 900), `TIAMAT_DOWNLINK_REPLY_TIMEOUT_SECS`
/// (default 12).
fn delivery_timings(
    var: &impl Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> meters::DeliveryTimings {
    let mut t = meters::DeliveryTimings::default();
    let mut number = |name: &str, min: i64, max: i64| -> Option<i64> {
        let v = var(name)?;
        match v.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                errors.push(format!("{name} must be a whole number from {min} to {max}"));
                None
            }
        }
    };
    if let Some(ms) = number("TIAMAT_LORAWAN_DOWNLINK_INTERVAL_MS", 0, 600_000) {
        t.pacing = chrono::Duration::milliseconds(ms);
    }
    if let Some(s) = number("TIAMAT_DOWNLINK_TRANSMIT_TIMEOUT_SECS", 1, 86_400) {
        t.transmit_timeout = chrono::Duration::seconds(s);
    }
    if let Some(s) = number("TIAMAT_DOWNLINK_REPLY_TIMEOUT_SECS", 1, 3_600) {
        t.reply_timeout = chrono::Duration::seconds(s);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reports_every_problem_at_once() {
        let errs = Config::from_lookup(lookup(&[
            ("TIAMAT_LISTEN", "nowhere"),
            ("TIAMAT_LOG_FORMAT", "xml"),
            ("TIAMAT_SUPABASE_URL", "https://x.supabase.co"),
        ]))
        .unwrap_err();
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(
            errs.iter()
                .any(|e| e.contains("TIAMAT_JWT_SECRET") && e.contains("TIAMAT_JWKS_URL"))
        );
    }

    #[test]
    fn defaults_and_fallbacks() {
        let c = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://localhost/t"),
            ("TIAMAT_JWT_SECRET", &"s".repeat(32)),
            ("TIAMAT_SUPABASE_URL", ""),
        ]))
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.jwt_audience, "authenticated");
        assert!(c.auto_migrate);
        assert!(c.supabase.is_none());
        assert_eq!(c.pool_size, 16);
    }

    const CHIRPSTACK: [(&str, &str); 5] = [
        ("TIAMAT_CHIRPSTACK_API_URL", "http://127.0.0.1:8091"),
        ("TIAMAT_CHIRPSTACK_API_TOKEN", "token-that-is-secret"),
        (
            "TIAMAT_CHIRPSTACK_APPLICATION_ID",
            "17c82e96-be03-4f38-aef3-f83d48582d97",
        ),
        (
            "TIAMAT_CHIRPSTACK_DEVICE_PROFILE_ID",
            "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
        ),
        (
            "TIAMAT_CHIRPSTACK_APP_KEY",
            "00112233445566778899AABBCCDDEEFF",
        ),
    ];

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("TIAMAT_DATABASE_URL", "postgres://localhost/t"),
            ("TIAMAT_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ]
    }

    #[test]
    fn chirpstack_api_is_all_or_nothing() {
        let c = Config::from_lookup(lookup(&base())).unwrap();
        assert!(c.chirpstack_api.is_none());

        let mut all = base();
        all.extend(CHIRPSTACK);
        let c = Config::from_lookup(lookup(&all)).unwrap();
        let api = c.chirpstack_api.expect("configured");
        assert_eq!(api.url, "http://127.0.0.1:8091");
        assert_eq!(api.timeout, Duration::from_secs(10));
        let dbg = format!("{:?}", Config::from_lookup(lookup(&all)).unwrap());
        assert!(
            !dbg.contains("token-that-is-secret") && !dbg.contains("AABBCCDDEEFF"),
            "{dbg}"
        );

        let mut some = base();
        some.extend(&CHIRPSTACK[..2]);
        let errs = Config::from_lookup(lookup(&some)).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("TIAMAT_CHIRPSTACK_APP_KEY"), "{errs:#?}");

        let mut bad = base();
        bad.extend([
            ("TIAMAT_CHIRPSTACK_API_URL", "chirpstack:8080"),
            ("TIAMAT_CHIRPSTACK_API_TOKEN", "t"),
            ("TIAMAT_CHIRPSTACK_APPLICATION_ID", "meters"),
            ("TIAMAT_CHIRPSTACK_DEVICE_PROFILE_ID", CHIRPSTACK[3].1),
            ("TIAMAT_CHIRPSTACK_APP_KEY", "0011"),
            ("TIAMAT_CHIRPSTACK_API_TIMEOUT_SECONDS", "20"),
        ]);
        let errs = Config::from_lookup(lookup(&bad)).unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:#?}");
    }

    #[test]
    fn flutterwave_is_all_or_nothing_and_keys_are_validated() {
        let c = Config::from_lookup(lookup(&base())).unwrap();
        assert!(c.payments.flutterwave.is_none() && c.payments.credentials_key.is_none());
        assert_eq!(
            c.payments.flutterwave_base_url.as_str(),
            "https://api.flutterwave.com/"
        );

        let mut all = base();
        all.extend([
            ("TIAMAT_FLUTTERWAVE_SECRET_KEY", "FLWSECK_TEST-very-secret"),
            (
                "TIAMAT_FLUTTERWAVE_WEBHOOK_HASH",
                "hash-that-is-long-enough",
            ),
            ("TIAMAT_FLUTTERWAVE_BASE_URL", "http://127.0.0.1:9999"),
            (
                "TIAMAT_PAYMENT_CREDENTIALS_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            ),
        ]);
        let c = Config::from_lookup(lookup(&all)).unwrap();
        assert!(c.payments.flutterwave.is_some());
        assert_eq!(c.payments.credentials_key_bytes().unwrap()[31], 31);
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("very-secret")
                && !dbg.contains("long-enough")
                && !dbg.contains("AAECAwQF"),
            "{dbg}"
        );

        let mut half = base();
        half.push(("TIAMAT_FLUTTERWAVE_SECRET_KEY", "FLWSECK_TEST-x"));
        let errs = Config::from_lookup(lookup(&half)).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("TIAMAT_FLUTTERWAVE_WEBHOOK_HASH"));

        let mut bad = base();
        bad.extend([
            ("TIAMAT_FLUTTERWAVE_SECRET_KEY", "FLWSECK_TEST-x"),
            ("TIAMAT_FLUTTERWAVE_WEBHOOK_HASH", "short"),
            ("TIAMAT_FLUTTERWAVE_BASE_URL", "api.flutterwave.com"),
            // 16 bytes: AES-128, not AES-256.
            ("TIAMAT_PAYMENT_CREDENTIALS_KEY", "AAECAwQFBgcICQoLDA0ODw=="),
            ("TIAMAT_PAYMENT_TIMEOUT_MINUTES", "1"),
        ]);
        let errs = Config::from_lookup(lookup(&bad)).unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:#?}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = Config::from_lookup(lookup(&[
            ("TIAMAT_DATABASE_URL", "postgres://u:hunter2@localhost/t"),
            (
                "TIAMAT_JWT_SECRET",
                "super-secret-value-that-is-long-enough",
            ),
        ]))
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("super-secret"),
            "{dbg}"
        );
    }
}
