//! The name directory: `GET /api/v1/directory?q=`, enabled users and teams by name, for picking
//! a grantee (the grants panel). Any signed-in caller may ask (`directory.read`); it answers ids
//! and names only, never a role, a team's members or anything of a connection.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::directory::DirectoryOut;
use crate::auth::Authed;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiQuery;
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
    )
)]
async fn directory(
    State(state): State<AppState>,
    Authed(principal): Authed,
    ApiQuery(params): ApiQuery<DirectoryParams>,
) -> ApiResult<Json<DirectoryOut>> {
    let found = state
        .hub()
        .directory(&principal, params.q.as_deref())
        .await?;
    Ok(Json(found.into()))
}
