//! The SQLite store: the embedded default, one file in the data folder, zero set-up.
//!
//! It owns the database file (`datahub.sqlite3` in WAL mode, `synchronous=FULL` — except the
//! monitor's own bookkeeping: check leases, check results and their pruning commit with
//! `synchronous=NORMAL`, see `pool::Durability` — foreign keys on), its migrations (embedded
//! from `migrations/sqlite/`, applied in one `BEGIN IMMEDIATE` transaction), and the SQL behind
//! every [`Store`](crate::store::Store) method, one file per area of the contract
//! (`connections.rs` and `list.rs`, `accounts.rs`, `sessions.rs`, `audit.rs`, `health.rs`,
//! `admin.rs`). Blocking SQLite calls run on tokio's blocking pool through a small connection
//! pool (`pool.rs`) whose every wait has a deadline; `codec.rs` converts values and rows.
//!
//! Every state-changing write runs in one `IMMEDIATE` transaction that also appends its audit
//! entry, so the entry and the change commit or roll back together and the chain stays linear
//! (SQLite admits one writer at a time, across processes too). Writes made at the same time
//! share the transaction, each in a savepoint of its own, and one commit (see `pool.rs`). It
//! must never hold a plaintext secret, log a secret column, or decide access.

mod accounts;
mod admin;
mod audit;
mod codec;
mod connections;
mod health;
mod history;
mod list;
mod pool;
mod sessions;

use std::path::{Path, PathBuf};

use rusqlite::{Transaction, params};
use time::OffsetDateTime;

use self::codec::{get, micros};
use self::pool::Pool;
use crate::store::{Migration, migration_plan};
use crate::{Error, ErrorKind, Result};

/// The database file's name inside the data folder.
pub const DATABASE_FILE: &str = "datahub.sqlite3";

/// The SQLite migrations, in order, embedded from `migrations/sqlite/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "search",
        sql: include_str!("../../../../migrations/sqlite/0002_search.sql"),
    },
    Migration {
        version: 3,
        name: "check_leases",
        sql: include_str!("../../../../migrations/sqlite/0003_check_leases.sql"),
    },
    Migration {
        version: 4,
        name: "sessions",
        sql: include_str!("../../../../migrations/sqlite/0004_sessions.sql"),
    },
    Migration {
        version: 5,
        name: "check_facts",
        sql: include_str!("../../../../migrations/sqlite/0005_check_facts.sql"),
    },
    Migration {
        version: 6,
        name: "key_checks",
        sql: include_str!("../../../../migrations/sqlite/0006_key_checks.sql"),
    },
    Migration {
        version: 7,
        name: "token_last_used",
        sql: include_str!("../../../../migrations/sqlite/0007_token_last_used.sql"),
    },
    Migration {
        version: 8,
        name: "health_buckets",
        sql: include_str!("../../../../migrations/sqlite/0008_health_buckets.sql"),
    },
];

/// The SQLite implementation of [`Store`](crate::store::Store). Cheap to share behind an `Arc`.
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

fn i64_of(v: u64, field: &'static str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(field, "is too large"))
}

fn row_exists(tx: &Transaction<'_>, sql: &str, id: &str) -> Result<bool> {
    tx.prepare_cached(sql)
        .map_err(db_error)?
        .query_row([id], |r| r.get(0))
        .map_err(db_error)
}

/// `NotFound` (`what`, on `field`) unless `table` holds a row with id `id`.
fn require_row(
    tx: &Transaction<'_>,
    table: &'static str,
    id: &str,
    what: &'static str,
    field: &'static str,
) -> Result<()> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE id = ?1)");
    if row_exists(tx, &sql, id)? {
        Ok(())
    } else {
        Err(Error::not_found(what).with_field(field))
    }
}

/// Whether `table` (tokens or sessions) holds a row with this id or this hash.
fn held_taken(
    tx: &Transaction<'_>,
    table: &'static str,
    id: &str,
    hash: &[u8; 32],
) -> Result<bool> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {table} WHERE id = ?1 OR hash = ?2)");
    tx.query_row(&sql, params![id, hash.as_slice()], |r| r.get(0))
        .map_err(db_error)
}

/// What a user holds as a secret (a token or a session), each kept as its SHA-256: the tables
/// `tokens` and `sessions` are read alike.
impl SqliteStore {
    /// The row of `table` whose `hash` is `hash`, read by `f`.
    async fn held_by_hash<T: Send + 'static>(
        &self,
        table: &'static str,
        hash: &[u8; 32],
        f: fn(&rusqlite::Row<'_>) -> Result<T>,
    ) -> Result<Option<T>> {
        let hash = *hash;
        let sql = format!("SELECT * FROM {table} WHERE hash = ?1");
        self.pool
            .read(move |conn| Ok(collect(conn, &sql, [hash.as_slice()], f)?.pop()))
            .await
    }

    /// The rows of `table` that `user` holds, oldest first, each read by `f`.
    async fn held_by_user<T: Send + 'static>(
        &self,
        table: &'static str,
        user: crate::UserId,
        f: fn(&rusqlite::Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let sql = format!("SELECT * FROM {table} WHERE user_id = ?1 ORDER BY created_at, id");
        self.pool
            .read(move |conn| collect(conn, &sql, [user.to_string()], f))
            .await
    }
}

/// Runs `f` in one read transaction on `conn` (one snapshot, one read lock), with the
/// statements that begin and end it cached like any other.
fn in_read_transaction<T>(
    conn: &rusqlite::Connection,
    f: impl FnOnce(&rusqlite::Connection) -> Result<T>,
) -> Result<T> {
    let run = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute([]))
            .map_err(db_error)
    };
    run("BEGIN")?;
    let out = f(conn);
    let ended = run(if out.is_ok() { "COMMIT" } else { "ROLLBACK" });
    match (out, ended) {
        (Ok(value), Ok(_)) => Ok(value),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
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
