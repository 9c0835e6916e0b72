//! Failover and join of `kinesis-cat consume` worker processes at the default settings
//! (failover 10 s), with worker heartbeats (the default) and without
//! (`--no-worker-heartbeats`, the Java KCL's liveness), beside the peer kcl-rs 0.1.4; and
//! the DynamoDB calls of an idle worker beside the Java KCL's formula. One run, one
//! embedded stack.
//!
//! ```text
//!  bench process                                   worker processes (per trial)
//!  ┌─────────────────────────────────────────┐     ┌───────────────────────────────────────┐
//!  │ LocalStack: ferrokinesis + dynoxide     │◀────┤ w0 w1 w2: kinesis-cat consume --output│
//!  │   ▲ producer: PutRecords of 20 every    │HTTP │   json [--no-worker-heartbeats]        │
//!  │   │ 50 ms (400 records/s, random keys)  │     │   or python failover/kcl_rs_worker.py │
//!  │ readers ◀── one JSON line per record ───┼─────┤   (kcl-rs 0.1.4)                       │
//!  │   (arrival instant, worker, shard)      │stdout│ w3: the joiner (ours only)            │
//!  │ LeaseTable::list_leases every 100 ms ───┼────▶│                                       │
//!  └─────────────────────────────────────────┘     └───────────────────────────────────────┘
//!
//!  per trial: fresh 8-shard stream + application ─ producer ─ spawn w0 w1 w2 ─ balanced
//!    (3/3/2 in the lease table) ─ settled (owners unchanged 3 s, every shard printing from
//!    its owner) ─ kill -9 the worker holding most shards ─ "resumed": every shard it held
//!    printed a record from another worker ─ (ours) spawn w3 ─ "share": the table shows it
//!    owning ⌊8 / 3⌋ = 2 leases ─ "first record": it printed one ─ SIGTERM everyone
//!
//!  calls: 4 child processes of this binary at once, each one idle `Scheduler` (defaults,
//!    heartbeats on or off) alone on its own stream of L = 1 or 8 shards, counting
//!    `kinesis_consumer_dynamodb_calls_total` (DebuggingRecorder) over a 60 s window
//! ```
//!
//! Times are taken on the bench's monotonic clock: the kill is the instant before SIGKILL
//! is sent, a record counts at the instant its line is read from the worker's stdout, the
//! lease table is read every 100 ms (so table figures are up to 0.1 s late). Nothing here
//! is asserted: targets missed are reported in the table.
//!
//! Run: `cargo bench -p kinesis-cat --bench failover` (release build, about 10 minutes).
//! Environment: `FAILOVER_BENCH_REPS` (kill trials per set-up of ours, default 3),
//! `FAILOVER_BENCH_PEER_REPS` (kcl-rs trials, default 1), `FAILOVER_BENCH_ONLY`
//! (comma-separated: `heartbeats`, `renewals`, `kcl-rs`, `calls`), `FAILOVER_BENCH_CALLS_SECS`
//! (the calls window, default 60), `FAILOVER_BENCH_WORKER_LOG` (a `RUST_LOG` filter for the
//! worker processes, to see in their logs why they move leases). kcl-rs is installed once into `<target>/peers/kcl-rs-venv`
//! (`integration_tests::peers::kcl_rs`); when that fails its line is reported as skipped
//! with the reason. The table is printed and saved to `<target>/bench-failover/summary.md`,
//! each process's stderr to `<target>/bench-failover/<set-up>-<trial>-<worker>.log`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use integration_tests::bench_host::{cpu_model, env_count, load_average, utc_minute};
use integration_tests::peers::{kcl_rs, target_dir, PeerError, KCL_RS};
use kinesis_consumer::leases::{LeaseStore as _, LeaseTable};
use kinesis_consumer::{
    InitializationInput, LeaseLostInput, ProcessRecordsInput, RecordProcessor, Scheduler,
    ShardEndedInput, ShutdownRequestedInput,
};
use kinesis_emulators::LocalStack;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::Rng as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Shards of each trial's stream.
const SHARDS: usize = 8;
/// Workers started in each trial (a fourth joins after the kill).
const WORKERS: usize = 3;
/// The failover time every consumer here runs with: the default of ours, of the Java KCL
/// and of kcl-rs (never passed on a command line).
const FAILOVER: Duration = Duration::from_secs(10);
/// Kill → resumed target: 1.2 × failover.
const RESUME_TARGET: Duration = Duration::from_secs(12);
/// Join target: the new worker owns its fair share within this of starting.
const JOIN_TARGET: Duration = Duration::from_secs(2);
/// The producer puts this many records ...
const RECORDS_PER_PUT: usize = 20;
/// ... this often (400 records/s, about 50 per shard per second).
const PUT_EVERY: Duration = Duration::from_millis(50);
/// How often the lease table is read while waiting.
const TABLE_EVERY: Duration = Duration::from_millis(100);
/// Owners must stay unchanged this long before the kill.
const SETTLE: Duration = Duration::from_secs(3);
/// How long workers get to exit after SIGTERM before they are killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Set in a child of this binary that counts an idle worker's DynamoDB calls.
const CALLS_CHILD_VAR: &str = "FAILOVER_BENCH_CALLS_CHILD";
/// The child's stream.
const STREAM_VAR: &str = "FAILOVER_BENCH_STREAM";
/// The child's application.
const APP_VAR: &str = "FAILOVER_BENCH_APP";
/// The child's lease count (the stream's shards).
const LEASES_VAR: &str = "FAILOVER_BENCH_LEASES";
/// `1`: heartbeats (the default); `0`: `with_worker_heartbeats(false)`.
const HEARTBEATS_VAR: &str = "FAILOVER_BENCH_HEARTBEATS";
/// The counting window in seconds.
const WINDOW_VAR: &str = "FAILOVER_BENCH_WINDOW_SECS";
/// What the child's result line starts with.
const CALLS_MARK: &str = "CALLS ";

/// The kcl-rs worker script, under `benches/`.
const KCL_RS_SCRIPT: &str = "failover/kcl_rs_worker.py";

// ---------------------------------------------------------------------------------------
// Entry points and settings
// ---------------------------------------------------------------------------------------

fn main() -> ExitCode {
    if std::env::var_os(CALLS_CHILD_VAR).is_some() {
        return calls_child();
    }
    integration_tests::bench_host::bench_main(
        "kinesis-cat",
        "failover",
        Settings::from_env,
        run_all,
    )
}

/// What to run, from the environment.
#[derive(Debug, Clone)]
struct Settings {
    /// Kill trials per set-up of ours.
    reps: usize,
    /// Kill trials of kcl-rs.
    peer_reps: usize,
    /// The set-ups measured, in order.
    setups: Vec<Setup>,
    /// Whether the DynamoDB calls are counted.
    calls: bool,
    /// The calls window.
    calls_window: Duration,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let (setups, calls) = match std::env::var("FAILOVER_BENCH_ONLY") {
            Ok(v) => {
                let mut setups = Vec::new();
                let mut calls = false;
                for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if name == "calls" {
                        calls = true;
                    } else {
                        setups.push(Setup::from_name(name).ok_or_else(|| {
                            format!(
                                "FAILOVER_BENCH_ONLY: {name:?}: expected heartbeats, renewals, \
                                 kcl-rs or calls"
                            )
                        })?);
                    }
                }
                (setups, calls)
            }
            Err(_) => (Setup::ALL.to_vec(), true),
        };
        Ok(Settings {
            reps: env_count("FAILOVER_BENCH_REPS", 3)?,
            peer_reps: env_count("FAILOVER_BENCH_PEER_REPS", 1)?,
            setups,
            calls,
            calls_window: Duration::from_secs(env_count("FAILOVER_BENCH_CALLS_SECS", 60)? as u64),
        })
    }
}

/// One consumer set-up measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// `kinesis-cat consume`, defaults (worker heartbeats).
    Heartbeats,
    /// `kinesis-cat consume --no-worker-heartbeats` (the Java KCL's liveness).
    Renewals,
    /// kcl-rs 0.1.4 in Python, `failover/kcl_rs_worker.py`.
    KclRs,
}

impl Setup {
    const ALL: [Setup; 3] = [Setup::Heartbeats, Setup::Renewals, Setup::KclRs];

    /// Short name: `FAILOVER_BENCH_ONLY`, log files.
    fn name(self) -> &'static str {
        match self {
            Setup::Heartbeats => "heartbeats",
            Setup::Renewals => "renewals",
            Setup::KclRs => "kcl-rs",
        }
    }

    /// The row label.
    fn label(self) -> &'static str {
        match self {
            Setup::Heartbeats => "ours: `kinesis-cat consume` (defaults: worker heartbeats)",
            Setup::Renewals => {
                "ours: `kinesis-cat consume --no-worker-heartbeats` (Java KCL liveness)"
            }
            Setup::KclRs => "kcl-rs 0.1.4 (defaults; `POLLING` every 200 ms)",
        }
    }

    fn from_name(name: &str) -> Option<Setup> {
        Setup::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether a fourth worker joins after the kill.
    fn joins(self) -> bool {
        self != Setup::KclRs
    }

    /// The longest wait for 3/3/2 from the spawn (then a weaker balance is accepted:
    /// every lease owned, every worker holding one).
    fn balance_bound(self) -> Duration {
        match self {
            Setup::Heartbeats => Duration::from_secs(60),
            Setup::Renewals => Duration::from_secs(150),
            Setup::KclRs => Duration::from_secs(180),
        }
    }

    /// The longest wait from the kill until every shard of the victim prints again.
    fn resume_bound(self) -> Duration {
        match self {
            Setup::Heartbeats => Duration::from_secs(60),
            Setup::Renewals | Setup::KclRs => Duration::from_secs(150),
        }
    }

    /// The longest wait for the joiner's share and first record.
    fn join_bound(self) -> Duration {
        match self {
            Setup::Heartbeats => Duration::from_secs(60),
            Setup::Renewals | Setup::KclRs => Duration::from_secs(120),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Worker processes and what they print
// ---------------------------------------------------------------------------------------

/// A record line read from a worker.
#[derive(Debug, Clone)]
struct Printed {
    /// When the bench read it.
    at: Instant,
    /// The worker's index (0.. in spawn order).
    worker: usize,
    /// Its shard.
    shard: String,
}

/// Every record line of a trial, in the order read.
type Prints = Arc<Mutex<Vec<Printed>>>;

/// What every worker of a trial shares.
#[derive(Debug)]
struct Trial<'a> {
    /// The stack.
    stack: &'a LocalStack,
    /// Which set-up.
    setup: Setup,
    /// Trial number, from 1.
    number: usize,
    /// The stream.
    stream: String,
    /// The application (and lease table).
    app: String,
    /// kcl-rs's python, for [`Setup::KclRs`].
    python: Option<&'a Path>,
    /// Where logs go.
    out_dir: &'a Path,
    /// Record lines.
    prints: Prints,
    /// The lease table, read by the bench.
    table: LeaseTable,
}

/// A running worker process.
#[derive(Debug)]
struct Worker {
    /// Its index.
    index: usize,
    /// Its worker id (the `leaseOwner` it writes).
    id: String,
    /// The process.
    child: Child,
    /// Its stdin (kcl-rs: closing it stops the worker).
    stdin: Option<ChildStdin>,
    /// When it was spawned.
    spawned: Instant,
}

impl Trial<'_> {
    /// Spawns worker `index`, its stdout read into `prints`, its stderr to a log file.
    fn spawn(&self, index: usize) -> Result<Worker, String> {
        let id = format!("{}-w{index}", self.setup.name());
        let mut cmd = match self.setup {
            Setup::Heartbeats | Setup::Renewals => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_kinesis-cat"));
                c.args(["consume", "--stream", &self.stream, "--app", &self.app])
                    .args(["--worker-id", &id, "--output", "json"]);
                if self.setup == Setup::Renewals {
                    c.arg("--no-worker-heartbeats");
                }
                c
            }
            Setup::KclRs => {
                let python = self.python.ok_or("kcl-rs is not installed")?;
                let script = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("benches")
                    .join(KCL_RS_SCRIPT);
                let mut c = Command::new(python);
                c.arg(script).args([&self.stream, &self.app, &id]);
                c
            }
        };
        let log_path = self.out_dir.join(format!(
            "{}-{}-w{index}.log",
            self.setup.name(),
            self.number
        ));
        let log =
            std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        cmd.env("AWS_ENDPOINT_URL_KINESIS", self.stack.kinesis_endpoint())
            .env("AWS_ENDPOINT_URL_DYNAMODB", self.stack.dynamodb_endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if let Ok(filter) = std::env::var("FAILOVER_BENCH_WORKER_LOG") {
            cmd.env("RUST_LOG", filter);
        }
        let spawned = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("spawning {cmd:?}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let stdin = child.stdin.take();
        let prints = self.prints.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let at = Instant::now();
                let shard = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("shard_id")?.as_str().map(str::to_owned));
                if let Some(shard) = shard {
                    prints
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(Printed {
                            at,
                            worker: index,
                            shard,
                        });
                }
            }
        });
        Ok(Worker {
            index,
            id,
            child,
            stdin,
            spawned,
        })
    }

    /// Shard → owner, for the shards' leases (kcl-rs keeps other items in the table).
    /// Empty until the table exists.
    async fn owners(&self) -> BTreeMap<String, Option<String>> {
        self.table
            .list_leases()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.lease_key.starts_with("shardId-"))
            .map(|l| (l.lease_key, l.owner))
            .collect()
    }

    /// The first record `worker` printed after `since`, if any.
    fn first_print_of(&self, worker: usize, since: Instant) -> Option<Instant> {
        self.prints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|p| p.worker == worker && p.at >= since)
            .map(|p| p.at)
    }

    /// For each of `shards`, the first record a worker other than `not` printed on it
    /// after `since`.
    fn resumed(&self, shards: &[String], not: usize, since: Instant) -> Vec<Option<Instant>> {
        let prints = self
            .prints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shards
            .iter()
            .map(|s| {
                prints
                    .iter()
                    .find(|p| p.worker != not && p.at > since && &p.shard == s)
                    .map(|p| p.at)
            })
            .collect()
    }

    /// Whether every shard printed a record from its owner since `since`.
    fn all_printing(
        &self,
        owners: &BTreeMap<String, Option<String>>,
        workers: &[Worker],
        since: Instant,
    ) -> bool {
        let index: HashMap<&str, usize> =
            workers.iter().map(|w| (w.id.as_str(), w.index)).collect();
        let prints = self
            .prints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        owners.iter().all(|(shard, owner)| {
            let Some(i) = owner.as_deref().and_then(|o| index.get(o)) else {
                return false;
            };
            prints
                .iter()
                .rev()
                .take_while(|p| p.at >= since)
                .any(|p| p.worker == *i && &p.shard == shard)
        })
    }
}

/// Leases per live worker id (workers holding none included), from an owners map.
fn counts(owners: &BTreeMap<String, Option<String>>, workers: &[Worker]) -> Vec<(String, usize)> {
    workers
        .iter()
        .map(|w| {
            let n = owners
                .values()
                .filter(|o| o.as_deref() == Some(w.id.as_str()))
                .count();
            (w.id.clone(), n)
        })
        .collect()
}

/// 3/3/2: every lease owned by a live worker, loads within one of each other.
fn balanced(owners: &BTreeMap<String, Option<String>>, workers: &[Worker]) -> bool {
    let c = counts(owners, workers);
    let total: usize = c.iter().map(|(_, n)| n).sum();
    let max = c.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let min = c.iter().map(|(_, n)| *n).min().unwrap_or(0);
    owners.len() == SHARDS && total == SHARDS && max - min <= 1
}

/// Every lease owned by a live worker, every worker holding at least one.
fn covered(owners: &BTreeMap<String, Option<String>>, workers: &[Worker]) -> bool {
    let c = counts(owners, workers);
    let total: usize = c.iter().map(|(_, n)| n).sum();
    owners.len() == SHARDS && total == SHARDS && c.iter().all(|(_, n)| *n > 0)
}

/// `counts` as `3/3/2` in worker order.
fn shape(owners: &BTreeMap<String, Option<String>>, workers: &[Worker]) -> String {
    counts(owners, workers)
        .iter()
        .map(|(_, n)| n.to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Stops workers: SIGTERM (and stdin closed), then SIGKILL after [`STOP_GRACE`].
async fn stop_all(workers: &mut [Worker]) {
    for w in workers.iter_mut() {
        w.stdin.take();
        if let Some(pid) = w.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    for w in workers.iter_mut() {
        if tokio::time::timeout(STOP_GRACE, w.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "  {} still running {STOP_GRACE:?} after SIGTERM: killed",
                w.id
            );
            let _ = w.child.kill().await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// One trial: balance, kill -9, resume, join
// ---------------------------------------------------------------------------------------

/// The figures of one trial.
#[derive(Debug, Clone, Default)]
struct Outcome {
    /// Trial number.
    number: usize,
    /// From spawning the three workers to the balance the kill waited for.
    balanced_after: Option<Duration>,
    /// The balance reached (`3/3/2`), and a note when it was only the weaker one.
    shape: String,
    /// Shards the victim held.
    victim_shards: usize,
    /// Kill → the lease table shows every victim shard owned by another worker.
    taken: Option<Duration>,
    /// Kill → every victim shard printed a record from another worker.
    resumed: Option<Duration>,
    /// Kill → the first of the victim's shards printed again.
    resumed_first: Option<Duration>,
    /// Joiner spawn → the table shows it owning its fair share.
    join_share: Option<Duration>,
    /// Joiner spawn → its first record.
    join_first: Option<Duration>,
    /// What went wrong or differently, if anything.
    notes: Vec<String>,
}

/// Runs one trial of `setup` on a fresh stream and application.
async fn one_trial(
    stack: &LocalStack,
    setup: Setup,
    number: usize,
    python: Option<&Path>,
    out_dir: &Path,
) -> Result<Outcome, String> {
    let stream = stack
        .create_stream(&format!("fo-{}", setup.name()), SHARDS as i32)
        .await
        .map_err(|e| format!("creating the stream: {e}"))?;
    let app = kinesis_emulators::unique_name(&format!("fo-{}-app", setup.name()));
    let trial = Trial {
        stack,
        setup,
        number,
        stream: stream.clone(),
        app: app.clone(),
        python,
        out_dir,
        prints: Arc::new(Mutex::new(Vec::new())),
        table: LeaseTable::new(stack.dynamodb_client(), &app),
    };
    let stop_producer = CancellationToken::new();
    let producer = tokio::spawn(produce(
        stack.kinesis_client(),
        stream.clone(),
        stop_producer.clone(),
    ));
    let mut workers = Vec::new();
    let result = measure(&trial, &mut workers).await;
    stop_all(&mut workers).await;
    stop_producer.cancel();
    let put = producer.await.unwrap_or(0);
    let _ = stack.delete_stream(&stream).await;
    let mut outcome = result?;
    outcome.number = number;
    let printed = trial
        .prints
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .len();
    eprintln!("  {put} records put, {printed} lines printed");
    Ok(outcome)
}

/// The steps of a trial; `workers` holds whatever was spawned, for the caller to stop.
async fn measure(trial: &Trial<'_>, workers: &mut Vec<Worker>) -> Result<Outcome, String> {
    let setup = trial.setup;
    let mut out = Outcome::default();
    for i in 0..WORKERS {
        workers.push(trial.spawn(i)?);
    }
    let started = Instant::now();

    // Balanced: 3/3/2, or after the bound every lease owned and every worker holding one.
    let mut owners = loop {
        let owners = trial.owners().await;
        if balanced(&owners, workers) {
            break owners;
        }
        if started.elapsed() >= setup.balance_bound() && covered(&owners, workers) {
            out.notes.push(format!(
                "not 3/3/2 after {:.0} s: killed at {}",
                setup.balance_bound().as_secs_f64(),
                shape(&owners, workers)
            ));
            break owners;
        }
        if started.elapsed() >= setup.balance_bound() * 2 {
            return Err(format!(
                "never balanced: {} after {:.0} s (owners {owners:?})",
                shape(&owners, workers),
                started.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(TABLE_EVERY).await;
    };
    out.balanced_after = Some(started.elapsed());
    // Settled: owners unchanged for SETTLE and every shard printing from its owner.
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(TABLE_EVERY).await;
        let now = trial.owners().await;
        if now != owners {
            owners = now;
            since = Instant::now();
            continue;
        }
        if since.elapsed() >= SETTLE && trial.all_printing(&owners, workers, since) {
            break;
        }
        if started.elapsed() >= setup.balance_bound() * 2 {
            return Err(format!(
                "never settled: {} (owners {owners:?})",
                shape(&owners, workers)
            ));
        }
    }
    out.shape = shape(&owners, workers);

    // kill -9 the worker holding the most shards (ties: the first).
    let c = counts(&owners, workers);
    let victim = (0..workers.len())
        .max_by_key(|&i| (c[i].1, std::cmp::Reverse(i)))
        .expect("workers");
    let victim_id = workers[victim].id.clone();
    let victim_shards: Vec<String> = owners
        .iter()
        .filter(|(_, o)| o.as_deref() == Some(victim_id.as_str()))
        .map(|(s, _)| s.clone())
        .collect();
    out.victim_shards = victim_shards.len();
    let killed_at = Instant::now();
    workers[victim]
        .child
        .start_kill()
        .map_err(|e| format!("kill -9 {victim_id}: {e}"))?;
    let mut dead = workers.remove(victim);
    let _ = dead.child.wait().await;
    let victim_index = dead.index;
    eprintln!(
        "  balanced {} after {:.1} s; killed {victim_id} holding {} shards",
        out.shape,
        out.balanced_after.unwrap_or_default().as_secs_f64(),
        victim_shards.len()
    );

    let mut taken = None;
    let deadline = killed_at + setup.resume_bound();
    let resumed = loop {
        if taken.is_none() {
            let o = trial.owners().await;
            let moved = victim_shards.iter().all(|s| {
                o.get(s)
                    .and_then(Option::as_deref)
                    .is_some_and(|owner| owner != victim_id)
            });
            if moved {
                taken = Some(killed_at.elapsed());
            }
        }
        if trial
            .resumed(&victim_shards, victim_index, killed_at)
            .iter()
            .all(Option::is_some)
        {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(TABLE_EVERY).await;
    };
    out.taken = taken;
    let firsts = trial.resumed(&victim_shards, victim_index, killed_at);
    out.resumed_first = firsts
        .iter()
        .flatten()
        .min()
        .map(|t| t.duration_since(killed_at));
    if resumed {
        out.resumed = firsts
            .iter()
            .flatten()
            .max()
            .map(|t| t.duration_since(killed_at));
    } else {
        let missing = firsts.iter().filter(|f| f.is_none()).count();
        out.notes.push(format!(
            "{missing} of the victim's {} shards not printing again after {:.0} s",
            victim_shards.len(),
            setup.resume_bound().as_secs_f64()
        ));
        return Ok(out);
    }
    eprintln!(
        "  kill → resumed {:.2} s (leases taken after {})",
        out.resumed.unwrap_or_default().as_secs_f64(),
        secs(out.taken)
    );

    if !setup.joins() {
        return Ok(out);
    }
    // A new worker joins: its fair share is ⌊8 / live workers⌋.
    let joiner = trial.spawn(WORKERS)?;
    let (joiner_index, joiner_id, spawned) = (joiner.index, joiner.id.clone(), joiner.spawned);
    workers.push(joiner);
    let share = SHARDS / workers.len();
    let mut share_at = None;
    let mut first_at = None;
    let deadline = spawned + setup.join_bound();
    let joined = loop {
        if share_at.is_none() {
            let o = trial.owners().await;
            let held = o
                .values()
                .filter(|x| x.as_deref() == Some(joiner_id.as_str()))
                .count();
            if held >= share {
                share_at = Some(spawned.elapsed());
            }
        }
        if first_at.is_none() {
            first_at = trial
                .first_print_of(joiner_index, spawned)
                .map(|t| t.duration_since(spawned));
        }
        if share_at.is_some() && first_at.is_some() {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(TABLE_EVERY).await;
    };
    out.join_share = share_at;
    out.join_first = first_at;
    if !joined {
        out.notes.push(format!(
            "the new worker: share of {share} {}, first record {} (waited {:.0} s)",
            secs(share_at),
            secs(first_at),
            setup.join_bound().as_secs_f64()
        ));
    }
    eprintln!(
        "  join: share of {share} after {}, first record after {}",
        secs(out.join_share),
        secs(out.join_first)
    );
    Ok(out)
}

/// Puts [`RECORDS_PER_PUT`] records with random keys every [`PUT_EVERY`] until `stop`;
/// returns how many were accepted.
async fn produce(client: aws_sdk_kinesis::Client, stream: String, stop: CancellationToken) -> u64 {
    let mut tick = tokio::time::interval(PUT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut put = 0u64;
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return put,
            _ = tick.tick() => {}
        }
        let entries: Vec<PutRecordsRequestEntry> = {
            let mut rng = rand::rng();
            (0..RECORDS_PER_PUT)
                .map(|_| {
                    n += 1;
                    PutRecordsRequestEntry::builder()
                        .partition_key(format!("{:032x}", rng.random::<u128>()))
                        .data(Blob::new(format!("record {n}")))
                        .build()
                        .expect("partition key and data are set")
                })
                .collect()
        };
        match client
            .put_records()
            .stream_name(&stream)
            .set_records(Some(entries))
            .send()
            .await
        {
            Ok(o) => {
                put += (RECORDS_PER_PUT as u64)
                    .saturating_sub(o.failed_record_count().unwrap_or(0).max(0) as u64);
            }
            Err(e) => eprintln!("  PutRecords failed: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// DynamoDB calls of an idle worker (child processes of this binary)
// ---------------------------------------------------------------------------------------

/// Does nothing: the stream is idle.
#[derive(Debug)]
struct Idle;

#[async_trait]
impl RecordProcessor for Idle {
    async fn initialize(&mut self, _: InitializationInput) {}
    async fn process_records(&mut self, _: ProcessRecordsInput) {}
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        let _ = input.checkpointer.checkpoint().await;
    }
    async fn shutdown_requested(&mut self, _: ShutdownRequestedInput) {}
}

/// DynamoDB calls counted since the last snapshot (each snapshot drains the counters),
/// by operation.
fn dynamodb_calls(snapshotter: &metrics_util::debugging::Snapshotter) -> BTreeMap<String, u64> {
    let mut by_op = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        if key.key().name() != kinesis_consumer::metric_names::DYNAMODB_CALLS {
            continue;
        }
        let DebugValue::Counter(n) = value else {
            continue;
        };
        let op = key
            .key()
            .labels()
            .find(|l| l.key() == "operation")
            .map_or_else(|| "?".to_owned(), |l| l.value().to_owned());
        *by_op.entry(op).or_insert(0) += n;
    }
    by_op
}

/// The child: one idle worker with the defaults (heartbeats on or off) holding every lease
/// of its stream; counts its DynamoDB calls over the window and prints
/// `CALLS <total> <operation> <n>, ...` (operations called at least once).
fn calls_child() -> ExitCode {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} must be set"));
    let parsed = (|| -> Result<(String, String, usize, bool, u64), String> {
        Ok((
            var(STREAM_VAR)?,
            var(APP_VAR)?,
            var(LEASES_VAR)?
                .parse()
                .map_err(|e| format!("{LEASES_VAR}: {e}"))?,
            var(HEARTBEATS_VAR)? == "1",
            var(WINDOW_VAR)?
                .parse()
                .map_err(|e| format!("{WINDOW_VAR}: {e}"))?,
        ))
    })();
    let (stream, app, leases, heartbeats, window) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    if recorder.install().is_err() {
        eprintln!("a metrics recorder is installed already");
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the worker");
    runtime.block_on(async move {
        let sdk = aws_config::load_from_env().await;
        let built = Scheduler::builder(&app, &stream, |_: &str| {
            Box::new(Idle) as Box<dyn RecordProcessor>
        })
        .with_sdk_config(&sdk)
        .with_worker_heartbeats(heartbeats)
        .build();
        let worker = match built {
            Ok(w) => w,
            Err(e) => {
                eprintln!("building the scheduler: {e}");
                return ExitCode::FAILURE;
            }
        };
        let w = worker.clone();
        let run = tokio::spawn(async move { w.run().await });
        let deadline = Instant::now() + Duration::from_secs(60);
        while worker.coordinator().held_lease_keys().len() < leases {
            if Instant::now() >= deadline {
                eprintln!(
                    "the worker took only {:?}",
                    worker.coordinator().held_lease_keys()
                );
                return ExitCode::FAILURE;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Let start-up calls pass, drop what they counted, then count the window alone.
        tokio::time::sleep(Duration::from_secs(2)).await;
        dynamodb_calls(&snapshotter);
        tokio::time::sleep(Duration::from_secs(window)).await;
        let calls = dynamodb_calls(&snapshotter);
        let total: u64 = calls.values().sum();
        let ops: Vec<String> = calls
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        println!("{CALLS_MARK}{total} {}", ops.join(", "));
        worker.graceful_shutdown().await;
        match run.await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            other => {
                eprintln!("the worker ended with {other:?}");
                ExitCode::FAILURE
            }
        }
    })
}

/// One idle worker's count.
#[derive(Debug, Clone)]
struct Calls {
    /// Heartbeats on.
    heartbeats: bool,
    /// Leases held.
    leases: usize,
    /// Calls in the window, or why there is no figure.
    counted: Result<(u64, String), String>,
}

/// Runs the four idle workers at once (heartbeats on and off, 1 and 8 leases).
async fn count_calls(stack: &LocalStack, window: Duration, out_dir: &Path) -> Vec<Calls> {
    let mut running = Vec::new();
    for heartbeats in [true, false] {
        for leases in [1usize, 8] {
            let started = async {
                let stream = stack
                    .create_stream("fo-calls", leases as i32)
                    .await
                    .map_err(|e| format!("creating the stream: {e}"))?;
                let app = kinesis_emulators::unique_name("fo-calls-app");
                let exe = std::env::current_exe().map_err(|e| format!("this binary: {e}"))?;
                let log_path = out_dir.join(format!(
                    "calls-{}-{leases}.log",
                    if heartbeats { "heartbeats" } else { "renewals" }
                ));
                let log = std::fs::File::create(&log_path)
                    .map_err(|e| format!("{}: {e}", log_path.display()))?;
                let child = Command::new(exe)
                    .env(CALLS_CHILD_VAR, "1")
                    .env(STREAM_VAR, &stream)
                    .env(APP_VAR, &app)
                    .env(LEASES_VAR, leases.to_string())
                    .env(HEARTBEATS_VAR, if heartbeats { "1" } else { "0" })
                    .env(WINDOW_VAR, window.as_secs().to_string())
                    .env("AWS_ENDPOINT_URL_KINESIS", stack.kinesis_endpoint())
                    .env("AWS_ENDPOINT_URL_DYNAMODB", stack.dynamodb_endpoint())
                    .env("AWS_ACCESS_KEY_ID", "test")
                    .env("AWS_SECRET_ACCESS_KEY", "test")
                    .env("AWS_REGION", "us-east-1")
                    .env("AWS_EC2_METADATA_DISABLED", "true")
                    .env_remove("AWS_PROFILE")
                    .env_remove("RUST_LOG")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::from(log))
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| format!("spawning the calls child: {e}"))?;
                Ok::<_, String>((stream, child))
            }
            .await;
            running.push((heartbeats, leases, started));
        }
    }
    let mut results = Vec::new();
    for (heartbeats, leases, started) in running {
        let counted = match started {
            Err(e) => Err(e),
            Ok((stream, child)) => {
                let waited = tokio::time::timeout(
                    window + Duration::from_secs(120),
                    child.wait_with_output(),
                )
                .await;
                let _ = stack.delete_stream(&stream).await;
                match waited {
                    Err(_) => Err("no result in time".to_owned()),
                    Ok(Err(e)) => Err(format!("waiting for the child: {e}")),
                    Ok(Ok(out)) => {
                        let text = String::from_utf8_lossy(&out.stdout);
                        text.lines()
                            .find_map(|l| l.strip_prefix(CALLS_MARK))
                            .and_then(|rest| {
                                let (n, ops) = rest.split_once(' ').unwrap_or((rest, ""));
                                Some((n.parse().ok()?, ops.to_owned()))
                            })
                            .ok_or_else(|| format!("no result ({})", out.status))
                    }
                }
            }
        };
        results.push(Calls {
            heartbeats,
            leases,
            counted,
        });
    }
    results
}

// ---------------------------------------------------------------------------------------
// The run and the report
// ---------------------------------------------------------------------------------------

/// Everything measured.
#[derive(Debug, Default)]
struct Report {
    /// Trials by set-up, in order.
    trials: Vec<(Setup, Vec<Outcome>)>,
    /// Trials that failed, with why.
    failures: Vec<String>,
    /// Set-ups skipped, with why.
    skipped: Vec<String>,
    /// DynamoDB calls.
    calls: Vec<Calls>,
    /// The calls window.
    calls_window: Duration,
}

/// Runs everything and prints (and saves) the report.
async fn run_all(settings: Settings) -> ExitCode {
    let out_dir = target_dir().join("bench-failover");
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("cannot create {}: {e}", out_dir.display());
        return ExitCode::FAILURE;
    }
    let mut report = Report {
        calls_window: settings.calls_window,
        ..Report::default()
    };
    let mut setups = settings.setups.clone();
    let python: Option<PathBuf> = if setups.contains(&Setup::KclRs) {
        eprintln!("installing {KCL_RS} (once) ...");
        let why = match tokio::task::spawn_blocking(kcl_rs).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(PeerError::Offline(e))) => {
                Err(format!("package registry unreachable: {}", first_line(&e)))
            }
            Ok(Err(PeerError::Failed(e))) => Err(format!("install failed: {}", first_line(&e))),
            Err(e) => Err(format!("the installer panicked: {e}")),
        };
        match why {
            Ok(p) => Some(p),
            Err(why) => {
                report.skipped.push(format!(
                    "{}: skipped, {KCL_RS} cannot be installed ({why})",
                    Setup::KclRs.label()
                ));
                setups.retain(|s| *s != Setup::KclRs);
                None
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
    let clock = Instant::now();
    let load_before = load_average();
    eprintln!("failover bench: load {load_before}");

    if settings.calls {
        eprintln!(
            "DynamoDB calls: 4 idle workers for {} s ...",
            settings.calls_window.as_secs()
        );
        report.calls = count_calls(&stack, settings.calls_window, &out_dir).await;
        for c in &report.calls {
            eprintln!(
                "  heartbeats {} leases {}: {:?}",
                c.heartbeats, c.leases, c.counted
            );
        }
    }
    for &setup in &setups {
        let reps = if setup == Setup::KclRs {
            settings.peer_reps
        } else {
            settings.reps
        };
        let mut outcomes = Vec::new();
        for n in 1..=reps {
            eprintln!("{} trial {n} ...", setup.name());
            match one_trial(&stack, setup, n, python.as_deref(), &out_dir).await {
                Ok(o) => {
                    for note in &o.notes {
                        eprintln!("  note: {note}");
                    }
                    outcomes.push(o);
                }
                Err(e) => {
                    eprintln!("  FAILED: {e}");
                    report
                        .failures
                        .push(format!("{} trial {n}: {e}", setup.label()));
                }
            }
        }
        report.trials.push((setup, outcomes));
    }
    let load_after = load_average();
    let summary = render(&report, started, clock.elapsed(), &load_before, &load_after);
    println!("{summary}");
    let path = out_dir.join("summary.md");
    if let Err(e) = std::fs::write(&path, &summary) {
        eprintln!("cannot write {}: {e}", path.display());
    }
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The Java KCL 2.x's calls per worker per minute for `leases` leases at failover 10 s:
/// a renewal per lease every 3,308 ms, a scan every 20,050 ms.
fn java_calls_per_minute(leases: usize) -> f64 {
    60_000.0 / 3_308.0 * leases as f64 + 60_000.0 / 20_050.0
}

/// The markdown report.
fn render(
    report: &Report,
    started: SystemTime,
    took: Duration,
    load_before: &str,
    load_after: &str,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Run {} UTC, {} ({} cores), load average {load_before} before, {load_after} after; \
         the whole run took {:.1} min. Failover 10 s everywhere (each consumer's default; no \
         lease flag passed). Each trial: a fresh {SHARDS}-shard stream and application, \
         {WORKERS} workers, a producer putting {} records/s with random keys.\n",
        utc_minute(started),
        cpu_model(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        took.as_secs_f64() / 60.0,
        RECORDS_PER_PUT as f64 / PUT_EVERY.as_secs_f64(),
    );
    let _ = writeln!(
        s,
        "| consumer | trials | kill -9 → every shard of the killed worker printing again (min / median / max) | × failover (median) | ≤ 1.2 × failover (12 s)? | new worker: owns ⌊8/3⌋ = 2 leases (min / median / max) | new worker: first record (min / median / max) | share ≤ 2 s? |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for (setup, outcomes) in &report.trials {
        let resumed: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| o.resumed.map(|d| d.as_secs_f64()))
            .collect();
        let shares: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| o.join_share.map(|d| d.as_secs_f64()))
            .collect();
        let firsts: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| o.join_first.map(|d| d.as_secs_f64()))
            .collect();
        let all_resumed = resumed.len() == outcomes.len() && !outcomes.is_empty();
        let resume_met = if !all_resumed {
            "**no** (did not resume in every trial)".to_owned()
        } else if resumed.iter().all(|&r| r <= RESUME_TARGET.as_secs_f64()) {
            "yes".to_owned()
        } else {
            format!(
                "**no**: {} of {} over",
                resumed
                    .iter()
                    .filter(|&&r| r > RESUME_TARGET.as_secs_f64())
                    .count(),
                resumed.len()
            )
        };
        let (share_cell, first_cell, join_met) = if setup.joins() {
            let met = if shares.len() != outcomes.len() || outcomes.is_empty() {
                "**no** (share not reached in every trial)".to_owned()
            } else if shares.iter().all(|&x| x <= JOIN_TARGET.as_secs_f64()) {
                "yes".to_owned()
            } else {
                format!(
                    "**no**: {} of {} over",
                    shares
                        .iter()
                        .filter(|&&x| x > JOIN_TARGET.as_secs_f64())
                        .count(),
                    shares.len()
                )
            };
            (spread(&shares), spread(&firsts), met)
        } else {
            (
                "not measured".to_owned(),
                "not measured".to_owned(),
                "–".to_owned(),
            )
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {resume_met} | {share_cell} | {first_cell} | {join_met} |",
            setup.label(),
            outcomes.len(),
            spread(&resumed),
            if resumed.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.2} ×", median(resumed.clone()) / FAILOVER.as_secs_f64())
            },
        );
    }
    let _ = writeln!(
        s,
        "\nEach trial: balanced shape before the kill (workers in spawn order), time from \
         spawning the three workers to it, the killed worker's shards, kill → its leases owned \
         by others in the lease table (read every 0.1 s), kill → the first and the last of its \
         shards printing again from another worker, and the new worker's spawn → its share in \
         the table and its first record.\n"
    );
    let _ = writeln!(
        s,
        "| consumer | trial | balanced | after | killed worker's shards | kill → leases taken | kill → first shard again | kill → all shards again | new worker: share | new worker: first record | notes |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for (setup, outcomes) in &report.trials {
        for o in outcomes {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                setup.name(),
                o.number,
                o.shape,
                secs(o.balanced_after),
                o.victim_shards,
                secs(o.taken),
                secs(o.resumed_first),
                secs(o.resumed),
                if setup.joins() {
                    secs(o.join_share)
                } else {
                    "–".to_owned()
                },
                if setup.joins() {
                    secs(o.join_first)
                } else {
                    "–".to_owned()
                },
                o.notes.join("; "),
            );
        }
    }
    if !report.calls.is_empty() {
        let _ = writeln!(
            s,
            "\nDynamoDB calls of one idle worker alone on its stream, holding every lease, \
             counted in-process (`kinesis_consumer_dynamodb_calls_total`) over {} s after \
             start-up; the four workers ran at the same time, each in its own process. Java KCL \
             formula at failover 10 s: a renewal per lease every 3,308 ms (18.1 per lease per \
             minute) and a Scan every 20,050 ms (3.0 per worker per minute).\n",
            report.calls_window.as_secs()
        );
        let _ = writeln!(
            s,
            "| liveness | leases | calls in the window (by operation) | per worker per minute | per lease per minute | Java formula per worker per minute (18.1 · L + 3) | per lease | at or below Java? |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        let minutes = report.calls_window.as_secs_f64() / 60.0;
        for c in &report.calls {
            let liveness = if c.heartbeats {
                "heartbeats (default)"
            } else {
                "renewals (`with_worker_heartbeats(false)`)"
            };
            let java = java_calls_per_minute(c.leases);
            match &c.counted {
                Ok((n, ops)) => {
                    let per_min = *n as f64 / minutes;
                    let _ = writeln!(
                        s,
                        "| {liveness} | {} | {n} ({ops}) | {per_min:.1} | {:.1} | {java:.1} | {:.1} | {} |",
                        c.leases,
                        per_min / c.leases as f64,
                        java / c.leases as f64,
                        if per_min <= java + 1e-9 {
                            "yes".to_owned()
                        } else {
                            format!("**no** (+{:.1})", per_min - java)
                        }
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        s,
                        "| {liveness} | {} | failed: {e} | | | {java:.1} | {:.1} | |",
                        c.leases,
                        java / c.leases as f64
                    );
                }
            }
        }
    }
    for f in &report.failures {
        let _ = writeln!(s, "\nFAILED: {f}");
    }
    for note in &report.skipped {
        let _ = writeln!(s, "\n{note}");
    }
    s
}

/// `min / median / max` in seconds, or `–`.
fn spread(values: &[f64]) -> String {
    if values.is_empty() {
        return "–".to_owned();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() == 1 {
        return format!("{min:.2} s");
    }
    format!("{min:.2} / {:.2} / {max:.2} s", median(values.to_vec()))
}

/// Seconds with two decimals, or `–`.
fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "–".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
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

/// The first line of a (possibly long) message.
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
