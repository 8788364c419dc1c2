//! Every fault proxy mode, against raw sockets and against a real cluster, and the proof that
//! each returns to its idle socket count once the client hangs up.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use datahub_testkit::{
    DEFAULT_DRIP_INTERVAL, Direction, ErrorKind, Fault, FaultProxy, PgCluster, ServerCert, User,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::support::{connect_plain, io_kind, tls_trusting, whoami};

/// How long a proxy may take to close its side after the client hangs up.
const SETTLE: Duration = Duration::from_secs(5);

/// A loopback upstream that writes `greeting` to each client and then holds it open.
async fn greeting_upstream(greeting: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                socket.write_all(greeting).await.unwrap();
                let mut sink = [0u8; 1024];
                while let Ok(n) = socket.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn cluster() -> PgCluster {
    PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("app").password("app-pw"))
        .start()
        .unwrap()
}

/// A TLS connect through `addr` that must not finish within `budget`.
async fn tls_connect_hangs(cluster: &PgCluster, addr: SocketAddr, budget: Duration) -> bool {
    let mut config = cluster.config_via(addr, "app", "postgres");
    config.ssl_mode(tokio_postgres::config::SslMode::Require);
    let tls = tls_trusting(cluster.ca_pem().unwrap());
    timeout(budget, config.connect(tls)).await.is_err()
}

#[tokio::test]
async fn no_answer_times_out_instead_of_refusing() {
    let proxy = FaultProxy::start(Fault::NoAnswer).await.unwrap();
    assert_eq!(proxy.idle_sockets(), 2);
    assert_eq!(proxy.open_sockets(), 2);
    let result = timeout(Duration::from_millis(500), TcpStream::connect(proxy.addr())).await;
    assert!(
        result.is_err(),
        "connect finished instead of timing out: {result:?}"
    );
    assert_eq!(proxy.accepted(), 0);
    assert_eq!(proxy.open_sockets(), proxy.idle_sockets());
}

#[tokio::test]
async fn accept_and_stall_never_answers_and_closes_with_the_client() {
    let proxy = FaultProxy::start(Fault::AcceptAndStall).await.unwrap();
    assert_eq!(proxy.open_sockets(), proxy.idle_sockets());

    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client
        .write_all(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        timeout(Duration::from_millis(300), client.read(&mut buf))
            .await
            .is_err(),
        "it answered"
    );
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(proxy.open_sockets(), proxy.idle_sockets() + 1);

    drop(client);
    assert!(
        proxy.wait_idle(SETTLE).await,
        "open sockets: {}",
        proxy.open_sockets()
    );
}

#[tokio::test]
async fn forward_is_transparent_and_counts_both_sides() {
    let cluster = cluster();
    let proxy = FaultProxy::start(Fault::Forward {
        upstream: cluster.addr(),
    })
    .await
    .unwrap();
    let config = cluster.config_via(proxy.addr(), "app", "postgres");
    let client = connect_plain(&config).await.unwrap();
    assert_eq!(whoami(&client).await, ("app".to_owned(), false));
    assert_eq!(
        proxy.open_sockets(),
        proxy.idle_sockets() + 2,
        "client side and upstream side"
    );
    drop(client);
    assert!(
        proxy.wait_idle(SETTLE).await,
        "open sockets: {}",
        proxy.open_sockets()
    );
}

#[tokio::test]
async fn stall_after_lands_inside_tls_in_either_direction() {
    let cluster = cluster();
    // 1 byte server→client is the `S` answer to the SSLRequest: the TLS handshake then stalls.
    // 8 bytes client→server is the SSLRequest itself: the ClientHello never arrives.
    for (direction, after_bytes) in [
        (Direction::ServerToClient, 1),
        (Direction::ClientToServer, 8),
    ] {
        let proxy = FaultProxy::start(Fault::StallAfter {
            upstream: cluster.addr(),
            direction,
            after_bytes,
        })
        .await
        .unwrap();
        assert!(
            tls_connect_hangs(&cluster, proxy.addr(), Duration::from_secs(1)).await,
            "{direction:?} {after_bytes}: connect finished"
        );
        assert_eq!(proxy.accepted(), 1);
        // The timed-out connect dropped its socket; the proxy lets go of both sides.
        assert!(
            proxy.wait_idle(SETTLE).await,
            "{direction:?}: open sockets {}",
            proxy.open_sockets()
        );
    }
}

#[tokio::test]
async fn stall_after_forwards_exactly_n_bytes_then_holds_the_client() {
    let upstream = greeting_upstream(b"hello world").await;
    let proxy = FaultProxy::start(Fault::StallAfter {
        upstream,
        direction: Direction::ServerToClient,
        after_bytes: 5,
    })
    .await
    .unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 5 {
        let n = timeout(SETTLE, client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_ne!(n, 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"hello");
    assert!(
        timeout(Duration::from_millis(300), client.read(&mut buf))
            .await
            .is_err(),
        "more bytes came"
    );
    drop(client);
    assert!(
        proxy.wait_idle(SETTLE).await,
        "open sockets: {}",
        proxy.open_sockets()
    );
}

#[tokio::test]
async fn drip_sends_one_byte_per_interval() {
    let upstream = greeting_upstream(b"hello").await;
    let interval = Duration::from_millis(100);
    let proxy = FaultProxy::start(Fault::Drip { upstream, interval })
        .await
        .unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 5 {
        let n = timeout(SETTLE, client.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "a read returned {n} bytes at once");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"hello");
    // Functional lower bound: four pauses separate five bytes.
    assert!(
        started.elapsed() >= interval * 4,
        "dripped too fast: {:?}",
        started.elapsed()
    );
    drop(client);
    assert!(
        proxy.wait_idle(SETTLE).await,
        "open sockets: {}",
        proxy.open_sockets()
    );

    assert_eq!(
        Fault::drip(upstream),
        Fault::Drip {
            upstream,
            interval: DEFAULT_DRIP_INTERVAL
        }
    );
    assert_eq!(DEFAULT_DRIP_INTERVAL, Duration::from_secs(1));
}

#[tokio::test]
async fn drip_at_the_default_interval_stalls_a_real_handshake() {
    let cluster = cluster();
    let proxy = FaultProxy::start(Fault::drip(cluster.addr()))
        .await
        .unwrap();
    assert!(tls_connect_hangs(&cluster, proxy.addr(), Duration::from_millis(1500)).await);
    assert!(
        proxy.wait_idle(SETTLE).await,
        "open sockets: {}",
        proxy.open_sockets()
    );
}

#[tokio::test]
async fn reset_after_n_bytes_gives_the_client_econnreset() {
    let upstream = greeting_upstream(b"hello").await;
    let proxy = FaultProxy::start(Fault::ResetAfter {
        upstream,
        direction: Direction::ServerToClient,
        after_bytes: 2,
    })
    .await
    .unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let err = loop {
        match timeout(SETTLE, client.read(&mut buf)).await.unwrap() {
            Ok(0) => panic!("clean close instead of a reset, after {got:?}"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => break err,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert_eq!(got, b"he");
    drop(client);
    assert!(
        proxy.wait_idle(SETTLE).await,
        "open sockets: {}",
        proxy.open_sockets()
    );
}

#[tokio::test]
async fn reset_during_postgres_startup_is_an_io_reset() {
    let cluster = cluster();
    let proxy = FaultProxy::start(Fault::ResetAfter {
        upstream: cluster.addr(),
        direction: Direction::ServerToClient,
        after_bytes: 0,
    })
    .await
    .unwrap();
    let config = cluster.config_via(proxy.addr(), "app", "postgres");
    let err = connect_plain(&config).await.unwrap_err();
    assert_eq!(
        io_kind(&err),
        Some(std::io::ErrorKind::ConnectionReset),
        "{err:?}"
    );
    assert!(
        proxy.wait_idle(SETTLE).await,
        "open sockets: {}",
        proxy.open_sockets()
    );
}

#[tokio::test]
async fn dropping_a_proxy_closes_its_connections_and_listener() {
    let proxy = FaultProxy::start(Fault::AcceptAndStall).await.unwrap();
    let addr = proxy.addr();
    let mut client = TcpStream::connect(addr).await.unwrap();
    while proxy.accepted() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(proxy);
    let mut buf = [0u8; 16];
    let read = timeout(SETTLE, client.read(&mut buf))
        .await
        .expect("the client was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let again = timeout(SETTLE, TcpStream::connect(addr)).await.unwrap();
    assert_eq!(
        again.unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
}

#[tokio::test]
async fn only_loopback_upstreams_are_accepted() {
    let upstream: SocketAddr = "192.0.2.1:5432".parse().unwrap();
    let err = FaultProxy::start(Fault::Forward { upstream })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}
