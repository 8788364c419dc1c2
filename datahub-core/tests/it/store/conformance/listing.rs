//! Listing: search, filters, sorts, paging and visibility, all in SQL.

use super::*;

/// This area's cases, run on every backend by [`conformance_suite!`](super::conformance_suite):
/// list each case here, next to its function (an unlisted case is dead code, which the build
/// refuses).
macro_rules! cases {
    ($make:expr) => {
        $crate::store::conformance::run_cases!($make; listing;
            search_is_case_insensitive_over_every_field,
            search_takes_wildcards_literally,
            search_stays_inside_one_field_at_any_length,
            search_follows_updates_and_deletes,
            search_combines_with_filters_sorts_paging_and_visibility,
            filters_narrow_the_list,
            sorts,
            pagination_and_bounds,
            visibility_hides_rows_and_counts,
        );
    };
}
pub(crate) use cases;

pub(crate) async fn search_is_case_insensitive_over_every_field(store: Handle) {
    let owner = user(&store, "owner").await;
    for r in [
        row(spec("alpha-name", "h1.example.com", None, &[]), owner),
        row(
            spec("beta", "h2.example.com", Some("Has a ZEBRA Inside"), &[]),
            owner,
        ),
        row(spec("gamma", "pg-kangaroo.internal", None, &[]), owner),
        row(
            spec("delta", "h4.example.com", None, &["Wombat-tag"]),
            owner,
        ),
        row(
            spec("epsilon", "h5.example.com", Some("Ärger über Öl"), &[]),
            owner,
        ),
    ] {
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
    }
    let cases = [
        ("ALPHA", "alpha-name"),
        ("zebra", "beta"),
        ("a zeBRa i", "beta"),
        ("KANGAROO", "gamma"),
        ("wombat", "delta"),
        ("WOMBAT-T", "delta"),
        ("ärger", "epsilon"),
        ("ÜBER", "epsilon"),
    ];
    for (search, expected) in cases {
        let mut query = q();
        query.search = Some(search.into());
        let (found, total) = names(&store, &query, &Visibility::All).await;
        assert_eq!(found, [expected], "search {search:?}");
        assert_eq!(total, 1, "search {search:?}");
    }
    let mut query = q();
    query.search = Some("no-such-thing".into());
    assert_eq!(names(&store, &query, &Visibility::All).await.1, 0);
    // An empty search matches everything.
    query.search = Some(String::new());
    assert_eq!(names(&store, &query, &Visibility::All).await.1, 5);
}

pub(crate) async fn search_takes_wildcards_literally(store: Handle) {
    let owner = user(&store, "owner").await;
    for r in [
        row(spec("a_b", "h1.example.com", None, &[]), owner),
        row(spec("axb", "h2.example.com", None, &[]), owner),
        row(spec("pct", "h3.example.com", Some("100% sure"), &[]), owner),
        row(
            spec("nopct", "h4.example.com", Some("1000 sure"), &[]),
            owner,
        ),
        row(
            spec("slash", "h5.example.com", Some("C:\\data"), &[]),
            owner,
        ),
        row(
            spec("noslash", "h6.example.com", Some("C:data"), &[]),
            owner,
        ),
    ] {
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
    }
    for (search, expected) in [
        ("a_b", vec!["a_b"]),
        ("_", vec!["a_b"]),
        ("0%", vec!["pct"]),
        ("%", vec!["pct"]),
        ("\\", vec!["slash"]),
        ("c:\\d", vec!["slash"]),
        ("%%", vec![]),
    ] {
        let mut query = q();
        query.search = Some(search.into());
        let (found, total) = names(&store, &query, &Visibility::All).await;
        assert_eq!(found, expected, "search {search:?}");
        assert_eq!(total as usize, expected.len(), "search {search:?}");
    }
}

/// Searches of one and two characters (too short for a trigram index), non-ASCII text, quotes
/// and characters with a meaning in full-text query syntax, and matches that would span two
/// fields (name and description, description and host, host and a tag, two tags).
pub(crate) async fn search_stays_inside_one_field_at_any_length(store: Handle) {
    let owner = user(&store, "owner").await;
    for r in [
        row(
            spec("span-x", "h1.example.com", Some("yz tail"), &["t1", "t2"]),
            owner,
        ),
        row(
            spec("other", "h2.example.com", Some("Ça ÉTÉ ΣΊΣΥΦΟΣ"), &["k"]),
            owner,
        ),
        row(
            spec(
                "quoted",
                "h3.example.com",
                Some("say \"hi\" NEAR(x) *"),
                &[],
            ),
            owner,
        ),
    ] {
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
    }
    for (search, expected) in [
        ("-", vec!["span-x"]),
        ("K", vec!["other"]),
        ("Ç", vec!["other"]),
        ("ÇA", vec!["other"]),
        ("yz", vec!["span-x"]),
        ("été", vec!["other"]),
        ("ΣΥΦ", vec!["other"]),
        ("σίσυφος", vec!["other"]),
        ("\"hi\"", vec!["quoted"]),
        ("y \"h", vec!["quoted"]),
        ("near(x)", vec!["quoted"]),
        ("*", vec!["quoted"]),
        (") *", vec!["quoted"]),
        ("h1.example", vec!["span-x"]),
        (".example.com", vec!["other", "quoted", "span-x"]),
        // Across fields: name|description, description|host, host|tag, tag|tag.
        ("xy", vec![]),
        ("-xyz", vec![]),
        ("tailh", vec![]),
        ("comt", vec![]),
        ("t1t2", vec![]),
        ("x\u{1f}y", vec![]),
        ("\u{1f}", vec![]),
        // Query syntax is literal.
        ("h1 OR h2", vec![]),
        ("ex*", vec![]),
        ("\"", vec!["quoted"]),
    ] {
        let mut query = q();
        query.search = Some(search.into());
        let (found, total) = names(&store, &query, &Visibility::All).await;
        assert_eq!(found, expected, "search {search:?}");
        assert_eq!(total as usize, expected.len(), "search {search:?}");
    }
}

/// A search sees the latest version of a connection, and never a deleted one.
pub(crate) async fn search_follows_updates_and_deletes(store: Handle) {
    let owner = user(&store, "owner").await;
    let mut r = row(
        spec("alpha", "h1.example.com", Some("old words"), &["red"]),
        owner,
    );
    store
        .insert_connection(&r, &ev("connection.create"))
        .await
        .unwrap();
    let search = |s: &str| {
        let mut query = q();
        query.search = Some(s.into());
        query
    };
    assert_eq!(
        names(&store, &search("old wo"), &Visibility::All).await.1,
        1
    );
    r.spec = spec("renamed", "h9.example.com", Some("new words"), &["blue"]);
    store
        .update_connection(&r, 1, &ev("connection.update"))
        .await
        .unwrap();
    for gone in ["old wo", "alpha", "h1.ex", "red"] {
        assert_eq!(
            names(&store, &search(gone), &Visibility::All).await,
            (vec![], 0),
            "{gone:?}"
        );
    }
    for now_there in ["new wo", "renamed", "h9.ex", "blue", "ue"] {
        assert_eq!(
            names(&store, &search(now_there), &Visibility::All).await,
            (vec!["renamed".into()], 1),
            "{now_there:?}"
        );
    }
    // A stale delete leaves the connection findable.
    assert!(
        store
            .delete_connection(r.id, 1, &ev("connection.delete"))
            .await
            .is_err()
    );
    assert_eq!(
        names(&store, &search("renamed"), &Visibility::All).await.1,
        1
    );
    store
        .delete_connection(r.id, 2, &ev("connection.delete"))
        .await
        .unwrap();
    assert_eq!(
        names(&store, &search("renamed"), &Visibility::All).await.1,
        0
    );
    assert_eq!(names(&store, &search("ue"), &Visibility::All).await.1, 0);
    // The name is free again, and a new connection under it is found.
    conn(&store, "renamed", owner).await;
    assert_eq!(
        names(&store, &search("renamed"), &Visibility::All).await.1,
        1
    );
}

/// A search narrows the same list the filters, sorts, pages and visibility apply to.
pub(crate) async fn search_combines_with_filters_sorts_paging_and_visibility(store: Handle) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let team = Team {
        id: TeamId::new(),
        name: "payments".into(),
        members: vec![bob],
    };
    store.upsert_team(&team, &ev("team.create")).await.unwrap();
    let base = now();
    let mut ids = Vec::new();
    // Names and update times run in opposite orders; "zz-other" never matches the search.
    for (i, (name, owner, tags)) in [
        ("d-match", alice, &["prod"][..]),
        ("c-match", bob, &["prod"][..]),
        ("b-match", alice, &[][..]),
        ("a-match", alice, &["dev"][..]),
        ("zz-other", alice, &["prod"][..]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = row(spec(name, "h.example.com", None, tags), owner);
        r.updated_at = base + Duration::seconds(i as i64);
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
        ids.push((name, r.id));
    }
    let id = |n: &str| ids.iter().find(|(name, _)| *name == n).unwrap().1;
    for (name, status) in [
        ("a-match", HealthStatus::Healthy),
        ("b-match", HealthStatus::Down),
        ("d-match", HealthStatus::Down),
        ("zz-other", HealthStatus::Down),
    ] {
        store
            .record_check(&check(id(name), base, status), &health(status, base))
            .await
            .unwrap();
    }
    crate::store_set_grants(
        store.as_ref(),
        id("a-match"),
        &[Grant {
            grantee: Grantee::Team(team.id),
            level: GrantLevel::View,
        }],
        &ev("grant.set"),
    )
    .await
    .unwrap();
    crate::store_set_grants(
        store.as_ref(),
        id("d-match"),
        &[Grant {
            grantee: Grantee::User(bob),
            level: GrantLevel::View,
        }],
        &ev("grant.set"),
    )
    .await
    .unwrap();
    let all = Visibility::All;
    // Three characters or more (indexed) and two (scanned) must agree.
    for term in ["-MATCH", "ch"] {
        let mut query = q();
        query.search = Some(term.into());
        assert_eq!(
            names(&store, &query, &all).await,
            (
                vec![
                    "a-match".into(),
                    "b-match".into(),
                    "c-match".into(),
                    "d-match".into()
                ],
                4
            ),
            "{term}"
        );
        query.sort = SortKey::Updated;
        assert_eq!(
            names(&store, &query, &all).await.0,
            ["a-match", "b-match", "c-match", "d-match"],
            "{term}"
        );
        query.sort = SortKey::Status;
        // down (b, d), unknown (c), healthy (a).
        assert_eq!(
            names(&store, &query, &all).await.0,
            ["b-match", "d-match", "c-match", "a-match"],
            "{term}"
        );
        query.sort = SortKey::Name;
        query.tag = Some(Tag::parse("prod").unwrap());
        assert_eq!(
            names(&store, &query, &all).await,
            (vec!["c-match".into(), "d-match".into()], 2),
            "{term}"
        );
        query.status = Some(HealthStatus::Down);
        assert_eq!(
            names(&store, &query, &all).await,
            (vec!["d-match".into()], 1),
            "{term}"
        );
        query.tag = None;
        query.status = None;
        query.engine = Some(Engine::Postgres);
        query.owner = Some(alice);
        assert_eq!(
            names(&store, &query, &all).await,
            (
                vec!["a-match".into(), "b-match".into(), "d-match".into()],
                3
            ),
            "{term}"
        );
        query.engine = None;
        query.owner = None;
        // Bob sees his own, the one granted to him and the one granted to his team.
        let bob_vis = Visibility::Member {
            user: bob,
            teams: vec![team.id],
        };
        assert_eq!(
            names(&store, &query, &bob_vis).await,
            (
                vec!["a-match".into(), "c-match".into(), "d-match".into()],
                3
            ),
            "{term}"
        );
        let bob_alone = Visibility::Member {
            user: bob,
            teams: vec![],
        };
        assert_eq!(
            names(&store, &query, &bob_alone).await,
            (vec!["c-match".into(), "d-match".into()], 2),
            "{term}"
        );
        // Pages, and a page past the end still counts.
        query.per_page = 3;
        for (page, expected) in [
            (1, vec!["a-match", "b-match", "c-match"]),
            (2, vec!["d-match"]),
            (3, vec![]),
        ] {
            query.page = page;
            let (found, total) = names(&store, &query, &all).await;
            assert_eq!(found, expected, "{term} page {page}");
            assert_eq!(total, 4, "{term} page {page}");
        }
        query.page = 2;
        query.per_page = 1;
        assert_eq!(
            names(&store, &query, &bob_vis).await,
            (vec!["c-match".into()], 3),
            "{term}"
        );
    }
}

pub(crate) async fn filters_narrow_the_list(store: Handle) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let a = row(spec("a", "h1.example.com", None, &["prod", "eu"]), alice);
    let b = row(spec("b", "h2.example.com", None, &["staging"]), bob);
    let c = row(spec("c", "h3.example.com", None, &["prod-like"]), alice);
    for r in [&a, &b, &c] {
        store
            .insert_connection(r, &ev("connection.create"))
            .await
            .unwrap();
    }
    let at = now();
    store
        .record_check(
            &check(a.id, at, HealthStatus::Down),
            &health(HealthStatus::Down, at),
        )
        .await
        .unwrap();
    store
        .record_check(
            &check(b.id, at, HealthStatus::Healthy),
            &health(HealthStatus::Healthy, at),
        )
        .await
        .unwrap();
    let all = Visibility::All;

    let mut query = q();
    query.tag = Some(Tag::parse("prod").unwrap());
    assert_eq!(names(&store, &query, &all).await, (vec!["a".into()], 1));
    query.tag = Some(Tag::parse("PROD-LIKE").unwrap());
    assert_eq!(names(&store, &query, &all).await, (vec!["c".into()], 1));

    let mut query = q();
    query.status = Some(HealthStatus::Down);
    assert_eq!(names(&store, &query, &all).await, (vec!["a".into()], 1));
    query.status = Some(HealthStatus::Healthy);
    assert_eq!(names(&store, &query, &all).await, (vec!["b".into()], 1));
    query.status = Some(HealthStatus::Unknown);
    assert_eq!(names(&store, &query, &all).await, (vec!["c".into()], 1));
    query.status = Some(HealthStatus::Degraded);
    assert_eq!(names(&store, &query, &all).await, (vec![], 0));

    let mut query = q();
    query.engine = Some(Engine::Postgres);
    assert_eq!(names(&store, &query, &all).await.1, 3);

    let mut query = q();
    query.owner = Some(alice);
    assert_eq!(
        names(&store, &query, &all).await,
        (vec!["a".into(), "c".into()], 2)
    );
    query.owner = Some(bob);
    query.tag = Some(Tag::parse("prod").unwrap());
    assert_eq!(names(&store, &query, &all).await, (vec![], 0));
}

pub(crate) async fn sorts(store: Handle) {
    let owner = user(&store, "owner").await;
    let base = now();
    let mut ids = Vec::new();
    // Names and update times run in opposite orders.
    for (i, name) in ["d", "c", "b", "a", "e"].into_iter().enumerate() {
        let mut r = row(spec(name, "h.example.com", None, &[]), owner);
        r.updated_at = base + Duration::seconds(i as i64);
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
        ids.push((name, r.id));
    }
    let id = |n: &str| ids.iter().find(|(name, _)| *name == n).unwrap().1;
    // Last checks and latencies in yet other orders; `d` was never checked.
    for (name, status, after, latency) in [
        ("a", HealthStatus::Healthy, 1, Some(30)),
        ("b", HealthStatus::Degraded, 3, Some(5)),
        ("c", HealthStatus::Down, 2, None),
        ("e", HealthStatus::Down, 0, Some(30)),
    ] {
        let at = base + Duration::seconds(after);
        let summary = Health {
            latency_ms: latency,
            ..health(status, at)
        };
        store
            .record_check(&check(id(name), at, status), &summary)
            .await
            .unwrap();
    }
    let all = Visibility::All;
    let mut query = q();
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["a", "b", "c", "d", "e"]
    );
    query.sort = SortKey::Updated;
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["e", "a", "b", "c", "d"]
    );
    query.sort = SortKey::Status;
    // down (c, e), degraded (b), unknown (d), healthy (a); ties by name.
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["c", "e", "b", "d", "a"]
    );
    query.sort = SortKey::Checked;
    // Most recent check first, never checked last.
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["b", "c", "a", "e", "d"]
    );
    query.sort = SortKey::Latency;
    // Slowest first (ties by name), no latency last.
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["a", "e", "b", "c", "d"]
    );
    // The same orders through a search (the narrow search rows join the health).
    query.search = Some("h.example".into());
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["a", "e", "b", "c", "d"]
    );
    query.sort = SortKey::Checked;
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["b", "c", "a", "e", "d"]
    );
}

pub(crate) async fn pagination_and_bounds(store: Handle) {
    let owner = user(&store, "owner").await;
    for name in ["a", "b", "c", "d", "e"] {
        conn(&store, name, owner).await;
    }
    let all = Visibility::All;
    let mut query = q();
    query.per_page = 2;
    let mut seen = Vec::new();
    for (page, expected) in [(1, 2), (2, 2), (3, 1), (4, 0)] {
        query.page = page;
        let p = store.list_connections(&query, &all).await.unwrap();
        assert_eq!(p.items.len(), expected, "page {page}");
        assert_eq!((p.total, p.page, p.per_page), (5, page, 2));
        seen.extend(p.items.into_iter().map(|s| s.spec.name.into_string()));
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);

    for (page, per_page, field) in [
        (0, 10, "page"),
        (1, 0, "per_page"),
        (1, MAX_PER_PAGE + 1, "per_page"),
    ] {
        query.page = page;
        query.per_page = per_page;
        let err = store.list_connections(&query, &all).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.field(), Some(field));
    }
    query.page = 1;
    query.per_page = MAX_PER_PAGE;
    assert_eq!(
        store
            .list_connections(&query, &all)
            .await
            .unwrap()
            .items
            .len(),
        5
    );
}

pub(crate) async fn visibility_hides_rows_and_counts(store: Handle) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let team = Team {
        id: TeamId::new(),
        name: "payments".into(),
        members: vec![carol],
    };
    store.upsert_team(&team, &ev("team.create")).await.unwrap();
    let own = conn(&store, "own", alice).await;
    let direct = conn(&store, "direct", bob).await;
    let via_team = conn(&store, "via-team", bob).await;
    let _hidden = conn(&store, "hidden", bob).await;
    crate::store_set_grants(
        store.as_ref(),
        direct.id,
        &[Grant {
            grantee: Grantee::User(alice),
            level: GrantLevel::View,
        }],
        &ev("grant.set"),
    )
    .await
    .unwrap();
    crate::store_set_grants(
        store.as_ref(),
        via_team.id,
        &[Grant {
            grantee: Grantee::Team(team.id),
            level: GrantLevel::Use,
        }],
        &ev("grant.set"),
    )
    .await
    .unwrap();
    let _ = own;

    let alice_alone = Visibility::Member {
        user: alice,
        teams: vec![],
    };
    assert_eq!(
        names(&store, &q(), &alice_alone).await,
        (vec!["direct".into(), "own".into()], 2)
    );
    let alice_in_team = Visibility::Member {
        user: alice,
        teams: vec![team.id, TeamId::new()],
    };
    assert_eq!(
        names(&store, &q(), &alice_in_team).await,
        (vec!["direct".into(), "own".into(), "via-team".into()], 3)
    );
    let carol_vis = Visibility::Member {
        user: carol,
        teams: vec![team.id],
    };
    assert_eq!(
        names(&store, &q(), &carol_vis).await,
        (vec!["via-team".into()], 1)
    );
    let stranger = Visibility::Member {
        user: UserId::new(),
        teams: vec![TeamId::new()],
    };
    assert_eq!(names(&store, &q(), &stranger).await, (vec![], 0));
    // Search, filters and paging stay inside what is visible.
    let mut query = q();
    query.search = Some("hidden".into());
    assert_eq!(names(&store, &query, &alice_in_team).await, (vec![], 0));
    let mut query = q();
    query.per_page = 1;
    query.page = 2;
    let p = store.list_connections(&query, &alice_alone).await.unwrap();
    assert_eq!(p.total, 2);
    assert_eq!(p.items[0].spec.name.as_str(), "own");
    assert_eq!(names(&store, &q(), &Visibility::All).await.1, 4);
    // Revoking takes effect on the next call.
    crate::store_set_grants(store.as_ref(), direct.id, &[], &ev("grant.set"))
        .await
        .unwrap();
    assert_eq!(names(&store, &q(), &alice_alone).await.1, 1);
}
