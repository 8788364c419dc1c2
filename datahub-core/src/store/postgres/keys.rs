//! The PostgreSQL side of key checks (migration 6, SECURITY.md S28): the SQL behind the `Store`
//! key check methods and the start-up sample of a KEK's rows, kept apart from the rest of the
//! store.

use super::codec::{self, get};
use super::error::db;
use super::{PostgresStore, append_in};
use crate::audit::AuditEvent;
use crate::crypto::{KekId, KeyCheck, WrappedDek};
use crate::{ConnectionId, Result};

const TABLE: &str = "key_checks";

impl PostgresStore {
    pub(super) async fn dek_sample_row(
        &self,
        kek: &KekId,
    ) -> Result<Option<(ConnectionId, WrappedDek)>> {
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

    pub(super) async fn key_check_rows(&self) -> Result<Vec<KeyCheck>> {
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

    pub(super) async fn insert_key_check_row(&self, check: &KeyCheck) -> Result<bool> {
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

    pub(super) async fn delete_key_check_row(&self, kek: &KekId, audit: &AuditEvent) -> Result<()> {
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
