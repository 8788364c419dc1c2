//! Key checks: proof, kept in the store, that a KEK id names one particular key (format in the
//! parent module's docs).
//!
//! A store records one check per KEK id it uses. At start the keyring must open every check, so
//! a lost key file replaced by a fresh one, or another installation's key under the same id, is
//! refused before anything is sealed under it (SECURITY.md S5, S28).

use std::fmt;

use zeroize::Zeroize;

use super::format::{
    CHECK_LEN, FORMAT_V1, Key, NONCE_LEN, Nonce, TAG_LEN, aead_open, aead_seal_in_place, array_at,
    check_ad,
};
use super::keyring::KekId;
use crate::{Error, Result};

/// The stored proof that a KEK id names one key: AES-256-GCM of nothing under that key, with
/// associated data binding the id. Not secret (it opens nothing); `Debug` shows the id only.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyCheck {
    kek_id: KekId,
    nonce: Nonce,
    tag: [u8; TAG_LEN],
}

impl KeyCheck {
    /// Reads the check of `kek_id` from its stored bytes.
    ///
    /// Checks the structure only (version and exact length); whether it belongs to a key is
    /// [`Keyring::verify_check`](super::Keyring::verify_check)'s job. Never panics.
    ///
    /// # Errors
    /// The opaque `Decrypt` error when the version is unknown or the length is not 29 bytes.
    pub fn parse(kek_id: KekId, bytes: &[u8]) -> Result<Self> {
        match bytes.first() {
            Some(&FORMAT_V1) if bytes.len() == CHECK_LEN => Ok(Self {
                kek_id,
                nonce: array_at(bytes, 1).ok_or_else(Error::decrypt)?,
                tag: array_at(bytes, 1 + NONCE_LEN).ok_or_else(Error::decrypt)?,
            }),
            _ => Err(Error::decrypt()),
        }
    }

    /// The KEK id this check is for.
    pub fn kek_id(&self) -> &KekId {
        &self.kek_id
    }

    /// The stored form (29 bytes: version, nonce, tag); the id is stored beside it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(CHECK_LEN);
        bytes.push(FORMAT_V1);
        bytes.extend_from_slice(&self.nonce);
        bytes.extend_from_slice(&self.tag);
        bytes
    }
}

impl fmt::Debug for KeyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCheck")
            .field("kek_id", &self.kek_id.as_str())
            .finish_non_exhaustive()
    }
}

/// Makes the check of the key `kek` named `kek_id` with the given nonce (the keyring draws it at
/// random; known-answer tests pass their own).
pub(crate) fn check_with(kek: &Key, kek_id: &KekId, nonce: &Nonce) -> Result<KeyCheck> {
    let ad = check_ad(FORMAT_V1, kek_id);
    let mut nothing = [0u8; 0];
    let tag = aead_seal_in_place(kek, nonce, &ad, &mut nothing)?;
    Ok(KeyCheck {
        kek_id: kek_id.clone(),
        nonce: *nonce,
        tag,
    })
}

/// Whether `check` was made with the key `kek`: the opaque `Decrypt` error when not.
pub(crate) fn verify_with(kek: &Key, check: &KeyCheck) -> Result<()> {
    let ad = check_ad(FORMAT_V1, &check.kek_id);
    let mut opened = aead_open(kek, &check.nonce, &ad, &check.tag)?;
    opened.zeroize();
    Ok(())
}
