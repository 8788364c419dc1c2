//! The one integration-test binary of datahub-core.

mod canary;
mod crypto;
mod dsn;
mod model;
