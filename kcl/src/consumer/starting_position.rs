//! [`StartingPosition`]: where a [`RecordsSource`](super::RecordsSource) starts reading a
//! shard, made from the lease's checkpoint (and the configured `AT_TIMESTAMP` time).
//!
//! ```text
//!  Checkpoint::Sequence { seq, sub } ─▶ AtSequence(seq)   AT, not AFTER: later sub-records
//!                                                         of the checkpointed aggregate are due
//!  Checkpoint::Latest                ─▶ Latest
//!  Checkpoint::AtTimestamp + time    ─▶ AtTimestamp(time, or the Unix epoch if none)
//!  Checkpoint::TrimHorizon           ─▶ TrimHorizon
//! ```
//!
//! These are the positions both `GetShardIterator` and `SubscribeToShard` take.

use std::time::SystemTime;

use crate::checkpoint::{Checkpoint, SequenceNumber};

/// Where a source starts reading a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartingPosition {
    /// At this record, included: the consumer drops its sub-records up to the checkpoint.
    AtSequence(SequenceNumber),
    /// At the oldest record kept.
    TrimHorizon,
    /// At the tip: only records written from now on.
    Latest,
    /// At the first record written at or after this time.
    AtTimestamp(SystemTime),
}

impl StartingPosition {
    /// Where to start a shard whose lease holds `checkpoint`; `at_timestamp` is the time
    /// of an `AT_TIMESTAMP` initial position.
    ///
    /// A `SHARD_END` checkpoint has nothing left to read; the consumer stops before asking,
    /// and it maps to the trim horizon like a fresh lease.
    pub(crate) fn from_checkpoint(
        checkpoint: &Checkpoint,
        at_timestamp: Option<SystemTime>,
    ) -> Self {
        match checkpoint {
            Checkpoint::Sequence {
                sequence_number, ..
            } => Self::AtSequence(sequence_number.clone()),
            Checkpoint::Latest => Self::Latest,
            Checkpoint::AtTimestamp => {
                Self::AtTimestamp(at_timestamp.unwrap_or(SystemTime::UNIX_EPOCH))
            }
            Checkpoint::TrimHorizon | Checkpoint::ShardEnd => Self::TrimHorizon,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_sequence_checkpoint_starts_at_its_record_whatever_the_sub_sequence() {
        let cp = Checkpoint::at("4200", 3).unwrap();
        assert_eq!(
            StartingPosition::from_checkpoint(&cp, None),
            StartingPosition::AtSequence(SequenceNumber::parse("4200").unwrap())
        );
    }

    #[test]
    fn sentinels_start_where_they_say() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let from = |cp: &Checkpoint| StartingPosition::from_checkpoint(cp, Some(t));
        assert_eq!(
            from(&Checkpoint::TrimHorizon),
            StartingPosition::TrimHorizon
        );
        assert_eq!(from(&Checkpoint::Latest), StartingPosition::Latest);
        assert_eq!(
            from(&Checkpoint::AtTimestamp),
            StartingPosition::AtTimestamp(t)
        );
        assert_eq!(from(&Checkpoint::ShardEnd), StartingPosition::TrimHorizon);
    }

    #[test]
    fn at_timestamp_without_a_time_starts_at_the_epoch() {
        assert_eq!(
            StartingPosition::from_checkpoint(&Checkpoint::AtTimestamp, None),
            StartingPosition::AtTimestamp(SystemTime::UNIX_EPOCH)
        );
    }
}
