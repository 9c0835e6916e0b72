//! Throughput and CPU per record of `kinesis-cat multilang` hosting a trivial amazon-kclpy
//! processor, beside our own `Scheduler` with a trivial Rust processor, on one embedded stack.
//!
//! ```text
//!  bench process                                 measured process (one per run, in turn)
//!  ┌──────────────────────────────────────┐      ┌───────────────────────────────────────────┐
//!  │ LocalStack: ferrokinesis + dynoxide  │◀HTTP─┤ host: kinesis-cat multilang --properties  │
//!  │   ▲ PutRecords of 500 × 100 B,       │      │   ├─ python3 count_processor.py  (shard 0) │
//!  │   │ before the run (fresh stream)    │      │   ├─ ...  one child per shard (kclpy v3)   │
//!  │ filler                               │      │   └─ "[shard] MLBENCH n t0 t1" on stderr   │
//!  │                                      │      │ ours: this binary, MULTILANG_BENCH_CHILD:  │
//!  │ reader ◀── "MLBENCH <n> <entered ns> ┼──────┤   Scheduler + a counting RecordProcessor   │
//!  │            <checkpointed ns>" ───────┤stderr│                                            │
//!  │ /proc/<pid>/stat (+ children's) ─────┼─────▶│ at the last record                         │
//!  └──────────────────────────────────────┘      └───────────────────────────────────────────┘
//!
//!  per run: fresh 4-shard stream ─ fill (RECORDS × 100 B, PutRecords of 500) ─ spawn
//!    (TRIM_HORIZON) ─ … ─ first batch ─ … ─ last record checkpointed: CPU samples ─ SIGTERM
//! ```
//!
//! Both processors do the same per batch: count the records, checkpoint, write one stderr
//! line (after the checkpoint). Both read with the same settings: polling at the library's
//! defaults (10,000 records per call, at most 5 calls per second per shard, 3 batches
//! ahead), the other lease settings at their defaults too.
//!
//! Measured per run:
//! - *time to first record*: from spawning the process (process start, imports, lease table,
//!   shard sync and lease take count) to the entry of the first `process_records` call;
//! - *time to last record*: from spawning to the end of the checkpoint of the batch that
//!   holds the last record; records/s is the records over that time, and also over the time
//!   from the first record to the last;
//! - *CPU µs/record*: user + system CPU (`/proc/<pid>/stat`) taken when the last record is
//!   reported, divided by the records: the measured process itself (for the host: without
//!   its Python children), and separately its children (each live descendant's own
//!   `/proc/<pid>/stat`, plus what the process has reaped). Start-up counts in both.
//!
//! Run: `cargo bench -p kinesis-cat --bench multilang` (release build). Environment:
//! `MULTILANG_BENCH_RECORDS` (default 100000), `MULTILANG_BENCH_ROUNDS` (default 3; each
//! round runs ours, then the host), `MULTILANG_BENCH_ONLY` (`ours` or `host`). amazon-kclpy
//! is installed once as the CLI's multilang tests install it
//! (`integration_tests::peers`); when PyPI cannot be reached the host's runs are
//! reported as skipped. The table is printed and saved to `<target>/bench-multilang/
//! summary.md`, each process's stderr to `<target>/bench-multilang/<run>-<round>.log`.
//! The Java MultiLangDaemon is not a line here: its jars cannot be downloaded on the bench
//! machine (no JVM artefacts), so ours is the reference.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use integration_tests::bench_host::{
    children_cpu_of, cpu_model, cpu_of, env_count, load_average, utc_minute,
};
use integration_tests::peers::{kclpy, target_dir, PeerError, KCLPY};
use kinesis_consumer::{
    InitialPosition, InitializationInput, LeaseLostInput, PollingConfig, ProcessRecordsInput,
    RecordProcessor, Retrieval, Scheduler, ShardEndedInput, ShutdownRequestedInput,
};
use kinesis_emulators::LocalStack;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::Rng as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::Command;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Shards of each run's stream.
const SHARDS: i32 = 4;
/// Size of each record's data.
const RECORD_BYTES: usize = 100;
/// Records per `PutRecords` call of the fill.
const RECORDS_PER_PUT: usize = 500;
/// `PutRecords` calls of the fill in flight at once.
const PUTS_IN_FLIGHT: usize = 4;
/// Default records per run (`MULTILANG_BENCH_RECORDS`).
const DEFAULT_RECORDS: usize = 100_000;
/// Default rounds (`MULTILANG_BENCH_ROUNDS`).
const DEFAULT_ROUNDS: usize = 3;
/// How long a run may take to its last record before it is given up.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a process gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// What a processor's report line holds before its figures.
const MARK: &str = "MLBENCH ";
/// What a processor's line about a failed checkpoint starts with.
const ERROR_MARK: &str = "MLBENCH-ERROR";

/// Set in a child of this binary that runs our `Scheduler`.
const CHILD_VAR: &str = "MULTILANG_BENCH_CHILD";
/// The stream the child reads.
const STREAM_VAR: &str = "MULTILANG_BENCH_STREAM";
/// The application (and lease table) name of the child.
const APP_VAR: &str = "MULTILANG_BENCH_APP";

/// The processor the host runs, copied next to the properties file.
const PROCESSOR: &str = "count_processor.py";

// ---------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------

fn main() -> ExitCode {
    if std::env::var_os(CHILD_VAR).is_some() {
        return ours_child();
    }
    integration_tests::bench_host::bench_main(
        "kinesis-cat",
        "multilang",
        Settings::from_env,
        run_all,
    )
}

/// What to run, from the environment.
#[derive(Debug, Clone)]
struct Settings {
    /// Records per run.
    records: usize,
    /// Rounds of (ours, host).
    rounds: usize,
    /// The lines run, in order.
    lines: Vec<Line>,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let lines = match std::env::var("MULTILANG_BENCH_ONLY") {
            Ok(v) => vec![Line::from_name(&v)
                .ok_or_else(|| format!("MULTILANG_BENCH_ONLY={v:?}: expected ours or host"))?],
            Err(_) => vec![Line::Ours, Line::Host],
        };
        Ok(Settings {
            records: env_count("MULTILANG_BENCH_RECORDS", DEFAULT_RECORDS)?,
            rounds: env_count("MULTILANG_BENCH_ROUNDS", DEFAULT_ROUNDS)?,
            lines,
        })
    }
}

/// One consumer set-up measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Our `Scheduler` with a counting Rust processor, in a child of this binary.
    Ours,
    /// `kinesis-cat multilang` hosting `count_processor.py` (amazon-kclpy v3).
    Host,
}

impl Line {
    /// Short name: `MULTILANG_BENCH_ONLY`, log file names.
    fn name(self) -> &'static str {
        match self {
            Line::Ours => "ours",
            Line::Host => "host",
        }
    }

    /// The row label of the table.
    fn label(self) -> &'static str {
        match self {
            Line::Ours => "ours: `Scheduler` + Rust processor (reference)",
            Line::Host => "`kinesis-cat multilang` + amazon-kclpy 3.2.0 processor",
        }
    }

    fn from_name(name: &str) -> Option<Line> {
        [Line::Ours, Line::Host]
            .into_iter()
            .find(|l| l.name() == name)
    }
}

// ---------------------------------------------------------------------------------------
// Our consumer, as a child process of this binary
// ---------------------------------------------------------------------------------------

/// Counts the records of each batch, checkpoints, reports the batch on stderr: what
/// `count_processor.py` does.
#[derive(Debug, Default)]
struct CountProcessor {
    /// Records seen so far.
    count: u64,
}

#[async_trait]
impl RecordProcessor for CountProcessor {
    async fn initialize(&mut self, _: InitializationInput) {}

    async fn process_records(&mut self, input: ProcessRecordsInput) {
        // The host hands a child no empty batch (`callProcessRecordsEvenForEmptyRecordList`
        // is off): neither does this.
        if input.records.is_empty() {
            return;
        }
        let entered = unix_nanos();
        let n = input.records.len();
        self.count += n as u64;
        if let Err(e) = input.checkpointer.checkpoint().await {
            eprintln!("{ERROR_MARK} checkpoint: {e}");
        }
        eprintln!("{MARK}{n} {entered} {}", unix_nanos());
    }

    async fn lease_lost(&mut self, _: LeaseLostInput) {}

    async fn shard_ended(&mut self, input: ShardEndedInput) {
        if let Err(e) = input.checkpointer.checkpoint().await {
            eprintln!("{ERROR_MARK} checkpoint at shard end: {e}");
        }
    }

    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        if let Err(e) = input.checkpointer.checkpoint().await {
            eprintln!("{ERROR_MARK} checkpoint at shutdown: {e}");
        }
    }
}

/// The child: runs our worker with the host's settings until SIGTERM.
fn ours_child() -> ExitCode {
    let (Ok(stream), Ok(app)) = (std::env::var(STREAM_VAR), std::env::var(APP_VAR)) else {
        eprintln!("{STREAM_VAR} and {APP_VAR} must be set");
        return ExitCode::FAILURE;
    };
    // As `kinesis-cat` runs: tokio's multi-threaded runtime, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the consumer");
    runtime.block_on(async move {
        // Endpoints, region and credentials from the environment, as the host gets them.
        let sdk = aws_config::load_from_env().await;
        let built = Scheduler::builder(&app, &stream, |_: &str| {
            Box::new(CountProcessor::default()) as Box<dyn RecordProcessor>
        })
        .with_sdk_config(&sdk)
        .with_initial_position(InitialPosition::TrimHorizon)
        .with_retrieval(Retrieval::Polling(PollingConfig::default()))
        .build();
        let scheduler = match built {
            Ok(s) => s,
            Err(e) => {
                eprintln!("building the scheduler: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        let worker = scheduler.clone();
        let mut run = tokio::spawn(async move { worker.run().await });
        tokio::select! {
            _ = term.recv() => {}
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
    })
}

// ---------------------------------------------------------------------------------------
// The runs
// ---------------------------------------------------------------------------------------

/// The figures of one run.
#[derive(Debug, Clone)]
struct Run {
    /// Which set-up.
    line: Line,
    /// Round number, from 1.
    round: usize,
    /// Records reported (more than were put if some came twice).
    records: usize,
    /// `process_records` calls reported.
    batches: usize,
    /// From spawning to the entry of the first call.
    first: Duration,
    /// From spawning to the end of the last call's checkpoint.
    last: Duration,
    /// CPU of the measured process itself up to the last record.
    own_cpu: Duration,
    /// CPU of its children (descendants) up to the last record.
    children_cpu: Duration,
    /// Descendant processes seen at the end.
    children: usize,
    /// Failed checkpoints reported.
    checkpoint_errors: usize,
}

impl Run {
    /// Records per second from spawning to the last record.
    fn rate(&self) -> f64 {
        self.records as f64 / self.last.as_secs_f64()
    }

    /// Records per second from the first record to the last.
    fn steady_rate(&self) -> f64 {
        self.records as f64 / (self.last - self.first).as_secs_f64().max(1e-9)
    }

    /// CPU µs per record of `cpu`.
    fn per_record(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.records as f64
    }
}

/// Runs every round and prints (and saves) the table.
async fn run_all(settings: Settings) -> ExitCode {
    let out_dir = target_dir().join("bench-multilang");
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("cannot create {}: {e}", out_dir.display());
        return ExitCode::FAILURE;
    }
    let mut lines = settings.lines.clone();
    let mut skipped = Vec::new();
    let kclpy_path = if lines.contains(&Line::Host) {
        eprintln!("installing {KCLPY} (once) ...");
        match tokio::task::spawn_blocking(kclpy).await {
            Ok(Ok(p)) => Some(p),
            Ok(Err(PeerError::Offline(e))) => {
                skipped.push(format!(
                    "{}: skipped, {KCLPY} cannot be installed (package registry unreachable): {}",
                    Line::Host.label(),
                    first_line(&e)
                ));
                lines.retain(|l| *l != Line::Host);
                None
            }
            Ok(Err(PeerError::Failed(e))) => {
                eprintln!("installing {KCLPY} failed:\n{e}");
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("installing {KCLPY} panicked: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let stack = match LocalStack::builder().start_async().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("starting the embedded stack: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = SystemTime::now();
    let load_before = load_average();
    eprintln!(
        "multilang bench: {} records of {RECORD_BYTES} B, {SHARDS} shards, {} round(s); load {load_before}",
        settings.records, settings.rounds
    );
    let mut runs = Vec::new();
    let mut failed = false;
    for round in 1..=settings.rounds {
        for &line in &lines {
            match one_run(
                &stack,
                line,
                round,
                settings.records,
                kclpy_path.as_deref(),
                &out_dir,
            )
            .await
            {
                Ok(run) => {
                    eprintln!(
                        "round {round} {}: first record {:.2} s, last {:.2} s, {:.0} records/s ({:.0} after the first), CPU µs/record {:.1} own, {:.1} children",
                        line.name(),
                        run.first.as_secs_f64(),
                        run.last.as_secs_f64(),
                        run.rate(),
                        run.steady_rate(),
                        run.per_record(run.own_cpu),
                        run.per_record(run.children_cpu),
                    );
                    runs.push(run);
                }
                Err(e) => {
                    eprintln!("round {round} {}: FAILED: {e}", line.name());
                    failed = true;
                }
            }
        }
    }
    let load_after = load_average();
    let summary = report(
        &settings,
        &runs,
        &skipped,
        started,
        &load_before,
        &load_after,
    );
    println!("{summary}");
    let path = out_dir.join("summary.md");
    if let Err(e) = std::fs::write(&path, &summary) {
        eprintln!("cannot write {}: {e}", path.display());
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One run of `line` on a fresh, filled stream.
async fn one_run(
    stack: &LocalStack,
    line: Line,
    round: usize,
    records: usize,
    kclpy_path: Option<&Path>,
    out_dir: &Path,
) -> Result<Run, String> {
    let stream = stack
        .create_stream(&format!("mlb-{}", line.name()), SHARDS)
        .await
        .map_err(|e| format!("creating the stream: {e}"))?;
    let app = kinesis_emulators::unique_name(&format!("mlb-{}-app", line.name()));
    fill(stack, &stream, records).await?;

    let scratch = out_dir.join(format!("{}-{round}", line.name()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let mut cmd = match line {
        Line::Ours => {
            let exe = std::env::current_exe().map_err(|e| format!("this binary: {e}"))?;
            let mut c = Command::new(exe);
            c.env(CHILD_VAR, "1")
                .env(STREAM_VAR, &stream)
                .env(APP_VAR, &app);
            c
        }
        Line::Host => {
            let kclpy_path = kclpy_path.ok_or("amazon-kclpy is not installed")?;
            let src = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("benches/multilang")
                .join(PROCESSOR);
            std::fs::copy(&src, scratch.join(PROCESSOR))
                .map_err(|e| format!("copying {}: {e}", src.display()))?;
            let props = scratch.join("bench.properties");
            std::fs::write(&props, properties(&stream, &app))
                .map_err(|e| format!("{}: {e}", props.display()))?;
            let mut c = Command::new(env!("CARGO_BIN_EXE_kinesis-cat"));
            c.arg("multilang")
                .arg("--properties")
                .arg(&props)
                .env("PYTHONPATH", kclpy_path);
            c
        }
    };
    cmd.env("AWS_ENDPOINT_URL_KINESIS", stack.kinesis_endpoint())
        .env("AWS_ENDPOINT_URL_DYNAMODB", stack.dynamodb_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);

    let spawned_ns = unix_nanos();
    let mut child = cmd.spawn().map_err(|e| format!("spawning {cmd:?}: {e}"))?;
    let pid = child.id().ok_or("the process ended at once")?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let log_path = out_dir.join(format!("{}-{round}.log", line.name()));
    let mut log = tokio::fs::File::create(&log_path)
        .await
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut lines = BufReader::new(stderr).lines();

    let deadline = Instant::now() + RUN_TIMEOUT;
    let (mut seen, mut batches, mut errors) = (0usize, 0usize, 0usize);
    let (mut first_ns, mut last_ns) = (i64::MAX, 0i64);
    let mut cpu = None;
    let mut ended = None;
    while cpu.is_none() {
        let next = tokio::time::timeout_at(deadline, lines.next_line()).await;
        let text = match next {
            Ok(Ok(Some(text))) => text,
            Ok(Ok(None)) | Ok(Err(_)) => {
                ended = Some("its stderr closed before the last record".to_owned());
                break;
            }
            Err(_) => {
                ended = Some(format!("{seen} of {records} records after {RUN_TIMEOUT:?}"));
                break;
            }
        };
        let _ = log.write_all(format!("{text}\n").as_bytes()).await;
        if text.contains(ERROR_MARK) {
            errors += 1;
        } else if let Some((n, entered, done)) = parse_report(&text) {
            seen += n;
            batches += 1;
            first_ns = first_ns.min(entered);
            last_ns = last_ns.max(done);
            if seen >= records {
                cpu = Some((cpu_of(pid), children_cpu_of(pid)));
            }
        }
    }

    // Stop: SIGTERM (graceful shutdown, last checkpoints), then SIGKILL after the grace.
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    }
    let stopping = async {
        while let Ok(Some(text)) = lines.next_line().await {
            let _ = log.write_all(format!("{text}\n").as_bytes()).await;
        }
        child.wait().await
    };
    let status = tokio::time::timeout(STOP_GRACE, stopping).await;
    let stop_note = match status {
        Ok(Ok(s)) if s.success() => None,
        Ok(Ok(s)) => Some(format!("exited with {s} after SIGTERM")),
        Ok(Err(e)) => Some(format!("waiting for it: {e}")),
        Err(_) => Some(format!(
            "still running {STOP_GRACE:?} after SIGTERM: killed"
        )),
    };
    if stop_note.is_some() {
        let _ = child.kill().await;
    }
    let _ = stack.delete_stream(&stream).await;
    if let Some(why) = ended {
        return Err(format!("{why} (log: {})", log_path.display()));
    }
    if let Some(note) = stop_note {
        eprintln!(
            "round {round} {}: {note} (log: {})",
            line.name(),
            log_path.display()
        );
    }
    let Some((Some(own), (children_cpu, children))) = cpu else {
        return Err(format!("no CPU figures for pid {pid}"));
    };
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(Run {
        line,
        round,
        records: seen,
        batches,
        first: nanos_to_duration(first_ns - spawned_ns),
        last: nanos_to_duration(last_ns - spawned_ns),
        own_cpu: own,
        children_cpu,
        children,
        checkpoint_errors: errors,
    })
}

/// The host's properties: the daemon's polling defaults, the processor next to the file.
fn properties(stream: &str, app: &str) -> String {
    format!(
        "# written by the multilang benchmark\n\
         executableName = python3 {PROCESSOR}\n\
         streamName = {stream}\n\
         applicationName = {app}\n\
         AwsCredentialsProvider = DefaultCredentialsProvider\n\
         initialPositionInStream = TRIM_HORIZON\n\
         regionName = us-east-1\n\
         retrievalMode = POLLING\n"
    )
}

/// `(records, entered ns, checkpointed ns)` of a report line (the host prefixes the
/// child's line with its shard).
fn parse_report(text: &str) -> Option<(usize, i64, i64)> {
    let (_, rest) = text.split_once(MARK)?;
    let mut fields = rest.split_whitespace();
    let n = fields.next()?.parse().ok()?;
    let entered = fields.next()?.parse().ok()?;
    let done = fields.next()?.parse().ok()?;
    Some((n, entered, done))
}

/// Puts `records` records of [`RECORD_BYTES`] with random partition keys, in `PutRecords`
/// calls of [`RECORDS_PER_PUT`], [`PUTS_IN_FLIGHT`] at a time; retries refused entries.
async fn fill(stack: &LocalStack, stream: &str, records: usize) -> Result<(), String> {
    let client = stack.kinesis_client();
    let mut calls = JoinSet::new();
    let mut next = 0usize;
    let started = Instant::now();
    while next < records || !calls.is_empty() {
        while next < records && calls.len() < PUTS_IN_FLIGHT {
            let end = (next + RECORDS_PER_PUT).min(records);
            let mut rng = rand::rng();
            let entries: Vec<PutRecordsRequestEntry> = (next..end)
                .map(|i| {
                    let mut data = format!("record {i} ").into_bytes();
                    data.resize(RECORD_BYTES, b'x');
                    PutRecordsRequestEntry::builder()
                        .partition_key(format!("{:032x}", rng.random::<u128>()))
                        .data(Blob::new(data))
                        .build()
                        .expect("partition key and data are set")
                })
                .collect();
            let (client, stream) = (client.clone(), stream.to_owned());
            calls.spawn(async move { put_all(&client, &stream, entries).await });
            next = end;
        }
        if let Some(done) = calls.join_next().await {
            done.map_err(|e| format!("a put task failed: {e}"))??;
        }
    }
    eprintln!(
        "filled {stream}: {records} records in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One `PutRecords` of `entries`, again with the refused ones until none is.
async fn put_all(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    mut entries: Vec<PutRecordsRequestEntry>,
) -> Result<(), String> {
    for _ in 0..20 {
        let out = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries.clone()))
            .send()
            .await
            .map_err(|e| format!("PutRecords: {e}"))?;
        if out.failed_record_count().unwrap_or(0) == 0 {
            return Ok(());
        }
        entries = entries
            .into_iter()
            .zip(out.records())
            .filter(|(_, r)| r.error_code().is_some())
            .map(|(e, _)| e)
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "{} records still refused after 20 tries",
        entries.len()
    ))
}

// ---------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------

/// The markdown table of every run, with each line's median.
fn report(
    settings: &Settings,
    runs: &[Run],
    skipped: &[String],
    started: SystemTime,
    load_before: &str,
    load_after: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Run {} UTC, {} ({} cores), load average {load_before} before, {load_after} after; \
         {} records of {RECORD_BYTES} B on a {SHARDS}-shard stream per run, {} round(s).\n",
        utc_minute(started),
        cpu_model(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        settings.records,
        settings.rounds,
    );
    let _ = writeln!(
        s,
        "| run | round | records | batches | time to first record | time to last record | records/s (from start) | records/s (first → last) | host CPU µs/record | children CPU µs/record (processes) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for run in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.2} s | {:.2} s | {:.0} | {:.0} | {:.2} | {:.2} ({}) |",
            run.line.label(),
            run.round,
            run.records,
            run.batches,
            run.first.as_secs_f64(),
            run.last.as_secs_f64(),
            run.rate(),
            run.steady_rate(),
            run.per_record(run.own_cpu),
            run.per_record(run.children_cpu),
            run.children,
        );
    }
    for line in [Line::Ours, Line::Host] {
        let mine: Vec<&Run> = runs.iter().filter(|r| r.line == line).collect();
        if mine.is_empty() {
            continue;
        }
        let med = |f: &dyn Fn(&Run) -> f64| median(mine.iter().map(|r| f(r)).collect());
        let _ = writeln!(
            s,
            "| **{}, median** | {} runs | | | {:.2} s | {:.2} s | {:.0} | {:.0} | {:.2} | {:.2} |",
            line.label(),
            mine.len(),
            med(&|r| r.first.as_secs_f64()),
            med(&|r| r.last.as_secs_f64()),
            med(&|r| r.rate()),
            med(&|r| r.steady_rate()),
            med(&|r| r.per_record(r.own_cpu)),
            med(&|r| r.per_record(r.children_cpu)),
        );
    }
    let errors: usize = runs.iter().map(|r| r.checkpoint_errors).sum();
    let _ = writeln!(
        s,
        "\nFailed checkpoints reported: {errors}. CPU: user + system from `/proc/<pid>/stat` \
         when the last record was reported, start-up included; \"host\" is the measured \
         process alone (for ours, the whole consumer), \"children\" its descendants (the \
         Python processors)."
    );
    for note in skipped {
        let _ = writeln!(s, "\n{note}");
    }
    s
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// Nanoseconds since the Unix epoch, on the clock both processors report with.
fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A non-negative nanosecond count as a duration.
fn nanos_to_duration(ns: i64) -> Duration {
    Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

/// The first line of a (possibly long) message.
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
