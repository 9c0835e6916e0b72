//! `put` against `put_all` (and `Producer::sink`, which batches into it): the producer's CPU
//! time per record, 100 B records with
//! aggregation, both against the same embedded Kinesis emulator, which runs in a child
//! process (this binary, started again in server mode) so that the CPU time measured here
//! (`getrusage`, user + system, this process only) is the producer's and the bench's own.
//!
//! ```text
//!  this process                                     child process (same binary)
//!  round k: put ×N         ──HTTP──▶  ferrokinesis on 127.0.0.1, fresh stream per run
//!           put_all (N/B batches of B)  ──HTTP──▶
//! ```
//!
//! Run: `cargo bench -p kinesis-producer --bench batched` (release build). Environment:
//! `KPL_BATCH_RECORDS` (default 1,000,000 per run), `KPL_BATCH_SIZE` (records per
//! `put_all`, default 500), `KPL_BENCH_ROUNDS` (default 3; the table shows each kind's
//! median round). BENCHMARKS.md keeps the figures.

use std::time::{Duration, Instant};

use bytes::Bytes;
use integration_tests::bench_emulator::{serve_if_child, EmulatorChild, WriteLimits};
use kinesis_producer::{Producer, ProducerRecord, PutHandle};
use nix::sys::resource::{getrusage, UsageWho};

/// Record payload size, in bytes.
const SIZE: usize = 100;

fn main() {
    if serve_if_child() {
        return; // this process was the emulator
    }
    compare();
}

/// A positive number from the environment, or `default`.
fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// User + system CPU time of this process, from `getrusage(RUSAGE_SELF)`.
fn cpu_time() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let d =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1_000);
    d(usage.user_time()) + d(usage.system_time())
}

/// Record `i`: a spread-out key, `SIZE` bytes of data starting with its number.
fn record(stream: &str, i: u64) -> ProducerRecord {
    let mut data = format!("{i:012}").into_bytes();
    data.resize(SIZE, b'.');
    let key = format!("user-{:08}", i.wrapping_mul(2_654_435_761) % 1_000_000);
    ProducerRecord::new(stream, key, Bytes::from(data))
}

/// What one run measured.
struct Measured {
    /// Wall-clock seconds from the first put to the last outcome.
    secs: f64,
    /// CPU time of this process over the same span.
    cpu: Duration,
}

/// How the records are handed to the producer.
#[derive(Clone, Copy)]
enum Kind {
    /// One `put` per record.
    Put,
    /// `put_all` in batches of this many.
    PutAll(u64),
    /// Streamed into `Producer::sink`, batches of this many, outcomes read from its stream.
    Sink(u64),
}

/// Puts `n` records the `kind` way, awaits every outcome, and checks that all were
/// delivered.
async fn run(client: &aws_sdk_kinesis::Client, stream: &str, n: u64, kind: Kind) -> Measured {
    let producer = Producer::builder(client.clone())
        .with_aggregation(true)
        .with_rate_limit_percent(10_000)
        .build()
        .unwrap();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let delivered = match kind {
        Kind::Put => {
            // As the producer bench does: handles awaited by another task as they come.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<PutHandle>(100_000);
            let waiter = tokio::spawn(async move {
                let mut ok = 0u64;
                while let Some(h) = rx.recv().await {
                    ok += u64::from(h.await.is_ok());
                }
                ok
            });
            for i in 0..n {
                let h = producer.put(record(stream, i)).await.unwrap();
                tx.send(h).await.unwrap();
            }
            drop(tx);
            waiter.await.unwrap()
        }
        Kind::Sink(b) => {
            use futures::{SinkExt, StreamExt};
            let (mut sink, outcomes) = producer
                .sink_builder()
                .with_batch_records(b as usize)
                .build()
                .unwrap();
            let waiter = tokio::spawn(async move {
                outcomes
                    .fold(0u64, |ok, o| async move { ok + u64::from(o.is_ok()) })
                    .await
            });
            let mut input = futures::stream::iter((0..n).map(|i| Ok(record(stream, i))));
            sink.send_all(&mut input).await.unwrap();
            sink.close().await.unwrap();
            waiter.await.unwrap()
        }
        Kind::PutAll(b) => {
            let (tx, mut rx) = tokio::sync::mpsc::channel(100_000);
            let waiter = tokio::spawn(async move {
                let mut ok = 0u64;
                while let Some(h) = rx.recv().await {
                    let outcomes: Vec<kinesis_producer::Outcome> = h.await;
                    ok += outcomes.iter().filter(|o| o.is_ok()).count() as u64;
                }
                ok
            });
            let mut first = 0;
            while first < n {
                let last = (first + b).min(n);
                let h = producer
                    .put_all((first..last).map(|i| record(stream, i)))
                    .await
                    .unwrap();
                tx.send(h).await.unwrap();
                first = last;
            }
            drop(tx);
            waiter.await.unwrap()
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu0;
    producer.shutdown().await;
    assert_eq!(delivered, n, "every record delivered");
    Measured { secs, cpu }
}

fn compare() {
    let n = env_or("KPL_BATCH_RECORDS", 1_000_000);
    let b = env_or("KPL_BATCH_SIZE", 500);
    let rounds = env_or("KPL_BENCH_ROUNDS", 3);
    let emulator = EmulatorChild::spawn(WriteLimits::Off).expect("emulator child");
    let endpoint = emulator.endpoint().to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let kinds: [(&str, Kind); 3] = [
        ("put", Kind::Put),
        ("put_all", Kind::PutAll(b)),
        ("sink", Kind::Sink(b)),
    ];
    let mut results: Vec<Vec<Measured>> = kinds.iter().map(|_| Vec::new()).collect();
    rt.block_on(async {
        let client = integration_tests::kinesis::emulator_client(&endpoint);
        // Alternating rounds, each run on a fresh stream of 8 shards (the emulator slows
        // down as a stream fills), so that both kinds see the same machine load.
        for round in 0..rounds {
            for (k, (name, kind)) in kinds.iter().enumerate() {
                let stream = format!("batched-{name}-{round}-{}", std::process::id());
                client
                    .create_stream()
                    .stream_name(&stream)
                    .shard_count(8)
                    .send()
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
                results[k].push(run(&client, &stream, n, *kind).await);
                let _ = client.delete_stream().stream_name(&stream).send().await;
            }
        }
    });
    drop(emulator);
    println!(
        "put vs put_all vs sink: {n} records of {SIZE} B per run, aggregation on, 8 shards, emulator \
         (ferrokinesis) in a child process at {endpoint}; {rounds} alternating rounds, median \
         round shown; `cpu µs/rec` is this process only (getrusage)."
    );
    println!();
    println!("| API | user records/s | cpu µs/rec (median) | cpu µs/rec (all rounds) |");
    println!("|---|---|---|---|");
    for ((_, kind), runs) in kinds.iter().zip(&results) {
        let mut per_rec: Vec<f64> = runs
            .iter()
            .map(|m| m.cpu.as_secs_f64() / n as f64 * 1e6)
            .collect();
        let all = per_rec
            .iter()
            .map(|c| format!("{c:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        per_rec.sort_by(f64::total_cmp);
        let mut rps: Vec<f64> = runs.iter().map(|m| n as f64 / m.secs).collect();
        rps.sort_by(f64::total_cmp);
        let label = match kind {
            Kind::Put => "`put`".to_owned(),
            Kind::PutAll(b) => format!("`put_all`, batches of {b}"),
            Kind::Sink(b) => format!("`sink`, batches of {b}"),
        };
        println!(
            "| {label} | {:.0} | {:.2} | {all} |",
            rps[rps.len() / 2],
            per_rec[per_rec.len() / 2],
        );
    }
}
