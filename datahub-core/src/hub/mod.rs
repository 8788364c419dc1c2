//! The `Hub` facade: the only door adapters use.
//!
//! Every method takes the acting [`Principal`] first, checks the permission table (a check yields
//! the proof value the work needs), does the work, and writes the audit row — in the same store
//! transaction as the change, so a change is never made without its audit row. Denied attempts
//! of anything but plain reads are audited too, with outcome `denied`. A connection the
//! principal may not view is `NotFound`, exactly as if it did not exist.
//!
//! Adapters authenticate through the Hub as well ([`Hub::login`], [`Hub::start_session`],
//! [`Hub::authenticate_session`], [`Hub::end_session`], [`Hub::authenticate_token`],
//! [`Hub::principal_for`]), so every adapter authenticates the same way. Load the principal
//! afresh on every request: a revoked grant, a changed role, a disabled account or a revoked
//! token then takes effect on the next one.
//!
//! What an adapter could forget, the Hub does itself: it throttles password guesses per account
//! name ([`Hub::login`], [`Hub::change_own_password`]; SECURITY.md S20, S29; an adapter that
//! knows the client's address adds its own per-address limit), and it tells the monitor it
//! started ([`Hub::start_monitor`]) of every connection change made through it.
//!
//! It must never: return a secret except from [`Hub::reveal`]; put a secret into an error or
//! audit row; act on a connection other than the one a proof names.

mod accounts;
mod admin;
mod connections;
mod monitor;
mod policy;
mod probe;
mod secrets;
mod sessions;
mod views;

pub use crate::limit::{LoginLimit, RateLimit};
pub use accounts::{
    BOOTSTRAP_ADMIN, BootstrapAdmin, DIRECTORY_LIMIT, MAX_DIRECTORY_QUERY_CHARS, NewApiToken,
    UserUpdate,
};
pub use admin::AuditVerification;
pub use connections::{ConnectionGrants, Dsn, Revealed};
pub use probe::SaveOutcome;
pub use sessions::{MAX_USER_AGENT_CHARS, NewSession};
pub use views::{EventFilter, HealthHistory, MAX_HISTORY_LIMIT};

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use tokio::sync::Semaphore;

use time::OffsetDateTime;

use crate::audit::{AuditEvent, Outcome, truncate_to_micros};
use crate::auth::SessionConfig;
use crate::crypto::Keyring;
use crate::keys;
use crate::limit::KeyedLimiter;
use crate::net::{Connect, Dialer};
use crate::rbac::{Action, Principal};
use crate::store::Store;
use crate::{ErrorKind, Result, UserId};

/// The facade over a store and a keyring. Cheap to clone; share one per process.
#[derive(Debug, Clone)]
pub struct Hub {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    connect: Arc<dyn Connect>,
    /// Connection tests per user (S16, S31): draft and saved tests, and the monitor's first
    /// check after a user saved or retargeted a connection (`owed_checks`).
    test_limit: Arc<KeyedLimiter<UserId>>,
    /// Connections whose next monitor check is owed to the budget of the user who saved them.
    owed_checks: Arc<monitor::OwedChecks>,
    /// Password guesses per account name (S20, S29): sign-ins and own password changes.
    login_limit: Arc<KeyedLimiter<String>>,
    /// Where connection changes are told: the monitor this hub started, or its own channel.
    changes: Arc<monitor::Changes>,
    /// The lane of password hashing (argon2): at most this many hashes run at once, so a flood
    /// of sign-ins costs bounded memory and CPU and never takes the blocking threads the
    /// stores need.
    password_lane: Arc<Semaphore>,
    /// Session lifetimes (`sessions.rs`).
    sessions: SessionConfig,
    /// When this hub last pruned sessions that are over (unix seconds; 0: never).
    last_session_prune: Arc<AtomicI64>,
    /// The target policy as the monitor's checks read it (at most 1 s old; dropped by
    /// [`Hub::set_policy`]).
    check_policy: Arc<policy::PolicyCache>,
}

impl Hub {
    /// A hub over `store`, sealing with `keyring`.
    ///
    /// First checks that the keyring opens everything the store uses
    /// ([`keys::check_store_keys`]), writing nothing if not; then records the key check of the
    /// active key (and of keys wrapping rows) where none is recorded, and checks again, so two
    /// processes that made different keys for one empty store at once cannot both go on.
    ///
    /// # Errors
    /// `Keyring`, naming the key ids the store uses that the keyring lacks or holds another key
    /// under, and the keyring's source (SECURITY.md S5, S28: the program must not run on data it
    /// cannot open); `Store` when the store fails.
    pub async fn open(store: Arc<dyn Store>, keyring: Keyring) -> Result<Self> {
        keys::check_store_keys(store.as_ref(), &keyring).await?;
        keys::record_key_checks(store.as_ref(), &keyring).await?;
        keys::check_store_keys(store.as_ref(), &keyring).await?;
        Ok(Self {
            store,
            keyring: Arc::new(keyring),
            connect: Arc::new(Dialer::system()),
            test_limit: Arc::new(KeyedLimiter::new(RateLimit::default())),
            owed_checks: Arc::new(monitor::OwedChecks::default()),
            login_limit: Arc::new(KeyedLimiter::new(LoginLimit::default().rate())),
            changes: Arc::new(monitor::Changes::default()),
            password_lane: Arc::new(Semaphore::new(default_password_lane())),
            sessions: SessionConfig::default(),
            last_session_prune: Arc::new(AtomicI64::new(0)),
            check_policy: Arc::new(policy::PolicyCache::default()),
        })
    }

    /// The same hub dialling through `connect` instead of the system dialer (e.g. a dialer with
    /// an injected resolver in tests). Every test, check and pool goes through it.
    pub fn with_connector(mut self, connect: Arc<dyn Connect>) -> Self {
        self.connect = connect;
        self
    }

    /// The same hub with another per-user limit on connection tests.
    /// Default: [`RateLimit::default`].
    pub fn with_test_rate_limit(mut self, limit: RateLimit) -> Self {
        self.test_limit = Arc::new(KeyedLimiter::new(limit));
        self
    }

    /// The same hub with another limit on password guesses per account name (failed sign-ins
    /// and wrong current passwords). Default: [`LoginLimit::default`].
    pub fn with_login_limit(mut self, limit: LoginLimit) -> Self {
        self.login_limit = Arc::new(KeyedLimiter::new(limit.rate()));
        self
    }

    /// The same hub running at most `permits` password hashes (argon2) at once (at least 1).
    /// Default: twice the number of cores.
    pub fn with_password_lane(mut self, permits: usize) -> Self {
        self.password_lane = Arc::new(Semaphore::new(permits.max(1)));
        self
    }

    /// Takes one connection test from `user`'s budget.
    ///
    /// # Errors
    /// `RateLimited`, saying how long to wait, when the budget is spent.
    fn take_test(&self, user: UserId) -> Result<()> {
        self.test_limit.take(&user).map_err(|wait| {
            crate::Error::rate_limited(
                format!(
                    "too many connection tests: try again in {} s",
                    retry_seconds(wait)
                ),
                wait,
            )
        })
    }

    /// Takes one password guess from the budget of the account name `account` (S20, S29),
    /// before any password work.
    ///
    /// # Errors
    /// `RateLimited`, saying how long to wait, when the name's guesses are spent.
    fn take_guess(&self, account: &str) -> Result<Guess> {
        let key = guess_key(account);
        self.login_limit.take(&key).map_err(|wait| {
            crate::Error::rate_limited(
                format!("too many attempts: try again in {} s", retry_seconds(wait)),
                wait,
            )
        })?;
        Ok(Guess(key))
    }

    /// Gives the guess back unless the password was wrong (`Unauthenticated`): a success, or a
    /// failure of something else (the store), counts against no one.
    fn settle_guess<T>(&self, guess: Guess, result: &Result<T>) {
        if !matches!(result, Err(e) if e.kind() == ErrorKind::Unauthenticated) {
            self.login_limit.refund(std::slice::from_ref(&guess.0));
        }
    }

    /// How long until the account name `account` may make a password guess again (zero when it
    /// may now), without taking one: for an adapter refusing an attempt by a limit of its own
    /// (a client address), so its answer names the wait until both allow one.
    pub fn login_retry_after(&self, account: &str) -> Duration {
        self.login_limit.retry_after(&guess_key(account))
    }

    /// How many account names the guess throttle keeps a budget for now (bounded; for metrics
    /// and tests).
    pub fn login_buckets(&self) -> usize {
        self.login_limit.len()
    }

    /// Runs password work (argon2) in its own bounded lane on the blocking pool: it waits
    /// (asynchronously, holding no thread) for one of the lane's permits first.
    async fn password_work<T, F>(&self, work: F) -> Result<T>
    where
        F: FnOnce() -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let _permit =
            self.password_lane.acquire().await.map_err(|_| {
                crate::Error::new(ErrorKind::Internal, "the password lane is closed")
            })?;
        tokio::task::spawn_blocking(work).await.map_err(|_| {
            crate::Error::new(ErrorKind::Internal, "a background task failed to complete")
        })?
    }

    /// Whether the store answers: one cheap read, for adapters' readiness checks (`/readyz`).
    /// Adapters never reach the store itself: that would skip access control and the audit log.
    ///
    /// # Errors
    /// `Store` when the store is down or fails.
    pub async fn ready(&self) -> Result<()> {
        self.store.user_count().await.map(|_| ())
    }

    /// An audit event for `principal` doing `action` now.
    fn event(
        &self,
        principal: &Principal,
        action: Action,
        target: Option<&str>,
        outcome: Outcome,
    ) -> AuditEvent {
        AuditEvent::now(
            principal.actor(),
            principal.username(),
            action.as_str(),
            target,
            outcome,
        )
        .with_request_info(principal.request())
    }

    /// Audits a refused attempt and returns the refusal. If the audit row cannot be written,
    /// that failure is returned instead, so a broken audit log is never silent.
    async fn refuse<T>(
        &self,
        principal: &Principal,
        action: Action,
        target: Option<&str>,
        refusal: crate::Error,
    ) -> Result<T> {
        if matches!(
            refusal.kind(),
            ErrorKind::PermissionDenied | ErrorKind::NotFound
        ) {
            tracing::debug!(
                action = action.as_str(),
                principal = %principal.user(),
                target,
                refusal = refusal.kind().as_str(),
                "permission denied"
            );
            let event = self.event(principal, action, target, Outcome::Denied);
            self.audit(&event).await?;
        }
        Err(refusal)
    }

    /// Appends `event` to the audit log on its own; a failure is logged and returned, so the
    /// operation it records fails too (S21).
    async fn audit(&self, event: &AuditEvent) -> Result<()> {
        let appended = self.store.append_audit(event).await;
        log_audit_failure(event, appended)
    }

    /// As [`Self::audit`], with the row appended unsynced
    /// ([`AuditStore::append_audit_unsynced`](crate::store::AuditStore::append_audit_unsynced)):
    /// for an operation that changed no stored data (a connection test).
    async fn audit_unsynced(&self, event: &AuditEvent) -> Result<()> {
        let appended = self.store.append_audit_unsynced(event).await;
        log_audit_failure(event, appended)
    }
}

/// Logs an audit append that failed; passes its failure on.
fn log_audit_failure(
    event: &AuditEvent,
    appended: Result<crate::audit::AuditRecord>,
) -> Result<()> {
    if let Err(e) = appended {
        tracing::warn!(
            action = event.action.as_str(),
            error = %e,
            "could not append to the audit log"
        );
        return Err(e);
    }
    Ok(())
}

/// A password guess taken from an account name's budget ([`Hub::take_guess`]).
#[must_use = "a guess is settled after the password check"]
struct Guess(String);

/// The throttle's key of an account name: lowercase, as names are matched. A name longer than
/// any account's is cut (it names no account anyway), so the map's keys stay small whatever a
/// caller sends.
fn guess_key(account: &str) -> String {
    account
        .chars()
        .take(crate::auth::MAX_ACCOUNT_NAME_LEN + 1)
        .collect::<String>()
        .to_lowercase()
}

/// Now, in UTC, at the precision the stores keep.
fn now() -> OffsetDateTime {
    truncate_to_micros(OffsetDateTime::now_utc())
}

/// Whole seconds to wait, at least 1 (as `Retry-After` counts).
pub(crate) fn retry_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// The default size of the password lane: twice the cores (argon2 with p = 1 uses one core and
/// 19 MiB per hash), at least 2.
fn default_password_lane() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get() * 2)
}

/// The audit target naming one row.
fn target(kind: &str, id: impl std::fmt::Display) -> String {
    format!("{kind}:{id}")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::crypto::Keyring;
    use crate::store::SqliteStore;

    /// A hub over a new SQLite store in `dir`.
    async fn test_hub(dir: &tempfile::TempDir) -> Hub {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("d")).unwrap());
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        Hub::open(store, Keyring::parse(key).unwrap())
            .await
            .unwrap()
    }

    /// S29: guesses per account name run out, whatever the case, and refill; a success gives
    /// its guess back, a wrong password keeps it spent. (The per-address half is the server's.)
    #[tokio::test(start_paused = true)]
    async fn guesses_per_name_run_out_then_refill() {
        let dir = tempfile::tempdir().unwrap();
        let hub = test_hub(&dir).await.with_login_limit(LoginLimit {
            burst: 3,
            refill: Duration::from_secs(10),
        });
        let wrong = || Err::<(), _>(crate::Error::new(ErrorKind::Unauthenticated, "wrong"));
        for _ in 0..3 {
            let guess = hub.take_guess("Admin").unwrap();
            hub.settle_guess(guess, &wrong());
        }
        assert!(
            hub.take_guess("admin").is_err(),
            "per account, whatever the case"
        );
        let guess = hub.take_guess("other").unwrap();
        // A success gives its guess back.
        hub.settle_guess(guess, &Ok(()));
        for _ in 0..3 {
            let guess = hub.take_guess("other").unwrap();
            hub.settle_guess(guess, &wrong());
        }
        assert!(hub.take_guess("other").is_err());
        tokio::time::advance(Duration::from_secs(10)).await;
        let guess = hub.take_guess("admin").unwrap();
        hub.settle_guess(guess, &wrong());
    }

    /// The wait a refusal names is the real refill time of the name's budget, not a constant.
    #[tokio::test(start_paused = true)]
    async fn the_wait_is_the_refill_time() {
        let dir = tempfile::tempdir().unwrap();
        let hub = test_hub(&dir).await.with_login_limit(LoginLimit {
            burst: 2,
            refill: Duration::from_secs(6),
        });
        let wrong = || Err::<(), _>(crate::Error::new(ErrorKind::Unauthenticated, "wrong"));
        for _ in 0..2 {
            let guess = hub.take_guess("admin").unwrap();
            hub.settle_guess(guess, &wrong());
        }
        let refused = hub.take_guess("admin").map(|_| ()).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::RateLimited);
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(6)));
        tokio::time::advance(Duration::from_millis(2_500)).await;
        let wait = hub
            .take_guess("admin")
            .map(|_| ())
            .unwrap_err()
            .retry_after()
            .unwrap();
        assert!(
            wait > Duration::from_millis(3_400) && wait <= Duration::from_millis(3_500),
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_millis(3_500)).await;
        let guess = hub.take_guess("admin").unwrap();
        hub.settle_guess(guess, &wrong());
    }

    /// A name longer than any account's is cut to a bounded key.
    #[test]
    fn guess_keys_are_lowercase_and_bounded() {
        assert_eq!(guess_key("Admin"), "admin");
        let long = "X".repeat(100_000);
        assert_eq!(
            guess_key(&long).len(),
            crate::auth::MAX_ACCOUNT_NAME_LEN + 1
        );
    }

    /// S29: however many password hashes are asked for at once, at most the lane's permits run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_work_is_bounded_by_its_lane() {
        let dir = tempfile::tempdir().unwrap();
        let hub = test_hub(&dir).await.with_password_lane(3);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..24 {
            let (hub, running, peak) = (hub.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                hub.password_work(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }
}
