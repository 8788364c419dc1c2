//! Key management over a store: the start-up check that the keyring holds every key the store
//! names (S5), online rotation of data keys to the active KEK in resumable batches (S6), the key
//! status report, and the guard against retiring a key still in use.
//!
//! Rotation re-wraps data keys only; sealed values are untouched, because a connection's data
//! key itself does not change. Each row switches with one compare-and-swap
//! ([`Store::replace_dek`]), so a rotation killed at any point leaves every row wrapped by either
//! the old or the new key — both in the keyring, so every row still opens — and running it again
//! finishes the job. It must never hold the old key out of the keyring while a row names it.

use crate::crypto::{KekId, Keyring, Rewrap};
use crate::store::Store;
use crate::{ConnectionId, Error, ErrorKind, Result};

/// Default rows per rotation batch.
pub const DEFAULT_ROTATION_BATCH: u32 = 500;

/// What one rotation run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Data keys now wrapped by the active KEK that were not before.
    pub rewrapped: u64,
    /// Rows left alone because they changed under the rotation (another rotation or an edit got
    /// there first) or were already under the active KEK.
    pub skipped: u64,
    /// Rows whose data key would not unwrap (tampered, or wrapped by a key the keyring lacks).
    pub failed: Vec<ConnectionId>,
}

/// One KEK's line in the key status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// The key id.
    pub id: KekId,
    /// Whether it wraps new and re-wrapped data keys.
    pub active: bool,
    /// Whether the keyring holds it (a stored row may name a key the keyring lacks).
    pub in_keyring: bool,
    /// How many connections' data keys it wraps.
    pub rows: u64,
}

/// Checks that the keyring holds every KEK the store's rows name: the store refuses to be used
/// otherwise (S5).
///
/// # Errors
/// `Keyring`, listing the missing ids; `Store` when the store fails.
pub async fn check_store_keys(store: &dyn Store, keyring: &Keyring) -> Result<()> {
    let usage = store.kek_usage().await?;
    keyring.require_ids(usage.iter().map(|u| &u.kek))
}

/// Each key of the keyring and each key the store names, with how many rows it wraps; the active
/// key first, then by id.
///
/// # Errors
/// `Store` when the store fails.
pub async fn key_status(store: &dyn Store, keyring: &Keyring) -> Result<Vec<KeyStatus>> {
    let usage = store.kek_usage().await?;
    let mut out: Vec<KeyStatus> = keyring
        .ids()
        .map(|id| KeyStatus {
            id: id.clone(),
            active: id == keyring.active_id(),
            in_keyring: true,
            rows: usage.iter().filter(|u| &u.kek == id).map(|u| u.rows).sum(),
        })
        .collect();
    for u in usage {
        if !keyring.contains(&u.kek) {
            out.push(KeyStatus {
                id: u.kek,
                active: false,
                in_keyring: false,
                rows: u.rows,
            });
        }
    }
    out.sort_by(|a, b| b.active.cmp(&a.active).then_with(|| a.id.cmp(&b.id)));
    Ok(out)
}

/// Re-wraps every data key not under the active KEK, `batch` rows at a time, and reports the
/// counts. Safe to run while the store is in use and to run again after an interruption; a
/// second run after a complete one rewraps nothing.
///
/// # Errors
/// `Store` when the store fails (the rows done so far stay done); `InvalidInput` on `batch` when
/// it is 0.
pub async fn rotate(store: &dyn Store, keyring: &Keyring, batch: u32) -> Result<RotationReport> {
    if batch == 0 {
        return Err(Error::invalid("batch", "must be at least 1"));
    }
    let active = keyring.active_id();
    tracing::info!(active = %active, batch, "key rotation started");
    let mut report = RotationReport::default();
    let mut after = None;
    loop {
        let rows = store.deks_not_under(active, after, batch).await?;
        let Some((last, _)) = rows.last() else {
            tracing::info!(
                rewrapped = report.rewrapped,
                skipped = report.skipped,
                failed = report.failed.len(),
                "key rotation finished"
            );
            return Ok(report);
        };
        after = Some(*last);
        for (id, wrapped) in rows {
            match keyring.rewrap(id, &wrapped) {
                Ok(Rewrap::Rewrapped(new)) => {
                    if store.replace_dek(id, &wrapped, &new).await? {
                        report.rewrapped += 1;
                    } else {
                        report.skipped += 1;
                    }
                }
                Ok(Rewrap::AlreadyActive) => report.skipped += 1,
                Err(e) if matches!(e.kind(), ErrorKind::Decrypt | ErrorKind::Keyring) => {
                    tracing::warn!(
                        connection = %id,
                        error = %e,
                        "key rotation could not re-wrap a data key"
                    );
                    report.failed.push(id);
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(
            rewrapped = report.rewrapped,
            skipped = report.skipped,
            failed = report.failed.len(),
            "key rotation batch done"
        );
    }
}

/// Checks that a KEK may be retired (removed from the keyring): it must not be the active key
/// and no stored row may name it.
///
/// # Errors
/// `Conflict` naming how many rows still use it, or that it is the active key; `Store` when the
/// store fails.
pub async fn check_retire(store: &dyn Store, keyring: &Keyring, id: &KekId) -> Result<()> {
    if id == keyring.active_id() {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("key {id} is the active key: make another key active before retiring it"),
        ));
    }
    let rows: u64 = store
        .kek_usage()
        .await?
        .iter()
        .filter(|u| &u.kek == id)
        .map(|u| u.rows)
        .sum();
    if rows > 0 {
        return Err(Error::new(
            ErrorKind::Conflict,
            format!("key {id} still wraps {rows} data keys: rotate before retiring it"),
        ));
    }
    Ok(())
}
