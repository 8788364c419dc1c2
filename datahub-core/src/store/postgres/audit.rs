//! The PostgreSQL side of the audit log ([`AuditStore`]): appending to the hash chain under the
//! transaction-level advisory lock [`AUDIT_LOCK_KEY`](super::AUDIT_LOCK_KEY), so entries from every
//! process form one linear chain, and reading it back.

use async_trait::async_trait;

use super::codec::{self, AUDIT_COLUMNS, to_i64};
use super::error::db;
use super::{AUDIT_LOCK_KEY, Params, PostgresStore, page_total};
use crate::audit::{AuditEvent, AuditRecord, GENESIS_HASH, truncate_to_micros};
use crate::model::{AuditQuery, Page};
use crate::store::AuditStore;
use crate::store::columns::{self, page_offset};
use crate::{Error, ErrorKind, Result};

/// The lock statement, the read of the chain's last entry and the insert.
const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1)";
const LAST_SQL: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";
const INSERT_SQL: &str = "INSERT INTO audit_log (seq, at, actor, actor_name, action, target, \
     outcome, changed_fields, client_addr, request_id, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
const DOING: &str = "appending to the audit log";

/// Appends `event` to the chain inside `tx`, serialized across processes by
/// [`AUDIT_LOCK_KEY`] (held until `tx` ends).
pub(super) async fn append_in(
    tx: &deadpool_postgres::Transaction<'_>,
    event: &AuditEvent,
) -> Result<AuditRecord> {
    // Prepared once per pooled connection (each statement is then one round trip, not two);
    // the lock and the read are sent together (the server runs them in order, so the read is
    // made under the lock).
    let (lock, last, insert) = tokio::try_join!(
        tx.prepare_cached(LOCK_SQL),
        tx.prepare_cached(LAST_SQL),
        tx.prepare_cached(INSERT_SQL),
    )
    .map_err(|e| db(DOING, e))?;
    let (locked, last) = tokio::join!(
        tx.execute(&lock, &[&AUDIT_LOCK_KEY]),
        tx.query_opt(&last, &[]),
    );
    let record = chained(locked, last, event)?;
    let row = InsertRow::of(&record)?;
    tx.execute(&insert, &row.params())
        .await
        .map_err(|e| db(DOING, e))?;
    Ok(record)
}

/// The record that chains `event` after the last entry read under the lock. Both answers are
/// taken before either is judged: when the lock fails (its wait ran out), the read sent behind
/// it fails too, only because the transaction was aborted; the lock's error is the one that
/// says why.
fn chained(
    locked: std::result::Result<u64, tokio_postgres::Error>,
    last: std::result::Result<Option<tokio_postgres::Row>, tokio_postgres::Error>,
    event: &AuditEvent,
) -> Result<AuditRecord> {
    locked.map_err(|e| db(DOING, e))?;
    let last = last.map_err(|e| db(DOING, e))?;
    let (seq, prev_hash) = match &last {
        None => (0, GENESIS_HASH),
        Some(row) => {
            let seq: i64 = codec::get(row, "audit_log", "seq")?;
            let hash: &[u8] = codec::get(row, "audit_log", "hash")?;
            let corrupt = || Error::new(ErrorKind::Store, "corrupt row in audit_log");
            (
                u64::try_from(seq).map_err(|_| corrupt())?,
                <[u8; 32]>::try_from(hash).map_err(|_| corrupt())?,
            )
        }
    };
    // Stored times keep microseconds; truncating here keeps the hash valid after a read back.
    let mut event = event.clone();
    event.at = truncate_to_micros(event.at);
    Ok(AuditRecord::chain(seq.saturating_add(1), prev_hash, event))
}

/// The values of a record's insert that are not fields of it as they are.
struct InsertRow<'a> {
    record: &'a AuditRecord,
    seq: i64,
    actor: Option<uuid::Uuid>,
    outcome: &'static str,
    prev_hash: &'a [u8],
    hash: &'a [u8],
}

impl<'a> InsertRow<'a> {
    fn of(record: &'a AuditRecord) -> Result<Self> {
        Ok(Self {
            record,
            seq: to_i64(record.seq, "seq")?,
            actor: record.event.actor.map(|a| *a.as_uuid()),
            outcome: record.event.outcome.as_str(),
            prev_hash: record.prev_hash.as_slice(),
            hash: record.hash.as_slice(),
        })
    }

    fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 12] {
        let e = &self.record.event;
        [
            &self.seq,
            &e.at,
            &self.actor,
            &e.actor_name,
            &e.action,
            &e.target,
            &self.outcome,
            &e.changed_fields,
            &e.client_addr,
            &e.request_id,
            &self.prev_hash,
            &self.hash,
        ]
    }
}

/// Appends `event` in a transaction of its own, in two round trips: `BEGIN` (and `setting`,
/// for this transaction only) sent with the lock and the read, then the insert with `COMMIT`.
/// When the insert fails the server turns that `COMMIT` into a rollback; when the lock or the
/// read fails the transaction is rolled back before the connection goes back to the pool. A
/// connection whose transaction may still be open (the rollback failed, or the caller stopped
/// waiting midway) never goes back: it is closed, and the server rolls back.
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
    let (lock, last, insert) = tokio::try_join!(
        c.prepare_cached(LOCK_SQL),
        c.prepare_cached(LAST_SQL),
        c.prepare_cached(INSERT_SQL),
    )
    .map_err(|e| db(DOING, e))?;
    let begin = format!("BEGIN; {setting}");
    let (begun, locked, last) = tokio::join!(
        c.batch_execute(&begin),
        c.execute(&lock, &[&AUDIT_LOCK_KEY]),
        c.query_opt(&last, &[]),
    );
    let record = begun
        .map_err(|e| db(DOING, e))
        .and_then(|()| chained(locked, last, event));
    let record = match record {
        Ok(record) => record,
        Err(e) => {
            if c.batch_execute("ROLLBACK").await.is_ok() {
                client.keep();
            }
            return Err(e);
        }
    };
    let row = InsertRow::of(&record)?;
    let params = row.params();
    let (inserted, committed) =
        tokio::join!(c.execute(&insert, &params), c.batch_execute("COMMIT"));
    // Either way the transaction has ended (a failed insert's COMMIT rolls back).
    client.keep();
    inserted.map_err(|e| db(DOING, e))?;
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
