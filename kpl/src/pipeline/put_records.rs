//! The `PutRecords` call and the classification of its answer.
//!
//! ```text
//!  Vec<Entry> ─▶ request() ─▶ spawn: client.put_records() within request_timeout
//!                                 │ ─▶ Event::CallDone { entries, CallResult }
//!                                 ▼
//!  CallResult::Failed(err) ─▶ should_split? (ValidationException, HTTP 413: halves)
//!                          └▶ every record: one AttemptFailure (fatal or retried)
//!  CallResult::Ok(results) ─▶ record_result(i-th result) per entry:
//!                               Landed { shard, sequence number } | Refused(AttemptFailure)
//!                             RecordErrors: one report per distinct code, and the streak
//! ```

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry};
use aws_sdk_kinesis::Client;
use aws_smithy_types::Blob;
use smallvec::SmallVec;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use super::batch::Entry;
use super::message::{CallResult, Event};
use crate::failure::{
    classify, is_throttling_code, shorten, CallError, REQUEST_TIMEOUT, REQUEST_TOO_LARGE,
};

/// The operation's name in failure reports and logs.
pub(crate) const PUT_RECORDS: &str = "PutRecords";

/// Error code given to a Kinesis record the answer has no result for.
const MISSING_RESULT: &str = "MissingResult";

/// Error code given to a result with neither an error code nor a shard and sequence number.
const MISSING_SEQUENCE_NUMBER: &str = "MissingSequenceNumber";

/// Sends `entries` to `stream` as one call on a task of its own; its end comes back on
/// `events` as [`Event::CallDone`], with the entries. A call that has not answered within
/// `timeout` fails with `RequestTimeout`.
pub(crate) fn spawn(
    client: &Client,
    stream: Arc<str>,
    entries: Vec<Entry>,
    timeout: Duration,
    events: mpsc::UnboundedSender<Event>,
) {
    let request = request(&entries);
    let span = tracing::debug_span!(
        "put_records",
        stream = %stream,
        kinesis_records = entries.len(),
        user_records = entries.iter().map(|e| e.items.len()).sum::<usize>(),
        bytes = entries.iter().map(Entry::size).sum::<usize>(),
    );
    let client = client.clone();
    tokio::spawn(
        async move {
            let call = client
                .put_records()
                .stream_name(&*stream)
                .set_records(Some(request))
                .send();
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(Ok(out)) => CallResult::Ok(out.records),
                Ok(Err(e)) => {
                    // The SDK's whole story (HTTP headers and all) is for debugging
                    // only; outcomes and reports carry the short classification.
                    tracing::debug!(error = %DisplayErrorContext(&e), "PutRecords failed");
                    CallResult::Failed(classify(&e))
                }
                Err(_) => CallResult::Failed(CallError::retryable(
                    REQUEST_TIMEOUT,
                    format!("PutRecords did not answer within {timeout:?}"),
                )),
            };
            // The pipeline outlives its calls, so this send only fails if the task
            // was torn down with the runtime; the records' handles then resolve as
            // shut down.
            let _ = events.send(Event::CallDone {
                stream,
                entries,
                result,
            });
        }
        .instrument(span),
    );
}

/// The request entries for `entries`, in order.
fn request(entries: &[Entry]) -> Vec<PutRecordsRequestEntry> {
    entries
        .iter()
        .map(|e| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(e.data.to_vec()))
                .partition_key(e.partition_key())
                .set_explicit_hash_key(e.explicit_hash_key.map(|h| h.to_string()))
                .build()
                .expect("data and partition key are set")
        })
        .collect()
}

/// Whether a call of `records` Kinesis records that failed whole with `err` is sent again
/// in two halves instead: one invalid record fails a whole call with
/// `ValidationException`, and an endpoint with a smaller body limit than Kinesis refuses a
/// full call with HTTP 413; split, the valid records in it are still delivered.
pub(crate) fn should_split(err: &CallError, records: usize) -> bool {
    let splittable =
        err.fatal && (err.code == "ValidationException" || err.code == REQUEST_TOO_LARGE);
    splittable && records > 1
}

/// Whether records refused with `err` fail at once rather than being tried again: the
/// error is fatal, or throttling under `fail_if_throttled`.
pub(crate) fn fails_at_once(err: &CallError, fail_if_throttled: bool) -> bool {
    err.fatal || (err.throttled && fail_if_throttled)
}

/// One failed attempt of a Kinesis record, as recorded on each of its user records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AttemptFailure<'a> {
    /// When the answer (or the timeout) came.
    pub(crate) now: Instant,
    /// The error code.
    pub(crate) code: &'a str,
    /// The message that came with it.
    pub(crate) message: &'a str,
    /// Throttling, counted apart from errors.
    pub(crate) throttled: bool,
    /// Not worth retrying: the records fail at once.
    pub(crate) fatal: bool,
}

impl<'a> AttemptFailure<'a> {
    /// The attempt of every record of a call that failed whole with `err`.
    pub(crate) fn of_call(err: &'a CallError, now: Instant) -> Self {
        AttemptFailure {
            now,
            code: &err.code,
            message: &err.message,
            throttled: err.throttled,
            fatal: err.fatal,
        }
    }
}

/// What the answer of a call that succeeded says of one of its Kinesis records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordResult<'a> {
    /// Kinesis put it in this shard, at this sequence number.
    Landed {
        /// The shard it is in.
        shard_id: &'a str,
        /// Its sequence number.
        sequence_number: &'a str,
    },
    /// Kinesis refused it (or the answer is incomplete): it is tried again.
    Refused(AttemptFailure<'a>),
}

/// Classifies `result`, the i-th result of a call's answer for its i-th Kinesis record
/// (`None` when the answer has fewer results than the call had records), answered `now`.
pub(crate) fn record_result(
    result: Option<&PutRecordsResultEntry>,
    now: Instant,
) -> RecordResult<'_> {
    let Some(r) = result else {
        return RecordResult::Refused(AttemptFailure {
            now,
            code: MISSING_RESULT,
            message: "PutRecords returned fewer results than records",
            throttled: false,
            fatal: false,
        });
    };
    match (r.error_code(), r.shard_id(), r.sequence_number()) {
        (None, Some(shard_id), Some(sequence_number)) => RecordResult::Landed {
            shard_id,
            sequence_number,
        },
        (code, _, _) => {
            let code = code.unwrap_or(MISSING_SEQUENCE_NUMBER);
            RecordResult::Refused(AttemptFailure {
                now,
                code,
                message: r.error_message().unwrap_or_default(),
                throttled: is_throttling_code(code),
                fatal: false,
            })
        }
    }
}

/// The refused records of one answered call, by error code: one failure report per
/// distinct code (throttling can refuse thousands of records a second), and what the
/// call means for the stream's failure streak.
#[derive(Debug, Default)]
pub(crate) struct RecordErrors {
    /// Each code's error, with the user records refused with it.
    by_code: SmallVec<[(CallError, usize); 2]>,
}

/// What an answered call means for its stream's streak of failed calls.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StreakChange<'a> {
    /// Records were refused for other reasons than throttling: the call counts as
    /// failed, with its first such error and the user records refused so.
    Failed(&'a CallError, usize),
    /// Records were delivered and none refused but for throttling: the streak ends.
    Ended,
    /// Throttling only: neither (it is routine, counted in the stats instead).
    Unchanged,
}

impl RecordErrors {
    /// Counts `records` user records of a Kinesis record refused with `failure`.
    pub(crate) fn add(&mut self, failure: &AttemptFailure<'_>, records: usize) {
        match self
            .by_code
            .iter_mut()
            .find(|(e, _)| e.code == failure.code)
        {
            Some((_, n)) => *n += records,
            None => self.by_code.push((
                CallError {
                    code: failure.code.to_owned(),
                    message: shorten(failure.message),
                    throttled: failure.throttled,
                    fatal: failure.fatal,
                    stream_level: false,
                },
                records,
            )),
        }
    }

    /// Each distinct error, in order of first appearance, with its user records.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(CallError, usize)> {
        self.by_code.iter()
    }

    /// What the call means for the streak, given whether it delivered any record.
    pub(crate) fn streak(&self, delivered_any: bool) -> StreakChange<'_> {
        match self.by_code.iter().find(|(e, _)| !e.throttled) {
            Some((err, _)) => {
                let records = self
                    .by_code
                    .iter()
                    .filter(|(e, _)| !e.throttled)
                    .map(|(_, n)| n)
                    .sum();
                StreakChange::Failed(err, records)
            }
            None if delivered_any => StreakChange::Ended,
            None => StreakChange::Unchanged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(shard: &str, seq: &str) -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder()
            .shard_id(shard)
            .sequence_number(seq)
            .build()
    }

    fn refused(code: &str, message: &str) -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder()
            .error_code(code)
            .error_message(message)
            .build()
    }

    #[test]
    fn each_result_is_landed_or_refused_with_its_code() {
        let now = Instant::now();
        assert_eq!(
            record_result(Some(&ok("shard-1", "42")), now),
            RecordResult::Landed {
                shard_id: "shard-1",
                sequence_number: "42"
            }
        );
        let throttled = refused("ProvisionedThroughputExceededException", "Rate exceeded");
        let RecordResult::Refused(f) = record_result(Some(&throttled), now) else {
            panic!("refused");
        };
        assert_eq!(
            (f.code, f.message, f.throttled, f.fatal),
            (
                "ProvisionedThroughputExceededException",
                "Rate exceeded",
                true,
                false
            )
        );
        let internal = refused("InternalFailure", "boom");
        let RecordResult::Refused(f) = record_result(Some(&internal), now) else {
            panic!("refused");
        };
        assert!(!f.throttled && !f.fatal);
        // Incomplete answers are retried, never taken for a delivery.
        let no_seq = PutRecordsResultEntry::builder().shard_id("shard-1").build();
        let RecordResult::Refused(f) = record_result(Some(&no_seq), now) else {
            panic!("refused");
        };
        assert_eq!((f.code, f.fatal), (MISSING_SEQUENCE_NUMBER, false));
        let RecordResult::Refused(f) = record_result(None, now) else {
            panic!("refused");
        };
        assert_eq!((f.code, f.fatal), (MISSING_RESULT, false));
    }

    #[test]
    fn record_errors_give_one_report_per_code_and_throttling_neither_starts_nor_fails_a_streak() {
        let now = Instant::now();
        let throttled = refused("ProvisionedThroughputExceededException", "Rate exceeded");
        let internal = refused("InternalFailure", "boom");
        let mut errors = RecordErrors::default();
        assert_eq!(errors.streak(false), StreakChange::Unchanged);
        assert_eq!(errors.streak(true), StreakChange::Ended);
        for (r, n) in [(&throttled, 3), (&internal, 1), (&throttled, 2)] {
            let RecordResult::Refused(f) = record_result(Some(r), now) else {
                unreachable!()
            };
            errors.add(&f, n);
        }
        let summary: Vec<_> = errors
            .iter()
            .map(|(e, n)| (e.code.as_str(), e.throttled, *n))
            .collect();
        assert_eq!(
            summary,
            [
                ("ProvisionedThroughputExceededException", true, 5),
                ("InternalFailure", false, 1)
            ]
        );
        match errors.streak(true) {
            StreakChange::Failed(err, records) => {
                assert_eq!((err.code.as_str(), records), ("InternalFailure", 1));
                assert_eq!(err.message, "boom");
            }
            other => panic!("{other:?}"),
        }
        let mut only_throttled = RecordErrors::default();
        let RecordResult::Refused(f) = record_result(Some(&throttled), now) else {
            unreachable!()
        };
        only_throttled.add(&f, 4);
        assert_eq!(only_throttled.streak(false), StreakChange::Unchanged);
        assert_eq!(only_throttled.streak(true), StreakChange::Ended);
    }

    #[test]
    fn a_call_is_split_only_when_halves_can_succeed() {
        let fatal = |code: &str| CallError {
            code: code.to_owned(),
            message: String::new(),
            throttled: false,
            fatal: true,
            stream_level: false,
        };
        assert!(should_split(&fatal("ValidationException"), 2));
        assert!(should_split(&fatal(REQUEST_TOO_LARGE), 500));
        assert!(
            !should_split(&fatal("ValidationException"), 1),
            "one record fails"
        );
        assert!(!should_split(&fatal("ResourceNotFoundException"), 500));
        let retryable = CallError::retryable("InternalFailure", "boom");
        assert!(!should_split(&retryable, 500));
        assert!(!fails_at_once(&retryable, true));
        assert!(fails_at_once(&fatal("AccessDeniedException"), false));
        let mut throttled = CallError::retryable("ThrottlingException", "slow down");
        throttled.throttled = true;
        assert!(!fails_at_once(&throttled, false));
        assert!(fails_at_once(&throttled, true));
    }
}
