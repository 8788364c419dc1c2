//! User accounts: the admin's list, creation and changes (role, disabled flag, password reset),
//! and a signed-in user's change of their own password.
//!
//! Passwords are write-only: they are read into the core's `Password` as the body is parsed,
//! and no answer ever carries one (nor its hash).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datahub_core::hub::{User, UserUpdate};
use datahub_core::rbac::Role;
use datahub_core::secret::Password;
use datahub_core::{ErrorKind, UserId};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::api::connection::Secret;
use crate::auth::{Authed, Client};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

/// `/api/v1/users`, `/api/v1/users/{id}`, `/api/v1/users/me/password`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(change_own_password))
}

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

/// A user account as shown: never a password or its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserAccount {
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

impl From<User> for UserAccount {
    fn from(user: User) -> Self {
        Self {
            id: *user.id.as_uuid(),
            username: user.username,
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

/// Every user account (admins).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    responses(
        (status = 200, body = [UserAccount]),
        (status = 401, description = "not signed in", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody)
    )
)]
async fn list_users(
    State(state): State<AppState>,
    Authed(principal): Authed,
) -> ApiResult<Json<Vec<UserAccount>>> {
    let users = state.hub().users(&principal).await?;
    Ok(Json(users.into_iter().map(UserAccount::from).collect()))
}

/// Creates an account (admins).
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, body = UserAccount),
        (status = 400, description = "invalid input, naming the field", body = ErrorBody),
        (status = 401, description = "not signed in", body = ErrorBody),
        (status = 403, description = "not an admin, or a read-only token", body = ErrorBody),
        (status = 409, description = "the user name is taken", body = ErrorBody)
    )
)]
async fn create_user(
    State(state): State<AppState>,
    Authed(principal): Authed,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<Response> {
    let user = state
        .hub()
        .create_user(
            &principal,
            &body.username,
            body.password.into_inner(),
            body.role.into(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(UserAccount::from(user))).into_response())
}

/// One account (admins).
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "the user's id")),
    responses(
        (status = 200, body = UserAccount),
        (status = 400, description = "the id is not a UUID", body = ErrorBody),
        (status = 401, description = "not signed in", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody)
    )
)]
async fn get_user(
    State(state): State<AppState>,
    Authed(principal): Authed,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<UserAccount>> {
    let id = UserId::from_uuid(id);
    let user = state
        .hub()
        .users(&principal)
        .await?
        .into_iter()
        .find(|u| u.id == id)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(user.into()))
}

/// Changes an account's role, enabled state or password (admins). The last enabled admin can
/// be neither demoted nor disabled (409).
#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "the user's id")),
    request_body = UserChange,
    responses(
        (status = 200, body = UserAccount),
        (status = 400, description = "invalid input, naming the field", body = ErrorBody),
        (status = 401, description = "not signed in", body = ErrorBody),
        (status = 403, description = "not an admin, or a read-only token", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
        (status = 409, description = "it would leave no enabled admin", body = ErrorBody)
    )
)]
async fn update_user(
    State(state): State<AppState>,
    Authed(principal): Authed,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UserChange>,
) -> ApiResult<Json<UserAccount>> {
    let update = UserUpdate {
        role: body.role.map(Role::from),
        disabled: body.disabled,
        password: body.password.map(Secret::into_inner),
    };
    let user = state
        .hub()
        .update_user(&principal, UserId::from_uuid(id), update)
        .await?;
    Ok(Json(user.into()))
}

/// Changes the caller's own password, given the current one. Wrong guesses count against the
/// same limit as failed sign-ins. Every session of the caller ends (sign in again); API tokens
/// keep working, as credentials of their own: revoke them at `/api/v1/tokens/{id}`.
#[utoipa::path(
    post,
    path = "/api/v1/users/me/password",
    tag = "users",
    request_body = OwnPasswordChange,
    responses(
        (status = 204, description = "changed"),
        (status = 400, description = "the current password is wrong, or the new one breaks the policy", body = ErrorBody),
        (status = 401, description = "not signed in", body = ErrorBody),
        (status = 403, description = "a read-only token", body = ErrorBody),
        (status = 429, description = "too many wrong guesses: wait `Retry-After` seconds", body = ErrorBody,
         headers(("Retry-After" = u64, description = "whole seconds until a new guess is allowed")))
    )
)]
async fn change_own_password(
    State(state): State<AppState>,
    Authed(principal): Authed,
    Client(client): Client,
    ApiJson(body): ApiJson<OwnPasswordChange>,
) -> ApiResult<StatusCode> {
    let addr = client.client_addr.as_deref();
    // S29: the address's attempt is taken before the current password is checked (the hub
    // takes the account's).
    if let Err(wait) = state.logins().attempt(addr) {
        // The wait until both the address and the account allow a guess.
        let account = state.hub().login_retry_after(principal.username());
        return Err(ApiError::rate_limited(wait.max(account)));
    }
    let result = state
        .hub()
        .change_own_password(
            &principal,
            body.current_password.into_inner(),
            body.new_password.into_inner(),
        )
        .await;
    if !matches!(&result, Err(e) if e.kind() == ErrorKind::Unauthenticated) {
        state.logins().give_back(addr);
    }
    match result {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e) if e.kind() == ErrorKind::Unauthenticated => Err(ApiError::invalid(
            "current_password",
            "the current password is wrong",
        )),
        Err(e) if e.kind() == ErrorKind::InvalidInput && e.field() == Some("password") => {
            Err(ApiError::from(e).with_field("new_password"))
        }
        Err(e) => Err(e.into()),
    }
}
