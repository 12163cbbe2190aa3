//! Resolving credentials to principals: one query per request on the hot path.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Bytea, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use kernel::{
    AccountId, AccountKind, AgentId, ApiKeyId, CustomerId, DomainError, GridId, MemberId,
    OrganizationId, Principal, PrincipalSource, Role,
};
use orgs::{PrincipalDirectory, StoredKey};
use uuid::Uuid;

use crate::schema::api_keys;
use crate::{Db, StoreError};

#[derive(QueryableByName)]
struct AccountPrincipalRow {
    #[diesel(sql_type = BigInt)]
    account_id: i64,
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
    #[diesel(sql_type = Bool)]
    is_platform: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    member_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    member_role: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    agent_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    agent_grid_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    customer_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    customer_grid_id: Option<i64>,
}

const ACCOUNT_PRINCIPAL: &str = "\
SELECT a.id AS account_id, a.organization_id, o.is_platform,
       m.id AS member_id, m.role AS member_role,
       ag.id AS agent_id, ag.grid_id AS agent_grid_id,
       c.id AS customer_id, c.grid_id AS customer_grid_id
  FROM accounts a
  JOIN organizations o ON o.id = a.organization_id AND o.deleted_at IS NULL
  LEFT JOIN members m ON m.account_id = a.id AND m.deleted_at IS NULL
  LEFT JOIN agents ag ON ag.account_id = a.id AND ag.deleted_at IS NULL
  LEFT JOIN customers c ON c.account_id = a.id AND c.deleted_at IS NULL
 WHERE a.auth_user_id = $1 AND a.deleted_at IS NULL";

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
    #[diesel(sql_type = Bool)]
    is_platform: bool,
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = Bytea)]
    secret_hash: Vec<u8>,
    #[diesel(sql_type = Nullable<BigInt>)]
    created_by_account_id: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Bool)]
    revoked: bool,
}

// A key of a deleted organization is as good as revoked.
const KEY_BY_PREFIX: &str = "\
SELECT k.id, k.organization_id, o.is_platform, k.role, k.secret_hash, k.created_by_account_id,
       k.expires_at, (k.revoked_at IS NOT NULL OR o.deleted_at IS NOT NULL) AS revoked
  FROM api_keys k
  JOIN organizations o ON o.id = k.organization_id
 WHERE k.prefix = $1";

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
        let mut conn = self.conn().await?;
        let row = diesel::sql_query(ACCOUNT_PRINCIPAL)
            .bind::<SqlUuid, _>(auth_user_id)
            .get_result::<AccountPrincipalRow>(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(row.and_then(to_principal))
    }

    async fn key_by_prefix(&self, prefix: &str) -> Result<Option<StoredKey>, DomainError> {
        let mut conn = self.conn().await?;
        let row = diesel::sql_query(KEY_BY_PREFIX)
            .bind::<Text, _>(prefix)
            .get_result::<KeyRow>(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(row.and_then(|r| {
            Some(StoredKey {
                id: ApiKeyId(r.id),
                organization_id: OrganizationId(r.organization_id),
                organization_is_platform: r.is_platform,
                role: Role::parse(&r.role)?,
                secret_hash: r.secret_hash,
                created_by_account_id: r.created_by_account_id.map(AccountId),
                expires_at: r.expires_at,
                revoked: r.revoked,
            })
        }))
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
