//! What every handler shares: the Hub (the only door to the core, which also tells its monitor
//! of every change and streams the events), the monitor's handle (for its counters and
//! shutdown), the metrics recorder, the per-address sign-in limiter, and the server's own
//! options.

use std::sync::Arc;
use std::time::Duration;

use datahub_core::hub::{Hub, LoginLimit};
use datahub_core::monitor::{Monitor, MonitorEvent, MonitorStats};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::limit::AddressLimiter;

/// How the HTTP layer behaves. `Default`: the documented default of every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Whether the server is reached over HTTPS: session cookies get `Secure`, and every answer
    /// carries `Strict-Transport-Security`. Default: false.
    pub secure_cookies: bool,
    /// The longest a request may take before it is answered 408 (event streams excepted).
    /// Default: 30 s (a connection test has a 5 s budget).
    pub request_timeout: Duration,
    /// The largest request body accepted, in bytes. Default: 256 KiB (a connection with
    /// certificates and a key fits many times).
    pub body_limit: usize,
    /// How often an idle event stream sends a keep-alive comment. Default: 15 s.
    pub keep_alive: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            request_timeout: Duration::from_secs(30),
            body_limit: 256 * 1024,
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// The state of the app; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    hub: Hub,
    monitor: Option<Arc<Monitor>>,
    metrics: Option<PrometheusHandle>,
    options: HttpOptions,
    logins: AddressLimiter,
    shutdown: CancellationToken,
}

impl AppState {
    /// State over `hub`, without a monitor or metrics recorder; see the `with_*` methods.
    pub fn new(hub: Hub, options: HttpOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                hub,
                monitor: None,
                metrics: None,
                options,
                logins: AddressLimiter::default(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// Adds the running monitor, started by this state's hub ([`Hub::start_monitor`]), which
    /// tells it of every change and streams its events: its counters are served and it is shut
    /// down with the server.
    #[must_use]
    pub fn with_monitor(self, monitor: Monitor) -> Self {
        self.rebuild(|inner| inner.monitor = Some(Arc::new(monitor)))
    }

    /// Adds the Prometheus recorder rendered at `/metrics`.
    #[must_use]
    pub fn with_metrics(self, metrics: PrometheusHandle) -> Self {
        self.rebuild(|inner| inner.metrics = Some(metrics))
    }

    /// Uses `limit` for password guesses (sign-ins and password changes), per client address
    /// here and per account name in the hub ([`Hub::with_login_limit`]).
    /// Default: [`LoginLimit::default`].
    #[must_use]
    pub fn with_login_limit(self, limit: LoginLimit) -> Self {
        self.rebuild(|inner| {
            inner.hub = inner.hub.clone().with_login_limit(limit);
            inner.logins = AddressLimiter::new(limit);
        })
    }

    /// Uses `token` to end event streams at shutdown.
    #[must_use]
    pub fn with_shutdown(self, token: CancellationToken) -> Self {
        self.rebuild(|inner| inner.shutdown = token)
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                hub: shared.hub.clone(),
                monitor: shared.monitor.clone(),
                metrics: shared.metrics.clone(),
                options: shared.options.clone(),
                logins: AddressLimiter::new(shared.logins.limit()),
                shutdown: shared.shutdown.clone(),
            },
        };
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The Hub: every handler's only way into the core.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The HTTP options.
    pub fn options(&self) -> &HttpOptions {
        &self.inner.options
    }

    /// The sign-in rate limiter per client address (the per-account one is the hub's).
    pub fn logins(&self) -> &AddressLimiter {
        &self.inner.logins
    }

    /// The Prometheus recorder, when installed.
    pub fn metrics(&self) -> Option<&PrometheusHandle> {
        self.inner.metrics.as_ref()
    }

    /// Cancelled when the server shuts down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Subscribes to status and connection events ([`Hub::subscribe_events`]: the monitor's
    /// when it runs, else the connection changes made through the hub).
    pub fn subscribe(&self) -> broadcast::Receiver<MonitorEvent> {
        self.inner.hub.subscribe_events()
    }

    /// The monitor's counters since start, when a monitor runs.
    pub fn monitor_stats(&self) -> Option<MonitorStats> {
        self.inner.monitor.as_ref().map(|m| m.stats())
    }

    /// Stops the monitor, if one runs, waiting for its tasks.
    pub async fn shutdown_monitor(&self) {
        if let Some(monitor) = &self.inner.monitor {
            monitor.shutdown().await;
        }
    }
}
