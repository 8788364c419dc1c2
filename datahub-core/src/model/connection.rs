//! A saved connection ([`Connection`]) and its derived health ([`Health`]).

use time::OffsetDateTime;

use crate::model::draft::ConnectionSpec;
use crate::model::enums::{FailureKind, HealthStatus};
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
}
