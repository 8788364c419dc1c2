//! `parse_url`: `hub.add(url=...)`'s URL read by the core's libpq parser
//! (`datahub_core::dsn::parse`), in both modes, into the REST API's `CreateConnection` fields.
//!
//! The REST API takes fields, not URLs, so the client reads the URL (as the web UI does) with
//! the core's rules: the keys of SECURITY.md S15, a key given once, one host, no unix socket,
//! no `sslmode` meaning the model's default (`verify-full`), `sslrootcert` with `require`
//! meaning `verify-ca`, no database meaning the user name. This module adds only what the
//! parser leaves to its caller: a password in the URL is refused (S9: it is passed as
//! `password=`), and the certificate and key files the URL names are read. Errors name the
//! argument (`url`, `url.<key>`) and never repeat any part of the URL.

use std::io::Read as _;
use std::path::Path;

use datahub_core::dsn::{self, ParsedDsn};
use pyo3::prelude::*;
use pyo3::types::PyString;
use secrecy::zeroize::Zeroizing;
use serde::Serialize;

use crate::errors::Raised;

/// The largest certificate or key file read: 1 MiB.
const PEM_FILE_MAX: u64 = 1024 * 1024;

/// Reads a `postgresql://` URL (or a libpq key=value string) into the `CreateConnection`
/// fields it gives, as JSON text (see the stub).
#[pyfunction]
pub fn parse_url<'py>(py: Python<'py>, url: &str) -> PyResult<Bound<'py, PyString>> {
    let fields = fields_of(url).map_err(|e| e.into_pyerr(py))?;
    let text = serde_json::to_string(&fields)
        .map(Zeroizing::new)
        .map_err(|e| Raised::internal(format!("could not write JSON: {e}")).into_pyerr(py))?;
    // Straight into the Python string (a client key may be in it): no other copy outlives the
    // zeroized one.
    Ok(PyString::new(py, &text))
}

/// The `CreateConnection` fields a URL gives; absent ones are left out (the API's defaults).
#[derive(Serialize)]
struct UrlFields {
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<i64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    database: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    username: String,
    #[serde(skip_serializing_if = "UrlTls::is_empty")]
    tls: UrlTls,
    #[serde(skip_serializing_if = "UrlOptions::is_empty")]
    options: UrlOptions,
}

impl std::fmt::Debug for UrlFields {
    /// The non-secret fields only (the TLS part may hold a client key).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlFields")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// `CreateConnection.tls`'s fields a URL gives.
#[derive(Serialize, Default)]
struct UrlTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "text")]
    ca_cert_pem: Option<Zeroizing<String>>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "text")]
    client_cert_pem: Option<Zeroizing<String>>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "text")]
    client_key_pem: Option<Zeroizing<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_binding: Option<&'static str>,
}

/// A file's text as a JSON string.
fn text<S: serde::Serializer>(value: &Option<Zeroizing<String>>, s: S) -> Result<S::Ok, S::Error> {
    value.as_ref().map(|t| t.as_str()).serialize(s)
}

impl UrlTls {
    fn is_empty(&self) -> bool {
        self.mode.is_none()
            && self.ca_cert_pem.is_none()
            && self.client_cert_pem.is_none()
            && self.client_key_pem.is_none()
            && self.channel_binding.is_none()
    }
}

/// `CreateConnection.options`' fields a URL gives.
#[derive(Serialize, Default)]
struct UrlOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application_name: Option<String>,
}

impl UrlOptions {
    fn is_empty(&self) -> bool {
        self.connect_timeout_ms.is_none() && self.application_name.is_none()
    }
}

/// Parses `url` with the core's rules, refuses a password in it and reads the files it names.
fn fields_of(url: &str) -> Result<UrlFields, Raised> {
    let ParsedDsn {
        draft,
        sslrootcert,
        sslcert,
        sslkey,
    } = dsn::parse(url).map_err(as_url_error)?;
    if draft.password.is_some() {
        return Err(Raised::invalid(
            "url",
            "must not hold a password: pass it as password= (a URL is logged, copied and kept \
             in shell history)",
        ));
    }
    let read = |path: &Option<std::path::PathBuf>, key: &str| {
        path.as_deref().map(|p| read_pem(p, key)).transpose()
    };
    let tls = UrlTls {
        mode: draft.tls.mode.map(|m| m.as_str()),
        ca_cert_pem: read(&sslrootcert, "sslrootcert")?,
        client_cert_pem: read(&sslcert, "sslcert")?,
        client_key_pem: read(&sslkey, "sslkey")?,
        channel_binding: draft.tls.channel_binding.map(|c| c.as_str()),
    };
    Ok(UrlFields {
        host: draft.host,
        port: draft.port,
        database: draft.database,
        username: draft.username,
        tls,
        options: UrlOptions {
            connect_timeout_ms: draft.options.connect_timeout_ms,
            application_name: draft.options.application_name,
        },
    })
}

/// The parser's error named after the argument: `dsn` is `url`, `dsn.<key>` is `url.<key>`.
fn as_url_error(e: datahub_core::Error) -> Raised {
    let mut raised = Raised::from(e);
    raised.field = raised.field.map(|f| match f.strip_prefix("dsn") {
        Some(rest) if rest.is_empty() || rest.starts_with('.') => format!("url{rest}"),
        _ => f,
    });
    raised
}

/// Reads a PEM file the URL names into a zeroized buffer (it may be a private key). The error
/// names the key, never the path (a mistyped URL can put a secret where a path goes).
fn read_pem(path: &Path, key: &str) -> Result<Zeroizing<String>, Raised> {
    let field = format!("url.{key}");
    let fail = |what: &str| Raised::invalid(&field, format!("the file {key} names {what}"));
    let file = std::fs::File::open(path).map_err(|_| fail("cannot be opened"))?;
    let len = file
        .metadata()
        .map_err(|_| fail("cannot be inspected"))?
        .len();
    if len > PEM_FILE_MAX {
        return Err(fail("is larger than 1 MiB"));
    }
    let mut text = Zeroizing::new(String::with_capacity(
        usize::try_from(len).unwrap_or(0).saturating_add(1),
    ));
    file.take(PEM_FILE_MAX)
        .read_to_string(&mut text)
        .map_err(|_| fail("cannot be read as UTF-8 text"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_core_and_errors_name_the_argument() {
        let f = fields_of("postgresql://a%40b@[::1]:6000/d%2Fb?sslmode=require").unwrap();
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"host":"[::1]","port":6000,"database":"d/b","username":"a@b","tls":{"mode":"require"}}"#
        );
        let e = fields_of("postgresql://u:canary-pw@127.0.0.1/d").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("url"));
        assert!(!e.message.contains("canary"));
        let e = fields_of("postgresql://u@127.0.0.1/d?sslmode=sometimes").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("url.sslmode"));
        let e =
            fields_of("postgresql://u@127.0.0.1/d?sslrootcert=/nonexistent/ca.pem").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("url.sslrootcert"));
        assert!(!e.message.contains("nonexistent"));
    }
}
