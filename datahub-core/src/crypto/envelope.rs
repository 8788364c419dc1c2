//! Data keys, sealed values and wrapped data keys (formats in the parent module's docs).

use std::fmt;

use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};
use zeroize::Zeroize;

use super::format::{
    FORMAT_V1, KEK_ID_MAX_LEN, KEY_LEN, Key, NONCE_LEN, Nonce, SEALED_CT_AT, SEALED_MIN_LEN,
    SEALED_NONCE_AT, TAG_LEN, aead_open, aead_seal_in_place, array_at, sealed_ad, wrapped_ad,
    wrapped_len,
};
use super::keyring::KekId;
use crate::secret::SecretBytes;
use crate::{ConnectionId, Error, ErrorKind, Result};

/// Fills `buf` from the operating system's random generator.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| {
        Error::new(
            ErrorKind::Internal,
            format!("the operating system's random generator failed: {e}"),
        )
    })
}

/// A fresh random 96-bit nonce.
pub(crate) fn random_nonce() -> Result<Nonce> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    Ok(nonce)
}

/// A connection's 256-bit data key (DEK): it seals and opens that connection's secret fields.
///
/// Made by [`Keyring::new_dek`](super::Keyring::new_dek) (fresh from the operating system's
/// generator) or [`Keyring::unwrap_dek`](super::Keyring::unwrap_dek). The key bytes are zeroized
/// on drop and never shown: `Debug` prints `DataKey(<redacted>)`, and there is no way to read
/// them out of the crate.
pub struct DataKey(SecretBox<Key>);

impl DataKey {
    /// A new random data key.
    pub(crate) fn generate() -> Result<Self> {
        let mut key = SecretBox::new(Box::new([0u8; KEY_LEN]));
        fill_random(key.expose_secret_mut())?;
        Ok(Self(key))
    }

    /// A data key with the given bytes (deterministic twin for tests and unwrapping).
    pub(crate) fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        Self(SecretBox::init_with_mut(|k: &mut Key| {
            k.copy_from_slice(bytes)
        }))
    }

    /// The key bytes, for this module's primitives only.
    pub(crate) fn expose(&self) -> &Key {
        self.0.expose_secret()
    }

    /// Encrypts `plaintext` as the value of `field` of the connection `id`, with a fresh random
    /// nonce.
    ///
    /// The result opens only with this key, the same `id` and the same `field`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` on `field` when the field name is longer than 65,535 bytes; `Internal` when
    /// the operating system's random generator fails.
    pub fn seal(&self, id: ConnectionId, field: &str, plaintext: &[u8]) -> Result<SealedValue> {
        let nonce = random_nonce()?;
        seal_with(self.expose(), &nonce, id, field, plaintext)
    }

    /// Decrypts a value sealed by [`DataKey::seal`] for the same connection `id` and `field`.
    ///
    /// # Errors
    ///
    /// The one opaque `Decrypt` error when the value does not open: another key, another
    /// connection or field, or altered bytes. No plaintext is yielded in that case.
    pub fn open(&self, id: ConnectionId, field: &str, sealed: &SealedValue) -> Result<SecretBytes> {
        let ad = sealed_ad(sealed.version(), id, field)?;
        let mut plaintext = aead_open(
            self.expose(),
            &sealed.nonce(),
            &ad,
            sealed.ciphertext_and_tag(),
        )?;
        // The buffer's capacity equals its length, so `SecretBytes` takes it without copying.
        Ok(SecretBytes::new(std::mem::take(&mut *plaintext)))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Deterministic twin of [`DataKey::seal`]: seals with the given key and nonce.
///
/// For known-answer tests only; production code must draw the nonce at random.
pub(crate) fn seal_with(
    key: &Key,
    nonce: &Nonce,
    id: ConnectionId,
    field: &str,
    plaintext: &[u8],
) -> Result<SealedValue> {
    let ad = sealed_ad(FORMAT_V1, id, field)?;
    let mut bytes = Vec::with_capacity(SEALED_MIN_LEN + plaintext.len());
    bytes.push(FORMAT_V1);
    bytes.extend_from_slice(nonce);
    bytes.extend_from_slice(plaintext);
    match aead_seal_in_place(key, nonce, &ad, &mut bytes[SEALED_CT_AT..]) {
        Ok(tag) => {
            bytes.extend_from_slice(&tag);
            Ok(SealedValue { bytes })
        }
        Err(e) => {
            bytes.zeroize();
            Err(e)
        }
    }
}

/// A secret field encrypted under a connection's data key: what a store keeps.
///
/// Format version 1 (see the module docs): version byte, 12-byte nonce, ciphertext and 16-byte
/// tag. `Debug` shows the version and the length only.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedValue {
    /// The serialized form; always at least `SEALED_MIN_LEN` bytes with a known version.
    bytes: Vec<u8>,
}

impl SealedValue {
    /// Reads a sealed value from its stored bytes.
    ///
    /// Checks the structure only (length and version); authenticity is checked by
    /// [`DataKey::open`]. Never panics, whatever the input.
    ///
    /// # Errors
    ///
    /// The opaque `Decrypt` error when the bytes are shorter than 29 bytes or carry an unknown
    /// format version.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        match bytes.first() {
            Some(&FORMAT_V1) if bytes.len() >= SEALED_MIN_LEN => Ok(Self {
                bytes: bytes.to_vec(),
            }),
            _ => Err(Error::decrypt()),
        }
    }

    /// The stored form, as documented in the module docs.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The stored form, copied.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// The stored form, moved out.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The format version byte (1 for everything this release writes).
    pub fn version(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(0)
    }

    /// The nonce.
    fn nonce(&self) -> Nonce {
        array_at(&self.bytes, SEALED_NONCE_AT).unwrap_or([0; NONCE_LEN])
    }

    /// The ciphertext followed by the tag.
    fn ciphertext_and_tag(&self) -> &[u8] {
        self.bytes.get(SEALED_CT_AT..).unwrap_or_default()
    }
}

impl fmt::Debug for SealedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedValue")
            .field("version", &self.version())
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A connection's data key encrypted under a key-encryption key (KEK) of the keyring: what a
/// store keeps next to the sealed values.
///
/// Format version 1 (see the module docs): version byte, length-prefixed KEK id, 12-byte nonce,
/// 48 bytes of ciphertext and tag. `Debug` shows the version and the KEK id only.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDek {
    kek_id: KekId,
    nonce: Nonce,
    ciphertext_and_tag: [u8; KEY_LEN + TAG_LEN],
}

impl WrappedDek {
    /// Reads a wrapped data key from its stored bytes.
    ///
    /// Checks the structure only (version, id, exact length); authenticity is checked when the
    /// keyring unwraps it. Never panics, whatever the input.
    ///
    /// # Errors
    ///
    /// The opaque `Decrypt` error when the version is unknown, the KEK id is malformed, or the
    /// bytes are truncated or followed by anything.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        Self::parse_inner(bytes).ok_or_else(Error::decrypt)
    }

    fn parse_inner(bytes: &[u8]) -> Option<Self> {
        let (&version, rest) = bytes.split_first()?;
        let (&id_len, rest) = rest.split_first()?;
        let id_len = usize::from(id_len);
        if version != FORMAT_V1
            || id_len == 0
            || id_len > KEK_ID_MAX_LEN
            || bytes.len() != wrapped_len(id_len)
        {
            return None;
        }
        let (id, rest) = rest.split_at_checked(id_len)?;
        let kek_id = KekId::new(std::str::from_utf8(id).ok()?).ok()?;
        let (nonce, ct) = rest.split_at_checked(NONCE_LEN)?;
        Some(Self {
            kek_id,
            nonce: nonce.try_into().ok()?,
            ciphertext_and_tag: ct.try_into().ok()?,
        })
    }

    /// The id of the key-encryption key this data key is wrapped under.
    pub fn kek_id(&self) -> &KekId {
        &self.kek_id
    }

    /// The format version byte (1 for everything this release writes).
    pub fn version(&self) -> u8 {
        FORMAT_V1
    }

    /// The stored form, as documented in the module docs.
    pub fn to_bytes(&self) -> Vec<u8> {
        let id = self.kek_id.as_str().as_bytes();
        let mut bytes = Vec::with_capacity(wrapped_len(id.len()));
        bytes.push(FORMAT_V1);
        // A valid id is at most 32 bytes, so the length always fits.
        bytes.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        bytes.extend_from_slice(id);
        bytes.extend_from_slice(&self.nonce);
        bytes.extend_from_slice(&self.ciphertext_and_tag);
        bytes
    }
}

impl fmt::Debug for WrappedDek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedDek")
            .field("version", &self.version())
            .field("kek_id", &self.kek_id.as_str())
            .finish()
    }
}

/// Deterministic twin of wrapping: wraps `dek` for the connection `id` under the KEK `kek`
/// named `kek_id`, with the given nonce.
///
/// For known-answer tests and for the keyring, which draws the nonce at random.
pub(crate) fn wrap_with(
    kek: &Key,
    kek_id: &KekId,
    nonce: &Nonce,
    id: ConnectionId,
    dek: &DataKey,
) -> Result<WrappedDek> {
    let ad = wrapped_ad(FORMAT_V1, id, kek_id);
    let mut ciphertext_and_tag = [0u8; KEY_LEN + TAG_LEN];
    let (ct, tag_out) = ciphertext_and_tag.split_at_mut(KEY_LEN);
    ct.copy_from_slice(dek.expose());
    match aead_seal_in_place(kek, nonce, &ad, ct) {
        Ok(tag) => {
            tag_out.copy_from_slice(&tag);
            Ok(WrappedDek {
                kek_id: kek_id.clone(),
                nonce: *nonce,
                ciphertext_and_tag,
            })
        }
        Err(e) => {
            ciphertext_and_tag.zeroize();
            Err(e)
        }
    }
}

/// Unwraps `wrapped` for the connection `id` with the KEK `kek` (the one its id names).
///
/// Errors: the opaque `Decrypt` error when it does not open.
pub(crate) fn unwrap_with(kek: &Key, id: ConnectionId, wrapped: &WrappedDek) -> Result<DataKey> {
    let ad = wrapped_ad(FORMAT_V1, id, &wrapped.kek_id);
    let dek = aead_open(kek, &wrapped.nonce, &ad, &wrapped.ciphertext_and_tag)?;
    let bytes: &[u8; KEY_LEN] = dek.as_slice().try_into().map_err(|_| Error::decrypt())?;
    Ok(DataKey::from_bytes(bytes))
}
