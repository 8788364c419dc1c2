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
