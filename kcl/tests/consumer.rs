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
    Checkpoint, Error, InitializationInput, LeaseLostInput, ProcessRecordsInput, RecordProcessor,
    Scheduler, ShardEndedInput,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_table_operations_are_conditional() {
    lease_table_scenario(&stack().await).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_keep_parents_before_children() {
    reshard_scenario(&stack().await, 60, 30, polling()).await;
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
    // b's next heartbeat shows a gone; one taker round then takes every released lease.
    b.coordinator().beat().await;
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
    killed_worker_scenario(&stack().await, polling()).await;
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
async fn a_checkpoint_by_the_previous_owner_during_a_handoff_is_kept_for_the_next_one() {
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

    // The lease moved by a graceful handoff: a's checkpoint of the batch it was in is
    // accepted (a is still the checkpoint owner), then a hands the lease over and b
    // continues from it.
    for (_, res, lost) in results.lock().unwrap().iter() {
        assert!(res.is_ok() && !lost, "{res:?}");
    }
    let deadline = std::time::Instant::now() + DEADLINE;
    let moved = loop {
        let table = leases(&stack, &app).await;
        let lease = table[&stolen].clone();
        if lease.checkpoint_owner.is_none() {
            break lease;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "handoff never ended: {lease:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(moved.owner.as_deref(), Some("b"));
    assert_ne!(
        moved.checkpoint,
        Checkpoint::TrimHorizon,
        "the previous owner's last checkpoint is the next owner's start"
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
                partition_key: r.partition_key.to_string(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_timestamp_starts_at_the_timestamp() {
    at_timestamp_scenario(&stack().await).await;
}

/// Never returns from `shutdown_requested`.
#[derive(Debug)]
struct Stuck;

#[async_trait]
impl RecordProcessor for Stuck {
    async fn initialize(&mut self, _: InitializationInput) {}
    async fn process_records(&mut self, _: ProcessRecordsInput) {}
    async fn lease_lost(&mut self, _: LeaseLostInput) {}
    async fn shard_ended(&mut self, _: ShardEndedInput) {}
    async fn shutdown_requested(&mut self, _: kinesis_consumer::ShutdownRequestedInput) {
        std::future::pending::<()>().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_processor_does_not_block_shutdown_past_the_timeout() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl-stuck", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-stuck-app");
    let worker = Scheduler::builder(&app, &stream, |_: &str| {
        Box::new(Stuck) as Box<dyn RecordProcessor>
    })
    .with_clients(stack.kinesis_client(), stack.dynamodb_client())
    .with_worker_id("stuck")
    .with_shutdown_timeout(Duration::from_millis(300))
    .build()
    .unwrap();
    let run = spawn_run(&worker);
    wait_until("a lease", || {
        worker.coordinator().held_lease_keys().len() == 1
    })
    .await;
    // Let the consumer start so that its processor is the one that hangs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::time::timeout(DEADLINE, worker.graceful_shutdown())
        .await
        .expect("shutdown is bounded by the shutdown timeout");
    run.await.unwrap().unwrap();
    for lease in leases(&stack, &app).await.values() {
        assert_eq!(lease.owner, None, "released despite the stuck processor");
    }
}
