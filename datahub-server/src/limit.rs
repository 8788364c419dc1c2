//! Sign-in rate limiting (SECURITY.md S20, S29): attempts are counted per account name and per
//! client address with the core's one keyed limiter ([`KeyedLimiter`]).
//!
//! An attempt takes its tokens *before* any password work: a refused one gets 429 without
//! touching argon2, a failed one keeps its tokens spent, and a successful one gets them back
//! ([`LoginLimiter::succeeded`]), so signing in often never locks anyone out. However many
//! attempts arrive at once, at most the burst per account and per address reach the password
//! check. A refused attempt gets the same 429 whether or not the account exists, and no bucket
//! is made for a name seen only in refused attempts; the map is bounded (see the limiter).
//! The per-address part lives here because only the server knows the socket; a caller without
//! a known address (a test driving the app directly) is limited by account only.

use std::time::Duration;

use datahub_core::limit::{KeyedLimiter, RateLimit};

/// How many failed sign-ins are allowed: a burst, refilled at a steady rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimit {
    /// Failures allowed at once per account name and per client address. Default: 10.
    pub burst: u32,
    /// How long one failure takes to be forgotten. Default: 6 s (10 a minute).
    pub refill: Duration,
}

impl Default for LoginLimit {
    fn default() -> Self {
        Self {
            burst: 10,
            refill: Duration::from_secs(6),
        }
    }
}

impl LoginLimit {
    fn rate(self) -> RateLimit {
        let refill = self.refill.as_secs_f64();
        RateLimit {
            burst: self.burst,
            per_second: if refill > 0.0 { 1.0 / refill } else { f64::MAX },
        }
    }
}

/// The buckets of recent sign-in attempts, by account name and client address.
#[derive(Debug)]
pub struct LoginLimiter {
    limit: LoginLimit,
    buckets: KeyedLimiter<String>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(LoginLimit::default())
    }
}

impl LoginLimiter {
    /// A limiter with `limit`.
    pub fn new(limit: LoginLimit) -> Self {
        Self {
            limit,
            buckets: KeyedLimiter::new(limit.rate()),
        }
    }

    /// The limit it applies.
    pub fn limit(&self) -> LoginLimit {
        self.limit
    }

    /// Takes one attempt for `account` from `client`, before the password is checked.
    ///
    /// # Errors
    /// How long until both have an attempt again, when either is spent; nothing is taken then.
    pub fn attempt(&self, account: &str, client: Option<&str>) -> Result<(), Duration> {
        self.buckets.take_all(&keys(account, client))
    }

    /// Gives back the attempt of a sign-in that succeeded.
    pub fn succeeded(&self, account: &str, client: Option<&str>) {
        self.buckets.refund(&keys(account, client));
    }

    /// How many buckets are kept now (account names and addresses).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is kept.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

fn keys(account: &str, client: Option<&str>) -> Vec<String> {
    let mut keys = vec![format!("user:{}", account.to_lowercase())];
    if let Some(client) = client {
        keys.push(format!("addr:{client}"));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn attempts_run_out_then_refill() {
        let l = LoginLimiter::new(LoginLimit {
            burst: 3,
            refill: Duration::from_secs(10),
        });
        for _ in 0..3 {
            l.attempt("Admin", Some("127.0.0.1")).unwrap();
        }
        assert!(
            l.attempt("admin", Some("127.0.0.9")).is_err(),
            "per account"
        );
        assert!(
            l.attempt("other", Some("127.0.0.1")).is_err(),
            "per address"
        );
        l.attempt("other", Some("127.0.0.9")).unwrap();
        // A success gives its attempt back.
        l.succeeded("other", Some("127.0.0.9"));
        tokio::time::advance(Duration::from_secs(10)).await;
        l.attempt("admin", Some("127.0.0.1")).unwrap();
    }

    /// The wait is the real refill time of the emptiest bucket, not a constant.
    #[tokio::test(start_paused = true)]
    async fn the_wait_is_the_refill_time() {
        let l = LoginLimiter::new(LoginLimit {
            burst: 2,
            refill: Duration::from_secs(6),
        });
        l.attempt("admin", Some("127.0.0.1")).unwrap();
        l.attempt("admin", Some("127.0.0.1")).unwrap();
        assert_eq!(
            l.attempt("admin", Some("127.0.0.1")),
            Err(Duration::from_secs(6))
        );
        tokio::time::advance(Duration::from_millis(2_500)).await;
        // Another address, the same account: the account's bucket decides the wait.
        let wait = l.attempt("admin", Some("127.0.0.9")).unwrap_err();
        assert!(
            wait > Duration::from_millis(3_400) && wait <= Duration::from_millis(3_500),
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_millis(3_500)).await;
        l.attempt("admin", Some("127.0.0.1")).unwrap();
    }
}
