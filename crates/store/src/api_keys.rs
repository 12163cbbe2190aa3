use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use kernel::{AccountId, ApiKeyId, DomainError, OrganizationId, PageRequest, Role, TenantScope};
use orgs::{ApiKey, ApiKeyRepo, AuditDraft, NewApiKey};

use crate::audit::record;
use crate::schema::api_keys as k;
use crate::{Db, Result, StoreError};

#[derive(Queryable, Selectable)]
#[diesel(table_name = k)]
struct KeyRow {
    id: i64,
    organization_id: i64,
    name: String,
    prefix: String,
    role: String,
    created_by_account_id: Option<i64>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

impl From<KeyRow> for ApiKey {
    fn from(r: KeyRow) -> Self {
        ApiKey {
            id: ApiKeyId(r.id),
            organization_id: OrganizationId(r.organization_id),
            name: r.name,
            prefix: r.prefix,
            role: Role::parse(&r.role).unwrap_or(Role::Developer),
            created_by_account_id: r.created_by_account_id.map(AccountId),
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        }
    }
}

impl Db {
    async fn key_create(&self, new: NewApiKey, audit: AuditDraft) -> Result<ApiKey> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let row: KeyRow = diesel::insert_into(k::table)
                .values((
                    k::organization_id.eq(new.organization_id.get()),
                    k::name.eq(&new.name),
                    k::prefix.eq(&new.prefix),
                    k::secret_hash.eq(new.secret_hash.as_slice()),
                    k::role.eq(new.role.as_str()),
                    k::created_by_account_id.eq(new.created_by_account_id.map(|a| a.get())),
                    k::expires_at.eq(new.expires_at),
                ))
                .returning(KeyRow::as_returning())
                .get_result(c)
                .await?;
            record(c, row.organization_id, "api_key", Some(row.id), &audit).await?;
            Ok::<_, StoreError>(row.into())
        })
        .await
    }

    async fn key_revoke(
        &self,
        scope: TenantScope,
        id: ApiKeyId,
        audit: AuditDraft,
    ) -> Result<Option<ApiKey>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let mut q = k::table
                .filter(k::id.eq(id.get()))
                .select(KeyRow::as_select())
                .into_boxed();
            if let Some(org) = scope.organization() {
                q = q.filter(k::organization_id.eq(org.get()));
            }
            let Some(row) = q.first::<KeyRow>(c).await.optional()? else {
                return Ok(None);
            };
            // Only the first of two concurrent revocations writes, and audits.
            let updated: Option<KeyRow> =
                diesel::update(k::table.find(row.id).filter(k::revoked_at.is_null()))
                    .set(k::revoked_at.eq(Utc::now()))
                    .returning(KeyRow::as_returning())
                    .get_result(c)
                    .await
                    .optional()?;
            let Some(row) = updated else {
                return Ok(Some(row.into()));
            };
            crate::events::publish_key_revoked(c, &row.prefix).await?;
            record(c, row.organization_id, "api_key", Some(row.id), &audit).await?;
            Ok::<_, StoreError>(Some(row.into()))
        })
        .await
    }
}

#[async_trait]
impl ApiKeyRepo for Db {
    async fn list(
        &self,
        scope: TenantScope,
        page: PageRequest,
    ) -> std::result::Result<Vec<ApiKey>, DomainError> {
        let mut conn = self.conn().await?;
        let mut q = k::table.select(KeyRow::as_select()).into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(k::organization_id.eq(org.get()));
        }
        if let Some(after) = page.after_id {
            q = q.filter(k::id.gt(after));
        }
        let rows = q
            .order(k::id.asc())
            .limit(page.fetch_limit())
            .load::<KeyRow>(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn get(
        &self,
        scope: TenantScope,
        id: ApiKeyId,
    ) -> std::result::Result<Option<ApiKey>, DomainError> {
        let mut conn = self.conn().await?;
        let mut q = k::table
            .filter(k::id.eq(id.get()))
            .select(KeyRow::as_select())
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(k::organization_id.eq(org.get()));
        }
        let row = q
            .first::<KeyRow>(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(row.map(Into::into))
    }

    async fn create(
        &self,
        new: NewApiKey,
        audit: AuditDraft,
    ) -> std::result::Result<ApiKey, DomainError> {
        Ok(self.key_create(new, audit).await?)
    }

    async fn revoke(
        &self,
        scope: TenantScope,
        id: ApiKeyId,
        audit: AuditDraft,
    ) -> std::result::Result<Option<ApiKey>, DomainError> {
        Ok(self.key_revoke(scope, id, audit).await?)
    }
}
