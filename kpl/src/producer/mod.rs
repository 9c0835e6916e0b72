//! The public handle: `put`, `try_put`, `flush`, `shutdown`, and the failure reports;
//! and its builder.
//!
//! ```text
//!  Producer::builder(client) … build() ─▶ Producer::start ─▶ spawns the pipeline task
//!  put / try_put ─▶ ProducerRecord::check ─▶ budget (records, bytes) ─▶ Command::Put ─▶ pipeline
//!  put_all ─▶ check each ─▶ budget once (Σ records, Σ bytes), held by the batch ─▶ Command::PutAll ─▶ pipeline
//!  flush / shutdown ─▶ Command::Flush / Shutdown ─▶ pipeline ─▶ answered when settled
//! ```

mod builder;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aws_sdk_kinesis::Client;
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

pub use builder::ProducerBuilder;

use crate::config::{Config, RECORD_OVERHEAD_BYTES};
use crate::error::{PutAllError, PutError};
use crate::failure::{CallFailure, FAILURE_REPORTS_CAPACITY};
use crate::outcome::PutHandle;
use crate::pipeline::{Budget, Command, Item, Pipeline};
use crate::put_all::BatchHandle;
use crate::record::{Accepted, Checked, ProducerRecord};
use crate::stats::{ProducerStats, Stats};

/// A Kinesis producer: accepts user records, aggregates and collects them per shard, sends
/// them with `PutRecords`, retries until each record's TTL, and resolves every record's
/// [`PutHandle`] with exactly one outcome.
///
/// Cheap to clone: clones share one pipeline. When the last clone is dropped without
/// [`shutdown`](Producer::shutdown), records not yet sent resolve as failed with
/// [`FailureReason::ShutDown`](crate::FailureReason::ShutDown) (calls already in flight
/// still settle their records); call `shutdown` to deliver everything first.
#[derive(Debug, Clone)]
pub struct Producer {
    /// Shared by all clones; dropping the last one closes the command queue.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Commands to the pipeline task. Unbounded: every record in it holds its share of
    /// the memory budget (its queue slot is part of `RECORD_OVERHEAD_BYTES`), so the
    /// budget bounds it, and a bounded channel would only add a second semaphore per record.
    commands: mpsc::UnboundedSender<Command>,
    /// Record budget: one permit per unsettled record (a `put_all` batch holds its
    /// records' permits until its last record is settled).
    records_budget: Arc<Semaphore>,
    /// Byte budget: data + key + overhead per unsettled record.
    bytes_budget: Arc<Semaphore>,
    /// The byte budget's size, for errors.
    max_outstanding_bytes: usize,
    /// The record budget's size, for errors.
    max_outstanding_records: usize,
    /// Record size limit, for validation.
    max_record_size: usize,
    /// Counters shared with the pipeline.
    stats: Arc<Stats>,
    /// Set by `shutdown`: later puts are refused.
    closed: AtomicBool,
    /// The pipeline task, awaited by `shutdown`.
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// Stream names handed out in outcomes, shared instead of allocated per record.
    stream_names: std::sync::Mutex<Vec<Arc<str>>>,
    /// Subscribes to the pipeline's failure reports. Weak: the pipeline task holds the
    /// only sender, so subscribers see the channel close when the pipeline stops.
    failures: broadcast::WeakSender<CallFailure>,
}

impl Inner {
    /// The shared name of `stream`.
    fn stream_name(&self, stream: &str) -> Arc<str> {
        let mut names = self.stream_names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = names.iter().find(|n| &***n == stream) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(stream);
        // A producer serves a handful of streams; the list only guards against a caller
        // that invents stream names without end.
        if names.len() < 64 {
            names.push(n.clone());
        }
        n
    }
}

impl Producer {
    /// A builder for a producer that sends through `client`.
    pub fn builder(client: Client) -> ProducerBuilder {
        ProducerBuilder::new(client)
    }

    pub(crate) fn start(client: Client, config: Config) -> Producer {
        let (tx, rx) = mpsc::unbounded_channel();
        let (failures, _) = broadcast::channel(FAILURE_REPORTS_CAPACITY);
        let stats = Arc::new(Stats::default());
        let records_budget = Arc::new(Semaphore::new(config.max_outstanding_records));
        let bytes_budget = Arc::new(Semaphore::new(config.max_outstanding_bytes));
        let inner = Inner {
            commands: tx,
            records_budget,
            bytes_budget,
            max_outstanding_bytes: config.max_outstanding_bytes,
            max_outstanding_records: config.max_outstanding_records,
            max_record_size: config.max_record_size,
            stats: stats.clone(),
            closed: AtomicBool::new(false),
            task: tokio::sync::Mutex::new(None),
            stream_names: std::sync::Mutex::new(Vec::new()),
            failures: failures.downgrade(),
        };
        let pipeline = Pipeline::new(client, config, rx, stats, failures);
        let task = tokio::spawn(pipeline.run());
        *inner.task.try_lock().expect("new mutex is free") = Some(task);
        Producer {
            inner: Arc::new(inner),
        }
    }

    /// Checks `record` and accepts it, waiting while the memory budget is spent. Returns
    /// a handle that resolves to the record's outcome.
    ///
    /// # Errors
    /// [`PutError::InvalidStreamName`] (not 1 to 128 characters of `a-z`, `A-Z`, `0-9`,
    /// `_`, `.`, `-`), [`PutError::InvalidRecord`] (partition key empty or over 256
    /// Unicode characters, counted as AWS does: characters, not bytes; data plus key over
    /// the record size limit; explicit hash key not a decimal within 0 ..= 2^128 - 1),
    /// [`PutError::LargerThanBudget`], or [`PutError::ShutDown`]. The record is inside
    /// the error. A server that counts a key's bytes (some emulators) may still refuse a
    /// long key of multi-byte characters; only that record fails, with
    /// [`FailureReason::Rejected`](crate::FailureReason::Rejected).
    ///
    /// # Cancellation
    /// Cancel-safe in the sense that matters: if the future is dropped while waiting for
    /// budget, the record was not accepted and nothing is sent. Once it returns `Ok`, the
    /// record is the producer's and will be settled whether or not the handle is awaited.
    pub async fn put(&self, record: ProducerRecord) -> Result<PutHandle, PutError> {
        let (user_record, needed) = self.check(record)?;
        let inner = &self.inner;
        let permits = async {
            let r = inner.records_budget.clone().acquire_owned().await.ok()?;
            let b = inner
                .bytes_budget
                .clone()
                .acquire_many_owned(needed as u32)
                .await
                .ok()?;
            Some((r, b))
        }
        .await;
        let Some(permits) = permits else {
            return Err(PutError::ShutDown {
                record: Box::new(user_record.into_producer_record()),
            });
        };
        self.submit(user_record, permits)
    }

    /// Like [`put`](Producer::put), but never waits: when the memory budget is spent it
    /// fails at once with [`PutError::BufferFull`] and hands the record back.
    ///
    /// # Errors
    /// As `put`, plus [`PutError::BufferFull`].
    pub fn try_put(&self, record: ProducerRecord) -> Result<PutHandle, PutError> {
        let (user_record, needed) = self.check(record)?;
        let inner = &self.inner;
        let permits = inner
            .records_budget
            .clone()
            .try_acquire_owned()
            .and_then(|r| {
                let b = inner
                    .bytes_budget
                    .clone()
                    .try_acquire_many_owned(needed as u32)?;
                Ok((r, b))
            });
        let permits = match permits {
            Ok(p) => p,
            Err(TryAcquireError::NoPermits) => {
                return Err(PutError::BufferFull {
                    record: Box::new(user_record.into_producer_record()),
                })
            }
            Err(TryAcquireError::Closed) => {
                return Err(PutError::ShutDown {
                    record: Box::new(user_record.into_producer_record()),
                })
            }
        };
        self.submit(user_record, permits)
    }

    /// Hands a checked record with its budget to the pipeline (shared by `put` and
    /// `try_put`).
    fn submit(&self, record: Accepted, budget: Budget) -> Result<PutHandle, PutError> {
        let inner = &self.inner;
        let name = inner.stream_name(&record.stream);
        let (item, handle) = Item::accept(record, budget, name);
        match inner.commands.send(Command::Put(item)) {
            Ok(()) => {
                inner.stats.record_put(1);
                Ok(handle)
            }
            Err(mpsc::error::SendError(cmd)) => {
                let record = cmd.into_records().pop().expect("a Put carries its record");
                Err(PutError::ShutDown {
                    record: Box::new(record),
                })
            }
        }
    }

    /// Checks every record of a batch, then accepts them all at once, waiting while the
    /// memory budget is spent. Returns a handle that resolves, once every record is
    /// settled, to each record's outcome, in input order.
    ///
    /// The batch costs one budget acquisition, one message to the pipeline and one
    /// completion, instead of one of each per record as with [`put`](Producer::put); once
    /// accepted, its records travel like `put`'s (aggregated, collected and retried with
    /// the others, and settled one by one). An empty batch is accepted as is: its handle
    /// resolves at once to no outcomes.
    ///
    /// The budget is taken whole, in the order waiters arrived: a batch waits until the
    /// budget has room for all of it, and `put`s that arrive after it wait behind it. It
    /// is given back whole too, when the batch's last record is settled (one release per
    /// batch rather than one per record).
    ///
    /// # Errors
    /// All or nothing: on any error no record of the batch is accepted, and every one is
    /// handed back in input order. [`PutAllError::InvalidStreamName`] and
    /// [`PutAllError::InvalidRecord`] name the first bad record's index and what is wrong
    /// with it (the checks of [`put`](Producer::put)); [`PutAllError::LargerThanBudget`]
    /// when the batch alone has more records than `max_outstanding_records` or needs more
    /// bytes than `max_outstanding_bytes` (data, keys and
    /// [`RECORD_OVERHEAD_BYTES`] per record); [`PutAllError::ShutDown`].
    ///
    /// # Cancellation
    /// If the future is dropped while it waits for budget, no record of the batch was
    /// accepted, nothing is sent, and the records are dropped with the future (to have
    /// them back, keep a copy: a `ProducerRecord` clones cheaply, its data is `Bytes`).
    /// Once it returns `Ok`, the records are the producer's and will each be settled
    /// whether or not the handle is awaited.
    pub async fn put_all(
        &self,
        records: impl IntoIterator<Item = ProducerRecord>,
    ) -> Result<BatchHandle, PutAllError> {
        let inner = &self.inner;
        let mut records = records.into_iter();
        if inner.closed.load(Ordering::Acquire) {
            return Err(PutAllError::ShutDown {
                records: records.collect(),
            });
        }
        let mut checked = Vec::with_capacity(records.size_hint().0);
        let mut bytes = 0usize;
        while let Some(record) = records.next() {
            match record.check(inner.max_record_size) {
                Ok(c) => {
                    bytes += c.size + RECORD_OVERHEAD_BYTES;
                    checked.push(c);
                }
                Err(e) => {
                    let index = checked.len();
                    let mut back: Vec<ProducerRecord> =
                        checked.into_iter().map(|c| c.record).collect();
                    back.extend(records);
                    return Err(PutAllError::of_record(index, e, back));
                }
            }
        }
        let n = checked.len();
        if n > inner.max_outstanding_records || bytes > inner.max_outstanding_bytes {
            return Err(PutAllError::LargerThanBudget {
                records: checked.into_iter().map(|c| c.record).collect(),
                needed_records: n,
                needed_bytes: bytes,
                record_budget: inner.max_outstanding_records,
                byte_budget: inner.max_outstanding_bytes,
            });
        }
        if n == 0 {
            return Ok(BatchHandle::new(0, Vec::new(), None));
        }
        let permits = async {
            let r = acquire_many(&inner.records_budget, n).await?;
            let b = acquire_many(&inner.bytes_budget, bytes).await?;
            Some((r, b))
        }
        .await;
        let Some(budget) = permits else {
            return Err(PutAllError::ShutDown {
                records: checked.into_iter().map(|c| c.record).collect(),
            });
        };
        // Consecutive records mostly share a stream: the batch keeps one name per run, its
        // own (the records' outcomes share it, not the producer's copy every other batch
        // and the pipeline also count references to).
        let mut runs: Vec<(usize, Arc<str>)> = Vec::new();
        for (i, c) in checked.iter().enumerate() {
            match runs.last_mut() {
                Some((end, last)) if **last == *c.record.stream => *end = i + 1,
                _ => runs.push((i + 1, Arc::from(c.record.stream.as_str()))),
            }
        }
        // The batch holds its budget whole, released when its last record settles.
        let handle = BatchHandle::new(n, runs.clone(), Some(budget));
        let put_at = tokio::time::Instant::now();
        let mut items: Vec<Item> = Vec::with_capacity(n);
        let mut checked = checked.into_iter();
        let mut start = 0;
        for (end, name) in runs {
            for (index, c) in (start..end).zip(checked.by_ref()) {
                let slot = handle.slot(index);
                items.push(Item::in_batch(c.accept(), name.clone(), slot, put_at));
            }
            start = end;
        }
        match inner.commands.send(Command::PutAll(items)) {
            Ok(()) => {
                inner.stats.record_put(n as u64);
                Ok(handle)
            }
            Err(mpsc::error::SendError(cmd)) => Err(PutAllError::ShutDown {
                records: cmd.into_records(),
            }),
        }
    }

    /// A [`Sink`](futures_sink::Sink) of records batched into [`put_all`](Producer::put_all),
    /// with default settings, and the stream of its records' outcomes, in the order sent
    /// (see [`RecordSink`](crate::RecordSink)).
    pub fn sink(&self) -> (crate::RecordSink, crate::SinkOutcomes) {
        self.sink_builder()
            .build()
            .expect("the defaults fit any producer's budget")
    }

    /// A builder for a [`sink`](Producer::sink) with other settings.
    pub fn sink_builder(&self) -> crate::SinkBuilder {
        crate::SinkBuilder::new(self.clone())
    }

    /// The memory budget: (`max_outstanding_records`, `max_outstanding_bytes`).
    pub(crate) fn budget(&self) -> (usize, usize) {
        (
            self.inner.max_outstanding_records,
            self.inner.max_outstanding_bytes,
        )
    }

    /// The checks of `put` without accepting: the record, unchanged, and its charge to the
    /// byte budget (data, key and [`RECORD_OVERHEAD_BYTES`]).
    pub(crate) fn check_only(
        &self,
        record: ProducerRecord,
    ) -> Result<(ProducerRecord, usize), PutError> {
        let (checked, needed) = self.checked(record)?;
        Ok((checked.record, needed))
    }

    /// Validation shared by `put` and `try_put`: the record's own checks, then whether
    /// its charge (data, key and [`RECORD_OVERHEAD_BYTES`]) fits the budget at all.
    fn check(&self, record: ProducerRecord) -> Result<(Accepted, usize), PutError> {
        let (checked, needed) = self.checked(record)?;
        Ok((checked.accept(), needed))
    }

    /// The checks of `put`, `try_put` and `check_only`: refused once shut down, the
    /// record's own checks, then whether its charge fits the budget at all.
    fn checked(&self, record: ProducerRecord) -> Result<(Checked, usize), PutError> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(PutError::ShutDown {
                record: Box::new(record),
            });
        }
        let checked = record.check(inner.max_record_size)?;
        let needed = checked.size + RECORD_OVERHEAD_BYTES;
        if needed > inner.max_outstanding_bytes {
            return Err(PutError::LargerThanBudget {
                record: Box::new(checked.record),
                needed,
                budget: inner.max_outstanding_bytes,
            });
        }
        Ok((checked, needed))
    }

    /// Sends everything buffered now, without waiting for `max_buffered_time`, and
    /// resolves when every record accepted before the call is settled (delivered or
    /// failed). Records put meanwhile are not waited for.
    ///
    /// # Cancellation
    /// Dropping the future stops the waiting only; the flush itself goes on.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.commands.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Refuses new records, delivers (or fails) every record already accepted, and stops
    /// the background task. Idempotent; affects every clone.
    ///
    /// # Cancellation
    /// Dropping the future stops the waiting only; the shutdown goes on in the background.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let _ = self.inner.commands.send(Command::Shutdown);
        let task = self.inner.task.lock().await.take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.inner.records_budget.close();
        self.inner.bytes_budget.close();
    }

    /// The producer's counters since it was built.
    pub fn stats(&self) -> ProducerStats {
        self.inner.stats.snapshot()
    }

    /// Subscribes to reports of failed calls to Kinesis, as they happen: one
    /// [`CallFailure`] per failed `PutRecords` or `ListShards` call, and, for a
    /// `PutRecords` call that succeeded with some records refused, one per distinct error
    /// code in it (not one per record). The failed records themselves are retried or
    /// fail as usual; a report is how an application learns the cause at once (e.g. an
    /// unreachable endpoint or missing credentials) instead of when records' TTLs run out.
    ///
    /// Only reports sent after the call are received. The channel holds
    /// [`FAILURE_REPORTS_CAPACITY`] (1,024) reports: a subscriber that falls further behind
    /// gets [`RecvError::Lagged`](broadcast::error::RecvError::Lagged) with the number it
    /// missed, then the oldest reports still held; the producer never waits for a
    /// subscriber. With no subscriber no report is built. The channel closes
    /// ([`RecvError::Closed`](broadcast::error::RecvError::Closed), after the reports
    /// still held) when the producer's background task ends: after
    /// [`shutdown`](Producer::shutdown), or after the last clone is dropped and its records
    /// are settled.
    ///
    /// A call is reported when the SDK client gives up on it: a client in the SDK's
    /// standard retry mode (three attempts, with backoff) reports a refused connection
    /// after its own retries, about two seconds later. The producer retries failed records
    /// itself, so a client built with fewer attempts (e.g.
    /// `aws_sdk_kinesis::config::retry::RetryConfig::disabled()`) loses nothing and
    /// reports sooner.
    ///
    /// # Usage
    /// ```no_run
    /// # async fn demo(producer: kinesis_producer::Producer) {
    /// use tokio::sync::broadcast::error::RecvError;
    ///
    /// let mut failures = producer.failures();
    /// tokio::spawn(async move {
    ///     loop {
    ///         match failures.recv().await {
    ///             Ok(f) if !f.throttled => eprintln!(
    ///                 "{} to {} failed: {}: {} ({} records, {})",
    ///                 f.operation,
    ///                 f.stream,
    ///                 f.code,
    ///                 f.message,
    ///                 f.records,
    ///                 if f.retryable { "retrying" } else { "failed" },
    ///             ),
    ///             Ok(_) => {}
    ///             Err(RecvError::Lagged(missed)) => eprintln!("{missed} reports missed"),
    ///             Err(RecvError::Closed) => break,
    ///         }
    ///     }
    /// });
    /// # }
    /// ```
    pub fn failures(&self) -> broadcast::Receiver<CallFailure> {
        match self.inner.failures.upgrade() {
            Some(sender) => sender.subscribe(),
            None => {
                // The pipeline is gone: a receiver that reports the channel closed.
                let (_, closed) = broadcast::channel(1);
                closed
            }
        }
    }
}

/// `n` permits of `semaphore` (more than a `u32` can say taken in parts), or `None` once it
/// is closed (shutdown).
async fn acquire_many(semaphore: &Arc<Semaphore>, n: usize) -> Option<OwnedSemaphorePermit> {
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut left = n;
    while left > 0 {
        let part = left.min(u32::MAX as usize);
        let permit = semaphore
            .clone()
            .acquire_many_owned(part as u32)
            .await
            .ok()?;
        match &mut held {
            Some(h) => h.merge(permit),
            None => held = Some(permit),
        }
        left -= part;
    }
    held
}
