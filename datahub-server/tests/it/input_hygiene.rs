//! Bounded echoes (SECURITY.md S34): a client's request id reaches logs and the audit log only
//! when short and plain; the field named by a JSON error comes from serde's structured position,
//! never from text a client typed.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::common::{ADMIN_PASSWORD, Backend, TestApp, on_both_stores};

fn login_with_id(id: &str) -> Request<Body> {
    Request::post("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", id)
        .body(Body::from(
            json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string(),
        ))
        .unwrap()
}

on_both_stores!(
    #[tokio::test]
    s34_a_client_request_id_is_kept_only_when_short_and_plain
);

/// S34: an 8,000-character request id, one with a space and one of 65 characters are replaced
/// by the server's own (answered and audited); a short plain one is kept.
async fn s34_a_client_request_id_is_kept_only_when_short_and_plain(backend: Backend) {
    let t = TestApp::on(backend).await;
    let long = "a".repeat(8_000);
    let cases = [
        (long.clone(), false),
        ("has space".to_owned(), false),
        ("x".repeat(65), false),
        ("client-id_1.2".to_owned(), true),
        ("y".repeat(64), true),
    ];
    for (id, kept) in &cases {
        let reply = t.request(login_with_id(id)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let answered = reply.headers["x-request-id"].to_str().unwrap();
        assert_eq!(answered == id, *kept, "{}", &id[..id.len().min(20)]);
        assert!(answered.len() <= 64);
    }
    let audit = t
        .send(
            Method::GET,
            "/api/v1/audit?action=auth.login&per_page=100",
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
    assert!(!audit.text.contains(&long[..65]), "the long id was audited");
    let ids: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| row["request_id"].as_str())
        .collect();
    assert!(ids.contains(&"client-id_1.2"), "{ids:?}");
    assert!(!ids.contains(&"has space"));
    assert!(ids.iter().all(|id| id.len() <= 64));
}

on_both_stores!(
    #[tokio::test]
    s34_a_field_path_never_comes_from_a_value
);

/// S34: a value quoting serde's own words in a typed field never becomes the error's field.
async fn s34_a_field_path_never_comes_from_a_value(backend: Backend) {
    let t = TestApp::on(backend).await;
    let base = json!({
        "name": "quoted",
        "host": "127.0.0.1",
        "database": "app",
        "username": "app",
        "password": "quoted-password-1",
    });
    let with = |path: &[&str], value: Value| {
        let mut body = base.clone();
        let mut at = &mut body;
        for (i, key) in path.iter().enumerate() {
            if i + 1 == path.len() {
                at[*key] = value.clone();
            } else {
                if at.get(*key).is_none() {
                    at[*key] = json!({});
                }
                at = &mut at[*key];
            }
        }
        body
    };
    let cases = [
        (
            with(&["tls", "mode"], json!("missing field `evil`")),
            "tls.mode",
        ),
        (with(&["engine"], json!("missing field `evil`")), "engine"),
        (
            with(&["tls", "channel_binding"], json!("duplicate field `evil`")),
            "tls.channel_binding",
        ),
        (with(&["port"], json!("missing field `evil`")), "port"),
        (with(&["tags"], json!(["ok", 7])), "tags[1]"),
    ];
    for (body, field) in cases {
        let reply = t
            .send(
                Method::POST,
                "/api/v1/connections",
                Some(&t.admin_token),
                Some(body),
            )
            .await;
        reply.assert_error(StatusCode::BAD_REQUEST, Some(field));
        assert!(!reply.text.contains("evil"), "{}", reply.text);
    }
    // A role typed as serde's words: the field is `role`.
    let reply = t
        .send(
            Method::POST,
            "/api/v1/users",
            Some(&t.admin_token),
            Some(json!({"username": "q", "password": "a-long-password-1", "role": "missing field `evil`"})),
        )
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, Some("role"));
    // A truly missing field is still named, inside its object.
    let mut no_host = base.clone();
    no_host.as_object_mut().unwrap().remove("host");
    let reply = t
        .send(
            Method::POST,
            "/api/v1/connections",
            Some(&t.admin_token),
            Some(no_host),
        )
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, Some("host"));
}
