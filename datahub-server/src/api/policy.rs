//! The JSON of the target policy: which addresses connections may reach and the lowest TLS
//! mode a connection may use.

use datahub_core::model::TargetPolicy;
use datahub_core::model::TlsMode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};

/// The most CIDRs in each list.
pub const MAX_CIDRS: usize = 1_000;

/// A TLS mode, with libpq's meaning of `sslmode`, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MinTlsMode {
    /// Plaintext only.
    Disable,
    /// Plaintext first, TLS if the server insists.
    Allow,
    /// TLS if the server offers it; the certificate is not verified.
    Prefer,
    /// TLS always; the certificate is not verified.
    Require,
    /// TLS always; the certificate must chain to a trusted CA.
    VerifyCa,
    /// TLS always; the certificate must chain to a trusted CA and match the host name.
    VerifyFull,
}

// By hand rather than derived: serde_json reports a derived enum given a number or an object
// as a syntax error, which names no field.
impl<'de> Deserialize<'de> for MinTlsMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.parse::<TlsMode>() {
            Ok(mode) => Ok(mode.into()),
            Err(_) => Err(serde::de::Error::unknown_variant(
                &text,
                &[
                    "disable",
                    "allow",
                    "prefer",
                    "require",
                    "verify-ca",
                    "verify-full",
                ],
            )),
        }
    }
}

impl From<TlsMode> for MinTlsMode {
    fn from(mode: TlsMode) -> Self {
        match mode {
            TlsMode::Disable => Self::Disable,
            TlsMode::Allow => Self::Allow,
            TlsMode::Prefer => Self::Prefer,
            TlsMode::Require => Self::Require,
            TlsMode::VerifyCa => Self::VerifyCa,
            TlsMode::VerifyFull => Self::VerifyFull,
        }
    }
}

impl From<MinTlsMode> for TlsMode {
    fn from(mode: MinTlsMode) -> Self {
        match mode {
            MinTlsMode::Disable => Self::Disable,
            MinTlsMode::Allow => Self::Allow,
            MinTlsMode::Prefer => Self::Prefer,
            MinTlsMode::Require => Self::Require,
            MinTlsMode::VerifyCa => Self::VerifyCa,
            MinTlsMode::VerifyFull => Self::VerifyFull,
        }
    }
}

/// The target policy. A `PUT` replaces all of it, so every field is required.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Networks a target address must fall in (`127.0.0.0/8`, `::1/128`, or a bare address);
    /// empty: any address not denied. Stored normalised.
    pub allow_cidrs: Vec<String>,
    /// Networks a target address must not fall in, checked after `allow_cidrs`.
    pub deny_cidrs: Vec<String>,
    /// The lowest TLS mode a connection may use. Default: `require`.
    pub min_tls_mode: MinTlsMode,
}

impl From<TargetPolicy> for Policy {
    fn from(policy: TargetPolicy) -> Self {
        Self {
            allow_cidrs: policy.allow_cidrs,
            deny_cidrs: policy.deny_cidrs,
            min_tls_mode: policy.min_tls_mode.into(),
        }
    }
}

impl Policy {
    /// The core's policy.
    ///
    /// # Errors
    /// 400 naming the list when one holds more than [`MAX_CIDRS`] networks.
    pub fn into_core(self) -> ApiResult<TargetPolicy> {
        for (field, list) in [
            ("allow_cidrs", &self.allow_cidrs),
            ("deny_cidrs", &self.deny_cidrs),
        ] {
            if list.len() > MAX_CIDRS {
                return Err(ApiError::invalid(
                    field,
                    format!("must hold at most {MAX_CIDRS} networks"),
                ));
            }
        }
        Ok(TargetPolicy {
            allow_cidrs: self.allow_cidrs,
            deny_cidrs: self.deny_cidrs,
            min_tls_mode: self.min_tls_mode.into(),
        })
    }
}
