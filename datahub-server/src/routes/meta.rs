//! Liveness, readiness and the API description (public), and metrics (admins).

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::meta::Status;
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The generated API description, shared with the handler that serves it.
pub type Spec = Arc<serde_json::Value>;

/// `/healthz`, `/readyz`, `/metrics`, `/api/v1/openapi.json`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, body = Status)))]
async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// The store answers: the server can serve requests.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    responses(
        (status = 200, body = Status),
        (status = 503, description = "the store is unreachable", body = crate::error::ErrorBody)
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    match state.hub().ready().await {
        Ok(()) => Ok(Json(Status { status: "ok" })),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store is unreachable",
        )),
    }
}

/// Prometheus metrics: requests by route and status with latency, tests and checks by outcome,
/// connections by status. Admins only (SECURITY.md S34: how many connections exist and their
/// states are not for anonymous callers): Prometheus sends an admin's API token, preferably a
/// read-only one (`authorization: Bearer dh_…`, `bearer_token_file` in its scrape config).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 403, description = "not an admin", body = crate::error::ErrorBody)
    )
)]
async fn metrics(State(state): State<AppState>, Authed(principal): Authed) -> ApiResult<Response> {
    state.hub().authorize_metrics(&principal)?;
    crate::telemetry::record_monitor(&state);
    let body = state.metrics().map(|m| m.render()).unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// This API's OpenAPI 3.1 description, generated from the code.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "the OpenAPI document"))
)]
async fn openapi(Extension(spec): Extension<Spec>) -> Json<serde_json::Value> {
    Json(spec.as_ref().clone())
}
