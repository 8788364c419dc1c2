//! Uptime: the share of successful checks in the last 24 hours.
//!
//! The stored history of a connection is its raw checks not yet rolled up plus the 5-minute
//! buckets of those that were ([`HealthBucket`]); a check is in exactly one of the two. [`load`]
//! reads both for the window and [`Recent::uptime`] counts both, so a roll-up changes no
//! uptime. The window starts at the start of the bucket holding `now - 24 h`, so it spans 24 h
//! to 24 h 5 min and a bucket is either wholly in it or wholly out.
//! The scheduler reads the history once per connection and then keeps an [`UptimeWindow`] in
//! memory: 5-minute buckets (at most 289 per connection, two bytes each), so recording a check
//! needs no history query.

use std::collections::{BTreeMap, VecDeque};

use time::{Duration, OffsetDateTime};

use crate::model::{Check, HealthBucket};
use crate::store::Store;
use crate::{ConnectionId, Result};

/// The uptime window: 24 hours.
pub const WINDOW: Duration = Duration::hours(24);

/// The most checks [`load`] reads: more than 24 h of the shortest interval (10 s) can produce.
pub const MAX_CHECKS: u32 = 10_000;

/// The bucket width of an [`UptimeWindow`]: 5 minutes.
const BUCKET_SECONDS: i64 = 300;

/// The share of successes among `checks`; `None` when there are none.
pub fn from_checks(checks: &[Check]) -> Option<f64> {
    ratio(
        checks.iter().filter(|c| c.ok).count() as u64,
        checks.len() as u64,
    )
}

/// The start of the uptime window ending at `now`: the start of the bucket holding
/// `now - 24 h`.
pub fn window_start(now: OffsetDateTime) -> OffsetDateTime {
    HealthBucket::start_of(now - WINDOW)
}

/// A connection's stored history in the uptime window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recent {
    /// The raw checks, newest first (at most [`MAX_CHECKS`]).
    pub checks: Vec<Check>,
    /// The buckets of the checks already rolled up, oldest first.
    pub buckets: Vec<HealthBucket>,
}

impl Recent {
    /// The share of successes among the raw checks and the buckets together; `None` without
    /// any check.
    pub fn uptime(&self) -> Option<f64> {
        let (good, all) = self.buckets.iter().fold((0u64, 0u64), |(g, a), b| {
            (
                g + u64::from(b.checks.saturating_sub(b.failures)),
                a + u64::from(b.checks),
            )
        });
        let ok = self.checks.iter().filter(|c| c.ok).count() as u64;
        ratio(good + ok, all + self.checks.len() as u64)
    }
}

/// The history of `id` in the uptime window ending at `now` ([`window_start`] on): the raw
/// checks and the buckets.
///
/// # Errors
/// `Store` when the store fails.
pub async fn load(store: &dyn Store, id: ConnectionId, now: OffsetDateTime) -> Result<Recent> {
    let since = window_start(now);
    let checks = store.checks(id, since, MAX_CHECKS).await?;
    let buckets = store.buckets(id, since).await?;
    Ok(Recent { checks, buckets })
}

/// Buckets in a full window: 24 h of 5-minute buckets, plus the one `now` is in.
const WINDOW_BUCKETS: usize = 289;

/// The most checks one bucket counts (and successes): 255. A 5-minute bucket of the shortest
/// interval (10 s) holds 30 checks, and rechecks after edits draw on the saving user's test
/// budget (S31), so no real bucket comes near it; beyond it a bucket's counts saturate.
const BUCKET_MAX: u8 = u8::MAX;

/// A rolling 24 h count of checks and successes in 5-minute buckets, kept compact (it is the
/// largest part of what the monitor keeps per connection): one `(successes, checks)` pair of
/// bytes per bucket, dense from the oldest bucket still in the window to the newest, so at most
/// 289 pairs (578 bytes) after a day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UptimeWindow {
    /// The bucket number of `counts[0]`.
    first: i64,
    /// `[successes, checks]` per bucket, oldest first, one per bucket from `first` on.
    counts: VecDeque<[u8; 2]>,
}

impl UptimeWindow {
    /// A window seeded with stored checks (any order).
    pub fn from_checks(checks: &[Check]) -> Self {
        Self::from_recent(&Recent {
            checks: checks.to_vec(),
            buckets: Vec::new(),
        })
    }

    /// A window seeded with a connection's stored history: raw checks and buckets.
    pub fn from_recent(recent: &Recent) -> Self {
        let mut counts: BTreeMap<i64, (u32, u32)> = BTreeMap::new();
        for b in &recent.buckets {
            let (good, all) = counts.entry(bucket_of(b.start)).or_default();
            *good = good.saturating_add(b.checks.saturating_sub(b.failures));
            *all = all.saturating_add(b.checks);
        }
        for c in &recent.checks {
            let (good, all) = counts.entry(bucket_of(c.at)).or_default();
            *good = good.saturating_add(u32::from(c.ok));
            *all = all.saturating_add(1);
        }
        let mut window = Self::default();
        for (bucket, (good, all)) in counts {
            let slot = window.slot(bucket);
            slot[0] = saturate(u32::from(slot[0]).saturating_add(good));
            slot[1] = saturate(u32::from(slot[1]).saturating_add(all));
        }
        window
    }

    /// Counts one check that finished at `at`. Checks should come in time order; an older one
    /// than the newest bucket is counted in the newest bucket.
    pub fn push(&mut self, at: OffsetDateTime, ok: bool) {
        let slot = self.slot(bucket_of(at));
        slot[0] = slot[0].saturating_add(u8::from(ok));
        slot[1] = slot[1].saturating_add(1);
    }

    /// The share of successes in the 24 h before `now`; `None` without checks there. Drops the
    /// buckets that left the window.
    pub fn uptime(&mut self, now: OffsetDateTime) -> Option<f64> {
        self.forget_before(bucket_of(now - WINDOW));
        let (good, all) = self
            .counts
            .iter()
            .fold((0u64, 0u64), |(g, a), [good, all]| {
                (g + u64::from(*good), a + u64::from(*all))
            });
        ratio(good, all)
    }

    /// The counts of `bucket`, or of the newest bucket when `bucket` is older; buckets are
    /// added (empty) up to it, and the oldest dropped so the window never spans more than a
    /// day.
    fn slot(&mut self, bucket: i64) -> &mut [u8; 2] {
        if self.counts.is_empty() {
            self.first = bucket;
        }
        let newest = self.first + self.counts.len() as i64 - 1;
        if bucket > newest {
            let oldest = bucket - (WINDOW_BUCKETS as i64 - 1);
            self.forget_before(oldest);
            if self.counts.is_empty() {
                self.first = bucket;
            }
            let missing =
                usize::try_from(bucket - (self.first + self.counts.len() as i64) + 1).unwrap_or(0);
            if self.counts.capacity() < self.counts.len() + missing {
                // Grown an hour at a time (not doubled): the window stays near its length.
                self.counts.reserve_exact(missing.max(12));
            }
            for _ in 0..missing {
                self.counts.push_back([0, 0]);
            }
        }
        if self.counts.is_empty() {
            // Not reached (a bucket was just added, or `bucket` is at most the newest); kept so
            // the index below is always in bounds.
            self.counts.push_back([0, 0]);
        }
        let last = self.counts.len() - 1;
        let index = usize::try_from(bucket - self.first).map_or(last, |i| i.min(last));
        &mut self.counts[index]
    }

    /// Drops the buckets older than `oldest`.
    fn forget_before(&mut self, oldest: i64) {
        while self.first < oldest && !self.counts.is_empty() {
            self.counts.pop_front();
            self.first += 1;
        }
        if self.counts.is_empty() {
            self.first = self.first.max(oldest);
        }
        if self.counts.capacity() > WINDOW_BUCKETS + 12 {
            self.counts.shrink_to(WINDOW_BUCKETS);
        }
    }
}

fn saturate(n: u32) -> u8 {
    u8::try_from(n).unwrap_or(BUCKET_MAX)
}

fn bucket_of(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(BUCKET_SECONDS)
}

#[allow(clippy::cast_precision_loss)] // Counts stay far below 2^52.
fn ratio(good: u64, all: u64) -> Option<f64> {
    (all > 0).then(|| good as f64 / all as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HealthStatus;

    const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    fn row(at: OffsetDateTime, ok: bool) -> Check {
        Check {
            connection: ConnectionId::new(),
            at,
            ok,
            latency_ms: 1,
            error_kind: None,
            step: None,
            status: HealthStatus::Healthy,
        }
    }

    #[test]
    fn share_of_successes() {
        assert_eq!(from_checks(&[]), None);
        let rows = [
            row(NOW, true),
            row(NOW, false),
            row(NOW, true),
            row(NOW, true),
        ];
        assert_eq!(from_checks(&rows), Some(0.75));
        assert_eq!(from_checks(&rows[1..2]), Some(0.0));
    }

    proptest::proptest! {
        /// The compact window counts exactly what a plain count of the checks in the last day's
        /// buckets does, whatever the gaps between checks (minutes to days).
        #[test]
        fn the_compact_window_is_exact(
            steps in proptest::collection::vec((1i64..200_000, proptest::bool::ANY), 1..400),
            seeded in 0usize..50,
        ) {
            let mut at = NOW;
            let mut rows = Vec::new();
            for (gap, ok) in &steps {
                at += Duration::seconds(*gap);
                rows.push(row(at, *ok));
            }
            let seeded = seeded.min(rows.len());
            let mut w = UptimeWindow::from_checks(&rows[..seeded]);
            for (i, r) in rows.iter().enumerate().skip(seeded) {
                w.push(r.at, r.ok);
                let oldest = bucket_of(r.at - WINDOW);
                let inside: Vec<Check> = rows[..=i]
                    .iter()
                    .filter(|c| bucket_of(c.at) >= oldest)
                    .cloned()
                    .collect();
                proptest::prop_assert_eq!(w.uptime(r.at), from_checks(&inside));
                proptest::prop_assert!(w.counts.len() <= WINDOW_BUCKETS);
            }
        }
    }

    #[test]
    fn a_bucket_saturates_instead_of_wrapping() {
        let mut w = UptimeWindow::default();
        for i in 0..300 {
            w.push(NOW + Duration::milliseconds(i), i % 2 == 0);
        }
        assert_eq!(w.counts.len(), 1);
        assert_eq!(w.counts[0], [150, 255]);
        // An older check than the newest bucket counts in the newest.
        let mut w = UptimeWindow::default();
        w.push(NOW + Duration::hours(1), true);
        w.push(NOW, false);
        assert_eq!(w.uptime(NOW + Duration::hours(1)), Some(0.5));
    }

    #[test]
    fn window_matches_exact_share_and_forgets_old_checks() {
        let rows: Vec<Check> = (0..100)
            .map(|i| row(NOW + Duration::minutes(i), i % 4 != 0))
            .collect();
        let mut w = UptimeWindow::from_checks(&rows);
        let end = NOW + Duration::minutes(100);
        assert_eq!(w.uptime(end), from_checks(&rows));
        // A day later only the checks after that are left.
        let later = end + Duration::hours(24);
        w.push(later, false);
        assert_eq!(w.uptime(later), Some(0.0));
        w.push(later + Duration::seconds(10), true);
        assert_eq!(w.uptime(later + Duration::seconds(10)), Some(0.5));
        assert_eq!(w.uptime(later + Duration::hours(25)), None);
    }
}
