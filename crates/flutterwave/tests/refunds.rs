//! Refunds through `FlutterwaveGateway` against a wiremock Flutterwave: sending one (exact major
//! units), reading it back by id and by the payment's refund list, and the error mapping.

use std::time::Duration;

use flutterwave::FlutterwaveGateway;
use kernel::Currency;
use payments::{GatewayError, Money, PaymentGateway, ProviderCredentials, ProviderStatus};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "FLWSECK_TEST-refund-secret";

fn gateway(server: &MockServer) -> FlutterwaveGateway {
    FlutterwaveGateway::new(
        Url::parse(&server.uri()).unwrap(),
        Some(ProviderCredentials {
            public_key: None,
            secret_key: SecretString::from(KEY),
            webhook_hash: None,
        }),
        reqwest::Client::new(),
    )
}

fn ngn() -> Currency {
    Currency::parse("NGN").unwrap()
}

fn success(data: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"status": "success", "message": "ok", "data": data}))
}

#[tokio::test]
async fn a_refund_sends_the_exact_major_amount_and_answers_the_refund() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/transactions/908790/refund"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_json(
            json!({"amount": 150.5, "comments": "Refund of a reversed order"}),
        ))
        .respond_with(success(json!({
            "id": 75923, "tx_id": 908790, "flw_ref": "URF_1", "amount_refunded": 150.5,
            "status": "completed", "destination": "payment_source"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let r = gateway(&server)
        .refund(None, "908790", Money::new(15050, ngn()))
        .await
        .unwrap();
    assert_eq!(r.id, "75923");
    assert_eq!(r.status, ProviderStatus::Successful);
    assert_eq!(r.amount, Some(Money::new(15050, ngn())));
    assert_eq!(r.failure_reason, None);
}

#[tokio::test]
async fn refusals_are_refused_and_outages_and_timeouts_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/transactions/1/refund"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": "error", "message": "Refund amount exceeds transaction amount", "data": null
        })))
        .mount(&server)
        .await;
    for (id, status) in [("2", 500), ("3", 503), ("4", 429)] {
        Mock::given(method("POST"))
            .and(path(format!("/v3/transactions/{id}/refund")))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/v3/transactions/5/refund"))
        .respond_with(
            success(json!({"id": 1, "status": "completed"})).set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let g = gateway(&server).with_timeout(Duration::from_millis(300));
    let amount = Money::new(100, ngn());
    match g.refund(None, "1", amount).await {
        Err(GatewayError::Refused(m)) => {
            assert!(m.contains("exceeds transaction amount"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    for id in ["2", "3", "5"] {
        assert!(
            matches!(
                g.refund(None, id, amount).await,
                Err(GatewayError::Unavailable(_))
            ),
            "{id}"
        );
    }
    assert!(matches!(
        g.refund(None, "4", amount).await,
        Err(GatewayError::NotSent(_))
    ));
    // A path-changing id is never sent.
    assert_eq!(
        g.refund(None, "1/../../x", amount).await,
        Err(GatewayError::NotFound)
    );
}

#[tokio::test]
async fn refunds_read_back_by_id_map_the_status() {
    let server = MockServer::start().await;
    for (id, status) in [
        ("11", "completed-bank-transfer"),
        ("12", "pending"),
        ("13", "failed"),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/v3/refunds/{id}")))
            .respond_with(success(
                json!({"id": id.parse::<i64>().unwrap(), "amount_refunded": 10, "status": status, "transaction_id": 5}),
            ))
            .mount(&server)
            .await;
    }
    let g = gateway(&server);
    let done = g.refund_status(None, "11", ngn()).await.unwrap();
    assert_eq!(done.status, ProviderStatus::Successful);
    assert_eq!(done.amount, Some(Money::new(1000, ngn())));
    assert_eq!(
        g.refund_status(None, "12", ngn()).await.unwrap().status,
        ProviderStatus::Pending
    );
    let failed = g.refund_status(None, "13", ngn()).await.unwrap();
    assert_eq!(failed.status, ProviderStatus::Failed);
    assert!(failed.failure_reason.unwrap().contains("failed"));
}

#[tokio::test]
async fn the_refunds_of_a_payment_are_listed_and_an_unfiltered_list_is_not_trusted() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/refunds"))
        .and(query_param("id", "908790"))
        .respond_with(success(json!([
            {"id": 75923, "amount_refunded": 150.5, "status": "completed", "transaction_id": 908790}
        ])))
        .mount(&server)
        .await;
    // Another payment's refund in the answer: the filter was not applied, so the list says
    // nothing about whether this payment was refunded.
    Mock::given(method("GET"))
        .and(path("/v3/refunds"))
        .and(query_param("id", "777"))
        .respond_with(success(json!([
            {"id": 1, "amount_refunded": 150.5, "status": "completed", "transaction_id": 4}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/refunds"))
        .and(query_param("id", "555"))
        .respond_with(success(json!([])))
        .mount(&server)
        .await;
    let g = gateway(&server);
    let found = g.refunds_of(None, "908790", ngn()).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, "75923");
    assert_eq!(found[0].amount, Some(Money::new(15050, ngn())));
    assert!(g.refunds_of(None, "555", ngn()).await.unwrap().is_empty());
    assert!(matches!(
        g.refunds_of(None, "777", ngn()).await,
        Err(GatewayError::Unavailable(_))
    ));
}
