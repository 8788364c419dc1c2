//! Integration tests: canary (SECURITY.md S8, S10 for the crypto types).
//!
//! A unique password is sealed, and neither it (raw, base64, URL-encoded) nor the key-encryption
//! key's base64 appears in the `Debug` of any crypto or secret type, nor in the `Display` or
//! `Debug` of any error the crypto API produces, including errors about input that contains it.

use std::error::Error as _;
use std::os::unix::fs::PermissionsExt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use datahub_core::crypto::{KekId, Keyring, SealedValue, WrappedDek};
use datahub_core::secret::{Password, SecretBytes};
use datahub_core::{ConnectionId, Error};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

const CANARY: &str = "canary-5b1d-ünïcode-pässwörd";

/// Every form of a secret that must never be shown.
pub(crate) fn forms(secret: &[u8]) -> Vec<String> {
    let mut forms = vec![
        STANDARD.encode(secret),
        STANDARD_NO_PAD.encode(secret),
        URL_SAFE.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        secret.iter().map(|b| format!("{b:02x}")).collect(),
        format!("{secret:?}"),
    ];
    if let Ok(text) = std::str::from_utf8(secret) {
        forms.push(text.to_owned());
        forms.push(utf8_percent_encode(text, NON_ALPHANUMERIC).to_string());
        forms.push(text.escape_debug().to_string());
        forms.push(text.escape_unicode().to_string());
    }
    forms
}

/// Everything an error shows: `Display`, `Debug`, alternate `Debug`, and its source chain.
fn shown_error(err: &Error) -> Vec<String> {
    let mut shown = vec![err.to_string(), format!("{err:?}"), format!("{err:#?}")];
    let mut source = err.source();
    while let Some(s) = source {
        shown.push(s.to_string());
        shown.push(format!("{s:?}"));
        source = s.source();
    }
    shown
}

#[test]
fn canary_password_never_shows() {
    let mut kek = [0u8; 32];
    getrandom::fill(&mut kek).unwrap();
    let kek_b64 = STANDARD.encode(kek);
    let keyring = Keyring::parse(&format!("k1:{kek_b64}")).unwrap();
    let id = ConnectionId::new();
    let (dek, wrapped) = keyring.new_dek(id).unwrap();
    let sealed = dek.seal(id, "password", CANARY.as_bytes()).unwrap();
    let opened = dek.open(id, "password", &sealed).unwrap();
    assert_eq!(opened.expose_secret(), CANARY.as_bytes());

    // Debug of every type that holds or guards the secret.
    let mut shown: Vec<String> = Vec::new();
    let password = Password::from(CANARY);
    let bytes = SecretBytes::new(CANARY.as_bytes().to_vec());
    for debug in [
        format!("{keyring:?}"),
        format!("{keyring:#?}"),
        format!("{dek:?}"),
        format!("{dek:#?}"),
        format!("{wrapped:?}"),
        format!("{wrapped:#?}"),
        format!("{sealed:?}"),
        format!("{sealed:#?}"),
        format!("{opened:?}"),
        format!("{bytes:?}"),
        format!("{password:?}"),
        format!("{:?}", Some(&password)),
        format!("{:?}", (&dek, &sealed, &wrapped, &opened)),
        format!("{:?}", keyring.rewrap(id, &wrapped).unwrap()),
        format!("{:?}", wrapped.kek_id()),
    ] {
        shown.push(debug);
    }
    let rotated =
        Keyring::parse(&format!("k2:{},k1:{kek_b64}", STANDARD.encode([9u8; 32]))).unwrap();
    shown.push(format!("{:?}", rotated.rewrap(id, &wrapped).unwrap()));

    // A keyring whose key is the canary itself shows none of it either.
    let canary_keyring = Keyring::parse(&STANDARD.encode(CANARY)).unwrap();
    shown.push(format!("{canary_keyring:?}"));
    shown.push(format!("{:?}", canary_keyring.new_dek(id).unwrap()));

    // Every error the crypto API produces, several of them about input containing the canary.
    let mut errors: Vec<Error> = Vec::new();
    let other = ConnectionId::new();
    let mut tampered = sealed.to_bytes();
    tampered[20] ^= 1;
    let (impostor, _) = (
        Keyring::parse(&format!("k1:{}", STANDARD.encode([7u8; 32]))).unwrap(),
        (),
    );
    let (other_dek, _) = keyring.new_dek(id).unwrap();
    let mut canary_as_sealed = vec![0x01];
    canary_as_sealed.extend_from_slice(CANARY.as_bytes());
    errors.extend(
        [
            dek.open(id, "client_key_pem", &sealed).map(|_| ()),
            dek.open(other, "password", &sealed).map(|_| ()),
            other_dek.open(id, "password", &sealed).map(|_| ()),
            SealedValue::parse(&tampered)
                .and_then(|s| dek.open(id, "password", &s))
                .map(|_| ()),
            SealedValue::parse(CANARY.as_bytes()).map(|_| ()),
            SealedValue::parse(&canary_as_sealed)
                .and_then(|s| dek.open(id, "password", &s))
                .map(|_| ()),
            WrappedDek::parse(CANARY.as_bytes()).map(|_| ()),
            impostor.unwrap_dek(id, &wrapped).map(|_| ()),
            impostor.rewrap(id, &wrapped).map(|_| ()),
            keyring.unwrap_dek(other, &wrapped).map(|_| ()),
            Keyring::parse(&format!("k9:{}", STANDARD.encode([8u8; 32])))
                .and_then(|k| k.unwrap_dek(id, &wrapped))
                .map(|_| ()),
            keyring.require_ids([KekId::new("k7").unwrap()]),
            dek.seal(id, &CANARY.repeat(3_000), b"x").map(|_| ()),
            KekId::new(CANARY).map(|_| ()),
        ]
        .into_iter()
        .filter_map(Result::err),
    );
    let canary_b64 = STANDARD.encode(CANARY);
    let canary_pct = utf8_percent_encode(CANARY, NON_ALPHANUMERIC).to_string();
    for text in [
        CANARY.to_owned(),
        format!("k1:{CANARY}"),
        format!("{CANARY}:{kek_b64}"),
        // (The canary is 32 bytes of UTF-8, so its base64 alone is a valid key: see below.)
        format!("k1:{}", STANDARD.encode(format!("{CANARY}!"))),
        format!("{canary_b64}!"),
        format!("k1:{canary_b64},k1:{canary_b64}"),
        format!("k1:{canary_pct}"),
        format!("k1:{kek_b64},{CANARY}"),
        format!("k1:{kek_b64},k2:{CANARY}"),
        format!("k1:{kek_b64},k1:{kek_b64}"),
        format!("{}:{}", &kek_b64[..20], &kek_b64[20..]),
        format!("k1:{kek_b64}{CANARY}"),
        format!("k1:{CANARY}{kek_b64}"),
    ] {
        match Keyring::parse(&text) {
            Err(e) => errors.push(e),
            Ok(_) => panic!("{text:?} parsed"),
        }
    }

    // Key files: one holding the canary, one open to others, one that exists already.
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str, mode: u32| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    };
    let path = write("canary.key", &format!("k1:{kek_b64}\n{CANARY}\n"), 0o600);
    errors.push(Keyring::load_key_file(&path).unwrap_err());
    let path = write("open.key", &format!("k1:{kek_b64}\n"), 0o644);
    errors.push(Keyring::load_key_file(&path).unwrap_err());
    errors.push(Keyring::create_key_file(&path).unwrap_err());
    errors.push(Keyring::load_key_file(dir.path()).unwrap_err());

    assert!(errors.len() >= 30, "{}", errors.len());
    for err in &errors {
        shown.extend(shown_error(err));
    }

    let mut forbidden = forms(CANARY.as_bytes());
    forbidden.extend(forms(&kek));
    forbidden.push(kek_b64[..12].to_owned());
    forbidden.push(kek_b64[20..32].to_owned());
    for text in &shown {
        for secret in &forbidden {
            assert!(
                !text.contains(secret.as_str()),
                "{secret:?} shown in {text:?}"
            );
        }
    }

    // The stored forms don't carry the canary either.
    for stored in [sealed.to_bytes(), wrapped.to_bytes()] {
        assert!(
            !stored
                .windows(8)
                .any(|w| CANARY.as_bytes().windows(8).any(|c| c == w))
        );
    }
}
