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
//! Processes sharing the store split the health checks through [`Store::lease_check`] (a
//! `check_leases` row per connection, claimed by one `UPDATE` over `SELECT … FOR UPDATE SKIP
//! LOCKED`, so racing claimants never wait on each other) and tell each other events through
//! `NOTIFY` on [`EVENTS_CHANNEL`]; [`Store::subscribe_events`] starts a listener on its own
//! connection (not pooled: `LISTEN` belongs to one session), with the connect timeout, TCP user
//! timeout and keepalives, reconnecting a second after losing it, until its receiver is dropped.
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
//! can quote a whole row).

mod codec;
mod error;
mod keys;
mod sessions;
mod target;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use self::codec::{
    AUDIT_COLUMNS, CHECK_COLUMNS, FactColumns, HEALTH_COLUMNS, SECRET_COLUMNS, SPEC_COLUMNS,
    TOKEN_COLUMNS, USER_COLUMNS, to_i64,
};
use self::error::{constraint, db, is_foreign_key_violation, is_unique_violation};
use crate::audit::{AuditEvent, AuditRecord, GENESIS_HASH, truncate_to_micros};
use crate::crypto::{KekId, WrappedDek};
use crate::model::{
    AuditQuery, Check, Connection, ConnectionName, Directory, DirectoryTeam, DirectoryUser, Health,
    ListQuery, MAX_PER_PAGE, NamedGrant, Page, SortKey, TOKEN_TOUCH_INTERVAL, TargetPolicy, Team,
    TlsMode, Visibility,
};
use crate::net::{Dialer, Policy};
use crate::probe::{PoolConnect, ProbeRules, TcpTuning, connector};
use crate::rbac::{Grant, Grantee};
use crate::store::{
    Applied, CheckLease, EVENTS_CHANNEL, KekUsage, Migration, Store, StoredConnection, StoredToken,
    StoredUser, migration_plan,
};
use crate::{ConnectionId, Error, ErrorKind, Result, TeamId, TokenId, UserId};

/// The migrations of the PostgreSQL store, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../../../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "search",
        sql: include_str!("../../../migrations/postgres/0002_search.sql"),
    },
    Migration {
        version: 3,
        name: "check_leases",
        sql: include_str!("../../../migrations/postgres/0003_check_leases.sql"),
    },
    Migration {
        version: 4,
        name: "sessions",
        sql: include_str!("../../../migrations/postgres/0004_sessions.sql"),
    },
    Migration {
        version: 5,
        name: "check_facts",
        sql: include_str!("../../../migrations/postgres/0005_check_facts.sql"),
    },
    Migration {
        version: 6,
        name: "key_checks",
        sql: include_str!("../../../migrations/postgres/0006_key_checks.sql"),
    },
    Migration {
        version: 7,
        name: "token_last_used",
        sql: include_str!("../../../migrations/postgres/0007_token_last_used.sql"),
    },
];

/// The advisory lock key held while migrating (ASCII `dh-migr` in a big-endian `i64`).
pub const MIGRATION_LOCK_KEY: i64 = 0x0064_682d_6d69_6772;

/// The advisory lock key held while appending to the audit log (ASCII `dh-audit`).
pub const AUDIT_LOCK_KEY: i64 = 0x6468_2d61_7564_6974;

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

/// The PostgreSQL implementation of [`Store`]. Cheap to share behind an `Arc`; every method
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
                // A query before reuse: a connection the server dropped (restart, failover) is
                // replaced instead of failing the caller's first statement.
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
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

/// Appends `event` to the chain inside `tx`, serialized across processes by
/// [`AUDIT_LOCK_KEY`] (held until `tx` ends).
async fn append_in(
    tx: &tokio_postgres::Transaction<'_>,
    event: &AuditEvent,
) -> Result<AuditRecord> {
    const DOING: &str = "appending to the audit log";
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK_KEY])
        .await
        .map_err(|e| db(DOING, e))?;
    let last = tx
        .query_opt(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(|e| db(DOING, e))?;
    let (seq, prev_hash) = match &last {
        None => (0, GENESIS_HASH),
        Some(row) => {
            let seq: i64 = codec::get(row, "audit_log", "seq")?;
            let hash: &[u8] = codec::get(row, "audit_log", "hash")?;
            let corrupt = || Error::new(ErrorKind::Store, "corrupt row in audit_log");
            (
                u64::try_from(seq).map_err(|_| corrupt())?,
                <[u8; 32]>::try_from(hash).map_err(|_| corrupt())?,
            )
        }
    };
    // Stored times keep microseconds; truncating here keeps the hash valid after a read back.
    let mut event = event.clone();
    event.at = truncate_to_micros(event.at);
    let record = AuditRecord::chain(seq.saturating_add(1), prev_hash, event);
    let e = &record.event;
    tx.execute(
        "INSERT INTO audit_log (seq, at, actor, actor_name, action, target, outcome, \
         changed_fields, client_addr, request_id, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &to_i64(record.seq, "seq")?,
            &e.at,
            &e.actor.map(|a| *a.as_uuid()),
            &e.actor_name,
            &e.action,
            &e.target,
            &e.outcome.as_str(),
            &e.changed_fields,
            &e.client_addr,
            &e.request_id,
            &record.prev_hash.as_slice(),
            &record.hash.as_slice(),
        ],
    )
    .await
    .map_err(|e| db(DOING, e))?;
    Ok(record)
}

/// A failed write: a unique violation is `Conflict` naming the field, a foreign key violation
/// `NotFound` naming what is missing, anything else a `Store` error.
/// How long the event listener waits before connecting again after losing its connection.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// The event listener: its own connection (not pooled: `LISTEN` belongs to one session), which
/// forwards every notification on [`EVENTS_CHANNEL`] to `sender`, reconnecting after a failure,
/// until the receiver is dropped. The connection is made like the pool's (TLS, connect timeout,
/// TCP user timeout and keepalives), so a vanished server is noticed and replaced.
async fn listen(connector: Arc<PoolConnect>, sender: mpsc::Sender<String>) {
    let statement = format!("LISTEN {EVENTS_CHANNEL}");
    loop {
        // The connector cuts the connect at the pool's connect timeout.
        let connected = tokio::select! {
            () = sender.closed() => return,
            connected = connector.open() => connected,
        };
        if let Ok((client, mut connection)) = connected {
            let listening = client.batch_execute(&statement);
            tokio::pin!(listening);
            let mut listened = false;
            loop {
                tokio::select! {
                    () = sender.closed() => return,
                    done = &mut listening, if !listened => {
                        if done.is_err() {
                            break;
                        }
                        listened = true;
                    }
                    message = std::future::poll_fn(|cx| connection.poll_message(cx)) => {
                        match message {
                            Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                                if n.channel() == EVENTS_CHANNEL
                                    && sender.send(n.payload().to_owned()).await.is_err()
                                {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => break,
                        }
                    }
                }
            }
        }
        tokio::select! {
            () = sender.closed() => return,
            () = tokio::time::sleep(LISTEN_RETRY) => {}
        }
    }
}

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

fn not_found(what: &'static str) -> Error {
    Error::new(ErrorKind::NotFound, format!("no such {what}"))
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
        Ok(Some(_)) => stale_version(),
        Ok(None) => not_found("connection"),
        Err(e) => db(doing, e),
    }
}

fn stale_version() -> Error {
    Error::new(
        ErrorKind::Conflict,
        "was changed by someone else since it was read: reload and retry",
    )
    .with_field("version")
}

/// Checks a page request against the contract's bounds.
fn check_page(page: u32, per_page: u32) -> Result<i64> {
    if page < 1 {
        return Err(Error::invalid("page", "must be at least 1"));
    }
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(Error::invalid(
            "per_page",
            format!("must be between 1 and {MAX_PER_PAGE}"),
        ));
    }
    Ok(i64::from(page - 1) * i64::from(per_page))
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

const SUMMARY_FROM: &str =
    "FROM connections c LEFT JOIN connection_health h ON h.connection_id = c.id";

fn page_total(rows: &[tokio_postgres::Row], table: &'static str) -> Result<Option<u64>> {
    rows.first()
        .map(|row| {
            let total: i64 = codec::get(row, table, "total")?;
            u64::try_from(total).map_err(|_| Error::new(ErrorKind::Store, "negative row count"))
        })
        .transpose()
}

#[async_trait]
impl Store for PostgresStore {
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
        let offset = check_page(query.page, query.per_page)?;
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
        Ok(Page {
            items,
            total,
            page: query.page,
            per_page: query.per_page,
        })
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

    async fn insert_user(&self, user: &StoredUser, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "inserting a user";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        tx.execute(
            "INSERT INTO users (id, username, role, password_hash, disabled, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                user.user.id.as_uuid(),
                &user.user.username,
                &user.user.role.as_str(),
                &user.password_hash,
                &user.user.disabled,
                &user.user.created_at,
                &user.user.updated_at,
            ],
        )
        .await
        .map_err(|e| write_error(DOING, e))?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn update_user(&self, user: &StoredUser, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "updating a user";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let updated = tx
            .execute(
                "UPDATE users SET role = $2, password_hash = $3, disabled = $4, updated_at = $5 \
                 WHERE id = $1",
                &[
                    user.user.id.as_uuid(),
                    &user.user.role.as_str(),
                    &user.password_hash,
                    &user.user.disabled,
                    &user.user.updated_at,
                ],
            )
            .await
            .map_err(|e| write_error(DOING, e))?;
        if updated == 0 {
            return Err(not_found("user"));
        }
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn user(&self, id: UserId) -> Result<Option<StoredUser>> {
        let client = self.client().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        client
            .query_opt(&sql, &[id.as_uuid()])
            .await
            .map_err(|e| db("reading a user", e))?
            .map(|r| codec::user_row(&r))
            .transpose()
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<StoredUser>> {
        let client = self.client().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        client
            .query_opt(&sql, &[&username])
            .await
            .map_err(|e| db("reading a user", e))?
            .map(|r| codec::user_row(&r))
            .transpose()
    }

    async fn users(&self) -> Result<Vec<StoredUser>> {
        let client = self.client().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username COLLATE \"C\"");
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(|e| db("listing users", e))?;
        rows.iter().map(codec::user_row).collect()
    }

    async fn user_count(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT count(*) AS total FROM users", &[])
            .await
            .map_err(|e| db("counting users", e))?;
        page_total(std::slice::from_ref(&row), "users").map(|t| t.unwrap_or(0))
    }

    async fn upsert_team(&self, team: &Team, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "saving a team";
        let members: Vec<Uuid> = team.members.iter().map(|m| *m.as_uuid()).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        tx.execute(
            "INSERT INTO teams (id, name) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name",
            &[team.id.as_uuid(), &team.name],
        )
        .await
        .map_err(|e| write_error(DOING, e))?;
        tx.execute(
            "DELETE FROM team_members WHERE team_id = $1",
            &[team.id.as_uuid()],
        )
        .await
        .map_err(|e| db(DOING, e))?;
        tx.execute(
            "INSERT INTO team_members (team_id, user_id) SELECT $1, unnest($2::uuid[]) \
             ON CONFLICT DO NOTHING",
            &[team.id.as_uuid(), &members],
        )
        .await
        .map_err(|e| write_error(DOING, e))?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn delete_team(&self, id: TeamId, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "deleting a team";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let deleted = tx
            .execute("DELETE FROM teams WHERE id = $1", &[id.as_uuid()])
            .await
            .map_err(|e| db(DOING, e))?;
        if deleted == 0 {
            return Err(not_found("team"));
        }
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn teams(&self) -> Result<Vec<Team>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT t.id, t.name, COALESCE(array_agg(m.user_id ORDER BY m.user_id) \
                 FILTER (WHERE m.user_id IS NOT NULL), '{}') AS members \
                 FROM teams t LEFT JOIN team_members m ON m.team_id = t.id \
                 GROUP BY t.id, t.name ORDER BY t.name COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(|e| db("listing teams", e))?;
        rows.iter()
            .map(|row| {
                let members: Vec<Uuid> = codec::get(row, "teams", "members")?;
                Ok(Team {
                    id: TeamId::from_uuid(codec::get(row, "teams", "id")?),
                    name: codec::get(row, "teams", "name")?,
                    members: members.into_iter().map(UserId::from_uuid).collect(),
                })
            })
            .collect()
    }

    async fn directory(&self, needle: &str, limit: u32) -> Result<Directory> {
        const DOING: &str = "reading the directory";
        let needle = needle.to_lowercase();
        let limit = i64::from(limit);
        let client = self.client().await?;
        // `strpos`, not `LIKE`: the needle is plain text, with no wildcard to escape.
        let users = client
            .query(
                "SELECT id, username FROM users \
                 WHERE NOT disabled AND strpos(lower(username), $1) > 0 \
                 ORDER BY username COLLATE \"C\" LIMIT $2",
                &[&needle, &limit],
            )
            .await
            .map_err(|e| db(DOING, e))?;
        let teams = client
            .query(
                "SELECT id, name FROM teams WHERE strpos(lower(name), $1) > 0 \
                 ORDER BY name COLLATE \"C\" LIMIT $2",
                &[&needle, &limit],
            )
            .await
            .map_err(|e| db(DOING, e))?;
        Ok(Directory {
            users: users
                .iter()
                .map(|row| {
                    Ok(DirectoryUser {
                        id: UserId::from_uuid(codec::get(row, "users", "id")?),
                        username: codec::get(row, "users", "username")?,
                    })
                })
                .collect::<Result<_>>()?,
            teams: teams
                .iter()
                .map(|row| {
                    Ok(DirectoryTeam {
                        id: TeamId::from_uuid(codec::get(row, "teams", "id")?),
                        name: codec::get(row, "teams", "name")?,
                    })
                })
                .collect::<Result<_>>()?,
        })
    }

    async fn teams_of(&self, user: UserId) -> Result<Vec<TeamId>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT team_id FROM team_members WHERE user_id = $1 ORDER BY team_id",
                &[user.as_uuid()],
            )
            .await
            .map_err(|e| db("reading a user's teams", e))?;
        rows.iter()
            .map(|row| codec::get(row, "team_members", "team_id").map(TeamId::from_uuid))
            .collect()
    }

    async fn insert_token(&self, token: &StoredToken, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "inserting a token";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        tx.execute(
            "INSERT INTO tokens (id, user_id, name, hash, read_only, created_at, expires_at, \
             revoked_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                token.info.id.as_uuid(),
                token.info.user.as_uuid(),
                &token.info.name,
                &token.hash.as_slice(),
                &token.info.read_only,
                &token.info.created_at,
                &token.info.expires_at,
                &token.info.revoked_at,
                &token.info.last_used_at,
            ],
        )
        .await
        .map_err(|e| write_error(DOING, e))?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StoredToken>> {
        let client = self.client().await?;
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1");
        client
            .query_opt(&sql, &[&hash.as_slice()])
            .await
            .map_err(|e| db("reading a token", e))?
            .map(|r| codec::token_row(&r))
            .transpose()
    }

    async fn tokens_of(&self, user: UserId) -> Result<Vec<StoredToken>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 ORDER BY created_at, id"
        );
        let rows = client
            .query(&sql, &[user.as_uuid()])
            .await
            .map_err(|e| db("listing tokens", e))?;
        rows.iter().map(codec::token_row).collect()
    }

    async fn revoke_token(
        &self,
        id: TokenId,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<()> {
        const DOING: &str = "revoking a token";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let updated = tx
            .execute(
                "UPDATE tokens SET revoked_at = $2 WHERE id = $1",
                &[id.as_uuid(), &at],
            )
            .await
            .map_err(|e| db(DOING, e))?;
        if updated == 0 {
            return Err(not_found("token"));
        }
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn touch_token(&self, id: TokenId, at: OffsetDateTime) -> Result<bool> {
        let due = at.saturating_sub(TOKEN_TOUCH_INTERVAL);
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE tokens SET last_used_at = $2 WHERE id = $1 AND revoked_at IS NULL \
                 AND (last_used_at IS NULL OR last_used_at <= $3)",
                &[id.as_uuid(), &at, &due],
            )
            .await
            .map_err(|e| db("recording a token's use", e))?;
        Ok(n > 0)
    }

    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord> {
        const DOING: &str = "appending to the audit log";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let record = append_in(&tx, event).await?;
        tx.commit().await.map_err(|e| db(DOING, e))?;
        Ok(record)
    }

    async fn audit_after(&self, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        // Past i64::MAX there is nothing to read.
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows = client
            .query(&sql, &[&after, &i64::from(limit)])
            .await
            .map_err(|e| db("reading the audit log", e))?;
        rows.iter().map(codec::audit_row).collect()
    }

    async fn audit_page(&self, query: &AuditQuery) -> Result<Page<AuditRecord>> {
        const DOING: &str = "reading the audit log";
        let offset = check_page(query.page, query.per_page)?;
        let mut p = Params::default();
        let mut conditions: Vec<String> = Vec::new();
        if let Some(actor) = query.actor {
            let actor = p.bind(*actor.as_uuid());
            conditions.push(format!("actor = {actor}"));
        }
        if let Some(action) = &query.action {
            let action = p.bind(action.clone());
            conditions.push(format!("action = {action}"));
        }
        if let Some(target) = &query.target {
            let target = p.bind(target.clone());
            conditions.push(format!("target = {target}"));
        }
        if let Some(since) = query.since {
            let since = p.bind(since);
            conditions.push(format!("at >= {since}"));
        }
        if let Some(until) = query.until {
            let until = p.bind(until);
            conditions.push(format!("at < {until}"));
        }
        let filter = if conditions.is_empty() {
            String::from("TRUE")
        } else {
            conditions.join(" AND ")
        };
        let count_params = p.0.len();
        let limit = p.bind(i64::from(query.per_page));
        let offset = p.bind(offset);
        let sql = format!(
            "SELECT {AUDIT_COLUMNS}, count(*) OVER () AS total FROM audit_log WHERE {filter} \
             ORDER BY seq DESC LIMIT {limit} OFFSET {offset}"
        );
        let client = self.client().await?;
        let rows = client
            .query(&sql, &p.refs())
            .await
            .map_err(|e| db(DOING, e))?;
        let total = match page_total(&rows, "audit_log")? {
            Some(total) => total,
            None if query.page == 1 => 0,
            None => {
                let sql = format!("SELECT count(*) AS total FROM audit_log WHERE {filter}");
                let refs = p.refs();
                let row = client
                    .query_one(&sql, &refs[..count_params])
                    .await
                    .map_err(|e| db(DOING, e))?;
                page_total(std::slice::from_ref(&row), "audit_log")?.unwrap_or(0)
            }
        };
        let items = rows
            .iter()
            .map(codec::audit_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            total,
            page: query.page,
            per_page: query.per_page,
        })
    }

    async fn record_check(&self, check: &Check, health: &Health) -> Result<()> {
        const DOING: &str = "recording a health check";
        let id = *check.connection.as_uuid();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let inserted = tx
            .execute(
                "INSERT INTO health_checks (connection_id, at, ok, latency_ms, error_kind, step, \
                 status) SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS \
                 (SELECT 1 FROM connections WHERE id = $1)",
                &[
                    &id,
                    &check.at,
                    &check.ok,
                    &i64::from(check.latency_ms),
                    &check.error_kind.map(|k| k.as_str()),
                    &check.step.map(|s| s.as_str()),
                    &check.status.as_str(),
                ],
            )
            .await;
        match inserted {
            // Deleted before this check finished (or while it was being recorded): dropped.
            Ok(0) => return Ok(()),
            Err(e) if is_foreign_key_violation(&e) => return Ok(()),
            Err(e) => return Err(db(DOING, e)),
            Ok(_) => {}
        }
        // The facts ride in the same upsert; without new ones (`facts_at` NULL) the stored
        // ones stay, column by column keyed on `facts_at`, so old and new never mix.
        let facts = FactColumns::of(health);
        let upserted = tx
            .execute(
                "INSERT INTO connection_health (connection_id, status, checked_at, latency_ms, \
                 error_kind, uptime_24h, facts_at, server_version, server_in_recovery, \
                 server_connections_used, server_max_connections, tls_protocol, tls_cipher, \
                 tls_peer_subject, tls_peer_not_after) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 ON CONFLICT (connection_id) DO UPDATE SET status = EXCLUDED.status, \
                 checked_at = EXCLUDED.checked_at, latency_ms = EXCLUDED.latency_ms, \
                 error_kind = EXCLUDED.error_kind, uptime_24h = EXCLUDED.uptime_24h, \
                 facts_at = COALESCE(EXCLUDED.facts_at, connection_health.facts_at), \
                 server_version = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.server_version ELSE EXCLUDED.server_version END, \
                 server_in_recovery = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.server_in_recovery ELSE EXCLUDED.server_in_recovery END, \
                 server_connections_used = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.server_connections_used \
                   ELSE EXCLUDED.server_connections_used END, \
                 server_max_connections = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.server_max_connections \
                   ELSE EXCLUDED.server_max_connections END, \
                 tls_protocol = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.tls_protocol ELSE EXCLUDED.tls_protocol END, \
                 tls_cipher = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.tls_cipher ELSE EXCLUDED.tls_cipher END, \
                 tls_peer_subject = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.tls_peer_subject ELSE EXCLUDED.tls_peer_subject END, \
                 tls_peer_not_after = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.tls_peer_not_after ELSE EXCLUDED.tls_peer_not_after END",
                &[
                    &id,
                    &health.status.as_str(),
                    &health.checked_at,
                    &health.latency_ms.map(i64::from),
                    &health.error_kind.map(|k| k.as_str()),
                    &health.uptime_24h,
                    &facts.at,
                    &facts.server_version,
                    &facts.in_recovery,
                    &facts.connections_used,
                    &facts.max_connections,
                    &facts.tls_protocol,
                    &facts.tls_cipher,
                    &facts.tls_peer_subject,
                    &facts.tls_peer_not_after,
                ],
            )
            .await;
        match upserted {
            Err(e) if is_foreign_key_violation(&e) => return Ok(()),
            Err(e) => return Err(db(DOING, e)),
            Ok(_) => {}
        }
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn checks(
        &self,
        id: ConnectionId,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Check>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {CHECK_COLUMNS} FROM health_checks WHERE connection_id = $1 AND at >= $2 \
             ORDER BY at DESC, id DESC LIMIT $3"
        );
        let rows = client
            .query(&sql, &[id.as_uuid(), &since, &i64::from(limit)])
            .await
            .map_err(|e| db("reading health checks", e))?;
        rows.iter().map(codec::check_row).collect()
    }

    async fn prune_checks(&self, before: OffsetDateTime) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM health_checks WHERE at < $1", &[&before])
            .await
            .map_err(|e| db("pruning health checks", e))
    }

    async fn lease_check(
        &self,
        id: ConnectionId,
        holder: Uuid,
        now: OffsetDateTime,
        hold: Duration,
    ) -> Result<Option<CheckLease>> {
        const DOING: &str = "claiming a health check";
        let id = *id.as_uuid();
        let hold = time::Duration::try_from(hold).unwrap_or(time::Duration::MAX);
        let cutoff = now.checked_sub(hold).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let client = self.client().await?;
        // The lease row, created unclaimed on the first claim (a deleted connection: lost).
        let created = client
            .execute(
                "INSERT INTO check_leases (connection_id, holder, leased_at) \
                 SELECT $1, NULL, '-infinity' WHERE EXISTS \
                 (SELECT 1 FROM connections WHERE id = $1) \
                 ON CONFLICT (connection_id) DO NOTHING",
                &[&id],
            )
            .await;
        match created {
            Err(e) if is_foreign_key_violation(&e) => return Ok(None),
            Err(e) => return Err(db(DOING, e)),
            Ok(_) => {}
        }
        // One statement: lock the row if it is claimable and nobody else is claiming it right
        // now (SKIP LOCKED: a concurrent claimant loses at once rather than waiting), then
        // record the claim, returning who held it before and the connection as stored.
        let sql = format!(
            "WITH claimable AS (SELECT connection_id, holder FROM check_leases \
             WHERE connection_id = $1 AND (holder = $2 OR leased_at <= $3) \
             FOR UPDATE SKIP LOCKED) \
             UPDATE check_leases AS l SET holder = $2, leased_at = $4 \
             FROM claimable JOIN connections c ON c.id = claimable.connection_id \
             WHERE l.connection_id = claimable.connection_id \
             RETURNING claimable.holder AS previous_holder, {SPEC_COLUMNS}, {SECRET_COLUMNS}"
        );
        let row = client
            .query_opt(&sql, &[&id, &holder, &cutoff, &now])
            .await
            .map_err(|e| db(DOING, e))?;
        row.map(|row| {
            Ok(CheckLease {
                previous_holder: row
                    .try_get::<_, Option<Uuid>>("previous_holder")
                    .map_err(|e| db(DOING, e))?,
                connection: codec::connection_row(&row)?,
            })
        })
        .transpose()
    }

    async fn notify_event(&self, payload: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("SELECT pg_notify($1, $2)", &[&EVENTS_CHANNEL, &payload])
            .await
            .map_err(|e| db("telling other processes an event", e))?;
        Ok(())
    }

    fn subscribe_events(&self) -> Option<mpsc::Receiver<String>> {
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(listen(self.listen.clone(), sender));
        Some(receiver)
    }

    async fn policy(&self) -> Result<TargetPolicy> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT allow_cidrs, deny_cidrs, min_tls_mode FROM policy WHERE id = 1",
                &[],
            )
            .await
            .map_err(|e| db("reading the policy", e))?;
        match row {
            Some(row) => codec::policy_row(&row),
            None => Ok(TargetPolicy::default()),
        }
    }

    async fn set_policy(&self, policy: &TargetPolicy, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "saving the policy";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        tx.execute(
            "INSERT INTO policy (id, allow_cidrs, deny_cidrs, min_tls_mode) \
             VALUES (1, $1, $2, $3) ON CONFLICT (id) DO UPDATE SET \
             allow_cidrs = EXCLUDED.allow_cidrs, deny_cidrs = EXCLUDED.deny_cidrs, \
             min_tls_mode = EXCLUDED.min_tls_mode",
            &[
                &policy.allow_cidrs,
                &policy.deny_cidrs,
                &policy.min_tls_mode.as_str(),
            ],
        )
        .await
        .map_err(|e| db(DOING, e))?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn kek_usage(&self) -> Result<Vec<KekUsage>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT kek_id, count(*) AS total FROM connections GROUP BY kek_id \
                 ORDER BY kek_id COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(|e| db("counting data keys per key", e))?;
        rows.iter()
            .map(|row| {
                Ok(KekUsage {
                    kek: codec::kek_id(row)?,
                    rows: page_total(std::slice::from_ref(row), "connections")?.unwrap_or(0),
                })
            })
            .collect()
    }

    async fn deks_not_under(
        &self,
        active: &KekId,
        after: Option<ConnectionId>,
        limit: u32,
    ) -> Result<Vec<(ConnectionId, WrappedDek)>> {
        let client = self.client().await?;
        let after = after.map(|a| *a.as_uuid());
        let rows = client
            .query(
                "SELECT id, kek_id, wrapped_dek FROM connections \
                 WHERE kek_id <> $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
                &[&active.as_str(), &after, &i64::from(limit)],
            )
            .await
            .map_err(|e| db("reading data keys to rewrap", e))?;
        rows.iter().map(codec::dek_row).collect()
    }

    async fn replace_dek(
        &self,
        id: ConnectionId,
        old: &WrappedDek,
        new: &WrappedDek,
    ) -> Result<bool> {
        let client = self.client().await?;
        let replaced = client
            .execute(
                "UPDATE connections SET wrapped_dek = $3, kek_id = $4 \
                 WHERE id = $1 AND wrapped_dek = $2",
                &[
                    id.as_uuid(),
                    &old.to_bytes(),
                    &new.to_bytes(),
                    &new.kek_id().as_str(),
                ],
            )
            .await
            .map_err(|e| db("replacing a data key", e))?;
        Ok(replaced == 1)
    }

    // --- key checks (SQL in `postgres/keys.rs`) ---

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

    // --- sessions (SQL in `postgres/sessions.rs`) ---

    async fn insert_session(&self, session: &crate::store::StoredSession) -> Result<()> {
        self.insert_session_row(session).await
    }

    async fn session_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<crate::store::StoredSession>> {
        self.session_row_by_hash(hash).await
    }

    async fn sessions_of(&self, user: UserId) -> Result<Vec<crate::store::StoredSession>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_bounds_name_the_field() {
        assert_eq!(check_page(1, 1).unwrap(), 0);
        assert_eq!(check_page(3, 50).unwrap(), 100);
        assert_eq!(check_page(0, 50).unwrap_err().field(), Some("page"));
        assert_eq!(check_page(1, 0).unwrap_err().field(), Some("per_page"));
        assert_eq!(
            check_page(1, MAX_PER_PAGE + 1).unwrap_err().field(),
            Some("per_page")
        );
    }

    #[test]
    fn lock_keys_differ_and_migrations_are_numbered() {
        assert_ne!(MIGRATION_LOCK_KEY, AUDIT_LOCK_KEY);
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
