//! Wallets: one per owner (an organization one per currency it runs grids in), opened with their
//! owner in the owner's transaction, plus per-currency `SYSTEM` wallets for money entering and
//! leaving through providers, opened on demand.
//!
//! Store API used by other modules:
//! * [`open_wallet`]: in the owner's creating transaction (agents, customers, connections, grids
//!   for the organization's wallet in the grid's currency, meters when assigned to a grid);
//! * [`system_wallet`]: the id of the system wallet of a provider key and currency;
//! * [`lock_wallets`]: loads wallets `FOR UPDATE` in id order, with their grid and customer;
//! * [`Db::wallet_of_owner`]: the wallet of an owner (e.g. a meter's, for a top-up).

use chrono::{DateTime, Utc};
use diesel::OptionalExtension;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use kernel::{
    AgentId, ConnectionId, Currency, CustomerId, DomainError, GridId, MeterId, MinorUnits,
    OrganizationId, PageRequest, TenantScope, WalletId,
};
use payments::{StatementLine, Wallet, WalletFilter, WalletOwner};

use crate::prepared::Prepare;
use crate::{Db, Result, StoreError};

#[derive(diesel::QueryableByName)]
pub(crate) struct WalletRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    owner_type: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    owner_organization_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    agent_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    customer_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    meter_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    connection_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    system_key: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    organization_id: Option<i64>,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    balance_minor: i64,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<BigInt>)]
    ctx_grid_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    ctx_customer_id: Option<i64>,
    /// The owner's grid or customer is hidden from reporting.
    #[diesel(sql_type = Bool)]
    pub(crate) ctx_hidden: bool,
}

impl WalletRow {
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    /// The connection behind a connection wallet (its fees paid follow the wallet's money).
    pub(crate) fn connection(&self) -> Option<(WalletId, i64)> {
        self.connection_id.map(|c| (WalletId(self.id), c))
    }

    pub(crate) fn to_wallet(&self) -> Result<Wallet> {
        let bad = || StoreError::Domain(DomainError::Internal(format!("wallet {}", self.id)));
        let owner = match self.owner_type.as_str() {
            "ORGANIZATION" => WalletOwner::Organization(OrganizationId(
                self.owner_organization_id.ok_or_else(bad)?,
            )),
            "AGENT" => WalletOwner::Agent(AgentId(self.agent_id.ok_or_else(bad)?)),
            "CUSTOMER" => WalletOwner::Customer(CustomerId(self.customer_id.ok_or_else(bad)?)),
            "METER" => WalletOwner::Meter(MeterId(self.meter_id.ok_or_else(bad)?)),
            "CONNECTION" => {
                WalletOwner::Connection(ConnectionId(self.connection_id.ok_or_else(bad)?))
            }
            "SYSTEM" => WalletOwner::System(self.system_key.clone().ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        Ok(Wallet {
            id: WalletId(self.id),
            owner,
            currency: Currency::parse(self.currency.trim()).map_err(|_| bad())?,
            balance: MinorUnits(self.balance_minor),
            organization_id: self.organization_id.map(OrganizationId),
            grid_id: self.ctx_grid_id.map(GridId),
            customer_id: self.ctx_customer_id.map(CustomerId),
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// A wallet with the context the permission rules and reporting need: the owner's grid, the
/// customer behind it, and whether either is hidden from reporting.
const WALLET_SELECT: &str = "
SELECT w.id, w.owner_type, w.owner_organization_id, w.agent_id, w.customer_id, w.meter_id,
       w.connection_id, w.system_key, w.organization_id, w.currency::text AS currency,
       w.balance_minor, w.created_at, w.updated_at,
       COALESCE(ag.grid_id, cu.grid_id, me.grid_id, cn.grid_id) AS ctx_grid_id,
       COALESCE(w.customer_id, cn.customer_id, mc.customer_id) AS ctx_customer_id,
       (COALESCE(gr.is_hidden_from_reporting, false)
        OR COALESCE(bc.is_hidden_from_reporting, false)) AS ctx_hidden
FROM wallets w
LEFT JOIN agents ag ON ag.id = w.agent_id
LEFT JOIN customers cu ON cu.id = w.customer_id
LEFT JOIN meters me ON me.id = w.meter_id
LEFT JOIN connections mc ON mc.id = me.connection_id
LEFT JOIN connections cn ON cn.id = w.connection_id
LEFT JOIN grids gr ON gr.id = COALESCE(ag.grid_id, cu.grid_id, me.grid_id, cn.grid_id)
LEFT JOIN customers bc ON bc.id = COALESCE(w.customer_id, cn.customer_id, mc.customer_id)";

/// Loads the wallets with these ids `FOR UPDATE`, in ascending id order (the one lock order every
/// writer uses, so two postings over the same wallets cannot deadlock). Wallets outside `scope`
/// are left out, except `allow_system` (a system wallet the caller resolved by key).
pub(crate) async fn lock_wallets(
    c: &mut AsyncPgConnection,
    scope: TenantScope,
    ids: &[i64],
    allow_system: Option<i64>,
) -> Result<Vec<WalletRow>> {
    let sql = format!(
        "{WALLET_SELECT}
WHERE w.id = ANY($1) AND ($2::bigint IS NULL OR w.organization_id = $2 OR w.id = $3)
ORDER BY w.id FOR UPDATE OF w"
    );
    Ok(diesel::sql_query(sql)
        .bind::<diesel::sql_types::Array<BigInt>, _>(ids)
        .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
        .bind::<Nullable<BigInt>, _>(allow_system)
        .prepared()
        .load(c)
        .await?)
}

pub(crate) async fn load_wallet(
    c: &mut AsyncPgConnection,
    scope: TenantScope,
    id: i64,
) -> Result<Option<Wallet>> {
    let sql = format!(
        "{WALLET_SELECT}
WHERE w.id = $1 AND ($2::bigint IS NULL OR w.organization_id = $2)"
    );
    let row: Option<WalletRow> = diesel::sql_query(sql)
        .bind::<BigInt, _>(id)
        .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
        .get_result(c)
        .await
        .map(Some)
        .or_else(|e| match e {
            diesel::result::Error::NotFound => Ok(None),
            e => Err(e),
        })?;
    row.map(|r| r.to_wallet()).transpose()
}

/// Opens `owner`'s wallet in the currency of `grid_id` unless it has one. Runs inside the owner's
/// creating transaction. System wallets are opened by [`system_wallet`].
pub(crate) async fn open_wallet(
    c: &mut AsyncPgConnection,
    owner: &WalletOwner,
    organization_id: i64,
    grid_id: i64,
) -> Result<()> {
    let (org_owner, agent, customer, meter, connection) = match owner {
        WalletOwner::Organization(o) => (Some(o.get()), None, None, None, None),
        WalletOwner::Agent(a) => (None, Some(a.get()), None, None, None),
        WalletOwner::Customer(cu) => (None, None, Some(cu.get()), None, None),
        WalletOwner::Meter(m) => (None, None, None, Some(m.get()), None),
        WalletOwner::Connection(cn) => (None, None, None, None, Some(cn.get())),
        WalletOwner::System(_) => {
            return Err(StoreError::Domain(DomainError::Internal(
                "system wallets are opened by key".into(),
            )));
        }
    };
    diesel::sql_query(
        "INSERT INTO wallets (owner_type, owner_organization_id, agent_id, customer_id, meter_id,
                              connection_id, organization_id, currency)
         SELECT $1, $2, $3, $4, $5, $6, $7, g.currency FROM grids g WHERE g.id = $8
         ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(owner.kind())
    .bind::<Nullable<BigInt>, _>(org_owner)
    .bind::<Nullable<BigInt>, _>(agent)
    .bind::<Nullable<BigInt>, _>(customer)
    .bind::<Nullable<BigInt>, _>(meter)
    .bind::<Nullable<BigInt>, _>(connection)
    .bind::<BigInt, _>(organization_id)
    .bind::<BigInt, _>(grid_id)
    .execute(c)
    .await?;
    if let WalletOwner::Meter(m) = owner {
        // A meter's wallet follows the meter to the organization it is assigned in.
        diesel::sql_query(
            "UPDATE wallets SET organization_id = $2, updated_at = now()
             WHERE meter_id = $1 AND organization_id <> $2",
        )
        .bind::<BigInt, _>(m.get())
        .bind::<BigInt, _>(organization_id)
        .execute(c)
        .await?;
    }
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The id of the system wallet of provider `key` in `currency`, opened on first use.
pub(crate) async fn system_wallet(
    c: &mut AsyncPgConnection,
    key: &str,
    currency: Currency,
) -> Result<i64> {
    find_or_open(c, Keyed::System(key), currency).await
}

/// The organization's wallet in `currency`. Opened with the organization's first grid in that
/// currency; opened here when missing (e.g. a meter's grid changed currency) rather than leaving
/// the money of delivered energy or a payout nowhere.
pub(crate) async fn organization_wallet(
    c: &mut AsyncPgConnection,
    organization: i64,
    currency: Currency,
) -> Result<i64> {
    find_or_open(c, Keyed::Organization(organization), currency).await
}

/// The owners whose wallet is found by key, and opened by whoever needs it first.
#[derive(Clone, Copy)]
enum Keyed<'a> {
    System(&'a str),
    Organization(i64),
}

async fn find_or_open(
    c: &mut AsyncPgConnection,
    owner: Keyed<'_>,
    currency: Currency,
) -> Result<i64> {
    let find = async |c: &mut AsyncPgConnection| match owner {
        Keyed::System(key) => {
            diesel::sql_query("SELECT id FROM wallets WHERE system_key = $1 AND currency = $2")
                .bind::<Text, _>(key)
                .bind::<Text, _>(currency.as_str())
                .prepared()
                .get_result::<IdRow>(c)
                .await
                .optional()
        }
        Keyed::Organization(org) => diesel::sql_query(
            "SELECT id FROM wallets WHERE owner_organization_id = $1 AND currency = $2",
        )
        .bind::<BigInt, _>(org)
        .bind::<Text, _>(currency.as_str())
        .prepared()
        .get_result::<IdRow>(c)
        .await
        .optional(),
    };
    if let Some(row) = find(c).await? {
        return Ok(row.id);
    }
    // A concurrent opener may win the insert; either way the wallet exists afterwards.
    match owner {
        Keyed::System(key) => {
            diesel::sql_query(
                "INSERT INTO wallets (owner_type, system_key, currency) VALUES ('SYSTEM', $1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind::<Text, _>(key)
            .bind::<Text, _>(currency.as_str())
            .execute(c)
            .await?
        }
        Keyed::Organization(org) => {
            diesel::sql_query(
                "INSERT INTO wallets (owner_type, owner_organization_id, organization_id, currency)
                 VALUES ('ORGANIZATION', $1, $1, $2) ON CONFLICT DO NOTHING",
            )
            .bind::<BigInt, _>(org)
            .bind::<Text, _>(currency.as_str())
            .execute(c)
            .await?
        }
    };
    find(c).await?.map(|r| r.id).ok_or_else(|| {
        StoreError::Domain(DomainError::Internal(format!(
            "no {currency} wallet could be opened"
        )))
    })
}

#[derive(diesel::QueryableByName)]
struct StatementRow {
    #[diesel(sql_type = BigInt)]
    entry_id: i64,
    #[diesel(sql_type = BigInt)]
    transaction_id: i64,
    #[diesel(sql_type = BigInt)]
    order_id: i64,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    currency: String,
    #[diesel(sql_type = BigInt)]
    amount_minor: i64,
    #[diesel(sql_type = BigInt)]
    balance_after_minor: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    counterparty_wallet_id: Option<i64>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

impl Db {
    pub(crate) async fn wallet_list(
        &self,
        scope: TenantScope,
        f: WalletFilter,
        page: PageRequest,
    ) -> Result<Vec<Wallet>> {
        let mut conn = self.conn().await?;
        let sql = format!(
            "{WALLET_SELECT}
WHERE ($1::bigint IS NULL OR w.organization_id = $1)
  AND ($2::text IS NULL OR w.owner_type = $2)
  AND ($3::bigint IS NULL OR COALESCE(w.owner_organization_id, w.agent_id, w.customer_id,
                                      w.meter_id, w.connection_id) = $3)
  AND ($4::text IS NULL OR w.currency = $4)
  AND ($5::bigint IS NULL OR w.agent_id = $5)
  AND ($6::bigint IS NULL OR COALESCE(w.customer_id, cn.customer_id, mc.customer_id) = $6)
  AND ($7::bigint IS NULL OR w.id > $7)
ORDER BY w.id LIMIT $8"
        );
        let rows: Vec<WalletRow> = diesel::sql_query(sql)
            .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
            .bind::<Nullable<Text>, _>(f.owner_type)
            .bind::<Nullable<BigInt>, _>(f.owner_id)
            .bind::<Nullable<Text>, _>(f.currency.map(|c| c.as_str().to_owned()))
            .bind::<Nullable<BigInt>, _>(f.only_agent.map(|a| a.get()))
            .bind::<Nullable<BigInt>, _>(f.only_customer.map(|c| c.get()))
            .bind::<Nullable<BigInt>, _>(page.after_id)
            .bind::<BigInt, _>(page.fetch_limit())
            .load(&mut conn)
            .await?;
        rows.iter().map(WalletRow::to_wallet).collect()
    }

    pub(crate) async fn wallet_get(
        &self,
        scope: TenantScope,
        id: WalletId,
    ) -> Result<Option<Wallet>> {
        let mut conn = self.conn().await?;
        load_wallet(&mut conn, scope, id.get()).await
    }

    /// The wallet of `owner` (any tenant; the caller checks what it may see), `None` when the
    /// owner has none. For a `System` owner, `currency` picks the wallet (opened on demand).
    pub async fn wallet_of_owner(
        &self,
        owner: &WalletOwner,
        currency: Option<Currency>,
    ) -> std::result::Result<Option<Wallet>, DomainError> {
        let mut conn = self.conn().await?;
        let (column, id) = match owner {
            WalletOwner::Organization(o) => ("owner_organization_id", o.get()),
            WalletOwner::Agent(a) => ("agent_id", a.get()),
            WalletOwner::Customer(cu) => ("customer_id", cu.get()),
            WalletOwner::Meter(m) => ("meter_id", m.get()),
            WalletOwner::Connection(cn) => ("connection_id", cn.get()),
            WalletOwner::System(key) => {
                let Some(currency) = currency else {
                    return Ok(None);
                };
                let id = system_wallet(&mut conn, key, currency).await?;
                return Ok(load_wallet(&mut conn, TenantScope::All, id).await?);
            }
        };
        let sql = format!(
            "{WALLET_SELECT}
WHERE w.{column} = $1 AND ($2::text IS NULL OR w.currency = $2) ORDER BY w.id LIMIT 1"
        );
        let rows: Vec<WalletRow> = diesel::sql_query(sql)
            .bind::<BigInt, _>(id)
            .bind::<Nullable<Text>, _>(currency.map(|c| c.as_str().to_owned()))
            .load(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(<[WalletRow]>::first(&rows)
            .map(WalletRow::to_wallet)
            .transpose()?)
    }

    pub(crate) async fn wallet_statement(
        &self,
        scope: TenantScope,
        id: WalletId,
        page: PageRequest,
    ) -> Result<Option<Vec<StatementLine>>> {
        let mut conn = self.conn().await?;
        if load_wallet(&mut conn, scope, id.get()).await?.is_none() {
            return Ok(None);
        }
        let rows: Vec<StatementRow> = diesel::sql_query(
            "SELECT e.id AS entry_id, e.transaction_id, t.order_id, t.kind, e.currency::text AS currency,
                    e.amount_minor, e.balance_after_minor,
                    (SELECT o.wallet_id FROM ledger_entries o
                     WHERE o.transaction_id = e.transaction_id AND o.wallet_id <> e.wallet_id
                     ORDER BY o.id LIMIT 1) AS counterparty_wallet_id,
                    e.created_at
             FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
             WHERE e.wallet_id = $1 AND ($2::bigint IS NULL OR e.id > $2)
             ORDER BY e.id LIMIT $3",
        )
        .bind::<BigInt, _>(id.get())
        .bind::<Nullable<BigInt>, _>(page.after_id)
        .bind::<BigInt, _>(page.fetch_limit())
        .load(&mut conn)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(StatementLine {
                    entry_id: r.entry_id,
                    transaction_id: r.transaction_id,
                    order_id: kernel::OrderId(r.order_id),
                    kind: r.kind,
                    currency: Currency::parse(r.currency.trim()).map_err(|e| {
                        StoreError::Domain(DomainError::Internal(e.message.clone()))
                    })?,
                    amount: r.amount_minor,
                    balance_after: r.balance_after_minor,
                    counterparty_wallet_id: r.counterparty_wallet_id.map(WalletId),
                    created_at: r.created_at,
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}
