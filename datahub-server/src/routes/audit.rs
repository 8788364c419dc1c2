//! The audit log: a filtered, paginated read (newest first) and the verification of its hash
//! chain, for admins and auditors. Entries name changed fields, never their values.

use axum::Json;
use axum::extract::State;
use datahub_core::UserId;
use datahub_core::model::{AuditQuery, MAX_PER_PAGE};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::audit::{AuditEntry, AuditPage, AuditVerifyReport};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The page size when none is asked for.
const DEFAULT_PER_PAGE: u32 = 50;

/// The longest `action` or `target` filter, in bytes (the longest stored value is far shorter).
const MAX_FILTER_LEN: usize = 512;

/// `/api/v1/audit`, `/api/v1/audit/verify`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit_log))
        .routes(routes!(verify_audit))
}

/// The filters and page of an audit log read. An empty value is no filter.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only entries by this user id.
    #[param(value_type = Option<String>, format = Uuid)]
    pub actor: Option<String>,
    /// Only this action (exact), e.g. `connection.create`.
    pub action: Option<String>,
    /// Only this target (exact), e.g. `connection:<id>`.
    pub target: Option<String>,
    /// Only entries written at or after this time (RFC 3339, e.g. `2026-12-07T08:00:00Z`).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<String>,
    /// Only entries written before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<String>,
    /// The page, from 1. Default: 1.
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// Entries per page, 1 to 200. Default: 50.
    #[param(minimum = 1, maximum = 200)]
    pub per_page: Option<u32>,
}

impl AuditParams {
    fn query(self) -> ApiResult<AuditQuery> {
        let actor = match non_empty(self.actor) {
            None => None,
            Some(text) => Some(
                text.parse::<UserId>()
                    .map_err(|_| ApiError::invalid("actor", "must be a user id (a UUID)"))?,
            ),
        };
        let page = self.page.unwrap_or(1);
        if page < 1 {
            return Err(ApiError::invalid("page", "must be at least 1"));
        }
        let per_page = self.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(ApiError::invalid(
                "per_page",
                format!("must be between 1 and {MAX_PER_PAGE}"),
            ));
        }
        let since = instant("since", self.since)?;
        let until = instant("until", self.until)?;
        if let (Some(since), Some(until)) = (since, until)
            && until < since
        {
            return Err(ApiError::invalid("until", "must not be before since"));
        }
        Ok(AuditQuery {
            actor,
            action: filter("action", self.action)?,
            target: filter("target", self.target)?,
            since,
            until,
            page,
            per_page,
        })
    }
}

/// An RFC 3339 time from the query (empty is none).
fn instant(field: &'static str, value: Option<String>) -> ApiResult<Option<OffsetDateTime>> {
    non_empty(value)
        .map(|text| {
            OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| {
                ApiError::invalid(
                    field,
                    "must be an RFC 3339 time such as 2026-12-07T08:00:00Z",
                )
            })
        })
        .transpose()
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn filter(field: &'static str, value: Option<String>) -> ApiResult<Option<String>> {
    match non_empty(value) {
        Some(v) if v.len() > MAX_FILTER_LEN => Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_FILTER_LEN} bytes long"),
        )),
        // Stored names are escaped, so no row holds a control character: a filter with one is
        // a mistake, not a search.
        Some(v) if v.chars().any(char::is_control) => Err(ApiError::invalid(
            field,
            "must not contain control characters",
        )),
        other => Ok(other),
    }
}

/// One page of the audit log, newest first (admins and auditors).
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, description = "a bad query parameter, named", body = ErrorBody),
        (status = 403, description = "neither admin nor auditor", body = ErrorBody)
    )
)]
async fn audit_log(
    State(state): State<AppState>,
    Authed(principal): Authed,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    let query = params.query()?;
    let page = state.hub().audit_log(&principal, &query).await?;
    Ok(Json(AuditPage {
        items: page.items.into_iter().map(AuditEntry::from).collect(),
        total: page.total,
        page: page.page,
        per_page: page.per_page,
    }))
}

/// Verifies the whole hash chain and reports the first entry that does not fit (admins and
/// auditors). The verification is itself audited.
#[utoipa::path(
    get,
    path = "/api/v1/audit/verify",
    tag = "audit",
    responses(
        (status = 200, body = AuditVerifyReport),
        (status = 403, description = "neither admin nor auditor", body = ErrorBody)
    )
)]
async fn verify_audit(
    State(state): State<AppState>,
    Authed(principal): Authed,
) -> ApiResult<Json<AuditVerifyReport>> {
    let verification = state.hub().verify_audit(&principal).await?;
    Ok(Json(verification.into()))
}
