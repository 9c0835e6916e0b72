//! [`LeaseConfig`]: the timings and limits of lease handling, the Java KCL 2.x's by default.
//!
//! ```text
//!  failover_time ─▶ renew_interval = failover / 3 − 25 ms (whole ms, at least 1 ms)
//!               └─▶ taker_interval = 2 × (failover + 25 ms)
//!               └─▶ heartbeat_interval = failover / 5 (with a fleet: see `leases::fleet`)
//!               └─▶ silence_threshold = failover − heartbeat_interval / 2
//!  max_leases_per_worker (no limit), max_leases_to_steal_at_one_time (1),
//!  balancing (lease count) ─▶ plan_take
//! ```

use std::time::Duration;

use super::balancing::Balancing;

/// The slack the Java KCL subtracts from renewals and adds to takes (25 ms).
const EPSILON: Duration = Duration::from_millis(25);

/// The Java KCL 3.x's default `gracefulLeaseHandoffTimeoutMillis` (30 s).
pub(crate) const DEFAULT_GRACEFUL_HANDOFF_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// How often a worker with a fleet beats (instead of renewing every lease).
    pub heartbeat_interval: Duration,
    /// What the taker balances: lease counts (the default) or measured throughput.
    pub balancing: Balancing,
    /// How long the previous owner of a lease moved by a graceful handoff may take to stop
    /// its consumer (whose processor gets `shutdown_requested` and may checkpoint) before
    /// it hands the lease over anyway, aborting the consumer. The next owner forces the
    /// handoff itself after [`handoff_patience`](Self::handoff_patience). Default 30 s,
    /// the Java KCL 3.x's `gracefulLeaseHandoffTimeoutMillis`.
    pub graceful_handoff_timeout: Duration,
}

impl LeaseConfig {
    /// The Java KCL 2.x timings for a failover time: renew every `failover / 3 - 25 ms`,
    /// take every `(failover + 25 ms) × 2`, no lease limit, steal at most one lease per
    /// round, balance by lease count.
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
            heartbeat_interval: (failover_time / 5).max(Duration::from_millis(1)),
            balancing: Balancing::LeaseCount,
            graceful_handoff_timeout: DEFAULT_GRACEFUL_HANDOFF_TIMEOUT,
        }
    }

    /// How long the next owner of a lease waits for a graceful handoff before it forces
    /// it: `graceful_handoff_timeout + taker_interval`. The previous owner learns of the
    /// handoff within a taker interval at worst (its own scan; a refused renewal or a fleet
    /// notice tell it sooner) and gives up `graceful_handoff_timeout` later at most, so a
    /// forced handoff never overlaps the previous owner's processing (see
    /// `leases::handoff`).
    pub fn handoff_patience(&self) -> Duration {
        self.graceful_handoff_timeout + self.taker_interval
    }

    /// How long a worker's heartbeat may stand still before it is declared gone:
    /// `failover_time − heartbeat_interval / 2`. Counted from the earliest its last beat
    /// can have landed (up to a heartbeat before it was seen), a death is seen within
    /// 1.1 × the failover time at most (on average within about the failover time).
    pub fn silence_threshold(&self) -> Duration {
        self.failover_time
            .saturating_sub(self.heartbeat_interval / 2)
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
        assert_eq!(c.heartbeat_interval, Duration::from_secs(2));
        assert_eq!(c.silence_threshold(), Duration::from_secs(9));
        assert_eq!(c.balancing, Balancing::LeaseCount);
        assert_eq!(c.graceful_handoff_timeout, Duration::from_secs(30));
        assert_eq!(c.handoff_patience(), Duration::from_millis(50_050));
    }
}
