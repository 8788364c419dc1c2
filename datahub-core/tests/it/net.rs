//! Integration tests of the one dialer (SECURITY.md S14, S22): the table of bypass forms, each
//! refused without opening a socket, then DNS failure, success, refusal, timeout and fallback.
//!
//! Only loopback is ever dialled, and only listeners these tests create; names go through a
//! `StaticResolver`, never the machine's DNS. Before dialling any row the test checks that every
//! address it could reach is loopback or denied by the policy, so even a broken dialer could not
//! send a packet elsewhere.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use datahub_core::model::{Host, TargetPolicy};
use datahub_core::net::{
    AlwaysDenied, Connect, DenyReason, DialError, Dialer, Policy, ResolveError, Resolver,
    StaticFailure, StaticResolver, Step, canonical,
};
use datahub_testkit::{Fault, FaultProxy};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn policy(allow: &[&str], deny: &[&str]) -> Policy {
    Policy::from_target(&TargetPolicy {
        allow_cidrs: allow.iter().map(|s| (*s).to_owned()).collect(),
        deny_cidrs: deny.iter().map(|s| (*s).to_owned()).collect(),
        ..TargetPolicy::default()
    })
    .unwrap()
}

/// A loopback listener that accepts and counts every connection.
struct Counting {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Counting {
    async fn start(bind: &str) -> Counting {
        let listener = TcpListener::bind((ip(bind), 0)).await.unwrap();
        Counting::serve(listener)
    }

    fn serve(listener: TcpListener) -> Counting {
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Counting {
            addr,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections have been accepted (or 2 s pass); returns the count.
    async fn wait_for(&self, n: usize) -> usize {
        let until = Instant::now() + Duration::from_secs(2);
        while self.accepted() < n && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.accepted()
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone, Copy, Debug)]
enum Pol {
    /// Deny loopback by admin policy: `127.0.0.0/8` and `::1/128`.
    DenyLoopback,
    /// Deny only `127.0.0.1/32` (so `127.0.0.2` is allowed).
    DenyOne,
    /// Allow only `10.0.0.0/8`.
    AllowTen,
    /// Allow everything (`0.0.0.0/0`, `::/0`): only the fixed rules remain.
    AllowAll,
}

impl Pol {
    fn policy(self) -> Policy {
        match self {
            Pol::DenyLoopback => policy(&[], &["127.0.0.0/8", "::1/128"]),
            Pol::DenyOne => policy(&[], &["127.0.0.1/32"]),
            Pol::AllowTen => policy(&["10.0.0.0/8"], &[]),
            Pol::AllowAll => policy(&["0.0.0.0/0", "::/0"], &[]),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// `Host::parse` refuses it: it can never reach the dialer.
    Refused,
    /// The dialer refuses it: `Blocked` naming this address, for this kind of reason.
    Blocked(&'static str, Why),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Why {
    Always(AlwaysDenied),
    Denied,
    NotAllowed,
}

use Expect::{Blocked, Refused};
use Pol::{AllowAll, AllowTen, DenyLoopback, DenyOne};
use Why::{Denied, NotAllowed};

const UNSPEC: Why = Why::Always(AlwaysDenied::Unspecified);
const MCAST: Why = Why::Always(AlwaysDenied::Multicast);
const BCAST: Why = Why::Always(AlwaysDenied::BroadcastOrReserved);
const LINK: Why = Why::Always(AlwaysDenied::LinkLocal);
const META: Why = Why::Always(AlwaysDenied::CloudMetadata);

/// Every row: the host as typed, the admin policy, and the expected refusal.
const BYPASS_TABLE: &[(&str, Pol, Expect)] = &[
    // Numeric IPv4 disguises the C resolver would read as 127.0.0.1.
    ("2130706433", DenyLoopback, Refused),
    ("0x7f000001", DenyLoopback, Refused),
    ("0x7f.0.0.1", DenyLoopback, Refused),
    ("0177.0.0.1", DenyLoopback, Refused),
    ("017700000001", DenyLoopback, Refused),
    ("127.000.000.001", DenyLoopback, Refused),
    ("127.1", DenyLoopback, Refused),
    ("127.0.1", DenyLoopback, Refused),
    ("0", AllowAll, Refused),
    // Host lists, unix sockets, URLs, ports, users, zones, odd characters.
    ("127.0.0.1,127.0.0.2", DenyLoopback, Refused),
    ("db.test,127.0.0.1", DenyLoopback, Refused),
    ("/var/run/postgresql", DenyLoopback, Refused),
    ("/tmp/.s.PGSQL.5432", DenyLoopback, Refused),
    ("@abstract", DenyLoopback, Refused),
    ("127.0.0.1:5432", DenyLoopback, Refused),
    ("[::1]:5432", DenyLoopback, Refused),
    ("postgres://127.0.0.1", DenyLoopback, Refused),
    ("postgresql:///db?host=/tmp", DenyLoopback, Refused),
    ("user@127.0.0.1", DenyLoopback, Refused),
    ("[fe80::1%eth0]", AllowAll, Refused),
    ("fe80::1%25eth0", AllowAll, Refused),
    ("localhost.", DenyLoopback, Refused),
    ("127.0.0.1 ", DenyLoopback, Refused),
    ("\u{ff11}\u{ff12}\u{ff17}.0.0.1", DenyLoopback, Refused),
    // Loopback literals, denied by the admin, in every IPv6 spelling.
    ("127.0.0.1", DenyLoopback, Blocked("127.0.0.1", Denied)),
    (
        "127.255.255.254",
        DenyLoopback,
        Blocked("127.255.255.254", Denied),
    ),
    ("::1", DenyLoopback, Blocked("::1", Denied)),
    ("[::1]", DenyLoopback, Blocked("::1", Denied)),
    (
        "::ffff:127.0.0.1",
        DenyLoopback,
        Blocked("::ffff:127.0.0.1", Denied),
    ),
    (
        "::ffff:7f00:1",
        DenyLoopback,
        Blocked("::ffff:127.0.0.1", Denied),
    ),
    (
        "[::ffff:127.0.0.1]",
        DenyLoopback,
        Blocked("::ffff:127.0.0.1", Denied),
    ),
    (
        "0:0:0:0:0:ffff:7f00:1",
        DenyLoopback,
        Blocked("::ffff:127.0.0.1", Denied),
    ),
    ("::127.0.0.1", DenyLoopback, Blocked("::127.0.0.1", Denied)),
    (
        "64:ff9b::7f00:1",
        DenyLoopback,
        Blocked("64:ff9b::7f00:1", Denied),
    ),
    (
        "2002:7f00:1::1",
        DenyLoopback,
        Blocked("2002:7f00:1::1", Denied),
    ),
    ("127.0.0.1", AllowTen, Blocked("127.0.0.1", NotAllowed)),
    (
        "::ffff:127.0.0.1",
        AllowTen,
        Blocked("::ffff:127.0.0.1", NotAllowed),
    ),
    // Names that resolve to denied addresses (StaticResolver, see `resolver()`).
    ("rebind.test", DenyLoopback, Blocked("127.0.0.1", Denied)),
    ("REBIND.test", DenyLoopback, Blocked("127.0.0.1", Denied)),
    (
        "mapped.test",
        DenyLoopback,
        Blocked("::ffff:127.0.0.1", Denied),
    ),
    ("localhost", DenyLoopback, Blocked("127.0.0.1", Denied)),
    ("mixed.test", DenyOne, Blocked("127.0.0.1", Denied)),
    ("metadata.test", AllowAll, Blocked("169.254.169.254", META)),
    ("zero.test", AllowAll, Blocked("0.0.0.0", UNSPEC)),
    // Always denied, whatever the admin allows.
    ("0.0.0.0", AllowAll, Blocked("0.0.0.0", UNSPEC)),
    ("0.1.2.3", AllowAll, Blocked("0.1.2.3", UNSPEC)),
    ("::", AllowAll, Blocked("::", UNSPEC)),
    (
        "::ffff:0.0.0.0",
        AllowAll,
        Blocked("::ffff:0.0.0.0", UNSPEC),
    ),
    (
        "169.254.169.254",
        AllowAll,
        Blocked("169.254.169.254", META),
    ),
    (
        "::ffff:169.254.169.254",
        AllowAll,
        Blocked("::ffff:169.254.169.254", META),
    ),
    (
        "::ffff:a9fe:a9fe",
        AllowAll,
        Blocked("::ffff:169.254.169.254", META),
    ),
    (
        "64:ff9b::a9fe:a9fe",
        AllowAll,
        Blocked("64:ff9b::a9fe:a9fe", META),
    ),
    ("169.254.170.2", AllowAll, Blocked("169.254.170.2", META)),
    ("fd00:ec2::254", AllowAll, Blocked("fd00:ec2::254", META)),
    (
        "100.100.100.200",
        AllowAll,
        Blocked("100.100.100.200", META),
    ),
    ("168.63.129.16", AllowAll, Blocked("168.63.129.16", META)),
    ("169.254.0.1", AllowAll, Blocked("169.254.0.1", LINK)),
    ("fe80::1", AllowAll, Blocked("fe80::1", LINK)),
    ("224.0.0.1", AllowAll, Blocked("224.0.0.1", MCAST)),
    ("ff02::1", AllowAll, Blocked("ff02::1", MCAST)),
    (
        "255.255.255.255",
        AllowAll,
        Blocked("255.255.255.255", BCAST),
    ),
];

fn resolver() -> StaticResolver {
    StaticResolver::new()
        .with("rebind.test", &[ip("127.0.0.1")])
        .with("mapped.test", &[ip("::ffff:127.0.0.1")])
        .with("localhost", &[ip("127.0.0.1"), ip("::1")])
        // An allowed address first, then a denied one: the whole dial is refused.
        .with("mixed.test", &[ip("127.0.0.2"), ip("127.0.0.1")])
        .with("metadata.test", &[ip("169.254.169.254")])
        .with("zero.test", &[ip("0.0.0.0")])
        .with("ok.test", &[ip("127.0.0.1")])
        .with_failure("down.test", StaticFailure::Failed)
}

/// Every address a dial of `host` could reach, as the static table or the literal says.
async fn reachable(r: &StaticResolver, host: &Host, port: u16) -> Vec<IpAddr> {
    match host.ip() {
        Some(ip) => vec![ip],
        None => r.resolve(host.as_str(), port).await.unwrap(),
    }
}

#[tokio::test]
async fn bypass_forms_are_denied_without_opening_a_socket() {
    assert!(BYPASS_TABLE.len() >= 25);
    let listener = Counting::start("127.0.0.1").await;
    let port = listener.addr.port();
    let static_resolver = resolver();
    let dialer = Dialer::new(Arc::new(static_resolver.clone()));
    let (mut refused, mut blocked) = (0, 0);
    for &(input, pol, expect) in BYPASS_TABLE {
        let row = format!("{input:?} under {pol:?}");
        let parsed = Host::parse(input);
        match expect {
            Refused => {
                assert!(parsed.is_err(), "{row}: parsed as {parsed:?}");
                refused += 1;
            }
            Blocked(addr, why) => {
                let host = parsed.unwrap_or_else(|e| panic!("{row}: {e}"));
                let policy = pol.policy();
                // Safety net: nothing but loopback or a denied address could ever be dialled.
                for a in reachable(&static_resolver, &host, port).await {
                    assert!(
                        canonical(a).is_loopback() || policy.check(a).is_err(),
                        "{row}: {a} would be dialled"
                    );
                }
                let deadline = Instant::now() + Duration::from_millis(500);
                let err = dialer
                    .dial(&host, port, &policy, deadline)
                    .await
                    .expect_err(&row);
                let DialError::Blocked(denial) = &err else {
                    panic!("{row}: {err:?}");
                };
                assert_eq!(denial.addr, ip(addr), "{row}");
                let got = match denial.reason {
                    DenyReason::Always(a) => Why::Always(a),
                    DenyReason::Denied(_) => Denied,
                    DenyReason::NotAllowed => NotAllowed,
                    ref other => panic!("{row}: {other:?}"),
                };
                assert_eq!(got, why, "{row}");
                assert!(
                    err.to_string().contains("blocked by policy"),
                    "{row}: {err}"
                );
                blocked += 1;
            }
        }
        assert_eq!(dialer.sockets_opened(), 0, "{row}: a socket was opened");
    }
    assert!(
        refused >= 10 && blocked >= 25,
        "{refused} refused, {blocked} blocked"
    );
    // The listener would have seen any connection: prove it counts by connecting once, allowed.
    // Its accept queue is first in, first out, so an earlier connection would be counted first.
    assert_eq!(listener.accepted(), 0);
    let host = Host::parse("127.0.0.1").unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let ok = dialer
        .dial(&host, port, &Policy::default(), deadline)
        .await
        .unwrap();
    assert_eq!(ok.peer, listener.addr);
    assert_eq!(listener.wait_for(1).await, 1);
    assert_eq!(dialer.sockets_opened(), 1);
}

#[tokio::test]
async fn unknown_and_failing_names_are_dns_errors() {
    let dialer = Dialer::new(Arc::new(resolver()));
    let deadline = Instant::now() + Duration::from_secs(1);
    let host = Host::parse("db.invalid").unwrap();
    let err = dialer
        .dial(&host, 5432, &Policy::default(), deadline)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DialError::Dns(ResolveError::NotFound)),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "could not resolve the host: host name not found"
    );
    let host = Host::parse("down.test").unwrap();
    let err = dialer
        .dial(&host, 5432, &Policy::default(), deadline)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DialError::Dns(ResolveError::Failed(_))),
        "{err:?}"
    );
    assert_eq!(dialer.sockets_opened(), 0);
}

#[tokio::test]
async fn an_allowed_name_connects_to_the_checked_address() {
    let listener = Counting::start("127.0.0.1").await;
    let dialer: Arc<dyn Connect> = Arc::new(Dialer::new(Arc::new(resolver())));
    let host = Host::parse("ok.test").unwrap();
    let policy = policy(&["127.0.0.0/8"], &["10.0.0.0/8"]);
    let deadline = Instant::now() + Duration::from_secs(2);
    let dialed = dialer
        .connect(&host, listener.addr.port(), &policy, deadline)
        .await
        .unwrap();
    assert_eq!(dialed.peer, listener.addr);
    assert_eq!(dialed.stream.peer_addr().unwrap(), listener.addr);
    assert!(dialed.stream.nodelay().unwrap());
    assert!(dialed.connect < Duration::from_secs(1));
    assert_eq!(listener.wait_for(1).await, 1);
}

/// A loopback port with nothing listening: bound, then closed.
async fn closed_port(bind: &str) -> SocketAddr {
    let l = TcpListener::bind((ip(bind), 0)).await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let addr = closed_port("127.0.0.1").await;
    let dialer = Dialer::new(Arc::new(StaticResolver::new()));
    let host = Host::from_ip(addr.ip());
    let deadline = Instant::now() + Duration::from_secs(2);
    let err = dialer
        .dial(&host, addr.port(), &Policy::default(), deadline)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DialError::Refused { addr: a } if a == addr),
        "{err:?}"
    );
}

#[tokio::test]
async fn no_answer_times_out_within_the_deadline() {
    let proxy = FaultProxy::start(Fault::NoAnswer).await.unwrap();
    let dialer = Dialer::new(Arc::new(StaticResolver::new()));
    let host = Host::from_ip(proxy.addr().ip());
    let budget = Duration::from_millis(300);
    let started = Instant::now();
    let deadline = started + budget;
    let err = dialer
        .dial(&host, proxy.port(), &Policy::default(), deadline)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            DialError::Timeout {
                step: Step::Connect
            }
        ),
        "{err:?}"
    );
    assert!(took >= budget - Duration::from_millis(5), "{took:?}");
    assert!(took <= budget + Duration::from_millis(50), "{took:?}");
}

#[tokio::test]
async fn a_stalled_resolver_times_out_within_the_deadline() {
    let dialer = Dialer::new(Arc::new(StaticResolver::new().with_hang("slow.test")));
    let host = Host::parse("slow.test").unwrap();
    let started = Instant::now();
    let err = dialer
        .dial(
            &host,
            5432,
            &Policy::default(),
            started + Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DialError::Timeout {
                step: Step::Resolve
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() <= Duration::from_millis(250));
}

#[tokio::test]
async fn addresses_are_tried_in_order_until_one_answers() {
    let listener = Counting::start("127.0.0.1").await;
    let port = listener.addr.port();
    // Nothing listens on 127.0.0.2 at that port: the first attempt is refused.
    let r = StaticResolver::new().with("two.test", &[ip("127.0.0.2"), ip("127.0.0.1")]);
    let dialer = Dialer::new(Arc::new(r));
    let host = Host::parse("two.test").unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let dialed = dialer
        .dial(&host, port, &Policy::default(), deadline)
        .await
        .unwrap();
    assert_eq!(dialed.peer, listener.addr);
    assert_eq!(dialer.sockets_opened(), 2);
    assert_eq!(listener.wait_for(1).await, 1);

    // All refused: the last address is reported.
    let closed = closed_port("127.0.0.1").await;
    let r = StaticResolver::new().with("none.test", &[ip("127.0.0.2"), ip("127.0.0.1")]);
    let dialer = Dialer::new(Arc::new(r));
    let host = Host::parse("none.test").unwrap();
    let err = dialer
        .dial(&host, closed.port(), &Policy::default(), deadline)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DialError::Refused { addr } if addr == closed),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_silent_address_gives_way_to_the_next_after_the_connect_timeout() {
    let proxy = FaultProxy::start(Fault::NoAnswer).await.unwrap();
    // Same port on another loopback address, listening.
    let second = TcpListener::bind((ip("127.0.0.2"), proxy.port()))
        .await
        .unwrap();
    let listener = Counting::serve(second);
    let r = StaticResolver::new().with("slow-then-ok.test", &[ip("127.0.0.1"), ip("127.0.0.2")]);
    let dialer = Dialer::new(Arc::new(r)).with_connect_timeout(Duration::from_millis(150));
    let host = Host::parse("slow-then-ok.test").unwrap();
    let started = Instant::now();
    let dialed = dialer
        .dial(
            &host,
            proxy.port(),
            &Policy::default(),
            started + Duration::from_secs(3),
        )
        .await
        .unwrap();
    assert_eq!(dialed.peer, listener.addr);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(145) && took < Duration::from_millis(600),
        "{took:?}"
    );
    assert_eq!(listener.wait_for(1).await, 1);
}
