//! `FlutterwaveGateway` against a wiremock Flutterwave on loopback.

use std::sync::Arc;
use std::time::Duration;

use flutterwave::FlutterwaveGateway;
use kernel::{Currency, OrganizationId};
use payments::credentials::MockCredentialSource;
use payments::{
    GatewayError, HostedPaymentRequest, Money, PaymentGateway, ProviderCredentials, ProviderStatus,
    TransferRequest,
};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PLATFORM_KEY: &str = "FLWSECK_TEST-platform-secret";
const ORG_KEY: &str = "FLWSECK_TEST-organization-secret";

fn creds(secret: &str) -> ProviderCredentials {
    ProviderCredentials {
        public_key: Some("FLWPUBK_TEST-x".into()),
        secret_key: SecretString::from(secret),
        webhook_hash: None,
    }
}

fn gateway(server: &MockServer) -> FlutterwaveGateway {
    FlutterwaveGateway::new(
        Url::parse(&server.uri()).unwrap(),
        Some(creds(PLATFORM_KEY)),
        reqwest::Client::new(),
    )
}

fn ngn(minor: i64) -> Money {
    Money::new(minor, Currency::parse("NGN").unwrap())
}

fn success(data: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"status": "success", "message": "ok", "data": data}))
}

fn payment_request(minor: i64, currency: &str) -> HostedPaymentRequest {
    HostedPaymentRequest {
        reference: "tiamat-7d1c".into(),
        amount: Money::new(minor, Currency::parse(currency).unwrap()),
        redirect_url: "https://pay.example/return".into(),
        customer_email: Some("payer@example.com".into()),
        customer_name: Some("Ada Payer".into()),
        customer_phone: None,
        title: "Meter 47003333623".into(),
    }
}

#[tokio::test]
async fn initialise_sends_major_units_and_answers_the_link() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/payments"))
        .and(header(
            "authorization",
            format!("Bearer {PLATFORM_KEY}").as_str(),
        ))
        .and(body_json(json!({
            "tx_ref": "tiamat-7d1c",
            "amount": "1500.50",
            "currency": "NGN",
            "redirect_url": "https://pay.example/return",
            "customer": {"email": "payer@example.com", "name": "Ada Payer"},
            "customizations": {"title": "Meter 47003333623"},
        })))
        .respond_with(success(
            json!({"link": "https://checkout.flutterwave.com/v3/hosted/pay/abc"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let link = gateway(&server)
        .initialise(None, payment_request(150050, "NGN"))
        .await
        .unwrap();
    assert_eq!(
        link.link,
        "https://checkout.flutterwave.com/v3/hosted/pay/abc"
    );
}

#[tokio::test]
async fn initialise_refuses_unknown_currencies_and_non_positive_amounts_without_calling() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(success(json!({"link": "x"})))
        .expect(0)
        .mount(&server)
        .await;
    let g = gateway(&server);
    for (minor, currency) in [(100, "KES"), (0, "NGN"), (-100, "USD")] {
        let err = g
            .initialise(None, payment_request(minor, currency))
            .await
            .unwrap_err();
        assert!(
            matches!(err, GatewayError::Refused(_)),
            "{minor} {currency}: {err:?}"
        );
    }
}

fn transaction(id: u64, tx_ref: &str, amount: &str, currency: &str, status: &str) -> String {
    // Built as text so the amount keeps exactly the digits a test gives it.
    format!(
        r#"{{"status":"success","message":"Transaction fetched successfully","data":{{"id":{id},"tx_ref":"{tx_ref}","flw_ref":"FLW-1","amount":{amount},"charged_amount":{amount},"app_fee":1.4,"currency":"{currency}","status":"{status}","payment_type":"card","customer":{{"id":1,"email":"a@b.c"}}}}}}"#
    )
}

fn raw(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "application/json")
}

#[tokio::test]
async fn verify_by_id_maps_status_amount_and_currency_exactly() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/285959875/verify"))
        .and(header(
            "authorization",
            format!("Bearer {PLATFORM_KEY}").as_str(),
        ))
        .respond_with(raw(transaction(
            285959875,
            "ref-1",
            "1500.5",
            "NGN",
            "successful",
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/7/verify"))
        .respond_with(raw(transaction(7, "ref-2", "0.29", "USD", "failed")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/8/verify"))
        .respond_with(raw(transaction(8, "ref-3", "\"100\"", "EUR", "pending")))
        .mount(&server)
        .await;
    let g = gateway(&server);
    let p = g.verify_by_id(None, "285959875").await.unwrap();
    assert_eq!(p.provider_id, "285959875");
    assert_eq!(p.reference, "ref-1");
    assert_eq!(p.status, ProviderStatus::Successful);
    assert_eq!(p.charged, ngn(150050));
    assert_eq!(p.payment_type.as_deref(), Some("card"));

    let p = g.verify_by_id(None, "7").await.unwrap();
    assert_eq!(p.status, ProviderStatus::Failed);
    assert_eq!(p.charged, Money::new(29, Currency::parse("USD").unwrap()));
    let p = g.verify_by_id(None, "8").await.unwrap();
    assert_eq!(p.status, ProviderStatus::Pending);
    assert_eq!(
        p.charged,
        Money::new(10000, Currency::parse("EUR").unwrap())
    );
}

#[tokio::test]
async fn verify_reports_unknown_currencies_as_a_zero_amount_and_refuses_sub_minor_amounts() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/1/verify"))
        .respond_with(raw(transaction(1, "r", "100", "KES", "successful")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/2/verify"))
        .respond_with(raw(transaction(2, "r", "100.005", "NGN", "successful")))
        .mount(&server)
        .await;
    let g = gateway(&server);
    let p = g.verify_by_id(None, "1").await.unwrap();
    assert_eq!(p.charged, Money::new(0, Currency::parse("KES").unwrap()));
    assert!(matches!(
        g.verify_by_id(None, "2").await,
        Err(GatewayError::Refused(_))
    ));
    // An id that would change the path is never sent.
    assert!(matches!(
        g.verify_by_id(None, "1/../../x").await,
        Err(GatewayError::NotFound)
    ));
}

#[tokio::test]
async fn verify_by_reference_queries_tx_ref_and_checks_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/verify_by_reference"))
        .and(query_param("tx_ref", "ref-1"))
        .respond_with(raw(transaction(5, "ref-1", "20", "NGN", "successful")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/verify_by_reference"))
        .and(query_param("tx_ref", "ref-other"))
        .respond_with(raw(transaction(6, "ref-1", "20", "NGN", "successful")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/verify_by_reference"))
        .and(query_param("tx_ref", "never-paid"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"status": "error", "message": "No transaction was found for this id", "data": null}),
        ))
        .mount(&server)
        .await;
    let g = gateway(&server);
    let p = g.verify_by_reference(None, "ref-1").await.unwrap();
    assert_eq!((p.provider_id.as_str(), p.charged), ("5", ngn(2000)));
    assert!(matches!(
        g.verify_by_reference(None, "ref-other").await,
        Err(GatewayError::Refused(_))
    ));
    assert_eq!(
        g.verify_by_reference(None, "never-paid").await,
        Err(GatewayError::NotFound)
    );
}

#[tokio::test]
async fn errors_map_to_unavailable_not_sent_refused_and_not_found() {
    let server = MockServer::start().await;
    for (id, status) in [
        ("500", 500),
        ("503", 503),
        ("429", 429),
        ("401", 401),
        ("404", 404),
        ("400", 400),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/v3/transactions/{id}/verify")))
            .respond_with(ResponseTemplate::new(status).set_body_json(
                json!({"status": "error", "message": format!("bad {PLATFORM_KEY}"), "data": null}),
            ))
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/v3/transactions/77/verify"))
        .respond_with(success(json!(null)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/88/verify"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>gateway</html>"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/99/verify"))
        .respond_with(success(json!({})).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let g = gateway(&server).with_timeout(Duration::from_millis(300));
    for id in ["500", "503", "88", "99"] {
        assert!(
            matches!(
                g.verify_by_id(None, id).await,
                Err(GatewayError::Unavailable(_))
            ),
            "{id}"
        );
    }
    // Rate limited: turned away before anything was done.
    assert!(matches!(
        g.verify_by_id(None, "429").await,
        Err(GatewayError::NotSent(_))
    ));
    for id in ["404", "77"] {
        assert_eq!(
            g.verify_by_id(None, id).await,
            Err(GatewayError::NotFound),
            "{id}"
        );
    }
    for id in ["401", "400"] {
        match g.verify_by_id(None, id).await {
            Err(GatewayError::Refused(m)) => {
                assert!(!m.contains(PLATFORM_KEY), "secret leaked: {m}")
            }
            other => panic!("{id}: {other:?}"),
        }
    }
    // Nothing listening: no connection, so nothing was sent.
    let closed = FlutterwaveGateway::new(
        Url::parse("http://127.0.0.1:9").unwrap(),
        Some(creds(PLATFORM_KEY)),
        reqwest::Client::new(),
    );
    assert!(matches!(
        closed.verify_by_id(None, "1").await,
        Err(GatewayError::NotSent(_))
    ));
}

#[tokio::test]
async fn transfers_send_exact_major_units_and_map_the_status() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/transfers"))
        .and(header(
            "authorization",
            format!("Bearer {PLATFORM_KEY}").as_str(),
        ))
        .and(body_json(json!({
            "account_bank": "044", "account_number": "0690000040", "amount": 5500.05,
            "currency": "NGN", "debit_currency": "NGN", "narration": "Payout October",
            "reference": "tiamat-payout-45",
        })))
        .respond_with(success(
            json!({"id": 396432, "status": "NEW", "reference": "tiamat-payout-45"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let result = gateway(&server)
        .transfer(
            None,
            TransferRequest {
                reference: "tiamat-payout-45".into(),
                amount: ngn(550005),
                bank_code: "044".into(),
                account_number: "0690000040".into(),
                narration: "Payout October".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(result.provider_id, "396432");
    assert_eq!(result.status, ProviderStatus::Pending);
    // The digits on the wire are exactly the decimal, not a float's rendering.
    let sent =
        String::from_utf8(server.received_requests().await.unwrap()[0].body.clone()).unwrap();
    assert!(sent.contains(r#""amount":5500.05"#), "{sent}");
}

#[tokio::test]
async fn an_organization_with_its_own_account_uses_it_and_others_fall_back_to_the_platform() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/1/verify"))
        .and(header(
            "authorization",
            format!("Bearer {ORG_KEY}").as_str(),
        ))
        .respond_with(raw(transaction(1, "own", "1", "NGN", "successful")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/transactions/1/verify"))
        .and(header(
            "authorization",
            format!("Bearer {PLATFORM_KEY}").as_str(),
        ))
        .respond_with(raw(transaction(1, "platform", "1", "NGN", "successful")))
        .expect(2)
        .mount(&server)
        .await;
    let mut source = MockCredentialSource::new();
    source
        .expect_credentials()
        .returning(|org| Ok((org == OrganizationId(10)).then(|| creds(ORG_KEY))));
    let g = gateway(&server).with_organization_credentials(Arc::new(source));
    assert_eq!(
        g.verify_by_id(Some(OrganizationId(10)), "1")
            .await
            .unwrap()
            .reference,
        "own"
    );
    assert_eq!(
        g.verify_by_id(Some(OrganizationId(11)), "1")
            .await
            .unwrap()
            .reference,
        "platform"
    );
    assert_eq!(
        g.verify_by_id(None, "1").await.unwrap().reference,
        "platform"
    );
}

#[tokio::test]
async fn without_any_account_calls_are_not_sent_and_debug_hides_secrets() {
    let server = MockServer::start().await;
    let g = FlutterwaveGateway::new(
        Url::parse(&server.uri()).unwrap(),
        None,
        reqwest::Client::new(),
    );
    assert!(matches!(
        g.verify_by_id(None, "1").await,
        Err(GatewayError::NotSent(_))
    ));
    assert!(
        server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
    let dbg = format!("{:?} {:?}", gateway(&server), creds(PLATFORM_KEY));
    assert!(!dbg.contains(PLATFORM_KEY), "{dbg}");
}

#[tokio::test]
async fn verify_transfer_reads_status_reference_and_reason() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v3/transfers/396432"))
        .and(header(
            "authorization",
            format!("Bearer {PLATFORM_KEY}").as_str(),
        ))
        .respond_with(success(
            json!({"id": 396432, "reference": "tiamat-payout-45", "status": "FAILED",
            "complete_message": "DISBURSE FAILED: Insufficient funds in customer wallet"}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v3/transfers/396433"))
        .respond_with(success(json!({"id": 396433, "reference": "tiamat-payout-46", "status": "SUCCESSFUL", "complete_message": "Successful"})))
        .mount(&server)
        .await;
    let g = gateway(&server);
    let t = g.verify_transfer(None, "396432").await.unwrap();
    assert_eq!(
        (t.reference.as_str(), t.status),
        ("tiamat-payout-45", ProviderStatus::Failed)
    );
    assert!(t.failure_reason.unwrap().contains("Insufficient funds"));
    let t = g.verify_transfer(None, "396433").await.unwrap();
    assert_eq!(
        (t.status, t.failure_reason),
        (ProviderStatus::Successful, None)
    );
    assert_eq!(
        g.verify_transfer(None, "1").await,
        Err(GatewayError::NotFound)
    );
}

#[tokio::test]
async fn transfers_are_read_back_by_our_reference_and_doubt_is_an_error() {
    let server = MockServer::start().await;
    let list = |reference: &str, data: Value| {
        Mock::given(method("GET"))
            .and(path("/v3/transfers"))
            .and(query_param("reference", reference))
            .respond_with(success(data))
    };
    list(
        "tiamat-payout-1-1",
        json!([{"id": 51, "reference": "tiamat-payout-1-1", "status": "SUCCESSFUL"}]),
    )
    .mount(&server)
    .await;
    list("tiamat-payout-2-1", json!([])).mount(&server).await;
    list("tiamat-payout-3-1", Value::Null).mount(&server).await;
    // The filter ignored: another transfer in the list proves nothing about ours.
    list(
        "tiamat-payout-4-1",
        json!([{"id": 9, "reference": "other", "status": "SUCCESSFUL"}]),
    )
    .mount(&server)
    .await;
    let g = gateway(&server);
    let t = g
        .transfer_by_reference(None, "tiamat-payout-1-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (t.provider_id.as_str(), t.status),
        ("51", ProviderStatus::Successful)
    );
    for none in ["tiamat-payout-2-1", "tiamat-payout-3-1"] {
        assert_eq!(
            g.transfer_by_reference(None, none).await,
            Ok(None),
            "{none}"
        );
    }
    assert!(matches!(
        g.transfer_by_reference(None, "tiamat-payout-4-1").await,
        Err(GatewayError::Unavailable(_))
    ));
}
