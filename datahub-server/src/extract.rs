//! Extractors whose rejections are [`ApiError`]s, so malformed input gets the API's error shape
//! naming the field (SECURITY.md S27).
//!
//! Request bodies must be JSON objects, and so must every nested object of them: serde's derived
//! `Deserialize` also reads a struct from an array, by position, which would let `[]` pass as
//! "no change" and `["disable"]` set the first field. [`ApiJson`] refuses a body that is not an
//! object, and [`object`] / [`objects`] do the same for nested fields.

use std::fmt;
use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
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
        // The field of an error comes from serde's structured position (see `ApiError`'s
        // `From<serde_path_to_error::Error<_>>`), never from its message.
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        let Object(value) = serde_path_to_error::deserialize(&mut deserializer)?;
        deserializer.end().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "the body is not valid JSON",
            )
            .with_field("body")
        })?;
        Ok(Self(value))
    }
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

/// `axum::extract::Path` answering a rejection with [`ApiError`].
#[derive(Debug, Clone, Copy, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` answering a rejection with [`ApiError`].
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

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
    use serde::Deserialize;

    use super::*;

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
