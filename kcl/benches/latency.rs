//! Put→process latency of our consumer beside the peer kcl-rs 0.1.4 (LocalStack's Rust port
//! of the Java KCL v3, driven from Python), on one embedded stack, one mode after another.
//!
//! ```text
//!  bench process                                      consumer process (one per mode, in turn)
//!  ┌─────────────────────────────────────────┐        ┌──────────────────────────────────────┐
//!  │ LocalStack: ferrokinesis + dynoxide     │◀─HTTP──┤ ours:   this binary, LATENCY_BENCH_  │
//!  │      ▲ PutRecords, 10 × 100 B / 20 ms   │        │         CHILD=<mode>: Scheduler      │
//!  │ producer task (data "<send ns> <seq> …")│        │ kcl-rs: <venv>/bin/python            │
//!  │                                         │        │         peers/kcl_rs_latency.py      │
//!  │ reader task ◀── stdout lines ───────────┼────────┤ process_records: "B <now ns>         │
//!  │   "B <process ns> <seq>:<send ns> …"    │        │   <seq>:<send ns> …", checkpoint     │
//!  │ /proc/<pid>/stat at window start, end ──┼───────▶│                                      │
//!  └─────────────────────────────────────────┘        └──────────────────────────────────────┘
//!
//!  per mode, on a fresh 4-shard stream with its own application (lease table) name:
//!  producer starts ─1 s─ consumer spawned (TRIM_HORIZON) ─ … ─ first record processed
//!    ─ warm-up (10 s) ─ window start: CPU sample ─ window (60 s) ─ window end: CPU sample
//!    ─ drain (until every record sent in the window was seen, ≤ 30 s)
//!    ─ SIGTERM (15 s grace, then SIGKILL) ─ producer stops ─ stream deleted
//! ```
//!
//! Measured per mode:
//! - *time to first record*: from spawning the consumer process (so process start, imports
//!   and runtime set-up count, for both) to the start of its first `process_records` call
//!   that holds records;
//! - *latency*: the time on entering `process_records` minus the send time the producer
//!   wrote into the record just before its `PutRecords` call, over the records sent in the
//!   window (first delivery of each); p50, p99 (nearest rank) and max;
//! - *records*: records of the window processed, of those sent (and repeat deliveries);
//! - *CPU µs/record*: user + system CPU of the consumer process (`/proc/<pid>/stat`) over
//!   the window, divided by the records it processed in the window. Both consumers are
//!   separate processes doing the same work per record (parse the send time, write one
//!   stdout line per batch, checkpoint every batch); the emulators and the producer run in
//!   the bench process and are not counted.
//!
//! Run: `cargo bench -p kinesis-consumer --bench latency` (release build, about 8 minutes).
//! Environment: `LATENCY_BENCH_SECS` (window, default 60), `LATENCY_BENCH_WARMUP_SECS`
//! (default 10), `LATENCY_BENCH_ONLY` (comma-separated mode names, e.g. `ours-polling`).
//! kcl-rs is installed once into `<target>/peers/kcl-rs-venv` (pinned, stamped); when that
//! fails (no PyPI) its modes are reported as skipped. The table is printed and saved to
//! `<target>/bench-latency/summary.md`; each consumer's stderr goes to
//! `<target>/bench-latency/<mode>.log` and every record it reported to
//! `<target>/bench-latency/<mode>.samples.csv`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use integration_tests::bench_host::{cpu_model, cpu_of, load_average, utc_minute};
use integration_tests::peers::{PeerError, KCL_RS};
use kinesis_consumer::{
    InitialPosition, InitializationInput, LeaseLostInput, PollingConfig, ProcessRecordsInput,
    RecordProcessor, Scheduler, SchedulerBuilder, ShardEndedInput, ShutdownRequestedInput,
};
use kinesis_emulators::LocalStack;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng as _, SeedableRng as _};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Shards of each mode's stream.
const SHARDS: i32 = 4;
/// Records per `PutRecords` call.
const RECORDS_PER_PUT: usize = 10;
/// Time between two `PutRecords` calls: 10 records every 20 ms is 500 records/s.
const PUT_INTERVAL: Duration = Duration::from_millis(20);
/// Size of each record's data: send time, sequence number, padding.
const RECORD_BYTES: usize = 100;
/// How long the producer runs before the consumer is started.
const PRODUCER_LEAD: Duration = Duration::from_secs(1);
/// How long a consumer may take to its first record before the mode is given up.
const FIRST_RECORD_TIMEOUT: Duration = Duration::from_secs(180);
/// How long after the window the records sent in it may take to be processed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a consumer gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Default measurement window (`LATENCY_BENCH_SECS`).
const DEFAULT_WINDOW_SECS: u64 = 60;
/// Default warm-up after the first record (`LATENCY_BENCH_WARMUP_SECS`).
const DEFAULT_WARMUP_SECS: u64 = 10;

/// Set (to a mode name) in a consumer child of this binary.
const CHILD_VAR: &str = "LATENCY_BENCH_CHILD";
/// The stream a consumer child reads.
const STREAM_VAR: &str = "LATENCY_BENCH_STREAM";
/// The application (and lease table) name of a consumer child.
const APP_VAR: &str = "LATENCY_BENCH_APP";

// ---------------------------------------------------------------------------------------
// Modes
// ---------------------------------------------------------------------------------------

/// One consumer set-up measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Our `Scheduler`, polling at `PollingConfig::default()`.
    OursPolling,
    /// Our `Scheduler` with enhanced fan-out: skipped until wired in [`configure_ours`].
    OursFanOut,
    /// kcl-rs, `retrieval_mode="POLLING"`, its defaults otherwise.
    KclRsPolling,
    /// kcl-rs, `retrieval_mode="FANOUT"`.
    KclRsFanOut,
}

/// Every mode, in the order they run.
const MODES: [Mode; 4] = [
    Mode::OursPolling,
    Mode::OursFanOut,
    Mode::KclRsPolling,
    Mode::KclRsFanOut,
];

impl Mode {
    /// Short name: `LATENCY_BENCH_ONLY`, the child variable, log file names.
    fn name(self) -> &'static str {
        match self {
            Mode::OursPolling => "ours-polling",
            Mode::OursFanOut => "ours-fanout",
            Mode::KclRsPolling => "kcl-rs-polling",
            Mode::KclRsFanOut => "kcl-rs-fanout",
        }
    }

    /// The table's row label.
    fn label(self) -> &'static str {
        match self {
            Mode::OursPolling => "ours, polling (`PollingConfig::default()`)",
            Mode::OursFanOut => "ours, enhanced fan-out (`FanOutConfig::default()`)",
            Mode::KclRsPolling => "kcl-rs 0.1.4, `POLLING` (its defaults)",
            Mode::KclRsFanOut => "kcl-rs 0.1.4, `FANOUT`",
        }
    }

    /// The mode of this short name.
    fn from_name(name: &str) -> Option<Mode> {
        MODES.into_iter().find(|m| m.name() == name)
    }

    /// kcl-rs's `retrieval_mode` for its modes; `None` for ours.
    fn kcl_rs_retrieval(self) -> Option<&'static str> {
        match self {
            Mode::OursPolling | Mode::OursFanOut => None,
            Mode::KclRsPolling => Some("POLLING"),
            Mode::KclRsFanOut => Some("FANOUT"),
        }
    }
}

/// Sets how our consumer retrieves records in `mode`; `Err` says why the mode cannot run.
/// The parent asks it (on a throw-away builder) before spawning, so a mode wired here runs
/// with nothing else to change.
fn configure_ours(mode: Mode, builder: SchedulerBuilder) -> Result<SchedulerBuilder, String> {
    match mode {
        Mode::OursPolling => Ok(builder.with_polling(PollingConfig::default())),
        Mode::OursFanOut => Ok(builder.with_retrieval(kinesis_consumer::Retrieval::FanOut(
            kinesis_consumer::FanOutConfig::default(),
        ))),
        Mode::KclRsPolling | Mode::KclRsFanOut => Err(format!("{} is a kcl-rs mode", mode.name())),
    }
}

/// Run settings, from the environment.
#[derive(Debug, Clone)]
struct Settings {
    /// Length of the measurement window.
    window: Duration,
    /// Time from the first record processed to the window's start.
    warmup: Duration,
    /// The modes to run, in order.
    modes: Vec<Mode>,
}

impl Settings {
    /// Reads `LATENCY_BENCH_SECS`, `LATENCY_BENCH_WARMUP_SECS` and `LATENCY_BENCH_ONLY`.
    fn from_env() -> Result<Settings, String> {
        let secs = |var: &str, default: u64| -> Result<Duration, String> {
            match std::env::var(var) {
                Ok(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&s| s > 0)
                    .map(Duration::from_secs)
                    .ok_or_else(|| format!("{var}={v:?}: expected a positive number of seconds")),
                Err(_) => Ok(Duration::from_secs(default)),
            }
        };
        let modes = match std::env::var("LATENCY_BENCH_ONLY") {
            Ok(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    Mode::from_name(s).ok_or_else(|| {
                        let known: Vec<_> = MODES.iter().map(|m| m.name()).collect();
                        format!("LATENCY_BENCH_ONLY: unknown mode {s:?} (known: {known:?})")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Err(_) => MODES.to_vec(),
        };
        Ok(Settings {
            window: secs("LATENCY_BENCH_SECS", DEFAULT_WINDOW_SECS)?,
            warmup: secs("LATENCY_BENCH_WARMUP_SECS", DEFAULT_WARMUP_SECS)?,
            modes,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------

fn main() -> ExitCode {
    if let Ok(mode) = std::env::var(CHILD_VAR) {
        return ours_child(&mode);
    }
    integration_tests::bench_host::bench_main(
        "kinesis-consumer",
        "latency",
        Settings::from_env,
        run_all,
    )
}

// ---------------------------------------------------------------------------------------
// Our consumer, as a child process of this binary
// ---------------------------------------------------------------------------------------

/// Reports each batch on stdout (the bench reads it) and checkpoints it.
#[derive(Debug)]
struct LatencyProcessor;

#[async_trait]
impl RecordProcessor for LatencyProcessor {
    async fn initialize(&mut self, _: InitializationInput) {}

    async fn process_records(&mut self, input: ProcessRecordsInput) {
        let now = unix_nanos();
        if !input.records.is_empty() {
            let mut line = format!("B {now}");
            for record in &input.records {
                match parse_record(&record.data) {
                    Some((send_ns, seq)) => {
                        let _ = write!(line, " {seq}:{send_ns}");
                    }
                    None => eprintln!("record without a send time: {:?}", record.data),
                }
            }
            line.push('\n');
            let mut out = std::io::stdout().lock();
            // If the bench is gone, nobody reads this and stdin's end stops the worker.
            let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
        }
        if let Err(e) = input.checkpointer.checkpoint().await {
            eprintln!("checkpoint failed: {e}");
        }
    }

    async fn lease_lost(&mut self, _: LeaseLostInput) {}

    async fn shard_ended(&mut self, input: ShardEndedInput) {
        if let Err(e) = input.checkpointer.checkpoint().await {
            eprintln!("checkpoint at shard end failed: {e}");
        }
    }

    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        if let Err(e) = input.checkpointer.checkpoint().await {
            eprintln!("checkpoint at shutdown failed: {e}");
        }
    }
}

/// The send time and sequence number a record's data starts with (`"<ns> <seq> "`).
fn parse_record(data: &[u8]) -> Option<(i64, u64)> {
    let text = std::str::from_utf8(data.get(..data.len().min(48))?).ok()?;
    let mut fields = text.split(' ');
    let send_ns = fields.next()?.parse().ok()?;
    let seq = fields.next()?.parse().ok()?;
    Some((send_ns, seq))
}

/// A consumer child: runs our worker in `mode_name` until SIGTERM or the end of stdin.
fn ours_child(mode_name: &str) -> ExitCode {
    let Some(mode) = Mode::from_name(mode_name) else {
        eprintln!("{CHILD_VAR}={mode_name:?}: not a mode");
        return ExitCode::FAILURE;
    };
    let (Ok(stream), Ok(app)) = (std::env::var(STREAM_VAR), std::env::var(APP_VAR)) else {
        eprintln!("{STREAM_VAR} and {APP_VAR} must be set");
        return ExitCode::FAILURE;
    };
    // The library's batch-wait histogram, reported when the worker stops.
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    if recorder.install().is_err() {
        eprintln!("a metrics recorder was already installed");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the consumer");
    let exit = runtime.block_on(async move {
        // Endpoints, region and credentials from the environment, as kcl-rs gets them.
        let sdk = aws_config::load_from_env().await;
        let builder = Scheduler::builder(&app, &stream, |_: &str| {
            Box::new(LatencyProcessor) as Box<dyn RecordProcessor>
        })
        .with_sdk_config(&sdk)
        .with_worker_id(format!("latency-bench-{}", std::process::id()))
        .with_initial_position(InitialPosition::TrimHorizon);
        let scheduler = match configure_ours(mode, builder).map(SchedulerBuilder::build) {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                eprintln!("building the scheduler: {e}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("{}: {e}", mode.name());
                return ExitCode::FAILURE;
            }
        };
        let stdin_closed = CancellationToken::new();
        let closed = stdin_closed.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            closed.cancel();
        });
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        let worker = scheduler.clone();
        let mut run = tokio::spawn(async move { worker.run().await });
        tokio::select! {
            _ = term.recv() => {}
            () = stdin_closed.cancelled() => {}
            ended = &mut run => {
                eprintln!("the worker stopped by itself: {ended:?}");
                return ExitCode::FAILURE;
            }
        }
        scheduler.graceful_shutdown().await;
        match run.await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            other => {
                eprintln!("the worker ended with {other:?}");
                ExitCode::FAILURE
            }
        }
    });
    let waits: Vec<f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == kinesis_consumer::metric_names::BATCH_WAIT)
        .flat_map(|(.., v)| match v {
            metrics_util::debugging::DebugValue::Histogram(values) => {
                values.into_iter().map(|v| v.into_inner()).collect()
            }
            _ => Vec::new(),
        })
        .collect();
    if let Some(h) = HandOff::of(waits) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "W {} {} {} {}",
            h.batches, h.p50_us, h.p99_us, h.max_us
        )
        .and_then(|()| out.flush());
    }
    exit
}

// ---------------------------------------------------------------------------------------
// The producer
// ---------------------------------------------------------------------------------------

/// One record the stream accepted.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// Its sequence number in this mode's run (written into its data).
    seq: u64,
    /// Nanoseconds since the Unix epoch just before its `PutRecords` call.
    send_ns: i64,
}

/// What the producer did; shared with the mode's driver while it runs.
#[derive(Debug, Default)]
struct ProducerLog {
    /// Every record accepted, in send order.
    sent: Vec<Sent>,
    /// Records `PutRecords` refused (per-record errors).
    failed_records: u64,
    /// `PutRecords` calls that failed as a whole.
    failed_calls: u64,
    /// The most a call started after its slot on the schedule.
    max_lag: Duration,
}

/// Puts `RECORDS_PER_PUT` records every `PUT_INTERVAL` on an absolute schedule (a late
/// call is followed by catch-up calls, so the rate does not drift) until `stop`.
async fn produce(
    kinesis: aws_sdk_kinesis::Client,
    stream: String,
    log: Arc<Mutex<ProducerLog>>,
    stop: CancellationToken,
) {
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut schedule = tokio::time::interval(PUT_INTERVAL);
    schedule.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq = 0u64;
    loop {
        let slot = tokio::select! {
            () = stop.cancelled() => return,
            slot = schedule.tick() => slot,
        };
        let lag = slot.elapsed();
        let send_ns = unix_nanos();
        let first_seq = seq;
        let entries = (0..RECORDS_PER_PUT)
            .map(|_| {
                let mut data = format!("{send_ns} {seq} ").into_bytes();
                data.resize(RECORD_BYTES, b'.');
                seq += 1;
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("{:016x}", rng.random::<u64>()))
                    .data(Blob::new(data))
                    .build()
                    .expect("partition key and data are set")
            })
            .collect::<Vec<_>>();
        let result = kinesis
            .put_records()
            .stream_name(&stream)
            .set_records(Some(entries))
            .send()
            .await;
        let mut log = lock(&log);
        log.max_lag = log.max_lag.max(lag);
        match result {
            Ok(out) => {
                for (i, entry) in out.records().iter().enumerate() {
                    if entry.error_code().is_some() {
                        log.failed_records += 1;
                    } else {
                        log.sent.push(Sent {
                            seq: first_seq + i as u64,
                            send_ns,
                        });
                    }
                }
            }
            Err(e) => {
                if log.failed_calls == 0 {
                    eprintln!("PutRecords failed: {e}");
                }
                log.failed_calls += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running a mode
// ---------------------------------------------------------------------------------------

/// One record as a consumer reported it.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// The record's sequence number in this run.
    seq: u64,
    /// When it was sent (ns since the Unix epoch, from its data).
    send_ns: i64,
    /// When `process_records` was entered with it (ns since the Unix epoch).
    process_ns: i64,
}

/// The figures of one mode.
#[derive(Debug)]
struct Measured {
    /// Consumer spawned → first `process_records` with records.
    first_record: Duration,
    /// Latencies (ns) of the window's records, first delivery of each, sorted.
    latencies_ns: Vec<i64>,
    /// Records sent in the window.
    sent_in_window: usize,
    /// Deliveries of the window's records beyond the first.
    repeats: usize,
    /// Consumer CPU over the window per record processed in the window, µs.
    cpu_us_per_record: f64,
    /// Records processed (any send time) during the window, the CPU's denominator.
    processed_in_window: usize,
    /// `process_records` calls with records during the window.
    batches_in_window: usize,
    /// How the consumer ended.
    stop: String,
    /// The producer's worst lateness against its schedule.
    producer_max_lag: Duration,
    /// Records or calls the producer saw refused.
    producer_failures: u64,
    /// Our consumers only: how long batches waited in the client between their arrival
    /// (a `GetRecords` answer, a fan-out event) and `process_records`, over the whole run.
    hand_off: Option<HandOff>,
}

/// The `kinesis_consumer_batch_wait_seconds` histogram of one of our consumer processes,
/// which reports it as `W <batches> <p50 µs> <p99 µs> <max µs>` on stdout when it stops.
#[derive(Debug, Clone, Copy)]
struct HandOff {
    /// Batches measured.
    batches: usize,
    /// Median wait, µs.
    p50_us: f64,
    /// 99th percentile wait, µs.
    p99_us: f64,
    /// Longest wait, µs.
    max_us: f64,
}

impl HandOff {
    /// The summary of `waits` (seconds); `None` when empty.
    fn of(mut waits: Vec<f64>) -> Option<Self> {
        waits.sort_by(f64::total_cmp);
        let at = |p: f64| {
            waits[((waits.len() as f64 * p).ceil() as usize).clamp(1, waits.len()) - 1] * 1e6
        };
        (!waits.is_empty()).then(|| HandOff {
            batches: waits.len(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            max_us: waits[waits.len() - 1] * 1e6,
        })
    }
}

/// What became of a mode.
#[derive(Debug)]
enum Outcome {
    /// Measured.
    Measured(Measured),
    /// Not run, and why.
    Skipped(String),
    /// Run, but no figures, and why.
    Failed(String),
}

/// How to start a mode's consumer process.
#[derive(Debug)]
struct ConsumerCommand {
    /// The program and its arguments.
    command: Command,
    /// Where its stderr goes.
    log: PathBuf,
    /// Where every record it reported goes (`seq,send_ns,process_ns`), for a closer look.
    samples_csv: PathBuf,
}

/// The consumer process of `mode`, or why it cannot run.
fn consumer_command(
    mode: Mode,
    kcl_rs: &Result<PathBuf, String>,
    out_dir: &Path,
) -> Result<ConsumerCommand, String> {
    let command = match mode.kcl_rs_retrieval() {
        None => {
            let probe = Scheduler::builder("probe", "probe", |_: &str| {
                Box::new(LatencyProcessor) as Box<dyn RecordProcessor>
            });
            // Only asked whether the mode is wired; the probe builder is dropped.
            let _ = configure_ours(mode, probe)?;
            let exe = std::env::current_exe()
                .map_err(|e| format!("cannot find this benchmark's executable: {e}"))?;
            let mut c = Command::new(exe);
            c.env(CHILD_VAR, mode.name());
            c
        }
        Some(retrieval) => {
            let python = kcl_rs
                .as_ref()
                .map_err(|e| format!("kcl-rs could not be installed: {}", first_line(e)))?;
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/kcl_rs_latency.py");
            let mut c = Command::new(python);
            c.arg(script).arg(retrieval);
            c
        }
    };
    Ok(ConsumerCommand {
        command,
        log: out_dir.join(format!("{}.log", mode.name())),
        samples_csv: out_dir.join(format!("{}.samples.csv", mode.name())),
    })
}

/// Runs one mode on its own stream and application.
async fn run_mode(
    stack: &LocalStack,
    mode: Mode,
    consumer: ConsumerCommand,
    settings: &Settings,
) -> Result<Measured, String> {
    let stream = stack
        .create_stream(&format!("latency-{}", mode.name()), SHARDS)
        .await
        .map_err(|e| format!("creating the stream: {e}"))?;
    let app = kinesis_emulators::unique_name(&format!("latency-{}", mode.name()));
    let log = Arc::new(Mutex::new(ProducerLog::default()));
    let stop_producer = CancellationToken::new();
    let producer = tokio::spawn(produce(
        stack.kinesis_client(),
        stream.clone(),
        log.clone(),
        stop_producer.clone(),
    ));
    tokio::time::sleep(PRODUCER_LEAD).await;

    let result = consume(stack, &stream, &app, consumer, settings, &log).await;

    stop_producer.cancel();
    if let Err(e) = producer.await {
        eprintln!("the producer task failed: {e}");
    }
    if let Err(e) = stack.delete_stream(&stream).await {
        eprintln!("deleting {stream}: {e}");
    }
    let (mut measured, samples, window) = result?;
    let log = lock(&log);
    let (start_ns, end_ns) = window;
    let in_window = |ns: i64| ns >= start_ns && ns < end_ns;
    let mut seen = HashSet::new();
    let mut repeats = 0;
    for s in samples.iter().filter(|s| in_window(s.send_ns)) {
        if seen.insert(s.seq) {
            measured.latencies_ns.push(s.process_ns - s.send_ns);
        } else {
            repeats += 1;
        }
    }
    measured.latencies_ns.sort_unstable();
    measured.repeats = repeats;
    measured.sent_in_window = log.sent.iter().filter(|s| in_window(s.send_ns)).count();
    measured.producer_max_lag = log.max_lag;
    measured.producer_failures = log.failed_records + log.failed_calls;
    Ok(measured)
}

/// Spawns the consumer and measures it; returns the partial figures, every sample and the
/// window (ns since the Unix epoch, start inclusive, end exclusive).
async fn consume(
    stack: &LocalStack,
    stream: &str,
    app: &str,
    consumer: ConsumerCommand,
    settings: &Settings,
    log: &Mutex<ProducerLog>,
) -> Result<(Measured, Vec<Sample>, (i64, i64)), String> {
    let ConsumerCommand {
        mut command,
        log: log_path,
        samples_csv,
    } = consumer;
    let stderr = std::fs::File::create(&log_path)
        .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
    command
        .env(STREAM_VAR, stream)
        .env(APP_VAR, app)
        .env("AWS_ENDPOINT_URL_KINESIS", stack.kinesis_endpoint())
        .env("AWS_ENDPOINT_URL_DYNAMODB", stack.dynamodb_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    let spawn_ns = unix_nanos();
    let mut child = command
        .spawn()
        .map_err(|e| format!("could not start the consumer: {e}"))?;
    let pid = child.id().expect("a just-spawned child has a pid");
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let first_ns = Arc::new(Mutex::new(None::<i64>));
    let hand_off = Arc::new(Mutex::new(None::<HandOff>));
    let reader = tokio::spawn(read_reports(
        child.stdout.take().expect("stdout is piped"),
        samples.clone(),
        first_ns.clone(),
        hand_off.clone(),
    ));
    // Kept open while the consumer runs: its end tells the consumer the bench is gone.
    let stdin = child.stdin.take();
    let seen = |log_path: &Path| format!("its stderr is in {}", log_path.display());

    let measured = async {
        // Up to the first record.
        let first = loop {
            if let Some(ns) = *lock(&first_ns) {
                break ns;
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the consumer exited ({status}) before its first record; {}",
                    seen(&log_path)
                ));
            }
            if Duration::from_nanos(u64::try_from(unix_nanos() - spawn_ns).unwrap_or(0))
                > FIRST_RECORD_TIMEOUT
            {
                return Err(format!(
                    "no record processed within {FIRST_RECORD_TIMEOUT:?} of starting the \
                     consumer; {}",
                    seen(&log_path)
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let first_record = Duration::from_nanos(u64::try_from(first - spawn_ns).unwrap_or(0));
        println!(
            "  {:.1} s to the first record; warm-up {:?}, window {:?}",
            first_record.as_secs_f64(),
            settings.warmup,
            settings.window
        );

        // Warm-up, then the window, with a CPU sample at each end.
        let start_ns = first + nanos(settings.warmup);
        let end_ns = start_ns + nanos(settings.window);
        sleep_until_unix(start_ns).await;
        let cpu_start = cpu_of(pid).ok_or("cannot read the consumer's /proc stat")?;
        sleep_until_unix(end_ns).await;
        let cpu_end = cpu_of(pid).ok_or("cannot read the consumer's /proc stat")?;
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the consumer exited ({status}) during the window; {}",
                seen(&log_path)
            ));
        }

        // Drain: until every record sent in the window was reported, or the timeout.
        let in_window = |ns: i64| ns >= start_ns && ns < end_ns;
        let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
        loop {
            let sent: HashSet<u64> = lock(log)
                .sent
                .iter()
                .filter(|s| in_window(s.send_ns))
                .map(|s| s.seq)
                .collect();
            let reported = lock(&samples)
                .iter()
                .filter(|s| sent.contains(&s.seq))
                .map(|s| s.seq)
                .collect::<HashSet<_>>()
                .len();
            if reported == sent.len() || Instant::now() >= drain_deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let (processed_in_window, batches_in_window) = {
            let samples = lock(&samples);
            let processed: Vec<_> = samples.iter().filter(|s| in_window(s.process_ns)).collect();
            // A batch's records share their process time.
            let batches = processed
                .iter()
                .map(|s| s.process_ns)
                .collect::<HashSet<_>>();
            (processed.len(), batches.len())
        };
        let cpu = cpu_end.saturating_sub(cpu_start);
        Ok((
            Measured {
                first_record,
                latencies_ns: Vec::new(),
                sent_in_window: 0,
                repeats: 0,
                cpu_us_per_record: cpu.as_secs_f64() * 1e6 / processed_in_window.max(1) as f64,
                processed_in_window,
                batches_in_window,
                stop: String::new(),
                producer_max_lag: Duration::ZERO,
                producer_failures: 0,
                hand_off: None,
            },
            (start_ns, end_ns),
        ))
    }
    .await;

    let stop = stop_child(&mut child).await;
    drop(stdin);
    match tokio::time::timeout(Duration::from_secs(5), reader).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("the report reader failed: {e}"),
        Err(_) => eprintln!("the consumer's stdout stayed open after it stopped"),
    }
    let (mut measured, window) = measured?;
    measured.stop = stop;
    measured.hand_off = *lock(&hand_off);
    let samples = std::mem::take(&mut *lock(&samples));
    if let Err(e) = write_samples(&samples_csv, &samples) {
        eprintln!("writing {}: {e}", samples_csv.display());
    }
    Ok((measured, samples, window))
}

/// Reads a consumer's `B <process ns> <seq>:<send ns> …` lines into `samples`, noting the
/// first one's process time in `first_ns`, and its `W …` line into `hand_off`. Other
/// lines are ignored.
async fn read_reports(
    stdout: tokio::process::ChildStdout,
    samples: Arc<Mutex<Vec<Sample>>>,
    first_ns: Arc<Mutex<Option<i64>>>,
    hand_off: Arc<Mutex<Option<HandOff>>>,
) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    // Read to the end whatever comes (an unreadable line must not stop the draining, or the
    // consumer would block on a full pipe).
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let mut fields = line.trim_end().split(' ');
        match fields.next() {
            Some("B") => {}
            Some("W") => {
                let numbers: Vec<f64> = fields.filter_map(|f| f.parse().ok()).collect();
                if let [batches, p50_us, p99_us, max_us] = numbers[..] {
                    *lock(&hand_off) = Some(HandOff {
                        batches: batches as usize,
                        p50_us,
                        p99_us,
                        max_us,
                    });
                }
                continue;
            }
            _ => continue,
        }
        let Some(process_ns) = fields.next().and_then(|f| f.parse::<i64>().ok()) else {
            continue;
        };
        let batch: Vec<Sample> = fields
            .filter_map(|f| {
                let (seq, send_ns) = f.split_once(':')?;
                Some(Sample {
                    seq: seq.parse().ok()?,
                    send_ns: send_ns.parse().ok()?,
                    process_ns,
                })
            })
            .collect();
        if batch.is_empty() {
            continue;
        }
        lock(&first_ns).get_or_insert(process_ns);
        lock(&samples).extend(batch);
    }
}

/// Writes `samples` as CSV: `seq,send_ns,process_ns`, in the order reported.
fn write_samples(path: &Path, samples: &[Sample]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "seq,send_ns,process_ns")?;
    for s in samples {
        writeln!(out, "{},{},{}", s.seq, s.send_ns, s.process_ns)?;
    }
    out.flush()
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`]; says which ended the consumer.
async fn stop_child(child: &mut Child) -> String {
    if let Ok(Some(status)) = child.try_wait() {
        return format!("had exited ({status})");
    }
    if let Some(pid) = child.id() {
        let pid = Pid::from_raw(i32::try_from(pid).expect("Linux pids fit in i32"));
        if let Err(e) = kill(pid, Signal::SIGTERM) {
            eprintln!("SIGTERM to {pid}: {e}");
        }
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(Ok(status)) => format!("SIGTERM ({status})"),
        Ok(Err(e)) => format!("SIGTERM (wait failed: {e})"),
        Err(_) => {
            if let Err(e) = child.kill().await {
                eprintln!("SIGKILL: {e}");
            }
            format!("SIGKILL after {STOP_GRACE:?} of SIGTERM")
        }
    }
}

// ---------------------------------------------------------------------------------------
// The whole run and its report
// ---------------------------------------------------------------------------------------

/// Runs every selected mode on one stack; prints and saves the table.
async fn run_all(settings: Settings) -> ExitCode {
    let target = match kinesis_emulators::workspace_target_dir() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("latency bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out_dir = target.join("bench-latency");
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("latency bench: creating {}: {e}", out_dir.display());
        return ExitCode::FAILURE;
    }
    let started = SystemTime::now();
    let load_before = load_average();

    let kcl_rs = if settings
        .modes
        .iter()
        .any(|m| m.kcl_rs_retrieval().is_some())
    {
        println!(
            "installing {KCL_RS} (once) under {}",
            target.join("peers").display()
        );
        let installed = tokio::task::spawn_blocking(|| {
            integration_tests::peers::kcl_rs().map_err(|e| match e {
                PeerError::Offline(why) | PeerError::Failed(why) => why,
            })
        })
        .await
        .unwrap_or_else(|e| Err(format!("the install task failed: {e}")));
        if let Err(e) = &installed {
            println!("kcl-rs skipped: it could not be installed:\n{e}");
        }
        installed
    } else {
        Err("not selected".to_owned())
    };

    let stack = match LocalStack::builder().start_async().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("latency bench: starting the embedded stack: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut rows = Vec::new();
    for &mode in &settings.modes {
        println!("{}:", mode.name());
        let outcome = match consumer_command(mode, &kcl_rs, &out_dir) {
            Err(why) => Outcome::Skipped(why),
            Ok(consumer) => match run_mode(&stack, mode, consumer, &settings).await {
                Ok(m) => Outcome::Measured(m),
                Err(why) => Outcome::Failed(why),
            },
        };
        match &outcome {
            Outcome::Measured(m) => println!(
                "  {} of {} records, p50 {}",
                m.latencies_ns.len(),
                m.sent_in_window,
                millis(percentile(&m.latencies_ns, 0.50))
            ),
            Outcome::Skipped(why) => println!("  skipped: {why}"),
            Outcome::Failed(why) => println!("  failed: {why}"),
        }
        rows.push((mode, outcome));
    }
    drop(stack);

    let report = report(&settings, started, &load_before, &load_average(), &rows);
    println!("\n{report}");
    let summary = out_dir.join("summary.md");
    match std::fs::write(&summary, &report) {
        Ok(()) => println!("saved to {}", summary.display()),
        Err(e) => eprintln!("writing {}: {e}", summary.display()),
    }
    ExitCode::SUCCESS
}

/// The markdown report: set-up, table, notes.
fn report(
    settings: &Settings,
    started: SystemTime,
    load_before: &str,
    load_after: &str,
    rows: &[(Mode, Outcome)],
) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut r = String::new();
    let _ = writeln!(r, "## Consumer latency (put → `process_records`)\n");
    let _ = writeln!(
        r,
        "Run {} UTC; {cores} cores ({}); load average {load_before} before, {load_after} after.",
        utc_minute(started),
        cpu_model()
    );
    let _ = writeln!(
        r,
        "One embedded stack (ferrokinesis + dynoxide, in the bench process), modes one after \
         another, each on a fresh {SHARDS}-shard stream with its own lease table. Producer in \
         the bench process: {} records/s (PutRecords of {RECORDS_PER_PUT} × {RECORD_BYTES} B \
         every {} ms, random partition keys), started {} s before the consumer; consumers \
         start at TRIM_HORIZON. Latency over the records sent in a {} s window that starts \
         {} s after the first record was processed.\n",
        RECORDS_PER_PUT as u64 * 1000 / PUT_INTERVAL.as_millis() as u64,
        PUT_INTERVAL.as_millis(),
        PRODUCER_LEAD.as_secs(),
        settings.window.as_secs(),
        settings.warmup.as_secs(),
    );
    let _ = writeln!(
        r,
        "| mode | time to first record | latency p50 | p99 | max | records | CPU µs/record |"
    );
    let _ = writeln!(r, "|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for (mode, outcome) in rows {
        match outcome {
            Outcome::Measured(m) => {
                let _ = writeln!(
                    r,
                    "| {} | {:.1} s | {} | {} | {} | {} of {} | {:.0} |",
                    mode.label(),
                    m.first_record.as_secs_f64(),
                    millis(percentile(&m.latencies_ns, 0.50)),
                    millis(percentile(&m.latencies_ns, 0.99)),
                    millis(m.latencies_ns.last().copied()),
                    m.latencies_ns.len(),
                    m.sent_in_window,
                    m.cpu_us_per_record,
                );
                if let Some(h) = m.hand_off {
                    notes.push(format!(
                        "{}: client hand-off (batch received → `process_records`, whole run, \
                         {} batches): p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs.",
                        mode.name(),
                        h.batches,
                        h.p50_us,
                        h.p99_us,
                        h.max_us
                    ));
                }
                notes.push(format!(
                    "{}: {} repeat deliveries; {} records processed in the window in {} \
                     batches ({:.1} per second); stopped by {}; producer at most {} ms behind \
                     schedule, {} failures.",
                    mode.name(),
                    m.repeats,
                    m.processed_in_window,
                    m.batches_in_window,
                    m.batches_in_window as f64 / settings.window.as_secs_f64(),
                    m.stop,
                    m.producer_max_lag.as_millis(),
                    m.producer_failures,
                ));
            }
            Outcome::Skipped(why) | Outcome::Failed(why) => {
                let what = if matches!(outcome, Outcome::Skipped(_)) {
                    "skipped"
                } else {
                    "failed"
                };
                let _ = writeln!(r, "| {} | {what} | – | – | – | – | – |", mode.label());
                notes.push(format!("{}: {what}: {}", mode.name(), first_line(why)));
            }
        }
    }
    let _ = writeln!(r);
    for note in notes {
        let _ = writeln!(r, "- {note}");
    }
    let _ = writeln!(
        r,
        "- Time to first record: from spawning the consumer process (start-up included) to \
         its first `process_records` call with records. Latency: time on entering \
         `process_records` minus the send time in the record (taken just before its \
         PutRecords call); first delivery of each record; nearest-rank percentiles. \
         Records: of the window's records, processed / sent. CPU: user + system time of the \
         consumer process over the window (`/proc/<pid>/stat`), per record it processed in \
         the window; the stack and the producer are not counted. Both consumers parse each \
         record's send time, write one stdout line per batch and checkpoint every batch."
    );
    r
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// Nanoseconds since the Unix epoch, now.
fn unix_nanos() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since.as_nanos()).expect("nanoseconds since 1970 fit in i64 until 2262")
}

/// A duration in nanoseconds.
fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).expect("bench durations fit in i64 nanoseconds")
}

/// Sleeps until the wall clock reads `ns` since the Unix epoch.
async fn sleep_until_unix(ns: i64) {
    let left = ns - unix_nanos();
    if left > 0 {
        tokio::time::sleep(Duration::from_nanos(left.unsigned_abs())).await;
    }
}

/// The nearest-rank `p` quantile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `ns` as milliseconds for the table.
fn millis(ns: Option<i64>) -> String {
    match ns {
        Some(ns) => format!("{:.0} ms", ns as f64 / 1e6),
        None => "–".to_owned(),
    }
}

/// The first line of a (possibly long) message.
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Locks `m`; a panic elsewhere while holding it leaves the data usable for a report.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
