//! The connection model and every field rule of DESIGN.md's data model.
//!
//! This module owns what a connection *is*: the validated field types ([`ConnectionName`],
//! [`Host`], [`Port`], …), the closed vocabularies ([`TlsMode`], [`FailureKind`], …), what a
//! user submits ([`ConnectionDraft`], [`ConnectionPatch`]) and what validation makes of it
//! ([`ConnectionSpec`], [`ConnectionSecrets`], [`PatchOutcome`]), and a saved [`Connection`]
//! with its [`Health`] and its recorded [`Check`]s.
//!
//! It is also the Hub's vocabulary beyond connections, the values the Hub takes and returns and
//! the store persists: lists and pages ([`ListQuery`], [`SortKey`], [`AuditQuery`], [`Page`],
//! [`Visibility`]), accounts ([`User`], [`Team`], [`TokenInfo`], [`Directory`],
//! [`NamedGrant`]) and the admin's [`TargetPolicy`]. Adapters name these from here, never from
//! the store.
//!
//! Preconditions live in types: a value of a validated type passed its rule, so no other code
//! re-checks it. Secrets stay in [`crate::secret`] types, apart from the spec.
//!
//! It must never: do I/O (store, network, files), decide access, or put a value it refused into
//! an error message. Every refusal is an `InvalidInput` error naming the field by its dotted
//! path (`tls.mode`, `tags[3]`), with a message that does not repeat the input, which may be
//! hostile (terminal escapes, bidi controls) or secret (a password pasted into the wrong field).

mod account;
mod connection;
mod draft;
mod enums;
mod fields;
mod host;
mod options;
mod patch;
mod policy;
mod query;
mod text;
mod tls;

pub use account::{
    Directory, DirectoryTeam, DirectoryUser, NamedGrant, TOKEN_TOUCH_INTERVAL, Team, TokenInfo,
    User,
};
pub use connection::{
    Check, CheckFacts, Connection, Health, HealthBucket, MAX_FACT_CHARS, ServerInfo, TlsInfo,
    bounded_fact,
};
pub use draft::{
    ConnectionDraft, ConnectionSecrets, ConnectionSpec, MonitoringDraft, OptionsDraft, TlsDraft,
};
pub use enums::{ChannelBinding, Engine, FailureKind, HealthStatus, StepName, TlsMode};
pub use fields::{
    ApplicationName, ConnectionName, DatabaseName, Description, PASSWORD_MAX_BYTES, Port, Tag,
    Tags, Username, check_password,
};
pub use host::{HOST_MAX_LEN, Host};
pub use options::{ConnectOptions, Monitoring};
pub use patch::{
    ConnectionPatch, MonitoringPatch, OptionsPatch, PatchOutcome, SecretsUpdate, TlsPatch,
};
pub use policy::TargetPolicy;
pub use query::{AuditQuery, ListQuery, MAX_PER_PAGE, Page, SortKey, Visibility};
pub use tls::{CertificatePem, PEM_MAX_BYTES, TlsSettings, check_private_key};
