//! [`ObservedCounters`]: when this worker first saw each lease's current counter (and
//! owners), on its own monotonic clock; a counter unchanged for the failover time means the
//! owner is gone.
//!
//! ```text
//!  scan (every taker round) ─observe(leases, now)─▶ key → (counter, owners, since)
//!     counter or owners changed, or new key ─▶ since = now;  key gone ─▶ forgotten
//!  expired(key, now, failover) = now − since > failover
//! ```
//!
//! The owners count too because a graceful handoff's start changes `leaseOwner` and
//! `checkpointOwner` but leaves the counter (`leases::handoff`): time the counter stood
//! still before the handoff started says nothing about its previous owner finishing it.
//!
//! Only counters this worker observed and its own clock count, never wall clocks, so
//! skewed hosts cannot steal early. Pure: the caller passes `now`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::leases::Lease;

/// What the taker saw of a lease, on this worker's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    /// The counter last seen.
    counter: u64,
    /// `leaseOwner` and `checkpointOwner` last seen (a handoff's start moves only these).
    owners: (Option<String>, Option<String>),
    /// When this worker first saw that counter value.
    since: Instant,
}

/// The counters seen by the taker, by lease key.
#[derive(Debug, Default)]
pub(crate) struct ObservedCounters {
    /// When each lease free to take (unowned or expired) was first seen so, for leases
    /// nobody takes: those free for a whole taker interval are overdue.
    free_since: HashMap<String, Instant>,
    /// The last counter of each lease in the table, and since when.
    by_key: HashMap<String, Observed>,
}

impl ObservedCounters {
    /// Takes in one scan of the table made at `now`.
    pub(crate) fn observe(&mut self, leases: &[Lease], now: Instant) {
        let keys: HashSet<&str> = leases.iter().map(|l| l.lease_key.as_str()).collect();
        self.by_key.retain(|k, _| keys.contains(k.as_str()));
        self.free_since.retain(|k, _| keys.contains(k.as_str()));
        for lease in leases {
            self.saw(lease, now);
        }
    }

    /// Takes in one lease's counter and owners, seen (or written by this worker) at `now`.
    pub(crate) fn saw(&mut self, lease: &Lease, now: Instant) {
        let owners = (lease.owner.clone(), lease.checkpoint_owner.clone());
        match self.by_key.get_mut(&lease.lease_key) {
            Some(o) if o.counter == lease.counter && o.owners == owners => {}
            Some(o) => {
                o.counter = lease.counter;
                o.owners = owners;
                o.since = now;
            }
            None => {
                self.by_key.insert(
                    lease.lease_key.clone(),
                    Observed {
                        counter: lease.counter,
                        owners,
                        since: now,
                    },
                );
            }
        }
    }

    /// The leases of `view` free to take (unowned or expired) that have been so for at
    /// least `interval`: nobody took them in a whole taker round (say their share belongs
    /// to a worker that cannot take), so the plan takes them beyond the target.
    pub(crate) fn overdue(
        &mut self,
        view: &[super::take_plan::SeenLease<'_>],
        now: Instant,
        interval: Duration,
    ) -> HashSet<String> {
        let free: HashSet<&str> = view
            .iter()
            .filter(|s| s.lease.owner.is_none() || s.expired)
            .map(|s| s.lease.lease_key.as_str())
            .collect();
        self.free_since.retain(|k, _| free.contains(k.as_str()));
        for k in &free {
            self.free_since.entry((*k).to_owned()).or_insert(now);
        }
        self.free_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= interval)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether the lease's counter has not moved for longer than `failover` at `now`.
    /// A lease never observed is not expired.
    pub(crate) fn expired(&self, lease_key: &str, now: Instant, failover: Duration) -> bool {
        self.by_key
            .get(lease_key)
            .is_some_and(|o| now.duration_since(o.since) > failover)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;

    fn lease(key: &str, counter: u64) -> Lease {
        let mut l = Lease::new(key, Checkpoint::TrimHorizon);
        l.counter = counter;
        l
    }

    #[test]
    fn a_counter_unchanged_for_longer_than_the_failover_time_is_expired() {
        let failover = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut seen = ObservedCounters::default();
        seen.observe(&[lease("a", 1), lease("b", 1)], t0);
        assert!(
            !seen.expired("a", t0 + failover, failover),
            "not longer yet"
        );
        seen.observe(&[lease("a", 1), lease("b", 2)], t0 + Duration::from_secs(5));
        let later = t0 + failover + Duration::from_millis(1);
        assert!(seen.expired("a", later, failover));
        assert!(!seen.expired("b", later, failover), "b moved at 5 s");
        assert!(!seen.expired("never-seen", later, failover));
    }

    #[test]
    fn leases_gone_from_the_table_are_forgotten() {
        let failover = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut seen = ObservedCounters::default();
        seen.observe(&[lease("a", 1)], t0);
        seen.observe(&[], t0 + Duration::from_secs(1));
        // Back with the same counter: its clock starts again.
        seen.observe(&[lease("a", 1)], t0 + Duration::from_secs(2));
        let at = t0 + failover + Duration::from_secs(1);
        assert!(!seen.expired("a", at, failover));
        // A counter this worker wrote itself counts as seen when written.
        seen.saw(&lease("a", 2), at);
        assert!(!seen.expired("a", at + failover, failover));
    }

    #[test]
    fn a_change_of_owners_alone_starts_the_clock_again() {
        let failover = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut seen = ObservedCounters::default();
        let mut l = lease("a", 7);
        l.owner = Some("w0".into());
        seen.observe(std::slice::from_ref(&l), t0);
        let later = t0 + failover * 3;
        assert!(seen.expired("a", later, failover));
        // A handoff starts: new owners, the same counter.
        l.owner = Some("w1".into());
        l.checkpoint_owner = Some("w0".into());
        seen.observe(std::slice::from_ref(&l), later);
        assert!(!seen.expired("a", later + failover, failover));
        assert!(seen.expired("a", later + failover * 2, failover));
    }
}
