//! Status derivation: pure and deterministic, one [`Tracker`] per connection.
//!
//! The rules (DESIGN.md "Probe and monitor", SECURITY.md S24):
//!
//! - **unknown**: never checked (a fresh tracker).
//! - **down**: after `fall` failures in a row; it stays down until `rise` successes in a row,
//!   whatever those successes look like.
//! - **degraded**: a failure while fewer than `fall` failures are in a row, or a success that is
//!   slow (latency above `slow_ms`), whose server certificate expires within
//!   [`CERT_EXPIRY_WARNING`] (or has expired), or whose server has more than
//!   [`BUSY_CONNECTIONS_PERCENT`] % of `max_connections` in use.
//! - **healthy**: a success with none of those facts.
//!
//! A success resets the failure run and a failure resets the success run, so a flapping target
//! (alternating results) never reaches `down` with `fall >= 2`, and a `down` target leaves `down`
//! only on exactly its `rise`-th success in a row.

use time::{Duration, OffsetDateTime};

use crate::model::{Check, HealthStatus};
use crate::{Error, Result};

use super::CheckResult;

/// A server certificate expiring within this time makes a success `degraded`: 14 days.
pub const CERT_EXPIRY_WARNING: Duration = Duration::days(14);

/// A server with more than this share of `max_connections` in use makes a success `degraded`:
/// 90 %.
pub const BUSY_CONNECTIONS_PERCENT: u64 = 90;

/// How many results in a row change the status to and from `down`. `Default`: `fall` 3,
/// `rise` 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HysteresisConfig {
    fall: u32,
    rise: u32,
}

impl HysteresisConfig {
    /// The default number of failures in a row that make a connection `down`: 3.
    pub const DEFAULT_FALL: u32 = 3;
    /// The default number of successes in a row that end `down`: 2.
    pub const DEFAULT_RISE: u32 = 2;

    /// Validated thresholds.
    ///
    /// # Errors
    /// `InvalidInput` on `monitor.fall` or `monitor.rise` when 0 or above 100.
    pub fn new(fall: u32, rise: u32) -> Result<Self> {
        let check = |field: &'static str, n: u32| {
            if (1..=100).contains(&n) {
                Ok(n)
            } else {
                Err(Error::invalid(field, "must be between 1 and 100"))
            }
        };
        Ok(Self {
            fall: check("monitor.fall", fall)?,
            rise: check("monitor.rise", rise)?,
        })
    }

    /// Failures in a row that make a connection `down`, 1–100. Default: 3.
    pub fn fall(&self) -> u32 {
        self.fall
    }

    /// Successes in a row that end `down`, 1–100. Default: 2.
    pub fn rise(&self) -> u32 {
        self.rise
    }
}

impl Default for HysteresisConfig {
    fn default() -> Self {
        Self {
            fall: Self::DEFAULT_FALL,
            rise: Self::DEFAULT_RISE,
        }
    }
}

/// The status state of one connection: the current status and the current runs of failures and
/// successes. `Default`: unknown, never checked, default thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tracker {
    config: HysteresisConfig,
    status: HealthStatus,
    failures: u32,
    successes: u32,
}

impl Tracker {
    /// A tracker of a connection never checked (`unknown`).
    pub fn new(config: HysteresisConfig) -> Self {
        Self {
            config,
            status: HealthStatus::Unknown,
            failures: 0,
            successes: 0,
        }
    }

    /// A tracker resuming from a stored status and the most recent checks (newest first), so a
    /// restart neither forgets a `down` connection nor restarts its runs from zero.
    pub fn resume(config: HysteresisConfig, status: HealthStatus, newest_first: &[Check]) -> Self {
        let failures = newest_first.iter().take_while(|c| !c.ok).count();
        let successes = newest_first.iter().take_while(|c| c.ok).count();
        Self {
            config,
            status,
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
            successes: u32::try_from(successes).unwrap_or(u32::MAX),
        }
    }

    /// The current status.
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// The thresholds in use.
    pub fn config(&self) -> HysteresisConfig {
        self.config
    }

    /// Failures in a row so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// Successes in a row so far.
    pub fn consecutive_successes(&self) -> u32 {
        self.successes
    }

    /// Takes one check result at `now` and returns the new status (see the module docs for the
    /// rules). `slow_ms` is the connection's slow threshold.
    pub fn next(
        &mut self,
        result: &CheckResult,
        slow_ms: u32,
        now: OffsetDateTime,
    ) -> HealthStatus {
        self.status = if result.ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.status == HealthStatus::Down && self.successes < self.config.rise {
                HealthStatus::Down
            } else if success_is_degraded(result, slow_ms, now) {
                HealthStatus::Degraded
            } else {
                HealthStatus::Healthy
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.status == HealthStatus::Down || self.failures >= self.config.fall {
                HealthStatus::Down
            } else {
                HealthStatus::Degraded
            }
        };
        self.status
    }
}

/// Whether a successful check shows a problem: slow, certificate expiring soon, or a server
/// nearly out of connections.
pub fn success_is_degraded(result: &CheckResult, slow_ms: u32, now: OffsetDateTime) -> bool {
    let slow = result.latency_ms > slow_ms;
    let expiring = result
        .cert_not_after
        .is_some_and(|not_after| not_after - now < CERT_EXPIRY_WARNING);
    let busy = match (result.connections_used, result.max_connections) {
        (Some(used), Some(max)) if max > 0 => {
            u64::from(used) * 100 > u64::from(max) * BUSY_CONNECTIONS_PERCENT
        }
        _ => false,
    };
    slow || expiring || busy
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectionId;
    use crate::model::FailureKind;
    use proptest::prelude::*;

    use HealthStatus::{Degraded as Dg, Down as Dn, Healthy as H, Unknown as U};

    const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;
    const SLOW_MS: u32 = 1_000;

    fn ok() -> CheckResult {
        CheckResult::success(10)
    }

    fn fail() -> CheckResult {
        CheckResult::failure(FailureKind::ConnectionRefused, 3)
    }

    fn slow() -> CheckResult {
        CheckResult::success(SLOW_MS + 1)
    }

    /// Runs `results` through a fresh tracker and returns the statuses after each.
    fn run(config: HysteresisConfig, results: &[CheckResult]) -> Vec<HealthStatus> {
        let mut t = Tracker::new(config);
        results.iter().map(|r| t.next(r, SLOW_MS, NOW)).collect()
    }

    /// `o` ok, `x` failure, `s` slow success.
    fn script(s: &str) -> Vec<CheckResult> {
        s.chars()
            .map(|c| match c {
                'o' => ok(),
                'x' => fail(),
                's' => slow(),
                other => panic!("bad script letter {other}"),
            })
            .collect()
    }

    fn check(fall: u32, rise: u32, results: &str, expected: &[HealthStatus]) {
        let config = HysteresisConfig::new(fall, rise).unwrap();
        assert_eq!(
            run(config, &script(results)),
            expected,
            "fall {fall} rise {rise} script {results}"
        );
    }

    #[test]
    fn sequences() {
        check(3, 2, "", &[]);
        check(3, 2, "o", &[H]);
        check(3, 2, "s", &[Dg]);
        check(3, 2, "x", &[Dg]);
        check(3, 2, "xx", &[Dg, Dg]);
        check(3, 2, "xxx", &[Dg, Dg, Dn]);
        check(3, 2, "xxxo", &[Dg, Dg, Dn, Dn]);
        // A down target needs exactly `rise` successes, slow or not.
        check(3, 2, "xxxoo", &[Dg, Dg, Dn, Dn, H]);
        check(3, 2, "xxxss", &[Dg, Dg, Dn, Dn, Dg]);
        check(3, 2, "xxxoxoo", &[Dg, Dg, Dn, Dn, Dn, Dn, H]);
        // A failure while down resets the success run.
        check(3, 3, "xxxooxooo", &[Dg, Dg, Dn, Dn, Dn, Dn, Dn, Dn, H]);
        // A flapping target never reaches down with fall = 3 (nor 2).
        check(3, 2, "xoxoxoxoxo", &[Dg, H, Dg, H, Dg, H, Dg, H, Dg, H]);
        check(2, 2, "oxoxoxox", &[H, Dg, H, Dg, H, Dg, H, Dg]);
        check(3, 2, "xxoxxoxxo", &[Dg, Dg, H, Dg, Dg, H, Dg, Dg, H]);
        // fall 1 and rise 1: no hysteresis.
        check(1, 1, "xoxo", &[Dn, H, Dn, H]);
        // Healthy, then down and back, then slow.
        check(3, 2, "ooxxxxooos", &[H, H, Dg, Dg, Dn, Dn, Dn, H, H, Dg]);
    }

    #[test]
    fn never_checked_is_unknown() {
        assert_eq!(Tracker::new(HysteresisConfig::default()).status(), U);
        assert_eq!(Tracker::default().status(), U);
    }

    #[test]
    fn defaults_are_three_and_two() {
        let c = HysteresisConfig::default();
        assert_eq!((c.fall(), c.rise()), (3, 2));
        assert_eq!(
            HysteresisConfig::new(0, 2).unwrap_err().field(),
            Some("monitor.fall")
        );
        assert_eq!(
            HysteresisConfig::new(3, 0).unwrap_err().field(),
            Some("monitor.rise")
        );
        assert_eq!(
            HysteresisConfig::new(3, 101).unwrap_err().field(),
            Some("monitor.rise")
        );
    }

    #[test]
    fn facts_of_a_success() {
        let cases: [(CheckResult, bool); 10] = [
            (ok(), false),
            (CheckResult::success(SLOW_MS), false),
            (slow(), true),
            (ok().with_cert(NOW + Duration::days(15)), false),
            (ok().with_cert(NOW + Duration::days(13)), true),
            (ok().with_cert(NOW - Duration::days(1)), true),
            (ok().with_connections(90, 100), false),
            (ok().with_connections(91, 100), true),
            (ok().with_connections(5, 0), false),
            (ok().with_connections(u32::MAX, u32::MAX), true),
        ];
        for (result, degraded) in cases {
            assert_eq!(
                success_is_degraded(&result, SLOW_MS, NOW),
                degraded,
                "{result:?}"
            );
            let mut t = Tracker::default();
            let expected = if degraded { Dg } else { H };
            assert_eq!(t.next(&result, SLOW_MS, NOW), expected, "{result:?}");
        }
    }

    #[test]
    fn resume_keeps_down_and_the_runs() {
        let id = ConnectionId::new();
        let row = |ok: bool| Check {
            connection: id,
            at: NOW,
            ok,
            latency_ms: 1,
            error_kind: None,
            step: None,
            status: Dn,
        };
        // Newest first: one success after failures.
        let mut t = Tracker::resume(HysteresisConfig::default(), Dn, &[row(true), row(false)]);
        assert_eq!(t.consecutive_successes(), 1);
        assert_eq!(t.next(&ok(), SLOW_MS, NOW), H);
        // Two failures in a row stored: the next failure makes it down.
        let mut t = Tracker::resume(HysteresisConfig::default(), Dg, &[row(false), row(false)]);
        assert_eq!(t.next(&fail(), SLOW_MS, NOW), Dn);
    }

    /// The specification, brute force: `down` after the last run of `fall` failures unless a
    /// run of `rise` successes followed it.
    fn spec_is_down(history: &[bool], fall: usize, rise: usize) -> bool {
        let mut down = false;
        for end in 1..=history.len() {
            let tail = &history[..end];
            if tail.len() >= fall && tail[tail.len() - fall..].iter().all(|ok| !ok) {
                down = true;
            } else if down && tail.len() >= rise && tail[tail.len() - rise..].iter().all(|ok| *ok) {
                down = false;
            }
        }
        down
    }

    proptest! {
        #[test]
        fn status_changes_no_more_often_than_fall_and_rise_allow(
            fall in 1u32..6,
            rise in 1u32..6,
            history in proptest::collection::vec(any::<bool>(), 0..80),
        ) {
            let config = HysteresisConfig::new(fall, rise).unwrap();
            let mut t = Tracker::new(config);
            let mut entered_down = 0usize;
            let mut left_down = 0usize;
            let mut last_entry: Option<usize> = None;
            for (i, success) in history.iter().enumerate() {
                let before = t.status();
                let result = if *success { ok() } else { fail() };
                let after = t.next(&result, SLOW_MS, NOW);
                prop_assert_eq!(after == Dn, spec_is_down(&history[..=i], fall as usize, rise as usize));
                prop_assert_ne!(after, U);
                if before != Dn && after == Dn {
                    // Entering down needs the last `fall` results to be failures.
                    prop_assert!(i + 1 >= fall as usize);
                    prop_assert!(history[i + 1 - fall as usize..=i].iter().all(|ok| !ok));
                    entered_down += 1;
                    last_entry = Some(i);
                }
                if before == Dn && after != Dn {
                    // Leaving down needs the last `rise` results to be successes, all after
                    // the entry.
                    prop_assert!(history[i + 1 - rise as usize..=i].iter().all(|ok| *ok));
                    prop_assert!(last_entry.is_some_and(|e| i - e >= rise as usize));
                    left_down += 1;
                }
            }
            let failures = history.iter().filter(|ok| !**ok).count();
            let successes = history.len() - failures;
            prop_assert!(entered_down <= failures / fall as usize);
            prop_assert!(left_down <= successes / rise as usize);
        }
    }
}
