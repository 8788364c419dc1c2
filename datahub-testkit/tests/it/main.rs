//! The one integration-test binary of datahub-testkit: real clusters and real sockets.

mod support;

mod cluster_auth;
mod cluster_lifecycle;
mod cluster_tls;
mod proxy;
