//! A producer inside a service, with a graceful shutdown: requests put records while the
//! service runs; on Ctrl-C / SIGTERM (or after `--records N`) it stops taking requests,
//! flushes what the producer holds, and waits for every record's outcome before exiting.
//!
//! ```text
//!  request loop ──put──▶ Producer ──PutRecords──▶ Kinesis
//!     │ PutHandle ──▶ outcome task (TaskTracker) ──▶ delivered / failed counts
//!  Ctrl-C, SIGTERM or N records ─▶ token.cancel() ─▶ loop ends ─▶ producer.shutdown()
//!     (flushes, resolves every handle) ─▶ tracker.wait() ─▶ summary, exit 1 if any failed
//! ```
//!
//! Run: `cargo run -p kinesis-examples --bin producer_service -- [--records N]` (default
//! 20,000; 0 runs until Ctrl-C). Starts the embedded stack; with `AWS_ENDPOINT_URL_KINESIS`
//! set, uses that endpoint.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use kinesis_emulators::LocalStack;
use kinesis_producer::{Producer, ProducerRecord};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let records: u64 = match std::env::args().skip_while(|a| a != "--records").nth(1) {
        Some(n) => n.parse()?,
        None => 20_000,
    };
    let stack = LocalStack::builder().start_async().await?;
    let stream = stack.create_stream("events", 4).await?;
    let producer = Producer::builder(stack.kinesis_client()).build()?;

    // Stop on Ctrl-C or SIGTERM (what an orchestrator sends before killing the process).
    let token = CancellationToken::new();
    let mut sigterm = signal(SignalKind::terminate())?;
    tokio::spawn({
        let token = token.clone();
        async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = sigterm.recv() => {}
                _ = token.cancelled() => {}
            }
            token.cancel();
        }
    });

    let (delivered, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let outcomes = TaskTracker::new();
    let mut put = 0u64;
    while !token.is_cancelled() && (records == 0 || put < records) {
        // A request of the service: an order event keyed by its customer.
        let record = ProducerRecord::new(
            &stream,
            format!("customer-{}", put % 977),
            format!("{{\"order\":{put},\"amount\":{}}}", put % 300),
        );
        // `put` waits while the producer's memory budget is full: back-pressure.
        let handle = tokio::select! {
            handle = producer.put(record) => handle?,
            _ = token.cancelled() => break,
        };
        put += 1;
        let (delivered, failed) = (delivered.clone(), failed.clone());
        outcomes.spawn(async move {
            match handle.await {
                Ok(_) => delivered.fetch_add(1, Relaxed),
                Err(e) => {
                    eprintln!("not delivered: {e}");
                    failed.fetch_add(1, Relaxed)
                }
            };
        });
    }
    token.cancel();
    // Sends everything held and resolves every handle; puts after this fail.
    producer.shutdown().await;
    outcomes.close();
    outcomes.wait().await;
    let (delivered, failed) = (delivered.load(Relaxed), failed.load(Relaxed));
    println!("put {put}, delivered {delivered}, failed {failed}");
    Ok(if failed == 0 && delivered == put {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
