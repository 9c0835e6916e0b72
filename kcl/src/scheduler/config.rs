//! The settings of a [`Scheduler`](super::Scheduler): what they default to and what
//! [`validate`](SchedulerConfig::validate) refuses.
//!
//! ```text
//!  SchedulerBuilder::with_* ──fills──▶ SchedulerConfig ──validate──▶ Ok(()) | ConfigError
//!                                            │
//!                                            └──lease_config──▶ LeaseConfig (renew, take, limits)
//! ```
//!
//! The names given to [`Scheduler::builder`](super::Scheduler::builder) and the clients are
//! checked by the builder itself; everything else lives here, with its default in
//! [`SchedulerConfig::default`].

use std::time::Duration;

use crate::config_error::{check_name, ConfigError, CONSUMER_NAME_LEN, TABLE_NAME_LEN};
use crate::consumer::{
    Batching, FailureRetry, FanOutConfig, PayloadDecompression, PollingConfig, Retrieval,
};
use crate::initial_position::InitialPosition;
use crate::leases::{Balancing, LeaseConfig};
use crate::multi_stream::FormerStreamsLeasesDeletionStrategy;
use kinesis_agg::OutsideRangePolicy;

/// The shortest failover time accepted: renewals run every failover / 3 − 25 ms, which
/// leaves no time between them below about 100 ms.
pub const MIN_FAILOVER_TIME: Duration = Duration::from_millis(100);

/// The longest duration any setting accepts: 365 days. Deadlines are the time now plus a
/// setting (or a sum of them, e.g. a handoff's patience), and a time that far ahead
/// cannot be represented: longer settings would end the worker in a panic.
pub const MAX_DURATION_SETTING: Duration = Duration::from_secs(365 * 24 * 3600);

/// A worker id unique to this process: host name, process id and a random suffix.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Every tunable setting of a worker; the builder's setters fill it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchedulerConfig {
    /// Names the lease table when set; otherwise the application name does.
    pub(crate) table_name: Option<String>,
    /// This worker's `leaseOwner` when set; otherwise [`default_worker_id`] at build time.
    pub(crate) worker_id: Option<String>,
    /// Where shards without a checkpoint start.
    pub(crate) initial_position: InitialPosition,
    /// How long a lease whose counter does not move stays its owner's; renewals follow it.
    pub(crate) failover_time: Duration,
    /// How often the taker scans the table; `None` follows the failover time
    /// (2 × (failover + 25 ms)).
    pub(crate) taker_interval: Option<Duration>,
    /// How long the previous owner of a lease moved by a graceful handoff may take to
    /// stop its consumer (see `leases::handoff`).
    pub(crate) graceful_handoff_timeout: Duration,
    /// The most leases this worker holds.
    pub(crate) max_leases_per_worker: usize,
    /// The most leases stolen per taker round (0: never steal).
    pub(crate) max_leases_to_steal_at_one_time: Option<usize>,
    /// What the lease taker balances: lease counts, or measured throughput.
    pub(crate) balancing: Balancing,
    /// Whether workers prove they are alive by heartbeats in the fleet table (fast
    /// failover, no periodic lease writes) rather than by renewing every lease.
    pub(crate) worker_heartbeats: bool,
    /// How every shard consumer reads its shard, with its settings.
    pub(crate) retrieval: Retrieval,
    /// What consumers do with records of aggregates outside their shard's range.
    pub(crate) outside_range: OutsideRangePolicy,
    /// Whether consumers inflate gzip and zlib payloads.
    pub(crate) decompression: PayloadDecompression,
    /// Lambda-style batching of `process_records` calls, if any.
    pub(crate) batching: Option<Batching>,
    /// What consumers do after their processor reports a failed record or batch.
    pub(crate) failure_retry: FailureRetry,
    /// How often shards are listed to find new ones.
    pub(crate) shard_sync_interval: Duration,
    /// How often a lease waiting for its parents checks them again.
    pub(crate) parent_poll_interval: Duration,
    /// How often held leases are matched with running consumers (not settable: a tick
    /// reads only the parents of leases not running yet).
    pub(crate) dispatch_interval: Duration,
    /// How long a graceful shutdown waits for processors before aborting them.
    pub(crate) shutdown_timeout: Duration,
    /// How often a multi-stream worker asks its stream tracker for the streams.
    pub(crate) stream_tracker_interval: Duration,
    /// What becomes of the leases of streams a multi-stream worker no longer consumes.
    pub(crate) former_streams_deletion: FormerStreamsLeasesDeletionStrategy,
}

/// How often a multi-stream worker asks its tracker, unless set otherwise: 60 s.
pub(crate) const DEFAULT_STREAM_TRACKER_INTERVAL: Duration = Duration::from_secs(60);

impl Default for SchedulerConfig {
    /// The defaults each setter of [`SchedulerBuilder`](super::SchedulerBuilder) documents:
    /// the Java KCL's lease timings for a 10 s failover time, no lease limit, one lease
    /// stolen at a time, polling with [`PollingConfig::default`], a shard sync every 60 s, parents
    /// checked every second, a 60 s shutdown bound; for multi-stream workers the tracker
    /// asked every 60 s and former streams' leases deleted after an hour.
    fn default() -> Self {
        let lease = LeaseConfig::default();
        Self {
            table_name: None,
            worker_id: None,
            initial_position: InitialPosition::TrimHorizon,
            failover_time: lease.failover_time,
            taker_interval: None,
            graceful_handoff_timeout: lease.graceful_handoff_timeout,
            max_leases_per_worker: lease.max_leases_per_worker,
            max_leases_to_steal_at_one_time: None,
            balancing: Balancing::LeaseCount,
            worker_heartbeats: true,
            retrieval: Retrieval::default(),
            outside_range: OutsideRangePolicy::Drop,
            decompression: PayloadDecompression::Off,
            batching: None,
            failure_retry: FailureRetry::default(),
            shard_sync_interval: Duration::from_secs(60),
            parent_poll_interval: Duration::from_secs(1),
            dispatch_interval: Duration::from_millis(200),
            shutdown_timeout: Duration::from_secs(60),
            stream_tracker_interval: DEFAULT_STREAM_TRACKER_INTERVAL,
            former_streams_deletion: FormerStreamsLeasesDeletionStrategy::default(),
        }
    }
}

impl SchedulerConfig {
    /// The lease timings and limits: the Java KCL's for the failover time, with the taker
    /// interval and the limits set here.
    pub(crate) fn lease_config(&self) -> LeaseConfig {
        let mut lease = LeaseConfig::new(self.failover_time);
        if let Some(interval) = self.taker_interval {
            lease.taker_interval = interval;
        }
        lease.max_leases_per_worker = self.max_leases_per_worker;
        lease.balancing = self.balancing;
        lease.graceful_handoff_timeout = self.graceful_handoff_timeout;
        lease.max_leases_to_steal_at_one_time =
            self.max_leases_to_steal_at_one_time
                .unwrap_or(if self.worker_heartbeats {
                    // The fleet counts every worker: a newcomer's share is exact, taken
                    // in one round.
                    usize::MAX
                } else {
                    lease.max_leases_to_steal_at_one_time
                });
        lease
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// The first bad setting, in this order: [`ConfigError::InvalidTableName`],
    /// [`ConfigError::InvalidWorkerId`], [`ConfigError::ZeroDuration`] (`failover_time`,
    /// `taker_interval`, `graceful_handoff_timeout`, `shard_sync_interval`,
    /// `parent_poll_interval`, `polling.idle_time_between_reads`, `polling.min_time_between_calls`,
    /// `fan_out.renew_after`, `fan_out.idle_timeout`),
    /// [`ConfigError::OutOfRange`] (`failover_time` under [`MIN_FAILOVER_TIME`],
    /// `balancing.tolerance_percent` outside 1 to 100, `balancing.min_lease_kbps` 0,
    /// `max_leases_per_worker` 0, `polling.max_records` outside 1 to 10000,
    /// `polling.prefetch_batches` 0, `fan_out.event_buffer` outside 1 to 10000,
    /// `fan_out.renew_after` outside 5 s to 5 min, `fan_out.idle_timeout` under 1 s),
    /// [`ConfigError::InvalidConsumerName`] (a fan-out `consumer_name` given),
    /// [`ConfigError::OutOfRange`] (any duration, `shutdown_timeout` and
    /// `batching.max_wait` included, longer than [`MAX_DURATION_SETTING`]).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(table) = &self.table_name {
            check_name(table, TABLE_NAME_LEN).map_err(|reason| ConfigError::InvalidTableName {
                name: table.clone(),
                reason,
            })?;
        }
        if self.worker_id.as_deref() == Some("") {
            return Err(ConfigError::InvalidWorkerId {
                id: String::new(),
                reason: "is empty".to_owned(),
            });
        }
        let (polling, fan_out) = match &self.retrieval {
            Retrieval::Polling(p) => (Some(p), None),
            Retrieval::FanOut(f) => (None, Some(f)),
        };
        let durations = [
            ("failover_time", Some(self.failover_time)),
            ("taker_interval", self.taker_interval),
            (
                "graceful_handoff_timeout",
                Some(self.graceful_handoff_timeout),
            ),
            ("shard_sync_interval", Some(self.shard_sync_interval)),
            ("parent_poll_interval", Some(self.parent_poll_interval)),
            (
                "stream_tracker_interval",
                Some(self.stream_tracker_interval),
            ),
            (
                "former_streams_deletion",
                match self.former_streams_deletion {
                    FormerStreamsLeasesDeletionStrategy::DeleteAfter(grace) => Some(grace),
                    FormerStreamsLeasesDeletionStrategy::NoDeletion => None,
                },
            ),
            (
                "polling.idle_time_between_reads",
                polling.map(|p| p.idle_time_between_reads),
            ),
            (
                "polling.min_time_between_calls",
                polling.map(|p| p.min_time_between_calls),
            ),
            ("fan_out.renew_after", fan_out.map(|f| f.renew_after)),
            ("fan_out.idle_timeout", fan_out.map(|f| f.idle_timeout)),
        ];
        if let Some(&(setting, _)) = durations
            .iter()
            .find(|(_, d)| d.is_some_and(|d| d.is_zero()))
        {
            return Err(ConfigError::ZeroDuration { setting });
        }
        if self.failover_time < MIN_FAILOVER_TIME {
            return Err(ConfigError::OutOfRange {
                setting: "failover_time",
                value: i64::try_from(self.failover_time.as_millis()).unwrap_or(i64::MAX),
                allowed: "100 ms or more (leases are renewed every failover / 3 - 25 ms)",
            });
        }
        if let Balancing::Throughput {
            tolerance_percent,
            min_lease_kbps,
        } = self.balancing
        {
            if !(1..=100).contains(&tolerance_percent) {
                return Err(ConfigError::OutOfRange {
                    setting: "balancing.tolerance_percent",
                    value: i64::from(tolerance_percent),
                    allowed: "1 to 100 (percent of a worker's fair share)",
                });
            }
            if min_lease_kbps == 0 {
                return Err(ConfigError::OutOfRange {
                    setting: "balancing.min_lease_kbps",
                    value: 0,
                    allowed: "1 or more (an idle lease must still weigh something)",
                });
            }
        }
        if self.max_leases_per_worker == 0 {
            return Err(ConfigError::OutOfRange {
                setting: "max_leases_per_worker",
                value: 0,
                allowed: "1 or more",
            });
        }
        if let Some(p) = polling {
            validate_polling(p)?;
        }
        if let Some(f) = fan_out {
            validate_fan_out(f)?;
        }
        if self.batching.is_some_and(|b| b.max_records == 0) {
            return Err(ConfigError::OutOfRange {
                setting: "batching.max_records",
                value: 0,
                allowed: "1 or more",
            });
        }
        if self.failure_retry.max_attempts == Some(0) {
            return Err(ConfigError::OutOfRange {
                setting: "failure_retry.max_attempts",
                value: 0,
                allowed: "1 or more",
            });
        }
        let others = [
            ("shutdown_timeout", Some(self.shutdown_timeout)),
            ("batching.max_wait", self.batching.map(|b| b.max_wait)),
        ];
        if let Some((setting, d)) = durations
            .into_iter()
            .chain(others)
            .find_map(|(setting, d)| {
                d.filter(|d| *d > MAX_DURATION_SETTING)
                    .map(|d| (setting, d))
            })
        {
            return Err(ConfigError::OutOfRange {
                setting,
                value: i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
                allowed: "at most 365 days (31536000000 ms)",
            });
        }
        Ok(())
    }
}

/// The ranges of [`PollingConfig`]'s numbers.
fn validate_polling(p: &PollingConfig) -> Result<(), ConfigError> {
    if !(1..=10_000).contains(&p.max_records) {
        return Err(ConfigError::OutOfRange {
            setting: "polling.max_records",
            value: i64::from(p.max_records),
            allowed: "1 to 10000 (the GetRecords limit)",
        });
    }
    if p.prefetch_batches == 0 {
        return Err(ConfigError::OutOfRange {
            setting: "polling.prefetch_batches",
            value: 0,
            allowed: "1 or more",
        });
    }
    Ok(())
}

/// The most events a fan-out shard may buffer (each may carry megabytes).
const MAX_EVENT_BUFFER: usize = 10_000;

/// [`FanOutConfig`]'s consumer name (when given), buffer and timings.
fn validate_fan_out(f: &FanOutConfig) -> Result<(), ConfigError> {
    if let Some(name) = &f.consumer_name {
        check_name(name, CONSUMER_NAME_LEN).map_err(|reason| ConfigError::InvalidConsumerName {
            name: name.clone(),
            reason,
        })?;
    }
    if !(1..=MAX_EVENT_BUFFER).contains(&f.event_buffer) {
        return Err(ConfigError::OutOfRange {
            setting: "fan_out.event_buffer",
            value: i64::try_from(f.event_buffer).unwrap_or(i64::MAX),
            allowed: "1 to 10000",
        });
    }
    // Kinesis refuses a subscription within 5 s of the last one, and ends them at 5 min.
    let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    if !f.renew_after.is_zero()
        && !(Duration::from_secs(5)..=Duration::from_secs(300)).contains(&f.renew_after)
    {
        return Err(ConfigError::OutOfRange {
            setting: "fan_out.renew_after",
            value: millis(f.renew_after),
            allowed: "5000 to 300000 ms (Kinesis refuses a subscription within 5 s of the last, and ends one after 5 min)",
        });
    }
    if !f.idle_timeout.is_zero() && f.idle_timeout < Duration::from_secs(1) {
        return Err(ConfigError::OutOfRange {
            setting: "fan_out.idle_timeout",
            value: millis(f.idle_timeout),
            allowed: "1000 ms or more",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_follow_the_failover_time() {
        let c = SchedulerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.taker_interval, None);
        assert_eq!(c.stream_tracker_interval, Duration::from_secs(60));
        assert_eq!(
            c.former_streams_deletion,
            FormerStreamsLeasesDeletionStrategy::DeleteAfter(Duration::from_secs(3600))
        );
        assert_eq!(c.balancing, Balancing::LeaseCount);
        assert_eq!(c.graceful_handoff_timeout, Duration::from_secs(30));
        let renewing = SchedulerConfig {
            worker_heartbeats: false,
            ..SchedulerConfig::default()
        };
        assert_eq!(renewing.lease_config(), LeaseConfig::default());
        assert_eq!(
            c.lease_config(),
            LeaseConfig {
                max_leases_to_steal_at_one_time: usize::MAX,
                ..LeaseConfig::default()
            }
        );
    }

    #[test]
    fn the_graceful_handoff_timeout_reaches_the_lease_config_and_zero_is_refused() {
        let c = SchedulerConfig {
            graceful_handoff_timeout: Duration::from_secs(5),
            ..SchedulerConfig::default()
        };
        c.validate().unwrap();
        assert_eq!(
            c.lease_config().graceful_handoff_timeout,
            Duration::from_secs(5)
        );
        let zero = SchedulerConfig {
            graceful_handoff_timeout: Duration::ZERO,
            ..SchedulerConfig::default()
        };
        assert_eq!(
            zero.validate(),
            Err(ConfigError::ZeroDuration {
                setting: "graceful_handoff_timeout"
            })
        );
    }

    #[test]
    fn default_worker_ids_differ() {
        let (a, b) = (default_worker_id(), default_worker_id());
        assert_ne!(a, b);
        assert!(a.contains(&std::process::id().to_string()));
    }
}
