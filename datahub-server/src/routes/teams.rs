//! Teams: named sets of users that connection grants can name. Everyone signed in may list
//! them (to pick a grantee); only admins create, change or delete them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datahub_core::TeamId;
use datahub_core::rbac::Action;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::team::{Team, TeamInput};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, PathId};
use crate::state::AppState;

/// `/api/v1/teams`, `/api/v1/teams/{id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_teams, create_team))
        .routes(routes!(replace_team, delete_team))
}

/// Every team with its members.
#[utoipa::path(
    get,
    path = "/api/v1/teams",
    tag = "teams",
    responses(
        (status = 200, body = [Team]),
    )
)]
async fn list_teams(
    State(state): State<AppState>,
    Authed(principal): Authed,
) -> ApiResult<Json<Vec<Team>>> {
    let teams = state.hub().teams(&principal).await?;
    Ok(Json(teams.into_iter().map(Team::from).collect()))
}

/// Creates a team (admins).
#[utoipa::path(
    post,
    path = "/api/v1/teams",
    tag = "teams",
    request_body = TeamInput,
    responses(
        (status = 201, body = Team),
        (status = 400, description = "invalid input, naming the field", body = ErrorBody),
        (status = 403, description = "not an admin, or a read-only token", body = ErrorBody),
        (status = 404, description = "a member does not exist", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody)
    )
)]
async fn create_team(
    State(state): State<AppState>,
    Authed(principal): Authed,
    ApiJson(body): ApiJson<TeamInput>,
) -> ApiResult<Response> {
    let members = body.members()?;
    let team = state
        .hub()
        .save_team(&principal, None, &body.name, &members)
        .await?;
    Ok((StatusCode::CREATED, Json(Team::from(team))).into_response())
}

/// Replaces a team's name and members (admins).
#[utoipa::path(
    put,
    path = "/api/v1/teams/{id}",
    tag = "teams",
    params(("id" = Uuid, Path, description = "the team's id")),
    request_body = TeamInput,
    responses(
        (status = 200, body = Team),
        (status = 400, description = "invalid input, naming the field", body = ErrorBody),
        (status = 403, description = "not an admin, or a read-only token", body = ErrorBody),
        (status = 404, description = "no such team, or a member does not exist", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody)
    )
)]
async fn replace_team(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<TeamId>,
    ApiJson(body): ApiJson<TeamInput>,
) -> ApiResult<Json<Team>> {
    let members = body.members()?;
    // The whole body is checked before the id, so bad input is a 400 naming its field whether
    // or not the team exists.
    if let Err(e) = datahub_core::auth::AccountName::parse(&body.name) {
        return Err(ApiError::from(e).with_field("name"));
    }
    // `save_team` would create a team under an id it does not know: a PUT must name an
    // existing team. Callers who may not manage teams are refused (and audited) by the core
    // before it writes anything, whether or not the team exists.
    let exists = state
        .hub()
        .teams(&principal)
        .await?
        .iter()
        .any(|t| t.id == id);
    if !exists && principal.may(Action::TeamManage) {
        return Err(ApiError::not_found());
    }
    let team = state
        .hub()
        .save_team(&principal, Some(id), &body.name, &members)
        .await?;
    Ok(Json(team.into()))
}

/// Deletes a team and every grant it held (admins).
#[utoipa::path(
    delete,
    path = "/api/v1/teams/{id}",
    tag = "teams",
    params(("id" = Uuid, Path, description = "the team's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "the id is not a UUID", body = ErrorBody),
        (status = 403, description = "not an admin, or a read-only token", body = ErrorBody),
        (status = 404, description = "no such team", body = ErrorBody)
    )
)]
async fn delete_team(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<TeamId>,
) -> ApiResult<StatusCode> {
    state.hub().delete_team(&principal, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
