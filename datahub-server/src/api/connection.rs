//! The JSON of connections: what a client sends to create, edit or test one, and what it gets
//! back. Conversions to and from the core's types live here, so the core never sees serde.
//!
//! Rules: request types refuse unknown fields; a secret (password, client key) is read straight
//! into the core's secret types; enum-like strings are parsed by the core's vocabularies, so a
//! bad value is a 400 naming the field (`tls.mode`) with the accepted values. Responses carry no
//! secret, only `password_set` and `client_key_set` — except [`RevealBody`], the one answer that
//! does.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use datahub_core::hub::Revealed;
use datahub_core::model::{
    ChannelBinding, CheckFacts, Connection, ConnectionDraft, ConnectionPatch, Engine, Health,
    MonitoringDraft, MonitoringPatch, OptionsDraft, OptionsPatch, TlsDraft, TlsMode, TlsPatch,
};
use datahub_core::model::{Check, HealthBucket, NamedGrant};
use datahub_core::rbac::{Grant, GrantLevel, Grantee};
use datahub_core::secret::{Password, PrivateKeyPem};
use datahub_core::{ConnectionId, TeamId, UserId};
use serde::de::{Deserializer, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ApiError;

/// The most grants one `PUT` may set.
pub const MAX_GRANTS: usize = 1_000;

/// A secret read from JSON straight into a core secret type: the one way the API reads a secret
/// (connection passwords and keys, sign-in and account passwords). It has no `Serialize`, and
/// `Debug` redacts it.
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// The secret inside.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de, T: From<String>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor<T>(PhantomData<T>);
        impl<T: From<String>> Visitor<'_> for SecretVisitor<T> {
            type Value = Secret<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Secret(T::from(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Secret(T::from(v)))
            }
        }
        deserializer.deserialize_string(SecretVisitor(PhantomData))
    }
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent (with `#[serde(default)]`).
fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// Parses an optional enum-like string with the core's vocabulary (the error names the field).
fn parse_opt<T: FromStr<Err = datahub_core::Error>>(
    value: Option<&str>,
) -> Result<Option<T>, ApiError> {
    value.map(str::parse).transpose().map_err(ApiError::from)
}

/// Declares a request type holding the settings a new connection and a draft test share, after
/// the type's own leading fields: one field set, so the two cannot drift apart. The password's
/// and the tags' documentation differ between the two and are given with them; every field
/// keeps its serde attributes, so `deny_unknown_fields` and the error paths (`tls.mode`) work
/// as on a hand-written struct (`#[serde(flatten)]` would lose both).
macro_rules! connection_settings {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $( $(#[$field_attr:meta])* pub $field:ident : $ty:ty, )*
        }
        password { $(#[$password_attr:meta])* }
        tags { $(#[$tags_attr:meta])* }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Deserialize, utoipa::ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$field_attr])* pub $field: $ty, )*
            /// Up to 1,000 characters.
            #[serde(default)]
            pub description: Option<String>,
            /// `postgres` (the default).
            #[serde(default)]
            pub engine: Option<String>,
            /// Host name or IP literal.
            pub host: String,
            /// 1–65535. Default: 5432.
            #[serde(default, deserialize_with = "crate::extract::whole_i64")]
            pub port: Option<i64>,
            /// Database name.
            pub database: String,
            /// Database user name.
            pub username: String,
            $(#[$password_attr])*
            #[serde(default)]
            pub password: Option<Secret<Password>>,
            /// TLS settings.
            #[serde(default, deserialize_with = "crate::extract::object")]
            pub tls: TlsInput,
            /// Connect options.
            #[serde(default, deserialize_with = "crate::extract::object")]
            pub options: OptionsInput,
            $(#[$tags_attr])*
            #[serde(default)]
            pub tags: Vec<String>,
            /// Monitoring settings.
            #[serde(default, deserialize_with = "crate::extract::object")]
            pub monitoring: MonitoringInput,
        }

        impl $name {
            /// The core's draft of the shared settings, under `name`.
            fn draft(self, name: String) -> Result<ConnectionDraft, ApiError> {
                Ok(ConnectionDraft {
                    name,
                    description: self.description,
                    engine: parse_opt::<Engine>(self.engine.as_deref())?,
                    host: self.host,
                    port: self.port,
                    database: self.database,
                    username: self.username,
                    password: self.password.map(Secret::into_inner),
                    tls: self.tls.into_draft()?,
                    options: self.options.into_draft(),
                    tags: self.tags,
                    monitoring: self.monitoring.into_draft(),
                })
            }
        }
    };
}

connection_settings! {
    /// A new connection: the data-model fields by name.
    pub struct CreateConnection {
        /// Unique, 1–64 characters of `[a-z0-9][a-z0-9_.-]*`.
        pub name: String,
    }
    password {
        /// The password (write-only; required).
        #[schema(value_type = String, format = Password)]
    }
    tags {
        /// Up to 20 tags.
    }
}

connection_settings! {
    /// Settings to test without saving. `id` names a saved connection whose stored password and
    /// client key fill the fields left blank (the caller needs `use` on it).
    pub struct DraftTest {
        /// A saved connection lending its secrets to blank fields.
        #[serde(default)]
        #[schema(value_type = Option<String>, format = Uuid)]
        pub id: Option<String>,
        /// Optional for a test. Default: `draft`.
        #[serde(default)]
        pub name: Option<String>,
    }
    password {
        /// The password; blank with `id` reuses the stored one.
        #[schema(value_type = Option<String>, format = Password)]
    }
    tags {
        /// Tags.
    }
}

/// TLS settings of a new connection or a draft.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsInput {
    /// `disable`, `allow`, `prefer`, `require`, `verify-ca` or `verify-full` (the default).
    #[serde(default)]
    pub mode: Option<String>,
    /// PEM CA certificate(s); none: the bundled public roots.
    #[serde(default)]
    pub ca_cert_pem: Option<String>,
    /// PEM client certificate (with `client_key_pem`).
    #[serde(default)]
    pub client_cert_pem: Option<String>,
    /// PEM client private key (write-only).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub client_key_pem: Option<Secret<PrivateKeyPem>>,
    /// `disable`, `prefer` (the default) or `require`.
    #[serde(default)]
    pub channel_binding: Option<String>,
}

/// Connect options of a new connection or a draft.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionsInput {
    /// 1–5000. Default: 5000.
    #[serde(default, deserialize_with = "crate::extract::whole_i64")]
    pub connect_timeout_ms: Option<i64>,
    /// Printable ASCII, up to 63 bytes.
    #[serde(default)]
    pub application_name: Option<String>,
}

/// Monitoring settings of a new connection or a draft.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitoringInput {
    /// Default: true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// 10–86400. Default: 60.
    #[serde(default, deserialize_with = "crate::extract::whole_i64")]
    pub interval_s: Option<i64>,
    /// 1–60000. Default: 1000.
    #[serde(default, deserialize_with = "crate::extract::whole_i64")]
    pub slow_ms: Option<i64>,
}

impl TlsInput {
    fn into_draft(self) -> Result<TlsDraft, ApiError> {
        Ok(TlsDraft {
            mode: parse_opt::<TlsMode>(self.mode.as_deref())?,
            ca_cert_pem: self.ca_cert_pem,
            client_cert_pem: self.client_cert_pem,
            client_key_pem: self.client_key_pem.map(Secret::into_inner),
            channel_binding: parse_opt::<ChannelBinding>(self.channel_binding.as_deref())?,
        })
    }
}

impl OptionsInput {
    fn into_draft(self) -> OptionsDraft {
        OptionsDraft {
            connect_timeout_ms: self.connect_timeout_ms,
            application_name: self.application_name,
        }
    }
}

impl MonitoringInput {
    fn into_draft(self) -> MonitoringDraft {
        MonitoringDraft {
            enabled: self.enabled,
            interval_s: self.interval_s,
            slow_ms: self.slow_ms,
        }
    }
}

impl CreateConnection {
    /// The core's draft.
    ///
    /// # Errors
    /// 400 naming the field for a bad `engine`, `tls.mode` or `tls.channel_binding`; the other
    /// rules are the core's, checked when it validates the draft.
    pub fn into_draft(mut self) -> Result<ConnectionDraft, ApiError> {
        let name = std::mem::take(&mut self.name);
        self.draft(name)
    }
}

impl DraftTest {
    /// The core's draft and the saved connection to reuse secrets from.
    ///
    /// # Errors
    /// 400 on `id` when it is not a UUID, and as [`CreateConnection::into_draft`].
    pub fn into_draft(mut self) -> Result<(ConnectionDraft, Option<ConnectionId>), ApiError> {
        let reuse = self
            .id
            .take()
            .as_deref()
            .map(ConnectionId::from_str)
            .transpose()?;
        let name = self
            .name
            .take()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "draft".to_owned());
        Ok((self.draft(name)?, reuse))
    }
}

/// An edit: every field is optional and an omitted one keeps its value. An omitted password
/// keeps the stored one; an empty one is refused. Changing `host`, `port`, `database` or
/// lowering TLS needs the password again. `null` removes `description`, `tls.ca_cert_pem`,
/// `tls.client_cert_pem` with `tls.client_key_pem`, and `options.application_name`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchConnection {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New description; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// New engine.
    #[serde(default)]
    pub engine: Option<String>,
    /// New host.
    #[serde(default)]
    pub host: Option<String>,
    /// New port.
    #[serde(default, deserialize_with = "crate::extract::whole_i64")]
    pub port: Option<i64>,
    /// New database.
    #[serde(default)]
    pub database: Option<String>,
    /// New user name.
    #[serde(default)]
    pub username: Option<String>,
    /// New password (write-only); omit to keep the stored one.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<Secret<Password>>,
    /// TLS changes.
    #[serde(default, deserialize_with = "crate::extract::object")]
    pub tls: TlsPatchInput,
    /// Connect option changes.
    #[serde(default, deserialize_with = "crate::extract::object")]
    pub options: OptionsPatchInput,
    /// New tags, replacing the current ones.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Monitoring changes.
    #[serde(default, deserialize_with = "crate::extract::object")]
    pub monitoring: MonitoringInput,
}

/// TLS changes of an edit.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsPatchInput {
    /// New mode.
    #[serde(default)]
    pub mode: Option<String>,
    /// New CA certificate(s); `null` reverts to the bundled public roots.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub ca_cert_pem: Option<Option<String>>,
    /// New client certificate; `null` removes it (remove the key too).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub client_cert_pem: Option<Option<String>>,
    /// New client key (write-only); omit to keep, `null` to remove, never empty.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = Password)]
    pub client_key_pem: Option<Option<Secret<PrivateKeyPem>>>,
    /// New channel binding.
    #[serde(default)]
    pub channel_binding: Option<String>,
}

/// Connect option changes of an edit.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionsPatchInput {
    /// New connect timeout.
    #[serde(default, deserialize_with = "crate::extract::whole_i64")]
    pub connect_timeout_ms: Option<i64>,
    /// New application name; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub application_name: Option<Option<String>>,
}

impl PatchConnection {
    /// The core's patch.
    ///
    /// # Errors
    /// 400 naming the field for a bad `engine`, `tls.mode` or `tls.channel_binding`.
    pub fn into_patch(self) -> Result<ConnectionPatch, ApiError> {
        Ok(ConnectionPatch {
            name: self.name,
            description: self.description,
            engine: parse_opt::<Engine>(self.engine.as_deref())?,
            host: self.host,
            port: self.port,
            database: self.database,
            username: self.username,
            password: self.password.map(Secret::into_inner),
            tls: TlsPatch {
                mode: parse_opt::<TlsMode>(self.tls.mode.as_deref())?,
                ca_cert_pem: self.tls.ca_cert_pem,
                client_cert_pem: self.tls.client_cert_pem,
                client_key_pem: self.tls.client_key_pem.map(|k| k.map(Secret::into_inner)),
                channel_binding: parse_opt::<ChannelBinding>(self.tls.channel_binding.as_deref())?,
            },
            options: OptionsPatch {
                connect_timeout_ms: self.options.connect_timeout_ms,
                application_name: self.options.application_name,
            },
            tags: self.tags,
            monitoring: MonitoringPatch {
                enabled: self.monitoring.enabled,
                interval_s: self.monitoring.interval_s,
                slow_ms: self.monitoring.slow_ms,
            },
        })
    }
}

/// A saved connection as answered: no secret, only whether one is stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConnectionOut {
    /// Server-assigned id.
    #[schema(format = Uuid)]
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// `postgres`.
    pub engine: &'static str,
    /// Host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database name.
    pub database: String,
    /// Database user name.
    pub username: String,
    /// Whether a password is stored (always, once saved).
    pub password_set: bool,
    /// Whether a TLS client key is stored.
    pub client_key_set: bool,
    /// TLS settings, without the key.
    pub tls: TlsOut,
    /// Connect options.
    pub options: OptionsOut,
    /// Tags.
    pub tags: Vec<String>,
    /// Monitoring settings.
    pub monitoring: MonitoringOut,
    /// The user who owns it and so holds `manage` on it (its creator, unless an admin created
    /// it for them); `null` when no user owns it: a connection the local operator created with
    /// the CLI, which admins manage and others reach through grants.
    #[schema(format = Uuid)]
    pub owner: Option<String>,
    /// Bumped on every change; send it back in `If-Match` to edit or delete.
    pub version: u64,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The derived health.
    pub health: HealthOut,
    /// The caller's own grant level on it, `view`, `use` or `manage` (admins and the owner
    /// manage), so a client offers only what the caller may do; answered by
    /// `GET /connections/{id}` only. A read-only token still may only read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<&'static str>,
    /// What the latest check that reached the server (its probe query answered) saw; `null`
    /// until a check did. Monitor checks record them; a "Test now" does not.
    pub facts: Option<FactsOut>,
}

/// What the latest check that reached the server saw of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FactsOut {
    /// When that check finished.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The server's facts from the probe query.
    pub server: Option<ServerFactsOut>,
    /// The TLS session's facts; `null` when the connection was not encrypted.
    pub tls: Option<TlsFactsOut>,
}

/// The server as a check's probe query saw it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServerFactsOut {
    /// `server_version`, e.g. `16.4`.
    pub version: String,
    /// Whether the server is a standby (`pg_is_in_recovery()`).
    pub in_recovery: bool,
    /// Client connections open on the server.
    pub connections_used: Option<u32>,
    /// The server's `max_connections`.
    pub max_connections: Option<u32>,
}

/// The TLS session as a check's handshake saw it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TlsFactsOut {
    /// The protocol version, e.g. `TLSv1.3`.
    pub protocol: Option<String>,
    /// The cipher suite's IANA name, e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: Option<String>,
    /// The server certificate's subject.
    pub peer_subject: Option<String>,
    /// When the server certificate expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub peer_not_after: Option<OffsetDateTime>,
}

impl From<&CheckFacts> for FactsOut {
    fn from(f: &CheckFacts) -> Self {
        Self {
            at: f.at,
            server: f.server.as_ref().map(|s| ServerFactsOut {
                version: s.version.clone(),
                in_recovery: s.in_recovery,
                connections_used: s.connections_used,
                max_connections: s.max_connections,
            }),
            tls: f.tls.as_ref().map(|t| TlsFactsOut {
                protocol: t.protocol.clone(),
                cipher: t.cipher.clone(),
                peer_subject: t.peer_subject.clone(),
                peer_not_after: t.peer_not_after,
            }),
        }
    }
}

/// TLS settings as answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TlsOut {
    /// The libpq mode.
    pub mode: &'static str,
    /// PEM CA certificate(s), if set.
    pub ca_cert_pem: Option<String>,
    /// PEM client certificate, if set.
    pub client_cert_pem: Option<String>,
    /// `disable`, `prefer` or `require`.
    pub channel_binding: &'static str,
}

/// Connect options as answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OptionsOut {
    /// Connect timeout in milliseconds.
    pub connect_timeout_ms: u32,
    /// Application name, if set.
    pub application_name: Option<String>,
}

/// Monitoring settings as answered.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MonitoringOut {
    /// Whether the monitor checks it.
    pub enabled: bool,
    /// Seconds between checks.
    pub interval_s: u32,
    /// Latency above which a check counts as slow.
    pub slow_ms: u32,
}

/// The derived health of a connection.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HealthOut {
    /// `unknown`, `healthy`, `degraded` or `down`.
    pub status: &'static str,
    /// When the last check finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub checked_at: Option<OffsetDateTime>,
    /// The latency of the last successful check, in milliseconds.
    pub latency_ms: Option<u32>,
    /// Why the last check failed.
    pub error_kind: Option<&'static str>,
    /// Share of successful checks in the last 24 hours (0.0–1.0).
    pub uptime_24h: Option<f64>,
}

impl From<&Health> for HealthOut {
    fn from(h: &Health) -> Self {
        Self {
            status: h.status.as_str(),
            checked_at: h.checked_at,
            latency_ms: h.latency_ms,
            error_kind: h.error_kind.map(|k| k.as_str()),
            uptime_24h: h.uptime_24h,
        }
    }
}

impl From<&Connection> for ConnectionOut {
    fn from(c: &Connection) -> Self {
        let spec = &c.spec;
        Self {
            id: c.id.to_string(),
            name: spec.name.as_str().to_owned(),
            description: spec.description.as_ref().map(|d| d.as_str().to_owned()),
            engine: spec.engine.as_str(),
            host: spec.host.as_str().to_owned(),
            port: spec.port.get(),
            database: spec.database.as_str().to_owned(),
            username: spec.username.as_str().to_owned(),
            password_set: c.password_set,
            // A client certificate is stored exactly when its key is.
            client_key_set: spec.tls.client_cert_pem().is_some(),
            tls: TlsOut {
                mode: spec.tls.mode().as_str(),
                ca_cert_pem: spec.tls.ca_cert_pem().map(|p| p.as_str().to_owned()),
                client_cert_pem: spec.tls.client_cert_pem().map(|p| p.as_str().to_owned()),
                channel_binding: spec.tls.channel_binding().as_str(),
            },
            options: OptionsOut {
                connect_timeout_ms: spec.options.connect_timeout_ms(),
                application_name: spec
                    .options
                    .application_name()
                    .map(|a| a.as_str().to_owned()),
            },
            tags: spec
                .tags
                .as_slice()
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            monitoring: MonitoringOut {
                enabled: spec.monitoring.enabled(),
                interval_s: spec.monitoring.interval_s(),
                slow_ms: spec.monitoring.slow_ms(),
            },
            owner: owner_of(c),
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
            health: HealthOut::from(&c.health),
            access: None,
            facts: c.health.facts.as_ref().map(FactsOut::from),
        }
    }
}

/// The owner as answered: `None` for the nil id, which marks a connection no user owns (the
/// core gives the local operator the nil id, and an id of no user must not pass for one).
pub fn owner_of(c: &Connection) -> Option<String> {
    c.owner_user().map(|owner| owner.to_string())
}

/// One page of connections.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionPage {
    /// The connections of this page.
    pub items: Vec<ConnectionOut>,
    /// How many match in all (only those the caller may view).
    pub total: u64,
    /// This page, from 1.
    pub page: u32,
    /// The page size.
    pub per_page: u32,
}

/// The grants on a connection as `PUT` takes them: the new set, replacing the old.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantsBody {
    /// Each grant names exactly one of `user_id` and `team_id`.
    #[serde(deserialize_with = "crate::extract::objects")]
    pub grants: Vec<GrantItem>,
}

/// One grant as `PUT` takes it: exactly one of `user_id` and `team_id`, and the level.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantItem {
    /// The user it is for.
    #[serde(default)]
    #[schema(format = Uuid)]
    pub user_id: Option<String>,
    /// The team it is for.
    #[serde(default)]
    #[schema(format = Uuid)]
    pub team_id: Option<String>,
    /// `view`, `use` or `manage`.
    pub level: String,
}

impl GrantsBody {
    /// The grants as the core's.
    ///
    /// # Errors
    /// 400 naming the field (`grants[2].user_id`, `grants[0].level`) for a bad id or level, a
    /// grant naming both or neither grantee, or more than [`MAX_GRANTS`].
    pub fn into_grants(self) -> Result<Vec<Grant>, ApiError> {
        if self.grants.len() > MAX_GRANTS {
            return Err(ApiError::invalid(
                "grants",
                format!("must have at most {MAX_GRANTS} grants"),
            ));
        }
        self.grants
            .into_iter()
            .enumerate()
            .map(|(i, g)| {
                let at = |field: &str| format!("grants[{i}].{field}");
                let grantee = match (g.user_id.as_deref(), g.team_id.as_deref()) {
                    (Some(u), None) => Grantee::User(
                        UserId::from_str(u)
                            .map_err(|_| ApiError::invalid(at("user_id"), "must be a UUID"))?,
                    ),
                    (None, Some(t)) => Grantee::Team(
                        TeamId::from_str(t)
                            .map_err(|_| ApiError::invalid(at("team_id"), "must be a UUID"))?,
                    ),
                    _ => {
                        return Err(ApiError::invalid(
                            at("user_id"),
                            "give exactly one of user_id and team_id",
                        ));
                    }
                };
                let level = GrantLevel::from_str(&g.level).map_err(|_| {
                    ApiError::invalid(at("level"), "must be one of view, use, manage")
                })?;
                Ok(Grant { grantee, level })
            })
            .collect()
    }
}

/// The grants on a connection as answered (`GET`, and `PUT`'s answer): the shape `PUT` takes,
/// each grant with its grantee's name too.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GrantsOut {
    /// Users' grants first, then teams'.
    pub grants: Vec<GrantOut>,
}

/// One grant as answered.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GrantOut {
    /// The user it is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Uuid)]
    pub user_id: Option<String>,
    /// The team it is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Uuid)]
    pub team_id: Option<String>,
    /// `view`, `use` or `manage`.
    pub level: &'static str,
    /// The user's login name or the team's name (output only: `PUT` does not take it).
    pub name: String,
}

impl GrantsOut {
    /// The core's grants as JSON.
    pub fn of(grants: &[NamedGrant]) -> Self {
        Self {
            grants: grants
                .iter()
                .map(|g| {
                    let (user_id, team_id) = match g.grant.grantee {
                        Grantee::User(u) => (Some(u.to_string()), None),
                        Grantee::Team(t) => (None, Some(t.to_string())),
                    };
                    GrantOut {
                        user_id,
                        team_id,
                        level: g.grant.level.as_str(),
                        name: g.name.clone(),
                    }
                })
                .collect(),
        }
    }
}

/// A connection's check history with its current health.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthHistoryOut {
    /// The current health with the 24 h uptime.
    pub health: HealthOut,
    /// The checks asked for, newest first.
    pub checks: Vec<CheckOut>,
    /// The 5-minute buckets starting at or after `since` of the checks already rolled up
    /// (older than the monitor's detail window, 24 h by default), oldest first; not counted
    /// in `limit`. A check is in `checks` or in a bucket, never both.
    pub buckets: Vec<BucketOut>,
}

impl From<&datahub_core::hub::HealthHistory> for HealthHistoryOut {
    fn from(history: &datahub_core::hub::HealthHistory) -> Self {
        Self {
            health: (&history.health).into(),
            checks: history.checks.iter().map(Into::into).collect(),
            buckets: history.buckets.iter().map(Into::into).collect(),
        }
    }
}

/// Five minutes of checks rolled up.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BucketOut {
    /// When the five minutes start.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// Checks that finished in them.
    pub checks: u32,
    /// Of those, the ones that failed.
    pub failures: u32,
    /// The median latency of the successful ones; `null` when none succeeded.
    pub latency_p50_ms: Option<u32>,
    /// The highest latency of the successful ones; `null` when none succeeded.
    pub latency_max_ms: Option<u32>,
    /// The worst status derived after any of them.
    pub worst: &'static str,
}

impl From<&HealthBucket> for BucketOut {
    fn from(b: &HealthBucket) -> Self {
        Self {
            start: b.start,
            checks: b.checks,
            failures: b.failures,
            latency_p50_ms: b.latency_p50_ms,
            latency_max_ms: b.latency_max_ms,
            worst: b.worst.as_str(),
        }
    }
}

/// One recorded check.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckOut {
    /// When it finished.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Whether it succeeded.
    pub ok: bool,
    /// Its total time in milliseconds.
    pub latency_ms: u32,
    /// Why it failed.
    pub error_kind: Option<&'static str>,
    /// The step it failed in (`resolve`, `policy`, `tcp`, `tls`, `startup`, `auth`, `query`,
    /// `config`); `null` on success, and for checks recorded before steps were.
    pub step: Option<&'static str>,
    /// What to check, a fixed sentence for the failure's kind and step; `null` on success.
    pub hint: Option<&'static str>,
    /// The status derived after it.
    pub status: &'static str,
}

impl From<&Check> for CheckOut {
    fn from(c: &Check) -> Self {
        Self {
            at: c.at,
            ok: c.ok,
            latency_ms: c.latency_ms,
            error_kind: c.error_kind.map(|k| k.as_str()),
            step: c.step.map(|s| s.as_str()),
            hint: c.error_kind.map(|k| k.hint(c.step)),
            status: c.status.as_str(),
        }
    }
}

/// The answer of `reveal`: the one response that carries secrets. Documentation only; the
/// handler answers with [`RevealBody`], which serializes the core's secret types at the last
/// moment.
#[derive(Debug, utoipa::ToSchema)]
pub struct RevealResponse {
    /// The database user name.
    pub username: String,
    /// The password.
    #[schema(format = Password)]
    pub password: String,
    /// A libpq URL with every setting that fits in one, password included.
    pub dsn: String,
    /// The TLS client key, when one is stored.
    #[schema(format = Password)]
    pub client_key_pem: Option<String>,
}

/// The decrypted credentials of a connection, serialized as [`RevealResponse`]. `Debug`
/// redacts (the core's types do).
#[derive(Debug)]
pub struct RevealBody(pub Revealed);

impl Serialize for RevealBody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = &self.0;
        let mut s = serializer.serialize_struct("RevealResponse", 4)?;
        s.serialize_field("username", &r.username)?;
        s.serialize_field("password", r.password.expose_secret())?;
        s.serialize_field("dsn", r.dsn.expose_secret())?;
        s.serialize_field(
            "client_key_pem",
            &r.client_key_pem.as_ref().map(|k| k.expose_secret()),
        )?;
        s.end()
    }
}
