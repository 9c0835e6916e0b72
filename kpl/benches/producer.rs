//! Producer benchmarks against the embedded Kinesis emulator, which runs in a child
//! process so that CPU time and peak RSS measured here are the producer's alone.
//!
//! ```text
//!  this process (bench)                         child process (same binary, server mode)
//!  raw PutRecords loop  ──HTTP──▶  ferrokinesis on 127.0.0.1 (prints its endpoint)
//!  Producer (agg / no agg) ──HTTP──▶
//!  peak-RSS mode: Producer ──▶ a socket that never answers (separate child, fresh RSS)
//! ```
//!
//! Run: `cargo bench -p kinesis-producer --bench producer` (release build; 3 rounds of the
//! three runs per size, `KPL_BENCH_ROUNDS` to change; `KPL_BENCH_ONLY=raw|plain|agg` for one
//! kind, e.g. to profile it). Prints one
//! table; BENCHMARKS.md keeps the figures.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use bytes::Bytes;
use kinesis_emulators::LocalStack;
use kinesis_producer::{Producer, ProducerRecord};

const MODE_VAR: &str = "KPL_BENCH_MODE";

fn main() {
    match std::env::var(MODE_VAR).as_deref() {
        Ok("server") => serve(),
        Ok("rss") => rss_probe(),
        _ => run_all(),
    }
}

/// Child: start the embedded stack, print the Kinesis endpoint, serve until stdin closes.
fn serve() {
    let stack = LocalStack::builder()
        .with_endpoint_overrides(Default::default())
        .start()
        .expect("local stack");
    println!("{}", stack.kinesis_endpoint());
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

/// Rounds of (raw, no aggregation, aggregation): `KPL_BENCH_ROUNDS`, default 3.
fn rounds() -> usize {
    std::env::var("KPL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3)
}

/// CPU seconds (user + system) used by this process so far, from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn payload(i: u64, size: usize) -> Bytes {
    let mut v = format!("{i:012}").into_bytes();
    v.resize(size, b'.');
    Bytes::from(v)
}

fn key(i: u64) -> String {
    format!("user-{:08}", (i.wrapping_mul(2_654_435_761)) % 1_000_000)
}

struct Run {
    records: u64,
    bytes: u64,
    secs: f64,
    cpu: f64,
    kinesis_records: u64,
    wire_bytes: u64,
}

impl Run {
    fn rps(&self) -> f64 {
        self.records as f64 / self.secs
    }
    fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
}

/// The peer: PutRecords of 500 records from `concurrency` tasks, same client, no library.
async fn raw_loop(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    n: u64,
    size: usize,
    concurrency: u64,
) -> Run {
    let next = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let stream = stream.to_owned();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let first = next.fetch_add(500, Ordering::Relaxed);
                if first >= n {
                    break;
                }
                let mut pending: Vec<u64> = (first..(first + 500).min(n)).collect();
                while !pending.is_empty() {
                    let entries = pending
                        .iter()
                        .map(|&i| {
                            PutRecordsRequestEntry::builder()
                                .data(Blob::new(payload(i, size).to_vec()))
                                .partition_key(key(i))
                                .build()
                                .unwrap()
                        })
                        .collect();
                    let out = client
                        .put_records()
                        .stream_name(&stream)
                        .set_records(Some(entries))
                        .send()
                        .await
                        .expect("PutRecords");
                    pending = pending
                        .iter()
                        .zip(out.records())
                        .filter(|(_, r)| r.error_code().is_some())
                        .map(|(i, _)| *i)
                        .collect();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    Run {
        records: n,
        bytes: n * size as u64,
        secs,
        cpu: cpu_seconds() - cpu0,
        kinesis_records: n,
        wire_bytes: (0..n).map(|i| (size + key(i).len()) as u64).sum(),
    }
}

async fn producer_run(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    n: u64,
    size: usize,
    aggregation: bool,
) -> Run {
    let producer = Producer::builder(client.clone())
        .with_aggregation(aggregation)
        .with_rate_limit_percent(10_000)
        .build()
        .unwrap();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<kinesis_producer::PutHandle>(100_000);
    let waiter = tokio::spawn(async move {
        let mut ok = 0u64;
        let mut failures = 0u64;
        while let Some(h) = rx.recv().await {
            match h.await {
                Ok(_) => ok += 1,
                Err(f) => {
                    if failures == 0 {
                        eprintln!("first failure: {f} {:?}", f.attempts.last());
                    }
                    failures += 1;
                }
            }
        }
        ok
    });
    for i in 0..n {
        let h = producer
            .put(ProducerRecord::new(stream, key(i), payload(i, size)))
            .await
            .unwrap();
        tx.send(h).await.unwrap();
    }
    drop(tx);
    let ok = waiter.await.unwrap();
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let stats = producer.stats();
    producer.shutdown().await;
    if std::env::var_os("KPL_BENCH_ONLY").is_some() {
        eprintln!("{secs:.2}s cpu {cpu:.2}s {stats:?}");
    }
    assert_eq!(ok, n, "every record delivered");
    Run {
        records: n,
        bytes: n * size as u64,
        secs,
        cpu,
        kinesis_records: stats.kinesis_records_sent,
        wire_bytes: stats.bytes_sent,
    }
}

async fn fresh_stream(client: &aws_sdk_kinesis::Client, run: &str, size: usize) -> String {
    let stream = format!("bench-{run}-{size}-{}", std::process::id());
    client
        .create_stream()
        .stream_name(&stream)
        .shard_count(8)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream
}

fn run_all() {
    let exe = std::env::current_exe().unwrap();
    let mut server = Command::new(&exe)
        .env(MODE_VAR, "server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("server child");
    let mut endpoint = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut endpoint)
        .unwrap();
    let endpoint = endpoint.trim().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "Producer benchmarks: emulator (ferrokinesis, release) in a child process at {endpoint}; \
         8 shards; `cpu µs/rec` is this process only."
    );
    println!();
    println!(
        "| records | size | run | user records/s | MB/s | vs raw: median (range) | cpu µs/rec | Kinesis recs per 1,000 | wire bytes / payload |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    rt.block_on(async {
        let client = integration_tests::kinesis::emulator_client(&endpoint);
        for (size, n_raw, n_agg) in [
            (100usize, 200_000u64, 1_000_000u64),
            (1024, 100_000, 300_000),
        ] {
            // Each run writes to a fresh stream: the emulator slows down as a stream fills,
            // and runs must not pay for each other's data. The three runs go in rounds
            // (raw, plain, agg, raw, ...) so that each ratio compares runs seconds apart;
            // the table shows each run's median round and the range of its ratio.
            let only = std::env::var("KPL_BENCH_ONLY").ok();
            let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
            let kinds: Vec<(&str, &str, u64, Option<bool>)> = [
                ("raw", "raw PutRecords loop (peer)", n_raw, None),
                ("plain", "producer, no aggregation", n_raw, Some(false)),
                ("agg", "producer, aggregation", n_agg, Some(true)),
            ]
            .into_iter()
            .filter(|(id, ..)| want(id))
            .collect();
            let mut runs: Vec<Vec<Run>> = kinds.iter().map(|_| Vec::new()).collect();
            for _round in 0..rounds() {
                for (k, (id, _, n, aggregation)) in kinds.iter().enumerate() {
                    let stream = fresh_stream(&client, id, size).await;
                    let run = match aggregation {
                        None => raw_loop(&client, &stream, *n, size, 24).await,
                        Some(a) => producer_run(&client, &stream, *n, size, *a).await,
                    };
                    runs[k].push(run);
                    let _ = client.delete_stream().stream_name(&stream).send().await;
                }
            }
            let raw = kinds.iter().position(|(id, ..)| *id == "raw");
            for (k, (_, name, ..)) in kinds.iter().enumerate() {
                // Ratios to the raw run of the same round.
                let mut ratios: Vec<f64> = match raw {
                    Some(raw) => runs[k]
                        .iter()
                        .zip(&runs[raw])
                        .map(|(r, peer)| r.rps() / peer.rps())
                        .collect(),
                    None => vec![1.0; runs[k].len()],
                };
                ratios.sort_by(f64::total_cmp);
                let mut by_rps: Vec<&Run> = runs[k].iter().collect();
                by_rps.sort_by(|a, b| a.rps().total_cmp(&b.rps()));
                let r = by_rps[by_rps.len() / 2];
                let mut cpu: Vec<f64> = runs[k]
                    .iter()
                    .map(|r| r.cpu / r.records as f64 * 1e6)
                    .collect();
                cpu.sort_by(f64::total_cmp);
                println!(
                    "| {} | {} B | {} | {:.0} | {:.1} | {:.2}x ({:.2}-{:.2}) | {:.2} | {:.1} | {:.3} |",
                    r.records,
                    size,
                    name,
                    r.rps(),
                    r.mbps(),
                    ratios[ratios.len() / 2],
                    ratios[0],
                    ratios[ratios.len() - 1],
                    cpu[cpu.len() / 2],
                    r.kinesis_records as f64 * 1000.0 / r.records as f64,
                    r.wire_bytes as f64 / r.bytes as f64,
                );
            }
        }
    });
    drop(server.stdin.take());
    let _ = server.wait();

    // Peak RSS: a fresh process, a 64 MiB budget, an endpoint that never answers.
    let out = Command::new(&exe)
        .env(MODE_VAR, "rss")
        .output()
        .expect("rss child");
    print!("\n{}", String::from_utf8_lossy(&out.stdout));
}

/// Child: fill a 64 MiB budget against a stalled endpoint and report peak RSS.
fn rss_probe() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let before = peak_rss_bytes();
        let budget = 64usize << 20;
        let producer = Producer::builder(integration_tests::kinesis::emulator_client(&format!(
            "http://{addr}"
        )))
        .with_max_outstanding_bytes(budget)
        .with_record_ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
        let mut handles = Vec::new();
        let mut accepted = 0u64;
        // 100 B records: the most records per budget byte, so the most bookkeeping.
        // Fill until put has waited 1 s for budget.
        loop {
            let r = ProducerRecord::new("stalled", key(accepted), payload(accepted, 100));
            match tokio::time::timeout(Duration::from_secs(1), producer.put(r)).await {
                Ok(h) => {
                    handles.push(h.unwrap());
                    accepted += 1;
                }
                Err(_) => break,
            }
        }
        let peak = peak_rss_bytes();
        println!(
            "Peak RSS with a 64 MiB budget and a stalled endpoint: {:.1} MiB at start, {:.1} MiB \
             peak after {} records of 100 B accepted (until put blocked): budget + {:.1} MiB",
            before as f64 / 1048576.0,
            peak as f64 / 1048576.0,
            accepted,
            (peak as f64 - budget as f64) / 1048576.0,
        );
        std::process::exit(0);
    });
}
