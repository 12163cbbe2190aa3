//! The ledger's port ([`LedgerStore`], implemented by the `store` crate on PostgreSQL) and the
//! service the HTTP routes call ([`MoneyService`]): who may read which wallets and orders, who may
//! move money.
//!
//! Store API (all tenant-scoped; another tenant's wallet or order is `None`/404):
//! * wallets: [`LedgerStore::list_wallets`], [`LedgerStore::wallet`], [`LedgerStore::statement`];
//! * money movement: [`LedgerStore::transfer`] (one database transaction: lock both wallets
//!   `FOR UPDATE` in id order, check, insert the order and its posting, update cached balances,
//!   audit) and [`LedgerStore::refund`] (the reversing order of a completed one);
//! * reading: [`LedgerStore::list_orders`], [`LedgerStore::revenue`];
//! * external payments ([`PaymentOrderStore`]): create an INITIALISED order with an unguessable
//!   reference, find it by reference, cancel it, time out abandoned ones. Crediting a verified
//!   payment is [`crate::PaymentSettlement`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kernel::{
    AccountId, AgentId, ApiKeyId, Currency, CustomerId, DomainError, GridId, OrderId, Page,
    PageRequest, Permission, Principal, Role, TenantScope, WalletId,
};
use orgs::AuditDraft;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::ledger::{StatementLine, Wallet};
use crate::orders::{Order, authorize_refund, authorize_transfer, validate_transfer};
use crate::vocab::{Money, OrderStatus, OrderType};

/// Which wallets to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalletFilter {
    /// `ORGANIZATION`, `AGENT`, `CUSTOMER`, `METER`, `CONNECTION` or `SYSTEM`.
    pub owner_type: Option<String>,
    /// The owner's id (with `owner_type`).
    pub owner_id: Option<i64>,
    pub currency: Option<Currency>,
    /// Restriction for agents: only this agent's wallet.
    pub only_agent: Option<AgentId>,
    /// Restriction for customers: only wallets of this customer (its own, its meters' and
    /// connections').
    pub only_customer: Option<CustomerId>,
}

/// Which orders to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub id: Option<OrderId>,
    /// Orders sending from or receiving into this wallet.
    pub wallet_id: Option<WalletId>,
    pub status: Option<OrderStatus>,
    pub order_type: Option<OrderType>,
    pub grid_id: Option<GridId>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Restriction for agents: orders touching this agent's wallet.
    pub only_agent: Option<AgentId>,
    /// Restriction for customers: orders touching this customer's wallets.
    pub only_customer: Option<CustomerId>,
}

/// The sending side of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    Wallet(WalletId),
    /// The system wallet of this provider key in the amount's currency (created on demand):
    /// money entering from outside, e.g. a cash deposit (`CASH`).
    System(String),
}

/// A wallet-to-wallet transfer to post now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferDraft {
    pub sender: Sender,
    pub receiver: WalletId,
    pub amount: Money,
    pub author_account_id: Option<AccountId>,
    pub author_api_key_id: Option<ApiKeyId>,
    pub idempotency_key: Option<String>,
    pub payment_channel: Option<String>,
}

/// A refund: the reversing order of a completed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundDraft {
    pub order_id: OrderId,
    pub reason: Option<String>,
    pub author_account_id: Option<AccountId>,
    pub author_api_key_id: Option<ApiKeyId>,
    /// Posted by the refund of the order's meter purchase (which holds the purchase row while
    /// it posts), not through `/orders`.
    pub by_purchase: bool,
}

/// Completed money per grid, currency and period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RevenueLine {
    pub grid_id: GridId,
    pub currency: Currency,
    /// Completed ENERGY_TOPUP orders (not hidden from reporting).
    pub energy_topup_count: i64,
    pub energy_topup_amount: i64,
    /// Completed CONNECTION_PAYMENT orders.
    pub connection_payment_amount: i64,
    /// Completed refunds of the above orders created in the period.
    pub refunded_amount: i64,
    /// energy + connection payments − refunds.
    pub net_amount: i64,
}

/// A check the store runs on the two locked wallets before posting (the caller's permissions).
pub type TransferCheck<'a> =
    &'a (dyn Fn(&Wallet, &Wallet) -> Result<(), DomainError> + Send + Sync);

#[async_trait]
pub trait LedgerStore: Send + Sync {
    async fn list_wallets(
        &self,
        scope: TenantScope,
        filter: WalletFilter,
        page: PageRequest,
    ) -> Result<Vec<Wallet>, DomainError>;
    async fn wallet(&self, scope: TenantScope, id: WalletId)
    -> Result<Option<Wallet>, DomainError>;
    /// Entries of the wallet in posting order, with their balance after; `None` when the wallet
    /// is not visible.
    async fn statement(
        &self,
        scope: TenantScope,
        id: WalletId,
        page: PageRequest,
    ) -> Result<Option<Vec<StatementLine>>, DomainError>;
    /// Posts a transfer in one database transaction. Insufficient funds is not an error: the
    /// order is stored FAILED with the reason and no entries. `check` refuses (403) before
    /// anything is written.
    async fn transfer(
        &self,
        scope: TenantScope,
        draft: TransferDraft,
        check: TransferCheck<'_>,
        audit: AuditDraft,
    ) -> Result<Order, DomainError>;
    /// Posts the reversing order of a COMPLETED order (at most once). For an order paid through a
    /// provider it also owes the provider refund ([`crate::refunds`]) in the same transaction.
    async fn refund(
        &self,
        scope: TenantScope,
        draft: RefundDraft,
        audit: AuditDraft,
    ) -> Result<Order, DomainError>;
    async fn list_orders(
        &self,
        scope: TenantScope,
        filter: OrderFilter,
        page: PageRequest,
    ) -> Result<Vec<Order>, DomainError>;
    async fn revenue(
        &self,
        scope: TenantScope,
        grid: Option<GridId>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RevenueLine>, DomainError>;
}

/// A payment from outside (a hosted provider page) into `receiver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPaymentOrder {
    pub receiver: WalletId,
    pub amount: Money,
    /// The provider's system key (`FLUTTERWAVE`).
    pub provider: String,
    pub payment_channel: Option<String>,
    pub payment_method: Option<String>,
    pub author_account_id: Option<AccountId>,
    pub author_api_key_id: Option<ApiKeyId>,
    pub idempotency_key: Option<String>,
}

/// Orders paid from outside, for the provider adapters (Flutterwave).
#[async_trait]
pub trait PaymentOrderStore: Send + Sync {
    /// Creates an INITIALISED order from the provider's system wallet (created on demand) to
    /// `receiver`, with a fresh unguessable `external_reference` (a UUID). The receiver must be
    /// visible in `scope` and hold the amount's currency. Audited.
    async fn create_payment_order(
        &self,
        scope: TenantScope,
        new: NewPaymentOrder,
        audit: AuditDraft,
    ) -> Result<Order, DomainError>;
    /// The order with this provider reference (no tenant scope: the reference is the secret).
    async fn payment_order_by_reference(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<Option<Order>, DomainError>;
    /// INITIALISED → CANCELLED (compare-and-set). `None`: no such order; a 409 conflict when it
    /// is no longer INITIALISED.
    async fn cancel_payment_order(
        &self,
        provider: &str,
        reference: &str,
        audit: AuditDraft,
    ) -> Result<Option<Order>, DomainError>;
    /// INITIALISED orders created before `older_than` → TIMED_OUT; returns the ids changed.
    async fn time_out_payment_orders(
        &self,
        older_than: DateTime<Utc>,
    ) -> Result<Vec<OrderId>, DomainError>;
}

/// Wallets, statements, transfers, refunds, orders and revenue, with the permission rules.
#[derive(Clone)]
pub struct MoneyService {
    store: Arc<dyn LedgerStore>,
}

/// How much of the money side a caller may see.
enum Visibility {
    /// Staff with `money_read`: the whole organization (scope).
    Organization,
    Agent(AgentId),
    Customer(CustomerId),
}

fn visibility(who: &Principal) -> Result<Visibility, DomainError> {
    match who.role {
        Role::Agent => who
            .agent_id()
            .map(Visibility::Agent)
            .ok_or_else(|| DomainError::Forbidden("an agent token without an agent".into())),
        Role::Customer => who
            .customer_id()
            .map(Visibility::Customer)
            .ok_or_else(|| DomainError::Forbidden("a customer token without a customer".into())),
        _ => {
            who.require(Permission::MoneyRead)?;
            Ok(Visibility::Organization)
        }
    }
}

impl MoneyService {
    pub fn new(store: Arc<dyn LedgerStore>) -> Self {
        Self { store }
    }

    pub async fn wallets(
        &self,
        who: &Principal,
        mut filter: WalletFilter,
        page: PageRequest,
    ) -> Result<Page<Wallet>, DomainError> {
        match visibility(who)? {
            Visibility::Organization => {}
            Visibility::Agent(a) => filter.only_agent = Some(a),
            Visibility::Customer(c) => filter.only_customer = Some(c),
        }
        let rows = self.store.list_wallets(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |w| w.id.get()))
    }

    pub async fn wallet(&self, who: &Principal, id: WalletId) -> Result<Wallet, DomainError> {
        let w = self
            .store
            .wallet(who.scope(), id)
            .await?
            .ok_or(DomainError::NotFound("wallet"))?;
        let visible = match visibility(who)? {
            Visibility::Organization => true,
            Visibility::Agent(a) => w.owner == crate::WalletOwner::Agent(a),
            Visibility::Customer(c) => w.customer_id == Some(c),
        };
        if visible {
            Ok(w)
        } else {
            Err(DomainError::NotFound("wallet"))
        }
    }

    pub async fn statement(
        &self,
        who: &Principal,
        id: WalletId,
        page: PageRequest,
    ) -> Result<Page<StatementLine>, DomainError> {
        self.wallet(who, id).await?;
        let rows = self
            .store
            .statement(who.scope(), id, page)
            .await?
            .ok_or(DomainError::NotFound("wallet"))?;
        Ok(Page::from_rows(rows, page, |l| l.entry_id))
    }

    /// Moves money now. The permission rules of [`authorize_transfer`] are checked on the locked
    /// wallets inside the store's transaction.
    pub async fn transfer(
        &self,
        who: &Principal,
        mut draft: TransferDraft,
    ) -> Result<Order, DomainError> {
        if !(who.can(Permission::OrderManage)
            || who.can(Permission::TopUpSell)
            || who.can(Permission::PayOwn))
        {
            return Err(DomainError::Forbidden(format!(
                "role {} may not move money",
                who.role
            )));
        }
        let sender_id = match &draft.sender {
            Sender::Wallet(w) => *w,
            // Never equal to a real receiver: the store resolves it.
            Sender::System(key) => {
                let ok = !key.is_empty()
                    && key.len() <= 32
                    && key.starts_with(|c: char| c.is_ascii_uppercase())
                    && key
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                if !ok {
                    return Err(DomainError::invalid(
                        "sender_system",
                        "must be an upper-case provider key such as CASH",
                    ));
                }
                WalletId(0)
            }
        };
        validate_transfer(sender_id, draft.receiver, draft.amount.minor.0)?;
        draft.author_account_id = who.account_id;
        draft.author_api_key_id = who.api_key_id();
        let audit = AuditDraft::by(
            who,
            "order.transferred",
            json!({"amount": draft.amount.minor.0, "currency": draft.amount.currency}),
        );
        let check = |s: &Wallet, r: &Wallet| authorize_transfer(who, s, r);
        self.store.transfer(who.scope(), draft, &check, audit).await
    }

    pub async fn refund(
        &self,
        who: &Principal,
        order_id: OrderId,
        reason: Option<String>,
    ) -> Result<Order, DomainError> {
        authorize_refund(who)?;
        if let Some(r) = &reason {
            kernel::Validator::new().text("reason", r, 500).finish()?;
        }
        let audit = AuditDraft::by(
            who,
            "order.refunded",
            json!({"refunds": order_id, "reason": reason}),
        );
        self.store
            .refund(
                who.scope(),
                RefundDraft {
                    order_id,
                    reason,
                    author_account_id: who.account_id,
                    author_api_key_id: who.api_key_id(),
                    by_purchase: false,
                },
                audit,
            )
            .await
    }

    pub async fn orders(
        &self,
        who: &Principal,
        mut filter: OrderFilter,
        page: PageRequest,
    ) -> Result<Page<Order>, DomainError> {
        match visibility(who)? {
            Visibility::Organization => {}
            Visibility::Agent(a) => filter.only_agent = Some(a),
            Visibility::Customer(c) => filter.only_customer = Some(c),
        }
        if let (Some(f), Some(t)) = (filter.created_from, filter.created_to) {
            kernel::Validator::new()
                .check(f <= t, "to", "must not be before from")
                .finish()?;
        }
        let rows = self.store.list_orders(who.scope(), filter, page).await?;
        Ok(Page::from_rows(rows, page, |o| o.id.get()))
    }

    pub async fn order(&self, who: &Principal, id: OrderId) -> Result<Order, DomainError> {
        let filter = OrderFilter {
            id: Some(id),
            ..OrderFilter::default()
        };
        let page = PageRequest {
            limit: 1,
            after_id: None,
        };
        self.orders(who, filter, page)
            .await?
            .items
            .into_iter()
            .next()
            .ok_or(DomainError::NotFound("order"))
    }

    /// Completed top-ups and connection payments per grid in [from, to). Staff only.
    pub async fn revenue(
        &self,
        who: &Principal,
        grid: Option<GridId>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RevenueLine>, DomainError> {
        who.require(Permission::MoneyRead)?;
        if !who.role.is_staff() {
            return Err(DomainError::Forbidden(
                "revenue is for the organization's staff".into(),
            ));
        }
        kernel::Validator::new()
            .check(from < to, "to", "must be after from")
            .check(
                to - from <= chrono::Duration::days(366 * 5),
                "to",
                "the period may span at most five years",
            )
            .finish()?;
        self.store.revenue(who.scope(), grid, from, to).await
    }
}
