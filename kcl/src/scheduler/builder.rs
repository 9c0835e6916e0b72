//! [`SchedulerBuilder`]: the names, the clients and a [`SchedulerConfig`] filled by its
//! setters, checked and turned into a [`Scheduler`].
//!
//! ```text
//!  Scheduler::builder(app, stream, factory) ───────────────┐
//!  Scheduler::multi_stream_builder(app, tracker, factory) ──┤
//!  Scheduler::stream_builder(app, stream) ──────────────────┤  (no factory: build_stream)
//!  Scheduler::multi_stream_stream_builder(app, tracker) ────┴─with_*─▶ SchedulerBuilder
//!     { streams, clients, SchedulerConfig }
//!     ─validate (clients, names, then SchedulerConfig::validate)─▶ build
//!     ─▶ LeaseTable + ActiveStreams + ScopedLeaseStore + LeaseCoordinator
//!        + ShardSync (one stream) | MultiStreamSync (tracker) ─▶ Scheduler (nothing called yet)
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::active_streams::ActiveStreams;
use super::config::{default_worker_id, SchedulerConfig};
use super::multi_stream_sync::{MultiStreamSettings, MultiStreamSync};
use super::scoped_lease_store::ScopedLeaseStore;
use super::{Consumes, Inner, Scheduler};
use crate::config_error::{
    check_name, ConfigError, CONSUMER_NAME_LEN, STREAM_NAME_LEN, TABLE_NAME_LEN,
};
use crate::consumer::{Batching, FailureRetry, PayloadDecompression, PollingConfig, Retrieval};
use crate::error::Error;
use crate::initial_position::InitialPosition;
use crate::leases::LoadMeter;
use crate::leases::ShardSync;
use crate::leases::{Balancing, LeaseCoordinator};
use crate::leases::{FleetTable, LeaseStore, LeaseTable};
use crate::multi_stream::{FormerStreamsLeasesDeletionStrategy, StreamTracker};
use crate::processor::RecordProcessorFactory;
use crate::record_stream::{record_stream, RecordStream, StreamCheckpointing};

/// Batches a record stream holds ahead of its reader unless set otherwise.
const DEFAULT_STREAM_BUFFER: usize = 16;
use kinesis_agg::OutsideRangePolicy;

#[cfg(doc)]
use super::config::{MAX_DURATION_SETTING, MIN_FAILOVER_TIME};

/// What a worker consumes, as given to the builder.
enum Streams {
    /// One stream, by name.
    One(String),
    /// The streams a tracker lists (a multi-stream application).
    Tracked(Arc<dyn StreamTracker>),
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Streams::One(name) => f.debug_tuple("One").field(name).finish(),
            Streams::Tracked(tracker) => f.debug_tuple("Tracked").field(tracker).finish(),
        }
    }
}

/// Configures a [`Scheduler`]; from [`Scheduler::builder`],
/// [`Scheduler::multi_stream_builder`], [`Scheduler::stream_builder`] or
/// [`Scheduler::multi_stream_stream_builder`].
#[must_use = "a builder does nothing until build() is called"]
pub struct SchedulerBuilder {
    /// Names the application; the lease table is named after it unless set otherwise.
    application_name: String,
    /// The stream consumed, or the tracker of the streams consumed.
    streams: Streams,
    /// Makes a processor per lease; `None` for a worker built as a record stream
    /// ([`build_stream`](Self::build_stream)).
    factory: Option<Arc<dyn RecordProcessorFactory>>,
    /// Batches a record stream holds ahead of its reader.
    stream_buffer: usize,
    /// Who checkpoints a record stream's batches.
    stream_checkpointing: StreamCheckpointing,
    /// Kinesis client, if given (required: `build` refuses to go without).
    kinesis: Option<aws_sdk_kinesis::Client>,
    /// DynamoDB client, if given (required, as `kinesis`).
    dynamodb: Option<aws_sdk_dynamodb::Client>,
    /// Every other setting, at its default until a setter changes it.
    config: SchedulerConfig,
}

impl std::fmt::Debug for SchedulerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerBuilder")
            .field("application_name", &self.application_name)
            .field("streams", &self.streams)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SchedulerBuilder {
    /// A builder for a worker of `application_name` consuming `stream_name`, with
    /// `factory` making a processor per shard lease; the same as [`Scheduler::builder`].
    pub fn new(
        application_name: impl Into<String>,
        stream_name: impl Into<String>,
        factory: impl RecordProcessorFactory,
    ) -> Self {
        let factory: Arc<dyn RecordProcessorFactory> = Arc::new(factory);
        Self::with_factory(
            application_name.into(),
            Streams::One(stream_name.into()),
            Some(factory),
        )
    }

    /// A builder for a worker of the multi-stream application `application_name`
    /// consuming the streams `tracker` lists, with `factory` making a processor per shard
    /// lease (it is given the lease key, `account:stream:epoch:shardId`); the same as
    /// [`Scheduler::multi_stream_builder`]. See [`StreamTracker`] for how streams come and
    /// go, and the settings [`with_stream_tracker_interval`](Self::with_stream_tracker_interval)
    /// and [`with_former_streams_deletion`](Self::with_former_streams_deletion).
    pub fn new_multi_stream(
        application_name: impl Into<String>,
        tracker: impl StreamTracker,
        factory: impl RecordProcessorFactory,
    ) -> Self {
        let factory: Arc<dyn RecordProcessorFactory> = Arc::new(factory);
        Self::with_factory(
            application_name.into(),
            Streams::Tracked(Arc::new(tracker)),
            Some(factory),
        )
    }

    /// A builder for a worker of the multi-stream application `application_name`
    /// consuming the streams `tracker` lists, whose records are read as a [`RecordStream`]
    /// (built with [`build_stream`](Self::build_stream); each batch names its stream); the
    /// same as [`Scheduler::multi_stream_stream_builder`].
    pub fn new_multi_stream_stream(
        application_name: impl Into<String>,
        tracker: impl StreamTracker,
    ) -> Self {
        Self::with_factory(
            application_name.into(),
            Streams::Tracked(Arc::new(tracker)),
            None,
        )
    }

    /// A builder for a worker whose records are read as a [`RecordStream`] (built with
    /// [`build_stream`](Self::build_stream)); the same as [`Scheduler::stream_builder`].
    pub fn new_stream(application_name: impl Into<String>, stream_name: impl Into<String>) -> Self {
        Self::with_factory(
            application_name.into(),
            Streams::One(stream_name.into()),
            None,
        )
    }

    /// Every setting at its default.
    fn with_factory(
        application_name: String,
        streams: Streams,
        factory: Option<Arc<dyn RecordProcessorFactory>>,
    ) -> Self {
        Self {
            application_name,
            streams,
            factory,
            stream_buffer: DEFAULT_STREAM_BUFFER,
            stream_checkpointing: StreamCheckpointing::default(),
            kinesis: None,
            dynamodb: None,
            config: SchedulerConfig::default(),
        }
    }

    /// How many batches a [`RecordStream`] holds ahead of its reader, over all shards.
    /// Default: 16. Only for [`build_stream`](Self::build_stream); 0 counts as 1.
    pub fn with_stream_buffer(mut self, batches: usize) -> Self {
        self.stream_buffer = batches;
        self
    }

    /// Who checkpoints a [`RecordStream`]'s batches. Default:
    /// [`StreamCheckpointing::Auto`] after every batch, once the reader drops it. Only for
    /// [`build_stream`](Self::build_stream).
    pub fn with_stream_checkpointing(mut self, checkpointing: StreamCheckpointing) -> Self {
        self.stream_checkpointing = checkpointing;
        self
    }

    /// Uses these clients (built from one `SdkConfig`, or with their own endpoints).
    /// Default: none; [`build`](Self::build) fails unless clients or an `SdkConfig` are given.
    pub fn with_clients(
        mut self,
        kinesis: aws_sdk_kinesis::Client,
        dynamodb: aws_sdk_dynamodb::Client,
    ) -> Self {
        self.kinesis = Some(kinesis);
        self.dynamodb = Some(dynamodb);
        self
    }

    /// Builds both clients from this configuration (e.g. `aws_config::load_from_env()`).
    /// Default: none.
    pub fn with_sdk_config(self, config: &aws_config::SdkConfig) -> Self {
        self.with_clients(
            aws_sdk_kinesis::Client::new(config),
            aws_sdk_dynamodb::Client::new(config),
        )
    }

    /// Names the lease table. Default: the application name. [`build`](Self::build) refuses
    /// a name outside the DynamoDB rule (3 to 255 characters of `A-Z a-z 0-9 _ . -`):
    /// [`ConfigError::InvalidTableName`].
    pub fn with_table_name(mut self, name: impl Into<String>) -> Self {
        self.config.table_name = Some(name.into());
        self
    }

    /// Sets this worker's id (its `leaseOwner`). Default: [`default_worker_id`].
    /// [`build`](Self::build) refuses an empty id: [`ConfigError::InvalidWorkerId`].
    pub fn with_worker_id(mut self, id: impl Into<String>) -> Self {
        self.config.worker_id = Some(id.into());
        self
    }

    /// How often a multi-stream worker asks its [`StreamTracker`] for the streams (new
    /// ones are added, removed ones retired). Default: 60 s. Not used by a single-stream
    /// worker. [`build`](Self::build) refuses zero: [`ConfigError::ZeroDuration`] naming
    /// `stream_tracker_interval`.
    pub fn with_stream_tracker_interval(mut self, interval: Duration) -> Self {
        self.config.stream_tracker_interval = interval;
        self
    }

    /// What becomes of the leases (and checkpoints) of streams a multi-stream worker no
    /// longer consumes: kept, or deleted once the worker has seen them untracked for a
    /// grace period. Default:
    /// [`FormerStreamsLeasesDeletionStrategy::DeleteAfter`] one hour
    /// ([`DEFAULT_FORMER_STREAMS_GRACE_PERIOD`](crate::DEFAULT_FORMER_STREAMS_GRACE_PERIOD)).
    /// Make the grace period longer than every worker needs to see a new stream list. Not
    /// used by a single-stream worker. [`build`](Self::build) refuses a zero grace period:
    /// [`ConfigError::ZeroDuration`] naming `former_streams_deletion`.
    pub fn with_former_streams_deletion(
        mut self,
        strategy: FormerStreamsLeasesDeletionStrategy,
    ) -> Self {
        self.config.former_streams_deletion = strategy;
        self
    }

    /// Where shards without a checkpoint start. Default: [`InitialPosition::TrimHorizon`].
    /// In a multi-stream application, for the streams without their own
    /// [`StreamConfig::initial_position`](crate::StreamConfig::initial_position).
    pub fn with_initial_position(mut self, position: InitialPosition) -> Self {
        self.config.initial_position = position;
        self
    }

    /// Sets the failover time; renewals (failover / 3 − 25 ms) follow it, and so do takes
    /// (2 × (failover + 25 ms)) unless set with
    /// [`with_taker_interval`](Self::with_taker_interval). Default: 10 s.
    /// [`build`](Self::build) refuses zero ([`ConfigError::ZeroDuration`]) and anything
    /// under [`MIN_FAILOVER_TIME`] ([`ConfigError::OutOfRange`]), naming `failover_time`.
    pub fn with_failover_time(mut self, failover: Duration) -> Self {
        self.config.failover_time = failover;
        self
    }

    /// How often the taker scans the lease table. Default: 2 × (failover + 25 ms).
    /// Shorter intervals find dead workers' leases sooner at the cost of more scans.
    /// [`build`](Self::build) refuses zero: [`ConfigError::ZeroDuration`] naming
    /// `taker_interval`.
    pub fn with_taker_interval(mut self, interval: Duration) -> Self {
        self.config.taker_interval = Some(interval);
        self
    }

    /// How long a worker handing a lease over to another (a graceful handoff, when a lease
    /// moves between live workers for balance) lets its shard consumer finish: the
    /// processor gets `shutdown_requested` and may checkpoint, the new owner then starts
    /// from that checkpoint, so no record is processed by both. Past it the consumer is
    /// aborted and the lease handed over anyway; the new owner forces the handoff itself
    /// after this plus the taker interval (a previous owner that is gone, at once with
    /// worker heartbeats). Default: 30 s, the Java KCL 3.x's
    /// `gracefulLeaseHandoffTimeoutMillis`. [`build`](Self::build) refuses zero:
    /// [`ConfigError::ZeroDuration`] naming `graceful_handoff_timeout`.
    pub fn with_graceful_handoff_timeout(mut self, timeout: Duration) -> Self {
        self.config.graceful_handoff_timeout = timeout;
        self
    }

    /// The most leases this worker holds. Default: no limit (`usize::MAX`).
    /// [`build`](Self::build) refuses 0: [`ConfigError::OutOfRange`] naming
    /// `max_leases_per_worker`.
    pub fn with_max_leases_per_worker(mut self, max: usize) -> Self {
        self.config.max_leases_per_worker = max;
        self
    }

    /// The most leases stolen per taker round. Default: with worker heartbeats (the
    /// default) no limit, since the fleet counts every worker and a newcomer's share is
    /// exact; without them 1, as in the Java KCL. 0 means this worker never steals (it
    /// still takes expired and unowned leases).
    pub fn with_max_leases_to_steal_at_one_time(mut self, max: usize) -> Self {
        self.config.max_leases_to_steal_at_one_time = Some(max);
        self
    }

    /// What the lease taker balances among workers. Default: [`Balancing::LeaseCount`],
    /// `ceil(leases / workers)` each, the Java KCL 2.x's rule and that of earlier versions
    /// of this library: workers that judge balance differently steal leases from each
    /// other back and forth, so a rolling upgrade (or a table shared with another KCL)
    /// must not meet two rules, and the choice is left to the operator.
    ///
    /// [`Balancing::Throughput`] (e.g. [`Balancing::throughput`]: 10 % tolerance, idle
    /// leases weighing 1 KB/s) weighs each lease by the throughput its holder measured
    /// and wrote on it (`throughputKBps`, KB/s, as the Java KCL 3.x), so that a worker
    /// holding a hot shard holds fewer others; leases nobody measured yet weigh the mean,
    /// so a new table starts by count. Measuring adds no DynamoDB call: the figure goes
    /// out with renewals and checkpoints (with worker heartbeats, a lease whose figure
    /// drifted is renewed once to carry it). Every worker of an application must use the
    /// same balancing. [`build`](Self::build) refuses a `tolerance_percent` outside 1 to
    /// 100 and a `min_lease_kbps` of 0 ([`ConfigError::OutOfRange`] naming
    /// `balancing.tolerance_percent` or `balancing.min_lease_kbps`).
    pub fn with_balancing(mut self, balancing: Balancing) -> Self {
        self.config.balancing = balancing;
        self
    }

    /// How workers prove they are alive. Default: `true`, by heartbeats: each worker
    /// writes one item of the fleet table `<lease table>-Workers` every failover/5 and
    /// reads everyone's in the same call, so a dead worker's leases are taken within 1.1 ×
    /// the failover time of its death and a new worker takes its share at once, for 30
    /// calls per worker per minute and no periodic write per lease; a worker that cannot
    /// reach DynamoDB for about half the failover time gives its leases up before any
    /// other may take them (the design, its cost and its limits are in the `leases`
    /// module's `fleet` docs). `false`: the Java KCL's way,
    /// every lease renewed every failover/3 and expired after the failover time without a
    /// renewal, found by a scan every 2 × failover; use it when workers of another KCL
    /// (the Java KCL, `kcl-rs`) share the lease table at the same time. Every worker of an
    /// application must use the same setting.
    pub fn with_worker_heartbeats(mut self, heartbeats: bool) -> Self {
        self.config.worker_heartbeats = heartbeats;
        self
    }

    /// Reads shards by polling with these settings: the same as
    /// `with_retrieval(Retrieval::Polling(polling))`. Default: polling with
    /// [`PollingConfig::default`]. [`build`](Self::build) refuses `max_records` outside 1 to
    /// 10000 (the `GetRecords` limit) and `prefetch_batches` 0 ([`ConfigError::OutOfRange`]),
    /// and a zero `idle_time_between_reads` or `min_time_between_calls`
    /// ([`ConfigError::ZeroDuration`]); each error names the field as `polling.<field>`.
    pub fn with_polling(self, polling: PollingConfig) -> Self {
        self.with_retrieval(Retrieval::Polling(polling))
    }

    /// How shards are read: polling, or enhanced fan-out. Default:
    /// [`Retrieval::Polling`] with [`PollingConfig::default`].
    ///
    /// With [`Retrieval::FanOut`], [`run`](Scheduler::run) registers the stream consumer
    /// (named by `consumer_name`, else the application name) when it is missing and waits
    /// until it is `ACTIVE` before taking leases; it is reused across restarts and never
    /// deregistered. A multi-stream worker ([`Scheduler::multi_stream_builder`]) does so on
    /// each of its streams as the stream is added (at start-up, and when the tracker lists
    /// a new one; such a stream is consumed once its consumer is `ACTIVE`, looked at again
    /// at each tracker poll until then), as the Java KCL's fan-out retrieval does per
    /// stream; a stream removed from the list keeps its consumer.
    /// [`build`](Self::build) refuses a consumer name outside the Kinesis
    /// rule (1 to 128 characters of `A-Z a-z 0-9 _ . -`; [`ConfigError::InvalidConsumerName`],
    /// also for an application name standing in for it), `event_buffer` 0
    /// ([`ConfigError::OutOfRange`]) and a zero `renew_after` or `idle_timeout`
    /// ([`ConfigError::ZeroDuration`]), naming the field as `fan_out.<field>`.
    pub fn with_retrieval(mut self, retrieval: Retrieval) -> Self {
        self.config.retrieval = retrieval;
        self
    }

    /// What happens to a record of a KPL aggregate whose hash key lies outside the range of
    /// the shard the aggregate was read from. Default: [`OutsideRangePolicy::Drop`], the
    /// Java KCL's rule: such records are left out (and counted in the batch's
    /// [`dropped_outside_shard_range`](crate::ProcessRecordsInput::dropped_outside_shard_range),
    /// the `kinesis_consumer_records_outside_shard_range_total` metric and a warning),
    /// because the KPL re-sends them to their own shard after a reshard.
    ///
    /// [`OutsideRangePolicy::Keep`] hands them over, marked
    /// [`outside_shard_range`](crate::KinesisClientRecord::outside_shard_range). Streams
    /// written by aggregators that pack records of any keys into one aggregate routed by
    /// the first key (the Python and Node `aws-kinesis-agg` libraries, several Go
    /// producers) need it: nothing re-sends those records, and dropping them loses them.
    /// With the KPL (or this project's producer), `Keep` delivers the re-sent records
    /// twice after a reshard.
    ///
    /// The Java KCL drops the whole aggregate at its first record outside the shard; this
    /// library drops only the records outside, except for an aggregate sent under
    /// [`kinesis_agg::WHOLE_RESEND_PARTITION_KEY`] (this project's producer), which it
    /// drops whole as the Java KCL does, because that producer re-sends every record of
    /// it: under `Drop`, each record it delivered is read once. (Under `Keep`, the
    /// records of such an aggregate that the shard owns come twice too, unmarked.)
    pub fn with_outside_range_policy(mut self, policy: OutsideRangePolicy) -> Self {
        self.config.outside_range = policy;
        self
    }

    /// Whether user payloads written gzip- or zlib-compressed by their producer are inflated
    /// before the processor gets them (CloudWatch Logs subscriptions deliver gzip JSON).
    /// Default: [`PayloadDecompression::Off`], payloads as sent.
    ///
    /// With [`PayloadDecompression::GzipAndZlib`], a payload with a gzip or zlib header is
    /// inflated (up to [`MAX_INFLATED_BYTES`](crate::MAX_INFLATED_BYTES)) and its record
    /// marked [`PayloadEncoding::Gzip`](crate::PayloadEncoding::Gzip) or `Zlib`; one that
    /// does not inflate is handed over as sent, marked `NotInflated`, and counted in the
    /// `kinesis_consumer_records_not_inflated_total` metric: never dropped. Records this
    /// project's producer compressed (its own marked format) are inflated either way.
    pub fn with_payload_decompression(mut self, decompression: PayloadDecompression) -> Self {
        self.config.decompression = decompression;
        self
    }

    /// Lambda-style batching: each `process_records` call gets at most
    /// `batching.max_records` records, once that many are ready or `batching.max_wait`
    /// has passed since the oldest of them was read, whichever comes first; records read
    /// in one go are split over several calls when there are more. Default: none, one call
    /// per batch read (a `GetRecords` answer or a fan-out event). A checkpoint in a call
    /// covers that call's records; records read but not yet handed over are not covered and
    /// come again after a restart. [`build`](Self::build) refuses `max_records` 0
    /// ([`ConfigError::OutOfRange`] naming `batching.max_records`).
    pub fn with_batching(mut self, batching: Batching) -> Self {
        self.config.batching = Some(batching);
        self
    }

    /// What a shard consumer does after its processor reports a failure with
    /// [`Checkpointer::retry_from`](crate::Checkpointer::retry_from) (this record and the
    /// ones after it failed) or [`Checkpointer::retry_batch`](crate::Checkpointer::retry_batch)
    /// (the batch failed): the records are read again from the failed one and handed over
    /// after a pause, a failed batch in halves until its failing record is alone; a record
    /// is given up (skipped, counted in `kinesis_consumer_records_given_up_total`, logged at
    /// `error`) only after [`FailureRetry::max_attempts`]. Meanwhile a checkpoint never
    /// covers the failed record. Default: [`FailureRetry::default`]: retried without end,
    /// bisecting, pauses from 500 ms doubling to 30 s. [`build`](Self::build) refuses
    /// `max_attempts` 0 ([`ConfigError::OutOfRange`] naming `failure_retry.max_attempts`).
    pub fn with_failure_retry(mut self, retry: FailureRetry) -> Self {
        self.config.failure_retry = retry;
        self
    }

    /// How often shards are listed to find new ones after resharding (shard ends also
    /// trigger a sync). Default: 60 s. [`build`](Self::build) refuses zero:
    /// [`ConfigError::ZeroDuration`] naming `shard_sync_interval`.
    pub fn with_shard_sync_interval(mut self, interval: Duration) -> Self {
        self.config.shard_sync_interval = interval;
        self
    }

    /// How often a lease waiting for its parents to finish checks them again.
    /// Default: 1 s. [`build`](Self::build) refuses zero: [`ConfigError::ZeroDuration`]
    /// naming `parent_poll_interval`.
    pub fn with_parent_poll_interval(mut self, interval: Duration) -> Self {
        self.config.parent_poll_interval = interval;
        self
    }

    /// How long a graceful shutdown waits for processors to finish their batch and
    /// `shutdown_requested`; those still running then are aborted (their records after the
    /// last checkpoint go to the next owner again). Leases are released either way.
    /// Default: 60 s. Zero is allowed: processors are then not waited for at all.
    /// [`build`](Self::build) refuses more than [`MAX_DURATION_SETTING`]
    /// ([`ConfigError::OutOfRange`] naming `shutdown_timeout`), as for every duration.
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Checks every setting, without calling AWS. [`build`](Self::build) calls it first.
    ///
    /// # Errors
    /// The first bad setting, checked in this order (the clients last, so that names and
    /// settings can be checked before an AWS configuration is loaded):
    /// - [`ConfigError::InvalidStreamName`]: not 1 to 128 characters of `A-Z a-z 0-9 _ . -`;
    /// - [`ConfigError::InvalidTableName`] (a name given with
    ///   [`with_table_name`](Self::with_table_name)) or
    ///   [`ConfigError::InvalidApplicationName`] (the application name, when it names the
    ///   table): not 3 to 255 characters of `A-Z a-z 0-9 _ . -`;
    /// - [`ConfigError::InvalidWorkerId`]: an empty worker id;
    /// - [`ConfigError::ZeroDuration`]: a zero `failover_time`, `taker_interval`,
    ///   `shard_sync_interval`, `parent_poll_interval`, `polling.idle_time_between_reads`,
    ///   `polling.min_time_between_calls`, `fan_out.renew_after` or `fan_out.idle_timeout`;
    /// - [`ConfigError::OutOfRange`]: `failover_time` under [`MIN_FAILOVER_TIME`],
    ///   `balancing.tolerance_percent` outside 1 to 100, `balancing.min_lease_kbps` 0,
    ///   `max_leases_per_worker` 0, `polling.max_records` outside 1 to 10000,
    ///   `polling.prefetch_batches` 0, `fan_out.event_buffer` outside 1 to 10000,
    ///   `fan_out.renew_after` outside 5 s to 5 min, `fan_out.idle_timeout` under 1 s;
    /// - [`ConfigError::OutOfRange`]: any duration (those above, `graceful_handoff_timeout`,
    ///   `shutdown_timeout`, `stream_tracker_interval`, `former_streams_deletion`,
    ///   `batching.max_wait`) longer than [`MAX_DURATION_SETTING`] (365 days);
    /// - [`ConfigError::InvalidConsumerName`]: the fan-out consumer name, or the application
    ///   name when it stands in for it, breaks the Kinesis rule (1 to 128 characters of
    ///   `A-Z a-z 0-9 _ . -`);
    /// - [`ConfigError::MissingClients`]: neither clients nor an `SdkConfig` were given.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.streams {
            Streams::One(name) => check_name(name, STREAM_NAME_LEN).map_err(|reason| {
                ConfigError::InvalidStreamName {
                    name: name.clone(),
                    reason,
                }
            })?,
            Streams::Tracked(_) => {}
        }
        if self.config.table_name.is_none() {
            check_name(&self.application_name, TABLE_NAME_LEN).map_err(|reason| {
                ConfigError::InvalidApplicationName {
                    name: self.application_name.clone(),
                    reason,
                }
            })?;
        }
        self.config.validate()?;
        if let Retrieval::FanOut(f) = &self.config.retrieval {
            if f.consumer_name.is_none() {
                check_name(&self.application_name, CONSUMER_NAME_LEN).map_err(|reason| {
                    ConfigError::InvalidConsumerName {
                        name: self.application_name.clone(),
                        reason: format!("{reason} (the application name names the consumer)"),
                    }
                })?;
            }
        }
        if self.kinesis.is_none() || self.dynamodb.is_none() {
            return Err(ConfigError::MissingClients);
        }
        Ok(())
    }

    /// Checks the configuration ([`validate`](Self::validate)) and builds the worker.
    /// Nothing is called yet.
    ///
    /// # Errors
    /// [`Error::Config`] with the first bad setting [`validate`](Self::validate) finds, or
    /// [`ConfigError::NoProcessorFactory`] for a builder from [`Scheduler::stream_builder`]
    /// or [`Scheduler::multi_stream_stream_builder`] (build it with
    /// [`build_stream`](Self::build_stream)).
    pub fn build(self) -> Result<Scheduler, Error> {
        if self.factory.is_none() {
            return Err(ConfigError::NoProcessorFactory.into());
        }
        let (done, _) = watch::channel(false);
        self.build_with(done)
    }

    /// Checks the configuration and builds a worker whose records are read from the
    /// returned [`RecordStream`]; see [`crate::RecordStream`]. Nothing is called yet: run
    /// the [`Scheduler`] and read the stream; it ends once `run` has ended and the batches
    /// already sent were taken (a worker never run never ends it).
    ///
    /// # Errors
    /// [`Error::Config`] with the first bad setting [`validate`](Self::validate) finds, or
    /// [`ConfigError::ProcessorFactoryGiven`] for a builder made with a processor factory.
    pub fn build_stream(mut self) -> Result<(Scheduler, RecordStream), Error> {
        if self.factory.is_some() {
            return Err(ConfigError::ProcessorFactoryGiven.into());
        }
        let (done, ended) = watch::channel(false);
        let (factory, stream) =
            record_stream(self.stream_buffer, self.stream_checkpointing.clone(), ended);
        self.factory = Some(Arc::new(factory));
        Ok((self.build_with(done)?, stream))
    }

    /// Builds the worker, whose `run` marks `done` when it ends.
    fn build_with(self, done: watch::Sender<bool>) -> Result<Scheduler, Error> {
        self.validate()?;
        let Some(factory) = self.factory else {
            return Err(ConfigError::NoProcessorFactory.into());
        };
        let (Some(kinesis), Some(dynamodb)) = (self.kinesis, self.dynamodb) else {
            return Err(ConfigError::MissingClients.into());
        };
        let mut config = self.config;
        if let Retrieval::FanOut(f) = &mut config.retrieval {
            f.consumer_name
                .get_or_insert_with(|| self.application_name.clone());
        }
        let table = config
            .table_name
            .clone()
            .unwrap_or_else(|| self.application_name.clone());
        let store: Arc<dyn LeaseStore> = Arc::new(LeaseTable::new(dynamodb.clone(), table.clone()));
        let worker_id = config.worker_id.clone().unwrap_or_else(default_worker_id);
        let streams = Arc::new(ActiveStreams::new(
            matches!(self.streams, Streams::Tracked(_)),
            &worker_id,
        ));
        // The coordinator sees only the leases of the streams this worker consumes.
        let scoped: Arc<dyn LeaseStore> = Arc::new(ScopedLeaseStore {
            table: store.clone(),
            streams: streams.clone(),
        });
        let mut coordinator =
            LeaseCoordinator::new(scoped, worker_id.clone(), config.lease_config());
        let load = Arc::new(LoadMeter::new());
        if config.worker_heartbeats {
            coordinator = coordinator
                .with_fleet(Arc::new(FleetTable::for_lease_table(
                    dynamodb.clone(),
                    &table,
                )))
                .with_load_meter(load.clone());
        }
        let coordinator = Arc::new(coordinator);
        let consumes = match self.streams {
            Streams::One(name) => Consumes::Single {
                shard_sync: ShardSync::new(
                    kinesis.clone(),
                    name.clone(),
                    store.clone(),
                    config.initial_position,
                ),
                name,
            },
            Streams::Tracked(tracker) => Consumes::Multi(Arc::new(MultiStreamSync::new(
                kinesis.clone(),
                store.clone(),
                tracker,
                streams.clone(),
                MultiStreamSettings {
                    retrieval: config.retrieval.clone(),
                    initial_position: config.initial_position,
                    tracker_interval: config.stream_tracker_interval,
                    shard_sync_interval: config.shard_sync_interval,
                    deletion: config.former_streams_deletion,
                },
            ))),
        };
        Ok(Scheduler {
            inner: Arc::new(Inner {
                application_name: self.application_name,
                consumes,
                streams,
                table_name: table,
                worker_id,
                kinesis,
                store,
                coordinator,
                load,
                factory,
                config,
                shutdown: CancellationToken::new(),
                done,
                started: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::{MAX_DURATION_SETTING, MIN_FAILOVER_TIME};
    use super::super::test_support::{factory, offline_clients, refused, valid};
    use super::*;
    use crate::leases::LeaseConfig;

    #[tokio::test]
    async fn each_kind_of_builder_refuses_the_other_build_by_a_typed_error() {
        use crate::multi_stream::{StaticStreamTracker, StreamConfig};
        let tracker = || StaticStreamTracker::new(vec![StreamConfig::new("s").unwrap()]).unwrap();
        let (kinesis, dynamodb) = offline_clients();
        for b in [
            Scheduler::stream_builder("app", "s"),
            Scheduler::multi_stream_stream_builder("app", tracker()),
        ] {
            let e = b
                .with_clients(kinesis.clone(), dynamodb.clone())
                .build()
                .unwrap_err();
            assert!(
                matches!(e, Error::Config(ConfigError::NoProcessorFactory)),
                "{e:?}"
            );
            assert!(e.to_string().contains("build_stream"), "{e}");
        }
        for b in [
            Scheduler::builder("app", "s", factory),
            Scheduler::multi_stream_builder("app", tracker(), factory),
        ] {
            let e = b
                .with_clients(kinesis.clone(), dynamodb.clone())
                .build_stream()
                .unwrap_err();
            assert!(
                matches!(e, Error::Config(ConfigError::ProcessorFactoryGiven)),
                "{e:?}"
            );
        }
        // A bad setting is reported by build_stream as by build.
        let e = Scheduler::multi_stream_stream_builder("app", tracker())
            .with_clients(kinesis.clone(), dynamodb.clone())
            .with_worker_id("")
            .build_stream()
            .unwrap_err();
        assert!(
            matches!(e, Error::Config(ConfigError::InvalidWorkerId { .. })),
            "{e:?}"
        );
        Scheduler::multi_stream_stream_builder("app", tracker())
            .with_clients(kinesis, dynamodb)
            .build_stream()
            .expect("a multi-stream record stream builds");
    }

    #[test]
    fn builder_defaults_are_pinned() {
        let b = Scheduler::builder("app", "stream", factory);
        assert_eq!(b.config.initial_position, InitialPosition::TrimHorizon);
        assert_eq!(
            b.config.lease_config(),
            LeaseConfig {
                max_leases_to_steal_at_one_time: usize::MAX,
                ..LeaseConfig::new(Duration::from_secs(10))
            }
        );
        assert_eq!(b.config.lease_config().max_leases_per_worker, usize::MAX);
        assert!(b.config.worker_heartbeats);
        assert_eq!(
            b.config.lease_config().max_leases_to_steal_at_one_time,
            usize::MAX
        );
        let renewing = Scheduler::builder("app", "stream", factory).with_worker_heartbeats(false);
        assert_eq!(
            renewing
                .config
                .lease_config()
                .max_leases_to_steal_at_one_time,
            1
        );
        assert_eq!(
            b.config.retrieval,
            Retrieval::Polling(PollingConfig::default())
        );
        assert_eq!(b.config.shard_sync_interval, Duration::from_secs(60));
        assert_eq!(b.config.parent_poll_interval, Duration::from_secs(1));
        assert_eq!(b.config.table_name, None);
        assert_eq!(b.config.worker_id, None);
        assert_eq!(b.config.dispatch_interval, Duration::from_millis(200));
        assert_eq!(b.config.shutdown_timeout, Duration::from_secs(60));
        assert_eq!(b.config.outside_range, OutsideRangePolicy::Drop);
        assert_eq!(b.config.decompression, PayloadDecompression::Off);
        assert_eq!(b.config.batching, None);
        assert_eq!(b.config.failure_retry, FailureRetry::default());
        assert_eq!(b.config.balancing, Balancing::LeaseCount);
        assert_eq!(b.config.lease_config().balancing, Balancing::LeaseCount);
        let by_throughput = valid().with_balancing(Balancing::throughput());
        assert_eq!(
            by_throughput.config.lease_config().balancing,
            Balancing::throughput()
        );
        by_throughput.validate().unwrap();
        for (tolerance_percent, min_lease_kbps, setting) in [
            (0, 1, "balancing.tolerance_percent = 0"),
            (101, 1, "balancing.tolerance_percent = 101"),
            (10, 0, "balancing.min_lease_kbps = 0"),
        ] {
            let e = refused(valid().with_balancing(Balancing::Throughput {
                tolerance_percent,
                min_lease_kbps,
            }));
            assert!(e.to_string().contains(setting), "{e}");
        }
        let e = refused(valid().with_failure_retry(FailureRetry::default().with_max_attempts(0)));
        assert!(
            e.to_string().contains("failure_retry.max_attempts = 0"),
            "{e}"
        );
        let e = refused(valid().with_batching(Batching {
            max_records: 0,
            max_wait: Duration::from_secs(1),
        }));
        assert!(e.to_string().contains("batching.max_records = 0"), "{e}");
        assert!(b.kinesis.is_none() && b.dynamodb.is_none());
        assert_eq!(refused(b), ConfigError::MissingClients);
        // The defaults themselves are valid.
        valid().validate().unwrap();
        let s = valid().build().unwrap();
        assert_eq!(s.table_name(), "app");
    }

    #[test]
    fn failover_time_moves_renew_and_take_unless_taker_set() {
        let b =
            Scheduler::builder("app", "stream", factory).with_failover_time(Duration::from_secs(3));
        assert_eq!(
            b.config.lease_config().renew_interval,
            Duration::from_millis(975)
        );
        assert_eq!(
            b.config.lease_config().taker_interval,
            Duration::from_millis(6_050)
        );
        let b = Scheduler::builder("app", "stream", factory)
            .with_taker_interval(Duration::from_millis(500))
            .with_max_leases_per_worker(4)
            .with_failover_time(Duration::from_secs(3));
        assert_eq!(
            b.config.lease_config().taker_interval,
            Duration::from_millis(500)
        );
        assert_eq!(b.config.lease_config().max_leases_per_worker, 4);
    }

    #[test]
    fn zero_failover_time_is_refused_not_clamped() {
        let e = refused(valid().with_failover_time(Duration::ZERO));
        assert_eq!(
            e,
            ConfigError::ZeroDuration {
                setting: "failover_time"
            }
        );
        assert!(e.to_string().contains("failover_time"), "{e}");
        // Also when an explicit taker interval would otherwise make the lease timings look
        // usable.
        let e = refused(
            valid()
                .with_taker_interval(Duration::from_secs(1))
                .with_failover_time(Duration::ZERO),
        );
        assert!(e.to_string().contains("failover_time"), "{e}");
    }

    #[test]
    fn every_bad_setting_is_refused_and_named() {
        let e = refused(valid().with_taker_interval(Duration::ZERO));
        assert_eq!(
            e,
            ConfigError::ZeroDuration {
                setting: "taker_interval"
            }
        );
        let e = refused(valid().with_shard_sync_interval(Duration::ZERO));
        assert_eq!(
            e,
            ConfigError::ZeroDuration {
                setting: "shard_sync_interval"
            }
        );
        let e = refused(valid().with_parent_poll_interval(Duration::ZERO));
        assert_eq!(
            e,
            ConfigError::ZeroDuration {
                setting: "parent_poll_interval"
            }
        );
        let e = refused(valid().with_polling(PollingConfig {
            idle_time_between_reads: Duration::ZERO,
            ..PollingConfig::default()
        }));
        assert!(
            e.to_string().contains("polling.idle_time_between_reads"),
            "{e}"
        );
        let e = refused(valid().with_polling(PollingConfig {
            min_time_between_calls: Duration::ZERO,
            ..PollingConfig::default()
        }));
        assert!(
            e.to_string().contains("polling.min_time_between_calls"),
            "{e}"
        );

        let e = refused(valid().with_max_leases_per_worker(0));
        assert!(
            matches!(
                e,
                ConfigError::OutOfRange {
                    setting: "max_leases_per_worker",
                    value: 0,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("max_leases_per_worker = 0"), "{e}");
        for bad in [0, -1, 10_001] {
            let e = refused(valid().with_polling(PollingConfig {
                max_records: bad,
                ..PollingConfig::default()
            }));
            assert_eq!(
                e,
                ConfigError::OutOfRange {
                    setting: "polling.max_records",
                    value: i64::from(bad),
                    allowed: "1 to 10000 (the GetRecords limit)",
                }
            );
        }
        let e = refused(valid().with_polling(PollingConfig {
            prefetch_batches: 0,
            ..PollingConfig::default()
        }));
        assert!(
            e.to_string().contains("polling.prefetch_batches = 0"),
            "{e}"
        );

        let e = refused(valid().with_worker_id(""));
        assert!(matches!(e, ConfigError::InvalidWorkerId { .. }), "{e:?}");
        let e = refused(valid().with_table_name("ab"));
        assert!(
            matches!(&e, ConfigError::InvalidTableName { name, .. } if name == "ab"),
            "{e:?}"
        );
    }

    #[test]
    fn names_are_checked_against_the_aws_rules() {
        let (k, d) = offline_clients();
        let e = refused(Scheduler::builder("app", "my stream", factory).with_clients(k, d));
        assert!(
            matches!(&e, ConfigError::InvalidStreamName { name, .. } if name == "my stream"),
            "{e:?}"
        );
        assert!(e.to_string().contains("\"my stream\""), "{e}");
        let (k, d) = offline_clients();
        let long = "s".repeat(129);
        let e = refused(Scheduler::builder("app", long, factory).with_clients(k, d));
        assert!(e.to_string().contains("at most 128"), "{e}");
        let (k, d) = offline_clients();
        let e = refused(Scheduler::builder("", "stream", factory).with_clients(k, d));
        assert!(
            matches!(e, ConfigError::InvalidApplicationName { .. }),
            "{e:?}"
        );
        let (k, d) = offline_clients();
        let e = refused(Scheduler::builder("my app", "stream", factory).with_clients(k, d));
        assert!(e.to_string().contains("names the lease table"), "{e}");
        // With its own table name, the application name only labels logs.
        let (k, d) = offline_clients();
        Scheduler::builder("my app", "stream", factory)
            .with_clients(k, d)
            .with_table_name("my-app-leases")
            .validate()
            .unwrap();
    }

    #[test]
    fn fan_out_settings_are_checked_and_the_consumer_named_after_the_application() {
        use crate::consumer::FanOutConfig;
        let fan_out = |f: FanOutConfig| valid().with_retrieval(Retrieval::FanOut(f));
        let s = fan_out(FanOutConfig::default()).build().unwrap();
        assert_eq!(
            s.inner.config.retrieval,
            Retrieval::FanOut(FanOutConfig::default().with_consumer_name("app"))
        );
        fan_out(FanOutConfig::default().with_consumer_name("a".repeat(128)))
            .validate()
            .unwrap();
        for bad in ["", "my consumer", &"c".repeat(129)] {
            let e = refused(fan_out(FanOutConfig::default().with_consumer_name(bad)));
            assert!(
                matches!(&e, ConfigError::InvalidConsumerName { name, .. } if name == bad),
                "{e:?}"
            );
        }
        // An application name fit for a table but not for a consumer (over 128 characters).
        let (k, d) = offline_clients();
        let long = "a".repeat(200);
        let e = refused(
            Scheduler::builder(long.clone(), "stream", factory)
                .with_clients(k, d)
                .with_retrieval(Retrieval::FanOut(FanOutConfig::default())),
        );
        assert!(
            matches!(&e, ConfigError::InvalidConsumerName { name, reason } if *name == long && reason.contains("application name")),
            "{e:?}"
        );
        let e = refused(fan_out(FanOutConfig::default().with_event_buffer(0)));
        assert!(e.to_string().contains("fan_out.event_buffer = 0"), "{e}");
        let e = refused(fan_out(
            FanOutConfig::default().with_event_buffer(usize::MAX),
        ));
        assert!(e.to_string().contains("fan_out.event_buffer"), "{e}");
        fan_out(FanOutConfig::default().with_event_buffer(10_000))
            .validate()
            .unwrap();
        for bad in [Duration::from_millis(4_999), Duration::from_secs(301)] {
            let e = refused(fan_out(FanOutConfig::default().with_renew_after(bad)));
            assert!(e.to_string().contains("fan_out.renew_after"), "{e}");
        }
        let e = refused(fan_out(
            FanOutConfig::default().with_idle_timeout(Duration::from_millis(999)),
        ));
        assert!(e.to_string().contains("fan_out.idle_timeout = 999"), "{e}");
        let e = refused(fan_out(
            FanOutConfig::default().with_renew_after(Duration::ZERO),
        ));
        assert_eq!(
            e,
            ConfigError::ZeroDuration {
                setting: "fan_out.renew_after"
            }
        );
        let e = refused(fan_out(
            FanOutConfig::default().with_idle_timeout(Duration::ZERO),
        ));
        assert_eq!(
            e,
            ConfigError::ZeroDuration {
                setting: "fan_out.idle_timeout"
            }
        );
        // Polling settings are not looked at with fan-out, and the other way round.
        valid()
            .with_polling(PollingConfig {
                max_records: 0,
                ..PollingConfig::default()
            })
            .with_retrieval(Retrieval::FanOut(FanOutConfig::default()))
            .validate()
            .unwrap();
    }

    #[test]
    fn multi_stream_settings_are_checked() {
        use crate::multi_stream::{StaticStreamTracker, StreamConfig};
        let multi = || {
            let (k, d) = offline_clients();
            let tracker = StaticStreamTracker::new(vec![StreamConfig::new("s").unwrap()]).unwrap();
            Scheduler::multi_stream_builder("app", tracker, factory).with_clients(k, d)
        };
        multi().validate().unwrap();
        assert_eq!(
            refused(multi().with_stream_tracker_interval(Duration::ZERO)),
            ConfigError::ZeroDuration {
                setting: "stream_tracker_interval"
            }
        );
        assert_eq!(
            refused(multi().with_former_streams_deletion(
                FormerStreamsLeasesDeletionStrategy::DeleteAfter(Duration::ZERO)
            )),
            ConfigError::ZeroDuration {
                setting: "former_streams_deletion"
            }
        );
        multi()
            .with_former_streams_deletion(FormerStreamsLeasesDeletionStrategy::NoDeletion)
            .validate()
            .unwrap();
        // Enhanced fan-out with a tracker: accepted, the consumer named after the
        // application unless named otherwise, and handed to the multi-stream sync.
        use crate::consumer::FanOutConfig;
        let s = multi()
            .with_retrieval(Retrieval::FanOut(FanOutConfig::default()))
            .build()
            .unwrap();
        let named_after_app = Retrieval::FanOut(FanOutConfig::default().with_consumer_name("app"));
        assert_eq!(s.inner.config.retrieval, named_after_app);
        let Consumes::Multi(sync) = &s.inner.consumes else {
            panic!("a tracker makes a multi-stream worker");
        };
        assert_eq!(sync.retrieval(), &named_after_app);
        let s = multi()
            .with_retrieval(Retrieval::FanOut(
                FanOutConfig::default().with_consumer_name("billing"),
            ))
            .build()
            .unwrap();
        let Consumes::Multi(sync) = &s.inner.consumes else {
            panic!("a tracker makes a multi-stream worker");
        };
        assert_eq!(
            sync.retrieval(),
            &Retrieval::FanOut(FanOutConfig::default().with_consumer_name("billing"))
        );
        // Its settings are checked as for one stream.
        let e = refused(multi().with_retrieval(Retrieval::FanOut(
            FanOutConfig::default().with_consumer_name("my consumer"),
        )));
        assert!(
            matches!(&e, ConfigError::InvalidConsumerName { name, .. } if name == "my consumer"),
            "{e:?}"
        );
        let e = refused(multi().with_retrieval(Retrieval::FanOut(
            FanOutConfig::default().with_event_buffer(0),
        )));
        assert!(e.to_string().contains("fan_out.event_buffer = 0"), "{e}");
        // Polling stays the default.
        let Consumes::Multi(sync) = &multi().build().unwrap().inner.consumes else {
            panic!("a tracker makes a multi-stream worker");
        };
        assert_eq!(
            sync.retrieval(),
            &Retrieval::Polling(PollingConfig::default())
        );
        let b = multi();
        assert_eq!(b.config.stream_tracker_interval, Duration::from_secs(60));
        assert_eq!(
            b.config.former_streams_deletion,
            FormerStreamsLeasesDeletionStrategy::DeleteAfter(Duration::from_secs(3600))
        );
    }

    #[test]
    fn edge_values_are_accepted() {
        let smallest = PollingConfig {
            max_records: 1,
            prefetch_batches: 1,
            ..PollingConfig::default()
        };
        valid().with_polling(smallest.clone()).validate().unwrap();
        valid()
            .with_polling(PollingConfig {
                max_records: 10_000,
                ..smallest
            })
            .with_max_leases_per_worker(1)
            .with_max_leases_to_steal_at_one_time(0)
            .with_shutdown_timeout(Duration::ZERO)
            .with_failover_time(MIN_FAILOVER_TIME)
            .validate()
            .unwrap();
        let e = refused(valid().with_failover_time(Duration::from_millis(99)));
        assert!(
            matches!(
                e,
                ConfigError::OutOfRange {
                    setting: "failover_time",
                    value: 99,
                    ..
                }
            ),
            "{e}"
        );
        let (k, d) = offline_clients();
        Scheduler::builder("a.b_c-1", "s", factory)
            .with_clients(k, d)
            .with_worker_id("w")
            .validate()
            .unwrap();
    }

    #[test]
    fn huge_durations_are_refused_not_panicking() {
        use crate::multi_stream::{StaticStreamTracker, StreamConfig};
        let huge = Duration::MAX;
        let multi = || {
            let (k, d) = offline_clients();
            let tracker = StaticStreamTracker::new(vec![StreamConfig::new("s").unwrap()]).unwrap();
            Scheduler::multi_stream_builder("app", tracker, factory).with_clients(k, d)
        };
        let cases: Vec<(&str, SchedulerBuilder)> = vec![
            ("failover_time", valid().with_failover_time(huge)),
            ("taker_interval", valid().with_taker_interval(huge)),
            (
                "graceful_handoff_timeout",
                valid().with_graceful_handoff_timeout(huge),
            ),
            (
                "shard_sync_interval",
                valid().with_shard_sync_interval(huge),
            ),
            (
                "parent_poll_interval",
                valid().with_parent_poll_interval(huge),
            ),
            ("shutdown_timeout", valid().with_shutdown_timeout(huge)),
            (
                "stream_tracker_interval",
                multi().with_stream_tracker_interval(huge),
            ),
            (
                "former_streams_deletion",
                multi().with_former_streams_deletion(
                    FormerStreamsLeasesDeletionStrategy::DeleteAfter(huge),
                ),
            ),
            (
                "polling.idle_time_between_reads",
                valid().with_polling(PollingConfig {
                    idle_time_between_reads: huge,
                    ..PollingConfig::default()
                }),
            ),
            (
                "polling.min_time_between_calls",
                valid().with_polling(PollingConfig {
                    min_time_between_calls: huge,
                    ..PollingConfig::default()
                }),
            ),
            (
                "fan_out.idle_timeout",
                valid().with_retrieval(Retrieval::FanOut(
                    crate::FanOutConfig::default().with_idle_timeout(huge),
                )),
            ),
            (
                "batching.max_wait",
                valid().with_batching(Batching {
                    max_records: 10,
                    max_wait: huge,
                }),
            ),
        ];
        for (setting, b) in cases {
            let e = refused(b);
            assert!(
                matches!(e, ConfigError::OutOfRange { setting: s, .. } if s == setting),
                "{setting}: {e:?}"
            );
            assert!(e.to_string().contains(setting), "{e}");
        }
        // The longest accepted value of each builds, and its lease timings can be added up.
        let longest = MAX_DURATION_SETTING;
        let b = valid()
            .with_failover_time(longest)
            .with_graceful_handoff_timeout(longest)
            .with_shutdown_timeout(longest);
        b.validate().unwrap();
        let lease = b.config.lease_config();
        assert!(lease.handoff_patience() > longest);
        b.build().unwrap();
        valid()
            .with_taker_interval(longest)
            .with_graceful_handoff_timeout(longest)
            .build()
            .unwrap()
            .inner
            .config
            .lease_config()
            .handoff_patience();
    }
}
