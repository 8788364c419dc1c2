//! The kit's one error type: what went wrong ([`ErrorKind`]), a message that says where, and
//! the underlying cause through `source()`.
//!
//! This module owns classification only; it never decides whether a failure is retried.

use std::error::Error as StdError;
use std::fmt;

/// A `Result` whose error defaults to the kit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A PostgreSQL program (`initdb`, `pg_ctl`, `psql`) was not found on `PATH` nor under
    /// `/usr/lib/postgresql/<version>/bin`.
    BinaryNotFound,
    /// The system user that must own the server (`postgres` when running as root) is missing.
    SystemUser,
    /// `initdb` failed while building the template data folder.
    Initdb,
    /// `pg_ctl start` failed or the server did not come up; the message ends with the log tail.
    Start,
    /// `pg_ctl stop` failed.
    Stop,
    /// Setup SQL (roles, databases) run through `psql` failed.
    Setup,
    /// Generating a certificate or key with rcgen failed.
    Certificate,
    /// The request itself is invalid: an unknown user, a non-loopback upstream, a folder the
    /// server could not reach, TLS needed but not enabled.
    InvalidInput,
    /// A file-system or socket operation failed.
    Io,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BinaryNotFound => "postgresql binary not found",
            ErrorKind::SystemUser => "system user lookup failed",
            ErrorKind::Initdb => "initdb failed",
            ErrorKind::Start => "cluster start failed",
            ErrorKind::Stop => "cluster stop failed",
            ErrorKind::Setup => "cluster setup sql failed",
            ErrorKind::Certificate => "certificate generation failed",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Io => "i/o error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from the test kit: classify it with [`Error::kind`], read it with `Display`, walk
/// the cause with `source()`.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct Error(Box<Inner>);

#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
struct Inner {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl Error {
    /// The kind of failure, stable across message wording changes.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            source: None,
        }))
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            source: Some(source.into()),
        }))
    }

    pub(crate) fn io(message: impl Into<String>, source: std::io::Error) -> Self {
        Error::with_source(ErrorKind::Io, message, source)
    }
}

impl From<rcgen::Error> for Error {
    fn from(source: rcgen::Error) -> Self {
        Error::with_source(
            ErrorKind::Certificate,
            "rcgen refused the parameters",
            source,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_kind_then_message_and_keeps_source() {
        let err = Error::io(
            "creating /tmp/x",
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
        );
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(err.to_string(), "i/o error: creating /tmp/x");
        let source = StdError::source(&err).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("denied"));
    }
}
