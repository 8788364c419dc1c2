//! The PostgreSQL side of the admin's settings and keys ([`AdminStore`]): the target policy, the
//! data keys per KEK and their rewrapping, and the key checks of migration 6 (SECURITY.md S28).

use async_trait::async_trait;

use super::audit::append_in;
use super::codec::{self, get};
use super::error::db;
use super::{PostgresStore, page_total};
use crate::audit::AuditEvent;
use crate::crypto::{KekId, WrappedDek};
use crate::model::TargetPolicy;
use crate::store::{AdminStore, KekUsage};
use crate::{ConnectionId, Result};
pub(super) const TABLE: &str = "key_checks";

use crate::crypto::KeyCheck;

/// The stored target policy (no row: the default).
pub(super) const POLICY_SQL: &str =
    "SELECT allow_cidrs, deny_cidrs, min_tls_mode FROM policy WHERE id = 1";

#[async_trait]
impl AdminStore for PostgresStore {
    async fn policy(&self) -> Result<TargetPolicy> {
        let client = self.client().await?;
        let row = client
            .query_opt(POLICY_SQL, &[])
            .await
            .map_err(|e| db("reading the policy", e))?;
        match row {
            Some(row) => codec::policy_row(&row),
            None => Ok(TargetPolicy::default()),
        }
    }

    async fn set_policy(&self, policy: &TargetPolicy, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "saving the policy";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        tx.execute(
            "INSERT INTO policy (id, allow_cidrs, deny_cidrs, min_tls_mode) \
             VALUES (1, $1, $2, $3) ON CONFLICT (id) DO UPDATE SET \
             allow_cidrs = EXCLUDED.allow_cidrs, deny_cidrs = EXCLUDED.deny_cidrs, \
             min_tls_mode = EXCLUDED.min_tls_mode",
            &[
                &policy.allow_cidrs,
                &policy.deny_cidrs,
                &policy.min_tls_mode.as_str(),
            ],
        )
        .await
        .map_err(|e| db(DOING, e))?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))
    }

    async fn kek_usage(&self) -> Result<Vec<KekUsage>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT kek_id, count(*) AS total FROM connections GROUP BY kek_id \
                 ORDER BY kek_id COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(|e| db("counting data keys per key", e))?;
        rows.iter()
            .map(|row| {
                Ok(KekUsage {
                    kek: codec::kek_id(row)?,
                    rows: page_total(std::slice::from_ref(row), "connections")?.unwrap_or(0),
                })
            })
            .collect()
    }

    async fn deks_not_under(
        &self,
        active: &KekId,
        after: Option<ConnectionId>,
        limit: u32,
    ) -> Result<Vec<(ConnectionId, WrappedDek)>> {
        let client = self.client().await?;
        let after = after.map(|a| *a.as_uuid());
        let rows = client
            .query(
                "SELECT id, kek_id, wrapped_dek FROM connections \
                 WHERE kek_id <> $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
                &[&active.as_str(), &after, &i64::from(limit)],
            )
            .await
            .map_err(|e| db("reading data keys to rewrap", e))?;
        rows.iter().map(codec::dek_row).collect()
    }

    async fn replace_dek(
        &self,
        id: ConnectionId,
        old: &WrappedDek,
        new: &WrappedDek,
    ) -> Result<bool> {
        let client = self.client().await?;
        let replaced = client
            .execute(
                "UPDATE connections SET wrapped_dek = $3, kek_id = $4 \
                 WHERE id = $1 AND wrapped_dek = $2",
                &[
                    id.as_uuid(),
                    &old.to_bytes(),
                    &new.to_bytes(),
                    &new.kek_id().as_str(),
                ],
            )
            .await
            .map_err(|e| db("replacing a data key", e))?;
        Ok(replaced == 1)
    }

    async fn dek_sample(&self, kek: &KekId) -> Result<Option<(ConnectionId, WrappedDek)>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, kek_id, wrapped_dek FROM connections WHERE kek_id = $1 \
                 ORDER BY id LIMIT 1",
                &[&kek.as_str()],
            )
            .await
            .map_err(|e| db("reading a data key to check the keyring", e))?;
        row.as_ref().map(codec::dek_row).transpose()
    }

    async fn key_checks(&self) -> Result<Vec<KeyCheck>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT kek_id, proof FROM key_checks ORDER BY kek_id COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(|e| db("reading the key checks", e))?;
        rows.iter()
            .map(|row| {
                let id =
                    KekId::new(get(row, TABLE, "kek_id")?).map_err(|e| codec::corrupt(TABLE, e))?;
                let proof: &[u8] = get(row, TABLE, "proof")?;
                KeyCheck::parse(id, proof).map_err(|e| codec::corrupt(TABLE, e))
            })
            .collect()
    }

    async fn insert_key_check(&self, check: &KeyCheck) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "INSERT INTO key_checks (kek_id, proof, created_at) VALUES ($1, $2, now()) \
                 ON CONFLICT (kek_id) DO NOTHING",
                &[&check.kek_id().as_str(), &check.to_bytes()],
            )
            .await
            .map_err(|e| db("recording a key check", e))?;
        Ok(n == 1)
    }

    async fn delete_key_check(&self, kek: &KekId, audit: &AuditEvent) -> Result<()> {
        const DOING: &str = "deleting a key check";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| db(DOING, e))?;
        tx.execute("DELETE FROM key_checks WHERE kek_id = $1", &[&kek.as_str()])
            .await
            .map_err(|e| db(DOING, e))?;
        append_in(&tx, audit).await?;
        tx.commit().await.map_err(|e| db(DOING, e))?;
        Ok(())
    }
}
