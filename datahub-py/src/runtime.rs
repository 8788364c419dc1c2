//! One tokio runtime per process, and the blocking wait every Python call makes on it.
//!
//! The runtime is made on first use and remembers the process id it was made in. After
//! `os.fork()` the child has the runtime's memory but none of its threads, so the first call
//! in the child finds another pid, forgets the parent's runtime (`mem::forget`: dropping it
//! would wait for threads that do not exist) and makes a new one.
//!
//! A call's future runs on the calling thread itself, in the runtime's context, with the GIL
//! released ([`Python::detach`]): [`Handle::block_on`] polls it for one slice at a time, and
//! signals are checked between slices, so a Ctrl-C drops the future (its sockets closed) and
//! raises `KeyboardInterrupt` within one slice. The runtime's workers drive the I/O and run what
//! the future spawns; no hop to a worker and back is paid per call (a spawned task and a
//! channel cost two thread wake-ups a call, measured in `benches/compare.py`). A runtime
//! thread never waits for the GIL held by a waiting caller: the caller holds none while it
//! waits.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::{Handle, Runtime};

use crate::errors::Raised;

/// How long one wait lasts before signals are checked again.
pub const SLICE: Duration = Duration::from_millis(20);

/// The runtime of this process and the pid it was made in.
static RUNTIME: Mutex<Option<(u32, Runtime)>> = Mutex::new(None);

/// The handle of this process's runtime, made on first use and after a fork.
///
/// # Errors
/// When the runtime cannot be made (no threads).
pub fn handle() -> Result<Handle, Raised> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((made_in, runtime)) = slot.as_ref()
        && *made_in == pid
    {
        return Ok(runtime.handle().clone());
    }
    if let Some(inherited) = slot.take() {
        // The parent's: its threads are gone in this process, so dropping it would hang.
        std::mem::forget(inherited);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("datahub-py")
        .on_thread_start(crate::logging::on_runtime_thread)
        .build()
        .map_err(|e| Raised::internal(format!("could not start the runtime: {e}")))?;
    let handle = runtime.handle().clone();
    *slot = Some((pid, runtime));
    Ok(handle)
}

/// Whether the runtime of this process was made in this process (for tests).
#[cfg(test)]
fn made_in_this_process() -> bool {
    let slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    slot.as_ref()
        .is_some_and(|(pid, _)| *pid == std::process::id())
}

/// Counts the pieces of work a running call has finished, for progress. A tick only counts: the
/// waiting thread reads the count between slices (at the answer or a slice's end), so progress
/// never wakes it and takes the GIL only where it is taken anyway.
#[derive(Debug, Clone)]
pub struct Ticker(Arc<AtomicUsize>);

impl Ticker {
    /// Counts one more piece done.
    pub fn tick(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// Runs `future` on this thread in the runtime's context with the GIL released.
///
/// # Errors
/// `KeyboardInterrupt` (or whatever a signal handler raised) when a signal arrives: the
/// future is dropped first. An internal error when the future panics.
pub fn wait<T, F>(py: Python<'_>, future: F) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    wait_with_ticks(py, |_| future, |_| Ok(()))
}

/// As [`wait`], for a future that reports progress through its [`Ticker`]: `on_tick` runs on
/// the waiting thread, with the GIL, once per tick, between slices (and all of them before the
/// answer is returned).
///
/// # Errors
/// As [`wait`], and the error `on_tick` returns (the future is dropped then).
pub fn wait_with_ticks<T, F, M>(
    py: Python<'_>,
    make: M,
    mut on_tick: impl FnMut(Python<'_>) -> PyResult<()>,
) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
    M: FnOnce(Ticker) -> F,
{
    crate::logging::refresh_level(py);
    if Handle::try_current().is_ok() {
        // A call from a runtime thread (a Python logging handler the bridge called, say):
        // `block_on` there would panic. Refused with a message instead.
        return Err(Raised::internal(
            "a DataHub call cannot be made from inside the DataHub runtime's own threads \
             (e.g. from a logging handler while a call runs)",
        )
        .into_pyerr(py));
    }
    let handle = handle().map_err(|e| e.into_pyerr(py))?;
    let ticks = Arc::new(AtomicUsize::new(0));
    let mut future = Box::pin(make(Ticker(Arc::clone(&ticks))));
    let mut told = 0;
    loop {
        let slice = handle.clone();
        let (polled, back) = py.detach(move || {
            let polled = panic::catch_unwind(AssertUnwindSafe(|| {
                crate::logging::on_calling_thread(|| {
                    slice.block_on(async { tokio::time::timeout(SLICE, future.as_mut()).await })
                })
            }));
            (polled, future)
        });
        future = back;
        let answer = match polled {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(_elapsed)) => None,
            Err(_panic) => {
                drop_in(&handle, future);
                return Err(
                    Raised::internal("the call ended without an answer (a bug)").into_pyerr(py)
                );
            }
        };
        // Ticks come before the answer, on this thread or a worker: all are counted by now.
        let done = ticks.load(Ordering::Acquire);
        while told < done {
            told += 1;
            if let Err(e) = on_tick(py) {
                drop_in(&handle, future);
                return Err(e);
            }
        }
        if let Some(answer) = answer {
            return Ok(answer);
        }
        if let Err(e) = py.check_signals() {
            drop_in(&handle, future);
            return Err(e);
        }
    }
}

/// Drops an unfinished future in the runtime's context (its sockets and timers belong there).
fn drop_in<F>(handle: &Handle, future: F) {
    let _entered = handle.enter();
    drop(future);
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// One test, as both steps touch the one runtime of the test process.
    #[test]
    fn one_runtime_per_process_and_a_new_one_after_fork() {
        let first = handle().unwrap();
        assert_eq!(first.id(), handle().unwrap().id());
        assert!(made_in_this_process());
        // As after fork: the slot holds a runtime made under another pid.
        {
            let mut slot = RUNTIME.lock().unwrap();
            if let Some((pid, _)) = slot.as_mut() {
                *pid = pid.wrapping_add(1);
            }
        }
        assert!(!made_in_this_process());
        let second = handle().unwrap();
        assert_ne!(first.id(), second.id());
        assert!(made_in_this_process());
        // The new runtime runs work.
        let (tx, rx) = mpsc::channel();
        second.spawn(async move { tx.send(7).unwrap() });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 7);
    }
}
