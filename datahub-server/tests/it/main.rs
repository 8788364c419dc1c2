//! The server's one integration-test binary: the app driven through `tower::ServiceExt::oneshot`,
//! and the built binary over real sockets (`cli`, `e2e`).

// Helpers outside `#[test]` functions unwrap too; a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fixture;

mod accounts;
mod assets;
mod audit_policy;
mod canary;
mod cli;
mod connections;
mod e2e;
mod events;
mod fuzz;
mod hygiene;
mod input_hygiene;
mod lending;
mod matrix;
mod metrics;
mod replicas;
mod routes;
mod scan;
mod schemathesis;
mod session;
mod throttle;
mod token_limits;
mod ui;
