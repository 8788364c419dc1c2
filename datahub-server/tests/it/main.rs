//! The one integration-test binary of datahub-server.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod canary;
mod common;
mod connections;
mod fuzz;
mod matrix;
mod session;
