//! Sends the refunds owed at the payment provider (reversed Flutterwave payments) and follows them
//! until the provider settles them. Instances may run it side by side: refunds are claimed with
//! `FOR UPDATE SKIP LOCKED` and a lease, and every outcome is a compare-and-set.

use std::time::Duration;

use payments::refunds::{ProviderRefundService, RefundReport};

/// How often the worker looks for due refunds.
const TICK: Duration = Duration::from_secs(5);

/// One pass at `now`; outcomes are counted and failures logged.
pub async fn run_once(
    refunds: &ProviderRefundService,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RefundReport, kernel::DomainError> {
    let report = refunds.run_once(now).await?;
    if report.failed > 0 {
        metrics::counter!("tiamat_provider_refunds_failed_total").increment(report.failed as u64);
    }
    for (order, error) in &report.errors {
        metrics::counter!("tiamat_provider_refund_errors_total", "stage" => "record").increment(1);
        tracing::warn!(order = order.get(), %error, "could not record a provider refund's outcome; it is looked at again when its claim expires");
    }
    Ok(report)
}

/// Runs forever; never ends on an error.
pub fn spawn(app: &crate::App) -> tokio::task::JoinHandle<()> {
    let refunds = app.state.services.provider_refunds.clone();
    tokio::spawn(async move {
        loop {
            match run_once(&refunds, chrono::Utc::now()).await {
                Ok(_) => tokio::time::sleep(TICK).await,
                Err(e) => {
                    metrics::counter!("tiamat_provider_refund_errors_total", "stage" => "pass")
                        .increment(1);
                    tracing::warn!(error = %e, "refund worker pass failed; retrying");
                    tokio::time::sleep(TICK * 2).await;
                }
            }
        }
    })
}
