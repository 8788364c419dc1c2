//! Conversions between the model and SQLite values, and the parsing of rows back into the
//! model. Every value read back is validated again by the model's own parse functions; a row
//! that does not parse is a `Store` error ("corrupt row"), never a panic or half-valid data.

use std::str::FromStr;

use rusqlite::Row;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::crypto::{SealedValue, WrappedDek};
use crate::model::ConnectionSpec;
use crate::store::SealedSecrets;
use crate::{Error, ErrorKind, Result, TeamId};

use crate::store::columns::{CONNECTIONS, ConnectionColumns, connection_columns, corrupt_value};
pub(super) use crate::store::columns::{SEARCH_SEPARATOR, corrupt, like_pattern};
use crate::store::rows::column_reads;
pub(super) use crate::store::rows::{
    AUDIT_COLUMNS, ColumnRead, FactColumns, HEALTH_COLUMNS, audit_row, check_row, health_row,
    policy_row, session_row, token_row, user_row,
};

/// Reads one column; a missing column or a value of the wrong type is a corrupt row.
pub(super) fn get<T: rusqlite::types::FromSql>(
    row: &Row<'_>,
    table: &'static str,
    column: &str,
) -> Result<T> {
    row.get(column).map_err(|e| {
        Error::new(
            ErrorKind::Store,
            format!("corrupt row in {table}: column {column} has the wrong type"),
        )
        .with_source(e)
    })
}

/// Unix microseconds (UTC) of a time, floored.
pub(super) fn micros(at: OffsetDateTime) -> i64 {
    let m = at.unix_timestamp_nanos().div_euclid(1_000);
    i64::try_from(m).unwrap_or(if m < 0 { i64::MIN } else { i64::MAX })
}

fn time_from(table: &'static str, column: &str, m: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000)
        .map_err(|_| corrupt_value(table, column))
}

pub(super) fn get_time(row: &Row<'_>, table: &'static str, column: &str) -> Result<OffsetDateTime> {
    time_from(table, column, get(row, table, column)?)
}

pub(super) fn get_opt_time(
    row: &Row<'_>,
    table: &'static str,
    column: &str,
) -> Result<Option<OffsetDateTime>> {
    get::<Option<i64>>(row, table, column)?
        .map(|m| time_from(table, column, m))
        .transpose()
}

fn uuid_from(table: &'static str, column: &str, s: &str) -> Result<Uuid> {
    Uuid::try_parse(s).map_err(|_| corrupt_value(table, column))
}

pub(super) fn get_uuid(row: &Row<'_>, table: &'static str, column: &str) -> Result<Uuid> {
    let s: String = get(row, table, column)?;
    uuid_from(table, column, &s)
}

pub(super) fn get_opt_uuid(
    row: &Row<'_>,
    table: &'static str,
    column: &str,
) -> Result<Option<Uuid>> {
    get::<Option<String>>(row, table, column)?
        .map(|s| uuid_from(table, column, &s))
        .transpose()
}

pub(super) fn get_u64(row: &Row<'_>, table: &'static str, column: &str) -> Result<u64> {
    u64::try_from(get::<i64>(row, table, column)?).map_err(|_| corrupt_value(table, column))
}

pub(super) fn get_bool(row: &Row<'_>, table: &'static str, column: &str) -> Result<bool> {
    match get::<i64>(row, table, column)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(corrupt_value(table, column)),
    }
}

/// Parses a stored spelling with the type's own `FromStr`.
pub(super) fn get_parsed<T: FromStr<Err = Error>>(
    row: &Row<'_>,
    table: &'static str,
    column: &str,
) -> Result<T> {
    let s: String = get(row, table, column)?;
    s.parse().map_err(|e| corrupt(table, e))
}

/// Encodes a list of strings unambiguously: `<byte length>:<text>` for each, concatenated.
pub(super) fn encode_list<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::new();
    for s in items {
        let s = s.as_ref();
        out.push_str(&s.len().to_string());
        out.push(':');
        out.push_str(s);
    }
    out
}

/// Decodes [`encode_list`]; `None` when the text is not such an encoding.
pub(super) fn decode_list(mut text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !text.is_empty() {
        let (len, rest) = text.split_once(':')?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let len: usize = len.parse().ok()?;
        let item = rest.get(..len)?;
        out.push(item.to_owned());
        text = rest.get(len..)?;
    }
    Some(out)
}

pub(super) fn get_list(row: &Row<'_>, table: &'static str, column: &str) -> Result<Vec<String>> {
    let text: String = get(row, table, column)?;
    decode_list(&text).ok_or_else(|| corrupt_value(table, column))
}

/// The lowercase form a search compares against (Unicode-aware, unlike SQLite's `lower`).
pub(super) fn search_fold(s: &str) -> String {
    s.to_lowercase()
}

/// The searchable text of a connection: name, description, host and tags, each lowercased by
/// [`search_fold`], joined with [`SEARCH_SEPARATOR`] (an absent description is empty).
pub(super) fn search_body(spec: &ConnectionSpec) -> String {
    let mut body = search_fold(spec.name.as_str());
    body.push(SEARCH_SEPARATOR);
    if let Some(d) = &spec.description {
        body.push_str(&search_fold(d.as_str()));
    }
    body.push(SEARCH_SEPARATOR);
    body.push_str(&search_fold(spec.host.as_str()));
    for tag in spec.tags.as_slice() {
        body.push(SEARCH_SEPARATOR);
        body.push_str(&search_fold(tag.as_str()));
    }
    body
}

/// The FTS5 query matching `folded` (already lowercased) as one literal phrase: with the trigram
/// tokenizer, an exact substring match for three characters or more. Inside a quoted FTS5
/// string every character is literal but `"`, which is doubled.
pub(super) fn fts_phrase(folded: &str) -> String {
    let mut q = String::with_capacity(folded.len() + 2);
    q.push('"');
    for c in folded.chars() {
        if c == '"' {
            q.push('"');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The columns [`common_from_row`] reads, prefixed with the table alias `c`.
pub(super) const SPEC_COLUMNS: &str = "c.id, c.name, c.description, c.engine, c.host, c.port, \
    c.database_name, c.username, c.tls_mode, c.tls_ca_cert_pem, c.tls_client_cert_pem, \
    c.tls_channel_binding, c.connect_timeout_ms, c.application_name, c.monitoring_enabled, \
    c.monitoring_interval_s, c.monitoring_slow_ms, c.owner, c.version, c.created_at, \
    c.updated_at, \
    (SELECT group_concat(t.tag, char(10) ORDER BY t.position) FROM connection_tags t \
     WHERE t.connection_id = c.id) AS tags";

/// The secret columns [`secrets_from_row`] reads.
pub(super) const SECRET_COLUMNS: &str = "c.wrapped_dek, c.sealed_password, c.sealed_client_key";

/// The common part of a connection row (with [`SPEC_COLUMNS`]): id, spec, owner, version and
/// times.
pub(super) fn common_from_row(row: &Row<'_>) -> Result<ConnectionColumns> {
    let tags: Vec<String> = match get::<Option<String>>(row, CONNECTIONS, "tags")?.as_deref() {
        None | Some("") => Vec::new(),
        Some(s) => s.split('\n').map(str::to_owned).collect(),
    };
    connection_columns(row, &tags)
}

pub(super) fn secrets_from_row(row: &Row<'_>) -> Result<SealedSecrets> {
    let t = CONNECTIONS;
    let bad = |e: Error| corrupt(t, e);
    let dek = WrappedDek::parse(&get::<Vec<u8>>(row, t, "wrapped_dek")?).map_err(bad)?;
    let password = SealedValue::parse(&get::<Vec<u8>>(row, t, "sealed_password")?).map_err(bad)?;
    let client_key_pem = get::<Option<Vec<u8>>>(row, t, "sealed_client_key")?
        .map(|b| SealedValue::parse(&b))
        .transpose()
        .map_err(bad)?;
    Ok(SealedSecrets {
        dek,
        password,
        client_key_pem,
    })
}

pub(super) fn team_id_from_row(row: &Row<'_>, column: &str) -> Result<TeamId> {
    Ok(TeamId::from_uuid(get_uuid(row, "teams", column)?))
}

/// SQLite keeps ids as text, times as Unix microseconds (UTC), booleans as 0 or 1 and lists in
/// [`encode_list`]'s encoding.
impl ColumnRead for Row<'_> {
    column_reads! {
        text: String = get;
        opt_text: Option<String> = get;
        bool: bool = get_bool;
        opt_bool: Option<bool> = get;
        int: i64 = get;
        int32: i64 = get;
        opt_int: Option<i64> = get;
        opt_f64: Option<f64> = get;
        uuid: Uuid = get_uuid;
        opt_uuid: Option<Uuid> = get_opt_uuid;
        time: OffsetDateTime = get_time;
        opt_time: Option<OffsetDateTime> = get_opt_time;
        bytes: Vec<u8> = get;
        text_list: Vec<String> = get_list;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_whatever_they_hold() {
        let cases: [&[&str]; 5] = [
            &[],
            &[""],
            &["a", "b"],
            &["1:x", "", "é:\n2:"],
            &["host", "password"],
        ];
        for items in cases {
            let enc = encode_list(items);
            assert_eq!(decode_list(&enc).unwrap(), items, "{enc:?}");
        }
        assert_ne!(encode_list(&["ab"]), encode_list(&["a", "b"]));
        for bad in ["x", "3:ab", "1", ":a", "-1:a", "1:é"] {
            assert!(decode_list(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn fts_phrases_quote_and_double_quotes() {
        assert_eq!(fts_phrase("db-4"), "\"db-4\"");
        assert_eq!(fts_phrase("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn micros_floor_and_round_trip() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(-1_500).unwrap();
        assert_eq!(micros(at), -2);
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap();
        assert_eq!(time_from("x", "y", micros(at)).unwrap(), at);
    }
}
