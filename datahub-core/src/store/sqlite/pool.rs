//! A small pool of SQLite connections, used off the async runtime.
//!
//! Each call takes a connection (opening one lazily, up to [`POOL_SIZE`]), runs its closure on
//! tokio's blocking pool, and puts the connection back. Writers also take the one write gate
//! first, so writes in this process queue in order instead of spinning on SQLite's lock; other
//! processes sharing the file are held off by SQLite's own lock and the busy timeout. Every wait
//! has a deadline.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::db_error;
use crate::{Error, ErrorKind, Result};

/// How many connections the pool opens at most.
pub(super) const POOL_SIZE: usize = 4;

/// How long a call waits for a connection (or the write gate) before failing. Default: 10 s.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long SQLite waits for a lock held by another connection or process. Default: 5 s.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(super) struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    slots: Arc<Semaphore>,
    write_gate: Arc<Semaphore>,
}

impl Pool {
    /// A pool over the database file at `path`, holding `first` as its first connection.
    pub(super) fn new(path: PathBuf, first: Connection) -> Self {
        Self {
            path,
            idle: Mutex::new(vec![first]),
            slots: Arc::new(Semaphore::new(POOL_SIZE)),
            write_gate: Arc::new(Semaphore::new(1)),
        }
    }

    /// Runs `f` on a connection, outside any explicit transaction.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.run(None, f).await
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction, committed when `f` succeeds and rolled
    /// back when it fails.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let gate = acquire(&self.write_gate).await?;
        self.run(Some(gate), move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_error)?;
            let out = f(&tx)?;
            tx.commit().map_err(db_error)?;
            Ok(out)
        })
        .await
    }

    async fn run<T, F>(&self, gate: Option<OwnedSemaphorePermit>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let slot = acquire(&self.slots).await?;
        let idle = self.take_idle();
        let path = self.path.clone();
        // The permits move into the blocking task, so they are released only when the work is
        // done, even if the caller stops waiting.
        let job = tokio::task::spawn_blocking(move || {
            let _permits = (slot, gate);
            let mut conn = match idle {
                Some(conn) => conn,
                None => open_connection(&path)?,
            };
            let out = f(&mut conn);
            Ok::<_, Error>((conn, out))
        });
        let (conn, out) = job.await.map_err(|e| {
            Error::new(ErrorKind::Internal, "a sqlite store task failed").with_source(e)
        })??;
        // A connection left inside a transaction (a failed rollback) is not reused.
        if conn.is_autocommit() {
            self.put_idle(conn);
        }
        out
    }

    fn take_idle(&self) -> Option<Connection> {
        match self.idle.lock() {
            Ok(mut idle) => idle.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        }
    }

    fn put_idle(&self, conn: Connection) {
        match self.idle.lock() {
            Ok(mut idle) => idle.push(conn),
            Err(poisoned) => poisoned.into_inner().push(conn),
        }
    }
}

async fn acquire(sem: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit> {
    match tokio::time::timeout(ACQUIRE_TIMEOUT, Arc::clone(sem).acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_closed)) => Err(Error::new(ErrorKind::Store, "the sqlite store is closed")),
        Err(_elapsed) => Err(Error::new(
            ErrorKind::Store,
            "the sqlite store is overloaded: no connection became free within 10 s",
        )),
    }
}

/// Opens one connection with the settings every connection of the store needs.
pub(super) fn open_connection(path: &std::path::Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| {
        Error::new(
            ErrorKind::Store,
            "could not open the sqlite database: check the data folder exists and is writable",
        )
        .with_source(e)
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_error)?;
    // WAL lets readers go on while one writer writes; FULL syncs the log at every commit, so an
    // acknowledged write survives a crash or power loss (S25).
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::new(
            ErrorKind::Store,
            "the sqlite database could not switch to WAL mode: is it on a network file system?",
        ));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA trusted_schema = OFF;",
    )
    .map_err(db_error)?;
    // A page cache of up to 32 MiB per connection (SQLite's default is 2 MiB): a search walks
    // thousands of index and search-row pages, which then stay cached between calls instead of
    // being read again from the file on every call. Memory is taken only as pages are read.
    conn.execute_batch("PRAGMA cache_size = -32768;")
        .map_err(db_error)?;
    Ok(conn)
}
