//! The SQLite side of accounts ([`AccountStore`]): users, teams and their members, the name
//! directory, and API tokens (their SHA-256, never the token).

use async_trait::async_trait;
use rusqlite::params;
use time::OffsetDateTime;

use super::audit::append_audit_in;
use super::codec::{self, get, micros, team_id_from_row, token_row, user_row};
use super::{
    SqliteStore, collect, conflict, db_error, held_taken, in_read_transaction, require_row,
    row_exists,
};
use crate::audit::AuditEvent;
use crate::model::{Directory, DirectoryTeam, DirectoryUser, TOKEN_TOUCH_INTERVAL, Team};
use crate::store::{AccountStore, Held, StoredToken, StoredUser};
use crate::{Error, Result, TeamId, TokenId, UserId};

fn team_members(conn: &rusqlite::Connection, team: &str) -> Result<Vec<UserId>> {
    let mut stmt = conn
        .prepare_cached("SELECT user_id FROM team_members WHERE team_id = ?1 ORDER BY user_id")
        .map_err(db_error)?;
    let mut rows = stmt.query([team]).map_err(db_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_error)? {
        out.push(UserId::from_uuid(codec::get_uuid(
            row,
            "team_members",
            "user_id",
        )?));
    }
    Ok(out)
}

/// Writes a user's role, password hash, disabled flag and update time in `tx`: the one user
/// update, for [`AccountStore::update_user`] and for ending the user's sessions with it.
///
/// # Errors
/// `NotFound` ("user", field `user_id`) when no user has the id; `Store` when the database
/// fails.
pub(super) fn update_user_in(tx: &rusqlite::Transaction<'_>, user: &StoredUser) -> Result<()> {
    let changed = tx
        .execute(
            "UPDATE users SET role = ?1, password_hash = ?2, disabled = ?3, updated_at = ?4 \
             WHERE id = ?5",
            params![
                user.user.role.as_str(),
                user.password_hash,
                user.user.disabled,
                micros(user.user.updated_at),
                user.user.id.to_string()
            ],
        )
        .map_err(db_error)?;
    if changed == 0 {
        return Err(Error::not_found("user").with_field("user_id"));
    }
    Ok(())
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn insert_user(&self, user: &StoredUser, audit: &AuditEvent) -> Result<()> {
        let user = user.clone();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                if row_exists(
                    tx,
                    "SELECT EXISTS (SELECT 1 FROM users WHERE username = ?1)",
                    &user.user.username,
                )? {
                    return Err(conflict("username", "a user with this name exists"));
                }
                let id = user.user.id.to_string();
                if row_exists(tx, "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)", &id)? {
                    return Err(conflict("id", "a user with this id exists"));
                }
                tx.execute(
                    "INSERT INTO users (id, username, role, password_hash, disabled, created_at, \
                     updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        id,
                        user.user.username,
                        user.user.role.as_str(),
                        user.password_hash,
                        user.user.disabled,
                        micros(user.user.created_at),
                        micros(user.user.updated_at)
                    ],
                )
                .map_err(db_error)?;
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn update_user(&self, user: &StoredUser, audit: &AuditEvent) -> Result<()> {
        let user = user.clone();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                update_user_in(tx, &user)?;
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn user(&self, id: UserId) -> Result<Option<StoredUser>> {
        self.pool
            .read(move |conn| {
                Ok(collect(
                    conn,
                    "SELECT * FROM users WHERE id = ?1",
                    [id.to_string()],
                    |r| user_row(r),
                )?
                .pop())
            })
            .await
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<StoredUser>> {
        let username = username.to_owned();
        self.pool
            .read(move |conn| {
                Ok(collect(
                    conn,
                    "SELECT * FROM users WHERE username = ?1",
                    [username],
                    |r| user_row(r),
                )?
                .pop())
            })
            .await
    }

    async fn users(&self) -> Result<Vec<StoredUser>> {
        self.pool
            .read(|conn| {
                collect(conn, "SELECT * FROM users ORDER BY username", [], |r| {
                    user_row(r)
                })
            })
            .await
    }

    async fn user_count(&self) -> Result<u64> {
        self.pool
            .read(|conn| {
                let n: i64 = conn
                    .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
                    .map_err(db_error)?;
                Ok(u64::try_from(n).unwrap_or(0))
            })
            .await
    }

    async fn upsert_team(&self, team: &Team, audit: &AuditEvent) -> Result<()> {
        let team = team.clone();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                let id = team.id.to_string();
                let taken: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM teams WHERE name = ?1 AND id <> ?2)",
                        params![team.name, id],
                        |r| r.get(0),
                    )
                    .map_err(db_error)?;
                if taken {
                    return Err(conflict("name", "a team with this name exists"));
                }
                tx.execute(
                    "INSERT INTO teams (id, name) VALUES (?1, ?2) \
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                    params![id, team.name],
                )
                .map_err(db_error)?;
                tx.execute("DELETE FROM team_members WHERE team_id = ?1", [&id])
                    .map_err(db_error)?;
                for member in &team.members {
                    let m = member.to_string();
                    if !row_exists(tx, "SELECT EXISTS (SELECT 1 FROM users WHERE id = ?1)", &m)? {
                        return Err(Error::not_found("user").with_field("members"));
                    }
                    tx.execute(
                        "INSERT OR IGNORE INTO team_members (team_id, user_id) VALUES (?1, ?2)",
                        params![id, m],
                    )
                    .map_err(db_error)?;
                }
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn delete_team(&self, id: TeamId, audit: &AuditEvent) -> Result<()> {
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                let changed = tx
                    .execute("DELETE FROM teams WHERE id = ?1", [id.to_string()])
                    .map_err(db_error)?;
                if changed == 0 {
                    return Err(Error::not_found("team").with_field("team_id"));
                }
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn teams(&self) -> Result<Vec<Team>> {
        self.pool
            .read(|conn| {
                let heads = collect(
                    conn,
                    "SELECT id, name FROM teams ORDER BY name",
                    [],
                    |row| {
                        Ok((
                            team_id_from_row(row, "id")?,
                            get::<String>(row, "teams", "name")?,
                        ))
                    },
                )?;
                heads
                    .into_iter()
                    .map(|(id, name)| {
                        Ok(Team {
                            members: team_members(conn, &id.to_string())?,
                            id,
                            name,
                        })
                    })
                    .collect()
            })
            .await
    }

    async fn directory(&self, needle: &str, limit: u32) -> Result<Directory> {
        let needle = needle.to_lowercase();
        self.pool
            .read(move |conn| {
                // `instr`, not `LIKE`: the needle is plain text, with no wildcard to escape.
                let users = collect(
                    conn,
                    "SELECT id, username FROM users \
                     WHERE disabled = 0 AND instr(lower(username), ?1) > 0 \
                     ORDER BY username LIMIT ?2",
                    params![needle, i64::from(limit)],
                    |row| {
                        Ok(DirectoryUser {
                            id: UserId::from_uuid(codec::get_uuid(row, "users", "id")?),
                            username: get(row, "users", "username")?,
                        })
                    },
                )?;
                let teams = collect(
                    conn,
                    "SELECT id, name FROM teams WHERE instr(lower(name), ?1) > 0 \
                     ORDER BY name LIMIT ?2",
                    params![needle, i64::from(limit)],
                    |row| {
                        Ok(DirectoryTeam {
                            id: team_id_from_row(row, "id")?,
                            name: get(row, "teams", "name")?,
                        })
                    },
                )?;
                Ok(Directory { users, teams })
            })
            .await
    }

    async fn teams_of(&self, user: UserId) -> Result<Vec<TeamId>> {
        self.pool
            .read(move |conn| {
                collect(
                    conn,
                    "SELECT team_id FROM team_members WHERE user_id = ?1 ORDER BY team_id",
                    [user.to_string()],
                    |row| team_id_from_row(row, "team_id"),
                )
            })
            .await
    }

    async fn insert_token(&self, token: &StoredToken, audit: &AuditEvent) -> Result<()> {
        let token = token.clone();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                let hash = token.hash;
                let token = token.info;
                let user = token.user.to_string();
                require_row(tx, "users", &user, "user", "user_id")?;
                if held_taken(tx, "tokens", &token.id.to_string(), &hash)? {
                    return Err(conflict("token_id", "this token exists"));
                }
                tx.execute(
                    "INSERT INTO tokens (id, user_id, name, hash, read_only, created_at, \
                     expires_at, revoked_at, last_used_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        token.id.to_string(),
                        user,
                        token.name,
                        hash.as_slice(),
                        token.read_only,
                        micros(token.created_at),
                        token.expires_at.map(micros),
                        token.revoked_at.map(micros),
                        token.last_used_at.map(micros)
                    ],
                )
                .map_err(db_error)?;
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StoredToken>> {
        self.held_by_hash("tokens", hash, |r| token_row(r)).await
    }

    async fn token_with_holder(&self, hash: &[u8; 32]) -> Result<Option<Held<StoredToken>>> {
        self.held_with_holder("tokens", hash, |r| token_row(r))
            .await
    }

    async fn tokens_of(&self, user: UserId) -> Result<Vec<StoredToken>> {
        self.held_by_user("tokens", user, |r| token_row(r)).await
    }

    async fn revoke_token(
        &self,
        id: TokenId,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<()> {
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                // A second revocation keeps the first time.
                let changed = tx
                    .execute(
                        "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?1) WHERE id = ?2",
                        params![micros(at), id.to_string()],
                    )
                    .map_err(db_error)?;
                if changed == 0 {
                    return Err(Error::not_found("token").with_field("token_id"));
                }
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn touch_token(&self, id: TokenId, at: OffsetDateTime) -> Result<bool> {
        let due = micros(at.saturating_sub(TOKEN_TOUCH_INTERVAL));
        self.pool
            .write(move |tx| {
                let n = tx
                    .execute(
                        "UPDATE tokens SET last_used_at = ?1 WHERE id = ?2 \
                         AND revoked_at IS NULL AND (last_used_at IS NULL OR last_used_at <= ?3)",
                        params![micros(at), id.to_string(), due],
                    )
                    .map_err(db_error)?;
                Ok(n > 0)
            })
            .await
    }
}

impl SqliteStore {
    /// The row of `table` (read by `f`) whose `hash` is `hash`, with its user and the user's
    /// teams, in one read transaction (one blocking hop).
    pub(super) async fn held_with_holder<T: Send + 'static>(
        &self,
        table: &'static str,
        hash: &[u8; 32],
        f: fn(&rusqlite::Row<'_>) -> Result<T>,
    ) -> Result<Option<Held<T>>> {
        let hash = *hash;
        let sql = format!("SELECT * FROM {table} WHERE hash = ?1");
        self.pool
            .read_short(move |conn| {
                in_read_transaction(conn, |conn| {
                    let found = collect(conn, &sql, [hash.as_slice()], |r| {
                        Ok((f(r)?, get::<String>(r, table, "user_id")?))
                    })?
                    .pop();
                    let Some((credential, user_id)) = found else {
                        return Ok(None);
                    };
                    let user =
                        collect(conn, "SELECT * FROM users WHERE id = ?1", [&user_id], |r| {
                            user_row(r)
                        })?
                        .pop();
                    let teams = collect(
                        conn,
                        "SELECT team_id FROM team_members WHERE user_id = ?1 ORDER BY team_id",
                        [&user_id],
                        |row| team_id_from_row(row, "team_id"),
                    )?;
                    Ok(Some(Held {
                        credential,
                        user,
                        teams,
                    }))
                })
            })
            .await
    }
}
