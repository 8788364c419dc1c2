//! Test kit for DataHub Connections: real, throwaway PostgreSQL clusters and loopback fault
//! proxies. Never a mock.
//!
//! - [`PgCluster`] (module `cluster`) starts a cluster from the machine's PostgreSQL binaries
//!   (`PATH`, then `/usr/lib/postgresql/<version>/bin`, highest first) on a free `127.0.0.1`
//!   port, optionally with TLS from certificates generated at run time ([`ServerCert`] picks the
//!   good certificate or a bad variant), with users per authentication method ([`User`],
//!   [`AuthMethod`], [`Transport`]) and databases. Dropping it stops the server and deletes its
//!   folder. When the tests run as root the server runs as the `postgres` system user.
//! - [`FaultProxy`] (module `proxy`) misbehaves on purpose ([`Fault`]): never answers, accepts
//!   and stalls, stalls, drips or resets part-way through a forwarded connection, and counts the
//!   sockets it holds so tests can prove the code under test closes its connections.
//! - [`FakeTarget`] (module `fake`) is a cheap loopback PostgreSQL target for scale runs: trust
//!   start-up without TLS and the prober's facts query answered from memory, so thousands of
//!   checks a second cost almost nothing; a database can be made to refuse start-ups (down).
//! - [`canary`] captures every `tracing` line and lists the encoded forms of a secret, for the
//!   tests proving a secret never shows (SECURITY.md S8).
//! - [`Error`] (module `error`) is the kit's one error type, classified by [`ErrorKind`].
//!
//! The first cluster in a process runs `initdb` once into a template folder (kept in `/dev/shm`,
//! or the temp folder without it, and reused by later processes); each cluster copies it into
//! its own folder there, so a cluster starts without running `initdb` again.
//!
//! # Example
//!
//! ```no_run
//! use datahub_testkit::{AuthMethod, Fault, FaultProxy, PgCluster, ServerCert, User};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = PgCluster::builder()
//!     .tls(ServerCert::Valid)
//!     .user(User::new("app").password("app-secret").auth(AuthMethod::ScramSha256))
//!     .database("appdb", "app")
//!     .start()?;
//! let ca_pem = cluster.ca_pem(); // trust this CA for verify-full
//! let config = cluster.config("app", "appdb"); // host 127.0.0.1, the port, the password
//! let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
//! tokio::spawn(connection);
//! let row = client.query_one("SELECT current_user", &[]).await?;
//! assert_eq!(row.get::<_, String>(0), "app");
//!
//! // The same cluster behind a proxy that stops forwarding after the first reply byte.
//! let proxy = FaultProxy::start(Fault::StallAfter {
//!     upstream: cluster.addr(),
//!     direction: datahub_testkit::Direction::ServerToClient,
//!     after_bytes: 1,
//! })
//! .await?;
//! println!("dial {} and watch it hang; CA: {:?}", proxy.addr(), ca_pem.is_some());
//! # Ok(())
//! # }
//! ```

mod binaries;
pub mod canary;
mod certs;
mod cluster;
mod error;
mod fake;
mod proxy;

pub use certs::{ServerCert, WRONG_HOST};
pub use cluster::{AuthMethod, PgCluster, PgClusterBuilder, SUPERUSER, Transport, User};
pub use error::{Error, ErrorKind, Result};
pub use fake::{FAKE_MAX_CONNECTIONS, FAKE_SERVER_VERSION, FakeTarget};
pub use proxy::{DEFAULT_DRIP_INTERVAL, Direction, Fault, FaultProxy};
