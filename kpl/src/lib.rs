//! A Kinesis producer for tokio services: what Amazon's KPL does, embedded, with no
//! daemon, and with an exact outcome for every record.
//!
//! ```text
//!  put(record) ─▶ validate ─▶ memory budget ─▶ pipeline task
//!   │ typed error,               (put waits,     │ shard map (ListShards) predicts the shard
//!   │ record handed back          try_put fails) │ per shard: FIFO queue, linger, aggregation
//!   ▼                                            │ per shard: token buckets (records/s, bytes/s)
//!  PutHandle ◀── Delivered { shard, sequence,    ▼
//!                sub-sequence, attempts }    PutRecords (≤ 500 records, ≤ 5 MiB, bounded
//!           ◀── Failed { reason, attempts,    concurrency) ─▶ per-record results, retries
//!                record }                     with jittered backoff until the record's TTL
//!                                                │ a failed call (or per-record error code)
//!  failures() ◀── CallFailure { stream, operation, code, message, retryable, records }
//!                 as it happens; the stream's first failure after a success: warn! log
//! ```
//!
//! What it adds over the KPL: every record's future resolves exactly once, with its
//! sub-sequence number; memory is bounded by a budget; retries back off per shard, with
//! throttling told apart; per-key ordering is available as a guarantee; an aggregate that
//! landed in a shard not owning all of its user records (after a reshard) is re-sent
//! whole, so readers that follow the Java KCL, which discard such an aggregate whole,
//! lose none of them (the KPL re-sends only the records outside the shard).
//!
//! # Aggregates on the wire
//! An aggregate of several user records is sent under the partition key
//! [`kinesis_agg::WHOLE_RESEND_PARTITION_KEY`] with its first user record's hash key as
//! explicit hash key (the KPL does the same under the key `"a"`); each user record keeps
//! its own key inside. No user key can then make Kinesis refuse the records packed with
//! it. A user record sent alone goes out with its own key, as it is. Readers of this
//! project (`kinesis-consumer`, or `kinesis_agg::Deaggregator` with a shard range) drop an
//! aggregate under that key whole when one of its records lies outside the shard it was
//! read from, as the Java KCL does with every aggregate, so each user record is read once:
//! the copy at the position its [`Delivered`] names.
//!
//! # When records fail
//! A failed record's [`Failed`] says why the producer gave up ([`FailureReason`]) and
//! lists every attempt; its display names the last attempt's error, e.g. `record for
//! stream "s" not delivered after 12 attempt(s): record TTL of 30s expired before
//! delivery; last error: DispatchFailure: io error: ... Connection refused (os error
//! 111)`. Messages are short: Kinesis' own message, or a short cause chain for an error
//! with no answer; the SDK's full detail is logged at `debug` level only.
//!
//! Errors retrying cannot fix fail records at once with [`FailureReason::Rejected`]:
//! a stream that does not exist, access denied, missing or refused credentials
//! (`NoCredentials` when the SDK finds none), an unusable KMS key, no region. Those that
//! concern the whole stream ([`FailureReason::is_stream_level`]) fail every record of the
//! stream waiting in the producer at once, instead of each being sent and refused in
//! turn; records put to the stream later are tried again. Connection errors, timeouts,
//! 5xx answers and throttling are retried until the record's TTL.
//!
//! To learn the cause before any TTL runs out, subscribe to [`Producer::failures`]: one
//! [`CallFailure`] per failed call, and per distinct error code of a call's refused
//! records. The producer also logs a stream's first failure after a success
//! (`tracing::warn!`, with code and message) and its recovery (`tracing::info!`, with how
//! many calls failed); throttling, routine for a producer that runs at its shards'
//! limits, is counted in [`ProducerStats::throttles`] instead.
//!
//! # Allocator
//! The library allocates per record (the record's key and data handle, its outcome
//! channel, its sequence number) on the caller's threads and frees most of it on the
//! runtime thread running the pipeline, and it allocates one request body per call. The
//! global allocator is the application's choice; the library sets none. Under glibc's
//! malloc (the default on Linux) that pattern costs time in `malloc`/`free` and page
//! faults (glibc hands the heap top back to the kernel between calls and faults it back
//! in). What helps, measured with `kinesis-cat produce` (BENCHMARKS.md, "Allocator"):
//! - a global allocator in the application binary, e.g. with the `tikv-jemallocator` or
//!   `mimalloc` crate: `#[global_allocator] static GLOBAL: tikv_jemallocator::Jemalloc =
//!   tikv_jemallocator::Jemalloc;` (`kinesis-cat` offers both as cargo features);
//! - without rebuilding, glibc's tunables in the environment:
//!   `GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456:glibc.malloc.top_pad=67108864`
//!   keeps the freed heap top mapped (no page faults from trimming; the process keeps up
//!   to that much freed memory), and `MALLOC_ARENA_MAX=2` bounds the arenas glibc creates
//!   for many threads (less memory, not more speed).
//!
//! # Batches and streams of records
//! [`Producer::put_all`] accepts a batch at once (one budget acquisition, one message and
//! one completion per batch; a [`BatchHandle`] resolves to each record's outcome in input
//! order). [`Producer::sink`] wraps it for services that produce from a stream: a
//! [`RecordSink`] (a `futures` `Sink` of [`ProducerRecord`]s that batches into `put_all`)
//! and its [`SinkOutcomes`] (a `Stream` of every record's outcome, in the order sent);
//! `poll_flush` resolves once every record sent so far has its outcome.
//!
//! # Usage
//! Runs as it is on the embedded emulators (the hidden lines start them); in a service,
//! build the client from your AWS configuration instead.
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let stack = kinesis_emulators::LocalStack::builder().start_async().await?;
//! # let stream = stack.create_stream("my-stream", 2).await?;
//! # let client = stack.kinesis_client();
//! use kinesis_producer::{Producer, ProducerRecord};
//!
//! // let client = aws_sdk_kinesis::Client::new(&aws_config::load_from_env().await);
//! let producer = Producer::builder(client).build()?;
//! let handle = producer
//!     .put(ProducerRecord::new(&stream, "user-42", "hello"))
//!     .await?; // accepted: the record now has exactly one outcome
//! let delivered = handle.await?;
//! println!("{} {} {}", delivered.shard_id, delivered.sequence_number, delivered.sub_sequence_number);
//! producer.shutdown().await; // sends what is held; every handle resolves
//! assert_eq!(producer.stats().user_records_delivered, 1);
//! # Ok(()) }
//! ```

#![deny(unsafe_code, rust_2018_idioms)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod config;
mod error;
mod failure;
mod outcome;
mod pipeline;
mod producer;
mod put_all;
mod rate_limit;
mod record;
mod shard_map;
mod sink;
mod stats;

pub use config::RECORD_OVERHEAD_BYTES;
pub use error::{ConfigError, FailureReason, PutAllError, PutError};
pub use failure::{CallFailure, FAILURE_REPORTS_CAPACITY};
pub use outcome::{Attempt, Delivered, Failed, Outcome, PutHandle};
pub use producer::{Producer, ProducerBuilder};
pub use put_all::BatchHandle;
pub use record::ProducerRecord;
pub use sink::{
    RecordSink, SinkBuilder, SinkError, SinkOutcomes, DEFAULT_SINK_BATCH_BYTES,
    DEFAULT_SINK_BATCH_RECORDS, DEFAULT_SINK_OUTCOME_CAPACITY,
};
pub use stats::ProducerStats;

/// Names of the metrics sent to the `metrics` facade. Install a recorder before building
/// the producer: the producer resolves its metric handles once, when it is built.
pub mod metric_names {
    /// Counter: user records accepted.
    pub const USER_RECORDS_PUT: &str = "kinesis_producer_user_records_put_total";
    /// Counter: user records delivered.
    pub const USER_RECORDS_DELIVERED: &str = "kinesis_producer_user_records_delivered_total";
    /// Counter: user records failed.
    pub const USER_RECORDS_FAILED: &str = "kinesis_producer_user_records_failed_total";
    /// Counter: Kinesis records sent (retries included).
    pub const KINESIS_RECORDS_SENT: &str = "kinesis_producer_kinesis_records_sent_total";
    /// Counter: bytes sent (data plus partition keys, retries included).
    pub const BYTES_SENT: &str = "kinesis_producer_bytes_sent_total";
    /// Counter: `PutRecords` calls.
    pub const PUT_RECORDS_CALLS: &str = "kinesis_producer_put_records_calls_total";
    /// Counter: Kinesis records sent again.
    pub const RETRIES: &str = "kinesis_producer_retries_total";
    /// Counter: throttling responses (per record or per call).
    pub const THROTTLES: &str = "kinesis_producer_throttles_total";
    /// Histogram: seconds from `put` to the first send.
    pub const BUFFERED_TIME_SECONDS: &str = "kinesis_producer_buffered_time_seconds";
    /// Histogram: seconds from `put` to delivery.
    pub const DELIVERY_LATENCY_SECONDS: &str = "kinesis_producer_delivery_latency_seconds";
}
