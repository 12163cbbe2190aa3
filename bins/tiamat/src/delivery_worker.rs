//! Runs the delivery pipeline: a sender that claims due downlinks (per-grid pacing, leases) and a
//! reaper that acts on stage deadlines and finished verifications. Several instances may run
//! them at once: claims use `SKIP LOCKED` and every write is a compare-and-set.

use std::sync::Arc;
use std::time::Duration;

use meters::DeliveryService;
use tokio::sync::Notify;

/// Grids served per claim.
const LANES_PER_PASS: i64 = 64;
/// Rows acted on per reaper pass.
const REAP_BATCH: i64 = 500;

/// How often the loops look for work when idle.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    pub sender: Duration,
    pub reaper: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Self {
            sender: Duration::from_millis(100),
            reaper: Duration::from_secs(1),
        }
    }
}

/// Starts the sender and the reaper. Errors are logged and counted; the loops never end on one.
pub fn spawn(
    service: DeliveryService,
    polling: Polling,
    wake: Arc<Notify>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let sender = {
        let service = service.clone();
        tokio::spawn(async move {
            loop {
                match service.send_due(LANES_PER_PASS).await {
                    Ok(report) => {
                        metrics::counter!("tiamat_downlinks_sent_total")
                            .increment(report.sent as u64);
                        metrics::counter!("tiamat_downlinks_failed_total")
                            .increment(report.failed as u64);
                        if report.sent + report.failed > 0 {
                            // More lanes may be due; the pacing keeps each grid at its rate.
                            continue;
                        }
                    }
                    Err(e) => {
                        metrics::counter!("tiamat_delivery_errors_total", "loop" => "sender")
                            .increment(1);
                        tracing::warn!(error = %e, "delivery sender pass failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(polling.sender) => {}
                }
            }
        })
    };
    let reaper = tokio::spawn(async move {
        loop {
            match service.reap(REAP_BATCH).await {
                Ok(n) => {
                    metrics::counter!("tiamat_delivery_timeouts_total").increment(n as u64);
                    if n as i64 >= REAP_BATCH {
                        continue;
                    }
                }
                Err(e) => {
                    metrics::counter!("tiamat_delivery_errors_total", "loop" => "reaper")
                        .increment(1);
                    tracing::warn!(error = %e, "delivery reaper pass failed; retrying");
                }
            }
            tokio::time::sleep(polling.reaper).await;
        }
    });
    vec![sender, reaper]
}

/// Runs the reconciler every `every` (one pass at a time across instances). Errors are logged
/// and counted.
pub fn spawn_reconciler(
    reconciler: meters::Reconciler,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match reconciler.run_once().await {
                Ok(r) if r.ran => {
                    metrics::counter!("tiamat_reconciler_passes_total").increment(1);
                    metrics::counter!("tiamat_reconciler_commands_total", "mode" => "on")
                        .increment(r.corrected as u64);
                    metrics::counter!("tiamat_reconciler_commands_total", "mode" => "shadow")
                        .increment(r.reported as u64);
                    metrics::counter!("tiamat_reconciler_recovered_total")
                        .increment((r.resumed + r.superseded + r.expired) as u64);
                    metrics::counter!("tiamat_delivery_errors_total", "loop" => "shadow_report")
                        .increment(r.shadow_report_errors as u64);
                    if r.corrected + r.resumed + r.superseded + r.expired + r.aborted > 0 {
                        tracing::info!(report = ?r, "reconciler pass");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    metrics::counter!("tiamat_delivery_errors_total", "loop" => "reconciler")
                        .increment(1);
                    tracing::warn!(error = %e, "reconciler pass failed; retrying next round");
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}
