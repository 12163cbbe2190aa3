//! The Supabase adapters wired into the whole app: ES256 tokens verified through a JWKS, and
//! members invited and banned through the GoTrue admin API (both vendors are wiremock servers).

use actix_web::http::StatusCode;
use serde_json::json;
use tiamat_tests::{As, TestApp, claims};
use wiremock::matchers::{body_partial_json, header, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/supabase/tests/fixtures"
);

fn es256_token(sub: &str, kid: &str) -> String {
    let pem = std::fs::read(format!("{FIXTURES}/es256_a_private.pem")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        &claims(sub, 600),
        &jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
    )
    .unwrap()
}

/// `tiamat bootstrap` invites the platform administrator through GoTrue too.
async fn accept_root_invite(vendor: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/auth/v1/invite"))
        .and(body_partial_json(json!({"email": "root@platform.test"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": uuid::Uuid::new_v4()})))
        .expect(1)
        .mount(vendor)
        .await;
}

#[actix_web::test]
async fn members_come_from_gotrue_and_sign_in_with_es256_tokens() {
    let vendor = MockServer::start().await;
    let jwk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{FIXTURES}/es256_a.jwk.json")).unwrap())
            .unwrap();
    Mock::given(method("GET"))
        .and(path("/auth/v1/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [jwk]})))
        .mount(&vendor)
        .await;
    accept_root_invite(&vendor).await;
    let invited = uuid::Uuid::new_v4();
    Mock::given(method("POST"))
        .and(path("/auth/v1/invite"))
        .and(body_partial_json(json!({"email": "field@acme.test"})))
        .and(header("apikey", "service-role-key"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": invited, "email": "field@acme.test"})),
        )
        .expect(1)
        .mount(&vendor)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex(format!("^/auth/v1/admin/users/{invited}$")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": invited})))
        .expect(1)
        .mount(&vendor)
        .await;

    let base = vendor.uri();
    let app = TestApp::start_with(|cfg| {
        cfg.jwks_url = Some(
            format!("{base}/auth/v1/.well-known/jwks.json")
                .parse()
                .unwrap(),
        );
        cfg.supabase = Some(tiamat::config::SupabaseAdmin {
            url: base.parse().unwrap(),
            service_role_key: secrecy::SecretString::from("service-role-key".to_owned()),
        });
    })
    .await;
    let org = app.organization("Acme").await;
    let r = app
        .post("/api/v1/members", &app.root, json!({"email": "field@acme.test", "full_name": "Field", "role": "TECH", "organization_id": org}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        r.body["auth_user_id"],
        json!(invited),
        "the login id is GoTrue's"
    );
    let id = r.body["id"].as_i64().unwrap();

    let token = As::Token(es256_token(&invited.to_string(), "test-es256-a"));
    let me = app.get("/api/v1/me", &token).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["role"], "TECH");
    let unknown_kid = As::Token(es256_token(&invited.to_string(), "rotated-away"));
    assert_eq!(
        app.get("/api/v1/me", &unknown_kid).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Deleting the member bans the login at GoTrue (the PUT mock expects exactly one call).
    assert_eq!(
        app.delete(&format!("/api/v1/members/{id}"), &app.root)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/v1/me", &token).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[actix_web::test]
async fn an_identity_provider_outage_is_a_503_and_creates_nothing() {
    let vendor = MockServer::start().await;
    accept_root_invite(&vendor).await;
    Mock::given(method("POST"))
        .and(path("/auth/v1/invite"))
        .and(body_partial_json(json!({"email": "x@acme.test"})))
        .respond_with(ResponseTemplate::new(503))
        .mount(&vendor)
        .await;
    let base = vendor.uri();
    let app = TestApp::start_with(|cfg| {
        cfg.supabase = Some(tiamat::config::SupabaseAdmin {
            url: base.parse().unwrap(),
            service_role_key: secrecy::SecretString::from("k".to_owned()),
        });
    })
    .await;
    let r = app
        .post(
            "/api/v1/members",
            &app.root,
            json!({"email": "x@acme.test", "full_name": "X", "role": "TECH"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.body["code"], "integration_unavailable");
    let list = app.get("/api/v1/members?search=x%40acme", &app.root).await;
    assert!(list.body["items"].as_array().unwrap().is_empty());
}
