//! Payouts to grid owners ([`PayoutRepo`]): one per grid and month (`payouts_one_per_month`),
//! every status change a compare-and-set applying [`PayoutStatus::after`], audited in its
//! transaction.
//!
//! The provider's word on a transfer (Flutterwave's `transfer.completed` webhook) reaches a payout
//! through [`PayoutRepo::settle_transfer`] keyed by our transfer reference (see
//! `payments::payouts::PayoutService::transfer_outcome`), as does the periodic read-back of
//! PROCESSING payouts ([`PayoutRepo::processing`]).
//!
//! Money moves with the status: starting a transfer posts the payout as an
//! `ORGANIZATION_WITHDRAWAL` order (organization wallet → the provider's system wallet, its id in
//! `payouts.transfer_order_id`); a transfer that fails or never reached the provider is reversed
//! in the transaction that records it; PAID leaves the ledger as it is.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::{Currency, DomainError, GridId, OrganizationId, PageRequest, PayoutId, TenantScope};
use orgs::AuditDraft;
use payments::Money;
use payments::payouts::{
    BankAccount, GridPayoutTerms, Month, PAYOUT_PROVIDER, Payout, PayoutBreakdown, PayoutEvent,
    PayoutFilter, PayoutRepo, PayoutStatus, Period, RentalTerms, Revenue, TransferOutcome,
};
use payments::purchase::Actor;

use crate::audit::record;
use crate::postings::{PayoutWithdrawal, post_payout, reverse_payout};
use crate::schema::{grids as g, payouts as po};
use crate::{Db, Result, StoreError};

fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Domain(DomainError::Internal(format!(
        "unknown {what} {v:?} in the database"
    )))
}

fn audit(by: Actor, action: &'static str, details: serde_json::Value) -> AuditDraft {
    AuditDraft {
        actor_account_id: by.account,
        actor_api_key_id: by.api_key,
        action,
        details,
    }
}

fn currency(s: &str) -> Result<Currency> {
    Currency::parse(s).map_err(|_| corrupt("currency", s))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = po)]
struct Row {
    id: i64,
    organization_id: i64,
    grid_id: i64,
    month: String,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    currency: String,
    proposed_amount_minor: i64,
    approved_amount_minor: Option<i64>,
    status: String,
    breakdown: serde_json::Value,
    bank_code: Option<String>,
    account_number: Option<String>,
    account_name: Option<String>,
    approved_by_account_id: Option<i64>,
    approved_at: Option<DateTime<Utc>>,
    transfer_reference: Option<String>,
    provider_transfer_id: Option<String>,
    failure_reason: Option<String>,
    paid_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for Payout {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self> {
        let month = Month::parse(&r.month).map_err(|_| corrupt("month", &r.month))?;
        let breakdown: PayoutBreakdown = serde_json::from_value(r.breakdown)
            .map_err(|e| corrupt("payout breakdown", &e.to_string()))?;
        let bank_account = match (r.bank_code, r.account_number) {
            (Some(bank_code), Some(account_number)) => Some(BankAccount {
                bank_code,
                account_number,
                account_name: r.account_name,
            }),
            _ => None,
        };
        Ok(Payout {
            id: PayoutId(r.id),
            organization_id: OrganizationId(r.organization_id),
            grid_id: GridId(r.grid_id),
            period: Period {
                month,
                start: r.period_start,
                end: r.period_end,
            },
            currency: currency(&r.currency)?,
            proposed_amount_minor: r.proposed_amount_minor,
            approved_amount_minor: r.approved_amount_minor,
            status: PayoutStatus::parse(&r.status)
                .ok_or_else(|| corrupt("payout status", &r.status))?,
            breakdown,
            bank_account,
            approved_by_account_id: r.approved_by_account_id.map(kernel::AccountId),
            approved_at: r.approved_at,
            transfer_reference: r.transfer_reference,
            provider_transfer_id: r.provider_transfer_id,
            failure_reason: r.failure_reason,
            paid_at: r.paid_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

async fn load(c: &mut AsyncPgConnection, id: i64) -> Result<Payout> {
    po::table
        .find(id)
        .select(Row::as_select())
        .first(c)
        .await?
        .try_into()
}

/// The payout row, locked.
async fn lock(c: &mut AsyncPgConnection, id: i64) -> Result<Option<Payout>> {
    po::table
        .find(id)
        .select(Row::as_select())
        .for_update()
        .first(c)
        .await
        .optional()?
        .map(Payout::try_from)
        .transpose()
}

#[derive(QueryableByName)]
struct RevenueRow {
    #[diesel(sql_type = BigInt)]
    energy: i64,
    #[diesel(sql_type = BigInt)]
    connection: i64,
}

/// Our transfer reference for a payout's attempt: unique, and stable across a retry of an
/// attempt the provider never received.
fn reference(id: i64, attempt: i32) -> String {
    format!("tiamat-payout-{id}-{attempt}")
}

/// Links the payout to the withdrawal order of its current transfer attempt.
async fn set_transfer_order(c: &mut AsyncPgConnection, id: i64, order: i64) -> Result<()> {
    diesel::sql_query("UPDATE payouts SET transfer_order_id = $2 WHERE id = $1")
        .bind::<BigInt, _>(id)
        .bind::<BigInt, _>(order)
        .execute(c)
        .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct TransferOrderRow {
    #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
    transfer_order_id: Option<i64>,
}

/// The withdrawal order of the payout's current transfer attempt, if it was posted.
async fn transfer_order(c: &mut AsyncPgConnection, id: i64) -> Result<Option<i64>> {
    let row: TransferOrderRow =
        diesel::sql_query("SELECT transfer_order_id FROM payouts WHERE id = $1")
            .bind::<BigInt, _>(id)
            .get_result(c)
            .await?;
    Ok(row.transfer_order_id)
}

#[async_trait]
impl PayoutRepo for Db {
    async fn grid_terms(
        &self,
        scope: TenantScope,
        grid: GridId,
    ) -> std::result::Result<Option<GridPayoutTerms>, DomainError> {
        let mut conn = self.conn().await?;
        let mut q = g::table
            .filter(g::id.eq(grid.get()))
            .filter(g::deleted_at.is_null())
            .select((
                g::organization_id,
                g::timezone,
                g::currency,
                g::pv_capacity_wp,
                g::storage_capacity_wh,
                g::pv_rental_minor_per_kwp_month,
                g::storage_rental_minor_per_kwh_month,
                g::rental_currency,
            ))
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(g::organization_id.eq(org.get()));
        }
        #[allow(clippy::type_complexity)]
        let row: Option<(i64, String, String, i64, i64, i64, i64, Option<String>)> = q
            .first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        let Some((org, tz, cur, pv, storage, pv_rent, storage_rent, rent_cur)) = row else {
            return Ok(None);
        };
        let cur = currency(&cur)?;
        Ok(Some(GridPayoutTerms {
            grid_id: grid,
            organization_id: OrganizationId(org),
            timezone: tz,
            currency: cur,
            pv_capacity_wp: pv,
            storage_capacity_wh: storage,
            rental: RentalTerms {
                pv_minor_per_kwp_month: pv_rent,
                storage_minor_per_kwh_month: storage_rent,
                currency: rent_cur
                    .as_deref()
                    .map(currency)
                    .transpose()?
                    .unwrap_or(cur),
            },
        }))
    }

    async fn set_rental(
        &self,
        scope: TenantScope,
        grid: GridId,
        pv_minor_per_kwp_month: i64,
        storage_minor_per_kwh_month: i64,
        rental_currency: Option<Currency>,
        by: Actor,
    ) -> std::result::Result<Option<GridPayoutTerms>, DomainError> {
        let mut conn = self.conn().await?;
        let org = conn
            .transaction(async |c| {
                let only = scope.organization().map(|o| o.get());
                let org: Option<i64> = g::table
                    .filter(g::id.eq(grid.get()))
                    .filter(g::deleted_at.is_null())
                    .filter(
                        g::organization_id
                            .nullable()
                            .eq(only)
                            .or(only.is_none().into_sql::<Bool>()),
                    )
                    .select(g::organization_id)
                    .for_update()
                    .first(c)
                    .await
                    .optional()?;
                let Some(org) = org else {
                    return Ok(None);
                };
                diesel::update(g::table.find(grid.get()))
                    .set((
                        g::pv_rental_minor_per_kwp_month.eq(pv_minor_per_kwp_month),
                        g::storage_rental_minor_per_kwh_month.eq(storage_minor_per_kwh_month),
                        g::rental_currency.eq(rental_currency.map(|c| c.as_str().to_owned())),
                        g::updated_at.eq(Utc::now()),
                    ))
                    .execute(c)
                    .await?;
                record(
                    c,
                    org,
                    "grid",
                    Some(grid.get()),
                    &audit(
                        by,
                        "grid.payout_terms_set",
                        serde_json::json!({"pv_rental_minor_per_kwp_month": pv_minor_per_kwp_month,
                            "storage_rental_minor_per_kwh_month": storage_minor_per_kwh_month,
                            "rental_currency": rental_currency}),
                    ),
                )
                .await?;
                Ok::<_, StoreError>(Some(org))
            })
            .await?;
        match org {
            Some(_) => self.grid_terms(scope, grid).await,
            None => Ok(None),
        }
    }

    async fn revenue(
        &self,
        grid: GridId,
        cur: Currency,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> std::result::Result<Revenue, DomainError> {
        let mut conn = self.conn().await?;
        // Completed in the period: energy top-ups (not hidden from reporting) and connection
        // payments, less reversals of either and connection refunds. A reversal counts for the
        // grid of the order it reverses.
        let row: RevenueRow = diesel::sql_query(
            "SELECT
               COALESCE(SUM(CASE
                 WHEN x.id IS NULL AND o.order_type = 'ENERGY_TOPUP' AND NOT o.is_hidden_from_reporting
                   THEN o.amount_minor
                 WHEN x.order_type = 'ENERGY_TOPUP' AND NOT x.is_hidden_from_reporting
                   THEN -o.amount_minor END), 0)::bigint AS energy,
               COALESCE(SUM(CASE
                 WHEN x.id IS NULL AND o.order_type = 'CONNECTION_PAYMENT' THEN o.amount_minor
                 WHEN x.id IS NULL AND o.order_type = 'CONNECTION_REFUND' THEN -o.amount_minor
                 WHEN x.order_type = 'CONNECTION_PAYMENT' THEN -o.amount_minor END), 0)::bigint AS connection
             FROM orders o
             LEFT JOIN orders x ON x.id = o.reverses_order_id
             WHERE o.status = 'COMPLETED' AND o.currency = $2
               AND o.completed_at >= $3 AND o.completed_at < $4
               AND COALESCE(x.grid_id, o.grid_id) = $1",
        )
        .bind::<BigInt, _>(grid.get())
        .bind::<Text, _>(cur.as_str())
        .bind::<Timestamptz, _>(start)
        .bind::<Timestamptz, _>(end)
        .get_result(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(Revenue {
            energy_topup_minor: row.energy,
            connection_fee_minor: row.connection,
        })
    }

    async fn save_draft(
        &self,
        terms: &GridPayoutTerms,
        period: Period,
        breakdown: &PayoutBreakdown,
        by: Actor,
    ) -> std::result::Result<(Payout, bool), DomainError> {
        let details =
            serde_json::to_value(breakdown).map_err(|e| DomainError::Internal(e.to_string()))?;
        let month = period.month.to_string();
        let mut conn = self.conn().await?;
        let saved = conn
            .transaction(async |c| {
                let existing: Option<(i64, String)> = po::table
                    .filter(po::grid_id.eq(terms.grid_id.get()))
                    .filter(po::month.eq(&month))
                    .select((po::id, po::status))
                    .for_update()
                    .first(c)
                    .await
                    .optional()?;
                let (id, created) = match existing {
                    Some((id, status)) if status == PayoutStatus::WaitingForApproval.as_str() => {
                        diesel::update(po::table.find(id))
                            .set((
                                po::proposed_amount_minor.eq(breakdown.payout_minor),
                                po::breakdown.eq(&details),
                                po::currency.eq(terms.currency.as_str()),
                                po::updated_at.eq(Utc::now()),
                            ))
                            .execute(c)
                            .await?;
                        (id, false)
                    }
                    Some((_, status)) => {
                        return Err(StoreError::Domain(DomainError::Conflict(format!(
                            "the payout of {month} for this grid is {status}; it cannot be recomputed"
                        ))));
                    }
                    None => {
                        let id: i64 = diesel::insert_into(po::table)
                            .values((
                                po::organization_id.eq(terms.organization_id.get()),
                                po::grid_id.eq(terms.grid_id.get()),
                                po::month.eq(&month),
                                po::period_start.eq(period.start),
                                po::period_end.eq(period.end),
                                po::currency.eq(terms.currency.as_str()),
                                po::proposed_amount_minor.eq(breakdown.payout_minor),
                                po::status.eq(PayoutStatus::WaitingForApproval.as_str()),
                                po::breakdown.eq(&details),
                            ))
                            .returning(po::id)
                            .get_result(c)
                            .await?;
                        (id, true)
                    }
                };
                record(
                    c,
                    terms.organization_id.get(),
                    "payout",
                    Some(id),
                    &audit(
                        by,
                        if created { "payout.drafted" } else { "payout.recomputed" },
                        serde_json::json!({"grid_id": terms.grid_id, "month": month,
                            "proposed_amount_minor": breakdown.payout_minor}),
                    ),
                )
                .await?;
                Ok::<_, StoreError>((load(c, id).await?, created))
            })
            .await?;
        Ok(saved)
    }

    async fn list(
        &self,
        scope: TenantScope,
        f: PayoutFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Payout>, DomainError> {
        let mut conn = self.conn().await?;
        let mut q = po::table.select(Row::as_select()).into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(po::organization_id.eq(org.get()));
        }
        if let Some(grid) = f.grid_id {
            q = q.filter(po::grid_id.eq(grid.get()));
        }
        if let Some(s) = f.status {
            q = q.filter(po::status.eq(s.as_str()));
        }
        if let Some(m) = f.month {
            q = q.filter(po::month.eq(m.to_string()));
        }
        if let Some(after) = page.after_id {
            q = q.filter(po::id.gt(after));
        }
        let rows: Vec<Row> = q
            .order(po::id)
            .limit(page.fetch_limit())
            .load(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(rows
            .into_iter()
            .map(Payout::try_from)
            .collect::<Result<_>>()?)
    }

    async fn get(
        &self,
        scope: TenantScope,
        id: PayoutId,
    ) -> std::result::Result<Option<Payout>, DomainError> {
        let mut conn = self.conn().await?;
        let mut q = po::table
            .filter(po::id.eq(id.get()))
            .select(Row::as_select())
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(po::organization_id.eq(org.get()));
        }
        Ok(q.first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?
            .map(Payout::try_from)
            .transpose()?)
    }

    async fn approve(
        &self,
        id: PayoutId,
        amount_minor: i64,
        bank: &BankAccount,
        by: Actor,
    ) -> std::result::Result<bool, DomainError> {
        let mut conn = self.conn().await?;
        let moved = conn
            .transaction(async |c| {
                let Some(current) = lock(c, id.get()).await? else {
                    return Ok(false);
                };
                if current.status.after(PayoutEvent::Approve).is_err() {
                    return Ok(false);
                }
                diesel::update(po::table.find(id.get()))
                    .set((
                        po::status.eq(PayoutStatus::Approved.as_str()),
                        po::approved_amount_minor.eq(amount_minor),
                        po::bank_code.eq(bank.bank_code.trim()),
                        po::account_number.eq(bank.account_number.trim()),
                        po::account_name.eq(&bank.account_name),
                        po::approved_by_account_id.eq(by.account.map(|a| a.get())),
                        po::approved_by_api_key_id.eq(by.api_key.map(|k| k.get())),
                        po::approved_at.eq(Utc::now()),
                        po::updated_at.eq(Utc::now()),
                    ))
                    .execute(c)
                    .await?;
                record(
                    c,
                    current.organization_id.get(),
                    "payout",
                    Some(id.get()),
                    &audit(
                        by,
                        "payout.approved",
                        // The account number is kept on the payout, not copied into the trail.
                        serde_json::json!({"approved_amount_minor": amount_minor,
                            "bank_code": bank.bank_code.trim()}),
                    ),
                )
                .await?;
                Ok::<_, StoreError>(true)
            })
            .await?;
        Ok(moved)
    }

    async fn start_transfer(
        &self,
        id: PayoutId,
        by: Actor,
    ) -> std::result::Result<Option<String>, DomainError> {
        let mut conn = self.conn().await?;
        let reference_used = conn
            .transaction(async |c| {
                let Some(current) = lock(c, id.get()).await? else {
                    return Ok(None);
                };
                if current.status.after(PayoutEvent::StartTransfer).is_err() {
                    return Ok(None);
                }
                let attempt: i32 = po::table
                    .find(id.get())
                    .select(po::transfer_attempt)
                    .first(c)
                    .await?;
                // A new reference after a failure or for the first attempt; the same one when the
                // provider never received the previous attempt (it deduplicates by reference).
                let attempt = match (current.status, &current.transfer_reference) {
                    (PayoutStatus::Approved, Some(_)) => attempt,
                    _ => attempt + 1,
                };
                let reference = reference(id.get(), attempt);
                let Some(amount) = current.approved_amount_minor else {
                    return Err(StoreError::Domain(DomainError::Conflict(
                        "the payout has no approval".into(),
                    )));
                };
                // The money leaves the organization's wallet before the provider is asked to send
                // it (refused here, nothing is sent); a failed or unsent transfer gives it back.
                let posted = post_payout(
                    c,
                    &PayoutWithdrawal {
                        payout_id: id.get(),
                        organization: current.organization_id.get(),
                        grid: current.grid_id.get(),
                        amount: Money::new(amount, current.currency),
                        provider: PAYOUT_PROVIDER,
                        reference: &reference,
                    },
                    by,
                )
                .await?;
                set_transfer_order(c, id.get(), posted.order_id).await?;
                diesel::update(po::table.find(id.get()))
                    .set((
                        po::status.eq(PayoutStatus::Processing.as_str()),
                        po::transfer_attempt.eq(attempt),
                        po::transfer_reference.eq(&reference),
                        po::provider_transfer_id.eq(None::<String>),
                        po::failure_reason.eq(None::<String>),
                        po::updated_at.eq(Utc::now()),
                    ))
                    .execute(c)
                    .await?;
                record(
                    c,
                    current.organization_id.get(),
                    "payout",
                    Some(id.get()),
                    &audit(
                        by,
                        "payout.transfer_started",
                        serde_json::json!({"reference": reference,
                            "amount_minor": current.approved_amount_minor,
                            "order_id": posted.order_id}),
                    ),
                )
                .await?;
                Ok::<_, StoreError>(Some(reference))
            })
            .await?;
        Ok(reference_used)
    }

    async fn processing(&self, limit: i64) -> std::result::Result<Vec<Payout>, DomainError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = po::table
            .filter(po::status.eq(PayoutStatus::Processing.as_str()))
            .order((po::updated_at.asc(), po::id.asc()))
            .limit(limit)
            .select(Row::as_select())
            .load(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(rows
            .into_iter()
            .map(Payout::try_from)
            .collect::<Result<Vec<_>>>()?)
    }

    async fn processing_transfer<'a>(
        &self,
        provider_id: &str,
        reference: Option<&'a str>,
    ) -> std::result::Result<Option<Payout>, DomainError> {
        let mut conn = self.conn().await?;
        let processing = || po::table.filter(po::status.eq(PayoutStatus::Processing.as_str()));
        let mut row: Option<Row> = processing()
            .filter(po::provider_transfer_id.eq(provider_id))
            .select(Row::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        if let (None, Some(reference)) = (&row, reference) {
            row = processing()
                .filter(po::transfer_reference.eq(reference))
                .select(Row::as_select())
                .first(&mut conn)
                .await
                .optional()
                .map_err(StoreError::from)?;
        }
        Ok(row.map(Payout::try_from).transpose()?)
    }

    async fn transfer_accepted(
        &self,
        reference: &str,
        provider_id: &str,
    ) -> std::result::Result<(), DomainError> {
        let mut conn = self.conn().await?;
        diesel::update(
            po::table
                .filter(po::transfer_reference.eq(reference))
                .filter(po::status.eq(PayoutStatus::Processing.as_str())),
        )
        .set((
            po::provider_transfer_id.eq(provider_id),
            po::updated_at.eq(Utc::now()),
        ))
        .execute(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(())
    }

    async fn settle_transfer(
        &self,
        reference: &str,
        provider_id: Option<String>,
        outcome: TransferOutcome,
    ) -> std::result::Result<Option<PayoutId>, DomainError> {
        let mut conn = self.conn().await?;
        let settled = conn
            .transaction(async |c| {
                let id: Option<i64> = po::table
                    .filter(po::transfer_reference.eq(reference))
                    .select(po::id)
                    .for_update()
                    .first(c)
                    .await
                    .optional()?;
                let Some(id) = id else {
                    return Ok(None);
                };
                let Some(current) = lock(c, id).await? else {
                    return Ok(None);
                };
                let (event, reason, action) = match &outcome {
                    TransferOutcome::Succeeded => {
                        (PayoutEvent::TransferSucceeded, None, "payout.paid")
                    }
                    TransferOutcome::Failed(r) => (
                        PayoutEvent::TransferFailed,
                        Some(r.clone()),
                        "payout.failed",
                    ),
                    TransferOutcome::NotSent(r) => (
                        PayoutEvent::TransferNotSent,
                        Some(r.clone()),
                        "payout.transfer_not_sent",
                    ),
                };
                // A repeated or late outcome of a payout that moved on changes nothing.
                let Ok(next) = current.status.after(event) else {
                    return Ok(None);
                };
                let now = Utc::now();
                diesel::update(po::table.find(id))
                    .set((
                        po::status.eq(next.as_str()),
                        po::failure_reason.eq(&reason),
                        po::provider_transfer_id
                            .eq(provider_id.clone().or(current.provider_transfer_id.clone())),
                        po::paid_at.eq((next == PayoutStatus::Paid).then_some(now)),
                        po::updated_at.eq(now),
                    ))
                    .execute(c)
                    .await?;
                // The transfer will not pay: its money goes back to the organization's wallet
                // (once: a repeated outcome finds the withdrawal reversed already).
                let reversal = match next {
                    PayoutStatus::Failed | PayoutStatus::Approved => {
                        match transfer_order(c, id).await? {
                            Some(order) => {
                                let why = reason.as_deref().unwrap_or("the transfer did not pay");
                                reverse_payout(c, id, order, why).await?
                            }
                            // Started before transfers were posted: nothing to give back.
                            None => None,
                        }
                    }
                    PayoutStatus::Paid
                    | PayoutStatus::Processing
                    | PayoutStatus::WaitingForApproval => None,
                };
                record(
                    c,
                    current.organization_id.get(),
                    "payout",
                    Some(id),
                    &audit(
                        Actor::default(),
                        action,
                        serde_json::json!({"reference": reference, "provider_id": provider_id,
                            "reason": reason,
                            "reversal_order_id": reversal.map(|r| r.order_id)}),
                    ),
                )
                .await?;
                Ok::<_, StoreError>(Some(PayoutId(id)))
            })
            .await?;
        Ok(settled)
    }
}
