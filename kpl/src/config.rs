//! Producer settings, their defaults and their ranges. The public setters are on
//! [`ProducerBuilder`](crate::ProducerBuilder), which fills a [`Config`].
//!
//! ```text
//!  ProducerBuilder::with_x(v) ─▶ Config ─▶ validate() ─▶ ConfigError naming the setting
//!                                                    └─▶ Producer::start(client, config)
//! ```

use std::time::Duration;

use crate::error::ConfigError;

/// Kinesis' write limits per shard, per second.
pub(crate) const SHARD_RECORDS_PER_SEC: f64 = 1000.0;
pub(crate) const SHARD_BYTES_PER_SEC: f64 = 1024.0 * 1024.0;
/// Kinesis' `PutRecords` limits.
pub(crate) const PUT_RECORDS_MAX_COUNT: usize = 500;
pub(crate) const PUT_RECORDS_MAX_SIZE: usize = 5 * 1024 * 1024;
/// Bookkeeping bytes charged to the memory budget per record on top of its data and key,
/// so that the budget bounds real memory, not only payload: measured at about 560 bytes
/// per accepted record (queue slot, outcome channel, handle, allocations) with 100-byte
/// records (see BENCHMARKS.md, peak RSS).
pub const RECORD_OVERHEAD_BYTES: usize = 512;
/// Longest duration any setting accepts: 7 days. Longer ones are refused rather than
/// overflowing the clock arithmetic they feed.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest memory budget, in bytes or records: what one tokio semaphore can count.
pub(crate) const MAX_BUDGET: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// All settings, fixed at build time.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_buffered_time: Duration,
    pub(crate) aggregation: bool,
    pub(crate) aggregation_max_size: usize,
    pub(crate) aggregation_max_count: u64,
    pub(crate) collection_max_count: usize,
    pub(crate) collection_max_size: usize,
    pub(crate) record_ttl: Duration,
    pub(crate) rate_limit_percent: u32,
    pub(crate) max_outstanding_bytes: usize,
    pub(crate) max_outstanding_records: usize,
    pub(crate) max_concurrent_requests: usize,
    pub(crate) per_key_ordering: bool,
    pub(crate) compression_level: Option<u32>,
    pub(crate) fail_if_throttled: bool,
    pub(crate) shard_map_refresh_interval: Duration,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_record_size: usize,
    pub(crate) request_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_buffered_time: Duration::from_millis(100),
            aggregation: true,
            aggregation_max_size: 51_200,
            aggregation_max_count: 4_294_967_295,
            collection_max_count: 500,
            collection_max_size: 5 * 1024 * 1024,
            record_ttl: Duration::from_secs(30),
            rate_limit_percent: 150,
            max_outstanding_bytes: 64 * 1024 * 1024,
            max_outstanding_records: 1_000_000,
            max_concurrent_requests: 24,
            per_key_ordering: false,
            compression_level: None,
            fail_if_throttled: false,
            shard_map_refresh_interval: Duration::from_secs(60),
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            max_record_size: kinesis_agg::MAX_RECORD_SIZE,
            request_timeout: Duration::from_secs(6),
        }
    }
}

fn bad(setting: &'static str, value: impl ToString, reason: &'static str) -> ConfigError {
    ConfigError {
        setting,
        value: value.to_string(),
        reason,
    }
}

/// A duration setting that must be above zero and at most [`MAX_DURATION`].
fn check_duration(setting: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() || d > MAX_DURATION {
        return Err(bad(
            setting,
            format!("{d:?}"),
            "must be greater than zero and at most 7 days",
        ));
    }
    Ok(())
}

impl Config {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let c = self;
        if !(64..=kinesis_agg::MAX_RECORD_SIZE).contains(&c.aggregation_max_size) {
            return Err(bad(
                "aggregation_max_size",
                c.aggregation_max_size,
                "must be within 64 ..= 1048576 bytes",
            ));
        }
        if !(1..=4_294_967_295).contains(&c.aggregation_max_count) {
            return Err(bad(
                "aggregation_max_count",
                c.aggregation_max_count,
                "must be within 1 ..= 4294967295",
            ));
        }
        if !(1..=PUT_RECORDS_MAX_COUNT).contains(&c.collection_max_count) {
            return Err(bad(
                "collection_max_count",
                c.collection_max_count,
                "must be within 1 ..= 500",
            ));
        }
        if !(1024..=PUT_RECORDS_MAX_SIZE).contains(&c.collection_max_size) {
            return Err(bad(
                "collection_max_size",
                c.collection_max_size,
                "must be within 1024 ..= 5242880 bytes",
            ));
        }
        if c.max_buffered_time > MAX_DURATION {
            return Err(bad(
                "max_buffered_time",
                format!("{:?}", c.max_buffered_time),
                "must be at most 7 days",
            ));
        }
        check_duration("record_ttl", c.record_ttl)?;
        if !(1..=10_000).contains(&c.rate_limit_percent) {
            return Err(bad(
                "rate_limit_percent",
                c.rate_limit_percent,
                "must be within 1 ..= 10000",
            ));
        }
        if !(64 * 1024..=MAX_BUDGET).contains(&c.max_outstanding_bytes) {
            return Err(bad(
                "max_outstanding_bytes",
                c.max_outstanding_bytes,
                "must be within 65536 ..= usize::MAX >> 3 bytes",
            ));
        }
        if !(1..=MAX_BUDGET).contains(&c.max_outstanding_records) {
            return Err(bad(
                "max_outstanding_records",
                c.max_outstanding_records,
                "must be within 1 ..= usize::MAX >> 3",
            ));
        }
        if !(1..=256).contains(&c.max_concurrent_requests) {
            return Err(bad(
                "max_concurrent_requests",
                c.max_concurrent_requests,
                "must be within 1 ..= 256",
            ));
        }
        if let Some(level) = c.compression_level {
            if level > 9 {
                return Err(bad("compression", level, "level must be within 0 ..= 9"));
            }
        }
        check_duration("shard_map_refresh_interval", c.shard_map_refresh_interval)?;
        if c.min_backoff.is_zero() || c.min_backoff > c.max_backoff || c.max_backoff > MAX_DURATION
        {
            return Err(bad(
                "backoff",
                format!("{:?}..{:?}", c.min_backoff, c.max_backoff),
                "min must be greater than zero and not above max, max at most 7 days",
            ));
        }
        check_duration("request_timeout", c.request_timeout)?;
        if !(1024..=10 * 1024 * 1024).contains(&c.max_record_size) {
            return Err(bad(
                "max_record_size",
                c.max_record_size,
                "must be within 1024 ..= 10485760 bytes",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_pinned() {
        let c = Config::default();
        assert_eq!(c.max_buffered_time, Duration::from_millis(100));
        assert!(c.aggregation);
        assert_eq!(c.aggregation_max_size, 51_200);
        assert_eq!(c.aggregation_max_count, 4_294_967_295);
        assert_eq!(c.collection_max_count, 500);
        assert_eq!(c.collection_max_size, 5_242_880);
        assert_eq!(c.record_ttl, Duration::from_secs(30));
        assert_eq!(c.rate_limit_percent, 150);
        assert_eq!(c.max_outstanding_bytes, 64 << 20);
        assert_eq!(c.max_outstanding_records, 1_000_000);
        assert_eq!(c.max_concurrent_requests, 24);
        assert!(!c.per_key_ordering);
        assert_eq!(c.compression_level, None);
        assert!(!c.fail_if_throttled);
        assert_eq!(c.shard_map_refresh_interval, Duration::from_secs(60));
        assert_eq!(c.min_backoff, Duration::from_millis(50));
        assert_eq!(c.max_backoff, Duration::from_secs(2));
        assert_eq!(c.max_record_size, 1_048_576);
        assert_eq!(c.request_timeout, Duration::from_secs(6));
        assert_eq!(RECORD_OVERHEAD_BYTES, 512);
        c.validate().unwrap();
    }

    #[test]
    fn out_of_range_settings_name_themselves() {
        type Change = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "aggregation_max_size",
                Box::new(|c| c.aggregation_max_size = 63),
            ),
            (
                "aggregation_max_count",
                Box::new(|c| c.aggregation_max_count = 0),
            ),
            (
                "collection_max_count",
                Box::new(|c| c.collection_max_count = 501),
            ),
            (
                "collection_max_size",
                Box::new(|c| c.collection_max_size = 6 << 20),
            ),
            ("record_ttl", Box::new(|c| c.record_ttl = Duration::ZERO)),
            ("record_ttl", Box::new(|c| c.record_ttl = Duration::MAX)),
            (
                "max_buffered_time",
                Box::new(|c| c.max_buffered_time = MAX_DURATION + Duration::from_secs(1)),
            ),
            ("rate_limit_percent", Box::new(|c| c.rate_limit_percent = 0)),
            (
                "max_outstanding_bytes",
                Box::new(|c| c.max_outstanding_bytes = 10),
            ),
            (
                "max_outstanding_bytes",
                Box::new(|c| c.max_outstanding_bytes = usize::MAX),
            ),
            (
                "max_outstanding_records",
                Box::new(|c| c.max_outstanding_records = 0),
            ),
            (
                "max_outstanding_records",
                Box::new(|c| c.max_outstanding_records = usize::MAX),
            ),
            (
                "max_concurrent_requests",
                Box::new(|c| c.max_concurrent_requests = 0),
            ),
            ("compression", Box::new(|c| c.compression_level = Some(10))),
            (
                "shard_map_refresh_interval",
                Box::new(|c| c.shard_map_refresh_interval = Duration::ZERO),
            ),
            (
                "shard_map_refresh_interval",
                Box::new(|c| c.shard_map_refresh_interval = Duration::MAX),
            ),
            (
                "backoff",
                Box::new(|c| c.min_backoff = Duration::from_secs(5)),
            ),
            ("backoff", Box::new(|c| c.min_backoff = Duration::ZERO)),
            ("backoff", Box::new(|c| c.max_backoff = Duration::MAX)),
            (
                "request_timeout",
                Box::new(|c| c.request_timeout = Duration::ZERO),
            ),
            (
                "request_timeout",
                Box::new(|c| c.request_timeout = Duration::MAX),
            ),
            (
                "max_concurrent_requests",
                Box::new(|c| c.max_concurrent_requests = 257),
            ),
            ("max_record_size", Box::new(|c| c.max_record_size = 1023)),
            (
                "max_record_size",
                Box::new(|c| c.max_record_size = 11 << 20),
            ),
        ];
        for (name, set) in cases {
            let mut c = Config::default();
            set(&mut c);
            assert_eq!(c.validate().unwrap_err().setting, name);
        }
    }

    #[test]
    fn the_limits_themselves_are_allowed() {
        let c = Config {
            max_buffered_time: Duration::ZERO,
            record_ttl: MAX_DURATION,
            shard_map_refresh_interval: Duration::from_millis(1),
            min_backoff: Duration::from_millis(1),
            max_backoff: MAX_DURATION,
            request_timeout: MAX_DURATION,
            max_outstanding_bytes: MAX_BUDGET,
            max_outstanding_records: MAX_BUDGET,
            rate_limit_percent: 10_000,
            max_concurrent_requests: 256,
            ..Config::default()
        };
        c.validate().unwrap();
        assert_eq!(MAX_DURATION, Duration::from_secs(604_800));
    }
}
