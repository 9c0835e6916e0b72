//! What becomes of the leases of streams a multi-stream application no longer consumes
//! (the Java KCL's `FormerStreamsLeasesDeletionStrategy`, automatic detection with a
//! deferred deletion).
//!
//! ```text
//!  each shard sync round: scan ─▶ streams with leases in the table
//!                         tracker ─▶ streams tracked now
//!    FormerStreams::due(tracked, in_table, now, strategy)      (pure: no I/O)
//!      in the table, not tracked: first seen untracked at ─▶ since[stream]
//!      tracked again, or no lease left ─▶ forgotten
//!      DeleteAfter(grace) and now - since >= grace ─▶ due: its leases are deleted
//!      NoDeletion ─▶ never due
//! ```
//!
//! The grace period protects against workers whose trackers disagree for a while (one
//! already lists a new stream, another not yet): a worker deletes a stream's leases only
//! after it has seen them untracked for the whole period, and each deletion is conditional
//! on the lease's counter as read, so a lease written meanwhile (taken, checkpointed) is
//! kept for a later round. Make it longer than the time every worker needs to see a new
//! list (the tracker interval, plus however the list is distributed).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::stream_identifier::StreamIdentifier;

/// The grace period of [`FormerStreamsLeasesDeletionStrategy::default`]: one hour.
pub const DEFAULT_FORMER_STREAMS_GRACE_PERIOD: Duration = Duration::from_secs(3600);

/// What happens to the leases (and checkpoints) of a stream that left the tracker's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormerStreamsLeasesDeletionStrategy {
    /// Leases stay in the table for ever (unowned once released); a stream added again
    /// later resumes from its checkpoints.
    NoDeletion,
    /// Leases are deleted once this worker has seen the stream untracked (with leases in
    /// the table) for this long; a stream added again within it resumes from its
    /// checkpoints, later it starts over at its initial position.
    DeleteAfter(Duration),
}

impl Default for FormerStreamsLeasesDeletionStrategy {
    /// `DeleteAfter(`[`DEFAULT_FORMER_STREAMS_GRACE_PERIOD`]`)`: one hour.
    fn default() -> Self {
        Self::DeleteAfter(DEFAULT_FORMER_STREAMS_GRACE_PERIOD)
    }
}

/// Since when each stream with leases in the table has been seen untracked.
#[derive(Debug, Default)]
pub(crate) struct FormerStreams {
    /// Untracked streams with leases, and when this worker first saw them so.
    since: HashMap<StreamIdentifier, Instant>,
}

impl FormerStreams {
    /// Notes what a round saw at `now` (`tracked`: the tracker's streams; `in_table`: the
    /// streams that have leases) and returns the streams whose leases are due for deletion,
    /// sorted.
    pub(crate) fn due(
        &mut self,
        tracked: &HashSet<StreamIdentifier>,
        in_table: &HashSet<StreamIdentifier>,
        now: Instant,
        strategy: FormerStreamsLeasesDeletionStrategy,
    ) -> Vec<StreamIdentifier> {
        self.since
            .retain(|s, _| in_table.contains(s) && !tracked.contains(s));
        for s in in_table.difference(tracked) {
            self.since.entry(s.clone()).or_insert(now);
        }
        let FormerStreamsLeasesDeletionStrategy::DeleteAfter(grace) = strategy else {
            return Vec::new();
        };
        let mut due: Vec<StreamIdentifier> = self
            .since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= grace)
            .map(|(s, _)| s.clone())
            .collect();
        due.sort();
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> HashSet<StreamIdentifier> {
        names
            .iter()
            .map(|n| StreamIdentifier::new("1", *n, 1).unwrap())
            .collect()
    }

    #[test]
    fn the_default_deletes_after_an_hour() {
        assert_eq!(
            FormerStreamsLeasesDeletionStrategy::default(),
            FormerStreamsLeasesDeletionStrategy::DeleteAfter(Duration::from_secs(3600))
        );
    }

    #[test]
    fn untracked_streams_are_due_after_the_grace_period_seen_untracked() {
        let grace = FormerStreamsLeasesDeletionStrategy::DeleteAfter(Duration::from_secs(10));
        let mut former = FormerStreams::default();
        let t0 = Instant::now();
        let table = ids(&["a", "b", "old"]);
        // "old" was never tracked by this worker: its clock starts now as well.
        assert!(former.due(&ids(&["a", "b"]), &table, t0, grace).is_empty());
        // "b" leaves the list 5 s later.
        let t5 = t0 + Duration::from_secs(5);
        assert!(former.due(&ids(&["a"]), &table, t5, grace).is_empty());
        let t10 = t0 + Duration::from_secs(10);
        assert_eq!(
            former.due(&ids(&["a"]), &table, t10, grace),
            ids_sorted(&["old"])
        );
        let t15 = t0 + Duration::from_secs(15);
        assert_eq!(
            former.due(&ids(&["a"]), &table, t15, grace),
            ids_sorted(&["b", "old"])
        );
    }

    #[test]
    fn a_stream_tracked_again_or_without_leases_starts_over() {
        let grace = FormerStreamsLeasesDeletionStrategy::DeleteAfter(Duration::from_secs(10));
        let mut former = FormerStreams::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        former.due(&ids(&[]), &ids(&["b"]), t0, grace);
        // Tracked again at 8 s: forgotten; dropped again at 9 s: its clock restarts.
        former.due(&ids(&["b"]), &ids(&["b"]), at(8), grace);
        former.due(&ids(&[]), &ids(&["b"]), at(9), grace);
        assert!(former
            .due(&ids(&[]), &ids(&["b"]), at(18), grace)
            .is_empty());
        assert_eq!(
            former.due(&ids(&[]), &ids(&["b"]), at(19), grace),
            ids_sorted(&["b"])
        );
        // Its leases gone (deleted by another worker): forgotten.
        former.due(&ids(&[]), &ids(&[]), at(20), grace);
        assert!(former
            .due(&ids(&[]), &ids(&["b"]), at(21), grace)
            .is_empty());
    }

    #[test]
    fn no_deletion_never_deletes() {
        let mut former = FormerStreams::default();
        let t0 = Instant::now();
        for s in [0, 3600, 360_000] {
            let due = former.due(
                &ids(&[]),
                &ids(&["b"]),
                t0 + Duration::from_secs(s),
                FormerStreamsLeasesDeletionStrategy::NoDeletion,
            );
            assert!(due.is_empty());
        }
    }

    fn ids_sorted(names: &[&str]) -> Vec<StreamIdentifier> {
        let mut v: Vec<_> = ids(names).into_iter().collect();
        v.sort();
        v
    }
}
