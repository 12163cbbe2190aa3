//! The inbound-event inbox and uplink telemetry.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Jsonb, Nullable, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use grids::events::{EventKind, LiveEvent, Operation};
use grids::telemetry::{ClaimedEvent, InboundEvent, Inbox, TelemetryRepo, Uplink};
use kernel::{DomainError, GridId, MeterId};

use crate::schema::{dcus, inbound_events as ie, meters};
use crate::{Db, StoreError};

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    source: String,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Nullable<Text>)]
    dev_eui: Option<String>,
    #[diesel(sql_type = Jsonb)]
    payload: serde_json::Value,
    #[diesel(sql_type = Int4)]
    attempts: i32,
    #[diesel(sql_type = Int4)]
    early_retries: i32,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    received_at: DateTime<Utc>,
}

// Two workers never hold the same row: SKIP LOCKED passes over rows another transaction is
// claiming, and the lease keeps a claimed row away from others until it runs out.
const CLAIM: &str = "\
UPDATE inbound_events SET locked_until = now() + make_interval(secs => $2), attempts = attempts + 1
 WHERE id IN (SELECT id FROM inbound_events
               WHERE processed_at IS NULL AND (locked_until IS NULL OR locked_until < now())
               ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, source, event_type, dev_eui, payload, attempts, early_retries, received_at";

#[async_trait]
impl Inbox for Db {
    async fn store(&self, e: InboundEvent) -> Result<bool, DomainError> {
        let mut conn = self.conn().await?;
        let n = diesel::insert_into(ie::table)
            .values((
                ie::source.eq(e.source),
                ie::event_type.eq(&e.event_type),
                ie::dedup_key.eq(&e.dedup_key),
                ie::dev_eui.eq(&e.dev_eui),
                ie::payload.eq(&e.payload),
            ))
            .on_conflict_do_nothing()
            .execute(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(n == 1)
    }

    async fn claim(&self, limit: i64, lease_secs: i64) -> Result<Vec<ClaimedEvent>, DomainError> {
        let mut conn = self.conn().await?;
        let mut rows: Vec<ClaimedRow> = diesel::sql_query(CLAIM)
            .bind::<BigInt, _>(limit)
            .bind::<diesel::sql_types::Double, _>(lease_secs as f64)
            .load(&mut conn)
            .await
            .map_err(StoreError::from)?;
        rows.sort_by_key(|r| r.id);
        Ok(rows
            .into_iter()
            .map(|r| ClaimedEvent {
                id: r.id,
                source: r.source,
                event_type: r.event_type,
                dev_eui: r.dev_eui,
                payload: r.payload,
                attempts: r.attempts,
                early_retries: r.early_retries,
                received_at: r.received_at,
            })
            .collect())
    }

    async fn complete(&self, id: i64, outcome: String) -> Result<(), DomainError> {
        let mut conn = self.conn().await?;
        diesel::update(ie::table.find(id))
            .set((
                ie::processed_at.eq(Utc::now()),
                ie::outcome.eq(outcome),
                ie::locked_until.eq(None::<DateTime<Utc>>),
            ))
            .execute(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    async fn retry_later(
        &self,
        id: i64,
        error: String,
        after: chrono::Duration,
        give_up: bool,
    ) -> Result<(), DomainError> {
        let mut conn = self.conn().await?;
        let now = Utc::now();
        if give_up {
            diesel::update(ie::table.find(id))
                .set((
                    ie::processed_at.eq(now),
                    ie::outcome.eq("failed"),
                    ie::last_error.eq(error),
                ))
                .execute(&mut conn)
                .await
                .map_err(StoreError::from)?;
        } else {
            diesel::update(ie::table.find(id))
                .set((ie::locked_until.eq(now + after), ie::last_error.eq(error)))
                .execute(&mut conn)
                .await
                .map_err(StoreError::from)?;
        }
        Ok(())
    }

    async fn retry_early(
        &self,
        id: i64,
        reason: String,
        after: chrono::Duration,
    ) -> Result<(), DomainError> {
        let mut conn = self.conn().await?;
        diesel::update(ie::table.find(id))
            .set((
                ie::locked_until.eq(Utc::now() + after),
                ie::last_error.eq(reason),
                ie::early_retries.eq(ie::early_retries + 1),
            ))
            .execute(&mut conn)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }
}

#[async_trait]
impl TelemetryRepo for Db {
    async fn record_uplink(&self, u: Uplink) -> Result<Option<MeterId>, DomainError> {
        let mut conn = self.conn().await?;
        let result = conn
            .transaction(async |c| {
                // CALIN meters are provisioned with their 11-digit serial zero-padded to a
                // 16-digit DevEUI; one heard under another DevEUI has it recorded.
                let serial = u
                    .dev_eui
                    .strip_prefix("00000")
                    .filter(|s| s.len() == 11)
                    .unwrap_or("");
                let meter: Option<(i64, Option<i64>)> = meters::table
                    .filter(
                        meters::lorawan_dev_eui.eq(&u.dev_eui).or(meters::lorawan_dev_eui
                            .is_null()
                            .and(meters::external_reference.eq(serial))),
                    )
                    .filter(meters::deleted_at.is_null())
                    .select((meters::id, meters::grid_id))
                    .for_update()
                    .first(c)
                    .await
                    .optional()?;
                let Some((id, grid)) = meter else { return Ok::<_, StoreError>(None) };
                // Out-of-order events never move "last seen" backwards.
                diesel::update(meters::table.find(id))
                    .set((
                        meters::last_seen_at.eq(diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>>("GREATEST(last_seen_at, ")
                            .bind::<diesel::sql_types::Timestamptz, _>(u.seen_at)
                            .sql(")")),
                        meters::signal_rssi.eq(u.rssi),
                        meters::signal_snr.eq(u.snr),
                        meters::observed_at.eq(Utc::now()),
                        meters::updated_at.eq(Utc::now()),
                    ))
                    .execute(c)
                    .await?;
                if !u.gateways.is_empty() {
                    diesel::update(
                        dcus::table
                            .filter(dcus::external_system.eq("CHIRPSTACK"))
                            .filter(dcus::external_reference.eq_any(&u.gateways))
                            .filter(dcus::deleted_at.is_null()),
                    )
                    .set((
                        dcus::last_seen_at.eq(u.seen_at),
                        dcus::last_online_at.eq(u.seen_at),
                        dcus::is_online.eq(true),
                        dcus::updated_at.eq(Utc::now()),
                    ))
                    .execute(c)
                    .await?;
                }
                if let Some(grid) = grid {
                    let event = LiveEvent {
                        grid_id: GridId(grid),
                        kind: EventKind::Meter,
                        operation: Operation::Update,
                        data: serde_json::json!({
                            "id": id, "last_seen_at": u.seen_at, "signal_rssi": u.rssi, "signal_snr": u.snr,
                        }),
                    };
                    crate::events::publish(c, &event).await?;
                }
                Ok(Some(MeterId(id)))
            })
            .await?;
        Ok(result)
    }
}
