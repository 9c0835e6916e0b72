//! The start-up of [`Scheduler::run`](super::Scheduler::run): three steps (four with
//! fan-out), each tried again with backoff while it fails with a retryable error, all
//! stopped at once by a shutdown.
//!
//! ```text
//!  shutdown requested ─────────────────────────────────────────────────────▶ Ok(None), at once
//!  stream check:     DescribeStreamSummary ─missing─▶ Err(StreamNotFound), nothing created
//!                      CREATING / DELETING ─▶ not yet ─┐
//!  (fan-out) stream consumer: found or registered,     │
//!                      not ACTIVE yet ─▶ not yet       │ retryable error or not yet:
//!  lease table:      create if not exists, wait ACTIVE │ 200 ms doubling to 5 s, + jitter
//!  first sync:       ShardSync::sync                   │ other errors: returned
//!                    ─▶ Ok(Some(records source))       ┘
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio_util::sync::CancellationToken;

use crate::consumer::{
    describe_or_register, ConsumerState, FanOut, Polling, RecordsSource, Retrieval, StreamConsumer,
};
use crate::error::Error;
use crate::leases::ShardSync;
use crate::leases::{LeaseCoordinator, LeaseStore};
use crate::metric_names as m;
use crate::stream_address::StreamAddress;

/// The first delay between two tries of a start-up step.
pub(super) const START_UP_MIN_DELAY: Duration = Duration::from_millis(200);
/// The longest delay between two tries of a start-up step, before jitter (which adds up
/// to as much again).
pub(super) const START_UP_MAX_DELAY: Duration = Duration::from_secs(5);
/// A start-up step that keeps failing is logged at `warn` at most this often after its
/// first failure (at `debug` in between).
pub(super) const START_UP_WARN_EVERY: Duration = Duration::from_secs(60);

/// Delays between tries of a start-up step: [`START_UP_MIN_DELAY`] doubling up to
/// [`START_UP_MAX_DELAY`], each plus a random jitter of up to as much again; endless.
pub(super) fn start_up_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(START_UP_MIN_DELAY)
        .with_max_delay(START_UP_MAX_DELAY)
        .with_jitter()
        .without_max_times()
}

/// One try of a start-up step that did not fail.
#[derive(Debug)]
pub(super) enum Try<T> {
    /// The step is done.
    Ready(T),
    /// The step cannot finish yet (e.g. the stream is still being created): why, to log.
    NotYet(String),
}

/// A try that did not finish the step.
#[derive(Debug)]
enum Unfinished {
    /// [`Try::NotYet`]: always tried again.
    NotYet(String),
    /// An error: tried again only if it is retryable.
    Failed(Error),
}

impl Unfinished {
    /// Whether the step is tried again after this.
    fn is_retried(&self) -> bool {
        match self {
            Unfinished::NotYet(_) => true,
            Unfinished::Failed(e) => e.is_retryable(),
        }
    }
}

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfinished::NotYet(why) => f.write_str(why),
            Unfinished::Failed(e) => e.fmt(f),
        }
    }
}

/// What the start-up steps work on.
pub(super) struct StartUp<'a> {
    /// Kinesis client of the stream check, the registration and the records source.
    pub(super) kinesis: &'a aws_sdk_kinesis::Client,
    /// The stream.
    pub(super) stream: &'a str,
    /// How shards will be read: fan-out adds the stream consumer step.
    pub(super) retrieval: &'a Retrieval,
    /// The lease table.
    pub(super) store: &'a dyn LeaseStore,
    /// The lease coordinator, whose fleet table (if any) is created with the lease table.
    pub(super) coordinator: &'a LeaseCoordinator,
    /// The first shard sync.
    pub(super) shard_sync: &'a ShardSync,
}

/// Runs the start-up steps in order: `Ok(Some(source))`, the records source every shard
/// consumer reads from, when all are done; `Ok(None)` when shutdown was requested first.
///
/// # Cancellation
/// Safe to drop, as a shutdown is: the call in flight is dropped; what the steps already
/// created (the lease table, leases, a stream consumer) stays.
///
/// # Errors
/// [`Error::StreamNotFound`], or the first non-retryable error of a step.
pub(super) async fn start_up(
    steps: StartUp<'_>,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<dyn RecordsSource>>, Error> {
    let StartUp {
        kinesis,
        stream,
        retrieval,
        store,
        coordinator,
        shard_sync,
    } = steps;
    let address = StreamAddress::from(stream);
    let checked = retry_start_up_step("stream check", shutdown, start_up_backoff(), || {
        check_stream(kinesis, &address)
    });
    let Some(StreamFound {
        arn: stream_arn, ..
    }) = checked.await?
    else {
        return Ok(None);
    };
    let source: Arc<dyn RecordsSource> = match retrieval {
        Retrieval::Polling(polling) => {
            Arc::new(Polling::new(kinesis.clone(), stream, polling.clone()))
        }
        Retrieval::FanOut(fan_out) => {
            let name = fan_out
                .consumer_name
                .clone()
                .expect("the builder names the consumer");
            let registered =
                retry_start_up_step("stream consumer", shutdown, start_up_backoff(), || {
                    let (stream_arn, name) = (&stream_arn, &name);
                    async move {
                        Ok(
                            match describe_or_register(kinesis, stream_arn, name).await? {
                                ConsumerState::Active(arn) => Try::Ready(arn),
                                ConsumerState::NotYet(why) => Try::NotYet(why),
                            },
                        )
                    }
                });
            let Some(consumer_arn) = registered.await? else {
                return Ok(None);
            };
            tracing::info!(consumer = %name, arn = %consumer_arn, "enhanced fan-out consumer ACTIVE");
            Arc::new(FanOut::new(
                kinesis.clone(),
                stream,
                StreamConsumer::new(stream_arn, name, consumer_arn),
                fan_out.clone(),
            ))
        }
    };
    if create_tables(store, coordinator, shutdown).await?.is_none() {
        return Ok(None);
    }
    let first_sync = retry_start_up_step(
        "initial shard sync",
        shutdown,
        start_up_backoff(),
        || async { shard_sync.sync().await.map(Try::Ready) },
    );
    Ok(first_sync.await?.map(|_| source))
}

/// The lease table step: the lease table (and the coordinator's fleet table, if any)
/// created if missing and waited for until `ACTIVE`. `Ok(None)` when shutdown came first.
///
/// # Cancellation
/// Safe to drop; a creation already sent goes ahead.
///
/// # Errors
/// The first non-retryable DynamoDB error, or [`Error::TableNotActive`].
pub(super) async fn create_tables(
    store: &dyn LeaseStore,
    coordinator: &LeaseCoordinator,
    shutdown: &CancellationToken,
) -> Result<Option<()>, Error> {
    retry_start_up_step("lease table", shutdown, start_up_backoff(), || async {
        store.create_table_if_not_exists().await?;
        coordinator.create_fleet_table_if_not_exists().await?;
        Ok(Try::Ready(()))
    })
    .await
}

/// What the stream check learnt of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StreamFound {
    /// Its ARN (which names it to the stream consumer calls, and holds its account).
    pub(super) arn: String,
    /// When it was created, in seconds since the Unix epoch (negative times count as 0).
    pub(super) creation_epoch: u64,
}

/// One `DescribeStreamSummary` of `stream` (by name or by ARN): ready once the stream is
/// `ACTIVE` or `UPDATING`, with its ARN and creation time.
///
/// # Cancellation
/// Safe to drop: it only reads.
///
/// # Errors
/// [`Error::StreamNotFound`] for `ResourceNotFoundException`, [`Error::Kinesis`]
/// otherwise.
pub(super) async fn check_stream(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &StreamAddress,
) -> Result<Try<StreamFound>, Error> {
    use aws_sdk_kinesis::types::StreamStatus;
    ::metrics::counter!(m::KINESIS_CALLS, "operation" => "DescribeStreamSummary").increment(1);
    match kinesis
        .describe_stream_summary()
        .set_stream_name(stream.stream_name_param())
        .set_stream_arn(stream.stream_arn_param())
        .send()
        .await
    {
        Ok(out) => match out.stream_description_summary() {
            Some(s)
                if matches!(
                    s.stream_status(),
                    StreamStatus::Creating | StreamStatus::Deleting
                ) =>
            {
                Ok(Try::NotYet(format!(
                    "stream {stream} is {}",
                    s.stream_status().as_str()
                )))
            }
            Some(s) => Ok(Try::Ready(StreamFound {
                arn: s.stream_arn().to_owned(),
                creation_epoch: u64::try_from(s.stream_creation_timestamp().secs()).unwrap_or(0),
            })),
            None => Ok(Try::NotYet(format!(
                "DescribeStreamSummary answered without a summary of {stream}"
            ))),
        },
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_not_found_exception()) =>
        {
            Err(Error::StreamNotFound {
                stream: stream.to_string(),
            })
        }
        Err(e) => Err(Error::kinesis(
            "DescribeStreamSummary",
            &stream.to_string(),
            &e,
        )),
    }
}

/// Tries a start-up step until it is done (`Ok(Some)`), fails with a non-retryable error
/// (that error), or `shutdown` is cancelled (`Ok(None)`, at once: the try in flight is
/// dropped, which every start-up step allows). Between tries it waits the next delay of
/// `backoff` (twice [`START_UP_MAX_DELAY`] once `backoff` has no more). The first failure
/// is logged at `warn` with its cause, later ones at `debug` with a `warn` at most every
/// [`START_UP_WARN_EVERY`]; a step that is not done yet ([`Try::NotYet`]) is said once at
/// `info`, then at `debug`.
///
/// # Cancellation
/// Safe to drop whenever `try_once`'s futures are.
pub(super) async fn retry_start_up_step<T, F, Fut>(
    step: &'static str,
    shutdown: &CancellationToken,
    backoff: ExponentialBuilder,
    mut try_once: F,
) -> Result<Option<T>, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Try<T>, Error>>,
{
    if shutdown.is_cancelled() {
        return Ok(None);
    }
    let failures = AtomicU32::new(0);
    let mut last_warn: Option<tokio::time::Instant> = None;
    let tries = (|| {
        let attempt = try_once();
        async move {
            match attempt.await {
                Ok(Try::Ready(done)) => Ok(done),
                Ok(Try::NotYet(why)) => Err(Unfinished::NotYet(why)),
                Err(e) => Err(Unfinished::Failed(e)),
            }
        }
    })
    .retry(backoff)
    .when(Unfinished::is_retried)
    .adjust(|_, delay| delay.or(Some(START_UP_MAX_DELAY * 2)))
    .notify(|cause, delay| {
        let failures = failures.fetch_add(1, Ordering::Relaxed) + 1;
        let now = tokio::time::Instant::now();
        if let Unfinished::NotYet(_) = cause {
            // Waiting is normal (a stream or consumer being created): said once at info.
            if failures == 1 {
                tracing::info!(step, %cause, "waiting");
            } else {
                tracing::debug!(step, failures, retry_in = ?delay, %cause, "still waiting");
            }
        } else if last_warn.is_none_or(|at| now.duration_since(at) >= START_UP_WARN_EVERY) {
            last_warn = Some(now);
            tracing::warn!(step, failures, retry_in = ?delay, %cause, "start-up step failed; retrying");
        } else {
            tracing::debug!(step, failures, retry_in = ?delay, %cause, "start-up step failed; retrying");
        }
    });
    let outcome = tokio::select! {
        biased;
        _ = shutdown.cancelled() => return Ok(None),
        outcome = tries => outcome,
    };
    match outcome {
        Ok(done) => {
            let failures = failures.load(Ordering::Relaxed);
            if failures > 0 {
                tracing::info!(step, failures, "start-up step done after retries");
            }
            Ok(Some(done))
        }
        Err(Unfinished::Failed(e)) => Err(e),
        Err(Unfinished::NotYet(_)) => unreachable!("a step not done yet is always tried again"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use backon::BackoffBuilder;

    use super::*;

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
}
