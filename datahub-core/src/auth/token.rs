//! API tokens: `dh_` + base64url (no padding) of 32 random bytes from the operating system,
//! shown once, stored only as the SHA-256 of the text (SECURITY.md S20).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::TOKEN_REFUSED;
use crate::model::{TokenInfo, User};
use crate::secret::ApiToken;
use crate::{Error, ErrorKind, Result};

/// What every token starts with, so a leaked one is recognisable (e.g. by secret scanners).
pub const TOKEN_PREFIX: &str = "dh_";

/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// Length of the base64url text of [`TOKEN_BYTES`] without padding.
const TOKEN_BODY_LEN: usize = 43;

/// A freshly generated token: the text to show the user once, and the hash to store.
#[derive(Debug)]
pub struct NewToken {
    /// The token text. Show it once; never store or log it.
    pub token: ApiToken,
    /// SHA-256 of the token text, for [`StoredToken::hash`](crate::store::StoredToken::hash).
    pub hash: [u8; 32],
}

/// Generates a new token from 32 random bytes of the operating system's generator.
///
/// Errors: `Internal` when the generator fails.
pub fn new_token() -> Result<NewToken> {
    let (text, hash) = generate(TOKEN_PREFIX)?;
    Ok(NewToken {
        token: ApiToken::new(text),
        hash,
    })
}

/// `prefix` + base64url of 32 random bytes, and the SHA-256 of that text. Shared by API tokens
/// and session tokens, which differ only in their prefix.
pub(super) fn generate(prefix: &str) -> Result<(String, [u8; 32])> {
    let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
    super::fill_random(raw.as_mut())?;
    let mut text = String::with_capacity(prefix.len() + TOKEN_BODY_LEN);
    text.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(raw.as_ref(), &mut text);
    let hash = token_hash(&text);
    Ok((text, hash))
}

/// The SHA-256 of a token's text: what a store keeps and looks tokens up by.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Checks that `presented` is shaped like a token (prefix, 43 base64url characters that decode
/// to 32 bytes) and returns its hash for the store lookup.
///
/// Errors: `Unauthenticated` with the message [`TOKEN_REFUSED`] for anything else; the input is
/// never echoed.
pub fn parse_token(presented: &str) -> Result<[u8; 32]> {
    if well_formed(TOKEN_PREFIX, presented) {
        Ok(token_hash(presented))
    } else {
        Err(refused())
    }
}

/// Whether `presented` is `prefix` followed by 43 base64url characters that decode to 32 bytes.
pub(super) fn well_formed(prefix: &str, presented: &str) -> bool {
    presented
        .strip_prefix(prefix)
        .filter(|body| body.len() == TOKEN_BODY_LEN)
        .and_then(|body| {
            let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
            // The strict decoder also refuses non-canonical trailing bits, so one token has
            // exactly one text (and one hash).
            URL_SAFE_NO_PAD
                .decode_slice(body, raw.as_mut())
                .ok()
                .filter(|n| *n == TOKEN_BYTES)
        })
        .is_some()
}

/// Whether a token found by its hash may be used at `now` by `user` (the user it belongs to).
///
/// Errors: `Unauthenticated` with the message [`TOKEN_REFUSED`] when the token is revoked,
/// expired (at or after `expires_at`), belongs to another user, or the user is disabled.
pub fn token_usable(token: &TokenInfo, user: &User, now: OffsetDateTime) -> Result<()> {
    let expired = token.expires_at.is_some_and(|at| now >= at);
    if token.revoked_at.is_some() || expired || token.user != user.id || user.disabled {
        return Err(refused());
    }
    Ok(())
}

fn refused() -> Error {
    Error::new(ErrorKind::Unauthenticated, TOKEN_REFUSED)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use time::Duration;

    use super::*;
    use crate::rbac::Role;
    use crate::{TokenId, UserId};

    fn user(disabled: bool) -> User {
        User {
            id: UserId::new(),
            username: "bob".into(),
            role: Role::Editor,
            disabled,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn row(user: UserId) -> TokenInfo {
        TokenInfo {
            id: TokenId::new(),
            user,
            name: "ci".into(),
            read_only: false,
            created_at: OffsetDateTime::UNIX_EPOCH,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        }
    }

    #[test]
    fn format_and_hash() {
        let t = new_token().unwrap();
        let text = t.token.expose_secret();
        assert_eq!(text.len(), 46);
        assert!(text.starts_with("dh_"));
        assert!(
            text[3..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&text[3..]).unwrap().len(), 32);
        // The stored hash is plain SHA-256 of the text.
        let expected: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        assert_eq!(t.hash, expected);
        assert_eq!(token_hash(text), expected);
        assert_eq!(parse_token(text).unwrap(), expected);
        // SHA-256("") known answer, so the hash really is SHA-256.
        assert_eq!(
            token_hash("")[..4],
            [0xe3, 0xb0, 0xc4, 0x42],
            "sha-256 of the empty string"
        );
        // Debug shows neither the token nor its hash bytes in a recognisable way.
        let shown = format!("{t:?}");
        assert!(!shown.contains(text), "{shown}");
    }

    #[test]
    fn ten_thousand_tokens_are_unique() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let t = new_token().unwrap();
            assert!(seen.insert(t.token.expose_secret().to_owned()));
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = new_token().unwrap();
        let text = good.token.expose_secret();
        let body = &text[3..];
        let cases = [
            String::new(),
            "dh_".into(),
            body.to_owned(),                        // no prefix
            format!("DH_{body}"),                   // wrong prefix
            format!("xx_{body}"),                   // wrong prefix
            format!("{text}A"),                     // too long
            text[..45].to_owned(),                  // too short
            format!("{text}="),                     // padding
            format!("dh_{}+", &body[..42]),         // standard alphabet
            format!("dh_{}/", &body[..42]),         // standard alphabet
            format!("dh_{} ", &body[..42]),         // whitespace
            format!(" {text}"),                     // leading whitespace
            format!("Bearer {text}"),               // header not stripped
            format!("dh_{}", "A".repeat(42) + "B"), // non-canonical trailing bits
            format!("dh_{}é", &body[..41]),         // non-ASCII, 43 bytes
        ];
        for bad in &cases {
            let e = parse_token(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unauthenticated);
            assert_eq!(e.to_string(), TOKEN_REFUSED);
            assert!(!format!("{e:?}").contains(body));
        }
        // A canonical all-zero token parses.
        assert!(parse_token(&format!("dh_{}", "A".repeat(43))).is_ok());
    }

    #[test]
    fn expiry_revocation_and_disabled_users() {
        let now = OffsetDateTime::now_utc();
        let owner = user(false);
        let base = row(owner.id);
        token_usable(&base, &owner, now).unwrap();

        let future = TokenInfo {
            expires_at: Some(now + Duration::seconds(1)),
            ..base.clone()
        };
        token_usable(&future, &owner, now).unwrap();

        let cases = [
            (
                TokenInfo {
                    expires_at: Some(now),
                    ..base.clone()
                },
                owner.clone(),
            ),
            (
                TokenInfo {
                    expires_at: Some(now - Duration::days(1)),
                    ..base.clone()
                },
                owner.clone(),
            ),
            (
                TokenInfo {
                    revoked_at: Some(now - Duration::seconds(1)),
                    last_used_at: None,
                    ..base.clone()
                },
                owner.clone(),
            ),
            (
                TokenInfo {
                    revoked_at: Some(now + Duration::days(1)),
                    last_used_at: None,
                    ..base.clone()
                },
                owner.clone(),
            ),
            (
                base.clone(),
                User {
                    disabled: true,
                    ..owner.clone()
                },
            ),
            (base.clone(), user(false)), // another user's row
        ];
        for (token, user) in &cases {
            let e = token_usable(token, user, now).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unauthenticated);
            assert_eq!(e.to_string(), TOKEN_REFUSED);
        }
    }
}
