//! Directive batches in PostgreSQL: rules, executions, the `batch_interactions` junction, and the
//! bulk intake of one execution.
//!
//! The bulk intake takes the grid's qualifying meters in chunks. Per chunk, in one transaction:
//! the meters are locked (the same per-meter lock single commands take, so the two never
//! interleave), their unfinished interactions and shadows are loaded in two set-based queries,
//! each meter is planned in memory with the domain's rules ([`meters::batches::plan_meter`]),
//! and the outcome is written with a handful of statements over `unnest(...)` arrays: new rows,
//! coalesced counters, supersessions, expiries, shadows (version-checked), junction rows, live
//! events and one audit row.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Int2, Int4, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use grids::events::{EventKind, LiveEvent, Operation};
use grids::state::{GridStateChange, GridStateRepo};
use grids::vocab::{CommunicationProtocol, MeterType};
use kernel::{DcuId, DomainError, GridId, MeterId, OrganizationId, PageRequest, TenantScope};
use meters::batches::{
    ActionKind, BatchExecution, BatchMeter, BatchOrder, BatchRepo, BulkIntake, BulkReceipt,
    DirectiveBatchId, DirectiveRule, ExecutionFilter, ExecutionProgress, FireKey, GridSetup,
    RuleFilter, Settlement, StartedExecution, ValidRule, command_for, expirable_statuses,
    format_local_time, plan_meter, qualifies, supersedable_statuses, token_request,
};
use meters::{
    AttributeValue, BatchExecutionId, CommissioningId, GridFacts, IntakeAction, IntakePolicy,
    InteractionId, InteractionStatus, InteractionType, MeterFacts, MeterShadow, PendingInteraction,
    Requester, StsToken, TokenRequest,
};
use orgs::AuditDraft;

use crate::{Db, Result as StoreResult, StoreError};

/// Meters per transaction: big enough that the fixed costs vanish, small enough that locks and
/// the transaction stay short.
const CHUNK: usize = 5_000;
/// A chunk is planned again when a coalesce target or a shadow moved meanwhile.
const CHUNK_ATTEMPTS: usize = 3;

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Domain(DomainError::Internal(e.to_string()))
}

fn corrupt(what: &str, v: &str) -> StoreError {
    internal(format!("unknown {what} {v:?} in the database"))
}

fn conflict(msg: impl Into<String>) -> StoreError {
    StoreError::Domain(DomainError::Conflict(msg.into()))
}

fn unfinished_statuses() -> Vec<String> {
    InteractionStatus::ALL
        .into_iter()
        .filter(|s| s.is_unfinished())
        .map(|s| s.as_str().to_owned())
        .collect()
}

fn names(statuses: Vec<InteractionStatus>) -> Vec<String> {
    statuses
        .into_iter()
        .map(|s| s.as_str().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Rules

#[derive(QueryableByName)]
struct RuleRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
    #[diesel(sql_type = BigInt)]
    grid_id: i64,
    #[diesel(sql_type = Int2)]
    hour: i16,
    #[diesel(sql_type = Int2)]
    minute: i16,
    #[diesel(sql_type = Bool)]
    is_repeating: bool,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Nullable<Text>)]
    scan_kind: Option<String>,
    #[diesel(sql_type = Text)]
    timezone: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    done_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_fired_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

const RULE_SELECT: &str = "SELECT b.id, b.organization_id, b.grid_id, b.hour, b.minute, b.is_repeating, \
b.action, b.scan_kind, g.timezone, b.done_at, b.last_fired_at, b.created_at, b.updated_at \
FROM directive_batches b JOIN grids g ON g.id = b.grid_id";

fn parse_kind(s: &str) -> StoreResult<InteractionType> {
    InteractionType::parse(s).ok_or_else(|| corrupt("interaction type", s))
}

impl TryFrom<RuleRow> for DirectiveRule {
    type Error = StoreError;
    fn try_from(r: RuleRow) -> StoreResult<Self> {
        let time = chrono::NaiveTime::from_hms_opt(
            u32::try_from(r.hour).unwrap_or(99),
            u32::try_from(r.minute).unwrap_or(99),
            0,
        )
        .ok_or_else(|| corrupt("rule time", &format!("{}:{}", r.hour, r.minute)))?;
        Ok(DirectiveRule {
            id: DirectiveBatchId(r.id),
            organization_id: OrganizationId(r.organization_id),
            grid_id: GridId(r.grid_id),
            local_time: format_local_time(time),
            timezone: r.timezone,
            is_repeating: r.is_repeating,
            action: ActionKind::parse(&r.action).ok_or_else(|| corrupt("action", &r.action))?,
            scan_kind: r.scan_kind.as_deref().map(parse_kind).transpose()?,
            done_at: r.done_at,
            last_fired_at: r.last_fired_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

fn hour_minute(rule: &ValidRule) -> (i16, i16) {
    use chrono::Timelike;
    (
        i16::try_from(rule.local_time.hour()).unwrap_or(0),
        i16::try_from(rule.local_time.minute()).unwrap_or(0),
    )
}

async fn load_rule(
    c: &mut AsyncPgConnection,
    scope: TenantScope,
    id: i64,
) -> StoreResult<Option<DirectiveRule>> {
    let row: Option<RuleRow> = diesel::sql_query(format!(
        "{RULE_SELECT} WHERE b.id = $1 AND b.deleted_at IS NULL AND ($2::bigint IS NULL OR b.organization_id = $2)"
    ))
    .bind::<BigInt, _>(id)
    .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
    .get_result(c)
    .await
    .optional()?;
    row.map(DirectiveRule::try_from).transpose()
}

fn rule_details(rule: &ValidRule) -> serde_json::Value {
    serde_json::json!({
        "grid_id": rule.grid_id,
        "local_time": format_local_time(rule.local_time),
        "is_repeating": rule.is_repeating,
        "action": rule.action.kind(),
        "scan_kind": rule.action.scan_kind(),
    })
}

async fn audit(
    c: &mut AsyncPgConnection,
    organization: i64,
    resource: &'static str,
    id: i64,
    action: &'static str,
    by: Requester,
    details: serde_json::Value,
) -> StoreResult<()> {
    let draft = AuditDraft {
        actor_account_id: by.account,
        actor_api_key_id: by.api_key,
        action,
        details,
    };
    crate::audit::record(c, organization, resource, Some(id), &draft).await
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

// ---------------------------------------------------------------------------------------------
// Executions

#[derive(QueryableByName)]
struct ExecutionRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
    #[diesel(sql_type = BigInt)]
    grid_id: i64,
    #[diesel(sql_type = BigInt)]
    directive_batch_id: i64,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Nullable<Text>)]
    scan_kind: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    fire_key: Option<String>,
    #[diesel(sql_type = BigInt)]
    meter_count: i64,
    #[diesel(sql_type = BigInt)]
    created_count: i64,
    #[diesel(sql_type = BigInt)]
    coalesced_count: i64,
    #[diesel(sql_type = BigInt)]
    skipped_count: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    completed_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    qualified_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

const EXECUTION_SELECT: &str = "SELECT id, organization_id, grid_id, directive_batch_id, action, scan_kind, \
fire_key, meter_count, created_count, coalesced_count, skipped_count, completed_at, qualified_at, created_at \
FROM directive_batch_executions";

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    batch_execution_id: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = BigInt)]
    coalesced: i64,
}

/// Progress of `executions`, counted through the junction by the linked interactions' status.
async fn progress_of(
    c: &mut AsyncPgConnection,
    executions: &[i64],
) -> StoreResult<HashMap<i64, ExecutionProgress>> {
    let rows: Vec<CountRow> = diesel::sql_query(
        "SELECT bi.batch_execution_id, mi.status, count(*) AS n,
                count(*) FILTER (WHERE bi.coalesced) AS coalesced
           FROM batch_interactions bi
           JOIN meter_interactions mi ON mi.id = bi.interaction_id
          WHERE bi.batch_execution_id = ANY($1)
          GROUP BY bi.batch_execution_id, mi.status",
    )
    .bind::<Array<BigInt>, _>(executions)
    .load(c)
    .await?;
    let mut out: HashMap<i64, ExecutionProgress> = HashMap::new();
    for r in rows {
        let status =
            InteractionStatus::parse(&r.status).ok_or_else(|| corrupt("status", &r.status))?;
        let p = out.entry(r.batch_execution_id).or_default();
        p.add(status, r.n);
        p.coalesced += r.coalesced;
    }
    Ok(out)
}

fn to_execution(r: ExecutionRow, progress: ExecutionProgress) -> StoreResult<BatchExecution> {
    Ok(BatchExecution {
        id: BatchExecutionId(r.id),
        organization_id: OrganizationId(r.organization_id),
        grid_id: GridId(r.grid_id),
        directive_batch_id: DirectiveBatchId(r.directive_batch_id),
        action: ActionKind::parse(&r.action).ok_or_else(|| corrupt("action", &r.action))?,
        scan_kind: r.scan_kind.as_deref().map(parse_kind).transpose()?,
        fire_key: r.fire_key,
        meter_count: r.meter_count,
        created_count: r.created_count,
        coalesced_count: r.coalesced_count,
        skipped_count: r.skipped_count,
        progress,
        completed_at: r.completed_at,
        qualified_at: r.qualified_at,
        created_at: r.created_at,
    })
}

async fn with_progress(
    c: &mut AsyncPgConnection,
    rows: Vec<ExecutionRow>,
) -> StoreResult<Vec<BatchExecution>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut progress = progress_of(c, &ids).await?;
    rows.into_iter()
        .map(|r| {
            let p = progress.remove(&r.id).unwrap_or_default();
            to_execution(r, p)
        })
        .collect()
}

#[derive(QueryableByName)]
struct GridRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
    #[diesel(sql_type = Text)]
    timezone: String,
    #[diesel(sql_type = Bool)]
    uses_dual_meter_setup: bool,
}

impl Db {
    /// Sets one of the grid's FS flags through the grid-state repository (stamps, audit, live
    /// `grid` event).
    async fn set_fs_flag(
        &self,
        grid: GridId,
        change: GridStateChange,
        action: &'static str,
        details: serde_json::Value,
    ) -> StoreResult<()> {
        let draft = AuditDraft {
            actor_account_id: None,
            actor_api_key_id: None,
            action,
            details,
        };
        self.change_state(TenantScope::All, grid, change, draft)
            .await
            .map_err(StoreError::Domain)?;
        Ok(())
    }
}

#[async_trait]
impl BatchRepo for Db {
    async fn grid_setup(
        &self,
        scope: TenantScope,
        grid: GridId,
    ) -> Result<Option<GridSetup>, DomainError> {
        let mut conn = self.conn().await?;
        let row: Option<GridRow> = diesel::sql_query(
            "SELECT id, organization_id, timezone, uses_dual_meter_setup FROM grids
              WHERE id = $1 AND deleted_at IS NULL AND ($2::bigint IS NULL OR organization_id = $2)",
        )
        .bind::<BigInt, _>(grid.get())
        .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(StoreError::from)?;
        Ok(row.map(|r| GridSetup {
            grid_id: GridId(r.id),
            organization_id: OrganizationId(r.organization_id),
            timezone: r.timezone,
            uses_dual_meter_setup: r.uses_dual_meter_setup,
        }))
    }

    async fn create_rule(
        &self,
        organization: OrganizationId,
        rule: ValidRule,
        by: Requester,
    ) -> Result<DirectiveRule, DomainError> {
        let mut conn = self.conn().await?;
        let (hour, minute) = hour_minute(&rule);
        let created = conn
            .transaction(async |c| {
                let row: IdRow = diesel::sql_query(
                    "INSERT INTO directive_batches (organization_id, grid_id, hour, minute, is_repeating,
                         action, scan_kind, author_account_id, author_api_key_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                )
                .bind::<BigInt, _>(organization.get())
                .bind::<BigInt, _>(rule.grid_id.get())
                .bind::<Int2, _>(hour)
                .bind::<Int2, _>(minute)
                .bind::<Bool, _>(rule.is_repeating)
                .bind::<Text, _>(rule.action.kind().as_str())
                .bind::<Nullable<Text>, _>(rule.action.scan_kind().map(InteractionType::as_str))
                .bind::<Nullable<BigInt>, _>(by.account.map(|a| a.get()))
                .bind::<Nullable<BigInt>, _>(by.api_key.map(|k| k.get()))
                .get_result(c)
                .await?;
                audit(
                    c,
                    organization.get(),
                    "directive_batch",
                    row.id,
                    "directive_batch.created",
                    by,
                    rule_details(&rule),
                )
                .await?;
                load_rule(c, TenantScope::All, row.id)
                    .await?
                    .ok_or_else(|| internal("the new rule vanished"))
            })
            .await?;
        Ok(created)
    }

    async fn list_rules(
        &self,
        scope: TenantScope,
        filter: RuleFilter,
        page: PageRequest,
    ) -> Result<Vec<DirectiveRule>, DomainError> {
        let mut conn = self.conn().await?;
        let rows: Vec<RuleRow> = diesel::sql_query(format!(
            "{RULE_SELECT} WHERE b.deleted_at IS NULL
                AND ($1::bigint IS NULL OR b.organization_id = $1)
                AND ($2::bigint IS NULL OR b.grid_id = $2)
                AND ($3::bigint IS NULL OR b.id > $3)
              ORDER BY b.id LIMIT $4"
        ))
        .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
        .bind::<Nullable<BigInt>, _>(filter.grid_id.map(|g| g.get()))
        .bind::<Nullable<BigInt>, _>(page.after_id)
        .bind::<BigInt, _>(page.fetch_limit())
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(rows
            .into_iter()
            .map(DirectiveRule::try_from)
            .collect::<StoreResult<_>>()?)
    }

    async fn get_rule(
        &self,
        scope: TenantScope,
        id: DirectiveBatchId,
    ) -> Result<Option<DirectiveRule>, DomainError> {
        let mut conn = self.conn().await?;
        Ok(load_rule(&mut conn, scope, id.get()).await?)
    }

    async fn update_rule(
        &self,
        scope: TenantScope,
        id: DirectiveBatchId,
        rule: ValidRule,
        by: Requester,
    ) -> Result<Option<DirectiveRule>, DomainError> {
        let mut conn = self.conn().await?;
        let (hour, minute) = hour_minute(&rule);
        let updated = conn
            .transaction(async |c| {
                // A changed rule is armed again: a fired one-shot rule fires at its new time.
                let row: Option<(i64, i64)> = diesel::sql_query(
                    "UPDATE directive_batches
                        SET hour = $3, minute = $4, is_repeating = $5, action = $6, scan_kind = $7,
                            done_at = NULL, updated_at = now()
                      WHERE id = $1 AND deleted_at IS NULL
                        AND ($2::bigint IS NULL OR organization_id = $2)
                  RETURNING id, organization_id",
                )
                .bind::<BigInt, _>(id.get())
                .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
                .bind::<Int2, _>(hour)
                .bind::<Int2, _>(minute)
                .bind::<Bool, _>(rule.is_repeating)
                .bind::<Text, _>(rule.action.kind().as_str())
                .bind::<Nullable<Text>, _>(rule.action.scan_kind().map(InteractionType::as_str))
                .get_result::<OwnedIdOrg>(c)
                .await
                .optional()?
                .map(|r| (r.id, r.organization_id));
                let Some((id, organization)) = row else {
                    return Ok(None);
                };
                audit(
                    c,
                    organization,
                    "directive_batch",
                    id,
                    "directive_batch.updated",
                    by,
                    rule_details(&rule),
                )
                .await?;
                load_rule(c, TenantScope::All, id).await
            })
            .await?;
        Ok(updated)
    }

    async fn delete_rule(
        &self,
        scope: TenantScope,
        id: DirectiveBatchId,
        by: Requester,
    ) -> Result<bool, DomainError> {
        let mut conn = self.conn().await?;
        let deleted = conn
            .transaction(async |c| {
                let row: Option<OwnedIdOrg> = diesel::sql_query(
                    "UPDATE directive_batches SET deleted_at = now(), updated_at = now()
                      WHERE id = $1 AND deleted_at IS NULL
                        AND ($2::bigint IS NULL OR organization_id = $2)
                  RETURNING id, organization_id",
                )
                .bind::<BigInt, _>(id.get())
                .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
                .get_result(c)
                .await
                .optional()?;
                let Some(row) = row else {
                    return Ok::<_, StoreError>(false);
                };
                audit(
                    c,
                    row.organization_id,
                    "directive_batch",
                    row.id,
                    "directive_batch.deleted",
                    by,
                    serde_json::json!({}),
                )
                .await?;
                Ok(true)
            })
            .await?;
        Ok(deleted)
    }

    async fn schedulable_rules(&self) -> Result<Vec<DirectiveRule>, DomainError> {
        let mut conn = self.conn().await?;
        let rows: Vec<RuleRow> = diesel::sql_query(format!(
            "{RULE_SELECT} WHERE b.deleted_at IS NULL AND b.done_at IS NULL AND g.deleted_at IS NULL ORDER BY b.id"
        ))
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(rows
            .into_iter()
            .map(DirectiveRule::try_from)
            .collect::<StoreResult<_>>()?)
    }

    async fn start_execution(
        &self,
        rule: &DirectiveRule,
        fire_key: Option<FireKey>,
        by: Requester,
        now: DateTime<Utc>,
    ) -> Result<Option<StartedExecution>, DomainError> {
        let valid = rule.valid()?;
        let key = fire_key.map(|k| k.to_string());
        let mut conn = self.conn().await?;
        let started = conn
            .transaction(async |c| {
                let dual: Option<BoolRow> = diesel::sql_query(
                    "SELECT uses_dual_meter_setup AS value FROM grids WHERE id = $1 AND deleted_at IS NULL",
                )
                .bind::<BigInt, _>(rule.grid_id.get())
                .get_result(c)
                .await
                .optional()?;
                let Some(dual) = dual else {
                    return Err(StoreError::Domain(DomainError::NotFound("grid")));
                };
                // The partial unique index on (rule, fire_key) makes a second fire a no-op.
                let row: Option<IdRow> = diesel::sql_query(
                    "INSERT INTO directive_batch_executions (organization_id, grid_id, directive_batch_id,
                         action, scan_kind, fire_key, requested_by_account_id, requested_by_api_key_id, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (directive_batch_id, fire_key) WHERE fire_key IS NOT NULL DO NOTHING
                     RETURNING id",
                )
                .bind::<BigInt, _>(rule.organization_id.get())
                .bind::<BigInt, _>(rule.grid_id.get())
                .bind::<BigInt, _>(rule.id.get())
                .bind::<Text, _>(rule.action.as_str())
                .bind::<Nullable<Text>, _>(rule.scan_kind.map(InteractionType::as_str))
                .bind::<Nullable<Text>, _>(key.as_deref())
                .bind::<Nullable<BigInt>, _>(by.account.map(|a| a.get()))
                .bind::<Nullable<BigInt>, _>(by.api_key.map(|k| k.get()))
                .bind::<Timestamptz, _>(now)
                .get_result(c)
                .await
                .optional()?;
                let Some(row) = row else {
                    return Ok(None);
                };
                // Scheduled fires of one-shot rules use the rule up; runs by hand do not.
                diesel::sql_query(
                    "UPDATE directive_batches
                        SET last_fired_at = $2,
                            done_at = CASE WHEN $3 AND NOT is_repeating THEN $2 ELSE done_at END
                      WHERE id = $1",
                )
                .bind::<BigInt, _>(rule.id.get())
                .bind::<Timestamptz, _>(now)
                .bind::<Bool, _>(key.is_some())
                .execute(c)
                .await?;
                audit(
                    c,
                    rule.organization_id.get(),
                    "directive_batch_execution",
                    row.id,
                    "directive_batch.fired",
                    by,
                    serde_json::json!({"directive_batch_id": rule.id, "fire_key": key}),
                )
                .await?;
                Ok(Some(StartedExecution {
                    id: BatchExecutionId(row.id),
                    grid_id: rule.grid_id,
                    order: BatchOrder {
                        execution: BatchExecutionId(row.id),
                        action: valid.action,
                        uses_dual_meter_setup: dual.value,
                    },
                }))
            })
            .await?;
        if let (Some(s), Some(on)) = (&started, valid.action.fs()) {
            self.set_fs_flag(
                rule.grid_id,
                GridStateChange {
                    is_hps_on: None,
                    is_fs_on: None,
                    should_fs_be_on: Some(on),
                },
                "grid.fs_intent_set",
                serde_json::json!({"batch_execution_id": s.id, "should_fs_be_on": on}),
            )
            .await?;
        }
        Ok(started)
    }

    async fn list_executions(
        &self,
        scope: TenantScope,
        filter: ExecutionFilter,
        page: PageRequest,
    ) -> Result<Vec<BatchExecution>, DomainError> {
        let mut conn = self.conn().await?;
        let rows: Vec<ExecutionRow> = diesel::sql_query(format!(
            "{EXECUTION_SELECT} WHERE ($1::bigint IS NULL OR organization_id = $1)
                AND ($2::bigint IS NULL OR directive_batch_id = $2)
                AND ($3::bigint IS NULL OR grid_id = $3)
                AND ($4::bigint IS NULL OR id > $4)
              ORDER BY id LIMIT $5"
        ))
        .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
        .bind::<Nullable<BigInt>, _>(filter.directive_batch_id.map(|b| b.get()))
        .bind::<Nullable<BigInt>, _>(filter.grid_id.map(|g| g.get()))
        .bind::<Nullable<BigInt>, _>(page.after_id)
        .bind::<BigInt, _>(page.fetch_limit())
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(with_progress(&mut conn, rows).await?)
    }

    async fn get_execution(
        &self,
        scope: TenantScope,
        id: BatchExecutionId,
    ) -> Result<Option<BatchExecution>, DomainError> {
        let mut conn = self.conn().await?;
        let rows: Vec<ExecutionRow> = diesel::sql_query(format!(
            "{EXECUTION_SELECT} WHERE id = $1 AND ($2::bigint IS NULL OR organization_id = $2)"
        ))
        .bind::<BigInt, _>(id.get())
        .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(with_progress(&mut conn, rows).await?.into_iter().next())
    }

    async fn settle_execution(
        &self,
        id: BatchExecutionId,
        settlement: Settlement,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        let mut conn = self.conn().await?;
        let qualified_grid = conn
            .transaction(async |c| {
                if settlement.completed {
                    diesel::sql_query(
                        "UPDATE directive_batch_executions SET completed_at = $2
                          WHERE id = $1 AND completed_at IS NULL",
                    )
                    .bind::<BigInt, _>(id.get())
                    .bind::<Timestamptz, _>(now)
                    .execute(c)
                    .await?;
                }
                let Some(on) = settlement.qualified_fs else {
                    return Ok::<_, StoreError>(None);
                };
                // Only the reader that stamps qualification sets the grid's flag.
                let grid: Option<IdRow> = diesel::sql_query(
                    "UPDATE directive_batch_executions SET qualified_at = $2
                      WHERE id = $1 AND qualified_at IS NULL RETURNING grid_id AS id",
                )
                .bind::<BigInt, _>(id.get())
                .bind::<Timestamptz, _>(now)
                .get_result(c)
                .await
                .optional()?;
                Ok(grid.map(|g| (GridId(g.id), on)))
            })
            .await?;
        if let Some((grid, on)) = qualified_grid {
            self.set_fs_flag(
                grid,
                GridStateChange {
                    is_hps_on: None,
                    is_fs_on: Some(on),
                    should_fs_be_on: None,
                },
                "grid.fs_switched",
                serde_json::json!({"batch_execution_id": id, "is_fs_on": on}),
            )
            .await?;
        }
        Ok(())
    }
}

#[derive(QueryableByName)]
struct OwnedIdOrg {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
}

#[derive(QueryableByName)]
struct BoolRow {
    #[diesel(sql_type = Bool)]
    value: bool,
}

// ---------------------------------------------------------------------------------------------
// Bulk intake

#[derive(QueryableByName)]
struct MeterRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
    #[diesel(sql_type = Text)]
    external_reference: String,
    #[diesel(sql_type = Text)]
    meter_type: String,
    #[diesel(sql_type = Int4)]
    hps_mode_power_limit_w: i32,
    #[diesel(sql_type = Text)]
    communication_protocol: String,
    #[diesel(sql_type = Nullable<Text>)]
    version: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_seen_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<BigInt>)]
    dcu_id: Option<i64>,
}

#[derive(QueryableByName)]
struct PendingRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    meter_id: i64,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    intended: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<BigInt>)]
    commissioning_id: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Bool)]
    parked_for_retry: bool,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct ShadowRow {
    #[diesel(sql_type = BigInt)]
    meter_id: i64,
    #[diesel(sql_type = Jsonb)]
    state: serde_json::Value,
    #[diesel(sql_type = BigInt)]
    version: i64,
}

/// A changed interaction, for its live event.
#[derive(QueryableByName)]
struct Changed {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    meter_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    grid_id: Option<i64>,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

const CHANGED: &str = "id, meter_id, grid_id, kind, status, created_at, updated_at";

/// A loaded meter with what intake needs beyond planning.
struct Loaded {
    meter: BatchMeter,
    organization_id: i64,
    external_reference: String,
}

fn to_pending(r: PendingRow) -> StoreResult<PendingInteraction> {
    let intended = r
        .intended
        .map(serde_json::from_value::<AttributeValue>)
        .transpose()
        .map_err(|e| corrupt("intended value", &e.to_string()))?;
    Ok(PendingInteraction {
        id: InteractionId(r.id),
        meter_id: MeterId(r.meter_id),
        kind: parse_kind(&r.kind)?,
        status: InteractionStatus::parse(&r.status).ok_or_else(|| corrupt("status", &r.status))?,
        intended,
        commissioning_id: r.commissioning_id.map(CommissioningId),
        expires_at: r.expires_at,
        parked_for_retry: r.parked_for_retry,
        created_at: r.created_at,
    })
}

/// The qualifying meters of the grid, by id. FS switches skip meters in manual mode.
async fn qualifying_ids(
    c: &mut AsyncPgConnection,
    grid: GridId,
    order: BatchOrder,
) -> StoreResult<Vec<i64>> {
    let fs = order.action.fs().is_some();
    let rows: Vec<IdRow> = diesel::sql_query(
        "SELECT id FROM meters
          WHERE grid_id = $1 AND deleted_at IS NULL
            AND ($2 = false OR meter_type = 'FS')
            AND ($3 = false OR NOT manual_mode)
          ORDER BY id",
    )
    .bind::<BigInt, _>(grid.get())
    .bind::<Bool, _>(fs && order.uses_dual_meter_setup)
    .bind::<Bool, _>(fs)
    .load(c)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Loads `ids` (locked when `lock`) with their unfinished interactions and, for switches, their
/// shadows: three queries whatever the number of meters.
async fn load_meters(
    c: &mut AsyncPgConnection,
    grid: GridId,
    ids: &[i64],
    order: BatchOrder,
    lock: bool,
) -> StoreResult<Vec<Loaded>> {
    let lock_clause = if lock { "FOR UPDATE" } else { "" };
    let rows: Vec<MeterRow> = diesel::sql_query(format!(
        "SELECT id, organization_id, external_reference, meter_type, hps_mode_power_limit_w,
                communication_protocol, version, last_seen_at, dcu_id
           FROM meters
          WHERE id = ANY($1) AND grid_id = $2 AND deleted_at IS NULL
          ORDER BY id {lock_clause}"
    ))
    .bind::<Array<BigInt>, _>(ids)
    .bind::<BigInt, _>(grid.get())
    .load(c)
    .await?;
    let pending: Vec<PendingRow> = diesel::sql_query(
        "SELECT id, meter_id, kind, status, intended, commissioning_id, expires_at, parked_for_retry, created_at
           FROM meter_interactions
          WHERE meter_id = ANY($1) AND status = ANY($2)
          ORDER BY created_at, id",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Array<Text>, _>(unfinished_statuses())
    .load(c)
    .await?;
    let mut unfinished: HashMap<i64, Vec<PendingInteraction>> = HashMap::new();
    for p in pending {
        let meter = p.meter_id;
        unfinished.entry(meter).or_default().push(to_pending(p)?);
    }
    let mut shadows: HashMap<i64, MeterShadow> = HashMap::new();
    if order.action.fs().is_some() {
        let rows: Vec<ShadowRow> = diesel::sql_query(
            "SELECT meter_id, state, version FROM meter_shadows WHERE meter_id = ANY($1)",
        )
        .bind::<Array<BigInt>, _>(ids)
        .load(c)
        .await?;
        for r in rows {
            let mut shadow: MeterShadow = serde_json::from_value(r.state)
                .map_err(|e| corrupt("meter shadow", &e.to_string()))?;
            shadow.version = r.version;
            shadows.insert(r.meter_id, shadow);
        }
    }
    rows.into_iter()
        .map(|r| {
            let meter_type = MeterType::parse(&r.meter_type)
                .ok_or_else(|| corrupt("meter type", &r.meter_type))?;
            let protocol = CommunicationProtocol::parse(&r.communication_protocol)
                .ok_or_else(|| corrupt("protocol", &r.communication_protocol))?;
            Ok(Loaded {
                organization_id: r.organization_id,
                external_reference: r.external_reference,
                meter: BatchMeter {
                    meter_id: MeterId(r.id),
                    meter_type,
                    hps_mode_power_limit_w: r.hps_mode_power_limit_w,
                    facts: MeterFacts {
                        protocol,
                        firmware_version: r.version,
                        last_seen_at: r.last_seen_at,
                        dcu_id: r.dcu_id.map(DcuId),
                    },
                    unfinished: unfinished.remove(&r.id).unwrap_or_default(),
                    shadow: shadows.remove(&r.id),
                },
            })
        })
        .filter(|l: &StoreResult<Loaded>| {
            l.as_ref().map_or(true, |l| {
                qualifies(
                    order.action,
                    order.uses_dual_meter_setup,
                    l.meter.meter_type,
                )
            })
        })
        .collect()
}

/// Column arrays for the multi-row insert of new interactions.
#[derive(Default)]
struct NewRows {
    organization_id: Vec<i64>,
    meter_id: Vec<i64>,
    kind: Vec<String>,
    status: Vec<String>,
    priority: Vec<i32>,
    power_limit_w: Vec<Option<i32>>,
    token: Vec<Option<String>>,
    intended: Vec<Option<serde_json::Value>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    history: Vec<serde_json::Value>,
}

/// What supersedes a retired interaction: the row created for a meter, or the row a request
/// joined.
#[derive(Clone, Copy)]
enum Successor {
    NewRowOf(i64),
    Existing(i64),
}

fn event_payload(row: &Changed, operation: Operation) -> Option<String> {
    let event = LiveEvent {
        grid_id: GridId(row.grid_id?),
        kind: EventKind::MeterInteraction,
        operation,
        data: serde_json::json!({
            "id": row.id,
            "meter_id": row.meter_id,
            "kind": row.kind,
            "status": row.status,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }),
    };
    serde_json::to_string(&event).ok()
}

impl Db {
    /// One chunk in one transaction. `Conflict` when something moved between load and write
    /// (the whole chunk rolls back and is planned again).
    #[allow(clippy::too_many_arguments)]
    async fn intake_chunk(
        &self,
        grid: GridId,
        facts: Option<&GridFacts>,
        order: BatchOrder,
        ids: &[i64],
        tokens: &HashMap<MeterId, StsToken>,
        requested_by: Requester,
    ) -> StoreResult<BulkReceipt> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let now = Utc::now();
            let loaded = load_meters(c, grid, ids, order, true).await?;
            let policy = IntakePolicy::default();
            let mut receipt = BulkReceipt::default();
            let mut new_rows = NewRows::default();
            let mut coalesce_into: Vec<i64> = Vec::new();
            // (meter, interaction) links; new rows are linked once their ids are known.
            let mut links: Vec<(i64, bool)> = Vec::new();
            let mut supersede: Vec<(i64, Successor)> = Vec::new();
            let mut expire: Vec<i64> = Vec::new();
            let mut shadows: Vec<(MeterShadow, i64)> = Vec::new();
            let mut organization = None;
            for l in &loaded {
                let (kind, limit) = command_for(
                    order.action,
                    order.uses_dual_meter_setup,
                    l.meter.hps_mode_power_limit_w,
                );
                let token = tokens.get(&l.meter.meter_id).cloned();
                let commit =
                    plan_meter(&policy, order, &l.meter, facts, token, requested_by, now)
                        .map_err(StoreError::Domain)?;
                receipt.meters += 1;
                organization.get_or_insert(l.organization_id);
                match commit.plan.action {
                    IntakeAction::Create { expires_at, .. } => {
                        if kind.needs_generated_token() && commit.token.is_none() {
                            receipt.skipped += 1;
                            continue;
                        }
                        new_rows.organization_id.push(l.organization_id);
                        new_rows.meter_id.push(l.meter.meter_id.get());
                        new_rows.kind.push(kind.as_str().to_owned());
                        new_rows.status.push(commit.status.as_str().to_owned());
                        new_rows.priority.push(commit.priority);
                        new_rows.power_limit_w.push(limit);
                        new_rows
                            .token
                            .push(commit.token.as_ref().map(|t| t.expose().to_owned()));
                        new_rows.intended.push(
                            commit
                                .request
                                .intended()
                                .map(|v| serde_json::to_value(&v))
                                .transpose()
                                .map_err(internal)?,
                        );
                        new_rows.expires_at.push(expires_at);
                        new_rows.history.push(match &commit.history {
                            Some(h) => serde_json::json!([h]),
                            None => serde_json::json!([]),
                        });
                        for id in &commit.plan.supersede {
                            supersede.push((id.get(), Successor::NewRowOf(l.meter.meter_id.get())));
                        }
                        receipt.created += 1;
                    }
                    IntakeAction::Coalesce { into } => {
                        coalesce_into.push(into.get());
                        links.push((into.get(), true));
                        // Coalescing a switch can still retire contradicting older commands;
                        // they are superseded by the row this request joined.
                        for id in &commit.plan.supersede {
                            supersede.push((id.get(), Successor::Existing(into.get())));
                        }
                        receipt.coalesced += 1;
                    }
                }
                expire.extend(commit.plan.expire.iter().map(|i| i.get()));
                if let Some(shadow) = commit.shadow {
                    shadows.push((shadow, commit.shadow_loaded_version));
                }
            }
            let mut events: Vec<String> = Vec::new();

            // New interactions: one multi-row insert.
            let created: Vec<Changed> = diesel::sql_query(format!(
                "INSERT INTO meter_interactions (organization_id, grid_id, meter_id, kind, status, origin,
                     priority, power_limit_w, token, batch_execution_id, intended, expires_at, history,
                     created_at, updated_at)
                 SELECT o, $2, m, k, s, 'batch', p, pl, t, $3, i, e, h, $4, $4
                   FROM unnest($1::bigint[], $5::bigint[], $6::text[], $7::text[], $8::int4[],
                               $9::int4[], $10::text[], $11::jsonb[], $12::timestamptz[], $13::jsonb[])
                        AS x(o, m, k, s, p, pl, t, i, e, h)
                 RETURNING {CHANGED}"
            ))
            .bind::<Array<BigInt>, _>(&new_rows.organization_id)
            .bind::<BigInt, _>(grid.get())
            .bind::<BigInt, _>(order.execution.get())
            .bind::<Timestamptz, _>(now)
            .bind::<Array<BigInt>, _>(&new_rows.meter_id)
            .bind::<Array<Text>, _>(&new_rows.kind)
            .bind::<Array<Text>, _>(&new_rows.status)
            .bind::<Array<Int4>, _>(&new_rows.priority)
            .bind::<Array<Nullable<Int4>>, _>(&new_rows.power_limit_w)
            .bind::<Array<Nullable<Text>>, _>(&new_rows.token)
            .bind::<Array<Nullable<Jsonb>>, _>(&new_rows.intended)
            .bind::<Array<Nullable<Timestamptz>>, _>(&new_rows.expires_at)
            .bind::<Array<Jsonb>, _>(&new_rows.history)
            .load(c)
            .await?;
            let new_by_meter: HashMap<i64, i64> =
                created.iter().map(|r| (r.meter_id, r.id)).collect();
            links.extend(created.iter().map(|r| (r.id, false)));
            events.extend(created.iter().filter_map(|r| event_payload(r, Operation::Create)));

            // Coalesced: one counter bump per joining request (a row may be joined once per
            // meter, so ids are distinct).
            if !coalesce_into.is_empty() {
                let bumped: Vec<Changed> = diesel::sql_query(format!(
                    "UPDATE meter_interactions SET coalesced_requests = coalesced_requests + 1, updated_at = $3
                      WHERE id = ANY($1) AND status = ANY($2)
                  RETURNING {CHANGED}"
                ))
                .bind::<Array<BigInt>, _>(&coalesce_into)
                .bind::<Array<Text>, _>(unfinished_statuses())
                .bind::<Timestamptz, _>(now)
                .load(c)
                .await?;
                if bumped.len() != coalesce_into.len() {
                    return Err(conflict(
                        "an interaction a batch meant to join finished meanwhile",
                    ));
                }
                events.extend(bumped.iter().filter_map(|r| event_payload(r, Operation::Update)));
            }

            // Supersession and expiry: only from statuses that allow it, never on the wire.
            if !supersede.is_empty() {
                let (ids, by): (Vec<i64>, Vec<i64>) = supersede
                    .iter()
                    .filter_map(|&(id, successor)| {
                        let by = match successor {
                            Successor::Existing(by) => Some(by),
                            Successor::NewRowOf(meter) => new_by_meter.get(&meter).copied(),
                        };
                        by.map(|b| (id, b))
                    })
                    .unzip();
                let retired: Vec<Changed> = diesel::sql_query(
                    "UPDATE meter_interactions mi
                        SET status = 'SUPERSEDED', superseded_by = x.by, parked_for_retry = false,
                            history = jsonb_build_array(jsonb_build_object(
                                'at', $3::text, 'status', mi.status,
                                'reason', 'superseded by interaction ' || x.by,
                                'code', 'superseded', 'is_final', true)) || mi.history,
                            updated_at = $4
                       FROM unnest($1::bigint[], $2::bigint[]) AS x(id, by)
                      WHERE mi.id = x.id AND mi.status = ANY($5)
                        AND (mi.status <> 'PROCESSING' OR mi.parked_for_retry)
                  RETURNING mi.id, mi.meter_id, mi.grid_id, mi.kind, mi.status, mi.created_at, mi.updated_at"
                )
                .bind::<Array<BigInt>, _>(&ids)
                .bind::<Array<BigInt>, _>(&by)
                .bind::<Text, _>(now.to_rfc3339())
                .bind::<Timestamptz, _>(now)
                .bind::<Array<Text>, _>(names(supersedable_statuses()))
                .load(c)
                .await?;
                events.extend(retired.iter().filter_map(|r| event_payload(r, Operation::Update)));
            }
            if !expire.is_empty() {
                let expired: Vec<Changed> = diesel::sql_query(format!(
                    "UPDATE meter_interactions mi
                        SET status = 'EXPIRED', parked_for_retry = false,
                            history = jsonb_build_array(jsonb_build_object(
                                'at', $2::text, 'status', mi.status,
                                'reason', 'expired before it was sent',
                                'code', 'expired', 'is_final', true)) || mi.history,
                            updated_at = $3
                      WHERE mi.id = ANY($1) AND mi.status = ANY($4)
                        AND (mi.status <> 'PROCESSING' OR mi.parked_for_retry)
                  RETURNING {CHANGED}"
                ))
                .bind::<Array<BigInt>, _>(&expire)
                .bind::<Text, _>(now.to_rfc3339())
                .bind::<Timestamptz, _>(now)
                .bind::<Array<Text>, _>(names(expirable_statuses()))
                .load(c)
                .await?;
                events.extend(expired.iter().filter_map(|r| event_payload(r, Operation::Update)));
            }

            // Shadows: updates where the stored version is still the loaded one, inserts where
            // there was none; any miss means another writer got there first.
            if !shadows.is_empty() {
                let mut meter = Vec::new();
                let mut org = Vec::new();
                let mut state = Vec::new();
                let mut version = Vec::new();
                let mut loaded_version = Vec::new();
                let mut drifted = Vec::new();
                let org_of: HashMap<i64, i64> = loaded
                    .iter()
                    .map(|l| (l.meter.meter_id.get(), l.organization_id))
                    .collect();
                for (shadow, loaded) in &shadows {
                    let v = shadow.version.max(loaded + 1);
                    let id = shadow.meter_id.get();
                    meter.push(id);
                    org.push(org_of.get(&id).copied().unwrap_or_default());
                    state.push(
                        serde_json::to_value(MeterShadow {
                            version: v,
                            ..shadow.clone()
                        })
                        .map_err(internal)?,
                    );
                    version.push(v);
                    loaded_version.push(*loaded);
                    drifted.push(!shadow.drift().is_empty());
                }
                let saved: Vec<IdRow> = diesel::sql_query(
                    "WITH x AS (
                         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::jsonb[], $4::bigint[], $5::bigint[], $6::bool[])
                             AS t(meter_id, organization_id, state, version, loaded, drifted)),
                     upd AS (
                         UPDATE meter_shadows s
                            SET state = x.state, version = x.version, drifted = x.drifted, updated_at = $7
                           FROM x
                          WHERE s.meter_id = x.meter_id AND x.loaded > 0 AND s.version = x.loaded
                      RETURNING s.meter_id),
                     ins AS (
                         INSERT INTO meter_shadows (meter_id, organization_id, state, version, drifted, updated_at)
                         SELECT meter_id, organization_id, state, version, drifted, $7 FROM x WHERE loaded = 0
                         ON CONFLICT DO NOTHING
                      RETURNING meter_id)
                     SELECT meter_id AS id FROM upd UNION ALL SELECT meter_id AS id FROM ins",
                )
                .bind::<Array<BigInt>, _>(&meter)
                .bind::<Array<BigInt>, _>(&org)
                .bind::<Array<Jsonb>, _>(&state)
                .bind::<Array<BigInt>, _>(&version)
                .bind::<Array<BigInt>, _>(&loaded_version)
                .bind::<Array<Bool>, _>(&drifted)
                .bind::<Timestamptz, _>(now)
                .load(c)
                .await?;
                if saved.len() != shadows.len() {
                    return Err(conflict("a meter shadow changed while a batch was planned"));
                }
            }

            // The junction, then the execution's counters.
            let (link_ids, link_coalesced): (Vec<i64>, Vec<bool>) = links.into_iter().unzip();
            diesel::sql_query(
                "INSERT INTO batch_interactions (batch_execution_id, interaction_id, coalesced, attached_at)
                 SELECT $1, i, co, $4 FROM unnest($2::bigint[], $3::bool[]) AS x(i, co)
                 ON CONFLICT DO NOTHING",
            )
            .bind::<BigInt, _>(order.execution.get())
            .bind::<Array<BigInt>, _>(&link_ids)
            .bind::<Array<Bool>, _>(&link_coalesced)
            .bind::<Timestamptz, _>(now)
            .execute(c)
            .await?;
            diesel::sql_query(
                "UPDATE directive_batch_executions
                    SET meter_count = meter_count + $2, created_count = created_count + $3,
                        coalesced_count = coalesced_count + $4, skipped_count = skipped_count + $5
                  WHERE id = $1",
            )
            .bind::<BigInt, _>(order.execution.get())
            .bind::<BigInt, _>(receipt.meters)
            .bind::<BigInt, _>(receipt.created)
            .bind::<BigInt, _>(receipt.coalesced)
            .bind::<BigInt, _>(receipt.skipped)
            .execute(c)
            .await?;
            if let Some(organization) = organization {
                audit(
                    c,
                    organization,
                    "directive_batch_execution",
                    order.execution.get(),
                    "meter_interaction.batch_requested",
                    requested_by,
                    serde_json::json!({
                        "meters": receipt.meters,
                        "created": receipt.created,
                        "coalesced": receipt.coalesced,
                        "skipped": receipt.skipped,
                    }),
                )
                .await?;
            }
            // Live events: one NOTIFY per changed interaction, sent by one statement.
            if !events.is_empty() {
                diesel::sql_query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
                    .bind::<Text, _>(crate::events::CHANNEL)
                    .bind::<Array<Text>, _>(&events)
                    .execute(c)
                    .await?;
            }
            Ok(receipt)
        })
        .await
    }
}

#[async_trait]
impl BulkIntake for Db {
    async fn meters_needing_tokens(
        &self,
        grid: GridId,
        order: BatchOrder,
    ) -> Result<Vec<(MeterId, TokenRequest)>, DomainError> {
        let mut conn = self.conn().await?;
        let ids = qualifying_ids(&mut conn, grid, order).await?;
        let loaded = load_meters(&mut conn, grid, &ids, order, false).await?;
        let now = Utc::now();
        let policy = IntakePolicy::default();
        let mut out = Vec::new();
        for l in loaded {
            let (kind, limit) = command_for(
                order.action,
                order.uses_dual_meter_setup,
                l.meter.hps_mode_power_limit_w,
            );
            let commit = plan_meter(
                &policy,
                order,
                &l.meter,
                None,
                None,
                Requester::default(),
                now,
            )?;
            if let (true, true, Some(limit)) =
                (commit.plan.creates(), kind.needs_generated_token(), limit)
            {
                out.push((
                    l.meter.meter_id,
                    token_request(&l.meter, l.external_reference, limit, now),
                ));
            }
        }
        Ok(out)
    }

    async fn intake(
        &self,
        grid: GridId,
        order: BatchOrder,
        tokens: HashMap<MeterId, StsToken>,
        requested_by: Requester,
    ) -> Result<BulkReceipt, DomainError> {
        let facts = self
            .state(TenantScope::All, grid)
            .await?
            .map(|s| GridFacts::of(&s));
        let ids = {
            let mut conn = self.conn().await?;
            qualifying_ids(&mut conn, grid, order).await?
        };
        let mut total = BulkReceipt::default();
        for chunk in ids.chunks(CHUNK) {
            let mut attempt = 0;
            let receipt = loop {
                attempt += 1;
                match self
                    .intake_chunk(grid, facts.as_ref(), order, chunk, &tokens, requested_by)
                    .await
                {
                    Ok(r) => break r,
                    Err(StoreError::Domain(DomainError::Conflict(m)))
                        if attempt < CHUNK_ATTEMPTS =>
                    {
                        tracing::info!(execution = %order.execution, reason = %m, "batch chunk planned again");
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            total.meters += receipt.meters;
            total.created += receipt.created;
            total.coalesced += receipt.coalesced;
            total.skipped += receipt.skipped;
        }
        Ok(total)
    }
}
