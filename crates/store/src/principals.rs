//! Resolving credentials to principals: one query per request on the hot path.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use kernel::{
    AccountId, AccountKind, AgentId, ApiKeyId, CustomerId, DomainError, GridId, MemberId,
    OrganizationId, Principal, PrincipalSource, Role,
};
use orgs::{PrincipalDirectory, StoredKey};
use uuid::Uuid;

use crate::schema::api_keys;
use crate::{Db, StoreError};

#[derive(Queryable)]
struct AccountPrincipalRow {
    account_id: i64,
    organization_id: i64,
    is_platform: bool,
    member_id: Option<i64>,
    member_role: Option<String>,
    agent_id: Option<i64>,
    agent_grid_id: Option<i64>,
    customer_id: Option<i64>,
    customer_grid_id: Option<i64>,
}

fn to_principal(r: AccountPrincipalRow) -> Option<Principal> {
    let (kind, role, grid_id) = if let Some(role) = r.member_role.as_deref().and_then(Role::parse) {
        (AccountKind::Member, role, None)
    } else if r.agent_id.is_some() {
        (AccountKind::Agent, Role::Agent, r.agent_grid_id.map(GridId))
    } else if r.customer_id.is_some() {
        (
            AccountKind::Customer,
            Role::Customer,
            r.customer_grid_id.map(GridId),
        )
    } else {
        // An account whose role row is gone has no rights at all.
        return None;
    };
    Some(Principal {
        account_id: Some(AccountId(r.account_id)),
        kind,
        organization_id: OrganizationId(r.organization_id),
        role,
        in_platform_org: r.is_platform,
        grid_id,
        source: PrincipalSource::Token {
            member: r.member_id.map(MemberId),
            agent: r.agent_id.map(AgentId),
            customer: r.customer_id.map(CustomerId),
        },
    })
}

#[async_trait]
impl PrincipalDirectory for Db {
    async fn by_auth_user(&self, auth_user_id: Uuid) -> Result<Option<Principal>, DomainError> {
        use crate::schema::{
            accounts as a, agents as ag, customers as c, members as m, organizations as o,
        };
        let mut conn = self.conn().await?;
        let row = a::table
            .inner_join(o::table.on(o::id.eq(a::organization_id).and(o::deleted_at.is_null())))
            .left_join(m::table.on(m::account_id.eq(a::id).and(m::deleted_at.is_null())))
            .left_join(ag::table.on(ag::account_id.eq(a::id).and(ag::deleted_at.is_null())))
            .left_join(c::table.on(c::account_id.eq(a::id).and(c::deleted_at.is_null())))
            .filter(a::auth_user_id.eq(auth_user_id))
            .filter(a::deleted_at.is_null())
            .select((
                a::id,
                a::organization_id,
                o::is_platform,
                m::id.nullable(),
                m::role.nullable(),
                ag::id.nullable(),
                ag::grid_id.nullable(),
                c::id.nullable(),
                c::grid_id.nullable(),
            ))
            .first::<AccountPrincipalRow>(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(row.and_then(to_principal))
    }

    async fn key_by_prefix(&self, prefix: &str) -> Result<Option<StoredKey>, DomainError> {
        use crate::schema::organizations as o;
        let mut conn = self.conn().await?;
        // Built with the DSL (not raw SQL) so the prepared statement is cached per connection:
        // this runs on every API-key request.
        let row = api_keys::table
            .inner_join(o::table)
            .filter(api_keys::prefix.eq(prefix))
            .select((
                api_keys::id,
                api_keys::organization_id,
                o::is_platform,
                api_keys::role,
                api_keys::secret_hash,
                api_keys::created_by_account_id,
                api_keys::expires_at,
                // A key of a deleted organization is as good as revoked.
                api_keys::revoked_at
                    .is_not_null()
                    .or(o::deleted_at.is_not_null()),
            ))
            .first::<(
                i64,
                i64,
                bool,
                String,
                Vec<u8>,
                Option<i64>,
                Option<DateTime<Utc>>,
                bool,
            )>(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(row.and_then(
            |(id, org, is_platform, role, secret_hash, creator, expires_at, revoked)| {
                Some(StoredKey {
                    id: ApiKeyId(id),
                    organization_id: OrganizationId(org),
                    organization_is_platform: is_platform,
                    role: Role::parse(&role)?,
                    secret_hash,
                    created_by_account_id: creator.map(AccountId),
                    expires_at,
                    revoked,
                })
            },
        ))
    }

    async fn mark_key_used(&self, id: ApiKeyId) -> Result<(), DomainError> {
        let mut conn = self.conn().await?;
        diesel::update(api_keys::table.find(id.get()))
            .set(api_keys::last_used_at.eq(Utc::now()))
            .execute(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }
}
