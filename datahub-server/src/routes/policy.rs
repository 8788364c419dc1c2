//! The target policy: which addresses connections may reach (allowed and denied CIDRs; the
//! always-denied ranges apply whatever it says) and the lowest TLS mode a connection may use.
//! Everyone signed in may read it (the connection form shows it); only admins change it.

use axum::Json;
use axum::extract::State;
use datahub_core::model::TargetPolicy;
use datahub_core::model::TlsMode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Authed;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The most CIDRs in each list.
const MAX_CIDRS: usize = 1_000;

/// `/api/v1/policy`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_policy, put_policy))
}

/// A TLS mode, with libpq's meaning of `sslmode`, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MinTlsMode {
    /// Plaintext only.
    Disable,
    /// Plaintext first, TLS if the server insists.
    Allow,
    /// TLS if the server offers it; the certificate is not verified.
    Prefer,
    /// TLS always; the certificate is not verified.
    Require,
    /// TLS always; the certificate must chain to a trusted CA.
    VerifyCa,
    /// TLS always; the certificate must chain to a trusted CA and match the host name.
    VerifyFull,
}

// By hand rather than derived: serde_json reports a derived enum given a number or an object
// as a syntax error, which names no field.
impl<'de> Deserialize<'de> for MinTlsMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.parse::<TlsMode>() {
            Ok(mode) => Ok(mode.into()),
            Err(_) => Err(serde::de::Error::unknown_variant(
                &text,
                &[
                    "disable",
                    "allow",
                    "prefer",
                    "require",
                    "verify-ca",
                    "verify-full",
                ],
            )),
        }
    }
}

impl From<TlsMode> for MinTlsMode {
    fn from(mode: TlsMode) -> Self {
        match mode {
            TlsMode::Disable => Self::Disable,
            TlsMode::Allow => Self::Allow,
            TlsMode::Prefer => Self::Prefer,
            TlsMode::Require => Self::Require,
            TlsMode::VerifyCa => Self::VerifyCa,
            TlsMode::VerifyFull => Self::VerifyFull,
        }
    }
}

impl From<MinTlsMode> for TlsMode {
    fn from(mode: MinTlsMode) -> Self {
        match mode {
            MinTlsMode::Disable => Self::Disable,
            MinTlsMode::Allow => Self::Allow,
            MinTlsMode::Prefer => Self::Prefer,
            MinTlsMode::Require => Self::Require,
            MinTlsMode::VerifyCa => Self::VerifyCa,
            MinTlsMode::VerifyFull => Self::VerifyFull,
        }
    }
}

/// The target policy. A `PUT` replaces all of it, so every field is required.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Networks a target address must fall in (`127.0.0.0/8`, `::1/128`, or a bare address);
    /// empty: any address not denied. Stored normalised.
    pub allow_cidrs: Vec<String>,
    /// Networks a target address must not fall in, checked after `allow_cidrs`.
    pub deny_cidrs: Vec<String>,
    /// The lowest TLS mode a connection may use. Default: `require`.
    pub min_tls_mode: MinTlsMode,
}

impl From<TargetPolicy> for Policy {
    fn from(policy: TargetPolicy) -> Self {
        Self {
            allow_cidrs: policy.allow_cidrs,
            deny_cidrs: policy.deny_cidrs,
            min_tls_mode: policy.min_tls_mode.into(),
        }
    }
}

impl Policy {
    fn into_core(self) -> ApiResult<TargetPolicy> {
        for (field, list) in [
            ("allow_cidrs", &self.allow_cidrs),
            ("deny_cidrs", &self.deny_cidrs),
        ] {
            if list.len() > MAX_CIDRS {
                return Err(ApiError::invalid(
                    field,
                    format!("must hold at most {MAX_CIDRS} networks"),
                ));
            }
        }
        Ok(TargetPolicy {
            allow_cidrs: self.allow_cidrs,
            deny_cidrs: self.deny_cidrs,
            min_tls_mode: self.min_tls_mode.into(),
        })
    }
}

/// The target policy.
#[utoipa::path(
    get,
    path = "/api/v1/policy",
    tag = "policy",
    responses(
        (status = 200, body = Policy),
        (status = 401, description = "not signed in", body = ErrorBody)
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
        (status = 401, description = "not signed in", body = ErrorBody),
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
