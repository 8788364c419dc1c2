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

/// Appends `event` to the chain inside `tx`, serialized across processes by
/// [`AUDIT_LOCK_KEY`] (held until `tx` ends).
pub(super) async fn append_in(
    tx: &deadpool_postgres::Transaction<'_>,
    event: &AuditEvent,
) -> Result<AuditRecord> {
    const DOING: &str = "appending to the audit log";
    // Prepared once per pooled connection (each statement is then one round trip, not two);
    // the lock and the read are sent together (the server runs them in order, so the read is
    // made under the lock).
    let (lock, last, insert) = tokio::try_join!(
        tx.prepare_cached("SELECT pg_advisory_xact_lock($1)"),
        tx.prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"),
        tx.prepare_cached(
            "INSERT INTO audit_log (seq, at, actor, actor_name, action, target, outcome, \
             changed_fields, client_addr, request_id, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ),
    )
    .map_err(|e| db(DOING, e))?;
    // Both answered before either is judged: when the lock fails (its wait ran out), the read
    // sent behind it fails too, only because the transaction was aborted; the lock's error is
    // the one that says why (`try_join!` would report whichever it happened to poll first).
    let (locked, last) = tokio::join!(
        tx.execute(&lock, &[&AUDIT_LOCK_KEY]),
        tx.query_opt(&last, &[]),
    );
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
    let record = AuditRecord::chain(seq.saturating_add(1), prev_hash, event);
    let e = &record.event;
    tx.execute(
        &insert,
        &[
            &to_i64(record.seq, "seq")?,
            &e.at,
            &e.actor.map(|a| *a.as_uuid()),
            &e.actor_name,
            &e.action,
            &e.target,
            &e.outcome.as_str(),
            &e.changed_fields,
            &e.client_addr,
            &e.request_id,
            &record.prev_hash.as_slice(),
            &record.hash.as_slice(),
        ],
    )
    .await
    .map_err(|e| db(DOING, e))?;
    Ok(record)
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord> {
        const DOING: &str = "appending to the audit log";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        let record = append_in(&tx, event).await?;
        tx.commit().await.map_err(|e| db(DOING, e))?;
        Ok(record)
    }

    async fn append_audit_unsynced(&self, event: &AuditEvent) -> Result<AuditRecord> {
        const DOING: &str = "appending to the audit log";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        // This transaction's commit only: it returns once the commit is in the server's log
        // buffer, which the WAL writer flushes within a few hundred milliseconds.
        let (unsynced, record) = tokio::join!(
            tx.batch_execute("SET LOCAL synchronous_commit = off"),
            append_in(&tx, event),
        );
        unsynced.map_err(|e| db(DOING, e))?;
        let record = record?;
        tx.commit().await.map_err(|e| db(DOING, e))?;
        Ok(record)
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
