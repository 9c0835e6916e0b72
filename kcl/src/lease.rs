//! Leases and checkpoints as they live in the lease table, and the conditional writes
//! that change a lease, decided here once for every store.
//!
//! ```text
//!  Lease { lease_key, owner, counter, checkpoint, pending_checkpoint(+ state),
//!          owner_switches_since_checkpoint, parent / child shard ids, hash_key_range }
//!    ├─ renew()                      guard: counter, owner   counter + 1 (as every write)
//!    ├─ take(worker)                 guard: counter          owner = worker, +1 switch if new
//!    ├─ release()                    guard: counter, owner   owner removed
//!    ├─ record_checkpoint(cp, kids)  guard: counter, owner   checkpoint = cp, pending cleared,
//!    │                                                       switches = 0, children if any
//!    └─ prepare_checkpoint(cp, st)   guard: counter, owner   pending = (cp, st)
//!        each ─▶ LeaseUpdate ─▶ a LeaseStore writes it; the holder applies it to its copy
//! ```

use std::cmp::Ordering;
use std::fmt;

use bytes::Bytes;
use kinesis_agg::HashKeyRange;

use crate::leases::{Change, LeaseUpdate};

/// The sentinel stored in `checkpoint` before any record was processed, reading from the
/// oldest record.
pub const TRIM_HORIZON: &str = "TRIM_HORIZON";
/// The sentinel for "start at the tip of the shard".
pub const LATEST: &str = "LATEST";
/// The sentinel for "start at the configured timestamp".
pub const AT_TIMESTAMP: &str = "AT_TIMESTAMP";
/// The sentinel for "every record of this (closed) shard was processed".
pub const SHARD_END: &str = "SHARD_END";

/// A Kinesis sequence number: a decimal string of up to 128 bits, ordered numerically.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

impl SequenceNumber {
    /// Wraps a sequence number as Kinesis returned it.
    ///
    /// Returns `None` unless `s` is a non-empty string of ASCII digits.
    pub fn parse(s: &str) -> Option<Self> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| Self(s.to_owned()))
    }

    /// The decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without leading zeros, for numeric comparison.
    fn significant(&self) -> &str {
        let t = self.0.trim_start_matches('0');
        if t.is_empty() {
            "0"
        } else {
            t
        }
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.significant(), other.significant());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A position within a shard: a record (sequence number plus sub-sequence number within a
/// KPL aggregate), or one of the KCL's sentinels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Checkpoint {
    /// Nothing processed yet; start at the oldest record.
    TrimHorizon,
    /// Nothing processed yet; start at the tip.
    Latest,
    /// Nothing processed yet; start at the configured timestamp.
    AtTimestamp,
    /// Every record up to and including this user record was processed.
    Sequence {
        /// The Kinesis record.
        sequence_number: SequenceNumber,
        /// The user record within it (0 for a plain record).
        sub_sequence_number: u64,
    },
    /// The shard is closed and every record in it was processed.
    ShardEnd,
}

impl Checkpoint {
    /// A checkpoint at this record.
    ///
    /// Returns `None` when `sequence_number` is not a decimal number.
    pub fn at(sequence_number: &str, sub_sequence_number: u64) -> Option<Self> {
        Some(Checkpoint::Sequence {
            sequence_number: SequenceNumber::parse(sequence_number)?,
            sub_sequence_number,
        })
    }

    /// The `checkpoint` attribute's text.
    pub fn as_attribute(&self) -> &str {
        match self {
            Checkpoint::TrimHorizon => TRIM_HORIZON,
            Checkpoint::Latest => LATEST,
            Checkpoint::AtTimestamp => AT_TIMESTAMP,
            Checkpoint::ShardEnd => SHARD_END,
            Checkpoint::Sequence {
                sequence_number, ..
            } => sequence_number.as_str(),
        }
    }

    /// The `checkpointSubSequenceNumber` attribute (0 for sentinels, as the Java KCL writes).
    pub fn sub_sequence_number(&self) -> u64 {
        match self {
            Checkpoint::Sequence {
                sub_sequence_number,
                ..
            } => *sub_sequence_number,
            _ => 0,
        }
    }

    /// Reads the two attributes back.
    ///
    /// Returns `None` for text that is neither a sentinel nor a decimal number.
    pub fn from_attributes(checkpoint: &str, sub_sequence_number: u64) -> Option<Self> {
        Some(match checkpoint {
            TRIM_HORIZON => Checkpoint::TrimHorizon,
            LATEST => Checkpoint::Latest,
            AT_TIMESTAMP => Checkpoint::AtTimestamp,
            SHARD_END => Checkpoint::ShardEnd,
            other => Checkpoint::at(other, sub_sequence_number)?,
        })
    }

    /// Whether this is the end of a closed shard.
    pub fn is_shard_end(&self) -> bool {
        matches!(self, Checkpoint::ShardEnd)
    }

    /// Whether processing has got past the initial position (a record or the shard end).
    pub fn has_progressed(&self) -> bool {
        matches!(self, Checkpoint::Sequence { .. } | Checkpoint::ShardEnd)
    }

    /// Whether the user record (`sequence_number`, `sub_sequence_number`) is covered by this
    /// checkpoint, that is, it must not be handed to a processor again.
    pub fn covers(&self, sequence_number: &SequenceNumber, sub_sequence_number: u64) -> bool {
        match self {
            Checkpoint::ShardEnd => true,
            Checkpoint::Sequence {
                sequence_number: s,
                sub_sequence_number: sub,
            } => match sequence_number.cmp(s) {
                Ordering::Less => true,
                Ordering::Equal => sub_sequence_number <= *sub,
                Ordering::Greater => false,
            },
            _ => false,
        }
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checkpoint::Sequence {
                sequence_number,
                sub_sequence_number,
            } => write!(f, "{sequence_number}/{sub_sequence_number}"),
            other => f.write_str(other.as_attribute()),
        }
    }
}

/// One row of the lease table: the right to process one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The hash key: the shard id.
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
    use crate::leases::{Guard, OwnerGuard};

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).unwrap()
    }

    #[test]
    fn sequence_numbers_order_numerically() {
        assert!(seq("9") < seq("10"));
        assert!(seq("0010") == seq("10").max(seq("010")) || seq("0010").cmp(&seq("10")).is_eq());
        assert!(
            seq("49590338271490256608559692538361571095921575989136588898")
                > seq("49590338271490256608559692538361571095921575989136588897")
        );
        assert!(SequenceNumber::parse("12a").is_none());
        assert!(SequenceNumber::parse("").is_none());
    }

    #[test]
    fn checkpoints_round_trip_through_attributes() {
        for cp in [
            Checkpoint::TrimHorizon,
            Checkpoint::Latest,
            Checkpoint::AtTimestamp,
            Checkpoint::ShardEnd,
            Checkpoint::at("123456", 7).unwrap(),
        ] {
            let back = Checkpoint::from_attributes(cp.as_attribute(), cp.sub_sequence_number());
            assert_eq!(back, Some(cp));
        }
        assert_eq!(Checkpoint::from_attributes("bogus", 0), None);
    }

    #[test]
    fn takes_move_the_owner_and_count_switches_guarded_by_the_counter_alone() {
        let mut lease = Lease::new("s", Checkpoint::TrimHorizon);
        let take = lease.take("w1");
        assert_eq!(
            take.guard,
            Guard {
                counter: 0,
                owner: OwnerGuard::Unchecked
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

    #[test]
    fn covers_is_sub_sequence_aware() {
        let cp = Checkpoint::at("100", 2).unwrap();
        assert!(cp.covers(&seq("99"), 9));
        assert!(cp.covers(&seq("100"), 0));
        assert!(cp.covers(&seq("100"), 2));
        assert!(!cp.covers(&seq("100"), 3));
        assert!(!cp.covers(&seq("101"), 0));
        assert!(!Checkpoint::TrimHorizon.covers(&seq("1"), 0));
        assert!(Checkpoint::ShardEnd.covers(&seq("1"), 0));
    }
}
