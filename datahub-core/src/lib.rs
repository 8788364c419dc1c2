//! DataHub Connections core: everything the product does, with no knowledge of transport.
//!
//! Adapters (the HTTP server, the Python binding, the CLI) are thin layers over this crate. It
//! owns the connection model and its validation, the secret types, envelope encryption and the
//! keyring. It never depends on an HTTP framework, a JSON library or Python.
//!
//! Adapters use [`hub::Hub`], the facade that checks permission, does the work and writes the
//! audit row, and the values it takes and returns ([`model`]); the rest is what the Hub is made
//! of:
//!
//! - [`model`]: the connection model, its field rules, and the Hub's vocabulary (queries,
//!   pages, health, policy, accounts).
//! - [`secret`]: the secret types (`secrecy` wrappers, zeroized, redacted `Debug`).
//! - [`dsn`]: libpq URLs and `key=value` strings into a draft, and redaction for logs.
//! - [`crypto`]: envelope encryption (AES-256-GCM data keys wrapped by the keyring's KEKs).
//! - [`keys`]: key management over a store: start-up checks, online rotation, retirement.
//! - [`store`]: the storage contract and its SQLite and PostgreSQL backends.
//! - [`rbac`]: the permission table, principals and the proofs a check yields.
//! - [`auth`]: passwords (argon2id), API tokens and browser sessions.
//! - [`audit`]: audit entries, the hash chain and its verification.
//! - [`limit`]: the keyed token-bucket limiter behind every rate limit.
//! - [`net`]: the one dialer: resolution, the target policy, deadlines.
//! - [`probe`]: the prober (a connection test within a hard budget) and pools.
//! - [`monitor`]: the health monitor: scheduling, hysteresis, uptime, events.
//! - [`hub`]: the facade.
//!
//! [`Error`] is the one error type; [`ErrorKind`] is what adapters map to their own.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod auth;
pub mod crypto;
pub mod dsn;
mod error;
pub mod hub;
mod id;
pub mod keys;
pub mod limit;
pub mod model;
pub mod monitor;
pub mod net;
pub mod probe;
pub mod rbac;
pub mod secret;
pub mod store;

pub use error::{Error, ErrorKind, Result};
pub use id::{ConnectionId, SessionId, TeamId, TokenId, UserId};
