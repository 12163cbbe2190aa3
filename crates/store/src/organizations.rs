use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use kernel::{DomainError, OrganizationId, PageRequest, TenantScope};
use orgs::{AuditDraft, Organization, OrganizationFields, OrganizationRepo, OrganizationType};

use crate::audit::record;
use crate::schema::organizations as o;
use crate::{Db, Result, StoreError, clearable};

#[derive(Queryable, Selectable)]
#[diesel(table_name = o)]
struct OrgRow {
    id: i64,
    name: String,
    formal_name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    organization_type: String,
    is_platform: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<OrgRow> for Organization {
    fn from(r: OrgRow) -> Self {
        Organization {
            id: OrganizationId(r.id),
            name: r.name,
            formal_name: r.formal_name,
            email: r.email,
            phone: r.phone,
            address: r.address,
            organization_type: OrganizationType::parse(&r.organization_type)
                .unwrap_or(OrganizationType::SolarDeveloper),
            is_platform: r.is_platform,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = o)]
struct OrgChanges {
    name: Option<String>,
    formal_name: Option<Option<String>>,
    email: Option<Option<String>>,
    phone: Option<Option<String>>,
    address: Option<Option<String>>,
    organization_type: Option<&'static str>,
    updated_at: DateTime<Utc>,
}

impl From<OrganizationFields> for OrgChanges {
    fn from(f: OrganizationFields) -> Self {
        OrgChanges {
            name: f.name.map(|n| n.trim().to_owned()),
            formal_name: clearable(f.formal_name),
            email: clearable(f.email).map(|e| e.map(|e| e.to_lowercase())),
            phone: clearable(f.phone),
            address: clearable(f.address),
            organization_type: f.organization_type.map(|t| t.as_str()),
            updated_at: Utc::now(),
        }
    }
}

impl Db {
    async fn org_create(
        &self,
        f: OrganizationFields,
        is_platform: bool,
        audit: AuditDraft,
    ) -> Result<Organization> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let ch = OrgChanges::from(f);
            let row: OrgRow = diesel::insert_into(o::table)
                .values((
                    o::name.eq(ch.name.unwrap_or_default()),
                    o::formal_name.eq(ch.formal_name.flatten()),
                    o::email.eq(ch.email.flatten()),
                    o::phone.eq(ch.phone.flatten()),
                    o::address.eq(ch.address.flatten()),
                    o::organization_type.eq(ch.organization_type.unwrap_or("SOLAR_DEVELOPER")),
                    o::is_platform.eq(is_platform),
                ))
                .returning(OrgRow::as_returning())
                .get_result(c)
                .await?;
            record(c, row.id, "organization", Some(row.id), &audit).await?;
            Ok::<_, StoreError>(row.into())
        })
        .await
    }

    async fn org_update(
        &self,
        scope: TenantScope,
        id: OrganizationId,
        f: OrganizationFields,
        audit: AuditDraft,
    ) -> Result<Option<Organization>> {
        if !scope.allows(id) {
            return Ok(None);
        }
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let row: Option<OrgRow> = diesel::update(
                o::table
                    .filter(o::id.eq(id.get()))
                    .filter(o::deleted_at.is_null()),
            )
            .set(OrgChanges::from(f))
            .returning(OrgRow::as_returning())
            .get_result(c)
            .await
            .optional()?;
            if let Some(r) = &row {
                record(c, r.id, "organization", Some(r.id), &audit).await?;
            }
            Ok::<_, StoreError>(row.map(Into::into))
        })
        .await
    }

    async fn org_delete(
        &self,
        scope: TenantScope,
        id: OrganizationId,
        audit: AuditDraft,
    ) -> Result<bool> {
        if !scope.allows(id) {
            return Ok(false);
        }
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let n = diesel::update(
                o::table
                    .filter(o::id.eq(id.get()))
                    .filter(o::deleted_at.is_null()),
            )
            .set(o::deleted_at.eq(Utc::now()))
            .execute(c)
            .await?;
            if n == 1 {
                record(c, id.get(), "organization", Some(id.get()), &audit).await?;
                crate::events::publish_key_revoked(c, "*").await?;
            }
            Ok::<_, StoreError>(n == 1)
        })
        .await
    }
}

#[async_trait]
impl OrganizationRepo for Db {
    async fn list(
        &self,
        scope: TenantScope,
        page: PageRequest,
    ) -> std::result::Result<Vec<Organization>, DomainError> {
        let mut conn = self.conn().await?;
        let mut q = o::table
            .filter(o::deleted_at.is_null())
            .select(OrgRow::as_select())
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(o::id.eq(org.get()));
        }
        if let Some(after) = page.after_id {
            q = q.filter(o::id.gt(after));
        }
        let rows = q
            .order(o::id.asc())
            .limit(page.fetch_limit())
            .load::<OrgRow>(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn get(
        &self,
        scope: TenantScope,
        id: OrganizationId,
    ) -> std::result::Result<Option<Organization>, DomainError> {
        if !scope.allows(id) {
            return Ok(None);
        }
        let mut conn = self.conn().await?;
        let row = o::table
            .filter(o::id.eq(id.get()))
            .filter(o::deleted_at.is_null())
            .select(OrgRow::as_select())
            .first::<OrgRow>(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(row.map(Into::into))
    }

    async fn platform(&self) -> std::result::Result<Option<Organization>, DomainError> {
        let mut conn = self.conn().await?;
        let row = o::table
            .filter(o::is_platform.eq(true))
            .filter(o::deleted_at.is_null())
            .select(OrgRow::as_select())
            .first::<OrgRow>(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(row.map(Into::into))
    }

    async fn create(
        &self,
        f: OrganizationFields,
        is_platform: bool,
        audit: AuditDraft,
    ) -> std::result::Result<Organization, DomainError> {
        Ok(self.org_create(f, is_platform, audit).await?)
    }

    async fn update(
        &self,
        scope: TenantScope,
        id: OrganizationId,
        f: OrganizationFields,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Organization>, DomainError> {
        Ok(self.org_update(scope, id, f, audit).await?)
    }

    async fn delete(
        &self,
        scope: TenantScope,
        id: OrganizationId,
        audit: AuditDraft,
    ) -> std::result::Result<bool, DomainError> {
        Ok(self.org_delete(scope, id, audit).await?)
    }
}
