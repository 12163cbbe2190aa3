//! The audit trail: written inside each change's transaction, read with filters.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::{
    AccountId, ApiKeyId, AuditEventId, DomainError, OrganizationId, PageRequest, TenantScope,
};
use orgs::{AuditDraft, AuditEvent, AuditFilter, AuditRepo};

use crate::schema::audit_events;
use crate::{Db, Result};

pub(crate) async fn record(
    conn: &mut AsyncPgConnection,
    organization_id: i64,
    resource_type: &'static str,
    resource_id: Option<i64>,
    draft: &AuditDraft,
) -> Result<()> {
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::organization_id.eq(organization_id),
            audit_events::actor_account_id.eq(draft.actor_account_id.map(|a| a.get())),
            audit_events::actor_api_key_id.eq(draft.actor_api_key_id.map(|k| k.get())),
            audit_events::action.eq(draft.action),
            audit_events::resource_type.eq(resource_type),
            audit_events::resource_id.eq(resource_id),
            audit_events::details.eq(&draft.details),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = audit_events)]
struct AuditRow {
    id: i64,
    organization_id: i64,
    actor_account_id: Option<i64>,
    actor_api_key_id: Option<i64>,
    action: String,
    resource_type: String,
    resource_id: Option<i64>,
    details: serde_json::Value,
    created_at: DateTime<Utc>,
}

impl From<AuditRow> for AuditEvent {
    fn from(r: AuditRow) -> Self {
        AuditEvent {
            id: AuditEventId(r.id),
            organization_id: OrganizationId(r.organization_id),
            actor_account_id: r.actor_account_id.map(AccountId),
            actor_api_key_id: r.actor_api_key_id.map(ApiKeyId),
            action: r.action,
            resource_type: r.resource_type,
            resource_id: r.resource_id,
            details: r.details,
            created_at: r.created_at,
        }
    }
}

impl Db {
    async fn audit_list(
        &self,
        scope: TenantScope,
        f: AuditFilter,
        page: PageRequest,
    ) -> Result<Vec<AuditEvent>> {
        let mut conn = self.conn().await?;
        let mut q = audit_events::table
            .select(AuditRow::as_select())
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(audit_events::organization_id.eq(org.get()));
        }
        if let Some(t) = f.resource_type {
            q = q.filter(audit_events::resource_type.eq(t));
        }
        if let Some(id) = f.resource_id {
            q = q.filter(audit_events::resource_id.eq(id));
        }
        if let Some(a) = f.actor_account_id {
            q = q.filter(audit_events::actor_account_id.eq(a.get()));
        }
        if let Some(a) = f.action {
            q = q.filter(audit_events::action.eq(a));
        }
        if let Some(after) = page.after_id {
            q = q.filter(audit_events::id.gt(after));
        }
        let rows = q
            .order(audit_events::id.asc())
            .limit(page.fetch_limit())
            .load::<AuditRow>(&mut conn)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

#[async_trait]
impl AuditRepo for Db {
    async fn list(
        &self,
        scope: TenantScope,
        f: AuditFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<AuditEvent>, DomainError> {
        Ok(self.audit_list(scope, f, page).await?)
    }
}
