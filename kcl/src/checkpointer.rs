//! The [`Checkpointer`]: records progress in the lease, only while this worker holds it.
//!
//! ```text
//!  RecordProcessor ─checkpoint()/checkpoint_at(seq, sub)─▶ Checkpointer ─validate range─▶
//!      HeldLease::checkpoint ─UpdateItem if leaseOwner = me AND leaseCounter = c─▶ LeaseStore
//!                                 refused ─▶ Error::LeaseLost (new owner's progress kept)
//!  RecordProcessor ─retry_from(seq, sub)/retry_batch()─▶ Checkpointer: the batch end drops
//!      back before the failed record ─▶ ShardConsumer reads the failure after the call and
//!      reads again from it (see FailureRetry)
//! ```
//!
//! # Usage
//! ```no_run
//! # async fn demo(input: kinesis_consumer::ProcessRecordsInput) -> Result<(), kinesis_consumer::Error> {
//! // ... process input.records ...
//! input.checkpointer.checkpoint().await?; // everything in this batch
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::checkpoint::{Checkpoint, SequenceNumber};
use crate::consumer::Failure;
use crate::error::Error;
use crate::leases::HeldLease;

/// Checkpoints one shard's progress. Cheap to clone; all clones share state.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    /// Shared state.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The lease as held during this consumer's tenure (not a later re-take of it): writes
    /// the checkpoint, conditional on ownership.
    held: Arc<HeldLease>,
    /// The shard.
    shard_id: String,
    /// Where the consumer is, to validate and default checkpoints.
    position: Mutex<Position>,
    /// Woken after a `SHARD_END` checkpoint so that children start promptly.
    shard_ended: Arc<Notify>,
}

#[derive(Debug)]
struct Position {
    /// The last checkpoint written (or the starting one).
    last: Checkpoint,
    /// The last user record of the latest batch handed to the processor (the largest
    /// position that may be checkpointed).
    batch_end: Option<(SequenceNumber, u64)>,
    /// The end of the batch before: where the latest batch starts after, and how far a
    /// checkpoint may go once that whole batch was reported failed.
    previous_end: Option<(SequenceNumber, u64)>,
    /// A failure reported about the latest batch, for the consumer to act on; it also
    /// holds checkpoints back (see [`Position::checkpointable`]).
    failure: Option<Failure>,
    /// Set when every record of a closed shard was delivered: `checkpoint()` writes SHARD_END.
    at_shard_end: bool,
    /// Children reported by Kinesis at the shard end, recorded with SHARD_END.
    children: Vec<String>,
}

impl Position {
    /// The largest position that may be checkpointed: the batch end, or, after a failure
    /// was reported, the last record before the failed one (the end of the batch before,
    /// for a record's first sub-record or a whole failed batch).
    fn checkpointable(&self) -> Option<(SequenceNumber, u64)> {
        match &self.failure {
            None => self.batch_end.clone(),
            Some(Failure::Batch) => self.previous_end.clone(),
            Some(Failure::Record((_, 0))) => self.previous_end.clone(),
            Some(Failure::Record((seq, sub))) => Some((seq.clone(), sub - 1)),
        }
    }
}

impl Checkpointer {
    pub(crate) fn new(
        held: Arc<HeldLease>,
        shard_id: String,
        start: Checkpoint,
        shard_ended: Arc<Notify>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                held,
                shard_id,
                position: Mutex::new(Position {
                    last: start,
                    batch_end: None,
                    previous_end: None,
                    failure: None,
                    at_shard_end: false,
                    children: Vec::new(),
                }),
                shard_ended,
            }),
        }
    }

    fn position(&self) -> std::sync::MutexGuard<'_, Position> {
        self.inner.position.lock().expect("not poisoned")
    }

    /// A new batch, ending at (`sequence`, `sub`), is about to be handed over.
    pub(crate) fn set_batch_end(&self, sequence: SequenceNumber, sub: u64) {
        let mut p = self.position();
        p.previous_end = p.checkpointable();
        p.batch_end = Some((sequence, sub));
        p.failure = None;
    }

    /// The failure reported about the latest batch, if any (taken: reported once). The
    /// batch then ends before the failed record: its records are read again.
    pub(crate) fn take_failure(&self) -> Option<Failure> {
        let mut p = self.position();
        p.failure.as_ref()?;
        p.batch_end = p.checkpointable();
        p.failure.take()
    }

    pub(crate) fn set_shard_end(&self, children: Vec<String>) {
        let mut p = self.position();
        p.at_shard_end = true;
        p.children = children;
    }

    /// The shard: its lease key, which is the shard id, or `account:stream:epoch:shardId`
    /// in a multi-stream application (so that it names the stream too).
    pub fn shard_id(&self) -> &str {
        &self.inner.shard_id
    }

    /// The last checkpoint written (or the one processing started from).
    pub fn last_checkpoint(&self) -> Checkpoint {
        self.position().last.clone()
    }

    /// Checkpoints everything delivered so far: the end of the latest batch, or `SHARD_END`
    /// once the shard has ended. Does nothing when nothing was delivered yet.
    ///
    /// # Cancellation
    /// Dropping the future after the write was sent may still record the checkpoint.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] if this worker no longer holds the lease (the table is left
    /// untouched); DynamoDB errors otherwise.
    pub async fn checkpoint(&self) -> Result<(), Error> {
        let (target, children) = {
            let p = self.position();
            if p.at_shard_end {
                (Checkpoint::ShardEnd, p.children.clone())
            } else if let Some((s, sub)) = &p.checkpointable() {
                (
                    Checkpoint::Sequence {
                        sequence_number: s.clone(),
                        sub_sequence_number: *sub,
                    },
                    Vec::new(),
                )
            } else {
                return Ok(());
            }
        };
        self.write(target, &children).await
    }

    /// Checkpoints at a given user record: everything up to and including
    /// (`sequence_number`, `sub_sequence_number`) is done.
    ///
    /// # Cancellation
    /// As [`checkpoint`](Self::checkpoint).
    ///
    /// # Errors
    /// [`Error::InvalidCheckpoint`] for a position before the last checkpoint or after the
    /// last record delivered; otherwise as [`checkpoint`](Self::checkpoint).
    pub async fn checkpoint_at(
        &self,
        sequence_number: &str,
        sub_sequence_number: u64,
    ) -> Result<(), Error> {
        let target = self.validate(sequence_number, sub_sequence_number)?;
        self.write(target, &[]).await
    }

    /// First phase of a two-phase checkpoint at the end of the latest batch, with
    /// application state that [`crate::RecordProcessor::initialize`] gets back if this
    /// worker dies before the second phase ([`checkpoint`](Self::checkpoint)).
    ///
    /// # Cancellation
    /// As [`checkpoint`](Self::checkpoint).
    ///
    /// # Errors
    /// As [`checkpoint_at`](Self::checkpoint_at); [`Error::InvalidCheckpoint`] when
    /// nothing was delivered yet.
    pub async fn prepare_checkpoint(&self, state: Option<Bytes>) -> Result<(), Error> {
        let end = self.position().checkpointable();
        let Some((s, sub)) = end else {
            return Err(Error::InvalidCheckpoint {
                shard_id: self.inner.shard_id.clone(),
                requested: "end of batch".into(),
                reason: "no record was delivered yet".into(),
            });
        };
        self.prepare_checkpoint_at(s.as_str(), sub, state).await
    }

    /// First phase of a two-phase checkpoint at a given user record.
    ///
    /// # Cancellation
    /// As [`checkpoint`](Self::checkpoint).
    ///
    /// # Errors
    /// As [`checkpoint_at`](Self::checkpoint_at).
    pub async fn prepare_checkpoint_at(
        &self,
        sequence_number: &str,
        sub_sequence_number: u64,
        state: Option<Bytes>,
    ) -> Result<(), Error> {
        let target = self.validate(sequence_number, sub_sequence_number)?;
        self.inner
            .held
            .prepare_checkpoint(&target, state.as_ref())
            .await
    }

    /// Reports that the user record at (`sequence_number`, `sub_sequence_number`) of the
    /// latest batch failed, and with it every record after it: once `process_records`
    /// returns, the records are read again from it and handed over after a pause (see
    /// [`FailureRetry`](crate::FailureRetry), which also says when a record is given up).
    /// The records before it are done: a [`checkpoint`](Self::checkpoint) from now on
    /// covers only them. Reporting several records keeps the earliest. AWS Lambda's
    /// equivalent is a `batchItemFailures` answer.
    ///
    /// Report before checkpointing: a position already checkpointed cannot be retried.
    ///
    /// # Errors
    /// [`Error::InvalidRetry`] for a position that is not a sequence number, not in the
    /// latest batch, or at or before the last checkpoint; nothing changes then.
    pub fn retry_from(&self, sequence_number: &str, sub_sequence_number: u64) -> Result<(), Error> {
        let invalid = |reason: &str| Error::InvalidRetry {
            shard_id: self.inner.shard_id.clone(),
            requested: format!("{sequence_number}/{sub_sequence_number}"),
            reason: reason.to_owned(),
        };
        let seq = SequenceNumber::parse(sequence_number)
            .ok_or_else(|| invalid("not a sequence number"))?;
        let at = (seq, sub_sequence_number);
        let mut p = self.position();
        if p.at_shard_end {
            return Err(invalid("the shard has ended: every record was delivered"));
        }
        if p.last.covers(&at.0, at.1) {
            return Err(invalid("at or before the last checkpoint"));
        }
        if p.previous_end.as_ref().is_some_and(|prev| &at <= prev) {
            return Err(invalid("in an earlier batch"));
        }
        if p.batch_end.as_ref().is_none_or(|end| &at > end) {
            return Err(invalid("after the last record delivered"));
        }
        if !matches!(&p.failure, Some(Failure::Record(earlier)) if earlier <= &at) {
            p.failure = Some(Failure::Record(at));
        }
        Ok(())
    }

    /// Reports that the latest batch failed without saying which record: once
    /// `process_records` returns, the batch is read again and handed over after a pause,
    /// in halves until the failing record is alone (see
    /// [`FailureRetry::bisect`](crate::FailureRetry::bisect)). A
    /// [`checkpoint`](Self::checkpoint) from now on covers only the batches before. A
    /// record reported with [`retry_from`](Self::retry_from) takes precedence. AWS
    /// Lambda's equivalent is a function error with `BisectBatchOnFunctionError`.
    ///
    /// Does nothing once the shard has ended (its records were all delivered).
    pub fn retry_batch(&self) {
        let mut p = self.position();
        if p.at_shard_end || matches!(p.failure, Some(Failure::Record(_))) {
            return;
        }
        p.failure = Some(Failure::Batch);
    }

    fn validate(&self, sequence_number: &str, sub: u64) -> Result<Checkpoint, Error> {
        let invalid = |reason: &str| Error::InvalidCheckpoint {
            shard_id: self.inner.shard_id.clone(),
            requested: format!("{sequence_number}/{sub}"),
            reason: reason.to_owned(),
        };
        let seq = SequenceNumber::parse(sequence_number)
            .ok_or_else(|| invalid("not a sequence number"))?;
        let p = self.position();
        if let Checkpoint::Sequence { .. } | Checkpoint::ShardEnd = p.last {
            if p.last.covers(&seq, sub)
                && p.last != Checkpoint::at(sequence_number, sub).expect("parsed")
            {
                return Err(invalid("before the last checkpoint"));
            }
        }
        match &p.checkpointable() {
            Some((end, end_sub)) if (&seq, sub) <= (end, *end_sub) => {}
            _ => return Err(invalid("after the last record delivered")),
        }
        Ok(Checkpoint::Sequence {
            sequence_number: seq,
            sub_sequence_number: sub,
        })
    }

    async fn write(&self, target: Checkpoint, children: &[String]) -> Result<(), Error> {
        self.inner.held.checkpoint(&target, children).await?;
        let end = target.is_shard_end();
        self.position().last = target;
        if end {
            self.inner.shard_ended.notify_one();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::Lease;
    use crate::leases::LeaseStore;
    use crate::leases::MemoryLeaseStore;
    use crate::leases::{LeaseConfig, LeaseCoordinator};

    async fn checkpointer() -> (Checkpointer, Arc<MemoryLeaseStore>, Arc<Notify>) {
        let store = Arc::new(MemoryLeaseStore::default());
        store
            .create_lease_if_not_exists(&Lease::new("s", Checkpoint::TrimHorizon))
            .await
            .unwrap();
        let coordinator = Arc::new(LeaseCoordinator::new(
            store.clone(),
            "w",
            LeaseConfig::default(),
        ));
        coordinator.take_leases().await.unwrap();
        let held = coordinator.held_lease("s").unwrap();
        let ended = Arc::new(Notify::new());
        let cp = Checkpointer::new(held, "s".into(), Checkpoint::TrimHorizon, ended.clone());
        (cp, store, ended)
    }

    async fn stored(store: &MemoryLeaseStore) -> Lease {
        store.get_lease("s").await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn checkpoints_are_bounded_by_what_was_delivered() {
        let (cp, store, _) = checkpointer().await;
        // Nothing delivered: checkpoint() is a no-op, a position is refused.
        cp.checkpoint().await.unwrap();
        assert_eq!(stored(&store).await.checkpoint, Checkpoint::TrimHorizon);
        assert!(matches!(
            cp.checkpoint_at("5", 0).await,
            Err(Error::InvalidCheckpoint { .. })
        ));
        cp.set_batch_end(SequenceNumber::parse("10").unwrap(), 3);
        assert!(matches!(
            cp.checkpoint_at("10", 4).await,
            Err(Error::InvalidCheckpoint { .. })
        ));
        assert!(matches!(
            cp.checkpoint_at("x1", 0).await,
            Err(Error::InvalidCheckpoint { .. })
        ));
        cp.checkpoint_at("10", 1).await.unwrap();
        assert_eq!(
            stored(&store).await.checkpoint,
            Checkpoint::at("10", 1).unwrap()
        );
        // Going back is refused; the same position again is fine.
        assert!(matches!(
            cp.checkpoint_at("9", 0).await,
            Err(Error::InvalidCheckpoint { .. })
        ));
        cp.checkpoint_at("10", 1).await.unwrap();
        cp.checkpoint().await.unwrap();
        assert_eq!(
            stored(&store).await.checkpoint,
            Checkpoint::at("10", 3).unwrap()
        );
        assert_eq!(cp.last_checkpoint(), Checkpoint::at("10", 3).unwrap());
    }

    #[tokio::test]
    async fn prepare_then_commit_and_shard_end() {
        let (cp, store, ended) = checkpointer().await;
        assert!(
            cp.prepare_checkpoint(None).await.is_err(),
            "nothing delivered"
        );
        cp.set_batch_end(SequenceNumber::parse("20").unwrap(), 0);
        cp.prepare_checkpoint(Some(Bytes::from_static(b"st")))
            .await
            .unwrap();
        let l = stored(&store).await;
        assert_eq!(l.pending_checkpoint, Some(Checkpoint::at("20", 0).unwrap()));
        assert_eq!(l.pending_checkpoint_state, Some(Bytes::from_static(b"st")));
        assert_eq!(l.checkpoint, Checkpoint::TrimHorizon);
        cp.checkpoint().await.unwrap();
        let l = stored(&store).await;
        assert_eq!(l.pending_checkpoint, None);
        assert_eq!(l.checkpoint, Checkpoint::at("20", 0).unwrap());
        cp.set_shard_end(vec!["child".into()]);
        cp.checkpoint().await.unwrap();
        let l = stored(&store).await;
        assert_eq!(l.checkpoint, Checkpoint::ShardEnd);
        assert_eq!(l.child_shard_ids, vec!["child"]);
        // The shard end woke whoever waits to start the children.
        tokio::time::timeout(std::time::Duration::from_secs(5), ended.notified())
            .await
            .expect("notified");
    }

    #[tokio::test]
    async fn a_reported_failure_holds_checkpoints_before_the_failed_record() {
        let (cp, store, _) = checkpointer().await;
        let seq = |s: &str| SequenceNumber::parse(s).unwrap();
        cp.set_batch_end(seq("10"), 0);
        cp.checkpoint().await.unwrap();
        cp.set_batch_end(seq("20"), 5);
        // Outside the batch: refused, nothing changes.
        for (s, sub) in [("10", 0), ("9", 0), ("21", 0), ("20", 6), ("x", 0)] {
            assert!(
                matches!(cp.retry_from(s, sub), Err(Error::InvalidRetry { .. })),
                "{s}/{sub}"
            );
        }
        assert_eq!(cp.take_failure(), None);
        // Sub-record 3 failed: a checkpoint covers up to sub-record 2.
        cp.retry_from("20", 3).unwrap();
        // A later record reported too: the earliest stays.
        cp.retry_from("20", 4).unwrap();
        assert!(cp.checkpoint_at("20", 3).await.is_err());
        cp.checkpoint().await.unwrap();
        assert_eq!(
            stored(&store).await.checkpoint,
            Checkpoint::at("20", 2).unwrap()
        );
        assert_eq!(cp.take_failure(), Some(Failure::Record((seq("20"), 3))));
        // The retry's batch starts after what was done; its first record fails at once.
        cp.set_batch_end(seq("30"), 0);
        cp.retry_from("20", 3).unwrap();
        cp.checkpoint().await.unwrap();
        assert_eq!(
            stored(&store).await.checkpoint,
            Checkpoint::at("20", 2).unwrap()
        );
        assert!(cp.take_failure().is_some());
        // A whole batch failed: nothing of it may be checkpointed.
        cp.set_batch_end(seq("40"), 0);
        cp.retry_batch();
        assert!(cp.checkpoint_at("40", 0).await.is_err());
        assert_eq!(cp.take_failure(), Some(Failure::Batch));
        // A record reported with the batch wins; a new batch clears both.
        cp.set_batch_end(seq("50"), 0);
        cp.retry_batch();
        cp.retry_from("50", 0).unwrap();
        cp.retry_batch();
        assert_eq!(cp.take_failure(), Some(Failure::Record((seq("50"), 0))));
        cp.set_batch_end(seq("60"), 0);
        assert_eq!(cp.take_failure(), None);
        cp.checkpoint().await.unwrap();
        assert_eq!(
            stored(&store).await.checkpoint,
            Checkpoint::at("60", 0).unwrap()
        );
    }
}
