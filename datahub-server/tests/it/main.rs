//! The server's one integration-test binary: the app driven through `tower::ServiceExt::oneshot`.

// Helpers outside `#[test]` functions unwrap too; a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod accounts;
mod audit_policy;
mod cli;
mod connections;
mod routes;
mod session;
