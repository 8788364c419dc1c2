//! The JSON of user accounts: an account as shown, a new account, an admin's change and a
//! user's change of their own password.
//!
//! Passwords are write-only: they are read into the core's `Password` as the body is parsed,
//! and no answer ever carries one (nor its hash).

use datahub_core::model::User as CoreUser;
use datahub_core::rbac::Role;
use datahub_core::secret::Password;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::connection::Secret;

/// A global role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    /// Everything: users, teams, roles, grants, keys, policy, audit.
    Admin,
    /// Creates connections and tests drafts; acts on others per grant.
    Editor,
    /// Acts on connections per grant only.
    Viewer,
    /// Reads the audit log; nothing else by role.
    Auditor,
}

// By hand rather than derived: serde_json reports a derived enum given a number or an object
// as a syntax error, which names no field.
impl<'de> Deserialize<'de> for UserRole {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const NAMES: &[&str] = &["admin", "editor", "viewer", "auditor"];
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "admin" => Ok(Self::Admin),
            "editor" => Ok(Self::Editor),
            "viewer" => Ok(Self::Viewer),
            "auditor" => Ok(Self::Auditor),
            _ => Err(serde::de::Error::unknown_variant(&text, NAMES)),
        }
    }
}

impl From<Role> for UserRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => Self::Admin,
            Role::Editor => Self::Editor,
            Role::Viewer => Self::Viewer,
            Role::Auditor => Self::Auditor,
        }
    }
}

impl From<UserRole> for Role {
    fn from(role: UserRole) -> Self {
        match role {
            UserRole::Admin => Self::Admin,
            UserRole::Editor => Self::Editor,
            UserRole::Viewer => Self::Viewer,
            UserRole::Auditor => Self::Auditor,
        }
    }
}

/// A user account as shown, by the API and by the CLI's `--output json`: never a password or
/// its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    /// Id.
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// Global role.
    pub role: UserRole,
    /// A disabled account can neither sign in nor use its tokens.
    pub disabled: bool,
    /// Created (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<CoreUser> for User {
    fn from(user: CoreUser) -> Self {
        Self::from(&user)
    }
}

impl From<&CoreUser> for User {
    fn from(user: &CoreUser) -> Self {
        Self {
            id: *user.id.as_uuid(),
            username: user.username.clone(),
            role: user.role.into(),
            disabled: user.disabled,
            created_at: user.created_at,
        }
    }
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name: 1–64 of `a-z 0-9 _ . @ -`, starting with a letter or digit.
    pub username: String,
    /// The password: 12 to 1,024 bytes. Write-only.
    #[schema(value_type = String, format = Password, write_only)]
    pub password: Secret<Password>,
    /// Global role.
    pub role: UserRole,
}

/// An admin's change to an account; an omitted field keeps its value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// New role.
    pub role: Option<UserRole>,
    /// Disable (`true`) or enable (`false`) the account. Disabling ends its sessions and
    /// revokes its API tokens for good: enabling it again brings none back. A new `password`
    /// ends its sessions and leaves its tokens working.
    pub disabled: Option<bool>,
    /// A new password (a reset). Write-only.
    #[schema(value_type = Option<String>, format = Password, write_only)]
    pub password: Option<Secret<Password>>,
}

/// A signed-in user's change of their own password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnPasswordChange {
    /// The password now. Write-only.
    #[schema(value_type = String, format = Password, write_only)]
    pub current_password: Secret<Password>,
    /// The new password: 12 to 1,024 bytes. Write-only.
    #[schema(value_type = String, format = Password, write_only)]
    pub new_password: Secret<Password>,
}
