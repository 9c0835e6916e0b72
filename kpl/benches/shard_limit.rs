//! The producer at the shard limit: the embedded emulator enforces Kinesis' write limits
//! (1 MiB/s and 1,000 records/s per shard), a caller puts 100 B records as fast as the
//! producer accepts them, and the bench reports the user records delivered per second in
//! steady state against the bound the limits set, with the failed records and the
//! throttling; aiokpl (a pure-Python KPL equivalent) producing the same records to the
//! same emulator is the peer, in the same run.
//!
//! ```text
//!  this process (bench)                           child: this binary as the emulator
//!  ours: put loop ─▶ Producer ──PutRecords──┐     ferrokinesis, enforce_limits
//!        counter task ◀─ PutHandle          ├──▶  (per-record ProvisionedThroughput-
//!  peer: python aiokpl_producer.py ─────────┘      ExceededException past the limits)
//!  each run: fresh 8-shard stream ─ warm-up ─ measured window ─ stop, settle everything
//!            ─ read the stream back (wire bytes per user record, records in the stream)
//! ```
//!
//! Run: `cargo bench -p kinesis-producer --bench shard_limit` (release build; installs the
//! pinned aiokpl once under `<target>/peers/aiokpl-venv`, and reports its runs as skipped
//! when PyPI cannot be reached). `SHARD_LIMIT_BENCH_WARMUP` (seconds, default 5),
//! `SHARD_LIMIT_BENCH_SECS` (the measured window, default 25), `SHARD_LIMIT_BENCH_RATE_LIMITS`
//! (our producer's rate limits in per cent, comma-separated, default `150`: its default),
//! `SHARD_LIMIT_BENCH_ONLY=ours|aiokpl`, `SHARD_LIMIT_BENCH_MAX_BACKOFF_MS` (our producer's
//! largest backoff, default its own: 2,000). BENCHMARKS.md keeps the figures.
//!
//! - *Bound*: 8 shards × 1 MiB/s ÷ the bytes (data plus partition key, what Kinesis
//!   charges) per user record of what was written, read back from the stream; and at most
//!   8 × 1,000 Kinesis records/s times the user records per Kinesis record. Without
//!   aggregation the record limit binds: 8,000 records/s. ferrokinesis charges the data
//!   alone, so on it a little more gets through: that bound is printed too.
//! - *Rate*: user records delivered during the window (the producer's own counter for
//!   ours; outcomes awaited in put order for aiokpl), over the window's length.
//! - *CPU*: user + system CPU of the producing process during the window, per record
//!   delivered in it (the emulator runs in its own process).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use integration_tests::bench_emulator::{serve_if_child, EmulatorChild, WriteLimits};
use integration_tests::bench_host::{bench_main, cpu_model, cpu_of, load_average, utc_minute};
use integration_tests::kinesis::{emulator_client, list_shards, read_shard, Start};
use kinesis_producer::{Producer, ProducerRecord};

/// Shards of each run's stream.
const SHARDS: i32 = 8;
/// Bytes of data of each user record.
const RECORD_BYTES: usize = 100;
/// Kinesis' write limits per shard (AWS, "Kinesis Data Streams quotas and limits").
const SHARD_BYTES_PER_SEC: f64 = 1_048_576.0;
/// See [`SHARD_BYTES_PER_SEC`].
const SHARD_RECORDS_PER_SEC: f64 = 1_000.0;
/// The peer's `max_outstanding_records`: at its rate, its default (100,000) would keep
/// records waiting longer than their 30 s TTL, which would measure the caller, not it.
const PEER_OUTSTANDING: usize = 20_000;

/// The record the bench puts as number `i` (the peer's script makes the same).
fn record(i: u64) -> (String, Bytes) {
    let key = format!("user-{:08}", i.wrapping_mul(2_654_435_761) % 1_000_000);
    let mut data = format!("{i:012}").into_bytes();
    data.resize(RECORD_BYTES, b'.');
    (key, Bytes::from(data))
}

/// What the environment asks for.
#[derive(Debug, Clone)]
struct Settings {
    warmup: Duration,
    window: Duration,
    rate_limits: Vec<u32>,
    only: Option<String>,
    /// Our producer's largest backoff, when not its default (to study throttling).
    max_backoff: Option<Duration>,
}

fn settings() -> Result<Settings, String> {
    let secs = |var: &str, default: f64| -> Result<Duration, String> {
        match std::env::var(var) {
            Err(_) => Ok(Duration::from_secs_f64(default)),
            Ok(v) => v
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && s.is_finite())
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{var}={v:?}: expected a positive number of seconds")),
        }
    };
    let rate_limits = match std::env::var("SHARD_LIMIT_BENCH_RATE_LIMITS") {
        Err(_) => vec![150],
        Ok(v) => v
            .split(',')
            .map(|p| p.trim().parse::<u32>().ok().filter(|&p| p > 0))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| {
                format!("SHARD_LIMIT_BENCH_RATE_LIMITS={v:?}: expected per cents like 150,100")
            })?,
    };
    let only = std::env::var("SHARD_LIMIT_BENCH_ONLY").ok();
    if let Some(o) = only.as_deref().filter(|o| !matches!(*o, "ours" | "aiokpl")) {
        return Err(format!(
            "SHARD_LIMIT_BENCH_ONLY={o:?}: expected ours or aiokpl"
        ));
    }
    Ok(Settings {
        warmup: secs("SHARD_LIMIT_BENCH_WARMUP", 5.0)?,
        window: secs("SHARD_LIMIT_BENCH_SECS", 25.0)?,
        rate_limits,
        only,
        max_backoff: match std::env::var("SHARD_LIMIT_BENCH_MAX_BACKOFF_MS") {
            Err(_) => None,
            Ok(v) => Some(
                v.parse::<u64>()
                    .ok()
                    .filter(|&ms| ms >= 50)
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        format!("SHARD_LIMIT_BENCH_MAX_BACKOFF_MS={v:?}: expected at least 50")
                    })?,
            ),
        },
    })
}

/// One run of the table.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Ours { aggregation: bool, rate_limit: u32 },
    Aiokpl { aggregation: bool },
}

impl Kind {
    fn aggregation(self) -> bool {
        match self {
            Kind::Ours { aggregation, .. } | Kind::Aiokpl { aggregation } => aggregation,
        }
    }

    fn label(self) -> String {
        let agg = if self.aggregation() {
            "aggregation"
        } else {
            "no aggregation"
        };
        match self {
            Kind::Ours { rate_limit, .. } => {
                format!("ours, {agg}, rate limit {rate_limit} %")
            }
            Kind::Aiokpl { .. } => format!("aiokpl 0.2.0 (peer), {agg}"),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
struct Measured {
    /// User records delivered during the window.
    delivered_in_window: u64,
    window_secs: f64,
    cpu_secs_in_window: f64,
    /// Totals over the whole run, everything settled.
    put: u64,
    delivered: u64,
    failed: u64,
    /// Ours: Kinesis records refused with throttling. aiokpl: user-record attempts.
    throttles: u64,
    /// Ours: `PutRecords` calls; aiokpl: not known.
    calls: Option<u64>,
    first_failure: Option<String>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.delivered_in_window as f64 / self.window_secs
    }
}

/// What the stream holds after a run.
#[derive(Debug, Clone, Copy, Default)]
struct Written {
    kinesis_records: u64,
    user_records: u64,
    data_bytes: u64,
    key_bytes: u64,
}

impl Written {
    /// User records/s that 8 shards take of what was written, charging `bytes` per
    /// Kinesis record's bytes (data plus key, or the data alone).
    fn bound(&self, bytes: u64) -> f64 {
        let shards = f64::from(SHARDS);
        let per_kinesis = self.user_records as f64 / self.kinesis_records.max(1) as f64;
        let by_bytes = shards * SHARD_BYTES_PER_SEC * self.user_records as f64 / bytes as f64;
        let by_records = shards * SHARD_RECORDS_PER_SEC * per_kinesis;
        by_bytes.min(by_records)
    }

    fn kinesis_bound(&self) -> f64 {
        self.bound(self.data_bytes + self.key_bytes)
    }

    fn emulator_bound(&self) -> f64 {
        self.bound(self.data_bytes)
    }

    fn wire_bytes_per_user_record(&self) -> f64 {
        (self.data_bytes + self.key_bytes) as f64 / self.user_records.max(1) as f64
    }
}

fn main() -> ExitCode {
    if serve_if_child() {
        return ExitCode::SUCCESS;
    }
    bench_main("kinesis-producer", "shard_limit", settings, run)
}

async fn run(s: Settings) -> ExitCode {
    let emulator = match EmulatorChild::spawn(WriteLimits::Enforced) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("shard_limit bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = emulator_client(emulator.endpoint());
    let want = |who: &str| s.only.as_deref().is_none_or(|o| o == who);
    let peer = if want("aiokpl") {
        integration_tests::peers::available(&integration_tests::peers::aiokpl(), "aiokpl")
    } else {
        None
    };
    let load_before = load_average();
    let mut kinds = Vec::new();
    for aggregation in [true, false] {
        if want("ours") {
            for &rate_limit in &s.rate_limits {
                kinds.push(Kind::Ours {
                    aggregation,
                    rate_limit,
                });
            }
        }
        if peer.is_some() {
            kinds.push(Kind::Aiokpl { aggregation });
        }
    }
    let mut rows = Vec::new();
    for (k, kind) in kinds.iter().enumerate() {
        let stream = format!("shard-limit-{k}-{}", std::process::id());
        integration_tests::kinesis::create_active_stream(&client, &stream, SHARDS).await;
        let server_cpu0 = cpu_of(emulator.pid()).unwrap_or_default();
        let measured = match kind {
            Kind::Ours {
                aggregation,
                rate_limit,
            } => Ok(ours(&client, &stream, *aggregation, *rate_limit, &s).await),
            Kind::Aiokpl { aggregation } => {
                let python = peer.as_deref().expect("the peer is installed");
                aiokpl(python, emulator.endpoint(), &stream, *aggregation, &s)
            }
        };
        let server_cpu = cpu_of(emulator.pid()).unwrap_or_default() - server_cpu0;
        let written = read_back(&client, &stream).await;
        let _ = client.delete_stream().stream_name(&stream).send().await;
        match measured {
            Ok(m) => {
                eprintln!(
                    "{}: {:.0} user records/s, {m:?}, {written:?}, emulator CPU {server_cpu:?}",
                    kind.label(),
                    m.rate()
                );
                rows.push((*kind, m, written));
            }
            Err(e) => {
                eprintln!("shard_limit bench: {}: {e}", kind.label());
                return ExitCode::FAILURE;
            }
        }
    }
    drop(emulator);
    print_table(&s, &rows, &load_before);
    ExitCode::SUCCESS
}

fn print_table(s: &Settings, rows: &[(Kind, Measured, Written)], load_before: &str) {
    println!(
        "At the shard limit: ferrokinesis with enforce_limits (child process), {SHARDS} shards, \
         {RECORD_BYTES} B records, keys from a pool of 1,000,000; warm-up {:.0} s, window {:.0} s; \
         {} UTC; {}; load average before {load_before}, after {}",
        s.warmup.as_secs_f64(),
        s.window.as_secs_f64(),
        utc_minute(std::time::SystemTime::now()),
        cpu_model(),
        load_average(),
    );
    println!();
    println!(
        "| run | user records/s | bound (8 MiB/s ÷ wire bytes, or 8,000 Kinesis records/s) | % of bound | % of ferrokinesis' bound (data only) | wire bytes / user record | failed | throttled | PutRecords calls | CPU µs/record |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (kind, m, w) in rows {
        let throttled = match kind {
            Kind::Ours { .. } => format!("{} Kinesis records", m.throttles),
            Kind::Aiokpl { .. } => format!("{} user-record attempts", m.throttles),
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.1} % | {:.1} % | {:.1} | {} of {} | {} | {} | {:.1} |",
            kind.label(),
            m.rate(),
            w.kinesis_bound(),
            100.0 * m.rate() / w.kinesis_bound(),
            100.0 * m.rate() / w.emulator_bound(),
            w.wire_bytes_per_user_record(),
            m.failed,
            m.put,
            throttled,
            m.calls.map_or("–".to_owned(), |c| c.to_string()),
            m.cpu_secs_in_window / m.delivered_in_window.max(1) as f64 * 1e6,
        );
    }
    for (kind, m, w) in rows {
        if m.delivered != w.user_records || m.failed > 0 {
            println!(
                "\n{}: {} delivered, {} user records in the stream, {} failed (first: {:?})",
                kind.label(),
                m.delivered,
                w.user_records,
                m.failed,
                m.first_failure
            );
        }
    }
}

/// Our producer at its defaults (but the rate limit) for warm-up + window, then settled.
async fn ours(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    aggregation: bool,
    rate_limit: u32,
    s: &Settings,
) -> Measured {
    let mut builder = Producer::builder(client.clone())
        .with_aggregation(aggregation)
        .with_rate_limit_percent(rate_limit);
    if let Some(max) = s.max_backoff {
        builder = builder.with_backoff(Duration::from_millis(50), max);
    }
    let producer = builder.build().expect("producer");
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<kinesis_producer::PutHandle>();
    let putter = {
        let (producer, stop, stream) = (producer.clone(), stop.clone(), stream.to_owned());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (key, data) = record(i);
                let handle = producer
                    .put(ProducerRecord::new(stream.as_str(), key, data))
                    .await
                    .expect("accepted");
                if tx.send(handle).is_err() {
                    break;
                }
                i += 1;
            }
        })
    };
    let counter = tokio::spawn(async move {
        let mut first_failure = None;
        while let Some(h) = rx.recv().await {
            if let Err(f) = h.await {
                first_failure.get_or_insert_with(|| f.to_string());
            }
        }
        first_failure
    });
    let me = std::process::id();
    tokio::time::sleep(s.warmup).await;
    let (t0, s0, c0) = (Instant::now(), producer.stats(), cpu_of(me));
    tokio::time::sleep(s.window).await;
    let (t1, s1, c1) = (Instant::now(), producer.stats(), cpu_of(me));
    stop.store(true, Ordering::Relaxed);
    putter.await.expect("the put loop");
    let first_failure = counter.await.expect("the counter");
    let end = producer.stats();
    producer.shutdown().await;
    Measured {
        delivered_in_window: s1.user_records_delivered - s0.user_records_delivered,
        window_secs: (t1 - t0).as_secs_f64(),
        cpu_secs_in_window: c1.unwrap_or_default().as_secs_f64()
            - c0.unwrap_or_default().as_secs_f64(),
        put: end.user_records_put,
        delivered: end.user_records_delivered,
        failed: end.user_records_failed,
        throttles: end.throttles,
        calls: Some(end.put_records_calls),
        first_failure,
    }
}

/// The peer's script (`shard_limit/aiokpl_producer.py`) run by the venv's `python`.
fn aiokpl(
    python: &Path,
    endpoint: &str,
    stream: &str,
    aggregation: bool,
    s: &Settings,
) -> Result<Measured, String> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/shard_limit/aiokpl_producer.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(endpoint)
        .arg(stream)
        .arg(if aggregation { "1" } else { "0" })
        .arg(s.warmup.as_secs_f64().to_string())
        .arg(s.window.as_secs_f64().to_string())
        .arg(PEER_OUTSTANDING.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {python:?} {script:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "the aiokpl script failed ({}): {stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("the aiokpl script printed {stdout:?}: {e}"))?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Ok(Measured {
        delivered_in_window: n("delivered_in_window"),
        window_secs: f("window_secs"),
        cpu_secs_in_window: f("cpu_secs_in_window"),
        put: n("put"),
        delivered: n("delivered"),
        failed: n("failed"),
        throttles: n("throttled_attempts"),
        calls: None,
        first_failure: v["failure"].as_str().map(str::to_owned),
    })
}

/// Reads every shard from `TRIM_HORIZON` and counts what was written.
async fn read_back(client: &aws_sdk_kinesis::Client, stream: &str) -> Written {
    let mut w = Written::default();
    for shard in list_shards(client, stream).await {
        let read = read_shard(
            client,
            stream,
            shard.shard_id(),
            Start::TrimHorizon,
            Some(10_000),
            0,
            Duration::from_secs(120),
        )
        .await;
        for r in read.records {
            let key = r.partition_key().unwrap_or_default();
            w.kinesis_records += 1;
            w.data_bytes += r.data().as_ref().len() as u64;
            w.key_bytes += key.len() as u64;
            let data = Bytes::copy_from_slice(r.data().as_ref());
            w.user_records += kinesis_agg::deaggregate(key, data).map_or(1, |d| d.total as u64);
        }
    }
    w
}
