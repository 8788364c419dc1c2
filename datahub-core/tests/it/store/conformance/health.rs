//! Health: checks and the current health, check facts, check leases.

use super::*;

/// This area's cases, run on every backend by [`conformance_suite!`](super::conformance_suite):
/// list each case here, next to its function (an unlisted case is dead code, which the build
/// refuses).
macro_rules! cases {
    ($make:expr) => {
        $crate::store::conformance::run_cases!($make; health;
            health_checks_and_summary,
            check_facts_are_kept_until_a_check_brings_new_ones,
            check_leases_one_winner_per_interval,
            checks_recorded_in_batches,
            check_leases_claimed_in_batches,
        );
    };
}
pub(crate) use cases;

pub(crate) async fn health_checks_and_summary(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let other = conn(&store, "other", owner).await;
    let base = now() - Duration::hours(10);
    for i in 0..5 {
        let at = base + Duration::hours(i);
        let status = if i == 4 {
            HealthStatus::Down
        } else {
            HealthStatus::Healthy
        };
        store
            .record_check(&check(r.id, at, status), &health(status, at))
            .await
            .unwrap();
    }
    store
        .record_check(
            &check(other.id, base, HealthStatus::Healthy),
            &health(HealthStatus::Healthy, base),
        )
        .await
        .unwrap();
    let got = store.checks(r.id, base, 100).await.unwrap();
    assert_eq!(got.len(), 5);
    assert!(got.windows(2).all(|w| w[0].at > w[1].at), "newest first");
    assert_eq!(
        got[0],
        check(r.id, base + Duration::hours(4), HealthStatus::Down)
    );
    let got = store
        .checks(r.id, base + Duration::hours(2), 100)
        .await
        .unwrap();
    assert_eq!(got.len(), 3, "since is inclusive");
    let got = store.checks(r.id, base, 2).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].at, base + Duration::hours(3));

    let s = store.connection_summary(r.id).await.unwrap().unwrap();
    assert_eq!(
        s.health,
        health(HealthStatus::Down, base + Duration::hours(4))
    );

    let pruned = store.prune_checks(base + Duration::hours(2)).await.unwrap();
    assert_eq!(pruned, 3, "two of orders and one of other");
    assert_eq!(store.checks(r.id, base, 100).await.unwrap().len(), 3);
    assert!(store.checks(other.id, base, 100).await.unwrap().is_empty());
    // Pruning history keeps the current health.
    let s = store.connection_summary(other.id).await.unwrap().unwrap();
    assert_eq!(s.health.status, HealthStatus::Healthy);

    // A check of an unknown (deleted) connection is dropped without error.
    let ghost = ConnectionId::new();
    store
        .record_check(
            &check(ghost, base, HealthStatus::Healthy),
            &health(HealthStatus::Healthy, base),
        )
        .await
        .unwrap();
    assert!(store.checks(ghost, base, 10).await.unwrap().is_empty());
}

pub(crate) async fn check_facts_are_kept_until_a_check_brings_new_ones(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let plain = conn(&store, "plain", owner).await;
    let t0 = now() - Duration::minutes(10);
    let facts = |at: OffsetDateTime, version: &str, tls: bool| CheckFacts {
        at,
        server: Some(ServerInfo {
            version: version.into(),
            in_recovery: true,
            connections_used: Some(7),
            max_connections: Some(100),
        }),
        tls: tls.then(|| TlsInfo {
            protocol: Some("TLSv1.3".into()),
            cipher: Some("TLS_AES_256_GCM_SHA384".into()),
            peer_subject: Some("CN=db.example.com".into()),
            peer_not_after: Some(t0 + Duration::days(90)),
        }),
    };
    let with = |status: HealthStatus, at: OffsetDateTime, f: Option<CheckFacts>| Health {
        facts: f,
        ..health(status, at)
    };
    // Never checked, and checked without reaching the server: no facts.
    assert_eq!(
        store
            .connection_summary(r.id)
            .await
            .unwrap()
            .unwrap()
            .health
            .facts,
        None
    );
    store
        .record_check(
            &check(r.id, t0, HealthStatus::Down),
            &with(HealthStatus::Down, t0, None),
        )
        .await
        .unwrap();
    let s = store.connection_summary(r.id).await.unwrap().unwrap();
    assert_eq!(s.health.facts, None);
    assert_eq!(s.health.status, HealthStatus::Down);

    // A check that reached the server stores its facts with the health.
    let t1 = t0 + Duration::minutes(1);
    let first = facts(t1, "16.4", true);
    store
        .record_check(
            &check(r.id, t1, HealthStatus::Healthy),
            &with(HealthStatus::Healthy, t1, Some(first.clone())),
        )
        .await
        .unwrap();
    let s = store.connection_summary(r.id).await.unwrap().unwrap();
    assert_eq!(
        s.health,
        with(HealthStatus::Healthy, t1, Some(first.clone()))
    );

    // A failed check updates the health and keeps the facts.
    let t2 = t1 + Duration::minutes(1);
    store
        .record_check(
            &check(r.id, t2, HealthStatus::Down),
            &with(HealthStatus::Down, t2, None),
        )
        .await
        .unwrap();
    let s = store.connection_summary(r.id).await.unwrap().unwrap();
    assert_eq!(s.health, with(HealthStatus::Down, t2, Some(first)));

    // New facts replace the old ones whole: without TLS this time, nothing of the old TLS
    // facts stays.
    let t3 = t2 + Duration::minutes(1);
    let second = facts(t3, "17.0", false);
    store
        .record_check(
            &check(r.id, t3, HealthStatus::Healthy),
            &with(HealthStatus::Healthy, t3, Some(second.clone())),
        )
        .await
        .unwrap();
    let s = store.connection_summary(r.id).await.unwrap().unwrap();
    assert_eq!(s.health.facts, Some(second.clone()));

    // A list shows the same facts; another connection's are its own.
    store
        .record_check(
            &check(plain.id, t3, HealthStatus::Healthy),
            &with(HealthStatus::Healthy, t3, None),
        )
        .await
        .unwrap();
    let page = store
        .list_connections(&q(), &Visibility::All)
        .await
        .unwrap();
    let facts_of = |id: ConnectionId| {
        page.items
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.health.facts.clone())
            .unwrap()
    };
    assert_eq!(facts_of(r.id), Some(second));
    assert_eq!(facts_of(plain.id), None);

    // The step of each check round-trips; a success has none.
    let history = store.checks(r.id, t0, 10).await.unwrap();
    let steps: Vec<Option<StepName>> = history.iter().map(|c| c.step).collect();
    assert_eq!(
        steps,
        [None, Some(StepName::Tcp), None, Some(StepName::Tcp)],
        "newest first"
    );
}

pub(crate) async fn check_leases_one_winner_per_interval(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let hold = std::time::Duration::from_secs(8);
    let t0 = now();
    // Two holders racing for the same check: exactly one wins.
    let (x, y) = tokio::join!(
        store.lease_check(r.id, a, t0, hold),
        store.lease_check(r.id, b, t0, hold)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(
        u8::from(x.is_some()) + u8::from(y.is_some()),
        1,
        "{x:?} {y:?}"
    );
    let (winner, loser) = if x.is_some() { (a, b) } else { (b, a) };
    let won = x.or(y).unwrap();
    assert_eq!(won.previous_holder, None, "first claim ever");
    // The claim carries the connection as stored (sealed secrets included): a check reads
    // nothing more.
    assert_eq!(Some(won.connection), store.connection(r.id).await.unwrap());
    // Within the hold the other holder loses; the winner may claim again (its own recheck).
    let t1 = t0 + Duration::seconds(5);
    assert_eq!(
        store.lease_check(r.id, loser, t1, hold).await.unwrap(),
        None
    );
    let again = store.lease_check(r.id, winner, t1, hold).await.unwrap();
    assert_eq!(again.unwrap().previous_holder, Some(winner));
    // A later interval can be won by the other holder, who learns who held it before.
    let t2 = t1 + Duration::seconds(8);
    let later = store.lease_check(r.id, loser, t2, hold).await.unwrap();
    assert_eq!(later.unwrap().previous_holder, Some(winner));
    assert_eq!(
        store
            .lease_check(r.id, winner, t2 + Duration::seconds(1), hold)
            .await
            .unwrap(),
        None
    );
    // Many racing at once for a fresh connection: one winner.
    let other = conn(&store, "other", owner).await;
    let t3 = now();
    let claims = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .lease_check(other.id, uuid::Uuid::now_v7(), t3, hold)
                .await
        })
    });
    let mut won = 0;
    for claim in claims.collect::<Vec<_>>() {
        won += usize::from(claim.await.unwrap().unwrap().is_some());
    }
    assert_eq!(won, 1);
    // An unknown (deleted) connection cannot be claimed.
    assert_eq!(
        store
            .lease_check(ConnectionId::new(), a, t3, hold)
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn checks_recorded_in_batches(store: Handle) {
    let owner = user(&store, "owner").await;
    let a = conn(&store, "a", owner).await;
    let b = conn(&store, "b", owner).await;
    let ghost = ConnectionId::new();
    let t0 = now() - Duration::minutes(10);
    let t1 = t0 + Duration::minutes(1);
    let facts = CheckFacts {
        at: t0,
        server: Some(ServerInfo {
            version: "16.4".into(),
            in_recovery: false,
            connections_used: Some(3),
            max_connections: Some(100),
        }),
        tls: None,
    };
    let with_facts = Health {
        facts: Some(facts.clone()),
        ..health(HealthStatus::Healthy, t0)
    };
    // Nothing to record is no error.
    store.record_checks(&[]).await.unwrap();
    // One write: two checks of `a` (the later one brings no facts), one of `b`, and one of a
    // connection deleted meanwhile, which is dropped without keeping the others out.
    store
        .record_checks(&[
            (check(a.id, t0, HealthStatus::Healthy), with_facts),
            (
                check(ghost, t0, HealthStatus::Healthy),
                health(HealthStatus::Healthy, t0),
            ),
            (
                check(b.id, t0, HealthStatus::Healthy),
                health(HealthStatus::Healthy, t0),
            ),
            (
                check(a.id, t1, HealthStatus::Down),
                health(HealthStatus::Down, t1),
            ),
        ])
        .await
        .unwrap();
    let history = store.checks(a.id, t0, 10).await.unwrap();
    assert_eq!(
        history,
        [
            check(a.id, t1, HealthStatus::Down),
            check(a.id, t0, HealthStatus::Healthy)
        ],
        "newest first"
    );
    assert_eq!(store.checks(b.id, t0, 10).await.unwrap().len(), 1);
    assert!(store.checks(ghost, t0, 10).await.unwrap().is_empty());
    // The later check's health is the current one, with the facts of the one that had any.
    let s = store.connection_summary(a.id).await.unwrap().unwrap();
    assert_eq!(
        s.health,
        Health {
            facts: Some(facts),
            ..health(HealthStatus::Down, t1)
        }
    );
    let s = store.connection_summary(b.id).await.unwrap().unwrap();
    assert_eq!(s.health, health(HealthStatus::Healthy, t0));
}

pub(crate) async fn check_leases_claimed_in_batches(store: Handle) {
    let owner = user(&store, "owner").await;
    let mut ids = Vec::new();
    for i in 0..24 {
        ids.push(conn(&store, &format!("c{i}"), owner).await.id);
    }
    let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let hold = std::time::Duration::from_secs(8);
    let t0 = now();
    let won_ids = |won: &[CheckLease]| -> std::collections::BTreeSet<ConnectionId> {
        won.iter().map(|lease| lease.connection.id).collect()
    };
    // Two holders racing batch claims over the same connections, several rounds (first
    // claims and claims of existing leases): no connection is given to both, none to
    // nobody.
    let all: std::collections::BTreeSet<ConnectionId> = ids.iter().copied().collect();
    let mut reversed = ids.clone();
    reversed.reverse();
    let mut at = t0;
    let mut last = std::collections::BTreeMap::new();
    for round in 0..4 {
        let (x, y) = tokio::join!(
            store.lease_checks(&ids, a, at, hold),
            store.lease_checks(&reversed, b, at, hold)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        let (wx, wy) = (won_ids(&x), won_ids(&y));
        assert_eq!(x.len(), wx.len(), "each won once");
        assert!(wx.is_disjoint(&wy), "round {round}: {wx:?} {wy:?}");
        assert_eq!(&wx | &wy, all, "round {round}");
        // Each win names the holder before it and carries the connection as stored.
        for (lease, holder) in x.iter().map(|l| (l, a)).chain(y.iter().map(|l| (l, b))) {
            let id = lease.connection.id;
            assert_eq!(
                lease.previous_holder,
                last.get(&id).copied(),
                "round {round}"
            );
            last.insert(id, holder);
        }
        if round == 0 {
            let first = x.first().or(y.first()).unwrap();
            assert_eq!(
                Some(first.connection.clone()),
                store.connection(first.connection.id).await.unwrap()
            );
        }
        at += Duration::seconds(9);
    }
    // Within the hold, a holder wins back only its own (an id given twice is claimed once,
    // and unknown ids are lost without error).
    let mut asked = ids.clone();
    asked.push(ids[0]);
    asked.push(ConnectionId::new());
    let within = at - Duration::seconds(4);
    let own: std::collections::BTreeSet<ConnectionId> = last
        .iter()
        .filter(|(_, holder)| **holder == a)
        .map(|(id, _)| *id)
        .collect();
    let again = store.lease_checks(&asked, a, within, hold).await.unwrap();
    assert_eq!(again.len(), own.len());
    assert_eq!(won_ids(&again), own);
    assert!(
        store
            .lease_checks(&[], a, within, hold)
            .await
            .unwrap()
            .is_empty()
    );
}
