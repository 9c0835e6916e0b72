//! The decisions, without I/O, that keep a multi-stream worker on the stream a name (or
//! ARN) names now: which consumed streams to look up again ([`IdentityChecks`]), and what a
//! second look-up means ([`recheck`]).
//!
//! ```text
//!  shard sync: ListShards ─StreamNotFound──────────────────┐
//!              ended lease of a shard listed open ─────────┤ suspect(id)  (urgent: a poll at once)
//!  tracker poll: routine(candidates) ─ the next stream after the last checked, round robin
//!                                                          ▼
//!  IdentityChecks::take ─▶ each id due ─DescribeStreamSummary (by its name or ARN)─▶ Lookup
//!     recheck(old id, Lookup) ─▶ Same                 (nothing changes)
//!                                Replaced(new id)     (old retired, new added)
//!                                Gone                 (old retired; added again once found)
//!                                Unknown(why)         (looked at again at the next poll)
//! ```
//!
//! A stream is known by its identifier `account:name:creationEpoch`: a stream deleted and
//! created again under its name is another stream (its own leases, its own stream
//! consumer). A stream created again within the same second as the old one has the same
//! identifier and cannot be told apart (the Java KCL's identifiers have the same limit).

use std::collections::{HashMap, HashSet};

use crate::multi_stream::StreamIdentifier;

/// Which consumed streams are due for a second look-up, and why.
#[derive(Debug, Default)]
pub(super) struct IdentityChecks {
    /// The streams to look up again at the next poll, each with why (for logs).
    due: HashMap<StreamIdentifier, String>,
    /// Whether a stream was suspected since the last poll: the poll then comes at once.
    urgent: bool,
    /// The stream the last routine check picked: the next routine check picks the first
    /// one after it (in identifier order), so that every stream has its turn.
    last_routine: Option<StreamIdentifier>,
}

impl IdentityChecks {
    /// `id` looked deleted or replaced to a sync or a read (`why`): looked up again at a
    /// poll that comes at once.
    pub(super) fn suspect(&mut self, id: StreamIdentifier, why: String) {
        self.due.insert(id, why);
        self.urgent = true;
    }

    /// `id` could not be checked (`why`): looked up again at the next regular poll.
    pub(super) fn retry(&mut self, id: StreamIdentifier, why: String) {
        self.due.entry(id).or_insert(why);
    }

    /// Whether a poll should come at once; reset by the call.
    pub(super) fn take_urgent(&mut self) -> bool {
        std::mem::take(&mut self.urgent)
    }

    /// Makes the next of `candidates` after the last one picked due (round robin in
    /// identifier order; the first when none was picked or the last is past the end).
    pub(super) fn routine(&mut self, candidates: &HashSet<StreamIdentifier>) {
        let mut sorted: Vec<&StreamIdentifier> = candidates.iter().collect();
        sorted.sort();
        let next = match &self.last_routine {
            Some(last) => sorted
                .iter()
                .find(|id| **id > last)
                .or_else(|| sorted.first()),
            None => sorted.first(),
        };
        if let Some(next) = next {
            let next = (*next).clone();
            self.last_routine = Some(next.clone());
            self.retry(next, "routine check".to_owned());
        }
    }

    /// The streams due now, with why; none is due afterwards.
    pub(super) fn take(&mut self) -> HashMap<StreamIdentifier, String> {
        std::mem::take(&mut self.due)
    }
}

/// What a second look-up of a consumed stream found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lookup {
    /// The stream of that name (or ARN), identified.
    Found(StreamIdentifier),
    /// No stream of that name (`ResourceNotFoundException`).
    Missing,
    /// Nothing sure (a failed call, a stream being created or deleted): why.
    Unknown(String),
}

/// What becomes of a consumed stream after a second look-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Recheck {
    /// Still the same stream.
    Same,
    /// Another stream has the name now: the old one becomes a former stream, the new one
    /// is added.
    Replaced(StreamIdentifier),
    /// The stream is gone: it becomes a former stream; the name is looked up at each poll
    /// and added again once a stream has it.
    Gone,
    /// Not known yet (why): looked up again at the next poll, the stream consumed as before.
    Unknown(String),
}

/// What the look-up `lookup` of the stream consumed as `old` means.
pub(super) fn recheck(old: &StreamIdentifier, lookup: Lookup) -> Recheck {
    match lookup {
        Lookup::Found(id) if &id == old => Recheck::Same,
        Lookup::Found(id) => Recheck::Replaced(id),
        Lookup::Missing => Recheck::Gone,
        Lookup::Unknown(why) => Recheck::Unknown(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StreamIdentifier {
        s.parse().unwrap()
    }

    #[test]
    fn a_second_look_up_keeps_replaces_or_retires_the_stream() {
        let old = id("1:orders:100");
        assert_eq!(recheck(&old, Lookup::Found(old.clone())), Recheck::Same);
        assert_eq!(
            recheck(&old, Lookup::Found(id("1:orders:200"))),
            Recheck::Replaced(id("1:orders:200"))
        );
        assert_eq!(recheck(&old, Lookup::Missing), Recheck::Gone);
        assert_eq!(
            recheck(&old, Lookup::Unknown("stream orders is CREATING".into())),
            Recheck::Unknown("stream orders is CREATING".into())
        );
    }

    #[test]
    fn suspects_are_urgent_and_retries_are_not() {
        let mut checks = IdentityChecks::default();
        assert!(!checks.take_urgent());
        assert!(checks.take().is_empty());
        checks.retry(id("1:a:1"), "CREATING".into());
        assert!(!checks.take_urgent(), "a retry waits for the next poll");
        checks.suspect(id("1:b:1"), "ListShards: not found".into());
        assert!(checks.take_urgent());
        assert!(!checks.take_urgent(), "said once");
        let due = checks.take();
        assert_eq!(due.len(), 2);
        assert_eq!(due[&id("1:b:1")], "ListShards: not found");
        assert!(checks.take().is_empty(), "taken");
    }

    #[test]
    fn routine_checks_go_round_every_stream() {
        let mut checks = IdentityChecks::default();
        let all = HashSet::from([id("1:c:1"), id("1:a:1"), id("1:b:1")]);
        let mut picked = Vec::new();
        for _ in 0..4 {
            checks.routine(&all);
            let due = checks.take();
            assert_eq!(due.len(), 1);
            picked.push(due.into_keys().next().unwrap().stream_name().to_owned());
        }
        assert_eq!(picked, ["a", "b", "c", "a"]);
        // The last one picked left: the next after it still comes.
        checks.routine(&all);
        checks.take();
        checks.routine(&HashSet::from([id("1:a:1"), id("1:c:1")]));
        assert!(checks.take().contains_key(&id("1:c:1")));
        checks.routine(&HashSet::new());
        assert!(checks.take().is_empty(), "nothing to check");
        assert!(!checks.take_urgent(), "routine checks wait for their poll");
    }
}
