//! `kinesis-cat tail`: reads every shard of a stream without a lease table (like
//! `kcat -C`), deaggregating KPL records.
//!
//! ```text
//!  ListShards (every 5 s) ──new shard──▶ reader task: GetShardIterator ─▶ GetRecords loop (≤ 5/s)
//!       │                                      │ expired iterator: a new one after the last record
//!       │                                      └─▶ Deaggregator ─▶ Printer ─▶ Output ─▶ stdout
//!       │                                          (json | raw | --format)   └ --count: the first N
//!       └─ both calls retried by one RetryPolicy (backoff, bound); giving up ends `tail`
//!  --exit-at-end: a reader stops at its shard's end or at the first empty read that is not
//!    behind (MillisBehindLatest 0); when every reader has stopped, one more ListShards:
//!    new shards (the children of a reshard) are read too, else `tail` ends
//!  Ctrl-C / SIGTERM / --count reached / --exit-when-idle / stdout closed ──▶ exit 0
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
use tokio_util::sync::CancellationToken;

use crate::args::TailStart;
use crate::output::{Output, WriteError};
use crate::render::{render, Output as Format, Printer};
use crate::retry::RetryPolicy;
use crate::template::Template;
use crate::{args, Error};

/// Arguments of `kinesis-cat tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Stream to read.
    #[arg(short, long, value_parser = args::stream_name)]
    pub stream: String,
    /// Where to start in the shards open at start: trim-horizon, latest,
    /// at-timestamp:TIME (RFC 3339, e.g. 2024-01-02T03:04:05Z or ...+02:00, or epoch
    /// seconds), a time ago (-5m, -90s, -2h, -1d: AT_TIMESTAMP), or with one --shard
    /// at-sequence:SEQ / after-sequence:SEQ. Shards that appear later are read from their
    /// start.
    #[arg(long, default_value = "latest", value_parser = args::tail_start,
          allow_hyphen_values = true, conflicts_with = "since")]
    pub from: TailStart,
    /// Start this long ago (10m, 2h, 1d; units ms, s, m, h, d): the same as --from -10m.
    #[arg(long, value_name = "DURATION", value_parser = args::since)]
    pub since: Option<InitialPosition>,
    /// Read only this shard (repeat for more): its records, not its children's. Default:
    /// every shard, and those that appear later.
    #[arg(long = "shard", value_name = "SHARD_ID", value_parser = args::non_empty)]
    pub shards: Vec<String>,
    /// Stop once every shard is read to its end or to the latest record (like kcat -e):
    /// shards that appear meanwhile (a reshard's children) are read too.
    #[arg(short, long)]
    pub exit_at_end: bool,
    /// Stop after printing this many records (at least 1; kcat's -c).
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this many seconds without records. Default: never.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub exit_when_idle: Option<u64>,
    /// How records are printed: json (one object per line: stream, shard_id,
    /// sequence_number, sub_sequence_number, partition_key, explicit_hash_key when known,
    /// data_b64, data when UTF-8, approximate_arrival_timestamp, millis_behind_latest; what
    /// `produce --input json` reads) or raw (the payload and a newline).
    #[arg(short, long, value_enum, default_value_t = Format::Json)]
    pub output: Format,
    /// Print each record with this template instead of --output (kcat's -f): %s payload,
    /// %S payload size, %k partition key, %K key size, %h explicit hash key, %T arrival
    /// (epoch ms), %l lag (ms behind latest), %t stream, %p shard, %o sequence number, %u
    /// sub-sequence number, %% a percent sign; escapes \n \t \r \0 \\. Nothing is added: end
    /// it with \n for one record per line. Unknown values print as nothing.
    #[arg(short, long, value_name = "TEMPLATE", value_parser = crate::template::parse_format,
          conflicts_with = "output")]
    pub format: Option<Template>,
    /// Give up when listing shards or reading a shard keeps failing (network trouble,
    /// throttling, server errors) for this many seconds of retries (at least 1).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub give_up_after_secs: u64,
}

impl TailArgs {
    /// Where the shards open at start are read from: `--since`, else `--from`.
    pub fn start(&self) -> TailStart {
        match self.since {
            Some(p) => TailStart::Position(p),
            None => self.from.clone(),
        }
    }

    /// What clap cannot check: a sequence number belongs to one shard, so
    /// `at-sequence:` / `after-sequence:` need exactly one `--shard`.
    ///
    /// # Errors
    /// Says which flags conflict and why.
    pub fn check(&self) -> Result<(), String> {
        match (&self.from, self.shards.len()) {
            (TailStart::AtSequence(_) | TailStart::AfterSequence(_), n) if n != 1 => Err(format!(
                "--from at-sequence:/after-sequence: needs exactly one --shard (a sequence \
                 number belongs to one shard), {n} given"
            )),
            _ => Ok(()),
        }
    }
}

/// State shared by the shard readers.
#[derive(Debug)]
struct Shared {
    /// Kinesis client.
    kinesis: aws_sdk_kinesis::Client,
    /// The stream.
    stream: String,
    /// How records are printed.
    printer: Printer,
    /// Standard output.
    out: Output,
    /// How calls are retried.
    retry: RetryPolicy,
    /// Whether readers stop at the end of what there is (`--exit-at-end`).
    exit_at_end: bool,
    /// Records still to print (`--count`), if counted.
    remaining: Option<AtomicU64>,
    /// Cancelled once `--count` records are printed.
    counted: CancellationToken,
    /// Milliseconds since `started` at the last record.
    last_record_ms: AtomicU64,
    /// Process start, the base of `last_record_ms`.
    started: std::time::Instant,
}

impl Shared {
    /// Writes `lines` (or, with `--count`, as many as are still to print) and flushes.
    ///
    /// # Errors
    /// The reader of standard output went away (status 0), or writing failed.
    fn emit(&self, lines: &[Vec<u8>]) -> Result<(), Error> {
        let take = match &self.remaining {
            None => lines.len(),
            Some(remaining) => {
                let want = lines.len() as u64;
                let before = remaining
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                        Some(left.saturating_sub(want))
                    })
                    .unwrap_or(0);
                before.min(want) as usize
            }
        };
        if take == 0 && !lines.is_empty() {
            return Ok(());
        }
        match self
            .out
            .write_flush(lines[..take].iter().map(Vec::as_slice))
        {
            Ok(()) => {}
            Err(WriteError::Closed) => return Err(closed()),
            Err(WriteError::Failed(e)) => return Err(Error::Output(e)),
        }
        if let Some(remaining) = &self.remaining {
            if remaining.load(Ordering::Acquire) == 0 {
                self.counted.cancel();
            }
        }
        Ok(())
    }
}

/// Where a reader (re)starts in its shard.
#[derive(Debug, Clone)]
enum Position {
    /// The shard's first iterator.
    Initial(TailStart),
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
                Position::After(seq) | Position::Initial(TailStart::AfterSequence(seq)) => req
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .starting_sequence_number(seq),
                Position::Initial(TailStart::AtSequence(seq)) => req
                    .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                    .starting_sequence_number(seq),
                Position::Initial(TailStart::Position(InitialPosition::Latest)) => {
                    req.shard_iterator_type(ShardIteratorType::Latest)
                }
                Position::Initial(TailStart::Position(InitialPosition::AtTimestamp(t))) => req
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(aws_sdk_kinesis::primitives::DateTime::from(*t)),
                Position::Initial(TailStart::Position(_)) => {
                    req.shard_iterator_type(ShardIteratorType::TrimHorizon)
                }
            };
            req.send()
        })
        .await?;
    Ok(out.shard_iterator().map(str::to_owned))
}

/// Reads one shard until its end, or with `--exit-at-end` until a read finds nothing and
/// is not behind.
async fn read_shard(shared: Arc<Shared>, shard_id: String, from: TailStart) -> Result<(), Error> {
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
                        rec.explicit_hash_key = sub.explicit_hash_key;
                        lines.push(render(
                            &shared.stream,
                            &shard_id,
                            &rec,
                            out.millis_behind_latest(),
                            &shared.printer,
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
        shared.emit(&lines)?;
        if let Some(last) = out.records().last() {
            position = Position::After(last.sequence_number().to_owned());
            shared.last_record_ms.store(
                shared.started.elapsed().as_millis() as u64,
                Ordering::Relaxed,
            );
        }
        if shared.exit_at_end
            && out.records().is_empty()
            && out.millis_behind_latest().unwrap_or(0) == 0
        {
            tracing::debug!(shard = %shard_id, "read to the end");
            return Ok(());
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

/// Reads every shard (or the `--shard`s) until SIGINT/SIGTERM, `--exit-at-end`,
/// `--count`, `--exit-when-idle`, or standard output closing.
///
/// # Cancellation
/// Dropping the future stops reading; nothing is left behind.
///
/// # Errors
/// [`Error::Config`] for an unusable AWS configuration; [`Error::Kinesis`] when the stream
/// does not exist or a call is refused for good; [`Error::ShardNotFound`] for a `--shard`
/// the stream does not have; [`Error::GaveUp`] when listing or reading kept failing for
/// the retry policy's bound.
pub async fn run(args: TailArgs, aws: &crate::aws::AwsOptions) -> Result<(), Error> {
    let config = crate::aws::load(aws).await?;
    let shared = Arc::new(Shared {
        kinesis: aws_sdk_kinesis::Client::new(&config),
        stream: args.stream.clone(),
        printer: Printer::new(args.output, args.format.as_ref()),
        out: Output::default(),
        retry: RetryPolicy {
            give_up_after: Duration::from_secs(args.give_up_after_secs),
            ..RetryPolicy::default()
        },
        exit_at_end: args.exit_at_end,
        remaining: args.count.map(AtomicU64::new),
        counted: CancellationToken::new(),
        last_record_ms: AtomicU64::new(0),
        started: std::time::Instant::now(),
    });
    let stop = crate::signals::install("stopping the readers")?;
    let idle = idle_for(shared.clone(), args.exit_when_idle.map(Duration::from_secs));
    tokio::pin!(idle);
    let start = args.start();
    let mut started: HashSet<String> = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut first = true;
    loop {
        let listing = super::shards::list_all_with(&shared.kinesis, &args.stream, &shared.retry);
        let shards = tokio::select! {
            r = listing => r?,
            _ = stop.cancelled() => return Ok(()),
            _ = shared.counted.cancelled() => return Ok(()),
            _ = &mut idle => return Ok(()),
            _ = shared.out.reader_gone() => return Ok(()),
        };
        if first {
            for wanted in &args.shards {
                if !shards.iter().any(|s| s.shard_id() == wanted) {
                    return Err(Error::ShardNotFound {
                        stream: args.stream.clone(),
                        shard: wanted.clone(),
                    });
                }
            }
        }
        let mut new_shards = 0;
        for s in shards {
            let id = s.shard_id().to_owned();
            if !args.shards.is_empty() && !args.shards.contains(&id) {
                continue;
            }
            if started.insert(id.clone()) {
                new_shards += 1;
                let position = if first {
                    start.clone()
                } else {
                    TailStart::Position(InitialPosition::TrimHorizon)
                };
                tasks.spawn(read_shard(shared.clone(), id, position));
            }
        }
        if !first && new_shards == 0 && tasks.is_empty() && args.exit_at_end {
            // Every reader is at its end and no shard appeared since.
            return Ok(());
        }
        first = false;
        let relist = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(relist);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = shared.counted.cancelled() => return Ok(()),
                _ = &mut idle => return Ok(()),
                _ = shared.out.reader_gone() => return Ok(()),
                _ = &mut relist => break,
                Some(done) = tasks.join_next() => match done {
                    Ok(Ok(())) if args.exit_at_end && tasks.is_empty() => break,
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
