//! Conversions between the model and PostgreSQL values, and the parsing of rows back into the
//! model. Every value read back is validated again by the model's own parse functions; a row
//! that does not parse is a `Store` error ("corrupt row"), never a panic or half-valid data.

use std::str::FromStr;

use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditRecord, Outcome};
use crate::crypto::{KekId, SealedValue, WrappedDek};
use crate::model::{
    Check, CheckFacts, Connection, ConnectionSpec, Health, HealthStatus, NamedGrant, ServerInfo,
    TargetPolicy, TlsInfo, TokenInfo, User,
};
use crate::rbac::{Grant, GrantLevel, Grantee};
use crate::store::{SealedSecrets, StoredConnection, StoredToken, StoredUser};
use crate::{ConnectionId, Error, ErrorKind, Result, TeamId, TokenId, UserId};

pub(super) use crate::store::columns::corrupt;
use crate::store::columns::{CONNECTIONS, ConnectionColumns, SpecColumns, corrupt_value};

/// Reads one column; a missing column, a NULL where none may be, or a value of the wrong type is
/// a corrupt row.
pub(super) fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    table: &'static str,
    column: &str,
) -> Result<T> {
    row.try_get(column).map_err(|e| {
        Error::new(
            ErrorKind::Store,
            format!(
                "corrupt row in {table}: column {column} is missing, null or of the wrong type"
            ),
        )
        .with_source(e)
    })
}

fn get_u64(row: &Row, table: &'static str, column: &str) -> Result<u64> {
    u64::try_from(get::<i64>(row, table, column)?).map_err(|_| corrupt_value(table, column))
}

fn get_u32(row: &Row, table: &'static str, column: &str) -> Result<u32> {
    u32::try_from(get::<i64>(row, table, column)?).map_err(|_| corrupt_value(table, column))
}

fn get_opt_u32(row: &Row, table: &'static str, column: &str) -> Result<Option<u32>> {
    get::<Option<i64>>(row, table, column)?
        .map(|v| u32::try_from(v).map_err(|_| corrupt_value(table, column)))
        .transpose()
}

fn get_i32_as_i64(row: &Row, table: &'static str, column: &str) -> Result<i64> {
    get::<i32>(row, table, column).map(i64::from)
}

/// Parses a stored spelling with the type's own `FromStr`.
fn get_parsed<T: FromStr<Err = Error>>(row: &Row, table: &'static str, column: &str) -> Result<T> {
    let s: &str = get(row, table, column)?;
    s.parse().map_err(|e| corrupt(table, e))
}

fn get_opt_parsed<T: FromStr<Err = Error>>(
    row: &Row,
    table: &'static str,
    column: &str,
) -> Result<Option<T>> {
    get::<Option<&str>>(row, table, column)?
        .map(|s| s.parse().map_err(|e| corrupt(table, e)))
        .transpose()
}

fn get_hash(row: &Row, table: &'static str, column: &str) -> Result<[u8; 32]> {
    let bytes: &[u8] = get(row, table, column)?;
    bytes.try_into().map_err(|_| corrupt_value(table, column))
}

/// A value for a `bigint` column; values above `i64::MAX` are refused as input.
pub(super) fn to_i64(value: u64, field: &'static str) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::invalid(field, "is too large"))
}

/// What a search matches against: name, description, host and tags, lowercased here (the same
/// Unicode folding as the needle, whatever the database's locale).
pub(super) fn search_terms(spec: &ConnectionSpec) -> Vec<String> {
    let mut terms = Vec::with_capacity(3 + spec.tags.len());
    terms.push(spec.name.as_str().to_lowercase());
    if let Some(d) = &spec.description {
        terms.push(d.as_str().to_lowercase());
    }
    terms.push(spec.host.as_str().to_lowercase());
    terms.extend(
        spec.tags
            .as_slice()
            .iter()
            .map(|t| t.as_str().to_lowercase()),
    );
    terms
}

/// Joins the terms in `connection_search.search_text` (migration 2): U+001F, which no name,
/// description, host or tag may contain, so no search can match across two terms.
pub(super) const SEARCH_SEPARATOR: char = '\u{1f}';

/// The distinct runs of three ASCII characters of `text`, sorted, to look up in migration 2's
/// trigram index; none when there are none.
///
/// Only ASCII runs: the index takes its runs with `substr`, which counts characters in a UTF8
/// database but bytes in a `SQL_ASCII` one; runs of ASCII characters are the same either way
/// (no byte of a multi-byte UTF-8 character is ASCII). Fewer runs only narrow less: `LIKE`
/// decides on the rows found. A search without any ASCII run is not looked up in the index.
pub(super) fn trigrams(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let set: std::collections::BTreeSet<String> = chars
        .windows(3)
        .filter(|w| w.iter().all(char::is_ascii))
        .map(|w| w.iter().collect::<String>())
        .collect();
    set.into_iter().collect()
}

/// A `LIKE` pattern (escape character `\`) matching `needle` as a literal, lowercased substring.
pub(super) fn like_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The columns [`connection_meta`] reads, from the table alias `c`.
pub(super) const SPEC_COLUMNS: &str = "c.id, c.name, c.description, c.engine, c.host, c.port, \
    c.database_name, c.username, c.tls_mode, c.tls_ca_cert_pem, c.tls_client_cert_pem, \
    c.tls_channel_binding, c.connect_timeout_ms, c.application_name, c.tags, \
    c.monitoring_enabled, c.monitoring_interval_s, c.monitoring_slow_ms, c.owner, c.version, \
    c.created_at, c.updated_at";

/// The secret columns [`connection_row`] reads, from the table alias `c`.
pub(super) const SECRET_COLUMNS: &str =
    "c.kek_id, c.wrapped_dek, c.sealed_password, c.sealed_client_key";

/// The health columns [`health_from_row`] reads, from the table alias `h` (a left join).
pub(super) const HEALTH_COLUMNS: &str = "h.status AS h_status, h.checked_at AS h_checked_at, \
    h.latency_ms AS h_latency_ms, h.error_kind AS h_error_kind, h.uptime_24h AS h_uptime_24h, \
    h.facts_at AS h_facts_at, h.server_version AS h_server_version, \
    h.server_in_recovery AS h_server_in_recovery, \
    h.server_connections_used AS h_server_connections_used, \
    h.server_max_connections AS h_server_max_connections, h.tls_protocol AS h_tls_protocol, \
    h.tls_cipher AS h_tls_cipher, h.tls_peer_subject AS h_tls_peer_subject, \
    h.tls_peer_not_after AS h_tls_peer_not_after";

/// The non-secret columns of a connection row (with [`SPEC_COLUMNS`]), rebuilt.
fn connection_meta(row: &Row) -> Result<ConnectionColumns> {
    let t = CONNECTIONS;
    let tags: Vec<&str> = get(row, t, "tags")?;
    let spec = SpecColumns {
        name: get(row, t, "name")?,
        description: get(row, t, "description")?,
        engine: get(row, t, "engine")?,
        host: get(row, t, "host")?,
        port: get_i32_as_i64(row, t, "port")?,
        database: get(row, t, "database_name")?,
        username: get(row, t, "username")?,
        tls_mode: get(row, t, "tls_mode")?,
        ca_cert_pem: get(row, t, "tls_ca_cert_pem")?,
        client_cert_pem: get(row, t, "tls_client_cert_pem")?,
        channel_binding: get(row, t, "tls_channel_binding")?,
        connect_timeout_ms: get_i32_as_i64(row, t, "connect_timeout_ms")?,
        application_name: get(row, t, "application_name")?,
        tags,
        monitoring_enabled: get(row, t, "monitoring_enabled")?,
        monitoring_interval_s: get_i32_as_i64(row, t, "monitoring_interval_s")?,
        monitoring_slow_ms: get_i32_as_i64(row, t, "monitoring_slow_ms")?,
    }
    .into_spec()?;
    ConnectionColumns::new(
        ConnectionId::from_uuid(get(row, t, "id")?),
        spec,
        UserId::from_uuid(get(row, t, "owner")?),
        get_u64(row, t, "version")?,
        get(row, t, "created_at")?,
        get(row, t, "updated_at")?,
    )
}

/// Parses a wrapped data key and checks that it names the KEK its `kek_id` column says.
fn wrapped_dek(row: &Row, table: &'static str) -> Result<WrappedDek> {
    let dek = WrappedDek::parse(get(row, table, "wrapped_dek")?).map_err(|e| corrupt(table, e))?;
    let kek_id: &str = get(row, table, "kek_id")?;
    if dek.kek_id().as_str() != kek_id {
        return Err(corrupt_value(table, "kek_id"));
    }
    Ok(dek)
}

/// A full connection row (with [`SPEC_COLUMNS`] and [`SECRET_COLUMNS`]).
pub(super) fn connection_row(row: &Row) -> Result<StoredConnection> {
    let t = CONNECTIONS;
    let meta = connection_meta(row)?;
    let password =
        SealedValue::parse(get(row, t, "sealed_password")?).map_err(|e| corrupt(t, e))?;
    let client_key_pem = get::<Option<&[u8]>>(row, t, "sealed_client_key")?
        .map(SealedValue::parse)
        .transpose()
        .map_err(|e| corrupt(t, e))?;
    Ok(meta.sealed(SealedSecrets {
        dek: wrapped_dek(row, t)?,
        password,
        client_key_pem,
    }))
}

/// The current health from [`HEALTH_COLUMNS`]; no health row is `unknown`, never checked.
fn health_from_row(row: &Row) -> Result<Health> {
    let t = "connection_health";
    let Some(status) = get_opt_parsed::<HealthStatus>(row, t, "h_status")? else {
        return Ok(Health::default());
    };
    let uptime_24h: Option<f64> = get(row, t, "h_uptime_24h")?;
    if let Some(u) = uptime_24h
        && !(0.0..=1.0).contains(&u)
    {
        return Err(corrupt_value(t, "uptime_24h"));
    }
    Ok(Health {
        status,
        checked_at: get(row, t, "h_checked_at")?,
        latency_ms: get_opt_u32(row, t, "h_latency_ms")?,
        error_kind: get_opt_parsed(row, t, "h_error_kind")?,
        uptime_24h,
        facts: facts_from_row(row)?,
    })
}

/// The fact columns of `connection_health` as written: all `None` when `health` brings no
/// facts (the upsert then keeps the stored ones).
#[derive(Debug, Default)]
pub(super) struct FactColumns {
    pub(super) at: Option<OffsetDateTime>,
    pub(super) server_version: Option<String>,
    pub(super) in_recovery: Option<bool>,
    pub(super) connections_used: Option<i64>,
    pub(super) max_connections: Option<i64>,
    pub(super) tls_protocol: Option<String>,
    pub(super) tls_cipher: Option<String>,
    pub(super) tls_peer_subject: Option<String>,
    pub(super) tls_peer_not_after: Option<OffsetDateTime>,
}

impl FactColumns {
    pub(super) fn of(health: &Health) -> Self {
        let Some(facts) = &health.facts else {
            return Self::default();
        };
        let server = facts.server.as_ref();
        let tls = facts.tls.as_ref();
        Self {
            at: Some(facts.at),
            server_version: server.map(|s| s.version.clone()),
            in_recovery: server.map(|s| s.in_recovery),
            connections_used: server.and_then(|s| s.connections_used).map(i64::from),
            max_connections: server.and_then(|s| s.max_connections).map(i64::from),
            tls_protocol: tls.and_then(|t| t.protocol.clone()),
            tls_cipher: tls.and_then(|t| t.cipher.clone()),
            tls_peer_subject: tls.and_then(|t| t.peer_subject.clone()),
            tls_peer_not_after: tls.and_then(|t| t.peer_not_after),
        }
    }
}

/// The facts of the last check that reached the server, from [`HEALTH_COLUMNS`].
fn facts_from_row(row: &Row) -> Result<Option<CheckFacts>> {
    let t = "connection_health";
    let Some(at) = get::<Option<OffsetDateTime>>(row, t, "h_facts_at")? else {
        return Ok(None);
    };
    let server = match get::<Option<String>>(row, t, "h_server_version")? {
        Some(version) => Some(ServerInfo {
            version,
            in_recovery: get::<Option<bool>>(row, t, "h_server_in_recovery")?.unwrap_or(false),
            connections_used: get_opt_u32(row, t, "h_server_connections_used")?,
            max_connections: get_opt_u32(row, t, "h_server_max_connections")?,
        }),
        None => None,
    };
    let tls = TlsInfo {
        protocol: get(row, t, "h_tls_protocol")?,
        cipher: get(row, t, "h_tls_cipher")?,
        peer_subject: get(row, t, "h_tls_peer_subject")?,
        peer_not_after: get(row, t, "h_tls_peer_not_after")?,
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

/// A summary row (with [`SPEC_COLUMNS`] and [`HEALTH_COLUMNS`]).
pub(super) fn connection_summary(row: &Row) -> Result<Connection> {
    Ok(connection_meta(row)?.shown(health_from_row(row)?))
}

/// One `(id, wrapped_dek, kek_id)` row of a rotation batch.
pub(super) fn dek_row(row: &Row) -> Result<(ConnectionId, WrappedDek)> {
    Ok((
        ConnectionId::from_uuid(get(row, CONNECTIONS, "id")?),
        wrapped_dek(row, CONNECTIONS)?,
    ))
}

/// A KEK id as stored.
pub(super) fn kek_id(row: &Row) -> Result<KekId> {
    KekId::new(get(row, CONNECTIONS, "kek_id")?).map_err(|e| corrupt(CONNECTIONS, e))
}

/// The columns [`user_row`] reads.
pub(super) const USER_COLUMNS: &str =
    "id, username, role, password_hash, disabled, created_at, updated_at";

pub(super) fn user_row(row: &Row) -> Result<StoredUser> {
    let t = "users";
    Ok(StoredUser {
        user: User {
            id: UserId::from_uuid(get(row, t, "id")?),
            username: get(row, t, "username")?,
            role: get_parsed(row, t, "role")?,
            disabled: get(row, t, "disabled")?,
            created_at: get(row, t, "created_at")?,
            updated_at: get(row, t, "updated_at")?,
        },
        password_hash: get(row, t, "password_hash")?,
    })
}

/// A grant row: `user_id`, `team_id` (exactly one set) and `level`.
pub(super) fn grant_row(row: &Row) -> Result<Grant> {
    let t = "grants";
    let user: Option<Uuid> = get(row, t, "user_id")?;
    let team: Option<Uuid> = get(row, t, "team_id")?;
    let grantee = match (user, team) {
        (Some(u), None) => Grantee::User(UserId::from_uuid(u)),
        (None, Some(team)) => Grantee::Team(TeamId::from_uuid(team)),
        _ => return Err(corrupt_value(t, "user_id")),
    };
    Ok(Grant {
        grantee,
        level: get_parsed::<GrantLevel>(row, t, "level")?,
    })
}

/// A grant with its grantee's name (column `name`).
pub(super) fn named_grant_row(row: &Row) -> Result<NamedGrant> {
    Ok(NamedGrant {
        grant: grant_row(row)?,
        name: get(row, "grants", "name")?,
    })
}

/// The columns [`token_row`] reads.
pub(super) const TOKEN_COLUMNS: &str =
    "id, user_id, name, hash, read_only, created_at, expires_at, revoked_at, last_used_at";

pub(super) fn token_row(row: &Row) -> Result<StoredToken> {
    let t = "tokens";
    Ok(StoredToken {
        info: TokenInfo {
            id: TokenId::from_uuid(get(row, t, "id")?),
            user: UserId::from_uuid(get(row, t, "user_id")?),
            name: get(row, t, "name")?,
            read_only: get(row, t, "read_only")?,
            created_at: get(row, t, "created_at")?,
            expires_at: get(row, t, "expires_at")?,
            revoked_at: get(row, t, "revoked_at")?,
            last_used_at: get(row, t, "last_used_at")?,
        },
        hash: get_hash(row, t, "hash")?,
    })
}

/// The columns [`check_row`] reads.
pub(super) const CHECK_COLUMNS: &str =
    "connection_id, at, ok, latency_ms, error_kind, step, status";

pub(super) fn check_row(row: &Row) -> Result<Check> {
    let t = "health_checks";
    Ok(Check {
        connection: ConnectionId::from_uuid(get(row, t, "connection_id")?),
        at: get(row, t, "at")?,
        ok: get(row, t, "ok")?,
        latency_ms: get_u32(row, t, "latency_ms")?,
        error_kind: get_opt_parsed(row, t, "error_kind")?,
        step: get_opt_parsed(row, t, "step")?,
        status: get_parsed(row, t, "status")?,
    })
}

/// The columns [`audit_row`] reads.
pub(super) const AUDIT_COLUMNS: &str = "seq, at, actor, actor_name, action, target, outcome, \
    changed_fields, client_addr, request_id, prev_hash, hash";

pub(super) fn audit_row(row: &Row) -> Result<AuditRecord> {
    let t = "audit_log";
    let outcome: &str = get(row, t, "outcome")?;
    let outcome = Outcome::parse(outcome).ok_or_else(|| corrupt_value(t, "outcome"))?;
    let seq = get_u64(row, t, "seq")?;
    if seq == 0 {
        return Err(corrupt_value(t, "seq"));
    }
    Ok(AuditRecord {
        seq,
        event: AuditEvent {
            at: get(row, t, "at")?,
            actor: get::<Option<Uuid>>(row, t, "actor")?.map(UserId::from_uuid),
            actor_name: get(row, t, "actor_name")?,
            action: get(row, t, "action")?,
            target: get(row, t, "target")?,
            outcome,
            changed_fields: get(row, t, "changed_fields")?,
            client_addr: get(row, t, "client_addr")?,
            request_id: get(row, t, "request_id")?,
        },
        prev_hash: get_hash(row, t, "prev_hash")?,
        hash: get_hash(row, t, "hash")?,
    })
}

pub(super) fn policy_row(row: &Row) -> Result<TargetPolicy> {
    let t = "policy";
    Ok(TargetPolicy {
        allow_cidrs: get(row, t, "allow_cidrs")?,
        deny_cidrs: get(row, t, "deny_cidrs")?,
        min_tls_mode: get_parsed(row, t, "min_tls_mode")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigrams_are_distinct_runs_of_three_ascii_characters() {
        assert_eq!(trigrams("ab"), Vec::<String>::new());
        assert_eq!(trigrams("db-4"), ["b-4", "db-"]);
        assert_eq!(trigrams("ééé"), Vec::<String>::new());
        assert_eq!(trigrams("über-db"), ["-db", "ber", "er-", "r-d"]);
        assert_eq!(trigrams("aaaa"), ["aaa"]);
    }

    #[test]
    fn like_patterns_escape_wildcards_and_fold_case() {
        assert_eq!(like_pattern("Ab"), "%ab%");
        assert_eq!(like_pattern("50%_x\\"), "%50\\%\\_x\\\\%");
        assert_eq!(like_pattern("ÉCOLE"), "%école%");
        assert_eq!(like_pattern(""), "%%");
    }
}
