//! Key management over a store: the start-up check that the keyring holds and opens every key
//! the store uses (S5, S28) and the key checks it records, online rotation of data keys to the active KEK in resumable batches (S6), the key
//! status report, and the guard against retiring a key still in use.
//!
//! Rotation re-wraps data keys only; sealed values are untouched, because a connection's data
//! key itself does not change. Each row switches with one compare-and-swap
//! ([`AdminStore::replace_dek`](crate::store::AdminStore::replace_dek)), so a rotation killed at any point leaves every row wrapped by either
//! the old or the new key — both in the keyring, so every row still opens — and running it again
//! finishes the job. It must never hold the old key out of the keyring while a row names it.

use std::collections::BTreeSet;

use crate::crypto::{KekId, KeyCheck, Keyring, Rewrap};
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

/// Checks that the keyring opens everything the store uses (S5, S28): every KEK id that wraps a
/// row or has a recorded key check must be in the keyring, its key must open the id's check, and
/// one row's data key per id (the lowest id) must unwrap with it. Writes nothing.
///
/// # Errors
/// `Keyring` naming every missing id, or the id whose key is another than the store's, and
/// where the keyring came from ([`Keyring::source`]); `Store` when the store fails.
pub async fn check_store_keys(store: &dyn Store, keyring: &Keyring) -> Result<()> {
    let usage = store.kek_usage().await?;
    let checks = store.key_checks().await?;
    let missing: BTreeSet<&KekId> = usage
        .iter()
        .map(|u| &u.kek)
        .chain(checks.iter().map(KeyCheck::kek_id))
        .filter(|id| !keyring.contains(id))
        .collect();
    if !missing.is_empty() {
        return Err(keyring.missing(&missing.into_iter().collect::<Vec<_>>()));
    }
    for check in &checks {
        keyring.verify_check(check)?;
    }
    for u in &usage {
        if let Some((id, wrapped)) = store.dek_sample(&u.kek).await? {
            keyring
                .unwrap_dek(id, &wrapped)
                .map_err(|_| keyring.wrong(&u.kek))?;
        }
    }
    Ok(())
}

/// Records the key check of the active key and of every key wrapping rows, where none is
/// recorded yet; call it only after [`check_store_keys`] passed, so what is recorded is the key
/// the store's rows already use (S28).
///
/// # Errors
/// `Store` when the store fails; `Internal` when the random generator fails.
pub async fn record_key_checks(store: &dyn Store, keyring: &Keyring) -> Result<()> {
    let recorded: BTreeSet<KekId> = store
        .key_checks()
        .await?
        .into_iter()
        .map(|c| c.kek_id().clone())
        .collect();
    let usage = store.kek_usage().await?;
    let wanted: BTreeSet<&KekId> = std::iter::once(keyring.active_id())
        .chain(usage.iter().map(|u| &u.kek))
        .filter(|id| keyring.contains(id) && !recorded.contains(*id))
        .collect();
    for id in wanted {
        if store.insert_key_check(&keyring.key_check(id)?).await? {
            tracing::info!(key = %id, "recorded the check of a master key");
        }
    }
    Ok(())
}

/// The KEK ids the store uses: those wrapping a row and those with a recorded key check,
/// sorted, each once. Empty for a store where a new key may be made (S28).
///
/// # Errors
/// `Store` when the store fails.
pub async fn store_key_ids(store: &dyn Store) -> Result<Vec<KekId>> {
    let mut ids: BTreeSet<KekId> = store
        .kek_usage()
        .await?
        .into_iter()
        .map(|u| u.kek)
        .collect();
    ids.extend(
        store
            .key_checks()
            .await?
            .into_iter()
            .map(|c| c.kek_id().clone()),
    );
    Ok(ids.into_iter().collect())
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
