//! serde's errors in the API's words: the field at fault from serde's structured position, and
//! a message without the input's value or a Rust type name.
//!
//! Request bodies (serde_json) and query strings (serde_urlencoded) are both read under
//! `serde_path_to_error`, so the field of an error is the path serde was at (`tls.mode`,
//! `tags[3]`, `per_page`), never a name parsed out of the message, which can quote the input:
//! a value such as ``missing field `x` `` in a typed field must not come back as a field name.
//! Only two of serde's own errors name a field that is not on the path: a missing and a
//! duplicate field, whose messages *begin* with serde's fixed words and a field name of our
//! types (no input precedes it); the name is taken from there and must look like one.
//!
//! The message keeps serde's kind of error ("wrong type", "unknown field", …) and what was
//! expected, in JSON's words, and drops the value (S8: a password typed into the wrong field
//! must not come back).

use axum::http::StatusCode;
use serde_path_to_error::{Path, Segment};

use crate::error::ApiError;

/// A JSON body that does not fit its request type: 400 naming the field (`body` for the whole
/// body), or `malformed_json` when it is not JSON at all.
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
        // A wrong type for the whole body (an array for an object) has no path.
        let field = field_of(e.path(), &what).unwrap_or_else(|| "body".to_owned());
        Self::invalid(field, describe(&what))
    }
}

/// A query string that does not fit its parameters: 400 naming the parameter.
impl From<serde_path_to_error::Error<serde_urlencoded::de::Error>> for ApiError {
    fn from(e: serde_path_to_error::Error<serde_urlencoded::de::Error>) -> Self {
        let what = e.inner().to_string();
        let out = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            format!("invalid query parameter: {}", describe(&what)),
        );
        match field_of(e.path(), &what) {
            Some(field) => out.with_field(field),
            None => out,
        }
    }
}

/// The field of a serde error: the dotted path of its position, completed by the name a
/// missing or duplicate field's message begins with (see the module documentation). `None`
/// for the input as a whole.
fn field_of(path: &Path, what: &str) -> Option<String> {
    let field = json_path(path);
    let named = ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| what.strip_prefix(prefix))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    match (field, named) {
        (Some(path), Some(name)) => Some(format!("{path}.{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        (field, None) => field,
    }
}

/// The dotted path (`tls.mode`, `tags[3]`) of a structured serde position; `None` for the
/// input itself.
fn json_path(path: &Path) -> Option<String> {
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

/// Bounded, printable text: an echo of input never carries control characters or runs long.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

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

    /// A query string's error names the parameter from serde's path, and never echoes a value.
    #[test]
    fn query_errors_name_the_parameter() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Params {
            page: Option<u32>,
            q: Option<String>,
        }
        let error = |query: &str| {
            let parse = form_urlencoded::parse(query.as_bytes());
            let deserializer = serde_urlencoded::Deserializer::new(parse);
            let e = serde_path_to_error::deserialize::<_, Params>(deserializer).unwrap_err();
            ApiError::from(e)
        };
        let e = error("page=s3cret");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.field(), Some("page"));
        let e = error("q=a&s3cret%60x=1");
        assert_eq!(e.field(), Some("s3cret`x"));
        let e = error("q=a&q=b");
        assert_eq!(e.field(), Some("q"));
        let e = error("page=99999999999");
        assert_eq!(e.field(), Some("page"));
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
