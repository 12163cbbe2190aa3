//! `StsGenerator` against a wiremock NXT STS service on loopback.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use grids::vocab::CommunicationProtocol;
use kernel::{DomainError, MeterId};
use meters::{TokenGenerator, TokenKind, TokenRequest};
use secrecy::SecretString;
use serde_json::{Value, json};
use sts::StsGenerator;
use url::Url;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "0123456789ABCDEF";
const TOKEN: &str = "12345678901234567890";

fn request(kind: TokenKind) -> TokenRequest {
    TokenRequest {
        meter_id: MeterId(7),
        external_reference: "47003333623".into(),
        protocol: CommunicationProtocol::CalinLorawan,
        decoder_key: Some(KEY.into()),
        kind,
        issued_at: Utc.with_ymd_and_hms(2025, 3, 1, 12, 34, 0).unwrap(),
    }
}

fn generator(server: &MockServer) -> StsGenerator {
    StsGenerator::new(
        Url::parse(&server.uri()).unwrap(),
        None,
        reqwest::Client::new(),
    )
}

fn ok_token(token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "token": token }))
}

#[tokio::test]
async fn top_up_sends_kwh_rounded_up() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_partial_json(json!({
            "decoderKey": KEY,
            "issueDate": "2025-03-01T12:34:00.000Z",
            "type": "TOP_UP",
            "kwh": 1.3,
        })))
        .respond_with(ok_token(TOKEN))
        .expect(1)
        .mount(&server)
        .await;
    let token = generator(&server)
        .generate(request(TokenKind::TopUp { energy_wh: 1234 }))
        .await
        .unwrap();
    assert_eq!(token.expose(), TOKEN);
    let body: Value = server.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap();
    assert!(body.get("powerLimit").is_none(), "{body}");
}

#[tokio::test]
async fn set_power_limit_sends_watts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_partial_json(json!({
            "decoderKey": KEY,
            "type": "SET_POWER_LIMIT",
            "powerLimit": 250,
        })))
        .respond_with(ok_token(TOKEN))
        .expect(1)
        .mount(&server)
        .await;
    generator(&server)
        .generate(request(TokenKind::SetPowerLimit { watts: 250 }))
        .await
        .unwrap();
    let body: Value = server.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap();
    assert!(body.get("kwh").is_none(), "{body}");
}

#[tokio::test]
async fn clear_tamper_sends_no_amount_and_the_api_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/sts/token"))
        .and(header("X-API-Key", "s3cret"))
        .and(body_partial_json(json!({
            "decoderKey": KEY,
            "type": "CLEAR_TAMPER",
        })))
        .respond_with(ok_token(TOKEN))
        .expect(1)
        .mount(&server)
        .await;
    let generator = StsGenerator::new(
        Url::parse(&format!("{}/sts", server.uri())).unwrap(),
        Some(SecretString::from("s3cret")),
        reqwest::Client::new(),
    );
    generator
        .generate(request(TokenKind::ClearTamper))
        .await
        .unwrap();
    let body: Value = server.received_requests().await.unwrap()[0]
        .body_json()
        .unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(keys, ["decoderKey", "issueDate", "randomNumber", "type"]);
    assert!(!format!("{generator:?}").contains("s3cret"));
}

#[tokio::test]
async fn spaces_in_the_answer_are_stripped() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok_token("1234 5678 9012 3456 7890"))
        .mount(&server)
        .await;
    let token = generator(&server)
        .generate(request(TokenKind::ClearCredit))
        .await
        .unwrap();
    assert_eq!(token.expose(), TOKEN);
}

#[tokio::test]
async fn malformed_answers_are_errors() {
    let answers = [
        ResponseTemplate::new(200).set_body_json(json!({ "token": "1234567890123456789" })),
        ResponseTemplate::new(200).set_body_json(json!({ "token": "123456789012345678901" })),
        ResponseTemplate::new(200).set_body_json(json!({ "token": "1234567890123456789X" })),
        ResponseTemplate::new(200).set_body_json(json!({ "token": 12345678901234567890_u64 })),
        ResponseTemplate::new(200).set_body_json(json!({ "tokens": TOKEN })),
        ResponseTemplate::new(200).set_body_string("not json"),
    ];
    for answer in answers {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(answer)
            .expect(1)
            .mount(&server)
            .await;
        let err = generator(&server)
            .generate(request(TokenKind::ClearCredit))
            .await
            .unwrap_err();
        assert!(matches!(err, DomainError::Internal(_)), "{err:?}");
    }
}

#[tokio::test]
async fn server_errors_and_throttling_are_unavailable_and_not_retried() {
    for status in [500, 503, 429] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status))
            .expect(1)
            .mount(&server)
            .await;
        let err = generator(&server)
            .generate(request(TokenKind::TopUp { energy_wh: 1000 }))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DomainError::Unavailable(m) if m.starts_with("STS generator: ")),
            "{status}: {err:?}"
        );
    }
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok_token(TOKEN).set_delay(Duration::from_secs(2)))
        .expect(1)
        .mount(&server)
        .await;
    let err = generator(&server)
        .with_timeout(Duration::from_millis(200))
        .generate(request(TokenKind::ClearCredit))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DomainError::Unavailable(m) if m.contains("timed out")),
        "{err:?}"
    );

    // Nothing listens on a port that was just released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = StsGenerator::new(
        Url::parse(&format!("http://{closed}")).unwrap(),
        None,
        reqwest::Client::new(),
    )
    .generate(request(TokenKind::ClearCredit))
    .await
    .unwrap_err();
    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_refusal_is_a_validation_error_with_the_services_message() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(json!({ "message": "decoder key missing" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = generator(&server)
        .generate(request(TokenKind::ClearTamper))
        .await
        .unwrap_err();
    let DomainError::Validation(errors) = err else {
        panic!("{err:?}")
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "token");
    assert!(
        errors[0].message.contains("decoder key missing"),
        "{}",
        errors[0].message
    );
}

#[tokio::test]
async fn random_numbers_stay_within_0_to_11() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok_token(TOKEN))
        .mount(&server)
        .await;
    let generator = generator(&server);
    for _ in 0..200 {
        generator
            .generate(request(TokenKind::ClearCredit))
            .await
            .unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in server.received_requests().await.unwrap() {
        let body: Value = r.body_json().unwrap();
        let n = body["randomNumber"].as_u64().expect("an integer");
        assert!(n <= 11, "{n}");
        seen.insert(n);
    }
    // 200 draws from 12 values: missing both ends (or being constant) means a broken range.
    assert!(seen.contains(&0) && seen.contains(&11), "{seen:?}");
}

#[tokio::test]
async fn missing_decoder_key_is_refused_without_a_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok_token(TOKEN))
        .expect(0)
        .mount(&server)
        .await;
    let generator = generator(&server);
    for key in [None, Some(String::new()), Some("  ".to_owned())] {
        let err = generator
            .generate(TokenRequest {
                decoder_key: key,
                ..request(TokenKind::TopUp { energy_wh: 1000 })
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DomainError::Validation(e) if e[0].field == "decoder_key"),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn other_protocols_and_bad_amounts_are_refused_without_a_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ok_token(TOKEN))
        .expect(0)
        .mount(&server)
        .await;
    let generator = generator(&server);
    for protocol in [
        CommunicationProtocol::CalinV1,
        CommunicationProtocol::CalinV2,
    ] {
        let err = generator
            .generate(TokenRequest {
                protocol,
                ..request(TokenKind::ClearTamper)
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DomainError::Unavailable(m) if m == "no STS generator for this meter's protocol"),
            "{err:?}"
        );
    }
    for (kind, field) in [
        (TokenKind::TopUp { energy_wh: 0 }, "energy_wh"),
        (TokenKind::SetPowerLimit { watts: -1 }, "power_limit_w"),
    ] {
        let err = generator.generate(request(kind)).await.unwrap_err();
        assert!(
            matches!(&err, DomainError::Validation(e) if e[0].field == field),
            "{err:?}"
        );
    }
}

#[test]
fn calls_are_counted_by_outcome() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .and(body_partial_json(json!({ "type": "CLEAR_CREDIT" })))
                .respond_with(ok_token(TOKEN))
                .mount(&server)
                .await;
            Mock::given(method("POST"))
                .and(body_partial_json(json!({ "type": "CLEAR_TAMPER" })))
                .respond_with(ResponseTemplate::new(503))
                .mount(&server)
                .await;
            Mock::given(method("POST"))
                .and(body_partial_json(json!({ "type": "TOP_UP" })))
                .respond_with(ResponseTemplate::new(422))
                .mount(&server)
                .await;
            let g = generator(&server);
            g.generate(request(TokenKind::ClearCredit)).await.unwrap();
            g.generate(request(TokenKind::ClearTamper))
                .await
                .unwrap_err();
            g.generate(request(TokenKind::TopUp { energy_wh: 500 }))
                .await
                .unwrap_err();
        });
    });
    let mut counts = std::collections::BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        assert_eq!(key.name(), "tiamat_integration_calls_total");
        let label = |n: &str| {
            key.labels()
                .find(|l| l.key() == n)
                .map(|l| l.value().to_owned())
                .unwrap()
        };
        assert_eq!(label("vendor"), "sts");
        assert_eq!(label("operation"), "generate");
        let DebugValue::Counter(n) = value else {
            panic!("not a counter")
        };
        counts.insert(label("outcome"), n);
    }
    let expected: std::collections::BTreeMap<String, u64> = [
        ("error".to_owned(), 1),
        ("ok".to_owned(), 1),
        ("unavailable".to_owned(), 1),
    ]
    .into();
    assert_eq!(counts, expected);
}
