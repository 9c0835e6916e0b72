//! [`LeaseUpdate`]: one conditional write of a lease, decided without I/O by
//! [`Lease::renew`], [`Lease::take`], [`Lease::release`], [`Lease::record_checkpoint`] and
//! [`Lease::prepare_checkpoint`], and carried out by every [`LeaseStore`].
//!
//! ```text
//!  Lease (as last read) ──renew / take / release / record_checkpoint / prepare_checkpoint──▶
//!    LeaseUpdate { guard: counter (+ owner, checkpointOwner), changes, counter + 1 }
//!  (a handoff's start_handoff / end_handoff: guarded by the owners alone; the start leaves
//!   the counter as it is)
//!      ├─▶ LeaseTable: conditional UpdateItem (guard → ConditionExpression, changes → SET/REMOVE/ADD)
//!      ├─▶ MemoryLeaseStore: guard.admits(stored) ─▶ apply_to(stored)
//!      └─▶ the holder's own copy, once the store applied it: apply_to(held)
//! ```
//!
//! [`LeaseStore`]: crate::leases::LeaseStore

use bytes::Bytes;

use super::throughput::Throughput;
use crate::checkpoint::Checkpoint;
use crate::leases::Lease;

/// One conditional write of one lease: applied only if the stored lease still meets
/// `guard`; it then makes `changes` and adds one to the counter (all but the start of a
/// graceful handoff).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a lease update does nothing until a LeaseStore applies it"]
#[non_exhaustive]
pub struct LeaseUpdate {
    /// What the write does, for logs: `renew`, `take`, `evict`, `checkpoint`,
    /// `prepareCheckpoint`, `initiateLeaseHandoff` or `completeLeaseHandoff`.
    pub operation: &'static str,
    /// The lease written.
    pub lease_key: String,
    /// What the stored lease must still be like.
    pub guard: Guard,
    /// What changes besides the counter.
    pub changes: Vec<Change>,
    /// Whether the write adds one to the counter: every write does but the start of a
    /// graceful handoff, which the Java KCL 3.x leaves the counter alone for so that the
    /// current owner's writes go on meanwhile.
    pub bumps_counter: bool,
}

/// The condition of a [`LeaseUpdate`]: the stored lease is still as the writer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Guard {
    /// The counter the stored lease must still have: every write bumps it, so an equal
    /// counter means nobody wrote since. `None` for the writes of a graceful handoff,
    /// guarded by the owners alone (as the Java KCL 3.x's).
    pub counter: Option<u64>,
    /// The owner the stored lease must still have, for writes only the owner may make.
    pub owner: OwnerGuard,
    /// What the stored lease's `checkpointOwner` must be: owner writes expect it as read
    /// (absent, or the previous owner during a handoff), as the Java KCL's owner
    /// expectation does, so that a handoff started since refuses them.
    pub checkpoint_owner: CheckpointOwnerGuard,
}

/// What a [`Guard`] asks of the stored lease's `checkpointOwner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointOwnerGuard {
    /// Anything (takes).
    Unchecked,
    /// No handoff pending.
    Absent,
    /// A handoff pending from this worker.
    Is(String),
}

/// What a [`Guard`] asks of the stored lease's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerGuard {
    /// Any owner (or none): a take moves the lease from whoever holds it.
    Unchecked,
    /// Owned by this worker.
    Owner(String),
    /// Owned by nobody.
    Unowned,
}

/// One field a [`LeaseUpdate`] changes (the counter always grows by one besides).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// `leaseOwner` becomes this worker (`Some`) or is removed (`None`: the lease is free).
    Owner(Option<String>),
    /// `ownerSwitchesSinceCheckpoint` grows by one: the lease changed hands.
    CountOwnerSwitch,
    /// `ownerSwitchesSinceCheckpoint` goes back to 0: progress was recorded.
    ResetOwnerSwitches,
    /// `checkpoint` and `checkpointSubSequenceNumber` become this.
    Checkpoint(Checkpoint),
    /// The first phase of a two-phase checkpoint, with its application state (`Some`), or
    /// none any more (`None`: every pending attribute is removed).
    PendingCheckpoint(Option<(Checkpoint, Option<Bytes>)>),
    /// `childShardIds` becomes this.
    ChildShardIds(Vec<String>),
    /// `throughputKBps` becomes this: the holder's measurement, written with its own writes.
    Throughput(Throughput),
    /// `checkpointOwner` becomes this worker (`Some`: a graceful handoff from it starts)
    /// or is removed (`None`: the handoff is over).
    CheckpointOwner(Option<String>),
}

impl Guard {
    /// Whether `stored` still meets the guard.
    pub fn admits(&self, stored: &Lease) -> bool {
        self.counter.is_none_or(|c| stored.counter == c)
            && match &self.owner {
                OwnerGuard::Unchecked => true,
                OwnerGuard::Owner(owner) => stored.owner.as_deref() == Some(owner.as_str()),
                OwnerGuard::Unowned => stored.owner.is_none(),
            }
            && match &self.checkpoint_owner {
                CheckpointOwnerGuard::Unchecked => true,
                CheckpointOwnerGuard::Absent => stored.checkpoint_owner.is_none(),
                CheckpointOwnerGuard::Is(w) => stored.checkpoint_owner.as_deref() == Some(w),
            }
    }
}

impl LeaseUpdate {
    /// An update of `lease` guarded by its counter alone.
    pub(crate) fn guarded_by_counter(operation: &'static str, lease: &Lease) -> Self {
        Self {
            operation,
            lease_key: lease.lease_key.clone(),
            guard: Guard {
                counter: Some(lease.counter),
                owner: OwnerGuard::Unchecked,
                checkpoint_owner: CheckpointOwnerGuard::Unchecked,
            },
            changes: Vec::new(),
            bumps_counter: true,
        }
    }

    /// An update of `lease` guarded by its counter and its owners (`leaseOwner` and
    /// `checkpointOwner`, as read).
    pub(crate) fn guarded_by_owner(operation: &'static str, lease: &Lease) -> Self {
        let mut update = Self::guarded_by_counter(operation, lease);
        update.guard.owner = match &lease.owner {
            Some(owner) => OwnerGuard::Owner(owner.clone()),
            None => OwnerGuard::Unowned,
        };
        update.guard.checkpoint_owner = match &lease.checkpoint_owner {
            Some(w) => CheckpointOwnerGuard::Is(w.clone()),
            None => CheckpointOwnerGuard::Absent,
        };
        update
    }

    /// Adds a change.
    pub(crate) fn with(mut self, change: Change) -> Self {
        self.changes.push(change);
        self
    }

    /// Makes the changes in `lease` and adds one to its counter (unless
    /// [`bumps_counter`](Self::bumps_counter) is false). The caller checked the guard
    /// ([`Guard::admits`]), or the store did the write.
    pub fn apply_to(&self, lease: &mut Lease) {
        for change in &self.changes {
            match change {
                // Any change of hands ends a pending handoff (a CheckpointOwner change
                // after it sets a new one).
                Change::Owner(owner) => {
                    lease.owner = owner.clone();
                    lease.checkpoint_owner = None;
                }
                Change::CheckpointOwner(w) => lease.checkpoint_owner = w.clone(),
                Change::CountOwnerSwitch => lease.owner_switches_since_checkpoint += 1,
                Change::ResetOwnerSwitches => lease.owner_switches_since_checkpoint = 0,
                Change::Checkpoint(checkpoint) => lease.checkpoint = checkpoint.clone(),
                Change::PendingCheckpoint(pending) => {
                    let (checkpoint, state) = match pending {
                        Some((checkpoint, state)) => (Some(checkpoint.clone()), state.clone()),
                        None => (None, None),
                    };
                    lease.pending_checkpoint = checkpoint;
                    lease.pending_checkpoint_state = state;
                }
                Change::ChildShardIds(children) => lease.child_shard_ids = children.clone(),
                Change::Throughput(throughput) => lease.throughput = Some(*throughput),
            }
        }
        if self.bumps_counter {
            lease.counter += 1;
        }
    }
}
