//! Shared client helpers: rustls configurations, connecting, and classifying failures.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use rustls_tokio_postgres::MakeRustlsConnect;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

/// How long a connect that should work may take before the test calls it a hang.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(15);

fn builder() -> rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
}

fn roots(ca_pem: &str) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// verify-full: only `ca_pem` is trusted and the host name is checked.
pub fn tls_trusting(ca_pem: &str) -> MakeRustlsConnect {
    MakeRustlsConnect::new(
        builder()
            .with_root_certificates(roots(ca_pem))
            .with_no_client_auth(),
    )
}

/// verify-full plus a client certificate.
pub fn tls_with_client_cert(ca_pem: &str, cert_pem: &str, key_pem: &str) -> MakeRustlsConnect {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    MakeRustlsConnect::new(
        builder()
            .with_root_certificates(roots(ca_pem))
            .with_client_auth_cert(chain, key)
            .unwrap(),
    )
}

/// Connects over TLS (`sslmode=require`) and drives the connection in a task.
pub async fn connect_tls(
    config: &Config,
    tls: MakeRustlsConnect,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = config.clone();
    config.ssl_mode(SslMode::Require);
    let (client, connection) = tokio::time::timeout(CONNECT_BUDGET, config.connect(tls))
        .await
        .expect("tls connect hung")?;
    tokio::spawn(connection);
    Ok(client)
}

/// Connects without TLS (`sslmode=disable`) and drives the connection in a task.
pub async fn connect_plain(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let mut config = config.clone();
    config.ssl_mode(SslMode::Disable);
    let (client, connection) = tokio::time::timeout(CONNECT_BUDGET, config.connect(NoTls))
        .await
        .expect("plain connect hung")?;
    tokio::spawn(connection);
    Ok(client)
}

/// `current_user` and whether this session runs over TLS, from the server's point of view.
pub async fn whoami(client: &Client) -> (String, bool) {
    let row = client
        .query_one(
            "SELECT current_user::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The SQLSTATE of a server-side refusal, or `None` for a client-side failure.
pub fn sqlstate(err: &tokio_postgres::Error) -> Option<String> {
    err.as_db_error().map(|db| db.code().code().to_owned())
}

/// The rustls error somewhere in the source chain, if any.
pub fn rustls_error(err: &(dyn StdError + 'static)) -> Option<rustls::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(tls) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return Some(tls.clone());
            }
        }
        current = e.source();
    }
    None
}

/// The `io::ErrorKind` somewhere in the source chain, if any.
pub fn io_kind(err: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        current = e.source();
    }
    None
}
