//! SCRAM keys remembered between authentications (RFC 5802, section 5.1).
//!
//! A SCRAM client spends nearly all of its work in PBKDF2: `SaltedPassword` is the password
//! hashed `i` times under the server's salt (4,096 HMAC-SHA-256 rounds by PostgreSQL's default,
//! a large part of a whole test's client CPU). The server sends the same salt and
//! count at every login until the role's password changes, so the `ClientKey` and `ServerKey`
//! derived from it are the same each time. RFC 5802 lets a client keep them for later
//! authentications to the same service; the monitor authenticates to every target once an
//! interval, so this cache saves that work on every check after the first.
//!
//! What is kept: for each (password, salt, iteration count), the two keys, only once a server
//! proved with its final signature that they are right, for at most [`MAX_AGE`], and at most
//! [`CAPACITY`] entries. The keys are as good as the password for logging in to a server that
//! uses that salt (and worthless anywhere else); they live in this process's memory only, beside
//! the keyring that opens every stored password anyway, and are wiped when they leave the cache.
//! The lookup tag is an HMAC of the password, salt and count under a key drawn at random for the
//! process, so the map holds no plain hash of a password. A hit changes nothing the server sees:
//! the proof sent is the one PBKDF2 would have given.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The most entries kept: far more targets than one process monitors (~100 bytes each).
pub(crate) const CAPACITY: usize = 16_384;

/// How long an entry is used before the keys are derived again: 1 h. A monitored connection
/// pays PBKDF2 once an hour instead of at every check, and keys of a connection deleted or
/// changed are gone within the hour.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(3600);

/// A SCRAM `ClientKey` and `ServerKey`, wiped when dropped.
#[derive(Clone)]
pub(crate) struct ScramKeys {
    pub(crate) client: Zeroizing<[u8; 32]>,
    pub(crate) server: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys(..)")
    }
}

/// Where a set of keys is filed: an HMAC of the password, salt and iteration count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Tag([u8; 32]);

struct Entry {
    keys: ScramKeys,
    at: Instant,
}

/// The process's SCRAM keys (see the module docs).
pub(crate) struct ScramCache {
    /// The HMAC key of the tags; `None` when the system's random source failed (then nothing is
    /// cached).
    secret: Option<Zeroizing<[u8; 32]>>,
    entries: Mutex<HashMap<Tag, Entry>>,
    capacity: usize,
    max_age: Duration,
}

impl std::fmt::Debug for ScramCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCache")
            .field("entries", &self.lock().len())
            .finish_non_exhaustive()
    }
}

static SHARED: LazyLock<ScramCache> = LazyLock::new(|| ScramCache::new(CAPACITY, MAX_AGE));

impl ScramCache {
    /// The one cache of the process, used by every test, check and pool.
    pub(crate) fn shared() -> &'static Self {
        &SHARED
    }

    /// An empty cache of at most `capacity` entries, each used for at most `max_age`.
    pub(crate) fn new(capacity: usize, max_age: Duration) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        let secret = getrandom::fill(secret.as_mut()).ok().map(|()| secret);
        Self {
            secret,
            entries: Mutex::new(HashMap::new()),
            capacity,
            max_age,
        }
    }

    /// The tag of `password` (as SCRAM hashes it), `salt` and `iterations`; `None` when this
    /// cache keeps nothing.
    pub(crate) fn tag(&self, password: &[u8], salt: &[u8], iterations: u32) -> Option<Tag> {
        let secret = self.secret.as_ref()?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_ref()).ok()?;
        // Lengths first, so no two different triples hash the same bytes.
        mac.update(&u64::try_from(password.len()).ok()?.to_be_bytes());
        mac.update(password);
        mac.update(&u64::try_from(salt.len()).ok()?.to_be_bytes());
        mac.update(salt);
        mac.update(&iterations.to_be_bytes());
        Some(Tag(mac.finalize().into_bytes().into()))
    }

    /// The keys filed under `tag`, unless they are older than the cache's `max_age`.
    pub(crate) fn get(&self, tag: &Tag) -> Option<ScramKeys> {
        let entries = self.lock();
        let entry = entries.get(tag)?;
        (entry.at.elapsed() < self.max_age).then(|| entry.keys.clone())
    }

    /// Files `keys` under `tag`. A full cache first drops its expired entries, then, if still
    /// full, an arbitrary one (`HashMap`'s order is random per process).
    pub(crate) fn put(&self, tag: Tag, keys: ScramKeys) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&tag) {
            let max_age = self.max_age;
            entries.retain(|_, e| e.at.elapsed() < max_age);
            if entries.len() >= self.capacity
                && let Some(victim) = entries.keys().next().copied()
            {
                entries.remove(&victim);
            }
        }
        entries.insert(
            tag,
            Entry {
                keys,
                at: Instant::now(),
            },
        );
    }

    /// How many entries are kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Tag, Entry>> {
        match self.entries.lock() {
            Ok(guard) => guard,
            // A panic while holding it cannot leave the map half-changed in a way that matters
            // to a cache: at worst an entry is missing.
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u8) -> ScramKeys {
        ScramKeys {
            client: Zeroizing::new([n; 32]),
            server: Zeroizing::new([n.wrapping_add(1); 32]),
        }
    }

    #[test]
    fn tags_tell_password_salt_and_count_apart() {
        let cache = ScramCache::new(8, MAX_AGE);
        let base = cache.tag(b"pencil", b"salt", 4096).unwrap();
        assert_eq!(cache.tag(b"pencil", b"salt", 4096), Some(base));
        for other in [
            cache.tag(b"pencil2", b"salt", 4096),
            cache.tag(b"pencil", b"salt2", 4096),
            cache.tag(b"pencil", b"salt", 4097),
            // The same bytes split differently between password and salt.
            cache.tag(b"pencils", b"alt", 4096),
        ] {
            assert_ne!(other, Some(base));
        }
        // Another process (another random key) files the same password elsewhere.
        let elsewhere = ScramCache::new(8, MAX_AGE);
        assert_ne!(elsewhere.tag(b"pencil", b"salt", 4096), Some(base));
    }

    #[test]
    fn keys_come_back_until_they_expire() {
        let cache = ScramCache::new(8, Duration::from_millis(50));
        let tag = cache.tag(b"pencil", b"salt", 4096).unwrap();
        assert!(cache.get(&tag).is_none());
        cache.put(tag, keys(1));
        let got = cache.get(&tag).unwrap();
        assert_eq!((*got.client, *got.server), ([1; 32], [2; 32]));
        std::thread::sleep(Duration::from_millis(80));
        assert!(cache.get(&tag).is_none(), "an expired entry is not used");
    }

    #[test]
    fn a_full_cache_stays_within_its_capacity() {
        let cache = ScramCache::new(4, MAX_AGE);
        let tags: Vec<Tag> = (0u32..10)
            .map(|i| cache.tag(b"pw", b"salt", 4096 + i).unwrap())
            .collect();
        for (i, tag) in tags.iter().enumerate() {
            cache.put(*tag, keys(u8::try_from(i).unwrap()));
            assert!(cache.len() <= 4);
        }
        // The last one filed is always there.
        assert_eq!(*cache.get(&tags[9]).unwrap().client, [9; 32]);
        let nothing = ScramCache::new(0, MAX_AGE);
        nothing.put(tags[0], keys(0));
        assert_eq!(nothing.len(), 0);
    }

    #[test]
    fn debug_shows_no_key() {
        let cache = ScramCache::new(4, MAX_AGE);
        let tag = cache.tag(b"pw", b"salt", 4096).unwrap();
        cache.put(tag, keys(0xAB));
        let shown = format!("{cache:?} {:?}", cache.get(&tag).unwrap());
        assert!(!shown.contains("171"), "{shown}");
        assert!(!shown.to_lowercase().contains("ab, "), "{shown}");
        assert_eq!(shown, "ScramCache { entries: 1, .. } ScramKeys(..)");
    }
}
