//! The [`Checkpointer`]: records progress in the lease, only while this worker holds it.
//!
//! ```text
//!  RecordProcessor ─checkpoint()/checkpoint_at(seq, sub)─▶ Checkpointer ─validate range─▶
//!      HeldLease::checkpoint ─UpdateItem if leaseOwner = me AND leaseCounter = c─▶ LeaseStore
//!                                 refused ─▶ Error::LeaseLost (new owner's progress kept)
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
    /// Set when every record of a closed shard was delivered: `checkpoint()` writes SHARD_END.
    at_shard_end: bool,
    /// Children reported by Kinesis at the shard end, recorded with SHARD_END.
    children: Vec<String>,
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

    pub(crate) fn set_batch_end(&self, sequence: SequenceNumber, sub: u64) {
        self.position().batch_end = Some((sequence, sub));
    }

    pub(crate) fn set_shard_end(&self, children: Vec<String>) {
        let mut p = self.position();
        p.at_shard_end = true;
        p.children = children;
    }

    /// The shard.
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
            } else if let Some((s, sub)) = &p.batch_end {
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
        let end = self.position().batch_end.clone();
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
        match &p.batch_end {
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
}
