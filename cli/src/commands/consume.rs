//! `kinesis-cat consume`: a full consumer worker (leases, balancing, checkpoints) that
//! prints every user record.
//!
//! ```text
//!  --efo: RegisterStreamConsumer if missing ─▶ wait ACTIVE ─▶ SubscribeToShard pushes (left registered)
//!  default: GetRecords polling every 200 ms                         │
//!  Scheduler (kinesis-consumer) ── per shard ──▶ PrintingProcessor ──▶ Output ──▶ stdout (json | raw)
//!       ▲                                             │ written and flushed, then checkpoint
//!  Ctrl-C / SIGTERM / --exit-when-idle / stdout closed ──▶ graceful_shutdown (leases handed over)
//!  second Ctrl-C / SIGTERM ──▶ exit 130 at once
//! ```
//!
//! With `--stream` given more than once the worker is a multi-stream application (the
//! library's `Scheduler::multi_stream_builder` with a static list): one lease table for all
//! the streams, leases keyed `account:stream:creationEpoch:shardId` as the Java KCL's, and
//! every output line names its stream: the `stream` field in JSON (there with one stream
//! too), a `STREAM: ` prefix before the payload in raw output, `%t` in a `--format`
//! template. With `--efo` each stream is read through its own stream consumer of the same
//! name, registered on each stream when missing.
//!
//! With `--streams-file PATH` the list comes from a file instead, read again at every poll
//! of the library's stream tracker (`--stream-tracker-interval`), so that streams are added
//! and removed while the workers run (`streams_file`: the format, and what a bad file does);
//! `--former-streams-delete-after` says when the leases of a removed stream go.
//! `--balancing throughput` weighs each lease by its measured throughput instead of
//! counting leases.
//!
//! At the end, a summary on standard error: records written, the shards they came from,
//! the time since start and the rate; on a terminal the same line is kept up to date
//! every second while the worker runs. `--metrics-addr` serves the library's metrics.
//!
//! Batches: each `process_records` call (one per read, or cut as `--batch-size` and
//! `--batch-window` say, through the library's Lambda-style batching) is written and
//! flushed as one, then checkpointed when `--checkpoint-every` is due; `-vv` logs each
//! batch written (shard, records).
//!
//! A record is always written and flushed before the checkpoint that covers it, so a
//! reader of stdout never misses a record that was checkpointed; once the reader has gone
//! (`| head`), nothing more is checkpointed and the worker shuts down gracefully.
//!
//! Before anything is created, the AWS configuration is checked and the library checks
//! that the stream exists (a typo leaves no lease table behind).
//!
//! With `--efo` the worker reads through a registered stream consumer. The SDK's attempt
//! and operation timeouts (`aws.rs`) end with the response headers of `SubscribeToShard`,
//! before its event stream is read, so they never cut a subscription; the library turns
//! stalled-stream protection off for these calls and guards a silent subscription with
//! its own idle timeout.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use clap::{Args, ValueEnum};
use kinesis_consumer::{
    Balancing, Batching, Checkpointer, FanOutConfig, FormerStreamsLeasesDeletionStrategy,
    InitialPosition, InitializationInput, LeaseLostInput, OutsideRangePolicy, PayloadDecompression,
    PollingConfig, ProcessRecordsInput, RecordProcessor, Retrieval, Scheduler, SchedulerBuilder,
    ShardEndedInput, ShutdownRequestedInput, StaticStreamTracker, StreamConfig, StreamIdentifier,
};
use tokio_util::sync::CancellationToken;

use crate::commands::streams_file::StreamsFile;
use crate::output::{Output as Stdout, WriteError};
use crate::render::{render, Output, Printer};
use crate::{args, Error};

/// What happens to records of an aggregate whose key lies outside the shard it landed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutsideRange {
    /// Leave them out, counted and logged (the Java KCL's rule; right for the KPL and this
    /// project's producer, which re-send them to their own shard).
    Drop,
    /// Print them, with `"outside_shard_range": true` in JSON output (needed for streams
    /// written by aggregators that pack any keys together: aws-kinesis-agg for Python or
    /// Node, some Go producers).
    Keep,
}

impl From<OutsideRange> for OutsideRangePolicy {
    fn from(o: OutsideRange) -> Self {
        match o {
            OutsideRange::Drop => OutsideRangePolicy::Drop,
            OutsideRange::Keep => OutsideRangePolicy::Keep,
        }
    }
}

/// What the workers of an application balance among themselves (`--balancing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BalancingMode {
    /// The number of leases: `ceil(leases / workers)` each (the library's default).
    Count,
    /// The throughput measured on each lease (the library's `Balancing::throughput()`).
    Throughput,
}

impl From<BalancingMode> for Balancing {
    fn from(b: BalancingMode) -> Self {
        match b {
            BalancingMode::Count => Balancing::LeaseCount,
            BalancingMode::Throughput => Balancing::throughput(),
        }
    }
}

/// Arguments of `kinesis-cat consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Stream to consume; repeat it to consume several streams with one worker (a
    /// multi-stream application: one lease table for all of them, leases keyed
    /// account:stream:creationEpoch:shardId as the Java KCL's). With several streams every
    /// line names its stream: the "stream" field in JSON, a "STREAM: " prefix in raw output
    /// (%t in a --format template); with --efo the stream consumer is registered on each.
    #[arg(short, long, value_parser = args::stream_name, required_unless_present = "streams_file")]
    pub stream: Vec<String>,
    /// Application name (the lease table's name: 3 to 255 characters of a-z A-Z 0-9 _ . -).
    #[arg(short, long, value_parser = args::application_name)]
    pub app: String,
    /// Worker id. Default: host name, process id and a random suffix.
    #[arg(long, value_parser = args::non_empty)]
    pub worker_id: Option<String>,
    /// Where shards without a checkpoint start: trim-horizon, latest,
    /// at-timestamp:TIME (RFC 3339, e.g. 2024-01-02T03:04:05Z or ...+02:00, or epoch
    /// seconds, e.g. 1704164645) or a time ago (-5m, -90s, -2h, -1d: AT_TIMESTAMP).
    #[arg(long, default_value = "trim-horizon", value_parser = args::position,
          allow_hyphen_values = true, conflicts_with = "since")]
    pub from: InitialPosition,
    /// Start shards without a checkpoint this long ago (10m, 2h, 1d; units ms, s, m, h,
    /// d): the same as --from -10m.
    #[arg(long, value_name = "DURATION", value_parser = args::since)]
    pub since: Option<InitialPosition>,
    /// Failover time in milliseconds (100 to 86400000).
    #[arg(long, default_value_t = 10_000, value_parser = args::failover_ms)]
    pub failover_ms: u64,
    /// Lease taker interval in milliseconds (1 to 86400000, a day). Default: 2 ×
    /// (failover + 25).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub taker_interval_ms: Option<u64>,
    /// Prove this worker alive the Java KCL's way: renew every lease every failover/3 and
    /// take a lease not renewed for the failover time, found by a scan every 2 × failover,
    /// one steal per round. For lease tables that workers of another KCL (the Java KCL,
    /// kcl-rs) use at the same time. Default: off (heartbeats).
    ///
    /// By default workers beat every failover/5 in one item of the `<app>-Workers` table
    /// and read everyone's in the same call: a killed worker's shards are taken within 1.1 ×
    /// the failover time, a new worker takes its share at once, and no lease is written
    /// periodically. A KCL that renews leases takes the leases of heartbeat workers as
    /// expired, so every worker of an application must use the same setting.
    #[arg(long)]
    pub no_worker_heartbeats: bool,
    /// When to checkpoint (and always at every shard end and shutdown): after at least N
    /// records (N at least 1), at the first batch a time after the last checkpoint (500ms,
    /// 10s, 2m), or both, whichever comes first (1000,10s). 1: after every batch.
    #[arg(long, default_value = "1", value_parser = args::checkpoint_every)]
    pub checkpoint_every: args::CheckpointCadence,
    /// Shut down gracefully after this many seconds without records (at least 1), counted
    /// from the start or from the latest shard this worker started reading, whichever is
    /// later; longer than --batch-window when both are given. Default: never.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub exit_when_idle: Option<u64>,
    /// Most records per batch (1 to 10000, AWS Lambda's BatchSize limit for Kinesis): reads
    /// are cut into batches of at most N records, each written, flushed and checkpointed
    /// (per --checkpoint-every) as one. Alone: no waiting, each read is cut as it comes.
    /// Default: off (one batch per read, as read).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCH_SIZE)))]
    pub batch_size: Option<u32>,
    /// Longest a record waits for others to fill its batch (like --checkpoint-every's
    /// times: 500ms, 10s, 2m; longer than zero, at most 5m, AWS Lambda's limit): a batch is
    /// written once --batch-size records are ready or its oldest record has waited this
    /// long. Alone: batches of up to 10000 records. Default: off (no waiting).
    ///
    /// Records still waiting when the worker stops are neither printed nor checkpointed:
    /// the next run prints them. So --exit-when-idle must be longer than the window.
    #[arg(long, value_parser = args::batch_window)]
    pub batch_window: Option<Duration>,
    /// How records are printed: json (one object per line: stream, shard_id,
    /// sequence_number, sub_sequence_number, partition_key, explicit_hash_key when known,
    /// data_b64, data when UTF-8, approximate_arrival_timestamp, millis_behind_latest; what
    /// `produce --input json` reads) or raw (the payload and a newline).
    #[arg(short, long, value_enum, default_value_t = Output::Json)]
    pub output: Output,
    /// Print each record with this template instead of --output (kcat's -f): %s payload,
    /// %S payload size, %k partition key, %K key size, %h explicit hash key, %T arrival
    /// (epoch ms), %l lag (ms behind latest), %t stream, %p shard, %o sequence number, %u
    /// sub-sequence number, %% a percent sign; escapes \n \t \r \0 \\. Nothing is added: end
    /// it with \n for one record per line. Unknown values print as nothing.
    #[arg(short, long, value_name = "TEMPLATE", value_parser = crate::template::parse_format,
          conflicts_with = "output")]
    pub format: Option<crate::template::Template>,
    /// Serve Prometheus metrics (the consumer library's kinesis_consumer_* and the
    /// tool's) on this address, e.g. 127.0.0.1:9464 (port 0: any free port, said on
    /// standard error), at /metrics. Default: not served.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Read with enhanced fan-out instead of polling. Default: off (polling GetRecords).
    ///
    /// Enhanced fan-out: Kinesis pushes records (SubscribeToShard) to a registered stream
    /// consumer, about 70 ms after they are put, with 2 MiB/s per shard for each consumer
    /// apart from every other reader; AWS charges per consumer-shard hour and per GB read.
    /// The stream consumer (--consumer-name, default: the --app name) is registered when
    /// missing and waited for until ACTIVE before any shard is read. It is left registered
    /// when the worker stops, so that the next run and the other workers of the application
    /// reuse it; remove it with `kinesis-cat stream consumers deregister --stream STREAM
    /// NAME` (deleting the stream with `stream delete --force` removes it too).
    #[arg(long)]
    pub efo: bool,
    /// The stream consumer read through with --efo (only with --efo): 1 to 128 characters
    /// of a-z A-Z 0-9 _ . -. Default: the --app name.
    ///
    /// Registered when missing and left registered; several applications reading the same
    /// stream need different names (each registered consumer has its own throughput).
    #[arg(long, requires = "efo")]
    pub consumer_name: Option<String>,
    /// Records of an aggregate whose key lies outside the shard it landed in (packed with
    /// other keys and routed by the first): drop or keep.
    ///
    /// drop: left out, counted and logged at warn (the Java KCL's rule; right for the KPL
    /// and `kinesis-cat produce`, which re-send such records to their own shard after a
    /// reshard). keep: printed, marked `"outside_shard_range": true` in JSON; needed for
    /// streams written by aggregators that pack any keys together (aws-kinesis-agg for
    /// Python or Node, some Go producers), whose records are otherwise lost.
    #[arg(long, value_enum, default_value_t = OutsideRange::Drop)]
    pub outside_range: OutsideRange,
    /// Inflate payloads that their producer compressed with gzip or zlib (CloudWatch Logs
    /// subscriptions deliver gzip JSON). Default: off (payloads printed as sent).
    ///
    /// A payload with a gzip or zlib header that does not inflate is printed as sent and
    /// marked `"payload_encoding": "not_inflated"` in JSON; inflated ones are marked
    /// `"gzip"` or `"zlib"`.
    #[arg(long)]
    pub decompress: bool,
    /// Consume the streams listed in this file, read again every --stream-tracker-interval:
    /// streams are added and removed while the workers run by editing it (a multi-stream
    /// application, as with several --stream, even for one stream).
    ///
    /// One stream per line: a name, an ARN or an identifier account:name:creationEpoch,
    /// optionally followed by where its shards without a checkpoint start (the forms of
    /// --from, e.g. `orders  latest`; default --from). `#` starts a comment; blank lines
    /// are ignored. A file that cannot be read, a bad line, a stream listed twice or no
    /// stream at all stops the start with status 2, naming the file and line; later, the
    /// previous list stays in force and a warning says why. A removed stream's shard
    /// consumers stop (a last checkpoint), its leases are released, and deleted per
    /// --former-streams-delete-after. Replace the file atomically (write a new one and
    /// rename it over) so that no worker reads it half-written; give every worker of the
    /// application the same list.
    #[arg(long, value_name = "PATH", conflicts_with = "stream")]
    pub streams_file: Option<std::path::PathBuf>,
    /// How often a multi-stream application (--streams-file or several --stream) looks at
    /// its list again: the file is read again, and a listed stream deleted and created
    /// again under its name is found and read from then on (200ms, 10s, 5m; at most 24h).
    /// Default: 60s (the library's).
    #[arg(long, value_name = "DURATION", value_parser = args::interval)]
    pub stream_tracker_interval: Option<Duration>,
    /// How long a worker of a multi-stream application (--streams-file or several
    /// --stream) sees a stream with leases in the table that it no longer consumes before
    /// it deletes that stream's leases and checkpoints (30s, 10m, 1h; at most 24h), or
    /// `never`. Within it, a stream listed again resumes from its checkpoints; after it,
    /// from its initial position. Make it longer than every worker needs to see a new
    /// list. Default: 1h (the library's).
    #[arg(long, value_name = "DURATION|never", value_parser = args::former_streams_deletion)]
    pub former_streams_delete_after: Option<FormerStreamsLeasesDeletionStrategy>,
    /// How often the shards of every stream are listed to find new ones (after a
    /// reshard, and a removed stream's leases due for deletion); shard ends and stream
    /// list changes also start one (200ms, 10s, 5m; at most 24h). Default: 60s (the
    /// library's).
    #[arg(long, value_name = "DURATION", value_parser = args::interval)]
    pub shard_sync_interval: Option<Duration>,
    /// What the workers balance: count (each aims for ceil(leases / workers) leases, the
    /// Java KCL 2.x's rule) or throughput (each lease weighs the KB/s its holder measured
    /// and wrote on it, `throughputKBps` as the Java KCL 3.x: a worker holding a hot shard
    /// holds fewer others; 10 % tolerance, idle leases weigh 1 KB/s).
    ///
    /// Every worker of an application must use the same balancing (workers judging
    /// balance differently steal leases from each other back and forth). A table nobody
    /// measured yet starts by count.
    #[arg(long, value_enum, default_value_t = BalancingMode::Count)]
    pub balancing: BalancingMode,
}

/// The most records per batch, and `--batch-window`'s batch size when `--batch-size` is
/// not given: AWS Lambda's `BatchSize` limit for Kinesis event sources (also the most
/// records one `GetRecords` call returns).
pub const MAX_BATCH_SIZE: u32 = 10_000;

impl ConsumeArgs {
    /// The library's batching for `--batch-size` and `--batch-window`: none without either;
    /// `--batch-size` alone waits for nothing (`max_wait` zero: each read is cut into calls
    /// of at most N records); `--batch-window` alone allows [`MAX_BATCH_SIZE`] records.
    pub fn batching(&self) -> Option<Batching> {
        if self.batch_size.is_none() && self.batch_window.is_none() {
            return None;
        }
        Some(Batching {
            max_records: self.batch_size.unwrap_or(MAX_BATCH_SIZE) as usize,
            max_wait: self.batch_window.unwrap_or(Duration::ZERO),
        })
    }

    /// Whether the worker is of a multi-stream application: `--streams-file`, or
    /// `--stream` given more than once (one lease table for all, lease keys naming
    /// their stream).
    pub fn is_multi_stream(&self) -> bool {
        self.streams_file.is_some() || self.stream.len() > 1
    }

    /// What clap cannot check, between flags: `--exit-when-idle` must outlast
    /// `--batch-window`, or the worker would stop while the last records of every run
    /// wait for their window (the idle time counts from the last record written);
    /// `--stream-tracker-interval` and `--former-streams-delete-after` need a multi-stream
    /// application.
    ///
    /// # Errors
    /// Says which flags conflict and why.
    pub fn check(&self) -> Result<(), String> {
        // Not clap's `requires`: it is waived when the required argument conflicts with
        // one given (--streams-file with --stream).
        let multi_stream = self.is_multi_stream();
        if self.stream_tracker_interval.is_some() && !multi_stream {
            return Err(
                "--stream-tracker-interval applies to multi-stream applications only \
                 (--streams-file, or --stream given more than once)"
                    .to_owned(),
            );
        }
        if self.former_streams_delete_after.is_some() && !multi_stream {
            return Err(
                "--former-streams-delete-after applies to multi-stream applications only \
                 (--streams-file, or --stream given more than once)"
                    .to_owned(),
            );
        }
        if let (Some(idle), Some(window)) = (self.exit_when_idle, self.batch_window) {
            if Duration::from_secs(idle) <= window {
                return Err(format!(
                    "--exit-when-idle {idle} must be longer than --batch-window ({} ms): records \
                     wait up to the window before they are written, so the worker would stop \
                     with the last ones unwritten",
                    window.as_millis()
                ));
            }
        }
        Ok(())
    }

    /// The settings of the fleet and its streams that are given: `--balancing` (always:
    /// its default is the library's), `--stream-tracker-interval`,
    /// `--former-streams-delete-after` and `--shard-sync-interval` (each left to the
    /// library's default when not given).
    pub fn fleet_settings(&self, mut builder: SchedulerBuilder) -> SchedulerBuilder {
        builder = builder.with_balancing(self.balancing.into());
        if let Some(interval) = self.stream_tracker_interval {
            builder = builder.with_stream_tracker_interval(interval);
        }
        if let Some(strategy) = self.former_streams_delete_after {
            builder = builder.with_former_streams_deletion(strategy);
        }
        if let Some(interval) = self.shard_sync_interval {
            builder = builder.with_shard_sync_interval(interval);
        }
        builder
    }

    /// Where shards without a checkpoint start: `--since`, else `--from`.
    pub fn initial_position(&self) -> InitialPosition {
        self.since.unwrap_or(self.from)
    }

    /// Whether workers prove liveness by heartbeats (the library's default) rather than by
    /// renewing every lease: `--no-worker-heartbeats` turns them off.
    pub fn worker_heartbeats(&self) -> bool {
        !self.no_worker_heartbeats
    }

    /// How the worker reads its shards: fan-out through the named stream consumer with
    /// `--efo`, else polling every 200 ms (a quick echo of new records at the cost of
    /// more `GetRecords` calls than the library's 1 s default).
    pub fn retrieval(&self) -> Retrieval {
        if self.efo {
            let mut fan_out = FanOutConfig::default();
            if let Some(name) = &self.consumer_name {
                fan_out = fan_out.with_consumer_name(name);
            }
            Retrieval::FanOut(fan_out)
        } else {
            let mut polling = PollingConfig::default();
            polling.idle_time_between_reads = Duration::from_millis(200);
            Retrieval::Polling(polling)
        }
    }
}

/// Shared by the processors of one worker.
#[derive(Debug)]
struct Shared {
    /// The streams given with `--stream`: the first names the records of a single-stream
    /// worker (none with `--streams-file`).
    streams: Vec<String>,
    /// Whether the worker is a multi-stream application (several `--stream`, or
    /// `--streams-file`): raw lines then get a `STREAM: ` prefix.
    multi_stream: bool,
    /// How records are printed.
    printer: Printer,
    /// Records written.
    records: AtomicU64,
    /// Shards records were written from.
    shards: std::sync::Mutex<std::collections::HashSet<String>>,
    /// When each processor checkpoints.
    checkpoint_every: args::CheckpointCadence,
    /// Standard output.
    out: Stdout,
    /// Cancelled when standard output closes or fails: the worker then shuts down
    /// gracefully (nothing more can be printed, so nothing more is checkpointed).
    stdout_gone: CancellationToken,
    /// The write error that ended output, other than the reader going away (which ends
    /// the command successfully).
    stdout_error: std::sync::Mutex<Option<std::io::Error>>,
    /// Milliseconds since start at the last record, for `--exit-when-idle`.
    last_record_ms: AtomicU64,
    /// Start of the process, the base of `last_record_ms`.
    started: std::time::Instant,
    /// With `--efo`, said once when the first shard starts (the stream consumer then
    /// exists): how to remove the consumer the worker leaves registered.
    efo_hint: std::sync::Mutex<Option<String>>,
}

impl Shared {
    /// Records written, shards they came from, time since start and rate, e.g.
    /// `1200 records from 4 shards in 3.0 s (400 records/s)`.
    fn summary(&self) -> String {
        let records = self.records.load(Ordering::Relaxed);
        let shards = self
            .shards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        let secs = self.started.elapsed().as_secs_f64();
        format!(
            "{records} record{} from {shards} shard{} in {secs:.1} s ({:.0} records/s)",
            if records == 1 { "" } else { "s" },
            if shards == 1 { "" } else { "s" },
            records as f64 / secs.max(1e-3)
        )
    }

    /// Whether what was written has reached the reader; says why not, once.
    fn flushed(&self, result: Result<(), WriteError>) -> bool {
        let error = match result {
            Ok(()) => return true,
            Err(WriteError::Closed) => None,
            Err(WriteError::Failed(e)) => Some(e),
        };
        if !self.stdout_gone.is_cancelled() {
            match &error {
                None => tracing::info!("standard output closed; shutting down"),
                Some(e) => crate::say!(
                    "kinesis-cat: cannot write to standard output ({e}); shutting down without checkpointing what was not written"
                ),
            }
            if let Some(e) = error {
                *self.stdout_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
            self.stdout_gone.cancel();
        }
        false
    }
}

/// Prints records and checkpoints at the `--checkpoint-every` cadence.
#[derive(Debug)]
struct PrintingProcessor {
    /// Output and settings.
    shared: Arc<Shared>,
    /// The stream of the shard.
    stream: String,
    /// The shard: its lease key (with its stream in a multi-stream application), as the
    /// library names it in checkpoints.
    shard_id: String,
    /// When the next checkpoint is due.
    cadence: kinesis_consumer::CheckpointEvery,
}

impl PrintingProcessor {
    async fn checkpoint(&mut self, cp: &Checkpointer) {
        if !self.shared.flushed(self.shared.out.flush()) {
            return;
        }
        match cp.checkpoint().await {
            Ok(()) => self.cadence.checkpointed(),
            Err(e) => crate::say!("kinesis-cat: checkpoint of {} failed: {e}", self.shard_id),
        }
    }
}

#[async_trait]
impl RecordProcessor for PrintingProcessor {
    async fn initialize(&mut self, input: InitializationInput) {
        tracing::info!(shard = %input.shard_id, checkpoint = %input.checkpoint, "shard starts");
        let hint = self
            .shared
            .efo_hint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(hint) = hint {
            crate::say!("{hint}");
        }
        // `--exit-when-idle` counts from here too: the start-up (and, with `--efo`, the
        // registration of the stream consumer) is not time without records.
        self.shared.last_record_ms.store(
            self.shared.started.elapsed().as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    async fn process_records(&mut self, input: ProcessRecordsInput) {
        let lines: Vec<Vec<u8>> = input
            .records
            .iter()
            .map(|r| {
                let shard = self
                    .shard_id
                    .rsplit_once(':')
                    .map_or(self.shard_id.as_str(), |(_, shard)| shard);
                let line = render(
                    &self.stream,
                    shard,
                    r,
                    input.millis_behind_latest,
                    &self.shared.printer,
                );
                if self.shared.multi_stream && matches!(self.shared.printer, Printer::Raw) {
                    [format!("{}: ", self.stream).into_bytes(), line].concat()
                } else {
                    line
                }
            })
            .collect();
        if !self
            .shared
            .flushed(self.shared.out.write_flush(lines.iter().map(Vec::as_slice)))
        {
            return;
        }
        tracing::debug!(shard = %self.shard_id, records = lines.len(), "batch written");
        if !lines.is_empty() {
            self.shared
                .records
                .fetch_add(lines.len() as u64, Ordering::Relaxed);
            let mut shards = self
                .shared
                .shards
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !shards.contains(&self.shard_id) {
                shards.insert(self.shard_id.clone());
            }
        }
        self.shared.last_record_ms.store(
            self.shared.started.elapsed().as_millis() as u64,
            Ordering::Relaxed,
        );
        if self.cadence.note(input.records.len()) {
            self.checkpoint(&input.checkpointer).await;
        }
    }

    async fn lease_lost(&mut self, _: LeaseLostInput) {
        tracing::warn!(shard = %self.shard_id, "lost the lease");
    }

    async fn shard_ended(&mut self, input: ShardEndedInput) {
        self.checkpoint(&input.checkpointer).await;
    }

    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        self.checkpoint(&input.checkpointer).await;
    }
}

/// Rewrites the progress line on standard error every second (only on a terminal).
async fn progress(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        crate::say_inline!("\r\x1b[K{}", shared.summary());
    }
}

/// Runs a worker until SIGINT/SIGTERM, `--exit-when-idle` or standard output closing,
/// then shuts down gracefully (a second signal exits at once with status 130).
///
/// # Cancellation
/// Dropping the future stops the worker abruptly (its leases expire to other workers).
///
/// # Errors
/// [`Error::StreamsFile`] for a `--streams-file` that cannot be read or has a bad line
/// (before anything else); [`Error::Config`] for an unusable AWS configuration; [`Error::Consumer`] for a setting
/// the library refuses (status 2, e.g. an invalid `--consumer-name`), when the stream does
/// not exist, the lease table cannot be created or read, or the stream consumer cannot be
/// registered.
pub async fn run(args: ConsumeArgs, aws: &crate::aws::AwsOptions) -> Result<(), Error> {
    // The streams file first: a bad one stops the start before anything else is done.
    let file = match &args.streams_file {
        Some(path) => Some(StreamsFile::open(path).await?),
        None => None,
    };
    let config = crate::aws::load(aws).await?;
    if let Some(addr) = args.metrics_addr {
        crate::metrics_server::serve(addr).await?;
    }
    let shared = Arc::new(Shared {
        streams: args.stream.clone(),
        multi_stream: args.is_multi_stream(),
        printer: Printer::new(args.output, args.format.as_ref()),
        records: AtomicU64::new(0),
        shards: std::sync::Mutex::default(),
        checkpoint_every: args.checkpoint_every,
        out: Stdout::default(),
        stdout_gone: CancellationToken::new(),
        stdout_error: std::sync::Mutex::new(None),
        last_record_ms: AtomicU64::new(0),
        started: std::time::Instant::now(),
        efo_hint: std::sync::Mutex::new(args.efo.then(|| {
            let consumer = args.consumer_name.as_deref().unwrap_or(&args.app);
            // With --streams-file the streams come and go: name the command's shape.
            let streams = if args.stream.is_empty() {
                "STREAM".to_string()
            } else {
                args.stream.join(" --stream ")
            };
            format!(
                "kinesis-cat: stream consumer {consumer} is registered and stays registered when \
                 the worker stops; `kinesis-cat stream consumers deregister --stream {streams} \
                 {consumer}` removes it"
            )
        })),
    });
    let factory = {
        let shared = shared.clone();
        move |shard: &str| {
            // A multi-stream lease key names its stream; a single stream's is the shard id.
            let stream = StreamIdentifier::split_lease_key(shard).map_or_else(
                || shared.streams.first().cloned().unwrap_or_default(),
                |(id, _)| id.stream_name().to_owned(),
            );
            Box::new(PrintingProcessor {
                shared: shared.clone(),
                stream,
                shard_id: shard.to_owned(),
                cadence: shared.checkpoint_every.start(),
            }) as Box<dyn RecordProcessor>
        }
    };
    let mut listed = None;
    let builder = match (file, &args.stream[..]) {
        (Some((tracker, first)), _) => {
            listed = Some(
                first
                    .iter()
                    .map(|c| c.stream.to_string())
                    .collect::<Vec<_>>(),
            );
            Scheduler::multi_stream_builder(&args.app, tracker, factory)
        }
        (None, [one]) => Scheduler::builder(&args.app, one, factory),
        (None, several) => {
            let streams = several
                .iter()
                .map(|s| StreamConfig::new(s))
                .collect::<Result<Vec<_>, _>>()
                .and_then(StaticStreamTracker::new)
                .map_err(kinesis_consumer::Error::from)?;
            Scheduler::multi_stream_builder(&args.app, streams, factory)
        }
    };
    let mut builder = builder
        .with_sdk_config(&config)
        .with_initial_position(args.initial_position())
        .with_failover_time(Duration::from_millis(args.failover_ms))
        .with_worker_heartbeats(args.worker_heartbeats());
    if let Some(batching) = args.batching() {
        builder = builder.with_batching(batching);
    }
    builder = args.fleet_settings(builder);
    if let Some(ms) = args.taker_interval_ms {
        builder = builder.with_taker_interval(Duration::from_millis(ms));
    }
    if let Some(id) = &args.worker_id {
        builder = builder.with_worker_id(id);
    }
    let scheduler = builder
        .with_retrieval(args.retrieval())
        .with_outside_range_policy(args.outside_range.into())
        .with_payload_decompression(if args.decompress {
            PayloadDecompression::GzipAndZlib
        } else {
            PayloadDecompression::Off
        })
        .build()?;
    let stop = crate::signals::install("handing the leases over")?;
    if args.efo {
        let consumer = args.consumer_name.as_deref().unwrap_or(&args.app);
        crate::say!(
            "kinesis-cat: worker {} starting on stream {} with enhanced fan-out through stream consumer {consumer} (registered if missing)",
            scheduler.worker_id(),
            args.stream.join(", "),
        );
    } else if let (Some(path), Some(listed)) = (&args.streams_file, &listed) {
        crate::say!(
            "kinesis-cat: worker {} starting on the streams {} lists (read again at every stream tracker poll): {}",
            scheduler.worker_id(),
            path.display(),
            listed.join(", ")
        );
    } else {
        crate::say!(
            "kinesis-cat: worker {} starting on stream{} {}",
            scheduler.worker_id(),
            if args.stream.len() > 1 { "s" } else { "" },
            args.stream.join(", ")
        );
    }

    let worker = scheduler.clone();
    let mut run = tokio::spawn(async move { worker.run().await });
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(progress(shared.clone())));
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
        _ = stop.cancelled() => None,
        _ = shared.stdout_gone.cancelled() => None,
        _ = shared.out.reader_gone() => {
            tracing::info!("standard output closed; shutting down");
            None
        }
        _ = watcher => None,
    };
    let result = match finished {
        Some(r) => r,
        None => {
            if !stop.is_cancelled() {
                crate::say!("kinesis-cat: shutting down gracefully");
            }
            scheduler.graceful_shutdown().await;
            run.await
        }
    };
    let _ = shared.out.flush();
    if let Some(task) = progress {
        task.abort();
        // The progress line is replaced by the summary.
        crate::say_inline!("\r\x1b[K");
    }
    crate::say!("kinesis-cat: {}", shared.summary());
    if let Some(e) = shared
        .stdout_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        return Err(Error::Output(e));
    }
    match result {
        Ok(r) => r.map_err(Error::from),
        Err(e) => Err(Error::Internal(format!("the worker task failed: {e}"))),
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
        let w = Wrapper::parse_from(["x", "--stream", "s", "--app", "app"]);
        assert_eq!(w.args.from, InitialPosition::TrimHorizon);
        assert_eq!(w.args.failover_ms, 10_000);
        assert_eq!(w.args.taker_interval_ms, None);
        assert!(w.args.worker_heartbeats(), "heartbeats by default");
        assert_eq!(
            w.args.checkpoint_every,
            crate::args::CheckpointCadence {
                records: Some(1),
                interval: None
            }
        );
        assert_eq!(w.args.exit_when_idle, None);
        assert_eq!((w.args.batch_size, w.args.batch_window), (None, None));
        assert_eq!(w.args.batching(), None, "one batch per read by default");
        assert_eq!(w.args.check(), Ok(()));
        assert_eq!(w.args.output, Output::Json);
        assert_eq!(w.args.worker_id, None);
        assert!(!w.args.efo);
        assert_eq!(w.args.consumer_name, None);
        let Retrieval::Polling(polling) = w.args.retrieval() else {
            panic!("polling by default")
        };
        assert_eq!(polling.idle_time_between_reads, Duration::from_millis(200));
        assert_eq!(w.args.balancing, BalancingMode::Count);
        assert_eq!(Balancing::from(w.args.balancing), Balancing::default());
        assert_eq!(w.args.streams_file, None);
        assert_eq!(w.args.stream_tracker_interval, None);
        assert_eq!(w.args.former_streams_delete_after, None);
        assert_eq!(w.args.shard_sync_interval, None);
    }

    #[test]
    fn the_taker_interval_is_refused_by_its_flag_outside_a_millisecond_to_a_day() {
        assert_eq!(
            parse(&["--taker-interval-ms", "86400000"])
                .unwrap()
                .taker_interval_ms,
            Some(86_400_000)
        );
        for bad in ["0", "86400001", "18446744073709551615"] {
            let e = parse(&["--taker-interval-ms", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains("--taker-interval-ms"), "{bad}: {e}");
        }
    }

    #[test]
    fn balancing_maps_to_the_library() {
        assert_eq!(
            Balancing::from(parse(&["--balancing", "count"]).unwrap().balancing),
            Balancing::LeaseCount
        );
        assert_eq!(
            Balancing::from(parse(&["--balancing", "throughput"]).unwrap().balancing),
            Balancing::throughput()
        );
        let e = parse(&["--balancing", "weight"]).expect_err("unknown mode");
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{e}");
    }

    #[test]
    fn a_streams_file_replaces_the_streams_and_brings_its_settings() {
        let file = |extra: &[&str]| {
            let mut argv = vec!["x", "--app", "app", "--streams-file", "/etc/streams"];
            argv.extend_from_slice(extra);
            Wrapper::try_parse_from(argv).map(|w| w.args)
        };
        let a = file(&[
            "--stream-tracker-interval",
            "200ms",
            "--former-streams-delete-after",
            "2s",
            "--shard-sync-interval",
            "500ms",
        ])
        .unwrap();
        assert_eq!(
            a.streams_file.as_deref(),
            Some(std::path::Path::new("/etc/streams"))
        );
        assert!(a.stream.is_empty());
        assert_eq!(a.stream_tracker_interval, Some(Duration::from_millis(200)));
        assert_eq!(
            a.former_streams_delete_after,
            Some(FormerStreamsLeasesDeletionStrategy::DeleteAfter(
                Duration::from_secs(2)
            ))
        );
        assert_eq!(a.shard_sync_interval, Some(Duration::from_millis(500)));
        assert_eq!(a.check(), Ok(()));
        assert_eq!(
            file(&["--former-streams-delete-after", "never"])
                .unwrap()
                .former_streams_delete_after,
            Some(FormerStreamsLeasesDeletionStrategy::NoDeletion)
        );

        let e = file(&["--stream", "s"]).expect_err("not both");
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict, "{e}");
        let e = Wrapper::try_parse_from(["x", "--app", "app"]).expect_err("a stream is needed");
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(
            e.to_string().contains("--stream"),
            "names what is missing: {e}"
        );
        let e = parse(&["--stream-tracker-interval", "1s"])
            .unwrap()
            .check()
            .expect_err("one --stream");
        assert!(
            e.contains("--stream-tracker-interval") && e.contains("--streams-file"),
            "{e}"
        );
        // Several --stream: the list is looked at again (a re-created stream is found).
        let two = Wrapper::try_parse_from([
            "x",
            "--app",
            "app",
            "--stream",
            "a",
            "--stream",
            "b",
            "--stream-tracker-interval",
            "2s",
        ])
        .unwrap()
        .args;
        two.check().expect("several --stream");
        assert_eq!(two.stream_tracker_interval, Some(Duration::from_secs(2)));
        let e = file(&["--stream-tracker-interval", "0s"]).expect_err("zero");
        assert!(e.to_string().contains("--stream-tracker-interval"), "{e}");

        // Former streams: multi-stream applications only.
        let one = parse(&["--former-streams-delete-after", "10m"]).unwrap();
        let e = one.check().expect_err("one --stream");
        assert!(e.contains("--former-streams-delete-after"), "{e}");
        let two = parse(&["--stream", "t", "--former-streams-delete-after", "10m"]).unwrap();
        assert_eq!(two.check(), Ok(()));
        // The shard sync interval applies to any worker.
        assert_eq!(
            parse(&["--shard-sync-interval", "5m"])
                .unwrap()
                .shard_sync_interval,
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn efo_reads_through_the_named_consumer_or_the_application() {
        let w = Wrapper::parse_from(["x", "--stream", "s", "--app", "app", "--efo"]);
        assert_eq!(
            w.args.retrieval(),
            Retrieval::FanOut(FanOutConfig::default()),
            "the library names the consumer after the application"
        );
        let w = Wrapper::parse_from([
            "x",
            "--stream",
            "s",
            "--app",
            "app",
            "--efo",
            "--consumer-name",
            "billing",
        ]);
        assert_eq!(
            w.args.retrieval(),
            Retrieval::FanOut(FanOutConfig::default().with_consumer_name("billing"))
        );
        let e = Wrapper::try_parse_from([
            "x",
            "--stream",
            "s",
            "--app",
            "app",
            "--consumer-name",
            "billing",
        ])
        .expect_err("--consumer-name needs --efo");
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--efo"), "{e}");
    }

    fn parse(extra: &[&str]) -> Result<ConsumeArgs, clap::Error> {
        let mut argv = vec!["x", "--stream", "s", "--app", "app"];
        argv.extend_from_slice(extra);
        Wrapper::try_parse_from(argv).map(|w| w.args)
    }

    #[test]
    fn no_worker_heartbeats_is_a_switch() {
        assert!(!parse(&["--no-worker-heartbeats"])
            .unwrap()
            .worker_heartbeats());
        let e = parse(&["--no-worker-heartbeats=true"]).expect_err("takes no value");
        assert_eq!(e.kind(), clap::error::ErrorKind::TooManyValues, "{e}");
    }

    #[test]
    fn batching_flags_map_to_the_library_with_pinned_defaults() {
        let b = |n: usize, ms: u64| {
            Some(Batching {
                max_records: n,
                max_wait: Duration::from_millis(ms),
            })
        };
        let both = parse(&["--batch-size", "100", "--batch-window", "500ms"]).unwrap();
        assert_eq!(both.batching(), b(100, 500));
        // --batch-size alone: no waiting, reads cut into calls of at most N.
        let size = parse(&["--batch-size", "3"]).unwrap();
        assert_eq!(size.batching(), b(3, 0));
        // --batch-window alone: up to MAX_BATCH_SIZE records.
        let window = parse(&["--batch-window", "2m"]).unwrap();
        assert_eq!(window.batching(), b(10_000, 120_000));
        assert_eq!(MAX_BATCH_SIZE, 10_000);
        assert_eq!(
            parse(&["--batch-size", "10000"]).unwrap().batching(),
            b(10_000, 0)
        );
        assert_eq!(
            parse(&["--batch-window", "5m"]).unwrap().batching(),
            b(10_000, 300_000)
        );
    }

    #[test]
    fn bad_batching_flags_are_refused_naming_the_flag() {
        for (flag, value) in [
            ("--batch-size", "0"),
            ("--batch-size", "10001"),
            ("--batch-size", "-1"),
            ("--batch-size", "many"),
            ("--batch-window", "0s"),
            ("--batch-window", "6m"),
            ("--batch-window", "10"),
            ("--batch-window", "1h"),
        ] {
            let e = parse(&[&format!("{flag}={value}")]).expect_err(value);
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{flag} {value}"
            );
            assert!(e.to_string().contains(flag), "{e}");
        }
        // --exit-when-idle must outlast the window.
        for (idle, window) in [("2", "2s"), ("1", "5s"), ("60", "2m")] {
            let a = parse(&["--exit-when-idle", idle, "--batch-window", window]).unwrap();
            let e = a.check().expect_err(window);
            assert!(
                e.contains("--exit-when-idle") && e.contains("--batch-window"),
                "{e}"
            );
        }
        for (idle, window) in [("3", "2s"), ("1", "999ms")] {
            let a = parse(&["--exit-when-idle", idle, "--batch-window", window]).unwrap();
            assert_eq!(a.check(), Ok(()));
        }
        let size_only = parse(&["--exit-when-idle", "1", "--batch-size", "5"]).unwrap();
        assert_eq!(size_only.check(), Ok(()), "no window, no wait");
    }
}
