//! Polling pace: at most 5 `GetRecords` calls per second per shard while records keep
//! coming, and an idle pause when the shard has nothing. Counted through the crate's
//! `kinesis_consumer_kinesis_calls_total{operation="GetRecords"}` metric with a process-wide recorder
//! (hence a test binary of its own). The bounds are upper bounds that pacing guarantees
//! however slow the machine is.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_records_is_paced_per_shard_and_backs_off_when_idle() {
    let counters = counters();
    let calls = || {
        counters.get(
            kinesis_consumer::metric_names::KINESIS_CALLS,
            Some(("operation", "GetRecords")),
        )
    };
    let stack = stack().await;
    let stream = stack.create_stream("kcl-pace", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-pace-app");
    // Enough records for many small calls.
    put_records(&stack.kinesis_client(), &stream, &records_for(2_000), 1).await;
    let rec = Recorder::default();
    let mut polling = kinesis_consumer::PollingConfig::default();
    polling.max_records = 100; // 20 calls to read everything
    let worker = scheduler_builder(&stack, &app, &stream, "w", &rec, Duration::from_secs(10))
        .with_polling(polling)
        .build()
        .unwrap();
    let run = spawn_run(&worker);
    wait_until("first records", || rec.count() > 0).await;
    let (start, before) = (Instant::now(), calls());
    wait_until("every record", || rec.count() >= 2_000).await;
    let (busy, busy_calls) = (start.elapsed(), calls() - before);
    // 200 ms between calls: at most one call per started 200 ms, plus the one in flight.
    let bound = (busy.as_millis() / 200) as u64 + 2;
    assert!(
        busy_calls <= bound,
        "{busy_calls} calls in {busy:?} (bound {bound})"
    );
    assert!(
        busy_calls >= 15,
        "{busy_calls}: the records need about 20 calls"
    );

    // Idle: the default 1 s pause after an empty response.
    let (start, before) = (Instant::now(), calls());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle, idle_calls) = (start.elapsed(), calls() - before);
    let bound = idle.as_millis() as u64 / 1_000 + 2;
    assert!(
        idle_calls <= bound,
        "{idle_calls} idle calls in {idle:?} (bound {bound})"
    );
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
}

fn records_for(n: usize) -> Vec<Sent> {
    (0..n)
        .map(|i| Sent {
            partition_key: format!("k{}", i % 50),
            data: bytes::Bytes::from(format!("r{i}")),
        })
        .collect()
}
