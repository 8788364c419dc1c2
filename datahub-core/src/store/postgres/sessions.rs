//! The PostgreSQL side of sessions (migration 4, [`SessionStore`]): the SHA-256 of each session
//! token, never the token. Sessions live here so they survive a restart and every replica sees
//! the same ones.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::PostgresStore;
use super::accounts::update_user_in;
use super::audit::append_in;
use super::codec::session_row;
use super::error::{db, is_foreign_key_violation, is_unique_violation};
use crate::audit::AuditEvent;
use crate::store::{Held, SessionStore, StoredSession, StoredUser};
use crate::{Error, ErrorKind, Result, SessionId, UserId};

/// The columns [`session_row`] reads.
const SESSION_COLUMNS: &str =
    "id, user_id, hash, created_at, expires_at, last_seen_at, client_addr, user_agent";

#[async_trait]
impl SessionStore for PostgresStore {
    async fn insert_session(&self, s: &StoredSession) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO sessions (id, user_id, hash, created_at, expires_at, last_seen_at, \
                 client_addr, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    s.id.as_uuid(),
                    s.user.as_uuid(),
                    &s.hash.as_slice(),
                    &s.created_at,
                    &s.expires_at,
                    &s.last_seen_at,
                    &s.client_addr,
                    &s.user_agent,
                ],
            )
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    Error::new(ErrorKind::NotFound, "no such user").with_field("user_id")
                } else if is_unique_violation(&e) {
                    Error::new(ErrorKind::Conflict, "this session exists").with_field("session_id")
                } else {
                    db("inserting a session", e)
                }
            })?;
        Ok(())
    }

    async fn session_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StoredSession>> {
        let table = ("sessions", SESSION_COLUMNS);
        self.held_by_hash(table, hash, "reading a session", session_row)
            .await
    }

    async fn session_with_holder(&self, hash: &[u8; 32]) -> Result<Option<Held<StoredSession>>> {
        let table = ("sessions", SESSION_COLUMNS);
        self.held_with_holder(table, hash, "reading a session", session_row)
            .await
    }

    async fn sessions_of(&self, user: UserId) -> Result<Vec<StoredSession>> {
        let table = ("sessions", SESSION_COLUMNS);
        self.held_by_user(table, user, "listing sessions", session_row)
            .await
    }

    async fn touch_session(&self, id: SessionId, at: OffsetDateTime) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2",
                &[id.as_uuid(), &at],
            )
            .await
            .map_err(|e| db("recording a session's use", e))?;
        Ok(n > 0)
    }

    async fn delete_session(&self, id: SessionId, audit: &AuditEvent) -> Result<bool> {
        const DOING: &str = "ending a session";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let n = tx
            .execute("DELETE FROM sessions WHERE id = $1", &[id.as_uuid()])
            .await
            .map_err(|e| db(DOING, e))?;
        if n == 0 {
            return Ok(false);
        }
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))?;
        Ok(true)
    }

    async fn delete_sessions_of_user(&self, user: UserId, audit: &AuditEvent) -> Result<u64> {
        const DOING: &str = "ending a user's sessions";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let n = tx
            .execute("DELETE FROM sessions WHERE user_id = $1", &[user.as_uuid()])
            .await
            .map_err(|e| db(DOING, e))?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))?;
        Ok(n)
    }

    async fn update_user_ending_sessions(
        &self,
        user: &StoredUser,
        audit: &AuditEvent,
    ) -> Result<u64> {
        const DOING: &str = "updating a user and ending their sessions";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        update_user_in(&tx, user, DOING).await?;
        let ended = tx
            .execute(
                "DELETE FROM sessions WHERE user_id = $1",
                &[user.user.id.as_uuid()],
            )
            .await
            .map_err(|e| db(DOING, e))?;
        if user.user.disabled {
            // S33: for good; enabling the account again revives no token.
            tx.execute(
                "UPDATE tokens SET revoked_at = coalesce(revoked_at, $2) WHERE user_id = $1",
                &[user.user.id.as_uuid(), &user.user.updated_at],
            )
            .await
            .map_err(|e| db(DOING, e))?;
        }
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))?;
        Ok(ended)
    }

    async fn prune_sessions(
        &self,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
    ) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at < $2",
                &[&now, &idle_before],
            )
            .await
            .map_err(|e| db("pruning sessions", e))
    }
}
