//! Edits of a saved connection: [`ConnectionPatch`] and what applying it yields
//! ([`PatchOutcome`]): the new spec, the secrets to replace, the names of the changed fields and
//! whether the password must be given again.

use crate::model::draft::{ConnectionSpec, check_client_pair, optional_cert};
use crate::model::enums::{ChannelBinding, Engine, TlsMode};
use crate::model::fields::{
    ApplicationName, ConnectionName, DatabaseName, Description, Port, Tags, Username,
    check_password,
};
use crate::model::host::Host;
use crate::model::options::{ConnectOptions, Monitoring};
use crate::model::tls::{TlsSettings, check_private_key};
use crate::secret::{Password, PrivateKeyPem};
use crate::{Error, Result};

/// A partial edit of a saved connection: `None` keeps the current value.
///
/// Where a value can be removed the field is `Option<Option<_>>`: `Some(None)` (or an empty
/// string) removes it. An omitted password keeps the stored one (SECURITY.md S11); a given one
/// must be valid, so an empty password is an error, never "keep". `Debug` redacts the secrets.
#[derive(Debug, Clone, Default)]
pub struct ConnectionPatch {
    /// New name.
    pub name: Option<String>,
    /// New description; `Some(None)` or `Some(Some(""))` removes it.
    pub description: Option<Option<String>>,
    /// New engine.
    pub engine: Option<Engine>,
    /// New host (the password must then be given again).
    pub host: Option<String>,
    /// New port (the password must then be given again).
    pub port: Option<i64>,
    /// New database (the password must then be given again).
    pub database: Option<String>,
    /// New user name.
    pub username: Option<String>,
    /// New password; `None` keeps the stored one.
    pub password: Option<Password>,
    /// TLS changes.
    pub tls: TlsPatch,
    /// Connect option changes.
    pub options: OptionsPatch,
    /// New tags, replacing the current ones.
    pub tags: Option<Vec<String>>,
    /// Monitoring changes.
    pub monitoring: MonitoringPatch,
}

/// TLS changes of a patch.
#[derive(Debug, Clone, Default)]
pub struct TlsPatch {
    /// New mode; lowering it requires the password again.
    pub mode: Option<TlsMode>,
    /// New CA certificate(s); `Some(None)` (or empty) reverts to the bundled public roots.
    pub ca_cert_pem: Option<Option<String>>,
    /// New client certificate; `Some(None)` (or empty) removes it. Certificate and key are
    /// removed together: remove both in the same patch.
    pub client_cert_pem: Option<Option<String>>,
    /// New client key; `Some(None)` removes it (with the certificate). An empty key is
    /// an error, so a form that sends `""` for "unchanged" cannot wipe the stored key.
    pub client_key_pem: Option<Option<PrivateKeyPem>>,
    /// New channel binding; lowering it requires the password again.
    pub channel_binding: Option<ChannelBinding>,
}

/// Connect option changes of a patch.
#[derive(Debug, Clone, Default)]
pub struct OptionsPatch {
    /// New connect timeout in milliseconds.
    pub connect_timeout_ms: Option<i64>,
    /// New application name; `Some(None)` (or empty) removes it.
    pub application_name: Option<Option<String>>,
}

/// Monitoring changes of a patch.
#[derive(Debug, Clone, Default)]
pub struct MonitoringPatch {
    /// Turn monitoring on or off.
    pub enabled: Option<bool>,
    /// New interval in seconds.
    pub interval_s: Option<i64>,
    /// New slow threshold in milliseconds.
    pub slow_ms: Option<i64>,
}

/// The secrets a patch replaces. `None` keeps the stored value. `Debug` redacts.
#[derive(Debug, Clone, Default)]
pub struct SecretsUpdate {
    /// A new password to store.
    pub password: Option<Password>,
    /// `Some(Some(key))` stores a new client key, `Some(None)` deletes the stored one.
    pub client_key_pem: Option<Option<PrivateKeyPem>>,
}

/// The result of applying a [`ConnectionPatch`] to the current spec.
#[derive(Debug, Clone)]
pub struct PatchOutcome {
    /// The complete new spec.
    pub spec: ConnectionSpec,
    /// The secrets to replace.
    pub secrets: SecretsUpdate,
    changed: Vec<&'static str>,
    needs_password: bool,
}

impl PatchOutcome {
    /// The dotted names of the fields whose value changes, in a stable order (e.g. `host`,
    /// `tls.mode`, `password`). Names only, never values: this feeds the audit log. A secret
    /// counts as changed whenever a new value is given, as it cannot be compared.
    pub fn changed(&self) -> &[&'static str] {
        &self.changed
    }

    /// Whether nothing changes.
    pub fn is_unchanged(&self) -> bool {
        self.changed.is_empty()
    }

    /// Whether the patch points the stored credentials somewhere they may not be safe, so the
    /// password must be given again (SECURITY.md S12): host, port or database change, the TLS
    /// mode or channel binding is lowered, or the CA certificate changes while the new mode
    /// verifies certificates (a new trust anchor lets another server pass as this one).
    pub fn needs_password(&self) -> bool {
        self.needs_password
    }

    /// Whether the patch carries a new password.
    pub fn password_supplied(&self) -> bool {
        self.secrets.password.is_some()
    }

    /// The S12 rule as a check: fails when [`needs_password`](Self::needs_password) holds and
    /// no password was given.
    ///
    /// # Errors
    /// `InvalidInput` on the field `password`.
    pub fn check_password_requirement(&self) -> Result<()> {
        if self.needs_password && !self.password_supplied() {
            return Err(Error::invalid(
                "password",
                "must be given again when host, port, database or TLS security change",
            ));
        }
        Ok(())
    }
}

impl ConnectionPatch {
    /// Validates the given fields and applies them to `current`.
    ///
    /// Fields are checked in the same stable order as
    /// [`ConnectionDraft::validate`](crate::model::ConnectionDraft::validate), then the rules
    /// between fields on the result. Enforcing [`PatchOutcome::needs_password`] is the caller's
    /// job ([`PatchOutcome::check_password_requirement`]), as is the version check.
    ///
    /// # Errors
    /// `InvalidInput` naming the first bad field; the message never contains the input.
    pub fn apply(self, current: &ConnectionSpec) -> Result<PatchOutcome> {
        let mut changed = Vec::new();
        let mut mark = |name: &'static str, differs: bool| {
            if differs {
                changed.push(name);
            }
        };

        let name = match &self.name {
            Some(n) => ConnectionName::parse(n)?,
            None => current.name.clone(),
        };
        mark("name", name != current.name);

        let description = match &self.description {
            Some(Some(d)) => Description::parse_optional(d)?,
            Some(None) => None,
            None => current.description.clone(),
        };
        mark("description", description != current.description);

        let engine = self.engine.unwrap_or(current.engine);
        mark("engine", engine != current.engine);

        let host = match &self.host {
            Some(h) => Host::parse(h)?,
            None => current.host.clone(),
        };
        mark("host", host != current.host);

        let port = match self.port {
            Some(p) => Port::new(p)?,
            None => current.port,
        };
        mark("port", port != current.port);

        let database = match &self.database {
            Some(d) => DatabaseName::parse(d)?,
            None => current.database.clone(),
        };
        mark("database", database != current.database);

        let username = match &self.username {
            Some(u) => Username::parse(u)?,
            None => current.username.clone(),
        };
        mark("username", username != current.username);

        if let Some(p) = &self.password {
            check_password(p)?;
        }
        mark("password", self.password.is_some());

        let cur_tls = &current.tls;
        let mode = self.tls.mode.unwrap_or(cur_tls.mode());
        mark("tls.mode", mode != cur_tls.mode());

        let ca = match &self.tls.ca_cert_pem {
            Some(pem) => optional_cert("tls.ca_cert_pem", pem.as_deref())?,
            None => cur_tls.ca_cert_pem().cloned(),
        };
        let ca_changed = ca.as_ref() != cur_tls.ca_cert_pem();
        mark("tls.ca_cert_pem", ca_changed);

        let cert = match &self.tls.client_cert_pem {
            Some(pem) => optional_cert("tls.client_cert_pem", pem.as_deref())?,
            None => cur_tls.client_cert_pem().cloned(),
        };
        mark(
            "tls.client_cert_pem",
            cert.as_ref() != cur_tls.client_cert_pem(),
        );

        // A client certificate is stored exactly when a client key is.
        let key_stored = cur_tls.client_cert_pem().is_some();
        let key_set_after = match &self.tls.client_key_pem {
            Some(Some(k)) => {
                if k.is_empty() {
                    return Err(Error::invalid(
                        "tls.client_key_pem",
                        "must not be empty; omit it to keep the stored key, or send null to \
                         remove it",
                    ));
                }
                check_private_key(k)?;
                true
            }
            Some(None) => false,
            None => key_stored,
        };
        mark(
            "tls.client_key_pem",
            match &self.tls.client_key_pem {
                Some(Some(_)) => true,
                Some(None) => key_stored,
                None => false,
            },
        );

        let channel_binding = self
            .tls
            .channel_binding
            .unwrap_or(cur_tls.channel_binding());
        mark(
            "tls.channel_binding",
            channel_binding != cur_tls.channel_binding(),
        );

        let connect_timeout_ms = self
            .options
            .connect_timeout_ms
            .or(Some(i64::from(current.options.connect_timeout_ms())));
        let application_name = match &self.options.application_name {
            Some(Some(a)) => ApplicationName::parse_optional(a)?,
            Some(None) => None,
            None => current.options.application_name().cloned(),
        };
        let options = ConnectOptions::new(connect_timeout_ms, application_name)?;
        mark(
            "options.connect_timeout_ms",
            options.connect_timeout_ms() != current.options.connect_timeout_ms(),
        );
        mark(
            "options.application_name",
            options.application_name() != current.options.application_name(),
        );

        let tags = match &self.tags {
            Some(t) => Tags::parse(t)?,
            None => current.tags.clone(),
        };
        mark("tags", tags != current.tags);

        let cur_mon = current.monitoring;
        let monitoring = Monitoring::new(
            Some(self.monitoring.enabled.unwrap_or(cur_mon.enabled())),
            Some(
                self.monitoring
                    .interval_s
                    .map_or(i64::from(cur_mon.interval_s()), |v| v),
            ),
            Some(
                self.monitoring
                    .slow_ms
                    .map_or(i64::from(cur_mon.slow_ms()), |v| v),
            ),
        )?;
        mark(
            "monitoring.enabled",
            monitoring.enabled() != cur_mon.enabled(),
        );
        mark(
            "monitoring.interval_s",
            monitoring.interval_s() != cur_mon.interval_s(),
        );
        mark(
            "monitoring.slow_ms",
            monitoring.slow_ms() != cur_mon.slow_ms(),
        );

        // Rules between fields, on the result.
        check_client_pair(cert.is_some(), key_set_after)?;
        let tls = TlsSettings::new(mode, ca, cert, channel_binding)?;

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
        let needs_password = current.retargeted_by(&spec);
        let secrets = SecretsUpdate {
            password: self.password,
            client_key_pem: self.tls.client_key_pem,
        };
        Ok(PatchOutcome {
            spec,
            secrets,
            changed,
            needs_password,
        })
    }
}
