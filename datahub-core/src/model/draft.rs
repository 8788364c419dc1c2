//! What a user submits ([`ConnectionDraft`]) and what validation makes of it: the non-secret
//! [`ConnectionSpec`] and the [`ConnectionSecrets`].

use crate::model::enums::{ChannelBinding, Engine, TlsMode};
use crate::model::fields::{
    ApplicationName, ConnectionName, DatabaseName, Description, Port, Tags, Username,
    check_password,
};
use crate::model::host::Host;
use crate::model::options::{ConnectOptions, Monitoring};
use crate::model::tls::{CertificatePem, TlsSettings, check_private_key};
use crate::secret::{Password, PrivateKeyPem};
use crate::{Error, Result};

/// A connection as submitted for creation or a test: plain, unvalidated fields.
///
/// `None` takes the documented default; numbers are wide (`i64`) so that out-of-range input
/// such as port 0 or 65536 is refused by validation rather than wrapped by a conversion. An
/// empty `description` or `application_name` means "not set". `Debug` redacts the secrets.
#[derive(Debug, Clone, Default)]
pub struct ConnectionDraft {
    /// Unique name, see [`ConnectionName`].
    pub name: String,
    /// Free text, see [`Description`]. Default: none.
    pub description: Option<String>,
    /// Default: `postgres`.
    pub engine: Option<Engine>,
    /// One host name or IP literal, see [`Host`].
    pub host: String,
    /// Default: 5432.
    pub port: Option<i64>,
    /// See [`DatabaseName`].
    pub database: String,
    /// See [`Username`].
    pub username: String,
    /// Required: 1–1,024 bytes, no NUL.
    pub password: Option<Password>,
    /// TLS settings.
    pub tls: TlsDraft,
    /// Connect options.
    pub options: OptionsDraft,
    /// Tags, see [`Tags`]. Default: none.
    pub tags: Vec<String>,
    /// Monitoring settings.
    pub monitoring: MonitoringDraft,
}

/// The TLS part of a draft.
#[derive(Debug, Clone, Default)]
pub struct TlsDraft {
    /// Default: `verify-full`.
    pub mode: Option<TlsMode>,
    /// PEM CA certificate(s); empty or `None` means the bundled public roots.
    pub ca_cert_pem: Option<String>,
    /// PEM client certificate; needs `client_key_pem`.
    pub client_cert_pem: Option<String>,
    /// PEM client private key (a secret); needs `client_cert_pem`.
    pub client_key_pem: Option<PrivateKeyPem>,
    /// Default: `prefer`.
    pub channel_binding: Option<ChannelBinding>,
}

/// The connect options of a draft.
#[derive(Debug, Clone, Default)]
pub struct OptionsDraft {
    /// 1–5,000. Default: 5,000.
    pub connect_timeout_ms: Option<i64>,
    /// Printable ASCII, ≤ 63 bytes. Default: none.
    pub application_name: Option<String>,
}

/// The monitoring settings of a draft.
#[derive(Debug, Clone, Default)]
pub struct MonitoringDraft {
    /// Default: true.
    pub enabled: Option<bool>,
    /// 10–86,400. Default: 60.
    pub interval_s: Option<i64>,
    /// 1–60,000. Default: 1,000.
    pub slow_ms: Option<i64>,
}

/// The validated, non-secret settings of a connection: everything needed to connect except the
/// secrets. Safe to log, serialize into a response, or compare.
///
/// Each field's type enforces its own rule. The rules between fields (a client certificate
/// exactly when a client key is stored; channel binding `require` needs TLS) are checked by
/// [`ConnectionDraft::validate`], [`ConnectionPatch::apply`](crate::model::ConnectionPatch::apply)
/// and [`TlsSettings::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSpec {
    /// Unique name.
    pub name: ConnectionName,
    /// Optional free text.
    pub description: Option<Description>,
    /// Database engine.
    pub engine: Engine,
    /// Host name or IP literal.
    pub host: Host,
    /// TCP port.
    pub port: Port,
    /// Database name.
    pub database: DatabaseName,
    /// User name.
    pub username: Username,
    /// TLS settings (without the client key).
    pub tls: TlsSettings,
    /// Connect options.
    pub options: ConnectOptions,
    /// Tags.
    pub tags: Tags,
    /// Monitoring settings.
    pub monitoring: Monitoring,
}

impl ConnectionSpec {
    /// Whether turning this saved spec into `to` points its stored credentials somewhere they
    /// may not be safe, so the password must be given again (SECURITY.md S12): the host, port
    /// or database change, the TLS mode or channel binding is lowered, or the CA certificate
    /// changes while `to`'s mode verifies certificates (a new trust anchor lets another server
    /// pass as this one). The one rule behind editing ([`crate::model::PatchOutcome`]) and
    /// lending secrets to a test ([`Self::may_lend_secrets_to`]).
    pub fn retargeted_by(&self, to: &Self) -> bool {
        to.host != self.host
            || to.port != self.port
            || to.database != self.database
            || to.tls.mode() < self.tls.mode()
            || to.tls.channel_binding() < self.tls.channel_binding()
            || (to.tls.ca_cert_pem() != self.tls.ca_cert_pem()
                && to.tls.mode().verifies_certificate())
    }

    /// Whether this saved spec's stored secrets (password, client key) may be lent to a test of
    /// `to` (SECURITY.md S30): the target is not changed in the sense of
    /// [`Self::retargeted_by`], and the engine and user name are the saved ones (a test is not
    /// the place to try a stored password on another account).
    pub fn may_lend_secrets_to(&self, to: &Self) -> bool {
        !self.retargeted_by(to) && to.engine == self.engine && to.username == self.username
    }
}

/// The secrets of a connection, validated. `Debug` redacts them; there is no `Display`.
#[derive(Debug, Clone)]
pub struct ConnectionSecrets {
    /// The database password.
    pub password: Password,
    /// The TLS client key, present exactly when the spec has a client certificate.
    pub client_key_pem: Option<PrivateKeyPem>,
}

impl ConnectionDraft {
    /// Validates every field and the rules between them, splitting the result into the
    /// non-secret spec and the secrets.
    ///
    /// Fields are checked in a stable order (name, description, engine, host, port, database,
    /// username, password, tls, options, tags, monitoring) and the first broken rule is
    /// returned.
    ///
    /// # Errors
    /// `InvalidInput` naming the field (dotted path, e.g. `tls.client_key_pem`, `tags[2]`); the
    /// message never contains the input.
    pub fn validate(self) -> Result<(ConnectionSpec, ConnectionSecrets)> {
        let name = ConnectionName::parse(&self.name)?;
        let description = match self.description.as_deref() {
            Some(d) => Description::parse_optional(d)?,
            None => None,
        };
        let engine = self.engine.unwrap_or_default();
        let host = Host::parse(&self.host)?;
        let port = match self.port {
            Some(p) => Port::new(p)?,
            None => Port::default(),
        };
        let database = DatabaseName::parse(&self.database)?;
        let username = Username::parse(&self.username)?;
        let password = self
            .password
            .ok_or_else(|| Error::invalid("password", "is required"))?;
        check_password(&password)?;
        let (tls, client_key_pem) = self.tls.validate()?;
        let application_name = match self.options.application_name.as_deref() {
            Some(a) => ApplicationName::parse_optional(a)?,
            None => None,
        };
        let options = ConnectOptions::new(self.options.connect_timeout_ms, application_name)?;
        let tags = Tags::parse(&self.tags)?;
        let monitoring = Monitoring::new(
            self.monitoring.enabled,
            self.monitoring.interval_s,
            self.monitoring.slow_ms,
        )?;
        let spec = ConnectionSpec {
            name,
            description,
            engine,
            host,
            port,
            database,
            username,
            tls,
            options,
            tags,
            monitoring,
        };
        let secrets = ConnectionSecrets {
            password,
            client_key_pem,
        };
        Ok((spec, secrets))
    }
}

impl TlsDraft {
    fn validate(self) -> Result<(TlsSettings, Option<PrivateKeyPem>)> {
        let mode = self.mode.unwrap_or_default();
        let ca = optional_cert("tls.ca_cert_pem", self.ca_cert_pem.as_deref())?;
        let cert = optional_cert("tls.client_cert_pem", self.client_cert_pem.as_deref())?;
        let key = self.client_key_pem.filter(|k| !k.is_empty());
        if let Some(k) = &key {
            check_private_key(k)?;
        }
        check_client_pair(cert.is_some(), key.is_some())?;
        let tls = TlsSettings::new(mode, ca, cert, self.channel_binding.unwrap_or_default())?;
        Ok((tls, key))
    }
}

/// Parses an optional certificate field; the empty string means "not set".
pub(crate) fn optional_cert(
    field: &'static str,
    pem: Option<&str>,
) -> Result<Option<CertificatePem>> {
    match pem {
        None => Ok(None),
        Some(p) if p.trim().is_empty() => Ok(None),
        Some(p) => CertificatePem::parse(field, p).map(Some),
    }
}

/// A client certificate is useless without its key and the other way round.
pub(crate) fn check_client_pair(cert_set: bool, key_set: bool) -> Result<()> {
    match (cert_set, key_set) {
        (true, false) => Err(Error::invalid(
            "tls.client_key_pem",
            "is required with a client certificate",
        )),
        (false, true) => Err(Error::invalid(
            "tls.client_cert_pem",
            "is required with a client key",
        )),
        _ => Ok(()),
    }
}
