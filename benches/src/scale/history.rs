//! The stored check history, read straight from the store's `health_checks` table (SQLite file
//! or PostgreSQL), and what it says: checks in a window, double checks, missed intervals,
//! takeover after a replica's death.
//!
//! Times are microseconds since the Unix epoch. A row holds when the check finished (`at`) and
//! how long it took (`latency_ms`), so its start is `at - latency_ms`: double checks, gaps and
//! takeover are read from starts (when the monitor claimed and began the check, which the lease
//! governs), not from ends, which a slow check on a loaded machine moves; rates count ends.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// One stored check: when it started and when it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub start: i64,
    pub end: i64,
    pub ok: bool,
}

/// Every stored check, per connection id, sorted by start.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub by_connection: HashMap<String, Vec<Span>>,
}

impl History {
    /// From `(connection id, at, latency in ms, ok)` rows.
    fn from_rows(rows: impl Iterator<Item = (String, i64, i64, bool)>) -> Self {
        let mut by_connection: HashMap<String, Vec<Span>> = HashMap::new();
        for (id, at, latency_ms, ok) in rows {
            by_connection.entry(id).or_default().push(Span {
                start: at - latency_ms * 1_000,
                end: at,
                ok,
            });
        }
        for spans in by_connection.values_mut() {
            spans.sort_unstable();
        }
        Self { by_connection }
    }

    /// Each connection's check starts, sorted.
    fn starts(&self) -> impl Iterator<Item = (&String, Vec<i64>)> {
        self.by_connection
            .iter()
            .map(|(id, spans)| (id, spans.iter().map(|s| s.start).collect()))
    }

    /// Reads the SQLite store in `data_dir` (read-only, beside the running server: WAL lets a
    /// reader in while it writes).
    pub fn read_sqlite(data_dir: &Path) -> Result<Self, String> {
        let path = data_dir.join(datahub_core::store::sqlite::DATABASE_FILE);
        let db = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
        db.busy_timeout(Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        let mut statement = db
            .prepare("SELECT connection_id, at, latency_ms, ok FROM health_checks")
            .map_err(|e| e.to_string())?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)? != 0,
                ))
            })
            .map_err(|e| e.to_string())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Self::from_rows(rows.into_iter()))
    }

    /// Reads the PostgreSQL store through `client`.
    pub async fn read_postgres(client: &tokio_postgres::Client) -> Result<Self, String> {
        let rows = client
            .query(
                "SELECT connection_id::text, \
                 (extract(epoch FROM at) * 1000000)::int8, latency_ms::int8, ok \
                 FROM health_checks",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self::from_rows(rows.iter().map(|r| {
            (
                r.get::<_, String>(0),
                r.get::<_, i64>(1),
                r.get::<_, i64>(2),
                r.get::<_, bool>(3),
            )
        })))
    }

    /// Connections with at least one check.
    pub fn checked(&self) -> usize {
        self.by_connection
            .values()
            .filter(|t| !t.is_empty())
            .count()
    }

    /// Checks that finished in `[from, to)`.
    pub fn checks_between(&self, from: i64, to: i64) -> u64 {
        self.by_connection
            .values()
            .map(|spans| spans.iter().filter(|s| (from..to).contains(&s.end)).count() as u64)
            .sum()
    }

    /// Failed checks that finished in `[from, to)`, of connections not in `except`.
    pub fn failures_between(&self, from: i64, to: i64, except: &[String]) -> u64 {
        self.by_connection
            .iter()
            .filter(|(id, _)| !except.contains(id))
            .map(|(_, spans)| {
                spans
                    .iter()
                    .filter(|s| !s.ok && (from..to).contains(&s.end))
                    .count() as u64
            })
            .sum()
    }

    /// Pairs of consecutive checks of one connection that started less than half an interval
    /// apart: a connection checked twice in one interval (the lease holds 80 % of it; half
    /// leaves room for the stored times' millisecond latency and the processes' clocks).
    pub fn double_checks(&self, interval: Duration) -> u64 {
        self.double_check_examples(interval, 0).0
    }

    /// [`Self::double_checks`], and up to `keep` of them as (connection, first, second).
    pub fn double_check_examples(
        &self,
        interval: Duration,
        keep: usize,
    ) -> (u64, Vec<(String, Span, Span)>) {
        let limit = micros(interval) / 2;
        let mut count = 0;
        let mut examples = Vec::new();
        for (id, spans) in &self.by_connection {
            for pair in spans.windows(2) {
                if pair[1].start - pair[0].start < limit {
                    count += 1;
                    if examples.len() < keep {
                        examples.push((id.clone(), pair[0], pair[1]));
                    }
                }
            }
        }
        (count, examples)
    }

    /// Intervals missed in `[from, to]` by the `ids` given (all when `None`): for each gap
    /// between consecutive checks (and from the last check to `to`) longer than 1.5 intervals,
    /// the whole intervals it lost (a gap of 2 intervals lost one). Checks are due every
    /// interval ± 10 %, so a gap above 1.5 intervals is a check that did not come.
    pub fn missed_intervals(&self, from: i64, to: i64, interval: Duration) -> u64 {
        let step = micros(interval);
        let lost = |gap: i64| {
            if gap * 2 > step * 3 {
                ((gap as f64 / step as f64).round() as u64)
                    .saturating_sub(1)
                    .max(1)
            } else {
                0
            }
        };
        self.starts()
            .map(|(_, times)| {
                let inside: Vec<i64> = times
                    .iter()
                    .copied()
                    .filter(|at| (from..=to).contains(at))
                    .collect();
                // The last check before the window starts the first gap.
                let before = times.iter().copied().rfind(|at| *at < from);
                let mut points: Vec<i64> = before.into_iter().chain(inside).collect();
                points.push(to);
                if points.len() == 1 {
                    return lost(to - from).max(1);
                }
                points.windows(2).map(|w| lost(w[1] - w[0])).sum::<u64>()
            })
            .sum()
    }

    /// For each of `ids`, how long after `since` its first check started (`None`: none yet).
    pub fn first_after(&self, ids: &[String], since: i64) -> Vec<Option<i64>> {
        ids.iter()
            .map(|id| {
                self.by_connection
                    .get(id)
                    .and_then(|spans| spans.iter().find(|s| s.start > since))
                    .map(|s| s.start - since)
            })
            .collect()
    }
}

/// Microseconds in `d`.
pub fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    micros(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn history(times: &[i64]) -> History {
        // Checks starting at the times given and taking 1 ms.
        History::from_rows(
            times
                .iter()
                .map(|t| ("c".to_owned(), t * S + 1_000, 1, true)),
        )
    }

    #[test]
    fn a_second_check_within_half_an_interval_is_a_double_check() {
        let interval = Duration::from_secs(10);
        assert_eq!(history(&[0, 9, 19, 28]).double_checks(interval), 0);
        assert_eq!(history(&[0, 3, 12]).double_checks(interval), 1);
    }

    #[test]
    fn gaps_above_one_and_a_half_intervals_are_missed_intervals() {
        let interval = Duration::from_secs(10);
        // Checks every 9–11 s: nothing missed.
        assert_eq!(
            history(&[0, 9, 20, 31]).missed_intervals(0, 35 * S, interval),
            0
        );
        // 20 s without a check: one missed; 30 s: two.
        assert_eq!(
            history(&[0, 20, 50]).missed_intervals(0, 55 * S, interval),
            3
        );
        // Not checked since 5 s, window ends at 30 s: the tail counts.
        assert_eq!(history(&[0, 5]).missed_intervals(0, 30 * S, interval), 2);
        // The gap from the last check before the window counts.
        assert_eq!(
            history(&[0, 25]).missed_intervals(10 * S, 30 * S, interval),
            2
        );
    }

    #[test]
    fn first_check_after_a_moment() {
        let h = history(&[0, 10, 20]);
        let ids = vec!["c".to_owned(), "other".to_owned()];
        assert_eq!(h.first_after(&ids, 12 * S), vec![Some(8 * S), None]);
        assert_eq!(h.checks_between(5 * S, 20 * S), 1);
        assert_eq!(h.checks_between(5 * S, 20 * S + 1_001), 2);
    }

    #[test]
    fn a_slow_check_is_placed_at_its_start() {
        // Started at 0 and took 4 s; the next started at 8 s and took 0.1 s: ends 4.1 s apart,
        // starts 8 s apart, so not a double check.
        let h = History::from_rows(
            [
                ("c".to_owned(), 4 * S, 4_000, true),
                ("c".to_owned(), 8 * S + 100_000, 100, false),
            ]
            .into_iter(),
        );
        assert_eq!(h.double_checks(Duration::from_secs(10)), 0);
        assert_eq!(h.failures_between(0, 10 * S, &[]), 1);
        assert_eq!(h.failures_between(0, 10 * S, &["c".to_owned()]), 0);
    }
}
