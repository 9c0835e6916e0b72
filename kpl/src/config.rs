//! Producer settings and their defaults.

use std::time::Duration;

use aws_sdk_kinesis::Client;

use crate::error::ConfigError;
use crate::producer::Producer;

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

/// Builds a [`Producer`]. Every setting has a default, documented on its setter; the
/// KPL's defaults are kept where they make sense.
///
/// # Usage
/// ```no_run
/// # async fn demo(client: aws_sdk_kinesis::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use kinesis_producer::Producer;
///
/// let producer = Producer::builder(client)
///     .with_max_buffered_time(Duration::from_millis(50))
///     .with_per_key_ordering(true)
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ProducerBuilder {
    /// The SDK client every call goes through (its config decides endpoint and credentials).
    client: Client,
    /// The settings collected so far.
    config: Config,
}

impl ProducerBuilder {
    pub(crate) fn new(client: Client) -> Self {
        ProducerBuilder {
            client,
            config: Config::default(),
        }
    }

    /// How long a record may wait to be aggregated and collected before it is sent.
    /// Default 100 ms (the KPL's `RecordMaxBufferedTime`); allowed 0 (send at once) ..=
    /// 7 days. Lower means lower latency and smaller calls; higher means better packing.
    pub fn with_max_buffered_time(mut self, t: Duration) -> Self {
        self.config.max_buffered_time = t;
        self
    }

    /// Whether to pack user records bound for the same shard into KPL aggregates.
    /// Default on. Aggregates are read by the Java KCL, this project's consumer and every
    /// KPL-aware reader.
    pub fn with_aggregation(mut self, on: bool) -> Self {
        self.config.aggregation = on;
        self
    }

    /// Largest aggregate, in bytes. Default 51,200 (the KPL's `AggregationMaxSize`);
    /// allowed 64 ..= 1,048,576.
    pub fn with_aggregation_max_size(mut self, bytes: usize) -> Self {
        self.config.aggregation_max_size = bytes;
        self
    }

    /// Most user records in one aggregate. Default 4,294,967,295 (the KPL's
    /// `AggregationMaxCount`); allowed 1 ..= 4,294,967,295.
    pub fn with_aggregation_max_count(mut self, records: u64) -> Self {
        self.config.aggregation_max_count = records;
        self
    }

    /// Most Kinesis records in one `PutRecords` call. Default 500 (the KPL's
    /// `CollectionMaxCount` and Kinesis' limit); allowed 1 ..= 500.
    pub fn with_collection_max_count(mut self, records: usize) -> Self {
        self.config.collection_max_count = records;
        self
    }

    /// Most bytes (data plus partition keys) in one `PutRecords` call. Default 5 MiB
    /// (the KPL's `CollectionMaxSize` and Kinesis' limit); allowed 1 KiB ..= 5 MiB.
    pub fn with_collection_max_size(mut self, bytes: usize) -> Self {
        self.config.collection_max_size = bytes;
        self
    }

    /// How long the producer keeps trying to deliver a record before it fails with
    /// [`FailureReason::Expired`](crate::FailureReason::Expired). Default 30 s (the KPL's
    /// `RecordTtl`); allowed 1 ms ..= 7 days.
    pub fn with_record_ttl(mut self, ttl: Duration) -> Self {
        self.config.record_ttl = ttl;
        self
    }

    /// Per-shard rate limit, as a percentage of Kinesis' shard write limits (1,000
    /// records/s and 1 MiB/s). Default 150 (the KPL's `RateLimit`): a little over the
    /// limit, so bursts use the shard fully and Kinesis' throttling does the rest.
    /// Allowed 1 ..= 10,000.
    pub fn with_rate_limit_percent(mut self, percent: u32) -> Self {
        self.config.rate_limit_percent = percent;
        self
    }

    /// Memory budget: bytes held for records not yet settled, counting data, partition
    /// key and [`RECORD_OVERHEAD_BYTES`] per record. `put` waits while it is spent;
    /// `try_put` fails fast. Default 64 MiB; allowed 64 KiB ..= `usize::MAX >> 3` (what a
    /// tokio semaphore counts).
    pub fn with_max_outstanding_bytes(mut self, bytes: usize) -> Self {
        self.config.max_outstanding_bytes = bytes;
        self
    }

    /// Most records not yet settled. Default 1,000,000; allowed 1 ..= `usize::MAX >> 3`.
    pub fn with_max_outstanding_records(mut self, records: usize) -> Self {
        self.config.max_outstanding_records = records;
        self
    }

    /// Most `PutRecords` calls in flight at once. Default 24 (the KPL's
    /// `MaxConnections`); allowed 1 ..= 256.
    pub fn with_max_concurrent_requests(mut self, calls: usize) -> Self {
        self.config.max_concurrent_requests = calls;
        self
    }

    /// Guarantees that records with the same hash key land in Kinesis in the order they
    /// were put, also across retries and throttling: at most one Kinesis record per shard
    /// is in flight at a time, and failed records go back to the head of their shard's
    /// queue. Default off (like the KPL, which can reorder). Costs throughput per shard
    /// without aggregation; with aggregation one aggregate per round trip is usually
    /// above the shard's limit anyway.
    pub fn with_per_key_ordering(mut self, on: bool) -> Self {
        self.config.per_key_ordering = on;
        self
    }

    /// Compresses each Kinesis record with zlib at this level (0-9) when that makes it
    /// smaller, marked so that `kinesis-agg`'s deaggregator (and so this project's
    /// consumer) inflates it transparently. Default off. Other consumers, the Java KCL
    /// included, see such records as opaque bytes.
    pub fn with_compression(mut self, level: Option<u32>) -> Self {
        self.config.compression_level = level;
        self
    }

    /// Fails a record with [`FailureReason::Throttled`](crate::FailureReason::Throttled)
    /// the first time Kinesis throttles it, instead of retrying until its TTL. Default off.
    pub fn with_fail_if_throttled(mut self, on: bool) -> Self {
        self.config.fail_if_throttled = on;
        self
    }

    /// How often each stream's shard map is reloaded with `ListShards` even when nothing
    /// suggests a reshard. Default 60 s; allowed 1 ms ..= 7 days. It is also reloaded at
    /// once when a record lands in a shard other than predicted.
    pub fn with_shard_map_refresh_interval(mut self, every: Duration) -> Self {
        self.config.shard_map_refresh_interval = every;
        self
    }

    /// Bounds of the jittered exponential backoff applied to a shard after a failed put.
    /// Default 50 ms to 2 s; `min` must be above zero and not above `max`, `max` at most
    /// 7 days.
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.min_backoff = min;
        self.config.max_backoff = max;
        self
    }

    /// Largest record (data plus partition key) accepted. Default 1 MiB, Kinesis' limit;
    /// raise it (up to 10 MiB) only for streams whose limit was raised.
    pub fn with_max_record_size(mut self, bytes: usize) -> Self {
        self.config.max_record_size = bytes;
        self
    }

    /// How long one `PutRecords` call may take before it is abandoned and its records are
    /// retried (until their TTL). Default 6 s (the KPL's `RequestTimeout`); allowed
    /// 1 ms ..= 7 days. It bounds a
    /// call even when the SDK client has no timeout of its own, so that a stalled endpoint
    /// cannot keep a record from its outcome.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Checks the settings and starts the producer's background pipeline on the current
    /// tokio runtime.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first setting out of range.
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn build(self) -> Result<Producer, ConfigError> {
        self.config.validate()?;
        Ok(Producer::start(self.client, self.config))
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
