//! Connections: list, create (optionally tested first), show, edit, delete, test (saved or
//! draft), check history, reveal, grants — `/api/v1/connections*`.
//!
//! Every handler authenticates first, then parses its path, query and body, and reaches the
//! core only through the Hub, which checks the permission and audits. Edits and deletions name
//! the version they read in `If-Match` (`"<version>"`, the `ETag` of `GET` and `POST`): missing
//! → 428, malformed → 400, stale → 412 (SECURITY.md S26). A connection the caller may not view
//! is 404 everywhere. No answer carries a secret except `reveal` (S8).

use std::str::FromStr;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datahub_core::ConnectionId;
use datahub_core::hub::ConnectionGrants;
use datahub_core::model::{Connection, Engine, HealthStatus, Tag};
use datahub_core::model::{ListQuery, SortKey};
use datahub_core::probe::{MAX_BUDGET, Report};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::connection::{
    ConnectionOut, ConnectionPage, CreateConnection, DraftTest, GrantsBody, GrantsOut,
    HealthHistoryOut, PatchConnection, RevealBody, RevealResponse,
};
use crate::api::report::{TestFailedBody, TestFailedDetail, TestReport};
use crate::auth::{Authed, Caller, Client};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, IfMatch, PathId, not_an_id};
use crate::state::AppState;
use crate::telemetry;

/// The longest `search` accepted, in characters.
const MAX_SEARCH_CHARS: usize = 200;
/// The checks `GET …/health` returns when `limit` is not given.
const DEFAULT_HISTORY_LIMIT: u32 = 100;
/// How far back `GET …/health` looks when `since` is not given: 24 hours.
const DEFAULT_HISTORY_WINDOW: time::Duration = time::Duration::hours(24);

/// Every connection route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(test_draft))
        .routes(routes!(show, update, remove))
        .routes(routes!(test_saved))
        .routes(routes!(health))
        .routes(routes!(reveal))
        .routes(routes!(grants, set_grants, clear_grants))
}

/// The filters, sort and page of a list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Case-insensitive text in name, description, host or a tag (up to 200 characters).
    search: Option<String>,
    /// Only connections with this tag.
    tag: Option<String>,
    /// `unknown`, `healthy`, `degraded` or `down`.
    status: Option<String>,
    /// `postgres`.
    engine: Option<String>,
    /// From 1. Default: 1.
    page: Option<String>,
    /// 1–200. Default: 50.
    per_page: Option<String>,
    /// `name` (default), `updated` (newest first), `status` (worst first), `checked` (last
    /// check, most recent first) or `latency` (last successful check, slowest first).
    sort: Option<String>,
}

impl ListParams {
    /// The core's query, each parameter checked (400 naming it). Also used by the Python
    /// module's local mode, so both modes validate a list identically.
    ///
    /// # Errors
    /// 400 naming the parameter that broke a rule.
    pub fn into_query(self) -> ApiResult<ListQuery> {
        let mut query = ListQuery::default();
        if let Some(search) = self.search.filter(|s| !s.is_empty()) {
            if search.chars().count() > MAX_SEARCH_CHARS {
                return Err(ApiError::invalid(
                    "search",
                    "must be at most 200 characters",
                ));
            }
            if search.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "search",
                    "must not contain control characters",
                ));
            }
            query.search = Some(search);
        }
        if let Some(tag) = self.tag.filter(|s| !s.is_empty()) {
            let tag = Tag::parse(&tag).map_err(|e| ApiError::invalid("tag", e.message()))?;
            query.tag = Some(tag);
        }
        if let Some(status) = self.status.filter(|s| !s.is_empty()) {
            query.status = Some(HealthStatus::from_str(&status).map_err(|_| {
                ApiError::invalid("status", "must be one of: unknown, healthy, degraded, down")
            })?);
        }
        if let Some(engine) = self.engine.filter(|s| !s.is_empty()) {
            query.engine = Some(
                Engine::from_str(&engine)
                    .map_err(|_| ApiError::invalid("engine", "must be one of: postgres"))?,
            );
        }
        if let Some(page) = self.page.filter(|s| !s.is_empty()) {
            query.page = number("page", &page)?;
        }
        if let Some(per_page) = self.per_page.filter(|s| !s.is_empty()) {
            query.per_page = number("per_page", &per_page)?;
        }
        if let Some(sort) = self.sort.filter(|s| !s.is_empty()) {
            query.sort = match sort.as_str() {
                "name" => SortKey::Name,
                "updated" => SortKey::Updated,
                "status" => SortKey::Status,
                "checked" => SortKey::Checked,
                "latency" => SortKey::Latency,
                _ => {
                    return Err(ApiError::invalid(
                        "sort",
                        "must be one of: name, updated, status, checked, latency",
                    ));
                }
            };
        }
        Ok(query)
    }
}

/// A positive whole number from a query parameter.
fn number(field: &'static str, text: &str) -> ApiResult<u32> {
    match text.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ApiError::invalid(field, "must be a whole number from 1")),
    }
}

/// One page of the connections the caller may view, with the total over all pages.
#[utoipa::path(
    get,
    path = "/api/v1/connections",
    tag = "connections",
    params(ListParams),
    responses(
        (status = 200, body = ConnectionPage),
        (status = 400, body = ErrorBody, description = "a bad query parameter, named in `field`"),
    )
)]
async fn list(
    State(state): State<AppState>,
    Authed(principal): Authed,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<ConnectionPage>> {
    let query = params.into_query()?;
    let page = state.hub().list_connections(&principal, &query).await?;
    Ok(Json(ConnectionPage {
        items: page.items.iter().map(ConnectionOut::from).collect(),
        total: page.total,
        page: page.page,
        per_page: page.per_page,
    }))
}

/// The query of a creation.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CreateParams {
    /// `true`: test the settings first and save only when the test passes (else 422 with the
    /// report). Default: `false`.
    test_first: Option<String>,
}

/// Saves a new connection owned by the caller (roles editor and admin).
#[utoipa::path(
    post,
    path = "/api/v1/connections",
    tag = "connections",
    params(CreateParams),
    request_body = CreateConnection,
    responses(
        (status = 201, body = ConnectionOut, description = "saved; `ETag` holds the version and `Location` the URL",
         headers(("ETag" = String), ("Location" = String))),
        (status = 400, body = ErrorBody, description = "a field broke a rule, named in `field`"),
        (status = 409, body = ErrorBody, description = "the name is taken"),
        (status = 422, body = TestFailedBody, description = "`test_first` and the test failed: nothing saved"),
        (status = 429, body = ErrorBody, description = "too many connection tests: wait `Retry-After` seconds",
         headers(("Retry-After" = u64, description = "whole seconds until a test is allowed again"))),
    )
)]
async fn create(
    State(state): State<AppState>,
    Authed(principal): Authed,
    Client(info): Client,
    params: Result<ApiQuery<CreateParams>, ApiError>,
    ApiJson(body): ApiJson<CreateConnection>,
) -> ApiResult<Response> {
    // After the body's syntax, as a malformed body is answered first.
    let ApiQuery(params) = params?;
    let test_first = match params.test_first.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("test_first", "must be true or false")),
    };
    let draft = body.into_draft()?;
    let connection = if test_first {
        let created = state
            .hub()
            .create_connection_tested(&principal, draft, MAX_BUDGET)
            .await?;
        match created {
            datahub_core::hub::SaveOutcome::Saved { connection, report } => {
                count_test(telemetry::DRAFT, &report);
                *connection
            }
            datahub_core::hub::SaveOutcome::NotSaved(report) => {
                let report = count_test(telemetry::DRAFT, &report);
                let body = TestFailedBody {
                    error: TestFailedDetail {
                        code: "test_failed",
                        message: format!(
                            "the connection test failed ({}): nothing was saved",
                            report.outcome()
                        ),
                        request_id: info.request_id,
                    },
                    report,
                };
                return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response());
            }
        }
    } else {
        state.hub().create_connection(&principal, draft).await?
    };
    let location = HeaderValue::from_str(&format!("/api/v1/connections/{}", connection.id))
        .map_err(|_| ApiError::internal("a connection URL is not a header value"))?;
    let mut response = answer(StatusCode::CREATED, &connection)?;
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// One connection with its health; `ETag` holds its version.
#[utoipa::path(
    get,
    path = "/api/v1/connections/{id}",
    tag = "connections",
    params(("id" = String, Path, format = Uuid, description = "the connection")),
    responses(
        (status = 200, body = ConnectionOut, headers(("ETag" = String))),
        (status = 400, body = ErrorBody, description = "`id` is not a UUID"),
        (status = 404, body = ErrorBody, description = "no such connection, or the caller may not view it"),
    )
)]
async fn show(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<ConnectionId>,
) -> ApiResult<Response> {
    let (connection, level) = state.hub().connection_with_access(&principal, id).await?;
    let mut out = ConnectionOut::from(&connection);
    out.access = Some(level.as_str());
    Ok((
        StatusCode::OK,
        [(header::ETAG, etag(connection.version)?)],
        Json(out),
    )
        .into_response())
}

/// Edits a connection (grant `manage`); `If-Match` names the version read.
#[utoipa::path(
    patch,
    path = "/api/v1/connections/{id}",
    tag = "connections",
    params(
        ("id" = String, Path, format = Uuid, description = "the connection"),
        ("If-Match" = String, Header, description = "the ETag read, e.g. `\"3\"`"),
    ),
    request_body = PatchConnection,
    responses(
        (status = 200, body = ConnectionOut, headers(("ETag" = String))),
        (status = 400, body = ErrorBody, description = "a field broke a rule, or If-Match is malformed"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the name is taken"),
        (status = 412, body = ErrorBody, description = "the version is stale"),
        (status = 428, body = ErrorBody, description = "If-Match is missing"),
    )
)]
async fn update(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<ConnectionId>,
    if_match: Result<IfMatch, ApiError>,
    ApiJson(body): ApiJson<PatchConnection>,
) -> ApiResult<Response> {
    // After the body's syntax, as a malformed body is answered first.
    let IfMatch(version) = if_match?;
    let patch = body.into_patch()?;
    let connection = state
        .hub()
        .update_connection(&principal, id, version, patch)
        .await?;
    answer(StatusCode::OK, &connection)
}

/// Deletes a connection (grant `manage`); `If-Match` names the version read.
#[utoipa::path(
    delete,
    path = "/api/v1/connections/{id}",
    tag = "connections",
    params(
        ("id" = String, Path, format = Uuid, description = "the connection"),
        ("If-Match" = String, Header, description = "the ETag read, e.g. `\"3\"`"),
    ),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 412, body = ErrorBody, description = "the version is stale"),
        (status = 428, body = ErrorBody, description = "If-Match is missing"),
    )
)]
async fn remove(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<ConnectionId>,
    IfMatch(version): IfMatch,
) -> ApiResult<StatusCode> {
    state
        .hub()
        .delete_connection(&principal, id, version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Tests settings without saving them (roles editor and admin). A failed test is a 200 with
/// `ok: false`.
#[utoipa::path(
    post,
    path = "/api/v1/connections/test",
    tag = "connections",
    request_body = DraftTest,
    responses(
        (status = 200, body = TestReport, description = "the test ran (it may have failed: see `ok`)"),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`id` names a connection the caller may not view"),
        (status = 429, body = ErrorBody, description = "too many connection tests: wait `Retry-After` seconds",
         headers(("Retry-After" = u64, description = "whole seconds until a test is allowed again"))),
    )
)]
async fn test_draft(
    State(state): State<AppState>,
    Authed(principal): Authed,
    ApiJson(body): ApiJson<DraftTest>,
) -> ApiResult<Json<TestReport>> {
    let (draft, reuse) = body.into_draft()?;
    let report = state
        .hub()
        .test_draft(&principal, draft, reuse, MAX_BUDGET)
        .await?;
    Ok(Json(count_test(telemetry::DRAFT, &report)))
}

/// Tests a saved connection now (grant `use`). A failed test is a 200 with `ok: false`.
#[utoipa::path(
    post,
    path = "/api/v1/connections/{id}/test",
    tag = "connections",
    params(("id" = String, Path, format = Uuid, description = "the connection")),
    responses(
        (status = 200, body = TestReport, description = "the test ran (it may have failed: see `ok`)"),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "too many connection tests: wait `Retry-After` seconds",
         headers(("Retry-After" = u64, description = "whole seconds until a test is allowed again"))),
    )
)]
async fn test_saved(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TestReport>> {
    let Ok(id) = ConnectionId::from_str(&id) else {
        // As with `Authed` and `PathId`: a 401 before a 400.
        caller.authenticate(&state).await?;
        return Err(not_an_id());
    };
    // The caller is authenticated while the connection is read; the read is used only once
    // authentication passed.
    let report = state
        .hub()
        .test_connection_as(caller.authenticate(&state), id, MAX_BUDGET)
        .await?;
    Ok(Json(count_test(telemetry::SAVED, &report)))
}

/// The window and size of a check history.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// RFC 3339 time; checks at or after it. Default: 24 hours ago.
    since: Option<String>,
    /// 1–1000. Default: 100.
    limit: Option<String>,
}

impl HistoryParams {
    /// The window start and the number of checks, defaults filled in (400 naming a bad
    /// parameter). Also used by the Python module's local mode.
    ///
    /// # Errors
    /// 400 on `since` that is not RFC 3339 or `limit` that is not a whole number from 1.
    pub fn window(self) -> ApiResult<(OffsetDateTime, u32)> {
        let since = match self.since.as_deref().filter(|s| !s.is_empty()) {
            Some(text) => OffsetDateTime::parse(text, &Rfc3339)
                .map_err(|_| ApiError::invalid("since", "must be an RFC 3339 time"))?,
            None => OffsetDateTime::now_utc() - DEFAULT_HISTORY_WINDOW,
        };
        let limit = match self.limit.as_deref().filter(|s| !s.is_empty()) {
            Some(text) => number("limit", text)?,
            None => DEFAULT_HISTORY_LIMIT,
        };
        Ok((since, limit))
    }
}

/// A connection's recent checks, newest first, and the buckets of older ones rolled up, with
/// its health and 24 h uptime (grant `view`).
#[utoipa::path(
    get,
    path = "/api/v1/connections/{id}/health",
    tag = "connections",
    params(("id" = String, Path, format = Uuid, description = "the connection"), HistoryParams),
    responses(
        (status = 200, body = HealthHistoryOut),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn health(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<ConnectionId>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> ApiResult<Json<HealthHistoryOut>> {
    let (since, limit) = params.window()?;
    let history = state
        .hub()
        .health_history(&principal, id, since, limit)
        .await?;
    Ok(Json(HealthHistoryOut::from(&history)))
}

/// The decrypted credentials and DSN (grant `use`; audited). The one answer with a secret.
#[utoipa::path(
    post,
    path = "/api/v1/connections/{id}/reveal",
    tag = "connections",
    params(("id" = String, Path, format = Uuid, description = "the connection")),
    responses(
        (status = 200, body = RevealResponse, description = "the secrets; never cached (`Cache-Control: no-store`)"),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn reveal(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<ConnectionId>,
) -> ApiResult<Response> {
    let revealed = state.hub().reveal(&principal, id).await?;
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(RevealBody(revealed)),
    )
        .into_response())
}

/// Who holds which grant on a connection (grant `manage`); the `ETag` is the connection's
/// version, which a replacement names in `If-Match`.
#[utoipa::path(
    get,
    path = "/api/v1/connections/{id}/grants",
    tag = "connections",
    params(("id" = String, Path, format = Uuid, description = "the connection")),
    responses(
        (status = 200, body = GrantsOut, headers(("ETag" = String))),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
    )
)]
async fn grants(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<ConnectionId>,
) -> ApiResult<Response> {
    let grants = state.hub().grants(&principal, id).await?;
    grants_answer(StatusCode::OK, &grants)
}

/// Replaces the grants on a connection (grant `manage`); `If-Match` names the version read
/// (the `ETag` of the connection or of its grants). Answers the new set; the connection's
/// version goes up by one.
#[utoipa::path(
    put,
    path = "/api/v1/connections/{id}/grants",
    tag = "connections",
    params(
        ("id" = String, Path, format = Uuid, description = "the connection"),
        ("If-Match" = String, Header, description = "the ETag read, e.g. `\"3\"`"),
    ),
    request_body = GrantsBody,
    responses(
        (status = 200, body = GrantsOut, headers(("ETag" = String))),
        (status = 400, body = ErrorBody, description = "a bad grant, named as `grants[i].field`, or If-Match is malformed"),
        (status = 404, body = ErrorBody, description = "no such connection, user or team"),
        (status = 412, body = ErrorBody, description = "the version is stale"),
        (status = 428, body = ErrorBody, description = "If-Match is missing"),
    )
)]
async fn set_grants(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<ConnectionId>,
    if_match: Result<IfMatch, ApiError>,
    ApiJson(body): ApiJson<GrantsBody>,
) -> ApiResult<Response> {
    // After the body's syntax, as a malformed body is answered first.
    let IfMatch(version) = if_match?;
    let new = body.into_grants()?;
    let grants = state
        .hub()
        .set_grants(&principal, id, version, &new)
        .await?;
    grants_answer(StatusCode::OK, &grants)
}

/// Removes every grant on a connection (grant `manage`); the owner keeps `manage`. `If-Match`
/// names the version read; the connection's version goes up by one.
#[utoipa::path(
    delete,
    path = "/api/v1/connections/{id}/grants",
    tag = "connections",
    params(
        ("id" = String, Path, format = Uuid, description = "the connection"),
        ("If-Match" = String, Header, description = "the ETag read, e.g. `\"3\"`"),
    ),
    responses(
        (status = 204, description = "no grants left", headers(("ETag" = String))),
        (status = 400, body = ErrorBody, description = "If-Match is malformed"),
        (status = 404, body = ErrorBody),
        (status = 412, body = ErrorBody, description = "the version is stale"),
        (status = 428, body = ErrorBody, description = "If-Match is missing"),
    )
)]
async fn clear_grants(
    State(state): State<AppState>,
    Authed(principal): Authed,
    PathId(id): PathId<ConnectionId>,
    IfMatch(version): IfMatch,
) -> ApiResult<Response> {
    let grants = state.hub().set_grants(&principal, id, version, &[]).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::ETAG, etag(grants.version)?)],
    )
        .into_response())
}

/// Grants as JSON with the connection's version as the `ETag`.
fn grants_answer(status: StatusCode, grants: &ConnectionGrants) -> ApiResult<Response> {
    Ok((
        status,
        [(header::ETAG, etag(grants.version)?)],
        Json(GrantsOut::of(&grants.grants)),
    )
        .into_response())
}

/// A version as an `ETag` value: `"<version>"`.
fn etag(version: u64) -> ApiResult<HeaderValue> {
    HeaderValue::from_str(&format!("\"{version}\""))
        .map_err(|_| ApiError::internal("a version is not a header value"))
}

/// A connection as JSON with its version as the `ETag`.
fn answer(status: StatusCode, connection: &Connection) -> ApiResult<Response> {
    Ok((
        status,
        [(header::ETAG, etag(connection.version)?)],
        Json(ConnectionOut::from(connection)),
    )
        .into_response())
}

/// Counts a finished test in `datahub_tests_total{kind, outcome}` and converts its report.
fn count_test(kind: &'static str, report: &Report) -> TestReport {
    telemetry::record_test(kind, report.failure.as_ref().map(|f| f.kind));
    TestReport::from(report)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use datahub_core::model::FailureKind;
    use datahub_core::probe::{Failure, StepName};
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    #[test]
    fn tests_are_counted_by_kind_and_outcome() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let failed = Report {
            ok: false,
            total_ms: 1.0,
            steps: Vec::new(),
            server: None,
            tls: None,
            failure: Some(Failure {
                kind: FailureKind::AuthFailed,
                step: StepName::Auth,
                hint: Cow::Borrowed("check the password"),
                sqlstate: Some("28P01".to_owned()),
            }),
        };
        let passed = Report {
            ok: true,
            failure: None,
            ..failed.clone()
        };
        metrics::with_local_recorder(&recorder, || {
            assert_eq!(
                count_test(telemetry::SAVED, &failed).error_kind,
                Some("auth_failed")
            );
            count_test(telemetry::DRAFT, &passed);
            count_test(telemetry::DRAFT, &passed);
        });
        let text = handle.render();
        assert!(
            text.contains(r#"datahub_tests_total{kind="saved",outcome="auth_failed"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"datahub_tests_total{kind="draft",outcome="ok"} 2"#),
            "{text}"
        );
    }
}
