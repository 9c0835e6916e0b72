//! [`RecordsSource`]: the retrieval seam between reading a shard from Kinesis and
//! processing it.
//!
//! ```text
//!  ShardConsumer ──start(shard, StartingPosition, stop)──▶ source (spawns its task)
//!  ShardConsumer ◀──────── mpsc::Receiver<Batch> ───────── task: batches in shard order,
//!                                                            then one with `end`, then closed
//! ```
//!
//! The consumer says where to start once; after that it only receives. A source that must
//! start over mid-shard (a new shard iterator after one expired; a `SubscribeToShard`
//! subscription renewed every 5 minutes or after an error) resumes right after the last
//! record it has itself put in the channel: the channel delivers every batch, in order,
//! so what was sent is what the consumer will see, and no call back is needed.

use std::fmt;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Batch, StartingPosition};

/// Reads one shard at a time into batches; a shard consumer's only way to get records.
///
/// One source serves every shard consumer of a worker, made by the start-up:
/// [`Polling`](super::Polling) (`GetRecords`) or [`FanOut`](super::FanOut)
/// (`SubscribeToShard`: each event becomes a [`Batch`]; when a subscription ends or fails,
/// its task subscribes again `AFTER_SEQUENCE_NUMBER` the last record it sent).
pub(crate) trait RecordsSource: Send + Sync + fmt::Debug {
    /// Spawns the task that reads `shard_id` from `from` and returns the receiving end of
    /// its bounded channel (its capacity is how far the source reads ahead).
    ///
    /// What the task must do:
    /// - send batches in the shard's order, each record once (`from` being
    ///   [`StartingPosition::AtSequence`], the record at that number comes first);
    /// - mend retrieval errors itself (retry, new iterator, resubscribe), resuming after
    ///   the last record it sent;
    /// - when the shard is finished, send one last batch with `end` set, then stop;
    /// - stop when `stop` is cancelled or the receiver is dropped.
    ///
    /// A channel closed without an `end` batch means the source gave up; the consumer
    /// then stops as if the lease were lost, and the shard is read again from its
    /// checkpoint.
    ///
    /// Must be called within a Tokio runtime.
    fn start(
        &self,
        shard_id: &str,
        from: StartingPosition,
        stop: CancellationToken,
    ) -> mpsc::Receiver<Batch>;
}
