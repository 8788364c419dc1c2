//! The byte layouts and associated data of the stored formats (documented in the parent module),
//! and the one AES-256-GCM primitive every seal and wrap goes through.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use zeroize::Zeroizing;

use super::keyring::KekId;
use crate::{ConnectionId, Error, Result};

/// The format version byte of both stored formats written by this release.
pub(crate) const FORMAT_V1: u8 = 0x01;
/// Length of an AES-GCM nonce (96 bits).
pub(crate) const NONCE_LEN: usize = 12;
/// Length of an AES-GCM tag.
pub(crate) const TAG_LEN: usize = 16;
/// Length of a KEK or a DEK (256 bits).
pub(crate) const KEY_LEN: usize = 32;
/// Longest KEK id, in bytes.
pub(crate) const KEK_ID_MAX_LEN: usize = 32;

/// Domain label that starts the associated data of a sealed value.
pub(crate) const SEALED_LABEL: &[u8; 32] = b"datahub-connections/sealed-value";
/// Domain label that starts the associated data of a wrapped DEK.
pub(crate) const WRAPPED_LABEL: &[u8; 31] = b"datahub-connections/wrapped-dek";

/// Domain label that starts the associated data of a key check.
pub(crate) const CHECK_LABEL: &[u8; 29] = b"datahub-connections/key-check";

/// Key check: stored length (version, nonce, tag).
pub(crate) const CHECK_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

/// Sealed value: offset of the nonce.
pub(crate) const SEALED_NONCE_AT: usize = 1;
/// Sealed value: offset of the ciphertext.
pub(crate) const SEALED_CT_AT: usize = SEALED_NONCE_AT + NONCE_LEN;
/// Sealed value: shortest valid length (empty plaintext).
pub(crate) const SEALED_MIN_LEN: usize = SEALED_CT_AT + TAG_LEN;

/// Wrapped DEK: total length for a KEK id of `id_len` bytes.
pub(crate) const fn wrapped_len(id_len: usize) -> usize {
    2 + id_len + NONCE_LEN + KEY_LEN + TAG_LEN
}

/// A 96-bit nonce.
pub(crate) type Nonce = [u8; NONCE_LEN];
/// A 256-bit key.
pub(crate) type Key = [u8; KEY_LEN];

/// The associated data of a sealed value of `id`'s `field`.
///
/// Errors: a field name longer than 65,535 bytes is `InvalidInput` on `field`.
pub(crate) fn sealed_ad(version: u8, id: ConnectionId, field: &str) -> Result<Vec<u8>> {
    let field_len = u16::try_from(field.len())
        .map_err(|_| Error::invalid("field", "field name must be at most 65535 bytes"))?;
    let mut ad = Vec::with_capacity(SEALED_LABEL.len() + 1 + 16 + 2 + field.len());
    ad.extend_from_slice(SEALED_LABEL);
    ad.push(version);
    ad.extend_from_slice(id.as_bytes());
    ad.extend_from_slice(&field_len.to_be_bytes());
    ad.extend_from_slice(field.as_bytes());
    Ok(ad)
}

/// The associated data of `id`'s DEK wrapped by the KEK `kek_id`.
pub(crate) fn wrapped_ad(version: u8, id: ConnectionId, kek_id: &KekId) -> Vec<u8> {
    let kek = kek_id.as_str().as_bytes();
    let mut ad = Vec::with_capacity(WRAPPED_LABEL.len() + 1 + 16 + 1 + kek.len());
    ad.extend_from_slice(WRAPPED_LABEL);
    ad.push(version);
    ad.extend_from_slice(id.as_bytes());
    // A valid id is at most 32 bytes, so the length always fits.
    ad.push(u8::try_from(kek.len()).unwrap_or(u8::MAX));
    ad.extend_from_slice(kek);
    ad
}

/// The associated data of the key check of the KEK `kek_id`.
pub(crate) fn check_ad(version: u8, kek_id: &KekId) -> Vec<u8> {
    let kek = kek_id.as_str().as_bytes();
    let mut ad = Vec::with_capacity(CHECK_LABEL.len() + 2 + kek.len());
    ad.extend_from_slice(CHECK_LABEL);
    ad.push(version);
    // A valid id is at most 32 bytes, so the length always fits.
    ad.push(u8::try_from(kek.len()).unwrap_or(u8::MAX));
    ad.extend_from_slice(kek);
    ad
}

/// Encrypts `buf` in place with AES-256-GCM and returns the tag.
///
/// Errors: `Internal` when the input exceeds AES-GCM's limits (about 64 GiB), which no caller
/// reaches.
pub(crate) fn aead_seal_in_place(
    key: &Key,
    nonce: &Nonce,
    ad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN]> {
    let cipher = Aes256Gcm::new(GenericArray::from_slice(key));
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(nonce), ad, buf)
        .map_err(|_| Error::new(crate::ErrorKind::Internal, "encryption failed"))?;
    Ok(tag.into())
}

/// Decrypts `ct_and_tag` (ciphertext then tag) into a new buffer whose capacity equals its
/// length, so moving it into a boxed slice never leaves a copy behind.
///
/// Yields bytes only when the tag verifies; on failure the buffer is zeroized and the one opaque
/// `Decrypt` error returned.
pub(crate) fn aead_open(
    key: &Key,
    nonce: &Nonce,
    ad: &[u8],
    ct_and_tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let Some(ct_len) = ct_and_tag.len().checked_sub(TAG_LEN) else {
        return Err(Error::decrypt());
    };
    let (ct, tag) = ct_and_tag.split_at(ct_len);
    let mut buf = Zeroizing::new(Vec::with_capacity(ct_len));
    buf.extend_from_slice(ct);
    let cipher = Aes256Gcm::new(GenericArray::from_slice(key));
    cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(nonce),
            ad,
            buf.as_mut_slice(),
            GenericArray::from_slice(tag),
        )
        .map_err(|_| Error::decrypt())?;
    Ok(buf)
}

/// Reads a fixed-size array at `at`, or `None` when the slice is too short.
pub(crate) fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes
        .get(at..at.checked_add(N)?)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
}
