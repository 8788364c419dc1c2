//! Criterion benches of the product path — the `Hub` (permission check, crypto, store, audit) —
//! on both stores: SQLite in a temporary folder and PostgreSQL on a throwaway kit cluster
//! (loopback only).
//!
//! Measured per backend: `create` (one connection), `get` (one by id), `update` (a description
//! patch naming the right version), and `list`: one page of 50 out of 100,000 connections with
//! the search term `db-4` (matching 11,111 of them), as the admin (sees all) and as a viewer
//! holding `view` grants on every tenth connection (1,111 matches; visibility applied in SQL).
//!
//! Seeding does not go through the Hub: the 100,000 rows are sealed with the same crypto the Hub
//! uses (a fresh data key per row, wrapped by the keyring) and written with
//! `Store::insert_connection` by a few concurrent tasks, each row in its own audited
//! transaction as the store contract requires (the store has no bulk insert); the viewer's grants
//! go through `Store::set_grants`. That skips only the Hub's permission check, and it is several
//! times faster than creating through the Hub one at a time.
//!
//! Criterion reports means and medians; for the goals (list page p99 ≤ 10 ms, create p50 ≤ 5 ms
//! on SQLite) the bench also times calls itself before handing over to Criterion, and prints
//! p50/p99/max.
//!
//! Run: `cargo bench -p datahub-benches --bench store`. `DATAHUB_BENCH_ROWS` sets the number of
//! seeded rows (default 100,000; a multiple of 10 keeps the grant share exact).

// A bench whose set-up fails is a bug in the bench: unwrapping is the clearest report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use datahub_core::audit::{AuditEvent, Outcome, RequestInfo};
use datahub_core::crypto::Keyring;
use datahub_core::hub::Hub;
use datahub_core::model::{ConnectionDraft, ConnectionPatch, ListQuery};
use datahub_core::rbac::{Grant, GrantLevel, Grantee, Principal, Role};
use datahub_core::secret::Password;
use datahub_core::store::{
    PostgresOptions, PostgresStore, SealedSecrets, SqliteStore, Store, StoredConnection,
};
use datahub_core::{ConnectionId, UserId};
use datahub_testkit::{PgCluster, User};
use time::OffsetDateTime;
use tokio::runtime::Runtime;

/// A fixed, public bench key (never used anywhere else).
const KEYRING: &str = "k1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const ADMIN_PW: &str = "bench-admin-password-1";
const VIEWER_PW: &str = "bench-viewer-password-1";
const SEARCH: &str = "db-4";
/// Concurrent seeding tasks.
const SEED_TASKS: u64 = 4;
/// Calls timed by hand for the percentiles: this many, unless [`TIMED_BUDGET`] runs out first.
const TIMED_CALLS: usize = 1_000;
/// The most time one hand-timed series may take (it still makes at least 100 calls).
const TIMED_BUDGET: Duration = Duration::from_secs(20);

const PG_USER: &str = "datahub";
const PG_PASSWORD: &str = "bench-store-pw-Kq81";
const PG_DATABASE: &str = "datahub";

fn rows() -> u64 {
    std::env::var("DATAHUB_BENCH_ROWS")
        .ok()
        .map(|v| v.parse().expect("DATAHUB_BENCH_ROWS is a number"))
        .unwrap_or(100_000)
}

/// A store seeded for the benches, with the principals acting on it.
struct Seeded {
    hub: Hub,
    admin: Principal,
    viewer: Principal,
    /// A seeded connection for `get` and `update`.
    sample: ConnectionId,
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    bench_backend(c, &rt, "sqlite", sqlite);

    let cluster = PgCluster::builder()
        .user(User::new(PG_USER).password(PG_PASSWORD))
        .database(PG_DATABASE, PG_USER)
        .start()
        .unwrap();
    let postgres: Arc<dyn Store> = Arc::new(
        rt.block_on(PostgresStore::connect(
            cluster.config(PG_USER, PG_DATABASE),
            PostgresOptions::default(),
        ))
        .unwrap(),
    );
    bench_backend(c, &rt, "postgres", postgres);
    drop(cluster);
}

fn bench_backend(c: &mut Criterion, rt: &Runtime, backend: &str, store: Arc<dyn Store>) {
    let n = rows();
    let s = rt.block_on(seed(backend, store, n));

    let admin_query = ListQuery {
        search: Some(SEARCH.to_owned()),
        ..ListQuery::default()
    };
    for (who, principal) in [("admin", &s.admin), ("viewer", &s.viewer)] {
        let page = rt
            .block_on(s.hub.list_connections(principal, &admin_query))
            .unwrap();
        assert_eq!(page.items.len() as u64, page.total.min(50));
        println!(
            "{backend}: list as {who}: search {SEARCH:?} matches {} of {n}",
            page.total
        );
        timed(&format!("{backend}/list_page50_{who}"), || {
            rt.block_on(s.hub.list_connections(principal, &admin_query))
                .unwrap();
        });
    }
    let counter = AtomicU64::new(0);
    let create = || {
        let i = counter.fetch_add(1, Ordering::Relaxed);
        rt.block_on(
            s.hub
                .create_connection(&s.admin, draft(&format!("new-{i}"), Some("created"))),
        )
        .unwrap()
    };
    timed(&format!("{backend}/create"), || {
        create();
    });
    timed(&format!("{backend}/get"), || {
        rt.block_on(s.hub.connection(&s.admin, s.sample)).unwrap();
    });
    let mut version = rt
        .block_on(s.hub.connection(&s.admin, s.sample))
        .unwrap()
        .version;
    let mut edits = 0u64;
    let mut update = || {
        edits += 1;
        let patch = ConnectionPatch {
            description: Some(Some(format!("edit {edits}"))),
            ..ConnectionPatch::default()
        };
        version = rt
            .block_on(s.hub.update_connection(&s.admin, s.sample, version, patch))
            .unwrap()
            .version;
    };
    timed(&format!("{backend}/update"), &mut update);

    let mut group = c.benchmark_group(format!("store_{backend}"));
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (who, principal) in [("admin", &s.admin), ("viewer", &s.viewer)] {
        group.bench_function(format!("list_page50_of_{n}_{who}"), |b| {
            b.iter(|| {
                rt.block_on(s.hub.list_connections(principal, black_box(&admin_query)))
                    .unwrap()
            })
        });
    }
    group.bench_function("create", |b| b.iter(&create));
    group.bench_function("get", |b| {
        b.iter(|| {
            rt.block_on(s.hub.connection(&s.admin, black_box(s.sample)))
                .unwrap()
        })
    });
    group.bench_function("update_description", |b| b.iter(&mut update));
    group.finish();
}

/// Times up to `TIMED_CALLS` calls of `f` one by one (fewer when `TIMED_BUDGET` runs out, but at
/// least 100) and prints p50, p99 and max.
fn timed(label: &str, mut f: impl FnMut()) {
    let series = Instant::now();
    let mut times: Vec<Duration> = Vec::with_capacity(TIMED_CALLS);
    while times.len() < TIMED_CALLS && (times.len() < 100 || series.elapsed() < TIMED_BUDGET) {
        let started = Instant::now();
        f();
        times.push(started.elapsed());
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    println!(
        "{label:<36} {:>4} calls: p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
        times.len(),
        ms(at(0.50)),
        ms(at(0.99)),
        ms(times[times.len() - 1]),
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Opens the Hub on `store`, makes the admin and a viewer, and seeds `n` connections owned by
/// the admin, granting the viewer `view` on every tenth.
async fn seed(backend: &str, store: Arc<dyn Store>, n: u64) -> Seeded {
    let keyring = Arc::new(Keyring::parse(KEYRING).unwrap());
    let hub = Hub::open(store.clone(), Keyring::parse(KEYRING).unwrap())
        .await
        .unwrap();
    hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
        .await
        .unwrap()
        .unwrap();
    let request = RequestInfo::default();
    let admin = hub
        .login("admin", Password::from(ADMIN_PW), &request)
        .await
        .unwrap();
    let viewer_user = hub
        .create_user(&admin, "viewer", Password::from(VIEWER_PW), Role::Viewer)
        .await
        .unwrap();
    let viewer = hub
        .login("viewer", Password::from(VIEWER_PW), &request)
        .await
        .unwrap();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..SEED_TASKS {
        let store = store.clone();
        let keyring = keyring.clone();
        let owner = admin.user();
        let viewer = viewer_user.id;
        tasks.push(tokio::spawn(async move {
            let mut sample = None;
            for i in (task..n).step_by(SEED_TASKS as usize) {
                let row = seed_row(&keyring, i, owner);
                let event = AuditEvent::now(
                    Some(owner),
                    "admin",
                    "connection.create",
                    Some(&format!("connection:{}", row.id)),
                    Outcome::Ok,
                );
                store.insert_connection(&row, &event).await.unwrap();
                if i % 10 == 0 {
                    let grant = Grant {
                        grantee: Grantee::User(viewer),
                        level: GrantLevel::View,
                    };
                    let event = AuditEvent::now(
                        Some(owner),
                        "admin",
                        "grants.write",
                        Some(&format!("connection:{}", row.id)),
                        Outcome::Ok,
                    );
                    store
                        .set_grants(row.id, row.version, &[grant], &event)
                        .await
                        .unwrap();
                }
                if i == n / 2 {
                    sample = Some(row.id);
                }
            }
            sample
        }));
    }
    let mut sample = None;
    for task in tasks {
        sample = sample.or(task.await.unwrap());
    }
    let took = started.elapsed();
    println!(
        "{backend}: seeded {n} connections and {} grants through Store::insert_connection / \
         set_grants in {:.1} s ({:.3} ms a row)",
        n / 10,
        took.as_secs_f64(),
        ms(took) / n as f64
    );
    Seeded {
        hub,
        admin,
        viewer,
        sample: sample.expect("a sample row"),
    }
}

/// Seeded connection `i`: named `db-{i}`, on the loopback address, with two tags, its password
/// sealed exactly as the Hub seals one.
fn seed_row(keyring: &Keyring, i: u64, owner: UserId) -> StoredConnection {
    let (spec, secrets) = ConnectionDraft {
        tags: vec!["bench".to_owned(), format!("team-{}", i % 10)],
        ..draft(&format!("db-{i}"), Some(&format!("seeded connection {i}")))
    }
    .validate()
    .unwrap();
    let id = ConnectionId::new();
    let (dek, wrapped) = keyring.new_dek(id).unwrap();
    let at = now();
    StoredConnection {
        id,
        spec,
        owner,
        version: 1,
        created_at: at,
        updated_at: at,
        secrets: SealedSecrets {
            dek: wrapped,
            password: dek
                .seal(id, "password", secrets.password.expose_secret().as_bytes())
                .unwrap(),
            client_key_pem: None,
        },
    }
}

fn draft(name: &str, description: Option<&str>) -> ConnectionDraft {
    ConnectionDraft {
        name: name.into(),
        description: description.map(Into::into),
        host: "127.0.0.1".into(),
        database: "app".into(),
        username: "app".into(),
        password: Some(Password::from("bench-connection-pw")),
        ..ConnectionDraft::default()
    }
}

/// Now, at the microsecond precision the stores keep.
fn now() -> OffsetDateTime {
    datahub_core::audit::truncate_to_micros(OffsetDateTime::now_utc())
}

criterion_group!(benches, store);
criterion_main!(benches);
