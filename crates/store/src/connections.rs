use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use grids::connections::{
    Connection, ConnectionFields, ConnectionFilter, ConnectionRepo, NewConnection, RequestedMeter,
    RequestedMeterInput,
};
use grids::vocab::{ConnectionSource, DocumentType, MeterPhase, MeterType};
use kernel::{
    ConnectionId, Currency, CustomerId, DomainError, GridId, MinorUnits, OrganizationId,
    PageRequest, RequestedMeterId, TenantScope,
};
use orgs::AuditDraft;

use crate::audit::record;
use crate::schema::{connection_requested_meters as rm, connections as cn, customers, grids as gr};
use crate::{Db, Result, StoreError, clearable};

#[derive(Queryable, Selectable)]
#[diesel(table_name = cn)]
struct ConnectionRow {
    id: i64,
    organization_id: i64,
    grid_id: i64,
    customer_id: i64,
    upload_uuid: Option<String>,
    external_system: String,
    document_type: Option<String>,
    document_id: Option<String>,
    paid_minor: i64,
    currency: String,
    women_impacted: i32,
    is_public: bool,
    is_commercial: bool,
    is_residential: bool,
    is_lifeline: Option<bool>,
    is_building_wired: bool,
    is_using_led_bulbs: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = rm)]
struct RequestedRow {
    id: i64,
    connection_id: i64,
    meter_type: String,
    meter_phase: String,
    fee_minor: i64,
}

#[derive(AsChangeset)]
#[diesel(table_name = cn)]
struct Changes {
    external_system: Option<&'static str>,
    document_type: Option<Option<&'static str>>,
    document_id: Option<Option<String>>,
    women_impacted: Option<i32>,
    is_public: Option<bool>,
    is_commercial: Option<bool>,
    is_residential: Option<bool>,
    is_lifeline: Option<Option<bool>>,
    is_building_wired: Option<bool>,
    is_using_led_bulbs: Option<bool>,
    updated_at: DateTime<Utc>,
}

impl From<ConnectionFields> for Changes {
    fn from(f: ConnectionFields) -> Self {
        Changes {
            external_system: f.external_system.map(ConnectionSource::as_str),
            document_type: f.document_type.map(|d| d.map(DocumentType::as_str)),
            document_id: clearable(f.document_id),
            women_impacted: f.women_impacted,
            is_public: f.is_public,
            is_commercial: f.is_commercial,
            is_residential: f.is_residential,
            is_lifeline: f.is_lifeline,
            is_building_wired: f.is_building_wired,
            is_using_led_bulbs: f.is_using_led_bulbs,
            updated_at: Utc::now(),
        }
    }
}

async fn assemble(c: &mut AsyncPgConnection, rows: Vec<ConnectionRow>) -> Result<Vec<Connection>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let requested = rm::table
        .filter(rm::connection_id.eq_any(&ids))
        .filter(rm::deleted_at.is_null())
        .order(rm::id.asc())
        .select(RequestedRow::as_select())
        .load::<RequestedRow>(c)
        .await?;
    rows.into_iter()
        .map(|r| {
            let meters: Vec<RequestedMeter> = requested
                .iter()
                .filter(|m| m.connection_id == r.id)
                .map(|m| RequestedMeter {
                    id: RequestedMeterId(m.id),
                    meter_type: MeterType::parse(&m.meter_type).unwrap_or(MeterType::Hps),
                    meter_phase: MeterPhase::parse(&m.meter_phase)
                        .unwrap_or(MeterPhase::SinglePhase),
                    fee: MinorUnits(m.fee_minor),
                })
                .collect();
            let currency = Currency::parse(&r.currency)
                .map_err(|e| StoreError::Domain(DomainError::Internal(e.message)))?;
            Ok(Connection {
                id: ConnectionId(r.id),
                organization_id: OrganizationId(r.organization_id),
                grid_id: GridId(r.grid_id),
                customer_id: CustomerId(r.customer_id),
                upload_uuid: r.upload_uuid,
                external_system: ConnectionSource::parse(&r.external_system)
                    .unwrap_or(ConnectionSource::Manual),
                document_type: r.document_type.as_deref().and_then(DocumentType::parse),
                document_id: r.document_id,
                paid: MinorUnits(r.paid_minor),
                currency,
                total_fee: MinorUnits(meters.iter().map(|m| m.fee.0).sum()),
                women_impacted: r.women_impacted,
                is_public: r.is_public,
                is_commercial: r.is_commercial,
                is_residential: r.is_residential,
                is_lifeline: r.is_lifeline,
                is_building_wired: r.is_building_wired,
                is_using_led_bulbs: r.is_using_led_bulbs,
                requested_meters: meters,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
        })
        .collect()
}

pub(crate) async fn load(
    c: &mut AsyncPgConnection,
    scope: TenantScope,
    id: i64,
) -> Result<Option<Connection>> {
    let mut q = cn::table
        .filter(cn::id.eq(id))
        .filter(cn::deleted_at.is_null())
        .select(ConnectionRow::as_select())
        .into_boxed();
    if let Some(org) = scope.organization() {
        q = q.filter(cn::organization_id.eq(org.get()));
    }
    let Some(row) = q.first::<ConnectionRow>(c).await.optional()? else {
        return Ok(None);
    };
    Ok(assemble(c, vec![row]).await?.pop())
}

async fn insert_requested(
    c: &mut AsyncPgConnection,
    connection: i64,
    org: i64,
    meters: &[RequestedMeterInput],
) -> Result<i64> {
    for m in meters {
        diesel::insert_into(rm::table)
            .values((
                rm::connection_id.eq(connection),
                rm::organization_id.eq(org),
                rm::meter_type.eq(m.meter_type.as_str()),
                rm::meter_phase.eq(m.meter_phase.as_str()),
                rm::fee_minor.eq(m.fee),
            ))
            .execute(c)
            .await?;
    }
    Ok(meters.iter().map(|m| m.fee).sum())
}

/// Keeps `customers.total_connection_fee_minor` equal to the sum of live requested fees.
async fn move_customer_total(c: &mut AsyncPgConnection, customer: i64, delta: i64) -> Result<()> {
    if delta != 0 {
        diesel::update(customers::table.find(customer))
            .set((
                customers::total_connection_fee_minor
                    .eq(customers::total_connection_fee_minor + delta),
                customers::updated_at.eq(Utc::now()),
            ))
            .execute(c)
            .await?;
    }
    Ok(())
}

impl Db {
    async fn connection_list(
        &self,
        scope: TenantScope,
        f: ConnectionFilter,
        page: PageRequest,
    ) -> Result<Vec<Connection>> {
        let mut conn = self.conn().await?;
        let mut q = cn::table
            .filter(cn::deleted_at.is_null())
            .select(ConnectionRow::as_select())
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(cn::organization_id.eq(org.get()));
        }
        if let Some(g) = f.grid_id {
            q = q.filter(cn::grid_id.eq(g.get()));
        }
        if let Some(cu) = f.customer_id {
            q = q.filter(cn::customer_id.eq(cu.get()));
        }
        if let Some(after) = page.after_id {
            q = q.filter(cn::id.gt(after));
        }
        let rows = q
            .order(cn::id.asc())
            .limit(page.fetch_limit())
            .load::<ConnectionRow>(&mut conn)
            .await?;
        assemble(&mut conn, rows).await
    }

    async fn connection_create(
        &self,
        scope: TenantScope,
        new: NewConnection,
        audit: AuditDraft,
    ) -> Result<Connection> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            // The customer decides grid, organization and (through the grid) currency.
            let mut q = customers::table
                .inner_join(gr::table.on(gr::id.eq(customers::grid_id)))
                .filter(customers::id.eq(new.customer_id.get()))
                .filter(customers::deleted_at.is_null())
                .select((customers::organization_id, customers::grid_id, gr::currency))
                .into_boxed();
            if let Some(org) = scope.organization() {
                q = q.filter(customers::organization_id.eq(org.get()));
            }
            let (org, grid, currency): (i64, i64, String) = q
                .first(c)
                .await
                .optional()?
                .ok_or(StoreError::Domain(DomainError::NotFound("customer")))?;
            if let Some(u) = &new.upload_uuid {
                let taken: i64 = cn::table
                    .filter(cn::upload_uuid.eq(u))
                    .count()
                    .get_result(c)
                    .await?;
                if taken > 0 {
                    return Err(StoreError::Domain(DomainError::Conflict(format!(
                        "a connection with upload_uuid {u} exists"
                    ))));
                }
            }
            let id: i64 = diesel::insert_into(cn::table)
                .values((
                    cn::organization_id.eq(org),
                    cn::grid_id.eq(grid),
                    cn::customer_id.eq(new.customer_id.get()),
                    cn::upload_uuid.eq(&new.upload_uuid),
                    cn::currency.eq(&currency),
                ))
                .returning(cn::id)
                .get_result(c)
                .await?;
            diesel::update(cn::table.find(id))
                .set(Changes::from(new.fields))
                .execute(c)
                .await?;
            let total = insert_requested(c, id, org, &new.requested_meters).await?;
            move_customer_total(c, new.customer_id.get(), total).await?;
            crate::wallets::open_wallet(
                c,
                &payments::WalletOwner::Connection(kernel::ConnectionId(id)),
                org,
                grid,
            )
            .await?;
            record(c, org, "connection", Some(id), &audit).await?;
            load(c, TenantScope::All, id)
                .await?
                .ok_or(StoreError::Domain(DomainError::NotFound("connection")))
        })
        .await
    }

    async fn connection_update(
        &self,
        scope: TenantScope,
        id: ConnectionId,
        f: ConnectionFields,
        audit: AuditDraft,
    ) -> Result<Option<Connection>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            diesel::update(cn::table.find(id.get()))
                .set(Changes::from(f))
                .execute(c)
                .await?;
            record(
                c,
                current.organization_id.get(),
                "connection",
                Some(id.get()),
                &audit,
            )
            .await?;
            load(c, scope, id.get()).await
        })
        .await
    }

    async fn connection_replace_meters(
        &self,
        scope: TenantScope,
        id: ConnectionId,
        meters: Vec<RequestedMeterInput>,
        audit: AuditDraft,
    ) -> Result<Option<Connection>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            // Lock the connection so two replacements cannot both apply their fee differences.
            let locked: Option<i64> = cn::table
                .filter(cn::id.eq(id.get()))
                .select(cn::id)
                .for_update()
                .first(c)
                .await
                .optional()?;
            if locked.is_none() {
                return Ok(None);
            }
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            diesel::update(
                rm::table
                    .filter(rm::connection_id.eq(id.get()))
                    .filter(rm::deleted_at.is_null()),
            )
            .set(rm::deleted_at.eq(Utc::now()))
            .execute(c)
            .await?;
            let total =
                insert_requested(c, id.get(), current.organization_id.get(), &meters).await?;
            move_customer_total(c, current.customer_id.get(), total - current.total_fee.0).await?;
            diesel::update(cn::table.find(id.get()))
                .set(cn::updated_at.eq(Utc::now()))
                .execute(c)
                .await?;
            record(
                c,
                current.organization_id.get(),
                "connection",
                Some(id.get()),
                &audit,
            )
            .await?;
            load(c, scope, id.get()).await
        })
        .await
    }
}

#[async_trait]
impl ConnectionRepo for Db {
    async fn list(
        &self,
        scope: TenantScope,
        f: ConnectionFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Connection>, DomainError> {
        Ok(self.connection_list(scope, f, page).await?)
    }
    async fn get(
        &self,
        scope: TenantScope,
        id: ConnectionId,
    ) -> std::result::Result<Option<Connection>, DomainError> {
        let mut conn = self.conn().await?;
        Ok(load(&mut conn, scope, id.get()).await?)
    }
    async fn create(
        &self,
        scope: TenantScope,
        new: NewConnection,
        audit: AuditDraft,
    ) -> std::result::Result<Connection, DomainError> {
        Ok(self.connection_create(scope, new, audit).await?)
    }
    async fn update(
        &self,
        scope: TenantScope,
        id: ConnectionId,
        f: ConnectionFields,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Connection>, DomainError> {
        Ok(self.connection_update(scope, id, f, audit).await?)
    }
    async fn replace_requested_meters(
        &self,
        scope: TenantScope,
        id: ConnectionId,
        meters: Vec<RequestedMeterInput>,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Connection>, DomainError> {
        Ok(self
            .connection_replace_meters(scope, id, meters, audit)
            .await?)
    }
}
