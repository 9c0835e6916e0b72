//! The Kinesis Client Library for Rust: a fleet of workers shares the shards of a Kinesis
//! stream through a DynamoDB lease table (the Java KCL 2.x format, so a fleet can move over
//! and keep its checkpoints), and drives a user [`RecordProcessor`] per shard.
//!
//! ```text
//!               ┌──────────────────────── Scheduler (one per worker) ────────────────────────┐
//!               │ start-up: stream check ─▶ (fan-out: stream consumer) ─▶ lease table ─▶     │
//!               │   first shard sync                                                         │
//!  Kinesis ◀────┤ ShardSync: ListShards ─▶ sync plan ─▶ leases (parents first)               │
//!    ▲          │ LeaseCoordinator: renew every failover/3; every 2×failover scan ─▶         │
//!    │          │   take plan ─▶ take / steal ─▶ HeldLease                                   │
//!    │          │ Dispatcher, per HeldLease whose parents reached SHARD_END:                 │
//!    └GetRecords┤   RecordsSource (Polling | FanOut: SubscribeToShard) ─▶ Batch ─▶           │
//!               │     ShardConsumer ─▶ Deaggregator ─▶ RecordProcessor ─▶ Checkpointer       │
//!               └────────────────────────────────────────────────────────────────────────────┘
//!  HeldLease: renew, checkpoint, release ─▶ Lease's update (guard + changes)
//!    ─▶ LeaseStore ─▶ LeaseTable ─conditional writes─▶ DynamoDB (Java KCL 2.x format)
//! ```
//!
//! The crate root holds what applications use: the [`Scheduler`] and its builder, the
//! [`RecordProcessor`] they implement with its inputs, the [`Checkpointer`], the
//! [`Checkpoint`] and [`Lease`] they read, [`InitialPosition`], [`Retrieval`] with
//! [`PollingConfig`] and [`FanOutConfig`], [`Error`] and [`ConfigError`]; a
//! [`RecordStream`] of [`ShardBatch`]es for applications that would rather read records
//! than implement the processor trait ([`Scheduler::stream_builder`], or
//! [`Scheduler::multi_stream_stream_builder`] for several streams), and
//! [`CheckpointEvery`] for checkpoint cadences. The building blocks under the scheduler (the lease table,
//! the lease store seam, the coordinator, shard sync) are in [`leases`], for tools that
//! look at or manage a lease table; the metrics' names are in [`metric_names`]. Each shard
//! consumer reads its shard through a retrieval seam (a records source started at the
//! lease's checkpoint, handing over ordered batches): polling with `GetRecords`, set by
//! [`PollingConfig`] (the default), or enhanced fan-out with `SubscribeToShard`, set by
//! [`FanOutConfig`], for which the worker registers a stream consumer at start-up.
//!
//! One worker can also consume several streams through one lease table
//! ([`Scheduler::multi_stream_builder`] with a [`StreamTracker`], e.g. a
//! [`StaticStreamTracker`]): the Java KCL's multi-stream leases, keyed by
//! [`StreamIdentifier`] and shard id, with streams added and removed while running and the
//! leases of removed streams deleted as [`FormerStreamsLeasesDeletionStrategy`] says; with
//! enhanced fan-out, each stream is read through its own stream consumer.
//!
//! Leases are balanced among workers by count (the Java KCL 2.x's rule, the default) or,
//! with [`SchedulerBuilder::with_balancing`] and [`Balancing::Throughput`], by the
//! throughput each holder measures and writes on its lease (`throughputKBps`, as the Java
//! KCL 3.x), so that a worker holding a hot shard holds fewer others.
//!
//! # Usage
//! Runs as it is on the embedded emulators (the hidden lines start them and put 100
//! records); in a service, pass your AWS configuration with `with_sdk_config` instead of
//! `with_clients`, and stop the worker on a signal.
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use kinesis_consumer::*;
//!
//! #[derive(Debug)]
//! struct Count(Arc<AtomicU64>);
//!
//! #[async_trait]
//! impl RecordProcessor for Count {
//!     async fn initialize(&mut self, _: InitializationInput) {}
//!     async fn process_records(&mut self, input: ProcessRecordsInput) {
//!         self.0.fetch_add(input.records.len() as u64, Ordering::Relaxed);
//!         // Checkpoint failures are retried with the next batch's checkpoint.
//!         input.checkpointer.checkpoint().await.ok();
//!     }
//!     async fn lease_lost(&mut self, _: LeaseLostInput) {}
//!     async fn shard_ended(&mut self, input: ShardEndedInput) {
//!         // Required: the shard's children start once it is checkpointed here.
//!         input.checkpointer.checkpoint().await.ok();
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let stack = kinesis_emulators::LocalStack::builder().start_async().await?;
//! # let stream = stack.create_stream("my-stream", 2).await?;
//! # for i in 0..100 {
//! #     stack.kinesis_client().put_record().stream_name(&stream).partition_key(format!("k{i}"))
//! #         .data(aws_sdk_kinesis::primitives::Blob::new("x")).send().await?;
//! # }
//! let processed = Arc::new(AtomicU64::new(0));
//! let counter = processed.clone();
//! // let sdk = aws_config::load_from_env().await;
//! let scheduler = Scheduler::builder("my-app", &stream, move |_: &str| {
//!     Box::new(Count(counter.clone())) as Box<dyn RecordProcessor>
//! })
//! // .with_sdk_config(&sdk)
//! .with_clients(stack.kinesis_client(), stack.dynamodb_client())
//! .with_initial_position(InitialPosition::TrimHorizon)
//! .build()?;
//! let worker = scheduler.clone();
//! let run = tokio::spawn(async move { worker.run().await });
//! // In a service: tokio::signal::ctrl_c().await?;
//! # let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
//! while processed.load(Ordering::Relaxed) < 100 {
//! #   assert!(std::time::Instant::now() < deadline, "not processed within 60 s");
//!     tokio::time::sleep(std::time::Duration::from_millis(50)).await;
//! }
//! scheduler.graceful_shutdown().await; // checkpoints, hands the leases over
//! run.await??;
//! # Ok(()) }
//! ```

#![deny(unsafe_code, rust_2018_idioms)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod checkpoint;
mod checkpoint_every;
mod checkpointer;
mod config_error;
mod consumer;
mod error;
mod initial_position;
pub mod leases;
pub mod metric_names;
mod multi_stream;
mod processor;
mod record_stream;
mod scheduler;
mod stream_address;

pub use checkpoint::{Checkpoint, SequenceNumber, AT_TIMESTAMP, LATEST, SHARD_END, TRIM_HORIZON};
pub use checkpoint_every::CheckpointEvery;
pub use checkpointer::Checkpointer;
pub use config_error::ConfigError;
pub use consumer::{
    Batching, FailureRetry, FanOutConfig, PayloadDecompression, PayloadEncoding, PollingConfig,
    Retrieval, MAX_INFLATED_BYTES,
};
pub use error::Error;
pub use initial_position::InitialPosition;
pub use kinesis_agg::{OutsideRangePolicy, PartitionKey};
pub use leases::{Balancing, Lease};
pub use multi_stream::{
    FormerStreamsLeasesDeletionStrategy, StaticStreamTracker, StreamConfig, StreamIdentifier,
    StreamRef, StreamTracker, DEFAULT_FORMER_STREAMS_GRACE_PERIOD,
};
pub use processor::{
    InitializationInput, KinesisClientRecord, LeaseLostInput, ProcessRecordsInput, RecordProcessor,
    RecordProcessorFactory, ShardEndedInput, ShutdownRequestedInput,
};
pub use record_stream::{RecordStream, ShardBatch, StreamCheckpointing};
pub use scheduler::{
    default_worker_id, Scheduler, SchedulerBuilder, MAX_DURATION_SETTING, MIN_FAILOVER_TIME,
};
