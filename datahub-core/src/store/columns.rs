//! What both stores do alike, in one place: rebuilding a connection from its stored columns
//! (every value validated again by the model's own parse functions, so a row that does not parse
//! is a `Store` error, "corrupt row", never half-valid data), reading the other rows through
//! [`ColumnRead`] (each backend says only how its driver reads one typed value), the health
//! facts as written, the corrupt-row errors, and paging with a total.

use std::str::FromStr;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{SealedSecrets, StoredConnection, StoredSession, StoredToken, StoredUser};
use crate::audit::{AuditEvent, AuditRecord, Outcome};
use crate::model::{
    ApplicationName, CertificatePem, Check, CheckFacts, ConnectOptions, Connection, ConnectionName,
    ConnectionSpec, DatabaseName, Description, Health, HealthStatus, Host, MAX_PER_PAGE,
    Monitoring, Page, Port, ServerInfo, Tags, TargetPolicy, TlsInfo, TlsSettings, TokenInfo, User,
    Username,
};
use crate::{ConnectionId, Error, ErrorKind, Result, SessionId, TokenId, UserId};

/// The table connections are stored in.
pub(super) const CONNECTIONS: &str = "connections";

/// The error for a stored value that the model refuses.
pub(super) fn corrupt(table: &'static str, cause: Error) -> Error {
    Error::new(ErrorKind::Store, format!("corrupt row in {table}")).with_source(cause)
}

/// The error for a stored value out of its column's range.
pub(super) fn corrupt_value(table: &'static str, column: &str) -> Error {
    Error::new(
        ErrorKind::Store,
        format!("corrupt row in {table}: column {column} holds an invalid value"),
    )
}

/// The common part of a connection row: id, spec, owner, version and times, every value
/// validated again; `tags` as the backend keeps them (PostgreSQL in an array column, SQLite in
/// a table of its own).
///
/// # Errors
/// `Store` ("corrupt row in connections") when a column is missing or a value breaks its
/// field's rule.
pub(super) fn connection_columns(
    row: &impl ColumnRead,
    tags: &[String],
) -> Result<ConnectionColumns> {
    let t = CONNECTIONS;
    let (name, description, engine, host) = (
        row.text(t, "name")?,
        row.opt_text(t, "description")?,
        row.text(t, "engine")?,
        row.text(t, "host")?,
    );
    let (database, username, tls_mode) = (
        row.text(t, "database_name")?,
        row.text(t, "username")?,
        row.text(t, "tls_mode")?,
    );
    let (ca, client_cert, channel_binding) = (
        row.opt_text(t, "tls_ca_cert_pem")?,
        row.opt_text(t, "tls_client_cert_pem")?,
        row.text(t, "tls_channel_binding")?,
    );
    let application_name = row.opt_text(t, "application_name")?;
    let spec = SpecColumns {
        name: &name,
        description: description.as_deref(),
        engine: &engine,
        host: &host,
        port: row.int32(t, "port")?,
        database: &database,
        username: &username,
        tls_mode: &tls_mode,
        ca_cert_pem: ca.as_deref(),
        client_cert_pem: client_cert.as_deref(),
        channel_binding: &channel_binding,
        connect_timeout_ms: row.int32(t, "connect_timeout_ms")?,
        application_name: application_name.as_deref(),
        tags: tags.iter().map(String::as_str).collect(),
        monitoring_enabled: row.bool(t, "monitoring_enabled")?,
        monitoring_interval_s: row.int32(t, "monitoring_interval_s")?,
        monitoring_slow_ms: row.int32(t, "monitoring_slow_ms")?,
    }
    .into_spec()?;
    ConnectionColumns::new(
        ConnectionId::from_uuid(row.uuid(t, "id")?),
        spec,
        UserId::from_uuid(row.uuid(t, "owner")?),
        row.u64(t, "version")?,
        row.time(t, "created_at")?,
        row.time(t, "updated_at")?,
    )
}

/// A connection's spec columns as read, before validation; [`SpecColumns::into_spec`] is the
/// one place that rebuilds the spec.
struct SpecColumns<'a> {
    name: &'a str,
    description: Option<&'a str>,
    engine: &'a str,
    host: &'a str,
    port: i64,
    database: &'a str,
    username: &'a str,
    tls_mode: &'a str,
    ca_cert_pem: Option<&'a str>,
    client_cert_pem: Option<&'a str>,
    channel_binding: &'a str,
    connect_timeout_ms: i64,
    application_name: Option<&'a str>,
    tags: Vec<&'a str>,
    monitoring_enabled: bool,
    monitoring_interval_s: i64,
    monitoring_slow_ms: i64,
}

impl SpecColumns<'_> {
    /// The spec these columns hold, validating every field again.
    ///
    /// # Errors
    /// `Store` ("corrupt row in connections") when a value breaks its field's rule.
    fn into_spec(self) -> Result<ConnectionSpec> {
        let bad = |e: Error| corrupt(CONNECTIONS, e);
        let cert = |pem: Option<&str>, field: &'static str| {
            pem.map(|p| CertificatePem::parse(field, p))
                .transpose()
                .map_err(bad)
        };
        let tls = TlsSettings::new(
            self.tls_mode.parse().map_err(bad)?,
            cert(self.ca_cert_pem, "tls.ca_cert_pem")?,
            cert(self.client_cert_pem, "tls.client_cert_pem")?,
            self.channel_binding.parse().map_err(bad)?,
        )
        .map_err(bad)?;
        let application_name = self
            .application_name
            .map(ApplicationName::parse)
            .transpose()
            .map_err(bad)?;
        let options =
            ConnectOptions::new(Some(self.connect_timeout_ms), application_name).map_err(bad)?;
        let monitoring = Monitoring::new(
            Some(self.monitoring_enabled),
            Some(self.monitoring_interval_s),
            Some(self.monitoring_slow_ms),
        )
        .map_err(bad)?;
        Ok(ConnectionSpec {
            name: ConnectionName::parse(self.name).map_err(bad)?,
            description: self
                .description
                .map(Description::parse)
                .transpose()
                .map_err(bad)?,
            engine: self.engine.parse().map_err(bad)?,
            host: Host::parse(self.host).map_err(bad)?,
            port: Port::new(self.port).map_err(bad)?,
            database: DatabaseName::parse(self.database).map_err(bad)?,
            username: Username::parse(self.username).map_err(bad)?,
            tls,
            options,
            tags: Tags::parse(&self.tags).map_err(bad)?,
            monitoring,
        })
    }
}

/// A connection column's value as written, before the driver's own type.
pub(super) enum ColumnValue<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    /// A whole number, with the field it comes from (named in the error where the backend's
    /// column is narrower).
    Int(i64, &'static str),
    Bool(bool),
    Time(OffsetDateTime),
    Bytes(Vec<u8>),
    OptBytes(Option<Vec<u8>>),
}

/// The columns of a connection row that both backends write alike, with their values: all but
/// id, owner, version and created_at (which only an insert writes), and the tags and search
/// columns (which each backend keeps its own way).
pub(super) fn connection_values(row: &StoredConnection) -> [(&'static str, ColumnValue<'_>); 21] {
    use ColumnValue::{Bool, Bytes, Int, OptBytes, OptText, Text, Time};
    let s = &row.spec;
    let secrets = &row.secrets;
    [
        ("name", Text(s.name.as_str())),
        (
            "description",
            OptText(s.description.as_ref().map(|d| d.as_str())),
        ),
        ("engine", Text(s.engine.as_str())),
        ("host", Text(s.host.as_str())),
        ("port", Int(i64::from(s.port.get()), "port")),
        ("database_name", Text(s.database.as_str())),
        ("username", Text(s.username.as_str())),
        ("tls_mode", Text(s.tls.mode().as_str())),
        (
            "tls_ca_cert_pem",
            OptText(s.tls.ca_cert_pem().map(|c| c.as_str())),
        ),
        (
            "tls_client_cert_pem",
            OptText(s.tls.client_cert_pem().map(|c| c.as_str())),
        ),
        (
            "tls_channel_binding",
            Text(s.tls.channel_binding().as_str()),
        ),
        (
            "connect_timeout_ms",
            Int(
                i64::from(s.options.connect_timeout_ms()),
                "options.connect_timeout_ms",
            ),
        ),
        (
            "application_name",
            OptText(s.options.application_name().map(|a| a.as_str())),
        ),
        ("monitoring_enabled", Bool(s.monitoring.enabled())),
        (
            "monitoring_interval_s",
            Int(
                i64::from(s.monitoring.interval_s()),
                "monitoring.interval_s",
            ),
        ),
        (
            "monitoring_slow_ms",
            Int(i64::from(s.monitoring.slow_ms()), "monitoring.slow_ms"),
        ),
        ("updated_at", Time(row.updated_at)),
        ("kek_id", Text(secrets.dek.kek_id().as_str())),
        ("wrapped_dek", Bytes(secrets.dek.to_bytes())),
        ("sealed_password", Bytes(secrets.password.to_bytes())),
        (
            "sealed_client_key",
            OptBytes(secrets.client_key_pem.as_ref().map(|k| k.to_bytes())),
        ),
    ]
}

/// A stored connection's columns but its secrets and health, rebuilt: the common part of
/// [`StoredConnection`] (with [`Self::sealed`]) and [`Connection`] (with [`Self::shown`]).
pub(super) struct ConnectionColumns {
    pub(super) id: ConnectionId,
    pub(super) spec: ConnectionSpec,
    pub(super) owner: UserId,
    pub(super) version: u64,
    pub(super) created_at: OffsetDateTime,
    pub(super) updated_at: OffsetDateTime,
}

impl ConnectionColumns {
    /// Checks the version (it starts at 1, so 0 is a corrupt row).
    pub(super) fn new(
        id: ConnectionId,
        spec: ConnectionSpec,
        owner: UserId,
        version: u64,
        created_at: OffsetDateTime,
        updated_at: OffsetDateTime,
    ) -> Result<Self> {
        if version == 0 {
            return Err(corrupt_value(CONNECTIONS, "version"));
        }
        Ok(Self {
            id,
            spec,
            owner,
            version,
            created_at,
            updated_at,
        })
    }

    /// The connection as stored, with its sealed secrets.
    pub(super) fn sealed(self, secrets: SealedSecrets) -> StoredConnection {
        StoredConnection {
            id: self.id,
            spec: self.spec,
            owner: self.owner,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            secrets,
        }
    }

    /// The connection as shown, with its health.
    pub(super) fn shown(self, health: Health) -> Connection {
        Connection {
            id: self.id,
            spec: self.spec,
            owner: self.owner,
            version: self.version,
            // Every stored connection has a sealed password (the column is NOT NULL).
            password_set: true,
            created_at: self.created_at,
            updated_at: self.updated_at,
            health,
        }
    }
}

/// How one backend reads a typed value from one of its rows. The backends store some values
/// differently (SQLite keeps times as Unix microseconds, ids as text, booleans as integers and
/// lists in its own encoding), so each implements these reads over its driver's row; the row
/// parsers below ([`user_row`], [`health_row`] and the rest) are written once against them.
///
/// Every method errs with `Store` ("corrupt row in `table`") on a missing column, a NULL where
/// none may be, or a value of the wrong type or out of range.
pub(super) trait ColumnRead {
    fn text(&self, table: &'static str, column: &str) -> Result<String>;
    fn opt_text(&self, table: &'static str, column: &str) -> Result<Option<String>>;
    fn bool(&self, table: &'static str, column: &str) -> Result<bool>;
    fn opt_bool(&self, table: &'static str, column: &str) -> Result<Option<bool>>;
    fn int(&self, table: &'static str, column: &str) -> Result<i64>;
    /// A whole number from a column PostgreSQL keeps as `integer` (32 bits).
    fn int32(&self, table: &'static str, column: &str) -> Result<i64>;
    fn opt_int(&self, table: &'static str, column: &str) -> Result<Option<i64>>;
    fn opt_f64(&self, table: &'static str, column: &str) -> Result<Option<f64>>;
    fn uuid(&self, table: &'static str, column: &str) -> Result<Uuid>;
    fn opt_uuid(&self, table: &'static str, column: &str) -> Result<Option<Uuid>>;
    fn time(&self, table: &'static str, column: &str) -> Result<OffsetDateTime>;
    fn opt_time(&self, table: &'static str, column: &str) -> Result<Option<OffsetDateTime>>;
    fn bytes(&self, table: &'static str, column: &str) -> Result<Vec<u8>>;
    fn text_list(&self, table: &'static str, column: &str) -> Result<Vec<String>>;

    /// A count or version: a stored integer that may not be negative.
    fn u64(&self, table: &'static str, column: &str) -> Result<u64> {
        u64::try_from(self.int(table, column)?).map_err(|_| corrupt_value(table, column))
    }

    fn u32(&self, table: &'static str, column: &str) -> Result<u32> {
        u32::try_from(self.int(table, column)?).map_err(|_| corrupt_value(table, column))
    }

    fn opt_u32(&self, table: &'static str, column: &str) -> Result<Option<u32>> {
        self.opt_int(table, column)?
            .map(|v| u32::try_from(v).map_err(|_| corrupt_value(table, column)))
            .transpose()
    }

    /// A stored spelling, parsed with the type's own `FromStr`.
    fn parsed<T: FromStr<Err = Error>>(&self, table: &'static str, column: &str) -> Result<T> {
        self.text(table, column)?
            .parse()
            .map_err(|e| corrupt(table, e))
    }

    fn opt_parsed<T: FromStr<Err = Error>>(
        &self,
        table: &'static str,
        column: &str,
    ) -> Result<Option<T>> {
        self.opt_text(table, column)?
            .map(|s| s.parse().map_err(|e| corrupt(table, e)))
            .transpose()
    }

    /// A SHA-256 digest: exactly 32 bytes.
    fn hash(&self, table: &'static str, column: &str) -> Result<[u8; 32]> {
        self.bytes(table, column)?
            .try_into()
            .map_err(|_| corrupt_value(table, column))
    }
}

/// Implements the required reads of [`ColumnRead`], each by one function of the backend's codec
/// taking `(row, table, column)`: `column_reads! { text: String = get; … }`.
macro_rules! column_reads {
    ($($name:ident: $ty:ty = $read:path;)*) => {
        $(
            fn $name(&self, table: &'static str, column: &str) -> $crate::Result<$ty> {
                $read(self, table, column)
            }
        )*
    };
}
pub(super) use column_reads;

/// A `users` row.
pub(super) fn user_row(row: &impl ColumnRead) -> Result<StoredUser> {
    let t = "users";
    Ok(StoredUser {
        user: User {
            id: UserId::from_uuid(row.uuid(t, "id")?),
            username: row.text(t, "username")?,
            role: row.parsed(t, "role")?,
            disabled: row.bool(t, "disabled")?,
            created_at: row.time(t, "created_at")?,
            updated_at: row.time(t, "updated_at")?,
        },
        password_hash: row.text(t, "password_hash")?,
    })
}

/// A `tokens` row.
pub(super) fn token_row(row: &impl ColumnRead) -> Result<StoredToken> {
    let t = "tokens";
    Ok(StoredToken {
        info: TokenInfo {
            id: TokenId::from_uuid(row.uuid(t, "id")?),
            user: UserId::from_uuid(row.uuid(t, "user_id")?),
            name: row.text(t, "name")?,
            read_only: row.bool(t, "read_only")?,
            created_at: row.time(t, "created_at")?,
            expires_at: row.opt_time(t, "expires_at")?,
            revoked_at: row.opt_time(t, "revoked_at")?,
            last_used_at: row.opt_time(t, "last_used_at")?,
        },
        hash: row.hash(t, "hash")?,
    })
}

/// A `sessions` row.
pub(super) fn session_row(row: &impl ColumnRead) -> Result<StoredSession> {
    let t = "sessions";
    let hash = row.hash(t, "hash")?;
    Ok(StoredSession {
        id: SessionId::from_uuid(row.uuid(t, "id")?),
        user: UserId::from_uuid(row.uuid(t, "user_id")?),
        hash,
        created_at: row.time(t, "created_at")?,
        expires_at: row.time(t, "expires_at")?,
        last_seen_at: row.time(t, "last_seen_at")?,
        client_addr: row.opt_text(t, "client_addr")?,
        user_agent: row.opt_text(t, "user_agent")?,
    })
}

/// A `health_checks` row.
pub(super) fn check_row(row: &impl ColumnRead) -> Result<Check> {
    let t = "health_checks";
    Ok(Check {
        connection: ConnectionId::from_uuid(row.uuid(t, "connection_id")?),
        at: row.time(t, "at")?,
        ok: row.bool(t, "ok")?,
        latency_ms: row.u32(t, "latency_ms")?,
        error_kind: row.opt_parsed(t, "error_kind")?,
        step: row.opt_parsed(t, "step")?,
        status: row.parsed(t, "status")?,
    })
}

/// The columns [`audit_row`] reads.
pub(super) const AUDIT_COLUMNS: &str = "seq, at, actor, actor_name, action, target, outcome, \
    changed_fields, client_addr, request_id, prev_hash, hash";

/// An `audit_log` row (with [`AUDIT_COLUMNS`]); its `seq` starts at 1.
pub(super) fn audit_row(row: &impl ColumnRead) -> Result<AuditRecord> {
    let t = "audit_log";
    let outcome = row.text(t, "outcome")?;
    let outcome = Outcome::parse(&outcome).ok_or_else(|| corrupt_value(t, "outcome"))?;
    let seq = row.u64(t, "seq")?;
    if seq == 0 {
        return Err(corrupt_value(t, "seq"));
    }
    Ok(AuditRecord {
        seq,
        event: AuditEvent {
            at: row.time(t, "at")?,
            actor: row.opt_uuid(t, "actor")?.map(UserId::from_uuid),
            actor_name: row.text(t, "actor_name")?,
            action: row.text(t, "action")?,
            target: row.opt_text(t, "target")?,
            outcome,
            changed_fields: row.text_list(t, "changed_fields")?,
            client_addr: row.opt_text(t, "client_addr")?,
            request_id: row.opt_text(t, "request_id")?,
        },
        prev_hash: row.hash(t, "prev_hash")?,
        hash: row.hash(t, "hash")?,
    })
}

/// The `policy` row.
pub(super) fn policy_row(row: &impl ColumnRead) -> Result<TargetPolicy> {
    let t = "policy";
    Ok(TargetPolicy {
        allow_cidrs: row.text_list(t, "allow_cidrs")?,
        deny_cidrs: row.text_list(t, "deny_cidrs")?,
        min_tls_mode: row.parsed(t, "min_tls_mode")?,
    })
}

/// The health columns [`health_row`] reads, from the table alias `h` (a left join).
pub(super) const HEALTH_COLUMNS: &str = "h.status AS h_status, h.checked_at AS h_checked_at, \
    h.latency_ms AS h_latency_ms, h.error_kind AS h_error_kind, h.uptime_24h AS h_uptime_24h, \
    h.facts_at AS h_facts_at, h.server_version AS h_server_version, \
    h.server_in_recovery AS h_server_in_recovery, \
    h.server_connections_used AS h_server_connections_used, \
    h.server_max_connections AS h_server_max_connections, h.tls_protocol AS h_tls_protocol, \
    h.tls_cipher AS h_tls_cipher, h.tls_peer_subject AS h_tls_peer_subject, \
    h.tls_peer_not_after AS h_tls_peer_not_after";

/// The current health from [`HEALTH_COLUMNS`]; no health row is `unknown`, never checked.
pub(super) fn health_row(row: &impl ColumnRead) -> Result<Health> {
    let t = "connection_health";
    let Some(status) = row.opt_parsed::<HealthStatus>(t, "h_status")? else {
        return Ok(Health::default());
    };
    let uptime_24h = row.opt_f64(t, "h_uptime_24h")?;
    if let Some(u) = uptime_24h
        && !(0.0..=1.0).contains(&u)
    {
        return Err(corrupt_value(t, "uptime_24h"));
    }
    Ok(Health {
        status,
        checked_at: row.opt_time(t, "h_checked_at")?,
        latency_ms: row.opt_u32(t, "h_latency_ms")?,
        error_kind: row.opt_parsed(t, "h_error_kind")?,
        uptime_24h,
        facts: facts_row(row)?,
    })
}

/// The facts of the last check that reached the server, from [`HEALTH_COLUMNS`].
fn facts_row(row: &impl ColumnRead) -> Result<Option<CheckFacts>> {
    let t = "connection_health";
    let Some(at) = row.opt_time(t, "h_facts_at")? else {
        return Ok(None);
    };
    let server = match row.opt_text(t, "h_server_version")? {
        Some(version) => Some(ServerInfo {
            version,
            in_recovery: row.opt_bool(t, "h_server_in_recovery")?.unwrap_or(false),
            connections_used: row.opt_u32(t, "h_server_connections_used")?,
            max_connections: row.opt_u32(t, "h_server_max_connections")?,
        }),
        None => None,
    };
    let tls = TlsInfo {
        protocol: row.opt_text(t, "h_tls_protocol")?,
        cipher: row.opt_text(t, "h_tls_cipher")?,
        peer_subject: row.opt_text(t, "h_tls_peer_subject")?,
        peer_not_after: row.opt_time(t, "h_tls_peer_not_after")?,
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

/// The fact columns of `connection_health` as written, with times as the backend stores them
/// (`T`): all `None` when `health` brings no facts (the upsert then keeps the stored ones).
#[derive(Debug)]
pub(super) struct FactColumns<T> {
    pub(super) at: Option<T>,
    pub(super) server_version: Option<String>,
    pub(super) in_recovery: Option<bool>,
    pub(super) connections_used: Option<i64>,
    pub(super) max_connections: Option<i64>,
    pub(super) tls_protocol: Option<String>,
    pub(super) tls_cipher: Option<String>,
    pub(super) tls_peer_subject: Option<String>,
    pub(super) tls_peer_not_after: Option<T>,
}

impl<T> FactColumns<T> {
    /// The fact columns of `health`, each time stored as `time` makes it.
    pub(super) fn of(health: &Health, time: impl Fn(OffsetDateTime) -> T) -> Self {
        let Some(facts) = &health.facts else {
            return Self {
                at: None,
                server_version: None,
                in_recovery: None,
                connections_used: None,
                max_connections: None,
                tls_protocol: None,
                tls_cipher: None,
                tls_peer_subject: None,
                tls_peer_not_after: None,
            };
        };
        let server = facts.server.as_ref();
        let tls = facts.tls.as_ref();
        Self {
            at: Some(time(facts.at)),
            server_version: server.map(|s| s.version.clone()),
            in_recovery: server.map(|s| s.in_recovery),
            connections_used: server.and_then(|s| s.connections_used).map(i64::from),
            max_connections: server.and_then(|s| s.max_connections).map(i64::from),
            tls_protocol: tls.and_then(|t| t.protocol.clone()),
            tls_cipher: tls.and_then(|t| t.cipher.clone()),
            tls_peer_subject: tls.and_then(|t| t.peer_subject.clone()),
            tls_peer_not_after: tls.and_then(|t| t.peer_not_after).map(time),
        }
    }
}

/// Joins the fields of a connection's search text (PostgreSQL's `connection_search.search_text`,
/// SQLite's `connection_search.body`): U+001F, which no name, description, host or tag may
/// contain, so no search can match across two fields.
pub(super) const SEARCH_SEPARATOR: char = '\u{1f}';

/// A `LIKE` pattern (escape character `\`) matching `needle` as a literal, lowercased substring
/// (Unicode lowercasing, the same as the stored search text's, whatever the database's own).
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

/// The offset of a page, after checking the page request against the contract's bounds.
///
/// # Errors
/// `InvalidInput` on `page` below 1, or on `per_page` outside 1 to [`MAX_PER_PAGE`].
pub(super) fn page_offset(page: u32, per_page: u32) -> Result<i64> {
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

/// One page of `items` with `total` rows matching in all (a count from SQL: a negative one,
/// which SQL never answers, reads as 0).
pub(super) fn page<T>(
    items: Vec<T>,
    total: impl TryInto<u64>,
    page: u32,
    per_page: u32,
) -> Page<T> {
    Page {
        items,
        total: total.try_into().unwrap_or(0),
        page,
        per_page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_bounds_name_the_field() {
        assert_eq!(page_offset(1, 1).unwrap(), 0);
        assert_eq!(page_offset(3, 50).unwrap(), 100);
        assert_eq!(page_offset(0, 50).unwrap_err().field(), Some("page"));
        assert_eq!(page_offset(1, 0).unwrap_err().field(), Some("per_page"));
        assert_eq!(
            page_offset(1, MAX_PER_PAGE + 1).unwrap_err().field(),
            Some("per_page")
        );
    }

    #[test]
    fn like_patterns_escape_wildcards_and_fold_case() {
        assert_eq!(like_pattern("Ab"), "%ab%");
        assert_eq!(like_pattern("50%_x\\"), "%50\\%\\_x\\\\%");
        assert_eq!(like_pattern("ÉCOLE"), "%école%");
        assert_eq!(like_pattern(""), "%%");
    }

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_pattern("50%_a\\B"), "%50\\%\\_a\\\\b%");
    }
}
