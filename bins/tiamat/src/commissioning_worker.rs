//! Advances commissionings: about once a second, every unfinished commissioning whose steps
//! changed gets the rules applied (release the next step, fail, or succeed). Instances share
//! the work through leases taken with `FOR UPDATE SKIP LOCKED`; the rules are idempotent, so a
//! commissioning looked at twice is harmless.

use std::time::Duration;

use meters::InstallService;

/// How often the runner looks for changed commissionings.
const TICK: Duration = Duration::from_secs(1);

/// One pass; errors of single commissionings are logged and counted (their lease runs out and a
/// later pass tries again). Answers how many were advanced.
pub async fn run_once(installs: &InstallService) -> Result<usize, kernel::DomainError> {
    let report = installs.run_once().await?;
    for (id, error) in &report.errors {
        metrics::counter!("tiamat_commissioning_errors_total", "stage" => "advance").increment(1);
        tracing::warn!(commissioning = id.get(), %error, "could not advance a commissioning; will retry");
    }
    metrics::counter!("tiamat_commissioning_advanced_total").increment(report.advanced as u64);
    Ok(report.advanced)
}

/// Runs forever; never ends on an error.
pub fn spawn(app: &crate::App) -> tokio::task::JoinHandle<()> {
    let installs = app.state.services.installs.clone();
    tokio::spawn(async move {
        loop {
            match run_once(&installs).await {
                Ok(_) => tokio::time::sleep(TICK).await,
                Err(e) => {
                    metrics::counter!("tiamat_commissioning_errors_total", "stage" => "claim")
                        .increment(1);
                    tracing::warn!(error = %e, "commissioning runner could not claim work; retrying");
                    tokio::time::sleep(TICK * 2).await;
                }
            }
        }
    })
}
