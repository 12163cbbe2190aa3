//! The GoTrue (Supabase Auth) admin calls tiamat makes: inviting, creating and banning users.
//!
//! Every call sends the service-role key as `apikey` and as a bearer token, has a time limit,
//! and is counted in `tiamat_integration_calls_total`. Only idempotent calls (ban/unban) are
//! retried. The key never reaches a log or a `Debug` output.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use url::Url;
use uuid::Uuid;

/// Default time limit for one GoTrue call.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts for idempotent calls.
const MAX_ATTEMPTS: u32 = 3;
/// First retry waits 100–200 ms, the second 200–400 ms.
const BACKOFF_BASE_MS: u64 = 100;
const BACKOFF_CAP_MS: u64 = 400;
/// Responses larger than this are cut (we only need an id or an error message).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Error messages kept from GoTrue are cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 300;
/// "Banned" for 100 years: GoTrue has no permanent ban.
const BAN_FOREVER: &str = "876000h";
/// Lifts a ban.
const BAN_NONE: &str = "none";

/// Why a GoTrue call failed.
#[derive(Debug, thiserror::Error)]
pub enum GoTrueError {
    /// The email or phone number already belongs to a user.
    #[error("a user with this email or phone is already registered")]
    AlreadyRegistered,
    /// GoTrue refused the request (bad input, bad key, unknown user, ...). Not retried.
    #[error("GoTrue rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// GoTrue could not be reached or is overloaded (timeout, connection error, 5xx, 429).
    #[error("GoTrue is unavailable: {0}")]
    Unavailable(String),
}

/// Client for the GoTrue admin API. Cheap to clone.
#[derive(Clone)]
pub struct GoTrueAdmin {
    base_url: Url,
    service_role_key: Arc<SecretString>,
    http: reqwest::Client,
    timeout: Duration,
}

impl fmt::Debug for GoTrueAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoTrueAdmin")
            .field("base_url", &self.base_url.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct InviteBody<'a> {
    email: &'a str,
    data: Metadata<'a>,
}

#[derive(Serialize)]
struct CreateUserBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone: Option<&'a str>,
    email_confirm: bool,
    phone_confirm: bool,
    user_metadata: Metadata<'a>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    full_name: &'a str,
}

#[derive(Serialize)]
struct BanBody<'a> {
    ban_duration: &'a str,
}

impl GoTrueAdmin {
    /// `base_url` is the project URL (e.g. `https://<ref>.supabase.co`); `/auth/v1` is added
    /// unless the URL already ends with it.
    pub fn new(base_url: Url, service_role_key: SecretString, http: reqwest::Client) -> Self {
        Self {
            base_url,
            service_role_key: Arc::new(service_role_key),
            http,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Replaces the per-call time limit (10 s by default).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `POST /auth/v1/invite`: creates the user and emails them an invitation link.
    /// Returns the new user's id. Not retried.
    pub async fn invite_user_by_email(
        &self,
        email: &str,
        full_name: &str,
    ) -> Result<Uuid, GoTrueError> {
        let url = self.endpoint(&["invite"])?;
        let body = InviteBody {
            email,
            data: Metadata { full_name },
        };
        let response = self.call("invite_user", Method::POST, url, &body).await?;
        let id = user_id(&response)?;
        tracing::info!(user_id = %id, "GoTrue invited a user");
        Ok(id)
    }

    /// `POST /auth/v1/admin/users`: creates a confirmed user that logs in by email or phone
    /// (agents, customers). At least one of `email` and `phone` is required. Not retried.
    pub async fn create_user(
        &self,
        email: Option<&str>,
        phone: Option<&str>,
        full_name: &str,
    ) -> Result<Uuid, GoTrueError> {
        let email = email.filter(|email| !email.is_empty());
        let phone = phone.filter(|phone| !phone.is_empty());
        if email.is_none() && phone.is_none() {
            return Err(GoTrueError::Rejected {
                status: StatusCode::BAD_REQUEST.as_u16(),
                message: "either an email or a phone number is required".to_owned(),
            });
        }
        let url = self.endpoint(&["admin", "users"])?;
        let body = CreateUserBody {
            email,
            phone,
            email_confirm: true,
            phone_confirm: true,
            user_metadata: Metadata { full_name },
        };
        let response = self.call("create_user", Method::POST, url, &body).await?;
        let id = user_id(&response)?;
        tracing::info!(user_id = %id, "GoTrue created a user");
        Ok(id)
    }

    /// `PUT /auth/v1/admin/users/{id}` with a 100-year `ban_duration`: the user can no longer
    /// sign in or refresh a session. Idempotent, so retried on [`GoTrueError::Unavailable`].
    pub async fn ban_user(&self, id: Uuid) -> Result<(), GoTrueError> {
        self.set_ban(id, BAN_FOREVER, "ban_user").await?;
        tracing::info!(user_id = %id, "GoTrue banned a user");
        Ok(())
    }

    /// Lifts a ban set by [`GoTrueAdmin::ban_user`]. Idempotent, retried like it.
    pub async fn unban_user(&self, id: Uuid) -> Result<(), GoTrueError> {
        self.set_ban(id, BAN_NONE, "unban_user").await?;
        tracing::info!(user_id = %id, "GoTrue lifted a user's ban");
        Ok(())
    }

    async fn set_ban(
        &self,
        id: Uuid,
        ban_duration: &str,
        operation: &'static str,
    ) -> Result<(), GoTrueError> {
        let url = self.endpoint(&["admin", "users", &id.to_string()])?;
        let body = BanBody { ban_duration };
        let mut attempt = 1;
        loop {
            match self.call(operation, Method::PUT, url.clone(), &body).await {
                Err(GoTrueError::Unavailable(reason)) if attempt < MAX_ATTEMPTS => {
                    let delay = backoff(attempt);
                    tracing::warn!(
                        operation,
                        attempt,
                        delay_ms = delay.as_millis() as u64,
                        error = %reason,
                        "GoTrue unavailable; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                result => return result.map(|_| ()),
            }
        }
    }

    /// Builds `{base}/auth/v1/{segments...}`.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, GoTrueError> {
        let mut url = self.base_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        let has_prefix = {
            let existing: Vec<&str> = url
                .path_segments()
                .map(|parts| parts.filter(|part| !part.is_empty()).collect())
                .unwrap_or_default();
            existing.ends_with(&["auth", "v1"])
        };
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                GoTrueError::Unavailable("the GoTrue base URL cannot carry a path".to_owned())
            })?;
            path.pop_if_empty();
            if !has_prefix {
                path.extend(["auth", "v1"]);
            }
            path.extend(segments);
        }
        Ok(url)
    }

    /// One HTTP call: sends, classifies the answer and counts it.
    async fn call<B: Serialize>(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        body: &B,
    ) -> Result<Value, GoTrueError> {
        let result = self.send(method, url, body).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(GoTrueError::Unavailable(_)) => "unavailable",
            Err(_) => "error",
        };
        metrics::counter!(
            "tiamat_integration_calls_total",
            "vendor" => "supabase",
            "operation" => operation,
            "outcome" => outcome
        )
        .increment(1);
        if let Err(err) = &result {
            tracing::debug!(operation, error = %err, "GoTrue call failed");
        }
        result
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        url: Url,
        body: &B,
    ) -> Result<Value, GoTrueError> {
        let key = self.service_role_key.expose_secret();
        let mut apikey = HeaderValue::from_str(key).map_err(|_| invalid_key())?;
        apikey.set_sensitive(true);
        let mut bearer =
            HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| invalid_key())?;
        bearer.set_sensitive(true);

        let mut response = self
            .http
            .request(method, url)
            .header("apikey", apikey)
            .header(AUTHORIZATION, bearer)
            .json(body)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            let room = MAX_RESPONSE_BYTES.saturating_sub(bytes.len());
            bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return json.ok_or_else(|| GoTrueError::Rejected {
                status: status.as_u16(),
                message: "GoTrue answered with a body that is not JSON".to_owned(),
            });
        }
        Err(classify_failure(status, json.as_ref()))
    }
}

fn invalid_key() -> GoTrueError {
    GoTrueError::Unavailable("the service-role key is not a valid HTTP header value".to_owned())
}

fn transport_error(err: reqwest::Error) -> GoTrueError {
    let what = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        format!("cannot connect: {}", err.without_url())
    } else {
        format!("request failed: {}", err.without_url())
    };
    GoTrueError::Unavailable(what)
}

fn classify_failure(status: StatusCode, body: Option<&Value>) -> GoTrueError {
    let message = body.and_then(error_message);
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        return GoTrueError::Unavailable(match message {
            Some(message) => format!("GoTrue answered HTTP {}: {message}", status.as_u16()),
            None => format!("GoTrue answered HTTP {}", status.as_u16()),
        });
    }
    if (status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST)
        && body.is_some_and(is_already_registered)
    {
        return GoTrueError::AlreadyRegistered;
    }
    GoTrueError::Rejected {
        status: status.as_u16(),
        message: message.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected answer")
                .to_owned()
        }),
    }
}

/// GoTrue's error bodies: `{"code", "error_code", "msg"}` (current), `{"code", "msg"}` (older)
/// or `{"error", "error_description"}` (OAuth-style).
fn error_message(body: &Value) -> Option<String> {
    let text = ["msg", "message", "error_description", "error"]
        .iter()
        .find_map(|field| body.get(field).and_then(Value::as_str))
        .filter(|text| !text.is_empty());
    let code = body.get("error_code").and_then(Value::as_str);
    let message = match (code, text) {
        (Some(code), Some(text)) => format!("{code}: {text}"),
        (Some(code), None) => code.to_owned(),
        (None, Some(text)) => text.to_owned(),
        (None, None) => return None,
    };
    Some(message.chars().take(MAX_MESSAGE_CHARS).collect())
}

fn is_already_registered(body: &Value) -> bool {
    let code_says_so = body
        .get("error_code")
        .and_then(Value::as_str)
        .is_some_and(|code| {
            matches!(
                code,
                "email_exists" | "phone_exists" | "user_already_exists"
            )
        });
    let message_says_so = ["msg", "message", "error_description", "error"]
        .iter()
        .filter_map(|field| body.get(field).and_then(Value::as_str))
        .any(|text| {
            let text = text.to_ascii_lowercase();
            text.contains("already been registered") || text.contains("already registered")
        });
    code_says_so || message_says_so
}

/// The user object's `id` (also accepted wrapped as `{"user": {...}}`).
fn user_id(body: &Value) -> Result<Uuid, GoTrueError> {
    body.get("id")
        .or_else(|| body.get("user").and_then(|user| user.get("id")))
        .and_then(Value::as_str)
        .and_then(|id| Uuid::try_parse(id).ok())
        .ok_or_else(|| GoTrueError::Rejected {
            status: StatusCode::OK.as_u16(),
            message: "GoTrue answered without a user id".to_owned(),
        })
}

/// Jittered exponential backoff before attempt `attempt + 1`: 100–200 ms, then 200–400 ms.
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_BASE_MS
        .saturating_mul(1 << attempt.saturating_sub(1).min(8))
        .min(BACKOFF_CAP_MS);
    let high = base.saturating_mul(2).min(BACKOFF_CAP_MS);
    Duration::from_millis(rand::rng().random_range(base..=high))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn admin(base: &str) -> GoTrueAdmin {
        GoTrueAdmin::new(
            Url::parse(base).unwrap(),
            SecretString::from("service-role-key"),
            reqwest::Client::new(),
        )
    }

    #[test]
    fn endpoint_joins_paths() {
        let a = admin("https://ref.supabase.co");
        assert_eq!(
            a.endpoint(&["invite"]).unwrap().as_str(),
            "https://ref.supabase.co/auth/v1/invite"
        );
        let a = admin("https://ref.supabase.co/auth/v1/");
        assert_eq!(
            a.endpoint(&["admin", "users"]).unwrap().as_str(),
            "https://ref.supabase.co/auth/v1/admin/users"
        );
        let a = admin("http://127.0.0.1:9999/prefix?x=1");
        assert_eq!(
            a.endpoint(&["admin", "users", "abc"]).unwrap().as_str(),
            "http://127.0.0.1:9999/prefix/auth/v1/admin/users/abc"
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let text = format!("{:?}", admin("https://ref.supabase.co"));
        assert!(!text.contains("service-role-key"), "{text}");
    }

    #[test]
    fn backoff_stays_in_range() {
        for _ in 0..200 {
            let first = backoff(1).as_millis();
            assert!((100..=200).contains(&first), "{first}");
            let second = backoff(2).as_millis();
            assert!((200..=400).contains(&second), "{second}");
            assert!(backoff(9).as_millis() <= 400);
        }
    }

    #[test]
    fn classifies_failures() {
        let exists = json!({"code": 422, "error_code": "email_exists", "msg": "x"});
        assert!(matches!(
            classify_failure(StatusCode::UNPROCESSABLE_ENTITY, Some(&exists)),
            GoTrueError::AlreadyRegistered
        ));
        let old = json!({"code": 400, "msg": "A user with this email address has already been registered"});
        assert!(matches!(
            classify_failure(StatusCode::BAD_REQUEST, Some(&old)),
            GoTrueError::AlreadyRegistered
        ));
        let weak = json!({"code": 422, "error_code": "weak_password", "msg": "too weak"});
        match classify_failure(StatusCode::UNPROCESSABLE_ENTITY, Some(&weak)) {
            GoTrueError::Rejected { status, message } => {
                assert_eq!(status, 422);
                assert_eq!(message, "weak_password: too weak");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            classify_failure(StatusCode::TOO_MANY_REQUESTS, None),
            GoTrueError::Unavailable(_)
        ));
        assert!(matches!(
            classify_failure(StatusCode::UNAUTHORIZED, None),
            GoTrueError::Rejected { status: 401, .. }
        ));
    }
}
