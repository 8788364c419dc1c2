//! The SQLite side of sessions (migration 4, [`SessionStore`]): the SHA-256 of each session
//! token, never the token.

use async_trait::async_trait;
use rusqlite::params;
use time::OffsetDateTime;

use super::accounts::update_user_in;
use super::audit::append_audit_in;
use super::codec::{micros, session_row};
use super::{SqliteStore, conflict, db_error, held_taken, require_row};
use crate::audit::AuditEvent;
use crate::store::{Held, SessionStore, StoredSession, StoredUser};
use crate::{Result, SessionId, UserId};

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn insert_session(&self, session: &StoredSession) -> Result<()> {
        let s = session.clone();
        self.pool
            .write(move |tx| {
                let user = s.user.to_string();
                require_row(tx, "users", &user, "user", "user_id")?;
                if held_taken(tx, "sessions", &s.id.to_string(), &s.hash)? {
                    return Err(conflict("session_id", "this session exists"));
                }
                tx.execute(
                    "INSERT INTO sessions (id, user_id, hash, created_at, expires_at, \
                     last_seen_at, client_addr, user_agent) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        s.id.to_string(),
                        user,
                        s.hash.as_slice(),
                        micros(s.created_at),
                        micros(s.expires_at),
                        micros(s.last_seen_at),
                        s.client_addr,
                        s.user_agent
                    ],
                )
                .map_err(db_error)?;
                Ok(())
            })
            .await
    }

    async fn session_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StoredSession>> {
        self.held_by_hash("sessions", hash, |r| session_row(r))
            .await
    }

    async fn session_with_holder(&self, hash: &[u8; 32]) -> Result<Option<Held<StoredSession>>> {
        self.held_with_holder("sessions", hash, |r| session_row(r))
            .await
    }

    async fn sessions_of(&self, user: UserId) -> Result<Vec<StoredSession>> {
        self.held_by_user("sessions", user, |r| session_row(r))
            .await
    }

    async fn touch_session(&self, id: SessionId, at: OffsetDateTime) -> Result<bool> {
        self.pool
            .write(move |tx| {
                let n = tx
                    .execute(
                        "UPDATE sessions SET last_seen_at = ?1 \
                         WHERE id = ?2 AND last_seen_at < ?1",
                        params![micros(at), id.to_string()],
                    )
                    .map_err(db_error)?;
                Ok(n > 0)
            })
            .await
    }

    async fn delete_session(&self, id: SessionId, audit: &AuditEvent) -> Result<bool> {
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                let n = tx
                    .execute("DELETE FROM sessions WHERE id = ?1", [id.to_string()])
                    .map_err(db_error)?;
                if n == 0 {
                    return Ok(false);
                }
                append_audit_in(tx, &audit)?;
                Ok(true)
            })
            .await
    }

    async fn delete_sessions_of_user(&self, user: UserId, audit: &AuditEvent) -> Result<u64> {
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                let n = tx
                    .execute(
                        "DELETE FROM sessions WHERE user_id = ?1",
                        [user.to_string()],
                    )
                    .map_err(db_error)?;
                append_audit_in(tx, &audit)?;
                Ok(count(n))
            })
            .await
    }

    async fn update_user_ending_sessions(
        &self,
        user: &StoredUser,
        audit: &AuditEvent,
    ) -> Result<u64> {
        let user = user.clone();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                update_user_in(tx, &user)?;
                let id = user.user.id.to_string();
                let ended = tx
                    .execute("DELETE FROM sessions WHERE user_id = ?1", [&id])
                    .map_err(db_error)?;
                if user.user.disabled {
                    // S33: for good; enabling the account again revives no token.
                    tx.execute(
                        "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?1) \
                         WHERE user_id = ?2",
                        params![micros(user.user.updated_at), id],
                    )
                    .map_err(db_error)?;
                }
                append_audit_in(tx, &audit)?;
                Ok(count(ended))
            })
            .await
    }

    async fn prune_sessions(
        &self,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
    ) -> Result<u64> {
        self.pool
            .write(move |tx| {
                let n = tx
                    .execute(
                        "DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen_at < ?2",
                        params![micros(now), micros(idle_before)],
                    )
                    .map_err(db_error)?;
                Ok(count(n))
            })
            .await
    }
}
