//! The admin's settings and keys: the target policy, data keys per KEK and their rewrapping, key
//! checks.

use super::*;

/// This area's cases, run on every backend by [`conformance_suite!`](super::conformance_suite):
/// list each case here, next to its function (an unlisted case is dead code, which the build
/// refuses).
macro_rules! cases {
    ($make:expr) => {
        $crate::store::conformance::run_cases!($make; admin;
            policy_default_then_set,
            key_checks_and_samples,
            key_usage_and_rotation_batches,
        );
    };
}
pub(crate) use cases;

pub(crate) async fn policy_default_then_set(store: Handle) {
    assert_eq!(store.policy().await.unwrap(), TargetPolicy::default());
    let p = TargetPolicy {
        allow_cidrs: vec!["127.0.0.0/8".into(), "::1/128".into()],
        deny_cidrs: vec!["127.0.0.2/32".into()],
        min_tls_mode: TlsMode::VerifyFull,
    };
    store.set_policy(&p, &ev("policy.set")).await.unwrap();
    assert_eq!(store.policy().await.unwrap(), p);
    let empty = TargetPolicy {
        allow_cidrs: vec![],
        deny_cidrs: vec![],
        min_tls_mode: TlsMode::Disable,
    };
    store.set_policy(&empty, &ev("policy.set")).await.unwrap();
    assert_eq!(store.policy().await.unwrap(), empty);
    assert_eq!(last_action(&store).await, "policy.set");
}

/// S28: the store keeps one key check per KEK id (the first recorded stays), lists them in id
/// order, deletes one with its audit row, and hands one row's data key per KEK for the start-up
/// check.
pub(crate) async fn key_checks_and_samples(store: Handle) {
    assert!(store.key_checks().await.unwrap().is_empty());
    let (k1, k2) = (keyring("k1", 1), keyring("k2", 2));
    let id1 = KekId::new("k1").unwrap();
    let id2 = KekId::new("k2").unwrap();
    let first = k2.key_check(&id2).unwrap();
    assert!(store.insert_key_check(&first).await.unwrap());
    assert!(
        !store
            .insert_key_check(&k2.key_check(&id2).unwrap())
            .await
            .unwrap(),
        "the first check of an id stays"
    );
    assert!(
        store
            .insert_key_check(&k1.key_check(&id1).unwrap())
            .await
            .unwrap()
    );
    let checks = store.key_checks().await.unwrap();
    let ids: Vec<&str> = checks.iter().map(|c| c.kek_id().as_str()).collect();
    assert_eq!(ids, ["k1", "k2"]);
    assert_eq!(checks[1], first);
    k1.verify_check(&checks[0]).unwrap();
    k2.verify_check(&checks[1]).unwrap();
    // Another key under the same id does not open the stored check.
    let err = keyring("k2", 9).verify_check(&checks[1]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);

    let before = audit_count(&store).await;
    store
        .delete_key_check(&id1, &ev("keys.retire"))
        .await
        .unwrap();
    assert_eq!(audit_count(&store).await, before + 1);
    let ids: Vec<String> = store
        .key_checks()
        .await
        .unwrap()
        .iter()
        .map(|c| c.kek_id().as_str().to_owned())
        .collect();
    assert_eq!(ids, ["k2"]);

    // The sample is the lowest id under the key, and none for a key wrapping nothing.
    let owner = user(&store, "owner").await;
    let mut rows = Vec::new();
    for i in 0..3 {
        let mut r = row(spec(&format!("s{i}"), "h.example.com", None, &[]), owner);
        r.secrets = sealed(&k1, r.id, "pw", false);
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
        rows.push(r);
    }
    rows.sort_by_key(|r| r.id);
    let (id, dek) = store.dek_sample(&id1).await.unwrap().unwrap();
    assert_eq!(id, rows[0].id);
    assert_eq!(dek, rows[0].secrets.dek);
    k1.unwrap_dek(id, &dek).unwrap();
    assert!(store.dek_sample(&id2).await.unwrap().is_none());
}

pub(crate) async fn key_usage_and_rotation_batches(store: Handle) {
    let owner = user(&store, "owner").await;
    assert!(store.kek_usage().await.unwrap().is_empty());
    let (k1, k2) = (keyring("k1", 1), keyring("k2", 2));
    let mut under_k1 = Vec::new();
    for i in 0..5 {
        let mut r = row(spec(&format!("c{i}"), "h.example.com", None, &[]), owner);
        let kr = if i < 3 { &k1 } else { &k2 };
        r.secrets = sealed(kr, r.id, "pw", false);
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
        if i < 3 {
            under_k1.push(r);
        }
    }
    let mut usage = store.kek_usage().await.unwrap();
    usage.sort_by(|a, b| a.kek.cmp(&b.kek));
    let usage: Vec<(String, u64)> = usage
        .into_iter()
        .map(|u| (u.kek.as_str().to_owned(), u.rows))
        .collect();
    assert_eq!(usage, [("k1".to_owned(), 3), ("k2".to_owned(), 2)]);

    // Batches of 2 in id order, resumable from the last id.
    let active = KekId::new("k2").unwrap();
    let mut expected_ids: Vec<ConnectionId> = under_k1.iter().map(|r| r.id).collect();
    expected_ids.sort();
    let first = store.deks_not_under(&active, None, 2).await.unwrap();
    let second = store
        .deks_not_under(&active, Some(first[1].0), 2)
        .await
        .unwrap();
    let third = store
        .deks_not_under(&active, Some(second[0].0), 2)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 1);
    assert!(third.is_empty());
    let got: Vec<ConnectionId> = first.iter().chain(&second).map(|(id, _)| *id).collect();
    assert_eq!(got, expected_ids);
    for (id, dek) in first.iter().chain(&second) {
        let r = under_k1.iter().find(|r| r.id == *id).unwrap();
        assert_eq!(dek, &r.secrets.dek);
    }

    // Compare and swap.
    let target = &under_k1[0];
    let rewrapped: WrappedDek = match keyring_both()
        .rewrap(target.id, &target.secrets.dek)
        .unwrap()
    {
        datahub_core::crypto::Rewrap::Rewrapped(w) => w,
        other => panic!("expected a rewrap, got {other:?}"),
    };
    assert!(
        store
            .replace_dek(target.id, &target.secrets.dek, &rewrapped)
            .await
            .unwrap()
    );
    assert!(
        !store
            .replace_dek(target.id, &target.secrets.dek, &rewrapped)
            .await
            .unwrap(),
        "a stale old key is not replaced"
    );
    assert!(
        !store
            .replace_dek(ConnectionId::new(), &target.secrets.dek, &rewrapped)
            .await
            .unwrap()
    );
    let got = store.connection(target.id).await.unwrap().unwrap();
    assert_eq!(got.secrets.dek, rewrapped);
    assert_eq!(got.version, 1, "a re-wrap does not bump the version");
    assert_eq!(got.secrets.password, target.secrets.password);
    let mut usage = store.kek_usage().await.unwrap();
    usage.sort_by(|a, b| a.kek.cmp(&b.kek));
    assert_eq!(usage[0].rows, 2);
    assert_eq!(usage[1].rows, 3);
    assert_eq!(
        store.deks_not_under(&active, None, 10).await.unwrap().len(),
        2
    );
}

/// `k2` active, `k1` still known: what a rotation from k1 to k2 runs with.
fn keyring_both() -> Keyring {
    Keyring::parse(&format!(
        "k2:{},k1:{}",
        STANDARD.encode([2u8; 32]),
        STANDARD.encode([1u8; 32])
    ))
    .unwrap()
}
