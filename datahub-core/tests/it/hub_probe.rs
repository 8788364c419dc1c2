//! Integration tests: connection tests through the `Hub` against a real TLS + SCRAM kit cluster:
//! permission (S16), reuse of stored secrets by a draft (S11), create with test first, the
//! target policy and TLS floor, the per-user rate limit, audit rows, and the canary.

use crate::GrantsNow;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use datahub_core::audit::Outcome;
use datahub_core::crypto::Keyring;
use datahub_core::hub::{Hub, RateLimit, SaveOutcome};
use datahub_core::model::{ConnectionDraft, FailureKind, TargetPolicy, TlsMode};
use datahub_core::net::{Dialer, StaticResolver};
use datahub_core::rbac::{Grant, GrantLevel, Grantee, Principal, Role};
use datahub_core::secret::Password;
use datahub_core::store::{SqliteStore, Store};
use datahub_core::{ErrorKind, UserId};
use datahub_testkit::{PgCluster, ServerCert, User};
use tempfile::TempDir;

use crate::hub::{ADMIN_PW, K1, login};

const CANARY: &str = "canary-hubprobe-31f7";
const DB_USER: &str = "app";
const BUDGET: Duration = Duration::from_secs(5);

struct Fixture {
    hub: Hub,
    store: Arc<dyn Store>,
    admin: Principal,
    cluster: PgCluster,
    _dir: TempDir,
}

async fn fixture(limit: RateLimit) -> Fixture {
    let cluster = tokio::task::spawn_blocking(|| {
        PgCluster::builder()
            .tls(ServerCert::Valid)
            .user(User::new(DB_USER).password(CANARY))
            .database("app", DB_USER)
            .start()
            .unwrap()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    let resolver = StaticResolver::new().with("localhost", &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let hub = Hub::open(store.clone(), Keyring::parse(K1).unwrap())
        .await
        .unwrap()
        .with_connector(Arc::new(Dialer::new(Arc::new(resolver))))
        .with_test_rate_limit(limit);
    hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
        .await
        .unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    Fixture {
        hub,
        store,
        admin,
        cluster,
        _dir: dir,
    }
}

fn draft(f: &Fixture, name: &str, password: Option<&str>) -> ConnectionDraft {
    let mut d = ConnectionDraft {
        name: name.into(),
        host: "localhost".into(),
        port: Some(i64::from(f.cluster.port())),
        database: "app".into(),
        username: DB_USER.into(),
        password: password.map(Password::from),
        ..ConnectionDraft::default()
    };
    d.tls.mode = Some(TlsMode::VerifyFull);
    d.tls.ca_cert_pem = f.cluster.ca_pem().map(str::to_owned);
    d
}

async fn user(f: &Fixture, name: &str, role: Role) -> (UserId, Principal) {
    let u = f
        .hub
        .create_user(&f.admin, name, Password::from("user-password-1234"), role)
        .await
        .unwrap();
    (u.id, login(&f.hub, name, "user-password-1234").await)
}

fn kind(report: &datahub_core::probe::Report) -> Option<FailureKind> {
    report.failure.as_ref().map(|f| f.kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_connections_are_tested_with_use_and_audited() {
    let f = fixture(RateLimit::default()).await;
    let c = f
        .hub
        .create_connection(&f.admin, draft(&f, "app", Some(CANARY)))
        .await
        .unwrap();
    let report = f.hub.test_connection(&f.admin, c.id, BUDGET).await.unwrap();
    assert!(report.ok, "{report:?}");
    assert!(report.tls.is_some());
    assert_eq!(report.server.as_ref().unwrap().user, DB_USER);

    // A viewer with `view` may not test; with `use` it may.
    let (vid, viewer) = user(&f, "vic", Role::Viewer).await;
    let grant = |level| Grant {
        grantee: Grantee::User(vid),
        level,
    };
    f.hub
        .set_grants_now(&f.admin, c.id, &[grant(GrantLevel::View)])
        .await
        .unwrap();
    let err = f
        .hub
        .test_connection(&viewer, c.id, BUDGET)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    f.hub
        .set_grants_now(&f.admin, c.id, &[grant(GrantLevel::Use)])
        .await
        .unwrap();
    assert!(
        f.hub
            .test_connection(&viewer, c.id, BUDGET)
            .await
            .unwrap()
            .ok
    );
    // A viewer may not test drafts at all.
    let err = f
        .hub
        .test_draft(&viewer, draft(&f, "x", Some(CANARY)), None, BUDGET)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);

    let tests: Vec<(String, Outcome)> = f
        .store
        .audit_after(0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.action.starts_with("connection.test"))
        .map(|r| (r.event.action, r.event.outcome))
        .collect();
    assert_eq!(
        tests,
        [
            ("connection.test".to_owned(), Outcome::Ok),
            ("connection.test".to_owned(), Outcome::Denied),
            ("connection.test".to_owned(), Outcome::Ok),
            ("connection.test_draft".to_owned(), Outcome::Denied),
        ]
    );
}

/// A test whose caller is authenticated alongside the read: a failed authentication is its
/// own error, whether or not the connection exists, and nothing is audited or limited; a
/// passed one tests, checks and audits as a test by principal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_authenticating_its_caller_reveals_nothing_when_that_fails() {
    #[derive(Debug, PartialEq)]
    enum Refused {
        Auth,
        Core(ErrorKind),
    }
    impl From<datahub_core::Error> for Refused {
        fn from(e: datahub_core::Error) -> Self {
            Self::Core(e.kind())
        }
    }
    // One test a minute: a refused caller must not spend it.
    let f = fixture(RateLimit {
        burst: 1,
        per_second: 1.0 / 60.0,
    })
    .await;
    let c = f
        .hub
        .create_connection(&f.admin, draft(&f, "app", Some(CANARY)))
        .await
        .unwrap();
    let audited = || async {
        f.store
            .audit_after(0, 1_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.event.action.starts_with("connection.test"))
            .count()
    };
    let refused = async { Err::<Principal, _>(Refused::Auth) };
    for id in [c.id, datahub_core::ConnectionId::new()] {
        let slow_refusal = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err::<Principal, _>(Refused::Auth)
        };
        assert_eq!(
            f.hub
                .test_connection_as(slow_refusal, id, BUDGET)
                .await
                .unwrap_err(),
            Refused::Auth,
            "the read finished first, its answer unseen"
        );
    }
    assert_eq!(
        f.hub
            .test_connection_as(refused, c.id, BUDGET)
            .await
            .unwrap_err(),
        Refused::Auth
    );
    assert_eq!(audited().await, 0);

    let admin = f.admin.clone();
    let report = f
        .hub
        .test_connection_as(async { Ok::<_, Refused>(admin) }, c.id, BUDGET)
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(audited().await, 1);
    let admin = f.admin.clone();
    let unknown = f
        .hub
        .test_connection_as(
            async { Ok::<_, Refused>(admin) },
            datahub_core::ConnectionId::new(),
            BUDGET,
        )
        .await
        .unwrap_err();
    assert_eq!(unknown, Refused::Core(ErrorKind::NotFound));
    // The one test of the minute was spent by the first that passed authentication.
    let admin = f.admin.clone();
    let limited = f
        .hub
        .test_connection_as(async { Ok::<_, Refused>(admin) }, c.id, BUDGET)
        .await
        .unwrap_err();
    assert_eq!(limited, Refused::Core(ErrorKind::RateLimited));
}

/// A test by name reads the connection in its one store call and is checked, limited and
/// audited as a test by id: a connection the principal may not view is `NotFound` (as a name
/// nothing has), one it may view but not use `PermissionDenied`; the audit row names the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_by_name_is_checked_and_audited_as_a_test_by_id() {
    let f = fixture(RateLimit::default()).await;
    let c = f
        .hub
        .create_connection(&f.admin, draft(&f, "app-by-name", Some(CANARY)))
        .await
        .unwrap();
    let report = f
        .hub
        .test_connection_by_name(&f.admin, "app-by-name", BUDGET)
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.server.as_ref().unwrap().user, DB_USER);

    let missing = f
        .hub
        .test_connection_by_name(&f.admin, "no-such-connection", BUDGET)
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let invalid = f
        .hub
        .test_connection_by_name(&f.admin, "", BUDGET)
        .await
        .unwrap_err();
    assert_eq!(invalid.kind(), ErrorKind::InvalidInput);

    let (vid, viewer) = user(&f, "nia", Role::Viewer).await;
    let hidden = f
        .hub
        .test_connection_by_name(&viewer, "app-by-name", BUDGET)
        .await
        .unwrap_err();
    assert_eq!(
        hidden.kind(),
        ErrorKind::NotFound,
        "existence is not revealed"
    );
    let grant = |level| Grant {
        grantee: Grantee::User(vid),
        level,
    };
    f.hub
        .set_grants_now(&f.admin, c.id, &[grant(GrantLevel::View)])
        .await
        .unwrap();
    let denied = f
        .hub
        .test_connection_by_name(&viewer, "app-by-name", BUDGET)
        .await
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
    f.hub
        .set_grants_now(&f.admin, c.id, &[grant(GrantLevel::Use)])
        .await
        .unwrap();
    assert!(
        f.hub
            .test_connection_by_name(&viewer, "app-by-name", BUDGET)
            .await
            .unwrap()
            .ok
    );

    let target = format!("connection:{}", c.id);
    let tests: Vec<(Option<String>, Outcome)> = f
        .store
        .audit_after(0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.action == "connection.test")
        .map(|r| (r.event.target, r.event.outcome))
        .collect();
    assert_eq!(
        tests,
        [
            (Some(target.clone()), Outcome::Ok),
            (Some(target.clone()), Outcome::Denied),
            (Some(target.clone()), Outcome::Denied),
            (Some(target), Outcome::Ok),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drafts_reuse_stored_secrets_and_test_first_saves_only_on_success() {
    let f = fixture(RateLimit::default()).await;
    let (_, editor) = user(&f, "eddie", Role::Editor).await;

    // Wrong password: nothing is saved, and the failure is named.
    let failed = f
        .hub
        .create_connection_tested(&editor, draft(&f, "app", Some("wrong-password")), BUDGET)
        .await
        .unwrap();
    let SaveOutcome::NotSaved(report) = failed else {
        panic!("expected a failed test");
    };
    assert_eq!(kind(&report), Some(FailureKind::AuthFailed));
    let name = datahub_core::model::ConnectionName::parse("app").unwrap();
    assert!(f.store.connection_by_name(&name).await.unwrap().is_none());

    let saved = f
        .hub
        .create_connection_tested(&editor, draft(&f, "app", Some(CANARY)), BUDGET)
        .await
        .unwrap();
    let SaveOutcome::Saved { connection, report } = saved else {
        panic!("expected a saved connection");
    };
    assert!(report.ok);

    // A draft without a password borrows the saved one, if the principal may use it.
    let report = f
        .hub
        .test_draft(
            &editor,
            draft(&f, "app-edit", None),
            Some(connection.id),
            BUDGET,
        )
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    // Without a password and without reuse, the draft is refused by field.
    let err = f
        .hub
        .test_draft(&editor, draft(&f, "app-edit", None), None, BUDGET)
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("password"));
    // Another editor may not borrow secrets of a connection it cannot see.
    let (_, other) = user(&f, "olga", Role::Editor).await;
    let err = f
        .hub
        .test_draft(
            &other,
            draft(&f, "steal", None),
            Some(connection.id),
            BUDGET,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_policy_and_tls_floor_apply_to_every_test() {
    let f = fixture(RateLimit::default()).await;
    let c = f
        .hub
        .create_connection(&f.admin, draft(&f, "app", Some(CANARY)))
        .await
        .unwrap();
    let deny_loopback = TargetPolicy {
        deny_cidrs: vec!["127.0.0.0/8".into()],
        ..TargetPolicy::default()
    };
    f.hub.set_policy(&f.admin, deny_loopback).await.unwrap();
    let report = f.hub.test_connection(&f.admin, c.id, BUDGET).await.unwrap();
    assert_eq!(kind(&report), Some(FailureKind::BlockedByPolicy));

    // A connection saved under a lower floor fails its test once the floor is raised.
    let low = TargetPolicy {
        min_tls_mode: TlsMode::Disable,
        ..TargetPolicy::default()
    };
    f.hub.set_policy(&f.admin, low).await.unwrap();
    let mut plain = draft(&f, "plain", Some(CANARY));
    plain.tls.mode = Some(TlsMode::Prefer);
    let p = f.hub.create_connection(&f.admin, plain).await.unwrap();
    assert!(
        f.hub
            .test_connection(&f.admin, p.id, BUDGET)
            .await
            .unwrap()
            .ok
    );
    f.hub
        .set_policy(&f.admin, TargetPolicy::default())
        .await
        .unwrap();
    let report = f.hub.test_connection(&f.admin, p.id, BUDGET).await.unwrap();
    assert_eq!(kind(&report), Some(FailureKind::InvalidConfig));
}

/// A policy saved through another hub on the same store (another replica, a notebook in local
/// mode) applies to this hub's very next test: a test reads the policy with the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_saved_by_another_replica_applies_to_the_next_test() {
    let f = fixture(RateLimit::default()).await;
    let c = f
        .hub
        .create_connection(&f.admin, draft(&f, "app", Some(CANARY)))
        .await
        .unwrap();
    assert!(
        f.hub
            .test_connection(&f.admin, c.id, BUDGET)
            .await
            .unwrap()
            .ok
    );
    let resolver = StaticResolver::new().with("localhost", &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    // A store of its own on the same data folder, as another process opens it.
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&f._dir.path().join("data")).unwrap());
    let other = Hub::open(store, Keyring::parse(K1).unwrap())
        .await
        .unwrap()
        .with_connector(Arc::new(Dialer::new(Arc::new(resolver))));
    let other_admin = login(&other, "admin", ADMIN_PW).await;
    let deny_loopback = TargetPolicy {
        deny_cidrs: vec!["127.0.0.0/8".into()],
        ..TargetPolicy::default()
    };
    other.set_policy(&other_admin, deny_loopback).await.unwrap();
    let report = f.hub.test_connection(&f.admin, c.id, BUDGET).await.unwrap();
    assert_eq!(kind(&report), Some(FailureKind::BlockedByPolicy));
    other
        .set_policy(&other_admin, TargetPolicy::default())
        .await
        .unwrap();
    assert!(
        f.hub
            .test_connection(&f.admin, c.id, BUDGET)
            .await
            .unwrap()
            .ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tests_are_rate_limited_per_user_and_never_show_the_password() {
    let f = fixture(RateLimit {
        burst: 3,
        per_second: 0.001,
    })
    .await;
    let c = f
        .hub
        .create_connection(&f.admin, draft(&f, "app", Some(CANARY)))
        .await
        .unwrap();
    let mut shown = Vec::new();
    for _ in 0..3 {
        shown.push(format!(
            "{:?}",
            f.hub.test_connection(&f.admin, c.id, BUDGET).await
        ));
    }
    let err = f
        .hub
        .test_connection(&f.admin, c.id, BUDGET)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    shown.push(format!("{err:?} {err}"));
    // Another user has its own allowance.
    let (_, editor) = user(&f, "eddie", Role::Editor).await;
    let mut bad = draft(&f, "bad", Some(&format!("{CANARY}-wrong")));
    bad.port = Some(i64::from(f.cluster.port()));
    let report = f.hub.test_draft(&editor, bad, None, BUDGET).await.unwrap();
    assert_eq!(kind(&report), Some(FailureKind::AuthFailed));
    shown.push(format!("{report:?}"));
    for r in f.store.audit_after(0, 1_000).await.unwrap() {
        shown.push(format!("{r:?}"));
    }
    for form in crate::canary::forms(CANARY.as_bytes()) {
        for text in &shown {
            assert!(!text.contains(&form), "{form} in {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_checks_saved_connections_with_the_real_prober() {
    use datahub_core::model::HealthStatus;
    use datahub_core::monitor::MonitorConfig;
    use datahub_testkit::{Fault, FaultProxy};

    let f = fixture(RateLimit::default()).await;
    let stall = FaultProxy::start(Fault::AcceptAndStall).await.unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut ids = Vec::new();
    for (name, port) in [
        ("healthy", f.cluster.port()),
        ("stalled", stall.port()),
        ("closed", closed),
    ] {
        let mut d = draft(&f, name, Some(CANARY));
        d.port = Some(i64::from(port));
        d.monitoring.interval_s = Some(10);
        ids.push(f.hub.create_connection(&f.admin, d).await.unwrap().id);
    }
    let monitor = f.hub.start_monitor(MonitorConfig::default());
    // Every first check lands within one interval (10 s) plus the 5 s budget.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    let mut seen = Vec::new();
    for id in &ids {
        loop {
            let c = f.hub.connection(&f.admin, *id).await.unwrap();
            if c.health.checked_at.is_some() {
                seen.push(c.health);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no check recorded");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    monitor.shutdown().await;
    assert_eq!(seen[0].status, HealthStatus::Healthy, "{:?}", seen[0]);
    assert!(seen[0].latency_ms.is_some());
    // One failure is below `fall`: degraded, not down yet.
    assert_eq!(seen[1].status, HealthStatus::Degraded);
    assert_eq!(seen[1].error_kind, Some(FailureKind::Timeout));
    assert_eq!(seen[2].status, HealthStatus::Degraded);
    assert_eq!(seen[2].error_kind, Some(FailureKind::ConnectionRefused));
    // The stalled check was cut at the budget and left no socket behind.
    assert!(stall.wait_idle(Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_through_the_hub_need_use_and_are_audited() {
    use datahub_core::probe::PoolOptions;

    let f = fixture(RateLimit::default()).await;
    f.hub
        .create_connection(&f.admin, draft(&f, "app", Some(CANARY)))
        .await
        .unwrap();
    let pool = f
        .hub
        .pool(&f.admin, "app", &PoolOptions::default())
        .await
        .unwrap();
    let client = pool.get().await.unwrap();
    let row = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), DB_USER);
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);

    let (_, viewer) = user(&f, "vic", Role::Viewer).await;
    let err = f
        .hub
        .pool(&viewer, "app", &PoolOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let pools: Vec<Outcome> = f
        .store
        .audit_after(0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event.action == "connection.pool")
        .map(|r| r.event.outcome)
        .collect();
    assert_eq!(pools, [Outcome::Ok, Outcome::Denied]);
    assert!(!format!("{pool:?}").contains(CANARY));
}
