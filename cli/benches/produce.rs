//! Records/s and CPU per record of `kinesis-cat produce`, beside the producer library
//! putting the same records in this process, in the same run, against one emulator.
//!
//! ```text
//!  bench process                                       child processes
//!  library run: Producer::put × N ──PutRecords──┐
//!    (same records as the CLI makes: 100 B,     ├──▶ kinesis-cat local (ferrokinesis,
//!     a random 32-hex-digit key each)           │    release build; its CPU not counted)
//!  CLI run: N lines ──stdin pipe──▶ kinesis-cat produce ──PutRecords──┘
//!    (a feeder thread here)          (CPU: this process's reaped-children time)
//! ```
//!
//! Each run writes to a fresh 8-shard stream. The runs go in rounds (library, CLI with the
//! rate limit raised, CLI at its defaults, library, ...; 3 rounds, `PRODUCE_BENCH_ROUNDS` to
//! change), so that the ratio of each round compares runs seconds apart; the table shows
//! each run's median round by records/s and the range of its ratio to the library run of
//! the same round. `PRODUCE_BENCH_LINES` (default 300000) sets the records per run.
//!
//! - *library*: `Producer` at its defaults but the rate limit (10,000 %, as in the
//!   library's own bench: the emulator enforces no shard limits), records built in the
//!   put loop as the CLI builds them (a copy of a 100-byte line, a key of 32 random hex
//!   digits), outcomes counted by a task of their own; timed from the first `put` to the
//!   last outcome; CPU is this process's (user + system, `/proc/self/stat`) over that time.
//! - *CLI*: `kinesis-cat produce --stream S --rate-limit-percent 10000` (and at its
//!   default, 150 %) reading the lines from a pipe that a thread of this process fills;
//!   timed from spawning it to its exit (process start, AWS configuration, the shard map
//!   and the final flush included); CPU is its user + system time, read as this process's
//!   reaped-children time (`/proc/self/stat` fields 16 and 17) around the run.
//!
//! - *other CLI builds* (`PRODUCE_BENCH_CLIS`, see [`extra_clis`]): e.g. the CLI built with
//!   another allocator, or this one with `MALLOC_ARENA_MAX=2`, each at the raised rate
//!   limit; `scripts/bench-allocators.sh` builds the allocator variants and runs them.
//!
//! Run: `cargo bench -p kinesis-cat --bench produce`. BENCHMARKS.md keeps the figures.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use integration_tests::bench_host::{cpu_model, load_average, utc_minute};
use kinesis_producer::{Producer, ProducerRecord};

/// The CLI under test (cargo builds it for benches, release profile).
const BIN: &str = env!("CARGO_BIN_EXE_kinesis-cat");
/// Shards of each run's stream.
const SHARDS: i32 = 8;
/// Bytes of each line (its newline aside), and so of each record's data.
const LINE_BYTES: usize = 100;
/// The rate limit of the library run and the first CLI run: shard limits are not
/// enforced by the emulator, so the limiter would otherwise be what is measured.
const RAISED_RATE_LIMIT: u32 = 10_000;

/// One measured run.
#[derive(Debug, Clone)]
struct Run {
    records: u64,
    secs: f64,
    cpu_secs: f64,
    kinesis_records: u64,
}

impl Run {
    fn rps(&self) -> f64 {
        self.records as f64 / self.secs
    }

    fn cpu_us_per_record(&self) -> f64 {
        self.cpu_secs / self.records as f64 * 1e6
    }
}

/// What a round runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Library,
    Cli(CliRun),
}

/// A `kinesis-cat produce` run: which binary, with what environment and rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CliRun {
    /// What the table calls the binary: `None` for the one cargo built for this bench.
    name: Option<String>,
    /// The executable.
    bin: PathBuf,
    /// Variables set for it (e.g. `MALLOC_ARENA_MAX=2`).
    env: Vec<(String, String)>,
    /// `--rate-limit-percent`, or the CLI's default.
    rate_limit: Option<u32>,
}

impl Kind {
    fn label(&self) -> String {
        match self {
            Kind::Library => format!(
                "library: `Producer::put` in this process (rate limit {RAISED_RATE_LIMIT} %)"
            ),
            Kind::Cli(c) => {
                let mut label = match c.rate_limit {
                    Some(p) => format!("`kinesis-cat produce --rate-limit-percent {p}`"),
                    None => "`kinesis-cat produce` (defaults: rate limit 150 %)".to_owned(),
                };
                label.push_str(&format!(
                    ", {}",
                    c.name.as_deref().unwrap_or(this_build_allocator())
                ));
                for (k, v) in &c.env {
                    label.push_str(&format!(", {k}={v}"));
                }
                label
            }
        }
    }
}

/// The allocator of the CLI cargo built for this bench (the package's features).
fn this_build_allocator() -> &'static str {
    if cfg!(feature = "jemalloc") {
        "jemalloc"
    } else if cfg!(feature = "mimalloc") {
        "mimalloc"
    } else {
        "glibc malloc"
    }
}

/// The extra CLI runs of `PRODUCE_BENCH_CLIS`: entries separated by `;`, each
/// `name|path|VAR=value VAR=value` (an empty path is the bench's own build; the variables
/// are optional), all at the raised rate limit.
fn extra_clis(spec: &str) -> Result<Vec<CliRun>, String> {
    spec.split(';')
        .filter(|e| !e.trim().is_empty())
        .map(|entry| {
            let mut parts = entry.splitn(3, '|');
            let name = parts.next().unwrap_or_default().trim();
            let path = parts.next().unwrap_or_default().trim();
            let env = parts
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .map(|kv| {
                    kv.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| format!("PRODUCE_BENCH_CLIS: {kv:?} is not VAR=value"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if name.is_empty() {
                return Err(format!("PRODUCE_BENCH_CLIS: {entry:?} has no name"));
            }
            let bin = if path.is_empty() {
                PathBuf::from(BIN)
            } else {
                PathBuf::from(path)
            };
            if !bin.is_file() {
                return Err(format!("PRODUCE_BENCH_CLIS: {bin:?} is not a file"));
            }
            Ok(CliRun {
                name: Some(name.to_owned()),
                bin,
                env,
                rate_limit: Some(RAISED_RATE_LIMIT),
            })
        })
        .collect()
}

fn number(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn main() -> ExitCode {
    // `cargo test --benches` runs bench binaries without `--bench`: nothing to check here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("produce: a benchmark; run it with `cargo bench -p kinesis-cat --bench produce`");
        return ExitCode::SUCCESS;
    }
    let lines = number("PRODUCE_BENCH_LINES", 300_000);
    let rounds = number("PRODUCE_BENCH_ROUNDS", 3);
    let (mut server, endpoint) = match start_emulator() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("produce bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let input: Arc<Vec<u8>> = Arc::new(
        (0..lines)
            .flat_map(|i| {
                let mut line = format!("{i:012}").into_bytes();
                line.resize(LINE_BYTES, b'.');
                line.push(b'\n');
                line
            })
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let client = integration_tests::kinesis::emulator_client(&endpoint);
    let load_before = load_average();
    let this_build = |rate_limit| {
        Kind::Cli(CliRun {
            name: None,
            bin: PathBuf::from(BIN),
            env: Vec::new(),
            rate_limit,
        })
    };
    let mut kinds = vec![
        Kind::Library,
        this_build(Some(RAISED_RATE_LIMIT)),
        this_build(None),
    ];
    match extra_clis(&std::env::var("PRODUCE_BENCH_CLIS").unwrap_or_default()) {
        Ok(extra) => kinds.extend(extra.into_iter().map(Kind::Cli)),
        Err(e) => {
            eprintln!("produce bench: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut runs: Vec<Vec<Run>> = kinds.iter().map(|_| Vec::new()).collect();
    let mut failure = None;
    'rounds: for round in 0..rounds {
        for (k, kind) in kinds.iter().enumerate() {
            let stream = format!("produce-bench-{round}-{k}-{}", std::process::id());
            runtime.block_on(integration_tests::kinesis::create_active_stream(
                &client, &stream, SHARDS,
            ));
            let run = match kind {
                Kind::Library => Ok(runtime.block_on(library_run(&client, &stream, &input))),
                Kind::Cli(cli) => cli_run(&endpoint, &stream, &input, cli),
            };
            let _ = runtime.block_on(client.delete_stream().stream_name(&stream).send());
            match run {
                Ok(run) => runs[k].push(run),
                Err(e) => {
                    failure = Some(e);
                    break 'rounds;
                }
            }
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    if let Some(e) = failure {
        eprintln!("produce bench: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "kinesis-cat produce vs the producer library: {lines} records of {LINE_BYTES} B, \
         {SHARDS} shards, ferrokinesis (`kinesis-cat local`, release) in a child process; \
         {rounds} rounds; {} UTC; {}; load average before {load_before}, after {}",
        utc_minute(std::time::SystemTime::now()),
        cpu_model(),
        load_average(),
    );
    println!();
    println!(
        "| run | records/s (median round) | vs library: median (range) | CPU µs/record (median) | Kinesis records per 1,000 |"
    );
    println!("|---|---|---|---|---|");
    for (k, kind) in kinds.iter().enumerate() {
        let mut ratios: Vec<f64> = runs[k]
            .iter()
            .zip(&runs[0])
            .map(|(r, lib)| r.rps() / lib.rps())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let mut by_rps: Vec<&Run> = runs[k].iter().collect();
        by_rps.sort_by(|a, b| a.rps().total_cmp(&b.rps()));
        let median = by_rps[by_rps.len() / 2];
        let mut cpu: Vec<f64> = runs[k].iter().map(Run::cpu_us_per_record).collect();
        cpu.sort_by(f64::total_cmp);
        println!(
            "| {} | {:.0} | {:.2}x ({:.2}-{:.2}) | {:.2} | {:.1} |",
            kind.label(),
            median.rps(),
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
            cpu[cpu.len() / 2],
            median.kinesis_records as f64 * 1000.0 / median.records as f64,
        );
    }
    println!();
    println!("Every round, records/s and CPU µs/record:");
    for (k, kind) in kinds.iter().enumerate() {
        let each: Vec<String> = runs[k]
            .iter()
            .map(|r| format!("{:.0} ({:.2})", r.rps(), r.cpu_us_per_record()))
            .collect();
        println!("- {}: {}", kind.label(), each.join(", "));
    }
    ExitCode::SUCCESS
}

/// Starts `kinesis-cat local` on free ports; returns it and its Kinesis endpoint.
fn start_emulator() -> Result<(Child, String), String> {
    let mut server = Command::new(BIN)
        .args(["local", "--kinesis-port", "0", "--dynamodb-port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start {BIN} local: {e}"))?;
    let stdout = server.stdout.take().ok_or("no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading {BIN} local: {e}"))?;
        if let Some(endpoint) = line.strip_prefix("export AWS_ENDPOINT_URL_KINESIS=") {
            return Ok((server, endpoint.trim().to_owned()));
        }
    }
    let _ = server.kill();
    Err(format!("{BIN} local printed no Kinesis endpoint"))
}

/// User + system CPU seconds of this process's reaped children (`/proc/self/stat`
/// fields 16 and 17, in clock ticks of 1/100 s on Linux).
fn reaped_children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // Field 3 (the state) is the first after ')': fields 16 and 17 are at 13 and 14.
    (f.get(13).copied().unwrap_or(0.0) + f.get(14).copied().unwrap_or(0.0)) / 100.0
}

/// This process's own user + system CPU seconds (`/proc/self/stat` fields 14 and 15).
fn own_cpu() -> f64 {
    integration_tests::bench_host::cpu_of(std::process::id()).map_or(0.0, |d| d.as_secs_f64())
}

/// The CLI reading `input` from a pipe.
fn cli_run(
    endpoint: &str,
    stream: &str,
    input: &Arc<Vec<u8>>,
    cli: &CliRun,
) -> Result<Run, String> {
    let lines = input.iter().filter(|&&b| b == b'\n').count() as u64;
    let mut cmd = Command::new(&cli.bin);
    cmd.args(["produce", "--stream", stream])
        .env("AWS_ENDPOINT_URL_KINESIS", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(p) = cli.rate_limit {
        cmd.args(["--rate-limit-percent", &p.to_string()]);
    }
    cmd.envs(cli.env.iter().map(|(k, v)| (k, v)));
    let cpu0 = reaped_children_cpu();
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not run {:?}: {e}", cli.bin))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let feed = input.clone();
    let feeder = std::thread::spawn(move || stdin.write_all(&feed));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {:?}: {e}", cli.bin))?;
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = reaped_children_cpu() - cpu0;
    let fed = feeder.join().map_err(|_| "the feeder thread panicked")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || fed.is_err() {
        return Err(format!(
            "kinesis-cat produce failed ({}): {stderr}",
            out.status
        ));
    }
    let want = format!("{lines} delivered, 0 failed");
    if !stderr.contains(&want) {
        return Err(format!("expected {want:?} in: {stderr}"));
    }
    // "... delivered, ... failed (... bad lines), <n> Kinesis records in ..."
    let kinesis_records = stderr
        .split(" Kinesis records")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Ok(Run {
        records: lines,
        secs,
        cpu_secs,
        kinesis_records,
    })
}

/// The library putting the records the CLI would make of `input`.
async fn library_run(client: &aws_sdk_kinesis::Client, stream: &str, input: &[u8]) -> Run {
    let producer = Producer::builder(client.clone())
        .with_rate_limit_percent(RAISED_RATE_LIMIT)
        .build()
        .expect("producer");
    let cpu0 = own_cpu();
    let start = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<kinesis_producer::PutHandle>();
    let counter = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u64, 0u64);
        while let Some(h) = rx.recv().await {
            match h.await {
                Ok(_) => ok += 1,
                Err(_) => failed += 1,
            }
        }
        (ok, failed)
    });
    let mut records = 0u64;
    for line in input.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let key = format!("{:032x}", rand::random::<u128>());
        let record = ProducerRecord::new(stream, key, Bytes::copy_from_slice(line));
        let handle = producer.put(record).await.expect("accepted");
        tx.send(handle).expect("the counter runs");
        records += 1;
    }
    drop(tx);
    let (ok, failed) = counter.await.expect("counter");
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = own_cpu() - cpu0;
    let stats = producer.stats();
    producer.shutdown().await;
    assert_eq!((ok, failed), (records, 0), "every record delivered");
    Run {
        records,
        secs,
        cpu_secs,
        kinesis_records: stats.kinesis_records_sent,
    }
}
