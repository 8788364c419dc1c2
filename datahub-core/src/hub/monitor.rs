//! The monitor's checks, run by the Hub: the prober through the one dialer under the current
//! target policy, as the system (no principal: the monitor acts for every saved connection and
//! its results are only ever shown through the Hub's permission checks).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Hub, secrets};
use crate::model::{FailureKind, HealthStatus};
use crate::monitor::{CheckResult, Checker, Monitor, MonitorConfig, MonitorHandle};
use crate::probe::{MAX_BUDGET, Report};
use crate::store::{ListQuery, Visibility};
use crate::{ConnectionId, Result};

/// The [`Checker`] the Hub gives the monitor: a saved connection's test.
#[derive(Debug, Clone)]
struct ProbeChecker {
    hub: Hub,
    budget: Duration,
}

#[async_trait]
impl Checker for ProbeChecker {
    async fn check(&self, id: ConnectionId) -> CheckResult {
        let row = match self.hub.store.connection(id).await {
            Ok(Some(row)) => row,
            // Deleted meanwhile, or the store failed: nothing was dialled.
            Ok(None) => return CheckResult::failure(FailureKind::Internal, 0),
            Err(e) => {
                tracing::warn!(
                    connection = %id,
                    error = %e,
                    "monitor check could not load the connection"
                );
                return CheckResult::failure(FailureKind::Internal, 0);
            }
        };
        let opened = match secrets::open(&self.hub.keyring, id, &row.secrets) {
            Ok(opened) => opened,
            Err(e) => {
                tracing::warn!(
                    connection = %id,
                    error = %e,
                    "monitor check could not open the secrets"
                );
                return CheckResult::failure(FailureKind::Internal, 0);
            }
        };
        match self.hub.run_probe(&row.spec, &opened, self.budget).await {
            Ok(report) => to_result(&report),
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "monitor check could not run");
                CheckResult::failure(FailureKind::Internal, 0)
            }
        }
    }
}

/// What the monitor needs of a report.
fn to_result(report: &Report) -> CheckResult {
    let latency_ms = report.total_ms.round().clamp(0.0, f64::from(u32::MAX)) as u32;
    let Some(failure) = &report.failure else {
        let mut result = CheckResult::success(latency_ms);
        if let Some(not_after) = report.tls.as_ref().and_then(|t| t.peer_not_after) {
            result = result.with_cert(not_after);
        }
        if let Some(server) = &report.server
            && let (Some(used), Some(max)) = (server.connections_used, server.max_connections)
        {
            result = result.with_connections(used, max);
        }
        return result;
    };
    CheckResult::failure(failure.kind, latency_ms)
}

impl Hub {
    /// Starts the health monitor over this hub's store, checking each enabled connection with
    /// the prober (budget 5 s) through the hub's dialer, under the current target policy.
    ///
    /// # Panics
    /// Outside a tokio runtime (as [`Monitor::start`]).
    pub fn start_monitor(&self, config: MonitorConfig) -> MonitorHandle {
        let checker = ProbeChecker {
            hub: self.clone(),
            budget: MAX_BUDGET,
        };
        Monitor::start(self.store.clone(), Arc::new(checker), config)
    }

    /// How many saved connections have each status, in the order of [`HealthStatus::ALL`], as
    /// the monitor last stored it (a connection whose monitoring was turned off keeps its last
    /// stored status). Counts only, over every connection, for an adapter's metrics: like the
    /// monitor it acts as the system, without a principal, and names no connection.
    ///
    /// # Errors
    /// `Store` when the store fails.
    pub async fn status_counts(&self) -> Result<Vec<(HealthStatus, u64)>> {
        let mut counts = Vec::with_capacity(HealthStatus::ALL.len());
        for status in HealthStatus::ALL {
            let query = ListQuery {
                status: Some(*status),
                per_page: 1,
                ..ListQuery::default()
            };
            let page = self
                .store
                .list_connections(&query, &Visibility::All)
                .await?;
            counts.push((*status, page.total));
        }
        Ok(counts)
    }
}
