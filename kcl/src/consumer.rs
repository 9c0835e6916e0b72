//! The shard consumer: one per held lease, feeding one [`RecordProcessor`].
//!
//! ```text
//!  fetcher task                                   consumer task
//!  GetShardIterator(start) ─┐                     initialize(checkpoint, pending)
//!  GetRecords ≤ 5/s ────────┼─▶ bounded channel ─▶ deaggregate + range filter
//!   empty → idle backoff    │   (prefetch)         drop ≤ start checkpoint (sub-sequence aware)
//!   ExpiredIterator → new   │                      process_records(batch, checkpointer)
//!     iterator after last   │                      ...
//!     record fetched        │   end-of-shard ────▶ shard_ended → SHARD_END → wake shard sync
//!   other errors → again    │                        (asked again, 500 ms doubling to 30 s,
//!     after 100 ms doubling │                         until it checkpoints)
//!     up to 10 s            │
//!  next iterator null ──────┘   lease lost ──────▶ lease_lost
//!                               graceful stop ───▶ shutdown_requested
//! ```

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::operation::get_records::GetRecordsOutput;
use aws_sdk_kinesis::types::{ChildShard, ShardIteratorType};
use backon::{Backoff, BackoffBuilder, ExponentialBuilder, Retryable, RetryableWithContext};
use bytes::Bytes;
use kinesis_agg::{Deaggregator, HashKeyRange, RecordFormat};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::checkpoint::{Checkpoint, SequenceNumber};
use crate::checkpointer::Checkpointer;
use crate::error::Error;
use crate::leases::HeldLease;
use crate::leases::ShardSync;
use crate::metric_names as m;
use crate::processor::{
    InitializationInput, KinesisClientRecord, LeaseLostInput, ProcessRecordsInput, RecordProcessor,
    ShardEndedInput, ShutdownRequestedInput,
};

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

/// What the fetcher hands the consumer.
#[derive(Debug)]
struct Batch {
    /// Kinesis records, in order.
    records: Vec<aws_sdk_kinesis::types::Record>,
    /// From the response.
    millis_behind_latest: Option<i64>,
    /// Set on the last batch of a closed shard.
    end: Option<Vec<ChildShard>>,
}

/// Why a shard consumer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The shard is finished and `SHARD_END` is checkpointed.
    ShardEnded,
    /// The lease was lost.
    LeaseLost,
    /// Graceful shutdown.
    Shutdown,
}

/// Everything a shard consumer needs; built by the scheduler.
pub(crate) struct ShardConsumer {
    /// Kinesis client.
    pub(crate) kinesis: aws_sdk_kinesis::Client,
    /// The stream.
    pub(crate) stream: String,
    /// The lease, for this tenure: what to read, and where checkpoints are written.
    pub(crate) held: Arc<HeldLease>,
    /// The user's processor.
    pub(crate) processor: Box<dyn RecordProcessor>,
    /// Polling settings.
    pub(crate) polling: PollingConfig,
    /// The timestamp for an `AT_TIMESTAMP` start.
    pub(crate) at_timestamp: Option<SystemTime>,
    /// Graceful shutdown of this consumer.
    pub(crate) shutdown: CancellationToken,
    /// Woken after a `SHARD_END` checkpoint.
    pub(crate) shard_ended: Arc<Notify>,
    /// Creates child leases reported by `GetRecords`.
    pub(crate) shard_sync: ShardSync,
}

impl ShardConsumer {
    /// Runs until the shard ends, the lease is lost, or shutdown.
    ///
    /// # Cancellation
    /// Dropping the future stops the consumer abruptly (its fetcher too): the processor
    /// gets no last call, and records after the last checkpoint are delivered again to the
    /// next tenure; a checkpoint already sent may still land.
    pub(crate) async fn run(self) -> Exit {
        let lease = self.held.lease().await;
        let span = tracing::info_span!("shard_consumer", shard = %lease.lease_key);
        self.run_inner(lease).instrument(span).await
    }

    async fn run_inner(mut self, lease: crate::Lease) -> Exit {
        let shard_id = lease.lease_key.clone();
        let start = lease.checkpoint.clone();
        if start.is_shard_end() {
            // Finished by an earlier owner; nothing to deliver.
            self.shard_ended.notify_one();
            return Exit::ShardEnded;
        }
        let checkpointer = Checkpointer::new(
            self.held.clone(),
            shard_id.clone(),
            start.clone(),
            self.shard_ended.clone(),
        );
        self.processor
            .initialize(InitializationInput {
                shard_id: shard_id.clone(),
                checkpoint: start.clone(),
                pending_checkpoint: lease.pending_checkpoint.clone(),
                pending_checkpoint_state: lease.pending_checkpoint_state.clone(),
            })
            .await;

        let (tx, mut rx) = mpsc::channel(self.polling.prefetch_batches.max(1));
        let stop_fetch = CancellationToken::new();
        let _stop_guard = stop_fetch.clone().drop_guard();
        let fetcher = Fetcher {
            kinesis: self.kinesis.clone(),
            stream: self.stream.clone(),
            shard_id: shard_id.clone(),
            start: start.clone(),
            at_timestamp: self.at_timestamp,
            polling: self.polling.clone(),
        };
        tokio::spawn(
            fetcher
                .run(tx, stop_fetch.clone())
                .instrument(tracing::Span::current()),
        );
        let deagg = match lease.hash_key_range {
            Some(range) => Deaggregator::new().with_shard_range(range),
            None => Deaggregator::new().with_shard_range(HashKeyRange::ALL),
        };
        let shard_label = shard_id.clone();
        loop {
            let batch = tokio::select! {
                biased;
                _ = self.held.lost.cancelled() => {
                    self.processor.lease_lost(LeaseLostInput::default()).await;
                    return Exit::LeaseLost;
                }
                _ = self.shutdown.cancelled() => {
                    self.processor
                        .shutdown_requested(ShutdownRequestedInput { checkpointer: checkpointer.clone() })
                        .await;
                    return Exit::Shutdown;
                }
                b = rx.recv() => b,
            };
            let Some(batch) = batch else {
                // The fetcher only stops on its own at a shard end, which it reports first.
                tracing::error!("record fetcher stopped unexpectedly");
                self.processor.lease_lost(LeaseLostInput::default()).await;
                return Exit::LeaseLost;
            };
            if let Some(ms) = batch.millis_behind_latest {
                ::metrics::gauge!(m::MILLIS_BEHIND_LATEST, "shard" => shard_label.clone())
                    .set(ms as f64);
            }
            let (records, last) = user_records(&deagg, &start, batch.records, &shard_label);
            if let Some((seq, sub)) = last {
                checkpointer.set_batch_end(seq, sub);
            }
            if !records.is_empty() {
                ::metrics::counter!(m::RECORDS_PROCESSED, "shard" => shard_label.clone())
                    .increment(records.len() as u64);
                self.processor
                    .process_records(ProcessRecordsInput {
                        records,
                        millis_behind_latest: batch.millis_behind_latest,
                        checkpointer: checkpointer.clone(),
                    })
                    .await;
            }
            if let Some(children) = batch.end {
                return self.finish_shard(&checkpointer, children).await;
            }
        }
    }

    /// Hands the shard end to the processor until it checkpoints `SHARD_END`: asked again
    /// after [`shard_end_backoff`]'s delays, a pause cut short when the lease is lost
    /// (`lease_lost`) or shutdown is requested (the consumer stops).
    async fn finish_shard(self, checkpointer: &Checkpointer, children: Vec<ChildShard>) -> Exit {
        if !children.is_empty() {
            if let Err(e) = self.shard_sync.create_child_leases(&children).await {
                tracing::warn!(error = %e, "creating child leases failed; shard sync will");
            }
        }
        checkpointer.set_shard_end(children.iter().map(|c| c.shard_id().to_owned()).collect());
        let ShardConsumer {
            processor,
            held,
            shutdown,
            ..
        } = self;
        let mut first = true;
        let ask = {
            let (held, shutdown, checkpointer) =
                (held.clone(), shutdown.clone(), checkpointer.clone());
            move |mut processor: Box<dyn RecordProcessor>| {
                let again = !std::mem::replace(&mut first, false);
                let (held, shutdown, checkpointer) =
                    (held.clone(), shutdown.clone(), checkpointer.clone());
                async move {
                    // A pause cut short by a shutdown: stop asking.
                    if again && shutdown.is_cancelled() {
                        return (processor, Ok(Exit::Shutdown));
                    }
                    if held.is_lost() {
                        processor.lease_lost(LeaseLostInput::default()).await;
                        return (processor, Ok(Exit::LeaseLost));
                    }
                    processor
                        .shard_ended(ShardEndedInput {
                            checkpointer: checkpointer.clone(),
                        })
                        .await;
                    let exit = if checkpointer.last_checkpoint().is_shard_end() {
                        Ok(Exit::ShardEnded)
                    } else {
                        Err(NotCheckpointed)
                    };
                    (processor, exit)
                }
            }
        };
        let pause = move |delay| {
            let (lost, shutdown) = (held.lost.clone(), shutdown.clone());
            async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = lost.cancelled() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        };
        let (_, exit) = ask
            .retry(shard_end_backoff())
            .sleep(pause)
            .notify(|_: &NotCheckpointed, _| {
                tracing::error!(
                    "the record processor returned from shard_ended without checkpointing; \
                     the shard's children cannot start until it does; asking again"
                );
            })
            .context(processor)
            .await;
        match exit {
            Ok(Exit::ShardEnded) => {
                tracing::info!("shard ended");
                Exit::ShardEnded
            }
            Ok(other) => other,
            Err(NotCheckpointed) => unreachable!("the processor is asked again without end"),
        }
    }
}

/// A processor returned from `shard_ended` without checkpointing `SHARD_END`.
#[derive(Debug)]
struct NotCheckpointed;

/// Pauses before asking a processor again to checkpoint its shard end: 500 ms doubling
/// up to 30 s, without end.
fn shard_end_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .without_max_times()
}

/// Pauses after a failed `GetShardIterator` or `GetRecords`: 100 ms doubling up to 10 s,
/// without end; one sequence per fetcher, started again by every successful `GetRecords`.
fn error_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .without_max_times()
}

/// Takes Kinesis records apart into user records, dropping those at or before `start`
/// and those outside the shard's range. Returns the records and the last position read.
fn user_records(
    deagg: &Deaggregator,
    start: &Checkpoint,
    records: Vec<aws_sdk_kinesis::types::Record>,
    shard: &str,
) -> (Vec<KinesisClientRecord>, Option<(SequenceNumber, u64)>) {
    let mut out = Vec::with_capacity(records.len());
    let mut last = None;
    for r in records {
        let Some(seq) = SequenceNumber::parse(r.sequence_number()) else {
            tracing::warn!(
                sequence_number = r.sequence_number(),
                "skipping record with an odd sequence number"
            );
            continue;
        };
        let arrival = r
            .approximate_arrival_timestamp()
            .and_then(|t| SystemTime::try_from(*t).ok());
        let pk = r.partition_key().unwrap_or_default().to_owned();
        let data = Bytes::from(r.data.into_inner());
        let d = match deagg.deaggregate(&pk, data) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "skipping undecodable record");
                continue;
            }
        };
        if let RecordFormat::Corrupt(reason) = &d.format {
            tracing::warn!(sequence_number = %seq, ?reason, "corrupt aggregate passed through as one record");
        }
        if d.dropped_outside_range > 0 {
            ::metrics::counter!(m::RECORDS_DROPPED_OUT_OF_RANGE, "shard" => shard.to_owned())
                .increment(d.dropped_outside_range as u64);
        }
        let aggregated = d.format == RecordFormat::Aggregated;
        last = Some((seq.clone(), d.total.saturating_sub(1) as u64));
        for sub in d.records {
            if start.covers(&seq, sub.sub_sequence_number) {
                continue;
            }
            out.push(KinesisClientRecord {
                sequence_number: seq.as_str().to_owned(),
                sub_sequence_number: sub.sub_sequence_number,
                partition_key: sub.partition_key,
                explicit_hash_key: sub.explicit_hash_key,
                approximate_arrival_timestamp: arrival,
                data: sub.data,
                aggregated,
            });
        }
    }
    (out, last)
}

/// The `GetRecords` loop of one shard.
struct Fetcher {
    /// Kinesis client.
    kinesis: aws_sdk_kinesis::Client,
    /// The stream.
    stream: String,
    /// The shard.
    shard_id: String,
    /// Where to start.
    start: Checkpoint,
    /// For `AT_TIMESTAMP`.
    at_timestamp: Option<SystemTime>,
    /// Pacing.
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
    async fn iterator(&self, after: Option<&SequenceNumber>) -> Result<String, IteratorError> {
        let mut req = self
            .kinesis
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(&self.shard_id);
        req = match (after, &self.start) {
            (Some(seq), _) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq.as_str()),
            (
                None,
                Checkpoint::Sequence {
                    sequence_number, ..
                },
            ) => req
                // AT, not AFTER: later sub-records of the checkpointed aggregate are due.
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(sequence_number.as_str()),
            (None, Checkpoint::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
            (None, Checkpoint::AtTimestamp) => {
                let ts = self.at_timestamp.unwrap_or(SystemTime::UNIX_EPOCH);
                req.shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(aws_sdk_kinesis::primitives::DateTime::from(ts))
            }
            (None, _) => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
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
    /// the next delay of `errors`; `None` when the iterator expired.
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
                .shard_iterator(it)
                .limit(self.polling.max_records)
                .send()
                .await
                .map_err(|e| {
                    if e.as_service_error()
                        .is_some_and(|se| se.is_expired_iterator_exception())
                    {
                        RecordsError::Expired
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
            Err(RecordsError::Other(_)) => unreachable!("errors are retried without end"),
        }
    }

    async fn run(self, tx: mpsc::Sender<Batch>, stop: CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = self.fetch(tx) => {}
        }
    }

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
                        let _ = tx
                            .send(Batch {
                                records: Vec::new(),
                                millis_behind_latest: None,
                                end: Some(Vec::new()),
                            })
                            .await;
                        return;
                    }
                },
            };
            let Some(out) = self.get_records_retried(&it, &pacing, &mut errors).await else {
                tracing::info!(after = ?last_fetched, "shard iterator expired; getting a new one");
                continue;
            };
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
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use async_trait::async_trait;
    use kinesis_agg::{Aggregator, UserRecord};

    use super::*;
    use crate::initial_position::InitialPosition;
    use crate::leases::{LeaseConfig, LeaseCoordinator, LeaseStore, MemoryLeaseStore};
    use crate::Lease;

    /// Checkpoints the shard end at its `checkpoint_on`-th `shard_ended` (never if 0).
    struct Stubborn {
        /// `shard_ended` calls so far.
        asks: Arc<AtomicUsize>,
        /// The call that checkpoints.
        checkpoint_on: usize,
        /// Set by `lease_lost`.
        lost: Arc<AtomicBool>,
    }

    #[async_trait]
    impl RecordProcessor for Stubborn {
        async fn initialize(&mut self, _: InitializationInput) {}
        async fn process_records(&mut self, _: ProcessRecordsInput) {}
        async fn lease_lost(&mut self, _: LeaseLostInput) {
            self.lost.store(true, Ordering::SeqCst);
        }
        async fn shard_ended(&mut self, input: ShardEndedInput) {
            let n = self.asks.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.checkpoint_on {
                input.checkpointer.checkpoint().await.unwrap();
            }
        }
    }

    /// A consumer of lease "s" held in a memory store, at its shard end, with a
    /// [`Stubborn`] processor; its asks and lease-lost flag.
    async fn at_shard_end(
        checkpoint_on: usize,
    ) -> (
        ShardConsumer,
        Checkpointer,
        Arc<AtomicUsize>,
        Arc<AtomicBool>,
    ) {
        let store = Arc::new(MemoryLeaseStore::new());
        let lease = Lease::new("s", Checkpoint::TrimHorizon);
        store.create_lease_if_not_exists(&lease).await.unwrap();
        let coordinator = LeaseCoordinator::new(store.clone(), "w", LeaseConfig::default());
        coordinator.take_leases().await.unwrap();
        let held = coordinator.held_lease("s").unwrap();
        let kinesis = aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
                .build(),
        );
        let (asks, lost) = (Arc::default(), Arc::<AtomicBool>::default());
        let shard_ended = Arc::new(Notify::new());
        let checkpointer = Checkpointer::new(
            held.clone(),
            "s".into(),
            Checkpoint::TrimHorizon,
            shard_ended.clone(),
        );
        let consumer = ShardConsumer {
            shard_sync: ShardSync::new(
                kinesis.clone(),
                "stream",
                store,
                InitialPosition::TrimHorizon,
            ),
            kinesis,
            stream: "stream".into(),
            held,
            processor: Box::new(Stubborn {
                asks: Arc::clone(&asks),
                checkpoint_on,
                lost: Arc::clone(&lost),
            }),
            polling: PollingConfig::default(),
            at_timestamp: None,
            shutdown: CancellationToken::new(),
            shard_ended,
        };
        (consumer, checkpointer, asks, lost)
    }

    #[tokio::test(start_paused = true)]
    async fn a_shard_end_is_asked_for_again_until_checkpointed() {
        let (consumer, checkpointer, asks, _) = at_shard_end(3).await;
        let start = Instant::now();
        let exit = consumer.finish_shard(&checkpointer, Vec::new()).await;
        assert_eq!(exit, Exit::ShardEnded);
        assert_eq!(asks.load(Ordering::SeqCst), 3);
        assert_eq!(start.elapsed(), Duration::from_millis(500 + 1_000));
        assert!(checkpointer.last_checkpoint().is_shard_end());
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_cuts_the_pause_short_and_stops_asking() {
        let (consumer, checkpointer, asks, lost) = at_shard_end(0).await;
        let shutdown = consumer.shutdown.clone();
        let finishing =
            tokio::spawn(async move { consumer.finish_shard(&checkpointer, Vec::new()).await });
        tokio::time::sleep(Duration::from_secs(10)).await;
        // Asked at 0, 0.5, 1.5, 3.5 and 7.5 s.
        assert_eq!(asks.load(Ordering::SeqCst), 5);
        let asked = Instant::now();
        shutdown.cancel();
        assert_eq!(finishing.await.unwrap(), Exit::Shutdown);
        assert_eq!(asked.elapsed(), Duration::ZERO);
        assert_eq!(asks.load(Ordering::SeqCst), 5);
        assert!(!lost.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_cuts_the_pause_short_and_tells_the_processor() {
        let (consumer, checkpointer, asks, lost) = at_shard_end(0).await;
        let held = consumer.held.clone();
        let finishing =
            tokio::spawn(async move { consumer.finish_shard(&checkpointer, Vec::new()).await });
        tokio::time::sleep(Duration::from_secs(2)).await;
        held.lost.cancel();
        assert_eq!(finishing.await.unwrap(), Exit::LeaseLost);
        assert!(lost.load(Ordering::SeqCst));
        assert_eq!(asks.load(Ordering::SeqCst), 3);
    }

    fn record(seq: &str, pk: &str, data: Bytes) -> aws_sdk_kinesis::types::Record {
        aws_sdk_kinesis::types::Record::builder()
            .sequence_number(seq)
            .partition_key(pk)
            .data(aws_sdk_kinesis::primitives::Blob::new(data.to_vec()))
            .build()
            .unwrap()
    }

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
        assert_eq!(
            millis(shard_end_backoff(), 9),
            vec![500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
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

    #[test]
    fn resume_skips_records_at_or_before_the_checkpoint_by_sub_sequence() {
        let mut agg = Aggregator::builder().build().unwrap();
        for i in 0..4 {
            agg.try_add(UserRecord::new(format!("k{i}"), format!("v{i}")).unwrap())
                .unwrap();
        }
        let a = agg.finish().unwrap();
        let records = vec![
            record("100", "p", Bytes::from_static(b"old")),
            record("200", &a.partition_key, a.data.clone()),
            record("300", "p", Bytes::from_static(b"new")),
        ];
        let start = Checkpoint::at("200", 1).unwrap();
        let deagg = Deaggregator::new().with_shard_range(HashKeyRange::ALL);
        let (out, last) = user_records(&deagg, &start, records, "s");
        let got: Vec<(String, u64)> = out
            .iter()
            .map(|r| (r.sequence_number.clone(), r.sub_sequence_number))
            .collect();
        assert_eq!(
            got,
            vec![("200".into(), 2), ("200".into(), 3), ("300".into(), 0)]
        );
        assert!(out[0].aggregated && !out[2].aggregated);
        assert_eq!(last, Some((SequenceNumber::parse("300").unwrap(), 0)));
    }

    #[test]
    fn sub_records_outside_the_shard_range_are_dropped() {
        let mut agg = Aggregator::builder().build().unwrap();
        agg.try_add(
            UserRecord::new("a", "in")
                .unwrap()
                .with_explicit_hash_key(kinesis_agg::HashKey(5)),
        )
        .unwrap();
        agg.try_add(
            UserRecord::new("b", "out")
                .unwrap()
                .with_explicit_hash_key(kinesis_agg::HashKey(500)),
        )
        .unwrap();
        let a = agg.finish().unwrap();
        let range = HashKeyRange::parse("0", "100").unwrap();
        let deagg = Deaggregator::new().with_shard_range(range);
        let (out, last) = user_records(
            &deagg,
            &Checkpoint::TrimHorizon,
            vec![record("7", &a.partition_key, a.data)],
            "s",
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, Bytes::from_static(b"in"));
        // The batch end covers the dropped sub-record too.
        assert_eq!(last, Some((SequenceNumber::parse("7").unwrap(), 1)));
    }
}
