//! Bad input of every shape, driven by the OpenAPI document the server serves (SECURITY.md S27).
//!
//! For every operation with a JSON body: each required field dropped, each property (top level,
//! nested objects, the first item of arrays of objects) given the wrong JSON type, `null`, a
//! 10 KB string, NUL and control characters, nested garbage, huge and negative numbers, unknown
//! fields at every level, and whole bodies of the wrong shape (an array instead of the object,
//! `null`, a string, too deep to parse); then a seeded, deterministic stream of random JSON.
//! For every path parameter, bad UUIDs; for every query parameter, bad values and unknown or
//! repeated names. Every answer is a 4xx (never a 5xx) in the error shape; a mutation that can
//! only be wrong is refused, naming a `field` that is the one mutated (for the sign-in route,
//! whose failures are one uniform 401 by design, a 401 or 429 without field is accepted for
//! values). Afterwards the store is whole: the connection the fuzz aimed at reads back with its
//! fields and reveals its password, and the list counts what it counted.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};

use axum::http::{Method, StatusCode};
use datahub_core::hub::RateLimit;
use serde_json::{Map, Value, json};

use crate::common::{Answer, Fixture};

const URL: &str = "/api/v1/connections";
const KEEP_PW: &str = "fuzz-keep-pw-5521";
const LONG: usize = 10 * 1024;
/// Words of Rust that an error message must not carry.
const RUST_WORDS: &[&str] = &[
    "u8", "u16", "u32", "u64", "u128", "i8", "i16", "i32", "i64", "i128", "usize", "isize", "f64",
    "struct", "enum", "sequence", "borrowed", "tuple",
];

fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// xorshift64*: a small seeded generator, so every run sends the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// The OpenAPI document.

/// A schema with `$ref`s followed and `oneOf`/`anyOf`/`allOf` merged (minus `null`): its types,
/// whether `null` is allowed, its properties and required names, and its array items.
#[derive(Debug, Default, Clone)]
struct Shape {
    types: Vec<String>,
    nullable: bool,
    properties: Vec<(String, Value)>,
    required: Vec<String>,
    items: Option<Value>,
    /// The allowed values, when the schema lists them.
    allowed: Vec<Value>,
}

fn shape(spec: &Value, schema: &Value) -> Shape {
    let mut out = Shape::default();
    merge(spec, schema, &mut out, 0);
    out
}

fn merge(spec: &Value, schema: &Value, out: &mut Shape, depth: usize) {
    assert!(depth < 32, "a schema refers to itself: {schema}");
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        let target = &spec["components"]["schemas"][name];
        assert!(target.is_object(), "unresolved {r}");
        return merge(spec, target, out, depth + 1);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(list) = schema[key].as_array() {
            for s in list {
                // A `oneOf`/`anyOf` branch of bare `required`/`properties` is a rule between
                // fields ("`id` or `password`"), not a shape: what it requires is required only
                // in that branch.
                let overlay = key != "allOf" && s.get("$ref").is_none() && s.get("type").is_none();
                if !overlay {
                    merge(spec, s, out, depth + 1);
                }
            }
        }
    }
    let types: Vec<String> = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    for t in types {
        if t == "null" {
            out.nullable = true;
        } else if !out.types.contains(&t) {
            out.types.push(t);
        }
    }
    if schema.get("nullable") == Some(&Value::Bool(true)) {
        out.nullable = true;
    }
    if let Some(props) = schema["properties"].as_object() {
        if !out.types.contains(&"object".to_owned()) {
            out.types.push("object".to_owned());
        }
        for (k, v) in props {
            out.properties.push((k.clone(), v.clone()));
        }
    }
    if let Some(req) = schema["required"].as_array() {
        out.required
            .extend(req.iter().filter_map(|r| r.as_str().map(str::to_owned)));
    }
    if schema.get("items").is_some() {
        out.items = Some(schema["items"].clone());
    }
    if let Some(values) = schema["enum"].as_array() {
        out.allowed
            .extend(values.iter().filter(|v| !v.is_null()).cloned());
    }
}

/// One operation of the document.
#[derive(Debug)]
struct Operation {
    method: Method,
    path: String,
    body: Option<Value>,
    path_params: Vec<String>,
    query_params: Vec<String>,
}

fn operations(spec: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let params: Vec<&Value> = op["parameters"]
                .as_array()
                .map(|p| p.iter().collect())
                .unwrap_or_default();
            let named = |place: &str| -> Vec<String> {
                params
                    .iter()
                    .filter(|p| p["in"] == place)
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            };
            let body = op["requestBody"]["content"]["application/json"]["schema"].clone();
            out.push(Operation {
                method,
                path: path.clone(),
                body: (!body.is_null()).then_some(body),
                path_params: named("path"),
                query_params: named("query"),
            });
        }
    }
    out
}

/// A value of `shape` made up from the schema alone (for bodies this file knows no example of).
fn synthesize(spec: &Value, s: &Shape, depth: usize) -> Value {
    let first = s.types.first().map(String::as_str).unwrap_or("string");
    match first {
        "object" if depth < 4 => {
            let mut m = Map::new();
            for (k, v) in &s.properties {
                if s.required.contains(k) {
                    m.insert(k.clone(), synthesize(spec, &shape(spec, v), depth + 1));
                }
            }
            Value::Object(m)
        }
        "array" => json!([]),
        "integer" | "number" => json!(1),
        "boolean" => json!(false),
        // An enumerated value must be one of its values for the base body to be valid.
        _ if !s.allowed.is_empty() => s.allowed[0].clone(),
        // Long enough for a password, and a valid name.
        _ => json!("fuzz-value-0123"),
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations.

/// Whether a mutation can only be wrong (so it must be refused, naming its field) or may be
/// accepted (then it must still never be a 5xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Must {
    Fail,
    MayPass,
}

#[derive(Debug, Clone)]
struct Mutation {
    what: String,
    /// The field the error must name (a prefix relation either way), if any.
    field: Option<String>,
    body: Value,
    must: Must,
}

/// A path into a JSON value: object keys and array indexes.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn dotted(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) if s.is_empty() => s.push_str(k),
            Step::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn at<'v>(value: &'v mut Value, path: &[Step]) -> &'v mut Value {
    let mut v = value;
    for step in path {
        v = match step {
            Step::Key(k) => &mut v[k.as_str()],
            Step::Index(i) => &mut v[*i],
        };
    }
    v
}

fn set(base: &Value, path: &[Step], value: Value) -> Value {
    let mut b = base.clone();
    *at(&mut b, path) = value;
    b
}

fn remove(base: &Value, path: &[Step], key: &str) -> Value {
    let mut b = base.clone();
    if let Some(m) = at(&mut b, path).as_object_mut() {
        m.remove(key);
    }
    b
}

fn wrong_type(s: &Shape) -> Value {
    match s.types.first().map(String::as_str) {
        Some("string") => json!(12345),
        Some("integer") | Some("number") => json!("not-a-number"),
        Some("boolean") => json!("yes"),
        Some("array") => json!({"0": "x"}),
        _ => json!("not-an-object"),
    }
}

fn nested_garbage(depth: usize) -> Value {
    let mut v = json!({"\u{0}": [null, true, -0.0, "\u{202e}"]});
    for i in 0..depth {
        v = if i % 2 == 0 {
            json!([v])
        } else {
            json!({"g": v})
        };
    }
    v
}

/// Every mutation of `base` (an instance of `schema`), walking its object properties.
fn mutations(spec: &Value, schema: &Value, base: &Value) -> Vec<Mutation> {
    let mut out = Vec::new();
    let mut m = |what: String, field: Option<String>, body: Value, must: Must| {
        out.push(Mutation {
            what,
            field,
            body,
            must,
        })
    };
    // Whole bodies of the wrong shape.
    for (what, body) in [
        ("array instead of object", json!([])),
        ("array of the body", json!([base])),
        (
            "positional array",
            json!(["fuzz-positional", "x", "postgres"]),
        ),
        ("null body", Value::Null),
        ("string body", json!("body")),
        ("number body", json!(1e300)),
        ("too deep to parse", nested_garbage(300)),
    ] {
        m(what.to_owned(), None, body, Must::Fail);
    }
    let mut stack: Vec<(Vec<Step>, Shape)> = vec![(Vec::new(), shape(spec, schema))];
    while let Some((path, s)) = stack.pop() {
        let here = dotted(&path);
        if s.types.contains(&"object".to_owned()) {
            let unknown = if here.is_empty() {
                "zz_fuzz".to_owned()
            } else {
                format!("{here}.zz_fuzz")
            };
            if at(&mut base.clone(), &path).is_object() {
                let mut b = base.clone();
                at(&mut b, &path)["zz_fuzz"] = json!(1);
                m(
                    format!("unknown field in {here:?}"),
                    Some(unknown),
                    b,
                    Must::Fail,
                );
            }
            for (name, prop) in &s.properties {
                let mut p = path.clone();
                p.push(Step::Key(name.clone()));
                let field = dotted(&p);
                let ps = shape(spec, prop);
                let required = s.required.contains(name);
                if required {
                    m(
                        format!("drop {field}"),
                        Some(field.clone()),
                        remove(base, &path, name),
                        Must::Fail,
                    );
                }
                let null_must = if required && !ps.nullable {
                    Must::Fail
                } else {
                    Must::MayPass
                };
                let is = |t: &str| ps.types.iter().any(|x| x == t);
                let numeric = is("integer") || is("number");
                // A property the base leaves out may clash with one it has (`team_id` next to
                // `user_id`): the error may then name either, so only the parent is expected.
                let present = at(&mut base.clone(), &p).is_null().then_some(()).is_none();
                let expect = match (present, here.is_empty()) {
                    (true, _) => Some(field.clone()),
                    (false, true) => None,
                    (false, false) => Some(here.clone()),
                };
                let mut v = |what: &str, value: Value, must: Must| {
                    m(
                        format!("{what} at {field}"),
                        expect.clone(),
                        set(base, &p, value),
                        must,
                    )
                };
                v("wrong type", wrong_type(&ps), Must::Fail);
                v("null", Value::Null, null_must);
                v("nested garbage", nested_garbage(8), Must::Fail);
                if is("string") {
                    v("10 KB string", json!("x".repeat(LONG)), Must::Fail);
                    v(
                        "NUL and controls",
                        json!("a\u{0}b\u{1}\u{1b}[2J"),
                        Must::Fail,
                    );
                }
                if numeric {
                    for huge in [
                        json!(1e300),
                        json!(18_446_744_073_709_551_615_u64),
                        serde_json::from_str::<Value>("18446744073709551616").unwrap(),
                        json!(-9_223_372_036_854_775_807_i64),
                        json!(-1),
                        json!(0.5),
                    ] {
                        v("number", huge, Must::Fail);
                    }
                }
                if is("object") {
                    // serde reads a struct from an array by position unless told not to.
                    v("array instead of object", json!([]), Must::Fail);
                    v(
                        "positional array",
                        json!(["disable", "x", null]),
                        Must::Fail,
                    );
                    stack.push((p.clone(), ps.clone()));
                }
                if is("array") {
                    v("array of garbage", json!([null, {}, [], 1e300]), Must::Fail);
                    let item = ps.items.as_ref().map(|i| shape(spec, i));
                    let has_first = at(&mut base.clone(), &p).get(0).is_some();
                    if let (Some(item), true) = (item, has_first) {
                        let mut first = p.clone();
                        first.push(Step::Index(0));
                        stack.push((first, item));
                    }
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// The error shape, and the field named where the mutation must name one.
fn check_refusal(op: &str, what: &str, r: &Answer, field: Option<&str>, sign_in: bool) {
    assert!(
        r.status.is_client_error(),
        "{op} {what}: {} {}",
        r.status,
        r.text
    );
    let error = &r.json["error"];
    assert!(
        error["code"].is_string() && error["message"].is_string(),
        "{op} {what}: not the error shape: {}",
        r.text
    );
    // Messages speak JSON, not Rust: no type name of ours reaches a client.
    let message = error["message"].as_str().unwrap_or_default();
    let rust = message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|w| RUST_WORDS.contains(w));
    assert_eq!(rust, None, "{op} {what}: {message:?}");
    let uniform = sign_in
        && matches!(
            r.status,
            StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
        );
    if uniform {
        return;
    }
    let named = error["field"].as_str().unwrap_or_default();
    assert!(
        !named.is_empty(),
        "{op} {what}: {} names no field: {}",
        r.status,
        r.text
    );
    if let Some(field) = field {
        let related = named == field
            || named.starts_with(&format!("{field}."))
            || named.starts_with(&format!("{field}["))
            || field.starts_with(&format!("{named}."))
            || field.starts_with(&format!("{named}["))
            || field.ends_with(&format!(".{named}"));
        assert!(
            related,
            "{op} {what}: names {named:?}, not {field:?}: {}",
            r.text
        );
    }
}

fn never_5xx(op: &str, what: &str, r: &Answer) {
    assert!(
        !r.status.is_server_error(),
        "{op} {what}: {} {}",
        r.status,
        r.text
    );
    if r.status.is_client_error() && r.status != StatusCode::UNPROCESSABLE_ENTITY {
        assert!(
            r.json["error"]["code"].is_string(),
            "{op} {what}: not the error shape: {}",
            r.text
        );
    }
}

/// Percent-encodes every byte but ASCII letters, digits and `-`.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Random JSON from the seeded generator, with keys drawn from the schema's names.
fn random_json(rng: &mut Rng, keys: &[String], depth: usize) -> Value {
    let pick = if depth > 3 {
        rng.below(5)
    } else {
        rng.below(8)
    };
    match pick {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => match rng.below(5) {
            0 => json!(-(rng.next() as i64).abs()),
            1 => json!(rng.next()),
            2 => json!(f64::from_bits(rng.next() >> 2)),
            3 => json!(rng.below(70_000)),
            _ => serde_json::from_str("123456789012345678901234567890").unwrap(),
        },
        3 | 4 => {
            const PIECES: [&str; 10] = [
                "a", "\u{0}", "\u{1f}", "é", "\u{202e}", "%00", "'", "\"", "\\", "../",
            ];
            let len = [0, 1, 8, 64, 300, LONG][rng.below(6)];
            let mut s = String::new();
            while s.len() < len {
                s.push_str(PIECES[rng.below(PIECES.len())]);
            }
            json!(s)
        }
        5 => {
            let n = rng.below(4);
            Value::Array((0..n).map(|_| random_json(rng, keys, depth + 1)).collect())
        }
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(6) {
                let key = if !keys.is_empty() && rng.below(4) != 0 {
                    keys[rng.below(keys.len())].clone()
                } else {
                    format!("k{}", rng.below(100))
                };
                m.insert(key, random_json(rng, keys, depth + 1));
            }
            Value::Object(m)
        }
    }
}

fn all_keys(spec: &Value, schema: &Value, out: &mut Vec<String>, depth: usize) {
    if depth > 4 {
        return;
    }
    let s = shape(spec, schema);
    for (k, v) in &s.properties {
        if !out.contains(k) {
            out.push(k.clone());
        }
        all_keys(spec, v, out, depth + 1);
    }
    if let Some(items) = &s.items {
        all_keys(spec, items, out, depth + 1);
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_input_of_every_shape_is_a_4xx_naming_the_field() {
    let started = std::time::Instant::now();
    let f = Fixture::with(|hub| {
        hub.with_test_rate_limit(RateLimit {
            burst: 100_000,
            per_second: 1_000.0,
        })
    })
    .await;
    let port = closed_port();
    let create = |name: &str| {
        json!({"name": name, "description": "kept", "host": "127.0.0.1", "port": port,
               "database": "app", "username": "app", "password": KEEP_PW,
               "tls": {"mode": "require", "channel_binding": "prefer"},
               "options": {"connect_timeout_ms": 500, "application_name": "fuzz"},
               "tags": ["keep"], "monitoring": {"enabled": false, "interval_s": 60, "slow_ms": 100}})
    };
    let kept = f.admin(Method::POST, URL, Some(&create("fuzz-keep"))).await;
    assert_eq!(kept.status, StatusCode::CREATED, "{}", kept.text);
    let id = kept.json["id"].as_str().unwrap().to_owned();
    let before = f
        .admin(Method::GET, &format!("{URL}/{id}"), None)
        .await
        .json;
    let admin_id = f.admin.user().to_string();
    let team = f
        .admin(
            Method::POST,
            "/api/v1/teams",
            Some(&json!({"name": "fuzz-team", "members": []})),
        )
        .await;
    assert_eq!(team.status, StatusCode::CREATED, "{}", team.text);
    let team_id = team.json["id"].as_str().unwrap().to_owned();

    let spec = f
        .send(Method::GET, "/api/v1/openapi.json", None, &[], None)
        .await
        .json;
    let ops = operations(&spec);
    assert!(ops.len() >= 15, "{} operations", ops.len());

    // A valid body per known schema; any other is made up from its schema.
    let known = |op: &Operation| -> Option<Value> {
        let body = match (op.method.clone(), op.path.as_str()) {
            (Method::POST, URL) => create("fuzz-new"),
            (Method::POST, "/api/v1/connections/test") => {
                let mut d = create("fuzz-draft");
                d["id"] = json!(id);
                d
            }
            (Method::PATCH, "/api/v1/connections/{id}") => {
                json!({"description": "fuzzed", "tls": {"mode": "require"},
                       "options": {"connect_timeout_ms": 400}, "monitoring": {"slow_ms": 200},
                       "tags": ["keep"]})
            }
            (Method::PUT, "/api/v1/connections/{id}/grants") => {
                json!({"grants": [{"user_id": admin_id, "level": "view"}]})
            }
            (Method::POST, "/api/v1/auth/login") => {
                json!({"username": "fuzz-nobody", "password": "fuzz"})
            }
            _ => return None,
        };
        Some(body)
    };

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rng = Rng(0x5EED_0005_2727_0001);
    for op in &ops {
        let label = format!("{} {}", op.method, op.path);
        let sign_in = op.path == "/api/v1/auth/login";
        // An `{id}` that exists, so the body is what gets judged.
        let target = if op.path.starts_with("/api/v1/users/") {
            admin_id.clone()
        } else if op.path.starts_with("/api/v1/teams/") {
            team_id.clone()
        } else {
            id.clone()
        };
        let uri_with = |id_value: &str, query: &str| {
            let mut uri = op.path.clone();
            for p in &op.path_params {
                uri = uri.replace(&format!("{{{p}}}"), id_value);
            }
            if !query.is_empty() {
                uri.push('?');
                uri.push_str(query);
            }
            uri
        };
        // The connection's current version, for the routes that need `If-Match`.
        let send = |uri: String, body: Option<Value>| {
            let f = &f;
            let method = op.method.clone();
            let id = id.clone();
            async move {
                let etag = f
                    .admin(Method::GET, &format!("{URL}/{id}"), None)
                    .await
                    .json["version"]
                    .to_string();
                f.send(
                    method,
                    &uri,
                    Some(&f.admin_token),
                    &[("if-match", etag.as_str())],
                    body.as_ref(),
                )
                .await
            }
        };
        let base = op
            .body
            .as_ref()
            .map(|schema| known(op).unwrap_or_else(|| synthesize(&spec, &shape(&spec, schema), 0)));

        // Body mutations.
        if let (Some(schema), Some(base)) = (&op.body, &base) {
            for mutation in mutations(&spec, schema, base) {
                let r = send(uri_with(&target, ""), Some(mutation.body.clone())).await;
                match mutation.must {
                    Must::Fail => {
                        check_refusal(
                            &label,
                            &mutation.what,
                            &r,
                            mutation.field.as_deref(),
                            sign_in,
                        );
                        *counts.entry("body, refused").or_default() += 1;
                    }
                    Must::MayPass => {
                        never_5xx(&label, &mutation.what, &r);
                        *counts.entry("body, may pass").or_default() += 1;
                    }
                }
            }
            // Seeded random JSON: never a 5xx, always the error shape when refused.
            let mut keys = Vec::new();
            all_keys(&spec, schema, &mut keys, 0);
            let rounds = if sign_in { 40 } else { 150 };
            for round in 0..rounds {
                let body = if round % 3 == 0 {
                    // Random values under the right keys.
                    let mut b = base.clone();
                    if let Some(m) = b.as_object_mut() {
                        let k = keys[rng.below(keys.len())].clone();
                        if m.contains_key(&k) {
                            m.insert(k, random_json(&mut rng, &keys, 1));
                        }
                    }
                    b
                } else {
                    random_json(&mut rng, &keys, 0)
                };
                let r = send(uri_with(&target, ""), Some(body.clone())).await;
                never_5xx(&label, &format!("random body {body}"), &r);
                *counts.entry("body, random").or_default() += 1;
            }
        }

        // Bad path parameters: each one a single path segment that is no UUID (the braced and
        // `urn:uuid:` forms are UUIDs to the parser, and so name nothing: 404, not bad input).
        if !op.path_params.is_empty() {
            let long = "x".repeat(LONG);
            let bad = [
                "not-a-uuid",
                "123",
                "0190f0a0-0000-7000-8000-00000000000",
                "0190f0a0-0000-7000-8000-0000000000000",
                "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
                "0190f0a0-0000-7000-8000-00000000000g",
                "\u{0}",
                "' OR '1'='1",
                "..",
                "ü",
                "-1",
                "null",
                long.as_str(),
            ];
            for value in bad {
                let r = send(uri_with(&percent(value), ""), base.clone()).await;
                check_refusal(&label, &format!("path {value:.20?}"), &r, None, false);
                assert_eq!(r.status, StatusCode::BAD_REQUEST, "{label} {value:.20?}");
                assert!(
                    op.path_params
                        .iter()
                        .any(|p| r.json["error"]["field"] == p.as_str()),
                    "{label}: {}",
                    r.text
                );
                *counts.entry("path").or_default() += 1;
            }
        }

        // Bad query parameters.
        if !op.query_params.is_empty() {
            let long = "x".repeat(LONG);
            for param in &op.query_params {
                for (value, must) in [
                    (long.as_str(), Must::Fail),
                    ("%00", Must::Fail),
                    ("a%0Ab", Must::Fail),
                    ("-1", Must::MayPass),
                    ("0", Must::MayPass),
                    ("abc", Must::MayPass),
                    ("", Must::MayPass),
                    ("%FF%FE", Must::MayPass),
                    ("1e400", Must::MayPass),
                    ("99999999999999999999", Must::MayPass),
                    ("true", Must::MayPass),
                ] {
                    let query = format!("{param}={value}");
                    let r = send(uri_with(&target, &query), base.clone()).await;
                    let what = format!("query {param}={value:.20}");
                    match must {
                        Must::Fail => {
                            check_refusal(&label, &what, &r, Some(param), false);
                            *counts.entry("query, refused").or_default() += 1;
                        }
                        Must::MayPass => {
                            never_5xx(&label, &what, &r);
                            if r.status == StatusCode::BAD_REQUEST {
                                check_refusal(&label, &what, &r, Some(param), false);
                            }
                            *counts.entry("query, may pass").or_default() += 1;
                        }
                    }
                }
                // The same parameter twice.
                let query = format!("{param}=1&{param}=2");
                let r = send(uri_with(&target, &query), base.clone()).await;
                check_refusal(&label, &format!("query {query}"), &r, Some(param), false);
                *counts.entry("query, refused").or_default() += 1;
            }
            let r = send(uri_with(&target, "zz_fuzz=1"), base.clone()).await;
            check_refusal(
                &label,
                "unknown query parameter",
                &r,
                Some("zz_fuzz"),
                false,
            );
            *counts.entry("query, refused").or_default() += 1;
        }
    }

    // The store is whole: the connection reads back and still opens with its password.
    let after = f.admin(Method::GET, &format!("{URL}/{id}"), None).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text);
    for key in [
        "id",
        "name",
        "host",
        "port",
        "database",
        "username",
        "owner",
        "created_at",
    ] {
        assert_eq!(after.json[key], before[key], "{key}");
    }
    assert_eq!(after.json["password_set"], true);
    let revealed = f
        .admin(Method::POST, &format!("{URL}/{id}/reveal"), None)
        .await;
    assert_eq!(revealed.status, StatusCode::OK, "{}", revealed.text);
    assert_eq!(revealed.json["password"], KEEP_PW);
    let list = f
        .admin(Method::GET, &format!("{URL}?per_page=200"), None)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let total = list.json["total"].as_u64().unwrap();
    assert_eq!(list.json["items"].as_array().unwrap().len() as u64, total);
    // Each listed connection reads back too.
    for item in list.json["items"].as_array().unwrap() {
        let one = format!("{URL}/{}", item["id"].as_str().unwrap());
        assert_eq!(
            f.admin(Method::GET, &one, None).await.status,
            StatusCode::OK
        );
    }
    let sent: usize = counts.values().sum();
    assert!(sent > 1000, "{counts:?}");
    eprintln!(
        "S27 fuzz: {} operations, {sent} requests {counts:?}, {total} connections after, {:?}",
        ops.len(),
        started.elapsed()
    );
}
