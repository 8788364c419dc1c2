//! Browser sessions: the token format and when a stored session may still be used.
//!
//! A session token is `dhs_` + base64url (no padding) of 32 random bytes from the operating
//! system, handed to the client once (in a cookie) and stored only as the SHA-256 of its text,
//! exactly like an API token but with its own prefix: neither kind ever parses as the other, and
//! they live in different tables, so a session token is never accepted as an API token nor the
//! other way round. Nothing here is derived from a key of the keyring (S5: session handling never
//! reuses the data key); a session is a random secret looked up by its hash.
//!
//! A session ends at the first of: its absolute expiry (`created_at` + [`SessionConfig::lifetime`],
//! fixed when it starts), [`SessionConfig::idle_timeout`] without use, logout, or its user being
//! disabled or given a new password (the Hub deletes the rows).

use std::time::Duration;

use time::OffsetDateTime;

use super::token::{generate, token_hash, well_formed};
use crate::secret::SessionToken;
use crate::store::StoredSession;
use crate::{Error, ErrorKind, Result};

/// What every session token starts with; never the same as an API token's `dh_`.
pub const SESSION_PREFIX: &str = "dhs_";

/// The message of every refused session: malformed, unknown, expired, idle too long, ended, or
/// its user disabled or gone.
pub const SESSION_REFUSED: &str = "invalid or expired session";

/// How long sessions live. Every field has a documented default; see [`SessionConfig::check`]
/// for the rules a configuration must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// The absolute lifetime of a session from its start, however active. Default: 12 h.
    pub lifetime: Duration,
    /// A session unused for this long ends. Default: 30 min.
    pub idle_timeout: Duration,
    /// A session's last use is written at most this often (so a busy client does not cause a
    /// write per request). The idle timeout is therefore exact to within this interval: a
    /// session ends between `idle_timeout - touch_interval` and `idle_timeout` after its last
    /// use. Default: 60 s.
    pub touch_interval: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(12 * 60 * 60),
            idle_timeout: Duration::from_secs(30 * 60),
            touch_interval: Duration::from_secs(60),
        }
    }
}

impl SessionConfig {
    /// Checks the configuration: a lifetime and an idle timeout above zero and at most a year,
    /// and a touch interval shorter than the idle timeout.
    ///
    /// # Errors
    /// `InvalidInput` naming the field at fault.
    pub fn check(&self) -> Result<()> {
        const YEAR: Duration = Duration::from_secs(366 * 24 * 60 * 60);
        if self.lifetime.is_zero() || self.lifetime > YEAR {
            return Err(Error::invalid(
                "lifetime",
                "must be above zero and at most a year",
            ));
        }
        if self.idle_timeout.is_zero() || self.idle_timeout > YEAR {
            return Err(Error::invalid(
                "idle_timeout",
                "must be above zero and at most a year",
            ));
        }
        if self.touch_interval >= self.idle_timeout {
            return Err(Error::invalid(
                "touch_interval",
                "must be shorter than the idle timeout",
            ));
        }
        Ok(())
    }
}

/// A freshly generated session token: the text to hand the client once, and the hash to store.
#[derive(Debug)]
pub struct NewSessionToken {
    /// The token text. Hand it to the client once; never store or log it.
    pub token: SessionToken,
    /// SHA-256 of the token text, for [`StoredSession::hash`].
    pub hash: [u8; 32],
}

/// Generates a new session token from 32 random bytes of the operating system's generator.
///
/// # Errors
/// `Internal` when the generator fails.
pub fn new_session_token() -> Result<NewSessionToken> {
    let (text, hash) = generate(SESSION_PREFIX)?;
    Ok(NewSessionToken {
        token: SessionToken::new(text),
        hash,
    })
}

/// Checks that `presented` is shaped like a session token (prefix `dhs_`, 43 base64url
/// characters that decode to 32 bytes) and returns its hash for the store lookup.
///
/// # Errors
/// `Unauthenticated` with the message [`SESSION_REFUSED`] for anything else (an API token
/// included); the input is never echoed.
pub fn parse_session_token(presented: &str) -> Result<[u8; 32]> {
    if well_formed(SESSION_PREFIX, presented) {
        Ok(token_hash(presented))
    } else {
        Err(session_refused())
    }
}

/// The error of every refused session.
pub fn session_refused() -> Error {
    Error::new(ErrorKind::Unauthenticated, SESSION_REFUSED)
}

/// What a stored session allows at one moment ([`session_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Usable. `touch`: its last use is older than the touch interval and should be written.
    Live {
        /// Whether to record this use as the session's last one.
        touch: bool,
    },
    /// Past its absolute expiry.
    Expired,
    /// Unused for longer than the idle timeout.
    Idle,
}

/// Whether `session` may be used at `now` under `config`: expired at or after `expires_at`,
/// idle at or after `last_seen_at + idle_timeout`.
pub fn session_state(
    session: &StoredSession,
    now: OffsetDateTime,
    config: &SessionConfig,
) -> SessionState {
    if now >= session.expires_at {
        return SessionState::Expired;
    }
    let since_use = now - session.last_seen_at;
    if since_use >= config.idle_timeout {
        return SessionState::Idle;
    }
    SessionState::Live {
        touch: since_use >= config.touch_interval,
    }
}

#[cfg(test)]
mod tests {
    use time::Duration as Span;

    use super::*;
    use crate::{SessionId, UserId};

    const T0: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    fn row(last_seen: OffsetDateTime) -> StoredSession {
        StoredSession {
            id: SessionId::new(),
            user: UserId::new(),
            hash: [0; 32],
            created_at: T0,
            expires_at: T0 + Span::hours(12),
            last_seen_at: last_seen,
            client_addr: None,
            user_agent: None,
        }
    }

    #[test]
    fn format_and_hash_differ_from_api_tokens() {
        let s = new_session_token().unwrap();
        let text = s.token.expose_secret();
        assert_eq!(text.len(), 47);
        assert!(text.starts_with("dhs_"));
        assert_eq!(s.hash, token_hash(text));
        assert_eq!(parse_session_token(text).unwrap(), s.hash);
        // Neither kind parses as the other.
        assert!(crate::auth::parse_token(text).is_err());
        let api = crate::auth::new_token().unwrap();
        let e = parse_session_token(api.token.expose_secret()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        assert_eq!(e.to_string(), SESSION_REFUSED);
        for bad in [
            String::new(),
            "dhs_".into(),
            format!("{text}A"),
            text[..46].to_owned(),
            format!("DHS_{}", &text[4..]),
            format!(" {text}"),
            format!("dh_{}", &text[4..]),
        ] {
            let e = parse_session_token(&bad).unwrap_err();
            assert_eq!(e.to_string(), SESSION_REFUSED);
            assert!(!format!("{e:?}").contains(&text[4..]));
        }
        let shown = format!("{s:?}");
        assert!(!shown.contains(&text[4..]), "{shown}");
    }

    /// The clock is injected: every boundary is checked exactly, without sleeping.
    #[test]
    fn expiry_idle_and_touch_boundaries() {
        let c = SessionConfig::default();
        let live = |touch| SessionState::Live { touch };
        let fresh = row(T0);
        assert_eq!(session_state(&fresh, T0, &c), live(false));
        assert_eq!(
            session_state(&fresh, T0 + Span::seconds(59), &c),
            live(false)
        );
        assert_eq!(
            session_state(&fresh, T0 + Span::seconds(60), &c),
            live(true)
        );
        assert_eq!(
            session_state(&fresh, T0 + Span::minutes(30) - Span::microseconds(1), &c),
            live(true)
        );
        assert_eq!(
            session_state(&fresh, T0 + Span::minutes(30), &c),
            SessionState::Idle
        );
        // Kept in use, it still ends at its absolute expiry.
        let busy = row(T0 + Span::hours(12) - Span::seconds(1));
        assert_eq!(
            session_state(&busy, T0 + Span::hours(12) - Span::microseconds(1), &c),
            live(false)
        );
        assert_eq!(
            session_state(&busy, T0 + Span::hours(12), &c),
            SessionState::Expired
        );
        assert_eq!(
            session_state(&busy, T0 + Span::days(3), &c),
            SessionState::Expired
        );
    }

    #[test]
    fn config_rules() {
        SessionConfig::default().check().unwrap();
        let d = SessionConfig::default();
        for (bad, field) in [
            (
                SessionConfig {
                    lifetime: Duration::ZERO,
                    ..d
                },
                "lifetime",
            ),
            (
                SessionConfig {
                    idle_timeout: Duration::ZERO,
                    touch_interval: Duration::ZERO,
                    ..d
                },
                "idle_timeout",
            ),
            (
                SessionConfig {
                    touch_interval: d.idle_timeout,
                    ..d
                },
                "touch_interval",
            ),
            (
                SessionConfig {
                    lifetime: Duration::from_secs(400 * 24 * 3600),
                    ..d
                },
                "lifetime",
            ),
        ] {
            assert_eq!(bad.check().unwrap_err().field(), Some(field));
        }
    }
}
