//! Fault proxies on loopback: a listener that never answers, one that accepts and stalls, and
//! forwarders to an upstream that stall, drip or reset part-way.
//!
//! This module owns the proxies' sockets and tokio tasks and counts every socket it holds, so a
//! test can prove that the code under test hung up (the count returns to
//! [`FaultProxy::idle_sockets`]). It never dials anything but a loopback upstream.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{Error, ErrorKind, Result};

/// The default pause between two bytes of [`Fault::Drip`]: 1 s.
pub const DEFAULT_DRIP_INTERVAL: Duration = Duration::from_secs(1);

/// How long a forwarding proxy waits for its upstream to accept before giving up on a client.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which way bytes flow through a forwarding proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client that dialled the proxy to the upstream.
    ClientToServer,
    /// From the upstream back to the client.
    ServerToClient,
}

/// What a [`FaultProxy`] does to the connections it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Never answers a SYN: the listener's accept queue (backlog 0) is filled by one connection
    /// the proxy never accepts, so the kernel drops new SYNs and a client's connect times out
    /// rather than being refused.
    NoAnswer,
    /// Accepts, reads and discards everything, never writes; closes when the client closes.
    AcceptAndStall,
    /// Forwards both ways unchanged; the control case, and a way to count a client's sockets.
    Forward {
        /// The loopback address to forward to.
        upstream: SocketAddr,
    },
    /// Forwards both ways until `after_bytes` have gone in `direction`, then forwards nothing
    /// more that way (later bytes are read and discarded) and keeps the client connected until it
    /// hangs up, even if the upstream closes.
    StallAfter {
        /// The loopback address to forward to.
        upstream: SocketAddr,
        /// The direction that stalls.
        direction: Direction,
        /// Bytes forwarded in `direction` before the stall; 0 stalls at once.
        after_bytes: u64,
    },
    /// Forwards client→server unchanged and server→client one byte per `interval`.
    Drip {
        /// The loopback address to forward to.
        upstream: SocketAddr,
        /// The pause after each byte; [`Fault::drip`] uses [`DEFAULT_DRIP_INTERVAL`].
        interval: Duration,
    },
    /// Forwards both ways until more than `after_bytes` would go in `direction`, then resets the
    /// client connection (SO_LINGER 0 then close, so the client sees ECONNRESET).
    ResetAfter {
        /// The loopback address to forward to.
        upstream: SocketAddr,
        /// The direction whose byte count triggers the reset.
        direction: Direction,
        /// Bytes forwarded in `direction` before the reset; 0 resets on the first byte.
        after_bytes: u64,
    },
}

impl Fault {
    /// [`Fault::Drip`] with the default interval of 1 s.
    pub fn drip(upstream: SocketAddr) -> Self {
        Fault::Drip {
            upstream,
            interval: DEFAULT_DRIP_INTERVAL,
        }
    }

    fn upstream(&self) -> Option<SocketAddr> {
        match *self {
            Fault::NoAnswer | Fault::AcceptAndStall => None,
            Fault::Forward { upstream }
            | Fault::StallAfter { upstream, .. }
            | Fault::Drip { upstream, .. }
            | Fault::ResetAfter { upstream, .. } => Some(upstream),
        }
    }

    /// The rule for each direction: (client→server, server→client).
    fn policies(&self) -> (Policy, Policy) {
        let split = |direction: Direction, policy: Policy| match direction {
            Direction::ClientToServer => (policy, Policy::Forward),
            Direction::ServerToClient => (Policy::Forward, policy),
        };
        match *self {
            Fault::NoAnswer | Fault::AcceptAndStall | Fault::Forward { .. } => {
                (Policy::Forward, Policy::Forward)
            }
            Fault::StallAfter {
                direction,
                after_bytes,
                ..
            } => split(direction, Policy::StallAfter(after_bytes)),
            Fault::Drip { interval, .. } => (Policy::Forward, Policy::Drip(interval)),
            Fault::ResetAfter {
                direction,
                after_bytes,
                ..
            } => split(direction, Policy::ResetAfter(after_bytes)),
        }
    }
}

/// A running fault proxy on `127.0.0.1`; dropping it closes every socket it holds and stops its
/// tasks.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    fault: Fault,
    counters: Arc<Counters>,
    idle: usize,
    accept_task: Option<JoinHandle<()>>,
    // NoAnswer only: the listener and the filler connection; dropped with the proxy.
    _held: Option<(Socket, std::net::TcpStream, SocketGuard, SocketGuard)>,
}

impl FaultProxy {
    /// Binds a free `127.0.0.1` port and starts serving `fault`; must be called inside a tokio
    /// runtime, which then runs the proxy's tasks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] outside a tokio runtime or for a non-loopback upstream,
    /// [`ErrorKind::Io`] if binding or filling the listener fails.
    pub async fn start(fault: Fault) -> Result<FaultProxy> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::with_source(
                ErrorKind::InvalidInput,
                "fault proxies need a tokio runtime",
                e,
            )
        })?;
        if let Some(upstream) = fault.upstream() {
            if !upstream.ip().is_loopback() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "upstream {upstream} is not a loopback address; proxies dial loopback only"
                    ),
                ));
            }
        }
        let counters = Arc::new(Counters::default());
        if fault == Fault::NoAnswer {
            let (listener, filler, addr) = full_listener()?;
            let guards = (SocketGuard::new(&counters), SocketGuard::new(&counters));
            return Ok(FaultProxy {
                addr,
                fault,
                idle: 2,
                counters,
                accept_task: None,
                _held: Some((listener, filler, guards.0, guards.1)),
            });
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| Error::io("binding the proxy on 127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the proxy's address", e))?;
        let guard = SocketGuard::new(&counters);
        let task = runtime.spawn(accept_loop(listener, guard, fault, Arc::clone(&counters)));
        Ok(FaultProxy {
            addr,
            fault,
            idle: 1,
            counters,
            accept_task: Some(task),
            _held: None,
        })
    }

    /// The address clients dial: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The fault this proxy serves.
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// Every socket the proxy holds right now: its listener, the [`Fault::NoAnswer`] filler, and
    /// each accepted client socket and upstream socket.
    pub fn open_sockets(&self) -> usize {
        self.counters.open.load(Ordering::SeqCst)
    }

    /// What [`Self::open_sockets`] is with no client connected: 1 (the listener), or 2 for
    /// [`Fault::NoAnswer`] (listener and filler).
    pub fn idle_sockets(&self) -> usize {
        self.idle
    }

    /// How many client connections the proxy has accepted so far (always 0 for
    /// [`Fault::NoAnswer`]).
    pub fn accepted(&self) -> usize {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Waits until [`Self::open_sockets`] is back at [`Self::idle_sockets`], checking every
    /// 10 ms; returns whether it got there within `within`.
    pub async fn wait_idle(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.open_sockets() == self.idle {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Aborting the accept task drops its listener and its JoinSet, which aborts every
        // connection task and so closes their sockets.
        if let Some(task) = self.accept_task.take() {
            task.abort();
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    open: AtomicUsize,
    accepted: AtomicUsize,
}

/// Counts one open socket for as long as it lives.
#[derive(Debug)]
struct SocketGuard(Arc<Counters>);

impl SocketGuard {
    fn new(counters: &Arc<Counters>) -> Self {
        counters.open.fetch_add(1, Ordering::SeqCst);
        SocketGuard(Arc::clone(counters))
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A listener with backlog 0 whose one queue slot holds a connection nobody accepts.
fn full_listener() -> Result<(Socket, std::net::TcpStream, SocketAddr)> {
    let err = |what: &str| {
        let what = what.to_owned();
        move |e| Error::io(format!("no-answer listener: {what}"), e)
    };
    let socket =
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(err("socket"))?;
    let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    socket.bind(&bind.into()).map_err(err("bind"))?;
    socket.listen(0).map_err(err("listen"))?;
    let addr = socket
        .local_addr()
        .map_err(err("local address"))?
        .as_socket()
        .ok_or_else(|| Error::new(ErrorKind::Io, "no-answer listener has no inet address"))?;
    let filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(err("filling the accept queue"))?;
    Ok((socket, filler, addr))
}

async fn accept_loop(
    listener: TcpListener,
    _listener_guard: SocketGuard,
    fault: Fault,
    counters: Arc<Counters>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    let guard = SocketGuard::new(&counters);
                    counters.accepted.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve(client, guard, fault, Arc::clone(&counters)));
                }
                // Out of file descriptors and the like: pause instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(
    mut client: TcpStream,
    client_guard: SocketGuard,
    fault: Fault,
    counters: Arc<Counters>,
) {
    let _ = client.set_nodelay(true);
    match fault.upstream() {
        None => discard_until_closed(&mut client).await,
        Some(upstream) => {
            let connect =
                tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream));
            if let Ok(Ok(upstream)) = connect.await {
                let upstream_guard = SocketGuard::new(&counters);
                let _ = upstream.set_nodelay(true);
                relay(client, upstream, fault).await;
                drop(upstream_guard);
            }
        }
    }
    drop(client_guard);
}

/// Reads and throws away until the peer closes (or the socket fails).
async fn discard_until_closed(stream: &mut TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Policy {
    Forward,
    StallAfter(u64),
    Drip(Duration),
    ResetAfter(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    ClientClosed,
    UpstreamClosed,
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Client,
    Upstream,
}

async fn relay(mut client: TcpStream, mut upstream: TcpStream, fault: Fault) {
    let (to_server, to_client) = fault.policies();
    let stalled = AtomicBool::new(false);
    let end = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        tokio::select! {
            end = pump(client_read, upstream_write, to_server, Source::Client, &stalled) => end,
            end = pump(upstream_read, client_write, to_client, Source::Upstream, &stalled) => end,
        }
    };
    match end {
        End::Reset => {
            // Linger 0 turns the close into an RST: the client reads ECONNRESET.
            let _ = SockRef::from(&client).set_linger(Some(Duration::ZERO));
        }
        End::UpstreamClosed if stalled.load(Ordering::SeqCst) => {
            // A stalled connection stays silent for the client until the client gives up.
            drop(upstream);
            discard_until_closed(&mut client).await;
        }
        End::ClientClosed | End::UpstreamClosed => {}
    }
}

/// Copies `src` to `dst` under `policy` until one side closes or the policy resets.
async fn pump<R, W>(
    mut src: R,
    mut dst: W,
    policy: Policy,
    source: Source,
    stalled: &AtomicBool,
) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (src_closed, dst_closed) = match source {
        Source::Client => (End::ClientClosed, End::UpstreamClosed),
        Source::Upstream => (End::UpstreamClosed, End::ClientClosed),
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent: u64 = 0;
    if matches!(policy, Policy::StallAfter(0)) {
        stalled.store(true, Ordering::SeqCst);
    }
    loop {
        let n = match src.read(&mut buf).await {
            Ok(0) | Err(_) => return src_closed,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let result = match policy {
            Policy::Forward => dst.write_all(chunk).await,
            Policy::StallAfter(limit) => {
                let allowed = allowance(limit, sent, n);
                sent += allowed as u64;
                let result = dst.write_all(&chunk[..allowed]).await;
                if sent >= limit {
                    stalled.store(true, Ordering::SeqCst);
                }
                result
            }
            Policy::ResetAfter(limit) => {
                let allowed = allowance(limit, sent, n);
                sent += allowed as u64;
                if let Err(e) = dst.write_all(&chunk[..allowed]).await {
                    Err(e)
                } else if allowed < n {
                    return End::Reset;
                } else {
                    Ok(())
                }
            }
            Policy::Drip(interval) => drip(&mut dst, chunk, interval).await,
        };
        if result.is_err() {
            return dst_closed;
        }
    }
}

/// How many of `n` new bytes still fit under `limit` when `sent` already went.
fn allowance(limit: u64, sent: u64, n: usize) -> usize {
    let left = limit.saturating_sub(sent);
    usize::try_from(left).map_or(n, |left| left.min(n))
}

async fn drip<W: AsyncWrite + Unpin>(
    dst: &mut W,
    chunk: &[u8],
    interval: Duration,
) -> io::Result<()> {
    for byte in chunk {
        dst.write_all(std::slice::from_ref(byte)).await?;
        dst.flush().await?;
        tokio::time::sleep(interval).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_caps_at_limit() {
        assert_eq!(allowance(10, 0, 4), 4);
        assert_eq!(allowance(10, 8, 4), 2);
        assert_eq!(allowance(10, 10, 4), 0);
        assert_eq!(allowance(0, 0, 4), 0);
        assert_eq!(allowance(u64::MAX, 5, 4), 4);
    }

    #[test]
    fn policies_put_the_fault_on_the_chosen_direction() {
        let upstream = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
        let fault = Fault::StallAfter {
            upstream,
            direction: Direction::ServerToClient,
            after_bytes: 3,
        };
        assert!(matches!(
            fault.policies(),
            (Policy::Forward, Policy::StallAfter(3))
        ));
        let fault = Fault::ResetAfter {
            upstream,
            direction: Direction::ClientToServer,
            after_bytes: 0,
        };
        assert!(matches!(
            fault.policies(),
            (Policy::ResetAfter(0), Policy::Forward)
        ));
        assert!(matches!(
            Fault::drip(upstream).policies(),
            (Policy::Forward, Policy::Drip(d)) if d == DEFAULT_DRIP_INTERVAL
        ));
    }
}
