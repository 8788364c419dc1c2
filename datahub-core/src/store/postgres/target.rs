//! Where and how the PostgreSQL store connects (SECURITY.md S32): the store's URL read into the
//! same [`ConnectionSpec`] and [`ConnectionSecrets`] a saved connection has, so the store dials,
//! negotiates TLS (rustls, every libpq `sslmode`, `sslrootcert`, client certificates, channel
//! binding) and authenticates exactly as a connection test does, through the prober's connector.
//!
//! The URL is read by the core's libpq parser ([`dsn::parse`]): the same keys as a connection's
//! URL. Without `sslmode` the store uses `verify-full` when `sslrootcert` is given, else
//! `prefer` (libpq's default, with a warning at start). Whatever the mode, the store's password
//! never crosses an unencrypted socket as cleartext or md5: the prober's cleartext guard refuses
//! those requests on a plaintext connection (S13).
//!
//! It must never put the password, the client key or any part of the URL other than the field
//! name and certificate paths into an error or `Debug` output.

use std::path::Path;

use zeroize::Zeroizing;

use crate::dsn;
use crate::model::{ChannelBinding, ConnectionDraft, ConnectionSecrets, ConnectionSpec, TlsMode};
use crate::secret::{Password, PrivateKeyPem};
use crate::{Error, ErrorKind, Result};

/// The largest certificate or key file read: 1 MiB.
const PEM_FILE_MAX: u64 = 1024 * 1024;

/// The store's connection settings, validated. `Debug` redacts the secrets.
#[derive(Debug, Clone)]
pub(super) struct StoreTarget {
    pub(super) spec: ConnectionSpec,
    pub(super) secrets: ConnectionSecrets,
    /// Server `options` from a `tokio_postgres::Config` an embedder built (never from a URL).
    pub(super) server_options: Option<String>,
}

impl StoreTarget {
    /// Reads a libpq URL or key=value string, and the certificate and key files it names.
    ///
    /// # Errors
    /// `InvalidInput` on `store_url` or `store.<key>` (e.g. `store.sslmode`,
    /// `store.sslrootcert`) naming what is wrong, never repeating the URL.
    pub(super) fn from_url(url: &str) -> Result<Self> {
        let mut parsed = dsn::parse(url).map_err(in_store)?;
        let draft = &mut parsed.draft;
        if draft.tls.mode.is_none() {
            draft.tls.mode = Some(if parsed.sslrootcert.is_some() {
                TlsMode::VerifyFull
            } else {
                TlsMode::Prefer
            });
        }
        if let Some(path) = &parsed.sslrootcert {
            draft.tls.ca_cert_pem = Some(read_pem(path, "store.sslrootcert")?.to_string());
        }
        if let Some(path) = &parsed.sslcert {
            draft.tls.client_cert_pem = Some(read_pem(path, "store.sslcert")?.to_string());
        }
        if let Some(path) = &parsed.sslkey {
            let key = read_pem(path, "store.sslkey")?;
            draft.tls.client_key_pem = Some(PrivateKeyPem::new(key.to_string()));
        }
        Self::validate(parsed.draft, None)
    }

    /// Reads a `tokio_postgres::Config` (tests and embedders): one TCP host and port, user,
    /// database, password, `sslmode` (`disable`, `prefer`, `require`), channel binding,
    /// application name and server options. There is no CA in such a config, so `require` is
    /// the strongest mode it can ask for.
    ///
    /// # Errors
    /// `InvalidInput` on `store.host` (none, several, or a unix socket), `store.user` (none),
    /// `store.password` (not UTF-8), and the model's rules.
    pub(super) fn from_config(config: &tokio_postgres::Config) -> Result<Self> {
        use tokio_postgres::config::{ChannelBinding as Cb, Host, SslMode};
        let host = match config.get_hosts() {
            [Host::Tcp(host)] => host.clone(),
            [] => return Err(Error::invalid("store.host", "is required")),
            [_] => {
                return Err(Error::invalid(
                    "store.host",
                    "unix sockets are not supported; give a host name or IP address",
                ));
            }
            _ => return Err(Error::invalid("store.host", "must be a single host")),
        };
        let user = config
            .get_user()
            .ok_or_else(|| Error::invalid("store.user", "is required"))?;
        let password = match config.get_password() {
            Some(bytes) => Some(Password::new(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| Error::invalid("store.password", "must be UTF-8"))?,
            )),
            None => None,
        };
        let mut draft = ConnectionDraft {
            host,
            port: config.get_ports().first().map(|p| i64::from(*p)),
            database: config.get_dbname().unwrap_or(user).to_owned(),
            username: user.to_owned(),
            password,
            ..ConnectionDraft::default()
        };
        draft.tls.mode = Some(match config.get_ssl_mode() {
            SslMode::Disable => TlsMode::Disable,
            SslMode::Prefer => TlsMode::Prefer,
            _ => TlsMode::Require,
        });
        draft.tls.channel_binding = Some(match config.get_channel_binding() {
            Cb::Disable => ChannelBinding::Disable,
            Cb::Require => ChannelBinding::Require,
            _ => ChannelBinding::Prefer,
        });
        draft.options.application_name = config.get_application_name().map(str::to_owned);
        Self::validate(draft, config.get_options().map(str::to_owned))
    }

    /// Validates with the model's rules. The model requires a password; the store may have
    /// none (certificate or trust authentication), so a placeholder passes the check and is
    /// replaced by an empty one, which the authenticator sends only if the server asks.
    fn validate(mut draft: ConnectionDraft, server_options: Option<String>) -> Result<Self> {
        let password = draft.password.take();
        draft.password = Some(Password::from("-"));
        draft.name = "store".to_owned();
        let (spec, mut secrets) = draft.validate().map_err(in_store)?;
        secrets.password = password.unwrap_or_else(|| Password::from(""));
        Ok(Self {
            spec,
            secrets,
            server_options,
        })
    }
}

/// An input error of the parser or the model, named as the store's setting: `dsn` becomes
/// `store_url`, `dsn.sslmode` and `tls.mode` become `store.sslmode` and `store.tls.mode`.
fn in_store(e: Error) -> Error {
    if e.kind() != ErrorKind::InvalidInput {
        return e;
    }
    let field = match e.field() {
        None | Some("dsn") => "store_url".to_owned(),
        Some(f) => format!("store.{}", f.strip_prefix("dsn.").unwrap_or(f)),
    };
    e.with_field(field)
}

/// Reads a PEM file the URL names into a zeroized buffer reserved from its size (it may be a
/// private key).
fn read_pem(path: &Path, field: &'static str) -> Result<Zeroizing<String>> {
    use std::io::Read as _;
    let shown = path.display();
    let fail = |what: &str| Error::invalid(field, format!("{what} {shown}"));
    let file = std::fs::File::open(path).map_err(|_| fail("could not open"))?;
    let len = file
        .metadata()
        .map_err(|_| fail("could not inspect"))?
        .len();
    if len > PEM_FILE_MAX {
        return Err(fail("is larger than 1 MiB:"));
    }
    let mut text = Zeroizing::new(String::with_capacity(
        usize::try_from(len).unwrap_or(0).saturating_add(1),
    ));
    file.take(PEM_FILE_MAX)
        .read_to_string(&mut text)
        .map_err(|_| fail("could not read (or not UTF-8)"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_defaults_to_verify_full_with_a_ca_else_prefer() {
        let t = StoreTarget::from_url("postgres://u:pw@127.0.0.1:5432/db").unwrap();
        assert_eq!(t.spec.tls.mode(), TlsMode::Prefer);
        let t = StoreTarget::from_url("postgres://u:pw@127.0.0.1/db?sslmode=verify-ca").unwrap();
        assert_eq!(t.spec.tls.mode(), TlsMode::VerifyCa);
        let t = StoreTarget::from_url("postgres://u@127.0.0.1/db?sslrootcert=system").unwrap();
        assert_eq!(t.spec.tls.mode(), TlsMode::VerifyFull);
        assert!(t.secrets.password.is_empty());
    }

    #[test]
    fn errors_name_the_store_setting_and_never_the_url() {
        let canary = "canary-store-url-pw";
        for (url, field) in [
            (
                format!("postgres://u:{canary}@127.0.0.1/db?sslmode=bogus"),
                "store.sslmode",
            ),
            (format!("mysql://u:{canary}@127.0.0.1/db"), "store_url"),
            (
                format!("postgres://u:{canary}@127.0.0.1/db?sslrootcert=/nonexistent/ca.pem"),
                "store.sslrootcert",
            ),
        ] {
            let e = StoreTarget::from_url(&url).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert_eq!(e.field(), Some(field), "{e}");
            assert!(!e.to_string().contains(canary), "{e}");
        }
    }
}
