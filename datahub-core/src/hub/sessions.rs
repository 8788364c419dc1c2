//! Browser sessions through the Hub: start one after a password login, authenticate a request
//! by its session token, end it at logout, prune the ones that are over.
//!
//! Sessions live in the store (so they survive a restart and work across replicas), keyed by
//! the SHA-256 of a random 256-bit token (`dhs_…`, see [`crate::auth::new_session_token`]).
//! Every refusal is the one `Unauthenticated` error [`crate::auth::SESSION_REFUSED`], whatever
//! the cause. The user is loaded afresh on every request, so a role change applies on the next
//! one; disabling a user or setting a user's password deletes their sessions in the same store
//! transaction as the change (see [`Hub::update_user`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use time::OffsetDateTime;

use super::{Hub, now, target};
use crate::audit::{AuditEvent, Outcome, RequestInfo, escape};
use crate::auth::{self, SessionConfig, SessionState, session_refused};
use crate::rbac::{AuthMethod, Principal};
use crate::secret::SessionToken;
use crate::store::StoredSession;
use crate::{Error, ErrorKind, Result, SessionId};

/// The most characters of a user agent kept with a session.
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// How often [`Hub::start_session`] prunes sessions that are over, at most: once an hour per
/// hub.
const PRUNE_EVERY: time::Duration = time::Duration::hours(1);

/// A session just started. Hand the token to the client once (an `HttpOnly`, `SameSite=Strict`
/// cookie); it is never stored. `Debug` redacts the token; there is no `Display`.
#[derive(Debug)]
pub struct NewSession {
    /// The session's id (not secret: for listing and audit targets).
    pub id: SessionId,
    /// The session token. Shown once.
    pub token: SessionToken,
    /// When it ends however active it is (UTC): a cookie's `Expires`.
    pub expires_at: OffsetDateTime,
    /// How long it may go unused before it ends.
    pub idle_timeout: Duration,
}

impl Hub {
    /// The same hub with other session lifetimes. Default: [`SessionConfig::default`] (12 h
    /// absolute, 30 min idle, last use written at most once a minute).
    ///
    /// # Errors
    /// `InvalidInput` naming the field when `config` breaks a rule of [`SessionConfig::check`].
    pub fn with_session_config(mut self, config: SessionConfig) -> Result<Self> {
        config.check()?;
        self.sessions = config;
        Ok(self)
    }

    /// The session lifetimes in force.
    pub fn session_config(&self) -> &SessionConfig {
        &self.sessions
    }

    /// Starts a session for a principal that has just logged in with its password
    /// ([`Hub::login`]), recording the request's client address. Not audited on its own: the
    /// login that made the principal was. Sessions that are over are pruned on the way, at most
    /// once an hour (a failure to prune does not fail the start).
    ///
    /// # Errors
    /// `PermissionDenied` for a principal made any other way (from an API token or a session: a
    /// session must not outlive the token it came from, nor renew itself); `Store` when the
    /// store fails; `Internal` when the random generator fails.
    pub async fn start_session(
        &self,
        principal: &Principal,
        request: &RequestInfo,
    ) -> Result<NewSession> {
        self.start_session_for_client(principal, request, None)
            .await
    }

    /// As [`Hub::start_session`], also keeping the client's user agent with the session
    /// (escaped, cut to [`MAX_USER_AGENT_CHARS`] characters), for a list of one's sessions.
    ///
    /// # Errors
    /// As [`Hub::start_session`].
    pub async fn start_session_for_client(
        &self,
        principal: &Principal,
        request: &RequestInfo,
        user_agent: Option<&str>,
    ) -> Result<NewSession> {
        if principal.auth_method() != AuthMethod::Password {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                "a session starts only from a password login",
            ));
        }
        self.prune_sessions_now_and_then().await;
        let new = auth::new_session_token()?;
        let at = now();
        let expires_at = at
            .checked_add(to_span(self.sessions.lifetime))
            .ok_or_else(|| Error::new(ErrorKind::Internal, "session expiry out of range"))?;
        let row = StoredSession {
            id: SessionId::new(),
            user: principal.user(),
            hash: new.hash,
            created_at: at,
            expires_at,
            last_seen_at: at,
            client_addr: request.client_addr.as_deref().map(clip),
            user_agent: user_agent.map(clip),
        };
        self.store.insert_session(&row).await?;
        Ok(NewSession {
            id: row.id,
            token: new.token,
            expires_at,
            idle_timeout: self.sessions.idle_timeout,
        })
    }

    /// The principal for a request carrying a session token, with the user and teams loaded
    /// afresh (a role change or a new team applies on the next request). Records the use when
    /// the last recorded one is older than [`SessionConfig::touch_interval`], so a busy client
    /// costs a write at most once a minute by default.
    ///
    /// # Errors
    /// `Unauthenticated` with the one message [`crate::auth::SESSION_REFUSED`] for every cause:
    /// malformed (an API token included), unknown, ended, past its absolute expiry, idle too
    /// long, user gone or disabled. `Store` when the store fails.
    pub async fn authenticate_session(
        &self,
        token: &str,
        request: &RequestInfo,
    ) -> Result<Principal> {
        self.session_principal(token, request, true).await
    }

    /// As [`Hub::authenticate_session`], but the check is not a use of the session: its idle
    /// timer is left as it is. For adapters that re-check a credential on their own while no
    /// request comes (a long-lived event stream ending when its session ends), so that an open
    /// stream alone never keeps a session from going idle.
    ///
    /// # Errors
    /// As [`Hub::authenticate_session`].
    pub async fn recheck_session(&self, token: &str, request: &RequestInfo) -> Result<Principal> {
        self.session_principal(token, request, false).await
    }

    async fn session_principal(
        &self,
        token: &str,
        request: &RequestInfo,
        record_use: bool,
    ) -> Result<Principal> {
        let hash = auth::parse_session_token(token)?;
        // The session, its user and the user's teams: one wait for the store.
        let held = self
            .store
            .session_with_holder(&hash)
            .await?
            .ok_or_else(session_refused)?;
        let session = held.credential;
        let at = now();
        let touch = match auth::session_state(&session, at, &self.sessions) {
            SessionState::Live { touch } => touch,
            SessionState::Expired | SessionState::Idle => return Err(session_refused()),
        };
        let teams = held.teams;
        let user = held.user.ok_or_else(session_refused)?.user;
        let principal = Principal::from_user(&user, teams)
            .map_err(|_| session_refused())?
            .with_auth_method(AuthMethod::Session)
            .with_request(request.clone());
        if touch && record_use {
            self.store.touch_session(session.id, at).await?;
        }
        Ok(principal)
    }

    /// Ends the session of `token` (logout), audited as `auth.logout` (target `session:<id>`)
    /// in the same store transaction. Returns whether a session ended: a malformed, unknown or
    /// already ended token ends nothing, writes no audit row and is not an error (logging out
    /// twice is harmless). An expired session is deleted all the same.
    ///
    /// # Errors
    /// `Store` when the store fails.
    pub async fn end_session(&self, token: &str, request: &RequestInfo) -> Result<bool> {
        let Ok(hash) = auth::parse_session_token(token) else {
            return Ok(false);
        };
        let Some(session) = self.store.session_by_hash(&hash).await? else {
            return Ok(false);
        };
        let name = match self.store.user(session.user).await? {
            Some(user) => user.user.username,
            None => "unknown".to_owned(),
        };
        let event = AuditEvent::now(
            Some(session.user),
            &name,
            "auth.logout",
            Some(&target("session", session.id)),
            Outcome::Ok,
        )
        .with_request_info(request);
        self.store.delete_session(session.id, &event).await
    }

    /// Deletes every session that is over (past its absolute expiry, or idle longer than the
    /// idle timeout) and returns how many. [`Hub::start_session`] does this at most once an
    /// hour; a server may also call it on a timer. Not audited: nothing usable is ended.
    ///
    /// # Errors
    /// `Store` when the store fails.
    pub async fn prune_sessions(&self) -> Result<u64> {
        let at = now();
        let pruned = self
            .store
            .prune_sessions(at, idle_cutoff(at, self.sessions.idle_timeout))
            .await?;
        self.last_session_prune
            .store(at.unix_timestamp(), Ordering::Relaxed);
        Ok(pruned)
    }

    async fn prune_sessions_now_and_then(&self) {
        let last = self.last_session_prune.load(Ordering::Relaxed);
        let due = OffsetDateTime::now_utc().unix_timestamp() - last >= PRUNE_EVERY.whole_seconds();
        if due {
            // Claim this round first, so concurrent logins do not all prune at once.
            self.last_session_prune.store(
                OffsetDateTime::now_utc().unix_timestamp(),
                Ordering::Relaxed,
            );
            // Housekeeping: a failure here must not refuse the login; the next round retries.
            let _ = self.prune_sessions().await;
        }
    }
}

/// A configured duration as a time span (saturating; [`SessionConfig::check`] keeps it within a
/// year).
fn to_span(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// The last use before which a session at `at` has been idle too long.
fn idle_cutoff(at: OffsetDateTime, idle: Duration) -> OffsetDateTime {
    at.checked_sub(to_span(idle))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Client-supplied text kept with a session: escaped and cut to [`MAX_USER_AGENT_CHARS`].
fn clip(text: &str) -> String {
    escape(text).chars().take(MAX_USER_AGENT_CHARS).collect()
}
