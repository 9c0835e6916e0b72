//! The background pipeline: one task that owns every buffer, and short-lived tasks for
//! the `PutRecords` calls.
//!
//! ```text
//!  put ─▶ Command::Put ─▶ stream ─▶ shard queue (predicted by the shard map, FIFO)
//!                                      │ due: linger over, flush, or a full aggregate
//!                                      │ not in backoff, rate limiter has tokens,
//!                                      │ (ordered: nothing of this shard in flight)
//!                                      ▼
//!                         Aggregator ─▶ Kinesis records ─▶ batch (≤ 500 records, ≤ 5 MiB)
//!                                                              │ ≤ max_concurrent_requests
//!                                                              ▼
//!                                                      PutRecords task ─▶ Event::CallDone
//!  per Kinesis record result:
//!    ok    ─▶ every user record in the shard's range: Delivered(shard, seq, sub-seq)
//!             an aggregate holding any record outside it (stale shard map, reshard):
//!             reload map, re-queue EVERY record of it (readers that follow the Java KCL
//!             discard such an aggregate whole); shard not in the map: judged on the next
//!    error ─▶ back to the head of its shard queue, shard backs off (jittered, exponential)
//!             TTL over ─▶ Failed(Expired); fail_if_throttled ─▶ Failed(Throttled)
//!  whole-call error: classified (failure.rs) ─▶ retry as above, or Failed(Rejected);
//!    stream-level (no such stream, access, credentials, KMS) ─▶ also every record of
//!    the stream still queued here: Failed(Rejected) at once
//!  every failed call (and each distinct per-record error code of a call) ─▶ one
//!    CallFailure report on the failures broadcast; warn! on a stream's first failure
//!    after a success, info! when its calls succeed again
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, PutRecordsResultEntry};
use aws_sdk_kinesis::Client;
use aws_smithy_types::Blob;
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use kinesis_agg::{
    Aggregator, HashKey, HashKeyRange, KinesisRecord, UserRecord, WHOLE_RESEND_PARTITION_KEY,
};
use smallvec::SmallVec;
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Config, SHARD_BYTES_PER_SEC, SHARD_RECORDS_PER_SEC};
use crate::error::FailureReason;
use crate::failure::{
    classify, is_throttling_code, shorten, CallError, CallFailure, REQUEST_TIMEOUT,
};
use crate::metric_names as m;
use crate::outcome::{Attempt, Delivered, Failed, Outcome};
use crate::rate_limit::ShardLimiter;
use crate::record::ProducerRecord;
use crate::shard_map::ShardMap;
use crate::stats::Stats;

/// Error code recorded in an [`Attempt`] when an aggregate landed in a shard that does
/// not own every user record of it, and all of them are sent again.
pub(crate) const WRONG_SHARD: &str = "WrongShardAfterReshard";

/// Error code given to an HTTP 413 answer (request body larger than the endpoint takes).
pub(crate) const REQUEST_TOO_LARGE: &str = "RequestEntityTooLarge";

/// Most commands handled between two dispatch rounds.
const COMMANDS_PER_ROUND: usize = 1024;

/// What the `Producer` handle asks of the pipeline.
// `Put` is nearly every message: boxing it would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Command {
    /// A new user record.
    Put(Item),
    /// Send everything now; answer when everything accepted so far is settled.
    Flush(oneshot::Sender<()>),
    /// Flush, then stop.
    Shutdown,
}

impl Command {
    /// The record inside a `Put` that could not be queued.
    pub(crate) fn into_record(self) -> ProducerRecord {
        match self {
            Command::Put(item) => to_producer_record(&*item.stream, item.record),
            _ => unreachable!("only Put commands carry records"),
        }
    }
}

/// A user record inside the pipeline, until it is settled.
#[derive(Debug)]
pub(crate) struct Item {
    /// Stream name (the producer's shared copy: the user's `String` is dropped by `put`,
    /// on the caller's thread, rather than here).
    pub(crate) stream: Arc<str>,
    /// The validated record.
    pub(crate) record: UserRecord,
    /// Its hash key, computed once by `put` (off the pipeline task).
    pub(crate) hash_key: HashKey,
    /// Where the outcome goes; settled exactly once.
    pub(crate) tx: oneshot::Sender<Outcome>,
    /// When it was accepted: linger and TTL count from here.
    pub(crate) put_at: Instant,
    /// Failed attempts so far.
    pub(crate) attempts: Vec<Attempt>,
    /// `PutRecords` calls that carried it.
    pub(crate) calls: u32,
    /// Arrival order across the producer, to keep order when queues are rebuilt.
    pub(crate) seq: u64,
    /// Flush epoch it arrived in.
    pub(crate) epoch: u64,
    /// Its share of the memory budget (records, bytes): released at the end of the
    /// pipeline round that settles it, or when it is dropped.
    pub(crate) budget: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

impl Item {
    fn size(&self) -> usize {
        self.record.size()
    }
}

/// Rebuilds the user's record from the pipeline's parts (handed back on failure).
pub(crate) fn to_producer_record(stream: impl Into<String>, record: UserRecord) -> ProducerRecord {
    let (partition_key, explicit_hash_key, data) = record.into_parts();
    ProducerRecord {
        stream: stream.into(),
        partition_key,
        explicit_hash_key: explicit_hash_key.map(|h| h.to_string()),
        data,
    }
}

/// Hash maps of the hot path: foldhash, not SipHash (keys are ours, not an attacker's).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Which queue of a stream a record waits in: a predicted shard, or `None` while the
/// shard map is unknown (then records are sent unaggregated, routed by Kinesis itself).
type ShardKey = Option<Arc<str>>;

/// One Kinesis record of a batch, with the user records it carries.
#[derive(Debug)]
struct Entry {
    /// The queue its user records came from (and go back to on failure).
    predicted: ShardKey,
    /// The user records, in sub-sequence order (inline when there is one).
    items: SmallVec<[Item; 1]>,
    /// Explicit hash key it is sent with: a lone user record's own, or an aggregate's
    /// first user record's hash key.
    explicit_hash_key: Option<HashKey>,
    /// The bytes sent.
    data: bytes::Bytes,
}

impl Entry {
    /// The partition key it is sent with: a lone user record's own; for an aggregate of
    /// several, [`WHOLE_RESEND_PARTITION_KEY`] (routed by the explicit hash key), so that
    /// no user key can make Kinesis refuse the records packed with it (a 256-character
    /// key is up to 1,024 bytes, and some servers count bytes), and readers know that an
    /// aggregate landing in the wrong shard is re-sent whole.
    fn partition_key(&self) -> &str {
        if self.items.len() > 1 {
            WHOLE_RESEND_PARTITION_KEY
        } else {
            self.items[0].record.partition_key()
        }
    }

    fn size(&self) -> usize {
        self.data.len() + self.partition_key().len()
    }
}

/// The operation names in failure reports and logs.
const PUT_RECORDS: &str = "PutRecords";
const LIST_SHARDS: &str = "ListShards";

/// What a `PutRecords` call returned.
#[derive(Debug)]
enum CallResult {
    /// Per-record results, in request order.
    Ok(Vec<PutRecordsResultEntry>),
    /// The whole call failed.
    Failed(CallError),
}

/// Messages from the tasks the pipeline spawns.
#[derive(Debug)]
enum Event {
    CallDone {
        stream: Arc<str>,
        entries: Vec<Entry>,
        result: CallResult,
    },
    ShardMap {
        stream: Arc<str>,
        result: Result<ShardMap, CallError>,
    },
}

/// A shard's queue and its sending state.
#[derive(Debug)]
struct ShardQueue {
    /// Waiting user records, oldest first (retries go back to the front).
    records: VecDeque<Item>,
    /// Sum of their sizes, to know when a full aggregate is waiting.
    queued_bytes: usize,
    /// Kinesis records of this shard in calls not yet answered.
    in_flight: usize,
    /// No sends before this instant (set after a failure).
    backoff_until: Option<Instant>,
    /// The backoff sequence since the last success.
    backoff: Option<ExponentialBackoff>,
    /// No sends before this instant (rate limiter).
    rate_wait_until: Option<Instant>,
    /// Records/s and bytes/s buckets.
    limiter: ShardLimiter,
}

impl ShardQueue {
    fn new(config: &Config, now: Instant) -> Self {
        let pct = f64::from(config.rate_limit_percent) / 100.0;
        ShardQueue {
            records: VecDeque::new(),
            queued_bytes: 0,
            in_flight: 0,
            backoff_until: None,
            backoff: None,
            rate_wait_until: None,
            limiter: ShardLimiter::new(SHARD_RECORDS_PER_SEC * pct, SHARD_BYTES_PER_SEC * pct, now),
        }
    }

    fn push_back(&mut self, item: Item) {
        self.queued_bytes += item.size();
        self.records.push_back(item);
    }

    fn push_front(&mut self, item: Item) {
        self.queued_bytes += item.size();
        self.records.push_front(item);
    }

    fn pop_front(&mut self) -> Option<Item> {
        let item = self.records.pop_front()?;
        self.queued_bytes -= item.size();
        Some(item)
    }

    /// The earliest instant this queue could send, ignoring linger.
    fn blocked_until(&self) -> Option<Instant> {
        match (self.backoff_until, self.rate_wait_until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Per-stream state.
#[derive(Debug)]
struct StreamState {
    /// The stream's name, shared with outcomes.
    name: Arc<str>,
    /// The last shard map loaded, if any.
    map: Option<Arc<ShardMap>>,
    /// The last load's error, while there is no map.
    map_error: Option<CallError>,
    /// A load is under way.
    refreshing: bool,
    /// When to load the map again.
    next_refresh: Instant,
    /// The queues, by predicted shard.
    shards: FastMap<ShardKey, ShardQueue>,
    /// Records to re-route once a fresh map is in (they landed in the wrong shard).
    parked: Vec<Item>,
    /// Aggregates delivered into a shard the map does not know yet: judged on the next map.
    unverified: Vec<Unverified>,
    /// `PutRecords` calls failed (throttling aside) since the last one that delivered.
    put_failures: Streak,
    /// `ListShards` calls failed since the last one that loaded a map.
    list_failures: Streak,
}

/// An aggregate Kinesis accepted into a shard whose hash key range the shard map does not
/// know yet: its user records are delivered together once the range shows that the shard
/// owns every one of them, and re-sent together otherwise.
#[derive(Debug)]
struct Unverified {
    /// The shard it landed in.
    shard_id: Arc<str>,
    /// Its sequence number.
    sequence_number: Arc<str>,
    /// Its user records, in sub-sequence order.
    items: SmallVec<[Item; 1]>,
}

impl Unverified {
    /// When the oldest of its records reaches its TTL.
    fn deadline(&self, ttl: Duration) -> Instant {
        let oldest = self.items.iter().map(|i| i.put_at).min();
        oldest.map_or_else(Instant::now, |t| t + ttl)
    }
}

/// Failed calls of one operation to one stream since it last succeeded, for the logs.
#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    /// Calls failed; 0 while the operation succeeds.
    calls: u64,
    /// User records in them.
    records: u64,
}

/// Handles to the metrics, resolved once (install a recorder before building the producer).
struct Metrics {
    put: metrics::Counter,
    delivered: metrics::Counter,
    failed: metrics::Counter,
    calls: metrics::Counter,
    kinesis_records: metrics::Counter,
    bytes: metrics::Counter,
    retries: metrics::Counter,
    throttles: metrics::Counter,
    buffered_time: metrics::Histogram,
    delivery_latency: metrics::Histogram,
}

impl Metrics {
    fn new() -> Self {
        Metrics {
            put: metrics::counter!(m::USER_RECORDS_PUT),
            delivered: metrics::counter!(m::USER_RECORDS_DELIVERED),
            failed: metrics::counter!(m::USER_RECORDS_FAILED),
            calls: metrics::counter!(m::PUT_RECORDS_CALLS),
            kinesis_records: metrics::counter!(m::KINESIS_RECORDS_SENT),
            bytes: metrics::counter!(m::BYTES_SENT),
            retries: metrics::counter!(m::RETRIES),
            throttles: metrics::counter!(m::THROTTLES),
            buffered_time: metrics::histogram!(m::BUFFERED_TIME_SECONDS),
            delivery_latency: metrics::histogram!(m::DELIVERY_LATENCY_SECONDS),
        }
    }
}

impl StreamState {
    /// Queues `item` at the back of the queue of the shard the map predicts for it.
    fn push_predicted(&mut self, item: Item, config: &Config, now: Instant) {
        let key = predict(self, item.hash_key);
        self.shards
            .entry(key)
            .or_insert_with(|| ShardQueue::new(config, now))
            .push_back(item);
    }
}

/// The pipeline task's state.
pub(crate) struct Pipeline {
    /// Metric handles.
    metrics: Metrics,
    /// The clock read once per event, for per-record latencies.
    now: Instant,
    client: Client,
    config: Config,
    stats: Arc<Stats>,
    commands: mpsc::UnboundedReceiver<Command>,
    commands_closed: bool,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
    streams: FastMap<Arc<str>, StreamState>,
    /// Round-robin start among streams, for fairness.
    stream_cursor: usize,
    in_flight_calls: usize,
    next_seq: u64,
    /// Current flush epoch, and unsettled records per epoch.
    epoch: u64,
    epoch_counts: BTreeMap<u64, usize>,
    /// Flush waiters, by the epoch they wait for, oldest first.
    flush_waiters: VecDeque<(u64, oneshot::Sender<()>)>,
    /// Records of epochs up to this one are sent without lingering.
    urgent_epoch: Option<u64>,
    /// Shutdown requested: exit once everything is settled.
    shutting_down: bool,
    /// Reused for every aggregate.
    aggregator: Aggregator,
    backoff_builder: ExponentialBuilder,
    /// Budget of the records settled since the last round, merged into one permit per
    /// semaphore and released once per round: one semaphore release (and wake-up of
    /// waiting `put`s) per round instead of two per record.
    released: Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
    /// Emptied batches of finished calls, reused for the next ones: a full batch of
    /// unaggregated records is a ~190 KB allocation, and allocating and freeing one per
    /// call makes glibc consolidate its free lists each time.
    batch_pool: Vec<Vec<Entry>>,
    /// Failed calls, as they happen, to `Producer::failures` subscribers.
    failures: broadcast::Sender<CallFailure>,
}

/// Emptied batches kept for reuse (see `Pipeline::batch_pool`).
const BATCH_POOL: usize = 4;

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("streams", &self.streams.len())
            .field("in_flight_calls", &self.in_flight_calls)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    pub(crate) fn new(
        client: Client,
        config: Config,
        commands: mpsc::UnboundedReceiver<Command>,
        stats: Arc<Stats>,
        failures: broadcast::Sender<CallFailure>,
    ) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let aggregator = Aggregator::builder()
            .with_max_size(config.aggregation_max_size)
            .with_max_count(config.aggregation_max_count)
            .build()
            .expect("validated by the builder");
        let backoff_builder = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(config.min_backoff)
            .with_max_delay(config.max_backoff)
            .without_max_times();
        Pipeline {
            metrics: Metrics::new(),
            now: Instant::now(),
            client,
            config,
            stats,
            commands,
            commands_closed: false,
            events_tx,
            events,
            streams: FastMap::default(),
            stream_cursor: 0,
            in_flight_calls: 0,
            next_seq: 0,
            epoch: 0,
            epoch_counts: BTreeMap::new(),
            flush_waiters: VecDeque::new(),
            urgent_epoch: None,
            shutting_down: false,
            aggregator,
            backoff_builder,
            released: None,
            batch_pool: Vec::new(),
            failures,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let now = Instant::now();
            self.now = now;
            self.refresh_due_maps(now);
            self.expire(now);
            self.dispatch(now);
            // Settled records' budget goes back before waiting.
            self.released = None;
            if self.finished() {
                break;
            }
            let wake = self.next_wake(now);
            tokio::select! {
                biased;
                Some(event) = self.events.recv() => self.on_event(event),
                cmd = self.commands.recv(), if !self.commands_closed => match cmd {
                    Some(cmd) => {
                        self.on_command(cmd);
                        for _ in 0..COMMANDS_PER_ROUND {
                            match self.commands.try_recv() {
                                Ok(cmd) => self.on_command(cmd),
                                Err(_) => break,
                            }
                        }
                    }
                    None => self.on_abandoned(),
                },
                _ = sleep_until_opt(wake) => {}
            }
        }
        // Nothing is left to settle; answer any remaining flush waiters.
        for (_, tx) in self.flush_waiters.drain(..) {
            let _ = tx.send(());
        }
    }

    fn outstanding(&self) -> usize {
        self.epoch_counts.values().sum()
    }

    fn finished(&self) -> bool {
        (self.shutting_down || self.commands_closed)
            && self.in_flight_calls == 0
            && self.outstanding() == 0
    }

    // ---- commands -------------------------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Put(mut item) => {
                item.seq = self.next_seq;
                self.next_seq += 1;
                item.epoch = self.epoch;
                *self.epoch_counts.entry(self.epoch).or_default() += 1;
                self.metrics.put.increment(1);
                self.enqueue(item);
            }
            Command::Flush(tx) => self.start_flush(Some(tx)),
            Command::Shutdown => {
                self.shutting_down = true;
                self.start_flush(None);
            }
        }
    }

    fn start_flush(&mut self, tx: Option<oneshot::Sender<()>>) {
        let epoch = self.epoch;
        self.epoch += 1;
        self.urgent_epoch = Some(epoch);
        if let Some(tx) = tx {
            self.flush_waiters.push_back((epoch, tx));
        }
        self.answer_flush_waiters();
    }

    fn answer_flush_waiters(&mut self) {
        let oldest_unsettled = self.epoch_counts.keys().next().copied();
        while let Some((epoch, _)) = self.flush_waiters.front() {
            if oldest_unsettled.is_some_and(|o| o <= *epoch) {
                break;
            }
            let (_, tx) = self.flush_waiters.pop_front().expect("front exists");
            let _ = tx.send(());
        }
    }

    /// Every `Producer` clone is gone without `shutdown`: fail what was not sent.
    fn on_abandoned(&mut self) {
        self.commands_closed = true;
        let mut dropped = Vec::new();
        for stream in self.streams.values_mut() {
            for q in stream.shards.values_mut() {
                while let Some(item) = q.pop_front() {
                    dropped.push(item);
                }
            }
            dropped.append(&mut stream.parked);
            dropped.extend(stream.unverified.drain(..).flat_map(|u| u.items));
        }
        for item in dropped {
            self.fail(item, FailureReason::ShutDown);
        }
    }

    // ---- queues ---------------------------------------------------------------------

    fn stream_state(&mut self, name: &str) {
        if !self.streams.contains_key(name) {
            let name: Arc<str> = Arc::from(name);
            let state = StreamState {
                name: name.clone(),
                map: None,
                map_error: None,
                refreshing: false,
                next_refresh: Instant::now(),
                shards: FastMap::default(),
                parked: Vec::new(),
                unverified: Vec::new(),
                put_failures: Streak::default(),
                list_failures: Streak::default(),
            };
            self.streams.insert(name, state);
        }
    }

    fn enqueue(&mut self, item: Item) {
        // The clock read for this round: it only starts a new queue's rate limiter.
        let now = self.now;
        if !self.streams.contains_key(&item.stream) {
            self.stream_state(&item.stream);
        }
        let config = &self.config;
        let stream = self.streams.get_mut(&item.stream).expect("created above");
        stream.push_predicted(item, config, now);
    }

    /// Puts failed records back at the head of their queues, keeping their order.
    fn requeue(&mut self, stream: &Arc<str>, items: Vec<(ShardKey, Item)>) {
        let now = Instant::now();
        let mut by_shard: FastMap<ShardKey, Vec<Item>> = FastMap::default();
        for (key, item) in items {
            if self.commands_closed {
                self.fail(item, FailureReason::ShutDown);
                continue;
            }
            if now >= item.put_at + self.config.record_ttl {
                let ttl = self.config.record_ttl;
                self.fail(item, FailureReason::Expired { ttl });
                continue;
            }
            by_shard.entry(key).or_default().push(item);
        }
        let config = &self.config;
        let Some(state) = self.streams.get_mut(stream) else {
            return;
        };
        for (key, items) in by_shard {
            let q = state
                .shards
                .entry(key)
                .or_insert_with(|| ShardQueue::new(config, now));
            for item in items.into_iter().rev() {
                q.push_front(item);
            }
        }
    }

    /// Settles every record whose TTL has run out: queued ones fail; so do records parked
    /// for a re-send after a wrong-shard landing. An aggregate Kinesis accepted into a
    /// shard whose hash range could not be checked yet (no shard map) is delivered, all
    /// its records together, once its oldest record's TTL is over: it is in the stream,
    /// and its handles must not wait for a map that may never load.
    fn expire(&mut self, now: Instant) {
        let ttl = self.config.record_ttl;
        let mut expired = Vec::new();
        let mut unchecked = Vec::new();
        for stream in self.streams.values_mut() {
            for q in stream.shards.values_mut() {
                while q.records.front().is_some_and(|i| now >= i.put_at + ttl) {
                    expired.push(q.pop_front().expect("front exists"));
                }
            }
            let (old, parked) = std::mem::take(&mut stream.parked)
                .into_iter()
                .partition(|i| now >= i.put_at + ttl);
            stream.parked = parked;
            expired.extend::<Vec<Item>>(old);
            let (old, waiting) = std::mem::take(&mut stream.unverified)
                .into_iter()
                .partition(|u| now >= u.deadline(ttl));
            stream.unverified = waiting;
            unchecked.extend(
                old.into_iter()
                    .map(|u: Unverified| (stream.name.clone(), u)),
            );
        }
        for item in expired {
            self.fail(item, FailureReason::Expired { ttl });
        }
        for (name, u) in unchecked {
            tracing::warn!(
                stream = %name,
                shard = %u.shard_id,
                user_records = u.items.len(),
                "aggregate delivered into a shard whose hash range could not be checked (no shard map within the record TTL); readers that filter by range may skip it"
            );
            self.deliver_all(&name, &u.shard_id, &u.sequence_number, u.items);
        }
    }

    /// A call for `stream` was refused for a reason that concerns the whole stream: every
    /// record of the stream still queued here (waiting, backing off, or parked for a
    /// re-route) fails with the same reason, instead of being sent to be refused in turn.
    /// Records in calls under way settle with their own call. Returns how many failed.
    fn fail_stream(&mut self, stream: &Arc<str>, err: &CallError) -> usize {
        let Some(state) = self.streams.get_mut(stream) else {
            return 0;
        };
        let mut doomed = Vec::new();
        for q in state.shards.values_mut() {
            while let Some(item) = q.pop_front() {
                doomed.push(item);
            }
        }
        doomed.append(&mut state.parked);
        let n = doomed.len();
        for item in doomed {
            let reason = FailureReason::Rejected {
                code: err.code.clone(),
                message: err.message.clone(),
            };
            self.fail(item, reason);
        }
        n
    }

    // ---- failure reports --------------------------------------------------------------

    /// Sends one failure report to the subscribers, if there are any (building it costs
    /// two small allocations; with no subscriber nothing is built).
    fn report(
        &self,
        stream: &Arc<str>,
        operation: &'static str,
        err: &CallError,
        retryable: bool,
        records: usize,
    ) {
        if self.failures.receiver_count() == 0 {
            return;
        }
        let _ = self.failures.send(CallFailure {
            stream: stream.clone(),
            operation,
            code: err.code.clone(),
            message: err.message.clone(),
            retryable,
            throttled: err.throttled,
            records,
        });
    }

    /// A call of `operation` to `stream` failed with `err` (throttling is not counted
    /// here: it is routine, counted in the stats): the first failure after a success is
    /// logged as a warning, later ones only counted.
    fn streak_failed(
        &mut self,
        stream: &Arc<str>,
        operation: &'static str,
        err: &CallError,
        records: usize,
    ) {
        let Some(state) = self.streams.get_mut(stream) else {
            return;
        };
        let streak = match operation {
            PUT_RECORDS => &mut state.put_failures,
            _ => &mut state.list_failures,
        };
        if streak.calls == 0 {
            tracing::warn!(
                stream = %stream,
                operation,
                code = %err.code,
                message = %err.message,
                retryable = !err.fatal,
                "Kinesis call failed (further failures of this operation on this stream are \
                 counted, not logged, until a call succeeds)"
            );
        }
        streak.calls += 1;
        streak.records += records as u64;
    }

    /// A call of `operation` to `stream` succeeded: if calls had failed, say so once.
    fn streak_ended(&mut self, stream: &Arc<str>, operation: &'static str) {
        let Some(state) = self.streams.get_mut(stream) else {
            return;
        };
        let streak = match operation {
            PUT_RECORDS => &mut state.put_failures,
            _ => &mut state.list_failures,
        };
        if streak.calls > 0 {
            tracing::info!(
                stream = %stream,
                operation,
                failed_calls = streak.calls,
                records_in_failed_calls = streak.records,
                "Kinesis calls succeed again"
            );
            *streak = Streak::default();
        }
    }

    // ---- settling -------------------------------------------------------------------

    fn settled(&mut self, epoch: u64) {
        if let Some(n) = self.epoch_counts.get_mut(&epoch) {
            *n -= 1;
            if *n == 0 {
                self.epoch_counts.remove(&epoch);
                self.answer_flush_waiters();
            }
        }
    }

    fn deliver(&mut self, item: Item, delivered: Delivered) {
        Stats::add(&self.stats.user_records_delivered, 1);
        Stats::add(
            &self.stats.payload_bytes_delivered,
            item.record.data().len() as u64,
        );
        self.metrics.delivered.increment(1);
        self.metrics.delivery_latency.record(
            self.now
                .saturating_duration_since(item.put_at)
                .as_secs_f64(),
        );
        let epoch = item.epoch;
        let _ = item.tx.send(Ok(delivered));
        self.release(item.budget);
        self.settled(epoch);
    }

    /// Keeps a settled record's budget until the end of the round (see `released`).
    fn release(&mut self, permits: (OwnedSemaphorePermit, OwnedSemaphorePermit)) {
        match &mut self.released {
            Some((records, bytes)) => {
                records.merge(permits.0);
                bytes.merge(permits.1);
            }
            None => self.released = Some(permits),
        }
    }

    fn fail(&mut self, item: Item, reason: FailureReason) {
        Stats::add(&self.stats.user_records_failed, 1);
        self.metrics.failed.increment(1);
        tracing::debug!(stream = %item.stream, %reason, "user record failed");
        let epoch = item.epoch;
        let failed = Failed {
            stream: item.stream.clone(),
            reason,
            attempts: item.attempts,
            record: Some(Box::new(to_producer_record(&*item.stream, item.record))),
        };
        let _ = item.tx.send(Err(failed));
        self.release(item.budget);
        self.settled(epoch);
    }

    // ---- shard maps -----------------------------------------------------------------

    fn refresh_due_maps(&mut self, now: Instant) {
        for state in self.streams.values_mut() {
            if !state.refreshing && now >= state.next_refresh {
                state.refreshing = true;
                let client = self.client.clone();
                let stream = state.name.clone();
                let events = self.events_tx.clone();
                let timeout = self.config.request_timeout;
                tokio::spawn(async move {
                    let result = tokio::time::timeout(timeout, ShardMap::load(&client, &stream))
                        .await
                        .unwrap_or_else(|_| {
                            Err(CallError::retryable(
                                REQUEST_TIMEOUT,
                                format!("ListShards did not answer within {timeout:?}"),
                            ))
                        });
                    let _ = events.send(Event::ShardMap { stream, result });
                });
            }
        }
    }

    fn request_refresh(&mut self, stream: &str) {
        if let Some(s) = self.streams.get_mut(stream) {
            if !s.refreshing {
                s.next_refresh = Instant::now();
            }
        }
    }

    fn on_shard_map(&mut self, stream: Arc<str>, result: Result<ShardMap, CallError>) {
        let now = Instant::now();
        let interval = self.config.shard_map_refresh_interval;
        let config = self.config.clone();
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        state.refreshing = false;
        let map = match result {
            Ok(map) => map,
            Err(e) => {
                self.shard_map_failed(&stream, e, now);
                return;
            }
        };
        Stats::add(&self.stats.shard_map_loads, 1);
        self.streak_ended(&stream, LIST_SHARDS);
        let state = self.streams.get_mut(&stream).expect("looked up above");
        state.map_error = None;
        state.next_refresh = now + interval;
        let changed = state
            .map
            .as_ref()
            .is_none_or(|old| !old.same_open_shards(&map));
        let map = Arc::new(map);
        state.map = Some(map.clone());
        if changed {
            tracing::debug!(stream = %stream, open_shards = map.open_count(), "shard map changed");
        }
        if changed || !state.parked.is_empty() {
            // Rebuild the queues by the new prediction, in arrival order: re-routed records
            // go back in line where they were put, not behind newer records of their key.
            let mut all: Vec<Item> = Vec::new();
            for q in state.shards.values_mut() {
                while let Some(item) = q.pop_front() {
                    all.push(item);
                }
            }
            all.append(&mut state.parked);
            all.sort_by_key(|i| i.seq);
            for item in all {
                state.push_predicted(item, &config, now);
            }
            state
                .shards
                .retain(|_, q| !q.records.is_empty() || q.in_flight > 0 || q.backoff.is_some());
        }
        // Judge deliveries into shards the old map did not know.
        let unverified = std::mem::take(&mut state.unverified);
        let name = state.name.clone();
        for u in unverified {
            let range = map.range_of(&u.shard_id);
            if owns_all(range, &u.items) {
                self.deliver_all(&name, &u.shard_id, &u.sequence_number, u.items);
            } else {
                // Not in the new map either, or not owning them all: send them all again.
                for item in u.items {
                    self.misrouted(item, &u.shard_id);
                }
            }
        }
    }

    /// Delivers every user record of one Kinesis record Kinesis put at `sequence_number`
    /// in `shard_id`, each at its sub-sequence number (its position).
    fn deliver_all(
        &mut self,
        stream: &Arc<str>,
        shard_id: &Arc<str>,
        sequence_number: &Arc<str>,
        items: SmallVec<[Item; 1]>,
    ) {
        let aggregated = items.len() > 1;
        for (sub, item) in items.into_iter().enumerate() {
            let d = delivered(
                stream,
                shard_id.clone(),
                sequence_number.clone(),
                sub as u64,
                aggregated,
                item.calls,
            );
            self.deliver(item, d);
        }
    }

    /// `ListShards` failed. Records keep flowing unaggregated meanwhile, except when the
    /// error concerns the whole stream: then the stream's queued records fail at once
    /// (access denied is the exception: `ListShards` needs a permission of its own that
    /// a writer may lack, so it only makes the producer ask less often).
    fn shard_map_failed(&mut self, stream: &Arc<str>, e: CallError, now: Instant) {
        let interval = self.config.shard_map_refresh_interval;
        let access_denied = matches!(e.code.as_str(), "AccessDeniedException" | "AccessDenied");
        let fails_stream = e.stream_level && !access_denied;
        let failed = if fails_stream {
            self.fail_stream(stream, &e)
        } else {
            0
        };
        self.report(stream, LIST_SHARDS, &e, !e.fatal, failed);
        self.streak_failed(stream, LIST_SHARDS, &e, failed);
        let Some(state) = self.streams.get_mut(stream) else {
            return;
        };
        // Try again soon (the stream may be created meanwhile), unless asking again soon
        // cannot help.
        state.next_refresh = if access_denied {
            now + interval
        } else {
            now + Duration::from_secs(1).min(interval)
        };
        state.map_error = Some(e);
    }

    /// A user record of an aggregate that landed in `shard_id`, a shard that does not own
    /// every user record of it (or whose range is unknown): send it again, whether or not
    /// the shard owns this one. The Java KCL discards such an aggregate whole, so a
    /// record left there would be lost to its readers; our own consumer does the same
    /// for aggregates under [`WHOLE_RESEND_PARTITION_KEY`], so it reads each record once.
    fn misrouted(&mut self, mut item: Item, shard_id: &str) {
        Stats::add(&self.stats.wrong_shard_resends, 1);
        item.attempts.push(Attempt {
            elapsed: item.put_at.elapsed(),
            code: WRONG_SHARD.to_owned(),
            message: format!(
                "aggregate landed in shard {shard_id}, which does not own every record in it; all of them are sent again"
            ),
            throttled: false,
        });
        if self.commands_closed {
            self.fail(item, FailureReason::ShutDown);
            return;
        }
        let stream = item.stream.clone();
        self.request_refresh(&stream);
        if let Some(s) = self.streams.get_mut(&stream) {
            s.parked.push(item);
        }
    }

    // ---- sending --------------------------------------------------------------------

    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let linger = self.config.max_buffered_time;
        let ttl = self.config.record_ttl;
        let mut wake: Option<Instant> = None;
        let mut consider = |t: Instant| {
            wake = Some(wake.map_or(t, |w| w.min(t)));
        };
        let ordered = self.config.per_key_ordering;
        let can_call = self.in_flight_calls < self.config.max_concurrent_requests;
        for s in self.streams.values() {
            if !s.refreshing {
                consider(s.next_refresh);
            }
            // Records outside the shard queues also settle at their TTL.
            for i in &s.parked {
                consider(i.put_at + ttl);
            }
            for u in &s.unverified {
                consider(u.deadline(ttl));
            }
            let stream_blocked = ordered && ordered_must_wait(s);
            for (key, q) in &s.shards {
                let Some(front) = q.records.front() else {
                    continue;
                };
                consider(front.put_at + ttl);
                // Waiting on a call (or on the shard map) is woken by that event, not a timer.
                if !can_call || stream_blocked || (ordered && (q.in_flight > 0 || key.is_none())) {
                    continue;
                }
                let ready = if self.urgent_epoch.is_some_and(|e| front.epoch <= e) {
                    now
                } else {
                    front.put_at + linger
                };
                let ready = q.blocked_until().map_or(ready, |b| ready.max(b));
                consider(ready);
            }
        }
        wake
    }

    fn dispatch(&mut self, now: Instant) {
        if self.streams.is_empty() {
            return;
        }
        let mut idle_rounds = 0;
        while self.in_flight_calls < self.config.max_concurrent_requests
            && idle_rounds < self.streams.len()
        {
            let names: Vec<Arc<str>> = self.streams.keys().cloned().collect();
            let name = names[self.stream_cursor % names.len()].clone();
            self.stream_cursor = self.stream_cursor.wrapping_add(1);
            match self.collect(&name, now) {
                Some(entries) => {
                    idle_rounds = 0;
                    self.launch(name, entries);
                }
                None => idle_rounds += 1,
            }
        }
    }

    /// Builds the next batch for one stream, or `None` if nothing is due.
    fn collect(&mut self, stream: &Arc<str>, now: Instant) -> Option<Vec<Entry>> {
        let config = self.config.clone();
        let urgent_epoch = self.urgent_epoch;
        let linger = config.max_buffered_time;
        let state = self.streams.get_mut(stream)?;
        let ordered = config.per_key_ordering;
        if ordered && ordered_must_wait(state) {
            return None;
        }
        let agg_room = config.aggregation_max_size + 4 * kinesis_agg::MAX_PARTITION_KEY_CHARS;

        // First pass: is anything urgent, or is there enough for a full call?
        let mut urgent_any = false;
        let mut full_bytes = 0usize;
        let mut full_records = 0usize;
        for (key, q) in state.shards.iter_mut() {
            let Some(front) = q.records.front() else {
                continue;
            };
            if !may_send(key, q, ordered, now) {
                continue;
            }
            if now >= front.put_at + linger || urgent_epoch.is_some_and(|e| front.epoch <= e) {
                urgent_any = true;
                break;
            }
            if config.aggregation && key.is_none() {
                // Waiting for the shard map, to aggregate: only its linger sends it raw.
                continue;
            }
            if config.aggregation && key.is_some() {
                full_bytes +=
                    (q.queued_bytes / config.aggregation_max_size) * config.aggregation_max_size;
                full_records += q.queued_bytes / config.aggregation_max_size;
            } else {
                full_bytes += q.queued_bytes;
                full_records += q.records.len();
            }
        }
        if !urgent_any
            && full_records < config.collection_max_count
            && full_bytes + agg_room < config.collection_max_size
        {
            return None;
        }

        // Second pass: fill the batch.
        let mut entries: Vec<Entry> = self
            .batch_pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(config.collection_max_count));
        let mut batch_bytes = 0usize;
        let keys: Vec<ShardKey> = state.shards.keys().cloned().collect();
        for key in keys {
            if entries.len() >= config.collection_max_count {
                break;
            }
            let q = state.shards.get_mut(&key).expect("key listed");
            if q.records.is_empty() || !may_send(&key, q, ordered, now) {
                continue;
            }
            q.rate_wait_until = None;
            let aggregate = config.aggregation && key.is_some();
            loop {
                if entries.len() >= config.collection_max_count {
                    break;
                }
                let Some(front) = q.records.front() else {
                    break;
                };
                let urgent =
                    now >= front.put_at + linger || urgent_epoch.is_some_and(|e| front.epoch <= e);
                // A partial aggregate keeps lingering unless its time is up, and so do
                // records waiting for the shard map when aggregation is on.
                if !urgent
                    && ((aggregate && q.queued_bytes < config.aggregation_max_size)
                        || (config.aggregation && key.is_none()))
                {
                    break;
                }
                let bound = if aggregate {
                    agg_room.max(front.size())
                } else {
                    front.size()
                };
                if batch_bytes + bound > config.collection_max_size {
                    break;
                }
                let wait = q.limiter.wait_for(bound.min(agg_room), now);
                if !wait.is_zero() {
                    q.rate_wait_until = Some(now + wait);
                    break;
                }
                let entry = if aggregate {
                    build_aggregate(&mut self.aggregator, q, key.clone())
                } else {
                    let item = q.pop_front().expect("front exists");
                    Entry {
                        predicted: key.clone(),
                        data: item.record.data().clone(),
                        explicit_hash_key: item.record.explicit_hash_key(),
                        items: smallvec::smallvec![item],
                    }
                };
                let mut entry = entry;
                if let Some(level) = config.compression_level {
                    if let Some(packed) = kinesis_agg::compression::compress(&entry.data, level) {
                        entry.data = packed;
                    }
                }
                q.limiter.take(entry.size(), now);
                q.in_flight += 1;
                batch_bytes += entry.size();
                entries.push(entry);
                if ordered {
                    break; // one Kinesis record per shard per call
                }
            }
        }
        if entries.is_empty() {
            self.batch_pool.push(entries);
            return None;
        }
        Some(entries)
    }

    fn launch(&mut self, stream: Arc<str>, entries: Vec<Entry>) {
        self.in_flight_calls += 1;
        let bytes: usize = entries.iter().map(Entry::size).sum();
        let user_records: usize = entries.iter().map(|e| e.items.len()).sum();
        let retries = entries
            .iter()
            .filter(|e| e.items.iter().any(|i| i.calls > 0))
            .count();
        Stats::add(&self.stats.put_records_calls, 1);
        Stats::add(&self.stats.kinesis_records_sent, entries.len() as u64);
        Stats::add(&self.stats.bytes_sent, bytes as u64);
        Stats::add(&self.stats.retries, retries as u64);
        self.metrics.calls.increment(1);
        self.metrics.kinesis_records.increment(entries.len() as u64);
        self.metrics.bytes.increment(bytes as u64);
        self.metrics.retries.increment(retries as u64);
        let now = Instant::now();
        let mut entries = entries;
        for e in &mut entries {
            for i in &mut e.items {
                if i.calls == 0 {
                    self.metrics
                        .buffered_time
                        .record(now.saturating_duration_since(i.put_at).as_secs_f64());
                }
                i.calls += 1;
            }
        }
        let request: Vec<PutRecordsRequestEntry> = entries
            .iter()
            .map(|e| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(e.data.to_vec()))
                    .partition_key(e.partition_key())
                    .set_explicit_hash_key(e.explicit_hash_key.map(|h| h.to_string()))
                    .build()
                    .expect("data and partition key are set")
            })
            .collect();
        let client = self.client.clone();
        let events = self.events_tx.clone();
        let timeout = self.config.request_timeout;
        let span = tracing::debug_span!(
            "put_records",
            stream = %stream,
            kinesis_records = entries.len(),
            user_records,
            bytes,
        );
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

    fn on_event(&mut self, event: Event) {
        self.now = Instant::now();
        match event {
            Event::ShardMap { stream, result } => self.on_shard_map(stream, result),
            Event::CallDone {
                stream,
                entries,
                result,
            } => {
                self.in_flight_calls -= 1;
                self.on_call_done(stream, entries, result);
            }
        }
    }

    fn on_call_done(&mut self, stream: Arc<str>, mut entries: Vec<Entry>, result: CallResult) {
        let user_records: usize = entries.iter().map(|e| e.items.len()).sum();
        // One invalid record fails a whole call with ValidationException, and an endpoint
        // with a smaller body limit than Kinesis refuses a full call with 413: split the
        // call, so that the valid records in it are still delivered.
        if let CallResult::Failed(err) = &result {
            let splittable =
                err.fatal && (err.code == "ValidationException" || err.code == REQUEST_TOO_LARGE);
            if splittable && entries.len() > 1 && !self.commands_closed {
                // Retryable as far as its records go: they are sent again, in halves.
                self.report(&stream, PUT_RECORDS, err, true, user_records);
                let mut first = entries;
                let second = first.split_off(first.len() / 2);
                // Each half goes out as a call of its own; the shards' in-flight counts
                // were never released, so nothing else needs updating.
                self.launch(stream.clone(), first);
                self.launch(stream, second);
                return;
            }
        }
        let now = Instant::now();
        let mut retry: Vec<(ShardKey, Item)> = Vec::new();
        let mut backoff_shards: Vec<ShardKey> = Vec::new();
        let mut succeeded_shards: Vec<ShardKey> = Vec::new();
        if let Some(state) = self.streams.get_mut(&stream) {
            // Entries come in runs from one queue (see `collect`): one lookup per run.
            let mut i = 0;
            while i < entries.len() {
                let key = &entries[i].predicted;
                let run = entries[i..]
                    .iter()
                    .take_while(|e| same_queue(&e.predicted, key))
                    .count();
                if let Some(q) = state.shards.get_mut(key) {
                    q.in_flight = q.in_flight.saturating_sub(run);
                }
                i += run;
            }
        }
        match result {
            CallResult::Failed(err) => {
                if err.throttled {
                    Stats::add(&self.stats.throttles, 1);
                    self.metrics.throttles.increment(1);
                }
                let failure = AttemptFailure {
                    now,
                    code: &err.code,
                    message: &err.message,
                    throttled: err.throttled,
                    fatal: err.fatal,
                };
                for e in entries.drain(..) {
                    push_once(&mut backoff_shards, &e.predicted);
                    self.entry_failed(e, &failure, &mut retry);
                }
                let mut records = user_records;
                if err.stream_level {
                    records += self.fail_stream(&stream, &err);
                }
                // The records fail at once when the error is fatal, or throttling under
                // `fail_if_throttled`; otherwise they are tried again.
                let fail_now = err.fatal || (err.throttled && self.config.fail_if_throttled);
                let retryable = !fail_now;
                self.report(&stream, PUT_RECORDS, &err, retryable, records);
                if !err.throttled {
                    self.streak_failed(&stream, PUT_RECORDS, &err, records);
                }
            }
            CallResult::Ok(results) => {
                let mut results = results.into_iter();
                // Per-record errors by code, for one report per code (throttling can
                // refuse thousands of records a second).
                let mut record_errors: SmallVec<[(CallError, usize); 2]> = SmallVec::new();
                let mut delivered_any = false;
                // The shard the previous record landed in: consecutive records mostly
                // land in the same one, so it is looked up once per run.
                let mut landed: Option<Landed> = None;
                for e in entries.drain(..) {
                    let Some(r) = results.next() else {
                        // Fewer results than records: treat the rest as failed.
                        push_once(&mut backoff_shards, &e.predicted);
                        let failure = AttemptFailure {
                            now,
                            code: "MissingResult",
                            message: "PutRecords returned fewer results than records",
                            throttled: false,
                            fatal: false,
                        };
                        tally(&mut record_errors, &failure, e.items.len());
                        self.entry_failed(e, &failure, &mut retry);
                        continue;
                    };
                    match (r.error_code(), r.shard_id(), r.sequence_number()) {
                        (None, Some(shard_id), Some(seq)) => {
                            delivered_any = true;
                            push_once(&mut succeeded_shards, &e.predicted);
                            let shard = match landed.take() {
                                Some(l) if *l.shard_id == *shard_id => l,
                                _ => self.landed(&stream, shard_id),
                            };
                            self.on_record_delivered(&stream, e, &shard, seq);
                            landed = Some(shard);
                        }
                        (code, _, _) => {
                            let code = code.unwrap_or("MissingSequenceNumber");
                            let throttled = is_throttling_code(code);
                            if throttled {
                                Stats::add(&self.stats.throttles, 1);
                                self.metrics.throttles.increment(1);
                            }
                            push_once(&mut backoff_shards, &e.predicted);
                            let failure = AttemptFailure {
                                now,
                                code,
                                message: r.error_message().unwrap_or_default(),
                                throttled,
                                fatal: false,
                            };
                            tally(&mut record_errors, &failure, e.items.len());
                            self.entry_failed(e, &failure, &mut retry);
                        }
                    }
                }
                let fail_if_throttled = self.config.fail_if_throttled;
                for (err, records) in &record_errors {
                    let retryable = !(err.throttled && fail_if_throttled);
                    self.report(&stream, PUT_RECORDS, err, retryable, *records);
                }
                match record_errors.iter().find(|(e, _)| !e.throttled) {
                    Some((err, _)) => {
                        let records = record_errors
                            .iter()
                            .filter(|(e, _)| !e.throttled)
                            .map(|(_, n)| n)
                            .sum();
                        self.streak_failed(&stream, PUT_RECORDS, err, records);
                    }
                    None if delivered_any => self.streak_ended(&stream, PUT_RECORDS),
                    None => {}
                }
            }
        }
        let builder = self.backoff_builder;
        if let Some(state) = self.streams.get_mut(&stream) {
            for key in succeeded_shards {
                if let Some(q) = state.shards.get_mut(&key) {
                    q.backoff = None;
                    q.backoff_until = None;
                }
            }
            for key in backoff_shards {
                if let Some(q) = state.shards.get_mut(&key) {
                    let delay = q
                        .backoff
                        .get_or_insert_with(|| builder.build())
                        .next()
                        .unwrap_or(self.config.max_backoff);
                    q.backoff_until = Some(now + delay);
                }
            }
        }
        if self.batch_pool.len() < BATCH_POOL {
            self.batch_pool.push(entries);
        }
        if !retry.is_empty() {
            self.requeue(&stream, retry);
        }
    }

    /// Records a failed attempt on every user record of `e`, then fails each (the call was
    /// rejected for good, or throttled under `fail_if_throttled`) or queues it in `retry`.
    fn entry_failed(
        &mut self,
        e: Entry,
        failure: &AttemptFailure<'_>,
        retry: &mut Vec<(ShardKey, Item)>,
    ) {
        for mut item in e.items {
            item.attempts.push(Attempt {
                elapsed: failure.now.saturating_duration_since(item.put_at),
                code: failure.code.to_owned(),
                message: failure.message.to_owned(),
                throttled: failure.throttled,
            });
            if failure.fatal {
                let reason = FailureReason::Rejected {
                    code: failure.code.to_owned(),
                    message: failure.message.to_owned(),
                };
                self.fail(item, reason);
            } else if failure.throttled && self.config.fail_if_throttled {
                self.fail(item, FailureReason::Throttled);
            } else {
                retry.push((e.predicted.clone(), item));
            }
        }
    }

    /// What the pipeline knows of the shard `shard_id` of `stream` that a record landed in.
    fn landed(&self, stream: &Arc<str>, shard_id: &str) -> Landed {
        let map = self.streams.get(stream).and_then(|s| s.map.as_ref());
        Landed {
            shard_id: map
                .and_then(|m| m.shard_arc(shard_id))
                .unwrap_or_else(|| Arc::from(shard_id)),
            range: map.and_then(|m| m.range_of(shard_id)),
        }
    }

    /// Kinesis put `e` in `landed`. A lone user record was routed by its own hash key and
    /// is where it belongs. An aggregate is delivered whole if the shard owns every user
    /// record of it; otherwise every one of them is sent again (see [`Self::misrouted`]);
    /// when the shard is not in the map, it is judged once the map is reloaded.
    fn on_record_delivered(&mut self, stream: &Arc<str>, e: Entry, landed: &Landed, seq: &str) {
        let Some(state) = self.streams.get_mut(stream) else {
            return;
        };
        let shard_id = &landed.shard_id;
        let seq: Arc<str> = Arc::from(seq);
        let name = state.name.clone();
        let predicted_right = e.predicted.as_deref() == Some(&**shard_id);
        if !predicted_right && e.predicted.is_some() && !state.refreshing {
            // The map is stale (or the stream was resharded): reload it.
            state.next_refresh = Instant::now();
        }
        if e.items.len() == 1 || owns_all(landed.range, &e.items) {
            self.deliver_all(&name, shard_id, &seq, e.items);
        } else if landed.range.is_none() {
            if self.commands_closed {
                for item in e.items {
                    self.fail(item, FailureReason::ShutDown);
                }
                return;
            }
            state.unverified.push(Unverified {
                shard_id: shard_id.clone(),
                sequence_number: seq,
                items: e.items,
            });
            self.request_refresh(stream);
        } else {
            for item in e.items {
                self.misrouted(item, shard_id);
            }
        }
    }
}

/// Whether a shard of this hash key range (`None`: unknown) owns every one of `items`.
fn owns_all(range: Option<HashKeyRange>, items: &[Item]) -> bool {
    range.is_some_and(|r| items.iter().all(|i| r.contains(i.hash_key)))
}

/// One failed attempt of a Kinesis record, as recorded on each of its user records.
#[derive(Debug)]
struct AttemptFailure<'a> {
    /// When the answer (or the timeout) came.
    now: Instant,
    /// The error code, and its message.
    code: &'a str,
    message: &'a str,
    /// Throttling, counted apart from errors.
    throttled: bool,
    /// Not worth retrying: the records fail at once.
    fatal: bool,
}

/// The shard a record landed in, as the pipeline's shard map knows it.
#[derive(Debug)]
struct Landed {
    /// The map's shared id (a fresh one if the map does not know the shard).
    shard_id: Arc<str>,
    /// Its hash key range, if the map knows it.
    range: Option<HashKeyRange>,
}

/// Adds `key` to `keys` unless it is the last one there: a call's entries come in runs
/// from one queue (see `collect`), so each queue is listed once per call, and its backoff
/// advances one step per failed call, not one per failed Kinesis record.
fn push_once(keys: &mut Vec<ShardKey>, key: &ShardKey) {
    if !keys.last().is_some_and(|k| same_queue(k, key)) {
        keys.push(key.clone());
    }
}

/// Whether two queue keys name the same queue (pointer first: they are mostly clones).
fn same_queue(a: &ShardKey, b: &ShardKey) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

/// Whether a queue may contribute to a batch now (linger aside).
fn may_send(key: &ShardKey, q: &ShardQueue, ordered: bool, now: Instant) -> bool {
    if q.blocked_until().is_some_and(|t| t > now) {
        return false;
    }
    // Ordered: one Kinesis record per shard in flight, and only with a shard map.
    !(ordered && (q.in_flight > 0 || key.is_none()))
}

/// Ordered mode: whether the stream sends nothing for now. After a reshard, records of a
/// shard that is no longer open are still in flight, so its children must wait (a retry
/// there could land after newer records). And records of an aggregate that landed in a
/// shard not owning them all wait to be sent again (`parked`), or to be judged by the
/// next shard map (`unverified`): a newer record of their keys sent meanwhile would land
/// before them. Both end with the shard map reload they asked for (or at their TTL).
fn ordered_must_wait(state: &StreamState) -> bool {
    !state.parked.is_empty() || !state.unverified.is_empty() || retired_in_flight(state)
}

/// Records of a shard that is no longer open are in flight (see [`ordered_must_wait`]).
fn retired_in_flight(state: &StreamState) -> bool {
    state.shards.iter().any(|(key, q)| {
        q.in_flight > 0
            && match (&state.map, key) {
                (Some(map), Some(id)) => !map.is_open(id),
                _ => true,
            }
    })
}

fn delivered(
    stream: &Arc<str>,
    shard_id: Arc<str>,
    sequence_number: Arc<str>,
    sub: u64,
    aggregated: bool,
    calls: u32,
) -> Delivered {
    Delivered {
        stream: stream.clone(),
        shard_id,
        sequence_number,
        sub_sequence_number: sub,
        aggregated,
        attempts: calls,
    }
}

/// Which queue a record goes to.
fn predict(state: &StreamState, hash_key: HashKey) -> ShardKey {
    state
        .map
        .as_ref()
        .and_then(|m| m.predict(hash_key).cloned())
}

/// Packs user records from the head of `q` into one Kinesis record.
fn build_aggregate(aggregator: &mut Aggregator, q: &mut ShardQueue, key: ShardKey) -> Entry {
    let mut items: SmallVec<[Item; 1]> = SmallVec::new();
    while let Some(item) = q.pop_front() {
        if aggregator.try_add_ref(&item.record) {
            items.push(item);
        } else {
            q.push_front(item);
            break;
        }
    }
    let record: KinesisRecord = aggregator.finish().expect("at least one record was added");
    // An aggregate of several is routed by its first record's hash key (and sent under
    // WHOLE_RESEND_PARTITION_KEY, see `Entry::partition_key`); one alone goes out as it is.
    let explicit_hash_key = if items.len() > 1 {
        Some(items[0].hash_key)
    } else {
        record.explicit_hash_key
    };
    Entry {
        predicted: key,
        items,
        explicit_hash_key,
        data: record.data,
    }
}

/// Counts the user records of one failed Kinesis record under its error code: one
/// report per distinct code of a call.
fn tally(
    errors: &mut SmallVec<[(CallError, usize); 2]>,
    failure: &AttemptFailure<'_>,
    records: usize,
) {
    match errors.iter_mut().find(|(e, _)| e.code == failure.code) {
        Some((_, n)) => *n += records,
        None => errors.push((
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

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    //! The pipeline's timing decisions (linger, TTL, backoff, rate limits, ordering) on a
    //! paused clock, driven directly: no call is launched, so no server is needed.

    use super::*;
    use kinesis_agg::HashKeyRange;
    use tokio::sync::Semaphore;

    fn client() -> Client {
        let conf = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        Client::from_conf(conf)
    }

    fn pipeline(config: Config) -> Pipeline {
        let (_tx, rx) = mpsc::unbounded_channel();
        let (failures, _) = broadcast::channel(16);
        Pipeline::new(client(), config, rx, Arc::new(Stats::default()), failures)
    }

    /// A fatal error as `classify` makes it for a service error with this code.
    fn rejected(code: &str, message: &str) -> CallError {
        let stream_level = crate::failure::is_stream_level_code(code);
        CallError {
            code: code.to_owned(),
            message: message.to_owned(),
            throttled: false,
            fatal: true,
            stream_level,
        }
    }

    fn two_shards() -> ShardMap {
        let half = u128::MAX / 2;
        ShardMap::from_shards(vec![
            (
                "shard-lo".to_string(),
                HashKeyRange::new(HashKey(0), HashKey(half)).unwrap(),
                true,
            ),
            (
                "shard-hi".to_string(),
                HashKeyRange::new(HashKey(half + 1), HashKey::MAX).unwrap(),
                true,
            ),
        ])
    }

    /// The budget semaphores (records, bytes): one pair, as in a producer, since the
    /// pipeline merges the permits of settled records.
    static BUDGET: std::sync::LazyLock<(Arc<Semaphore>, Arc<Semaphore>)> =
        std::sync::LazyLock::new(|| {
            let s = || Arc::new(Semaphore::new(Semaphore::MAX_PERMITS));
            (s(), s())
        });

    fn item(pk: &str, size: usize) -> (Item, oneshot::Receiver<Outcome>) {
        item_for("s", pk, size)
    }

    fn item_for(stream: &str, pk: &str, size: usize) -> (Item, oneshot::Receiver<Outcome>) {
        let record = UserRecord::new(pk, vec![b'x'; size]).unwrap();
        let (tx, rx) = oneshot::channel();
        let item = Item {
            stream: Arc::from(stream),
            hash_key: record.hash_key(),
            record,
            tx,
            put_at: Instant::now(),
            attempts: Vec::new(),
            calls: 0,
            seq: 0,
            epoch: 0,
            budget: (
                BUDGET.0.clone().try_acquire_owned().unwrap(),
                BUDGET.1.clone().try_acquire_owned().unwrap(),
            ),
        };
        (item, rx)
    }

    /// A pipeline with stream "s" mapped to two shards.
    /// A partition key of each shard of [`two_shards`]: (shard-lo's, shard-hi's).
    fn keys_of_both_halves() -> (String, String) {
        let map = two_shards();
        let of = |shard: &str| {
            (0..100)
                .map(|i| format!("k{i}"))
                .find(|k| map.predict(HashKey::from_partition_key(k)).map(|s| &**s) == Some(shard))
                .expect("a key in each half")
        };
        (of("shard-lo"), of("shard-hi"))
    }

    fn mapped(config: Config) -> Pipeline {
        let mut p = pipeline(config);
        p.stream_state("s");
        p.on_shard_map(Arc::from("s"), Ok(two_shards()));
        p
    }

    fn put(p: &mut Pipeline, pk: &str, size: usize) -> oneshot::Receiver<Outcome> {
        let (item, rx) = item(pk, size);
        p.on_command(Command::Put(item));
        rx
    }

    fn stream() -> Arc<str> {
        Arc::from("s")
    }

    fn put_to(p: &mut Pipeline, stream: &str, pk: &str) -> oneshot::Receiver<Outcome> {
        let (item, rx) = item_for(stream, pk, 10);
        p.on_command(Command::Put(item));
        rx
    }

    /// Every report sent so far.
    fn drain_reports(rx: &mut broadcast::Receiver<CallFailure>) -> Vec<CallFailure> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    /// A successful result for every entry of `batch`.
    fn all_ok(batch: &[Entry]) -> Vec<PutRecordsResultEntry> {
        batch
            .iter()
            .map(|e| {
                PutRecordsResultEntry::builder()
                    .shard_id(e.predicted.as_deref().unwrap())
                    .sequence_number("1")
                    .build()
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_level_rejection_fails_the_queued_records_of_that_stream_only() {
        let config = Config {
            aggregation: false,
            max_buffered_time: Duration::ZERO,
            collection_max_count: 1,
            ..Config::default()
        };
        let mut p = mapped(config);
        p.stream_state("t");
        p.on_shard_map(Arc::from("t"), Ok(two_shards()));
        let mut reports_rx = p.failures.subscribe();
        let mut s_rx: Vec<_> = (0..4)
            .map(|i| put_to(&mut p, "s", &format!("k{i}")))
            .collect();
        let mut t_rx: Vec<_> = (0..2)
            .map(|i| put_to(&mut p, "t", &format!("k{i}")))
            .collect();

        // A record Kinesis refuses on its own fails alone.
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch.len(), 1);
        p.on_call_done(
            stream(),
            batch,
            CallResult::Failed(rejected("ValidationException", "bad key")),
        );
        let failed: Vec<_> = s_rx.iter_mut().filter_map(|r| r.try_recv().ok()).collect();
        assert_eq!(failed.len(), 1);
        assert!(!failed[0].as_ref().unwrap_err().reason.is_stream_level());
        assert_eq!(p.outstanding(), 5);

        // The stream does not exist: its queued records fail with the call's, at once.
        tokio::time::advance(Duration::from_secs(3)).await; // past the backoff
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch.len(), 1, "two records of s stay queued");
        let missing = rejected("ResourceNotFoundException", "Stream s not found");
        p.on_call_done(stream(), batch, CallResult::Failed(missing));
        let failed: Vec<_> = s_rx.iter_mut().filter_map(|r| r.try_recv().ok()).collect();
        assert_eq!(failed.len(), 3, "the one sent and the two queued");
        for f in &failed {
            let f = f.as_ref().unwrap_err();
            assert!(f.reason.is_stream_level(), "{f}");
            assert!(!f.reason.is_retryable());
            assert!(matches!(
                &f.reason,
                FailureReason::Rejected { code, message }
                    if code == "ResourceNotFoundException" && message == "Stream s not found"
            ));
        }
        // The other stream is untouched and still sends.
        assert!(t_rx.iter_mut().all(|r| r.try_recv().is_err()));
        assert_eq!(p.outstanding(), 2);
        assert!(p.collect(&Arc::from("t"), Instant::now()).is_some());

        let reports = drain_reports(&mut reports_rx);
        assert_eq!(reports.len(), 2, "{reports:?}");
        assert_eq!(
            (
                reports[0].code.as_str(),
                reports[0].records,
                reports[0].retryable
            ),
            ("ValidationException", 1, false)
        );
        assert_eq!(
            (
                reports[1].code.as_str(),
                reports[1].records,
                reports[1].retryable
            ),
            ("ResourceNotFoundException", 3, false)
        );
        assert_eq!(reports[1].operation, "PutRecords");
        assert_eq!(&*reports[1].stream, "s");

        // Records put to the stream later are tried again.
        let mut later = put_to(&mut p, "s", "k9");
        assert!(later.try_recv().is_err());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(p.collect(&stream(), Instant::now()).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_list_shards_refusal_fails_the_stream_unless_only_listing_is_denied() {
        let mut p = pipeline(Config::default());
        p.stream_state("s");
        p.stream_state("t");
        let mut reports_rx = p.failures.subscribe();
        let mut s_rx: Vec<_> = (0..3)
            .map(|i| put_to(&mut p, "s", &format!("k{i}")))
            .collect();
        let mut t_rx = put_to(&mut p, "t", "k");
        // ListShards may be denied to a client that may write: keep sending unaggregated.
        let denied = rejected("AccessDeniedException", "not allowed to list");
        p.on_shard_map(Arc::from("t"), Err(denied));
        assert!(t_rx.try_recv().is_err());
        assert_eq!(
            p.streams["t"].next_refresh,
            Instant::now() + Duration::from_secs(60),
            "asked again only at the refresh interval"
        );
        let missing = rejected("ResourceNotFoundException", "Stream s not found");
        p.on_shard_map(stream(), Err(missing));
        for r in &mut s_rx {
            let f = r.try_recv().unwrap().unwrap_err();
            assert!(f.reason.is_stream_level());
            assert!(f.attempts.is_empty(), "never sent");
        }
        assert_eq!(
            p.streams["s"].next_refresh,
            Instant::now() + Duration::from_secs(1)
        );
        let reports = drain_reports(&mut reports_rx);
        let summary: Vec<_> = reports
            .iter()
            .map(|r| {
                (
                    &*r.stream,
                    r.operation,
                    r.code.as_str(),
                    r.records,
                    r.retryable,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("t", "ListShards", "AccessDeniedException", 0, false),
                ("s", "ListShards", "ResourceNotFoundException", 3, false),
            ]
        );
        // A temporary failure is reported as such and fails nothing.
        let mut late = put_to(&mut p, "s", "k");
        let refused = CallError::retryable(crate::failure::DISPATCH_FAILURE, "io error");
        p.on_shard_map(stream(), Err(refused));
        assert!(late.try_recv().is_err());
        let reports = drain_reports(&mut reports_rx);
        assert_eq!(reports.len(), 1);
        assert!(reports[0].retryable);
    }

    #[tokio::test(start_paused = true)]
    async fn failure_reports_are_one_per_call_and_per_distinct_record_error() {
        let config = Config {
            aggregation: false,
            max_buffered_time: Duration::ZERO,
            ..Config::default()
        };
        let mut p = mapped(config);
        // Nobody listens: reporting is skipped, nothing breaks.
        let _rx: Vec<_> = (0..2).map(|i| put(&mut p, &format!("a{i}"), 10)).collect();
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        p.on_call_done(
            stream(),
            batch,
            CallResult::Failed(CallError::retryable("InternalFailure", "boom")),
        );
        assert_eq!(p.streams["s"].put_failures.calls, 1);

        let mut reports_rx = p.failures.subscribe();
        tokio::time::advance(Duration::from_secs(3)).await;
        let _rx: Vec<_> = (0..6).map(|i| put(&mut p, &format!("k{i}"), 10)).collect();
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch.len(), 8);
        let throttled = || {
            PutRecordsResultEntry::builder()
                .error_code("ProvisionedThroughputExceededException")
                .error_message("Rate exceeded for shard")
                .build()
        };
        let internal = || {
            PutRecordsResultEntry::builder()
                .error_code("InternalFailure")
                .error_message("Internal service failure.")
                .build()
        };
        let mut results = all_ok(&batch);
        for i in [0, 2, 4, 6] {
            results[i] = throttled();
        }
        for i in [1, 5] {
            results[i] = internal();
        }
        p.on_call_done(stream(), batch, CallResult::Ok(results));
        let reports = drain_reports(&mut reports_rx);
        let summary: Vec<_> = reports
            .iter()
            .map(|r| (r.code.as_str(), r.records, r.throttled, r.retryable))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("ProvisionedThroughputExceededException", 4, true, true),
                ("InternalFailure", 2, false, true),
            ]
        );
        assert_eq!(reports[1].message, "Internal service failure.");
        assert_eq!(p.streams["s"].put_failures.calls, 2, "still failing");

        // One report for a whole failed call, whatever its size.
        tokio::time::advance(Duration::from_secs(5)).await;
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch.len(), 6);
        let refused = CallError::retryable(crate::failure::DISPATCH_FAILURE, "io error");
        p.on_call_done(stream(), batch, CallResult::Failed(refused));
        let reports = drain_reports(&mut reports_rx);
        assert_eq!(reports.len(), 1);
        assert_eq!((reports[0].records, reports[0].retryable), (6, true));
        assert_eq!(p.streams["s"].put_failures.calls, 3);

        // A clean call ends the streak; throttling alone neither starts nor ends one.
        tokio::time::advance(Duration::from_secs(5)).await;
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        let results = all_ok(&batch);
        p.on_call_done(stream(), batch, CallResult::Ok(results));
        assert_eq!(p.streams["s"].put_failures.calls, 0);
        assert!(drain_reports(&mut reports_rx).is_empty());
        let _rx = put(&mut p, "x", 10);
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        p.on_call_done(stream(), batch, CallResult::Ok(vec![throttled()]));
        assert_eq!(p.streams["s"].put_failures.calls, 0);
        assert_eq!(drain_reports(&mut reports_rx).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn records_linger_for_max_buffered_time_then_go_out_together() {
        let mut p = mapped(Config::default());
        let _rx: Vec<_> = (0..10).map(|i| put(&mut p, &format!("k{i}"), 10)).collect();
        assert!(p.collect(&stream(), Instant::now()).is_none());
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(p.collect(&stream(), Instant::now()).is_none());
        assert_eq!(
            p.next_wake(Instant::now()),
            Some(Instant::now() + Duration::from_millis(1))
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let batch = p
            .collect(&stream(), Instant::now())
            .expect("linger is over");
        // Aggregated per predicted shard: one Kinesis record per shard.
        assert_eq!(batch.len(), 2);
        assert_eq!(batch.iter().map(|e| e.items.len()).sum::<usize>(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_aggregate_does_not_wait_but_a_partial_one_does() {
        let config = Config {
            aggregation_max_size: 1000,
            collection_max_count: 2,
            ..Config::default()
        };
        let mut p = mapped(config);
        // Two full aggregates' worth on the same key: enough for a full call.
        let _rx: Vec<_> = (0..20).map(|_| put(&mut p, "same", 100)).collect();
        let batch = p.collect(&stream(), Instant::now()).expect("full call");
        assert_eq!(batch.len(), 2);
        assert!(batch.iter().all(|e| e.data.len() <= 1000));
    }

    #[tokio::test(start_paused = true)]
    async fn flush_sends_without_lingering() {
        let mut p = mapped(Config::default());
        let _rx = put(&mut p, "k", 10);
        assert!(p.collect(&stream(), Instant::now()).is_none());
        let (tx, mut done) = oneshot::channel();
        p.on_command(Command::Flush(tx));
        assert!(p.collect(&stream(), Instant::now()).is_some());
        assert!(done.try_recv().is_err(), "not settled yet");
    }

    #[tokio::test(start_paused = true)]
    async fn records_expire_at_their_ttl_with_the_reason() {
        let config = Config {
            record_ttl: Duration::from_secs(5),
            per_key_ordering: true,
            ..Config::default()
        };
        let mut p = pipeline(config); // no shard map: ordered mode cannot send
        p.stream_state("s");
        p.streams.get_mut("s").unwrap().refreshing = true; // a load that never answers
        let mut rx = put(&mut p, "k", 10);
        tokio::time::advance(Duration::from_millis(4_999)).await;
        p.expire(Instant::now());
        assert!(rx.try_recv().is_err());
        assert_eq!(
            p.next_wake(Instant::now()),
            Some(Instant::now() + Duration::from_millis(1)),
            "woken for the expiry, not spinning on the unsendable queue"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        p.expire(Instant::now());
        let failed = rx.try_recv().unwrap().unwrap_err();
        assert_eq!(
            failed.reason,
            FailureReason::Expired {
                ttl: Duration::from_secs(5)
            }
        );
        assert_eq!(failed.record.unwrap().partition_key, "k");
        assert_eq!(p.outstanding(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_shard_backs_off_exponentially_and_keeps_its_order() {
        let config = Config {
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
            max_buffered_time: Duration::ZERO,
            ..Config::default()
        };
        let mut p = mapped(config);
        let _rx: Vec<_> = (0..3).map(|i| put(&mut p, "k", i + 1)).collect();
        let mut delays = Vec::new();
        for _ in 0..5 {
            let batch = p.collect(&stream(), Instant::now()).expect("sendable");
            p.in_flight_calls += 1;
            p.in_flight_calls -= 1;
            let failed = CallResult::Failed(CallError::retryable("InternalFailure", "boom"));
            let start = Instant::now();
            p.on_call_done(stream(), batch, failed);
            assert!(
                p.collect(&stream(), Instant::now()).is_none(),
                "backing off"
            );
            let wake = p.next_wake(Instant::now()).unwrap();
            delays.push(wake - start);
            tokio::time::advance(wake - start).await;
        }
        // Jittered exponential: each delay within [min * 2^n, 2 * min * 2^n], capped.
        for (n, d) in delays.iter().enumerate() {
            let base = Duration::from_millis(100) * 2u32.pow(n as u32);
            assert!(*d >= base.min(Duration::from_millis(800)), "{n}: {d:?}");
            assert!(
                *d <= (base * 2).min(Duration::from_millis(1600)),
                "{n}: {d:?}"
            );
        }
        // Retries keep put order within the shard.
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        let sizes: Vec<usize> = batch[0]
            .items
            .iter()
            .map(|i| i.record.data().len())
            .collect();
        assert_eq!(sizes, vec![1, 2, 3]);
        assert_eq!(batch[0].items[0].attempts.len(), 5);
        assert_eq!(batch[0].items[0].calls, 0, "calls are counted by launch");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_backs_its_shards_off_one_step_whatever_its_size() {
        let config = Config {
            aggregation: false,
            max_buffered_time: Duration::ZERO,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..Config::default()
        };
        for throttled_records in [false, true] {
            let mut p = mapped(config.clone());
            let _rx: Vec<_> = (0..200)
                .map(|i| put(&mut p, &format!("k{i}"), 10))
                .collect();
            let batch = p.collect(&stream(), Instant::now()).unwrap();
            assert_eq!(batch.len(), 200);
            let result = if throttled_records {
                let throttled = PutRecordsResultEntry::builder()
                    .error_code("ProvisionedThroughputExceededException")
                    .error_message("Rate exceeded for shard")
                    .build();
                CallResult::Ok(vec![throttled; 200])
            } else {
                CallResult::Failed(CallError::retryable("InternalFailure", "boom"))
            };
            let start = Instant::now();
            p.on_call_done(stream(), batch, result);
            let wake = p.next_wake(start).unwrap();
            // The first step: min to 2 x min (jitter), for both shards.
            assert!(
                wake - start <= Duration::from_millis(200),
                "throttled records: {throttled_records}: {:?}",
                wake - start
            );
            for q in p.streams["s"].shards.values() {
                let until = q.backoff_until.expect("backing off");
                assert!(until - start <= Duration::from_millis(200));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_refused_as_too_large_or_invalid_is_split_not_failed() {
        let config = Config {
            aggregation: false,
            max_buffered_time: Duration::ZERO,
            ..Config::default()
        };
        let mut p = mapped(config);
        let mut rx: Vec<_> = (0..4).map(|i| put(&mut p, &format!("k{i}"), 10)).collect();
        for code in [REQUEST_TOO_LARGE, "ValidationException"] {
            let batch = p.collect(&stream(), Instant::now()).expect("due");
            assert_eq!(batch.len(), 4);
            let refused = CallResult::Failed(rejected(code, "no"));
            p.on_call_done(stream(), batch, refused);
            assert_eq!(p.in_flight_calls, 2, "{code}: split into two calls");
            assert!(
                rx.iter_mut().all(|r| r.try_recv().is_err()),
                "nothing failed"
            );
            // The halves come back (the endpoint is unreachable): put them back in line.
            let mut back = Vec::new();
            for _ in 0..2 {
                match p.events.recv().await {
                    Some(Event::CallDone { entries, .. }) => back.extend(entries),
                    other => panic!("{other:?}"),
                }
            }
            p.in_flight_calls = 0;
            let items: Vec<_> = back
                .into_iter()
                .flat_map(|e| {
                    let key = e.predicted.clone();
                    e.items.into_iter().map(move |i| (key.clone(), i))
                })
                .collect();
            for (key, _) in &items {
                p.streams
                    .get_mut("s")
                    .unwrap()
                    .shards
                    .get_mut(key)
                    .unwrap()
                    .in_flight = 0;
            }
            p.requeue(&stream(), items);
        }
        // A call of one record the server refuses fails that record, with the reason.
        let mut batch = p.collect(&stream(), Instant::now()).unwrap();
        batch.truncate(1);
        p.on_call_done(
            stream(),
            batch,
            CallResult::Failed(rejected("ValidationException", "bad key")),
        );
        let failed: Vec<_> = rx.iter_mut().filter_map(|r| r.try_recv().ok()).collect();
        assert_eq!(failed.len(), 1);
        assert!(matches!(
            &failed[0].as_ref().unwrap_err().reason,
            FailureReason::Rejected { code, .. } if code == "ValidationException"
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_records_retry_or_fail_at_once_as_configured() {
        for fail_if_throttled in [false, true] {
            let config = Config {
                aggregation: false,
                fail_if_throttled,
                max_buffered_time: Duration::ZERO,
                ..Config::default()
            };
            let mut p = mapped(config);
            let mut rx = put(&mut p, "k", 10);
            let batch = p.collect(&stream(), Instant::now()).unwrap();
            let throttled = PutRecordsResultEntry::builder()
                .error_code("ProvisionedThroughputExceededException")
                .error_message("Rate exceeded for shard")
                .build();
            p.on_call_done(stream(), batch, CallResult::Ok(vec![throttled]));
            assert_eq!(
                p.stats.throttles.load(std::sync::atomic::Ordering::Relaxed),
                1
            );
            if fail_if_throttled {
                let failed = rx.try_recv().unwrap().unwrap_err();
                assert_eq!(failed.reason, FailureReason::Throttled);
                assert!(failed.reason.is_throttling());
                assert!(failed.attempts[0].throttled);
            } else {
                assert!(rx.try_recv().is_err(), "waiting for its retry");
                assert_eq!(p.outstanding(), 1);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_shard_map_records_wait_their_linger_to_be_aggregated() {
        let mut p = pipeline(Config::default());
        p.stream_state("s");
        // Far more than a full call, but no shard map yet: keep waiting for it.
        let _rx: Vec<_> = (0..2_000)
            .map(|i| put(&mut p, &format!("k{i}"), 10))
            .collect();
        assert!(p.collect(&stream(), Instant::now()).is_none());
        // The map arrives: the records are aggregated per shard.
        p.on_shard_map(stream(), Ok(two_shards()));
        tokio::time::advance(Duration::from_millis(100)).await;
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert!(
            batch.len() <= 4,
            "aggregated: {} Kinesis records",
            batch.len()
        );
        // With no map at all, the linger sends them raw (Kinesis routes each).
        let mut p = pipeline(Config::default());
        p.stream_state("s");
        let _rx: Vec<_> = (0..10).map(|i| put(&mut p, &format!("k{i}"), 10)).collect();
        tokio::time::advance(Duration::from_millis(100)).await;
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch.len(), 10);
        assert!(batch
            .iter()
            .all(|e| e.predicted.is_none() && e.items.len() == 1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limiter_holds_back_a_hot_shard_only() {
        let config = Config {
            aggregation: false,
            rate_limit_percent: 1, // 10 records/s per shard
            max_buffered_time: Duration::ZERO,
            ..Config::default()
        };
        let mut p = mapped(config);
        let map = two_shards();
        // Find keys for each shard.
        let keys: Vec<String> = (0..1000).map(|i| format!("k{i}")).collect();
        let lo: Vec<&String> = keys
            .iter()
            .filter(|k| {
                map.predict(HashKey::from_partition_key(k)).map(|s| &**s) == Some("shard-lo")
            })
            .take(30)
            .collect();
        let hi = keys
            .iter()
            .find(|k| map.predict(HashKey::from_partition_key(k)).map(|s| &**s) == Some("shard-hi"))
            .unwrap();
        let _rx: Vec<_> = lo.iter().map(|k| put(&mut p, k, 10)).collect();
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch.len(), 10, "one second's worth of the hot shard");
        let _rx2 = put(&mut p, hi, 10);
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch.len(), 1, "the other shard is not held back");
        assert_eq!(batch[0].predicted.as_deref(), Some("shard-hi"));
        assert!(p.collect(&stream(), Instant::now()).is_none());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(p.collect(&stream(), Instant::now()).unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn ordered_mode_keeps_one_record_per_shard_in_flight() {
        let config = Config {
            aggregation: false,
            per_key_ordering: true,
            max_buffered_time: Duration::ZERO,
            ..Config::default()
        };
        let mut p = mapped(config);
        let _rx: Vec<_> = (0..50).map(|i| put(&mut p, &format!("k{i}"), 10)).collect();
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch.len(), 2, "one per shard");
        assert!(
            p.collect(&stream(), Instant::now()).is_none(),
            "both shards busy"
        );
        let results = batch
            .iter()
            .map(|e| {
                PutRecordsResultEntry::builder()
                    .shard_id(e.predicted.as_deref().unwrap())
                    .sequence_number("1")
                    .build()
            })
            .collect();
        p.on_call_done(stream(), batch, CallResult::Ok(results));
        assert_eq!(p.collect(&stream(), Instant::now()).unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_aggregate_in_a_shard_not_owning_all_its_records_is_resent_whole() {
        let mut p = mapped(Config::default());
        // Two keys of different shards forced into one aggregate through a stale map
        // that has a single shard.
        p.on_shard_map(
            stream(),
            Ok(ShardMap::from_shards(vec![(
                "shard-lo".to_string(),
                HashKeyRange::ALL,
                true,
            )])),
        );
        let (lo, hi) = &keys_of_both_halves();
        let mut first = put(&mut p, lo, 10);
        let mut second = put(&mut p, hi, 10);
        let (tx, _done) = oneshot::channel();
        p.on_command(Command::Flush(tx));
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].items.len(), 2);
        // Sent under the fixed key, routed by the first record's hash key.
        assert_eq!(batch[0].partition_key(), WHOLE_RESEND_PARTITION_KEY);
        assert_eq!(
            batch[0].explicit_hash_key,
            Some(HashKey::from_partition_key(lo))
        );
        // Kinesis split the stream meanwhile: the aggregate lands in shard-lo, which now
        // owns only the lower half.
        p.streams.get_mut("s").unwrap().map = Some(Arc::new(two_shards()));
        let ok = PutRecordsResultEntry::builder()
            .shard_id("shard-lo")
            .sequence_number("7")
            .build();
        p.on_call_done(stream(), batch, CallResult::Ok(vec![ok]));
        // Neither is delivered there: a Java KCL reader discards the whole aggregate.
        assert!(first.try_recv().is_err() && second.try_recv().is_err());
        assert_eq!(
            p.stats
                .wrong_shard_resends
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        // After the map reload both are queued again, each for its own shard.
        p.on_shard_map(stream(), Ok(two_shards()));
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        let mut sent: Vec<_> = batch
            .iter()
            .map(|e| (e.predicted.as_deref().unwrap(), e.items.len()))
            .collect();
        sent.sort();
        assert_eq!(sent, vec![("shard-hi", 1), ("shard-lo", 1)]);
        for e in &batch {
            assert_eq!(e.items[0].attempts[0].code, WRONG_SHARD);
            assert!(e.items[0].attempts[0].message.contains("shard-lo"));
        }
        let results = batch
            .iter()
            .map(|e| {
                PutRecordsResultEntry::builder()
                    .shard_id(e.predicted.as_deref().unwrap())
                    .sequence_number("8")
                    .build()
            })
            .collect();
        p.on_call_done(stream(), batch, CallResult::Ok(results));
        // (Calls are counted at launch, which this test does not do.)
        let d = first.try_recv().unwrap().unwrap();
        assert_eq!((&*d.shard_id, d.sub_sequence_number), ("shard-lo", 0));
        let d = second.try_recv().unwrap().unwrap();
        assert_eq!((&*d.shard_id, d.sub_sequence_number), ("shard-hi", 0));
    }

    /// Found by the demo and the chaos suite: in ordered mode, a newer record of a key
    /// whose older record waits for its re-send must not go out first.
    #[tokio::test(start_paused = true)]
    async fn ordered_mode_sends_nothing_of_the_stream_while_records_wait_for_a_resend() {
        let mut p = mapped(Config {
            per_key_ordering: true,
            ..Config::default()
        });
        p.on_shard_map(
            stream(),
            Ok(ShardMap::from_shards(vec![(
                "shard-lo".to_string(),
                HashKeyRange::ALL,
                true,
            )])),
        );
        let (lo, hi) = &keys_of_both_halves();
        let _first = put(&mut p, lo, 10);
        let mut second = put(&mut p, hi, 10);
        let (tx, _done) = oneshot::channel();
        p.on_command(Command::Flush(tx));
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch[0].items.len(), 2, "one aggregate of both keys");
        p.streams.get_mut("s").unwrap().map = Some(Arc::new(two_shards()));
        let ok = PutRecordsResultEntry::builder()
            .shard_id("shard-lo")
            .sequence_number("7")
            .build();
        p.on_call_done(stream(), batch, CallResult::Ok(vec![ok]));
        // Both wait for their re-send. A newer record of `hi` must wait too: sent now, it
        // would land in shard-hi before `second`.
        let mut third = put(&mut p, hi, 10);
        let (tx, _done) = oneshot::channel();
        p.on_command(Command::Flush(tx));
        assert!(
            p.collect(&stream(), Instant::now()).is_none(),
            "nothing of the stream goes out before the re-sends"
        );
        // The map reload queues the re-sends back in line, before `third`.
        p.on_shard_map(stream(), Ok(two_shards()));
        let mut order = Vec::new();
        while order.len() < 3 {
            let batch = p
                .collect(&stream(), Instant::now())
                .expect("records to send");
            let mut results = Vec::new();
            for e in &batch {
                if e.predicted.as_deref() == Some("shard-hi") {
                    order.extend(e.items.iter().map(|i| i.attempts.len()));
                } else {
                    order.push(usize::MAX); // shard-lo's re-send
                }
                results.push(
                    PutRecordsResultEntry::builder()
                        .shard_id(e.predicted.as_deref().unwrap())
                        .sequence_number(format!("{}", 8 + order.len()))
                        .build(),
                );
            }
            p.on_call_done(stream(), batch, CallResult::Ok(results));
        }
        let hi_order: Vec<usize> = order.into_iter().filter(|a| *a != usize::MAX).collect();
        assert_eq!(
            hi_order,
            [1, 0],
            "the re-sent record (one attempt) before the newer one"
        );
        let (s, t) = (
            second.try_recv().unwrap().unwrap(),
            third.try_recv().unwrap().unwrap(),
        );
        assert_eq!(&*s.shard_id, "shard-hi");
        assert!(
            (
                s.sequence_number.parse::<u64>().unwrap(),
                s.sub_sequence_number
            ) < (
                t.sequence_number.parse::<u64>().unwrap(),
                t.sub_sequence_number
            ),
            "{s:?} before {t:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_record_keeps_its_own_key_and_an_aggregate_in_its_shard_is_delivered() {
        let mut p = mapped(Config::default());
        let (lo, _) = &keys_of_both_halves();
        let mut alone = put(&mut p, lo, 10);
        let (tx, _done) = oneshot::channel();
        p.on_command(Command::Flush(tx));
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch[0].partition_key(), lo.as_str());
        assert_eq!(batch[0].explicit_hash_key, None);
        // Landing in another shard than predicted, Kinesis routed it by its own key: it
        // is where it belongs.
        let landed = |shard: &str| {
            PutRecordsResultEntry::builder()
                .shard_id(shard)
                .sequence_number("3")
                .build()
        };
        p.on_call_done(stream(), batch, CallResult::Ok(vec![landed("shard-new")]));
        let d = alone.try_recv().unwrap().unwrap();
        assert_eq!(
            (&*d.shard_id, d.sub_sequence_number, d.aggregated),
            ("shard-new", 0, false)
        );
        // An aggregate whose records its shard owns: each at its position.
        let mut rx: Vec<_> = (0..3).map(|_| put(&mut p, lo, 10)).collect();
        let (tx, _done) = oneshot::channel();
        p.on_command(Command::Flush(tx));
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch.len(), 1);
        p.on_call_done(stream(), batch, CallResult::Ok(vec![landed("shard-lo")]));
        for (sub, r) in rx.iter_mut().enumerate() {
            let d = r.try_recv().unwrap().unwrap();
            assert_eq!((d.sub_sequence_number, d.aggregated), (sub as u64, true));
        }
        assert_eq!(
            p.stats
                .wrong_shard_resends
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[tokio::test]
    async fn records_held_outside_the_queues_settle_at_their_ttl_without_a_new_map() {
        let mut p = mapped(Config::default());
        let (lo, hi) = &keys_of_both_halves();
        // One aggregate lands in a shard the map does not know (unverified), another in
        // shard-lo although one of its keys is shard-hi's (both records parked for a
        // re-send). The map is then never loaded again.
        let mut first = put(&mut p, lo, 10);
        let mut unknown = put(&mut p, lo, 10);
        let (tx, _done) = oneshot::channel();
        p.on_command(Command::Flush(tx));
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        let landed = |shard: &str, seq: &str| {
            PutRecordsResultEntry::builder()
                .shard_id(shard)
                .sequence_number(seq)
                .build()
        };
        p.on_call_done(
            stream(),
            batch,
            CallResult::Ok(vec![landed("shard-new", "8")]),
        );
        // A stale one-shard map packs keys of both halves into one aggregate; it lands in
        // shard-lo, which (by the current map) does not own the second.
        p.streams.get_mut("s").unwrap().map = Some(Arc::new(ShardMap::from_shards(vec![(
            "shard-lo".to_string(),
            HashKeyRange::ALL,
            true,
        )])));
        let mut first_lo = put(&mut p, lo, 10);
        let mut misrouted = put(&mut p, hi, 10);
        let (tx, _done) = oneshot::channel();
        p.on_command(Command::Flush(tx));
        let batch = p.collect(&stream(), Instant::now()).unwrap();
        assert_eq!(batch.len(), 1);
        p.streams.get_mut("s").unwrap().map = Some(Arc::new(two_shards()));
        p.on_call_done(
            stream(),
            batch,
            CallResult::Ok(vec![landed("shard-lo", "9")]),
        );
        for rx in [&mut first, &mut unknown, &mut first_lo, &mut misrouted] {
            assert!(
                rx.try_recv().is_err(),
                "held: the whole aggregate is in doubt"
            );
        }
        let ttl = p.config.record_ttl;
        let wake = p
            .next_wake(Instant::now())
            .expect("a wake-up for the held records");
        assert!(
            wake <= Instant::now() + ttl,
            "woken by their TTL at the latest"
        );
        p.expire(Instant::now() + ttl + Duration::from_millis(1));
        for (sub, rx) in [&mut first, &mut unknown].into_iter().enumerate() {
            let d = rx.try_recv().unwrap().expect("in the stream: delivered");
            assert_eq!(
                (&*d.shard_id, &*d.sequence_number, d.sub_sequence_number),
                ("shard-new", "8", sub as u64)
            );
        }
        for rx in [&mut first_lo, &mut misrouted] {
            let f = rx.try_recv().unwrap().expect_err("never re-sent: failed");
            assert_eq!(f.reason, FailureReason::Expired { ttl });
            assert_eq!(f.last_attempt().map(|a| a.code.as_str()), Some(WRONG_SHARD));
        }
    }
}
