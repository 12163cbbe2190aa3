use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use kernel::{
    AccountId, CustomerId, DomainError, GridId, MinorUnits, OrganizationId, PageRequest,
    TenantScope,
};
use orgs::{
    AuditDraft, Customer, CustomerChanges, CustomerFields, CustomerRepo, Gender, GeneratorSize,
    NewCustomer, PeopleFilter,
};

use crate::accounts::{self, PersonRow, grid_org};
use crate::audit::record;
use crate::schema::{accounts as a, customers as cu};
use crate::{Db, Result, StoreError, like_pattern};

#[derive(Queryable, Selectable)]
#[diesel(table_name = cu)]
struct CustomerRow {
    id: i64,
    account_id: i64,
    organization_id: i64,
    grid_id: i64,
    gender: Option<String>,
    generator_owned: Option<String>,
    is_hidden_from_reporting: bool,
    lives_primarily_in_the_community: bool,
    latitude: Option<f64>,
    longitude: Option<f64>,
    total_connection_fee_minor: i64,
    total_connection_paid_minor: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn to_customer((r, p): (CustomerRow, PersonRow)) -> Customer {
    Customer {
        id: CustomerId(r.id),
        account_id: AccountId(r.account_id),
        organization_id: OrganizationId(r.organization_id),
        grid_id: GridId(r.grid_id),
        auth_user_id: p.auth_user_id,
        full_name: p.full_name,
        email: p.email,
        phone: p.phone,
        gender: r.gender.as_deref().and_then(Gender::parse),
        generator_owned: r.generator_owned.as_deref().and_then(GeneratorSize::parse),
        is_hidden_from_reporting: r.is_hidden_from_reporting,
        lives_primarily_in_the_community: r.lives_primarily_in_the_community,
        latitude: r.latitude,
        longitude: r.longitude,
        total_connection_fee: MinorUnits(r.total_connection_fee_minor),
        total_connection_paid: MinorUnits(r.total_connection_paid_minor),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

#[derive(AsChangeset)]
#[diesel(table_name = cu)]
struct CustomerRowChanges {
    grid_id: Option<i64>,
    organization_id: Option<i64>,
    gender: Option<Option<&'static str>>,
    generator_owned: Option<Option<&'static str>>,
    is_hidden_from_reporting: Option<bool>,
    lives_primarily_in_the_community: Option<bool>,
    latitude: Option<Option<f64>>,
    longitude: Option<Option<f64>>,
    updated_at: DateTime<Utc>,
}

impl CustomerRowChanges {
    fn new(f: CustomerFields, grid_id: Option<i64>, organization_id: Option<i64>) -> Self {
        CustomerRowChanges {
            grid_id,
            organization_id,
            gender: f.gender.map(|g| g.map(Gender::as_str)),
            generator_owned: f.generator_owned.map(|g| g.map(GeneratorSize::as_str)),
            is_hidden_from_reporting: f.is_hidden_from_reporting,
            lives_primarily_in_the_community: f.lives_primarily_in_the_community,
            latitude: f.latitude,
            longitude: f.longitude,
            updated_at: Utc::now(),
        }
    }
}

async fn load(c: &mut AsyncPgConnection, scope: TenantScope, id: i64) -> Result<Option<Customer>> {
    let mut q = cu::table
        .inner_join(a::table)
        .filter(cu::id.eq(id))
        .filter(cu::deleted_at.is_null())
        .select((CustomerRow::as_select(), PersonRow::as_select()))
        .into_boxed();
    if let Some(org) = scope.organization() {
        q = q.filter(cu::organization_id.eq(org.get()));
    }
    Ok(q.first::<(CustomerRow, PersonRow)>(c)
        .await
        .optional()?
        .map(to_customer))
}

impl Db {
    async fn customer_list(
        &self,
        scope: TenantScope,
        f: PeopleFilter,
        page: PageRequest,
    ) -> Result<Vec<Customer>> {
        let mut conn = self.conn().await?;
        let mut q = cu::table
            .inner_join(a::table)
            .filter(cu::deleted_at.is_null())
            .select((CustomerRow::as_select(), PersonRow::as_select()))
            .into_boxed();
        if let Some(org) = scope.organization() {
            q = q.filter(cu::organization_id.eq(org.get()));
        }
        if let Some(grid) = f.grid_id {
            q = q.filter(cu::grid_id.eq(grid.get()));
        }
        if let Some(only) = f.only_customer {
            q = q.filter(cu::id.eq(only.get()));
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
            q = q.filter(cu::id.gt(after));
        }
        let rows = q
            .order(cu::id.asc())
            .limit(page.fetch_limit())
            .load::<(CustomerRow, PersonRow)>(&mut conn)
            .await?;
        Ok(rows.into_iter().map(to_customer).collect())
    }

    async fn customer_create(
        &self,
        scope: TenantScope,
        new: NewCustomer,
        audit: AuditDraft,
    ) -> Result<Customer> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let org = grid_org(c, scope, new.grid_id.get()).await?;
            let account_id = accounts::insert(
                c,
                org,
                new.auth_user_id,
                &new.full_name,
                new.email.as_deref(),
                new.phone.as_deref(),
            )
            .await?;
            let id: i64 = diesel::insert_into(cu::table)
                .values((
                    cu::account_id.eq(account_id),
                    cu::organization_id.eq(org),
                    cu::grid_id.eq(new.grid_id.get()),
                ))
                .returning(cu::id)
                .get_result(c)
                .await?;
            diesel::update(cu::table.find(id))
                .set(CustomerRowChanges::new(new.fields, None, None))
                .execute(c)
                .await?;
            crate::wallets::open_wallet(
                c,
                &payments::WalletOwner::Customer(CustomerId(id)),
                org,
                new.grid_id.get(),
            )
            .await?;
            record(c, org, "customer", Some(id), &audit).await?;
            load(c, TenantScope::All, id)
                .await?
                .ok_or(StoreError::Domain(DomainError::NotFound("customer")))
        })
        .await
    }

    async fn customer_update(
        &self,
        scope: TenantScope,
        id: CustomerId,
        ch: CustomerChanges,
        audit: AuditDraft,
    ) -> Result<Option<Customer>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            let new_org = match ch.grid_id {
                Some(grid) => Some(grid_org(c, scope, grid.get()).await?),
                None => None,
            };
            accounts::update(c, current.account_id.get(), ch.person, new_org).await?;
            diesel::update(cu::table.find(id.get()))
                .set(CustomerRowChanges::new(
                    ch.fields,
                    ch.grid_id.map(|g| g.get()),
                    new_org,
                ))
                .execute(c)
                .await?;
            let org = new_org.unwrap_or(current.organization_id.get());
            record(c, org, "customer", Some(id.get()), &audit).await?;
            load(c, TenantScope::All, id.get()).await
        })
        .await
    }

    async fn customer_delete(
        &self,
        scope: TenantScope,
        id: CustomerId,
        audit: AuditDraft,
    ) -> Result<Option<Customer>> {
        let mut conn = self.conn().await?;
        conn.transaction(async |c| {
            let Some(current) = load(c, scope, id.get()).await? else {
                return Ok(None);
            };
            diesel::update(cu::table.find(id.get()))
                .set(cu::deleted_at.eq(Utc::now()))
                .execute(c)
                .await?;
            accounts::soft_delete(c, current.account_id.get()).await?;
            record(
                c,
                current.organization_id.get(),
                "customer",
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
impl CustomerRepo for Db {
    async fn list(
        &self,
        scope: TenantScope,
        f: PeopleFilter,
        page: PageRequest,
    ) -> std::result::Result<Vec<Customer>, DomainError> {
        Ok(self.customer_list(scope, f, page).await?)
    }
    async fn get(
        &self,
        scope: TenantScope,
        id: CustomerId,
    ) -> std::result::Result<Option<Customer>, DomainError> {
        let mut conn = self.conn().await?;
        Ok(load(&mut conn, scope, id.get()).await?)
    }
    async fn create(
        &self,
        scope: TenantScope,
        new: NewCustomer,
        audit: AuditDraft,
    ) -> std::result::Result<Customer, DomainError> {
        Ok(self.customer_create(scope, new, audit).await?)
    }
    async fn update(
        &self,
        scope: TenantScope,
        id: CustomerId,
        ch: CustomerChanges,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Customer>, DomainError> {
        Ok(self.customer_update(scope, id, ch, audit).await?)
    }
    async fn delete(
        &self,
        scope: TenantScope,
        id: CustomerId,
        audit: AuditDraft,
    ) -> std::result::Result<Option<Customer>, DomainError> {
        Ok(self.customer_delete(scope, id, audit).await?)
    }
}
