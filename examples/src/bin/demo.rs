//! The demo: one producer and a fleet of consumer workers, on the embedded emulators (or on
//! whatever `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL_DYNAMODB` point at).
//!
//! ```text
//!  Producer ──put 50,000 records (500 keys)──▶ stream "demo-…" (6 shards) ──▶ worker-1 ┐
//!     │ every record: Delivered(shard, seq, sub-seq)       lease table ◀──────▶ worker-2 ├─ count,
//!     │                                                   (DynamoDB)           worker-3 ┘  checkpoint
//!     └─ optional: split a shard half way (--reshard): parents finish before children start
//! ```
//!
//! `cargo run --release -p kinesis-examples --bin demo -- [--records N] [--shards N]
//! [--workers N] [--reshard]`. Exits non-zero if any record was not delivered or not
//! consumed.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kinesis_consumer::{
    InitialPosition, InitializationInput, LeaseLostInput, ProcessRecordsInput, RecordProcessor,
    Scheduler, ShardEndedInput, ShutdownRequestedInput,
};
use kinesis_emulators::LocalStack;
use kinesis_producer::{Producer, ProducerRecord};

/// What every worker saw, shared so the demo can check it.
#[derive(Debug, Default)]
struct Seen {
    /// (partition key, data) of each user record processed, with how often.
    records: HashMap<(String, Vec<u8>), u32>,
    /// Records processed per worker.
    per_worker: HashMap<String, u64>,
    /// Shards each worker processed.
    shards: HashMap<String, HashSet<String>>,
}

/// Counts records into `Seen` and checkpoints each batch.
#[derive(Debug)]
struct DemoProcessor {
    worker: String,
    shard: String,
    seen: Arc<Mutex<Seen>>,
}

#[async_trait]
impl RecordProcessor for DemoProcessor {
    async fn initialize(&mut self, input: InitializationInput) {
        self.shard = input.shard_id;
    }

    async fn process_records(&mut self, input: ProcessRecordsInput) {
        {
            let mut seen = self.seen.lock().unwrap();
            for r in &input.records {
                *seen
                    .records
                    .entry((r.partition_key.to_string(), r.data.to_vec()))
                    .or_default() += 1;
            }
            *seen.per_worker.entry(self.worker.clone()).or_default() += input.records.len() as u64;
            seen.shards
                .entry(self.worker.clone())
                .or_default()
                .insert(self.shard.clone());
        }
        if let Err(e) = input.checkpointer.checkpoint().await {
            eprintln!("{}: checkpoint on {} failed: {e}", self.worker, self.shard);
        }
    }

    async fn lease_lost(&mut self, _: LeaseLostInput) {}

    async fn shard_ended(&mut self, input: ShardEndedInput) {
        if let Err(e) = input.checkpointer.checkpoint().await {
            eprintln!(
                "{}: shard-end checkpoint on {} failed: {e}",
                self.worker, self.shard
            );
        }
    }

    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        let _ = input.checkpointer.checkpoint().await;
    }
}

struct Options {
    records: usize,
    shards: i32,
    workers: usize,
    reshard: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        records: 50_000,
        shards: 6,
        workers: 3,
        reshard: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match a.as_str() {
            "--records" => o.records = value("--records")?,
            "--shards" => o.shards = value("--shards")? as i32,
            "--workers" => o.workers = value("--workers")?.max(1),
            "--reshard" => o.reshard = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(2);
        }
    };
    match run(o).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(o: Options) -> Result<(), String> {
    let started = Instant::now();
    let stack = LocalStack::builder()
        .start_async()
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "local stack: Kinesis {} ({:?}), DynamoDB {} ({:?})",
        stack.kinesis_endpoint(),
        stack.kinesis_kind(),
        stack.dynamodb_endpoint(),
        stack.dynamodb_kind()
    );
    let stream = stack
        .create_stream("demo", o.shards)
        .await
        .map_err(|e| e.to_string())?;
    let app = LocalStack::unique_name("demo-app");
    println!("stream {stream} ({} shards), application {app}", o.shards);

    // The fleet.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut workers = Vec::new();
    for w in 1..=o.workers {
        let worker = format!("worker-{w}");
        let seen = seen.clone();
        let id = worker.clone();
        let scheduler = Scheduler::builder(app.clone(), stream.clone(), move |shard: &str| {
            Box::new(DemoProcessor {
                worker: id.clone(),
                shard: shard.to_owned(),
                seen: seen.clone(),
            }) as Box<dyn RecordProcessor>
        })
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_worker_id(worker.clone())
        .with_initial_position(InitialPosition::TrimHorizon)
        .with_failover_time(Duration::from_secs(3))
        .build()
        .map_err(|e| e.to_string())?;
        let runner = scheduler.clone();
        let task = tokio::spawn(async move { runner.run().await });
        workers.push((worker, scheduler, task));
    }
    println!("{} workers started", o.workers);
    // Let the fleet balance the leases before producing (a taker round is 2 x failover).
    let balance_deadline = Instant::now() + Duration::from_secs(30);
    let expected_max = (o.shards as usize).div_ceil(o.workers);
    loop {
        let held: Vec<usize> = workers
            .iter()
            .map(|(_, s, _)| s.coordinator().held_lease_keys().len())
            .collect();
        let balanced = held.iter().sum::<usize>() == o.shards as usize
            && held.iter().all(|&n| n <= expected_max);
        if balanced || Instant::now() > balance_deadline {
            println!(
                "leases per worker: {:?} after {:.1}s",
                held,
                started.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The producer.
    let producer = Producer::builder(stack.kinesis_client())
        .build()
        .map_err(|e| e.to_string())?;
    let mut handles = Vec::with_capacity(o.records);
    let mut expected = HashMap::new();
    for i in 0..o.records {
        let key = format!("customer-{}", i % 500);
        let data = format!("event {i} for {key}");
        *expected
            .entry((key.clone(), data.clone().into_bytes()))
            .or_insert(0u32) += 1;
        let h = producer
            .put(ProducerRecord::new(&stream, key, data))
            .await
            .map_err(|e| e.to_string())?;
        handles.push(h);
        if o.reshard && i == o.records / 2 {
            split_first_shard(&stack, &stream).await?;
        }
    }
    let mut delivered = 0usize;
    let mut aggregated = 0usize;
    for h in handles {
        match h.await {
            Ok(d) => {
                delivered += 1;
                aggregated += usize::from(d.aggregated);
            }
            Err(f) => eprintln!("not delivered: {f}"),
        }
    }
    let stats = producer.stats();
    producer.shutdown().await;
    println!(
        "produced {delivered}/{} records ({aggregated} inside aggregates) in {} Kinesis records, {} PutRecords calls, {:.1}s",
        o.records,
        stats.kinesis_records_sent,
        stats.put_records_calls,
        started.elapsed().as_secs_f64()
    );

    // Wait for the fleet to process everything.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let distinct = seen.lock().unwrap().records.len();
        if distinct >= expected.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (_, scheduler, _) in &workers {
        scheduler.graceful_shutdown().await;
    }
    for (name, _, task) in workers {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("{name} stopped with an error: {e}"),
            Err(e) => eprintln!("{name} panicked: {e}"),
        }
    }

    let seen = seen.lock().unwrap();
    let missing = expected
        .keys()
        .filter(|k| !seen.records.contains_key(*k))
        .count();
    let duplicates: u32 = seen.records.values().map(|n| n.saturating_sub(1)).sum();
    let mut per_worker: Vec<_> = seen.per_worker.iter().collect();
    per_worker.sort();
    for (w, n) in per_worker {
        let mut shards: Vec<_> = seen.shards[w].iter().cloned().collect();
        shards.sort();
        println!("{w}: {n} records from {}", shards.join(", "));
    }
    println!(
        "consumed {} distinct records, {missing} missing, {duplicates} duplicates, {:.1}s in all",
        seen.records.len(),
        started.elapsed().as_secs_f64()
    );
    if delivered != o.records || missing > 0 {
        return Err(format!(
            "{} not delivered, {missing} not consumed",
            o.records - delivered
        ));
    }
    Ok(())
}

async fn split_first_shard(stack: &LocalStack, stream: &str) -> Result<(), String> {
    let client = stack.kinesis_client();
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let first = shards.shards().first().ok_or("no shards")?;
    let range = first.hash_key_range().ok_or("no hash key range")?;
    let start: u128 = range.starting_hash_key().parse().map_err(|_| "bad start")?;
    let end: u128 = range.ending_hash_key().parse().map_err(|_| "bad end")?;
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(first.shard_id())
        .new_starting_hash_key((start + (end - start) / 2).to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    println!("split {} half way through producing", first.shard_id());
    Ok(())
}
