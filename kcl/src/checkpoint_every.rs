//! [`CheckpointEvery`]: a processor's checkpoint cadence: every N records, every T, or
//! whichever comes first, instead of after every batch.
//!
//! ```text
//!  process_records(input) ─▶ after_batch(&input) ─ due? ─yes─▶ input.checkpointer.checkpoint()
//!                              records since ≥ N                └─▶ counters start again
//!                              or time since ≥ T           no ──▶ nothing written
//!  shard_ended / shutdown_requested ─▶ checkpoint() as always (not through this)
//! ```
//!
//! Fewer checkpoints mean fewer DynamoDB writes and, after a crash or a lease moving, more
//! records delivered again (everything after the last checkpoint). The time is only
//! looked at when a batch comes: a shard with no new records writes nothing.
//!
//! # Usage
//! ```no_run
//! use std::time::Duration;
//! use async_trait::async_trait;
//! use kinesis_consumer::*;
//!
//! #[derive(Debug)]
//! struct Processor(CheckpointEvery);
//!
//! #[async_trait]
//! impl RecordProcessor for Processor {
//!     async fn initialize(&mut self, _: InitializationInput) {}
//!     async fn process_records(&mut self, input: ProcessRecordsInput) {
//!         // ... handle input.records ...
//!         if let Err(e) = self.0.after_batch(&input).await {
//!             eprintln!("checkpoint failed: {e}");
//!         }
//!     }
//!     async fn lease_lost(&mut self, _: LeaseLostInput) {}
//!     async fn shard_ended(&mut self, input: ShardEndedInput) {
//!         input.checkpointer.checkpoint().await.ok();
//!     }
//! }
//!
//! let p = Processor(CheckpointEvery::records_or_interval(1_000, Duration::from_secs(10)));
//! # let _ = p;
//! ```

use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::processor::ProcessRecordsInput;

/// When a processor checkpoints: after at least `records` records, or `interval` after the
/// last checkpoint, whichever comes first (each optional; with neither, after every batch).
#[derive(Debug, Clone)]
pub struct CheckpointEvery {
    /// Records between checkpoints, if counted.
    records: Option<u64>,
    /// Time between checkpoints, if timed.
    interval: Option<Duration>,
    /// Records handed over since the last checkpoint.
    since_records: u64,
    /// When the last checkpoint was written (or the cadence started).
    since: Instant,
}

impl CheckpointEvery {
    /// After every batch (what a processor that checkpoints in each `process_records` does).
    pub fn batch() -> Self {
        Self::new(None, None)
    }

    /// After at least `n` records (at least 1).
    pub fn records(n: u64) -> Self {
        Self::new(Some(n.max(1)), None)
    }

    /// At the first batch at least `interval` after the last checkpoint.
    pub fn interval(interval: Duration) -> Self {
        Self::new(None, Some(interval))
    }

    /// After `n` records (at least 1) or `interval`, whichever comes first.
    pub fn records_or_interval(n: u64, interval: Duration) -> Self {
        Self::new(Some(n.max(1)), Some(interval))
    }

    fn new(records: Option<u64>, interval: Option<Duration>) -> Self {
        Self {
            records,
            interval,
            since_records: 0,
            since: Instant::now(),
        }
    }

    /// Counts a batch of `n` records; whether a checkpoint is due now.
    pub fn note(&mut self, n: usize) -> bool {
        self.since_records += n as u64;
        match (self.records, self.interval) {
            (None, None) => true,
            (records, interval) => {
                records.is_some_and(|r| self.since_records >= r)
                    || interval.is_some_and(|t| self.since.elapsed() >= t)
            }
        }
    }

    /// Starts counting again: a checkpoint was just written.
    pub fn checkpointed(&mut self) {
        self.since_records = 0;
        self.since = Instant::now();
    }

    /// Counts `input`'s batch and, when a checkpoint is due, checkpoints it (the whole
    /// batch): `Ok(true)` when written, `Ok(false)` when not due.
    ///
    /// # Cancellation
    /// Dropping the future may leave a checkpoint written or not; the counters start again
    /// only once it was.
    ///
    /// # Errors
    /// The checkpoint's error ([`Error::LeaseLost`], DynamoDB failures); the count is kept,
    /// so the next batch tries again.
    pub async fn after_batch(&mut self, input: &ProcessRecordsInput) -> Result<bool, Error> {
        if !self.note(input.records.len()) {
            return Ok(false);
        }
        input.checkpointer.checkpoint().await?;
        self.checkpointed();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_count_up_to_the_threshold() {
        let mut every = CheckpointEvery::records(10);
        assert!(!every.note(4));
        assert!(!every.note(5));
        assert!(every.note(1));
        every.checkpointed();
        assert!(!every.note(9));
        assert!(CheckpointEvery::records(0).note(1), "at least one");
        assert!(CheckpointEvery::batch().note(0), "every batch");
    }

    #[tokio::test(start_paused = true)]
    async fn time_counts_from_the_last_checkpoint_and_either_threshold_is_enough() {
        let mut every = CheckpointEvery::interval(Duration::from_secs(5));
        assert!(!every.note(1_000_000));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(every.note(1));
        every.checkpointed();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(!every.note(1));

        let mut both = CheckpointEvery::records_or_interval(100, Duration::from_secs(5));
        assert!(both.note(100), "records first");
        both.checkpointed();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(both.note(1), "time first");
    }
}
