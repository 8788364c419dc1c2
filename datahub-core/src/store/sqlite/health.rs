//! The SQLite side of health ([`HealthStore`]): check results and the current health in one
//! transaction, the check leases, and the history roll-up and pruning (in `history.rs`).
//! These writes commit with `synchronous=NORMAL` (`pool::Durability`): they are the monitor's
//! own bookkeeping, redone by the next check. A store one process uses tells nobody events:
//! the trait's defaults.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use super::codec::{FactColumns, check_row, micros};
use super::connections::connection_row_query;
use super::{SqliteStore, collect, db_error};
use crate::model::{Check, Health, HealthBucket};
use crate::store::{CheckLease, HealthStore, RollUp};
use crate::{ConnectionId, Error, ErrorKind, Result};

#[async_trait]
impl HealthStore for SqliteStore {
    async fn record_checks(&self, checks: &[(Check, Health)]) -> Result<()> {
        if checks.is_empty() {
            return Ok(());
        }
        let checks = checks.to_vec();
        self.pool
            .write_relaxed(move |tx| {
                for (check, health) in &checks {
                    record_one(tx, check, health)?;
                }
                Ok(())
            })
            .await
    }

    async fn lease_checks(
        &self,
        ids: &[ConnectionId],
        holder: uuid::Uuid,
        now: OffsetDateTime,
        hold: std::time::Duration,
    ) -> Result<Vec<CheckLease>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let hold_us = i64::try_from(hold.as_micros()).unwrap_or(i64::MAX);
        let now_us = micros(now);
        let cutoff = now_us.saturating_sub(hold_us);
        self.pool
            .write_relaxed(move |tx| {
                let holder = holder.to_string();
                let mut won = Vec::with_capacity(ids.len());
                for id in &ids {
                    if let Some(lease) = lease_one(tx, &id.to_string(), &holder, now_us, cutoff)? {
                        won.push(lease);
                    }
                }
                Ok(won)
            })
            .await
    }

    async fn checks(
        &self,
        id: ConnectionId,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Check>> {
        self.pool
            .read(move |conn| {
                collect(
                    conn,
                    "SELECT * FROM health_checks WHERE connection_id = ?1 AND at >= ?2 \
                     ORDER BY at DESC, id DESC LIMIT ?3",
                    params![id.to_string(), micros(since), i64::from(limit)],
                    |r| check_row(r),
                )
            })
            .await
    }

    async fn roll_up_checks(
        &self,
        before: OffsetDateTime,
        from: Option<ConnectionId>,
        max_rows: u32,
    ) -> Result<RollUp> {
        self.roll_up_batch(before, from, max_rows).await
    }

    async fn prune_buckets(&self, before: OffsetDateTime, max_rows: u32) -> Result<u64> {
        self.prune_hours(before, max_rows).await
    }

    async fn buckets(&self, id: ConnectionId, since: OffsetDateTime) -> Result<Vec<HealthBucket>> {
        self.read_buckets(id, since).await
    }
}

/// Records one check in the write transaction `tx` (see [`HealthStore::record_checks`]): a
/// check of a connection that no longer exists is dropped.
fn record_one(tx: &Transaction<'_>, check: &Check, health: &Health) -> Result<()> {
    let id = check.connection.to_string();
    // One statement inserts the history row only while the connection exists; none inserted
    // means it is gone, and its health is not written either.
    let inserted = tx
        .prepare_cached(
            "INSERT INTO health_checks (connection_id, at, ok, latency_ms, error_kind, \
             step, status) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 \
             WHERE EXISTS (SELECT 1 FROM connections WHERE id = ?1)",
        )
        .map_err(db_error)?
        .execute(params![
            id,
            micros(check.at),
            check.ok,
            i64::from(check.latency_ms),
            check.error_kind.map(|k| k.as_str()),
            check.step.map(|s| s.as_str()),
            check.status.as_str()
        ])
        .map_err(db_error)?;
    if inserted == 0 {
        return Ok(());
    }
    // The facts ride in the same upsert; without new ones (`facts_at` NULL) the
    // stored ones stay, column by column keyed on `facts_at`, so old and new never
    // mix.
    let facts = FactColumns::of(health, micros);
    tx.prepare_cached(
        "INSERT INTO connection_health (connection_id, status, checked_at, \
         latency_ms, error_kind, uptime_24h, facts_at, server_version, \
         server_in_recovery, server_connections_used, server_max_connections, \
         tls_protocol, tls_cipher, tls_peer_subject, tls_peer_not_after) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
         ON CONFLICT (connection_id) DO UPDATE SET status = excluded.status, \
         checked_at = excluded.checked_at, latency_ms = excluded.latency_ms, \
         error_kind = excluded.error_kind, uptime_24h = excluded.uptime_24h, \
         facts_at = coalesce(excluded.facts_at, facts_at), \
         server_version = iif(excluded.facts_at IS NULL, server_version, \
           excluded.server_version), \
         server_in_recovery = iif(excluded.facts_at IS NULL, server_in_recovery, \
           excluded.server_in_recovery), \
         server_connections_used = iif(excluded.facts_at IS NULL, \
           server_connections_used, excluded.server_connections_used), \
         server_max_connections = iif(excluded.facts_at IS NULL, \
           server_max_connections, excluded.server_max_connections), \
         tls_protocol = iif(excluded.facts_at IS NULL, tls_protocol, \
           excluded.tls_protocol), \
         tls_cipher = iif(excluded.facts_at IS NULL, tls_cipher, \
           excluded.tls_cipher), \
         tls_peer_subject = iif(excluded.facts_at IS NULL, tls_peer_subject, \
           excluded.tls_peer_subject), \
         tls_peer_not_after = iif(excluded.facts_at IS NULL, tls_peer_not_after, \
           excluded.tls_peer_not_after)",
    )
    .map_err(db_error)?
    .execute(params![
        id,
        health.status.as_str(),
        health.checked_at.map(micros),
        health.latency_ms.map(i64::from),
        health.error_kind.map(|k| k.as_str()),
        health.uptime_24h,
        facts.at,
        facts.server_version,
        facts.in_recovery,
        facts.connections_used,
        facts.max_connections,
        facts.tls_protocol,
        facts.tls_cipher,
        facts.tls_peer_subject,
        facts.tls_peer_not_after
    ])
    .map_err(db_error)?;
    Ok(())
}

/// Claims one connection's check in the write transaction `tx` (see
/// [`HealthStore::lease_checks`]); `None` when lost or when the connection does not exist.
fn lease_one(
    tx: &Transaction<'_>,
    id: &str,
    holder: &str,
    now_us: i64,
    cutoff: i64,
) -> Result<Option<CheckLease>> {
    let last: Option<(Option<String>, i64)> = tx
        .prepare_cached("SELECT holder, leased_at FROM check_leases WHERE connection_id = ?1")
        .map_err(db_error)?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(db_error)?;
    let previous = match last {
        None => None,
        Some((previous, at)) => {
            if previous.as_deref() != Some(holder) && at > cutoff {
                return Ok(None);
            }
            previous
        }
    };
    // Read only for a claim that can win; a connection deleted meanwhile is lost.
    let Some(row) = connection_row_query(tx, "c.id = ?1", id)? else {
        return Ok(None);
    };
    tx.prepare_cached(
        "INSERT INTO check_leases (connection_id, holder, leased_at) \
         VALUES (?1, ?2, ?3) ON CONFLICT (connection_id) DO UPDATE SET \
         holder = excluded.holder, leased_at = excluded.leased_at",
    )
    .map_err(db_error)?
    .execute(params![id, holder, now_us])
    .map_err(db_error)?;
    let previous_holder = match previous {
        None => None,
        Some(p) => Some(
            uuid::Uuid::parse_str(&p)
                .map_err(|_| Error::new(ErrorKind::Store, "corrupt row in check_leases"))?,
        ),
    };
    Ok(Some(CheckLease {
        previous_holder,
        connection: row,
    }))
}
