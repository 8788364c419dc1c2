//! Connection pools for services that embed the core: a [`deadpool_postgres::Pool`] for a saved
//! connection that connects exactly as a test does.
//!
//! [`pool`] builds the pool; its connector dials through the one dialer under the target policy,
//! applies the connection's TLS settings (every libpq mode with the fallbacks of `allow` and
//! `prefer`, the CA, the client certificate and key, channel binding), obeys the admin's
//! [`ProbeRules`] (the lowest TLS mode, the cleartext guard) and bounds each connect by the create
//! timeout and the connection's `connect_timeout_ms`, whichever is shorter. Every pool timeout is
//! set ([`PoolOptions`]), so no caller waits without a bound.
//!
//! It must never: open a socket the policy has not approved, send a cleartext or md5 password over
//! an unencrypted connection the rules do not permit, keep the password anywhere but in its
//! secret type (it is copied into a `tokio_postgres::Config` only for the length of one connect),
//! or put a secret into an error or `Debug` output.
//!
//! Unlike a test, a pooled connection outlives the call that made it, so its connection task is
//! spawned (the pool owns the client); the connect itself runs in the pool's future and is cut at
//! its deadline. The inspector steps aside once the server is ready, so a connection in use pays
//! nothing for the guard.
//!
//! A failure that is not the server's own error (policy, DNS, TCP, TLS, the guard, a timeout, a
//! peer that is not PostgreSQL) reaches the pool's caller as a `tokio_postgres::Error` whose
//! source is an `io::Error` carrying a [`PoolConnectError`] with the prober's [`Failure`];
//! [`pool_failure_kind`] turns any pool error into one [`FailureKind`] without parsing text.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};
use tokio_postgres::config::{ChannelBinding as PgChannelBinding, SslMode};
use tokio_postgres::{Client, Connection, NoTls};

use crate::model::{
    ApplicationName, ConnectionSecrets, ConnectionSpec, DatabaseName, FailureKind, Host, TlsMode,
    Username,
};
use crate::net::{self, Policy};
use crate::probe::auth::AuthSettings;
use crate::probe::inspect::{self, ProbeTls, RawStream, SharedTrace, Trace, lock};
use crate::probe::scram_cache::ScramCache;
use crate::probe::{
    Dial, Failure, PolicyDial, ProbeRules, StepName, Wire, classify, retry_with_tls, tls,
};
use crate::{Error, ErrorKind, Result};

/// The limits of a pool. `Default`: 8 connections; wait, create and recycle timeouts of 5 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// The most connections the pool holds, in use or idle. Default: 8.
    pub max_size: usize,
    /// How long `Pool::get` waits for a free slot. Default: 5 s.
    pub wait_timeout: Duration,
    /// How long opening one connection may take (resolve, policy, TCP, TLS, authentication);
    /// the connection's `connect_timeout_ms` bounds it too when shorter. Default: 5 s.
    pub create_timeout: Duration,
    /// How long checking an idle connection before reuse may take. Default: 5 s.
    pub recycle_timeout: Duration,
}

impl PoolOptions {
    /// The default largest pool size: 8.
    pub const DEFAULT_MAX_SIZE: usize = 8;
    /// The default of each timeout: 5 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: Self::DEFAULT_MAX_SIZE,
            wait_timeout: Self::DEFAULT_TIMEOUT,
            create_timeout: Self::DEFAULT_TIMEOUT,
            recycle_timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// Builds a pool for a connection: every connection it opens dials through `connect` under
/// `policy`, with the connection's TLS settings and the admin's `rules`, like
/// [`test`](fn@crate::probe::test). The secrets move into the pool's connector.
///
/// Opens no connection: the first `Pool::get` does. Must be called inside a tokio runtime
/// before the pool is used (its timeouts run on tokio).
///
/// # Errors
/// `InvalidInput` when the TLS mode is below `rules.min_tls_mode` (field `tls.mode`), a
/// certificate or the client key is unusable (the `tls.*` field), or `options` has a zero size
/// or timeout (field `pool.*`).
pub fn pool(
    connect: Arc<dyn net::Connect>,
    policy: Arc<Policy>,
    spec: &ConnectionSpec,
    secrets: ConnectionSecrets,
    rules: &ProbeRules,
    options: &PoolOptions,
) -> Result<Pool> {
    check_options(options)?;
    let connector = connector(
        connect,
        policy,
        spec,
        secrets,
        rules,
        options.create_timeout,
    )?;
    // What the manager shows in `Debug` and hands to the connector, which ignores it: no
    // password, and nothing here is used to connect.
    let shown = connector.pg_config(Wire::Plain);
    let manager = Manager::from_connect(
        shown,
        connector,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.max_size)
        .wait_timeout(Some(options.wait_timeout))
        .create_timeout(Some(options.create_timeout))
        .recycle_timeout(Some(options.recycle_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| Error::new(ErrorKind::Internal, "the pool could not be built").with_source(e))
}

/// The connector behind [`pool`], also used by the PostgreSQL store for its own connections
/// (S32: the same dialer, TLS configurations, authenticator and cleartext guard as a test).
/// `create_timeout` bounds each connect, as does the connection's `connect_timeout_ms` when
/// shorter.
///
/// # Errors
/// As [`pool`], but for the pool's options.
pub(crate) fn connector(
    connect: Arc<dyn net::Connect>,
    policy: Arc<Policy>,
    spec: &ConnectionSpec,
    secrets: ConnectionSecrets,
    rules: &ProbeRules,
    create_timeout: Duration,
) -> Result<PoolConnect> {
    let mode = spec.tls.mode();
    if mode < rules.min_tls_mode {
        return Err(Error::invalid(
            "tls.mode",
            "is below the lowest mode the admin policy allows",
        ));
    }
    let tls = match mode {
        TlsMode::Disable => None,
        _ => Some(
            tls::plan(
                mode,
                &spec.tls,
                secrets.client_key_pem.as_ref(),
                tls::Sessions::Resume,
            )
            .map_err(|e| config_error(e.0))?
            .config,
        ),
    };
    let guard =
        !(matches!(mode, TlsMode::Disable | TlsMode::Allow) && rules.allow_cleartext_password);
    let connect_timeout = create_timeout.min(Duration::from_millis(
        spec.options.connect_timeout_ms().into(),
    ));
    Ok(PoolConnect {
        dial: PolicyDial::new(connect, policy),
        host: spec.host.clone(),
        port: spec.port.get(),
        user: spec.username.clone(),
        database: spec.database.clone(),
        application_name: spec.options.application_name().cloned(),
        auth: Arc::new(AuthSettings {
            user: spec.username.as_str().to_owned(),
            password: secrets.password,
            channel_binding: spec.tls.channel_binding(),
            keys: ScramCache::shared(),
            early_query: None,
        }),
        mode,
        guard,
        tls,
        connect_timeout,
        server_options: None,
        tcp: TcpTuning::default(),
    })
}

/// The one failure kind of an error from `Pool::get` on a pool made by [`pool`].
///
/// A wait or create timeout is `timeout`; a server error is classified by its SQLSTATE as a test
/// would; a refusal before the server answered carries its kind in a [`PoolConnectError`]; a closed
/// pool or a failure this module does not produce is `internal`.
pub fn pool_failure_kind(err: &PoolError) -> FailureKind {
    match err {
        PoolError::Timeout(_) => FailureKind::Timeout,
        PoolError::Backend(e) => backend_kind(e),
        _ => FailureKind::Internal,
    }
}

fn backend_kind(e: &tokio_postgres::Error) -> FailureKind {
    if let Some(failure) = PoolConnectError::find(e) {
        return failure.failure.kind;
    }
    if let Some(db) = e.as_db_error() {
        return classify::server_error(db.code().code(), StepName::Auth).kind;
    }
    if e.is_closed() {
        return FailureKind::ServerUnavailable;
    }
    FailureKind::Internal
}

/// Why the pool's connector could not open a connection, before the server gave an error of its
/// own: the prober's [`Failure`] (kind, step and hint; never a secret nor text from the peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConnectError {
    failure: Failure,
}

impl PoolConnectError {
    /// The failure, as a test would report it.
    pub fn failure(&self) -> &Failure {
        &self.failure
    }

    /// Finds the `PoolConnectError` in the source chain of a pool's backend error.
    pub fn find(err: &tokio_postgres::Error) -> Option<&Self> {
        let mut source = err.source();
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<io::Error>()
                && let Some(found) = io.get_ref().and_then(|inner| inner.downcast_ref::<Self>())
            {
                return Some(found);
            }
            if let Some(found) = e.downcast_ref::<Self>() {
                return Some(found);
            }
            source = e.source();
        }
        None
    }
}

impl fmt::Display for PoolConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} during {}: {}",
            self.failure.kind, self.failure.step, self.failure.hint
        )
    }
}

impl StdError for PoolConnectError {}

/// `tls::plan`'s `"field: message"` as an `InvalidInput` error on the field.
fn config_error(text: &'static str) -> Error {
    match text.split_once(": ") {
        Some((field, message)) => Error::invalid(field, message),
        None => Error::invalid("tls", text),
    }
}

fn check_options(options: &PoolOptions) -> Result<()> {
    if options.max_size == 0 {
        return Err(Error::invalid("pool.max_size", "must be at least 1"));
    }
    for (field, value) in [
        ("pool.wait_timeout", options.wait_timeout),
        ("pool.create_timeout", options.create_timeout),
        ("pool.recycle_timeout", options.recycle_timeout),
    ] {
        if value.is_zero() {
            return Err(Error::invalid(field, "must be longer than zero"));
        }
    }
    Ok(())
}

/// The connection task's type: the raw inspector under tokio-postgres, TLS or not.
pub(crate) type PoolConnection =
    Connection<RawStream, <ProbeTls as tokio_postgres::tls::TlsConnect<RawStream>>::Stream>;

/// Socket settings of a long-lived connection (the store's): how soon unacknowledged data or a
/// silent peer ends it. Default: none set.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TcpTuning {
    /// `TCP_USER_TIMEOUT` (Linux): unacknowledged data older than this closes the connection.
    pub(crate) user_timeout: Option<Duration>,
    /// TCP keepalive probes after this much idle time.
    pub(crate) keepalive_idle: Option<Duration>,
}

/// The pool's connector: the prober's way of connecting, kept for the pool's lifetime.
pub(crate) struct PoolConnect {
    dial: PolicyDial,
    host: Host,
    port: u16,
    user: Username,
    database: DatabaseName,
    application_name: Option<ApplicationName>,
    /// The user, password and channel binding, for the authenticator under tokio-postgres.
    auth: Arc<AuthSettings>,
    mode: TlsMode,
    guard: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
    /// The startup's `options` (e.g. `-c statement_timeout=30000`); none for saved connections,
    /// whose users may not set free-form options (S15).
    server_options: Option<String>,
    tcp: TcpTuning,
}

impl fmt::Debug for PoolConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolConnect")
            .field("dial", &self.dial)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("auth", &self.auth)
            .field("mode", &self.mode)
            .field("guard", &self.guard)
            .field("connect_timeout", &self.connect_timeout)
            .field("server_options", &self.server_options)
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

/// Why one attempt failed: the classified failure, the server's own error when it sent one
/// (returned to the pool's caller as is), and whether TLS was up (for `prefer`'s retry).
struct AttemptError {
    failure: Failure,
    server: Option<tokio_postgres::Error>,
    encrypted: bool,
}

impl From<Failure> for AttemptError {
    fn from(failure: Failure) -> Self {
        Self {
            failure,
            server: None,
            encrypted: false,
        }
    }
}

/// The attempt in progress: its trace, for the step when the deadline cuts it.
type Current = Option<(SharedTrace, Wire)>;

impl deadpool_postgres::Connect for PoolConnect {
    fn connect(
        &self,
        _pg_config: &tokio_postgres::Config,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>>
                + Send
                + '_,
        >,
    > {
        Box::pin(async move {
            let (client, connection) = self.open().await?;
            // The pool owns the client long-term, so its connection task must outlive this
            // call; it ends when the client is dropped or the server hangs up.
            let task = tokio::spawn(async move {
                let _ = connection.await;
            });
            Ok((client, task))
        })
    }
}

impl PoolConnect {
    /// The same connector with startup `options` for the server (the store's statement
    /// timeout; never from user input).
    pub(crate) fn with_server_options(mut self, options: String) -> Self {
        self.server_options = Some(options);
        self
    }

    /// The same connector setting these socket options on every connection.
    pub(crate) fn with_tcp(mut self, tcp: TcpTuning) -> Self {
        self.tcp = tcp;
        self
    }

    /// The settings shown for this connector (no password): what the pool's manager holds.
    pub(crate) fn shown_config(&self) -> tokio_postgres::Config {
        self.pg_config(Wire::Plain)
    }

    /// Opens one connection as the pool does, cut at the connect timeout, and hands back the
    /// connection itself (the caller polls it, e.g. for notifications).
    ///
    /// # Errors
    /// The server's own error, or one carrying a [`PoolConnectError`] with the classified
    /// failure.
    pub(crate) async fn open(&self) -> Result<(Client, PoolConnection), tokio_postgres::Error> {
        let deadline = Instant::now() + self.connect_timeout;
        let mut current: Current = None;
        let outcome = timeout_at(deadline, self.establish(deadline, &mut current)).await;
        let failure = match outcome {
            Ok(Ok(connected)) => {
                tracing::trace!(
                    host = self.host.as_str(),
                    port = self.port,
                    "pool connection opened"
                );
                return Ok(connected);
            }
            Ok(Err(AttemptError {
                server: Some(server),
                ..
            })) => return Err(server),
            Ok(Err(e)) => e.failure,
            Err(_) => {
                let step = current
                    .as_ref()
                    .map_or(StepName::Tcp, |(trace, wire)| step_of(&lock(trace), *wire));
                classify::timeout(step)
            }
        };
        tracing::debug!(
            host = self.host.as_str(),
            port = self.port,
            kind = failure.kind.as_str(),
            step = failure.step.as_str(),
            "pool connection failed"
        );
        Err(carry(PoolConnectError { failure }).await)
    }
}

impl PoolConnect {
    /// Connects in the connection's TLS mode, with libpq's fallbacks for `allow` and `prefer`.
    async fn establish(
        &self,
        deadline: Instant,
        current: &mut Current,
    ) -> Result<(Client, PoolConnection), AttemptError> {
        match self.mode {
            TlsMode::Disable => self.attempt(Wire::Plain, deadline, current).await,
            TlsMode::Allow => match self.attempt(Wire::Plain, deadline, current).await {
                Err(first) if retry_with_tls(&first.failure) => {
                    match self.attempt(Wire::Tls, deadline, current).await {
                        Err(second)
                            if second.failure.kind == FailureKind::TlsNotSupportedByServer =>
                        {
                            Err(first)
                        }
                        other => other,
                    }
                }
                other => other,
            },
            TlsMode::Prefer => match self.attempt(Wire::Prefer, deadline, current).await {
                Err(first)
                    if first.failure.kind == FailureKind::TlsHandshakeFailed
                        || (first.encrypted
                            && first.failure.sqlstate.is_some()
                            && first.failure.kind != FailureKind::Timeout) =>
                {
                    self.attempt(Wire::Plain, deadline, current).await
                }
                other => other,
            },
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => {
                self.attempt(Wire::Tls, deadline, current).await
            }
        }
    }

    /// One connection attempt through the one dialer, with the inspector (and its guard) under
    /// tokio-postgres until the server is ready.
    async fn attempt(
        &self,
        wire: Wire,
        deadline: Instant,
        current: &mut Current,
    ) -> Result<(Client, PoolConnection), AttemptError> {
        let trace: SharedTrace = Arc::new(Mutex::new(Trace::default()));
        *current = Some((trace.clone(), wire));
        let dialed = self
            .dial
            .dial(&self.host, self.port, deadline)
            .await
            .map_err(|e| AttemptError::from(classify::dial(&e)))?;
        lock(&trace).tcp_done = Some(Instant::now());
        self.tune(&dialed.stream);
        let config = match wire {
            Wire::Plain => None,
            Wire::Prefer | Wire::Tls => self.tls.as_ref(),
        };
        let raw = inspect::raw_stream(
            dialed.stream,
            trace.clone(),
            self.auth.clone(),
            self.guard,
            true,
        );
        let tls = ProbeTls::new(config, self.host.as_str(), trace.clone(), self.auth.clone())
            .map_err(|_| {
                AttemptError::from(classify::failure(
                    FailureKind::InvalidConfig,
                    StepName::Config,
                    "the host is not usable as a TLS server name",
                ))
            })?
            .until_ready();
        let config = self.pg_config(wire);
        let connected = config.connect_raw(raw, tls).await;
        drop(config);
        connected.map_err(|e| {
            let snapshot = lock(&trace).clone();
            let step = step_of(&snapshot, wire);
            AttemptError {
                failure: classify::connect(&e, &snapshot, step, wire == Wire::Tls),
                encrypted: snapshot.tls_done.is_some(),
                server: e.as_db_error().is_some().then_some(e),
            }
        })
    }

    /// The tokio-postgres settings of one attempt: no password and no channel binding, as the
    /// authenticator under tokio-postgres answers the server (`auth.rs`).
    fn pg_config(&self, wire: Wire) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(self.host.as_str())
            .port(self.port)
            .user(self.user.as_str())
            .dbname(self.database.as_str())
            .ssl_mode(match wire {
                Wire::Plain => SslMode::Disable,
                Wire::Prefer => SslMode::Prefer,
                Wire::Tls => SslMode::Require,
            })
            .channel_binding(PgChannelBinding::Disable);
        if let Some(name) = &self.application_name {
            config.application_name(name.as_str());
        }
        if let Some(options) = &self.server_options {
            config.options(options);
        }
        config
    }

    /// Applies the socket options (best effort: a platform without one keeps its default).
    fn tune(&self, stream: &tokio::net::TcpStream) {
        let socket = socket2::SockRef::from(stream);
        #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
        if let Some(timeout) = self.tcp.user_timeout {
            let _ = socket.set_tcp_user_timeout(Some(timeout));
        }
        if let Some(idle) = self.tcp.keepalive_idle {
            let _ = socket.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle));
        }
    }
}

/// The step an attempt was in, from what its inspector saw.
fn step_of(trace: &Trace, wire: Wire) -> StepName {
    if trace.tcp_done.is_none() {
        return StepName::Tcp;
    }
    let declined = matches!(trace.ssl_answer, Some((b'N', _))) && wire == Wire::Prefer;
    if trace.ssl_requested.is_some() && trace.tls_done.is_none() && !declined {
        return StepName::Tls;
    }
    if trace.first_auth.is_none() {
        return StepName::Startup;
    }
    if trace.ready.is_none() {
        return StepName::Auth;
    }
    StepName::Query
}

/// A `tokio_postgres::Error` carrying `err` as the source of its I/O cause.
///
/// deadpool-postgres's `Connect` must return tokio-postgres's error type, whose constructors are
/// private; a startup on a stream that fails its first write with `err` is the one public way to
/// get an error with our cause attached. The stream is in memory: nothing is sent anywhere.
async fn carry(err: PoolConnectError) -> tokio_postgres::Error {
    let mut config = tokio_postgres::Config::new();
    config.user("datahub").ssl_mode(SslMode::Disable);
    let stream = Refuse(Some(io::Error::other(err)));
    match config.connect_raw(stream, NoTls).await {
        Err(e) => e,
        // Unreachable: the stream refuses the startup message. Should it ever connect, the
        // closed connection's own error still fails the pool's `get`.
        Ok((client, connection)) => {
            drop(client);
            match connection.await {
                Err(e) => e,
                Ok(()) => tokio_postgres::Error::__private_api_timeout(),
            }
        }
    }
}

/// An in-memory stream whose first read or write fails with the error it holds.
struct Refuse(Option<io::Error>);

impl Refuse {
    fn error(&mut self) -> io::Error {
        self.0
            .take()
            .unwrap_or_else(|| io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

impl AsyncRead for Refuse {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.get_mut().error()))
    }
}

impl AsyncWrite for Refuse {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(self.get_mut().error()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.get_mut().error()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_carried_error_is_found_again() {
        let failure = classify::failure(
            FailureKind::BlockedByPolicy,
            StepName::Policy,
            "denied by policy",
        );
        let err = carry(PoolConnectError {
            failure: failure.clone(),
        })
        .await;
        assert_eq!(
            PoolConnectError::find(&err).map(|c| &c.failure),
            Some(&failure)
        );
        assert_eq!(
            pool_failure_kind(&PoolError::Backend(err)),
            FailureKind::BlockedByPolicy
        );
    }

    #[test]
    fn options_need_a_size_and_timeouts() {
        assert!(check_options(&PoolOptions::default()).is_ok());
        let zero = PoolOptions {
            max_size: 0,
            ..PoolOptions::default()
        };
        assert_eq!(
            check_options(&zero).unwrap_err().field(),
            Some("pool.max_size")
        );
        let zero = PoolOptions {
            create_timeout: Duration::ZERO,
            ..PoolOptions::default()
        };
        assert_eq!(
            check_options(&zero).unwrap_err().field(),
            Some("pool.create_timeout")
        );
    }
}
