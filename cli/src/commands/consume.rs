//! `kinesis-cat consume`: a full consumer worker (leases, balancing, checkpoints) that
//! prints every user record.
//!
//! ```text
//!  Scheduler (kinesis-consumer) ── per shard ──▶ PrintingProcessor ──▶ stdout (json | raw)
//!       ▲                                             │ flush stdout, then checkpoint
//!  SIGINT / SIGTERM / --exit-when-idle ──▶ graceful_shutdown (leases released)
//! ```
//!
//! A record is always written and flushed before the checkpoint that covers it, so a
//! reader of stdout never misses a record that was checkpointed.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use base64::Engine;
use clap::{Args, ValueEnum};
use kinesis_consumer::{
    Checkpointer, ConfigError, InitialPosition, InitializationInput, KinesisClientRecord,
    LeaseLostInput, ProcessRecordsInput, RecordProcessor, Scheduler, ShardEndedInput,
    ShutdownRequestedInput,
};

use crate::Error;

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One JSON object per line.
    Json,
    /// The data bytes followed by a newline.
    Raw,
}

/// Arguments of `kinesis-cat consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Stream to consume.
    #[arg(long)]
    pub stream: String,
    /// Application name (the lease table's name).
    #[arg(long)]
    pub app: String,
    /// Worker id. Default: host name, process id and a random suffix.
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Where shards without a checkpoint start: trim-horizon, latest or
    /// at-timestamp:RFC3339. Default: trim-horizon.
    #[arg(long, default_value = "trim-horizon")]
    pub from: String,
    /// Failover time in milliseconds. Default: 10000.
    #[arg(long, default_value_t = 10_000)]
    pub failover_ms: u64,
    /// Lease taker interval in milliseconds. Default: 2 × (failover + 25).
    #[arg(long)]
    pub taker_interval_ms: Option<u64>,
    /// Checkpoint after at least this many records (and at every shard end and shutdown).
    /// Default: 1 (after every batch).
    #[arg(long, default_value_t = 1)]
    pub checkpoint_every: u64,
    /// Shut down gracefully after this many seconds without records. Default: never.
    #[arg(long)]
    pub exit_when_idle: Option<u64>,
    /// Output format. Default: json.
    #[arg(long, value_enum, default_value_t = Output::Json)]
    pub output: Output,
}

/// Parses `--from`.
///
/// # Errors
/// [`Error::Consumer`] with a configuration error for anything else.
pub fn parse_from(from: &str) -> Result<InitialPosition, Error> {
    match from {
        "trim-horizon" => Ok(InitialPosition::TrimHorizon),
        "latest" => Ok(InitialPosition::Latest),
        other => {
            let ts = other.strip_prefix("at-timestamp:").ok_or_else(|| {
                Error::Consumer(kinesis_consumer::Error::Config(
                    ConfigError::InvalidInitialPosition {
                        value: other.to_owned(),
                        reason: "expected trim-horizon, latest or at-timestamp:RFC3339".into(),
                    },
                ))
            })?;
            let t = aws_sdk_kinesis::primitives::DateTime::from_str(
                ts,
                aws_sdk_kinesis::primitives::DateTimeFormat::DateTime,
            )
            .ok()
            .and_then(|d| SystemTime::try_from(d).ok())
            .ok_or_else(|| {
                Error::Consumer(kinesis_consumer::Error::Config(
                    ConfigError::InvalidInitialPosition {
                        value: other.to_owned(),
                        reason: format!("{ts:?} is not an RFC 3339 time"),
                    },
                ))
            })?;
            Ok(InitialPosition::AtTimestamp(t))
        }
    }
}

/// One output line (or raw record) for a user record.
pub fn render(stream: &str, shard_id: &str, r: &KinesisClientRecord, output: Output) -> Vec<u8> {
    match output {
        Output::Raw => {
            let mut v = r.data.to_vec();
            v.push(b'\n');
            v
        }
        Output::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("stream".into(), stream.into());
            obj.insert("shard_id".into(), shard_id.into());
            obj.insert("sequence_number".into(), r.sequence_number.clone().into());
            obj.insert("sub_sequence_number".into(), r.sub_sequence_number.into());
            obj.insert("partition_key".into(), r.partition_key.as_str().into());
            obj.insert(
                "data_b64".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(&r.data)
                    .into(),
            );
            if let Ok(text) = std::str::from_utf8(&r.data) {
                obj.insert("data".into(), text.into());
            }
            let mut line = serde_json::Value::Object(obj).to_string().into_bytes();
            line.push(b'\n');
            line
        }
    }
}

/// Shared by the processors of one worker.
#[derive(Debug)]
struct Shared {
    /// The stream, for the JSON lines.
    stream: String,
    /// Output format.
    output: Output,
    /// Records between checkpoints.
    checkpoint_every: u64,
    /// Standard output, locked per batch.
    out: Mutex<std::io::BufWriter<std::io::Stdout>>,
    /// Milliseconds since start at the last record, for `--exit-when-idle`.
    last_record_ms: AtomicU64,
    /// Start of the process, the base of `last_record_ms`.
    started: std::time::Instant,
}

impl Shared {
    fn flush(&self) -> std::io::Result<()> {
        self.out.lock().expect("not poisoned").flush()
    }
}

/// Prints records and checkpoints every `checkpoint_every` records.
#[derive(Debug)]
struct PrintingProcessor {
    /// Output and settings.
    shared: Arc<Shared>,
    /// The shard.
    shard_id: String,
    /// Records printed since the last checkpoint.
    since_checkpoint: u64,
}

impl PrintingProcessor {
    async fn checkpoint(&mut self, cp: &Checkpointer) {
        if let Err(e) = self.shared.flush() {
            eprintln!("kinesis-cat: cannot flush stdout ({e}); not checkpointing");
            return;
        }
        match cp.checkpoint().await {
            Ok(()) => self.since_checkpoint = 0,
            Err(e) => eprintln!("kinesis-cat: checkpoint of {} failed: {e}", self.shard_id),
        }
    }
}

#[async_trait]
impl RecordProcessor for PrintingProcessor {
    async fn initialize(&mut self, input: InitializationInput) {
        eprintln!(
            "kinesis-cat: {} starts after {}",
            input.shard_id, input.checkpoint
        );
    }

    async fn process_records(&mut self, input: ProcessRecordsInput) {
        {
            let mut out = self.shared.out.lock().expect("not poisoned");
            for r in &input.records {
                let line = render(&self.shared.stream, &self.shard_id, r, self.shared.output);
                if let Err(e) = out.write_all(&line) {
                    eprintln!("kinesis-cat: cannot write to stdout: {e}");
                    return;
                }
            }
        }
        self.shared.last_record_ms.store(
            self.shared.started.elapsed().as_millis() as u64,
            Ordering::Relaxed,
        );
        self.since_checkpoint += input.records.len() as u64;
        if self.since_checkpoint >= self.shared.checkpoint_every {
            self.checkpoint(&input.checkpointer).await;
        }
    }

    async fn lease_lost(&mut self, _: LeaseLostInput) {
        let _ = self.shared.flush();
        eprintln!("kinesis-cat: lost the lease of {}", self.shard_id);
    }

    async fn shard_ended(&mut self, input: ShardEndedInput) {
        self.checkpoint(&input.checkpointer).await;
    }

    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        self.checkpoint(&input.checkpointer).await;
    }
}

/// Waits for SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() -> Result<(), Error> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::Signal)?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(Error::Signal),
        _ = term.recv() => Ok(()),
    }
}

/// Runs a worker until SIGINT/SIGTERM or `--exit-when-idle`, then shuts down gracefully.
///
/// # Cancellation
/// Dropping the future stops the worker abruptly (its leases expire to other workers).
///
/// # Errors
/// Bad arguments, or a lease table that cannot be created or read.
pub async fn run(args: ConsumeArgs) -> Result<(), Error> {
    let initial = parse_from(&args.from)?;
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let shared = Arc::new(Shared {
        stream: args.stream.clone(),
        output: args.output,
        checkpoint_every: args.checkpoint_every.max(1),
        out: Mutex::new(std::io::BufWriter::new(std::io::stdout())),
        last_record_ms: AtomicU64::new(0),
        started: std::time::Instant::now(),
    });
    let factory = {
        let shared = shared.clone();
        move |shard: &str| {
            Box::new(PrintingProcessor {
                shared: shared.clone(),
                shard_id: shard.to_owned(),
                since_checkpoint: 0,
            }) as Box<dyn RecordProcessor>
        }
    };
    let mut builder = Scheduler::builder(&args.app, &args.stream, factory)
        .with_sdk_config(&config)
        .with_initial_position(initial)
        .with_failover_time(Duration::from_millis(args.failover_ms.max(1)));
    if let Some(ms) = args.taker_interval_ms {
        builder = builder.with_taker_interval(Duration::from_millis(ms.max(1)));
    }
    if let Some(id) = &args.worker_id {
        builder = builder.with_worker_id(id);
    }
    let mut polling = kinesis_consumer::PollingConfig::default();
    polling.idle_time_between_reads = Duration::from_millis(200);
    let scheduler = builder.with_polling(polling).build()?;
    eprintln!(
        "kinesis-cat: worker {} consuming {}",
        scheduler.worker_id(),
        args.stream
    );

    let worker = scheduler.clone();
    let mut run = tokio::spawn(async move { worker.run().await });
    let idle = args.exit_when_idle.map(Duration::from_secs);
    let watcher = {
        let shared = shared.clone();
        async move {
            match idle {
                None => std::future::pending::<()>().await,
                Some(idle) => loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let last = Duration::from_millis(shared.last_record_ms.load(Ordering::Relaxed));
                    if shared.started.elapsed().saturating_sub(last) >= idle {
                        return;
                    }
                },
            }
        }
    };
    let finished = tokio::select! {
        r = &mut run => Some(r),
        r = shutdown_signal() => { r?; None }
        _ = watcher => None,
    };
    let result = match finished {
        Some(r) => r,
        None => {
            eprintln!("kinesis-cat: shutting down gracefully");
            scheduler.graceful_shutdown().await;
            run.await
        }
    };
    let _ = shared.flush();
    match result {
        Ok(r) => r.map_err(Error::from),
        // The worker task is never aborted, so it only fails by panicking: pass that on.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    #[test]
    fn defaults_are_pinned() {
        let w = Wrapper::parse_from(["x", "--stream", "s", "--app", "a"]);
        assert_eq!(w.args.from, "trim-horizon");
        assert_eq!(w.args.failover_ms, 10_000);
        assert_eq!(w.args.taker_interval_ms, None);
        assert_eq!(w.args.checkpoint_every, 1);
        assert_eq!(w.args.exit_when_idle, None);
        assert_eq!(w.args.output, Output::Json);
        assert_eq!(w.args.worker_id, None);
    }

    #[test]
    fn from_parses_positions() {
        assert_eq!(parse_from("latest").unwrap(), InitialPosition::Latest);
        assert_eq!(
            parse_from("trim-horizon").unwrap(),
            InitialPosition::TrimHorizon
        );
        let InitialPosition::AtTimestamp(t) =
            parse_from("at-timestamp:2024-01-02T03:04:05Z").unwrap()
        else {
            panic!("not a timestamp")
        };
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_704_164_645
        );
        assert!(parse_from("at-timestamp:yesterday").is_err());
        assert!(parse_from("oldest").is_err());
    }

    #[test]
    fn json_lines_carry_every_field() {
        let r = KinesisClientRecord::new("49", 2, "pk", &b"hi"[..]);
        let line = render("s", "shardId-1", &r, Output::Json);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["stream"], "s");
        assert_eq!(v["shard_id"], "shardId-1");
        assert_eq!(v["sequence_number"], "49");
        assert_eq!(v["sub_sequence_number"], 2);
        assert_eq!(v["partition_key"], "pk");
        assert_eq!(v["data_b64"], "aGk=");
        assert_eq!(v["data"], "hi");
        let bin = KinesisClientRecord::new("49", 0, "pk", vec![0xff, 0]);
        let v: serde_json::Value =
            serde_json::from_slice(&render("s", "x", &bin, Output::Json)).unwrap();
        assert!(v.get("data").is_none(), "binary data has no text field");
        assert_eq!(render("s", "x", &r, Output::Raw), b"hi\n");
    }
}
