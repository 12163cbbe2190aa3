//! The ledger's writes and checks: postings (one database transaction each, wallets locked in id
//! order), settlement of verified external payments (exactly once), and `tiamat ledger verify`.
//!
//! Store API:
//! * [`post`]: writes a [`Posting`] for an order whose wallets the caller holds locked: the
//!   ledger transaction, its entries with balances after, and the cached balances, in one
//!   statement. The database refuses a second posting of the same order and, at commit, a
//!   posting that does not balance.
//! * [`Db::ledger_verify`]: every wallet's cached balance equals the sum of its entries, every
//!   entry's running balance is right, every transaction balances per currency, no ordinary
//!   wallet is negative.
//! * `impl PaymentSettlement for Db`: credits a verified payment to its order exactly once.

use async_trait::async_trait;
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::{Currency, DomainError, OrderId, TenantScope, WalletId};
use orgs::AuditDraft;
use payments::ledger::{LedgerOffence, LedgerReport};
use payments::{
    LedgerError, OrderEvent, OrderStatus, PaymentSettlement, Posting, PostingEntry, ProviderStatus,
    Settlement, VerifiedPayment,
};
use serde_json::json;

use crate::audit::record;
use crate::orders::{cas_status, lock_order_by_reference};
use crate::prepared::Prepare;
use crate::wallets::lock_wallets;
use crate::{Db, Result, StoreError};

#[derive(diesel::QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// A posting as the column arrays the SQL unnests: one element per entry, and the final balance
/// of each wallet (the balance after its last entry). Empty for an order posted nothing.
#[derive(Default)]
pub(crate) struct PostingColumns {
    pub(crate) wallets: Vec<i64>,
    pub(crate) currencies: Vec<String>,
    pub(crate) amounts: Vec<i64>,
    pub(crate) final_ids: Vec<i64>,
    pub(crate) final_balances: Vec<i64>,
}

impl PostingColumns {
    pub(crate) fn of(posting: &Posting, after: &[i64]) -> Self {
        let entries = posting.entries();
        let wallets: Vec<i64> = entries.iter().map(|e| e.wallet.get()).collect();
        let currencies = entries
            .iter()
            .map(|e| e.currency.as_str().to_owned())
            .collect();
        let amounts = entries.iter().map(|e| e.amount).collect();
        let mut finals: Vec<(i64, i64)> = Vec::new();
        for (w, b) in wallets.iter().zip(after) {
            match finals.iter_mut().find(|(id, _)| id == w) {
                Some(slot) => slot.1 = *b,
                None => finals.push((*w, *b)),
            }
        }
        let (final_ids, final_balances) = finals.into_iter().unzip();
        Self {
            wallets,
            currencies,
            amounts,
            final_ids,
            final_balances,
        }
    }
}

/// Writes `posting` for `order_id`; `after` is what [`Posting::apply`] returned for it on the
/// locked wallets. Returns the ledger transaction id.
pub(crate) async fn post(
    c: &mut AsyncPgConnection,
    order_id: i64,
    kind: &'static str,
    posting: &Posting,
    after: &[i64],
) -> Result<i64> {
    let PostingColumns {
        wallets,
        currencies,
        amounts,
        final_ids,
        final_balances,
    } = PostingColumns::of(posting, after);
    let row: IdRow = diesel::sql_query(
        "WITH t AS (
             INSERT INTO ledger_transactions (order_id, kind) VALUES ($1, $2) RETURNING id
         ), e AS (
             INSERT INTO ledger_entries (transaction_id, wallet_id, currency, amount_minor, balance_after_minor)
             SELECT t.id, x.wallet_id, x.currency, x.amount, x.balance_after
             FROM t, unnest($3::bigint[], $4::text[], $5::bigint[], $6::bigint[])
                  AS x(wallet_id, currency, amount, balance_after)
             RETURNING 1
         ), u AS (
             -- By id list rather than a join with unnest: an index scan in any plan.
             UPDATE wallets w
             SET balance_minor = ($8::bigint[])[array_position($7::bigint[], w.id)],
                 updated_at = now()
             WHERE w.id = ANY($7::bigint[])
             RETURNING 1
         )
         SELECT t.id FROM t",
    )
    .bind::<BigInt, _>(order_id)
    .bind::<Text, _>(kind)
    .bind::<Array<BigInt>, _>(&wallets)
    .bind::<Array<Text>, _>(&currencies)
    .bind::<Array<BigInt>, _>(&amounts)
    .bind::<Array<BigInt>, _>(after)
    .bind::<Array<BigInt>, _>(&final_ids)
    .bind::<Array<BigInt>, _>(&final_balances)
    .prepared()
    .get_result(c)
    .await?;
    Ok(row.id)
}

/// Connection fees paid follow money into and out of connection wallets (the predecessor's
/// bookkeeping of `connections.paid` and `customers.total_connection_paid`).
pub(crate) async fn connection_fees(
    c: &mut AsyncPgConnection,
    posting: &Posting,
    connection_wallets: &[(WalletId, i64)],
) -> Result<()> {
    for e in posting.entries() {
        let Some((_, connection)) = connection_wallets.iter().find(|(w, _)| *w == e.wallet) else {
            continue;
        };
        diesel::sql_query(
            "WITH cn AS (
                 UPDATE connections SET paid_minor = paid_minor + $2, updated_at = now()
                 WHERE id = $1 RETURNING customer_id
             )
             UPDATE customers SET total_connection_paid_minor = total_connection_paid_minor + $2,
                                  updated_at = now()
             WHERE id = (SELECT customer_id FROM cn)",
        )
        .bind::<BigInt, _>(*connection)
        .bind::<BigInt, _>(e.amount)
        .prepared()
        .execute(c)
        .await?;
    }
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct EntryRow {
    #[diesel(sql_type = BigInt)]
    wallet_id: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    amount_minor: i64,
}

/// The entries of an order's posting of `kind`, in their order; `None`: the order's own posting
/// (an energy sale is posted on its top-up's order too, and is not the order's to reverse).
pub(crate) async fn posted_entries(
    c: &mut AsyncPgConnection,
    order_id: i64,
    kind: Option<&str>,
) -> Result<Vec<PostingEntry>> {
    let rows: Vec<EntryRow> = diesel::sql_query(
        "SELECT e.wallet_id, e.currency::text AS currency, e.amount_minor
         FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
         WHERE t.order_id = $1
           AND CASE WHEN $2::text IS NULL THEN t.kind <> 'ENERGY_SALE' ELSE t.kind = $2 END
         ORDER BY e.id",
    )
    .bind::<BigInt, _>(order_id)
    .bind::<Nullable<Text>, _>(kind)
    .load(c)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(PostingEntry {
                wallet: WalletId(r.wallet_id),
                currency: Currency::parse(r.currency.trim()).map_err(|_| {
                    StoreError::Domain(DomainError::Internal(format!(
                        "ledger entry of order {order_id} in currency {:?}",
                        r.currency
                    )))
                })?,
                amount: r.amount_minor,
            })
        })
        .collect()
}

pub(crate) fn ledger_error(e: LedgerError) -> StoreError {
    let d = match e {
        LedgerError::CurrencyMismatch { .. } => DomainError::invalid("currency", &e.to_string()),
        LedgerError::SameWallet => DomainError::invalid("receiver_wallet_id", &e.to_string()),
        LedgerError::NotPositive => DomainError::invalid("amount", &e.to_string()),
        LedgerError::InsufficientFunds { .. } => DomainError::Conflict(e.to_string()),
        LedgerError::TooFewEntries
        | LedgerError::ZeroEntry
        | LedgerError::Unbalanced(_)
        | LedgerError::UnknownWallet(_)
        | LedgerError::Overflow
        | LedgerError::UnexpectedOwner { .. } => DomainError::Internal(e.to_string()),
    };
    StoreError::Domain(d)
}

#[derive(diesel::QueryableByName)]
struct DriftRow {
    #[diesel(sql_type = BigInt)]
    wallet_id: i64,
    #[diesel(sql_type = BigInt)]
    cached: i64,
    #[diesel(sql_type = BigInt)]
    entries_sum: i64,
}

#[derive(diesel::QueryableByName)]
struct UnbalancedRow {
    #[diesel(sql_type = BigInt)]
    transaction_id: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    sum: i64,
}

#[derive(diesel::QueryableByName)]
struct WalletBalanceRow {
    #[diesel(sql_type = BigInt)]
    wallet_id: i64,
    #[diesel(sql_type = BigInt)]
    balance: i64,
}

#[derive(diesel::QueryableByName)]
struct RunningRow {
    #[diesel(sql_type = BigInt)]
    entry_id: i64,
    #[diesel(sql_type = BigInt)]
    wallet_id: i64,
    #[diesel(sql_type = BigInt)]
    recorded: i64,
    #[diesel(sql_type = BigInt)]
    computed: i64,
}

#[derive(diesel::QueryableByName)]
struct MismatchRow {
    #[diesel(sql_type = BigInt)]
    entry_id: i64,
    #[diesel(sql_type = BigInt)]
    wallet_id: i64,
}

#[derive(diesel::QueryableByName)]
struct CountsRow {
    #[diesel(sql_type = BigInt)]
    wallets: i64,
    #[diesel(sql_type = BigInt)]
    transactions: i64,
    #[diesel(sql_type = BigInt)]
    entries: i64,
}

impl Db {
    /// Checks the whole ledger in one repeatable-read snapshot (a consistent picture while
    /// transfers continue). An empty `offences` list is the proof.
    pub async fn ledger_verify(&self) -> std::result::Result<LedgerReport, DomainError> {
        let mut conn = self.conn().await?;
        let report = conn
            .build_transaction()
            .repeatable_read()
            .read_only()
            .run(async |c| {
                let counts: CountsRow = diesel::sql_query(
                    "SELECT (SELECT count(*) FROM wallets) AS wallets,
                            (SELECT count(*) FROM ledger_transactions) AS transactions,
                            (SELECT count(*) FROM ledger_entries) AS entries",
                )
                .get_result(c)
                .await?;
                let mut offences = Vec::new();
                let drift: Vec<DriftRow> = diesel::sql_query(
                    "SELECT w.id AS wallet_id, w.balance_minor AS cached,
                            COALESCE(s.total, 0)::bigint AS entries_sum
                     FROM wallets w
                     LEFT JOIN (SELECT wallet_id, sum(amount_minor) AS total
                                FROM ledger_entries GROUP BY wallet_id) s ON s.wallet_id = w.id
                     WHERE w.balance_minor <> COALESCE(s.total, 0)
                     ORDER BY w.id",
                )
                .load(c)
                .await?;
                offences.extend(drift.into_iter().map(|r| LedgerOffence::BalanceDrift {
                    wallet_id: WalletId(r.wallet_id),
                    cached: r.cached,
                    entries_sum: r.entries_sum,
                }));
                let running: Vec<RunningRow> = diesel::sql_query(
                    "SELECT entry_id, wallet_id, recorded, computed FROM (
                         SELECT id AS entry_id, wallet_id, balance_after_minor AS recorded,
                                (sum(amount_minor) OVER (PARTITION BY wallet_id ORDER BY id))::bigint AS computed
                         FROM ledger_entries) r
                     WHERE recorded <> computed ORDER BY entry_id",
                )
                .load(c)
                .await?;
                offences.extend(running.into_iter().map(|r| LedgerOffence::RunningBalance {
                    entry_id: r.entry_id,
                    wallet_id: WalletId(r.wallet_id),
                    recorded: r.recorded,
                    computed: r.computed,
                }));
                let unbalanced: Vec<UnbalancedRow> = diesel::sql_query(
                    "SELECT transaction_id, currency::text AS currency, sum(amount_minor)::bigint AS sum
                     FROM ledger_entries GROUP BY transaction_id, currency
                     HAVING sum(amount_minor) <> 0 ORDER BY transaction_id",
                )
                .load(c)
                .await?;
                offences.extend(unbalanced.into_iter().map(|r| LedgerOffence::Unbalanced {
                    transaction_id: r.transaction_id,
                    currency: r.currency,
                    sum: r.sum,
                }));
                let overdrawn: Vec<WalletBalanceRow> = diesel::sql_query(
                    "SELECT id AS wallet_id, balance_minor AS balance FROM wallets
                     WHERE owner_type <> 'SYSTEM' AND balance_minor < 0 ORDER BY id",
                )
                .load(c)
                .await?;
                offences.extend(overdrawn.into_iter().map(|r| LedgerOffence::Overdrawn {
                    wallet_id: WalletId(r.wallet_id),
                    balance: r.balance,
                }));
                let mismatched: Vec<MismatchRow> = diesel::sql_query(
                    "SELECT e.id AS entry_id, e.wallet_id FROM ledger_entries e
                     JOIN wallets w ON w.id = e.wallet_id WHERE e.currency <> w.currency
                     ORDER BY e.id",
                )
                .load(c)
                .await?;
                offences.extend(mismatched.into_iter().map(|r| {
                    LedgerOffence::CurrencyMismatch {
                        entry_id: r.entry_id,
                        wallet_id: WalletId(r.wallet_id),
                    }
                }));
                Ok::<_, StoreError>(LedgerReport {
                    wallets: counts.wallets,
                    transactions: counts.transactions,
                    entries: counts.entries,
                    offences,
                })
            })
            .await?;
        Ok(report)
    }

    async fn settle_payment(&self, payment: VerifiedPayment) -> Result<Settlement> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            // The order row lock serializes every webhook and verification of this payment.
            let order = lock_order_by_reference(c, &payment.reference)
                .await?
                .ok_or(StoreError::Domain(DomainError::NotFound("order")))?;
            let id = OrderId(order.id);
            let status = order.status()?;
            match status {
                OrderStatus::Completed => return Ok(Settlement::AlreadyCredited(id)),
                OrderStatus::Failed | OrderStatus::Cancelled | OrderStatus::Ignored => {
                    return match payment.status {
                        // Money arrived for an order that was given up: an operator decides.
                        ProviderStatus::Successful => {
                            tracing::warn!(
                                order = id.get(),
                                status = status.as_str(),
                                "a successful payment arrived for an order that is no longer open"
                            );
                            metrics::counter!("tiamat_payments_late_success_total").increment(1);
                            Err(StoreError::Domain(DomainError::Conflict(format!(
                                "the order is {}; the payment needs an operator",
                                status.as_str()
                            ))))
                        }
                        ProviderStatus::Pending => Ok(Settlement::StillPending(id)),
                        ProviderStatus::Failed => Ok(Settlement::Failed(id)),
                    };
                }
                OrderStatus::Initialised | OrderStatus::Pending | OrderStatus::TimedOut => {}
            }
            let audit = |action: &'static str, details: serde_json::Value| {
                AuditDraft::system(action, details)
            };
            match payment.status {
                ProviderStatus::Pending => return Ok(Settlement::StillPending(id)),
                ProviderStatus::Failed => {
                    cas_status(
                        c,
                        order.id,
                        OrderEvent::Fail,
                        Some("the provider reports the payment failed"),
                        None,
                    )
                    .await?;
                    record(
                        c,
                        order.organization_id,
                        "order",
                        Some(order.id),
                        &audit(
                            "order.payment_failed",
                            json!({"provider_id": payment.provider_id}),
                        ),
                    )
                    .await?;
                    return Ok(Settlement::Failed(id));
                }
                ProviderStatus::Successful => {}
            }
            let expected = order.money()?;
            if payment.charged != expected {
                let reason = format!(
                    "the payment ({} {}) does not match the order ({} {})",
                    payment.charged.minor.0,
                    payment.charged.currency,
                    expected.minor.0,
                    expected.currency
                );
                cas_status(c, order.id, OrderEvent::Fail, Some(&reason), None).await?;
                record(
                    c,
                    order.organization_id,
                    "order",
                    Some(order.id),
                    &audit(
                        "order.payment_mismatch",
                        json!({"provider_id": payment.provider_id, "reason": reason}),
                    ),
                )
                .await?;
                return Ok(Settlement::Mismatch(id));
            }
            let mut ids = [order.sender_wallet_id, order.receiver_wallet_id];
            ids.sort_unstable();
            let rows = lock_wallets(c, TenantScope::All, &ids, None).await?;
            let wallet = |wid: i64| {
                rows.iter()
                    .find(|r| r.id() == wid)
                    .ok_or(StoreError::Domain(DomainError::Internal(format!(
                        "wallet {wid} missing"
                    ))))
                    .and_then(|r| r.to_wallet())
            };
            let (sender, receiver) = (
                wallet(order.sender_wallet_id)?,
                wallet(order.receiver_wallet_id)?,
            );
            let posting = Posting::transfer(&sender, &receiver, expected).map_err(ledger_error)?;
            let mut locked = vec![sender, receiver];
            let after = posting.apply(&mut locked).map_err(ledger_error)?;
            post(c, order.id, "PAYMENT", &posting, &after).await?;
            let connections: Vec<(WalletId, i64)> =
                rows.iter().filter_map(|r| r.connection()).collect();
            connection_fees(c, &posting, &connections).await?;
            let changed = cas_status(
                c,
                order.id,
                OrderEvent::Complete,
                None,
                Some(&payment.provider_id),
            )
            .await?;
            if !changed {
                // Cannot happen under the row lock; the transaction rolls back the posting.
                return Err(StoreError::Domain(DomainError::Conflict(
                    "the order changed while it was being settled".into(),
                )));
            }
            record(
                c,
                order.organization_id,
                "order",
                Some(order.id),
                &audit(
                    "order.payment_credited",
                    json!({
                        "provider_id": payment.provider_id,
                        "amount": expected.minor.0,
                        "currency": expected.currency,
                        "payment_type": payment.payment_type,
                    }),
                ),
            )
            .await?;
            metrics::counter!("tiamat_payments_credited_total").increment(1);
            Ok(Settlement::Credited(id))
        })
        .await
    }
}

#[async_trait]
impl PaymentSettlement for Db {
    /// Credits the payment to the order with its reference, exactly once: the order row is locked,
    /// its status compared-and-set (INITIALISED/PENDING/TIMED_OUT → COMPLETED) and the posting
    /// (system wallet of the provider → receiver) written in the same transaction; the ledger
    /// accepts one posting per order.
    async fn settle(
        &self,
        payment: VerifiedPayment,
    ) -> std::result::Result<Settlement, DomainError> {
        Ok(self.settle_payment(payment).await?)
    }
}
