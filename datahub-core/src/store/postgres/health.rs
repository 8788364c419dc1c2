//! The PostgreSQL side of health ([`HealthStore`]): check results and the current health in one
//! transaction, the check leases that split the checks between processes (`FOR UPDATE SKIP
//! LOCKED`), and events told through `NOTIFY` and heard on a listener's own connection.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::PostgresStore;
use super::codec::{self, CHECK_COLUMNS, FactColumns, SECRET_COLUMNS, SPEC_COLUMNS};
use super::error::{db, is_foreign_key_violation};
use crate::model::{Check, Health, HealthBucket};
use crate::probe::PoolConnect;
use crate::store::{CheckLease, EVENTS_CHANNEL, HealthStore, RollUp};
use crate::{ConnectionId, Result};

/// How long the event listener waits before connecting again after losing its connection.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// The event listener: its own connection (not pooled: `LISTEN` belongs to one session), which
/// forwards every notification on [`EVENTS_CHANNEL`] to `sender`, reconnecting after a failure,
/// until the receiver is dropped. The connection is made like the pool's (TLS, connect timeout,
/// TCP user timeout and keepalives), so a vanished server is noticed and replaced.
pub(super) async fn listen(connector: Arc<PoolConnect>, sender: mpsc::Sender<String>) {
    let statement = format!("LISTEN {EVENTS_CHANNEL}");
    loop {
        // The connector cuts the connect at the pool's connect timeout.
        let connected = tokio::select! {
            () = sender.closed() => return,
            connected = connector.open() => connected,
        };
        if let Ok((client, mut connection)) = connected {
            let listening = client.batch_execute(&statement);
            tokio::pin!(listening);
            let mut listened = false;
            loop {
                tokio::select! {
                    () = sender.closed() => return,
                    done = &mut listening, if !listened => {
                        if done.is_err() {
                            break;
                        }
                        listened = true;
                    }
                    message = std::future::poll_fn(|cx| connection.poll_message(cx)) => {
                        match message {
                            Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                                if n.channel() == EVENTS_CHANNEL
                                    && sender.send(n.payload().to_owned()).await.is_err()
                                {
                                    return;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => break,
                        }
                    }
                }
            }
        }
        tokio::select! {
            () = sender.closed() => return,
            () = tokio::time::sleep(LISTEN_RETRY) => {}
        }
    }
}

#[async_trait]
impl HealthStore for PostgresStore {
    async fn record_check(&self, check: &Check, health: &Health) -> Result<()> {
        const DOING: &str = "recording a health check";
        let id = *check.connection.as_uuid();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let inserted = tx
            .execute(
                "INSERT INTO health_checks (connection_id, at, ok, latency_ms, error_kind, step, \
                 status) SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS \
                 (SELECT 1 FROM connections WHERE id = $1)",
                &[
                    &id,
                    &check.at,
                    &check.ok,
                    &i64::from(check.latency_ms),
                    &check.error_kind.map(|k| k.as_str()),
                    &check.step.map(|s| s.as_str()),
                    &check.status.as_str(),
                ],
            )
            .await;
        match inserted {
            // Deleted before this check finished (or while it was being recorded): dropped.
            Ok(0) => return Ok(()),
            Err(e) if is_foreign_key_violation(&e) => return Ok(()),
            Err(e) => return Err(db(DOING, e)),
            Ok(_) => {}
        }
        // The facts ride in the same upsert; without new ones (`facts_at` NULL) the stored
        // ones stay, column by column keyed on `facts_at`, so old and new never mix.
        let facts = FactColumns::of(health, |at| at);
        let upserted = tx
            .execute(
                "INSERT INTO connection_health (connection_id, status, checked_at, latency_ms, \
                 error_kind, uptime_24h, facts_at, server_version, server_in_recovery, \
                 server_connections_used, server_max_connections, tls_protocol, tls_cipher, \
                 tls_peer_subject, tls_peer_not_after) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
                 ON CONFLICT (connection_id) DO UPDATE SET status = EXCLUDED.status, \
                 checked_at = EXCLUDED.checked_at, latency_ms = EXCLUDED.latency_ms, \
                 error_kind = EXCLUDED.error_kind, uptime_24h = EXCLUDED.uptime_24h, \
                 facts_at = COALESCE(EXCLUDED.facts_at, connection_health.facts_at), \
                 server_version = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.server_version ELSE EXCLUDED.server_version END, \
                 server_in_recovery = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.server_in_recovery ELSE EXCLUDED.server_in_recovery END, \
                 server_connections_used = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.server_connections_used \
                   ELSE EXCLUDED.server_connections_used END, \
                 server_max_connections = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.server_max_connections \
                   ELSE EXCLUDED.server_max_connections END, \
                 tls_protocol = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.tls_protocol ELSE EXCLUDED.tls_protocol END, \
                 tls_cipher = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.tls_cipher ELSE EXCLUDED.tls_cipher END, \
                 tls_peer_subject = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.tls_peer_subject ELSE EXCLUDED.tls_peer_subject END, \
                 tls_peer_not_after = CASE WHEN EXCLUDED.facts_at IS NULL \
                   THEN connection_health.tls_peer_not_after ELSE EXCLUDED.tls_peer_not_after END",
                &[
                    &id,
                    &health.status.as_str(),
                    &health.checked_at,
                    &health.latency_ms.map(i64::from),
                    &health.error_kind.map(|k| k.as_str()),
                    &health.uptime_24h,
                    &facts.at,
                    &facts.server_version,
                    &facts.in_recovery,
                    &facts.connections_used,
                    &facts.max_connections,
                    &facts.tls_protocol,
                    &facts.tls_cipher,
                    &facts.tls_peer_subject,
                    &facts.tls_peer_not_after,
                ],
            )
            .await;
        match upserted {
            Err(e) if is_foreign_key_violation(&e) => return Ok(()),
            Err(e) => return Err(db(DOING, e)),
            Ok(_) => {}
        }
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn checks(
        &self,
        id: ConnectionId,
        since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Check>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {CHECK_COLUMNS} FROM health_checks WHERE connection_id = $1 AND at >= $2 \
             ORDER BY at DESC, id DESC LIMIT $3"
        );
        let rows = client
            .query(&sql, &[id.as_uuid(), &since, &i64::from(limit)])
            .await
            .map_err(|e| db("reading health checks", e))?;
        rows.iter().map(codec::check_row).collect()
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

    async fn lease_check(
        &self,
        id: ConnectionId,
        holder: Uuid,
        now: OffsetDateTime,
        hold: Duration,
    ) -> Result<Option<CheckLease>> {
        const DOING: &str = "claiming a health check";
        let id = *id.as_uuid();
        let hold = time::Duration::try_from(hold).unwrap_or(time::Duration::MAX);
        let cutoff = now.checked_sub(hold).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let client = self.client().await?;
        // The lease row, created unclaimed on the first claim (a deleted connection: lost).
        let created = client
            .execute(
                "INSERT INTO check_leases (connection_id, holder, leased_at) \
                 SELECT $1, NULL, '-infinity' WHERE EXISTS \
                 (SELECT 1 FROM connections WHERE id = $1) \
                 ON CONFLICT (connection_id) DO NOTHING",
                &[&id],
            )
            .await;
        match created {
            Err(e) if is_foreign_key_violation(&e) => return Ok(None),
            Err(e) => return Err(db(DOING, e)),
            Ok(_) => {}
        }
        // One statement: lock the row if it is claimable and nobody else is claiming it right
        // now (SKIP LOCKED: a concurrent claimant loses at once rather than waiting), then
        // record the claim, returning who held it before and the connection as stored.
        let sql = format!(
            "WITH claimable AS (SELECT connection_id, holder FROM check_leases \
             WHERE connection_id = $1 AND (holder = $2 OR leased_at <= $3) \
             FOR UPDATE SKIP LOCKED) \
             UPDATE check_leases AS l SET holder = $2, leased_at = $4 \
             FROM claimable JOIN connections c ON c.id = claimable.connection_id \
             WHERE l.connection_id = claimable.connection_id \
             RETURNING claimable.holder AS previous_holder, {SPEC_COLUMNS}, {SECRET_COLUMNS}"
        );
        let row = client
            .query_opt(&sql, &[&id, &holder, &cutoff, &now])
            .await
            .map_err(|e| db(DOING, e))?;
        row.map(|row| {
            Ok(CheckLease {
                previous_holder: row
                    .try_get::<_, Option<Uuid>>("previous_holder")
                    .map_err(|e| db(DOING, e))?,
                connection: codec::connection_row(&row)?,
            })
        })
        .transpose()
    }

    async fn notify_event(&self, payload: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("SELECT pg_notify($1, $2)", &[&EVENTS_CHANNEL, &payload])
            .await
            .map_err(|e| db("telling other processes an event", e))?;
        Ok(())
    }

    fn subscribe_events(&self) -> Option<mpsc::Receiver<String>> {
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(listen(self.listen.clone(), sender));
        Some(receiver)
    }
}
