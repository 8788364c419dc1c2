//! The one error type of the HTTP API and its JSON shape.
//!
//! Every error answer is `{"error": {"code", "message", "field"?, "request_id"?}}` with a status
//! from DESIGN.md's table. Core errors map by [`ErrorKind`], never by their text; internal causes
//! (store, keyring, bugs) are logged with the request id and answered with a generic message, so
//! nothing from inside the process reaches a client. Rejections of axum's extractors (malformed
//! JSON, wrong types, unknown fields, bad path or query values) get the same shape, naming the
//! field where serde says which one. Every 429 carries `Retry-After` (whole seconds, at least
//! 1) from the limiter that refused it.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
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
        if status == StatusCode::TOO_MANY_REQUESTS {
            // The core's limiter says how long; an error without a wait still gets one.
            out.retry_after = Some(retry_after_secs(e.retry_after().unwrap_or(Duration::ZERO)));
        }
        out
    }
}

/// A JSON body that does not fit its request type. The field comes from serde's structured
/// position (`serde_path_to_error`), never from its message text, which can quote the input: a
/// value such as ``missing field `x` `` in a typed field must not come back as a field name.
/// Only two of serde's own errors name a field that is not on the path: a missing and a
/// duplicate field, whose messages *begin* with serde's fixed words and a field name of our
/// types (no input precedes it); the name is taken from there and must look like one.
impl From<serde_path_to_error::Error<serde_json::Error>> for ApiError {
    fn from(e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        use serde_json::error::Category;
        match e.inner().classify() {
            Category::Syntax | Category::Eof => {
                return Self::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    "the body is not valid JSON",
                )
                .with_field("body");
            }
            Category::Io => {
                return Self::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_input",
                    "the body could not be read",
                )
                .with_field("body");
            }
            Category::Data => {}
        }
        let what = e.inner().to_string();
        let mut field = json_path(e.path());
        let named = ["missing field `", "duplicate field `"]
            .iter()
            .find_map(|prefix| what.strip_prefix(prefix))
            .and_then(|rest| rest.split_once('`'))
            .map(|(name, _)| name)
            .filter(|name| {
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        if let Some(name) = named {
            field = Some(match field {
                Some(path) => format!("{path}.{name}"),
                None => name.to_owned(),
            });
        }
        let mut out = Self::new(StatusCode::BAD_REQUEST, "invalid_input", describe(&what));
        // A wrong type for the whole body (an array for an object) has no path.
        out.field = Some(field.unwrap_or_else(|| "body".to_owned()));
        out
    }
}

/// The dotted path (`tls.mode`, `tags[3]`) of a structured serde position; `None` for the
/// body itself.
fn json_path(path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&clean(key));
            }
            Segment::Unknown => {}
        }
    }
    (!out.is_empty()).then_some(out)
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
/// must not come back in an error (S8). What follows "expected" is put in JSON's words by
/// [`json_words`], so no Rust type name reaches a client.
fn describe(what: &str) -> String {
    // serde puts its "expected …" last, after any echo of the input (which may itself hold the
    // word "expected"), and serde_json appends the position.
    let expected = what
        .rsplit_once("expected ")
        .map(|(_, e)| json_words(&clean(e.split(" at line ").next().unwrap_or(e))));
    let (text, with_expected) = if what.contains("unknown field") {
        // The allowed names are ours; the unknown one is given as the field.
        ("unknown field", true)
    } else if what.contains("missing field") {
        ("missing field", false)
    } else if what.contains("duplicate field") {
        ("given more than once", false)
    } else if what.contains("unknown variant") {
        ("not an allowed value", true)
    } else if what.contains("invalid type") {
        ("wrong type", true)
    } else {
        ("invalid value", true)
    };
    match expected {
        Some(e) if with_expected => format!("{text}: expected {e}"),
        _ => text.to_owned(),
    }
}

/// Words of Rust (type names, serde's data-model terms) that must not reach a client.
const RUST_WORDS: &[&str] = &[
    "u8",
    "u16",
    "u32",
    "u64",
    "u128",
    "usize",
    "i8",
    "i16",
    "i32",
    "i64",
    "i128",
    "isize",
    "f32",
    "f64",
    "bool",
    "char",
    "str",
    "String",
    "Vec",
    "Option",
    "struct",
    "enum",
    "tuple",
    "sequence",
    "borrowed",
    "option",
    "unit",
    "map",
    "variant",
    "identifier",
    "nonzero",
    "newtype",
];

/// serde's words for what it expected (a primitive's name, `struct X`, `a sequence`, a list of
/// names in backquotes, …) in the vocabulary of JSON and of the API's documentation: "an integer
/// from 0 to 65535", "a JSON object", "an array", "a string", "one of: a, b". Text already free
/// of Rust words (the API's own expectations, such as "a JSON object") is kept; anything else
/// becomes a neutral phrase rather than a Rust type name.
fn json_words(expected: &str) -> String {
    let e = expected.trim();
    if let Some(names) = backquoted_list(e) {
        return names;
    }
    let range = |lo: i128, hi: i128| format!("an integer from {lo} to {hi}");
    let primitive = |name: &str| -> Option<String> {
        Some(match name {
            "u8" => range(0, u8::MAX.into()),
            "u16" => range(0, u16::MAX.into()),
            "u32" => range(0, u32::MAX.into()),
            "i8" => range(i8::MIN.into(), i8::MAX.into()),
            "i16" => range(i16::MIN.into(), i16::MAX.into()),
            "i32" => range(i32::MIN.into(), i32::MAX.into()),
            "u64" | "u128" | "usize" => "a non-negative integer".to_owned(),
            "i64" | "i128" | "isize" => "an integer".to_owned(),
            "f32" | "f64" => "a number".to_owned(),
            _ => return None,
        })
    };
    if let Some(words) = primitive(e) {
        return words;
    }
    if let Some(name) = e.strip_prefix("a nonzero ") {
        return match name {
            "u8" => range(1, u8::MAX.into()),
            "u16" => range(1, u16::MAX.into()),
            "u32" => range(1, u32::MAX.into()),
            n if n.starts_with('u') => "a positive integer".to_owned(),
            _ => "a non-zero integer".to_owned(),
        };
    }
    let words = match e {
        "a string" | "a borrowed string" | "string" | "a character" | "char" | "path string"
        | "a borrowed path" | "os string" => "a string",
        "a boolean" | "bool" => "true or false",
        "a sequence" | "an empty array" | "byte array" | "a borrowed byte array" => "an array",
        "a map" => "a JSON object",
        "option" => "a value or null",
        "unit" => "null",
        "field identifier" => "a field name",
        "variant identifier" => "one of the documented values",
        _ if e.starts_with("struct ") || e.starts_with("map ") => "a JSON object",
        _ if e.starts_with("tuple struct ")
            || e.starts_with("a tuple of size ")
            || e.starts_with("an array of length ") =>
        {
            "an array"
        }
        _ if e.starts_with("unit struct ") => "null",
        _ if e.starts_with("enum ") || e.contains("enum ") => "one of the documented values",
        _ if e.contains("UUID") => "a UUID string",
        _ if e.contains("OffsetDateTime") || e.contains("RFC3339") => "an RFC 3339 timestamp",
        _ if has_rust_words(e) || e.contains('`') => "a value of the documented type",
        _ => e,
    };
    words.to_owned()
}

/// serde's list of allowed names (`OneOf`: "`a`", "`a` or `b`", "one of `a`, `b`, `c`", "there
/// are no …") as "one of: a, b, c". `None` when `text` is not such a list.
fn backquoted_list(text: &str) -> Option<String> {
    if let Some(what) = text.strip_prefix("there are no ") {
        return Some(format!("nothing: no {what} are accepted here"));
    }
    let list = text.strip_prefix("one of ").unwrap_or(text);
    if !list.starts_with('`') || !list.ends_with('`') {
        return None;
    }
    let mut names = Vec::new();
    for (i, part) in list.split('`').enumerate() {
        // Odd parts are the names; even ones the separators between them.
        if i % 2 == 1 {
            names.push(part);
        } else if !matches!(part, "" | ", " | " or ") {
            return None;
        }
    }
    Some(format!("one of: {}", names.join(", ")))
}

/// Whether `text` holds a word of [`RUST_WORDS`].
fn has_rust_words(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| RUST_WORDS.contains(&word))
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
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(detail);
        response
    }
}

/// The result of every handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(serde_says: &str, expected: &str) {
        let said = describe(serde_says);
        assert_eq!(said, expected, "{serde_says:?}");
        assert!(!has_rust_words(&said), "{said:?}");
    }

    #[test]
    fn serde_words_become_json_words() {
        for (serde_says, expected) in [
            (
                "invalid type: string \"x\", expected u16 at line 1 column 9",
                "wrong type: expected an integer from 0 to 65535",
            ),
            (
                "invalid value: integer `70000`, expected u16",
                "invalid value: expected an integer from 0 to 65535",
            ),
            (
                "invalid type: string \"x\", expected u8",
                "wrong type: expected an integer from 0 to 255",
            ),
            (
                "invalid type: string \"x\", expected u32",
                "wrong type: expected an integer from 0 to 4294967295",
            ),
            (
                "invalid type: map, expected i32",
                "wrong type: expected an integer from -2147483648 to 2147483647",
            ),
            (
                "invalid type: string \"x\", expected i64",
                "wrong type: expected an integer",
            ),
            (
                "invalid type: boolean `true`, expected usize",
                "wrong type: expected a non-negative integer",
            ),
            (
                "invalid type: string \"x\", expected u64",
                "wrong type: expected a non-negative integer",
            ),
            (
                "invalid type: string \"x\", expected f64",
                "wrong type: expected a number",
            ),
            (
                "invalid value: integer `0`, expected a nonzero u16",
                "invalid value: expected an integer from 1 to 65535",
            ),
            (
                "invalid type: integer `1`, expected a string",
                "wrong type: expected a string",
            ),
            (
                "invalid type: integer `1`, expected a borrowed string",
                "wrong type: expected a string",
            ),
            (
                "invalid type: integer `1`, expected a boolean",
                "wrong type: expected true or false",
            ),
            (
                "invalid type: string \"x\", expected a sequence",
                "wrong type: expected an array",
            ),
            (
                "invalid type: sequence, expected struct TlsInput",
                "wrong type: expected a JSON object",
            ),
            (
                "invalid type: sequence, expected a map",
                "wrong type: expected a JSON object",
            ),
            (
                "invalid type: sequence, expected a JSON object",
                "wrong type: expected a JSON object",
            ),
            (
                "invalid type: map, expected tuple struct Pair",
                "wrong type: expected an array",
            ),
            (
                "invalid length 3, expected a tuple of size 2",
                "invalid value: expected an array",
            ),
            (
                "invalid type: map, expected enum Level",
                "wrong type: expected one of the documented values",
            ),
            (
                "invalid type: map, expected variant identifier",
                "wrong type: expected one of the documented values",
            ),
            (
                "invalid type: map, expected field identifier",
                "wrong type: expected a field name",
            ),
            (
                "invalid type: string \"x\", expected unit",
                "wrong type: expected null",
            ),
            (
                "invalid type: string \"x\", expected option",
                "wrong type: expected a value or null",
            ),
            (
                "invalid type: string \"x\", expected a formatted UUID string",
                "wrong type: expected a UUID string",
            ),
            (
                "invalid type: integer `1`, expected an RFC3339-formatted `OffsetDateTime`",
                "wrong type: expected an RFC 3339 timestamp",
            ),
            (
                "invalid type: integer `1`, expected a `Date`",
                "wrong type: expected a value of the documented type",
            ),
            (
                "invalid type: integer `1`, expected something Vec<u8>-like",
                "wrong type: expected a value of the documented type",
            ),
            (
                "unknown variant `x`, expected one of `disable`, `allow`, `prefer`",
                "not an allowed value: expected one of: disable, allow, prefer",
            ),
            (
                "unknown variant `x`, expected `view` or `use`",
                "not an allowed value: expected one of: view, use",
            ),
            (
                "unknown variant `x`, expected `postgres`",
                "not an allowed value: expected one of: postgres",
            ),
            (
                "unknown field `x`, expected one of `name`, `host`",
                "unknown field: expected one of: name, host",
            ),
            ("unknown field `x`, there are no fields", "unknown field"),
            (
                "unknown variant `x`, there are no variants",
                "not an allowed value",
            ),
            ("missing field `host`", "missing field"),
            ("duplicate field `host`", "given more than once"),
            ("trailing characters", "invalid value"),
        ] {
            check(serde_says, expected);
        }
    }

    #[test]
    fn an_echoed_value_never_comes_back() {
        // The input is echoed before serde's own "expected"; only serde's part is kept.
        let said = describe("unknown variant `s3cret, expected u16`, expected `view` or `use`");
        assert_eq!(said, "not an allowed value: expected one of: view, use");
        let said = describe("invalid type: string \"hunter2 expected\", expected i64");
        assert_eq!(said, "wrong type: expected an integer");
    }

    /// Real serde errors of the API's request types, with every field given a wrong type.
    #[test]
    fn request_types_are_described_without_rust_words() {
        use crate::api::connection::{CreateConnection, GrantsBody, PatchConnection};
        let cases = [
            r#"{"name":"a","host":"h","database":"d","username":"u","port":"5432"}"#,
            r#"{"name":"a","host":"h","database":"d","username":"u","port":1.5}"#,
            r#"{"name":"a","host":"h","database":"d","username":"u","port":true}"#,
            r#"{"name":"a","host":"h","database":"d","username":"u","port":99999999999999999999}"#,
            r#"{"name":"a","host":"h","database":"d","username":"u","tags":"x"}"#,
            r#"{"name":"a","host":"h","database":"d","username":"u","tags":[1]}"#,
            r#"{"name":"a","host":"h","database":"d","username":"u","tls":[]}"#,
            r#"{"name":"a","host":"h","database":"d","username":"u","tls":{"mode":1}}"#,
            r#"{"name":"a","host":"h","database":"d","username":"u","monitoring":{"enabled":"y"}}"#,
            r#"{"name":"a","host":"h","database":"d","username":"u","password":5}"#,
            r#"{"name":1,"host":"h","database":"d","username":"u"}"#,
            r#"{"name":"a","host":"h","database":"d","username":"u","nope":1}"#,
        ];
        for body in cases {
            let e = serde_json::from_str::<CreateConnection>(body).unwrap_err();
            let said = describe(&e.to_string());
            assert!(!has_rust_words(&said), "{body}: {e} -> {said:?}");
        }
        for body in [r#"{"port":"x"}"#, r#"{"version":"x"}"#, r#"{"tags":{}}"#] {
            if let Err(e) = serde_json::from_str::<PatchConnection>(body) {
                let said = describe(&e.to_string());
                assert!(!has_rust_words(&said), "{body}: {e} -> {said:?}");
            }
        }
        for body in [
            r#"{"grants":{}}"#,
            r#"{"grants":[{"level":1}]}"#,
            r#"{"grants":[[]]}"#,
        ] {
            let e = serde_json::from_str::<GrantsBody>(body).unwrap_err();
            let said = describe(&e.to_string());
            assert!(!has_rust_words(&said), "{body}: {e} -> {said:?}");
        }
        let e = serde_json::from_str::<CreateConnection>(cases[0]).unwrap_err();
        assert_eq!(describe(&e.to_string()), "wrong type: expected an integer");
    }
}
