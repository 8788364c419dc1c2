//! The conformance suite on PostgreSQL, and what only PostgreSQL has: replicas sharing one
//! database (concurrent migration at open, one audit chain across pools), its migrations, and
//! raw access to the tables and files.
//!
//! Each test starts its own kit cluster (about 0.2 s): dropping it at the end of the test stops
//! the server, so no test leaves a server running, whatever the order tests end in.

use std::sync::Arc;
use std::time::Duration;

use datahub_core::audit::{ChainBreak, ChainVerifier};
use datahub_core::hub::Hub;
use datahub_core::model::{
    ConnectionDraft, FailureKind, HealthStatus, ListQuery, MonitoringDraft, Visibility,
};
use datahub_core::monitor::{
    CheckResult, Checker, HysteresisConfig, Monitor, MonitorConfig, MonitorEvent,
};
use datahub_core::secret::Password;
use datahub_core::store::postgres::MIGRATIONS;
use datahub_core::store::{AccountStore, HealthStore, PostgresOptions, PostgresStore, Store};
use datahub_core::{ConnectionId, ErrorKind};
use datahub_testkit::{PgCluster, User};

use crate::store::conformance::{
    audit_all, conformance_suite, conn, ev, keyring, row, sealed, spec, user,
};

const USER: &str = "datahub";
const PASSWORD: &str = "store-pw-Kq81!x";
const DATABASE: &str = "datahub";

/// A fresh cluster with a SCRAM user `datahub` owning the database `datahub`.
async fn cluster() -> PgCluster {
    tokio::task::spawn_blocking(|| {
        PgCluster::builder()
            // Room for a few pools of the default size (16): several "replicas" at once.
            .max_connections(80)
            .user(User::new(USER).password(PASSWORD))
            .database(DATABASE, USER)
            .start()
            .unwrap()
    })
    .await
    .unwrap()
}

async fn open(cluster: &PgCluster) -> datahub_core::Result<PostgresStore> {
    PostgresStore::connect(cluster.config(USER, DATABASE), PostgresOptions::default()).await
}

/// A fresh store on its own cluster; the cluster lives as long as the returned guard.
async fn fresh_pg() -> (Arc<dyn Store>, PgCluster) {
    let cluster = cluster().await;
    let store = open(&cluster).await.unwrap();
    (Arc::new(store), cluster)
}

conformance_suite!(fresh_pg());

fn psql(cluster: &PgCluster, sql: &str) -> String {
    cluster.psql(DATABASE, sql).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_opening_at_once_migrate_once() {
    let cluster = cluster().await;
    let opens = (0..4).map(|_| {
        let config = cluster.config(USER, DATABASE);
        tokio::spawn(PostgresStore::connect(config, PostgresOptions::default()))
    });
    let mut stores = Vec::new();
    for open in opens.collect::<Vec<_>>() {
        stores.push(open.await.unwrap().unwrap());
    }
    assert_eq!(
        psql(
            &cluster,
            "SELECT count(*), min(version), max(version) FROM schema_migrations"
        ),
        format!(
            "{}|1|{}",
            MIGRATIONS.len(),
            MIGRATIONS.last().unwrap().version
        )
    );
    // Every replica works on the one schema.
    let a: Arc<dyn Store> = Arc::new(stores.remove(0));
    let b: Arc<dyn Store> = Arc::new(stores.remove(0));
    let owner = user(&a, "owner").await;
    let c = conn(&a, "orders", owner).await;
    assert_eq!(b.connection(c.id).await.unwrap().unwrap(), c);
}

/// Replicas starting together on an empty store each bootstrap the first admin at the same
/// time (every one finds no user): one creates it and the others see it made; none fails, and
/// the store holds one admin and one `user.bootstrap` entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_bootstrapping_at_once_make_one_admin() {
    let cluster = cluster().await;
    let mut hubs = Vec::new();
    for _ in 0..4 {
        let store: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
        hubs.push(Hub::open(store, keyring("k1", 7)).await.unwrap());
    }
    let runs: Vec<_> = hubs
        .into_iter()
        .map(|hub| {
            tokio::spawn(async move {
                hub.bootstrap_admin(Some(Password::from("bootstrap-race-pw-7Hq")))
                    .await
            })
        })
        .collect();
    let mut made = 0;
    for run in runs {
        if run.await.unwrap().unwrap().is_some() {
            made += 1;
        }
    }
    assert_eq!(made, 1);
    assert_eq!(psql(&cluster, "SELECT username FROM users"), "admin");
    assert_eq!(
        psql(
            &cluster,
            "SELECT count(*) FROM audit_log WHERE action = 'user.bootstrap'"
        ),
        "1"
    );
}

#[tokio::test]
async fn a_newer_schema_refuses_to_open() {
    let cluster = cluster().await;
    drop(open(&cluster).await.unwrap());
    psql(
        &cluster,
        "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
         VALUES (999, 'future', decode(repeat('00', 32), 'hex'), now())",
    );
    let err = open(&cluster).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    assert!(err.to_string().contains("version 999"), "{err}");
    assert!(err.to_string().contains("upgrade datahub"), "{err}");
}

#[tokio::test]
async fn an_edited_migration_refuses_to_open() {
    let cluster = cluster().await;
    drop(open(&cluster).await.unwrap());
    psql(
        &cluster,
        "UPDATE schema_migrations SET checksum = decode(repeat('07', 32), 'hex') \
         WHERE version = 1",
    );
    let err = open(&cluster).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    assert!(err.to_string().contains("migration 1"), "{err}");
}

#[tokio::test]
async fn reopening_keeps_the_data() {
    let cluster = cluster().await;
    let store: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    let owner = user(&store, "owner").await;
    let c = conn(&store, "orders", owner).await;
    drop(store);
    let store: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    assert_eq!(store.connection(c.id).await.unwrap().unwrap(), c);
    assert_eq!(
        store.user(owner).await.unwrap().unwrap().user.username,
        "owner"
    );
    let mut v = ChainVerifier::new();
    for r in audit_all(&store, 10).await {
        v.push(&r).unwrap();
    }
    assert_eq!(v.checked(), 2);
    assert_eq!(
        psql(&cluster, "SELECT count(*) FROM schema_migrations"),
        MIGRATIONS.len().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_appending_at_once_keep_one_linear_chain() {
    let cluster = cluster().await;
    // Two stores are two pools: as far as PostgreSQL can tell, two server replicas.
    let a: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
        tasks.push(tokio::spawn(async move {
            store.append_audit(&ev("auth.login")).await.unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=100).collect::<Vec<u64>>());
    let mut v = ChainVerifier::new();
    for r in audit_all(&b, 16).await {
        v.push(&r).unwrap_or_else(|e| panic!("chain broken: {e}"));
    }
    assert_eq!(v.checked(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_updates_of_one_version_one_wins() {
    let cluster = cluster().await;
    let a: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    let owner = user(&a, "owner").await;
    let c = conn(&a, "orders", owner).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
        let mut edit = c.clone();
        edit.spec = spec("orders", &format!("db{i}.example.com"), None, &[]);
        tasks.push(tokio::spawn(async move {
            store
                .update_connection(&edit, 1, &ev("connection.update"))
                .await
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(version) => won.push(version),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
                assert_eq!(e.field(), Some("version"));
            }
        }
    }
    assert_eq!(won, [2]);
    let stored = a.connection(c.id).await.unwrap().unwrap();
    assert_eq!(stored.version, 2);
    // One create, one update: the losers left nothing in the log.
    assert_eq!(audit_all(&a, 50).await.len(), 3);
}

#[tokio::test]
async fn update_and_delete_tell_missing_from_stale() {
    let (store, _cluster) = fresh_pg().await;
    let owner = user(&store, "owner").await;
    let c = conn(&store, "orders", owner).await;
    let mut ghost = c.clone();
    ghost.id = ConnectionId::new();
    let e = store
        .update_connection(&ghost, 1, &ev("connection.update"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = store
        .delete_connection(c.id, 7, &ev("connection.delete"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let e = store
        .delete_connection(ghost.id, 1, &ev("connection.delete"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn a_sealed_canary_never_reaches_the_database_in_plaintext() {
    const CANARY: &str = "canary-Pg7!wQ3#pw-19ad";
    let cluster = cluster().await;
    let store: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    let owner = user(&store, "owner").await;
    let mut r = row(spec("orders", "db.example.com", None, &[]), owner);
    r.spec = crate::store::conformance::full_spec("orders");
    r.secrets = sealed(&keyring("k1", 1), r.id, CANARY, true);
    store
        .insert_connection(&r, &ev("connection.create"))
        .await
        .unwrap();
    let mut again = r.clone();
    again.secrets = sealed(&keyring("k1", 1), r.id, CANARY, true);
    store
        .update_connection(&again, 1, &ev("connection.update"))
        .await
        .unwrap();

    // Every table, every row, as text (bytea as hex): neither the canary nor its hex form.
    let tables = psql(
        &cluster,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    );
    let tables: Vec<&str> = tables.lines().collect();
    assert!(tables.contains(&"connections") && tables.contains(&"audit_log"));
    let hex: String = CANARY.bytes().map(|b| format!("{b:02x}")).collect();
    let mut dumped = 0;
    for table in tables {
        let dump = psql(&cluster, &format!("SELECT t::text FROM {table} t"));
        dumped += dump.len();
        for needle in [CANARY, hex.as_str(), "-----BEGIN PRIVATE K"] {
            assert!(!dump.contains(needle), "{needle} found in table {table}");
        }
    }
    assert!(dumped > 1_000);

    // Nor in the files: tables, indexes and write-ahead log, after a checkpoint.
    psql(&cluster, "CHECKPOINT");
    let mut scanned = 0;
    let mut stack = vec![cluster.data_dir().to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                scanned += bytes.len();
                assert!(
                    !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
                    "the canary is in {} in plaintext",
                    path.display()
                );
            }
        }
    }
    assert!(scanned > 1_000_000);

    // The row is there and opens with the key.
    let got = store.connection(r.id).await.unwrap().unwrap();
    let dek = keyring("k1", 1).unwrap_dek(r.id, &got.secrets.dek).unwrap();
    let pw = dek.open(r.id, "password", &got.secrets.password).unwrap();
    assert_eq!(pw.expose_secret(), CANARY.as_bytes());
}

#[tokio::test]
async fn the_audit_log_is_append_only_and_an_edit_is_detected() {
    let (store, cluster) = fresh_pg().await;
    for _ in 0..3 {
        store.append_audit(&ev("auth.login")).await.unwrap();
    }
    for sql in [
        "UPDATE audit_log SET action = 'x' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 2",
        "TRUNCATE audit_log",
    ] {
        let err = cluster.psql(DATABASE, sql).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    // Someone who owns the table can switch the trigger off: the chain still tells.
    psql(
        &cluster,
        "ALTER TABLE audit_log DISABLE TRIGGER USER; \
         UPDATE audit_log SET actor_name = 'mallory' WHERE seq = 2",
    );
    let mut v = ChainVerifier::new();
    let records = audit_all(&store, 10).await;
    let broken = records.iter().find_map(|r| v.push(r).err());
    assert_eq!(broken, Some(ChainBreak::Content { seq: 2 }));
}

#[tokio::test]
async fn a_corrupt_row_is_a_store_error_not_a_panic() {
    let (store, cluster) = fresh_pg().await;
    let owner = user(&store, "owner").await;
    let c = conn(&store, "orders", owner).await;
    // (edit, whether listing reads the edited column too)
    for (sql, listed) in [
        ("UPDATE connections SET name = 'Not A Name'", true),
        ("UPDATE connections SET tls_mode = 'sometimes'", true),
        ("UPDATE connections SET port = 0", true),
        ("UPDATE connections SET tags = ARRAY['ok', NULL]", true),
        ("UPDATE connections SET version = -1", true),
        ("UPDATE connections SET sealed_password = '\\x00'", false),
        ("UPDATE connections SET kek_id = 'other'", false),
    ] {
        psql(&cluster, "DELETE FROM connections");
        store
            .insert_connection(&c, &ev("connection.create"))
            .await
            .unwrap();
        // Constraints may refuse some edits outright; what gets in must not get out.
        if cluster.psql(DATABASE, sql).is_err() {
            continue;
        }
        let err = store.connection(c.id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Store, "{sql}: {err}");
        assert!(err.to_string().contains("corrupt row"), "{sql}: {err}");
        let listed_ok = store
            .list_connections(&ListQuery::default(), &Visibility::All)
            .await
            .map_err(|e| assert_eq!(e.kind(), ErrorKind::Store, "{sql}: {e}"))
            .is_ok();
        assert_eq!(listed_ok, !listed, "{sql}");
    }
}

#[tokio::test]
async fn an_unreachable_or_refusing_store_says_what_to_check_without_the_password() {
    let cluster = cluster().await;
    // Wrong password: refused, and the message names neither password.
    let mut config = cluster.config(USER, DATABASE);
    config.password("wrong-pw-Zz9");
    let err = PostgresStore::connect(config, PostgresOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    let text = format!("{err} {err:?}");
    assert!(text.contains("password"), "{text}");
    assert!(
        !text.contains("wrong-pw-Zz9") && !text.contains(PASSWORD),
        "{text}"
    );

    // Nothing listening: a prompt store error that says to check the server.
    let port = cluster.port();
    drop(cluster);
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user(USER)
        .password(PASSWORD)
        .dbname(DATABASE);
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(2),
        ..PostgresOptions::default()
    };
    let started = std::time::Instant::now();
    let err = PostgresStore::connect(config, options).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(err.kind(), ErrorKind::Store);
    let text = format!("{err} {err:?}");
    assert!(text.contains("check"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_pool_times_out_with_a_store_error_and_appends_wait_for_the_lock() {
    let cluster = cluster().await;
    let options = PostgresOptions {
        max_connections: 1,
        wait_timeout: Duration::from_millis(300),
        ..PostgresOptions::default()
    };
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(cluster.config(USER, DATABASE), options)
            .await
            .unwrap(),
    );
    // Another "replica" holds the audit lock: an append waits for it, holding the only
    // pooled connection meanwhile.
    let (holder, connection) = cluster
        .config(USER, DATABASE)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    holder
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&datahub_core::store::postgres::AUDIT_LOCK_KEY],
        )
        .await
        .unwrap();
    let appending = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.append_audit(&ev("auth.login")).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !appending.is_finished(),
        "the append did not wait for the lock"
    );
    let started = std::time::Instant::now();
    let err = store.user_count().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.kind(), ErrorKind::Store);
    assert!(err.to_string().contains("free connection"), "{err}");
    holder
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&datahub_core::store::postgres::AUDIT_LOCK_KEY],
        )
        .await
        .unwrap();
    assert_eq!(appending.await.unwrap().unwrap().seq, 1);
    assert_eq!(store.user_count().await.unwrap(), 0);
}

#[tokio::test]
async fn a_store_url_opens_and_a_bad_one_is_not_echoed() {
    let cluster = cluster().await;
    let store =
        PostgresStore::connect_url(&cluster.url(USER, DATABASE), PostgresOptions::default())
            .await
            .unwrap();
    assert_eq!(store.user_count().await.unwrap(), 0);
    assert!(!format!("{store:?}").contains(PASSWORD));
    let err = PostgresStore::connect_url(
        "postgres://datahub:url-pw-Qx7@127.0.0.1:notaport/db",
        PostgresOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("store.port"));
    assert!(!format!("{err} {err:?}").contains("url-pw-Qx7"));
}

// ------------------------------------------------------------------------------------------
// S32: the store's own connection: TLS through the prober's rustls setup, no cleartext password
// ------------------------------------------------------------------------------------------

const TLS_USER: &str = "tlsstore";
const TLS_PASSWORD: &str = "tls-store-pw-Vb4!";

/// A TLS cluster: `tlsstore` (SCRAM, TLS only), `certstore` (client certificate), `plainpw`
/// (cleartext `password` auth, plaintext only), each owning a database of its name.
async fn tls_cluster() -> PgCluster {
    use datahub_testkit::{AuthMethod, ServerCert, Transport};
    tokio::task::spawn_blocking(|| {
        PgCluster::builder()
            .tls(ServerCert::Valid)
            .max_connections(60)
            .user(
                User::new(TLS_USER)
                    .password(TLS_PASSWORD)
                    .transport(Transport::SslOnly),
            )
            .user(User::new("certstore").auth(AuthMethod::Cert))
            .user(
                User::new("plainpw")
                    .password(TLS_PASSWORD)
                    .auth(AuthMethod::Password)
                    .transport(Transport::NoSsl),
            )
            .database(TLS_USER, TLS_USER)
            .database("certstore", "certstore")
            .database("plainpw", "plainpw")
            .start()
            .unwrap()
    })
    .await
    .unwrap()
}

/// How many of `user`'s sessions run over TLS, and how many in all.
fn ssl_sessions(cluster: &PgCluster, user: &str) -> (u32, u32) {
    let out = cluster
        .psql(
            "postgres",
            &format!(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
                 JOIN pg_stat_ssl s USING (pid) WHERE a.usename = '{user}'"
            ),
        )
        .unwrap();
    let (tls, all) = out.trim().split_once('|').unwrap();
    (tls.parse().unwrap(), all.parse().unwrap())
}

/// S32: `sslmode=verify-full` with `sslrootcert` (and, without `sslmode`, a root CA alone means
/// verify-full): the store opens over TLS, its event listener too, and channel binding can be
/// required.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_connects_over_verified_tls() {
    let cluster = tls_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cluster.ca_pem().unwrap()).unwrap();
    let base = cluster.url(TLS_USER, TLS_USER);
    for query in [
        format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        format!("sslrootcert={}", ca.display()),
        format!(
            "sslmode=verify-full&sslrootcert={}&channel_binding=require",
            ca.display()
        ),
    ] {
        let store =
            PostgresStore::connect_url(&format!("{base}?{query}"), PostgresOptions::default())
                .await
                .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert_eq!(store.user_count().await.unwrap(), 0);
        let _events = store.subscribe_events().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (tls, all) = ssl_sessions(&cluster, TLS_USER);
        assert!(all >= 2, "the pool and the listener: {all}");
        assert_eq!(tls, all, "{query}: every session over TLS");
        store.close();
    }
}

/// S32: a client certificate (`sslcert`, `sslkey`) signs the store in.
#[tokio::test]
async fn the_store_signs_in_with_a_client_certificate() {
    let cluster = tls_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("client.pem"),
        dir.path().join("client.key"),
    );
    std::fs::write(&ca, cluster.ca_pem().unwrap()).unwrap();
    let (cert_pem, key_pem) = cluster.client_cert("certstore").unwrap();
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        cluster.url("certstore", "certstore"),
        ca.display(),
        cert.display(),
        key.display()
    );
    let store = PostgresStore::connect_url(&url, PostgresOptions::default())
        .await
        .unwrap();
    assert_eq!(store.user_count().await.unwrap(), 0);
}

/// S32: a server certificate from another CA refuses to open, with a message that names the
/// store and the certificate problem, never the password.
#[tokio::test]
async fn a_wrong_ca_refuses_the_store_with_a_clear_message() {
    let cluster = tls_cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, cluster.other_ca_pem().unwrap()).unwrap();
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url(TLS_USER, TLS_USER),
        other.display()
    );
    let err = PostgresStore::connect_url(&url, PostgresOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    let text = format!("{err} {err:?}");
    assert!(text.contains("PostgreSQL store"), "{text}");
    assert!(text.contains("tls_certificate_invalid"), "{text}");
    assert!(!text.contains(TLS_PASSWORD), "{text}");
    let (_, all) = ssl_sessions(&cluster, TLS_USER);
    assert_eq!(all, 0, "nothing signed in");
}

/// S32, S13: with `prefer` falling back to plaintext (or `disable`), a server asking for the
/// password in cleartext gets nothing: the store refuses to open.
#[tokio::test]
async fn the_store_password_never_goes_cleartext_over_plaintext() {
    let cluster = tls_cluster().await;
    for mode in ["prefer", "disable"] {
        let url = format!("{}?sslmode={mode}", cluster.url("plainpw", "plainpw"));
        let err = PostgresStore::connect_url(&url, PostgresOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Store, "{mode}");
        let text = format!("{err} {err:?}");
        assert!(text.contains("auth_method_refused"), "{mode}: {text}");
        assert!(!text.contains(TLS_PASSWORD), "{text}");
    }
    // No sslmode: prefer, over TLS when the server has it (the SCRAM user over hostssl).
    let store =
        PostgresStore::connect_url(&cluster.url(TLS_USER, TLS_USER), PostgresOptions::default())
            .await
            .unwrap();
    assert_eq!(store.user_count().await.unwrap(), 0);
    let (tls, all) = ssl_sessions(&cluster, TLS_USER);
    assert_eq!(tls, all);
}

/// A store on `cluster` whose statements (lock waits included) run out after 300 ms.
async fn store_with_short_statements(
    cluster: &PgCluster,
    max_connections: usize,
) -> Arc<dyn Store> {
    let options = PostgresOptions {
        statement_timeout: Duration::from_millis(300),
        max_connections,
        ..PostgresOptions::default()
    };
    Arc::new(
        PostgresStore::connect(cluster.config(USER, DATABASE), options)
            .await
            .unwrap(),
    )
}

/// A client of its own holding the audit log's advisory lock (until it unlocks it).
async fn audit_lock_holder(cluster: &PgCluster) -> tokio_postgres::Client {
    let (holder, connection) = cluster
        .config(USER, DATABASE)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let key = datahub_core::store::postgres::AUDIT_LOCK_KEY;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    holder
}

/// Lets go of the lock [`audit_lock_holder`] took.
async fn release_audit_lock(holder: &tokio_postgres::Client) {
    let key = datahub_core::store::postgres::AUDIT_LOCK_KEY;
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_audit_write_rolls_the_change_back() {
    let cluster = cluster().await;
    let store = store_with_short_statements(&cluster, 16).await;
    let holder = audit_lock_holder(&cluster).await;
    // The user row is written, then the audit append cannot get its lock in time.
    let started = std::time::Instant::now();
    let err = store
        .insert_user(
            &crate::store::conformance::user_row("owner", datahub_core::rbac::Role::Editor),
            &ev("user.create"),
        )
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err.kind(), ErrorKind::Store);
    assert!(err.to_string().contains("ran out of time"), "{err}");
    release_audit_lock(&holder).await;
    assert_eq!(store.user_count().await.unwrap(), 0);
    assert!(store.user_by_name("owner").await.unwrap().is_none());
    assert!(audit_all(&store, 10).await.is_empty());
}

/// An audit append in a transaction of its own (one round trip: `BEGIN`, the lock, the append
/// and `COMMIT` sent together) that cannot get its lock fails, writes nothing, and leaves no
/// connection of the pool inside a transaction: the appends after it chain on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_audit_append_of_its_own_writes_nothing_and_the_next_ones_chain() {
    let cluster = cluster().await;
    // One connection: the one each append below takes.
    let store = store_with_short_statements(&cluster, 1).await;
    let first = store.append_audit(&ev("one")).await.unwrap();
    let holder = audit_lock_holder(&cluster).await;
    for synced in [true, false] {
        let err = if synced {
            store.append_audit(&ev("two")).await
        } else {
            store.append_audit_unsynced(&ev("two")).await
        }
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Store);
        assert!(err.to_string().contains("ran out of time"), "{err}");
    }
    release_audit_lock(&holder).await;
    // The pool's one connection is out of any transaction: what it writes now commits.
    let second = store.append_audit_unsynced(&ev("three")).await.unwrap();
    let third = store.append_audit(&ev("four")).await.unwrap();
    assert_eq!((second.seq, third.seq), (first.seq + 1, first.seq + 2));
    assert_eq!(second.prev_hash, first.hash);
    let all = audit_all(&store, 10).await;
    let actions: Vec<&str> = all
        .iter()
        .filter(|r| r.seq >= first.seq)
        .map(|r| r.event.action.as_str())
        .collect();
    assert_eq!(actions, ["one", "three", "four"]);
}

#[tokio::test]
async fn the_search_migration_backfills_existing_rows() {
    use datahub_core::model::{ListQuery, Visibility};
    use datahub_core::rbac::{Grant, GrantLevel, Grantee};
    let cluster = cluster().await;
    let store: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    let owner = user(&store, "owner").await;
    let viewer = user(&store, "viewer").await;
    let rows = [
        row(
            spec(
                "orders",
                "h1.example.com",
                Some("Ärger über Öl"),
                &["red", "blue"],
            ),
            owner,
        ),
        row(spec("billing", "h2.example.com", None, &[]), owner),
    ];
    for r in &rows {
        store
            .insert_connection(r, &ev("connection.create"))
            .await
            .unwrap();
    }
    let grant = Grant {
        grantee: Grantee::User(viewer),
        level: GrantLevel::View,
    };
    crate::store_set_grants(store.as_ref(), rows[1].id, &[grant], &ev("grant.set"))
        .await
        .unwrap();
    drop(store);
    // Back to a database migrated by version 1 only.
    psql(
        &cluster,
        "DROP TABLE connection_search; \
         DROP TRIGGER connections_search_sync ON connections; \
         DROP FUNCTION datahub_connection_search_sync(); \
         DROP FUNCTION datahub_search_trigrams(text); \
         DELETE FROM schema_migrations WHERE version = 2;",
    );
    let store: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    for (search, expected) in [
        ("ÜBER", vec!["orders"]),
        ("blue", vec!["orders"]),
        ("redblue", vec![]),
        ("h2.ex", vec!["billing"]),
        ("ING", vec!["billing"]),
        (".example.", vec!["billing", "orders"]),
    ] {
        let query = ListQuery {
            search: Some(search.into()),
            ..ListQuery::default()
        };
        let page = store
            .list_connections(&query, &Visibility::All)
            .await
            .unwrap();
        let names: Vec<&str> = page.items.iter().map(|s| s.spec.name.as_str()).collect();
        assert_eq!(names, expected, "{search:?}");
        assert_eq!(page.total as usize, expected.len(), "{search:?}");
    }
    let query = ListQuery {
        search: Some(".example.".into()),
        ..ListQuery::default()
    };
    let vis = Visibility::Member {
        user: viewer,
        teams: vec![],
    };
    let page = store.list_connections(&query, &vis).await.unwrap();
    let names: Vec<&str> = page.items.iter().map(|s| s.spec.name.as_str()).collect();
    assert_eq!((names, page.total), (vec!["billing"], 1));
}

/// Checks from every "process", with the checking monitor's tag; after `freeze` every new check
/// hangs (nothing more is recorded), so the events can be compared with a settled history.
#[derive(Debug, Default)]
struct Shared {
    log: std::sync::Mutex<Vec<(ConnectionId, &'static str, std::time::Instant)>>,
    freeze: std::sync::atomic::AtomicBool,
    failing: std::sync::Mutex<std::collections::HashSet<ConnectionId>>,
}

#[derive(Debug)]
struct Tagged {
    tag: &'static str,
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl Checker for Tagged {
    async fn check(&self, id: ConnectionId) -> CheckResult {
        if self.shared.freeze.load(std::sync::atomic::Ordering::SeqCst) {
            return std::future::pending().await;
        }
        self.shared
            .log
            .lock()
            .unwrap()
            .push((id, self.tag, std::time::Instant::now()));
        if self.shared.failing.lock().unwrap().contains(&id) {
            CheckResult::failure(FailureKind::ConnectionRefused, 1)
        } else {
            CheckResult::success(1)
        }
    }
}

fn status_changes(
    rx: &mut tokio::sync::broadcast::Receiver<MonitorEvent>,
) -> Vec<(
    ConnectionId,
    HealthStatus,
    HealthStatus,
    time::OffsetDateTime,
)> {
    let mut out = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(MonitorEvent::StatusChanged { id, from, to, at }) => out.push((id, from, to, at)),
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    out.sort_by_key(|e| (e.0, e.3));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_split_the_checks_and_both_receive_every_event() {
    const INTERVAL: Duration = Duration::from_secs(10);
    let cluster = cluster().await;
    // Two pools on one database: two "processes" sharing the store.
    let a: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    let b: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    let owner = user(&a, "owner").await;
    let shared = Arc::new(Shared::default());
    let mut ids = Vec::new();
    // Twenty-four: both monitors' shares hold some (all on one has odds of 1 in 8 million).
    for i in 0..24 {
        let id = monitored(a.as_ref(), owner, format!("db-{i}")).await;
        if i % 2 == 1 {
            shared.failing.lock().unwrap().insert(id);
        }
        ids.push(id);
    }
    let config = MonitorConfig {
        // Two failures make `down`: each failing connection goes unknown → degraded → down,
        // usually over checks by both processes, so both must follow the stored history.
        hysteresis: HysteresisConfig::new(2, 2).unwrap(),
        check_timeout: Duration::from_secs(30),
        ..MonitorConfig::default()
    };
    let started = std::time::Instant::now();
    let checker = |tag| {
        Arc::new(Tagged {
            tag,
            shared: Arc::clone(&shared),
        })
    };
    let ma = Monitor::start(Arc::clone(&a), checker("a"), config.clone());
    let mb = Monitor::start(Arc::clone(&b), checker("b"), config);
    let (mut ra, mut rb) = (ma.subscribe(), mb.subscribe());

    // Two and a half intervals: every connection is due two or three times.
    tokio::time::sleep(Duration::from_millis(25_000)).await;
    shared
        .freeze
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Let checks already answered be recorded and their notifications arrive.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (ea, eb) = (status_changes(&mut ra), status_changes(&mut rb));
    let (sa, sb) = (ma.stats(), mb.stats());
    ma.shutdown().await;
    mb.shutdown().await;

    let log = shared.log.lock().unwrap().clone();
    let by = |tag| log.iter().filter(|(_, t, _)| *t == tag).count();
    assert!(
        by("a") > 0 && by("b") > 0,
        "both processes check: {sa:?} {sb:?}"
    );
    assert_eq!(sa.checks + sb.checks, log.len() as u64);
    // Each left the other's share alone, without a claim; both saw two monitors live.
    assert!(sa.not_home > 0 && sb.not_home > 0, "{sa:?} {sb:?}");
    assert_eq!(
        (sa.live_monitors, sb.live_monitors),
        (2, 2),
        "{sa:?} {sb:?}"
    );
    let mut expected = Vec::new();
    for id in &ids {
        let mut times: Vec<std::time::Instant> = log
            .iter()
            .filter(|(i, _, _)| i == id)
            .map(|(_, _, t)| *t)
            .collect();
        times.sort();
        // Due 2 or 3 times in 25 s (4 at most with the hold); never checked twice in one interval (80 % of it at least,
        // the lease's hold, less a margin for the time between the claim and the call).
        assert!((2..=4).contains(&times.len()), "{id}: {times:?}");
        for w in times.windows(2) {
            let gap = w[1] - w[0];
            assert!(gap >= INTERVAL.mul_f64(0.75), "{id}: checked {gap:?} apart");
        }
        // Every check was recorded once, and the statuses follow the hysteresis across both
        // processes' checks.
        let mut history = a
            .checks(*id, time::OffsetDateTime::UNIX_EPOCH, 100)
            .await
            .unwrap();
        history.reverse();
        assert_eq!(history.len(), times.len(), "{id}");
        let failing = shared.failing.lock().unwrap().contains(id);
        let statuses: Vec<HealthStatus> = history.iter().map(|c| c.status).collect();
        let want: &[HealthStatus] = if failing {
            &[
                HealthStatus::Degraded,
                HealthStatus::Down,
                HealthStatus::Down,
                HealthStatus::Down,
            ]
        } else {
            &[HealthStatus::Healthy; 4]
        };
        assert_eq!(statuses, want[..statuses.len()], "{id}");
        let mut from = HealthStatus::Unknown;
        for c in &history {
            if c.status != from {
                expected.push((*id, from, c.status, c.at));
            }
            from = c.status;
        }
    }
    expected.sort_by_key(|e| (e.0, e.3));
    // Both processes received every status change, once, whoever checked.
    assert_eq!(ea, expected);
    assert_eq!(eb, expected);
    assert!(
        sa.remote_events > 0 && sb.remote_events > 0,
        "{sa:?} {sb:?}"
    );
    eprintln!(
        "two processes: {} checks by a, {} by b, {} leases lost, {} left to the other, {} status \
         changes, {:?}",
        by("a"),
        by("b"),
        sa.leases_lost + sb.leases_lost,
        sa.not_home + sb.not_home,
        expected.len(),
        started.elapsed()
    );
}

/// Saves a connection named `name` with monitoring every 10 s; answers its id.
async fn monitored(store: &dyn Store, owner: datahub_core::UserId, name: String) -> ConnectionId {
    let spec = ConnectionDraft {
        name,
        host: "127.0.0.1".into(),
        database: "app".into(),
        username: "app".into(),
        password: Some(Password::from("pw")),
        monitoring: MonitoringDraft {
            interval_s: Some(10),
            ..MonitoringDraft::default()
        },
        ..ConnectionDraft::default()
    }
    .validate()
    .unwrap()
    .0;
    let r = row(spec, owner);
    store
        .insert_connection(&r, &ev("connection.create"))
        .await
        .unwrap();
    r.id
}

/// The store's list of live monitors: a beat marks the caller and answers the others marked
/// within the timeout; a monitor that leaves, or stops beating for longer than the timeout, is
/// no longer answered.
#[tokio::test]
async fn monitors_see_each_other_until_they_leave_or_time_out() {
    let cluster = cluster().await;
    let store = open(&cluster).await.unwrap();
    let (a, b, c) = (
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
    );
    let long = Duration::from_secs(60);
    assert!(store.beat(a, long).await.unwrap().is_empty());
    assert_eq!(store.beat(b, long).await.unwrap(), [a]);
    let mut seen = store.beat(c, long).await.unwrap();
    seen.sort();
    assert_eq!(seen, [a, b]);
    // `b` leaves: nobody sees it any more.
    store.leave(b).await.unwrap();
    assert_eq!(store.beat(a, long).await.unwrap(), [c]);
    // `c` stops beating: once its timeout is over, it is not live.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        store
            .beat(a, Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.beat(c, long).await.unwrap(), [a]);
}

/// A monitor leaves the share of another live monitor alone (no claim, no check) while that
/// one beats, and takes it over once that one stops beating (a death: it never left):
/// everything checked within the timeout and an interval, nothing twice within the lease's
/// hold. Then it is the lone monitor and checks everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_monitors_share_is_taken_over_and_a_lone_monitor_checks_everything() {
    const INTERVAL: Duration = Duration::from_secs(10);
    let cluster = cluster().await;
    let store: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    let owner = user(&store, "owner").await;
    let mut ids = Vec::new();
    for i in 0..16 {
        ids.push(monitored(store.as_ref(), owner, format!("db-{i}")).await);
    }
    // Another monitor, live from before this one starts: it beats, and never checks.
    let peer = uuid::Uuid::now_v7();
    let timeout = Duration::from_secs(1);
    store.beat(peer, timeout).await.unwrap();
    let beating = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let beater = {
        let (store, beating) = (Arc::clone(&store), Arc::clone(&beating));
        tokio::spawn(async move {
            while beating.load(std::sync::atomic::Ordering::SeqCst) {
                store.beat(peer, timeout).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let shared = Arc::new(Shared::default());
    let config = MonitorConfig {
        replica_heartbeat: Duration::from_millis(200),
        replica_timeout: timeout,
        ..MonitorConfig::default()
    };
    let monitor = Monitor::start(
        Arc::clone(&store),
        Arc::new(Tagged {
            tag: "m",
            shared: Arc::clone(&shared),
        }),
        config,
    );
    let checked = |shared: &Shared| -> std::collections::HashSet<ConnectionId> {
        shared
            .log
            .lock()
            .unwrap()
            .iter()
            .map(|(id, _, _)| *id)
            .collect()
    };

    // Two intervals with the peer live: this monitor checks its share only, every one of it.
    tokio::time::sleep(INTERVAL * 2).await;
    let mine = checked(&shared);
    let stats = monitor.stats();
    assert_eq!(stats.live_monitors, 2, "{stats:?}");
    assert!(stats.not_home > 0, "{stats:?}");
    assert!(
        !mine.is_empty() && mine.len() < ids.len(),
        "{} of {} checked with the peer live",
        mine.len(),
        ids.len()
    );
    assert_eq!(stats.leases_lost, 0, "its own share is never contended");

    // The peer dies: its share is checked within the timeout, a beat and an interval.
    beating.store(false, std::sync::atomic::Ordering::SeqCst);
    beater.await.unwrap();
    let died = std::time::Instant::now();
    let deadline = died + timeout + INTERVAL.mul_f64(1.1) + Duration::from_secs(3);
    while checked(&shared).len() < ids.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "not taken over: {} of {} checked, {:?}",
            checked(&shared).len(),
            ids.len(),
            monitor.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(monitor.stats().live_monitors, 1);
    // Alone, it checks everything every interval.
    let alone = std::time::Instant::now();
    tokio::time::sleep(INTERVAL.mul_f64(1.2)).await;
    let log = shared.log.lock().unwrap().clone();
    for id in &ids {
        assert!(
            log.iter().any(|(i, _, at)| i == id && *at >= alone),
            "{id} not checked in the interval after the takeover"
        );
        let mut times: Vec<std::time::Instant> = log
            .iter()
            .filter(|(i, _, _)| i == id)
            .map(|(_, _, at)| *at)
            .collect();
        times.sort();
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= INTERVAL.mul_f64(0.75),
                "{id}: checked {:?} apart",
                w[1] - w[0]
            );
        }
    }
    monitor.shutdown().await;
    // It left the store's list on its way out.
    assert!(
        store
            .beat(peer, Duration::from_secs(60))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A process taking over a connection another process checked carries on from the stored
/// status, even when it found the connection before that check (its view then said `unknown`):
/// its hysteresis counts the other's checks, and it publishes only changes of the stored status
/// (no `unknown → healthy` for a connection already healthy, no `unknown → degraded` for one
/// already degraded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_taking_over_a_connection_carries_on_from_the_stored_status() {
    use datahub_core::model::{Check, Health};

    let cluster = cluster().await;
    let store: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    let owner = user(&store, "owner").await;
    let shared = Arc::new(Shared::default());
    let mut ids = Vec::new();
    for name in ["failing", "steady"] {
        ids.push(monitored(store.as_ref(), owner, name.into()).await);
    }
    let (failing, steady) = (ids[0], ids[1]);
    shared.failing.lock().unwrap().insert(failing);

    // Another process holds both leases from before this monitor starts...
    let other = uuid::Uuid::now_v7();
    let now = || {
        let at = time::OffsetDateTime::now_utc();
        at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
            .unwrap()
    };
    let won = store
        .lease_checks(&ids, other, now(), Duration::from_secs(8))
        .await
        .unwrap();
    assert_eq!(won.len(), 2);
    let config = MonitorConfig {
        hysteresis: HysteresisConfig::new(2, 2).unwrap(),
        ..MonitorConfig::default()
    };
    let monitor = Monitor::start(
        Arc::clone(&store),
        Arc::new(Tagged {
            tag: "b",
            shared: Arc::clone(&shared),
        }),
        config,
    );
    let mut events = monitor.subscribe();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while monitor.stats().connections < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the monitor did not load"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ... and checks both once this monitor has found them unchecked: the failing one fails
    // (degraded), the steady one succeeds (healthy).
    let at = now();
    let recorded = |id, ok: bool| {
        let status = if ok {
            HealthStatus::Healthy
        } else {
            HealthStatus::Degraded
        };
        let error_kind = (!ok).then_some(FailureKind::ConnectionRefused);
        (
            Check {
                connection: id,
                at,
                ok,
                latency_ms: 1,
                error_kind,
                step: None,
                status,
            },
            Health {
                status,
                checked_at: Some(at),
                latency_ms: Some(1),
                error_kind,
                uptime_24h: Some(if ok { 1.0 } else { 0.0 }),
                facts: None,
            },
        )
    };
    store
        .record_checks(&[recorded(failing, false), recorded(steady, true)])
        .await
        .unwrap();

    // This monitor claims each once the other's hold is over (8 s), at its next due time.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while monitor.stats().checks < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "not taken over: {:?}",
            monitor.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shared
        .freeze
        .store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let changes = status_changes(&mut events);
    monitor.shutdown().await;

    // The failing connection's second failure in a row (the other's, then this one's) makes it
    // down: the one change, from the stored status. The steady one did not change.
    let history = store
        .checks(failing, time::OffsetDateTime::UNIX_EPOCH, 10)
        .await
        .unwrap();
    let statuses: Vec<HealthStatus> = history.iter().rev().map(|c| c.status).collect();
    assert_eq!(statuses, [HealthStatus::Degraded, HealthStatus::Down]);
    let steady_history = store
        .checks(steady, time::OffsetDateTime::UNIX_EPOCH, 10)
        .await
        .unwrap();
    assert!(
        steady_history
            .iter()
            .all(|c| c.status == HealthStatus::Healthy),
        "{steady_history:?}"
    );
    assert_eq!(steady_history.len(), 2);
    assert_eq!(
        changes,
        [(
            failing,
            HealthStatus::Degraded,
            HealthStatus::Down,
            history[0].at
        )]
    );
}

/// Pooled connections the server ended while they sat idle (an administrator's
/// `pg_terminate_backend`, a restart) are replaced before reuse: the next calls succeed, used
/// at once after the loss (their sockets closed) or after an idle pause (verified by a query).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_server_ended_are_replaced_before_reuse() {
    let cluster = cluster().await;
    let store: Arc<dyn Store> = Arc::new(open(&cluster).await.unwrap());
    let owner = user(&store, "owner").await;
    // Several pooled connections at once, all idle afterwards.
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = store.clone();
        reads.spawn(async move { store.teams_of(owner).await.map(drop) });
    }
    while let Some(read) = reads.join_next().await {
        read.unwrap().unwrap();
    }
    let end_all = || {
        assert_eq!(
            psql(
                &cluster,
                "SELECT count(pg_terminate_backend(pid)) > 0 FROM pg_stat_activity \
                 WHERE usename = 'datahub'"
            ),
            "t"
        );
        // Until the backends are gone (their sockets closed on the client's side too).
        while psql(
            &cluster,
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'datahub'",
        ) != "0"
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    end_all();
    for _ in 0..8 {
        store.teams_of(owner).await.unwrap();
    }
    end_all();
    for _ in 0..4 {
        assert!(store.user(owner).await.unwrap().is_some());
    }
}
