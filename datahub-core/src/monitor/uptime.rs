//! Uptime: the share of successful checks in the last 24 hours.
//!
//! The stored history of a connection is its raw checks not yet rolled up plus the 5-minute
//! buckets of those that were ([`HealthBucket`]); a check is in exactly one of the two. [`load`]
//! reads both for the window and [`Recent::uptime`] counts both, so a roll-up changes no
//! uptime. The window starts at the start of the bucket holding `now - 24 h`, so it spans 24 h
//! to 24 h 5 min and a bucket is either wholly in it or wholly out.
//! The scheduler reads the history once per connection and then keeps an [`UptimeWindow`] in
//! memory: 5-minute buckets (at most 289 per connection), so recording a check needs no history
//! query.

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

/// A rolling 24 h count of checks and successes in 5-minute buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UptimeWindow {
    /// (bucket number, successes, checks), oldest first.
    buckets: VecDeque<(i64, u32, u32)>,
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
        Self {
            buckets: counts
                .into_iter()
                .map(|(b, (good, all))| (b, good, all))
                .collect(),
        }
    }

    /// Counts one check that finished at `at`. Checks should come in time order; an older one
    /// than the newest bucket is counted in the newest bucket.
    pub fn push(&mut self, at: OffsetDateTime, ok: bool) {
        let bucket = bucket_of(at);
        match self.buckets.back_mut() {
            Some((b, good, all)) if *b >= bucket => {
                *good = good.saturating_add(u32::from(ok));
                *all = all.saturating_add(1);
            }
            _ => self.buckets.push_back((bucket, u32::from(ok), 1)),
        }
    }

    /// The share of successes in the 24 h before `now`; `None` without checks there. Drops the
    /// buckets that left the window.
    pub fn uptime(&mut self, now: OffsetDateTime) -> Option<f64> {
        let oldest = bucket_of(now - WINDOW);
        while self.buckets.front().is_some_and(|(b, _, _)| *b < oldest) {
            self.buckets.pop_front();
        }
        let (good, all) = self
            .buckets
            .iter()
            .fold((0u64, 0u64), |(g, a), (_, good, all)| {
                (g + u64::from(*good), a + u64::from(*all))
            });
        ratio(good, all)
    }
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
