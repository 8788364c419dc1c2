//! A per-user token bucket: how often a user may run connection tests (SECURITY.md S16), so the
//! test button cannot be turned into a port scanner or a password sprayer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result, UserId};

/// How many tests a user may run: a burst, refilled at a steady rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tests allowed at once. Default: 20.
    pub burst: u32,
    /// Tests regained per second. Default: 1.
    pub per_second: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 20,
            per_second: 1.0,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every user seen recently.
#[derive(Debug)]
pub(super) struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<UserId, Bucket>>,
}

impl RateLimiter {
    pub(super) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `user`.
    ///
    /// # Errors
    /// `RateLimited`, saying how long to wait, when the bucket is empty.
    pub(super) fn take(&self, user: UserId) -> Result<()> {
        let now = Instant::now();
        let burst = f64::from(self.limit.burst);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget full buckets now and then, so the map holds only recently active users.
        if buckets.len() > 10_000 {
            let rate = self.limit.per_second;
            buckets.retain(|_, b| b.tokens + rate * (now - b.at).as_secs_f64() < burst);
        }
        let bucket = buckets.entry(user).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = self.limit.per_second * (now - bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = if self.limit.per_second > 0.0 {
            Duration::from_secs_f64(((1.0 - bucket.tokens) / self.limit.per_second).min(86_400.0))
        } else {
            Duration::from_secs(86_400)
        };
        Err(Error::rate_limited(
            format!(
                "too many connection tests: try again in {} s",
                whole_seconds(wait)
            ),
            wait,
        ))
    }
}

/// A wait in whole seconds, rounded up, at least 1: what a client is told to wait.
pub(crate) fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    let rounded = if wait.subsec_nanos() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    };
    rounded.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_a_steady_rate_per_user() {
        let limiter = RateLimiter::new(RateLimit {
            burst: 3,
            per_second: 2.0,
        });
        let (a, b) = (UserId::new(), UserId::new());
        for _ in 0..3 {
            limiter.take(a).unwrap();
        }
        let err = limiter.take(a).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::RateLimited);
        // Empty at 2 per second: the next token is 0.5 s away, told as 1 s in the message.
        assert_eq!(err.retry_after(), Some(Duration::from_millis(500)));
        assert!(err.message().ends_with("try again in 1 s"), "{err}");
        // Another user has a bucket of its own.
        limiter.take(b).unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        limiter.take(a).unwrap();
        assert!(limiter.take(a).is_err());
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            limiter.take(a).unwrap();
        }
        assert!(limiter.take(a).is_err());
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        for (wait, secs) in [
            (Duration::ZERO, 1),
            (Duration::from_millis(1), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_millis(5999), 6),
            (Duration::from_secs(86_400), 86_400),
        ] {
            assert_eq!(whole_seconds(wait), secs, "{wait:?}");
        }
    }
}
