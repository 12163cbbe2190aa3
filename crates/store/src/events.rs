//! Live events travel between instances through PostgreSQL `NOTIFY`, sent inside the transaction
//! that made the change: subscribers hear of a change only once it is committed.

use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use grids::events::LiveEvent;

use crate::Result;

/// The channel every instance listens on.
pub const CHANNEL: &str = "tiamat_live";

/// Revoked API keys: the payload is the key's prefix, or `*` for every key of a deleted
/// organization. Sent inside the revoking transaction like live events.
pub const AUTH_CHANNEL: &str = "tiamat_auth";

pub(crate) async fn publish_key_revoked(conn: &mut AsyncPgConnection, prefix: &str) -> Result<()> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(AUTH_CHANNEL)
        .bind::<Text, _>(prefix)
        .execute(conn)
        .await?;
    Ok(())
}

/// NOTIFY payloads must stay under 8000 bytes; bigger events carry only the ids.
const MAX_PAYLOAD: usize = 7900;

pub(crate) async fn publish(conn: &mut AsyncPgConnection, event: &LiveEvent) -> Result<()> {
    let mut payload = serde_json::to_string(event).unwrap_or_default();
    if payload.len() > MAX_PAYLOAD {
        let slim = LiveEvent {
            data: serde_json::json!({ "id": event.data.get("id"), "truncated": true }),
            ..event.clone()
        };
        payload = serde_json::to_string(&slim).unwrap_or_default();
    }
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(CHANNEL)
        .bind::<Text, _>(payload)
        .execute(conn)
        .await?;
    Ok(())
}
