//! The SQLite side of the history roll-up ([`HealthStore::roll_up_checks`],
//! [`HealthStore::prune_buckets`], [`HealthStore::buckets`]); the format and the rules are in
//! `store/history.rs`. Each batch is one short relaxed write through the pool's write gate, so
//! writers queued behind it wait for one batch at most.
//!
//! [`HealthStore::roll_up_checks`]: crate::store::HealthStore::roll_up_checks
//! [`HealthStore::prune_buckets`]: crate::store::HealthStore::prune_buckets
//! [`HealthStore::buckets`]: crate::store::HealthStore::buckets

use rusqlite::{OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use super::codec::micros;
use super::{SqliteStore, db_error};
use crate::model::{HealthBucket, HealthStatus};
use crate::store::RollUp;
use crate::store::columns::corrupt_value;
use crate::store::history::{
    BATCH_CONNECTIONS, HOUR, HourBuckets, RawCheck, cut_batch, hour_of, roll,
};
use crate::{ConnectionId, Result};

impl SqliteStore {
    pub(super) async fn roll_up_batch(
        &self,
        before: OffsetDateTime,
        from: Option<ConnectionId>,
        max_rows: u32,
    ) -> Result<RollUp> {
        let before = micros(HealthBucket::start_of(before));
        let max_rows = usize::try_from(max_rows.max(1)).unwrap_or(usize::MAX);
        self.pool
            .write_relaxed(move |tx| roll_up(tx, before, from, max_rows))
            .await
    }

    pub(super) async fn prune_hours(&self, before: OffsetDateTime, max_rows: u32) -> Result<u64> {
        // An hour row ends one hour after its start.
        let last_start = micros(before - HOUR);
        self.pool
            .write_relaxed(move |tx| {
                let n = tx
                    .prepare_cached(
                        "DELETE FROM health_buckets WHERE (connection_id, hour) IN \
                         (SELECT connection_id, hour FROM health_buckets WHERE hour <= ?1 \
                         ORDER BY hour LIMIT ?2)",
                    )
                    .map_err(db_error)?
                    .execute(params![last_start, i64::from(max_rows)])
                    .map_err(db_error)?;
                Ok(u64::try_from(n).unwrap_or(u64::MAX))
            })
            .await
    }

    pub(super) async fn read_buckets(
        &self,
        id: ConnectionId,
        since: OffsetDateTime,
    ) -> Result<Vec<HealthBucket>> {
        self.pool
            .read(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT hour, buckets FROM health_buckets WHERE connection_id = ?1 \
                         AND hour >= ?2 ORDER BY hour",
                    )
                    .map_err(db_error)?;
                let mut rows = stmt
                    .query(params![id.to_string(), micros(hour_of(since))])
                    .map_err(db_error)?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(db_error)? {
                    let hour: i64 = row
                        .get(0)
                        .map_err(|_| corrupt_value("health_buckets", "hour"))?;
                    let bytes: Vec<u8> = row
                        .get(1)
                        .map_err(|_| corrupt_value("health_buckets", "hour"))?;
                    let hour = OffsetDateTime::from_unix_timestamp_nanos(i128::from(hour) * 1_000)
                        .map_err(|_| corrupt_value("health_buckets", "hour"))?;
                    let stored = HourBuckets::decode(&bytes)?;
                    out.extend(stored.buckets(id, hour).filter(|b| b.start >= since));
                }
                Ok(out)
            })
            .await
    }
}

/// One roll-up batch inside the write transaction (see [`crate::store::history`]).
fn roll_up(
    tx: &Transaction<'_>,
    before: i64,
    from: Option<ConnectionId>,
    max_rows: usize,
) -> Result<RollUp> {
    let from = from.map(|id| id.to_string()).unwrap_or_default();
    let mut ids: Vec<String> = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached("SELECT id FROM connections WHERE id >= ?1 ORDER BY id LIMIT ?2")
            .map_err(db_error)?;
        let mut rows = stmt
            .query(params![from, i64::from(BATCH_CONNECTIONS) + 1])
            .map_err(db_error)?;
        while let Some(row) = rows.next().map_err(db_error)? {
            ids.push(row.get(0).map_err(|_| corrupt_value("connections", "id"))?);
        }
    }
    let after_last = if ids.len() > BATCH_CONNECTIONS as usize {
        ids.pop()
    } else {
        None
    };
    // Read up to one row past the limit, connection by connection, oldest first.
    let mut raw: Vec<RawCheck> = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT id, at, ok, latency_ms, status FROM health_checks \
                 WHERE connection_id = ?1 AND at < ?2 ORDER BY at, id LIMIT ?3",
            )
            .map_err(db_error)?;
        for id in &ids {
            let room = max_rows + 1 - raw.len();
            let connection: ConnectionId =
                id.parse().map_err(|_| corrupt_value("connections", "id"))?;
            let mut rows = stmt
                .query(params![id, before, i64::try_from(room).unwrap_or(i64::MAX)])
                .map_err(db_error)?;
            while let Some(row) = rows.next().map_err(db_error)? {
                raw.push(raw_check(row, connection)?);
            }
            if raw.len() > max_rows {
                break;
            }
        }
    }
    let next = match cut_batch(&mut raw, max_rows) {
        Some(cut) => Some(cut),
        None => after_last
            .map(|id| id.parse().map_err(|_| corrupt_value("connections", "id")))
            .transpose()?,
    };
    let hours = roll(&raw);
    let mut read = tx
        .prepare_cached("SELECT buckets FROM health_buckets WHERE connection_id = ?1 AND hour = ?2")
        .map_err(db_error)?;
    let mut write = tx
        .prepare_cached(
            "INSERT INTO health_buckets (connection_id, hour, buckets) VALUES (?1, ?2, ?3) \
             ON CONFLICT (connection_id, hour) DO UPDATE SET buckets = excluded.buckets",
        )
        .map_err(db_error)?;
    for ((connection, hour), mut buckets) in hours {
        let id = connection.to_string();
        let stored: Option<Vec<u8>> = read
            .query_row(params![id, micros(hour)], |r| r.get(0))
            .optional()
            .map_err(db_error)?;
        if let Some(stored) = stored {
            buckets.merge(&HourBuckets::decode(&stored)?);
        }
        write
            .execute(params![id, micros(hour), buckets.encode()])
            .map_err(db_error)?;
    }
    let mut delete = tx
        .prepare_cached("DELETE FROM health_checks WHERE id = ?1")
        .map_err(db_error)?;
    for r in &raw {
        delete.execute([r.row]).map_err(db_error)?;
    }
    Ok(RollUp {
        rolled: u64::try_from(raw.len()).unwrap_or(u64::MAX),
        next,
        contended: false,
    })
}

fn raw_check(row: &rusqlite::Row<'_>, connection: ConnectionId) -> Result<RawCheck> {
    let bad = |_| corrupt_value("health_checks", "id");
    let at: i64 = row.get(1).map_err(bad)?;
    let latency: i64 = row.get(3).map_err(bad)?;
    let status: String = row.get(4).map_err(bad)?;
    Ok(RawCheck {
        row: row.get(0).map_err(bad)?,
        connection,
        at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000)
            .map_err(|_| corrupt_value("health_checks", "at"))?,
        ok: row.get(2).map_err(bad)?,
        latency_ms: u32::try_from(latency).map_err(|_| corrupt_value("health_checks", "at"))?,
        status: status
            .parse::<HealthStatus>()
            .map_err(|_| corrupt_value("health_checks", "at"))?,
    })
}
