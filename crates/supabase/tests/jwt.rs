//! JwtVerifier against static test keys and a wiremock JWKS endpoint on loopback.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use secrecy::SecretString;
use serde_json::{Value, json};
use supabase::{JwtConfigError, JwtError, JwtSettings, JwtVerifier, VerifiedToken};
use url::Url;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "test-only-hs256-secret-0123456789abcdef";
const OTHER_SECRET: &str = "another-test-only-secret-0123456789abcdef";
const JWKS_PATH: &str = "/auth/v1/.well-known/jwks.json";

const ES256_A_PRIVATE: &str = include_str!("fixtures/es256_a_private.pem");
const ES256_B_PRIVATE: &str = include_str!("fixtures/es256_b_private.pem");
const RS256_PRIVATE: &str = include_str!("fixtures/rs256_private.pem");
const RS256_PUBLIC: &str = include_str!("fixtures/rs256_public.pem");
const ES256_A_JWK: &str = include_str!("fixtures/es256_a.jwk.json");
const ES256_B_JWK: &str = include_str!("fixtures/es256_b.jwk.json");
const RS256_JWK: &str = include_str!("fixtures/rs256.jwk.json");
const KID_A: &str = "test-es256-a";
const KID_B: &str = "test-es256-b";
const KID_RSA: &str = "test-rs256";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A Supabase-shaped user access token payload.
fn user_claims(sub: Uuid) -> Value {
    json!({
        "iss": "https://ref.supabase.co/auth/v1",
        "aud": "authenticated",
        "sub": sub.to_string(),
        "exp": now() + 3600,
        "iat": now(),
        "role": "authenticated",
        "aal": "aal1",
        "email": "ops@example.test",
        "phone": "",
        "session_id": "8f9a3e1c-6f3b-4c57-9d1e-2b0c4a5e7f10",
        "is_anonymous": false,
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"full_name": "Ops Person"},
        "custom_hook_claim": {"anything": [1, 2, 3]},
    })
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn es256(kid: &str, pem: &str, claims: &Value) -> String {
    sign(
        Algorithm::ES256,
        Some(kid),
        claims,
        &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
}

fn rs256(claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        Some(KID_RSA),
        claims,
        &EncodingKey::from_rsa_pem(RS256_PRIVATE.as_bytes()).unwrap(),
    )
}

/// A token with a hand-made header (e.g. `alg: none`) and the given signature part.
fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn jwks(jwks: &[&str]) -> Value {
    let keys: Vec<Value> = jwks
        .iter()
        .map(|jwk| serde_json::from_str(jwk).unwrap())
        .collect();
    json!({ "keys": keys })
}

fn jwks_response(keys: &[&str]) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(jwks(keys))
}

fn jwks_url(server: &MockServer) -> Url {
    Url::parse(&format!("{}{JWKS_PATH}", server.uri())).unwrap()
}

fn hs_settings() -> JwtSettings {
    JwtSettings {
        hs256_secret: Some(SecretString::from(SECRET)),
        ..JwtSettings::default()
    }
}

fn jwks_settings(server: &MockServer) -> JwtSettings {
    JwtSettings {
        jwks_url: Some(jwks_url(server)),
        ..JwtSettings::default()
    }
}

fn verifier(settings: JwtSettings) -> JwtVerifier {
    JwtVerifier::new(settings, reqwest::Client::new()).unwrap()
}

/// A server that answers every JWKS request with `keys`, expecting exactly `calls` requests.
async fn jwks_server(keys: &[&str], calls: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(jwks_response(keys))
        .expect(calls)
        .named("jwks")
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn hs256_valid_token_is_accepted() {
    let sub = Uuid::new_v4();
    let claims = user_claims(sub);
    let verified = verifier(hs_settings()).verify(&hs256(&claims)).await;
    assert_eq!(
        verified,
        Ok(VerifiedToken {
            sub,
            email: Some("ops@example.test".to_owned()),
            session_id: Some(Uuid::parse_str("8f9a3e1c-6f3b-4c57-9d1e-2b0c4a5e7f10").unwrap()),
            expires_at: claims["exp"].as_i64().unwrap(),
        })
    );
}

#[tokio::test]
async fn es256_valid_token_is_accepted_via_jwks() {
    let server = jwks_server(&[ES256_A_JWK, RS256_JWK], 1).await;
    let v = verifier(jwks_settings(&server));
    assert_eq!(v.refresh_jwks().await, Ok(2));
    let sub = Uuid::new_v4();
    let token = es256(KID_A, ES256_A_PRIVATE, &user_claims(sub));
    assert_eq!(v.verify(&token).await.map(|t| t.sub), Ok(sub));
    server.verify().await;
}

#[tokio::test]
async fn rs256_valid_token_is_accepted_via_jwks() {
    let server = jwks_server(&[ES256_A_JWK, RS256_JWK], 1).await;
    let v = verifier(jwks_settings(&server));
    let sub = Uuid::new_v4();
    // No start-up refresh: the first verification loads the key set.
    assert_eq!(
        v.verify(&rs256(&user_claims(sub))).await.map(|t| t.sub),
        Ok(sub)
    );
    assert_eq!(v.jwks_health().keys, 2);
    server.verify().await;
}

#[tokio::test]
async fn expired_token_is_rejected() {
    let mut claims = user_claims(Uuid::new_v4());
    claims["exp"] = json!(now() - 120);
    let result = verifier(hs_settings()).verify(&hs256(&claims)).await;
    assert_eq!(result, Err(JwtError::Expired));
}

#[tokio::test]
async fn leeway_accepts_a_token_that_just_expired() {
    let mut claims = user_claims(Uuid::new_v4());
    claims["exp"] = json!(now() - 10);
    assert!(
        verifier(hs_settings())
            .verify(&hs256(&claims))
            .await
            .is_ok()
    );
    let strict = JwtSettings {
        leeway_secs: 0,
        ..hs_settings()
    };
    assert_eq!(
        verifier(strict).verify(&hs256(&claims)).await,
        Err(JwtError::Expired)
    );
}

#[tokio::test]
async fn token_without_exp_is_rejected() {
    let mut claims = user_claims(Uuid::new_v4());
    claims.as_object_mut().unwrap().remove("exp");
    let result = verifier(hs_settings()).verify(&hs256(&claims)).await;
    assert_eq!(result, Err(JwtError::Malformed));
}

#[tokio::test]
async fn token_not_yet_valid_is_rejected() {
    let mut claims = user_claims(Uuid::new_v4());
    claims["nbf"] = json!(now() + 300);
    let v = verifier(hs_settings());
    assert_eq!(v.verify(&hs256(&claims)).await, Err(JwtError::NotYetValid));
    claims["nbf"] = json!(now() - 5);
    assert!(v.verify(&hs256(&claims)).await.is_ok());
}

#[tokio::test]
async fn wrong_signature_is_rejected() {
    let claims = user_claims(Uuid::new_v4());
    let forged = sign(
        Algorithm::HS256,
        None,
        &claims,
        &EncodingKey::from_secret(OTHER_SECRET.as_bytes()),
    );
    assert_eq!(
        verifier(hs_settings()).verify(&forged).await,
        Err(JwtError::BadSignature)
    );

    // Signed with key B but claiming to be key A.
    let server = jwks_server(&[ES256_A_JWK], 1).await;
    let v = verifier(jwks_settings(&server));
    let forged = es256(KID_A, ES256_B_PRIVATE, &claims);
    assert_eq!(v.verify(&forged).await, Err(JwtError::BadSignature));

    // A tampered payload under a genuine signature.
    let genuine = es256(KID_A, ES256_A_PRIVATE, &claims);
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let mut tampered_claims = claims.clone();
    tampered_claims["sub"] = json!(Uuid::new_v4().to_string());
    let tampered_payload = URL_SAFE_NO_PAD.encode(tampered_claims.to_string());
    parts[1] = &tampered_payload;
    assert_eq!(
        v.verify(&parts.join(".")).await,
        Err(JwtError::BadSignature)
    );
}

#[tokio::test]
async fn wrong_audience_is_rejected() {
    let v = verifier(hs_settings());
    let mut claims = user_claims(Uuid::new_v4());
    claims["aud"] = json!("anon");
    assert_eq!(
        v.verify(&hs256(&claims)).await,
        Err(JwtError::WrongAudience)
    );
    claims.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        v.verify(&hs256(&claims)).await,
        Err(JwtError::WrongAudience)
    );
}

#[tokio::test]
async fn audience_may_be_an_array() {
    let v = verifier(hs_settings());
    let mut claims = user_claims(Uuid::new_v4());
    claims["aud"] = json!(["other-api", "authenticated"]);
    assert!(v.verify(&hs256(&claims)).await.is_ok());
    claims["aud"] = json!(["other-api", "anon"]);
    assert_eq!(
        v.verify(&hs256(&claims)).await,
        Err(JwtError::WrongAudience)
    );
}

#[tokio::test]
async fn issuer_is_checked_when_configured() {
    let settings = JwtSettings {
        issuer: Some("https://ref.supabase.co/auth/v1".to_owned()),
        ..hs_settings()
    };
    let v = verifier(settings);
    let mut claims = user_claims(Uuid::new_v4());
    assert!(v.verify(&hs256(&claims)).await.is_ok());
    claims["iss"] = json!("https://evil.supabase.co/auth/v1");
    assert_eq!(v.verify(&hs256(&claims)).await, Err(JwtError::WrongIssuer));
    claims.as_object_mut().unwrap().remove("iss");
    assert_eq!(v.verify(&hs256(&claims)).await, Err(JwtError::WrongIssuer));

    // Without a configured issuer, any issuer passes.
    claims["iss"] = json!("https://evil.supabase.co/auth/v1");
    assert!(
        verifier(hs_settings())
            .verify(&hs256(&claims))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let server = jwks_server(&[ES256_A_JWK], 0).await;
    let both = JwtSettings {
        hs256_secret: Some(SecretString::from(SECRET)),
        ..jwks_settings(&server)
    };
    let v = verifier(both);
    let claims = user_claims(Uuid::new_v4());
    for alg in ["none", "None", "NONE"] {
        let token = raw_token(&json!({"alg": alg, "typ": "JWT"}), &claims, "");
        assert_eq!(
            v.verify(&token).await,
            Err(JwtError::AlgorithmNotAllowed),
            "{alg}"
        );
    }
    let with_kid = raw_token(&json!({"alg": "none", "kid": KID_A}), &claims, "");
    assert_eq!(
        v.verify(&with_kid).await,
        Err(JwtError::AlgorithmNotAllowed)
    );
    server.verify().await;
}

#[tokio::test]
async fn other_algorithms_are_rejected() {
    let v = verifier(hs_settings());
    let claims = user_claims(Uuid::new_v4());
    let hs512 = sign(
        Algorithm::HS512,
        None,
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    );
    assert_eq!(v.verify(&hs512).await, Err(JwtError::AlgorithmNotAllowed));
    let ps256 = raw_token(&json!({"alg": "PS256", "kid": KID_RSA}), &claims, "c2ln");
    assert_eq!(v.verify(&ps256).await, Err(JwtError::AlgorithmNotAllowed));
}

#[tokio::test]
async fn hs256_is_rejected_when_only_jwks_is_configured() {
    let server = jwks_server(&[ES256_A_JWK], 0).await;
    let v = verifier(jwks_settings(&server));
    let result = v.verify(&hs256(&user_claims(Uuid::new_v4()))).await;
    assert_eq!(result, Err(JwtError::AlgorithmNotAllowed));
    server.verify().await;
}

#[tokio::test]
async fn es256_is_rejected_when_only_a_secret_is_configured() {
    let token = es256(KID_A, ES256_A_PRIVATE, &user_claims(Uuid::new_v4()));
    let result = verifier(hs_settings()).verify(&token).await;
    assert_eq!(result, Err(JwtError::AlgorithmNotAllowed));
}

#[tokio::test]
async fn algorithm_confusion_with_the_rsa_public_key_is_rejected() {
    // The classic attack: HS256 "signed" with the server's RSA public key as the HMAC secret,
    // pointing at the RSA key's kid.
    let claims = user_claims(Uuid::new_v4());
    let forged = sign(
        Algorithm::HS256,
        Some(KID_RSA),
        &claims,
        &EncodingKey::from_secret(RS256_PUBLIC.as_bytes()),
    );
    let server = jwks_server(&[RS256_JWK], 1).await;
    let both = JwtSettings {
        hs256_secret: Some(SecretString::from(SECRET)),
        ..jwks_settings(&server)
    };
    let v = verifier(both);
    v.refresh_jwks().await.unwrap();
    assert_eq!(v.verify(&forged).await, Err(JwtError::BadSignature));
    // The same forgery with the JWK's raw modulus as the secret fails too.
    let jwk: Value = serde_json::from_str(RS256_JWK).unwrap();
    let modulus = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let forged_n = sign(
        Algorithm::HS256,
        Some(KID_RSA),
        &claims,
        &EncodingKey::from_secret(&modulus),
    );
    assert_eq!(v.verify(&forged_n).await, Err(JwtError::BadSignature));
    // A genuine RS256 token still works on the same verifier.
    assert!(v.verify(&rs256(&claims)).await.is_ok());

    // JWKS only: HS256 is not even considered.
    let jwks_only = verifier(jwks_settings(&server));
    assert_eq!(
        jwks_only.verify(&forged).await,
        Err(JwtError::AlgorithmNotAllowed)
    );
}

#[tokio::test]
async fn header_alg_must_match_the_keys_own_type() {
    let server = jwks_server(&[ES256_A_JWK, RS256_JWK], 1).await;
    let v = verifier(jwks_settings(&server));
    v.refresh_jwks().await.unwrap();
    let claims = user_claims(Uuid::new_v4());
    // An ES256 token pointing at the RSA key, and an RS256 token pointing at the EC key.
    let es_on_rsa = es256(KID_RSA, ES256_A_PRIVATE, &claims);
    assert_eq!(
        v.verify(&es_on_rsa).await,
        Err(JwtError::AlgorithmNotAllowed)
    );
    let rs_on_ec = sign(
        Algorithm::RS256,
        Some(KID_A),
        &claims,
        &EncodingKey::from_rsa_pem(RS256_PRIVATE.as_bytes()).unwrap(),
    );
    assert_eq!(
        v.verify(&rs_on_ec).await,
        Err(JwtError::AlgorithmNotAllowed)
    );
    server.verify().await;
}

#[tokio::test]
async fn asymmetric_token_without_kid_is_rejected() {
    let server = jwks_server(&[ES256_A_JWK], 0).await;
    let v = verifier(jwks_settings(&server));
    let token = sign(
        Algorithm::ES256,
        None,
        &user_claims(Uuid::new_v4()),
        &EncodingKey::from_ec_pem(ES256_A_PRIVATE.as_bytes()).unwrap(),
    );
    assert_eq!(v.verify(&token).await, Err(JwtError::UnknownKey));
    server.verify().await;
}

#[tokio::test]
async fn unknown_kid_refetches_once_then_is_rate_limited() {
    // One fetch at start-up, one caused by the first unknown kid, none for the second.
    let server = jwks_server(&[ES256_A_JWK], 2).await;
    let v = verifier(jwks_settings(&server));
    assert_eq!(v.refresh_jwks().await, Ok(1));
    let token = es256(KID_B, ES256_B_PRIVATE, &user_claims(Uuid::new_v4()));
    assert_eq!(v.verify(&token).await, Err(JwtError::UnknownKey));
    assert_eq!(v.verify(&token).await, Err(JwtError::UnknownKey));
    let other = es256(
        "yet-another-kid",
        ES256_B_PRIVATE,
        &user_claims(Uuid::new_v4()),
    );
    assert_eq!(v.verify(&other).await, Err(JwtError::UnknownKey));
    // Known keys keep working without further fetches.
    let good = es256(KID_A, ES256_A_PRIVATE, &user_claims(Uuid::new_v4()));
    assert!(v.verify(&good).await.is_ok());
    server.verify().await;
}

#[tokio::test]
async fn concurrent_unknown_kid_callers_share_one_refresh() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(jwks_response(&[ES256_A_JWK]).set_delay(Duration::from_millis(200)))
        .expect(2)
        .mount(&server)
        .await;
    let v = verifier(jwks_settings(&server));
    v.refresh_jwks().await.unwrap();
    let token = Arc::new(es256(KID_B, ES256_B_PRIVATE, &user_claims(Uuid::new_v4())));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (v, token) = (v.clone(), Arc::clone(&token));
        tasks.spawn(async move { v.verify(&token).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap(), Err(JwtError::UnknownKey));
    }
    server.verify().await;
}

#[tokio::test]
async fn concurrent_first_use_shares_one_download() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(jwks_response(&[ES256_A_JWK]).set_delay(Duration::from_millis(200)))
        .expect(1)
        .mount(&server)
        .await;
    let v = verifier(jwks_settings(&server));
    let token = Arc::new(es256(KID_A, ES256_A_PRIVATE, &user_claims(Uuid::new_v4())));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (v, token) = (v.clone(), Arc::clone(&token));
        tasks.spawn(async move { v.verify(&token).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(result.unwrap().is_ok());
    }
    server.verify().await;
}

#[tokio::test]
async fn key_rotation_new_kid_is_accepted_after_refresh() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(jwks_response(&[ES256_A_JWK]))
        .up_to_n_times(1)
        .expect(1)
        .named("before rotation")
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(jwks_response(&[ES256_A_JWK, ES256_B_JWK]))
        .expect(1)
        .named("after rotation")
        .mount(&server)
        .await;
    let v = verifier(jwks_settings(&server));
    assert_eq!(v.refresh_jwks().await, Ok(1));
    let sub = Uuid::new_v4();
    let new_key_token = es256(KID_B, ES256_B_PRIVATE, &user_claims(sub));
    assert_eq!(v.verify(&new_key_token).await.map(|t| t.sub), Ok(sub));
    // Both keys are trusted during the rotation, without another fetch.
    assert!(v.verify(&new_key_token).await.is_ok());
    let old_key_token = es256(KID_A, ES256_A_PRIVATE, &user_claims(sub));
    assert!(v.verify(&old_key_token).await.is_ok());
    assert_eq!(v.jwks_health().keys, 2);
    server.verify().await;
}

#[tokio::test]
async fn stale_cache_is_refreshed_after_the_ttl() {
    let server = jwks_server(&[ES256_A_JWK], 2).await;
    let settings = JwtSettings {
        jwks_ttl: Duration::from_millis(100),
        ..jwks_settings(&server)
    };
    let v = verifier(settings);
    v.refresh_jwks().await.unwrap();
    let token = es256(KID_A, ES256_A_PRIVATE, &user_claims(Uuid::new_v4()));
    assert!(v.verify(&token).await.is_ok(), "fresh cache, no fetch");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(v.verify(&token).await.is_ok(), "stale cache, one fetch");
    server.verify().await;
}

#[tokio::test]
async fn failed_refresh_keeps_the_last_good_keys() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(jwks_response(&[ES256_A_JWK]))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .expect(1)
        .mount(&server)
        .await;
    let v = verifier(jwks_settings(&server));
    assert_eq!(v.refresh_jwks().await, Ok(1));
    let healthy = v.jwks_health();
    assert!(healthy.configured && healthy.last_refresh_ok && healthy.last_error.is_none());
    let first_success = healthy.last_success_unix;
    assert!(first_success.is_some());

    assert_eq!(v.refresh_jwks().await, Err(JwtError::KeysUnavailable));
    let health = v.jwks_health();
    assert!(health.configured);
    assert_eq!(health.keys, 1, "the old key set is kept");
    assert!(!health.last_refresh_ok);
    let error = health.last_error.clone().unwrap();
    assert!(error.contains("500"), "{error}");
    assert_eq!(health.last_success_unix, first_success);

    let token = es256(KID_A, ES256_A_PRIVATE, &user_claims(Uuid::new_v4()));
    assert!(v.verify(&token).await.is_ok(), "old key still verifies");
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["keys"], 1);
    assert_eq!(json["last_refresh_ok"], false);
    server.verify().await;
}

#[tokio::test]
async fn garbage_jwks_document_is_a_failed_refresh() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>login</html>"))
        .mount(&server)
        .await;
    let v = verifier(jwks_settings(&server));
    assert_eq!(v.refresh_jwks().await, Err(JwtError::KeysUnavailable));
    assert!(v.jwks_health().last_error.is_some());
}

#[tokio::test]
async fn unreachable_jwks_without_any_keys_is_keys_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(JWKS_PATH))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let v = verifier(jwks_settings(&server));
    let token = es256(KID_A, ES256_A_PRIVATE, &user_claims(Uuid::new_v4()));
    assert_eq!(v.verify(&token).await, Err(JwtError::KeysUnavailable));
    let health = v.jwks_health();
    assert_eq!(
        (health.configured, health.keys, health.last_refresh_ok),
        (true, 0, false)
    );
    assert_eq!(health.last_success_unix, None);
}

#[tokio::test]
async fn health_without_jwks() {
    let v = verifier(hs_settings());
    assert_eq!(v.refresh_jwks().await, Ok(0));
    let health = v.jwks_health();
    assert!(!health.configured);
    assert!(health.last_refresh_ok);
    assert_eq!(health.keys, 0);
}

#[tokio::test]
async fn subject_must_be_a_uuid() {
    let v = verifier(hs_settings());
    let mut claims = user_claims(Uuid::new_v4());
    claims["sub"] = json!("user-42");
    assert_eq!(
        v.verify(&hs256(&claims)).await,
        Err(JwtError::MissingSubject)
    );
    claims["sub"] = json!(42);
    assert_eq!(
        v.verify(&hs256(&claims)).await,
        Err(JwtError::MissingSubject)
    );
    claims.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        v.verify(&hs256(&claims)).await,
        Err(JwtError::MissingSubject)
    );
}

#[tokio::test]
async fn non_user_roles_are_rejected() {
    let v = verifier(hs_settings());
    let mut claims = user_claims(Uuid::new_v4());
    claims["role"] = json!("anon");
    assert_eq!(v.verify(&hs256(&claims)).await, Err(JwtError::WrongRole));
    claims["role"] = json!("service_role");
    assert_eq!(v.verify(&hs256(&claims)).await, Err(JwtError::WrongRole));

    // A legacy service_role API key: iss "supabase", ref, role, no sub.
    let service_key = json!({
        "iss": "supabase", "ref": "abcdefghijklmnop", "role": "service_role",
        "aud": "authenticated", "iat": now(), "exp": now() + 3600,
    });
    assert_eq!(
        v.verify(&hs256(&service_key)).await,
        Err(JwtError::WrongRole)
    );

    // No role claim at all is fine (other issuers of the same shape).
    claims.as_object_mut().unwrap().remove("role");
    assert!(v.verify(&hs256(&claims)).await.is_ok());
}

#[tokio::test]
async fn empty_email_and_missing_session_are_none() {
    let v = verifier(hs_settings());
    let mut claims = user_claims(Uuid::new_v4());
    claims["email"] = json!("");
    claims.as_object_mut().unwrap().remove("session_id");
    let verified = v.verify(&hs256(&claims)).await.unwrap();
    assert_eq!(verified.email, None);
    assert_eq!(verified.session_id, None);
}

#[tokio::test]
async fn malformed_tokens_are_rejected() {
    let v = verifier(hs_settings());
    let good = hs256(&user_claims(Uuid::new_v4()));
    let not_json = format!(
        "{}.{}.sig",
        URL_SAFE_NO_PAD.encode("not json"),
        URL_SAFE_NO_PAD.encode("{}")
    );
    for token in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "!!!.???.***",
        not_json.as_str(),
        &good[..good.len() / 2],
    ] {
        let result = v.verify(token).await;
        assert!(
            matches!(result, Err(JwtError::Malformed | JwtError::BadSignature)),
            "{token:?}: {result:?}"
        );
    }
    assert_eq!(v.verify("a.b").await, Err(JwtError::Malformed));
}

#[test]
fn new_without_key_source_names_both_variables() {
    let err = JwtVerifier::new(JwtSettings::default(), reqwest::Client::new()).unwrap_err();
    assert!(matches!(err, JwtConfigError::NoKeySource));
    let message = err.to_string();
    assert!(message.contains("TIAMAT_JWT_SECRET"), "{message}");
    assert!(message.contains("TIAMAT_JWKS_URL"), "{message}");
}

#[test]
fn short_secret_is_a_config_error() {
    let settings = JwtSettings {
        hs256_secret: Some(SecretString::from("too-short")),
        ..JwtSettings::default()
    };
    let err = JwtVerifier::new(settings, reqwest::Client::new()).unwrap_err();
    assert!(matches!(err, JwtConfigError::SecretTooShort));
}

#[test]
fn debug_output_never_shows_the_secret() {
    let v = verifier(hs_settings());
    let text = format!("{v:?} {:?}", hs_settings());
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn defaults_match_the_design() {
    let d = JwtSettings::default();
    assert_eq!(d.audience, "authenticated");
    assert_eq!(d.jwks_ttl, Duration::from_secs(300));
    assert_eq!(d.leeway_secs, 30);
    assert!(d.hs256_secret.is_none() && d.jwks_url.is_none() && d.issuer.is_none());
}

/// One recorded counter: name, sorted labels, value.
type Counter = (String, Vec<(String, String)>, u64);

/// Runs `body` on a current-thread runtime with a local metrics recorder and returns the
/// counters it recorded as (name, sorted labels, value).
fn with_recorded_counters<F, Fut>(body: F) -> Vec<Counter>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body());
    });
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(count) => {
                let key = key.key();
                let mut labels: Vec<(String, String)> = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                labels.sort();
                Some((key.name().to_owned(), labels, count))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn jwks_refresh_outcomes_are_counted() {
    let counters = with_recorded_counters(|| async {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(JWKS_PATH))
            .respond_with(jwks_response(&[ES256_A_JWK]))
            .up_to_n_times(2)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(JWKS_PATH))
            .respond_with(ResponseTemplate::new(500))
            .mount(&server)
            .await;
        let v = verifier(jwks_settings(&server));
        assert!(v.refresh_jwks().await.is_ok());
        assert!(v.refresh_jwks().await.is_ok());
        assert!(v.refresh_jwks().await.is_err());
    });
    let count = |outcome: &str| {
        counters
            .iter()
            .find(|(name, labels, _)| {
                name == "tiamat_jwks_refresh_total"
                    && labels == &[("outcome".to_owned(), outcome.to_owned())]
            })
            .map(|(_, _, value)| *value)
    };
    assert_eq!(count("ok"), Some(2), "{counters:?}");
    assert_eq!(count("error"), Some(1), "{counters:?}");
}
