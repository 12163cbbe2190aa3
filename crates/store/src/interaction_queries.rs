//! The read model of meter interactions: lists and single rows for operators. Token values are
//! never selected.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use kernel::{DomainError, GridId, MeterId, OrganizationId, PageRequest, TenantScope};
use meters::{InteractionFilter, InteractionId, InteractionQueries, InteractionView};

use crate::{Db, StoreError};

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    organization_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    grid_id: Option<i64>,
    #[diesel(sql_type = BigInt)]
    meter_id: i64,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Text)]
    origin: String,
    #[diesel(sql_type = Int4)]
    priority: i32,
    #[diesel(sql_type = Nullable<Int4>)]
    power_limit_w: Option<i32>,
    #[diesel(sql_type = Nullable<BigInt>)]
    energy_wh: Option<i64>,
    #[diesel(sql_type = Int4)]
    coalesced_requests: i32,
    #[diesel(sql_type = Nullable<BigInt>)]
    superseded_by: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<BigInt>)]
    commissioning_id: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    retry_of: Option<i64>,
    #[diesel(sql_type = Jsonb)]
    history: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, organization_id, grid_id, meter_id, kind, status, origin, priority, power_limit_w, \
energy_wh, coalesced_requests, superseded_by, expires_at, commissioning_id, retry_of, history, created_at, updated_at";

fn text_enum<T: serde::de::DeserializeOwned>(what: &str, v: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(v.to_owned())).map_err(|_| {
        StoreError::Domain(DomainError::Internal(format!(
            "unknown {what} {v:?} in the database"
        )))
    })
}

impl TryFrom<Row> for InteractionView {
    type Error = StoreError;
    fn try_from(r: Row) -> Result<Self, StoreError> {
        Ok(InteractionView {
            id: InteractionId(r.id),
            organization_id: OrganizationId(r.organization_id),
            grid_id: r.grid_id.map(GridId),
            meter_id: MeterId(r.meter_id),
            kind: text_enum("interaction type", &r.kind)?,
            status: text_enum("interaction status", &r.status)?,
            origin: text_enum("origin", &r.origin)?,
            priority: r.priority,
            power_limit_w: r.power_limit_w,
            energy_wh: r.energy_wh,
            coalesced_requests: r.coalesced_requests,
            superseded_by: r.superseded_by.map(InteractionId),
            expires_at: r.expires_at,
            commissioning_id: r.commissioning_id.map(meters::CommissioningId),
            retry_of: r.retry_of.map(InteractionId),
            history: serde_json::from_value(r.history).unwrap_or_default(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

fn name<T: serde::Serialize>(v: &T) -> Option<String> {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
}

#[async_trait]
impl InteractionQueries for Db {
    async fn list(
        &self,
        scope: TenantScope,
        f: InteractionFilter,
        page: PageRequest,
    ) -> Result<Vec<InteractionView>, DomainError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM meter_interactions
              WHERE ($1::bigint IS NULL OR organization_id = $1)
                AND ($2::bigint IS NULL OR meter_id = $2)
                AND ($3::bigint IS NULL OR grid_id = $3)
                AND ($4::text IS NULL OR status = $4)
                AND ($5::text IS NULL OR kind = $5)
                AND ($6::timestamptz IS NULL OR created_at >= $6)
                AND ($7::timestamptz IS NULL OR created_at < $7)
                AND ($8::bigint IS NULL OR id > $8)
                AND ($10::bigint IS NULL OR id IN (
                    SELECT interaction_id FROM batch_interactions WHERE batch_execution_id = $10))
              ORDER BY id LIMIT $9"
        );
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = diesel::sql_query(sql)
            .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
            .bind::<Nullable<BigInt>, _>(f.meter_id.map(|m| m.get()))
            .bind::<Nullable<BigInt>, _>(f.grid_id.map(|g| g.get()))
            .bind::<Nullable<Text>, _>(f.status.as_ref().and_then(name))
            .bind::<Nullable<Text>, _>(f.kind.as_ref().and_then(name))
            .bind::<Nullable<Timestamptz>, _>(f.created_after)
            .bind::<Nullable<Timestamptz>, _>(f.created_before)
            .bind::<Nullable<BigInt>, _>(page.after_id)
            .bind::<BigInt, _>(page.fetch_limit())
            .bind::<Nullable<BigInt>, _>(f.batch_execution_id.map(|b| b.get()))
            .load(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(rows
            .into_iter()
            .map(InteractionView::try_from)
            .collect::<Result<_, _>>()?)
    }

    async fn get(
        &self,
        scope: TenantScope,
        id: InteractionId,
    ) -> Result<Option<InteractionView>, DomainError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM meter_interactions WHERE id = $1 AND ($2::bigint IS NULL OR organization_id = $2)"
        );
        let mut conn = self.conn().await?;
        let row: Option<Row> = diesel::sql_query(sql)
            .bind::<BigInt, _>(id.get())
            .bind::<Nullable<BigInt>, _>(scope.organization().map(|o| o.get()))
            .get_result(&mut conn)
            .await
            .optional()
            .map_err(StoreError::from)?;
        Ok(row.map(InteractionView::try_from).transpose()?)
    }
}
