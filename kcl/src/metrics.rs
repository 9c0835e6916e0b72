//! Names of the metrics this crate records through the [`metrics`] facade.
//!
//! ```text
//!  ShardConsumer ──▶ RECORDS_PROCESSED{shard}, MILLIS_BEHIND_LATEST{shard}, RECORDS_DROPPED_OUT_OF_RANGE
//!  LeaseCoordinator ─▶ LEASES_HELD, LEASES_TAKEN, LEASES_STOLEN, LEASES_LOST
//!  Checkpointer ──▶ CHECKPOINT_LATENCY
//!  LeaseTable ────▶ DYNAMODB_CALLS{operation}
//! ```
//!
//! Install any `metrics` recorder (Prometheus exporter, StatsD, ...) to collect them; with
//! none installed they cost next to nothing.

/// Counter: user records handed to processors. Label `shard`.
pub const RECORDS_PROCESSED: &str = "kcl_records_processed_total";
/// Counter: sub-records dropped because their hash key lies outside the shard's range.
pub const RECORDS_DROPPED_OUT_OF_RANGE: &str = "kcl_records_dropped_out_of_range_total";
/// Gauge: `MillisBehindLatest` of the last `GetRecords` response. Label `shard`.
pub const MILLIS_BEHIND_LATEST: &str = "kcl_millis_behind_latest";
/// Gauge: leases this worker holds.
pub const LEASES_HELD: &str = "kcl_leases_held";
/// Counter: expired or unassigned leases taken.
pub const LEASES_TAKEN: &str = "kcl_leases_taken_total";
/// Counter: leases stolen from a more loaded worker.
pub const LEASES_STOLEN: &str = "kcl_leases_stolen_total";
/// Counter: leases lost (taken by another worker, or not renewed in time).
pub const LEASES_LOST: &str = "kcl_leases_lost_total";
/// Histogram: seconds a checkpoint write took.
pub const CHECKPOINT_LATENCY: &str = "kcl_checkpoint_seconds";
/// Counter: DynamoDB calls made. Label `operation`.
pub const DYNAMODB_CALLS: &str = "kcl_dynamodb_calls_total";
/// Counter: Kinesis calls made. Label `operation`.
pub const KINESIS_CALLS: &str = "kcl_kinesis_calls_total";
/// Counter: lease table items skipped because they could not be read as leases.
pub const INVALID_LEASES_SKIPPED: &str = "kcl_invalid_leases_skipped_total";
