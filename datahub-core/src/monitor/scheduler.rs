//! The scheduler: a wheel of every enabled connection's due time (a compact slot each), a
//! dispatcher starting each check as it falls due in a task that lives only while the check
//! does, a supervisor applying changes, a claimer and a recorder batching the store work, a
//! pruner. The rules are in the module docs of [`crate::monitor`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::shares::Shares;
use super::status::{HysteresisConfig, Tracker};
use super::uptime::{self, UptimeWindow};
use super::{CheckResult, Checker, MonitorEvent};
use crate::ConnectionId;
use crate::audit::{AuditEvent, Outcome, truncate_to_micros};
use crate::model::{
    AuditQuery, Check, Connection, FailureKind, Health, HealthStatus, ListQuery, MAX_PER_PAGE,
    SortKey, StepName, Visibility,
};
use crate::store::{CheckLease, Store};

/// Each next check is due one interval after the previous due time, ± up to this share of the
/// interval, drawn at random: 10 %.
pub const JITTER_PERCENT: u32 = 10;

/// An edited connection is checked again within this time (or its interval, when shorter).
const RECHECK_AFTER_EDIT: Duration = Duration::from_secs(5);

/// The most checks claimed, or results recorded, in one store call: a write stays short, so a
/// check's claim or record never waits long behind a big batch.
const MAX_BATCH: usize = 256;

/// The longest payload told to other processes at once (several events, one a line): under
/// PostgreSQL's `NOTIFY` limit of 8,000 bytes.
const EVENT_PAYLOAD_MAX: usize = 7_900;

/// How the monitor runs. `Default`: the documented default of every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorConfig {
    /// The `fall`/`rise` thresholds. Default: 3 and 2.
    pub hysteresis: HysteresisConfig,
    /// The main lane: the most checks in flight at once of connections whose last check
    /// succeeded (0 counts as 1). Default: 64. Checks overall are bounded by this plus
    /// `suspect_concurrency`.
    pub max_concurrency: usize,
    /// The suspect lane: the most checks in flight at once of connections whose last check
    /// failed or timed out (0 counts as 1). Default: 16. Kept apart from the main lane so a
    /// flood of dead or stalled targets, each holding its permit until `check_timeout`, can only
    /// fill this lane and never delays a healthy target's check (S23).
    pub suspect_concurrency: usize,
    /// The first-check lane: the most first checks in flight at once of connections never
    /// checked before (0 counts as 1). Default: 16. Apart from both other lanes: an unknown
    /// target may be dead, so it must not take a healthy target's permit, and a connection just
    /// saved must not wait behind the backlog of known-dead targets in the suspect lane.
    pub first_check_concurrency: usize,
    /// How long one check may take before the monitor drops it and records a `timeout`
    /// failure: the prober's budget (5 s at most) plus a margin for loading and decrypting the
    /// connection and for scheduling. Default: 10 s.
    pub check_timeout: Duration,
    /// How long raw checks are kept, as the API and UI show them in detail; older ones are
    /// rolled up into 5-minute buckets ([`HealthBucket`](crate::model::HealthBucket)).
    /// Default: 24 h, the span of the uptime and of the UI's chart (which read the buckets
    /// too, so a shorter window changes neither).
    pub detail_window: Duration,
    /// How long buckets are kept. Default: 30 days.
    pub bucket_retention: Duration,
    /// How often raw checks older than `detail_window` are rolled up and buckets older than
    /// `bucket_retention` deleted (also once at start; at least 1 s). Default: 1 h.
    pub prune_interval: Duration,
    /// The most rows one roll-up or deletion batch handles, each batch its own short
    /// transaction (0 counts as 1). Default: 1,000. Batches start at this size and shrink
    /// (to 50 rows at least) while they take longer than [`PRUNE_BATCH_TARGET`] ([`PruneBatch`]),
    /// so a batch stays short (the `history` bench measures it on both stores) and no write
    /// waits long behind the pruner, not even on SQLite's one writer.
    pub prune_batch_rows: u32,
    /// The pause between two batches, which lets the writes queued meanwhile through.
    /// Default: 10 ms.
    pub prune_batch_pause: Duration,
    /// How often changes not told through [`Monitor::notify_changed`] (made by another process
    /// sharing the store) are looked for in the store's changes feed, the audit log (at least
    /// 1 s). Default: 60 s. Only the connections changed since are read again; every
    /// connection is read only at start (and should the feed show a gap).
    pub reload_interval: Duration,
    /// Events a subscriber may fall behind before it loses the oldest (0 counts as 1).
    /// Default: 1,024.
    pub event_capacity: usize,
    /// How long the claimer waits, after the first due check of a batch, for more checks
    /// falling due to join its store call (at most 256 a call): a check starts at most this
    /// much later than it would alone. Default: 5 ms.
    pub claim_window: Duration,
    /// How long the recorder waits, after the first finished check of a batch, for more to
    /// join its store write (at most 256 a write): a check is stored, and its events
    /// published, at most this much later than alone. Default: 100 ms (a check's next one is
    /// an interval away, so only live views wait for it; every write costs the store a
    /// transaction, and on SQLite this process a commit, whatever its size).
    pub record_window: Duration,
    /// How often the monitor tells the store it is alive and learns which other monitors
    /// sharing the store are ([`HealthStore::beat`](crate::store::HealthStore::beat)), to split
    /// the checks with them (at least 100 ms). Default: 1 s.
    pub replica_heartbeat: Duration,
    /// How long a monitor not heard of counts as live: after that its share goes to the
    /// others (at least twice `replica_heartbeat`). Default: 5 s.
    pub replica_timeout: Duration,
}

impl MonitorConfig {
    /// The default bound on main-lane checks in flight: 64.
    pub const DEFAULT_MAX_CONCURRENCY: usize = 64;
    /// The default bound on suspect checks in flight: 16.
    pub const DEFAULT_SUSPECT_CONCURRENCY: usize = 16;
    /// The default bound on first checks in flight: 16.
    pub const DEFAULT_FIRST_CHECK_CONCURRENCY: usize = 16;
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            hysteresis: HysteresisConfig::default(),
            max_concurrency: Self::DEFAULT_MAX_CONCURRENCY,
            suspect_concurrency: Self::DEFAULT_SUSPECT_CONCURRENCY,
            first_check_concurrency: Self::DEFAULT_FIRST_CHECK_CONCURRENCY,
            check_timeout: Duration::from_secs(10),
            detail_window: Duration::from_secs(24 * 3600),
            bucket_retention: Duration::from_secs(30 * 24 * 3600),
            prune_interval: Duration::from_secs(3600),
            prune_batch_rows: 1_000,
            prune_batch_pause: Duration::from_millis(10),
            reload_interval: Duration::from_secs(60),
            event_capacity: 1024,
            claim_window: Duration::from_millis(5),
            record_window: Duration::from_millis(100),
            replica_heartbeat: Duration::from_secs(1),
            replica_timeout: Duration::from_secs(5),
        }
    }
}

/// Counters since start, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonitorStats {
    /// Connections monitored now.
    pub connections: u64,
    /// Checks finished (recorded or not).
    pub checks: u64,
    /// Checks finished that failed, timeouts included (so `checks - failures` succeeded).
    pub failures: u64,
    /// Checks cut off by [`MonitorConfig::check_timeout`].
    pub timeouts: u64,
    /// Checks skipped because the previous check of the same connection was still running (or
    /// waiting for a permit) when they were due.
    pub skipped: u64,
    /// Store calls that failed (retried on the next round).
    pub store_errors: u64,
    /// Raw checks rolled up into buckets (and deleted).
    pub rolled_up: u64,
    /// Hours of buckets deleted once older than [`MonitorConfig::bucket_retention`].
    pub pruned: u64,
    /// Checks run in the suspect lane (the connection's last check failed or timed out).
    pub suspect_checks: u64,
    /// Checks run in the first-check lane (the connection had never been checked).
    pub first_checks: u64,
    /// The longest a main-lane check started after its due time (waiting for a permit, or for
    /// its task to be polled), to the microsecond.
    pub max_main_lane_wait: Duration,
    /// Due checks not run because another process sharing the store had claimed them
    /// ([`HealthStore::lease_check`](crate::store::HealthStore::lease_check)).
    pub leases_lost: u64,
    /// Due checks left alone because they are another live monitor's share (no store call):
    /// see [`crate::monitor`], "Shares".
    pub not_home: u64,
    /// The monitors sharing the store this one saw live at its last heartbeat, itself
    /// included (1 alone, and on SQLite).
    pub live_monitors: u64,
    /// Events received from other processes sharing the store and published here.
    pub remote_events: u64,
    /// Due checks not made because the checker did not admit them ([`Checker::admit`]: the
    /// first check after a save, when the saving user's test budget was spent).
    pub deferred: u64,
    /// Store calls made to claim due checks (each claims one or more): with
    /// [`Self::checks`], the claims' store round trips per check.
    pub lease_calls: u64,
    /// Store calls made to record finished checks (each records one or more): with
    /// [`Self::checks`], the records' store round trips per check.
    pub record_calls: u64,
}

/// A running monitor: started by [`Monitor::start`] (or [`Hub::start_monitor`](crate::hub::Hub::start_monitor)),
/// stopped by [`Monitor::shutdown`] or by dropping it (without waiting).
#[derive(Debug)]
pub struct Monitor {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Monitor {
    /// Starts monitoring every enabled connection of `store`, checking with `checker`.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn start(store: Arc<dyn Store>, checker: Arc<dyn Checker>, config: MonitorConfig) -> Self {
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let (commands, receiver) = mpsc::unbounded_channel();
        let (claims, claim_requests) = mpsc::unbounded_channel();
        let (results, finished) = mpsc::unbounded_channel();
        let remote = store.subscribe_events();
        let id = Uuid::now_v7();
        let shared = Arc::new(Shared {
            id,
            store,
            checker,
            claims,
            results,
            shares_events: remote.is_some(),
            main_lane: Arc::new(Semaphore::new(config.max_concurrency.max(1))),
            suspect_lane: Arc::new(Semaphore::new(config.suspect_concurrency.max(1))),
            first_lane: Arc::new(Semaphore::new(config.first_check_concurrency.max(1))),
            config,
            wheel: Mutex::new(Wheel::default()),
            shares: Mutex::new(Shares::alone(id)),
            wake: Notify::new(),
            events,
            counters: Counters::default(),
            tasks: TaskTracker::new(),
            cancel: CancellationToken::new(),
        });
        shared.tasks.spawn(supervise(Arc::clone(&shared), receiver));
        shared.tasks.spawn(dispatch(Arc::clone(&shared)));
        shared
            .tasks
            .spawn(claimer(Arc::clone(&shared), claim_requests));
        shared.tasks.spawn(recorder(Arc::clone(&shared), finished));
        shared.tasks.spawn(prune(Arc::clone(&shared)));
        shared.counters.live_monitors.store(1, Ordering::Relaxed);
        shared.tasks.spawn(members(Arc::clone(&shared)));
        if let Some(remote) = remote {
            shared
                .tasks
                .spawn(relay(Arc::clone(&shared), remote, commands.clone()));
        }
        tracing::info!(monitor = %shared.id, "health monitor started");
        Self { shared, commands }
    }

    /// A receiver of every event published from now on. A receiver more than
    /// [`MonitorConfig::event_capacity`] events behind loses the oldest (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<MonitorEvent> {
        self.shared.events.subscribe()
    }

    /// Tells the monitor a connection was created or edited (including monitoring turned on or
    /// off); it reloads that connection and publishes [`MonitorEvent::ConnectionChanged`].
    /// The Hub tells the monitor it started of every change made through it; this is for a
    /// monitor started on its own.
    pub fn notify_changed(&self, id: ConnectionId) {
        // A closed channel means the monitor has stopped: nothing to tell.
        let _ = self.commands.send(Command::Changed(id, Origin::Here));
    }

    /// Tells the monitor a connection was deleted; it stops checking it and publishes
    /// [`MonitorEvent::ConnectionDeleted`]. As for [`Self::notify_changed`], the Hub does this
    /// itself for the monitor it started.
    pub fn notify_deleted(&self, id: ConnectionId) {
        let _ = self.commands.send(Command::Deleted(id, Origin::Here));
    }

    /// This monitor's id: the holder of its check leases and the origin of the events it tells
    /// other processes.
    pub fn id(&self) -> Uuid {
        self.shared.id
    }

    /// The counters since start.
    pub fn stats(&self) -> MonitorStats {
        self.shared.counters.snapshot()
    }

    /// How many of the monitor's tasks are still running (0 after [`Self::shutdown`]).
    pub fn running_tasks(&self) -> usize {
        self.shared.tasks.len()
    }

    /// Stops every task and waits for them to end: checks in flight are dropped, a store write
    /// already started is finished. Calling it again returns at once.
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }

    /// What the Hub keeps of the monitor it started, to tell it of changes and subscribe to its
    /// events without keeping it alive.
    pub(crate) fn link(&self) -> MonitorLink {
        MonitorLink {
            shared: Arc::downgrade(&self.shared),
            commands: self.commands.clone(),
        }
    }
}

/// A weak link to a running [`Monitor`]: every call is a no-op (answering `false` or `None`)
/// once the monitor has stopped or been dropped.
#[derive(Debug, Clone)]
pub(crate) struct MonitorLink {
    shared: Weak<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

impl MonitorLink {
    /// The monitor's state while it runs.
    fn running(&self) -> Option<Arc<Shared>> {
        self.shared
            .upgrade()
            .filter(|shared| !shared.cancel.is_cancelled())
    }

    /// As [`Monitor::notify_changed`]; false when the monitor has stopped.
    pub(crate) fn notify_changed(&self, id: ConnectionId) -> bool {
        self.running().is_some()
            && self
                .commands
                .send(Command::Changed(id, Origin::Here))
                .is_ok()
    }

    /// As [`Monitor::notify_deleted`]; false when the monitor has stopped.
    pub(crate) fn notify_deleted(&self, id: ConnectionId) -> bool {
        self.running().is_some()
            && self
                .commands
                .send(Command::Deleted(id, Origin::Here))
                .is_ok()
    }

    /// As [`Monitor::subscribe`]; `None` when the monitor has stopped.
    pub(crate) fn subscribe(&self) -> Option<broadcast::Receiver<MonitorEvent>> {
        self.running().map(|shared| shared.events.subscribe())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
    }
}

#[derive(Debug)]
struct Shared {
    /// This monitor's id (lease holder, event origin).
    id: Uuid,
    store: Arc<dyn Store>,
    checker: Arc<dyn Checker>,
    /// Due checks to claim, batched by [`claimer`].
    claims: mpsc::UnboundedSender<ClaimRequest>,
    /// Finished checks to record and publish, batched by [`recorder`].
    results: mpsc::UnboundedSender<Finished>,
    /// Whether other processes share the store's events (a store that has no subscription has
    /// nobody to tell: events are then not even encoded).
    shares_events: bool,
    config: MonitorConfig,
    /// Permits for connections whose last check succeeded.
    main_lane: Arc<Semaphore>,
    /// Permits for connections whose last check failed or timed out.
    suspect_lane: Arc<Semaphore>,
    /// Permits for connections never checked.
    first_lane: Arc<Semaphore>,
    /// Every monitored connection and its due time.
    wheel: Mutex<Wheel>,
    /// The live monitors sharing the store as last seen, and so which checks are this one's
    /// ([`members`]).
    shares: Mutex<Shares>,
    /// Wakes the dispatcher when a due time was queued (it may be sooner than the one it waits
    /// for).
    wake: Notify,
    events: broadcast::Sender<MonitorEvent>,
    counters: Counters,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Shared {
    /// The wheel, locked (only ever briefly, never across an await; a panic while holding it
    /// leaves it usable).
    fn wheel(&self) -> MutexGuard<'_, Wheel> {
        self.wheel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `id`'s checks are this monitor's share (always, with no other monitor live).
    fn is_mine(&self, id: ConnectionId) -> bool {
        self.shares
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_mine(id)
    }

    fn publish(&self, event: MonitorEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    /// Publishes `event` here and tells the other processes sharing the store.
    async fn publish_shared(&self, event: MonitorEvent) {
        if !self.shares_events {
            self.publish(event);
            return;
        }
        let payload = encode_event(self.id, &event);
        self.publish(event);
        self.tell(&payload).await;
    }

    /// Tells the other processes sharing the store a payload of one or more events.
    async fn tell(&self, payload: &str) {
        if let Err(e) = self.store.notify_event(payload).await {
            tracing::warn!(error = %e, "monitor could not tell other processes an event");
            Counters::bump(&self.counters.store_errors, 1);
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicU64,
    checks: AtomicU64,
    failures: AtomicU64,
    timeouts: AtomicU64,
    skipped: AtomicU64,
    store_errors: AtomicU64,
    rolled_up: AtomicU64,
    pruned: AtomicU64,
    suspect_checks: AtomicU64,
    first_checks: AtomicU64,
    max_main_lane_wait_us: AtomicU64,
    leases_lost: AtomicU64,
    not_home: AtomicU64,
    live_monitors: AtomicU64,
    remote_events: AtomicU64,
    deferred: AtomicU64,
    lease_calls: AtomicU64,
    record_calls: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> MonitorStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MonitorStats {
            connections: get(&self.connections),
            checks: get(&self.checks),
            failures: get(&self.failures),
            timeouts: get(&self.timeouts),
            skipped: get(&self.skipped),
            store_errors: get(&self.store_errors),
            rolled_up: get(&self.rolled_up),
            pruned: get(&self.pruned),
            suspect_checks: get(&self.suspect_checks),
            first_checks: get(&self.first_checks),
            max_main_lane_wait: Duration::from_micros(get(&self.max_main_lane_wait_us)),
            leases_lost: get(&self.leases_lost),
            not_home: get(&self.not_home),
            live_monitors: get(&self.live_monitors),
            remote_events: get(&self.remote_events),
            deferred: get(&self.deferred),
            lease_calls: get(&self.lease_calls),
            record_calls: get(&self.record_calls),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Command {
    Changed(ConnectionId, Origin),
    Deleted(ConnectionId, Origin),
}

/// Where a change was told: through this process's handle (published here and told to the
/// other processes) or by another process (published here only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Here,
    Elsewhere,
}

/// What the checks of a connection need to know of its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    version: u64,
    interval_s: u32,
    slow_ms: u32,
}

impl Settings {
    fn of(summary: &Connection) -> Self {
        let monitoring = summary.spec.monitoring;
        Self {
            version: summary.version,
            interval_s: monitoring.interval_s().max(1),
            slow_ms: monitoring.slow_ms(),
        }
    }

    fn interval(self) -> Duration {
        Duration::from_secs(self.interval_s.into())
    }
}

/// Every monitored connection and when each is next due: all the scheduler keeps per
/// connection between checks. Shared by the supervisor (which adds, updates and removes
/// connections), the dispatcher (which starts the checks falling due) and the check tasks
/// (which hand each connection back when its check is done), each holding the lock briefly.
#[derive(Debug, Default)]
struct Wheel {
    slots: HashMap<ConnectionId, Slot>,
    /// Due times, earliest first: `(due, connection, turn)`. An entry whose turn is not its
    /// slot's current one was replaced (the due time moved) and is skipped.
    queue: BinaryHeap<Reverse<(Instant, ConnectionId, u32)>>,
    /// The ticket of the next check started (tells a finishing check it is still the slot's).
    next_ticket: u64,
    /// Due connections waiting for a permit, per lane (main, suspect, first check), in the
    /// order they fell due. An id whose slot is no longer queued is skipped.
    lanes: [VecDeque<ConnectionId>; 3],
}

/// One monitored connection.
#[derive(Debug)]
struct Slot {
    settings: Settings,
    /// When its next check is due (while in flight: when the check in flight was due).
    due: Instant,
    /// Bumped whenever `due` is queued anew.
    turn: u32,
    rng: Rng,
    phase: Phase,
}

/// Whether a connection waits for its due time or has its check in flight.
#[derive(Debug)]
enum Phase {
    /// Waiting, with what its next check starts from.
    Waiting(Known),
    /// Due, waiting in its lane's queue for a permit (no task yet).
    Queued {
        known: Known,
        /// A change told meanwhile, applied to the next due time once the check is done.
        changed: Option<Change>,
    },
    /// Its check is in flight (the task has what the check starts from, and hands it back).
    InFlight {
        ticket: u64,
        /// Cancels the check (the connection was removed, or the monitor stops).
        cancel: CancellationToken,
        /// A change told while the check ran, applied to the next due time once it is done.
        changed: Option<Change>,
    },
}

/// A change of settings that moves a connection's next check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// The connection was edited: an edited target is worth checking again soon.
    Edited,
    /// Only its interval changed.
    Interval,
}

/// What the monitor knows of a connection between two checks.
#[derive(Debug)]
enum Known {
    /// What the store told when the monitor found the connection (not yet checked here): its
    /// state is loaded from the store at its first won claim.
    Stored(Stored),
    /// Its state, kept from check to check.
    Tracked(State),
}

/// A connection's stored health, as much of it as a first check needs.
#[derive(Debug, Clone, Copy)]
struct Stored {
    status: HealthStatus,
    latency_ms: Option<u32>,
    /// Whether its last stored check succeeded (`None`: never checked): picks the lane.
    last_ok: Option<bool>,
}

impl Stored {
    fn of(health: &Health) -> Self {
        Self {
            status: health.status,
            latency_ms: health.latency_ms,
            // A failed check stores its failure kind; a success none.
            last_ok: health.checked_at.map(|_| health.error_kind.is_none()),
        }
    }
}

impl Known {
    fn last_ok(&self) -> Option<bool> {
        match self {
            Self::Stored(stored) => stored.last_ok,
            Self::Tracked(state) => state.last_ok,
        }
    }
}

/// The lane of a check: 0 main (last check succeeded), 1 suspect (failed), 2 first check.
fn lane_of(last_ok: Option<bool>) -> usize {
    match last_ok {
        Some(true) => 0,
        Some(false) => 1,
        None => 2,
    }
}

/// A due check, handed by the dispatcher to a task of its own.
#[derive(Debug)]
struct Job {
    id: ConnectionId,
    ticket: u64,
    settings: Settings,
    due: Instant,
    cancel: CancellationToken,
}

impl Wheel {
    /// Queues `id`'s slot at its due time (a new turn: an older entry of it is skipped).
    fn enqueue(&mut self, id: ConnectionId) {
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.turn = slot.turn.wrapping_add(1);
            self.queue.push(Reverse((slot.due, id, slot.turn)));
        }
    }

    /// Queues the checks due by `now` in their lanes, and tells when the next one is due.
    fn take_due(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse((at, id, turn))) = self.queue.peek().copied() {
            if at > now {
                return Some(at);
            }
            self.queue.pop();
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            if slot.turn != turn || !matches!(slot.phase, Phase::Waiting(_)) {
                continue;
            }
            let waiting = std::mem::replace(
                &mut slot.phase,
                Phase::Queued {
                    known: Known::Stored(Stored {
                        status: HealthStatus::Unknown,
                        latency_ms: None,
                        last_ok: None,
                    }),
                    changed: None,
                },
            );
            if let Phase::Waiting(known) = waiting {
                self.lanes[lane_of(known.last_ok())].push_back(id);
                slot.phase = Phase::Queued {
                    known,
                    changed: None,
                };
            }
        }
        None
    }

    /// Starts the queued checks for which their lane has a permit now (their slots go in
    /// flight), in the order they fell due.
    fn start_queued(
        &mut self,
        permits: [&Arc<Semaphore>; 3],
        cancel: &CancellationToken,
        jobs: &mut Vec<(Job, Known, OwnedSemaphorePermit)>,
    ) {
        for (lane, permits) in permits.into_iter().enumerate() {
            while let Some(&id) = self.lanes[lane].front() {
                let queued = self
                    .slots
                    .get(&id)
                    .is_some_and(|slot| matches!(slot.phase, Phase::Queued { .. }));
                if !queued {
                    self.lanes[lane].pop_front();
                    continue;
                }
                let Ok(permit) = Arc::clone(permits).try_acquire_owned() else {
                    break;
                };
                self.lanes[lane].pop_front();
                let ticket = self.next_ticket;
                self.next_ticket = self.next_ticket.wrapping_add(1);
                let Some(slot) = self.slots.get_mut(&id) else {
                    continue;
                };
                let token = cancel.child_token();
                let queued = std::mem::replace(
                    &mut slot.phase,
                    Phase::InFlight {
                        ticket,
                        cancel: token.clone(),
                        changed: None,
                    },
                );
                if let Phase::Queued { known, changed } = queued {
                    if let Phase::InFlight { changed: now, .. } = &mut slot.phase {
                        *now = changed;
                    }
                    jobs.push((
                        Job {
                            id,
                            ticket,
                            settings: slot.settings,
                            due: slot.due,
                            cancel: token,
                        },
                        known,
                        permit,
                    ));
                }
            }
        }
    }
}

/// Applies changes: the first full load, the store's changes feed on the reload interval, and
/// the handle's commands.
async fn supervise(shared: Arc<Shared>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut reload =
        tokio::time::interval(shared.config.reload_interval.max(Duration::from_secs(1)));
    reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first pass at start loads every connection: no change to tell anyone about.
    let mut first = true;
    // How far the changes feed is applied (`None`: a full load is due).
    let mut applied: Option<u64> = None;
    loop {
        tokio::select! {
            biased;
            () = shared.cancel.cancelled() => break,
            Some(command) = commands.recv() => match command {
                Command::Changed(id, origin) => {
                    match shared.store.connection_summary(id).await {
                        Ok(Some(summary)) => apply(&shared, summary, Start::Soon),
                        Ok(None) => {
                            remove(&shared, id);
                        }
                        Err(_) => Counters::bump(&shared.counters.store_errors, 1),
                    }
                    let event = MonitorEvent::ConnectionChanged { id };
                    match origin {
                        Origin::Here => shared.publish_shared(event).await,
                        Origin::Elsewhere => shared.publish(event),
                    }
                }
                Command::Deleted(id, origin) => {
                    remove(&shared, id);
                    let event = MonitorEvent::ConnectionDeleted { id };
                    match origin {
                        Origin::Here => shared.publish_shared(event).await,
                        Origin::Elsewhere => shared.publish(event),
                    }
                }
            },
            _ = reload.tick() => {
                applied = match applied {
                    Some(after) => follow_changes(&shared, after).await,
                    None => load_all(&shared, first).await,
                };
                first = false;
            }
        }
        let connections = shared.wheel().slots.len() as u64;
        shared
            .counters
            .connections
            .store(connections, Ordering::Relaxed);
    }
}

/// Audit records read from the changes feed at once.
const FEED_PAGE: u32 = 1_000;

/// The most connections the changes feed reads again one by one; more changed since the last
/// look, and every connection is listed again instead.
const FEED_MOST_READ: usize = 5_000;

/// Loads every connection ([`reload_all`]) and answers where the changes feed stands from then
/// on: the audit log's last sequence number read before the load, so a change committed during
/// the load is applied again by the next [`follow_changes`]. `None` when the store failed
/// (the next tick loads everything again).
async fn load_all(shared: &Arc<Shared>, initial: bool) -> Option<u64> {
    let newest = AuditQuery {
        actor: None,
        action: None,
        target: None,
        since: None,
        until: None,
        page: 1,
        per_page: 1,
    };
    let from = match shared.store.audit_page(&newest).await {
        Ok(found) => found.items.first().map_or(0, |record| record.seq),
        Err(e) => {
            tracing::warn!(error = %e, "monitor could not read the changes feed");
            Counters::bump(&shared.counters.store_errors, 1);
            return None;
        }
    };
    reload_all(shared, initial).await.then_some(from)
}

/// Applies the connections changed since audit record `after`, as the store's changes feed
/// tells them: every write to a connection appends its audit event (target `connection:<id>`)
/// in the same transaction, in one linear chain, so the records after `after` name every
/// connection created, edited, granted or deleted since, by any process. Each is read anew by
/// id. Answers how far the feed is applied now: not past a change whose connection could not be
/// read (the records since `after` are read again next time; applying a change twice changes
/// nothing more). When the chain shows a gap, or more than [`FEED_MOST_READ`] connections
/// changed, every connection is listed instead ([`load_all`]). The cost follows the changes,
/// not the connections.
async fn follow_changes(shared: &Arc<Shared>, mut after: u64) -> Option<u64> {
    let start = after;
    let mut changed: Vec<ConnectionId> = Vec::new();
    let mut named = HashSet::new();
    loop {
        let records = match shared.store.audit_after(after, FEED_PAGE).await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "monitor could not read the changes feed");
                Counters::bump(&shared.counters.store_errors, 1);
                break;
            }
        };
        let full = records.len() >= FEED_PAGE as usize;
        for record in records {
            if record.seq != after.saturating_add(1) {
                tracing::warn!(
                    expected = after.saturating_add(1),
                    found = record.seq,
                    "the changes feed has a gap: monitor reloads every connection"
                );
                return load_all(shared, false).await;
            }
            after = record.seq;
            if let Some(id) = changed_connection(&record.event) {
                if named.insert(id) {
                    changed.push(id);
                }
            }
        }
        if changed.len() > FEED_MOST_READ {
            // A bulk change elsewhere (an import): pages of the list read them faster than
            // one read each.
            return load_all(shared, false).await;
        }
        if !full {
            break;
        }
    }
    for id in changed {
        match shared.store.connection_summary(id).await {
            Ok(Some(summary)) => reload_one(shared, summary, true),
            Ok(None) => {
                if remove(shared, id) {
                    shared.publish(MonitorEvent::ConnectionDeleted { id });
                }
            }
            Err(_) => {
                Counters::bump(&shared.counters.store_errors, 1);
                return Some(start);
            }
        }
    }
    Some(after)
}

/// The connection an audit event says was changed, if any: an event that succeeded, on a
/// `connection:<id>` target, of any action but those that only read or use a connection (an
/// action added later is taken as a change: reading a connection again costs little, missing a
/// change would stop or skip its checks).
fn changed_connection(event: &AuditEvent) -> Option<ConnectionId> {
    const READ_ONLY: [&str; 6] = [
        "connection.view",
        "connection.test",
        "connection.test_draft",
        "connection.reveal",
        "connection.pool",
        "grants.read",
    ];
    if event.outcome != Outcome::Ok || READ_ONLY.contains(&event.action.as_str()) {
        return None;
    }
    event
        .target
        .as_deref()?
        .strip_prefix("connection:")?
        .parse()
        .ok()
}

/// Applies one connection as a reload read it, publishing
/// [`MonitorEvent::ConnectionChanged`] when this monitor starts, stops or changes its checks
/// and `publish` is set.
fn reload_one(shared: &Shared, summary: Connection, publish: bool) {
    let id = summary.id;
    let known = shared.wheel().slots.get(&id).map(|slot| slot.settings);
    let enabled = summary.spec.monitoring.enabled();
    let changed = match known {
        None => enabled,
        Some(old) => !enabled || old != Settings::of(&summary),
    };
    apply(shared, summary, Start::Spread);
    if changed && publish {
        shared.publish(MonitorEvent::ConnectionChanged { id });
    }
}

/// Reloads every connection, page by page. Connections not seen are removed only after a
/// complete pass, and only once the store confirms each is gone or no longer monitored.
/// Whether the pass was complete.
async fn reload_all(shared: &Arc<Shared>, initial: bool) -> bool {
    let mut seen = HashSet::new();
    let mut page = 1u32;
    loop {
        let query = ListQuery {
            sort: SortKey::Name,
            page,
            per_page: MAX_PER_PAGE,
            ..ListQuery::default()
        };
        let found = match shared
            .store
            .list_connections(&query, &Visibility::All)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "monitor could not reload the connections");
                Counters::bump(&shared.counters.store_errors, 1);
                return false;
            }
        };
        let last = found.items.len() < MAX_PER_PAGE as usize
            || u64::from(page) * u64::from(MAX_PER_PAGE) >= found.total;
        for summary in found.items {
            seen.insert(summary.id);
            reload_one(shared, summary, !initial);
        }
        if last {
            break;
        }
        page = page.saturating_add(1);
    }
    let missing: Vec<ConnectionId> = shared
        .wheel()
        .slots
        .keys()
        .filter(|id| !seen.contains(id))
        .copied()
        .collect();
    drop(seen);
    let mut complete = true;
    for id in missing {
        // A rename during the pass can move a row between pages: ask for it by id.
        match shared.store.connection_summary(id).await {
            Ok(Some(summary)) => apply(shared, summary, Start::Spread),
            Ok(None) => {
                remove(shared, id);
                shared.publish(MonitorEvent::ConnectionDeleted { id });
            }
            Err(_) => {
                Counters::bump(&shared.counters.store_errors, 1);
                complete = false;
            }
        }
    }
    complete
}

/// When a connection new to this monitor gets its first check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// At a random point of its interval: loads and reloads find many connections at once, and
    /// spreading them keeps a restart from checking everything at once.
    Spread,
    /// Within [`RECHECK_AFTER_EDIT`] (or its interval, when shorter): a connection just saved
    /// through this process's or another's handle, whose status its owner is waiting for.
    Soon,
}

/// Adds, updates or removes the slot of one connection to match `summary`.
fn apply(shared: &Shared, summary: Connection, start: Start) {
    let id = summary.id;
    if !summary.spec.monitoring.enabled() {
        remove(shared, id);
        return;
    }
    let settings = Settings::of(&summary);
    let now = Instant::now();
    let mut wheel = shared.wheel();
    if let Some(slot) = wheel.slots.get_mut(&id) {
        let old = slot.settings;
        if old == settings {
            return;
        }
        slot.settings = settings;
        let change = if settings.version != old.version {
            Change::Edited
        } else if settings.interval_s != old.interval_s {
            Change::Interval
        } else {
            return;
        };
        match &mut slot.phase {
            Phase::InFlight { changed, .. } | Phase::Queued { changed, .. } => {
                // Applied once the check in flight is done; an edit outweighs an interval.
                if *changed != Some(Change::Edited) {
                    *changed = Some(change);
                }
            }
            Phase::Waiting(_) => {
                let sooner = slot.moved_due(change, now);
                if sooner < slot.due {
                    slot.due = sooner;
                    wheel.enqueue(id);
                    drop(wheel);
                    shared.wake.notify_one();
                }
            }
        }
        return;
    }
    let mut rng = Rng::new(id);
    let first = match start {
        Start::Spread => settings.interval(),
        Start::Soon => settings.interval().min(RECHECK_AFTER_EDIT),
    }
    .mul_f64(rng.unit());
    wheel.slots.insert(
        id,
        Slot {
            settings,
            due: now + first,
            turn: 0,
            rng,
            phase: Phase::Waiting(Known::Stored(Stored::of(&summary.health))),
        },
    );
    wheel.enqueue(id);
    drop(wheel);
    shared.wake.notify_one();
}

/// Stops monitoring `id`: its slot goes, and a check of it in flight is dropped. Whether it
/// was monitored.
fn remove(shared: &Shared, id: ConnectionId) -> bool {
    let removed = shared.wheel().slots.remove(&id);
    if let Some(Slot {
        phase: Phase::InFlight { cancel, .. },
        ..
    }) = &removed
    {
        cancel.cancel();
    }
    removed.is_some()
}

impl Slot {
    /// The due time a change of settings asks for (the caller keeps the sooner of it and the
    /// current one).
    fn moved_due(&mut self, change: Change, now: Instant) -> Instant {
        let interval = self.settings.interval();
        match change {
            Change::Edited => now + interval.min(RECHECK_AFTER_EDIT).mul_f64(self.rng.unit()),
            Change::Interval => now + self.rng.jittered(interval),
        }
    }
}

/// Starts the checks as they fall due and a permit of their lane is free, each in a task of its
/// own that lives only while its check does: a due check waiting for a permit is an id in its
/// lane's queue, not a task, so a monitor falling behind holds no more memory than one keeping
/// up.
async fn dispatch(shared: Arc<Shared>) {
    let mut jobs = Vec::new();
    let permits = [&shared.main_lane, &shared.suspect_lane, &shared.first_lane];
    loop {
        let next = {
            let mut wheel = shared.wheel();
            let next = wheel.take_due(Instant::now());
            wheel.start_queued(permits, &shared.cancel, &mut jobs);
            next
        };
        for (job, known, permit) in jobs.drain(..) {
            shared
                .tasks
                .spawn(run_check(Arc::clone(&shared), job, known, permit));
        }
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = shared.cancel.cancelled() => return,
            () = shared.wake.notified() => {}
            () = sleep => {}
        }
    }
}

/// Wakes the dispatcher when a check's task ends, however it ends: its permit is free again.
struct WakeOnExit<'a>(&'a Notify);

impl Drop for WakeOnExit<'_> {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

/// What a connection's checks remember from one to the next.
#[derive(Debug)]
struct State {
    tracker: Tracker,
    uptime: UptimeWindow,
    last_ok_latency: Option<u32>,
    /// Whether the last check succeeded (`None`: never checked): picks the lane of the next.
    last_ok: Option<bool>,
}

impl State {
    /// Resumes from the stored health and the last 24 h of history.
    async fn load(shared: &Shared, id: ConnectionId, stored: Stored) -> Self {
        let config = shared.config.hysteresis;
        let recent = match uptime::load(shared.store.as_ref(), id, wall_now()).await {
            Ok(recent) => recent,
            Err(_) => {
                Counters::bump(&shared.counters.store_errors, 1);
                uptime::Recent::default()
            }
        };
        let checks = &recent.checks;
        Self {
            tracker: Tracker::resume(config, stored.status, checks),
            uptime: UptimeWindow::from_recent(&recent),
            last_ok_latency: stored.latency_ms,
            last_ok: checks.first().map(|c| c.ok).or(stored.last_ok),
        }
    }
}

/// Runs one due check of a connection, then hands the connection back to the wheel with its
/// next due time.
async fn run_check(shared: Arc<Shared>, job: Job, known: Known, permit: OwnedSemaphorePermit) {
    let _wake = WakeOnExit(&shared.wake);
    let (known, retry) = check_once(&shared, &job, known, permit).await;
    if job.cancel.is_cancelled() {
        // Removed meanwhile, or the monitor stops: nothing to hand back.
        return;
    }
    let now = Instant::now();
    let mut wheel = shared.wheel();
    let Some(slot) = wheel.slots.get_mut(&job.id) else {
        return;
    };
    let changed = match &slot.phase {
        Phase::InFlight {
            ticket, changed, ..
        } if *ticket == job.ticket => *changed,
        _ => return,
    };
    let mut due = slot.due;
    let interval = job.settings.interval();
    advance(&shared, &mut due, &mut slot.rng, interval, now);
    if let Some(change) = changed {
        due = due.min(slot.moved_due(change, now));
    }
    if let Some(retry) = retry {
        due = due.min(now + retry);
    }
    slot.due = due;
    slot.phase = Phase::Waiting(known);
    wheel.enqueue(job.id);
}

/// One due check, holding a permit of its lane: the claim, the check, its record. Returns what
/// the next check starts from, and how soon to try again when this monitor's own claim was
/// lost (another monitor still holds the lease: its share moved here, and its hold ends within
/// 80 % of an interval).
async fn check_once(
    shared: &Shared,
    job: &Job,
    known: Known,
    permit: OwnedSemaphorePermit,
) -> (Known, Option<Duration>) {
    let retry = retry_after(job.settings.interval());
    let known = match check_share(shared, job, known, permit).await {
        Ok(known) => known,
        Err(known) => return (known, Some(retry)),
    };
    (known, None)
}

/// How soon a monitor tries again a check of its own share whose claim it lost: an eighth of
/// the interval, so a share taken over is checked within about an eighth of an interval of the
/// previous holder's hold ending (a lost claim is one store call more; they happen only while
/// the share moves).
fn retry_after(interval: Duration) -> Duration {
    interval / 8
}

/// [`check_once`]: `Err` when this monitor's claim was lost.
async fn check_share(
    shared: &Shared,
    job: &Job,
    known: Known,
    permit: OwnedSemaphorePermit,
) -> Result<Known, Known> {
    let Job {
        id,
        settings,
        due,
        ref cancel,
        ..
    } = *job;
    let last_ok = known.last_ok();
    let main = last_ok == Some(true);
    if cancel.is_cancelled() {
        return Ok(known);
    }
    // Another live monitor's share: left to it, with no store call ("Shares" in the module
    // docs). Should that monitor be gone, the next heartbeat moves its share here.
    if !shared.is_mine(id) {
        drop(permit);
        Counters::bump(&shared.counters.not_home, 1);
        return Ok(known);
    }
    // Claim this interval's check; another process sharing the store may have it. A won
    // claim carries the row, so the check reads nothing more.
    let mut claimed = None;
    let mut other_checked = false;
    match claim(shared, id, lease_hold(settings.interval())).await {
        // The monitor is stopping.
        None => return Ok(known),
        Some(Claim::Lost) => {
            drop(permit);
            tracing::debug!(
                connection = %id,
                "check lease held by another monitor; round skipped"
            );
            Counters::bump(&shared.counters.leases_lost, 1);
            return Err(known);
        }
        Some(Claim::Won(lease)) => {
            other_checked = lease
                .previous_holder
                .is_some_and(|holder| holder != shared.id);
            claimed = Some(lease.connection);
        }
        // The store is failing (the claimer counted and logged it): check anyway
        // (recording will likely fail too, but the status published here stays live),
        // rather than leave the connection unchecked.
        Some(Claim::Failed) => {}
    }
    let mut state = match known {
        Known::Tracked(state) if !other_checked => state,
        known => {
            // First checked here, or another process checked it since this one last did (or
            // since this one found it): start from the store's health and history, so the
            // hysteresis and uptime count every process's checks and a change is derived only
            // from the stored status (one history query, only when processes take turns).
            let stored = match known {
                Known::Stored(stored) => stored,
                Known::Tracked(ref state) => Stored {
                    status: state.tracker.status(),
                    latency_ms: state.last_ok_latency,
                    last_ok: state.last_ok,
                },
            };
            let stored = if other_checked {
                match shared.store.connection_summary(id).await {
                    Ok(Some(summary)) => Stored::of(&summary.health),
                    // Deleted meanwhile: the supervisor removes it.
                    Ok(None) => return Ok(known),
                    Err(_) => {
                        Counters::bump(&shared.counters.store_errors, 1);
                        stored
                    }
                }
            } else {
                stored
            };
            State::load(shared, id, stored).await
        }
    };
    if !shared.checker.admit(id).await {
        drop(permit);
        Counters::bump(&shared.counters.deferred, 1);
        return Ok(Known::Tracked(state));
    }
    let started = Instant::now();
    if main {
        let waited = started.saturating_duration_since(due).as_micros();
        let waited = u64::try_from(waited).unwrap_or(u64::MAX);
        shared
            .counters
            .max_main_lane_wait_us
            .fetch_max(waited, Ordering::Relaxed);
    } else if last_ok.is_none() {
        Counters::bump(&shared.counters.first_checks, 1);
    } else {
        Counters::bump(&shared.counters.suspect_checks, 1);
    }
    let outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => return Ok(Known::Tracked(state)),
        outcome = tokio::time::timeout(shared.config.check_timeout, async {
            match claimed {
                Some(row) => shared.checker.check_row(row).await,
                None => shared.checker.check(id).await,
            }
        }) => outcome,
    };
    drop(permit);
    let result = outcome.unwrap_or_else(|_| {
        Counters::bump(&shared.counters.timeouts, 1);
        let ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        CheckResult::failure(FailureKind::Timeout, ms)
    });
    state.last_ok = Some(result.ok);
    record(shared, id, &mut state, &result, settings.slow_ms);
    Ok(Known::Tracked(state))
}

/// Moves `due` to the next check due after `now`, counting the ones skipped.
fn advance(shared: &Shared, due: &mut Instant, rng: &mut Rng, interval: Duration, now: Instant) {
    *due += rng.jittered(interval);
    while *due <= now {
        Counters::bump(&shared.counters.skipped, 1);
        *due += rng.jittered(interval);
    }
}

/// How long a claimed check keeps other processes off: the interval less twice the jitter
/// (80 %). No two processes check one connection less than that apart, and as every process's
/// next due time comes 90 % to 110 % of an interval after its last, the hold has always expired
/// by then: a holder that stopped (or lost its turn) is replaced at the next due time of any
/// other process.
fn lease_hold(interval: Duration) -> Duration {
    interval.mul_f64(1.0 - 2.0 * f64::from(JITTER_PERCENT) / 100.0)
}

/// A compact event for other processes: `origin|kind|id[|…]`, `at` in unix microseconds. Kinds:
/// `s` status changed (`|from|to|at`), `k` checked (`|status|latency_ms|error_kind|at`, the
/// kind `-` on success), `c` changed, `d` deleted.
fn encode_event(origin: Uuid, event: &MonitorEvent) -> String {
    match event {
        MonitorEvent::Checked {
            id,
            status,
            latency_ms,
            error_kind,
            at,
        } => format!(
            "{origin}|k|{id}|{}|{latency_ms}|{}|{}",
            status.as_str(),
            error_kind.map_or("-", FailureKind::as_str),
            at.unix_timestamp_nanos() / 1_000
        ),
        MonitorEvent::StatusChanged { id, from, to, at } => format!(
            "{origin}|s|{id}|{}|{}|{}",
            from.as_str(),
            to.as_str(),
            at.unix_timestamp_nanos() / 1_000
        ),
        MonitorEvent::ConnectionChanged { id } => format!("{origin}|c|{id}"),
        MonitorEvent::ConnectionDeleted { id } => format!("{origin}|d|{id}"),
    }
}

/// An event told by another process, with its origin; `None` for anything malformed.
fn decode_event(payload: &str) -> Option<(Uuid, MonitorEvent)> {
    let mut parts = payload.split('|');
    let origin = Uuid::parse_str(parts.next()?).ok()?;
    let kind = parts.next()?;
    let id: ConnectionId = parts.next()?.parse().ok()?;
    let event = match kind {
        "s" => {
            let from: HealthStatus = parts.next()?.parse().ok()?;
            let to: HealthStatus = parts.next()?.parse().ok()?;
            let at = from_micros(parts.next()?)?;
            MonitorEvent::StatusChanged { id, from, to, at }
        }
        "k" => {
            let status: HealthStatus = parts.next()?.parse().ok()?;
            let latency_ms: u32 = parts.next()?.parse().ok()?;
            let error_kind = match parts.next()? {
                "-" => None,
                kind => Some(kind.parse::<FailureKind>().ok()?),
            };
            let at = from_micros(parts.next()?)?;
            MonitorEvent::Checked {
                id,
                status,
                latency_ms,
                error_kind,
                at,
            }
        }
        "c" => MonitorEvent::ConnectionChanged { id },
        "d" => MonitorEvent::ConnectionDeleted { id },
        _ => return None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((origin, event))
}

/// A time told as unix microseconds.
fn from_micros(text: &str) -> Option<OffsetDateTime> {
    let micros: i128 = text.parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1_000)?).ok()
}

/// Publishes here the events other processes sharing the store tell (this process's own are
/// already published), and applies the connection changes they were told.
async fn relay(
    shared: Arc<Shared>,
    mut remote: mpsc::Receiver<String>,
    commands: mpsc::UnboundedSender<Command>,
) {
    loop {
        let payload = tokio::select! {
            biased;
            () = shared.cancel.cancelled() => return,
            payload = remote.recv() => match payload {
                Some(payload) => payload,
                None => return,
            },
        };
        // One event a line (the recorder tells several at once).
        for line in payload.lines() {
            let Some((origin, event)) = decode_event(line) else {
                continue;
            };
            if origin == shared.id {
                continue;
            }
            Counters::bump(&shared.counters.remote_events, 1);
            match event {
                MonitorEvent::ConnectionChanged { id } => {
                    let _ = commands.send(Command::Changed(id, Origin::Elsewhere));
                }
                MonitorEvent::ConnectionDeleted { id } => {
                    let _ = commands.send(Command::Deleted(id, Origin::Elsewhere));
                }
                event => shared.publish(event),
            }
        }
    }
}

/// Derives the status and hands the check to the [`recorder`], which stores it and then
/// publishes the status change and the check.
fn record(
    shared: &Shared,
    id: ConnectionId,
    state: &mut State,
    result: &CheckResult,
    slow_ms: u32,
) {
    let at = wall_now();
    let from = state.tracker.status();
    let to = state.tracker.next(result, slow_ms, at);
    state.uptime.push(at, result.ok);
    if result.ok {
        state.last_ok_latency = Some(result.latency_ms);
    }
    let error_kind = if result.ok { None } else { result.error_kind };
    let step = if result.ok { None } else { result.step };
    let check = Check {
        connection: id,
        at,
        ok: result.ok,
        latency_ms: result.latency_ms,
        error_kind,
        step,
        status: to,
    };
    // `None` keeps the stored facts: only a check that reached the server replaces them.
    let health = Health {
        status: to,
        checked_at: Some(at),
        latency_ms: state.last_ok_latency,
        error_kind,
        uptime_24h: state.uptime.uptime(at),
        facts: result.facts(at),
    };
    tracing::debug!(
        connection = %id,
        ok = result.ok,
        latency_ms = result.latency_ms,
        error_kind = error_kind.map(FailureKind::as_str),
        step = step.map(StepName::as_str),
        status = to.as_str(),
        "check done"
    );
    Counters::bump(&shared.counters.checks, 1);
    if !result.ok {
        Counters::bump(&shared.counters.failures, 1);
    }
    if from != to {
        tracing::info!(
            connection = %id,
            from = from.as_str(),
            to = to.as_str(),
            "connection status changed"
        );
    }
    // Closed only once the monitor has stopped: nothing more is recorded then.
    let _ = shared.results.send(Finished {
        check,
        health,
        from,
    });
}

/// A finished check on its way to the store.
#[derive(Debug)]
struct Finished {
    check: Check,
    health: Health,
    /// The status before this check (the check's own is `check.status`).
    from: HealthStatus,
}

/// A due check to claim ([`claimer`]), answered on `answer`.
#[derive(Debug)]
struct ClaimRequest {
    id: ConnectionId,
    hold: Duration,
    answer: oneshot::Sender<Claim>,
}

/// What a claim came to.
#[derive(Debug)]
enum Claim {
    /// Won, with the connection's row.
    Won(Box<CheckLease>),
    /// Held by another process (or the connection is gone): this round is skipped.
    Lost,
    /// The store did not answer.
    Failed,
}

/// Claims `id`'s due check through the [`claimer`]; `None` once the monitor has stopped.
async fn claim(shared: &Shared, id: ConnectionId, hold: Duration) -> Option<Claim> {
    let (answer, answered) = oneshot::channel();
    shared.claims.send(ClaimRequest { id, hold, answer }).ok()?;
    answered.await.ok()
}

/// Waits for the first item of a batch, then gathers more for up to `window` (or until
/// [`MAX_BATCH`]) into `batch`; false once the monitor is stopping, at once (with what is
/// already queued in `batch`: the recorder still writes it, the claimer drops it, as the tasks
/// waiting for those claims stop too).
async fn gather<T>(
    shared: &Shared,
    queue: &mut mpsc::UnboundedReceiver<T>,
    batch: &mut Vec<T>,
    window: Duration,
) -> bool {
    let first = tokio::select! {
        biased;
        () = shared.cancel.cancelled() => {
            take_queued(queue, batch);
            return false;
        }
        item = queue.recv() => match item {
            Some(item) => item,
            None => return false,
        },
    };
    batch.push(first);
    let until = Instant::now() + window;
    while batch.len() < MAX_BATCH {
        // What is queued already joins at once; then whatever arrives within the window.
        match queue.try_recv() {
            Ok(item) => {
                batch.push(item);
                continue;
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        tokio::select! {
            biased;
            // Stopping: no waiting out the window.
            () = shared.cancel.cancelled() => {
                take_queued(queue, batch);
                return false;
            }
            item = queue.recv() => match item {
                Some(item) => batch.push(item),
                None => break,
            },
            () = tokio::time::sleep_until(until) => break,
        }
    }
    true
}

/// Moves what is queued now into `batch`, up to [`MAX_BATCH`].
fn take_queued<T>(queue: &mut mpsc::UnboundedReceiver<T>, batch: &mut Vec<T>) {
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
}

/// Claims due checks in batches: the checks falling due within
/// [`MonitorConfig::claim_window`] of each other
/// are claimed with one store call ([`HealthStore::lease_checks`](crate::store::HealthStore::lease_checks)),
/// one per distinct hold (the same for every connection of one interval).
async fn claimer(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<ClaimRequest>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let window = shared.config.claim_window;
    while gather(&shared, &mut queue, &mut batch, window).await {
        batch.sort_unstable_by_key(|request| request.hold);
        while let Some(last) = batch.last() {
            let hold = last.hold;
            let split = batch.partition_point(|request| request.hold < hold);
            let group: Vec<ClaimRequest> = batch.drain(split..).collect();
            let ids: Vec<ConnectionId> = group.iter().map(|request| request.id).collect();
            Counters::bump(&shared.counters.lease_calls, 1);
            match shared
                .store
                .lease_checks(&ids, shared.id, wall_now(), hold)
                .await
            {
                Ok(won) => {
                    let mut won: HashMap<ConnectionId, CheckLease> = won
                        .into_iter()
                        .map(|lease| (lease.connection.id, lease))
                        .collect();
                    for request in group {
                        let claim = match won.remove(&request.id) {
                            Some(lease) => Claim::Won(Box::new(lease)),
                            None => Claim::Lost,
                        };
                        // A task that stopped waiting has nothing to be told.
                        let _ = request.answer.send(claim);
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        checks = group.len(),
                        error = %e,
                        "monitor could not claim checks; checking anyway"
                    );
                    Counters::bump(&shared.counters.store_errors, 1);
                    for request in group {
                        let _ = request.answer.send(Claim::Failed);
                    }
                }
            }
        }
    }
}

/// Keeps the view of the live monitors sharing the store, which decides this monitor's share:
/// every [`MonitorConfig::replica_heartbeat`] it marks itself alive and learns the others
/// marked within [`MonitorConfig::replica_timeout`] (one store call,
/// [`HealthStore::beat`](crate::store::HealthStore::beat)). A failed beat keeps the last view
/// (the leases keep checks single whatever it says). Stopping, it leaves the store's list, so
/// the others take its share at their next beat rather than after its timeout.
async fn members(shared: Arc<Shared>) {
    let every = shared
        .config
        .replica_heartbeat
        .max(Duration::from_millis(100));
    let timeout = shared.config.replica_timeout.max(every * 2);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            biased;
            () = shared.cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let beat = tokio::time::timeout(timeout, shared.store.beat(shared.id, timeout)).await;
        match beat {
            Ok(Ok(others)) => {
                failing = false;
                let view = Shares::new(shared.id, others);
                let live = view.live();
                let changed = {
                    let mut shares = shared
                        .shares
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let changed = *shares != view;
                    *shares = view;
                    changed
                };
                if changed {
                    tracing::info!(
                        monitor = %shared.id,
                        live,
                        "monitors sharing the store changed; checks split anew"
                    );
                }
                shared
                    .counters
                    .live_monitors
                    .store(live as u64, Ordering::Relaxed);
            }
            failed => {
                Counters::bump(&shared.counters.store_errors, 1);
                if !failing {
                    match failed {
                        Ok(Err(e)) => tracing::warn!(
                            error = %e,
                            "monitor could not tell the store it is alive; keeping its view"
                        ),
                        _ => tracing::warn!(
                            "monitor's heartbeat timed out; keeping its view of the others"
                        ),
                    }
                }
                failing = true;
            }
        }
    }
    match tokio::time::timeout(timeout, shared.store.leave(shared.id)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "monitor could not leave the store's list; it times out");
        }
        Err(_) => tracing::debug!("monitor's leave timed out; it times out"),
    }
}

/// Records finished checks in batches (those finished within
/// [`MonitorConfig::record_window`] of each other,
/// with one store call, [`HealthStore::record_checks`](crate::store::HealthStore::record_checks)),
/// then publishes each one's status change and check, in order, here and (several events a
/// payload) to the other processes sharing the store. What is queued when the monitor stops is
/// still recorded.
async fn recorder(shared: Arc<Shared>, mut queue: mpsc::UnboundedReceiver<Finished>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut rows = Vec::with_capacity(MAX_BATCH);
    let mut before = Vec::with_capacity(MAX_BATCH);
    loop {
        let running = gather(&shared, &mut queue, &mut batch, shared.config.record_window).await;
        if !batch.is_empty() {
            rows.clear();
            before.clear();
            for Finished {
                check,
                health,
                from,
            } in batch.drain(..)
            {
                rows.push((check, health));
                before.push(from);
            }
            Counters::bump(&shared.counters.record_calls, 1);
            if let Err(e) = shared.store.record_checks(&rows).await {
                tracing::warn!(checks = rows.len(), error = %e, "monitor could not record checks");
                Counters::bump(&shared.counters.store_errors, 1);
            }
            publish_finished(&shared, &rows, &before).await;
        }
        if !running {
            return;
        }
    }
}

/// Publishes the events of recorded checks: a status change (when there was one), then the
/// check; told to other processes as few payloads of several events.
async fn publish_finished(shared: &Shared, rows: &[(Check, Health)], before: &[HealthStatus]) {
    let mut payload = String::new();
    for ((check, _), &from) in rows.iter().zip(before) {
        let id = check.connection;
        let to = check.status;
        let at = check.at;
        let mut events = [
            (from != to).then_some(MonitorEvent::StatusChanged { id, from, to, at }),
            Some(MonitorEvent::Checked {
                id,
                status: to,
                latency_ms: check.latency_ms,
                error_kind: check.error_kind,
                at,
            }),
        ];
        for event in events.iter_mut().filter_map(Option::take) {
            if shared.shares_events {
                let line = encode_event(shared.id, &event);
                if !payload.is_empty() && payload.len() + 1 + line.len() > EVENT_PAYLOAD_MAX {
                    shared.tell(&payload).await;
                    payload.clear();
                }
                if !payload.is_empty() {
                    payload.push('\n');
                }
                payload.push_str(&line);
            }
            shared.publish(event);
        }
    }
    if !payload.is_empty() {
        shared.tell(&payload).await;
    }
}

/// How long one pruning batch should take at most: 10 ms. A batch is one write through the
/// store's writer, so it is about how long a write can wait behind the pruner.
pub const PRUNE_BATCH_TARGET: Duration = Duration::from_millis(10);

/// The fewest rows a pruning batch asks for: 50.
const PRUNE_BATCH_MIN: u32 = 50;

/// The size of the pruner's next batch, adapted to how long the last ones took: halved after a
/// batch slower than [`PRUNE_BATCH_TARGET`], grown by a quarter after one faster than half of
/// it, between 50 rows and [`MonitorConfig::prune_batch_rows`]. So on a slow or busy machine
/// (or a store whose rows are not cached) batches shrink until each is short, and on a fast one
/// they stay at the configured size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneBatch {
    rows: u32,
    max: u32,
}

impl PruneBatch {
    /// Starts at the configured size (0 counts as 1).
    pub fn new(config: &MonitorConfig) -> Self {
        let max = config.prune_batch_rows.max(1);
        Self { rows: max, max }
    }

    /// Rows the next batch asks for.
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// Takes how long the last batch took.
    pub fn took(&mut self, elapsed: Duration) {
        let min = PRUNE_BATCH_MIN.min(self.max);
        if elapsed > PRUNE_BATCH_TARGET {
            self.rows = (self.rows / 2).max(min);
        } else if elapsed < PRUNE_BATCH_TARGET / 2 {
            self.rows = self.rows.saturating_add(self.rows / 4 + 1).min(self.max);
        }
    }
}

/// Rolls up raw checks older than the detail window and deletes expired buckets, once at start
/// and then on the prune interval, in batches with a pause between them.
async fn prune(shared: Arc<Shared>) {
    let config = &shared.config;
    let mut tick = tokio::time::interval(config.prune_interval.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let detail = time::Duration::try_from(config.detail_window).unwrap_or(time::Duration::MAX);
    let retention =
        time::Duration::try_from(config.bucket_retention).unwrap_or(time::Duration::MAX);
    let mut batch = PruneBatch::new(config);
    loop {
        tokio::select! {
            biased;
            () = shared.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = wall_now();
        if let Some(before) = now.checked_sub(detail) {
            let mut from = None;
            loop {
                let started = Instant::now();
                let rolled = shared
                    .store
                    .roll_up_checks(before, from, batch.rows())
                    .await;
                batch.took(started.elapsed());
                match rolled {
                    Ok(done) => {
                        Counters::bump(&shared.counters.rolled_up, done.rolled);
                        if done.contended {
                            tracing::debug!("another process is rolling up check history");
                            break;
                        }
                        match done.next {
                            Some(next) => from = Some(next),
                            None => break,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "monitor could not roll up check history");
                        Counters::bump(&shared.counters.store_errors, 1);
                        break;
                    }
                }
                if !pause(&shared).await {
                    return;
                }
            }
        }
        if let Some(before) = now.checked_sub(retention) {
            loop {
                let started = Instant::now();
                let rows = batch.rows();
                let pruned = shared.store.prune_buckets(before, rows).await;
                batch.took(started.elapsed());
                match pruned {
                    Ok(n) => {
                        Counters::bump(&shared.counters.pruned, n);
                        if n < u64::from(rows) {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "monitor could not prune check history");
                        Counters::bump(&shared.counters.store_errors, 1);
                        break;
                    }
                }
                if !pause(&shared).await {
                    return;
                }
            }
        }
    }
}

/// Waits between two pruning batches; `false` when the monitor stops meanwhile.
async fn pause(shared: &Shared) -> bool {
    tokio::select! {
        biased;
        () = shared.cancel.cancelled() => false,
        () = tokio::time::sleep(shared.config.prune_batch_pause) => true,
    }
}

/// Now, in UTC, at the precision the stores keep.
fn wall_now() -> OffsetDateTime {
    truncate_to_micros(OffsetDateTime::now_utc())
}

/// A small generator for jitter (SplitMix64): spreading checks needs no secrecy, only a seed
/// that differs between connections and processes.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(id: ConnectionId) -> Self {
        let bytes = id.as_bytes();
        let mut seed = getrandom::u64().unwrap_or(0);
        for chunk in bytes.chunks_exact(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            seed ^= u64::from_le_bytes(word);
        }
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    #[allow(clippy::cast_precision_loss)] // 53 bits fit an f64 exactly.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `interval` ± up to [`JITTER_PERCENT`] %, never zero.
    fn jittered(&mut self, interval: Duration) -> Duration {
        let spread = f64::from(JITTER_PERCENT) / 100.0;
        let factor = 1.0 + spread * (2.0 * self.unit() - 1.0);
        interval.mul_f64(factor).max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent_and_spreads() {
        let mut rng = Rng::new(ConnectionId::new());
        let interval = Duration::from_secs(60);
        let samples: Vec<Duration> = (0..10_000).map(|_| rng.jittered(interval)).collect();
        assert!(
            samples
                .iter()
                .all(|d| *d >= Duration::from_secs(54) && *d <= Duration::from_secs(66))
        );
        assert!(samples.iter().any(|d| *d < Duration::from_secs(55)));
        assert!(samples.iter().any(|d| *d > Duration::from_secs(65)));
        let units: Vec<f64> = (0..10_000).map(|_| rng.unit()).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = units.iter().sum::<f64>() / units.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn events_told_to_other_processes_round_trip() {
        let origin = Uuid::now_v7();
        let id = ConnectionId::new();
        let at = truncate_to_micros(OffsetDateTime::now_utc());
        for event in [
            MonitorEvent::StatusChanged {
                id,
                from: HealthStatus::Unknown,
                to: HealthStatus::Down,
                at,
            },
            MonitorEvent::Checked {
                id,
                status: HealthStatus::Degraded,
                latency_ms: 1_234,
                error_kind: Some(FailureKind::TlsCertificateInvalid),
                at,
            },
            MonitorEvent::Checked {
                id,
                status: HealthStatus::Healthy,
                latency_ms: u32::MAX,
                error_kind: None,
                at,
            },
            MonitorEvent::ConnectionChanged { id },
            MonitorEvent::ConnectionDeleted { id },
        ] {
            let payload = encode_event(origin, &event);
            assert!(payload.len() < 200, "{payload}");
            assert_eq!(decode_event(&payload), Some((origin, event)));
        }
        for bad in [
            "",
            "x|c|y",
            &format!("{origin}|z|{id}"),
            &format!("{origin}|c|{id}|1"),
            &format!("{origin}|k|{id}|healthy|12|-"),
            &format!("{origin}|k|{id}|healthy|-1|-|0"),
            &format!("{origin}|k|{id}|healthy|12|bogus|0"),
            &format!("{origin}|k|{id}|healthy|12|-|0|extra"),
        ] {
            assert_eq!(decode_event(bad), None, "{bad}");
        }
        assert_eq!(lease_hold(Duration::from_secs(10)), Duration::from_secs(8));
    }

    #[test]
    fn pruning_batches_shrink_while_slow_and_grow_back_when_fast() {
        let mut batch = PruneBatch::new(&MonitorConfig::default());
        assert_eq!(batch.rows(), 1_000);
        let slow = PRUNE_BATCH_TARGET * 3;
        let fast = PRUNE_BATCH_TARGET / 4;
        batch.took(slow);
        assert_eq!(batch.rows(), 500);
        for _ in 0..20 {
            batch.took(slow);
        }
        assert_eq!(batch.rows(), 50, "never below 50 rows");
        // Within the target: unchanged.
        batch.took(PRUNE_BATCH_TARGET * 3 / 4);
        assert_eq!(batch.rows(), 50);
        let mut grown = Vec::new();
        for _ in 0..20 {
            batch.took(fast);
            grown.push(batch.rows());
        }
        assert!(grown.windows(2).all(|w| w[0] <= w[1]), "{grown:?}");
        assert_eq!(batch.rows(), 1_000, "never above the configured size");
        // A configured size below 50 is kept as it is.
        let mut small = PruneBatch::new(&MonitorConfig {
            prune_batch_rows: 10,
            ..MonitorConfig::default()
        });
        small.took(slow);
        assert_eq!(small.rows(), 10);
    }

    #[test]
    fn defaults() {
        let c = MonitorConfig::default();
        assert_eq!(c.max_concurrency, 64);
        assert_eq!(c.suspect_concurrency, 16);
        assert_eq!(c.detail_window, Duration::from_secs(86_400));
        assert_eq!(c.bucket_retention, Duration::from_secs(30 * 86_400));
        assert_eq!(c.prune_batch_rows, 1_000);
        assert_eq!(c.reload_interval, Duration::from_secs(60));
        assert_eq!((c.hysteresis.fall(), c.hysteresis.rise()), (3, 2));
    }
}
