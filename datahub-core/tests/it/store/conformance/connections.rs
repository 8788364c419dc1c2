//! Connections: every field round-trips, names are unique, versions guard updates and deletes
//! (S26).

use super::*;

/// This area's cases, run on every backend by [`conformance_suite!`](super::conformance_suite):
/// list each case here, next to its function (an unlisted case is dead code, which the build
/// refuses).
macro_rules! cases {
    ($make:expr) => {
        $crate::store::conformance::run_cases!($make; connections;
            round_trip_of_every_field,
            name_taken_is_a_conflict,
            update_bumps_the_version,
            stale_update_is_a_conflict_and_changes_nothing,
            delete_checks_the_version_and_cascades,
            a_test_reads_the_row_its_grants_and_the_policy_at_once,
            a_test_by_name_reads_what_a_test_by_id_reads,
        );
    };
}
pub(crate) use cases;

pub(crate) async fn round_trip_of_every_field(store: Handle) {
    let owner = user(&store, "owner").await;
    let mut r = row(full_spec("orders-primary"), owner);
    r.secrets = sealed(&keyring("k1", 1), r.id, "canary-pw", true);
    store
        .insert_connection(&r, &ev("connection.create"))
        .await
        .unwrap();

    let got = store.connection(r.id).await.unwrap().unwrap();
    assert_eq!(got, r);
    assert_eq!(
        got.secrets.password.as_bytes(),
        r.secrets.password.as_bytes()
    );
    assert_eq!(got.secrets.dek.to_bytes(), r.secrets.dek.to_bytes());
    assert_eq!(
        got.secrets.client_key_pem.as_ref().unwrap().as_bytes(),
        r.secrets.client_key_pem.as_ref().unwrap().as_bytes()
    );
    // The sealed bytes still open with the key.
    let dek = keyring("k1", 1).unwrap_dek(r.id, &got.secrets.dek).unwrap();
    let pw = dek.open(r.id, "password", &got.secrets.password).unwrap();
    assert_eq!(pw.expose_secret(), b"canary-pw");

    let by_name = store
        .connection_by_name(&r.spec.name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_name, r);

    let s = store.connection_summary(r.id).await.unwrap().unwrap();
    assert_eq!(s.id, r.id);
    assert_eq!(s.spec, r.spec);
    assert_eq!(s.owner, owner);
    assert_eq!(s.version, 1);
    assert_eq!((s.created_at, s.updated_at), (r.created_at, r.updated_at));
    assert_eq!(s.health, Health::default());

    // Minimal spec: the optional fields come back absent.
    let m = row(spec("minimal", "127.0.0.9", None, &[]), owner);
    store
        .insert_connection(&m, &ev("connection.create"))
        .await
        .unwrap();
    assert_eq!(store.connection(m.id).await.unwrap().unwrap(), m);

    assert!(
        store
            .connection(ConnectionId::new())
            .await
            .unwrap()
            .is_none()
    );
    let nobody = ConnectionName::parse("nobody").unwrap();
    assert!(store.connection_by_name(&nobody).await.unwrap().is_none());
    assert!(
        store
            .connection_summary(ConnectionId::new())
            .await
            .unwrap()
            .is_none()
    );
}

pub(crate) async fn name_taken_is_a_conflict(store: Handle) {
    let owner = user(&store, "owner").await;
    let a = conn(&store, "orders", owner).await;
    let before = audit_count(&store).await;
    let b = row(spec("orders", "other.example.com", None, &[]), owner);
    let err = store
        .insert_connection(&b, &ev("connection.create"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.field(), Some("name"));
    // Nothing written, not even the audit record.
    assert_eq!(audit_count(&store).await, before);
    assert!(store.connection(b.id).await.unwrap().is_none());
    assert_eq!(
        store
            .connection_by_name(&a.spec.name)
            .await
            .unwrap()
            .unwrap()
            .id,
        a.id
    );
    // Renaming onto a taken name is a conflict too.
    let c = conn(&store, "other", owner).await;
    let mut renamed = c.clone();
    renamed.spec.name = ConnectionName::parse("orders").unwrap();
    let err = store
        .update_connection(&renamed, 1, &ev("connection.update"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.field(), Some("name"));
}

pub(crate) async fn update_bumps_the_version(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let mut changed = r.clone();
    changed.spec = full_spec("orders-renamed");
    changed.updated_at = r.updated_at + Duration::seconds(5);
    changed.secrets = sealed(&keyring("k2", 2), r.id, "new-pw", true);
    let v = store
        .update_connection(&changed, 1, &ev("connection.update"))
        .await
        .unwrap();
    assert_eq!(v, 2);
    let got = store.connection(r.id).await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(got.spec, changed.spec);
    assert_eq!(got.secrets, changed.secrets);
    assert_eq!(got.created_at, r.created_at);
    assert_eq!(got.updated_at, changed.updated_at);
    assert_eq!(got.owner, owner);
    // Found under its new name only.
    assert!(
        store
            .connection_by_name(&r.spec.name)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .connection_by_name(&changed.spec.name)
            .await
            .unwrap()
            .is_some()
    );
    // Tags were replaced, not appended: the list filters see the new ones only.
    let mut tq = q();
    tq.tag = Some(Tag::parse("prod").unwrap());
    assert_eq!(names(&store, &tq, &Visibility::All).await.1, 1);
    let v = store
        .update_connection(&r, 2, &ev("connection.update"))
        .await
        .unwrap();
    assert_eq!(v, 3);
    assert_eq!(names(&store, &tq, &Visibility::All).await.1, 0);
}

pub(crate) async fn stale_update_is_a_conflict_and_changes_nothing(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let mut first = r.clone();
    first.spec.port = datahub_core::model::Port::new(1111).unwrap();
    store
        .update_connection(&first, 1, &ev("connection.update"))
        .await
        .unwrap();
    let before = audit_count(&store).await;
    let mut second = r.clone();
    second.spec.port = datahub_core::model::Port::new(2222).unwrap();
    let err = store
        .update_connection(&second, 1, &ev("connection.update"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let got = store.connection(r.id).await.unwrap().unwrap();
    assert_eq!(got.spec.port.get(), 1111);
    assert_eq!(got.version, 2);
    assert_eq!(audit_count(&store).await, before);
    // A version from the future is stale too.
    let err = store
        .update_connection(&second, 9, &ev("connection.update"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    // An unknown id is NotFound, not Conflict.
    let ghost = row(spec("ghost", "db.example.com", None, &[]), owner);
    let err = store
        .update_connection(&ghost, 1, &ev("connection.update"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

pub(crate) async fn delete_checks_the_version_and_cascades(store: Handle) {
    let owner = user(&store, "owner").await;
    let viewer = user(&store, "viewer").await;
    let r = conn(&store, "orders", owner).await;
    let grant = Grant {
        grantee: Grantee::User(viewer),
        level: GrantLevel::View,
    };
    crate::store_set_grants(store.as_ref(), r.id, &[grant], &ev("grant.set"))
        .await
        .unwrap();
    let at = now();
    store
        .record_check(
            &check(r.id, at, HealthStatus::Healthy),
            &health(HealthStatus::Healthy, at),
        )
        .await
        .unwrap();

    // The grants moved the version on: the one the row was inserted with is stale now.
    let version = store
        .connection_summary(r.id)
        .await
        .unwrap()
        .unwrap()
        .version;
    assert_eq!(version, r.version + 1);
    let err = store
        .delete_connection(r.id, r.version, &ev("connection.delete"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(store.connection(r.id).await.unwrap().is_some());
    let err = store
        .delete_connection(ConnectionId::new(), 1, &ev("connection.delete"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    store
        .delete_connection(r.id, version, &ev("connection.delete"))
        .await
        .unwrap();
    assert!(store.connection(r.id).await.unwrap().is_none());
    assert!(store.connection_summary(r.id).await.unwrap().is_none());
    assert!(store.grants(r.id).await.unwrap().is_empty());
    let since = at - Duration::days(1);
    assert!(store.checks(r.id, since, 10).await.unwrap().is_empty());
    // The name is free again, and the new connection has no leftover health or grants.
    let again = conn(&store, "orders", owner).await;
    assert_eq!(
        store
            .connection_summary(again.id)
            .await
            .unwrap()
            .unwrap()
            .health,
        Health::default()
    );
    let vis = Visibility::Member {
        user: viewer,
        teams: vec![],
    };
    assert_eq!(names(&store, &q(), &vis).await.1, 0);
    let err = store
        .delete_connection(r.id, 1, &ev("connection.delete"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// What a test reads in one call is what the three reads answer on their own, as of now: a
/// grant or a policy saved since the last call is in the next one.
pub(crate) async fn a_test_reads_the_row_its_grants_and_the_policy_at_once(store: Handle) {
    let owner = user(&store, "owner").await;
    let viewer = user(&store, "viewer").await;
    let mut r = row(full_spec("orders"), owner);
    r.secrets = sealed(&keyring("k1", 1), r.id, "canary-pw", true);
    store
        .insert_connection(&r, &ev("connection.create"))
        .await
        .unwrap();
    let got = store.connection_for_test(r.id).await.unwrap().unwrap();
    assert_eq!(got.connection, r);
    assert!(got.grants.is_empty());
    assert_eq!(got.policy, TargetPolicy::default());

    let grant = Grant {
        grantee: Grantee::User(viewer),
        level: GrantLevel::Use,
    };
    crate::store_set_grants(store.as_ref(), r.id, &[grant], &ev("grant.set"))
        .await
        .unwrap();
    let policy = TargetPolicy {
        allow_cidrs: vec!["127.0.0.0/8".into()],
        deny_cidrs: vec!["127.0.0.2/32".into()],
        min_tls_mode: TlsMode::VerifyFull,
    };
    store.set_policy(&policy, &ev("policy.set")).await.unwrap();
    let got = store.connection_for_test(r.id).await.unwrap().unwrap();
    assert_eq!(got.grants, store.grants(r.id).await.unwrap());
    assert_eq!(got.grants, vec![grant]);
    assert_eq!(got.policy, policy);
    assert_eq!(
        got.connection.version,
        r.version + 1,
        "the grants bumped it"
    );

    assert!(
        store
            .connection_for_test(ConnectionId::new())
            .await
            .unwrap()
            .is_none()
    );
}

/// A test's one read by name answers what the read by id does, with the grants of the row
/// answered; a name nothing has is `None`.
pub(crate) async fn a_test_by_name_reads_what_a_test_by_id_reads(store: Handle) {
    let owner = user(&store, "owner").await;
    let viewer = user(&store, "viewer").await;
    let mut r = row(full_spec("orders"), owner);
    r.secrets = sealed(&keyring("k1", 1), r.id, "canary-pw", true);
    store
        .insert_connection(&r, &ev("connection.create"))
        .await
        .unwrap();
    // Another connection with grants of its own: none of them is read for `orders`.
    let other = row(full_spec("orders-replica"), owner);
    store
        .insert_connection(&other, &ev("connection.create"))
        .await
        .unwrap();
    let grant = |level| Grant {
        grantee: Grantee::User(viewer),
        level,
    };
    crate::store_set_grants(
        store.as_ref(),
        other.id,
        &[grant(GrantLevel::Manage)],
        &ev("grant.set"),
    )
    .await
    .unwrap();
    crate::store_set_grants(
        store.as_ref(),
        r.id,
        &[grant(GrantLevel::Use)],
        &ev("grant.set"),
    )
    .await
    .unwrap();
    let name = ConnectionName::parse("orders").unwrap();
    let by_name = store
        .connection_for_test_by_name(&name)
        .await
        .unwrap()
        .unwrap();
    let by_id = store.connection_for_test(r.id).await.unwrap().unwrap();
    assert_eq!(by_name, by_id);
    assert_eq!(by_name.connection.id, r.id);
    assert_eq!(by_name.grants, vec![grant(GrantLevel::Use)]);

    let nothing = ConnectionName::parse("no-such-connection").unwrap();
    assert!(
        store
            .connection_for_test_by_name(&nothing)
            .await
            .unwrap()
            .is_none()
    );
}
