//! Scenario 4: a viewer sees only the connections granted to it, with no control it may not
//! use, and a deep link to one it was not granted says "not found" without naming it.

use super::{Driver, Site, WAIT, dead_connection};
use crate::fixture::USER_PW;
use datahub_core::rbac::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_only_granted_connections_without_edit_delete_reveal_and_others_are_not_found()
 {
    let site = Site::start().await;
    let viewer = site.user("vera", Role::Viewer).await;
    let granted = site.create(&dead_connection("granted-db")).await;
    let hidden = site.create(&dead_connection("hidden-db")).await;
    site.create(&dead_connection("other-db")).await;
    site.grant(&granted, &viewer, "view").await;

    let driver = Driver::start().await;
    let b = driver.browser(&site).await;
    b.sign_in("vera", USER_PW).await;
    b.goto("/connections").await;
    b.wait_for("the granted row", WAIT, async || {
        b.row_status("granted-db").await
    })
    .await;
    b.settle().await;
    let rows = b
        .js(
            "return Array.from(document.querySelectorAll('table a[href^=\"/connections/\"]')).map(a => a.textContent.trim());",
            vec![],
        )
        .await;
    assert_eq!(
        rows,
        serde_json::json!(["granted-db"]),
        "rows shown to the viewer"
    );
    let text = b.text().await;
    for name in ["hidden-db", "other-db"] {
        assert!(!text.contains(name), "{name} shown to the viewer");
    }
    // Navigation: only what a viewer may use (everyone reads the policy); no "New connection".
    for (name, shown) in [
        ("Connections", true),
        ("Teams", true),
        ("Tokens", true),
        ("Users", false),
        ("Audit log", false),
        ("Policy", true),
        ("New connection", false),
    ] {
        assert_eq!(b.has("control", name).await, shown, "control {name:?}");
    }

    // The granted connection's page: no Edit, Delete, Reveal or Test now (view only).
    b.click_link("granted-db").await;
    b.wait_path(&format!("/connections/{granted}")).await;
    b.settle().await;
    assert!(b.text().await.contains("granted-db"));
    for control in ["Edit", "Delete", "Reveal", "Test now"] {
        assert!(
            !b.has("control", control).await,
            "{control} shown to a viewer"
        );
    }
    // Its edit page by URL does not offer a form either.
    b.goto(&format!("/connections/{granted}/edit")).await;
    b.settle().await;
    assert!(
        !b.has("button", "Save").await,
        "a viewer gets a Save button"
    );

    // A connection not granted: "not found", and not its name.
    b.goto(&format!("/connections/{hidden}")).await;
    b.settle().await;
    let text = b.text().await;
    assert!(
        text.to_lowercase().contains("not found"),
        "no \"not found\" message:\n{text}"
    );
    assert!(!text.contains("hidden-db"), "{text}");
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
