//! Fires due directive batch rules. Every instance runs it: a fire is recorded under a unique
//! `(rule, local date and time)` key, so when two instances find the same rule due, one starts
//! the execution and the other is told it already happened.

use std::time::Duration;

use chrono::{DateTime, Utc};
use meters::batches::BatchService;

/// How often due rules are looked for. Rules are minute-precise; a fire is caught up to
/// `meters::batches::CATCH_UP` late.
pub const TICK: Duration = Duration::from_secs(20);

/// One tick: fires what is due at `now`, logging and counting every outcome. Answers how many
/// executions it started.
pub async fn run_once(
    batches: &BatchService,
    now: DateTime<Utc>,
) -> Result<usize, kernel::DomainError> {
    let outcomes = batches.fire_due(now).await?;
    let mut started = 0;
    for o in outcomes {
        let fire = o.fire_key.map(|k| k.to_string()).unwrap_or_default();
        match o.result {
            Ok(Some(execution)) => {
                started += 1;
                metrics::counter!("tiamat_batch_fires_total", "outcome" => "started").increment(1);
                tracing::info!(rule = %o.rule, %fire, %execution, "directive batch fired");
            }
            Ok(None) => {
                metrics::counter!("tiamat_batch_fires_total", "outcome" => "already_fired")
                    .increment(1);
            }
            Err(error) => {
                metrics::counter!("tiamat_batch_scheduler_errors_total", "stage" => "fire")
                    .increment(1);
                tracing::warn!(rule = %o.rule, %fire, %error, "directive batch could not fire");
            }
        }
    }
    Ok(started)
}

/// Runs forever, one tick every [`TICK`]. Errors are logged and counted; the loop never ends on
/// one.
pub fn spawn(batches: BatchService) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(error) = run_once(&batches, Utc::now()).await {
                metrics::counter!("tiamat_batch_scheduler_errors_total", "stage" => "tick")
                    .increment(1);
                tracing::warn!(%error, "directive batch scheduler tick failed; retrying");
            }
        }
    })
}
