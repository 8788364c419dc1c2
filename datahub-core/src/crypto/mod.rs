//! Envelope encryption of stored secrets, and the keyring of key-encryption keys.
//!
//! # What this module owns
//!
//! - [`Keyring`]: the key-encryption keys (KEKs), 32 bytes each, named by a [`KekId`]. The first
//!   key is *active*: it wraps every new or re-wrapped data key. Sources: the
//!   `DATAHUB_MASTER_KEY` environment variable ([`Keyring::from_env`]), a key file
//!   ([`Keyring::load_key_file`], created by [`Keyring::create_key_file`]), or text
//!   ([`Keyring::parse`]).
//! - [`DataKey`]: a connection's own random 256-bit data key (DEK), which seals the connection's
//!   secret fields into [`SealedValue`]s.
//! - [`WrappedDek`]: the stored form of a DEK, encrypted under a KEK.
//! - [`KeyCheck`]: the stored proof that a KEK id names one particular key.
//! - [`Rewrap`]: the outcome of [`Keyring::rewrap`], the rotation primitive the stores drive.
//!
//! Every encryption is AES-256-GCM (`aes-gcm` ≥ 0.10.3) with a fresh random 96-bit nonce from the
//! operating system's generator, and associated data that binds the ciphertext to where it is
//! stored, so a sealed value copied to another connection or field, or a wrapped DEK copied to
//! another connection, fails to open.
//!
//! # Keyring text
//!
//! `DATAHUB_MASTER_KEY` and key files share one syntax: entries separated by commas (key files
//! may also put one entry per line, and may have comment lines starting with `#`); whitespace
//! around entries is ignored, blank entries are skipped.
//!
//! - `BASE64`: the only entry, a key with the id `default` ([`KekId::DEFAULT`]).
//! - `ID:BASE64,ID:BASE64,...`: several keys, the active one first.
//!
//! An id is 1–32 characters of `A-Z a-z 0-9 _ -`. A key is standard base64 (padding optional) of
//! exactly 32 bytes. Duplicate ids, bad base64, wrong length or no key at all are
//! [`ErrorKind::Keyring`](crate::ErrorKind::Keyring) errors, whose messages name the entry by
//! position and never quote its text (a stray `:` can make part of a key look like an id); only
//! a duplicate id, in entries that otherwise parsed, is named.
//!
//! A key file must be a regular file with no permission bits for group or others (`chmod 600` or
//! `400`); anything else is refused.
//!
//! # Stored formats
//!
//! These are stored formats: changing one silently makes every stored credential unreadable.
//! A change needs a new format version byte, a reader for the old version, and new golden
//! envelopes in the known-answer tests (which pin version 1 byte for byte). Integers are big
//! endian. `id` is the 16 bytes of the [`ConnectionId`](crate::ConnectionId) (its UUID).
//!
//! ## Sealed value, version 1 ([`SealedValue`])
//!
//! | offset | length | content |
//! | --- | --- | --- |
//! | 0 | 1 | format version, `0x01` |
//! | 1 | 12 | nonce, random |
//! | 13 | n + 16 | AES-256-GCM ciphertext of the n plaintext bytes, then the 16-byte tag |
//!
//! Key: the connection's DEK. Associated data:
//!
//! ```text
//! "datahub-connections/sealed-value"   32 ASCII bytes, the domain label
//! 0x01                                 format version (so the version byte is authenticated)
//! id                                   16 bytes
//! len(field)                           u16, big endian
//! field                                UTF-8 bytes of the field name (at most 65,535)
//! ```
//!
//! The ciphertext runs to the end of the value, so a value is at least 29 bytes long; a truncated
//! or extended value changes the ciphertext and fails the tag check.
//!
//! ## Wrapped DEK, version 1 ([`WrappedDek`])
//!
//! | offset | length | content |
//! | --- | --- | --- |
//! | 0 | 1 | format version, `0x01` |
//! | 1 | 1 | L, length of the KEK id, 1–32 |
//! | 2 | L | KEK id, ASCII `A-Z a-z 0-9 _ -` |
//! | 2 + L | 12 | nonce, random |
//! | 14 + L | 48 | AES-256-GCM ciphertext of the 32-byte DEK, then the 16-byte tag |
//!
//! Exactly 62 + L bytes; anything shorter or longer is refused. Key: the KEK named by the id.
//! Associated data:
//!
//! ```text
//! "datahub-connections/wrapped-dek"    31 ASCII bytes, the domain label
//! 0x01                                 format version
//! id                                   16 bytes, the connection the DEK belongs to
//! L                                    1 byte
//! KEK id                               L ASCII bytes
//! ```
//!
//! ## Key check, version 1 ([`KeyCheck`])
//!
//! | offset | length | content |
//! | --- | --- | --- |
//! | 0 | 1 | format version, `0x01` |
//! | 1 | 12 | nonce, random |
//! | 13 | 16 | AES-256-GCM tag over an empty plaintext |
//!
//! Exactly 29 bytes, stored beside the KEK id it checks. Key: the KEK. Associated data:
//!
//! ```text
//! "datahub-connections/key-check"      29 ASCII bytes, the domain label
//! 0x01                                 format version
//! L                                    1 byte
//! KEK id                               L ASCII bytes
//! ```
//!
//! It proves that a KEK id names one particular key: a store records the check of every KEK it
//! uses, and refuses a keyring whose key under that id does not open it (SECURITY.md S28).
//!
//! # What it must never do
//!
//! - Return stored bytes as plaintext: the only way to plaintext is [`DataKey::open`], which
//!   yields bytes only after the tag has verified.
//! - Tell why a value failed to open: wrong key, wrong connection or field, tampered or malformed
//!   bytes are one opaque [`ErrorKind::Decrypt`](crate::ErrorKind::Decrypt) error.
//! - Show key or plaintext bytes: no `Display`, no `Serialize`, `Debug` shows ids and lengths
//!   only; errors never quote key text; intermediate buffers are zeroized.
//! - Panic on any input: the parsers are fuzzed with millions of arbitrary inputs.
//! - Reuse a nonce or a DEK: both come fresh from the operating system's generator each time.

mod check;
mod envelope;
mod format;
mod keyring;

#[cfg(test)]
mod tests;

pub use check::KeyCheck;
pub use envelope::{DataKey, SealedValue, WrappedDek};
pub use keyring::{KekId, Keyring, MASTER_KEY_ENV, Rewrap, read_key_file};
