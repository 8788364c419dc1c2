//! The JSON of every error answer: `{"error": {"code", "message", "field"?, "request_id"?}}`.

use serde::Serialize;

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
