//! The cleartext guard and channel binding against fake servers that record whether a password
//! message ever arrives (SECURITY.md S13), and peers that are not PostgreSQL (S17).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use datahub_core::model::{ChannelBinding, FailureKind, TlsMode};
use datahub_core::probe::{MAX_BUDGET, ProbeRules, StepName};
use datahub_testkit::{AuthMethod, PgCluster, User};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{SHORT, Target, any_mode, failed, pw, run};

/// What a fake server asks for after the startup message.
#[derive(Debug, Clone, Copy)]
enum Ask {
    Cleartext,
    Md5,
    /// SASL offering only plain SCRAM-SHA-256 (no channel binding).
    ScramOnly,
}

/// A fake PostgreSQL that answers `N` to an SSLRequest, asks for `ask`, and records any byte the
/// client sends after that (a password or SASL message would be the first).
struct FakeServer {
    addr: SocketAddr,
    after_ask: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl FakeServer {
    async fn start(ask: Ask) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let after_ask = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (after_ask.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(socket, ask, flag.clone()));
            }
        });
        Self {
            addr,
            after_ask,
            connections,
        }
    }

    fn password_arrived(&self) -> bool {
        self.after_ask.load(Ordering::SeqCst)
    }
}

async fn read_untyped(socket: &mut TcpStream) -> Option<u32> {
    let len = socket.read_u32().await.ok()?;
    let mut body = vec![0; (len as usize).checked_sub(4)?];
    socket.read_exact(&mut body).await.ok()?;
    Some(u32::from_be_bytes(body[..4].try_into().ok()?))
}

async fn serve(mut socket: TcpStream, ask: Ask, after_ask: Arc<AtomicBool>) {
    let Some(mut code) = read_untyped(&mut socket).await else {
        return;
    };
    if code == 80_877_103 {
        socket.write_all(b"N").await.unwrap();
        let Some(next) = read_untyped(&mut socket).await else {
            return;
        };
        code = next;
    }
    assert_eq!(code, 196_608, "a protocol 3.0 startup message");
    let message: Vec<u8> = match ask {
        Ask::Cleartext => [&b"R"[..], &8u32.to_be_bytes(), &3u32.to_be_bytes()].concat(),
        Ask::Md5 => [
            &b"R"[..],
            &12u32.to_be_bytes(),
            &5u32.to_be_bytes(),
            b"salt",
        ]
        .concat(),
        Ask::ScramOnly => {
            let body = b"SCRAM-SHA-256\0\0";
            let len = 8 + body.len() as u32;
            [&b"R"[..], &len.to_be_bytes(), &10u32.to_be_bytes(), body].concat()
        }
    };
    socket.write_all(&message).await.unwrap();
    let mut byte = [0u8; 1];
    if let Ok(Ok(1)) =
        tokio::time::timeout(Duration::from_millis(500), socket.read(&mut byte)).await
    {
        // Anything the client writes now is its answer to the request: a password message.
        after_ask.store(true, Ordering::SeqCst);
    }
}

fn target(addr: SocketAddr, mode: TlsMode) -> Target {
    Target::new(addr.port(), "app", &pw("fake"), mode)
}

#[tokio::test]
async fn the_guard_refuses_cleartext_and_md5_over_plaintext() {
    for ask in [Ask::Cleartext, Ask::Md5] {
        // Guard on: disable without the admin's permission, and prefer (never permitted).
        for (mode, allow) in [(TlsMode::Disable, false), (TlsMode::Prefer, true)] {
            let fake = FakeServer::start(ask).await;
            let rules = ProbeRules {
                min_tls_mode: TlsMode::Disable,
                allow_cleartext_password: allow,
            };
            let report = run(&target(fake.addr, mode), &rules, SHORT).await;
            assert_eq!(
                failed(&report),
                (FailureKind::AuthMethodRefused, StepName::Auth),
                "{ask:?} {mode}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(
                !fake.password_arrived(),
                "{ask:?} {mode}: the server received a password"
            );
        }
        // Positive control: disable with the admin's permission sends it (the fake then stalls).
        let fake = FakeServer::start(ask).await;
        let rules = ProbeRules {
            min_tls_mode: TlsMode::Disable,
            allow_cleartext_password: true,
        };
        let report = run(
            &target(fake.addr, TlsMode::Disable),
            &rules,
            Duration::from_millis(300),
        )
        .await;
        assert!(!report.ok);
        assert!(
            fake.password_arrived(),
            "{ask:?}: the fake server did not see the password"
        );
    }
}

#[tokio::test]
async fn channel_binding_require_gives_a_fake_server_nothing() {
    for ask in [Ask::Cleartext, Ask::Md5, Ask::ScramOnly] {
        let fake = FakeServer::start(ask).await;
        let mut t = target(fake.addr, TlsMode::Allow);
        t.channel_binding = ChannelBinding::Require;
        // The admin even permits cleartext: channel binding alone must refuse.
        let rules = ProbeRules {
            min_tls_mode: TlsMode::Disable,
            allow_cleartext_password: true,
        };
        let report = run(&t, &rules, SHORT).await;
        assert_eq!(
            failed(&report).0,
            FailureKind::AuthMethodRefused,
            "{ask:?}: {report:?}"
        );
        // allow retried with TLS, which the fake refused: two connections, no password.
        assert_eq!(fake.connections.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !fake.password_arrived(),
            "{ask:?}: the server received a password"
        );
    }
}

#[tokio::test]
async fn a_real_cleartext_user_never_sees_the_password_over_plaintext() {
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
    let target = Target::new(cluster.port(), "clear_user", &password, TlsMode::Disable);
    let report = run(&target, &any_mode(), SHORT).await;
    assert_eq!(
        failed(&report),
        (FailureKind::AuthMethodRefused, StepName::Auth)
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = cluster.log_tail(200);
    assert!(
        !log.contains("connection authorized: user=clear_user"),
        "{log}"
    );
    assert!(!log.contains("password authentication failed"), "{log}");
    // With the admin's permission, disable sends it and logs in.
    let rules = ProbeRules {
        min_tls_mode: TlsMode::Disable,
        allow_cleartext_password: true,
    };
    let report = run(&target, &rules, MAX_BUDGET).await;
    assert!(report.ok, "{report:?}");
}

#[tokio::test]
async fn a_peer_that_is_not_postgres_is_a_protocol_error_and_never_echoed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nX-Evil: \x1b[2Jpwned\r\n\r\n")
                    .await;
                tokio::time::sleep(Duration::from_secs(3)).await;
            });
        }
    });
    for mode in [TlsMode::Disable, TlsMode::Require, TlsMode::Prefer] {
        let report = run(&target(addr, mode), &any_mode(), SHORT).await;
        assert_eq!(
            failed(&report).0,
            FailureKind::ProtocolError,
            "{mode}: {report:?}"
        );
        assert!(report.total_ms < 500.0, "{mode}: {report:?}");
        let shown = format!("{report:?}");
        assert!(
            !shown.contains("HTTP") && !shown.contains("pwned"),
            "{shown}"
        );
    }
}

/// A fake server that starts SCRAM honestly (offers SCRAM-SHA-256, takes the client-first
/// message) and then misbehaves as `twist` says; it records whether a proof (`SASLResponse`)
/// arrives after its server-first message.
async fn fake_scram(twist: &'static str) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proof = Arc::new(AtomicBool::new(false));
    let seen = proof.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                assert_eq!(read_untyped(&mut socket).await, Some(196_608));
                let body = b"SCRAM-SHA-256\0\0";
                let len = 8 + body.len() as u32;
                let sasl = [&b"R"[..], &len.to_be_bytes(), &10u32.to_be_bytes(), body].concat();
                socket.write_all(&sasl).await.unwrap();
                // SASLInitialResponse: 'p', length, mechanism, data length, client-first.
                assert_eq!(socket.read_u8().await.unwrap(), b'p');
                let len = socket.read_u32().await.unwrap() as usize;
                let mut body = vec![0; len - 4];
                socket.read_exact(&mut body).await.unwrap();
                let text = String::from_utf8_lossy(&body).into_owned();
                let nonce = text.split("r=").nth(1).unwrap().to_owned();
                let reply: Vec<u8> = match twist {
                    "iterations" => {
                        let first = format!("r={nonce}srv,s=c2FsdA==,i=2000000000");
                        let len = 8 + first.len() as u32;
                        [
                            &b"R"[..],
                            &len.to_be_bytes(),
                            &11u32.to_be_bytes(),
                            first.as_bytes(),
                        ]
                        .concat()
                    }
                    // AuthenticationOk without ever proving it knows the password.
                    _ => [&b"R"[..], &8u32.to_be_bytes(), &0u32.to_be_bytes()].concat(),
                };
                socket.write_all(&reply).await.unwrap();
                let mut byte = [0u8; 1];
                if let Ok(Ok(1)) =
                    tokio::time::timeout(Duration::from_millis(500), socket.read(&mut byte)).await
                {
                    seen.store(true, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, proof)
}

/// A server asking for two billion PBKDF2 iterations would hold a thread for minutes (and no
/// deadline can cut a computation): the prober refuses at once and sends no proof.
#[tokio::test]
async fn scram_with_absurd_iterations_is_refused_at_once() {
    let (addr, proof) = fake_scram("iterations").await;
    let started = std::time::Instant::now();
    let report = run(&target(addr, TlsMode::Disable), &any_mode(), MAX_BUDGET).await;
    assert_eq!(
        failed(&report),
        (FailureKind::AuthMethodRefused, StepName::Auth),
        "{report:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(500), "{report:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!proof.load(Ordering::SeqCst), "a proof was sent");
}

/// A server that ends SCRAM with `AuthenticationOk` before proving it knows the password (an
/// impostor) is not trusted.
#[tokio::test]
async fn scram_ended_without_the_server_proof_is_refused() {
    let (addr, _) = fake_scram("skip-final").await;
    let report = run(&target(addr, TlsMode::Disable), &any_mode(), SHORT).await;
    assert_eq!(
        failed(&report),
        (FailureKind::AuthFailed, StepName::Auth),
        "{report:?}"
    );
}
