//! The reconciliation loop's storage ([`ReconcileRepo`]): grid modes and the single-flight lock,
//! a PostgreSQL session advisory lock held on a dedicated connection for the whole pass. If the
//! process dies mid-pass its session ends and the lock with it.

use async_trait::async_trait;
use diesel::sql_types::{BigInt, Bool, Jsonb, Nullable, Text, Timestamptz};
use diesel::{QueryableByName, sql_query};
use diesel_async::pooled_connection::deadpool::Object;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::{DomainError, GridId, TenantScope};
use meters::{ReconcileRepo, ReconciliationMode, Requester, ShadowReport, SingleFlight};

use crate::interactions::corrupt;
use crate::prepared::Prepare;
use crate::{Db, StoreError};

#[derive(QueryableByName)]
struct ModeRow {
    #[diesel(sql_type = Text)]
    reconciliation_mode: String,
}

/// The advisory lock key of the reconciler (any fixed number unique in this database).
const RECONCILER_LOCK: i64 = 0x7469_616d_6174_0001;

struct AdvisoryLock {
    conn: Option<Object<AsyncPgConnection>>,
}

#[async_trait]
impl SingleFlight for AdvisoryLock {
    async fn release(mut self: Box<Self>) {
        if let Some(mut conn) = self.conn.take() {
            let unlocked = sql_query("SELECT pg_advisory_unlock($1)")
                .bind::<BigInt, _>(RECONCILER_LOCK)
                .execute(&mut conn)
                .await;
            if unlocked.is_err() {
                // Not returned to the pool: closing the session frees the lock.
                drop(Object::take(conn));
            }
        }
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        // Dropped without release (a panic or a cancelled pass): close the session rather than
        // return a connection that still holds the lock to the pool.
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }
}

#[async_trait]
impl ReconcileRepo for Db {
    async fn grid_modes(&self) -> Result<Vec<(GridId, ReconciliationMode)>, DomainError> {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Text)]
            reconciliation_mode: String,
        }
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = sql_query(
            "SELECT id, reconciliation_mode FROM grids WHERE deleted_at IS NULL ORDER BY id",
        )
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        rows.into_iter()
            .map(|r| {
                let mode = ReconciliationMode::parse(&r.reconciliation_mode)
                    .ok_or_else(|| corrupt("reconciliation mode", &r.reconciliation_mode))?;
                Ok((GridId(r.id), mode))
            })
            .collect::<Result<_, StoreError>>()
            .map_err(DomainError::from)
    }

    async fn batch_times(
        &self,
        grid: GridId,
        window: chrono::Duration,
    ) -> Result<Vec<chrono::DateTime<chrono::Utc>>, DomainError> {
        #[derive(QueryableByName)]
        struct At {
            #[diesel(sql_type = diesel::sql_types::Timestamptz)]
            at: chrono::DateTime<chrono::Utc>,
        }
        let mut conn = self.conn().await?;
        // Past executions, and each live rule's next fire (local HH:MM in the grid's timezone).
        let rows: Vec<At> = sql_query(
            "SELECT created_at AS at FROM directive_batch_executions \
              WHERE grid_id = $1 AND created_at > now() - make_interval(secs => $2) \
             UNION ALL \
             SELECT CASE WHEN t.today < t.local_now THEN t.today + interval '1 day' ELSE t.today END \
                    AT TIME ZONE t.timezone AS at \
               FROM (SELECT g.timezone, now() AT TIME ZONE g.timezone AS local_now, \
                            date_trunc('day', now() AT TIME ZONE g.timezone) \
                              + make_interval(hours => b.hour, mins => b.minute) AS today \
                       FROM directive_batches b JOIN grids g ON g.id = b.grid_id \
                      WHERE b.grid_id = $1 AND b.deleted_at IS NULL AND b.done_at IS NULL) t",
        )
        .bind::<BigInt, _>(grid.get())
        .bind::<diesel::sql_types::Double, _>(window.num_seconds() as f64)
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(rows.into_iter().map(|r| r.at).collect())
    }

    async fn mode(
        &self,
        scope: TenantScope,
        grid: GridId,
    ) -> Result<Option<ReconciliationMode>, DomainError> {
        let mut conn = self.conn().await?;
        let rows: Vec<ModeRow> = sql_query(
            "SELECT reconciliation_mode FROM grids WHERE id = $1 AND deleted_at IS NULL \
             AND ($2::bigint IS NULL OR organization_id = $2)",
        )
        .bind::<BigInt, _>(grid.get())
        .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        rows.into_iter()
            .next()
            .map(|r| {
                ReconciliationMode::parse(&r.reconciliation_mode)
                    .ok_or_else(|| corrupt("reconciliation mode", &r.reconciliation_mode))
            })
            .transpose()
            .map_err(DomainError::from)
    }

    async fn set_mode(
        &self,
        scope: TenantScope,
        grid: GridId,
        mode: ReconciliationMode,
        by: Requester,
    ) -> Result<Option<ReconciliationMode>, DomainError> {
        #[derive(QueryableByName)]
        struct Changed {
            #[diesel(sql_type = BigInt)]
            organization_id: i64,
            #[diesel(sql_type = Text)]
            previous: String,
        }
        let mut conn = self.conn().await?;
        let changed = conn
            .transaction(async |c| {
                let rows: Vec<Changed> = sql_query(
                    "UPDATE grids g SET reconciliation_mode = $3, updated_at = now() \
                     FROM (SELECT id, reconciliation_mode AS previous FROM grids WHERE id = $1 FOR UPDATE) old \
                     WHERE g.id = old.id AND g.deleted_at IS NULL \
                     AND ($2::bigint IS NULL OR g.organization_id = $2) \
                     RETURNING g.organization_id, old.previous",
                )
                .bind::<BigInt, _>(grid.get())
                .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
                .bind::<Text, _>(mode.as_str())
                .load(c)
                .await?;
                let Some(row) = rows.into_iter().next() else {
                    return Ok::<_, StoreError>(None);
                };
                let draft = orgs::AuditDraft {
                    actor_account_id: by.account,
                    actor_api_key_id: by.api_key,
                    action: "grid.reconciliation_mode_changed",
                    details: serde_json::json!({ "from": row.previous, "to": mode.as_str() }),
                };
                crate::audit::record(c, row.organization_id, "grid", Some(grid.get()), &draft)
                    .await?;
                if row.previous != mode.as_str() {
                    // It described what the previous mode would have done.
                    sql_query("DELETE FROM reconciliation_shadow_reports WHERE grid_id = $1")
                        .bind::<BigInt, _>(grid.get())
                        .execute(c)
                        .await?;
                }
                Ok(Some(mode))
            })
            .await?;
        Ok(changed)
    }

    async fn record_shadow_report(
        &self,
        grid: GridId,
        report: ShadowReport,
    ) -> Result<(), DomainError> {
        let json = serde_json::to_value(&report)
            .map_err(|e| DomainError::Internal(format!("shadow report: {e}")))?;
        let mut conn = self.conn().await?;
        // Only while the grid is still in SHADOW mode: a pass racing a mode change must not
        // leave a report behind for the new mode.
        sql_query(
            "INSERT INTO reconciliation_shadow_reports (grid_id, observed_at, report)
             SELECT id, $2, $3 FROM grids WHERE id = $1 AND reconciliation_mode = 'SHADOW'
             ON CONFLICT (grid_id) DO UPDATE
                SET observed_at = EXCLUDED.observed_at, report = EXCLUDED.report",
        )
        .bind::<BigInt, _>(grid.get())
        .bind::<Timestamptz, _>(report.observed_at)
        .bind::<Jsonb, _>(json)
        .prepared()
        .execute(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(())
    }

    async fn shadow_report(
        &self,
        scope: TenantScope,
        grid: GridId,
    ) -> Result<Option<ShadowReport>, DomainError> {
        #[derive(QueryableByName)]
        struct ReportRow {
            #[diesel(sql_type = Jsonb)]
            report: serde_json::Value,
        }
        let mut conn = self.conn().await?;
        let rows: Vec<ReportRow> = sql_query(
            "SELECT r.report FROM reconciliation_shadow_reports r JOIN grids g ON g.id = r.grid_id
             WHERE r.grid_id = $1 AND ($2::bigint IS NULL OR g.organization_id = $2)",
        )
        .bind::<BigInt, _>(grid.get())
        .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        rows.into_iter()
            .next()
            .map(|r| {
                serde_json::from_value(r.report).map_err(|e| {
                    DomainError::Internal(format!("shadow report of grid {grid}: {e}"))
                })
            })
            .transpose()
    }

    async fn try_single_flight(&self) -> Result<Option<Box<dyn SingleFlight>>, DomainError> {
        #[derive(QueryableByName)]
        struct Locked {
            #[diesel(sql_type = Bool)]
            locked: bool,
        }
        let mut conn = self.conn().await?;
        let got: Locked = sql_query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind::<BigInt, _>(RECONCILER_LOCK)
            .get_result(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(got
            .locked
            .then(|| Box::new(AdvisoryLock { conn: Some(conn) }) as Box<dyn SingleFlight>))
    }
}
