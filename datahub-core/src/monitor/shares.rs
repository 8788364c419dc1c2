//! Who checks what when several monitors share one store: each connection has one *home*
//! monitor among the live ones, chosen by rendezvous (highest random weight) hashing of the
//! connection's id over the live monitors' ids. A monitor claims only its home connections'
//! checks (the claim stays atomic in the store, so two monitors with different views of who is
//! live can never both check a connection within the lease's hold); the others' checks it
//! leaves alone, without a store call.
//!
//! Rendezvous hashing needs no coordination beyond knowing who is live: every monitor with the
//! same view computes the same home for every connection; the shares are even (each monitor's
//! share of `n` connections is binomial around `n / live`); and when a monitor joins or
//! leaves, only the connections moving to or from it change home, none between the others.
//! The weight is a fixed mix of both ids' bits, the same in every build and on every machine
//! (replicas of different versions agree).

use uuid::Uuid;

use crate::ConnectionId;

/// The live monitors as one monitor sees them (itself included), and the home of any
/// connection in that view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shares {
    me: Uuid,
    /// Every live monitor, `me` included, sorted, without repeats.
    live: Vec<Uuid>,
}

impl Shares {
    /// The view of a monitor that knows of no other: every connection is its own.
    pub(crate) fn alone(me: Uuid) -> Self {
        Self { me, live: vec![me] }
    }

    /// The view of `me` seeing `live` alive (`me` is added when missing: a monitor asking is
    /// alive).
    pub(crate) fn new(me: Uuid, live: impl IntoIterator<Item = Uuid>) -> Self {
        let mut live: Vec<Uuid> = live.into_iter().chain([me]).collect();
        live.sort_unstable();
        live.dedup();
        Self { me, live }
    }

    /// How many monitors are live in this view.
    pub(crate) fn live(&self) -> usize {
        self.live.len()
    }

    /// The monitor whose share `id` is: of the live ones, the one with the highest weight for
    /// `id` (ties, which take a 64-bit collision, go to the lowest id).
    pub(crate) fn home(&self, id: ConnectionId) -> Uuid {
        let mut best = self.me;
        let mut best_weight = None;
        for &replica in &self.live {
            let w = weight(replica, id);
            if best_weight.is_none_or(|b| w > b) {
                best = replica;
                best_weight = Some(w);
            }
        }
        best
    }

    /// Whether `id`'s checks are this monitor's to claim.
    pub(crate) fn is_mine(&self, id: ConnectionId) -> bool {
        self.live.len() == 1 || self.home(id) == self.me
    }
}

/// The rendezvous weight of `replica` for connection `id`: a fixed 64-bit mix of both ids
/// (murmur3's finalizer over each 64-bit half in turn), so every monitor computes the same.
fn weight(replica: Uuid, id: ConnectionId) -> u64 {
    let (r0, r1) = replica.as_u64_pair();
    let (c0, c1) = id.as_uuid().as_u64_pair();
    let mut h = 0x9e37_79b9_7f4a_7c15_u64;
    for word in [r0, r1, c0, c1] {
        h = fmix64(h ^ word);
    }
    h
}

/// MurmurHash3's 64-bit finalizer: every input bit flips each output bit with probability ~½.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(seed: u64, n: usize) -> Vec<ConnectionId> {
        // Version-7-like ids: the same leading timestamp bits, random tails (as real ids made
        // in one burst look).
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = fmix64(state.wrapping_add(0x9e37_79b9_7f4a_7c15));
                let tail = fmix64(state ^ 0x5555);
                let bits =
                    (0x0190_0000_0000_7000_u128 << 64) | u128::from(state) << 32 ^ u128::from(tail);
                ConnectionId::from_uuid(Uuid::from_u128(bits))
            })
            .collect()
    }

    fn replicas(seed: u64, n: usize) -> Vec<Uuid> {
        (0..n)
            .map(|i| Uuid::from_u64_pair(0x0190_0000_0000_7000 | i as u64, fmix64(seed ^ i as u64)))
            .collect()
    }

    #[test]
    fn a_lone_monitor_owns_everything() {
        let me = Uuid::now_v7();
        let shares = Shares::alone(me);
        for id in ids(7, 100) {
            assert!(shares.is_mine(id));
            assert_eq!(shares.home(id), me);
        }
        assert_eq!(Shares::new(me, []).live(), 1);
        assert_eq!(Shares::new(me, [me, me]), shares);
    }

    #[test]
    fn every_view_of_the_same_monitors_agrees_on_each_home() {
        let live = replicas(3, 4);
        let views: Vec<Shares> = live
            .iter()
            .map(|me| Shares::new(*me, live.iter().rev().copied()))
            .collect();
        for id in ids(11, 1_000) {
            let homes: Vec<Uuid> = views.iter().map(|v| v.home(id)).collect();
            assert!(homes.iter().all(|h| *h == homes[0]), "{homes:?}");
            // Exactly one monitor holds each connection as its own.
            assert_eq!(views.iter().filter(|v| v.is_mine(id)).count(), 1);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

        /// Each of 2 to 8 monitors gets its share of 20,000 connections within ±15 % (a share
        /// is binomial: ±15 % is more than 8 standard deviations at these sizes).
        #[test]
        fn shares_are_balanced(seed in proptest::prelude::any::<u64>(), n in 2usize..=8) {
            let live = replicas(seed, n);
            let view = Shares::new(live[0], live.iter().copied());
            let conns = ids(seed ^ 0xabc, 20_000);
            let mut counts = vec![0usize; n];
            for id in &conns {
                let home = view.home(*id);
                let at = live.iter().position(|r| *r == home).unwrap();
                counts[at] += 1;
            }
            let mean = conns.len() as f64 / n as f64;
            for count in &counts {
                let off = (*count as f64 / mean - 1.0).abs();
                proptest::prop_assert!(off <= 0.15, "{counts:?}");
            }
        }

        /// A monitor joining takes connections only for itself (none move between the others),
        /// about its share; one leaving hands over only its own.
        #[test]
        fn minimal_movement_when_a_monitor_joins_or_leaves(
            seed in proptest::prelude::any::<u64>(),
            n in 1usize..=7,
        ) {
            let live = replicas(seed, n + 1);
            let (newcomer, before) = (live[n], &live[..n]);
            let old = Shares::new(before[0], before.iter().copied());
            let new = Shares::new(before[0], live.iter().copied());
            let conns = ids(seed ^ 0xdef, 4_000);
            let mut moved = 0usize;
            for id in &conns {
                let (was, is) = (old.home(*id), new.home(*id));
                if was != is {
                    proptest::prop_assert_eq!(is, newcomer);
                    moved += 1;
                }
                // Leaving is joining backwards: only the leaver's connections move.
                if is != newcomer {
                    proptest::prop_assert_eq!(was, is);
                }
            }
            let expected = conns.len() as f64 / (n + 1) as f64;
            proptest::prop_assert!(
                (moved as f64 - expected).abs() <= 0.25 * expected,
                "{moved} moved, {expected} expected"
            );
        }
    }
}
