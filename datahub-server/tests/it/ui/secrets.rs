//! Scenario 6: what comes from the API is text, and a password once sent is gone from the page.
//! A description of `<img src=x onerror=alert(1)>` shows as those characters on the list and the
//! detail page (no image element, no alert); a canary password is nowhere in the DOM (markup and
//! every field's value), the storages, the URL or the console after the test and after the save.

use serde_json::json;

use super::{Browser, Driver, Site, Target, WAIT};
use crate::fixture::ADMIN_PW;

const CANARY: &str = "ui-canary-pw-Xr7Tq29Lw";
const XSS: &str = "<img src=x onerror=alert(1)>";

/// Everything the page holds that a secret could hide in, as `[where, text]` pairs.
const PLACES: &str = r#"
const places = [['markup', document.documentElement.outerHTML], ['url', location.href], ['title', document.title]];
for (const el of document.querySelectorAll('input, textarea, select')) places.push(['value of ' + (el.name || el.id || el.tagName), el.value]);
for (const [name, store] of [['localStorage', localStorage], ['sessionStorage', sessionStorage]]) {
  for (let i = 0; i < store.length; i++) { const k = store.key(i); places.push([name, k + '=' + store.getItem(k)]); }
}
return places;
"#;

/// Where `secret` shows in the page, its storages, its URL or the console so far.
async fn leaks(b: &Browser, secret: &str) -> Vec<String> {
    let places = b.js(PLACES, vec![]).await;
    let mut found: Vec<String> = places
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[1].as_str().is_some_and(|t| t.contains(secret)))
        .map(|p| p[0].as_str().unwrap_or("?").to_owned())
        .collect();
    found.extend(
        b.console()
            .await
            .into_iter()
            .filter(|m| m.contains(secret))
            .map(|m| format!("console: {m}")),
    );
    found
}

/// Asserts that the XSS text shows as text and made no element and no alert.
async fn assert_inert(b: &Browser, page: &str) {
    b.wait_text(XSS).await;
    let images = b
        .js(
            "return Array.from(document.querySelectorAll('img')).map(i => i.getAttribute('src'));",
            vec![],
        )
        .await;
    assert_eq!(images, json!([]), "images on the {page} page");
    assert!(
        b.client.get_alert_text().await.is_err(),
        "an alert is open on the {page} page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_text_stays_text_and_a_canary_password_leaves_no_trace_after_test_and_save() {
    let target = Target::start(CANARY).await;
    let site = Site::start().await;
    let driver = Driver::start().await;
    let b = driver.browser(&site).await;
    b.sign_in("admin", ADMIN_PW).await;
    b.goto("/connections/new").await;
    for (label, value) in [
        ("Name", "canary-db".to_owned()),
        ("Description", XSS.to_owned()),
        ("Host", "127.0.0.1".to_owned()),
        ("Port", target.port().to_string()),
        ("Database", "app".to_owned()),
        ("Username", "app".to_owned()),
        ("Password", CANARY.to_owned()),
    ] {
        b.fill(label, value.as_str()).await;
    }
    b.field("TLS mode")
        .await
        .select_by_value("verify-full")
        .await
        .unwrap();
    b.click_button("Certificates and client key").await;
    b.fill("CA certificate", &target.ca_pem()).await;

    b.click_button("Test connection").await;
    b.wait_for("a successful test", WAIT, async || {
        let text = super::create::status_region(&b).await.to_lowercase();
        (text.contains("query") && text.contains(" ms")).then_some(())
    })
    .await;
    let found = leaks(&b, CANARY).await;
    assert!(
        found.is_empty(),
        "the password after the test in: {found:?}"
    );

    b.click_button("Save").await;
    let id = b
        .wait_for("the saved connection's page", WAIT, async || {
            let path = b.path().await;
            let id = path.strip_prefix("/connections/")?;
            (id != "new" && !id.contains('/')).then(|| id.to_owned())
        })
        .await;
    assert_eq!(site.connection(&id).await["description"], XSS);
    assert_inert(&b, "detail").await;
    let found = leaks(&b, CANARY).await;
    assert!(
        found.is_empty(),
        "the password after the save in: {found:?}"
    );

    // The list shows the description as text too (when it shows it at all), and a reload of
    // the detail page (a fresh document) stays inert.
    b.goto("/connections").await;
    b.settle().await;
    assert!(b.row_status("canary-db").await.is_some());
    let images = b
        .js("return document.querySelectorAll('img').length;", vec![])
        .await;
    assert_eq!(images, json!(0), "images on the list page");
    b.goto(&format!("/connections/{id}")).await;
    assert_inert(&b, "reloaded detail").await;
    let found = leaks(&b, CANARY).await;
    assert!(
        found.is_empty(),
        "the password after a reload in: {found:?}"
    );
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
