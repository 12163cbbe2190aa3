//! Install sessions and commissionings ([`InstallRepo`]), and the command service's records of
//! standalone tokens and manual retries ([`CommandRecords`]). Every change is audited in its
//! transaction; interaction status changes go through `InteractionRepo::transition`, never here.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::{DomainError, MeterId, OrganizationId, TenantScope};
use meters::commissioning::{DueCommissioning, SEQUENCE};
use meters::{CommandRecords, TokenKind, ports::Requester};
use meters::{
    Commissioning, CommissioningId, CommissioningStatus, CommissioningStep, HistoryEntry,
    InstallOperation, InstallRepo, InstallSession, InstallSessionId, InteractionId,
    InteractionStatus, InteractionType, RegistrationStatus,
};
use orgs::AuditDraft;

use crate::audit::record;
use crate::schema::{
    install_sessions as ins, meter_commissionings as mc, meter_interactions as mi, meters as me,
};
use crate::{Db, Result, StoreError};

fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Domain(DomainError::Internal(format!(
        "unknown {what} {v:?} in the database"
    )))
}

fn draft(by: Requester, action: &'static str, details: serde_json::Value) -> AuditDraft {
    AuditDraft {
        actor_account_id: by.account,
        actor_api_key_id: by.api_key,
        action,
        details,
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = ins)]
struct SessionRow {
    id: i64,
    organization_id: i64,
    meter_id: i64,
    operation: String,
    registration_status: String,
    registration_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn to_session(r: SessionRow) -> Result<InstallSession> {
    Ok(InstallSession {
        id: InstallSessionId(r.id),
        organization_id: OrganizationId(r.organization_id),
        meter_id: MeterId(r.meter_id),
        operation: InstallOperation::parse(&r.operation)
            .ok_or_else(|| corrupt("install operation", &r.operation))?,
        registration_status: RegistrationStatus::parse(&r.registration_status)
            .ok_or_else(|| corrupt("registration status", &r.registration_status))?,
        registration_reason: r.registration_reason,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = mc)]
struct CommissioningRow {
    id: i64,
    organization_id: i64,
    meter_id: i64,
    install_session_id: i64,
    status: String,
    failure_reason: Option<String>,
    retry_of: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = mi)]
struct StepRow {
    id: i64,
    commissioning_id: Option<i64>,
    kind: String,
    status: String,
    #[diesel(select_expression = sql::<diesel::sql_types::Nullable<diesel::sql_types::Jsonb>>("history -> 0"))]
    #[diesel(select_expression_type = diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::Jsonb>>)]
    last_event: Option<serde_json::Value>,
    updated_at: DateTime<Utc>,
}

fn to_step(r: StepRow) -> Result<CommissioningStep> {
    Ok(CommissioningStep {
        interaction_id: InteractionId(r.id),
        kind: InteractionType::parse(&r.kind)
            .ok_or_else(|| corrupt("interaction type", &r.kind))?,
        status: InteractionStatus::parse(&r.status)
            .ok_or_else(|| corrupt("interaction status", &r.status))?,
        last_event: r
            .last_event
            .map(serde_json::from_value::<HistoryEntry>)
            .transpose()
            .map_err(|e| corrupt("history entry", &e.to_string()))?,
        updated_at: r.updated_at,
    })
}

fn sequence_position(kind: InteractionType) -> usize {
    SEQUENCE
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(SEQUENCE.len())
}

/// Commissionings with their steps (in sequence order).
async fn with_steps(
    c: &mut AsyncPgConnection,
    rows: Vec<CommissioningRow>,
) -> Result<Vec<Commissioning>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let steps: Vec<StepRow> = mi::table
        .filter(mi::commissioning_id.eq_any(&ids))
        .order(mi::id.asc())
        .select(StepRow::as_select())
        .load(c)
        .await?;
    let mut by_commissioning: std::collections::HashMap<i64, Vec<CommissioningStep>> =
        std::collections::HashMap::new();
    for s in steps {
        if let Some(owner) = s.commissioning_id {
            by_commissioning.entry(owner).or_default().push(to_step(s)?);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let mut own = by_commissioning.remove(&r.id).unwrap_or_default();
        own.sort_by_key(|s| (sequence_position(s.kind), s.interaction_id));
        out.push(Commissioning {
            id: CommissioningId(r.id),
            organization_id: OrganizationId(r.organization_id),
            meter_id: MeterId(r.meter_id),
            install_session_id: InstallSessionId(r.install_session_id),
            status: CommissioningStatus::parse(&r.status)
                .ok_or_else(|| corrupt("commissioning status", &r.status))?,
            failure_reason: r.failure_reason,
            retry_of: r.retry_of.map(CommissioningId),
            steps: own,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        });
    }
    Ok(out)
}

/// Publishes the meter to its grid's live room: its commissioned mark changed.
async fn announce_meter(c: &mut AsyncPgConnection, meter: i64) -> Result<()> {
    if let Some(m) = crate::meters::load(c, TenantScope::All, meter).await? {
        crate::meters::announce(c, &m, m.grid_id, grids::events::Operation::Update).await?;
    }
    Ok(())
}

fn unfinished() -> [&'static str; 2] {
    [
        CommissioningStatus::Pending.as_str(),
        CommissioningStatus::Processing.as_str(),
    ]
}

impl Db {
    async fn session_open(
        &self,
        meter: MeterId,
        operation: InstallOperation,
        by: Requester,
    ) -> Result<InstallSession> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let organization: i64 = me::table
                .filter(me::id.eq(meter.get()))
                .filter(me::deleted_at.is_null())
                .select(me::organization_id)
                .for_update()
                .first(c)
                .await
                .optional()?
                .ok_or(StoreError::Domain(DomainError::NotFound("meter")))?;
            let row: SessionRow = diesel::insert_into(ins::table)
                .values((
                    ins::organization_id.eq(organization),
                    ins::meter_id.eq(meter.get()),
                    ins::operation.eq(operation.as_str()),
                    ins::author_account_id.eq(by.account.map(|a| a.get())),
                    ins::author_api_key_id.eq(by.api_key.map(|k| k.get())),
                ))
                .returning(SessionRow::as_returning())
                .get_result(c)
                .await?;
            diesel::update(me::table.find(meter.get()))
                .set(me::last_install_session_id.eq(row.id))
                .execute(c)
                .await?;
            let action = match operation {
                InstallOperation::Install => "meter.install_started",
                InstallOperation::Uninstall => "meter.uninstall_started",
            };
            record(
                c,
                organization,
                "install_session",
                Some(row.id),
                &draft(by, action, serde_json::json!({"meter_id": meter})),
            )
            .await?;
            to_session(row)
        })
        .await
    }

    async fn registration_record(
        &self,
        session: InstallSessionId,
        status: RegistrationStatus,
        reason: Option<String>,
    ) -> Result<InstallSession> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let row: SessionRow = diesel::update(ins::table.find(session.get()))
                .set((
                    ins::registration_status.eq(status.as_str()),
                    ins::registration_reason.eq(&reason),
                    ins::updated_at.eq(Utc::now()),
                ))
                .returning(SessionRow::as_returning())
                .get_result(c)
                .await?;
            record(
                c,
                row.organization_id,
                "install_session",
                Some(row.id),
                &draft(
                    Requester::default(),
                    "install_session.registration_recorded",
                    serde_json::json!({"status": status, "reason": reason}),
                ),
            )
            .await?;
            to_session(row)
        })
        .await
    }

    async fn commissioning_open(
        &self,
        meter: MeterId,
        session: InstallSessionId,
        retry_of: Option<CommissioningId>,
        by: Requester,
    ) -> Result<CommissioningId> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let organization: i64 = me::table
                .filter(me::id.eq(meter.get()))
                .select(me::organization_id)
                .for_update()
                .first(c)
                .await?;
            let running: Option<i64> = mc::table
                .filter(mc::meter_id.eq(meter.get()))
                .filter(mc::status.eq_any(unfinished()))
                .select(mc::id)
                .first(c)
                .await
                .optional()?;
            if let Some(running) = running {
                return Err(StoreError::Domain(DomainError::Conflict(format!(
                    "commissioning {running} of this meter is still running"
                ))));
            }
            let id: i64 = diesel::insert_into(mc::table)
                .values((
                    mc::organization_id.eq(organization),
                    mc::meter_id.eq(meter.get()),
                    mc::install_session_id.eq(session.get()),
                    mc::retry_of.eq(retry_of.map(CommissioningId::get)),
                ))
                .returning(mc::id)
                .get_result(c)
                .await?;
            let was_commissioned = diesel::update(me::table.find(meter.get()))
                .filter(me::commissioned_at.is_not_null())
                .set(me::commissioned_at.eq(None::<DateTime<Utc>>))
                .execute(c)
                .await?;
            if was_commissioned > 0 {
                announce_meter(c, meter.get()).await?;
            }
            record(
                c,
                organization,
                "meter_commissioning",
                Some(id),
                &draft(
                    by,
                    "meter_commissioning.started",
                    serde_json::json!({"meter_id": meter, "install_session_id": session, "retry_of": retry_of}),
                ),
            )
            .await?;
            Ok(CommissioningId(id))
        })
        .await
    }

    async fn status_set(
        &self,
        id: CommissioningId,
        from: CommissioningStatus,
        to: CommissioningStatus,
        reason: Option<String>,
    ) -> Result<bool> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let now = Utc::now();
            let finished_at = to.is_finished().then_some(now);
            let moved: Option<(i64, i64)> = diesel::update(
                mc::table
                    .filter(mc::id.eq(id.get()))
                    .filter(mc::status.eq(from.as_str())),
            )
            .set((
                mc::status.eq(to.as_str()),
                mc::failure_reason.eq(&reason),
                mc::finished_at.eq(finished_at),
                mc::updated_at.eq(now),
            ))
            .returning((mc::organization_id, mc::meter_id))
            .get_result(c)
            .await
            .optional()?;
            let Some((organization, meter)) = moved else {
                return Ok(false);
            };
            if to == CommissioningStatus::Successful {
                diesel::update(me::table.find(meter))
                    .set(me::commissioned_at.eq(now))
                    .execute(c)
                    .await?;
                announce_meter(c, meter).await?;
            }
            // Moving to PROCESSING is progress, not a decision: only outcomes are audited.
            if to.is_finished() {
                let action = match to {
                    CommissioningStatus::Successful => "meter_commissioning.succeeded",
                    CommissioningStatus::Failed
                    | CommissioningStatus::Pending
                    | CommissioningStatus::Processing => "meter_commissioning.failed",
                };
                record(
                    c,
                    organization,
                    "meter_commissioning",
                    Some(id.get()),
                    &draft(
                        Requester::default(),
                        action,
                        serde_json::json!({"meter_id": meter, "reason": reason}),
                    ),
                )
                .await?;
            }
            Ok(true)
        })
        .await
    }

    async fn commissionings_where(
        &self,
        scope: TenantScope,
        id: Option<CommissioningId>,
        meter: Option<MeterId>,
    ) -> Result<Vec<Commissioning>> {
        let mut conn = self.conn().await?;
        let mut q = mc::table.into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(mc::organization_id.eq(org.get()));
        }
        if let Some(id) = id {
            q = q.filter(mc::id.eq(id.get()));
        }
        if let Some(meter) = meter {
            q = q.filter(mc::meter_id.eq(meter.get()));
        }
        let rows: Vec<CommissioningRow> = q
            .order(mc::id.desc())
            .limit(100)
            .select(CommissioningRow::as_select())
            .load(&mut conn)
            .await?;
        with_steps(&mut conn, rows).await
    }

    async fn due_claim(&self, limit: i64, lease: Duration) -> Result<Vec<DueCommissioning>> {
        #[derive(QueryableByName)]
        struct Due {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            id: i64,
            #[diesel(sql_type = Nullable<Timestamptz>)]
            changed_at: Option<DateTime<Utc>>,
        }
        let mut conn = self.conn().await?;
        let rows: Vec<Due> = diesel::sql_query(
            "WITH due AS (
                 -- A step changed, or the meter was heard (a step may wait for that).
                 SELECT c.id, GREATEST((SELECT max(i.updated_at) FROM meter_interactions i
                                         WHERE i.commissioning_id = c.id),
                                       m.last_seen_at) AS changed_at
                   FROM meter_commissionings c
                   JOIN meters m ON m.id = c.meter_id
                  WHERE c.status IN ('PENDING', 'PROCESSING')
                    AND (c.lease_until IS NULL OR c.lease_until < now())
                    AND (c.steps_seen_at IS NULL
                         OR m.last_seen_at > c.steps_seen_at
                         OR EXISTS (SELECT 1 FROM meter_interactions i
                                     WHERE i.commissioning_id = c.id
                                       AND i.updated_at > c.steps_seen_at))
                  ORDER BY c.id
                  LIMIT $1
                  FOR UPDATE OF c SKIP LOCKED)
             UPDATE meter_commissionings c SET lease_until = now() + $2 * interval '1 second'
               FROM due WHERE c.id = due.id
             RETURNING c.id, due.changed_at",
        )
        .bind::<diesel::sql_types::BigInt, _>(limit.clamp(1, 1000))
        .bind::<diesel::sql_types::BigInt, _>(lease.num_seconds().max(1))
        .load(&mut conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DueCommissioning {
                id: CommissioningId(r.id),
                steps_changed_at: r.changed_at,
            })
            .collect())
    }
}

#[async_trait]
impl InstallRepo for Db {
    async fn open_session(
        &self,
        meter: MeterId,
        operation: InstallOperation,
        by: Requester,
    ) -> std::result::Result<InstallSession, DomainError> {
        Ok(self.session_open(meter, operation, by).await?)
    }

    async fn record_registration(
        &self,
        session: InstallSessionId,
        status: RegistrationStatus,
        reason: Option<String>,
    ) -> std::result::Result<InstallSession, DomainError> {
        Ok(self.registration_record(session, status, reason).await?)
    }

    async fn latest_session(
        &self,
        meter: MeterId,
    ) -> std::result::Result<Option<InstallSession>, DomainError> {
        let mut conn = self.conn().await?;
        let row: Option<SessionRow> = ins::table
            .filter(ins::meter_id.eq(meter.get()))
            .order(ins::id.desc())
            .select(SessionRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(row.map(to_session).transpose()?)
    }

    async fn open_commissioning(
        &self,
        meter: MeterId,
        session: InstallSessionId,
        retry_of: Option<CommissioningId>,
        by: Requester,
    ) -> std::result::Result<CommissioningId, DomainError> {
        Ok(self
            .commissioning_open(meter, session, retry_of, by)
            .await?)
    }

    async fn set_status(
        &self,
        id: CommissioningId,
        from: CommissioningStatus,
        to: CommissioningStatus,
        reason: Option<String>,
    ) -> std::result::Result<bool, DomainError> {
        Ok(self.status_set(id, from, to, reason).await?)
    }

    async fn commissioning(
        &self,
        scope: TenantScope,
        id: CommissioningId,
    ) -> std::result::Result<Option<Commissioning>, DomainError> {
        Ok(self
            .commissionings_where(scope, Some(id), None)
            .await?
            .into_iter()
            .next())
    }

    async fn commissionings_of(
        &self,
        scope: TenantScope,
        meter: MeterId,
    ) -> std::result::Result<Vec<Commissioning>, DomainError> {
        Ok(self.commissionings_where(scope, None, Some(meter)).await?)
    }

    async fn running(
        &self,
        meter: MeterId,
    ) -> std::result::Result<Option<CommissioningId>, DomainError> {
        let mut conn = self.conn().await?;
        let id: Option<i64> = mc::table
            .filter(mc::meter_id.eq(meter.get()))
            .filter(mc::status.eq_any(unfinished()))
            .select(mc::id)
            .first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(id.map(CommissioningId))
    }

    async fn decommission(&self, meter: MeterId) -> std::result::Result<(), DomainError> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let changed = diesel::update(me::table.find(meter.get()))
                .filter(me::commissioned_at.is_not_null())
                .set(me::commissioned_at.eq(None::<DateTime<Utc>>))
                .execute(c)
                .await?;
            if changed > 0 {
                announce_meter(c, meter.get()).await?;
            }
            Ok::<_, StoreError>(())
        })
        .await?;
        Ok(())
    }

    async fn claim_due(
        &self,
        limit: i64,
        lease: Duration,
    ) -> std::result::Result<Vec<DueCommissioning>, DomainError> {
        Ok(self.due_claim(limit, lease).await?)
    }

    async fn mark_seen(
        &self,
        id: CommissioningId,
        seen: Option<DateTime<Utc>>,
    ) -> std::result::Result<(), DomainError> {
        let mut conn = self.conn().await?;
        diesel::update(mc::table.find(id.get()))
            .set((
                mc::steps_seen_at.eq(sql::<Nullable<Timestamptz>>("GREATEST(steps_seen_at, ")
                    .bind::<Nullable<Timestamptz>, _>(seen)
                    .sql(")")),
                mc::lease_until.eq(None::<DateTime<Utc>>),
            ))
            .execute(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }
}

fn token_kind_name(kind: TokenKind) -> (&'static str, serde_json::Value) {
    match kind {
        TokenKind::TopUp { energy_wh } => ("TOP_UP", serde_json::json!({"energy_wh": energy_wh})),
        TokenKind::ClearCredit => ("CLEAR_CREDIT", serde_json::json!({})),
        TokenKind::ClearTamper => ("CLEAR_TAMPER", serde_json::json!({})),
        TokenKind::SetPowerLimit { watts } => (
            "SET_POWER_LIMIT",
            serde_json::json!({"power_limit_w": watts}),
        ),
    }
}

#[async_trait]
impl CommandRecords for Db {
    async fn token_issued(
        &self,
        meter: MeterId,
        kind: TokenKind,
        issued_at: DateTime<Utc>,
        by: Requester,
    ) -> std::result::Result<(), DomainError> {
        let mut conn = self.conn().await?;
        let organization: i64 = me::table
            .find(meter.get())
            .select(me::organization_id)
            .first(&mut conn)
            .await
            .map_err(StoreError::from)?;
        let (name, args) = token_kind_name(kind);
        record(
            &mut conn,
            organization,
            "meter",
            Some(meter.get()),
            &draft(
                by,
                "meter.token_generated",
                serde_json::json!({"kind": name, "arguments": args, "issued_at": issued_at}),
            ),
        )
        .await?;
        Ok(())
    }

    async fn supplied_token(
        &self,
        interaction: InteractionId,
    ) -> std::result::Result<Option<String>, DomainError> {
        let mut conn = self.conn().await?;
        let token: Option<Option<String>> = mi::table
            .find(interaction.get())
            .filter(mi::kind.eq(InteractionType::DeliverPreexistingToken.as_str()))
            .select(mi::token)
            .first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(token.flatten())
    }

    async fn retried_by(
        &self,
        interaction: InteractionId,
    ) -> std::result::Result<Option<InteractionId>, DomainError> {
        let mut conn = self.conn().await?;
        let id: Option<i64> = mi::table
            .filter(mi::retry_of.eq(interaction.get()))
            .select(mi::id)
            .first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(id.map(InteractionId))
    }

    async fn link_retry(
        &self,
        retry: InteractionId,
        of: InteractionId,
        by: Requester,
    ) -> std::result::Result<(), DomainError> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let organization: Option<i64> = diesel::update(
                mi::table
                    .filter(mi::id.eq(retry.get()))
                    .filter(mi::retry_of.is_null()),
            )
            .set(mi::retry_of.eq(of.get()))
            .returning(mi::organization_id)
            .get_result(c)
            .await
            .optional()?;
            let Some(organization) = organization else {
                return Err(StoreError::Domain(DomainError::Conflict(format!(
                    "interaction {retry} already retries another one"
                ))));
            };
            record(
                c,
                organization,
                "meter_interaction",
                Some(retry.get()),
                &draft(
                    by,
                    "meter_interaction.retried",
                    serde_json::json!({"retry_of": of}),
                ),
            )
            .await?;
            Ok::<_, StoreError>(())
        })
        .await?;
        Ok(())
    }
}
