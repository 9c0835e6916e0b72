//! A fleet of two workers whose processor checkpoints every N records or T seconds,
//! whichever comes first (`CheckpointEvery`), instead of after every batch: fewer DynamoDB
//! writes, and after a crash at most about N records (or T of traffic) delivered again.
//!
//! ```text
//!  Producer ─▶ stream (4 shards) ─▶ worker-a ┐ shards shared through the lease table
//!                                 ─▶ worker-b ┘ process_records ─▶ CheckpointEvery::after_batch
//!                                               ─ due (≥ N records or ≥ T) ─▶ checkpoint()
//!  every record seen ─▶ graceful_shutdown() of both: each shard checkpointed, leases released
//! ```
//!
//! Run: `cargo run -p kinesis-examples --bin checkpointing_worker` (embedded stack; with
//! `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL_DYNAMODB` set, uses those).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kinesis_consumer::*;
use kinesis_emulators::LocalStack;
use kinesis_producer::{Producer, ProducerRecord};

const RECORDS: u64 = 5_000;

/// Records seen (sequence, sub-sequence): a record delivered again after a lease moved
/// (everything after the shard's last checkpoint is) is counted once here.
type Seen = Arc<Mutex<HashSet<(String, u64)>>>;

/// Counts records and checkpoints every 500 records or 5 seconds.
#[derive(Debug)]
struct Processor {
    every: CheckpointEvery,
    processed: Arc<AtomicU64>,
    seen: Seen,
    checkpoints: Arc<AtomicU64>,
}

#[async_trait]
impl RecordProcessor for Processor {
    async fn initialize(&mut self, _: InitializationInput) {}
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        // ... your work on input.records goes here ...
        self.processed
            .fetch_add(input.records.len() as u64, Relaxed);
        {
            let mut seen = self.seen.lock().expect("not poisoned");
            for r in &input.records {
                seen.insert((r.sequence_number.clone(), r.sub_sequence_number));
            }
        }
        match self.every.after_batch(&input).await {
            Ok(true) => _ = self.checkpoints.fetch_add(1, Relaxed),
            Ok(false) => {}
            // The lease moved or DynamoDB failed: the count is kept, the next batch retries.
            Err(e) => eprintln!("checkpoint failed: {e}"),
        }
    }
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        // Required: the children of this shard start only once it is checkpointed here.
        input.checkpointer.checkpoint().await.ok();
    }
    async fn shutdown_requested(&mut self, input: ShutdownRequestedInput) {
        // The last records since the cadence's checkpoint, so the next owner starts after them.
        input.checkpointer.checkpoint().await.ok();
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stack = LocalStack::builder().start_async().await?;
    let stream = stack.create_stream("orders", 4).await?;
    let producer = Producer::builder(stack.kinesis_client()).build()?;
    for i in 0..RECORDS {
        let record = ProducerRecord::new(&stream, format!("customer-{}", i % 97), i.to_string());
        drop(producer.put(record).await?); // outcome not awaited: shutdown() settles it
    }
    producer.shutdown().await;
    let delivered = producer.stats().user_records_delivered;

    let (processed, checkpoints) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let seen = Seen::default();
    let mut workers = Vec::new();
    for name in ["worker-a", "worker-b"] {
        let (p, c, s) = (processed.clone(), checkpoints.clone(), seen.clone());
        let scheduler = Scheduler::builder("checkpointing-example", &stream, move |_: &str| {
            Box::new(Processor {
                every: CheckpointEvery::records_or_interval(500, Duration::from_secs(5)),
                processed: p.clone(),
                seen: s.clone(),
                checkpoints: c.clone(),
            }) as Box<dyn RecordProcessor>
        })
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_worker_id(name)
        .with_initial_position(InitialPosition::TrimHorizon)
        .build()?;
        let run = tokio::spawn({
            let scheduler = scheduler.clone();
            async move { scheduler.run().await }
        });
        workers.push((scheduler, run));
    }
    // Every record once at least (worker-b's first steal hands it records worker-a already
    // processed after its last checkpoint: they come again).
    while (seen.lock().expect("not poisoned").len() as u64) < delivered {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (scheduler, run) in workers {
        scheduler.graceful_shutdown().await;
        run.await??;
    }
    println!(
        "delivered {delivered}, processed {} distinct ({} deliveries), cadence checkpoints {}",
        seen.lock().expect("not poisoned").len(),
        processed.load(Relaxed),
        checkpoints.load(Relaxed)
    );
    Ok(())
}
