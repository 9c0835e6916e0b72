//! The [`Scheduler`]: one worker of a fleet.
//!
//! ```text
//!  Scheduler::run
//!   ├─ start-up (each step retried with backoff while retryable; shutdown stops it at once)
//!   │    DescribeStreamSummary ──missing──▶ Err(StreamNotFound), nothing created
//!   │      ─▶ create lease table (on demand) ─▶ first ShardSync
//!   ├─ ShardSync (every shard_sync_interval, at shard ends)
//!   ├─ LeaseCoordinator renewer (every failover/3) and taker (every 2 × failover)
//!   └─ dispatcher: for each held lease whose parents all reached SHARD_END
//!         └─ ShardConsumer (fetcher ─bounded─▶ RecordProcessor)
//!  graceful_shutdown: stop taking ─▶ consumers finish their batch + shutdown_requested
//!                     ─▶ release leases (others take them at once) ─▶ stop renewing
//!  run ends (Ok, Err, or its future dropped) ─▶ every graceful_shutdown returns
//! ```
//!
//! Start-up errors that cannot get better by waiting (a missing stream, access denied,
//! missing or rejected credentials, validation) are returned by `run` at once; network
//! trouble, throttling and 5xx are retried until they pass or shutdown is requested. Once
//! running, errors are logged and retried. `graceful_shutdown` returns once `run` has
//! ended, whichever way it ended.
//!
//! # Usage
//! ```no_run
//! use kinesis_consumer::{RecordProcessor, Scheduler};
//! # fn make(_: &str) -> Box<dyn RecordProcessor> { unimplemented!() }
//!
//! # async fn demo(sdk: aws_config::SdkConfig) -> Result<(), kinesis_consumer::Error> {
//! let scheduler = Scheduler::builder("my-app", "my-stream", make)
//!     .with_sdk_config(&sdk)
//!     .build()?;
//! let worker = scheduler.clone();
//! tokio::spawn(async move { worker.run().await });
//! // ... later:
//! scheduler.graceful_shutdown().await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config_error::{check_name, ConfigError, STREAM_NAME_LEN, TABLE_NAME_LEN};
use crate::consumer::{Exit, PollingConfig, ShardConsumer};
use crate::coordinator::{HeldLease, LeaseConfig, LeaseCoordinator};
use crate::error::Error;
use crate::lease_table::{LeaseStore, LeaseTable};
use crate::processor::RecordProcessorFactory;
use crate::shard_sync::{InitialPosition, ShardSync};

/// Configures a [`Scheduler`]; from [`Scheduler::builder`].
#[must_use = "a builder does nothing until build() is called"]
pub struct SchedulerBuilder {
    /// Names the application; the lease table is named after it unless set otherwise.
    application_name: String,
    /// The stream consumed.
    stream_name: String,
    /// Makes a processor per lease.
    factory: Arc<dyn RecordProcessorFactory>,
    /// Kinesis client, if given.
    kinesis: Option<aws_sdk_kinesis::Client>,
    /// DynamoDB client, if given.
    dynamodb: Option<aws_sdk_dynamodb::Client>,
    /// Lease table name override.
    table_name: Option<String>,
    /// Worker id override.
    worker_id: Option<String>,
    /// Where shards without a checkpoint start.
    initial_position: InitialPosition,
    /// Lease timings.
    lease: LeaseConfig,
    /// Whether `lease.taker_interval` was set explicitly (else it follows the failover time).
    taker_interval_set: bool,
    /// Polling settings.
    polling: PollingConfig,
    /// How often shards are listed to find new ones.
    shard_sync_interval: Duration,
    /// How often a lease waiting for its parents checks them again.
    parent_poll_interval: Duration,
    /// How often held leases are matched with running consumers.
    dispatch_interval: Duration,
    /// How long a graceful shutdown waits for processors before aborting them.
    shutdown_timeout: Duration,
}

impl std::fmt::Debug for SchedulerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerBuilder")
            .field("application_name", &self.application_name)
            .field("stream_name", &self.stream_name)
            .field("worker_id", &self.worker_id)
            .field("initial_position", &self.initial_position)
            .field("lease", &self.lease)
            .field("polling", &self.polling)
            .finish_non_exhaustive()
    }
}

/// The shortest failover time accepted: renewals run every failover / 3 − 25 ms, which
/// leaves no time between them below about 100 ms.
pub const MIN_FAILOVER_TIME: Duration = Duration::from_millis(100);

/// A worker id unique to this process: host name, process id and a random suffix.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl SchedulerBuilder {
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
        self.table_name = Some(name.into());
        self
    }

    /// Sets this worker's id (its `leaseOwner`). Default: [`default_worker_id`].
    /// [`build`](Self::build) refuses an empty id: [`ConfigError::InvalidWorkerId`].
    pub fn with_worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// Where shards without a checkpoint start. Default: [`InitialPosition::TrimHorizon`].
    pub fn with_initial_position(mut self, position: InitialPosition) -> Self {
        self.initial_position = position;
        self
    }

    /// Sets the failover time; renewals (failover / 3 − 25 ms) follow it, and so do takes
    /// (2 × (failover + 25 ms)) unless set with
    /// [`with_taker_interval`](Self::with_taker_interval). Default: 10 s.
    /// [`build`](Self::build) refuses zero ([`ConfigError::ZeroDuration`]) and anything
    /// under [`MIN_FAILOVER_TIME`] ([`ConfigError::OutOfRange`]), naming `failover_time`.
    pub fn with_failover_time(mut self, failover: Duration) -> Self {
        let mut lease = LeaseConfig::new(failover);
        lease.max_leases_per_worker = self.lease.max_leases_per_worker;
        lease.max_leases_to_steal_at_one_time = self.lease.max_leases_to_steal_at_one_time;
        if self.taker_interval_set {
            lease.taker_interval = self.lease.taker_interval;
        }
        self.lease = lease;
        self
    }

    /// How often the taker scans the lease table. Default: 2 × (failover + 25 ms).
    /// Shorter intervals find dead workers' leases sooner at the cost of more scans.
    /// [`build`](Self::build) refuses zero: [`ConfigError::ZeroDuration`] naming
    /// `taker_interval`.
    pub fn with_taker_interval(mut self, interval: Duration) -> Self {
        self.lease.taker_interval = interval;
        self.taker_interval_set = true;
        self
    }

    /// The most leases this worker holds. Default: no limit (`usize::MAX`).
    /// [`build`](Self::build) refuses 0: [`ConfigError::OutOfRange`] naming
    /// `max_leases_per_worker`.
    pub fn with_max_leases_per_worker(mut self, max: usize) -> Self {
        self.lease.max_leases_per_worker = max;
        self
    }

    /// The most leases stolen per taker round. Default: 1. 0 means this worker never
    /// steals (it still takes expired and unowned leases).
    pub fn with_max_leases_to_steal_at_one_time(mut self, max: usize) -> Self {
        self.lease.max_leases_to_steal_at_one_time = max;
        self
    }

    /// Polling settings. Default: [`PollingConfig::default`]. [`build`](Self::build)
    /// refuses `max_records` outside 1 to 10000 (the `GetRecords` limit) and
    /// `prefetch_batches` 0 ([`ConfigError::OutOfRange`]), and a zero
    /// `idle_time_between_reads` or `min_time_between_calls` ([`ConfigError::ZeroDuration`]);
    /// each error names the field as `polling.<field>`.
    pub fn with_polling(mut self, polling: PollingConfig) -> Self {
        self.polling = polling;
        self
    }

    /// How often shards are listed to find new ones after resharding (shard ends also
    /// trigger a sync). Default: 60 s. [`build`](Self::build) refuses zero:
    /// [`ConfigError::ZeroDuration`] naming `shard_sync_interval`.
    pub fn with_shard_sync_interval(mut self, interval: Duration) -> Self {
        self.shard_sync_interval = interval;
        self
    }

    /// How often a lease waiting for its parents to finish checks them again.
    /// Default: 1 s. [`build`](Self::build) refuses zero: [`ConfigError::ZeroDuration`]
    /// naming `parent_poll_interval`.
    pub fn with_parent_poll_interval(mut self, interval: Duration) -> Self {
        self.parent_poll_interval = interval;
        self
    }

    /// How long a graceful shutdown waits for processors to finish their batch and
    /// `shutdown_requested`; those still running then are aborted (their records after the
    /// last checkpoint go to the next owner again). Leases are released either way.
    /// Default: 60 s. Zero is allowed: processors are then not waited for at all.
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Checks every setting, without calling AWS. [`build`](Self::build) calls it first.
    ///
    /// # Errors
    /// The first bad setting, checked in this order:
    /// - [`ConfigError::MissingClients`]: neither clients nor an `SdkConfig` were given;
    /// - [`ConfigError::InvalidStreamName`]: not 1 to 128 characters of `A-Z a-z 0-9 _ . -`;
    /// - [`ConfigError::InvalidTableName`] (a name given with
    ///   [`with_table_name`](Self::with_table_name)) or
    ///   [`ConfigError::InvalidApplicationName`] (the application name, when it names the
    ///   table): not 3 to 255 characters of `A-Z a-z 0-9 _ . -`;
    /// - [`ConfigError::InvalidWorkerId`]: an empty worker id;
    /// - [`ConfigError::ZeroDuration`]: a zero `failover_time`, `taker_interval`,
    ///   `shard_sync_interval`, `parent_poll_interval`, `polling.idle_time_between_reads`
    ///   or `polling.min_time_between_calls`;
    /// - [`ConfigError::OutOfRange`]: `max_leases_per_worker` 0, `polling.max_records`
    ///   outside 1 to 10000, `polling.prefetch_batches` 0.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kinesis.is_none() || self.dynamodb.is_none() {
            return Err(ConfigError::MissingClients);
        }
        check_name(&self.stream_name, STREAM_NAME_LEN).map_err(|reason| {
            ConfigError::InvalidStreamName {
                name: self.stream_name.clone(),
                reason,
            }
        })?;
        match &self.table_name {
            Some(table) => check_name(table, TABLE_NAME_LEN).map_err(|reason| {
                ConfigError::InvalidTableName {
                    name: table.clone(),
                    reason,
                }
            })?,
            None => check_name(&self.application_name, TABLE_NAME_LEN).map_err(|reason| {
                ConfigError::InvalidApplicationName {
                    name: self.application_name.clone(),
                    reason,
                }
            })?,
        }
        if self.worker_id.as_deref() == Some("") {
            return Err(ConfigError::InvalidWorkerId {
                id: String::new(),
                reason: "is empty".to_owned(),
            });
        }
        let durations = [
            ("failover_time", self.lease.failover_time),
            ("taker_interval", self.lease.taker_interval),
            ("shard_sync_interval", self.shard_sync_interval),
            ("parent_poll_interval", self.parent_poll_interval),
            (
                "polling.idle_time_between_reads",
                self.polling.idle_time_between_reads,
            ),
            (
                "polling.min_time_between_calls",
                self.polling.min_time_between_calls,
            ),
        ];
        if let Some(&(setting, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::ZeroDuration { setting });
        }
        if self.lease.failover_time < MIN_FAILOVER_TIME {
            return Err(ConfigError::OutOfRange {
                setting: "failover_time",
                value: i64::try_from(self.lease.failover_time.as_millis()).unwrap_or(i64::MAX),
                allowed: "100 ms or more (leases are renewed every failover / 3 - 25 ms)",
            });
        }
        if self.lease.max_leases_per_worker == 0 {
            return Err(ConfigError::OutOfRange {
                setting: "max_leases_per_worker",
                value: 0,
                allowed: "1 or more",
            });
        }
        if !(1..=10_000).contains(&self.polling.max_records) {
            return Err(ConfigError::OutOfRange {
                setting: "polling.max_records",
                value: i64::from(self.polling.max_records),
                allowed: "1 to 10000 (the GetRecords limit)",
            });
        }
        if self.polling.prefetch_batches == 0 {
            return Err(ConfigError::OutOfRange {
                setting: "polling.prefetch_batches",
                value: 0,
                allowed: "1 or more",
            });
        }
        Ok(())
    }

    /// Checks the configuration ([`validate`](Self::validate)) and builds the worker.
    /// Nothing is called yet.
    ///
    /// # Errors
    /// [`Error::Config`] with the first bad setting [`validate`](Self::validate) finds.
    pub fn build(self) -> Result<Scheduler, Error> {
        self.validate()?;
        let (Some(kinesis), Some(dynamodb)) = (self.kinesis, self.dynamodb) else {
            return Err(ConfigError::MissingClients.into());
        };
        let table = self
            .table_name
            .unwrap_or_else(|| self.application_name.clone());
        let store: Arc<dyn LeaseStore> = Arc::new(LeaseTable::new(dynamodb, table.clone()));
        let worker_id = self.worker_id.unwrap_or_else(default_worker_id);
        let coordinator = Arc::new(LeaseCoordinator::new(
            store.clone(),
            worker_id.clone(),
            self.lease,
        ));
        let shard_sync = ShardSync::new(
            kinesis.clone(),
            self.stream_name.clone(),
            store.clone(),
            self.initial_position,
        );
        let (done_tx, _) = watch::channel(false);
        Ok(Scheduler {
            inner: Arc::new(Inner {
                application_name: self.application_name,
                stream_name: self.stream_name,
                table_name: table,
                worker_id,
                kinesis,
                store,
                coordinator,
                shard_sync,
                factory: self.factory,
                polling: self.polling,
                at_timestamp: match self.initial_position {
                    InitialPosition::AtTimestamp(t) => Some(t),
                    _ => None,
                },
                shard_sync_interval: self.shard_sync_interval,
                parent_poll_interval: self.parent_poll_interval,
                dispatch_interval: self.dispatch_interval,
                shutdown_timeout: self.shutdown_timeout,
                shutdown: CancellationToken::new(),
                done: done_tx,
                started: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }
}

/// One worker: holds leases and runs a [`crate::RecordProcessor`] per leased shard.
/// Cheap to clone; clones are the same worker.
#[derive(Debug, Clone)]
pub struct Scheduler {
    /// Shared state.
    inner: Arc<Inner>,
}

struct Inner {
    /// For logs.
    application_name: String,
    /// The stream.
    stream_name: String,
    /// The lease table.
    table_name: String,
    /// This worker.
    worker_id: String,
    /// Kinesis client.
    kinesis: aws_sdk_kinesis::Client,
    /// The lease table.
    store: Arc<dyn LeaseStore>,
    /// Leases.
    coordinator: Arc<LeaseCoordinator>,
    /// Shards to leases.
    shard_sync: ShardSync,
    /// The user's processors.
    factory: Arc<dyn RecordProcessorFactory>,
    /// Polling settings.
    polling: PollingConfig,
    /// For `AT_TIMESTAMP` starts.
    at_timestamp: Option<SystemTime>,
    /// Periodic shard sync.
    shard_sync_interval: Duration,
    /// Parent checks of blocked leases.
    parent_poll_interval: Duration,
    /// Dispatcher tick.
    dispatch_interval: Duration,
    /// Bound on waiting for processors at shutdown.
    shutdown_timeout: Duration,
    /// Cancelled to request a graceful shutdown.
    shutdown: CancellationToken,
    /// Becomes true when `run` has finished shutting down.
    done: watch::Sender<bool>,
    /// Set by the first `run`: one worker runs once.
    started: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("application_name", &self.application_name)
            .field("stream_name", &self.stream_name)
            .field("table_name", &self.table_name)
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

/// A running consumer, as the dispatcher tracks it.
struct Running {
    /// The tenure it runs under.
    held: Arc<HeldLease>,
    /// Its graceful stop.
    shutdown: CancellationToken,
    /// Its task.
    task: tokio::task::JoinHandle<Exit>,
}

/// Marks the worker done when dropped, whichever way `run` ends.
struct MarkDoneOnDrop<'a>(&'a watch::Sender<bool>);

impl Drop for MarkDoneOnDrop<'_> {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// The first delay between two tries of a start-up step.
const START_UP_MIN_DELAY: Duration = Duration::from_millis(200);
/// The longest delay between two tries of a start-up step, before jitter (which adds up
/// to as much again).
const START_UP_MAX_DELAY: Duration = Duration::from_secs(5);
/// A start-up step that keeps failing is logged at `warn` at most this often after its
/// first failure (at `debug` in between).
const START_UP_WARN_EVERY: Duration = Duration::from_secs(60);

/// Delays between tries of a start-up step: [`START_UP_MIN_DELAY`] doubling up to
/// [`START_UP_MAX_DELAY`], each plus a random jitter of up to as much again; endless.
fn start_up_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(START_UP_MIN_DELAY)
        .with_max_delay(START_UP_MAX_DELAY)
        .with_jitter()
        .without_max_times()
}

/// One try of a start-up step that did not fail.
#[derive(Debug)]
enum Try<T> {
    /// The step is done.
    Ready(T),
    /// The step cannot finish yet (e.g. the stream is still being created): why, to log.
    NotYet(String),
}

/// Tries a start-up step until it is done (`Ok(Some)`), fails with a non-retryable error
/// (that error), or `shutdown` is cancelled (`Ok(None)`, at once: the try in flight is
/// dropped, which every start-up step allows). Between tries it waits the next delay of
/// `backoff`. The first failure is logged at `warn` with its cause, later ones at `debug`
/// with a `warn` at most every [`START_UP_WARN_EVERY`].
async fn retry_start_up_step<T, F, Fut>(
    step: &'static str,
    shutdown: &CancellationToken,
    backoff: ExponentialBuilder,
    mut try_once: F,
) -> Result<Option<T>, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Try<T>, Error>>,
{
    let mut delays = backoff.build();
    let mut failures = 0u32;
    let mut last_warn: Option<tokio::time::Instant> = None;
    loop {
        if shutdown.is_cancelled() {
            return Ok(None);
        }
        let outcome = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(None),
            outcome = try_once() => outcome,
        };
        let cause = match outcome {
            Ok(Try::Ready(done)) => {
                if failures > 0 {
                    tracing::info!(step, failures, "start-up step done after retries");
                }
                return Ok(Some(done));
            }
            Ok(Try::NotYet(why)) => why,
            Err(e) if e.is_retryable() => e.to_string(),
            Err(e) => return Err(e),
        };
        failures += 1;
        let delay = delays.next().unwrap_or(START_UP_MAX_DELAY * 2);
        let now = tokio::time::Instant::now();
        if last_warn.is_none_or(|at| now.duration_since(at) >= START_UP_WARN_EVERY) {
            last_warn = Some(now);
            tracing::warn!(step, failures, retry_in = ?delay, %cause, "start-up step failed; retrying");
        } else {
            tracing::debug!(step, failures, retry_in = ?delay, %cause, "start-up step failed; retrying");
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

impl Scheduler {
    /// A builder for a worker of `application_name` consuming `stream_name`, with
    /// `factory` making a processor per shard lease.
    ///
    /// The names are checked by [`SchedulerBuilder::build`]: the stream name against the
    /// Kinesis rule (1 to 128 characters of `A-Z a-z 0-9 _ . -`), the application name
    /// against the DynamoDB table name rule (3 to 255 of the same characters) when it names
    /// the lease table (no [`SchedulerBuilder::with_table_name`]); otherwise it only labels
    /// logs.
    pub fn builder(
        application_name: impl Into<String>,
        stream_name: impl Into<String>,
        factory: impl RecordProcessorFactory,
    ) -> SchedulerBuilder {
        let failover = Duration::from_secs(10);
        SchedulerBuilder {
            application_name: application_name.into(),
            stream_name: stream_name.into(),
            factory: Arc::new(factory),
            kinesis: None,
            dynamodb: None,
            table_name: None,
            worker_id: None,
            initial_position: InitialPosition::TrimHorizon,
            lease: LeaseConfig::new(failover),
            taker_interval_set: false,
            polling: PollingConfig::default(),
            shard_sync_interval: Duration::from_secs(60),
            parent_poll_interval: Duration::from_secs(1),
            dispatch_interval: Duration::from_millis(200),
            shutdown_timeout: Duration::from_secs(60),
        }
    }

    /// This worker's id.
    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// The lease table's name.
    pub fn table_name(&self) -> &str {
        &self.inner.table_name
    }

    /// The lease coordinator (held leases, manual rounds).
    pub fn coordinator(&self) -> &Arc<LeaseCoordinator> {
        &self.inner.coordinator
    }

    /// Asks `run` to shut down gracefully and returns at once.
    pub fn request_shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Asks `run` to shut down gracefully and waits until it has: in-flight batches finish,
    /// every processor gets `shutdown_requested`, and the leases are released so other
    /// workers take them at their next taker round. Returns at once if `run` was never
    /// called (a later `run` then returns immediately) and as soon as `run` has ended by
    /// any path: a finished shutdown, an error (e.g. [`Error::StreamNotFound`]), a shutdown
    /// during start-up, or its future being dropped.
    ///
    /// # Cancellation
    /// Dropping the future does not stop the shutdown once requested.
    pub async fn graceful_shutdown(&self) {
        self.request_shutdown();
        if !self.inner.started.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut done = self.inner.done.subscribe();
        let _ = done.wait_for(|d| *d).await;
    }

    /// Runs the worker until [`graceful_shutdown`](Self::graceful_shutdown) (or
    /// [`request_shutdown`](Self::request_shutdown)) is called.
    ///
    /// Start-up, in this order:
    /// 1. the stream is checked (`DescribeStreamSummary`; a stream still `CREATING` is
    ///    waited for), so a misspelt stream name leaves no lease table behind;
    /// 2. the lease table is created if it does not exist, and waited for until `ACTIVE`;
    /// 3. the first shard sync creates the leases of the stream's shards.
    ///
    /// Each step is tried again while it fails with a retryable error (network trouble,
    /// throttling, 5xx; see [`Error::is_retryable`]): after 200 ms, doubling up to 5 s, each
    /// delay plus up to as much again of random jitter. The first failure of a step is
    /// logged at `warn` with its cause, repeats at `debug` with a `warn` at most once a
    /// minute. A shutdown requested during start-up stops it at once, even in the middle of
    /// a call, and `run` returns `Ok(())` without taking any lease (a lease table or leases
    /// created by the steps already done stay).
    ///
    /// Then leases are renewed and taken, consumers run, and failures are logged and
    /// retried until shutdown.
    ///
    /// Whichever way `run` ends — `Ok`, an error, or its future being dropped —
    /// [`graceful_shutdown`](Self::graceful_shutdown) callers are released, and later ones
    /// return at once.
    ///
    /// # Cancellation
    /// Dropping the future stops the worker abruptly: consumers are aborted and leases
    /// are left to expire (as after a crash). Prefer a graceful shutdown.
    ///
    /// # Errors
    /// - [`Error::AlreadyStarted`] if `run` was called on this worker before (the first
    ///   `run` is not disturbed);
    /// - [`Error::StreamNotFound`] if the stream does not exist; nothing was created;
    /// - the first non-retryable error of a start-up step: access denied, credentials
    ///   missing or rejected, a validation error ([`Error::Kinesis`] or
    ///   [`Error::DynamoDb`]), or a lease table that does not become `ACTIVE`
    ///   ([`Error::TableNotActive`]).
    ///
    /// After start-up, errors are logged and retried, never returned.
    pub async fn run(&self) -> Result<(), Error> {
        let inner = &self.inner;
        if inner
            .started
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Error::AlreadyStarted);
        }
        // From here on every way out (return, `?`, or this future being dropped) marks the
        // worker done, so graceful_shutdown never waits for a run that has ended.
        let _done = MarkDoneOnDrop(&inner.done);
        tracing::info!(worker = %inner.worker_id, table = %inner.table_name, stream = %inner.stream_name, "worker starting");
        if !self.start_up().await? {
            tracing::info!(worker = %inner.worker_id, "shutdown requested during start-up; worker stopped");
            return Ok(());
        }
        self.work().await;
        Ok(())
    }

    /// The start-up steps of [`run`](Self::run), each retried while retryable: `Ok(true)`
    /// when all are done, `Ok(false)` when shutdown was requested first.
    async fn start_up(&self) -> Result<bool, Error> {
        let inner = &self.inner;
        let shutdown = &inner.shutdown;
        let stream = retry_start_up_step("stream check", shutdown, start_up_backoff(), || {
            self.check_stream()
        });
        if stream.await?.is_none() {
            return Ok(false);
        }
        let store = &inner.store;
        let table = retry_start_up_step("lease table", shutdown, start_up_backoff(), || async {
            store.create_table_if_not_exists().await.map(Try::Ready)
        });
        if table.await?.is_none() {
            return Ok(false);
        }
        let sync = &inner.shard_sync;
        let first_sync = retry_start_up_step(
            "initial shard sync",
            shutdown,
            start_up_backoff(),
            || async { sync.sync().await.map(Try::Ready) },
        );
        Ok(first_sync.await?.is_some())
    }

    /// One `DescribeStreamSummary`: ready once the stream is `ACTIVE` or `UPDATING`.
    ///
    /// # Errors
    /// [`Error::StreamNotFound`] for `ResourceNotFoundException`, [`Error::Kinesis`]
    /// otherwise.
    async fn check_stream(&self) -> Result<Try<()>, Error> {
        use aws_sdk_kinesis::types::StreamStatus;
        let stream = &self.inner.stream_name;
        ::metrics::counter!(crate::metrics::KINESIS_CALLS, "operation" => "DescribeStreamSummary")
            .increment(1);
        match self
            .inner
            .kinesis
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
        {
            Ok(out) => match out.stream_description_summary().map(|s| s.stream_status()) {
                Some(status @ (StreamStatus::Creating | StreamStatus::Deleting)) => Ok(
                    Try::NotYet(format!("stream {stream} is {}", status.as_str())),
                ),
                _ => Ok(Try::Ready(())),
            },
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Err(Error::StreamNotFound {
                    stream: stream.clone(),
                })
            }
            Err(e) => Err(Error::kinesis("DescribeStreamSummary", stream, &e)),
        }
    }

    /// After start-up: renewer, taker, periodic shard sync and the dispatcher, until
    /// shutdown is requested; then the graceful shutdown. Dropping the future aborts the
    /// consumers and stops the background tasks.
    async fn work(&self) {
        let inner = &self.inner;
        let hard_stop = CancellationToken::new();
        let _hard_stop_on_drop = hard_stop.clone().drop_guard();

        let tracker = TaskTracker::new();
        let stop_taking = hard_stop.child_token();
        let stop_renewing = hard_stop.child_token();
        let wake_taker = Arc::new(Notify::new());
        let shard_ended = Arc::new(Notify::new());
        {
            let c = inner.coordinator.clone();
            let t = stop_renewing.clone();
            tracker.spawn(async move { c.run_renewer(t).await });
        }
        {
            let c = inner.coordinator.clone();
            let (t, w) = (stop_taking.clone(), wake_taker.clone());
            tracker.spawn(async move { c.run_taker(t, w).await });
        }
        {
            let sync = inner.shard_sync.clone();
            let (t, ended, wake, interval) = (
                stop_taking.clone(),
                shard_ended.clone(),
                wake_taker.clone(),
                inner.shard_sync_interval,
            );
            tracker.spawn(async move {
                loop {
                    tokio::select! {
                        _ = t.cancelled() => return,
                        _ = tokio::time::sleep(interval) => {}
                        _ = ended.notified() => {}
                    }
                    match sync.sync().await {
                        Ok(o) if !o.created.is_empty() || !o.deleted.is_empty() => {
                            wake.notify_one()
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "shard sync failed"),
                    }
                }
            });
        }

        let mut running: HashMap<String, Running> = HashMap::new();
        // Leases waiting for parents, with when they may be checked again.
        let mut blocked: HashMap<String, tokio::time::Instant> = HashMap::new();
        let mut finished: HashMap<String, Arc<HeldLease>> = HashMap::new();
        loop {
            tokio::select! {
                _ = inner.shutdown.cancelled() => break,
                _ = tokio::time::sleep(inner.dispatch_interval) => {}
            }
            self.dispatch(
                &mut running,
                &mut blocked,
                &mut finished,
                &shard_ended,
                &hard_stop,
            )
            .await;
        }

        // Graceful shutdown.
        tracing::info!(worker = %inner.worker_id, "graceful shutdown: stopping consumers");
        stop_taking.cancel();
        for r in running.values() {
            r.shutdown.cancel();
        }
        let deadline = tokio::time::Instant::now() + inner.shutdown_timeout;
        for (key, mut r) in running.drain() {
            match tokio::time::timeout_at(deadline, &mut r.task).await {
                Ok(Ok(exit)) => tracing::debug!(lease = %key, ?exit, "consumer stopped"),
                Ok(Err(e)) => tracing::error!(lease = %key, error = %e, "consumer task failed"),
                Err(_) => {
                    tracing::error!(lease = %key, "processor did not finish in time; aborting it");
                    r.task.abort();
                }
            }
        }
        inner.coordinator.release_all().await;
        stop_renewing.cancel();
        tracker.close();
        tracker.wait().await;
        tracing::info!(worker = %inner.worker_id, "worker stopped");
    }

    /// Starts consumers for held leases whose parents are done; forgets finished ones.
    async fn dispatch(
        &self,
        running: &mut HashMap<String, Running>,
        blocked: &mut HashMap<String, tokio::time::Instant>,
        finished: &mut HashMap<String, Arc<HeldLease>>,
        shard_ended: &Arc<Notify>,
        hard_stop: &CancellationToken,
    ) {
        let inner = &self.inner;
        let done: Vec<String> = running
            .iter()
            .filter(|(_, r)| r.task.is_finished())
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            let Some(r) = running.remove(&key) else {
                continue;
            };
            match r.task.await {
                // Finished shards stay finished while held (until shard sync deletes them).
                Ok(Exit::ShardEnded) => {
                    finished.insert(key, r.held);
                }
                Ok(_) => {}
                // A processor panicked: start it again (from the last checkpoint) after a
                // pause, as long as the lease is held.
                Err(e) => {
                    tracing::error!(lease = %key, error = %e, "shard consumer failed; restarting it");
                    blocked.insert(
                        key,
                        tokio::time::Instant::now() + inner.parent_poll_interval,
                    );
                }
            }
        }
        let held = inner.coordinator.held_leases();
        finished.retain(|k, h| held.iter().any(|(hk, hh)| hk == k && Arc::ptr_eq(hh, h)));
        blocked.retain(|k, _| held.iter().any(|(hk, _)| hk == k));
        let now = tokio::time::Instant::now();
        for (key, h) in held {
            if running.contains_key(&key) || finished.contains_key(&key) || h.lost.is_cancelled() {
                continue;
            }
            if blocked.get(&key).is_some_and(|until| *until > now) {
                continue;
            }
            let parents = h.lease.lock().await.parent_shard_ids.clone();
            match self.parents_done(&parents).await {
                Ok(true) => {
                    blocked.remove(&key);
                }
                Ok(false) => {
                    blocked.insert(key.clone(), now + inner.parent_poll_interval);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(lease = %key, error = %e, "could not read parent leases");
                    blocked.insert(key.clone(), now + inner.parent_poll_interval);
                    continue;
                }
            }
            let shutdown = hard_stop.child_token();
            let consumer = ShardConsumer {
                kinesis: inner.kinesis.clone(),
                stream: inner.stream_name.clone(),
                coordinator: inner.coordinator.clone(),
                held: h.clone(),
                processor: inner.factory.create_processor(&key),
                polling: inner.polling.clone(),
                at_timestamp: inner.at_timestamp,
                shutdown: shutdown.clone(),
                shard_ended: shard_ended.clone(),
                shard_sync: inner.shard_sync.clone(),
            };
            tracing::info!(worker = %inner.worker_id, lease = %key, "starting shard consumer");
            let hard = hard_stop.clone();
            let task = tokio::spawn(async move {
                tokio::select! {
                    exit = consumer.run() => exit,
                    _ = hard.cancelled() => Exit::Shutdown,
                }
            });
            running.insert(
                key,
                Running {
                    held: h,
                    shutdown,
                    task,
                },
            );
        }
    }

    /// Whether every parent lease has reached `SHARD_END` (a parent with no lease counts as
    /// done: it was finished and cleaned up, or never leased).
    async fn parents_done(&self, parents: &[String]) -> Result<bool, Error> {
        for p in parents {
            if let Some(lease) = self.inner.store.get_lease(p).await? {
                if !lease.checkpoint.is_shard_end() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::processor::RecordProcessor;

    fn factory(_: &str) -> Box<dyn RecordProcessor> {
        unreachable!("not called in these tests")
    }

    /// Clients with no endpoint, region or credentials: fine for anything that calls nothing.
    fn offline_clients() -> (aws_sdk_kinesis::Client, aws_sdk_dynamodb::Client) {
        let conf = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .build();
        let dconf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .build();
        (
            aws_sdk_kinesis::Client::from_conf(conf),
            aws_sdk_dynamodb::Client::from_conf(dconf),
        )
    }

    /// Clients of `endpoint` with fixed test credentials and the SDK's own retries off, so
    /// every try of a start-up step is one connection.
    fn clients_at(endpoint: &str) -> (aws_sdk_kinesis::Client, aws_sdk_dynamodb::Client) {
        use aws_sdk_kinesis::config::{retry::RetryConfig, Credentials, Region};
        let credentials = Credentials::new("test", "test", None, None, "test");
        let conf = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(credentials.clone())
            .endpoint_url(endpoint)
            .retry_config(RetryConfig::disabled())
            .build();
        let dconf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .endpoint_url(endpoint)
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .build();
        (
            aws_sdk_kinesis::Client::from_conf(conf),
            aws_sdk_dynamodb::Client::from_conf(dconf),
        )
    }

    /// A builder that passes validation.
    fn valid() -> SchedulerBuilder {
        let (kinesis, dynamodb) = offline_clients();
        Scheduler::builder("app", "stream", factory).with_clients(kinesis, dynamodb)
    }

    /// What `validate` and `build` refuse `b` with (they must agree).
    fn refused(b: SchedulerBuilder) -> ConfigError {
        let from_validate = b.validate().expect_err("validate refuses it");
        match b.build() {
            Err(Error::Config(e)) => {
                assert_eq!(e, from_validate);
                e
            }
            other => panic!("build: {other:?}"),
        }
    }

    #[test]
    fn builder_defaults_are_pinned() {
        let b = Scheduler::builder("app", "stream", factory);
        assert_eq!(b.initial_position, InitialPosition::TrimHorizon);
        assert_eq!(b.lease, LeaseConfig::new(Duration::from_secs(10)));
        assert_eq!(b.lease.max_leases_per_worker, usize::MAX);
        assert_eq!(b.lease.max_leases_to_steal_at_one_time, 1);
        assert_eq!(b.polling, PollingConfig::default());
        assert_eq!(b.shard_sync_interval, Duration::from_secs(60));
        assert_eq!(b.parent_poll_interval, Duration::from_secs(1));
        assert_eq!(b.table_name, None);
        assert_eq!(b.worker_id, None);
        assert_eq!(b.dispatch_interval, Duration::from_millis(200));
        assert_eq!(b.shutdown_timeout, Duration::from_secs(60));
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
        assert_eq!(b.lease.renew_interval, Duration::from_millis(975));
        assert_eq!(b.lease.taker_interval, Duration::from_millis(6_050));
        let b = Scheduler::builder("app", "stream", factory)
            .with_taker_interval(Duration::from_millis(500))
            .with_max_leases_per_worker(4)
            .with_failover_time(Duration::from_secs(3));
        assert_eq!(b.lease.taker_interval, Duration::from_millis(500));
        assert_eq!(b.lease.max_leases_per_worker, 4);
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
    fn default_worker_ids_differ() {
        let (a, b) = (default_worker_id(), default_worker_id());
        assert_ne!(a, b);
        assert!(a.contains(&std::process::id().to_string()));
    }

    #[tokio::test]
    async fn shutdown_before_run_and_double_run() {
        let s = valid().build().unwrap();
        // Never started: returns at once; a later run stops at once without any call.
        tokio::time::timeout(Duration::from_secs(5), s.graceful_shutdown())
            .await
            .expect("graceful_shutdown returns at once");
        s.run().await.unwrap();
        assert!(matches!(s.run().await, Err(Error::AlreadyStarted)));
        // Still done: the refused second run changed nothing.
        tokio::time::timeout(Duration::from_secs(5), s.graceful_shutdown())
            .await
            .expect("graceful_shutdown returns at once");
    }

    fn throttled() -> Error {
        Error::Kinesis {
            operation: "DescribeStreamSummary",
            target: "stream".into(),
            message: "Rate exceeded".into(),
            retryable: true,
            throttled: true,
        }
    }

    #[test]
    fn start_up_backoff_is_capped_jittered_and_endless() {
        assert_eq!(START_UP_MIN_DELAY, Duration::from_millis(200));
        assert_eq!(START_UP_MAX_DELAY, Duration::from_secs(5));
        assert_eq!(START_UP_WARN_EVERY, Duration::from_secs(60));
        let delays: Vec<Duration> = start_up_backoff().build().take(1000).collect();
        assert_eq!(delays.len(), 1000, "never gives up by itself");
        assert!(
            delays[0] >= Duration::from_millis(200) && delays[0] < Duration::from_millis(400),
            "{:?}",
            delays[0]
        );
        assert!(delays.iter().all(|d| *d <= 2 * START_UP_MAX_DELAY));
        assert!(delays[10..].iter().all(|d| *d >= START_UP_MAX_DELAY));
        assert!(
            delays[10..].windows(2).any(|w| w[0] != w[1]),
            "capped delays are jittered"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_start_up_failures_back_off_until_shutdown() {
        let shutdown = CancellationToken::new();
        let tries = Arc::new(AtomicUsize::new(0));
        let step = {
            let (shutdown, tries) = (shutdown.clone(), tries.clone());
            tokio::spawn(async move {
                retry_start_up_step("test", &shutdown, start_up_backoff(), || {
                    tries.fetch_add(1, Ordering::SeqCst);
                    async { Err::<Try<()>, _>(throttled()) }
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_secs(120)).await;
        // 200 ms doubling, capped at 5 s, jitter up to as much again: 16 to 28 tries in
        // 120 s. Without the cap there would be at most 10; without backoff, thousands.
        let n = tries.load(Ordering::SeqCst);
        assert!((14..=30).contains(&n), "{n} tries in 120 s");
        let asked = tokio::time::Instant::now();
        shutdown.cancel();
        let out = step.await.unwrap();
        assert!(matches!(out, Ok(None)), "{out:?}");
        assert_eq!(
            asked.elapsed(),
            Duration::ZERO,
            "stopped without sleeping on"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn final_start_up_errors_are_returned_at_once() {
        let shutdown = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let mut tries = 0;
        let out = retry_start_up_step("test", &shutdown, start_up_backoff(), || {
            tries += 1;
            async {
                Err::<Try<()>, _>(Error::StreamNotFound {
                    stream: "nope".into(),
                })
            }
        })
        .await;
        assert!(matches!(out, Err(Error::StreamNotFound { ref stream }) if stream == "nope"));
        assert_eq!(tries, 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn not_yet_is_waited_for_then_ready() {
        let shutdown = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let mut tries = 0;
        let out = retry_start_up_step("test", &shutdown, start_up_backoff(), || {
            tries += 1;
            let now = tries;
            async move {
                match now {
                    1 => Ok(Try::NotYet("stream s is CREATING".into())),
                    2 => Err(throttled()),
                    _ => Ok(Try::Ready(now)),
                }
            }
        })
        .await;
        assert_eq!(out.unwrap(), Some(3));
        // Two delays: 200 to 400 ms, then 400 to 800 ms.
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(600) && waited < Duration::from_millis(1200),
            "{waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_a_try_in_flight_and_skips_the_first() {
        let shutdown = CancellationToken::new();
        let step = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                retry_start_up_step("test", &shutdown, start_up_backoff(), || {
                    std::future::pending::<Result<Try<()>, Error>>()
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_secs(3600)).await;
        shutdown.cancel();
        assert!(matches!(step.await.unwrap(), Ok(None)));

        // Already requested: no try at all.
        let out = retry_start_up_step(
            "test",
            &shutdown,
            start_up_backoff(),
            || -> std::future::Ready<Result<Try<()>, Error>> { panic!("no try after shutdown") },
        )
        .await;
        assert!(matches!(out, Ok(None)));
    }

    /// A loopback endpoint that accepts connections and closes them at once, counting
    /// them: every request to it fails as a connection error.
    async fn dead_endpoint() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let server = tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(connection);
            }
        });
        (endpoint, accepted, server)
    }

    /// Waits (at most 20 s) until `count` has reached `n`.
    async fn wait_for_count(count: &AtomicUsize, n: usize) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while count.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{n} tries within 20 s; saw {}",
                count.load(Ordering::SeqCst)
            )
        });
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_retried_until_graceful_shutdown() {
        let (endpoint, tries, server) = dead_endpoint().await;
        let (k, d) = clients_at(&endpoint);
        let s = Scheduler::builder("app", "stream", factory)
            .with_clients(k, d)
            .build()
            .unwrap();
        let worker = s.clone();
        let run = tokio::spawn(async move { worker.run().await });
        wait_for_count(&tries, 3).await;
        assert!(!run.is_finished(), "still retrying");
        // A second run is refused and does not disturb the first.
        assert!(matches!(s.run().await, Err(Error::AlreadyStarted)));
        assert!(!run.is_finished());
        tokio::time::timeout(Duration::from_secs(5), s.graceful_shutdown())
            .await
            .expect("graceful_shutdown returns promptly");
        let result = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("run returns")
            .expect("run did not panic");
        assert!(result.is_ok(), "{result:?}");
        server.abort();
    }

    #[tokio::test]
    async fn dropping_run_marks_the_worker_done() {
        let (endpoint, tries, server) = dead_endpoint().await;
        let (k, d) = clients_at(&endpoint);
        let s = Scheduler::builder("app", "stream", factory)
            .with_clients(k, d)
            .build()
            .unwrap();
        let worker = s.clone();
        let run = tokio::spawn(async move { worker.run().await });
        wait_for_count(&tries, 1).await;
        // Dropped in the middle of start-up, with no shutdown requested.
        run.abort();
        assert!(run.await.unwrap_err().is_cancelled());
        tokio::time::timeout(Duration::from_secs(5), s.graceful_shutdown())
            .await
            .expect("graceful_shutdown returns once run was dropped");
        server.abort();
    }
}
