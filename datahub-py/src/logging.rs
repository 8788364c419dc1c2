//! The core's `tracing` events (and the `log` records of tokio-postgres, through `tracing-log`)
//! as Python `logging` records of the logger `datahub_connections`, at the matching level.
//!
//! Installed once, at import, as the global default subscriber; when the process already has
//! one (another extension), as the default of each runtime thread and of a calling thread
//! while it polls a call's future instead. It never deadlocks: a thread holding no GIL (a
//! runtime thread, or a calling thread waiting) takes it ([`Python::try_attach`]) only for the
//! one `logger.log` call and only when the logger is enabled for the event's level, which is
//! cached here and
//! refreshed, with the GIL already held, at the start of every call into the module. The core
//! never puts a secret into an event; this layer adds none (message and fields as text).

use std::fmt::{self, Write as _};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The Python logger's name.
pub const LOGGER: &str = "datahub_connections";

/// The logger's effective level (Python's numbers); nothing is forwarded until it is read.
static THRESHOLD: AtomicI32 = AtomicI32::new(i32::MAX);

/// The dispatcher of runtime threads when another global subscriber was there first.
static FALLBACK: OnceLock<Dispatch> = OnceLock::new();

/// Python's level number of a tracing level (TRACE is 5, below DEBUG).
pub fn levelno(level: &Level) -> i32 {
    match *level {
        Level::TRACE => 5,
        Level::DEBUG => 10,
        Level::INFO => 20,
        Level::WARN => 30,
        Level::ERROR => 40,
    }
}

/// Installs the bridge (once per process; later calls do nothing).
pub fn install(py: Python<'_>) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    refresh_level(py);
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(PythonLogging);
        if subscriber.try_init().is_err() {
            // A global subscriber exists: ours serves the runtime's threads only.
            let _ = FALLBACK.set(Dispatch::new(
                tracing_subscriber::registry().with(PythonLogging),
            ));
        }
    });
}

/// Makes the fallback dispatcher the default of a new runtime thread, if there is one.
pub fn on_runtime_thread() {
    if let Some(dispatch) = FALLBACK.get() {
        // For the thread's whole life: the guard is never dropped.
        std::mem::forget(tracing::dispatcher::set_default(dispatch));
    }
}

/// Runs `f` (a call's future, polled on the calling thread) with the fallback dispatcher as
/// the thread's default when there is one, so its events reach Python as a runtime thread's do.
pub fn on_calling_thread<R>(f: impl FnOnce() -> R) -> R {
    match FALLBACK.get() {
        Some(dispatch) => tracing::dispatcher::with_default(dispatch, f),
        None => f(),
    }
}

/// Reads the logger's effective level again (cheap: one method call, with the GIL held).
pub fn refresh_level(py: Python<'_>) {
    let level = logger(py)
        .and_then(|l| l.call_method0("getEffectiveLevel"))
        .and_then(|l| l.extract::<i32>());
    if let Ok(level) = level {
        THRESHOLD.store(level, Ordering::Relaxed);
    }
}

fn logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CELL.get_or_try_init(py, || {
        py.import("logging")?
            .call_method1("getLogger", (LOGGER,))
            .map(Bound::unbind)
    })
    .map(|l| l.bind(py))
}

/// Whether an event at `level` would reach the logger now.
fn wanted(level: &Level) -> bool {
    levelno(level) >= THRESHOLD.load(Ordering::Relaxed)
}

/// The layer forwarding events to Python.
#[derive(Debug, Clone, Copy)]
struct PythonLogging;

impl<S: Subscriber> Layer<S> for PythonLogging {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level can change at any time in Python: ask `enabled` each time.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        metadata.is_event() && wanted(metadata.level())
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let level = event.metadata().level();
        if !wanted(level) {
            return;
        }
        let text = render(event);
        let _ = Python::try_attach(|py| {
            if let Ok(logger) = logger(py) {
                // A failing handler is logging's own business (it reports it itself).
                let _ = logger.call_method1("log", (levelno(level), text));
            }
        });
    }
}

/// `message (target; field=value, …)`.
fn render(event: &Event<'_>) -> String {
    let mut fields = Fields::default();
    event.record(&mut fields);
    let mut text = fields.message;
    // A `log` record's target comes as a field (tracing-log); its file and line are noise.
    let target = fields
        .log_target
        .as_deref()
        .unwrap_or_else(|| event.metadata().target());
    let _ = write!(text, " ({target}");
    for (i, pair) in fields.pairs.iter().enumerate() {
        text.push_str(if i == 0 { "; " } else { ", " });
        text.push_str(pair);
    }
    text.push(')');
    text
}

/// An event's message and its other fields as `name=value`.
#[derive(Default)]
struct Fields {
    message: String,
    log_target: Option<String>,
    pairs: Vec<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "log.target" => self.log_target = Some(value.to_owned()),
            name if name.starts_with("log.") => {}
            name => self.pairs.push(format!("{name}={value}")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "log.target" => self.log_target = Some(format!("{value:?}")),
            name if name.starts_with("log.") => {}
            name => self.pairs.push(format!("{name}={value:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_match_python() {
        assert_eq!(levelno(&Level::TRACE), 5);
        assert_eq!(levelno(&Level::DEBUG), 10);
        assert_eq!(levelno(&Level::INFO), 20);
        assert_eq!(levelno(&Level::WARN), 30);
        assert_eq!(levelno(&Level::ERROR), 40);
    }

    #[test]
    fn events_render_message_target_and_fields() {
        #[derive(Clone, Default)]
        struct Capture(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
        impl<S: Subscriber> Layer<S> for Capture {
            fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
                self.0.lock().unwrap().push(render(event));
            }
        }
        let capture = Capture::default();
        let dispatch = Dispatch::new(tracing_subscriber::registry().with(capture.clone()));
        tracing::dispatcher::with_default(&dispatch, || {
            tracing::info!(target: "datahub_core::probe", host = "127.0.0.1", port = 5432, "tested");
            tracing::warn!(target: "t", "plain");
        });
        let lines = capture.0.lock().unwrap().clone();
        assert_eq!(
            lines,
            [
                "tested (datahub_core::probe; host=127.0.0.1, port=5432)",
                "plain (t)"
            ]
        );
    }
}
