//! Shard consumers: one per held lease, each fed by a [`RecordsSource`] and feeding one
//! [`RecordProcessor`](crate::RecordProcessor).
//!
//! ```text
//!  Dispatcher (per held lease) ─▶ ShardConsumer { source: Arc<dyn RecordsSource>, processor, … }
//!
//!  RecordsSource (the retrieval seam)                ShardConsumer (lifecycle)
//!  start(shard, StartingPosition, stop) ─┐           lease checkpoint ─▶ StartingPosition
//!    Polling: GetShardIterator /         │ bounded   user_records: deaggregate, range filter,
//!      GetRecords, paced, prefetching    ├─▶ mpsc ──▶  drop ≤ start checkpoint (sub-sequence)
//!    FanOut: SubscribeToShard events,    │ Batch     ─▶ RecordProcessor: initialize,
//!      resubscribed after what it has    │             process_records, shard_ended,
//!      itself delivered                  ┘             lease_lost, shutdown_requested
//! ```
//!
//! The parts, each in its own file: the seam ([`RecordsSource`], its [`Batch`] and
//! [`StartingPosition`]), the [`Retrieval`] choice, [`Polling`] with its [`PollingConfig`],
//! [`FanOut`] with its [`FanOutConfig`] and stream consumer registration, the record splitting
//! (`user_records`, pure), and the [`ShardConsumer`], which reads only from the seam and
//! does not know which retrieval fed it, and the retry of failed records (`failure_retry`,
//! pure). Data flows one way: a source is told where to start, and after that only hands
//! batches on; a retry stops it and starts a new one at the failed record.

mod batch;
mod batcher;
mod failure_retry;
mod fan_out;
mod payload;
mod polling;
mod records_source;
mod retrieval;
mod shard_consumer;
mod starting_position;
mod user_records;

pub(crate) use batch::Batch;
pub use batcher::Batching;
pub(crate) use failure_retry::Failure;
pub use failure_retry::FailureRetry;
pub use fan_out::FanOutConfig;
pub(crate) use fan_out::{describe_or_register, ConsumerState, FanOut, StreamConsumer};
pub(crate) use payload::inflate_all;
pub use payload::{PayloadDecompression, PayloadEncoding, MAX_INFLATED_BYTES};
pub(crate) use polling::Polling;
pub use polling::PollingConfig;
pub(crate) use records_source::RecordsSource;
pub use retrieval::Retrieval;
pub(crate) use shard_consumer::{Exit, ShardConsumer};
pub(crate) use starting_position::StartingPosition;
