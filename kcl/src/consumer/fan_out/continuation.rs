//! [`Continuation`]: the ledger of one fan-out source: where its next subscription
//! starts, and which records of an event are new. Pure: no I/O, no clock.
//!
//! ```text
//!  StartingPosition ─▶ Continuation ──position()──▶ SubscribeToShard StartingPosition
//!                          ▲    │                    (AFTER the last record sent; AFTER the last
//!  SubscribeToShardEvent ──┘    │                     continuation when none was sent from LATEST;
//!   accept(event)               │                     else where the lease said)
//!                               └──▶ Accepted { batch (new records only, end?), replayed, malformed }
//! ```
//!
//! A subscription is renewed every 5 minutes and after every error, so the same shard is
//! asked for many times over. Each time it restarts right after the last record this source
//! has put in its channel (which the consumer is bound to see), and any record an endpoint
//! sends again at or before that point, or before the starting sequence number, is dropped
//! and counted rather than delivered twice.
//!
//! A shard has ended when an event has no continuation sequence number (Kinesis' rule), or
//! when it announces child shards and carries no records (an endpoint that always sends a
//! continuation). Child shards on an event that still carries records do not end the shard:
//! its last records may still be coming.

use aws_sdk_kinesis::types::{ChildShard, Record, SubscribeToShardEvent};
use tokio::time::Instant;

use super::super::{Batch, StartingPosition};
use crate::checkpoint::SequenceNumber;

/// Where a `SubscribeToShard` call starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubscribePosition {
    /// Where the lease said: nothing was sent yet.
    Start(StartingPosition),
    /// `AFTER_SEQUENCE_NUMBER` this record, the last one sent.
    After(SequenceNumber),
    /// `AFTER_SEQUENCE_NUMBER` this continuation sequence number (as the Java KCL
    /// reconnects): nothing was sent yet from a `LATEST` start, which asked again would
    /// skip what was written in between.
    AfterContinuation(SequenceNumber),
}

/// The new part of one event.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The records to hand on, with the event's lag and end; worth sending when it has
    /// records or an end.
    pub(crate) batch: Batch,
    /// Records dropped as already sent (or before the starting sequence number).
    pub(crate) replayed: usize,
    /// Records dropped because their sequence number is not a number.
    pub(crate) malformed: usize,
}

impl Accepted {
    /// Whether the batch is worth handing on: it has records, or it ends the shard.
    pub(crate) fn worth_sending(&self) -> bool {
        !self.batch.records.is_empty() || self.batch.end.is_some()
    }
}

/// What a fan-out source has sent so far, and so where it goes on from.
#[derive(Debug, Clone)]
pub(crate) struct Continuation {
    /// Where the lease said to start: used until a record is sent.
    start: StartingPosition,
    /// The last record put in the channel: the next subscription starts after it, and
    /// anything at or before it is a replay.
    last_sent: Option<SequenceNumber>,
    /// The last continuation sequence number received, for a `LATEST` start that has sent
    /// nothing yet.
    continuation: Option<SequenceNumber>,
}

impl Continuation {
    /// The ledger of a source that starts at `start` and has sent nothing.
    pub(crate) fn new(start: StartingPosition) -> Self {
        Self {
            start,
            last_sent: None,
            continuation: None,
        }
    }

    /// Where the next subscription starts.
    pub(crate) fn position(&self) -> SubscribePosition {
        match (&self.last_sent, &self.start, &self.continuation) {
            (Some(last), _, _) => SubscribePosition::After(last.clone()),
            (None, StartingPosition::Latest, Some(c)) => {
                SubscribePosition::AfterContinuation(c.clone())
            }
            (None, start, _) => SubscribePosition::Start(start.clone()),
        }
    }

    /// Whether a record at `seq` is new: after the last one sent, or, before any, at or
    /// after the sequence number the subscriptions start at.
    fn is_new(&self, seq: &SequenceNumber) -> bool {
        match self.position() {
            SubscribePosition::After(last) | SubscribePosition::AfterContinuation(last) => {
                *seq > last
            }
            SubscribePosition::Start(StartingPosition::AtSequence(at)) => *seq >= at,
            SubscribePosition::Start(_) => true,
        }
    }

    /// Takes in one event received at `received`: keeps its new records (noting the last
    /// as sent: the caller hands the batch on before asking for another event), and says
    /// whether it ends the shard.
    pub(crate) fn accept(&mut self, event: SubscribeToShardEvent, received: Instant) -> Accepted {
        let SubscribeToShardEvent {
            records,
            continuation_sequence_number,
            millis_behind_latest,
            child_shards,
            ..
        } = event;
        let carried_records = !records.is_empty();
        let (mut replayed, mut malformed) = (0, 0);
        let mut kept: Vec<Record> = Vec::with_capacity(records.len());
        for record in records {
            match SequenceNumber::parse(record.sequence_number()) {
                None => malformed += 1,
                Some(seq) if !self.is_new(&seq) => replayed += 1,
                Some(seq) => {
                    self.last_sent = Some(seq);
                    kept.push(record);
                }
            }
        }
        let continuation = SequenceNumber::parse(&continuation_sequence_number);
        let children: Vec<ChildShard> = child_shards.unwrap_or_default();
        let ended =
            continuation_sequence_number.is_empty() || (!children.is_empty() && !carried_records);
        if continuation.is_some() {
            self.continuation = continuation;
        }
        Accepted {
            batch: Batch {
                records: kept,
                millis_behind_latest: Some(millis_behind_latest),
                end: ended.then_some(children),
                received,
            },
            replayed,
            malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::HashKeyRange;

    use super::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).unwrap()
    }

    fn record(s: &str) -> Record {
        Record::builder()
            .sequence_number(s)
            .partition_key("k")
            .data(Blob::new(s.as_bytes()))
            .build()
            .unwrap()
    }

    fn child(id: &str) -> ChildShard {
        ChildShard::builder()
            .shard_id(id)
            .parent_shards("shardId-000000000000")
            .hash_key_range(
                HashKeyRange::builder()
                    .starting_hash_key("0")
                    .ending_hash_key("1")
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    /// An event with these records, continuation (`""` for none) and children.
    fn event(records: &[&str], continuation: &str, children: &[&str]) -> SubscribeToShardEvent {
        SubscribeToShardEvent::builder()
            .set_records(Some(records.iter().map(|s| record(s)).collect()))
            .continuation_sequence_number(continuation)
            .millis_behind_latest(7)
            .set_child_shards(
                (!children.is_empty()).then(|| children.iter().map(|c| child(c)).collect()),
            )
            .build()
            .unwrap()
    }

    fn seqs(a: &Accepted) -> Vec<&str> {
        a.batch
            .records
            .iter()
            .map(|r| r.sequence_number())
            .collect()
    }

    #[test]
    fn resubscribes_after_the_last_record_sent() {
        let mut c = Continuation::new(StartingPosition::TrimHorizon);
        assert_eq!(
            c.position(),
            SubscribePosition::Start(StartingPosition::TrimHorizon)
        );
        let a = c.accept(event(&["10", "11"], "12", &[]), Instant::now());
        assert_eq!(seqs(&a), ["10", "11"]);
        assert_eq!(a.batch.millis_behind_latest, Some(7));
        assert!(a.batch.end.is_none() && a.worth_sending());
        assert_eq!(c.position(), SubscribePosition::After(seq("11")));
        // An empty event moves nothing: still after the last record sent.
        let a = c.accept(event(&[], "13", &[]), Instant::now());
        assert!(!a.worth_sending());
        assert_eq!(c.position(), SubscribePosition::After(seq("11")));
    }

    #[test]
    fn replays_at_or_before_the_last_record_sent_are_dropped_and_counted() {
        let mut c = Continuation::new(StartingPosition::TrimHorizon);
        c.accept(event(&["10", "11"], "12", &[]), Instant::now());
        // An endpoint that ignores AFTER_SEQUENCE_NUMBER starts over from the trim horizon.
        let a = c.accept(event(&["10", "11", "12"], "13", &[]), Instant::now());
        assert_eq!(seqs(&a), ["12"]);
        assert_eq!(a.replayed, 2);
        // Numbers compare as numbers, not as text.
        let a = c.accept(event(&["9", "100"], "101", &[]), Instant::now());
        assert_eq!(seqs(&a), ["100"]);
        assert_eq!(a.replayed, 1);
    }

    #[test]
    fn a_sequence_start_keeps_its_own_record_and_drops_earlier_ones() {
        let mut c = Continuation::new(StartingPosition::AtSequence(seq("20")));
        assert_eq!(
            c.position(),
            SubscribePosition::Start(StartingPosition::AtSequence(seq("20")))
        );
        let a = c.accept(event(&["18", "19", "20", "21"], "22", &[]), Instant::now());
        assert_eq!(seqs(&a), ["20", "21"]);
        assert_eq!(a.replayed, 2);
        // Nothing new in an event of only earlier records.
        let mut c = Continuation::new(StartingPosition::AtSequence(seq("20")));
        let a = c.accept(event(&["18"], "19", &[]), Instant::now());
        assert!(!a.worth_sending());
        assert_eq!(
            c.position(),
            SubscribePosition::Start(StartingPosition::AtSequence(seq("20")))
        );
    }

    #[test]
    fn a_latest_start_that_sent_nothing_goes_on_after_its_continuation() {
        let mut c = Continuation::new(StartingPosition::Latest);
        let a = c.accept(event(&[], "500", &[]), Instant::now());
        assert!(!a.worth_sending());
        assert_eq!(
            c.position(),
            SubscribePosition::AfterContinuation(seq("500"))
        );
        // The continuation is the position reached (on Kinesis, the last record written
        // before the start): it and what is before it are replays, as reported of an
        // endpoint that answers AT the continuation with that record.
        let a = c.accept(event(&["499", "500", "501"], "502", &[]), Instant::now());
        assert_eq!(seqs(&a), ["501"]);
        assert_eq!(a.replayed, 2);
        assert_eq!(c.position(), SubscribePosition::After(seq("501")));
        // Other starts repeat themselves until a record is sent.
        let mut c = Continuation::new(StartingPosition::TrimHorizon);
        c.accept(event(&[], "500", &[]), Instant::now());
        assert_eq!(
            c.position(),
            SubscribePosition::Start(StartingPosition::TrimHorizon)
        );
    }

    #[test]
    fn the_shard_ends_without_a_continuation_or_with_children_and_no_records() {
        // Kinesis: the last event has no continuation (records may come with it).
        let mut c = Continuation::new(StartingPosition::TrimHorizon);
        let a = c.accept(event(&["1"], "", &["shardId-000000000001"]), Instant::now());
        assert_eq!(seqs(&a), ["1"]);
        let children = a.batch.end.as_ref().expect("ended");
        assert_eq!(children[0].shard_id(), "shardId-000000000001");
        // No continuation and no children known: ended all the same.
        let mut c = Continuation::new(StartingPosition::TrimHorizon);
        let a = c.accept(event(&[], "", &[]), Instant::now());
        assert_eq!(a.batch.end.as_deref(), Some(&[][..]));
        // An endpoint that always sends a continuation: children on an event that still
        // carries records do not end the shard ...
        let mut c = Continuation::new(StartingPosition::TrimHorizon);
        let a = c.accept(
            event(&["1", "2"], "3", &["shardId-000000000001"]),
            Instant::now(),
        );
        assert!(a.batch.end.is_none());
        // ... even when every record in it was a replay ...
        let a = c.accept(
            event(&["1", "2"], "3", &["shardId-000000000001"]),
            Instant::now(),
        );
        assert!(a.batch.end.is_none() && !a.worth_sending());
        // ... the first empty one with children does.
        let a = c.accept(event(&[], "3", &["shardId-000000000001"]), Instant::now());
        assert!(a.batch.end.is_some() && a.worth_sending());
    }

    #[test]
    fn records_with_unreadable_sequence_numbers_are_dropped_and_counted() {
        let mut c = Continuation::new(StartingPosition::TrimHorizon);
        let a = c.accept(event(&["1", "x2", "3"], "4", &[]), Instant::now());
        assert_eq!(seqs(&a), ["1", "3"]);
        assert_eq!((a.malformed, a.replayed), (1, 0));
        // An unreadable continuation is not kept.
        let mut c = Continuation::new(StartingPosition::Latest);
        c.accept(event(&[], "not-a-number", &[]), Instant::now());
        assert_eq!(
            c.position(),
            SubscribePosition::Start(StartingPosition::Latest)
        );
    }
}
