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
use payments::payouts::{PayoutService, TransferWebhook};
use payments::refunds::{NoticeOutcome, ProviderRefundService, RefundNotice};

/// What became of one Flutterwave event (recorded on its inbox row); `Err` retries it later.
pub async fn handle(
    checkout: &CheckoutService,
    payouts: Option<&PayoutService>,
    refunds: Option<&ProviderRefundService>,
    e: &ClaimedEvent,
) -> Result<String, String> {
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
        WebhookEvent::TransferCompleted {
            transfer_id,
            reference,
            ..
        } => {
            let Some(payouts) = payouts else {
                return Ok(format!("transfer {transfer_id}: no payouts here; recorded"));
            };
            // The body only names the transfer: its outcome is read back from the provider,
            // with the account of the organization whose payout it is.
            let done = payouts
                .on_transfer_webhook(&transfer_id, reference.as_deref())
                .await
                .map_err(|err| err.to_string())?;
            Ok(match done {
                TransferWebhook::NoPayout => {
                    format!("transfer {transfer_id} is for no PROCESSING payout of ours")
                }
                TransferWebhook::UnknownAtProvider { payout } => format!(
                    "payout {payout}: transfer {transfer_id} is unknown to the provider; \
                     the periodic read-back decides"
                ),
                TransferWebhook::Settled { payout, succeeded } => format!(
                    "payout {payout}: transfer {transfer_id} {}",
                    if succeeded { "succeeded" } else { "failed" }
                ),
                TransferWebhook::AlreadySettled { payout } => {
                    format!("payout {payout}: already settled")
                }
            })
        }
        WebhookEvent::RefundCompleted {
            refund_id,
            transaction_id,
            amount,
            ..
        } => {
            let Some(refunds) = refunds else {
                return Ok("refund.completed: no provider refunds here; recorded".into());
            };
            let notice = RefundNotice {
                provider: "FLUTTERWAVE".into(),
                provider_refund_id: refund_id,
                provider_transaction_id: transaction_id,
                amount,
            };
            let outcome = refunds
                .on_refund_notice(&notice)
                .await
                .map_err(|err| err.to_string())?;
            Ok(refund_notice_outcome(&notice, outcome))
        }
        WebhookEvent::Other { event } => Ok(format!("{event}: recorded")),
    }
}

/// Counts a refund notice's outcome; the text is recorded on its inbox row.
fn refund_notice_outcome(notice: &RefundNotice, outcome: NoticeOutcome) -> String {
    let named = notice
        .provider_refund_id
        .as_deref()
        .map(|id| format!("refund {id}"))
        .or_else(|| {
            notice
                .provider_transaction_id
                .as_deref()
                .map(|tx| format!("a refund of payment {tx}"))
        })
        .unwrap_or_else(|| "a refund".into());
    let (label, text) = match outcome {
        NoticeOutcome::Unknown => {
            tracing::warn!(
                refund = notice.provider_refund_id.as_deref(),
                transaction = notice.provider_transaction_id.as_deref(),
                "refund webhook for no provider refund of ours; ignored"
            );
            ("unknown", format!("{named} is no refund of ours; ignored"))
        }
        NoticeOutcome::NotSent { order } => (
            "not_sent",
            format!("{named}: order {order}'s refund is not sent yet; the refund worker adopts it"),
        ),
        NoticeOutcome::AlreadySettled { order, status } => (
            "already_settled",
            format!(
                "{named}: order {order}'s refund is already {}",
                status.as_str()
            ),
        ),
        NoticeOutcome::StillPending { order } => (
            "still_pending",
            format!("{named}: order {order}'s refund is still pending at the provider"),
        ),
        NoticeOutcome::Settled { order, status } => (
            "settled",
            format!(
                "{named}: order {order}'s refund {} (read back)",
                status.as_str()
            ),
        ),
    };
    metrics::counter!("tiamat_provider_refund_webhooks_total", "outcome" => label).increment(1);
    text
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

/// Reads back the transfers of PROCESSING payouts every `every` (a transfer call without an
/// answer may have paid, and a webhook may be lost); one never made is given back `grace` after
/// it started. Every instance may run it: each settlement is a compare-and-set. Errors are
/// logged, counted and retried on the next round.
pub fn spawn_payout_read_back(
    payouts: PayoutService,
    grace: Duration,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        loop {
            match payouts.read_back_transfers(Utc::now(), grace).await {
                Ok(pass) => {
                    if pass.settled > 0 {
                        metrics::counter!("tiamat_payouts_read_back_settled_total")
                            .increment(pass.settled as u64);
                        tracing::info!(
                            settled = pass.settled,
                            "payout transfers settled by read-back"
                        );
                    }
                }
                Err(error) => {
                    metrics::counter!("tiamat_payout_read_back_errors_total").increment(1);
                    tracing::warn!(%error, "payout read-back failed; retrying next round");
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}
