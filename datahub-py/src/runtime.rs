//! One tokio runtime per process, and the blocking wait every Python call makes on it.
//!
//! The runtime is made on first use and remembers the process id it was made in. After
//! `os.fork()` the child has the runtime's memory but none of its threads, so the first call
//! in the child finds another pid, forgets the parent's runtime (`mem::forget`: dropping it
//! would wait for threads that do not exist) and makes a new one.
//!
//! A call spawns its future on the runtime and waits for the answer on a channel, in short
//! slices with the GIL released ([`Python::detach`]), checking for signals between slices: a
//! Ctrl-C aborts the task and raises `KeyboardInterrupt` within one slice. Nothing ever
//! `block_on`s, so no runtime thread waits for the GIL held by a waiting caller.

use std::future::Future;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, PoisonError};
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

/// What a running call sends the waiting thread.
#[derive(Debug)]
pub enum Msg<T> {
    /// One more piece of work is done (for progress).
    Tick,
    /// The answer.
    Done(T),
}

/// Sends [`Msg::Tick`] to the waiting thread.
#[derive(Debug)]
pub struct Ticker<T>(mpsc::Sender<Msg<T>>);

impl<T> Clone for Ticker<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Ticker<T> {
    /// Tells the waiting thread one more piece is done.
    pub fn tick(&self) {
        // The caller may have gone (interrupted): nothing to tell then.
        let _ = self.0.send(Msg::Tick);
    }
}

/// Runs `future` on the runtime and waits for its answer with the GIL released.
///
/// # Errors
/// `KeyboardInterrupt` (or whatever a signal handler raised) when a signal arrives: the task
/// is aborted first. An internal error when the task ends without an answer (a panic).
pub fn wait<T, F>(py: Python<'_>, future: F) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    wait_with_ticks(py, |_| future, |_| Ok(()))
}

/// As [`wait`], for a future that reports progress through its [`Ticker`]: `on_tick` runs on
/// the waiting thread, with the GIL, once per tick.
///
/// # Errors
/// As [`wait`], and the error `on_tick` returns (the task is aborted then).
pub fn wait_with_ticks<T, F, M>(
    py: Python<'_>,
    make: M,
    mut on_tick: impl FnMut(Python<'_>) -> PyResult<()>,
) -> PyResult<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
    M: FnOnce(Ticker<T>) -> F,
{
    crate::logging::refresh_level(py);
    let handle = handle().map_err(|e| e.into_pyerr(py))?;
    let (tx, mut rx) = mpsc::channel::<Msg<T>>();
    let future = make(Ticker(tx.clone()));
    let task = handle.spawn(async move {
        let answer = future.await;
        let _ = tx.send(Msg::Done(answer));
    });
    loop {
        let (received, back) = py.detach(move || {
            let received = rx.recv_timeout(SLICE);
            (received, rx)
        });
        rx = back;
        match received {
            Ok(Msg::Done(answer)) => return Ok(answer),
            Ok(Msg::Tick) => {
                if let Err(e) = on_tick(py) {
                    task.abort();
                    return Err(e);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(
                    Raised::internal("the call ended without an answer (a bug)").into_pyerr(py)
                );
            }
        }
        if let Err(e) = py.check_signals() {
            task.abort();
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
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
