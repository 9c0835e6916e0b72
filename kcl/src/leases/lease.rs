//! [`Lease`]: one row of the lease table, and the conditional writes that change it,
//! decided here once for every store.
//!
//! ```text
//!  Lease { lease_key, owner, counter, checkpoint, pending_checkpoint(+ state),
//!          owner_switches_since_checkpoint, parent / child shard ids, hash_key_range,
//!          throughput, checkpoint_owner }
//!  ("guard: owner" also checks checkpointOwner as read, as the Java KCL's owner expectation)
//!    ├─ renew()                      guard: counter, owner   counter + 1 (as every write)
//!    ├─ take(worker)                 guard: counter          owner = worker, +1 switch if new
//!    ├─ release()                    guard: counter, owner   owner removed
//!    ├─ start_handoff(new)           guard: owner, no handoff owner = new, checkpointOwner =
//!    │                                                       old; counter unchanged
//!    ├─ end_handoff()                guard: owner, cpOwner   checkpointOwner removed
//!    ├─ record_checkpoint(cp, kids)  guard: counter, owner   checkpoint = cp, pending cleared,
//!    │                                                       switches = 0, children if any
//!    └─ prepare_checkpoint(cp, st)   guard: counter, owner   pending = (cp, st)
//!        each ─▶ LeaseUpdate ─▶ a LeaseStore writes it; the holder applies it to its copy
//! ```

use bytes::Bytes;
use kinesis_agg::HashKeyRange;

use super::lease_update::{Change, CheckpointOwnerGuard, LeaseUpdate, OwnerGuard};
use super::throughput::Throughput;
use crate::checkpoint::Checkpoint;
use crate::multi_stream::StreamIdentifier;

/// One row of the lease table: the right to process one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The hash key: the shard id; for a multi-stream lease
    /// `account:stream:creationEpoch:shardId` (see [`stream`](Self::stream)).
    pub lease_key: String,
    /// The worker holding the lease; `None` when unassigned (new or released).
    pub owner: Option<String>,
    /// Bumped by every renew, take, evict and checkpoint; every write is conditional on it,
    /// and a counter that stops moving is how other workers tell the owner is gone.
    pub counter: u64,
    /// Progress: where processing resumes.
    pub checkpoint: Checkpoint,
    /// First phase of a two-phase checkpoint, if one is pending.
    pub pending_checkpoint: Option<Checkpoint>,
    /// Application state saved with the pending checkpoint.
    pub pending_checkpoint_state: Option<Bytes>,
    /// How often the lease changed hands since the last checkpoint (a hint of a poison batch).
    pub owner_switches_since_checkpoint: u64,
    /// The shard's parents (one after a split, two after a merge); a child is processed only
    /// after all of them reached `SHARD_END`.
    pub parent_shard_ids: Vec<String>,
    /// The shard's children, when known.
    pub child_shard_ids: Vec<String>,
    /// The shard's hash key range, when known; sub-records outside it are dropped.
    pub hash_key_range: Option<HashKeyRange>,
    /// The stream of a multi-stream lease (written as `streamName`, with `shardId`, as the
    /// Java KCL's multi-stream leases); `None` for a single-stream lease, whose stream is
    /// the application's one.
    pub stream: Option<StreamIdentifier>,
    /// The shard's throughput as its holder last wrote it (`throughputKBps`, the Java KCL
    /// 3.x's attribute): what throughput balancing weighs the lease by; `None` until a
    /// holder measured it (new leases, tables of the Java KCL 2.x).
    pub throughput: Option<Throughput>,
    /// The previous owner while a graceful handoff is pending (`checkpointOwner`, the Java
    /// KCL 3.x's attribute): `owner` is then the next owner, which waits, while this one
    /// finishes, may checkpoint, and hands the lease over (see `leases::handoff`);
    /// `None` otherwise.
    pub checkpoint_owner: Option<String>,
}

impl Lease {
    /// A new, unowned lease for a shard starting at `checkpoint`.
    pub fn new(lease_key: impl Into<String>, checkpoint: Checkpoint) -> Self {
        Self {
            lease_key: lease_key.into(),
            owner: None,
            counter: 0,
            checkpoint,
            pending_checkpoint: None,
            pending_checkpoint_state: None,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids: Vec::new(),
            child_shard_ids: Vec::new(),
            hash_key_range: None,
            stream: None,
            throughput: None,
            checkpoint_owner: None,
        }
    }

    /// A new, unowned multi-stream lease for `shard_id` of `stream` starting at
    /// `checkpoint`: its key is `stream.lease_key(shard_id)`.
    pub fn new_multi_stream(
        stream: StreamIdentifier,
        shard_id: &str,
        checkpoint: Checkpoint,
    ) -> Self {
        let mut lease = Self::new(stream.lease_key(shard_id), checkpoint);
        lease.stream = Some(stream);
        lease
    }

    /// The shard's id: the lease key, without its stream for a multi-stream lease.
    pub fn shard_id(&self) -> &str {
        match &self.stream {
            Some(stream) => self
                .lease_key
                .strip_prefix(&format!("{stream}:"))
                .unwrap_or(&self.lease_key),
            None => &self.lease_key,
        }
    }

    /// The lease key of another shard of this lease's stream (a parent or a child, whose
    /// ids the lease holds bare): the shard id itself for a single-stream lease.
    pub fn sibling_lease_key(&self, shard_id: &str) -> String {
        match &self.stream {
            Some(stream) => stream.lease_key(shard_id),
            None => shard_id.to_owned(),
        }
    }

    /// Sets the parents.
    pub fn with_parents(mut self, parents: Vec<String>) -> Self {
        self.parent_shard_ids = parents;
        self
    }

    /// Sets the hash key range.
    pub fn with_hash_key_range(mut self, range: Option<HashKeyRange>) -> Self {
        self.hash_key_range = range;
        self
    }

    /// Whether `worker` owns the lease.
    pub fn is_owned_by(&self, worker: &str) -> bool {
        self.owner.as_deref() == Some(worker)
    }

    /// The renewal of this lease by its owner: only the counter moves, if counter and
    /// owner are still as read.
    pub fn renew(&self) -> LeaseUpdate {
        LeaseUpdate::guarded_by_owner("renew", self)
    }

    /// `new_owner` takes this lease, if the counter is still as read (whoever owns it):
    /// the owner changes, and when it is another worker the owner switch is counted.
    pub fn take(&self, new_owner: &str) -> LeaseUpdate {
        let update = LeaseUpdate::guarded_by_counter("take", self)
            .with(Change::Owner(Some(new_owner.to_owned())));
        if self.is_owned_by(new_owner) {
            update
        } else {
            update.with(Change::CountOwnerSwitch)
        }
    }

    /// The owner gives this lease up (or another worker evicts it), if counter and owner
    /// are still as read: the owner is removed, so any worker may take it at once.
    pub fn release(&self) -> LeaseUpdate {
        LeaseUpdate::guarded_by_owner("evict", self).with(Change::Owner(None))
    }

    /// The start of a graceful handoff of this lease to `new_owner` (the Java KCL 3.x's
    /// `initiateGracefulLeaseHandoff`): `leaseOwner` becomes `new_owner` and
    /// `checkpointOwner` the current owner, if the owner is still as read and no handoff is
    /// pending; the counter is neither checked nor changed, so the current owner's writes
    /// are not interrupted by the write itself. `None` when the lease has no owner.
    pub fn start_handoff(&self, new_owner: &str) -> Option<LeaseUpdate> {
        let old = self.owner.clone()?;
        let mut update = LeaseUpdate::guarded_by_counter("initiateLeaseHandoff", self);
        update.guard.counter = None;
        update.guard.owner = OwnerGuard::Owner(old.clone());
        update.guard.checkpoint_owner = CheckpointOwnerGuard::Absent;
        update.bumps_counter = false;
        Some(
            update
                .with(Change::Owner(Some(new_owner.to_owned())))
                .with(Change::CheckpointOwner(Some(old))),
        )
    }

    /// The end of a pending graceful handoff: `checkpointOwner` is removed and the counter
    /// grows, if owner and checkpoint owner are still as read (whatever the counter, as
    /// the Java KCL's `assignLease` by the previous owner). Made by the previous owner once
    /// its processor stopped, or by the next owner when the handoff timed out. `None` when
    /// no handoff is pending on this copy.
    pub fn end_handoff(&self) -> Option<LeaseUpdate> {
        self.checkpoint_owner.as_ref()?;
        let mut update = LeaseUpdate::guarded_by_owner("completeLeaseHandoff", self);
        update.guard.counter = None;
        Some(update.with(Change::CheckpointOwner(None)))
    }

    /// The owner records `checkpoint`, if counter and owner are still as read: any pending
    /// checkpoint is cleared, the owner switch count goes back to 0, and `child_shard_ids`
    /// are recorded when not empty (at a shard end).
    pub fn record_checkpoint(
        &self,
        checkpoint: &Checkpoint,
        child_shard_ids: &[String],
    ) -> LeaseUpdate {
        let update = LeaseUpdate::guarded_by_owner("checkpoint", self)
            .with(Change::Checkpoint(checkpoint.clone()))
            .with(Change::ResetOwnerSwitches)
            .with(Change::PendingCheckpoint(None));
        if child_shard_ids.is_empty() {
            update
        } else {
            update.with(Change::ChildShardIds(child_shard_ids.to_vec()))
        }
    }

    /// The owner records the first phase of a two-phase checkpoint, with application
    /// state, if counter and owner are still as read; the checkpoint itself is unchanged.
    pub fn prepare_checkpoint(&self, pending: &Checkpoint, state: Option<&Bytes>) -> LeaseUpdate {
        LeaseUpdate::guarded_by_owner("prepareCheckpoint", self).with(Change::PendingCheckpoint(
            Some((pending.clone(), state.cloned())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::Guard;

    #[test]
    fn multi_stream_leases_name_their_stream_and_shard() {
        let stream: StreamIdentifier = "123:orders:9".parse().unwrap();
        let lease = Lease::new_multi_stream(stream.clone(), "shardId-1", Checkpoint::TrimHorizon);
        assert_eq!(lease.lease_key, "123:orders:9:shardId-1");
        assert_eq!(lease.shard_id(), "shardId-1");
        assert_eq!(lease.stream, Some(stream));
        assert_eq!(
            lease.sibling_lease_key("shardId-0"),
            "123:orders:9:shardId-0"
        );
        let single = Lease::new("shardId-1", Checkpoint::TrimHorizon);
        assert_eq!(single.stream, None);
        assert_eq!(single.shard_id(), "shardId-1");
        assert_eq!(single.sibling_lease_key("shardId-0"), "shardId-0");
    }

    #[test]
    fn takes_move_the_owner_and_count_switches_guarded_by_the_counter_alone() {
        let mut lease = Lease::new("s", Checkpoint::TrimHorizon);
        let take = lease.take("w1");
        assert_eq!(
            take.guard,
            Guard {
                counter: Some(0),
                owner: OwnerGuard::Unchecked,
                checkpoint_owner: CheckpointOwnerGuard::Unchecked,
            }
        );
        take.apply_to(&mut lease);
        assert_eq!(lease.owner.as_deref(), Some("w1"));
        assert_eq!(
            (lease.counter, lease.owner_switches_since_checkpoint),
            (1, 1)
        );
        // Taken from another worker: whoever owns it, only the counter guards.
        let stolen = lease.take("w2");
        assert!(stolen.guard.admits(&lease));
        stolen.apply_to(&mut lease);
        assert_eq!(
            (lease.counter, lease.owner_switches_since_checkpoint),
            (2, 2)
        );
        // Taking back one's own lease is no switch.
        lease.take("w2").apply_to(&mut lease);
        assert_eq!(
            (lease.counter, lease.owner_switches_since_checkpoint),
            (3, 2)
        );
    }

    #[test]
    fn owner_writes_are_guarded_by_counter_and_owner() {
        let mut lease = Lease::new("s", Checkpoint::TrimHorizon);
        lease.take("w1").apply_to(&mut lease);
        let renewal = lease.renew();
        assert_eq!(renewal.guard.owner, OwnerGuard::Owner("w1".into()));
        assert!(renewal.changes.is_empty(), "only the counter moves");
        let before = lease.clone();
        renewal.apply_to(&mut lease);
        assert_eq!(lease.counter, before.counter + 1);
        // A write decided on the lease as read before is refused now.
        assert!(!before.renew().guard.admits(&lease));
        assert!(!before
            .record_checkpoint(&Checkpoint::ShardEnd, &[])
            .guard
            .admits(&lease));
        // So is one by a worker that does not own it, at the right counter.
        let mut other = lease.clone();
        other.owner = Some("w2".into());
        assert!(!other.renew().guard.admits(&lease));
        // Released: nobody owns it, and a write guarded by "unowned" fits it.
        lease.release().apply_to(&mut lease);
        assert_eq!(lease.owner, None);
        assert_eq!(lease.renew().guard.owner, OwnerGuard::Unowned);
        assert!(lease.renew().guard.admits(&lease));
    }

    #[test]
    fn checkpoints_clear_the_pending_one_and_reset_owner_switches() {
        let mut lease = Lease::new("s", Checkpoint::TrimHorizon);
        lease.take("w1").apply_to(&mut lease);
        let state = Bytes::from_static(b"st");
        let pending = Checkpoint::at("20", 0).unwrap();
        lease
            .prepare_checkpoint(&pending, Some(&state))
            .apply_to(&mut lease);
        assert_eq!(lease.pending_checkpoint, Some(pending));
        assert_eq!(lease.pending_checkpoint_state, Some(state));
        assert_eq!(lease.checkpoint, Checkpoint::TrimHorizon, "unchanged");
        let done = Checkpoint::at("20", 0).unwrap();
        lease.record_checkpoint(&done, &[]).apply_to(&mut lease);
        assert_eq!(lease.checkpoint, done);
        assert_eq!(lease.pending_checkpoint, None);
        assert_eq!(lease.pending_checkpoint_state, None);
        assert_eq!(lease.owner_switches_since_checkpoint, 0);
        assert!(lease.child_shard_ids.is_empty());
        lease
            .record_checkpoint(&Checkpoint::ShardEnd, &["c1".into(), "c2".into()])
            .apply_to(&mut lease);
        assert_eq!(lease.child_shard_ids, vec!["c1", "c2"]);
        assert_eq!(lease.counter, 4);
    }
}
