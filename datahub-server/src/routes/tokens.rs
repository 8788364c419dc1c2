//! API tokens: a signed-in user creates, lists and revokes their own (`Authorization: Bearer
//! dh_…`). The token text is in the answer to its creation only; the store keeps its SHA-256.
//! Admins may revoke anyone's token by id.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use datahub_core::TokenId;
use datahub_core::hub::{NewApiToken, TokenInfo};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Authed;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;

/// `/api/v1/tokens`, `/api/v1/tokens/{id}`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// An API token as listed: never the token text.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiTokenInfo {
    /// Id.
    pub id: Uuid,
    /// Its label.
    pub name: String,
    /// Whether it may only read.
    pub read_only: bool,
    /// Created (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When it stops working, if ever (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was revoked, if it was (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    /// When it was last used (RFC 3339, UTC), `null` before its first use. Recorded at most
    /// once a minute, so it may lag the latest use by up to a minute.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<OffsetDateTime>,
}

impl From<TokenInfo> for ApiTokenInfo {
    fn from(info: TokenInfo) -> Self {
        Self {
            id: *info.id.as_uuid(),
            name: info.name,
            read_only: info.read_only,
            created_at: info.created_at,
            expires_at: info.expires_at,
            revoked_at: info.revoked_at,
            last_used_at: info.last_used_at,
        }
    }
}

/// A token to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A label: 1–64 characters, no control characters.
    pub name: String,
    /// Lifetime in days, 1 to 3,650. Default: no expiry.
    #[serde(default, deserialize_with = "crate::extract::whole_u32")]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
    /// Whether it may only read (no create, change or delete). Default: false.
    #[serde(default)]
    pub read_only: bool,
}

/// A created token: the only answer that carries the token text. Keep it now: it cannot be
/// shown again. Documentation only; the handler answers with [`CreatedTokenBody`], which reads
/// the token out of its secret type at the last moment.
#[derive(Debug, ToSchema)]
pub struct CreatedToken {
    /// Id (to revoke it).
    pub id: Uuid,
    /// The token, for `Authorization: Bearer <token>`. Shown this once.
    #[schema(format = Password)]
    pub token: String,
    /// Its label.
    pub name: String,
    /// Whether it may only read.
    pub read_only: bool,
    /// Created (RFC 3339, UTC).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When it stops working, if ever (RFC 3339, UTC).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// A new token as the core made it, serialized as [`CreatedToken`]: the token stays in its
/// secret type (zeroized on drop, redacted `Debug`) until the moment the answer is written
/// (S34), like [`RevealBody`](crate::api::connection::RevealBody).
#[derive(Debug)]
pub struct CreatedTokenBody(pub NewApiToken);

impl Serialize for CreatedTokenBody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (info, token) = (&self.0.info, &self.0.token);
        let mut s = serializer.serialize_struct("CreatedToken", 6)?;
        s.serialize_field("id", info.id.as_uuid())?;
        s.serialize_field("token", token.expose_secret())?;
        s.serialize_field("name", &info.name)?;
        s.serialize_field("read_only", &info.read_only)?;
        s.serialize_field("created_at", &Rfc3339Field(info.created_at))?;
        s.serialize_field("expires_at", &info.expires_at.map(Rfc3339Field))?;
        s.end()
    }
}

/// A timestamp serialized as RFC 3339, as the derived types do with `time::serde::rfc3339`.
struct Rfc3339Field(OffsetDateTime);

impl Serialize for Rfc3339Field {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        time::serde::rfc3339::serialize(&self.0, serializer)
    }
}

/// The caller's own tokens, revoked ones included.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "tokens",
    responses(
        (status = 200, body = [ApiTokenInfo]),
        (status = 401, description = "not signed in", body = ErrorBody)
    )
)]
async fn list_tokens(
    State(state): State<AppState>,
    Authed(principal): Authed,
) -> ApiResult<Json<Vec<ApiTokenInfo>>> {
    let tokens = state.hub().tokens(&principal).await?;
    Ok(Json(tokens.into_iter().map(ApiTokenInfo::from).collect()))
}

/// Creates a token acting as the caller; the answer carries the token text this once.
///
/// From a signed-in session the lifetime is as asked (no expiry by default). Through another
/// API token, the new token expires no later than that one, and a read-only token creates none
/// (403). A token keeps working when its user changes their password (sessions end); it stops
/// when revoked, when it expires, or when its user is disabled, which revokes it for good.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "tokens",
    request_body = NewToken,
    responses(
        (status = 201, body = CreatedToken),
        (status = 400, description = "invalid input, naming the field", body = ErrorBody),
        (status = 401, description = "not signed in", body = ErrorBody),
        (status = 403, description = "a read-only token", body = ErrorBody)
    )
)]
async fn create_token(
    State(state): State<AppState>,
    Authed(principal): Authed,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<Response> {
    let new = state
        .hub()
        .create_token(&principal, &body.name, body.expires_in_days, body.read_only)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedTokenBody(new))).into_response())
}

/// Revokes a token: one's own, or anyone's for admins. It is refused from the next request on.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{id}",
    tag = "tokens",
    params(("id" = Uuid, Path, description = "the token's id")),
    responses(
        (status = 204, description = "revoked"),
        (status = 400, description = "the id is not a UUID", body = ErrorBody),
        (status = 401, description = "not signed in", body = ErrorBody),
        (status = 403, description = "another user's token, or a read-only token", body = ErrorBody),
        (status = 404, description = "no such token", body = ErrorBody)
    )
)]
async fn revoke_token(
    State(state): State<AppState>,
    Authed(principal): Authed,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    state
        .hub()
        .revoke_token(&principal, TokenId::from_uuid(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
