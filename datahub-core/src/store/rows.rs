//! Reading the rows both stores keep alike (users, tokens, sessions, checks, audit, policy and
//! health) through [`ColumnRead`]: each backend says only how its driver reads one typed value,
//! and every row is rebuilt here once, each value validated again (a row that does not parse is
//! a `Store` error, "corrupt row"). Also the health facts as written ([`FactColumns`]).

use std::str::FromStr;

use time::OffsetDateTime;
use uuid::Uuid;

use super::columns::{corrupt, corrupt_value};
use super::{StoredSession, StoredToken, StoredUser};
use crate::audit::{AuditEvent, AuditRecord, Outcome};
use crate::model::{
    Check, CheckFacts, Health, HealthStatus, ServerInfo, TargetPolicy, TlsInfo, TokenInfo, User,
};
use crate::{ConnectionId, Error, Result, SessionId, TokenId, UserId};

/// How one backend reads a typed value from one of its rows. The backends store some values
/// differently (SQLite keeps times as Unix microseconds, ids as text, booleans as integers and
/// lists in its own encoding), so each implements these reads over its driver's row; the row
/// parsers below ([`user_row`], [`health_row`] and the rest) are written once against them.
///
/// Every method errs with `Store` ("corrupt row in `table`") on a missing column, a NULL where
/// none may be, or a value of the wrong type or out of range.
pub(super) trait ColumnRead {
    fn text(&self, table: &'static str, column: &str) -> Result<String>;
    fn opt_text(&self, table: &'static str, column: &str) -> Result<Option<String>>;
    fn bool(&self, table: &'static str, column: &str) -> Result<bool>;
    fn opt_bool(&self, table: &'static str, column: &str) -> Result<Option<bool>>;
    fn int(&self, table: &'static str, column: &str) -> Result<i64>;
    /// A whole number from a column PostgreSQL keeps as `integer` (32 bits).
    fn int32(&self, table: &'static str, column: &str) -> Result<i64>;
    fn opt_int(&self, table: &'static str, column: &str) -> Result<Option<i64>>;
    fn opt_f64(&self, table: &'static str, column: &str) -> Result<Option<f64>>;
    fn uuid(&self, table: &'static str, column: &str) -> Result<Uuid>;
    fn opt_uuid(&self, table: &'static str, column: &str) -> Result<Option<Uuid>>;
    fn time(&self, table: &'static str, column: &str) -> Result<OffsetDateTime>;
    fn opt_time(&self, table: &'static str, column: &str) -> Result<Option<OffsetDateTime>>;
    fn bytes(&self, table: &'static str, column: &str) -> Result<Vec<u8>>;
    fn text_list(&self, table: &'static str, column: &str) -> Result<Vec<String>>;

    /// A count or version: a stored integer that may not be negative.
    fn u64(&self, table: &'static str, column: &str) -> Result<u64> {
        u64::try_from(self.int(table, column)?).map_err(|_| corrupt_value(table, column))
    }

    fn u32(&self, table: &'static str, column: &str) -> Result<u32> {
        u32::try_from(self.int(table, column)?).map_err(|_| corrupt_value(table, column))
    }

    fn opt_u32(&self, table: &'static str, column: &str) -> Result<Option<u32>> {
        self.opt_int(table, column)?
            .map(|v| u32::try_from(v).map_err(|_| corrupt_value(table, column)))
            .transpose()
    }

    /// A stored spelling, parsed with the type's own `FromStr`.
    fn parsed<T: FromStr<Err = Error>>(&self, table: &'static str, column: &str) -> Result<T> {
        self.text(table, column)?
            .parse()
            .map_err(|e| corrupt(table, e))
    }

    fn opt_parsed<T: FromStr<Err = Error>>(
        &self,
        table: &'static str,
        column: &str,
    ) -> Result<Option<T>> {
        self.opt_text(table, column)?
            .map(|s| s.parse().map_err(|e| corrupt(table, e)))
            .transpose()
    }

    /// A SHA-256 digest: exactly 32 bytes.
    fn hash(&self, table: &'static str, column: &str) -> Result<[u8; 32]> {
        self.bytes(table, column)?
            .try_into()
            .map_err(|_| corrupt_value(table, column))
    }
}

/// Implements the required reads of [`ColumnRead`], each by one function of the backend's codec
/// taking `(row, table, column)`: `column_reads! { text: String = get; … }`.
macro_rules! column_reads {
    ($($name:ident: $ty:ty = $read:path;)*) => {
        $(
            fn $name(&self, table: &'static str, column: &str) -> $crate::Result<$ty> {
                $read(self, table, column)
            }
        )*
    };
}
pub(super) use column_reads;

/// A `users` row.
pub(super) fn user_row(row: &impl ColumnRead) -> Result<StoredUser> {
    let t = "users";
    Ok(StoredUser {
        user: User {
            id: UserId::from_uuid(row.uuid(t, "id")?),
            username: row.text(t, "username")?,
            role: row.parsed(t, "role")?,
            disabled: row.bool(t, "disabled")?,
            created_at: row.time(t, "created_at")?,
            updated_at: row.time(t, "updated_at")?,
        },
        password_hash: row.text(t, "password_hash")?,
    })
}

/// A `tokens` row.
pub(super) fn token_row(row: &impl ColumnRead) -> Result<StoredToken> {
    let t = "tokens";
    Ok(StoredToken {
        info: TokenInfo {
            id: TokenId::from_uuid(row.uuid(t, "id")?),
            user: UserId::from_uuid(row.uuid(t, "user_id")?),
            name: row.text(t, "name")?,
            read_only: row.bool(t, "read_only")?,
            created_at: row.time(t, "created_at")?,
            expires_at: row.opt_time(t, "expires_at")?,
            revoked_at: row.opt_time(t, "revoked_at")?,
            last_used_at: row.opt_time(t, "last_used_at")?,
        },
        hash: row.hash(t, "hash")?,
    })
}

/// A `sessions` row.
pub(super) fn session_row(row: &impl ColumnRead) -> Result<StoredSession> {
    let t = "sessions";
    let hash = row.hash(t, "hash")?;
    Ok(StoredSession {
        id: SessionId::from_uuid(row.uuid(t, "id")?),
        user: UserId::from_uuid(row.uuid(t, "user_id")?),
        hash,
        created_at: row.time(t, "created_at")?,
        expires_at: row.time(t, "expires_at")?,
        last_seen_at: row.time(t, "last_seen_at")?,
        client_addr: row.opt_text(t, "client_addr")?,
        user_agent: row.opt_text(t, "user_agent")?,
    })
}

/// A `health_checks` row.
pub(super) fn check_row(row: &impl ColumnRead) -> Result<Check> {
    let t = "health_checks";
    Ok(Check {
        connection: ConnectionId::from_uuid(row.uuid(t, "connection_id")?),
        at: row.time(t, "at")?,
        ok: row.bool(t, "ok")?,
        latency_ms: row.u32(t, "latency_ms")?,
        error_kind: row.opt_parsed(t, "error_kind")?,
        step: row.opt_parsed(t, "step")?,
        status: row.parsed(t, "status")?,
    })
}

/// The columns [`audit_row`] reads.
pub(super) const AUDIT_COLUMNS: &str = "seq, at, actor, actor_name, action, target, outcome, \
    changed_fields, client_addr, request_id, prev_hash, hash";

/// An `audit_log` row (with [`AUDIT_COLUMNS`]); its `seq` starts at 1.
pub(super) fn audit_row(row: &impl ColumnRead) -> Result<AuditRecord> {
    let t = "audit_log";
    let outcome = row.text(t, "outcome")?;
    let outcome = Outcome::parse(&outcome).ok_or_else(|| corrupt_value(t, "outcome"))?;
    let seq = row.u64(t, "seq")?;
    if seq == 0 {
        return Err(corrupt_value(t, "seq"));
    }
    Ok(AuditRecord {
        seq,
        event: AuditEvent {
            at: row.time(t, "at")?,
            actor: row.opt_uuid(t, "actor")?.map(UserId::from_uuid),
            actor_name: row.text(t, "actor_name")?,
            action: row.text(t, "action")?,
            target: row.opt_text(t, "target")?,
            outcome,
            changed_fields: row.text_list(t, "changed_fields")?,
            client_addr: row.opt_text(t, "client_addr")?,
            request_id: row.opt_text(t, "request_id")?,
        },
        prev_hash: row.hash(t, "prev_hash")?,
        hash: row.hash(t, "hash")?,
    })
}

/// The `policy` row.
pub(super) fn policy_row(row: &impl ColumnRead) -> Result<TargetPolicy> {
    let t = "policy";
    Ok(TargetPolicy {
        allow_cidrs: row.text_list(t, "allow_cidrs")?,
        deny_cidrs: row.text_list(t, "deny_cidrs")?,
        min_tls_mode: row.parsed(t, "min_tls_mode")?,
    })
}

/// The health columns [`health_row`] reads, from the table alias `h` (a left join).
pub(super) const HEALTH_COLUMNS: &str = "h.status AS h_status, h.checked_at AS h_checked_at, \
    h.latency_ms AS h_latency_ms, h.error_kind AS h_error_kind, h.uptime_24h AS h_uptime_24h, \
    h.facts_at AS h_facts_at, h.server_version AS h_server_version, \
    h.server_in_recovery AS h_server_in_recovery, \
    h.server_connections_used AS h_server_connections_used, \
    h.server_max_connections AS h_server_max_connections, h.tls_protocol AS h_tls_protocol, \
    h.tls_cipher AS h_tls_cipher, h.tls_peer_subject AS h_tls_peer_subject, \
    h.tls_peer_not_after AS h_tls_peer_not_after";

/// The current health from [`HEALTH_COLUMNS`]; no health row is `unknown`, never checked.
pub(super) fn health_row(row: &impl ColumnRead) -> Result<Health> {
    let t = "connection_health";
    let Some(status) = row.opt_parsed::<HealthStatus>(t, "h_status")? else {
        return Ok(Health::default());
    };
    let uptime_24h = row.opt_f64(t, "h_uptime_24h")?;
    if let Some(u) = uptime_24h
        && !(0.0..=1.0).contains(&u)
    {
        return Err(corrupt_value(t, "uptime_24h"));
    }
    Ok(Health {
        status,
        checked_at: row.opt_time(t, "h_checked_at")?,
        latency_ms: row.opt_u32(t, "h_latency_ms")?,
        error_kind: row.opt_parsed(t, "h_error_kind")?,
        uptime_24h,
        facts: facts_row(row)?,
    })
}

/// The facts of the last check that reached the server, from [`HEALTH_COLUMNS`].
fn facts_row(row: &impl ColumnRead) -> Result<Option<CheckFacts>> {
    let t = "connection_health";
    let Some(at) = row.opt_time(t, "h_facts_at")? else {
        return Ok(None);
    };
    let server = match row.opt_text(t, "h_server_version")? {
        Some(version) => Some(ServerInfo {
            version,
            in_recovery: row.opt_bool(t, "h_server_in_recovery")?.unwrap_or(false),
            connections_used: row.opt_u32(t, "h_server_connections_used")?,
            max_connections: row.opt_u32(t, "h_server_max_connections")?,
        }),
        None => None,
    };
    let tls = TlsInfo {
        protocol: row.opt_text(t, "h_tls_protocol")?,
        cipher: row.opt_text(t, "h_tls_cipher")?,
        peer_subject: row.opt_text(t, "h_tls_peer_subject")?,
        peer_not_after: row.opt_time(t, "h_tls_peer_not_after")?,
    };
    let encrypted = tls.protocol.is_some()
        || tls.cipher.is_some()
        || tls.peer_subject.is_some()
        || tls.peer_not_after.is_some();
    Ok(Some(CheckFacts {
        at,
        server,
        tls: encrypted.then_some(tls),
    }))
}

/// The fact columns of `connection_health` as written, with times as the backend stores them
/// (`T`): all `None` when `health` brings no facts (the upsert then keeps the stored ones).
#[derive(Debug)]
pub(super) struct FactColumns<T> {
    pub(super) at: Option<T>,
    pub(super) server_version: Option<String>,
    pub(super) in_recovery: Option<bool>,
    pub(super) connections_used: Option<i64>,
    pub(super) max_connections: Option<i64>,
    pub(super) tls_protocol: Option<String>,
    pub(super) tls_cipher: Option<String>,
    pub(super) tls_peer_subject: Option<String>,
    pub(super) tls_peer_not_after: Option<T>,
}

impl<T> FactColumns<T> {
    /// The fact columns of `health`, each time stored as `time` makes it.
    pub(super) fn of(health: &Health, time: impl Fn(OffsetDateTime) -> T) -> Self {
        let Some(facts) = &health.facts else {
            return Self {
                at: None,
                server_version: None,
                in_recovery: None,
                connections_used: None,
                max_connections: None,
                tls_protocol: None,
                tls_cipher: None,
                tls_peer_subject: None,
                tls_peer_not_after: None,
            };
        };
        let server = facts.server.as_ref();
        let tls = facts.tls.as_ref();
        Self {
            at: Some(time(facts.at)),
            server_version: server.map(|s| s.version.clone()),
            in_recovery: server.map(|s| s.in_recovery),
            connections_used: server.and_then(|s| s.connections_used).map(i64::from),
            max_connections: server.and_then(|s| s.max_connections).map(i64::from),
            tls_protocol: tls.and_then(|t| t.protocol.clone()),
            tls_cipher: tls.and_then(|t| t.cipher.clone()),
            tls_peer_subject: tls.and_then(|t| t.peer_subject.clone()),
            tls_peer_not_after: tls.and_then(|t| t.peer_not_after).map(time),
        }
    }
}
