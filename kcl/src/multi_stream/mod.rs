//! Multi-stream applications: one scheduler (one lease table, one fleet of workers)
//! consuming several streams, in the Java KCL's multi-stream lease format.
//!
//! ```text
//!  StreamTracker (every stream_tracker_interval) ─▶ [StreamConfig]
//!     new stream: name/ARN ─DescribeStreamSummary─▶ StreamIdentifier (account:stream:epoch)
//!       (fan-out) ─▶ its stream consumer found or registered (DescribeStreamConsumer /
//!                    RegisterStreamConsumer), the stream added once it is ACTIVE
//!       ─▶ its records source (Polling | FanOut) + ShardSync
//!          (leases "account:stream:epoch:shardId", its initial position)
//!     stream gone from the list: its consumers stop (shutdown_requested, last checkpoint),
//!       its leases are released and no longer taken,
//!       FormerStreams + FormerStreamsLeasesDeletionStrategy ─▶ its leases deleted after the grace period
//!  every shard sync round: one scan ─▶ each tracked stream's ShardSync (its leases only)
//!  LeaseCoordinator: takes and balances the leases of every tracked stream together
//!  Dispatcher: each held lease ─▶ its stream's records source ─▶ ShardConsumer ─▶ RecordProcessor
//!                                 (InitializationInput::stream names the stream)
//! ```
//!
//! # The lease table
//! A multi-stream lease's key is `account:stream:creationEpoch:shardId`; it also carries
//! the attributes `streamName` (the serialized [`StreamIdentifier`]) and `shardId`, and its
//! parent and child shard ids are bare shard ids of the same stream, as the Java KCL
//! writes them (`MultiStreamLease`). A worker only ever works on leases of its own kind: a
//! single-stream worker leaves multi-stream leases alone and a multi-stream worker leaves
//! single-stream leases alone (both are skipped with a warning, once per worker; neither
//! is taken, changed or deleted), so a table is used by one kind of application.
//!
//! # Enhanced fan-out
//! With [`Retrieval::FanOut`](crate::Retrieval::FanOut) every stream is read through its
//! own stream consumer, all named alike (the fan-out consumer name, by default the
//! application name), as the Java KCL 3.x registers one per stream
//! (`FanOutRetrievalFactory`). A stream's consumer is looked up when the stream is added,
//! and registered when missing: at start-up the worker waits until every listed stream's
//! consumer is `ACTIVE` (retried as the other start-up steps); a stream the tracker adds
//! while the worker runs is consumed once its consumer is `ACTIVE`, looked at again at each
//! tracker poll until then, while the other streams go on. The library never deregisters
//! a consumer, also not when its stream leaves the tracker's list (a registered consumer
//! costs money while it exists; `kinesis-cat stream consumers deregister` removes it).
//! A stream given by its [`StreamIdentifier`] is then looked up by name too (the consumer
//! calls need its ARN), and must be of the account the worker's clients see.
//!
//! # Differences from the Java KCL
//! - A removed stream's consumers stop at its removal (the processor gets
//!   `shutdown_requested` and may checkpoint) and its leases are released; the grace
//!   period only delays the deletion of the leases.
//! - Every worker detects former streams and deletes their leases (there is no leader);
//!   deletions are conditional on the lease counter.
//!
//! # Streams of other accounts
//! A stream listed by its ARN ([`StreamRef::Arn`]) is named by ARN (`StreamARN`) in every
//! call about it (`DescribeStreamSummary`, `ListShards`, `GetShardIterator`, `GetRecords`,
//! and the stream consumer calls), as the Java KCL does, so a stream of another account
//! is read with the worker's clients once its resource policy grants their role (AWS:
//! *Share your data stream with another account*); its leases carry the ARN's account. A
//! stream listed by name or identifier is named by name: a stream of the clients' account
//! and region. (The embedded ferrokinesis emulator accepts no `StreamARN` on those calls:
//! list streams by name there.)
//!
//! # Usage
//! ```no_run
//! use kinesis_consumer::{RecordProcessor, Scheduler, StaticStreamTracker, StreamConfig};
//! # fn make(_: &str) -> Box<dyn RecordProcessor> { unimplemented!() }
//!
//! # async fn demo(sdk: aws_config::SdkConfig) -> Result<(), kinesis_consumer::Error> {
//! let tracker = StaticStreamTracker::new(vec![
//!     StreamConfig::new("orders")?,
//!     StreamConfig::new("payments")?,
//! ])?;
//! let scheduler = Scheduler::multi_stream_builder("my-app", tracker, make)
//!     .with_sdk_config(&sdk)
//!     .build()?;
//! scheduler.run().await
//! # }
//! ```

mod former_streams;
mod stream_identifier;
mod stream_tracker;

pub(crate) use former_streams::FormerStreams;
pub use former_streams::{
    FormerStreamsLeasesDeletionStrategy, DEFAULT_FORMER_STREAMS_GRACE_PERIOD,
};
pub use stream_identifier::StreamIdentifier;
pub use stream_tracker::{StaticStreamTracker, StreamConfig, StreamRef, StreamTracker};
