//! Prometheus exposition of the request figures (`--metrics-listen ADDR`, off by
//! default): the `metrics` facade fed by [`crate::rpc::stats::Stats::record`] on both
//! transports, rendered by `metrics-exporter-prometheus` at `http://ADDR/metrics` in the
//! Prometheus text format (<https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! Series:
//! - `quarry_requests_total{method, outcome}`: answered requests; `outcome` is `ok` or
//!   the error kind (JSON-RPC `data.kind`, gRPC `ErrorInfo` reason).
//! - `quarry_request_duration_seconds{method}`: a histogram of the time from reading a
//!   request to its answer (a gRPC stream: to its last message), seconds.
//! - `quarry_overloaded_total`: requests refused because the queue was full.
//!
//! `method` is the JSON-RPC method name (`search`) or the gRPC full method name
//! (`quarry.v1.Quarry/Search`). Until the exporter is installed, nothing is recorded and
//! recording costs one atomic load.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Histogram buckets of `quarry_request_duration_seconds`, seconds (100 µs to 60 s).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Errors of [`serve`].
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address is not loopback: the exporter has no TLS and no authentication.
    #[error(
        "--metrics-listen {0} is not a loopback address: the metrics endpoint has neither TLS nor authentication, so it listens on loopback only"
    )]
    NotLoopback(SocketAddr),
    /// The exporter could not be built or bound, or a recorder is already installed.
    #[error("cannot serve metrics on {addr}: {source}")]
    Exporter {
        /// The address asked for.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: metrics_exporter_prometheus::BuildError,
    },
}

/// Installs the Prometheus recorder and serves `/metrics` on `addr` (loopback only) on
/// the current tokio runtime.
///
/// Errors: [`MetricsError`].
pub fn serve(addr: SocketAddr) -> Result<(), MetricsError> {
    if !addr.ip().is_loopback() {
        return Err(MetricsError::NotLoopback(addr));
    }
    let exporter = |source| MetricsError::Exporter { addr, source };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full("quarry_request_duration_seconds".into()),
            BUCKETS,
        )
        .map_err(exporter)?
        .install()
        .map_err(exporter)?;
    metrics::describe_counter!(
        "quarry_requests_total",
        "Requests answered, by method and outcome (ok or the error kind)."
    );
    metrics::describe_histogram!(
        "quarry_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from reading a request to its answer, by method."
    );
    metrics::describe_counter!(
        "quarry_overloaded_total",
        "Requests refused because the queue was full."
    );
    ENABLED.store(true, Ordering::Release);
    tracing::info!(%addr, "Prometheus metrics at /metrics");
    Ok(())
}

/// Records one answered request (called by `Stats::record`).
pub(crate) fn observe(method: &str, outcome: Result<(), &str>, latency: Duration) {
    if !ENABLED.load(Ordering::Acquire) {
        return;
    }
    let outcome = match outcome {
        Ok(()) => "ok".to_owned(),
        Err(kind) => kind.to_owned(),
    };
    metrics::counter!("quarry_requests_total", "method" => method.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("quarry_request_duration_seconds", "method" => method.to_owned())
        .record(latency.as_secs_f64());
}

/// Counts a refusal for a full queue.
pub(crate) fn refused() {
    if ENABLED.load(Ordering::Acquire) {
        metrics::counter!("quarry_overloaded_total").increment(1);
    }
}
