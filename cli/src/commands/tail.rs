//! `kinesis-cat tail`: reads every shard of a stream without a lease table (like
//! `kcat -C`), deaggregating KPL records.
//!
//! ```text
//!  ListShards (every 5 s) ──new shard──▶ reader task: GetShardIterator ─▶ GetRecords loop (≤ 5/s)
//!       │                                      │ expired iterator: a new one after the last record
//!       │                                      └─▶ Deaggregator ─▶ Output ─▶ stdout (json | raw)
//!       └─ both calls retried by one RetryPolicy (backoff, bound); giving up ends `tail`
//!  Ctrl-C / SIGTERM / --exit-when-idle / stdout closed ──▶ exit 0
//! ```
//!
//! No checkpoints and no ordering between a parent and its children: use `consume` for that.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;
use clap::Args;
use kinesis_consumer::{InitialPosition, KinesisClientRecord};

use super::consume::{render, Output as Format};
use crate::output::{Output, WriteError};
use crate::retry::RetryPolicy;
use crate::{args, Error};

/// Arguments of `kinesis-cat tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Stream to read.
    #[arg(long, value_parser = args::stream_name)]
    pub stream: String,
    /// Where to start in the shards open at start: trim-horizon, latest or
    /// at-timestamp:TIME (RFC 3339, e.g. 2024-01-02T03:04:05Z or ...+02:00, or epoch
    /// seconds) (shards that appear later are read from their start).
    /// Default: latest.
    #[arg(long, default_value = "latest", value_parser = args::position)]
    pub from: InitialPosition,
    /// Stop after this many seconds without records. Default: never.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub exit_when_idle: Option<u64>,
    /// Output format. Default: json.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub output: Format,
    /// Give up when listing shards or reading a shard keeps failing (network trouble,
    /// throttling, server errors) for this many seconds of retries (at least 1).
    /// Default: 60.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub give_up_after_secs: u64,
}

/// State shared by the shard readers.
#[derive(Debug)]
struct Shared {
    /// Kinesis client.
    kinesis: aws_sdk_kinesis::Client,
    /// The stream.
    stream: String,
    /// Output format.
    format: Format,
    /// Standard output.
    out: Output,
    /// How calls are retried.
    retry: RetryPolicy,
    /// Milliseconds since `started` at the last record.
    last_record_ms: AtomicU64,
    /// Process start, the base of `last_record_ms`.
    started: std::time::Instant,
}

/// Where a reader (re)starts in its shard.
#[derive(Debug, Clone)]
enum Position {
    /// The shard's first iterator.
    Initial(InitialPosition),
    /// After the last record written (after an expired iterator).
    After(String),
}

/// A closed standard output, as the error that ends the command with status 0.
fn closed() -> Error {
    Error::Output(std::io::ErrorKind::BrokenPipe.into())
}

async fn iterator(shared: &Shared, shard_id: &str, at: &Position) -> Result<Option<String>, Error> {
    let out = shared
        .retry
        .run("GetShardIterator", &shared.stream, || {
            let req = shared
                .kinesis
                .get_shard_iterator()
                .stream_name(&shared.stream)
                .shard_id(shard_id);
            let req = match at {
                Position::After(seq) => req
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .starting_sequence_number(seq),
                Position::Initial(InitialPosition::Latest) => {
                    req.shard_iterator_type(ShardIteratorType::Latest)
                }
                Position::Initial(InitialPosition::AtTimestamp(t)) => req
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(aws_sdk_kinesis::primitives::DateTime::from(*t)),
                Position::Initial(_) => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            req.send()
        })
        .await?;
    Ok(out.shard_iterator().map(str::to_owned))
}

async fn read_shard(
    shared: Arc<Shared>,
    shard_id: String,
    from: InitialPosition,
) -> Result<(), Error> {
    let deagg = kinesis_agg::Deaggregator::new();
    let mut position = Position::Initial(from);
    let mut next = iterator(&shared, &shard_id, &position).await?;
    while let Some(it) = next.take() {
        let started = tokio::time::Instant::now();
        let result = shared
            .retry
            .run("GetRecords", &shared.stream, || {
                shared.kinesis.get_records().shard_iterator(&it).send()
            })
            .await;
        let out = match result {
            Ok(out) => out,
            Err(Error::Kinesis { failure, .. }) if failure.code == "ExpiredIteratorException" => {
                tracing::debug!(shard = %shard_id, "iterator expired; getting a new one");
                next = iterator(&shared, &shard_id, &position).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for r in out.records() {
            let data = Bytes::copy_from_slice(r.data().as_ref());
            let pk = r.partition_key().unwrap_or_default();
            match deagg.deaggregate(pk, data) {
                Ok(d) => {
                    let arrival = r
                        .approximate_arrival_timestamp()
                        .and_then(|t| std::time::SystemTime::try_from(*t).ok());
                    for sub in d.records {
                        let mut rec = KinesisClientRecord::new(
                            r.sequence_number(),
                            sub.sub_sequence_number,
                            sub.partition_key,
                            sub.data,
                        );
                        rec.approximate_arrival_timestamp = arrival;
                        lines.push(render(
                            &shared.stream,
                            &shard_id,
                            &rec,
                            out.millis_behind_latest(),
                            shared.format,
                        ));
                    }
                }
                Err(e) => tracing::warn!(
                    shard = %shard_id,
                    sequence_number = r.sequence_number(),
                    error = %e,
                    "record could not be read; skipped"
                ),
            }
        }
        match shared.out.write_flush(lines.iter().map(Vec::as_slice)) {
            Ok(()) => {}
            Err(WriteError::Closed) => return Err(closed()),
            Err(WriteError::Failed(e)) => return Err(Error::Output(e)),
        }
        if let Some(last) = out.records().last() {
            position = Position::After(last.sequence_number().to_owned());
            shared.last_record_ms.store(
                shared.started.elapsed().as_millis() as u64,
                Ordering::Relaxed,
            );
        }
        next = out.next_shard_iterator().map(str::to_owned);
        let pause = if out.records().is_empty() {
            Duration::from_millis(500)
        } else {
            Duration::from_millis(200)
        };
        tokio::time::sleep_until(started + pause).await;
    }
    Ok(())
}

/// Reads every shard until SIGINT/SIGTERM, `--exit-when-idle`, or standard output closing.
///
/// # Cancellation
/// Dropping the future stops reading; nothing is left behind.
///
/// # Errors
/// [`Error::Config`] for an unusable AWS configuration; [`Error::Kinesis`] when the stream
/// does not exist or a call is refused for good; [`Error::GaveUp`] when listing or reading
/// kept failing for the retry policy's bound.
pub async fn run(args: TailArgs) -> Result<(), Error> {
    let config = crate::aws::load().await?;
    let shared = Arc::new(Shared {
        kinesis: aws_sdk_kinesis::Client::new(&config),
        stream: args.stream.clone(),
        format: args.output,
        out: Output::default(),
        retry: RetryPolicy {
            give_up_after: Duration::from_secs(args.give_up_after_secs),
            ..RetryPolicy::default()
        },
        last_record_ms: AtomicU64::new(0),
        started: std::time::Instant::now(),
    });
    let stop = crate::signals::install("stopping the readers")?;
    let idle = idle_for(shared.clone(), args.exit_when_idle.map(Duration::from_secs));
    tokio::pin!(idle);
    let mut started: HashSet<String> = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut first = true;
    loop {
        let listing = super::shards::list_all_with(&shared.kinesis, &args.stream, &shared.retry);
        let shards = tokio::select! {
            r = listing => r?,
            _ = stop.cancelled() => return Ok(()),
            _ = &mut idle => return Ok(()),
            _ = shared.out.reader_gone() => return Ok(()),
        };
        for s in shards {
            let id = s.shard_id().to_owned();
            if started.insert(id.clone()) {
                let position = if first {
                    args.from
                } else {
                    InitialPosition::TrimHorizon
                };
                tasks.spawn(read_shard(shared.clone(), id, position));
            }
        }
        first = false;
        let relist = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(relist);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = &mut idle => return Ok(()),
                _ = shared.out.reader_gone() => return Ok(()),
                _ = &mut relist => break,
                Some(done) = tasks.join_next() => match done {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(e) => return Err(Error::Internal(format!("a shard reader failed: {e}"))),
                },
            }
        }
    }
}

/// Resolves once no record was written for `idle` (never when `idle` is `None`), also
/// while the shards cannot be listed or read.
async fn idle_for(shared: Arc<Shared>, idle: Option<Duration>) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let last = Duration::from_millis(shared.last_record_ms.load(Ordering::Relaxed));
        if shared.started.elapsed().saturating_sub(last) >= idle {
            return;
        }
    }
}
