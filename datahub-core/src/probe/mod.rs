//! The prober: one bounded connection test of a saved or draft connection.
//!
//! [`test`](fn@test) runs resolve → policy → TCP (all through a [`Dial`], the one dialer's seat) → TLS per
//! libpq mode (rustls) → startup and authentication → a probe query, timing each step, and
//! returns a [`Report`]: the steps, the server's facts, the TLS facts and, on failure, exactly one
//! [`FailureKind`] with the step, a hint and the SQLSTATE when the server sent one.
//!
//! It owns the TLS modes' meaning (including the fallbacks of `allow` and `prefer`), the admin
//! floor on the mode, the cleartext guard (SECURITY.md S13), the deadline (S22) and the
//! classification (S17). It must never: resolve or open a socket itself (the [`Dial`] does),
//! take longer than its budget (5 s at most) whatever the target does, leave a task or socket
//! behind, send a cleartext or md5 password over an unencrypted connection unless the mode is
//! `disable`/`allow` and the policy permits it, put a secret into a report, or echo bytes from a
//! peer that is not PostgreSQL.

mod auth;
mod classify;
mod dial;
mod inspect;
mod pool;
mod scram_cache;
mod tls;

pub use dial::PolicyDial;
pub(crate) use pool::{PoolConnect, TcpTuning, connector};
pub use pool::{PoolConnectError, PoolOptions, pool, pool_failure_kind};

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::time::{Instant, timeout_at};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::config::{ChannelBinding as PgChannelBinding, SslMode};
use tracing::Instrument;

pub use crate::model::StepName;

use crate::model::{ConnectionSecrets, ConnectionSpec, FailureKind, Host, TlsMode};
use crate::net::{DialError, Dialed};
use crate::probe::auth::AuthSettings;
use crate::probe::inspect::{ProbeTls, SharedTrace, Trace, lock};
use crate::probe::scram_cache::ScramCache;

/// The default and longest budget of one test: 5 s.
pub const MAX_BUDGET: Duration = Duration::from_secs(5);

/// The longest `statement_timeout` of the probe query: 2 s (less when the budget has less left).
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(2_000);

/// How long a finished test waits for the server to take its `Terminate` before closing.
const CLOSE_GRACE: Duration = Duration::from_millis(50);

/// The connect step: resolves the host, checks every address against the target policy and
/// opens a TCP connection to a checked address. The one dialer implements it (through
/// [`PolicyDial`]); tests swap it.
#[async_trait]
pub trait Dial: Send + Sync + fmt::Debug {
    /// Resolves, checks the policy and connects, all before `deadline`.
    ///
    /// # Errors
    /// A [`DialError`] saying which part failed.
    async fn dial(&self, host: &Host, port: u16, deadline: Instant) -> Result<Dialed, DialError>;
}

/// The admin's rules a test obeys. `Default`: lowest mode `require`, no cleartext password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRules {
    /// The lowest TLS mode allowed; a weaker mode fails with `invalid_config` before any socket.
    /// Default: [`TlsMode::DEFAULT_POLICY_MINIMUM`] (`require`).
    pub min_tls_mode: TlsMode,
    /// Whether a cleartext or md5 password may go over an unencrypted connection in the modes
    /// `disable` and `allow`. Never in other modes. Default: false.
    pub allow_cleartext_password: bool,
}

impl Default for ProbeRules {
    fn default() -> Self {
        Self {
            min_tls_mode: TlsMode::DEFAULT_POLICY_MINIMUM,
            allow_cleartext_password: false,
        }
    }
}

/// One timed step. A retried connection (`allow`, `prefer`) lists the steps of every attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Which step.
    pub name: StepName,
    /// How long it took, in milliseconds (microsecond precision).
    pub ms: f64,
    /// Whether it succeeded. `prefer` against a server without TLS shows a `tls` step that did
    /// not (the test then went on in plaintext).
    pub ok: bool,
}

/// What the probe query found out about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// `server_version`, e.g. `16.4`.
    pub version: String,
    /// The database the server accepted the session for (`current_database()`).
    pub database: String,
    /// The session's user (`session_authorization` as the start-up reported it, else
    /// `current_user`).
    pub user: String,
    /// Whether the server is in recovery (a standby): `in_hot_standby` as the start-up
    /// reported it, else `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// Client connections open on the server, this one included, counted the same whatever the
    /// role's privileges (sessions with a user and a database: parallel and logical replication
    /// workers running at that moment count too).
    pub connections_used: Option<u32>,
    /// `max_connections`.
    pub max_connections: Option<u32>,
}

/// What the test saw of TLS; absent when the connection was not encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    /// The protocol version, e.g. `TLSv1.3` (as the client negotiated it).
    pub protocol: Option<String>,
    /// The cipher suite's IANA name, e.g. `TLS_AES_256_GCM_SHA384` (as the client negotiated it).
    pub cipher: Option<String>,
    /// The server certificate's subject.
    pub peer_subject: Option<String>,
    /// When the server certificate expires (UTC).
    pub peer_not_after: Option<OffsetDateTime>,
}

/// Why a test failed: exactly one kind, the step, a hint for a human and the server's SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The one kind, from DESIGN.md's closed list.
    pub kind: FailureKind,
    /// The step it failed in.
    pub step: StepName,
    /// What to check; a fixed sentence, never text from the peer or a secret.
    pub hint: Cow<'static, str>,
    /// The SQLSTATE when the server sent an error.
    pub sqlstate: Option<String>,
}

/// The result of one test. Holds no secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Whether the probe query succeeded.
    pub ok: bool,
    /// Wall time of the whole test, in milliseconds.
    pub total_ms: f64,
    /// The timed steps, in order.
    pub steps: Vec<Step>,
    /// The server's facts when the probe query ran.
    pub server: Option<ServerFacts>,
    /// The TLS facts when the connection was encrypted.
    pub tls: Option<TlsFacts>,
    /// Why it failed; `None` exactly when `ok`.
    pub failure: Option<Failure>,
}

/// Tests a connection: connects through `dial`, authenticates and runs the probe query.
///
/// Never takes longer than `min(budget, 5 s)` plus scheduling slack, whatever the target does:
/// one deadline covers every step, the connection and the query run in this future (no spawned
/// task), and dropping it on the deadline closes the socket. The connect part (up to the end of
/// authentication) is also bounded by the connection's `connect_timeout_ms`.
pub async fn test(
    dial: &dyn Dial,
    spec: &ConnectionSpec,
    secrets: &ConnectionSecrets,
    rules: &ProbeRules,
    budget: Duration,
) -> Report {
    let start = Instant::now();
    let deadline = start + budget.min(MAX_BUDGET);
    let connect_timeout = Duration::from_millis(spec.options.connect_timeout_ms().into());
    let mut probe = Probe {
        dial,
        spec,
        secrets,
        rules,
        deadline,
        connect_deadline: (start + connect_timeout).min(deadline),
        steps: Vec::new(),
        current: None,
    };
    // Names, host, port and mode only: the span never holds a secret.
    let span = tracing::debug_span!(
        "probe",
        connection = spec.name.as_str(),
        host = spec.host.as_str(),
        port = spec.port.get(),
        database = spec.database.as_str(),
        user = spec.username.as_str(),
        tls_mode = spec.tls.mode().as_str(),
        budget_ms = u64::try_from(budget.min(MAX_BUDGET).as_millis()).unwrap_or(u64::MAX),
    );
    let outcome = match timeout_at(deadline, probe.run())
        .instrument(span.clone())
        .await
    {
        Ok(outcome) => outcome,
        Err(_) => Err(probe.timed_out(Instant::now())),
    };
    let total_ms = ms(Instant::now() - start);
    log_outcome(&span, &probe.steps, outcome.as_ref().err(), total_ms);
    match outcome {
        Ok(success) => Report {
            ok: true,
            total_ms,
            steps: probe.steps,
            server: Some(success.server),
            tls: success.tls,
            failure: None,
        },
        Err(failure) => Report {
            ok: false,
            total_ms,
            steps: probe.steps,
            server: None,
            tls: None,
            failure: Some(failure),
        },
    }
}

/// The test's outcome (debug) and each step's timing (trace), inside the test's span.
fn log_outcome(span: &tracing::Span, steps: &[Step], failure: Option<&Failure>, total_ms: f64) {
    let _entered = span.enter();
    for step in steps {
        tracing::trace!(
            step = step.name.as_str(),
            ms = step.ms,
            ok = step.ok,
            "probe step"
        );
    }
    match failure {
        None => tracing::debug!(ok = true, total_ms, "probe finished"),
        Some(f) => tracing::debug!(
            ok = false,
            kind = f.kind.as_str(),
            step = f.step.as_str(),
            sqlstate = f.sqlstate.as_deref(),
            total_ms,
            "probe finished"
        ),
    }
}

/// How one attempt talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// No TLS.
    Plain,
    /// Ask for TLS; continue in plaintext if the server answers `N`.
    Prefer,
    /// TLS or nothing.
    Tls,
}

/// What a successful attempt found.
#[derive(Debug)]
struct Success {
    server: ServerFacts,
    tls: Option<TlsFacts>,
}

/// The attempt in progress, for steps and classification when the deadline cuts it.
#[derive(Debug)]
struct Current {
    wire: Wire,
    trace: SharedTrace,
    dial_started: Instant,
}

struct Probe<'a> {
    dial: &'a dyn Dial,
    spec: &'a ConnectionSpec,
    secrets: &'a ConnectionSecrets,
    rules: &'a ProbeRules,
    deadline: Instant,
    connect_deadline: Instant,
    steps: Vec<Step>,
    current: Option<Current>,
}

impl Probe<'_> {
    async fn run(&mut self) -> Result<Success, Failure> {
        let mode = self.spec.tls.mode();
        let started = Instant::now();
        let config = |hint: Cow<'static, str>| {
            classify::failure(FailureKind::InvalidConfig, StepName::Config, hint)
        };
        if mode < self.rules.min_tls_mode {
            self.push(StepName::Config, Instant::now() - started, false);
            return Err(config(
                format!(
                    "tls.mode {mode} is below the lowest mode the admin policy allows ({})",
                    self.rules.min_tls_mode
                )
                .into(),
            ));
        }
        let mut plan = match mode {
            TlsMode::Disable => None,
            _ => match tls::plan(
                mode,
                &self.spec.tls,
                self.secrets.client_key_pem.as_ref(),
                tls::Sessions::HintsOnly,
            ) {
                Ok(plan) => Some(plan),
                Err(e) => {
                    self.push(StepName::Config, Instant::now() - started, false);
                    return Err(config(e.0.into()));
                }
            },
        };
        self.push(StepName::Config, Instant::now() - started, true);
        let guard = !(matches!(mode, TlsMode::Disable | TlsMode::Allow)
            && self.rules.allow_cleartext_password);
        match mode {
            TlsMode::Disable => self.attempt(Wire::Plain, None, guard).await,
            TlsMode::Allow => {
                // libpq: plaintext first; TLS when the server refuses it. A refusal on our side
                // (the guard, channel binding) retries with TLS too.
                let first = self.attempt(Wire::Plain, None, guard).await;
                match first {
                    Err(f) if retry_with_tls(&f) => {
                        match self.attempt(Wire::Tls, plan.as_mut(), guard).await {
                            Err(second) if second.kind == FailureKind::TlsNotSupportedByServer => {
                                Err(f)
                            }
                            other => other,
                        }
                    }
                    other => other,
                }
            }
            TlsMode::Prefer => {
                // libpq: TLS first (plaintext on `N`); plaintext again when the TLS handshake
                // fails or the server refuses the encrypted connection.
                let first = self.attempt(Wire::Prefer, plan.as_mut(), guard).await;
                match first {
                    Err(f) if self.retry_plain(&f) => self.attempt(Wire::Plain, None, guard).await,
                    other => other,
                }
            }
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => {
                self.attempt(Wire::Tls, plan.as_mut(), guard).await
            }
        }
    }

    /// Whether a failed `prefer` attempt was encrypted and refused in a way libpq retries: the
    /// TLS handshake failed, or the server refused the encrypted connection during startup or
    /// authentication (an ErrorResponse, as for a `hostnossl`-only user).
    fn retry_plain(&self, f: &Failure) -> bool {
        // `attempt` clears `current` before it returns a failure, so whether TLS was up is read
        // from the steps it recorded: a `tls` step that succeeded (this is the first attempt).
        let encrypted = self.steps.iter().any(|s| s.name == StepName::Tls && s.ok);
        f.kind == FailureKind::TlsHandshakeFailed
            || (encrypted
                && f.sqlstate.is_some()
                && matches!(f.step, StepName::Startup | StepName::Auth)
                && f.kind != FailureKind::Timeout)
    }

    async fn attempt(
        &mut self,
        wire: Wire,
        plan: Option<&mut tls::Plan>,
        guard: bool,
    ) -> Result<Success, Failure> {
        let trace: SharedTrace = Arc::new(Mutex::new(Trace::default()));
        let dial_started = Instant::now();
        self.current = Some(Current {
            wire,
            trace: trace.clone(),
            dial_started,
        });
        let dialed = timeout_at(
            self.connect_deadline,
            self.dial
                .dial(&self.spec.host, self.spec.port.get(), self.connect_deadline),
        )
        .await;
        let dialed = match dialed {
            Ok(Ok(dialed)) => dialed,
            Ok(Err(e)) => {
                let failure = classify::dial(&e);
                self.push(failure.step, Instant::now() - dial_started, false);
                self.current = None;
                return Err(failure);
            }
            Err(_) => return Err(self.timed_out(Instant::now())),
        };
        self.push(StepName::Resolve, dialed.resolve, true);
        // The dialer counts its policy check (a few CIDR comparisons) in `resolve`.
        self.push(StepName::Policy, Duration::ZERO, true);
        self.push(StepName::Tcp, dialed.connect, true);
        lock(&trace).tcp_done = Some(Instant::now());

        let (peer, config) = match (wire, plan) {
            (Wire::Plain, _) | (_, None) => (None, None),
            (_, Some(plan)) => (Some(plan.peer.clone()), Some(&plan.config)),
        };
        // The probe query goes out right behind the last authentication answer (`auth.rs`), a
        // round trip before the server is ready for it; the start-up's reports come later, so
        // the facts they may lack are asked by a second query when they do.
        let statement_timeout = (self.deadline - Instant::now()).min(QUERY_TIMEOUT);
        let sql = probe_sql(statement_timeout, SessionFacts::Reported);
        let auth = Arc::new(AuthSettings {
            user: self.spec.username.as_str().to_owned(),
            password: self.secrets.password.clone(),
            channel_binding: self.spec.tls.channel_binding(),
            keys: ScramCache::shared(),
            early_query: query_message(&sql),
        });
        let raw = inspect::raw_stream(dialed.stream, trace.clone(), auth.clone(), guard, false);
        let tls = match ProbeTls::new(config, self.spec.host.as_str(), trace.clone(), auth) {
            Ok(tls) => tls,
            Err(_) => {
                return Err(classify::failure(
                    FailureKind::InvalidConfig,
                    StepName::Config,
                    "the host is not usable as a TLS server name",
                ));
            }
        };
        let config = self.pg_config(wire);
        let connected = timeout_at(self.connect_deadline, config.connect_raw(raw, tls)).await;
        drop(config);
        let (client, connection) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                let snapshot = lock(&trace).clone();
                let step = self
                    .trace_steps(&snapshot, wire, Instant::now(), None)
                    .unwrap_or(StepName::Auth);
                self.current = None;
                return Err(classify::connect(&e, &snapshot, step, wire == Wire::Tls));
            }
            Err(_) => return Err(self.timed_out(Instant::now())),
        };

        // The connection and the query run in this future: when the deadline drops it, the
        // socket closes with it.
        // What the start-up reported (ParameterStatus) need not be asked again.
        let reported = Reported::from_startup(|name| connection.parameter(name));
        tokio::pin!(connection);
        // `Err(None)`: the connection ended without an error before the query finished.
        let result: Result<Vec<SimpleQueryMessage>, Option<tokio_postgres::Error>> = {
            // tokio-postgres writes the query sent early once more; the authenticator takes
            // those bytes as written and holds the answer until then.
            let queries = async {
                let mut messages = client.simple_query(&sql).await?;
                if reported.ask() == SessionFacts::Ask {
                    messages.extend(client.simple_query(ASK_SQL).await?);
                }
                Ok::<_, tokio_postgres::Error>(messages)
            };
            tokio::pin!(queries);
            tokio::select! {
                r = &mut queries => r.map_err(Some),
                r = &mut connection => Err(r.err()),
            }
        };
        let query_done = Instant::now();
        let snapshot = lock(&trace).clone();
        let failed = self.trace_steps(
            &snapshot,
            wire,
            query_done,
            result.as_ref().ok().map(|_| query_done),
        );
        self.current = None;
        let messages = match result {
            Ok(messages) => messages,
            Err(e) => {
                let step = failed.unwrap_or(StepName::Query);
                return Err(match e {
                    Some(e) => classify::connect(&e, &snapshot, step, wire == Wire::Tls),
                    None if snapshot.not_postgres => classify::not_postgres(step),
                    None => classify::failure(
                        FailureKind::ServerUnavailable,
                        step,
                        "the server closed the connection before the probe query finished",
                    ),
                });
            }
        };
        // Say goodbye politely, but never wait long for it.
        drop(client);
        let _ = timeout_at(
            (Instant::now() + CLOSE_GRACE).min(self.deadline),
            &mut connection,
        )
        .await;
        let Some(server) = parse_probe(&messages, &reported, self.spec.database.as_str()) else {
            return Err(classify::not_postgres(StepName::Query));
        };
        let tls = match (snapshot.tls_done, peer) {
            (Some(_), Some(peer)) => {
                let cert = peer
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone()
                    .unwrap_or_default();
                Some(TlsFacts {
                    protocol: snapshot.tls_protocol.clone(),
                    cipher: snapshot.tls_cipher.clone(),
                    peer_subject: cert.subject,
                    peer_not_after: cert.not_after,
                })
            }
            _ => None,
        };
        Ok(Success { server, tls })
    }

    /// The tokio-postgres settings of one attempt: no password and no channel binding, as the
    /// authenticator under tokio-postgres answers the server (`auth.rs`).
    fn pg_config(&self, wire: Wire) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .user(self.spec.username.as_str())
            .dbname(self.spec.database.as_str())
            .ssl_mode(match wire {
                Wire::Plain => SslMode::Disable,
                Wire::Prefer => SslMode::Prefer,
                Wire::Tls => SslMode::Require,
            })
            .channel_binding(PgChannelBinding::Disable);
        if let Some(name) = self.spec.options.application_name() {
            config.application_name(name.as_str());
        }
        config
    }

    /// The failure when the deadline cut the test, from the step the attempt was in.
    fn timed_out(&mut self, now: Instant) -> Failure {
        let Some(current) = self.current.take() else {
            return classify::timeout(StepName::Config);
        };
        let snapshot = lock(&current.trace).clone();
        if snapshot.tcp_done.is_none() {
            self.push(StepName::Tcp, now - current.dial_started, false);
            return classify::timeout(StepName::Tcp);
        }
        let step = self
            .trace_steps(&snapshot, current.wire, now, None)
            .unwrap_or(StepName::Query);
        if snapshot.not_postgres {
            return classify::not_postgres(step);
        }
        classify::timeout(step)
    }

    /// Appends the steps after TCP from an attempt's trace, ending at `end`; returns the step
    /// that did not finish, if any.
    fn trace_steps(
        &mut self,
        trace: &Trace,
        wire: Wire,
        end: Instant,
        query_done: Option<Instant>,
    ) -> Option<StepName> {
        let mut t = trace.tcp_done?;
        if trace.ssl_requested.is_some() {
            match (trace.tls_done, trace.ssl_answer) {
                (Some(done), _) => {
                    self.push(StepName::Tls, done - t, true);
                    t = done;
                }
                (None, Some((b'N', at))) if wire == Wire::Prefer => {
                    self.push(StepName::Tls, at - t, false);
                    t = at;
                }
                _ => {
                    self.push(StepName::Tls, end - t, false);
                    return Some(StepName::Tls);
                }
            }
        }
        let milestones = [
            (StepName::Startup, trace.first_auth),
            (StepName::Auth, trace.ready),
            (StepName::Query, query_done),
        ];
        for (name, at) in milestones {
            match at {
                Some(at) => {
                    self.push(name, at - t, true);
                    t = at;
                }
                None => {
                    self.push(name, end.saturating_duration_since(t), false);
                    return Some(name);
                }
            }
        }
        None
    }

    fn push(&mut self, name: StepName, took: Duration, ok: bool) {
        self.steps.push(Step {
            name,
            ms: ms(took),
            ok,
        });
    }
}

/// libpq's `allow` retries with TLS after the server refused the plaintext connection during
/// startup or authentication; we also retry after refusing to authenticate ourselves.
fn retry_with_tls(f: &Failure) -> bool {
    let server_refused = f.sqlstate.is_some()
        && matches!(f.step, StepName::Startup | StepName::Auth)
        && f.kind != FailureKind::Timeout;
    server_refused || f.kind == FailureKind::AuthMethodRefused
}

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// Which session facts the probe query asks the server for, besides those it always asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionFacts {
    /// The start-up reported the server version, the session user and whether the server is a
    /// hot standby (`server_version`, `session_authorization`, `in_hot_standby`: PostgreSQL 14
    /// and later): the query does not ask for them.
    Reported,
    /// The start-up left one of them out (PostgreSQL 13 and older, or a pooler in between): the
    /// query asks for all three.
    Ask,
}

/// The probe query the test runs once connected, with its statement timeout: one
/// simple-protocol round trip of two or three statements (public so a DBA can see exactly what
/// the prober asks a server, and so the benches time the same query).
///
/// The test sends the [`SessionFacts::Reported`] form early, behind its last authentication
/// answer (`auth.rs`), before the start-up says what it reports; when the start-up leaves a fact
/// out, the last statement of the [`SessionFacts::Ask`] form follows as a second query.
///
/// Every catalog or statistics function costs a fresh backend cold-cache lookups, so the query
/// asks the server only what the client cannot know: the TLS protocol and cipher come from the
/// client's side of the handshake (not `pg_stat_ssl`, which costs a fresh backend a catalog
/// lookup); the server version, the session user and whether the server is in recovery come
/// from the start-up's `ParameterStatus` messages when the server sends them
/// ([`SessionFacts::Reported`]), else from a last statement ([`SessionFacts::Ask`]); the
/// database is the one the server accepted the start-up for; `max_connections` rides on each
/// backend's row (`current_setting`: a statement of its own, even `SHOW`, cost a cold backend
/// more than one more function in the same statement).
///
/// The statement timeout is a `SET` rather than a start-up option, because poolers such as
/// PgBouncer refuse a start-up `options` parameter they do not know.
///
/// The connections in use are counted by the client from one row per backend (its user and
/// database oids, from the backend ids and two per-backend functions that every role may call
/// on every backend: `pg_stat_get_activity` and the `pg_stat_activity` view hide other roles'
/// `backend_type` from a role without `pg_read_all_stats`, so counting client backends there
/// counts only the role's own sessions). A backend with both a user and a database is a client
/// session — or, while they run, a parallel worker, a logical replication worker or a logical
/// WAL sender; background processes, autovacuum, launchers and physical WAL senders lack one
/// of them. Counting in the client rather than with `count(*)` and `<>` spares a cold backend
/// the aggregate's and the operator's catalog lookups; the rows are two numbers per backend, at
/// most `max_connections` plus the server's own processes. The probe bench times this query
/// against `SELECT 1`.
pub fn probe_sql(statement_timeout: Duration, facts: SessionFacts) -> String {
    let timeout_ms = statement_timeout
        .as_millis()
        .clamp(1, QUERY_TIMEOUT.as_millis());
    let ask = match facts {
        SessionFacts::Reported => String::new(),
        SessionFacts::Ask => format!("; {ASK_SQL}"),
    };
    format!(
        "SET statement_timeout = {timeout_ms}; \
         SELECT pg_stat_get_backend_userid(b), pg_stat_get_backend_dbid(b), \
         current_setting('max_connections') FROM pg_stat_get_backend_idset() b{ask}"
    )
}

/// The statement asking the session facts a start-up did not report ([`SessionFacts::Ask`]).
const ASK_SQL: &str = "SELECT current_setting('server_version'), current_user, pg_is_in_recovery()";

/// The simple-protocol `Query` message of `sql`, byte for byte as tokio-postgres writes it (the
/// same encoder); `None` when `sql` cannot be one (a NUL in it).
fn query_message(sql: &str) -> Option<Vec<u8>> {
    let mut buf = Default::default();
    postgres_protocol::message::frontend::query(sql, &mut buf).ok()?;
    Some(Vec::from(&buf[..]))
}

/// The session facts the start-up reported (`ParameterStatus`), each cleaned of control and
/// format characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Reported {
    version: Option<String>,
    user: Option<String>,
    in_hot_standby: Option<bool>,
}

impl Reported {
    /// Reads them through `parameter` (the connection's reported parameters).
    fn from_startup<'a>(parameter: impl Fn(&str) -> Option<&'a str>) -> Self {
        Self {
            version: parameter("server_version").map(tls::clean_text),
            user: parameter("session_authorization").map(tls::clean_text),
            in_hot_standby: parameter("in_hot_standby").and_then(|v| match v {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            }),
        }
    }

    /// Whether the probe query must ask for them.
    fn ask(&self) -> SessionFacts {
        match (&self.version, &self.user, self.in_hot_standby) {
            (Some(_), Some(_), Some(_)) => SessionFacts::Reported,
            _ => SessionFacts::Ask,
        }
    }
}

/// The server facts from the probe query's answer (statements split at each `CommandComplete`)
/// and what the start-up reported; `None` when the answer is not the probe query's.
fn parse_probe(
    messages: &[SimpleQueryMessage],
    reported: &Reported,
    database: &str,
) -> Option<ServerFacts> {
    let mut statements: Vec<Vec<&tokio_postgres::SimpleQueryRow>> = vec![Vec::new()];
    for m in messages {
        match m {
            SimpleQueryMessage::Row(row) => statements.last_mut()?.push(row),
            SimpleQueryMessage::CommandComplete(_) => statements.push(Vec::new()),
            _ => {}
        }
    }
    // SET, the backends (each row with `max_connections`), and the asked facts when asked.
    let backends = statements.get(1)?;
    let max_connections = backends.first().and_then(|row| row.get(2));
    let oid = |v: Option<&str>| v.is_some_and(|v| v != "0");
    let used = backends
        .iter()
        .filter(|row| oid(row.get(0)) && oid(row.get(1)))
        .count();
    let (version, user, in_recovery) = match reported.ask() {
        SessionFacts::Reported => (
            reported.version.clone()?,
            reported.user.clone()?,
            reported.in_hot_standby?,
        ),
        SessionFacts::Ask => {
            let row = statements.get(2)?.first()?;
            (
                tls::clean_text(row.get(0)?),
                tls::clean_text(row.get(1)?),
                row.get(2)? == "t",
            )
        }
    };
    Some(ServerFacts {
        version,
        database: tls::clean_text(database),
        user,
        in_recovery,
        connections_used: u32::try_from(used).ok(),
        max_connections: max_connections.and_then(|v| v.parse().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL 16's start-up parameters (a control character in the user's name).
    fn reported_by_16(name: &str) -> Option<&'static str> {
        match name {
            "server_version" => Some("16.4"),
            "session_authorization" => Some("app\u{1b}[31m"),
            "in_hot_standby" => Some("on"),
            _ => None,
        }
    }

    #[test]
    fn facts_the_start_up_reported_are_not_asked_again() {
        let reported = Reported::from_startup(reported_by_16);
        assert_eq!(reported.ask(), SessionFacts::Reported);
        assert_eq!(reported.version.as_deref(), Some("16.4"));
        assert_eq!(reported.user.as_deref(), Some("app[31m"), "cleaned");
        assert_eq!(reported.in_hot_standby, Some(true));
        let sql = probe_sql(Duration::from_secs(1), reported.ask());
        assert!(
            sql.starts_with("SET statement_timeout = 1000; SELECT "),
            "{sql}"
        );
        assert!(sql.contains("current_setting('max_connections')"), "{sql}");
        assert!(!sql.contains("server_version"), "{sql}");

        // PostgreSQL 13 and older report no `in_hot_standby`: all three are asked for.
        let old = Reported::from_startup(|name| match name {
            "in_hot_standby" => None,
            other => reported_by_16(other),
        });
        assert_eq!(old.ask(), SessionFacts::Ask);
        let sql = probe_sql(Duration::from_secs(9), old.ask());
        assert!(
            sql.starts_with("SET statement_timeout = 2000;"),
            "capped: {sql}"
        );
        assert!(
            sql.ends_with(
                "; SELECT current_setting('server_version'), current_user, pg_is_in_recovery()"
            ),
            "{sql}"
        );
        let odd = Reported::from_startup(|name| match name {
            "in_hot_standby" => Some("maybe"),
            other => reported_by_16(other),
        });
        assert_eq!(odd.ask(), SessionFacts::Ask);
    }
}
