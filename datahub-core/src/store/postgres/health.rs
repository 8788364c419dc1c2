//! The PostgreSQL side of health ([`HealthStore`]): check results and the current health in one
//! transaction, the check leases that split the checks between processes (`FOR UPDATE SKIP
//! LOCKED`), and events told through `NOTIFY` and heard on a listener's own connection.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
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

/// The record of a batch of checks (the PostgreSQL side of [`HealthStore::record_checks`]): one
/// statement, so one round trip and its own transaction, prepared once per pooled connection.
/// The connections still there are locked against deletion first (`FOR KEY SHARE`: a delete in
/// flight is waited for and its row then skipped), so a check of a deleted connection is dropped
/// and never fails the others with a foreign key violation. The facts ride in the same upsert;
/// without new ones (`facts_at` NULL) the stored ones stay, column by column keyed on
/// `facts_at`, so old and new never mix.
const RECORD_SQL: &str = "WITH live AS (SELECT id FROM connections \
      WHERE id = ANY($8::uuid[]) FOR KEY SHARE), \
    history AS (INSERT INTO health_checks (connection_id, at, ok, latency_ms, \
      error_kind, step, status) \
      SELECT h.connection_id, h.at, h.ok, h.latency_ms, h.error_kind, h.step, \
        h.status \
      FROM unnest($1::uuid[], $2::timestamptz[], $3::bool[], $4::int8[], \
        $5::text[], $6::text[], $7::text[]) WITH ORDINALITY \
        AS h(connection_id, at, ok, latency_ms, error_kind, step, status, n) \
      WHERE h.connection_id IN (SELECT id FROM live) ORDER BY h.n) \
    INSERT INTO connection_health (connection_id, status, checked_at, latency_ms, \
    error_kind, uptime_24h, facts_at, server_version, server_in_recovery, \
    server_connections_used, server_max_connections, tls_protocol, tls_cipher, \
    tls_peer_subject, tls_peer_not_after) \
    SELECT s.* FROM unnest($8::uuid[], $9::text[], $10::timestamptz[], \
      $11::int8[], $12::text[], $13::float8[], $14::timestamptz[], $15::text[], \
      $16::bool[], $17::int8[], $18::int8[], $19::text[], $20::text[], \
      $21::text[], $22::timestamptz[]) AS s(connection_id, status, checked_at, \
      latency_ms, error_kind, uptime_24h, facts_at, server_version, \
      server_in_recovery, server_connections_used, server_max_connections, \
      tls_protocol, tls_cipher, tls_peer_subject, tls_peer_not_after) \
    WHERE s.connection_id IN (SELECT id FROM live) \
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
      THEN connection_health.tls_peer_not_after ELSE EXCLUDED.tls_peer_not_after END";

/// The claim of a batch of checks (the PostgreSQL side of [`HealthStore::lease_checks`]), one
/// statement, prepared once per pooled connection. `claimable`: the existing lease rows that can
/// be won, locked unless another claim is on them right now (SKIP LOCKED: that claim wins, this
/// one loses at once rather than waiting); `taken`: those claimed. `created`: connections never
/// claimed get their lease row, claimed; a concurrent first claim of the same connection waits
/// on the unique key and then does nothing (lost). The connections are locked against deletion
/// (`FOR KEY SHARE`), so a deleted one is simply absent. The statement's snapshot sees neither
/// CTE's rows in the other: an id is claimed through one of them at most.
static LEASE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH claimable AS (SELECT connection_id, holder FROM check_leases \
           WHERE connection_id = ANY($1::uuid[]) AND (holder = $2 OR leased_at <= $3) \
           FOR UPDATE SKIP LOCKED), \
         taken AS (UPDATE check_leases AS l SET holder = $2, leased_at = $4 \
           FROM claimable WHERE l.connection_id = claimable.connection_id \
           RETURNING l.connection_id, claimable.holder AS previous_holder), \
         created AS (INSERT INTO check_leases (connection_id, holder, leased_at) \
           SELECT c.id, $2, $4 FROM connections c WHERE c.id = ANY($1::uuid[]) \
             AND NOT EXISTS (SELECT 1 FROM check_leases e WHERE e.connection_id = c.id) \
           ORDER BY c.id FOR KEY SHARE OF c \
           ON CONFLICT (connection_id) DO NOTHING \
           RETURNING connection_id, NULL::uuid AS previous_holder), \
         won AS (SELECT * FROM taken UNION ALL SELECT * FROM created) \
         SELECT won.previous_holder, {SPEC_COLUMNS}, {SECRET_COLUMNS} \
         FROM won JOIN connections c ON c.id = won.connection_id"
    )
});

#[async_trait]
impl HealthStore for PostgresStore {
    async fn record_checks(&self, checks: &[(Check, Health)]) -> Result<()> {
        const DOING: &str = "recording health checks";
        if checks.is_empty() {
            return Ok(());
        }
        let history = HistoryColumns::of(checks);
        let current = HealthColumns::of(checks);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(RECORD_SQL)
            .await
            .map_err(|e| db(DOING, e))?;
        let recorded = client
            .execute(
                &statement,
                &[
                    &history.connection,
                    &history.at,
                    &history.ok,
                    &history.latency_ms,
                    &history.error_kind,
                    &history.step,
                    &history.status,
                    &current.connection,
                    &current.status,
                    &current.checked_at,
                    &current.latency_ms,
                    &current.error_kind,
                    &current.uptime_24h,
                    &current.facts_at,
                    &current.server_version,
                    &current.in_recovery,
                    &current.connections_used,
                    &current.max_connections,
                    &current.tls_protocol,
                    &current.tls_cipher,
                    &current.tls_peer_subject,
                    &current.tls_peer_not_after,
                ],
            )
            .await;
        match recorded {
            // Cannot happen with the rows locked; kept as the single write always was.
            Err(e) if is_foreign_key_violation(&e) => Ok(()),
            Err(e) => Err(db(DOING, e)),
            Ok(_) => Ok(()),
        }
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

    async fn lease_checks(
        &self,
        ids: &[ConnectionId],
        holder: Uuid,
        now: OffsetDateTime,
        hold: Duration,
    ) -> Result<Vec<CheckLease>> {
        const DOING: &str = "claiming health checks";
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = ids.iter().map(|id| *id.as_uuid()).collect();
        let hold = time::Duration::try_from(hold).unwrap_or(time::Duration::MAX);
        let cutoff = now.checked_sub(hold).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let client = self.client().await?;
        let statement = client
            .prepare_cached(&LEASE_SQL)
            .await
            .map_err(|e| db(DOING, e))?;
        let rows = client
            .query(&statement, &[&ids, &holder, &cutoff, &now])
            .await
            .map_err(|e| db(DOING, e))?;
        rows.iter()
            .map(|row| {
                Ok(CheckLease {
                    previous_holder: row
                        .try_get::<_, Option<Uuid>>("previous_holder")
                        .map_err(|e| db(DOING, e))?,
                    connection: codec::connection_row(row)?,
                })
            })
            .collect()
    }

    async fn beat(&self, holder: Uuid, timeout: Duration) -> Result<Vec<Uuid>> {
        const DOING: &str = "telling other monitors this one is alive";
        let client = self.client().await?;
        // One statement: mark `holder`, forget monitors unmarked for an hour, answer the others
        // marked within `timeout` (the statement's snapshot does not see its own mark: the
        // caller knows it is alive).
        let rows = client
            .query(
                "WITH mark AS (INSERT INTO monitor_replicas (id, seen_at) \
                   VALUES ($1, statement_timestamp()) \
                   ON CONFLICT (id) DO UPDATE SET seen_at = EXCLUDED.seen_at), \
                 forgotten AS (DELETE FROM monitor_replicas \
                   WHERE seen_at < statement_timestamp() - interval '1 hour' AND id <> $1) \
                 SELECT id FROM monitor_replicas \
                 WHERE id <> $1 AND seen_at > statement_timestamp() - make_interval(secs => $2)",
                &[&holder, &timeout.as_secs_f64()],
            )
            .await
            .map_err(|e| db(DOING, e))?;
        rows.iter()
            .map(|row| row.try_get::<_, Uuid>(0).map_err(|e| db(DOING, e)))
            .collect()
    }

    async fn leave(&self, holder: Uuid) -> Result<()> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM monitor_replicas WHERE id = $1", &[&holder])
            .await
            .map_err(|e| db("telling other monitors this one stops", e))?;
        Ok(())
    }

    async fn notify_event(&self, payload: &str) -> Result<()> {
        const DOING: &str = "telling other processes an event";
        let client = self.client().await?;
        // Prepared once per pooled connection: the recorder tells every batch's events.
        let statement = client
            .prepare_cached("SELECT pg_notify($1, $2)")
            .await
            .map_err(|e| db(DOING, e))?;
        client
            .execute(&statement, &[&EVENTS_CHANNEL, &payload])
            .await
            .map_err(|e| db(DOING, e))?;
        Ok(())
    }

    fn subscribe_events(&self) -> Option<mpsc::Receiver<String>> {
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(listen(self.listen.clone(), sender));
        Some(receiver)
    }
}

/// The history rows of a batch of checks, column by column (`unnest` turns them back into rows).
struct HistoryColumns {
    connection: Vec<Uuid>,
    at: Vec<OffsetDateTime>,
    ok: Vec<bool>,
    latency_ms: Vec<i64>,
    error_kind: Vec<Option<&'static str>>,
    step: Vec<Option<&'static str>>,
    status: Vec<&'static str>,
}

impl HistoryColumns {
    fn of(checks: &[(Check, Health)]) -> Self {
        let n = checks.len();
        let mut columns = Self {
            connection: Vec::with_capacity(n),
            at: Vec::with_capacity(n),
            ok: Vec::with_capacity(n),
            latency_ms: Vec::with_capacity(n),
            error_kind: Vec::with_capacity(n),
            step: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
        };
        for (check, _) in checks {
            columns.connection.push(*check.connection.as_uuid());
            columns.at.push(check.at);
            columns.ok.push(check.ok);
            columns.latency_ms.push(i64::from(check.latency_ms));
            columns
                .error_kind
                .push(check.error_kind.map(|k| k.as_str()));
            columns.step.push(check.step.map(|s| s.as_str()));
            columns.status.push(check.status.as_str());
        }
        columns
    }
}

/// The current-health rows of a batch of checks, one per connection (an upsert may touch a row
/// once): the last check's health, with the facts of the last check that brought any.
struct HealthColumns {
    connection: Vec<Uuid>,
    status: Vec<&'static str>,
    checked_at: Vec<Option<OffsetDateTime>>,
    latency_ms: Vec<Option<i64>>,
    error_kind: Vec<Option<&'static str>>,
    uptime_24h: Vec<Option<f64>>,
    facts_at: Vec<Option<OffsetDateTime>>,
    server_version: Vec<Option<String>>,
    in_recovery: Vec<Option<bool>>,
    connections_used: Vec<Option<i64>>,
    max_connections: Vec<Option<i64>>,
    tls_protocol: Vec<Option<String>>,
    tls_cipher: Vec<Option<String>>,
    tls_peer_subject: Vec<Option<String>>,
    tls_peer_not_after: Vec<Option<OffsetDateTime>>,
}

impl HealthColumns {
    fn of(checks: &[(Check, Health)]) -> Self {
        // Per connection: the last health, and the last facts.
        let mut order: Vec<ConnectionId> = Vec::new();
        let mut last: HashMap<ConnectionId, (&Health, Option<&Health>)> = HashMap::new();
        for (check, health) in checks {
            let entry = last.entry(check.connection).or_insert_with(|| {
                order.push(check.connection);
                (health, None)
            });
            entry.0 = health;
            if health.facts.is_some() {
                entry.1 = Some(health);
            }
        }
        // In id order, as every batch writes them: two batches never wait on each other's rows
        // in opposite orders.
        order.sort_unstable();
        let n = order.len();
        let mut columns = Self {
            connection: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
            checked_at: Vec::with_capacity(n),
            latency_ms: Vec::with_capacity(n),
            error_kind: Vec::with_capacity(n),
            uptime_24h: Vec::with_capacity(n),
            facts_at: Vec::with_capacity(n),
            server_version: Vec::with_capacity(n),
            in_recovery: Vec::with_capacity(n),
            connections_used: Vec::with_capacity(n),
            max_connections: Vec::with_capacity(n),
            tls_protocol: Vec::with_capacity(n),
            tls_cipher: Vec::with_capacity(n),
            tls_peer_subject: Vec::with_capacity(n),
            tls_peer_not_after: Vec::with_capacity(n),
        };
        for id in order {
            let Some((health, with_facts)) = last.get(&id) else {
                continue;
            };
            let facts = FactColumns::of(with_facts.unwrap_or(health), |at| at);
            columns.connection.push(*id.as_uuid());
            columns.status.push(health.status.as_str());
            columns.checked_at.push(health.checked_at);
            columns.latency_ms.push(health.latency_ms.map(i64::from));
            columns
                .error_kind
                .push(health.error_kind.map(|k| k.as_str()));
            columns.uptime_24h.push(health.uptime_24h);
            columns.facts_at.push(facts.at);
            columns.server_version.push(facts.server_version);
            columns.in_recovery.push(facts.in_recovery);
            columns.connections_used.push(facts.connections_used);
            columns.max_connections.push(facts.max_connections);
            columns.tls_protocol.push(facts.tls_protocol);
            columns.tls_cipher.push(facts.tls_cipher);
            columns.tls_peer_subject.push(facts.tls_peer_subject);
            columns.tls_peer_not_after.push(facts.tls_peer_not_after);
        }
        columns
    }
}
