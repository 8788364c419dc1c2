//! The one integration-test binary of datahub-server: one module per area.

// Helpers outside `#[test]` functions unwrap too; a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod e2e;
mod events;
mod metrics;
