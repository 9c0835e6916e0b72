//! Counters kept by the producer, readable at any time with
//! [`Producer::stats`](crate::Producer::stats). The same events also go to the `metrics`
//! facade (names in [`crate::metric_names`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of the producer's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProducerStats {
    /// User records accepted by `put`/`try_put`.
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

/// The live counters behind [`ProducerStats`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) user_records_put: OwnLine<AtomicU64>,
    pub(crate) user_records_delivered: AtomicU64,
    pub(crate) user_records_failed: AtomicU64,
    pub(crate) kinesis_records_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) payload_bytes_delivered: AtomicU64,
    pub(crate) put_records_calls: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) throttles: AtomicU64,
    pub(crate) wrong_shard_resends: AtomicU64,
    pub(crate) shard_map_loads: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
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

/// A value on a cache line of its own: `user_records_put` is written by the threads that
/// call `put` while the pipeline task writes the other counters, and sharing a line would
/// make every record bounce it between cores.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct OwnLine<T>(pub(crate) T);
