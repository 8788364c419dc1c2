//! Runs the `probe` example's logic against kit clusters and a fault proxy on loopback: a
//! verify-full test with the kit CA read from a file, a wrong password, malformed input and a
//! silent host cut at the budget. No output ever contains the password.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use datahub_core::secret::Password;
use datahub_examples::probe_cli::{EXIT_FAILED, EXIT_INVALID, EXIT_OK, Outcome, run};
use datahub_testkit::{AuthMethod, Fault, FaultProxy, PgCluster, ServerCert, User};
use serde_json::Value;

const CANARY: &str = "canary-cli-91e3aa";

fn pw(tag: &str) -> String {
    format!("{CANARY}-{tag}")
}

async fn probe(args: &[&str], pgpassword: Option<&str>) -> Outcome {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let outcome = run(&args, pgpassword.map(Password::from)).await;
    assert!(
        !outcome.stdout.contains(CANARY) && !outcome.stderr.contains(CANARY),
        "{outcome:?}"
    );
    outcome
}

fn report(outcome: &Outcome) -> Value {
    assert!(outcome.stderr.is_empty(), "{outcome:?}");
    assert_eq!(outcome.stdout.lines().count(), 1, "one JSON object");
    let value: Value = serde_json::from_str(&outcome.stdout).unwrap();
    for key in [
        "ok",
        "error_kind",
        "step",
        "total_ms",
        "steps",
        "server",
        "tls",
        "hint",
        "sqlstate",
    ] {
        assert!(value.get(key).is_some(), "{key} missing: {value}");
    }
    value
}

#[tokio::test]
async fn verify_full_with_a_ca_file_passes_and_a_wrong_password_fails() {
    let password = pw("right");
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("app").password(&password))
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cluster.ca_pem().unwrap()).unwrap();
    let url = format!(
        "postgresql://app@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}&channel_binding=require&connect_timeout=3",
        cluster.port(),
        ca.display()
    );

    let outcome = probe(&[&url], Some(&password)).await;
    let value = report(&outcome);
    assert_eq!(outcome.code, EXIT_OK, "{value}");
    assert_eq!(value["ok"], true);
    assert_eq!(value["error_kind"], Value::Null);
    assert_eq!(value["server"]["user"], "app");
    assert!(
        value["tls"]["protocol"]
            .as_str()
            .unwrap()
            .starts_with("TLSv1.")
    );
    assert!(value["steps"].as_array().unwrap().len() >= 7);

    // The key=value form, with the password in the string, wins over PGPASSWORD.
    let kv = format!(
        "host=127.0.0.1 port={} dbname=postgres user=app password='{}' sslmode=verify-full sslrootcert='{}'",
        cluster.port(),
        pw("wrong"),
        ca.display()
    );
    let outcome = probe(&[&kv, "--budget-ms", "3000"], Some(&password)).await;
    let value = report(&outcome);
    assert_eq!(outcome.code, EXIT_FAILED, "{value}");
    assert_eq!(value["ok"], false);
    assert_eq!(value["error_kind"], "auth_failed");
    assert_eq!(value["sqlstate"], "28P01");
    assert_eq!(value["step"], "auth");

    // The wrong password from PGPASSWORD as well.
    let outcome = probe(&[&url], Some(&pw("wrong"))).await;
    assert_eq!(outcome.code, EXIT_FAILED);
    assert_eq!(report(&outcome)["error_kind"], "auth_failed");
}

#[tokio::test]
async fn invalid_input_exits_2_naming_the_field() {
    let secret = pw("input");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![format!(
                "postgresql://app:{secret}@127.0.0.1:5432/db?bogus=1"
            )],
            "dsn",
        ),
        (vec![format!("host=127.0.0.1 password='{secret}")], "dsn"),
        (
            vec![format!("postgresql://app:{secret}@127.0.0.1:notaport/db")],
            "dsn.port",
        ),
        (
            vec![format!(
                "postgresql://app:{secret}@127.0.0.1/db?sslmode=sometimes"
            )],
            "dsn.sslmode",
        ),
        (
            vec![format!(
                "postgresql://app:{secret}@127.0.0.1/db?sslrootcert=/nonexistent/ca.pem"
            )],
            "dsn.sslrootcert",
        ),
        (
            vec![
                "postgresql://app@127.0.0.1/db".to_owned(),
                "--budget-ms".to_owned(),
                "0".to_owned(),
            ],
            "--budget-ms",
        ),
        (
            vec![
                "postgresql://app@127.0.0.1/db".to_owned(),
                format!("--{secret}"),
            ],
            "arguments",
        ),
        (vec![], "dsn"),
    ];
    for (args, field) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let outcome = probe(&args, Some("pgpassword")).await;
        assert_eq!(outcome.code, EXIT_INVALID, "{args:?}: {outcome:?}");
        assert!(outcome.stdout.is_empty(), "{outcome:?}");
        assert_eq!(outcome.stderr.lines().count(), 1, "{outcome:?}");
        assert!(
            outcome
                .stderr
                .starts_with(&format!("invalid input: {field}: ")),
            "{args:?}: {outcome:?}"
        );
    }
    // No password anywhere is invalid input too.
    let outcome = probe(&["postgresql://app@127.0.0.1/db"], None).await;
    assert_eq!(outcome.code, EXIT_INVALID);
    assert!(outcome.stderr.starts_with("invalid input: password: "));
    // --help prints the usage, which states the policy.
    let outcome = probe(&["--help"], None).await;
    assert_eq!(outcome.code, EXIT_OK);
    assert!(outcome.stdout.contains("always-denied"));
}

#[tokio::test]
async fn a_silent_host_is_cut_at_the_budget() {
    let proxy = FaultProxy::start(Fault::NoAnswer).await.unwrap();
    let url = format!(
        "postgresql://app@127.0.0.1:{}/postgres?sslmode=require",
        proxy.port()
    );
    let started = Instant::now();
    let outcome = probe(&[&url, "--budget-ms", "300"], Some(&pw("silent"))).await;
    let took = started.elapsed();
    let value = report(&outcome);
    assert_eq!(outcome.code, EXIT_FAILED, "{value}");
    assert_eq!(value["error_kind"], "timeout");
    assert!(took < Duration::from_millis(350), "took {took:?}");
    assert!(value["total_ms"].as_f64().unwrap() < 350.0, "{value}");
}

#[tokio::test]
async fn client_certificate_and_key_files_are_read() {
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("cert_user").auth(AuthMethod::Cert))
        .start()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cluster.client_cert("cert_user").unwrap();
    let files = [
        ("ca.pem", cluster.ca_pem().unwrap()),
        ("client.pem", cert.as_str()),
        ("client.key", key.as_str()),
    ];
    for (name, pem) in files {
        std::fs::write(dir.path().join(name), pem).unwrap();
    }
    let path = |name: &str| dir.path().join(name).display().to_string();
    let base = format!(
        "host=127.0.0.1 port={} user=cert_user dbname=postgres sslmode=verify-full sslrootcert='{}'",
        cluster.port(),
        path("ca.pem")
    );
    let with_cert = format!(
        "{base} sslcert='{}' sslkey='{}'",
        path("client.pem"),
        path("client.key")
    );
    let outcome = probe(&[&with_cert, "--budget-ms=4000"], Some(&pw("unused"))).await;
    let value = report(&outcome);
    assert_eq!(outcome.code, EXIT_OK, "{value}");
    assert_eq!(value["server"]["user"], "cert_user");
    // The key never reaches the output.
    assert!(!outcome.stdout.contains("PRIVATE KEY"));
    // Without the certificate the server refuses the user.
    let outcome = probe(&[&base], Some(&pw("unused"))).await;
    assert_eq!(outcome.code, EXIT_FAILED);
    assert_eq!(report(&outcome)["error_kind"], "auth_failed");
}
