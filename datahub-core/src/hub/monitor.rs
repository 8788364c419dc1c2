//! The monitor's checks, run by the Hub: the prober through the one dialer under the current
//! target policy (cached for at most 1 s, dropped when this hub changes it: `policy.rs`), as
//! the system (no principal: the monitor acts for every saved connection and
//! its results are only ever shown through the Hub's permission checks).
//!
//! And the other way: the Hub tells the monitor it started of every connection it creates,
//! edits, re-grants or deletes ([`Changes`]), so no adapter has to remember to, and an adapter
//! streaming events subscribes through the Hub ([`Hub::subscribe_events`]) whether or not a
//! monitor runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{Hub, secrets};
use crate::model::{FailureKind, HealthStatus, ListQuery, Visibility};
use crate::monitor::{CheckResult, Checker, Monitor, MonitorConfig, MonitorEvent, MonitorLink};
use crate::probe::{MAX_BUDGET, Report};
use crate::store::StoredConnection;
use crate::{ConnectionId, Result, UserId};

/// Connection events a subscriber may fall behind while no monitor runs before it loses the
/// oldest.
const LOCAL_EVENT_CAPACITY: usize = 1024;

/// Where the hub (and its clones) tells connection changes: the monitor it started while that
/// runs, which reloads the connection and publishes the event (also to other processes sharing
/// the store); with none running, its own channel, so subscribers still see every change made
/// through the hub.
#[derive(Debug)]
pub(super) struct Changes {
    monitor: Mutex<Option<MonitorLink>>,
    local: broadcast::Sender<MonitorEvent>,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            monitor: Mutex::new(None),
            local: broadcast::channel(LOCAL_EVENT_CAPACITY).0,
        }
    }
}

impl Changes {
    /// A connection was created or edited (settings, monitoring or grants).
    pub(super) fn changed(&self, id: ConnectionId) {
        if !self.link().is_some_and(|m| m.notify_changed(id)) {
            // No subscriber is not an error.
            let _ = self.local.send(MonitorEvent::ConnectionChanged { id });
        }
    }

    /// A connection was deleted.
    pub(super) fn deleted(&self, id: ConnectionId) {
        if !self.link().is_some_and(|m| m.notify_deleted(id)) {
            let _ = self.local.send(MonitorEvent::ConnectionDeleted { id });
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<MonitorEvent> {
        self.link()
            .and_then(|m| m.subscribe())
            .unwrap_or_else(|| self.local.subscribe())
    }

    fn attach(&self, monitor: &Monitor) {
        *self.lock() = Some(monitor.link());
    }

    fn link(&self) -> Option<MonitorLink> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<MonitorLink>> {
        self.monitor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long a check stays owed to a user's budget: the monitor checks a saved connection within
/// seconds, so an older entry belongs to a connection whose check never came (monitoring off,
/// no monitor in this process) and is dropped.
const OWED_FOR: Duration = Duration::from_secs(600);

/// The most checks owed at once; beyond it the oldest are dropped.
const MAX_OWED: usize = 100_000;

/// The monitor checks owed to a user's test budget (SECURITY.md S31): the first check of a
/// connection a user created, and the check soon after a user changed one, would tell that user
/// whether a host and port answer, exactly as a test would. The monitor asks
/// ([`Checker::admit`]) before such a check; when the user's budget is spent the check is not
/// made, and the connection waits for its normal interval, unchecked.
#[derive(Debug, Default)]
pub(super) struct OwedChecks {
    owed: Mutex<HashMap<ConnectionId, (UserId, Instant)>>,
}

impl OwedChecks {
    /// Owes the next check of `id` to `user`'s budget.
    pub(super) fn owe(&self, id: ConnectionId, user: UserId) {
        let now = Instant::now();
        let mut owed = self.lock();
        if owed.len() >= MAX_OWED {
            owed.retain(|_, (_, at)| now.saturating_duration_since(*at) < OWED_FOR);
            if owed.len() >= MAX_OWED {
                let oldest = owed.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    owed.remove(&oldest);
                }
            }
        }
        owed.insert(id, (user, now));
    }

    /// Whom the next check of `id` is owed to, if anyone; forgets it.
    pub(super) fn settle(&self, id: ConnectionId) -> Option<UserId> {
        let (user, at) = self.lock().remove(&id)?;
        (Instant::now().saturating_duration_since(at) < OWED_FOR).then_some(user)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, (UserId, Instant)>> {
        self.owed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The [`Checker`] the Hub gives the monitor: a saved connection's test.
#[derive(Debug, Clone)]
struct ProbeChecker {
    hub: Hub,
    budget: Duration,
}

#[async_trait]
impl Checker for ProbeChecker {
    async fn admit(&self, id: ConnectionId) -> bool {
        let Some(user) = self.hub.owed_checks.settle(id) else {
            return true;
        };
        let admitted = self.hub.test_limit.take(&user).is_ok();
        if !admitted {
            tracing::debug!(
                connection = %id,
                user = %user,
                "first check after a save deferred: the user's test budget is spent"
            );
        }
        admitted
    }

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
        self.check_row(row).await
    }

    async fn check_row(&self, row: StoredConnection) -> CheckResult {
        let id = row.id;
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
        // At most 1 s old, and never older than this hub's last policy change (`policy.rs`).
        let policy = match self.hub.check_policy.get(self.hub.store.as_ref()).await {
            Ok(policy) => policy,
            Err(e) => {
                tracing::warn!(connection = %id, error = %e, "monitor check could not read the policy");
                return CheckResult::failure(FailureKind::Internal, 0);
            }
        };
        let report = self
            .hub
            .run_probe_under(&policy, &row.spec, &opened, self.budget)
            .await;
        to_result(&report)
    }
}

/// What the monitor needs of a report: the outcome with the failed step, and the facts of the
/// server and the TLS session (the TLS facts also on a failure after the handshake).
fn to_result(report: &Report) -> CheckResult {
    let latency_ms = report.total_ms.round().clamp(0.0, f64::from(u32::MAX)) as u32;
    let mut result = match &report.failure {
        None => CheckResult::success(latency_ms),
        Some(failure) => CheckResult::failure(failure.kind, latency_ms).in_step(failure.step),
    };
    if let Some(tls) = &report.tls {
        result = result.with_tls(
            tls.protocol.as_deref(),
            tls.cipher.as_deref(),
            tls.peer_subject.as_deref(),
        );
        if let Some(not_after) = tls.peer_not_after {
            result = result.with_cert(not_after);
        }
    }
    if let Some(server) = &report.server {
        result = result.with_server(&server.version, server.in_recovery);
        if let (Some(used), Some(max)) = (server.connections_used, server.max_connections) {
            result = result.with_connections(used, max);
        }
    }
    result
}

impl Hub {
    /// Starts the health monitor over this hub's store, checking each enabled connection with
    /// the prober (budget 5 s) through the hub's dialer, under the current target policy.
    ///
    /// From then on, while the monitor runs, this hub and its clones tell it of every
    /// connection created, edited, re-granted or deleted through them (a new or retargeted one
    /// is checked within 5 s, a deleted one no longer), and [`Hub::subscribe_events`] gives its
    /// events. A second call leaves the first monitor running but untold.
    ///
    /// # Panics
    /// Outside a tokio runtime (as [`Monitor::start`]).
    pub fn start_monitor(&self, config: MonitorConfig) -> Monitor {
        let checker = ProbeChecker {
            hub: self.clone(),
            budget: MAX_BUDGET,
        };
        let monitor = Monitor::start(self.store.clone(), Arc::new(checker), config);
        self.changes.attach(&monitor);
        monitor
    }

    /// A receiver of the events published from now on: those of the monitor this hub started
    /// while it runs (status changes, checks, connection changes, also from other processes
    /// sharing the store), else the connection changes and deletions made through this hub (a
    /// receiver taken before the monitor starts stays on those). Events are not filtered: an
    /// adapter shows each only to those who may view its connection. A receiver that falls too
    /// far behind loses the oldest (`RecvError::Lagged`) and should reload what it shows.
    pub fn subscribe_events(&self) -> broadcast::Receiver<MonitorEvent> {
        self.changes.subscribe()
    }

    /// Whether the principal may read the server's metrics (counts of connections by status,
    /// of requests and of checks): admins only (S34). A plain read, not audited.
    ///
    /// # Errors
    /// `PermissionDenied` for other roles.
    pub fn authorize_metrics(&self, principal: &crate::rbac::Principal) -> Result<()> {
        principal.check::<crate::rbac::act::MetricsRead>()?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Instant;

    use super::*;
    use crate::audit::{AuditEvent, Outcome, RequestInfo};
    use crate::crypto::Keyring;
    use crate::model::ConnectionDraft;
    use crate::model::TargetPolicy;
    use crate::net::{Dialer, StaticResolver};
    use crate::secret::Password;
    use crate::store::{SqliteStore, Store};

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const ADMIN_PW: &str = "policy-cache-admin-pw-1";

    /// A report becomes the monitor's result with its failed step and the facts: the server's
    /// only when the probe query answered, the TLS facts whenever the handshake was seen.
    #[test]
    fn reports_become_results_with_step_and_facts() {
        use std::borrow::Cow;

        use crate::probe::{Failure, ServerFacts, StepName, TlsFacts};

        let expires = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let tls = TlsFacts {
            protocol: Some("TLSv1.3".into()),
            cipher: Some("TLS_AES_256_GCM_SHA384".into()),
            peer_subject: Some("CN=db".into()),
            peer_not_after: Some(expires),
        };
        let passed = Report {
            ok: true,
            total_ms: 12.4,
            steps: Vec::new(),
            server: Some(ServerFacts {
                version: "16.4".into(),
                database: "app".into(),
                user: "app".into(),
                in_recovery: true,
                connections_used: Some(4),
                max_connections: Some(100),
            }),
            tls: Some(tls.clone()),
            failure: None,
        };
        let result = to_result(&passed);
        assert!(result.ok);
        assert_eq!(result.latency_ms, 12);
        assert_eq!(result.step, None);
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let facts = result.facts(at).unwrap();
        let server = facts.server.unwrap();
        assert_eq!(server.version, "16.4");
        assert!(server.in_recovery);
        assert_eq!(server.connections_used, Some(4));
        let got = facts.tls.unwrap();
        assert_eq!(got.peer_subject.as_deref(), Some("CN=db"));
        assert_eq!(got.peer_not_after, Some(expires));

        let failed = Report {
            ok: false,
            server: None,
            tls: Some(tls),
            failure: Some(Failure {
                kind: FailureKind::AuthFailed,
                step: StepName::Auth,
                hint: Cow::Borrowed("wrong password"),
                sqlstate: Some("28P01".into()),
            }),
            ..passed.clone()
        };
        let result = to_result(&failed);
        assert!(!result.ok);
        assert_eq!(result.error_kind, Some(FailureKind::AuthFailed));
        assert_eq!(result.step, Some(StepName::Auth));
        assert_eq!(result.tls_protocol.as_deref(), Some("TLSv1.3"));
        assert_eq!(result.facts(at), None, "it did not reach the probe query");

        // A server's texts are bounded before they are kept.
        let mut long = passed;
        if let Some(server) = long.server.as_mut() {
            server.version = "9".repeat(10_000);
        }
        long.tls = None;
        let facts = to_result(&long).facts(at).unwrap();
        assert_eq!(
            facts.server.unwrap().version.len(),
            crate::model::MAX_FACT_CHARS
        );
        assert_eq!(facts.tls, None);
    }

    /// A policy change applies to the monitor's next check: at once when made through the hub,
    /// within the cache's 1 s when made straight in the store (as another process would).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_policy_change_applies_to_the_next_check() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
        let resolver = StaticResolver::new().with("localhost", &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        let hub = Hub::open(store.clone(), Keyring::parse(KEY).unwrap())
            .await
            .unwrap()
            .with_connector(Arc::new(Dialer::new(Arc::new(resolver))));
        hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
            .await
            .unwrap();
        let admin = hub
            .login("admin", Password::from(ADMIN_PW), &RequestInfo::default())
            .await
            .unwrap();
        // Nothing listens there: refused, once the policy lets the dial through.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let draft = ConnectionDraft {
            name: "closed".into(),
            host: "localhost".into(),
            port: Some(i64::from(closed)),
            database: "app".into(),
            username: "app".into(),
            password: Some(Password::from("pw-policy-cache")),
            ..ConnectionDraft::default()
        };
        let id = hub.create_connection(&admin, draft).await.unwrap().id;
        let checker = ProbeChecker {
            hub: hub.clone(),
            budget: MAX_BUDGET,
        };
        let kind = |r: CheckResult| r.error_kind;

        // The default policy allows loopback; this check fills the cache.
        assert_eq!(
            kind(checker.check(id).await),
            Some(FailureKind::ConnectionRefused)
        );
        let deny = TargetPolicy {
            deny_cidrs: vec!["127.0.0.0/8".into()],
            ..TargetPolicy::default()
        };
        hub.set_policy(&admin, deny).await.unwrap();
        assert_eq!(
            kind(checker.check(id).await),
            Some(FailureKind::BlockedByPolicy)
        );

        // Changed behind the hub's back: the cached policy holds for at most 1 s.
        let changed = Instant::now();
        let event = AuditEvent::now(None, "test", "policy.write", Some("policy"), Outcome::Ok);
        store
            .set_policy(&TargetPolicy::default(), &event)
            .await
            .unwrap();
        loop {
            let now_kind = kind(checker.check(id).await);
            if now_kind == Some(FailureKind::ConnectionRefused) {
                break;
            }
            assert_eq!(now_kind, Some(FailureKind::BlockedByPolicy));
            assert!(
                changed.elapsed() < crate::hub::policy::MAX_AGE + Duration::from_millis(500),
                "the old policy outlived the cache"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// S31: the first check of a connection a user saved is owed to that user's test budget:
    /// admitted while the budget lasts, deferred (once) when it is spent; later checks and
    /// checks of connections nobody just saved are free.
    #[tokio::test]
    async fn a_first_check_after_a_save_draws_on_the_savers_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
        let hub = Hub::open(store, Keyring::parse(KEY).unwrap())
            .await
            .unwrap()
            .with_test_rate_limit(crate::hub::RateLimit {
                burst: 2,
                per_second: 0.001,
            });
        hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
            .await
            .unwrap();
        let admin = hub
            .login("admin", Password::from(ADMIN_PW), &RequestInfo::default())
            .await
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..3 {
            let draft = ConnectionDraft {
                name: format!("owed-{i}"),
                host: "127.0.0.1".into(),
                database: "app".into(),
                username: "app".into(),
                password: Some(Password::from("pw-owed-check")),
                ..ConnectionDraft::default()
            };
            ids.push(hub.create_connection(&admin, draft).await.unwrap().id);
        }
        let checker = ProbeChecker {
            hub: hub.clone(),
            budget: MAX_BUDGET,
        };
        assert!(checker.admit(ids[0]).await);
        assert!(checker.admit(ids[1]).await);
        assert!(!checker.admit(ids[2]).await, "the budget is spent");
        // The deferred check was settled: the next one waits for nothing but its interval.
        assert!(checker.admit(ids[2]).await);
        // The saver's tests draw on the same, spent budget.
        let refused = hub
            .test_connection(&admin, ids[0], MAX_BUDGET)
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), crate::ErrorKind::RateLimited);
    }
}
