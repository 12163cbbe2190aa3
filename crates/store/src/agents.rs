use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::{AccountId, AgentId, DomainError, GridId, OrganizationId, PageRequest, TenantScope};
use orgs::{Agent, AgentChanges, AgentRepo, AuditDraft, NewAgent, PeopleFilter};

use crate::accounts::{self, PersonRow, grid_org};
use crate::audit::record;
use crate::schema::{accounts as a, agents as g};
use crate::{Db, Result, StoreError, like_pattern};

#[derive(Queryable, Selectable)]
#[diesel(table_name = g)]
struct AgentRow {
    id: i64,
    account_id: i64,
    organization_id: i64,
    grid_id: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn to_agent((r, p): (AgentRow, PersonRow)) -> Agent {
    Agent {
        id: AgentId(r.id),
        account_id: AccountId(r.account_id),
        organization_id: OrganizationId(r.organization_id),
        grid_id: GridId(r.grid_id),
        auth_user_id: p.auth_user_id,
        full_name: p.full_name,
        email: p.email,
        phone: p.phone,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

async fn load(c: &mut AsyncPgConnection, scope: TenantScope, id: i64) -> Result<Option<Agent>> {
    let mut q = g::table
        .inner_join(a::table)
        .filter(g::id.eq(id))
        .filter(g::deleted_at.is_null())
        .select((AgentRow::as_select(), PersonRow::as_select()))
        .into_boxed();
    if let Some(org) = scope.organization() {
        q = q.filter(g::organization_id.eq(org.get()));
    }
    Ok(q.first::<(AgentRow, PersonRow)>(c)
        .await
        .optional()?
        .map(to_agent))
}

impl Db {
    async fn agent_list(
        &self,
        scope: TenantScope,
        f: PeopleFilter,
        page: PageRequest,
    ) -> Result<Vec<Agent>> {
        let mut conn = self.conn().await?;
        let mut q = g::table
            .inner_join(a::table)
            .filter(g::deleted_at.is_null())
            .select((AgentRow::as_select(), PersonRow::as_select()))
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(g::organization_id.eq(org.get()));
        }
        if let Some(grid) = f.grid_id {
            q = q.filter(g::grid_id.eq(grid.get()));
        }
        if let Some(s) = f.search.filter(|s| !s.trim().is_empty()) {
            let pat = like_pattern(&s);
            q = q.filter(
                a::full_name
                    .ilike(pat.clone())
                    .or(a::phone.ilike(pat.clone()))
                    .or(a::email.ilike(pat)),
            );
        }
        if let Some(after) = page.after_id {
            q = q.filter(g::id.gt(after));
        }
        let rows = q
            .order(g::id.asc())
            .limit(page.fetch_limit())
            .load::<(AgentRow, PersonRow)>(&mut conn)
            .await?;
        Ok(rows.into_iter().map(to_agent).collect())
    }

    async fn agent_create(
        &self,
        scope: TenantScope,
        new: NewAgent,
        audit: AuditDraft,
    ) -> Result<Agent> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let org = grid_org(c, scope, new.grid_id.get()).await?;
            let account_id = accounts::insert(
                c,
                org,
                new.auth_user_id,
                &new.full_name,
                new.email.as_deref(),
                Some(&new.phone),
            )
            .await?;
            let id: i64 = diesel::insert_into(g::table)
                .values((
                    g::account_id.eq(account_id),
                    g::organization_id.eq(org),
                    g::grid_id.eq(new.grid_id.get()),
                ))
                .returning(g::id)
                .get_result(c)
                .await?;
            crate::wallets::open_wallet(
                c,
                &payments::WalletOwner::Agent(kernel::AgentId(id)),
                org,
                new.grid_id.get(),
            )
            .await?;
            record(c, org, "agent", Some(id), &audit).await?;
            load(c, TenantScope::All, id)
                .await?
                .ok_or(StoreError::Domain(DomainError::NotFound("agent")))
        })
        .await
    }

    async fn agent_update(
        &self,
        scope: TenantScope,
        id: AgentId,
        ch: AgentChanges,
        audit: AuditDraft,
    ) -> Result<Option<Agent>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            // Moving to another grid moves the agent to that grid's organization too.
            let new_org = match ch.grid_id {
                Some(grid) => Some(grid_org(c, scope, grid.get()).await?),
                None => None,
            };
            accounts::update(c, current.account_id.get(), ch.person, new_org).await?;
            if let (Some(grid), Some(org)) = (ch.grid_id, new_org) {
                diesel::update(g::table.find(id.get()))
                    .set((
                        g::grid_id.eq(grid.get()),
                        g::organization_id.eq(org),
                        g::updated_at.eq(Utc::now()),
                    ))
                    .execute(c)
                    .await?;
            } else {
                diesel::update(g::table.find(id.get()))
                    .set(g::updated_at.eq(Utc::now()))
                    .execute(c)
                    .await?;
            }
            let org = new_org.unwrap_or(current.organization_id.get());
            record(c, org, "agent", Some(id.get()), &audit).await?;
            load(c, TenantScope::All, id.get()).await
        })
        .await
    }

    async fn agent_delete(
        &self,
        scope: TenantScope,
        id: AgentId,
        audit: AuditDraft,
    ) -> Result<Option<Agent>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            diesel::update(g::table.find(id.get()))
                .set(g::deleted_at.eq(Utc::now()))
                .execute(c)
                .await?;
            accounts::soft_delete(c, current.account_id.get()).await?;
            record(
                c,
                current.organization_id.get(),
                "agent",
                Some(id.get()),
                &audit,
            )
            .await?;
            Ok::<_, StoreError>(Some(current))
        })
        .await
    }
}

#[async_trait]
impl AgentRepo for Db {
    async fn list(
        &self,
        scope: TenantScope,
        f: PeopleFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Agent>, DomainError> {
        Ok(self.agent_list(scope, f, page).await?)
    }
    async fn get(
        &self,
        scope: TenantScope,
        id: AgentId,
    ) -> std::result::Result<Option<Agent>, DomainError> {
        let mut conn = self.conn().await?;
        Ok(load(&mut conn, scope, id.get()).await?)
    }
    async fn create(
        &self,
        scope: TenantScope,
        new: NewAgent,
        audit: AuditDraft,
    ) -> std::result::Result<Agent, DomainError> {
        Ok(self.agent_create(scope, new, audit).await?)
    }
    async fn update(
        &self,
        scope: TenantScope,
        id: AgentId,
        ch: AgentChanges,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Agent>, DomainError> {
        Ok(self.agent_update(scope, id, ch, audit).await?)
    }
    async fn delete(
        &self,
        scope: TenantScope,
        id: AgentId,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Agent>, DomainError> {
        Ok(self.agent_delete(scope, id, audit).await?)
    }
}
