//! User accounts: the admin's list, creation and changes (role, disabled flag, password reset),
//! and a signed-in user's change of their own password.
//!
//! Passwords are write-only: they are read into the core's `Password` as the body is parsed,
//! and no answer ever carries one (nor its hash).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datahub_core::hub::UserUpdate;
use datahub_core::rbac::Role;
use datahub_core::{ErrorKind, UserId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::connection::Secret;
use crate::api::user::{NewUser, OwnPasswordChange, User, UserChange};
use crate::auth::{Authed, Client};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, PathId};
use crate::state::AppState;

/// `/api/v1/users`, `/api/v1/users/{id}`, `/api/v1/users/me/password`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(change_own_password))
}

/// Every user account (admins).
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    responses(
        (status = 200, body = [User]),
        (status = 403, description = "not an admin", body = ErrorBody)
    )
)]
async fn list_users(
    State(state): State<AppState>,
    Authed(principal): Authed,
) -> ApiResult<Json<Vec<User>>> {
    let users = state.hub().users(&principal).await?;
    Ok(Json(users.into_iter().map(User::from).collect()))
}

/// Creates an account (admins).
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, body = User),
        (status = 400, description = "invalid input, naming the field", body = ErrorBody),
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
    Ok((StatusCode::CREATED, Json(User::from(user))).into_response())
}

/// One account (admins).
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "the user's id")),
    responses(
        (status = 200, body = User),
        (status = 400, description = "the id is not a UUID", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody)
    )
)]
async fn get_user(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<UserId>,
) -> ApiResult<Json<User>> {
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
        (status = 200, body = User),
        (status = 400, description = "invalid input, naming the field", body = ErrorBody),
        (status = 403, description = "not an admin, or a read-only token", body = ErrorBody),
        (status = 404, description = "no such user", body = ErrorBody),
        (status = 409, description = "it would leave no enabled admin", body = ErrorBody)
    )
)]
async fn update_user(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<UserId>,
    ApiJson(body): ApiJson<UserChange>,
) -> ApiResult<Json<User>> {
    let update = UserUpdate {
        role: body.role.map(Role::from),
        disabled: body.disabled,
        password: body.password.map(Secret::into_inner),
    };
    let user = state.hub().update_user(&principal, id, update).await?;
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
