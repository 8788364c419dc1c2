//! The keyring: key-encryption keys from the environment, a key file or text (syntax in the
//! parent module's docs).

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};
use zeroize::Zeroizing;

use super::check::{KeyCheck, check_with, verify_with};
use super::envelope::{DataKey, WrappedDek, fill_random, random_nonce, unwrap_with, wrap_with};
use super::format::{KEK_ID_MAX_LEN, KEY_LEN, Key};
use crate::{ConnectionId, Error, ErrorKind, Result};

/// The environment variable [`Keyring::from_env`] reads: `DATAHUB_MASTER_KEY`.
pub const MASTER_KEY_ENV: &str = "DATAHUB_MASTER_KEY";

/// Longest key file accepted, in bytes (a key file holds a few short lines).
const KEY_FILE_MAX_LEN: u64 = 64 * 1024;

/// Standard base64, padding optional (`openssl rand -base64 32` and unpadded forms both work).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn keyring_error(message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::new(ErrorKind::Keyring, message)
}

/// The name of a key-encryption key: 1–32 characters of `A-Z a-z 0-9 _ -`.
///
/// Ids are not secret: every wrapped data key carries its KEK's id in clear, and errors name
/// them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KekId(String);

impl KekId {
    /// The id of a key given without one (a bare `BASE64` keyring): `default`.
    pub const DEFAULT: &'static str = "default";

    /// Validates an id.
    ///
    /// # Errors
    ///
    /// `Keyring` when the id is empty, longer than 32 characters, or has a character outside
    /// `A-Z a-z 0-9 _ -` (the message does not repeat the id).
    pub fn new(id: &str) -> Result<Self> {
        let valid = !id.is_empty()
            && id.len() <= KEK_ID_MAX_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(keyring_error(
                "a key id must be 1-32 characters of A-Z, a-z, 0-9, '_' or '-'",
            ))
        }
    }

    /// The id `default`, given to a key written without an id.
    pub fn default_id() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// A fresh id for a new key: `k-`, the UTC date, `-` and 8 random hex digits (e.g.
    /// `k-20261127-3f9a1c2b`), so keys made by different installations or on different days
    /// never share an id (S28).
    ///
    /// # Errors
    /// `Internal` when the operating system's random generator fails.
    pub fn generate() -> Result<Self> {
        let mut random = [0u8; 4];
        fill_random(&mut random)?;
        let today = time::OffsetDateTime::now_utc().date();
        Ok(Self(format!(
            "k-{:04}{:02}{:02}-{:08x}",
            today.year(),
            u8::from(today.month()),
            today.day(),
            u32::from_be_bytes(random)
        )))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KekId {
    type Err = Error;

    /// Same as [`KekId::new`].
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl AsRef<str> for KekId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekId({})", self.0)
    }
}

/// One key-encryption key.
struct Kek {
    id: KekId,
    key: SecretBox<Key>,
}

/// What [`Keyring::rewrap`] did with one wrapped data key.
#[derive(Debug)]
#[must_use]
pub enum Rewrap {
    /// The data key was already wrapped by the active KEK; nothing to store.
    AlreadyActive,
    /// The data key, wrapped anew by the active KEK: store it in place of the old one.
    Rewrapped(WrappedDek),
}

/// The key-encryption keys (KEKs): the first is active and wraps every new data key; the others
/// still unwrap data keys wrapped before a rotation.
///
/// Holds at least one key; ids are unique. Key bytes are zeroized on drop and never shown:
/// `Debug` lists the ids only.
pub struct Keyring {
    active: Kek,
    older: Vec<Kek>,
    /// Where the keys came from, for messages (never key text).
    source: String,
}

impl Keyring {
    /// Parses keyring text: one bare base64 key (id `default`), or `ID:BASE64` entries separated
    /// by commas or newlines, the active one first. Whitespace around entries is ignored.
    ///
    /// # Errors
    ///
    /// `Keyring` when the text holds no key, an id is malformed or repeated, a key is not base64
    /// or not 32 bytes, or a key without an id is not the only one. Messages name the entry by
    /// its position (and a duplicate id), never quote its text.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_entries(text.split([',', '\n']))
    }

    /// Reads the keyring from the `DATAHUB_MASTER_KEY` environment variable (syntax of
    /// [`Keyring::parse`]).
    ///
    /// # Errors
    ///
    /// `Keyring` when the variable is unset or not UTF-8, and every error of
    /// [`Keyring::parse`].
    pub fn from_env() -> Result<Self> {
        let Some(value) = std::env::var_os(MASTER_KEY_ENV) else {
            return Err(keyring_error(
                "DATAHUB_MASTER_KEY is not set: set it to a base64 key of 32 bytes, or to ID:BASE64 entries separated by commas",
            ));
        };
        let bytes = Zeroizing::new(value.into_encoded_bytes());
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| keyring_error("DATAHUB_MASTER_KEY is not valid UTF-8"))?;
        Ok(Self::parse(text)?.with_source(MASTER_KEY_ENV.to_owned()))
    }

    /// Reads the keyring from a key file: the syntax of [`Keyring::parse`], one entry per line
    /// or comma separated; lines starting with `#` are comments.
    ///
    /// # Errors
    ///
    /// Those of [`read_key_file`], and every error of [`Keyring::parse`].
    pub fn load_key_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display();
        let text = read_key_file(path)?;
        Self::parse_entries(
            text.lines()
                .filter(|line| !line.trim_start().starts_with('#'))
                .flat_map(|line| line.split(',')),
        )
        .map_err(|e| keyring_error(format!("the key file {shown}: {}", e.message())))
        .map(|keyring| keyring.with_source(format!("the key file {shown}")))
    }

    /// Creates a key file holding one fresh random key with a fresh id ([`KekId::generate`]),
    /// readable and writable by the owner only (mode 0600), flushed to disk; returns the keyring
    /// it holds.
    ///
    /// Losing the file loses every credential stored under it: the caller should say so loudly.
    ///
    /// # Errors
    ///
    /// `Io` when the file already exists (it is never overwritten) or cannot be created or
    /// written; `Internal` when the operating system's random generator fails.
    pub fn create_key_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display();
        let mut key = SecretBox::new(Box::new([0u8; KEY_LEN]));
        fill_random(key.expose_secret_mut())?;
        let id = KekId::generate()?;
        const HEADER: &str = "# DataHub Connections master key. Keep this file private (mode 0600) and backed up:\n\
             # losing it loses every stored credential. Format: ID:BASE64 entries, active first.\n";
        // Room for everything up front: a reallocation would leave an unzeroized copy behind.
        let mut contents = Zeroizing::new(String::with_capacity(HEADER.len() + 128));
        contents.push_str(HEADER);
        contents.push_str(id.as_str());
        contents.push(':');
        BASE64.encode_string(key.expose_secret(), &mut contents);
        contents.push('\n');

        let mut file = open_new_private(path).map_err(|e| {
            let message = if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!("the key file {shown} already exists: refusing to overwrite it")
            } else {
                format!("could not create the key file {shown}")
            };
            Error::new(ErrorKind::Io, message).with_source(e)
        })?;
        let written = file
            .write_all(contents.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            drop(file);
            // Best effort: leave no half-written key file behind.
            let _ = std::fs::remove_file(path);
            return Err(Error::new(
                ErrorKind::Io,
                format!("could not write the key file {shown}"),
            )
            .with_source(e));
        }
        sync_parent_dir(path);
        Ok(Self {
            active: Kek { id, key },
            older: Vec::new(),
            source: format!("the key file {shown}"),
        })
    }

    fn parse_entries<'a>(entries: impl Iterator<Item = &'a str>) -> Result<Self> {
        let entries: Vec<&str> = entries.map(str::trim).filter(|e| !e.is_empty()).collect();
        if entries.is_empty() {
            return Err(keyring_error(
                "the keyring is empty: expected a base64 key of 32 bytes, or ID:BASE64 entries separated by commas",
            ));
        }
        let mut keys: Vec<Kek> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let n = index + 1;
            let (id, encoded) = match entry.split_once(':') {
                Some((id, encoded)) => {
                    let id = KekId::new(id.trim()).map_err(|_| {
                        keyring_error(format!(
                            "key {n}: the id must be 1-32 characters of A-Z, a-z, 0-9, '_' or '-'"
                        ))
                    })?;
                    (id, encoded.trim())
                }
                None if entries.len() == 1 => (KekId::default_id(), *entry),
                None => {
                    return Err(keyring_error(format!(
                        "key {n} has no id: with several keys, write each as ID:BASE64"
                    )));
                }
            };
            // Errors name the entry by position only: text that failed to parse may be key text
            // (e.g. a stray `:` inside a key makes its first part look like an id). An id is
            // named only once its entry parsed completely, i.e. for a duplicate.
            let key = decode_key(encoded)
                .map_err(|problem| keyring_error(format!("key {n}: {problem}")))?;
            if keys.iter().any(|k| k.id == id) {
                return Err(keyring_error(format!("key {n}: duplicate key id {id}")));
            }
            keys.push(Kek { id, key });
        }
        let mut keys = keys.into_iter();
        let active = keys
            .next()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "the keyring holds no key"))?;
        Ok(Self {
            active,
            older: keys.collect(),
            source: "the keyring text".to_owned(),
        })
    }

    /// The same keyring, described as coming from `source` in messages (e.g. `the key file
    /// /etc/datahub/master.key`).
    pub fn with_source(mut self, source: String) -> Self {
        self.source = source;
        self
    }

    /// Where the keys came from, as messages name it: `DATAHUB_MASTER_KEY`, `the key file
    /// PATH`, or `the keyring text`.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn keys(&self) -> impl Iterator<Item = &Kek> + '_ {
        std::iter::once(&self.active).chain(&self.older)
    }

    fn find(&self, id: &KekId) -> Option<&Kek> {
        self.keys().find(|k| &k.id == id)
    }

    /// The id of the active key, which wraps every new or re-wrapped data key.
    pub fn active_id(&self) -> &KekId {
        &self.active.id
    }

    /// The ids of all keys, the active one first.
    pub fn ids(&self) -> impl Iterator<Item = &KekId> + '_ {
        self.keys().map(|k| &k.id)
    }

    /// Whether the keyring holds a key with this id.
    pub fn contains(&self, id: &KekId) -> bool {
        self.find(id).is_some()
    }

    /// Checks that the keyring holds every id in `ids` (e.g. every KEK id named by a store's
    /// rows); a store refuses to open otherwise.
    ///
    /// # Errors
    ///
    /// `Keyring`, listing exactly the missing ids (sorted, each once).
    pub fn require_ids<I>(&self, ids: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: Borrow<KekId>,
    {
        let missing: BTreeSet<KekId> = ids
            .into_iter()
            .filter(|id| !self.contains(id.borrow()))
            .map(|id| id.borrow().clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let list: Vec<&str> = missing.iter().map(KekId::as_str).collect();
        Err(keyring_error(format!(
            "the keyring lacks key ids that stored data names: {}",
            list.join(", ")
        )))
    }

    /// Makes the key check of the key `id` (a fresh random nonce), for the store to record.
    ///
    /// # Errors
    /// `Keyring` when the keyring lacks `id`; `Internal` when the random generator fails.
    pub fn key_check(&self, id: &KekId) -> Result<KeyCheck> {
        let kek = self.find(id).ok_or_else(|| {
            keyring_error(format!("{} holds no key with the id {id}", self.source))
        })?;
        check_with(kek.key.expose_secret(), id, &random_nonce()?)
    }

    /// Checks that the keyring's key of the check's id is the key that made it (S28).
    ///
    /// # Errors
    /// `Keyring` naming the id and [`source`](Self::source) when the keyring lacks the id, or
    /// holds another key under it.
    pub fn verify_check(&self, check: &KeyCheck) -> Result<()> {
        let id = check.kek_id();
        let kek = self.find(id).ok_or_else(|| self.missing(&[id]))?;
        verify_with(kek.key.expose_secret(), check).map_err(|_| self.wrong(id))
    }

    /// The error for key ids the store uses that the keyring lacks.
    pub(crate) fn missing(&self, ids: &[&KekId]) -> Error {
        let list: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let noun = if list.len() == 1 { "id" } else { "ids" };
        keyring_error(format!(
            "this store's data is sealed under the key {noun} {}, which {} does not hold: \
             restore the key file (or DATAHUB_MASTER_KEY) that holds it; a new key is made only \
             for an empty store",
            list.join(", "),
            self.source
        ))
    }

    /// The error for a key id whose key in the keyring is not the one the store used.
    pub(crate) fn wrong(&self, id: &KekId) -> Error {
        keyring_error(format!(
            "the key with the id {id} in {} is not the key that sealed this store's data \
             (another installation's, or a replacement of a lost one): restore the right key",
            self.source
        ))
    }

    /// Makes a fresh random data key for the connection `id`, and wraps it under the active key.
    ///
    /// Store the [`WrappedDek`] with the connection; use the [`DataKey`] to seal its secrets.
    ///
    /// # Errors
    ///
    /// `Internal` when the operating system's random generator fails.
    pub fn new_dek(&self, id: ConnectionId) -> Result<(DataKey, WrappedDek)> {
        let dek = DataKey::generate()?;
        let wrapped = self.wrap_dek(id, &dek)?;
        Ok((dek, wrapped))
    }

    /// Wraps `dek` for the connection `id` under the active key, with a fresh random nonce.
    pub(crate) fn wrap_dek(&self, id: ConnectionId, dek: &DataKey) -> Result<WrappedDek> {
        let nonce = random_nonce()?;
        wrap_with(
            self.active.key.expose_secret(),
            &self.active.id,
            &nonce,
            id,
            dek,
        )
    }

    /// Unwraps the data key of the connection `id`.
    ///
    /// # Errors
    ///
    /// `Keyring` naming the KEK id when the keyring lacks it; the opaque `Decrypt` error when the
    /// wrapped key does not open (another connection's, another key under the same id, or
    /// altered bytes).
    pub fn unwrap_dek(&self, id: ConnectionId, wrapped: &WrappedDek) -> Result<DataKey> {
        let kek = self.find(wrapped.kek_id()).ok_or_else(|| {
            keyring_error(format!(
                "the keyring lacks the key id {} that the data key names",
                wrapped.kek_id()
            ))
        })?;
        unwrap_with(kek.key.expose_secret(), id, wrapped)
    }

    /// Re-wraps the data key of the connection `id` under the active key: the rotation primitive.
    ///
    /// The data key itself is unchanged, so the connection's sealed values still open. The
    /// wrapped key is always unwrapped first, so a row that would not open is reported as an
    /// error, never counted as done.
    ///
    /// # Errors
    ///
    /// Those of [`Keyring::unwrap_dek`]; `Internal` when the random generator fails.
    pub fn rewrap(&self, id: ConnectionId, wrapped: &WrappedDek) -> Result<Rewrap> {
        let dek = self.unwrap_dek(id, wrapped)?;
        if wrapped.kek_id() == self.active_id() {
            return Ok(Rewrap::AlreadyActive);
        }
        Ok(Rewrap::Rewrapped(self.wrap_dek(id, &dek)?))
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.ids().map(KekId::as_str).collect();
        f.debug_struct("Keyring")
            .field("active", &self.active_id().as_str())
            .field("ids", &ids)
            .finish()
    }
}

/// Reads a key file's text (comments included, for tools that rewrite it) after the checks every
/// load makes, into a zeroized buffer reserved up front from the file's size, so no copy of key
/// text is left behind by a growing buffer.
///
/// # Errors
///
/// `Keyring` when the path is not a regular file, when group or others have any permission on
/// it (it must be mode 0600 or 0400), when it is larger than 64 KiB or not UTF-8; `Io` when it
/// cannot be opened or read.
pub fn read_key_file(path: impl AsRef<Path>) -> Result<Zeroizing<String>> {
    let path = path.as_ref();
    let shown = path.display();
    let file = File::open(path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("could not open the key file {shown}"),
        )
        .with_source(e)
    })?;
    // The checks use the opened file, so the file can't be swapped between check and read.
    let meta = file.metadata().map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("could not inspect the key file {shown}"),
        )
        .with_source(e)
    })?;
    if !meta.is_file() {
        return Err(keyring_error(format!(
            "the key file {shown} is not a regular file"
        )));
    }
    check_private_mode(&meta, path)?;
    let mut bytes = read_private(file, meta.len()).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("could not read the key file {shown}"),
        )
        .with_source(e)
    })?;
    if bytes.len() as u64 > KEY_FILE_MAX_LEN {
        return Err(keyring_error(format!(
            "the key file {shown} is larger than 64 KiB"
        )));
    }
    // Moved, not copied: the text keeps the buffer reserved above.
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err(keyring_error(format!(
                "the key file {shown} is not valid UTF-8"
            )))
        }
    }
}

/// Reads a whole key file into a zeroized buffer reserved up front from its size (`len`, plus
/// one byte to see the end), so a growing buffer never leaves an unzeroized copy behind; reads
/// at most `KEY_FILE_MAX_LEN + 1` bytes.
fn read_private(file: File, len: u64) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let room = len.min(KEY_FILE_MAX_LEN) + 1;
    let mut bytes = Zeroizing::new(Vec::with_capacity(usize::try_from(room).unwrap_or(0)));
    let mut limited = file.take(room);
    let mut chunk = Zeroizing::new([0u8; 512]);
    loop {
        let n = limited.read(chunk.as_mut_slice())?;
        if n == 0 {
            return Ok(bytes);
        }
        // Never past the reserved room: a file that grew since it was measured is cut, and
        // then refused as too long or unparseable.
        let fits = (bytes.capacity() - bytes.len()).min(n);
        bytes.extend_from_slice(&chunk[..fits]);
        if fits < n {
            return Ok(bytes);
        }
    }
}

/// Decodes one base64 key of exactly 32 bytes; the error says what was wrong, never the text.
fn decode_key(encoded: &str) -> Result<SecretBox<Key>, &'static str> {
    const WRONG_LENGTH: &str = "the key must be base64 of exactly 32 bytes";
    // Decoding goes into a zeroized buffer with room to spare, so a too-long key is detected
    // without the decoder allocating copies of it.
    let mut buf = Zeroizing::new([0u8; 2 * KEY_LEN]);
    match BASE64.decode_slice(encoded.as_bytes(), buf.as_mut_slice()) {
        Ok(KEY_LEN) => Ok(SecretBox::init_with_mut(|k: &mut Key| {
            k.copy_from_slice(&buf[..KEY_LEN]);
        })),
        Ok(_) | Err(base64::DecodeSliceError::OutputSliceTooSmall) => Err(WRONG_LENGTH),
        Err(base64::DecodeSliceError::DecodeError(_)) => Err("the key is not valid base64"),
    }
}

/// Opens a new file (never an existing one) with mode 0600.
fn open_new_private(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Flushes the directory entry of a new file to disk (best effort).
fn sync_parent_dir(path: &Path) {
    #[cfg(unix)]
    if let Some(parent) = path.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Refuses a key file on which group or others have any permission.
#[cfg(unix)]
fn check_private_mode(meta: &std::fs::Metadata, path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(keyring_error(format!(
            "the key file {} has mode {mode:04o}, open to group or others: refusing to use it (run chmod 600 on it)",
            path.display()
        )));
    }
    Ok(())
}

/// Key files are only supported where their permissions can be checked.
#[cfg(not(unix))]
fn check_private_mode(_meta: &std::fs::Metadata, path: &Path) -> Result<()> {
    Err(keyring_error(format!(
        "the key file {}: key files are supported on Unix only; use DATAHUB_MASTER_KEY",
        path.display()
    )))
}
