//! Integration tests: the monitor on a real SQLite store, with connections created through the
//! Hub and a scripted `Checker`, on tokio's paused clock (virtual time, so 10 s intervals run
//! instantly). Hysteresis as recorded in the store and published once per change (S24), a
//! stalled target never delaying the others (S23), nor 200 of them a healthy one (the main and
//! suspect lanes), one check in flight per connection, the concurrency bound, pruning, uptime,
//! changes picked up (also told by the Hub alone, with no adapter), and a clean shutdown.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datahub_core::ConnectionId;
use datahub_core::crypto::Keyring;
use datahub_core::hub::Hub;
use datahub_core::model::{
    Check, ConnectionPatch, FailureKind, Health, HealthStatus, MonitoringDraft, MonitoringPatch,
    StepName,
};
use datahub_core::monitor::{CheckResult, Checker, Monitor, MonitorConfig, MonitorEvent};
use datahub_core::rbac::Principal;
use datahub_core::store::{SqliteStore, Store};
use tempfile::TempDir;
use time::OffsetDateTime;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::Instant;

use crate::hub::{ADMIN_PW, K1, draft, login};

use HealthStatus::{Degraded as Dg, Down as Dn, Healthy as H, Unknown as U};

struct Fixture {
    hub: Hub,
    store: Arc<dyn Store>,
    admin: Principal,
    _dir: TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    let hub = Hub::open(store.clone(), Keyring::parse(K1).unwrap())
        .await
        .unwrap();
    hub.bootstrap_admin(Some(ADMIN_PW.into())).await.unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    Fixture {
        hub,
        store,
        admin,
        _dir: dir,
    }
}

impl Fixture {
    /// A connection checked every `interval_s` seconds.
    async fn connection(&self, name: &str, interval_s: i64) -> ConnectionId {
        let mut d = draft(name, "pw");
        d.monitoring = MonitoringDraft {
            interval_s: Some(interval_s),
            ..MonitoringDraft::default()
        };
        self.hub.create_connection(&self.admin, d).await.unwrap().id
    }

    /// Every check of `id`, oldest first.
    async fn history(&self, id: ConnectionId) -> Vec<Check> {
        let mut rows = self
            .store
            .checks(id, OffsetDateTime::UNIX_EPOCH, 100_000)
            .await
            .unwrap();
        rows.reverse();
        rows
    }

    async fn health(&self, id: ConnectionId) -> Health {
        self.store
            .connection_summary(id)
            .await
            .unwrap()
            .unwrap()
            .health
    }
}

/// What the scripted checker does for one call.
#[derive(Debug, Clone)]
enum Step {
    Answer(CheckResult),
}

/// A checker answering from per-connection scripts (then `fallback`), after `delay`, or never
/// for a stalled connection; it counts calls and checks in flight per connection and overall,
/// and asserts at most one in flight per connection.
#[derive(Debug)]
struct Scripted {
    scripts: Mutex<HashMap<ConnectionId, VecDeque<Step>>>,
    stalled: Mutex<Vec<ConnectionId>>,
    fallback: CheckResult,
    delay: Duration,
    calls: Mutex<HashMap<ConnectionId, Vec<Instant>>>,
    in_flight: Mutex<HashMap<ConnectionId, usize>>,
    max_in_flight_one: AtomicUsize,
    in_flight_all: AtomicUsize,
    max_in_flight_all: AtomicUsize,
}

impl Scripted {
    fn new(delay: Duration) -> Arc<Self> {
        Arc::new(Self {
            scripts: Mutex::default(),
            stalled: Mutex::default(),
            fallback: CheckResult::success(5),
            delay,
            calls: Mutex::default(),
            in_flight: Mutex::default(),
            max_in_flight_one: AtomicUsize::new(0),
            in_flight_all: AtomicUsize::new(0),
            max_in_flight_all: AtomicUsize::new(0),
        })
    }

    fn script(&self, id: ConnectionId, steps: impl IntoIterator<Item = Step>) {
        self.scripts
            .lock()
            .unwrap()
            .insert(id, steps.into_iter().collect());
    }

    fn stall(&self, id: ConnectionId) {
        self.stalled.lock().unwrap().push(id);
    }

    fn calls(&self, id: ConnectionId) -> Vec<Instant> {
        self.calls
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }
}

/// Counts a call in flight until dropped (also when the monitor drops the call).
struct InFlight<'a> {
    checker: &'a Scripted,
    id: ConnectionId,
}

impl<'a> InFlight<'a> {
    fn enter(checker: &'a Scripted, id: ConnectionId) -> Self {
        let mut per_id = checker.in_flight.lock().unwrap();
        let n = per_id.entry(id).or_default();
        *n += 1;
        assert!(*n <= 1, "two checks of {id} in flight");
        checker.max_in_flight_one.fetch_max(*n, Ordering::SeqCst);
        let all = checker.in_flight_all.fetch_add(1, Ordering::SeqCst) + 1;
        checker.max_in_flight_all.fetch_max(all, Ordering::SeqCst);
        Self { checker, id }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        *self
            .checker
            .in_flight
            .lock()
            .unwrap()
            .get_mut(&self.id)
            .unwrap() -= 1;
        self.checker.in_flight_all.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Checker for Scripted {
    async fn check(&self, id: ConnectionId) -> CheckResult {
        let _guard = InFlight::enter(self, id);
        self.calls
            .lock()
            .unwrap()
            .entry(id)
            .or_default()
            .push(Instant::now());
        let step = self
            .scripts
            .lock()
            .unwrap()
            .get_mut(&id)
            .and_then(VecDeque::pop_front);
        let stalled = self.stalled.lock().unwrap().contains(&id);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        match step {
            // Never answers (until dropped by the monitor's timeout or shutdown).
            _ if stalled => std::future::pending().await,
            Some(Step::Answer(result)) => result,
            None => self.fallback.clone(),
        }
    }
}

fn ok() -> Step {
    Step::Answer(CheckResult::success(5))
}

fn fail() -> Step {
    Step::Answer(CheckResult::failure(FailureKind::ConnectionRefused, 1))
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<MonitorEvent>) -> Vec<MonitorEvent> {
    let mut events = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(e) => events.push(e),
            Err(TryRecvError::Empty) => return events,
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// The status changes among `events` for `id`, as (from, to).
fn changes(events: &[MonitorEvent], id: ConnectionId) -> Vec<(HealthStatus, HealthStatus)> {
    events
        .iter()
        .filter_map(|e| match e {
            MonitorEvent::StatusChanged {
                id: i, from, to, ..
            } if *i == id => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn statuses_follow_the_hysteresis_and_each_change_is_published_once() {
    let f = fixture().await;
    let flapping = f.connection("flapping", 10).await;
    let falling = f.connection("falling", 10).await;
    let checker = Scripted::new(Duration::ZERO);
    checker.script(
        flapping,
        [fail(), ok(), fail(), ok(), fail(), ok(), fail(), ok()],
    );
    checker.script(
        falling,
        [
            ok(),
            fail(),
            fail(),
            fail(),
            fail(),
            ok(),
            fail(),
            ok(),
            ok(),
            ok(),
        ],
    );
    let monitor = Monitor::start(f.store.clone(), checker.clone(), MonitorConfig::default());
    let mut events = monitor.subscribe();

    // 10 checks at 10 s ± 10 % after a first one within 10 s: done by 10 + 9 × 11 s.
    tokio::time::sleep(Duration::from_secs(110)).await;
    monitor.shutdown().await;

    let statuses = |rows: Vec<Check>| rows.iter().map(|c| c.status).collect::<Vec<_>>();
    let flapping_rows = f.history(flapping).await;
    assert_eq!(
        statuses(flapping_rows[..8].to_vec()),
        [Dg, H, Dg, H, Dg, H, Dg, H],
        "a flapping target never goes down"
    );
    let falling_rows = f.history(falling).await;
    assert_eq!(
        statuses(falling_rows[..10].to_vec()),
        [H, Dg, Dg, Dn, Dn, Dn, Dn, Dn, H, H],
        "down after 3 failures, healthy after exactly 2 successes in a row"
    );
    assert_eq!(
        falling_rows[1].error_kind,
        Some(FailureKind::ConnectionRefused)
    );
    assert_eq!(falling_rows[0].error_kind, None);

    let events = drain(&mut events);
    assert_eq!(
        changes(&events, falling),
        [(U, H), (H, Dg), (Dg, Dn), (Dn, H)]
    );
    let expected: Vec<_> = [(U, Dg)]
        .into_iter()
        .chain([(Dg, H), (H, Dg)].repeat(3))
        .chain([(Dg, H)])
        .collect();
    assert_eq!(changes(&events, flapping), expected);

    // The stored health is the last check's, with the 24 h uptime of every recorded check.
    let health = f.health(falling).await;
    let rows = f.history(falling).await;
    let good = rows.iter().filter(|c| c.ok).count() as f64;
    assert_eq!(health.status, H);
    assert_eq!(health.uptime_24h, Some(good / rows.len() as f64));
    assert_eq!(health.latency_ms, Some(5));
    assert_eq!(health.checked_at, Some(rows.last().unwrap().at));
    assert_eq!(monitor.running_tasks(), 0);

    // Failed checks are counted, and the stored statuses are counted for metrics.
    let failed = f.history(flapping).await.iter().filter(|c| !c.ok).count()
        + rows.iter().filter(|c| !c.ok).count();
    assert_eq!(monitor.stats().failures as usize, failed);
    assert_eq!(
        f.hub.status_counts().await.unwrap(),
        [(U, 0), (H, 2), (Dg, 0), (Dn, 0)]
    );
}

/// Every recorded check is published as `Checked` (after its status change, if any), its failed
/// step is recorded, and the facts of the last check that reached the server stay with the
/// health through later failures.
#[tokio::test(start_paused = true)]
async fn every_check_is_published_with_its_step_and_the_facts_are_kept() {
    let f = fixture().await;
    let id = f.connection("facts", 10).await;
    let expires = OffsetDateTime::UNIX_EPOCH + time::Duration::days(30_000);
    let reached = CheckResult::success(7)
        .with_server("16.4", false)
        .with_connections(3, 100)
        .with_tls(
            Some("TLSv1.3"),
            Some("TLS_AES_128_GCM_SHA256"),
            Some("CN=db"),
        )
        .with_cert(expires);
    let tls_failed = CheckResult::failure(FailureKind::TlsCertificateInvalid, 9)
        .in_step(StepName::Tls)
        .with_tls(Some("TLSv1.3"), None, Some("CN=other"));
    let checker = Scripted::new(Duration::ZERO);
    checker.script(
        id,
        [
            Step::Answer(reached),
            Step::Answer(tls_failed),
            Step::Answer(
                CheckResult::failure(FailureKind::ConnectionRefused, 2).in_step(StepName::Tcp),
            ),
        ],
    );
    let monitor = Monitor::start(f.store.clone(), checker.clone(), MonitorConfig::default());
    let mut events = monitor.subscribe();
    // Three checks: the first within 10 s, then every 10 s ± 10 %.
    tokio::time::sleep(Duration::from_secs(31)).await;
    monitor.shutdown().await;

    // Three or four checks (the fourth, if any, the scripted checker's plain success).
    let rows = f.history(id).await;
    assert!((3..=4).contains(&rows.len()), "{rows:?}");
    let steps: Vec<Option<StepName>> = rows[..3].iter().map(|c| c.step).collect();
    assert_eq!(steps, [None, Some(StepName::Tls), Some(StepName::Tcp)]);

    let events = drain(&mut events);
    let checked: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, MonitorEvent::Checked { .. }))
        .cloned()
        .collect();
    let expected: Vec<MonitorEvent> = rows
        .iter()
        .map(|c| MonitorEvent::Checked {
            id,
            status: c.status,
            latency_ms: c.latency_ms,
            error_kind: c.error_kind,
            at: c.at,
        })
        .collect();
    assert_eq!(checked, expected);
    assert!(checked.iter().all(|e| e.id() == id));
    // A status change comes before the check that caused it.
    let first_change = events
        .iter()
        .position(|e| matches!(e, MonitorEvent::StatusChanged { .. }))
        .unwrap();
    let first_check = events
        .iter()
        .position(|e| matches!(e, MonitorEvent::Checked { .. }))
        .unwrap();
    assert!(first_change < first_check, "{events:?}");

    // The facts are the first check's: the checks after it did not reach the server.
    let facts = f.health(id).await.facts.unwrap();
    assert_eq!(facts.at, rows[0].at);
    let server = facts.server.unwrap();
    assert_eq!(
        (server.version.as_str(), server.in_recovery),
        ("16.4", false)
    );
    assert_eq!(
        (server.connections_used, server.max_connections),
        (Some(3), Some(100))
    );
    let tls = facts.tls.unwrap();
    assert_eq!(tls.protocol.as_deref(), Some("TLSv1.3"));
    assert_eq!(tls.cipher.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(tls.peer_subject.as_deref(), Some("CN=db"));
    assert_eq!(tls.peer_not_after, Some(expires));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_target_never_delays_the_others_and_shutdown_stops_everything() {
    let f = fixture().await;
    let stalled = f.connection("stalled", 10).await;
    let mut others = Vec::new();
    for i in 0..4 {
        others.push(f.connection(&format!("healthy-{i}"), 10).await);
    }
    let checker = Scripted::new(Duration::ZERO);
    checker.stall(stalled);
    // Two permits: the stalled target holds one for most of the time.
    let config = MonitorConfig {
        max_concurrency: 2,
        ..MonitorConfig::default()
    };
    let started = Instant::now();
    let monitor = Monitor::start(f.store.clone(), checker.clone(), config);

    tokio::time::sleep(Duration::from_secs(120)).await;

    // A check starts at most one claim window after its due time (claims are gathered).
    let claim = MonitorConfig::default().claim_window;
    for id in &others {
        let calls = checker.calls(*id);
        assert!(calls.len() >= 10, "{} checks in 120 s", calls.len());
        // First checks are spread over the first interval.
        assert!(calls[0] - started <= Duration::from_secs(10) + claim);
        for pair in calls.windows(2) {
            let gap = pair[1] - pair[0];
            // 10 s ± 10 %, to the millisecond (and the claim window): never waiting behind the
            // stalled target.
            assert!(
                gap + claim >= Duration::from_secs(9)
                    && gap <= Duration::from_millis(11_001) + claim,
                "gap {gap:?}"
            );
        }
        assert!(f.history(*id).await.iter().all(|c| c.status == H));
    }
    // The stalled target's checks are cut off at 10 s, recorded as timeouts, and it goes down.
    let rows = f.history(stalled).await;
    assert!(rows.len() >= 3);
    assert!(
        rows.iter()
            .all(|c| !c.ok && c.error_kind == Some(FailureKind::Timeout))
    );
    assert!(rows.iter().all(|c| c.latency_ms >= 10_000));
    assert_eq!(rows[2].status, Dn);
    let stats = monitor.stats();
    assert_eq!(stats.timeouts as usize, rows.len());
    assert_eq!(
        stats.failures, stats.timeouts,
        "only the stalled target failed"
    );
    assert_eq!(stats.connections, 5);

    // Shutdown with a check stalled in flight: returns at once, nothing left running.
    let before = Instant::now();
    monitor.shutdown().await;
    assert_eq!(before.elapsed(), Duration::ZERO);
    assert_eq!(monitor.running_tasks(), 0);
    assert_eq!(checker.in_flight_all.load(Ordering::SeqCst), 0);
    let checks = monitor.stats().checks;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(monitor.stats().checks, checks, "no check after shutdown");
}

/// S23 under a flood: 200 targets that never answer and one healthy target, default lanes (main
/// 64, suspect 16, first check 16). Once every stalled target has timed out once and the healthy
/// one has succeeded once, the healthy target's checks start within 100 ms of their due time,
/// however many dead targets queue for the suspect lane; checks in flight never exceed the sum
/// of the lanes; and a connection saved meanwhile gets its first check on time, not behind the
/// suspect backlog.
#[tokio::test(start_paused = true)]
async fn two_hundred_stalled_targets_never_delay_a_healthy_one() {
    let f = fixture().await;
    let mut stalled = Vec::new();
    for i in 0..200 {
        stalled.push(f.connection(&format!("dead-{i:03}"), 10).await);
    }
    let healthy = f.connection("healthy", 10).await;
    // Every check takes 5 ms; the stalled ones then never answer (cut at the 10 s timeout).
    let checker = Scripted::new(Duration::from_millis(5));
    for id in &stalled {
        checker.stall(*id);
    }
    let config = MonitorConfig::default();
    let (main, suspect, first) = (
        config.max_concurrency,
        config.suspect_concurrency,
        config.first_check_concurrency,
    );
    let started = Instant::now();
    let monitor = Monitor::start(f.store.clone(), checker.clone(), config);

    // The first round: 200 never-checked targets through 16 first-check permits, 10 s each.
    let mut rounds = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        rounds += 1;
        assert!(rounds <= 60, "the first round is not over after 600 s");
        if f.history(healthy).await.is_empty() {
            continue;
        }
        let mut all_timed_out = true;
        for id in &stalled {
            if f.history(*id).await.is_empty() {
                all_timed_out = false;
                break;
            }
        }
        if all_timed_out {
            break;
        }
    }
    let first_round = started.elapsed();
    let first_healthy = checker.calls(healthy)[0] - started;
    assert_eq!(f.history(healthy).await[0].status, H);

    // The next 10 intervals.
    let before = monitor.stats();
    let seen = checker.calls(healthy).len();
    tokio::time::sleep(Duration::from_secs(100)).await;
    let after = monitor.stats();
    let calls = checker.calls(healthy);
    assert!(
        calls.len() - seen >= 9,
        "{} checks in 100 s",
        calls.len() - seen
    );
    for pair in calls[seen - 1..].windows(2) {
        let gap = pair[1] - pair[0];
        // Due one interval after the previous due time, 10 s ± 10 %: late by 100 ms at most.
        assert!(
            gap >= Duration::from_millis(8_900) && gap <= Duration::from_millis(11_100),
            "gap {gap:?}"
        );
    }
    // Every main-lane check since start (only the healthy target's, after its first success)
    // started within 100 ms of its due time.
    let worst = after.max_main_lane_wait;
    assert!(worst <= Duration::from_millis(100), "waited {worst:?}");
    assert!(
        f.history(healthy)
            .await
            .iter()
            .all(|c| c.ok && c.status == H)
    );
    // The suspect lane stayed full of stalled checks meanwhile: 16 permits × 100 s / 10 s.
    let timeouts = after.timeouts - before.timeouts;
    assert!(timeouts >= 150, "{timeouts} timeouts in 100 s");
    // Every suspect check was a stalled one timing out: the starts and the timeouts in the
    // window differ only by the checks crossing its edges (a check starts up to the claim
    // window after its permit, so a start and the timeout before it are no longer one instant).
    let started = after.suspect_checks - before.suspect_checks;
    assert!(
        started.abs_diff(timeouts) <= suspect as u64,
        "{started} suspect checks, {timeouts} timeouts"
    );
    // Stalled checks in the suspect and first-check lanes and the healthy one: never more than
    // the lanes allow (16 + 16 while the first round overlaps the second, plus the healthy one).
    let max_all = checker.max_in_flight_all.load(Ordering::SeqCst);
    assert!(max_all > suspect, "{max_all}");
    assert!(max_all <= suspect + first + 1, "{max_all}");
    assert!(max_all <= main + suspect + first);
    assert_eq!(checker.max_in_flight_one.load(Ordering::SeqCst), 1);

    // A connection saved now, with the suspect lane's backlog of ~184 dead targets (16 permits,
    // 10 s each: ~115 s to drain), gets its first check within 5 s of being told (due at a random
    // point of them), not behind the dead ones. Polled: the paused clock jumps to the next timer
    // whenever the runtime waits on the store's blocking pool, so one long sleep could pass
    // before the monitor has even loaded the new row; 10 s leaves room for that.
    let saved = Instant::now();
    let newcomer = f.connection("newcomer", 10).await;
    monitor.notify_changed(newcomer);
    let mut calls = Vec::new();
    while calls.is_empty() && saved.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        calls = checker.calls(newcomer);
    }
    assert!(
        !calls.is_empty(),
        "the new connection waited behind the dead ones"
    );
    let newcomer_first = calls[0] - saved;
    assert!(
        newcomer_first <= Duration::from_secs(10),
        "{newcomer_first:?}"
    );
    assert_eq!(monitor.stats().first_checks, 202);
    eprintln!(
        "first round {first_round:?}, healthy first check at {first_healthy:?}, worst main-lane \
         wait {worst:?}, {timeouts} timeouts in the window, max in flight {max_all}, newcomer \
         first checked after {newcomer_first:?}"
    );

    // No task or check left behind.
    let before = Instant::now();
    monitor.shutdown().await;
    assert_eq!(before.elapsed(), Duration::ZERO);
    assert_eq!(monitor.running_tasks(), 0);
    assert_eq!(checker.in_flight_all.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn one_check_in_flight_per_connection_and_the_concurrency_bound_holds() {
    let f = fixture().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(f.connection(&format!("slow-{i}"), 10).await);
    }
    // Each check takes 15 s: longer than the interval, so the next one is due mid-check.
    let checker = Scripted::new(Duration::from_secs(15));
    let config = MonitorConfig {
        max_concurrency: 4,
        suspect_concurrency: 2,
        first_check_concurrency: 2,
        check_timeout: Duration::from_secs(20),
        ..MonitorConfig::default()
    };
    let monitor = Monitor::start(f.store.clone(), checker.clone(), config);
    tokio::time::sleep(Duration::from_secs(300)).await;
    monitor.shutdown().await;

    assert_eq!(checker.max_in_flight_one.load(Ordering::SeqCst), 1);
    // Main lane 4 + first-check lane 2: never-checked targets start in the first-check lane,
    // and the first to succeed fill the main lane while the others still wait for their first
    // check. Nothing failed, so the suspect lane stayed empty.
    assert_eq!(checker.max_in_flight_all.load(Ordering::SeqCst), 6);
    let stats = monitor.stats();
    assert!(stats.skipped > 0, "overdue checks are skipped, not queued");
    // Only each connection's first check is in the first-check lane; then 4 main permits ×
    // 300 s / 15 s per check bound the rest.
    assert_eq!(stats.first_checks, 12);
    assert_eq!(stats.suspect_checks, 0);
    assert!(stats.checks - stats.first_checks <= 80, "{}", stats.checks);
    assert!(stats.checks >= 60, "{}", stats.checks);
    assert_eq!(stats.timeouts, 0);
}

#[tokio::test(start_paused = true)]
async fn old_history_is_rolled_up_and_pruned_and_uptime_counts_the_last_day() {
    let f = fixture().await;
    let id = f.connection("pruned", 10).await;
    let now = OffsetDateTime::now_utc();
    let old = |hours: i64, ok: bool| Check {
        connection: id,
        at: now - time::Duration::hours(hours),
        ok,
        latency_ms: 3,
        error_kind: (!ok).then_some(FailureKind::Timeout),
        step: (!ok).then_some(StepName::Tcp),
        status: if ok { H } else { Dg },
    };
    let health = Health {
        status: H,
        ..Health::default()
    };
    for row in [
        old(24 * 40, false),
        old(25, false),
        old(2, false),
        old(1, true),
    ] {
        f.store.record_check(&row, &health).await.unwrap();
    }
    let checker = Scripted::new(Duration::ZERO);
    checker.script(id, [ok()]);
    let monitor = Monitor::start(f.store.clone(), checker.clone(), MonitorConfig::default());
    tokio::time::sleep(Duration::from_secs(10)).await;
    monitor.shutdown().await;

    // Both checks older than the 24 h detail window were rolled up; the 40-day-old one's hour
    // was then past the 30-day retention and deleted.
    let stats = monitor.stats();
    assert_eq!((stats.rolled_up, stats.pruned), (2, 1));
    let epoch = OffsetDateTime::UNIX_EPOCH;
    let buckets = f.store.buckets(id, epoch).await.unwrap();
    assert_eq!(buckets.len(), 1);
    assert_eq!((buckets[0].checks, buckets[0].failures), (1, 1));
    assert!(buckets[0].start <= now - time::Duration::hours(25));
    let rows = f.history(id).await;
    assert!(rows.len() >= 3, "{}", rows.len());
    assert!(
        rows.iter().all(|r| r.at > now - time::Duration::hours(24)),
        "only the last day stays raw"
    );
    // In the last 24 h: a failure, a success, and the monitor's successes.
    let expected = rows.iter().filter(|c| c.ok).count() as f64 / rows.len() as f64;
    assert!(expected >= 2.0 / 3.0);
    let health = f.health(id).await;
    assert_eq!(health.uptime_24h, Some(expected));
    assert_eq!(health.status, H);
}

#[tokio::test(start_paused = true)]
async fn changes_are_picked_up_and_published() {
    let f = fixture().await;
    let a = f.connection("a", 10).await;
    let b = f.connection("b", 10).await;
    let checker = Scripted::new(Duration::ZERO);
    let monitor = Monitor::start(f.store.clone(), checker.clone(), MonitorConfig::default());
    let mut events = monitor.subscribe();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(monitor.stats().connections, 2);

    // Monitoring turned off for `a`: told at once, no check after that.
    let patch = ConnectionPatch {
        monitoring: MonitoringPatch {
            enabled: Some(false),
            ..MonitoringPatch::default()
        },
        ..ConnectionPatch::default()
    };
    f.hub
        .update_connection(&f.admin, a, 1, patch)
        .await
        .unwrap();
    monitor.notify_changed(a);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let a_checks = checker.calls(a).len();
    // `b` deleted: told at once.
    f.hub.delete_connection(&f.admin, b, 1).await.unwrap();
    monitor.notify_deleted(b);
    tokio::time::sleep(Duration::from_millis(1)).await;
    let b_checks = checker.calls(b).len();
    // `c` created without telling: the reload within 60 s finds it.
    let c = f.connection("c", 10).await;

    tokio::time::sleep(Duration::from_secs(90)).await;
    assert_eq!(checker.calls(a).len(), a_checks);
    assert_eq!(checker.calls(b).len(), b_checks);
    assert!(checker.calls(c).len() >= 2);
    assert_eq!(f.health(c).await.status, H);
    assert_eq!(monitor.stats().connections, 1);

    let events = drain(&mut events);
    let others: Vec<_> = events
        .iter()
        .filter(|e| {
            !matches!(
                e,
                MonitorEvent::StatusChanged { .. } | MonitorEvent::Checked { .. }
            )
        })
        .cloned()
        .collect();
    assert_eq!(
        others,
        [
            MonitorEvent::ConnectionChanged { id: a },
            MonitorEvent::ConnectionDeleted { id: b },
            MonitorEvent::ConnectionChanged { id: c },
        ]
    );
    assert_eq!(changes(&events, c), [(U, H)]);
    monitor.shutdown().await;
    assert_eq!(monitor.running_tasks(), 0);
}

/// Changes nobody tells the monitor (another process sharing the store) reach it through the
/// store's changes feed at its next reload: a connection created, one whose interval changed,
/// one whose monitoring was turned off and one deleted, each published once; tests and other
/// reads of a connection are no change.
#[tokio::test(start_paused = true)]
async fn changes_not_told_are_found_in_the_changes_feed() {
    let f = fixture().await;
    let a = f.connection("a", 10).await;
    let b = f.connection("b", 10).await;
    let d = f.connection("d", 10).await;
    let checker = Scripted::new(Duration::ZERO);
    let monitor = Monitor::start(f.store.clone(), checker.clone(), MonitorConfig::default());
    let mut events = monitor.subscribe();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(monitor.stats().connections, 3);
    assert!(checker.calls(d).len() >= 2);

    // Nothing changed: the reload publishes nothing but checks.
    tokio::time::sleep(Duration::from_secs(40)).await;
    let quiet = drain(&mut events);
    assert!(
        quiet.iter().all(|e| matches!(
            e,
            MonitorEvent::StatusChanged { .. } | MonitorEvent::Checked { .. }
        )),
        "{quiet:?}"
    );

    // A read and a test of `d` are in the audit log, and change nothing.
    f.hub.connection(&f.admin, d).await.unwrap();
    f.hub
        .test_connection(&f.admin, d, Duration::from_secs(5))
        .await
        .unwrap();
    let off = ConnectionPatch {
        monitoring: MonitoringPatch {
            enabled: Some(false),
            ..MonitoringPatch::default()
        },
        ..ConnectionPatch::default()
    };
    f.hub.update_connection(&f.admin, a, 1, off).await.unwrap();
    f.hub.delete_connection(&f.admin, b, 1).await.unwrap();
    let slower = ConnectionPatch {
        monitoring: MonitoringPatch {
            interval_s: Some(3_600),
            ..MonitoringPatch::default()
        },
        ..ConnectionPatch::default()
    };
    f.hub
        .update_connection(&f.admin, d, 1, slower)
        .await
        .unwrap();
    let c = f.connection("c", 10).await;
    // The next reload (within 60 s) finds them; the edit of `d` is checked again within 5 s.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let (a_checks, b_checks, d_checks) = (
        checker.calls(a).len(),
        checker.calls(b).len(),
        checker.calls(d).len(),
    );

    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(checker.calls(a).len(), a_checks, "monitoring off");
    assert_eq!(checker.calls(b).len(), b_checks, "deleted");
    assert_eq!(checker.calls(d).len(), d_checks, "interval now 1 h");
    assert!(checker.calls(c).len() >= 6, "created");
    assert_eq!(monitor.stats().connections, 2);
    let others: Vec<_> = drain(&mut events)
        .into_iter()
        .filter(|e| {
            !matches!(
                e,
                MonitorEvent::StatusChanged { .. } | MonitorEvent::Checked { .. }
            )
        })
        .collect();
    assert_eq!(
        others,
        [
            MonitorEvent::ConnectionChanged { id: a },
            MonitorEvent::ConnectionDeleted { id: b },
            MonitorEvent::ConnectionChanged { id: d },
            MonitorEvent::ConnectionChanged { id: c },
        ]
    );
    monitor.shutdown().await;
}

/// The next event of `rx` within `wait` (real time).
async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<MonitorEvent>,
    wait: Duration,
) -> MonitorEvent {
    tokio::time::timeout(wait, rx.recv())
        .await
        .expect("no event in time")
        .unwrap()
}

/// What an adapter could forget, the Hub does: with no monitor, its subscribers still see every
/// connection change made through it; once it started a monitor, a connection created through
/// the Hub alone is told to that monitor (checked within 5 s, not at its next reload a minute
/// later, nor at a random point of its hour-long interval), and one deleted through it is no
/// longer checked. No `notify_*` call anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_the_hub_alone_reach_its_monitor() {
    use datahub_core::rbac::{Grant, GrantLevel, Grantee, Role};

    let f = fixture().await;
    let mut d = draft("told", "pw");
    d.monitoring.interval_s = Some(3_600);

    // No monitor: the hub's own channel.
    let mut events = f.hub.subscribe_events();
    let early = f
        .hub
        .create_connection(&f.admin, d.clone())
        .await
        .unwrap()
        .id;
    let viewer = f
        .hub
        .create_user(&f.admin, "vera", "vera-password-1234".into(), Role::Viewer)
        .await
        .unwrap();
    let grant = Grant {
        grantee: Grantee::User(viewer.id),
        level: GrantLevel::View,
    };
    let version = f
        .hub
        .set_grants(&f.admin, early, 1, &[grant])
        .await
        .unwrap()
        .version;
    f.hub
        .delete_connection(&f.admin, early, version)
        .await
        .unwrap();
    assert_eq!(
        drain(&mut events),
        [
            MonitorEvent::ConnectionChanged { id: early },
            MonitorEvent::ConnectionChanged { id: early },
            MonitorEvent::ConnectionDeleted { id: early },
        ]
    );

    let monitor = f.hub.start_monitor(MonitorConfig::default());
    let mut events = f.hub.subscribe_events();
    // Let the start-up load pass, so the connection below is new to the monitor.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(monitor.stats().connections, 0);
    let id = f.hub.create_connection(&f.admin, d).await.unwrap().id;
    assert_eq!(
        next_event(&mut events, Duration::from_secs(5)).await,
        MonitorEvent::ConnectionChanged { id }
    );
    // Nothing listens on port 1: the first check is refused, so the status changes.
    match next_event(&mut events, Duration::from_secs(10)).await {
        MonitorEvent::StatusChanged {
            id: changed,
            from,
            to,
            ..
        } => assert_eq!((changed, from, to), (id, U, Dg)),
        other => panic!("{other:?}"),
    }
    match next_event(&mut events, Duration::from_secs(5)).await {
        MonitorEvent::Checked {
            id: checked,
            error_kind,
            ..
        } => assert_eq!(
            (checked, error_kind),
            (id, Some(FailureKind::ConnectionRefused))
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(monitor.stats().connections, 1);

    // Deleted through the hub: the monitor drops it, so it is no longer checked.
    f.hub.delete_connection(&f.admin, id, 1).await.unwrap();
    assert_eq!(
        next_event(&mut events, Duration::from_secs(5)).await,
        MonitorEvent::ConnectionDeleted { id }
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while monitor.stats().connections > 0 {
        assert!(
            Instant::now() < deadline,
            "the deleted connection is still monitored"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(monitor.stats().checks, 1);
    monitor.shutdown().await;
}

/// The first checks of each connection, per 1-second window from `since`, over `windows`
/// seconds; every connection of `ids` must have had one by then.
fn first_checks_per_second(
    checker: &Scripted,
    ids: &[ConnectionId],
    since: Instant,
    windows: usize,
) -> Vec<usize> {
    let mut per_second = vec![0; windows];
    for id in ids {
        let first = *checker
            .calls(*id)
            .first()
            .unwrap_or_else(|| panic!("{id} never checked"));
        let second = usize::try_from(first.duration_since(since).as_secs()).unwrap();
        assert!(second < windows, "{id} first checked after {second} s");
        per_second[second] += 1;
    }
    per_second
}

/// Start spreading (issue 16): the first checks after a start spread over one interval: in no
/// 1-second window more than twice the average rate. 10,000 connections on a real SQLite
/// store, a scripted checker, paused time (tokio does not advance a paused clock while the
/// store's blocking work runs). A takeover from a stopped replica cannot be played on the
/// paused clock: leases are held on the wall clock, which it does not move (the replicas test
/// kills a real process instead).
#[tokio::test(start_paused = true)]
async fn first_checks_after_a_start_spread_over_one_interval() {
    const N: usize = 10_000;
    const INTERVAL_S: u64 = 60;
    let f = fixture().await;
    let mut saving = tokio::task::JoinSet::new();
    for task in 0..8 {
        let (hub, admin) = (f.hub.clone(), f.admin.clone());
        saving.spawn(async move {
            let mut ids = Vec::new();
            for i in (task..N).step_by(8) {
                let mut d = draft(&format!("spread-{i}"), "pw");
                d.monitoring = MonitoringDraft {
                    interval_s: Some(INTERVAL_S as i64),
                    ..MonitoringDraft::default()
                };
                ids.push(hub.create_connection(&admin, d).await.unwrap().id);
            }
            ids
        });
    }
    let ids: Vec<ConnectionId> = saving.join_all().await.into_iter().flatten().collect();
    assert_eq!(ids.len(), N);
    let average = N as f64 / INTERVAL_S as f64;
    let config = MonitorConfig {
        // Every first check in its lane at once: only the schedule spreads them.
        first_check_concurrency: N,
        ..MonitorConfig::default()
    };

    // A start: every connection's first check within one interval, spread.
    let first = Scripted::new(Duration::from_millis(5));
    let started = Instant::now();
    let a = Monitor::start(f.store.clone(), first.clone(), config.clone());
    tokio::time::sleep(Duration::from_secs(INTERVAL_S + 5)).await;
    let per_second = first_checks_per_second(&first, &ids, started, INTERVAL_S as usize + 1);
    let busiest = per_second.iter().copied().max().unwrap();
    assert!(
        busiest as f64 <= 2.0 * average,
        "{busiest} first checks in one second, average {average:.0}/s: {per_second:?}"
    );

    a.shutdown().await;
}
