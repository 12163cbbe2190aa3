use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use grids::events::{EventKind, LiveEvent, Operation};
use grids::{Grid, GridFields, GridFilter, GridRepo};
use kernel::{Currency, DomainError, GridId, MinorUnits, OrganizationId, PageRequest, TenantScope};
use orgs::AuditDraft;

use crate::audit::record;
use crate::schema::{agents, customers, grids as gr, organizations};
use crate::{Db, Result, StoreError, like_pattern};

#[derive(Queryable, Selectable)]
#[diesel(table_name = gr)]
struct GridRow {
    id: i64,
    organization_id: i64,
    name: String,
    timezone: String,
    currency: String,
    hps_tariff_minor_per_kwh: i64,
    fs_tariff_minor_per_kwh: i64,
    default_hps_connection_fee_minor: i64,
    default_fs_1_phase_connection_fee_minor: i64,
    default_fs_3_phase_connection_fee_minor: i64,
    pv_capacity_wp: i64,
    storage_capacity_wh: i64,
    lifeline_threshold_wh: i64,
    lifeline_threshold_days: i32,
    commissioning_initial_credit_wh: i64,
    is_hidden_from_reporting: bool,
    is_three_phase_supported: bool,
    uses_dual_meter_setup: bool,
    is_automatic_meter_install_enabled: bool,
    is_automatic_payout_generation_enabled: bool,
    is_dcu_connectivity_tracking_enabled: bool,
    latitude: Option<f64>,
    longitude: Option<f64>,
    deployed_at: Option<DateTime<Utc>>,
    commissioned_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<GridRow> for Grid {
    type Error = StoreError;
    fn try_from(r: GridRow) -> Result<Self> {
        let currency = Currency::parse(&r.currency)
            .map_err(|e| StoreError::Domain(DomainError::Internal(e.message)))?;
        Ok(Grid {
            id: GridId(r.id),
            organization_id: OrganizationId(r.organization_id),
            name: r.name,
            timezone: r.timezone,
            currency,
            hps_tariff_minor_per_kwh: MinorUnits(r.hps_tariff_minor_per_kwh),
            fs_tariff_minor_per_kwh: MinorUnits(r.fs_tariff_minor_per_kwh),
            default_hps_connection_fee: MinorUnits(r.default_hps_connection_fee_minor),
            default_fs_1_phase_connection_fee: MinorUnits(
                r.default_fs_1_phase_connection_fee_minor,
            ),
            default_fs_3_phase_connection_fee: MinorUnits(
                r.default_fs_3_phase_connection_fee_minor,
            ),
            pv_capacity_wp: r.pv_capacity_wp,
            storage_capacity_wh: r.storage_capacity_wh,
            lifeline_threshold_wh: r.lifeline_threshold_wh,
            lifeline_threshold_days: r.lifeline_threshold_days,
            commissioning_initial_credit_wh: r.commissioning_initial_credit_wh,
            is_hidden_from_reporting: r.is_hidden_from_reporting,
            is_three_phase_supported: r.is_three_phase_supported,
            uses_dual_meter_setup: r.uses_dual_meter_setup,
            is_automatic_meter_install_enabled: r.is_automatic_meter_install_enabled,
            is_automatic_payout_generation_enabled: r.is_automatic_payout_generation_enabled,
            is_dcu_connectivity_tracking_enabled: r.is_dcu_connectivity_tracking_enabled,
            latitude: r.latitude,
            longitude: r.longitude,
            deployed_at: r.deployed_at,
            commissioned_at: r.commissioned_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = gr)]
struct GridChanges {
    name: Option<String>,
    timezone: Option<String>,
    currency: Option<String>,
    hps_tariff_minor_per_kwh: Option<i64>,
    fs_tariff_minor_per_kwh: Option<i64>,
    default_hps_connection_fee_minor: Option<i64>,
    default_fs_1_phase_connection_fee_minor: Option<i64>,
    default_fs_3_phase_connection_fee_minor: Option<i64>,
    pv_capacity_wp: Option<i64>,
    storage_capacity_wh: Option<i64>,
    lifeline_threshold_wh: Option<i64>,
    lifeline_threshold_days: Option<i32>,
    commissioning_initial_credit_wh: Option<i64>,
    is_hidden_from_reporting: Option<bool>,
    is_three_phase_supported: Option<bool>,
    uses_dual_meter_setup: Option<bool>,
    is_automatic_meter_install_enabled: Option<bool>,
    is_automatic_payout_generation_enabled: Option<bool>,
    is_dcu_connectivity_tracking_enabled: Option<bool>,
    latitude: Option<Option<f64>>,
    longitude: Option<Option<f64>>,
    deployed_at: Option<Option<DateTime<Utc>>>,
    commissioned_at: Option<Option<DateTime<Utc>>>,
    updated_at: DateTime<Utc>,
}

impl From<GridFields> for GridChanges {
    fn from(f: GridFields) -> Self {
        GridChanges {
            name: f.name.map(|n| n.trim().to_owned()),
            timezone: f.timezone,
            currency: f.currency.map(|c| c.as_str().to_owned()),
            hps_tariff_minor_per_kwh: f.hps_tariff_minor_per_kwh,
            fs_tariff_minor_per_kwh: f.fs_tariff_minor_per_kwh,
            default_hps_connection_fee_minor: f.default_hps_connection_fee,
            default_fs_1_phase_connection_fee_minor: f.default_fs_1_phase_connection_fee,
            default_fs_3_phase_connection_fee_minor: f.default_fs_3_phase_connection_fee,
            pv_capacity_wp: f.pv_capacity_wp,
            storage_capacity_wh: f.storage_capacity_wh,
            lifeline_threshold_wh: f.lifeline_threshold_wh,
            lifeline_threshold_days: f.lifeline_threshold_days,
            commissioning_initial_credit_wh: f.commissioning_initial_credit_wh,
            is_hidden_from_reporting: f.is_hidden_from_reporting,
            is_three_phase_supported: f.is_three_phase_supported,
            uses_dual_meter_setup: f.uses_dual_meter_setup,
            is_automatic_meter_install_enabled: f.is_automatic_meter_install_enabled,
            is_automatic_payout_generation_enabled: f.is_automatic_payout_generation_enabled,
            is_dcu_connectivity_tracking_enabled: f.is_dcu_connectivity_tracking_enabled,
            latitude: f.latitude,
            longitude: f.longitude,
            deployed_at: f.deployed_at,
            commissioned_at: f.commissioned_at,
            updated_at: Utc::now(),
        }
    }
}

async fn load(c: &mut AsyncPgConnection, scope: TenantScope, id: i64) -> Result<Option<Grid>> {
    let mut q = gr::table
        .filter(gr::id.eq(id))
        .filter(gr::deleted_at.is_null())
        .select(GridRow::as_select())
        .into_boxed();
    if let Some(org) = scope.organization() {
        q = q.filter(gr::organization_id.eq(org.get()));
    }
    q.first::<GridRow>(c)
        .await
        .optional()?
        .map(Grid::try_from)
        .transpose()
}

impl Db {
    async fn grid_list(
        &self,
        scope: TenantScope,
        f: GridFilter,
        page: PageRequest,
    ) -> Result<Vec<Grid>> {
        let mut conn = self.conn().await?;
        let mut q = gr::table
            .filter(gr::deleted_at.is_null())
            .select(GridRow::as_select())
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(gr::organization_id.eq(org.get()));
        }
        if let Some(only) = f.only {
            q = q.filter(gr::id.eq(only.get()));
        }
        if let Some(s) = f.search.filter(|s| !s.trim().is_empty()) {
            q = q.filter(gr::name.ilike(like_pattern(&s)));
        }
        if let Some(after) = page.after_id {
            q = q.filter(gr::id.gt(after));
        }
        let rows = q
            .order(gr::id.asc())
            .limit(page.fetch_limit())
            .load::<GridRow>(&mut conn)
            .await?;
        rows.into_iter().map(Grid::try_from).collect()
    }

    async fn grid_create(
        &self,
        org: OrganizationId,
        f: GridFields,
        audit: AuditDraft,
    ) -> Result<Grid> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let live: Option<i64> = organizations::table
                .filter(organizations::id.eq(org.get()))
                .filter(organizations::deleted_at.is_null())
                .select(organizations::id)
                .first(c)
                .await
                .optional()?;
            live.ok_or(StoreError::Domain(DomainError::NotFound("organization")))?;
            let ch = GridChanges::from(f);
            let id: i64 = diesel::insert_into(gr::table)
                .values((
                    gr::organization_id.eq(org.get()),
                    gr::name.eq(ch.name.clone().unwrap_or_default()),
                    gr::currency.eq(ch.currency.clone().unwrap_or_default()),
                ))
                .returning(gr::id)
                .get_result(c)
                .await?;
            diesel::update(gr::table.find(id))
                .set(ch)
                .execute(c)
                .await?;
            // The organization holds a wallet in every currency it runs a grid in.
            crate::wallets::open_wallet(
                c,
                &payments::WalletOwner::Organization(org),
                org.get(),
                id,
            )
            .await?;
            record(c, org.get(), "grid", Some(id), &audit).await?;
            load(c, TenantScope::All, id)
                .await?
                .ok_or(StoreError::Domain(DomainError::NotFound("grid")))
        })
        .await
    }

    async fn grid_update(
        &self,
        scope: TenantScope,
        id: GridId,
        f: GridFields,
        audit: AuditDraft,
    ) -> Result<Option<Grid>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            diesel::update(gr::table.find(id.get()))
                .set(GridChanges::from(f))
                .execute(c)
                .await?;
            // A grid moved to another currency needs the organization's wallet in it.
            crate::wallets::open_wallet(
                c,
                &payments::WalletOwner::Organization(current.organization_id),
                current.organization_id.get(),
                id.get(),
            )
            .await?;
            record(
                c,
                current.organization_id.get(),
                "grid",
                Some(id.get()),
                &audit,
            )
            .await?;
            let grid = load(c, scope, id.get()).await?;
            if let Some(g) = &grid {
                let event = LiveEvent {
                    grid_id: g.id,
                    kind: EventKind::Grid,
                    operation: Operation::Update,
                    data: serde_json::to_value(g).unwrap_or_default(),
                };
                crate::events::publish(c, &event).await?;
            }
            Ok(grid)
        })
        .await
    }

    async fn grid_delete(&self, scope: TenantScope, id: GridId, audit: AuditDraft) -> Result<bool> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(false);
            };
            let people: i64 = customers::table
                .filter(customers::grid_id.eq(id.get()))
                .filter(customers::deleted_at.is_null())
                .count()
                .get_result::<i64>(c)
                .await?
                + agents::table
                    .filter(agents::grid_id.eq(id.get()))
                    .filter(agents::deleted_at.is_null())
                    .count()
                    .get_result::<i64>(c)
                    .await?;
            if people > 0 {
                return Err(StoreError::Domain(DomainError::Conflict(format!(
                    "the grid still has {people} customers or agents; move or delete them first"
                ))));
            }
            diesel::update(gr::table.find(id.get()))
                .set(gr::deleted_at.eq(Utc::now()))
                .execute(c)
                .await?;
            record(
                c,
                current.organization_id.get(),
                "grid",
                Some(id.get()),
                &audit,
            )
            .await?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl GridRepo for Db {
    async fn list(
        &self,
        scope: TenantScope,
        f: GridFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Grid>, DomainError> {
        Ok(self.grid_list(scope, f, page).await?)
    }
    async fn get(
        &self,
        scope: TenantScope,
        id: GridId,
    ) -> std::result::Result<Option<Grid>, DomainError> {
        let mut conn = self.conn().await?;
        Ok(load(&mut conn, scope, id.get()).await?)
    }
    async fn create(
        &self,
        org: OrganizationId,
        f: GridFields,
        audit: AuditDraft,
    ) -> std::result::Result<Grid, DomainError> {
        Ok(self.grid_create(org, f, audit).await?)
    }
    async fn update(
        &self,
        scope: TenantScope,
        id: GridId,
        f: GridFields,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Grid>, DomainError> {
        Ok(self.grid_update(scope, id, f, audit).await?)
    }
    async fn delete(
        &self,
        scope: TenantScope,
        id: GridId,
        audit: AuditDraft,
    ) -> std::result::Result<bool, DomainError> {
        Ok(self.grid_delete(scope, id, audit).await?)
    }
}
