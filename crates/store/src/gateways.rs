use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use grids::events::{EventKind, LiveEvent, Operation};
use grids::gateways::{
    Gateway, GatewayChanges, GatewayFilter, GatewayRepo, GatewayState, Inserted, NewGateway,
};
use grids::vocab::{CommunicationProtocol, GatewaySystem};
use kernel::{DcuId, DomainError, GridId, OrganizationId, PageRequest, TenantScope};
use orgs::AuditDraft;

use crate::audit::record;
use crate::schema::{dcus as d, grids as gr, meters};
use crate::{Db, Result, StoreError, like_pattern};

#[derive(Queryable, Selectable)]
#[diesel(table_name = d)]
pub(crate) struct GatewayRow {
    id: i64,
    organization_id: i64,
    grid_id: Option<i64>,
    external_system: String,
    external_reference: String,
    communication_protocol: String,
    nickname: Option<String>,
    is_online: bool,
    is_online_updated_at: Option<DateTime<Utc>>,
    last_online_at: Option<DateTime<Utc>>,
    last_seen_at: Option<DateTime<Utc>>,
    signal_rssi: Option<i32>,
    signal_snr: Option<f64>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn bad_enum(what: &str, v: &str) -> StoreError {
    StoreError::Domain(DomainError::Internal(format!(
        "unknown {what} {v:?} in the database"
    )))
}

impl GatewayRow {
    fn into_gateway(self, meter_count: i64) -> Result<Gateway> {
        Ok(Gateway {
            id: DcuId(self.id),
            organization_id: OrganizationId(self.organization_id),
            grid_id: self.grid_id.map(GridId),
            external_system: GatewaySystem::parse(&self.external_system)
                .ok_or_else(|| bad_enum("gateway system", &self.external_system))?,
            external_reference: self.external_reference,
            communication_protocol: CommunicationProtocol::parse(&self.communication_protocol)
                .ok_or_else(|| bad_enum("protocol", &self.communication_protocol))?,
            nickname: self.nickname,
            is_online: self.is_online,
            is_online_updated_at: self.is_online_updated_at,
            last_online_at: self.last_online_at,
            last_seen_at: self.last_seen_at,
            signal_rssi: self.signal_rssi,
            signal_snr: self.signal_snr,
            latitude: self.latitude,
            longitude: self.longitude,
            meter_count,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Live meters per gateway, for the given gateways (absent: none).
pub(crate) async fn meters_per_gateway(
    c: &mut AsyncPgConnection,
    gateways: &[i64],
) -> Result<HashMap<i64, i64>> {
    Ok(meters::table
        .filter(meters::dcu_id.eq_any(gateways))
        .filter(meters::deleted_at.is_null())
        .group_by(meters::dcu_id)
        .select((meters::dcu_id, count_star()))
        .load::<(Option<i64>, i64)>(c)
        .await?
        .into_iter()
        .filter_map(|(id, n)| id.map(|id| (id, n)))
        .collect())
}

async fn with_counts(c: &mut AsyncPgConnection, rows: Vec<GatewayRow>) -> Result<Vec<Gateway>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let counts = meters_per_gateway(c, &ids).await?;
    rows.into_iter()
        .map(|r| {
            let n = counts.get(&r.id).copied().unwrap_or(0);
            r.into_gateway(n)
        })
        .collect()
}

pub(crate) async fn load(
    c: &mut AsyncPgConnection,
    scope: TenantScope,
    id: i64,
) -> Result<Option<Gateway>> {
    let mut q = d::table
        .filter(d::id.eq(id))
        .filter(d::deleted_at.is_null())
        .select(GatewayRow::as_select())
        .into_boxed();
    if let Some(org) = scope.organization() {
        q = q.filter(d::organization_id.eq(org.get()));
    }
    let Some(row) = q.first::<GatewayRow>(c).await.optional()? else {
        return Ok(None);
    };
    Ok(with_counts(c, vec![row]).await?.pop())
}

async fn announce(
    c: &mut AsyncPgConnection,
    g: &Gateway,
    grid: Option<GridId>,
    op: Operation,
) -> Result<()> {
    if let Some(grid_id) = grid {
        let event = LiveEvent {
            grid_id,
            kind: EventKind::Dcu,
            operation: op,
            data: serde_json::to_value(g).unwrap_or_default(),
        };
        crate::events::publish(c, &event).await?;
    }
    Ok(())
}

impl Db {
    async fn gateway_list(
        &self,
        scope: TenantScope,
        f: GatewayFilter,
        page: PageRequest,
    ) -> Result<Vec<Gateway>> {
        let mut conn = self.conn().await?;
        let mut q = d::table
            .filter(d::deleted_at.is_null())
            .select(GatewayRow::as_select())
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(d::organization_id.eq(org.get()));
        }
        if let Some(g) = f.grid_id {
            q = q.filter(d::grid_id.eq(g.get()));
        }
        match f.assigned {
            Some(true) => q = q.filter(d::grid_id.is_not_null()),
            Some(false) => q = q.filter(d::grid_id.is_null()),
            None => {}
        }
        if let Some(online) = f.is_online {
            q = q.filter(d::is_online.eq(online));
        }
        if let Some(p) = f.communication_protocol {
            q = q.filter(d::communication_protocol.eq(p.as_str()));
        }
        if let Some(s) = f.search.filter(|s| !s.trim().is_empty()) {
            let pat = like_pattern(&s);
            q = q.filter(
                d::external_reference
                    .ilike(pat.clone())
                    .or(d::nickname.ilike(pat)),
            );
        }
        if let Some(after) = page.after_id {
            q = q.filter(d::id.gt(after));
        }
        let rows = q
            .order(d::id.asc())
            .limit(page.fetch_limit())
            .load::<GatewayRow>(&mut conn)
            .await?;
        with_counts(&mut conn, rows).await
    }

    async fn gateway_insert(
        &self,
        org: OrganizationId,
        new: NewGateway,
        audit: AuditDraft,
    ) -> Result<Inserted<Gateway>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let existing: Option<(i64, i64)> = d::table
                .filter(d::external_system.eq(new.external_system.as_str()))
                .filter(d::external_reference.eq(&new.external_reference))
                .select((d::id, d::organization_id))
                .for_update()
                .first(c)
                .await
                .optional()?;
            if let Some((id, owner)) = existing {
                if owner != org.get() {
                    return Err(StoreError::Domain(DomainError::Conflict(
                        "this gateway is registered to another organization".into(),
                    )));
                }
                let g = load(c, TenantScope::All, id)
                    .await?
                    .ok_or(StoreError::Domain(DomainError::Conflict(
                        "this gateway was deleted; restore it instead of registering it again"
                            .into(),
                    )))?;
                return Ok(Inserted {
                    value: g,
                    created: false,
                });
            }
            let id: i64 = diesel::insert_into(d::table)
                .values((
                    d::organization_id.eq(org.get()),
                    d::external_system.eq(new.external_system.as_str()),
                    d::external_reference.eq(&new.external_reference),
                    d::communication_protocol.eq(new.communication_protocol.as_str()),
                    d::nickname.eq(&new.nickname),
                    d::latitude.eq(new.latitude),
                    d::longitude.eq(new.longitude),
                ))
                .returning(d::id)
                .get_result(c)
                .await?;
            record(c, org.get(), "gateway", Some(id), &audit).await?;
            let g = load(c, TenantScope::All, id)
                .await?
                .ok_or(StoreError::Domain(DomainError::NotFound("gateway")))?;
            Ok(Inserted {
                value: g,
                created: true,
            })
        })
        .await
    }

    async fn gateway_update(
        &self,
        scope: TenantScope,
        id: DcuId,
        ch: GatewayChanges,
        audit: AuditDraft,
    ) -> Result<Option<Gateway>> {
        #[derive(AsChangeset)]
        #[diesel(table_name = d)]
        struct Changes {
            nickname: Option<Option<String>>,
            communication_protocol: Option<&'static str>,
            latitude: Option<Option<f64>>,
            longitude: Option<Option<f64>>,
            updated_at: DateTime<Utc>,
        }
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            if ch
                .communication_protocol
                .is_some_and(|p| p != current.communication_protocol)
                && current.meter_count > 0
            {
                return Err(StoreError::Domain(DomainError::Conflict(
                    "the protocol of a gateway with meters cannot change".into(),
                )));
            }
            diesel::update(d::table.find(id.get()))
                .set(Changes {
                    nickname: crate::clearable(ch.nickname),
                    communication_protocol: ch
                        .communication_protocol
                        .map(CommunicationProtocol::as_str),
                    latitude: ch.latitude,
                    longitude: ch.longitude,
                    updated_at: Utc::now(),
                })
                .execute(c)
                .await?;
            record(
                c,
                current.organization_id.get(),
                "gateway",
                Some(id.get()),
                &audit,
            )
            .await?;
            let g = load(c, scope, id.get()).await?;
            if let Some(g) = &g {
                announce(c, g, g.grid_id, Operation::Update).await?;
            }
            Ok(g)
        })
        .await
    }

    async fn gateway_assign(
        &self,
        scope: TenantScope,
        id: DcuId,
        grid: GridId,
        audit: AuditDraft,
    ) -> Result<Option<Gateway>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            let grid_org: Option<i64> = gr::table
                .filter(gr::id.eq(grid.get()))
                .filter(gr::deleted_at.is_null())
                .filter(gr::organization_id.eq(current.organization_id.get()))
                .select(gr::organization_id)
                .first(c)
                .await
                .optional()?;
            grid_org.ok_or(StoreError::Domain(DomainError::NotFound("grid")))?;
            if current.grid_id.is_some_and(|g| g != grid) && current.meter_count > 0 {
                return Err(StoreError::Domain(DomainError::Conflict(format!(
                    "{} meters still use this gateway on its current grid; unassign them first",
                    current.meter_count
                ))));
            }
            diesel::update(d::table.find(id.get()))
                .set((d::grid_id.eq(grid.get()), d::updated_at.eq(Utc::now())))
                .execute(c)
                .await?;
            record(
                c,
                current.organization_id.get(),
                "gateway",
                Some(id.get()),
                &audit,
            )
            .await?;
            let g = load(c, scope, id.get()).await?;
            if let Some(g) = &g {
                announce(c, g, Some(grid), Operation::Update).await?;
            }
            Ok(g)
        })
        .await
    }

    async fn gateway_unassign(
        &self,
        scope: TenantScope,
        id: DcuId,
        audit: AuditDraft,
    ) -> Result<Option<Gateway>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            if current.meter_count > 0 {
                return Err(StoreError::Domain(DomainError::Conflict(format!(
                    "{} meters still use this gateway; unassign them first",
                    current.meter_count
                ))));
            }
            diesel::update(d::table.find(id.get()))
                .set((d::grid_id.eq(None::<i64>), d::updated_at.eq(Utc::now())))
                .execute(c)
                .await?;
            record(
                c,
                current.organization_id.get(),
                "gateway",
                Some(id.get()),
                &audit,
            )
            .await?;
            let g = load(c, scope, id.get()).await?;
            if let Some(g) = &g {
                announce(c, g, current.grid_id, Operation::Update).await?;
            }
            Ok(g)
        })
        .await
    }

    async fn gateway_report(
        &self,
        scope: TenantScope,
        states: Vec<GatewayState>,
    ) -> Result<Vec<Gateway>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let mut out = Vec::with_capacity(states.len());
            let now = Utc::now();
            for s in states {
                let Some(current) = load(c, scope, s.id.get()).await? else {
                    return Err(StoreError::Domain(DomainError::NotFound("gateway")));
                };
                let online = s.is_online.unwrap_or(current.is_online);
                let flipped = online != current.is_online;
                diesel::update(d::table.find(s.id.get()))
                    .set((
                        d::is_online.eq(online),
                        d::is_online_updated_at.eq(if flipped {
                            Some(now)
                        } else {
                            current.is_online_updated_at
                        }),
                        d::last_online_at.eq(if online {
                            Some(now)
                        } else {
                            current.last_online_at
                        }),
                        d::last_seen_at.eq(s.last_seen_at.or(current.last_seen_at)),
                        d::signal_rssi.eq(s.signal_rssi.or(current.signal_rssi)),
                        d::signal_snr.eq(s.signal_snr.or(current.signal_snr)),
                        d::updated_at.eq(now),
                    ))
                    .execute(c)
                    .await?;
                let g = load(c, scope, s.id.get())
                    .await?
                    .ok_or(StoreError::Domain(DomainError::NotFound("gateway")))?;
                announce(c, &g, g.grid_id, Operation::Update).await?;
                out.push(g);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl GatewayRepo for Db {
    async fn list(
        &self,
        scope: TenantScope,
        f: GatewayFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Gateway>, DomainError> {
        Ok(self.gateway_list(scope, f, page).await?)
    }
    async fn get(
        &self,
        scope: TenantScope,
        id: DcuId,
    ) -> std::result::Result<Option<Gateway>, DomainError> {
        let mut conn = self.conn().await?;
        Ok(load(&mut conn, scope, id.get()).await?)
    }
    async fn insert(
        &self,
        org: OrganizationId,
        new: NewGateway,
        audit: AuditDraft,
    ) -> std::result::Result<Inserted<Gateway>, DomainError> {
        Ok(self.gateway_insert(org, new, audit).await?)
    }
    async fn update(
        &self,
        scope: TenantScope,
        id: DcuId,
        ch: GatewayChanges,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Gateway>, DomainError> {
        Ok(self.gateway_update(scope, id, ch, audit).await?)
    }
    async fn assign(
        &self,
        scope: TenantScope,
        id: DcuId,
        grid: GridId,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Gateway>, DomainError> {
        Ok(self.gateway_assign(scope, id, grid, audit).await?)
    }
    async fn unassign(
        &self,
        scope: TenantScope,
        id: DcuId,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Gateway>, DomainError> {
        Ok(self.gateway_unassign(scope, id, audit).await?)
    }
    async fn report_states(
        &self,
        scope: TenantScope,
        states: Vec<GatewayState>,
    ) -> std::result::Result<Vec<Gateway>, DomainError> {
        Ok(self.gateway_report(scope, states).await?)
    }
}
