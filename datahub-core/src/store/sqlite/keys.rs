//! The SQLite side of key checks (migration 6, SECURITY.md S28): the SQL behind the `Store` key
//! check methods and the start-up sample of a KEK's rows, kept apart from the rest of the store.

use rusqlite::params;
use time::OffsetDateTime;

use super::codec::{self, get, micros};
use super::{SqliteStore, append_audit_in, collect, db_error};
use crate::audit::AuditEvent;
use crate::crypto::{KekId, KeyCheck, WrappedDek};
use crate::{ConnectionId, Result};

const TABLE: &str = "key_checks";

impl SqliteStore {
    pub(super) async fn dek_sample_row(
        &self,
        kek: &KekId,
    ) -> Result<Option<(ConnectionId, WrappedDek)>> {
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

    pub(super) async fn key_check_rows(&self) -> Result<Vec<KeyCheck>> {
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

    pub(super) async fn insert_key_check_row(&self, check: &KeyCheck) -> Result<bool> {
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

    pub(super) async fn delete_key_check_row(&self, kek: &KekId, audit: &AuditEvent) -> Result<()> {
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
