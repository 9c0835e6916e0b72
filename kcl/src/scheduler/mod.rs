//! The [`Scheduler`]: one worker of a fleet.
//!
//! ```text
//!  Scheduler::run
//!   ├─ start_up (each step retried with backoff while retryable; shutdown stops it at once)
//!   │    one stream: DescribeStreamSummary ──missing──▶ Err(StreamNotFound), nothing created
//!   │      ─▶ (fan-out) stream consumer found or registered, until ACTIVE
//!   │      ─▶ create lease table (on demand) ─▶ first ShardSync
//!   │    multi-stream: tracker ─▶ each stream resolved ─▶ (fan-out) each stream's consumer
//!   │      found or registered, until ACTIVE ─▶ lease table ─▶ first sync of each
//!   ├─ Background: ShardSync (every shard_sync_interval, at shard ends) or, multi-stream,
//!   │              MultiStreamSync (tracker polls, every stream's sync, former streams),
//!   │              LeaseCoordinator renewer (every failover/3) and taker (every 2 × failover)
//!   │              over the ScopedLeaseStore (the leases of the ActiveStreams only)
//!   └─ Dispatcher: for each held lease of an active stream whose parents reached SHARD_END
//!         └─ ShardConsumer (polling fetcher or fan-out subscriber ─bounded─▶ RecordProcessor)
//!      held leases of a stream no longer active: consumer stopped, lease released
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
//! The parts, each in its own file: [`SchedulerBuilder`] fills a `SchedulerConfig`
//! (`config`); `start_up` runs the start-up steps; `Background` runs the renewer, taker and
//! shard sync; `Dispatcher` runs the shard consumers; `ActiveStreams` says which streams
//! are consumed now and `ScopedLeaseStore` shows the coordinator only their leases;
//! `MultiStreamSync` keeps a multi-stream worker's streams in step with its tracker (see
//! the crate's `multi_stream` docs on [`StreamTracker`](crate::StreamTracker)).
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

mod active_streams;
mod background;
mod builder;
mod config;
mod dispatcher;
mod multi_stream_sync;
mod scoped_lease_store;
mod start_up;
mod stream_changes;
mod stream_identity;
#[cfg(test)]
mod test_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::leases::LeaseCoordinator;
use crate::leases::LeaseStore;
use crate::leases::LoadMeter;
use crate::leases::ShardSync;
use crate::multi_stream::StreamTracker;
use crate::processor::RecordProcessorFactory;

use active_streams::{ActiveStreams, StreamRuntime};
use background::Background;
pub use builder::SchedulerBuilder;
pub(crate) use config::SchedulerConfig;
pub use config::{default_worker_id, MAX_DURATION_SETTING, MIN_FAILOVER_TIME};
use dispatcher::Dispatcher;
use multi_stream_sync::MultiStreamSync;

/// One worker: holds leases and runs a [`crate::RecordProcessor`] per leased shard.
/// Cheap to clone; clones are the same worker.
#[derive(Debug, Clone)]
pub struct Scheduler {
    /// Shared state.
    inner: Arc<Inner>,
}

/// What every clone of a [`Scheduler`] shares.
struct Inner {
    /// For logs.
    application_name: String,
    /// The stream, or the streams of a tracker.
    consumes: Consumes,
    /// The streams consumed now (filled by the start-up), with what their consumers need.
    streams: Arc<ActiveStreams>,
    /// The lease table's name, for logs and [`Scheduler::table_name`].
    table_name: String,
    /// This worker: the `leaseOwner` it writes.
    worker_id: String,
    /// Kinesis client of the start-up check and of every consumer.
    kinesis: aws_sdk_kinesis::Client,
    /// The lease table.
    store: Arc<dyn LeaseStore>,
    /// Renews and takes this worker's leases.
    coordinator: Arc<LeaseCoordinator>,
    /// What the worker's consumers read, published with its heartbeats.
    load: Arc<LoadMeter>,
    /// The user's processors.
    factory: Arc<dyn RecordProcessorFactory>,
    /// Every setting, as validated by the builder.
    config: SchedulerConfig,
    /// Cancelled to request a graceful shutdown.
    shutdown: CancellationToken,
    /// Becomes true when `run` has finished shutting down.
    done: watch::Sender<bool>,
    /// Set by the first `run`: one worker runs once.
    started: AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("application_name", &self.application_name)
            .field("consumes", &self.consumes)
            .field("table_name", &self.table_name)
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

/// What a worker consumes.
#[derive(Debug)]
enum Consumes {
    /// One stream, whose leases are keyed by shard id.
    Single {
        /// The stream's name.
        name: String,
        /// Keeps its leases in step with its shards.
        shard_sync: ShardSync,
    },
    /// The streams a tracker lists, in the multi-stream lease format.
    Multi(Arc<MultiStreamSync>),
}

/// Marks the worker done when dropped, whichever way `run` ends.
struct MarkDoneOnDrop<'a>(&'a watch::Sender<bool>);

impl Drop for MarkDoneOnDrop<'_> {
    fn drop(&mut self) {
        self.0.send_replace(true);
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
        SchedulerBuilder::new(application_name, stream_name, factory)
    }

    /// A builder for a worker of `application_name` consuming `stream_name` whose records
    /// are read as a [`RecordStream`](crate::RecordStream) (build it with
    /// [`SchedulerBuilder::build_stream`]) instead of by a processor per shard.
    pub fn stream_builder(
        application_name: impl Into<String>,
        stream_name: impl Into<String>,
    ) -> SchedulerBuilder {
        SchedulerBuilder::new_stream(application_name, stream_name)
    }

    /// A builder for a worker of the multi-stream application `application_name`
    /// consuming the streams `tracker` lists (see [`StreamTracker`]), with `factory`
    /// making a processor per shard lease; it is given the lease key
    /// (`account:stream:creationEpoch:shardId`), and the processor's
    /// [`InitializationInput::stream`](crate::InitializationInput::stream) names the stream.
    ///
    /// The application name is checked as for [`builder`](Self::builder). With enhanced
    /// fan-out ([`SchedulerBuilder::with_retrieval`]) each stream is read through its own
    /// stream consumer, found or registered when the stream is added (see the crate's
    /// `multi_stream` docs on [`StreamTracker`]).
    pub fn multi_stream_builder(
        application_name: impl Into<String>,
        tracker: impl StreamTracker,
        factory: impl RecordProcessorFactory,
    ) -> SchedulerBuilder {
        SchedulerBuilder::new_multi_stream(application_name, tracker, factory)
    }

    /// A builder for a worker of the multi-stream application `application_name`
    /// consuming the streams `tracker` lists (see [`StreamTracker`]), whose records are
    /// read as a [`RecordStream`](crate::RecordStream) (build it with
    /// [`SchedulerBuilder::build_stream`]) instead of by a processor per shard: each
    /// [`ShardBatch`](crate::ShardBatch) names its stream
    /// ([`ShardBatch::stream`](crate::ShardBatch::stream)) and its Kinesis shard id. The
    /// application name is checked as for [`builder`](Self::builder).
    pub fn multi_stream_stream_builder(
        application_name: impl Into<String>,
        tracker: impl StreamTracker,
    ) -> SchedulerBuilder {
        SchedulerBuilder::new_multi_stream_stream(application_name, tracker)
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
    /// workers take them: with worker heartbeats (the default) at once, since this worker
    /// leaves the fleet and their next heartbeat wakes their taker; without, at their next
    /// taker round. Returns at once if `run` was never
    /// called (a later `run` then returns immediately) and as soon as `run` has ended by
    /// any path: a finished shutdown, an error (e.g. [`Error::StreamNotFound`]), a shutdown
    /// during start-up, or its future being dropped.
    ///
    /// # Cancellation
    /// Dropping the future does not stop the shutdown once requested.
    pub async fn graceful_shutdown(&self) {
        self.request_shutdown();
        if !self.inner.started.load(Ordering::SeqCst) {
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
    /// 2. with [`Retrieval::FanOut`](crate::Retrieval::FanOut), the stream consumer is
    ///    looked up (`DescribeStreamConsumer`), registered if missing
    ///    (`RegisterStreamConsumer`), and waited for until `ACTIVE` (one being deleted is
    ///    waited out, then registered again);
    /// 3. the lease table is created if it does not exist, and waited for until `ACTIVE`;
    /// 4. the first shard sync creates the leases of the stream's shards.
    ///
    /// Each step is tried again while it fails with a retryable error (network trouble,
    /// throttling, 5xx; see [`Error::is_retryable`]): after 200 ms, doubling up to 5 s, each
    /// delay plus up to as much again of random jitter. The first failure of a step is
    /// logged at `warn` with its cause, repeats at `debug` with a `warn` at most once a
    /// minute; waiting for something being created (the stream, the stream consumer) is
    /// said once at `info`. A shutdown requested during start-up stops it at once, even in the middle of
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
    /// After start-up, errors are logged and retried, never returned, but one: a stream
    /// found deleted by a shard sync (`ListShards` answering `ResourceNotFoundException`)
    /// shuts the worker down gracefully and returns [`Error::StreamNotFound`].
    pub async fn run(&self) -> Result<(), Error> {
        let inner = &self.inner;
        if inner.started.swap(true, Ordering::SeqCst) {
            return Err(Error::AlreadyStarted);
        }
        // From here on every way out (return, `?`, or this future being dropped) marks the
        // worker done, so graceful_shutdown never waits for a run that has ended.
        let _done = MarkDoneOnDrop(&inner.done);
        tracing::info!(worker = %inner.worker_id, table = %inner.table_name, consumes = ?inner.consumes, "worker starting");

        // 1. Start-up: stream check, lease table, first shard sync.
        let started = match &inner.consumes {
            Consumes::Single { name, shard_sync } => {
                let steps = start_up::StartUp {
                    kinesis: &inner.kinesis,
                    stream: name,
                    retrieval: &inner.config.retrieval,
                    store: inner.store.as_ref(),
                    coordinator: &inner.coordinator,
                    shard_sync,
                };
                start_up::start_up(steps, &inner.shutdown)
                    .await?
                    .map(|source| {
                        inner.streams.insert(Arc::new(StreamRuntime {
                            name: name.clone(),
                            id: None,
                            source,
                            shard_sync: shard_sync.clone(),
                            at_timestamp: match inner.config.initial_position {
                                crate::InitialPosition::AtTimestamp(t) => Some(t),
                                _ => None,
                            },
                        }))
                    })
            }
            Consumes::Multi(sync) => {
                let shutdown = &inner.shutdown;
                let mut started = sync.add_streams(shutdown).await?;
                if started.is_some() {
                    started =
                        start_up::create_tables(inner.store.as_ref(), &inner.coordinator, shutdown)
                            .await?;
                }
                if started.is_some() {
                    started = sync.first_sync(shutdown).await?;
                }
                started
            }
        };
        if started.is_none() {
            tracing::info!(worker = %inner.worker_id, "shutdown requested during start-up; worker stopped");
            return Ok(());
        }

        // 2. Work until shutdown is requested. Dropping this future cancels `hard_stop`:
        //    consumers are aborted and the background tasks stop.
        let hard_stop = CancellationToken::new();
        let _hard_stop_on_drop = hard_stop.clone().drop_guard();
        let mut dispatcher = Dispatcher::new(inner, hard_stop.clone());
        let stream_gone = CancellationToken::new();
        let shard_ended = dispatcher.shard_ended();
        let interval = inner.config.shard_sync_interval;
        let background = match &inner.consumes {
            Consumes::Single { shard_sync, .. } => {
                let (sync, gone) = (shard_sync.clone(), stream_gone.clone());
                Background::start(
                    &inner.coordinator,
                    &hard_stop,
                    move |stop, wake| async move {
                        sync.run(interval, stop, shard_ended, wake, gone).await
                    },
                )
            }
            Consumes::Multi(sync) => {
                let sync = sync.clone();
                Background::start(
                    &inner.coordinator,
                    &hard_stop,
                    move |stop, wake| async move { sync.run(stop, shard_ended, wake).await },
                )
            }
        };
        {
            // A deleted stream ends the work as a shutdown request does.
            let (gone, shutdown) = (stream_gone.clone(), inner.shutdown.clone());
            let until = hard_stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = gone.cancelled() => shutdown.cancel(),
                    _ = until.cancelled() => {}
                    _ = shutdown.cancelled() => {}
                }
            });
        }
        dispatcher
            .run(&inner.shutdown, inner.config.dispatch_interval)
            .await;

        // 3. Graceful shutdown: no more takes, consumers stop, leases are handed over.
        tracing::info!(worker = %inner.worker_id, "graceful shutdown: stopping consumers");
        background.stop_taking();
        inner.coordinator.begin_leaving().await;
        dispatcher.stop(inner.config.shutdown_timeout).await;
        // A taker round under way when taking stopped may still have taken a lease: it is
        // held, and released with the others, only once the round has ended.
        background.taking_stopped().await;
        inner.coordinator.release_all().await;
        background.stop().await;
        tracing::info!(worker = %inner.worker_id, "worker stopped");
        if let (true, Consumes::Single { name, .. }) = (stream_gone.is_cancelled(), &inner.consumes)
        {
            return Err(Error::StreamNotFound {
                stream: name.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::test_support::{clients_at, factory, valid};
    use super::*;

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

    /// A scheduler whose every call fails (both clients at a [`dead_endpoint`]), running.
    struct Unreachable {
        /// The scheduler (a clone of the one running).
        scheduler: Scheduler,
        /// Its `run`, in a task.
        run: tokio::task::JoinHandle<Result<(), Error>>,
        /// How many connections the endpoint accepted: the calls tried.
        tries: Arc<AtomicUsize>,
        /// The endpoint's accept loop.
        server: tokio::task::JoinHandle<()>,
    }

    impl Unreachable {
        /// Builds the scheduler (application "app", stream "stream") and spawns its run.
        async fn start() -> Unreachable {
            let (endpoint, tries, server) = dead_endpoint().await;
            let (k, d) = clients_at(&endpoint);
            let scheduler = Scheduler::builder("app", "stream", factory)
                .with_clients(k, d)
                .build()
                .unwrap();
            let worker = scheduler.clone();
            let run = tokio::spawn(async move { worker.run().await });
            Unreachable {
                scheduler,
                run,
                tries,
                server,
            }
        }
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
        let u = Unreachable::start().await;
        wait_for_count(&u.tries, 3).await;
        assert!(!u.run.is_finished(), "still retrying");
        // A second run is refused and does not disturb the first.
        assert!(matches!(
            u.scheduler.run().await,
            Err(Error::AlreadyStarted)
        ));
        assert!(!u.run.is_finished());
        tokio::time::timeout(Duration::from_secs(5), u.scheduler.graceful_shutdown())
            .await
            .expect("graceful_shutdown returns promptly");
        let result = tokio::time::timeout(Duration::from_secs(5), u.run)
            .await
            .expect("run returns")
            .expect("run did not panic");
        assert!(result.is_ok(), "{result:?}");
        u.server.abort();
    }

    #[tokio::test]
    async fn dropping_run_marks_the_worker_done() {
        let u = Unreachable::start().await;
        wait_for_count(&u.tries, 1).await;
        // Dropped in the middle of start-up, with no shutdown requested.
        u.run.abort();
        assert!(u.run.await.unwrap_err().is_cancelled());
        tokio::time::timeout(Duration::from_secs(5), u.scheduler.graceful_shutdown())
            .await
            .expect("graceful_shutdown returns once run was dropped");
        u.server.abort();
    }
}
