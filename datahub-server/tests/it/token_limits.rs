//! API tokens never outlive what minted them (SECURITY.md S33): a token made with a token is
//! capped at its expiry and rights; disabling a user revokes its tokens and sessions for good.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use datahub_core::rbac::Role;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::common::{ADMIN_PASSWORD, Backend, TestApp, on_both_stores};

fn expiry(token: &Value) -> Option<OffsetDateTime> {
    token["expires_at"]
        .as_str()
        .map(|t| OffsetDateTime::parse(t, &Rfc3339).unwrap())
}

async fn mint(t: &TestApp, with: &str, body: Value) -> (StatusCode, Value) {
    let reply = t
        .send(Method::POST, "/api/v1/tokens", Some(with), Some(body))
        .await;
    (reply.status, reply.body)
}

on_both_stores!(
    #[tokio::test]
    s33_a_token_never_mints_one_that_outlives_it
);

/// S33: through a token, a new token expires no later than the minting one (also when asked
/// for no expiry or ten years) and a read-only token mints none; from a signed-in browser
/// session a long-lived token is made as asked.
async fn s33_a_token_never_mints_one_that_outlives_it(backend: Backend) {
    let t = TestApp::on(backend).await;
    let (status, short) = mint(
        &t,
        &t.admin_token,
        json!({"name": "two days", "expires_in_days": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{short}");
    let cap = expiry(&short).unwrap();
    let short_token = short["token"].as_str().unwrap();
    for body in [
        json!({"name": "forever"}),
        json!({"name": "ten years", "expires_in_days": 3650}),
    ] {
        let (status, minted) = mint(&t, short_token, body).await;
        assert_eq!(status, StatusCode::CREATED, "{minted}");
        assert!(expiry(&minted).unwrap() <= cap, "{minted}");
    }
    // A shorter lifetime than the minter's stays as asked.
    let (_, one_day) = mint(
        &t,
        short_token,
        json!({"name": "one", "expires_in_days": 1}),
    )
    .await;
    assert!(expiry(&one_day).unwrap() < cap);

    // A read-only token mints nothing, writable or not.
    let (_, read_only) = mint(&t, &t.admin_token, json!({"name": "ro", "read_only": true})).await;
    let read_only = read_only["token"].as_str().unwrap();
    for body in [
        json!({"name": "rw"}),
        json!({"name": "ro2", "read_only": true}),
    ] {
        let (status, answer) = mint(&t, read_only, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    }

    // From a browser session: no expiry, as asked.
    let login = t
        .request(
            Request::post("/api/v1/auth/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"username": "admin", "password": ADMIN_PASSWORD}).to_string(),
                ))
                .unwrap(),
        )
        .await;
    let cookie = login.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let reply = t
        .request(
            Request::post("/api/v1/tokens")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::COOKIE, cookie)
                .header("sec-fetch-site", "same-origin")
                .body(Body::from(json!({"name": "from the browser"}).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.body["expires_at"], Value::Null);
}

on_both_stores!(
    #[tokio::test]
    s33_disabling_a_user_revokes_its_tokens_for_good
);

/// S33: disabling a user revokes its tokens (and sessions) for good: enabling it again brings
/// none back; a password reset ends sessions but leaves tokens working.
async fn s33_disabling_a_user_revokes_its_tokens_for_good(backend: Backend) {
    let t = TestApp::on(backend).await;
    let ed = t.account("ed", Role::Editor).await;
    let me = |token: &str| {
        let token = token.to_owned();
        let t = &t;
        async move {
            t.send(Method::GET, "/api/v1/auth/me", Some(&token), None)
                .await
                .status
        }
    };
    // A password reset leaves the token working.
    let user = format!("/api/v1/users/{}", ed.id);
    let reset = json!({"password": "another-password-99"});
    let reply = t
        .send(Method::PATCH, &user, Some(&t.admin_token), Some(reset))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(me(&ed.token).await, StatusCode::OK);

    for disabled in [true, false] {
        let reply = t
            .send(
                Method::PATCH,
                &user,
                Some(&t.admin_token),
                Some(json!({"disabled": disabled})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(
            me(&ed.token).await,
            StatusCode::UNAUTHORIZED,
            "disabled={disabled}"
        );
    }
    // The token is listed as revoked; a new one works.
    let fresh = t.token_for("ed", "another-password-99", false).await;
    assert_eq!(me(&fresh).await, StatusCode::OK);
    let listed = t
        .send(Method::GET, "/api/v1/tokens", Some(&fresh), None)
        .await;
    let revoked: Vec<&Value> = listed.body.as_array().unwrap().iter().collect();
    assert_eq!(revoked.len(), 2, "{}", listed.text);
    assert!(revoked[0]["revoked_at"].is_string(), "{}", listed.text);
    assert!(revoked[1]["revoked_at"].is_null(), "{}", listed.text);
}
