//! API tokens: a signed-in user creates, lists and revokes their own (`Authorization: Bearer
//! dh_…`). The token text is in the answer to its creation only; the store keeps its SHA-256.
//! Admins may revoke anyone's token by id.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datahub_core::TokenId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::token::{ApiTokenInfo, CreatedToken, CreatedTokenBody, NewToken};
use crate::auth::Authed;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, PathId};
use crate::state::AppState;

/// `/api/v1/tokens`, `/api/v1/tokens/{id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// The caller's own tokens, revoked ones included.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses(
        (status = 200, body = [ApiTokenInfo]),
    )
)]
async fn list_tokens(
    State(state): State<AppState>,
    Authed(principal): Authed,
) -> ApiResult<Json<Vec<ApiTokenInfo>>> {
    let tokens = state.hub().tokens(&principal).await?;
    Ok(Json(tokens.into_iter().map(ApiTokenInfo::from).collect()))
}

/// Creates a token acting as the caller; the answer carries the token text this once.
///
/// From a signed-in session the lifetime is as asked (no expiry by default). Through another
/// API token, the new token expires no later than that one, and a read-only token creates none
/// (403). A token keeps working when its user changes their password (sessions end); it stops
/// when revoked, when it expires, or when its user is disabled, which revokes it for good.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = NewToken,
    responses(
        (status = 201, body = CreatedToken),
        (status = 400, description = "invalid input, naming the field", body = ErrorBody),
        (status = 403, description = "a read-only token", body = ErrorBody)
    )
)]
async fn create_token(
    State(state): State<AppState>,
    Authed(principal): Authed,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<Response> {
    let new = state
        .hub()
        .create_token(&principal, &body.name, body.expires_in_days, body.read_only)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedTokenBody(new))).into_response())
}

/// Revokes a token: one's own, or anyone's for admins. It is refused from the next request on.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = Uuid, Path, description = "the token's id")),
    responses(
        (status = 204, description = "revoked"),
        (status = 400, description = "the id is not a UUID", body = ErrorBody),
        (status = 403, description = "another user's token, or a read-only token", body = ErrorBody),
        (status = 404, description = "no such token", body = ErrorBody)
    )
)]
async fn revoke_token(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<TokenId>,
) -> ApiResult<StatusCode> {
    state.hub().revoke_token(&principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
