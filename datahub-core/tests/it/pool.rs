//! Pools for embedding services (`probe::pool`) against kit clusters and fault proxies on
//! loopback: TLS verify-full with SCRAM, the size limit, the policy (no socket), the create
//! timeout, the cleartext guard (S13) and the canary.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datahub_core::model::{
    ChannelBinding, ConnectionDraft, ConnectionSecrets, ConnectionSpec, FailureKind, TlsDraft,
    TlsMode,
};
use datahub_core::net::{Dialer, Policy, StaticResolver};
use datahub_core::probe::{self, PoolConnectError, PoolOptions, ProbeRules};
use datahub_core::secret::{Password, PrivateKeyPem};
use datahub_testkit::{AuthMethod, Fault, FaultProxy, PgCluster, ServerCert, User};
use deadpool_postgres::{Pool, PoolError};

/// Every password here starts with this, so one search finds any leak.
const CANARY: &str = "canary-pool-5b20c4";

fn pw(tag: &str) -> String {
    format!("{CANARY}-{tag}")
}

/// The one dialer with a static resolver: `localhost` is 127.0.0.1. Tests dial only loopback.
fn dialer() -> Arc<Dialer> {
    let resolver = StaticResolver::new().with("localhost", &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    Arc::new(Dialer::new(Arc::new(resolver)))
}

fn connection(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    mode: TlsMode,
    ca: Option<&str>,
) -> (ConnectionSpec, ConnectionSecrets) {
    draft(host, port, user, password, mode, ca)
        .validate()
        .unwrap()
}

fn draft(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    mode: TlsMode,
    ca: Option<&str>,
) -> ConnectionDraft {
    ConnectionDraft {
        name: "pool-test".to_owned(),
        host: host.to_owned(),
        port: Some(i64::from(port)),
        database: "postgres".to_owned(),
        username: user.to_owned(),
        password: Some(Password::from(password)),
        tls: TlsDraft {
            mode: Some(mode),
            ca_cert_pem: ca.map(str::to_owned),
            channel_binding: Some(ChannelBinding::Prefer),
            ..TlsDraft::default()
        },
        ..ConnectionDraft::default()
    }
}

fn any_mode() -> ProbeRules {
    ProbeRules {
        min_tls_mode: TlsMode::Disable,
        allow_cleartext_password: false,
    }
}

fn build(
    dialer: &Arc<Dialer>,
    policy: Policy,
    (spec, secrets): (ConnectionSpec, ConnectionSecrets),
    options: &PoolOptions,
) -> Pool {
    let pool = probe::pool(
        dialer.clone(),
        Arc::new(policy),
        &spec,
        secrets,
        &any_mode(),
        options,
    )
    .unwrap();
    assert_no_canary(&format!("{pool:?} {pool:#?}"));
    pool
}

fn assert_no_canary(shown: &str) {
    assert!(!shown.contains(CANARY), "canary shown: {shown}");
}

/// Checks an error of `Pool::get` shows no secret (Display, Debug, every source) and returns
/// its kind.
fn kind_of(err: &PoolError) -> FailureKind {
    let mut shown = format!("{err} {err:?} {err:#?}");
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        shown.push_str(&format!(" {e} {e:?}"));
        source = e.source();
    }
    assert_no_canary(&shown);
    probe::pool_failure_kind(err)
}

fn short(create: Duration) -> PoolOptions {
    PoolOptions {
        max_size: 2,
        wait_timeout: Duration::from_millis(200),
        create_timeout: create,
        recycle_timeout: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn a_verify_full_scram_pool_serves_concurrent_queries() {
    let password = pw("tls");
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("app").password(&password))
        .start()
        .unwrap();
    let ca = cluster.ca_pem().unwrap().to_owned();
    let dialer = dialer();
    let pool = build(
        &dialer,
        Policy::default(),
        connection(
            "localhost",
            cluster.port(),
            "app",
            &password,
            TlsMode::VerifyFull,
            Some(&ca),
        ),
        &PoolOptions::default(),
    );
    // Hold four clients at once, each on its own encrypted, authenticated session.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let client = pool.get().await.unwrap();
                let row = client
                    .query_one(
                        "SELECT pg_backend_pid(), current_user, ssl, $1::int + 1 \
                         FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                        &[&i],
                    )
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
                let pid: i32 = row.get(0);
                let user: String = row.get(1);
                let ssl: bool = row.get(2);
                let answer: i32 = row.get(3);
                assert_eq!((user.as_str(), ssl, answer), ("app", true, i + 1));
                pid
            })
        })
        .collect();
    let mut pids = HashSet::new();
    for task in tasks {
        pids.insert(task.await.unwrap());
    }
    assert_eq!(pids.len(), 4, "four sessions at once");
    assert_eq!(pool.status().size, 4);
    let client = pool.get().await.unwrap();
    // A row far beyond the inspector's framing limit: the inspector stepped aside after login.
    let big: String = client
        .query_one("SELECT repeat('x', 17 * 1024 * 1024)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 17 * 1024 * 1024);
    // Connections are reused, not reopened.
    let before = dialer.sockets_opened();
    drop(client);
    for _ in 0..10 {
        let client = pool.get().await.unwrap();
        client.simple_query("SELECT 1").await.unwrap();
    }
    assert_eq!(dialer.sockets_opened(), before);
}

#[tokio::test]
async fn a_pool_respects_its_max_size() {
    let password = pw("size");
    let cluster = PgCluster::builder()
        .user(User::new("app").password(&password))
        .start()
        .unwrap();
    let dialer = dialer();
    let pool = build(
        &dialer,
        Policy::default(),
        connection(
            "127.0.0.1",
            cluster.port(),
            "app",
            &password,
            TlsMode::Disable,
            None,
        ),
        &short(Duration::from_secs(5)),
    );
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let started = Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(
        matches!(
            err,
            PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)
        ),
        "{err:?}"
    );
    assert_eq!(kind_of(&err), FailureKind::Timeout);
    assert!(started.elapsed() < Duration::from_millis(400));
    assert_eq!(pool.status().size, 2);
    assert_eq!(dialer.sockets_opened(), 2);
    let row = a
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);
    // A slot frees up: the next `get` gets it without a new socket.
    drop(b);
    let _again = pool.get().await.unwrap();
    assert_eq!(dialer.sockets_opened(), 2);
}

#[tokio::test]
async fn a_policy_denied_address_opens_no_socket() {
    let dialer = dialer();
    let denied = Policy::new(vec![], vec!["127.0.0.0/8".parse().unwrap()]);
    let pool = build(
        &dialer,
        denied,
        connection(
            "localhost",
            5432,
            "app",
            &pw("denied"),
            TlsMode::Require,
            None,
        ),
        &short(Duration::from_secs(2)),
    );
    let started = Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(kind_of(&err), FailureKind::BlockedByPolicy, "{err:?}");
    let PoolError::Backend(backend) = &err else {
        panic!("{err:?}")
    };
    let failure = PoolConnectError::find(backend).unwrap().failure();
    assert_eq!(failure.step, probe::StepName::Policy);
    assert_eq!(dialer.sockets_opened(), 0);
}

#[tokio::test]
async fn a_pool_to_a_silent_host_fails_within_the_create_timeout() {
    let proxy = FaultProxy::start(Fault::NoAnswer).await.unwrap();
    let dialer = dialer();
    let create = Duration::from_millis(300);
    let pool = build(
        &dialer,
        Policy::default(),
        connection(
            "127.0.0.1",
            proxy.port(),
            "app",
            &pw("silent"),
            TlsMode::Require,
            None,
        ),
        &short(create),
    );
    for _ in 0..2 {
        let started = Instant::now();
        let err = pool.get().await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(kind_of(&err), FailureKind::Timeout, "{err:?}");
        assert!(
            took >= create - Duration::from_millis(5) && took < create + Duration::from_millis(60),
            "took {took:?}"
        );
    }
    assert_eq!(pool.status().size, 0);
    assert!(proxy.wait_idle(Duration::from_secs(2)).await);
}

#[tokio::test]
async fn a_cleartext_user_over_plaintext_never_gets_the_password() {
    let password = pw("clear");
    let cluster = PgCluster::builder()
        .user(
            User::new("clear_user")
                .password(&password)
                .auth(AuthMethod::Password),
        )
        .setting("log_connections", "on")
        .start()
        .unwrap();
    let dialer = dialer();
    let pool = build(
        &dialer,
        Policy::default(),
        connection(
            "127.0.0.1",
            cluster.port(),
            "clear_user",
            &password,
            TlsMode::Disable,
            None,
        ),
        &short(Duration::from_secs(2)),
    );
    let err = pool.get().await.unwrap_err();
    assert_eq!(kind_of(&err), FailureKind::AuthMethodRefused, "{err:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = cluster.log_tail(200);
    assert!(
        !log.contains("connection authorized: user=clear_user"),
        "{log}"
    );
    assert!(!log.contains("password authentication failed"), "{log}");
    assert_no_canary(&log);
}

#[tokio::test]
async fn no_error_or_debug_shows_the_password() {
    let password = pw("wrong");
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("app").password(&pw("right")))
        .start()
        .unwrap();
    let ca = cluster.ca_pem().unwrap().to_owned();
    let dialer = dialer();
    // A wrong password: the server's own error comes back, classified as a test would.
    let pool = build(
        &dialer,
        Policy::default(),
        connection(
            "localhost",
            cluster.port(),
            "app",
            &password,
            TlsMode::VerifyFull,
            Some(&ca),
        ),
        &short(Duration::from_secs(2)),
    );
    let err = pool.get().await.unwrap_err();
    assert_eq!(kind_of(&err), FailureKind::AuthFailed, "{err:?}");
    let PoolError::Backend(backend) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(backend.code().map(|c| c.code()), Some("28P01"));
    // A CA that did not sign the server certificate: a TLS failure of our own making.
    let pool = build(
        &dialer,
        Policy::default(),
        connection(
            "127.0.0.1",
            cluster.port(),
            "app",
            &password,
            TlsMode::VerifyFull,
            Some(cluster.other_ca_pem().unwrap()),
        ),
        &short(Duration::from_secs(2)),
    );
    let err = pool.get().await.unwrap_err();
    assert_eq!(kind_of(&err), FailureKind::TlsCertificateInvalid, "{err:?}");
    // A mode below the admin's floor is refused when the pool is built, naming the field.
    let (spec, secrets) = connection(
        "localhost",
        cluster.port(),
        "app",
        &password,
        TlsMode::Prefer,
        None,
    );
    let err = probe::pool(
        dialer.clone(),
        Arc::new(Policy::default()),
        &spec,
        secrets,
        &ProbeRules::default(),
        &PoolOptions::default(),
    )
    .unwrap_err();
    assert_eq!(err.field(), Some("tls.mode"));
    assert_no_canary(&format!("{err} {err:?}"));
}

#[tokio::test]
async fn every_mode_client_certificates_and_channel_binding() {
    let password = pw("modes");
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("app").password(&password))
        .user(User::new("cert_user").auth(AuthMethod::Cert))
        .start()
        .unwrap();
    let ca = cluster.ca_pem().unwrap().to_owned();
    let dialer = dialer();
    let ssl = |pool: Pool| async move {
        let client = pool.get().await.unwrap();
        let row = client
            .query_one(
                "SELECT ssl, current_user FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, bool>(0), row.get::<_, String>(1))
    };
    // Every libpq mode; `allow` starts in plaintext and the server accepts it there.
    for mode in TlsMode::ALL {
        let pool = build(
            &dialer,
            Policy::default(),
            connection(
                "localhost",
                cluster.port(),
                "app",
                &password,
                *mode,
                Some(&ca),
            ),
            &PoolOptions::default(),
        );
        let encrypted = !matches!(mode, TlsMode::Disable | TlsMode::Allow);
        assert_eq!(ssl(pool).await, (encrypted, "app".to_owned()), "{mode}");
    }
    // mTLS: the `cert` user gets in with its certificate.
    let (cert, key) = cluster.client_cert("cert_user").unwrap();
    let mut with_cert = draft(
        "localhost",
        cluster.port(),
        "cert_user",
        &pw("unused"),
        TlsMode::VerifyFull,
        Some(&ca),
    );
    with_cert.tls.client_cert_pem = Some(cert);
    with_cert.tls.client_key_pem = Some(PrivateKeyPem::from(key.as_str()));
    let pool = build(
        &dialer,
        Policy::default(),
        with_cert.validate().unwrap(),
        &PoolOptions::default(),
    );
    assert_eq!(ssl(pool).await, (true, "cert_user".to_owned()));
    // Without it, the server refuses: its own error, classified.
    let pool = build(
        &dialer,
        Policy::default(),
        connection(
            "localhost",
            cluster.port(),
            "cert_user",
            &pw("unused"),
            TlsMode::VerifyFull,
            Some(&ca),
        ),
        &short(Duration::from_secs(2)),
    );
    let err = pool.get().await.unwrap_err();
    assert_eq!(kind_of(&err), FailureKind::AuthFailed, "{err:?}");
    // SCRAM-SHA-256-PLUS: channel binding required works over TLS (the inspector forwards the
    // binding data), and is refused in plaintext before any password is sent.
    let mut bound = draft(
        "localhost",
        cluster.port(),
        "app",
        &password,
        TlsMode::Require,
        None,
    );
    bound.tls.channel_binding = Some(ChannelBinding::Require);
    let pool = build(
        &dialer,
        Policy::default(),
        bound.clone().validate().unwrap(),
        &PoolOptions::default(),
    );
    assert_eq!(ssl(pool).await, (true, "app".to_owned()));
    bound.tls.mode = Some(TlsMode::Allow);
    let plaintext_only = PgCluster::builder()
        .user(User::new("app").password(&password))
        .start()
        .unwrap();
    bound.port = Some(i64::from(plaintext_only.port()));
    let pool = build(
        &dialer,
        Policy::default(),
        bound.validate().unwrap(),
        &short(Duration::from_secs(2)),
    );
    let err = pool.get().await.unwrap_err();
    assert_eq!(kind_of(&err), FailureKind::AuthMethodRefused, "{err:?}");
}
