//! The PostgreSQL side of connections and their grants ([`ConnectionStore`]): the connection
//! columns written and read back, versioned updates and deletes, and listing (filters,
//! visibility, sort and search through the trigram index of migration 2) in SQL.

use async_trait::async_trait;
use uuid::Uuid;

use super::audit::append_in;
use super::codec::{self, HEALTH_COLUMNS, SECRET_COLUMNS, SPEC_COLUMNS, to_i64};
use super::error::db;
use super::{Params, PostgresStore, page_total, write_error};
use crate::audit::AuditEvent;
use crate::model::{Connection, ConnectionName, ListQuery, NamedGrant, Page, SortKey, Visibility};
use crate::rbac::{Grant, Grantee};
use crate::store::columns::{self, ColumnValue, page_offset};
use crate::store::{ConnectionStore, StoredConnection, TestContext};
use crate::{ConnectionId, Error, ErrorKind, Result};

/// The grants on a connection: users' before teams'.
const GRANTS_SQL: &str = "SELECT user_id, team_id, level FROM grants WHERE connection_id = $1 \
                          ORDER BY user_id NULLS LAST, team_id";

/// The grants on the connection named `$1`, with the connection each is on.
const GRANTS_BY_NAME_SQL: &str = "SELECT g.connection_id, g.user_id, g.team_id, g.level \
                                  FROM grants g JOIN connections c ON c.id = g.connection_id \
                                  WHERE c.name = $1 ORDER BY g.user_id NULLS LAST, g.team_id";

/// The connection a test reads: by id or by name.
#[derive(Debug, Clone, Copy)]
enum TestKey<'a> {
    Id(ConnectionId),
    Name(&'a ConnectionName),
}

/// What a test reads ([`TestContext`]) on one pooled client: the row, its grants and the
/// policy, three statements prepared once per pooled connection and then pipelined (one round
/// trip). By name, the grants are read by the name too; should a rename between the
/// statements make them another connection's, they are read again by the row's id.
async fn test_context(
    client: &deadpool_postgres::Object,
    key: TestKey<'_>,
) -> Result<Option<TestContext>> {
    const DOING: &str = "reading a connection to test";
    let (by, grants_sql) = match key {
        TestKey::Id(_) => ("c.id", GRANTS_SQL),
        TestKey::Name(_) => ("c.name", GRANTS_BY_NAME_SQL),
    };
    let connection_sql =
        format!("SELECT {SPEC_COLUMNS}, {SECRET_COLUMNS} FROM connections c WHERE {by} = $1");
    let (connection, grants, policy) = tokio::try_join!(
        client.prepare_cached(&connection_sql),
        client.prepare_cached(grants_sql),
        client.prepare_cached(super::admin::POLICY_SQL),
    )
    .map_err(|e| db(DOING, e))?;
    let (id, name);
    let param: &(dyn tokio_postgres::types::ToSql + Sync) = match key {
        TestKey::Id(key) => {
            id = *key.as_uuid();
            &id
        }
        TestKey::Name(key) => {
            name = key.as_str();
            &name
        }
    };
    let by_key = &[param];
    let (row, grant_rows, policy) = tokio::try_join!(
        client.query_opt(&connection, by_key),
        client.query(&grants, by_key),
        client.query_opt(&policy, &[]),
    )
    .map_err(|e| db(DOING, e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let connection = codec::connection_row(&row)?;
    let grant_rows = match key {
        TestKey::Id(_) => grant_rows,
        TestKey::Name(_) => {
            let on = connection.id.as_uuid();
            let ours = grant_rows
                .iter()
                .map(|g| g.try_get::<_, Uuid>("connection_id"))
                .all(|g| g.is_ok_and(|g| g == *on));
            if ours {
                grant_rows
            } else {
                client
                    .query(
                        &client
                            .prepare_cached(GRANTS_SQL)
                            .await
                            .map_err(|e| db(DOING, e))?,
                        &[on],
                    )
                    .await
                    .map_err(|e| db(DOING, e))?
            }
        }
    };
    Ok(Some(TestContext {
        connection,
        grants: grant_rows
            .iter()
            .map(codec::grant_row)
            .collect::<Result<_>>()?,
        policy: match policy {
            Some(row) => codec::policy_row(&row)?,
            None => crate::model::TargetPolicy::default(),
        },
    }))
}

/// Why a versioned write of connection `id` changed no row: it is gone (`NotFound`), or its
/// version moved on (`Conflict`).
async fn missing_or_stale(
    tx: &tokio_postgres::Transaction<'_>,
    id: &Uuid,
    doing: &'static str,
) -> Error {
    match tx
        .query_opt("SELECT 1 FROM connections WHERE id = $1", &[id])
        .await
    {
        Ok(Some(_)) => Error::stale(),
        Ok(None) => Error::not_found("connection"),
        Err(e) => db(doing, e),
    }
}

/// Binds the values of every connection column but id, owner, version and created_at (the
/// neutral ones of [`columns::connection_values`], then the tags and search terms), after what
/// `p` holds; returns each column with its placeholder.
///
/// # Errors
/// `InvalidInput` on a whole number too large for its `integer` column.
fn bind_values(row: &StoredConnection, p: &mut Params) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for (column, value) in columns::connection_values(row) {
        let placeholder = match value {
            ColumnValue::Text(v) => p.bind(v.to_owned()),
            ColumnValue::OptText(v) => p.bind(v.map(str::to_owned)),
            ColumnValue::Int(v, field) => {
                p.bind(i32::try_from(v).map_err(|_| Error::invalid(field, "is too large"))?)
            }
            ColumnValue::Bool(v) => p.bind(v),
            ColumnValue::Time(v) => p.bind(v),
            ColumnValue::Bytes(v) => p.bind(v),
            ColumnValue::OptBytes(v) => p.bind(v),
        };
        out.push((column, placeholder));
    }
    let tags: Vec<String> = row
        .spec
        .tags
        .as_slice()
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    out.push(("tags", p.bind(tags)));
    out.push(("search_terms", p.bind(codec::search_terms(&row.spec))));
    Ok(out)
}

/// The condition matching `search` (a case-insensitive substring of name, description, host or
/// a tag) on the search rows `s`, binding its parameters.
///
/// A search with a run of three ASCII characters (after lowercasing) asks the trigram index for
/// rows holding every such run, then `LIKE` decides on those rows; other searches (shorter, or
/// without such a run) test `LIKE` on every search row.
/// A search containing the field separator matches nothing, as no field may contain it.
fn search_condition(search: &str, p: &mut Params) -> String {
    let folded = search.to_lowercase();
    if folded.contains(codec::SEARCH_SEPARATOR) {
        return String::from("FALSE");
    }
    let pattern = p.bind(codec::like_pattern(search));
    let like = format!("s.search_text LIKE {pattern} ESCAPE E'\\\\'");
    let trigrams = codec::trigrams(&folded);
    if trigrams.is_empty() {
        like
    } else {
        let trigrams = p.bind(trigrams);
        format!("datahub_search_trigrams(s.search_text) @> {trigrams}::text[] AND {like}")
    }
}

const SUMMARY_FROM: &str =
    "FROM connections c LEFT JOIN connection_health h ON h.connection_id = c.id";

#[async_trait]
impl ConnectionStore for PostgresStore {
    async fn insert_connection(&self, row: &StoredConnection, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "inserting a connection";
        let mut p = Params::default();
        let mut placed = bind_values(row, &mut p)?;
        placed.extend([
            ("id", p.bind(*row.id.as_uuid())),
            ("owner", p.bind(*row.owner.as_uuid())),
            ("version", p.bind(to_i64(row.version, "version")?)),
            ("created_at", p.bind(row.created_at)),
        ]);
        let (columns, placeholders): (Vec<&str>, Vec<String>) = placed.into_iter().unzip();
        let sql = format!(
            "INSERT INTO connections ({}) VALUES ({})",
            columns.join(", "),
            placeholders.join(", ")
        );
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        tx.execute(&sql, &p.refs())
            .await
            .map_err(|e| write_error(DOING, e))?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn connection(&self, id: ConnectionId) -> Result<Option<StoredConnection>> {
        let client = self.client().await?;
        let sql =
            format!("SELECT {SPEC_COLUMNS}, {SECRET_COLUMNS} FROM connections c WHERE c.id = $1");
        client
            .query_opt(&sql, &[id.as_uuid()])
            .await
            .map_err(|e| db("reading a connection", e))?
            .map(|r| codec::connection_row(&r))
            .transpose()
    }

    async fn connection_for_test(&self, id: ConnectionId) -> Result<Option<TestContext>> {
        let client = self.client().await?;
        test_context(&client, TestKey::Id(id)).await
    }

    async fn connection_for_test_by_name(
        &self,
        name: &ConnectionName,
    ) -> Result<Option<TestContext>> {
        let client = self.client().await?;
        test_context(&client, TestKey::Name(name)).await
    }

    async fn connection_by_name(&self, name: &ConnectionName) -> Result<Option<StoredConnection>> {
        let client = self.client().await?;
        let sql =
            format!("SELECT {SPEC_COLUMNS}, {SECRET_COLUMNS} FROM connections c WHERE c.name = $1");
        client
            .query_opt(&sql, &[&name.as_str()])
            .await
            .map_err(|e| db("reading a connection", e))?
            .map(|r| codec::connection_row(&r))
            .transpose()
    }

    async fn connection_summary(&self, id: ConnectionId) -> Result<Option<Connection>> {
        let client = self.client().await?;
        let sql = format!("SELECT {SPEC_COLUMNS}, {HEALTH_COLUMNS} {SUMMARY_FROM} WHERE c.id = $1");
        client
            .query_opt(&sql, &[id.as_uuid()])
            .await
            .map_err(|e| db("reading a connection", e))?
            .map(|r| codec::connection_summary(&r))
            .transpose()
    }

    async fn update_connection(
        &self,
        row: &StoredConnection,
        expected_version: u64,
        audit: &AuditEvent,
    ) -> Result<u64> {
        const DOING: &str = "updating a connection";
        let id = *row.id.as_uuid();
        let mut p = Params::default();
        let sets = bind_values(row, &mut p)?;
        let id_at = p.bind(id);
        let expected_at = p.bind(to_i64(expected_version, "version")?);
        let sets = sets
            .into_iter()
            .map(|(column, placeholder)| format!("{column} = {placeholder}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE connections SET {sets}, version = version + 1 \
             WHERE id = {id_at} AND version = {expected_at} RETURNING version"
        );
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let updated = tx
            .query_opt(&sql, &p.refs())
            .await
            .map_err(|e| write_error(DOING, e))?;
        let Some(updated) = updated else {
            return Err(missing_or_stale(&tx, &id, DOING).await);
        };
        let version: i64 = codec::get(&updated, "connections", "version")?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))?;
        u64::try_from(version)
            .map_err(|_| Error::new(ErrorKind::Store, "corrupt row in connections"))
    }

    async fn delete_connection(
        &self,
        id: ConnectionId,
        expected_version: u64,
        audit: &AuditEvent,
    ) -> Result<()> {
        const DOING: &str = "deleting a connection";
        let expected = to_i64(expected_version, "version")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let deleted = tx
            .execute(
                "DELETE FROM connections WHERE id = $1 AND version = $2",
                &[id.as_uuid(), &expected],
            )
            .await
            .map_err(|e| db(DOING, e))?;
        if deleted == 0 {
            return Err(missing_or_stale(&tx, id.as_uuid(), DOING).await);
        }
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn list_connections(
        &self,
        query: &ListQuery,
        visibility: &Visibility,
    ) -> Result<Page<Connection>> {
        const DOING: &str = "listing connections";
        let offset = page_offset(query.page, query.per_page)?;
        let mut p = Params::default();
        let mut conditions: Vec<String> = Vec::new();
        // A search chooses the page from the narrow search rows `s` (see migration 2), joining
        // `connections` or `connection_health` there only when a filter or the sort needs them.
        let search = query.search.as_deref();
        let (id, owner, name, updated) = if search.is_some() {
            ("s.connection_id", "s.owner", "s.name", "s.updated_at")
        } else {
            ("c.id", "c.owner", "c.name", "c.updated_at")
        };
        if let Some(search) = search {
            conditions.push(search_condition(search, &mut p));
        }
        if let Some(tag) = &query.tag {
            let tag = p.bind(tag.as_str().to_owned());
            conditions.push(format!("c.tags @> ARRAY[{tag}::text]"));
        }
        if let Some(status) = query.status {
            let status = p.bind(status.as_str());
            conditions.push(format!("COALESCE(h.status, 'unknown') = {status}"));
        }
        if let Some(engine) = query.engine {
            let engine = p.bind(engine.as_str());
            conditions.push(format!("c.engine = {engine}"));
        }
        if let Some(o) = query.owner {
            let o = p.bind(*o.as_uuid());
            conditions.push(format!("{owner} = {o}"));
        }
        if let Visibility::Member { user, teams } = visibility {
            let user = p.bind(*user.as_uuid());
            let teams = p.bind(teams.iter().map(|t| *t.as_uuid()).collect::<Vec<Uuid>>());
            // Two plain subqueries, each served by an index on `grants`, hashed once.
            conditions.push(format!(
                "({owner} = {user} OR {id} IN (SELECT g.connection_id FROM grants g \
                 WHERE g.user_id = {user} UNION ALL SELECT g.connection_id FROM grants g \
                 WHERE g.team_id = ANY({teams}::uuid[])))"
            ));
        }
        let filter = if conditions.is_empty() {
            String::from("TRUE")
        } else {
            conditions.join(" AND ")
        };
        let order = |name: &str, updated: &str| match query.sort {
            SortKey::Name => format!("{name} COLLATE \"C\""),
            SortKey::Updated => format!("{updated} DESC, {name} COLLATE \"C\""),
            SortKey::Status => format!(
                "CASE COALESCE(h.status, 'unknown') WHEN 'down' THEN 0 WHEN 'degraded' THEN 1 \
                 WHEN 'unknown' THEN 2 ELSE 3 END, {name} COLLATE \"C\""
            ),
            SortKey::Checked => format!("h.checked_at DESC NULLS LAST, {name} COLLATE \"C\""),
            SortKey::Latency => format!("h.latency_ms DESC NULLS LAST, {name} COLLATE \"C\""),
        };
        let count_params = p.0.len();
        let limit = p.bind(i64::from(query.per_page));
        let offset = p.bind(offset);
        let (sql, count_from) = if search.is_some() {
            let mut from = String::from("FROM connection_search s");
            if query.tag.is_some() || query.engine.is_some() {
                from.push_str(" JOIN connections c ON c.id = s.connection_id");
            }
            if query.status.is_some() || query.sort.reads_health() {
                from.push_str(
                    " LEFT JOIN connection_health h ON h.connection_id = s.connection_id",
                );
            }
            let sql = format!(
                "WITH p AS (SELECT s.connection_id AS id, count(*) OVER () AS total {from} \
                 WHERE {filter} ORDER BY {} LIMIT {limit} OFFSET {offset}) \
                 SELECT {SPEC_COLUMNS}, {HEALTH_COLUMNS}, p.total AS total FROM p \
                 JOIN connections c ON c.id = p.id \
                 LEFT JOIN connection_health h ON h.connection_id = c.id ORDER BY {}",
                order(name, updated),
                order("c.name", "c.updated_at"),
            );
            (sql, from)
        } else {
            let sql = format!(
                "SELECT {SPEC_COLUMNS}, {HEALTH_COLUMNS}, count(*) OVER () AS total \
                 {SUMMARY_FROM} WHERE {filter} ORDER BY {} LIMIT {limit} OFFSET {offset}",
                order(name, updated)
            );
            (sql, SUMMARY_FROM.to_owned())
        };
        let client = self.client().await?;
        let rows = client
            .query(&sql, &p.refs())
            .await
            .map_err(|e| db(DOING, e))?;
        let total = match page_total(&rows, "connections")? {
            Some(total) => total,
            None if query.page == 1 => 0,
            // A page past the end: the window count has no row to ride on.
            None => {
                let sql = format!("SELECT count(*) AS total {count_from} WHERE {filter}");
                let refs = p.refs();
                let row = client
                    .query_one(&sql, &refs[..count_params])
                    .await
                    .map_err(|e| db(DOING, e))?;
                page_total(std::slice::from_ref(&row), "connections")?.unwrap_or(0)
            }
        };
        let items = rows
            .iter()
            .map(codec::connection_summary)
            .collect::<Result<Vec<_>>>()?;
        Ok(columns::page(items, total, query.page, query.per_page))
    }

    async fn set_grants(
        &self,
        id: ConnectionId,
        expected_version: u64,
        grants: &[Grant],
        audit: &AuditEvent,
    ) -> Result<u64> {
        const DOING: &str = "setting grants";
        let expected = to_i64(expected_version, "version")?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        // Bumping the version locks the connection's row, so concurrent replacements of its
        // grants apply one after another, and the second finds its version stale.
        let bumped = tx
            .query_opt(
                "UPDATE connections SET version = version + 1 \
                 WHERE id = $1 AND version = $2 RETURNING version",
                &[id.as_uuid(), &expected],
            )
            .await
            .map_err(|e| write_error(DOING, e))?;
        let Some(bumped) = bumped else {
            return Err(missing_or_stale(&tx, id.as_uuid(), DOING).await);
        };
        let version: i64 = codec::get(&bumped, "connections", "version")?;
        tx.execute(
            "DELETE FROM grants WHERE connection_id = $1",
            &[id.as_uuid()],
        )
        .await
        .map_err(|e| db(DOING, e))?;
        for grant in grants {
            let (user, team) = match grant.grantee {
                Grantee::User(u) => (Some(*u.as_uuid()), None),
                Grantee::Team(t) => (None, Some(*t.as_uuid())),
            };
            tx.execute(
                "INSERT INTO grants (connection_id, user_id, team_id, level) \
                 VALUES ($1, $2, $3, $4)",
                &[id.as_uuid(), &user, &team, &grant.level.as_str()],
            )
            .await
            .map_err(|e| write_error(DOING, e))?;
        }
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))?;
        u64::try_from(version)
            .map_err(|_| Error::new(ErrorKind::Store, "corrupt row in connections"))
    }

    async fn grants(&self, id: ConnectionId) -> Result<Vec<Grant>> {
        let client = self.client().await?;
        let rows = client
            .query(GRANTS_SQL, &[id.as_uuid()])
            .await
            .map_err(|e| db("reading grants", e))?;
        rows.iter().map(codec::grant_row).collect()
    }

    async fn named_grants(&self, id: ConnectionId) -> Result<Vec<NamedGrant>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT g.user_id, g.team_id, g.level, COALESCE(u.username, t.name) AS name \
                 FROM grants g LEFT JOIN users u ON u.id = g.user_id \
                 LEFT JOIN teams t ON t.id = g.team_id WHERE g.connection_id = $1 \
                 ORDER BY g.user_id NULLS LAST, g.team_id",
                &[id.as_uuid()],
            )
            .await
            .map_err(|e| db("reading grants", e))?;
        rows.iter().map(codec::named_grant_row).collect()
    }
}
