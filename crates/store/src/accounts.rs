//! The account half of members, agents and customers: identity and contact details.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::{DomainError, TenantScope};
use orgs::PersonFields;
use uuid::Uuid;

use crate::schema::{accounts, grids};
use crate::{Result, StoreError, clearable};

#[derive(Queryable, Selectable, Clone)]
#[diesel(table_name = accounts)]
pub(crate) struct PersonRow {
    pub auth_user_id: Option<Uuid>,
    pub full_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

pub(crate) async fn insert(
    c: &mut AsyncPgConnection,
    organization_id: i64,
    auth_user_id: Option<Uuid>,
    full_name: &str,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<i64> {
    Ok(diesel::insert_into(accounts::table)
        .values((
            accounts::organization_id.eq(organization_id),
            accounts::auth_user_id.eq(auth_user_id),
            accounts::full_name.eq(full_name),
            accounts::email.eq(email),
            accounts::phone.eq(phone),
        ))
        .returning(accounts::id)
        .get_result(c)
        .await?)
}

#[derive(AsChangeset)]
#[diesel(table_name = accounts)]
struct PersonChanges {
    full_name: Option<String>,
    email: Option<Option<String>>,
    phone: Option<Option<String>>,
    organization_id: Option<i64>,
    updated_at: chrono::DateTime<Utc>,
}

/// Applies contact changes and keeps the account's organization in step with its role row.
pub(crate) async fn update(
    c: &mut AsyncPgConnection,
    account_id: i64,
    p: PersonFields,
    organization_id: Option<i64>,
) -> Result<()> {
    let changes = PersonChanges {
        full_name: p.full_name.map(|n| n.trim().to_owned()),
        email: clearable(p.email).map(|e| e.map(|e| e.to_lowercase())),
        phone: clearable(p.phone),
        organization_id,
        updated_at: Utc::now(),
    };
    diesel::update(accounts::table.find(account_id))
        .set(changes)
        .execute(c)
        .await?;
    Ok(())
}

pub(crate) async fn soft_delete(c: &mut AsyncPgConnection, account_id: i64) -> Result<()> {
    diesel::update(accounts::table.find(account_id))
        .set(accounts::deleted_at.eq(Utc::now()))
        .execute(c)
        .await?;
    Ok(())
}

/// The organization owning a live grid the caller can see, or `NotFound("grid")`.
pub(crate) async fn grid_org(
    c: &mut AsyncPgConnection,
    scope: TenantScope,
    grid_id: i64,
) -> Result<i64> {
    let mut q = grids::table
        .filter(grids::id.eq(grid_id))
        .filter(grids::deleted_at.is_null())
        .select(grids::organization_id)
        .into_boxed();
    if let Some(org) = scope.organization() {
        q = q.filter(grids::organization_id.eq(org.get()));
    }
    q.first::<i64>(c)
        .await
        .optional()?
        .ok_or(StoreError::Domain(DomainError::NotFound("grid")))
}
