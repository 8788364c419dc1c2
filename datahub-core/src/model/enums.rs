//! The closed vocabularies of the model: engine, TLS mode, channel binding, health status and
//! failure kind. Each has a stable lowercase spelling (`as_str`, `FromStr`, `Display`) that the
//! API, the stores and the audit log share.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// Declares a fieldless enum with its spellings, `as_str`, `ALL`, `Display` and `FromStr`.
macro_rules! spelled_enum {
    (
        $(#[$doc:meta])*
        $name:ident, field = $field:literal, expected = $expected:literal
        $(, default = $default:ident)? {
            $( $(#[$vdoc:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vdoc])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The stable lowercase spelling.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        $(
            impl Default for $name {
                fn default() -> Self {
                    Self::$default
                }
            }
        )?

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = Error;

            /// Parses the exact lowercase spelling.
            ///
            /// # Errors
            #[doc = concat!("`InvalidInput` on the field `", $field, "` listing the accepted values.")]
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(Error::invalid($field, concat!("must be one of: ", $expected))),
                }
            }
        }
    };
}

spelled_enum! {
    /// The database engine of a connection. Default: `postgres`.
    Engine, field = "engine", expected = "postgres", default = Postgres {
        /// PostgreSQL (and wire-compatible servers).
        Postgres => "postgres",
    }
}

spelled_enum! {
    /// How a connection uses TLS, with libpq's meaning of `sslmode`. Default: `verify-full`.
    ///
    /// The order of the variants is their strength (`Disable < … < VerifyFull`), so an admin
    /// policy's lowest allowed mode is checked with `mode >= policy_minimum`.
    TlsMode, field = "tls.mode",
    expected = "disable, allow, prefer, require, verify-ca, verify-full", default = VerifyFull {
        /// Plaintext only.
        Disable => "disable",
        /// Plaintext first, TLS if the server insists.
        Allow => "allow",
        /// TLS if the server offers it, else plaintext; the certificate is not verified.
        Prefer => "prefer",
        /// TLS always; the certificate is not verified (unlike libpq, never even with a CA set:
        /// choose `verify-ca` for that).
        Require => "require",
        /// TLS always; the certificate must chain to a trusted CA, whatever name it carries.
        VerifyCa => "verify-ca",
        /// TLS always; the certificate must chain to a trusted CA and match the host name.
        VerifyFull => "verify-full",
    }
}

impl TlsMode {
    /// The lowest mode an admin policy allows unless configured otherwise: `require`.
    pub const DEFAULT_POLICY_MINIMUM: Self = Self::Require;

    /// Whether this mode always uses TLS (`require` and stronger).
    pub const fn always_encrypts(self) -> bool {
        matches!(self, Self::Require | Self::VerifyCa | Self::VerifyFull)
    }

    /// Whether this mode verifies the server certificate (`verify-ca`, `verify-full`).
    pub const fn verifies_certificate(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

spelled_enum! {
    /// Whether SCRAM channel binding is used, with libpq's meaning. Default: `prefer`.
    ///
    /// Ordered by strength, like [`TlsMode`].
    ChannelBinding, field = "tls.channel_binding", expected = "disable, prefer, require", default = Prefer {
        /// Never use channel binding.
        Disable => "disable",
        /// Use it when the server and the TLS session support it.
        Prefer => "prefer",
        /// Refuse to authenticate without it (so never without TLS).
        Require => "require",
    }
}

spelled_enum! {
    /// The derived health of a connection. Default: `unknown`.
    HealthStatus, field = "status", expected = "unknown, healthy, degraded, down", default = Unknown {
        /// Never checked, or monitoring is off.
        Unknown => "unknown",
        /// The last checks succeeded in time.
        Healthy => "healthy",
        /// Slow, failing fewer times in a row than the `down` threshold, or a certificate
        /// expires soon.
        Degraded => "degraded",
        /// Failing repeatedly, until enough successes in a row.
        Down => "down",
    }
}

spelled_enum! {
    /// Why a connection test failed: the closed list of DESIGN.md, stable for clients.
    FailureKind, field = "error_kind",
    expected = "invalid_config, dns_failed, blocked_by_policy, connection_refused, timeout, \
                tls_not_supported_by_server, tls_handshake_failed, tls_certificate_invalid, \
                auth_failed, auth_method_refused, database_not_found, too_many_connections, \
                server_unavailable, protocol_error, internal" {
        /// The settings cannot work as given.
        InvalidConfig => "invalid_config",
        /// The host name did not resolve.
        DnsFailed => "dns_failed",
        /// Every resolved address is denied by the target policy.
        BlockedByPolicy => "blocked_by_policy",
        /// The server refused the TCP connection.
        ConnectionRefused => "connection_refused",
        /// A step did not finish within the budget (the report names the step).
        Timeout => "timeout",
        /// TLS was required but the server does not offer it.
        TlsNotSupportedByServer => "tls_not_supported_by_server",
        /// The TLS handshake failed for a reason other than the certificate.
        TlsHandshakeFailed => "tls_handshake_failed",
        /// The server certificate is not trusted: unknown issuer, wrong name or expired.
        TlsCertificateInvalid => "tls_certificate_invalid",
        /// The server rejected the credentials.
        AuthFailed => "auth_failed",
        /// The server asked for an authentication method the settings forbid (e.g. a cleartext
        /// password over plaintext).
        AuthMethodRefused => "auth_method_refused",
        /// The database does not exist.
        DatabaseNotFound => "database_not_found",
        /// The server has no connection slot left.
        TooManyConnections => "too_many_connections",
        /// The server is starting up, shutting down or in recovery and refuses connections.
        ServerUnavailable => "server_unavailable",
        /// The peer did not speak the PostgreSQL protocol as expected.
        ProtocolError => "protocol_error",
        /// A bug on our side.
        Internal => "internal",
    }
}

spelled_enum! {
    /// The steps of a connection test, in order; each has a stable lowercase spelling. A failed
    /// test or check names the step it failed in.
    StepName, field = "step",
    expected = "config, resolve, policy, tcp, tls, startup, auth, query" {
        /// Checking the settings against the policy and reading the certificates; no socket.
        Config => "config",
        /// Resolving the host name.
        Resolve => "resolve",
        /// Checking the addresses against the target policy.
        Policy => "policy",
        /// Opening the TCP connection.
        Tcp => "tcp",
        /// Asking for TLS and the TLS handshake.
        Tls => "tls",
        /// From the startup message to the server's first authentication request.
        Startup => "startup",
        /// From the first authentication request to the server being ready for queries.
        Auth => "auth",
        /// The probe query.
        Query => "query",
    }
}

impl FailureKind {
    /// A fixed sentence telling a person what to check after a failure of this kind in `step`
    /// (`None`: the step is not known, e.g. a check recorded before steps were). It holds no
    /// detail of one failure (no host, SQLSTATE, text from the peer or secret), so it can be
    /// derived again from a recorded kind and step whenever the failure is shown. The prober's
    /// own hints may be more precise (they know the SQLSTATE or the TLS alert); these are the
    /// words of the same cases in general.
    pub const fn hint(self, step: Option<StepName>) -> &'static str {
        match self {
            Self::InvalidConfig => {
                "the settings cannot work as saved (for example a TLS mode below the policy's \
                 minimum, or an unreadable certificate): edit the connection"
            }
            Self::DnsFailed => {
                "the host name did not resolve; check its spelling and the DNS of the server \
                 running the check"
            }
            Self::BlockedByPolicy => {
                "every address of this host is denied by the target policy; an admin can change \
                 the allowed networks"
            }
            Self::ConnectionRefused => {
                "the server refused the TCP connection: nothing listens on that port, or a \
                 firewall rejects it"
            }
            Self::Timeout => match step {
                Some(StepName::Resolve) => {
                    "resolving the host name did not finish within the time budget"
                }
                Some(StepName::Policy | StepName::Tcp) => {
                    "the TCP connection was not accepted within the time budget: the host may be \
                     down, or a firewall drops packets"
                }
                Some(StepName::Tls) => {
                    "the TLS handshake did not finish within the time budget: the server stalled \
                     or is not PostgreSQL"
                }
                Some(StepName::Startup) => {
                    "the server accepted the connection but did not answer the startup message \
                     within the time budget"
                }
                Some(StepName::Auth) => "authentication did not finish within the time budget",
                Some(StepName::Query) => {
                    "the probe query did not finish within the time budget: the server is \
                     overloaded or stalled"
                }
                Some(StepName::Config) => "the time budget ran out before anything started",
                None => "the check did not finish within the time budget",
            },
            Self::TlsNotSupportedByServer => {
                "the server does not offer TLS, but the TLS mode requires it; enable ssl on the \
                 server or choose a weaker mode if the policy allows"
            }
            Self::TlsHandshakeFailed => {
                "the TLS handshake failed: the server and this client share no TLS version or \
                 cipher suite, the server refused the client certificate, or the peer is not a \
                 TLS-enabled PostgreSQL server"
            }
            Self::TlsCertificateInvalid => {
                "the server certificate is not trusted: unknown issuer (check tls.ca_cert_pem), \
                 a host name mismatch, or expired"
            }
            Self::AuthFailed => {
                "the server refused the credentials: wrong password, an unknown user, no \
                 pg_hba.conf entry for this host, user and database, or no CONNECT privilege"
            }
            Self::AuthMethodRefused => {
                "the server asked for an authentication method the settings forbid (for example \
                 a cleartext password over an unencrypted connection, or no channel binding \
                 when it is required); no password was sent"
            }
            Self::DatabaseNotFound => "the database does not exist",
            Self::TooManyConnections => {
                "the server has no connection slot left (max_connections reached)"
            }
            Self::ServerUnavailable => {
                "the server is starting up, shutting down or in recovery, or closed the \
                 connection before it was ready"
            }
            Self::ProtocolError => match step {
                Some(StepName::Auth) => {
                    "the server's authentication messages do not follow the PostgreSQL protocol"
                }
                _ => "the peer does not speak the PostgreSQL protocol: check the host and port",
            },
            Self::Internal => {
                "the check failed on this side, not at the target; the server's log says more"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for m in TlsMode::ALL {
            assert_eq!(m.as_str().parse::<TlsMode>().unwrap(), *m);
            assert_eq!(m.to_string(), m.as_str());
        }
        for c in ChannelBinding::ALL {
            assert_eq!(c.as_str().parse::<ChannelBinding>().unwrap(), *c);
        }
        for s in HealthStatus::ALL {
            assert_eq!(s.as_str().parse::<HealthStatus>().unwrap(), *s);
        }
        assert_eq!(FailureKind::ALL.len(), 15);
        for k in FailureKind::ALL {
            assert_eq!(k.as_str().parse::<FailureKind>().unwrap(), *k);
        }
        assert_eq!("postgres".parse::<Engine>().unwrap(), Engine::Postgres);
        assert_eq!(StepName::ALL.len(), 8);
        for s in StepName::ALL {
            assert_eq!(s.as_str().parse::<StepName>().unwrap(), *s);
        }
        assert_eq!("x".parse::<StepName>().unwrap_err().field(), Some("step"));
    }

    #[test]
    fn every_kind_and_step_has_a_fixed_hint() {
        let steps = StepName::ALL.iter().copied().map(Some).chain([None]);
        for kind in FailureKind::ALL {
            for step in steps.clone() {
                let hint = kind.hint(step);
                assert!(!hint.is_empty(), "{kind} {step:?}");
                assert!(!hint.ends_with('.'), "{kind} {step:?}: {hint}");
                assert_eq!(hint, hint.trim(), "{kind} {step:?}");
                assert!(!hint.contains("  "), "{kind} {step:?}: {hint}");
            }
        }
        // The step refines a timeout's hint.
        let check = |kind: FailureKind, step: Option<StepName>, word: &str| {
            assert!(kind.hint(step).contains(word), "{kind} {step:?}");
        };
        check(FailureKind::Timeout, Some(StepName::Tcp), "TCP");
        check(FailureKind::Timeout, Some(StepName::Tls), "TLS handshake");
        check(FailureKind::Timeout, Some(StepName::Query), "probe query");
        check(FailureKind::Timeout, None, "time budget");
        check(FailureKind::AuthFailed, Some(StepName::Auth), "password");
        check(FailureKind::DnsFailed, Some(StepName::Resolve), "resolve");
    }

    #[test]
    fn modes_are_ranked_by_strength() {
        assert!(TlsMode::ALL.windows(2).all(|w| w[0] < w[1]));
        assert!(TlsMode::Prefer < TlsMode::DEFAULT_POLICY_MINIMUM);
        assert!(TlsMode::default() >= TlsMode::DEFAULT_POLICY_MINIMUM);
        assert!(!TlsMode::Prefer.always_encrypts());
        assert!(TlsMode::VerifyCa.verifies_certificate());
    }

    #[test]
    fn parse_errors_name_the_field_and_not_the_input() {
        let e = "VERIFY-FULL".parse::<TlsMode>().unwrap_err();
        assert_eq!(e.field(), Some("tls.mode"));
        assert!(!e.to_string().contains("VERIFY"));
        assert_eq!(
            "x".parse::<ChannelBinding>().unwrap_err().field(),
            Some("tls.channel_binding")
        );
        assert_eq!(
            "mysql".parse::<Engine>().unwrap_err().field(),
            Some("engine")
        );
        assert_eq!(
            "x".parse::<FailureKind>().unwrap_err().field(),
            Some("error_kind")
        );
    }
}
