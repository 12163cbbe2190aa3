//! Postings that follow events outside the orders API, each in the caller's database transaction
//! with the wallets locked in id order (`lock_wallets`), a domain [`Posting`] applied to them and
//! an audit event:
//!
//! * [`post_energy_sale`]: a delivered meter credit purchase's amount moves from the meter's
//!   wallet to the wallet of the organization running the grid (`ENERGY_SALE`, on the purchase's
//!   top-up order; at most one per order, which the database enforces).
//! * [`post_payout`]: a payout transfer attempt is an `ORGANIZATION_WITHDRAWAL` order from the
//!   organization's wallet to the provider's system wallet (`PAYOUT`), refused when the
//!   organization's wallet cannot cover it.
//! * [`reverse_payout`]: a transfer that failed or never reached the provider gives the money back
//!   through an order reversing the withdrawal (`PAYOUT_REVERSAL`; at most once per withdrawal, so
//!   a retry posts a fresh withdrawal and money is never counted twice).
//! * [`refund_refusal`]: why `/orders/{id}/refund` must not reverse an order whose money has gone
//!   on (energy delivered or being delivered, a payout's withdrawal).

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::{Currency, DomainError, TenantScope};
use orgs::AuditDraft;
use payments::purchase::{Actor, PurchaseStatus};
use payments::{Money, OrderType, Posting, Wallet, WalletOwner};
use serde_json::json;

use crate::audit::record;
use crate::ledger::{ledger_error, post, posted_entries};
use crate::wallets::{lock_wallets, organization_wallet, system_wallet};
use crate::{Result, StoreError};

/// `ledger_transactions.kind` of the postings written here.
pub(crate) const ENERGY_SALE: &str = "ENERGY_SALE";
pub(crate) const PAYOUT: &str = "PAYOUT";
pub(crate) const PAYOUT_REVERSAL: &str = "PAYOUT_REVERSAL";

fn internal(m: String) -> StoreError {
    StoreError::Domain(DomainError::Internal(m))
}

fn conflict(m: String) -> StoreError {
    StoreError::Domain(DomainError::Conflict(m))
}

#[derive(diesel::QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Locks `ids` (any tenant; `system` allowed) and answers them as domain wallets, in `ids` order.
async fn locked(
    c: &mut AsyncPgConnection,
    ids: &[i64],
    system: Option<i64>,
) -> Result<Vec<Wallet>> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let rows = lock_wallets(c, TenantScope::All, &sorted, system).await?;
    ids.iter()
        .map(|id| {
            rows.iter()
                .find(|r| r.id() == *id)
                .ok_or_else(|| internal(format!("wallet {id} missing")))
                .and_then(|r| r.to_wallet())
        })
        .collect()
}

/// What a delivered purchase sells.
pub(crate) struct EnergySale {
    pub(crate) purchase_id: i64,
    pub(crate) order_id: i64,
    /// The organization running the meter's grid (the purchase's, without a grid).
    pub(crate) seller: i64,
    pub(crate) meter_wallet: i64,
    pub(crate) amount: Money,
}

/// What a posting here wrote: its order and ledger transaction.
pub(crate) struct Posted {
    pub(crate) order_id: i64,
    pub(crate) transaction_id: i64,
}

/// The meter wallet → organization wallet posting of a delivered purchase, audited on the
/// purchase. The caller holds the top-up order's row lock (a concurrent refund of the order waits
/// and then sees the purchase delivered).
pub(crate) async fn post_energy_sale(
    c: &mut AsyncPgConnection,
    sale: &EnergySale,
    by: Actor,
) -> Result<Posted> {
    let org_wallet = organization_wallet(c, sale.seller, sale.amount.currency).await?;
    let mut wallets = locked(c, &[sale.meter_wallet, org_wallet], None).await?;
    let posting =
        Posting::energy_sale(&wallets[0], &wallets[1], sale.amount).map_err(ledger_error)?;
    let after = posting.apply(&mut wallets).map_err(ledger_error)?;
    let transaction_id = post(c, sale.order_id, ENERGY_SALE, &posting, &after).await?;
    record(
        c,
        sale.seller,
        "meter_purchase",
        Some(sale.purchase_id),
        &AuditDraft {
            actor_account_id: by.account,
            actor_api_key_id: by.api_key,
            action: "purchase.energy_sold",
            details: json!({"order_id": sale.order_id, "ledger_transaction_id": transaction_id,
                "amount_minor": sale.amount.minor.0, "currency": sale.amount.currency,
                "meter_wallet_id": sale.meter_wallet, "organization_wallet_id": org_wallet}),
        },
    )
    .await?;
    Ok(Posted {
        order_id: sale.order_id,
        transaction_id,
    })
}

/// An order row written by this module: posted at once, so COMPLETED.
struct NewOrder<'a> {
    organization: i64,
    sender: &'a Wallet,
    receiver: &'a Wallet,
    amount: Money,
    order_type: Option<OrderType>,
    grid: i64,
    provider: &'a str,
    by: Actor,
    reverses: Option<i64>,
}

async fn insert_order(c: &mut AsyncPgConnection, o: NewOrder<'_>) -> Result<i64> {
    let row: IdRow = diesel::sql_query(
        "INSERT INTO orders (organization_id, sender_wallet_id, receiver_wallet_id, amount_minor,
             currency, order_type, status, sender_owner_type, receiver_owner_type, grid_id,
             is_hidden_from_reporting, provider, author_account_id, author_api_key_id,
             reverses_order_id, completed_at)
         SELECT $1, $2, $3, $4, $5, $6, 'COMPLETED', $7, $8, g.id, g.is_hidden_from_reporting,
                $9, $10, $11, $12, now()
         FROM grids g WHERE g.id = $13
         RETURNING id",
    )
    .bind::<BigInt, _>(o.organization)
    .bind::<BigInt, _>(o.sender.id.get())
    .bind::<BigInt, _>(o.receiver.id.get())
    .bind::<BigInt, _>(o.amount.minor.0)
    .bind::<Text, _>(o.amount.currency.as_str())
    .bind::<Nullable<Text>, _>(o.order_type.map(OrderType::as_str))
    .bind::<Text, _>(o.sender.owner.kind())
    .bind::<Text, _>(o.receiver.owner.kind())
    .bind::<Text, _>(o.provider)
    .bind::<Nullable<BigInt>, _>(o.by.account.map(|a| a.get()))
    .bind::<Nullable<BigInt>, _>(o.by.api_key.map(|k| k.get()))
    .bind::<Nullable<BigInt>, _>(o.reverses)
    .bind::<BigInt, _>(o.grid)
    .get_result(c)
    .await?;
    Ok(row.id)
}

/// What a payout transfer attempt withdraws.
pub(crate) struct PayoutWithdrawal<'a> {
    pub(crate) payout_id: i64,
    pub(crate) organization: i64,
    pub(crate) grid: i64,
    pub(crate) amount: Money,
    /// The provider the transfer goes through (its system wallet receives the money).
    pub(crate) provider: &'a str,
    pub(crate) reference: &'a str,
}

/// The organization wallet → provider posting of a payout transfer attempt, as a COMPLETED
/// `ORGANIZATION_WITHDRAWAL` order; `Conflict` when the organization's wallet cannot cover it
/// (nothing is written then). Audited on the order and on the payout.
pub(crate) async fn post_payout(
    c: &mut AsyncPgConnection,
    w: &PayoutWithdrawal<'_>,
    by: Actor,
) -> Result<Posted> {
    let org_wallet = organization_wallet(c, w.organization, w.amount.currency).await?;
    let system = system_wallet(c, w.provider, w.amount.currency).await?;
    let mut wallets = locked(c, &[org_wallet, system], Some(system)).await?;
    let posting = Posting::payout(&wallets[0], &wallets[1], w.amount).map_err(ledger_error)?;
    let after = posting.apply(&mut wallets).map_err(|e| match e {
        payments::LedgerError::InsufficientFunds {
            balance, needed, ..
        } => conflict(format!(
            "the organization's {} wallet holds {balance} minor units, the payout needs {needed}; \
             nothing was sent",
            w.amount.currency
        )),
        e => ledger_error(e),
    })?;
    let order_id = insert_order(
        c,
        NewOrder {
            organization: w.organization,
            sender: &wallets[0],
            receiver: &wallets[1],
            amount: w.amount,
            order_type: Some(OrderType::OrganizationWithdrawal),
            grid: w.grid,
            provider: w.provider,
            by,
            reverses: None,
        },
    )
    .await?;
    let transaction_id = post(c, order_id, PAYOUT, &posting, &after).await?;
    let details = json!({"payout_id": w.payout_id, "reference": w.reference,
        "ledger_transaction_id": transaction_id, "amount_minor": w.amount.minor.0,
        "currency": w.amount.currency, "organization_wallet_id": org_wallet,
        "provider_wallet_id": system});
    audit_both(
        c,
        w.organization,
        order_id,
        w.payout_id,
        by,
        "order.payout_withdrawn",
        "payout.posted",
        details,
    )
    .await?;
    Ok(Posted {
        order_id,
        transaction_id,
    })
}

#[allow(clippy::too_many_arguments)]
async fn audit_both(
    c: &mut AsyncPgConnection,
    organization: i64,
    order_id: i64,
    payout_id: i64,
    by: Actor,
    order_action: &'static str,
    payout_action: &'static str,
    details: serde_json::Value,
) -> Result<()> {
    for (resource, id, action) in [
        ("order", order_id, order_action),
        ("payout", payout_id, payout_action),
    ] {
        record(
            c,
            organization,
            resource,
            Some(id),
            &AuditDraft {
                actor_account_id: by.account,
                actor_api_key_id: by.api_key,
                action,
                details: details.clone(),
            },
        )
        .await?;
    }
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct WithdrawalRow {
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    grid_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    provider: Option<String>,
    #[diesel(sql_type = BigInt)]
    amount_minor: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    reversed_by: Option<i64>,
}

/// Gives a payout's withdrawal back (provider system wallet → organization wallet) through a
/// COMPLETED order reversing it. `None` when it was reversed already (a repeated outcome).
/// Audited on the order and on the payout.
pub(crate) async fn reverse_payout(
    c: &mut AsyncPgConnection,
    payout_id: i64,
    withdrawal: i64,
    reason: &str,
) -> Result<Option<Posted>> {
    let w: WithdrawalRow = diesel::sql_query(
        "SELECT o.organization_id, o.grid_id, o.provider, o.amount_minor,
                o.currency::text AS currency,
                (SELECT r.id FROM orders r WHERE r.reverses_order_id = o.id
                   AND r.status IN ('PENDING', 'COMPLETED')) AS reversed_by
         FROM orders o WHERE o.id = $1 FOR UPDATE OF o",
    )
    .bind::<BigInt, _>(withdrawal)
    .get_result(c)
    .await?;
    if w.reversed_by.is_some() {
        return Ok(None);
    }
    let entries = posted_entries(c, withdrawal, Some(PAYOUT)).await?;
    let posting = Posting::new(entries)
        .and_then(|p| p.reversal())
        .map_err(ledger_error)?;
    // The reversal credits the organization (its entry is positive) and debits the provider.
    let credited = |want: bool| {
        posting
            .entries()
            .iter()
            .find(|e| (e.amount > 0) == want)
            .map(|e| e.wallet.get())
            .ok_or_else(|| internal(format!("withdrawal {withdrawal} posted no two sides")))
    };
    let (org_wallet, system) = (credited(true)?, credited(false)?);
    let mut wallets = locked(c, &[system, org_wallet], Some(system)).await?;
    if !matches!(wallets[1].owner, WalletOwner::Organization(_)) || !wallets[0].owner.is_system() {
        return Err(internal(format!(
            "order {withdrawal} is not a payout withdrawal"
        )));
    }
    let after = posting.apply(&mut wallets).map_err(ledger_error)?;
    let amount = Money::new(
        w.amount_minor,
        Currency::parse(w.currency.trim())
            .map_err(|_| internal(format!("currency {:?}", w.currency)))?,
    );
    let grid = w
        .grid_id
        .ok_or_else(|| internal(format!("withdrawal {withdrawal} has no grid")))?;
    let provider = w.provider.unwrap_or_default();
    let order_id = insert_order(
        c,
        NewOrder {
            organization: w.organization_id,
            sender: &wallets[0],
            receiver: &wallets[1],
            amount,
            // Like every reversal: recognised by `reverses_order_id`.
            order_type: None,
            grid,
            provider: &provider,
            by: Actor::default(),
            reverses: Some(withdrawal),
        },
    )
    .await?;
    let transaction_id = post(c, order_id, PAYOUT_REVERSAL, &posting, &after).await?;
    let details = json!({"payout_id": payout_id, "reverses_order_id": withdrawal,
        "ledger_transaction_id": transaction_id, "amount_minor": amount.minor.0,
        "currency": amount.currency, "reason": reason});
    audit_both(
        c,
        w.organization_id,
        order_id,
        payout_id,
        Actor::default(),
        "order.payout_reversed",
        "payout.posting_reversed",
        details,
    )
    .await?;
    Ok(Some(Posted {
        order_id,
        transaction_id,
    }))
}

#[derive(diesel::QueryableByName)]
struct RefusalRow {
    #[diesel(sql_type = Nullable<Text>)]
    purchase_status: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    payout: bool,
}

/// Why the order must not be refunded, if it must not: the energy it paid for was delivered (its
/// money went to the organization) or is being delivered, or it is a payout's withdrawal
/// (reversed by the transfer's outcome). An undelivered purchase's order is refunded only
/// through the purchase (`by_purchase`): that refund holds the purchase row while the ledger
/// posts, so a re-delivery claimed at the same moment waits and then finds it REFUNDED; through
/// `/orders` the two could both succeed (energy delivered for money given back).
pub(crate) async fn refund_refusal(
    c: &mut AsyncPgConnection,
    order_id: i64,
    by_purchase: bool,
) -> Result<Option<String>> {
    let row: RefusalRow = diesel::sql_query(
        "SELECT (SELECT p.status FROM meter_purchases p WHERE p.order_id = $1) AS purchase_status,
                EXISTS (SELECT 1 FROM ledger_transactions t
                        WHERE t.order_id = $1 AND t.kind = $2) AS payout",
    )
    .bind::<BigInt, _>(order_id)
    .bind::<Text, _>(PAYOUT)
    .get_result(c)
    .await?;
    if row.payout {
        return Ok(Some(
            "the order is a payout's withdrawal; it is given back when the transfer fails, not \
             refunded"
                .into(),
        ));
    }
    let status = row
        .purchase_status
        .as_deref()
        .map(|s| PurchaseStatus::parse(s).ok_or_else(|| internal(format!("purchase status {s:?}"))))
        .transpose()?;
    Ok(match status {
        Some(PurchaseStatus::Delivered) => Some(
            "energy already delivered: the meter received the energy this order paid for, and \
             its money went to the grid's organization"
                .into(),
        ),
        Some(PurchaseStatus::Pending) => Some(
            "the energy this order paid for is being delivered; refund the purchase if the \
             delivery fails"
                .into(),
        ),
        Some(PurchaseStatus::Failed) if !by_purchase => Some(
            "the energy this order paid for was not delivered: refund its purchase \
             (POST /api/v1/purchases/{id}/refund) so the purchase and the money agree"
                .into(),
        ),
        Some(PurchaseStatus::Failed | PurchaseStatus::Refunded) | None => None,
    })
}
