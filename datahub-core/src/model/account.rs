//! Accounts as the Hub shows them: a [`User`], a [`Team`], an API token's [`TokenInfo`], the
//! names a grantee is picked from ([`Directory`]) and a grant with its grantee's name
//! ([`NamedGrant`]). None of them holds a secret: a password hash or token hash stays in the
//! store's records (`store::StoredUser`, `store::StoredToken`), which wrap these values.

use time::OffsetDateTime;

use crate::rbac::{Grant, Role};
use crate::{TeamId, TokenId, UserId};

/// A user account: never its password or password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Unique login name.
    pub username: String,
    /// Global role.
    pub role: Role,
    /// A disabled user can neither log in nor use tokens.
    pub disabled: bool,
    /// Created (UTC).
    pub created_at: OffsetDateTime,
    /// Last changed (UTC).
    pub updated_at: OffsetDateTime,
}

/// A team and its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// Id.
    pub id: TeamId,
    /// Unique name.
    pub name: String,
    /// Member user ids.
    pub members: Vec<UserId>,
}

/// An API token as listed: never the token text nor its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Id.
    pub id: TokenId,
    /// The user it acts as.
    pub user: UserId,
    /// A label chosen by the user.
    pub name: String,
    /// A read-only token can only read.
    pub read_only: bool,
    /// Created (UTC).
    pub created_at: OffsetDateTime,
    /// After this it no longer works; `None` for never.
    pub expires_at: Option<OffsetDateTime>,
    /// Set when revoked; a revoked token never works again.
    pub revoked_at: Option<OffsetDateTime>,
    /// Its last recorded use (UTC), `None` before the first: exact to within a minute (uses are
    /// recorded at most once per [`TOKEN_TOUCH_INTERVAL`]).
    pub last_used_at: Option<OffsetDateTime>,
}

/// How often a token's use is recorded at most: once a minute, as for sessions, so a busy
/// client costs one write a minute rather than one per request.
pub const TOKEN_TOUCH_INTERVAL: time::Duration = time::Duration::minutes(1);

/// A grant with its grantee's name: a user's login name or a team's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedGrant {
    /// The grant.
    pub grant: Grant,
    /// The grantee's name.
    pub name: String,
}

/// A user as the directory shows it: id and login name, nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// Id.
    pub id: UserId,
    /// Login name.
    pub username: String,
}

/// A team as the directory shows it: id and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryTeam {
    /// Id.
    pub id: TeamId,
    /// Name.
    pub name: String,
}

/// Names to pick a grantee from: enabled users and teams whose name contains a needle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// Enabled users, by login name.
    pub users: Vec<DirectoryUser>,
    /// Teams, by name.
    pub teams: Vec<DirectoryTeam>,
}
