//! The Prometheus recorder is process-global; it is installed once however many apps start.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the recorder on first use; `None` if another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    metrics::describe_counter!(
        "tiamat_http_requests_total",
        "HTTP requests by route, method and status"
    );
    metrics::describe_histogram!(
        "tiamat_http_request_duration_seconds",
        "HTTP request latency by route"
    );
    metrics::describe_counter!(
        "tiamat_auth_failures_total",
        "Rejected credentials by reason"
    );
    metrics::describe_gauge!(
        "tiamat_db_pool_connections",
        "Database pool connections by state"
    );
    metrics::describe_counter!(
        "tiamat_integration_calls_total",
        "Vendor calls by vendor, operation and outcome"
    );
}
