//! Durable delivery ([`DeliveryRepo`]): the interaction row carries its delivery stage, deadline
//! and attempt number. Claims lock the grid's pacing lane and the row with `SKIP LOCKED`, so two
//! workers never take the same grid's slot or the same row; every later write is a
//! compare-and-set on `(id, attempts)` and the stage it was read in.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use diesel::sql_types::{BigInt, Bool, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel::{QueryableByName, sql_query};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use grids::events::Operation;
use grids::vocab::{CommunicationProtocol, MeterPhase};
use kernel::{DomainError, GridId, MeterId, OrganizationId};
use meters::{
    AttributeValue, Completion, Delivery, DeliveryRepo, DeliveryStage, FailurePlan, HistoryEntry,
    InteractionId, InteractionRepo, InteractionStatus, InteractionType, Origin, Phase,
    QueueItemTrace, StsToken, Transition, first_phase,
};

use crate::interactions::{Summary, announce, corrupt, head, parse_status, serde_name};
use crate::{Db, Result as StoreResult, StoreError};

/// The columns a [`Delivery`] is read from (`i`: the interaction, `m`: its meter).
const COLUMNS: &str = "i.id, i.organization_id, i.grid_id, i.meter_id, i.kind, i.origin, \
    i.status, i.priority, i.attempts, i.retries, i.delivery_stage, i.phase, i.phase_results, \
    i.token, i.power_limit_w, i.energy_wh, i.intended, i.sent_at, \
    m.communication_protocol, m.meter_phase, m.external_reference, m.lorawan_dev_eui, \
    g.timezone";
const FROM: &str = "meter_interactions i JOIN meters m ON m.id = i.meter_id \
    JOIN grids g ON g.id = i.grid_id";
const SUMMARY: &str = "id, meter_id, grid_id, kind, status, created_at, updated_at";

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    grid_id: Option<i64>,
    #[diesel(sql_type = BigInt)]
    meter_id: i64,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    origin: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    priority: i32,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Integer)]
    retries: i32,
    #[diesel(sql_type = Nullable<Text>)]
    delivery_stage: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    phase: Option<String>,
    #[diesel(sql_type = Jsonb)]
    phase_results: serde_json::Value,
    #[diesel(sql_type = Nullable<Text>)]
    token: Option<String>,
    #[diesel(sql_type = Nullable<Integer>)]
    power_limit_w: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    energy_wh: Option<i64>,
    #[diesel(sql_type = Nullable<Jsonb>)]
    intended: Option<serde_json::Value>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    sent_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Text)]
    communication_protocol: String,
    #[diesel(sql_type = Text)]
    meter_phase: String,
    #[diesel(sql_type = Text)]
    external_reference: String,
    #[diesel(sql_type = Nullable<Text>)]
    lorawan_dev_eui: Option<String>,
    #[diesel(sql_type = Text)]
    timezone: String,
}

impl TryFrom<Row> for Delivery {
    type Error = StoreError;

    fn try_from(r: Row) -> StoreResult<Self> {
        let origin: Origin = serde_json::from_value(serde_json::Value::String(r.origin.clone()))
            .map_err(|_| corrupt("origin", &r.origin))?;
        let phase_results: BTreeMap<Phase, Vec<AttributeValue>> =
            serde_json::from_value(r.phase_results)
                .map_err(|e| corrupt("phase results", &e.to_string()))?;
        Ok(Delivery {
            id: InteractionId(r.id),
            organization_id: OrganizationId(r.organization_id),
            grid_id: GridId(r.grid_id.unwrap_or_default()),
            meter_id: MeterId(r.meter_id),
            kind: InteractionType::parse(&r.kind)
                .ok_or_else(|| corrupt("interaction type", &r.kind))?,
            origin,
            status: parse_status(&r.status)?,
            priority: r.priority,
            attempt: r.attempts,
            retries: r.retries,
            stage: r
                .delivery_stage
                .as_deref()
                .map(|s| DeliveryStage::parse(s).ok_or_else(|| corrupt("delivery stage", s)))
                .transpose()?,
            phase: r
                .phase
                .as_deref()
                .map(|s| Phase::parse(s).ok_or_else(|| corrupt("phase", s)))
                .transpose()?,
            phase_results,
            token: r.token.as_deref().map(StsToken::new),
            power_limit_w: r.power_limit_w,
            energy_wh: r.energy_wh,
            intended: r
                .intended
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| corrupt("intended value", &e.to_string()))?,
            protocol: CommunicationProtocol::parse(&r.communication_protocol)
                .ok_or_else(|| corrupt("protocol", &r.communication_protocol))?,
            meter_phase: MeterPhase::parse(&r.meter_phase)
                .ok_or_else(|| corrupt("meter phase", &r.meter_phase))?,
            external_reference: r.external_reference,
            dev_eui: r.lorawan_dev_eui,
            timezone: r.timezone,
            sent_at: r.sent_at,
        })
    }
}

fn deliveries(rows: Vec<Row>) -> StoreResult<Vec<Delivery>> {
    rows.into_iter().map(Delivery::try_from).collect()
}

#[derive(QueryableByName)]
struct GridRow {
    #[diesel(sql_type = BigInt)]
    grid_id: i64,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The row-lock-and-load of one candidate.
async fn load(c: &mut AsyncPgConnection, where_: &str, bind: i64) -> StoreResult<Vec<Delivery>> {
    let rows: Vec<Row> = sql_query(format!("SELECT {COLUMNS} FROM {FROM} WHERE {where_}"))
        .bind::<BigInt, _>(bind)
        .load(c)
        .await?;
    deliveries(rows)
}

async fn summary_update(
    c: &mut AsyncPgConnection,
    query: diesel::query_builder::BoxedSqlQuery<
        '_,
        diesel::pg::Pg,
        diesel::query_builder::SqlQuery,
    >,
) -> StoreResult<Option<Summary>> {
    let rows: Vec<Summary> = query.load(c).await?;
    Ok(rows.into_iter().next())
}

/// The compare-and-set guard of a write about `d`: same attempt, same stage, still PROCESSING.
const GUARD: &str = "id = $1 AND attempts = $2 AND status = 'PROCESSING' \
    AND delivery_stage IS NOT DISTINCT FROM $3";
/// Leaving the wire: every delivery column back to rest.
const OFF_THE_WIRE: &str = "delivery_stage = NULL, stage_deadline = NULL, queue_item_id = NULL";

fn stage_str(d: &Delivery) -> Option<&'static str> {
    d.stage.map(DeliveryStage::as_str)
}

impl Db {
    /// Claims the next row of one locked grid lane. Reads past their TTL are expired on the way.
    async fn claim_in_grid(
        c: &mut AsyncPgConnection,
        grid: i64,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Option<Delivery>> {
        // A few expired reads may sit at the head of the lane; each is retired, then the next.
        for _ in 0..16 {
            let candidate = load(
                c,
                "i.grid_id = $1 AND (i.status = 'QUEUED' \
                   OR (i.status = 'PROCESSING' AND i.send_after <= now())) \
                 ORDER BY i.priority DESC, i.id LIMIT 1 FOR UPDATE OF i SKIP LOCKED",
                grid,
            )
            .await?
            .into_iter()
            .next();
            let Some(d) = candidate else {
                return Ok(None);
            };
            if d.status == InteractionStatus::Queued {
                let expired: Vec<IdRow> = sql_query(
                    "SELECT id FROM meter_interactions WHERE id = $1 \
                     AND expires_at IS NOT NULL AND expires_at <= now()",
                )
                .bind::<BigInt, _>(d.id.get())
                .load(c)
                .await?;
                if !expired.is_empty() {
                    let entry = HistoryEntry {
                        at: Utc::now(),
                        status: InteractionStatus::Queued,
                        reason: "expired before it was sent".into(),
                        code: Some("expired".into()),
                        is_final: true,
                    };
                    let row = summary_update(
                        c,
                        sql_query(format!(
                            "UPDATE meter_interactions SET status = 'EXPIRED', \
                             history = $2 || history, updated_at = now() \
                             WHERE id = $1 AND status = 'QUEUED' RETURNING {SUMMARY}"
                        ))
                        .into_boxed()
                        .bind::<BigInt, _>(d.id.get())
                        .bind::<Jsonb, _>(head(Some(&entry))),
                    )
                    .await?;
                    if let Some(row) = row {
                        announce(c, &row, Operation::Update).await?;
                    }
                    continue;
                }
            }
            let phase = match d.status {
                InteractionStatus::Queued => first_phase(d.kind, d.meter_phase),
                _ => d.phase,
            };
            let row = summary_update(
                c,
                sql_query(format!(
                    "UPDATE meter_interactions SET status = 'PROCESSING', send_after = NULL, \
                     parked_for_retry = false, delivery_stage = 'SENDING', stage_deadline = $2, \
                     attempts = attempts + 1, phase = $3, sent_at = now(), acked_at = NULL, \
                     queue_item_id = NULL, updated_at = now() \
                     WHERE id = $1 RETURNING {SUMMARY}"
                ))
                .into_boxed()
                .bind::<BigInt, _>(d.id.get())
                .bind::<Timestamptz, _>(lease_until)
                .bind::<Nullable<Text>, _>(phase.map(Phase::as_str)),
            )
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            if d.status == InteractionStatus::Queued {
                announce(c, &row, Operation::Update).await?;
            }
            let claimed = load(c, "i.id = $1", d.id.get()).await?.into_iter().next();
            return Ok(claimed);
        }
        Ok(None)
    }

    async fn by_where(&self, where_: &str, bind: i64) -> Result<Vec<Delivery>, DomainError> {
        let mut conn = self.conn().await?;
        Ok(load(&mut conn, where_, bind).await?)
    }
}

#[async_trait]
impl DeliveryRepo for Db {
    async fn claim(
        &self,
        lanes: i64,
        pacing: Duration,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Delivery>, DomainError> {
        let mut conn = self.conn().await?;
        let pacing_ms = pacing.num_milliseconds();
        let claimed = conn
            .transaction(async |c| {
                let grids: Vec<GridRow> = sql_query(
                    "SELECT l.grid_id FROM downlink_lanes l \
                     WHERE l.next_send_at <= now() AND EXISTS ( \
                         SELECT 1 FROM meter_interactions i WHERE i.grid_id = l.grid_id \
                         AND (i.status = 'QUEUED' \
                              OR (i.status = 'PROCESSING' AND i.send_after <= now()))) \
                     ORDER BY l.next_send_at LIMIT $1 FOR UPDATE OF l SKIP LOCKED",
                )
                .bind::<BigInt, _>(lanes)
                .load(c)
                .await?;
                let mut claimed = Vec::new();
                for g in grids {
                    if let Some(d) = Self::claim_in_grid(c, g.grid_id, lease_until).await? {
                        sql_query(
                            "UPDATE downlink_lanes SET next_send_at = \
                             now() + make_interval(secs => $2::float8 / 1000) WHERE grid_id = $1",
                        )
                        .bind::<BigInt, _>(g.grid_id)
                        .bind::<BigInt, _>(pacing_ms)
                        .execute(c)
                        .await?;
                        claimed.push(d);
                    }
                }
                Ok::<_, StoreError>(claimed)
            })
            .await?;
        Ok(claimed)
    }

    async fn handed_over(
        &self,
        id: InteractionId,
        attempt: i32,
        queue_item_id: &str,
        deadline: DateTime<Utc>,
    ) -> Result<bool, DomainError> {
        let mut conn = self.conn().await?;
        let n = sql_query(format!(
            "UPDATE meter_interactions SET delivery_stage = 'DELIVERED_TO_NS', \
             queue_item_id = $4, stage_deadline = $5, updated_at = now() WHERE {GUARD}"
        ))
        .bind::<BigInt, _>(id.get())
        .bind::<Integer, _>(attempt)
        .bind::<Nullable<Text>, _>(Some("SENDING"))
        .bind::<Text, _>(queue_item_id)
        .bind::<Timestamptz, _>(deadline)
        .execute(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(n == 1)
    }

    async fn transmitted(
        &self,
        queue_item_id: &str,
        deadline: DateTime<Utc>,
    ) -> Result<Option<Delivery>, DomainError> {
        let mut conn = self.conn().await?;
        let ids: Vec<IdRow> = sql_query(
            "UPDATE meter_interactions SET delivery_stage = 'SENT_TO_DEVICE', \
             stage_deadline = $2, updated_at = now() \
             WHERE queue_item_id = $1 AND delivery_stage = 'DELIVERED_TO_NS' \
             AND status = 'PROCESSING' RETURNING id",
        )
        .bind::<Text, _>(queue_item_id)
        .bind::<Timestamptz, _>(deadline)
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        match ids.into_iter().next() {
            Some(r) => Ok(load(&mut conn, "i.id = $1", r.id).await?.into_iter().next()),
            None => Ok(None),
        }
    }

    async fn by_queue_item(&self, queue_item_id: &str) -> Result<Option<Delivery>, DomainError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = sql_query(format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE i.queue_item_id = $1 \
             AND i.delivery_stage IS NOT NULL AND i.status = 'PROCESSING'"
        ))
        .bind::<Text, _>(queue_item_id)
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(deliveries(rows)?.into_iter().next())
    }

    async fn acknowledged(&self, queue_item_id: &str) -> Result<bool, DomainError> {
        let mut conn = self.conn().await?;
        let n = sql_query(
            "UPDATE meter_interactions SET acked_at = now() \
             WHERE queue_item_id = $1 AND delivery_stage IS NOT NULL",
        )
        .bind::<Text, _>(queue_item_id)
        .execute(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(n > 0)
    }

    async fn trace_queue_item(
        &self,
        queue_item_id: &str,
        event_received_at: DateTime<Utc>,
    ) -> Result<QueueItemTrace, DomainError> {
        #[derive(QueryableByName)]
        struct TraceRow {
            #[diesel(sql_type = Nullable<Text>)]
            stage: Option<String>,
            #[diesel(sql_type = Bool)]
            in_flight: bool,
        }
        let mut conn = self.conn().await?;
        // One statement, one snapshot: a hand-over committed between two separate reads could
        // otherwise show as neither the row nor in flight. `sent_at` is set by the claim, which
        // commits before the network server is called: a row claimed after the event arrived
        // cannot be the one it is about.
        let row: TraceRow = sql_query(
            "SELECT (SELECT delivery_stage FROM meter_interactions WHERE queue_item_id = $1 \
                     AND delivery_stage IS NOT NULL AND status = 'PROCESSING') AS stage, \
                    EXISTS (SELECT 1 FROM meter_interactions WHERE delivery_stage = 'SENDING' \
                     AND status = 'PROCESSING' AND sent_at <= $2) AS in_flight",
        )
        .bind::<Text, _>(queue_item_id)
        .bind::<Timestamptz, _>(event_received_at)
        .get_result(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(QueueItemTrace {
            stage: row
                .stage
                .as_deref()
                .map(|s| DeliveryStage::parse(s).ok_or_else(|| corrupt("delivery stage", s)))
                .transpose()?,
            hand_over_in_flight: row.in_flight,
        })
    }

    async fn on_the_wire(&self, meter: MeterId) -> Result<Vec<Delivery>, DomainError> {
        // SENDING too: with a fast network the answer can come back before the hand-over is
        // recorded.
        self.by_where(
            "i.meter_id = $1 AND i.status = 'PROCESSING' AND i.delivery_stage IS NOT NULL \
             ORDER BY i.sent_at, i.id",
            meter.get(),
        )
        .await
    }

    async fn overdue(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Delivery>, DomainError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = sql_query(format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE i.delivery_stage IS NOT NULL \
             AND i.stage_deadline < $1 AND i.status = 'PROCESSING' \
             ORDER BY i.stage_deadline LIMIT $2"
        ))
        .bind::<Timestamptz, _>(now)
        .bind::<BigInt, _>(limit)
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        Ok(deliveries(rows)?)
    }

    async fn failed(
        &self,
        d: &Delivery,
        plan: FailurePlan,
        history: HistoryEntry,
    ) -> Result<Option<InteractionStatus>, DomainError> {
        let mut conn = self.conn().await?;
        let d = d.clone();
        let moved = conn
            .transaction(async |c| {
                let (set, to) = match &plan {
                    FailurePlan::Retry { .. } => (
                        format!(
                            "send_after = $5, parked_for_retry = true, retries = retries + 1, \
                             {OFF_THE_WIRE}"
                        ),
                        InteractionStatus::Processing,
                    ),
                    FailurePlan::Verify { .. } => (
                        format!("status = 'VERIFYING', send_after = NULL, {OFF_THE_WIRE}"),
                        InteractionStatus::Verifying,
                    ),
                    FailurePlan::Fail { transition } => {
                        let to = InteractionStatus::Processing
                            .apply(*transition)
                            .map_err(|e| StoreError::Domain(e.into()))?;
                        (
                            format!(
                                "status = '{}', send_after = NULL, {OFF_THE_WIRE}",
                                to.as_str()
                            ),
                            to,
                        )
                    }
                };
                let retry_at = match &plan {
                    FailurePlan::Retry { at } => Some(*at),
                    _ => None,
                };
                let row = summary_update(
                    c,
                    sql_query(format!(
                        "UPDATE meter_interactions SET {set}, history = $4 || history, \
                         updated_at = now() WHERE {GUARD} RETURNING {SUMMARY}"
                    ))
                    .into_boxed()
                    .bind::<BigInt, _>(d.id.get())
                    .bind::<Integer, _>(d.attempt)
                    .bind::<Nullable<Text>, _>(stage_str(&d))
                    .bind::<Jsonb, _>(head(Some(&history)))
                    .bind::<Nullable<Timestamptz>, _>(retry_at),
                )
                .await?;
                let Some(row) = row else {
                    return Ok::<_, StoreError>(None);
                };
                if let FailurePlan::Verify {
                    read,
                    read_priority,
                    read_expires_at,
                } = plan
                {
                    let read_id =
                        verification_read(c, &d, read, read_priority, read_expires_at, history.at)
                            .await?;
                    sql_query("UPDATE meter_interactions SET verified_by = $2 WHERE id = $1")
                        .bind::<BigInt, _>(d.id.get())
                        .bind::<BigInt, _>(read_id)
                        .execute(c)
                        .await?;
                }
                if to != InteractionStatus::Processing {
                    announce(c, &row, Operation::Update).await?;
                }
                Ok(Some(to))
            })
            .await?;
        Ok(moved)
    }

    async fn completed(&self, d: &Delivery, completion: Completion) -> Result<bool, DomainError> {
        let mut conn = self.conn().await?;
        let d = d.clone();
        let applied = conn
            .transaction(async |c| {
                let row = match &completion {
                    Completion::NextPhase { phase, observed } => {
                        let current = d.phase.map(Phase::as_str).unwrap_or("A");
                        let observed = serde_json::json!({ current: observed });
                        summary_update(
                            c,
                            sql_query(format!(
                                "UPDATE meter_interactions SET phase = $4, \
                                 phase_results = phase_results || $5, send_after = now(), \
                                 {OFF_THE_WIRE}, updated_at = now() \
                                 WHERE {GUARD} RETURNING {SUMMARY}"
                            ))
                            .into_boxed()
                            .bind::<BigInt, _>(d.id.get())
                            .bind::<Integer, _>(d.attempt)
                            .bind::<Nullable<Text>, _>(stage_str(&d))
                            .bind::<Text, _>(phase.as_str())
                            .bind::<Jsonb, _>(observed),
                        )
                        .await?
                    }
                    Completion::Succeeded { result, .. } => {
                        let row = summary_update(
                            c,
                            sql_query(format!(
                                "UPDATE meter_interactions SET status = 'SUCCESSFUL', \
                                 result = $4, send_after = NULL, parked_for_retry = false, \
                                 {OFF_THE_WIRE}, updated_at = now() \
                                 WHERE {GUARD} RETURNING {SUMMARY}"
                            ))
                            .into_boxed()
                            .bind::<BigInt, _>(d.id.get())
                            .bind::<Integer, _>(d.attempt)
                            .bind::<Nullable<Text>, _>(stage_str(&d))
                            .bind::<Jsonb, _>(result.clone()),
                        )
                        .await?;
                        if let Some(row) = &row {
                            announce(c, row, Operation::Update).await?;
                        }
                        row
                    }
                };
                Ok::<_, StoreError>(row.is_some())
            })
            .await?;
        Ok(applied)
    }

    async fn verifying(
        &self,
        meter: MeterId,
        read: Option<InteractionId>,
    ) -> Result<Vec<Delivery>, DomainError> {
        match read {
            Some(read) => {
                self.by_where(
                    "i.status = 'VERIFYING' AND i.verified_by = $1 ORDER BY i.id",
                    read.get(),
                )
                .await
            }
            None => {
                self.by_where(
                    "i.status = 'VERIFYING' AND i.meter_id = $1 ORDER BY i.id",
                    meter.get(),
                )
                .await
            }
        }
    }

    async fn verifications_due(
        &self,
        limit: i64,
    ) -> Result<Vec<(Delivery, InteractionStatus, Vec<AttributeValue>)>, DomainError> {
        #[derive(QueryableByName)]
        struct ReadRow {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Text)]
            read_status: String,
            #[diesel(sql_type = Nullable<Jsonb>)]
            read_result: Option<serde_json::Value>,
        }
        let mut conn = self.conn().await?;
        let rows: Vec<ReadRow> = sql_query(
            "SELECT c.id, r.status AS read_status, r.result AS read_result \
             FROM meter_interactions c JOIN meter_interactions r ON r.id = c.verified_by \
             WHERE c.status = 'VERIFYING' AND r.status IN \
             ('SUCCESSFUL', 'FAILED', 'ABORTED', 'SUPERSEDED', 'EXPIRED') \
             ORDER BY c.id LIMIT $1",
        )
        .bind::<BigInt, _>(limit)
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let Some(cmd) = load(&mut conn, "i.id = $1", r.id).await?.into_iter().next() else {
                continue;
            };
            let observations = r
                .read_result
                .and_then(|v| v.get("observations").cloned())
                .map(serde_json::from_value::<Vec<AttributeValue>>)
                .transpose()
                .map_err(|e| corrupt("read result", &e.to_string()))?
                .unwrap_or_default();
            out.push((cmd, parse_status(&r.read_status)?, observations));
        }
        Ok(out)
    }

    async fn settle(
        &self,
        id: InteractionId,
        transition: Transition,
        history: HistoryEntry,
    ) -> Result<Option<InteractionStatus>, DomainError> {
        self.transition(id, InteractionStatus::Verifying, transition, Some(history))
            .await
    }
}

/// The read that decides a VERIFYING command: a queued, unexpired read of that type for the
/// meter is reused; otherwise a new one is queued at the command's priority.
async fn verification_read(
    c: &mut AsyncPgConnection,
    d: &Delivery,
    read: InteractionType,
    priority: i32,
    expires_at: DateTime<Utc>,
    at: DateTime<Utc>,
) -> StoreResult<i64> {
    let existing: Vec<IdRow> = sql_query(
        "SELECT id FROM meter_interactions WHERE meter_id = $1 AND kind = $2 \
         AND status = 'QUEUED' AND (expires_at IS NULL OR expires_at > now()) \
         ORDER BY id LIMIT 1 FOR UPDATE",
    )
    .bind::<BigInt, _>(d.meter_id.get())
    .bind::<Text, _>(read.as_str())
    .load(c)
    .await?;
    if let Some(r) = existing.into_iter().next() {
        sql_query(
            "UPDATE meter_interactions SET priority = GREATEST(priority, $2), \
             coalesced_requests = coalesced_requests + 1 WHERE id = $1",
        )
        .bind::<BigInt, _>(r.id)
        .bind::<Integer, _>(priority)
        .execute(c)
        .await?;
        return Ok(r.id);
    }
    let entry = HistoryEntry {
        at,
        status: InteractionStatus::Queued,
        reason: format!("verifies interaction {}", d.id.get()),
        code: Some("verification".into()),
        is_final: false,
    };
    let row = summary_update(
        c,
        sql_query(format!(
            "INSERT INTO meter_interactions (organization_id, grid_id, meter_id, kind, status, \
             origin, priority, expires_at, history) \
             VALUES ($1, $2, $3, $4, 'QUEUED', $5, $6, $7, $8) RETURNING {SUMMARY}"
        ))
        .into_boxed()
        .bind::<BigInt, _>(d.organization_id.get())
        .bind::<BigInt, _>(d.grid_id.get())
        .bind::<BigInt, _>(d.meter_id.get())
        .bind::<Text, _>(read.as_str())
        .bind::<Text, _>(serde_name(&Origin::FollowUp))
        .bind::<Integer, _>(priority)
        .bind::<Timestamptz, _>(expires_at)
        .bind::<Jsonb, _>(head(Some(&entry))),
    )
    .await?
    .ok_or_else(|| StoreError::from(DomainError::Internal("insert returned nothing".into())))?;
    announce(c, &row, Operation::Create).await?;
    Ok(row.id)
}

#[async_trait]
impl meters::DeliveryQueries for Db {
    async fn delivery_status(
        &self,
        scope: kernel::TenantScope,
        id: InteractionId,
    ) -> Result<Option<meters::DeliveryStatus>, DomainError> {
        #[derive(QueryableByName)]
        struct S {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Text)]
            status: String,
            #[diesel(sql_type = Nullable<Text>)]
            delivery_stage: Option<String>,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            stage_deadline: Option<DateTime<Utc>>,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            send_after: Option<DateTime<Utc>>,
            #[diesel(sql_type = Integer)]
            attempts: i32,
            #[diesel(sql_type = Integer)]
            retries: i32,
            #[diesel(sql_type = Nullable<Text>)]
            phase: Option<String>,
            #[diesel(sql_type = Nullable<Text>)]
            queue_item_id: Option<String>,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            sent_at: Option<DateTime<Utc>>,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            acked_at: Option<DateTime<Utc>>,
            #[diesel(sql_type = Nullable<BigInt>)]
            verified_by: Option<i64>,
            #[diesel(sql_type = Nullable<Jsonb>)]
            result: Option<serde_json::Value>,
            #[diesel(sql_type = Jsonb)]
            history: serde_json::Value,
        }
        let org = match scope {
            kernel::TenantScope::All => None,
            kernel::TenantScope::One(o) => Some(o.get()),
        };
        let mut conn = self.conn().await?;
        let rows: Vec<S> = sql_query(
            "SELECT id, status, delivery_stage, stage_deadline, send_after, attempts, retries, \
             phase, queue_item_id, sent_at, acked_at, verified_by, result, history \
             FROM meter_interactions WHERE id = $1 AND ($2::bigint IS NULL OR organization_id = $2)",
        )
        .bind::<BigInt, _>(id.get())
        .bind::<Nullable<BigInt>, _>(org)
        .load(&mut conn)
        .await
        .map_err(StoreError::from)?;
        let Some(r) = rows.into_iter().next() else {
            return Ok(None);
        };
        let status = parse_status(&r.status)?;
        Ok(Some(meters::DeliveryStatus {
            interaction_id: InteractionId(r.id),
            status,
            stage: r.delivery_stage.as_deref().and_then(DeliveryStage::parse),
            stage_deadline: r.stage_deadline,
            next_attempt_at: r
                .send_after
                .filter(|_| status == InteractionStatus::Processing),
            attempts: r.attempts,
            retries: r.retries,
            phase: r.phase.as_deref().and_then(Phase::parse),
            queue_item_id: r.queue_item_id,
            sent_at: r.sent_at,
            acked_at: r.acked_at,
            verified_by: r.verified_by.map(InteractionId),
            result: r.result,
            history: serde_json::from_value(r.history)
                .map_err(|e| corrupt("history", &e.to_string()))?,
        }))
    }
}
