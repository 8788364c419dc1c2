//! Extractors whose rejections are [`ApiError`]s, so malformed input gets the API's error shape
//! naming the field (SECURITY.md S27).

use axum::extract::FromRequest;

use crate::error::ApiError;

/// `axum::Json`, rejected with an [`ApiError`] (400 naming the field, 415, 413).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);
