//! The PostgreSQL side of accounts ([`AccountStore`]): users, teams and their members, the name
//! directory, and API tokens (their SHA-256, never the token).

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::append_in;
use super::codec::{self, TOKEN_COLUMNS, USER_COLUMNS};
use super::error::db;
use super::{PostgresStore, page_total, write_error};
use crate::audit::AuditEvent;
use crate::model::{Directory, DirectoryTeam, DirectoryUser, TOKEN_TOUCH_INTERVAL, Team};
use crate::store::{AccountStore, Held, StoredToken, StoredUser};
use crate::{Error, Result, TeamId, TokenId, UserId};

/// Writes a user's role, password hash, disabled flag and update time in `tx`: the one user
/// update, for [`AccountStore::update_user`] and for ending the user's sessions with it.
///
/// # Errors
/// `NotFound` ("user") when no user has the id; `Store` when the database fails.
pub(super) async fn update_user_in(
    tx: &tokio_postgres::Transaction<'_>,
    user: &StoredUser,
    doing: &str,
) -> Result<()> {
    let updated = tx
        .execute(
            "UPDATE users SET role = $2, password_hash = $3, disabled = $4, updated_at = $5 \
             WHERE id = $1",
            &[
                user.user.id.as_uuid(),
                &user.user.role.as_str(),
                &user.password_hash,
                &user.user.disabled,
                &user.user.updated_at,
            ],
        )
        .await
        .map_err(|e| write_error(doing, e))?;
    if updated == 0 {
        return Err(Error::not_found("user"));
    }
    Ok(())
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn insert_user(&self, user: &StoredUser, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "inserting a user";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        tx.execute(
            "INSERT INTO users (id, username, role, password_hash, disabled, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                user.user.id.as_uuid(),
                &user.user.username,
                &user.user.role.as_str(),
                &user.password_hash,
                &user.user.disabled,
                &user.user.created_at,
                &user.user.updated_at,
            ],
        )
        .await
        .map_err(|e| write_error(DOING, e))?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn update_user(&self, user: &StoredUser, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "updating a user";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        update_user_in(&tx, user, DOING).await?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn user(&self, id: UserId) -> Result<Option<StoredUser>> {
        let client = self.client().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        client
            .query_opt(&sql, &[id.as_uuid()])
            .await
            .map_err(|e| db("reading a user", e))?
            .map(|r| codec::user_row(&r))
            .transpose()
    }

    async fn user_by_name(&self, username: &str) -> Result<Option<StoredUser>> {
        let client = self.client().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        client
            .query_opt(&sql, &[&username])
            .await
            .map_err(|e| db("reading a user", e))?
            .map(|r| codec::user_row(&r))
            .transpose()
    }

    async fn users(&self) -> Result<Vec<StoredUser>> {
        let client = self.client().await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username COLLATE \"C\"");
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(|e| db("listing users", e))?;
        rows.iter().map(codec::user_row).collect()
    }

    async fn user_count(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT count(*) AS total FROM users", &[])
            .await
            .map_err(|e| db("counting users", e))?;
        page_total(std::slice::from_ref(&row), "users").map(|t| t.unwrap_or(0))
    }

    async fn upsert_team(&self, team: &Team, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "saving a team";
        let members: Vec<Uuid> = team.members.iter().map(|m| *m.as_uuid()).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        tx.execute(
            "INSERT INTO teams (id, name) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name",
            &[team.id.as_uuid(), &team.name],
        )
        .await
        .map_err(|e| write_error(DOING, e))?;
        tx.execute(
            "DELETE FROM team_members WHERE team_id = $1",
            &[team.id.as_uuid()],
        )
        .await
        .map_err(|e| db(DOING, e))?;
        tx.execute(
            "INSERT INTO team_members (team_id, user_id) SELECT $1, unnest($2::uuid[]) \
             ON CONFLICT DO NOTHING",
            &[team.id.as_uuid(), &members],
        )
        .await
        .map_err(|e| write_error(DOING, e))?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn delete_team(&self, id: TeamId, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "deleting a team";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let deleted = tx
            .execute("DELETE FROM teams WHERE id = $1", &[id.as_uuid()])
            .await
            .map_err(|e| db(DOING, e))?;
        if deleted == 0 {
            return Err(Error::not_found("team"));
        }
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn teams(&self) -> Result<Vec<Team>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT t.id, t.name, COALESCE(array_agg(m.user_id ORDER BY m.user_id) \
                 FILTER (WHERE m.user_id IS NOT NULL), '{}') AS members \
                 FROM teams t LEFT JOIN team_members m ON m.team_id = t.id \
                 GROUP BY t.id, t.name ORDER BY t.name COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(|e| db("listing teams", e))?;
        rows.iter()
            .map(|row| {
                let members: Vec<Uuid> = codec::get(row, "teams", "members")?;
                Ok(Team {
                    id: TeamId::from_uuid(codec::get(row, "teams", "id")?),
                    name: codec::get(row, "teams", "name")?,
                    members: members.into_iter().map(UserId::from_uuid).collect(),
                })
            })
            .collect()
    }

    async fn directory(&self, needle: &str, limit: u32) -> Result<Directory> {
        const DOING: &str = "reading the directory";
        let needle = needle.to_lowercase();
        let limit = i64::from(limit);
        let client = self.client().await?;
        // `strpos`, not `LIKE`: the needle is plain text, with no wildcard to escape.
        let users = client
            .query(
                "SELECT id, username FROM users \
                 WHERE NOT disabled AND strpos(lower(username), $1) > 0 \
                 ORDER BY username COLLATE \"C\" LIMIT $2",
                &[&needle, &limit],
            )
            .await
            .map_err(|e| db(DOING, e))?;
        let teams = client
            .query(
                "SELECT id, name FROM teams WHERE strpos(lower(name), $1) > 0 \
                 ORDER BY name COLLATE \"C\" LIMIT $2",
                &[&needle, &limit],
            )
            .await
            .map_err(|e| db(DOING, e))?;
        Ok(Directory {
            users: users
                .iter()
                .map(|row| {
                    Ok(DirectoryUser {
                        id: UserId::from_uuid(codec::get(row, "users", "id")?),
                        username: codec::get(row, "users", "username")?,
                    })
                })
                .collect::<Result<_>>()?,
            teams: teams
                .iter()
                .map(|row| {
                    Ok(DirectoryTeam {
                        id: TeamId::from_uuid(codec::get(row, "teams", "id")?),
                        name: codec::get(row, "teams", "name")?,
                    })
                })
                .collect::<Result<_>>()?,
        })
    }

    async fn teams_of(&self, user: UserId) -> Result<Vec<TeamId>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT team_id FROM team_members WHERE user_id = $1 ORDER BY team_id",
                &[user.as_uuid()],
            )
            .await
            .map_err(|e| db("reading a user's teams", e))?;
        rows.iter()
            .map(|row| codec::get(row, "team_members", "team_id").map(TeamId::from_uuid))
            .collect()
    }

    async fn insert_token(&self, token: &StoredToken, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "inserting a token";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        tx.execute(
            "INSERT INTO tokens (id, user_id, name, hash, read_only, created_at, expires_at, \
             revoked_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                token.info.id.as_uuid(),
                token.info.user.as_uuid(),
                &token.info.name,
                &token.hash.as_slice(),
                &token.info.read_only,
                &token.info.created_at,
                &token.info.expires_at,
                &token.info.revoked_at,
                &token.info.last_used_at,
            ],
        )
        .await
        .map_err(|e| write_error(DOING, e))?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<StoredToken>> {
        self.held_by_hash(
            ("tokens", TOKEN_COLUMNS),
            hash,
            "reading a token",
            codec::token_row,
        )
        .await
    }

    async fn token_with_holder(&self, hash: &[u8; 32]) -> Result<Option<Held<StoredToken>>> {
        self.held_with_holder(
            ("tokens", TOKEN_COLUMNS),
            hash,
            "reading a token",
            codec::token_row,
        )
        .await
    }

    async fn tokens_of(&self, user: UserId) -> Result<Vec<StoredToken>> {
        self.held_by_user(
            ("tokens", TOKEN_COLUMNS),
            user,
            "listing tokens",
            codec::token_row,
        )
        .await
    }

    async fn revoke_token(
        &self,
        id: TokenId,
        at: OffsetDateTime,
        audit: &AuditEvent,
    ) -> Result<()> {
        const DOING: &str = "revoking a token";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let updated = tx
            .execute(
                "UPDATE tokens SET revoked_at = $2 WHERE id = $1",
                &[id.as_uuid(), &at],
            )
            .await
            .map_err(|e| db(DOING, e))?;
        if updated == 0 {
            return Err(Error::not_found("token"));
        }
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn touch_token(&self, id: TokenId, at: OffsetDateTime) -> Result<bool> {
        let due = at.saturating_sub(TOKEN_TOUCH_INTERVAL);
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE tokens SET last_used_at = $2 WHERE id = $1 AND revoked_at IS NULL \
                 AND (last_used_at IS NULL OR last_used_at <= $3)",
                &[id.as_uuid(), &at, &due],
            )
            .await
            .map_err(|e| db("recording a token's use", e))?;
        Ok(n > 0)
    }
}

impl PostgresStore {
    /// The row of `table` (its `columns`, read by `f`) whose `hash` is `hash`, with its user
    /// and the user's teams: one pooled client, three statements prepared once per pooled
    /// connection and pipelined (one round trip). The user and the teams are found through the
    /// row's `user_id`, which never changes.
    pub(super) async fn held_with_holder<T>(
        &self,
        (table, columns): (&str, &str),
        hash: &[u8; 32],
        doing: &str,
        f: fn(&tokio_postgres::Row) -> Result<T>,
    ) -> Result<Option<Held<T>>> {
        let client = self.client().await?;
        let holder = format!("(SELECT user_id FROM {table} WHERE hash = $1)");
        let credential_sql = format!("SELECT {columns} FROM {table} WHERE hash = $1");
        let user_sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = {holder}");
        let teams_sql =
            format!("SELECT team_id FROM team_members WHERE user_id = {holder} ORDER BY team_id");
        let (credential, user, teams) = tokio::try_join!(
            client.prepare_cached(&credential_sql),
            client.prepare_cached(&user_sql),
            client.prepare_cached(&teams_sql),
        )
        .map_err(|e| db(doing, e))?;
        let hash = hash.as_slice();
        let by_hash: &[&(dyn tokio_postgres::types::ToSql + Sync)] = &[&hash];
        let (credential, user, teams) = tokio::try_join!(
            client.query_opt(&credential, by_hash),
            client.query_opt(&user, by_hash),
            client.query(&teams, by_hash),
        )
        .map_err(|e| db(doing, e))?;
        let Some(credential) = credential else {
            return Ok(None);
        };
        Ok(Some(Held {
            credential: f(&credential)?,
            user: user.map(|r| codec::user_row(&r)).transpose()?,
            teams: teams
                .iter()
                .map(|row| codec::get(row, "team_members", "team_id").map(TeamId::from_uuid))
                .collect::<Result<_>>()?,
        }))
    }
}
