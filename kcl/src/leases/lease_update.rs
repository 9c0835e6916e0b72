//! [`LeaseUpdate`]: one conditional write of a lease, decided without I/O by
//! [`Lease::renew`], [`Lease::take`], [`Lease::release`], [`Lease::record_checkpoint`] and
//! [`Lease::prepare_checkpoint`], and carried out by every [`LeaseStore`].
//!
//! ```text
//!  Lease (as last read) ──renew / take / release / record_checkpoint / prepare_checkpoint──▶
//!    LeaseUpdate { guard: counter (+ owner), changes, counter + 1 }
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
/// `guard`; it then makes `changes` and adds one to the counter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a lease update does nothing until a LeaseStore applies it"]
#[non_exhaustive]
pub struct LeaseUpdate {
    /// What the write does, for logs: `renew`, `take`, `evict`, `checkpoint` or
    /// `prepareCheckpoint`.
    pub operation: &'static str,
    /// The lease written.
    pub lease_key: String,
    /// What the stored lease must still be like.
    pub guard: Guard,
    /// What changes besides the counter.
    pub changes: Vec<Change>,
}

/// The condition of a [`LeaseUpdate`]: the stored lease is still as the writer read it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Guard {
    /// The counter the stored lease must still have: every write bumps it, so an equal
    /// counter means nobody wrote since.
    pub counter: u64,
    /// The owner the stored lease must still have, for writes only the owner may make.
    pub owner: OwnerGuard,
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
}

impl Guard {
    /// Whether `stored` still meets the guard.
    pub fn admits(&self, stored: &Lease) -> bool {
        stored.counter == self.counter
            && match &self.owner {
                OwnerGuard::Unchecked => true,
                OwnerGuard::Owner(owner) => stored.owner.as_deref() == Some(owner.as_str()),
                OwnerGuard::Unowned => stored.owner.is_none(),
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
                counter: lease.counter,
                owner: OwnerGuard::Unchecked,
            },
            changes: Vec::new(),
        }
    }

    /// An update of `lease` guarded by its counter and its owner.
    pub(crate) fn guarded_by_owner(operation: &'static str, lease: &Lease) -> Self {
        let mut update = Self::guarded_by_counter(operation, lease);
        update.guard.owner = match &lease.owner {
            Some(owner) => OwnerGuard::Owner(owner.clone()),
            None => OwnerGuard::Unowned,
        };
        update
    }

    /// Adds a change.
    pub(crate) fn with(mut self, change: Change) -> Self {
        self.changes.push(change);
        self
    }

    /// Makes the changes in `lease` and adds one to its counter. The caller checked the
    /// guard ([`Guard::admits`]), or the store did the write.
    pub fn apply_to(&self, lease: &mut Lease) {
        for change in &self.changes {
            match change {
                Change::Owner(owner) => lease.owner = owner.clone(),
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
        lease.counter += 1;
    }
}
