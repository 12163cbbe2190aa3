//! External payments through a hosted provider page (Flutterwave): start one into a wallet
//! (authenticated) or a meter (public, by serial), check or cancel it by its unguessable
//! reference, re-verify it with the provider, and credit it through [`PaymentSettlement`].
//!
//! What the provider's API says is the only truth about a payment: a webhook body or a browser's
//! redirect only says *which* payment to verify. Crediting is the settlement's compare-and-set, so
//! any number of racing webhooks, status checks and verifications credit once.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{
    Currency, CustomerId, DomainError, MeterId, OrderId, OrganizationId, Permission, Principal,
    TenantScope, Validator, WalletId,
};
use orgs::AuditDraft;
use serde::Serialize;
use utoipa::ToSchema;

use crate::gateway::{
    GatewayError, HostedPaymentRequest, PaymentGateway, PaymentSettlement, Settlement,
};
use crate::ledger::Wallet;
use crate::orders::Order;
use crate::service::{LedgerStore, NewPaymentOrder, PaymentOrderStore};
use crate::vocab::{Money, OrderStatus, WalletOwner};

/// The provider key of Flutterwave orders and system wallets.
pub const FLUTTERWAVE: &str = "FLUTTERWAVE";
/// Largest amount one hosted payment may ask for, in minor units (a typo guard).
pub const MAX_PAYMENT_MINOR: i64 = 100_000_000_000;

/// A meter the public may pay for, found by its serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayableMeter {
    pub meter_id: MeterId,
    pub organization_id: OrganizationId,
    pub wallet_id: WalletId,
    pub currency: Currency,
    /// Commissioned meters only receive credit: the predecessor refused meters "not successfully
    /// installed (yet)".
    pub commissioned: bool,
    pub grid_name: Option<String>,
}

/// Public look-ups for the meter top-up flow (no tenant: the serial is what the payer knows).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PayableMeters: Send + Sync {
    async fn payable_meter(&self, serial: &str) -> Result<Option<PayableMeter>, DomainError>;
}

/// Who pays and where the provider sends them back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payer {
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub redirect_url: String,
}

/// A payment into a wallet, by an authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletPayment {
    pub wallet_id: WalletId,
    pub amount: Money,
    pub payer: Payer,
    pub idempotency_key: Option<String>,
}

/// A public top-up of a meter by its serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterPayment {
    pub serial: String,
    pub amount_minor: i64,
    /// Must be the meter's currency when given.
    pub currency: Option<Currency>,
    pub payer: Payer,
}

/// A payment page opened for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CheckoutStarted {
    pub order_id: OrderId,
    /// The unguessable reference to check or cancel the payment with.
    pub reference: String,
    /// Send the payer here.
    pub link: String,
    pub amount: i64,
    pub currency: Currency,
    pub status: OrderStatus,
    /// Where the meter is (public flow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grid_name: Option<String>,
}

/// A payment's state as the public (and its payer) may see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PaymentStatus {
    pub reference: String,
    pub status: OrderStatus,
    pub amount: i64,
    pub currency: Currency,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Why it failed (e.g. amount or currency mismatch), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

impl PaymentStatus {
    fn of(order: &Order) -> Self {
        Self {
            reference: order.external_reference.clone().unwrap_or_default(),
            status: order.status,
            amount: order.amount,
            currency: order.currency,
            updated_at: order.updated_at,
            completed_at: order.completed_at,
            failure_reason: order.failure_reason.clone(),
        }
    }
}

/// An authenticated re-verification's answer: the order's status after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct VerificationResult {
    pub order_id: OrderId,
    #[serde(flatten)]
    pub payment: PaymentStatus,
}

#[derive(Clone)]
pub struct CheckoutService {
    gateway: Option<Arc<dyn PaymentGateway>>,
    orders: Arc<dyn PaymentOrderStore>,
    settlement: Arc<dyn PaymentSettlement>,
    ledger: Arc<dyn LedgerStore>,
    meters: Arc<dyn PayableMeters>,
}

fn gateway_error(e: GatewayError) -> DomainError {
    match e {
        GatewayError::Unavailable(m) | GatewayError::NotSent(m) => DomainError::Unavailable(m),
        GatewayError::Refused(m) => {
            DomainError::Conflict(format!("the payment provider refused: {m}"))
        }
        GatewayError::NotFound => DomainError::NotFound("payment"),
    }
}

/// A plausible hosted-payment reference (UUIDs and similar); anything else is not looked up.
fn valid_reference(reference: &str) -> bool {
    (8..=100).contains(&reference.len())
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn validate_payer(v: &mut Validator, payer: &Payer) {
    if let Some(e) = &payer.email {
        v.email("customer_email", e);
    }
    v.optional_text("customer_name", payer.name.as_deref(), 200);
    if let Some(p) = &payer.phone {
        v.phone("customer_phone", p);
    }
    let url_ok = (payer.redirect_url.starts_with("https://")
        || payer.redirect_url.starts_with("http://"))
        && payer.redirect_url.len() <= 2000
        && !payer.redirect_url.contains(char::is_whitespace);
    v.check(url_ok, "redirect_url", "must be an http(s) URL");
}

fn validate_amount(v: &mut Validator, minor: i64) {
    v.check(
        (1..=MAX_PAYMENT_MINOR).contains(&minor),
        "amount",
        "must be a positive number of minor units (at most 100,000,000,000)",
    );
}

/// Who may open a payment page into `wallet`: finance roles and admins (`order_manage`) into any
/// wallet of their organization, a customer into its own wallets (its meters' and connections'
/// too), an agent into its own wallet. Never into a system wallet.
fn authorize_payment_into(who: &Principal, wallet: &Wallet) -> Result<(), DomainError> {
    if wallet.owner.is_system() {
        return Err(DomainError::Forbidden(
            "payments are not made into system wallets".into(),
        ));
    }
    if who.can(Permission::OrderManage) {
        return Ok(());
    }
    if who.can(Permission::PayOwn) {
        let me: Option<CustomerId> = who.customer_id();
        return if me.is_some() && wallet.customer_id == me {
            Ok(())
        } else {
            Err(DomainError::Forbidden(
                "a customer pays only into its own wallets".into(),
            ))
        };
    }
    if who.can(Permission::TopUpSell) {
        let own = matches!(wallet.owner, WalletOwner::Agent(a) if Some(a) == who.agent_id());
        return if own {
            Ok(())
        } else {
            Err(DomainError::Forbidden(
                "an agent pays only into its own wallet".into(),
            ))
        };
    }
    Err(DomainError::Forbidden(format!(
        "role {} may not start payments",
        who.role
    )))
}

impl CheckoutService {
    pub fn new(
        gateway: Option<Arc<dyn PaymentGateway>>,
        orders: Arc<dyn PaymentOrderStore>,
        settlement: Arc<dyn PaymentSettlement>,
        ledger: Arc<dyn LedgerStore>,
        meters: Arc<dyn PayableMeters>,
    ) -> Self {
        Self {
            gateway,
            orders,
            settlement,
            ledger,
            meters,
        }
    }

    fn gateway(&self) -> Result<&Arc<dyn PaymentGateway>, DomainError> {
        self.gateway
            .as_ref()
            .ok_or_else(|| DomainError::Unavailable("no payment provider is configured".into()))
    }

    /// Opens the provider's page for an INITIALISED order; if the provider refuses or is down,
    /// the order is cancelled so no half-started payment lingers.
    async fn open_page(
        &self,
        order: Order,
        payer: &Payer,
        title: String,
        grid_name: Option<String>,
    ) -> Result<CheckoutStarted, DomainError> {
        let gateway = self.gateway()?;
        let reference = order
            .external_reference
            .clone()
            .ok_or_else(|| DomainError::Internal("a payment order without a reference".into()))?;
        let request = HostedPaymentRequest {
            reference: reference.clone(),
            amount: order.money(),
            redirect_url: payer.redirect_url.clone(),
            customer_email: payer.email.clone(),
            customer_name: payer.name.clone(),
            customer_phone: payer.phone.clone(),
            title,
        };
        match gateway
            .initialise(Some(order.organization_id), request)
            .await
        {
            Ok(page) => Ok(CheckoutStarted {
                order_id: order.id,
                reference,
                link: page.link,
                amount: order.amount,
                currency: order.currency,
                status: order.status,
                grid_name,
            }),
            Err(e) => {
                let audit = AuditDraft::system(
                    "order.payment_page_failed",
                    serde_json::json!({"reference": reference, "error": e.to_string()}),
                );
                if let Err(cancel) = self
                    .orders
                    .cancel_payment_order(FLUTTERWAVE, &reference, audit)
                    .await
                {
                    tracing::warn!(order = order.id.0, error = %cancel, "could not cancel an order whose payment page failed");
                }
                Err(gateway_error(e))
            }
        }
    }

    /// `POST /payments/flutterwave`: a payment page into a wallet the caller may pay into.
    pub async fn pay_into_wallet(
        &self,
        who: &Principal,
        request: WalletPayment,
    ) -> Result<CheckoutStarted, DomainError> {
        let mut v = Validator::new();
        validate_amount(&mut v, request.amount.minor.0);
        validate_payer(&mut v, &request.payer);
        v.finish()?;
        let wallet = self
            .ledger
            .wallet(who.scope(), request.wallet_id)
            .await?
            .ok_or(DomainError::NotFound("wallet"))?;
        authorize_payment_into(who, &wallet)?;
        if wallet.currency != request.amount.currency {
            return Err(DomainError::invalid(
                "currency",
                &format!("the wallet holds {}", wallet.currency),
            ));
        }
        self.gateway()?;
        let audit = AuditDraft::by(
            who,
            "order.payment_started",
            serde_json::json!({"provider": FLUTTERWAVE, "wallet_id": wallet.id.0,
                "amount": request.amount.minor.0, "currency": request.amount.currency}),
        );
        let order = self
            .orders
            .create_payment_order(
                who.scope(),
                NewPaymentOrder {
                    receiver: wallet.id,
                    amount: request.amount,
                    provider: FLUTTERWAVE.into(),
                    payment_channel: Some("API".into()),
                    payment_method: None,
                    author_account_id: who.account_id,
                    author_api_key_id: who.api_key_id(),
                    idempotency_key: request.idempotency_key.clone(),
                },
                audit,
            )
            .await?;
        self.open_page(order, &request.payer, "Wallet top-up".into(), None)
            .await
    }

    /// `POST /public/meters/{serial}/payments`: a payment page for anyone topping up a meter.
    pub async fn pay_meter(&self, request: MeterPayment) -> Result<CheckoutStarted, DomainError> {
        let serial = request.serial.trim();
        let mut v = Validator::new();
        v.check(
            (1..=32).contains(&serial.len()) && serial.bytes().all(|b| b.is_ascii_alphanumeric()),
            "serial",
            "must be 1 to 32 letters or digits",
        );
        validate_amount(&mut v, request.amount_minor);
        validate_payer(&mut v, &request.payer);
        v.finish()?;
        let meter = self
            .meters
            .payable_meter(serial)
            .await?
            .ok_or(DomainError::NotFound("meter"))?;
        if !meter.commissioned {
            return Err(DomainError::Conflict(
                "this meter is not commissioned yet and cannot receive credit".into(),
            ));
        }
        if let Some(c) = request.currency
            && c != meter.currency
        {
            return Err(DomainError::invalid(
                "currency",
                &format!("this meter is paid in {}", meter.currency),
            ));
        }
        self.gateway()?;
        let amount = Money::new(request.amount_minor, meter.currency);
        let audit = AuditDraft::system(
            "order.payment_started",
            serde_json::json!({"provider": FLUTTERWAVE, "meter_id": meter.meter_id.0,
                "amount": amount.minor.0, "currency": amount.currency, "public": true}),
        );
        let order = self
            .orders
            .create_payment_order(
                TenantScope::One(meter.organization_id),
                NewPaymentOrder {
                    receiver: meter.wallet_id,
                    amount,
                    provider: FLUTTERWAVE.into(),
                    payment_channel: Some("PUBLIC".into()),
                    payment_method: None,
                    author_account_id: None,
                    author_api_key_id: None,
                    idempotency_key: None,
                },
                audit,
            )
            .await?;
        self.open_page(
            order,
            &request.payer,
            format!("Meter {serial}"),
            meter.grid_name,
        )
        .await
    }

    async fn order(&self, reference: &str) -> Result<Order, DomainError> {
        if !valid_reference(reference) {
            return Err(DomainError::NotFound("payment"));
        }
        self.orders
            .payment_order_by_reference(FLUTTERWAVE, reference)
            .await?
            .ok_or(DomainError::NotFound("payment"))
    }

    /// Verifies the order's payment by its reference and settles what the provider says.
    /// `Ok(None)`: nothing was paid against it yet.
    async fn verify_order(&self, order: &Order) -> Result<Option<Settlement>, DomainError> {
        let gateway = self.gateway()?;
        let reference = order.external_reference.as_deref().unwrap_or_default();
        match gateway
            .verify_by_reference(Some(order.organization_id), reference)
            .await
        {
            Ok(payment) => Ok(Some(self.settle(payment).await?)),
            Err(GatewayError::NotFound) => Ok(None),
            Err(e) => Err(gateway_error(e)),
        }
    }

    async fn settle(&self, payment: crate::VerifiedPayment) -> Result<Settlement, DomainError> {
        let settlement = self.settlement.settle(payment).await?;
        let outcome = match settlement {
            Settlement::Credited(_) => "credited",
            Settlement::AlreadyCredited(_) => "already_credited",
            Settlement::Mismatch(_) => "mismatch",
            Settlement::Failed(_) => "failed",
            Settlement::StillPending(_) => "pending",
        };
        metrics::counter!("tiamat_payments_settlements_total", "provider" => "flutterwave", "outcome" => outcome)
            .increment(1);
        Ok(settlement)
    }

    /// `GET /public/payments/{reference}`: the payment's status; an INITIALISED (or timed-out)
    /// one is first verified with the provider, so a payer's poll completes it even without a
    /// webhook. A provider outage leaves the stored status as the answer.
    pub async fn status(&self, reference: &str) -> Result<PaymentStatus, DomainError> {
        let order = self.order(reference).await?;
        if !matches!(
            order.status,
            OrderStatus::Initialised | OrderStatus::TimedOut
        ) {
            return Ok(PaymentStatus::of(&order));
        }
        match self.verify_order(&order).await {
            Ok(None) => return Ok(PaymentStatus::of(&order)),
            Ok(Some(_)) => {}
            Err(DomainError::Unavailable(m)) => {
                tracing::info!(order = order.id.0, reason = %m, "payment status: provider not reachable; answering the stored status");
                return Ok(PaymentStatus::of(&order));
            }
            Err(e) => return Err(e),
        }
        Ok(PaymentStatus::of(&self.order(reference).await?))
    }

    /// `POST /public/payments/{reference}/cancel`: only an INITIALISED payment (409 otherwise).
    pub async fn cancel(&self, reference: &str) -> Result<PaymentStatus, DomainError> {
        if !valid_reference(reference) {
            return Err(DomainError::NotFound("payment"));
        }
        let audit = AuditDraft::system(
            "order.payment_cancelled",
            serde_json::json!({"reference": reference, "public": true}),
        );
        let order = self
            .orders
            .cancel_payment_order(FLUTTERWAVE, reference, audit)
            .await?
            .ok_or(DomainError::NotFound("payment"))?;
        Ok(PaymentStatus::of(&order))
    }

    /// `POST /payments/{reference}/verify`: staff (or the payer's own account) re-verify.
    pub async fn verify(
        &self,
        who: &Principal,
        reference: &str,
    ) -> Result<VerificationResult, DomainError> {
        let order = self.order(reference).await?;
        if !who.scope().allows(order.organization_id) {
            return Err(DomainError::NotFound("payment"));
        }
        let visible = who.can(Permission::OrderManage)
            || (who.can(Permission::MoneyRead)
                && !matches!(who.role, kernel::Role::Customer | kernel::Role::Agent))
            || order.author_account_id.is_some() && order.author_account_id == who.account_id;
        if !visible {
            return Err(DomainError::Forbidden(
                "only finance roles or the payment's author verify payments".into(),
            ));
        }
        if matches!(
            order.status,
            OrderStatus::Initialised | OrderStatus::TimedOut
        ) {
            self.verify_order(&order).await?;
        }
        let order = self.order(reference).await?;
        Ok(VerificationResult {
            order_id: order.id,
            payment: PaymentStatus::of(&order),
        })
    }

    /// The webhook worker: a `charge.completed` names a provider transaction; it is verified by
    /// id (with the account of the order the body names, else the platform's) and settled.
    /// Returns what happened, for the inbox row.
    pub async fn on_charge_completed(
        &self,
        transaction_id: &str,
        claimed_reference: Option<&str>,
    ) -> Result<String, DomainError> {
        let gateway = self.gateway()?;
        // The body's reference only picks the account to ask; the answer names the real one.
        let org = match claimed_reference.filter(|r| valid_reference(r)) {
            Some(r) => self
                .orders
                .payment_order_by_reference(FLUTTERWAVE, r)
                .await?
                .map(|o| o.organization_id),
            None => None,
        };
        let payment = match gateway.verify_by_id(org, transaction_id).await {
            Ok(p) => p,
            Err(GatewayError::NotFound) => {
                return Ok(format!(
                    "transaction {transaction_id} is unknown to the provider"
                ));
            }
            Err(e) => return Err(gateway_error(e)),
        };
        let settlement = match self.settle(payment).await {
            Ok(s) => s,
            // A verified payment for none of our orders (another system's tx_ref).
            Err(DomainError::NotFound(_)) => {
                return Ok(format!(
                    "transaction {transaction_id} is for no order of ours"
                ));
            }
            Err(e) => return Err(e),
        };
        Ok(match settlement {
            Settlement::Credited(o) => format!("order {o} credited"),
            Settlement::AlreadyCredited(o) => format!("order {o} was already credited"),
            Settlement::Mismatch(o) => {
                format!("order {o} failed: amount, currency or reference mismatch")
            }
            Settlement::Failed(o) => format!("order {o} failed at the provider"),
            Settlement::StillPending(o) => format!("order {o} still pending at the provider"),
        })
    }

    /// The sweeper: INITIALISED payments older than `older_than` become TIMED_OUT (a late
    /// verification may still complete them).
    pub async fn time_out_abandoned(
        &self,
        older_than: DateTime<Utc>,
    ) -> Result<usize, DomainError> {
        let ids = self.orders.time_out_payment_orders(older_than).await?;
        Ok(ids.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::gateway::{
        HostedPayment, MockPaymentGateway, MockPaymentSettlement, ProviderStatus, VerifiedPayment,
    };
    use crate::ledger::StatementLine;
    use crate::service::{
        OrderFilter, RefundDraft, RevenueLine, TransferCheck, TransferDraft, WalletFilter,
    };
    use kernel::{AccountId, AccountKind, GridId, MinorUnits, PageRequest, PrincipalSource, Role};

    const ORG: OrganizationId = OrganizationId(1);

    fn ngn() -> Currency {
        Currency::parse("NGN").unwrap()
    }

    fn wallet(id: i64, owner: WalletOwner, customer: Option<i64>) -> Wallet {
        Wallet {
            id: WalletId(id),
            owner,
            currency: ngn(),
            balance: MinorUnits(0),
            organization_id: Some(ORG),
            grid_id: Some(GridId(3)),
            customer_id: customer.map(CustomerId),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn order(reference: &str, status: OrderStatus) -> Order {
        Order {
            id: OrderId(50),
            organization_id: ORG,
            sender_wallet_id: WalletId(1),
            receiver_wallet_id: WalletId(10),
            amount: 5000,
            currency: ngn(),
            order_type: None,
            status,
            sender_owner_type: "SYSTEM".into(),
            receiver_owner_type: "METER".into(),
            grid_id: None,
            is_hidden_from_reporting: false,
            provider: Some(FLUTTERWAVE.into()),
            external_reference: Some(reference.into()),
            provider_transaction_id: None,
            payment_method: None,
            payment_channel: None,
            author_account_id: Some(AccountId(9)),
            author_api_key_id: None,
            reverses_order_id: None,
            failure_reason: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            completed_at: None,
        }
    }

    /// Orders and wallets in memory: enough of the store for the checkout flows.
    #[derive(Default)]
    struct Fake {
        wallets: Vec<Wallet>,
        orders: Mutex<Vec<Order>>,
        cancelled: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl PaymentOrderStore for Fake {
        async fn create_payment_order(
            &self,
            _scope: TenantScope,
            new: NewPaymentOrder,
            _audit: AuditDraft,
        ) -> Result<Order, DomainError> {
            let mut o = order(
                "3f1c9a58-3c33-4d0c-9a7e-0d7c1a2b3c4d",
                OrderStatus::Initialised,
            );
            o.receiver_wallet_id = new.receiver;
            o.amount = new.amount.minor.0;
            o.currency = new.amount.currency;
            self.orders.lock().unwrap().push(o.clone());
            Ok(o)
        }
        async fn payment_order_by_reference(
            &self,
            _provider: &str,
            reference: &str,
        ) -> Result<Option<Order>, DomainError> {
            Ok(self
                .orders
                .lock()
                .unwrap()
                .iter()
                .find(|o| o.external_reference.as_deref() == Some(reference))
                .cloned())
        }
        async fn cancel_payment_order(
            &self,
            _provider: &str,
            reference: &str,
            _audit: AuditDraft,
        ) -> Result<Option<Order>, DomainError> {
            self.cancelled.lock().unwrap().push(reference.into());
            let mut orders = self.orders.lock().unwrap();
            let Some(o) = orders
                .iter_mut()
                .find(|o| o.external_reference.as_deref() == Some(reference))
            else {
                return Ok(None);
            };
            if o.status != OrderStatus::Initialised {
                return Err(DomainError::Conflict("not INITIALISED".into()));
            }
            o.status = OrderStatus::Cancelled;
            Ok(Some(o.clone()))
        }
        async fn time_out_payment_orders(
            &self,
            _older_than: DateTime<Utc>,
        ) -> Result<Vec<OrderId>, DomainError> {
            Ok(vec![OrderId(1), OrderId(2)])
        }
    }

    #[async_trait]
    impl LedgerStore for Fake {
        async fn list_wallets(
            &self,
            _: TenantScope,
            _: WalletFilter,
            _: PageRequest,
        ) -> Result<Vec<Wallet>, DomainError> {
            unimplemented!()
        }
        async fn wallet(
            &self,
            scope: TenantScope,
            id: WalletId,
        ) -> Result<Option<Wallet>, DomainError> {
            Ok(self
                .wallets
                .iter()
                .find(|w| w.id == id && w.organization_id.is_some_and(|o| scope.allows(o)))
                .cloned())
        }
        async fn statement(
            &self,
            _: TenantScope,
            _: WalletId,
            _: PageRequest,
        ) -> Result<Option<Vec<StatementLine>>, DomainError> {
            unimplemented!()
        }
        async fn transfer(
            &self,
            _: TenantScope,
            _: TransferDraft,
            _: TransferCheck<'_>,
            _: AuditDraft,
        ) -> Result<Order, DomainError> {
            unimplemented!()
        }
        async fn refund(
            &self,
            _: TenantScope,
            _: RefundDraft,
            _: AuditDraft,
        ) -> Result<Order, DomainError> {
            unimplemented!()
        }
        async fn list_orders(
            &self,
            _: TenantScope,
            _: OrderFilter,
            _: PageRequest,
        ) -> Result<Vec<Order>, DomainError> {
            unimplemented!()
        }
        async fn revenue(
            &self,
            _: TenantScope,
            _: Option<GridId>,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<Vec<RevenueLine>, DomainError> {
            unimplemented!()
        }
    }

    fn principal(role: Role, customer: Option<i64>) -> Principal {
        Principal {
            account_id: Some(AccountId(9)),
            kind: if customer.is_some() {
                AccountKind::Customer
            } else {
                AccountKind::Member
            },
            organization_id: ORG,
            role,
            in_platform_org: false,
            grid_id: Some(GridId(3)),
            source: PrincipalSource::Token {
                member: None,
                agent: None,
                customer: customer.map(CustomerId),
            },
        }
    }

    fn payer() -> Payer {
        Payer {
            email: Some("payer@example.com".into()),
            name: None,
            phone: None,
            redirect_url: "https://pay.example/back".into(),
        }
    }

    fn service(
        fake: Arc<Fake>,
        gateway: Option<MockPaymentGateway>,
        settlement: MockPaymentSettlement,
    ) -> CheckoutService {
        CheckoutService::new(
            gateway.map(|g| Arc::new(g) as Arc<dyn PaymentGateway>),
            fake.clone(),
            Arc::new(settlement),
            fake,
            Arc::new(MockPayableMeters::new()),
        )
    }

    fn fake() -> Arc<Fake> {
        Arc::new(Fake {
            wallets: vec![
                wallet(10, WalletOwner::Meter(MeterId(4)), Some(77)),
                wallet(11, WalletOwner::System(FLUTTERWAVE.into()), None),
            ],
            ..Fake::default()
        })
    }

    #[tokio::test]
    async fn finance_opens_a_page_for_an_initialised_order_with_its_reference() {
        let fake = fake();
        let mut gateway = MockPaymentGateway::new();
        gateway
            .expect_initialise()
            .withf(|org, r| {
                *org == Some(ORG) && r.amount == Money::new(5000, ngn()) && r.reference.len() == 36
            })
            .times(1)
            .returning(|_, _| {
                Ok(HostedPayment {
                    link: "https://checkout/x".into(),
                })
            });
        let svc = service(fake.clone(), Some(gateway), MockPaymentSettlement::new());
        let started = svc
            .pay_into_wallet(
                &principal(Role::Finance, None),
                WalletPayment {
                    wallet_id: WalletId(10),
                    amount: Money::new(5000, ngn()),
                    payer: payer(),
                    idempotency_key: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(started.link, "https://checkout/x");
        assert_eq!(started.status, OrderStatus::Initialised);
        assert_eq!(fake.orders.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn refusals_before_any_order_is_created() {
        let fake = fake();
        let svc = service(
            fake.clone(),
            Some(MockPaymentGateway::new()),
            MockPaymentSettlement::new(),
        );
        let pay = |wallet: i64, minor: i64, currency: Currency| WalletPayment {
            wallet_id: WalletId(wallet),
            amount: Money::new(minor, currency),
            payer: payer(),
            idempotency_key: None,
        };
        let finance = principal(Role::Finance, None);
        // Another customer's meter.
        let err = svc
            .pay_into_wallet(&principal(Role::Customer, Some(78)), pay(10, 100, ngn()))
            .await;
        assert!(matches!(err, Err(DomainError::Forbidden(_))), "{err:?}");
        let err = svc
            .pay_into_wallet(&principal(Role::Developer, None), pay(10, 100, ngn()))
            .await;
        assert!(matches!(err, Err(DomainError::Forbidden(_))), "{err:?}");
        let err = svc.pay_into_wallet(&finance, pay(11, 100, ngn())).await;
        assert!(matches!(err, Err(DomainError::Forbidden(_))), "{err:?}");
        let err = svc.pay_into_wallet(&finance, pay(99, 100, ngn())).await;
        assert!(matches!(err, Err(DomainError::NotFound(_))), "{err:?}");
        let err = svc.pay_into_wallet(&finance, pay(10, 0, ngn())).await;
        assert!(matches!(err, Err(DomainError::Validation(_))), "{err:?}");
        let err = svc
            .pay_into_wallet(&finance, pay(10, 100, Currency::parse("USD").unwrap()))
            .await;
        assert!(matches!(err, Err(DomainError::Validation(_))), "{err:?}");
        assert!(fake.orders.lock().unwrap().is_empty());
        // Without a provider: 503 and still nothing created.
        let none = service(fake.clone(), None, MockPaymentSettlement::new());
        let err = none
            .pay_into_wallet(&principal(Role::Customer, Some(77)), pay(10, 100, ngn()))
            .await;
        assert!(matches!(err, Err(DomainError::Unavailable(_))), "{err:?}");
        assert!(fake.orders.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_page_cancels_its_order() {
        let fake = fake();
        let mut gateway = MockPaymentGateway::new();
        gateway
            .expect_initialise()
            .returning(|_, _| Err(GatewayError::Unavailable("down".into())));
        let svc = service(fake.clone(), Some(gateway), MockPaymentSettlement::new());
        let err = svc
            .pay_into_wallet(
                &principal(Role::Customer, Some(77)),
                WalletPayment {
                    wallet_id: WalletId(10),
                    amount: Money::new(100, ngn()),
                    payer: payer(),
                    idempotency_key: None,
                },
            )
            .await;
        assert!(matches!(err, Err(DomainError::Unavailable(_))), "{err:?}");
        assert_eq!(
            fake.orders.lock().unwrap()[0].status,
            OrderStatus::Cancelled
        );
    }

    fn verified(reference: &str, minor: i64) -> VerifiedPayment {
        VerifiedPayment {
            provider_id: "285959875".into(),
            reference: reference.into(),
            status: ProviderStatus::Successful,
            charged: Money::new(minor, ngn()),
            payment_type: Some("card".into()),
        }
    }

    const REF: &str = "3f1c9a58-3c33-4d0c-9a7e-0d7c1a2b3c4d";

    #[tokio::test]
    async fn status_verifies_an_initialised_payment_and_settles_what_the_provider_says() {
        let fake = fake();
        fake.orders
            .lock()
            .unwrap()
            .push(order(REF, OrderStatus::Initialised));
        let mut gateway = MockPaymentGateway::new();
        gateway
            .expect_verify_by_reference()
            .withf(|org, r| *org == Some(ORG) && r == REF)
            .times(1)
            .returning(|_, r| Ok(verified(r, 5000)));
        let mut settlement = MockPaymentSettlement::new();
        let orders = fake.clone();
        settlement
            .expect_settle()
            .withf(|p| p.charged == Money::new(5000, ngn()) && p.reference == REF)
            .times(1)
            .returning(move |_| {
                orders.orders.lock().unwrap()[0].status = OrderStatus::Completed;
                Ok(Settlement::Credited(OrderId(50)))
            });
        let svc = service(fake.clone(), Some(gateway), settlement);
        let s = svc.status(REF).await.unwrap();
        assert_eq!(s.status, OrderStatus::Completed);
        // Completed: answered from the store, the provider is not asked again.
        assert_eq!(
            svc.status(REF).await.unwrap().status,
            OrderStatus::Completed
        );
        // Unknown or implausible references are 404 without a look-up.
        assert!(matches!(
            svc.status("nope").await,
            Err(DomainError::NotFound(_))
        ));
        assert!(matches!(
            svc.status("00000000-0000-0000-0000-000000000000").await,
            Err(DomainError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn status_degrades_to_the_stored_state_when_unpaid_or_the_provider_is_down() {
        let fake = fake();
        fake.orders
            .lock()
            .unwrap()
            .push(order(REF, OrderStatus::Initialised));
        let mut gateway = MockPaymentGateway::new();
        let mut answers = vec![
            Err(GatewayError::NotFound),
            Err(GatewayError::Unavailable("timeout".into())),
        ]
        .into_iter();
        gateway
            .expect_verify_by_reference()
            .times(2)
            .returning(move |_, _| answers.next().unwrap());
        let svc = service(fake, Some(gateway), MockPaymentSettlement::new());
        assert_eq!(
            svc.status(REF).await.unwrap().status,
            OrderStatus::Initialised
        );
        assert_eq!(
            svc.status(REF).await.unwrap().status,
            OrderStatus::Initialised
        );
    }

    #[tokio::test]
    async fn a_webhook_is_verified_by_id_with_the_orders_account_and_settled_from_the_answer() {
        let fake = fake();
        fake.orders
            .lock()
            .unwrap()
            .push(order(REF, OrderStatus::Initialised));
        let mut gateway = MockPaymentGateway::new();
        gateway
            .expect_verify_by_id()
            .withf(|org, id| *org == Some(ORG) && id == "285959875")
            .times(1)
            // The provider says 40.00 whatever the webhook body claimed.
            .returning(|_, _| Ok(verified(REF, 4000)));
        let mut settlement = MockPaymentSettlement::new();
        settlement
            .expect_settle()
            .withf(|p| p.charged.minor.0 == 4000)
            .times(1)
            .returning(|_| Ok(Settlement::Mismatch(OrderId(50))));
        let svc = service(fake, Some(gateway), settlement);
        let outcome = svc
            .on_charge_completed("285959875", Some(REF))
            .await
            .unwrap();
        assert!(outcome.contains("mismatch"), "{outcome}");
    }

    #[tokio::test]
    async fn cancel_only_from_initialised_and_the_sweeper_counts() {
        let fake = fake();
        fake.orders
            .lock()
            .unwrap()
            .push(order(REF, OrderStatus::Initialised));
        let svc = service(
            fake,
            Some(MockPaymentGateway::new()),
            MockPaymentSettlement::new(),
        );
        assert_eq!(
            svc.cancel(REF).await.unwrap().status,
            OrderStatus::Cancelled
        );
        assert!(matches!(
            svc.cancel(REF).await,
            Err(DomainError::Conflict(_))
        ));
        assert!(matches!(
            svc.cancel("x").await,
            Err(DomainError::NotFound(_))
        ));
        assert_eq!(svc.time_out_abandoned(Utc::now()).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn verify_needs_the_orders_tenant_and_a_finance_role_or_authorship() {
        let fake = fake();
        fake.orders
            .lock()
            .unwrap()
            .push(order(REF, OrderStatus::Completed));
        let svc = service(
            fake,
            Some(MockPaymentGateway::new()),
            MockPaymentSettlement::new(),
        );
        let mut other = principal(Role::Finance, None);
        other.organization_id = OrganizationId(2);
        assert!(matches!(
            svc.verify(&other, REF).await,
            Err(DomainError::NotFound(_))
        ));
        let mut stranger = principal(Role::Customer, Some(78));
        stranger.account_id = Some(AccountId(1000));
        assert!(matches!(
            svc.verify(&stranger, REF).await,
            Err(DomainError::Forbidden(_))
        ));
        let r = svc
            .verify(&principal(Role::Finance, None), REF)
            .await
            .unwrap();
        assert_eq!(
            (r.order_id, r.payment.status),
            (OrderId(50), OrderStatus::Completed)
        );
    }
}
