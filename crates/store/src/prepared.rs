//! Raw SQL that PostgreSQL may prepare once per connection.
//!
//! Diesel marks every `sql_query` unsafe to cache, because its text could be built from data;
//! such a statement is parsed and planned on every call. On the money and delivery hot paths the
//! text is a constant (binds carry every value), so [`Prepare::prepared`] vouches for that and
//! diesel-async keeps the prepared statement in the connection's cache, keyed by the SQL text and
//! the bind types. Only use it on queries whose text does not depend on data: every distinct
//! text is a new cache entry for the life of the connection.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

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
