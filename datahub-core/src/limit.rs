//! One keyed token-bucket limiter for every rate limit of the product: connection tests per user
//! (SECURITY.md S16, S31) and password guesses per account name (S20, S29) in the Hub, and
//! password guesses per client address in the server.
//!
//! A caller takes its token *before* the work it guards, so however many requests arrive at
//! once, no more than the burst get through; a refused take says how long until a token is back
//! (an HTTP `Retry-After`). The map of buckets stays bounded: buckets that have refilled are
//! idle and are dropped (swept at most once a [`SWEEP_EVERY`]), and when the map is full the
//! fullest buckets go first, so a spray of new keys can never push out the emptied bucket of a
//! key under attack. It must never sleep, block on I/O, or hold its lock across an `await`.
//!
//! Why our own rather than `governor` (the field's keyed limiter, GCRA): two operations this
//! product needs are not in governor's keyed API (`check_key`, `check_key_n`,
//! `retain_recent`, `len`).
//! - Giving a token back ([`KeyedLimiter::refund`]): a sign-in takes its token before argon2
//!   (S29) and gets it back when it succeeds, so signing in often never locks anyone out.
//!   Governor (0.10) has no call that returns a cell once checked, nor one that looks without
//!   taking; taking the token only after a failed check instead would let a concurrent flood
//!   reach argon2 unbounded.
//! - A bound on the keys kept: governor's keyed store grows with every new key until
//!   `retain_recent` is called, and that drops only keys back at a full bucket; nothing caps the
//!   map or chooses what goes when it is full. The Hub alone (without the server's per-address
//!   limit before it) meets a spray of made-up account names directly.
//!
//! It also runs on tokio's clock, so paused-time tests drive it (governor would need a `Clock`
//! adapter for that), and it adds no dependency.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How often idle (refilled) buckets are swept out, at most.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The longest wait a refusal names: a day (also for a limit that never refills).
const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// A burst, refilled at a steady rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens allowed at once. Default: 20.
    pub burst: u32,
    /// Tokens regained per second. Default: 1.
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

impl RateLimit {
    /// How long until `tokens` (fewer than one) grows to one.
    fn wait_for_one(&self, tokens: f64) -> Duration {
        if self.per_second > 0.0 && self.per_second.is_finite() {
            let seconds = ((1.0 - tokens) / self.per_second).clamp(0.0, MAX_WAIT.as_secs_f64());
            Duration::from_secs_f64(seconds)
        } else {
            MAX_WAIT
        }
    }
}

/// How many password guesses (failed sign-ins, wrong current passwords) are allowed per account
/// name and, in an adapter that knows it, per client address: a burst, refilled at a steady
/// rate (SECURITY.md S20, S29).
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
    /// The same limit as a [`RateLimit`].
    pub fn rate(self) -> RateLimit {
        let refill = self.refill.as_secs_f64();
        RateLimit {
            burst: self.burst,
            per_second: if refill > 0.0 { 1.0 / refill } else { f64::MAX },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Buckets<K> {
    map: HashMap<K, Bucket>,
    last_sweep: Instant,
}

/// Token buckets by key.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    limit: RateLimit,
    max_keys: usize,
    buckets: Mutex<Buckets<K>>,
}

impl<K: Eq + Hash + Clone> KeyedLimiter<K> {
    /// The most buckets kept by default.
    pub const DEFAULT_MAX_KEYS: usize = 10_000;

    /// A limiter with `limit` per key, keeping at most [`Self::DEFAULT_MAX_KEYS`] buckets.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            max_keys: Self::DEFAULT_MAX_KEYS,
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// The same limiter keeping at most `max_keys` buckets (at least 1).
    #[must_use]
    pub fn with_max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// The limit of every key.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one token for `key`.
    ///
    /// # Errors
    /// How long until a token is back, when the bucket is empty; nothing is taken then, and no
    /// bucket is made for a key seen first in a refused take.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        self.take_all(std::slice::from_ref(key))
    }

    /// Takes one token from each of `keys`, or none when any of them is empty.
    ///
    /// # Errors
    /// The longest wait until every one of them has a token again; nothing is taken then, and
    /// no bucket is made for a key seen first in a refused take.
    fn take_all(&self, keys: &[K]) -> Result<(), Duration> {
        let now = Instant::now();
        let burst = f64::from(self.limit.burst);
        let mut buckets = self.lock();
        self.sweep(&mut buckets, now);
        if burst < 1.0 {
            return Err(MAX_WAIT);
        }
        let mut refused = None;
        for key in keys {
            let tokens = buckets
                .map
                .get(key)
                .map_or(burst, |b| self.refilled(b, now));
            if tokens < 1.0 {
                let wait = self.limit.wait_for_one(tokens);
                refused = Some(refused.map_or(wait, |w: Duration| w.max(wait)));
            }
        }
        if let Some(wait) = refused {
            return Err(wait);
        }
        for key in keys {
            let tokens = match buckets.map.get(key) {
                Some(b) => self.refilled(b, now),
                None => {
                    self.make_room(&mut buckets, now);
                    burst
                }
            };
            buckets.map.insert(
                key.clone(),
                Bucket {
                    tokens: tokens - 1.0,
                    at: now,
                },
            );
        }
        Ok(())
    }

    /// Gives one token back to each of `keys` (up to the burst), e.g. after a sign-in that
    /// succeeded. A key without a bucket is left alone.
    pub fn refund(&self, keys: &[K]) {
        let now = Instant::now();
        let burst = f64::from(self.limit.burst);
        let mut buckets = self.lock();
        for key in keys {
            if let Some(bucket) = buckets.map.get(key).copied() {
                let tokens = (self.refilled(&bucket, now) + 1.0).min(burst);
                buckets.map.insert(key.clone(), Bucket { tokens, at: now });
            }
        }
    }

    /// How long until `key` has a token again; zero when it has one now.
    pub fn retry_after(&self, key: &K) -> Duration {
        let now = Instant::now();
        let buckets = self.lock();
        match buckets.map.get(key) {
            Some(b) => {
                let tokens = self.refilled(b, now);
                if tokens >= 1.0 {
                    Duration::ZERO
                } else {
                    self.limit.wait_for_one(tokens)
                }
            }
            None => Duration::ZERO,
        }
    }

    /// How many buckets are kept now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no bucket is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tokens of `bucket` at `now`, refilled and capped at the burst.
    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        refilled(&self.limit, bucket, now)
    }

    /// Drops idle (full again) buckets, at most once per [`SWEEP_EVERY`].
    fn sweep(&self, buckets: &mut Buckets<K>, now: Instant) {
        if now.saturating_duration_since(buckets.last_sweep) < SWEEP_EVERY {
            return;
        }
        buckets.last_sweep = now;
        let (limit, burst) = (self.limit, f64::from(self.limit.burst));
        buckets.map.retain(|_, b| refilled(&limit, b, now) < burst);
    }

    /// Before a new bucket is added to a full map: drops the idle buckets, then, if still
    /// full, the fullest tenth, so the emptied buckets of keys under attack stay.
    fn make_room(&self, buckets: &mut Buckets<K>, now: Instant) {
        if buckets.map.len() < self.max_keys {
            return;
        }
        let (limit, burst) = (self.limit, f64::from(self.limit.burst));
        buckets.map.retain(|_, b| refilled(&limit, b, now) < burst);
        buckets.last_sweep = now;
        if buckets.map.len() < self.max_keys {
            return;
        }
        let mut levels: Vec<(f64, K)> = buckets
            .map
            .iter()
            .map(|(k, b)| (self.refilled(b, now), k.clone()))
            .collect();
        let drop = (self.max_keys / 10).max(1).min(levels.len());
        levels.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, key) in levels.into_iter().take(drop) {
            buckets.map.remove(&key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets<K>> {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The tokens of `bucket` at `now`, refilled and capped at the burst.
fn refilled(limit: &RateLimit, bucket: &Bucket, now: Instant) -> f64 {
    let gained = now.saturating_duration_since(bucket.at).as_secs_f64() * limit.per_second;
    let gained = if gained.is_finite() {
        gained.max(0.0)
    } else {
        0.0
    };
    (bucket.tokens + gained).min(f64::from(limit.burst))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, per_second: f64) -> KeyedLimiter<&'static str> {
        KeyedLimiter::new(RateLimit { burst, per_second })
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_a_steady_rate_per_key() {
        let l = limiter(3, 2.0);
        for _ in 0..3 {
            l.take(&"a").unwrap();
        }
        let wait = l.take(&"a").unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(l.retry_after(&"a"), Duration::from_millis(500));
        // Another key has a bucket of its own.
        l.take(&"b").unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        l.take(&"a").unwrap();
        assert!(l.take(&"a").is_err());
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            l.take(&"a").unwrap();
        }
        assert!(l.take(&"a").is_err());
    }

    /// S29: several keys are taken together or not at all, and a refused take makes no bucket.
    #[tokio::test(start_paused = true)]
    async fn take_all_is_all_or_nothing_and_refund_gives_back() {
        let l = limiter(2, 0.1);
        l.take_all(&["user", "addr"]).unwrap();
        l.take_all(&["user", "addr"]).unwrap();
        let wait = l.take_all(&["other", "addr"]).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        assert_eq!(l.len(), 2, "the refused key got no bucket");
        l.refund(&["user", "addr"]);
        l.take_all(&["user", "addr"]).unwrap();
        assert!(l.take(&"user").is_err());
        // A refund never goes past the burst.
        for _ in 0..5 {
            l.refund(&["user"]);
        }
        l.take(&"user").unwrap();
        l.take(&"user").unwrap();
        assert!(l.take(&"user").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_limit_that_never_refills_says_a_day() {
        let l = limiter(1, 0.0);
        l.take(&"a").unwrap();
        assert_eq!(l.take(&"a").unwrap_err(), MAX_WAIT);
        let none = limiter(0, 1.0);
        assert!(none.take(&"a").is_err());
    }

    /// S29: idle buckets are dropped for real, also those a single failure made.
    #[tokio::test(start_paused = true)]
    async fn idle_buckets_are_swept() {
        let l = KeyedLimiter::new(RateLimit {
            burst: 10,
            per_second: 1.0,
        });
        for i in 0..100_u32 {
            l.take(&i).unwrap();
        }
        assert_eq!(l.len(), 100);
        tokio::time::advance(SWEEP_EVERY).await;
        l.take(&1_000).unwrap();
        assert_eq!(l.len(), 1);
    }

    /// S29: a spray of new keys keeps the map bounded and never pushes out the emptied bucket of
    /// the key under attack.
    #[tokio::test(start_paused = true)]
    async fn a_spray_stays_bounded_and_keeps_the_attacked_key() {
        let l = KeyedLimiter::new(RateLimit {
            burst: 3,
            per_second: 0.01,
        })
        .with_max_keys(1_000);
        for _ in 0..3 {
            l.take(&u32::MAX).unwrap();
        }
        for i in 0..10_000_u32 {
            l.take(&i).unwrap();
            assert!(l.len() <= 1_000);
        }
        assert!(l.take(&u32::MAX).is_err(), "the attacked key was reset");
    }
}
