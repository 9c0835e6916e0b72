//! [`Batcher`]: how a shard consumer cuts the records it reads into `process_records`
//! calls. Pure: the caller passes the time.
//!
//! ```text
//!  source batch ─▶ push(records, end, dropped, lag)
//!   Batching off:  one delivery per source batch, as read (the default)
//!   Batching on:   records wait until max_records are ready or max_wait has passed since
//!                  the oldest waiting record ─▶ deliveries of at most max_records each
//!  ready(now) ─▶ Delivery { records, end: where a checkpoint of it points, dropped, lag }
//!  shard end  ─▶ drain(): everything left, in deliveries of at most max_records
//!  a cap (while a failed batch is bisected) ─▶ no delivery larger than it, and no waiting
//! ```
//!
//! A delivery's `end` is its last record's position, or, when it holds the last records
//! read, the end of the last source batch (so a checkpoint also covers records left out at
//! its tail: replays before the start, records outside the shard's range).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::checkpoint::SequenceNumber;
use crate::processor::KinesisClientRecord;

/// Lambda-style batching: `process_records` gets up to `max_records` records, once that
/// many are ready or `max_wait` has passed since the oldest of them was read, whichever
/// comes first (AWS Lambda's `BatchSize` and `MaximumBatchingWindowInSeconds` for Kinesis
/// event sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// The most records per `process_records` call (at least 1).
    pub max_records: usize,
    /// The longest a record waits for others to fill its call.
    pub max_wait: Duration,
}

/// One `process_records` call to make.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The records, in shard order.
    pub(crate) records: Vec<KinesisClientRecord>,
    /// Where a checkpoint of this delivery points, if anything was read.
    pub(crate) end: Option<(SequenceNumber, u64)>,
    /// Records left out (outside the shard's range) in the source batches it closes.
    pub(crate) dropped_outside_range: usize,
    /// The lag of the latest source batch in it.
    pub(crate) millis_behind_latest: Option<i64>,
}

impl Delivery {
    /// Whether the processor is called for it: it has records, or says some were left out.
    pub(crate) fn calls_processor(&self) -> bool {
        !self.records.is_empty() || self.dropped_outside_range > 0
    }
}

/// Records read but not yet delivered; see the module docs.
#[derive(Debug)]
pub(crate) struct Batcher {
    /// Batching, or none (each source batch delivered as read).
    batching: Option<Batching>,
    /// Records waiting, in shard order.
    waiting: VecDeque<KinesisClientRecord>,
    /// The end of the last source batch pushed.
    end: Option<(SequenceNumber, u64)>,
    /// Left-out records of the source batches pushed since the last delivery that closed
    /// one.
    dropped: usize,
    /// The lag of the last source batch pushed.
    millis_behind_latest: Option<i64>,
    /// When the oldest waiting record was read.
    oldest: Option<Instant>,
    /// Whether a source batch was pushed since the last delivery that closed one.
    unclosed: bool,
    /// The most records per delivery while a failed batch is bisected (see
    /// [`RetryLedger`](super::failure_retry::RetryLedger)); records are then handed over
    /// as soon as they are read, without a batching window.
    cap: Option<usize>,
}

impl Batcher {
    /// A batcher that cuts as `batching` says (none: one delivery per source batch).
    pub(crate) fn new(batching: Option<Batching>) -> Self {
        Self {
            batching: batching.map(|b| Batching {
                max_records: b.max_records.max(1),
                ..b
            }),
            waiting: VecDeque::new(),
            end: None,
            dropped: 0,
            millis_behind_latest: None,
            oldest: None,
            unclosed: false,
            cap: None,
        }
    }

    /// Limits deliveries to `cap` records (at least 1), or lifts the limit.
    pub(crate) fn set_cap(&mut self, cap: Option<usize>) {
        self.cap = cap.map(|c| c.max(1));
    }

    /// Takes in one source batch read at `now`.
    pub(crate) fn push(
        &mut self,
        records: Vec<KinesisClientRecord>,
        end: Option<(SequenceNumber, u64)>,
        dropped_outside_range: usize,
        millis_behind_latest: Option<i64>,
        now: Instant,
    ) {
        if self.waiting.is_empty() && !records.is_empty() {
            self.oldest = Some(now);
        }
        self.waiting.extend(records);
        if end.is_some() {
            self.end = end;
        }
        self.dropped += dropped_outside_range;
        self.millis_behind_latest = millis_behind_latest.or(self.millis_behind_latest);
        self.unclosed = true;
    }

    /// When waiting records must be delivered even if too few (with batching on).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        Some(self.oldest? + self.batching?.max_wait)
    }

    /// The next delivery due at `now`, if any.
    pub(crate) fn ready(&mut self, now: Instant) -> Option<Delivery> {
        if let Some(cap) = self.cap {
            let max = self.batching.map_or(cap, |b| b.max_records.min(cap));
            return self.unclosed.then(|| self.take(max));
        }
        match self.batching {
            None => self.unclosed.then(|| self.take(usize::MAX)),
            Some(b) => {
                let full = self.waiting.len() >= b.max_records;
                let waited = self.deadline().is_some_and(|d| now >= d);
                let only_end = self.waiting.is_empty() && self.unclosed;
                (full || waited || only_end).then(|| self.take(b.max_records))
            }
        }
    }

    /// The next delivery of what is left, of at most `max_records` (and the cap), once the
    /// shard has ended: deliveries until everything was handed over.
    pub(crate) fn next_at_end(&mut self) -> Option<Delivery> {
        let max = self.batching.map_or(usize::MAX, |b| b.max_records);
        let max = self.cap.map_or(max, |cap| cap.min(max));
        (!self.waiting.is_empty() || self.unclosed).then(|| self.take(max))
    }

    /// A delivery of up to `max` waiting records.
    fn take(&mut self, max: usize) -> Delivery {
        let n = self.waiting.len().min(max);
        let records: Vec<KinesisClientRecord> = self.waiting.drain(..n).collect();
        let closes = self.waiting.is_empty();
        let end = if closes {
            self.end.clone()
        } else {
            records
                .last()
                .and_then(|r| {
                    SequenceNumber::parse(&r.sequence_number).map(|s| (s, r.sub_sequence_number))
                })
                .or_else(|| self.end.clone())
        };
        let dropped = if closes {
            self.unclosed = false;
            std::mem::take(&mut self.dropped)
        } else {
            0
        };
        self.oldest = if self.waiting.is_empty() {
            None
        } else {
            // The rest waited as long as the oldest: deliver them on the same deadline.
            self.oldest
        };
        Delivery {
            records,
            end,
            dropped_outside_range: dropped,
            millis_behind_latest: self.millis_behind_latest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(seq: &str, subs: std::ops::Range<u64>) -> Vec<KinesisClientRecord> {
        subs.map(|s| KinesisClientRecord::new(seq, s, "k", &b"x"[..]))
            .collect()
    }

    fn end(seq: &str, sub: u64) -> Option<(SequenceNumber, u64)> {
        Some((SequenceNumber::parse(seq).unwrap(), sub))
    }

    fn positions(d: &Delivery) -> Vec<(String, u64)> {
        d.records
            .iter()
            .map(|r| (r.sequence_number.clone(), r.sub_sequence_number))
            .collect()
    }

    #[test]
    fn without_batching_each_source_batch_is_one_delivery() {
        let t = Instant::now();
        let mut b = Batcher::new(None);
        assert!(b.ready(t).is_none());
        b.push(records("1", 0..3), end("1", 4), 2, Some(7), t);
        let d = b.ready(t).unwrap();
        assert_eq!(positions(&d).len(), 3);
        assert_eq!(d.end, end("1", 4), "covers the left-out tail");
        assert_eq!(
            (d.dropped_outside_range, d.millis_behind_latest),
            (2, Some(7))
        );
        assert!(b.ready(t).is_none());
        // A source batch of nothing but skipped records still moves the end.
        b.push(Vec::new(), end("2", 0), 0, None, t);
        let d = b.ready(t).unwrap();
        assert!(!d.calls_processor());
        assert_eq!(d.end, end("2", 0));
        assert!(b.deadline().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn with_batching_records_wait_for_a_full_call_or_the_window() {
        let batching = Batching {
            max_records: 4,
            max_wait: Duration::from_secs(1),
        };
        let mut b = Batcher::new(Some(batching));
        let t0 = Instant::now();
        b.push(records("1", 0..3), end("1", 2), 0, Some(5), t0);
        assert!(b.ready(t0).is_none(), "3 of 4, window open");
        assert_eq!(b.deadline(), Some(t0 + Duration::from_secs(1)));
        b.push(records("2", 0..3), end("2", 2), 1, Some(3), t0);
        // Full: the first 4 (across source batches), ending at its last record.
        let d = b.ready(t0).unwrap();
        assert_eq!(
            positions(&d),
            [
                ("1".into(), 0),
                ("1".into(), 1),
                ("1".into(), 2),
                ("2".into(), 0)
            ]
        );
        assert_eq!(d.end, end("2", 0));
        assert_eq!(
            d.dropped_outside_range, 0,
            "its source batch is not closed yet"
        );
        assert!(b.ready(t0).is_none());
        // The rest goes when the oldest record's window has passed.
        let t1 = t0 + Duration::from_secs(1);
        let d = b.ready(t1).unwrap();
        assert_eq!(positions(&d), [("2".into(), 1), ("2".into(), 2)]);
        assert_eq!((d.end.clone(), d.dropped_outside_range), (end("2", 2), 1));
        assert!(b.ready(t1).is_none() && b.deadline().is_none());
    }

    #[test]
    fn drain_delivers_everything_left_in_bounded_calls() {
        let t = Instant::now();
        let mut b = Batcher::new(Some(Batching {
            max_records: 2,
            max_wait: Duration::from_secs(60),
        }));
        b.push(records("1", 0..5), end("1", 6), 3, None, t);
        let all = std::iter::from_fn(|| b.next_at_end()).collect::<Vec<_>>();
        let sizes: Vec<usize> = all.iter().map(|d| d.records.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(all[2].end, end("1", 6));
        assert_eq!(all[2].dropped_outside_range, 3);
        assert!(b.next_at_end().is_none());
        // max_records 0 counts as 1.
        let mut b = Batcher::new(Some(Batching {
            max_records: 0,
            max_wait: Duration::ZERO,
        }));
        b.push(records("1", 0..2), end("1", 1), 0, None, t);
        assert_eq!(b.ready(t).unwrap().records.len(), 1);
    }

    #[test]
    fn a_cap_hands_records_over_at_once_in_calls_no_larger_than_it() {
        let t = Instant::now();
        let mut b = Batcher::new(Some(Batching {
            max_records: 100,
            max_wait: Duration::from_secs(60),
        }));
        b.set_cap(Some(2));
        b.push(records("1", 0..5), end("1", 6), 0, None, t);
        let sizes: Vec<usize> = std::iter::from_fn(|| b.ready(t))
            .map(|d| d.records.len())
            .collect();
        assert_eq!(sizes, [2, 2, 1], "no window while capped");
        // Lifted: the window applies again.
        b.set_cap(None);
        b.push(records("2", 0..5), end("2", 4), 0, None, t);
        assert!(b.ready(t).is_none());
        // Without batching, a cap cuts each source batch too.
        let mut b = Batcher::new(None);
        b.set_cap(Some(3));
        b.push(records("3", 0..5), end("3", 4), 0, None, t);
        let d = b.ready(t).unwrap();
        assert_eq!((d.records.len(), d.end.clone()), (3, end("3", 2)));
        let d = b.ready(t).unwrap();
        assert_eq!((d.records.len(), d.end.clone()), (2, end("3", 4)));
        assert!(b.ready(t).is_none());
    }
}
