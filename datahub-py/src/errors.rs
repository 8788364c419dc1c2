//! Errors of local mode as the Python exception tree: the REST API's code (so both modes raise
//! the same class), the core's kind, the core's own message and the field at fault.
//!
//! The code is [`ApiError`]'s, made from the core error by the server's own `From`, so the map
//! from core kind to code lives in one place; but where the API hides the kind behind
//! `internal` (keyring, sealing, I/O), the code is the core's kind, so a local operator, who
//! holds the key, gets `KeyringError` rather than a bare internal error. The message is the core's (the caller is
//! a trusted operator, and core errors never hold a secret); for the internal kinds (`store`,
//! `keyring`, `decrypt_failed`, `io`, `internal`) it is the core's `Display` text rather than the
//! server's generic sentence. Exceptions are made by `datahub_connections._errors.error_from`,
//! the one map from code to class.

use datahub_core::{Error as CoreError, ErrorKind};
use datahub_server::ApiError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

/// A failure of local mode, ready to be raised in Python.
#[derive(Debug, Clone, PartialEq)]
pub struct Raised {
    /// The REST API's error code (`invalid_input`, `precondition_failed`, …).
    pub code: &'static str,
    /// The core's error kind (`invalid_input`, `conflict`, …) or `test_failed`.
    pub kind: &'static str,
    /// What went wrong; never a secret.
    pub message: String,
    /// The input field at fault.
    pub field: Option<String>,
    /// Seconds to wait before trying again (`rate_limited`).
    pub retry_after: Option<f64>,
    /// The test report as JSON text (`test_failed`).
    pub report: Option<String>,
}

impl Raised {
    /// An error with a code and kind and nothing else.
    pub fn new(code: &'static str, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            kind,
            message: message.into(),
            field: None,
            retry_after: None,
            report: None,
        }
    }

    /// `invalid_input` naming `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let mut out = Self::new("invalid_input", "invalid_input", message);
        out.field = Some(field.to_owned());
        out
    }

    /// The hub was closed, or can no longer be used.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new("store_unavailable", "store", message)
    }

    /// A bug of this module (a task that ended without an answer).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("internal", "internal", message)
    }

    /// The exception of `error_from` for this error (or the error that making it raised).
    pub fn into_pyerr(self, py: Python<'_>) -> PyErr {
        match self.make(py) {
            Ok(exception) => PyErr::from_value(exception),
            Err(e) => e,
        }
    }

    fn make<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let module = errors_module(py)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("kind", self.kind)?;
        kwargs.set_item("field", self.field.as_deref())?;
        kwargs.set_item("retry_after", self.retry_after)?;
        kwargs.set_item("report", self.report.as_deref())?;
        module.call_method(
            "error_from",
            (self.code, self.message.as_str()),
            Some(&kwargs),
        )
    }
}

impl From<CoreError> for Raised {
    fn from(e: CoreError) -> Self {
        let kind = e.kind();
        let message = match kind {
            ErrorKind::Store
            | ErrorKind::Keyring
            | ErrorKind::Decrypt
            | ErrorKind::Io
            | ErrorKind::Internal => e.to_string(),
            _ => e.message().to_owned(),
        };
        let field = match kind {
            ErrorKind::Store
            | ErrorKind::Keyring
            | ErrorKind::Decrypt
            | ErrorKind::Io
            | ErrorKind::Internal => None,
            _ => e.field().map(str::to_owned),
        };
        let api = ApiError::from(e);
        // The API hides a keyring or sealing failure behind `internal` (a remote client must
        // not learn of it); the local operator holds the key, and gets the class that says so.
        let code = match kind {
            ErrorKind::Keyring | ErrorKind::Decrypt | ErrorKind::Io => kind.as_str(),
            _ => api.code(),
        };
        Self {
            code,
            kind: kind.as_str(),
            message,
            field,
            // Whole seconds, as remote mode reads them from `Retry-After`.
            retry_after: api.retry_after().map(|s| s as f64),
            report: None,
        }
    }
}

impl From<ApiError> for Raised {
    /// The server's refusals of input (a body or a query that does not parse), with their
    /// code; the kind is the core's kind of that code.
    fn from(e: ApiError) -> Self {
        let code = e.code();
        Self {
            code,
            kind: kind_of_code(code),
            message: e.message().to_owned(),
            field: e.field().map(str::to_owned),
            retry_after: e.retry_after().map(|s| s as f64),
            report: None,
        }
    }
}

/// The core's kind of an API error code.
fn kind_of_code(code: &str) -> &'static str {
    match code {
        "not_found" => "not_found",
        "conflict" | "precondition_failed" => "conflict",
        "permission_denied" | "cross_origin" => "permission_denied",
        "unauthenticated" => "unauthenticated",
        "rate_limited" => "rate_limited",
        "store_unavailable" => "store",
        "internal" => "internal",
        _ => "invalid_input",
    }
}

/// `datahub_connections._errors`, imported once (lazily: the module imports the package).
fn errors_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    ERRORS
        .get_or_try_init(py, || {
            py.import("datahub_connections._errors").map(Bound::unbind)
        })
        .map(|m| m.bind(py))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_refusals_keep_code_field_and_message() {
        let r = Raised::from(ApiError::invalid("port", "must be from 1 to 65535"));
        assert_eq!(r.code, "invalid_input");
        assert_eq!(r.kind, "invalid_input");
        assert_eq!(r.field.as_deref(), Some("port"));
        assert_eq!(r.message, "must be from 1 to 65535");
    }

    /// Real core errors of every kind an operator can meet, from a Hub on a fresh folder.
    #[tokio::test]
    async fn core_errors_keep_kind_message_field_and_take_the_api_code() {
        use datahub_core::hub::RateLimit;
        use datahub_core::probe::MAX_BUDGET;
        use datahub_core::rbac::Principal;
        use datahub_server::api::connection::{CreateConnection, PatchConnection};
        use datahub_server::extract::json_body;

        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join("data").display().to_string();
        let place = crate::place::Place::new(Some(folder), None, None, true).unwrap();
        let hub = place.open().await.unwrap().with_test_rate_limit(RateLimit {
            burst: 1,
            per_second: 0.001,
        });
        let op = Principal::operator("unit");
        // A closed loopback port: the test fails at once, and is not an error.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let draft = || {
            json_body::<CreateConnection>(
                format!(
                    r#"{{"name":"one","host":"127.0.0.1","port":{port},"database":"d",
                        "username":"u","password":"pw","tls":{{"mode":"require"}}}}"#
                )
                .as_bytes(),
            )
            .unwrap()
            .into_draft()
            .unwrap()
        };
        let saved = hub.create_connection(&op, draft()).await.unwrap();

        let r = Raised::from(
            hub.connection_by_name(&op, "Not A Name!")
                .await
                .unwrap_err(),
        );
        assert_eq!((r.code, r.kind), ("invalid_input", "invalid_input"));
        assert_eq!(r.field.as_deref(), Some("name"));

        let r = Raised::from(hub.connection_by_name(&op, "missing").await.unwrap_err());
        assert_eq!((r.code, r.kind), ("not_found", "not_found"));

        let r = Raised::from(hub.create_connection(&op, draft()).await.unwrap_err());
        assert_eq!((r.code, r.kind), ("conflict", "conflict"));
        assert_eq!(r.field.as_deref(), Some("name"));

        let patch = json_body::<PatchConnection>(br#"{"description":"x"}"#)
            .unwrap()
            .into_patch()
            .unwrap();
        let stale = hub
            .update_connection(&op, saved.id, saved.version + 5, patch)
            .await
            .unwrap_err();
        let r = Raised::from(stale);
        assert_eq!((r.code, r.kind), ("precondition_failed", "conflict"));
        assert_eq!(r.field.as_deref(), Some("version"));

        let report = hub
            .test_connection(&op, saved.id, MAX_BUDGET)
            .await
            .unwrap();
        assert!(!report.ok);
        let r = Raised::from(
            hub.test_connection(&op, saved.id, MAX_BUDGET)
                .await
                .unwrap_err(),
        );
        assert_eq!((r.code, r.kind), ("rate_limited", "rate_limited"));
        assert!(r.retry_after.is_some_and(|s| s >= 1.0), "{r:?}");

        // Another folder's key does not open this store: a keyring error, as such.
        let other = tmp.path().join("other").display().to_string();
        crate::place::Place::new(Some(other.clone()), None, None, true)
            .unwrap()
            .open()
            .await
            .unwrap();
        let wrong = crate::place::Place::new(
            Some(tmp.path().join("data").display().to_string()),
            None,
            Some(format!("{other}/master.key")),
            false,
        )
        .unwrap();
        let r = wrong.open().await.unwrap_err();
        assert_eq!((r.code, r.kind), ("keyring", "keyring"));
        assert!(r.field.is_none());
    }

    #[test]
    fn codes_map_to_core_kinds() {
        for (code, kind) in [
            ("invalid_input", "invalid_input"),
            ("malformed_json", "invalid_input"),
            ("not_found", "not_found"),
            ("precondition_failed", "conflict"),
            ("conflict", "conflict"),
            ("permission_denied", "permission_denied"),
            ("rate_limited", "rate_limited"),
            ("store_unavailable", "store"),
            ("internal", "internal"),
        ] {
            assert_eq!(kind_of_code(code), kind, "{code}");
        }
    }
}
