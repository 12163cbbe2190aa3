use async_trait::async_trait;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Int4, Jsonb, Text};
use diesel_async::RunQueryDsl;
use kernel::{DomainError, OrganizationId};
use orgs::{IdempotencyStore, RememberedResponse};

use crate::{Db, StoreError};

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Bytea)]
    fingerprint: Vec<u8>,
    #[diesel(sql_type = Int4)]
    status: i32,
    #[diesel(sql_type = Jsonb)]
    response: serde_json::Value,
}

impl From<Row> for RememberedResponse {
    fn from(r: Row) -> Self {
        RememberedResponse {
            fingerprint: r.fingerprint,
            status: u16::try_from(r.status).unwrap_or(200),
            body: r.response,
        }
    }
}

const RECALL: &str = "SELECT fingerprint, status, response FROM idempotency_keys WHERE organization_id = $1 AND key = $2";

#[async_trait]
impl IdempotencyStore for Db {
    async fn recall(
        &self,
        organization: OrganizationId,
        key: &str,
    ) -> Result<Option<RememberedResponse>, DomainError> {
        let mut conn = self.conn().await?;
        let row: Option<Row> = diesel::sql_query(RECALL)
            .bind::<BigInt, _>(organization.get())
            .bind::<Text, _>(key)
            .get_result(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(row.map(Into::into))
    }

    async fn remember(
        &self,
        organization: OrganizationId,
        key: &str,
        r: RememberedResponse,
    ) -> Result<RememberedResponse, DomainError> {
        let mut conn = self.conn().await?;
        diesel::sql_query(
            "INSERT INTO idempotency_keys (organization_id, key, fingerprint, status, response) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind::<BigInt, _>(organization.get())
        .bind::<Text, _>(key)
        .bind::<Bytea, _>(&r.fingerprint)
        .bind::<Int4, _>(i32::from(r.status))
        .bind::<Jsonb, _>(&r.body)
        .execute(&mut conn)
        .await
        .map_err(StoreError::from)?;
        let stored: Row = diesel::sql_query(RECALL)
            .bind::<BigInt, _>(organization.get())
            .bind::<Text, _>(key)
            .get_result(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(stored.into())
    }
}
