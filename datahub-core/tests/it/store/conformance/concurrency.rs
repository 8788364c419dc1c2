//! Concurrency: racing writes, one winner, one chain.

use super::*;

/// This area's cases, run on every backend by [`conformance_suite!`](super::conformance_suite):
/// list each case here, next to its function (an unlisted case is dead code, which the build
/// refuses).
macro_rules! cases {
    ($make:expr) => {
        $crate::store::conformance::run_cases!($make; concurrency;
            concurrent_updates_one_wins,
            concurrent_audited_writes_keep_the_chain,
            concurrent_writes_fail_alone,
        );
    };
}
pub(crate) use cases;

pub(crate) async fn concurrent_updates_one_wins(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let mut tasks = Vec::new();
    for i in 0..20u16 {
        let store = Arc::clone(&store);
        let mut changed = r.clone();
        changed.spec.port = datahub_core::model::Port::new(i64::from(1000 + i)).unwrap();
        tasks.push(tokio::spawn(async move {
            store
                .update_connection(&changed, 1, &ev("connection.update"))
                .await
                .map(|_| i)
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(i) => winners.push(i),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
                conflicts += 1;
            }
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(conflicts, 19);
    let got = store.connection(r.id).await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(got.spec.port.get(), 1000 + winners[0]);
    // user + create + one update.
    assert_eq!(verify_chain(&store).await, 3);
}

pub(crate) async fn concurrent_audited_writes_keep_the_chain(store: Handle) {
    let owner = user(&store, "owner").await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                store.append_audit(&ev("auth.login")).await.map(|_| ())
            } else {
                let r = row(spec(&format!("c{i}"), "h.example.com", None, &[]), owner);
                store.insert_connection(&r, &ev("connection.create")).await
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let records = audit_all(&store, 9).await;
    assert_eq!(records.len(), 51);
    assert!(
        records
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as u64 + 1)
    );
    assert_eq!(verify_chain(&store).await, 51);
    assert_eq!(names(&store, &q(), &Visibility::All).await.1, 25);
}

/// Writes made at the same time succeed or fail each on its own (SQLite commits concurrent
/// writes together, each in its own savepoint): a refused write leaves neither its row nor its
/// audit record, the others keep both, and the chain has no gap.
pub(crate) async fn concurrent_writes_fail_alone(store: Handle) {
    let owner = user(&store, "owner").await;
    let taken = row(spec("taken", "h.example.com", None, &[]), owner);
    store
        .insert_connection(&taken, &ev("connection.create"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                // Refused: the name is taken.
                0 => {
                    let r = row(spec("taken", "h.example.com", None, &[]), owner);
                    store.insert_connection(&r, &ev("connection.create")).await
                }
                1 => {
                    let r = row(spec(&format!("c{i}"), "h.example.com", None, &[]), owner);
                    store.insert_connection(&r, &ev("connection.create")).await
                }
                _ => store.append_audit(&ev("auth.login")).await.map(|_| ()),
            }
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let result = t.await.unwrap();
        if i % 3 == 0 {
            assert_eq!(result.unwrap_err().kind(), ErrorKind::Conflict, "{i}");
        } else {
            result.unwrap();
        }
    }
    // The user, the first row, 20 rows and 20 logins.
    let records = audit_all(&store, 9).await;
    assert_eq!(records.len(), 42);
    assert!(
        records
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as u64 + 1)
    );
    assert_eq!(verify_chain(&store).await, 42);
    assert_eq!(names(&store, &q(), &Visibility::All).await.1, 21);
}
