//! Scenario 5: two sessions edit the same connection; the second Save gets the conflict message,
//! keeps what its user typed and overwrites nothing. Then the delete dialog: Escape closes it
//! and returns the focus, leaving the page closes it, and its button stays disabled until the
//! connection's name is typed exactly.

use fantoccini::key::Key;

use super::{Driver, Site, Target, WAIT};
use crate::fixture::ADMIN_PW;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_save_of_a_stale_edit_gets_the_conflict_and_delete_needs_the_typed_name() {
    let target = Target::start("ui-conflict-db-pw-Lm90").await;
    let site = Site::start().await;
    let id = site.create(&target.connection("ledger")).await;
    let before = site.connection(&id).await["version"].as_u64().unwrap();
    let edit = format!("/connections/{id}/edit");

    let driver = Driver::start().await;
    let first = driver.browser(&site).await;
    let second = driver.browser(&site).await;
    for b in [&first, &second] {
        b.sign_in("admin", ADMIN_PW).await;
        b.goto(&edit).await;
        b.wait_for("the form with the stored name", WAIT, async || {
            (b.value("Name").await == "ledger").then_some(())
        })
        .await;
    }

    // The first session saves a new name.
    first.fill("Name", "ledger-first").await;
    first.click_button("Save").await;
    first.wait_path(&format!("/connections/{id}")).await;
    let saved = site.connection(&id).await;
    assert_eq!(saved["name"], "ledger-first");
    let after_first = saved["version"].as_u64().unwrap();
    assert!(after_first > before);

    // The second, still at the old version, is told and overwrites nothing.
    second.fill("Name", "ledger-second").await;
    second
        .fill("Description", "typed by the second session")
        .await;
    second.click_button("Save").await;
    second
        .wait_for("the conflict message", WAIT, async || {
            let text = second.text().await;
            text.contains("changed by someone else").then_some(())
        })
        .await;
    let alert = second
        .js(
            "return Array.from(document.querySelectorAll('[role=alert]')).map(e => e.innerText).join(' ');",
            vec![],
        )
        .await;
    assert!(
        alert.as_str().unwrap_or_default().contains("someone else"),
        "the conflict is not announced as an alert: {alert}"
    );
    assert_eq!(second.path().await, edit, "the form was left");
    assert_eq!(
        second.value("Name").await,
        "ledger-second",
        "typed value lost"
    );
    assert_eq!(
        second.value("Description").await,
        "typed by the second session",
        "typed value lost"
    );
    let now = site.connection(&id).await;
    assert_eq!(now["name"], "ledger-first", "overwritten: {now}");
    assert!(now["description"].is_null(), "overwritten: {now}");
    assert_eq!(now["version"].as_u64().unwrap(), after_first);

    // The delete dialog (first session, on the detail page): Escape closes it and gives the
    // focus back to Delete; leaving the page (Back) closes it too.
    first.settle().await;
    first.click_button("Delete").await;
    first.field("Type the name to confirm").await;
    first.keys(&[Key::Escape.into()]).await;
    first
        .wait_for("the dialog to close", WAIT, async || {
            (open_dialogs(&first).await == 0).then_some(())
        })
        .await;
    assert_eq!(
        first.focused().await.0,
        "Delete",
        "focus not back on the opener"
    );
    first.click_button("Delete").await;
    first.field("Type the name to confirm").await;
    first.client.back().await.unwrap();
    first.wait_path(&edit).await;
    assert_eq!(
        open_dialogs(&first).await,
        0,
        "the delete dialog stayed open on the page navigated to"
    );
    first.client.forward().await.unwrap();
    first.wait_path(&format!("/connections/{id}")).await;

    // Delete: disabled until the exact name is typed.
    first.settle().await;
    first.click_button("Delete").await;
    let confirm = first.field("Type the name to confirm").await;
    let delete = first.named("button", "Delete connection").await;
    assert!(!delete.is_enabled().await.unwrap(), "enabled before typing");
    for typed in ["ledger", "ledger-firs", "Ledger-first", "ledger-first "] {
        confirm.clear().await.unwrap();
        confirm.send_keys(typed).await.unwrap();
        assert!(
            !delete.is_enabled().await.unwrap(),
            "enabled with {typed:?} typed"
        );
    }
    // Enter in the field does nothing while the name does not match.
    first.keys(&[Key::Enter.into()]).await;
    assert_eq!(site.connections().await.len(), 1);
    confirm.clear().await.unwrap();
    confirm.send_keys("ledger-first").await.unwrap();
    assert!(
        delete.is_enabled().await.unwrap(),
        "disabled with the name typed"
    );
    delete.click().await.unwrap();
    first.wait_path("/connections").await;
    assert!(site.connections().await.is_empty(), "not deleted");
    for b in [&first, &second] {
        let errors = b.console_errors().await;
        assert!(errors.is_empty(), "console errors: {errors:#?}");
    }
}

/// How many dialogs are open (a modal `<dialog>` or an element with `role=dialog` shown).
async fn open_dialogs(b: &super::Browser) -> u64 {
    b.js(
        "return Array.from(document.querySelectorAll('dialog[open], [role=dialog]')) \
           .filter(d => d.getClientRects().length > 0).length;",
        vec![],
    )
    .await
    .as_u64()
    .unwrap()
}
