//! Consumer library end to end, against the local stack (or the endpoints in
//! `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL_DYNAMODB`).

#![allow(clippy::type_complexity)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use kinesis_consumer::{
    Checkpoint, Error, InitializationInput, Lease, LeaseLostInput, LeaseStore, LeaseTable,
    ProcessRecordsInput, RecordProcessor, Scheduler, ShardEndedInput,
};

fn records(n: usize, keys: usize, run: usize, tag: &str) -> Vec<Sent> {
    (0..n)
        .map(|i| Sent {
            partition_key: format!("k{}", (i / run) % keys),
            data: Bytes::from(format!("{tag}{i}")),
        })
        .collect()
}

fn spawn_run(s: &Scheduler) -> tokio::task::JoinHandle<Result<(), Error>> {
    let s = s.clone();
    tokio::spawn(async move { s.run().await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_table_operations_are_conditional() {
    let stack = stack().await;
    let table_name = kinesis_emulators::unique_name("leases");
    let table = LeaseTable::new(stack.dynamodb_client(), &table_name);
    table.create_table_if_not_exists().await.unwrap();
    table.create_table_if_not_exists().await.unwrap(); // idempotent

    let lease = Lease::new("shardId-000000000001", Checkpoint::TrimHorizon)
        .with_parents(vec!["shardId-000000000000".into()]);
    assert!(table.create_lease_if_not_exists(&lease).await.unwrap());
    assert!(!table.create_lease_if_not_exists(&lease).await.unwrap());

    let read = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(read, lease);
    assert!(table.take_lease(&read, "w1").await.unwrap());
    // A second take from the same (now stale) read is refused.
    assert!(!table.take_lease(&read, "w2").await.unwrap());
    let held = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(held.owner.as_deref(), Some("w1"));
    assert_eq!(held.counter, 1);
    assert_eq!(held.owner_switches_since_checkpoint, 1);

    assert!(table.renew_lease(&held).await.unwrap());
    assert!(!table.renew_lease(&held).await.unwrap(), "stale counter");
    let held = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(held.counter, 2);

    // Another worker steals; the old owner's checkpoint is refused and changes nothing.
    assert!(table.take_lease(&held, "w2").await.unwrap());
    let cp = checkpoint_of(
        "49590338271490256608559692538361571095921575989136588898",
        3,
    );
    assert!(!table.update_checkpoint(&held, &cp, &[]).await.unwrap());
    let stolen = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(stolen.checkpoint, Checkpoint::TrimHorizon);
    assert_eq!(stolen.owner.as_deref(), Some("w2"));

    // The new owner checkpoints, two-phase and plain.
    let state = Bytes::from_static(b"app-state");
    assert!(table
        .prepare_checkpoint(&stolen, &cp, Some(&state))
        .await
        .unwrap());
    let mut pending = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(pending.pending_checkpoint, Some(cp.clone()));
    assert_eq!(pending.pending_checkpoint_state, Some(state));
    assert!(table.update_checkpoint(&pending, &cp, &[]).await.unwrap());
    pending.counter += 1;
    let done = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(done.checkpoint, cp);
    assert_eq!(done.pending_checkpoint, None);
    assert_eq!(done.pending_checkpoint_state, None);
    assert_eq!(done.owner_switches_since_checkpoint, 0);

    // Not finished: cannot be deleted. Evicting leaves it unowned.
    assert!(!table.delete_finished_lease(&lease.lease_key).await.unwrap());
    assert!(table.evict_lease(&done).await.unwrap());
    let free = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(free.owner, None);
    assert!(table.take_lease(&free, "w3").await.unwrap());
    let mut mine = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert!(table
        .update_checkpoint(
            &mine,
            &Checkpoint::ShardEnd,
            &["shardId-000000000002".into()]
        )
        .await
        .unwrap());
    mine.counter += 1;
    let ended = table.get_lease(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(ended.child_shard_ids, vec!["shardId-000000000002"]);
    assert!(table.delete_finished_lease(&lease.lease_key).await.unwrap());
    assert!(table.get_lease(&lease.lease_key).await.unwrap().is_none());
    // Updates never resurrect a deleted lease.
    assert!(!table.renew_lease(&mine).await.unwrap());
    assert!(table.get_lease(&lease.lease_key).await.unwrap().is_none());

    // Items written by other tools: odd ones are skipped by scans, with the rest kept.
    let ddb = stack.dynamodb_client();
    use aws_sdk_dynamodb::types::AttributeValue as A;
    ddb.put_item()
        .table_name(&table_name)
        .item("leaseKey", A::S("no-counter".into()))
        .item("checkpoint", A::S("TRIM_HORIZON".into()))
        .send()
        .await
        .unwrap();
    ddb.put_item()
        .table_name(&table_name)
        .item("leaseKey", A::S("java-written".into()))
        .item("leaseCounter", A::N("12".into()))
        .item("leaseOwner", A::S("java-worker".into()))
        .item("checkpoint", A::S("SHARD_END".into()))
        .item("checkpointSubSequenceNumber", A::N("0".into()))
        .item("pendingCheckpointState", A::N("5".into()))
        .item("parentShardId", A::Ss(vec!["a".into(), "b".into()]))
        .send()
        .await
        .unwrap();
    table
        .create_lease_if_not_exists(&Lease::new("ours", Checkpoint::Latest))
        .await
        .unwrap();
    let mut keys: Vec<String> = table
        .list_leases()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.lease_key)
        .collect();
    keys.sort();
    assert_eq!(keys, vec!["java-written", "ours"]);
    let err = table.get_lease("no-counter").await.unwrap_err();
    assert!(matches!(err, Error::InvalidLease { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_processes_100k_mixed_records_in_order() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl-100k", 8).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-100k-app");
    let kinesis = stack.kinesis_client();
    let first = records(50_000, 1000, 10, "a");
    let second = records(50_000, 1000, 1, "p");
    // Half as aggregates of 10 same-key records, half plain.
    put_records(&kinesis, &stream, &first, 10).await;
    let rec = Recorder::default();
    let worker = scheduler(&stack, &app, &stream, "w1", &rec, Duration::from_secs(10));
    let run = spawn_run(&worker);
    put_records(&kinesis, &stream, &second, 1).await;
    wait_until("100,000 records", || rec.count() >= 100_000).await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();

    let seen = rec.seen();
    assert_eq!(seen.len(), 100_000, "each record exactly once");
    let all: HashSet<&Bytes> = seen.iter().map(|s| &s.data).collect();
    for s in first.iter().chain(&second) {
        assert!(all.contains(&s.data), "{:?} missing", s.data);
    }
    assert!(
        seen.iter().any(|s| s.sub_sequence_number > 0),
        "aggregates were read"
    );
    assert_shard_order(&seen);
    // Per key, records come in put order.
    let mut per_key: HashMap<&str, Vec<(u8, usize)>> = HashMap::new();
    for s in &seen {
        let text = std::str::from_utf8(&s.data).unwrap();
        let (tag, n) = text.split_at(1);
        per_key
            .entry(&s.partition_key)
            .or_default()
            .push((tag.as_bytes()[0], n.parse().unwrap()));
    }
    for (k, v) in &per_key {
        assert!(v.windows(2).all(|w| w[0] < w[1]), "key {k} out of order");
    }
    // The final checkpoints are the last record of each shard.
    let mut last: HashMap<&str, (&str, u64)> = HashMap::new();
    for s in &seen {
        last.insert(&s.shard, (&s.sequence_number, s.sub_sequence_number));
    }
    let table = leases(&stack, &app).await;
    assert_eq!(table.len(), 8);
    for (shard, (seq, sub)) in last {
        let lease = &table[shard];
        assert_eq!(lease.checkpoint, checkpoint_of(seq, sub), "{shard}");
        assert_eq!(lease.owner, None, "released at shutdown");
    }
}

/// Processing index of every record, by key.
fn order_by_key(seen: &[Seen]) -> HashMap<String, Vec<usize>> {
    let mut m: HashMap<String, Vec<usize>> = HashMap::new();
    for s in seen {
        let text = std::str::from_utf8(&s.data).unwrap();
        let n: usize = text.rsplit(':').next().unwrap().parse().unwrap();
        m.entry(s.partition_key.clone()).or_default().push(n);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_keep_parents_before_children() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl-reshard", 3).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-reshard-app");
    let kinesis = stack.kinesis_client();
    let keys = 60;
    let per_phase = 30;
    let phase = |p: usize| -> Vec<Sent> {
        (0..per_phase)
            .flat_map(|i| {
                (0..keys).map(move |k| Sent {
                    partition_key: format!("key-{k}"),
                    data: Bytes::from(format!("key-{k}:{}", p * per_phase + i)),
                })
            })
            .collect()
    };
    let rec = Recorder::default();
    let worker = scheduler(&stack, &app, &stream, "w1", &rec, Duration::from_secs(3));
    let run = spawn_run(&worker);
    put_records(&kinesis, &stream, &phase(0), 1).await;

    let shards = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .unwrap()
        .shards()
        .to_vec();
    assert_eq!(shards.len(), 3);
    let s0 = &shards[0];
    let range = s0.hash_key_range().unwrap();
    let (lo, hi): (u128, u128) = (
        range.starting_hash_key().parse().unwrap(),
        range.ending_hash_key().parse().unwrap(),
    );
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(s0.shard_id())
        .new_starting_hash_key((lo + (hi - lo) / 2).to_string())
        .send()
        .await
        .unwrap();
    kinesis_emulators::wait_for_stream_active(&kinesis, &stream, DEADLINE)
        .await
        .unwrap();
    put_records(&kinesis, &stream, &phase(1), 1).await;
    kinesis
        .merge_shards()
        .stream_name(&stream)
        .shard_to_merge(shards[1].shard_id())
        .adjacent_shard_to_merge(shards[2].shard_id())
        .send()
        .await
        .unwrap();
    kinesis_emulators::wait_for_stream_active(&kinesis, &stream, DEADLINE)
        .await
        .unwrap();
    put_records(&kinesis, &stream, &phase(2), 1).await;

    let total = keys * per_phase * 3;
    wait_until("every record", || rec.count() >= total).await;
    // Children of all three parents ran, so every parent reached SHARD_END first.
    wait_until("three shard ends", || rec.events("shard_ended").len() >= 3).await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();

    let seen = rec.seen();
    assert_eq!(seen.len(), total, "nothing lost, nothing twice");
    for (key, order) in order_by_key(&seen) {
        let expected: Vec<usize> = (0..per_phase * 3).collect();
        assert_eq!(
            order, expected,
            "{key}: parent records before child records"
        );
    }
    let table = leases(&stack, &app).await;
    let parents = [s0.shard_id(), shards[1].shard_id(), shards[2].shard_id()];
    for p in parents {
        // Finished parents are SHARD_END, or already cleaned up once children progressed.
        if let Some(l) = table.get(p) {
            assert_eq!(l.checkpoint, Checkpoint::ShardEnd, "{p}");
        }
    }
    let merged: Vec<&Lease> = table
        .values()
        .filter(|l| l.parent_shard_ids.len() == 2)
        .collect();
    assert_eq!(
        merged.len(),
        1,
        "the merged child's lease names both parents"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_hands_leases_over_in_one_round_without_duplicates() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl-handoff", 4).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-handoff-app");
    let kinesis = stack.kinesis_client();
    let rec = Recorder::default();
    let failover = Duration::from_secs(2);
    // a takes at most two leases, so b gets the other two without stealing: any
    // duplicate would come from the handoff itself.
    let a = scheduler_builder(&stack, &app, &stream, "a", &rec, failover)
        .with_max_leases_per_worker(2)
        .build()
        .unwrap();
    let b = scheduler(&stack, &app, &stream, "b", &rec, failover);
    let run_a = spawn_run(&a);
    put_records(&kinesis, &stream, &records(2_000, 200, 1, "x"), 1).await;
    wait_until("a holds two leases", || {
        a.coordinator().held_lease_keys().len() == 2
    })
    .await;
    let run_b = spawn_run(&b);
    wait_until("b holds two leases", || {
        b.coordinator().held_lease_keys().len() == 2
    })
    .await;
    put_records(&kinesis, &stream, &records(2_000, 200, 1, "y"), 1).await;
    wait_until("a processing", || {
        rec.seen().iter().any(|s| s.worker == "a")
    })
    .await;

    a.graceful_shutdown().await;
    run_a.await.unwrap().unwrap();
    // One taker round of b takes every released lease.
    b.coordinator().take_leases().await.unwrap();
    assert_eq!(b.coordinator().held_lease_keys().len(), 4);
    put_records(&kinesis, &stream, &records(2_000, 200, 1, "z"), 1).await;
    wait_until("every record", || distinct(&rec) >= 6_000).await;
    b.graceful_shutdown().await;
    run_b.await.unwrap().unwrap();

    let seen = rec.seen();
    let mut counts: HashMap<&Bytes, usize> = HashMap::new();
    for s in &seen {
        *counts.entry(&s.data).or_default() += 1;
    }
    assert_eq!(counts.len(), 6_000, "nothing lost");
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "duplicates after a graceful handoff: {}",
        dups.len()
    );
    let by_a = seen.iter().filter(|s| s.worker == "a").count();
    assert!(
        by_a > 0 && by_a < seen.len(),
        "a processed {by_a} of {}",
        seen.len()
    );
    assert!(rec.events("shutdown_requested").iter().any(|e| e.0 == "a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_leases_are_taken_with_no_loss() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl-kill", 4).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-kill-app");
    let kinesis = stack.kinesis_client();
    let rec = Recorder::default();
    let failover = Duration::from_secs(2);
    let a = scheduler(&stack, &app, &stream, "a", &rec, failover);
    let b = scheduler(&stack, &app, &stream, "b", &rec, failover);
    let run_a = spawn_run(&a);
    wait_until("a holds every lease", || {
        a.coordinator().held_lease_keys().len() == 4
    })
    .await;
    let run_b = spawn_run(&b);
    wait_until("b steals", || !b.coordinator().held_lease_keys().is_empty()).await;
    let a_keys = a.coordinator().held_lease_keys();
    // Records flow while a dies.
    let producer = {
        let kinesis = kinesis.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            for batch in 0..20 {
                put_records(
                    &kinesis,
                    &stream,
                    &records(300, 100, 1, &format!("b{batch}-")),
                    1,
                )
                .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    wait_until("a processing", || {
        rec.seen().iter().any(|s| s.worker == "a")
    })
    .await;
    run_a.abort(); // like kill -9: no release, no more renewals
    let killed_at = std::time::Instant::now();
    let _ = run_a.await;
    wait_until("b takes a's leases", || {
        b.coordinator().held_lease_keys().len() == 4
    })
    .await;
    let taken_after = killed_at.elapsed();
    producer.await.unwrap();
    wait_until("every record", || distinct(&rec) >= 6_000).await;
    b.graceful_shutdown().await;
    run_b.await.unwrap().unwrap();
    eprintln!("leases of the killed worker taken after {taken_after:?} (failover {failover:?})");

    // Duplicates only after the dead worker's last successful checkpoint on that shard.
    let last_ok: HashMap<String, (String, u64)> = rec
        .checkpoints
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.worker == "a" && c.ok)
        .filter_map(|c| c.position.clone().map(|p| (c.shard.clone(), p)))
        .collect();
    let seen = rec.seen();
    let mut first_by: HashMap<&Bytes, &Seen> = HashMap::new();
    for s in &seen {
        match first_by.get(&s.data) {
            None => {
                first_by.insert(&s.data, s);
            }
            Some(first) => {
                assert_eq!(first.worker, "a", "only the dead worker's records repeat");
                assert!(a_keys.contains(&s.shard));
                if let Some((seq, sub)) = last_ok.get(&s.shard) {
                    assert!(
                        !checkpoint_of(seq, *sub).covers(
                            &kinesis_consumer::SequenceNumber::parse(&s.sequence_number).unwrap(),
                            s.sub_sequence_number
                        ),
                        "a checkpointed record was delivered again"
                    );
                }
            }
        }
    }
    assert_eq!(first_by.len(), 6_000, "nothing lost");
}

/// Blocks in its first batch until released, then checkpoints and reports the outcome.
#[derive(Debug)]
struct GatedProcessor {
    shard: String,
    release: tokio::sync::watch::Receiver<bool>,
    got_batch: Arc<Mutex<HashSet<String>>>,
    results: Arc<Mutex<Vec<(String, Result<(), String>, bool)>>>,
}

#[async_trait]
impl RecordProcessor for GatedProcessor {
    async fn initialize(&mut self, _: InitializationInput) {}
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        self.got_batch.lock().unwrap().insert(self.shard.clone());
        let _ = self.release.wait_for(|r| *r).await;
        let res = input.checkpointer.checkpoint().await;
        let lost = matches!(res, Err(Error::LeaseLost { .. }));
        self.results.lock().unwrap().push((
            self.shard.clone(),
            res.map_err(|e| e.to_string()),
            lost,
        ));
    }
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        let _ = input.checkpointer.checkpoint().await;
    }
}

/// Never checkpoints.
#[derive(Debug)]
struct Idle;

#[async_trait]
impl RecordProcessor for Idle {
    async fn initialize(&mut self, _: InitializationInput) {}
    async fn process_records(&mut self, _: ProcessRecordsInput) {}
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        let _ = input.checkpointer.checkpoint().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_after_the_lease_was_stolen_is_rejected() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl-steal", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-steal-app");
    let kinesis = stack.kinesis_client();
    put_records(&kinesis, &stream, &records(400, 200, 1, "s"), 1).await;

    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let got_batch = Arc::new(Mutex::new(HashSet::new()));
    let results = Arc::new(Mutex::new(Vec::new()));
    let factory = {
        let (got_batch, results) = (got_batch.clone(), results.clone());
        move |shard: &str| {
            Box::new(GatedProcessor {
                shard: shard.to_owned(),
                release: release_rx.clone(),
                got_batch: got_batch.clone(),
                results: results.clone(),
            }) as Box<dyn RecordProcessor>
        }
    };
    let build = |worker: &str, f: Box<dyn Fn(&str) -> Box<dyn RecordProcessor> + Send + Sync>| {
        Scheduler::builder(&app, &stream, move |s: &str| f(s))
            .with_clients(stack.kinesis_client(), stack.dynamodb_client())
            .with_worker_id(worker)
            .with_failover_time(Duration::from_secs(2))
            .build()
            .unwrap()
    };
    let a = build("a", Box::new(factory));
    let run_a = spawn_run(&a);
    wait_until("a blocked in both shards", || {
        got_batch.lock().unwrap().len() == 2
    })
    .await;
    let b = build(
        "b",
        Box::new(|_: &str| Box::new(Idle) as Box<dyn RecordProcessor>),
    );
    let run_b = spawn_run(&b);
    wait_until("b steals one lease", || {
        b.coordinator().held_lease_keys().len() == 1
    })
    .await;
    let stolen = b.coordinator().held_lease_keys()[0].clone();
    release_tx.send(true).unwrap();
    wait_until("both checkpoints tried", || {
        results.lock().unwrap().len() == 2
    })
    .await;

    for (shard, res, lost) in results.lock().unwrap().iter() {
        if *shard == stolen {
            assert!(
                *lost,
                "checkpoint on the stolen lease must be LeaseLost: {res:?}"
            );
        } else {
            assert!(res.is_ok(), "{res:?}");
        }
    }
    let table = leases(&stack, &app).await;
    assert_eq!(table[&stolen].owner.as_deref(), Some("b"));
    assert_eq!(
        table[&stolen].checkpoint,
        Checkpoint::TrimHorizon,
        "the new owner's progress is untouched"
    );
    a.graceful_shutdown().await;
    b.graceful_shutdown().await;
    run_a.await.unwrap().unwrap();
    run_b.await.unwrap().unwrap();
}

/// Sleeps in every batch, so that prefetched shard iterators expire.
#[derive(Debug)]
struct Slow(Recorder);

#[async_trait]
impl RecordProcessor for Slow {
    async fn initialize(&mut self, _: InitializationInput) {}
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let mut seen = self.0.seen.lock().unwrap();
        for r in &input.records {
            seen.push(Seen {
                worker: "slow".into(),
                shard: "s".into(),
                sequence_number: r.sequence_number.clone(),
                sub_sequence_number: r.sub_sequence_number,
                partition_key: r.partition_key.clone(),
                data: r.data.clone(),
            });
        }
    }
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        let _ = input.checkpointer.checkpoint().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_iterators_resume_after_the_last_record_fetched() {
    let stack = kinesis_emulators::LocalStack::builder()
        .with_iterator_ttl(Duration::from_secs(1))
        .start_async()
        .await
        .unwrap();
    let stream = stack.create_stream("kcl-expiry", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-expiry-app");
    let sent = records(40, 5, 1, "e");
    put_records(&stack.kinesis_client(), &stream, &sent, 1).await;
    let rec = Recorder::default();
    let mut polling = kinesis_consumer::PollingConfig::default();
    polling.max_records = 5;
    polling.prefetch_batches = 1;
    let r = rec.clone();
    let worker = Scheduler::builder(&app, &stream, move |_: &str| {
        Box::new(Slow(r.clone())) as Box<dyn RecordProcessor>
    })
    .with_clients(stack.kinesis_client(), stack.dynamodb_client())
    .with_polling(polling)
    .build()
    .unwrap();
    let run = spawn_run(&worker);
    wait_until("every record", || rec.count() >= 40).await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    let got: Vec<Bytes> = rec.seen().into_iter().map(|s| s.data).collect();
    let want: Vec<Bytes> = sent.into_iter().map(|s| s.data).collect();
    assert_eq!(
        got, want,
        "in order, none lost or repeated across iterator expiry"
    );
}

/// Panics in its first batch (once per test), then records like [`RecordingProcessor`].
struct PanicsOnce {
    panicked: Arc<std::sync::atomic::AtomicBool>,
    inner: Box<dyn RecordProcessor>,
}

#[async_trait]
impl RecordProcessor for PanicsOnce {
    async fn initialize(&mut self, input: InitializationInput) {
        self.inner.initialize(input).await;
    }
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        if !self
            .panicked
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("processor bug (deliberate)");
        }
        self.inner.process_records(input).await;
    }
    async fn lease_lost(&mut self, input: LeaseLostInput) {
        self.inner.lease_lost(input).await;
    }
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        self.inner.shard_ended(input).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_processor_is_restarted_from_its_checkpoint() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl-panic", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-panic-app");
    let sent = records(300, 10, 1, "q");
    put_records(&stack.kinesis_client(), &stream, &sent, 1).await;
    let rec = Recorder::default();
    let panicked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let factory = {
        let panicked = panicked.clone();
        let make = rec.factory("w");
        move |shard: &str| {
            Box::new(PanicsOnce {
                panicked: panicked.clone(),
                inner: make(shard),
            }) as Box<dyn RecordProcessor>
        }
    };
    let worker = Scheduler::builder(&app, &stream, factory)
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_parent_poll_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let run = spawn_run(&worker);
    wait_until("every record", || distinct(&rec) >= 300).await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    assert!(panicked.load(std::sync::atomic::Ordering::SeqCst));
    let got: Vec<Bytes> = rec.seen().into_iter().map(|s| s.data).collect();
    let want: Vec<Bytes> = sent.into_iter().map(|s| s.data).collect();
    assert_eq!(
        got, want,
        "the batch lost to the panic is delivered again, once"
    );
}

/// Prepares a two-phase checkpoint with state on its first batch and never completes it;
/// reports what `initialize` was handed.
#[derive(Debug)]
struct TwoPhase {
    initialized: Arc<Mutex<Vec<InitializationInput>>>,
    prepared: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait]
impl RecordProcessor for TwoPhase {
    async fn initialize(&mut self, input: InitializationInput) {
        self.initialized.lock().unwrap().push(input);
    }
    async fn process_records(&mut self, input: ProcessRecordsInput) {
        if !self.prepared.load(std::sync::atomic::Ordering::SeqCst) {
            input
                .checkpointer
                .prepare_checkpoint(Some(Bytes::from_static(b"app-state-1")))
                .await
                .unwrap();
            self.prepared
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, input: ShardEndedInput) {
        let _ = input.checkpointer.checkpoint().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_two_phase_checkpoint_reaches_the_next_owner() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl-2pc", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-2pc-app");
    put_records(&stack.kinesis_client(), &stream, &records(50, 5, 1, "t"), 1).await;
    let initialized = Arc::new(Mutex::new(Vec::new()));
    let prepared = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let build = |worker: &str| {
        let (i, p) = (initialized.clone(), prepared.clone());
        Scheduler::builder(&app, &stream, move |_: &str| {
            Box::new(TwoPhase {
                initialized: i.clone(),
                prepared: p.clone(),
            }) as Box<dyn RecordProcessor>
        })
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_worker_id(worker)
        .with_failover_time(Duration::from_secs(1))
        .build()
        .unwrap()
    };
    let first = build("first");
    let run = spawn_run(&first);
    wait_until("prepared", || {
        prepared.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    run.abort(); // crash before the second phase
    let _ = run.await;
    let second = build("second");
    let run = spawn_run(&second);
    wait_until("second initialize", || {
        initialized.lock().unwrap().len() == 2
    })
    .await;
    second.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    let init = initialized.lock().unwrap()[1].clone();
    assert_eq!(init.checkpoint, Checkpoint::TrimHorizon);
    assert!(matches!(
        init.pending_checkpoint,
        Some(Checkpoint::Sequence { .. })
    ));
    assert_eq!(
        init.pending_checkpoint_state,
        Some(Bytes::from_static(b"app-state-1"))
    );
}
