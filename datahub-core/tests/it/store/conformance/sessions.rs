//! Sessions: stored by hash, touched, ended with their user, pruned.

use super::*;

/// This area's cases, run on every backend by [`conformance_suite!`](super::conformance_suite):
/// list each case here, next to its function (an unlisted case is dead code, which the build
/// refuses).
macro_rules! cases {
    ($make:expr) => {
        $crate::store::conformance::run_cases!($make; sessions;
            sessions_round_trip_touch_and_logout,
            sessions_end_with_their_user_and_are_pruned,
        );
    };
}
pub(crate) use cases;

fn session(user: UserId, hash: u8, at: OffsetDateTime) -> StoredSession {
    StoredSession {
        id: SessionId::new(),
        user,
        hash: [hash; 32],
        created_at: at,
        expires_at: at + Duration::hours(12),
        last_seen_at: at,
        client_addr: Some("127.0.0.7".into()),
        user_agent: None,
    }
}

pub(crate) async fn sessions_round_trip_touch_and_logout(store: Handle) {
    let u = user(&store, "alice").await;
    let at = now();
    let s1 = StoredSession {
        user_agent: Some("Mozilla/5.0 (X11)".into()),
        ..session(u, 1, at)
    };
    let s2 = StoredSession {
        client_addr: None,
        ..session(u, 2, at + Duration::seconds(1))
    };
    let audits = audit_count(&store).await;
    store.insert_session(&s1).await.unwrap();
    store.insert_session(&s2).await.unwrap();
    // Starting a session is not audited on its own (the login is).
    assert_eq!(audit_count(&store).await, audits);
    assert_eq!(store.session_by_hash(&[1; 32]).await.unwrap().unwrap(), s1);
    assert_eq!(store.session_by_hash(&[2; 32]).await.unwrap().unwrap(), s2);
    assert!(store.session_by_hash(&[3; 32]).await.unwrap().is_none());
    assert_eq!(
        store.sessions_of(u).await.unwrap(),
        [s1.clone(), s2.clone()]
    );
    assert!(store.sessions_of(UserId::new()).await.unwrap().is_empty());

    // The same id or hash twice is a conflict; an unknown user is not found.
    let again = StoredSession {
        id: SessionId::new(),
        ..s1.clone()
    };
    assert_eq!(
        store.insert_session(&again).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    let orphan = session(UserId::new(), 9, at);
    let err = store.insert_session(&orphan).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.field()),
        (ErrorKind::NotFound, Some("user_id"))
    );

    // A touch moves the last use forward only.
    let later = at + Duration::minutes(2);
    assert!(store.touch_session(s1.id, later).await.unwrap());
    assert!(!store.touch_session(s1.id, later).await.unwrap());
    assert!(!store.touch_session(s1.id, at).await.unwrap());
    assert!(!store.touch_session(SessionId::new(), later).await.unwrap());
    let got = store.session_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(got.last_seen_at, later);
    assert_eq!(
        (got.created_at, got.expires_at),
        (s1.created_at, s1.expires_at)
    );
    assert_eq!(audit_count(&store).await, audits);

    // A logout deletes one session with its audit row; a second one changes nothing.
    assert!(
        store
            .delete_session(s1.id, &ev("auth.logout"))
            .await
            .unwrap()
    );
    assert_eq!(audit_count(&store).await, audits + 1);
    assert_eq!(last_action(&store).await, "auth.logout");
    assert!(store.session_by_hash(&[1; 32]).await.unwrap().is_none());
    assert!(
        !store
            .delete_session(s1.id, &ev("auth.logout"))
            .await
            .unwrap()
    );
    assert_eq!(audit_count(&store).await, audits + 1);
    assert_eq!(store.sessions_of(u).await.unwrap(), [s2]);
    verify_chain(&store).await;
}

pub(crate) async fn sessions_end_with_their_user_and_are_pruned(store: Handle) {
    let at = now();
    let mut alice = user_row("alice", Role::Editor);
    store.insert_user(&alice, &ev("user.create")).await.unwrap();
    let bob = user(&store, "bob").await;
    for (i, u) in [(1, alice.user.id), (2, alice.user.id), (3, bob)] {
        store.insert_session(&session(u, i, at)).await.unwrap();
    }
    // Tokens: alice's live one, alice's revoked one, bob's.
    let token = |user, n: u8, revoked_at| StoredToken {
        info: TokenInfo {
            id: TokenId::new(),
            user,
            name: format!("t{n}"),
            read_only: false,
            created_at: at,
            expires_at: None,
            revoked_at,
            last_used_at: None,
        },
        hash: [n; 32],
    };
    let earlier = Some(at - Duration::seconds(5));
    for t in [
        token(alice.user.id, 41, None),
        token(alice.user.id, 42, earlier),
        token(bob, 43, None),
    ] {
        store.insert_token(&t, &ev("token.create")).await.unwrap();
    }
    let revoked = |n: u8| {
        let store = &store;
        async move {
            store
                .token_by_hash(&[n; 32])
                .await
                .unwrap()
                .unwrap()
                .info
                .revoked_at
        }
    };
    let audits = audit_count(&store).await;

    // Disabling alice ends her sessions, in the one transaction with the change and its row,
    // and revokes her tokens for good (S33), keeping an earlier revocation's time.
    alice.user.disabled = true;
    alice.user.updated_at = at + Duration::seconds(1);
    let ended = store
        .update_user_ending_sessions(&alice, &ev("user.update"))
        .await
        .unwrap();
    assert_eq!(ended, 2);
    assert_eq!(revoked(41).await, Some(alice.user.updated_at));
    assert_eq!(revoked(42).await, earlier);
    assert_eq!(revoked(43).await, None);
    // Enabling her again (with a new password) brings none back.
    alice.user.disabled = false;
    store
        .update_user_ending_sessions(&alice, &ev("user.update"))
        .await
        .unwrap();
    assert_eq!(revoked(41).await, Some(alice.user.updated_at));
    alice.user.disabled = true;
    store.update_user(&alice, &ev("user.update")).await.unwrap();
    let audits = audits + 2;
    assert!(
        store
            .user(alice.user.id)
            .await
            .unwrap()
            .unwrap()
            .user
            .disabled
    );
    assert!(store.sessions_of(alice.user.id).await.unwrap().is_empty());
    assert_eq!(store.sessions_of(bob).await.unwrap().len(), 1);
    assert_eq!(audit_count(&store).await, audits + 1);
    assert_eq!(last_action(&store).await, "user.update");
    // Nothing left to end is fine; an unknown user is not found and appends nothing.
    assert_eq!(
        store
            .update_user_ending_sessions(&alice, &ev("user.update"))
            .await
            .unwrap(),
        0
    );
    let ghost = user_row("ghost", Role::Viewer);
    let err = store
        .update_user_ending_sessions(&ghost, &ev("user.update"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(audit_count(&store).await, audits + 2);

    // Ending every session of a user is audited even when there were none.
    assert_eq!(
        store
            .delete_sessions_of_user(bob, &ev("auth.logout_all"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .delete_sessions_of_user(bob, &ev("auth.logout_all"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(audit_count(&store).await, audits + 4);

    // Pruning: expired at or before now, or last used before the idle cutoff.
    let now_ = at + Duration::hours(1);
    let idle_before = now_ - Duration::minutes(30);
    let expired = StoredSession {
        expires_at: now_,
        last_seen_at: now_ - Duration::minutes(1),
        ..session(bob, 10, at)
    };
    let idle = StoredSession {
        last_seen_at: idle_before - Duration::microseconds(1),
        ..session(bob, 11, at)
    };
    let edge = StoredSession {
        last_seen_at: idle_before,
        ..session(bob, 12, at)
    };
    let live = StoredSession {
        expires_at: now_ + Duration::microseconds(1),
        last_seen_at: now_,
        ..session(bob, 13, at)
    };
    for s in [&expired, &idle, &edge, &live] {
        store.insert_session(s).await.unwrap();
    }
    assert_eq!(store.prune_sessions(now_, idle_before).await.unwrap(), 2);
    let mut left: Vec<[u8; 32]> = store
        .sessions_of(bob)
        .await
        .unwrap()
        .iter()
        .map(|s| s.hash)
        .collect();
    left.sort_unstable();
    assert_eq!(left, [[12; 32], [13; 32]]);
    assert_eq!(store.prune_sessions(now_, idle_before).await.unwrap(), 0);
    // Housekeeping is not audited.
    assert_eq!(audit_count(&store).await, audits + 4);
    verify_chain(&store).await;
}
