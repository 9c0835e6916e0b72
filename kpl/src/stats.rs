//! Counters kept by the producer, readable at any time with
//! [`Producer::stats`](crate::Producer::stats). The same events also go to the `metrics`
//! facade (names in [`crate::metric_names`]): each is counted once, by one method of
//! [`Stats`] that feeds both.
//!
//! ```text
//!  put (caller's thread) ─┐
//!  pipeline task ─────────┼─▶ Stats::record_*(event) ─┬─▶ atomics ─▶ snapshot() ─▶ ProducerStats
//!                         │                            └─▶ metrics facade handles (resolved once)
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::metric_names as m;

/// A snapshot of the producer's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerStats {
    /// User records accepted by `put`/`try_put`/`put_all`.
    pub user_records_put: u64,
    /// User records delivered.
    pub user_records_delivered: u64,
    /// User records that failed.
    pub user_records_failed: u64,
    /// Kinesis records (aggregates or single records) sent, retries included.
    pub kinesis_records_sent: u64,
    /// Bytes (data plus partition keys) of the Kinesis records sent, retries included.
    pub bytes_sent: u64,
    /// Payload bytes (user data) of the user records delivered.
    pub payload_bytes_delivered: u64,
    /// `PutRecords` calls made.
    pub put_records_calls: u64,
    /// Kinesis records that had to be sent again (failed, throttled or wrongly routed).
    pub retries: u64,
    /// Kinesis records (or whole calls) refused with throttling.
    pub throttles: u64,
    /// User records re-sent because their aggregate landed in a shard that does not own
    /// every user record of it (after a reshard): all of that aggregate's records are
    /// re-sent, those the shard owns included.
    pub wrong_shard_resends: u64,
    /// Shard map loads (`ListShards`) completed.
    pub shard_map_loads: u64,
    /// User records accepted but not yet settled.
    pub outstanding_records: u64,
}

/// The live counters behind [`ProducerStats`], and the metric handles fed by the same
/// events.
#[derive(Debug)]
pub(crate) struct Stats {
    /// See [`ProducerStats::user_records_put`].
    user_records_put: OwnLine<AtomicU64>,
    /// See [`ProducerStats::user_records_delivered`].
    user_records_delivered: AtomicU64,
    /// See [`ProducerStats::user_records_failed`].
    user_records_failed: AtomicU64,
    /// See [`ProducerStats::kinesis_records_sent`].
    kinesis_records_sent: AtomicU64,
    /// See [`ProducerStats::bytes_sent`].
    bytes_sent: AtomicU64,
    /// See [`ProducerStats::payload_bytes_delivered`].
    payload_bytes_delivered: AtomicU64,
    /// See [`ProducerStats::put_records_calls`].
    put_records_calls: AtomicU64,
    /// See [`ProducerStats::retries`].
    retries: AtomicU64,
    /// See [`ProducerStats::throttles`].
    pub(crate) throttles: AtomicU64,
    /// See [`ProducerStats::wrong_shard_resends`].
    pub(crate) wrong_shard_resends: AtomicU64,
    /// See [`ProducerStats::shard_map_loads`].
    shard_map_loads: AtomicU64,
    /// The same events for the `metrics` facade.
    metrics: Metrics,
}

impl Default for Stats {
    /// Zeroed counters, with metric handles from the recorder installed now.
    fn default() -> Self {
        Stats {
            user_records_put: OwnLine::default(),
            user_records_delivered: AtomicU64::default(),
            user_records_failed: AtomicU64::default(),
            kinesis_records_sent: AtomicU64::default(),
            bytes_sent: AtomicU64::default(),
            payload_bytes_delivered: AtomicU64::default(),
            put_records_calls: AtomicU64::default(),
            retries: AtomicU64::default(),
            throttles: AtomicU64::default(),
            wrong_shard_resends: AtomicU64::default(),
            shard_map_loads: AtomicU64::default(),
            metrics: Metrics::new(),
        }
    }
}

impl Stats {
    /// `records` user records were accepted (called by `put`, or once per batch by
    /// `put_all`, on the caller's thread).
    pub(crate) fn record_put(&self, records: u64) {
        self.user_records_put.0.fetch_add(records, Relaxed);
        self.metrics.put.increment(records);
    }

    /// `records` user records, of `payload_bytes` data in all, were delivered.
    pub(crate) fn record_delivered(&self, records: u64, payload_bytes: u64) {
        self.user_records_delivered.fetch_add(records, Relaxed);
        self.payload_bytes_delivered
            .fetch_add(payload_bytes, Relaxed);
        self.metrics.delivered.increment(records);
    }

    /// `records` user records were delivered `latency` after their `put` (records of one
    /// `put_all` share their put time).
    pub(crate) fn record_delivery_latency(&self, latency: Duration, records: usize) {
        self.metrics
            .delivery_latency
            .record_many(latency.as_secs_f64(), records);
    }

    /// A user record failed.
    pub(crate) fn record_failed(&self) {
        self.user_records_failed.fetch_add(1, Relaxed);
        self.metrics.failed.increment(1);
    }

    /// A `PutRecords` call was launched with `kinesis_records` records of `bytes` bytes
    /// in all, `retries` of them sent before.
    pub(crate) fn record_call(&self, kinesis_records: usize, bytes: usize, retries: usize) {
        self.put_records_calls.fetch_add(1, Relaxed);
        self.kinesis_records_sent
            .fetch_add(kinesis_records as u64, Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
        self.retries.fetch_add(retries as u64, Relaxed);
        self.metrics.calls.increment(1);
        self.metrics
            .kinesis_records
            .increment(kinesis_records as u64);
        self.metrics.bytes.increment(bytes as u64);
        self.metrics.retries.increment(retries as u64);
    }

    /// A user record goes out for the first time, `buffered` after its `put` (a metric
    /// only: [`ProducerStats`] has no histograms).
    pub(crate) fn record_first_send(&self, buffered: Duration) {
        self.metrics.buffered_time.record(buffered.as_secs_f64());
    }

    /// Kinesis throttled a Kinesis record, or a whole call.
    pub(crate) fn record_throttle(&self) {
        self.throttles.fetch_add(1, Relaxed);
        self.metrics.throttles.increment(1);
    }

    /// A user record is sent again because its aggregate landed in the wrong shard (a
    /// counter only: no metric name was ever published for it).
    pub(crate) fn record_wrong_shard_resend(&self) {
        self.wrong_shard_resends.fetch_add(1, Relaxed);
    }

    /// A shard map was loaded (a counter only, like `record_wrong_shard_resend`).
    pub(crate) fn record_shard_map_load(&self) {
        self.shard_map_loads.fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ProducerStats {
        let put = self.user_records_put.0.load(Relaxed);
        let delivered = self.user_records_delivered.load(Relaxed);
        let failed = self.user_records_failed.load(Relaxed);
        ProducerStats {
            user_records_put: put,
            user_records_delivered: delivered,
            user_records_failed: failed,
            kinesis_records_sent: self.kinesis_records_sent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            payload_bytes_delivered: self.payload_bytes_delivered.load(Relaxed),
            put_records_calls: self.put_records_calls.load(Relaxed),
            retries: self.retries.load(Relaxed),
            throttles: self.throttles.load(Relaxed),
            wrong_shard_resends: self.wrong_shard_resends.load(Relaxed),
            shard_map_loads: self.shard_map_loads.load(Relaxed),
            outstanding_records: put.saturating_sub(delivered + failed),
        }
    }
}

/// Handles to the metrics, resolved once (install a recorder before building the producer).
struct Metrics {
    /// [`m::USER_RECORDS_PUT`].
    put: metrics::Counter,
    /// [`m::USER_RECORDS_DELIVERED`].
    delivered: metrics::Counter,
    /// [`m::USER_RECORDS_FAILED`].
    failed: metrics::Counter,
    /// [`m::PUT_RECORDS_CALLS`].
    calls: metrics::Counter,
    /// [`m::KINESIS_RECORDS_SENT`].
    kinesis_records: metrics::Counter,
    /// [`m::BYTES_SENT`].
    bytes: metrics::Counter,
    /// [`m::RETRIES`].
    retries: metrics::Counter,
    /// [`m::THROTTLES`].
    throttles: metrics::Counter,
    /// [`m::BUFFERED_TIME_SECONDS`].
    buffered_time: metrics::Histogram,
    /// [`m::DELIVERY_LATENCY_SECONDS`].
    delivery_latency: metrics::Histogram,
}

impl Metrics {
    fn new() -> Self {
        Metrics {
            put: metrics::counter!(m::USER_RECORDS_PUT),
            delivered: metrics::counter!(m::USER_RECORDS_DELIVERED),
            failed: metrics::counter!(m::USER_RECORDS_FAILED),
            calls: metrics::counter!(m::PUT_RECORDS_CALLS),
            kinesis_records: metrics::counter!(m::KINESIS_RECORDS_SENT),
            bytes: metrics::counter!(m::BYTES_SENT),
            retries: metrics::counter!(m::RETRIES),
            throttles: metrics::counter!(m::THROTTLES),
            buffered_time: metrics::histogram!(m::BUFFERED_TIME_SECONDS),
            delivery_latency: metrics::histogram!(m::DELIVERY_LATENCY_SECONDS),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// A value on a cache line of its own: `user_records_put` is written by the threads that
/// call `put` while the pipeline task writes the other counters, and sharing a line would
/// make every record bounce it between cores.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct OwnLine<T>(pub(crate) T);
