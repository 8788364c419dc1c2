//! The one integration-test binary of datahub-testkit.
