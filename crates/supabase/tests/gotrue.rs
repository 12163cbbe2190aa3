//! GoTrueAdmin against a wiremock GoTrue on loopback.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use secrecy::SecretString;
use serde_json::{Value, json};
use supabase::{GoTrueAdmin, GoTrueError};
use url::Url;
use uuid::Uuid;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "test-service-role-key";

fn admin(server: &MockServer) -> GoTrueAdmin {
    GoTrueAdmin::new(
        Url::parse(&server.uri()).unwrap(),
        SecretString::from(KEY),
        reqwest::Client::new(),
    )
}

/// The user object GoTrue returns (trimmed).
fn user_json(id: Uuid, email: Option<&str>, phone: Option<&str>) -> Value {
    json!({
        "id": id,
        "aud": "authenticated",
        "role": "authenticated",
        "email": email.unwrap_or(""),
        "phone": phone.unwrap_or(""),
        "invited_at": "2025-01-01T00:00:00Z",
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {"full_name": "Ada Obi"},
        "identities": [],
        "created_at": "2025-01-01T00:00:00Z",
        "updated_at": "2025-01-01T00:00:00Z",
        "is_anonymous": false
    })
}

fn authenticated(m: wiremock::MockBuilder) -> wiremock::MockBuilder {
    m.and(header("apikey", KEY))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
}

async fn only_request_body(server: &MockServer) -> Value {
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    serde_json::from_slice(&requests[0].body).unwrap()
}

#[tokio::test]
async fn invite_sends_key_headers_and_body_and_returns_the_id() {
    let server = MockServer::start().await;
    let id = Uuid::new_v4();
    authenticated(Mock::given(method("POST")).and(path("/auth/v1/invite")))
        .and(body_partial_json(
            json!({"email": "ada@example.test", "data": {"full_name": "Ada Obi"}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(user_json(
            id,
            Some("ada@example.test"),
            None,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let result = admin(&server)
        .invite_user_by_email("ada@example.test", "Ada Obi")
        .await;
    assert_eq!(result.unwrap(), id);
    server.verify().await;
}

#[tokio::test]
async fn invite_of_an_existing_email_is_already_registered() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/v1/invite"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "code": 422,
            "error_code": "email_exists",
            "msg": "A user with this email address has already been registered"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let result = admin(&server)
        .invite_user_by_email("ada@example.test", "Ada Obi")
        .await;
    assert!(
        matches!(result, Err(GoTrueError::AlreadyRegistered)),
        "{result:?}"
    );
    server.verify().await;
}

#[tokio::test]
async fn older_gotrue_already_registered_message_is_recognised() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/v1/invite"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 400,
            "msg": "A user with this email address has already been registered"
        })))
        .mount(&server)
        .await;
    let result = admin(&server)
        .invite_user_by_email("ada@example.test", "Ada Obi")
        .await;
    assert!(
        matches!(result, Err(GoTrueError::AlreadyRegistered)),
        "{result:?}"
    );
}

#[tokio::test]
async fn invite_server_error_is_unavailable_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/v1/invite"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .expect(1)
        .mount(&server)
        .await;
    let result = admin(&server)
        .invite_user_by_email("ada@example.test", "Ada Obi")
        .await;
    match result {
        Err(GoTrueError::Unavailable(message)) => assert!(message.contains("500"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    server.verify().await;
}

#[tokio::test]
async fn rate_limited_is_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/v1/admin/users"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "code": 429, "error_code": "over_request_rate_limit", "msg": "slow down"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let result = admin(&server)
        .create_user(Some("ada@example.test"), None, "Ada Obi")
        .await;
    assert!(
        matches!(result, Err(GoTrueError::Unavailable(_))),
        "{result:?}"
    );
    server.verify().await;
}

#[tokio::test]
async fn bad_key_is_rejected_with_the_gotrue_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/v1/invite"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "code": 401, "error_code": "no_authorization", "msg": "This endpoint requires a valid Bearer token"
        })))
        .mount(&server)
        .await;
    let result = admin(&server)
        .invite_user_by_email("ada@example.test", "Ada Obi")
        .await;
    match result {
        Err(GoTrueError::Rejected { status, message }) => {
            assert_eq!(status, 401);
            assert!(message.contains("no_authorization"), "{message}");
            assert!(!message.contains(KEY));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn success_without_a_user_id_is_rejected() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/v1/invite"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"email": "x"})))
        .mount(&server)
        .await;
    let result = admin(&server)
        .invite_user_by_email("ada@example.test", "Ada Obi")
        .await;
    assert!(
        matches!(result, Err(GoTrueError::Rejected { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn create_user_by_phone() {
    let server = MockServer::start().await;
    let id = Uuid::new_v4();
    authenticated(Mock::given(method("POST")).and(path("/auth/v1/admin/users")))
        .and(body_partial_json(json!({
            "phone": "+2348012345678",
            "phone_confirm": true,
            "email_confirm": true,
            "user_metadata": {"full_name": "Ada Obi"}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(user_json(
            id,
            None,
            Some("2348012345678"),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let result = admin(&server)
        .create_user(None, Some("+2348012345678"), "Ada Obi")
        .await;
    assert_eq!(result.unwrap(), id);
    let body = only_request_body(&server).await;
    assert!(body.get("email").is_none(), "no email key: {body}");
    assert!(body.get("password").is_none(), "no password: {body}");
    server.verify().await;
}

#[tokio::test]
async fn create_user_by_email_and_phone() {
    let server = MockServer::start().await;
    let id = Uuid::new_v4();
    authenticated(Mock::given(method("POST")).and(path("/auth/v1/admin/users")))
        .and(body_partial_json(json!({
            "email": "agent@example.test",
            "phone": "+2348012345678",
            "email_confirm": true,
            "phone_confirm": true,
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(user_json(
            id,
            Some("agent@example.test"),
            Some("2348012345678"),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let result = admin(&server)
        .create_user(Some("agent@example.test"), Some("+2348012345678"), "Agent")
        .await;
    assert_eq!(result.unwrap(), id);
    server.verify().await;
}

#[tokio::test]
async fn create_user_with_a_taken_phone_is_already_registered() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/v1/admin/users"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "code": 422, "error_code": "phone_exists",
            "msg": "A user with this phone number has already been registered"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let result = admin(&server)
        .create_user(None, Some("+2348012345678"), "Ada Obi")
        .await;
    assert!(
        matches!(result, Err(GoTrueError::AlreadyRegistered)),
        "{result:?}"
    );
    server.verify().await;
}

#[tokio::test]
async fn create_user_needs_an_email_or_a_phone() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;
    let result = admin(&server).create_user(None, Some(""), "Nobody").await;
    assert!(
        matches!(result, Err(GoTrueError::Rejected { status: 400, .. })),
        "{result:?}"
    );
    server.verify().await;
}

#[tokio::test]
async fn ban_retries_on_503_then_succeeds() {
    let server = MockServer::start().await;
    let id = Uuid::new_v4();
    let user_path = format!("/auth/v1/admin/users/{id}");
    authenticated(Mock::given(method("PUT")).and(path(user_path.as_str())))
        .and(body_partial_json(json!({"ban_duration": "876000h"})))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .named("first attempt: 503")
        .mount(&server)
        .await;
    authenticated(Mock::given(method("PUT")).and(path(user_path.as_str())))
        .and(body_partial_json(json!({"ban_duration": "876000h"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(user_json(id, None, None)))
        .expect(1)
        .named("second attempt: 200")
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    admin(&server).ban_user(id).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(100), "backoff: {waited:?}");
    server.verify().await;
}

#[tokio::test]
async fn ban_gives_up_after_three_attempts() {
    let server = MockServer::start().await;
    let id = Uuid::new_v4();
    Mock::given(method("PUT"))
        .and(path(format!("/auth/v1/admin/users/{id}").as_str()))
        .respond_with(ResponseTemplate::new(502))
        .expect(3)
        .mount(&server)
        .await;
    let result = admin(&server).ban_user(id).await;
    assert!(
        matches!(result, Err(GoTrueError::Unavailable(_))),
        "{result:?}"
    );
    server.verify().await;
}

#[tokio::test]
async fn ban_of_an_unknown_user_is_rejected_without_retry() {
    let server = MockServer::start().await;
    let id = Uuid::new_v4();
    Mock::given(method("PUT"))
        .and(path(format!("/auth/v1/admin/users/{id}").as_str()))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "code": 404, "error_code": "user_not_found", "msg": "User not found"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let result = admin(&server).ban_user(id).await;
    assert!(
        matches!(result, Err(GoTrueError::Rejected { status: 404, .. })),
        "{result:?}"
    );
    server.verify().await;
}

#[tokio::test]
async fn unban_sends_none() {
    let server = MockServer::start().await;
    let id = Uuid::new_v4();
    authenticated(
        Mock::given(method("PUT")).and(path(format!("/auth/v1/admin/users/{id}").as_str())),
    )
    .and(body_partial_json(json!({"ban_duration": "none"})))
    .respond_with(ResponseTemplate::new(200).set_body_json(user_json(id, None, None)))
    .expect(1)
    .mount(&server)
    .await;
    admin(&server).unban_user(id).await.unwrap();
    server.verify().await;
}

#[tokio::test]
async fn slow_gotrue_times_out_as_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/v1/invite"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(user_json(Uuid::new_v4(), None, None))
                .set_delay(Duration::from_secs(3)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let result = admin(&server)
        .with_timeout(Duration::from_millis(200))
        .invite_user_by_email("ada@example.test", "Ada Obi")
        .await;
    assert!(
        matches!(result, Err(GoTrueError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    server.verify().await;
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    // Take a free loopback port and close it again.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = GoTrueAdmin::new(
        Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        SecretString::from(KEY),
        reqwest::Client::new(),
    );
    let result = admin.invite_user_by_email("ada@example.test", "Ada").await;
    match result {
        Err(GoTrueError::Unavailable(message)) => assert!(!message.contains(KEY)),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn calls_are_counted_by_operation_and_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let server = MockServer::start().await;
                let id = Uuid::new_v4();
                Mock::given(method("POST"))
                    .and(path("/auth/v1/invite"))
                    .respond_with(
                        ResponseTemplate::new(200).set_body_json(user_json(id, None, None)),
                    )
                    .mount(&server)
                    .await;
                Mock::given(method("POST"))
                    .and(path("/auth/v1/admin/users"))
                    .respond_with(ResponseTemplate::new(422).set_body_json(
                        json!({"code": 422, "error_code": "email_exists", "msg": "taken"}),
                    ))
                    .mount(&server)
                    .await;
                Mock::given(method("PUT"))
                    .respond_with(ResponseTemplate::new(503))
                    .up_to_n_times(1)
                    .mount(&server)
                    .await;
                Mock::given(method("PUT"))
                    .respond_with(
                        ResponseTemplate::new(200).set_body_json(user_json(id, None, None)),
                    )
                    .mount(&server)
                    .await;
                let admin = admin(&server);
                admin
                    .invite_user_by_email("a@example.test", "A")
                    .await
                    .unwrap();
                assert!(
                    admin
                        .create_user(Some("a@example.test"), None, "A")
                        .await
                        .is_err()
                );
                admin.ban_user(id).await.unwrap();
            });
    });
    let counters: Vec<(Vec<(String, String)>, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(count) if key.key().name() == "tiamat_integration_calls_total" => {
                let mut labels: Vec<(String, String)> = key
                    .key()
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                labels.sort();
                Some((labels, count))
            }
            _ => None,
        })
        .collect();
    let count = |operation: &str, outcome: &str| {
        let wanted = vec![
            ("operation".to_owned(), operation.to_owned()),
            ("outcome".to_owned(), outcome.to_owned()),
            ("vendor".to_owned(), "supabase".to_owned()),
        ];
        counters
            .iter()
            .find(|(labels, _)| *labels == wanted)
            .map(|(_, value)| *value)
    };
    assert_eq!(count("invite_user", "ok"), Some(1), "{counters:?}");
    assert_eq!(count("create_user", "error"), Some(1), "{counters:?}");
    assert_eq!(count("ban_user", "unavailable"), Some(1), "{counters:?}");
    assert_eq!(count("ban_user", "ok"), Some(1), "{counters:?}");
    assert_eq!(counters.len(), 4, "{counters:?}");
}
