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

/// Replacing grants at the connection's current version, for tests whose subject is not the
/// version check (S26's own tests name versions explicitly).
pub(crate) trait GrantsNow {
    /// `set_grants` with the version read just before.
    async fn set_grants_now(
        &self,
        principal: &datahub_core::rbac::Principal,
        id: datahub_core::ConnectionId,
        grants: &[datahub_core::rbac::Grant],
    ) -> datahub_core::Result<datahub_core::hub::ConnectionGrants>;
}

impl GrantsNow for datahub_core::hub::Hub {
    async fn set_grants_now(
        &self,
        principal: &datahub_core::rbac::Principal,
        id: datahub_core::ConnectionId,
        grants: &[datahub_core::rbac::Grant],
    ) -> datahub_core::Result<datahub_core::hub::ConnectionGrants> {
        let version = self.grants(principal, id).await?.version;
        self.set_grants(principal, id, version, grants).await
    }
}

/// The store's `set_grants` at the connection's current version (version 1 when there is no
/// such connection, so the store answers `NotFound`).
pub(crate) async fn store_set_grants(
    store: &dyn datahub_core::store::Store,
    id: datahub_core::ConnectionId,
    grants: &[datahub_core::rbac::Grant],
    audit: &datahub_core::audit::AuditEvent,
) -> datahub_core::Result<u64> {
    let version = store.connection_summary(id).await?.map_or(1, |c| c.version);
    store.set_grants(id, version, grants, audit).await
}
