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
            raw_checks_roll_up_into_buckets,
            roll_up_keeps_uptime_and_chart,
            roll_up_and_pruning_go_in_batches,
            replicas_rolling_up_at_once_count_each_check_once,
            deleting_a_connection_deletes_its_buckets,
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

    let rolled = roll_up_all(&store, base + Duration::hours(2), 5_000).await;
    assert_eq!(
        rolled.iter().sum::<u64>(),
        3,
        "two of orders and one of other"
    );
    assert_eq!(store.checks(r.id, base, 100).await.unwrap().len(), 3);
    assert!(store.checks(other.id, base, 100).await.unwrap().is_empty());
    // Rolling up history keeps the current health.
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

// ------------------------------------------------------------------------------------------
// History roll-up
// ------------------------------------------------------------------------------------------

/// A check of `id` at `at` taking `ms`, failed (status down) or not (status `ok_status`).
fn timed(
    id: ConnectionId,
    at: OffsetDateTime,
    ok: bool,
    ms: u32,
    ok_status: HealthStatus,
) -> Check {
    Check {
        connection: id,
        at,
        ok,
        latency_ms: ms,
        error_kind: (!ok).then_some(FailureKind::Timeout),
        step: (!ok).then_some(StepName::Tcp),
        status: if ok { ok_status } else { HealthStatus::Down },
    }
}

async fn record_all(store: &Handle, checks: &[Check]) {
    for c in checks {
        store
            .record_check(c, &health(c.status, c.at))
            .await
            .unwrap();
    }
}

/// Rolls up everything older than `before` in batches of `max_rows`; returns the batches'
/// rolled counts.
async fn roll_up_all(store: &Handle, before: OffsetDateTime, max_rows: u32) -> Vec<u64> {
    let mut from = None;
    let mut batches = Vec::new();
    loop {
        let done = store.roll_up_checks(before, from, max_rows).await.unwrap();
        assert!(!done.contended, "nobody else rolls up");
        batches.push(done.rolled);
        match done.next {
            Some(next) => from = Some(next),
            None => return batches,
        }
    }
}

/// A bucket as expected.
fn bucket(
    connection: ConnectionId,
    start: OffsetDateTime,
    (checks, failures): (u32, u32),
    p50_max: Option<(u32, u32)>,
    worst: HealthStatus,
) -> HealthBucket {
    HealthBucket {
        connection,
        start,
        checks,
        failures,
        latency_p50_ms: p50_max.map(|(p, _)| p),
        latency_max_ms: p50_max.map(|(_, m)| m),
        worst,
    }
}

pub(crate) async fn raw_checks_roll_up_into_buckets(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let other = conn(&store, "other", owner).await;
    let t0 = HealthBucket::start_of(now() - Duration::days(2)) - Duration::minutes(55);
    let m = Duration::minutes;
    let (h, d) = (HealthStatus::Healthy, HealthStatus::Degraded);
    let checks = vec![
        // Bucket t0: four checks, one failed (status down), latencies 30, 10, 20 (p50 20,
        // max 30).
        timed(r.id, t0, true, 30, h),
        timed(r.id, t0 + m(1), true, 10, h),
        timed(r.id, t0 + m(2), false, 5_000, h),
        timed(r.id, t0 + m(4) + Duration::seconds(59), true, 20, d),
        // Bucket t0 + 10 min (the next hour): failures only.
        timed(r.id, t0 + m(10), false, 100, h),
        timed(r.id, t0 + m(11), false, 200, h),
        // Bucket t0 + 15 min: two successes, the lower median.
        timed(r.id, t0 + m(15), true, 8, d),
        timed(r.id, t0 + m(16), true, 4, h),
        // Another connection in bucket t0.
        timed(other.id, t0 + m(3), true, 1, h),
        // Newer than the cut: stays raw.
        timed(r.id, t0 + m(20), true, 3, h),
    ];
    record_all(&store, &checks).await;
    // The cut falls inside bucket t0 + 20 min (taken down to its start): that bucket stays raw.
    let before = t0 + m(22);
    let batches = roll_up_all(&store, before, 5_000).await;
    assert_eq!(batches.iter().sum::<u64>(), 9);
    let expected = vec![
        bucket(r.id, t0, (4, 1), Some((20, 30)), HealthStatus::Down),
        bucket(r.id, t0 + m(10), (2, 2), None, HealthStatus::Down),
        bucket(r.id, t0 + m(15), (2, 0), Some((4, 8)), d),
    ];
    assert_eq!(store.buckets(r.id, t0).await.unwrap(), expected);
    assert_eq!(
        store.buckets(r.id, t0 + m(10)).await.unwrap(),
        expected[1..],
        "since is inclusive, buckets before it are left out"
    );
    assert_eq!(
        store.buckets(other.id, t0).await.unwrap(),
        [bucket(other.id, t0, (1, 0), Some((1, 1)), h)]
    );
    // The rolled raw checks are gone; the newer one is still there.
    let raw = store.checks(r.id, t0 - m(60), 100).await.unwrap();
    assert_eq!(raw, [checks[9].clone()]);
    assert!(store.checks(other.id, t0, 100).await.unwrap().is_empty());

    // Rolling up again changes nothing.
    assert_eq!(
        roll_up_all(&store, before, 5_000).await.iter().sum::<u64>(),
        0
    );
    assert_eq!(store.buckets(r.id, t0).await.unwrap(), expected);

    // A check of an already rolled bucket showing up late is added to it, not lost.
    record_all(&store, &[timed(r.id, t0 + m(3), true, 50, h)]).await;
    roll_up_all(&store, before, 5_000).await;
    let got = store.buckets(r.id, t0).await.unwrap();
    assert_eq!((got[0].checks, got[0].failures), (5, 1));
    assert_eq!(got[0].latency_max_ms, Some(50));
    assert_eq!(got[1..], expected[1..]);
}

/// The 24 h chart as a client draws it from the history: per 30 minutes, checks, failures and
/// the highest latency of a success (what the buckets keep exactly).
fn chart(recent: &uptime::Recent, from: OffsetDateTime) -> Vec<(i64, u32, u32, u32)> {
    let mut bins: std::collections::BTreeMap<i64, (u32, u32, u32)> = Default::default();
    let bin = |at: OffsetDateTime| (at - from).whole_minutes().div_euclid(30);
    for c in &recent.checks {
        let e = bins.entry(bin(c.at)).or_default();
        e.0 += 1;
        e.1 += u32::from(!c.ok);
        if c.ok {
            e.2 = e.2.max(c.latency_ms);
        }
    }
    for b in &recent.buckets {
        let e = bins.entry(bin(b.start)).or_default();
        e.0 += b.checks;
        e.1 += b.failures;
        e.2 = e.2.max(b.latency_max_ms.unwrap_or(0));
    }
    bins.into_iter()
        .map(|(k, (n, f, m))| (k, n, f, m))
        .collect()
}

pub(crate) async fn roll_up_keeps_uptime_and_chart(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let at = now();
    // A scripted day: a check every 3 minutes, every seventh failing, latency varying; an
    // outage of an hour eight hours ago.
    let start = at - Duration::hours(25);
    let checks: Vec<Check> = (0..500)
        .map(|i| {
            let t = start + Duration::minutes(3 * i);
            let outage = (t - (at - Duration::hours(8))).whole_minutes().abs() < 30;
            let ok = i % 7 != 0 && !outage;
            timed(r.id, t, ok, 5 + (i as u32 * 37) % 90, HealthStatus::Healthy)
        })
        .collect();
    record_all(&store, &checks).await;
    let from = uptime::window_start(at);
    let before = uptime::load(store.as_ref(), r.id, at).await.unwrap();
    assert!(before.buckets.is_empty());
    assert!(before.checks.len() > 400);
    let uptime_before = before.uptime().unwrap();
    assert!(
        uptime_before > 0.5 && uptime_before < 0.9,
        "{uptime_before}"
    );
    let window_before = uptime::UptimeWindow::from_recent(&before).uptime(at);
    assert_eq!(window_before, Some(uptime_before));
    let chart_before = chart(&before, from);

    // Roll up all but the last two hours (a detail window shorter than the uptime window).
    roll_up_all(&store, at - Duration::hours(2), 5_000).await;
    let after = uptime::load(store.as_ref(), r.id, at).await.unwrap();
    assert!(!after.buckets.is_empty());
    assert!(after.checks.len() < 50, "{}", after.checks.len());
    assert_eq!(after.uptime(), Some(uptime_before));
    assert_eq!(
        uptime::UptimeWindow::from_recent(&after).uptime(at),
        Some(uptime_before)
    );
    assert_eq!(chart(&after, from), chart_before);
}

pub(crate) async fn roll_up_and_pruning_go_in_batches(store: Handle) {
    let owner = user(&store, "owner").await;
    let mut conns = Vec::new();
    for name in ["a", "b", "c"] {
        conns.push(conn(&store, name, owner).await.id);
    }
    // 3 connections × 13 hours × 3 checks a bucket... 40 checks each, 7 per bucket.
    let t0 = HealthBucket::start_of(now() - Duration::days(40));
    let mut checks = Vec::new();
    for id in &conns {
        for i in 0..40 {
            let at = t0 + Duration::minutes(5 * (i / 7)) + Duration::seconds(i % 7 * 10);
            checks.push(timed(
                *id,
                at,
                i % 5 != 0,
                10 + i as u32,
                HealthStatus::Healthy,
            ));
        }
    }
    record_all(&store, &checks).await;
    let before = t0 + Duration::hours(1);
    let batches = roll_up_all(&store, before, 25).await;
    assert_eq!(batches.iter().sum::<u64>(), 120);
    assert!(batches.len() >= 5, "{batches:?}");
    assert!(batches.iter().all(|n| *n <= 25), "{batches:?}");
    // Cut at bucket boundaries, the batches give exactly what one batch would.
    for id in &conns {
        let got = store.buckets(*id, t0).await.unwrap();
        assert_eq!(got.len(), 6);
        assert_eq!(got.iter().map(|b| b.checks).sum::<u32>(), 40);
        let first: Vec<u32> = (0..7).filter(|i| i % 5 != 0).map(|i| 10 + i).collect();
        assert_eq!(got[0].failures, 2, "checks 0 and 5");
        assert_eq!(got[0].latency_p50_ms, Some(first[(first.len() - 1) / 2]));
        assert_eq!(got[0].latency_max_ms, Some(16));
        assert!(store.checks(*id, t0, 100).await.unwrap().is_empty());
    }

    // Expired hours go in batches too: 3 connections × 12 hours, 5 at a time.
    let mut more = Vec::new();
    for id in &conns {
        for hour in 1..12 {
            more.push(timed(
                *id,
                t0 + Duration::hours(hour),
                true,
                7,
                HealthStatus::Healthy,
            ));
        }
    }
    record_all(&store, &more).await;
    roll_up_all(&store, t0 + Duration::hours(13), 5_000).await;
    let mut deleted = Vec::new();
    loop {
        let n = store
            .prune_buckets(t0 + Duration::hours(10), 5)
            .await
            .unwrap();
        deleted.push(n);
        if n < 5 {
            break;
        }
    }
    // Hours t0 .. t0 + 9 h ended by t0 + 10 h: 10 hours × 3 connections.
    assert_eq!(deleted.iter().sum::<u64>(), 30, "{deleted:?}");
    assert!(deleted.len() >= 6);
    for id in &conns {
        let left = store.buckets(*id, t0).await.unwrap();
        assert_eq!(
            left.iter().map(|b| b.start).collect::<Vec<_>>(),
            [t0 + Duration::hours(10), t0 + Duration::hours(11)]
        );
    }
}

pub(crate) async fn replicas_rolling_up_at_once_count_each_check_once(store: Handle) {
    let owner = user(&store, "owner").await;
    let mut conns = Vec::new();
    for i in 0..4 {
        conns.push(conn(&store, &format!("c{i}"), owner).await.id);
    }
    let t0 = HealthBucket::start_of(now() - Duration::days(3));
    let mut checks = Vec::new();
    for id in &conns {
        for i in 0..60 {
            checks.push(timed(
                *id,
                t0 + Duration::seconds(20 * i),
                i % 3 != 0,
                9,
                HealthStatus::Healthy,
            ));
        }
    }
    record_all(&store, &checks).await;
    let before = t0 + Duration::hours(2);
    // Two pruners at once, small batches so they interleave.
    let roller = |store: Handle| async move {
        let mut from = None;
        let mut rolled = 0;
        loop {
            let done = store.roll_up_checks(before, from, 7).await.unwrap();
            rolled += done.rolled;
            if done.contended {
                tokio::task::yield_now().await;
                continue;
            }
            match done.next {
                Some(next) => from = Some(next),
                None => return rolled,
            }
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(roller(store.clone())),
        tokio::spawn(roller(store.clone()))
    );
    assert_eq!(a.unwrap() + b.unwrap(), 240, "each check rolled once");
    for id in &conns {
        let got = store.buckets(*id, t0).await.unwrap();
        assert_eq!(got.iter().map(|b| b.checks).sum::<u32>(), 60);
        assert_eq!(got.iter().map(|b| b.failures).sum::<u32>(), 20);
        assert!(
            got.iter().all(|b| b.checks == 15 && b.failures == 5),
            "{got:?}"
        );
    }
}

pub(crate) async fn deleting_a_connection_deletes_its_buckets(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let kept = conn(&store, "kept", owner).await;
    let t0 = HealthBucket::start_of(now() - Duration::days(2));
    record_all(
        &store,
        &[
            timed(r.id, t0, true, 1, HealthStatus::Healthy),
            timed(kept.id, t0, true, 1, HealthStatus::Healthy),
        ],
    )
    .await;
    roll_up_all(&store, t0 + Duration::hours(1), 5_000).await;
    assert_eq!(store.buckets(r.id, t0).await.unwrap().len(), 1);
    store
        .delete_connection(r.id, r.version, &ev("connection.delete"))
        .await
        .unwrap();
    assert!(store.buckets(r.id, t0).await.unwrap().is_empty());
    assert_eq!(store.buckets(kept.id, t0).await.unwrap().len(), 1);
    // Nothing of it is left for a pruner to find either.
    assert_eq!(store.prune_buckets(now(), 100).await.unwrap(), 1);
}
