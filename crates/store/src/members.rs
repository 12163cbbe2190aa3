use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::{
    AccountId, DomainError, GridId, MemberId, OrganizationId, PageRequest, Role, TenantScope,
};
use orgs::{AuditDraft, Member, MemberChanges, MemberFilter, MemberRepo, NewMember};

use crate::accounts::{self, PersonRow};
use crate::audit::record;
use crate::schema::{accounts as a, members as m, organizations};
use crate::{Db, Result, StoreError, like_pattern};

#[derive(Queryable, Selectable)]
#[diesel(table_name = m)]
struct MemberRow {
    id: i64,
    account_id: i64,
    organization_id: i64,
    role: String,
    training_level: i16,
    hidden: bool,
    subscribed_to_revenue_notifications: bool,
    commissioning_grid_id: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn to_member((r, p): (MemberRow, PersonRow)) -> Member {
    Member {
        id: MemberId(r.id),
        account_id: AccountId(r.account_id),
        organization_id: OrganizationId(r.organization_id),
        auth_user_id: p.auth_user_id,
        full_name: p.full_name,
        email: p.email,
        phone: p.phone,
        role: Role::parse(&r.role).unwrap_or(Role::Developer),
        training_level: r.training_level,
        hidden: r.hidden,
        subscribed_to_revenue_notifications: r.subscribed_to_revenue_notifications,
        commissioning_grid_id: r.commissioning_grid_id.map(GridId),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = m)]
struct MemberRowChanges {
    role: Option<&'static str>,
    training_level: Option<i16>,
    hidden: Option<bool>,
    subscribed_to_revenue_notifications: Option<bool>,
    commissioning_grid_id: Option<Option<i64>>,
    updated_at: DateTime<Utc>,
}

async fn load(c: &mut AsyncPgConnection, scope: TenantScope, id: i64) -> Result<Option<Member>> {
    let mut q = m::table
        .inner_join(a::table)
        .filter(m::id.eq(id))
        .filter(m::deleted_at.is_null())
        .select((MemberRow::as_select(), PersonRow::as_select()))
        .into_boxed();
    if let Some(org) = scope.organization() {
        q = q.filter(m::organization_id.eq(org.get()));
    }
    Ok(q.first::<(MemberRow, PersonRow)>(c)
        .await
        .optional()?
        .map(to_member))
}

impl Db {
    async fn member_list(
        &self,
        scope: TenantScope,
        f: MemberFilter,
        page: PageRequest,
    ) -> Result<Vec<Member>> {
        let mut conn = self.conn().await?;
        let mut q = m::table
            .inner_join(a::table)
            .filter(m::deleted_at.is_null())
            .select((MemberRow::as_select(), PersonRow::as_select()))
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(m::organization_id.eq(org.get()));
        }
        if let Some(role) = f.role {
            q = q.filter(m::role.eq(role.as_str()));
        }
        if let Some(s) = f.search.filter(|s| !s.trim().is_empty()) {
            let pat = like_pattern(&s);
            q = q.filter(a::full_name.ilike(pat.clone()).or(a::email.ilike(pat)));
        }
        if let Some(after) = page.after_id {
            q = q.filter(m::id.gt(after));
        }
        let rows = q
            .order(m::id.asc())
            .limit(page.fetch_limit())
            .load::<(MemberRow, PersonRow)>(&mut conn)
            .await?;
        Ok(rows.into_iter().map(to_member).collect())
    }

    async fn member_create(&self, new: NewMember, audit: AuditDraft) -> Result<Member> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let org_live: Option<i64> = organizations::table
                .filter(organizations::id.eq(new.organization_id.get()))
                .filter(organizations::deleted_at.is_null())
                .select(organizations::id)
                .first(c)
                .await
                .optional()?;
            let org = org_live.ok_or(StoreError::Domain(DomainError::NotFound("organization")))?;
            let account_id = accounts::insert(
                c,
                org,
                new.auth_user_id,
                &new.full_name,
                Some(&new.email),
                None,
            )
            .await?;
            let id: i64 = diesel::insert_into(m::table)
                .values((
                    m::account_id.eq(account_id),
                    m::organization_id.eq(org),
                    m::role.eq(new.role.as_str()),
                ))
                .returning(m::id)
                .get_result(c)
                .await?;
            record(c, org, "member", Some(id), &audit).await?;
            load(c, TenantScope::All, id)
                .await?
                .ok_or(StoreError::Domain(DomainError::NotFound("member")))
        })
        .await
    }

    async fn member_update(
        &self,
        scope: TenantScope,
        id: MemberId,
        ch: MemberChanges,
        audit: AuditDraft,
    ) -> Result<Option<Member>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            accounts::update(c, current.account_id.get(), ch.person, None).await?;
            diesel::update(m::table.find(id.get()))
                .set(MemberRowChanges {
                    role: ch.role.map(Role::as_str),
                    training_level: ch.training_level,
                    hidden: ch.hidden,
                    subscribed_to_revenue_notifications: ch.subscribed_to_revenue_notifications,
                    commissioning_grid_id: ch.commissioning_grid_id.map(|g| g.map(|g| g.get())),
                    updated_at: Utc::now(),
                })
                .execute(c)
                .await?;
            record(
                c,
                current.organization_id.get(),
                "member",
                Some(id.get()),
                &audit,
            )
            .await?;
            load(c, scope, id.get()).await
        })
        .await
    }

    async fn member_delete(
        &self,
        scope: TenantScope,
        id: MemberId,
        audit: AuditDraft,
    ) -> Result<Option<Member>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            diesel::update(m::table.find(id.get()))
                .set(m::deleted_at.eq(Utc::now()))
                .execute(c)
                .await?;
            accounts::soft_delete(c, current.account_id.get()).await?;
            record(
                c,
                current.organization_id.get(),
                "member",
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
impl MemberRepo for Db {
    async fn list(
        &self,
        scope: TenantScope,
        f: MemberFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Member>, DomainError> {
        Ok(self.member_list(scope, f, page).await?)
    }
    async fn get(
        &self,
        scope: TenantScope,
        id: MemberId,
    ) -> std::result::Result<Option<Member>, DomainError> {
        let mut conn = self.conn().await?;
        Ok(load(&mut conn, scope, id.get()).await?)
    }
    async fn create(
        &self,
        new: NewMember,
        audit: AuditDraft,
    ) -> std::result::Result<Member, DomainError> {
        Ok(self.member_create(new, audit).await?)
    }
    async fn update(
        &self,
        scope: TenantScope,
        id: MemberId,
        ch: MemberChanges,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Member>, DomainError> {
        Ok(self.member_update(scope, id, ch, audit).await?)
    }
    async fn delete(
        &self,
        scope: TenantScope,
        id: MemberId,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Member>, DomainError> {
        Ok(self.member_delete(scope, id, audit).await?)
    }
}
