//! Scenario 3: the list follows the monitor live. The target stops: its row turns `down` on the
//! open page; it starts again: `healthy`; the page is never reloaded. The connection is checked
//! every 10 s (the model's minimum) and the monitor's `fall = rise = 1`, so each change shows
//! within one interval.

use super::{Driver, MONITOR_WAIT, Site, Target};
use crate::fixture::ADMIN_PW;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_shows_a_stopped_target_down_and_a_restarted_one_healthy_without_a_reload() {
    let mut target = Target::start("ui-live-db-pw-Qe51").await;
    let site = Site::start().await;
    let id = site.create(&target.connection("orders")).await;
    site.create(&super::dead_connection("always-dead")).await;
    site.wait_health(&id, "healthy").await;
    let driver = Driver::start().await;
    let b = driver.browser(&site).await;
    b.sign_in("admin", ADMIN_PW).await;
    b.goto("/connections").await;
    b.wait_row_status("orders", "healthy", super::WAIT).await;
    b.set_reload_marker().await;

    target.stop().await;
    b.wait_row_status("orders", "down", MONITOR_WAIT).await;
    assert_eq!(site.connection(&id).await["health"]["status"], "down");

    target.restart().await;
    b.wait_row_status("orders", "healthy", MONITOR_WAIT).await;
    assert!(b.reload_marker_kept().await, "the page was reloaded");
    // The other row was not disturbed by the events of this one.
    assert!(b.row_status("always-dead").await.is_some());
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
