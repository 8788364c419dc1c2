//! Hygiene of issue 13 (SECURITY.md S34) over HTTP: the created token's answer is built from a
//! secret type at the last moment and its `Debug` shows no token; `Strict-Transport-Security`
//! only when serving HTTPS. (The store URL's redaction is tested in `config.rs`, the Origin
//! check in `auth.rs`, HTTPS end to end in `e2e.rs`.)

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use datahub_server::HttpOptions;
use datahub_server::api::token::CreatedTokenBody;
use serde_json::Value;

use crate::common::{Backend, on_both_stores};
use crate::fixture::{Fixture, get, send};

on_both_stores!(
    #[tokio::test]
    the_created_token_is_a_secret_until_it_is_written
);

/// S34: `POST /api/v1/tokens` answers the token once, in the documented shape; the type that
/// carries it to the wire redacts it in `Debug`.
async fn the_created_token_is_a_secret_until_it_is_written(backend: Backend) {
    let f = Fixture::on(backend, HttpOptions::default(), |state, _| state).await;
    let request = Request::post("/api/v1/tokens")
        .header(header::AUTHORIZATION, format!("Bearer {}", f.admin_token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"name":"ci","expires_in_days":7}"#))
        .unwrap();
    let (status, _, body) = send(f.app(), request).await;
    assert_eq!(status, StatusCode::CREATED);
    let created: Value = serde_json::from_slice(&body).unwrap();
    let mut keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "expires_at",
            "id",
            "name",
            "read_only",
            "token"
        ]
    );
    assert!(created["token"].as_str().unwrap().starts_with("dh_"));
    assert!(created["expires_at"].is_string());
    // The token works.
    let (status, _, _) = send(f.app(), get("/api/v1/auth/me", created["token"].as_str())).await;
    assert_eq!(status, StatusCode::OK);

    let new = f
        .hub
        .create_token(&f.admin, "debug", None, true)
        .await
        .unwrap();
    let text = new.token.expose_secret().to_owned();
    let body = CreatedTokenBody(new);
    let shown = format!("{body:?} {body:#?}");
    assert!(!shown.contains(&text), "{shown}");
    let json = serde_json::to_value(&body).unwrap();
    assert_eq!(json["token"], text.as_str());
    assert_eq!(json["expires_at"], Value::Null);
    assert_eq!(json["read_only"], true);
}

on_both_stores!(
    #[tokio::test]
    hsts_only_when_serving_https
);

/// S34: `Strict-Transport-Security` on every answer when serving HTTPS, never over plain HTTP.
async fn hsts_only_when_serving_https(backend: Backend) {
    let plain = Fixture::on(backend, HttpOptions::default(), |state, _| state).await;
    let (_, headers, _) = send(plain.app(), get("/healthz", None)).await;
    assert!(headers.get(header::STRICT_TRANSPORT_SECURITY).is_none());

    let https = Fixture::on(
        backend,
        HttpOptions {
            secure_cookies: true,
            ..HttpOptions::default()
        },
        |state, _| state,
    )
    .await;
    for path in ["/healthz", "/api/v1/connections", "/api/v1/nowhere"] {
        let (_, headers, _) = send(https.app(), get(path, Some(&https.admin_token))).await;
        assert_eq!(
            headers.get(header::STRICT_TRANSPORT_SECURITY).unwrap(),
            datahub_server::HSTS,
            "{path}"
        );
    }
}
