//! The name directory: `GET /api/v1/directory?q=`, enabled users and teams by name, for picking
//! a grantee (the grants panel). Any signed-in caller may ask (`directory.read`); it answers ids
//! and names only, never a role, a team's members or anything of a connection.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use datahub_core::model::Directory;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Authed;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;

/// `GET /api/v1/directory`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(directory))
}

/// What to look for.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DirectoryParams {
    /// Text the name contains, case-insensitive, up to 64 characters. Default: every name.
    q: Option<String>,
}

/// Users and teams whose name matched, at most 20 of each, sorted by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryOut {
    /// Enabled users.
    pub users: Vec<DirectoryUserOut>,
    /// Teams.
    pub teams: Vec<DirectoryTeamOut>,
}

/// A user as the directory shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryUserOut {
    /// The user's id (a grant's `user_id`).
    pub id: Uuid,
    /// The login name.
    pub username: String,
}

/// A team as the directory shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryTeamOut {
    /// The team's id (a grant's `team_id`).
    pub id: Uuid,
    /// The team's name.
    pub name: String,
}

impl From<Directory> for DirectoryOut {
    fn from(d: Directory) -> Self {
        Self {
            users: d
                .users
                .into_iter()
                .map(|u| DirectoryUserOut {
                    id: *u.id.as_uuid(),
                    username: u.username,
                })
                .collect(),
            teams: d
                .teams
                .into_iter()
                .map(|t| DirectoryTeamOut {
                    id: *t.id.as_uuid(),
                    name: t.name,
                })
                .collect(),
        }
    }
}

/// Enabled users and teams whose name contains `q` (case-insensitive), at most 20 of each,
/// sorted by name: ids and names to pick a grantee from.
#[utoipa::path(
    get,
    path = "/api/v1/directory",
    tag = "directory",
    params(DirectoryParams),
    responses(
        (status = 200, body = DirectoryOut),
        (status = 400, description = "`q` is longer than 64 characters or holds a control character", body = ErrorBody),
        (status = 401, description = "not signed in", body = ErrorBody)
    )
)]
async fn directory(
    State(state): State<AppState>,
    Authed(principal): Authed,
    params: Result<Query<DirectoryParams>, QueryRejection>,
) -> ApiResult<Json<DirectoryOut>> {
    let Query(params) = params?;
    let found = state
        .hub()
        .directory(&principal, params.q.as_deref())
        .await?;
    Ok(Json(found.into()))
}
