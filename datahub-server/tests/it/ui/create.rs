//! Scenario 2: a new connection from a pasted URL. The URL fills the fields and gives up its
//! password to the Password field; a wrong password's test shows the `auth` failure with the
//! API's hint and focuses the Password field; the right one shows each step with its time;
//! Save adds the row to the list, which turns healthy without a reload.

use axum::http::{Method, StatusCode};
use fantoccini::key::Key;
use serde_json::json;

use super::{Driver, MONITOR_WAIT, Site, Target, WAIT};
use crate::fixture::ADMIN_PW;

const DB_PW: &str = "ui-create-db-pw-Hk27";
const WRONG_PW: &str = "ui-create-wrong-pw-Vb83";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_url_fills_the_form_tests_wrong_and_right_and_the_saved_row_turns_healthy_live() {
    let target = Target::start(DB_PW).await;
    let site = Site::start().await;
    let driver = Driver::start().await;
    let b = driver.browser(&site).await;
    b.sign_in("admin", ADMIN_PW).await;
    b.goto("/connections").await;
    b.settle().await;
    b.set_reload_marker().await;
    b.click_link("New connection").await;
    b.wait_path("/connections/new").await;

    // The URL as pasted (typed, then the field left).
    let url_field = b.field("Connection URL").await;
    url_field.send_keys(&target.url(WRONG_PW)).await.unwrap();
    b.keys(&[Key::Tab.into()]).await;
    let filled = [
        ("Host", "127.0.0.1".to_owned()),
        ("Port", target.port().to_string()),
        ("Database", "app".to_owned()),
        ("Username", "app".to_owned()),
        ("Password", WRONG_PW.to_owned()),
        ("TLS mode", "verify-full".to_owned()),
    ];
    for (label, want) in &filled {
        assert_eq!(&b.value(label).await, want, "field {label}");
    }
    let url_now = b.value("Connection URL").await;
    assert!(
        !url_now.contains(WRONG_PW),
        "the password stayed in the URL field: {url_now}"
    );
    b.fill("Name", "warehouse").await;
    b.click_button("Certificates and client key").await;
    b.fill("CA certificate", &target.ca_pem()).await;

    // Wrong password: the auth failure, the API's own hint, the Password field focused.
    let (status, _, expected) = site
        .api(
            Method::POST,
            "/connections/test",
            Some(&json!({
                "host": "127.0.0.1", "port": target.port(), "database": "app",
                "username": "app", "password": WRONG_PW,
                "tls": {"mode": "verify-full", "ca_cert_pem": target.ca_pem()},
            })),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{expected}");
    assert_eq!(expected["step"], "auth", "{expected}");
    let hint = expected["hint"].as_str().unwrap().to_owned();
    b.click_button("Test connection").await;
    let shown = b
        .wait_for("the auth failure in the status region", WAIT, async || {
            let text = status_region(&b).await;
            text.contains(&hint).then_some(text)
        })
        .await;
    assert!(shown.to_lowercase().contains("auth"), "{shown}");
    let (focused, _, _) = b.focused().await;
    assert_eq!(
        focused, "Password",
        "the field the failure points at is not focused"
    );

    // Right password: every step with its time.
    b.fill("Password", DB_PW).await;
    b.click_button("Test connection").await;
    let steps = b
        .wait_for("the successful steps", WAIT, async || {
            let text = status_region(&b).await;
            let lower = text.to_lowercase();
            (["tcp", "tls", "auth", "query"]
                .iter()
                .all(|s| lower.contains(s))
                && !lower.contains(&hint.to_lowercase()))
            .then_some(text)
        })
        .await;
    let timings = steps.matches(" ms").count();
    assert!(
        timings >= 4,
        "fewer than 4 step timings in the result:\n{steps}"
    );

    // Save: the detail page, then the list, where the row turns healthy with no reload.
    b.click_button("Save").await;
    let saved = b
        .wait_for("the saved connection's page", WAIT, async || {
            let path = b.path().await;
            let id = path.strip_prefix("/connections/")?;
            (id != "new" && !id.contains('/')).then(|| id.to_owned())
        })
        .await;
    let stored = site.connection(&saved).await;
    assert_eq!(stored["name"], "warehouse");
    assert_eq!(stored["port"], target.port());
    assert_eq!(stored["tls"]["mode"], "verify-full");
    b.click_link("Connections").await;
    b.wait_path("/connections").await;
    b.wait_for("the new row", WAIT, async || {
        b.row_status("warehouse").await
    })
    .await;
    b.wait_row_status("warehouse", "healthy", MONITOR_WAIT)
        .await;
    assert!(b.reload_marker_kept().await, "the page was reloaded");
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// The text of the form's `role="status"` region(s).
pub(super) async fn status_region(b: &super::Browser) -> String {
    b.js(
        "return Array.from(document.querySelectorAll('[role=status]')).map(e => e.innerText).join('\\n');",
        vec![],
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}
