//! What every operation of the OpenAPI document shares, added to the document in one place so
//! no route can forget it: the error answers any operation may give (by its permission in
//! [`ROUTES`], its body and its parameters), and the links from each creation to the
//! operations that take the created id (so a generated client, or a stateful fuzzer, can follow
//! a `201` to the resource it made).
//!
//! A route's own annotation wins: a status it documents (with its own description, say "not an
//! admin") is kept as written; this adds only what is missing.

use serde_json::{Map, Value, json};
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};

use super::rules;
use super::{Permission, ROUTES};

/// The name of the error shape in `components.schemas`.
const ERROR_SCHEMA: &str = "ErrorBody";

/// An error answer in the error shape with `description`.
fn error(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ERROR_SCHEMA)))
                .build(),
        )
        .build()
        .into()
}

/// The common answers of one operation, by status: what its permission, body and parameters
/// let it answer, whatever the route does.
fn common(
    permission: Option<Permission>,
    operation: &Operation,
) -> Vec<(&'static str, RefOr<Response>)> {
    let mut out = Vec::new();
    let body = operation.request_body.is_some();
    let parameters = operation.parameters.as_ref().is_some_and(|p| {
        p.iter()
            .any(|p| !matches!(p.parameter_in, ParameterIn::Header))
    });
    if body || parameters {
        out.push((
            "400",
            error("a parameter or a field of the body broke a rule, named in `field`"),
        ));
    }
    if permission.is_some_and(|p| p != Permission::Public) {
        out.push((
            "401",
            error("no valid credentials: sign in or send a valid bearer token"),
        ));
        out.push((
            "403",
            error(
                "the caller may not do this (role, grant or read-only token), or a request \
                 signed in by cookie came from another origin",
            ),
        ));
    }
    if body {
        out.push(("413", error("the body is larger than the server accepts")));
        out.push(("415", error("the body is not sent as `application/json`")));
    }
    out.push((
        "500",
        error("the server could not complete the request (the cause is logged, never answered)"),
    ));
    out.push(("503", error("the store is unavailable: try again shortly")));
    out
}

/// The operations of a path item, with their method in lowercase.
fn operations(item: &mut utoipa::openapi::PathItem) -> [(&'static str, &mut Option<Operation>); 8] {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("options", &mut item.options),
        ("head", &mut item.head),
        ("patch", &mut item.patch),
        ("trace", &mut item.trace),
    ]
}

/// The document completed: the common answers on every operation, the rules of every input
/// ([`rules`]) and the links of every creation, as the JSON served.
pub fn complete(mut doc: OpenApi) -> Value {
    for (path, item) in &mut doc.paths.paths {
        for (method, operation) in operations(item) {
            let Some(operation) = operation else { continue };
            let permission = ROUTES
                .iter()
                .find(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method))
                .map(|r| r.permission);
            for (status, response) in common(permission, operation) {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert(response);
            }
        }
    }
    // A document of maps, strings and numbers always serializes.
    let mut doc = serde_json::to_value(&doc).unwrap_or(Value::Null);
    let missing = rules::apply(&mut doc);
    if !missing.is_empty() {
        tracing::error!(?missing, "input rules name what the OpenAPI document lacks");
    }
    link_creations(&mut doc);
    security(&mut doc);
    doc
}

/// The two credentials (`Authorization: Bearer` with an API token, or the session cookie) as
/// security schemes, required by every operation that is not public.
fn security(doc: &mut Value) {
    let Some(root) = doc.as_object_mut() else {
        return;
    };
    let components = root.entry("components").or_insert_with(|| json!({}));
    if let Some(components) = components.as_object_mut() {
        components.insert(
            "securitySchemes".to_owned(),
            json!({
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (`dh_…`): `POST /api/v1/tokens`, or `datahub-server tokens create`.",
                },
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": crate::auth::SESSION_COOKIE,
                    "description": "The session cookie `POST /api/v1/auth/login` sets; a state-changing request signed in by cookie must come from this server's origin.",
                },
            }),
        );
    }
    let Some(paths) = root.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) else {
                continue;
            };
            let public = ROUTES
                .iter()
                .find(|r| r.path == path && r.method.as_str().eq_ignore_ascii_case(method))
                .is_none_or(|r| r.permission == Permission::Public);
            if !public {
                operation.insert(
                    "security".to_owned(),
                    json!([{"bearer": []}, {"session": []}]),
                );
            }
        }
    }
}

/// The creations whose `201` links to the operations on what they created.
const CREATIONS: [&str; 4] = [
    "/api/v1/connections",
    "/api/v1/users",
    "/api/v1/teams",
    "/api/v1/tokens",
];

/// The methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Adds to the `201` of each of [`CREATIONS`] a link to every operation under `<path>/{id}`,
/// passing the created `id`, and the `ETag` as `If-Match` where the creation answers one and the
/// target takes it.
///
/// Written as JSON: utoipa 5.5's `Link` serializes its `operation_ref` under that Rust name,
/// where OpenAPI says `operationRef`.
fn link_creations(doc: &mut Value) {
    for base in CREATIONS {
        let prefix = format!("{base}/{{id}}");
        let mut links = Map::new();
        let Some(paths) = doc["paths"].as_object() else {
            return;
        };
        let etag = paths
            .get(base)
            .and_then(|item| item["post"]["responses"]["201"]["headers"].get("ETag"))
            .is_some();
        for (path, item) in paths {
            if path != &prefix && !path.starts_with(&format!("{prefix}/")) {
                continue;
            }
            for method in METHODS {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                let takes_if_match = operation["parameters"].as_array().is_some_and(|p| {
                    p.iter()
                        .any(|p| p["in"] == "header" && p["name"] == "If-Match")
                });
                let mut parameters = json!({"path.id": "$response.body#/id"});
                if takes_if_match && etag {
                    parameters["header.If-Match"] = json!("$response.header.ETag");
                }
                let pointer = path.replace('~', "~0").replace('/', "~1");
                links.insert(
                    link_name(method, &path[base.len()..]),
                    json!({
                        "operationRef": format!("#/paths/{pointer}/{method}"),
                        "parameters": parameters,
                    }),
                );
            }
        }
        let created = doc
            .get_mut("paths")
            .and_then(|p| p.get_mut(base))
            .and_then(|i| i.get_mut("post"))
            .and_then(|o| o.get_mut("responses"))
            .and_then(|r| r.get_mut("201"))
            .and_then(Value::as_object_mut);
        if let Some(created) = created {
            created.insert("links".to_owned(), Value::Object(links));
        }
    }
}

/// A link's name from its target: `GetId`, `PatchId`, `PostIdTest`, `PutIdGrants`...
fn link_name(method: &str, rest: &str) -> String {
    let mut name = String::new();
    for word in std::iter::once(method).chain(rest.split('/')) {
        let word = word.trim_matches(|c| c == '{' || c == '}');
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}
