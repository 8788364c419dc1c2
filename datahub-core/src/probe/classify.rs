//! Turning what went wrong into exactly one [`FailureKind`] with a hint.
//!
//! Decisions come from what the inspector saw (guard tripped, non-PostgreSQL bytes, the answer
//! to the `SSLRequest`), the SQLSTATE of a server error, and the typed errors in the source chain
//! (rustls, `io::Error`). Hints are fixed sentences: no text from the peer, and nothing from the
//! secrets, is ever copied into one.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::io;

use rustls::CertificateError;

use crate::model::FailureKind;
use crate::net::{self, DialError};
use crate::probe::auth::Refusal;
use crate::probe::inspect::Trace;
use crate::probe::{Failure, StepName};

/// A failure without a SQLSTATE.
pub(crate) fn failure(
    kind: FailureKind,
    step: StepName,
    hint: impl Into<Cow<'static, str>>,
) -> Failure {
    Failure {
        kind,
        step,
        hint: hint.into(),
        sqlstate: None,
    }
}

/// A failure of the connect step (resolve, policy, TCP).
pub(crate) fn dial(error: &DialError) -> Failure {
    match error {
        DialError::Dns(_) => failure(
            FailureKind::DnsFailed,
            StepName::Resolve,
            "the host name did not resolve; check its spelling and the DNS of the server running \
             the check",
        ),
        DialError::Blocked(_) => failure(
            FailureKind::BlockedByPolicy,
            StepName::Policy,
            "every address of this host is denied by the target policy; an admin can change the \
             allowed networks",
        ),
        DialError::Refused { .. } => failure(
            FailureKind::ConnectionRefused,
            StepName::Tcp,
            "the server refused the TCP connection: nothing listens on that port, or a firewall \
             rejects it",
        ),
        DialError::Timeout {
            step: net::Step::Resolve,
        } => timeout(StepName::Resolve),
        DialError::Timeout {
            step: net::Step::Connect,
        } => timeout(StepName::Tcp),
        DialError::Io { source: e, .. } => match e.kind() {
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::AddrNotAvailable => failure(
                FailureKind::ConnectionRefused,
                StepName::Tcp,
                "the host could not be reached on that port (refused or unreachable)",
            ),
            io::ErrorKind::TimedOut => timeout(StepName::Tcp),
            _ => failure(
                FailureKind::Internal,
                StepName::Tcp,
                "opening the TCP connection failed on this side",
            ),
        },
    }
}

/// The deadline passed during `step` (the hint is the model's, which checks recorded by the
/// monitor show too).
pub(crate) fn timeout(step: StepName) -> Failure {
    failure(
        FailureKind::Timeout,
        step,
        FailureKind::Timeout.hint(Some(step)),
    )
}

/// How an attempt that got a socket failed, given the step it was in.
pub(crate) fn connect(
    err: &tokio_postgres::Error,
    trace: &Trace,
    step: StepName,
    tls_required: bool,
) -> Failure {
    if let Some(refusal) = trace.refusal {
        return refused(refusal);
    }
    if trace.guard_tripped {
        return failure(
            FailureKind::AuthMethodRefused,
            StepName::Auth,
            "the server asked for the password in cleartext or md5 over an unencrypted \
             connection; no password was sent. Use TLS (or SCRAM), or let an admin permit it \
             for disable/allow",
        );
    }
    if trace.not_postgres {
        return not_postgres(step);
    }
    if let Some(db) = err.as_db_error() {
        return server_error(db.code().code(), step);
    }
    if tls_required && matches!(trace.ssl_answer, Some((b'N', _))) {
        return failure(
            FailureKind::TlsNotSupportedByServer,
            StepName::Tls,
            "the server does not offer TLS, but the TLS mode requires it; enable ssl on the \
             server or choose a weaker mode if the policy allows",
        );
    }
    if let Some(tls) = rustls_error(err) {
        return tls_error(&tls);
    }
    let detail = err.source().map(ToString::to_string).unwrap_or_default();
    let kind = err.to_string();
    if kind == "authentication error" {
        if detail.contains("channel binding") {
            return failure(
                FailureKind::AuthMethodRefused,
                StepName::Auth,
                "channel binding is required, but the server offered an authentication method \
                 without it (cleartext, md5 or SCRAM without channel binding); no password was \
                 sent",
            );
        }
        if detail.contains("unsupported") {
            return failure(
                FailureKind::AuthMethodRefused,
                StepName::Auth,
                "the server asked for an authentication method this client does not support",
            );
        }
        return failure(
            FailureKind::AuthFailed,
            StepName::Auth,
            "the server's SCRAM proof did not verify: it does not know this password",
        );
    }
    if kind.starts_with("unexpected message") || kind.starts_with("error parsing") {
        return not_postgres(step);
    }
    if step == StepName::Tls {
        return failure(
            FailureKind::TlsHandshakeFailed,
            StepName::Tls,
            "the TLS handshake failed: the connection was closed or reset during it",
        );
    }
    if io_kind(err).is_some() || err.is_closed() {
        return failure(
            FailureKind::ServerUnavailable,
            step,
            "the server closed or reset the connection before it was ready",
        );
    }
    failure(
        FailureKind::Internal,
        step,
        "the connection failed for a reason this client does not classify",
    )
}

/// The authenticator stopped (`auth.rs`): nothing derived from the password went out after the
/// request it refused.
fn refused(refusal: Refusal) -> Failure {
    let (kind, hint) = match refusal {
        Refusal::PlainPassword => (
            FailureKind::AuthMethodRefused,
            "the server asked for the password in cleartext or md5 over an unencrypted \
             connection; no password was sent. Use TLS (or SCRAM), or let an admin permit it \
             for disable/allow",
        ),
        Refusal::ChannelBindingRequired => (
            FailureKind::AuthMethodRefused,
            "channel binding is required, but the server offered an authentication method \
             without it (cleartext, md5, SCRAM without channel binding, or none); no password \
             was sent",
        ),
        Refusal::Unsupported => (
            FailureKind::AuthMethodRefused,
            "the server asked for an authentication method this client does not support",
        ),
        Refusal::TooManyIterations => (
            FailureKind::AuthMethodRefused,
            "the server asked for more than 100,000 SCRAM iterations, more than this client \
             computes for a check; lower scram_iterations for this role's password",
        ),
        Refusal::ServerProof => (
            FailureKind::AuthFailed,
            "the server's SCRAM proof did not verify: it does not know this password",
        ),
        Refusal::Malformed => (
            FailureKind::ProtocolError,
            "the server's authentication messages do not follow the PostgreSQL protocol",
        ),
    };
    failure(kind, StepName::Auth, hint)
}

/// The peer sent bytes that are not PostgreSQL; none of them is repeated.
pub(crate) fn not_postgres(step: StepName) -> Failure {
    failure(
        FailureKind::ProtocolError,
        step,
        "the peer does not speak the PostgreSQL protocol: check the host and port",
    )
}

/// A server error (ErrorResponse) by SQLSTATE.
pub(crate) fn server_error(code: &str, step: StepName) -> Failure {
    let (kind, hint): (FailureKind, &'static str) = match code {
        "28P01" => (
            FailureKind::AuthFailed,
            "password authentication failed: wrong password, or the user does not exist",
        ),
        "28000" => (
            FailureKind::AuthFailed,
            "the server refused this user: no pg_hba.conf entry matches this host, user, \
             database and encryption, or the role may not log in",
        ),
        "3D000" => (FailureKind::DatabaseNotFound, "the database does not exist"),
        "53300" => (
            FailureKind::TooManyConnections,
            "the server has no connection slot left (max_connections reached)",
        ),
        "57P03" => (
            FailureKind::ServerUnavailable,
            "the server is starting up, shutting down or in recovery and refuses connections now",
        ),
        "57P01" | "57P02" => (
            FailureKind::ServerUnavailable,
            "the server is shutting down and closed the connection",
        ),
        "57014" => (
            FailureKind::Timeout,
            "the probe query was cancelled by its statement timeout",
        ),
        c if c.starts_with("42") => (
            FailureKind::AuthFailed,
            "the user may not connect to this database (missing CONNECT privilege)",
        ),
        c if c.starts_with("08") => (
            FailureKind::ProtocolError,
            "the server reported a protocol violation",
        ),
        _ => (
            FailureKind::ServerUnavailable,
            "the server refused the connection; the SQLSTATE says why",
        ),
    };
    Failure {
        kind,
        step,
        hint: hint.into(),
        sqlstate: sqlstate(code),
    }
}

/// A SQLSTATE is five digits or upper-case letters; anything else from a peer is dropped.
fn sqlstate(code: &str) -> Option<String> {
    let ok = code.len() == 5
        && code
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    ok.then(|| code.to_owned())
}

/// A rustls error from the handshake.
fn tls_error(err: &rustls::Error) -> Failure {
    let certificate =
        |hint: &'static str| failure(FailureKind::TlsCertificateInvalid, StepName::Tls, hint);
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => certificate(
                "the server certificate is not signed by the trusted CA (unknown issuer): check \
                 tls.ca_cert_pem",
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                certificate(
                    "the server certificate is not valid for this host name (hostname mismatch); \
                     verify-ca skips this check",
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                certificate("the server certificate has expired")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                certificate("the server certificate is not valid yet (check the clocks)")
            }
            CertificateError::Revoked => certificate("the server certificate is revoked"),
            _ => certificate(
                "the server certificate is not acceptable (bad encoding, usage or signature)",
            ),
        },
        rustls::Error::AlertReceived(alert) => {
            let hint = match alert {
                rustls::AlertDescription::CertificateRequired
                | rustls::AlertDescription::BadCertificate
                | rustls::AlertDescription::UnknownCA => {
                    "the server refused the TLS handshake over the client certificate (missing or \
                     not trusted by the server)"
                }
                rustls::AlertDescription::HandshakeFailure
                | rustls::AlertDescription::ProtocolVersion
                | rustls::AlertDescription::InsufficientSecurity => {
                    "the server and this client share no TLS version or cipher suite"
                }
                _ => "the server aborted the TLS handshake",
            };
            failure(FailureKind::TlsHandshakeFailed, StepName::Tls, hint)
        }
        _ => failure(
            FailureKind::TlsHandshakeFailed,
            StepName::Tls,
            "the TLS handshake failed (the peer may not be a TLS-enabled PostgreSQL server)",
        ),
    }
}

/// The rustls error somewhere in the source chain, if any.
fn rustls_error(err: &(dyn StdError + 'static)) -> Option<rustls::Error> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls.clone());
        }
        if let Some(tls) = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.clone());
        }
        current = e.source();
    }
    None
}

/// The `io::ErrorKind` somewhere in the source chain, if any.
fn io_kind(err: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_one_kind_each() {
        for (code, kind) in [
            ("28P01", FailureKind::AuthFailed),
            ("28000", FailureKind::AuthFailed),
            ("3D000", FailureKind::DatabaseNotFound),
            ("53300", FailureKind::TooManyConnections),
            ("57P03", FailureKind::ServerUnavailable),
            ("57P01", FailureKind::ServerUnavailable),
            ("57014", FailureKind::Timeout),
            ("08P01", FailureKind::ProtocolError),
            ("XX000", FailureKind::ServerUnavailable),
        ] {
            let f = server_error(code, StepName::Auth);
            assert_eq!(f.kind, kind, "{code}");
            assert_eq!(f.sqlstate.as_deref(), Some(code));
        }
        assert_eq!(server_error("\u{1b}[2J!", StepName::Auth).sqlstate, None);
    }

    #[test]
    fn certificate_errors_name_the_reason() {
        for (err, word) in [
            (CertificateError::UnknownIssuer, "unknown issuer"),
            (CertificateError::NotValidForName, "host name"),
            (CertificateError::Expired, "expired"),
        ] {
            let f = tls_error(&rustls::Error::InvalidCertificate(err));
            assert_eq!(f.kind, FailureKind::TlsCertificateInvalid);
            assert!(f.hint.contains(word), "{}", f.hint);
        }
    }
}
