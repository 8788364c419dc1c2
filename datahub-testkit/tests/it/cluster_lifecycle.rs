//! Start time, `max_connections`, stop and restart, and cleanup on drop.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use datahub_testkit::{AuthMethod, PgCluster, ServerCert, User};

use crate::support::{connect_plain, connect_tls, sqlstate, tls_trusting, whoami};

/// SQLSTATE 53300: too many connections.
const TOO_MANY_CONNECTIONS: &str = "53300";

#[tokio::test]
async fn tls_cluster_starts_and_reports_its_start_time() {
    let started = Instant::now();
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("app").password("app-pw"))
        .database("appdb", "app")
        .start()
        .unwrap();
    let elapsed = started.elapsed();
    // Measured, not asserted: speed belongs to benches.
    println!("tls cluster start (template copy, certs, pg_ctl start, setup sql): {elapsed:?}");
    let client = connect_tls(
        &cluster.config("app", "appdb"),
        tls_trusting(cluster.ca_pem().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(whoami(&client).await, ("app".to_owned(), true));
}

#[tokio::test]
async fn max_connections_is_enforced() {
    let cluster = PgCluster::builder()
        .max_connections(4)
        .setting("superuser_reserved_connections", "0")
        .user(User::new("app").auth(AuthMethod::Trust))
        .start()
        .unwrap();
    let config = cluster.config("app", "postgres");
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(connect_plain(&config).await.unwrap());
    }
    let err = connect_plain(&config).await.unwrap_err();
    assert_eq!(
        sqlstate(&err).as_deref(),
        Some(TOO_MANY_CONNECTIONS),
        "{err}"
    );
    let message = err.as_db_error().unwrap().message();
    assert!(message.contains("too many clients"), "{message}");
    // A slot frees up when a client leaves.
    drop(clients.pop());
    let mut reconnected = None;
    for _ in 0..50 {
        if let Ok(client) = connect_plain(&config).await {
            reconnected = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        reconnected.is_some(),
        "no slot came free after a client left"
    );
}

#[tokio::test]
async fn restart_keeps_data_and_port() {
    let mut cluster = PgCluster::builder()
        .user(User::new("app").password("app-pw"))
        .database("appdb", "app")
        .start()
        .unwrap();
    let port = cluster.port();
    cluster
        .psql(
            "appdb",
            "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives'); \
             GRANT SELECT ON kept TO app;",
        )
        .unwrap();

    cluster.stop().unwrap();
    assert!(!cluster.is_running());
    assert!(
        TcpStream::connect(cluster.addr()).is_err(),
        "a stopped server still listens"
    );

    cluster.start().unwrap();
    assert!(cluster.is_running());
    assert_eq!(cluster.port(), port);
    let client = connect_plain(&cluster.config("app", "appdb"))
        .await
        .unwrap();
    let row = client.query_one("SELECT v FROM kept", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "survives");

    cluster.restart().unwrap();
    assert_eq!(cluster.port(), port);
    assert_eq!(
        cluster
            .psql("appdb", "SELECT count(*) FROM kept")
            .unwrap()
            .trim(),
        "1"
    );
}

/// A process is gone once `/proc/<pid>` disappears or only a zombie is left for init to reap.
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn drop_removes_the_folder_and_the_server_process() {
    let cluster = PgCluster::builder().tls(ServerCert::Valid).start().unwrap();
    let root = cluster.root_dir().to_owned();
    let addr = cluster.addr();
    let pid = cluster.server_pid().unwrap();
    assert!(root.join("data/PG_VERSION").exists());
    assert!(!process_gone(pid));

    drop(cluster);

    assert!(!root.exists(), "{} still exists", root.display());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !process_gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(process_gone(pid), "postmaster {pid} still runs");
    assert!(
        TcpStream::connect(addr).is_err(),
        "port {addr} still answers"
    );
}

#[test]
fn a_failed_start_says_why_and_cleans_up() {
    use std::os::unix::fs::PermissionsExt;
    let base = tempfile::tempdir().unwrap();
    // The server user must be able to pass through the base folder.
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = PgCluster::builder()
        .base_dir(base.path())
        .setting("no_such_setting_xyz", "1")
        .start()
        .unwrap_err();
    assert_eq!(err.kind(), datahub_testkit::ErrorKind::Start);
    let message = err.to_string();
    // The message carries the server log's own explanation.
    assert!(message.contains("no_such_setting_xyz"), "{message}");
    let left: Vec<_> = std::fs::read_dir(base.path()).unwrap().collect();
    assert!(left.is_empty(), "a failed start left {left:?}");
}

#[test]
fn psql_errors_are_classified_and_do_not_echo_the_statement() {
    let cluster = PgCluster::builder().start().unwrap();
    assert_eq!(
        cluster.psql("postgres", "SELECT 40 + 2").unwrap().trim(),
        "42"
    );
    let err = cluster
        .psql(
            "postgres",
            "SELECT * FROM no_such_table WHERE secret = 'canary-7f3a'",
        )
        .unwrap_err();
    assert_eq!(err.kind(), datahub_testkit::ErrorKind::Setup);
    let message = err.to_string();
    assert!(message.contains("no_such_table"), "{message}");
    assert!(!message.contains("canary-7f3a"), "{message}");
}
