//! Integration tests: envelope encryption and the keyring (SECURITY.md S1–S4, S7).
//!
//! Known-answer tests, golden envelopes and the 10^6-seal uniqueness test need the crate-private
//! deterministic twins, so they live in `src/crypto/tests.rs`.

use std::os::unix::fs::PermissionsExt;
use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use datahub_core::crypto::{KekId, Keyring, MASTER_KEY_ENV, Rewrap, SealedValue, WrappedDek};
use datahub_core::{ConnectionId, ErrorKind};
use proptest::prelude::*;
use uuid::Uuid;

/// A fresh random 32-byte key and its base64.
fn random_key() -> ([u8; 32], String) {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).unwrap();
    (key, STANDARD.encode(key))
}

/// A keyring with one random key named `id`, and its text.
fn keyring(id: &str) -> (Keyring, String) {
    let text = format!("{id}:{}", random_key().1);
    (Keyring::parse(&text).unwrap(), text)
}

fn kek(id: &str) -> KekId {
    KekId::new(id).unwrap()
}

/// A small, fast, seeded generator (SplitMix64) for the fuzz loops: reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.fill(&mut buf);
        buf
    }

    /// Mutates `bytes` in one of several ways: flip, overwrite, truncate, extend, insert, delete,
    /// splice random bytes.
    fn mutate(&mut self, bytes: &mut Vec<u8>) {
        let rounds = 1 + self.below(4);
        for _ in 0..rounds {
            let len = bytes.len();
            match self.below(7) {
                0 if len > 0 => {
                    let at = self.below(len);
                    bytes[at] ^= 1 << self.below(8);
                }
                1 if len > 0 => {
                    let at = self.below(len);
                    bytes[at] = self.next() as u8;
                }
                2 => bytes.truncate(self.below(len + 1)),
                3 => {
                    let n = 1 + self.below(16);
                    let extra = self.bytes(n);
                    bytes.extend_from_slice(&extra);
                }
                4 => {
                    let at = self.below(len + 1);
                    bytes.insert(at, self.next() as u8);
                }
                5 if len > 0 => {
                    bytes.remove(self.below(len));
                }
                _ => {
                    let at = self.below(len + 1);
                    let n = self.below(8);
                    let extra = self.bytes(n);
                    bytes.splice(at..at, extra);
                }
            }
        }
    }
}

static KEYRING: LazyLock<Keyring> = LazyLock::new(|| keyring("prop").0);

/// Plaintext sizes for S1: mostly small (what credentials are), often up to 4 KiB (PEM keys),
/// and a share up to the full 64 KiB, with both ends of the range always covered.
fn plaintext() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..=64),
        3 => proptest::collection::vec(any::<u8>(), 0..=4096),
        1 => proptest::collection::vec(any::<u8>(), 0..=65_536),
        1 => Just(Vec::new()),
        1 => Just(vec![0xa5; 65_536]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    /// S1: open(seal(x)) == x for 10,000 plaintexts of 0–64 KiB, arbitrary connections and field
    /// names, through the stored bytes of both the sealed value and the wrapped data key.
    #[test]
    fn s1_round_trip(
        x in plaintext(),
        id in any::<u128>(),
        field in "\\PC{0,24}",
    ) {
        let id = ConnectionId::from_uuid(Uuid::from_u128(id));
        let (dek, wrapped) = KEYRING.new_dek(id).unwrap();
        let sealed = dek.seal(id, &field, &x).unwrap();
        prop_assert_eq!(sealed.as_bytes().len(), 1 + 12 + x.len() + 16);

        let stored_value = SealedValue::parse(&sealed.to_bytes()).unwrap();
        let stored_dek = WrappedDek::parse(&wrapped.to_bytes()).unwrap();
        prop_assert_eq!(&stored_value, &sealed);
        prop_assert_eq!(&stored_dek, &wrapped);
        let dek = KEYRING.unwrap_dek(id, &stored_dek).unwrap();
        let opened = dek.open(id, &field, &stored_value).unwrap();
        prop_assert_eq!(opened.expose_secret(), &x[..]);
    }
}

/// S1: the same plaintext sealed twice gives different bytes (fresh nonce), both open.
#[test]
fn s1_sealing_twice_differs() {
    let id = ConnectionId::new();
    let (dek, _) = KEYRING.new_dek(id).unwrap();
    let a = dek.seal(id, "password", b"hunter2").unwrap();
    let b = dek.seal(id, "password", b"hunter2").unwrap();
    assert_ne!(a, b);
    assert_ne!(a.as_bytes()[1..13], b.as_bytes()[1..13]);
    for s in [a, b] {
        assert_eq!(
            dek.open(id, "password", &s).unwrap().expose_secret(),
            b"hunter2"
        );
    }
}

/// S2: a sealed value copied to another connection, another field, or another connection's
/// data key fails with the opaque decryption error; so does a wrapped DEK copied to another
/// connection.
#[test]
fn s2_no_row_or_field_swapping() {
    let (keyring, _) = keyring("k1");
    let a = ConnectionId::new();
    let b = ConnectionId::new();
    let (dek_a, wrapped_a) = keyring.new_dek(a).unwrap();
    let (dek_b, wrapped_b) = keyring.new_dek(b).unwrap();
    let sealed = dek_a.seal(a, "password", b"hunter2").unwrap();
    let sealed_ab = dek_a.seal(a, "ab", b"x").unwrap();
    assert!(dek_a.open(a, "password", &sealed).is_ok());

    let failures = [
        dek_a.open(b, "password", &sealed),
        dek_a.open(a, "tls.client_key_pem", &sealed),
        dek_a.open(a, "Password", &sealed),
        dek_a.open(a, "password ", &sealed),
        dek_a.open(a, "passwor", &sealed),
        dek_a.open(a, "", &sealed),
        dek_b.open(a, "password", &sealed),
        dek_b.open(b, "password", &sealed),
        dek_a.open(a, "a", &sealed_ab),
        dek_a.open(a, "abc", &sealed_ab),
    ];
    for result in failures {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decrypt);
    }

    // A wrapped DEK moved to another row fails to unwrap, and rewrap refuses it too.
    for (id, wrapped) in [(b, &wrapped_a), (a, &wrapped_b)] {
        assert_eq!(
            keyring.unwrap_dek(id, wrapped).unwrap_err().kind(),
            ErrorKind::Decrypt
        );
        assert_eq!(
            keyring.rewrap(id, wrapped).unwrap_err().kind(),
            ErrorKind::Decrypt
        );
    }

    // Relabelling a wrapped DEK with another KEK id the keyring holds fails too (the id is
    // bound by the associated data), even if both names had the same key.
    let (_, key_text) = random_key();
    let twins = Keyring::parse(&format!("k1:{key_text},k2:{key_text}")).unwrap();
    let (_, wrapped) = twins.new_dek(a).unwrap();
    let mut bytes = wrapped.to_bytes();
    assert_eq!(&bytes[2..4], b"k1");
    bytes[3] = b'2';
    let relabelled = WrappedDek::parse(&bytes).unwrap();
    assert_eq!(relabelled.kek_id(), &kek("k2"));
    assert_eq!(
        twins.unwrap_dek(a, &relabelled).unwrap_err().kind(),
        ErrorKind::Decrypt
    );
    assert!(twins.unwrap_dek(a, &wrapped).is_ok());
}

/// Checks that `bytes`, mutated by `edit`, never opens as a sealed value.
fn assert_sealed_never_opens(
    dek: &datahub_core::crypto::DataKey,
    id: ConnectionId,
    bytes: &[u8],
) -> usize {
    let mut opened = 0;
    match SealedValue::parse(bytes) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Decrypt),
        Ok(sealed) => match dek.open(id, "password", &sealed) {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Decrypt),
            Ok(_) => opened += 1,
        },
    }
    opened
}

/// S3: every one-bit flip of every byte, every other value of every byte, every truncation and
/// any appended byte of a sealed value fails to open with the opaque error, and yields no bytes.
#[test]
fn s3_tampered_sealed_value_never_opens() {
    let id = ConnectionId::new();
    let (dek, _) = KEYRING.new_dek(id).unwrap();
    let sealed = dek
        .seal(id, "password", b"a typical 24-byte secret")
        .unwrap();
    let good = sealed.to_bytes();
    assert_eq!(good.len(), 1 + 12 + 24 + 16);
    let mut tried = 0;
    let mut opened = 0;
    for at in 0..good.len() {
        for value in 0..=255u8 {
            if value == good[at] {
                continue;
            }
            let mut bad = good.clone();
            bad[at] = value;
            opened += assert_sealed_never_opens(&dek, id, &bad);
            tried += 1;
        }
    }
    assert_eq!(tried, good.len() * 255); // includes all 8 one-bit flips of each byte
    for len in 0..good.len() {
        opened += assert_sealed_never_opens(&dek, id, &good[..len]);
    }
    for extra in 0..=255u8 {
        let mut longer = good.clone();
        longer.push(extra);
        opened += assert_sealed_never_opens(&dek, id, &longer);
    }
    assert_eq!(opened, 0);
    // The untouched value still opens: the loop above really exercised `open`.
    assert!(dek.open(id, "password", &sealed).is_ok());
}

/// S3: every one-bit flip and every other value of every byte of a wrapped DEK, every
/// truncation and any appended byte fails to unwrap: the opaque error, or — only when the change
/// turned the KEK id into another valid id — a keyring error naming an id the keyring lacks.
#[test]
fn s3_tampered_wrapped_dek_never_unwraps() {
    let (keyring, _) = keyring("k1");
    let id = ConnectionId::new();
    let (_, wrapped) = keyring.new_dek(id).unwrap();
    let good = wrapped.to_bytes();
    assert_eq!(good.len(), 62 + 2);
    let check = |bytes: &[u8]| match WrappedDek::parse(bytes) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Decrypt),
        Ok(w) => {
            let err = keyring.unwrap_dek(id, &w).unwrap_err();
            if w.kek_id() == &kek("k1") {
                assert_eq!(err.kind(), ErrorKind::Decrypt);
            } else {
                assert_eq!(err.kind(), ErrorKind::Keyring);
                assert!(err.to_string().contains(w.kek_id().as_str()));
            }
            assert!(keyring.rewrap(id, &w).is_err());
        }
    };
    for at in 0..good.len() {
        for value in 0..=255u8 {
            if value != good[at] {
                let mut bad = good.clone();
                bad[at] = value;
                check(&bad);
            }
        }
    }
    for len in 0..good.len() {
        check(&good[..len]);
    }
    for extra in 0..=255u8 {
        let mut longer = good.clone();
        longer.push(extra);
        check(&longer);
    }
    assert!(keyring.unwrap_dek(id, &wrapped).is_ok());
}

/// S4: the stored bytes and the config, without the key source, open nothing: another keyring
/// with the same id can't unwrap (opaque error), one without the id says which id it lacks.
#[test]
fn s4_store_dump_without_the_keyring_opens_nothing() {
    let (keyring_a, text_a) = keyring("k1");
    let id = ConnectionId::new();
    let (dek, wrapped) = keyring_a.new_dek(id).unwrap();
    let sealed = dek.seal(id, "password", b"hunter2").unwrap();
    let dump = (wrapped.to_bytes(), sealed.to_bytes());

    let (impostor, _) = keyring("k1");
    let wrapped = WrappedDek::parse(&dump.0).unwrap();
    let err = impostor.unwrap_dek(id, &wrapped).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decrypt);
    assert_eq!(
        impostor.rewrap(id, &wrapped).unwrap_err().kind(),
        ErrorKind::Decrypt
    );

    let (other, _) = keyring("k2");
    let err = other.unwrap_dek(id, &wrapped).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);
    assert!(err.to_string().contains("k1"), "{err}");

    // The right keyring opens it; another connection's DEK from it does not.
    let dek = keyring_a.unwrap_dek(id, &wrapped).unwrap();
    let sealed = SealedValue::parse(&dump.1).unwrap();
    assert_eq!(
        dek.open(id, "password", &sealed).unwrap().expose_secret(),
        b"hunter2"
    );
    let (dek_other, _) = keyring_a.new_dek(id).unwrap();
    assert_eq!(
        dek_other.open(id, "password", &sealed).unwrap_err().kind(),
        ErrorKind::Decrypt
    );

    // No key bytes and no key text in what a store keeps (the DEK is checked in the unit tests).
    let kek_b64 = text_a.split_once(':').unwrap().1;
    let kek_bytes = STANDARD.decode(kek_b64).unwrap();
    for stored in [&dump.0, &dump.1] {
        assert!(
            !stored
                .windows(8)
                .any(|w| kek_bytes.windows(8).any(|k| k == w))
        );
        assert!(
            !stored
                .windows(8)
                .any(|w| kek_b64.as_bytes().windows(8).any(|k| k == w))
        );
    }
}

fn write_key_file(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// S4: a key file readable (or writable) by group or others is refused with a clear message;
/// 0600 and 0400 are accepted; a directory is refused.
#[test]
fn s4_key_file_open_to_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, text) = keyring("k1");
    let key_b64 = text.split_once(':').unwrap().1.to_owned();
    for mode in [
        0o640, 0o604, 0o644, 0o660, 0o606, 0o620, 0o602, 0o610, 0o601, 0o666,
    ] {
        let path = write_key_file(dir.path(), &format!("key-{mode:o}"), &text, mode);
        let err = Keyring::load_key_file(&path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Keyring, "mode {mode:o}");
        let shown = err.to_string();
        assert!(shown.contains(&format!("mode {mode:04o}")), "{shown}");
        assert!(shown.contains("group or others"), "{shown}");
        assert!(shown.contains("chmod 600"), "{shown}");
        assert!(!shown.contains(&key_b64), "{shown}");
    }
    for mode in [0o600, 0o400] {
        let path = write_key_file(dir.path(), &format!("key-ok-{mode:o}"), &text, mode);
        let keyring = Keyring::load_key_file(&path).unwrap();
        assert_eq!(keyring.active_id(), &kek("k1"));
    }
    let err = Keyring::load_key_file(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = Keyring::load_key_file(dir.path().join("missing")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
}

/// Key files: one entry per line or comma separated, comments, CRLF; errors name the file and
/// the entry, never the key text.
#[test]
fn key_file_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2, k3) = (random_key().1, random_key().1, random_key().1);
    let text = format!("# rotated 2026-11-01\r\nk3:{k3}\r\n\r\n  # old keys\nk2:{k2}, k1:{k1}\n");
    let path = write_key_file(dir.path(), "keys", &text, 0o600);
    let keyring = Keyring::load_key_file(&path).unwrap();
    let ids: Vec<&str> = keyring.ids().map(KekId::as_str).collect();
    assert_eq!(ids, ["k3", "k2", "k1"]);

    let path = write_key_file(dir.path(), "bad", &format!("k1:{k1}\nk1:{k2}\n"), 0o600);
    let err = Keyring::load_key_file(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);
    let shown = err.to_string();
    assert!(shown.contains("duplicate key id k1"), "{shown}");
    assert!(shown.contains("bad"), "{shown}");
    assert!(!shown.contains(&k1) && !shown.contains(&k2), "{shown}");

    let path = write_key_file(dir.path(), "empty", "# nothing here\n\n", 0o600);
    assert_eq!(
        Keyring::load_key_file(&path).unwrap_err().kind(),
        ErrorKind::Keyring
    );
    let path = dir.path().join("binary");
    std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        Keyring::load_key_file(&path).unwrap_err().kind(),
        ErrorKind::Keyring
    );
}

/// The key file helper creates mode 0600 with a fresh key that loads back, and never overwrites.
#[test]
fn create_key_file_is_private_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let created = Keyring::create_key_file(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // S28: a generated id, `k-<date>-<8 hex digits>`, never `default`.
    let generated = created.active_id().as_str();
    assert!(
        generated.starts_with("k-") && generated.len() == 19,
        "{generated}"
    );
    assert_ne!(generated, KekId::DEFAULT);
    assert!(
        created.source().contains("master.key"),
        "{}",
        created.source()
    );
    let loaded = Keyring::load_key_file(&path).unwrap();
    assert_eq!(loaded.active_id(), created.active_id());

    // Same key: what one wraps, the other unwraps.
    let id = ConnectionId::new();
    let (dek, wrapped) = created.new_dek(id).unwrap();
    let sealed = dek.seal(id, "password", b"hunter2").unwrap();
    let dek = loaded.unwrap_dek(id, &wrapped).unwrap();
    assert_eq!(
        dek.open(id, "password", &sealed).unwrap().expose_secret(),
        b"hunter2"
    );

    let before = std::fs::read(&path).unwrap();
    let err = Keyring::create_key_file(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // Two created files hold different keys under different ids (S28).
    let other = Keyring::create_key_file(dir.path().join("other.key")).unwrap();
    assert_ne!(other.active_id(), created.active_id());
    assert_eq!(
        other.unwrap_dek(id, &wrapped).unwrap_err().kind(),
        ErrorKind::Keyring
    );
    let err = Keyring::create_key_file(dir.path().join("no/such/dir/key")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
}

/// S28: a key check opens only with the key that made it, under its id; another key under the
/// same id, another id, a flipped byte or a wrong length fail; messages name the id and the
/// keyring's source, never key text.
#[test]
fn key_checks_open_only_with_their_key() {
    use datahub_core::crypto::KeyCheck;
    let (_, k1) = random_key();
    let (_, k2) = random_key();
    let right = Keyring::parse(&format!("a:{k1}"))
        .unwrap()
        .with_source("the key file /right/master.key".to_owned());
    let a = KekId::new("a").unwrap();
    let check = right.key_check(&a).unwrap();
    assert_eq!(check.kek_id(), &a);
    let bytes = check.to_bytes();
    assert_eq!(bytes.len(), 29);
    assert_ne!(
        right.key_check(&a).unwrap(),
        check,
        "a fresh nonce each time"
    );
    right.verify_check(&check).unwrap();
    right
        .verify_check(&KeyCheck::parse(a.clone(), &bytes).unwrap())
        .unwrap();
    assert!(!format!("{check:?}").contains(&k1));

    let wrong = Keyring::parse(&format!("a:{k2}"))
        .unwrap()
        .with_source("DATAHUB_MASTER_KEY".to_owned());
    let err = wrong.verify_check(&check).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);
    assert!(
        err.to_string()
            .contains("the key with the id a in DATAHUB_MASTER_KEY"),
        "{err}"
    );
    assert!(!err.to_string().contains(&k2));

    let missing = Keyring::parse(&format!("b:{k1}")).unwrap();
    let err = missing.verify_check(&check).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);
    assert!(err.to_string().contains("key id a"), "{err}");
    // The same key bytes under another id do not open it: the id is bound.
    let renamed = KeyCheck::parse(KekId::new("b").unwrap(), &bytes).unwrap();
    assert!(missing.verify_check(&renamed).is_err());

    for i in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[i] ^= 0x01;
        match KeyCheck::parse(a.clone(), &flipped) {
            Ok(c) => assert!(right.verify_check(&c).is_err(), "byte {i}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Decrypt, "byte {i}"),
        }
    }
    for len in [0, 1, 28, 30] {
        let mut b = bytes.clone();
        b.resize(len, 0);
        assert!(KeyCheck::parse(a.clone(), &b).is_err(), "{len}");
    }
}

/// S34: a key file's text is read whole and the same as written, comments included.
#[test]
fn a_key_file_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    Keyring::create_key_file(&path).unwrap();
    let text = datahub_core::crypto::read_key_file(&path).unwrap();
    assert_eq!(text.as_str(), std::fs::read_to_string(&path).unwrap());
    assert!(
        text.capacity() <= text.len() + 1,
        "reserved from the file's size"
    );
}

/// Keyring text: a table of good and bad inputs. Every error is a keyring error whose text
/// contains no key text.
#[test]
fn keyring_parse_table() {
    let (_, k1) = random_key();
    let (_, k2) = random_key();
    let unpadded = k1.trim_end_matches('=').to_owned();
    let short = STANDARD.encode([7u8; 16]);
    let long = STANDARD.encode([7u8; 33]);
    let very_long = STANDARD.encode([7u8; 200]);
    let url_safe = k1.replace('+', "-").replace('/', "_") + "-_";

    let good: &[(String, &[&str])] = &[
        (k1.clone(), &["default"]),
        (format!("  {k1}\n"), &["default"]),
        (format!("k1:{k1}"), &["k1"]),
        (format!("k2:{k2},k1:{k1}"), &["k2", "k1"]),
        (format!(" k2 : {k2} ,\n\tk1:{k1} , "), &["k2", "k1"]),
        (format!("k2:{k2}\nk1:{k1}\n"), &["k2", "k1"]),
        (format!("k1:{unpadded}"), &["k1"]),
        (format!("default:{k1}"), &["default"]),
        (
            format!("{}:{k1}", "A".repeat(32)),
            &["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
        ),
        (format!("Key_2026-11:{k1}"), &["Key_2026-11"]),
    ];
    for (text, ids) in good {
        let keyring = Keyring::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let got: Vec<&str> = keyring.ids().map(KekId::as_str).collect();
        assert_eq!(&got, ids, "{text:?}");
        assert_eq!(keyring.active_id().as_str(), ids[0]);
        let shown = format!("{keyring:?}");
        assert!(!shown.contains(&k1) && !shown.contains(&k2), "{shown}");
    }

    let bad: &[(String, &str)] = &[
        (String::new(), "empty"),
        (" , \n ,\t".to_owned(), "empty"),
        (
            format!("k1:{short}"),
            "key 1: the key must be base64 of exactly 32 bytes",
        ),
        (format!("k1:{long}"), "exactly 32 bytes"),
        (format!("k1:{very_long}"), "exactly 32 bytes"),
        (
            format!("k1:{url_safe}"),
            "key 1: the key is not valid base64",
        ),
        (format!("k1:{k1}!"), "not valid base64"),
        (
            format!("k1:{} {}", &k1[..20], &k1[20..]),
            "not valid base64",
        ),
        ("k1:".to_owned(), "exactly 32 bytes"),
        (format!("k1:{k1},k1:{k2}"), "key 2: duplicate key id k1"),
        (
            format!("k1:{k1},k2:{k2},k1:{k2}"),
            "key 3: duplicate key id k1",
        ),
        (format!("{k1},k2:{k2}"), "key 1 has no id"),
        (format!("k2:{k2},{k1}"), "key 2 has no id"),
        (format!(":{k1}"), "key 1: the id must be"),
        (format!("k 1:{k1}"), "key 1: the id must be"),
        (format!("k.1:{k1}"), "key 1: the id must be"),
        (format!("{}:{k1}", "A".repeat(33)), "key 1: the id must be"),
        (format!("kéy:{k1}"), "key 1: the id must be"),
        (format!("k1:{k2},{k1}:{k2}"), "key 2: the id must be"),
        (format!("k1:k2:{k1}"), "not valid base64"),
        (format!("k1={k1}"), "not valid base64"),
        // A stray `:` inside a key: its first part looks like an id, and must not be shown.
        (format!("{}:{}", &k1[..16], &k1[16..]), "key 1: "),
        (
            format!("k1:{k1},k1:{short}"),
            "key 2: the key must be base64",
        ),
    ];
    for (text, want) in bad {
        let err = Keyring::parse(text).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Keyring, "{text:?}");
        let shown = err.to_string();
        let debug = format!("{err:?}");
        assert!(shown.contains(want), "{text:?}: {shown}");
        for secret in [&k1, &k2, &unpadded, &short, &long, &very_long, &url_safe] {
            assert!(!shown.contains(secret.as_str()), "{shown}");
            assert!(!debug.contains(secret.as_str()), "{debug}");
            // Nor a recognisable piece of one.
            assert!(!shown.contains(&secret[..8]), "{shown}");
            assert!(
                !shown.contains(&secret[secret.len() - 12..secret.len() - 4]),
                "{shown}"
            );
        }
    }
}

/// S5 support: `require_ids` lists exactly the ids the keyring lacks.
#[test]
fn require_ids_names_exactly_the_missing_ids() {
    let (_, k1) = random_key();
    let (_, k2) = random_key();
    let keyring = Keyring::parse(&format!("k2:{k2},k1:{k1}")).unwrap();
    keyring
        .require_ids([kek("k1"), kek("k2"), kek("k1")])
        .unwrap();
    keyring.require_ids(Vec::<KekId>::new()).unwrap();
    let ids = [kek("k1"), kek("k9"), kek("k0"), kek("k9"), kek("k2")];
    let err = keyring.require_ids(&ids).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);
    assert_eq!(
        err.to_string(),
        "the keyring lacks key ids that stored data names: k0, k9"
    );
    assert!(keyring.contains(&kek("k1")));
    assert!(!keyring.contains(&kek("k0")));
    assert_eq!(KekId::new("").unwrap_err().kind(), ErrorKind::Keyring);
    assert_eq!("k1".parse::<KekId>().unwrap(), kek("k1"));
    assert_eq!(kek("k1").to_string(), "k1");
}

/// Rotation: after a new active key is added, rewrap re-wraps under it, the data key is the same
/// (old sealed values open), a second rewrap does nothing, and the old key can then be retired.
#[test]
fn rewrap_rotates_to_the_active_key() {
    let (_, old) = random_key();
    let (_, new) = random_key();
    let before = Keyring::parse(&format!("k1:{old}")).unwrap();
    let id = ConnectionId::new();
    let (dek, wrapped) = before.new_dek(id).unwrap();
    let sealed = dek.seal(id, "password", b"hunter2").unwrap();
    assert!(matches!(
        before.rewrap(id, &wrapped).unwrap(),
        Rewrap::AlreadyActive
    ));

    let rotated = Keyring::parse(&format!("k2:{new},k1:{old}")).unwrap();
    assert_eq!(rotated.active_id(), &kek("k2"));
    let Rewrap::Rewrapped(rewrapped) = rotated.rewrap(id, &wrapped).unwrap() else {
        panic!("a DEK under k1 must be re-wrapped under k2");
    };
    assert_eq!(rewrapped.kek_id(), &kek("k2"));
    assert_ne!(rewrapped.to_bytes(), wrapped.to_bytes());
    let stored = WrappedDek::parse(&rewrapped.to_bytes()).unwrap();
    assert!(matches!(
        rotated.rewrap(id, &stored).unwrap(),
        Rewrap::AlreadyActive
    ));

    // k1 retired: the re-wrapped DEK still opens the values sealed before the rotation.
    let retired = Keyring::parse(&format!("k2:{new}")).unwrap();
    let dek = retired.unwrap_dek(id, &stored).unwrap();
    assert_eq!(
        dek.open(id, "password", &sealed).unwrap().expose_secret(),
        b"hunter2"
    );
    // An old row not yet re-wrapped names the retired key.
    let err = retired.unwrap_dek(id, &wrapped).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);
    assert!(err.to_string().contains("k1"));
    assert!(retired.require_ids([wrapped.kek_id()]).is_err());

    // A re-wrapped DEK is bound to its connection too.
    assert_eq!(
        rotated
            .unwrap_dek(ConnectionId::new(), &stored)
            .unwrap_err()
            .kind(),
        ErrorKind::Decrypt
    );
}

/// `from_env` reads `DATAHUB_MASTER_KEY`. Setting the environment needs `unsafe` in this edition
/// (which the workspace forbids), so the test runs this test binary again with the variable set.
#[test]
fn keyring_from_env() {
    let (_, k1) = random_key();
    let (_, k2) = random_key();
    let run = |value: Option<String>, expect: &str| {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "crypto::from_env_probe",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DATAHUB_TEST_FROM_ENV_EXPECT", expect);
        match value {
            Some(v) => cmd.env(MASTER_KEY_ENV, v),
            None => cmd.env_remove(MASTER_KEY_ENV),
        };
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{expect}: {stdout}");
        assert!(stdout.contains("1 passed"), "{stdout}");
    };
    run(Some(format!("k2:{k2}, k1:{k1}")), "ok:k2,k1");
    run(Some(k1.clone()), "ok:default");
    run(None, "err:DATAHUB_MASTER_KEY is not set");
    run(Some(format!("k1:{k1},k1:{k2}")), "err:duplicate key id k1");
    run(Some(String::new()), "err:empty");
}

/// Helper of `keyring_from_env`: does nothing unless that test runs it.
#[test]
fn from_env_probe() {
    let Ok(expect) = std::env::var("DATAHUB_TEST_FROM_ENV_EXPECT") else {
        return;
    };
    match (Keyring::from_env(), expect.split_once(':').unwrap()) {
        (Ok(keyring), ("ok", ids)) => {
            let got: Vec<&str> = keyring.ids().map(KekId::as_str).collect();
            assert_eq!(got.join(","), ids);
        }
        (Err(err), ("err", message)) => {
            assert_eq!(err.kind(), ErrorKind::Keyring);
            assert!(err.to_string().contains(message), "{err}");
        }
        (got, _) => panic!("expected {expect}, got {got:?}"),
    }
}

/// S7: the parsers never panic: 1,000,000 arbitrary inputs each for `SealedValue::parse` and
/// `WrappedDek::parse` (random lengths and bytes, and mutations of valid envelopes), every one
/// that parses is also opened; and 1,000,000 arbitrary keyring texts. Seeded, so reproducible.
#[test]
fn s7_parsers_never_panic_on_a_million_inputs() {
    const N: usize = 1_000_000;
    let mut rng = Rng(0x5eed_da7a_b0b5_0001);
    let (keyring, _) = keyring("k1");
    let id = ConnectionId::new();
    let (dek, wrapped) = keyring.new_dek(id).unwrap();
    let valid_sealed = [
        dek.seal(id, "password", b"").unwrap().to_bytes(),
        dek.seal(id, "password", b"hunter2").unwrap().to_bytes(),
        dek.seal(id, "password", &[0x42; 300]).unwrap().to_bytes(),
    ];
    let valid_wrapped = wrapped.to_bytes();

    let mut parsed = [0usize; 2];
    for i in 0..N {
        let mut input = if i % 2 == 0 {
            let len = match rng.below(4) {
                0 => rng.below(30),
                1 => rng.below(100),
                _ => rng.below(600),
            };
            let mut input = rng.bytes(len);
            // Often start like a real envelope, so parsing goes past the version byte.
            if rng.below(2) == 0 && !input.is_empty() {
                input[0] = 0x01;
            }
            input
        } else {
            valid_sealed[rng.below(valid_sealed.len())].clone()
        };
        if i % 2 == 1 {
            rng.mutate(&mut input);
        }
        if let Ok(sealed) = SealedValue::parse(&input) {
            parsed[0] += 1;
            let opened = dek.open(id, "password", &sealed);
            assert!(opened.is_err() || valid_sealed.contains(&input));
        }
    }

    for i in 0..N {
        let mut input = if i % 2 == 0 {
            let len = rng.below(80);
            let mut input = rng.bytes(len);
            if rng.below(2) == 0 && input.len() > 4 {
                input[0] = 0x01;
                input[1] = (rng.below(34)) as u8;
                if rng.below(2) == 0 {
                    input.resize(2 + input[1] as usize + 60, 0);
                    rng.fill(&mut input[2..]);
                }
            }
            input
        } else {
            valid_wrapped.clone()
        };
        if i % 2 == 1 {
            rng.mutate(&mut input);
        }
        if let Ok(w) = WrappedDek::parse(&input) {
            parsed[1] += 1;
            assert_eq!(w.to_bytes(), input, "parse and to_bytes round trip");
            let result = keyring.unwrap_dek(id, &w);
            assert!(result.is_err() || input == valid_wrapped);
            assert!((1..=32).contains(&w.kek_id().as_str().len()));
        }
    }
    // The loops reached past the structural checks, into authentication.
    assert!(parsed[0] > N / 10, "{parsed:?}");
    assert!(parsed[1] > N / 100, "{parsed:?}");

    let (_, k1) = random_key();
    let (_, k2) = random_key();
    let seeds = [
        format!("k1:{k1}"),
        format!("k2:{k2},k1:{k1}"),
        k1.clone(),
        format!(" k2 : {k2} ,\nk1:{k1}\n"),
    ];
    const ALPHABET: &[u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=:,\n \t_-#";
    let mut ok = 0usize;
    for i in 0..N {
        let text = match i % 3 {
            0 => {
                let len = rng.below(120);
                (0..len)
                    .map(|_| ALPHABET[rng.below(ALPHABET.len())] as char)
                    .collect::<String>()
            }
            1 => {
                let len = rng.below(100);
                String::from_utf8_lossy(&rng.bytes(len)).into_owned()
            }
            _ => {
                let mut bytes = seeds[rng.below(seeds.len())].clone().into_bytes();
                rng.mutate(&mut bytes);
                String::from_utf8_lossy(&bytes).into_owned()
            }
        };
        match Keyring::parse(&text) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Keyring);
                let shown = e.to_string();
                for key in [&k1, &k2] {
                    for piece in key.as_bytes().windows(6) {
                        let piece = std::str::from_utf8(piece).unwrap();
                        assert!(!shown.contains(piece), "{shown}");
                    }
                }
            }
        }
    }
    assert!(ok > 0);
}
