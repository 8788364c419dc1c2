//! What every handler shares: the Hub (the only door to the core), the monitor whose events the
//! API streams, the metrics recorder, and the server's own options.

use std::sync::Arc;
use std::time::Duration;

use datahub_core::ConnectionId;
use datahub_core::hub::Hub;
use datahub_core::monitor::{MonitorEvent, MonitorHandle, MonitorStats};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::limit::{LoginLimit, LoginLimiter};

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
    monitor: Option<Arc<MonitorHandle>>,
    /// Events when no monitor runs (tests, `--no-monitor`): connection changes only.
    local_events: broadcast::Sender<MonitorEvent>,
    metrics: Option<PrometheusHandle>,
    options: HttpOptions,
    logins: LoginLimiter,
    shutdown: CancellationToken,
}

impl AppState {
    /// State over `hub`, without a monitor or metrics recorder; see the `with_*` methods.
    pub fn new(hub: Hub, options: HttpOptions) -> Self {
        let (local_events, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Inner {
                hub,
                monitor: None,
                local_events,
                metrics: None,
                options,
                logins: LoginLimiter::default(),
                shutdown: CancellationToken::new(),
            }),
        }
    }

    /// Adds the running monitor: its events are streamed, and every change made through the
    /// API is told to it at once.
    #[must_use]
    pub fn with_monitor(self, monitor: MonitorHandle) -> Self {
        self.rebuild(|inner| inner.monitor = Some(Arc::new(monitor)))
    }

    /// Adds the Prometheus recorder rendered at `/metrics`.
    #[must_use]
    pub fn with_metrics(self, metrics: PrometheusHandle) -> Self {
        self.rebuild(|inner| inner.metrics = Some(metrics))
    }

    /// Uses `limit` for sign-ins and password changes. Default: [`LoginLimit::default`].
    #[must_use]
    pub fn with_login_limit(self, limit: LoginLimit) -> Self {
        self.rebuild(|inner| inner.logins = LoginLimiter::new(limit))
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
                local_events: shared.local_events.clone(),
                metrics: shared.metrics.clone(),
                options: shared.options.clone(),
                logins: LoginLimiter::new(shared.logins.limit()),
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

    /// The login rate limiter.
    pub fn logins(&self) -> &LoginLimiter {
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

    /// Subscribes to status and connection events (the monitor's when it runs).
    pub fn subscribe(&self) -> broadcast::Receiver<MonitorEvent> {
        match &self.inner.monitor {
            Some(monitor) => monitor.subscribe(),
            None => self.inner.local_events.subscribe(),
        }
    }

    /// Tells the monitor (or the local event channel) that a connection was created or edited.
    pub fn changed(&self, id: ConnectionId) {
        match &self.inner.monitor {
            Some(monitor) => monitor.notify_changed(id),
            None => {
                let _ = self
                    .inner
                    .local_events
                    .send(MonitorEvent::ConnectionChanged { id });
            }
        }
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

    /// Tells the monitor (or the local event channel) that a connection was deleted.
    pub fn deleted(&self, id: ConnectionId) {
        match &self.inner.monitor {
            Some(monitor) => monitor.notify_deleted(id),
            None => {
                let _ = self
                    .inner
                    .local_events
                    .send(MonitorEvent::ConnectionDeleted { id });
            }
        }
    }
}
