//! `kinesis-cat tail`: reads every shard of a stream without a lease table (like
//! `kcat -C`), deaggregating KPL records.
//!
//! ```text
//!  ListShards (every 5 s) ──new shard──▶ reader task: GetShardIterator ─▶ GetRecords loop (≤ 5/s)
//!                                              └─▶ Deaggregator ─▶ stdout (json | raw)
//! ```
//!
//! No checkpoints and no ordering between a parent and its children: use `consume` for that.

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;
use clap::Args;
use kinesis_consumer::{InitialPosition, KinesisClientRecord};

use super::consume::{parse_from, render, shutdown_signal, Output};
use crate::Error;

/// Arguments of `kinesis-cat tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Stream to read.
    #[arg(long)]
    pub stream: String,
    /// Where to start in the shards open at start: trim-horizon, latest or
    /// at-timestamp:RFC3339 (shards that appear later are read from their start).
    /// Default: latest.
    #[arg(long, default_value = "latest")]
    pub from: String,
    /// Stop after this many seconds without records. Default: never.
    #[arg(long)]
    pub exit_when_idle: Option<u64>,
    /// Output format. Default: json.
    #[arg(long, value_enum, default_value_t = Output::Json)]
    pub output: Output,
}

/// State shared by the shard readers.
#[derive(Debug)]
struct Shared {
    /// Kinesis client.
    kinesis: aws_sdk_kinesis::Client,
    /// The stream.
    stream: String,
    /// Output format.
    output: Output,
    /// Standard output.
    out: Mutex<std::io::BufWriter<std::io::Stdout>>,
    /// Milliseconds since `started` at the last record.
    last_record_ms: AtomicU64,
    /// Process start, the base of `last_record_ms`.
    started: std::time::Instant,
}

async fn read_shard(
    shared: Arc<Shared>,
    shard_id: String,
    from: InitialPosition,
) -> Result<(), Error> {
    let mut req = shared
        .kinesis
        .get_shard_iterator()
        .stream_name(&shared.stream)
        .shard_id(&shard_id);
    req = match from {
        InitialPosition::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
        InitialPosition::AtTimestamp(t) => req
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(aws_sdk_kinesis::primitives::DateTime::from(t)),
        _ => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
    };
    let out = req
        .send()
        .await
        .map_err(|e| Error::kinesis("GetShardIterator", &shared.stream, e))?;
    let mut iterator = out.shard_iterator().map(str::to_owned);
    let deagg = kinesis_agg::Deaggregator::new();
    while let Some(it) = iterator.take() {
        let started = tokio::time::Instant::now();
        let out = match shared
            .kinesis
            .get_records()
            .shard_iterator(&it)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let err = Error::kinesis("GetRecords", &shared.stream, e);
                eprintln!("kinesis-cat: {shard_id}: {err}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                iterator = Some(it);
                continue;
            }
        };
        let empty = out.records().is_empty();
        {
            let mut w = shared.out.lock().expect("not poisoned");
            for r in out.records() {
                let data = Bytes::copy_from_slice(r.data().as_ref());
                let pk = r.partition_key().unwrap_or_default();
                let Ok(d) = deagg.deaggregate(pk, data) else {
                    continue;
                };
                for sub in d.records {
                    let rec = KinesisClientRecord::new(
                        r.sequence_number(),
                        sub.sub_sequence_number,
                        sub.partition_key,
                        sub.data,
                    );
                    w.write_all(&render(&shared.stream, &shard_id, &rec, shared.output))
                        .map_err(Error::Output)?;
                }
            }
            w.flush().map_err(Error::Output)?;
        }
        if !empty {
            shared.last_record_ms.store(
                shared.started.elapsed().as_millis() as u64,
                Ordering::Relaxed,
            );
        }
        iterator = out.next_shard_iterator().map(str::to_owned);
        let pause = if empty {
            Duration::from_millis(500)
        } else {
            Duration::from_millis(200)
        };
        tokio::time::sleep_until(started + pause).await;
    }
    Ok(())
}

/// Reads every shard until SIGINT/SIGTERM or `--exit-when-idle`.
///
/// # Cancellation
/// Dropping the future stops reading; nothing is left behind.
///
/// # Errors
/// Bad arguments or a stream that cannot be listed.
pub async fn run(args: TailArgs) -> Result<(), Error> {
    let from = parse_from(&args.from)?;
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let shared = Arc::new(Shared {
        kinesis: aws_sdk_kinesis::Client::new(&config),
        stream: args.stream.clone(),
        output: args.output,
        out: Mutex::new(std::io::BufWriter::new(std::io::stdout())),
        last_record_ms: AtomicU64::new(0),
        started: std::time::Instant::now(),
    });
    let idle = args.exit_when_idle.map(Duration::from_secs);
    let mut started: HashSet<String> = HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut first = true;
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        let shards = super::shards::list_all(&shared.kinesis, &args.stream).await?;
        for s in shards {
            let id = s.shard_id().to_owned();
            if started.insert(id.clone()) {
                let position = if first {
                    from
                } else {
                    InitialPosition::TrimHorizon
                };
                tasks.spawn(read_shard(shared.clone(), id, position));
            }
        }
        first = false;
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < until {
            tokio::select! {
                r = &mut signal => return r,
                Some(done) = tasks.join_next() => {
                    if let Ok(Err(e)) = done {
                        eprintln!("kinesis-cat: {e}");
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            if let Some(idle) = idle {
                let last = Duration::from_millis(shared.last_record_ms.load(Ordering::Relaxed));
                if shared.started.elapsed().saturating_sub(last) >= idle {
                    return Ok(());
                }
            }
        }
    }
}
