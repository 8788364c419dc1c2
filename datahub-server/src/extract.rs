//! Extractors whose rejections are [`ApiError`]s, so malformed input gets the API's error shape
//! naming the field (SECURITY.md S27).
//!
//! Request bodies must be JSON objects, and so must every nested object of them: serde's derived
//! `Deserialize` also reads a struct from an array, by position, which would let `[]` pass as
//! "no change" and `["disable"]` set the first field. [`ApiJson`] refuses a body that is not an
//! object, and [`object`] / [`objects`] do the same for nested fields.
//!
//! The other parts of a request: [`ApiQuery`] reads the query string, [`PathId`] the `{id}` of
//! a path as a core id, [`IfMatch`] the version an edit or a deletion names.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, Deserializer, MapAccess, Unexpected, Visitor};

use crate::error::ApiError;

/// A JSON body, rejected with an [`ApiError`] (400 naming the field, 415, 413), accepting
/// only a JSON object. Field paths come from `serde_path_to_error`'s structured position.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            )
            .with_field("Content-Type"));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is too large or could not be read",
            )
            .with_field("body")
        })?;
        json_body(&bytes).map(Self)
    }
}

/// A JSON request body as `T`, read as [`ApiJson`] reads it (a JSON object, nothing after it,
/// errors naming the field from serde's structured position): for adapters that take the API's
/// bodies without HTTP (the Python module's local mode), so both validate identically.
///
/// # Errors
/// 400 `malformed_json` or `invalid_input` naming the field, as [`ApiJson`].
pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // The field of an error comes from serde's structured position (see `crate::reject`),
    // never from its message.
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let Object(value) = serde_path_to_error::deserialize(&mut deserializer)?;
    deserializer.end().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the body is not valid JSON",
        )
        .with_field("body")
    })?;
    Ok(value)
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A `T` read only from a JSON object.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        object(deserializer).map(Object)
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

/// For `#[serde(deserialize_with = "object")]`: reads a nested struct only from a JSON object.
///
/// # Errors
/// "invalid type: …, expected a JSON object" for anything else, and `T`'s own errors.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    deserializer.deserialize_map(ObjectVisitor(PhantomData))
}

/// For `#[serde(deserialize_with = "objects")]`: a list whose items are JSON objects.
///
/// # Errors
/// As [`object`], for any item.
pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    let items = Vec::<Object<T>>::deserialize(deserializer)?;
    Ok(items.into_iter().map(|Object(t)| t).collect())
}

/// The `{id}` of a path as a core id ([`ConnectionId`](datahub_core::ConnectionId),
/// [`UserId`](datahub_core::UserId), [`TeamId`](datahub_core::TeamId),
/// [`TokenId`](datahub_core::TokenId)): 400 on `id` when it is not a UUID.
#[derive(Debug, Clone, Copy)]
pub struct PathId<T>(pub T);

impl<S, T> FromRequestParts<S> for PathId<T>
where
    S: Send + Sync,
    T: FromStr,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await?;
        T::from_str(&raw).map(Self).map_err(|_| not_an_id())
    }
}

/// [`PathId`]'s rejection: 400 on `id`.
pub fn not_an_id() -> ApiError {
    ApiError::invalid("id", "must be a UUID")
}

/// The version named by `If-Match`: `"<version>"` (or a bare number), as every edit and
/// deletion of a versioned resource needs (SECURITY.md S26).
///
/// Rejected with 428 when missing, and 400 on `If-Match` when it is not one version (a list,
/// `*`, a weak tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfMatch(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if_match(&parts.headers).map(Self)
    }
}

/// The version named by `If-Match` in `headers`.
fn if_match(headers: &HeaderMap) -> Result<u64, ApiError> {
    let mut values = headers.get_all(header::IF_MATCH).iter();
    let Some(value) = values.next() else {
        return Err(ApiError::if_match_required());
    };
    let malformed = || {
        ApiError::invalid(
            "If-Match",
            "must be the one ETag read, e.g. \"3\" (no list, no *, no weak tag)",
        )
    };
    if values.next().is_some() {
        return Err(malformed());
    }
    let text = value.to_str().map_err(|_| malformed())?.trim();
    let digits = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    digits.parse::<u64>().map_err(|_| malformed())
}

/// A query string read into `T` (as `axum::extract::Query` reads it), rejected with an
/// [`ApiError`] naming the parameter from serde's structured position (see [`crate::reject`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        query_params(parts.uri.query().unwrap_or_default()).map(Self)
    }
}

/// A query string (without `?`) as `T`, read as [`ApiQuery`] reads it: for adapters that take
/// the API's parameters without HTTP (the Python module's local mode).
///
/// # Errors
/// 400 `invalid_input` naming the parameter, as [`ApiQuery`].
pub fn query_params<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    Ok(serde_path_to_error::deserialize(deserializer)?)
}

/// For `#[serde(default, deserialize_with = "whole_i64")]` on an `Option<i64>`: a JSON integer,
/// or a number without a fractional part (`5432.0`: the same number, to JSON and to the
/// OpenAPI document's `integer`); `null` is `None`. Anything else is refused as serde refuses
/// it for an `i64`, with the same message.
///
/// # Errors
/// "invalid type: …, expected i64" for a fraction, a number out of range, or another type.
pub fn whole_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(WholeVisitor::<i64>("i64", PhantomData))
}

/// As [`whole_i64`], for an `Option<u32>` ("expected u32").
///
/// # Errors
/// As [`whole_i64`].
pub fn whole_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    deserializer.deserialize_option(WholeVisitor::<u32>("u32", PhantomData))
}

/// Reads a whole number into `T`; `.0` names the type as serde's own messages do.
struct WholeVisitor<T>(&'static str, PhantomData<T>);

impl<'de, T: TryFrom<i64> + TryFrom<u64>> Visitor<'de> for WholeVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let name = self.0;
        deserializer.deserialize_any(WholeVisitor::<T>(name, PhantomData))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        T::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        T::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // Every whole f64 within ±2^63 converts exactly; beyond, it is out of any range here.
        let whole =
            v.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&v);
        let n = v as i64;
        match T::try_from(n) {
            Ok(t) if whole => Ok(Some(t)),
            _ => Err(E::invalid_type(Unexpected::Float(v), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde::Deserialize;

    use super::*;

    #[test]
    fn if_match_takes_one_version() {
        let check = |value: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(v) = value {
                headers.insert(header::IF_MATCH, HeaderValue::from_str(v).unwrap());
            }
            if_match(&headers).map_err(|e| e.status())
        };
        assert_eq!(check(Some("\"3\"")), Ok(3));
        assert_eq!(check(Some(" 12 ")), Ok(12));
        assert_eq!(check(None), Err(StatusCode::PRECONDITION_REQUIRED));
        for bad in [
            "*",
            "W/\"3\"",
            "\"3\", \"4\"",
            "\"-1\"",
            "\"\"",
            "\"3",
            "1234567890123456789",
        ] {
            assert_eq!(check(Some(bad)), Err(StatusCode::BAD_REQUEST), "{bad}");
        }
    }

    #[derive(Debug, Deserialize)]
    struct Whole {
        #[serde(default, deserialize_with = "whole_i64")]
        n: Option<i64>,
        #[serde(default, deserialize_with = "whole_u32")]
        days: Option<u32>,
    }

    fn read(json: &str) -> Result<Whole, String> {
        serde_json::from_str::<Whole>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn a_whole_number_is_an_integer_with_or_without_a_fraction_point() {
        assert_eq!(read(r#"{"n": 5432}"#).unwrap().n, Some(5432));
        assert_eq!(read(r#"{"n": 5432.0}"#).unwrap().n, Some(5432));
        assert_eq!(read(r#"{"n": -7.0, "days": 3.0}"#).unwrap().days, Some(3));
        assert_eq!(read(r#"{"n": null}"#).unwrap().n, None);
        assert_eq!(read("{}").unwrap().n, None);
        for bad in [
            r#"{"n": 54.32}"#,
            r#"{"n": "5432"}"#,
            r#"{"n": true}"#,
            r#"{"n": [1]}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": 99999999999999999999.0}"#,
        ] {
            assert!(read(bad).unwrap_err().contains("expected i64"), "{bad}");
        }
        for bad in [
            r#"{"days": -1}"#,
            r#"{"days": 4294967296.0}"#,
            r#"{"days": 0.5}"#,
        ] {
            assert!(read(bad).unwrap_err().contains("expected u32"), "{bad}");
        }
    }
}
