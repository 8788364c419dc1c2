//! What both stores do alike, in one place: rebuilding a connection from its stored columns
//! (every value validated again by the model's own parse functions, so a row that does not parse
//! is a `Store` error, "corrupt row", never half-valid data), the corrupt-row errors, and paging
//! with a total.

use time::OffsetDateTime;

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

/// A connection's spec columns as read, before validation. Either backend reads its own column
/// types into these; [`SpecColumns::into_spec`] is the one place that rebuilds the spec.
pub(super) struct SpecColumns<'a> {
    pub(super) name: &'a str,
    pub(super) description: Option<&'a str>,
    pub(super) engine: &'a str,
    pub(super) host: &'a str,
    pub(super) port: i64,
    pub(super) database: &'a str,
    pub(super) username: &'a str,
    pub(super) tls_mode: &'a str,
    pub(super) ca_cert_pem: Option<&'a str>,
    pub(super) client_cert_pem: Option<&'a str>,
    pub(super) channel_binding: &'a str,
    pub(super) connect_timeout_ms: i64,
    pub(super) application_name: Option<&'a str>,
    pub(super) tags: Vec<&'a str>,
    pub(super) monitoring_enabled: bool,
    pub(super) monitoring_interval_s: i64,
    pub(super) monitoring_slow_ms: i64,
}

impl SpecColumns<'_> {
    /// The spec these columns hold, validating every field again.
    ///
    /// # Errors
    /// `Store` ("corrupt row in connections") when a value breaks its field's rule.
    pub(super) fn into_spec(self) -> Result<ConnectionSpec> {
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
}
