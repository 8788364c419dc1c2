//! Sign-in rate limiting per client address (SECURITY.md S20, S29), with the core's one keyed
//! limiter ([`KeyedLimiter`]). The per-account part is the Hub's ([`Hub::login`],
//! [`Hub::change_own_password`]): this part lives here because only the server knows the socket.
//!
//! A password guess takes its address's token *before* it reaches the Hub (and so before any
//! password work): a refused one gets 429 without touching argon2, a failed one keeps its token
//! spent, and any other outcome (success, the account's own limit, a store failure) gives it
//! back ([`AddressLimiter::give_back`]), so signing in often never locks anyone out. However
//! many attempts arrive at once, at most the burst per address reach the Hub. A refused
//! attempt gets the same 429 whether or not the account exists, and no bucket is made for an
//! address seen only in refused attempts; the map is bounded (see the limiter). A caller
//! without a known address (a test driving the app directly) is limited by account only.
//!
//! [`Hub::login`]: datahub_core::hub::Hub::login
//! [`Hub::change_own_password`]: datahub_core::hub::Hub::change_own_password

use std::time::Duration;

use datahub_core::limit::{KeyedLimiter, LoginLimit};

/// The buckets of recent password guesses by client address.
#[derive(Debug)]
pub struct AddressLimiter {
    limit: LoginLimit,
    buckets: KeyedLimiter<String>,
}

impl Default for AddressLimiter {
    fn default() -> Self {
        Self::new(LoginLimit::default())
    }
}

impl AddressLimiter {
    /// A limiter with `limit` per address.
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

    /// Takes one guess for `client`, before the password is checked; nothing without an
    /// address.
    ///
    /// # Errors
    /// How long until the address has a guess again, when it is spent; nothing is taken then.
    pub fn attempt(&self, client: Option<&str>) -> Result<(), Duration> {
        match client {
            Some(client) => self.buckets.take(&client.to_owned()),
            None => Ok(()),
        }
    }

    /// Gives back the guess of an attempt whose password was not found wrong.
    pub fn give_back(&self, client: Option<&str>) {
        if let Some(client) = client {
            self.buckets.refund(&[client.to_owned()]);
        }
    }

    /// How many buckets are kept now (addresses).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is kept.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per address (the per-account half is the Hub's, tested in the core).
    #[tokio::test(start_paused = true)]
    async fn attempts_run_out_then_refill() {
        let l = AddressLimiter::new(LoginLimit {
            burst: 3,
            refill: Duration::from_secs(10),
        });
        for _ in 0..3 {
            l.attempt(Some("127.0.0.1")).unwrap();
        }
        assert!(l.attempt(Some("127.0.0.1")).is_err(), "per address");
        l.attempt(Some("127.0.0.9")).unwrap();
        // A success gives its attempt back.
        l.give_back(Some("127.0.0.9"));
        tokio::time::advance(Duration::from_secs(10)).await;
        l.attempt(Some("127.0.0.1")).unwrap();
        // Without an address, nothing is counted here.
        for _ in 0..10 {
            l.attempt(None).unwrap();
        }
    }

    /// The wait is the real refill time of the address's bucket, not a constant.
    #[tokio::test(start_paused = true)]
    async fn the_wait_is_the_refill_time() {
        let l = AddressLimiter::new(LoginLimit {
            burst: 2,
            refill: Duration::from_secs(6),
        });
        l.attempt(Some("127.0.0.1")).unwrap();
        l.attempt(Some("127.0.0.1")).unwrap();
        assert_eq!(l.attempt(Some("127.0.0.1")), Err(Duration::from_secs(6)));
        tokio::time::advance(Duration::from_millis(2_500)).await;
        let wait = l.attempt(Some("127.0.0.1")).unwrap_err();
        assert!(
            wait > Duration::from_millis(3_400) && wait <= Duration::from_millis(3_500),
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_millis(3_500)).await;
        l.attempt(Some("127.0.0.1")).unwrap();
    }
}
