//! Login rate limiting (SECURITY.md S20): failed sign-ins are counted per account name and per
//! client address in token buckets, so neither one account nor one address can be guessed at
//! speed. A refused attempt gets the same 429 whether or not the account exists.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The most buckets kept; beyond it, full (idle) buckets are forgotten first.
const MAX_BUCKETS: usize = 10_000;

/// How many failed sign-ins are allowed: a burst, refilled at a steady rate.
#[derive(Debug, Clone, Copy, PartialEq)]
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

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of recent sign-in failures.
#[derive(Debug)]
pub struct LoginLimiter {
    limit: LoginLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
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
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a sign-in for `account` from `client` may be tried now.
    pub fn allowed(&self, account: &str, client: Option<&str>) -> bool {
        self.check(account, client).is_ok()
    }

    /// `Ok` when a sign-in for `account` from `client` may be tried now; else how long until
    /// every bucket it draws on has a token again (the longest of their refill times).
    ///
    /// # Errors
    /// The wait, when a bucket is empty.
    pub fn check(&self, account: &str, client: Option<&str>) -> Result<(), Duration> {
        let now = Instant::now();
        let per_second = self.per_second();
        let mut buckets = self.lock();
        let mut wait = Duration::ZERO;
        for key in keys(account, client) {
            if let Some(bucket) = buckets.get_mut(&key) {
                let tokens = self.refill(bucket, now);
                if tokens < 1.0 {
                    let secs = ((1.0 - tokens) / per_second).min(86_400.0);
                    wait = wait.max(Duration::from_secs_f64(secs));
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Counts a failed sign-in against `account` and `client`.
    pub fn failed(&self, account: &str, client: Option<&str>) {
        let now = Instant::now();
        let burst = f64::from(self.limit.burst);
        let mut buckets = self.lock();
        if buckets.len() >= MAX_BUCKETS {
            buckets.retain(|_, b| b.tokens < burst);
        }
        for key in keys(account, client) {
            let bucket = buckets.entry(key).or_insert(Bucket {
                tokens: burst,
                at: now,
            });
            let tokens = self.refill(bucket, now);
            bucket.tokens = (tokens - 1.0).max(0.0);
        }
    }

    /// Tokens regained per second.
    fn per_second(&self) -> f64 {
        1.0 / self.limit.refill.as_secs_f64().max(0.001)
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) -> f64 {
        let per_second = self.per_second();
        let gained = now.saturating_duration_since(bucket.at).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + gained).min(f64::from(self.limit.burst));
        bucket.at = now;
        bucket.tokens
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bucket>> {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    async fn failures_run_out_then_refill() {
        let l = LoginLimiter::new(LoginLimit {
            burst: 3,
            refill: Duration::from_secs(10),
        });
        for _ in 0..3 {
            assert!(l.allowed("Admin", Some("127.0.0.1")));
            l.failed("admin", Some("127.0.0.1"));
        }
        assert!(!l.allowed("admin", Some("127.0.0.9")), "per account");
        assert!(!l.allowed("other", Some("127.0.0.1")), "per address");
        assert!(l.allowed("other", Some("127.0.0.9")));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(l.allowed("admin", Some("127.0.0.1")));
    }

    /// The wait is the real refill time of the emptiest bucket, not a constant.
    #[tokio::test(start_paused = true)]
    async fn the_wait_is_the_refill_time() {
        let l = LoginLimiter::new(LoginLimit {
            burst: 2,
            refill: Duration::from_secs(6),
        });
        assert_eq!(l.check("admin", Some("127.0.0.1")), Ok(()));
        l.failed("admin", Some("127.0.0.1"));
        l.failed("admin", Some("127.0.0.1"));
        assert_eq!(
            l.check("admin", Some("127.0.0.1")),
            Err(Duration::from_secs(6))
        );
        tokio::time::advance(Duration::from_millis(2_500)).await;
        let wait = l.check("admin", Some("127.0.0.9")).unwrap_err();
        assert!(
            wait > Duration::from_millis(3_400) && wait <= Duration::from_millis(3_500),
            "{wait:?}"
        );
        tokio::time::advance(Duration::from_millis(3_500)).await;
        assert_eq!(l.check("admin", Some("127.0.0.1")), Ok(()));
    }
}
