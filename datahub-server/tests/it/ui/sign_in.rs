//! Scenario 1: sign in (wrong then right), sign out, and a signed-out deep link that signs in
//! and lands where it pointed.

use serde_json::json;

use super::{Driver, Site, dead_connection};
use crate::fixture::ADMIN_PW;

/// Whether the page's own `fetch` of `/api/v1/auth/me` is answered 200 (a live session).
const SIGNED_IN: &str = "const done = arguments[arguments.length - 1]; \
    fetch('/api/v1/auth/me', {credentials: 'same-origin'}).then(r => done(r.status), e => done(String(e)));";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_wrong_then_right_sign_out_and_a_deep_link_lands_after_sign_in() {
    let site = Site::start().await;
    let id = site.create(&dead_connection("deep-linked")).await;
    let driver = Driver::start().await;
    let b = driver.browser(&site).await;

    // A signed-out visit to the root goes to the sign-in page.
    b.goto("/").await;
    b.wait_path("/sign-in").await;

    // Wrong password: said so, still on the sign-in page, no session.
    b.fill("Username", "admin").await;
    b.fill("Password", "not-the-password").await;
    b.click_button("Sign in").await;
    let message = b
        .wait_for(
            "a message about the failed sign-in",
            super::WAIT,
            async || {
                let text = b.text().await.to_lowercase();
                ["wrong", "incorrect", "invalid", "not match"]
                    .iter()
                    .any(|w| text.contains(w))
                    .then_some(text)
            },
        )
        .await;
    assert!(b.path().await.starts_with("/sign-in"), "{message}");
    let alert = b
        .js(
            "const a = document.querySelector('[role=alert], [aria-live]'); \
             return a ? a.textContent : null;",
            vec![],
        )
        .await;
    assert!(
        alert.as_str().is_some_and(|t| !t.trim().is_empty()),
        "the failure is not announced (no role=alert or aria-live with text): {alert}"
    );
    assert_eq!(
        b.client.execute_async(SIGNED_IN, vec![]).await.unwrap(),
        json!(401)
    );

    // Right password: in, with the navigation and a sign-out button.
    b.fill("Password", ADMIN_PW).await;
    b.click_button("Sign in").await;
    b.wait_for("the sign-in to finish", super::WAIT, async || {
        (!b.path().await.starts_with("/sign-in")).then_some(())
    })
    .await;
    for link in [
        "Connections",
        "Users",
        "Teams",
        "Tokens",
        "Audit log",
        "Policy",
    ] {
        b.named("link", link).await;
    }
    assert_eq!(
        b.client.execute_async(SIGNED_IN, vec![]).await.unwrap(),
        json!(200)
    );

    // Sign out: back to the sign-in page, and the session is gone on the server too.
    b.click_button("Sign out").await;
    b.wait_path("/sign-in").await;
    assert_eq!(
        b.client.execute_async(SIGNED_IN, vec![]).await.unwrap(),
        json!(401)
    );

    // A signed-out deep link: sign in, land on that connection.
    let deep = format!("/connections/{id}");
    b.goto(&deep).await;
    b.wait_path("/sign-in").await;
    b.fill("Username", "admin").await;
    b.fill("Password", ADMIN_PW).await;
    b.click_button("Sign in").await;
    b.wait_path(&deep).await;
    b.wait_for("the connection's heading", super::WAIT, async || {
        let h1 = b
            .js(
                "const h = document.querySelector('h1'); return h ? h.textContent : '';",
                vec![],
            )
            .await;
        h1.as_str()
            .is_some_and(|t| t.contains("deep-linked"))
            .then_some(())
    })
    .await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
