//! Orders: wallet-to-wallet transfers posted at once, refunds (reversing orders; for an order
//! paid through a provider also the provider refund owed, written in the same transaction, see
//! `provider_refunds`), external payments (INITIALISED until settled, cancelled or timed out),
//! listing and revenue.
//!
//! Store API (besides the `payments::LedgerStore` and `payments::PaymentOrderStore` ports):
//! * [`cas_status`]: the compare-and-set every status change goes through;
//! * [`lock_order_by_reference`]: an external payment's order, locked `FOR UPDATE`.
//!
//! Other modules may read the `orders` table directly: `status`, `order_type`, `grid_id`,
//! `receiver_wallet_id` and `completed_at` are stable; amounts are `amount_minor` + `currency`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::{
    AccountId, ApiKeyId, Currency, DomainError, GridId, OrderId, OrganizationId, PageRequest,
    TenantScope, WalletId,
};
use orgs::AuditDraft;
use payments::service::TransferCheck;
use payments::{
    LedgerError, LedgerStore, Money, NewPaymentOrder, Order, OrderEvent, OrderFilter, OrderStatus,
    OrderType, PaymentOrderStore, Posting, RefundDraft, RevenueLine, Sender, TransferDraft, Wallet,
    WalletFilter, WalletOwner, infer_type, transition,
};
use serde_json::json;

use crate::audit::record;
use crate::ledger::{PostingColumns, connection_fees, ledger_error, posted_entries};
use crate::prepared::{Prepare, with_generic_plans};
use crate::schema::{orders as o, wallets as w};
use crate::wallets::{WalletRow, load_wallet, lock_wallets, system_wallet};
use crate::{Db, Result, StoreError};

#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = o)]
pub(crate) struct OrderRow {
    pub(crate) id: i64,
    pub(crate) organization_id: i64,
    pub(crate) sender_wallet_id: i64,
    pub(crate) receiver_wallet_id: i64,
    amount_minor: i64,
    currency: String,
    order_type: Option<String>,
    status: String,
    sender_owner_type: String,
    receiver_owner_type: String,
    grid_id: Option<i64>,
    is_hidden_from_reporting: bool,
    provider: Option<String>,
    external_reference: Option<String>,
    provider_transaction_id: Option<String>,
    payment_method: Option<String>,
    payment_channel: Option<String>,
    author_account_id: Option<i64>,
    author_api_key_id: Option<i64>,
    reverses_order_id: Option<i64>,
    failure_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Domain(DomainError::Internal(format!("unreadable order {what}")))
}

impl OrderRow {
    pub(crate) fn status(&self) -> Result<OrderStatus> {
        OrderStatus::parse(&self.status).ok_or_else(|| corrupt("status"))
    }

    pub(crate) fn money(&self) -> Result<Money> {
        Ok(Money::new(
            self.amount_minor,
            Currency::parse(self.currency.trim()).map_err(|_| corrupt("currency"))?,
        ))
    }

    fn into_order(self) -> Result<Order> {
        let money = self.money()?;
        let status = self.status()?;
        Ok(Order {
            id: OrderId(self.id),
            organization_id: OrganizationId(self.organization_id),
            sender_wallet_id: WalletId(self.sender_wallet_id),
            receiver_wallet_id: WalletId(self.receiver_wallet_id),
            amount: money.minor.0,
            currency: money.currency,
            order_type: self.order_type.as_deref().and_then(OrderType::parse),
            status,
            sender_owner_type: self.sender_owner_type,
            receiver_owner_type: self.receiver_owner_type,
            grid_id: self.grid_id.map(GridId),
            is_hidden_from_reporting: self.is_hidden_from_reporting,
            provider: self.provider,
            external_reference: self.external_reference,
            provider_transaction_id: self.provider_transaction_id,
            payment_method: self.payment_method,
            payment_channel: self.payment_channel,
            author_account_id: self.author_account_id.map(AccountId),
            author_api_key_id: self.author_api_key_id.map(ApiKeyId),
            reverses_order_id: self.reverses_order_id.map(OrderId),
            failure_reason: self.failure_reason,
            created_at: self.created_at,
            updated_at: self.updated_at,
            completed_at: self.completed_at,
        })
    }
}

/// A new order's columns.
struct NewOrderRow<'a> {
    organization_id: i64,
    sender_wallet_id: i64,
    receiver_wallet_id: i64,
    amount_minor: i64,
    currency: &'a str,
    order_type: Option<&'static str>,
    status: &'static str,
    sender_owner_type: &'static str,
    receiver_owner_type: &'static str,
    grid_id: Option<i64>,
    is_hidden_from_reporting: bool,
    provider: Option<&'a str>,
    external_reference: Option<&'a str>,
    payment_method: Option<&'a str>,
    payment_channel: Option<&'a str>,
    author_account_id: Option<i64>,
    author_api_key_id: Option<i64>,
    idempotency_key: Option<&'a str>,
    reverses_order_id: Option<i64>,
    failure_reason: Option<&'a str>,
}

/// The sender and receiver of a new order, as locked (or loaded) with their context.
struct Parties<'a> {
    sender: &'a Wallet,
    receiver: &'a Wallet,
    /// The receiver's grid or customer is hidden from reporting.
    receiver_hidden: bool,
}

impl Parties<'_> {
    /// The receiver's organization owns the order, or the sender's when money leaves.
    fn organization(&self) -> Result<i64> {
        self.receiver
            .organization_id
            .or(self.sender.organization_id)
            .map(|o| o.get())
            .ok_or_else(|| {
                StoreError::Domain(DomainError::invalid(
                    "receiver_wallet_id",
                    "a transfer needs an organization's wallet on one side",
                ))
            })
    }

    fn grid(&self) -> Option<i64> {
        self.receiver
            .grid_id
            .or(self.sender.grid_id)
            .map(|g| g.get())
    }
}

async fn platform_org(c: &mut AsyncPgConnection) -> Result<Option<OrganizationId>> {
    use crate::schema::organizations as orgs_t;
    Ok(orgs_t::table
        .filter(orgs_t::is_platform.eq(true))
        .select(orgs_t::id)
        .first::<i64>(c)
        .await
        .optional()?
        .map(OrganizationId))
}

/// The type inference needs the platform organization only for organization → organization.
async fn order_type(
    c: &mut AsyncPgConnection,
    sender: &WalletOwner,
    receiver: &WalletOwner,
) -> Result<Option<OrderType>> {
    let platform = match (sender, receiver) {
        (WalletOwner::Organization(_), WalletOwner::Organization(_)) => platform_org(c).await?,
        _ => None,
    };
    Ok(infer_type(sender, receiver, platform))
}

/// Applies `event` to the order if its status still allows it (compare-and-set); true when it
/// changed. Completing sets `completed_at` and may record the provider's transaction id.
pub(crate) async fn cas_status(
    c: &mut AsyncPgConnection,
    id: i64,
    event: OrderEvent,
    failure_reason: Option<&str>,
    provider_transaction_id: Option<&str>,
) -> Result<bool> {
    let from: Vec<&'static str> = event
        .allowed_from()
        .into_iter()
        .map(OrderStatus::as_str)
        .collect();
    // Every allowed source status leads to the same target for a given event.
    let Some(to) = event
        .allowed_from()
        .into_iter()
        .next()
        .and_then(|s| transition(s, event).ok())
    else {
        return Ok(false);
    };
    let now = Utc::now();
    let completed = (to == OrderStatus::Completed).then_some(now);
    let n = diesel::update(o::table.filter(o::id.eq(id)).filter(o::status.eq_any(from)))
        .set((
            o::status.eq(to.as_str()),
            o::updated_at.eq(now),
            o::completed_at.eq(completed),
            o::failure_reason.eq(failure_reason),
            provider_transaction_id.map(|p| o::provider_transaction_id.eq(p)),
        ))
        .execute(c)
        .await?;
    Ok(n == 1)
}

pub(crate) async fn lock_order_by_reference(
    c: &mut AsyncPgConnection,
    reference: &str,
) -> Result<Option<OrderRow>> {
    Ok(o::table
        .filter(o::external_reference.eq(reference))
        .select(OrderRow::as_select())
        .for_update()
        .first(c)
        .await
        .optional()?)
}

fn find(rows: &[WalletRow], id: i64) -> Result<&WalletRow> {
    rows.iter()
        .find(|r| r.id() == id)
        .ok_or(StoreError::Domain(DomainError::NotFound("wallet")))
}

/// Inserts the order, posts it when `after` is given (the posting applied) and audits, in one
/// statement (one round trip on the hot path); then keeps connection fees in step. All in the
/// caller's transaction.
async fn record_order(
    c: &mut AsyncPgConnection,
    row: NewOrderRow<'_>,
    posting: &Posting,
    after: Option<Vec<i64>>,
    kind: &'static str,
    rows: &[WalletRow],
    audit: &AuditDraft,
) -> Result<Order> {
    let mut details = audit.details.clone();
    if let serde_json::Value::Object(m) = &mut details {
        m.insert("status".into(), json!(row.status));
        m.insert("sender_wallet_id".into(), json!(row.sender_wallet_id));
        m.insert("receiver_wallet_id".into(), json!(row.receiver_wallet_id));
        if let Some(r) = row.failure_reason {
            m.insert("failure_reason".into(), json!(r));
        }
    }
    let posted = after.is_some();
    let cols = match &after {
        Some(a) => PostingColumns::of(posting, a),
        None => PostingColumns::default(),
    };
    let order: OrderRow = diesel::sql_query(
        "WITH o AS (
             INSERT INTO orders (organization_id, sender_wallet_id, receiver_wallet_id, amount_minor,
                 currency, order_type, status, sender_owner_type, receiver_owner_type, grid_id,
                 is_hidden_from_reporting, provider, external_reference, payment_method,
                 payment_channel, author_account_id, author_api_key_id, idempotency_key,
                 reverses_order_id, failure_reason, completed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     $18, $19, $20, CASE WHEN $21 THEN now() END)
             RETURNING *
         ), t AS (
             INSERT INTO ledger_transactions (order_id, kind) SELECT o.id, $22 FROM o WHERE $21
             RETURNING id
         ), e AS (
             INSERT INTO ledger_entries (transaction_id, wallet_id, currency, amount_minor, balance_after_minor)
             SELECT t.id, x.wallet_id, x.currency, x.amount, x.balance_after
             FROM t, unnest($23::bigint[], $24::text[], $25::bigint[], $26::bigint[])
                  AS x(wallet_id, currency, amount, balance_after)
         ), u AS (
             -- By id list rather than a join with unnest: an index scan in any plan.
             UPDATE wallets w
             SET balance_minor = ($28::bigint[])[array_position($27::bigint[], w.id)],
                 updated_at = now()
             WHERE w.id = ANY($27::bigint[]) AND $21
         ), a AS (
             INSERT INTO audit_events (organization_id, actor_account_id, actor_api_key_id, action,
                                       resource_type, resource_id, details)
             SELECT o.organization_id, $29, $30, $31, 'order', o.id, $32 FROM o
         )
         SELECT * FROM o",
    )
    .bind::<BigInt, _>(row.organization_id)
    .bind::<BigInt, _>(row.sender_wallet_id)
    .bind::<BigInt, _>(row.receiver_wallet_id)
    .bind::<BigInt, _>(row.amount_minor)
    .bind::<Text, _>(row.currency)
    .bind::<Nullable<Text>, _>(row.order_type)
    .bind::<Text, _>(row.status)
    .bind::<Text, _>(row.sender_owner_type)
    .bind::<Text, _>(row.receiver_owner_type)
    .bind::<Nullable<BigInt>, _>(row.grid_id)
    .bind::<Bool, _>(row.is_hidden_from_reporting)
    .bind::<Nullable<Text>, _>(row.provider)
    .bind::<Nullable<Text>, _>(row.external_reference)
    .bind::<Nullable<Text>, _>(row.payment_method)
    .bind::<Nullable<Text>, _>(row.payment_channel)
    .bind::<Nullable<BigInt>, _>(row.author_account_id)
    .bind::<Nullable<BigInt>, _>(row.author_api_key_id)
    .bind::<Nullable<Text>, _>(row.idempotency_key)
    .bind::<Nullable<BigInt>, _>(row.reverses_order_id)
    .bind::<Nullable<Text>, _>(row.failure_reason)
    .bind::<Bool, _>(posted)
    .bind::<Text, _>(kind)
    .bind::<Array<BigInt>, _>(&cols.wallets)
    .bind::<Array<Text>, _>(&cols.currencies)
    .bind::<Array<BigInt>, _>(&cols.amounts)
    .bind::<Array<BigInt>, _>(after.as_deref().unwrap_or_default())
    .bind::<Array<BigInt>, _>(&cols.final_ids)
    .bind::<Array<BigInt>, _>(&cols.final_balances)
    .bind::<Nullable<BigInt>, _>(audit.actor_account_id.map(|a| a.get()))
    .bind::<Nullable<BigInt>, _>(audit.actor_api_key_id.map(|k| k.get()))
    .bind::<Text, _>(audit.action)
    .bind::<diesel::sql_types::Jsonb, _>(&details)
    .prepared()
    .get_result(c)
    .await?;
    if posted {
        let connections: Vec<(WalletId, i64)> =
            rows.iter().filter_map(WalletRow::connection).collect();
        connection_fees(c, posting, &connections).await?;
    }
    order.into_order()
}

impl Db {
    async fn order_transfer(
        &self,
        scope: TenantScope,
        d: TransferDraft,
        check: TransferCheck<'_>,
        audit: AuditDraft,
    ) -> Result<Order> {
        let mut conn = self.conn().await?;
        // Every statement here finds its rows by id: generic plans, planned once per connection.
        with_generic_plans(&mut conn, async |c| {
            let (sender_id, system) = match &d.sender {
                Sender::Wallet(id) => (id.get(), None),
                Sender::System(key) => {
                    let id = system_wallet(c, key, d.amount.currency).await?;
                    (id, Some(id))
                }
            };
            let mut ids = [sender_id, d.receiver.get()];
            ids.sort_unstable();
            let rows = lock_wallets(c, scope, &ids, system).await?;
            let sender = find(&rows, sender_id)?.to_wallet()?;
            let receiver_row = find(&rows, d.receiver.get())?;
            let receiver = receiver_row.to_wallet()?;
            check(&sender, &receiver).map_err(StoreError::Domain)?;
            let posting = Posting::transfer(&sender, &receiver, d.amount).map_err(ledger_error)?;
            let mut locked = vec![sender.clone(), receiver.clone()];
            let (status, reason, after) = match posting.apply(&mut locked) {
                Ok(after) => (OrderStatus::Completed, None, Some(after)),
                Err(e @ LedgerError::InsufficientFunds { .. }) => {
                    metrics::counter!("tiamat_orders_insufficient_funds_total").increment(1);
                    (OrderStatus::Failed, Some(e.to_string()), None)
                }
                Err(e) => return Err(ledger_error(e)),
            };
            let parties = Parties {
                sender: &sender,
                receiver: &receiver,
                receiver_hidden: receiver_row.ctx_hidden,
            };
            let row = NewOrderRow {
                organization_id: parties.organization()?,
                sender_wallet_id: sender.id.get(),
                receiver_wallet_id: receiver.id.get(),
                amount_minor: d.amount.minor.0,
                currency: d.amount.currency.as_str(),
                order_type: order_type(c, &sender.owner, &receiver.owner)
                    .await?
                    .map(OrderType::as_str),
                status: status.as_str(),
                sender_owner_type: sender.owner.kind(),
                receiver_owner_type: receiver.owner.kind(),
                grid_id: parties.grid(),
                is_hidden_from_reporting: parties.receiver_hidden,
                provider: match &d.sender {
                    Sender::System(k) => Some(k.as_str()),
                    Sender::Wallet(_) => None,
                },
                external_reference: None,
                payment_method: None,
                payment_channel: d.payment_channel.as_deref(),
                author_account_id: d.author_account_id.map(|a| a.get()),
                author_api_key_id: d.author_api_key_id.map(|k| k.get()),
                idempotency_key: d.idempotency_key.as_deref(),
                reverses_order_id: None,
                failure_reason: reason.as_deref(),
            };
            record_order(c, row, &posting, after, "TRANSFER", &rows, &audit).await
        })
        .await
    }

    async fn order_refund(
        &self,
        scope: TenantScope,
        d: RefundDraft,
        audit: AuditDraft,
    ) -> Result<Order> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let original: OrderRow = o::table
                .filter(o::id.eq(d.order_id.get()))
                .select(OrderRow::as_select())
                .for_update()
                .first(c)
                .await
                .optional()?
                .filter(|r: &OrderRow| scope.allows(OrganizationId(r.organization_id)))
                .ok_or(StoreError::Domain(DomainError::NotFound("order")))?;
            let conflict = |m: String| StoreError::Domain(DomainError::Conflict(m));
            if original.status()? != OrderStatus::Completed {
                return Err(conflict(format!(
                    "only a COMPLETED order can be refunded; this one is {}",
                    original.status
                )));
            }
            if original.reverses_order_id.is_some() {
                return Err(conflict("a refund cannot be refunded".into()));
            }
            let earlier: Option<i64> = o::table
                .filter(o::reverses_order_id.eq(original.id))
                .filter(o::status.eq_any(["PENDING", "COMPLETED"]))
                .select(o::id)
                .first(c)
                .await
                .optional()?;
            if let Some(e) = earlier {
                return Err(conflict(format!("the order was refunded by order {e}")));
            }
            // Money that went on (energy sold, a payout sent) is not the payer's any more.
            if let Some(why) =
                crate::postings::refund_refusal(c, original.id, d.by_purchase).await?
            {
                return Err(conflict(why));
            }
            let entries = posted_entries(c, original.id, None).await?;
            let posting = Posting::new(entries)
                .and_then(|p| p.reversal())
                .map_err(ledger_error)?;
            let ids: Vec<i64> = posting
                .wallets_in_lock_order()
                .into_iter()
                .map(|w| w.get())
                .collect();
            // The order was visible in scope; its wallets may include a provider's system wallet.
            let rows = lock_wallets(c, TenantScope::All, &ids, None).await?;
            let sender_row = find(&rows, original.receiver_wallet_id)?;
            let receiver_row = find(&rows, original.sender_wallet_id)?;
            let (sender, receiver) = (sender_row.to_wallet()?, receiver_row.to_wallet()?);
            let mut locked: Vec<Wallet> = rows
                .iter()
                .map(WalletRow::to_wallet)
                .collect::<Result<_>>()?;
            let (status, reason, after) = match posting.apply(&mut locked) {
                Ok(after) => (OrderStatus::Completed, None, Some(after)),
                Err(e @ LedgerError::InsufficientFunds { .. }) => {
                    (OrderStatus::Failed, Some(e.to_string()), None)
                }
                Err(e) => return Err(ledger_error(e)),
            };
            let original_type = original.order_type.as_deref().and_then(OrderType::parse);
            let refund_type = match original_type {
                Some(OrderType::ConnectionPayment) => Some(OrderType::ConnectionRefund),
                // A reversal is recognised by `reverses_order_id`; the inferred type of its
                // direction would misreport it (a meter refund is not an agent top-up).
                _ => None,
            };
            let parties = Parties {
                sender: &sender,
                receiver: &receiver,
                receiver_hidden: original.is_hidden_from_reporting,
            };
            let money = original.money()?;
            let row = NewOrderRow {
                organization_id: original.organization_id,
                sender_wallet_id: sender.id.get(),
                receiver_wallet_id: receiver.id.get(),
                amount_minor: money.minor.0,
                currency: money.currency.as_str(),
                order_type: refund_type.map(OrderType::as_str),
                status: status.as_str(),
                sender_owner_type: sender.owner.kind(),
                receiver_owner_type: receiver.owner.kind(),
                grid_id: original.grid_id.or(parties.grid()),
                is_hidden_from_reporting: parties.receiver_hidden,
                provider: original.provider.as_deref(),
                external_reference: None,
                payment_method: None,
                payment_channel: None,
                author_account_id: d.author_account_id.map(|a| a.get()),
                author_api_key_id: d.author_api_key_id.map(|k| k.get()),
                idempotency_key: None,
                reverses_order_id: Some(original.id),
                failure_reason: reason.as_deref(),
            };
            let reversal = record_order(c, row, &posting, after, "REVERSAL", &rows, &audit).await?;
            // Money that came in through a provider goes back the same way: the provider refund
            // is owed from the moment the ledger says "refunded" (same transaction).
            if let (OrderStatus::Completed, Some(provider), Some(transaction), "SYSTEM") = (
                reversal.status,
                original.provider.as_deref(),
                original.provider_transaction_id.as_deref(),
                original.sender_owner_type.as_str(),
            ) {
                crate::provider_refunds::enqueue(
                    c,
                    crate::provider_refunds::NewProviderRefund {
                        organization_id: original.organization_id,
                        order_id: reversal.id.get(),
                        original_order_id: original.id,
                        provider,
                        provider_transaction_id: transaction,
                        amount_minor: money.minor.0,
                        currency: money.currency.as_str(),
                    },
                )
                .await?;
            }
            Ok(reversal)
        })
        .await
    }

    async fn order_list(
        &self,
        scope: TenantScope,
        f: OrderFilter,
        page: PageRequest,
    ) -> Result<Vec<Order>> {
        let mut conn = self.conn().await?;
        let mut q = o::table.select(OrderRow::as_select()).into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(o::organization_id.eq(org.get()));
        }
        if let Some(id) = f.id {
            q = q.filter(o::id.eq(id.get()));
        }
        if let Some(wallet) = f.wallet_id {
            q = q.filter(
                o::sender_wallet_id
                    .eq(wallet.get())
                    .or(o::receiver_wallet_id.eq(wallet.get())),
            );
        }
        if let Some(s) = f.status {
            q = q.filter(o::status.eq(s.as_str()));
        }
        if let Some(t) = f.order_type {
            q = q.filter(o::order_type.eq(t.as_str()));
        }
        if let Some(g) = f.grid_id {
            q = q.filter(o::grid_id.eq(g.get()));
        }
        if let Some(from) = f.created_from {
            q = q.filter(o::created_at.ge(from));
        }
        if let Some(to) = f.created_to {
            q = q.filter(o::created_at.lt(to));
        }
        if let Some(agent) = f.only_agent {
            let mine = w::table.filter(w::agent_id.eq(agent.get())).select(w::id);
            q = q.filter(
                o::sender_wallet_id
                    .eq_any(mine)
                    .or(o::receiver_wallet_id.eq_any(mine)),
            );
        }
        if let Some(customer) = f.only_customer {
            // Wallets of the customer itself, its connections, and meters on its connections.
            q = q.filter(
                sql::<Bool>(
                    "EXISTS (SELECT 1 FROM wallets cw
                     LEFT JOIN connections cc ON cc.id = cw.connection_id
                     LEFT JOIN meters cm ON cm.id = cw.meter_id
                     LEFT JOIN connections cmc ON cmc.id = cm.connection_id
                     WHERE cw.id IN (orders.sender_wallet_id, orders.receiver_wallet_id)
                       AND COALESCE(cw.customer_id, cc.customer_id, cmc.customer_id) = ",
                )
                .bind::<BigInt, _>(customer.get())
                .sql(")"),
            );
        }
        if let Some(after) = page.after_id {
            q = q.filter(o::id.gt(after));
        }
        let rows = q
            .order(o::id.asc())
            .limit(page.fetch_limit())
            .load::<OrderRow>(&mut conn)
            .await?;
        rows.into_iter().map(OrderRow::into_order).collect()
    }

    async fn order_revenue(
        &self,
        scope: TenantScope,
        grid: Option<GridId>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RevenueLine>> {
        let mut conn = self.conn().await?;
        let rows: Vec<RevenueRow> = diesel::sql_query(
            "SELECT o.grid_id, o.currency::text AS currency,
                    count(*) FILTER (WHERE o.order_type = 'ENERGY_TOPUP' AND o.reverses_order_id IS NULL)
                        AS energy_topup_count,
                    COALESCE(sum(o.amount_minor) FILTER (WHERE o.order_type = 'ENERGY_TOPUP'
                        AND o.reverses_order_id IS NULL), 0)::bigint AS energy_topup_amount,
                    COALESCE(sum(o.amount_minor) FILTER (WHERE o.order_type = 'CONNECTION_PAYMENT'
                        AND o.reverses_order_id IS NULL), 0)::bigint AS connection_payment_amount,
                    COALESCE(sum(o.amount_minor) FILTER (WHERE o.order_type = 'CONNECTION_REFUND'
                        OR orig.order_type IN ('ENERGY_TOPUP', 'CONNECTION_PAYMENT')), 0)::bigint
                        AS refunded_amount
             FROM orders o LEFT JOIN orders orig ON orig.id = o.reverses_order_id
             WHERE o.status = 'COMPLETED' AND NOT o.is_hidden_from_reporting
               AND o.grid_id IS NOT NULL AND o.created_at >= $1 AND o.created_at < $2
               AND ($3::bigint IS NULL OR o.grid_id = $3)
               AND ($4::bigint IS NULL OR o.organization_id = $4)
             GROUP BY o.grid_id, o.currency ORDER BY o.grid_id, o.currency",
        )
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(to)
        .bind::<Nullable<BigInt>, _>(grid.map(|g| g.get()))
        .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
        .load(&mut conn)
        .await?;
        rows.into_iter()
            .map(|r| {
                let currency =
                    Currency::parse(r.currency.trim()).map_err(|_| corrupt("currency"))?;
                Ok(RevenueLine {
                    grid_id: GridId(r.grid_id),
                    currency,
                    energy_topup_count: r.energy_topup_count,
                    energy_topup_amount: r.energy_topup_amount,
                    connection_payment_amount: r.connection_payment_amount,
                    refunded_amount: r.refunded_amount,
                    net_amount: r.energy_topup_amount + r.connection_payment_amount
                        - r.refunded_amount,
                })
            })
            .collect()
    }

    async fn payment_order_create(
        &self,
        scope: TenantScope,
        n: NewPaymentOrder,
        audit: AuditDraft,
    ) -> Result<Order> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let receiver = load_wallet(c, scope, n.receiver.get())
                .await?
                .ok_or(StoreError::Domain(DomainError::NotFound("wallet")))?;
            if receiver.owner.is_system() {
                return Err(StoreError::Domain(DomainError::invalid(
                    "receiver_wallet_id",
                    "a payment goes into an owner's wallet",
                )));
            }
            let system_id = system_wallet(c, &n.provider, n.amount.currency).await?;
            let sender = load_wallet(c, TenantScope::All, system_id)
                .await?
                .ok_or(StoreError::Domain(DomainError::NotFound("wallet")))?;
            // Checked now so a mismatching order is never offered for payment.
            let posting = Posting::transfer(&sender, &receiver, n.amount).map_err(ledger_error)?;
            let hidden = is_hidden(c, receiver.id.get()).await?;
            let reference = uuid::Uuid::new_v4().to_string();
            let parties = Parties {
                sender: &sender,
                receiver: &receiver,
                receiver_hidden: hidden,
            };
            let row = NewOrderRow {
                organization_id: parties.organization()?,
                sender_wallet_id: sender.id.get(),
                receiver_wallet_id: receiver.id.get(),
                amount_minor: n.amount.minor.0,
                currency: n.amount.currency.as_str(),
                order_type: order_type(c, &sender.owner, &receiver.owner)
                    .await?
                    .map(OrderType::as_str),
                status: OrderStatus::Initialised.as_str(),
                sender_owner_type: sender.owner.kind(),
                receiver_owner_type: receiver.owner.kind(),
                grid_id: parties.grid(),
                is_hidden_from_reporting: hidden,
                provider: Some(&n.provider),
                external_reference: Some(&reference),
                payment_method: n.payment_method.as_deref(),
                payment_channel: n.payment_channel.as_deref(),
                author_account_id: n.author_account_id.map(|a| a.get()),
                author_api_key_id: n.author_api_key_id.map(|k| k.get()),
                idempotency_key: n.idempotency_key.as_deref(),
                reverses_order_id: None,
                failure_reason: None,
            };
            record_order(c, row, &posting, None, "PAYMENT", &[], &audit).await
        })
        .await
    }

    async fn payment_order_cancel(
        &self,
        provider: &str,
        reference: &str,
        audit: AuditDraft,
    ) -> Result<Option<Order>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(order) = lock_order_by_reference(c, reference).await? else {
                return Ok(None);
            };
            if order.provider.as_deref() != Some(provider) {
                return Ok(None);
            }
            if !cas_status(c, order.id, OrderEvent::Cancel, None, None).await? {
                return Err(StoreError::Domain(DomainError::Conflict(format!(
                    "only an INITIALISED order can be cancelled; this one is {}",
                    order.status
                ))));
            }
            record(c, order.organization_id, "order", Some(order.id), &audit).await?;
            let row = o::table
                .find(order.id)
                .select(OrderRow::as_select())
                .first(c)
                .await?;
            row.into_order().map(Some)
        })
        .await
    }

    async fn payment_orders_time_out(&self, older_than: DateTime<Utc>) -> Result<Vec<OrderId>> {
        let mut conn = self.conn().await?;
        // One statement: the compare-and-set and its audit rows commit together.
        let rows: Vec<TimedOutRow> = diesel::sql_query(
            "WITH t AS (
                 UPDATE orders SET status = 'TIMED_OUT', updated_at = now()
                 WHERE status = 'INITIALISED' AND created_at < $1
                 RETURNING id, organization_id
             ), a AS (
                 INSERT INTO audit_events (organization_id, action, resource_type, resource_id, details)
                 SELECT organization_id, 'order.timed_out', 'order', id, '{}'::jsonb FROM t
             )
             SELECT id FROM t ORDER BY id",
        )
        .bind::<Timestamptz, _>(older_than)
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(|r| OrderId(r.id)).collect())
    }
}

#[derive(diesel::QueryableByName)]
struct TimedOutRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(diesel::QueryableByName)]
struct RevenueRow {
    #[diesel(sql_type = BigInt)]
    grid_id: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    energy_topup_count: i64,
    #[diesel(sql_type = BigInt)]
    energy_topup_amount: i64,
    #[diesel(sql_type = BigInt)]
    connection_payment_amount: i64,
    #[diesel(sql_type = BigInt)]
    refunded_amount: i64,
}

#[derive(diesel::QueryableByName)]
struct HiddenRow {
    #[diesel(sql_type = Bool)]
    ctx_hidden: bool,
}

/// Whether the wallet's grid or customer is hidden from reporting.
async fn is_hidden(c: &mut AsyncPgConnection, wallet: i64) -> Result<bool> {
    let rows: Vec<HiddenRow> = diesel::sql_query(
        "SELECT (COALESCE(gr.is_hidden_from_reporting, false)
                 OR COALESCE(bc.is_hidden_from_reporting, false)) AS ctx_hidden
         FROM wallets w
         LEFT JOIN agents ag ON ag.id = w.agent_id
         LEFT JOIN customers cu ON cu.id = w.customer_id
         LEFT JOIN meters me ON me.id = w.meter_id
         LEFT JOIN connections mc ON mc.id = me.connection_id
         LEFT JOIN connections cn ON cn.id = w.connection_id
         LEFT JOIN grids gr ON gr.id = COALESCE(ag.grid_id, cu.grid_id, me.grid_id, cn.grid_id)
         LEFT JOIN customers bc ON bc.id = COALESCE(w.customer_id, cn.customer_id, mc.customer_id)
         WHERE w.id = $1",
    )
    .bind::<BigInt, _>(wallet)
    .load(c)
    .await?;
    Ok(<[HiddenRow]>::first(&rows).is_some_and(|r| r.ctx_hidden))
}

#[async_trait]
impl LedgerStore for Db {
    async fn list_wallets(
        &self,
        scope: TenantScope,
        filter: WalletFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Wallet>, DomainError> {
        Ok(self.wallet_list(scope, filter, page).await?)
    }
    async fn wallet(
        &self,
        scope: TenantScope,
        id: WalletId,
    ) -> std::result::Result<Option<Wallet>, DomainError> {
        Ok(self.wallet_get(scope, id).await?)
    }
    async fn statement(
        &self,
        scope: TenantScope,
        id: WalletId,
        page: PageRequest,
    ) -> std::result::Result<Option<Vec<payments::StatementLine>>, DomainError> {
        Ok(self.wallet_statement(scope, id, page).await?)
    }
    async fn transfer(
        &self,
        scope: TenantScope,
        draft: TransferDraft,
        check: TransferCheck<'_>,
        audit: AuditDraft,
    ) -> std::result::Result<Order, DomainError> {
        Ok(self.order_transfer(scope, draft, check, audit).await?)
    }
    async fn refund(
        &self,
        scope: TenantScope,
        draft: RefundDraft,
        audit: AuditDraft,
    ) -> std::result::Result<Order, DomainError> {
        Ok(self.order_refund(scope, draft, audit).await?)
    }
    async fn list_orders(
        &self,
        scope: TenantScope,
        filter: OrderFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Order>, DomainError> {
        Ok(self.order_list(scope, filter, page).await?)
    }
    async fn revenue(
        &self,
        scope: TenantScope,
        grid: Option<GridId>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> std::result::Result<Vec<RevenueLine>, DomainError> {
        Ok(self.order_revenue(scope, grid, from, to).await?)
    }
}

#[async_trait]
impl PaymentOrderStore for Db {
    async fn create_payment_order(
        &self,
        scope: TenantScope,
        new: NewPaymentOrder,
        audit: AuditDraft,
    ) -> std::result::Result<Order, DomainError> {
        Ok(self.payment_order_create(scope, new, audit).await?)
    }
    async fn payment_order_by_reference(
        &self,
        provider: &str,
        reference: &str,
    ) -> std::result::Result<Option<Order>, DomainError> {
        let mut conn = self.conn().await?;
        let row: Option<OrderRow> = o::table
            .filter(o::provider.eq(provider))
            .filter(o::external_reference.eq(reference))
            .select(OrderRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(row.map(OrderRow::into_order).transpose()?)
    }
    async fn cancel_payment_order(
        &self,
        provider: &str,
        reference: &str,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Order>, DomainError> {
        Ok(self
            .payment_order_cancel(provider, reference, audit)
            .await?)
    }
    async fn time_out_payment_orders(
        &self,
        older_than: DateTime<Utc>,
    ) -> std::result::Result<Vec<OrderId>, DomainError> {
        Ok(self.payment_orders_time_out(older_than).await?)
    }
}
