use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use grids::events::{EventKind, LiveEvent, Operation};
use grids::gateways::Inserted;
use grids::meters::{
    Assignment, Meter, MeterChanges, MeterFilter, MeterRepo, MeterStateReport, NewMeter,
    ObservedState,
};
use grids::vocab::{CommunicationProtocol, MeterPhase, MeterSystem, MeterType};
use kernel::{
    ConnectionId, CustomerId, DcuId, DomainError, FieldError, GridId, MeterId, OrganizationId,
    PageRequest, PoleId, TenantScope,
};
use orgs::AuditDraft;

use crate::audit::record;
use crate::schema::{accounts, connections as cn, customers, dcus, meters as me};
use crate::{Db, Result, StoreError, clearable, like_pattern};

#[derive(Queryable, Selectable)]
#[diesel(table_name = me)]
struct MeterRow {
    id: i64,
    organization_id: i64,
    external_system: String,
    external_reference: String,
    communication_protocol: String,
    meter_type: String,
    meter_phase: String,
    version: Option<String>,
    nickname: Option<String>,
    is_cabin_meter: bool,
    hps_mode_power_limit_w: i32,
    grid_id: Option<i64>,
    connection_id: Option<i64>,
    pole_id: Option<i64>,
    dcu_id: Option<i64>,
    assigned_at: Option<DateTime<Utc>>,
    is_on: Option<bool>,
    credit_wh: Option<i64>,
    power_w: Option<f64>,
    voltage_v: Option<f64>,
    power_limit_w: Option<i32>,
    signal_rssi: Option<i32>,
    signal_snr: Option<f64>,
    last_seen_at: Option<DateTime<Utc>>,
    observed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    lorawan_dev_eui: Option<String>,
    commissioned_at: Option<DateTime<Utc>>,
    manual_mode: bool,
    #[diesel(select_expression = me::decoder_key.is_not_null())]
    #[diesel(select_expression_type = diesel::dsl::IsNotNull<me::decoder_key>)]
    has_decoder_key: bool,
}

type Joined = (MeterRow, Option<i64>, Option<String>);

fn corrupt(what: &str, v: &str) -> StoreError {
    StoreError::Domain(DomainError::Internal(format!(
        "unknown {what} {v:?} in the database"
    )))
}

fn to_meter((r, customer_id, customer_name): Joined) -> Result<Meter> {
    Ok(Meter {
        id: MeterId(r.id),
        organization_id: OrganizationId(r.organization_id),
        external_system: MeterSystem::parse(&r.external_system)
            .ok_or_else(|| corrupt("meter system", &r.external_system))?,
        external_reference: r.external_reference,
        lorawan_dev_eui: r.lorawan_dev_eui,
        has_decoder_key: r.has_decoder_key,
        communication_protocol: CommunicationProtocol::parse(&r.communication_protocol)
            .ok_or_else(|| corrupt("protocol", &r.communication_protocol))?,
        meter_type: MeterType::parse(&r.meter_type)
            .ok_or_else(|| corrupt("meter type", &r.meter_type))?,
        meter_phase: MeterPhase::parse(&r.meter_phase)
            .ok_or_else(|| corrupt("meter phase", &r.meter_phase))?,
        version: r.version,
        nickname: r.nickname,
        is_cabin_meter: r.is_cabin_meter,
        hps_mode_power_limit_w: r.hps_mode_power_limit_w,
        grid_id: r.grid_id.map(GridId),
        connection_id: r.connection_id.map(ConnectionId),
        customer_id: customer_id.map(CustomerId),
        customer_name,
        pole_id: r.pole_id.map(PoleId),
        dcu_id: r.dcu_id.map(DcuId),
        assigned_at: r.assigned_at,
        commissioned_at: r.commissioned_at,
        manual_mode: r.manual_mode,
        observed: ObservedState {
            is_on: r.is_on,
            credit_wh: r.credit_wh,
            power_w: r.power_w,
            voltage_v: r.voltage_v,
            power_limit_w: r.power_limit_w,
            signal_rssi: r.signal_rssi,
            signal_snr: r.signal_snr,
            last_seen_at: r.last_seen_at,
            observed_at: r.observed_at,
        },
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

macro_rules! joined_meters {
    () => {
        me::table
            .left_join(cn::table.on(cn::id.nullable().eq(me::connection_id)))
            .left_join(customers::table.on(customers::id.eq(cn::customer_id)))
            .left_join(accounts::table.on(accounts::id.eq(customers::account_id)))
            .filter(me::deleted_at.is_null())
            .select((
                MeterRow::as_select(),
                cn::customer_id.nullable(),
                accounts::full_name.nullable(),
            ))
            .into_boxed()
    };
}

pub(crate) async fn load(
    c: &mut AsyncPgConnection,
    scope: TenantScope,
    id: i64,
) -> Result<Option<Meter>> {
    let mut q = joined_meters!().filter(me::id.eq(id));
    if let Some(org) = scope.organization() {
        q = q.filter(me::organization_id.eq(org.get()));
    }
    q.first::<Joined>(c)
        .await
        .optional()?
        .map(to_meter)
        .transpose()
}

pub(crate) async fn announce(
    c: &mut AsyncPgConnection,
    m: &Meter,
    grid: Option<GridId>,
    op: Operation,
) -> Result<()> {
    if let Some(grid_id) = grid {
        let event = LiveEvent {
            grid_id,
            kind: EventKind::Meter,
            operation: op,
            data: serde_json::to_value(m).unwrap_or_default(),
        };
        crate::events::publish(c, &event).await?;
    }
    Ok(())
}

fn conflict(msg: impl Into<String>) -> StoreError {
    StoreError::Domain(DomainError::Conflict(msg.into()))
}

/// The gateway a newly assigned meter goes through: among the grid's gateways of the meter's
/// protocol, the fullest one that still has room (CALIN DCUs hold 200 meters; LoRaWAN gateways
/// have no cap and the network routes through whichever hears the meter).
async fn choose_gateway(
    c: &mut AsyncPgConnection,
    grid: i64,
    protocol: CommunicationProtocol,
) -> Result<Option<i64>> {
    let candidates: Vec<i64> = dcus::table
        .filter(dcus::grid_id.eq(grid))
        .filter(dcus::deleted_at.is_null())
        .filter(dcus::communication_protocol.eq(protocol.as_str()))
        .order(dcus::id.asc())
        .select(dcus::id)
        .load(c)
        .await?;
    let counts = crate::gateways::meters_per_gateway(c, &candidates).await?;
    let mut ranked: Vec<(i64, i64)> = candidates
        .iter()
        .map(|id| (*id, counts.get(id).copied().unwrap_or(0)))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let chosen = ranked
        .into_iter()
        .find(|(_, n)| protocol.gateway_capacity().is_none_or(|cap| *n < cap))
        .map(|(id, _)| id);
    match (chosen, protocol.gateway_capacity()) {
        (None, Some(cap)) => Err(conflict(format!(
            "no {} gateway on this grid has room (each holds {cap} meters); assign a gateway first",
            protocol.as_str()
        ))),
        (chosen, _) => Ok(chosen),
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = me)]
struct MeterRowChanges {
    lorawan_dev_eui: Option<Option<String>>,
    decoder_key: Option<Option<String>>,
    meter_type: Option<&'static str>,
    meter_phase: Option<&'static str>,
    communication_protocol: Option<&'static str>,
    version: Option<Option<String>>,
    nickname: Option<Option<String>>,
    is_cabin_meter: Option<bool>,
    hps_mode_power_limit_w: Option<i32>,
    manual_mode: Option<bool>,
    updated_at: DateTime<Utc>,
}

#[derive(AsChangeset)]
#[diesel(table_name = me)]
struct ObservedChanges {
    is_on: Option<bool>,
    credit_wh: Option<i64>,
    power_w: Option<f64>,
    voltage_v: Option<f64>,
    power_limit_w: Option<i32>,
    signal_rssi: Option<i32>,
    signal_snr: Option<f64>,
    last_seen_at: Option<DateTime<Utc>>,
    observed_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Db {
    async fn meter_list(
        &self,
        scope: TenantScope,
        f: MeterFilter,
        page: PageRequest,
    ) -> Result<Vec<Meter>> {
        let mut conn = self.conn().await?;
        let mut q = joined_meters!();
        if let Some(org) = scope.organization() {
            q = q.filter(me::organization_id.eq(org.get()));
        }
        if let Some(g) = f.grid_id {
            q = q.filter(me::grid_id.eq(g.get()));
        }
        if let Some(cid) = f.connection_id {
            q = q.filter(me::connection_id.eq(cid.get()));
        }
        if let Some(cu) = f.customer_id {
            q = q.filter(cn::customer_id.eq(cu.get()));
        }
        if let Some(d) = f.dcu_id {
            q = q.filter(me::dcu_id.eq(d.get()));
        }
        if let Some(t) = f.meter_type {
            q = q.filter(me::meter_type.eq(t.as_str()));
        }
        if let Some(p) = f.meter_phase {
            q = q.filter(me::meter_phase.eq(p.as_str()));
        }
        if let Some(p) = f.communication_protocol {
            q = q.filter(me::communication_protocol.eq(p.as_str()));
        }
        match f.assigned {
            Some(true) => q = q.filter(me::connection_id.is_not_null()),
            Some(false) => q = q.filter(me::connection_id.is_null()),
            None => {}
        }
        match f.seen_since {
            Some((true, t)) => q = q.filter(me::last_seen_at.ge(t)),
            Some((false, t)) => q = q.filter(me::last_seen_at.is_null().or(me::last_seen_at.lt(t))),
            None => {}
        }
        if let Some(s) = f.search.filter(|s| !s.trim().is_empty()) {
            let pat = like_pattern(&s);
            q = q.filter(
                me::external_reference
                    .ilike(pat.clone())
                    .nullable()
                    .or(accounts::full_name.ilike(pat.clone()).nullable())
                    .or(accounts::phone.ilike(pat)),
            );
        }
        if let Some(after) = page.after_id {
            q = q.filter(me::id.gt(after));
        }
        let rows = q
            .order(me::id.asc())
            .limit(page.fetch_limit())
            .load::<Joined>(&mut conn)
            .await?;
        rows.into_iter().map(to_meter).collect()
    }

    async fn meter_insert(
        &self,
        org: OrganizationId,
        new: NewMeter,
        audit: AuditDraft,
    ) -> Result<Inserted<Meter>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let existing: Option<(i64, i64, Option<DateTime<Utc>>)> = me::table
                .filter(me::external_system.eq(new.external_system.as_str()))
                .filter(me::external_reference.eq(&new.external_reference))
                .select((me::id, me::organization_id, me::deleted_at))
                .for_update()
                .first(c)
                .await
                .optional()?;
            if let Some((id, owner, deleted)) = existing {
                if owner != org.get() {
                    return Err(conflict(
                        "this meter serial is registered to another organization",
                    ));
                }
                if deleted.is_some() {
                    return Err(conflict("this meter was deleted"));
                }
                let m = load(c, TenantScope::All, id)
                    .await?
                    .ok_or(StoreError::Domain(DomainError::NotFound("meter")))?;
                return Ok(Inserted {
                    value: m,
                    created: false,
                });
            }
            let id: i64 = diesel::insert_into(me::table)
                .values((
                    me::organization_id.eq(org.get()),
                    me::external_system.eq(new.external_system.as_str()),
                    me::external_reference.eq(&new.external_reference),
                    me::lorawan_dev_eui.eq(&new.lorawan_dev_eui),
                    me::decoder_key.eq(&new.decoder_key),
                    me::communication_protocol.eq(new.communication_protocol.as_str()),
                    me::meter_type.eq(new.meter_type.as_str()),
                    me::meter_phase.eq(new.meter_phase.as_str()),
                    me::version.eq(&new.version),
                    me::nickname.eq(&new.nickname),
                    me::is_cabin_meter.eq(new.is_cabin_meter),
                ))
                .returning(me::id)
                .get_result(c)
                .await?;
            record(c, org.get(), "meter", Some(id), &audit).await?;
            let m = load(c, TenantScope::All, id)
                .await?
                .ok_or(StoreError::Domain(DomainError::NotFound("meter")))?;
            Ok(Inserted {
                value: m,
                created: true,
            })
        })
        .await
    }

    async fn meter_update(
        &self,
        scope: TenantScope,
        id: MeterId,
        ch: MeterChanges,
        audit: AuditDraft,
    ) -> Result<Option<Meter>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            let placement_bound = ch.meter_type.is_some_and(|t| t != current.meter_type)
                || ch.meter_phase.is_some_and(|p| p != current.meter_phase)
                || ch
                    .communication_protocol
                    .is_some_and(|p| p != current.communication_protocol);
            if placement_bound && current.connection_id.is_some() {
                return Err(conflict(
                    "type, phase and protocol change only while the meter is unassigned",
                ));
            }
            diesel::update(me::table.find(id.get()))
                .set(MeterRowChanges {
                    lorawan_dev_eui: ch.lorawan_dev_eui,
                    decoder_key: ch.decoder_key,
                    meter_type: ch.meter_type.map(MeterType::as_str),
                    meter_phase: ch.meter_phase.map(MeterPhase::as_str),
                    communication_protocol: ch
                        .communication_protocol
                        .map(CommunicationProtocol::as_str),
                    version: clearable(ch.version),
                    nickname: clearable(ch.nickname),
                    is_cabin_meter: ch.is_cabin_meter,
                    hps_mode_power_limit_w: ch.hps_mode_power_limit_w,
                    manual_mode: ch.manual_mode,
                    updated_at: Utc::now(),
                })
                .execute(c)
                .await?;
            record(
                c,
                current.organization_id.get(),
                "meter",
                Some(id.get()),
                &audit,
            )
            .await?;
            let m = load(c, scope, id.get()).await?;
            if let Some(m) = &m {
                announce(c, m, m.grid_id, Operation::Update).await?;
            }
            Ok(m)
        })
        .await
    }

    async fn meter_assign(
        &self,
        scope: TenantScope,
        id: MeterId,
        a: Assignment,
        audit: AuditDraft,
    ) -> Result<Option<Meter>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let locked: Option<i64> = me::table
                .filter(me::id.eq(id.get()))
                .select(me::id)
                .for_update()
                .first(c)
                .await
                .optional()?;
            if locked.is_none() {
                return Ok(None);
            }
            let Some(meter) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            if meter.connection_id.is_some() {
                return Err(conflict("the meter is already assigned; unassign it first"));
            }
            let connection = crate::connections::load(c, scope, a.connection_id.get())
                .await?
                .ok_or(StoreError::Domain(DomainError::NotFound("connection")))?;
            let taken: i64 = me::table
                .filter(me::connection_id.eq(connection.id.get()))
                .filter(me::meter_type.eq(meter.meter_type.as_str()))
                .filter(me::deleted_at.is_null())
                .count()
                .get_result(c)
                .await?;
            if taken > 0 {
                return Err(conflict(format!(
                    "the connection already has a {} meter",
                    meter.meter_type.as_str()
                )));
            }
            if let Some(pole) = a.pole_id {
                let pole = crate::site::load_pole(c, scope, pole.get())
                    .await?
                    .ok_or(StoreError::Domain(DomainError::NotFound("pole")))?;
                if pole.grid_id != connection.grid_id {
                    return Err(StoreError::Domain(DomainError::Validation(vec![
                        FieldError::new(
                            "pole_id",
                            "the pole is on another grid than the connection",
                        ),
                    ])));
                }
            }
            let gateway =
                choose_gateway(c, connection.grid_id.get(), meter.communication_protocol).await?;
            let now = Utc::now();
            diesel::update(me::table.find(id.get()))
                .set((
                    me::organization_id.eq(connection.organization_id.get()),
                    me::grid_id.eq(connection.grid_id.get()),
                    me::connection_id.eq(connection.id.get()),
                    me::pole_id.eq(a.pole_id.map(|p| p.get())),
                    me::dcu_id.eq(gateway),
                    me::assigned_at.eq(now),
                    me::updated_at.eq(now),
                ))
                .execute(c)
                .await?;
            // A meter gets its wallet (in its grid's currency) when it is first placed on a grid.
            crate::wallets::open_wallet(
                c,
                &payments::WalletOwner::Meter(id),
                connection.organization_id.get(),
                connection.grid_id.get(),
            )
            .await?;
            record(
                c,
                connection.organization_id.get(),
                "meter",
                Some(id.get()),
                &audit,
            )
            .await?;
            let m = load(c, scope, id.get()).await?;
            if let Some(m) = &m {
                announce(c, m, m.grid_id, Operation::Update).await?;
            }
            Ok(m)
        })
        .await
    }

    async fn meter_unassign(
        &self,
        scope: TenantScope,
        id: MeterId,
        audit: AuditDraft,
    ) -> Result<Option<Meter>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let locked: Option<i64> = me::table
                .filter(me::id.eq(id.get()))
                .select(me::id)
                .for_update()
                .first(c)
                .await
                .optional()?;
            if locked.is_none() {
                return Ok(None);
            }
            let Some(meter) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            let Some(old_grid) = meter.grid_id else {
                return Ok(Some(meter));
            };
            diesel::update(me::table.find(id.get()))
                .set((
                    me::grid_id.eq(None::<i64>),
                    me::connection_id.eq(None::<i64>),
                    me::pole_id.eq(None::<i64>),
                    me::dcu_id.eq(None::<i64>),
                    me::assigned_at.eq(None::<DateTime<Utc>>),
                    me::updated_at.eq(Utc::now()),
                ))
                .execute(c)
                .await?;
            record(
                c,
                meter.organization_id.get(),
                "meter",
                Some(id.get()),
                &audit,
            )
            .await?;
            let m = load(c, scope, id.get()).await?;
            if let Some(m) = &m {
                announce(c, m, Some(old_grid), Operation::Update).await?;
            }
            Ok(m)
        })
        .await
    }

    async fn meter_report(
        &self,
        scope: TenantScope,
        reports: Vec<MeterStateReport>,
    ) -> Result<Vec<Meter>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let now = Utc::now();
            let mut out = Vec::with_capacity(reports.len());
            for r in reports {
                let mut q = me::table
                    .filter(me::id.eq(r.id.get()))
                    .filter(me::deleted_at.is_null())
                    .into_boxed();
                if let Some(org) = scope.organization() {
                    q = q.filter(me::organization_id.eq(org.get()));
                }
                let found: Option<i64> = q.select(me::id).first(c).await.optional()?;
                if found.is_none() {
                    return Err(StoreError::Domain(DomainError::NotFound("meter")));
                }
                let s = &r;
                diesel::update(me::table.find(r.id.get()))
                    .set(ObservedChanges {
                        is_on: s.is_on,
                        credit_wh: s.credit_wh,
                        power_w: s.power_w,
                        voltage_v: s.voltage_v,
                        power_limit_w: s.power_limit_w,
                        signal_rssi: s.signal_rssi,
                        signal_snr: s.signal_snr,
                        last_seen_at: s.last_seen_at,
                        observed_at: now,
                        updated_at: now,
                    })
                    .execute(c)
                    .await?;
                let m = load(c, scope, r.id.get())
                    .await?
                    .ok_or(StoreError::Domain(DomainError::NotFound("meter")))?;
                announce(c, &m, m.grid_id, Operation::Update).await?;
                out.push(m);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl MeterRepo for Db {
    async fn list(
        &self,
        scope: TenantScope,
        f: MeterFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Meter>, DomainError> {
        Ok(self.meter_list(scope, f, page).await?)
    }
    async fn get(
        &self,
        scope: TenantScope,
        id: MeterId,
    ) -> std::result::Result<Option<Meter>, DomainError> {
        let mut conn = self.conn().await?;
        Ok(load(&mut conn, scope, id.get()).await?)
    }
    async fn insert(
        &self,
        org: OrganizationId,
        new: NewMeter,
        audit: AuditDraft,
    ) -> std::result::Result<Inserted<Meter>, DomainError> {
        Ok(self.meter_insert(org, new, audit).await?)
    }
    async fn update(
        &self,
        scope: TenantScope,
        id: MeterId,
        ch: MeterChanges,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Meter>, DomainError> {
        Ok(self.meter_update(scope, id, ch, audit).await?)
    }
    async fn assign(
        &self,
        scope: TenantScope,
        id: MeterId,
        a: Assignment,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Meter>, DomainError> {
        Ok(self.meter_assign(scope, id, a, audit).await?)
    }
    async fn unassign(
        &self,
        scope: TenantScope,
        id: MeterId,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Meter>, DomainError> {
        Ok(self.meter_unassign(scope, id, audit).await?)
    }
    async fn report_states(
        &self,
        scope: TenantScope,
        reports: Vec<MeterStateReport>,
    ) -> std::result::Result<Vec<Meter>, DomainError> {
        Ok(self.meter_report(scope, reports).await?)
    }
}

#[async_trait]
impl meters::TokenIssue for Db {
    async fn decoder_key(
        &self,
        meter: MeterId,
    ) -> std::result::Result<Option<String>, DomainError> {
        let mut conn = self.conn().await?;
        let key: Option<Option<String>> = me::table
            .find(meter.get())
            .select(me::decoder_key)
            .first(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(key.flatten())
    }

    async fn reserve_issue_time(
        &self,
        meter: MeterId,
        now: DateTime<Utc>,
    ) -> std::result::Result<DateTime<Utc>, DomainError> {
        let mut conn = self.conn().await?;
        let at = conn
            .transaction(async |c| {
                let last: Option<DateTime<Utc>> = me::table
                    .find(meter.get())
                    .select(me::last_sts_token_issued_at)
                    .for_update()
                    .first(c)
                    .await?;
                let next = meters::next_sts_issue_time(last, now);
                diesel::update(me::table.find(meter.get()))
                    .set(me::last_sts_token_issued_at.eq(next))
                    .execute(c)
                    .await?;
                Ok::<_, StoreError>(next)
            })
            .await?;
        Ok(at)
    }
}
