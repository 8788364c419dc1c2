//! The history roll-up, written once for both backends: how raw checks older than the detail
//! window become 5-minute buckets ([`HealthBucket`]), and how the buckets of one hour of one
//! connection are packed into one `health_buckets` row.
//!
//! A `health_buckets` row is (`connection_id`, `hour`, `buckets`): `hour` is the start of an
//! hour (UTC), `buckets` its twelve 5-minute buckets in a fixed encoding of [`ENCODED_LEN`]
//! bytes: a format byte ([`FORMAT`]), then per bucket, oldest first, big-endian: checks (u16),
//! failures (u16), latency p50 (u32), latency max (u32), worst status (u8, the index in
//! [`HealthStatus::ALL`]); a bucket without checks is all zeros. Why packed rather than a row
//! per bucket: per row, PostgreSQL spends a 24-byte tuple header, a line pointer and an index
//! entry, more than the bucket's own data, and 288 such rows a day (~120 bytes each) would be
//! over the 20 KB per connection per day that the whole history may cost; an hour per row
//! makes it 24 rows a day. The counts saturate at 65,535 per bucket (a check every 10 s is 30).
//!
//! Rolling up is exact and idempotent: a batch reads raw rows in (connection, time) order,
//! keeps only whole buckets ([`cut_batch`]), folds them into the hour rows already stored
//! ([`HourBuckets::merge`]) and deletes exactly the raw rows it read, in one transaction, so a
//! raw row is counted once however often or by how many processes the roll-up runs. Merging
//! two non-empty halves of one bucket (only when raw rows of an already rolled bucket appear
//! later, e.g. from a process whose clock is a day behind) adds the counts and keeps the
//! highest maximum and worst status exactly; the median is then the success-weighted mean of
//! the two medians.

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use super::columns::corrupt_value;
use crate::model::{HealthBucket, HealthStatus};
use crate::{ConnectionId, Result};

/// The format byte of an encoded hour.
pub(super) const FORMAT: u8 = 1;
/// Buckets per hour row.
const SLOTS: usize = 12;
/// Bytes per encoded bucket.
const SLOT_BYTES: usize = 13;
/// The length of an encoded hour: 157 bytes.
pub(super) const ENCODED_LEN: usize = 1 + SLOTS * SLOT_BYTES;
/// The span of one `health_buckets` row.
pub(super) const HOUR: Duration = Duration::hours(1);
/// At most this many connections are visited by one roll-up batch.
pub(super) const BATCH_CONNECTIONS: u32 = 256;

/// One raw check as the roll-up reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RawCheck {
    /// The row's key (`health_checks.id`): what is deleted once rolled up.
    pub(super) row: i64,
    pub(super) connection: ConnectionId,
    pub(super) at: OffsetDateTime,
    pub(super) ok: bool,
    pub(super) latency_ms: u32,
    pub(super) status: HealthStatus,
}

impl RawCheck {
    fn bucket(&self) -> (ConnectionId, OffsetDateTime) {
        (self.connection, HealthBucket::start_of(self.at))
    }
}

/// One 5-minute bucket in an hour row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    checks: u32,
    failures: u32,
    p50: u32,
    max: u32,
    worst: u8,
}

impl Slot {
    fn successes(&self) -> u32 {
        self.checks.saturating_sub(self.failures)
    }

    fn merge(self, other: Self) -> Self {
        if other.checks == 0 {
            return self;
        }
        if self.checks == 0 {
            return other;
        }
        let (a, b) = (u64::from(self.successes()), u64::from(other.successes()));
        let weighted = u64::from(self.p50) * a + u64::from(other.p50) * b + (a + b) / 2;
        let p50 = weighted
            .checked_div(a + b)
            .map_or(0, |mean| u32::try_from(mean).unwrap_or(u32::MAX));
        Self {
            checks: self.checks.saturating_add(other.checks),
            failures: self.failures.saturating_add(other.failures),
            p50,
            max: self.max.max(other.max),
            worst: self.worst.max(other.worst),
        }
    }
}

/// The twelve buckets of one hour of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct HourBuckets([Slot; SLOTS]);

impl HourBuckets {
    /// The stored form ([`ENCODED_LEN`] bytes).
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.push(FORMAT);
        for s in &self.0 {
            out.extend_from_slice(&saturate(s.checks).to_be_bytes());
            out.extend_from_slice(&saturate(s.failures).to_be_bytes());
            out.extend_from_slice(&s.p50.to_be_bytes());
            out.extend_from_slice(&s.max.to_be_bytes());
            out.push(s.worst);
        }
        out
    }

    /// Reads the stored form back; anything else is a corrupt `health_buckets` row.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = || corrupt_value("health_buckets", "buckets");
        let (format, rest) = bytes.split_first().ok_or_else(bad)?;
        if *format != FORMAT || rest.len() != SLOTS * SLOT_BYTES {
            return Err(bad());
        }
        let mut hour = Self::default();
        for (slot, b) in hour.0.iter_mut().zip(rest.chunks_exact(SLOT_BYTES)) {
            let u16_at = |i: usize| u32::from(u16::from_be_bytes([b[i], b[i + 1]]));
            let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            *slot = Slot {
                checks: u16_at(0),
                failures: u16_at(2),
                p50: u32_at(4),
                max: u32_at(8),
                worst: b[12],
            };
            if slot.failures > slot.checks || usize::from(slot.worst) >= HealthStatus::ALL.len() {
                return Err(bad());
            }
        }
        Ok(hour)
    }

    /// Adds `other`'s checks to these, bucket by bucket (see the module docs).
    pub(super) fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine = mine.merge(*theirs);
        }
    }

    /// The buckets with checks of the hour starting at `hour`, oldest first.
    pub(super) fn buckets(
        &self,
        connection: ConnectionId,
        hour: OffsetDateTime,
    ) -> impl Iterator<Item = HealthBucket> + '_ {
        (0i64..)
            .zip(self.0.iter())
            .filter(|(_, s)| s.checks > 0)
            .map(move |(i, s)| {
                let ok = s.successes() > 0;
                HealthBucket {
                    connection,
                    start: hour + HealthBucket::WIDTH * i32::try_from(i).unwrap_or(0),
                    checks: s.checks,
                    failures: s.failures,
                    latency_p50_ms: ok.then_some(s.p50),
                    latency_max_ms: ok.then_some(s.max),
                    worst: HealthStatus::ALL
                        .get(usize::from(s.worst))
                        .copied()
                        .unwrap_or(HealthStatus::Unknown),
                }
            })
    }
}

fn saturate(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// The start of the hour holding `at` (UTC).
pub(super) fn hour_of(at: OffsetDateTime) -> OffsetDateTime {
    let start = at.unix_timestamp().div_euclid(3600) * 3600;
    OffsetDateTime::from_unix_timestamp(start).unwrap_or(at)
}

/// Cuts a batch read in (connection, time) order with a limit of `max_rows + 1` so that it
/// holds only whole buckets: when more than `max_rows` came back, the rows past the limit go,
/// and so do the rows of the last bucket if the limit split it (unless that bucket is all the
/// batch holds: it is then rolled in parts, merged later). Returns the connection of the first
/// row left out, where the next batch starts; `None` when nothing was left out.
pub(super) fn cut_batch(rows: &mut Vec<RawCheck>, max_rows: usize) -> Option<ConnectionId> {
    let max_rows = max_rows.max(1);
    let first_out = rows.get(max_rows)?.clone();
    rows.truncate(max_rows);
    let split = first_out.bucket();
    if let Some(last_whole) = rows.iter().rposition(|r| r.bucket() != split) {
        rows.truncate(last_whole + 1);
    }
    Some(first_out.connection)
}

/// Rolls raw checks (whole buckets, any order) into hour rows, keyed by connection and hour.
pub(super) fn roll(rows: &[RawCheck]) -> BTreeMap<(ConnectionId, OffsetDateTime), HourBuckets> {
    let mut groups: BTreeMap<(ConnectionId, OffsetDateTime), Vec<&RawCheck>> = BTreeMap::new();
    for r in rows {
        groups.entry(r.bucket()).or_default().push(r);
    }
    let mut hours: BTreeMap<(ConnectionId, OffsetDateTime), HourBuckets> = BTreeMap::new();
    for ((connection, start), group) in groups {
        let hour = hour_of(start);
        let index = usize::try_from((start - hour).whole_seconds() / 300).unwrap_or(0);
        let mut latencies: Vec<u32> = group
            .iter()
            .filter(|r| r.ok)
            .map(|r| r.latency_ms)
            .collect();
        latencies.sort_unstable();
        let checks = u32::try_from(group.len()).unwrap_or(u32::MAX);
        let slot = Slot {
            checks,
            failures: checks.saturating_sub(u32::try_from(latencies.len()).unwrap_or(u32::MAX)),
            p50: latencies
                .get(latencies.len().saturating_sub(1) / 2)
                .copied()
                .unwrap_or(0),
            max: latencies.last().copied().unwrap_or(0),
            worst: group.iter().map(|r| rank(r.status)).max().unwrap_or(0),
        };
        let entry = hours.entry((connection, hour)).or_default();
        if let Some(s) = entry.0.get_mut(index) {
            *s = s.merge(slot);
        }
    }
    hours
}

/// The status's place in unknown < healthy < degraded < down.
fn rank(status: HealthStatus) -> u8 {
    HealthStatus::ALL
        .iter()
        .position(|s| *s == status)
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: HealthStatus = HealthStatus::Healthy;

    fn raw(row: i64, c: ConnectionId, at: OffsetDateTime, ok: bool, ms: u32) -> RawCheck {
        RawCheck {
            row,
            connection: c,
            at,
            ok,
            latency_ms: ms,
            status: if ok { H } else { HealthStatus::Down },
        }
    }

    #[test]
    fn statuses_rank_worst_last() {
        assert_eq!(
            HealthStatus::ALL,
            &[
                HealthStatus::Unknown,
                H,
                HealthStatus::Degraded,
                HealthStatus::Down
            ]
        );
    }

    #[test]
    fn a_bucket_counts_its_checks_and_round_trips() {
        let c = ConnectionId::new();
        let hour = OffsetDateTime::from_unix_timestamp(1_800_000_000 / 3600 * 3600).unwrap();
        let at = hour + Duration::minutes(12);
        let rows = [
            raw(1, c, at, true, 40),
            raw(2, c, at + Duration::seconds(10), true, 10),
            raw(3, c, at + Duration::seconds(20), false, 5_000),
            raw(4, c, at + Duration::seconds(30), true, 30),
            raw(5, c, at + Duration::seconds(40), true, 20),
            raw(6, c, hour + Duration::minutes(59), true, 7),
        ];
        let hours = roll(&rows);
        assert_eq!(hours.len(), 1);
        let stored = hours.get(&(c, hour)).unwrap();
        assert_eq!(stored.encode().len(), ENCODED_LEN);
        let back = HourBuckets::decode(&stored.encode()).unwrap();
        assert_eq!(&back, stored);
        let buckets: Vec<HealthBucket> = back.buckets(c, hour).collect();
        assert_eq!(
            buckets,
            [
                HealthBucket {
                    connection: c,
                    start: hour + Duration::minutes(10),
                    checks: 5,
                    failures: 1,
                    latency_p50_ms: Some(20),
                    latency_max_ms: Some(40),
                    worst: HealthStatus::Down,
                },
                HealthBucket {
                    connection: c,
                    start: hour + Duration::minutes(55),
                    checks: 1,
                    failures: 0,
                    latency_p50_ms: Some(7),
                    latency_max_ms: Some(7),
                    worst: H,
                },
            ]
        );
        // Merging an empty hour changes nothing; merging halves of other buckets is exact.
        let mut merged = HourBuckets::default();
        merged.merge(&roll(&rows[5..]).remove(&(c, hour)).unwrap());
        merged.merge(&roll(&rows[..5]).remove(&(c, hour)).unwrap());
        merged.merge(&HourBuckets::default());
        assert_eq!(&merged, stored);
        for bad in [
            &[][..],
            &[2u8; ENCODED_LEN][..],
            &stored.encode()[..ENCODED_LEN - 1],
        ] {
            assert!(HourBuckets::decode(bad).is_err());
        }
    }

    #[test]
    fn a_batch_keeps_whole_buckets_only() {
        let (a, b) = {
            let mut ids = [ConnectionId::new(), ConnectionId::new()];
            ids.sort();
            (ids[0], ids[1])
        };
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000 / 300 * 300).unwrap();
        let rows = vec![
            raw(1, a, t, true, 1),
            raw(2, a, t + Duration::minutes(5), true, 1),
            raw(3, b, t, true, 1),
            raw(4, b, t + Duration::seconds(10), true, 1),
            raw(5, b, t + Duration::seconds(20), true, 1),
        ];
        // Not cut: every row fits.
        let mut all = rows.clone();
        assert_eq!(cut_batch(&mut all, 5), None);
        assert_eq!(all.len(), 5);
        // Cut inside b's first bucket: b's rows go, the next batch starts at b.
        let mut cut = rows.clone();
        assert_eq!(cut_batch(&mut cut, 4), Some(b));
        assert_eq!(cut.iter().map(|r| r.row).collect::<Vec<_>>(), [1, 2]);
        // Cut between buckets: nothing more goes.
        let mut cut = rows.clone();
        assert_eq!(cut_batch(&mut cut, 2), Some(b));
        assert_eq!(cut.len(), 2);
        // A bucket larger than a batch is rolled in parts.
        let mut cut = rows[2..].to_vec();
        assert_eq!(cut_batch(&mut cut, 2), Some(b));
        assert_eq!(cut.len(), 2);
    }

    #[test]
    fn merging_halves_of_one_bucket_weighs_the_medians() {
        let a = Slot {
            checks: 4,
            failures: 1,
            p50: 10,
            max: 30,
            worst: 1,
        };
        let b = Slot {
            checks: 2,
            failures: 1,
            p50: 50,
            max: 50,
            worst: 3,
        };
        assert_eq!(
            a.merge(b),
            Slot {
                checks: 6,
                failures: 2,
                p50: 20,
                max: 50,
                worst: 3
            }
        );
        assert_eq!(a.merge(Slot::default()), a);
        assert_eq!(Slot::default().merge(b), b);
    }
}
