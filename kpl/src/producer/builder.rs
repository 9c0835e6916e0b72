//! The builder of a [`Producer`]: one setter per setting, each documenting its default
//! and range.
//!
//! ```text
//!  Producer::builder(client) ─▶ with_x(v) … ─▶ build() ─▶ Config::validate ─▶ Producer::start
//! ```

use std::time::Duration;

use aws_sdk_kinesis::Client;

use super::Producer;
use crate::config::Config;
use crate::error::ConfigError;

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
    ///
    /// It also bounds how long records put before a stream's first shard map is loaded
    /// wait for it, so that they can be aggregated: a [`flush`](crate::Producer::flush)
    /// sends them at once only once the map is in (or its first load failed); by the end
    /// of their linger they go out unaggregated, routed by Kinesis itself.
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
    /// (the KPL's `CollectionMaxSize` and Kinesis' limit); allowed 1 KiB ..= 5 MiB. A call
    /// always carries at least one Kinesis record: a record or an aggregate larger than
    /// this (see `with_max_record_size`, `with_aggregation_max_size`) goes in a call of
    /// its own.
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
    /// key and [`RECORD_OVERHEAD_BYTES`](crate::RECORD_OVERHEAD_BYTES) per record. `put`
    /// waits while it is spent; `try_put` fails fast. Default 64 MiB; allowed 64 KiB ..=
    /// `usize::MAX >> 3` (what a tokio semaphore counts).
    ///
    /// A record is charged from `put` until its outcome is settled, also while its
    /// `PutRecords` call is in flight. What the budget does not charge is what a call
    /// makes of its records while it is under way: the Kinesis record (an aggregate, a
    /// copy of its user records; a record sent alone shares its data), the request
    /// entry's copy of it, and the serialized JSON body (base64, 4/3 of the bytes). That
    /// is up to about 3.4 times the data plus key of the records in flight, and at most
    /// about 3.4 × [`with_collection_max_size`](Self::with_collection_max_size) per call
    /// (17 MiB at the default 5 MiB) times
    /// [`with_max_concurrent_requests`](Self::with_max_concurrent_requests). So memory is
    /// bounded by this budget plus the smaller of 3.4 × the data and keys it holds and
    /// 3.4 × `collection_max_size` × `max_concurrent_requests`. Measured against an
    /// endpoint that never answers `PutRecords`, with 100 B records and the default 64 MiB:
    /// budget + 42 MiB (BENCHMARKS.md, "Resource bounds"); lower the concurrency or the
    /// call size to lower that second term.
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
    /// 7 days. After a call in which the shard was only throttled the wait is cut at
    /// 100 ms (or `max`, if lower): Kinesis' write limits are per second and the rate
    /// limiter already paces the shard, so a longer wait only sleeps through capacity
    /// (measured in BENCHMARKS.md, "At the shard limit").
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
