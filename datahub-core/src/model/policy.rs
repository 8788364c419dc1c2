//! The admin's target policy ([`TargetPolicy`]): where connections may point and the lowest TLS
//! mode they may use. The dialer enforces it (`net::Policy`); the Hub reads and saves it.

use crate::model::enums::TlsMode;

/// The admin's target policy: where connections may point, and the lowest TLS mode allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPolicy {
    /// CIDRs a target address must fall in (empty: any address not denied).
    pub allow_cidrs: Vec<String>,
    /// CIDRs a target address must not fall in (checked after `allow_cidrs`).
    pub deny_cidrs: Vec<String>,
    /// The lowest TLS mode a connection may use. Default: `require`.
    pub min_tls_mode: TlsMode,
}

impl Default for TargetPolicy {
    fn default() -> Self {
        Self {
            allow_cidrs: Vec::new(),
            deny_cidrs: Vec::new(),
            min_tls_mode: TlsMode::DEFAULT_POLICY_MINIMUM,
        }
    }
}
