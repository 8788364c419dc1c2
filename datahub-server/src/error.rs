//! The one error type of the HTTP API and its JSON shape.
//!
//! Every error answer is `{"error": {"code", "message", "field"?, "request_id"?}}` with a status
//! from DESIGN.md's table. Core errors map by [`ErrorKind`], never by their text; internal causes
//! (store, keyring, bugs) are answered with a generic message, so nothing from inside the process
//! reaches a client, and logged once with the request id by [`log_errors`], which reads the
//! [`LoggedError`] every error answer carries. Rejections of the extractors (malformed JSON,
//! wrong types, unknown fields, bad path or query values) get the same shape, naming the field
//! where serde says which one ([`crate::reject`]). Every 429 carries `Retry-After` (whole
//! seconds, at least 1) from the limiter that refused it.

use std::time::Duration;

use axum::Json;
use axum::extract::Request;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use datahub_core::{Error as CoreError, ErrorKind};

pub use crate::api::error::{ErrorBody, ErrorDetail};

/// The error of every handler.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    /// Whole seconds to wait, answered as `Retry-After` (every 429 has one).
    retry_after: Option<u64>,
    /// What went wrong inside, for the log only: never answered (boxed: most errors have
    /// none, and every handler's `Result` carries this type).
    cause: Option<Box<Cause>>,
}

/// The internal cause of a 5xx, logged and never answered.
#[derive(Debug, Clone)]
pub struct Cause {
    /// The core's error kind (`store`, `keyring`, …), or `server` for a bug of the server.
    pub kind: &'static str,
    /// What failed: the core error's text (which never holds a secret) or the server's own
    /// sentence.
    pub detail: String,
}

/// What [`log_errors`] logs of an error answer: put into the response's extensions by
/// [`ApiError`]'s `IntoResponse`, so each error is logged once, where the request id is known,
/// and never where it is made. It holds no input value and no secret: the status, the code, the
/// field's name and the internal cause.
#[derive(Debug, Clone)]
pub struct LoggedError {
    /// The answer's status.
    pub status: StatusCode,
    /// The stable code.
    pub code: &'static str,
    /// The field at fault, if any.
    pub field: Option<String>,
    /// The internal cause of a 5xx.
    pub cause: Option<Cause>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            cause: None,
        }
    }

    /// Names the input field at fault.
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: the input broke a rule.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message).with_field(field)
    }

    /// 401: no valid credentials.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in or send a valid bearer token",
        )
    }

    /// 403: a state-changing request by cookie from another origin.
    pub fn cross_origin() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "a request signed in by cookie must come from this server's own origin",
        )
    }

    /// 404 for a path that names nothing.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
    }

    /// 412: the `If-Match` version is stale.
    pub fn stale() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "the resource changed since it was read: reload it and apply the edit again",
        )
        .with_field("If-Match")
    }

    /// 428: `If-Match` is required and missing.
    pub fn if_match_required() -> Self {
        Self::new(
            StatusCode::PRECONDITION_REQUIRED,
            "if_match_required",
            "send the version you read in an If-Match header",
        )
        .with_field("If-Match")
    }

    /// 429 with a uniform message and `Retry-After`: `wait` is the limiter's time until the
    /// next attempt may pass, answered in whole seconds rounded up (at least 1).
    pub fn rate_limited(wait: Duration) -> Self {
        let secs = retry_after_secs(wait);
        let mut out = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many attempts: try again in {secs} s"),
        );
        out.retry_after = Some(secs);
        out
    }

    /// 500 for a bug of the server itself; `what` is logged, never returned.
    pub fn internal(what: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not complete the request",
        )
        .with_cause("server", what.to_owned())
    }

    fn with_cause(mut self, kind: &'static str, detail: String) -> Self {
        self.cause = Some(Box::new(Cause { kind, detail }));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message answered (never an internal cause).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The input field at fault, if any.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The seconds answered in `Retry-After`, for a 429.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }
}

/// A wait as `Retry-After` seconds: whole seconds, rounded up, at least 1 (a client told 0
/// would retry at once and be refused again).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    let secs = if wait.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    };
    secs.max(1)
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let (status, code) = match e.kind() {
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::Conflict if e.is_stale() => {
                return Self::stale();
            }
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
            ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ErrorKind::Store => {
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable: try again shortly",
                )
                .with_cause(e.kind().as_str(), e.to_string());
            }
            // Keyring, decryption, I/O and bugs: the cause is logged, never returned.
            _ => {
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not complete the request",
                )
                .with_cause(e.kind().as_str(), e.to_string());
            }
        };
        let mut out = Self::new(status, code, e.message());
        if let Some(field) = e.field() {
            out.field = Some(field.to_owned());
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            // The core's limiter says how long; an error without a wait still gets one.
            out.retry_after = Some(retry_after_secs(e.retry_after().unwrap_or(Duration::ZERO)));
        }
        out
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "the path holds an invalid identifier",
        )
        .with_field("id")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let logged = LoggedError {
            status: self.status,
            code: self.code,
            field: self.field.clone(),
            cause: self.cause.map(|c| *c),
        };
        let detail = ErrorDetail {
            code: self.code,
            message: self.message,
            field: self.field,
            // Filled in by the request-id middleware (see `app`), which knows the id.
            request_id: None,
        };
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: detail.clone(),
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(detail);
        response.extensions_mut().insert(logged);
        response
    }
}

/// Middleware logging every error answer once, from its [`LoggedError`], inside the request's
/// span (so with its request id): a store failure as a warning, any other 5xx as an error with
/// its internal cause, a 4xx at debug level with its code and field (never the message, which
/// may name a value the caller sent).
pub async fn log_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(e) = response.extensions().get::<LoggedError>() {
        let status = e.status.as_u16();
        let field = e.field.as_deref().unwrap_or("-");
        match &e.cause {
            Some(cause) if e.status == StatusCode::SERVICE_UNAVAILABLE => tracing::warn!(
                status,
                code = e.code,
                kind = cause.kind,
                error = %cause.detail,
                "store failed"
            ),
            Some(cause) => tracing::error!(
                status,
                code = e.code,
                kind = cause.kind,
                error = %cause.detail,
                "request failed"
            ),
            None if e.status.is_server_error() => {
                tracing::error!(status, code = e.code, "request failed");
            }
            None => tracing::debug!(status, code = e.code, field, "request refused"),
        }
    }
    response
}

/// The result of every handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::*;

    /// Every event's fields, one line each.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Lines {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            struct Fields<'a>(&'a mut String);
            impl tracing::field::Visit for Fields<'_> {
                fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                    self.0.push_str(&format!("{}={value:?} ", field.name()));
                }
            }
            let mut line = format!("{} ", event.metadata().level());
            event.record(&mut Fields(&mut line));
            self.0.lock().unwrap().push(line);
        }
    }

    /// The lines logged while answering `GET /` with `handler`'s error, through [`log_errors`].
    fn logged(error: fn() -> ApiError) -> (StatusCode, Vec<String>) {
        let lines = Lines::default();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(lines.clone()));
        // As in the canary test: a second live dispatch makes tracing ask this one for
        // callsites another test's thread hit first.
        let _every_dispatch_asked = tracing::Dispatch::new(tracing_subscriber::registry());
        let _logs = tracing::dispatcher::set_default(&dispatch);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let status = runtime.block_on(async move {
            let app = Router::new()
                .route("/", get(move || async move { Err::<(), _>(error()) }))
                .layer(axum::middleware::from_fn(log_errors));
            let request = Request::builder().uri("/").body(Body::empty()).unwrap();
            app.oneshot(request).await.unwrap().status()
        });
        let lines = lines.0.lock().unwrap().clone();
        (status, lines)
    }

    #[test]
    fn an_internal_error_is_logged_once_with_its_cause() {
        let (status, lines) = logged(|| ApiError::internal("the widget broke"));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("ERROR"), "{lines:?}");
        assert!(lines[0].contains("the widget broke"), "{lines:?}");
    }

    #[test]
    fn a_refusal_is_logged_at_debug_without_its_message() {
        let (status, lines) = logged(|| ApiError::invalid("port", "s3cret is not a port"));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("DEBUG"), "{lines:?}");
        assert!(lines[0].contains("port"), "{lines:?}");
        assert!(!lines[0].contains("s3cret"), "{lines:?}");
    }

    #[test]
    fn making_an_error_logs_nothing() {
        let lines = Lines::default();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(lines.clone()));
        let _every_dispatch_asked = tracing::Dispatch::new(tracing_subscriber::registry());
        let _logs = tracing::dispatcher::set_default(&dispatch);
        let error = ApiError::internal("the widget broke");
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(lines.0.lock().unwrap().is_empty());
    }
}
