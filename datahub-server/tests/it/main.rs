//! The one integration-test binary of datahub-server.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod session;
