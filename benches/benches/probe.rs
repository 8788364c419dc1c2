//! Benches of the prober and the health monitor against a throwaway kit cluster (TLS with a
//! valid certificate, a SCRAM user), loopback only.
//!
//! - `probe/verify_full_scram` vs `bare/verify_full_scram`: the product's test (`probe::test`
//!   through the one dialer, `localhost` resolved by a static resolver to 127.0.0.1, verify-full
//!   with the kit CA) against a bare tokio-postgres + rustls client (`Config::connect`, `SELECT
//!   1`, close) with the same CA, name and channel binding. Goal: p50 ratio ≤ 1.10. The probe also
//!   runs its probe query (version, database, user, recovery, connections, TLS facts): that is
//!   part of the product's test and is measured as it is; the bench prints each step's median so
//!   the share of the difference spent in the query is visible, and it times a third series, the
//!   bare client running the probe's own query, which separates the prober's cost from the
//!   query's. Every test after the first reuses the SCRAM keys the server verified
//!   (`probe/scram_cache.rs`), as every monitor check after a target's first does: the series
//!   measure that path; a credential's first test also runs PBKDF2 (about 0.5 ms of CPU more,
//!   the cost every call had before the cache). The ratio comes from a hand-timed series interleaving the three (rotating which goes
//!   first); Criterion then measures the product and the bare client each.
//! - `budget/no_answer`: a target whose listener never answers a SYN, at the default budget
//!   (5 s); goal ≤ 5.05 s. Too slow for Criterion: a few runs timed by hand, the max printed.
//! - Monitor throughput: checks per second completed by the monitor (`Hub::start_monitor`, the
//!   Hub's real checker: claim the check (the claim returns the row), open the secrets, take
//!   the policy (cached by the Hub for at most 1 s), `probe::test`, record the check in
//!   SQLite) at concurrency 32, against loops of 32 tasks doing the client work back to back:
//!   the bare client (the goal's reference: ≥ 90 %), the bare client running the probe's query,
//!   and `probe::test` alone.
//!   Loops and monitor take turns in rounds (three): each round runs the three loops for 5 s
//!   each and then the monitor (started anew, settled, measured for 10 s, shut down), so the
//!   machine's drift (this is a shared VM: consecutive 5 s windows differ by up to 25 %) falls
//!   on both sides alike; the goal is judged on the means over the rounds, and each round's
//!   own ratio is printed too.
//!
//! How the monitor is saturated: it checks each connection on its interval (10 s at least), so
//! it completes at most `N / 10` checks a second. To measure throughput rather than the
//! interval, the bench saves `N` connections with `N / 10 s` ≈ 1.5 × the rate a first
//! `probe::test` loop reached (so the work offered exceeds what 32 checks in flight can do, and
//! checks queue for permits). Before the rounds, one monitor run makes every connection's
//! first check: first checks have a lane of their own (16 wide, apart from the 32-wide main
//! lane), and from then on each run resumes every connection (all healthy) in the main lane
//! from the stored history, so exactly 32 checks are in flight. Each round's run is measured
//! only once it has made `2 N` checks, so that every connection has had its first check since
//! the start: that first check also loads the connection's state from the store (its history
//! once at its first due time, and the summary and history again when the lease shows the
//! last run as the previous holder), which a long-running monitor does only at its start.
//! Measured from `N` checks on instead, the window still held many of them: 2.03 ms of client
//! CPU per check instead of 1.61 ms, 184 checks/s instead of 249/s
//! (`PROBE_BENCH_PROFILE=monitor_rounds:2500`, one run each). The bench prints the offered rate next to the
//! measured one: a measured rate clearly below the offered one (and skipped checks) shows the
//! monitor was saturated. It also prints this process's CPU time per check for each loop and
//! for the monitor (Linux, from `/proc/self/stat`): CPU per check moves much less with the
//! machine's load than rates do, so the differences are the steadier figures: `probe::test`
//! loop minus the bare loop running the probe's query is the prober's own client cost, monitor
//! minus `probe::test` loop the monitor's own.
//!
//! - `test_many` (issue 15): 200 saved-like connections (each its own spec, the same target)
//!   tested 16 at a time, tests a second over the batch, median of 3 rounds, each round one
//!   batch through `probe::test` alone (`FIGURE probe_test_many_per_s <n>`) and one through a
//!   Hub over a temporary SQLite data folder holding them, by name as `datahub-py`'s local
//!   `test_many` does (`FIGURE hub_test_many_per_s <n>`), with this process's CPU per test of
//!   each and `GOAL hub_test_many_over_probe_loop <hub / probe> 0.90 met|not met` (at least).
//!   Then 200 tests by name one at a time through that Hub: `FIGURE
//!   hub_test_over_total_ms_p50_ms`, the p50 of each call's wall time minus its report's
//!   `total_ms` (what the Hub adds around the prober in local mode, Python aside).
//!
//! The interleaved series end with `GOAL probe_over_bare_p50 <ratio> 0.80 met|not met` (issue
//! 16, item 4: the prober at most 0.80 × the bare client at p50).
//!
//! The monitor part runs on each store of `PROBE_BENCH_STORES` (default `sqlite,postgres`: the
//! PostgreSQL store is a database of the same kit cluster, reset for the run) and ends with the
//! goal lines `GOAL monitor_cpu_per_check_<store> <monitor CPU / probe::test loop CPU> 1.25
//! met|not met`, and `GOAL lease_queries_per_check_<store>` / `record_queries_per_check_<store>`
//! (limit 1): on PostgreSQL the statements `pg_stat_statements` counted in the store's database
//! during the monitor's windows (`BEGIN`/`COMMIT` included), on SQLite the monitor's own count of
//! its claim and record calls (`MonitorStats::lease_calls`, `record_calls`: each one write).
//!
//! Run: `cargo bench -p datahub-benches --bench probe` (about 20 minutes), or only the monitor's
//! part: `PROBE_BENCH_ONLY=monitor cargo bench -p datahub-benches --bench probe` (about 5
//! minutes a store), or only the prober's part (the interleaved series and `test_many`, about
//! a minute): `PROBE_BENCH_ONLY=prober`.
//!
//! Profiling: `PROBE_BENCH_PROFILE=probe:100` (or `bare:`, `bare_sql:`, `monitor:`) runs only
//! that work, N times, after the set-up (`probe_loop:S` and `bare_loop:S`: the 32-wide loops
//! for S seconds; `monitor_rounds:N`: one round's monitor run, after the first checks;
//! `many_probe:N` and `many_hub:N`: N batches of `test_many`'s one side); with `PROBE_BENCH_PROFILER=callgrind` under
//! `valgrind --tool=callgrind --instr-atstart=no <bench binary> --bench` only the work is
//! instrumented (instruction counts, steady on a loaded machine; note valgrind hides SHA-NI, so
//! SCRAM's SHA-256 is counted in software), with `perf` a `perf record -g` is attached.

// A bench whose set-up fails is a bug in the bench: unwrapping is the clearest report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use datahub_core::audit::RequestInfo;
use datahub_core::crypto::Keyring;
use datahub_core::hub::{Hub, RateLimit};
use datahub_core::model::{
    ConnectionDraft, ConnectionSecrets, ConnectionSpec, ListQuery, MAX_PER_PAGE, TlsMode,
    Visibility,
};
use datahub_core::monitor::{Monitor, MonitorConfig};
use datahub_core::net::{Dialer, Policy, StaticResolver};
use datahub_core::probe::{self, MAX_BUDGET, PolicyDial, ProbeRules, Report, StepName};
use datahub_core::rbac::Principal;
use datahub_core::secret::Password;
use datahub_core::store::{PostgresOptions, PostgresStore, SqliteStore, Store};
use datahub_testkit::{Fault, FaultProxy, PgCluster, ServerCert, User};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use rustls_tokio_postgres::MakeRustlsConnect;
use tokio::runtime::Runtime;
use tokio_postgres::config::SslMode;

/// A fixed, public bench key (never used anywhere else).
const KEYRING: &str = "k1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const ADMIN_PW: &str = "bench-admin-password-1";
const DB_USER: &str = "app";
const DB_PASSWORD: &str = "bench-probe-pw-7Hq2";
const DB_NAME: &str = "postgres";
/// The TLS name both clients verify; the static resolver (product) and `hostaddr` (bare) make
/// it 127.0.0.1 without DNS.
const HOST: &str = "localhost";
const SELECT_1: &str = "SELECT 1";
/// The prober's query as `probe::test` sends it with its full 2 s statement timeout.
static PROBE_SQL: LazyLock<String> =
    LazyLock::new(|| probe::probe_sql(probe::QUERY_TIMEOUT, probe::SessionFacts::Reported));
/// Room for the monitor's and the loops' 32 connections plus the bench's own.
const MAX_CONNECTIONS: u32 = 300;

/// Interleaved rounds (product, bare, bare with the probe's query) timed by hand.
const ROUNDS: usize = 300;
/// Runs of the no-answer target at the default budget.
const NO_ANSWER_RUNS: usize = 3;
/// Checks in flight, for the monitor and for the loops it is compared with.
const CONCURRENCY: usize = 32;
/// How long each client loop runs.
const LOOP_WINDOW: Duration = Duration::from_secs(5);
/// The monitoring interval of every saved connection: the shortest the model allows.
const INTERVAL_S: u32 = 10;
/// How long the monitor is measured in each round, once it has settled.
const MONITOR_WINDOW: Duration = Duration::from_secs(10);
/// Rounds of the throughput comparison: each runs the three client loops, then the monitor.
const THROUGHPUT_ROUNDS: usize = 3;
/// The longest the first checks of all connections may take before the bench gives up.
const WARM_UP_LIMIT: Duration = Duration::from_secs(300);
/// Work offered to the monitor, as a multiple of the `probe::test` loop's rate.
const OVERLOAD: f64 = 1.5;
/// Bounds on the connections saved for the monitor (seeding time).
const MIN_MONITORED: usize = 200;
const MAX_MONITORED: usize = 8_000;
/// Concurrent tasks saving connections through the Hub.
const SEED_TASKS: usize = 4;
/// The PostgreSQL store's user and database, on the same kit cluster as the targets (the
/// targets' database is `postgres`, so the store's statements are counted apart).
const STORE_USER: &str = "datahub";
const STORE_PASSWORD: &str = "bench-store-pw-5Rt8";
const STORE_DB: &str = "datahub_store";
/// The goal on the monitor's CPU per check, as a multiple of the `probe::test` loop's.
const CPU_GOAL: f64 = 1.25;
/// The goal on the prober's p50 as a multiple of the bare client's (issue 16, item 4).
const PROBE_GOAL: f64 = 0.80;
/// Issue 15's `test_many` baseline: this many saved-like connections, tested through
/// `probe::test` this many at a time, in a few runs.
const MANY: usize = 200;
const MANY_CONCURRENCY: usize = 16;
const MANY_RUNS: usize = 3;
/// Tests by name one at a time through the Hub (`FIGURE hub_test_over_total_ms_p50_ms`).
const SINGLE_TESTS: usize = 200;
/// Issue 15's goal: the Hub's `test_many` at least this share of the prober's own loop.
const MANY_GOAL: f64 = 0.90;

/// Which store the monitor's Hub runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// The stores of `PROBE_BENCH_STORES` (comma-separated; default both).
    fn chosen() -> Vec<Self> {
        let list = std::env::var("PROBE_BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
        list.split(',')
            .map(|name| match name.trim() {
                "sqlite" => Self::Sqlite,
                "postgres" => Self::Postgres,
                other => panic!("unknown store {other:?} in PROBE_BENCH_STORES"),
            })
            .collect()
    }
}

/// A `GOAL` line met when the measure is at least the limit.
fn goal_at_least(name: &str, measured: f64, limit: f64) {
    println!(
        "GOAL {name} {measured:.3} {limit} {}",
        if measured >= limit { "met" } else { "not met" }
    );
}

/// A `GOAL` line: `GOAL <name> <measured> <limit> met|not met` (met when at most the limit).
fn goal(name: &str, measured: Option<f64>, limit: f64) {
    match measured {
        Some(m) => println!(
            "GOAL {name} {m:.3} {limit} {}",
            if m <= limit { "met" } else { "not met" }
        ),
        None => println!("GOAL {name} n/a {limit} not met"),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new(DB_USER).password(DB_PASSWORD))
        .user(User::new(STORE_USER).password(STORE_PASSWORD))
        .database(STORE_DB, STORE_USER)
        // Statements per check on the PostgreSQL store are counted, not estimated.
        .setting("shared_preload_libraries", "pg_stat_statements")
        .max_connections(MAX_CONNECTIONS)
        .start()
        .unwrap();
    let ca = cluster.ca_pem().unwrap().to_owned();
    let product = Arc::new(Product::new(cluster.port(), &ca));
    let bare = Arc::new(Bare::new(cluster.port(), &ca));

    // Both paths work, encrypted and authenticated, before anything is timed.
    let report = rt.block_on(product.test());
    assert!(report.ok, "{report:?}");
    assert!(report.tls.is_some());
    let tls = rt.block_on(bare.ssl_in_use());
    assert!(tls, "the bare client is not on TLS");

    if let Ok(what) = std::env::var("PROBE_BENCH_PROFILE") {
        profile(&rt, &product, &bare, &cluster, &ca, &what);
        return;
    }

    cluster
        .psql(
            STORE_DB,
            // In a schema of its own: the store's schema is dropped for every fresh store.
            "CREATE SCHEMA bench_stats; \
             CREATE EXTENSION pg_stat_statements SCHEMA bench_stats",
        )
        .unwrap();
    // `PROBE_BENCH_ONLY=monitor`: only the monitor's throughput and CPU per check.
    if std::env::var("PROBE_BENCH_ONLY").is_ok_and(|only| only == "monitor") {
        for store in StoreKind::chosen() {
            throughput(&rt, &product, &bare, &cluster, &ca, store);
        }
        return;
    }

    interleaved(&rt, &product, &bare);
    test_many(&rt, cluster.port(), &ca);
    // `PROBE_BENCH_ONLY=prober`: only the interleaved series and `test_many`.
    if std::env::var("PROBE_BENCH_ONLY").is_ok_and(|only| only == "prober") {
        return;
    }

    for (name, group) in [("probe", 0), ("bare", 1)] {
        let mut g = c.benchmark_group(name);
        g.sample_size(20)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        g.bench_function("verify_full_scram", |b| {
            b.iter(|| {
                if group == 0 {
                    assert!(rt.block_on(black_box(&product).test()).ok);
                } else {
                    black_box(rt.block_on(bare.run()));
                }
            })
        });
        g.finish();
    }

    no_answer(&rt);
    for store in StoreKind::chosen() {
        throughput(&rt, &product, &bare, &cluster, &ca, store);
    }
    drop(cluster);
}

/// The product's path: `probe::test` through the one dialer.
struct Product {
    dial: PolicyDial,
    spec: ConnectionSpec,
    secrets: ConnectionSecrets,
    rules: ProbeRules,
}

impl Product {
    fn new(port: u16, ca: &str) -> Self {
        let (spec, secrets) = draft("probe-bench", port, ca).validate().unwrap();
        Self {
            dial: dialer(),
            spec,
            secrets,
            rules: ProbeRules::default(),
        }
    }

    async fn test(&self) -> Report {
        probe::test(
            &self.dial,
            &self.spec,
            &self.secrets,
            &self.rules,
            MAX_BUDGET,
        )
        .await
    }
}

/// The one dialer with a static resolver and the default policy (loopback allowed).
fn dialer() -> PolicyDial {
    PolicyDial::new(Arc::new(plain_dialer()), Arc::new(Policy::default()))
}

fn plain_dialer() -> Dialer {
    let resolver = StaticResolver::new().with(HOST, &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    Dialer::new(Arc::new(resolver))
}

/// A verify-full connection to the kit cluster, checked every 10 s when saved.
fn draft(name: &str, port: u16, ca: &str) -> ConnectionDraft {
    let mut d = ConnectionDraft {
        name: name.into(),
        host: HOST.into(),
        port: Some(i64::from(port)),
        database: DB_NAME.into(),
        username: DB_USER.into(),
        password: Some(Password::from(DB_PASSWORD)),
        ..ConnectionDraft::default()
    };
    d.tls.mode = Some(TlsMode::VerifyFull);
    d.tls.ca_cert_pem = Some(ca.to_owned());
    d.monitoring.interval_s = Some(i64::from(INTERVAL_S));
    d
}

/// The bare client: tokio-postgres over rustls (ring, only the kit CA trusted, the host name
/// checked), channel binding at tokio-postgres's default (`prefer`), as the product's default.
struct Bare {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
}

/// The parts of one bare run.
struct BareTimes {
    connect: Duration,
    query: Duration,
    close: Duration,
}

impl Bare {
    fn new(port: u16, ca: &str) -> Self {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let tls =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let mut config = tokio_postgres::Config::new();
        config
            .host(HOST)
            .hostaddr(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .port(port)
            .user(DB_USER)
            .password(DB_PASSWORD)
            .dbname(DB_NAME)
            .ssl_mode(SslMode::Require)
            .connect_timeout(MAX_BUDGET);
        Self {
            config,
            tls: MakeRustlsConnect::new(tls),
        }
    }

    /// Connects, runs `SELECT 1`, closes (the connection task ends after `Terminate`).
    async fn run(&self) -> BareTimes {
        self.run_sql(SELECT_1).await
    }

    /// Connects, runs `sql` (simple protocol), closes.
    async fn run_sql(&self, sql: &str) -> BareTimes {
        let started = Instant::now();
        let (client, connection) = self.config.connect(self.tls.clone()).await.unwrap();
        let driver = tokio::spawn(connection);
        let connected = Instant::now();
        let rows = client.simple_query(sql).await.unwrap();
        assert!(rows.len() >= 2);
        let queried = Instant::now();
        drop(client);
        driver.await.unwrap().unwrap();
        BareTimes {
            connect: connected - started,
            query: queried - connected,
            close: queried.elapsed(),
        }
    }

    /// Whether the server sees this client's session on TLS.
    async fn ssl_in_use(&self) -> bool {
        let (client, connection) = self.config.connect(self.tls.clone()).await.unwrap();
        let driver = tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        drop(client);
        driver.await.unwrap().unwrap();
        row.get(0)
    }
}

/// Times `ROUNDS` rounds of a product test, a bare run with `SELECT 1` and a bare run with the
/// probe's own query, in rotating order, and prints the medians, the ratio, and where the
/// difference goes.
fn interleaved(rt: &Runtime, product: &Product, bare: &Bare) {
    let mut totals: [Vec<f64>; 3] = Default::default();
    let mut steps: BTreeMap<StepName, Vec<f64>> = BTreeMap::new();
    let mut probe_rest = Vec::with_capacity(ROUNDS);
    // Connect, query, close of the bare runs with `SELECT 1` and with the probe's query.
    let mut parts: [[Vec<f64>; 3]; 2] = Default::default();
    for i in 0..ROUNDS {
        for k in 0..3 {
            let which = (i + k) % 3;
            let started = Instant::now();
            if which == 0 {
                let report = rt.block_on(product.test());
                let took = ms(started.elapsed());
                assert!(report.ok, "{report:?}");
                totals[0].push(took);
                let mut sum = 0.0;
                for step in &report.steps {
                    steps.entry(step.name).or_default().push(step.ms);
                    sum += step.ms;
                }
                // Closing, building the report, and the bench's own call.
                probe_rest.push(took - sum);
            } else {
                let sql = if which == 1 { SELECT_1 } else { &PROBE_SQL };
                let t = rt.block_on(bare.run_sql(sql));
                totals[which].push(ms(started.elapsed()));
                let p = &mut parts[which - 1];
                p[0].push(ms(t.connect));
                p[1].push(ms(t.query));
                p[2].push(ms(t.close));
            }
        }
    }
    println!("verify_full_scram, {ROUNDS} interleaved rounds (wall time of each call):");
    let [probe_total, bare_total, bare_probe_sql_total] = &mut totals;
    print_series("probe/verify_full_scram", probe_total);
    print_series("bare/verify_full_scram", bare_total);
    print_series("bare + the probe's query", bare_probe_sql_total);
    let p50_probe = median(probe_total);
    let p50_bare = median(bare_total);
    let ratio = p50_probe / p50_bare;
    println!(
        "  p50 ratio probe / bare = {ratio:.3} (goal <= 1.10: {})",
        if ratio <= 1.10 { "met" } else { "NOT met" }
    );
    goal("probe_over_bare_p50", Some(ratio), PROBE_GOAL);
    println!(
        "  p50 ratio probe / bare running the probe's query = {:.3} (the prober's own cost)",
        p50_probe / median(bare_probe_sql_total)
    );
    let step_medians: Vec<String> = steps
        .iter_mut()
        .map(|(name, v)| format!("{name} {:.3}", median(v)))
        .collect();
    println!(
        "  probe steps, p50 ms: {}; rest (close, report) {:.3}",
        step_medians.join(", "),
        median(&mut probe_rest)
    );
    let mut query_p50 = [0.0; 2];
    for (k, label) in ["SELECT 1", "probe's query"].iter().enumerate() {
        let [connect, query, close] = &mut parts[k];
        query_p50[k] = median(query);
        println!(
            "  bare with {label}, p50 ms: connect (tcp+tls+startup+auth) {:.3}, query {:.3}, \
             close {:.3}",
            median(connect),
            query_p50[k],
            median(close)
        );
    }
    let probe_query = steps.get_mut(&StepName::Query).map_or(0.0, |v| median(v));
    let diff = p50_probe - p50_bare;
    let query_extra = probe_query - query_p50[0];
    println!(
        "  difference of p50s {diff:.3} ms; probe query step minus SELECT 1: {query_extra:.3} ms \
         ({:.0} % of the difference); without that extra the ratio would be {:.3}",
        if diff > 0.0 {
            100.0 * query_extra / diff
        } else {
            0.0
        },
        (p50_probe - query_extra) / p50_bare
    );
}

/// Issue 15's `test_many`, both sides in one run: [`MANY`] saved-like connections (each its
/// own spec, the same verify-full + SCRAM target) tested [`MANY_CONCURRENCY`] at a time as the
/// Python binding's `test_many` runs them (a task per item waiting for one of the lane's
/// permits), once through `probe::test` alone (the prober's own loop) and once through the
/// Hub as local mode does: a Hub over a temporary SQLite data folder holding the connections,
/// the operator principal with no per-user test limit (as `datahub-py` opens it), each item
/// tested by name through [`Hub::test_connection_by_name`] (read, authorize, rate limit,
/// decrypt, policy, probe, audit). The two batches alternate for [`MANY_RUNS`] rounds; each
/// side's figure is the median of its runs: `FIGURE probe_test_many_per_s`, `FIGURE
/// hub_test_many_per_s`, this process's CPU per test of each (`FIGURE
/// probe_test_many_cpu_ms`, `FIGURE hub_test_many_cpu_ms`; the target's server runs in other
/// processes), and `GOAL hub_test_many_over_probe_loop <hub / probe> 0.90 met|not met`.
fn test_many(rt: &Runtime, port: u16, ca: &str) {
    let many = Many::new(rt, port, ca);
    let (mut probe_rates, mut hub_rates) = (Vec::new(), Vec::new());
    let (mut probe_cpu, mut hub_cpu) = (Vec::new(), Vec::new());
    for _ in 0..MANY_RUNS {
        let (rate, cpu) = many.probe_batch(rt);
        probe_rates.push(rate);
        probe_cpu.extend(cpu);
        let (rate, cpu) = many.hub_batch(rt);
        hub_rates.push(rate);
        hub_cpu.extend(cpu);
    }
    let shown = |rates: &[f64]| {
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "test_many: {MANY} connections at concurrency {MANY_CONCURRENCY}, {MANY_RUNS} rounds: \
         probe::test {} tests/s, Hub::test_connection_by_name {} tests/s",
        shown(&probe_rates),
        shown(&hub_rates)
    );
    let (probe_rate, hub_rate) = (median(&mut probe_rates), median(&mut hub_rates));
    println!("FIGURE probe_test_many_per_s {probe_rate:.0}");
    println!("FIGURE hub_test_many_per_s {hub_rate:.0}");
    if !probe_cpu.is_empty() && !hub_cpu.is_empty() {
        println!(
            "FIGURE probe_test_many_cpu_ms {:.3}",
            median(&mut probe_cpu)
        );
        println!("FIGURE hub_test_many_cpu_ms {:.3}", median(&mut hub_cpu));
    }
    goal_at_least(
        "hub_test_many_over_probe_loop",
        hub_rate / probe_rate,
        MANY_GOAL,
    );
    many.one_at_a_time(rt);
}

/// The two sides of [`test_many`]: the specs the prober's loop tests, and the Hub holding the
/// same connections by name.
struct Many {
    specs: Vec<Arc<(ConnectionSpec, ConnectionSecrets)>>,
    dial: Arc<PolicyDial>,
    hub: Hub,
    names: Vec<String>,
    operator: Principal,
    _dir: tempfile::TempDir,
}

impl Many {
    fn new(rt: &Runtime, port: u16, ca: &str) -> Self {
        let specs = (0..MANY)
            .map(|i| Arc::new(draft(&format!("many-{i}"), port, ca).validate().unwrap()))
            .collect();
        let (hub, names, dir) = rt.block_on(many_hub(port, ca));
        Self {
            specs,
            dial: Arc::new(dialer()),
            hub,
            names,
            operator: Principal::operator("bench"),
            _dir: dir,
        }
    }

    /// One batch through `probe::test` alone.
    fn probe_batch(&self, rt: &Runtime) -> (f64, Option<f64>) {
        many_batch(rt, |i| {
            let (spec, dial) = (self.specs[i].clone(), self.dial.clone());
            async move {
                let (spec, secrets) = &*spec;
                let rules = ProbeRules::default();
                probe::test(&*dial, spec, secrets, &rules, MAX_BUDGET)
                    .await
                    .ok
            }
        })
    }

    /// Issue 15's single `hub.test(name)` without Python: [`SINGLE_TESTS`] tests by name one
    /// after another, each call's wall time against its report's `total_ms` (p50s and the p50
    /// of each call's difference: what the Hub adds around the prober).
    fn one_at_a_time(&self, rt: &Runtime) {
        let (mut walls, mut totals, mut added) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..SINGLE_TESTS {
            let name = &self.names[i % MANY];
            let started = Instant::now();
            let report = rt
                .block_on(
                    self.hub
                        .test_connection_by_name(&self.operator, name, MAX_BUDGET),
                )
                .unwrap();
            let wall = ms(started.elapsed());
            assert!(report.ok, "{report:?}");
            let total = report.total_ms;
            walls.push(wall);
            totals.push(total);
            added.push(wall - total);
        }
        println!(
            "hub test by name, one at a time, {SINGLE_TESTS} calls: p50 {:.3} ms, report \
             total_ms p50 {:.3} ms",
            median(&mut walls),
            median(&mut totals)
        );
        println!(
            "FIGURE hub_test_over_total_ms_p50_ms {:.3}",
            median(&mut added)
        );
    }

    /// One batch through the Hub, by name.
    fn hub_batch(&self, rt: &Runtime) -> (f64, Option<f64>) {
        many_batch(rt, |i| {
            let (hub, operator) = (self.hub.clone(), self.operator.clone());
            let name = self.names[i].clone();
            async move {
                hub.test_connection_by_name(&operator, &name, MAX_BUDGET)
                    .await
                    .unwrap()
                    .ok
            }
        })
    }
}

/// A Hub as `datahub-py`'s local mode opens it (a SQLite data folder, no per-user test limit),
/// with [`MANY`] connections saved by the operator: the hub, their names, the folder's guard.
async fn many_hub(port: u16, ca: &str) -> (Hub, Vec<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    let hub = Hub::open(store, Keyring::parse(KEYRING).unwrap())
        .await
        .unwrap()
        .with_connector(Arc::new(plain_dialer()))
        .with_test_rate_limit(RateLimit {
            burst: u32::MAX,
            per_second: 1.0e9,
        });
    let operator = Principal::operator("bench");
    let mut names = Vec::with_capacity(MANY);
    for i in 0..MANY {
        let name = format!("many-{i}");
        hub.create_connection(&operator, draft(&name, port, ca))
            .await
            .unwrap();
        names.push(name);
    }
    // The first test through the hub is not timed (lazily opened store connections).
    let first = hub
        .test_connection_by_name(&operator, &names[0], MAX_BUDGET)
        .await
        .unwrap();
    assert!(first.ok, "{first:?}");
    (hub, names, dir)
}

/// One batch of [`MANY`] tests, [`MANY_CONCURRENCY`] at a time (`one(i)` is item `i`'s test):
/// tests a second, and this process's CPU per test in ms (when readable).
fn many_batch<F, Fut>(rt: &Runtime, one: F) -> (f64, Option<f64>)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let lane = Arc::new(tokio::sync::Semaphore::new(MANY_CONCURRENCY));
    let cpu = cpu_time();
    let started = Instant::now();
    let ok = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..MANY {
            let (lane, test) = (lane.clone(), one(i));
            tasks.spawn(async move {
                let _permit = lane.acquire_owned().await.unwrap();
                test.await
            });
        }
        let mut ok = 0;
        while let Some(done) = tasks.join_next().await {
            ok += usize::from(done.unwrap());
        }
        ok
    });
    let took = started.elapsed();
    let cpu = cpu_per(cpu, cpu_time(), MANY as u64);
    assert_eq!(ok, MANY, "every test of the batch passes");
    (MANY as f64 / took.as_secs_f64(), cpu)
}

/// The default budget against a target that never answers a SYN.
fn no_answer(rt: &Runtime) {
    let proxy = rt.block_on(FaultProxy::start(Fault::NoAnswer)).unwrap();
    let port = proxy.port();
    // verify-full with the public roots: the handshake is never reached.
    let (spec, secrets) = ConnectionDraft {
        name: "no-answer".into(),
        host: "127.0.0.1".into(),
        port: Some(i64::from(port)),
        database: DB_NAME.into(),
        username: DB_USER.into(),
        password: Some(Password::from(DB_PASSWORD)),
        ..ConnectionDraft::default()
    }
    .validate()
    .unwrap();
    let dial = dialer();
    let rules = ProbeRules::default();
    let mut times = Vec::with_capacity(NO_ANSWER_RUNS);
    let mut kinds = Vec::new();
    for _ in 0..NO_ANSWER_RUNS {
        let started = Instant::now();
        let report = rt.block_on(probe::test(&dial, &spec, &secrets, &rules, MAX_BUDGET));
        times.push(started.elapsed());
        kinds.push(report.failure.map_or("ok?!".to_owned(), |f| {
            format!("{}@{}", f.kind.as_str(), f.step)
        }));
    }
    let max = times.iter().max().copied().unwrap_or_default();
    let shown: Vec<String> = times
        .iter()
        .map(|t| format!("{:.3}", t.as_secs_f64()))
        .collect();
    println!(
        "budget/no_answer: {NO_ANSWER_RUNS} runs at the default budget (5 s): {} s, max {:.3} s \
         (goal <= 5.05 s: {}); failures: {}",
        shown.join(", "),
        max.as_secs_f64(),
        if max <= Duration::from_millis(5_050) {
            "met"
        } else {
            "NOT met"
        },
        kinds.join(", ")
    );
    drop(proxy);
}

/// Checks or runs a second, and how many failed.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_s: f64,
    failed: u64,
    /// This process's CPU time per run or check, in ms (`None` without `/proc`).
    cpu_ms: Option<f64>,
}

/// This process's CPU time (user + system) so far, from `/proc/self/stat` (Linux; ticks of
/// 10 ms), or `None`. Unlike a rate, CPU per check hardly moves with the machine's load, so it
/// shows the monitor's own cost over the `probe::test` loop even on a busy machine.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time between two readings per item, in ms.
fn cpu_per(before: Option<Duration>, after: Option<Duration>, items: u64) -> Option<f64> {
    Some(ms(after?.checked_sub(before?)?) / items.max(1) as f64)
}

/// Runs `CONCURRENCY` tasks doing `work` back to back for `LOOP_WINDOW`.
async fn saturate<T, F, Fut>(state: Arc<T>, work: F) -> Rate
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = bool> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu = cpu_time();
    let started = Instant::now();
    let end = started + LOOP_WINDOW;
    let mut tasks = Vec::with_capacity(CONCURRENCY);
    for _ in 0..CONCURRENCY {
        let (state, done, failed) = (state.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let ok = work(state.clone()).await;
                done.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let done = done.load(Ordering::Relaxed);
    Rate {
        per_s: done as f64 / started.elapsed().as_secs_f64(),
        failed: failed.load(Ordering::Relaxed),
        cpu_ms: cpu_per(cpu, cpu_time(), done),
    }
}

/// One measured run of the monitor.
#[derive(Debug, Clone, Copy)]
struct MonitorRun {
    rate: Rate,
    /// From the start until every connection had a check.
    settle: Duration,
    skipped: u64,
    timeouts: u64,
    store_errors: u64,
    /// The monitor's store calls per check in the window: claims and records.
    lease_calls: f64,
    record_calls: f64,
    /// PostgreSQL statements per check in the window (PostgreSQL store only).
    statements: Option<Statements>,
}

/// One round of the throughput comparison.
#[derive(Debug, Clone, Copy)]
struct Round {
    bare: Rate,
    sql: Rate,
    probe: Rate,
    monitor: MonitorRun,
}

/// The monitor's checks a second against the client loops at the same concurrency, in
/// interleaved rounds (see the module docs).
fn throughput(
    rt: &Runtime,
    product: &Arc<Product>,
    bare: &Arc<Bare>,
    cluster: &PgCluster,
    ca: &str,
    kind: StoreKind,
) {
    let bare_loop = || {
        rt.block_on(saturate(bare.clone(), |b: Arc<Bare>| async move {
            b.run().await;
            true
        }))
    };
    let bare_probe_sql_loop = || {
        rt.block_on(saturate(bare.clone(), |b: Arc<Bare>| async move {
            b.run_sql(&PROBE_SQL).await;
            true
        }))
    };
    let probe_loop = || {
        rt.block_on(saturate(product.clone(), |p: Arc<Product>| async move {
            p.test().await.ok
        }))
    };

    let sizing = probe_loop();
    let wanted = (sizing.per_s * f64::from(INTERVAL_S) * OVERLOAD).ceil() as usize;
    let n = wanted.clamp(MIN_MONITORED, MAX_MONITORED);
    let seeding = Instant::now();
    let (hub, store, dir) = monitor_hub(rt, cluster, ca, n, kind);
    let store_name = kind.name();
    println!(
        "throughput on the {store_name} store at concurrency {CONCURRENCY}: the probe::test loop \
         ran {:.0}/s, so {n} connections were saved through the Hub in {:.1} s (offered {:.0} \
         checks/s = {OVERLOAD} x that{})",
        sizing.per_s,
        seeding.elapsed().as_secs_f64(),
        n as f64 / f64::from(INTERVAL_S),
        if n < wanted { ", capped" } else { "" }
    );
    // Every connection's first check (in the first-check lane), so that each later run resumes
    // every connection in the main lane from the stored history.
    let warm_up = rt.block_on(async {
        let warming = Instant::now();
        start_and_check_all(&hub, n).await.shutdown().await;
        warming.elapsed()
    });
    println!(
        "monitor: first checks of all {n} connections done in {:.1} s",
        warm_up.as_secs_f64()
    );

    let mut rounds = Vec::with_capacity(THROUGHPUT_ROUNDS);
    for round in 1..=THROUGHPUT_ROUNDS {
        let bare_r = bare_loop();
        let sql_r = bare_probe_sql_loop();
        let probe_r = probe_loop();
        let monitor = monitor_run(rt, &hub, n, "", counter(cluster, kind));
        println!(
            "round {round} ({store_name}): bare {:.0}/s, bare with the probe's query {:.0}/s, probe::test {:.0}/s \
             ({} failed), monitor {:.0}/s (settled in {:.1} s; in the window skipped {}, \
             timeouts {}, store errors {}) = {:.1} % of bare; client CPU per run or check: bare \
             {}, bare with the probe's query {}, probe::test {}, monitor {} (ratio {}); store \
             calls per check: claim {:.3}, record {:.3}{}",
            bare_r.per_s,
            sql_r.per_s,
            probe_r.per_s,
            probe_r.failed,
            monitor.rate.per_s,
            monitor.settle.as_secs_f64(),
            monitor.skipped,
            monitor.timeouts,
            monitor.store_errors,
            100.0 * monitor.rate.per_s / bare_r.per_s,
            shown(bare_r.cpu_ms),
            shown(sql_r.cpu_ms),
            shown(probe_r.cpu_ms),
            shown(monitor.rate.cpu_ms),
            ratio(monitor.rate.cpu_ms, probe_r.cpu_ms),
            monitor.lease_calls,
            monitor.record_calls,
            monitor.statements.map_or(String::new(), |s| format!(
                "; PostgreSQL statements per check: {s}"
            )),
        );
        rounds.push(Round {
            bare: bare_r,
            sql: sql_r,
            probe: probe_r,
            monitor,
        });
    }
    let (checked, failing) = rt.block_on(last_results(store.as_ref()));
    drop(dir);

    let mean = |f: &dyn Fn(&Round) -> Option<f64>| -> Option<f64> {
        let values: Option<Vec<f64>> = rounds.iter().map(f).collect();
        values.map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64)
    };
    let bare_rate = mean(&|r| Some(r.bare.per_s)).unwrap_or_default();
    let sql_rate = mean(&|r| Some(r.sql.per_s)).unwrap_or_default();
    let probe_rate = mean(&|r| Some(r.probe.per_s)).unwrap_or_default();
    let monitor_rate = mean(&|r| Some(r.monitor.rate.per_s)).unwrap_or_default();
    let mut per_round: Vec<f64> = rounds
        .iter()
        .map(|r| r.monitor.rate.per_s / r.bare.per_s)
        .collect();
    let share = monitor_rate / bare_rate;
    println!(
        "{store_name}: means of {THROUGHPUT_ROUNDS} rounds: bare {bare_rate:.0}/s, bare with the probe's query \
         {sql_rate:.0}/s, probe::test {probe_rate:.0}/s, monitor {monitor_rate:.0}/s; after the \
         last run {checked} of {n} connections checked, {failing} with a failed last check"
    );
    println!(
        "monitor / bare client loop = {:.1} % (goal >= 90 %: {}; per round median {:.1} %, min \
         {:.1} %); monitor / bare loop with the probe's query = {:.1} %; monitor / probe::test \
         loop = {:.1} %; probe::test loop / bare loop = {:.1} %; saturated: {}",
        100.0 * share,
        if share >= 0.90 { "met" } else { "NOT met" },
        100.0 * median(&mut per_round),
        100.0 * per_round.iter().copied().fold(f64::INFINITY, f64::min),
        100.0 * monitor_rate / sql_rate,
        100.0 * monitor_rate / probe_rate,
        100.0 * probe_rate / bare_rate,
        if monitor_rate < 0.9 * n as f64 / f64::from(INTERVAL_S) {
            "yes (measured below offered)"
        } else {
            "NO: interval-bound, the figure is a lower bound"
        }
    );
    let bare_cpu = mean(&|r| r.bare.cpu_ms);
    let sql_cpu = mean(&|r| r.sql.cpu_ms);
    let probe_cpu = mean(&|r| r.probe.cpu_ms);
    let monitor_cpu = mean(&|r| r.monitor.rate.cpu_ms);
    let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:+.3} ms ({:+.1} %)", a - b, 100.0 * (a - b) / b),
        _ => "n/a".to_owned(),
    };
    println!(
        "client CPU per run or check (this process, means of the rounds): bare loop {}, bare loop \
         with the probe's query {}, probe::test loop {}, monitor {}; the prober's own cost \
         (probe::test - bare with the probe's query) {}; the monitor's own cost (monitor - \
         probe::test) {}; monitor - bare {}",
        shown(bare_cpu),
        shown(sql_cpu),
        shown(probe_cpu),
        shown(monitor_cpu),
        diff(probe_cpu, sql_cpu),
        diff(monitor_cpu, probe_cpu),
        diff(monitor_cpu, bare_cpu),
    );
    goal(
        &format!("monitor_cpu_per_check_{store_name}"),
        monitor_cpu.zip(probe_cpu).map(|(m, p)| m / p),
        CPU_GOAL,
    );
    // Round trips per check: on PostgreSQL the statements counted by pg_stat_statements (a
    // transaction's BEGIN and COMMIT count), on SQLite the monitor's calls into the store (each
    // one write transaction on the writer connection).
    let per_check = |f: &dyn Fn(&Round) -> Option<f64>| mean(&|r| f(r));
    let (lease, record) = match kind {
        StoreKind::Sqlite => (
            per_check(&|r| Some(r.monitor.lease_calls)),
            per_check(&|r| Some(r.monitor.record_calls)),
        ),
        StoreKind::Postgres => (
            per_check(&|r| r.monitor.statements.map(|s| s.lease)),
            per_check(&|r| r.monitor.statements.map(|s| s.record)),
        ),
    };
    goal(&format!("lease_queries_per_check_{store_name}"), lease, 1.0);
    goal(
        &format!("record_queries_per_check_{store_name}"),
        record,
        1.0,
    );
}

/// `a / b` as a ratio, or `n/a`.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    a.zip(b)
        .map_or("n/a".to_owned(), |(a, b)| format!("{:.2}", a / b))
}

/// PostgreSQL statements per check in the store's database during a window, by purpose, from
/// `pg_stat_statements`.
#[derive(Debug, Clone, Copy)]
struct Statements {
    /// Statements touching `check_leases` (the claims).
    lease: f64,
    /// Statements writing `health_checks` or `connection_health`, and the `BEGIN`/`COMMIT`
    /// around them (the records; nothing else opens a transaction while the monitor runs).
    record: f64,
    /// `pg_notify` calls (events told to other processes).
    notify: f64,
    /// Everything else (reloads, summaries, history reads, the policy).
    other: f64,
}

impl std::fmt::Display for Statements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "claim {:.3}, record {:.3}, notify {:.3}, other {:.3}",
            self.lease, self.record, self.notify, self.other
        )
    }
}

/// Counts the PostgreSQL store's statements (none for SQLite).
struct StatementCounter<'a> {
    cluster: &'a PgCluster,
}

fn counter(cluster: &PgCluster, kind: StoreKind) -> Option<StatementCounter<'_>> {
    (kind == StoreKind::Postgres).then_some(StatementCounter { cluster })
}

impl StatementCounter<'_> {
    fn reset(&self) {
        self.cluster
            .psql(STORE_DB, "SELECT bench_stats.pg_stat_statements_reset()")
            .unwrap();
    }

    /// The statements since the last reset, per check.
    fn per_check(&self, checks: u64) -> Statements {
        let out = self
            .cluster
            .psql(
                STORE_DB,
                "SELECT CASE \
                   WHEN query ILIKE '%check_leases%' THEN 'lease' \
                   WHEN query ILIKE '%health_checks%' OR query ILIKE '%connection_health (%' \
                     OR query ILIKE 'begin%' OR query ILIKE 'commit%' OR query ILIKE 'rollback%' \
                     THEN 'record' \
                   WHEN query ILIKE '%pg_notify%' THEN 'notify' \
                   ELSE 'other' END AS purpose, sum(calls) \
                 FROM bench_stats.pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
                 WHERE d.datname = current_database() \
                   AND query NOT ILIKE '%pg_stat_statements%' \
                 GROUP BY 1",
            )
            .unwrap();
        let mut counts = BTreeMap::new();
        for line in out.lines() {
            if let Some((purpose, calls)) = line.split_once('|') {
                counts.insert(purpose.to_owned(), calls.trim().parse::<f64>().unwrap());
            }
        }
        let per =
            |purpose: &str| counts.get(purpose).copied().unwrap_or(0.0) / checks.max(1) as f64;
        Statements {
            lease: per("lease"),
            record: per("record"),
            notify: per("notify"),
            other: per("other"),
        }
    }
}

/// Starts the monitor ([`CONCURRENCY`] wide) and waits until each of the `n` saved connections
/// has had its first check.
async fn start_and_check_all(hub: &Hub, n: usize) -> Monitor {
    let handle = hub.start_monitor(MonitorConfig {
        max_concurrency: CONCURRENCY,
        ..MonitorConfig::default()
    });
    let warming = Instant::now();
    while handle.stats().first_checks < n as u64 {
        assert!(
            warming.elapsed() < WARM_UP_LIMIT,
            "first checks not done after {WARM_UP_LIMIT:?}: {:?}",
            handle.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle
}

/// A CPU figure in ms, or `n/a`.
fn shown(v: Option<f64>) -> String {
    v.map_or("n/a".to_owned(), |v| format!("{v:.3} ms"))
}

/// Starts the monitor over the `n` saved connections, waits until it has made `2 n` checks
/// (every connection has had its first check since the start, see the module docs), counts its
/// checks over [`MONITOR_WINDOW`], and shuts it down.
fn monitor_run(
    rt: &Runtime,
    hub: &Hub,
    n: usize,
    profiler: &str,
    counter: Option<StatementCounter<'_>>,
) -> MonitorRun {
    rt.block_on(async {
        let handle = hub.start_monitor(MonitorConfig {
            max_concurrency: CONCURRENCY,
            ..MonitorConfig::default()
        });
        let started = Instant::now();
        while handle.stats().checks < 2 * n as u64 {
            assert!(
                started.elapsed() < WARM_UP_LIMIT,
                "the monitor did not settle within {WARM_UP_LIMIT:?}: {:?}",
                handle.stats()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let settle = started.elapsed();
        if let Some(counter) = &counter {
            counter.reset();
        }
        let on = Profiler::start(profiler);
        let before = handle.stats();
        let cpu = cpu_time();
        let window = Instant::now();
        tokio::time::sleep(MONITOR_WINDOW).await;
        let after = handle.stats();
        let cpu_after = cpu_time();
        let took = window.elapsed();
        drop(on);
        let checks = after.checks - before.checks;
        // Read before the shutdown, which stops the statements counted.
        let statements = counter.map(|c| c.per_check(checks));
        handle.shutdown().await;
        let per_check = |calls: u64| calls as f64 / checks.max(1) as f64;
        MonitorRun {
            rate: Rate {
                per_s: checks as f64 / took.as_secs_f64(),
                failed: after.failures - before.failures,
                cpu_ms: cpu_per(cpu, cpu_after, checks),
            },
            settle,
            skipped: after.skipped - before.skipped,
            timeouts: after.timeouts - before.timeouts,
            store_errors: after.store_errors - before.store_errors,
            lease_calls: per_check(after.lease_calls - before.lease_calls),
            record_calls: per_check(after.record_calls - before.record_calls),
            statements,
        }
    })
}

/// A Hub over a fresh store (SQLite in a temporary folder, or the kit cluster's store database,
/// emptied first) with `n` verify-full connections to the kit cluster saved (checked every
/// [`INTERVAL_S`]); the folder lives as long as the returned guard.
fn monitor_hub(
    rt: &Runtime,
    cluster: &PgCluster,
    ca: &str,
    n: usize,
    kind: StoreKind,
) -> (Hub, Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = match kind {
        StoreKind::Sqlite => Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap()),
        StoreKind::Postgres => {
            cluster
                .psql(
                    STORE_DB,
                    &format!(
                        "DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION {STORE_USER}"
                    ),
                )
                .unwrap();
            Arc::new(
                rt.block_on(PostgresStore::connect(
                    cluster.config(STORE_USER, STORE_DB),
                    PostgresOptions::default(),
                ))
                .unwrap(),
            )
        }
    };
    let hub = rt.block_on(async {
        let hub = Hub::open(store.clone(), Keyring::parse(KEYRING).unwrap())
            .await
            .unwrap()
            .with_connector(Arc::new(plain_dialer()));
        hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
            .await
            .unwrap()
            .unwrap();
        let admin = hub
            .login("admin", Password::from(ADMIN_PW), &RequestInfo::default())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for task in 0..SEED_TASKS {
            let (hub, admin, ca) = (hub.clone(), admin.clone(), ca.to_owned());
            let port = cluster.port();
            tasks.push(tokio::spawn(async move {
                for i in (task..n).step_by(SEED_TASKS) {
                    hub.create_connection(&admin, draft(&format!("mon-{i}"), port, &ca))
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        hub
    });
    (hub, store, dir)
}

/// How many connections have a recorded check, and how many of those last failed.
async fn last_results(store: &dyn Store) -> (u64, u64) {
    let (mut checked, mut failing) = (0, 0);
    let mut page = 1;
    loop {
        let query = ListQuery {
            page,
            per_page: MAX_PER_PAGE,
            ..ListQuery::default()
        };
        let found = store
            .list_connections(&query, &Visibility::All)
            .await
            .unwrap();
        for c in &found.items {
            if c.health.checked_at.is_some() {
                checked += 1;
                if c.health.error_kind.is_some() {
                    failing += 1;
                }
            }
        }
        if found.items.len() < MAX_PER_PAGE as usize {
            return (checked, failing);
        }
        page += 1;
    }
}

/// The profiling mode (`PROBE_BENCH_PROFILE=<what>:<n>`): runs `n` of one kind of work one
/// after another instead of the benches, with the profiler named by `PROBE_BENCH_PROFILER`
/// (`callgrind`: the bench runs under `valgrind --tool=callgrind --instr-atstart=no` and
/// instrumentation is turned on only around the work; `perf`: `perf record -g` is attached to
/// this process around the work, to `perf.data`) or none, and prints this process's CPU per
/// item. `<what>`: `probe` (`probe::test`), `bare` (the bare client with `SELECT 1`), `bare_sql`
/// (the bare client with the probe's query), or `monitor` (`n` saved connections checked by the
/// monitor, measured over `n` checks once every connection had its first check).
fn profile(
    rt: &Runtime,
    product: &Arc<Product>,
    bare: &Arc<Bare>,
    cluster: &PgCluster,
    ca: &str,
    what: &str,
) {
    let (kind, n) = what.split_once(':').unwrap_or((what, "200"));
    let n: usize = n.parse().unwrap();
    let profiler = std::env::var("PROBE_BENCH_PROFILER").unwrap_or_default();
    let (items, took, cpu) = if kind == "monitor_rounds" {
        // As the throughput rounds run it: every first check, then one run of the monitor
        // started anew, settled and measured for the window.
        let kind = profile_store();
        let (hub, _store, _dir) = monitor_hub(rt, cluster, ca, n, kind);
        rt.block_on(async { start_and_check_all(&hub, n).await.shutdown().await });
        let run = monitor_run(rt, &hub, n, &profiler, counter(cluster, kind));
        println!("profile monitor_rounds: {run:?}");
        (
            (run.rate.per_s * MONITOR_WINDOW.as_secs_f64()) as u64,
            MONITOR_WINDOW,
            run.rate.cpu_ms,
        )
    } else if kind == "monitor" {
        let (hub, _store, _dir) = monitor_hub(rt, cluster, ca, n, profile_store());
        rt.block_on(async {
            let handle = start_and_check_all(&hub, n).await;
            let before = handle.stats().checks;
            let on = Profiler::start(&profiler);
            let cpu = cpu_time();
            let started = Instant::now();
            while handle.stats().checks < before + n as u64 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let cpu = cpu_per(cpu, cpu_time(), handle.stats().checks - before);
            let took = started.elapsed();
            drop(on);
            let checks = handle.stats().checks - before;
            handle.shutdown().await;
            (checks, took, cpu)
        })
    } else if let Some(side) = kind.strip_prefix("many_") {
        // `test_many`'s batches, one side, `n` batches of `MANY`.
        let many = Many::new(rt, cluster.port(), ca);
        let on = Profiler::start(&profiler);
        let cpu = cpu_time();
        let started = Instant::now();
        for _ in 0..n {
            match side {
                "probe" => drop(many.probe_batch(rt)),
                "hub" => drop(many.hub_batch(rt)),
                other => panic!("unknown PROBE_BENCH_PROFILE side {other:?}"),
            }
        }
        let took = started.elapsed();
        let items = (n * MANY) as u64;
        let cpu = cpu_per(cpu, cpu_time(), items);
        drop(on);
        (items, took, cpu)
    } else if let Some(kind) = kind.strip_suffix("_loop") {
        // The loops the monitor is compared with, `CONCURRENCY` wide, for `n` seconds.
        let on = Profiler::start(&profiler);
        let started = Instant::now();
        let end = started + Duration::from_secs(n as u64);
        let mut done = 0;
        let cpu = cpu_time();
        while Instant::now() < end {
            let rate = match kind {
                "probe" => rt.block_on(saturate(product.clone(), |p: Arc<Product>| async move {
                    p.test().await.ok
                })),
                "bare" => rt.block_on(saturate(bare.clone(), |b: Arc<Bare>| async move {
                    b.run().await;
                    true
                })),
                other => panic!("unknown PROBE_BENCH_PROFILE loop {other:?}"),
            };
            done += (rate.per_s * LOOP_WINDOW.as_secs_f64()).round() as u64;
        }
        let took = started.elapsed();
        let cpu = cpu_per(cpu, cpu_time(), done);
        drop(on);
        (done, took, cpu)
    } else {
        let on = Profiler::start(&profiler);
        let cpu = cpu_time();
        let started = Instant::now();
        for _ in 0..n {
            match kind {
                "probe" => assert!(rt.block_on(product.test()).ok),
                "bare" => drop(rt.block_on(bare.run())),
                "bare_sql" => drop(rt.block_on(bare.run_sql(&PROBE_SQL))),
                other => panic!("unknown PROBE_BENCH_PROFILE kind {other:?}"),
            }
        }
        let took = started.elapsed();
        let cpu = cpu_per(cpu, cpu_time(), n as u64);
        drop(on);
        (n as u64, took, cpu)
    };
    println!(
        "profile {kind}: {items} in {:.1} s, CPU per item {}",
        took.as_secs_f64(),
        cpu.map_or("n/a".to_owned(), |v| format!("{v:.3} ms"))
    );
}

/// The store of a profiling run: the first of `PROBE_BENCH_STORES` (default SQLite).
fn profile_store() -> StoreKind {
    StoreKind::chosen()
        .first()
        .copied()
        .unwrap_or(StoreKind::Sqlite)
}

/// A profiler attached while it lives (see [`profile`]).
struct Profiler(Option<(&'static str, std::process::Child)>);

impl Profiler {
    fn start(which: &str) -> Self {
        let pid = std::process::id().to_string();
        let run = |program: &str, args: &[&str]| {
            std::process::Command::new(program)
                .args(args)
                .spawn()
                .unwrap()
        };
        match which {
            "callgrind" => {
                assert!(
                    run("callgrind_control", &["-i", "on", &pid])
                        .wait()
                        .unwrap()
                        .success()
                );
                Self(Some(("callgrind", run("true", &[]))))
            }
            "perf" => {
                let child = run("perf", &["record", "-g", "-o", "perf.data", "-p", &pid]);
                // Until perf has attached.
                std::thread::sleep(Duration::from_secs(2));
                Self(Some(("perf", child)))
            }
            "" => Self(None),
            other => panic!("unknown PROBE_BENCH_PROFILER {other:?}"),
        }
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        let pid = std::process::id().to_string();
        match self.0.take() {
            Some(("callgrind", mut child)) => {
                child.wait().unwrap();
                let off = std::process::Command::new("callgrind_control")
                    .args(["-i", "off", &pid])
                    .status()
                    .unwrap();
                assert!(off.success());
            }
            Some((_, mut child)) => {
                let perf = child.id().to_string();
                std::process::Command::new("kill")
                    .args(["-INT", &perf])
                    .status()
                    .unwrap();
                child.wait().unwrap();
            }
            None => {}
        }
    }
}

fn print_series(label: &str, times: &mut [f64]) {
    times.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "  {label:<26} {:>4} calls: p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms",
        times.len(),
        at(0.50),
        at(0.99),
        times[times.len() - 1],
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v[(v.len().saturating_sub(1)) / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

criterion_group!(benches, bench);
criterion_main!(benches);
