//! Authentication primitives: account names, user password hashing (argon2id) and the password
//! policy, login verification with uniform timing, API tokens (generation, parsing, hashing,
//! usability) and session tokens with their lifetimes.
//!
//! Pure logic: it never calls a store; the Hub loads rows and hands them in. It must never log,
//! echo or put into an error a password, a token, or the input that was refused; and every
//! failure to authenticate has one message per kind (login, token), whatever the cause, so a
//! caller cannot tell an unknown user from a wrong password or a revoked token from a made-up one.

pub(crate) mod password;
mod session;
mod token;

pub use password::{
    HashParams, Login, MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES, PASSWORD_HASH_PARAMS,
    check_password_policy, dummy_verify, hash_password, needs_rehash, verify_login,
    verify_password,
};
pub use session::{
    NewSessionToken, SESSION_PREFIX, SESSION_REFUSED, SessionConfig, SessionState,
    new_session_token, parse_session_token, session_refused, session_state,
};
pub use token::{NewToken, TOKEN_PREFIX, new_token, parse_token, token_hash, token_usable};

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// The message of every failed login: unknown user, wrong password and disabled account alike.
pub const LOGIN_FAILED: &str = "invalid username or password";

/// The message of every refused API token: malformed, unknown, expired, revoked, or its user
/// disabled.
pub const TOKEN_REFUSED: &str = "invalid or expired token";

/// The longest account name, in characters.
pub const MAX_ACCOUNT_NAME_LEN: usize = 64;

/// A valid account (login) name: 1 to 64 characters, a lowercase ASCII letter or digit first,
/// then lowercase letters, digits, `_`, `.`, `@` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountName(String);

impl AccountName {
    /// Validates a name. Errors: `InvalidInput` on the field `username`; the message never
    /// repeats the input.
    pub fn parse(name: &str) -> Result<Self> {
        let mut chars = name.chars();
        let Some(first) = chars.next() else {
            return Err(Error::invalid("username", "must not be empty"));
        };
        if name.len() > MAX_ACCOUNT_NAME_LEN {
            return Err(Error::invalid(
                "username",
                "must be at most 64 characters long",
            ));
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(Error::invalid(
                "username",
                "must start with a lowercase letter or a digit",
            ));
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.@-".contains(c)) {
            return Err(Error::invalid(
                "username",
                "may contain only lowercase letters, digits, '_', '.', '@' and '-'",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an owned `String`, e.g. for a `User`.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for AccountName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AccountName {
    type Err = Error;

    /// Same as [`AccountName::parse`].
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl AsRef<str> for AccountName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Fills `buf` from the operating system's random generator. Errors: `Internal` when it fails.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| {
        Error::new(
            crate::ErrorKind::Internal,
            format!("the operating system's random generator failed: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        for ok in [
            "a",
            "0",
            "admin",
            "jane.doe@example.org",
            "svc_etl-2",
            &"a".repeat(64),
        ] {
            assert_eq!(AccountName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            &"a".repeat(65),
            "Admin",
            "_x",
            ".x",
            "-x",
            "@x",
            "a b",
            "a\nb",
            "a\u{1b}[31m",
            "ünï",
            "a/b",
            "a:b",
        ] {
            let e = AccountName::parse(bad).unwrap_err();
            assert_eq!(e.field(), Some("username"), "{bad:?}");
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
            if !bad.is_empty() {
                assert!(!e.to_string().contains(bad), "{e}");
                assert!(!format!("{e:?}").contains(bad), "{e:?}");
            }
        }
        assert_eq!("bob".parse::<AccountName>().unwrap().to_string(), "bob");
    }

    /// S8/S10: a unique password or token never shows in the `Debug` or `Display` of anything
    /// this module returns, successes and failures alike.
    #[test]
    fn canary_never_shows() {
        use crate::model::User;
        use crate::secret::Password;
        use crate::store::StoredUser;

        let canary = "canary-auth-91d7-ünï-pässwörd";
        let pw = Password::from(canary);
        let phc = password::hash_with(
            canary.as_bytes(),
            &[3u8; 16],
            HashParams {
                m_kib: 64,
                t: 2,
                p: 1,
            },
        )
        .unwrap();
        let row = StoredUser {
            user: User {
                id: crate::UserId::new(),
                username: "carol".into(),
                role: crate::rbac::Role::Viewer,
                disabled: false,
                created_at: time::OffsetDateTime::UNIX_EPOCH,
                updated_at: time::OffsetDateTime::UNIX_EPOCH,
            },
            password_hash: phc.clone(),
        };
        let mut shown = vec![format!("{pw:?}"), phc.clone()];
        shown.push(format!("{:?}", verify_login(Some(&row), &pw).unwrap()));
        let wrong = Password::from(format!("{canary}-wrong"));
        for e in [
            verify_login(Some(&row), &wrong).unwrap_err(),
            verify_login(None, &pw).unwrap_err(),
            check_password_policy(&Password::from(canary.repeat(100))).unwrap_err(),
            check_password_policy(&Password::from(" ".repeat(20))).unwrap_err(),
            AccountName::parse(canary).unwrap_err(),
        ] {
            shown.push(format!("{e:?}"));
            shown.push(e.to_string());
        }

        let token = new_token().unwrap();
        let text = token.token.expose_secret().to_owned();
        let altered = format!(
            "{}{}",
            &text[..45],
            if text.ends_with('A') { 'Q' } else { 'A' }
        );
        shown.push(format!("{token:?}"));
        shown.push(format!("{:?}", token.token));
        for bad in [format!("{text}x"), altered, canary.to_owned()] {
            if let Err(e) = parse_token(&bad) {
                shown.push(format!("{e:?}"));
                shown.push(e.to_string());
            }
        }
        for s in &shown {
            assert!(!s.contains(canary), "{s}");
            assert!(!s.contains(&text[3..]), "{s}");
        }
    }
}
