//! Full page loads in a row (reloads, pasted deep links) each show their page promptly. Each
//! load opens the page's event stream; over plain HTTP/1.1 Chromium keeps at most six
//! connections per host, and a stream the previous page leaves open holds one of them for
//! seconds after the page is gone, so a quick series of loads stalls the next page's API calls.
//! (Measured: 3 of 16 loads stalled more than 2 s; with each page's EventSource closed on
//! `pagehide`, none.)

use std::time::Duration;

use super::{Driver, Site, dead_connection};
use crate::fixture::ADMIN_PW;

/// How long a loaded page may take to show its heading and content (normally ~0.2 s).
const PROMPT: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_full_page_loads_in_a_row_each_render_promptly() {
    let site = Site::start().await;
    site.create(&dead_connection("reloaded")).await;
    let driver = Driver::start().await;
    let b = driver.browser(&site).await;
    b.sign_in("admin", ADMIN_PW).await;
    for round in 0..8 {
        for (path, shows) in [("/connections", "reloaded"), ("/tokens", "tests")] {
            b.goto(path).await;
            b.wait_for(
                &format!("load {} of {path} to show {shows:?}", round * 2 + 1),
                PROMPT,
                async || b.text().await.contains(shows).then_some(()),
            )
            .await;
        }
    }
}
