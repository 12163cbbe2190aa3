//! MPPTs and poles: per-grid equipment whose organization is its grid's.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use grids::site::{Mppt, MpptFields, MpptRepo, Pole, PoleFields, PoleRepo, SiteFilter};
use grids::vocab::{MpptSystem, MpptType};
use kernel::{DomainError, GridId, MpptId, OrganizationId, PageRequest, PoleId, TenantScope};
use orgs::AuditDraft;

use crate::accounts::grid_org;
use crate::audit::record;
use crate::schema::{meters, mppts as m, poles as p};
use crate::{Db, Result, StoreError, clearable, like_pattern};

#[derive(Queryable, Selectable)]
#[diesel(table_name = m)]
struct MpptRow {
    id: i64,
    organization_id: i64,
    grid_id: i64,
    external_system: String,
    external_reference: String,
    external_id: String,
    mppt_type: String,
    capacity_w: i64,
    azimuth_deg: Option<f64>,
    tilt_deg: Option<f64>,
    installed_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<MpptRow> for Mppt {
    fn from(r: MpptRow) -> Self {
        Mppt {
            id: MpptId(r.id),
            organization_id: OrganizationId(r.organization_id),
            grid_id: GridId(r.grid_id),
            external_system: MpptSystem::parse(&r.external_system).unwrap_or(MpptSystem::Other),
            external_reference: r.external_reference,
            external_id: r.external_id,
            mppt_type: MpptType::parse(&r.mppt_type).unwrap_or(MpptType::Mppt),
            capacity_w: r.capacity_w,
            azimuth_deg: r.azimuth_deg,
            tilt_deg: r.tilt_deg,
            installed_at: r.installed_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = m)]
struct MpptChanges {
    external_system: Option<&'static str>,
    external_reference: Option<String>,
    external_id: Option<String>,
    mppt_type: Option<&'static str>,
    capacity_w: Option<i64>,
    azimuth_deg: Option<Option<f64>>,
    tilt_deg: Option<Option<f64>>,
    installed_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl From<MpptFields> for MpptChanges {
    fn from(f: MpptFields) -> Self {
        MpptChanges {
            external_system: f.external_system.map(MpptSystem::as_str),
            external_reference: f.external_reference.map(|s| s.trim().to_owned()),
            external_id: f.external_id.map(|s| s.trim().to_owned()),
            mppt_type: f.mppt_type.map(MpptType::as_str),
            capacity_w: f.capacity_w,
            azimuth_deg: f.azimuth_deg,
            tilt_deg: f.tilt_deg,
            installed_at: f.installed_at,
            updated_at: Utc::now(),
        }
    }
}

async fn load_mppt(c: &mut AsyncPgConnection, scope: TenantScope, id: i64) -> Result<Option<Mppt>> {
    let mut q = m::table
        .filter(m::id.eq(id))
        .filter(m::deleted_at.is_null())
        .select(MpptRow::as_select())
        .into_boxed();
    if let Some(org) = scope.organization() {
        q = q.filter(m::organization_id.eq(org.get()));
    }
    Ok(q.first::<MpptRow>(c).await.optional()?.map(Into::into))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = p)]
struct PoleRow {
    id: i64,
    organization_id: i64,
    grid_id: i64,
    external_reference: String,
    nickname: Option<String>,
    is_virtual: bool,
    latitude: f64,
    longitude: f64,
    location_accuracy_m: Option<f64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<PoleRow> for Pole {
    fn from(r: PoleRow) -> Self {
        Pole {
            id: PoleId(r.id),
            organization_id: OrganizationId(r.organization_id),
            grid_id: GridId(r.grid_id),
            external_reference: r.external_reference,
            nickname: r.nickname,
            is_virtual: r.is_virtual,
            latitude: r.latitude,
            longitude: r.longitude,
            location_accuracy_m: r.location_accuracy_m,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = p)]
struct PoleChanges {
    external_reference: Option<String>,
    nickname: Option<Option<String>>,
    is_virtual: Option<bool>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    location_accuracy_m: Option<Option<f64>>,
    updated_at: DateTime<Utc>,
}

impl From<PoleFields> for PoleChanges {
    fn from(f: PoleFields) -> Self {
        PoleChanges {
            external_reference: f.external_reference.map(|s| s.trim().to_owned()),
            nickname: clearable(f.nickname),
            is_virtual: f.is_virtual,
            latitude: f.latitude,
            longitude: f.longitude,
            location_accuracy_m: f.location_accuracy_m,
            updated_at: Utc::now(),
        }
    }
}

pub(crate) async fn load_pole(
    c: &mut AsyncPgConnection,
    scope: TenantScope,
    id: i64,
) -> Result<Option<Pole>> {
    let mut q = p::table
        .filter(p::id.eq(id))
        .filter(p::deleted_at.is_null())
        .select(PoleRow::as_select())
        .into_boxed();
    if let Some(org) = scope.organization() {
        q = q.filter(p::organization_id.eq(org.get()));
    }
    Ok(q.first::<PoleRow>(c).await.optional()?.map(Into::into))
}

fn missing(what: &'static str) -> StoreError {
    StoreError::Domain(DomainError::NotFound(what))
}

impl Db {
    async fn mppt_list(
        &self,
        scope: TenantScope,
        f: SiteFilter,
        page: PageRequest,
    ) -> Result<Vec<Mppt>> {
        let mut conn = self.conn().await?;
        let mut q = m::table
            .filter(m::deleted_at.is_null())
            .select(MpptRow::as_select())
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(m::organization_id.eq(org.get()));
        }
        if let Some(g) = f.grid_id {
            q = q.filter(m::grid_id.eq(g.get()));
        }
        if let Some(s) = f.search.filter(|s| !s.trim().is_empty()) {
            let pat = like_pattern(&s);
            q = q.filter(
                m::external_reference
                    .ilike(pat.clone())
                    .or(m::external_id.ilike(pat)),
            );
        }
        if let Some(after) = page.after_id {
            q = q.filter(m::id.gt(after));
        }
        let rows = q
            .order(m::id.asc())
            .limit(page.fetch_limit())
            .load::<MpptRow>(&mut conn)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn mppt_create(
        &self,
        scope: TenantScope,
        grid: GridId,
        f: MpptFields,
        audit: AuditDraft,
    ) -> Result<Mppt> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let org = grid_org(c, scope, grid.get()).await?;
            let ch = MpptChanges::from(f);
            let id: i64 = diesel::insert_into(m::table)
                .values((
                    m::organization_id.eq(org),
                    m::grid_id.eq(grid.get()),
                    m::external_reference.eq(ch.external_reference.clone().unwrap_or_default()),
                    m::external_id.eq(ch.external_id.clone().unwrap_or_default()),
                    m::installed_at.eq(ch.installed_at.unwrap_or_else(Utc::now)),
                ))
                .returning(m::id)
                .get_result(c)
                .await?;
            diesel::update(m::table.find(id)).set(ch).execute(c).await?;
            record(c, org, "mppt", Some(id), &audit).await?;
            load_mppt(c, TenantScope::All, id)
                .await?
                .ok_or(missing("mppt"))
        })
        .await
    }

    async fn mppt_update(
        &self,
        scope: TenantScope,
        id: MpptId,
        f: MpptFields,
        audit: AuditDraft,
    ) -> Result<Option<Mppt>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load_mppt(c, scope, id.get()).await? else {
                return Ok(None);
            };
            diesel::update(m::table.find(id.get()))
                .set(MpptChanges::from(f))
                .execute(c)
                .await?;
            record(
                c,
                current.organization_id.get(),
                "mppt",
                Some(id.get()),
                &audit,
            )
            .await?;
            load_mppt(c, scope, id.get()).await
        })
        .await
    }

    async fn mppt_delete(&self, scope: TenantScope, id: MpptId, audit: AuditDraft) -> Result<bool> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load_mppt(c, scope, id.get()).await? else {
                return Ok(false);
            };
            diesel::update(m::table.find(id.get()))
                .set(m::deleted_at.eq(Utc::now()))
                .execute(c)
                .await?;
            record(
                c,
                current.organization_id.get(),
                "mppt",
                Some(id.get()),
                &audit,
            )
            .await?;
            Ok(true)
        })
        .await
    }

    async fn pole_list(
        &self,
        scope: TenantScope,
        f: SiteFilter,
        page: PageRequest,
    ) -> Result<Vec<Pole>> {
        let mut conn = self.conn().await?;
        let mut q = p::table
            .filter(p::deleted_at.is_null())
            .select(PoleRow::as_select())
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(p::organization_id.eq(org.get()));
        }
        if let Some(g) = f.grid_id {
            q = q.filter(p::grid_id.eq(g.get()));
        }
        if let Some(s) = f.search.filter(|s| !s.trim().is_empty()) {
            let pat = like_pattern(&s);
            q = q.filter(
                p::external_reference
                    .ilike(pat.clone())
                    .or(p::nickname.ilike(pat)),
            );
        }
        if let Some(after) = page.after_id {
            q = q.filter(p::id.gt(after));
        }
        let rows = q
            .order(p::id.asc())
            .limit(page.fetch_limit())
            .load::<PoleRow>(&mut conn)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn pole_create(
        &self,
        scope: TenantScope,
        grid: GridId,
        f: PoleFields,
        audit: AuditDraft,
    ) -> Result<Pole> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let org = grid_org(c, scope, grid.get()).await?;
            let ch = PoleChanges::from(f);
            let id: i64 = diesel::insert_into(p::table)
                .values((
                    p::organization_id.eq(org),
                    p::grid_id.eq(grid.get()),
                    p::external_reference.eq(ch.external_reference.clone().unwrap_or_default()),
                    p::latitude.eq(ch.latitude.unwrap_or_default()),
                    p::longitude.eq(ch.longitude.unwrap_or_default()),
                ))
                .returning(p::id)
                .get_result(c)
                .await?;
            diesel::update(p::table.find(id)).set(ch).execute(c).await?;
            record(c, org, "pole", Some(id), &audit).await?;
            load_pole(c, TenantScope::All, id)
                .await?
                .ok_or(missing("pole"))
        })
        .await
    }

    async fn pole_update(
        &self,
        scope: TenantScope,
        id: PoleId,
        f: PoleFields,
        audit: AuditDraft,
    ) -> Result<Option<Pole>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load_pole(c, scope, id.get()).await? else {
                return Ok(None);
            };
            diesel::update(p::table.find(id.get()))
                .set(PoleChanges::from(f))
                .execute(c)
                .await?;
            record(
                c,
                current.organization_id.get(),
                "pole",
                Some(id.get()),
                &audit,
            )
            .await?;
            load_pole(c, scope, id.get()).await
        })
        .await
    }

    async fn pole_delete(&self, scope: TenantScope, id: PoleId, audit: AuditDraft) -> Result<bool> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load_pole(c, scope, id.get()).await? else {
                return Ok(false);
            };
            let in_use: i64 = meters::table
                .filter(meters::pole_id.eq(id.get()))
                .filter(meters::deleted_at.is_null())
                .count()
                .get_result(c)
                .await?;
            if in_use > 0 {
                return Err(StoreError::Domain(DomainError::Conflict(format!(
                    "{in_use} meters hang on this pole"
                ))));
            }
            diesel::update(p::table.find(id.get()))
                .set(p::deleted_at.eq(Utc::now()))
                .execute(c)
                .await?;
            record(
                c,
                current.organization_id.get(),
                "pole",
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
impl MpptRepo for Db {
    async fn list(
        &self,
        scope: TenantScope,
        f: SiteFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Mppt>, DomainError> {
        Ok(self.mppt_list(scope, f, page).await?)
    }
    async fn get(
        &self,
        scope: TenantScope,
        id: MpptId,
    ) -> std::result::Result<Option<Mppt>, DomainError> {
        let mut conn = self.conn().await?;
        Ok(load_mppt(&mut conn, scope, id.get()).await?)
    }
    async fn create(
        &self,
        scope: TenantScope,
        grid: GridId,
        f: MpptFields,
        audit: AuditDraft,
    ) -> std::result::Result<Mppt, DomainError> {
        Ok(self.mppt_create(scope, grid, f, audit).await?)
    }
    async fn update(
        &self,
        scope: TenantScope,
        id: MpptId,
        f: MpptFields,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Mppt>, DomainError> {
        Ok(self.mppt_update(scope, id, f, audit).await?)
    }
    async fn delete(
        &self,
        scope: TenantScope,
        id: MpptId,
        audit: AuditDraft,
    ) -> std::result::Result<bool, DomainError> {
        Ok(self.mppt_delete(scope, id, audit).await?)
    }
}

#[async_trait]
impl PoleRepo for Db {
    async fn list(
        &self,
        scope: TenantScope,
        f: SiteFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Pole>, DomainError> {
        Ok(self.pole_list(scope, f, page).await?)
    }
    async fn get(
        &self,
        scope: TenantScope,
        id: PoleId,
    ) -> std::result::Result<Option<Pole>, DomainError> {
        let mut conn = self.conn().await?;
        Ok(load_pole(&mut conn, scope, id.get()).await?)
    }
    async fn create(
        &self,
        scope: TenantScope,
        grid: GridId,
        f: PoleFields,
        audit: AuditDraft,
    ) -> std::result::Result<Pole, DomainError> {
        Ok(self.pole_create(scope, grid, f, audit).await?)
    }
    async fn update(
        &self,
        scope: TenantScope,
        id: PoleId,
        f: PoleFields,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Pole>, DomainError> {
        Ok(self.pole_update(scope, id, f, audit).await?)
    }
    async fn delete(
        &self,
        scope: TenantScope,
        id: PoleId,
        audit: AuditDraft,
    ) -> std::result::Result<bool, DomainError> {
        Ok(self.pole_delete(scope, id, audit).await?)
    }
}
