//! The crate's one public error: opaque, classifiable by [`ErrorKind`], and safe to show.
//!
//! Rule for every constructor: a message says what was wrong and with which field, in lowercase
//! and without a trailing period, and never repeats the offending value. Input may be hostile
//! (control characters, terminal escapes) or secret (a password pasted into the wrong field), so
//! echoing it is never worth the risk.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is. Adapters map this to an HTTP status or a Python
/// exception class; they never parse message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's input broke a rule; [`Error::field`] names the field.
    InvalidInput,
    /// The thing does not exist, or the caller may not see it.
    NotFound,
    /// A name is taken, or a version read is stale.
    Conflict,
    /// The caller is known but not allowed to do this.
    PermissionDenied,
    /// The caller could not be authenticated.
    Unauthenticated,
    /// The caller did this too often; try again later.
    RateLimited,
    /// A sealed value or wrapped key failed to open: wrong key, wrong row or field, or tampered
    /// bytes. Deliberately one opaque case.
    Decrypt,
    /// The keyring is missing, malformed, unsafe (e.g. a key file readable by others), or lacks a
    /// key that stored data names.
    Keyring,
    /// Reading or writing a local file failed.
    Io,
    /// The store is unavailable or failed.
    Store,
    /// A bug: an invariant of this crate did not hold.
    Internal,
}

impl ErrorKind {
    /// A short, stable, snake_case name for logs and API error codes.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::PermissionDenied => "permission_denied",
            Self::Unauthenticated => "unauthenticated",
            Self::RateLimited => "rate_limited",
            Self::Decrypt => "decrypt_failed",
            Self::Keyring => "keyring",
            Self::Io => "io",
            Self::Store => "store",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The field a stale version names ([`Error::stale`], [`Error::is_stale`]).
const STALE_FIELD: &str = "version";

/// The error of every fallible function in this crate.
///
/// Its `Display` is safe to show to the user who caused it: it never contains a secret nor the
/// value of the input that was refused.
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    field: Option<Cow<'static, str>>,
    message: Cow<'static, str>,
    /// For `RateLimited`: when a new attempt may succeed.
    retry_after: Option<Duration>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl Error {
    /// An error of `kind` with a message.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self(Box::new(Inner {
            kind,
            field: None,
            message: message.into(),
            retry_after: None,
            source: None,
        }))
    }

    /// A `RateLimited` error: try again after `retry_after` (the limiter's own refill time).
    pub(crate) fn rate_limited(
        message: impl Into<Cow<'static, str>>,
        retry_after: Duration,
    ) -> Self {
        let mut e = Self::new(ErrorKind::RateLimited, message);
        e.0.retry_after = Some(retry_after);
        e
    }

    /// An `InvalidInput` error naming the `field` (dotted path, e.g. `tls.mode`, `tags[3]`).
    pub(crate) fn invalid(
        field: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(ErrorKind::InvalidInput, message).with_field(field)
    }

    /// A stale version: `Conflict` on the field `version`, because the connection changed since
    /// the caller read it (optimistic concurrency, S26). [`Error::is_stale`] tells it apart from
    /// a taken name. The one constructor of this error, for the Hub and every store.
    pub(crate) fn stale() -> Self {
        Self::new(
            ErrorKind::Conflict,
            "the connection changed since it was read: reload it and apply the edit again",
        )
        .with_field(STALE_FIELD)
    }

    /// A store's `NotFound`: there is no `what` (e.g. `connection`, `user`), said as
    /// "no such …". Add the field the caller named with `with_field` when there is one.
    pub(crate) fn not_found(what: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("no such {what}"))
    }

    /// The one opaque decryption failure.
    pub(crate) fn decrypt() -> Self {
        Self::new(ErrorKind::Decrypt, "sealed value failed to open")
    }

    /// Sets or replaces the field this error is about.
    pub(crate) fn with_field(mut self, field: impl Into<Cow<'static, str>>) -> Self {
        self.0.field = Some(field.into());
        self
    }

    /// Prefixes the field with a parent path, e.g. `mode` inside `tls` becomes `tls.mode`.
    pub(crate) fn in_field(mut self, parent: &str) -> Self {
        self.0.field = Some(match self.0.field.take() {
            Some(child) if child.starts_with('[') => format!("{parent}{child}").into(),
            Some(child) => format!("{parent}.{child}").into(),
            None => parent.to_owned().into(),
        });
        self
    }

    /// Attaches the underlying cause. The cause must not carry secrets either.
    pub(crate) fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The input field the error is about, when there is one (dotted path, e.g. `tls.mode`).
    pub fn field(&self) -> Option<&str> {
        self.0.field.as_deref()
    }

    /// Whether this is a stale version (a `Conflict` on `version`): the thing changed since the
    /// caller read it, and the edit must be made again on a fresh read. Adapters answer it
    /// apart from other conflicts (HTTP 412).
    pub fn is_stale(&self) -> bool {
        self.0.kind == ErrorKind::Conflict && self.field() == Some(STALE_FIELD)
    }

    /// The message alone, without the field name.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// For a `RateLimited` error: how long until a new attempt may succeed, as the limiter
    /// computed it (adapters answer it as HTTP `Retry-After`); `None` for other errors.
    pub fn retry_after(&self) -> Option<Duration> {
        self.0.retry_after
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind);
        if let Some(field) = &self.0.field {
            d.field("field", field);
        }
        d.field("message", &self.0.message);
        if let Some(retry_after) = &self.0.retry_after {
            d.field("retry_after", retry_after);
        }
        if let Some(source) = &self.0.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.field {
            Some(field) => write!(f, "{field}: {}", self.0.message),
            None => f.write_str(&self.0.message),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0
            .source
            .as_ref()
            .map(|s| &**s as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_field() {
        let e = Error::invalid("port", "must be between 1 and 65535");
        assert_eq!(e.to_string(), "port: must be between 1 and 65535");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.field(), Some("port"));
    }

    #[test]
    fn nested_fields_compose() {
        let e = Error::invalid("mode", "unknown value").in_field("tls");
        assert_eq!(e.field(), Some("tls.mode"));
        let e = Error::invalid("[3]", "too long").in_field("tags");
        assert_eq!(e.field(), Some("tags[3]"));
    }

    #[test]
    fn source_is_chained() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::new(ErrorKind::Io, "could not read the key file").with_source(io);
        assert!(e.source().is_some());
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn rate_limited_carries_its_wait() {
        let e = Error::rate_limited("slow down", Duration::from_millis(1500));
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1500)));
        assert_eq!(Error::new(ErrorKind::RateLimited, "x").retry_after(), None);
    }

    #[test]
    fn stale_is_told_apart_from_other_conflicts() {
        assert!(Error::stale().is_stale());
        assert_eq!(Error::stale().kind(), ErrorKind::Conflict);
        let taken = Error::new(ErrorKind::Conflict, "is already taken").with_field("name");
        assert!(!taken.is_stale());
        assert!(!Error::invalid("version", "is too large").is_stale());
        assert_eq!(Error::not_found("team").to_string(), "no such team");
    }

    #[test]
    fn error_is_send_sync_and_small() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }
}
