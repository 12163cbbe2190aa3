//! PostgreSQL adapter: implements the domain ports with Diesel + diesel-async on a deadpool pool.
//!
//! Every query is scoped by the caller's [`TenantScope`]; every change writes its audit event in
//! the same transaction.

mod accounts;
mod agents;
mod api_keys;
mod audit;
mod batches;
mod connections;
mod customers;
mod deliveries;
pub mod events;
mod gateways;
mod grid_state;
mod grids;
mod idempotency;
mod inbox;
mod installs;
mod interaction_queries;
mod interactions;
mod ledger;
pub mod listener;
mod members;
mod meters;
mod orders;
mod organizations;
pub mod payment_checkout;
pub mod payment_credentials;
mod payouts;
mod postings;
mod prepared;
mod principals;
mod provider_refunds;
mod purchases;
mod reconciliation;
pub mod schema;
mod site;
mod wallets;

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use kernel::DomainError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// The database handle every repository is implemented on. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool<AsyncPgConnection>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Diesel(#[from] DieselError),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Domain(d) => d,
            StoreError::Unavailable(m) => DomainError::Unavailable(format!("database: {m}")),
            StoreError::Migration(m) => DomainError::Internal(m),
            StoreError::Diesel(DieselError::DatabaseError(kind, info)) => match kind {
                DatabaseErrorKind::UniqueViolation => {
                    DomainError::Conflict(conflict_message(info.constraint_name()))
                }
                DatabaseErrorKind::ForeignKeyViolation => {
                    DomainError::Validation(vec![kernel::FieldError::new(
                        info.column_name().unwrap_or("reference"),
                        "refers to something that does not exist",
                    )])
                }
                DatabaseErrorKind::CheckViolation => {
                    DomainError::Validation(vec![kernel::FieldError::new(
                        info.constraint_name().unwrap_or("input"),
                        "is out of the allowed range",
                    )])
                }
                _ => {
                    tracing::error!(error = %info.message(), "database error");
                    DomainError::Internal("database error".into())
                }
            },
            StoreError::Diesel(other) => {
                tracing::error!(error = %other, "database error");
                DomainError::Internal("database error".into())
            }
        }
    }
}

fn conflict_message(constraint: Option<&str>) -> String {
    match constraint {
        Some("accounts_email_live") => "an account with this e-mail already exists".into(),
        Some("organizations_name_live") => "an organization with this name already exists".into(),
        Some("grids_name_live") => {
            "a grid with this name already exists in the organization".into()
        }
        Some("accounts_auth_user_id_key") => "this login already has an account".into(),
        Some(other) => format!("conflicts with an existing record ({other})"),
        None => "conflicts with an existing record".into(),
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl Db {
    /// Builds the pool; connections are opened lazily.
    pub fn connect(url: &str, max_size: usize) -> std::result::Result<Self, StoreError> {
        // `Fast` recycling: the default (`Verified`) sends a `SELECT 1` on every checkout, a
        // round trip per request; a broken connection is still detected and replaced.
        let mut config = ManagerConfig::default();
        config.recycling_method = RecyclingMethod::Fast;
        let manager =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_runtime())
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self { pool })
    }

    pub(crate) async fn conn(&self) -> Result<Object<AsyncPgConnection>> {
        self.pool.get().await.map_err(|e| {
            metrics::counter!("tiamat_db_pool_errors_total").increment(1);
            StoreError::Unavailable(e.to_string())
        })
    }

    /// Pool size and idle connections, for metrics.
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let s = self.pool.status();
        (s.max_size, s.size, s.available)
    }

    /// Applies pending migrations; returns the versions applied. Diesel's migration runner is
    /// synchronous, so it runs on a blocking thread (this works on any tokio runtime flavour).
    pub async fn migrate(&self) -> Result<Vec<String>> {
        let conn = Object::take(self.conn().await?);
        tokio::task::spawn_blocking(move || {
            let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> =
                AsyncConnectionWrapper::from(conn);
            wrapper
                .run_pending_migrations(MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>())
                .map_err(|e| StoreError::Migration(e.to_string()))
        })
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?
    }

    /// True when the database answers and every embedded migration has been applied.
    pub async fn ready(&self) -> Result<bool> {
        use diesel::migration::MigrationSource;
        use diesel_async::RunQueryDsl;

        #[derive(diesel::QueryableByName)]
        struct Version {
            #[diesel(sql_type = diesel::sql_types::Text)]
            version: String,
        }
        let wanted: Vec<String> = MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
            .map_err(|e| StoreError::Migration(e.to_string()))?
            .iter()
            .map(|m| m.name().version().to_string())
            .collect();
        let mut conn = self.conn().await?;
        let applied: Vec<Version> =
            match diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
                .load(&mut conn)
                .await
            {
                Ok(v) => v,
                // No migrations table yet: nothing applied.
                Err(DieselError::DatabaseError(DatabaseErrorKind::Unknown, _)) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
        Ok(wanted
            .iter()
            .all(|w| applied.iter().any(|a| &a.version == w)))
    }
}

fn deadpool_runtime() -> deadpool::Runtime {
    deadpool::Runtime::Tokio1
}

/// `ILIKE` pattern for a free-text search, with the user's wildcards escaped.
pub(crate) fn like_pattern(search: &str) -> String {
    let escaped = search
        .trim()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Optional text fields arrive as `Some("")` to clear them.
pub(crate) fn clearable(v: Option<Option<String>>) -> Option<Option<String>> {
    v.map(|inner| inner.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
}
