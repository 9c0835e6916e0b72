//! The [`Scheduler`]: one worker of a fleet.
//!
//! ```text
//!  Scheduler::run
//!   ├─ create lease table (on demand) ─▶ ShardSync (now, every shard_sync_interval, at shard ends)
//!   ├─ LeaseCoordinator renewer (every failover/3) and taker (every 2 × failover)
//!   └─ dispatcher: for each held lease whose parents all reached SHARD_END
//!         └─ ShardConsumer (fetcher ─bounded─▶ RecordProcessor)
//!  graceful_shutdown: stop taking ─▶ consumers finish their batch + shutdown_requested
//!                     ─▶ release leases (others take them at once) ─▶ stop renewing
//! ```
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
use std::sync::Arc;
use std::time::{Duration, SystemTime};

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
    /// [`build`](Self::build) refuses zero: [`ConfigError::ZeroDuration`] naming
    /// `failover_time`.
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
    /// called (a later `run` then returns immediately).
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
    /// # Cancellation
    /// Dropping the future stops the worker abruptly: consumers are aborted and leases
    /// are left to expire (as after a crash). Prefer a graceful shutdown.
    ///
    /// # Errors
    /// [`Error::AlreadyStarted`] if this worker was already started; otherwise only if the lease
    /// table cannot be created or read at start-up (later errors are logged and retried).
    pub async fn run(&self) -> Result<(), Error> {
        let inner = &self.inner;
        if inner
            .started
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Error::AlreadyStarted);
        }
        if inner.shutdown.is_cancelled() {
            inner.done.send_replace(true);
            return Ok(());
        }
        let hard_stop = CancellationToken::new();
        let _hard_stop_on_drop = hard_stop.clone().drop_guard();
        tracing::info!(worker = %inner.worker_id, table = %inner.table_name, stream = %inner.stream_name, "worker starting");
        inner.store.create_table_if_not_exists().await?;
        let mut pause = Duration::from_millis(200);
        loop {
            match inner.shard_sync.sync().await {
                Ok(_) => break,
                Err(e) if !inner.shutdown.is_cancelled() => {
                    tracing::warn!(error = %e, "initial shard sync failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
                Err(e) => return Err(e),
            }
        }

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
        inner.done.send_replace(true);
        Ok(())
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
            .with_failover_time(Duration::from_millis(1))
            .validate()
            .unwrap();
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
}
