use actix_web::http::StatusCode;
use serde_json::json;
use tiamat_tests::{As, JWT_SECRET, TestApp, claims, sign, token};
use uuid::Uuid;

async fn member_token_sub(app: &TestApp) -> String {
    let org = app.organization("Acme").await;
    let r = app
        .post("/api/v1/members", &app.root, json!({"email": "ops@acme.test", "full_name": "Ops", "role": "MANAGER", "organization_id": org}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    r.body["auth_user_id"].as_str().unwrap().to_owned()
}

fn assert_401(r: &tiamat_tests::Reply, why: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{why}: {:?}", r.body);
    assert_eq!(r.body["code"], "unauthenticated", "{why}");
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
}

#[actix_web::test]
async fn a_valid_token_resolves_to_our_account_and_role() {
    let app = TestApp::start().await;
    let sub = member_token_sub(&app).await;
    let r = app.get("/api/v1/me", &As::Token(token(&sub, 600))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["role"], "MANAGER");
    assert_eq!(r.body["account_type"], "MEMBER");
    assert!(
        r.body["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("grid_manage"))
    );
    assert!(
        !r.body["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("member_manage"))
    );
}

#[actix_web::test]
async fn token_edge_cases_are_401() {
    let app = TestApp::start().await;
    let sub = member_token_sub(&app).await;
    let now = chrono::Utc::now().timestamp();

    assert_401(&app.get("/api/v1/me", &As::Nobody).await, "missing");
    assert_401(
        &app.get("/api/v1/me", &As::Token(token(&sub, -120))).await,
        "expired",
    );

    let mut nbf = claims(&sub, 600);
    nbf["nbf"] = json!(now + 600);
    assert_401(
        &app.get("/api/v1/me", &As::Token(sign(&nbf, JWT_SECRET)))
            .await,
        "not yet valid",
    );

    let wrong_key = sign(
        &claims(&sub, 600),
        "another-secret-another-secret-another-00",
    );
    assert_401(
        &app.get("/api/v1/me", &As::Token(wrong_key)).await,
        "wrong signature",
    );

    let mut aud = claims(&sub, 600);
    aud["aud"] = json!("anon");
    assert_401(
        &app.get("/api/v1/me", &As::Token(sign(&aud, JWT_SECRET)))
            .await,
        "wrong audience",
    );

    // alg "none": header and claims, empty signature.
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(&sub, 600))
    );
    assert_401(&app.get("/api/v1/me", &As::Token(none)).await, "alg none");

    // An RS256 token with a kid nobody published (no JWKS is configured here).
    let forged = format!(
        "{}.{}.c2ln",
        b64(&json!({"alg": "RS256", "kid": "nope", "typ": "JWT"})),
        b64(&claims(&sub, 600))
    );
    assert_401(
        &app.get("/api/v1/me", &As::Token(forged)).await,
        "unknown kid",
    );

    assert_401(
        &app.get(
            "/api/v1/me",
            &As::Token(token(&Uuid::new_v4().to_string(), 600)),
        )
        .await,
        "unknown account",
    );
    assert_401(
        &app.get("/api/v1/me", &As::Token("not.a.jwt".into())).await,
        "garbage",
    );

    let r = app
        .send(
            actix_web::test::TestRequest::get()
                .uri("/api/v1/me")
                .insert_header(("Authorization", "Basic abc"))
                .to_request(),
        )
        .await;
    assert_401(&r, "wrong scheme");

    // Failures are counted by reason.
    let m = app.get("/metrics", &As::Nobody).await;
    let text = m.body.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains("tiamat_auth_failures_total{reason=\"expired\"}"),
        "{text}"
    );
}

#[actix_web::test]
async fn deleted_members_lose_access_at_once() {
    let app = TestApp::start().await;
    let org = app.organization("Acme").await;
    let (id, tok) = app.member(org, "TECH").await;
    assert_eq!(app.get("/api/v1/me", &tok).await.status, StatusCode::OK);
    assert_eq!(
        app.delete(&format!("/api/v1/members/{id}"), &app.root)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_401(&app.get("/api/v1/me", &tok).await, "deleted member");
}

#[actix_web::test]
async fn api_keys_work_until_revoked_then_stop_at_once() {
    let app = TestApp::start().await;
    let org = app.organization("Acme").await;
    let r = app
        .post(
            "/api/v1/api-keys",
            &app.root,
            json!({"name": "yeti", "role": "SERVICE", "organization_id": org}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let id = r.body["id"].as_i64().unwrap();
    let key = As::Key(r.body["secret"].as_str().unwrap().to_owned());
    let me = app.get("/api/v1/me", &key).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["role"], "SERVICE");
    assert_eq!(me.body["organization_id"], org);

    let listed = app.get(&format!("/api/v1/api-keys/{id}"), &app.root).await;
    assert!(
        listed.body["last_used_at"].is_string(),
        "use recorded: {:?}",
        listed.body
    );
    assert!(
        listed.body.get("secret").is_none(),
        "secret never shown again"
    );

    assert_eq!(
        app.delete(&format!("/api/v1/api-keys/{id}"), &app.root)
            .await
            .status,
        StatusCode::OK
    );
    assert_401(&app.get("/api/v1/me", &key).await, "revoked");
}

#[actix_web::test]
async fn malformed_unknown_and_expired_keys_are_401() {
    let app = TestApp::start().await;
    assert_401(
        &app.get("/api/v1/me", &As::Key("hello".into())).await,
        "malformed",
    );
    let fake = format!("tmt_0123456789ab_{}", "A".repeat(43));
    assert_401(&app.get("/api/v1/me", &As::Key(fake)).await, "unknown");
    let past = app
        .post(
            "/api/v1/api-keys",
            &app.root,
            json!({"name": "old", "role": "DEVELOPER", "expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        past.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{:?}",
        past.body
    );
    assert_eq!(past.body["errors"][0]["field"], "expires_at");
}

/// With a long key cache, only the revocation notice can make the other instance refuse the key.
#[actix_web::test]
async fn a_key_revoked_on_one_instance_stops_working_on_another() {
    let app = TestApp::start().await;
    let mut cfg = tiamat_tests::config(&app.db.url);
    cfg.api_key_cache_ttl = std::time::Duration::from_secs(300);
    let a = tiamat_tests::Server::start(&cfg, api::ws::HubConfig::default()).await;
    let b = tiamat_tests::Server::start(&cfg, api::ws::HubConfig::default()).await;
    let org = app.organization("Acme").await;
    let r = app
        .post(
            "/api/v1/api-keys",
            &app.root,
            json!({"name": "yeti", "role": "SERVICE", "organization_id": org}),
        )
        .await;
    let id = r.body["id"].as_i64().unwrap();
    let secret = r.body["secret"].as_str().unwrap().to_owned();
    let root = match &app.root {
        As::Key(k) => k.clone(),
        _ => unreachable!(),
    };
    let http = awc::Client::default();
    let me = |server: &tiamat_tests::Server| {
        http.get(server.url("/api/v1/me"))
            .insert_header(("X-API-Key", secret.clone()))
            .send()
    };
    assert_eq!(
        me(&b).await.unwrap().status(),
        StatusCode::OK,
        "B has the key cached now"
    );
    let revoked = http
        .delete(a.url(&format!("/api/v1/api-keys/{id}")))
        .insert_header(("X-API-Key", root))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let status = me(&b).await.unwrap().status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B still accepts the revoked key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
