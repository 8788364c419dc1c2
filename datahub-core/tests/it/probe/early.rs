//! The probe query sent early, behind the client's last authentication answer (`auth.rs`):
//! sent once, the same facts, and a login that fails after it still fails as the login.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datahub_core::model::{FailureKind, TlsMode};
use datahub_core::probe::{MAX_BUDGET, StepName};
use datahub_testkit::{PgCluster, ServerCert, User};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{SHORT, Target, any_mode, failed, pw, run, sqlstate};

/// On a real server the query runs once per test (tokio-postgres's own copy of it is not sent
/// again), over TLS and in plaintext, and the facts are right.
#[tokio::test]
async fn a_real_server_runs_the_early_query_once_and_gives_the_facts() {
    let password = pw("early");
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("app").password(&password))
        .setting("log_statement", "all")
        .start()
        .unwrap();
    let ca = cluster.ca_pem().unwrap().to_owned();
    for (i, mode) in [TlsMode::Require, TlsMode::Disable, TlsMode::VerifyCa]
        .into_iter()
        .enumerate()
    {
        let target = Target::new(cluster.port(), "app", &password, mode).ca(&ca);
        let report = run(&target, &any_mode(), MAX_BUDGET).await;
        assert!(report.ok, "{mode}: {report:?}");
        let server = report.server.as_ref().unwrap();
        assert_eq!(server.user, "app");
        assert_eq!(server.database, "postgres");
        assert!(!server.in_recovery);
        assert_eq!(server.max_connections, Some(20));
        assert!(server.connections_used.unwrap() >= 1, "{mode}");
        let steps: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
        assert!(steps.ends_with(&["startup", "auth", "query"]), "{steps:?}");
        // The server logs each statement before it runs it.
        let log = cluster.log_tail(400);
        let runs = log.matches("FROM pg_stat_get_backend_idset()").count();
        assert_eq!(runs, i + 1, "{mode}: {log}");
    }
}

/// How a fake SCRAM server ends after the client-final message.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Refuses the login (28P01) without reading what follows, and closes.
    Refuse,
    /// Reads what follows the client-final message, then closes without a word.
    Close,
}

/// A fake server that runs SCRAM up to the client-final message (a plaintext connection, any
/// proof) and ends as `end` says; it keeps what followed the client-final message, if read.
async fn fake_scram(end: End) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let after = Arc::new(Mutex::new(Vec::new()));
    let kept = after.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, end, kept.clone()));
        }
    });
    (addr, after)
}

async fn read_typed(socket: &mut TcpStream) -> Vec<u8> {
    let kind = socket.read_u8().await.unwrap();
    let len = socket.read_u32().await.unwrap() as usize;
    let mut body = vec![0; len - 4];
    socket.read_exact(&mut body).await.unwrap();
    assert_eq!(kind, b'p', "a SASL message");
    body
}

fn auth_request(code: u32, body: &[u8]) -> Vec<u8> {
    let len = 8 + body.len() as u32;
    [&b"R"[..], &len.to_be_bytes(), &code.to_be_bytes(), body].concat()
}

async fn serve(mut socket: TcpStream, end: End, after: Arc<Mutex<Vec<u8>>>) {
    let len = socket.read_u32().await.unwrap() as usize;
    let mut startup = vec![0; len - 4];
    socket.read_exact(&mut startup).await.unwrap();
    socket
        .write_all(&auth_request(10, b"SCRAM-SHA-256\0\0"))
        .await
        .unwrap();
    let first = String::from_utf8_lossy(&read_typed(&mut socket).await).into_owned();
    let nonce = first.split("r=").nth(1).unwrap().to_owned();
    let server_first = format!("r={nonce}srv,s=c2FsdA==,i=4096");
    socket
        .write_all(&auth_request(11, server_first.as_bytes()))
        .await
        .unwrap();
    read_typed(&mut socket).await;
    match end {
        End::Refuse => {
            let fields = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0";
            let len = 4 + fields.len() as u32;
            let error = [&b"E"[..], &len.to_be_bytes(), fields].concat();
            socket.write_all(&error).await.unwrap();
            // Dropped with the early query unread: the kernel may answer with a reset.
        }
        End::Close => {
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(500), socket.read(&mut buf)).await
            {
                after.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// A server that refuses the login after the early query went out: the failure is the login's,
/// with its SQLSTATE, never the query's.
#[tokio::test]
async fn a_login_refused_after_the_early_query_is_an_auth_failure() {
    let (addr, _) = fake_scram(End::Refuse).await;
    let target = Target::new(addr.port(), "app", &pw("refused"), TlsMode::Disable);
    let report = run(&target, &any_mode(), SHORT).await;
    assert_eq!(
        failed(&report),
        (FailureKind::AuthFailed, StepName::Auth),
        "{report:?}"
    );
    assert_eq!(sqlstate(&report), Some("28P01"));
}

/// The early query follows the client-final message at once; a server that then closes
/// without a word fails the test in `auth` as unavailable.
#[tokio::test]
async fn a_server_closing_after_the_client_final_message_is_unavailable_in_auth() {
    let (addr, after) = fake_scram(End::Close).await;
    let target = Target::new(addr.port(), "app", &pw("closed"), TlsMode::Disable);
    let report = run(&target, &any_mode(), MAX_BUDGET).await;
    assert_eq!(
        failed(&report),
        (FailureKind::ServerUnavailable, StepName::Auth),
        "{report:?}"
    );
    let after = after.lock().unwrap().clone();
    assert_eq!(
        after.first(),
        Some(&b'Q'),
        "the probe query came right behind"
    );
    let text = String::from_utf8_lossy(&after);
    assert!(
        text.contains("SET statement_timeout") && text.contains("pg_stat_get_backend_idset"),
        "{text}"
    );
}
