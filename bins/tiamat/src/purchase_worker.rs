//! Turns completed meter top-ups into TOP_UP interactions and follows them: about once a second,
//! completed ENERGY_TOPUP orders without a purchase get one (priced, and its TOP_UP created
//! through the normal intake), purchases whose TOP_UP finished become DELIVERED or FAILED, and
//! claims abandoned mid-creation are failed for an operator to re-deliver or refund. Instances
//! may run it side by side: the order's unique purchase and compare-and-set transitions decide.

use std::time::Duration;

use payments::purchase::PurchaseService;

/// How often the worker looks.
const TICK: Duration = Duration::from_secs(1);

/// One pass; per-order errors are logged and counted (the order is looked at again next pass).
pub async fn run_once(purchases: &PurchaseService) -> Result<usize, kernel::DomainError> {
    let report = purchases.run_once(chrono::Utc::now()).await?;
    for (order, error) in &report.errors {
        metrics::counter!("tiamat_purchase_errors_total", "stage" => "open").increment(1);
        tracing::warn!(order = order.get(), %error, "could not open a meter purchase; will retry");
    }
    for (purchase, error) in &report.settle_errors {
        metrics::counter!("tiamat_purchase_errors_total", "stage" => "settle").increment(1);
        tracing::warn!(purchase = purchase.get(), %error, "could not record a finished delivery; will retry");
    }
    metrics::counter!("tiamat_purchases_opened_total").increment(report.opened as u64);
    metrics::counter!("tiamat_purchases_delivered_total").increment(report.delivered as u64);
    metrics::counter!("tiamat_purchases_failed_total").increment(report.failed as u64);
    Ok(report.opened + report.delivered + report.failed)
}

/// Runs forever; never ends on an error.
pub fn spawn(app: &crate::App) -> tokio::task::JoinHandle<()> {
    let purchases = app.state.services.purchases.clone();
    tokio::spawn(async move {
        loop {
            match run_once(&purchases).await {
                Ok(_) => tokio::time::sleep(TICK).await,
                Err(e) => {
                    metrics::counter!("tiamat_purchase_errors_total", "stage" => "pass")
                        .increment(1);
                    tracing::warn!(error = %e, "purchase worker pass failed; retrying");
                    tokio::time::sleep(TICK * 2).await;
                }
            }
        }
    })
}
