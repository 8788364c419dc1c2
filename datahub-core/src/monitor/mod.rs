//! The health monitor: checks every enabled connection on its interval, records each result,
//! derives the status with hysteresis and publishes status and connection changes.
//!
//! Parts:
//! - [`Checker`]: the check itself, as a trait object (the prober, through glue written where
//!   the two meet; tests script it). The monitor knows nothing of sockets or TLS.
//! - [`status`]: pure, deterministic status derivation ([`Tracker`], [`HysteresisConfig`]):
//!   unknown, healthy, degraded, down with `fall`/`rise` (defaults 3/2, SECURITY.md S24).
//! - [`uptime`]: the 24 h share of successful checks, seeded once from the store's history and
//!   then kept in memory in 5-minute buckets, so a check costs no history query.
//! - [`Monitor`]: the scheduler, started by [`Monitor::start`] (the Hub starts one with
//!   [`Hub::start_monitor`](crate::hub::Hub::start_monitor) and tells it of every change made
//!   through the Hub).
//!
//! Scheduling (tokio's clock, so tests can pause and advance time):
//! - Every enabled connection has a small slot (its settings, next due time, status tracker and
//!   uptime counts) in one wheel: a map of slots and a queue of due times. A dispatcher task
//!   puts each connection falling due in its lane's queue (an id, no task) and starts its check
//!   once a permit of the lane is free, in a task that lives only while that check does
//!   (claiming, checking) and then hands the slot back with its next due time: a connection at
//!   rest or waiting for a permit costs no task, so memory grows by the slot alone per
//!   connection, even when the monitor falls behind. A
//!   connection's first check is at a random point within its interval (so a restart does not
//!   check everything at once), or within 5 s for one saved while the monitor runs
//!   ([`Monitor::notify_changed`]); each next check is due one interval after the previous due
//!   time, ± up to 10 % at random ([`JITTER_PERCENT`]).
//! - A slot is waiting, queued for a permit, or has its one check in flight, so at most one
//!   check per connection is in flight; a check still running when the next is due makes that next one
//!   skipped, not queued ([`MonitorStats::skipped`]).
//! - Every check is cut off after [`MonitorConfig::check_timeout`] (recorded as a `timeout`
//!   failure), and needs a permit of one of three lanes, each a semaphore, for as long as it
//!   runs:
//!   - the main lane ([`MonitorConfig::max_concurrency`], default 64): connections whose last
//!     check succeeded;
//!   - the suspect lane ([`MonitorConfig::suspect_concurrency`], default 16): connections whose
//!     last check failed or timed out;
//!   - the first-check lane ([`MonitorConfig::first_check_concurrency`], default 16):
//!     connections never checked.
//!
//!   Checks in flight overall are bounded by the sum (96 by default). The lane follows the last
//!   result (at start, the stored health's last check, so a restart puts known-dead targets in
//!   the suspect lane and known-good ones in the main lane at once). Why: a dead or stalled
//!   target holds its permit until the timeout, so with one shared semaphore 64 of them could
//!   keep every permit busy and delay every healthy check by up to a timeout. Apart, any number
//!   of dead targets only fill the suspect lane; a healthy target's check waits for a main
//!   permit only while 64 checks that were healthy last time are all still running (S23).
//!   Nothing yet tells a new target from a dead one, so never-checked targets get a lane of
//!   their own: a flood of new dead targets reaches neither the main lane nor (until their first
//!   failure) the suspect lane, and a connection just saved waits only behind other first
//!   checks, never behind the backlog of known-dead targets. From its first success on a target
//!   is in the main lane. A slow target that still answers within the timeout stays in the main
//!   lane. A due check waits for a permit (in its lane's queue, in due order) only while all
//!   permits of its lane are busy
//!   ([`MonitorStats::suspect_checks`], [`MonitorStats::first_checks`] and
//!   [`MonitorStats::max_main_lane_wait`] show how the lanes fare).
//! - Changes: [`Monitor::notify_changed`] / [`Monitor::notify_deleted`] apply one
//!   connection's change at once (an edited target is checked again, and a newly saved one
//!   first, within 5 s); the Hub calls them itself for every change made through it, so no
//!   adapter has to. Every [`MonitorConfig::reload_interval`] (default 60 s) the monitor
//!   reads the audit log's records since the last look (the store's changes feed: every write
//!   to a connection appends its audit event in the same transaction, in one linear chain) and
//!   reads again each connection they name, so changes made elsewhere (another process sharing
//!   the store) are caught at a cost that follows the changes; every connection is read only
//!   at start.
//! - History: raw checks are kept for [`MonitorConfig::detail_window`] (default 24 h); every
//!   [`MonitorConfig::prune_interval`] (default 1 h) and once at start, the pruner task rolls
//!   older ones up into 5-minute buckets ([`HealthBucket`](crate::model::HealthBucket)) with
//!   [`HealthStore::roll_up_checks`](crate::store::HealthStore::roll_up_checks), then deletes
//!   buckets older than [`MonitorConfig::bucket_retention`] (default 30 days), each in batches
//!   of at most [`MonitorConfig::prune_batch_rows`] (default 1,000; fewer while batches take
//!   longer than [`PRUNE_BATCH_TARGET`], 10 ms: [`PruneBatch`]), one short transaction each, with
//!   [`MonitorConfig::prune_batch_pause`] between them, so a write never waits behind more
//!   than one batch. Processes sharing a store may all prune: the store keeps the roll-up
//!   exact ([`RollUp::contended`](crate::store::RollUp::contended)). Uptime and the
//!   chart read the buckets and the raw checks not yet rolled up alike, so a roll-up changes
//!   neither.
//! - [`Monitor::shutdown`] cancels every task and waits for them; a store write already
//!   started is finished first, a check in flight is dropped.
//!
//! Events go out on a `tokio::sync::broadcast` channel ([`Monitor::subscribe`]): a
//! subscriber that falls more than [`MonitorConfig::event_capacity`] events behind loses the
//! oldest ones and is told so by `RecvError::Lagged` (it should then reload what it shows).
//! A status change is published once, after the check is recorded (or failed to be: the
//! monitor's status is the live truth, the store catches up on the next check); then every
//! check, changed or not, is published as [`MonitorEvent::Checked`] (status, latency, failure
//! kind), so a live view can show each check as it happens.
//!
//! Several processes sharing one store (PostgreSQL replicas) split the work and share the events:
//! - **Leases.** Each monitor has an id ([`Monitor::id`]). When a check is due and its
//!   permit is held, its check task claims it through the claimer (below) with
//!   [`HealthStore::lease_checks`](crate::store::HealthStore::lease_checks) for a hold of
//!   80 % of the interval (the interval less twice the jitter). The claim wins when nobody else
//!   claimed within the hold (or the last claim is this monitor's own); on PostgreSQL the claim
//!   is one `UPDATE` over a `SELECT … FOR UPDATE SKIP LOCKED`, so of two racing claims one wins
//!   and the other loses at once. A lost claim skips the round: nothing is checked, recorded or
//!   published ([`MonitorStats::leases_lost`]); the connection is tried again at its next due
//!   time (an eighth of an interval later when it is this monitor's share, see "Shares"). So
//!   two checks of one connection, by any processes, are at least 80 % of an interval apart.
//!   A claim the store fails to answer is checked anyway (counted in [`MonitorStats::store_errors`]): a store outage must
//!   not stop the monitoring. Process clocks are assumed in step (NTP) to well within 20 % of
//!   an interval. With one process (SQLite) every claim wins, so nothing changes; an edited
//!   connection's early recheck runs only in the process holding its lease, or after the hold.
//! - **Shares.** Each monitor marks itself alive in the store every
//!   [`MonitorConfig::replica_heartbeat`] (default 1 s) and learns the others marked within
//!   [`MonitorConfig::replica_timeout`] (default 5 s) in the same statement
//!   ([`HealthStore::beat`](crate::store::HealthStore::beat): PostgreSQL's `monitor_replicas`;
//!   on SQLite nobody else). Each connection's *home* is the live monitor with the highest
//!   rendezvous weight for its id (`shares.rs`: a fixed mix of both ids, so every monitor with
//!   the same view agrees; shares are even, and a monitor joining or leaving moves only the
//!   connections to or from it). A monitor claims only its home connections' checks; a due
//!   check of another's share is left alone with no store call ([`MonitorStats::not_home`]), so
//!   in steady state every claim wins and the claims cost at most one statement per check
//!   (fewer, batched). A claim of its own share that is lost (the share just moved here and the
//!   previous holder's hold is not over) is tried again after an eighth of the interval rather
//!   than an interval later. A monitor stopping leaves the list (the others take its share at
//!   their next beat); one that dies is dropped from the others' views after its timeout, and
//!   its share is then checked by its new homes at their due times: within about the timeout,
//!   a beat and an interval. The view only decides who claims: two monitors disagreeing for a
//!   moment (one saw a change the other has not yet) may both claim a connection or neither,
//!   so the cost of a wrong view is a lost claim or one late check, never a double check, as
//!   the leases stay atomic. A failed beat keeps the last view.
//! - **Status across processes.** A connection's tracker and uptime window are loaded from the
//!   store's health and history ([`Tracker::resume`]) at this process's first won claim of it,
//!   not before (a replica loads nothing for the connections others check). A won claim tells
//!   the previous holder; when it is another process, this one's tracker missed that process's
//!   checks, so it is loaded again from the store, the current health read anew (a replica's
//!   view from when it found the connection may predate every check). So the hysteresis counts
//!   every process's checks, a status change is derived only from the stored status (never an
//!   `unknown → healthy` for a connection another process already checked), and it is
//!   published by the process that checked. (One history query more per check when processes
//!   take turns.)
//! - **Events.** Status changes, checks and the handle's connection changes are published here and told
//!   to the other processes through [`HealthStore::notify_event`](crate::store::HealthStore::notify_event) (PostgreSQL `NOTIFY`, a compact
//!   `origin|kind|id[|…]` line per event; the recorder tells a batch's events in as few
//!   `NOTIFY`s as fit 7,900 bytes, one event a line), after recording. Each monitor relays what the
//!   store's [`HealthStore::subscribe_events`](crate::store::HealthStore::subscribe_events) receiver yields (a `LISTEN` on a dedicated, reconnecting
//!   connection): status changes and checks from other origins are published as they are (its own are
//!   skipped: already published), connection changes are applied as if told locally (so a
//!   replica starts or stops checking at once) and published. Delivery is best effort: an
//!   event sent while a listener reconnects is lost, as a lagging subscriber's are; the reload
//!   and the stored health catch up. SQLite has no subscription: one process, nothing to relay.
//!
//! The store work per check is batched, by two tasks of the monitor:
//! - the **claimer** takes the claims of the checks falling due within
//!   [`MonitorConfig::claim_window`] (default 5 ms) of the first one, up to 256, and claims
//!   them with one [`HealthStore::lease_checks`](crate::store::HealthStore::lease_checks) call
//!   (one statement on PostgreSQL, one write on SQLite; one call per distinct hold), then
//!   answers each task: won (with the row), lost, or failed (the store did not answer);
//! - the **recorder** takes the checks finished within [`MonitorConfig::record_window`]
//!   (default 100 ms) of the first one, up to 256, records them with one
//!   [`HealthStore::record_checks`](crate::store::HealthStore::record_checks) call, and only
//!   then publishes each one's status change and check, in order. A check's task derives
//!   the status itself (the tracker is its own) and does not wait for the write; its next check
//!   is at least an interval later. What is queued when the monitor stops is still recorded.
//!
//! So a check waits at most the claim window more to start, and its result and events at most
//! the record window more; every guarantee above holds per check as it did with one store call
//! per check (a batch claim is atomic per connection; a batch record drops a deleted
//! connection's check alone and keeps facts per check).
//!
//! Limits, for later work: turning monitoring off leaves the last stored health in place (the
//! store has no call to reset it; adapters show `unknown` for a connection whose monitoring is
//! off).
//!
//! It must never: block one connection's check on another's, let a failing target take a
//! main-lane permit after its failure, hold a permit past the check timeout, run two checks of
//! one connection at once, or panic on a checker's or store's failure (errors are counted in
//! [`MonitorStats`] and retried on the next round).

mod scheduler;
mod shares;
pub mod status;
pub mod uptime;

pub(crate) use scheduler::MonitorLink;
pub use scheduler::{
    JITTER_PERCENT, Monitor, MonitorConfig, MonitorStats, PRUNE_BATCH_TARGET, PruneBatch,
};
pub use status::{HysteresisConfig, Tracker};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::ConnectionId;
use crate::model::{
    CheckFacts, FailureKind, HealthStatus, ServerInfo, StepName, TlsInfo, bounded_fact,
};
use crate::store::StoredConnection;

/// Runs one check of a saved connection. Implemented by the glue over the prober, and by tests.
#[async_trait]
pub trait Checker: Send + Sync + std::fmt::Debug + 'static {
    /// Checks one saved connection now, within its budget. Never panics; should not hang past
    /// its budget (the monitor cuts it off after [`MonitorConfig::check_timeout`] anyway).
    async fn check(&self, id: ConnectionId) -> CheckResult;

    /// Whether the check of `id` due now may be made. A refused check is not made nor
    /// recorded: the connection waits for its next interval. By default every check is made.
    async fn admit(&self, _id: ConnectionId) -> bool {
        true
    }

    /// As [`Checker::check`], given the connection's row as the monitor's claim just read it
    /// ([`CheckLease::connection`](crate::store::CheckLease::connection)), so it need not be read again. By
    /// default the row is not used.
    async fn check_row(&self, row: StoredConnection) -> CheckResult {
        self.check(row.id).await
    }
}

/// What the monitor needs from one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Whether the check succeeded.
    pub ok: bool,
    /// Total time of the check in milliseconds.
    pub latency_ms: u32,
    /// Why it failed; `None` on success.
    pub error_kind: Option<FailureKind>,
    /// The step it failed in; `None` on success (and for a check cut off by the monitor).
    pub step: Option<StepName>,
    /// When the server certificate expires, when TLS was used.
    pub cert_not_after: Option<OffsetDateTime>,
    /// Connections in use on the server, when the check could read it.
    pub connections_used: Option<u32>,
    /// The server's `max_connections`, when the check could read it.
    pub max_connections: Option<u32>,
    /// The server's `server_version`, when the probe query answered (the check reached the
    /// server; its facts are then kept with the connection's health).
    pub server_version: Option<String>,
    /// `pg_is_in_recovery()`, when the probe query answered.
    pub in_recovery: Option<bool>,
    /// The TLS protocol version, when TLS was used.
    pub tls_protocol: Option<String>,
    /// The TLS cipher suite, when TLS was used.
    pub tls_cipher: Option<String>,
    /// The server certificate's subject, when TLS was used.
    pub tls_peer_subject: Option<String>,
}

impl CheckResult {
    /// A success taking `latency_ms`, with no other facts.
    pub fn success(latency_ms: u32) -> Self {
        Self {
            ok: true,
            latency_ms,
            error_kind: None,
            step: None,
            cert_not_after: None,
            connections_used: None,
            max_connections: None,
            server_version: None,
            in_recovery: None,
            tls_protocol: None,
            tls_cipher: None,
            tls_peer_subject: None,
        }
    }

    /// A failure of `kind` after `latency_ms`, in no known step.
    pub fn failure(kind: FailureKind, latency_ms: u32) -> Self {
        Self {
            ok: false,
            error_kind: Some(kind),
            ..Self::success(latency_ms)
        }
    }

    /// The same result failed in `step`.
    pub fn in_step(mut self, step: StepName) -> Self {
        self.step = Some(step);
        self
    }

    /// The same result with the server certificate's expiry.
    pub fn with_cert(mut self, not_after: OffsetDateTime) -> Self {
        self.cert_not_after = Some(not_after);
        self
    }

    /// The same result with the server's connections in use and `max_connections`.
    pub fn with_connections(mut self, used: u32, max: u32) -> Self {
        self.connections_used = Some(used);
        self.max_connections = Some(max);
        self
    }

    /// The same result with the server's version and recovery state (the probe query
    /// answered).
    pub fn with_server(mut self, version: &str, in_recovery: bool) -> Self {
        self.server_version = Some(version.to_owned());
        self.in_recovery = Some(in_recovery);
        self
    }

    /// The same result with the TLS session's protocol, cipher suite and certificate subject.
    pub fn with_tls(
        mut self,
        protocol: Option<&str>,
        cipher: Option<&str>,
        peer_subject: Option<&str>,
    ) -> Self {
        self.tls_protocol = protocol.map(str::to_owned);
        self.tls_cipher = cipher.map(str::to_owned);
        self.tls_peer_subject = peer_subject.map(str::to_owned);
        self
    }

    /// The facts to keep with the connection's health for this check finished `at`: `Some`
    /// only when it reached the server (its probe query answered), else the stored facts stay.
    /// Server-supplied texts are cut to [`MAX_FACT_CHARS`](crate::model::MAX_FACT_CHARS).
    pub fn facts(&self, at: OffsetDateTime) -> Option<CheckFacts> {
        let version = self.server_version.as_deref()?;
        let server = ServerInfo {
            version: bounded_fact(version),
            in_recovery: self.in_recovery.unwrap_or(false),
            connections_used: self.connections_used,
            max_connections: self.max_connections,
        };
        let tls = TlsInfo {
            protocol: self.tls_protocol.as_deref().map(bounded_fact),
            cipher: self.tls_cipher.as_deref().map(bounded_fact),
            peer_subject: self.tls_peer_subject.as_deref().map(bounded_fact),
            peer_not_after: self.cert_not_after,
        };
        let encrypted = tls.protocol.is_some()
            || tls.cipher.is_some()
            || tls.peer_subject.is_some()
            || tls.peer_not_after.is_some();
        Some(CheckFacts {
            at,
            server: Some(server),
            tls: encrypted.then_some(tls),
        })
    }
}

/// Something adapters may want to tell their clients about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MonitorEvent {
    /// A connection's derived status changed.
    StatusChanged {
        /// The connection.
        id: ConnectionId,
        /// The status before the check.
        from: HealthStatus,
        /// The status after the check.
        to: HealthStatus,
        /// When the check finished (UTC).
        at: OffsetDateTime,
    },
    /// A check of a connection was recorded (every check, after [`MonitorEvent::StatusChanged`]
    /// when the status changed too).
    Checked {
        /// The connection.
        id: ConnectionId,
        /// The status after the check.
        status: HealthStatus,
        /// This check's total time in milliseconds.
        latency_ms: u32,
        /// Why it failed; `None` on success.
        error_kind: Option<FailureKind>,
        /// When the check finished (UTC).
        at: OffsetDateTime,
    },
    /// A connection was created or edited (told through [`Monitor::notify_changed`], as the
    /// Hub does for every change made through it, or found by a reload).
    ConnectionChanged {
        /// The connection.
        id: ConnectionId,
    },
    /// A connection was deleted (told through [`Monitor::notify_deleted`], as the Hub does,
    /// or found missing by a reload).
    ConnectionDeleted {
        /// The connection.
        id: ConnectionId,
    },
}

impl MonitorEvent {
    /// The connection the event is about.
    pub fn id(&self) -> ConnectionId {
        match self {
            Self::StatusChanged { id, .. }
            | Self::Checked { id, .. }
            | Self::ConnectionChanged { id }
            | Self::ConnectionDeleted { id } => *id,
        }
    }
}
