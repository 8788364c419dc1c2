//! The inspector stream: a thin wrapper under tokio-postgres that reads the PostgreSQL message
//! framing going both ways, to time the steps of a connection and to refuse a password message
//! after a cleartext or md5 request on an unencrypted stream (SECURITY.md S13).
//!
//! One wrapper sits around the raw socket (it sees the `SSLRequest` and its one-byte answer, then
//! steps aside once TLS starts) and one above TLS (through [`ProbeTls`]); both write their
//! observations into one shared [`Trace`] per attempt. It never changes a byte that passes, never
//! buffers, and never keeps a copy of what it reads: a peer's bytes are parsed for framing and
//! forgotten.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

use super::auth::{AuthSettings, Authenticate, Refusal};
use super::tls;

/// The request code of an `SSLRequest` (1234 << 16 | 5679).
pub(crate) const SSL_REQUEST_CODE: u32 = 80_877_103;

/// The largest backend message the probe accepts. The server never sends more in answer to a
/// startup or to the probe query; a length above it means the peer is not PostgreSQL (an HTTP
/// server's `HTTP/1.1` reads as a 1.4 GB `H` message).
const MAX_BACKEND_MESSAGE: usize = 16 * 1024 * 1024;

/// Backend message types of protocol 3.0.
const BACKEND_TYPES: &[u8] = b"123ACDEGHIKNRSTVWZcdnpstv";

/// The first message a server sends after the startup message: authentication, error, notice
/// or protocol-version negotiation.
const FIRST_BACKEND_TYPES: &[u8] = b"RENv";

/// Authentication request codes that make the client send a password (cleartext, md5).
const PASSWORD_REQUESTS: [u32; 2] = [3, 5];

/// What one connection attempt has shown so far. Instants mark the ends of steps.
#[derive(Debug, Default, Clone)]
pub(crate) struct Trace {
    /// When the TCP connection was ready.
    pub(crate) tcp_done: Option<Instant>,
    /// When the `SSLRequest` was written.
    pub(crate) ssl_requested: Option<Instant>,
    /// The server's one-byte answer to the `SSLRequest` and when it came.
    pub(crate) ssl_answer: Option<(u8, Instant)>,
    /// When the TLS handshake finished.
    pub(crate) tls_done: Option<Instant>,
    /// The negotiated TLS protocol version (`TLSv1.3`), read from the client's side.
    pub(crate) tls_protocol: Option<String>,
    /// The negotiated cipher suite's IANA name, read from the client's side.
    pub(crate) tls_cipher: Option<String>,
    /// When the first authentication request (`R`) arrived.
    pub(crate) first_auth: Option<Instant>,
    /// The code of the last authentication request.
    pub(crate) auth_code: Option<u32>,
    /// When the first `ReadyForQuery` arrived.
    pub(crate) ready: Option<Instant>,
    /// Whether the cleartext guard refused to write a password.
    pub(crate) guard_tripped: bool,
    /// Whether the peer sent bytes that are not PostgreSQL framing.
    pub(crate) not_postgres: bool,
    /// Why the authenticator stopped answering the server (`auth.rs`), if it did.
    pub(crate) refusal: Option<Refusal>,
}

/// The trace shared by the inspectors of one attempt.
pub(crate) type SharedTrace = Arc<Mutex<Trace>>;

/// Locks a trace; a poisoned lock still holds usable observations.
pub(crate) fn lock(trace: &SharedTrace) -> MutexGuard<'_, Trace> {
    trace
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An event found while parsing a byte stream's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// A typed message starts at this offset of the fed slice.
    Typed { offset: usize, kind: u8 },
    /// An untyped message (startup, SSLRequest, …) with this code finished its 8-byte header.
    Untyped { code: u32 },
    /// An authentication request with this code.
    Auth { code: u32 },
}

/// Frontend framing: the first message (and the one after an `SSLRequest`) has no type byte.
#[derive(Debug, Clone, Copy)]
struct FrontendParser {
    expect_untyped: bool,
    untyped: bool,
    header: [u8; 8],
    have: usize,
    remaining: usize,
}

impl FrontendParser {
    fn new() -> Self {
        Self {
            expect_untyped: true,
            untyped: false,
            header: [0; 8],
            have: 0,
            remaining: 0,
        }
    }

    /// Feeds written bytes, reporting message starts.
    fn feed(&mut self, data: &[u8], mut on: impl FnMut(Event)) {
        let mut i = 0;
        while i < data.len() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len() - i);
                self.remaining -= take;
                i += take;
                continue;
            }
            if self.have == 0 {
                self.untyped = self.expect_untyped;
                if !self.untyped {
                    on(Event::Typed {
                        offset: i,
                        kind: data[i],
                    });
                }
            }
            self.header[self.have] = data[i];
            self.have += 1;
            i += 1;
            let header_len = if self.untyped { 8 } else { 5 };
            if self.have < header_len {
                continue;
            }
            let len_at = usize::from(!self.untyped);
            let len = be_u32(&self.header[len_at..len_at + 4]) as usize;
            let consumed = if self.untyped { 8 } else { 4 };
            self.remaining = len.saturating_sub(consumed);
            self.have = 0;
            if self.untyped {
                let code = be_u32(&self.header[4..8]);
                // After an SSLRequest comes the startup message, again without a type byte.
                self.expect_untyped = code == SSL_REQUEST_CODE;
                on(Event::Untyped { code });
            }
        }
    }

    /// The offset in `data` where a password message (`p`) would start, if any.
    fn password_offset(&self, data: &[u8]) -> Option<usize> {
        let mut scan = *self;
        let mut found = None;
        scan.feed(data, |event| {
            if let Event::Typed { offset, kind: b'p' } = event {
                found = found.or(Some(offset));
            }
        });
        found
    }
}

/// A backend message's header, `type(1) + length(4, includes itself)`, gathered a byte at a
/// time across reads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BackendHeader {
    bytes: [u8; 5],
    have: usize,
}

impl BackendHeader {
    /// Takes one byte; once the header is whole, its type and length (and it starts over).
    pub(crate) fn push(&mut self, byte: u8) -> Option<(u8, usize)> {
        self.bytes[self.have] = byte;
        self.have += 1;
        if self.have < self.bytes.len() {
            return None;
        }
        self.have = 0;
        Some((self.bytes[0], be_u32(&self.bytes[1..5]) as usize))
    }

    /// Whether no byte of a header is pending (between messages).
    pub(crate) fn is_empty(&self) -> bool {
        self.have == 0
    }
}

/// Backend framing: `type(1) + length(4, includes itself) + body`.
#[derive(Debug, Clone, Copy)]
struct BackendParser {
    header: BackendHeader,
    remaining: usize,
    kind: u8,
    code: [u8; 4],
    code_have: usize,
    messages: u64,
}

/// The peer's bytes are not PostgreSQL framing.
#[derive(Debug)]
struct NotPostgres;

impl BackendParser {
    fn new() -> Self {
        Self {
            header: BackendHeader::default(),
            remaining: 0,
            kind: 0,
            code: [0; 4],
            code_have: 0,
            messages: 0,
        }
    }

    fn feed(&mut self, data: &[u8], mut on: impl FnMut(Event)) -> Result<(), NotPostgres> {
        let mut i = 0;
        while i < data.len() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len() - i);
                if self.kind == b'R' && self.code_have < 4 {
                    let wanted = (4 - self.code_have).min(take);
                    self.code[self.code_have..self.code_have + wanted]
                        .copy_from_slice(&data[i..i + wanted]);
                    self.code_have += wanted;
                    if self.code_have == 4 {
                        on(Event::Auth {
                            code: be_u32(&self.code),
                        });
                    }
                }
                self.remaining -= take;
                i += take;
                continue;
            }
            let byte = data[i];
            i += 1;
            let Some((kind, len)) = self.header.push(byte) else {
                continue;
            };
            let allowed = if self.messages == 0 {
                FIRST_BACKEND_TYPES
            } else {
                BACKEND_TYPES
            };
            if !allowed.contains(&kind) || !(4..=MAX_BACKEND_MESSAGE).contains(&len) {
                return Err(NotPostgres);
            }
            if kind == b'R' && len < 8 {
                return Err(NotPostgres);
            }
            self.messages += 1;
            self.kind = kind;
            self.code_have = 0;
            self.remaining = len - 4;
            // Backend events carry no meaningful offset: only the frontend guard needs one.
            on(Event::Typed { offset: 0, kind });
        }
        Ok(())
    }
}

/// The big-endian `u32` at the start of `bytes` (at least 4 long).
pub(crate) fn be_u32(bytes: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(b)
}

/// Where an inspector sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    /// Around the socket: unencrypted unless TLS starts above it.
    Raw {
        /// Whether to refuse a cleartext or md5 password on this stream.
        guard: bool,
    },
    /// Above TLS.
    Tls,
}

/// A stream wrapper that reads the framing both ways; see the module docs.
#[derive(Debug)]
pub(crate) struct Inspect<S> {
    inner: S,
    trace: SharedTrace,
    layer: Layer,
    frontend: FrontendParser,
    backend: BackendParser,
    awaiting_ssl_answer: bool,
    /// TLS runs above this raw stream, or the connection is ready and `until_ready` is set:
    /// pass bytes through untouched.
    aside: bool,
    /// Step aside at the first `ReadyForQuery`: authentication is over, so the guard has
    /// nothing left to refuse. Pools set it so that a long-lived connection pays nothing for the
    /// inspector and its framing limits (a 16 MiB row is fine once connected).
    until_ready: bool,
}

impl<S> Inspect<S> {
    /// Wraps the raw socket; `guard` refuses cleartext and md5 passwords on it.
    pub(crate) fn raw(inner: S, trace: SharedTrace, guard: bool) -> Self {
        Self::new(inner, trace, Layer::Raw { guard })
    }

    fn new(inner: S, trace: SharedTrace, layer: Layer) -> Self {
        Self {
            inner,
            trace,
            layer,
            frontend: FrontendParser::new(),
            backend: BackendParser::new(),
            awaiting_ssl_answer: false,
            aside: false,
            until_ready: false,
        }
    }

    /// Steps aside at the first `ReadyForQuery` (see the `until_ready` field).
    pub(crate) fn until_ready(mut self) -> Self {
        self.until_ready = true;
        self
    }

    fn observe_read(&mut self, mut data: &[u8]) -> io::Result<()> {
        let now = Instant::now();
        let mut trace = lock(&self.trace);
        if self.awaiting_ssl_answer {
            let Some((&answer, rest)) = data.split_first() else {
                return Ok(());
            };
            self.awaiting_ssl_answer = false;
            trace.ssl_answer = Some((answer, now));
            match answer {
                b'S' => {
                    self.aside = true;
                    return Ok(());
                }
                b'N' => data = rest,
                _ => {
                    trace.not_postgres = true;
                    return Err(not_postgres());
                }
            }
        }
        let mut ready = false;
        let result = self.backend.feed(data, |event| match event {
            Event::Auth { code } => {
                trace.auth_code = Some(code);
                trace.first_auth.get_or_insert(now);
            }
            Event::Typed { kind: b'Z', .. } => {
                trace.ready.get_or_insert(now);
                ready = true;
            }
            _ => {}
        });
        if result.is_err() {
            trace.not_postgres = true;
            return Err(not_postgres());
        }
        if ready && self.until_ready {
            self.aside = true;
        }
        Ok(())
    }

    fn observe_write(&mut self, data: &[u8]) {
        let now = Instant::now();
        let mut ssl_request = false;
        self.frontend.feed(data, |event| {
            if event
                == (Event::Untyped {
                    code: SSL_REQUEST_CODE,
                })
            {
                ssl_request = true;
            }
        });
        if ssl_request && self.layer != Layer::Tls {
            self.awaiting_ssl_answer = true;
            lock(&self.trace).ssl_requested.get_or_insert(now);
        }
    }

    /// How many bytes of `data` may be written: all, or those before a password message the
    /// guard refuses. `Err` when the refused message is first.
    fn guard_limit(&self, data: &[u8]) -> io::Result<usize> {
        let Layer::Raw { guard: true } = self.layer else {
            return Ok(data.len());
        };
        if self.aside {
            return Ok(data.len());
        }
        let asked_for_password = {
            let trace = lock(&self.trace);
            trace
                .auth_code
                .is_some_and(|code| PASSWORD_REQUESTS.contains(&code))
        };
        if !asked_for_password {
            return Ok(data.len());
        }
        match self.frontend.password_offset(data) {
            None => Ok(data.len()),
            Some(0) => {
                lock(&self.trace).guard_tripped = true;
                Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "refused to send a password in cleartext over an unencrypted connection",
                ))
            }
            Some(offset) => Ok(offset),
        }
    }
}

fn not_postgres() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the peer does not speak the PostgreSQL protocol",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Inspect<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.aside {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if !new.is_empty() {
            // The bytes stay in the caller's buffer; only their framing is looked at.
            this.observe_read(new)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inspect<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.aside {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        let limit = this.guard_limit(data)?;
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, &data[..limit]))?;
        this.observe_write(&data[..written]);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The raw stream every attempt starts on: the authenticator over the inspector over the socket.
pub(crate) type RawStream = Authenticate<Inspect<TcpStream>>;

/// The raw stream of an attempt: `guard` refuses cleartext and md5 passwords on it (both in the
/// authenticator and, as a second line, in the inspector).
pub(crate) fn raw_stream(
    socket: TcpStream,
    trace: SharedTrace,
    auth: Arc<AuthSettings>,
    guard: bool,
    until_ready: bool,
) -> RawStream {
    let inspect = Inspect::raw(socket, trace.clone(), guard);
    let inspect = if until_ready {
        inspect.until_ready()
    } else {
        inspect
    };
    Authenticate::raw(inspect, auth, !guard, trace)
}

/// The TLS stream under the upper inspector: tokio-rustls's client stream over the raw one.
pub(crate) struct Tls(tokio_rustls::client::TlsStream<RawStream>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl AsyncRead for Tls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl TlsStream for Authenticate<Inspect<Tls>> {
    /// None: tokio-postgres never authenticates (the authenticator below it does, with the
    /// binding it was given when TLS came up).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// The TLS connector given to tokio-postgres: a rustls handshake for the user's host name (not
/// the dialled IP), with an inspector above the TLS stream, and the handshake's end, protocol
/// and cipher suite recorded. Without a configuration it is never used (tokio-postgres never
/// calls it when the attempt does not ask for TLS).
pub(crate) struct ProbeTls {
    inner: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    trace: SharedTrace,
    auth: Arc<AuthSettings>,
    until_ready: bool,
}

impl std::fmt::Debug for ProbeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeTls")
            .field("enabled", &self.inner.is_some())
            .finish_non_exhaustive()
    }
}

impl ProbeTls {
    /// A connector for `server_name` (the user's host, not the dialled IP), or one that is never
    /// used when `config` is `None`. Fails when the host is not usable as a TLS server name.
    pub(crate) fn new(
        config: Option<&Arc<ClientConfig>>,
        server_name: &str,
        trace: SharedTrace,
        auth: Arc<AuthSettings>,
    ) -> io::Result<Self> {
        let inner = match config {
            Some(config) => {
                let name = ServerName::try_from(server_name)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
                    .to_owned();
                Some((Arc::clone(config), name))
            }
            None => None,
        };
        Ok(Self {
            inner,
            trace,
            auth,
            until_ready: false,
        })
    }

    /// The inspector above TLS steps aside at the first `ReadyForQuery` (pools).
    pub(crate) fn until_ready(mut self) -> Self {
        self.until_ready = true;
        self
    }
}

impl TlsConnect<RawStream> for ProbeTls {
    type Stream = Authenticate<Inspect<Tls>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Stream>> + Send>>;

    fn connect(self, stream: RawStream) -> Self::Future {
        let Self {
            inner,
            trace,
            auth,
            until_ready,
        } = self;
        Box::pin(async move {
            let (config, name) =
                inner.ok_or_else(|| io::Error::other("tls is not used by this attempt"))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await?;
            // SCRAM's `tls-server-end-point` binding from the server's leaf certificate.
            let binding = {
                let (_, connection) = tls.get_ref();
                let mut trace = lock(&trace);
                trace.tls_done = Some(Instant::now());
                trace.tls_protocol = connection.protocol_version().and_then(tls::protocol_name);
                trace.tls_cipher = connection
                    .negotiated_cipher_suite()
                    .and_then(|suite| tls::cipher_name(suite.suite()));
                connection
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| tls::end_point_hash(leaf.as_ref()))
            };
            let inspect = Inspect::new(Tls(tls), trace.clone(), Layer::Tls);
            let inspect = if until_ready {
                inspect.until_ready()
            } else {
                inspect
            };
            Ok(Authenticate::encrypted(inspect, auth, binding, trace))
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn startup() -> Vec<u8> {
        let mut m = vec![0, 0, 0, 16, 0, 3, 0, 0];
        m.extend_from_slice(b"user\0u\0\0\0");
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_be_bytes());
        m
    }

    /// A typed protocol message.
    pub(crate) fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn frontend_finds_the_password_message_across_writes() {
        let mut p = FrontendParser::new();
        let s = startup();
        p.feed(&s[..3], |_| {});
        p.feed(&s[3..], |_| {});
        let pw = typed(b'p', b"secret\0");
        assert_eq!(p.password_offset(&pw), Some(0));
        let mut two = typed(b'X', b"");
        two.extend_from_slice(&pw);
        assert_eq!(p.password_offset(&two), Some(5));
        assert_eq!(p.password_offset(&typed(b'Q', b"x\0")), None);
    }

    #[test]
    fn frontend_sees_ssl_request_then_untyped_startup() {
        let mut p = FrontendParser::new();
        let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        let mut codes = Vec::new();
        p.feed(&ssl, |e| {
            if let Event::Untyped { code } = e {
                codes.push(code)
            }
        });
        p.feed(&startup(), |e| {
            if let Event::Untyped { code } = e {
                codes.push(code)
            }
        });
        assert_eq!(codes, vec![SSL_REQUEST_CODE, 196_608]);
    }

    #[test]
    fn backend_reports_auth_codes_split_anywhere() {
        let mut stream = typed(b'R', &3u32.to_be_bytes());
        stream.extend(typed(b'R', &0u32.to_be_bytes()));
        stream.extend(typed(b'Z', b"I"));
        for split in 0..stream.len() {
            let mut p = BackendParser::new();
            let mut events = Vec::new();
            let mut push = |e| {
                if let Event::Auth { code } = e {
                    events.push(code)
                }
            };
            p.feed(&stream[..split], &mut push).unwrap();
            p.feed(&stream[split..], &mut push).unwrap();
            assert_eq!(events, vec![3, 0], "split at {split}");
        }
    }

    #[test]
    fn backend_refuses_non_postgres_bytes() {
        for garbage in [
            &b"HTTP/1.1 400 Bad Request\r\n"[..],
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"R\0\0\0\x02",
            b"\0\0\0\0\0",
        ] {
            let mut p = BackendParser::new();
            assert!(p.feed(garbage, |_| {}).is_err(), "{garbage:?}");
        }
    }
}
