//! [`Balancing`]: what "balanced" means for the lease taker: as many leases per worker, or
//! as much measured throughput per worker.
//!
//! ```text
//!  Balancing::LeaseCount ───────────────▶ plan_take: target = ceil(leases / workers)
//!  Balancing::Throughput { tolerance_percent, min_lease_kbps }
//!      ─▶ plan_take: weight = max(throughputKBps, min_lease_kbps); share = total / workers;
//!         take while under the share, steal while more than the tolerance under it
//! ```

/// How the lease taker balances leases among workers. Every worker of an application must
/// use the same balancing: workers judging balance differently steal leases back and forth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Balancing {
    /// The Java KCL 2.x's rule: each worker aims for `ceil(leases / workers)` leases,
    /// whatever they carry. The default: workers of earlier versions of this library and
    /// of the Java KCL 2.x (and `kcl-rs`) balance this way, so a rolling upgrade or a
    /// shared table never has two rules fight.
    #[default]
    LeaseCount,
    /// Balances the throughput each lease's holder measured and wrote on it
    /// (`throughputKBps`, as the Java KCL 3.x does), so that a hot shard counts for more
    /// than an idle one: a worker holding a hot shard holds fewer others.
    Throughput {
        /// Hysteresis, in percent of a worker's fair share (the total throughput over the
        /// workers): a worker steals only while it is more than this under its share, and
        /// only a lease whose move narrows the gap between it and its victim by more than
        /// this, so that leases do not flap on small changes of load.
        tolerance_percent: u32,
        /// The least a lease weighs, in KB (1,024 bytes) per second: an idle shard still
        /// costs its reader calls, so it still counts.
        min_lease_kbps: u32,
    },
}

impl Balancing {
    /// [`Balancing::Throughput`] with a tolerance of 10 % (the Java KCL 3.x rebalances
    /// workers outside the average ± 10 %) and idle leases weighing 1 KB/s.
    pub const fn throughput() -> Self {
        Self::Throughput {
            tolerance_percent: 10,
            min_lease_kbps: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_count_is_the_default_and_throughput_has_documented_settings() {
        assert_eq!(Balancing::default(), Balancing::LeaseCount);
        assert_eq!(
            Balancing::throughput(),
            Balancing::Throughput {
                tolerance_percent: 10,
                min_lease_kbps: 1
            }
        );
    }
}
