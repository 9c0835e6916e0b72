//! [`FailureRetry`]: what a shard consumer does when its processor reports that records
//! of a batch failed, and [`RetryLedger`], its decisions (pure: no I/O, no clock).
//!
//! ```text
//!  process_records ─▶ checkpointer.retry_from(seq, sub) ─▶ Failure::Record(P)
//!                  ─▶ checkpointer.retry_batch()        ─▶ Failure::Batch (record unknown)
//!  RetryLedger::failed(failure, the delivery) ─▶ Retry {
//!      resume: At(P)        read again from P (records before it are done)
//!            | After(P)     P failed max_attempts times: given up, counted, logged
//!      cap                  bisect: a failed batch of n comes again n/2 at a time, until the
//!                           failing record is alone (then its attempts count)
//!      pause                min_delay doubling to max_delay over consecutive failures }
//!  consumer: pause (cut short by lease loss or shutdown) ─▶ restart the source at P
//!  RetryLedger::delivered(end) ─▶ pause reset; past the bisected range: cap lifted
//! ```
//!
//! The records are read again from Kinesis rather than kept: nothing is held back for
//! a retry that may never come, and the source restarts exactly as after a restart of
//! the worker, from a position it already supports. AWS Lambda's Kinesis event sources
//! offer the same two reports (`ReportBatchItemFailures`, and a function error with
//! `BisectBatchOnFunctionError`) and `MaximumRetryAttempts`; this follows their
//! meaning, not their defaults.

use std::time::Duration;

use crate::checkpoint::SequenceNumber;

/// What a shard consumer does after its processor reports a failure through
/// [`Checkpointer::retry_from`](crate::Checkpointer::retry_from) (this record and what
/// follows it failed) or [`Checkpointer::retry_batch`](crate::Checkpointer::retry_batch)
/// (the batch failed, record unknown): the records come again, from the failed one, after
/// a pause; see [`SchedulerBuilder::with_failure_retry`](crate::SchedulerBuilder::with_failure_retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailureRetry {
    /// How many times one record may fail before it is given up (skipped, counted in
    /// `kinesis_consumer_records_given_up_total`, logged at `error` with its position).
    /// Default: `None`, retried without end: a record that never succeeds holds its shard
    /// back (visible as a growing `millis_behind_latest`) rather than being lost.
    pub max_attempts: Option<u32>,
    /// Whether a failed batch whose failing record is unknown comes again in halves until
    /// the failing record is alone. Default: `true`. Without it, the whole batch comes
    /// again, and the attempts count against its first record.
    pub bisect: bool,
    /// The pause before the first retry (zero: retry at once). Default: 500 ms.
    pub min_delay: Duration,
    /// The longest pause: the pause doubles with each failure in a row up to it (it wins
    /// over a longer `min_delay`). Default: 30 s.
    pub max_delay: Duration,
}

impl Default for FailureRetry {
    fn default() -> Self {
        Self {
            max_attempts: None,
            bisect: true,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl FailureRetry {
    /// Gives a record up after `attempts` failures (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Whether failed batches come again in halves (see [`FailureRetry::bisect`]).
    pub fn with_bisect(mut self, bisect: bool) -> Self {
        self.bisect = bisect;
        self
    }

    /// The first and the longest pause before a retry.
    pub fn with_delays(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min;
        self.max_delay = max;
        self
    }
}

/// A position in a shard: a sequence number and a sub-sequence number.
pub(crate) type Position = (SequenceNumber, u64);

/// What a processor reported about the delivery it was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// This record, and every record after it, failed (those before it are done).
    Record(Position),
    /// The delivery failed; which record is not known.
    Batch,
}

/// The shape of a failed delivery: what the ledger needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailedDelivery {
    /// Its first record's position (none: it had no records).
    pub(crate) first: Option<Position>,
    /// How many records it had.
    pub(crate) len: usize,
    /// Where a checkpoint of it would have pointed.
    pub(crate) end: Option<Position>,
}

/// Where reading starts again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resume {
    /// At this record, included.
    At(Position),
    /// Just after this record (it was given up).
    After(Position),
}

/// One retry to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Retry {
    /// Where reading starts again.
    pub(crate) resume: Resume,
    /// The most records per delivery until the failed range has been delivered (bisect).
    pub(crate) cap: Option<usize>,
    /// How long to wait first.
    pub(crate) pause: Duration,
    /// A record given up, to count and log.
    pub(crate) gave_up: Option<Position>,
    /// How many times that record (or the record retried) has failed so far.
    pub(crate) attempts: u32,
}

/// The retry decisions of one shard consumer; see the module docs.
#[derive(Debug)]
pub(crate) struct RetryLedger {
    /// The settings.
    config: FailureRetry,
    /// Failures in a row (reset by a delivery that succeeds): sets the pause.
    in_a_row: u32,
    /// The record that failed last, and how many times it has.
    attempts: Option<(Position, u32)>,
    /// While bisecting: the cap, and the end of the range that failed as a whole.
    bisecting: Option<(usize, Position)>,
}

impl RetryLedger {
    /// A ledger with these settings and nothing failed yet.
    pub(crate) fn new(config: FailureRetry) -> Self {
        Self {
            config,
            in_a_row: 0,
            attempts: None,
            bisecting: None,
        }
    }

    /// The most records per delivery now (while bisecting).
    pub(crate) fn cap(&self) -> Option<usize> {
        self.bisecting.as_ref().map(|(cap, _)| *cap)
    }

    /// A delivery ending at `end` succeeded.
    pub(crate) fn delivered(&mut self, end: Option<&Position>) {
        self.in_a_row = 0;
        let Some(end) = end else { return };
        if self
            .bisecting
            .as_ref()
            .is_some_and(|(_, until)| until <= end)
        {
            self.bisecting = None;
        }
        if self.attempts.as_ref().is_some_and(|(at, _)| at <= end) {
            self.attempts = None;
        }
    }

    /// What to do about `failure` of `delivery`; `None` when there is nothing to read
    /// again (a delivery without records reported as failed).
    pub(crate) fn failed(&mut self, failure: Failure, delivery: &FailedDelivery) -> Option<Retry> {
        let at = match failure {
            Failure::Record(at) => at,
            Failure::Batch => {
                let first = delivery.first.clone()?;
                if self.config.bisect && delivery.len >= 2 {
                    let pause = self.next_pause();
                    let until = match (&self.bisecting, &delivery.end) {
                        (Some((_, until)), Some(end)) => until.max(end).clone(),
                        (Some((_, until)), None) => until.clone(),
                        (None, end) => end.clone().unwrap_or_else(|| first.clone()),
                    };
                    self.bisecting = Some((delivery.len / 2, until));
                    return Some(Retry {
                        resume: Resume::At(first),
                        cap: self.cap(),
                        pause,
                        gave_up: None,
                        attempts: 0,
                    });
                }
                first
            }
        };
        let attempts = match &self.attempts {
            Some((last, n)) if *last == at => n + 1,
            _ => 1,
        };
        if self.config.max_attempts.is_some_and(|max| attempts >= max) {
            self.attempts = None;
            self.in_a_row = 0;
            return Some(Retry {
                resume: Resume::After(at.clone()),
                cap: self.cap(),
                pause: Duration::ZERO,
                gave_up: Some(at),
                attempts,
            });
        }
        self.attempts = Some((at.clone(), attempts));
        Some(Retry {
            resume: Resume::At(at),
            cap: self.cap(),
            pause: self.next_pause(),
            gave_up: None,
            attempts,
        })
    }

    /// The pause before the next retry, counting one more failure in a row.
    fn next_pause(&mut self) -> Duration {
        let doublings = self.in_a_row.min(31);
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.config
            .min_delay
            .saturating_mul(1u32 << doublings)
            .min(self.config.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(seq: &str, sub: u64) -> Position {
        (SequenceNumber::parse(seq).unwrap(), sub)
    }

    fn delivery(first: (&str, u64), len: usize, end: (&str, u64)) -> FailedDelivery {
        FailedDelivery {
            first: Some(p(first.0, first.1)),
            len,
            end: Some(p(end.0, end.1)),
        }
    }

    #[test]
    fn defaults_retry_without_end_bisecting_with_pauses_from_500_ms_to_30_s() {
        let d = FailureRetry::default();
        assert_eq!(d.max_attempts, None);
        assert!(d.bisect);
        assert_eq!(d.min_delay, Duration::from_millis(500));
        assert_eq!(d.max_delay, Duration::from_secs(30));
    }

    #[test]
    fn a_failed_record_is_read_again_with_doubling_pauses_and_never_given_up_by_default() {
        let mut ledger = RetryLedger::new(FailureRetry::default());
        let d = delivery(("10", 0), 5, ("14", 0));
        let pauses: Vec<u64> = (0..9)
            .map(|_| {
                let r = ledger.failed(Failure::Record(p("12", 0)), &d).unwrap();
                assert_eq!(r.resume, Resume::At(p("12", 0)));
                assert_eq!(r.gave_up, None);
                r.pause.as_millis() as u64
            })
            .collect();
        assert_eq!(
            pauses,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
    }

    #[test]
    fn a_record_is_given_up_after_max_attempts_and_reading_goes_on_after_it() {
        let mut ledger = RetryLedger::new(FailureRetry::default().with_max_attempts(3));
        let d = delivery(("10", 0), 5, ("14", 0));
        for n in 1..=2 {
            let r = ledger.failed(Failure::Record(p("12", 4)), &d).unwrap();
            assert_eq!((r.resume, r.attempts), (Resume::At(p("12", 4)), n));
        }
        let r = ledger.failed(Failure::Record(p("12", 4)), &d).unwrap();
        assert_eq!(r.resume, Resume::After(p("12", 4)));
        assert_eq!(r.gave_up, Some(p("12", 4)));
        assert_eq!((r.attempts, r.pause), (3, Duration::ZERO));
        // The next record starts its own count.
        let r = ledger.failed(Failure::Record(p("13", 0)), &d).unwrap();
        assert_eq!((r.resume, r.attempts), (Resume::At(p("13", 0)), 1));
    }

    #[test]
    fn attempts_count_again_after_the_record_went_through() {
        let mut ledger = RetryLedger::new(FailureRetry::default().with_max_attempts(2));
        let d = delivery(("10", 0), 5, ("14", 0));
        ledger.failed(Failure::Record(p("12", 0)), &d).unwrap();
        ledger.delivered(Some(&p("12", 0)));
        // Another failure at the same position after it went through (a replay) is a first.
        let r = ledger.failed(Failure::Record(p("12", 0)), &d).unwrap();
        assert_eq!((r.attempts, r.gave_up), (1, None));
        assert_eq!(
            r.pause,
            Duration::from_millis(500),
            "the success reset the pause"
        );
    }

    #[test]
    fn a_failed_batch_is_halved_until_the_failing_record_is_alone() {
        let mut ledger = RetryLedger::new(FailureRetry::default().with_max_attempts(2));
        // 8 records 1..=8; record 6 is poison.
        let r = ledger
            .failed(Failure::Batch, &delivery(("1", 0), 8, ("8", 0)))
            .unwrap();
        assert_eq!(
            (r.resume, r.cap, r.attempts),
            (Resume::At(p("1", 0)), Some(4), 0)
        );
        ledger.delivered(Some(&p("4", 0)));
        assert_eq!(ledger.cap(), Some(4), "still inside the failed range");
        let r = ledger
            .failed(Failure::Batch, &delivery(("5", 0), 4, ("8", 0)))
            .unwrap();
        assert_eq!((r.resume, r.cap), (Resume::At(p("5", 0)), Some(2)));
        let r = ledger
            .failed(Failure::Batch, &delivery(("5", 0), 2, ("6", 0)))
            .unwrap();
        assert_eq!((r.resume, r.cap), (Resume::At(p("5", 0)), Some(1)));
        ledger.delivered(Some(&p("5", 0)));
        let r = ledger
            .failed(Failure::Batch, &delivery(("6", 0), 1, ("6", 0)))
            .unwrap();
        assert_eq!((r.resume, r.attempts), (Resume::At(p("6", 0)), 1));
        let r = ledger
            .failed(Failure::Batch, &delivery(("6", 0), 1, ("6", 0)))
            .unwrap();
        assert_eq!(r.gave_up, Some(p("6", 0)));
        assert_eq!(r.resume, Resume::After(p("6", 0)));
        ledger.delivered(Some(&p("7", 0)));
        assert_eq!(ledger.cap(), Some(1));
        ledger.delivered(Some(&p("8", 0)));
        assert_eq!(
            ledger.cap(),
            None,
            "past the failed range: full deliveries again"
        );
    }

    #[test]
    fn without_bisect_a_failed_batch_comes_again_whole_and_counts_on_its_first_record() {
        let mut ledger = RetryLedger::new(FailureRetry::default().with_bisect(false));
        let d = delivery(("1", 0), 8, ("8", 0));
        let r = ledger.failed(Failure::Batch, &d).unwrap();
        assert_eq!(
            (r.resume, r.cap, r.attempts),
            (Resume::At(p("1", 0)), None, 1)
        );
        let r = ledger.failed(Failure::Batch, &d).unwrap();
        assert_eq!(r.attempts, 2);
    }

    #[test]
    fn a_failed_delivery_without_records_has_nothing_to_retry() {
        let mut ledger = RetryLedger::new(FailureRetry::default());
        let d = FailedDelivery {
            first: None,
            len: 0,
            end: Some(p("9", 0)),
        };
        assert_eq!(ledger.failed(Failure::Batch, &d), None);
    }
}
