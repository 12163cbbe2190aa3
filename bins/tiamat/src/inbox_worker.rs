//! Processes stored integration events. Several workers (one per instance) share the inbox:
//! rows are leased with `FOR UPDATE SKIP LOCKED`, so none is processed twice, and a crashed
//! worker's lease runs out so another continues.

use std::time::Duration;

use chirpstack::{Detail, Encoding};
use grids::telemetry::{ClaimedEvent, Inbox, TelemetryRepo, Uplink};

/// How long a claimed event is reserved for the worker that claimed it.
const LEASE_SECS: i64 = 30;
const BATCH: i64 = 100;
/// After this many failed attempts an event is parked as failed (kept for inspection). Retries
/// of an event that came too early do not count.
const MAX_ATTEMPTS: i32 = 10;

/// After a failed attempt: the wait before the next one, and whether to give up instead. Only
/// errors count: an early `txack` retried ten times in its window still has all its error
/// retries left.
fn after_error(e: &ClaimedEvent) -> (chrono::Duration, bool) {
    let errors = e.attempts.saturating_sub(e.early_retries).max(1);
    let backoff = chrono::Duration::seconds(5 * i64::from(errors.clamp(1, 12)));
    (backoff, errors >= MAX_ATTEMPTS)
}

/// What became of one event.
enum Handled {
    /// Done; the outcome is recorded on its row.
    Done(String),
    /// Came before what it is about (a `txack` before its hand-over is recorded): processed again
    /// after `after`, without counting as an error.
    Early {
        reason: String,
        after: chrono::Duration,
    },
}

impl From<String> for Handled {
    fn from(outcome: String) -> Self {
        Handled::Done(outcome)
    }
}

/// Turns the delivery service's verdict on a `txack`/`ack` into what the inbox does with it.
fn queue_item_outcome(
    event: &str,
    queue_item_id: &str,
    applied: &str,
    outcome: meters::EventOutcome,
) -> Handled {
    use meters::EventOutcome;
    match outcome {
        EventOutcome::Applied => Handled::Done(applied.into()),
        EventOutcome::AlreadyPast => Handled::Done(format!(
            "{event} for nothing on the wire (late or duplicate)"
        )),
        EventOutcome::NotYetHandedOver { retry_in } => Handled::Early {
            reason: format!("{event} before the hand-over of {queue_item_id} was recorded"),
            after: retry_in,
        },
        EventOutcome::Unmatched => {
            metrics::counter!("tiamat_inbox_unmatched_total", "event" => event.to_owned())
                .increment(1);
            tracing::warn!(
                event,
                queue_item_id,
                "no row took this queue item id within the retry window; dropped"
            );
            Handled::Done(format!(
                "{event} unmatched: no hand-over recorded {queue_item_id} in time"
            ))
        }
    }
}

/// What became of one event (recorded on its row).
async fn handle(
    telemetry: &dyn TelemetryRepo,
    delivery: Option<&meters::DeliveryService>,
    e: &ClaimedEvent,
) -> Result<Handled, String> {
    let body = serde_json::to_vec(&e.payload).map_err(|err| err.to_string())?;
    let parsed =
        chirpstack::parse(&e.event_type, Encoding::Json, &body).map_err(|err| err.to_string())?;
    let receipt = meters::EventReceipt {
        received_at: e.received_at,
        attempt: u32::try_from(e.attempts).unwrap_or(1),
    };
    match parsed.detail {
        Detail::Up {
            best_rssi,
            best_snr,
            gateways,
            f_port,
            data,
            ..
        } => {
            let Some(dev_eui) = parsed.dev_eui else {
                return Ok(Handled::Done("uplink without a device".into()));
            };
            let uplink = Uplink {
                dev_eui,
                seen_at: parsed.time.unwrap_or_else(chrono::Utc::now),
                rssi: best_rssi,
                snr: best_snr,
                gateways,
            };
            let at = uplink.seen_at;
            let Some(meter) = telemetry
                .record_uplink(uplink)
                .await
                .map_err(|err| err.to_string())?
            else {
                return Ok(Handled::Done("no meter has this DevEUI".into()));
            };
            match delivery {
                Some(d) if f_port == lorawan::F_PORT && !data.is_empty() => {
                    let outcome = d
                        .on_uplink(meter, &data, at)
                        .await
                        .map_err(|err| err.to_string())?;
                    Ok(Handled::Done(format!("meter {meter} seen; {outcome}")))
                }
                _ => Ok(Handled::Done(format!("meter {meter} seen"))),
            }
        }
        Detail::TxAck { queue_item_id, .. } => match delivery {
            Some(d) => {
                let outcome = d
                    .on_transmitted(&queue_item_id, receipt)
                    .await
                    .map_err(|err| err.to_string())?;
                Ok(queue_item_outcome(
                    "txack",
                    &queue_item_id,
                    "transmitted",
                    outcome,
                ))
            }
            None => Ok(Handled::Done("txack: no delivery pipeline".into())),
        },
        Detail::Ack {
            queue_item_id,
            acknowledged,
        } => match delivery {
            Some(d) => {
                let outcome = d
                    .on_acknowledgement(&queue_item_id, acknowledged, receipt)
                    .await
                    .map_err(|err| err.to_string())?;
                let applied = match acknowledged {
                    true => "acknowledged",
                    false => "not acknowledged: triaged",
                };
                Ok(queue_item_outcome("ack", &queue_item_id, applied, outcome))
            }
            None => Ok(Handled::Done("ack: no delivery pipeline".into())),
        },
        // Kept and visible in the inbox; nothing to act on.
        Detail::Join | Detail::Log { .. } | Detail::Status { .. } | Detail::Location => {
            Ok(Handled::Done(format!("{}: recorded", e.event_type)))
        }
    }
}

/// Claims and processes one batch; returns how many events it handled.
pub async fn run_once(
    inbox: &dyn Inbox,
    telemetry: &dyn TelemetryRepo,
    delivery: Option<&meters::DeliveryService>,
) -> Result<usize, kernel::DomainError> {
    run_once_with_payments(inbox, telemetry, delivery, None, None, None).await
}

/// [`run_once`], with Flutterwave events handled by `checkout` (without it they wait); transfer
/// events settle `payouts` and refund events `refunds`.
pub async fn run_once_with_payments(
    inbox: &dyn Inbox,
    telemetry: &dyn TelemetryRepo,
    delivery: Option<&meters::DeliveryService>,
    checkout: Option<&payments::checkout::CheckoutService>,
    payouts: Option<&payments::payouts::PayoutService>,
    refunds: Option<&payments::refunds::ProviderRefundService>,
) -> Result<usize, kernel::DomainError> {
    let claimed = inbox.claim(BATCH, LEASE_SECS).await?;
    for e in &claimed {
        let (source, handled) = match (e.source.as_str(), checkout) {
            ("flutterwave", Some(checkout)) => (
                "flutterwave",
                crate::payment_worker::handle(checkout, payouts, refunds, e)
                    .await
                    .map(Handled::from),
            ),
            ("flutterwave", None) => ("flutterwave", Err("no payment pipeline here".into())),
            _ => ("chirpstack", handle(telemetry, delivery, e).await),
        };
        match handled {
            Ok(Handled::Done(outcome)) => inbox.complete(e.id, outcome).await?,
            Ok(Handled::Early { reason, after }) => {
                metrics::counter!("tiamat_inbox_early_retries_total", "source" => source)
                    .increment(1);
                tracing::debug!(event = e.id, attempts = e.attempts, %reason, "inbound event too early; retrying");
                inbox.retry_early(e.id, reason, after).await?;
            }
            Err(error) => {
                metrics::counter!("tiamat_inbox_errors_total", "source" => source).increment(1);
                tracing::warn!(event = e.id, attempts = e.attempts, early_retries = e.early_retries, %error, "inbound event failed; will retry");
                let (backoff, give_up) = after_error(e);
                inbox.retry_later(e.id, error, backoff, give_up).await?;
            }
        }
    }
    metrics::counter!("tiamat_inbox_processed_total", "source" => "chirpstack")
        .increment(claimed.len() as u64);
    Ok(claimed.len())
}

/// Runs forever: drains the inbox, then polls while it is empty. Errors are logged, counted and
/// retried; the loop never ends on one.
pub fn spawn(
    app: &crate::App,
    delivery: Option<meters::DeliveryService>,
    poll: Duration,
) -> tokio::task::JoinHandle<()> {
    let inbox = app.state.inbox.clone();
    let db = app.db.clone();
    let wake = app.state.wakes.inbox.clone();
    let checkout = app.state.checkout.clone();
    let payouts = app.state.services.payouts.clone();
    let refunds = app.state.services.provider_refunds.clone();
    tokio::spawn(async move {
        loop {
            match run_once_with_payments(
                inbox.as_ref(),
                &db,
                delivery.as_ref(),
                Some(&checkout),
                Some(&payouts),
                Some(&refunds),
            )
            .await
            {
                Ok(n) if n > 0 => continue,
                Ok(_) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(poll) => {}
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(attempts: i32, early_retries: i32) -> ClaimedEvent {
        ClaimedEvent {
            id: 1,
            source: "chirpstack".into(),
            event_type: "txack".into(),
            dev_eui: None,
            payload: serde_json::json!({}),
            attempts,
            early_retries,
            received_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn only_errors_use_up_the_attempt_budget() {
        // The first error after ten early retries: the first error backoff, not parked.
        assert_eq!(
            after_error(&claimed(11, 10)),
            (chrono::Duration::seconds(5), false)
        );
        // Nine errors after them: still retried; the tenth error parks it.
        assert_eq!(
            after_error(&claimed(19, 10)),
            (chrono::Duration::seconds(45), false)
        );
        assert!(after_error(&claimed(20, 10)).1);
        // Without early retries the budget is as before.
        assert_eq!(
            after_error(&claimed(1, 0)),
            (chrono::Duration::seconds(5), false)
        );
        assert!(!after_error(&claimed(9, 0)).1);
        assert!(after_error(&claimed(10, 0)).1);
        assert_eq!(
            after_error(&claimed(30, 0)),
            (chrono::Duration::seconds(60), true)
        );
    }
}
