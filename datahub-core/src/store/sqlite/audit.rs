//! The SQLite side of the audit log ([`AuditStore`]): appending to the hash chain inside the
//! writer's transaction (SQLite admits one writer at a time, so the chain stays linear), and
//! reading it back.

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction, params, params_from_iter};

use super::codec::{self, AUDIT_COLUMNS, audit_row, encode_list, micros};
use super::{SqliteStore, collect, db_error};
use crate::audit::{AuditEvent, AuditRecord, GENESIS_HASH, truncate_to_micros};
use crate::model::{AuditQuery, Page};
use crate::store::AuditStore;
use crate::store::columns::{self, page_offset};
use crate::{Error, ErrorKind, Result};

/// Appends `event` to the audit chain inside `tx`: reads the last entry, chains after it.
pub(super) fn append_audit_in(tx: &Transaction<'_>, event: &AuditEvent) -> Result<AuditRecord> {
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db_error)?;
    let (seq, prev_hash) = match last {
        None => (1, GENESIS_HASH),
        Some((seq, hash)) => {
            let corrupt = || Error::new(ErrorKind::Store, "corrupt row in audit_log");
            let seq = u64::try_from(seq).map_err(|_| corrupt())?;
            let hash: [u8; 32] = hash.try_into().map_err(|_| corrupt())?;
            (seq + 1, hash)
        }
    };
    let mut event = event.clone();
    // Stored at microsecond precision: hash what is stored, so the chain verifies when read.
    event.at = truncate_to_micros(event.at);
    let record = AuditRecord::chain(seq, prev_hash, event);
    let e = &record.event;
    tx.prepare_cached(
        "INSERT INTO audit_log (seq, at, actor, actor_name, action, target, outcome, \
         changed_fields, client_addr, request_id, prev_hash, hash) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            i64::try_from(record.seq).unwrap_or(i64::MAX),
            micros(e.at),
            e.actor.map(|a| a.to_string()),
            e.actor_name,
            e.action,
            e.target,
            e.outcome.as_str(),
            encode_list(&e.changed_fields),
            e.client_addr,
            e.request_id,
            record.prev_hash.as_slice(),
            record.hash.as_slice(),
        ])
    })
    .map_err(|err| {
        Error::new(ErrorKind::Store, "could not append to the audit log").with_source(err)
    })?;
    Ok(record)
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord> {
        let event = event.clone();
        self.pool.write(move |tx| append_audit_in(tx, &event)).await
    }

    async fn append_audit_unsynced(&self, event: &AuditEvent) -> Result<AuditRecord> {
        let event = event.clone();
        // One row through the index's last entry: short enough to run inline.
        self.pool
            .write_relaxed_short(move |tx| append_audit_in(tx, &event))
            .await
    }

    async fn audit_after(&self, after: u64, limit: u32) -> Result<Vec<AuditRecord>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.pool
            .read(move |conn| {
                collect(
                    conn,
                    &format!(
                        "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ?1 \
                         ORDER BY seq LIMIT ?2"
                    ),
                    params![after, i64::from(limit)],
                    |r| audit_row(r),
                )
            })
            .await
    }

    async fn audit_page(&self, query: &AuditQuery) -> Result<Page<AuditRecord>> {
        let offset = page_offset(query.page, query.per_page)?;
        let mut clauses = Vec::new();
        let mut params: Vec<Value> = Vec::new();
        if let Some(actor) = query.actor {
            params.push(Value::Text(actor.to_string()));
            clauses.push(format!("actor = ?{}", params.len()));
        }
        if let Some(action) = &query.action {
            params.push(Value::Text(action.clone()));
            clauses.push(format!("action = ?{}", params.len()));
        }
        if let Some(target) = &query.target {
            params.push(Value::Text(target.clone()));
            clauses.push(format!("target = ?{}", params.len()));
        }
        if let Some(since) = query.since {
            params.push(Value::Integer(codec::micros(since)));
            clauses.push(format!("at >= ?{}", params.len()));
        }
        if let Some(until) = query.until {
            params.push(Value::Integer(codec::micros(until)));
            clauses.push(format!("at < ?{}", params.len()));
        }
        let where_clause = if clauses.is_empty() {
            String::from("1")
        } else {
            clauses.join(" AND ")
        };
        let (page, per_page) = (query.page, query.per_page);
        self.pool
            .read(move |conn| {
                let total: i64 = conn
                    .prepare_cached(&format!(
                        "SELECT count(*) FROM audit_log WHERE {where_clause}"
                    ))
                    .and_then(|mut s| s.query_row(params_from_iter(params.iter()), |r| r.get(0)))
                    .map_err(db_error)?;
                let n = params.len();
                let sql = format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE {where_clause} \
                     ORDER BY seq DESC LIMIT ?{} OFFSET ?{}",
                    n + 1,
                    n + 2
                );
                let mut all = params;
                all.push(Value::Integer(i64::from(per_page)));
                all.push(Value::Integer(offset));
                Ok(columns::page(
                    collect(conn, &sql, params_from_iter(all), |r| audit_row(r))?,
                    total,
                    page,
                    per_page,
                ))
            })
            .await
    }
}
