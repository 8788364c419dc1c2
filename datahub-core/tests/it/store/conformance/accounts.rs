//! Accounts: grants and the name directory, users, teams and API tokens.

use super::*;

/// This area's cases, run on every backend by [`conformance_suite!`](super::conformance_suite):
/// list each case here, next to its function (an unlisted case is dead code, which the build
/// refuses).
macro_rules! cases {
    ($make:expr) => {
        $crate::store::conformance::run_cases!($make; accounts;
            grants_set_replace_read,
            named_grants_and_the_directory,
            users,
            teams,
            tokens,
            tokens_record_their_last_use_once_a_minute,
            a_credential_is_read_with_its_holder_at_once,
        );
    };
}
pub(crate) use cases;

fn sorted(mut g: Vec<Grant>) -> Vec<Grant> {
    g.sort_by_key(|g| (g.grantee, g.level));
    g
}

pub(crate) async fn grants_set_replace_read(store: Handle) {
    let owner = user(&store, "owner").await;
    let u = user(&store, "viewer").await;
    let team = Team {
        id: TeamId::new(),
        name: "ops".into(),
        members: vec![],
    };
    store.upsert_team(&team, &ev("team.create")).await.unwrap();
    let r = conn(&store, "orders", owner).await;
    assert!(store.grants(r.id).await.unwrap().is_empty());
    let set = vec![
        Grant {
            grantee: Grantee::User(u),
            level: GrantLevel::View,
        },
        Grant {
            grantee: Grantee::Team(team.id),
            level: GrantLevel::Use,
        },
    ];
    crate::store_set_grants(store.as_ref(), r.id, &set, &ev("grant.set"))
        .await
        .unwrap();
    assert_eq!(sorted(store.grants(r.id).await.unwrap()), sorted(set));
    let replaced = vec![Grant {
        grantee: Grantee::User(u),
        level: GrantLevel::Manage,
    }];
    crate::store_set_grants(store.as_ref(), r.id, &replaced, &ev("grant.set"))
        .await
        .unwrap();
    assert_eq!(store.grants(r.id).await.unwrap(), replaced);

    // S26: every replacement names the version read and bumps it; a stale one changes nothing.
    let v = store
        .connection_summary(r.id)
        .await
        .unwrap()
        .unwrap()
        .version;
    assert_eq!(v, r.version + 2, "each replacement bumped the version");
    let before = audit_count(&store).await;
    let err = store
        .set_grants(r.id, v - 1, &[], &ev("grant.set"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.field(), Some("version"));
    assert_eq!(store.grants(r.id).await.unwrap(), replaced);
    assert_eq!(audit_count(&store).await, before);
    assert_eq!(
        store
            .set_grants(r.id, v, &replaced, &ev("grant.set"))
            .await
            .unwrap(),
        v + 1
    );
    assert_eq!(
        store
            .connection_summary(r.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        v + 1
    );

    let before = audit_count(&store).await;
    for (id, grantee) in [
        (ConnectionId::new(), Grantee::User(u)),
        (r.id, Grantee::User(UserId::new())),
        (r.id, Grantee::Team(TeamId::new())),
    ] {
        let g = [Grant {
            grantee,
            level: GrantLevel::View,
        }];
        let err = crate::store_set_grants(store.as_ref(), id, &g, &ev("grant.set"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{grantee:?}");
    }
    // A failed replacement leaves the old set and no audit record.
    assert_eq!(store.grants(r.id).await.unwrap(), replaced);
    assert_eq!(audit_count(&store).await, before);
}

pub(crate) async fn named_grants_and_the_directory(store: Handle) {
    let owner = user(&store, "owner").await;
    let zed = user(&store, "zed.ops").await;
    let amy = user(&store, "amy-ops").await;
    let mut gone = user_row("opsgone", Role::Viewer);
    gone.user.disabled = true;
    store.insert_user(&gone, &ev("user.create")).await.unwrap();
    let ops = Team {
        id: TeamId::new(),
        name: "ops".into(),
        members: vec![],
    };
    let dev = Team {
        id: TeamId::new(),
        name: "dev_ops%".into(),
        members: vec![],
    };
    store.upsert_team(&ops, &ev("team.create")).await.unwrap();
    store.upsert_team(&dev, &ev("team.create")).await.unwrap();
    let r = conn(&store, "orders", owner).await;
    assert!(store.named_grants(r.id).await.unwrap().is_empty());
    let set = vec![
        Grant {
            grantee: Grantee::Team(ops.id),
            level: GrantLevel::Use,
        },
        Grant {
            grantee: Grantee::User(zed),
            level: GrantLevel::View,
        },
        Grant {
            grantee: Grantee::User(amy),
            level: GrantLevel::Manage,
        },
    ];
    crate::store_set_grants(store.as_ref(), r.id, &set, &ev("grant.set"))
        .await
        .unwrap();
    // The same grants in the same order as `grants`, each with its grantee's name.
    let named = store.named_grants(r.id).await.unwrap();
    let plain: Vec<Grant> = named.iter().map(|g| g.grant).collect();
    assert_eq!(plain, store.grants(r.id).await.unwrap());
    let names: Vec<(Grantee, &str)> = named
        .iter()
        .map(|g| (g.grant.grantee, g.name.as_str()))
        .collect();
    let expected_user = |id: UserId| match id {
        x if x == zed => "zed.ops",
        x if x == amy => "amy-ops",
        _ => panic!("unexpected grantee"),
    };
    for (grantee, name) in &names {
        match grantee {
            Grantee::User(u) => assert_eq!(*name, expected_user(*u)),
            Grantee::Team(t) => {
                assert_eq!(*t, ops.id);
                assert_eq!(*name, "ops");
            }
        }
    }
    assert!(
        matches!(names.last(), Some((Grantee::Team(_), _))),
        "users' grants first"
    );

    // The directory: enabled users and teams whose name contains the needle, by name.
    let dir = store.directory("ops", 20).await.unwrap();
    let users: Vec<&str> = dir.users.iter().map(|u| u.username.as_str()).collect();
    let teams: Vec<&str> = dir.teams.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        users,
        ["amy-ops", "zed.ops"],
        "the disabled user is not listed"
    );
    assert_eq!(teams, ["dev_ops%", "ops"]);
    assert_eq!(dir.users[0].id, amy);
    assert_eq!(dir.teams[1].id, ops.id);
    // Every name for the empty needle; the limit applies to each list.
    let all = store.directory("", 20).await.unwrap();
    let users: Vec<&str> = all.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(users, ["amy-ops", "owner", "zed.ops"]);
    assert_eq!(all.teams.len(), 2);
    let one = store.directory("", 1).await.unwrap();
    assert_eq!((one.users.len(), one.teams.len()), (1, 1));
    assert_eq!(one.users[0].username, "amy-ops");
    // Plain text: no wildcard, and the needle is compared in lowercase.
    for (needle, users, teams) in [
        ("%", 0, 1),
        ("_", 0, 1),
        (".", 1, 0),
        ("OPS", 2, 2),
        ("zzz", 0, 0),
    ] {
        let got = store.directory(needle, 20).await.unwrap();
        assert_eq!(
            (got.users.len(), got.teams.len()),
            (users, teams),
            "{needle}"
        );
    }
}

pub(crate) async fn users(store: Handle) {
    assert_eq!(store.user_count().await.unwrap(), 0);
    let bob = user_row("bob", Role::Viewer);
    let alice = user_row("alice", Role::Admin);
    store.insert_user(&bob, &ev("user.create")).await.unwrap();
    store.insert_user(&alice, &ev("user.create")).await.unwrap();
    assert_eq!(store.user_count().await.unwrap(), 2);
    assert_eq!(store.user(bob.user.id).await.unwrap().unwrap(), bob);
    assert_eq!(store.user_by_name("alice").await.unwrap().unwrap(), alice);
    assert!(store.user_by_name("ALICE").await.unwrap().is_none());
    assert!(store.user(UserId::new()).await.unwrap().is_none());
    let all = store.users().await.unwrap();
    assert_eq!(all, [alice.clone(), bob.clone()]);

    let mut dup = user_row("bob", Role::Editor);
    dup.user.id = UserId::new();
    let err = store
        .insert_user(&dup, &ev("user.create"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.field(), Some("username"));
    assert_eq!(store.user_count().await.unwrap(), 2);

    let mut changed = bob.clone();
    changed.user.role = Role::Auditor;
    changed.user.disabled = true;
    changed.password_hash = "$argon2id$new".into();
    changed.user.updated_at = bob.user.updated_at + Duration::seconds(3);
    store
        .update_user(&changed, &ev("user.update"))
        .await
        .unwrap();
    assert_eq!(store.user(bob.user.id).await.unwrap().unwrap(), changed);

    let ghost = user_row("ghost", Role::Viewer);
    let err = store
        .update_user(&ghost, &ev("user.update"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

pub(crate) async fn teams(store: Handle) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let owner = user(&store, "owner").await;
    let mut t1 = Team {
        id: TeamId::new(),
        name: "zeta".into(),
        members: vec![a, b],
    };
    let t2 = Team {
        id: TeamId::new(),
        name: "alpha".into(),
        members: vec![b],
    };
    store.upsert_team(&t1, &ev("team.create")).await.unwrap();
    store.upsert_team(&t2, &ev("team.create")).await.unwrap();
    let norm = |mut t: Team| {
        t.members.sort();
        t
    };
    let got: Vec<Team> = store.teams().await.unwrap().into_iter().map(norm).collect();
    assert_eq!(got, [norm(t2.clone()), norm(t1.clone())]);
    assert_eq!(store.teams_of(a).await.unwrap(), [t1.id]);
    let mut of_b = store.teams_of(b).await.unwrap();
    of_b.sort();
    let mut expected = vec![t1.id, t2.id];
    expected.sort();
    assert_eq!(of_b, expected);

    // Upsert replaces the name and the members.
    t1.name = "omega".into();
    t1.members = vec![a];
    store.upsert_team(&t1, &ev("team.update")).await.unwrap();
    assert!(store.teams_of(b).await.unwrap() == [t2.id]);
    let names: Vec<String> = store
        .teams()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["alpha", "omega"]);

    let clash = Team {
        id: TeamId::new(),
        name: "alpha".into(),
        members: vec![],
    };
    let err = store
        .upsert_team(&clash, &ev("team.create"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.field(), Some("name"));
    let bad_member = Team {
        id: TeamId::new(),
        name: "beta".into(),
        members: vec![UserId::new()],
    };
    let err = store
        .upsert_team(&bad_member, &ev("team.create"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(store.teams().await.unwrap().len(), 2);

    // Deleting a team removes its memberships and its grants.
    let r = conn(&store, "orders", owner).await;
    let g = [
        Grant {
            grantee: Grantee::Team(t1.id),
            level: GrantLevel::Use,
        },
        Grant {
            grantee: Grantee::User(a),
            level: GrantLevel::View,
        },
    ];
    crate::store_set_grants(store.as_ref(), r.id, &g, &ev("grant.set"))
        .await
        .unwrap();
    store.delete_team(t1.id, &ev("team.delete")).await.unwrap();
    assert_eq!(store.grants(r.id).await.unwrap(), [g[1]]);
    assert!(store.teams_of(a).await.unwrap().is_empty());
    assert_eq!(store.teams().await.unwrap().len(), 1);
    let err = store
        .delete_team(t1.id, &ev("team.delete"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

pub(crate) async fn tokens(store: Handle) {
    let u = user(&store, "alice").await;
    let at = now();
    let t1 = StoredToken {
        info: TokenInfo {
            id: TokenId::new(),
            user: u,
            name: "ci".into(),
            read_only: true,
            created_at: at,
            expires_at: Some(at + Duration::days(30)),
            revoked_at: None,
            last_used_at: None,
        },
        hash: [1; 32],
    };
    let t2 = StoredToken {
        info: TokenInfo {
            id: TokenId::new(),
            user: u,
            name: "notebook".into(),
            read_only: false,
            created_at: at + Duration::seconds(1),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        },
        hash: [2; 32],
    };
    store.insert_token(&t1, &ev("token.create")).await.unwrap();
    store.insert_token(&t2, &ev("token.create")).await.unwrap();
    assert_eq!(store.token_by_hash(&[1; 32]).await.unwrap().unwrap(), t1);
    assert_eq!(store.token_by_hash(&[2; 32]).await.unwrap().unwrap(), t2);
    assert!(store.token_by_hash(&[3; 32]).await.unwrap().is_none());
    let mut of = store.tokens_of(u).await.unwrap();
    of.sort_by_key(|t| t.info.created_at);
    assert_eq!(of, [t1.clone(), t2.clone()]);
    assert!(store.tokens_of(UserId::new()).await.unwrap().is_empty());

    let revoked_at = at + Duration::minutes(5);
    store
        .revoke_token(t1.info.id, revoked_at, &ev("token.revoke"))
        .await
        .unwrap();
    let got = store.token_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(got.info.revoked_at, Some(revoked_at));
    assert_eq!(
        store
            .token_by_hash(&[2; 32])
            .await
            .unwrap()
            .unwrap()
            .info
            .revoked_at,
        None
    );
    let err = store
        .revoke_token(TokenId::new(), revoked_at, &ev("token.revoke"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

pub(crate) async fn tokens_record_their_last_use_once_a_minute(store: Handle) {
    let u = user(&store, "alice").await;
    let at = now();
    let token = |n: u8| StoredToken {
        info: TokenInfo {
            id: TokenId::new(),
            user: u,
            name: format!("t{n}"),
            read_only: false,
            created_at: at,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        },
        hash: [n; 32],
    };
    let (live, revoked) = (token(51), token(52));
    for t in [&live, &revoked] {
        store.insert_token(t, &ev("token.create")).await.unwrap();
    }
    let last_used = |n: u8| {
        let store = store.clone();
        async move {
            store
                .token_by_hash(&[n; 32])
                .await
                .unwrap()
                .unwrap()
                .info
                .last_used_at
        }
    };
    assert_eq!(last_used(51).await, None, "unused until the first use");
    let audited = store.audit_after(0, 1000).await.unwrap().len();

    // The first use is recorded; another within the minute writes nothing.
    let first = at + Duration::seconds(1);
    assert!(store.touch_token(live.info.id, first).await.unwrap());
    assert_eq!(last_used(51).await, Some(first));
    for later in [Duration::seconds(2), Duration::seconds(59)] {
        assert!(
            !store
                .touch_token(live.info.id, first + later)
                .await
                .unwrap()
        );
        assert_eq!(last_used(51).await, Some(first));
    }
    // A use stamped before the recorded one (a slow replica) never moves it back.
    assert!(
        !store
            .touch_token(live.info.id, first - Duration::minutes(5))
            .await
            .unwrap()
    );
    assert_eq!(last_used(51).await, Some(first));
    // A minute on, the next use is recorded.
    let next = first + Duration::seconds(60);
    assert!(store.touch_token(live.info.id, next).await.unwrap());
    assert_eq!(last_used(51).await, Some(next));
    assert_eq!(
        store.tokens_of(u).await.unwrap()[0].info.last_used_at,
        Some(next),
        "the list carries it"
    );

    // A revoked token's use is never recorded; an unknown token changes nothing.
    store
        .revoke_token(revoked.info.id, at, &ev("token.revoke"))
        .await
        .unwrap();
    assert!(!store.touch_token(revoked.info.id, next).await.unwrap());
    assert_eq!(last_used(52).await, None);
    assert!(!store.touch_token(TokenId::new(), next).await.unwrap());
    // Never audited: the one record since is the revocation.
    assert_eq!(store.audit_after(0, 1000).await.unwrap().len(), audited + 1);
}

/// What authentication reads in one call is what the three reads answer on their own: the
/// token (or session), its user and the user's teams; an unknown hash is `None`.
pub(crate) async fn a_credential_is_read_with_its_holder_at_once(store: Handle) {
    let u = user(&store, "alice").await;
    let other = user(&store, "bob").await;
    let team = |name: &str, members| Team {
        id: TeamId::new(),
        name: name.into(),
        members,
    };
    let (t1, t2, t3) = (
        team("ops", vec![u, other]),
        team("data", vec![u]),
        team("web", vec![other]),
    );
    for t in [&t1, &t2, &t3] {
        store.upsert_team(t, &ev("team.create")).await.unwrap();
    }
    let at = now();
    let token = StoredToken {
        info: TokenInfo {
            id: TokenId::new(),
            user: u,
            name: "ci".into(),
            read_only: true,
            created_at: at,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        },
        hash: [7; 32],
    };
    store
        .insert_token(&token, &ev("token.create"))
        .await
        .unwrap();
    let session = StoredSession {
        id: SessionId::new(),
        user: u,
        hash: [8; 32],
        created_at: at,
        expires_at: at + Duration::hours(12),
        last_seen_at: at,
        client_addr: None,
        user_agent: None,
    };
    store.insert_session(&session).await.unwrap();
    let teams = store.teams_of(u).await.unwrap();
    assert_eq!(teams.len(), 2);
    let holder = store.user(u).await.unwrap();
    assert!(holder.is_some());

    let held = store.token_with_holder(&[7; 32]).await.unwrap().unwrap();
    assert_eq!(held.credential, token);
    assert_eq!(held.user, holder);
    assert_eq!(held.teams, teams);
    let held = store.session_with_holder(&[8; 32]).await.unwrap().unwrap();
    assert_eq!(held.credential, session);
    assert_eq!(held.user, holder);
    assert_eq!(held.teams, teams);
    assert!(store.token_with_holder(&[9; 32]).await.unwrap().is_none());
    assert!(store.session_with_holder(&[9; 32]).await.unwrap().is_none());
    // A session's hash is not a token's, and the other way round.
    assert!(store.token_with_holder(&[8; 32]).await.unwrap().is_none());
    assert!(store.session_with_holder(&[7; 32]).await.unwrap().is_none());
}
