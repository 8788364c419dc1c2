//! Scenarios 8 and 9: every page, at 1280 and 360 px, in the light and the dark scheme, is
//! photographed to `<target>/ui-screenshots/<page>-<width>-<scheme>.png` (for people to look
//! at), checked with axe-core (no serious or critical WCAG 2.0/2.1 A/AA violation), checked for
//! horizontal overflow at 360 px, and for console errors. One test per width, so the two run in
//! parallel; each walks every page in both schemes and reports every problem found at once.

use axum::http::Method;
use datahub_core::rbac::Role;
use serde_json::json;

use super::{Browser, Driver, Scheme, Site, Target, WAIT, axe, dead_connection};
use crate::fixture::{ADMIN_PW, USER_PW};

/// What one walk needs: the site with content on every page, and the saved connection's id.
struct World {
    site: Site,
    id: String,
    _target: Target,
}

async fn world() -> World {
    let target = Target::start("ui-pages-db-pw-Ty35").await;
    let site = Site::start().await;
    let id = site.create(&target.connection("warehouse")).await;
    let mut described = dead_connection("legacy-crm");
    described["description"] = json!("The old CRM; moving to warehouse by June.");
    described["tags"] = json!(["crm", "legacy"]);
    site.create(&described).await;
    site.create(&dead_connection("billing-replica")).await;
    let viewer = site.user("vera", Role::Viewer).await;
    site.user("newcomer", Role::Editor).await;
    site.user("audrey", Role::Auditor).await;
    let (status, _, body) = site
        .api(
            Method::POST,
            "/teams",
            Some(&json!({"name": "analytics", "members": [viewer]})),
            None,
        )
        .await;
    assert!(status.is_success(), "{body}");
    site.grant(&id, &viewer, "use").await;
    site.wait_health(&id, "healthy").await;
    World {
        site,
        id,
        _target: target,
    }
}

/// The problems of the current page, labelled `label`.
async fn check(b: &Browser, label: &str, width: u32, problems: &mut Vec<String>) {
    b.settle().await;
    b.screenshot(label).await;
    for violation in axe::serious_violations(b).await {
        problems.push(format!("{label}: axe {violation}"));
    }
    if width <= 360 {
        if let Some((scroll, inner, culprits)) = b.horizontal_overflow().await {
            problems.push(format!(
                "{label}: the page scrolls sideways ({scroll} px wide in {inner} px): {}",
                culprits.join(", ")
            ));
        }
    }
    for error in b.console_errors().await {
        if !problems.iter().any(|p| p.ends_with(&error)) {
            problems.push(format!("{label}: console {error}"));
        }
    }
}

/// Walks every page at `width` in both schemes; returns every problem found.
async fn walk(width: u32) -> Vec<String> {
    let w = world().await;
    let driver = Driver::start().await;
    let b = driver.browser(&w.site).await;
    b.resize(width, if width <= 360 { 800 } else { 900 }).await;
    let mut problems = Vec::new();
    let id = &w.id;
    for scheme in Scheme::ALL {
        let at = |page: &str| format!("{page}-{width}-{}", scheme.name());
        b.forget_session().await;
        b.goto("/sign-in").await;
        b.scheme(scheme).await;
        b.field("Username").await;
        check(&b, &at("sign-in"), width, &mut problems).await;

        b.sign_in("newcomer", USER_PW).await;
        b.visit("/connections").await;
        b.named("link", "New connection").await;
        check(&b, &at("list-empty"), width, &mut problems).await;

        b.forget_session().await;
        b.sign_in("admin", ADMIN_PW).await;
        let pages: [(&str, String, &str); 10] = [
            ("list", "/connections".into(), "warehouse"),
            ("detail", format!("/connections/{id}"), "Test now"),
            ("new", "/connections/new".into(), "Connection URL"),
            ("edit", format!("/connections/{id}/edit"), "Connection URL"),
            ("users", "/users".into(), "newcomer"),
            ("teams", "/teams".into(), "analytics"),
            ("tokens", "/tokens".into(), "tests"),
            ("audit", "/audit".into(), "connection"),
            ("policy", "/policy".into(), "TLS"),
            ("not-found", "/no-such-page".into(), "not found"),
        ];
        for (page, path, shows) in pages {
            b.visit(&path).await;
            b.wait_for(&format!("{page} to show {shows:?}"), WAIT, async || {
                b.text()
                    .await
                    .to_lowercase()
                    .contains(&shows.to_lowercase())
                    .then_some(())
            })
            .await;
            check(&b, &at(page), width, &mut problems).await;
        }

        b.visit(&format!("/connections/{id}")).await;
        b.click_button("Delete").await;
        b.field("Type the name to confirm").await;
        check(&b, &at("delete-dialog"), width, &mut problems).await;
    }
    // The harness itself: axe must see a button without a name (critical), or a clean result
    // above proves nothing.
    b.goto("/no-such-page").await;
    b.settle().await;
    b.js(
        "document.querySelector('main').append(document.createElement('button'));",
        vec![],
    )
    .await;
    let planted = axe::serious_violations(&b).await;
    assert!(
        planted.iter().any(|v| v.starts_with("button-name")),
        "axe missed a planted violation: {planted:?}"
    );
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_at_1280_px_passes_axe_in_both_schemes_and_is_photographed() {
    let problems = walk(1280).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let shots = super::target_dir().join("ui-screenshots");
    for scheme in Scheme::ALL {
        let file = shots.join(format!("list-1280-{}.png", scheme.name()));
        assert!(file.exists(), "{}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_at_360_px_passes_axe_in_both_schemes_fits_the_width_and_is_photographed() {
    let problems = walk(360).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let shots = super::target_dir().join("ui-screenshots");
    for scheme in Scheme::ALL {
        let file = shots.join(format!("list-360-{}.png", scheme.name()));
        assert!(file.exists(), "{}", file.display());
    }
}
