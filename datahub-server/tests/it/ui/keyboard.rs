//! Scenario 7: the whole create flow with the keyboard only: WebDriver key actions (Tab, Enter,
//! typing), no click and no element-targeted command. Every control reached on the way must
//! show a focus indicator.

use fantoccini::key::Key;

use super::{Driver, Site, Target, WAIT};
use crate::fixture::ADMIN_PW;

const DB_PW: &str = "ui-keyboard-db-pw-Nc64";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_create_flow_works_with_the_keyboard_alone_and_focus_is_always_visible() {
    let target = Target::start(DB_PW).await;
    let site = Site::start().await;
    let driver = Driver::start().await;
    let b = driver.browser(&site).await;
    let enter: char = Key::Enter.into();
    let mut unmarked = Vec::new();

    b.goto("/sign-in").await;
    b.settle().await;
    unmarked.extend(b.tab_to("Username").await);
    b.type_text("admin").await;
    unmarked.extend(b.tab_to("Password").await);
    b.type_text(ADMIN_PW).await;
    b.keys(&[enter]).await;
    b.wait_for("the sign-in to finish", WAIT, async || {
        (!b.path().await.starts_with("/sign-in")).then_some(())
    })
    .await;
    b.settle().await;

    unmarked.extend(b.tab_to("New connection").await);
    b.keys(&[enter]).await;
    b.wait_path("/connections/new").await;
    b.settle().await;
    unmarked.extend(b.tab_to("Connection URL").await);
    b.type_text(&target.url(DB_PW)).await;
    unmarked.extend(b.tab_to("Name").await);
    b.type_text("keyboard-made").await;
    unmarked.extend(b.tab_to("Certificates and client key").await);
    b.keys(&[enter]).await;
    unmarked.extend(b.tab_to("CA certificate").await);
    b.type_text(&target.ca_pem()).await;
    assert_eq!(b.value("Password").await, DB_PW, "the URL's password");
    assert_eq!(b.value("TLS mode").await, "verify-full");

    unmarked.extend(b.tab_to("Test connection").await);
    b.keys(&[enter]).await;
    b.wait_for("a successful test", WAIT, async || {
        let text = super::create::status_region(&b).await.to_lowercase();
        (text.contains("query") && text.contains(" ms")).then_some(())
    })
    .await;
    unmarked.extend(b.tab_to("Save").await);
    b.keys(&[enter]).await;
    let id = b
        .wait_for("the saved connection's page", WAIT, async || {
            let path = b.path().await;
            let id = path.strip_prefix("/connections/")?;
            (id != "new" && !id.contains('/')).then(|| id.to_owned())
        })
        .await;
    let stored = site.connection(&id).await;
    assert_eq!(stored["name"], "keyboard-made");
    assert_eq!(stored["tls"]["mode"], "verify-full");
    site.wait_health(&id, "healthy").await;
    b.wait_text("keyboard-made").await;
    assert!(
        unmarked.is_empty(),
        "focused without a visible indicator: {unmarked:#?}"
    );
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
