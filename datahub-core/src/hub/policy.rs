//! The target policy as the monitor's checks read it: cached for at most [`MAX_AGE`], so a
//! check costs no store read for it, and dropped at once when this hub changes the policy.
//!
//! Staleness: a change made through this process's [`Hub::set_policy`](super::Hub::set_policy)
//! applies to the next check that starts after it returns; a change made by another process
//! sharing the store applies to checks starting at most [`MAX_AGE`] (1 s) after it committed
//! (the age counts from when the read that filled the cache began). Interactive tests, pools
//! and saves never use the cache: they read the policy afresh.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::Result;
use crate::model::{TargetPolicy, TlsMode};
use crate::net::Policy;
use crate::store::Store;

/// The longest the monitor's checks use a policy read earlier: 1 s.
pub(super) const MAX_AGE: Duration = Duration::from_secs(1);

/// The policy a check runs under: compiled for the dialer, with the TLS floor.
#[derive(Debug, Clone)]
pub(super) struct Effective {
    /// The dialer's compiled allow/deny rules.
    pub(super) policy: Arc<Policy>,
    /// The lowest TLS mode allowed.
    pub(super) min_tls_mode: TlsMode,
}

impl Effective {
    /// Compiles `target`.
    pub(super) fn of(target: &TargetPolicy) -> Result<Self> {
        Ok(Self {
            policy: Arc::new(Policy::from_target(target)?),
            min_tls_mode: target.min_tls_mode,
        })
    }
}

/// The cache. Cheap to share; one per hub (its clones share it).
#[derive(Debug, Default)]
pub(super) struct PolicyCache {
    slot: Mutex<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    /// Bumped by every invalidation, so a read that began before one never fills the cache.
    generation: u64,
    cached: Option<(Effective, Instant)>,
}

impl PolicyCache {
    /// The policy, from the cache when read less than [`MAX_AGE`] ago, else from `store`.
    pub(super) async fn get(&self, store: &dyn Store) -> Result<Effective> {
        let generation = {
            let slot = self.lock();
            if let Some((effective, read_at)) = &slot.cached
                && read_at.elapsed() < MAX_AGE
            {
                return Ok(effective.clone());
            }
            slot.generation
        };
        let started = Instant::now();
        let effective = Effective::of(&store.policy().await?)?;
        let mut slot = self.lock();
        if slot.generation == generation {
            slot.cached = Some((effective.clone(), started));
        }
        Ok(effective)
    }

    /// Drops the cached policy: the next [`Self::get`] reads the store.
    pub(super) fn invalidate(&self) {
        let mut slot = self.lock();
        slot.generation = slot.generation.wrapping_add(1);
        slot.cached = None;
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        match self.slot.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
