//! Raw SQL that PostgreSQL may prepare once per connection.
//!
//! Diesel marks every `sql_query` unsafe to cache, because its text could be built from data;
//! such a statement is parsed and planned on every call. On the money and delivery hot paths the
//! text is a constant (binds carry every value), so [`Prepare::prepared`] vouches for that and
//! diesel-async keeps the prepared statement in the connection's cache, keyed by the SQL text and
//! the bind types. Only use it on queries whose text does not depend on data: every distinct
//! text is a new cache entry for the life of the connection.
//!
//! Preparing once is only half of it: PostgreSQL still plans a prepared statement again on every
//! execution while it believes a plan for the actual values (a custom plan) beats the one plan
//! for any values (the generic plan). It believes that of statements taking arrays (it guesses 10
//! elements for `= ANY($1)` and 100 rows for `unnest($1)` where the caller passes two), so the
//! transfer's wallet lock and order write were planned on every call: 0.8 ms of the database's CPU
//! per transfer, more than executing them. [`with_generic_plans`] runs a transaction whose
//! statements use their generic plan, planned once per connection.

use std::future::Future;

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};

use crate::StoreError;

/// A query whose SQL text is fixed, so its prepared statement can be reused.
#[derive(Debug, Clone)]
pub(crate) struct Prepared<Q>(Q);

pub(crate) trait Prepare: Sized {
    /// Marks this query's SQL text as constant (see the module docs).
    fn prepared(self) -> Prepared<Self> {
        Prepared(self)
    }
}

impl<Q: QueryFragment<Pg>> Prepare for Q {}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

/// No static id: the statement cache then keys the statement by its SQL text and bind types.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

/// A transaction body whose future may move between threads (what `AsyncFnOnce` alone cannot
/// say on stable Rust).
pub(crate) trait TransactionBody<A, R>:
    AsyncFnOnce(A) -> R + FnOnce(A) -> <Self as TransactionBody<A, R>>::Fut
{
    type Fut: Future<Output = R> + Send;
}

impl<F, A, R, Fut> TransactionBody<A, R> for F
where
    F: AsyncFnOnce(A) -> R + FnOnce(A) -> Fut,
    Fut: Future<Output = R> + Send,
{
    type Fut = Fut;
}

/// Begins the transaction and sets the plan mode in one round trip; `SET LOCAL` ends with it.
const BEGIN_WITH_GENERIC_PLANS: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan";

/// Runs `body` in one transaction whose statements use generic plans (see the module docs),
/// committing on `Ok` and rolling back on `Err`, like `AsyncConnection::transaction`.
///
/// Only for transactions whose every statement finds its rows through a key or an id list
/// (`id = ANY($1)` is an index scan whatever the list's length): a generic plan cannot use the
/// value of an optional filter such as `$2 IS NULL OR organization_id = $2` to pick an index.
pub(crate) async fn with_generic_plans<R, F>(
    c: &mut AsyncPgConnection,
    body: F,
) -> Result<R, StoreError>
where
    for<'r> F: TransactionBody<&'r mut AsyncPgConnection, Result<R, StoreError>> + Send,
    R: Send,
{
    AnsiTransactionManager::begin_transaction_sql(c, BEGIN_WITH_GENERIC_PLANS).await?;
    match body(c).await {
        Ok(value) => {
            AnsiTransactionManager::commit_transaction(c).await?;
            Ok(value)
        }
        Err(e) => {
            // A failed rollback leaves the connection marked broken (the pool drops it); the
            // body's error is the one worth reporting.
            if let Err(rollback) = AnsiTransactionManager::rollback_transaction(c).await {
                tracing::warn!(error = %rollback, "rollback after a failed transaction failed");
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::QueryableByName;
    use diesel::sql_types::{Array, BigInt, Text};
    use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
    use kernel::DomainError;

    use super::*;

    /// A server from `just test`; temporary tables only, so no database of its own is needed.
    async fn connect() -> AsyncPgConnection {
        let url = std::env::var("TIAMAT_TEST_DATABASE_URL")
            .expect("TIAMAT_TEST_DATABASE_URL is not set: run the tests with `just test`");
        let mut c = AsyncPgConnection::establish(&url).await.expect("connect");
        c.batch_execute(
            "CREATE TEMP TABLE plan_rows (id bigint PRIMARY KEY, owner bigint);
             INSERT INTO plan_rows SELECT g, g % 7 FROM generate_series(1, 1000) g;
             ANALYZE plan_rows;",
        )
        .await
        .expect("temp table");
        c
    }

    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        plan_cache_mode: String,
    }

    async fn plan_mode(c: &mut AsyncPgConnection) -> String {
        diesel::sql_query("SHOW plan_cache_mode")
            .get_result::<Setting>(c)
            .await
            .expect("show")
            .plan_cache_mode
    }

    #[derive(QueryableByName)]
    struct Plans {
        #[diesel(sql_type = BigInt)]
        generic_plans: i64,
        #[diesel(sql_type = BigInt)]
        custom_plans: i64,
    }

    const LOCK: &str = "SELECT id FROM plan_rows WHERE id = ANY($1) ORDER BY id FOR UPDATE";

    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        #[allow(dead_code)]
        id: i64,
    }

    async fn lock_two(c: &mut AsyncPgConnection) -> Result<(), StoreError> {
        diesel::sql_query(LOCK)
            .bind::<Array<BigInt>, _>(vec![3_i64, 500])
            .prepared()
            .load::<Id>(c)
            .await?;
        Ok(())
    }

    async fn plans(c: &mut AsyncPgConnection) -> (i64, i64) {
        let p: Plans = diesel::sql_query(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
        )
        .bind::<Text, _>(LOCK)
        .get_result(c)
        .await
        .expect("the lock is a prepared statement of this session");
        (p.generic_plans, p.custom_plans)
    }

    #[tokio::test]
    async fn statements_in_the_transaction_are_planned_once_and_the_mode_ends_with_it() {
        let mut c = connect().await;
        // Left to itself, PostgreSQL re-plans the array lookup on every execution.
        for _ in 0..8 {
            c.transaction(async |c| lock_two(c).await)
                .await
                .expect("lock");
        }
        let (generic, custom) = plans(&mut c).await;
        assert_eq!((generic, custom), (0, 8), "auto mode plans every call");

        for _ in 0..8 {
            with_generic_plans(&mut c, async |c| {
                assert_eq!(plan_mode(c).await, "force_generic_plan");
                lock_two(c).await
            })
            .await
            .expect("lock");
        }
        let (generic, custom) = plans(&mut c).await;
        assert_eq!(custom, 8, "no custom plan inside the transactions");
        assert_eq!(generic, 8, "the one generic plan, reused");
        assert_eq!(
            plan_mode(&mut c).await,
            "auto",
            "SET LOCAL ended with the transaction"
        );
    }

    #[tokio::test]
    async fn ok_commits_and_err_rolls_back_leaving_the_connection_usable() {
        let mut c = connect().await;
        let count = async |c: &mut AsyncPgConnection| -> i64 {
            #[derive(QueryableByName)]
            struct N {
                #[diesel(sql_type = BigInt)]
                n: i64,
            }
            diesel::sql_query("SELECT count(*) AS n FROM plan_rows")
                .get_result::<N>(c)
                .await
                .expect("count")
                .n
        };
        with_generic_plans(&mut c, async |c| {
            c.batch_execute("INSERT INTO plan_rows VALUES (5000, 1)")
                .await?;
            Ok(())
        })
        .await
        .expect("committed");
        assert_eq!(count(&mut c).await, 1001);

        let failed: Result<(), StoreError> = with_generic_plans(&mut c, async |c| {
            c.batch_execute("INSERT INTO plan_rows VALUES (5001, 1)")
                .await?;
            Err(StoreError::Domain(DomainError::Conflict("refused".into())))
        })
        .await;
        assert!(matches!(
            failed,
            Err(StoreError::Domain(DomainError::Conflict(_)))
        ));
        assert_eq!(
            count(&mut c).await,
            1001,
            "the failed body's insert is gone"
        );
        assert_eq!(plan_mode(&mut c).await, "auto");
        // Not left inside a transaction: a new one begins.
        with_generic_plans(&mut c, async |_| Ok(()))
            .await
            .expect("a new transaction");
    }
}
