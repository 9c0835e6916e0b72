//! [`MultiStreamSync`]: a multi-stream worker's stream list and shard syncs — it asks the
//! [`StreamTracker`] for the streams, adds and retires them in [`ActiveStreams`], keeps each
//! stream's leases in step with its shards, and deletes the leases of former streams.
//!
//! ```text
//!  start-up (each step retried as the other start-up steps):
//!    add_streams: tracker ─▶ each stream: resolve (DescribeStreamSummary: ARN ─▶ account,
//!               StreamCreationTimestamp ─▶ epoch; nothing for an identifier read by polling)
//!               ─▶ (fan-out) every stream's consumer found or registered, until all ACTIVE
//!               ─▶ add (its records source: Polling, or FanOut for its consumer)
//!    (the scheduler creates the lease table)
//!    first_sync: every stream's first sync (one scan)
//!  run, until stop:
//!    every stream_tracker_interval: tracker ─▶ new streams resolved, (fan-out) their
//!        consumer found or registered, and added once it is ACTIVE (else at a later poll);
//!        streams gone from the list removed (the dispatcher stops and releases their
//!        leases; their stream consumer stays registered)
//!        ─▶ a sync at once, the taker woken
//!    every shard_sync_interval, at shard ends, after a change:
//!        one scan ─▶ each active stream's ShardSync::sync_unless_replaced
//!                      StreamNotFound, or an ended lease of a shard listed open
//!                        ─▶ IdentityChecks::suspect ─▶ a tracker poll at once
//!                 ─▶ FormerStreams::due ─▶ delete_lease (conditional on the counter)
//!    at each tracker poll, before the list is applied: the suspected streams, and one
//!        more in turn (IdentityChecks::routine), looked up again (DescribeStreamSummary)
//!        ─▶ recheck: same | replaced (new identifier) | gone | unknown (next poll)
//! ```
//!
//! Once running nothing here stops the worker: a tracker that fails keeps its previous
//! list in force, and a stream that cannot be resolved yet (or whose fan-out consumer is
//! not `ACTIVE` yet) is tried again at the next poll.
//!
//! # A stream deleted, or deleted and created again, while it is listed
//! A stream is consumed under its identifier `account:name:creationEpoch`, looked up
//! once when its name (or ARN) is listed; the shard syncs and reads name it by name (or
//! ARN), so after the stream is deleted and created again they reach the new stream
//! while the leases are the old one's. Its readers see the deletion as the end of each
//! shard (their processors get `shard_ended`, polling and fan-out alike). The worker
//! looks a stream up again (`DescribeStreamSummary`) when
//! - a shard sync gets `ResourceNotFoundException` (deleted), or finds a shard with a
//!   `SHARD_END` lease listed open (a shard never opens again: the shards are another
//!   stream's; nothing is written for the old identifier then). A shard end wakes a sync
//!   at once, so a deletion a reader saw is caught within a tracker-poll round trip;
//! - else in turn: each tracker poll looks up one consumed stream (round robin), so that a
//!   stream deleted and created again between two syncs, whose readers saw no end (an
//!   open lease no worker read meanwhile), is caught within one tracker interval per
//!   stream listed by name or ARN (with the defaults, 60 s × the number of streams).
//!
//! That costs one `DescribeStreamSummary` per tracker poll (its limit is 20 calls a
//! second per account, shared by every worker) instead of one per stream per poll, plus
//! one per suspicion. When the look-up finds another creation time, the old identifier
//! leaves the active streams as a stream dropped from the list does (its consumers stop,
//! its leases are released, and deleted as the [`FormerStreamsLeasesDeletionStrategy`]
//! says, its ended shards with them) and the new one is added as a new stream, at its
//! configured initial position, with its own fan-out consumer found or registered (a
//! consumer belongs to one stream). When the stream is missing, the old identifier goes
//! the same way and the name is looked up at each poll until a stream has it again. A
//! stream listed by its identifier is the application's word: it is never looked up
//! again (its syncs warn). A stream created again within the same second as the old one
//! has the same identifier and cannot be told apart.
//!
//! With enhanced fan-out, each stream has its own stream consumer, all of the same name
//! (the fan-out consumer name, by default the application name), as the Java KCL's
//! fan-out retrieval registers one per stream of a multi-stream application. The library
//! never deregisters one, also not when its stream leaves the tracker's list: a stream
//! listed again reuses it, and `kinesis-cat stream consumers deregister` removes it by
//! hand.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::active_streams::{ActiveStreams, StreamRuntime};
use super::start_up::{check_stream, retry_start_up_step, start_up_backoff, Try};
use super::stream_changes::{identify, stream_changes};
use super::stream_identity::{recheck, IdentityChecks, Lookup, Recheck};
use crate::consumer::{
    describe_or_register, ConsumerState, FanOut, Polling, RecordsSource, Retrieval, StreamConsumer,
};
use crate::error::Error;
use crate::initial_position::InitialPosition;
use crate::leases::{LeaseStore, ShardSync, Synced};
use crate::metric_names as m;
use crate::multi_stream::{
    FormerStreams, FormerStreamsLeasesDeletionStrategy, StreamConfig, StreamIdentifier, StreamRef,
    StreamTracker,
};
use crate::stream_address::StreamAddress;

/// The settings of a multi-stream worker's stream handling.
#[derive(Debug, Clone)]
pub(super) struct MultiStreamSettings {
    /// How each stream's shards are read: polling, or enhanced fan-out through a stream
    /// consumer of each stream (its name set by the builder).
    pub(super) retrieval: Retrieval,
    /// Where shards of a stream without its own initial position start.
    pub(super) initial_position: InitialPosition,
    /// How often the tracker is asked.
    pub(super) tracker_interval: Duration,
    /// How often every stream's shards are synced.
    pub(super) shard_sync_interval: Duration,
    /// What becomes of former streams' leases.
    pub(super) deletion: FormerStreamsLeasesDeletionStrategy,
}

/// A listed stream, identified.
#[derive(Debug, Clone)]
struct Resolved {
    /// Its identifier, which keys its leases.
    id: StreamIdentifier,
    /// How the calls name it: by ARN when it was listed as one, else by name.
    address: StreamAddress,
    /// Its ARN, when it was looked up: what names it to the stream consumer calls.
    arn: Option<String>,
}

/// What adding a stream takes: the stream and where its new shards start (`None`: the
/// worker's initial position).
type ToAdd = (Resolved, Option<InitialPosition>);

/// Keeps a multi-stream worker's streams and their leases in step with its tracker.
#[derive(Debug)]
pub(super) struct MultiStreamSync {
    /// Kinesis client of the stream checks, the shard syncs and the records sources.
    kinesis: aws_sdk_kinesis::Client,
    /// The whole lease table (every stream's leases).
    table: Arc<dyn LeaseStore>,
    /// The application's list of streams.
    tracker: Arc<dyn StreamTracker>,
    /// The streams consumed now, shared with the dispatcher and the coordinator's scope.
    streams: Arc<ActiveStreams>,
    /// Timings, positions, retrieval and the deletion strategy.
    settings: MultiStreamSettings,
    /// The streams looked up with `DescribeStreamSummary` (those listed by name or ARN,
    /// and with fan-out every stream), once each while listed.
    resolved: Mutex<HashMap<StreamRef, Resolved>>,
    /// Since when former streams have been seen untracked.
    former: Mutex<FormerStreams>,
    /// The consumed streams to look up again (deleted or created again under their name?).
    checks: Mutex<IdentityChecks>,
}

impl MultiStreamSync {
    /// A sync of `tracker`'s streams into `streams`, keeping their leases in `table`.
    pub(super) fn new(
        kinesis: aws_sdk_kinesis::Client,
        table: Arc<dyn LeaseStore>,
        tracker: Arc<dyn StreamTracker>,
        streams: Arc<ActiveStreams>,
        settings: MultiStreamSettings,
    ) -> Self {
        Self {
            kinesis,
            table,
            tracker,
            streams,
            settings,
            resolved: Mutex::new(HashMap::new()),
            former: Mutex::new(FormerStreams::default()),
            checks: Mutex::new(IdentityChecks::default()),
        }
    }

    /// The first start-up steps of a multi-stream worker (before the lease table's, so
    /// that a misspelt stream leaves nothing behind): the tracker's list, each stream
    /// resolved and added. `Ok(None)` when `shutdown` came first.
    ///
    /// # Cancellation
    /// Safe to drop, as a shutdown is: it only reads.
    ///
    /// # Errors
    /// [`Error::StreamNotFound`] for a listed stream that does not exist, or the first
    /// non-retryable error of a step.
    pub(super) async fn add_streams(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<()>, Error> {
        let listed =
            retry_start_up_step("stream tracker", shutdown, start_up_backoff(), || async {
                self.list().await.map(Try::Ready)
            });
        let Some(configs) = listed.await? else {
            return Ok(None);
        };
        let mut listed = Vec::with_capacity(configs.len());
        for config in configs {
            let resolved =
                retry_start_up_step("stream check", shutdown, start_up_backoff(), || {
                    self.resolve(&config.stream)
                });
            let Some(stream) = resolved.await? else {
                return Ok(None);
            };
            listed.push((stream.id.clone(), (stream, config.initial_position)));
        }
        let added = stream_changes(listed, &self.streams.ids()).added;
        // One step for every stream's consumer, so that their registrations overlap.
        let sources: Mutex<HashMap<StreamIdentifier, Arc<dyn RecordsSource>>> =
            Mutex::new(HashMap::new());
        let found = retry_start_up_step("stream consumer", shutdown, start_up_backoff(), || {
            let (added, sources) = (&added, &sources);
            async move {
                let mut waiting = Vec::new();
                for (id, (stream, _)) in added {
                    if lock(sources).contains_key(id) {
                        continue;
                    }
                    match self.records_source(stream).await? {
                        Try::Ready(source) => {
                            lock(sources).insert(id.clone(), source);
                        }
                        Try::NotYet(why) => waiting.push(why),
                    }
                }
                Ok(if waiting.is_empty() {
                    Try::Ready(())
                } else {
                    Try::NotYet(waiting.join("; "))
                })
            }
        });
        if found.await?.is_none() {
            return Ok(None);
        }
        let mut sources = sources.into_inner().unwrap_or_else(|e| e.into_inner());
        for (id, (stream, position)) in added {
            if let Some(source) = sources.remove(&id) {
                self.add(stream, position, source);
            }
        }
        Ok(Some(()))
    }

    /// The last start-up step of a multi-stream worker (after the lease table's): a first
    /// sync of every stream. `Ok(None)` when `shutdown` came first.
    ///
    /// # Cancellation
    /// Safe to drop, as a shutdown is; leases already created stay.
    ///
    /// # Errors
    /// The first non-retryable error.
    pub(super) async fn first_sync(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<()>, Error> {
        let first_sync = retry_start_up_step(
            "initial shard sync",
            shutdown,
            start_up_backoff(),
            || async { self.sync_all(true).await.map(Try::Ready) },
        );
        Ok(first_sync.await?.map(|_| ()))
    }

    /// Polls the tracker every `tracker_interval` and syncs every `shard_sync_interval`
    /// (and when `shard_ended` is woken, and after the list changed) until `stop`; wakes
    /// `changed` (the taker) when streams or leases changed.
    ///
    /// # Cancellation
    /// Returns when `stop` fires; dropping it is equally safe.
    pub(super) async fn run(
        &self,
        stop: CancellationToken,
        shard_ended: Arc<Notify>,
        changed: Arc<Notify>,
    ) {
        let start = Instant::now();
        let mut next_poll = start + self.settings.tracker_interval;
        let mut next_sync = start + self.settings.shard_sync_interval;
        loop {
            let mut sync_now = false;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(next_poll.min(next_sync)) => {}
                _ = shard_ended.notified() => sync_now = true,
            }
            let now = Instant::now();
            if now >= next_poll {
                next_poll = now + self.settings.tracker_interval;
                // A slow tracker or call does not hold the shutdown up: what the poll did
                // so far stands (each stream is added or removed whole) and the rest is
                // moot once the worker stops.
                let polled = tokio::select! {
                    _ = stop.cancelled() => return,
                    polled = self.poll() => polled,
                };
                if polled {
                    changed.notify_one();
                    sync_now = true;
                }
            }
            if sync_now || now >= next_sync {
                next_sync = now + self.settings.shard_sync_interval;
                // As above; lease creations and deletions are single conditional writes.
                let synced = tokio::select! {
                    _ = stop.cancelled() => return,
                    synced = self.sync_all(false) => synced,
                };
                match synced {
                    Ok(true) => changed.notify_one(),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "shard sync failed"),
                }
                // A stream that looked deleted or replaced is looked up at once.
                if lock(&self.checks).take_urgent() {
                    next_poll = Instant::now();
                }
            }
        }
    }

    /// The tracker's streams, each once (the first entry of one listed twice).
    async fn list(&self) -> Result<Vec<StreamConfig>, Error> {
        let configs = self
            .tracker
            .stream_configs()
            .await
            .map_err(|e| Error::StreamTracker {
                message: crate::error::render(e.as_ref()),
            })?;
        let mut seen = HashSet::new();
        Ok(configs
            .into_iter()
            .filter(|c| seen.insert(c.stream.clone()))
            .collect())
    }

    /// How the streams' shards are read.
    #[cfg(test)]
    pub(super) fn retrieval(&self) -> &Retrieval {
        &self.settings.retrieval
    }

    /// The identifier of `stream` (and its ARN when looked up): given (an identifier read
    /// by polling), looked up before, or from `DescribeStreamSummary` (not yet while the
    /// stream is being created or deleted).
    ///
    /// # Errors
    /// [`Error::StreamNotFound`], a failed call, or an identifier of another account than
    /// the stream of that name ([`identify`]).
    async fn resolve(&self, stream: &StreamRef) -> Result<Try<Resolved>, Error> {
        if let Some(resolved) = self.lock_resolved().get(stream) {
            return Ok(Try::Ready(resolved.clone()));
        }
        if let (StreamRef::Identifier(id), Retrieval::Polling(_)) =
            (stream, &self.settings.retrieval)
        {
            return Ok(Try::Ready(Resolved {
                id: id.clone(),
                address: StreamAddress::of(stream),
                arn: None,
            }));
        }
        let address = StreamAddress::of(stream);
        let Try::Ready(found) = check_stream(&self.kinesis, &address).await? else {
            return Ok(Try::NotYet(format!("stream {address} is not ACTIVE yet")));
        };
        let resolved = Resolved {
            id: identify(stream, &found)?,
            address,
            arn: Some(found.arn),
        };
        self.lock_resolved()
            .insert(stream.clone(), resolved.clone());
        Ok(Try::Ready(resolved))
    }

    /// The records source of `stream`: polling; or, with fan-out, one look at its stream
    /// consumer (registered when missing), ready once the consumer is `ACTIVE`.
    ///
    /// # Errors
    /// A failed `DescribeStreamConsumer` or `RegisterStreamConsumer` (see
    /// [`describe_or_register`]).
    async fn records_source(
        &self,
        stream: &Resolved,
    ) -> Result<Try<Arc<dyn RecordsSource>>, Error> {
        let name = stream.id.stream_name();
        let fan_out = match &self.settings.retrieval {
            Retrieval::Polling(polling) => {
                return Ok(Try::Ready(Arc::new(Polling::new(
                    self.kinesis.clone(),
                    stream.address.clone(),
                    polling.clone(),
                ))))
            }
            Retrieval::FanOut(fan_out) => fan_out,
        };
        let (Some(stream_arn), Some(consumer)) = (&stream.arn, &fan_out.consumer_name) else {
            // Not reached: with fan-out every stream is looked up, and the builder names
            // the consumer.
            return Err(Error::Config(crate::ConfigError::InvalidStreamIdentifier {
                value: stream.id.to_string(),
                reason: "no stream ARN or consumer name for enhanced fan-out".into(),
            }));
        };
        Ok(
            match describe_or_register(&self.kinesis, stream_arn, consumer).await? {
                ConsumerState::Active(consumer_arn) => {
                    tracing::info!(stream = %stream.id, %consumer, arn = %consumer_arn, "enhanced fan-out consumer ACTIVE");
                    Try::Ready(Arc::new(FanOut::new(
                        self.kinesis.clone(),
                        stream.address.clone(),
                        StreamConsumer::new(stream_arn.clone(), consumer.clone(), consumer_arn),
                        fan_out.clone(),
                    )))
                }
                ConsumerState::NotYet(why) => Try::NotYet(format!("stream {name}: {why}")),
            },
        )
    }

    /// Makes `stream` an active stream read from `source`, its new shards starting at
    /// `position` (else the worker's initial position).
    fn add(
        &self,
        stream: Resolved,
        position: Option<InitialPosition>,
        source: Arc<dyn RecordsSource>,
    ) {
        let id = stream.id;
        let position = position.unwrap_or(self.settings.initial_position);
        let name = id.stream_name().to_owned();
        tracing::info!(stream = %id, ?position, "consuming stream");
        self.streams.insert(Arc::new(StreamRuntime {
            source,
            shard_sync: ShardSync::new_multi_stream(
                self.kinesis.clone(),
                id.clone(),
                self.table.clone(),
                position,
            )
            .with_stream_arn(stream.address.stream_arn_param()),
            at_timestamp: match position {
                InitialPosition::AtTimestamp(t) => Some(t),
                _ => None,
            },
            id: Some(id),
            name,
        }));
        ::metrics::gauge!(m::STREAMS_ACTIVE).set(self.streams.ids().len() as f64);
    }

    /// Asks the tracker and applies its list: new streams added, streams gone from it
    /// removed. Whether anything changed. Failures are logged; the list stays as it was.
    async fn poll(&self) -> bool {
        let configs = match self.list().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "stream tracker failed; the stream list stays as it was");
                return false;
            }
        };
        let listed: HashSet<&StreamRef> = configs.iter().map(|c| &c.stream).collect();
        // A stream listed again later is looked up again (it may have been re-created).
        self.lock_resolved().retain(|r, _| listed.contains(r));
        let (gone, why_retired) = self.recheck_due().await;
        let mut listed: Vec<(StreamIdentifier, ToAdd)> = Vec::with_capacity(configs.len());
        for config in &configs {
            if gone.contains(&config.stream) {
                // Found missing just now: looked up again at the next poll.
                continue;
            }
            match self.resolve(&config.stream).await {
                Ok(Try::Ready(stream)) => {
                    listed.push((stream.id.clone(), (stream, config.initial_position)));
                }
                Ok(Try::NotYet(why)) => {
                    tracing::info!(stream = %config.stream, %why, "stream not added yet")
                }
                Err(e) => {
                    tracing::warn!(stream = %config.stream, error = %e, "stream not added; tried again at the next poll")
                }
            }
        }
        let changes = stream_changes(listed, &self.streams.ids());
        let mut changed = false;
        for (id, (stream, position)) in changes.added {
            match self.records_source(&stream).await {
                Ok(Try::Ready(source)) => {
                    self.add(stream, position, source);
                    changed = true;
                }
                Ok(Try::NotYet(why)) => {
                    tracing::info!(stream = %id, %why, "stream not added yet; looked at again at the next poll")
                }
                Err(e) => {
                    tracing::warn!(stream = %id, error = %e, "stream not added; tried again at the next poll")
                }
            }
        }
        for id in &changes.removed {
            self.streams.remove(id);
            match why_retired.get(id) {
                Some(why) => {
                    tracing::warn!(stream = %id, deletion = ?self.settings.deletion, "{why}: the stream is a former stream now, its consumers stop and its leases are released")
                }
                None => {
                    tracing::info!(stream = %id, deletion = ?self.settings.deletion, "stream left the tracker's list: its consumers stop and its leases are released")
                }
            }
            changed = true;
        }
        ::metrics::gauge!(m::STREAMS_ACTIVE).set(self.streams.ids().len() as f64);
        changed
    }

    /// Looks up again the consumed streams due for it ([`IdentityChecks`]: suspected by a
    /// sync, or the routine check of this poll), each by the name or ARN it is listed as,
    /// and updates what `resolve` answers for them: a stream replaced by another of its
    /// name resolves to the new one, a stream gone resolves to nothing. Returns the listed
    /// streams found gone (not to be looked up again in this poll) and why each retired
    /// identifier goes (for logs). A stream listed by its identifier is the application's
    /// word and is not looked up again.
    async fn recheck_due(&self) -> (HashSet<StreamRef>, HashMap<StreamIdentifier, String>) {
        let due = {
            let active = self.streams.ids();
            let candidates: HashSet<StreamIdentifier> = self
                .lock_resolved()
                .iter()
                .filter(|(r, _)| !matches!(r, StreamRef::Identifier(_)))
                .map(|(_, resolved)| resolved.id.clone())
                .filter(|id| active.contains(id))
                .collect();
            let mut checks = lock(&self.checks);
            checks.routine(&candidates);
            checks.take()
        };
        let cached: Vec<(StreamRef, Resolved)> = self
            .lock_resolved()
            .iter()
            .filter(|(r, resolved)| {
                !matches!(r, StreamRef::Identifier(_)) && due.contains_key(&resolved.id)
            })
            .map(|(r, resolved)| (r.clone(), resolved.clone()))
            .collect();
        let (mut gone, mut why_retired) = (HashSet::new(), HashMap::new());
        for (stream, old) in cached {
            let why = &due[&old.id];
            let (lookup, arn) = match check_stream(&self.kinesis, &old.address).await {
                Ok(Try::Ready(found)) => match identify(&stream, &found) {
                    Ok(id) => (Lookup::Found(id), Some(found.arn)),
                    Err(e) => (Lookup::Unknown(e.to_string()), None),
                },
                Ok(Try::NotYet(not_yet)) => (Lookup::Unknown(not_yet), None),
                Err(Error::StreamNotFound { .. }) => (Lookup::Missing, None),
                Err(e) => (Lookup::Unknown(e.to_string()), None),
            };
            match recheck(&old.id, lookup) {
                Recheck::Same => {
                    tracing::debug!(stream = %old.id, %why, "the stream is still the one consumed")
                }
                Recheck::Replaced(id) => {
                    tracing::warn!(stream = %stream, old = %old.id, new = %id, %why, "the stream was deleted and created again under its name: the new one is consumed from its initial position");
                    why_retired.insert(
                        old.id.clone(),
                        format!("replaced by {id}, created again under its name"),
                    );
                    self.lock_resolved().insert(
                        stream,
                        Resolved {
                            id,
                            address: old.address,
                            arn,
                        },
                    );
                }
                Recheck::Gone => {
                    tracing::warn!(stream = %stream, old = %old.id, %why, "the stream no longer exists: consumed again once a stream of its name exists");
                    why_retired.insert(old.id.clone(), "deleted".to_owned());
                    self.lock_resolved().remove(&stream);
                    gone.insert(stream);
                }
                Recheck::Unknown(not_known) => {
                    tracing::info!(stream = %old.id, %why, %not_known, "could not look the stream up again; tried at the next poll");
                    lock(&self.checks).retry(old.id, why.clone());
                }
            }
        }
        (gone, why_retired)
    }

    /// One scan, then every active stream's sync on it, then the deletion of the leases
    /// of former streams that are due. Whether leases were created or deleted. With
    /// `strict` (start-up) the first failure is returned; otherwise failures are logged.
    ///
    /// # Errors
    /// The scan's error; with `strict`, a stream's sync error too.
    async fn sync_all(&self, strict: bool) -> Result<bool, Error> {
        let leases = self.table.list_leases().await?;
        let mut changed = false;
        for stream in self.streams.all() {
            let suspect = |why: String| {
                if let Some(id) = &stream.id {
                    lock(&self.checks).suspect(id.clone(), why);
                }
            };
            match stream.shard_sync.sync_unless_replaced(&leases).await {
                Ok(Synced::Done(o)) => changed |= !o.created.is_empty() || !o.deleted.is_empty(),
                Ok(Synced::Replaced { shard }) => {
                    tracing::warn!(stream = %stream.name, %shard, "the shard of an ended lease is listed open: the stream was created again? Its leases are left alone; it is looked up again");
                    suspect(format!(
                        "ListShards lists {shard} open, whose lease has ended"
                    ));
                }
                Err(e) if strict => return Err(e),
                Err(Error::StreamNotFound { .. }) => {
                    tracing::warn!(stream = %stream.name, "the stream no longer exists (deleted?); it is looked up again");
                    suspect("ListShards: stream not found".to_owned());
                }
                Err(e) => tracing::warn!(stream = %stream.name, error = %e, "shard sync failed"),
            }
        }
        let in_table: HashSet<StreamIdentifier> =
            leases.iter().filter_map(|l| l.stream.clone()).collect();
        let due = self.former.lock().unwrap_or_else(|e| e.into_inner()).due(
            &self.streams.ids(),
            &in_table,
            Instant::now(),
            self.settings.deletion,
        );
        for id in due {
            let mut deleted = 0;
            for lease in leases.iter().filter(|l| l.stream.as_ref() == Some(&id)) {
                match self.table.delete_lease(lease).await {
                    Ok(true) => deleted += 1,
                    Ok(false) => {
                        tracing::debug!(lease = %lease.lease_key, "lease written since the scan; deleted at a later round")
                    }
                    Err(e) => {
                        tracing::warn!(lease = %lease.lease_key, error = %e, "could not delete a former stream's lease")
                    }
                }
            }
            if deleted > 0 {
                ::metrics::counter!(m::FORMER_STREAM_LEASES_DELETED).increment(deleted);
                tracing::info!(stream = %id, leases = deleted, "deleted the leases of a former stream");
                changed = true;
            }
        }
        Ok(changed)
    }

    /// The streams looked up so far.
    fn lock_resolved(&self) -> std::sync::MutexGuard<'_, HashMap<StreamRef, Resolved>> {
        lock(&self.resolved)
    }
}

/// `mutex`, locked (a panic elsewhere while it was held leaves its data usable).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::offline_clients;
    use super::*;
    use crate::leases::MemoryLeaseStore;

    /// A tracker whose answer never comes (a slow service, a stuck file system).
    #[derive(Debug)]
    struct Hanging;

    #[async_trait::async_trait]
    impl StreamTracker for Hanging {
        async fn stream_configs(
            &self,
        ) -> Result<Vec<StreamConfig>, Box<dyn std::error::Error + Send + Sync>> {
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_tracker_that_never_answers_does_not_hold_the_stop_up() {
        let (kinesis, _) = offline_clients();
        let sync = Arc::new(MultiStreamSync::new(
            kinesis,
            Arc::new(MemoryLeaseStore::new()),
            Arc::new(Hanging),
            Arc::new(ActiveStreams::new(true, "w")),
            MultiStreamSettings {
                retrieval: Retrieval::default(),
                initial_position: InitialPosition::TrimHorizon,
                tracker_interval: Duration::from_secs(1),
                shard_sync_interval: Duration::from_secs(3600),
                deletion: FormerStreamsLeasesDeletionStrategy::default(),
            },
        ));
        let stop = CancellationToken::new();
        let run = tokio::spawn({
            let (sync, stop) = (sync.clone(), stop.clone());
            async move {
                sync.run(stop, Arc::new(Notify::new()), Arc::new(Notify::new()))
                    .await
            }
        });
        // Past the first poll, which now waits on the tracker for ever.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!run.is_finished(), "runs until stopped");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(1), run)
            .await
            .expect("the stop ends the run even while the tracker is asked")
            .expect("no panic");
    }
}
