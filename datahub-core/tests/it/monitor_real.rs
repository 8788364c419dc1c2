//! S23 with real sockets: the Hub's monitor (the real prober through the one dialer) watching
//! 200 loopback targets that never complete (fault proxies that never answer a SYN, accept and
//! stall, or forward the TLS answer and then stall the handshake) and one healthy kit cluster
//! (TLS verify-full, SCRAM). The healthy target's checks start on time and stay fast, every
//! stalled target is recorded as a timeout, and shutdown leaves no task and no socket behind.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datahub_core::ConnectionId;
use datahub_core::crypto::Keyring;
use datahub_core::hub::{Hub, RateLimit};
use datahub_core::model::{
    Check, ConnectionDraft, FailureKind, HealthStatus, MonitoringDraft, TlsMode,
};
use datahub_core::monitor::MonitorConfig;
use datahub_core::net::{Dialer, StaticResolver};
use datahub_core::secret::Password;
use datahub_core::store::{SqliteStore, Store};
use datahub_testkit::{Direction, Fault, FaultProxy, PgCluster, ServerCert, User};
use time::OffsetDateTime;

use crate::hub::{ADMIN_PW, K1, login};

const DB_USER: &str = "app";
const DB_PASSWORD: &str = "monitor-real-pw-5c2e";
/// The shortest interval the model allows (`monitoring.interval_s` is 10..=86400).
const INTERVAL_S: i64 = 10;
const NO_ANSWER: usize = 100;
const ACCEPT_AND_STALL: usize = 80;
const STALL_IN_TLS: usize = 20;
const STALLED: usize = NO_ANSWER + ACCEPT_AND_STALL + STALL_IN_TLS;
/// The bound on how late a healthy target's check may start.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// A check of the healthy target on loopback takes milliseconds; the prober's budget is 5 s. A
/// check near the budget would mean it waited behind the stalled ones somewhere.
const NORMAL_LATENCY_MS: u32 = 1_500;

/// Every check of `id`, oldest first.
async fn history(store: &Arc<dyn Store>, id: ConnectionId) -> Vec<Check> {
    let mut rows = store
        .checks(id, OffsetDateTime::UNIX_EPOCH, 10_000)
        .await
        .unwrap();
    rows.reverse();
    rows
}

/// TCP sockets of this machine in SYN-SENT towards one of `ports` on loopback (from
/// `/proc/net/tcp`): the client half of a connect a never-answering listener leaves pending.
fn syn_sent_to(ports: &HashSet<u16>) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state)) = (fields.get(2), fields.get(3)) else {
                return false;
            };
            let port = remote
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            *state == "02" && port.is_some_and(|p| ports.contains(&p))
        })
        .count()
}

/// Client connections the accepting proxies hold now: stalled checks in flight there (a
/// forwarding proxy holds two sockets per client, one of them upstream).
fn held(proxies: &[FaultProxy]) -> usize {
    proxies
        .iter()
        .map(|p| {
            let sockets = p.open_sockets().saturating_sub(p.idle_sockets());
            match p.fault() {
                Fault::StallAfter { .. } => sockets.div_ceil(2),
                _ => sockets,
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_real_stalled_targets_never_delay_a_healthy_one() {
    let test_started = Instant::now();
    let (healthy_cluster, tls_cluster) = tokio::task::spawn_blocking(|| {
        let healthy = PgCluster::builder()
            .tls(ServerCert::Valid)
            .user(User::new(DB_USER).password(DB_PASSWORD))
            .start()
            .unwrap();
        // Only the stall-in-TLS proxies talk to this one, so the healthy server never shares
        // its connection slots or CPU time with a stalled handshake.
        let stalled = PgCluster::builder()
            .tls(ServerCert::Valid)
            .max_connections(50)
            .start()
            .unwrap();
        (healthy, stalled)
    })
    .await
    .unwrap();

    // 200 targets that never complete a check.
    let mut no_answer = Vec::new();
    for _ in 0..NO_ANSWER {
        no_answer.push(FaultProxy::start(Fault::NoAnswer).await.unwrap());
    }
    let mut accepting = Vec::new();
    for _ in 0..ACCEPT_AND_STALL {
        accepting.push(FaultProxy::start(Fault::AcceptAndStall).await.unwrap());
    }
    for _ in 0..STALL_IN_TLS {
        // The server's `S` to the SSLRequest gets through, its side of the handshake never.
        accepting.push(
            FaultProxy::start(Fault::StallAfter {
                upstream: tls_cluster.addr(),
                direction: Direction::ServerToClient,
                after_bytes: 1,
            })
            .await
            .unwrap(),
        );
    }
    let no_answer_ports: HashSet<u16> = no_answer.iter().map(FaultProxy::port).collect();

    // The Hub on SQLite, its one dialer resolving `localhost` to 127.0.0.1 only; the default
    // target policy allows loopback, and its TLS floor (`require`) is met by every target.
    // The store lives in memory (/dev/shm) when it can: the main-lane wait includes the check's
    // lease, a durable SQLite write, and on this machine's shared disk one fsync costs ~5 ms and
    // far more under other processes' writeback. That is the disk's latency, not the lanes';
    // this test is about the lanes and the sockets.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    let resolver = StaticResolver::new().with("localhost", &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let hub = Hub::open(store.clone(), Keyring::parse(K1).unwrap())
        .await
        .unwrap()
        .with_connector(Arc::new(Dialer::new(Arc::new(resolver))))
        // The first check of each saved connection draws on its saver's test budget (S31);
        // this test is about the monitor, so the admin saving 201 targets may test them all.
        .with_test_rate_limit(RateLimit {
            burst: 1_000,
            per_second: 1_000.0,
        });
    hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
        .await
        .unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    let monitoring = MonitoringDraft {
        enabled: Some(true),
        interval_s: Some(INTERVAL_S),
        slow_ms: None,
    };
    let mut healthy_draft = ConnectionDraft {
        name: "healthy".into(),
        host: "localhost".into(),
        port: Some(i64::from(healthy_cluster.port())),
        database: "postgres".into(),
        username: DB_USER.into(),
        password: Some(Password::from(DB_PASSWORD)),
        monitoring: monitoring.clone(),
        ..ConnectionDraft::default()
    };
    healthy_draft.tls.mode = Some(TlsMode::VerifyFull);
    healthy_draft.tls.ca_cert_pem = healthy_cluster.ca_pem().map(str::to_owned);
    let healthy = hub
        .create_connection(&admin, healthy_draft)
        .await
        .unwrap()
        .id;
    let mut stalled = Vec::new();
    for (i, port) in no_answer
        .iter()
        .chain(&accepting)
        .map(FaultProxy::port)
        .enumerate()
    {
        let mut d = ConnectionDraft {
            name: format!("stalled-{i:03}"),
            host: "127.0.0.1".into(),
            port: Some(i64::from(port)),
            database: "postgres".into(),
            username: DB_USER.into(),
            password: Some(Password::from(DB_PASSWORD)),
            monitoring: monitoring.clone(),
            ..ConnectionDraft::default()
        };
        d.tls.mode = Some(TlsMode::Require);
        stalled.push(hub.create_connection(&admin, d).await.unwrap().id);
    }
    assert_eq!(stalled.len(), STALLED);
    let setup = test_started.elapsed();

    // Default main (64) and suspect (16) lanes; a first-check lane wide enough that the first
    // round of 200 stalled targets takes one interval plus one budget, not 200 / 16 budgets.
    let config = MonitorConfig {
        first_check_concurrency: STALLED + 1,
        ..MonitorConfig::default()
    };
    assert_eq!(
        (config.max_concurrency, config.suspect_concurrency),
        (64, 16)
    );
    let started = Instant::now();
    let monitor = hub.start_monitor(config);

    // Until the healthy target has had its first check and two main-lane checks (first at a
    // random point of its interval, then every 9–11 s), and every stalled target has failed.
    let deadline = started + Duration::from_secs(45);
    let mut first_round = None;
    let mut max_stalled_in_flight = 0;
    let mut max_syn_sent = 0;
    // When the worst main-lane wait grew (seconds since start, wait), for the notes.
    let mut wait_steps: Vec<(Duration, Duration)> = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let wait = monitor.stats().max_main_lane_wait;
        if wait > wait_steps.last().map_or(Duration::ZERO, |w| w.1) {
            wait_steps.push((started.elapsed(), wait));
        }
        let in_flight = held(&accepting);
        let syn_sent = syn_sent_to(&no_answer_ports);
        max_syn_sent = max_syn_sent.max(syn_sent);
        if first_round.is_some() {
            // After the first round, stalled checks run in the suspect lane only.
            max_stalled_in_flight = max_stalled_in_flight.max(in_flight + syn_sent);
        } else {
            let mut all_failed = true;
            for id in &stalled {
                if history(&store, *id).await.is_empty() {
                    all_failed = false;
                    break;
                }
            }
            if all_failed {
                first_round = Some(started.elapsed());
            }
        }
        if first_round.is_some() && history(&store, healthy).await.len() >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 45 s: healthy checks {}, first round over: {}",
            history(&store, healthy).await.len(),
            first_round.is_some()
        );
    }
    let watched = started.elapsed();
    let stats = monitor.stats();

    // The healthy target: every check succeeded, in the normal latency range, none skipped
    // (consecutive checks one interval ± 10 % apart), and every main-lane check started
    // within 100 ms of its due time.
    let checks = history(&store, healthy).await;
    let latencies: Vec<u32> = checks.iter().map(|c| c.latency_ms).collect();
    for c in &checks {
        assert!(c.ok, "{c:?}");
        assert_eq!(c.status, HealthStatus::Healthy, "{c:?}");
        assert!(c.latency_ms < NORMAL_LATENCY_MS, "{latencies:?}");
    }
    let gaps: Vec<Duration> = checks
        .windows(2)
        .map(|w| Duration::try_from(w[1].at - w[0].at).unwrap())
        .collect();
    for gap in &gaps {
        assert!(
            *gap >= Duration::from_millis(8_500) && *gap <= Duration::from_millis(12_000),
            "{gaps:?}"
        );
    }
    // Only the healthy target ever reaches the main lane: its checks after the first.
    let worst = stats.max_main_lane_wait;
    assert!(worst <= MAX_WAIT, "a main-lane check waited {worst:?}");
    assert!(worst > Duration::ZERO, "no main-lane check was measured");
    let health = hub.connection(&admin, healthy).await.unwrap().health;
    assert_eq!(health.status, HealthStatus::Healthy);

    // The stalled targets: every check recorded is a timeout failure, and the suspect lane was
    // full while the healthy target was checked.
    let mut stalled_checks = 0;
    for id in &stalled {
        let rows = history(&store, *id).await;
        assert!(!rows.is_empty());
        for c in &rows {
            assert!(!c.ok, "{c:?}");
            assert_eq!(c.error_kind, Some(FailureKind::Timeout), "{c:?}");
            assert!(c.latency_ms >= 4_900, "{c:?}");
        }
        stalled_checks += rows.len();
        let health = hub.connection(&admin, *id).await.unwrap().health;
        assert_ne!(health.status, HealthStatus::Healthy);
        assert_eq!(health.error_kind, Some(FailureKind::Timeout));
    }
    assert!(stats.suspect_checks >= 16, "{stats:?}");
    assert_eq!(stats.first_checks, STALLED as u64 + 1, "{stats:?}");
    assert_eq!(stats.timeouts, 0, "the prober cut every check itself");
    assert!(max_syn_sent > 0, "no SYN was ever pending");
    // Sampled every 250 ms: the suspect lane (16) was full, and never overflowed (+1 for a
    // socket the proxy has not yet seen closed while the next check already connected).
    assert!(
        (16..=17).contains(&max_stalled_in_flight),
        "stalled checks in flight after the first round: {max_stalled_in_flight}"
    );

    // Shutdown: no task left, and every proxy is back to its idle sockets.
    let stopping = Instant::now();
    monitor.shutdown().await;
    let shutdown = stopping.elapsed();
    assert_eq!(monitor.running_tasks(), 0);
    for proxy in no_answer.iter().chain(&accepting) {
        assert!(
            proxy.wait_idle(Duration::from_secs(2)).await,
            "{:?}: {} sockets, idle is {}",
            proxy.fault(),
            proxy.open_sockets(),
            proxy.idle_sockets()
        );
    }
    assert_eq!(syn_sent_to(&no_answer_ports), 0);
    let accepted: usize = accepting.iter().map(FaultProxy::accepted).sum();
    assert!(accepted >= ACCEPT_AND_STALL + STALL_IN_TLS);

    eprintln!(
        "monitor_real: setup {setup:.1?}, first round (200 stalled timed out) after \
         {first_round:.1?}, watched {watched:.1?}; healthy: {} checks, latencies {latencies:?} ms, \
         gaps {gaps:.2?}, worst main-lane wait {worst:?} (grew at {wait_steps:.2?}); stalled: {stalled_checks} checks (all \
         timeouts), {} first checks, {} suspect checks, {} skipped, max stalled in flight after \
         the first round {max_stalled_in_flight}, max SYN-SENT {max_syn_sent}, {accepted} \
         accepted by the stalling proxies; shutdown {shutdown:?}; test wall time {:.1?}",
        checks.len(),
        stats.first_checks,
        stats.suspect_checks,
        stats.skipped,
        test_started.elapsed()
    );
}
