//! DataHub Connections server: the REST API and the bundled web UI over `datahub-core`, and the
//! operator CLI.
//!
//! [`app`] builds the whole HTTP application from an [`AppState`]; `main` only reads the
//! settings, sets up logging, opens the core and serves with graceful shutdown. Tests drive
//! [`app`] directly with `tower::ServiceExt::oneshot`.
//!
//! Architecture invariant: handlers reach the core only through `Hub` (never the store, the
//! keyring or the prober), so access control and the audit log cannot be skipped.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod extract;
pub mod limit;
pub mod reject;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod ui;

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use crate::error::{ApiError, ApiResult};
pub use crate::state::{AppState, HttpOptions};

/// The request id header, set on every request (kept when the client sent a well-formed one)
/// and answered on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The content security policy of every answer: nothing from elsewhere, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let options = state.options().clone();
    let (api, mut openapi) = routes::api().split_for_parts();
    let (streams, streams_doc) = routes::streams().split_for_parts();
    openapi.merge(streams_doc);
    let openapi = routes::complete(openapi);
    // Event streams are long-lived: the request timeout applies to everything else.
    let timed = api
        .merge(ui::router())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            options.request_timeout,
        ));
    Router::new()
        .merge(timed)
        .merge(streams)
        .fallback(fallback)
        .layer(axum::Extension(std::sync::Arc::new(openapi)))
        .layer(
            ServiceBuilder::new()
                // gzip or brotli when the client accepts it; tower-http's default predicate
                // leaves event streams (an event must leave at once), images and tiny bodies be.
                .layer(CompressionLayer::new())
                // A client's id only when it is short and plain (S34), else our own.
                .layer(middleware::from_fn(bound_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|request: &Request| {
                        let id = request
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        let route = request
                            .extensions()
                            .get::<MatchedPath>()
                            .map_or("-", MatchedPath::as_str);
                        tracing::info_span!(
                            "request",
                            request_id = %id,
                            method = %request.method(),
                            route = %route,
                        )
                    }),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(middleware::from_fn(error_request_id))
                // Inside the request's span, before `error_request_id` rebuilds the body.
                .layer(middleware::from_fn(error::log_errors))
                .layer(middleware::from_fn(record_metrics))
                .layer(security_header(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(CSP),
                ))
                .layer(security_header(
                    header::X_FRAME_OPTIONS,
                    HeaderValue::from_static("DENY"),
                ))
                .layer(security_header(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                .layer(security_header(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ))
                .layer(security_header(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ))
                // Only over HTTPS: a browser that saw it refuses plain HTTP to this host for a
                // year, so a network attacker cannot strip TLS from the next visit (S34).
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::STRICT_TRANSPORT_SECURITY,
                    Hsts(
                        options
                            .secure_cookies
                            .then(|| HeaderValue::from_static(HSTS)),
                    ),
                ))
                .layer(RequestBodyLimitLayer::new(options.body_limit)),
        )
        .with_state(state)
}

/// `Strict-Transport-Security` of answers served over HTTPS: one year, this host only (the
/// operator's other subdomains may not all serve HTTPS).
pub const HSTS: &str = "max-age=31536000";

/// The `Strict-Transport-Security` value of every answer: set only when serving HTTPS.
#[derive(Debug, Clone)]
struct Hsts(Option<HeaderValue>);

impl<T> tower_http::set_header::MakeHeaderValue<T> for Hsts {
    fn make_header_value(&mut self, _message: &T) -> Option<HeaderValue> {
        self.0.clone()
    }
}

fn security_header(name: HeaderName, value: HeaderValue) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, value)
}

/// A browser's navigation to any other path gets the web UI's page (which routes the path
/// itself, so deep links work); every other unknown path gets the API's error shape, not an
/// empty 404.
async fn fallback(request: Request) -> Response {
    if ui::is_page(&request) {
        return ui::page(request.headers());
    }
    ApiError::not_found().into_response()
}

/// The longest request id kept from a client.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// Whether a client's request id may be kept: 1 to [`MAX_REQUEST_ID_LEN`] characters of
/// `[A-Za-z0-9._-]` (SECURITY.md S34), so it can be logged and audited as it is.
pub fn is_valid_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Drops a client's `X-Request-Id` that is not valid ([`is_valid_request_id`]) or given more
/// than once, so the next layer makes the server's own.
async fn bound_request_id(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let mut ids = headers.get_all(REQUEST_ID).iter();
    let keep = match (ids.next(), ids.next()) {
        (None, _) => true,
        (Some(id), None) => is_valid_request_id(id.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        request.headers_mut().remove(REQUEST_ID);
    }
    next.run(request).await
}

/// Puts the request id into the body of every error answer made by [`ApiError`], and turns
/// the body-limit layer's bare 413 into the error shape.
async fn error_request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(request).await;
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && response.extensions().get::<error::ErrorDetail>().is_none()
    {
        let mut replaced = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is larger than the server accepts",
        )
        .with_field("body")
        .into_response();
        replace_id(&mut replaced, id);
        return replaced;
    }
    let mut response = response;
    replace_id(&mut response, id);
    response
}

/// Rebuilds an error body with the request id.
fn replace_id(response: &mut Response, id: Option<String>) {
    let Some(detail) = response.extensions_mut().remove::<error::ErrorDetail>() else {
        return;
    };
    let body = error::ErrorBody {
        error: error::ErrorDetail {
            request_id: id,
            ..detail
        },
    };
    let status = response.status();
    let mut rebuilt = (status, axum::Json(body)).into_response();
    for (name, value) in response.headers() {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    *response = rebuilt;
}

/// Counts requests by route and status, with their latency.
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // Labels come from closed sets only: a made-up method is "other".
    let method = match request.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let elapsed: Duration = started.elapsed();
    metrics::counter!(
        "datahub_http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status
    )
    .increment(1);
    metrics::histogram!(
        "datahub_http_request_duration_seconds",
        "method" => method,
        "route" => route
    )
    .record(elapsed.as_secs_f64());
    response
}
