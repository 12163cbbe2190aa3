//! Processes stored integration events. Several workers (one per instance) share the inbox:
//! rows are leased with `FOR UPDATE SKIP LOCKED`, so none is processed twice, and a crashed
//! worker's lease runs out so another continues.

use std::time::Duration;

use chirpstack::{Detail, Encoding};
use grids::telemetry::{ClaimedEvent, Inbox, TelemetryRepo, Uplink};

/// How long a claimed event is reserved for the worker that claimed it.
const LEASE_SECS: i64 = 30;
const BATCH: i64 = 100;
/// After this many failed attempts an event is parked as failed (kept for inspection).
const MAX_ATTEMPTS: i32 = 10;

/// What became of one event (recorded on its row).
async fn handle(telemetry: &dyn TelemetryRepo, e: &ClaimedEvent) -> Result<String, String> {
    let body = serde_json::to_vec(&e.payload).map_err(|err| err.to_string())?;
    let parsed =
        chirpstack::parse(&e.event_type, Encoding::Json, &body).map_err(|err| err.to_string())?;
    match parsed.detail {
        Detail::Up {
            best_rssi,
            best_snr,
            gateways,
            ..
        } => {
            let Some(dev_eui) = parsed.dev_eui else {
                return Ok("uplink without a device".into());
            };
            let uplink = Uplink {
                dev_eui,
                seen_at: parsed.time.unwrap_or_else(chrono::Utc::now),
                rssi: best_rssi,
                snr: best_snr,
                gateways,
            };
            match telemetry
                .record_uplink(uplink)
                .await
                .map_err(|err| err.to_string())?
            {
                Some(meter) => Ok(format!("meter {meter} seen")),
                None => Ok("no meter has this DevEUI".into()),
            }
        }
        // Downlink stages (txack, ack, log) move meter commands forward once the command pipeline
        // exists; until then they are kept, processed and visible in the inbox.
        Detail::Join
        | Detail::Ack { .. }
        | Detail::TxAck { .. }
        | Detail::Log { .. }
        | Detail::Status { .. }
        | Detail::Location => Ok(format!("{}: recorded", e.event_type)),
    }
}

/// Claims and processes one batch; returns how many events it handled.
pub async fn run_once(
    inbox: &dyn Inbox,
    telemetry: &dyn TelemetryRepo,
) -> Result<usize, kernel::DomainError> {
    let claimed = inbox.claim(BATCH, LEASE_SECS).await?;
    for e in &claimed {
        match handle(telemetry, e).await {
            Ok(outcome) => inbox.complete(e.id, outcome).await?,
            Err(error) => {
                metrics::counter!("tiamat_inbox_errors_total", "source" => "chirpstack")
                    .increment(1);
                tracing::warn!(event = e.id, attempts = e.attempts, %error, "inbound event failed; will retry");
                let backoff = 5 * i64::from(e.attempts.clamp(1, 12));
                inbox
                    .retry_later(e.id, error, backoff, e.attempts >= MAX_ATTEMPTS)
                    .await?;
            }
        }
    }
    metrics::counter!("tiamat_inbox_processed_total", "source" => "chirpstack")
        .increment(claimed.len() as u64);
    Ok(claimed.len())
}

/// Runs forever: drains the inbox, then polls while it is empty. Errors are logged, counted and
/// retried; the loop never ends on one.
pub fn spawn(app: &crate::App) -> tokio::task::JoinHandle<()> {
    let inbox = app.state.inbox.clone();
    let db = app.db.clone();
    tokio::spawn(async move {
        loop {
            match run_once(inbox.as_ref(), &db).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                Err(e) => {
                    metrics::counter!("tiamat_inbox_errors_total", "source" => "worker")
                        .increment(1);
                    tracing::warn!(error = %e, "inbox worker could not claim events; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    })
}
