//! A [`futures_sink::Sink`] of records for services that produce from a stream: records
//! sent into the [`RecordSink`] are batched into [`Producer::put_all`], and every record's
//! one outcome comes out of the [`SinkOutcomes`] stream, in the order the records were sent.
//!
//! ```text
//!  start_send(record) ─▶ check (typed error, record inside) ─▶ buffer
//!                                   │ batch_records or batch_bytes reached, or flush/close
//!                                   ▼
//!                          put_all (one at a time; poll_ready waits for it: budget backpressure)
//!                                   │ BatchHandle
//!                                   ▼
//!  Shared { pending: [BatchHandle …] ─(resolved, polled by either side)─▶ ready: [Outcome …] }
//!                                                                              │
//!  SinkOutcomes (Stream<Item = Outcome>) ◀─────────────────────────────────────┘
//! ```
//!
//! Nothing is lost silently: a record the sink refuses comes back inside the error
//! ([`SinkError::Record`] at `start_send`, [`SinkError::Batch`] when the producer
//! refused a whole batch, e.g. because it was shut down); a record the producer accepted
//! ends in exactly one outcome on the outcomes stream. If the outcomes stream is dropped,
//! the outcomes are dropped with it (the producer's [`stats`](Producer::stats),
//! [`failures`](Producer::failures) reports and logs still tell of failures), which is
//! the way to say they are not wanted.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures_core::Stream;
use futures_sink::Sink;

use crate::error::{ConfigError, PutAllError, PutError};
use crate::outcome::Outcome;
use crate::producer::Producer;
use crate::put_all::BatchHandle;
use crate::record::ProducerRecord;

/// Default most records per `put_all` batch of a sink (`PutRecords`' own limit).
pub const DEFAULT_SINK_BATCH_RECORDS: usize = 500;
/// Default most budget bytes (data, key and [`RECORD_OVERHEAD_BYTES`](crate::RECORD_OVERHEAD_BYTES) per record) per
/// batch of a sink: 5 MiB, or a quarter of the producer's byte budget if that is smaller.
pub const DEFAULT_SINK_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Default most outcomes held for the outcomes stream before the sink stops taking
/// records.
pub const DEFAULT_SINK_OUTCOME_CAPACITY: usize = 10_000;

type PutAllFuture = Pin<Box<dyn Future<Output = Result<BatchHandle, PutAllError>> + Send>>;
type FlushFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why the sink did not take a record or a batch. Every record it did not take is inside.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// `start_send` refused one record: invalid, larger than the producer's whole budget,
    /// or the producer is shut down (the errors of [`Producer::put`], record inside). The
    /// sink stays usable.
    #[error("record refused: {0}")]
    Record(#[source] PutError),
    /// The producer refused a whole batch (all or nothing, see [`Producer::put_all`]): in
    /// practice because it was shut down meanwhile. Its records are inside, in the order
    /// sent.
    #[error("batch refused: {0}")]
    Batch(#[source] PutAllError),
    /// The sink was closed: no more records.
    #[error("the sink is closed")]
    Closed,
}

/// Builds a [`RecordSink`] and its [`SinkOutcomes`]; from [`Producer::sink_builder`].
#[derive(Debug)]
#[must_use = "call build() to get the sink"]
pub struct SinkBuilder {
    /// The producer the batches go to.
    producer: Producer,
    /// See [`SinkBuilder::with_batch_records`].
    batch_records: usize,
    /// See [`SinkBuilder::with_batch_bytes`].
    batch_bytes: usize,
    /// See [`SinkBuilder::with_outcome_capacity`].
    outcome_capacity: usize,
}

impl SinkBuilder {
    pub(crate) fn new(producer: Producer) -> Self {
        let (records, bytes) = producer.budget();
        SinkBuilder {
            producer,
            batch_records: DEFAULT_SINK_BATCH_RECORDS.min(records),
            batch_bytes: DEFAULT_SINK_BATCH_BYTES.min(bytes / 4).max(1),
            outcome_capacity: DEFAULT_SINK_OUTCOME_CAPACITY,
        }
    }

    /// Most records per `put_all` batch. Default [`DEFAULT_SINK_BATCH_RECORDS`] (500), or
    /// the producer's `max_outstanding_records` if smaller; allowed 1 ..= that budget.
    pub fn with_batch_records(mut self, records: usize) -> Self {
        self.batch_records = records;
        self
    }

    /// Most budget bytes (data, partition key and [`RECORD_OVERHEAD_BYTES`](crate::RECORD_OVERHEAD_BYTES) per record)
    /// per batch; a record that would take a batch past it starts the next one. Default
    /// [`DEFAULT_SINK_BATCH_BYTES`] (5 MiB), or a quarter of the producer's
    /// `max_outstanding_bytes` if smaller; allowed 1 ..= half that budget (so that any
    /// record fitting the budget fits a batch with another).
    pub fn with_batch_bytes(mut self, bytes: usize) -> Self {
        self.batch_bytes = bytes;
        self
    }

    /// Most outcomes held for the outcomes stream: when that many wait to be read, the
    /// sink takes no more records until some are (flushing still completes). Default
    /// [`DEFAULT_SINK_OUTCOME_CAPACITY`] (10,000); at least 1.
    pub fn with_outcome_capacity(mut self, outcomes: usize) -> Self {
        self.outcome_capacity = outcomes;
        self
    }

    /// The sink and the stream of its records' outcomes.
    ///
    /// # Errors
    /// [`ConfigError`] naming the setting outside its range.
    pub fn build(self) -> Result<(RecordSink, SinkOutcomes), ConfigError> {
        let (records, bytes) = self.producer.budget();
        if self.batch_records == 0 || self.batch_records > records {
            return Err(ConfigError {
                setting: "sink batch_records",
                value: self.batch_records.to_string(),
                reason: "must be within 1 ..= the producer's max_outstanding_records",
            });
        }
        if self.batch_bytes == 0 || self.batch_bytes > (bytes / 2).max(1) {
            return Err(ConfigError {
                setting: "sink batch_bytes",
                value: self.batch_bytes.to_string(),
                reason: "must be within 1 ..= half the producer's max_outstanding_bytes",
            });
        }
        if self.outcome_capacity == 0 {
            return Err(ConfigError {
                setting: "sink outcome_capacity",
                value: "0".to_owned(),
                reason: "must be at least 1",
            });
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: VecDeque::new(),
                ready: VecDeque::new(),
                receiver_alive: true,
                sink_done: false,
                detached: 0,
            }),
            wakers: Arc::new(Wakers::default()),
        });
        let sink = RecordSink {
            producer: self.producer,
            buffer: Vec::new(),
            buffer_bytes: 0,
            batch_records: self.batch_records,
            batch_bytes: self.batch_bytes,
            outcome_capacity: self.outcome_capacity,
            putting: None,
            flushing: None,
            shared: shared.clone(),
            closed: false,
        };
        Ok((sink, SinkOutcomes { shared }))
    }
}

/// A [`Sink`] of [`ProducerRecord`]s that batches them into [`Producer::put_all`]; each
/// record's outcome comes out of its [`SinkOutcomes`], in the order sent.
///
/// - `poll_ready`: ready when the sink can buffer one more record: the batch under way
///   (if any) has been accepted by the producer (waiting while its memory budget is
///   spent), and fewer than `outcome_capacity` outcomes wait to be read.
/// - `start_send`: checks the record as [`Producer::put`] does (typed error
///   [`SinkError::Record`], record inside; the sink stays usable) and buffers it; a full
///   batch is handed to `put_all`.
/// - `poll_flush`: resolves once every record sent so far has its outcome (delivered or
///   failed; waiting on the outcomes stream to be read), sending buffered records at once
///   (it calls [`Producer::flush`], which hurries every record of the producer).
/// - `poll_close`: flushes, then refuses more records ([`SinkError::Closed`]); the
///   outcomes stream ends after the last outcome. The producer itself is not shut down.
///
/// Dropped without `poll_close`, records buffered or in a batch under way are still put by
/// a background task (on the current tokio runtime) and their outcomes still come out of
/// the outcomes stream; only if the producer refuses them then (shut down) are they lost,
/// with an error logged.
#[must_use = "a sink does nothing unless records are sent into it"]
pub struct RecordSink {
    /// The producer the batches go to.
    producer: Producer,
    /// Records taken by `start_send`, not yet handed to `put_all`.
    buffer: Vec<ProducerRecord>,
    /// Budget bytes of `buffer`: what decides when a batch is full by size.
    buffer_bytes: usize,
    /// Most records per batch.
    batch_records: usize,
    /// Most budget bytes per batch.
    batch_bytes: usize,
    /// Outcomes waiting to be read beyond which `poll_ready` waits.
    outcome_capacity: usize,
    /// The `put_all` under way: one at a time, so batches are accepted in order.
    putting: Option<PutAllFuture>,
    /// The `Producer::flush` of a `poll_flush` under way.
    flushing: Option<FlushFuture>,
    /// What the sink and the outcomes stream share.
    shared: Arc<Shared>,
    /// `poll_close` completed.
    closed: bool,
}

impl std::fmt::Debug for RecordSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSink")
            .field("buffered", &self.buffer.len())
            .field("putting", &self.putting.is_some())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl RecordSink {
    /// Hands the buffer to `put_all` (the caller made sure no batch is under way).
    fn start_batch(&mut self) {
        debug_assert!(self.putting.is_none());
        if self.buffer.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.buffer);
        self.buffer_bytes = 0;
        let producer = self.producer.clone();
        self.putting = Some(Box::pin(async move { producer.put_all(records).await }));
    }

    /// Drives the batch under way: ready once it is accepted (its handle queued) or
    /// refused.
    fn poll_putting(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        let Some(fut) = self.putting.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = match fut.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        self.putting = None;
        match result {
            Ok(handle) => {
                self.shared.lock().pending.push_back(handle);
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(SinkError::Batch(e))),
        }
    }

    /// Ready when no batch is under way and the buffer is empty (starting batches).
    fn poll_send_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        loop {
            std::task::ready!(self.poll_putting(cx))?;
            if self.buffer.is_empty() {
                return Poll::Ready(Ok(()));
            }
            self.start_batch();
        }
    }
}

impl Sink<ProducerRecord> for RecordSink {
    type Error = SinkError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Err(SinkError::Closed));
        }
        loop {
            std::task::ready!(this.poll_putting(cx))?;
            if this.buffer.len() < this.batch_records {
                break;
            }
            this.start_batch();
        }
        // Registered first: a batch resolving or an outcome read from now on wakes us.
        this.shared.wakers.set_sink(cx.waker());
        let mut state = this.shared.lock();
        this.shared.drain(&mut state);
        if state.receiver_alive && state.ready.len() >= this.outcome_capacity {
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, record: ProducerRecord) -> Result<(), SinkError> {
        let this = self.get_mut();
        if this.closed {
            return Err(SinkError::Closed);
        }
        let (record, charge) = this
            .producer
            .check_only(record)
            .map_err(SinkError::Record)?;
        if !this.buffer.is_empty()
            && this.buffer_bytes + charge > this.batch_bytes
            && this.putting.is_none()
        {
            this.start_batch();
        }
        this.buffer.push(record);
        this.buffer_bytes += charge;
        if this.putting.is_none()
            && (this.buffer.len() >= this.batch_records || this.buffer_bytes >= this.batch_bytes)
        {
            this.start_batch();
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_send_all(cx))?;
        // Registered first: a batch resolving from now on wakes us.
        this.shared.wakers.set_sink(cx.waker());
        {
            let mut state = this.shared.lock();
            this.shared.drain(&mut state);
            if state.pending.is_empty() {
                this.flushing = None;
                return Poll::Ready(Ok(()));
            }
        }
        // Hurry the records along rather than let them linger. Once the producer's flush
        // answers, every record put before it is settled and the batches resolve (and
        // wake us through the waker above).
        let producer = &this.producer;
        let fut = this.flushing.get_or_insert_with(|| {
            let producer = producer.clone();
            Box::pin(async move { producer.flush().await })
        });
        if fut.as_mut().poll(cx).is_ready() {
            this.flushing = None;
            let mut state = this.shared.lock();
            this.shared.drain(&mut state);
            if state.pending.is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
        Poll::Pending
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        let this = self.get_mut();
        if !this.closed {
            std::task::ready!(Pin::new(&mut *this).poll_flush(cx))?;
            this.closed = true;
            this.shared.lock().sink_done = true;
            this.shared.wakers.wake_stream();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for RecordSink {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let putting = self.putting.take();
        let buffer = std::mem::take(&mut self.buffer);
        let shared = self.shared.clone();
        if putting.is_none() && buffer.is_empty() {
            shared.lock().sink_done = true;
            shared.wakers.wake_stream();
            return;
        }
        let count = buffer.len();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(
                buffered = count,
                batch_under_way = putting.is_some(),
                "RecordSink dropped outside a tokio runtime with records not yet put: they are lost"
            );
            shared.lock().sink_done = true;
            shared.wakers.wake_stream();
            return;
        };
        {
            let mut state = shared.lock();
            state.detached += 1;
            state.sink_done = true;
        }
        let producer = self.producer.clone();
        runtime.spawn(async move {
            let mut handles = Vec::new();
            if let Some(fut) = putting {
                match fut.await {
                    Ok(h) => handles.push(h),
                    Err(e) => tracing::error!(
                        records = e.records().len(),
                        error = %e,
                        "records of a dropped RecordSink refused by the producer: they are lost"
                    ),
                }
            }
            if !buffer.is_empty() {
                match producer.put_all(buffer).await {
                    Ok(h) => handles.push(h),
                    Err(e) => tracing::error!(
                        records = e.records().len(),
                        error = %e,
                        "records of a dropped RecordSink refused by the producer: they are lost"
                    ),
                }
            }
            let mut state = shared.lock();
            state.pending.extend(handles);
            state.detached -= 1;
            drop(state);
            shared.wakers.wake_stream();
        });
    }
}

/// The outcomes of the records sent into a [`RecordSink`], one per record, in the order
/// sent. Ends once the sink is closed (or dropped) and every outcome was yielded.
///
/// Dropping it drops the outcomes not yet read and those to come (failed records are
/// still counted in [`Producer::stats`] and logged at `debug` level by the producer).
#[must_use = "streams do nothing unless polled"]
pub struct SinkOutcomes {
    /// What the sink and the outcomes stream share.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SinkOutcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkOutcomes").finish_non_exhaustive()
    }
}

impl Stream for SinkOutcomes {
    type Item = Outcome;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Outcome>> {
        let shared = &self.shared;
        // Registered first: a batch resolving from now on wakes us.
        shared.wakers.set_stream(cx.waker());
        let mut state = shared.lock();
        shared.drain(&mut state);
        if let Some(outcome) = state.ready.pop_front() {
            drop(state);
            // A sink waiting for room in `ready` may go on.
            shared.wakers.wake_sink();
            return Poll::Ready(Some(outcome));
        }
        if state.sink_done && state.pending.is_empty() && state.detached == 0 {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

impl Drop for SinkOutcomes {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        state.ready.clear();
        drop(state);
        self.shared.wakers.wake_sink();
    }
}

/// What a sink and its outcomes stream share.
struct Shared {
    /// The batches and outcomes, under one lock (taken once per poll, not per record).
    state: Mutex<State>,
    /// Whoever waits: the batch handles are polled with a waker that wakes both.
    wakers: Arc<Wakers>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the outcomes of resolved batches, oldest first, to `ready` (dropped if the
    /// outcomes stream is gone); stops at the first unresolved batch.
    fn drain(&self, state: &mut State) {
        let waker = Waker::from(self.wakers.clone());
        let mut cx = Context::from_waker(&waker);
        while let Some(front) = state.pending.front_mut() {
            match Pin::new(front).poll(&mut cx) {
                Poll::Ready(outcomes) => {
                    state.pending.pop_front();
                    if state.receiver_alive {
                        state.ready.extend(outcomes);
                    }
                }
                Poll::Pending => break,
            }
        }
    }
}

/// The sink's and the stream's state, shared.
struct State {
    /// Batches accepted by the producer, oldest first, not resolved yet.
    pending: VecDeque<BatchHandle>,
    /// Outcomes of resolved batches not read yet, in the order sent.
    ready: VecDeque<Outcome>,
    /// The outcomes stream still exists (else outcomes are dropped as they resolve).
    receiver_alive: bool,
    /// The sink was closed or dropped: the stream ends after `pending` and `ready`.
    sink_done: bool,
    /// Background tasks still putting a dropped sink's records: the stream waits for them.
    detached: usize,
}

/// The wakers of a sink and its outcomes stream: a batch handle resolving wakes both.
#[derive(Default)]
struct Wakers {
    /// The sink's task, waiting in `poll_ready` or `poll_flush`.
    sink: Mutex<Option<Waker>>,
    /// The outcomes stream's task.
    stream: Mutex<Option<Waker>>,
}

impl Wakers {
    fn set(slot: &Mutex<Option<Waker>>, waker: &Waker) {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *slot {
            Some(w) => w.clone_from(waker),
            None => *slot = Some(waker.clone()),
        }
    }

    fn take(slot: &Mutex<Option<Waker>>) -> Option<Waker> {
        slot.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn set_sink(&self, waker: &Waker) {
        Self::set(&self.sink, waker);
    }

    fn set_stream(&self, waker: &Waker) {
        Self::set(&self.stream, waker);
    }

    fn wake_sink(&self) {
        if let Some(w) = Self::take(&self.sink) {
            w.wake();
        }
    }

    fn wake_stream(&self) {
        if let Some(w) = Self::take(&self.stream) {
            w.wake();
        }
    }
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_sink();
        self.wake_stream();
    }
}
