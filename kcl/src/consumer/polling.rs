//! [`Polling`]: the retrieval that reads a shard with `GetShardIterator` and `GetRecords`,
//! set by [`PollingConfig`].
//!
//! ```text
//!  fetcher task (one per shard consumer)
//!  GetShardIterator(start) ─┐
//!  GetRecords ≤ 5/s ────────┼─▶ bounded channel (prefetch_batches) ─▶ shard consumer
//!   empty → idle backoff    │
//!   ExpiredIterator, or     │
//!   ResourceNotFound (the   │
//!   stream deleted) → new   │
//!     iterator after last   │
//!     record fetched        │
//!   other errors → again    │
//!     after 100 ms doubling │
//!     up to 10 s            │
//!  next iterator null ──────┘─▶ last batch with `end` (its ChildShards)
//!  shard gone / no iterator ──▶ empty batch with `end` (no children known)
//! ```

use std::time::Duration;

use aws_sdk_kinesis::operation::get_records::GetRecordsOutput;
use aws_sdk_kinesis::types::ShardIteratorType;
use backon::{Backoff, BackoffBuilder, ExponentialBuilder, Retryable};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Batch, RecordsSource, StartingPosition};
use crate::checkpoint::SequenceNumber;
use crate::error::Error;
use crate::metric_names as m;
use crate::stream_address::StreamAddress;

/// Settings of polling retrieval.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PollingConfig {
    /// `Limit` of each `GetRecords` call.
    pub max_records: i32,
    /// Pause after a call that returned no records while at the tip of the shard.
    pub idle_time_between_reads: Duration,
    /// Least time between two `GetRecords` calls on one shard (Kinesis allows 5 per second).
    pub min_time_between_calls: Duration,
    /// Batches fetched ahead of the processor.
    pub prefetch_batches: usize,
}

impl Default for PollingConfig {
    /// 10,000 records per call, 1 s idle pause, 200 ms between calls, 3 batches ahead.
    fn default() -> Self {
        Self {
            max_records: 10_000,
            idle_time_between_reads: Duration::from_secs(1),
            min_time_between_calls: Duration::from_millis(200),
            prefetch_batches: 3,
        }
    }
}

/// The polling retrieval of one shard consumer: each [`start`](RecordsSource::start)
/// spawns a fetcher task for the shard.
#[derive(Debug, Clone)]
pub(crate) struct Polling {
    /// Kinesis client of the calls.
    kinesis: aws_sdk_kinesis::Client,
    /// The stream the shards belong to, as the calls name it.
    stream: StreamAddress,
    /// Limits, pacing and read-ahead of every fetcher.
    config: PollingConfig,
}

impl Polling {
    /// Polling retrieval of `stream`'s shards with `kinesis`, set by `config`.
    pub(crate) fn new(
        kinesis: aws_sdk_kinesis::Client,
        stream: impl Into<StreamAddress>,
        config: PollingConfig,
    ) -> Self {
        Self {
            kinesis,
            stream: stream.into(),
            config,
        }
    }
}

impl RecordsSource for Polling {
    /// Spawns a fetcher (in the caller's tracing span) that reads ahead up to
    /// `prefetch_batches` batches (at least one).
    fn start(
        &self,
        shard_id: &str,
        from: StartingPosition,
        stop: CancellationToken,
    ) -> mpsc::Receiver<Batch> {
        let (tx, rx) = mpsc::channel(self.config.prefetch_batches.max(1));
        let fetcher = Fetcher {
            kinesis: self.kinesis.clone(),
            stream: self.stream.clone(),
            shard_id: shard_id.to_owned(),
            start: from,
            polling: self.config.clone(),
        };
        tokio::spawn(fetcher.run(tx, stop).instrument(tracing::Span::current()));
        rx
    }
}

/// Pauses after a failed `GetShardIterator` or `GetRecords`: 100 ms doubling up to 10 s,
/// without end; one sequence per fetcher, started again by every successful `GetRecords`.
fn error_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .without_max_times()
}

/// The `GetRecords` loop of one shard.
struct Fetcher {
    /// Kinesis client of the calls.
    kinesis: aws_sdk_kinesis::Client,
    /// The stream, named in `GetShardIterator` and `GetRecords`.
    stream: StreamAddress,
    /// The shard read, named in `GetShardIterator` and in errors.
    shard_id: String,
    /// Where the first iterator points; later ones follow the last record fetched.
    start: StartingPosition,
    /// Limit, pacing and idle pause of the calls.
    polling: PollingConfig,
}

/// What a failed `GetShardIterator` means.
enum IteratorError {
    /// The shard is gone from the stream (trimmed): treat as ended.
    Gone,
    /// Anything else; retried.
    Other(Error),
}

/// What a failed `GetRecords` means.
enum RecordsError {
    /// The iterator expired: a new one is needed, after the last record fetched.
    Expired,
    /// The stream or shard is not found (deleted while read): a new iterator is asked
    /// for, whose `GetShardIterator` tells whether the shard is gone (then a shard end).
    NotFound,
    /// Anything else; retried with the same iterator.
    Other(Error),
}

/// Spaces the `GetRecords` calls of one shard.
#[derive(Debug)]
struct CallPacing {
    /// The least time between two calls.
    min_gap: Duration,
    /// When the last call was made (a gap ago at first: the first call goes at once).
    last_call: std::sync::Mutex<Instant>,
}

impl CallPacing {
    fn new(min_gap: Duration) -> Self {
        let now = Instant::now();
        Self {
            min_gap,
            last_call: std::sync::Mutex::new(now.checked_sub(min_gap).unwrap_or(now)),
        }
    }

    /// Waits until a call may be made, and notes it as made now.
    async fn wait_turn(&self) {
        let next = *self.last_call.lock().expect("not poisoned") + self.min_gap;
        tokio::time::sleep_until(next).await;
        *self.last_call.lock().expect("not poisoned") = Instant::now();
    }
}

impl Fetcher {
    /// One `GetShardIterator`: after `after` (the last record fetched), or at the start.
    async fn iterator(&self, after: Option<&SequenceNumber>) -> Result<String, IteratorError> {
        let mut req = self
            .kinesis
            .get_shard_iterator()
            .set_stream_name(self.stream.stream_name_param())
            .set_stream_arn(self.stream.stream_arn_param())
            .shard_id(&self.shard_id);
        req = match (after, &self.start) {
            (Some(seq), _) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq.as_str()),
            (None, StartingPosition::AtSequence(sequence_number)) => req
                // AT, not AFTER: later sub-records of the checkpointed aggregate are due.
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(sequence_number.as_str()),
            (None, StartingPosition::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
            (None, StartingPosition::AtTimestamp(ts)) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_sdk_kinesis::primitives::DateTime::from(*ts)),
            (None, StartingPosition::TrimHorizon) => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
        };
        ::metrics::counter!(m::KINESIS_CALLS, "operation" => "GetShardIterator").increment(1);
        match req.send().await {
            Ok(out) => out
                .shard_iterator()
                .map(str::to_owned)
                .ok_or(IteratorError::Gone),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Err(IteratorError::Gone)
            }
            Err(e) => Err(IteratorError::Other(Error::kinesis(
                "GetShardIterator",
                &self.shard_id,
                &e,
            ))),
        }
    }

    /// A shard iterator (after `after`, or at the start), asked for again after each
    /// error with the next delay of `errors`; `None` when the shard is gone.
    async fn iterator_retried(
        &self,
        after: Option<&SequenceNumber>,
        errors: &mut impl Backoff,
    ) -> Option<String> {
        let asked = (|| self.iterator(after))
            .retry(errors)
            .when(|e| matches!(e, IteratorError::Other(_)))
            .notify(|e, _| {
                if let IteratorError::Other(e) = e {
                    tracing::warn!(error = %e, "GetShardIterator failed; retrying");
                }
            })
            .await;
        match asked {
            Ok(it) => Some(it),
            Err(IteratorError::Gone) => None,
            Err(IteratorError::Other(_)) => unreachable!("errors are retried without end"),
        }
    }

    /// One `GetRecords` with `it`, paced by `pacing` and asked again after each error with
    /// the next delay of `errors`; `None` when the iterator expired or its stream or shard
    /// is not found (a new iterator is needed).
    async fn get_records_retried(
        &self,
        it: &str,
        pacing: &CallPacing,
        errors: &mut impl Backoff,
    ) -> Option<GetRecordsOutput> {
        let call = || async {
            pacing.wait_turn().await;
            ::metrics::counter!(m::KINESIS_CALLS, "operation" => "GetRecords").increment(1);
            self.kinesis
                .get_records()
                .set_stream_arn(self.stream.stream_arn_param())
                .shard_iterator(it)
                .limit(self.polling.max_records)
                .send()
                .await
                .map_err(|e| {
                    if e.as_service_error()
                        .is_some_and(|se| se.is_expired_iterator_exception())
                    {
                        RecordsError::Expired
                    } else if e
                        .as_service_error()
                        .is_some_and(|se| se.is_resource_not_found_exception())
                    {
                        RecordsError::NotFound
                    } else {
                        RecordsError::Other(Error::kinesis("GetRecords", &self.shard_id, &e))
                    }
                })
        };
        let fetched = call
            .retry(errors)
            .when(|e| matches!(e, RecordsError::Other(_)))
            .notify(|e, _| {
                if let RecordsError::Other(e) = e {
                    tracing::warn!(error = %e, throttled = e.is_throttling(), "GetRecords failed; retrying");
                }
            })
            .await;
        match fetched {
            Ok(out) => Some(out),
            Err(RecordsError::Expired) => None,
            Err(RecordsError::NotFound) => {
                tracing::info!(
                    "GetRecords: stream or shard not found (deleted?); asking for a new iterator"
                );
                None
            }
            Err(RecordsError::Other(_)) => unreachable!("errors are retried without end"),
        }
    }

    /// Fetches into `tx` until the shard ends, `tx`'s receiver is dropped, or `stop`.
    async fn run(self, tx: mpsc::Sender<Batch>, stop: CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = self.fetch(tx) => {}
        }
    }

    /// The loop: an iterator, then `GetRecords` after `GetRecords` until the shard ends.
    async fn fetch(&self, tx: mpsc::Sender<Batch>) {
        let mut last_fetched: Option<SequenceNumber> = None;
        let mut errors = error_backoff().build();
        let mut iterator: Option<String> = None;
        let pacing = CallPacing::new(self.polling.min_time_between_calls);
        loop {
            let it = match iterator.take() {
                Some(it) => it,
                None => match self
                    .iterator_retried(last_fetched.as_ref(), &mut errors)
                    .await
                {
                    Some(it) => it,
                    None => {
                        tracing::info!("shard not found or closed with no iterator: shard end");
                        let _ = tx.send(Batch::shard_gone()).await;
                        return;
                    }
                },
            };
            let Some(out) = self.get_records_retried(&it, &pacing, &mut errors).await else {
                tracing::info!(after = ?last_fetched, "shard iterator expired; getting a new one");
                continue;
            };
            let received = Instant::now();
            errors = error_backoff().build();
            let millis_behind_latest = out.millis_behind_latest();
            let next = out.next_shard_iterator().map(str::to_owned);
            let children = out.child_shards().to_vec();
            let records = out.records;
            if let Some(r) = records.last() {
                last_fetched = SequenceNumber::parse(r.sequence_number());
            }
            let empty = records.is_empty();
            // A closed shard: no next iterator (ChildShards may come with it on real Kinesis).
            let end = next.is_none().then_some(children);
            if !empty || end.is_some() {
                let batch = Batch {
                    records,
                    millis_behind_latest,
                    end: end.clone(),
                    received,
                };
                if tx.send(batch).await.is_err() {
                    return;
                }
            }
            if end.is_some() {
                return;
            }
            iterator = next;
            if empty && millis_behind_latest.unwrap_or(0) == 0 {
                tokio::time::sleep(self.polling.idle_time_between_reads).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::primitives::Blob;

    use super::*;

    /// A bound to fail on instead of hanging, never a measured assertion.
    const DEADLINE: Duration = Duration::from_secs(60);

    fn millis(backoff: ExponentialBuilder, n: usize) -> Vec<u64> {
        backoff
            .build()
            .take(n)
            .map(|d| d.as_millis() as u64)
            .collect()
    }

    #[test]
    fn retries_back_off_without_end() {
        assert_eq!(
            millis(error_backoff(), 10),
            vec![100, 200, 400, 800, 1_600, 3_200, 6_400, 10_000, 10_000, 10_000]
        );
    }

    #[test]
    fn polling_defaults_are_pinned() {
        let p = PollingConfig::default();
        assert_eq!(p.max_records, 10_000);
        assert_eq!(p.idle_time_between_reads, Duration::from_secs(1));
        assert_eq!(p.min_time_between_calls, Duration::from_millis(200));
        assert_eq!(p.prefetch_batches, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_paced_from_the_first_which_goes_at_once() {
        let pacing = CallPacing::new(Duration::from_millis(200));
        let start = Instant::now();
        pacing.wait_turn().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        pacing.wait_turn().await;
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let later = Instant::now();
        pacing.wait_turn().await;
        assert_eq!(later.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_polling_source_starts_at_its_sequence_number_and_stops_on_its_token() {
        let stack = kinesis_emulators::LocalStack::builder()
            .start_async()
            .await
            .unwrap();
        let kinesis = stack.kinesis_client();
        let stream = stack.create_stream("polling", 1).await.unwrap();
        let mut put = Vec::new();
        for i in 0..3 {
            let out = kinesis
                .put_record()
                .stream_name(&stream)
                .partition_key("p")
                .data(Blob::new(format!("r{i}")))
                .send()
                .await
                .unwrap();
            put.push(out.sequence_number().to_owned());
        }
        let shards = kinesis
            .list_shards()
            .stream_name(&stream)
            .send()
            .await
            .unwrap();
        let shard = shards.shards()[0].shard_id().to_owned();
        let config = PollingConfig {
            idle_time_between_reads: Duration::from_millis(50),
            ..PollingConfig::default()
        };
        let stop = CancellationToken::new();
        let from = StartingPosition::AtSequence(SequenceNumber::parse(&put[1]).unwrap());
        let mut rx = Polling::new(kinesis, stream, config).start(&shard, from, stop.clone());
        let mut got = Vec::new();
        while got.len() < 2 {
            let batch = tokio::time::timeout(DEADLINE, rx.recv())
                .await
                .unwrap()
                .expect("a batch");
            assert!(batch.end.is_none());
            got.extend(batch.records.iter().map(|r| r.sequence_number().to_owned()));
        }
        assert_eq!(got, put[1..]);
        stop.cancel();
        let after_stop = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap();
        assert!(after_stop.is_none());
    }
}
