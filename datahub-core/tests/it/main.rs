//! The one integration-test binary of datahub-core.

// Helpers outside `#[test]` functions unwrap too; a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary;
mod crypto;
mod dsn;
mod durability;
mod hub;
mod hub_probe;
mod hub_views;
mod model;
mod monitor;
mod monitor_real;
mod net;
mod operator;
mod pool;
mod probe;
mod rbac;
mod sessions;
mod store;
