//! The one dialer: every TCP connection that leaves the process (tests, the monitor, pools) is
//! opened here, after the target policy has approved the exact address (SECURITY.md S14, S22).
//!
//! # What it owns, and what it must never do
//!
//! This module owns name resolution (through a [`Resolver`]), the policy check ([`Policy`]) and
//! the socket. It never speaks PostgreSQL and never does TLS: the caller hands
//! [`Dialed::stream`] to `tokio_postgres::Config::connect_raw` and verifies the certificate
//! against the host name the user gave, not the IP dialled (PROBE-NOTES.md). It must never open a
//! socket to an address the policy has not approved, and never wait without a deadline.
//!
//! # The steps of [`Dialer::dial`]
//!
//! 1. **Resolve once.** An IP literal is used as is (a [`Host`] only holds canonical literals, so
//!    `2130706433`, `0x7f.1`, `0177.0.0.1` and `127.1` never get this far: they are refused when
//!    the host is parsed, as are host lists, unix-socket paths, URLs and `host:port`). A name goes
//!    through the dialer's [`Resolver`], once, bounded by the deadline. The addresses dialled are
//!    exactly the ones checked: nothing resolves the name again later, so DNS rebinding between
//!    check and connect is impossible.
//! 2. **Check every address.** If *any* resolved address is denied, the whole dial is refused
//!    ([`DialError::Blocked`]) before a socket exists. Skipping the denied ones and dialling the
//!    rest would be friendlier, but a name that resolves to both a public and a forbidden address
//!    is the signature of a rebinding attack or a misconfiguration, and either deserves a clear
//!    refusal rather than a connection that works or not depending on the order of the answer.
//! 3. **Connect** to the checked addresses in order until one accepts, each attempt bounded by
//!    the earlier of the deadline and the connect timeout, with `TCP_NODELAY` set. A refused
//!    attempt moves on to the next address; if all fail, the last failure is reported (a
//!    [`DialError::Timeout`] if the deadline ran out).
//!
//! # The policy
//!
//! Always denied, whatever the admin allows (see [`AlwaysDenied`] and [`CLOUD_METADATA`]):
//! unspecified (`0.0.0.0/8`, `::`), multicast (`224.0.0.0/4`, `ff00::/8`), broadcast and reserved
//! (`240.0.0.0/4`, which holds `255.255.255.255`), link-local (`169.254.0.0/16`, `fe80::/10`) and
//! cloud metadata endpoints. Then, if the admin's `allow_cidrs` is not empty, the address must be
//! in one; then it must be in none of `deny_cidrs`. Loopback is *not* always denied: local
//! databases and tests dial it; an admin denies `127.0.0.0/8` and `::1/128` by policy.
//!
//! IPv6 spellings of IPv4 addresses (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
//! `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) are checked as the IPv4 address they embed as
//! well as themselves, so a deny rule written for IPv4 cannot be bypassed by writing the address
//! in IPv6. Teredo (`2001::/32`) and local-use NAT64 (`64:ff9b:1::/48`) addresses are checked as
//! IPv6 only; an admin who runs such a network can deny them by CIDR.
//!
//! Networks are a small [`Cidr`] type of our own rather than the `ipnet` crate: the policy needs
//! parsing, `contains` and the mapped-IPv6-to-IPv4 normalisation, about forty lines, with the same
//! grammar as the admin API's `normalise_cidr`, and one dependency less on the security path.
//!
//! # The connect step as a trait object
//!
//! The prober and pools hold an `Arc<dyn` [`Connect`]`>` (deadpool-postgres's `Connect`,
//! STYLE.md), which [`Dialer`] implements; tests swap in a fake. The policy is an argument of
//! every call rather than part of the dialer, because it is data the admin changes at run time
//! and a connection must never be opened without one.

mod policy;
mod resolve;

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::model::Host;

pub use policy::{AlwaysDenied, CLOUD_METADATA, Cidr, Denial, DenyReason, Policy, canonical};
pub use resolve::{ResolveError, Resolver, StaticFailure, StaticResolver, SystemResolver};

/// The step of a dial that ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Resolving the host name.
    Resolve,
    /// Opening the TCP connection.
    Connect,
}

impl Step {
    /// A short lowercase name: `resolve` or `connect`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Resolve => "resolve",
            Self::Connect => "connect",
        }
    }
}

/// Why a dial failed. The prober maps each case to one failure kind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The name did not resolve (`dns_failed`).
    #[error("could not resolve the host: {0}")]
    Dns(#[source] ResolveError),
    /// A resolved or literal address is denied by the target policy (`blocked_by_policy`); no
    /// socket was opened.
    #[error("{0}")]
    Blocked(#[source] Denial),
    /// The target actively refused the connection (`connection_refused`); `addr` is the last
    /// address tried.
    #[error("connection to {addr} was refused")]
    Refused {
        /// The last address tried.
        addr: SocketAddr,
    },
    /// The deadline (or the connect timeout) passed during `step` (`timeout`).
    #[error("timed out during {}", .step.as_str())]
    Timeout {
        /// The step that ran out of time.
        step: Step,
    },
    /// Any other socket failure (network unreachable, no route, …) on the last address tried.
    #[error("could not connect to {addr}")]
    Io {
        /// The last address tried.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// An open, policy-checked TCP connection, ready for `connect_raw`.
#[derive(Debug)]
pub struct Dialed {
    /// The connected socket, with `TCP_NODELAY` set.
    pub stream: TcpStream,
    /// The address connected to; it passed the policy.
    pub peer: SocketAddr,
    /// Time spent resolving (zero for an IP literal).
    pub resolve: Duration,
    /// Time spent connecting, over every address tried.
    pub connect: Duration,
}

/// The connect step of the prober and pools, as a trait object (`Arc<dyn Connect>`).
///
/// The one real implementation is [`Dialer`]; tests may substitute their own.
#[async_trait]
pub trait Connect: fmt::Debug + Send + Sync {
    /// Opens a TCP connection to `host:port` if `policy` allows every address of `host`, giving up
    /// at `deadline`.
    ///
    /// # Errors
    /// See [`DialError`].
    async fn connect(
        &self,
        host: &Host,
        port: u16,
        policy: &Policy,
        deadline: Instant,
    ) -> Result<Dialed, DialError>;
}

/// The one dialer: resolve once, check every address, connect to a checked address.
///
/// Cheap to clone; clones share the resolver and the socket counter.
#[derive(Clone)]
pub struct Dialer {
    resolver: Arc<dyn Resolver>,
    connect_timeout: Duration,
    sockets: Arc<AtomicU64>,
}

impl Dialer {
    /// The default bound of one connection attempt: 5 s (each attempt is also bounded by the
    /// caller's deadline, which is usually shorter).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A dialer resolving names through `resolver`, with the default connect timeout.
    pub fn new(resolver: Arc<dyn Resolver>) -> Self {
        Self {
            resolver,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            sockets: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A dialer using the operating system's resolver ([`SystemResolver::default`]).
    pub fn system() -> Self {
        Self::new(Arc::new(SystemResolver::default()))
    }

    /// Sets the bound of each connection attempt. Default: [`Self::DEFAULT_CONNECT_TIMEOUT`].
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many sockets this dialer (and its clones) has opened so far, for metrics and for
    /// tests proving a refusal opened none.
    pub fn sockets_opened(&self) -> u64 {
        self.sockets.load(Ordering::Relaxed)
    }

    /// Resolves `host` once and checks every address against `policy`, giving up at `deadline`;
    /// returns the addresses to dial, in order, without duplicates. Opens no socket.
    ///
    /// # Errors
    /// [`DialError::Dns`], [`DialError::Timeout`] with [`Step::Resolve`], or
    /// [`DialError::Blocked`] for the first denied address.
    pub async fn resolve_checked(
        &self,
        host: &Host,
        port: u16,
        policy: &Policy,
        deadline: Instant,
    ) -> Result<Vec<IpAddr>, DialError> {
        let addrs = match host.ip() {
            Some(ip) => vec![ip],
            None => {
                let lookup = self.resolver.resolve(host.as_str(), port);
                match tokio::time::timeout_at(deadline, lookup).await {
                    Err(_) | Ok(Err(ResolveError::Timeout)) => {
                        return Err(DialError::Timeout {
                            step: Step::Resolve,
                        });
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(
                            host = host.as_str(),
                            error = %e,
                            "host name did not resolve"
                        );
                        return Err(DialError::Dns(e));
                    }
                    Ok(Ok(addrs)) => addrs,
                }
            }
        };
        let mut seen = HashSet::with_capacity(addrs.len());
        let addrs: Vec<IpAddr> = addrs.into_iter().filter(|a| seen.insert(*a)).collect();
        if addrs.is_empty() {
            return Err(DialError::Dns(ResolveError::NotFound));
        }
        tracing::trace!(host = host.as_str(), addresses = addrs.len(), "resolved");
        for ip in &addrs {
            if let Err(denial) = policy.check(*ip) {
                tracing::debug!(
                    host = host.as_str(),
                    address = %ip,
                    reason = %denial,
                    "dial refused by the target policy"
                );
                return Err(DialError::Blocked(denial));
            }
        }
        Ok(addrs)
    }

    /// Resolves `host` once, checks every address against `policy`, and connects to the first
    /// checked address that accepts, giving up at `deadline`.
    ///
    /// # Errors
    /// [`DialError::Dns`] or [`DialError::Blocked`] (no socket opened), [`DialError::Refused`],
    /// [`DialError::Timeout`] (resolve or connect) or [`DialError::Io`].
    pub async fn dial(
        &self,
        host: &Host,
        port: u16,
        policy: &Policy,
        deadline: Instant,
    ) -> Result<Dialed, DialError> {
        let started = Instant::now();
        let addrs = self.resolve_checked(host, port, policy, deadline).await?;
        let resolved = Instant::now();
        let mut last = DialError::Timeout {
            step: Step::Connect,
        };
        for ip in addrs {
            let now = Instant::now();
            if now >= deadline {
                return Err(DialError::Timeout {
                    step: Step::Connect,
                });
            }
            let addr = SocketAddr::new(ip, port);
            let attempt_deadline = deadline.min(now + self.connect_timeout);
            match self.connect_one(addr, attempt_deadline).await {
                Ok(stream) => {
                    return Ok(Dialed {
                        stream,
                        peer: addr,
                        resolve: resolved - started,
                        connect: resolved.elapsed(),
                    });
                }
                Err(e) => {
                    tracing::trace!(address = %addr, error = %e, "connect attempt failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// One attempt on a checked address.
    async fn connect_one(
        &self,
        addr: SocketAddr,
        deadline: Instant,
    ) -> Result<TcpStream, DialError> {
        let io_error = |source| DialError::Io { addr, source };
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(io_error)?;
        self.sockets.fetch_add(1, Ordering::Relaxed);
        socket.set_nodelay(true).map_err(io_error)?;
        match tokio::time::timeout_at(deadline, socket.connect(addr)).await {
            Err(_) => Err(DialError::Timeout {
                step: Step::Connect,
            }),
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Err(DialError::Refused { addr })
            }
            Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Err(DialError::Timeout {
                step: Step::Connect,
            }),
            Ok(Err(source)) => Err(DialError::Io { addr, source }),
        }
    }
}

impl fmt::Debug for Dialer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dialer")
            .field("resolver", &self.resolver)
            .field("connect_timeout", &self.connect_timeout)
            .field("sockets_opened", &self.sockets_opened())
            .finish()
    }
}

#[async_trait]
impl Connect for Dialer {
    async fn connect(
        &self,
        host: &Host,
        port: u16,
        policy: &Policy,
        deadline: Instant,
    ) -> Result<Dialed, DialError> {
        self.dial(host, port, policy, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_denied_literal_opens_no_socket() {
        let dialer = Dialer::new(Arc::new(StaticResolver::new()));
        let policy = Policy::new(vec![], vec!["127.0.0.0/8".parse().unwrap()]);
        let host = Host::parse("127.0.0.1").unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        let err = dialer.dial(&host, 1, &policy, deadline).await.unwrap_err();
        assert!(matches!(err, DialError::Blocked(_)), "{err:?}");
        assert_eq!(dialer.sockets_opened(), 0);
        assert_eq!(
            err.to_string(),
            "address 127.0.0.1 is blocked by policy (in the denied network 127.0.0.0/8)"
        );
    }

    #[tokio::test]
    async fn a_resolve_past_the_deadline_is_a_resolve_timeout() {
        let dialer = Dialer::new(Arc::new(StaticResolver::new().with_hang("slow.test")));
        let host = Host::parse("slow.test").unwrap();
        let deadline = Instant::now() + Duration::from_millis(50);
        let err = dialer
            .dial(&host, 5432, &Policy::default(), deadline)
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
        assert!(Instant::now() < deadline + Duration::from_millis(50));
        assert_eq!(dialer.sockets_opened(), 0);
    }

    #[test]
    fn connect_is_object_safe() {
        let dialer: Arc<dyn Connect> = Arc::new(Dialer::new(Arc::new(StaticResolver::new())));
        assert!(format!("{dialer:?}").starts_with("Dialer"));
    }
}
