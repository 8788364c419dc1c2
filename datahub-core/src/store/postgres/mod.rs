//! The PostgreSQL store: a shared database that several server replicas use at once.
//!
//! [`PostgresStore::connect`] builds a bounded connection pool (deadpool-postgres, every pool
//! timeout set and a connect timeout), then applies the embedded migrations
//! (`migrations/postgres/`) in one transaction under a fixed advisory lock, so replicas starting
//! together migrate once and the others wait, then see the result. A schema newer than this
//! program refuses to open.
//!
//! Every write that changes state runs in one transaction that also appends its audit entry.
//! Appends take a transaction-level advisory lock ([`AUDIT_LOCK_KEY`]) before reading the last
//! entry, and hold it to commit, so entries from every process form one linear chain; the lock
//! is taken last in a transaction (after any row locks), so it is held only for the append and
//! no two transactions wait on each other in opposite orders.
//!
//! Processes sharing the store split the health checks through
//! [`HealthStore::lease_checks`](crate::store::HealthStore::lease_checks) (a `check_leases` row per
//! connection; a batch is claimed by one statement, an `UPDATE` over `SELECT … FOR UPDATE SKIP
//! LOCKED` for existing rows, so racing claimants never wait on each other, and an insert of the
//! rows of connections never claimed), record results in batches with one statement
//! ([`HealthStore::record_checks`](crate::store::HealthStore::record_checks): `unnest` of
//! column arrays, the connections locked `FOR KEY SHARE` first so a deleted one is skipped) and tell each other events through `NOTIFY` on
//! [`EVENTS_CHANNEL`](crate::store::EVENTS_CHANNEL);
//! [`HealthStore::subscribe_events`](crate::store::HealthStore::subscribe_events) starts a
//! listener on its own connection (not pooled: `LISTEN` belongs to one session), with the
//! connect timeout, TCP user timeout and keepalives, reconnecting a second after losing it,
//! until its receiver is dropped.
//!
//! Every wait has a deadline: waiting for a pooled connection, connecting, recycling, and each
//! statement (a server-side `statement_timeout`, lock waits included, plus a TCP user timeout);
//! see [`PostgresOptions`].
//!
//! The store connects like a connection test (S32): through the prober's connector, so the one
//! dialer, the same rustls configurations (every libpq `sslmode`, `sslrootcert`, client
//! certificates, channel binding), the same authenticator and the same cleartext guard: its
//! password never crosses an unencrypted socket as cleartext or md5. Without `sslmode` a URL
//! means `verify-full` when it names a root CA, else `prefer`, with a warning at start (see
//! `target.rs`). Errors never carry the store's password, nor PostgreSQL's `DETAIL` text (which
//! can quote a whole row; see `error.rs`).
//!
//! The SQL of each area of the contract is in a file of its own: `connections.rs`,
//! `accounts.rs`, `sessions.rs`, `audit.rs`, `health.rs` (with the event listener), `admin.rs`;
//! `codec.rs` converts values and rows.

mod accounts;
mod admin;
mod audit;
mod codec;
mod connections;
mod error;
mod health;
mod history;
mod sessions;
mod target;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    ClientWrapper, Hook, HookError, Manager, ManagerConfig, Metrics, Object, Pool, QueueMode,
    RecyclingMethod, Runtime,
};
use tokio_postgres::types::ToSql;

use self::error::{constraint, db, is_foreign_key_violation, is_unique_violation};
use crate::model::TlsMode;
use crate::net::{Dialer, Policy};
use crate::probe::{PoolConnect, ProbeRules, TcpTuning, connector};
use crate::store::{Applied, Migration, migration_plan};
use crate::{Error, ErrorKind, Result};

/// The migrations of the PostgreSQL store, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "search",
        sql: include_str!("../../../../migrations/postgres/0002_search.sql"),
    },
    Migration {
        version: 3,
        name: "check_leases",
        sql: include_str!("../../../../migrations/postgres/0003_check_leases.sql"),
    },
    Migration {
        version: 4,
        name: "sessions",
        sql: include_str!("../../../../migrations/postgres/0004_sessions.sql"),
    },
    Migration {
        version: 5,
        name: "check_facts",
        sql: include_str!("../../../../migrations/postgres/0005_check_facts.sql"),
    },
    Migration {
        version: 6,
        name: "key_checks",
        sql: include_str!("../../../../migrations/postgres/0006_key_checks.sql"),
    },
    Migration {
        version: 7,
        name: "token_last_used",
        sql: include_str!("../../../../migrations/postgres/0007_token_last_used.sql"),
    },
    Migration {
        version: 8,
        name: "health_buckets",
        sql: include_str!("../../../../migrations/postgres/0008_health_buckets.sql"),
    },
    Migration {
        version: 9,
        name: "monitor_replicas",
        sql: include_str!("../../../../migrations/postgres/0009_monitor_replicas.sql"),
    },
];

/// The advisory lock key held while migrating (ASCII `dh-migr` in a big-endian `i64`).
pub const MIGRATION_LOCK_KEY: i64 = 0x0064_682d_6d69_6772;

/// The advisory lock key held while appending to the audit log (ASCII `dh-audit`).
pub const AUDIT_LOCK_KEY: i64 = 0x6468_2d61_7564_6974;

pub use history::HISTORY_LOCK_KEY;

/// Settings of the store's connection pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The most connections the pool opens. Default: 16.
    pub max_connections: usize,
    /// How long connecting (TCP and authentication) may take; it replaces any connect timeout
    /// in the connection settings. Default: 5 s.
    pub connect_timeout: Duration,
    /// How long a caller waits for a free pooled connection. Default: 10 s.
    pub wait_timeout: Duration,
    /// How long checking a pooled connection before reuse may take. Default: 5 s.
    pub recycle_timeout: Duration,
    /// How long one statement may run, lock waits included, before the server cancels it (and
    /// the transaction fails as a whole); also the TCP user timeout, after which unacknowledged
    /// data closes the connection to a server that vanished. Default: 30 s.
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(10),
            recycle_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// The PostgreSQL implementation of [`Store`](crate::store::Store). Cheap to share behind an `Arc`; every method
/// takes a pooled connection for its duration.
pub struct PostgresStore {
    pool: Pool,
    max_connections: usize,
    /// The connector of the event listener's own connection (the pool's is inside the pool).
    /// Holds the password in its secret type: never printed.
    listen: Arc<PoolConnect>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately not the connection settings: nothing here may lead to the password.
        f.debug_struct("PostgresStore")
            .field("max_connections", &self.max_connections)
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the store described by `config` and migrates it to this program's schema.
    ///
    /// Several processes may call this at once on the same database: migrations run once, under
    /// an advisory lock. The config's `sslmode` is honoured (`disable`, `prefer`, `require`);
    /// for certificate verification give a URL to [`connect_url`](Self::connect_url).
    ///
    /// # Errors
    /// `InvalidInput` on `max_connections` when it is 0, or on `store.<setting>` when the
    /// config is unusable (a unix socket, no user); `Store` when the server cannot be reached,
    /// its TLS certificate or the login is refused (the message says what to check, never the
    /// password), when a migration fails, or when the store's schema is newer than this program
    /// or was migrated by a different build (see [`migration_plan`]).
    pub async fn connect(config: tokio_postgres::Config, options: PostgresOptions) -> Result<Self> {
        Self::connect_target(target::StoreTarget::from_config(&config)?, options).await
    }

    /// Parses a libpq URL or key=value string (the keys a connection URL accepts: `sslmode`,
    /// `sslrootcert`, `sslcert`, `sslkey`, `channel_binding`, `application_name`, …), reads the
    /// certificate files it names, and [connects](Self::connect). Without `sslmode`: `verify-full`
    /// when `sslrootcert` is given, else `prefer`, with a warning.
    ///
    /// # Errors
    /// `InvalidInput` on `store_url` or `store.<key>` when it does not parse or a file cannot be
    /// read (the message does not repeat the URL); otherwise as [`connect`](Self::connect).
    pub async fn connect_url(url: &str, options: PostgresOptions) -> Result<Self> {
        Self::connect_target(target::StoreTarget::from_url(url)?, options).await
    }

    async fn connect_target(target: target::StoreTarget, options: PostgresOptions) -> Result<Self> {
        if options.max_connections == 0 {
            return Err(Error::invalid("max_connections", "must be at least 1"));
        }
        let mode = target.spec.tls.mode();
        if mode < TlsMode::Require {
            tracing::warn!(
                store = "postgres",
                sslmode = mode.as_str(),
                "the connection to the PostgreSQL store may be unencrypted: give the store URL \
                 sslmode=verify-full and sslrootcert=<CA file> (the password is never sent in \
                 cleartext either way)"
            );
        }
        let statement_timeout = format!(
            "-c statement_timeout={}",
            options.statement_timeout.as_millis().max(1)
        );
        let server_options = match &target.server_options {
            Some(o) if !o.trim().is_empty() => format!("{o} {statement_timeout}"),
            _ => statement_timeout,
        };
        let mut spec = target.spec;
        if spec.options.application_name().is_none() {
            spec.options = crate::model::ConnectOptions::new(
                Some(i64::from(spec.options.connect_timeout_ms())),
                crate::model::ApplicationName::parse_optional("datahub")?,
            )?;
        }
        let make = || -> Result<PoolConnect> {
            let dial = Dialer::system().with_connect_timeout(options.connect_timeout);
            // The operator chose the store's mode; only the cleartext guard applies.
            let rules = ProbeRules {
                min_tls_mode: TlsMode::Disable,
                allow_cleartext_password: false,
            };
            Ok(connector(
                Arc::new(dial),
                Arc::new(Policy::default()),
                &spec,
                target.secrets.clone(),
                &rules,
                options.connect_timeout,
            )
            .map_err(|e| match e.field() {
                Some(f) if e.kind() == ErrorKind::InvalidInput => {
                    let f = format!("store.{f}");
                    e.with_field(f)
                }
                _ => e,
            })?
            .with_server_options(server_options.clone())
            .with_tcp(TcpTuning {
                user_timeout: Some(options.statement_timeout),
                keepalive_idle: Some(Duration::from_secs(30)),
            }))
        };
        let pooled = make()?;
        let shown = pooled.shown_config();
        let manager = Manager::from_connect(
            shown,
            pooled,
            ManagerConfig {
                // Before reuse, a connection whose socket closed (the server restarted or
                // ended it) is replaced; one idle for a while is also verified by a query
                // (below), so a connection lost without a word (a failover, a dropped route)
                // does not fail the caller's first statement. A connection used within the last
                // seconds costs no round trip of its own.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let recycle_timeout = options.recycle_timeout;
        let pool = Pool::builder(manager)
            // The connection used last is reused first: under light traffic the same few stay
            // warm (and within `VERIFY_AFTER_IDLE`), the rest idle until needed.
            .queue_mode(QueueMode::Lifo)
            .post_recycle(Hook::async_fn(move |client, metrics| {
                Box::pin(verify_idle(client, metrics, recycle_timeout))
            }))
            .runtime(Runtime::Tokio1)
            .max_size(options.max_connections)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.recycle_timeout))
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    "could not build the PostgreSQL store's pool",
                )
                .with_source(e)
            })?;
        let store = Self {
            pool,
            max_connections: options.max_connections,
            listen: Arc::new(make()?),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Closes the pool: connections are closed as they come back, and later calls fail.
    pub fn close(&self) {
        self.pool.close();
    }

    async fn client(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| error::pool(e, self.max_connections))
    }

    /// Applies the pending migrations in one transaction under [`MIGRATION_LOCK_KEY`].
    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| db("starting the migration", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await
            .map_err(|e| db("taking the migration lock", e))?;
        let exists: bool = tx
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .await
            .map_err(|e| db("reading the schema version", e))?
            .try_get(0)
            .map_err(|e| db("reading the schema version", e))?;
        let mut applied = Vec::new();
        if exists {
            let rows = tx
                .query("SELECT version, checksum FROM schema_migrations", &[])
                .await
                .map_err(|e| db("reading the schema version", e))?;
            for row in &rows {
                let version: i32 = codec::get(row, "schema_migrations", "version")?;
                let checksum: &[u8] = codec::get(row, "schema_migrations", "checksum")?;
                applied.push(Applied {
                    version: u32::try_from(version).map_err(|_| {
                        Error::new(ErrorKind::Store, "corrupt row in schema_migrations")
                    })?,
                    checksum: checksum.try_into().map_err(|_| {
                        Error::new(ErrorKind::Store, "corrupt row in schema_migrations")
                    })?,
                });
            }
        }
        let plan = migration_plan(MIGRATIONS, &applied)?;
        for m in &plan {
            let doing = format!("applying migration {} ({})", m.version, m.name);
            tx.batch_execute(m.sql).await.map_err(|e| db(&doing, e))?;
            let version = i32::try_from(m.version)
                .map_err(|_| Error::new(ErrorKind::Internal, "migration number out of range"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
                 VALUES ($1, $2, $3, now())",
                &[&version, &m.name, &m.checksum().as_slice()],
            )
            .await
            .map_err(|e| db(&doing, e))?;
        }
        tx.commit()
            .await
            .map_err(|e| db("committing the migration", e))?;
        for m in plan {
            tracing::info!(
                store = "postgres",
                version = m.version,
                name = m.name,
                "migration applied"
            );
        }
        Ok(())
    }
}

/// A failed write: a unique violation is `Conflict` naming the field, a foreign key violation
/// `NotFound` naming what is missing, anything else a `Store` error.
fn write_error(doing: &str, e: tokio_postgres::Error) -> Error {
    if is_unique_violation(&e) {
        let (field, message) = match constraint(&e) {
            Some("users_username_key") => ("username", "is already taken"),
            Some("connections_name_key" | "teams_name_key") => ("name", "is already taken"),
            Some("tokens_hash_key") => ("hash", "is already stored"),
            Some("grants_connection_user" | "grants_connection_team") => {
                ("grants", "name the same grantee twice")
            }
            _ => ("id", "is already taken"),
        };
        return Error::new(ErrorKind::Conflict, message).with_field(field);
    }
    if is_foreign_key_violation(&e) {
        let (field, message) = match constraint(&e) {
            Some("grants_user_id_fkey") => ("user_id", "no such user"),
            Some("grants_team_id_fkey") => ("team_id", "no such team"),
            Some("team_members_user_id_fkey") => ("members", "no such user"),
            Some("tokens_user_id_fkey") => ("user_id", "no such user"),
            _ => ("id", "no such connection"),
        };
        return Error::new(ErrorKind::NotFound, message).with_field(field);
    }
    db(doing, e)
}

/// Parameters of a query built at run time.
#[derive(Default)]
struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    /// Adds a value and returns its placeholder (`$n`).
    fn bind<T: ToSql + Sync + Send + 'static>(&mut self, value: T) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect()
    }
}

/// What a user holds as a secret (a token or a session), each kept as its SHA-256: the tables
/// `tokens` and `sessions` are read alike.
/// How long a pooled connection may sit unused before its reuse is verified by a query: 5 s.
/// A connection used more recently and whose socket is open is reused as it is.
pub(super) const VERIFY_AFTER_IDLE: Duration = Duration::from_secs(5);

/// The check before a pooled connection is reused (after deadpool's own, which drops one whose
/// socket closed): a connection idle for [`VERIFY_AFTER_IDLE`] or more must answer an empty
/// query within `timeout`, or it is dropped and the pool takes or opens another.
async fn verify_idle(
    client: &mut ClientWrapper,
    metrics: &Metrics,
    timeout: Duration,
) -> Result<(), HookError> {
    if metrics.last_used() < VERIFY_AFTER_IDLE {
        return Ok(());
    }
    match tokio::time::timeout(timeout, client.simple_query("")).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(HookError::Backend(e)),
        Err(_elapsed) => Err(HookError::message(
            "a pooled connection did not answer within the recycle timeout",
        )),
    }
}

impl PostgresStore {
    /// The row of `table` (its `columns`) whose `hash` is `hash`, read by `f`; `doing` names
    /// the read in an error.
    async fn held_by_hash<T>(
        &self,
        (table, columns): (&str, &str),
        hash: &[u8; 32],
        doing: &str,
        f: fn(&tokio_postgres::Row) -> Result<T>,
    ) -> Result<Option<T>> {
        let client = self.client().await?;
        let sql = format!("SELECT {columns} FROM {table} WHERE hash = $1");
        client
            .query_opt(&sql, &[&hash.as_slice()])
            .await
            .map_err(|e| db(doing, e))?
            .map(|r| f(&r))
            .transpose()
    }

    /// The rows of `table` (their `columns`) that `user` holds, oldest first, each read by `f`.
    async fn held_by_user<T>(
        &self,
        (table, columns): (&str, &str),
        user: crate::UserId,
        doing: &str,
        f: fn(&tokio_postgres::Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        let client = self.client().await?;
        let sql =
            format!("SELECT {columns} FROM {table} WHERE user_id = $1 ORDER BY created_at, id");
        let rows = client
            .query(&sql, &[user.as_uuid()])
            .await
            .map_err(|e| db(doing, e))?;
        rows.iter().map(f).collect()
    }
}

fn page_total(rows: &[tokio_postgres::Row], table: &'static str) -> Result<Option<u64>> {
    rows.first()
        .map(|row| {
            let total: i64 = codec::get(row, table, "total")?;
            u64::try_from(total).map_err(|_| Error::new(ErrorKind::Store, "negative row count"))
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_differ_and_migrations_are_numbered() {
        assert_ne!(MIGRATION_LOCK_KEY, AUDIT_LOCK_KEY);
        assert_ne!(HISTORY_LOCK_KEY, AUDIT_LOCK_KEY);
        assert_ne!(HISTORY_LOCK_KEY, MIGRATION_LOCK_KEY);
        assert!(migration_plan(MIGRATIONS, &[]).is_ok());
    }

    #[tokio::test]
    async fn debug_never_shows_connection_settings() {
        let mut config = tokio_postgres::Config::new();
        config
            .password("canary-pw-1")
            .host("127.0.0.1")
            .port(1)
            .user("u");
        let target = target::StoreTarget::from_config(&config).unwrap();
        assert!(!format!("{target:?}").contains("canary-pw-1"));
        // Nothing listens on port 1: the store fails to open, and says nothing of the password.
        let options = PostgresOptions {
            connect_timeout: Duration::from_millis(500),
            wait_timeout: Duration::from_millis(500),
            ..PostgresOptions::default()
        };
        let err = PostgresStore::connect(config, options).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Store);
        assert!(!format!("{err:?} {err}").contains("canary-pw-1"), "{err}");
    }
}
