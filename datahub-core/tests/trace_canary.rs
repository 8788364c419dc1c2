//! The trace canary (issue 4, SECURITY.md S8): a unique password, driven through a successful
//! test and every failure kind of issue 4 — by `probe::test` and through the Hub (`test_draft`,
//! `test_connection`, `create_connection_tested`, `pool`), a monitor run and a key rotation —
//! never appears, raw or encoded, in any captured `tracing` event or span field (at TRACE, every
//! target), any `log` record of tokio-postgres or event of deadpool, any report, any error's `Display` or
//! `Debug`, or any audit row.
//!
//! Its own test binary, because it installs the process-wide subscriber and `log` logger. The
//! capture is checked to be real (the expected events, every failure kind's name and
//! tokio-postgres's own records are in it), so the test cannot pass by capturing nothing.
//!
//! The Hub runs on the PostgreSQL store, whose every statement tokio-postgres logs at DEBUG with
//! its parameters: the sealed password goes through there, so a plaintext one would show.
//! Everything dials loopback only; DNS answers come from an injected resolver.

// Helpers outside the `#[test]` function unwrap too; a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use datahub_core::crypto::Keyring;
use datahub_core::hub::{Hub, RateLimit, SaveOutcome};
use datahub_core::model::{ChannelBinding, ConnectionDraft, FailureKind, TargetPolicy, TlsMode};
use datahub_core::monitor::MonitorConfig;
use datahub_core::net::{Cidr, Dialer, Policy, StaticFailure, StaticResolver};
use datahub_core::probe::{self, PolicyDial, PoolOptions, ProbeRules, Report};
use datahub_core::rbac::{Grant, GrantLevel, Grantee, Principal, Role};
use datahub_core::secret::Password;
use datahub_core::store::{PostgresOptions, PostgresStore, Store};
use datahub_core::{ConnectionId, Error};
use datahub_testkit::canary::{Capture, forms, leak};
use datahub_testkit::{AuthMethod, Fault, FaultProxy, PgCluster, ServerCert, Transport, User};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The one password every draft carries; unique to this test, with characters that encode.
const CANARY: &str = "canary-trace-5e0b+/x=y&z";
/// The real password of the user `other`, so the canary is a wrong password there.
const OTHER_PW: &str = "other-password-8812";
const STORE_USER: &str = "datahub";
const STORE_PW: &str = "store-password-2417";
const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "k2:HxseHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
const ADMIN_PW: &str = "admin-password-1234";
const VIEWER_PW: &str = "viewer-password-1234";
/// A budget with room for a loaded machine; failures come back long before it.
const BUDGET: Duration = Duration::from_secs(4);
/// The budget of the timeout scenario.
const SHORT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------
// What must never show: `canary::forms` of the password, in anything shown.

/// Everything an error shows: `Display`, `Debug`, alternate `Debug`, and its source chain.
fn shown_error(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut shown = vec![err.to_string(), format!("{err:?}"), format!("{err:#?}")];
    let mut source = err.source();
    while let Some(s) = source {
        shown.push(s.to_string());
        shown.push(format!("{s:?}"));
        source = s.source();
    }
    shown
}

// ---------------------------------------------------------------------------------------------
// The targets.

struct Clusters {
    /// TLS (valid certificate): `app` (SCRAM, the canary), `other` (another password),
    /// `no_ssl` (only `hostnossl` lines), `md5_user` (md5, cannot bind a channel).
    tls: PgCluster,
    other_ca: PgCluster,
    wrong_host: PgCluster,
    expired: PgCluster,
    /// No TLS: `app` (the canary), and the PostgreSQL store's database.
    plain: PgCluster,
    /// No TLS, `max_connections` 5: two sessions fill it.
    busy: PgCluster,
    /// No TLS, shut down (smart) while a session holds it open.
    down: PgCluster,
}

fn start_clusters() -> Clusters {
    let tls_with = |cert| {
        PgCluster::builder()
            .tls(cert)
            .user(User::new("app").password(CANARY))
            .start()
            .unwrap()
    };
    let plain_app = || PgCluster::builder().user(User::new("app").password(CANARY));
    Clusters {
        tls: PgCluster::builder()
            .tls(ServerCert::Valid)
            .user(User::new("app").password(CANARY))
            .user(User::new("other").password(OTHER_PW))
            .user(
                User::new("no_ssl")
                    .password(CANARY)
                    .transport(Transport::NoSsl),
            )
            .user(User::new("md5_user").password(CANARY).auth(AuthMethod::Md5))
            .start()
            .unwrap(),
        other_ca: tls_with(ServerCert::OtherCa),
        wrong_host: tls_with(ServerCert::WrongHost),
        expired: tls_with(ServerCert::Expired),
        plain: plain_app()
            .user(User::new(STORE_USER).password(STORE_PW))
            .database(STORE_USER, STORE_USER)
            .max_connections(60)
            .start()
            .unwrap(),
        busy: plain_app().max_connections(5).start().unwrap(),
        down: plain_app().start().unwrap(),
    }
}

/// `localhost` is 127.0.0.1, `denied.test` is 127.0.0.2 (denied by the policy, never dialled),
/// `nowhere.invalid` does not exist.
fn resolver() -> Arc<StaticResolver> {
    Arc::new(
        StaticResolver::new()
            .with("localhost", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .with("denied.test", &[IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))])
            .with_failure("nowhere.invalid", StaticFailure::NotFound),
    )
}

const DENIED: &str = "127.0.0.2/32";

/// One way to test: the draft (carrying the canary) and the kind it must fail with.
struct Scenario {
    label: &'static str,
    expect: Option<FailureKind>,
    draft: ConnectionDraft,
    budget: Duration,
}

fn draft(host: &str, port: u16, user: &str, mode: TlsMode, ca: Option<&str>) -> ConnectionDraft {
    let mut d = ConnectionDraft {
        name: "canary".to_owned(),
        host: host.to_owned(),
        port: Some(i64::from(port)),
        database: "postgres".to_owned(),
        username: user.to_owned(),
        password: Some(Password::from(CANARY)),
        ..ConnectionDraft::default()
    };
    d.tls.mode = Some(mode);
    d.tls.ca_cert_pem = ca.map(str::to_owned);
    // The monitor part checks its own connections only.
    d.monitoring.enabled = Some(false);
    d
}

fn scenarios(c: &Clusters, closed_port: u16, stall: &FaultProxy) -> Vec<Scenario> {
    use FailureKind as K;
    use TlsMode::{Disable, Prefer, Require, VerifyFull};
    let full = |cluster: &PgCluster| {
        draft(
            "localhost",
            cluster.port(),
            "app",
            VerifyFull,
            cluster.ca_pem(),
        )
    };
    let tls = c.tls.port();
    let s = |label, expect, draft, budget| Scenario {
        label,
        expect,
        draft,
        budget,
    };
    let mut unknown_db = draft("localhost", tls, "app", Require, None);
    unknown_db.database = "nope".to_owned();
    let mut binding_md5 = draft("localhost", tls, "md5_user", Require, None);
    binding_md5.tls.channel_binding = Some(ChannelBinding::Require);
    let mut binding_plain = draft("localhost", c.plain.port(), "app", Prefer, None);
    binding_plain.tls.channel_binding = Some(ChannelBinding::Require);
    vec![
        s("success", None, full(&c.tls), BUDGET),
        s(
            "other-ca",
            Some(K::TlsCertificateInvalid),
            full(&c.other_ca),
            BUDGET,
        ),
        s(
            "wrong-host",
            Some(K::TlsCertificateInvalid),
            full(&c.wrong_host),
            BUDGET,
        ),
        s(
            "expired",
            Some(K::TlsCertificateInvalid),
            full(&c.expired),
            BUDGET,
        ),
        s(
            "tls-required-no-tls",
            Some(K::TlsNotSupportedByServer),
            draft("localhost", c.plain.port(), "app", Require, None),
            BUDGET,
        ),
        s(
            "wrong-password",
            Some(K::AuthFailed),
            draft("localhost", tls, "other", Require, None),
            BUDGET,
        ),
        s(
            "unknown-user",
            Some(K::AuthFailed),
            draft("localhost", tls, "nobody", Require, None),
            BUDGET,
        ),
        s(
            "no-hba-entry",
            Some(K::AuthFailed),
            draft("localhost", tls, "no_ssl", Require, None),
            BUDGET,
        ),
        s(
            "unknown-database",
            Some(K::DatabaseNotFound),
            unknown_db,
            BUDGET,
        ),
        s(
            "too-many-connections",
            Some(K::TooManyConnections),
            draft("localhost", c.busy.port(), "app", Disable, None),
            BUDGET,
        ),
        s(
            "shutting-down",
            Some(K::ServerUnavailable),
            draft("localhost", c.down.port(), "app", Disable, None),
            BUDGET,
        ),
        s(
            "closed-port",
            Some(K::ConnectionRefused),
            draft("localhost", closed_port, "app", Require, None),
            BUDGET,
        ),
        s(
            "dns-failure",
            Some(K::DnsFailed),
            draft("nowhere.invalid", tls, "app", Require, None),
            BUDGET,
        ),
        s(
            "policy-denial",
            Some(K::BlockedByPolicy),
            draft("denied.test", tls, "app", Require, None),
            BUDGET,
        ),
        s(
            "channel-binding-md5",
            Some(K::AuthMethodRefused),
            binding_md5,
            BUDGET,
        ),
        s(
            "channel-binding-plaintext",
            Some(K::AuthMethodRefused),
            binding_plain,
            BUDGET,
        ),
        s(
            "timeout",
            Some(K::Timeout),
            draft("localhost", stall.port(), "app", Require, None),
            SHORT,
        ),
    ]
}

/// Holds the sessions that make `busy` full and `down` refuse new sessions while shutting down.
struct Held {
    _sessions: Vec<(tokio_postgres::Client, tokio::task::JoinHandle<()>)>,
}

async fn session(cluster: &PgCluster) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = cluster
        .config("app", "postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, task)
}

/// Fills `busy` (5 slots, 3 reserved) and puts `down` into a smart shutdown, waiting until it
/// refuses new sessions.
async fn prepare_refusals(c: &Clusters, dial: &PolicyDial) -> Held {
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(session(&c.busy).await);
    }
    held.push(session(&c.down).await);
    let pid = c.down.server_pid().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The postmaster handles the signal asynchronously.
    let (spec, secrets) = draft("localhost", c.down.port(), "app", TlsMode::Disable, None)
        .validate()
        .unwrap();
    let rules = any_mode();
    for _ in 0..100 {
        if !probe::test(dial, &spec, &secrets, &rules, BUDGET).await.ok {
            return Held { _sessions: held };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the server kept accepting during shutdown");
}

fn any_mode() -> ProbeRules {
    ProbeRules {
        min_tls_mode: TlsMode::Disable,
        allow_cleartext_password: false,
    }
}

fn kind(report: &Report) -> Option<FailureKind> {
    report.failure.as_ref().map(|f| f.kind)
}

async fn login(hub: &Hub, user: &str, password: &str) -> Principal {
    hub.login(
        user,
        Password::from(password),
        &datahub_core::audit::RequestInfo::default(),
    )
    .await
    .unwrap()
}

/// What the test saw besides the capture: reports, errors and audit rows, as text.
#[derive(Default)]
struct Shown(Vec<String>);

impl Shown {
    fn report(&mut self, report: &Report) {
        self.0.push(format!("{report:?}"));
        self.0.push(format!("{report:#?}"));
        if let Some(f) = &report.failure {
            self.0.push(f.hint.to_string());
        }
    }

    fn error(&mut self, err: &(dyn std::error::Error + 'static)) {
        self.0.extend(shown_error(err));
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_never_reaches_a_log_line_span_report_error_or_audit_row() {
    let capture = Capture::default();
    tracing_subscriber::registry()
        .with(capture.clone())
        .try_init()
        .expect("the only subscriber of this binary");
    let mut shown = Shown::default();

    let clusters = tokio::task::spawn_blocking(start_clusters).await.unwrap();
    let c = &clusters;
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let stall = FaultProxy::start(Fault::AcceptAndStall).await.unwrap();
    let dialer = Arc::new(Dialer::new(resolver()));
    let deny: Cidr = DENIED.parse().unwrap();
    let dial = PolicyDial::new(dialer.clone(), Arc::new(Policy::new(vec![], vec![deny])));
    let held = prepare_refusals(c, &dial).await;

    // The Hub on the PostgreSQL store, with the same resolver and policy.
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(
            c.plain.config(STORE_USER, STORE_USER),
            PostgresOptions::default(),
        )
        .await
        .unwrap(),
    );
    let hub = Hub::open(store.clone(), Keyring::parse(K1).unwrap())
        .await
        .unwrap()
        .with_connector(dialer.clone())
        .with_test_rate_limit(RateLimit {
            burst: 10_000,
            per_second: 1_000.0,
        });
    hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
        .await
        .unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    hub.set_policy(
        &admin,
        TargetPolicy {
            allow_cidrs: vec![],
            deny_cidrs: vec![DENIED.to_owned()],
            min_tls_mode: TlsMode::Disable,
        },
    )
    .await
    .unwrap();
    let viewer = hub
        .create_user(&admin, "vic", Password::from(VIEWER_PW), Role::Viewer)
        .await
        .unwrap();
    let viewer_id = viewer.id;
    let viewer = login(&hub, "vic", VIEWER_PW).await;

    let mut expected_kinds = BTreeSet::new();
    let mut saved: Vec<(&'static str, ConnectionId)> = Vec::new();
    for scenario in scenarios(c, closed_port, &stall) {
        let Scenario {
            label,
            expect,
            draft,
            budget,
        } = scenario;
        if let Some(k) = expect {
            expected_kinds.insert(k.as_str());
        }
        let check = |how: &str, report: &Report, shown: &mut Shown| {
            assert_eq!(kind(report), expect, "{label} via {how}: {report:?}");
            shown.report(report);
        };

        // The prober itself.
        let (spec, secrets) = {
            let mut d = draft.clone();
            d.name = format!("p-{label}");
            d.validate().unwrap()
        };
        let report = probe::test(&dial, &spec, &secrets, &any_mode(), budget).await;
        check("probe::test", &report, &mut shown);

        // A draft through the Hub.
        let mut d = draft.clone();
        d.name = format!("d-{label}");
        let report = hub.test_draft(&admin, d, None, budget).await.unwrap();
        check("test_draft", &report, &mut shown);

        // Create with test first: saved only when it passes.
        let mut d = draft.clone();
        d.name = format!("t-{label}");
        match hub
            .create_connection_tested(&admin, d, budget)
            .await
            .unwrap()
        {
            SaveOutcome::Saved { connection, report } => {
                check("create_connection_tested", &report, &mut shown);
                shown.0.push(format!("{connection:?}"));
            }
            SaveOutcome::NotSaved(report) => {
                check("create_connection_tested", &report, &mut shown);
            }
        }

        // Saved, then tested by id, then pooled.
        let mut d = draft.clone();
        d.name = format!("s-{label}");
        let name = d.name.clone();
        let connection = hub.create_connection(&admin, d).await.unwrap();
        shown.0.push(format!("{connection:?}"));
        saved.push((label, connection.id));
        let report = hub
            .test_connection(&admin, connection.id, budget)
            .await
            .unwrap();
        check("test_connection", &report, &mut shown);

        let options = PoolOptions {
            max_size: 2,
            wait_timeout: budget,
            create_timeout: budget,
            recycle_timeout: budget,
        };
        let pool = hub.pool(&admin, &name, &options).await.unwrap();
        shown.0.push(format!("{pool:?}"));
        match pool.get().await {
            Ok(client) => {
                assert_eq!(expect, None, "{label}: the pool connected");
                // A statement with parameters: tokio-postgres logs them at DEBUG.
                let row = client
                    .query_one("SELECT $1::text || current_user", &[&"user: "])
                    .await
                    .unwrap();
                assert_eq!(row.get::<_, String>(0), "user: app");
            }
            Err(e) => {
                assert!(expect.is_some(), "{label}: the pool failed: {e}");
                shown.0.push(format!("{:?}", probe::pool_failure_kind(&e)));
                shown.error(&e);
            }
        }
        pool.close();
    }

    // A draft borrowing the stored password, and refusals of a viewer (not found, then denied).
    let (_, success) = saved[0];
    let mut d = scenarios(c, closed_port, &stall).remove(0).draft;
    d.name = "reuse".to_owned();
    d.password = None;
    let report = hub
        .test_draft(&admin, d, Some(success), BUDGET)
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    shown.report(&report);
    let err = hub
        .test_connection(&viewer, success, BUDGET)
        .await
        .unwrap_err();
    shown.error(&err);
    let version = hub.grants(&admin, success).await.unwrap().version;
    hub.set_grants(
        &admin,
        success,
        version,
        &[Grant {
            grantee: Grantee::User(viewer_id),
            level: GrantLevel::View,
        }],
    )
    .await
    .unwrap();
    let errors: Vec<Error> = vec![
        hub.test_connection(&viewer, success, BUDGET)
            .await
            .unwrap_err(),
        hub.pool(&viewer, "s-success", &PoolOptions::default())
            .await
            .unwrap_err(),
        hub.reveal(&viewer, success).await.map(|_| ()).unwrap_err(),
        hub.test_draft(
            &viewer,
            draft("localhost", c.tls.port(), "app", TlsMode::Require, None),
            None,
            BUDGET,
        )
        .await
        .unwrap_err(),
    ];
    for err in &errors {
        shown.error(err);
    }
    drop(held);

    // A short monitor run over a healthy and a failing connection.
    let monitor = hub.start_monitor(MonitorConfig::default());
    let mut events = monitor.subscribe();
    // Let its first load pass, so the two below are told as new (checked within 5 s).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut watched = Vec::new();
    for (name, user) in [("m-healthy", "app"), ("m-failing", "other")] {
        let mut d = draft(
            "localhost",
            c.tls.port(),
            user,
            TlsMode::VerifyFull,
            c.tls.ca_pem(),
        );
        d.name = name.to_owned();
        d.monitoring.enabled = Some(true);
        d.monitoring.interval_s = Some(10);
        // The hub tells its monitor: checked within 5 s.
        let id = hub.create_connection(&admin, d).await.unwrap().id;
        watched.push(id);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut changes = 0;
    while changes < watched.len() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .expect("no status change within 20 s")
            .unwrap();
        shown.0.push(format!("{event:?}"));
        if matches!(
            event,
            datahub_core::monitor::MonitorEvent::StatusChanged { .. }
        ) {
            changes += 1;
        }
    }
    monitor.shutdown().await;
    for id in &watched {
        let connection = hub.connection(&admin, *id).await.unwrap();
        assert!(connection.health.checked_at.is_some());
        shown.0.push(format!("{connection:?}"));
    }

    // A key rotation re-wraps every data key (the canary's included).
    let rotated = Hub::open(
        store.clone(),
        Keyring::parse(&format!("{K2},{K1}")).unwrap(),
    )
    .await
    .unwrap();
    let rotation = rotated.rotate_keys(&admin, 7).await.unwrap();
    assert!(rotation.rewrapped > 0, "{rotation:?}");
    shown.0.push(format!("{rotation:?}"));

    // Every audit row.
    let audit = store.audit_after(0, 100_000).await.unwrap();
    assert!(audit.len() > 50, "{} audit rows", audit.len());
    for record in &audit {
        shown.0.push(format!("{record:?}"));
    }
    drop(stall);

    // ---- The capture is real. ----
    let lines = capture.lines();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert!(lines.len() > 500, "only {} lines captured", lines.len());
    // tokio-postgres's `log` records reached the subscriber (statements of the store and the probe
    // query), and so did the core's spans and events at every level used.
    assert!(
        has("log.target=tokio_postgres") || has("log.target=\"tokio_postgres"),
        "no tokio-postgres log record captured"
    );
    assert!(has("executing statement"), "no statement log captured");
    for needle in [
        "span DEBUG datahub_core::probe probe:",
        "event TRACE datahub_core::probe [probe]:",
        "probe step",
        "probe finished",
        "event TRACE datahub_core::net",
        "dial refused by the target policy",
        "host name did not resolve",
        "permission denied",
        "migration applied",
        "health monitor started",
        "check done",
        "connection status changed",
        "key rotation finished",
        "pool connection failed",
    ] {
        assert!(has(needle), "nothing captured with {needle:?}");
    }
    // Every failure kind of issue 4 was logged by name, by every path that tests.
    for kind in &expected_kinds {
        let logged = count(&format!("kind={kind}"));
        assert!(logged >= 4, "{kind} logged {logged} times");
    }
    assert!(count("ok=true") >= 5, "successes not logged");

    // ---- The canary never shows. ----
    let forbidden = forms(CANARY);
    // The detector finds each form (so the checks below cannot pass by not looking).
    for form in &forbidden {
        assert!(leak(&forbidden, &format!("x {form} y")).is_some());
    }
    for line in &lines {
        assert_eq!(leak(&forbidden, line), None, "canary in a log line: {line}");
    }
    assert!(shown.0.len() > 100, "{} texts shown", shown.0.len());
    for text in &shown.0 {
        assert_eq!(leak(&forbidden, text), None, "canary shown: {text}");
    }
}
