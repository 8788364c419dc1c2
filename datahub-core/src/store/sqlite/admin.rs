//! The SQLite side of the admin's settings and keys ([`AdminStore`]): the target policy, the
//! data keys per KEK and their rewrapping, and the key checks of migration 6 (SECURITY.md S28).

use async_trait::async_trait;
use rusqlite::params;
use time::OffsetDateTime;

use super::{SqliteStore, collect, db_error};
use crate::audit::AuditEvent;
use crate::crypto::{KekId, WrappedDek};
use crate::model::TargetPolicy;
use crate::store::{AdminStore, KekUsage};
use crate::{ConnectionId, Result};
pub(super) const TABLE: &str = "key_checks";

use super::audit::append_audit_in;
use super::codec::{self, encode_list, get, get_u64, micros, policy_row};
use crate::crypto::KeyCheck;

/// The target policy (the default until one is saved).
pub(super) fn read_policy(conn: &rusqlite::Connection) -> Result<TargetPolicy> {
    let found = collect(conn, "SELECT * FROM policy WHERE id = 1", [], |row| {
        policy_row(row)
    })?;
    Ok(found.into_iter().next().unwrap_or_default())
}

#[async_trait]
impl AdminStore for SqliteStore {
    async fn policy(&self) -> Result<TargetPolicy> {
        self.pool.read(|conn| read_policy(conn)).await
    }

    async fn set_policy(&self, policy: &TargetPolicy, audit: &AuditEvent) -> Result<()> {
        let policy = policy.clone();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO policy (id, allow_cidrs, deny_cidrs, min_tls_mode) \
                     VALUES (1, ?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET \
                     allow_cidrs = excluded.allow_cidrs, deny_cidrs = excluded.deny_cidrs, \
                     min_tls_mode = excluded.min_tls_mode",
                    params![
                        encode_list(&policy.allow_cidrs),
                        encode_list(&policy.deny_cidrs),
                        policy.min_tls_mode.as_str()
                    ],
                )
                .map_err(db_error)?;
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }

    async fn kek_usage(&self) -> Result<Vec<KekUsage>> {
        self.pool
            .read(|conn| {
                collect(
                    conn,
                    "SELECT kek_id, count(*) AS n FROM connections GROUP BY kek_id \
                     ORDER BY kek_id",
                    [],
                    |row| {
                        let t = "connections";
                        let kek: String = get(row, t, "kek_id")?;
                        Ok(KekUsage {
                            kek: KekId::new(&kek).map_err(|e| codec::corrupt(t, e))?,
                            rows: get_u64(row, t, "n")?,
                        })
                    },
                )
            })
            .await
    }

    async fn deks_not_under(
        &self,
        active: &KekId,
        after: Option<ConnectionId>,
        limit: u32,
    ) -> Result<Vec<(ConnectionId, WrappedDek)>> {
        let active = active.as_str().to_owned();
        // Ids are hyphenated lowercase UUID text, whose text order is id order; "" sorts first.
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        self.pool
            .read(move |conn| {
                collect(
                    conn,
                    "SELECT id, wrapped_dek FROM connections WHERE kek_id <> ?1 AND id > ?2 \
                     ORDER BY id LIMIT ?3",
                    params![active, after, i64::from(limit)],
                    |row| {
                        let t = "connections";
                        let id = ConnectionId::from_uuid(codec::get_uuid(row, t, "id")?);
                        let dek = WrappedDek::parse(&get::<Vec<u8>>(row, t, "wrapped_dek")?)
                            .map_err(|e| codec::corrupt(t, e))?;
                        Ok((id, dek))
                    },
                )
            })
            .await
    }

    async fn replace_dek(
        &self,
        id: ConnectionId,
        old: &WrappedDek,
        new: &WrappedDek,
    ) -> Result<bool> {
        let old = old.to_bytes();
        let new_kek = new.kek_id().as_str().to_owned();
        let new = new.to_bytes();
        self.pool
            .write(move |tx| {
                let n = tx
                    .execute(
                        "UPDATE connections SET wrapped_dek = ?1, kek_id = ?2 \
                         WHERE id = ?3 AND wrapped_dek = ?4",
                        params![new, new_kek, id.to_string(), old],
                    )
                    .map_err(db_error)?;
                Ok(n == 1)
            })
            .await
    }

    async fn dek_sample(&self, kek: &KekId) -> Result<Option<(ConnectionId, WrappedDek)>> {
        let kek = kek.as_str().to_owned();
        self.pool
            .read(move |conn| {
                Ok(collect(
                    conn,
                    "SELECT id, wrapped_dek FROM connections WHERE kek_id = ?1 ORDER BY id LIMIT 1",
                    [kek],
                    |row| {
                        let t = "connections";
                        let id = ConnectionId::from_uuid(codec::get_uuid(row, t, "id")?);
                        let dek = WrappedDek::parse(&get::<Vec<u8>>(row, t, "wrapped_dek")?)
                            .map_err(|e| codec::corrupt(t, e))?;
                        Ok((id, dek))
                    },
                )?
                .pop())
            })
            .await
    }

    async fn key_checks(&self) -> Result<Vec<KeyCheck>> {
        self.pool
            .read(|conn| {
                collect(
                    conn,
                    "SELECT kek_id, proof FROM key_checks ORDER BY kek_id",
                    [],
                    |row| {
                        let id: String = get(row, TABLE, "kek_id")?;
                        let id = KekId::new(&id).map_err(|e| codec::corrupt(TABLE, e))?;
                        let proof: Vec<u8> = get(row, TABLE, "proof")?;
                        KeyCheck::parse(id, &proof).map_err(|e| codec::corrupt(TABLE, e))
                    },
                )
            })
            .await
    }

    async fn insert_key_check(&self, check: &KeyCheck) -> Result<bool> {
        let id = check.kek_id().as_str().to_owned();
        let proof = check.to_bytes();
        let now = micros(OffsetDateTime::now_utc());
        self.pool
            .write(move |tx| {
                let n = tx
                    .execute(
                        "INSERT INTO key_checks (kek_id, proof, created_at) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (kek_id) DO NOTHING",
                        params![id, proof, now],
                    )
                    .map_err(db_error)?;
                Ok(n == 1)
            })
            .await
    }

    async fn delete_key_check(&self, kek: &KekId, audit: &AuditEvent) -> Result<()> {
        let kek = kek.as_str().to_owned();
        let audit = audit.clone();
        self.pool
            .write(move |tx| {
                tx.execute("DELETE FROM key_checks WHERE kek_id = ?1", [kek])
                    .map_err(db_error)?;
                append_audit_in(tx, &audit)?;
                Ok(())
            })
            .await
    }
}
