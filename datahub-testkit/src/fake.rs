//! A cheap loopback PostgreSQL target for scale runs: [`FakeTarget`] speaks just enough of the
//! PostgreSQL protocol (version 3) for a health check, with none of a real server's cost.
//!
//! What it answers, on one `127.0.0.1` listener shared by any number of connections (names of
//! databases and users are not checked, so every saved connection may point at the same port):
//! - `SSLRequest` and `GSSENCRequest`: `N` (no TLS, no GSSAPI), then the start-up message;
//! - the start-up message: `AuthenticationOk` at once (trust: no password is asked, so none is
//!   ever sent), the usual `ParameterStatus` set (PostgreSQL 16's, or without `in_hot_standby`
//!   once told to [act as PostgreSQL 13](FakeTarget::act_as_pre_14)), `BackendKeyData` and `ReadyForQuery`; or, for
//!   a database made [down](FakeTarget::set_down), a `FATAL` `57P03` ("not accepting
//!   connections") and a close, as a server being shut down answers;
//! - simple queries (`Q`), statement by statement: `SET …` completes as `SET`; `SHOW
//!   max_connections` answers [`FAKE_MAX_CONNECTIONS`]; the prober's backends query (any
//!   `SELECT` naming `pg_stat_get_backend_idset`) answers one row per session open on this
//!   target now (a user oid and a database oid, neither 0, and [`FAKE_MAX_CONNECTIONS`] when it
//!   names `max_connections`); a `SELECT` naming `server_version`
//!   (the prober's question for a server whose start-up left out a fact) answers the server
//!   version, the start-up's user and `f` for recovery; `SELECT 1` answers `1`; anything else
//!   is an `ERROR` `0A000` that ends the query string, as PostgreSQL ends one at its first
//!   error;
//! - the extended protocol: one `ERROR` `0A000`, then `ReadyForQuery` at the next `Sync`;
//! - `Terminate`: close.
//!
//! Bytes that are not this framing close the connection. Every read has a deadline
//! ([`IDLE_TIMEOUT`]), so a client that goes quiet costs a task for at most that long.
//!
//! It never dials anything: it only listens on loopback.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::error::{Error, ErrorKind, Result};

/// The `server_version` the fake target reports.
pub const FAKE_SERVER_VERSION: &str = "16.4";

/// The `max_connections` the fake target reports: far above what a run opens at once, so a
/// check never sees the server nearly full.
pub const FAKE_MAX_CONNECTIONS: u32 = 10_000;

/// How long the fake target waits for a client's next bytes before it hangs up.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest message the fake target reads (a start-up packet or a query).
const MAX_MESSAGE: usize = 64 * 1024;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;
const PROTOCOL_3: i32 = 196_608;
/// PostgreSQL's `text` type.
const TEXT_OID: i32 = 25;

/// A fake PostgreSQL target on `127.0.0.1`; dropping it stops the listener and every connection.
#[derive(Debug)]
pub struct FakeTarget {
    addr: SocketAddr,
    state: Arc<State>,
    accept_task: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct State {
    /// Databases whose start-up is refused.
    down: Mutex<HashSet<String>>,
    /// Sessions that got past start-up and have not closed yet.
    open: AtomicU64,
    /// Sessions that got past start-up, ever.
    sessions: AtomicU64,
    /// Start-ups refused because their database was down.
    refused: AtomicU64,
    /// Facts queries answered.
    facts: AtomicU64,
    /// Start-ups leave out `in_hot_standby`, as PostgreSQL 13 and older do.
    pre_14: AtomicBool,
}

impl State {
    fn is_down(&self, database: &str) -> bool {
        self.down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(database)
    }
}

/// Decrements the open-session count when a session ends, however it ends.
struct OpenSession(Arc<State>);

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl FakeTarget {
    /// Starts listening on a free `127.0.0.1` port.
    ///
    /// # Errors
    /// `InvalidInput` outside a tokio runtime; `Io` when the port cannot be bound.
    pub async fn start() -> Result<FakeTarget> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::with_source(
                ErrorKind::InvalidInput,
                "the fake target needs a tokio runtime",
                e,
            )
        })?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| Error::io("binding the fake target", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the fake target's address", e))?;
        let state = Arc::new(State::default());
        let accept_state = Arc::clone(&state);
        let accept_task = runtime.spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else {
                            // Out of file descriptors and the like: let the client retry.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        sessions.spawn(serve(stream, Arc::clone(&accept_state)));
                    }
                    // Reap finished sessions so the set does not grow.
                    Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                }
            }
        });
        Ok(FakeTarget {
            addr,
            state,
            accept_task: Some(accept_task),
        })
    }

    /// The listening address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Makes `database` refuse start-ups (`down`) or answer again.
    pub fn set_down(&self, database: &str, down: bool) {
        let mut set = self
            .state
            .down
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if down {
            set.insert(database.to_owned());
        } else {
            set.remove(database);
        }
    }

    /// Sessions that got past start-up since the target started.
    pub fn sessions(&self) -> u64 {
        self.state.sessions.load(Ordering::Relaxed)
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> u64 {
        self.state.open.load(Ordering::Relaxed)
    }

    /// Start-ups refused because their database was down.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }

    /// Facts queries answered.
    pub fn facts_answered(&self) -> u64 {
        self.state.facts.load(Ordering::Relaxed)
    }

    /// From now on, start-ups leave out `in_hot_standby`, as PostgreSQL 13 and older do (the
    /// prober then asks for the facts it was not told).
    pub fn act_as_pre_14(&self) {
        self.state.pre_14.store(true, Ordering::Relaxed);
    }
}

impl Drop for FakeTarget {
    fn drop(&mut self) {
        // Aborting the accept task drops the listener and its JoinSet, which aborts every
        // session task and so closes their sockets.
        if let Some(task) = self.accept_task.take() {
            task.abort();
        }
    }
}

/// One client connection, start to end. Errors only end the session.
async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let _ = session(&mut stream, &state).await;
}

async fn session(stream: &mut TcpStream, state: &Arc<State>) -> io::Result<()> {
    // Start-up: at most one SSLRequest and one GSSENCRequest before the start-up message.
    let mut params = None;
    for _ in 0..3 {
        let length = read_i32(stream).await?;
        let body = read_body(stream, length, 4).await?;
        let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        match code {
            SSL_REQUEST | GSSENC_REQUEST => stream.write_all(b"N").await?,
            CANCEL_REQUEST => return Ok(()),
            PROTOCOL_3 => {
                params = Some(startup_params(&body[4..]));
                break;
            }
            _ => {
                let mut out = Vec::new();
                error_response(&mut out, "FATAL", "0A000", "unsupported frontend protocol");
                stream.write_all(&out).await?;
                return Ok(());
            }
        }
    }
    let Some(params) = params else {
        return Ok(());
    };
    if state.is_down(&params.database) {
        state.refused.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        error_response(
            &mut out,
            "FATAL",
            "57P03",
            "the database system is not accepting connections",
        );
        stream.write_all(&out).await?;
        return Ok(());
    }
    state.open.fetch_add(1, Ordering::Relaxed);
    state.sessions.fetch_add(1, Ordering::Relaxed);
    let _open = OpenSession(Arc::clone(state));

    let mut out = Vec::with_capacity(512);
    message(&mut out, b'R', &0i32.to_be_bytes());
    let pre_14 = state.pre_14.load(Ordering::Relaxed);
    for (name, value) in [
        ("application_name", params.application_name.as_str()),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("IntervalStyle", "postgres"),
        ("is_superuser", "off"),
        ("server_encoding", "UTF8"),
        ("in_hot_standby", "off"),
        ("server_version", FAKE_SERVER_VERSION),
        ("session_authorization", params.user.as_str()),
        ("standard_conforming_strings", "on"),
        ("TimeZone", "UTC"),
    ] {
        if pre_14 && name == "in_hot_standby" {
            continue;
        }
        let mut body = Vec::with_capacity(name.len() + value.len() + 2);
        cstring(&mut body, name);
        cstring(&mut body, value);
        message(&mut out, b'S', &body);
    }
    let mut key = Vec::with_capacity(8);
    let n = state.sessions.load(Ordering::Relaxed);
    key.extend_from_slice(&(n as i32).to_be_bytes());
    key.extend_from_slice(&(n.wrapping_mul(2_654_435_761) as i32).to_be_bytes());
    message(&mut out, b'K', &key);
    message(&mut out, b'Z', b"I");
    stream.write_all(&out).await?;

    // Queries until Terminate.
    let mut skipping_to_sync = false;
    loop {
        let mut kind = [0u8; 1];
        read_exact(stream, &mut kind).await?;
        let length = read_i32(stream).await?;
        let body = read_body(stream, length, 0).await?;
        out.clear();
        match kind[0] {
            b'X' => return Ok(()),
            b'Q' => {
                let text = body.strip_suffix(&[0]).unwrap_or(&body);
                let text = String::from_utf8_lossy(text);
                simple_query(&mut out, &text, &params, state);
                message(&mut out, b'Z', b"I");
            }
            b'S' => {
                skipping_to_sync = false;
                message(&mut out, b'Z', b"I");
            }
            b'P' | b'B' | b'D' | b'E' | b'C' | b'H' | b'F' => {
                if !skipping_to_sync {
                    skipping_to_sync = true;
                    error_response(
                        &mut out,
                        "ERROR",
                        "0A000",
                        "the fake target answers simple queries only",
                    );
                }
            }
            _ => return Ok(()),
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
    }
}

/// What the start-up message said.
#[derive(Debug, Default)]
struct Params {
    user: String,
    database: String,
    application_name: String,
}

/// Reads the start-up message's `name\0value\0…\0` pairs.
fn startup_params(bytes: &[u8]) -> Params {
    let mut fields = bytes
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned());
    let mut params = Params::default();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match name.as_str() {
            "" => break,
            "user" => params.user = value,
            "database" => params.database = value,
            "application_name" => params.application_name = value,
            _ => {}
        }
    }
    if params.database.is_empty() {
        params.database = params.user.clone();
    }
    params
}

/// Answers each statement of a simple query string, stopping at the first error.
fn simple_query(out: &mut Vec<u8>, text: &str, params: &Params, state: &State) {
    let statements: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if statements.is_empty() {
        message(out, b'I', &[]);
        return;
    }
    for statement in statements {
        let upper = statement.to_ascii_uppercase();
        if upper.starts_with("SET ") {
            command_complete(out, "SET");
        } else if upper == "SHOW MAX_CONNECTIONS" {
            let max = FAKE_MAX_CONNECTIONS.to_string();
            rows(out, &["max_connections"], &[&[max.as_str()]]);
        } else if upper.starts_with("SELECT") && upper.contains("PG_STAT_GET_BACKEND_IDSET") {
            state.facts.fetch_add(1, Ordering::Relaxed);
            let open = state.open.load(Ordering::Relaxed);
            let max = FAKE_MAX_CONNECTIONS.to_string();
            let (names, session): (&[&str], &[&str]) = if upper.contains("MAX_CONNECTIONS") {
                (
                    &[
                        "pg_stat_get_backend_userid",
                        "pg_stat_get_backend_dbid",
                        "current_setting",
                    ],
                    &["10", "16384", max.as_str()],
                )
            } else {
                (
                    &["pg_stat_get_backend_userid", "pg_stat_get_backend_dbid"],
                    &["10", "16384"],
                )
            };
            let backends = vec![session; usize::try_from(open).unwrap_or(0)];
            rows(out, names, &backends);
        } else if upper.starts_with("SELECT") && upper.contains("SERVER_VERSION") {
            rows(
                out,
                &["current_setting", "current_user", "pg_is_in_recovery"],
                &[&[FAKE_SERVER_VERSION, params.user.as_str(), "f"]],
            );
        } else if upper == "SELECT 1" {
            rows(out, &["?column?"], &[&["1"]]);
        } else {
            error_response(
                out,
                "ERROR",
                "0A000",
                "the fake target does not know this statement",
            );
            return;
        }
    }
}

/// Rows of text columns: `RowDescription`, a `DataRow` per row, `CommandComplete`.
fn rows(out: &mut Vec<u8>, names: &[&str], values: &[&[&str]]) {
    let mut description = Vec::with_capacity(64 * names.len());
    description.extend_from_slice(&(names.len() as i16).to_be_bytes());
    for name in names {
        cstring(&mut description, name);
        description.extend_from_slice(&0i32.to_be_bytes()); // table oid
        description.extend_from_slice(&0i16.to_be_bytes()); // column number
        description.extend_from_slice(&TEXT_OID.to_be_bytes());
        description.extend_from_slice(&(-1i16).to_be_bytes()); // variable length
        description.extend_from_slice(&(-1i32).to_be_bytes()); // no modifier
        description.extend_from_slice(&0i16.to_be_bytes()); // text format
    }
    message(out, b'T', &description);
    for row in values {
        let mut data = Vec::with_capacity(16 * row.len());
        data.extend_from_slice(&(row.len() as i16).to_be_bytes());
        for value in *row {
            data.extend_from_slice(&(value.len() as i32).to_be_bytes());
            data.extend_from_slice(value.as_bytes());
        }
        message(out, b'D', &data);
    }
    command_complete(out, &format!("SELECT {}", values.len()));
}

fn command_complete(out: &mut Vec<u8>, tag: &str) {
    let mut body = Vec::with_capacity(tag.len() + 1);
    cstring(&mut body, tag);
    message(out, b'C', &body);
}

fn error_response(out: &mut Vec<u8>, severity: &str, code: &str, text: &str) {
    let mut body = Vec::with_capacity(64 + text.len());
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', text),
    ] {
        body.push(field);
        cstring(&mut body, value);
    }
    body.push(0);
    message(out, b'E', &body);
}

/// Appends one backend message: type byte, length (itself included), body.
fn message(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
}

fn cstring(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

async fn read_exact<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> io::Result<()> {
    match tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(buf)).await {
        Ok(read) => read.map(|_| ()),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "client idle")),
    }
}

async fn read_i32<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<i32> {
    let mut bytes = [0u8; 4];
    read_exact(stream, &mut bytes).await?;
    Ok(i32::from_be_bytes(bytes))
}

/// Reads the rest of a message whose length field said `length`, which must leave at least
/// `min` bytes of body.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    length: i32,
    min: usize,
) -> io::Result<Vec<u8>> {
    let body = usize::try_from(length)
        .ok()
        .and_then(|l| l.checked_sub(4))
        .filter(|l| *l >= min && *l <= MAX_MESSAGE)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not PostgreSQL framing"))?;
    let mut buf = vec![0u8; body];
    read_exact(stream, &mut buf).await?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_params_read_user_database_and_application() {
        let bytes = b"user\0app\0database\0appdb\0application_name\0probe\0\0";
        let params = startup_params(bytes);
        assert_eq!(params.user, "app");
        assert_eq!(params.database, "appdb");
        assert_eq!(params.application_name, "probe");
        let defaulted = startup_params(b"user\0app\0\0");
        assert_eq!(defaulted.database, "app");
    }

    #[test]
    fn a_query_string_stops_at_its_first_error() {
        let state = State::default();
        let params = Params {
            user: "u".into(),
            database: "d".into(),
            application_name: String::new(),
        };
        let mut out = Vec::new();
        simple_query(
            &mut out,
            "SET a = 1; DROP TABLE x; SELECT 1",
            &params,
            &state,
        );
        let kinds: Vec<u8> = frames(&out).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, vec![b'C', b'E']);
    }

    #[test]
    fn the_facts_query_answers_a_row_per_open_session() {
        let (state, out) = answer_with_two_sessions(
            "SET statement_timeout = 5; SHOW max_connections; \
             SELECT pg_stat_get_backend_userid(b), pg_stat_get_backend_dbid(b) \
             FROM pg_stat_get_backend_idset() b; \
             SELECT current_setting('server_version'), current_user, pg_is_in_recovery()",
        );
        let frames = frames(&out);
        let kinds: Vec<u8> = frames.iter().map(|(k, _)| *k).collect();
        let expected = [
            &b"C"[..],    // SET
            &b"TDC"[..],  // SHOW: one row
            &b"TDDC"[..], // the backends: two open sessions
            &b"TDC"[..],  // the asked facts
        ]
        .concat();
        assert_eq!(kinds, expected);
        assert_eq!(&frames[4].1[..2], &2i16.to_be_bytes());
        assert_eq!(&frames[9].1[..2], &3i16.to_be_bytes());
        assert_eq!(state.facts.load(Ordering::Relaxed), 1);
    }

    /// The prober's query with `max_connections` on each backend's row gets a third column.
    #[test]
    fn the_backends_rows_carry_max_connections_when_asked() {
        let (_, out) = answer_with_two_sessions(
            "SET statement_timeout = 5; \
             SELECT pg_stat_get_backend_userid(b), pg_stat_get_backend_dbid(b), \
             current_setting('max_connections') FROM pg_stat_get_backend_idset() b",
        );
        let frames = frames(&out);
        let kinds: Vec<u8> = frames.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, b"CTDDC");
        assert_eq!(&frames[1].1[..2], &3i16.to_be_bytes());
        let max = FAKE_MAX_CONNECTIONS.to_string();
        assert!(frames[2].1.ends_with(max.as_bytes()), "{:?}", frames[2].1);
    }

    /// The answer to `sql` from a target with two sessions open, and its state after.
    fn answer_with_two_sessions(sql: &str) -> (State, Vec<u8>) {
        let state = State::default();
        state.open.store(2, Ordering::Relaxed);
        let params = Params {
            user: "u".into(),
            database: "d".into(),
            application_name: String::new(),
        };
        let mut out = Vec::new();
        simple_query(&mut out, sql, &params, &state);
        (state, out)
    }

    /// Splits backend messages into (type, body).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut all = Vec::new();
        while !bytes.is_empty() {
            let kind = bytes[0];
            let len = i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
            all.push((kind, bytes[5..1 + len].to_vec()));
            bytes = &bytes[1 + len..];
        }
        all
    }
}
