//! What applications implement: a [`RecordProcessor`] per shard lease, made by a
//! [`RecordProcessorFactory`].
//!
//! ```text
//!  lease held ─▶ factory.create_processor(shard) ─▶ initialize(start checkpoint, pending)
//!                                                     │
//!                         ┌───────────────────────────┤ process_records(batch, checkpointer) ×N
//!                         ▼                           ▼                             ▼
//!                 lease_lost (stolen /       shard_ended (closed shard:    shutdown_requested
//!                 expired: no checkpoint)    must checkpoint SHARD_END)    (graceful: last checkpoint)
//! ```
//!
//! # Usage
//! ```
//! use async_trait::async_trait;
//! use kinesis_consumer::{
//!     InitializationInput, LeaseLostInput, ProcessRecordsInput, RecordProcessor,
//!     ShardEndedInput, ShutdownRequestedInput,
//! };
//!
//! #[derive(Debug, Default)]
//! struct Printer;
//!
//! #[async_trait]
//! impl RecordProcessor for Printer {
//!     async fn initialize(&mut self, input: InitializationInput) {
//!         println!("{} starts after {}", input.shard_id, input.checkpoint);
//!     }
//!     async fn process_records(&mut self, input: ProcessRecordsInput) {
//!         for r in &input.records {
//!             println!("{} {}", r.sequence_number, r.partition_key);
//!         }
//!         let _ = input.checkpointer.checkpoint().await;
//!     }
//!     async fn lease_lost(&mut self, _: LeaseLostInput) {}
//!     async fn shard_ended(&mut self, input: ShardEndedInput) {
//!         input.checkpointer.checkpoint().await.expect("shard end checkpoint");
//!     }
//!     async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
//!         let _ = input.checkpointer.checkpoint().await;
//!     }
//! }
//! let factory = |_shard: &str| Box::new(Printer) as Box<dyn RecordProcessor>;
//! # let _ = factory;
//! ```

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use kinesis_agg::{HashKey, PartitionKey};

use crate::checkpoint::Checkpoint;
use crate::checkpointer::Checkpointer;

/// Handed to [`RecordProcessor::initialize`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct InitializationInput {
    /// The shard this processor is for (its Kinesis shard id, also in a multi-stream
    /// application).
    pub shard_id: String,
    /// The stream the shard belongs to, in a multi-stream application; `None` for a
    /// single-stream worker (whose stream is the one it was built with).
    pub stream: Option<crate::StreamIdentifier>,
    /// The checkpoint processing resumes after (a sentinel for a shard not started).
    pub checkpoint: Checkpoint,
    /// The first phase of a two-phase checkpoint left by an earlier owner, if any.
    pub pending_checkpoint: Option<Checkpoint>,
    /// The application state saved with the pending checkpoint.
    pub pending_checkpoint_state: Option<Bytes>,
}

/// One user record (a plain Kinesis record, or one record of a KPL aggregate).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KinesisClientRecord {
    /// The Kinesis record's sequence number.
    pub sequence_number: String,
    /// Position within the KPL aggregate (0 for a plain record).
    pub sub_sequence_number: u64,
    /// The user record's partition key (for a record of an aggregate, a view of the
    /// aggregate's key table shared by its records: cloning it costs no copy).
    pub partition_key: PartitionKey,
    /// The explicit hash key, for records of an aggregate that had one.
    pub explicit_hash_key: Option<HashKey>,
    /// When Kinesis accepted the (aggregate) record.
    pub approximate_arrival_timestamp: Option<SystemTime>,
    /// The payload.
    pub data: Bytes,
    /// Whether the record came out of a KPL aggregate.
    pub aggregated: bool,
    /// Whether its hash key lies outside the range of the shard it was read from: a record
    /// of an aggregate routed by another record's key. Only ever true with
    /// [`OutsideRangePolicy::Keep`](crate::OutsideRangePolicy::Keep) (see
    /// [`SchedulerBuilder::with_outside_range_policy`](crate::SchedulerBuilder::with_outside_range_policy)).
    pub outside_shard_range: bool,
    /// What was done to the payload: as sent, or inflated from gzip or zlib (with
    /// [`PayloadDecompression::GzipAndZlib`](crate::PayloadDecompression::GzipAndZlib)),
    /// or left as sent because it did not inflate.
    pub payload_encoding: crate::PayloadEncoding,
}

impl KinesisClientRecord {
    /// A plain (not aggregated) record, e.g. for tests of a processor.
    pub fn new(
        sequence_number: impl Into<String>,
        sub_sequence_number: u64,
        partition_key: impl Into<PartitionKey>,
        data: impl Into<Bytes>,
    ) -> Self {
        Self {
            sequence_number: sequence_number.into(),
            sub_sequence_number,
            partition_key: partition_key.into(),
            explicit_hash_key: None,
            approximate_arrival_timestamp: None,
            data: data.into(),
            aggregated: false,
            outside_shard_range: false,
            payload_encoding: crate::PayloadEncoding::Plain,
        }
    }
}

/// Handed to [`RecordProcessor::process_records`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProcessRecordsInput {
    /// The user records, in shard order.
    pub records: Vec<KinesisClientRecord>,
    /// How far behind the tip of the shard the batch was, if Kinesis said.
    pub millis_behind_latest: Option<i64>,
    /// Records of aggregates in this batch left out because their hash key lies outside
    /// the shard's range (under the default
    /// [`OutsideRangePolicy::Drop`](crate::OutsideRangePolicy::Drop)); a checkpoint of the
    /// batch covers them. Also counted in the
    /// [`RECORDS_OUTSIDE_SHARD_RANGE`](crate::metric_names::RECORDS_OUTSIDE_SHARD_RANGE)
    /// metric and logged.
    pub dropped_outside_shard_range: usize,
    /// Checkpoints progress; [`Checkpointer::checkpoint`] covers this whole batch.
    /// [`Checkpointer::retry_from`] and [`Checkpointer::retry_batch`] report records that
    /// failed, to be handed over again.
    pub checkpointer: Checkpointer,
}

/// Handed to [`RecordProcessor::lease_lost`]. Checkpointing is no longer possible.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LeaseLostInput {}

/// Handed to [`RecordProcessor::shard_ended`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShardEndedInput {
    /// [`Checkpointer::checkpoint`] records `SHARD_END`; it must be called before the
    /// shard's children can start.
    pub checkpointer: Checkpointer,
}

/// Handed to [`RecordProcessor::shutdown_requested`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShutdownRequestedInput {
    /// A last chance to checkpoint before the lease is released.
    pub checkpointer: Checkpointer,
}

/// Processes the records of one shard. Created per lease by a [`RecordProcessorFactory`];
/// one instance sees one shard, one call at a time.
#[async_trait]
pub trait RecordProcessor: Send + Sync {
    /// Called once, before any records.
    async fn initialize(&mut self, input: InitializationInput);

    /// Called with each batch of records, in order.
    async fn process_records(&mut self, input: ProcessRecordsInput);

    /// The lease was taken by another worker or expired; do not expect more records.
    async fn lease_lost(&mut self, input: LeaseLostInput);

    /// Every record of the (closed) shard was delivered; checkpoint to let its children start.
    async fn shard_ended(&mut self, input: ShardEndedInput);

    /// The worker is shutting down gracefully; checkpoint what was processed.
    /// Default: do nothing (records after the last checkpoint are delivered again to the
    /// next owner).
    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        let _ = input;
    }
}

/// Makes a [`RecordProcessor`] for each shard lease the worker starts.
///
/// Implemented for closures `Fn(&str) -> Box<dyn RecordProcessor>`.
pub trait RecordProcessorFactory: Send + Sync + 'static {
    /// A new processor for `shard_id`.
    fn create_processor(&self, shard_id: &str) -> Box<dyn RecordProcessor>;
}

impl<F> RecordProcessorFactory for F
where
    F: Fn(&str) -> Box<dyn RecordProcessor> + Send + Sync + 'static,
{
    fn create_processor(&self, shard_id: &str) -> Box<dyn RecordProcessor> {
        self(shard_id)
    }
}

/// Compile-time check that the user traits stay object safe.
fn _obj_safe(_: Box<dyn RecordProcessor>, _: Box<dyn RecordProcessorFactory>) {}
