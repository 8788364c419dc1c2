//! The scale bench (issue 16): the real `datahub-server` binary monitoring many connections
//! against the test kit's cheap loopback target ([`FakeTarget`]), measured from outside the
//! process and from the stored history. Run by `benches/benches/scale.rs` (the figures) and by
//! `benches/tests/scale_smoke.rs` (a small run in CI time proving the bench works and the
//! correctness goals hold).
//!
//! Scenario **a**, one replica on SQLite, `n` connections:
//! 1. an empty server's resident memory (the baseline);
//! 2. `n` connections saved through the Hub in-process (`Hub::create_connection` as the
//!    bootstrap admin, several at a time, before the server starts: the fastest honest way, the
//!    same rows, audit entries and encryption as the API makes), every one on the fake
//!    target's port, TLS mode `disable` (the target policy's floor lowered to allow it),
//!    `slow_ms` 60 s (a loaded machine must not turn a status), at the bench's interval;
//! 3. what the targets allow: `probe::test` called in-process against the fake target, 64 at a
//!    time, for 3 s;
//! 4. the server started on that folder; once warm (every connection checked once, or 2.5
//!    intervals passed) a window of `a_window` intervals: resident memory sampled every second
//!    (the maximum), the server's CPU time, and one client listing a random page of 50 over
//!    HTTP back to back (p99);
//! 5. from the stored history: checks per second in the window, missed intervals (gaps above
//!    1.5 intervals), double checks (two within half an interval).
//!
//! Scenario **b**, `replicas` servers on one PostgreSQL store (a kit cluster with
//! `pg_stat_statements`), `m` connections:
//! 1. seeded as in a; the replicas started together; each one's event stream opened;
//! 2. once warm, a window of 2.7 intervals: `flips` targets made down 0.1 interval in and up
//!    again at 1.4 intervals (each fails at least once: healthy → degraded → healthy); checks
//!    per replica from each one's `/metrics` (the share), statements and transactions from
//!    `pg_stat_statements` and `pg_stat_database` (per check), the history table's growth;
//! 3. every status change any stream carried (finished after the streams opened) must be on
//!    every stream;
//! 4. replica 0 killed with SIGKILL (mid-interval for most of its connections); the
//!    connections whose lease it held must each be checked by another replica within 2
//!    intervals;
//! 5. over the whole run: double checks from the history; gaps (missed intervals) in the window.
//!
//! Every goal prints as `GOAL <name> <measured> <limit> met|not met`, every other figure as
//! `FIGURE <name> <value> <unit>`. Everything is dialled on loopback.

pub mod history;
pub mod server;

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use datahub_core::audit::RequestInfo;
use datahub_core::crypto::Keyring;
use datahub_core::hub::Hub;
use datahub_core::model::{
    ConnectionDraft, ListQuery, MAX_PER_PAGE, MonitoringDraft, SortKey, TargetPolicy, TlsDraft,
    TlsMode, Visibility,
};
use datahub_core::monitor::{CheckResult, Checker, Monitor, MonitorConfig};
use datahub_core::net::{Dialer, Policy, StaticResolver};
use datahub_core::probe::{self, PolicyDial, ProbeRules};
use datahub_core::secret::Password;
use datahub_core::store::{PostgresOptions, PostgresStore, SqliteStore, Store};
use datahub_testkit::{FakeTarget, PgCluster, User};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use history::History;
pub use server::server_binary;

use history::{micros, now_micros};
use server::{Client, EventStream, ServerProcess, StatusChange, checks_done};

/// A fixed, public bench key (never used anywhere else).
pub const KEYRING: &str = "scale:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const ADMIN_PW: &str = "scale-bench-admin-pw-1";
const TARGET_PW: &str = "scale-bench-target-pw";
const PG_USER: &str = "datahub";
const PG_PASSWORD: &str = "scale-bench-store-pw-Vw3";
const PG_DATABASE: &str = "datahub";
/// Connections saved at once while seeding.
const SEED_TASKS: usize = 24;
/// How long a server may take to start (migrations, the monitor loading every connection).
const STARTUP: Duration = Duration::from_secs(600);

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connections of scenario a (`SCALE_N`, default 100,000).
    pub n: usize,
    /// Connections of scenario b (`SCALE_M`, default the smaller of `n` and 20,000).
    pub m: usize,
    /// Replicas of scenario b (`SCALE_REPLICAS`, default 4).
    pub replicas: usize,
    /// Every connection's monitoring interval (`SCALE_INTERVAL` in seconds, default 60; the
    /// model's minimum is 10).
    pub interval: Duration,
    /// Intervals measured in scenario a once warm (`SCALE_WINDOW`, default 2).
    pub a_window: u32,
    /// Targets made down and up again in scenario b (`SCALE_FLIPS`, default 20).
    pub flips: usize,
    /// Run scenario a (`SCALE_SCENARIOS` holds `a`; default both).
    pub run_a: bool,
    /// Run scenario b (`SCALE_SCENARIOS` holds `b`).
    pub run_b: bool,
    /// Run scenario m, the monitor's memory in-process (`SCALE_SCENARIOS` holds `m`).
    pub run_m: bool,
    /// The `datahub-server` binary.
    pub server_bin: PathBuf,
}

impl Config {
    /// The configuration from the `SCALE_*` environment variables, with `server_bin`.
    ///
    /// # Errors
    /// A message naming a variable that does not parse or is out of range.
    pub fn from_env(server_bin: PathBuf) -> Result<Self, String> {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name}: not a number: {v:?}")),
                Err(_) => Ok(default),
            }
        }
        let n: usize = var("SCALE_N", 100_000)?;
        let m: usize = var("SCALE_M", n.min(20_000))?;
        let replicas: usize = var("SCALE_REPLICAS", 4)?;
        let interval: u64 = var("SCALE_INTERVAL", 60)?;
        let a_window: u32 = var("SCALE_WINDOW", 2)?;
        let flips: usize = var("SCALE_FLIPS", 20)?;
        let scenarios = std::env::var("SCALE_SCENARIOS").unwrap_or_else(|_| "ab".to_owned());
        if !(10..=86_400).contains(&interval) {
            return Err("SCALE_INTERVAL: 10 to 86400 seconds (the model's range)".to_owned());
        }
        if n == 0 || m == 0 || replicas < 2 || a_window == 0 {
            return Err(
                "SCALE_N and SCALE_M at least 1, SCALE_REPLICAS at least 2, SCALE_WINDOW at least 1"
                    .to_owned(),
            );
        }
        Ok(Self {
            n,
            m,
            replicas,
            interval: Duration::from_secs(interval),
            a_window,
            flips: flips.min(m),
            run_a: scenarios.contains('a'),
            run_b: scenarios.contains('b'),
            run_m: scenarios.contains('m'),
            server_bin,
        })
    }
}

/// A goal's limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// Met when the measure is at most this.
    AtMost(f64),
    /// Met when the measure is at least this.
    AtLeast(f64),
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AtMost(v) => write!(f, "<={}", number(*v)),
            Self::AtLeast(v) => write!(f, ">={}", number(*v)),
        }
    }
}

/// One goal's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub name: String,
    pub measured: f64,
    pub limit: Limit,
}

impl Goal {
    /// Whether the measure meets the limit (NaN never does).
    pub fn met(&self) -> bool {
        match self.limit {
            Limit::AtMost(v) => self.measured <= v,
            Limit::AtLeast(v) => self.measured >= v,
        }
    }
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GOAL {} {} {} {}",
            self.name,
            number(self.measured),
            self.limit,
            if self.met() { "met" } else { "not met" }
        )
    }
}

/// A number with at most 3 decimals, trailing zeros dropped.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let text = format!("{v:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

/// What a run measured.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub goals: Vec<Goal>,
    /// `name value unit`.
    pub figures: Vec<(String, f64, String)>,
}

impl Outcome {
    fn goal(&mut self, name: &str, measured: f64, limit: Limit) {
        let goal = Goal {
            name: name.to_owned(),
            measured,
            limit,
        };
        println!("{goal}");
        self.goals.push(goal);
    }

    fn figure(&mut self, name: &str, value: f64, unit: &str) {
        println!("FIGURE {name} {} {unit}", number(value));
        self.figures.push((name.to_owned(), value, unit.to_owned()));
    }

    /// The goal named `name`.
    pub fn find(&self, name: &str) -> Option<&Goal> {
        self.goals.iter().find(|g| g.name == name)
    }

    fn value(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| *v)
    }
}

/// Runs the scenarios `config` asks for, printing each goal and figure as it is measured.
///
/// # Panics
/// When the set-up fails (no PostgreSQL binaries, the server does not start): a bench whose
/// set-up fails measures nothing.
pub fn run(config: &Config) -> Outcome {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut outcome = Outcome::default();
    println!(
        "scale bench: n {} (a), m {} on {} replicas (b), interval {:?}, load {}",
        config.n,
        config.m,
        config.replicas,
        config.interval,
        load_average()
    );
    runtime.block_on(async {
        if config.run_m {
            scenario_m(config, &mut outcome).await;
        }
        if config.run_a {
            scenario_a(config, &mut outcome).await;
        }
        if config.run_b {
            scenario_b(config, &mut outcome).await;
        }
    });
    projection(&mut outcome);
    println!("load at the end: {}", load_average());
    outcome
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// What seeding made.
struct Seeded {
    /// An admin API token, for the HTTP calls.
    token: String,
    /// Every connection's id.
    ids: Vec<String>,
}

/// A connection on the fake target: `flip-<i>` databases can be made down.
fn draft(i: usize, port: u16, interval: Duration, flip: bool) -> ConnectionDraft {
    ConnectionDraft {
        name: format!("scale-{i:06}"),
        description: Some(format!("scale bench connection {i}")),
        host: "127.0.0.1".to_owned(),
        port: Some(i64::from(port)),
        database: if flip {
            format!("flip-{i}")
        } else {
            "app".to_owned()
        },
        username: "app".to_owned(),
        password: Some(Password::from(TARGET_PW)),
        tls: TlsDraft {
            mode: Some(TlsMode::Disable),
            ..TlsDraft::default()
        },
        tags: vec!["scale".to_owned(), format!("group-{}", i % 10)],
        monitoring: MonitoringDraft {
            enabled: Some(true),
            interval_s: Some(i64::try_from(interval.as_secs()).unwrap()),
            slow_ms: Some(60_000),
        },
        ..ConnectionDraft::default()
    }
}

/// Bootstraps the admin, lowers the TLS floor to `disable`, makes an API token, and saves `n`
/// connections through the Hub, [`SEED_TASKS`] at a time; the first `flips` on `flip-<i>`.
async fn seed(
    store: Arc<dyn Store>,
    n: usize,
    port: u16,
    interval: Duration,
    flips: usize,
) -> Seeded {
    let started = Instant::now();
    let hub = Hub::open(store, Keyring::parse(KEYRING).unwrap())
        .await
        .unwrap();
    hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
        .await
        .unwrap();
    let admin = hub
        .login("admin", Password::from(ADMIN_PW), &RequestInfo::default())
        .await
        .unwrap();
    hub.set_policy(
        &admin,
        TargetPolicy {
            min_tls_mode: TlsMode::Disable,
            ..TargetPolicy::default()
        },
    )
    .await
    .unwrap();
    let token = hub
        .create_token(&admin, "scale-bench", None, false)
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SEED_TASKS {
        let (hub, admin, next) = (hub.clone(), admin.clone(), Arc::clone(&next));
        tasks.spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return made;
                }
                let saved = hub
                    .create_connection(&admin, draft(i, port, interval, i < flips))
                    .await
                    .unwrap();
                made.push((i, saved.id.to_string()));
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(made) = tasks.join_next().await {
        all.extend(made.unwrap());
    }
    all.sort();
    let took = started.elapsed();
    println!(
        "seeded {n} connections through Hub::create_connection in {:.1} s ({:.2} ms each)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e3 / n as f64
    );
    Seeded {
        token,
        ids: all.into_iter().map(|(_, id)| id).collect(),
    }
}

/// Checks a second `probe::test` manages against `fake` in-process, 64 at a time, for `span`.
async fn target_capacity(fake: &FakeTarget, span: Duration) -> f64 {
    let (spec, secrets) = draft(0, fake.port(), Duration::from_secs(60), false)
        .validate()
        .unwrap();
    let dial = Arc::new(PolicyDial::new(
        Arc::new(Dialer::new(Arc::new(StaticResolver::new()))),
        Arc::new(Policy::default()),
    ));
    let rules = ProbeRules {
        min_tls_mode: TlsMode::Disable,
        allow_cleartext_password: false,
    };
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (spec, secrets, dial) = (spec.clone(), secrets.clone(), Arc::clone(&dial));
        let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
        tasks.spawn(async move {
            while started.elapsed() < span {
                let report =
                    probe::test(dial.as_ref(), &spec, &secrets, &rules, probe::MAX_BUDGET).await;
                if report.ok {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a test of the fake target failed"
    );
    rate
}

/// Waits until `checked()` says every one of `n` connections has a check, or `deadline` (in
/// µs since the epoch) passes; returns when.
async fn wait_warm<F, Fut>(n: usize, deadline: i64, mut checked: F) -> i64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    loop {
        let count = checked().await;
        let now = now_micros();
        if count >= n || now >= deadline {
            if count < n {
                println!("not warm: {count} of {n} connections checked when the wait ended");
            }
            return now;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sleeps until `at` (µs since the epoch).
async fn sleep_until(at: i64) {
    let left = at - now_micros();
    if left > 0 {
        tokio::time::sleep(Duration::from_micros(left as u64)).await;
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The value at quantile `q` of sorted `times`, in ms.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1e3
}

/// A checker that answers at once and dials nothing: scenario m measures the monitor's own
/// memory, not the prober's.
#[derive(Debug)]
struct Instant200;

#[async_trait::async_trait]
impl Checker for Instant200 {
    async fn check(&self, _id: datahub_core::ConnectionId) -> CheckResult {
        CheckResult::success(1)
    }
}

/// This process's resident memory (`VmRSS`), in KiB.
fn own_rss_kib() -> u64 {
    server::rss_kib(std::process::id()).unwrap_or(0)
}

/// Scenario m: what the monitor itself keeps per connection, in-process (no server, no HTTP,
/// a checker answering at once): `n` connections saved on SQLite, every page of them listed
/// once (so SQLite's page cache is as warm as the monitor's own load leaves it), then the
/// resident memory before [`Monitor::start`] and once it holds every connection (interval 1 h:
/// nothing is checked yet), and, on a second store at a 10 s interval, once every connection
/// has been checked (its status tracker and uptime window loaded).
async fn scenario_m(config: &Config, out: &mut Outcome) {
    let n = config.n;
    println!("--- scenario m: the monitor's memory in-process, {n} connections");
    for (phase, interval) in [
        ("idle", Duration::from_secs(3_600)),
        ("checked", Duration::from_secs(10)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
        // Port 1: the checker dials nothing.
        seed(Arc::clone(&store), n, 1, interval, 0).await;
        let mut page = 1;
        loop {
            let query = ListQuery {
                sort: SortKey::Name,
                page,
                per_page: MAX_PER_PAGE,
                ..ListQuery::default()
            };
            let found = store
                .list_connections(&query, &Visibility::All)
                .await
                .unwrap();
            if found.items.len() < MAX_PER_PAGE as usize {
                break;
            }
            page += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = own_rss_kib();
        let monitor = Monitor::start(
            Arc::clone(&store),
            Arc::new(Instant200),
            MonitorConfig::default(),
        );
        let deadline = Instant::now() + Duration::from_secs(600);
        while monitor.stats().connections < n as u64 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if phase == "checked" {
            while monitor.stats().checks < n as u64 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = own_rss_kib();
        let stats = monitor.stats();
        monitor.shutdown().await;
        println!(
            "m {phase}: rss {before} KiB before the monitor, {after} KiB with {} connections, \
             {} checks",
            stats.connections, stats.checks
        );
        out.figure(
            &format!("m_rss_per_connection_{phase}"),
            after.saturating_sub(before) as f64 * 1024.0 / n as f64,
            "bytes",
        );
    }
}

async fn scenario_a(config: &Config, out: &mut Outcome) {
    println!(
        "--- scenario a: one replica, SQLite, {} connections",
        config.n
    );
    let interval = config.interval;
    let fake = FakeTarget::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("DATAHUB_MASTER_KEY", KEYRING),
        ("DATAHUB_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PW),
    ];

    // 1. An empty server's memory.
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    let mut empty = ServerProcess::start(&config.server_bin, &empty_dir, &[], &env);
    empty.ready(STARTUP).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base_rss = empty.rss_kib().unwrap_or(0);
    empty.stop();
    out.figure("a_empty_server_rss", base_rss as f64 / 1024.0, "MiB");

    // 2. Seeding.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let opened = data.clone();
    let store: Arc<dyn Store> = Arc::new(
        tokio::task::spawn_blocking(move || SqliteStore::open(&opened))
            .await
            .unwrap()
            .unwrap(),
    );
    let seeded = seed(store, config.n, fake.port(), interval, 0).await;

    // 3. What the targets allow.
    let capacity = target_capacity(&fake, Duration::from_secs(3)).await;
    out.figure("a_target_capacity", capacity, "checks/s");

    // 4. The server, warm, then the window.
    let mut srv = ServerProcess::start(&config.server_bin, &data, &[], &env);
    srv.ready(STARTUP).await;
    let started = now_micros();
    // Where the memory goes, by phase: once serving (the monitor's first load may still run),
    // once warm (every connection checked once), then the window's largest.
    let ready_rss = srv.rss_kib().unwrap_or(0);
    let n = config.n;
    let warm = wait_warm(n, started + micros(interval.mul_f64(2.5)), || {
        let data = data.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                History::read_sqlite(&data).map_or(0, |h| h.checked())
            })
            .await
            .unwrap_or(0)
        }
    })
    .await;
    println!(
        "a: warm {:.1} s after the server was ready",
        (warm - started) as f64 / 1e6
    );
    let warm_rss = srv.rss_kib().unwrap_or(0);
    let window = interval * config.a_window;
    let cpu0 = srv.cpu().unwrap_or_default();
    let t0 = now_micros();
    let stop = Arc::new(AtomicBool::new(false));
    let lister = {
        let (stop, token, addr) = (Arc::clone(&stop), seeded.token.clone(), srv.addr);
        let pages = n.div_ceil(50).max(1);
        tokio::spawn(async move {
            let mut client = Client::connect(addr).await.unwrap();
            let mut times = Vec::new();
            let mut failures = 0u64;
            let mut state = 0x9E37_79B9_7F4A_7C15u64;
            while !stop.load(Ordering::Relaxed) {
                // xorshift: a page at random, so no page stays in a cache of ours.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let page = (state % pages as u64) + 1;
                let path = format!("/api/v1/connections?page={page}&per_page=50");
                let began = Instant::now();
                match client.get(&path, Some(&token)).await {
                    Ok((status, _)) if status.is_success() => times.push(began.elapsed()),
                    _ => {
                        failures += 1;
                        client = Client::connect(addr).await.unwrap();
                    }
                }
            }
            (times, failures)
        })
    };
    // The list runs in the first half of the window; the monitor's CPU per check is read in
    // the second half, alone.
    let half = t0 + micros(window) / 2;
    let mut max_rss = srv.rss_kib().unwrap_or(0);
    let mut lister = Some(lister);
    let mut listed = None;
    let mut cpu_half = cpu0;
    let mut t_half = t0;
    while now_micros() < t0 + micros(window) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        max_rss = max_rss.max(srv.rss_kib().unwrap_or(0));
        if now_micros() >= half {
            if let Some(task) = lister.take() {
                stop.store(true, Ordering::Relaxed);
                listed = Some(task.await.unwrap());
                t_half = now_micros();
                cpu_half = srv.cpu().unwrap_or_default();
            }
        }
    }
    let t1 = now_micros();
    let cpu1 = srv.cpu().unwrap_or_default();
    if let Some(task) = lister.take() {
        stop.store(true, Ordering::Relaxed);
        listed = Some(task.await.unwrap());
        t_half = t1;
        cpu_half = cpu1;
    }
    let (mut times, list_failures) = listed.unwrap();
    let warnings = srv.warnings();
    times.sort_unstable();
    let read = data.clone();
    let history = tokio::task::spawn_blocking(move || History::read_sqlite(&read))
        .await
        .unwrap()
        .unwrap();
    srv.stop();

    // 5. The figures.
    let span = (t1 - t0) as f64 / 1e6;
    let checks = history.checks_between(t0, t1);
    let rate = checks as f64 / span;
    let demand = n as f64 / secs(interval);
    let cpu = (cpu1.saturating_sub(cpu0)).as_secs_f64();
    let quiet_checks = history.checks_between(t_half, t1);
    let quiet_cpu = cpu1.saturating_sub(cpu_half).as_secs_f64();
    let (_, examples) = history.double_check_examples(interval, 5);
    for (id, first, second) in &examples {
        println!("a: double check of {id}: {first:?} then {second:?}");
    }
    out.figure(
        "a_server_warnings",
        warnings as f64,
        "log lines at warn or error",
    );
    out.figure(
        "a_rss_ready",
        ready_rss as f64 / 1024.0,
        "MiB (server ready)",
    );
    out.figure(
        "a_rss_warm",
        warm_rss as f64 / 1024.0,
        "MiB (every connection checked)",
    );
    out.figure("a_window", span, "s");
    out.figure("a_checks_in_window", checks as f64, "checks");
    out.figure("a_demanded_rate", demand, "checks/s");
    out.figure("a_list_requests", times.len() as f64, "requests");
    out.figure("a_list_failures", list_failures as f64, "requests");
    out.figure("a_list_p50", quantile_ms(&times, 0.5), "ms");
    out.figure("a_server_cpu", cpu / span * 100.0, "% of a core");
    out.figure(
        "a_cpu_per_check",
        if quiet_checks > 0 {
            quiet_cpu * 1e3 / quiet_checks as f64
        } else {
            f64::NAN
        },
        "ms (no list load)",
    );
    out.figure(
        "a_rss_per_connection",
        (max_rss.saturating_sub(base_rss)) as f64 / n as f64,
        "KiB",
    );
    out.goal("a_rss_mb", max_rss as f64 / 1024.0, Limit::AtMost(300.0));
    out.goal(
        "a_list_p99_ms",
        quantile_ms(&times, 0.99),
        Limit::AtMost(10.0),
    );
    // The monitor is to keep up with what the connections ask for, as far as the targets
    // allow; 5 % below covers the jitter of which checks fall inside the window.
    out.goal(
        "a_checks_per_s",
        rate,
        Limit::AtLeast(0.95 * demand.min(capacity)),
    );
    out.goal(
        "a_missed_intervals",
        history.missed_intervals(t0, t1, interval) as f64,
        Limit::AtMost(0.0),
    );
    out.goal(
        "a_double_checks",
        history.double_checks(interval) as f64,
        Limit::AtMost(0.0),
    );
}

/// Counters of the store's PostgreSQL at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct PgStats {
    /// Calls of statements naming `check_leases`, by the store's role.
    lease_calls: i64,
    /// Calls of statements naming `monitor_replicas` (the monitors' heartbeats), by the
    /// store's role.
    beat_calls: i64,
    /// Calls of every statement, by the store's role.
    calls: i64,
    /// Transactions committed or rolled back in the store's database.
    xacts: i64,
    /// Bytes of `health_checks` with its indexes and TOAST.
    history_bytes: i64,
}

async fn pg_stats(client: &tokio_postgres::Client) -> PgStats {
    let row = client
        .query_one(
            "SELECT coalesce(sum(s.calls) FILTER (WHERE s.query ILIKE '%check_leases%'), 0)::int8, \
                    coalesce(sum(s.calls), 0)::int8, \
                    coalesce(sum(s.calls) FILTER (WHERE s.query ILIKE '%monitor_replicas%'), 0)::int8 \
             FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid \
             WHERE r.rolname = $1",
            &[&PG_USER],
        )
        .await
        .unwrap();
    let xacts = client
        .query_one(
            "SELECT (xact_commit + xact_rollback)::int8 FROM pg_stat_database WHERE datname = $1",
            &[&PG_DATABASE],
        )
        .await
        .unwrap();
    let bytes = client
        .query_one("SELECT pg_total_relation_size('health_checks')::int8", &[])
        .await
        .unwrap();
    PgStats {
        lease_calls: row.get(0),
        calls: row.get(1),
        beat_calls: row.get(2),
        xacts: xacts.get(0),
        history_bytes: bytes.get(0),
    }
}

/// Status changes that finished in `[from, to]` (µs).
fn changes_between(changes: &[StatusChange], from: i64, to: i64) -> BTreeSet<StatusChange> {
    changes
        .iter()
        .filter(|c| {
            OffsetDateTime::parse(&c.at, &Rfc3339).is_ok_and(|at| {
                let at = i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX);
                (from..=to).contains(&at)
            })
        })
        .cloned()
        .collect()
}

async fn scenario_b(config: &Config, out: &mut Outcome) {
    let (m, replicas, interval) = (config.m, config.replicas, config.interval);
    println!("--- scenario b: {replicas} replicas, one PostgreSQL store, {m} connections");
    let fake = FakeTarget::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let builder = PgCluster::builder()
        .user(User::new(PG_USER).password(PG_PASSWORD))
        .database(PG_DATABASE, PG_USER)
        // Each replica's pool (16) and event listener, the seeding Hub, the bench.
        .max_connections(u32::try_from(20 * replicas + 40).unwrap())
        .setting("shared_preload_libraries", "pg_stat_statements")
        .setting("pg_stat_statements.max", "1000");
    let cluster = tokio::task::spawn_blocking(move || builder.start().unwrap())
        .await
        .unwrap();
    let mut superuser = cluster.superuser_config();
    superuser.dbname(PG_DATABASE);
    let (pg, connection) = superuser.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    pg.batch_execute("CREATE EXTENSION pg_stat_statements")
        .await
        .unwrap();

    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(
            cluster.config(PG_USER, PG_DATABASE),
            PostgresOptions::default(),
        )
        .await
        .unwrap(),
    );
    let flips = config.flips;
    let seeded = seed(store, m, fake.port(), interval, flips).await;
    let flip_ids: Vec<String> = seeded.ids.iter().take(flips).cloned().collect();

    let url = cluster.url(PG_USER, PG_DATABASE);
    let env = [("DATAHUB_MASTER_KEY", KEYRING)];
    let mut servers: Vec<ServerProcess> = (0..replicas)
        .map(|i| {
            let data = dir.path().join(format!("replica-{i}"));
            std::fs::create_dir(&data).unwrap();
            ServerProcess::start(&config.server_bin, &data, &["--store", &url], &env)
        })
        .collect();
    for srv in &mut servers {
        srv.ready(STARTUP).await;
    }
    let started = now_micros();
    let mut streams = Vec::new();
    for srv in &servers {
        // A replica just started is busy loading and first-checking everything: give its
        // stream a few tries.
        let mut tries = 0;
        let stream = loop {
            match EventStream::open(srv.addr, &seeded.token).await {
                Ok(stream) => break stream,
                Err(e) if tries < 4 => {
                    tries += 1;
                    println!("b: event stream not open yet ({e}); trying again");
                }
                Err(e) => panic!("the event stream did not open: {e}"),
            }
        };
        streams.push(stream);
    }
    let opened = now_micros();
    let pg_ref = &pg;
    let warm = wait_warm(
        m,
        started + micros(interval.mul_f64(2.5)),
        move || async move {
            pg_ref
                .query_one(
                    "SELECT count(DISTINCT connection_id)::int8 FROM health_checks",
                    &[],
                )
                .await
                .map_or(0, |r| usize::try_from(r.get::<_, i64>(0)).unwrap_or(0))
        },
    )
    .await;
    println!(
        "b: warm {:.1} s after the replicas were ready",
        (warm - started) as f64 / 1e6
    );

    // The window: shares, store work, a flip of some targets.
    let mut before = Vec::new();
    for srv in &servers {
        before.push(checks_done(srv.addr, &seeded.token).await.unwrap());
    }
    let cpu0: Vec<Duration> = servers
        .iter()
        .map(|s| s.cpu().unwrap_or_default())
        .collect();
    let pg_pid = cluster.server_pid().unwrap_or(0);
    let pg_cpu0 = server::cpu_time_with_children(pg_pid);
    let stats0 = pg_stats(&pg).await;
    let t0 = now_micros();
    sleep_until(t0 + micros(interval.mul_f64(0.1))).await;
    for i in 0..flips {
        fake.set_down(&format!("flip-{i}"), true);
    }
    sleep_until(t0 + micros(interval.mul_f64(1.4))).await;
    for i in 0..flips {
        fake.set_down(&format!("flip-{i}"), false);
    }
    sleep_until(t0 + micros(interval.mul_f64(2.7))).await;
    let t1 = now_micros();
    let stats1 = pg_stats(&pg).await;
    let pg_cpu1 = server::cpu_time_with_children(pg_pid);
    let cpu1: Vec<Duration> = servers
        .iter()
        .map(|s| s.cpu().unwrap_or_default())
        .collect();
    let mut after = Vec::new();
    for srv in &servers {
        after.push(checks_done(srv.addr, &seeded.token).await.unwrap());
    }
    // Let the last events of the window reach every stream.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let history = History::read_postgres(&pg).await.unwrap();
    let checks = history.checks_between(t0, t1);
    let span = (t1 - t0) as f64 / 1e6;
    out.figure("b_window", span, "s");
    out.figure("b_checks_in_window", checks as f64, "checks");
    out.figure("b_demanded_rate", m as f64 / secs(interval), "checks/s");
    out.figure("b_checks_per_s", checks as f64 / span, "checks/s");
    let per_check = |d: i64| {
        if checks > 0 {
            d as f64 / checks as f64
        } else {
            f64::NAN
        }
    };
    let monitor_cpu: f64 = cpu0
        .iter()
        .zip(&cpu1)
        .map(|(a, b)| b.saturating_sub(*a).as_secs_f64())
        .sum();
    out.figure(
        "b_replica_cpu_per_check",
        per_check(1) * monitor_cpu * 1e3,
        "ms (all replicas)",
    );
    out.figure(
        "b_postgres_cpu_per_check",
        per_check(1) * pg_cpu1.saturating_sub(pg_cpu0).as_secs_f64() * 1e3,
        "ms",
    );
    out.figure(
        "b_statements_per_check",
        per_check(stats1.calls - stats0.calls),
        "statements",
    );
    out.figure(
        "b_transactions_per_check",
        per_check(stats1.xacts - stats0.xacts),
        "transactions",
    );
    out.figure(
        "b_history_bytes_per_check",
        per_check(stats1.history_bytes - stats0.history_bytes),
        "bytes",
    );
    let done: Vec<u64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.saturating_sub(*b))
        .collect();
    println!("b: checks per replica in the window: {done:?}");
    let mean = done.iter().sum::<u64>() as f64 / done.len() as f64;
    let spread = done
        .iter()
        .map(|d| ((*d as f64 / mean) - 1.0).abs() * 100.0)
        .fold(0.0, f64::max);
    out.goal(
        "b_share_spread_pct",
        if mean > 0.0 { spread } else { f64::INFINITY },
        Limit::AtMost(15.0),
    );
    out.goal(
        "b_gaps",
        history.missed_intervals(t0, t1, interval) as f64,
        Limit::AtMost(0.0),
    );
    out.goal(
        "b_lease_queries_per_check",
        per_check(stats1.lease_calls - stats0.lease_calls),
        Limit::AtMost(1.0),
    );
    out.figure(
        "b_heartbeat_statements_per_check",
        per_check(stats1.beat_calls - stats0.beat_calls),
        "statements (monitor_replicas, not in the lease count)",
    );

    // Every stream carries every status change made after the streams opened.
    let seen: Vec<BTreeSet<StatusChange>> = streams
        .iter()
        .map(|s| changes_between(&s.snapshot().0, opened + 1_000_000, t1))
        .collect();
    let union: BTreeSet<StatusChange> = seen.iter().flatten().cloned().collect();
    let missing: usize = seen.iter().map(|s| union.difference(s).count()).sum();
    let flipped = flip_ids
        .iter()
        .filter(|id| union.iter().any(|c| &c.id == *id && c.from == "healthy"))
        .count();
    for (i, s) in streams.iter().enumerate() {
        let (_, checked, resyncs, ended) = s.snapshot();
        println!(
            "b: stream of replica {i}: {} status changes in the window, {checked} checks, \
             {resyncs} resyncs, ended {ended}",
            seen[i].len()
        );
    }
    out.figure("b_status_changes", union.len() as f64, "in the window");
    let steady_changes = union.iter().filter(|c| !flip_ids.contains(&c.id)).count();
    out.figure(
        "b_status_changes_of_steady_targets",
        steady_changes as f64,
        "in the window (targets never made down)",
    );
    out.figure(
        "b_failed_checks_of_steady_targets",
        history.failures_between(t0, t1, &flip_ids) as f64,
        "in the window",
    );
    for change in union.iter().filter(|c| !flip_ids.contains(&c.id)).take(3) {
        println!("b: a steady target's status change: {change:?}");
    }
    out.figure("b_flipped_targets_seen_failing", flipped as f64, "targets");
    // A change is spurious when its `from` is not the stored status before its check (`unknown`
    // with none), or its `to` not that check's: a replica deriving it from a stale view.
    let mut spurious = 0usize;
    for change in &union {
        let Ok(at) = OffsetDateTime::parse(&change.at, &Rfc3339) else {
            spurious += 1;
            continue;
        };
        let rows = pg
            .query(
                "SELECT status, at = $2 FROM health_checks \
                 WHERE connection_id = $1::text::uuid AND at <= $2 ORDER BY at DESC LIMIT 2",
                &[&change.id, &at],
            )
            .await
            .unwrap();
        let statuses: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let ok = match statuses.as_slice() {
            [(to, true), rest @ ..] => {
                let from = rest.first().map_or("unknown", |(s, _)| s.as_str());
                *to == change.to && from == change.from
            }
            _ => false,
        };
        if !ok {
            spurious += 1;
            if spurious <= 3 {
                println!("b: a spurious status change: {change:?}, stored {statuses:?}");
            }
        }
    }
    out.goal(
        "b_spurious_status_changes",
        spurious as f64,
        Limit::AtMost(0.0),
    );
    out.goal("b_events_missing", missing as f64, Limit::AtMost(0.0));

    // SIGKILL of replica 0: its leased connections are checked by the others within 2
    // intervals.
    let victim = servers[0].monitor_id().unwrap();
    let held: Vec<String> = pg
        .query(
            "SELECT connection_id::text FROM check_leases WHERE holder::text = $1",
            &[&victim],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    drop(streams);
    let killed = now_micros();
    servers[0].kill9();
    println!(
        "b: killed replica 0 (SIGKILL), which held {} leases",
        held.len()
    );
    let give_up = killed + micros(interval.mul_f64(2.5));
    let history = loop {
        let history = History::read_postgres(&pg).await.unwrap();
        let all_seen = history
            .first_after(&held, killed)
            .iter()
            .all(Option::is_some);
        if all_seen || now_micros() > give_up {
            break history;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let firsts = history.first_after(&held, killed);
    let takeover = if firsts.iter().all(Option::is_some) {
        firsts.iter().flatten().copied().max().unwrap_or(0) as f64 / micros(interval) as f64
    } else {
        f64::INFINITY
    };
    out.figure("b_killed_replica_leases", held.len() as f64, "connections");
    out.goal("b_takeover_intervals", takeover, Limit::AtMost(2.0));
    let (doubles, examples) = history.double_check_examples(interval, 5);
    for (id, first, second) in &examples {
        println!("b: double check of {id}: {first:?} then {second:?}");
    }
    for (i, srv) in servers.iter().enumerate() {
        println!(
            "b: replica {i} logged {} warnings or errors",
            srv.warnings()
        );
        if srv.warnings() > 0 {
            println!("{}", srv.first_warnings().join("\n"));
            println!(
                "{}",
                srv.log()
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    out.goal("b_double_checks", doubles as f64, Limit::AtMost(0.0));
    for srv in servers.drain(1..) {
        srv.stop();
    }
    drop(pg);
    drop(cluster);
}

/// 1,000,000 connections at 60 s from the figures measured (printed; `benches/README.md`
/// explains it).
fn projection(out: &mut Outcome) {
    let rate = 1_000_000.0 / 60.0;
    let mut lines = Vec::new();
    if let Some(cpu) = out.value("b_replica_cpu_per_check") {
        lines.push(("projection_replica_cores", cpu * rate / 1e3, "cores"));
    }
    if let Some(kib) = out.value("a_rss_per_connection") {
        lines.push((
            "projection_replica_memory_total",
            kib * 1e6 / 1024.0 / 1024.0,
            "GiB (all replicas)",
        ));
    }
    if let Some(cpu) = out.value("b_postgres_cpu_per_check") {
        lines.push(("projection_postgres_cores", cpu * rate / 1e3, "cores"));
    }
    if let Some(statements) = out.value("b_statements_per_check") {
        lines.push((
            "projection_postgres_statements",
            statements * rate,
            "statements/s",
        ));
    }
    if let Some(bytes) = out.value("b_history_bytes_per_check") {
        lines.push((
            "projection_history_growth",
            bytes * rate * 86_400.0 / 1e9,
            "GB/day",
        ));
    }
    for (name, value, unit) in lines {
        out.figure(name, value, unit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goal_lines_read_at_a_glance() {
        let goal = Goal {
            name: "a_rss_mb".into(),
            measured: 123.456_78,
            limit: Limit::AtMost(300.0),
        };
        assert_eq!(goal.to_string(), "GOAL a_rss_mb 123.457 <=300 met");
        let missed = Goal {
            name: "b_takeover_intervals".into(),
            measured: f64::INFINITY,
            limit: Limit::AtMost(2.0),
        };
        assert_eq!(
            missed.to_string(),
            "GOAL b_takeover_intervals inf <=2 not met"
        );
        let nan = Goal {
            name: "x".into(),
            measured: f64::NAN,
            limit: Limit::AtLeast(1.0),
        };
        assert!(!nan.met());
    }
}
