//! The SQLite store: the embedded default, one file in the data folder, zero set-up.
//!
//! It owns the database file (`datahub.sqlite3` in WAL mode, `synchronous=FULL` — except the
//! monitor's own bookkeeping: check leases, check results and their pruning commit with
//! `synchronous=NORMAL`, see `pool::Durability` — foreign keys on), its migrations (embedded from `migrations/sqlite/`, applied in one `BEGIN IMMEDIATE`
//! transaction), and the SQL behind every [`Store`] method. Blocking SQLite calls run on tokio's
//! blocking pool through a small connection pool whose every wait has a deadline.
//!
//! Every state-changing write runs in one `IMMEDIATE` transaction that also appends its audit
//! entry, so the entry and the change commit or roll back together and the chain stays linear
//! (SQLite admits one writer at a time, across processes too). Writes made at the same time
//! share the transaction, each in a savepoint of its own, and one commit (see `pool.rs`). It must never hold a plaintext
//! secret, log a secret column, or decide access.

mod codec;
mod keys;
mod pool;
mod sessions;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction, params, params_from_iter};
use time::OffsetDateTime;

use self::codec::{
    AUDIT_COLUMNS, FactColumns, HEALTH_COLUMNS, SEARCH_SEPARATOR, SECRET_COLUMNS, SPEC_COLUMNS,
    audit_from_row, check_from_row, common_from_row, encode_list, fts_phrase, get, get_list,
    get_parsed, get_u64, health_from_row, like_pattern, micros, search_body, search_fold,
    secrets_from_row, team_id_from_row, token_from_row, user_from_row,
};
use self::pool::Pool;
use super::{
    KekUsage, Migration, Store, StoredConnection, StoredToken, StoredUser, migration_plan,
};
use crate::audit::{AuditEvent, AuditRecord, GENESIS_HASH, truncate_to_micros};
use crate::crypto::{KekId, WrappedDek};
use crate::model::{
    AuditQuery, Check, Connection, ConnectionName, Directory, DirectoryTeam, DirectoryUser, Health,
    ListQuery, MAX_PER_PAGE, NamedGrant, Page, SortKey, TOKEN_TOUCH_INTERVAL, TargetPolicy, Team,
    Visibility,
};
use crate::rbac::{Grant, GrantLevel, Grantee};
use crate::{ConnectionId, Error, ErrorKind, Result, TeamId, TokenId, UserId};

/// The database file's name inside the data folder.
pub const DATABASE_FILE: &str = "datahub.sqlite3";

/// The SQLite migrations, in order, embedded from `migrations/sqlite/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "search",
        sql: include_str!("../../../migrations/sqlite/0002_search.sql"),
    },
    Migration {
        version: 3,
        name: "check_leases",
        sql: include_str!("../../../migrations/sqlite/0003_check_leases.sql"),
    },
    Migration {
        version: 4,
        name: "sessions",
        sql: include_str!("../../../migrations/sqlite/0004_sessions.sql"),
    },
    Migration {
        version: 5,
        name: "check_facts",
        sql: include_str!("../../../migrations/sqlite/0005_check_facts.sql"),
    },
    Migration {
        version: 6,
        name: "key_checks",
        sql: include_str!("../../../migrations/sqlite/0006_key_checks.sql"),
    },
    Migration {
        version: 7,
        name: "token_last_used",
        sql: include_str!("../../../migrations/sqlite/0007_token_last_used.sql"),
    },
];

/// The SQLite implementation of [`Store`]. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    pool: Pool,
}

impl SqliteStore {
    /// Opens (creating when needed) the store in `data_dir`: creates the folder with mode 0700,
    /// opens `datahub.sqlite3` (mode 0600) in WAL mode and applies pending migrations.
    ///
    /// Blocking: call it before serving, or inside `spawn_blocking`.
    ///
    /// # Errors
    /// `Io` when the folder cannot be created; `Store` when the database cannot be opened, a
    /// migration fails, or the schema is newer than this program or was migrated by a different
    /// build (see [`migration_plan`]).
    pub fn open(data_dir: &Path) -> Result<Self> {
        create_private_dir(data_dir)?;
        let path = data_dir.join(DATABASE_FILE);
        let mut conn = pool::open_connection(&path)?;
        restrict_file(&path)?;
        migrate(&mut conn)?;
        Ok(Self {
            pool: Pool::new(path.clone(), conn),
            path,
        })
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let io = |e: std::io::Error| {
        Error::new(ErrorKind::Io, "could not create the data folder").with_source(e)
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(io)?;
    Ok(())
}

fn restrict_file(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                "could not restrict the database file to its owner",
            )
            .with_source(e)
        })?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Applies pending migrations in one exclusive transaction, so two processes opening a new
/// store at once do not both migrate it.
fn migrate(conn: &mut rusqlite::Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db_error)?;
    let has_table: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
             AND name = 'schema_migrations')",
            [],
            |r| r.get(0),
        )
        .map_err(db_error)?;
    let mut applied = Vec::new();
    if has_table {
        let mut stmt = tx
            .prepare("SELECT version, checksum FROM schema_migrations ORDER BY version")
            .map_err(db_error)?;
        let mut rows = stmt.query([]).map_err(db_error)?;
        while let Some(row) = rows.next().map_err(db_error)? {
            let t = "schema_migrations";
            let version = u32::try_from(get::<i64>(row, t, "version")?)
                .map_err(|_| Error::new(ErrorKind::Store, "corrupt row in schema_migrations"))?;
            let checksum: Vec<u8> = get(row, t, "checksum")?;
            let checksum = checksum
                .try_into()
                .map_err(|_| Error::new(ErrorKind::Store, "corrupt row in schema_migrations"))?;
            applied.push(super::Applied { version, checksum });
        }
    }
    let plan = migration_plan(MIGRATIONS, &applied)?;
    for m in &plan {
        tx.execute_batch(m.sql).map_err(|e| {
            Error::new(
                ErrorKind::Store,
                format!("sqlite migration {} ({}) failed", m.version, m.name),
            )
            .with_source(e)
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
             VALUES (?1, ?2, ?3, ?4)",
            params![
                m.version,
                m.name,
                m.checksum().as_slice(),
                micros(OffsetDateTime::now_utc())
            ],
        )
        .map_err(db_error)?;
    }
    tx.commit().map_err(db_error)?;
    for m in plan {
        tracing::info!(
            store = "sqlite",
            version = m.version,
            name = m.name,
            "migration applied"
        );
    }
    Ok(())
}

/// Maps a SQLite failure to a `Store` error (the cause attached, no values quoted).
pub(crate) fn db_error(e: rusqlite::Error) -> Error {
    let busy = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    let message = if busy {
        "the sqlite store is busy: another process held its lock for too long"
    } else {
        "the sqlite store failed"
    };
    // SQLite's own message names tables and constraints, never a bound value.
    tracing::warn!(store = "sqlite", error = %e, "{message}");
    Error::new(ErrorKind::Store, message).with_source(e)
}

fn conflict(field: &'static str, message: &'static str) -> Error {
    Error::new(ErrorKind::Conflict, message).with_field(field)
}

fn not_found(field: &'static str, message: &'static str) -> Error {
    Error::new(ErrorKind::NotFound, message).with_field(field)
}

fn i64_of(v: u64, field: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(field, "is too large"))
}

fn check_page(page: u32, per_page: u32) -> Result<()> {
    if page < 1 {
        return Err(Error::invalid("page", "must be at least 1"));
    }
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(Error::invalid("per_page", "must be between 1 and 200"));
    }
    Ok(())
}

fn offset(page: u32, per_page: u32) -> i64 {
    (i64::from(page) - 1) * i64::from(per_page)
}

/// Appends `event` to the audit chain inside `tx`: reads the last entry, chains after it.
fn append_audit_in(tx: &Transaction<'_>, event: &AuditEvent) -> Result<AuditRecord> {
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db_error)?;
    let (seq, prev_hash) = match last {
        None => (1, GENESIS_HASH),
        Some((seq, hash)) => {
            let corrupt = || Error::new(ErrorKind::Store, "corrupt row in audit_log");
            let seq = u64::try_from(seq).map_err(|_| corrupt())?;
            let hash: [u8; 32] = hash.try_into().map_err(|_| corrupt())?;
            (seq + 1, hash)
        }
    };
    let mut event = event.clone();
    // Stored at microsecond precision: hash what is stored, so the chain verifies when read.
    event.at = truncate_to_micros(event.at);
    let record = AuditRecord::chain(seq, prev_hash, event);
    let e = &record.event;
    tx.prepare_cached(
        "INSERT INTO audit_log (seq, at, actor, actor_name, action, target, outcome, \
         changed_fields, client_addr, request_id, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            i64::try_from(record.seq).unwrap_or(i64::MAX),
            micros(e.at),
            e.actor.map(|a| a.to_string()),
            e.actor_name,
            e.action,
            e.target,
            e.outcome.as_str(),
            encode_list(&e.changed_fields),
            e.client_addr,
            e.request_id,
            record.prev_hash.as_slice(),
            record.hash.as_slice(),
        ])
    })
    .map_err(|err| {
        Error::new(ErrorKind::Store, "could not append to the audit log").with_source(err)
    })?;
    Ok(record)
}

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

/// The values of every connection column but id, owner, version and created_at, in the order
/// of [`CONNECTION_SET`].
fn connection_values(row: &StoredConnection) -> Vec<Value> {
    let s = &row.spec;
    let text = |v: &str| Value::Text(v.to_owned());
    let opt_text = |v: Option<&str>| v.map_or(Value::Null, |v| Value::Text(v.to_owned()));
    vec![
        text(s.name.as_str()),
        opt_text(s.description.as_ref().map(|d| d.as_str())),
        opt_text(
            s.description
                .as_ref()
                .map(|d| search_fold(d.as_str()))
                .as_deref(),
        ),
        text(s.engine.as_str()),
        text(s.host.as_str()),
        Value::Integer(i64::from(s.port.get())),
        text(s.database.as_str()),
        text(s.username.as_str()),
        text(s.tls.mode().as_str()),
        opt_text(s.tls.ca_cert_pem().map(|p| p.as_str())),
        opt_text(s.tls.client_cert_pem().map(|p| p.as_str())),
        text(s.tls.channel_binding().as_str()),
        Value::Integer(i64::from(s.options.connect_timeout_ms())),
        opt_text(s.options.application_name().map(|a| a.as_str())),
        Value::Integer(i64::from(s.monitoring.enabled())),
        Value::Integer(i64::from(s.monitoring.interval_s())),
        Value::Integer(i64::from(s.monitoring.slow_ms())),
        Value::Integer(micros(row.updated_at)),
        text(row.secrets.dek.kek_id().as_str()),
        Value::Blob(row.secrets.dek.to_bytes()),
        Value::Blob(row.secrets.password.to_bytes()),
        row.secrets
            .client_key_pem
            .as_ref()
            .map_or(Value::Null, |k| Value::Blob(k.to_bytes())),
    ]
}

/// The columns [`connection_values`] fills, in order.
const CONNECTION_SET: [&str; 22] = [
    "name",
    "description",
    "description_lc",
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
    "monitoring_enabled",
    "monitoring_interval_s",
    "monitoring_slow_ms",
    "updated_at",
    "kek_id",
    "wrapped_dek",
    "sealed_password",
    "sealed_client_key",
];

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
        Ok(false) => not_found("id", "no such connection"),
        Err(e) => e,
    }
}

fn row_exists(tx: &Transaction<'_>, sql: &str, id: &str) -> Result<bool> {
    tx.prepare_cached(sql)
        .map_err(db_error)?
        .query_row([id], |r| r.get(0))
        .map_err(db_error)
}

fn connection_row_query(
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
    let c = common_from_row(row)?;
    Ok(Some(StoredConnection {
        id: c.id,
        spec: c.spec,
        owner: c.owner,
        version: c.version,
        created_at: c.created_at,
        updated_at: c.updated_at,
        secrets: secrets_from_row(row)?,
    }))
}

fn summary_from_row(row: &rusqlite::Row<'_>) -> Result<Connection> {
    let c = common_from_row(row)?;
    Ok(Connection {
        id: c.id,
        spec: c.spec,
        owner: c.owner,
        version: c.version,
        // Every stored connection has a sealed password (the column is NOT NULL).
        password_set: true,
        created_at: c.created_at,
        updated_at: c.updated_at,
        health: health_from_row(row)?,
    })
}

fn team_members(conn: &rusqlite::Connection, team: &str) -> Result<Vec<UserId>> {
    let mut stmt = conn
        .prepare_cached("SELECT user_id FROM team_members WHERE team_id = ?1 ORDER BY user_id")
        .map_err(db_error)?;
    let mut rows = stmt.query([team]).map_err(db_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_error)? {
        out.push(UserId::from_uuid(codec::get_uuid(
            row,
            "team_members",
            "user_id",
        )?));
    }
    Ok(out)
}

/// Collects every row of a query through `f`.
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

fn collect<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl Fn(&rusqlite::Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_error)?;
    let mut rows = stmt.query(params).map_err(db_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_error)? {
        out.push(f(row)?);
    }
    Ok(out)
}

/// Where a list query reads a connection's id, owner and grantees: `connections c` (and the
/// `grants`) for a plain list, the narrow search rows `connection_search s` for a search.
struct ListSource {
    id: &'static str,
    owner: &'static str,
    /// The column listing the grantees as `u:<user id>` and `t:<team id>`, comma-separated;
    /// `None` to look them up in `grants`.
    viewers: Option<&'static str>,
}

const LIST_FROM_CONNECTIONS: ListSource = ListSource {
    id: "c.id",
    owner: "c.owner",
    viewers: None,
};

const LIST_FROM_SEARCH: ListSource = ListSource {
    id: "s.connection_id",
    owner: "s.owner",
    viewers: Some("s.viewers"),
};

/// The FROM and the clause matching a non-empty search (a case-insensitive substring of name,
/// description, host or a tag) in the search rows `s`, with its parameter appended to `params`.
///
/// Three characters or more (after lowercasing) walk the trigram index `f` and read the search
/// row of each match by key (`CROSS JOIN` keeps that order); shorter searches, which have no
/// trigram, scan the search text with `LIKE`. A search containing the field separator matches
/// nothing, as no field may contain it.
fn search_clause(search: &str, params: &mut Vec<Value>) -> (String, String) {
    let scan = String::from("FROM connection_search s");
    let folded = search_fold(search);
    if folded.contains(SEARCH_SEPARATOR) {
        return (scan, String::from("0"));
    }
    if folded.chars().count() >= 3 {
        params.push(Value::Text(fts_phrase(&folded)));
        (
            String::from(
                "FROM connection_search_fts f CROSS JOIN connection_search s ON s.key = f.rowid",
            ),
            format!("connection_search_fts MATCH ?{}", params.len()),
        )
    } else {
        params.push(Value::Text(like_pattern(search)));
        (scan, format!("s.body LIKE ?{} ESCAPE '\\'", params.len()))
    }
}

/// The WHERE clause and parameters of a list query's filters and visibility, reading ids and
/// owners from `source` (the search itself is [`search_clause`]).
fn list_filter(
    query: &ListQuery,
    visibility: &Visibility,
    source: &ListSource,
    mut params: Vec<Value>,
    mut clauses: Vec<String>,
) -> (String, Vec<Value>) {
    let ListSource { id, owner, .. } = source;
    if let Some(tag) = &query.tag {
        params.push(Value::Text(tag.as_str().to_owned()));
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM connection_tags ft WHERE ft.connection_id = {id} \
             AND ft.tag = ?{})",
            params.len()
        ));
    }
    if let Some(status) = query.status {
        params.push(Value::Text(status.as_str().to_owned()));
        clauses.push(format!("coalesce(h.status, 'unknown') = ?{}", params.len()));
    }
    if let Some(engine) = query.engine {
        params.push(Value::Text(engine.as_str().to_owned()));
        clauses.push(format!("c.engine = ?{}", params.len()));
    }
    if let Some(o) = query.owner {
        params.push(Value::Text(o.to_string()));
        clauses.push(format!("{owner} = ?{}", params.len()));
    }
    if let Visibility::Member { user, teams } = visibility {
        if let Some(viewers) = source.viewers {
            // An element is `u:` or `t:` and a 36-character id; the `:` fixes where a match can
            // start, so `instr` finds exactly the listed ids.
            params.push(Value::Text(user.to_string()));
            let mut any = vec![format!("{owner} = ?{}", params.len())];
            params.push(Value::Text(format!("u:{user}")));
            any.push(format!("instr({viewers}, ?{}) > 0", params.len()));
            for team in teams {
                params.push(Value::Text(format!("t:{team}")));
                any.push(format!("instr({viewers}, ?{}) > 0", params.len()));
            }
            clauses.push(format!("({})", any.join(" OR ")));
        } else {
            params.push(Value::Text(user.to_string()));
            let u = params.len();
            let mut team_params = Vec::new();
            for team in teams {
                params.push(Value::Text(team.to_string()));
                team_params.push(format!("?{}", params.len()));
            }
            let team_clause = if team_params.is_empty() {
                String::new()
            } else {
                format!(" OR g.team_id IN ({})", team_params.join(", "))
            };
            clauses.push(format!(
                "({owner} = ?{u} OR EXISTS (SELECT 1 FROM grants g \
                 WHERE g.connection_id = {id} AND (g.user_id = ?{u}{team_clause})))"
            ));
        }
    }
    let where_clause = if clauses.is_empty() {
        String::from("1")
    } else {
        clauses.join(" AND ")
    };
    (where_clause, params)
}

/// The ORDER BY of a list, reading names from `name` and last changes from `updated` (the name
/// always last: names are unique, so the order is total).
fn list_order(sort: SortKey, name: &str, updated: &str) -> String {
    match sort {
        SortKey::Name => name.to_owned(),
        SortKey::Updated => format!("{updated} DESC, {name}"),
        SortKey::Status => format!(
            "CASE coalesce(h.status, 'unknown') WHEN 'down' THEN 0 WHEN 'degraded' THEN 1 \
             WHEN 'unknown' THEN 2 ELSE 3 END, {name}"
        ),
        SortKey::Checked => format!("h.checked_at DESC NULLS LAST, {name}"),
        SortKey::Latency => format!("h.latency_ms DESC NULLS LAST, {name}"),
    }
}

impl SqliteStore {
    /// A list with a search. The total and the page's ids are chosen from the narrow search rows
    /// (trigram index, visibility, sort), joining `connections` or `connection_health` there only
    /// when a filter or the sort needs them; then only the rows of the page are read in full.
    /// The count and the page are two statements in one read transaction (one snapshot): a
    /// window count would sort every match, where the page keeps only the best `per_page`.
    async fn search_connections(
        &self,
        search: &str,
        query: &ListQuery,
        visibility: &Visibility,
    ) -> Result<Page<Connection>> {
        let mut params = Vec::new();
        let (mut from, clause) = search_clause(search, &mut params);
        let (where_clause, params) =
            list_filter(query, visibility, &LIST_FROM_SEARCH, params, vec![clause]);
        if query.engine.is_some() {
            from.push_str(" JOIN connections c ON c.id = s.connection_id");
        }
        if query.status.is_some() || query.sort.reads_health() {
            from.push_str(" LEFT JOIN connection_health h ON h.connection_id = s.connection_id");
        }
        let inner_order = list_order(query.sort, "s.name", "s.updated_at");
        let outer_order = list_order(query.sort, "c.name", "c.updated_at");
        let (page, per_page) = (query.page, query.per_page);
        self.pool
            .read(move |conn| {
                let tx = conn.transaction().map_err(db_error)?;
                let total: i64 = tx
                    .prepare_cached(&format!("SELECT count(*) {from} WHERE {where_clause}"))
                    .and_then(|mut s| s.query_row(params_from_iter(params.iter()), |r| r.get(0)))
                    .map_err(db_error)?;
                let items = if total > offset(page, per_page) {
                    let n = params.len();
                    let sql = format!(
                        "WITH p AS (SELECT s.connection_id AS id {from} WHERE {where_clause} \
                         ORDER BY {inner_order} LIMIT ?{} OFFSET ?{}) \
                         SELECT {SPEC_COLUMNS}, {HEALTH_COLUMNS} FROM p \
                         JOIN connections c ON c.id = p.id \
                         LEFT JOIN connection_health h ON h.connection_id = c.id \
                         ORDER BY {outer_order}",
                        n + 1,
                        n + 2
                    );
                    let mut all = params;
                    all.push(Value::Integer(i64::from(per_page)));
                    all.push(Value::Integer(offset(page, per_page)));
                    collect(&tx, &sql, params_from_iter(all), summary_from_row)?
                } else {
                    Vec::new()
                };
                tx.commit().map_err(db_error)?;
                Ok(Page {
                    items,
                    total: u64::try_from(total).unwrap_or(0),
                    page,
                    per_page,
                })
            })
            .await
    }
}

#[async_trait]
impl Store for SqliteStore {
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
                let mut columns: Vec<&str> = CONNECTION_SET.to_vec();
                columns.extend(["id", "owner", "version", "created_at"]);
                let mut values = connection_values(&row);
                values.extend([
                    Value::Text(id),
                    Value::Text(row.owner.to_string()),
                    Value::Integer(1),
                    Value::Integer(micros(row.created_at)),
                ]);
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
                let sets: Vec<String> = CONNECTION_SET
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c} = ?{}", i + 1))
                    .collect();
                let n = CONNECTION_SET.len();
                let sql = format!(
                    "UPDATE connections SET {}, version = ?{} WHERE id = ?{} AND version = ?{}",
                    sets.join(", "),
                    n + 1,
                    n + 2,
                    n + 3
                );
                let mut values = connection_values(&row);
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
        check_page(query.page, query.per_page)?;
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
        let (page, per_page) = (query.page, query.per_page);
        self.pool
            .read(move |conn| {
                let from = "FROM connections c \
                            LEFT JOIN connection_health h ON h.connection_id = c.id";
                let total: i64 = conn
                    .prepare_cached(&format!("SELECT count(*) {from} WHERE {where_clause}"))
                    .and_then(|mut s| s.query_row(params_from_iter(params.iter()), |r| r.get(0)))
                    .map_err(db_error)?;
                let n = params.len();
                let sql = format!(
                    "SELECT {SPEC_COLUMNS}, {HEALTH_COLUMNS} {from} WHERE {where_clause} \
                     ORDER BY {order} LIMIT ?{} OFFSET ?{}",
                    n + 1,
                    n + 2
                );
                let mut all = params;
                all.push(Value::Integer(i64::from(per_page)));
                all.push(Value::Integer(offset(page, per_page)));
                let items = collect(conn, &sql, params_from_iter(all), summary_from_row)?;
                Ok(Page {
                    items,
                    total: u64::try_from(total).unwrap_or(0),
                    page,
                    per_page,
                })
            })
            .await
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
                            if !row_exists(
                                tx,
                                "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)",
                                &u,
                            )? {
                                return Err(not_found("user_id", "no such user"));
                            }
                            (Some(u), None)
                        }
                        Grantee::Team(t) => {
                            let t = t.to_string();
                            if !row_exists(
                                tx,
                                "SELECT EXISTS (SELECT 1 FROM teams WHERE id = ?1)",
                                &t,
                            )? {
                                return Err(not_found("team_id", "no such team"));
                            }
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
        self.pool
            .read(move |conn| {
                collect(
                    conn,
                    "SELECT user_id, team_id, level FROM grants WHERE connection_id = ?1 \
                     ORDER BY user_id IS NULL, user_id, team_id",
                    [id.to_string()],
                    grant_from_row,
                )
            })
            .await
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

    async fn insert_user(&self, user: &StoredUser, audit: &AuditEvent) -> Result<()> {
        let user = user.clone();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                if row_exists(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM users WHERE username = ?1)",
                    &user.user.username,
                )? {
                    return Err(conflict("username", "a user with this name exists"));
                }
                let id = user.user.id.to_string();
                if row_exists(tx, "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)", &id)? {
                    return Err(conflict("id", "a user with this id exists"));
                }
                tx.execute(
                    "INSERT INTO users (id, username, role, password_hash, disabled, created_at, \
                     updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        id,
                        user.user.username,
                        user.user.role.as_str(),
                        user.password_hash,
                        user.user.disabled,
                        micros(user.user.created_at),
                        micros(user.user.updated_at)
                    ],
                )
                .map_err(db_error)?;
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn update_user(&self, user: &StoredUser, audit: &AuditEvent) -> Result<()> {
        let user = user.clone();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                let changed = tx
                    .execute(
                        "UPDATE users SET role = ?1, password_hash = ?2, disabled = ?3, \
                         updated_at = ?4 WHERE id = ?5",
                        params![
                            user.user.role.as_str(),
                            user.password_hash,
                            user.user.disabled,
                            micros(user.user.updated_at),
                            user.user.id.to_string()
                        ],
                    )
                    .map_err(db_error)?;
                if changed == 0 {
                    return Err(not_found("user_id", "no such user"));
                }
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn user(&self, id: UserId) -> Result<Option<StoredUser>> {
        self.pool
            .read(move |conn| {
                Ok(collect(
                    conn,
                    "SELECT * FROM users WHERE id = ?1",
                    [id.to_string()],
                    user_from_row,
                )?
                .pop())
            })
            .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<StoredUser>> {
        let username = username.to_owned();
        self.pool
            .read(move |conn| {
                Ok(collect(
                    conn,
                    "SELECT * FROM users WHERE username = ?1",
                    [username],
                    user_from_row,
                )?
                .pop())
            })
            .await
    }

    async fn users(&self) -> Result<Vec<StoredUser>> {
        self.pool
            .read(|conn| {
                collect(
                    conn,
                    "SELECT * FROM users ORDER BY username",
                    [],
                    user_from_row,
                )
            })
            .await
    }

    async fn user_count(&self) -> Result<u64> {
        self.pool
            .read(|conn| {
                let n: i64 = conn
                    .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
                    .map_err(db_error)?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .await
    }

    async fn upsert_team(&self, team: &Team, audit: &AuditEvent) -> Result<()> {
        let team = team.clone();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                let id = team.id.to_string();
                let taken: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM teams WHERE name = ?1 AND id <> ?2)",
                        params![team.name, id],
                        |r| r.get(0),
                    )
                    .map_err(db_error)?;
                if taken {
                    return Err(conflict("name", "a team with this name exists"));
                }
                tx.execute(
                    "INSERT INTO teams (id, name) VALUES (?1, ?2) \
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                    params![id, team.name],
                )
                .map_err(db_error)?;
                tx.execute("DELETE FROM team_members WHERE team_id = ?1", [&id])
                    .map_err(db_error)?;
                for member in &team.members {
                    let m = member.to_string();
                    if !row_exists(tx, "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)", &m)? {
                        return Err(not_found("members", "no such user"));
                    }
                    tx.execute(
                        "INSERT OR IGNORE INTO team_members (team_id, user_id) VALUES (?1, ?2)",
                        params![id, m],
                    )
                    .map_err(db_error)?;
                }
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn delete_team(&self, id: TeamId, audit: &AuditEvent) -> Result<()> {
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                let changed = tx
                    .execute("DELETE FROM teams WHERE id = ?1", [id.to_string()])
                    .map_err(db_error)?;
                if changed == 0 {
                    return Err(not_found("team_id", "no such team"));
                }
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn teams(&self) -> Result<Vec<Team>> {
        self.pool
            .read(|conn| {
                let heads = collect(
                    conn,
                    "SELECT id, name FROM teams ORDER BY name",
                    [],
                    |row| {
                        Ok((
                            team_id_from_row(row, "id")?,
                            get::<String>(row, "teams", "name")?,
                        ))
                    },
                )?;
                heads
                    .into_iter()
                    .map(|(id, name)| {
                        Ok(Team {
                            members: team_members(conn, &id.to_string())?,
                            id,
                            name,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn directory(&self, needle: &str, limit: u32) -> Result<Directory> {
        let needle = needle.to_lowercase();
        self.pool
            .read(move |conn| {
                // `instr`, not `LIKE`: the needle is plain text, with no wildcard to escape.
                let users = collect(
                    conn,
                    "SELECT id, username FROM users \
                     WHERE disabled = 0 AND instr(lower(username), ?1) > 0 \
                     ORDER BY username LIMIT ?2",
                    params![needle, i64::from(limit)],
                    |row| {
                        Ok(DirectoryUser {
                            id: UserId::from_uuid(codec::get_uuid(row, "users", "id")?),
                            username: get(row, "users", "username")?,
                        })
                    },
                )?;
                let teams = collect(
                    conn,
                    "SELECT id, name FROM teams WHERE instr(lower(name), ?1) > 0 \
                     ORDER BY name LIMIT ?2",
                    params![needle, i64::from(limit)],
                    |row| {
                        Ok(DirectoryTeam {
                            id: team_id_from_row(row, "id")?,
                            name: get(row, "teams", "name")?,
                        })
                    },
                )?;
                Ok(Directory { users, teams })
            })
            .await
    }

    async fn teams_of(&self, user: UserId) -> Result<Vec<TeamId>> {
        self.pool
            .read(move |conn| {
                collect(
                    conn,
                    "SELECT team_id FROM team_members WHERE user_id = ?1 ORDER BY team_id",
                    [user.to_string()],
                    |row| team_id_from_row(row, "team_id"),
                )
            })
            .await
    }

    async fn insert_token(&self, token: &StoredToken, audit: &AuditEvent) -> Result<()> {
        let token = token.clone();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                let hash = token.hash;
                let token = token.info;
                let user = token.user.to_string();
                if !row_exists(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)",
                    &user,
                )? {
                    return Err(not_found("user_id", "no such user"));
                }
                let taken: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM tokens WHERE id = ?1 OR hash = ?2)",
                        params![token.id.to_string(), hash.as_slice()],
                        |r| r.get(0),
                    )
                    .map_err(db_error)?;
                if taken {
                    return Err(conflict("token_id", "this token exists"));
                }
                tx.execute(
                    "INSERT INTO tokens (id, user_id, name, hash, read_only, created_at, \
                     expires_at, revoked_at, last_used_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        token.id.to_string(),
                        user,
                        token.name,
                        hash.as_slice(),
                        token.read_only,
                        micros(token.created_at),
                        token.expires_at.map(micros),
                        token.revoked_at.map(micros),
                        token.last_used_at.map(micros)
                    ],
                )
                .map_err(db_error)?;
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StoredToken>> {
        let hash = *hash;
        self.pool
            .read(move |conn| {
                Ok(collect(
                    conn,
                    "SELECT * FROM tokens WHERE hash = ?1",
                    [hash.as_slice()],
                    token_from_row,
                )?
                .pop())
            })
            .await
    }

    async fn tokens_of(&self, user: UserId) -> Result<Vec<StoredToken>> {
        self.pool
            .read(move |conn| {
                collect(
                    conn,
                    "SELECT * FROM tokens WHERE user_id = ?1 ORDER BY created_at, id",
                    [user.to_string()],
                    token_from_row,
                )
            })
            .await
    }

    async fn revoke_token(
        &self,
        id: TokenId,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<()> {
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                // A second revocation keeps the first time.
                let changed = tx
                    .execute(
                        "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?1) WHERE id = ?2",
                        params![micros(at), id.to_string()],
                    )
                    .map_err(db_error)?;
                if changed == 0 {
                    return Err(not_found("token_id", "no such token"));
                }
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn touch_token(&self, id: TokenId, at: OffsetDateTime) -> Result<bool> {
        let due = micros(at.saturating_sub(TOKEN_TOUCH_INTERVAL));
        self.pool
            .write(move |tx| {
                let n = tx
                    .execute(
                        "UPDATE tokens SET last_used_at = ?1 WHERE id = ?2 \
                         AND revoked_at IS NULL AND (last_used_at IS NULL OR last_used_at <= ?3)",
                        params![micros(at), id.to_string(), due],
                    )
                    .map_err(db_error)?;
                Ok(n > 0)
            })
            .await
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord> {
        let event = event.clone();
        self.pool.write(move |tx| append_audit_in(tx, &event)).await
    }

    async fn audit_after(&self, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.pool
            .read(move |conn| {
                collect(
                    conn,
                    &format!(
                        "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ?1 \
                         ORDER BY seq LIMIT ?2"
                    ),
                    params![after, i64::from(limit)],
                    audit_from_row,
                )
            })
            .await
    }

    async fn audit_page(&self, query: &AuditQuery) -> Result<Page<AuditRecord>> {
        check_page(query.page, query.per_page)?;
        let mut clauses = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        if let Some(actor) = query.actor {
            params.push(Value::Text(actor.to_string()));
            clauses.push(format!("actor = ?{}", params.len()));
        }
        if let Some(action) = &query.action {
            params.push(Value::Text(action.clone()));
            clauses.push(format!("action = ?{}", params.len()));
        }
        if let Some(target) = &query.target {
            params.push(Value::Text(target.clone()));
            clauses.push(format!("target = ?{}", params.len()));
        }
        if let Some(since) = query.since {
            params.push(Value::Integer(codec::micros(since)));
            clauses.push(format!("at >= ?{}", params.len()));
        }
        if let Some(until) = query.until {
            params.push(Value::Integer(codec::micros(until)));
            clauses.push(format!("at < ?{}", params.len()));
        }
        let where_clause = if clauses.is_empty() {
            String::from("1")
        } else {
            clauses.join(" AND ")
        };
        let (page, per_page) = (query.page, query.per_page);
        self.pool
            .read(move |conn| {
                let total: i64 = conn
                    .prepare_cached(&format!(
                        "SELECT count(*) FROM audit_log WHERE {where_clause}"
                    ))
                    .and_then(|mut s| s.query_row(params_from_iter(params.iter()), |r| r.get(0)))
                    .map_err(db_error)?;
                let n = params.len();
                let sql = format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {where_clause} \
                     ORDER BY seq DESC LIMIT ?{} OFFSET ?{}",
                    n + 1,
                    n + 2
                );
                let mut all = params;
                all.push(Value::Integer(i64::from(per_page)));
                all.push(Value::Integer(offset(page, per_page)));
                Ok(Page {
                    items: collect(conn, &sql, params_from_iter(all), audit_from_row)?,
                    total: u64::try_from(total).unwrap_or(0),
                    page,
                    per_page,
                })
            })
            .await
    }

    async fn record_check(&self, check: &Check, health: &Health) -> Result<()> {
        let check = check.clone();
        let health = health.clone();
        self.pool
            .write_relaxed(move |tx| {
                let id = check.connection.to_string();
                if !row_exists(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM connections WHERE id = ?1)",
                    &id,
                )? {
                    return Ok(());
                }
                tx.prepare_cached(
                    "INSERT INTO health_checks (connection_id, at, ok, latency_ms, error_kind, \
                     step, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(db_error)?
                .execute(params![
                    id,
                    micros(check.at),
                    check.ok,
                    i64::from(check.latency_ms),
                    check.error_kind.map(|k| k.as_str()),
                    check.step.map(|s| s.as_str()),
                    check.status.as_str()
                ])
                .map_err(db_error)?;
                // The facts ride in the same upsert; without new ones (`facts_at` NULL) the
                // stored ones stay, column by column keyed on `facts_at`, so old and new never
                // mix.
                let facts = FactColumns::of(&health);
                tx.prepare_cached(
                    "INSERT INTO connection_health (connection_id, status, checked_at, \
                     latency_ms, error_kind, uptime_24h, facts_at, server_version, \
                     server_in_recovery, server_connections_used, server_max_connections, \
                     tls_protocol, tls_cipher, tls_peer_subject, tls_peer_not_after) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
                     ON CONFLICT (connection_id) DO UPDATE SET status = excluded.status, \
                     checked_at = excluded.checked_at, latency_ms = excluded.latency_ms, \
                     error_kind = excluded.error_kind, uptime_24h = excluded.uptime_24h, \
                     facts_at = coalesce(excluded.facts_at, facts_at), \
                     server_version = iif(excluded.facts_at IS NULL, server_version, \
                       excluded.server_version), \
                     server_in_recovery = iif(excluded.facts_at IS NULL, server_in_recovery, \
                       excluded.server_in_recovery), \
                     server_connections_used = iif(excluded.facts_at IS NULL, \
                       server_connections_used, excluded.server_connections_used), \
                     server_max_connections = iif(excluded.facts_at IS NULL, \
                       server_max_connections, excluded.server_max_connections), \
                     tls_protocol = iif(excluded.facts_at IS NULL, tls_protocol, \
                       excluded.tls_protocol), \
                     tls_cipher = iif(excluded.facts_at IS NULL, tls_cipher, \
                       excluded.tls_cipher), \
                     tls_peer_subject = iif(excluded.facts_at IS NULL, tls_peer_subject, \
                       excluded.tls_peer_subject), \
                     tls_peer_not_after = iif(excluded.facts_at IS NULL, tls_peer_not_after, \
                       excluded.tls_peer_not_after)",
                )
                .map_err(db_error)?
                .execute(params![
                    id,
                    health.status.as_str(),
                    health.checked_at.map(micros),
                    health.latency_ms.map(i64::from),
                    health.error_kind.map(|k| k.as_str()),
                    health.uptime_24h,
                    facts.at,
                    facts.server_version,
                    facts.in_recovery,
                    facts.connections_used,
                    facts.max_connections,
                    facts.tls_protocol,
                    facts.tls_cipher,
                    facts.tls_peer_subject,
                    facts.tls_peer_not_after
                ])
                .map_err(db_error)?;
                Ok(())
            })
            .await
    }

    async fn lease_check(
        &self,
        id: ConnectionId,
        holder: uuid::Uuid,
        now: OffsetDateTime,
        hold: std::time::Duration,
    ) -> Result<Option<super::CheckLease>> {
        let hold_us = i64::try_from(hold.as_micros()).unwrap_or(i64::MAX);
        let now_us = micros(now);
        let cutoff = now_us.saturating_sub(hold_us);
        self.pool
            .write_relaxed(move |tx| {
                let id = id.to_string();
                let holder = holder.to_string();
                let Some(row) = connection_row_query(tx, "c.id = ?1", &id)? else {
                    return Ok(None);
                };
                let last: Option<(Option<String>, i64)> = tx
                    .prepare_cached(
                        "SELECT holder, leased_at FROM check_leases WHERE connection_id = ?1",
                    )
                    .map_err(db_error)?
                    .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(db_error)?;
                let previous = match last {
                    None => None,
                    Some((previous, at)) => {
                        if previous.as_deref() != Some(holder.as_str()) && at > cutoff {
                            return Ok(None);
                        }
                        previous
                    }
                };
                tx.prepare_cached(
                    "INSERT INTO check_leases (connection_id, holder, leased_at) \
                     VALUES (?1, ?2, ?3) ON CONFLICT (connection_id) DO UPDATE SET \
                     holder = excluded.holder, leased_at = excluded.leased_at",
                )
                .map_err(db_error)?
                .execute(params![id, holder, now_us])
                .map_err(db_error)?;
                let previous_holder = match previous {
                    None => None,
                    Some(p) => Some(uuid::Uuid::parse_str(&p).map_err(|_| {
                        Error::new(ErrorKind::Store, "corrupt row in check_leases")
                    })?),
                };
                Ok(Some(super::CheckLease {
                    previous_holder,
                    connection: row,
                }))
            })
            .await
    }

    async fn checks(
        &self,
        id: ConnectionId,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Check>> {
        self.pool
            .read(move |conn| {
                collect(
                    conn,
                    "SELECT * FROM health_checks WHERE connection_id = ?1 AND at >= ?2 \
                     ORDER BY at DESC, id DESC LIMIT ?3",
                    params![id.to_string(), micros(since), i64::from(limit)],
                    check_from_row,
                )
            })
            .await
    }

    async fn prune_checks(&self, before: OffsetDateTime) -> Result<u64> {
        self.pool
            .write_relaxed(move |tx| {
                let n = tx
                    .execute("DELETE FROM health_checks WHERE at < ?1", [micros(before)])
                    .map_err(db_error)?;
                Ok(u64::try_from(n).unwrap_or(u64::MAX))
            })
            .await
    }

    async fn policy(&self) -> Result<TargetPolicy> {
        self.pool
            .read(|conn| {
                let found = collect(conn, "SELECT * FROM policy WHERE id = 1", [], |row| {
                    let t = "policy";
                    Ok(TargetPolicy {
                        allow_cidrs: get_list(row, t, "allow_cidrs")?,
                        deny_cidrs: get_list(row, t, "deny_cidrs")?,
                        min_tls_mode: get_parsed(row, t, "min_tls_mode")?,
                    })
                })?;
                Ok(found.into_iter().next().unwrap_or_default())
            })
            .await
    }

    async fn set_policy(&self, policy: &TargetPolicy, audit: &AuditEvent) -> Result<()> {
        let policy = policy.clone();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO policy (id, allow_cidrs, deny_cidrs, min_tls_mode) \
                     VALUES (1, ?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET \
                     allow_cidrs = excluded.allow_cidrs, deny_cidrs = excluded.deny_cidrs, \
                     min_tls_mode = excluded.min_tls_mode",
                    params![
                        encode_list(&policy.allow_cidrs),
                        encode_list(&policy.deny_cidrs),
                        policy.min_tls_mode.as_str()
                    ],
                )
                .map_err(db_error)?;
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn kek_usage(&self) -> Result<Vec<KekUsage>> {
        self.pool
            .read(|conn| {
                collect(
                    conn,
                    "SELECT kek_id, count(*) AS n FROM connections GROUP BY kek_id \
                     ORDER BY kek_id",
                    [],
                    |row| {
                        let t = "connections";
                        let kek: String = get(row, t, "kek_id")?;
                        Ok(KekUsage {
                            kek: KekId::new(&kek).map_err(|e| codec::corrupt(t, e))?,
                            rows: get_u64(row, t, "n")?,
                        })
                    },
                )
            })
            .await
    }

    async fn deks_not_under(
        &self,
        active: &KekId,
        after: Option<ConnectionId>,
        limit: u32,
    ) -> Result<Vec<(ConnectionId, WrappedDek)>> {
        let active = active.as_str().to_owned();
        // Ids are hyphenated lowercase UUID text, whose text order is id order; "" sorts first.
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        self.pool
            .read(move |conn| {
                collect(
                    conn,
                    "SELECT id, wrapped_dek FROM connections WHERE kek_id <> ?1 AND id > ?2 \
                     ORDER BY id LIMIT ?3",
                    params![active, after, i64::from(limit)],
                    |row| {
                        let t = "connections";
                        let id = ConnectionId::from_uuid(codec::get_uuid(row, t, "id")?);
                        let dek = WrappedDek::parse(&get::<Vec<u8>>(row, t, "wrapped_dek")?)
                            .map_err(|e| codec::corrupt(t, e))?;
                        Ok((id, dek))
                    },
                )
            })
            .await
    }

    async fn replace_dek(
        &self,
        id: ConnectionId,
        old: &WrappedDek,
        new: &WrappedDek,
    ) -> Result<bool> {
        let old = old.to_bytes();
        let new_kek = new.kek_id().as_str().to_owned();
        let new = new.to_bytes();
        self.pool
            .write(move |tx| {
                let n = tx
                    .execute(
                        "UPDATE connections SET wrapped_dek = ?1, kek_id = ?2 \
                         WHERE id = ?3 AND wrapped_dek = ?4",
                        params![new, new_kek, id.to_string(), old],
                    )
                    .map_err(db_error)?;
                Ok(n == 1)
            })
            .await
    }

    // --- key checks (SQL in `sqlite/keys.rs`) ---

    async fn dek_sample(&self, kek: &KekId) -> Result<Option<(ConnectionId, WrappedDek)>> {
        self.dek_sample_row(kek).await
    }

    async fn key_checks(&self) -> Result<Vec<crate::crypto::KeyCheck>> {
        self.key_check_rows().await
    }

    async fn insert_key_check(&self, check: &crate::crypto::KeyCheck) -> Result<bool> {
        self.insert_key_check_row(check).await
    }

    async fn delete_key_check(&self, kek: &KekId, audit: &AuditEvent) -> Result<()> {
        self.delete_key_check_row(kek, audit).await
    }

    // --- sessions (SQL in `sqlite/sessions.rs`) ---

    async fn insert_session(&self, session: &super::StoredSession) -> Result<()> {
        self.insert_session_row(session).await
    }

    async fn session_by_hash(&self, hash: &[u8; 32]) -> Result<Option<super::StoredSession>> {
        self.session_row_by_hash(hash).await
    }

    async fn sessions_of(&self, user: UserId) -> Result<Vec<super::StoredSession>> {
        self.session_rows_of(user).await
    }

    async fn touch_session(&self, id: crate::SessionId, at: OffsetDateTime) -> Result<bool> {
        self.touch_session_row(id, at).await
    }

    async fn delete_session(&self, id: crate::SessionId, audit: &AuditEvent) -> Result<bool> {
        self.delete_session_row(id, audit).await
    }

    async fn delete_sessions_of_user(&self, user: UserId, audit: &AuditEvent) -> Result<u64> {
        self.delete_session_rows_of(user, audit).await
    }

    async fn update_user_ending_sessions(
        &self,
        user: &StoredUser,
        audit: &AuditEvent,
    ) -> Result<u64> {
        self.update_user_and_sessions(user, audit).await
    }

    async fn prune_sessions(
        &self,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
    ) -> Result<u64> {
        self.prune_session_rows(now, idle_before).await
    }
}
