//! The SQLite side of connections and their grants ([`ConnectionStore`]): the connection
//! columns written and read back, the search rows kept in step, versioned updates and deletes.
//! Listing's SQL is in `list.rs`.

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Transaction, params, params_from_iter};

use super::audit::append_audit_in;
use super::codec::{
    self, HEALTH_COLUMNS, SECRET_COLUMNS, SPEC_COLUMNS, common_from_row, get, get_parsed,
    health_row, micros, search_body, search_fold, secrets_from_row,
};
use super::list::{LIST_FROM_CONNECTIONS, PagedRead, list_filter, list_order};
use super::{
    SqliteStore, collect, conflict, db_error, i64_of, in_read_transaction, require_row, row_exists,
};
use crate::audit::AuditEvent;
use crate::model::{Connection, ConnectionName, ListQuery, NamedGrant, Page, Visibility};
use crate::rbac::{Grant, GrantLevel, Grantee};
use crate::store::columns::{self, ColumnValue, page_offset};
use crate::store::{ConnectionStore, StoredConnection, TestContext};
use crate::{ConnectionId, Error, ErrorKind, Result, TeamId, UserId};

/// Writes a connection's tags in order, replacing any stored ones.
fn write_tags(tx: &Transaction<'_>, row: &StoredConnection) -> Result<()> {
    let id = row.id.to_string();
    tx.execute(
        "DELETE FROM connection_tags WHERE connection_id = ?1",
        [&id],
    )
    .map_err(db_error)?;
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO connection_tags (connection_id, position, tag) VALUES (?1, ?2, ?3)",
        )
        .map_err(db_error)?;
    for (i, tag) in row.spec.tags.as_slice().iter().enumerate() {
        let pos = i64::try_from(i).unwrap_or(i64::MAX);
        stmt.execute(params![id, pos, tag.as_str()])
            .map_err(db_error)?;
    }
    Ok(())
}

/// Writes (inserts or replaces) a connection's search row: its name, owner, last change and
/// search text (and, when new, its grantees). The triggers of migration 2 keep the trigram index
/// and the grantees in step.
fn write_search(tx: &Transaction<'_>, row: &StoredConnection) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO connection_search (connection_id, name, owner, updated_at, viewers, body) \
         VALUES (?1, ?2, ?3, ?4, (SELECT coalesce(group_concat(coalesce('u:' || g.user_id, \
         't:' || g.team_id), ','), '') FROM grants g WHERE g.connection_id = ?1), ?5) \
         ON CONFLICT (connection_id) DO UPDATE SET name = excluded.name, \
         owner = excluded.owner, updated_at = excluded.updated_at, body = excluded.body",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            row.id.to_string(),
            row.spec.name.as_str(),
            row.owner.to_string(),
            micros(row.updated_at),
            search_body(&row.spec),
        ])
    })
    .map_err(db_error)?;
    Ok(())
}

/// Every connection column but id, owner, version and created_at, with its value: the neutral
/// ones of [`columns::connection_values`], then the lowercased description the listing sorts
/// and filters on.
fn connection_values(row: &StoredConnection) -> Vec<(&'static str, Value)> {
    let text = |v: &str| Value::Text(v.to_owned());
    let mut out: Vec<(&'static str, Value)> = columns::connection_values(row)
        .into_iter()
        .map(|(column, value)| {
            let value = match value {
                ColumnValue::Text(v) => text(v),
                ColumnValue::OptText(v) => v.map_or(Value::Null, text),
                ColumnValue::Int(v, _) => Value::Integer(v),
                ColumnValue::Bool(v) => Value::Integer(i64::from(v)),
                ColumnValue::Time(v) => Value::Integer(micros(v)),
                ColumnValue::Bytes(v) => Value::Blob(v),
                ColumnValue::OptBytes(v) => v.map_or(Value::Null, Value::Blob),
            };
            (column, value)
        })
        .collect();
    let description_lc = row.spec.description.as_ref();
    out.push((
        "description_lc",
        description_lc.map_or(Value::Null, |d| Value::Text(search_fold(d.as_str()))),
    ));
    out
}

fn name_taken(tx: &Transaction<'_>, name: &ConnectionName, except: ConnectionId) -> Result<bool> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM connections WHERE name = ?1 AND id <> ?2)",
        params![name.as_str(), except.to_string()],
        |r| r.get(0),
    )
    .map_err(db_error)
}

/// After an update or delete matched no row: `NotFound` or a stale-version `Conflict`.
fn missing_or_stale(tx: &Transaction<'_>, id: ConnectionId) -> Error {
    let exists = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM connections WHERE id = ?1)",
            [id.to_string()],
            |r| r.get::<_, bool>(0),
        )
        .map_err(db_error);
    match exists {
        Ok(true) => conflict(
            "version",
            "the connection was changed by someone else since it was read",
        ),
        Ok(false) => Error::not_found("connection").with_field("id"),
        Err(e) => e,
    }
}

pub(super) fn connection_row_query(
    conn: &rusqlite::Connection,
    where_clause: &str,
    key: &str,
) -> Result<Option<StoredConnection>> {
    let sql =
        format!("SELECT {SPEC_COLUMNS}, {SECRET_COLUMNS} FROM connections c WHERE {where_clause}");
    let mut stmt = conn.prepare_cached(&sql).map_err(db_error)?;
    let mut rows = stmt.query([key]).map_err(db_error)?;
    let Some(row) = rows.next().map_err(db_error)? else {
        return Ok(None);
    };
    Ok(Some(common_from_row(row)?.sealed(secrets_from_row(row)?)))
}

pub(super) fn summary_from_row(row: &rusqlite::Row<'_>) -> Result<Connection> {
    Ok(common_from_row(row)?.shown(health_row(row)?))
}

/// What a test reads ([`TestContext`]) of the connection matching `where_clause` with `key`,
/// in one read transaction, so the grants and the policy are those of the row answered.
fn test_context(
    conn: &mut rusqlite::Connection,
    where_clause: &str,
    key: &str,
) -> Result<Option<TestContext>> {
    in_read_transaction(conn, |conn| {
        let Some(connection) = connection_row_query(conn, where_clause, key)? else {
            return Ok(None);
        };
        Ok(Some(TestContext {
            grants: grants_of(conn, connection.id)?,
            policy: super::admin::read_policy(conn)?,
            connection,
        }))
    })
}

/// The grants on connection `id`: users' before teams'.
fn grants_of(conn: &rusqlite::Connection, id: ConnectionId) -> Result<Vec<Grant>> {
    collect(
        conn,
        "SELECT user_id, team_id, level FROM grants WHERE connection_id = ?1 \
         ORDER BY user_id IS NULL, user_id, team_id",
        [id.to_string()],
        grant_from_row,
    )
}

/// A grant from its `user_id`, `team_id` and `level` columns.
fn grant_from_row(row: &rusqlite::Row<'_>) -> Result<Grant> {
    let t = "grants";
    let level: GrantLevel = get_parsed(row, t, "level")?;
    let user = codec::get_opt_uuid(row, t, "user_id")?;
    let team = codec::get_opt_uuid(row, t, "team_id")?;
    let grantee = match (user, team) {
        (Some(u), None) => Grantee::User(UserId::from_uuid(u)),
        (None, Some(t)) => Grantee::Team(TeamId::from_uuid(t)),
        _ => {
            return Err(Error::new(ErrorKind::Store, "corrupt row in grants"));
        }
    };
    Ok(Grant { grantee, level })
}

#[async_trait]
impl ConnectionStore for SqliteStore {
    async fn insert_connection(&self, row: &StoredConnection, audit: &AuditEvent) -> Result<()> {
        let row = row.clone();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                let id = row.id.to_string();
                if name_taken(tx, &row.spec.name, row.id)? {
                    return Err(conflict("name", "a connection with this name exists"));
                }
                if row_exists(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM connections WHERE id = ?1)",
                    &id,
                )? {
                    return Err(conflict("id", "a connection with this id exists"));
                }
                let mut placed = connection_values(&row);
                placed.extend([
                    ("id", Value::Text(id)),
                    ("owner", Value::Text(row.owner.to_string())),
                    ("version", Value::Integer(1)),
                    ("created_at", Value::Integer(micros(row.created_at))),
                ]);
                let (columns, values): (Vec<&str>, Vec<Value>) = placed.into_iter().unzip();
                let placeholders: Vec<String> =
                    (1..=columns.len()).map(|i| format!("?{i}")).collect();
                let sql = format!(
                    "INSERT INTO connections ({}) VALUES ({})",
                    columns.join(", "),
                    placeholders.join(", ")
                );
                tx.execute(&sql, params_from_iter(values))
                    .map_err(db_error)?;
                write_tags(tx, &row)?;
                write_search(tx, &row)?;
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn connection(&self, id: ConnectionId) -> Result<Option<StoredConnection>> {
        self.pool
            .read(move |conn| connection_row_query(conn, "c.id = ?1", &id.to_string()))
            .await
    }

    async fn connection_for_test(&self, id: ConnectionId) -> Result<Option<TestContext>> {
        self.pool
            .read_short(move |conn| test_context(conn, "c.id = ?1", &id.to_string()))
            .await
    }

    async fn connection_for_test_by_name(
        &self,
        name: &ConnectionName,
    ) -> Result<Option<TestContext>> {
        let name = name.as_str().to_owned();
        self.pool
            .read_short(move |conn| test_context(conn, "c.name = ?1", &name))
            .await
    }

    async fn connection_by_name(&self, name: &ConnectionName) -> Result<Option<StoredConnection>> {
        let name = name.as_str().to_owned();
        self.pool
            .read(move |conn| connection_row_query(conn, "c.name = ?1", &name))
            .await
    }

    async fn connection_summary(&self, id: ConnectionId) -> Result<Option<Connection>> {
        self.pool
            .read(move |conn| {
                let sql = format!(
                    "SELECT {SPEC_COLUMNS}, {HEALTH_COLUMNS} FROM connections c \
                     LEFT JOIN connection_health h ON h.connection_id = c.id WHERE c.id = ?1"
                );
                let mut stmt = conn.prepare_cached(&sql).map_err(db_error)?;
                let mut rows = stmt.query([id.to_string()]).map_err(db_error)?;
                match rows.next().map_err(db_error)? {
                    Some(row) => summary_from_row(row).map(Some),
                    None => Ok(None),
                }
            })
            .await
    }

    async fn update_connection(
        &self,
        row: &StoredConnection,
        expected_version: u64,
        audit: &AuditEvent,
    ) -> Result<u64> {
        let row = row.clone();
        let audit = audit.clone();
        let expected = i64_of(expected_version, "version")?;
        let new_version = expected_version
            .checked_add(1)
            .ok_or_else(|| Error::invalid("version", "is too large"))?;
        let new_version_i = i64_of(new_version, "version")?;
        self.pool
            .write(move |tx| {
                if name_taken(tx, &row.spec.name, row.id)? {
                    return Err(conflict("name", "a connection with this name exists"));
                }
                let (columns, mut values): (Vec<&str>, Vec<Value>) =
                    connection_values(&row).into_iter().unzip();
                let sets: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c} = ?{}", i + 1))
                    .collect();
                let n = columns.len();
                let sql = format!(
                    "UPDATE connections SET {}, version = ?{} WHERE id = ?{} AND version = ?{}",
                    sets.join(", "),
                    n + 1,
                    n + 2,
                    n + 3
                );
                values.extend([
                    Value::Integer(new_version_i),
                    Value::Text(row.id.to_string()),
                    Value::Integer(expected),
                ]);
                let changed = tx
                    .execute(&sql, params_from_iter(values))
                    .map_err(db_error)?;
                if changed == 0 {
                    return Err(missing_or_stale(tx, row.id));
                }
                write_tags(tx, &row)?;
                write_search(tx, &row)?;
                append_audit_in(tx, &audit)?;
                Ok(new_version)
            })
            .await
    }

    async fn delete_connection(
        &self,
        id: ConnectionId,
        expected_version: u64,
        audit: &AuditEvent,
    ) -> Result<()> {
        let audit = audit.clone();
        let expected = i64_of(expected_version, "version")?;
        self.pool
            .write(move |tx| {
                // The search row goes by cascade, whose trigger updates the trigram index.
                let changed = tx
                    .execute(
                        "DELETE FROM connections WHERE id = ?1 AND version = ?2",
                        params![id.to_string(), expected],
                    )
                    .map_err(db_error)?;
                if changed == 0 {
                    return Err(missing_or_stale(tx, id));
                }
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn list_connections(
        &self,
        query: &ListQuery,
        visibility: &Visibility,
    ) -> Result<Page<Connection>> {
        let offset = page_offset(query.page, query.per_page)?;
        if let Some(search) = query.search.as_deref().filter(|s| !s.is_empty()) {
            return self.search_connections(search, query, visibility).await;
        }
        let (where_clause, params) = list_filter(
            query,
            visibility,
            &LIST_FROM_CONNECTIONS,
            Vec::new(),
            Vec::new(),
        );
        let order = list_order(query.sort, "c.name", "c.updated_at");
        // The health row is joined only where a filter or the sort reads it: without it the
        // count walks the smallest index of `connections` alone, and the page's rows are
        // picked by rowid from the name index (which holds the rowid), so the rows an offset
        // skips cost an index step each, not a row and a health lookup.
        let from = if query.status.is_some() || query.sort.reads_health() {
            "FROM connections c LEFT JOIN connection_health h ON h.connection_id = c.id"
        } else {
            "FROM connections c"
        };
        let paged = PagedRead {
            from: from.to_owned(),
            where_clause,
            params,
            key: "c.rowid AS r",
            key_order: order.clone(),
            join: "CROSS JOIN connections c ON c.rowid = p.r",
            order,
            offset,
            page: query.page,
            per_page: query.per_page,
        };
        self.pool.read(move |conn| paged.run(conn)).await
    }

    async fn set_grants(
        &self,
        id: ConnectionId,
        expected_version: u64,
        grants: &[Grant],
        audit: &AuditEvent,
    ) -> Result<u64> {
        let grants = grants.to_vec();
        let audit = audit.clone();
        for (i, g) in grants.iter().enumerate() {
            if grants[..i].iter().any(|o| o.grantee == g.grantee) {
                return Err(Error::invalid("grants", "names the same grantee twice"));
            }
        }
        let expected = i64_of(expected_version, "version")?;
        let new_version = expected_version
            .checked_add(1)
            .ok_or_else(|| Error::invalid("version", "is too large"))?;
        let new_version_i = i64_of(new_version, "version")?;
        self.pool
            .write(move |tx| {
                let cid = id.to_string();
                let bumped = tx
                    .execute(
                        "UPDATE connections SET version = ?1 WHERE id = ?2 AND version = ?3",
                        params![new_version_i, cid, expected],
                    )
                    .map_err(db_error)?;
                if bumped == 0 {
                    return Err(missing_or_stale(tx, id));
                }
                tx.execute("DELETE FROM grants WHERE connection_id = ?1", [&cid])
                    .map_err(db_error)?;
                for g in &grants {
                    let (user, team) = match g.grantee {
                        Grantee::User(u) => {
                            let u = u.to_string();
                            require_row(tx, "users", &u, "user", "user_id")?;
                            (Some(u), None)
                        }
                        Grantee::Team(t) => {
                            let t = t.to_string();
                            require_row(tx, "teams", &t, "team", "team_id")?;
                            (None, Some(t))
                        }
                    };
                    tx.execute(
                        "INSERT INTO grants (connection_id, user_id, team_id, level) \
                         VALUES (?1, ?2, ?3, ?4)",
                        params![cid, user, team, g.level.as_str()],
                    )
                    .map_err(db_error)?;
                }
                append_audit_in(tx, &audit)?;
                Ok(new_version)
            })
            .await
    }

    async fn grants(&self, id: ConnectionId) -> Result<Vec<Grant>> {
        self.pool.read(move |conn| grants_of(conn, id)).await
    }

    async fn named_grants(&self, id: ConnectionId) -> Result<Vec<NamedGrant>> {
        self.pool
            .read(move |conn| {
                collect(
                    conn,
                    "SELECT g.user_id, g.team_id, g.level, coalesce(u.username, t.name) AS name \
                     FROM grants g LEFT JOIN users u ON u.id = g.user_id \
                     LEFT JOIN teams t ON t.id = g.team_id WHERE g.connection_id = ?1 \
                     ORDER BY g.user_id IS NULL, g.user_id, g.team_id",
                    [id.to_string()],
                    |row| {
                        Ok(NamedGrant {
                            grant: grant_from_row(row)?,
                            name: get(row, "grants", "name")?,
                        })
                    },
                )
            })
            .await
    }
}
