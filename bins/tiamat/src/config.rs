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
        })
    }
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
