//! A lease table as the Java KCL 3.5 writes it in single-table mode (see
//! `../shared/notes/kcl3-facts.md`): lease items marked `entityType = LEASE` with 3.x
//! attributes (`throughputKBps`), next to a worker-metrics item and a leader item that
//! reuse `leaseKey`. Our consumer continues the leases from their checkpoints once their
//! Java owner's counters stand still, leaves the other items exactly as they were, keeps
//! the 3.x attributes of the leases it writes, and ends a graceful handoff left pending
//! (`checkpointOwner`) when it takes a lease, as a 3.x take does.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use integration_tests::kcl3;
use kinesis_consumer::leases::{LeaseStore, LeaseTable};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kcl_3_5_single_table_is_continued_and_its_other_items_left_alone() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl3", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl3-app");
    let kinesis = stack.kinesis_client();
    let dynamodb = stack.dynamodb_client();

    // 10 records per shard, one at a time so the sequence numbers are known.
    let mut by_shard: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for put in put_one_by_one(&kinesis, &stream, 40).await {
        by_shard
            .entry(put.shard_id)
            .or_default()
            .push((put.sequence_number, put.data));
    }
    assert_eq!(by_shard.len(), 2, "both shards got records");

    // The Java KCL 3.5's table: each shard checkpointed at its 3rd record by a Java worker.
    let table = LeaseTable::new(dynamodb.clone(), &app);
    table.create_table_if_not_exists().await.unwrap();
    let mut want: Vec<String> = Vec::new();
    let mut seeded = Vec::new();
    for (shard, records) in &by_shard {
        want.extend(records[3..].iter().map(|(_, d)| d.clone()));
        seeded.push((shard.clone(), records[2].0.clone()));
    }
    let others = kcl3::seed_single_table(&dynamodb, &app, &seeded).await;

    let rec = Recorder::default();
    let worker = scheduler(
        &stack,
        &app,
        &stream,
        "rust-worker",
        &rec,
        Duration::from_secs(1),
    );
    let run = spawn_run(&worker);
    wait_until("the records after the checkpoints", || {
        distinct(&rec) >= want.len()
    })
    .await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();

    let mut got: Vec<String> = rec
        .seen()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "exactly the records after the 3.x checkpoints");

    // The other items are untouched; the leases kept their 3.x attributes.
    kcl3::assert_left_alone(
        &dynamodb,
        &app,
        &others,
        by_shard.keys().map(String::as_str),
    )
    .await;
    let leases = table.list_leases().await.unwrap();
    assert_eq!(leases.len(), 2, "only the leases are leases");
}
