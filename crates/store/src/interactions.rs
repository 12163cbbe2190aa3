//! The meter command pipeline's storage: interactions ([`InteractionRepo`]) and meter shadows
//! ([`ShadowRepo`]).
//!
//! Intake is serialised per meter by locking the meter row; every status change is a
//! compare-and-set on the old status, so two workers can never both move the same row. Changes
//! are announced to the meter's grid as live `meter_interaction` events inside the transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Jsonb;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use grids::events::{EventKind, LiveEvent, Operation};
use kernel::{DomainError, GridId, MeterId};
use meters::{
    AttributeValue, CommissioningId, HistoryEntry, IntakeAction, IntakeCommit, IntakeReceipt,
    InteractionId, InteractionRepo, InteractionStatus, InteractionType, MeterShadow,
    PendingInteraction, ShadowRepo, Transition,
};

use crate::schema::{meter_interactions as mi, meter_shadows as ms, meters as me};
use crate::{Db, Result as StoreResult, StoreError};

/// Statuses that still count: pending or in flight (`InteractionStatus::is_unfinished`).
fn unfinished_statuses() -> Vec<&'static str> {
    InteractionStatus::ALL
        .into_iter()
        .filter(|s| s.is_unfinished())
        .map(InteractionStatus::as_str)
        .collect()
}

pub(crate) fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Domain(DomainError::Internal(format!(
        "unknown {what} {v:?} in the database"
    )))
}

fn conflict(msg: impl Into<String>) -> StoreError {
    StoreError::Domain(DomainError::Conflict(msg.into()))
}

pub(crate) fn parse_status(s: &str) -> StoreResult<InteractionStatus> {
    InteractionStatus::parse(s).ok_or_else(|| corrupt("interaction status", s))
}

/// The serde name of a unit enum (`Origin` has no `as_str`).
pub(crate) fn serde_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The entries to prepend to the stored history (`$head || history`).
pub(crate) fn head(entry: Option<&HistoryEntry>) -> serde_json::Value {
    match entry {
        Some(e) => serde_json::json!([e]),
        None => serde_json::json!([]),
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = mi)]
struct PendingRow {
    id: i64,
    meter_id: i64,
    kind: String,
    status: String,
    intended: Option<serde_json::Value>,
    commissioning_id: Option<i64>,
    expires_at: Option<DateTime<Utc>>,
    parked_for_retry: bool,
    created_at: DateTime<Utc>,
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
        kind: InteractionType::parse(&r.kind)
            .ok_or_else(|| corrupt("interaction type", &r.kind))?,
        status: parse_status(&r.status)?,
        intended,
        commissioning_id: r.commissioning_id.map(CommissioningId),
        expires_at: r.expires_at,
        parked_for_retry: r.parked_for_retry,
        created_at: r.created_at,
    })
}

/// What a live event says about a row (never the token). Also read from raw SQL returning
/// these columns (deliveries.rs).
#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = mi)]
pub(crate) struct Summary {
    pub(crate) id: i64,
    pub(crate) meter_id: i64,
    pub(crate) grid_id: Option<i64>,
    pub(crate) kind: String,
    pub(crate) status: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
}

pub(crate) async fn announce(
    c: &mut AsyncPgConnection,
    s: &Summary,
    operation: Operation,
) -> StoreResult<()> {
    let Some(grid) = s.grid_id else {
        return Ok(());
    };
    let event = LiveEvent {
        grid_id: GridId(grid),
        kind: EventKind::MeterInteraction,
        operation,
        data: serde_json::json!({
            "id": s.id,
            "meter_id": s.meter_id,
            "kind": s.kind,
            "status": s.status,
            "created_at": s.created_at,
            "updated_at": s.updated_at,
        }),
    };
    crate::events::publish(c, &event).await
}

/// Saves `shadow` if the stored version is still `loaded` (inserting when `loaded` is 0 and the
/// meter has none yet). The stored version always moves forward, so two writers that loaded the
/// same version can never both succeed.
async fn save_shadow(
    c: &mut AsyncPgConnection,
    organization: i64,
    shadow: &MeterShadow,
    loaded: i64,
) -> StoreResult<()> {
    let version = shadow.version.max(loaded + 1);
    let drifted = !shadow.drift().is_empty();
    let state = serde_json::to_value(MeterShadow {
        version,
        ..shadow.clone()
    })
    .map_err(|e| StoreError::Domain(DomainError::Internal(e.to_string())))?;
    let meter = shadow.meter_id.get();
    let now = Utc::now();
    let n = if loaded == 0 {
        diesel::insert_into(ms::table)
            .values((
                ms::meter_id.eq(meter),
                ms::organization_id.eq(organization),
                ms::state.eq(&state),
                ms::version.eq(version),
                ms::drifted.eq(drifted),
                ms::updated_at.eq(now),
            ))
            // A stored shadow is at version 1 or later: one that exists has moved on.
            .on_conflict_do_nothing()
            .execute(c)
            .await?
    } else {
        diesel::update(ms::table.find(meter).filter(ms::version.eq(loaded)))
            .set((
                ms::state.eq(&state),
                ms::version.eq(version),
                ms::drifted.eq(drifted),
                ms::updated_at.eq(now),
            ))
            .execute(c)
            .await?
    };
    if n == 0 {
        return Err(conflict(format!(
            "the shadow of meter {meter} changed since version {loaded} was loaded"
        )));
    }
    Ok(())
}

/// The meter's organization and grid, locked: intakes of one meter run one at a time.
async fn lock_meter(c: &mut AsyncPgConnection, meter: MeterId) -> StoreResult<(i64, Option<i64>)> {
    me::table
        .filter(me::id.eq(meter.get()))
        .filter(me::deleted_at.is_null())
        .select((me::organization_id, me::grid_id))
        .for_update()
        .first(c)
        .await
        .optional()?
        .ok_or_else(|| StoreError::Domain(DomainError::NotFound("meter")))
}

/// Moves `id` (a row of `meter`) by `event` if its current status allows it; a row on the wire
/// (PROCESSING, not parked for a retry) cannot be recalled. Answers the changed row.
async fn retire(
    c: &mut AsyncPgConnection,
    meter: MeterId,
    id: InteractionId,
    event: Transition,
    superseded_by: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<Option<Summary>> {
    let row: Option<(String, bool)> = mi::table
        .filter(mi::id.eq(id.get()))
        .filter(mi::meter_id.eq(meter.get()))
        .select((mi::status, mi::parked_for_retry))
        .for_update()
        .first(c)
        .await
        .optional()?;
    let Some((status, parked)) = row else {
        return Ok(None);
    };
    let from = parse_status(&status)?;
    let Ok(to) = from.apply(event) else {
        return Ok(None);
    };
    if from == InteractionStatus::Processing && !parked {
        return Ok(None);
    }
    let (reason, code) = match superseded_by {
        Some(by) => (format!("superseded by interaction {by}"), "superseded"),
        None => ("expired before it was sent".to_owned(), "expired"),
    };
    let entry = HistoryEntry {
        at: now,
        status: from,
        reason,
        code: Some(code.to_owned()),
        is_final: true,
    };
    let changed = diesel::update(
        mi::table
            .filter(mi::id.eq(id.get()))
            .filter(mi::status.eq(from.as_str())),
    )
    .set((
        mi::status.eq(to.as_str()),
        mi::superseded_by.eq(superseded_by),
        mi::parked_for_retry.eq(false),
        mi::history.eq(sql::<Jsonb>("")
            .bind::<Jsonb, _>(head(Some(&entry)))
            .sql(" || history")),
        mi::updated_at.eq(now),
    ))
    .returning(Summary::as_returning())
    .get_result(c)
    .await
    .optional()?;
    Ok(changed)
}

#[async_trait]
impl InteractionRepo for Db {
    async fn unfinished(&self, meter: MeterId) -> Result<Vec<PendingInteraction>, DomainError> {
        let mut conn = self.conn().await?;
        let rows: Vec<PendingRow> = mi::table
            .filter(mi::meter_id.eq(meter.get()))
            .filter(mi::status.eq_any(unfinished_statuses()))
            .order((mi::created_at.asc(), mi::id.asc()))
            .select(PendingRow::as_select())
            .load(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(rows
            .into_iter()
            .map(to_pending)
            .collect::<StoreResult<Vec<_>>>()?)
    }

    async fn suspended_in_grid(
        &self,
        grid: GridId,
    ) -> Result<Vec<PendingInteraction>, DomainError> {
        let mut conn = self.conn().await?;
        let rows: Vec<PendingRow> = mi::table
            .filter(mi::grid_id.eq(grid.get()))
            .filter(mi::status.eq(InteractionStatus::Suspended.as_str()))
            .order((mi::created_at.asc(), mi::id.asc()))
            .select(PendingRow::as_select())
            .load(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(rows
            .into_iter()
            .map(to_pending)
            .collect::<StoreResult<Vec<_>>>()?)
    }

    async fn commit_intake(&self, commit: IntakeCommit) -> Result<IntakeReceipt, DomainError> {
        let meter = commit.request.meter_id;
        if commit.shadow.as_ref().is_some_and(|s| s.meter_id != meter) {
            return Err(DomainError::Internal(
                "an intake commit carries the shadow of another meter".into(),
            ));
        }
        let mut conn = self.conn().await?;
        let receipt = conn
            .transaction(async |c| {
                let (organization, grid) = lock_meter(c, meter).await?;
                if let Some(shadow) = &commit.shadow {
                    save_shadow(c, organization, shadow, commit.shadow_loaded_version).await?;
                }
                let now = Utc::now();
                let req = &commit.request;
                let mut changed: Vec<(Summary, Operation)> = Vec::new();
                let receipt = match commit.plan.action {
                    IntakeAction::Create { expires_at, .. } => {
                        let intended = req
                            .intended()
                            .map(|v| serde_json::to_value(&v))
                            .transpose()
                            .map_err(|e| {
                                StoreError::Domain(DomainError::Internal(e.to_string()))
                            })?;
                        let history = match &commit.history {
                            Some(h) => serde_json::json!([h]),
                            None => serde_json::json!([]),
                        };
                        let token = commit
                            .token
                            .as_ref()
                            .map(|t| t.expose().to_owned())
                            .or_else(|| req.token.clone());
                        let row: Summary = diesel::insert_into(mi::table)
                            .values((
                                mi::organization_id.eq(organization),
                                mi::grid_id.eq(grid),
                                mi::meter_id.eq(meter.get()),
                                mi::kind.eq(req.kind.as_str()),
                                mi::status.eq(commit.status.as_str()),
                                mi::origin.eq(serde_name(&req.origin)),
                                mi::priority.eq(commit.priority),
                                mi::power_limit_w.eq(req.power_limit_w),
                                mi::energy_wh.eq(req.energy_wh),
                                mi::token.eq(token),
                                mi::commissioning_id.eq(req.commissioning_id.map(|i| i.get())),
                                mi::batch_execution_id.eq(req.batch_execution_id.map(|i| i.get())),
                                mi::intended.eq(intended),
                                mi::expires_at.eq(expires_at),
                                mi::history.eq(history),
                                mi::created_at.eq(now),
                                mi::updated_at.eq(now),
                            ))
                            .returning(Summary::as_returning())
                            .get_result(c)
                            .await?;
                        let receipt = IntakeReceipt {
                            interaction: InteractionId(row.id),
                            created: true,
                        };
                        changed.push((row, Operation::Create));
                        receipt
                    }
                    IntakeAction::Coalesce { into } => {
                        let row: Option<Summary> = diesel::update(
                            mi::table
                                .filter(mi::id.eq(into.get()))
                                .filter(mi::meter_id.eq(meter.get()))
                                .filter(mi::status.eq_any(unfinished_statuses())),
                        )
                        .set((
                            mi::coalesced_requests.eq(mi::coalesced_requests + 1),
                            mi::updated_at.eq(now),
                        ))
                        .returning(Summary::as_returning())
                        .get_result(c)
                        .await
                        .optional()?;
                        let Some(row) = row else {
                            return Err(conflict(format!(
                                "interaction {into} finished meanwhile; plan the intake again"
                            )));
                        };
                        changed.push((row, Operation::Update));
                        IntakeReceipt {
                            interaction: into,
                            created: false,
                        }
                    }
                };
                // The request itself is audited, coalesced or not: who asked what of which meter.
                let action = if receipt.created {
                    "meter_interaction.requested"
                } else {
                    "meter_interaction.coalesced"
                };
                let draft = orgs::AuditDraft {
                    actor_account_id: commit.requested_by.account,
                    actor_api_key_id: commit.requested_by.api_key,
                    action,
                    details: serde_json::json!({"meter_id": meter, "kind": req.kind}),
                };
                crate::audit::record(
                    c,
                    organization,
                    "meter_interaction",
                    Some(receipt.interaction.get()),
                    &draft,
                )
                .await?;
                let by = receipt.interaction.get();
                for id in &commit.plan.supersede {
                    if let Some(row) =
                        retire(c, meter, *id, Transition::Superseded, Some(by), now).await?
                    {
                        changed.push((row, Operation::Update));
                    }
                }
                for id in &commit.plan.expire {
                    if let Some(row) = retire(c, meter, *id, Transition::Expired, None, now).await?
                    {
                        changed.push((row, Operation::Update));
                    }
                }
                for (row, op) in &changed {
                    announce(c, row, *op).await?;
                }
                Ok::<_, StoreError>(receipt)
            })
            .await?;
        Ok(receipt)
    }

    async fn transition(
        &self,
        id: InteractionId,
        from: InteractionStatus,
        event: Transition,
        history: Option<HistoryEntry>,
    ) -> Result<Option<InteractionStatus>, DomainError> {
        // An illegal event is refused before anything is written.
        let to = from.apply(event)?;
        // Waiting out a retry backoff: still PROCESSING, but not on the wire.
        let parked = event == Transition::DeliveryFailed { retryable: true };
        let mut conn = self.conn().await?;
        let moved = conn
            .transaction(async |c| {
                let row: Option<Summary> = diesel::update(
                    mi::table
                        .filter(mi::id.eq(id.get()))
                        .filter(mi::status.eq(from.as_str())),
                )
                .set((
                    mi::status.eq(to.as_str()),
                    mi::parked_for_retry.eq(parked),
                    mi::history.eq(sql::<Jsonb>("")
                        .bind::<Jsonb, _>(head(history.as_ref()))
                        .sql(" || history")),
                    mi::updated_at.eq(Utc::now()),
                ))
                .returning(Summary::as_returning())
                .get_result(c)
                .await
                .optional()?;
                if let Some(row) = &row {
                    announce(c, row, Operation::Update).await?;
                }
                Ok::<_, StoreError>(row.is_some())
            })
            .await?;
        Ok(moved.then_some(to))
    }
}

fn to_shadow(state: serde_json::Value, version: i64) -> StoreResult<MeterShadow> {
    let mut shadow: MeterShadow =
        serde_json::from_value(state).map_err(|e| corrupt("meter shadow", &e.to_string()))?;
    shadow.version = version;
    Ok(shadow)
}

#[async_trait]
impl ShadowRepo for Db {
    async fn get(&self, meter: MeterId) -> Result<Option<MeterShadow>, DomainError> {
        let mut conn = self.conn().await?;
        let row: Option<(serde_json::Value, i64)> = ms::table
            .find(meter.get())
            .select((ms::state, ms::version))
            .first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(row.map(|(s, v)| to_shadow(s, v)).transpose()?)
    }

    async fn save(&self, shadow: MeterShadow, loaded_version: i64) -> Result<(), DomainError> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let organization: i64 = me::table
                .find(shadow.meter_id.get())
                .select(me::organization_id)
                .first(c)
                .await
                .optional()?
                .ok_or(StoreError::Domain(DomainError::NotFound("meter")))?;
            save_shadow(c, organization, &shadow, loaded_version).await?;
            observe(c, &shadow).await
        })
        .await?;
        Ok(())
    }

    async fn drifted(
        &self,
        grid: GridId,
        after: Option<MeterId>,
        limit: i64,
    ) -> Result<Vec<MeterShadow>, DomainError> {
        let mut conn = self.conn().await?;
        // Only commissioned meters that operators have not taken into manual mode.
        let rows: Vec<(serde_json::Value, i64)> = ms::table
            .inner_join(me::table.on(me::id.eq(ms::meter_id)))
            .filter(me::grid_id.eq(grid.get()))
            .filter(me::deleted_at.is_null())
            .filter(me::commissioned_at.is_not_null())
            .filter(me::manual_mode.eq(false))
            .filter(ms::drifted.eq(true))
            .filter(ms::meter_id.gt(after.map_or(0, MeterId::get)))
            .order(ms::meter_id.asc())
            .limit(limit.clamp(0, 1000))
            .select((ms::state, ms::version))
            .load(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(rows
            .into_iter()
            .map(|(s, v)| to_shadow(s, v))
            .collect::<StoreResult<Vec<_>>>()?)
    }
}

/// Copies the shadow's reported state onto the meter's observed columns (what lists and
/// dashboards show) and announces a `meter` event when any of them changed.
async fn observe(c: &mut AsyncPgConnection, shadow: &MeterShadow) -> StoreResult<()> {
    use diesel::sql_types::{BigInt, Bool, Double, Integer, Nullable};
    use meters::{Attribute, RelayState};
    #[derive(QueryableByName)]
    struct Changed {
        #[diesel(sql_type = Nullable<BigInt>)]
        grid_id: Option<i64>,
    }
    let reported = |a: Attribute| shadow.reported(a).map(|r| &r.value);
    let is_on = match reported(Attribute::Relay) {
        Some(AttributeValue::Relay(r)) => Some(*r == RelayState::On),
        _ => None,
    };
    let credit = match reported(Attribute::Credit) {
        Some(AttributeValue::Credit(wh)) => Some(*wh),
        _ => None,
    };
    let power = match reported(Attribute::Power) {
        Some(AttributeValue::Power(w)) => Some(*w),
        _ => None,
    };
    let voltage = match reported(Attribute::Voltage) {
        Some(AttributeValue::Voltage(v)) => Some(*v),
        _ => None,
    };
    let limit = match reported(Attribute::PowerLimit) {
        Some(AttributeValue::PowerLimit(w)) => Some(*w),
        _ => None,
    };
    // Unknown values keep what the meter row had (a state report may have set them).
    let changed: Vec<Changed> = diesel::sql_query(
        "UPDATE meters SET is_on = COALESCE($2, is_on), credit_wh = COALESCE($3, credit_wh), \
         power_w = COALESCE($4, power_w), voltage_v = COALESCE($5, voltage_v), \
         power_limit_w = COALESCE($6, power_limit_w), observed_at = now(), updated_at = now() \
         WHERE id = $1 AND (is_on, credit_wh, power_w, voltage_v, power_limit_w) IS DISTINCT FROM \
         (COALESCE($2, is_on), COALESCE($3, credit_wh), COALESCE($4, power_w), \
          COALESCE($5, voltage_v), COALESCE($6, power_limit_w)) \
         RETURNING grid_id",
    )
    .bind::<BigInt, _>(shadow.meter_id.get())
    .bind::<Nullable<Bool>, _>(is_on)
    .bind::<Nullable<BigInt>, _>(credit)
    .bind::<Nullable<Double>, _>(power)
    .bind::<Nullable<Double>, _>(voltage)
    .bind::<Nullable<Integer>, _>(limit)
    .load(c)
    .await?;
    if let Some(Changed {
        grid_id: Some(grid),
    }) = changed.into_iter().next()
    {
        let event = LiveEvent {
            grid_id: GridId(grid),
            kind: EventKind::Meter,
            operation: Operation::Update,
            data: serde_json::json!({
                "id": shadow.meter_id.get(), "is_on": is_on, "credit_wh": credit,
                "power_w": power, "voltage_v": voltage, "power_limit_w": limit,
            }),
        };
        crate::events::publish(c, &event).await?;
    }
    Ok(())
}
