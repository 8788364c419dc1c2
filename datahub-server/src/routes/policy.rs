//! The target policy: which addresses connections may reach (allowed and denied CIDRs; the
//! always-denied ranges apply whatever it says) and the lowest TLS mode a connection may use.
//! Everyone signed in may read it (the connection form shows it); only admins change it.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::policy::Policy;
use crate::auth::Authed;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// `/api/v1/policy`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_policy, put_policy))
}

/// The target policy.
#[utoipa::path(
    get,
    path = "/api/v1/policy",
    tag = "policy",
    responses(
        (status = 200, body = Policy),
    )
)]
async fn get_policy(
    State(state): State<AppState>,
    Authed(principal): Authed,
) -> ApiResult<Json<Policy>> {
    Ok(Json(state.hub().policy(&principal).await?.into()))
}

/// Replaces the target policy (admins); answers it as stored (CIDRs normalised). Every test,
/// check and pool applies it from then on.
#[utoipa::path(
    put,
    path = "/api/v1/policy",
    tag = "policy",
    request_body = Policy,
    responses(
        (status = 200, body = Policy),
        (status = 400, description = "invalid input, naming the field (e.g. `deny_cidrs[2]`)", body = ErrorBody),
        (status = 403, description = "not an admin, or a read-only token", body = ErrorBody)
    )
)]
async fn put_policy(
    State(state): State<AppState>,
    Authed(principal): Authed,
    ApiJson(body): ApiJson<Policy>,
) -> ApiResult<Json<Policy>> {
    let policy = body.into_core()?;
    Ok(Json(
        state.hub().set_policy(&principal, policy).await?.into(),
    ))
}
