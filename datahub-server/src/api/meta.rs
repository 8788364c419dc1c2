//! The JSON of liveness and readiness probes.

use serde::Serialize;

/// A probe's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `ok`.
    pub status: &'static str,
}
