//! Refunds owed at a payment provider (`provider_refunds`, an outbox): written by
//! [`enqueue`] in the transaction that posts a reversing order of a provider payment, claimed by
//! the refund worker with `FOR UPDATE SKIP LOCKED`, and moved by compare-and-set; every status
//! change is audited on the reversing order in the same statement.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::{Currency, DomainError, OrderId, OrganizationId, TenantScope};
use payments::refunds::{
    ProviderRefundRecord, ProviderRefundStatus, ProviderRefundStore, RefundOutcome,
};

use crate::{Db, Result, StoreError};

/// The columns every query answers.
const COLUMNS: &str = "id, organization_id, order_id, original_order_id, provider, \
     provider_transaction_id, amount_minor, currency::text AS currency, status, provider_refund_id, \
     attempts, next_attempt_at, last_error, created_at, updated_at, completed_at";

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
    #[diesel(sql_type = BigInt)]
    order_id: i64,
    #[diesel(sql_type = BigInt)]
    original_order_id: i64,
    #[diesel(sql_type = Text)]
    provider: String,
    #[diesel(sql_type = Text)]
    provider_transaction_id: String,
    #[diesel(sql_type = BigInt)]
    amount_minor: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Text>)]
    provider_refund_id: Option<String>,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Timestamptz)]
    next_attempt_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    completed_at: Option<DateTime<Utc>>,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Domain(DomainError::Internal(format!(
        "unreadable provider refund {what}"
    )))
}

impl Row {
    fn into_record(self) -> Result<ProviderRefundRecord> {
        let status = ProviderRefundStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?;
        let currency = Currency::parse(self.currency.trim()).map_err(|_| corrupt("currency"))?;
        let open = matches!(
            status,
            ProviderRefundStatus::Pending | ProviderRefundStatus::Sent
        );
        let (failure_reason, last_error) = match status {
            ProviderRefundStatus::Failed => (self.last_error, None),
            ProviderRefundStatus::Pending
            | ProviderRefundStatus::Sent
            | ProviderRefundStatus::Completed => (None, self.last_error),
        };
        Ok(ProviderRefundRecord {
            id: self.id,
            organization_id: OrganizationId(self.organization_id),
            order_id: OrderId(self.order_id),
            original_order_id: OrderId(self.original_order_id),
            provider: self.provider,
            provider_transaction_id: self.provider_transaction_id,
            amount: self.amount_minor,
            currency,
            status,
            provider_refund_id: self.provider_refund_id,
            attempts: self.attempts,
            next_attempt_at: open.then_some(self.next_attempt_at),
            failure_reason,
            last_error,
            created_at: self.created_at,
            updated_at: self.updated_at,
            completed_at: self.completed_at,
        })
    }
}

/// A provider refund to make, for the reversing order `order_id` of the provider payment
/// `original_order_id`. Called in the reversal's transaction; audited there.
pub(crate) struct NewProviderRefund<'a> {
    pub(crate) organization_id: i64,
    pub(crate) order_id: i64,
    pub(crate) original_order_id: i64,
    pub(crate) provider: &'a str,
    pub(crate) provider_transaction_id: &'a str,
    pub(crate) amount_minor: i64,
    pub(crate) currency: &'a str,
}

pub(crate) async fn enqueue(c: &mut AsyncPgConnection, n: NewProviderRefund<'_>) -> Result<()> {
    diesel::sql_query(
        "WITH r AS (
             INSERT INTO provider_refunds (organization_id, order_id, original_order_id, provider,
                 provider_transaction_id, amount_minor, currency)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING organization_id, order_id, provider, provider_transaction_id
         )
         INSERT INTO audit_events (organization_id, action, resource_type, resource_id, details)
         SELECT organization_id, 'provider_refund.pending', 'order', order_id,
                jsonb_build_object('provider', provider,
                                   'provider_transaction_id', provider_transaction_id,
                                   'amount', $6::bigint, 'currency', $7::text)
         FROM r",
    )
    .bind::<BigInt, _>(n.organization_id)
    .bind::<BigInt, _>(n.order_id)
    .bind::<BigInt, _>(n.original_order_id)
    .bind::<Text, _>(n.provider)
    .bind::<Text, _>(n.provider_transaction_id)
    .bind::<BigInt, _>(n.amount_minor)
    .bind::<Text, _>(n.currency)
    .execute(c)
    .await?;
    metrics::counter!("tiamat_provider_refunds_total", "outcome" => "queued").increment(1);
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Db {
    async fn refunds_claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<ProviderRefundRecord>> {
        let until = chrono::Duration::from_std(lease)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .unwrap_or(now);
        let mut conn = self.conn().await?;
        // One statement: the rows are locked (others skip them), pushed out by the lease and
        // counted, and the lock ends with it; the lease keeps them ours while we call out.
        let rows: Vec<Row> = diesel::sql_query(format!(
            "WITH due AS (
                 SELECT id FROM provider_refunds
                 WHERE status IN ('PENDING', 'SENT') AND next_attempt_at <= $1
                 ORDER BY next_attempt_at, id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE provider_refunds p
             SET next_attempt_at = $2, updated_at = now(),
                 attempts = p.attempts + CASE WHEN p.status = 'PENDING' THEN 1 ELSE 0 END
             FROM due WHERE p.id = due.id
             RETURNING {}",
            COLUMNS
                .split(", ")
                .map(|c| format!("p.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind::<Timestamptz, _>(now)
        .bind::<Timestamptz, _>(until)
        .bind::<BigInt, _>(limit.clamp(1, 500))
        .load(&mut conn)
        .await?;
        rows.into_iter().map(Row::into_record).collect()
    }

    async fn refunds_retake(&self, id: i64, attempts: i32, lease: Duration) -> Result<bool> {
        let mut conn = self.conn().await?;
        // The lease counts from the database's clock now, not from the pass's start: it must
        // cover the call about to be made.
        let n = diesel::sql_query(
            "UPDATE provider_refunds
             SET next_attempt_at = now() + make_interval(secs => $3), updated_at = now()
             WHERE id = $1 AND status = 'PENDING' AND attempts = $2",
        )
        .bind::<BigInt, _>(id)
        .bind::<Integer, _>(attempts)
        .bind::<diesel::sql_types::Double, _>(lease.as_secs_f64())
        .execute(&mut conn)
        .await?;
        let held = n == 1;
        if !held {
            metrics::counter!("tiamat_provider_refunds_total", "outcome" => "claim_lost")
                .increment(1);
        }
        Ok(held)
    }

    async fn refunds_record(
        &self,
        id: i64,
        from: ProviderRefundStatus,
        attempts: i32,
        outcome: RefundOutcome,
    ) -> Result<bool> {
        let (to, refund_id, next, error, action) = match outcome {
            RefundOutcome::Sent {
                provider_refund_id,
                next_look_at,
            } => (
                ProviderRefundStatus::Sent,
                Some(provider_refund_id),
                Some(next_look_at),
                None,
                Some("provider_refund.sent"),
            ),
            RefundOutcome::Completed { provider_refund_id } => (
                ProviderRefundStatus::Completed,
                Some(provider_refund_id),
                None,
                None,
                Some("provider_refund.completed"),
            ),
            RefundOutcome::Failed { reason } => (
                ProviderRefundStatus::Failed,
                None,
                None,
                Some(reason.chars().take(500).collect::<String>()),
                Some("provider_refund.failed"),
            ),
            RefundOutcome::Later {
                error,
                next_attempt_at,
            } => (
                from,
                None,
                Some(next_attempt_at),
                error.map(|e| e.chars().take(500).collect::<String>()),
                None,
            ),
        };
        let mut conn = self.conn().await?;
        // One statement: the compare-and-set and its audit row commit together. `attempts` fences
        // out a worker whose claim was taken over after its lease ran out.
        let n: Count = diesel::sql_query(
            "WITH u AS (
                 UPDATE provider_refunds
                 SET status = $3,
                     provider_refund_id = COALESCE($4, provider_refund_id),
                     next_attempt_at = COALESCE($5, next_attempt_at),
                     last_error = $6,
                     completed_at = CASE WHEN $3 = 'COMPLETED' THEN now() ELSE completed_at END,
                     updated_at = now()
                 WHERE id = $1 AND status = $2 AND attempts = $8
                 RETURNING organization_id, order_id, status, provider_refund_id, last_error, attempts
             ), a AS (
                 INSERT INTO audit_events (organization_id, action, resource_type, resource_id, details)
                 SELECT organization_id, $7, 'order', order_id,
                        jsonb_build_object('provider_refund_status', status,
                                           'provider_refund_id', provider_refund_id,
                                           'reason', last_error, 'attempts', attempts)
                 FROM u WHERE $7 IS NOT NULL
             )
             SELECT count(*) AS n FROM u",
        )
        .bind::<BigInt, _>(id)
        .bind::<Text, _>(from.as_str())
        .bind::<Text, _>(to.as_str())
        .bind::<Nullable<Text>, _>(refund_id)
        .bind::<Nullable<Timestamptz>, _>(next)
        .bind::<Nullable<Text>, _>(error)
        .bind::<Nullable<Text>, _>(action)
        .bind::<Integer, _>(attempts)
        .get_result(&mut conn)
        .await?;
        let changed = n.n == 1;
        if changed {
            let outcome = match to {
                ProviderRefundStatus::Sent => "sent",
                ProviderRefundStatus::Completed => "completed",
                ProviderRefundStatus::Failed => "failed",
                ProviderRefundStatus::Pending => "retried",
            };
            let outcome = if to == from && to == ProviderRefundStatus::Sent {
                "polled"
            } else {
                outcome
            };
            metrics::counter!("tiamat_provider_refunds_total", "outcome" => outcome).increment(1);
        }
        Ok(changed)
    }

    /// No index on `provider_refund_id`: webhooks are rare and the table small; add one with a
    /// migration should it grow.
    async fn refunds_by_provider_id(
        &self,
        provider: &str,
        provider_refund_id: &str,
    ) -> Result<Option<ProviderRefundRecord>> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = diesel::sql_query(format!(
            "SELECT {COLUMNS} FROM provider_refunds
             WHERE provider = $1 AND provider_refund_id = $2
             ORDER BY id LIMIT 1"
        ))
        .bind::<Text, _>(provider)
        .bind::<Text, _>(provider_refund_id)
        .load(&mut conn)
        .await?;
        rows.into_iter().next().map(Row::into_record).transpose()
    }

    async fn refunds_for_payment(
        &self,
        provider: &str,
        provider_transaction_id: &str,
    ) -> Result<Vec<ProviderRefundRecord>> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = diesel::sql_query(format!(
            "SELECT {COLUMNS} FROM provider_refunds
             WHERE provider = $1 AND provider_transaction_id = $2
             ORDER BY id LIMIT 100"
        ))
        .bind::<Text, _>(provider)
        .bind::<Text, _>(provider_transaction_id)
        .load(&mut conn)
        .await?;
        rows.into_iter().map(Row::into_record).collect()
    }

    async fn refunds_for_order(
        &self,
        scope: TenantScope,
        order: OrderId,
    ) -> Result<Option<ProviderRefundRecord>> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = diesel::sql_query(format!(
            "SELECT {COLUMNS} FROM provider_refunds
             WHERE order_id = $1 AND ($2::bigint IS NULL OR organization_id = $2)"
        ))
        .bind::<BigInt, _>(order.get())
        .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
        .load(&mut conn)
        .await?;
        rows.into_iter().next().map(Row::into_record).transpose()
    }
}

#[async_trait]
impl ProviderRefundStore for Db {
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: i64,
    ) -> std::result::Result<Vec<ProviderRefundRecord>, DomainError> {
        Ok(self.refunds_claim(now, lease, limit).await?)
    }

    async fn retake(
        &self,
        id: i64,
        attempts: i32,
        lease: Duration,
    ) -> std::result::Result<bool, DomainError> {
        Ok(self.refunds_retake(id, attempts, lease).await?)
    }

    async fn record_outcome(
        &self,
        id: i64,
        from: ProviderRefundStatus,
        attempts: i32,
        outcome: RefundOutcome,
    ) -> std::result::Result<bool, DomainError> {
        Ok(self.refunds_record(id, from, attempts, outcome).await?)
    }

    async fn by_provider_refund_id(
        &self,
        provider: &str,
        provider_refund_id: &str,
    ) -> std::result::Result<Option<ProviderRefundRecord>, DomainError> {
        Ok(self
            .refunds_by_provider_id(provider, provider_refund_id)
            .await?)
    }

    async fn for_payment(
        &self,
        provider: &str,
        provider_transaction_id: &str,
    ) -> std::result::Result<Vec<ProviderRefundRecord>, DomainError> {
        Ok(self
            .refunds_for_payment(provider, provider_transaction_id)
            .await?)
    }

    async fn for_order(
        &self,
        scope: TenantScope,
        order: OrderId,
    ) -> std::result::Result<Option<ProviderRefundRecord>, DomainError> {
        Ok(self.refunds_for_order(scope, order).await?)
    }
}
