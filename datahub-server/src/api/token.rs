//! The JSON of API tokens: a token as listed (never its text), a token to create, and the
//! answer to its creation, the one answer that carries the token text.

use datahub_core::hub::NewApiToken;
use datahub_core::model::TokenInfo;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

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

/// A token as the CLI lists them, across users: the API's [`ApiTokenInfo`] and the user it acts
/// as (the API lists the caller's own tokens only, so it needs neither).
#[derive(Debug, Serialize)]
pub struct UserTokenInfo {
    /// The token, as the API shows it.
    #[serde(flatten)]
    pub token: ApiTokenInfo,
    /// The user it acts as.
    pub user_id: Uuid,
    /// That user's name; `null` when the user is no longer in the store.
    pub username: Option<String>,
}

/// A token the CLI created for a user: the API's [`CreatedToken`] and the user it acts as.
#[derive(Debug, Serialize)]
pub struct CreatedUserTokenBody {
    /// The token, as the API answers its creation (the token text included).
    #[serde(flatten)]
    pub token: CreatedTokenBody,
    /// The user it acts as.
    pub user_id: Uuid,
}
