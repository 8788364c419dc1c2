//! The check history's size and the pruner's batches, on both stores: how many bytes the
//! history of one monitored connection costs, and how long the longest roll-up or deletion
//! batch holds the store.
//!
//! Simulated, hour by hour on a simulated clock: `HISTORY_N` connections (default 200), each
//! checked every 60 s (one raw check a minute, one in fifty failing, latency 2–41 ms), for one
//! day and then `HISTORY_DAYS` more (default 30, the buckets' retention). After each
//! simulated hour the bench does what the monitor's pruner does on its hourly tick
//! (`MonitorConfig` defaults): `roll_up_checks` of everything older than 24 h in batches of
//! at most 1,000 rows, then `prune_buckets` of hours older than 30 days in batches of at most
//! 1,000, each batch sized as the pruner sizes it (`PruneBatch`: halved after a batch over
//! 10 ms). The raw
//! rows are written by the bench's own bulk `INSERT … SELECT` (in time order across
//! connections, as the monitor writes them), not by `record_check` one at a time, which would
//! take hours for 31 simulated days; they are the same rows in the same table. On PostgreSQL
//! the bench runs a plain `VACUUM` of the two tables every 6 simulated hours, standing in for
//! the autovacuum that runs many times in a real month (without it, a month squeezed into
//! minutes would measure dead rows no real store keeps).
//!
//! Size, from the store itself: SQLite `page_count × page_size` of the file after
//! `wal_checkpoint(TRUNCATE)` (free pages included: the file does not shrink), PostgreSQL
//! `pg_total_relation_size` of `health_checks` and `health_buckets` (indexes and TOAST
//! included); both less the same measure before any check was written.
//!
//! **Bytes per connection per day** (the goal: ≤ 20 KB at a 60 s interval): the history one
//! connection holds in the steady state — 24 h of raw checks plus 30 days of buckets, what it
//! holds for ever once monitored longer than the retention — divided by the 30 days it spans
//! (`steady / N / 30`): what one day of monitoring costs on disk, kept for its whole
//! retention. The bench also prints the size after the first day (24 h raw, no buckets yet)
//! and the marginal daily growth (the steady state less the first day, over the 30 days: one
//! day of buckets).
//!
//! **Longest batch** (the goal: ≤ 50 ms, so no write waits behind the pruner for longer): the
//! wall time of the slowest single `roll_up_checks` or `prune_buckets` call. On SQLite a batch
//! is one write transaction through the store's one writer, so it is how long a write queued
//! behind it can wait; the bench also measures that directly: a writer task records a check
//! of a separate connection through `record_check` every 20 ms while the pruner runs (dated
//! before the simulation, so the pruner rolls them up and deletes them: they add nothing to
//! the sizes), and the slowest of those is printed; the writes that started and ended while
//! the pruner ran (its batches and the pauses between them, not the bench's own bulk writes of
//! the simulated hour) are the goal `prune_write_wait_ms`: what pruning makes a write wait.
//!
//! Prints `GOAL history_bytes_per_conn_day_<store> <measured> 20480 met|not met` and
//! `GOAL prune_batch_ms_<store> <measured> 50 met|not met` and
//! `GOAL prune_write_wait_ms_<store> <measured> 50 met|not met`.
//!
//! Run: `cargo bench -p datahub-benches --bench history` (`HISTORY_N`, `HISTORY_DAYS`;
//! `HISTORY_STORES=sqlite` or `postgres` for one store).

// A bench whose set-up fails is a bug in the bench: unwrapping is the clearest report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use datahub_core::ConnectionId;
use datahub_core::audit::RequestInfo;
use datahub_core::crypto::Keyring;
use datahub_core::hub::Hub;
use datahub_core::model::{Check, ConnectionDraft, Health, HealthStatus};
use datahub_core::monitor::{MonitorConfig, PruneBatch};
use datahub_core::secret::Password;
use datahub_core::store::{PostgresOptions, PostgresStore, SqliteStore, Store};
use datahub_testkit::{PgCluster, User};
use time::OffsetDateTime;

/// A fixed, public bench key (never used anywhere else).
const KEYRING: &str = "k1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const ADMIN_PW: &str = "bench-admin-password-1";
const PG_USER: &str = "datahub";
const PG_PASSWORD: &str = "bench-history-pw-Qz27";
const PG_DATABASE: &str = "datahub";
/// The growth goal: bytes per connection per day.
const GOAL_BYTES: f64 = 20_480.0;
/// The batch goal, in milliseconds.
const GOAL_BATCH_MS: f64 = 50.0;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

/// Where the bench writes raw rows and reads sizes, beside the store under test.
enum Raw {
    Sqlite(PathBuf),
    Postgres(tokio_postgres::Client),
}

impl Raw {
    /// Writes one hour of checks from `hour` on: one a minute per connection, each connection
    /// at its own second of the minute, in time order.
    async fn write_hour(&self, hour: OffsetDateTime) {
        let start_us = (hour.unix_timestamp_nanos() / 1_000) as i64;
        match self {
            Raw::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = rusqlite::Connection::open(&path).unwrap();
                    conn.busy_timeout(Duration::from_secs(5)).unwrap();
                    conn.execute(
                        "WITH RECURSIVE m(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM m \
                         WHERE i < 59), c AS (SELECT id, rowid AS n FROM connections \
                         WHERE name LIKE 'sim-%') \
                         INSERT INTO health_checks (connection_id, at, ok, latency_ms, \
                         error_kind, step, status) \
                         SELECT c.id, ?1 + m.i * 60000000 + (c.n * 7919 % 60) * 1000000, \
                         (m.i + c.n) % 50 <> 0, 2 + (m.i * 13 + c.n) % 40, \
                         iif((m.i + c.n) % 50 = 0, 'timeout', NULL), \
                         iif((m.i + c.n) % 50 = 0, 'tcp', NULL), \
                         iif((m.i + c.n) % 50 = 0, 'degraded', 'healthy') \
                         FROM m CROSS JOIN c ORDER BY m.i, (c.n * 7919 % 60), c.id",
                        [start_us],
                    )
                    .unwrap();
                })
                .await
                .unwrap();
            }
            Raw::Postgres(client) => {
                client
                    .execute(
                        "WITH c AS (SELECT id, row_number() OVER (ORDER BY id) AS n \
                         FROM connections WHERE name LIKE 'sim-%') \
                         INSERT INTO health_checks (connection_id, at, ok, latency_ms, \
                         error_kind, step, status) \
                         SELECT c.id, $1::timestamptz + make_interval(mins => m.i, \
                         secs => (c.n * 7919 % 60)::float8), \
                         (m.i + c.n) % 50 <> 0, 2 + (m.i * 13 + c.n) % 40, \
                         CASE WHEN (m.i + c.n) % 50 = 0 THEN 'timeout' END, \
                         CASE WHEN (m.i + c.n) % 50 = 0 THEN 'tcp' END, \
                         CASE WHEN (m.i + c.n) % 50 = 0 THEN 'degraded' ELSE 'healthy' END \
                         FROM generate_series(0, 59) AS m(i) CROSS JOIN c \
                         ORDER BY m.i, (c.n * 7919 % 60), c.id",
                        &[&hour],
                    )
                    .await
                    .unwrap();
            }
        }
    }

    /// The history's size in bytes (see the module docs).
    async fn size(&self) -> u64 {
        match self {
            Raw::Sqlite(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = rusqlite::Connection::open(&path).unwrap();
                    conn.busy_timeout(Duration::from_secs(5)).unwrap();
                    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                        .unwrap();
                    let pages: i64 = conn
                        .query_row("PRAGMA page_count", [], |r| r.get(0))
                        .unwrap();
                    let size: i64 = conn
                        .query_row("PRAGMA page_size", [], |r| r.get(0))
                        .unwrap();
                    (pages * size) as u64
                })
                .await
                .unwrap()
            }
            Raw::Postgres(client) => {
                let row = client
                    .query_one(
                        "SELECT (pg_total_relation_size('health_checks') + \
                         pg_total_relation_size('health_buckets'))::bigint",
                        &[],
                    )
                    .await
                    .unwrap();
                row.get::<_, i64>(0) as u64
            }
        }
    }

    /// Stands in for autovacuum (PostgreSQL; SQLite reuses free pages by itself).
    async fn vacuum(&self) {
        if let Raw::Postgres(client) = self {
            client
                .batch_execute("VACUUM health_checks, health_buckets")
                .await
                .unwrap();
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_u64("HISTORY_N", 200);
    let days = env_u64("HISTORY_DAYS", 30);
    let stores = std::env::var("HISTORY_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    println!(
        "history: {n} connections, a check a minute each, 1 day + {days} days simulated, \
         rolled up and pruned hourly as the monitor does"
    );
    if stores.contains("sqlite") {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(&dir.path().join("data")).unwrap();
        let path = sqlite.path().to_path_buf();
        run("sqlite", Arc::new(sqlite), Raw::Sqlite(path), n, days).await;
    }
    if stores.contains("postgres") {
        let cluster = PgCluster::builder()
            .user(User::new(PG_USER).password(PG_PASSWORD))
            .database(PG_DATABASE, PG_USER)
            .start()
            .unwrap();
        let store = PostgresStore::connect(
            cluster.config(PG_USER, PG_DATABASE),
            PostgresOptions::default(),
        )
        .await
        .unwrap();
        let (client, connection) = cluster
            .config(PG_USER, PG_DATABASE)
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        run("postgres", Arc::new(store), Raw::Postgres(client), n, days).await;
        drop(cluster);
    }
}

async fn run(backend: &str, store: Arc<dyn Store>, raw: Raw, n: u64, days: u64) {
    let config = MonitorConfig::default();
    let mut batch = PruneBatch::new(&config);
    let hub = Hub::open(store.clone(), Keyring::parse(KEYRING).unwrap())
        .await
        .unwrap();
    hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
        .await
        .unwrap()
        .unwrap();
    let admin = hub
        .login("admin", Password::from(ADMIN_PW), &RequestInfo::default())
        .await
        .unwrap();
    for i in 0..n {
        hub.create_connection(&admin, draft(&format!("sim-{i}")))
            .await
            .unwrap();
    }
    let writer = hub
        .create_connection(&admin, draft("writer"))
        .await
        .unwrap();
    let baseline = raw.size().await;

    // The writer: a check of another connection every 20 ms, timed, while the pruner runs.
    let stop = Arc::new(AtomicBool::new(false));
    let detail = time::Duration::try_from(config.detail_window).unwrap();
    let retention = time::Duration::try_from(config.bucket_retention).unwrap();
    let t0 = hour_of(OffsetDateTime::now_utc()) - time::Duration::days(days as i64 + 2);
    // Its checks are dated before the simulation, so each tick rolls them up and deletes them:
    // they add nothing to the sizes measured.
    let pruning = Arc::new(AtomicBool::new(false));
    let write_task = tokio::spawn(write_load(
        store.clone(),
        writer.id,
        t0 - retention - time::Duration::days(1),
        stop.clone(),
        pruning.clone(),
    ));
    let hours = 24 * (days + 1);
    let mut times: Vec<Duration> = Vec::new();
    let mut batches = 0u64;
    let mut rolled = 0u64;
    let mut day1 = 0;
    let started = Instant::now();
    for h in 0..hours {
        let hour = t0 + time::Duration::hours(h as i64);
        raw.write_hour(hour).await;
        let now = hour + time::Duration::hours(1);
        // The pruner's tick: roll up, then delete expired hours, batch by batch.
        pruning.store(true, Ordering::Relaxed);
        let mut from = None;
        loop {
            let t = Instant::now();
            let done = store
                .roll_up_checks(now - detail, from, batch.rows())
                .await
                .unwrap();
            times.push(t.elapsed());
            batch.took(t.elapsed());
            batches += 1;
            rolled += done.rolled;
            match done.next {
                Some(next) => from = Some(next),
                None => break,
            }
            tokio::time::sleep(config.prune_batch_pause).await;
        }
        loop {
            let t = Instant::now();
            let rows = batch.rows();
            let deleted = store.prune_buckets(now - retention, rows).await.unwrap();
            times.push(t.elapsed());
            batch.took(t.elapsed());
            batches += 1;
            if deleted < u64::from(rows) {
                break;
            }
            tokio::time::sleep(config.prune_batch_pause).await;
        }
        pruning.store(false, Ordering::Relaxed);
        if h % 6 == 5 {
            raw.vacuum().await;
        }
        if h == 23 {
            day1 = raw.size().await.saturating_sub(baseline);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (slowest_write, mut during) = write_task.await.unwrap();
    let steady = raw.size().await.saturating_sub(baseline);
    let per_conn = |bytes: u64| bytes as f64 / n as f64;
    let per_day = per_conn(steady) / days as f64;
    let growth = per_conn(steady.saturating_sub(day1)) / days as f64;
    println!(
        "{backend}: simulated {hours} h in {:.0} s: {rolled} raw checks rolled up in {batches} \
         batches",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{backend}: per connection: after day 1 (24 h raw) {:.0} B; steady state (24 h raw + \
         {days} d buckets) {:.0} B; marginal growth (a day of buckets) {growth:.0} B/day",
        per_conn(day1),
        per_conn(steady),
    );
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    let longest = times.last().copied().unwrap_or_default();
    println!(
        "{backend}: pruning batches: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(0.999)),
        ms(longest)
    );
    println!(
        "{backend}: slowest check written through record_check over the whole run (the bench's \
         own bulk writes included): {:.1} ms",
        ms(slowest_write)
    );
    during.sort_unstable();
    let wait = |q: f64| {
        during
            .get(((during.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    let slowest_during = during.last().copied().unwrap_or_default();
    println!(
        "{backend}: {} checks written through record_check while the pruner ran: p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms",
        during.len(),
        ms(wait(0.5)),
        ms(wait(0.99)),
        ms(slowest_during)
    );
    goal(
        &format!("history_bytes_per_conn_day_{backend}"),
        per_day,
        GOAL_BYTES,
    );
    goal(
        &format!("prune_batch_ms_{backend}"),
        ms(longest),
        GOAL_BATCH_MS,
    );
    goal(
        &format!("prune_write_wait_ms_{backend}"),
        ms(slowest_during),
        GOAL_BATCH_MS,
    );
}

/// Records a check of `id` dated `at` every 20 ms until `stop`; returns the slowest, and how
/// long each write that started and ended while `pruning` took.
async fn write_load(
    store: Arc<dyn Store>,
    id: ConnectionId,
    at: OffsetDateTime,
    stop: Arc<AtomicBool>,
    pruning: Arc<AtomicBool>,
) -> (Duration, Vec<Duration>) {
    let mut slowest = Duration::ZERO;
    let mut during = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let check = Check {
            connection: id,
            at,
            ok: true,
            latency_ms: 3,
            error_kind: None,
            step: None,
            status: HealthStatus::Healthy,
        };
        let health = Health {
            status: HealthStatus::Healthy,
            checked_at: Some(at),
            latency_ms: Some(3),
            ..Health::default()
        };
        let t = Instant::now();
        let started_pruning = pruning.load(Ordering::Relaxed);
        store.record_check(&check, &health).await.unwrap();
        let took = t.elapsed();
        slowest = slowest.max(took);
        if started_pruning && pruning.load(Ordering::Relaxed) {
            during.push(took);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (slowest, during)
}

fn goal(name: &str, measured: f64, limit: f64) {
    let met = if measured <= limit { "met" } else { "not met" };
    println!("GOAL {name} {measured:.1} {limit} {met}");
}

fn hour_of(at: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(at.unix_timestamp().div_euclid(3600) * 3600).unwrap()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn draft(name: &str) -> ConnectionDraft {
    ConnectionDraft {
        name: name.into(),
        host: "127.0.0.1".into(),
        database: "app".into(),
        username: "app".into(),
        password: Some(Password::from("bench-connection-pw")),
        ..ConnectionDraft::default()
    }
}
