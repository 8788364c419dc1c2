//! The PostgreSQL side of the audit log ([`AuditStore`]): appending to the hash chain under the
//! transaction-level advisory lock [`AUDIT_LOCK_KEY`](super::AUDIT_LOCK_KEY), so entries from every
//! process form one linear chain, and reading it back.

use async_trait::async_trait;

use super::codec::{self, AUDIT_COLUMNS};
use super::error::db;
use super::{AUDIT_LOCK_KEY, Params, PostgresStore, page_total};
use crate::audit::{
    AuditEvent, AuditRecord, CHAIN_LABEL, GENESIS_HASH, event_bytes, truncate_to_micros,
};
use crate::model::{AuditQuery, Page};
use crate::store::AuditStore;
use crate::store::columns::{self, page_offset};
use crate::{Error, ErrorKind, Result};

/// The lock statement.
const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1)";
/// The append, sent right behind the lock in the same round trip: it chains after the last
/// entry (after the genesis hash, `$12`, for the first) and hashes the entry as
/// [`chain_hash`](crate::audit::chain_hash) does: the label (`$10`), the number (`int8send`: 8
/// bytes, big-endian), the previous hash and the event's own bytes (`$11`). A statement that
/// starts once the lock is granted reads the chain as the lock's last holder committed it (read
/// committed takes a snapshot per statement), so the appends of every process form one linear
/// chain. The hash is checked again in Rust from what the statement returns.
const APPEND_SQL: &str = "INSERT INTO audit_log (seq, at, actor, actor_name, action, target, \
     outcome, changed_fields, client_addr, request_id, prev_hash, hash) \
     SELECT last.seq + 1, $1::timestamptz, $2::uuid, $3::text, $4::text, $5::text, $6::text, \
     $7::text[], $8::text, $9::text, last.hash, \
     sha256($10::bytea || int8send(last.seq + 1) || last.hash || $11::bytea) \
     FROM ((SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) \
     UNION ALL SELECT 0, $12::bytea ORDER BY seq DESC LIMIT 1) AS last \
     RETURNING seq, prev_hash, hash";
const DOING: &str = "appending to the audit log";

/// Appends `event` to the chain inside `tx`, serialized across processes by
/// [`AUDIT_LOCK_KEY`] (held until `tx` ends): the lock and the append in one round trip.
pub(super) async fn append_in(
    tx: &deadpool_postgres::Transaction<'_>,
    event: &AuditEvent,
) -> Result<AuditRecord> {
    // Prepared once per pooled connection: each statement is then sent without a round trip
    // of its own, and the server runs them in order, so the append runs under the lock.
    let (lock, append) =
        tokio::try_join!(tx.prepare_cached(LOCK_SQL), tx.prepare_cached(APPEND_SQL))
            .map_err(|e| db(DOING, e))?;
    let row = Append::of(event);
    let params = row.params();
    let (locked, appended) = tokio::join!(
        tx.execute(&lock, &[&AUDIT_LOCK_KEY]),
        tx.query_one(&append, &params),
    );
    row.record(locked, appended)
}

/// An event as the append statement takes it, and the record it makes.
struct Append {
    /// Stored times keep microseconds; truncated here, the hash stays valid after a read back.
    event: AuditEvent,
    actor: Option<uuid::Uuid>,
    outcome: &'static str,
    tail: Vec<u8>,
}

impl Append {
    fn of(event: &AuditEvent) -> Self {
        let mut event = event.clone();
        event.at = truncate_to_micros(event.at);
        Self {
            actor: event.actor.map(|a| *a.as_uuid()),
            outcome: event.outcome.as_str(),
            tail: event_bytes(&event),
            event,
        }
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 12] {
        let e = &self.event;
        [
            &e.at,
            &self.actor,
            &e.actor_name,
            &e.action,
            &e.target,
            &self.outcome,
            &e.changed_fields,
            &e.client_addr,
            &e.request_id,
            &CHAIN_LABEL,
            &self.tail,
            &GENESIS_SLICE,
        ]
    }

    /// The record the append stored, once its answers are in. Both are taken before either is
    /// judged: when the lock fails (its wait ran out), the append sent behind it fails too,
    /// only because the transaction was aborted; the lock's error is the one that says why.
    fn record(
        self,
        locked: std::result::Result<u64, tokio_postgres::Error>,
        appended: std::result::Result<tokio_postgres::Row, tokio_postgres::Error>,
    ) -> Result<AuditRecord> {
        locked.map_err(|e| db(DOING, e))?;
        let row = appended.map_err(|e| db(DOING, e))?;
        let t = "audit_log";
        let corrupt = || Error::new(ErrorKind::Store, "corrupt row in audit_log");
        let seq = u64::try_from(codec::get::<i64>(&row, t, "seq")?).map_err(|_| corrupt())?;
        let prev_hash = <[u8; 32]>::try_from(codec::get::<&[u8]>(&row, t, "prev_hash")?)
            .map_err(|_| corrupt())?;
        let hash: &[u8] = codec::get(&row, t, "hash")?;
        let record = AuditRecord::chain(seq, prev_hash, self.event);
        if record.hash.as_slice() != hash {
            return Err(Error::new(
                ErrorKind::Internal,
                "the audit entry's hash computed by PostgreSQL differs from this program's",
            ));
        }
        Ok(record)
    }
}

/// [`GENESIS_HASH`] as a statement parameter.
const GENESIS_SLICE: &[u8] = &GENESIS_HASH;

/// Appends `event` in a transaction of its own, in one round trip: `BEGIN` (and `setting`, for
/// this transaction only), the lock, the append and `COMMIT`, sent together. When the lock or
/// the append fails the server turns that `COMMIT` into a rollback. A connection whose
/// transaction may still be open (the caller stopped waiting midway) never goes back to the
/// pool: it is closed, and the server rolls back.
async fn append_alone(
    store: &PostgresStore,
    event: &AuditEvent,
    setting: &str,
) -> Result<AuditRecord> {
    let mut client = Detach(Some(store.client().await?));
    let Some(c) = client.0.as_ref() else {
        return Err(Error::new(
            ErrorKind::Internal,
            "no connection to append with",
        ));
    };
    let (lock, append) = tokio::try_join!(c.prepare_cached(LOCK_SQL), c.prepare_cached(APPEND_SQL))
        .map_err(|e| db(DOING, e))?;
    let row = Append::of(event);
    let params = row.params();
    let begin = format!("BEGIN; {setting}");
    let (begun, locked, appended, committed) = tokio::join!(
        c.batch_execute(&begin),
        c.execute(&lock, &[&AUDIT_LOCK_KEY]),
        c.query_one(&append, &params),
        c.batch_execute("COMMIT"),
    );
    // Either way the transaction has ended (after a failure, its COMMIT rolls back).
    client.keep();
    begun.map_err(|e| db(DOING, e))?;
    let record = row.record(locked, appended)?;
    committed.map_err(|e| db(DOING, e))?;
    Ok(record)
}

/// A pooled connection that is closed, not given back, unless [`Detach::keep`] was called:
/// for one that may be left inside a transaction.
struct Detach(Option<deadpool_postgres::Object>);

impl Detach {
    /// Gives the connection back to the pool when dropped.
    fn keep(&mut self) {
        drop(self.0.take());
    }
}

impl Drop for Detach {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord> {
        append_alone(self, event, "").await
    }

    async fn append_audit_unsynced(&self, event: &AuditEvent) -> Result<AuditRecord> {
        // This transaction's commit only: it returns once the commit is in the server's log
        // buffer, which the WAL writer flushes within a few hundred milliseconds.
        append_alone(self, event, "SET LOCAL synchronous_commit = off").await
    }

    async fn audit_after(&self, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        // Past i64::MAX there is nothing to read.
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let sql =
            format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows = client
            .query(&sql, &[&after, &i64::from(limit)])
            .await
            .map_err(|e| db("reading the audit log", e))?;
        rows.iter().map(codec::audit_row).collect()
    }

    async fn audit_page(&self, query: &AuditQuery) -> Result<Page<AuditRecord>> {
        const DOING: &str = "reading the audit log";
        let offset = page_offset(query.page, query.per_page)?;
        let mut p = Params::default();
        let mut conditions: Vec<String> = Vec::new();
        if let Some(actor) = query.actor {
            let actor = p.bind(*actor.as_uuid());
            conditions.push(format!("actor = {actor}"));
        }
        if let Some(action) = &query.action {
            let action = p.bind(action.clone());
            conditions.push(format!("action = {action}"));
        }
        if let Some(target) = &query.target {
            let target = p.bind(target.clone());
            conditions.push(format!("target = {target}"));
        }
        if let Some(since) = query.since {
            let since = p.bind(since);
            conditions.push(format!("at >= {since}"));
        }
        if let Some(until) = query.until {
            let until = p.bind(until);
            conditions.push(format!("at < {until}"));
        }
        let filter = if conditions.is_empty() {
            String::from("TRUE")
        } else {
            conditions.join(" AND ")
        };
        let count_params = p.0.len();
        let limit = p.bind(i64::from(query.per_page));
        let offset = p.bind(offset);
        let sql = format!(
            "SELECT {AUDIT_COLUMNS}, count(*) OVER () AS total FROM audit_log WHERE {filter} \
             ORDER BY seq DESC LIMIT {limit} OFFSET {offset}"
        );
        let client = self.client().await?;
        let rows = client
            .query(&sql, &p.refs())
            .await
            .map_err(|e| db(DOING, e))?;
        let total = match page_total(&rows, "audit_log")? {
            Some(total) => total,
            None if query.page == 1 => 0,
            None => {
                let sql = format!("SELECT count(*) AS total FROM audit_log WHERE {filter}");
                let refs = p.refs();
                let row = client
                    .query_one(&sql, &refs[..count_params])
                    .await
                    .map_err(|e| db(DOING, e))?;
                page_total(std::slice::from_ref(&row), "audit_log")?.unwrap_or(0)
            }
        };
        let items = rows
            .iter()
            .map(codec::audit_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(columns::page(items, total, query.page, query.per_page))
    }
}
