//! Every libpq TLS mode against a TLS cluster and a plaintext cluster, the admin floor, mTLS
//! and channel binding that works.

use datahub_core::model::{ChannelBinding, FailureKind, TlsMode};
use datahub_core::probe::{ProbeRules, Report, StepName};
use datahub_testkit::{AuthMethod, PgCluster, ServerCert, User};

use super::{SHORT, Target, any_mode, failed, pw, run};
use datahub_core::probe::MAX_BUDGET;

fn step_names(report: &Report) -> Vec<&'static str> {
    report.steps.iter().map(|s| s.name.as_str()).collect()
}

fn timings(label: &str, report: &Report) {
    let steps: Vec<String> = report
        .steps
        .iter()
        .map(|s| format!("{}={:.3}{}", s.name, s.ms, if s.ok { "" } else { "(x)" }))
        .collect();
    eprintln!(
        "{label}: total {:.3} ms: {}",
        report.total_ms,
        steps.join(" ")
    );
}

#[tokio::test]
async fn every_mode_succeeds_against_a_tls_cluster() {
    let password = pw("app");
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("app").password(&password))
        .start()
        .unwrap();
    let ca = cluster.ca_pem().unwrap().to_owned();
    for mode in TlsMode::ALL {
        let target = Target::new(cluster.port(), "app", &password, *mode).ca(&ca);
        let report = run(&target, &any_mode(), MAX_BUDGET).await;
        timings(mode.as_str(), &report);
        assert!(report.ok, "{mode}: {report:?}");
        let server = report.server.as_ref().unwrap();
        assert_eq!(server.user, "app");
        assert_eq!(server.database, "postgres");
        assert!(!server.in_recovery);
        assert_eq!(server.max_connections, Some(20));
        assert!(server.connections_used.unwrap() >= 1);
        assert!(!server.version.is_empty());
        // allow starts in plaintext and the server accepts it there, as libpq would.
        let encrypted = !matches!(mode, TlsMode::Disable | TlsMode::Allow);
        assert_eq!(report.tls.is_some(), encrypted, "{mode}: {report:?}");
        if let Some(tls) = &report.tls {
            assert!(
                tls.protocol.as_deref().unwrap().starts_with("TLSv1."),
                "{tls:?}"
            );
            assert!(tls.cipher.is_some());
            assert!(
                tls.peer_subject
                    .as_deref()
                    .unwrap()
                    .contains("datahub-testkit server")
            );
            assert!(tls.peer_not_after.unwrap() > time::OffsetDateTime::now_utc());
        }
        let expected: &[&str] = if encrypted {
            &[
                "config", "resolve", "policy", "tcp", "tls", "startup", "auth", "query",
            ]
        } else {
            &[
                "config", "resolve", "policy", "tcp", "startup", "auth", "query",
            ]
        };
        assert_eq!(step_names(&report), expected, "{mode}");
        assert!(report.steps.iter().all(|s| s.ok));
    }
    // verify-full with a DNS name the certificate carries, resolved by the dialer.
    let mut target = Target::new(cluster.port(), "app", &password, TlsMode::VerifyFull).ca(&ca);
    target.host = "localhost";
    let report = run(&target, &ProbeRules::default(), MAX_BUDGET).await;
    assert!(report.ok, "{report:?}");
}

#[tokio::test]
async fn a_plaintext_cluster_works_in_weak_modes_and_fails_strong_ones() {
    let password = pw("plain");
    let cluster = PgCluster::builder()
        .user(User::new("app").password(&password))
        .start()
        .unwrap();
    for mode in [TlsMode::Disable, TlsMode::Allow, TlsMode::Prefer] {
        let target = Target::new(cluster.port(), "app", &password, mode);
        let report = run(&target, &any_mode(), MAX_BUDGET).await;
        timings(mode.as_str(), &report);
        assert!(report.ok, "{mode}: {report:?}");
        assert!(report.tls.is_none());
        if mode == TlsMode::Prefer {
            // The server answered `N`: the tls step did not succeed, the test went on.
            let tls = report
                .steps
                .iter()
                .find(|s| s.name == StepName::Tls)
                .unwrap();
            assert!(!tls.ok);
        }
    }
    for mode in [TlsMode::Require, TlsMode::VerifyCa, TlsMode::VerifyFull] {
        let target = Target::new(cluster.port(), "app", &password, mode);
        let report = run(&target, &any_mode(), SHORT).await;
        assert_eq!(
            failed(&report),
            (FailureKind::TlsNotSupportedByServer, StepName::Tls),
            "{mode}"
        );
    }
}

#[tokio::test]
async fn the_admin_floor_refuses_weaker_modes_before_any_socket() {
    // Port 9 on loopback: nothing must even try it.
    let rules = ProbeRules::default();
    for mode in [TlsMode::Disable, TlsMode::Allow, TlsMode::Prefer] {
        let target = Target::new(9, "app", &pw("floor"), mode);
        let report = run(&target, &rules, SHORT).await;
        assert_eq!(
            failed(&report),
            (FailureKind::InvalidConfig, StepName::Config)
        );
        assert!(
            report
                .failure
                .as_ref()
                .unwrap()
                .hint
                .contains("admin policy")
        );
        assert_eq!(step_names(&report), ["config"]);
    }
}

#[tokio::test]
async fn client_certificates_and_channel_binding() {
    let password = pw("scram");
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("cert_user").auth(AuthMethod::Cert))
        .user(User::new("scram_user").password(&password))
        .start()
        .unwrap();
    let ca = cluster.ca_pem().unwrap().to_owned();
    // mTLS: the `cert` user gets in with its certificate, and not without.
    let mut target = Target::new(
        cluster.port(),
        "cert_user",
        &pw("unused"),
        TlsMode::VerifyFull,
    )
    .ca(&ca);
    target.client = Some(cluster.client_cert("cert_user").unwrap());
    let report = run(&target, &any_mode(), MAX_BUDGET).await;
    assert!(report.ok, "{report:?}");
    target.client = None;
    let report = run(&target, &any_mode(), SHORT).await;
    assert_eq!(failed(&report).0, FailureKind::AuthFailed, "{report:?}");
    // SCRAM-SHA-256-PLUS: channel binding required and offered over TLS.
    let mut target = Target::new(cluster.port(), "scram_user", &password, TlsMode::Require);
    target.channel_binding = ChannelBinding::Require;
    let report = run(&target, &any_mode(), MAX_BUDGET).await;
    assert!(report.ok, "{report:?}");
}

/// The connections in use count every session on the server, not only the tested role's own:
/// a role without `pg_read_all_stats` sees others' `backend_type` as NULL in
/// `pg_stat_activity`, so the count must not depend on it.
#[tokio::test]
async fn connections_in_use_count_other_roles_sessions() {
    let password = pw("app");
    let cluster = PgCluster::builder()
        .user(User::new("app").password(&password))
        .start()
        .unwrap();
    // Three superuser sessions held open while the unprivileged `app` tests the server.
    let mut held = Vec::new();
    for _ in 0..3 {
        let (client, connection) = cluster
            .superuser_config()
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(connection);
        held.push((client, task));
    }
    // What the superuser counts before the test (after it, the probe's backend may still be
    // on its way out).
    let rows = held[0]
        .0
        .query(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
            &[],
        )
        .await
        .unwrap();
    let others: i64 = rows[0].get(0);
    assert!(others >= 3, "{others}");
    let target = Target::new(cluster.port(), "app", &password, TlsMode::Disable);
    let report = run(&target, &any_mode(), MAX_BUDGET).await;
    assert!(report.ok, "{report:?}");
    let used = report.server.as_ref().unwrap().connections_used.unwrap();
    assert_eq!(i64::from(used), others + 1, "the probe's count: {used}");
    for (client, task) in held {
        drop(client);
        task.await.unwrap().unwrap();
    }
}
