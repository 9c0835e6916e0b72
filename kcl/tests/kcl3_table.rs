//! A lease table as the Java KCL 3.5 writes it in single-table mode (see
//! `../shared/notes/kcl3-facts.md`): lease items marked `entityType = LEASE` with 3.x
//! attributes (`throughputKBps`), next to a worker-metrics item and a leader item that
//! reuse `leaseKey`. Our consumer continues the leases from their checkpoints once their
//! Java owner's counters stand still, leaves the other items exactly as they were, keeps
//! the 3.x attributes of the leases it writes (`throughputKBps` stays a number of KB/s,
//! updated with its own measurement), and ends a graceful handoff left pending
//! (`checkpointOwner`) when it takes a lease, as a 3.x take does.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use common::*;
use kinesis_consumer::leases::{LeaseStore, LeaseTable};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kcl_3_5_single_table_is_continued_and_its_other_items_left_alone() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl3", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl3-app");
    let kinesis = stack.kinesis_client();
    let dynamodb = stack.dynamodb_client();

    // 10 records per shard, one at a time so the sequence numbers are known.
    let mut by_shard: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for i in 0..40 {
        let data = format!("r{i}");
        let out = kinesis
            .put_record()
            .stream_name(&stream)
            .partition_key(format!("k{i}"))
            .data(Blob::new(data.clone()))
            .send()
            .await
            .unwrap();
        by_shard
            .entry(out.shard_id().to_owned())
            .or_default()
            .push((out.sequence_number().to_owned(), data));
    }
    assert_eq!(by_shard.len(), 2, "both shards got records");

    // The Java KCL 3.5's table: each shard checkpointed at its 3rd record by a Java worker.
    let table = LeaseTable::new(dynamodb.clone(), &app);
    table.create_table_if_not_exists().await.unwrap();
    let mut want: Vec<String> = Vec::new();
    for (shard, records) in &by_shard {
        let (checkpoint, _) = &records[2];
        want.extend(records[3..].iter().map(|(_, d)| d.clone()));
        dynamodb
            .put_item()
            .table_name(&app)
            .item("leaseKey", s(shard))
            .item("entityType", s("LEASE"))
            .item("leaseOwner", s("java-worker-1"))
            .item("leaseCounter", n("41"))
            .item("checkpoint", s(checkpoint))
            .item("checkpointSubSequenceNumber", n("0"))
            .item("ownerSwitchesSinceCheckpoint", n("0"))
            .item("throughputKBps", n("1.5"))
            // A graceful handoff the 3.x leader started and never finished.
            .item("checkpointOwner", s("java-worker-0"))
            .send()
            .await
            .unwrap();
    }
    let others = [
        HashMap::from([
            ("leaseKey".to_owned(), s("java-worker-1")),
            ("entityType".to_owned(), s("WORKER_METRIC_STATS")),
            ("lut".to_owned(), n("1764400000")),
            (
                "sts".to_owned(),
                AttributeValue::M(HashMap::from([(
                    "C".to_owned(),
                    AttributeValue::L(vec![n("12"), n("-1")]),
                )])),
            ),
        ]),
        HashMap::from([
            ("leaseKey".to_owned(), s("Leader")),
            ("entityType".to_owned(), s("LEADER")),
            ("ownerName".to_owned(), s("java-worker-1")),
        ]),
    ];
    for item in &others {
        dynamodb
            .put_item()
            .table_name(&app)
            .set_item(Some(item.clone()))
            .send()
            .await
            .unwrap();
    }

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
    for item in &others {
        let stored = dynamodb
            .get_item()
            .table_name(&app)
            .key("leaseKey", item["leaseKey"].clone())
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        assert_eq!(stored.item(), Some(item), "left alone");
    }
    for shard in by_shard.keys() {
        let stored = dynamodb
            .get_item()
            .table_name(&app)
            .key("leaseKey", s(shard))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        let item = stored.item().unwrap();
        assert_eq!(item.get("entityType"), Some(&s("LEASE")));
        // Still the 3.x attribute, a number of KB/s: now our holder's measurement,
        // written with its checkpoints as a 3.x worker writes it with its renewals.
        let kbps = item.get("throughputKBps").and_then(|v| v.as_n().ok());
        assert!(
            kbps.is_some_and(|k| k.parse::<f64>().is_ok_and(|k| k >= 0.0)),
            "{kbps:?}"
        );
        assert_eq!(
            item.get("checkpointOwner"),
            None,
            "the pending handoff ended with the take: a 3.x worker would skip the lease"
        );
    }
    let leases = table.list_leases().await.unwrap();
    assert_eq!(leases.len(), 2, "only the leases are leases");
}
