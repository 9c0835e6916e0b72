//! Graceful lease handoff end to end, against the local stack (see `leases::handoff`):
//! a second worker joins a running one and takes half its leases while records flow; the
//! first finishes each moved shard (its processor gets `shutdown_requested` and
//! checkpoints) before the second starts it from that checkpoint, so no record is
//! delivered twice or lost, and the table ends with no handoff pending. Also: a handoff a
//! Java KCL 3.x leader left pending to our worker, from a dead Java worker, is waited for
//! and then forced, and processing resumes from its checkpoint; and a next owner that
//! shuts down while the handoff is pending leaves it to the previous owner, whose last
//! checkpoint is kept (nothing delivered twice, nothing lost).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use integration_tests::kcl3;
use integration_tests::traffic::Traffic;
use kinesis_consumer::leases::{LeaseStore, LeaseTable};
use kinesis_consumer::metric_names as m;

/// A worker joins a running one; with `heartbeats` the scheduler's default fleet (the
/// previous owner hears of each handoff at its next beat), without it the Java KCL's
/// renewals (its next renewal is refused).
async fn a_joining_worker_takes_half_without_double_delivery(heartbeats: bool) {
    let counters = counters();
    let stack = stack().await;
    let stream = stack.create_stream("kcl-handoff", 4).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-handoff-app");
    let kinesis = stack.kinesis_client();
    let shards = list_shards(&kinesis, &stream).await;

    let rec = Recorder::default();
    let worker = |id: &str| {
        scheduler_builder(&stack, &app, &stream, id, &rec, Duration::from_secs(1))
            .with_worker_heartbeats(heartbeats)
            .build()
            .unwrap()
    };
    let a = worker("a");
    let run_a = spawn_run(&a);
    wait_until("a holds every lease", || {
        a.coordinator().held_lease_keys().len() == 4
    })
    .await;

    // Records to every shard every 100 ms until stopped, each with its own data.
    let traffic = Traffic::start(
        &kinesis,
        &stream,
        &shards,
        |_| 3,
        |_, n| (format!("r{n}"), format!("r{n}")),
    );
    wait_until("a processing", || rec.count() > 40).await;

    let b = worker("b");
    let run_b = spawn_run(&b);
    let shards_of = |w: &str| -> HashSet<String> {
        rec.seen()
            .iter()
            .filter(|s| s.worker == w)
            .map(|s| s.shard.clone())
            .collect()
    };
    let b_seen_before = shards_of("b").len();
    assert_eq!(b_seen_before, 0);
    wait_until("b processing two shards, a two", || {
        b.coordinator().held_lease_keys().len() == 2
            && a.coordinator().held_lease_keys().len() == 2
            && shards_of("b").len() == 2
    })
    .await;
    // Records keep flowing for a while under the new assignment.
    let at_move = rec.count();
    wait_until("more records after the move", || {
        rec.count() > at_move + 100
    })
    .await;

    let want: HashSet<String> = traffic.stop().await.into_iter().collect();
    let data_seen = || -> Vec<String> {
        rec.seen()
            .iter()
            .map(|s| String::from_utf8_lossy(&s.data).into_owned())
            .collect()
    };
    wait_until("every record", || {
        let seen: HashSet<String> = data_seen().into_iter().collect();
        want.is_subset(&seen)
    })
    .await;
    let moved = shards_of("b");
    // No handoff pending once the moves are over.
    let table = leases(&stack, &app).await;
    for (key, lease) in &table {
        assert_eq!(lease.checkpoint_owner, None, "{key}: {lease:?}");
    }
    let owned_by_b: HashSet<String> = table
        .iter()
        .filter(|(_, l)| l.owner.as_deref() == Some("b"))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(owned_by_b, moved);
    // Each moved shard was finished by a: its processor was asked to stop, not cut off.
    let stopped: HashSet<(String, String)> = rec.events("shutdown_requested").into_iter().collect();
    for shard in &moved {
        assert!(
            stopped.contains(&("a".to_owned(), shard.clone())),
            "{shard}: a's processor not asked to stop: {stopped:?}"
        );
    }
    assert_eq!(rec.events("lease_lost"), Vec::new(), "no lease cut off");
    assert!(counters.get(m::LEASE_HANDOFFS_STARTED, None) >= 2);
    assert!(counters.get(m::LEASE_HANDOFFS_ENDED, Some(("by", "previous_owner"))) >= 2);

    b.graceful_shutdown().await;
    a.graceful_shutdown().await;
    run_a.await.unwrap().unwrap();
    run_b.await.unwrap().unwrap();

    // Nothing lost, nothing delivered twice (to the same worker or to both).
    let mut per_record: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for s in rec.seen() {
        per_record
            .entry(String::from_utf8_lossy(&s.data).into_owned())
            .or_default()
            .push((s.worker.clone(), s.shard.clone()));
    }
    let twice: Vec<(&String, &Vec<(String, String)>)> =
        per_record.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(per_record.len(), want.len());
    assert!(want.len() > 140, "{} records sent", want.len());
    let table = leases(&stack, &app).await;
    assert!(table.values().all(|l| l.checkpoint_owner.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_heartbeats_a_joining_worker_takes_half_without_double_delivery() {
    a_joining_worker_takes_half_without_double_delivery(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_renewals_a_joining_worker_takes_half_without_double_delivery() {
    a_joining_worker_takes_half_without_double_delivery(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_left_pending_by_a_java_leader_is_forced_and_resumed_from_its_checkpoint() {
    let counters = counters();
    let stack = stack().await;
    let stream = stack.create_stream("kcl-handoff-java", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-handoff-java-app");
    let kinesis = stack.kinesis_client();
    let dynamodb = stack.dynamodb_client();

    let records = put_one_by_one(&kinesis, &stream, 10).await;
    let shard = records[0].shard_id.clone();

    // A 3.x leader handed the lease, checkpointed at the 3rd record, from a Java worker
    // (which died) to ours.
    let table = LeaseTable::new(dynamodb.clone(), &app);
    table.create_table_if_not_exists().await.unwrap();
    kcl3::seed_pending_handoff(
        &dynamodb,
        &app,
        &shard,
        &records[2].sequence_number,
        "rust-worker",
    )
    .await;

    let rec = Recorder::default();
    let worker = scheduler_builder(
        &stack,
        &app,
        &stream,
        "rust-worker",
        &rec,
        Duration::from_secs(1),
    )
    .with_graceful_handoff_timeout(Duration::from_secs(1))
    .build()
    .unwrap();
    let run = spawn_run(&worker);
    let want: Vec<String> = records[3..].iter().map(|r| r.data.clone()).collect();
    wait_until("the records after the checkpoint", || {
        distinct(&rec) >= want.len()
    })
    .await;
    let stored = table.get_lease(&shard).await.unwrap().unwrap();
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();

    let got: Vec<String> = rec
        .seen()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect();
    assert_eq!(
        got, want,
        "exactly the records after the checkpoint, once, in order"
    );
    // The handoff was ended by our worker (forced: its previous owner never came), which
    // kept the lease.
    assert_eq!(stored.checkpoint_owner, None);
    assert_eq!(stored.owner.as_deref(), Some("rust-worker"));
    assert!(stored.counter > 41, "{stored:?}");
    assert!(counters.get(m::LEASE_HANDOFFS_SEEN, None) >= 1);
    assert!(
        counters.get(m::LEASE_HANDOFFS_ENDED, Some(("by", "next_owner_forced"))) >= 1,
        "waited for, then forced (not taken at once)"
    );
    assert_eq!(
        rec.events("initialize"),
        vec![("rust-worker".to_owned(), shard.clone())],
        "started once"
    );
}

/// Starts, then never returns from `shutdown_requested`.
#[derive(Debug)]
struct StuckInShutdown {
    shard: String,
    started: Arc<Mutex<HashSet<String>>>,
}

#[async_trait::async_trait]
impl kinesis_consumer::RecordProcessor for StuckInShutdown {
    async fn initialize(&mut self, _: kinesis_consumer::InitializationInput) {
        self.started.lock().unwrap().insert(self.shard.clone());
    }
    async fn process_records(&mut self, _: kinesis_consumer::ProcessRecordsInput) {}
    async fn lease_lost(&mut self, _: kinesis_consumer::LeaseLostInput) {}
    async fn shard_ended(&mut self, _: kinesis_consumer::ShardEndedInput) {}
    async fn shutdown_requested(&mut self, _: kinesis_consumer::ShutdownRequestedInput) {
        std::future::pending::<()>().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_owner_stuck_in_shutdown_requested_hands_over_after_the_timeout() {
    let counters = counters();
    let stack = stack().await;
    let stream = stack.create_stream("kcl-handoff-stuck", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-handoff-stuck-app");
    let kinesis = stack.kinesis_client();

    let started: Arc<Mutex<HashSet<String>>> = Arc::default();
    let a = {
        let started = started.clone();
        kinesis_consumer::Scheduler::builder(&app, &stream, move |shard: &str| {
            Box::new(StuckInShutdown {
                shard: shard.to_owned(),
                started: started.clone(),
            }) as Box<dyn kinesis_consumer::RecordProcessor>
        })
        .with_clients(stack.kinesis_client(), stack.dynamodb_client())
        .with_worker_id("a")
        .with_failover_time(Duration::from_secs(1))
        .with_retrieval(polling())
        .with_graceful_handoff_timeout(Duration::from_secs(1))
        .with_shutdown_timeout(Duration::from_millis(300))
        .build()
        .unwrap()
    };
    let run_a = spawn_run(&a);
    wait_until("a's processors started on both shards", || {
        started.lock().unwrap().len() == 2
    })
    .await;

    let rec = Recorder::default();
    let b = scheduler(&stack, &app, &stream, "b", &rec, Duration::from_secs(1));
    let run_b = spawn_run(&b);
    put_records(&kinesis, &stream, &records(40, 20, 1, "s"), 1).await;
    // a never finishes its shutdown_requested: after the timeout it is aborted and hands
    // the lease over; b processes that shard from its start (a never checkpointed).
    wait_until("b processing the moved shard", || rec.count() > 0).await;
    let moved: HashSet<String> = rec.seen().iter().map(|s| s.shard.clone()).collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(
        counters.get(
            m::LEASE_HANDOFFS_ENDED,
            Some(("by", "previous_owner_timeout"))
        ) >= 1,
        "handed over by its previous owner once the timeout passed"
    );
    let table = leases(&stack, &app).await;
    let shard = moved.iter().next().unwrap();
    assert_eq!(table[shard].owner.as_deref(), Some("b"));
    assert_eq!(table[shard].checkpoint_owner, None);

    b.graceful_shutdown().await;
    a.graceful_shutdown().await;
    run_b.await.unwrap().unwrap();
    run_a.await.unwrap().unwrap();
}

/// Records every user record in `rec` and checkpoints only when asked to stop
/// (`shutdown_requested`), once `gate` is open: the records since the last checkpoint are
/// all a worker has processed, so a refused final checkpoint shows as re-delivery.
#[derive(Debug)]
struct CheckpointsOnlyAtShutdown {
    worker: String,
    shard: String,
    rec: Recorder,
    gate: Arc<AtomicBool>,
}

impl CheckpointsOnlyAtShutdown {
    fn event(&self, what: &'static str) {
        let event = (self.worker.clone(), self.shard.clone(), what);
        self.rec.lifecycle.lock().unwrap().push(event);
    }
}

#[async_trait::async_trait]
impl kinesis_consumer::RecordProcessor for CheckpointsOnlyAtShutdown {
    async fn initialize(&mut self, _: kinesis_consumer::InitializationInput) {
        self.event("initialize");
    }
    async fn process_records(&mut self, input: kinesis_consumer::ProcessRecordsInput) {
        self.rec.saw(&self.worker, &self.shard, &input.records);
    }
    async fn lease_lost(&mut self, _: kinesis_consumer::LeaseLostInput) {
        self.event("lease_lost");
    }
    async fn shard_ended(&mut self, _: kinesis_consumer::ShardEndedInput) {
        self.event("shard_ended");
    }
    async fn shutdown_requested(&mut self, input: kinesis_consumer::ShutdownRequestedInput) {
        self.event("shutdown_requested");
        while !self.gate.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let res = input.checkpointer.checkpoint().await;
        self.rec.checkpoints.lock().unwrap().push(CheckpointEvent {
            worker: self.worker.clone(),
            shard: self.shard.clone(),
            position: None,
            ok: res.is_ok(),
            lease_lost: matches!(res, Err(kinesis_consumer::Error::LeaseLost { .. })),
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_owner_shutting_down_mid_handoff_costs_no_redelivery_and_no_loss() {
    let stack = stack().await;
    let stream = stack.create_stream("kcl-handoff-leaves", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("kcl-handoff-leaves-app");
    let kinesis = stack.kinesis_client();
    let rec = Recorder::default();
    let gate = Arc::new(AtomicBool::new(false));
    let worker = |id: &str| {
        let (rec, gate, worker) = (rec.clone(), gate.clone(), id.to_owned());
        let factory = move |shard: &str| {
            Box::new(CheckpointsOnlyAtShutdown {
                worker: worker.clone(),
                shard: shard.to_owned(),
                rec: rec.clone(),
                gate: gate.clone(),
            }) as Box<dyn kinesis_consumer::RecordProcessor>
        };
        scheduler_builder_with(&stack, &app, &stream, id, factory, Duration::from_secs(1))
            .build()
            .unwrap()
    };
    let a = worker("a");
    let run_a = spawn_run(&a);
    wait_until("a holds every lease", || {
        a.coordinator().held_lease_keys().len() == 2
    })
    .await;
    let first = records(40, 8, 1, "p1-");
    put_records(&kinesis, &stream, &first, 1).await;
    wait_until("a processed the first records", || {
        distinct(&rec) >= first.len()
    })
    .await;

    // b joins and starts a handoff of one lease; a's processor of that shard is asked to
    // stop and holds (its records since TRIM_HORIZON not checkpointed yet).
    let b = worker("b");
    let run_b = spawn_run(&b);
    wait_until("a finishing a shard handed to b", || {
        !rec.events("shutdown_requested").is_empty() && b.coordinator().held_lease_keys().len() == 1
    })
    .await;
    let moved = rec.events("shutdown_requested")[0].1.clone();
    let pending = leases(&stack, &app).await[&moved].clone();
    assert_eq!(
        (
            pending.owner.as_deref(),
            pending.checkpoint_owner.as_deref()
        ),
        (Some("b"), Some("a"))
    );

    // b shuts down gracefully before a handed the lease over: it leaves it unwritten.
    b.graceful_shutdown().await;
    run_b.await.unwrap().unwrap();
    assert_eq!(
        leases(&stack, &app).await[&moved],
        pending,
        "b wrote nothing"
    );

    // a's processor checkpoints (accepted), a ends the handoff, and, b being gone, the
    // lease is taken again (by a, the only worker) from that checkpoint.
    gate.store(true, Ordering::SeqCst);
    wait_until("a's final checkpoint", || {
        rec.checkpoints
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.shard == moved)
    })
    .await;
    let second = records(40, 8, 1, "p2-");
    put_records(&kinesis, &stream, &second, 1).await;
    wait_until("every record", || {
        distinct(&rec) >= first.len() + second.len()
    })
    .await;
    a.graceful_shutdown().await;
    run_a.await.unwrap().unwrap();

    // Nothing delivered twice, nothing lost, and b processed nothing.
    let mut per_record: HashMap<String, usize> = HashMap::new();
    for s in rec.seen() {
        assert_eq!(s.worker, "a", "{s:?}");
        *per_record
            .entry(String::from_utf8_lossy(&s.data).into_owned())
            .or_default() += 1;
    }
    let twice: Vec<_> = per_record.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let want: HashSet<String> = first
        .iter()
        .chain(&second)
        .map(|s| String::from_utf8_lossy(&s.data).into_owned())
        .collect();
    assert_eq!(per_record.keys().cloned().collect::<HashSet<_>>(), want);
    let final_checkpoint = rec
        .checkpoints
        .lock()
        .unwrap()
        .iter()
        .find(|c| c.shard == moved)
        .cloned()
        .unwrap();
    assert!(
        final_checkpoint.worker == "a" && final_checkpoint.ok,
        "a's last checkpoint accepted: {final_checkpoint:?}"
    );
    assert_eq!(rec.events("lease_lost"), Vec::new(), "nobody cut off");
    let table = leases(&stack, &app).await;
    assert!(
        table.values().all(|l| l.checkpoint_owner.is_none()),
        "{table:?}"
    );
}
