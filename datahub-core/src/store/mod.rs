//! The one storage contract ([`Store`]), implemented by SQLite (the embedded default) and
//! PostgreSQL (shared deployments), and the records only the Hub and the stores see (sealed
//! secrets, password and token hashes, leases). The values it stores and answers otherwise are
//! the Hub's vocabulary, in [`crate::model`].
//!
//! A store keeps what it is given and answers what it is asked, durably and consistently; it
//! decides nothing. Permission checks, validation and encryption happen before a call reaches
//! it (in the `Hub`). Three rules every backend keeps, proven by the conformance suite:
//!
//! - **Atomic audit.** Every write that changes state takes the [`AuditEvent`] describing it and
//!   appends it to the hash chain in the same transaction: if the audit row cannot be written,
//!   the change is not made either. Appends are serialized (one writer at a time, across every
//!   process sharing the store), so the chain stays linear.
//! - **Optimistic concurrency.** Updates and deletes name the version they read; a stale version
//!   is [`ErrorKind::Conflict`](crate::ErrorKind::Conflict) on `version`
//!   ([`Error::is_stale`](crate::Error::is_stale)), never a silent overwrite (S26).
//! - **Visibility in SQL.** Listing filters, counts, sorts and pages in SQL, restricted in SQL to
//!   what the caller may view ([`Visibility`]), so invisible rows never leave the store.
//!
//! Errors: name or username taken and stale versions are `Conflict`; a missing row is
//! `NotFound`; a store that is down or fails is `Store` (its message says what to check, never a
//! connection password); a row that does not parse back is `Store` ("corrupt row") — a store
//! never hands back half-valid data.
//!
//! It must never: hold a plaintext secret (only [`SealedSecrets`] and token hashes), log a
//! value of a secret column, or decide access.
//!
//! The contract is split by area, one trait each, with [`Store`] their sum: [`ConnectionStore`]
//! (connections and grants), [`AccountStore`] (users, teams, tokens, the directory),
//! [`SessionStore`], [`AuditStore`], [`HealthStore`] (checks, leases, events between processes)
//! and [`AdminStore`] (the target policy and the keys). Each backend implements them in one file
//! per area; what both backends do alike (rebuilding a connection from its columns, page bounds)
//! is in `columns.rs`. Code holding an `Arc<dyn Store>` calls every area's methods through it;
//! code holding a concrete store imports the traits it calls ([`prelude`]).

mod columns;
mod history;
mod migrate;
pub mod postgres;
mod rows;
pub mod sqlite;

pub use migrate::{Applied, Migration, plan as migration_plan};
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::SqliteStore;

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::audit::{AuditEvent, AuditRecord};
use crate::crypto::{KekId, KeyCheck, SealedValue, WrappedDek};
use crate::model::{
    AuditQuery, Check, Connection, ConnectionName, ConnectionSpec, Directory, Health, HealthBucket,
    ListQuery, NamedGrant, Page, TargetPolicy, Team, TokenInfo, User, Visibility,
};
use crate::rbac::Grant;
use crate::{ConnectionId, Result, SessionId, TeamId, TokenId, UserId};

/// A connection's encrypted secrets, as stored: the wrapped data key and the sealed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecrets {
    /// The connection's data key, wrapped by a KEK of the keyring.
    pub dek: WrappedDek,
    /// The password, sealed under the data key (field name `password`).
    pub password: SealedValue,
    /// The TLS client key, sealed under the data key (field name `tls.client_key_pem`).
    pub client_key_pem: Option<SealedValue>,
}

/// A saved connection as a store holds it: metadata plus sealed secrets. Only the Hub and the
/// stores see it; adapters get a [`Connection`], which has none.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConnection {
    /// Id (UUID v7).
    pub id: ConnectionId,
    /// The validated settings.
    pub spec: ConnectionSpec,
    /// The creator; has `manage` on it.
    pub owner: UserId,
    /// Starts at 1, bumped by every update.
    pub version: u64,
    /// Created (UTC, microseconds).
    pub created_at: OffsetDateTime,
    /// Last changed (UTC, microseconds).
    pub updated_at: OffsetDateTime,
    /// The encrypted secrets.
    pub secrets: SealedSecrets,
}

/// What a test of a saved connection reads from the store, in one call
/// ([`ConnectionStore::connection_for_test`]): the connection, its grants and the target policy.
#[derive(Debug, Clone, PartialEq)]
pub struct TestContext {
    /// The connection as stored.
    pub connection: StoredConnection,
    /// The grants on it, as [`ConnectionStore::grants`] answers them.
    pub grants: Vec<Grant>,
    /// The target policy now, as [`AdminStore::policy`] answers it.
    pub policy: TargetPolicy,
}

/// A credential (an API token or a session) with the account holding it, as authentication
/// reads them in one store call ([`AccountStore::token_with_holder`],
/// [`SessionStore::session_with_holder`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held<T> {
    /// The token or session as stored.
    pub credential: T,
    /// Its user, `None` when that account no longer exists.
    pub user: Option<StoredUser>,
    /// The teams of that user, as [`AccountStore::teams_of`] answers them.
    pub teams: Vec<TeamId>,
}

/// A user account as stored: the [`User`] plus its password hash, which never leaves the Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    /// The account as shown.
    pub user: User,
    /// The argon2id hash in PHC string form (never the password).
    pub password_hash: String,
}

/// An API token as stored: the [`TokenInfo`] plus the SHA-256 of the token, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The token as listed.
    pub info: TokenInfo,
    /// SHA-256 of the token text.
    pub hash: [u8; 32],
}

/// A browser session as stored: the SHA-256 of its token, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Id.
    pub id: SessionId,
    /// The user it acts as.
    pub user: UserId,
    /// SHA-256 of the session token's text.
    pub hash: [u8; 32],
    /// Started (UTC).
    pub created_at: OffsetDateTime,
    /// Its absolute end, fixed at the start (UTC).
    pub expires_at: OffsetDateTime,
    /// Its last recorded use (UTC); written at most once per touch interval.
    pub last_seen_at: OffsetDateTime,
    /// The client's address at the start, when known.
    pub client_addr: Option<String>,
    /// The client's user agent at the start (escaped, at most 256 characters), when known.
    pub user_agent: Option<String>,
}

/// How many stored data keys each KEK wraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekUsage {
    /// The KEK.
    pub kek: KekId,
    /// How many connections' data keys it wraps.
    pub rows: u64,
}

/// What one batch of [`HealthStore::roll_up_checks`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollUp {
    /// Raw checks folded into buckets (and deleted) by this batch.
    pub rolled: u64,
    /// Where the next batch starts (its `from`); `None` when every connection is done.
    pub next: Option<ConnectionId>,
    /// Another process sharing the store was rolling up at that moment, so this batch did
    /// nothing (PostgreSQL only: one process rolls up at a time); the other one carries on.
    pub contended: bool,
}

/// A won claim on one connection's check ([`HealthStore::lease_check`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckLease {
    /// Who held the claim before this one (`None`: nobody ever claimed this connection's
    /// check). When it is not the claimant, another process checked the connection since the
    /// claimant last did, and the claimant's view of its status is stale.
    pub previous_holder: Option<Uuid>,
    /// The connection as stored, read with the claim: the check needs no second read (one
    /// store round trip per check fewer).
    pub connection: StoredConnection,
}

/// The channel processes sharing a store tell each other events on (PostgreSQL `NOTIFY`).
pub const EVENTS_CHANNEL: &str = "datahub_events";

/// The storage contract: the sum of its areas. Every backend implements each area's trait; the
/// blanket impl makes it a `Store`, so the Hub holds one `Arc<dyn Store>` and calls any area's
/// methods through it (a trait object's supertrait methods need no import; a concrete store's
/// do: see [`prelude`]). See the module docs for the rules every backend keeps.
pub trait Store:
    ConnectionStore
    + AccountStore
    + SessionStore
    + AuditStore
    + HealthStore
    + AdminStore
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: ConnectionStore
        + AccountStore
        + SessionStore
        + AuditStore
        + HealthStore
        + AdminStore
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// The store's traits, to call the methods of a concrete store (e.g. a `SqliteStore` in a
/// test): `use datahub_core::store::prelude::*;`. Through `Arc<dyn Store>` they need no import.
pub mod prelude {
    pub use super::{
        AccountStore, AdminStore, AuditStore, ConnectionStore, HealthStore, SessionStore, Store,
    };
}

/// Connections and the grants on them.
///
/// Optimistic concurrency: updates, deletes and grant changes name the version they read; a
/// stale version is a `Conflict` on `version` ([`Error::is_stale`](crate::Error::is_stale)),
/// never a silent overwrite (S26), and a missing connection is `NotFound`. Listing filters,
/// counts, sorts and pages in SQL, restricted in SQL to what the caller may view
/// ([`Visibility`]), so invisible rows never leave the store. Each write appends its audit
/// event in its own transaction.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Inserts a new connection (version 1) and appends `audit`.
    /// Errors: `Conflict` naming the field `name` when the name is taken.
    async fn insert_connection(&self, row: &StoredConnection, audit: &AuditEvent) -> Result<()>;

    /// One connection with its sealed secrets, or `None`.
    async fn connection(&self, id: ConnectionId) -> Result<Option<StoredConnection>>;

    /// One connection with its grants and the target policy, for a test of it, or `None` when
    /// the connection does not exist: one blocking hop on SQLite, and on PostgreSQL one pooled
    /// client whose three statements are pipelined (one round trip), so a test waits for the
    /// store once instead of three times. Each part is read as its own method reads it.
    async fn connection_for_test(&self, id: ConnectionId) -> Result<Option<TestContext>>;

    /// As [`Self::connection_for_test`], for the connection with this unique name: the same
    /// one call (the name is resolved in it), so a test by name waits for the store once.
    /// The grants and the policy are those of the row answered, even when a rename races the
    /// call.
    async fn connection_for_test_by_name(
        &self,
        name: &ConnectionName,
    ) -> Result<Option<TestContext>>;

    /// One connection by its unique name, or `None`.
    async fn connection_by_name(&self, name: &ConnectionName) -> Result<Option<StoredConnection>>;

    /// One connection's summary (with health), or `None`.
    async fn connection_summary(&self, id: ConnectionId) -> Result<Option<Connection>>;

    /// Replaces a connection's spec and secrets if its stored version is `expected_version`,
    /// setting the version to `expected_version + 1` and `updated_at` from `row`; appends
    /// `audit`. Returns the new version.
    /// Errors: `NotFound`; `Conflict` when the version is stale or the new name is taken.
    async fn update_connection(
        &self,
        row: &StoredConnection,
        expected_version: u64,
        audit: &AuditEvent,
    ) -> Result<u64>;

    /// Deletes a connection (with its grants, health and history) if its stored version is
    /// `expected_version`; appends `audit`.
    /// Errors: `NotFound`; `Conflict` when the version is stale.
    async fn delete_connection(
        &self,
        id: ConnectionId,
        expected_version: u64,
        audit: &AuditEvent,
    ) -> Result<()>;

    /// One page of connection summaries matching `query`, restricted to `visibility`, with the
    /// total count under the same restriction.
    async fn list_connections(
        &self,
        query: &ListQuery,
        visibility: &Visibility,
    ) -> Result<Page<Connection>>;

    /// Replaces the set of grants on a connection if its version is still `expected_version`,
    /// and bumps the version (grants are part of what the connection's version covers, so a
    /// concurrent change is never silently overwritten: S26); appends `audit`. Returns the new
    /// version. Errors: `NotFound` for an unknown connection, user or team; `Conflict` on
    /// `version` when stale.
    async fn set_grants(
        &self,
        id: ConnectionId,
        expected_version: u64,
        grants: &[Grant],
        audit: &AuditEvent,
    ) -> Result<u64>;

    /// The grants on a connection.
    async fn grants(&self, id: ConnectionId) -> Result<Vec<Grant>>;

    /// The grants on a connection with each grantee's name (the user's login name, the team's
    /// name), in the order of [`Self::grants`]: users' before teams'. One query.
    async fn named_grants(&self, id: ConnectionId) -> Result<Vec<NamedGrant>>;
}

/// Users, teams, API tokens and the name directory.
///
/// A taken user name or team name is a `Conflict` naming the field; an unknown user or team is
/// `NotFound`. It keeps a user's password hash and a token's SHA-256, never a password or a
/// token. Each write appends its audit event in its own transaction, but recording a token's use
/// ([`Self::touch_token`]), which is not audited.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Inserts a user; appends `audit`. Errors: `Conflict` on `username` when taken.
    async fn insert_user(&self, user: &StoredUser, audit: &AuditEvent) -> Result<()>;

    /// Replaces a user's role, password hash, disabled flag and `updated_at`; appends `audit`.
    /// Errors: `NotFound`.
    async fn update_user(&self, user: &StoredUser, audit: &AuditEvent) -> Result<()>;

    /// One user by id.
    async fn user(&self, id: UserId) -> Result<Option<StoredUser>>;

    /// One user by login name (exact).
    async fn user_by_name(&self, username: &str) -> Result<Option<StoredUser>>;

    /// Every user, by name.
    async fn users(&self) -> Result<Vec<StoredUser>>;

    /// How many users exist (to know whether to bootstrap the first admin).
    async fn user_count(&self) -> Result<u64>;

    /// Inserts a team or replaces its name and members; appends `audit`.
    /// Errors: `Conflict` on `name` when taken by another team; `NotFound` for a member.
    async fn upsert_team(&self, team: &Team, audit: &AuditEvent) -> Result<()>;

    /// Deletes a team (and its grants); appends `audit`. Errors: `NotFound`.
    async fn delete_team(&self, id: TeamId, audit: &AuditEvent) -> Result<()>;

    /// Every team, by name.
    async fn teams(&self) -> Result<Vec<Team>>;

    /// The teams a user belongs to.
    async fn teams_of(&self, user: UserId) -> Result<Vec<TeamId>>;

    /// Enabled users whose login name, and teams whose name, contain `needle` (compared in
    /// lowercase; the empty needle matches every name), at most `limit` of each, sorted by name
    /// (bytewise). Disabled users are never listed.
    async fn directory(&self, needle: &str, limit: u32) -> Result<Directory>;

    /// Inserts a token; appends `audit`.
    async fn insert_token(&self, token: &StoredToken, audit: &AuditEvent) -> Result<()>;

    /// The token with this hash, revoked or not.
    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StoredToken>>;

    /// The token with this hash (revoked or not) with its user and the user's teams, in one
    /// store call (one blocking hop on SQLite; on PostgreSQL one pooled client, three prepared
    /// statements pipelined): what authenticating a request with a token reads.
    async fn token_with_holder(&self, hash: &[u8; 32]) -> Result<Option<Held<StoredToken>>>;

    /// The tokens of a user.
    async fn tokens_of(&self, user: UserId) -> Result<Vec<StoredToken>>;

    /// Marks a token revoked at `at`; appends `audit`. Errors: `NotFound`.
    async fn revoke_token(&self, id: TokenId, at: OffsetDateTime, audit: &AuditEvent)
    -> Result<()>;

    /// Records a use of a token at `at` when its last recorded use is none or at least
    /// [`TOKEN_TOUCH_INTERVAL`](crate::model::TOKEN_TOUCH_INTERVAL) before `at`, and the token is not revoked: one UPDATE whose
    /// condition makes a use within the minute a no-op, so replicas racing write once. Returns
    /// whether a row changed. Not audited.
    async fn touch_token(&self, id: TokenId, at: OffsetDateTime) -> Result<bool>;
}

/// Browser sessions: the SHA-256 of each session token, never the token.
///
/// A session starts from a login, which is audited on its own, so inserting, touching and
/// pruning sessions are not audited; ending sessions (a logout, a user's sessions, an account
/// change that ends them) appends its audit event in the same transaction.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Inserts a session. Not audited on its own: a session starts from a login, which is.
    /// Errors: `NotFound` on `user_id` for an unknown user; `Conflict` when the id or hash is
    /// stored already.
    async fn insert_session(&self, session: &StoredSession) -> Result<()>;

    /// The session with this token hash, or `None` (whether or not it has expired: the caller
    /// decides).
    async fn session_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StoredSession>>;

    /// As [`AccountStore::token_with_holder`], for the session with this token hash (expired
    /// or not: the caller decides).
    async fn session_with_holder(&self, hash: &[u8; 32]) -> Result<Option<Held<StoredSession>>>;

    /// The sessions of a user, oldest first.
    async fn sessions_of(&self, user: UserId) -> Result<Vec<StoredSession>>;

    /// Records a use of a session at `at` if `at` is later than its stored last use; returns
    /// whether a row changed (`false` also for a session deleted meanwhile). Not audited.
    async fn touch_session(&self, id: SessionId, at: OffsetDateTime) -> Result<bool>;

    /// Deletes one session (a logout) and appends `audit`, both only when the session exists;
    /// returns whether it did.
    async fn delete_session(&self, id: SessionId, audit: &AuditEvent) -> Result<bool>;

    /// Deletes every session of `user` and appends `audit` (always); returns how many ended.
    async fn delete_sessions_of_user(&self, user: UserId, audit: &AuditEvent) -> Result<u64>;

    /// As [`AccountStore::update_user`], and in the same transaction deletes every session of the user
    /// (for a disabled account or a new password) and, when the row says the account is
    /// disabled, revokes every token of the user not yet revoked (at `updated_at`), so enabling
    /// it again revives none (S33); returns how many sessions ended.
    /// Errors: `NotFound`.
    async fn update_user_ending_sessions(
        &self,
        user: &StoredUser,
        audit: &AuditEvent,
    ) -> Result<u64>;

    /// Deletes sessions past their absolute expiry (`expires_at <= now`) or last used before
    /// `idle_before`; returns how many. Not audited (housekeeping of sessions already over).
    async fn prune_sessions(&self, now: OffsetDateTime, idle_before: OffsetDateTime)
    -> Result<u64>;
}

/// The audit log: one hash chain, appended to one writer at a time across every process sharing
/// the store, so it stays linear. Every other write appends its event inside its own
/// transaction; this trait appends an event on its own and reads the chain back.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends an event on its own (e.g. a denied attempt, a login) and returns the stored
    /// record.
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord>;

    /// As [`Self::append_audit`], for a row recording something that changed no stored data (a
    /// connection test): committed and visible before it returns, and it survives a crash of
    /// this process, but its commit does not wait for the log to reach the disk (SQLite:
    /// `synchronous=NORMAL` in WAL mode; PostgreSQL: `synchronous_commit = off` for that
    /// transaction), so a power loss or an operating-system crash (on PostgreSQL also a crash of
    /// the database server) may lose the last such rows. Never a part of one, and never a row
    /// appended before a synced one: the log is written in order, so a later synced commit
    /// makes every earlier row durable, and the chain stays whole. The default appends synced.
    async fn append_audit_unsynced(&self, event: &AuditEvent) -> Result<AuditRecord> {
        self.append_audit(event).await
    }

    /// Up to `limit` records with `seq > after`, in sequence order (for verification).
    async fn audit_after(&self, after: u64, limit: u32) -> Result<Vec<AuditRecord>>;

    /// One page of the log matching `query`, newest first.
    async fn audit_page(&self, query: &AuditQuery) -> Result<Page<AuditRecord>>;
}

/// Health checks and their history, the check leases that split the checks between processes
/// sharing the store, and the events those processes tell each other.
///
/// None of it is audited: it is the monitor's own bookkeeping. A check of a connection deleted
/// meanwhile is dropped without error; a lease is atomic across every process sharing the store.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// Records a check and sets the connection's current health to `health`, in one
    /// transaction (the history row and one upsert of the summary row). `health.facts`: `Some`
    /// replaces the stored facts, `None` keeps them (a check that did not reach the server does
    /// not erase what the last one that did saw).
    /// A check of a connection deleted meanwhile is dropped without error.
    /// The same as [`Self::record_checks`] with one check.
    async fn record_check(&self, check: &Check, health: &Health) -> Result<()> {
        self.record_checks(&[(check.clone(), health.clone())]).await
    }

    /// Records several checks, each as [`Self::record_check`] does, all in one transaction:
    /// one statement on PostgreSQL, one write on SQLite. In slice order, so of two checks of one
    /// connection the later one's health is the current one (and the facts, when the later
    /// one brings none, the earlier one's). Checks of connections deleted meanwhile are dropped
    /// without error and do not keep the others from being recorded. An empty slice does
    /// nothing.
    async fn record_checks(&self, checks: &[(Check, Health)]) -> Result<()>;

    /// Up to `limit` checks of a connection at or after `since`, newest first.
    async fn checks(
        &self,
        id: ConnectionId,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Check>>;

    /// Rolls up one batch of raw checks older than `before` (taken down to a bucket boundary,
    /// so only complete 5-minute buckets are rolled) into the connections' buckets, and deletes
    /// the raw checks it rolled, in one transaction: at most `max_rows` raw checks (and whole
    /// buckets only, unless one bucket alone holds more), of the connections from `from` on
    /// (`None`: the first) in id order. Call again with the answer's `next` until it is `None`.
    /// Exact and idempotent: each raw check is counted in exactly one bucket, whatever runs
    /// at once (on PostgreSQL a batch takes a transaction-level advisory lock, and a batch that
    /// finds it taken does nothing and says so in `contended`).
    async fn roll_up_checks(
        &self,
        before: OffsetDateTime,
        from: Option<ConnectionId>,
        max_rows: u32,
    ) -> Result<RollUp>;

    /// Deletes at most `max_rows` stored hours of buckets that ended at or before `before`
    /// (the oldest first), in one short transaction; returns how many. Call again until it
    /// returns fewer than `max_rows`.
    async fn prune_buckets(&self, before: OffsetDateTime, max_rows: u32) -> Result<u64>;

    /// The buckets of a connection starting at or after `since` (those with checks), oldest
    /// first. With the raw checks not yet rolled up ([`Self::checks`]) they are its whole
    /// history: a check is in exactly one of the two.
    async fn buckets(&self, id: ConnectionId, since: OffsetDateTime) -> Result<Vec<HealthBucket>>;

    /// Claims the check of `id` for the interval starting at `now`, for `holder` (a monitor's
    /// id), so processes sharing the store split the checks and none checks a connection twice
    /// in one interval. Atomic across every process sharing the store: of claims racing for one
    /// connection, at most one wins.
    ///
    /// Wins (returns the lease, with the connection's row as stored) when the last claim on
    /// `id` is `holder`'s own, or was made at or before `now - hold`, or there was none; loses
    /// (`None`) otherwise, and also for a connection that does not exist (deleted meanwhile). A win records `holder` and `now` as
    /// the last claim. On PostgreSQL a claim racing with another one in flight loses at once
    /// (`FOR UPDATE SKIP LOCKED`) instead of waiting for it.
    /// The same as [`Self::lease_checks`] with one id.
    async fn lease_check(
        &self,
        id: ConnectionId,
        holder: Uuid,
        now: OffsetDateTime,
        hold: Duration,
    ) -> Result<Option<CheckLease>> {
        let won = self.lease_checks(&[id], holder, now, hold).await?;
        Ok(won.into_iter().next())
    }

    /// Claims the checks of several connections at once, each as [`Self::lease_check`] does
    /// (the same rules, the same atomicity: of claims racing for one connection, from any
    /// process, at most one wins), in one statement on PostgreSQL and one write on SQLite.
    /// Answers the won claims only, each naming its connection (`connection.id`), in no
    /// particular order; an id given twice is claimed once.
    async fn lease_checks(
        &self,
        ids: &[ConnectionId],
        holder: Uuid,
        now: OffsetDateTime,
        hold: Duration,
    ) -> Result<Vec<CheckLease>>;

    /// Marks the monitor `holder` alive now and answers the other monitors sharing the store
    /// that were marked alive within `timeout` (never `holder` itself), in one statement on
    /// PostgreSQL (the store's clock decides, so replicas' clocks need not agree for this).
    /// Monitors split the checks by this view ([`crate::monitor`]); a view that is wrong for a
    /// while costs balance, never a double check (the leases stay atomic). Monitors not seen for
    /// an hour are forgotten.
    ///
    /// The default answers nobody: a store only one process uses (SQLite) has no other monitor.
    async fn beat(&self, holder: Uuid, timeout: Duration) -> Result<Vec<Uuid>> {
        let _ = (holder, timeout);
        Ok(Vec::new())
    }

    /// Forgets the monitor `holder` (it is stopping): the others take its share at their next
    /// [`Self::beat`] instead of after its timeout. The default does nothing.
    async fn leave(&self, holder: Uuid) -> Result<()> {
        let _ = holder;
        Ok(())
    }

    /// Tells every process sharing the store (this one included) a short event `payload` (at
    /// most 7,900 bytes, no NUL), best effort: a process not listening at that moment misses it.
    /// The default does nothing: a store only one process uses (SQLite) has nobody to tell.
    async fn notify_event(&self, payload: &str) -> Result<()> {
        let _ = payload;
        Ok(())
    }

    /// A receiver of every payload given to [`Self::notify_event`] by any process sharing the
    /// store, from now on, or `None` when the store cannot deliver them (the default). The
    /// store keeps listening (reconnecting as needed; payloads sent while disconnected are
    /// lost) until the receiver is dropped. Must be called within a tokio runtime.
    fn subscribe_events(&self) -> Option<mpsc::Receiver<String>> {
        None
    }
}

/// The admin's target policy and the keys: which KEK wraps each data key, the rewrapping of
/// key rotation (compare and swap, so two rotations at once cannot lose a key) and the start-up
/// key checks (S28). Saving the policy and retiring a key check append their audit events in the
/// same transaction.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// The target policy (the default until one is saved).
    async fn policy(&self) -> Result<TargetPolicy>;

    /// Saves the target policy; appends `audit`.
    async fn set_policy(&self, policy: &TargetPolicy, audit: &AuditEvent) -> Result<()>;

    /// How many stored data keys each KEK id wraps (ids with no rows are absent).
    async fn kek_usage(&self) -> Result<Vec<KekUsage>>;

    /// Up to `limit` connections whose data key is not wrapped by `active`, with id greater
    /// than `after`, in id order (the rotation batches; resumable from the last id).
    async fn deks_not_under(
        &self,
        active: &KekId,
        after: Option<ConnectionId>,
        limit: u32,
    ) -> Result<Vec<(ConnectionId, WrappedDek)>>;

    /// Replaces a connection's wrapped data key if it is still `old` (compare and swap, so two
    /// rotations at once cannot lose a key). Returns whether it was replaced. The version is not
    /// bumped: the connection's settings did not change.
    async fn replace_dek(
        &self,
        id: ConnectionId,
        old: &WrappedDek,
        new: &WrappedDek,
    ) -> Result<bool>;

    /// One connection whose data key `kek` wraps (the lowest id), for the start-up check that
    /// the keyring's key of that id opens the store's rows; `None` when it wraps none.
    async fn dek_sample(&self, kek: &KekId) -> Result<Option<(ConnectionId, WrappedDek)>>;

    /// The recorded key checks, one per KEK id, in id order (S28).
    async fn key_checks(&self) -> Result<Vec<KeyCheck>>;

    /// Records `check` unless a check for its KEK id exists (the first one stays). Returns
    /// whether it was recorded. Not audited: it is bookkeeping of the start-up check.
    async fn insert_key_check(&self, check: &KeyCheck) -> Result<bool>;

    /// Deletes the key check of `kek` (the key is being retired: no row uses it any more) and
    /// appends `audit`, in one transaction. Deleting a check that does not exist is no error.
    async fn delete_key_check(&self, kek: &KekId, audit: &AuditEvent) -> Result<()>;
}
