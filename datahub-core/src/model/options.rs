//! Connect options and monitoring settings: small numeric settings with ranges and defaults.
//!
//! There is deliberately no free-form option (libpq `options`, extra keys): only these
//! structured fields exist (SECURITY.md S15).

use crate::Result;
use crate::model::fields::{ApplicationName, in_range};

/// How a connection is opened. `Default`: 5,000 ms timeout, no application name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectOptions {
    connect_timeout_ms: u32,
    application_name: Option<ApplicationName>,
}

impl ConnectOptions {
    /// The default and longest connect timeout: 5,000 ms, the probe's whole budget.
    pub const MAX_CONNECT_TIMEOUT_MS: u32 = 5_000;

    /// Validates connect options; `None` takes the default.
    ///
    /// # Errors
    /// `InvalidInput` on `options.connect_timeout_ms` outside 1..=5000.
    pub fn new(
        connect_timeout_ms: Option<i64>,
        application_name: Option<ApplicationName>,
    ) -> Result<Self> {
        let connect_timeout_ms = match connect_timeout_ms {
            None => Self::MAX_CONNECT_TIMEOUT_MS,
            Some(ms) => in_range(
                "options.connect_timeout_ms",
                ms,
                1,
                i64::from(Self::MAX_CONNECT_TIMEOUT_MS),
                "must be between 1 and 5000 milliseconds",
            )?,
        };
        Ok(Self {
            connect_timeout_ms,
            application_name,
        })
    }

    /// How long connecting (TCP, TLS and authentication) may take, in milliseconds.
    /// Default: 5,000.
    pub fn connect_timeout_ms(&self) -> u32 {
        self.connect_timeout_ms
    }

    /// The `application_name` reported to the server. Default: none.
    pub fn application_name(&self) -> Option<&ApplicationName> {
        self.application_name.as_ref()
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            connect_timeout_ms: Self::MAX_CONNECT_TIMEOUT_MS,
            application_name: None,
        }
    }
}

/// Whether and how often a connection is checked. `Default`: enabled, every 60 s, slow above
/// 1,000 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Monitoring {
    enabled: bool,
    interval_s: u32,
    slow_ms: u32,
}

impl Monitoring {
    /// The default interval between checks: 60 s.
    pub const DEFAULT_INTERVAL_S: u32 = 60;
    /// The default latency above which a check counts as slow: 1,000 ms.
    pub const DEFAULT_SLOW_MS: u32 = 1_000;

    /// Validates monitoring settings; each `None` takes its default.
    ///
    /// # Errors
    /// `InvalidInput` on `monitoring.interval_s` outside 10..=86400 or `monitoring.slow_ms`
    /// outside 1..=60000.
    pub fn new(
        enabled: Option<bool>,
        interval_s: Option<i64>,
        slow_ms: Option<i64>,
    ) -> Result<Self> {
        let interval_s = match interval_s {
            None => Self::DEFAULT_INTERVAL_S,
            Some(s) => in_range(
                "monitoring.interval_s",
                s,
                10,
                86_400,
                "must be between 10 and 86400 seconds",
            )?,
        };
        let slow_ms = match slow_ms {
            None => Self::DEFAULT_SLOW_MS,
            Some(ms) => in_range(
                "monitoring.slow_ms",
                ms,
                1,
                60_000,
                "must be between 1 and 60000 milliseconds",
            )?,
        };
        Ok(Self {
            enabled: enabled.unwrap_or(true),
            interval_s,
            slow_ms,
        })
    }

    /// Whether the monitor checks this connection. Default: true.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Seconds between checks, 10–86,400. Default: 60.
    pub fn interval_s(&self) -> u32 {
        self.interval_s
    }

    /// Latency in milliseconds above which a successful check counts as slow (degraded),
    /// 1–60,000. Default: 1,000.
    pub fn slow_ms(&self) -> u32 {
        self.slow_ms
    }
}

impl Default for Monitoring {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_s: Self::DEFAULT_INTERVAL_S,
            slow_ms: Self::DEFAULT_SLOW_MS,
        }
    }
}
