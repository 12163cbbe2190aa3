//! Flutterwave's side of the inbox, and the sweeper of abandoned payments.
//!
//! A stored webhook only says which provider transaction to look at: the payment is verified by
//! id with Flutterwave's API and settled from that answer (never from the webhook body). A
//! provider outage leaves the event for a later attempt.

use std::time::Duration;

use chrono::Utc;
use flutterwave::webhook::{self, WebhookEvent};
use grids::telemetry::ClaimedEvent;
use payments::checkout::CheckoutService;

/// What became of one Flutterwave event (recorded on its inbox row); `Err` retries it later.
pub async fn handle(checkout: &CheckoutService, e: &ClaimedEvent) -> Result<String, String> {
    let body = serde_json::to_vec(&e.payload).map_err(|err| err.to_string())?;
    // Authenticated when it was stored; parsed again here from the stored JSON.
    let event = webhook::parse(&body).map_err(|err| err.to_string())?;
    match event {
        WebhookEvent::ChargeCompleted {
            transaction_id,
            tx_ref,
        } => checkout
            .on_charge_completed(&transaction_id, tx_ref.as_deref())
            .await
            .map_err(|err| err.to_string()),
        // Payout transfers are tracked by the payouts workflow; the event is kept for it.
        WebhookEvent::TransferCompleted {
            transfer_id,
            status,
            ..
        } => Ok(format!(
            "transfer {transfer_id} reported {}: recorded",
            status.as_deref().unwrap_or("without a status")
        )),
        WebhookEvent::Other { event } => Ok(format!("{event}: recorded")),
    }
}

/// Times out INITIALISED payments older than `abandoned_after`, every `every`. Every instance
/// may run it: the store's compare-and-set changes each order once. Errors are logged, counted
/// and retried on the next round.
pub fn spawn_sweeper(
    checkout: CheckoutService,
    abandoned_after: Duration,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let cutoff = chrono::Duration::from_std(abandoned_after)
                .map(|d| Utc::now() - d)
                .unwrap_or_else(|_| Utc::now());
            match checkout.time_out_abandoned(cutoff).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!("tiamat_payments_timed_out_total").increment(n as u64);
                    tracing::info!(count = n, "abandoned payments timed out");
                }
                Err(error) => {
                    metrics::counter!("tiamat_payment_sweeper_errors_total").increment(1);
                    tracing::warn!(%error, "payment sweeper failed; retrying next round");
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}
