//! The one integration-test binary of datahub-testkit: real clusters and real sockets.

// Tests may unwrap (clippy.toml allows it inside #[test] functions); this extends that to the
// helpers the tests share, which clippy does not see as test code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod cluster_auth;
mod cluster_lifecycle;
mod cluster_tls;
mod proxy;
