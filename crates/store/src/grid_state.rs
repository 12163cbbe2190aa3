//! A grid's live state, hardware connectivity and the connections export.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use grids::events::{EventKind, LiveEvent, Operation};
use grids::state::{
    ExportRow, GatewayConnectivity, GatewayStatus, GridState, GridStateChange, GridStateRepo,
    MeterConnectivity, share,
};
use grids::vocab::CommunicationProtocol;
use kernel::{DcuId, DomainError, GridId, TenantScope};
use orgs::AuditDraft;

use crate::audit::record;
use crate::schema::{dcus, grid_live as gl, meters};
use crate::{Db, Result};

#[derive(Queryable, Selectable)]
#[diesel(table_name = gl)]
struct LiveRow {
    id: i64,
    organization_id: i64,
    is_hps_on: bool,
    is_hps_on_updated_at: Option<DateTime<Utc>>,
    is_fs_on: bool,
    is_fs_on_updated_at: Option<DateTime<Utc>>,
    should_fs_be_on: bool,
    should_fs_be_on_updated_at: Option<DateTime<Utc>>,
}

async fn live_row(
    c: &mut AsyncPgConnection,
    scope: TenantScope,
    grid: i64,
) -> Result<Option<LiveRow>> {
    let mut q = gl::table
        .filter(gl::id.eq(grid))
        .filter(gl::deleted_at.is_null())
        .select(LiveRow::as_select())
        .into_boxed();
    if let Some(org) = scope.organization() {
        q = q.filter(gl::organization_id.eq(org.get()));
    }
    Ok(q.first::<LiveRow>(c).await.optional()?)
}

/// (id, external reference, protocol, online, last seen)
type GatewayLine = (i64, String, String, bool, Option<DateTime<Utc>>);

async fn load(
    c: &mut AsyncPgConnection,
    scope: TenantScope,
    grid: i64,
) -> Result<Option<GridState>> {
    let Some(row) = live_row(c, scope, grid).await? else {
        return Ok(None);
    };
    let gateways: Vec<GatewayLine> = dcus::table
        .filter(dcus::grid_id.eq(grid))
        .filter(dcus::deleted_at.is_null())
        .order(dcus::id.asc())
        .select((
            dcus::id,
            dcus::external_reference,
            dcus::communication_protocol,
            dcus::is_online,
            dcus::last_seen_at,
        ))
        .load(c)
        .await?;
    let gateways: Vec<GatewayStatus> = gateways
        .into_iter()
        .map(
            |(id, reference, protocol, is_online, last_seen_at)| GatewayStatus {
                id: DcuId(id),
                external_reference: reference,
                communication_protocol: CommunicationProtocol::parse(&protocol)
                    .unwrap_or(CommunicationProtocol::CalinLorawan),
                is_online,
                last_seen_at,
            },
        )
        .collect();
    Ok(Some(GridState {
        grid_id: GridId(row.id),
        is_hps_on: row.is_hps_on,
        is_hps_on_updated_at: row.is_hps_on_updated_at,
        is_fs_on: row.is_fs_on,
        is_fs_on_updated_at: row.is_fs_on_updated_at,
        should_fs_be_on: row.should_fs_be_on,
        should_fs_be_on_updated_at: row.should_fs_be_on_updated_at,
        all_gateways_online: !gateways.is_empty() && gateways.iter().all(|g| g.is_online),
        gateways,
    }))
}

#[derive(QueryableByName)]
struct ExportLine {
    #[diesel(sql_type = BigInt)]
    customer_id: i64,
    #[diesel(sql_type = Text)]
    customer_name: String,
    #[diesel(sql_type = Nullable<Text>)]
    phone: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    email: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    gender: Option<String>,
    #[diesel(sql_type = BigInt)]
    connection_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    upload_uuid: Option<String>,
    #[diesel(sql_type = Bool)]
    is_commercial: bool,
    #[diesel(sql_type = Bool)]
    is_residential: bool,
    #[diesel(sql_type = Bool)]
    is_public: bool,
    #[diesel(sql_type = BigInt)]
    paid_minor: i64,
    #[diesel(sql_type = BigInt)]
    total_fee_minor: i64,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    meter_id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    meter_serial: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    meter_type: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    meter_phase: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pole: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    gateway: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    last_seen_at: Option<DateTime<Utc>>,
}

// One line per (connection, meter); a connection without meters gets one line with meter id 0.
const EXPORT_PAGE: &str = "\
SELECT cu.id AS customer_id, a.full_name AS customer_name, a.phone, a.email, cu.gender,
       cn.id AS connection_id, cn.upload_uuid, cn.is_commercial, cn.is_residential, cn.is_public,
       cn.paid_minor,
       (SELECT COALESCE(SUM(r.fee_minor), 0)::bigint FROM connection_requested_meters r
         WHERE r.connection_id = cn.id AND r.deleted_at IS NULL) AS total_fee_minor,
       cn.currency::text AS currency,
       COALESCE(m.id, 0) AS meter_id, m.external_reference AS meter_serial, m.meter_type, m.meter_phase,
       p.external_reference AS pole, d.external_reference AS gateway, m.last_seen_at
  FROM connections cn
  JOIN customers cu ON cu.id = cn.customer_id
  JOIN accounts a ON a.id = cu.account_id
  LEFT JOIN meters m ON m.connection_id = cn.id AND m.deleted_at IS NULL
  LEFT JOIN poles p ON p.id = m.pole_id
  LEFT JOIN dcus d ON d.id = m.dcu_id
 WHERE cn.grid_id = $1 AND cn.deleted_at IS NULL
   AND ($2::bigint IS NULL OR cn.organization_id = $2)
   AND (cn.id, COALESCE(m.id, 0)) > ($3, $4)
 ORDER BY cn.id, COALESCE(m.id, 0)
 LIMIT $5";

impl Db {
    async fn change_grid_state(
        &self,
        scope: TenantScope,
        grid: GridId,
        ch: GridStateChange,
        audit: AuditDraft,
    ) -> Result<Option<GridState>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(row) = live_row(c, scope, grid.get()).await? else {
                return Ok(None);
            };
            let now = Utc::now();
            // Each `_updated_at` records when the value last changed, not when it was last reported.
            let stamp = |new: Option<bool>, old: bool, at: Option<DateTime<Utc>>| match new {
                Some(v) if v != old => (v, Some(now)),
                _ => (old, at),
            };
            let (hps, hps_at) = stamp(ch.is_hps_on, row.is_hps_on, row.is_hps_on_updated_at);
            let (fs, fs_at) = stamp(ch.is_fs_on, row.is_fs_on, row.is_fs_on_updated_at);
            let (should, should_at) = stamp(
                ch.should_fs_be_on,
                row.should_fs_be_on,
                row.should_fs_be_on_updated_at,
            );
            diesel::update(gl::table.find(grid.get()))
                .set((
                    gl::is_hps_on.eq(hps),
                    gl::is_hps_on_updated_at.eq(hps_at),
                    gl::is_fs_on.eq(fs),
                    gl::is_fs_on_updated_at.eq(fs_at),
                    gl::should_fs_be_on.eq(should),
                    gl::should_fs_be_on_updated_at.eq(should_at),
                ))
                .execute(c)
                .await?;
            record(c, row.organization_id, "grid", Some(grid.get()), &audit).await?;
            let state = load(c, scope, grid.get()).await?;
            if let Some(s) = &state {
                let event = LiveEvent {
                    grid_id: grid,
                    kind: EventKind::Grid,
                    operation: Operation::Update,
                    data: serde_json::to_value(s).unwrap_or_default(),
                };
                crate::events::publish(c, &event).await?;
            }
            Ok(state)
        })
        .await
    }

    async fn grid_connectivity(
        &self,
        scope: TenantScope,
        grid: GridId,
        since: DateTime<Utc>,
    ) -> Result<Option<(MeterConnectivity, GatewayConnectivity)>> {
        let mut conn = self.conn().await?;
        let c = &mut *conn;
        if live_row(c, scope, grid.get()).await?.is_none() {
            return Ok(None);
        }
        // Both counts in one scan of the grid's meters.
        let (total, seen): (i64, i64) = meters::table
            .filter(meters::grid_id.eq(grid.get()))
            .filter(meters::deleted_at.is_null())
            .select((
                diesel::dsl::count_star(),
                diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "count(*) FILTER (WHERE last_seen_at >= ",
                )
                .bind::<Timestamptz, _>(since)
                .sql(")"),
            ))
            .get_result(c)
            .await?;
        let gateways: Vec<(String, bool)> = dcus::table
            .filter(dcus::grid_id.eq(grid.get()))
            .filter(dcus::deleted_at.is_null())
            .order(dcus::external_reference.asc())
            .select((dcus::external_reference, dcus::is_online))
            .load(c)
            .await?;
        let (online, offline): (Vec<_>, Vec<_>) = gateways.into_iter().partition(|(_, up)| *up);
        let online: Vec<String> = online.into_iter().map(|(r, _)| r).collect();
        let offline: Vec<String> = offline.into_iter().map(|(r, _)| r).collect();
        let gateway_total = (online.len() + offline.len()) as i64;
        let share_online = share(online.len() as i64, gateway_total);
        Ok(Some((
            MeterConnectivity {
                total,
                seen,
                share_seen: share(seen, total),
            },
            GatewayConnectivity {
                online,
                offline,
                share_online,
            },
        )))
    }

    async fn grid_export_page(
        &self,
        scope: TenantScope,
        grid: GridId,
        after: (i64, i64),
        limit: i64,
    ) -> Result<Vec<ExportRow>> {
        let mut conn = self.conn().await?;
        let lines: Vec<ExportLine> = diesel::sql_query(EXPORT_PAGE)
            .bind::<BigInt, _>(grid.get())
            .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
            .bind::<BigInt, _>(after.0)
            .bind::<BigInt, _>(after.1)
            .bind::<BigInt, _>(limit)
            .load(&mut conn)
            .await?;
        let text = |v: Option<String>| v.unwrap_or_default();
        Ok(lines
            .into_iter()
            .map(|l| ExportRow {
                connection_id: l.connection_id,
                meter_id: l.meter_id,
                fields: vec![
                    l.customer_id.to_string(),
                    l.customer_name,
                    text(l.phone),
                    text(l.email),
                    text(l.gender),
                    l.connection_id.to_string(),
                    text(l.upload_uuid),
                    l.is_commercial.to_string(),
                    l.is_residential.to_string(),
                    l.is_public.to_string(),
                    l.paid_minor.to_string(),
                    l.total_fee_minor.to_string(),
                    l.currency,
                    text(l.meter_serial),
                    text(l.meter_type),
                    text(l.meter_phase),
                    text(l.pole),
                    text(l.gateway),
                    l.last_seen_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                ],
            })
            .collect())
    }
}

#[async_trait]
impl GridStateRepo for Db {
    async fn state(
        &self,
        scope: TenantScope,
        grid: GridId,
    ) -> std::result::Result<Option<GridState>, DomainError> {
        let mut conn = self.conn().await?;
        Ok(load(&mut conn, scope, grid.get()).await?)
    }
    async fn change_state(
        &self,
        scope: TenantScope,
        grid: GridId,
        ch: GridStateChange,
        audit: AuditDraft,
    ) -> std::result::Result<Option<GridState>, DomainError> {
        Ok(self.change_grid_state(scope, grid, ch, audit).await?)
    }
    async fn connectivity(
        &self,
        scope: TenantScope,
        grid: GridId,
        since: DateTime<Utc>,
    ) -> std::result::Result<Option<(MeterConnectivity, GatewayConnectivity)>, DomainError> {
        Ok(self.grid_connectivity(scope, grid, since).await?)
    }
    async fn export_page(
        &self,
        scope: TenantScope,
        grid: GridId,
        after: (i64, i64),
        limit: i64,
    ) -> std::result::Result<Vec<ExportRow>, DomainError> {
        Ok(self.grid_export_page(scope, grid, after, limit).await?)
    }
}
