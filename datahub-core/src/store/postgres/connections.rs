//! The PostgreSQL side of connections and their grants ([`ConnectionStore`]): the connection
//! columns written and read back, versioned updates and deletes, and listing (filters,
//! visibility, sort and search through the trigram index of migration 2) in SQL.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::audit::append_in;
use super::codec::{self, HEALTH_COLUMNS, SECRET_COLUMNS, SPEC_COLUMNS, to_i64};
use super::error::db;
use super::{Params, PostgresStore, page_total, write_error};
use crate::audit::AuditEvent;
use crate::model::{Connection, ConnectionName, ListQuery, NamedGrant, Page, SortKey, Visibility};
use crate::rbac::{Grant, Grantee};
use crate::store::columns::{self, page_offset};
use crate::store::{ConnectionStore, StoredConnection};
use crate::{ConnectionId, Error, ErrorKind, Result};

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

/// The owned column values of a connection row, shared by insert and update.
struct ConnectionValues {
    name: String,
    description: Option<String>,
    engine: &'static str,
    host: String,
    port: i32,
    database: String,
    username: String,
    tls_mode: &'static str,
    ca_cert: Option<String>,
    client_cert: Option<String>,
    channel_binding: &'static str,
    connect_timeout_ms: i32,
    application_name: Option<String>,
    tags: Vec<String>,
    monitoring_enabled: bool,
    interval_s: i32,
    slow_ms: i32,
    search_terms: Vec<String>,
    updated_at: OffsetDateTime,
    kek_id: String,
    wrapped_dek: Vec<u8>,
    sealed_password: Vec<u8>,
    sealed_client_key: Option<Vec<u8>>,
}

/// The columns of [`ConnectionValues::params`], in order.
const VALUE_COLUMNS: [&str; 23] = [
    "name",
    "description",
    "engine",
    "host",
    "port",
    "database_name",
    "username",
    "tls_mode",
    "tls_ca_cert_pem",
    "tls_client_cert_pem",
    "tls_channel_binding",
    "connect_timeout_ms",
    "application_name",
    "tags",
    "monitoring_enabled",
    "monitoring_interval_s",
    "monitoring_slow_ms",
    "search_terms",
    "updated_at",
    "kek_id",
    "wrapped_dek",
    "sealed_password",
    "sealed_client_key",
];

impl ConnectionValues {
    fn new(row: &StoredConnection) -> Result<Self> {
        let s = &row.spec;
        let int = |v: u32, field: &'static str| {
            i32::try_from(v).map_err(|_| Error::invalid(field, "is too large"))
        };
        Ok(Self {
            name: s.name.as_str().to_owned(),
            description: s.description.as_ref().map(|d| d.as_str().to_owned()),
            engine: s.engine.as_str(),
            host: s.host.as_str().to_owned(),
            port: i32::from(s.port.get()),
            database: s.database.as_str().to_owned(),
            username: s.username.as_str().to_owned(),
            tls_mode: s.tls.mode().as_str(),
            ca_cert: s.tls.ca_cert_pem().map(|c| c.as_str().to_owned()),
            client_cert: s.tls.client_cert_pem().map(|c| c.as_str().to_owned()),
            channel_binding: s.tls.channel_binding().as_str(),
            connect_timeout_ms: int(s.options.connect_timeout_ms(), "options.connect_timeout_ms")?,
            application_name: s.options.application_name().map(|a| a.as_str().to_owned()),
            tags: s
                .tags
                .as_slice()
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            monitoring_enabled: s.monitoring.enabled(),
            interval_s: int(s.monitoring.interval_s(), "monitoring.interval_s")?,
            slow_ms: int(s.monitoring.slow_ms(), "monitoring.slow_ms")?,
            search_terms: codec::search_terms(s),
            updated_at: row.updated_at,
            kek_id: row.secrets.dek.kek_id().as_str().to_owned(),
            wrapped_dek: row.secrets.dek.to_bytes(),
            sealed_password: row.secrets.password.to_bytes(),
            sealed_client_key: row.secrets.client_key_pem.as_ref().map(|k| k.to_bytes()),
        })
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 23] {
        [
            &self.name,
            &self.description,
            &self.engine,
            &self.host,
            &self.port,
            &self.database,
            &self.username,
            &self.tls_mode,
            &self.ca_cert,
            &self.client_cert,
            &self.channel_binding,
            &self.connect_timeout_ms,
            &self.application_name,
            &self.tags,
            &self.monitoring_enabled,
            &self.interval_s,
            &self.slow_ms,
            &self.search_terms,
            &self.updated_at,
            &self.kek_id,
            &self.wrapped_dek,
            &self.sealed_password,
            &self.sealed_client_key,
        ]
    }
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
        let values = ConnectionValues::new(row)?;
        let id = *row.id.as_uuid();
        let owner = *row.owner.as_uuid();
        let version = to_i64(row.version, "version")?;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id, &owner, &version, &row.created_at];
        params.extend(values.params());
        let columns = VALUE_COLUMNS.join(", ");
        let placeholders = (1..=params.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO connections (id, owner, version, created_at, {columns}) \
             VALUES ({placeholders})"
        );
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        tx.execute(&sql, &params)
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
        let values = ConnectionValues::new(row)?;
        let id = *row.id.as_uuid();
        let expected = to_i64(expected_version, "version")?;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id, &expected];
        params.extend(values.params());
        let sets = VALUE_COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = ${}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE connections SET {sets}, version = version + 1 \
             WHERE id = $1 AND version = $2 RETURNING version"
        );
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let updated = tx
            .query_opt(&sql, &params)
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
            .query(
                "SELECT user_id, team_id, level FROM grants WHERE connection_id = $1 \
                 ORDER BY user_id NULLS LAST, team_id",
                &[id.as_uuid()],
            )
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
