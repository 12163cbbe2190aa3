//! The ledger's invariants under load and races: concurrent debits never overdraw, a payment is
//! credited once however many settlements race, `tiamat ledger verify` proves the books or names
//! the offenders, and entries cannot be rewritten.

use actix_web::http::StatusCode;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::{Currency, TenantScope, WalletId};
use orgs::AuditDraft;
use payments::{
    Money, NewPaymentOrder, PaymentOrderStore, PaymentSettlement, ProviderStatus, Settlement,
    VerifiedPayment,
};
use serde_json::{Value, json};
use tiamat_tests::{As, TestApp};

/// An organization with a grid, its finance member, an agent (and its token), a customer with a
/// connection, and their wallet ids.
pub struct Books {
    pub org: i64,
    pub grid: i64,
    pub finance: As,
    pub manager: As,
    pub agent_token: As,
    pub customer_token: As,
    pub connection: i64,
    pub org_wallet: i64,
    pub agent_wallet: i64,
    pub customer_wallet: i64,
    pub connection_wallet: i64,
}

pub async fn wallet_of(app: &TestApp, owner_type: &str, owner_id: i64) -> i64 {
    let r = app
        .get(
            &format!("/api/v1/wallets?owner_type={owner_type}&owner_id={owner_id}"),
            &app.root,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let items = r.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{owner_type} {owner_id}: {items:?}");
    items[0]["id"].as_i64().expect("id")
}

pub async fn books(app: &TestApp, name: &str) -> Books {
    let org = app.organization(name).await;
    let grid = app.grid(org, &format!("{name} grid")).await;
    let (_, finance) = app.member(org, "FINANCE").await;
    let (_, manager) = app.member(org, "MANAGER").await;
    let phone = |n: i64| format!("+23480{:09}", org * 1000 + n);
    let r = app
        .post(
            "/api/v1/agents",
            &manager,
            json!({"grid_id": grid, "full_name": "Vendor", "phone": phone(1)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let agent = r.body["id"].as_i64().unwrap();
    let agent_token = As::Token(tiamat_tests::token(
        r.body["auth_user_id"].as_str().unwrap(),
        3600,
    ));
    let r = app
        .post(
            "/api/v1/customers",
            &manager,
            json!({"grid_id": grid, "full_name": "Customer", "phone": phone(2)}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let customer = r.body["id"].as_i64().unwrap();
    let customer_token = As::Token(tiamat_tests::token(
        r.body["auth_user_id"].as_str().unwrap(),
        3600,
    ));
    let r = app
        .post(
            "/api/v1/connections",
            &manager,
            json!({"customer_id": customer, "requested_meters": [], "is_residential": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let connection = r.body["id"].as_i64().unwrap();
    Books {
        org,
        grid,
        org_wallet: wallet_of(app, "ORGANIZATION", org).await,
        agent_wallet: wallet_of(app, "AGENT", agent).await,
        customer_wallet: wallet_of(app, "CUSTOMER", customer).await,
        connection_wallet: wallet_of(app, "CONNECTION", connection).await,
        finance,
        manager,
        agent_token,
        customer_token,
        connection,
    }
}

/// A meter on the books' grid (registered and assigned to the connection) and its wallet.
pub async fn meter_wallet(app: &TestApp, b: &Books, serial: &str) -> (i64, i64) {
    let r = app
        .post(
            "/api/v1/meters",
            &b.manager,
            json!({"external_system": "CALIN", "external_reference": serial}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let meter = r.body["id"].as_i64().unwrap();
    let r = app
        .post(
            &format!("/api/v1/meters/{meter}/assign"),
            &b.manager,
            json!({"connection_id": b.connection}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    (meter, wallet_of(app, "METER", meter).await)
}

/// Money from outside (cash) into the organization's wallet, as the platform SUPERADMIN.
pub async fn deposit(app: &TestApp, wallet: i64, amount: i64) -> Value {
    let r = app
        .post(
            "/api/v1/orders",
            &app.root,
            json!({"sender_system": "CASH", "receiver_wallet_id": wallet, "amount": amount, "currency": "NGN"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"], "COMPLETED", "{:?}", r.body);
    r.body
}

pub async fn transfer(
    app: &TestApp,
    who: &As,
    from: i64,
    to: i64,
    amount: i64,
) -> (StatusCode, Value) {
    let r = app
        .post(
            "/api/v1/orders",
            who,
            json!({"sender_wallet_id": from, "receiver_wallet_id": to, "amount": amount, "currency": "NGN"}),
        )
        .await;
    (r.status, r.body)
}

pub async fn balance(app: &TestApp, wallet: i64) -> i64 {
    let r = app
        .get(&format!("/api/v1/wallets/{wallet}"), &app.root)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["balance"].as_i64().expect("balance")
}

/// A wallet's statement lines (oldest first), as the platform SUPERADMIN.
pub async fn statement(app: &TestApp, wallet: i64) -> Vec<Value> {
    let r = app
        .get(
            &format!("/api/v1/wallets/{wallet}/statement?limit=500"),
            &app.root,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"].as_array().expect("items").clone()
}

/// The balance of a provider's system wallet in NGN.
pub async fn system_balance(app: &TestApp, provider: &str) -> i64 {
    let w = app
        .app
        .db
        .wallet_of_owner(
            &payments::WalletOwner::System(provider.into()),
            Some(Currency::parse("NGN").unwrap()),
        )
        .await
        .expect("system wallet")
        .expect("opened on demand");
    w.balance.0
}

pub async fn verify(app: &TestApp) -> (bool, String) {
    let mut out = Vec::new();
    let sound = tiamat::ledger_cli::verify(&app.app.db, &mut out)
        .await
        .expect("verify runs");
    (sound, String::from_utf8(out).expect("utf-8"))
}

async fn sql(app: &TestApp, statement: &str) -> Result<usize, diesel::result::Error> {
    let mut conn = AsyncPgConnection::establish(&app.db.url)
        .await
        .expect("connect");
    diesel::sql_query(statement).execute(&mut conn).await
}

#[actix_web::test]
async fn fifty_concurrent_debits_never_overdraw_and_balances_equal_entries() {
    let app = TestApp::start().await;
    let b = books(&app, "Debits").await;
    let (_, meter) = meter_wallet(&app, &b, "DEBIT-1").await;
    deposit(&app, b.org_wallet, 3_000).await;
    let (s, _) = transfer(&app, &b.finance, b.org_wallet, b.agent_wallet, 3_000).await;
    assert_eq!(s, StatusCode::CREATED);

    // 50 top-ups of 100 race for 3,000: exactly 30 can be paid.
    let calls = (0..50).map(|_| transfer(&app, &b.agent_token, b.agent_wallet, meter, 100));
    let results = futures_util::future::join_all(calls).await;
    let mut completed = 0;
    let mut failed = 0;
    for (status, body) in &results {
        assert_eq!(*status, StatusCode::CREATED, "{body:?}");
        match body["status"].as_str() {
            Some("COMPLETED") => completed += 1,
            Some("FAILED") => {
                failed += 1;
                assert!(
                    body["failure_reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("insufficient funds")),
                    "{body:?}"
                );
            }
            other => panic!("unexpected status {other:?}"),
        }
    }
    assert_eq!((completed, failed), (30, 20));
    assert_eq!(balance(&app, b.agent_wallet).await, 0);
    assert_eq!(balance(&app, meter).await, 3_000);

    // The statement's entries sum to the balance, and their running balances never dip below 0.
    let st = app
        .get(
            &format!("/api/v1/wallets/{}/statement?limit=500", b.agent_wallet),
            &b.finance,
        )
        .await;
    let lines = st.body["items"].as_array().unwrap();
    assert_eq!(
        lines.len(),
        31,
        "one credit and 30 debits; failed orders post nothing"
    );
    let sum: i64 = lines.iter().map(|l| l["amount"].as_i64().unwrap()).sum();
    assert_eq!(sum, 0);
    assert!(
        lines
            .iter()
            .all(|l| l["balance_after"].as_i64().unwrap() >= 0)
    );
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}

#[actix_web::test]
async fn ten_concurrent_settlements_of_one_payment_credit_it_once() {
    let app = TestApp::start().await;
    let b = books(&app, "Settle").await;
    let (_, meter) = meter_wallet(&app, &b, "SETTLE-1").await;
    let db = app.app.db.clone();
    let ngn = Currency::parse("NGN").unwrap();
    let order = db
        .create_payment_order(
            TenantScope::All,
            NewPaymentOrder {
                receiver: WalletId(meter),
                amount: Money::new(5_000, ngn),
                provider: "FLUTTERWAVE".into(),
                payment_channel: Some("NIFFLER".into()),
                payment_method: None,
                author_account_id: None,
                author_api_key_id: None,
                idempotency_key: None,
            },
            AuditDraft::system("order.payment_initialised", json!({})),
        )
        .await
        .expect("payment order");
    assert_eq!(order.status, payments::OrderStatus::Initialised);
    let reference = order.external_reference.clone().expect("reference");
    assert_eq!(reference.len(), 36, "an unguessable UUID reference");
    let paid = VerifiedPayment {
        provider_id: "fw-1".into(),
        reference: reference.clone(),
        status: ProviderStatus::Successful,
        charged: Money::new(5_000, ngn),
        payment_type: Some("card".into()),
    };
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let db = db.clone();
            let p = paid.clone();
            tokio::spawn(async move { db.settle(p).await })
        })
        .collect();
    let mut credited = 0;
    let mut already = 0;
    for t in tasks {
        match t.await.expect("task").expect("settle") {
            Settlement::Credited(id) => {
                assert_eq!(id, order.id);
                credited += 1;
            }
            Settlement::AlreadyCredited(_) => already += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((credited, already), (1, 9));
    assert_eq!(balance(&app, meter).await, 5_000);
    let o = app
        .get(&format!("/api/v1/orders/{}", order.id), &b.finance)
        .await;
    assert_eq!(o.body["status"], "COMPLETED");
    assert_eq!(o.body["provider_transaction_id"], "fw-1");
    assert_eq!(o.body["order_type"], "ENERGY_TOPUP");

    // A payment that does not match its order fails the order and moves nothing.
    let other = db
        .create_payment_order(
            TenantScope::One(kernel::OrganizationId(b.org)),
            NewPaymentOrder {
                receiver: WalletId(meter),
                amount: Money::new(2_000, ngn),
                provider: "FLUTTERWAVE".into(),
                payment_channel: None,
                payment_method: None,
                author_account_id: None,
                author_api_key_id: None,
                idempotency_key: None,
            },
            AuditDraft::system("order.payment_initialised", json!({})),
        )
        .await
        .expect("payment order");
    let short = VerifiedPayment {
        provider_id: "fw-2".into(),
        reference: other.external_reference.clone().unwrap(),
        status: ProviderStatus::Successful,
        charged: Money::new(1_999, ngn),
        payment_type: None,
    };
    assert_eq!(
        db.settle(short.clone()).await.unwrap(),
        Settlement::Mismatch(other.id)
    );
    let usd = VerifiedPayment {
        charged: Money::new(2_000, Currency::parse("USD").unwrap()),
        ..short
    };
    assert!(
        matches!(db.settle(usd).await, Err(kernel::DomainError::Conflict(_))),
        "a FAILED order is not credited later"
    );
    assert_eq!(balance(&app, meter).await, 5_000);
    let o = app
        .get(&format!("/api/v1/orders/{}", other.id), &b.finance)
        .await;
    assert_eq!(o.body["status"], "FAILED");
    assert!(
        o.body["failure_reason"]
            .as_str()
            .unwrap()
            .contains("does not match")
    );

    // Cancel only from INITIALISED; the sweeper times out the abandoned ones.
    let mk = || NewPaymentOrder {
        receiver: WalletId(meter),
        amount: Money::new(700, ngn),
        provider: "FLUTTERWAVE".into(),
        payment_channel: None,
        payment_method: None,
        author_account_id: None,
        author_api_key_id: None,
        idempotency_key: None,
    };
    let audit = || AuditDraft::system("order.cancelled", json!({}));
    let c = db
        .create_payment_order(TenantScope::All, mk(), audit())
        .await
        .unwrap();
    let r = c.external_reference.clone().unwrap();
    let cancelled = db
        .cancel_payment_order("FLUTTERWAVE", &r, audit())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cancelled.status, payments::OrderStatus::Cancelled);
    assert!(matches!(
        db.cancel_payment_order("FLUTTERWAVE", &r, audit()).await,
        Err(kernel::DomainError::Conflict(_))
    ));
    assert!(
        db.cancel_payment_order("OTHER", &r, audit())
            .await
            .unwrap()
            .is_none()
    );
    let stale = db
        .create_payment_order(TenantScope::All, mk(), audit())
        .await
        .unwrap();
    let swept = db
        .time_out_payment_orders(chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(swept, vec![stale.id]);
    // A late confirmation of a timed-out payment is still credited.
    let late = VerifiedPayment {
        provider_id: "fw-3".into(),
        reference: stale.external_reference.clone().unwrap(),
        status: ProviderStatus::Successful,
        charged: Money::new(700, ngn),
        payment_type: None,
    };
    assert_eq!(
        db.settle(late).await.unwrap(),
        Settlement::Credited(stale.id)
    );
    assert_eq!(balance(&app, meter).await, 5_700);
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
}

#[actix_web::test]
async fn ledger_verify_names_drifted_wallets_and_entries_are_append_only() {
    let app = TestApp::start().await;
    let b = books(&app, "Verify").await;
    deposit(&app, b.org_wallet, 1_000).await;
    let (s, _) = transfer(&app, &b.finance, b.org_wallet, b.agent_wallet, 400).await;
    assert_eq!(s, StatusCode::CREATED);
    let (sound, report) = verify(&app).await;
    assert!(sound, "{report}");
    assert!(
        report.contains("every balance equals its entries"),
        "{report}"
    );

    // Entries and transactions cannot be changed or removed.
    for statement in [
        "UPDATE ledger_entries SET amount_minor = amount_minor + 1",
        "DELETE FROM ledger_entries",
        "DELETE FROM ledger_transactions",
    ] {
        assert!(
            sql(&app, statement).await.is_err(),
            "{statement} was allowed"
        );
    }
    // A posting that does not balance is refused at commit (here for a FAILED order, which has
    // no posting).
    let (s, failed) = transfer(
        &app,
        &b.finance,
        b.agent_wallet,
        b.connection_wallet,
        10_000,
    )
    .await;
    assert_eq!(
        (s, failed["status"].as_str()),
        (StatusCode::CREATED, Some("FAILED"))
    );
    let one_sided = || {
        format!(
            "WITH t AS (INSERT INTO ledger_transactions (order_id, kind) VALUES ({}, 'TRANSFER') RETURNING id)
             INSERT INTO ledger_entries (transaction_id, wallet_id, currency, amount_minor, balance_after_minor)
             SELECT id, {}, 'NGN', 5, 405 FROM t",
            failed["id"], b.agent_wallet
        )
    };
    assert!(
        sql(&app, &one_sided()).await.is_err(),
        "an unbalanced posting was committed"
    );
    // An ordinary wallet cannot be set below zero.
    assert!(
        sql(
            &app,
            &format!(
                "UPDATE wallets SET balance_minor = -1 WHERE id = {}",
                b.agent_wallet
            )
        )
        .await
        .is_err()
    );

    // A cache that drifted from its entries is named.
    sql(
        &app,
        &format!(
            "UPDATE wallets SET balance_minor = balance_minor + 7 WHERE id = {}",
            b.agent_wallet
        ),
    )
    .await
    .expect("drift");
    let (sound, report) = verify(&app).await;
    assert!(!sound);
    assert!(
        report.contains(&format!(
            "{{\"problem\":\"balance_drift\",\"wallet_id\":{},\"cached\":407,\"entries_sum\":400}}",
            b.agent_wallet
        )),
        "{report}"
    );
    assert!(report.contains("1 problems"), "{report}");
}
