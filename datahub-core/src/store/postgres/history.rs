//! The PostgreSQL side of the history roll-up ([`HealthStore::roll_up_checks`],
//! [`HealthStore::prune_buckets`], [`HealthStore::buckets`]); the format and the rules are in
//! `store/history.rs`. Replicas sharing the store may all run their pruners: a roll-up batch
//! first takes the transaction-level advisory lock [`HISTORY_LOCK_KEY`] without waiting, and
//! a batch that does not get it does nothing (`contended`), so one process rolls up at a time
//! and each raw check is read, counted and deleted by exactly one transaction. Deleting expired
//! hours takes its rows with `FOR UPDATE SKIP LOCKED`, so two pruners deleting at once split
//! the rows rather than wait on each other. Each batch is one short transaction; the monitor's
//! writes (new raw checks, health) touch none of the rows a batch locks.
//!
//! [`HealthStore::roll_up_checks`]: crate::store::HealthStore::roll_up_checks
//! [`HealthStore::prune_buckets`]: crate::store::HealthStore::prune_buckets
//! [`HealthStore::buckets`]: crate::store::HealthStore::buckets

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use super::PostgresStore;
use super::error::db;
use crate::model::{HealthBucket, HealthStatus};
use crate::store::RollUp;
use crate::store::columns::corrupt_value;
use crate::store::history::{
    BATCH_CONNECTIONS, HOUR, HourBuckets, RawCheck, cut_batch, hour_of, roll,
};
use crate::{ConnectionId, Result};

/// The advisory lock key held by a roll-up batch (ASCII `dh-hist` in a big-endian `i64`).
pub const HISTORY_LOCK_KEY: i64 = 0x0064_682d_6869_7374;

impl PostgresStore {
    pub(super) async fn roll_up_batch(
        &self,
        before: OffsetDateTime,
        from: Option<ConnectionId>,
        max_rows: u32,
    ) -> Result<RollUp> {
        const DOING: &str = "rolling up health checks";
        let before = HealthBucket::start_of(before);
        let max_rows = max_rows.max(1);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&HISTORY_LOCK_KEY])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| db(DOING, e))?;
        if !locked {
            return Ok(RollUp {
                contended: true,
                ..RollUp::default()
            });
        }
        let from = from.map_or(Uuid::nil(), |id| *id.as_uuid());
        let mut ids: Vec<Uuid> = tx
            .query(
                "SELECT id FROM connections WHERE id >= $1 ORDER BY id LIMIT $2",
                &[&from, &(i64::from(BATCH_CONNECTIONS) + 1)],
            )
            .await
            .map_err(|e| db(DOING, e))?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(|e| db(DOING, e))?;
        let after_last = if ids.len() > BATCH_CONNECTIONS as usize {
            ids.pop()
        } else {
            None
        };
        let rows = tx
            .query(
                "SELECT id, connection_id, at, ok, latency_ms, status FROM health_checks \
                 WHERE connection_id = ANY($1) AND at < $2 ORDER BY connection_id, at, id \
                 LIMIT $3",
                &[&ids, &before, &(i64::from(max_rows) + 1)],
            )
            .await
            .map_err(|e| db(DOING, e))?;
        let mut raw = rows
            .iter()
            .map(raw_check)
            .collect::<Result<Vec<RawCheck>>>()?;
        let next = cut_batch(&mut raw, max_rows as usize)
            .or_else(|| after_last.map(ConnectionId::from_uuid));
        let mut hours = roll(&raw);
        if !hours.is_empty() {
            let (conns, starts): (Vec<Uuid>, Vec<OffsetDateTime>) =
                hours.keys().map(|(c, h)| (*c.as_uuid(), *h)).unzip();
            let stored = tx
                .query(
                    "SELECT connection_id, hour, buckets FROM health_buckets \
                     WHERE (connection_id, hour) IN \
                     (SELECT * FROM unnest($1::uuid[], $2::timestamptz[])) FOR UPDATE",
                    &[&conns, &starts],
                )
                .await
                .map_err(|e| db(DOING, e))?;
            let mut stored_hours = HashMap::new();
            for row in &stored {
                let c: Uuid = row.try_get(0).map_err(|e| db(DOING, e))?;
                let h: OffsetDateTime = row.try_get(1).map_err(|e| db(DOING, e))?;
                let bytes: Vec<u8> = row.try_get(2).map_err(|e| db(DOING, e))?;
                stored_hours.insert(
                    (ConnectionId::from_uuid(c), h),
                    HourBuckets::decode(&bytes)?,
                );
            }
            for (key, buckets) in &mut hours {
                if let Some(old) = stored_hours.get(key) {
                    buckets.merge(old);
                }
            }
            let blobs: Vec<Vec<u8>> = hours.values().map(HourBuckets::encode).collect();
            tx.execute(
                "INSERT INTO health_buckets (connection_id, hour, buckets) \
                 SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bytea[]) \
                 ON CONFLICT (connection_id, hour) DO UPDATE SET buckets = EXCLUDED.buckets",
                &[&conns, &starts, &blobs],
            )
            .await
            .map_err(|e| db(DOING, e))?;
            let rolled: Vec<i64> = raw.iter().map(|r| r.row).collect();
            tx.execute("DELETE FROM health_checks WHERE id = ANY($1)", &[&rolled])
                .await
                .map_err(|e| db(DOING, e))?;
        }
        tx.commit().await.map_err(|e| db(DOING, e))?;
        Ok(RollUp {
            rolled: raw.len() as u64,
            next,
            contended: false,
        })
    }

    pub(super) async fn prune_hours(&self, before: OffsetDateTime, max_rows: u32) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM health_buckets WHERE (connection_id, hour) IN \
                 (SELECT connection_id, hour FROM health_buckets WHERE hour <= $1 \
                 ORDER BY hour LIMIT $2 FOR UPDATE SKIP LOCKED)",
                &[&(before - HOUR), &i64::from(max_rows)],
            )
            .await
            .map_err(|e| db("pruning health buckets", e))
    }

    pub(super) async fn read_buckets(
        &self,
        id: ConnectionId,
        since: OffsetDateTime,
    ) -> Result<Vec<HealthBucket>> {
        const DOING: &str = "reading health buckets";
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT hour, buckets FROM health_buckets WHERE connection_id = $1 \
                 AND hour >= $2 ORDER BY hour",
                &[id.as_uuid(), &hour_of(since)],
            )
            .await
            .map_err(|e| db(DOING, e))?;
        let mut out = Vec::new();
        for row in &rows {
            let hour: OffsetDateTime = row.try_get(0).map_err(|e| db(DOING, e))?;
            let bytes: Vec<u8> = row.try_get(1).map_err(|e| db(DOING, e))?;
            let stored = HourBuckets::decode(&bytes)?;
            out.extend(stored.buckets(id, hour).filter(|b| b.start >= since));
        }
        Ok(out)
    }
}

fn raw_check(row: &tokio_postgres::Row) -> Result<RawCheck> {
    let t = "health_checks";
    let get_err = |column: &'static str| move |_| corrupt_value(t, column);
    let latency: i64 = row.try_get("latency_ms").map_err(get_err("latency_ms"))?;
    let status: String = row.try_get("status").map_err(get_err("status"))?;
    Ok(RawCheck {
        row: row.try_get("id").map_err(get_err("id"))?,
        connection: ConnectionId::from_uuid(
            row.try_get("connection_id")
                .map_err(get_err("connection_id"))?,
        ),
        at: row.try_get("at").map_err(get_err("at"))?,
        ok: row.try_get("ok").map_err(get_err("ok"))?,
        latency_ms: u32::try_from(latency).map_err(|_| corrupt_value(t, "latency_ms"))?,
        status: status
            .parse::<HealthStatus>()
            .map_err(|_| corrupt_value(t, "status"))?,
    })
}
