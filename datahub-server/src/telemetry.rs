//! Prometheus metrics: the recorder's settings, and the counters and gauges fed from the core.
//!
//! What `/metrics` shows (every label value comes from a closed set: never a connection or user
//! name, a host, a path parameter or a secret, SECURITY.md S8):
//! - `datahub_http_requests_total{method, route, status}` and
//!   `datahub_http_request_duration_seconds{method, route}` (a histogram with
//!   [`REQUEST_BUCKETS`]): every request, by the middleware of [`crate::app`]; `route` is the
//!   route's pattern (`/api/v1/connections/{id}`) or `unmatched`, `method` one of the standard
//!   methods or `other`.
//! - `datahub_checks_total{outcome}`: the monitor's checks since start, `outcome` one of `ok`,
//!   `failed`, `timeout`; `datahub_checks_skipped_total`: checks skipped because the previous
//!   one was still running; `datahub_monitor_connections`: connections monitored now.
//! - Replicas sharing a store (issue 16): `datahub_monitor_live_replicas`: the monitors this one
//!   saw live at its last heartbeat, itself included (1 alone and on SQLite);
//!   `datahub_checks_not_home_total`: due checks left to another live monitor's share (no store
//!   call); `datahub_checks_lease_lost_total`: due checks another process had claimed;
//!   `datahub_checks_deferred_total`: first checks after a save not admitted (the saving user's
//!   test budget was spent); `datahub_monitor_store_errors_total`: monitor store calls that
//!   failed (retried on the next round). Summed over the replicas, `not_home` is about
//!   `(n - 1) ×` the checks made: a replica whose `not_home` stays 0 while others run sees nobody.
//! - `datahub_connections{status}`: saved connections by health status (`unknown`, `healthy`,
//!   `degraded`, `down`).
//! - `datahub_tests_total{kind, outcome}`: connection tests run through the API, `kind` `draft`
//!   or `saved`, `outcome` `ok` or the failure kind ([`record_test`]).
//!
//! The monitor and store figures are refreshed by [`refresh`], which [`spawn_refresh`] runs
//! periodically (the server does, see [`crate::startup::serve`]); the monitor's counters are
//! also read at every scrape of `/metrics` ([`record_monitor`]), the store's figures are not.

use std::time::Duration;

use datahub_core::model::{FailureKind, HealthStatus};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use tokio::task::JoinHandle;

use crate::state::AppState;

/// The upper bounds, in seconds, of the request latency histogram's buckets.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often the server refreshes the figures read from the monitor and the store.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(15);

/// The recorder's settings: request latencies as histograms with [`REQUEST_BUCKETS`].
///
/// # Errors
/// Never in practice (only for an empty bucket list).
pub fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Full("datahub_http_request_duration_seconds".to_owned()),
        REQUEST_BUCKETS,
    )
}

/// The `kind` label of a test of a connection not saved yet (including a save with
/// `test_first`).
pub const DRAFT: &str = "draft";
/// The `kind` label of a test of a saved connection.
pub const SAVED: &str = "saved";

/// Counts one connection test run through the API: `kind` is [`DRAFT`] or [`SAVED`]; `failure`
/// `None` for a success, else its failure kind.
pub fn record_test(kind: &'static str, failure: Option<FailureKind>) {
    let outcome = failure.map_or("ok", FailureKind::as_str);
    metrics::counter!("datahub_tests_total", "kind" => kind, "outcome" => outcome).increment(1);
}

/// Reads the monitor's counters into the metrics. It only reads memory, so `/metrics` runs it
/// at every scrape: the checks shown are those finished until then, as a scrape of each replica
/// sharing a store must add up to the stored history.
pub fn record_monitor(state: &AppState) {
    if let Some(stats) = state.monitor_stats() {
        let failed = stats.failures.saturating_sub(stats.timeouts);
        let ok = stats.checks.saturating_sub(stats.failures);
        for (outcome, count) in [("ok", ok), ("failed", failed), ("timeout", stats.timeouts)] {
            // `absolute` keeps the larger value: racing scrapes never move a counter back.
            metrics::counter!("datahub_checks_total", "outcome" => outcome).absolute(count);
        }
        metrics::counter!("datahub_checks_skipped_total").absolute(stats.skipped);
        metrics::gauge!("datahub_monitor_connections").set(stats.connections as f64);
        metrics::gauge!("datahub_monitor_live_replicas").set(stats.live_monitors as f64);
        metrics::counter!("datahub_checks_not_home_total").absolute(stats.not_home);
        metrics::counter!("datahub_checks_lease_lost_total").absolute(stats.leases_lost);
        metrics::counter!("datahub_checks_deferred_total").absolute(stats.deferred);
        metrics::counter!("datahub_monitor_store_errors_total").absolute(stats.store_errors);
    }
}

/// Reads the monitor's counters ([`record_monitor`]) and the connections' statuses into the
/// metrics, and runs the recorder's upkeep. A store failure leaves the connection gauges as
/// they were.
pub async fn refresh(state: &AppState) {
    record_monitor(state);
    match state.hub().status_counts().await {
        Ok(counts) => {
            for (status, count) in counts {
                metrics::gauge!("datahub_connections", "status" => HealthStatus::as_str(status))
                    .set(count as f64);
            }
        }
        Err(e) => tracing::warn!(
            kind = e.kind().as_str(),
            "metrics could not count the connections by status"
        ),
    }
    if let Some(handle) = state.metrics() {
        handle.run_upkeep();
    }
}

/// Runs [`refresh`] now and then every `every` until the state's shutdown token is cancelled.
pub fn spawn_refresh(state: AppState, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = state.shutdown().cancelled() => return,
                _ = ticks.tick() => refresh(&state).await,
            }
        }
    })
}
