//! libpq's second attempts: `prefer` retries without TLS on a new connection when the TLS
//! handshake fails or the server refuses the encrypted connection; `allow` retries with TLS when
//! the server refuses the plaintext one; no other mode retries, and the admin floor keeps
//! `prefer` (and so its plaintext retry) out entirely.
//!
//! The broken-TLS server is a fake on loopback: it answers `S` to an SSLRequest and then breaks
//! the handshake; a connection that starts without an SSLRequest is forwarded, bytes unchanged,
//! to a kit cluster where the user is allowed without TLS only (`hostnossl`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use datahub_core::model::{FailureKind, TlsMode};
use datahub_core::probe::{MAX_BUDGET, ProbeRules, Report, StepName};
use datahub_testkit::{PgCluster, ServerCert, Transport, User};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{SHORT, Target, any_mode, failed, pw, run};

const SSL_REQUEST: u32 = 80_877_103;

/// How the fake breaks the TLS handshake after answering `S`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Break {
    /// Reads the ClientHello and answers with bytes that are not TLS, then waits.
    Garbage,
    /// Reads part of the ClientHello and closes the connection.
    Close,
}

/// What each connection the fake received started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// An SSLRequest (answered `S`, then the handshake broken).
    Tls,
    /// Anything else (forwarded to the cluster).
    Plain,
}

/// A server whose TLS is broken and whose plaintext is a real cluster.
struct BrokenTls {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl BrokenTls {
    async fn start(broken: Break, upstream: SocketAddr) -> Self {
        assert!(upstream.ip().is_loopback());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, broken, upstream, log.clone()));
            }
        });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(
    mut socket: TcpStream,
    broken: Break,
    upstream: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    // An SSLRequest is 8 bytes; a startup message is longer, so 8 bytes are always there.
    let mut head = [0u8; 8];
    if socket.read_exact(&mut head).await.is_err() {
        return;
    }
    if head[4..] == SSL_REQUEST.to_be_bytes() {
        seen.lock().unwrap().push(Seen::Tls);
        socket.write_all(b"S").await.unwrap();
        let mut hello = [0u8; 16];
        match broken {
            Break::Garbage => {
                let mut rest = vec![0u8; 4096];
                let _ = socket.read(&mut rest).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nthis is not TLS\r\n\r\n")
                    .await;
                while matches!(socket.read(&mut rest).await, Ok(n) if n > 0) {}
            }
            Break::Close => {
                let _ = socket.read_exact(&mut hello).await;
            }
        }
        return;
    }
    seen.lock().unwrap().push(Seen::Plain);
    let mut server = TcpStream::connect(upstream).await.unwrap();
    server.write_all(&head).await.unwrap();
    let _ = tokio::io::copy_bidirectional(&mut socket, &mut server).await;
}

fn steps(report: &Report) -> Vec<(&'static str, bool)> {
    report
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.ok))
        .collect()
}

/// A TLS cluster with a user allowed only without TLS and one allowed only with it.
fn cluster(password: &str) -> PgCluster {
    PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(
            User::new("nossl")
                .password(password)
                .transport(Transport::NoSsl),
        )
        .user(
            User::new("sslonly")
                .password(password)
                .transport(Transport::SslOnly),
        )
        .start()
        .unwrap()
}

#[tokio::test]
async fn prefer_retries_without_tls_after_a_failed_handshake_and_require_does_not() {
    let password = pw("retry");
    let cluster = cluster(&password);
    for broken in [Break::Garbage, Break::Close] {
        // prefer: the handshake fails, a new plaintext connection succeeds (libpq's rule).
        let fake = BrokenTls::start(broken, cluster.addr()).await;
        let target = Target::new(fake.addr.port(), "nossl", &password, TlsMode::Prefer);
        let report = run(&target, &any_mode(), MAX_BUDGET).await;
        assert!(report.ok, "{broken:?}: {report:?}");
        assert!(report.tls.is_none(), "{broken:?}: {report:?}");
        assert_eq!(report.server.as_ref().unwrap().user, "nossl");
        assert_eq!(
            steps(&report),
            [
                ("config", true),
                ("resolve", true),
                ("policy", true),
                ("tcp", true),
                ("tls", false),
                ("resolve", true),
                ("policy", true),
                ("tcp", true),
                ("startup", true),
                ("auth", true),
                ("query", true),
            ],
            "{broken:?}"
        );
        assert_eq!(fake.seen(), [Seen::Tls, Seen::Plain], "{broken:?}");

        // require and the verifying modes: the same failure is final, on one connection.
        for mode in [TlsMode::Require, TlsMode::VerifyCa, TlsMode::VerifyFull] {
            let fake = BrokenTls::start(broken, cluster.addr()).await;
            let mut target = Target::new(fake.addr.port(), "nossl", &password, mode);
            if mode != TlsMode::Require {
                target = target.ca(cluster.ca_pem().unwrap());
            }
            let report = run(&target, &any_mode(), SHORT).await;
            assert_eq!(
                failed(&report),
                (FailureKind::TlsHandshakeFailed, StepName::Tls),
                "{broken:?} {mode}: {report:?}"
            );
            assert_eq!(
                steps(&report),
                [
                    ("config", true),
                    ("resolve", true),
                    ("policy", true),
                    ("tcp", true),
                    ("tls", false),
                ],
                "{broken:?} {mode}"
            );
            assert_eq!(fake.seen(), [Seen::Tls], "{broken:?} {mode}");
        }
    }
}

#[tokio::test]
async fn the_admin_floor_keeps_the_plaintext_retry_out() {
    let password = pw("floor");
    let cluster = cluster(&password);
    let fake = BrokenTls::start(Break::Garbage, cluster.addr()).await;
    let target = Target::new(fake.addr.port(), "nossl", &password, TlsMode::Prefer);
    // A floor demanding TLS refuses `prefer` before any socket: no TLS attempt, no retry.
    for floor in [TlsMode::Require, TlsMode::VerifyCa, TlsMode::VerifyFull] {
        let rules = ProbeRules {
            min_tls_mode: floor,
            ..ProbeRules::default()
        };
        let report = run(&target, &rules, SHORT).await;
        assert_eq!(
            failed(&report),
            (FailureKind::InvalidConfig, StepName::Config),
            "{floor}"
        );
        assert_eq!(steps(&report), [("config", false)], "{floor}");
    }
    assert!(fake.seen().is_empty(), "{:?}", fake.seen());
    // A floor at `prefer` accepts the mode, and with it the plaintext retry.
    let rules = ProbeRules {
        min_tls_mode: TlsMode::Prefer,
        ..ProbeRules::default()
    };
    let report = run(&target, &rules, MAX_BUDGET).await;
    assert!(report.ok, "{report:?}");
    assert!(report.tls.is_none());
    assert_eq!(fake.seen(), [Seen::Tls, Seen::Plain]);
}

#[tokio::test]
async fn server_refusals_retry_in_the_other_mode_prefer_and_allow() {
    let password = pw("refusal");
    let cluster = cluster(&password);
    let ca = cluster.ca_pem().unwrap().to_owned();

    // prefer: TLS works, but the server refuses this user over TLS (no hostssl line): retried
    // in plaintext, where the hostnossl line lets it in.
    let target = Target::new(cluster.port(), "nossl", &password, TlsMode::Prefer);
    let report = run(&target, &any_mode(), MAX_BUDGET).await;
    assert!(report.ok, "{report:?}");
    assert!(report.tls.is_none());
    assert_eq!(
        steps(&report),
        [
            ("config", true),
            ("resolve", true),
            ("policy", true),
            ("tcp", true),
            ("tls", true),
            ("startup", false),
            ("resolve", true),
            ("policy", true),
            ("tcp", true),
            ("startup", true),
            ("auth", true),
            ("query", true),
        ]
    );

    // allow, the opposite order: plaintext first, refused (hostssl only), then TLS.
    let target = Target::new(cluster.port(), "sslonly", &password, TlsMode::Allow).ca(&ca);
    let report = run(&target, &any_mode(), MAX_BUDGET).await;
    assert!(report.ok, "{report:?}");
    assert!(report.tls.is_some());
    assert_eq!(
        steps(&report),
        [
            ("config", true),
            ("resolve", true),
            ("policy", true),
            ("tcp", true),
            ("startup", false),
            ("resolve", true),
            ("policy", true),
            ("tcp", true),
            ("tls", true),
            ("startup", true),
            ("auth", true),
            ("query", true),
        ]
    );

    // allow against the broken-TLS server: plaintext first, and it works, so TLS is never
    // tried (and a handshake failure could not matter).
    let fake = BrokenTls::start(Break::Garbage, cluster.addr()).await;
    let target = Target::new(fake.addr.port(), "nossl", &password, TlsMode::Allow);
    let report = run(&target, &any_mode(), MAX_BUDGET).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(fake.seen(), [Seen::Plain]);

    // require: the same refusal over TLS is final.
    let target = Target::new(cluster.port(), "nossl", &password, TlsMode::Require);
    let report = run(&target, &any_mode(), SHORT).await;
    assert_eq!(failed(&report).0, FailureKind::AuthFailed, "{report:?}");
    assert_eq!(super::sqlstate(&report), Some("28000"));
    assert_eq!(
        report
            .steps
            .iter()
            .filter(|s| s.name == StepName::Tcp)
            .count(),
        1
    );
}
