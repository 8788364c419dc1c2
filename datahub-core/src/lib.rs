//! DataHub Connections core: everything the product does, with no knowledge of transport.
//!
//! Adapters (the HTTP server, the Python binding, the CLI) are thin layers over this crate. It
//! owns the connection model and its validation, the secret types, envelope encryption and the
//! keyring. It never depends on an HTTP framework, a JSON library or Python.
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
