//! Names of the metrics sent to the [`metrics`] facade, all prefixed `kinesis_consumer_`
//! (as the producer's are `kinesis_producer_`).
//!
//! ```text
//!  ShardConsumer ──▶ RECORDS_PROCESSED{shard}, MILLIS_BEHIND_LATEST{shard},
//!                    RECORDS_OUTSIDE_SHARD_RANGE{shard, action}, RECORDS_INFLATED{shard},
//!                    RECORDS_NOT_INFLATED{shard}, RECORDS_SKIPPED{shard}, CORRUPT_AGGREGATES{shard},
//!                    BATCH_WAIT, RECORD_AGE, DELIVERY_RETRIES{shard}, RECORDS_GIVEN_UP{shard}
//!  fan-out source ─▶ FANOUT_SUBSCRIPTIONS{shard, reason}, FANOUT_SUBSCRIPTION_ERRORS{shard, code},
//!                    FANOUT_EVENTS, FANOUT_RECORDS, FANOUT_BYTES, FANOUT_RECORDS_REPLAYED,
//!                    FANOUT_MALFORMED (each {shard})
//!  LeaseCoordinator ─▶ LEASES_HELD, LEASES_TAKEN, LEASES_STOLEN, LEASES_LOST
//!  graceful handoff ─▶ LEASE_HANDOFFS_STARTED, LEASE_HANDOFFS_SEEN, LEASE_HANDOFFS_ENDED{by}
//!  heartbeats ─────▶ FLEET_WORKERS, HEARTBEAT_FAILURES, WORKERS_DECLARED_GONE
//!  HeldLease (checkpoints) ─▶ CHECKPOINT_LATENCY
//!  LeaseTable, FleetTable ─▶ DYNAMODB_CALLS{operation}, INVALID_LEASES_SKIPPED
//!  ShardSync, ShardConsumer, start-up ─▶ KINESIS_CALLS{operation}
//!  multi-stream sync ─▶ STREAMS_ACTIVE, FORMER_STREAM_LEASES_DELETED
//! ```
//!
//! Install any `metrics` recorder (Prometheus exporter, StatsD, ...) to collect them; with
//! none installed they cost next to nothing.

/// Counter: user records handed to processors. Label `shard`.
pub const RECORDS_PROCESSED: &str = "kinesis_consumer_records_processed_total";
/// Counter: records of aggregates whose hash key lies outside the range of the shard they
/// were read from. Labels `shard`, and `action`: `dropped` (the default policy) or
/// `delivered` (marked, under `OutsideRangePolicy::Keep`).
pub const RECORDS_OUTSIDE_SHARD_RANGE: &str = "kinesis_consumer_records_outside_shard_range_total";
/// Counter: payloads inflated from gzip or zlib (with `PayloadDecompression::GzipAndZlib`).
/// Label `shard`.
pub const RECORDS_INFLATED: &str = "kinesis_consumer_records_inflated_total";
/// Counter: payloads with a gzip or zlib header that did not inflate, handed over as sent.
/// Label `shard`.
pub const RECORDS_NOT_INFLATED: &str = "kinesis_consumer_records_not_inflated_total";
/// Counter: Kinesis records skipped because they cannot be read at all (a sequence number
/// that is not a number) or hold no user record (a valid KPL aggregate of none). Label
/// `shard`.
pub const RECORDS_SKIPPED: &str = "kinesis_consumer_records_skipped_total";
/// Counter: records with the KPL aggregation magic that are not valid aggregates, handed
/// to the processor whole, as one plain record each. Label `shard`.
pub const CORRUPT_AGGREGATES: &str = "kinesis_consumer_corrupt_aggregates_total";
/// Counter: deliveries read again because the processor reported a failure
/// (`Checkpointer::retry_from` or `retry_batch`). Label `shard`.
pub const DELIVERY_RETRIES: &str = "kinesis_consumer_delivery_retries_total";
/// Counter: records given up after failing `FailureRetry::max_attempts` times (each also
/// logged at `error` with its position). Label `shard`.
pub const RECORDS_GIVEN_UP: &str = "kinesis_consumer_records_given_up_total";
/// Gauge: `MillisBehindLatest` of the last `GetRecords` response or `SubscribeToShard`
/// event. Label `shard`.
pub const MILLIS_BEHIND_LATEST: &str = "kinesis_consumer_millis_behind_latest";
/// Histogram: seconds from a source receiving a batch (a `GetRecords` answer, a
/// `SubscribeToShard` event) to its records being handed to the processor: the time a
/// batch waits behind the processor, plus the consumer's own work.
pub const BATCH_WAIT: &str = "kinesis_consumer_batch_wait_seconds";
/// Histogram: seconds from a batch's last record reaching Kinesis (its
/// `ApproximateArrivalTimestamp`) to the processor getting it: put→process latency.
pub const RECORD_AGE: &str = "kinesis_consumer_record_age_seconds";
/// Counter: `SubscribeToShard` calls made. Labels `shard`, and `reason`: `start` (a shard
/// consumer's first), `renewal` (the previous subscription ran its course) or
/// `after_error`.
pub const FANOUT_SUBSCRIPTIONS: &str = "kinesis_consumer_fanout_subscriptions_total";
/// Counter: subscriptions that failed or broke off. Labels `shard`, and `code`: the
/// service's error code (the exception's name for one sent inside the event stream), or
/// `stream_broken`, `idle` (no event for the idle timeout).
pub const FANOUT_SUBSCRIPTION_ERRORS: &str = "kinesis_consumer_fanout_subscription_errors_total";
/// Counter: `SubscribeToShard` events received. Label `shard`.
pub const FANOUT_EVENTS: &str = "kinesis_consumer_fanout_events_total";
/// Counter: Kinesis records received in fan-out events (aggregates count once). Label
/// `shard`.
pub const FANOUT_RECORDS: &str = "kinesis_consumer_fanout_records_total";
/// Counter: bytes of record data received in fan-out events. Label `shard`.
pub const FANOUT_BYTES: &str = "kinesis_consumer_fanout_bytes_total";
/// Counter: records an endpoint sent again at or before what was already delivered (or
/// before the starting sequence number); dropped, never delivered twice. Label `shard`.
pub const FANOUT_RECORDS_REPLAYED: &str = "kinesis_consumer_fanout_records_replayed_total";
/// Counter: records dropped from fan-out events because their sequence number is not a
/// number, and events of a kind this library does not know. Label `shard`.
pub const FANOUT_MALFORMED: &str = "kinesis_consumer_fanout_malformed_total";
/// Gauge: leases this worker holds.
pub const LEASES_HELD: &str = "kinesis_consumer_leases_held";
/// Counter: expired or unassigned leases taken.
pub const LEASES_TAKEN: &str = "kinesis_consumer_leases_taken_total";
/// Counter: leases stolen from a more loaded worker.
pub const LEASES_STOLEN: &str = "kinesis_consumer_leases_stolen_total";
/// Counter: leases this worker stopped holding: taken by another worker, not renewed in
/// time, or released (at a graceful shutdown).
pub const LEASES_LOST: &str = "kinesis_consumer_leases_lost_total";
/// Counter: graceful handoffs this worker started, moving a lease from a live worker to
/// itself (counted in [`LEASES_STOLEN`] too).
pub const LEASE_HANDOFFS_STARTED: &str = "kinesis_consumer_lease_handoffs_started_total";
/// Counter: pending graceful handoffs a lease holder found (either side; tables of the
/// Java KCL 3.x included).
pub const LEASE_HANDOFFS_SEEN: &str = "kinesis_consumer_lease_handoffs_seen_total";
/// Counter: graceful handoffs ended by this worker, labelled `by`: `previous_owner` (its
/// consumer stopped in time), `previous_owner_timeout` (aborted after the graceful handoff
/// timeout) or `next_owner_forced` (the previous owner took too long or is gone).
pub const LEASE_HANDOFFS_ENDED: &str = "kinesis_consumer_lease_handoffs_ended_total";
/// Gauge: workers in the fleet (this one included), as its last heartbeat read them.
pub const FLEET_WORKERS: &str = "kinesis_consumer_fleet_workers";
/// Counter: heartbeats that failed (the worker gives its leases up once none landed for
/// the failover time).
pub const HEARTBEAT_FAILURES: &str = "kinesis_consumer_heartbeat_failures_total";
/// Counter: silent workers this worker declared gone (their leases are then taken).
pub const WORKERS_DECLARED_GONE: &str = "kinesis_consumer_workers_declared_gone_total";
/// Histogram: seconds a checkpoint write took.
pub const CHECKPOINT_LATENCY: &str = "kinesis_consumer_checkpoint_seconds";
/// Counter: DynamoDB calls made. Label `operation`.
pub const DYNAMODB_CALLS: &str = "kinesis_consumer_dynamodb_calls_total";
/// Counter: Kinesis calls made. Label `operation`.
pub const KINESIS_CALLS: &str = "kinesis_consumer_kinesis_calls_total";
/// Counter: lease table items skipped because they could not be read as leases.
pub const INVALID_LEASES_SKIPPED: &str = "kinesis_consumer_invalid_leases_skipped_total";
/// Gauge: streams a multi-stream worker consumes now (tracked and resolved).
pub const STREAMS_ACTIVE: &str = "kinesis_consumer_streams_active";
/// Counter: leases of streams a multi-stream application no longer consumes, deleted
/// after their grace period.
pub const FORMER_STREAM_LEASES_DELETED: &str =
    "kinesis_consumer_former_stream_leases_deleted_total";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_has_the_crate_prefix() {
        for name in [
            RECORDS_PROCESSED,
            RECORDS_OUTSIDE_SHARD_RANGE,
            RECORDS_INFLATED,
            RECORDS_SKIPPED,
            CORRUPT_AGGREGATES,
            RECORDS_NOT_INFLATED,
            MILLIS_BEHIND_LATEST,
            LEASES_HELD,
            LEASES_TAKEN,
            LEASES_STOLEN,
            LEASES_LOST,
            LEASE_HANDOFFS_STARTED,
            LEASE_HANDOFFS_SEEN,
            LEASE_HANDOFFS_ENDED,
            FLEET_WORKERS,
            HEARTBEAT_FAILURES,
            WORKERS_DECLARED_GONE,
            CHECKPOINT_LATENCY,
            DYNAMODB_CALLS,
            KINESIS_CALLS,
            INVALID_LEASES_SKIPPED,
            STREAMS_ACTIVE,
            FORMER_STREAM_LEASES_DELETED,
            BATCH_WAIT,
            RECORD_AGE,
            DELIVERY_RETRIES,
            RECORDS_GIVEN_UP,
            FANOUT_SUBSCRIPTIONS,
            FANOUT_SUBSCRIPTION_ERRORS,
            FANOUT_EVENTS,
            FANOUT_RECORDS,
            FANOUT_BYTES,
            FANOUT_RECORDS_REPLAYED,
            FANOUT_MALFORMED,
        ] {
            assert!(name.starts_with("kinesis_consumer_"), "{name}");
        }
    }
}
