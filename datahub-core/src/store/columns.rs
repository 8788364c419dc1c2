//! What both stores do alike, in one place: rebuilding a connection from its stored columns
//! (every value validated again by the model's own parse functions, so a row that does not parse
//! is a `Store` error, "corrupt row", never half-valid data), the connection columns as written,
//! the search pattern, the corrupt-row errors, and paging with a total. The other rows are read
//! in [`super::rows`].

use time::OffsetDateTime;

use super::rows::ColumnRead;
use super::{SealedSecrets, StoredConnection};
use crate::model::{
    ApplicationName, CertificatePem, ConnectOptions, Connection, ConnectionName, ConnectionSpec,
    DatabaseName, Description, Health, Host, MAX_PER_PAGE, Monitoring, Page, Port, Tags,
    TlsSettings, Username,
};
use crate::{ConnectionId, Error, ErrorKind, Result, UserId};

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
