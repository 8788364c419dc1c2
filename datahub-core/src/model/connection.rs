//! A saved connection ([`Connection`]), its derived health ([`Health`]), one health check as
//! recorded ([`Check`]), five minutes of checks rolled up ([`HealthBucket`]) and what the last
//! check that reached its server saw of it ([`CheckFacts`]).

use time::OffsetDateTime;

use crate::model::draft::ConnectionSpec;
use crate::model::enums::{FailureKind, HealthStatus, StepName};
use crate::{ConnectionId, UserId};

/// A saved connection: its spec plus what the server keeps about it. Holds no secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// Server-assigned id (UUID v7).
    pub id: ConnectionId,
    /// The validated settings.
    pub spec: ConnectionSpec,
    /// The user who owns it: its creator, or the user an admin or the local operator named.
    /// The nil id when no user owns it (made by the local operator without `--owner`): admins
    /// manage it, others reach it only through grants. See [`Connection::owner_user`].
    pub owner: UserId,
    /// Bumped on every change, starting at 1; an edit names the version it read (optimistic
    /// concurrency).
    pub version: u64,
    /// Whether a password is stored. Responses show this, never the password.
    pub password_set: bool,
    /// When it was created (UTC).
    pub created_at: OffsetDateTime,
    /// When it was last changed (UTC).
    pub updated_at: OffsetDateTime,
    /// The latest derived health.
    pub health: Health,
}

impl Connection {
    /// A newly created connection: a fresh id, version 1, health unknown, created and updated
    /// `at` (normalised to UTC).
    pub fn create(spec: ConnectionSpec, owner: UserId, at: OffsetDateTime) -> Self {
        let at = at.to_offset(time::UtcOffset::UTC);
        Self {
            id: ConnectionId::new(),
            spec,
            owner,
            version: Self::FIRST_VERSION,
            password_set: true,
            created_at: at,
            updated_at: at,
            health: Health::default(),
        }
    }

    /// The user who owns it, or `None` when no user does (the nil id in [`Connection::owner`]).
    pub fn owner_user(&self) -> Option<UserId> {
        (!self.owner.as_uuid().is_nil()).then_some(self.owner)
    }

    /// The version of a newly created connection.
    pub const FIRST_VERSION: u64 = 1;

    /// Replaces the spec after an edit: bumps the version and sets `updated_at` (UTC).
    /// The health is kept; the monitor re-derives it on the next check.
    pub fn update(&mut self, spec: ConnectionSpec, at: OffsetDateTime) {
        self.spec = spec;
        self.version = self.version.saturating_add(1);
        self.updated_at = at.to_offset(time::UtcOffset::UTC);
    }
}

/// The derived health of a connection. `Default`: unknown, never checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// The derived status.
    pub status: HealthStatus,
    /// When the last check finished (UTC); `None` if never checked.
    pub checked_at: Option<OffsetDateTime>,
    /// The latency of the last successful check, in milliseconds.
    pub latency_ms: Option<u32>,
    /// Why the last check failed; `None` when it succeeded or never ran.
    pub error_kind: Option<FailureKind>,
    /// The share of successful checks in the last 24 hours, from 0.0 to 1.0; `None` without
    /// checks in that window.
    pub uptime_24h: Option<f64>,
    /// What the latest check that reached the server (its probe query answered) saw; `None`
    /// until one did. A check that fails before that leaves the previous facts in place.
    pub facts: Option<CheckFacts>,
}

/// The result of one health check, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The connection checked.
    pub connection: ConnectionId,
    /// When the check finished (UTC).
    pub at: OffsetDateTime,
    /// Whether it succeeded.
    pub ok: bool,
    /// Total time of the check in milliseconds.
    pub latency_ms: u32,
    /// Why it failed.
    pub error_kind: Option<FailureKind>,
    /// The step it failed in; `None` on success, and for checks recorded before steps were.
    pub step: Option<StepName>,
    /// The status derived after this check.
    pub status: HealthStatus,
}

/// Five minutes of one connection's checks, rolled up once they are older than the monitor's
/// detail window (`MonitorConfig::detail_window`): what the history keeps of them afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthBucket {
    /// The connection checked.
    pub connection: ConnectionId,
    /// When the five minutes start (UTC, a multiple of [`HealthBucket::WIDTH`] since the epoch).
    pub start: OffsetDateTime,
    /// Checks that finished in these five minutes.
    pub checks: u32,
    /// Of those, the ones that failed.
    pub failures: u32,
    /// The median latency of the successful ones (the lower median for an even count), in
    /// milliseconds; `None` when none succeeded.
    pub latency_p50_ms: Option<u32>,
    /// The highest latency of the successful ones, in milliseconds; `None` when none succeeded.
    pub latency_max_ms: Option<u32>,
    /// The worst status derived after any of them (unknown < healthy < degraded < down).
    pub worst: HealthStatus,
}

impl HealthBucket {
    /// The width of a bucket: 5 minutes.
    pub const WIDTH: time::Duration = time::Duration::minutes(5);

    /// The start of the bucket holding `at`.
    pub fn start_of(at: OffsetDateTime) -> OffsetDateTime {
        let width = Self::WIDTH.whole_seconds();
        let start = at.unix_timestamp().div_euclid(width) * width;
        OffsetDateTime::from_unix_timestamp(start).unwrap_or(at)
    }
}

/// The most characters of a server-supplied text (version, certificate subject, TLS names) kept
/// in [`CheckFacts`]: the server chooses them, so their size is bounded before they are stored.
pub const MAX_FACT_CHARS: usize = 256;

/// What one check that reached the server saw of it: when, the server's facts and the TLS
/// facts. Holds no secret; every text is cut to [`MAX_FACT_CHARS`] characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFacts {
    /// When the check finished (UTC).
    pub at: OffsetDateTime,
    /// What the probe query read; `None` when not known.
    pub server: Option<ServerInfo>,
    /// What the TLS handshake showed; `None` when the connection was not encrypted.
    pub tls: Option<TlsInfo>,
}

/// The server as a check's probe query saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `server_version`, e.g. `16.4`.
    pub version: String,
    /// `pg_is_in_recovery()`: true on a standby.
    pub in_recovery: bool,
    /// Client connections open on the server, when read.
    pub connections_used: Option<u32>,
    /// `max_connections`, when read.
    pub max_connections: Option<u32>,
}

/// The TLS session as a check's handshake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The protocol version, e.g. `TLSv1.3`.
    pub protocol: Option<String>,
    /// The cipher suite's IANA name, e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: Option<String>,
    /// The server certificate's subject.
    pub peer_subject: Option<String>,
    /// When the server certificate expires (UTC).
    pub peer_not_after: Option<OffsetDateTime>,
}

/// `text` cut to at most [`MAX_FACT_CHARS`] characters.
pub fn bounded_fact(text: &str) -> String {
    text.chars().take(MAX_FACT_CHARS).collect()
}
