//! The rules the server checks its input against, stated in the OpenAPI document: lengths,
//! patterns, ranges and allowed values of every body field and query parameter, and the form of
//! `If-Match`, so that what the document calls valid is what the server accepts (and the other
//! way round). Each rule is the core's validator (`datahub_core::model`, `auth`, `hub`) or the
//! server's own parsing, written as JSON Schema.
//!
//! They are applied to the generated document as JSON, by schema and property name: the request
//! types stay plain serde types, and the unit test below fails when a rule names a schema,
//! property or parameter the document does not have.
//!
//! Limits in bytes (database and user names: 63; passwords: 1,024) are stated as lengths in
//! characters, which JSON Schema counts; the field's description says bytes.

use serde_json::{Value, json};

/// C0 and C1 controls (Rust's `char::is_control`), as a regex class body.
const CC: &str = "\u{0}-\u{1f}\u{7f}-\u{9f}";

/// `datahub_core::model::text`'s refused characters: controls in the wide sense (C0, C1, line
/// and paragraph separators, U+FFFE, U+FFFF), bidirectional controls and invisible formatting
/// characters, as a regex class body.
const REFUSED: &str = "\u{0}-\u{1f}\u{7f}-\u{9f}\u{2028}\u{2029}\u{fffe}\u{ffff}\
    \u{202a}-\u{202e}\u{2066}-\u{2069}\u{200e}\u{200f}\u{61c}\
    \u{ad}\u{34f}\u{600}-\u{605}\u{6dd}\u{70f}\u{890}-\u{891}\u{8e2}\u{115f}-\u{1160}\
    \u{17b4}-\u{17b5}\u{180b}-\u{180f}\u{200b}-\u{200d}\u{2060}-\u{2064}\u{206a}-\u{206f}\
    \u{3164}\u{feff}\u{ffa0}\u{fff9}-\u{fffb}\u{110bd}\u{110cd}\u{13430}-\u{1343f}\
    \u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}";

/// As [`REFUSED`], less newline and tab (a description's lines).
const REFUSED_BUT_LINES: &str = "\u{0}-\u{8}\u{b}-\u{1f}\u{7f}-\u{9f}\u{2028}\u{2029}\u{fffe}\u{ffff}\
    \u{202a}-\u{202e}\u{2066}-\u{2069}\u{200e}\u{200f}\u{61c}\
    \u{ad}\u{34f}\u{600}-\u{605}\u{6dd}\u{70f}\u{890}-\u{891}\u{8e2}\u{115f}-\u{1160}\
    \u{17b4}-\u{17b5}\u{180b}-\u{180f}\u{200b}-\u{200d}\u{2060}-\u{2064}\u{206a}-\u{206f}\
    \u{3164}\u{feff}\u{ffa0}\u{fff9}-\u{fffb}\u{110bd}\u{110cd}\u{13430}-\u{1343f}\
    \u{1bca0}-\u{1bca3}\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}";

/// Rust's `char::is_whitespace` (Unicode `White_Space`), as a regex class body.
const WS: &str =
    "\t-\r \u{85}\u{a0}\u{1680}\u{2000}-\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}";

/// The invisible characters a token's label may not hold (`datahub_core::audit`), with C0/C1.
const LABEL_REFUSED: &str =
    "\u{0}-\u{1f}\u{7f}-\u{9f}\u{61c}\u{200b}-\u{200f}\u{2028}-\u{202e}\u{2060}-\u{2069}\u{feff}";

/// An IPv4 address as Rust reads one: four decimal numbers 0–255 without leading zeros.
const IPV4: &str = r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";

/// An IPv6 address (RFC 4291 text forms, an IPv4 tail allowed), without a zone id.
fn ipv6() -> String {
    let h = "[0-9A-Fa-f]{1,4}";
    [
        format!("(?:{h}:){{7}}{h}"),
        format!("(?:{h}:){{1,7}}:"),
        format!("(?:{h}:){{1,6}}:{h}"),
        format!("(?:{h}:){{1,5}}(?::{h}){{1,2}}"),
        format!("(?:{h}:){{1,4}}(?::{h}){{1,3}}"),
        format!("(?:{h}:){{1,3}}(?::{h}){{1,4}}"),
        format!("(?:{h}:){{1,2}}(?::{h}){{1,5}}"),
        format!("{h}:(?::{h}){{1,6}}"),
        format!(":(?:(?::{h}){{1,7}}|:)"),
        format!("(?:{h}:){{6}}{IPV4}"),
        format!("(?:{h}:){{1,5}}:{IPV4}"),
        format!("(?:{h}:){{1,4}}(?::{h}){{1,1}}:{IPV4}"),
        format!("::(?:{h}:){{0,5}}{IPV4}"),
    ]
    .map(|alt| format!("(?:{alt})"))
    .join("|")
}

/// A connection's host (`datahub_core::model::Host`): a name of dot-separated labels of
/// letters, digits, `-` and `_` (not starting or ending with `-`, the last not a number nor
/// `0x…`), an IPv4 address, or an IPv6 address, bracketed or not.
fn host() -> String {
    let label = "[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?";
    // The last label is not read as a number: it holds a letter or `_` and is not `0x…` hex.
    let last = "(?!0[xX][0-9A-Fa-f]*$)(?=[A-Za-z0-9_-]*[A-Za-z_])[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?";
    let v6 = ipv6();
    format!("^(?:(?:{label}\\.)*{last}|{IPV4}|{v6}|\\[(?:{v6})\\])$")
}

/// A whole number from a query string (Rust's `u32` parse: an optional `+`, leading zeros) in
/// `1..=max`, or the empty string (the default).
fn query_number(max: &str) -> Value {
    json!({"type": "string", "pattern": format!("^(?:|\\+?0*(?:{max}))$")})
}

/// 1 to 4,294,967,295 (`u32::MAX`) in decimal.
const TO_U32_MAX: &str = "[1-9][0-9]{0,8}|[1-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}|\
    4294[0-8][0-9]{5}|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}|42949672[0-8][0-9]|429496729[0-5]";

/// The rules of body fields: (schema, property, what to add to its schema).
fn fields() -> Vec<(&'static str, &'static str, Value)> {
    let connection_name = json!({"pattern": "^[a-z0-9][a-z0-9_.-]*$", "maxLength": 64});
    let description = json!({
        "pattern": format!("^(?:[^{REFUSED_BUT_LINES}]|\r\n)*$"),
        "maxLength": 1000,
    });
    let engine = json!({"enum": ["postgres", null]});
    let host = json!({"pattern": host(), "maxLength": 253});
    let port = json!({"minimum": 1, "maximum": 65535});
    let identifier = json!({
        "pattern": format!("^[^{WS}{REFUSED}](?:[^{REFUSED}]*[^{WS}{REFUSED}])?$"),
        "maxLength": 63,
    });
    let password = json!({"pattern": "^[^\u{0}]+$", "minLength": 1, "maxLength": 1024});
    let tag = json!({"pattern": "^[A-Za-z0-9][A-Za-z0-9_.:/-]*$", "maxLength": 40});
    let tags = json!({"maxItems": 20, "items": tag});
    let tls_mode = json!({
        "enum": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full", null]
    });
    let channel_binding = json!({"enum": ["disable", "prefer", "require", null]});
    let timeout = json!({"minimum": 1, "maximum": 5000});
    let application_name = json!({"pattern": "^[ -~]*$", "maxLength": 63});
    let interval = json!({"minimum": 10, "maximum": 86400});
    let slow = json!({"minimum": 1, "maximum": 60000});
    let account = json!({"pattern": "^[a-z0-9][a-z0-9_.@-]*$", "maxLength": 64});
    let new_password = json!({
        "pattern": format!("[^{WS}]"),
        "minLength": 12,
        "maxLength": 1024,
    });
    let cidr = json!({
        "pattern": format!(
            "^(?:{IPV4}(?:/(?:3[0-2]|[12]?[0-9]))?|(?:{})(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$",
            ipv6()
        ),
    });
    let mut out = Vec::new();
    for schema in ["CreateConnection", "DraftTest", "PatchConnection"] {
        out.extend([
            (schema, "description", description.clone()),
            (schema, "engine", engine.clone()),
            (schema, "host", host.clone()),
            (schema, "port", port.clone()),
            (schema, "database", identifier.clone()),
            (schema, "username", identifier.clone()),
            (schema, "tags", tags.clone()),
        ]);
    }
    out.extend([
        ("CreateConnection", "password", password.clone()),
        ("PatchConnection", "password", password),
        // Blank with `id`: the saved connection's password (see `DraftTest` in `schemas`).
        (
            "DraftTest",
            "password",
            json!({"pattern": "^[^\u{0}]*$", "maxLength": 1024}),
        ),
    ]);
    out.extend([
        ("CreateConnection", "name", connection_name.clone()),
        ("PatchConnection", "name", connection_name),
        (
            "DraftTest",
            "name",
            json!({"pattern": "^(?:[a-z0-9][a-z0-9_.-]*)?$", "maxLength": 64}),
        ),
    ]);
    for schema in ["TlsInput", "TlsPatchInput"] {
        out.extend([
            (schema, "mode", tls_mode.clone()),
            (schema, "channel_binding", channel_binding.clone()),
        ]);
    }
    for schema in ["OptionsInput", "OptionsPatchInput"] {
        out.extend([
            (schema, "connect_timeout_ms", timeout.clone()),
            (schema, "application_name", application_name.clone()),
        ]);
    }
    out.extend([
        ("MonitoringInput", "interval_s", interval),
        ("MonitoringInput", "slow_ms", slow),
        ("GrantsBody", "grants", json!({"maxItems": 1000})),
        ("GrantItem", "level", json!({"enum": ["view", "use", "manage"]})),
        ("NewUser", "username", account.clone()),
        ("NewUser", "password", new_password.clone()),
        ("UserChange", "password", new_password.clone()),
        ("OwnPasswordChange", "new_password", new_password),
        ("TeamInput", "name", account),
        ("TeamInput", "members", json!({"maxItems": 10000})),
        (
            "NewToken",
            "name",
            json!({
                "pattern": format!(
                    "^[{WS}]*[^{WS}{LABEL_REFUSED}](?:[^{LABEL_REFUSED}]{{0,62}}[^{WS}{LABEL_REFUSED}])?[{WS}]*$"
                )
            }),
        ),
        ("LoginRequest", "username", json!({"maxLength": 1024})),
        ("LoginRequest", "password", json!({"maxLength": 1024})),
        ("Policy", "allow_cidrs", json!({"maxItems": 1000, "items": cidr.clone()})),
        ("Policy", "deny_cidrs", json!({"maxItems": 1000, "items": cidr})),
    ]);
    out
}

/// Whole schemas: (schema, what to set on it).
fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        // A new connection needs a password (the type reads it as optional so that a missing
        // one is a 400 naming the field, not a serde error).
        (
            "CreateConnection",
            json!({"required": ["name", "host", "database", "username", "password"]}),
        ),
        // A test needs a password, or the `id` of a saved connection lending its own.
        (
            "DraftTest",
            json!({"anyOf": [
                {"required": ["id"], "properties": {"id": {"type": "string"}}},
                {"required": ["password"], "properties": {"password": {"type": "string", "minLength": 1}}}
            ]}),
        ),
        // Exactly one grantee: `user_id` or `team_id`, the other absent or `null`.
        (
            "GrantItem",
            json!({"oneOf": [
                {"required": ["user_id"], "properties": {"user_id": {"type": "string"}, "team_id": {"type": "null"}}},
                {"required": ["team_id"], "properties": {"team_id": {"type": "string"}, "user_id": {"type": "null"}}}
            ]}),
        ),
    ]
}

/// The rules of query parameters: (path, method, parameter, its whole schema).
fn parameters() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    let empty_or = |schema: Value| json!({"anyOf": [schema, {"type": "string", "maxLength": 0}]});
    let no_controls =
        |max: usize| json!({"type": "string", "pattern": format!("^[^{CC}]*$"), "maxLength": max});
    let uuid = "^(?:|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$";
    vec![
        ("/api/v1/connections", "get", "search", no_controls(200)),
        (
            "/api/v1/connections",
            "get",
            "tag",
            json!({"type": "string", "pattern": "^(?:[A-Za-z0-9][A-Za-z0-9_.:/-]*)?$", "maxLength": 40}),
        ),
        (
            "/api/v1/connections",
            "get",
            "status",
            json!({"type": "string", "enum": ["", "unknown", "healthy", "degraded", "down"]}),
        ),
        (
            "/api/v1/connections",
            "get",
            "engine",
            json!({"type": "string", "enum": ["", "postgres"]}),
        ),
        (
            "/api/v1/connections",
            "get",
            "page",
            query_number(TO_U32_MAX),
        ),
        (
            "/api/v1/connections",
            "get",
            "per_page",
            query_number("[1-9][0-9]?|1[0-9]{2}|200"),
        ),
        (
            "/api/v1/connections",
            "get",
            "sort",
            json!({"type": "string", "enum": ["", "name", "updated", "status", "checked", "latency"]}),
        ),
        (
            "/api/v1/connections",
            "post",
            "test_first",
            json!({"type": "string", "enum": ["true", "false"]}),
        ),
        (
            "/api/v1/connections/{id}/health",
            "get",
            "since",
            empty_or(json!({"type": "string", "format": "date-time"})),
        ),
        (
            "/api/v1/connections/{id}/health",
            "get",
            "limit",
            query_number("[1-9][0-9]{0,2}|1000"),
        ),
        ("/api/v1/directory", "get", "q", no_controls(64)),
        (
            "/api/v1/audit",
            "get",
            "actor",
            json!({"type": "string", "pattern": uuid}),
        ),
        ("/api/v1/audit", "get", "action", no_controls(512)),
        ("/api/v1/audit", "get", "target", no_controls(512)),
        (
            "/api/v1/audit",
            "get",
            "since",
            empty_or(json!({"type": "string", "format": "date-time"})),
        ),
        (
            "/api/v1/audit",
            "get",
            "until",
            empty_or(json!({"type": "string", "format": "date-time"})),
        ),
        (
            "/api/v1/audit",
            "get",
            "page",
            json!({"type": "integer", "minimum": 1, "maximum": u32::MAX}),
        ),
        (
            "/api/v1/audit",
            "get",
            "per_page",
            json!({"type": "integer", "minimum": 1, "maximum": 200}),
        ),
    ]
}

/// The version an edit names: one strong or bare `ETag` of 1 to 18 digits (no list, no `*`, no
/// weak tag).
pub const IF_MATCH: &str = "^(?:\"[0-9]{1,18}\"|[0-9]{1,18})$";

/// What went wrong applying the rules: the rule whose target is missing from the document.
pub type Missing = String;

/// Applies every rule to `doc`; returns the rules whose target the document lacks.
pub fn apply(doc: &mut Value) -> Vec<Missing> {
    let mut missing = Vec::new();
    for (schema, property, rule) in fields() {
        match doc.pointer_mut(&format!(
            "/components/schemas/{schema}/properties/{property}"
        )) {
            Some(target) if target.is_object() => merge(target, rule),
            _ => missing.push(format!("{schema}.{property}")),
        }
    }
    for (schema, rule) in schemas() {
        match doc.pointer_mut(&format!("/components/schemas/{schema}")) {
            Some(target) if target.is_object() => merge(target, rule),
            _ => missing.push(schema.to_owned()),
        }
    }
    for (path, method, name, schema) in parameters() {
        match parameter(doc, path, method, name) {
            Some(parameter) => parameter["schema"] = schema,
            None => missing.push(format!("{method} {path} ?{name}")),
        }
    }
    // Every `If-Match` the document names.
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for operation in item.values_mut() {
                let Some(parameters) = operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for p in parameters {
                    if p["in"] == "header" && p["name"] == "If-Match" {
                        p["schema"] = json!({"type": "string", "pattern": IF_MATCH});
                    }
                }
            }
        }
    }
    missing
}

/// The parameter `name` of the operation `method` at `path`.
fn parameter<'a>(
    doc: &'a mut Value,
    path: &str,
    method: &str,
    name: &str,
) -> Option<&'a mut Value> {
    doc.get_mut("paths")?
        .get_mut(path)?
        .get_mut(method)?
        .get_mut("parameters")?
        .as_array_mut()?
        .iter_mut()
        .find(|p| p["name"] == name)
}

/// Adds `rule`'s keys to `target`; a nested object (an array's `items`) is merged in turn.
fn merge(target: &mut Value, rule: Value) {
    let (Some(target), Value::Object(rule)) = (target.as_object_mut(), rule) else {
        return;
    };
    for (key, value) in rule {
        match target.get_mut(&key) {
            Some(existing) if existing.is_object() && value.is_object() => merge(existing, value),
            _ => {
                target.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use datahub_core::model::{DatabaseName, Description};

    use super::*;

    /// The characters of a regex class body made of single characters and `a-b` ranges.
    fn class(body: &str) -> Vec<(char, char)> {
        let chars: Vec<char> = body.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if i + 2 < chars.len() && chars[i + 1] == '-' {
                out.push((chars[i], chars[i + 2]));
                i += 3;
            } else {
                out.push((chars[i], chars[i]));
                i += 1;
            }
        }
        out
    }

    fn within(ranges: &[(char, char)], c: char) -> bool {
        ranges.iter().any(|&(a, b)| (a..=b).contains(&c))
    }

    #[test]
    fn the_character_classes_are_the_validators() {
        let (cc, refused, lines, ws) = (
            class(CC),
            class(REFUSED),
            class(REFUSED_BUT_LINES),
            class(WS),
        );
        for c in (0..=0x10_FFFF).filter_map(char::from_u32) {
            assert_eq!(within(&cc, c), c.is_control(), "{c:?} in CC");
            assert_eq!(within(&ws, c), c.is_whitespace(), "{c:?} in WS");
            let inside = format!("a{c}b");
            assert_eq!(
                within(&refused, c),
                DatabaseName::parse(&inside).is_err(),
                "{c:?} in REFUSED"
            );
            assert_eq!(
                within(&lines, c),
                Description::parse(&inside).is_err(),
                "{c:?} in REFUSED_BUT_LINES"
            );
        }
    }

    #[test]
    fn every_rule_names_what_the_document_has() {
        let mut doc = crate::routes::openapi();
        assert_eq!(apply(&mut doc), Vec::<Missing>::new());
        assert!(doc["paths"].as_object().is_some_and(|p| !p.is_empty()));
    }
}
