//! Sign-in over HTTP: the session cookie, the same-origin rule for cookie-signed state
//! changes, sign-out, uniform failures and their rate limit (S20).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use datahub_core::crypto::Keyring;
use datahub_core::hub::Hub;
use datahub_core::store::SqliteStore;
use datahub_server::{AppState, HttpOptions, app};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const KEYRING: &str = "k1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const ADMIN_PW: &str = "session-test-admin-pw-Zq81";

struct Fixture {
    app: Router,
    _dir: tempfile::TempDir,
}

async fn fixture(options: HttpOptions) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let hub = Hub::open(Arc::new(store), Keyring::parse(KEYRING).unwrap())
        .await
        .unwrap();
    hub.bootstrap_admin(Some(ADMIN_PW.into())).await.unwrap();
    Fixture {
        app: app(AppState::new(hub, options)),
        _dir: dir,
    }
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, headers, body)
}

fn login(username: &str, password: &str) -> Request<Body> {
    Request::post("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"username": username, "password": password}).to_string(),
        ))
        .unwrap()
}

/// The `name=value` part of the session cookie set by a response.
fn session_cookie(headers: &axum::http::HeaderMap) -> String {
    let set = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn sign_in_by_cookie_then_out() {
    let f = fixture(HttpOptions::default()).await;
    let (status, headers, body) = send(&f.app, login("admin", ADMIN_PW)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["username"], "admin");
    assert_eq!(body["user"]["role"], "admin");
    let set = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.starts_with("datahub_session=dhs_"), "{set}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    // The token travels only in the cookie.
    let token = session_cookie(&headers)
        .trim_start_matches("datahub_session=")
        .to_owned();
    assert!(!body.to_string().contains(&token));
    assert!(!body.to_string().contains(ADMIN_PW));
    let cookie = session_cookie(&headers);

    let me = Request::get("/api/v1/auth/me")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&f.app, me).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["username"], "admin");
    assert_eq!(body["read_only"], false);

    // A state change by cookie needs this origin.
    let bare = Request::post("/api/v1/auth/logout")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&f.app, bare).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "cross_origin");
    let foreign = Request::post("/api/v1/auth/logout")
        .header(header::COOKIE, &cookie)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://127.0.0.9:8080")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, foreign).await.0, StatusCode::FORBIDDEN);
    let cross_site = Request::post("/api/v1/auth/logout")
        .header(header::COOKIE, &cookie)
        .header("sec-fetch-site", "cross-site")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://127.0.0.1:8080")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&f.app, cross_site).await.0, StatusCode::FORBIDDEN);

    let same = Request::post("/api/v1/auth/logout")
        .header(header::COOKIE, &cookie)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://127.0.0.1:8080")
        .body(Body::empty())
        .unwrap();
    let (status, headers, _) = send(&f.app, same).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cleared = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // The session is over in the store, not just in the browser.
    let again = Request::get("/api/v1/auth/me")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&f.app, again).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthenticated");
}

#[tokio::test]
async fn secure_cookie_under_https() {
    let f = fixture(HttpOptions {
        secure_cookies: true,
        ..HttpOptions::default()
    })
    .await;
    let (status, headers, _) = send(&f.app, login("admin", ADMIN_PW)).await;
    assert_eq!(status, StatusCode::OK);
    let set = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(set.contains("; Secure"), "{set}");
}

#[tokio::test]
async fn failures_are_uniform_and_rate_limited() {
    let f = fixture(HttpOptions::default()).await;
    let (s1, _, wrong_password) = send(&f.app, login("admin", "not-the-password-1")).await;
    let (s2, _, unknown_user) = send(&f.app, login("nobody", "not-the-password-1")).await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!(s2, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong_password["error"]["message"],
        unknown_user["error"]["message"]
    );
    assert!(wrong_password["error"]["request_id"].is_string());
    assert!(!wrong_password.to_string().contains("not-the-password-1"));
    // Ten failures per account name (two spent above on two names): then 429, even with the
    // right password, and still 429 for a made-up name being sprayed.
    for _ in 0..9 {
        let (status, _, _) = send(&f.app, login("admin", "not-the-password-1")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, headers, body) = send(&f.app, login("admin", ADMIN_PW)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
    // When to come back: the account's bucket refills one failure every 6 s, and the last one
    // was just now, so a little under 6 s, answered in whole seconds (rounded up).
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((5..=6).contains(&retry), "Retry-After: {retry}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.ends_with(&format!("try again in {retry} s")),
        "{message}"
    );
}

#[tokio::test]
async fn bad_sign_in_input_names_the_field() {
    let f = fixture(HttpOptions::default()).await;
    let cases = [
        ("{", "body"),
        (r#"{"username": "admin"}"#, "password"),
        (r#"{"username": 7, "password": "x"}"#, "username"),
        (
            r#"{"username": "admin", "password": "x", "extra": 1}"#,
            "extra",
        ),
    ];
    for (body, field) in cases {
        let request = Request::post("/api/v1/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        let (status, _, answer) = send(&f.app, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
    }
    let long = "x".repeat(5000);
    let (status, _, answer) = send(&f.app, login(&long, "pw")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["field"], "username");
}
