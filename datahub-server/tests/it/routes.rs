//! SECURITY.md S18, deny by default: the route table (`routes::ROUTES`, each route with its
//! declared permission) is exactly the set of operations the OpenAPI document describes, and
//! every route that is not public refuses a caller without valid credentials with 401, before it
//! reads the body or does anything. Written over `ROUTES`, so routes added later are covered.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use datahub_core::hub::UserUpdate;
use datahub_core::model::{ListQuery, Visibility};
use datahub_core::rbac::Role;
use datahub_server::routes::{Permission, ROUTES};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::TestApp;

/// The operations an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `path` with every `{parameter}` replaced by a fresh UUID.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                uuid::Uuid::now_v7().to_string()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// A syntactically valid body for methods that carry one.
fn body_for(method: &Method) -> Option<Value> {
    (*method == Method::POST || *method == Method::PUT || *method == Method::PATCH)
        .then(|| json!({}))
}

/// What the store holds that a request could change, to compare before and after.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    audit_rows: u64,
    users: usize,
    teams: usize,
    tokens: Vec<(String, Option<String>)>,
    connections: u64,
    policy: String,
}

async fn snapshot(t: &TestApp) -> Snapshot {
    let store = &t.store;
    let users = store.users().await.unwrap();
    let mut tokens = Vec::new();
    for u in &users {
        for token in store.tokens_of(u.user.id).await.unwrap() {
            tokens.push((
                token.info.id.to_string(),
                token.info.revoked_at.map(|at| at.to_string()),
            ));
        }
    }
    Snapshot {
        audit_rows: t.audit_count().await,
        users: users.len(),
        teams: store.teams().await.unwrap().len(),
        tokens,
        connections: store
            .list_connections(&ListQuery::default(), &Visibility::All)
            .await
            .unwrap()
            .total,
        policy: format!("{:?}", store.policy().await.unwrap()),
    }
}

#[tokio::test]
async fn the_route_table_is_exactly_what_the_openapi_document_describes() {
    let t = TestApp::new().await;
    let spec = t
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    spec.assert_status(StatusCode::OK);

    let mut documented = BTreeSet::new();
    let paths = spec.body["paths"]
        .as_object()
        .expect("paths in the document");
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let method = method.to_uppercase();
            documented.insert((method.clone(), path.clone()));
            // Every operation documents its error answers with the error shape.
            let responses = operation["responses"].as_object().expect("responses");
            assert!(!responses.is_empty(), "{method} {path}: no responses");
            // Every 429 tells the client when to come back.
            if let Some(limited) = responses.get("429") {
                assert!(
                    limited["headers"]["Retry-After"].is_object(),
                    "{method} {path}: a 429 without Retry-After"
                );
            }
            let declared = ROUTES
                .iter()
                .find(|r| r.method.as_str() == method && r.path == path);
            if let Some(route) = declared
                && route.permission != Permission::Public
            {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} is not public but documents no 401"
                );
            }
        }
    }

    // The operations that answer 429 say so.
    for (method, path) in [
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/users/me/password"),
        ("post", "/api/v1/connections"),
        ("post", "/api/v1/connections/test"),
        ("post", "/api/v1/connections/{id}/test"),
    ] {
        assert!(
            paths[path][method]["responses"]["429"].is_object(),
            "{method} {path}: no 429"
        );
    }
    // What the web UI reads is described: a check's step and hint, a connection's facts, a
    // grant's output-only name, the directory and the `checked` event.
    let schemas = &spec.body["components"]["schemas"];
    for (schema, property) in [
        ("CheckOut", "step"),
        ("CheckOut", "hint"),
        ("ConnectionOut", "facts"),
        ("FactsOut", "server"),
        ("FactsOut", "tls"),
        ("GrantOut", "name"),
        ("DirectoryOut", "users"),
        ("DirectoryOut", "teams"),
    ] {
        assert!(
            schemas[schema]["properties"][property].is_object(),
            "{schema}.{property} is not documented"
        );
    }
    assert!(
        schemas["GrantItem"]["properties"]["name"].is_null(),
        "PUT takes no name"
    );
    assert!(
        spec.text.contains("\"checked\""),
        "the `checked` event is not documented"
    );

    let declared: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    assert_eq!(declared.len(), ROUTES.len(), "a route is declared twice");
    let undeclared: Vec<_> = documented.difference(&declared).collect();
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    assert!(
        undeclared.is_empty(),
        "served and documented but without a permission in ROUTES: {undeclared:?}"
    );
    assert!(
        undocumented.is_empty(),
        "in ROUTES but not in the OpenAPI document (so not served): {undocumented:?}"
    );
}

#[tokio::test]
async fn every_route_that_is_not_public_refuses_an_anonymous_caller_and_does_nothing() {
    let t = TestApp::new().await;
    // A revoked token, and the token of an account disabled since, are no credentials either.
    let admin = t.admin().await;
    let revoked = t
        .hub
        .create_token(&admin, "revoked", None, false)
        .await
        .unwrap();
    t.hub.revoke_token(&admin, revoked.info.id).await.unwrap();
    let revoked = revoked.token.expose_secret().to_owned();
    let gone = t.account("gone", Role::Editor).await;
    let update = UserUpdate {
        disabled: Some(true),
        ..UserUpdate::default()
    };
    let gone_id = gone.id.parse().unwrap();
    t.hub.update_user(&admin, gone_id, update).await.unwrap();

    let before = snapshot(&t).await;
    let mut checked = 0;
    for route in ROUTES.iter().filter(|r| r.permission != Permission::Public) {
        let path = concrete(route.path);
        let tokens = [
            None,
            Some("dh_not-a-token"),
            Some("garbage"),
            Some(revoked.as_str()),
            Some(gone.token.as_str()),
        ];
        for token in tokens {
            let reply = t
                .send(route.method.clone(), &path, token, body_for(&route.method))
                .await;
            let code = reply.assert_error(StatusCode::UNAUTHORIZED, None);
            assert_eq!(
                code, "unauthenticated",
                "{} {} ({token:?})",
                route.method, route.path
            );
        }
        checked += 1;
    }
    assert!(checked > 0, "no route to check");
    assert_eq!(
        snapshot(&t).await,
        before,
        "an anonymous request changed something"
    );
}

#[tokio::test]
async fn public_routes_answer_without_credentials() {
    let t = TestApp::new().await;
    for route in ROUTES.iter().filter(|r| r.permission == Permission::Public) {
        let path = concrete(route.path);
        let reply = t
            .send(route.method.clone(), &path, None, body_for(&route.method))
            .await;
        assert!(
            !matches!(
                reply.status,
                StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ) && !reply.status.is_server_error(),
            "{} {}: {} {}",
            route.method,
            route.path,
            reply.status,
            reply.text
        );
    }
}

#[tokio::test]
async fn a_signed_in_caller_reaches_every_route_and_none_answers_5xx() {
    // With the admin's token every declared route is served (never 405, nor a 404 outside the
    // error shape) and none answers 5xx to a syntactically valid request. Event streams are
    // judged by their head: their body never ends.
    let t = TestApp::new().await;
    for route in ROUTES {
        let path = concrete(route.path);
        let mut request = Request::builder()
            .method(route.method.clone())
            .uri(&path)
            .header(header::AUTHORIZATION, format!("Bearer {}", t.admin_token));
        let body = match body_for(&route.method) {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            t.app.clone().oneshot(request.body(body).unwrap()),
        )
        .await
        .expect("an answer in time")
        .unwrap();
        let status = response.status();
        let streaming = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let text = if streaming {
            String::new()
        } else {
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED
                && status != StatusCode::UNAUTHORIZED
                && !status.is_server_error(),
            "{} {}: {status} {text}",
            route.method,
            route.path,
        );
        if status.is_client_error() {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            assert!(
                body["error"]["code"].is_string(),
                "{} {}: {status} without the error shape: {text}",
                route.method,
                route.path,
            );
        }
    }
}
