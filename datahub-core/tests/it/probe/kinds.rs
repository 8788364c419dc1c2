//! One test per failure kind a real server (or a closed port, or the dialer) produces.

use std::time::Duration;

use datahub_core::model::{ChannelBinding, FailureKind, TlsMode};
use datahub_core::net::{Cidr, Policy};
use datahub_core::probe::StepName;
use datahub_testkit::{AuthMethod, PgCluster, ServerCert, Transport, User};

use super::{SHORT, Target, any_mode, dialer, failed, pw, run, run_with, sqlstate};

fn cluster_with(cert: ServerCert, password: &str) -> PgCluster {
    PgCluster::builder()
        .tls(cert)
        .user(User::new("app").password(password))
        .start()
        .unwrap()
}

#[tokio::test]
async fn certificate_failures_say_which() {
    let password = pw("cert");
    // Another CA: unknown issuer for both verifying modes; require does not verify.
    let other = cluster_with(ServerCert::OtherCa, &password);
    let ca = other.ca_pem().unwrap().to_owned();
    for mode in [TlsMode::VerifyFull, TlsMode::VerifyCa] {
        let report = run(
            &Target::new(other.port(), "app", &password, mode).ca(&ca),
            &any_mode(),
            SHORT,
        )
        .await;
        assert_eq!(
            failed(&report),
            (FailureKind::TlsCertificateInvalid, StepName::Tls)
        );
        assert!(report.failure.unwrap().hint.contains("unknown issuer"));
    }
    let report = run(
        &Target::new(other.port(), "app", &password, TlsMode::Require).ca(&ca),
        &any_mode(),
        SHORT,
    )
    .await;
    assert!(report.ok, "{report:?}");

    // Wrong host name: verify-full fails, verify-ca passes.
    let wrong = cluster_with(ServerCert::WrongHost, &password);
    let ca = wrong.ca_pem().unwrap().to_owned();
    let report = run(
        &Target::new(wrong.port(), "app", &password, TlsMode::VerifyFull).ca(&ca),
        &any_mode(),
        SHORT,
    )
    .await;
    assert_eq!(
        failed(&report),
        (FailureKind::TlsCertificateInvalid, StepName::Tls)
    );
    assert!(report.failure.unwrap().hint.contains("host name"));
    let report = run(
        &Target::new(wrong.port(), "app", &password, TlsMode::VerifyCa).ca(&ca),
        &any_mode(),
        SHORT,
    )
    .await;
    assert!(report.ok, "{report:?}");
    assert!(report.tls.unwrap().peer_subject.is_some());

    // Expired.
    let expired = cluster_with(ServerCert::Expired, &password);
    let ca = expired.ca_pem().unwrap().to_owned();
    let report = run(
        &Target::new(expired.port(), "app", &password, TlsMode::VerifyFull).ca(&ca),
        &any_mode(),
        SHORT,
    )
    .await;
    assert_eq!(
        failed(&report),
        (FailureKind::TlsCertificateInvalid, StepName::Tls)
    );
    assert!(report.failure.unwrap().hint.contains("expired"));

    // No CA given: the public roots do not know the kit's CA.
    let report = run(
        &Target::new(expired.port(), "app", &password, TlsMode::VerifyFull),
        &any_mode(),
        SHORT,
    )
    .await;
    assert_eq!(failed(&report).0, FailureKind::TlsCertificateInvalid);
}

#[tokio::test]
async fn server_refusals_carry_their_sqlstate() {
    let password = pw("auth");
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("app").password(&password))
        .user(
            User::new("no_ssl")
                .password(&password)
                .transport(Transport::NoSsl),
        )
        .start()
        .unwrap();
    let port = cluster.port();
    let cases: &[(&str, String, &str, FailureKind, &str)] = &[
        (
            "app",
            pw("wrong"),
            "postgres",
            FailureKind::AuthFailed,
            "28P01",
        ),
        // The kit's pg_hba.conf names each user, so an unknown user matches no line.
        (
            "nobody",
            password.clone(),
            "postgres",
            FailureKind::AuthFailed,
            "28000",
        ),
        (
            "no_ssl",
            password.clone(),
            "postgres",
            FailureKind::AuthFailed,
            "28000",
        ),
        (
            "app",
            password.clone(),
            "nope",
            FailureKind::DatabaseNotFound,
            "3D000",
        ),
    ];
    for (user, pass, db, kind, state) in cases {
        let mut target = Target::new(port, user, pass, TlsMode::Require);
        target.database = (*db).to_owned();
        let report = run(&target, &any_mode(), SHORT).await;
        assert_eq!(failed(&report).0, *kind, "{user}/{db}: {report:?}");
        assert_eq!(sqlstate(&report), Some(*state), "{user}/{db}");
        assert!(matches!(
            failed(&report).1,
            StepName::Startup | StepName::Auth
        ));
    }
}

#[tokio::test]
async fn too_many_connections() {
    let password = pw("busy");
    let cluster = PgCluster::builder()
        .user(User::new("app").password(&password))
        .max_connections(5)
        .start()
        .unwrap();
    // 5 slots, 3 reserved for superusers: two sessions fill the rest.
    let mut held = Vec::new();
    for _ in 0..2 {
        let (client, connection) = cluster
            .config("app", "postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        held.push((client, tokio::spawn(connection)));
    }
    let target = Target::new(cluster.port(), "app", &password, TlsMode::Disable);
    let report = run(&target, &any_mode(), SHORT).await;
    assert_eq!(
        failed(&report).0,
        FailureKind::TooManyConnections,
        "{report:?}"
    );
    assert_eq!(sqlstate(&report), Some("53300"));
}

#[tokio::test]
async fn a_server_shutting_down_is_unavailable() {
    let password = pw("down");
    let cluster = PgCluster::builder()
        .user(User::new("app").password(&password))
        .start()
        .unwrap();
    // A smart shutdown (SIGTERM) waits for the open session and refuses new ones with 57P03.
    let (client, connection) = cluster
        .config("app", "postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let held = tokio::spawn(connection);
    let pid = cluster.server_pid().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let target = Target::new(cluster.port(), "app", &password, TlsMode::Disable);
    let mut report = None;
    // The postmaster handles the signal asynchronously; give it a moment.
    for _ in 0..50 {
        let r = run(&target, &any_mode(), SHORT).await;
        if !r.ok {
            report = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = report.expect("the server kept accepting during shutdown");
    assert_eq!(
        failed(&report).0,
        FailureKind::ServerUnavailable,
        "{report:?}"
    );
    assert_eq!(sqlstate(&report), Some("57P03"));
    drop(client);
    held.abort();
}

#[tokio::test]
async fn dial_failures_closed_port_dns_and_policy() {
    // Closed port: bind, note the port, close.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let target = Target::new(port, "app", &pw("closed"), TlsMode::Require);
    let report = run(&target, &any_mode(), SHORT).await;
    assert_eq!(
        failed(&report),
        (FailureKind::ConnectionRefused, StepName::Tcp)
    );

    let mut target = Target::new(port, "app", &pw("dns"), TlsMode::Require);
    target.host = "nowhere.invalid";
    let report = run(&target, &any_mode(), SHORT).await;
    assert_eq!(failed(&report), (FailureKind::DnsFailed, StepName::Resolve));

    let deny = Policy::new(vec![], vec!["127.0.0.0/8".parse::<Cidr>().unwrap()]);
    let target = Target::new(port, "app", &pw("blocked"), TlsMode::Require);
    let report = run_with(&dialer(deny), &target, &any_mode(), SHORT).await;
    assert_eq!(
        failed(&report),
        (FailureKind::BlockedByPolicy, StepName::Policy)
    );
}

#[tokio::test]
async fn channel_binding_required_against_servers_that_cannot() {
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(
            User::new("md5_user")
                .password(&pw("md5"))
                .auth(AuthMethod::Md5),
        )
        .user(
            User::new("clear_user")
                .password(&pw("clear"))
                .auth(AuthMethod::Password),
        )
        .start()
        .unwrap();
    for (user, pass) in [("md5_user", pw("md5")), ("clear_user", pw("clear"))] {
        let mut target = Target::new(cluster.port(), user, &pass, TlsMode::Require);
        target.channel_binding = ChannelBinding::Require;
        let report = run(&target, &any_mode(), SHORT).await;
        assert_eq!(
            failed(&report),
            (FailureKind::AuthMethodRefused, StepName::Auth),
            "{user}"
        );
        assert!(report.failure.unwrap().hint.contains("channel binding"));
    }
    // A plaintext server: prefer falls back to plaintext, where SCRAM cannot bind.
    let plain = PgCluster::builder()
        .user(User::new("app").password(&pw("cb")))
        .start()
        .unwrap();
    let mut target = Target::new(plain.port(), "app", &pw("cb"), TlsMode::Prefer);
    target.channel_binding = ChannelBinding::Require;
    let report = run(&target, &any_mode(), SHORT).await;
    assert_eq!(
        failed(&report),
        (FailureKind::AuthMethodRefused, StepName::Auth)
    );
}

/// verify-full without a CA trusts the bundled public roots (webpki-roots), not "anything": a
/// valid certificate from the kit's private CA is refused as an unknown issuer, while the same
/// server passes once its CA is given. (A success against a public CA needs the network.)
#[tokio::test]
async fn verify_full_without_a_ca_uses_the_public_roots() {
    let password = pw("roots");
    let cluster = cluster_with(ServerCert::Valid, &password);
    for mode in [TlsMode::VerifyFull, TlsMode::VerifyCa] {
        let mut target = Target::new(cluster.port(), "app", &password, mode);
        target.host = "localhost";
        let report = run(&target, &any_mode(), SHORT).await;
        assert_eq!(
            failed(&report),
            (FailureKind::TlsCertificateInvalid, StepName::Tls),
            "{mode}: {report:?}"
        );
        let hint = &report.failure.as_ref().unwrap().hint;
        assert!(hint.contains("unknown issuer"), "{mode}: {hint}");
        let report = run(&target.ca(cluster.ca_pem().unwrap()), &any_mode(), SHORT).await;
        assert!(report.ok, "{mode}: {report:?}");
    }
}
