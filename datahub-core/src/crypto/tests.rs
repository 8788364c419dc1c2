//! Unit tests that need the crate-private deterministic twins: known answers, golden envelopes,
//! and uniqueness of nonces and data keys (S1, S7).

use std::collections::HashSet;

use uuid::Uuid;

use super::envelope::{seal_with, unwrap_with, wrap_with};
use super::format::{FORMAT_V1, Key, Nonce, aead_open, aead_seal_in_place, sealed_ad, wrapped_ad};
use super::{DataKey, KekId, Keyring, SealedValue, WrappedDek};
use crate::{ConnectionId, ErrorKind};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert_eq!(s.len() % 2, 0);
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn seq<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

/// The fixed inputs of the golden envelopes.
const GOLDEN_ID: u128 = 0x0190_0000_0000_7000_8000_0000_0000_0001;

fn golden_id() -> ConnectionId {
    ConnectionId::from_uuid(Uuid::from_u128(GOLDEN_ID))
}

fn golden_dek() -> Key {
    seq(0x00)
}

fn golden_kek() -> Key {
    seq(0x40)
}

fn golden_nonce() -> Nonce {
    seq(0xa0)
}

/// NIST CAVS `gcmEncryptExtIV256.rsp` (also in RustCrypto's aes-gcm tests): key, IV, AAD,
/// plaintext, ciphertext, tag. Proves the primitive every seal and wrap uses is standard
/// AES-256-GCM.
#[test]
fn primitive_matches_nist_aes_256_gcm_vector() {
    let key: Key = unhex("92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b")
        .try_into()
        .unwrap();
    let nonce: Nonce = unhex("ac93a1a6145299bde902f21a").try_into().unwrap();
    let aad = unhex("1e0889016f67601c8ebea4943bc23ad6");
    let plaintext = unhex("2d71bcfa914e4ac045b2aa60955fad24");
    let ciphertext = "8995ae2e6df3dbf96fac7b7137bae67f";
    let tag = "eca5aa77d51d4a0a14d9c51e1da474ab";

    let mut buf = plaintext.clone();
    let got_tag = aead_seal_in_place(&key, &nonce, &aad, &mut buf).unwrap();
    assert_eq!(hex(&buf), ciphertext);
    assert_eq!(hex(&got_tag), tag);

    let sealed = unhex(&format!("{ciphertext}{tag}"));
    let opened = aead_open(&key, &nonce, &aad, &sealed).unwrap();
    assert_eq!(opened.as_slice(), plaintext.as_slice());
    assert_eq!(opened.capacity(), opened.len());

    // Empty plaintext and AAD: the tag alone (first vector of the same file).
    let key: Key = unhex("b52c505a37d78eda5dd34f20c22540ea1b58963cf8e5bf8ffa85f9f2492505b4")
        .try_into()
        .unwrap();
    let nonce: Nonce = unhex("516c33929df5a3284ff463d7").try_into().unwrap();
    let tag = aead_seal_in_place(&key, &nonce, b"", &mut []).unwrap();
    assert_eq!(hex(&tag), "bdc1ac884d332457a1d2664f168c76f0");
}

/// The associated data layouts, byte for byte, as the module docs state them.
#[test]
fn associated_data_layouts_are_pinned() {
    let id = golden_id();
    let ad = sealed_ad(FORMAT_V1, id, "password").unwrap();
    let mut want = b"datahub-connections/sealed-value".to_vec();
    want.push(0x01);
    want.extend_from_slice(&GOLDEN_ID.to_be_bytes());
    want.extend_from_slice(&[0x00, 0x08]);
    want.extend_from_slice(b"password");
    assert_eq!(ad, want);

    let ad = wrapped_ad(FORMAT_V1, id, &KekId::new("k1").unwrap());
    let mut want = b"datahub-connections/wrapped-dek".to_vec();
    want.push(0x01);
    want.extend_from_slice(&GOLDEN_ID.to_be_bytes());
    want.push(2);
    want.extend_from_slice(b"k1");
    assert_eq!(ad, want);

    // The field name is length-prefixed, so no field's associated data is a prefix of another's.
    let (a, ab) = (
        sealed_ad(FORMAT_V1, id, "a").unwrap(),
        sealed_ad(FORMAT_V1, id, "ab").unwrap(),
    );
    assert!(!ab.starts_with(&a));
    let too_long = "x".repeat(65_536);
    let err = sealed_ad(FORMAT_V1, id, &too_long).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.field(), Some("field"));
    assert!(sealed_ad(FORMAT_V1, id, &too_long[1..]).is_ok());
}

/// Golden sealed value, version 1, of `hunter2` in the field `password` of the connection
/// `GOLDEN_ID`, under the DEK 00..1f with the nonce a0..ab. Computed once by this implementation
/// and reproduced independently from the module docs alone with Python's `cryptography`
/// (OpenSSL) AES-GCM; a change of format, label, associated data or primitive breaks this test.
const GOLDEN_SEALED: &str =
    "01a0a1a2a3a4a5a6a7a8a9aaab8e6d125920b9309cf84bd681da208248a290ad78446d1d";
/// Golden wrapped DEK, version 1: the DEK 00..1f of the connection `GOLDEN_ID` under the KEK
/// 40..5f named `k1`, with the nonce a0..ab (reproduced the same way).
const GOLDEN_WRAPPED: &str = "01026b31a0a1a2a3a4a5a6a7a8a9aaab\
    d78e043ce6ee9a2a71664bf585b13ef9ff06e7d4f87a933afac5f481f5df60e7\
    6bab77d548e908a4d83901a0b8e996c5";

#[test]
fn golden_sealed_value() {
    let sealed = seal_with(
        &golden_dek(),
        &golden_nonce(),
        golden_id(),
        "password",
        b"hunter2",
    )
    .unwrap();
    assert_eq!(hex(sealed.as_bytes()), GOLDEN_SEALED);
    // Layout: version, nonce, ciphertext + tag.
    let bytes = sealed.as_bytes();
    assert_eq!(bytes.len(), 1 + 12 + 7 + 16);
    assert_eq!(bytes[0], 0x01);
    assert_eq!(bytes[1..13], golden_nonce());

    // The stored bytes open through the public API.
    let parsed = SealedValue::parse(&unhex(GOLDEN_SEALED)).unwrap();
    let dek = DataKey::from_bytes(&golden_dek());
    let opened = dek.open(golden_id(), "password", &parsed).unwrap();
    assert_eq!(opened.expose_secret(), b"hunter2");
}

#[test]
fn golden_wrapped_dek() {
    let kek_id = KekId::new("k1").unwrap();
    let dek = DataKey::from_bytes(&golden_dek());
    let wrapped = wrap_with(&golden_kek(), &kek_id, &golden_nonce(), golden_id(), &dek).unwrap();
    let bytes = wrapped.to_bytes();
    assert_eq!(hex(&bytes), GOLDEN_WRAPPED);
    // Layout: version, id length, id, nonce, ciphertext + tag.
    assert_eq!(bytes.len(), 62 + 2);
    assert_eq!(bytes[..4], [0x01, 0x02, b'k', b'1']);
    assert_eq!(bytes[4..16], golden_nonce());

    // The stored bytes unwrap through the public API, to the DEK of the golden sealed value.
    let parsed = WrappedDek::parse(&unhex(GOLDEN_WRAPPED)).unwrap();
    assert_eq!(parsed, wrapped);
    let keyring = Keyring::parse(&format!(
        "k1:{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, golden_kek())
    ))
    .unwrap();
    let unwrapped = keyring.unwrap_dek(golden_id(), &parsed).unwrap();
    assert_eq!(unwrapped.expose(), &golden_dek());
    let unwrapped = unwrap_with(&golden_kek(), golden_id(), &parsed).unwrap();
    assert_eq!(unwrapped.expose(), &golden_dek());
}

/// S1: nonces and data keys never repeat across 10^6 seals (and 10^6 new data keys, each
/// wrapped with its own nonce).
#[test]
fn nonces_and_deks_never_repeat_over_a_million_seals() {
    const N: usize = 1_000_000;
    let keyring = Keyring::parse(&format!(
        "k1:{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, golden_kek())
    ))
    .unwrap();
    let id = golden_id();
    let mut seal_nonces: HashSet<[u8; 12]> = HashSet::with_capacity(N);
    let mut wrap_nonces: HashSet<[u8; 12]> = HashSet::with_capacity(N);
    let mut deks: HashSet<Key> = HashSet::with_capacity(N);
    for _ in 0..N {
        let (dek, wrapped) = keyring.new_dek(id).unwrap();
        let sealed = dek.seal(id, "password", b"hunter2").unwrap();
        assert!(seal_nonces.insert(sealed.as_bytes()[1..13].try_into().unwrap()));
        assert!(wrap_nonces.insert(wrapped.to_bytes()[4..16].try_into().unwrap()));
        assert!(deks.insert(*dek.expose()));
    }
    assert_eq!(seal_nonces.len(), N);
    assert_eq!(wrap_nonces.len(), N);
    assert_eq!(deks.len(), N);
    // Seals under one DEK draw fresh nonces too.
    let dek = DataKey::generate().unwrap();
    let mut nonces = HashSet::new();
    for _ in 0..10_000 {
        let sealed = dek.seal(id, "password", b"").unwrap();
        assert!(nonces.insert(sealed.as_bytes()[1..13].to_vec()));
    }
}

/// S4: the stored forms never contain the key bytes they protect or use.
#[test]
fn stored_forms_contain_no_key_bytes() {
    let keyring = Keyring::parse(&format!(
        "k1:{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, golden_kek())
    ))
    .unwrap();
    let id = golden_id();
    for _ in 0..1_000 {
        let (dek, wrapped) = keyring.new_dek(id).unwrap();
        let sealed = dek.seal(id, "password", b"hunter2").unwrap();
        for stored in [wrapped.to_bytes(), sealed.to_bytes()] {
            // No 8-byte run of either key appears anywhere in what a store keeps.
            for key in [&dek.expose()[..], &golden_kek()[..]] {
                for run in key.windows(8) {
                    assert!(!stored.windows(8).any(|w| w == run));
                }
            }
        }
    }
}
