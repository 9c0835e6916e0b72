//! [`Batch`]: what a [`RecordsSource`](super::RecordsSource) hands a shard consumer.
//!
//! ```text
//!  source ──Batch { records, millis_behind_latest, end: None }──▶ … ──▶ consumer
//!         ──Batch { records (maybe none), end: Some(children) }──▶ last; the channel closes
//! ```

use aws_sdk_kinesis::types::{ChildShard, Record};
use tokio::time::Instant;

/// Kinesis records of one shard, in order, as one retrieval call (a `GetRecords` response,
/// or a `SubscribeToShard` event) returned them.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Kinesis records, in the shard's order, not yet taken apart (aggregates whole).
    pub(crate) records: Vec<Record>,
    /// How far behind the tip of the shard the call was, for the consumer's lag gauge.
    pub(crate) millis_behind_latest: Option<i64>,
    /// Set on the last batch of a finished shard, with its children (perhaps none known):
    /// the consumer then asks the processor to checkpoint the shard end.
    pub(crate) end: Option<Vec<ChildShard>>,
    /// When the source received the call's answer: the consumer measures from it how long
    /// the batch waited before its processor got it.
    pub(crate) received: Instant,
}

impl Batch {
    /// The last batch of a shard that is gone from the stream, or closed with no way to
    /// read further: no records, no children known.
    pub(crate) fn shard_gone() -> Self {
        Batch {
            records: Vec::new(),
            millis_behind_latest: None,
            end: Some(Vec::new()),
            received: Instant::now(),
        }
    }
}
