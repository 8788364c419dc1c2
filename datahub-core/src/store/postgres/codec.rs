//! Conversions between the model and PostgreSQL values, and the parsing of rows back into the
//! model. Every value read back is validated again by the model's own parse functions; a row
//! that does not parse is a `Store` error ("corrupt row"), never a panic or half-valid data.

use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;
use uuid::Uuid;

use crate::crypto::{KekId, SealedValue, WrappedDek};
use crate::model::{Connection, ConnectionSpec, NamedGrant};
use crate::rbac::{Grant, GrantLevel, Grantee};
use crate::store::{SealedSecrets, StoredConnection};
use crate::{ConnectionId, Error, ErrorKind, Result, TeamId, UserId};

use crate::store::columns::{CONNECTIONS, ConnectionColumns, connection_columns, corrupt_value};
pub(super) use crate::store::columns::{SEARCH_SEPARATOR, corrupt, like_pattern};
pub(super) use crate::store::rows::{
    AUDIT_COLUMNS, ColumnRead, FactColumns, HEALTH_COLUMNS, audit_row, check_row, policy_row,
    session_row, token_row, user_row,
};
use crate::store::rows::{column_reads, health_row};

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

/// PostgreSQL keeps every value in its own type: ids as `uuid`, times as `timestamptz`, lists
/// as `text[]`.
impl ColumnRead for Row {
    column_reads! {
        text: String = get;
        opt_text: Option<String> = get;
        bool: bool = get;
        opt_bool: Option<bool> = get;
        int: i64 = get;
        int32: i64 = get_i32_as_i64;
        opt_int: Option<i64> = get;
        opt_f64: Option<f64> = get;
        uuid: Uuid = get;
        opt_uuid: Option<Uuid> = get;
        time: OffsetDateTime = get;
        opt_time: Option<OffsetDateTime> = get;
        bytes: Vec<u8> = get;
        text_list: Vec<String> = get;
    }
}

fn get_i32_as_i64(row: &Row, table: &'static str, column: &str) -> Result<i64> {
    get::<i32>(row, table, column).map(i64::from)
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

/// The columns [`connection_meta`] reads, from the table alias `c`.
pub(super) const SPEC_COLUMNS: &str = "c.id, c.name, c.description, c.engine, c.host, c.port, \
    c.database_name, c.username, c.tls_mode, c.tls_ca_cert_pem, c.tls_client_cert_pem, \
    c.tls_channel_binding, c.connect_timeout_ms, c.application_name, c.tags, \
    c.monitoring_enabled, c.monitoring_interval_s, c.monitoring_slow_ms, c.owner, c.version, \
    c.created_at, c.updated_at";

/// The secret columns [`connection_row`] reads, from the table alias `c`.
pub(super) const SECRET_COLUMNS: &str =
    "c.kek_id, c.wrapped_dek, c.sealed_password, c.sealed_client_key";

/// The non-secret columns of a connection row (with [`SPEC_COLUMNS`]), rebuilt.
fn connection_meta(row: &Row) -> Result<ConnectionColumns> {
    let tags: Vec<String> = get(row, CONNECTIONS, "tags")?;
    connection_columns(row, &tags)
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

/// A summary row (with [`SPEC_COLUMNS`] and [`HEALTH_COLUMNS`]).
pub(super) fn connection_summary(row: &Row) -> Result<Connection> {
    Ok(connection_meta(row)?.shown(health_row(row)?))
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

/// A grant row: `user_id`, `team_id` (exactly one set) and `level`.
pub(super) fn grant_row(row: &Row) -> Result<Grant> {
    let t = "grants";
    let user = row.opt_uuid(t, "user_id")?;
    let team = row.opt_uuid(t, "team_id")?;
    let grantee = match (user, team) {
        (Some(u), None) => Grantee::User(UserId::from_uuid(u)),
        (None, Some(team)) => Grantee::Team(TeamId::from_uuid(team)),
        _ => return Err(corrupt_value(t, "user_id")),
    };
    Ok(Grant {
        grantee,
        level: row.parsed::<GrantLevel>(t, "level")?,
    })
}

/// A grant with its grantee's name (column `name`).
pub(super) fn named_grant_row(row: &Row) -> Result<NamedGrant> {
    Ok(NamedGrant {
        grant: grant_row(row)?,
        name: get(row, "grants", "name")?,
    })
}

/// The columns [`user_row`] reads.
pub(super) const USER_COLUMNS: &str =
    "id, username, role, password_hash, disabled, created_at, updated_at";

/// The columns [`token_row`] reads.
pub(super) const TOKEN_COLUMNS: &str =
    "id, user_id, name, hash, read_only, created_at, expires_at, revoked_at, last_used_at";

/// The columns [`check_row`] reads.
pub(super) const CHECK_COLUMNS: &str =
    "connection_id, at, ok, latency_ms, error_kind, step, status";

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
}
