//! The JSON of sign-in and "who am I".

use datahub_core::rbac::Principal;
use datahub_core::secret::Password;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::api::connection::Secret;

/// A sign-in.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The account name.
    pub username: String,
    /// The password (write-only).
    #[schema(value_type = String, format = Password, write_only)]
    pub password: Secret<Password>,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The signed-in caller.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    /// The user's id.
    pub id: String,
    /// The account name.
    pub username: String,
    /// `admin`, `editor`, `viewer` or `auditor`.
    pub role: &'static str,
    /// The teams the user is in (ids).
    pub teams: Vec<String>,
    /// Whether the caller may only read (a read-only API token).
    pub read_only: bool,
}

impl Me {
    /// The caller as shown.
    pub fn of(principal: &Principal) -> Self {
        Self {
            id: principal.user().to_string(),
            username: principal.username().to_owned(),
            role: principal.role().as_str(),
            teams: principal.teams().iter().map(ToString::to_string).collect(),
            read_only: principal.is_read_only(),
        }
    }
}

/// A sign-in's answer (the session token travels only in the cookie).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// Who signed in.
    pub user: Me,
    /// When the session ends however active it is.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}
