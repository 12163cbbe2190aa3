//! tiamat's composition root: configuration → adapters → services → HTTP server.

pub mod app;
pub mod batch_scheduler;
pub mod bootstrap;
pub mod commissioning_worker;
pub mod config;
pub mod delivery_worker;
pub mod inbox_worker;
pub mod ledger_cli;
pub mod payment_worker;
pub mod purchase_worker;
pub mod refund_worker;

pub use app::{App, build};
pub use config::Config;

/// Signs a Supabase-shaped access token with the configured HS256 secret (development only).
pub fn dev_token(
    config: &Config,
    auth_user_id: uuid::Uuid,
    ttl_secs: i64,
) -> anyhow::Result<String> {
    use secrecy::ExposeSecret;
    let secret = config.jwt_secret.as_ref().ok_or_else(|| {
        anyhow::anyhow!("TIAMAT_JWT_SECRET is not set; tokens come from your identity provider")
    })?;
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "sub": auth_user_id, "aud": config.jwt_audience, "role": "authenticated",
        "iat": now, "exp": now + ttl_secs, "iss": config.jwt_issuer,
    });
    let claims = match claims {
        serde_json::Value::Object(mut m) => {
            m.retain(|_, v| !v.is_null());
            serde_json::Value::Object(m)
        }
        other => other,
    };
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )?)
}
