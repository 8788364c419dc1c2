//! A small pool of SQLite connections, used off the async runtime.
//!
//! Each read takes a connection (opening one lazily, up to [`POOL_SIZE`]), runs its closure on
//! tokio's blocking pool, and puts the connection back. Every wait has a deadline. Writes all run
//! on one more connection of their own, the writer: in WAL mode a connection drops its whole
//! page cache when another connection committed since its last transaction, so writes hopping
//! between connections re-read every page they touch (for small writes, more work than their
//! SQL); the writer's cache stays valid from one batch to the next, because only it commits.
//!
//! Writes are group-committed. A write joins the write queue, then waits for either its result
//! or the one write gate. Whoever takes the gate (the committer) drains the whole queue and runs
//! every write it found in one `BEGIN IMMEDIATE` transaction, each write in its own savepoint:
//! a write that fails is rolled back to its savepoint alone and told its error, the others go
//! on. One commit (one sync of the log, `synchronous=FULL`) then covers them all, and only
//! after it does any of them learn its result: a write is reported done only once it is
//! durable, exactly as with one transaction per write, and each write's change and its audit
//! row still commit or roll back together. Writes run in the order they joined the queue, so
//! the audit chain stays linear. Why: every commit syncs the log, and with one transaction per
//! write the syncs, not the SQL, bound how many writes a second the store takes (the monitor
//! writes twice per check: its lease and its result); under concurrent writers a batch shares
//! one sync. A write alone in the queue is a batch of one: its cost is one savepoint more.
//!
//! The monitor's bookkeeping (check leases and results) is [`Durability::Relaxed`]: committed
//! with `synchronous=NORMAL`, so it costs no sync of its own (the next full commit or checkpoint
//! syncs it); a batch holding any full write is synced as a whole.
//!
//! The log is checkpointed off the writer: the writer's automatic checkpoint (which SQLite runs
//! inside the commit that grows the log past 1,000 pages, copying and syncing pages while every
//! queued write waits) is off, and after a commit the pool starts a `PASSIVE` checkpoint on a
//! connection of its own in the background, at most one at a time and one per
//! [`CHECKPOINT_EVERY`]. A passive checkpoint takes no lock a writer needs, so a write never
//! waits for one (the history bench's pruning measured its slowest writes there). When such a
//! checkpoint copied the whole log, the first write after it starts the log over and syncs its
//! header (at `synchronous=NORMAL` too): the checkpointer makes that write itself, one that
//! changes nothing, on the writer while no batch holds it, so a caller's relaxed write after a
//! quiet spell still syncs nothing.
//!
//! A caller that stops waiting (its future dropped, or the gate not free within the deadline)
//! before a committer took its write removes it from the queue: it never runs. Once taken, it
//! runs and commits (or not) with its batch, as a write already started always did. Other
//! processes sharing the file are held off by SQLite's own lock and the busy timeout.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::db_error;
use crate::{Error, ErrorKind, Result};

/// How many connections the pool opens at most.
pub(super) const POOL_SIZE: usize = 4;

/// How long a call waits for a connection (or the write gate) before failing. Default: 10 s.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long SQLite waits for a lock held by another connection or process. Default: 5 s.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's page cache, as SQLite's `cache_size` (negative: KiB): up to 32 MiB. Only the
/// writer commits, so its cache stays valid from one write to the next, and the monitor's
/// writes touch the health, lease and history pages of every connection in turn.
const WRITER_CACHE: i32 = -32_768;

/// How often at most the log is checkpointed in the background: 500 ms.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Tells a write's caller how it ended, given how its batch ended: `None` when the batch
/// committed, else the reason it did not.
type Deliver = Box<dyn FnOnce(Option<&Error>) + Send>;

/// A queued write. Given the batch's transaction it runs in a savepoint of its own; given
/// `None` (the batch could not start) it does not run. Either way it returns what tells its
/// caller the outcome once the batch's fate is known.
type Job = Box<dyn FnOnce(Option<&Transaction<'_>>) -> Deliver + Send>;

/// How soon a write must be on disk when its caller learns it committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Durability {
    /// Synced before the caller is told (`synchronous=FULL`): survives a power loss. Every
    /// write that keeps something a person did, and every audit row.
    Full,
    /// Committed and visible, but the log is synced later (`synchronous=NORMAL` in WAL mode:
    /// the next full commit or checkpoint syncs it): survives a crash of the process, not
    /// necessarily a power loss or an operating-system crash, which may undo the last such
    /// writes (never a part of one, never a full write after them). For what the monitor keeps
    /// about itself: check leases and check results, which the next check writes again.
    Relaxed,
}

/// Writes waiting for a committer, in arrival order, each with its ticket.
#[derive(Default)]
struct WriteQueue {
    next: u64,
    jobs: VecDeque<(u64, Durability, Job)>,
}

impl std::fmt::Debug for WriteQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteQueue")
            .field("queued", &self.jobs.len())
            .finish()
    }
}

#[derive(Debug)]
pub(super) struct Pool {
    path: PathBuf,
    /// Connections for reads, at most [`POOL_SIZE`].
    idle: Arc<Mutex<Vec<Connection>>>,
    slots: Arc<Semaphore>,
    /// Held by the batch being committed: one at a time, on the writer.
    write_gate: Arc<Semaphore>,
    /// The connection every write batch runs on (opened by the first batch); `None` while a
    /// batch has it, or after a failed one left it unusable.
    writer: Arc<Mutex<Option<Writer>>>,
    queue: Mutex<WriteQueue>,
    /// The background checkpoints of the log.
    checkpoints: Arc<Mutex<Checkpoints>>,
}

/// The background checkpointer's connection and when it last started.
#[derive(Debug, Default)]
struct Checkpoints {
    /// Its connection while idle (`None` while a checkpoint runs, or before the first).
    conn: Option<Connection>,
    running: bool,
    last: Option<std::time::Instant>,
}

/// The writer connection and the `synchronous` setting it has now (`None`: not known).
#[derive(Debug)]
struct Writer {
    conn: Connection,
    synchronous: Option<Durability>,
}

impl Pool {
    /// A pool over the database file at `path`, holding `first` as its first connection.
    pub(super) fn new(path: PathBuf, first: Connection) -> Self {
        Self {
            path,
            idle: Arc::new(Mutex::new(vec![first])),
            slots: Arc::new(Semaphore::new(POOL_SIZE)),
            write_gate: Arc::new(Semaphore::new(1)),
            writer: Arc::new(Mutex::new(None)),
            queue: Mutex::new(WriteQueue::default()),
            checkpoints: Arc::new(Mutex::new(Checkpoints::default())),
        }
    }

    /// Starts a passive checkpoint of the log in the background, unless one runs or one
    /// started within [`CHECKPOINT_EVERY`].
    fn checkpoint_soon(&self) {
        let conn = {
            let mut state = lock(&self.checkpoints);
            let now = std::time::Instant::now();
            if state.running || state.last.is_some_and(|at| now - at < CHECKPOINT_EVERY) {
                return;
            }
            state.running = true;
            state.last = Some(now);
            state.conn.take()
        };
        let path = self.path.clone();
        let checkpoints = Arc::clone(&self.checkpoints);
        let gate = Arc::clone(&self.write_gate);
        let writer = Arc::clone(&self.writer);
        // Not awaited: nobody waits for a checkpoint.
        drop(tokio::task::spawn_blocking(move || {
            let conn = conn.or_else(|| open_connection(&path).ok());
            if let Some(conn) = &conn {
                // (busy, frames in the log, frames copied): busy (a checkpoint of another
                // process) or failed, the next one catches up.
                match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                }) {
                    Ok((frames, copied)) if frames > 0 && frames == copied => {
                        restart_log(&gate, &writer);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "sqlite store could not checkpoint its log");
                    }
                }
            }
            let mut state = lock(&checkpoints);
            state.conn = conn;
            state.running = false;
        }));
    }

    /// Runs `f` on a connection, outside any explicit transaction.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        self.run(f).await
    }

    /// Runs `f`, a short read (a few rows found through an index), on this thread when a
    /// connection is free at once; otherwise as [`Self::read`]. Inline, a read saves the hop
    /// to the blocking pool and back: two thread wake-ups, which cost more than such a read
    /// (an idle, parked thread's the most). `f` holds up the async thread while it runs: tens
    /// of microseconds for such a read, and in WAL mode a reader waits for a lock only while
    /// another process recovers the log. Never for reads that may walk many rows.
    pub(super) async fn read_short<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            if let Some(mut conn) = self.take_idle() {
                let out = f(&mut conn);
                // A connection left inside a transaction (a failed rollback) is not reused.
                if conn.is_autocommit() {
                    put_idle(&self.idle, conn);
                }
                drop(slot);
                return out;
            }
            drop(slot);
        }
        self.run(f).await
    }

    /// Runs `f` inside a `BEGIN IMMEDIATE` transaction, in a savepoint of its own, possibly
    /// with other writes queued at the same time (see the module docs); returns its result once
    /// the transaction has committed. When `f` fails, what it did is rolled back and its error
    /// returned; when the commit fails, that error is.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.write_with(Durability::Full, f).await
    }

    /// As [`Self::write`], with [`Durability::Relaxed`]: for what the monitor keeps about its
    /// own work. A batch holding any full write is synced as a whole.
    pub(super) async fn write_relaxed<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.write_with(Durability::Relaxed, f).await
    }

    /// As [`Self::write_relaxed`] for a short write (a row or two found through an index), run
    /// on this thread when nothing else writes: the write gate free at once, no write queued,
    /// the writer open. The same batch of one as a queued write (`BEGIN IMMEDIATE`, a
    /// savepoint, a commit at `synchronous=NORMAL`, which syncs nothing), minus the hop to the
    /// blocking pool and back: two thread wake-ups, which cost more than such a write. `f`
    /// holds up the async thread while it runs; it waits on a lock only while another process
    /// writes to the file. Otherwise it is queued as any write.
    pub(super) async fn write_relaxed_short<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        if let Ok(gate) = Arc::clone(&self.write_gate).try_acquire_owned() {
            // A queued write runs before this one (the audit chain's order is the queue's).
            let nothing_queued = lock(&self.queue).jobs.is_empty();
            let writer = if nothing_queued {
                lock(&self.writer).take()
            } else {
                None
            };
            if let Some(mut current) = writer {
                let (job, mut receiver) = job(f);
                run_batch(&mut current, vec![job], Durability::Relaxed);
                // A writer left inside a transaction (a failed rollback) is not reused.
                if current.conn.is_autocommit() {
                    *lock(&self.writer) = Some(current);
                }
                drop(gate);
                self.checkpoint_soon();
                return receiver.try_recv().unwrap_or_else(|_| Err(not_run()));
            }
        }
        self.write_with(Durability::Relaxed, f).await
    }

    async fn write_with<T, F>(&self, durability: Durability, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let (job, mut receiver) = job(f);
        let ticket = {
            let mut queue = lock(&self.queue);
            let ticket = queue.next;
            queue.next = queue.next.wrapping_add(1);
            queue.jobs.push_back((ticket, durability, job));
            ticket
        };
        // Dropped with this future: a write not yet taken by a committer never runs.
        let _unqueue = Unqueue {
            queue: &self.queue,
            ticket,
        };
        tokio::select! {
            biased;
            result = &mut receiver => result.unwrap_or_else(|_| Err(not_run())),
            gate = acquire(&self.write_gate) => match gate {
                Ok(gate) => {
                    let ran = self.commit_queued(gate).await;
                    // This write was queued before the gate was taken, so the batch just run
                    // held it (or an earlier one did).
                    match receiver.try_recv() {
                        Ok(result) => result,
                        Err(_) => Err(ran.err().unwrap_or_else(not_run)),
                    }
                }
                Err(e) => {
                    if unqueue(&self.queue, ticket) {
                        return Err(e);
                    }
                    // A committer has it: it runs to the end, so wait for its outcome.
                    receiver.await.unwrap_or_else(|_| Err(not_run()))
                }
            },
        }
    }

    /// Runs every queued write in one transaction on the writer, holding the write gate.
    async fn commit_queued(&self, gate: OwnedSemaphorePermit) -> Result<()> {
        // Once the queue is drained, nothing may await before the batch is on the blocking
        // pool, or a caller dropped meanwhile would drop others' writes.
        let mut durability = Durability::Relaxed;
        let jobs: Vec<Job> = lock(&self.queue)
            .jobs
            .drain(..)
            .map(|(_, d, job)| {
                if d == Durability::Full {
                    durability = Durability::Full;
                }
                job
            })
            .collect();
        if jobs.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let writer = Arc::clone(&self.writer);
        // The gate moves into the blocking task: the next batch starts only once this one is
        // done, even if every caller stops waiting.
        let job = tokio::task::spawn_blocking(move || {
            let _gate = gate;
            let taken = lock(&writer).take();
            let mut current = match taken {
                Some(current) => current,
                None => match open_writer(&path) {
                    Ok(conn) => Writer {
                        conn,
                        synchronous: None,
                    },
                    Err(e) => {
                        for job in jobs {
                            job(None)(Some(&e));
                        }
                        return;
                    }
                },
            };
            run_batch(&mut current, jobs, durability);
            // A writer left inside a transaction (a failed rollback) is not reused.
            if current.conn.is_autocommit() {
                *lock(&writer) = Some(current);
            }
        });
        let done = job.await.map_err(|e| {
            Error::new(ErrorKind::Internal, "a sqlite store task failed").with_source(e)
        });
        self.checkpoint_soon();
        done
    }

    /// Runs `f` on the blocking pool with a read connection. `f` is on the blocking pool before
    /// this awaits a second time.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let slot = acquire(&self.slots).await?;
        let idle = self.take_idle();
        let path = self.path.clone();
        let pool = Arc::clone(&self.idle);
        // The permit moves into the blocking task, so it is released only when the work is
        // done, even if the caller stops waiting; the connection goes back to the pool there
        // too, so a caller that stops waiting does not cost the pool a connection.
        let job = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let mut conn = match idle {
                Some(conn) => conn,
                None => open_connection(&path)?,
            };
            let out = f(&mut conn);
            // A connection left inside a transaction (a failed rollback) is not reused.
            if conn.is_autocommit() {
                put_idle(&pool, conn);
            }
            out
        });
        job.await.map_err(|e| {
            Error::new(ErrorKind::Internal, "a sqlite store task failed").with_source(e)
        })?
    }

    fn take_idle(&self) -> Option<Connection> {
        match self.idle.lock() {
            Ok(mut idle) => idle.pop(),
            Err(poisoned) => poisoned.into_inner().pop(),
        }
    }
}

/// Returns `conn` to the idle list.
fn put_idle(idle: &Mutex<Vec<Connection>>, conn: Connection) {
    match idle.lock() {
        Ok(mut idle) => idle.push(conn),
        Err(poisoned) => poisoned.into_inner().push(conn),
    }
}

/// Restarts the log after a checkpoint copied all of it, when no write is queued or running:
/// SQLite starts the log over from its beginning at the first write after such a checkpoint,
/// and syncs the new log header then, even at `synchronous=NORMAL`. Left to the next write,
/// that sync falls on a caller (a relaxed write otherwise syncs nothing); done here, on the
/// writer under the write gate, by a write that changes nothing (`user_version` set to what it
/// is: one frame, page 1), it is paid in the background. A write arriving meanwhile waits for it
/// as for any batch, no longer than it would have synced itself.
fn restart_log(gate: &Arc<Semaphore>, writer: &Mutex<Option<Writer>>) {
    let Ok(_gate) = Arc::clone(gate).try_acquire_owned() else {
        return;
    };
    // Not opened yet, or a batch left it unusable: the next write restarts the log itself.
    let Some(mut current) = lock(writer).take() else {
        return;
    };
    let restarted = current
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .and_then(|tx| {
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        });
    if let Err(e) = restarted {
        tracing::debug!(error = %e, "sqlite store could not restart its log");
    }
    // A writer left inside a transaction (a failed rollback) is not reused.
    if current.conn.is_autocommit() {
        *lock(writer) = Some(current);
    }
}

/// Runs `jobs` in order in one `BEGIN IMMEDIATE` transaction (each in its own savepoint),
/// commits, and tells each its outcome. Should SQLite roll the whole transaction back on its
/// own (a full disk, an I/O error), the writes already run in it are told so, and the rest go on
/// in a new transaction. Each batch first sets the writer's `synchronous` to its own durability
/// (`FULL`, or `NORMAL` for a relaxed batch) unless it has it already, so no relaxed setting is
/// carried into a full batch.
fn run_batch(writer: &mut Writer, jobs: Vec<Job>, durability: Durability) {
    let mode = match durability {
        Durability::Full => "FULL",
        Durability::Relaxed => "NORMAL",
    };
    let conn = &mut writer.conn;
    let set = if writer.synchronous == Some(durability) {
        Ok(())
    } else {
        conn.pragma_update(None, "synchronous", mode)
    };
    match set {
        Ok(()) => writer.synchronous = Some(durability),
        Err(e) => {
            writer.synchronous = None;
            if durability == Durability::Full {
                // Not sure to be synced: refuse rather than report a write durable that is not.
                let e = db_error(e);
                for job in jobs {
                    job(None)(Some(&e));
                }
                return;
            }
            // A relaxed batch may be synced all the same.
            tracing::debug!(error = %e, "sqlite store could not relax a batch's sync");
        }
    }
    run_transactions(conn, jobs);
}

fn run_transactions(conn: &mut Connection, jobs: Vec<Job>) {
    let mut jobs: VecDeque<Job> = jobs.into();
    while !jobs.is_empty() {
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let e = db_error(e);
                for job in jobs {
                    job(None)(Some(&e));
                }
                return;
            }
        };
        let mut ran: Vec<Deliver> = Vec::with_capacity(jobs.len());
        let mut lost = false;
        while let Some(job) = jobs.pop_front() {
            let deliver = job(Some(&tx));
            if tx.is_autocommit() {
                // SQLite ended the transaction itself: what ran in it is gone.
                let e = Error::new(
                    ErrorKind::Store,
                    "the sqlite store rolled back a transaction: check the disk",
                );
                for d in ran.drain(..) {
                    d(Some(&e));
                }
                deliver(Some(&e));
                lost = true;
                break;
            }
            ran.push(deliver);
        }
        if lost {
            continue;
        }
        let committed = tx.commit().map_err(db_error);
        let failed = committed.err();
        for deliver in ran {
            deliver(failed.as_ref());
        }
    }
}

/// `f` as a write of a batch, and where its caller learns the outcome: `f`'s result once the
/// batch committed, else why it did not.
fn job<T, F>(f: F) -> (Job, oneshot::Receiver<Result<T>>)
where
    T: Send + 'static,
    F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
{
    let (sender, receiver) = oneshot::channel::<Result<T>>();
    let job: Job = Box::new(move |tx| {
        let out = match tx {
            Some(tx) => in_savepoint(tx, f),
            None => Err(not_run()),
        };
        Box::new(move |failed: Option<&Error>| {
            let result = match (out, failed) {
                (Ok(value), None) => Ok(value),
                (Err(e), _) => Err(e),
                (Ok(_), Some(e)) => Err(batch_error(e)),
            };
            // The caller may have stopped waiting: nobody to tell.
            let _ = sender.send(result);
        })
    });
    (job, receiver)
}

/// Runs `f` in a savepoint of `tx`: released when `f` succeeds, rolled back to when it fails.
fn in_savepoint<T, F>(tx: &Transaction<'_>, f: F) -> Result<T>
where
    F: FnOnce(&Transaction<'_>) -> Result<T>,
{
    // Cached: parsed once per writer, not once per write.
    tx.prepare_cached("SAVEPOINT write")
        .and_then(|mut s| s.execute([]))
        .map_err(db_error)?;
    let out = f(tx);
    let ended = match &out {
        Ok(_) => tx
            .prepare_cached("RELEASE write")
            .and_then(|mut s| s.execute([]))
            .map(drop),
        Err(_) => tx.execute_batch("ROLLBACK TO write; RELEASE write"),
    };
    match (out, ended) {
        (Ok(value), Ok(())) => Ok(value),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => {
            // Not released: undo it, so nothing of a write reported failed is committed.
            let _ = tx.execute_batch("ROLLBACK TO write; RELEASE write");
            Err(db_error(e))
        }
    }
}

/// The error a write is told when its batch did not commit (errors are not `Clone`).
fn batch_error(e: &Error) -> Error {
    Error::new(e.kind(), e.message().to_owned())
}

fn not_run() -> Error {
    Error::new(ErrorKind::Store, "the sqlite store could not run the write")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Removes the write with `ticket` from the queue; whether it was still there.
fn unqueue(queue: &Mutex<WriteQueue>, ticket: u64) -> bool {
    let mut queue = lock(queue);
    match queue.jobs.iter().position(|(t, _, _)| *t == ticket) {
        Some(at) => queue.jobs.remove(at).is_some(),
        None => false,
    }
}

/// Takes a write out of the queue when its caller stops waiting before a committer took it.
struct Unqueue<'a> {
    queue: &'a Mutex<WriteQueue>,
    ticket: u64,
}

impl Drop for Unqueue<'_> {
    fn drop(&mut self) {
        unqueue(self.queue, self.ticket);
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

/// Opens the writer: a connection of the store whose commits never checkpoint the log
/// themselves (the pool does, in the background).
fn open_writer(path: &std::path::Path) -> Result<Connection> {
    let conn = open_connection(path)?;
    conn.execute_batch(&format!(
        "PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = {WRITER_CACHE};"
    ))
    .map_err(db_error)?;
    Ok(conn)
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
    // A page cache of up to 8 MiB per reader (SQLite's default is 2 MiB): a search walks
    // thousands of index and search-row pages, which then stay cached between calls on an idle
    // store. No more: a reader's whole cache is dropped whenever another connection committed
    // since its last read (the monitor commits many times a second), so a larger one buys
    // nothing while the monitor runs and would only hold the memory a big read left behind, up
    // to the cap on each of the pool's connections. The writer keeps a larger one
    // ([`WRITER_CACHE`]).
    conn.execute_batch("PRAGMA cache_size = -8192;")
        .map_err(db_error)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn idle_count(pool: &Pool) -> usize {
        pool.idle.lock().map(|idle| idle.len()).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_does_not_cost_the_pool_its_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.db");
        let pool = Pool::new(path.clone(), open_connection(&path).unwrap());
        assert_eq!(idle_count(&pool), 1);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let read = pool.read(move |conn| {
            started_tx.send(()).unwrap();
            finish_rx.recv().unwrap();
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map_err(|e| Error::new(ErrorKind::Store, "select").with_source(e))
        });
        // The caller gives up while the work runs on the blocking pool.
        let gave_up = tokio::time::timeout(Duration::from_millis(50), read).await;
        assert!(gave_up.is_err());
        started_rx.recv().unwrap();
        assert_eq!(idle_count(&pool), 0, "the connection is in use");
        finish_tx.send(()).unwrap();
        // Once the work is done the connection is back, without anyone awaiting it.
        for _ in 0..200 {
            if idle_count(&pool) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(idle_count(&pool), 1);
        assert_eq!(pool.read(|_| Ok(7)).await.unwrap(), 7);
    }
}

#[cfg(test)]
mod write_tests {
    use super::*;

    /// A pool over a new file holding one empty table `t`; the folder lives as long as the guard.
    async fn pool_with_table() -> (tempfile::TempDir, Pool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.db");
        let pool = Pool::new(path.clone(), open_connection(&path).unwrap());
        pool.write(|tx| {
            tx.execute_batch("CREATE TABLE t (v INTEGER)")
                .map_err(db_error)
        })
        .await
        .unwrap();
        (dir, pool)
    }

    /// Inserts `n` rows into `t` in one relaxed write.
    async fn insert_many(pool: &Pool, n: i64) {
        pool.write_relaxed(move |tx| {
            tx.execute(
                "WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s \
                 WHERE v < ?1) INSERT INTO t SELECT v FROM s",
                [n],
            )
            .map_err(db_error)
        })
        .await
        .unwrap();
    }

    async fn count_rows(pool: &Pool) -> i64 {
        pool.read(|c| {
            c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .map_err(db_error)
        })
        .await
        .unwrap()
    }

    /// The log is checkpointed in the background, off the writer, long before SQLite's own
    /// 1,000-page threshold: a few small writes reach the database file itself (not only the
    /// log) without any explicit checkpoint, and the writer's own commits never checkpoint.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_is_checkpointed_in_the_background() {
        let (dir, pool) = pool_with_table().await;
        let auto: i64 = pool
            .write_relaxed(|tx| {
                tx.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
                    .map_err(db_error)
            })
            .await
            .unwrap();
        assert_eq!(auto, 0, "the writer's commits must not checkpoint");
        let file = dir.path().join("pool.db");
        let before = std::fs::metadata(&file).unwrap().len();
        // About 50 pages of 4 KiB, in a few writes: far below SQLite's threshold.
        for _ in 0..5 {
            insert_many(&pool, 10_000).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            // Each write after the pause may start the next checkpoint.
            tokio::time::sleep(CHECKPOINT_EVERY + Duration::from_millis(100)).await;
            pool.write_relaxed(|tx| tx.execute("INSERT INTO t VALUES (0)", []).map_err(db_error))
                .await
                .unwrap();
            if std::fs::metadata(&file).unwrap().len() > before + 100_000 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the log was never checkpointed into the file"
            );
        }
    }

    /// After a checkpoint copied the whole log, the checkpointer starts the log over itself
    /// (the writer's next write would otherwise, and sync its header then): the log soon holds
    /// one frame, the restart's, which changed nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_copied_whole_is_restarted_in_the_background() {
        let (dir, pool) = pool_with_table().await;
        let path = dir.path().join("pool.db");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let frames: i64 = open_connection(&path)
                .unwrap()
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                .unwrap();
            if frames == 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the log was not restarted: {frames} frames"
            );
            // The next write after the pause starts the next checkpoint; it fills a few pages,
            // so a log it restarted itself holds more than one frame.
            tokio::time::sleep(CHECKPOINT_EVERY).await;
            insert_many(&pool, 2_000).await;
        }
        let version: i64 = pool
            .read(|c| {
                c.query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(db_error)
            })
            .await
            .unwrap();
        assert_eq!(version, 0, "the restart changed nothing");
    }

    /// Every write runs on the one writer: SQLite's `data_version` (which changes for a
    /// connection when another connection committed) stays the same across writes, reads in
    /// between or not, and concurrent writes too.
    #[tokio::test]
    async fn every_write_runs_on_one_connection_whose_cache_stays_valid() {
        let (_dir, pool) = pool_with_table().await;
        let version = |tx: &Transaction<'_>| -> Result<i64> {
            tx.query_row("PRAGMA data_version", [], |r| r.get(0))
                .map_err(db_error)
        };
        let first = pool.write_relaxed(version).await.unwrap();
        for i in 0..20 {
            let (a, b, read) = tokio::join!(
                pool.write_relaxed(move |tx| {
                    tx.execute("INSERT INTO t VALUES (?1)", [i])
                        .map_err(db_error)?;
                    version(tx)
                }),
                pool.write(version),
                count_rows(&pool),
            );
            assert_eq!((a.unwrap(), b.unwrap()), (first, first), "write {i}");
            assert!(read >= i);
        }
        let rows = count_rows(&pool).await;
        assert_eq!(rows, 20);
    }

    fn synchronous(tx: &Transaction<'_>) -> Result<i64> {
        tx.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(db_error)
    }

    #[tokio::test]
    async fn a_relaxed_write_commits_unsynced_and_never_relaxes_a_full_one() {
        let (_dir, pool) = pool_with_table().await;
        // 2 = FULL, 1 = NORMAL (SQLite's numbering).
        let relaxed = pool
            .write_relaxed(|tx| {
                tx.execute("INSERT INTO t VALUES (1)", [])
                    .map_err(db_error)?;
                synchronous(tx)
            })
            .await
            .unwrap();
        assert_eq!(relaxed, 1);
        // The same (only) connection, next batch: synced again.
        let full = pool
            .write(|tx| {
                tx.execute("INSERT INTO t VALUES (2)", [])
                    .map_err(db_error)?;
                synchronous(tx)
            })
            .await
            .unwrap();
        assert_eq!(full, 2);
        let rows = count_rows(&pool).await;
        assert_eq!(rows, 2);
        // A full write queued with relaxed ones (whether or not they share its batch) is
        // synced.
        let (relaxed, full) =
            tokio::join!(pool.write_relaxed(synchronous), pool.write(synchronous));
        relaxed.unwrap();
        assert_eq!(full.unwrap(), 2);
    }

    /// A short relaxed write runs on the caller's thread when nothing else writes, on the one
    /// writer and unsynced like a queued relaxed write; a failing one changes nothing; behind
    /// a write that holds the gate it is queued, and runs after it.
    #[tokio::test]
    async fn a_short_write_runs_inline_on_the_writer_when_nothing_else_writes() {
        let (_dir, pool) = pool_with_table().await;
        let version = |tx: &Transaction<'_>| -> Result<i64> {
            tx.query_row("PRAGMA data_version", [], |r| r.get(0))
                .map_err(db_error)
        };
        let first = pool.write_relaxed(version).await.unwrap();
        let caller = std::thread::current().id();
        let (thread, data_version, sync) = pool
            .write_relaxed_short(move |tx| {
                tx.execute("INSERT INTO t VALUES (1)", [])
                    .map_err(db_error)?;
                Ok((std::thread::current().id(), version(tx)?, synchronous(tx)?))
            })
            .await
            .unwrap();
        assert_eq!(thread, caller, "inline");
        assert_eq!((data_version, sync), (first, 1), "on the writer, unsynced");
        let failed = pool
            .write_relaxed_short(|tx| {
                tx.execute("INSERT INTO t VALUES (2)", [])
                    .map_err(db_error)?;
                Err::<(), _>(Error::new(ErrorKind::Store, "refused"))
            })
            .await;
        assert_eq!(failed.unwrap_err().message(), "refused");
        assert_eq!(
            count_rows(&pool).await,
            1,
            "the failed write was rolled back"
        );
        // A write holding the gate: the short one waits for it and runs after it.
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let slow = pool.write(move |tx| {
            let _ = started_tx.send(());
            finish_rx.recv().map_err(|_| not_run())?;
            tx.execute("INSERT INTO t VALUES (10)", [])
                .map_err(db_error)
        });
        let short = async {
            started_rx.await.unwrap();
            let queued = pool.write_relaxed_short(|tx| {
                tx.query_row("SELECT max(v) FROM t", [], |r| r.get::<_, i64>(0))
                    .map_err(db_error)
            });
            let finish = async {
                tokio::task::yield_now().await;
                finish_tx.send(()).unwrap();
            };
            tokio::join!(queued, finish).0
        };
        let (slow, seen) = tokio::join!(slow, short);
        slow.unwrap();
        assert_eq!(seen.unwrap(), 10, "ran after the write ahead of it");
        assert_eq!(count_rows(&pool).await, 2);
    }
}
