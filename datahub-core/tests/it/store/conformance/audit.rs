//! The audit log: one record per write, one chain, filtered pages newest first.

use super::*;

/// This area's cases, run on every backend by [`conformance_suite!`](super::conformance_suite):
/// list each case here, next to its function (an unlisted case is dead code, which the build
/// refuses).
macro_rules! cases {
    ($make:expr) => {
        $crate::store::conformance::run_cases!($make; audit;
            every_write_appends_one_audit_record,
            audit_page_filters_and_pages_newest_first,
            unsynced_rows_join_the_one_chain,
            every_field_is_stored_and_hashed_as_chained,
        );
    };
}
pub(crate) use cases;

pub(crate) async fn every_write_appends_one_audit_record(store: Handle) {
    let mut expected = 0usize;
    macro_rules! step {
        ($action:literal, $call:expr) => {{
            let out = $call.await.unwrap();
            expected += 1;
            assert_eq!(audit_count(&store).await, expected, $action);
            assert_eq!(last_action(&store).await, $action);
            out
        }};
    }
    let owner = user_row("owner", Role::Editor);
    step!(
        "a.user.create",
        store.insert_user(&owner, &ev("a.user.create"))
    );
    let mut o2 = owner.clone();
    o2.user.role = Role::Admin;
    step!(
        "a.user.update",
        store.update_user(&o2, &ev("a.user.update"))
    );
    let r = row(full_spec("orders"), owner.user.id);
    step!(
        "a.conn.create",
        store.insert_connection(&r, &ev("a.conn.create"))
    );
    step!(
        "a.conn.update",
        store.update_connection(&r, 1, &ev("a.conn.update"))
    );
    let team = Team {
        id: TeamId::new(),
        name: "t".into(),
        members: vec![owner.user.id],
    };
    step!(
        "a.team.upsert",
        store.upsert_team(&team, &ev("a.team.upsert"))
    );
    let g = [Grant {
        grantee: Grantee::Team(team.id),
        level: GrantLevel::View,
    }];
    step!(
        "a.grant.set",
        crate::store_set_grants(store.as_ref(), r.id, &g, &ev("a.grant.set"))
    );
    step!(
        "a.team.delete",
        store.delete_team(team.id, &ev("a.team.delete"))
    );
    let token = StoredToken {
        info: TokenInfo {
            id: TokenId::new(),
            user: owner.user.id,
            name: "t".into(),
            read_only: false,
            created_at: now(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        },
        hash: [9; 32],
    };
    step!(
        "a.token.create",
        store.insert_token(&token, &ev("a.token.create"))
    );
    step!(
        "a.token.revoke",
        store.revoke_token(token.info.id, now(), &ev("a.token.revoke"))
    );
    step!(
        "a.policy.set",
        store.set_policy(&TargetPolicy::default(), &ev("a.policy.set"))
    );
    let rec = step!("a.login", store.append_audit(&ev("a.login")));
    assert_eq!(rec.seq as usize, expected);
    step!(
        "a.conn.delete",
        store.delete_connection(r.id, 3, &ev("a.conn.delete"))
    );
    // Health checks and key re-wraps are not audited by the store.
    let before = audit_count(&store).await;
    let at = now();
    store
        .record_check(
            &check(ConnectionId::new(), at, HealthStatus::Healthy),
            &health(HealthStatus::Healthy, at),
        )
        .await
        .unwrap();
    assert_eq!(audit_count(&store).await, before);

    assert_eq!(verify_chain(&store).await as usize, expected);
    // The stored event reads back exactly as given, every field.
    let full = AuditEvent::now(
        Some(owner.user.id),
        "al\nice",
        "connection.update",
        Some("connection:x"),
        Outcome::Denied,
    )
    .with_changed_fields(&["host", "", "1:x", "tls.mode"])
    .with_request(Some("127.0.0.1:5000"), Some("req-1"));
    let rec = store.append_audit(&full).await.unwrap();
    assert_eq!(rec.event, full);
    let back = store.audit_after(rec.seq - 1, 10).await.unwrap();
    assert_eq!(back, [rec]);
    verify_chain(&store).await;
}

pub(crate) async fn audit_page_filters_and_pages_newest_first(store: Handle) {
    let alice = UserId::new();
    let bob = UserId::new();
    for i in 0..10u32 {
        let actor = if i % 2 == 0 { alice } else { bob };
        let action = if i < 5 {
            "connection.create"
        } else {
            "auth.login"
        };
        let target = format!("connection:{}", i % 3);
        let e = AuditEvent::now(Some(actor), "x", action, Some(&target), Outcome::Ok);
        store.append_audit(&e).await.unwrap();
    }
    let query = |actor, action: Option<&str>, target: Option<&str>, page, per_page| AuditQuery {
        actor,
        action: action.map(Into::into),
        target: target.map(Into::into),
        since: None,
        until: None,
        page,
        per_page,
    };
    let seqs = |p: &datahub_core::model::Page<AuditRecord>| {
        p.items.iter().map(|r| r.seq).collect::<Vec<_>>()
    };
    let p = store
        .audit_page(&query(None, None, None, 1, 4))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.total), (vec![10, 9, 8, 7], 10));
    let p = store
        .audit_page(&query(None, None, None, 3, 4))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.total), (vec![2, 1], 10));
    let p = store
        .audit_page(&query(Some(alice), None, None, 1, 50))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.total), (vec![9, 7, 5, 3, 1], 5));
    let p = store
        .audit_page(&query(None, Some("auth.login"), None, 1, 50))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.total), (vec![10, 9, 8, 7, 6], 5));
    let p = store
        .audit_page(&query(
            Some(bob),
            Some("connection.create"),
            Some("connection:1"),
            1,
            50,
        ))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.total), (vec![2], 1));
    let p = store
        .audit_page(&query(None, Some("connection"), None, 1, 50))
        .await
        .unwrap();
    assert_eq!(p.total, 0, "action is matched exactly");
    // A time window: since is inclusive, until exclusive, both with the others.
    let all = store
        .audit_page(&query(None, None, None, 1, 50))
        .await
        .unwrap();
    let mut times: Vec<(u64, time::OffsetDateTime)> =
        all.items.iter().map(|r| (r.seq, r.event.at)).collect();
    times.sort();
    let (since, until) = (times[3].1, times[7].1);
    let expected = |pick: &dyn Fn(time::OffsetDateTime) -> bool| {
        let mut seqs: Vec<u64> = times
            .iter()
            .filter(|(_, at)| pick(*at))
            .map(|(seq, _)| *seq)
            .collect();
        seqs.reverse();
        seqs
    };
    let window = |since, until| AuditQuery {
        since,
        until,
        ..query(None, None, None, 1, 50)
    };
    let p = store.audit_page(&window(Some(since), None)).await.unwrap();
    assert_eq!(seqs(&p), expected(&|at| at >= since));
    assert!(seqs(&p).contains(&4));
    let p = store.audit_page(&window(None, Some(until))).await.unwrap();
    assert_eq!(seqs(&p), expected(&|at| at < until));
    assert!(!seqs(&p).contains(&8));
    let p = store
        .audit_page(&window(Some(since), Some(until)))
        .await
        .unwrap();
    assert_eq!(seqs(&p), expected(&|at| at >= since && at < until));
    assert_eq!(p.total, seqs(&p).len() as u64);
    let p = store
        .audit_page(&AuditQuery {
            actor: Some(alice),
            ..window(Some(since), None)
        })
        .await
        .unwrap();
    assert!(
        p.items
            .iter()
            .all(|r| r.event.at >= since && r.seq % 2 == 1)
    );
    for (page, per_page, field) in [(0, 5, "page"), (1, 0, "per_page"), (1, 201, "per_page")] {
        let err = store
            .audit_page(&query(None, None, None, page, per_page))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.field(), Some(field));
    }
    // audit_after pages forward.
    let after = store.audit_after(3, 4).await.unwrap();
    assert_eq!(
        after.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [4, 5, 6, 7]
    );
    assert!(store.audit_after(10, 4).await.unwrap().is_empty());
}

/// A row appended unsynced (a connection test's) is a row of the one chain like any other, in
/// order with synced ones, concurrent or not, and is read back at once.
pub(crate) async fn unsynced_rows_join_the_one_chain(store: Handle) {
    let first = store.append_audit(&ev("auth.login")).await.unwrap();
    let test = store
        .append_audit_unsynced(&ev("connection.test"))
        .await
        .unwrap();
    assert_eq!(test.seq, first.seq + 1);
    assert_eq!(test.prev_hash, first.hash);
    assert_eq!(last_action(&store).await, "connection.test");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                store.append_audit_unsynced(&ev("connection.test")).await
            } else {
                store.append_audit(&ev("auth.login")).await
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(verify_chain(&store).await, 22);
    assert_eq!(audit_count(&store).await, 22);
}

/// Events with every field set, unset, empty or unusual chain (synced, unsynced and inside a
/// write's transaction) to records that read back the same and verify: whichever side computes
/// the hash (PostgreSQL computes it in the append), it is the format's.
pub(crate) async fn every_field_is_stored_and_hashed_as_chained(store: Handle) {
    let full = AuditEvent::now(
        Some(UserId::new()),
        "zoë \u{1F600}",
        "connection.test",
        Some("connection:ø"),
        Outcome::Error,
    )
    .with_changed_fields(&["error_kind=timeout", "", "tags[1]"])
    .with_request(Some("::1"), Some("req-1"));
    let bare = AuditEvent::now(None, "", "auth.login", None, Outcome::Denied);
    let mut appended = Vec::new();
    for (i, event) in [full.clone(), bare.clone(), full, bare].iter().enumerate() {
        appended.push(if i % 2 == 0 {
            store.append_audit(event).await.unwrap()
        } else {
            store.append_audit_unsynced(event).await.unwrap()
        });
    }
    let owner = user_row("owner", Role::Editor);
    let event = ev("a.user.create").with_changed_fields(&["username", "role"]);
    store.insert_user(&owner, &event).await.unwrap();
    let stored = audit_all(&store, 100).await;
    assert_eq!(stored[..appended.len()], appended[..]);
    assert_eq!(stored.last().map(|r| &r.event), Some(&event));
    assert_eq!(verify_chain(&store).await, 5);
}
