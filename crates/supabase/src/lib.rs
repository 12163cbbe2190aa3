//! Supabase Auth integration for tiamat.
//!
//! * [`JwtVerifier`] verifies Supabase-compatible access tokens locally: HS256 with the legacy
//!   shared secret and/or ES256/RS256 with public keys from a cached JWKS (keyed by `kid`).
//! * [`GoTrueAdmin`] is the small slice of the GoTrue (Supabase Auth) admin API that tiamat
//!   needs: invite, create and ban login users.
//!
//! Neither logs a token or a key. Metrics are emitted through the `metrics` facade:
//! `tiamat_jwks_refresh_total{outcome}` and
//! `tiamat_integration_calls_total{vendor="supabase",operation,outcome}`.

mod gotrue;
mod jwks;
mod jwt;
mod ports;

pub use gotrue::{GoTrueAdmin, GoTrueError};
pub use jwt::{
    JwksHealth, JwtConfigError, JwtError, JwtSettings, JwtVerifier, MIN_HS256_SECRET_BYTES,
    UNKNOWN_KID_REFRESH_INTERVAL, VerifiedToken,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn shareable<T: Clone + Send + Sync + 'static>() {}
    fn sendable<T: Send>(_: &T) {}

    #[test]
    fn handles_can_be_shared_across_tasks() {
        shareable::<JwtVerifier>();
        shareable::<GoTrueAdmin>();
        let settings = JwtSettings {
            hs256_secret: Some(secrecy::SecretString::from(
                "k".repeat(MIN_HS256_SECRET_BYTES),
            )),
            ..JwtSettings::default()
        };
        let verifier = JwtVerifier::new(settings, reqwest::Client::new()).unwrap();
        // Futures must be Send to run inside actix/tokio handlers and spawned tasks.
        sendable(&verifier.verify("a.b.c"));
        sendable(&verifier.refresh_jwks());
    }
}
