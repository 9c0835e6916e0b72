//! [`LeaseConfig`]: the timings and limits of lease handling, the Java KCL 2.x's by default.
//!
//! ```text
//!  failover_time ─▶ renew_interval = failover / 3 − 25 ms (whole ms, at least 1 ms)
//!               └─▶ taker_interval = 2 × (failover + 25 ms)
//!  max_leases_per_worker (no limit), max_leases_to_steal_at_one_time (1) ─▶ plan_take
//! ```

use std::time::Duration;

/// The slack the Java KCL subtracts from renewals and adds to takes (25 ms).
const EPSILON: Duration = Duration::from_millis(25);

/// Timing and limits of lease handling.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseConfig {
    /// A lease whose counter has not moved for this long is expired and may be taken.
    pub failover_time: Duration,
    /// How often held leases are renewed.
    pub renew_interval: Duration,
    /// How often the taker scans the table.
    pub taker_interval: Duration,
    /// The most leases this worker holds at once.
    pub max_leases_per_worker: usize,
    /// The most leases stolen in one taker round.
    pub max_leases_to_steal_at_one_time: usize,
}

impl LeaseConfig {
    /// The Java KCL 2.x timings for a failover time: renew every `failover / 3 - 25 ms`,
    /// take every `(failover + 25 ms) × 2`, no lease limit, steal at most one lease per round.
    pub fn new(failover_time: Duration) -> Self {
        Self {
            failover_time,
            // Whole milliseconds, as the Java KCL computes it.
            renew_interval: Duration::from_millis((failover_time.as_millis() / 3) as u64)
                .saturating_sub(EPSILON)
                .max(Duration::from_millis(1)),
            taker_interval: (failover_time + EPSILON) * 2,
            max_leases_per_worker: usize::MAX,
            max_leases_to_steal_at_one_time: 1,
        }
    }
}

impl Default for LeaseConfig {
    /// [`LeaseConfig::new`] with the Java KCL's default failover time of 10 s.
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_java_kcl() {
        let c = LeaseConfig::default();
        assert_eq!(c.failover_time, Duration::from_secs(10));
        assert_eq!(c.renew_interval, Duration::from_millis(3_333 - 25));
        assert_eq!(c.taker_interval, Duration::from_millis(20_050));
        assert_eq!(c.max_leases_per_worker, usize::MAX);
        assert_eq!(c.max_leases_to_steal_at_one_time, 1);
    }
}
