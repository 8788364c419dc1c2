//! The one error type of the HTTP API and its JSON shape.
//!
//! Every error answer is `{"error": {"code", "message", "field"?, "request_id"?}}` with a status
//! from DESIGN.md's table. Core errors map by [`ErrorKind`], never by their text; internal causes
//! (store, keyring, bugs) are logged with the request id and answered with a generic message, so
//! nothing from inside the process reaches a client. Rejections of axum's extractors (malformed
//! JSON, wrong types, unknown fields, bad path or query values) get the same shape, naming the
//! field where serde says which one.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datahub_core::{Error as CoreError, ErrorKind};
use serde::Serialize;

/// The error of every handler.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

/// The JSON body of an error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The detail of an error answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `invalid_input`, `not_found`, `precondition_failed`.
    pub code: &'static str,
    /// A human sentence: what was wrong, never a secret or an internal cause.
    pub message: String,
    /// The input field at fault, as a path such as `tls.mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The request id, also in the `x-request-id` header and every log line of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
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

    /// 429 with a uniform message.
    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many attempts: wait a moment and try again",
        )
    }

    /// 500 for a bug of the server itself; `what` is logged, never returned.
    pub fn internal(what: &str) -> Self {
        tracing::error!(what, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not complete the request",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let (status, code) = match e.kind() {
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::Conflict if e.field() == Some("version") => {
                return Self::stale();
            }
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
            ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ErrorKind::Store => {
                tracing::warn!(kind = e.kind().as_str(), error = %e, "store failed");
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable: try again shortly",
                );
            }
            // Keyring, decryption, I/O and bugs: the cause is logged, never returned.
            _ => {
                tracing::error!(kind = e.kind().as_str(), error = %e, "request failed");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not complete the request",
                );
            }
        };
        let mut out = Self::new(status, code, e.message());
        if let Some(field) = e.field() {
            out.field = Some(field.to_owned());
        }
        out
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => {
                // serde_path_to_error's text: "<path>: <what>"; keep both, the path as the field.
                let text = e.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize the JSON body into the target type: ")
                    .unwrap_or(&text);
                let (field, what) = match detail.split_once(": ") {
                    Some((path, what)) if !path.contains(' ') => (Some(path.to_owned()), what),
                    _ => (None, detail),
                };
                let mut out = Self::new(StatusCode::BAD_REQUEST, "invalid_input", describe(what));
                out.field = match unknown_field(what) {
                    // serde's path of an unknown field ends with that field; the path of a
                    // missing field names the object that lacks it: append the name.
                    Some(name) if what.contains("missing field") => Some(match field {
                        Some(path) if path != "." => format!("{path}.{name}"),
                        _ => name,
                    }),
                    Some(name) => field.filter(|path| path != ".").or(Some(name)),
                    None => field,
                };
                // A wrong type for the whole body (an array for an object) has no path.
                if out.field.is_none() {
                    out.field = Some("body".to_owned());
                }
                out
            }
            JsonRejection::JsonSyntaxError(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "the body is not valid JSON",
            )
            .with_field("body"),
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            )
            .with_field("Content-Type"),
            JsonRejection::BytesRejection(_) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is too large or could not be read",
            )
            .with_field("body"),
            _ => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "the body could not be read",
            )
            .with_field("body"),
        }
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

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        let detail = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        let mut out = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            format!("invalid query parameter: {}", describe(detail)),
        );
        out.field = unknown_field(detail).or_else(|| {
            detail
                .split_once(':')
                .map(|(f, _)| f.trim().to_owned())
                .filter(|f| !f.is_empty() && !f.contains(' '))
        });
        out
    }
}

/// serde's description of a bad value, without the value: a password typed into the wrong field
/// must not come back in an error (S8). What follows "expected" is our own vocabulary.
fn describe(what: &str) -> String {
    let expected = what
        .split_once("expected ")
        .map(|(_, e)| clean(e.split(" at line ").next().unwrap_or(e)));
    let text = if what.contains("unknown field") {
        "unknown field".to_owned()
    } else if what.contains("missing field") {
        "missing field".to_owned()
    } else if what.contains("duplicate field") {
        "given more than once".to_owned()
    } else if what.contains("unknown variant") {
        match &expected {
            Some(e) => format!("not an allowed value: expected {e}"),
            None => "not an allowed value".to_owned(),
        }
    } else if what.contains("invalid type") {
        match &expected {
            Some(e) => format!("wrong type: expected {e}"),
            None => "wrong type".to_owned(),
        }
    } else {
        match &expected {
            Some(e) => format!("invalid value: expected {e}"),
            None => "invalid value".to_owned(),
        }
    };
    if what.contains("unknown field") {
        // The allowed names are ours; the unknown one is given as the field.
        return match what.split_once("expected ") {
            Some((_, e)) => format!(
                "{text}: expected {}",
                clean(e.split(" at line ").next().unwrap_or(e))
            ),
            None => text,
        };
    }
    text
}

/// The field serde names in "unknown field `x`", "missing field `x`" or "duplicate field `x`".
fn unknown_field(text: &str) -> Option<String> {
    let start = text.find('`')? + 1;
    let len = text[start..].find('`')?;
    let name = &text[start..start + len];
    let field = (text.contains("unknown field")
        || text.contains("missing field")
        || text.contains("duplicate field"))
    .then(|| name.to_owned())?;
    Some(clean(&field))
}

/// Bounded, printable text: an echo of input never carries control characters or runs long.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
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
        response.extensions_mut().insert(detail);
        response
    }
}

/// The result of every handler.
pub type ApiResult<T> = Result<T, ApiError>;
