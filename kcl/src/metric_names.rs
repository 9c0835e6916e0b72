//! Names of the metrics sent to the [`metrics`] facade, all prefixed `kinesis_consumer_`
//! (as the producer's are `kinesis_producer_`).
//!
//! ```text
//!  ShardConsumer ──▶ RECORDS_PROCESSED{shard}, MILLIS_BEHIND_LATEST{shard}, RECORDS_DROPPED_OUT_OF_RANGE
//!  LeaseCoordinator ─▶ LEASES_HELD, LEASES_TAKEN, LEASES_STOLEN, LEASES_LOST
//!  HeldLease (checkpoints) ─▶ CHECKPOINT_LATENCY
//!  LeaseTable ────▶ DYNAMODB_CALLS{operation}, INVALID_LEASES_SKIPPED
//!  ShardSync, ShardConsumer, start-up ─▶ KINESIS_CALLS{operation}
//! ```
//!
//! Install any `metrics` recorder (Prometheus exporter, StatsD, ...) to collect them; with
//! none installed they cost next to nothing.

/// Counter: user records handed to processors. Label `shard`.
pub const RECORDS_PROCESSED: &str = "kinesis_consumer_records_processed_total";
/// Counter: sub-records dropped because their hash key lies outside the shard's range.
pub const RECORDS_DROPPED_OUT_OF_RANGE: &str =
    "kinesis_consumer_records_dropped_out_of_range_total";
/// Gauge: `MillisBehindLatest` of the last `GetRecords` response. Label `shard`.
pub const MILLIS_BEHIND_LATEST: &str = "kinesis_consumer_millis_behind_latest";
/// Gauge: leases this worker holds.
pub const LEASES_HELD: &str = "kinesis_consumer_leases_held";
/// Counter: expired or unassigned leases taken.
pub const LEASES_TAKEN: &str = "kinesis_consumer_leases_taken_total";
/// Counter: leases stolen from a more loaded worker.
pub const LEASES_STOLEN: &str = "kinesis_consumer_leases_stolen_total";
/// Counter: leases this worker stopped holding: taken by another worker, not renewed in
/// time, or released (at a graceful shutdown).
pub const LEASES_LOST: &str = "kinesis_consumer_leases_lost_total";
/// Histogram: seconds a checkpoint write took.
pub const CHECKPOINT_LATENCY: &str = "kinesis_consumer_checkpoint_seconds";
/// Counter: DynamoDB calls made. Label `operation`.
pub const DYNAMODB_CALLS: &str = "kinesis_consumer_dynamodb_calls_total";
/// Counter: Kinesis calls made. Label `operation`.
pub const KINESIS_CALLS: &str = "kinesis_consumer_kinesis_calls_total";
/// Counter: lease table items skipped because they could not be read as leases.
pub const INVALID_LEASES_SKIPPED: &str = "kinesis_consumer_invalid_leases_skipped_total";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_the_crate_prefix() {
        for name in [
            RECORDS_PROCESSED,
            RECORDS_DROPPED_OUT_OF_RANGE,
            MILLIS_BEHIND_LATEST,
            LEASES_HELD,
            LEASES_TAKEN,
            LEASES_STOLEN,
            LEASES_LOST,
            CHECKPOINT_LATENCY,
            DYNAMODB_CALLS,
            KINESIS_CALLS,
            INVALID_LEASES_SKIPPED,
        ] {
            assert!(name.starts_with("kinesis_consumer_"), "{name}");
        }
    }
}
