//! The background pipeline: one task that owns every buffer, and short-lived tasks for
//! the `PutRecords` and `ListShards` calls. The task's state is made of self-contained
//! parts, each in its own file: the messages ([`message`]), each stream's queues and
//! batching ([`stream`], [`shard_queue`], [`batch`]), the call and the classification of
//! its answer ([`put_records`]), and the accounts of unsettled records ([`ledger`]). This
//! file decides what to do with each event and settles records.
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

mod batch;
mod ledger;
mod message;
mod put_records;
mod shard_queue;
mod stream;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
mod warm;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use backon::{BackoffBuilder, ExponentialBuilder};
use kinesis_agg::HashKeyRange;
use smallvec::SmallVec;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use message::OutcomeTx;
pub(crate) use message::{Budget, Command, Item};

use crate::config::Config;
use crate::error::FailureReason;
use crate::failure::{CallError, CallFailure, REQUEST_TIMEOUT};
use crate::outcome::{Attempt, Delivered, Failed};
use crate::put_all::BatchSettler;
use crate::record::ProducerRecord;
use crate::shard_map::{ShardMap, LIST_SHARDS};
use crate::stats::Stats;
use batch::{push_once, runs, Batcher, Entry};
use ledger::Ledger;
use message::{CallResult, Event};
use put_records::{
    fails_at_once, record_result, should_split, AttemptFailure, RecordErrors, RecordResult,
    StreakChange, PUT_RECORDS,
};
use shard_queue::{ShardKey, ShardQueue};
use stream::{FastMap, StreamState, Unverified};

/// Error code recorded in an [`Attempt`] when an aggregate landed in a shard that does
/// not own every user record of it, and all of them are sent again.
pub(crate) const WRONG_SHARD: &str = "WrongShardAfterReshard";

/// Most commands handled between two dispatch rounds.
const COMMANDS_PER_ROUND: usize = 1024;

/// The longest a shard waits after a call in which Kinesis only throttled it (the
/// exponential backoff still grows, but is cut here): Kinesis' write limits are per second
/// per shard and the rate limiter already paces the shard, so a longer wait sleeps through
/// capacity the shard could use. Measured at the emulator's enforced limits
/// (BENCHMARKS.md, "At the shard limit"): with the 2 s maximum the producer reached 37 %
/// (unaggregated) and 50 % (aggregated) of the bound; with 100 ms, 92 % and 90 %. Other
/// failures (server errors, lost connections) keep the full `with_backoff` range.
pub(crate) const THROTTLE_MAX_BACKOFF: Duration = Duration::from_millis(100);

/// The pipeline task's state.
pub(crate) struct Pipeline {
    /// The clock read once per event, for per-record latencies.
    now: Instant,
    /// The SDK client every call goes through.
    client: Client,
    /// The settings, fixed at build time.
    config: Config,
    /// Counters and metrics, shared with the `Producer` handle.
    stats: Arc<Stats>,
    /// Commands from the `Producer` handle.
    commands: mpsc::UnboundedReceiver<Command>,
    /// Every `Producer` clone is gone: no more commands.
    commands_closed: bool,
    /// Handed to spawned calls, to send their answers back.
    events_tx: mpsc::UnboundedSender<Event>,
    /// The answers of spawned calls.
    events: mpsc::UnboundedReceiver<Event>,
    /// Per-stream state, by name.
    streams: FastMap<Arc<str>, StreamState>,
    /// Round-robin start among streams, for fairness.
    stream_cursor: usize,
    /// `PutRecords` calls under way.
    in_flight_calls: usize,
    /// Unsettled records by flush epoch, flush waiters, budget to release.
    ledger: Ledger,
    /// Shutdown requested: exit once everything is settled.
    shutting_down: bool,
    /// The aggregator and the pool of emptied batches.
    batcher: Batcher,
    /// Each shard's backoff after a failure starts from this.
    backoff_builder: ExponentialBuilder,
    /// Failed calls, as they happen, to `Producer::failures` subscribers.
    failures: broadcast::Sender<CallFailure>,
    /// Writes the outcomes of consecutive records of one `put_all` batch together.
    settler: BatchSettler,
}

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
        let backoff_builder = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(config.min_backoff)
            .with_max_delay(config.max_backoff)
            .without_max_times();
        Pipeline {
            now: Instant::now(),
            client,
            batcher: Batcher::new(&config),
            config,
            stats,
            commands,
            commands_closed: false,
            events_tx,
            events,
            streams: FastMap::default(),
            stream_cursor: 0,
            in_flight_calls: 0,
            ledger: Ledger::default(),
            shutting_down: false,
            backoff_builder,
            failures,
            settler: BatchSettler::default(),
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
            self.ledger.end_round();
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
        // Commands sent as the loop ended (a `put` or `put_all` that got its budget as the
        // last records settled) would be dropped with the channel, their records lost
        // uncounted: refuse later sends (the caller gets its records back), and fail
        // these, their records handed back.
        self.commands.close();
        let mut late = false;
        while let Ok(cmd) = self.commands.try_recv() {
            self.on_command(cmd);
            late = true;
        }
        if late {
            self.on_abandoned();
            self.ledger.end_round();
        }
        // Nothing is left to settle; answer any remaining flush waiters.
        self.ledger.answer_all();
    }

    fn outstanding(&self) -> usize {
        self.ledger.outstanding()
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
                self.ledger.accept(&mut item);
                self.enqueue(item);
            }
            Command::PutAll(items) => self.enqueue_all(items),
            Command::Flush(tx) => self.ledger.flush(Some(tx)),
            Command::Shutdown => {
                self.shutting_down = true;
                self.ledger.flush(None);
            }
        }
    }

    /// Every `Producer` clone is gone without `shutdown`: fail what was not sent.
    fn on_abandoned(&mut self) {
        self.commands_closed = true;
        let mut dropped = Vec::new();
        for stream in self.streams.values_mut() {
            dropped.append(&mut stream.drain_queued());
            dropped.extend(stream.unverified.drain(..).flat_map(|u| u.items));
        }
        for item in dropped {
            self.fail(item, FailureReason::ShutDown);
        }
    }

    // ---- queues ---------------------------------------------------------------------

    /// Creates the state of stream `name` unless it exists.
    fn stream_state(&mut self, name: &str) {
        if !self.streams.contains_key(name) {
            let name: Arc<str> = Arc::from(name);
            let state = StreamState::new(name.clone(), Instant::now());
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

    /// Accepts and queues the records of a `put_all` batch, in order: the stream's state is
    /// looked up once per run of records to the same stream, not once per record.
    fn enqueue_all(&mut self, mut items: Vec<Item>) {
        let now = self.now;
        self.ledger.accept_all(&mut items);
        let mut items = items.into_iter().peekable();
        while let Some(first) = items.peek() {
            let name = first.stream.clone();
            if !self.streams.contains_key(&name) {
                self.stream_state(&name);
            }
            let state = self.streams.get_mut(&name).expect("created above");
            while let Some(item) = items.next_if(|i| *i.stream == *name) {
                state.push_predicted(item, &self.config, now);
            }
        }
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
            let e = stream.take_expired(now, ttl);
            expired.extend(e.items);
            unchecked.extend(e.unverified.into_iter().map(|u| (stream.name.clone(), u)));
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
            self.deliver_all(&u.shard_id, &u.sequence_number, u.items);
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
        let doomed = state.drain_queued();
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
    /// here: it is routine, counted in the stats); see [`stream::Streak::failed`].
    fn streak_failed(
        &mut self,
        stream: &Arc<str>,
        operation: &'static str,
        err: &CallError,
        records: usize,
    ) {
        if let Some(state) = self.streams.get_mut(stream) {
            state
                .streak(operation)
                .failed(stream, operation, err, records);
        }
    }

    /// A call of `operation` to `stream` succeeded; see [`stream::Streak::ended`].
    fn streak_ended(&mut self, stream: &Arc<str>, operation: &'static str) {
        if let Some(state) = self.streams.get_mut(stream) {
            state.streak(operation).ended(stream, operation);
        }
    }

    // ---- settling -------------------------------------------------------------------

    fn fail(&mut self, item: Item, reason: FailureReason) {
        self.stats.record_failed();
        tracing::debug!(stream = %item.stream, %reason, "user record failed");
        let failed = Failed {
            stream: item.stream.clone(),
            reason,
            attempts: item.attempts,
            record: Some(Box::new(ProducerRecord::from_user_record(
                &*item.stream,
                item.record,
            ))),
        };
        item.tx.send(Err(failed));
        self.ledger.settle(item.epoch, item.budget);
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
        self.stats.record_shard_map_load();
        self.streak_ended(&stream, LIST_SHARDS);
        let state = self.streams.get_mut(&stream).expect("looked up above");
        state.map_error = None;
        state.next_refresh = now + interval;
        let map = Arc::new(map);
        if state.install_map(map.clone(), &self.config, now) {
            tracing::debug!(stream = %stream, open_shards = map.open_count(), "shard map changed");
        }
        // Judge deliveries into shards the old map did not know.
        let unverified = std::mem::take(&mut state.unverified);
        for u in unverified {
            let range = map.range_of(&u.shard_id);
            if owns_all(range, &u.items) {
                self.deliver_all(&u.shard_id, &u.sequence_number, u.items);
            } else {
                // Not in the new map either, or not owning them all: send them all again.
                for item in u.items {
                    self.misrouted(item, &u.shard_id);
                }
            }
        }
    }

    /// Delivers every user record of one Kinesis record Kinesis put at `sequence_number`
    /// in `shard_id`, each at its sub-sequence number (its position). The per-record work
    /// is the outcome itself; the rest goes by runs: a batch's outcomes are written under
    /// one lock per run of its records ([`BatchSettler`]), and the ledger, counters and
    /// latency histogram are updated once per run of one flush epoch or one put time.
    fn deliver_all(
        &mut self,
        shard_id: &Arc<str>,
        sequence_number: &Arc<str>,
        items: SmallVec<[Item; 1]>,
    ) {
        let aggregated = items.len() > 1;
        // The outcomes of an aggregate get a shard id of their own: the map's is cloned for
        // every record of every aggregate of the shard here while the callers' threads
        // drop earlier outcomes' clones, and one shared count would go back and forth
        // between the cores.
        let own_shard_id;
        let shard_id = if aggregated {
            own_shard_id = Arc::<str>::from(&**shard_id);
            &own_shard_id
        } else {
            shard_id
        };
        // Counted before any outcome is out: whoever sees an outcome sees it counted.
        let payload: usize = items.iter().map(|i| i.record.data().len()).sum();
        // Each record's key and data are freed below, long after they were last touched.
        warm::warm(items.iter());
        self.stats
            .record_delivered(items.len() as u64, payload as u64);
        let mut epochs: SmallVec<[(u64, usize); 4]> = SmallVec::new();
        let mut put_times: SmallVec<[(Instant, usize); 4]> = SmallVec::new();
        for (sub, item) in items.into_iter().enumerate() {
            let Item {
                stream,
                tx,
                put_at,
                calls,
                epoch,
                budget,
                ..
            } = item;
            count_run(&mut epochs, epoch);
            count_run(&mut put_times, put_at);
            let d = Ok(Delivered {
                // The record's own (shared per `put_all` batch, or the producer's), moved.
                stream,
                shard_id: shard_id.clone(),
                sequence_number: sequence_number.clone(),
                sub_sequence_number: sub as u64,
                aggregated,
                attempts: calls,
            });
            match tx {
                OutcomeTx::One(tx) => {
                    let _ = tx.send(d);
                }
                OutcomeTx::Batch(slot) => self.settler.push(slot, d),
            }
            self.ledger.release(budget);
        }
        // Outcomes first, then the flush waiters: a flush answered means its records'
        // handles are resolved.
        self.settler.finish();
        for (put_at, n) in put_times {
            let latency = self.now.saturating_duration_since(put_at);
            self.stats.record_delivery_latency(latency, n);
        }
        for (epoch, n) in epochs {
            self.ledger.settled(epoch, n);
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
    /// for aggregates under [`kinesis_agg::WHOLE_RESEND_PARTITION_KEY`], so it reads each
    /// record once.
    fn misrouted(&mut self, mut item: Item, shard_id: &str) {
        self.stats.record_wrong_shard_resend();
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
        let can_call = self.in_flight_calls < self.config.max_concurrent_requests;
        let urgent = self.ledger.urgent_epoch();
        self.streams
            .values()
            .filter_map(|s| s.wake_at(&self.config, urgent, can_call, now))
            .min()
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

    /// Builds the next batch for one stream, or `None` if nothing is due (see
    /// [`StreamState::collect`]).
    fn collect(&mut self, stream: &Arc<str>, now: Instant) -> Option<Vec<Entry>> {
        let state = self.streams.get_mut(stream)?;
        state.collect(
            &self.config,
            self.ledger.urgent_epoch(),
            &mut self.batcher,
            now,
        )
    }

    fn launch(&mut self, stream: Arc<str>, mut entries: Vec<Entry>) {
        self.in_flight_calls += 1;
        let bytes: usize = entries.iter().map(Entry::size).sum();
        let retries = entries
            .iter()
            .filter(|e| e.items.iter().any(|i| i.calls > 0))
            .count();
        self.stats.record_call(entries.len(), bytes, retries);
        let now = Instant::now();
        for e in &mut entries {
            for i in &mut e.items {
                if i.calls == 0 {
                    self.stats
                        .record_first_send(now.saturating_duration_since(i.put_at));
                }
                i.calls += 1;
            }
        }
        put_records::spawn(
            &self.client,
            stream,
            entries,
            self.config.request_timeout,
            self.events_tx.clone(),
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
        if let CallResult::Failed(err) = &result {
            if should_split(err, entries.len()) && !self.commands_closed {
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
        // Shards refused for a reason other than throttling in this call: their backoff is
        // not capped at THROTTLE_MAX_BACKOFF.
        let mut erring_shards: Vec<ShardKey> = Vec::new();
        let mut succeeded_shards: Vec<ShardKey> = Vec::new();
        if let Some(state) = self.streams.get_mut(&stream) {
            // Entries come in runs from one queue (see `collect`): one lookup per run.
            for (key, run) in runs(&entries) {
                if let Some(q) = state.shards.get_mut(key) {
                    q.in_flight = q.in_flight.saturating_sub(run);
                }
            }
        }
        match result {
            CallResult::Failed(err) => {
                if err.throttled {
                    self.stats.record_throttle();
                }
                let failure = AttemptFailure::of_call(&err, now);
                for e in entries.drain(..) {
                    push_once(&mut backoff_shards, &e.predicted);
                    if !err.throttled {
                        push_once(&mut erring_shards, &e.predicted);
                    }
                    self.entry_failed(e, &failure, &mut retry);
                }
                let mut records = user_records;
                if err.stream_level {
                    records += self.fail_stream(&stream, &err);
                }
                let retryable = !fails_at_once(&err, self.config.fail_if_throttled);
                self.report(&stream, PUT_RECORDS, &err, retryable, records);
                if !err.throttled {
                    self.streak_failed(&stream, PUT_RECORDS, &err, records);
                }
            }
            CallResult::Ok(results) => {
                let mut results = results.iter();
                let mut record_errors = RecordErrors::default();
                let mut delivered_any = false;
                // The shard the previous record landed in: consecutive records mostly
                // land in the same one, so it is looked up once per run.
                let mut landed: Option<Landed> = None;
                for e in entries.drain(..) {
                    match record_result(results.next(), now) {
                        RecordResult::Landed {
                            shard_id,
                            sequence_number,
                        } => {
                            delivered_any = true;
                            push_once(&mut succeeded_shards, &e.predicted);
                            let shard = match landed.take() {
                                Some(l) if *l.shard_id == *shard_id => l,
                                _ => self.landed(&stream, shard_id),
                            };
                            self.on_record_delivered(&stream, e, &shard, sequence_number);
                            landed = Some(shard);
                        }
                        RecordResult::Refused(failure) => {
                            if failure.throttled {
                                self.stats.record_throttle();
                            } else {
                                push_once(&mut erring_shards, &e.predicted);
                            }
                            push_once(&mut backoff_shards, &e.predicted);
                            record_errors.add(&failure, e.items.len());
                            self.entry_failed(e, &failure, &mut retry);
                        }
                    }
                }
                let fail_if_throttled = self.config.fail_if_throttled;
                for (err, records) in record_errors.iter() {
                    let retryable = !fails_at_once(err, fail_if_throttled);
                    self.report(&stream, PUT_RECORDS, err, retryable, *records);
                }
                match record_errors.streak(delivered_any) {
                    StreakChange::Failed(err, records) => {
                        self.streak_failed(&stream, PUT_RECORDS, err, records);
                    }
                    StreakChange::Ended => self.streak_ended(&stream, PUT_RECORDS),
                    StreakChange::Unchanged => {}
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
                    let delay = if erring_shards.contains(&key) {
                        delay
                    } else {
                        delay.min(THROTTLE_MAX_BACKOFF)
                    };
                    q.backoff_until = Some(now + delay);
                }
            }
        }
        self.batcher.recycle(entries);
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
        let predicted_right = e.predicted.as_deref() == Some(&**shard_id);
        if !predicted_right && e.predicted.is_some() && !state.refreshing {
            // The map is stale (or the stream was resharded): reload it.
            state.next_refresh = Instant::now();
        }
        if e.items.len() == 1 || owns_all(landed.range, &e.items) {
            self.deliver_all(shard_id, &seq, e.items);
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

/// Counts `value` in `runs`, a list of runs of equal consecutive values.
fn count_run<T: PartialEq>(runs: &mut SmallVec<[(T, usize); 4]>, value: T) {
    match runs.last_mut() {
        Some((v, n)) if *v == value => *n += 1,
        _ => runs.push((value, 1)),
    }
}

/// Whether a shard of this hash key range (`None`: unknown) owns every one of `items`.
fn owns_all(range: Option<HashKeyRange>, items: &[Item]) -> bool {
    range.is_some_and(|r| items.iter().all(|i| r.contains(i.hash_key)))
}

/// The shard a record landed in, as the pipeline's shard map knows it.
#[derive(Debug)]
struct Landed {
    /// The map's shared id (a fresh one if the map does not know the shard).
    shard_id: Arc<str>,
    /// Its hash key range, if the map knows it.
    range: Option<HashKeyRange>,
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
