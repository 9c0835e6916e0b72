//! Enhanced fan-out end to end, against the local stack (or the endpoints in
//! `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL_DYNAMODB`): registration, renewal of
//! subscriptions, resharding, a killed worker, a resume inside an aggregate, and two
//! applications reading one stream.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use integration_tests::kinesis::{
    deregister_consumer, register_consumer, stream_arn, stream_consumers,
};
use kinesis_consumer::leases::{LeaseStore, LeaseTable};
use kinesis_consumer::{Checkpoint, FanOutConfig, Lease, Retrieval};
use kinesis_emulators::LocalStack;

/// A stack whose subscriptions last `session` (Kinesis: 5 minutes), so renewals happen
/// within a test.
async fn stack_with_sessions(session: Duration) -> LocalStack {
    LocalStack::builder()
        .with_subscribe_session(session)
        .start_async()
        .await
        .expect("local stack")
}

/// Worker `id` of `app` reading `stream` through enhanced fan-out, with a 10 s failover
/// time, its processors recording into `rec`.
fn fan_out_worker(
    stack: &LocalStack,
    app: &str,
    stream: &str,
    id: &str,
    rec: &Recorder,
) -> kinesis_consumer::Scheduler {
    scheduler_builder(stack, app, stream, id, rec, Duration::from_secs(10))
        .with_retrieval(fan_out())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_read_four_shards_through_renewed_subscriptions_once() {
    // Subscriptions end every 2 s: records flow across several renewals per shard.
    let stack = stack_with_sessions(Duration::from_secs(2)).await;
    let stream = stack.create_stream("efo-fleet", 4).await.unwrap();
    let app = kinesis_emulators::unique_name("efo-fleet-app");
    let kinesis = stack.kinesis_client();
    let rec = Recorder::default();
    let workers: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|w| {
            scheduler_builder(&stack, &app, &stream, w, &rec, Duration::from_secs(2))
                .with_retrieval(fan_out())
                .with_taker_interval(Duration::from_millis(300))
                .build()
                .expect("scheduler")
        })
        .collect();
    let runs: Vec<_> = workers.iter().map(spawn_run).collect();
    // Balanced (2/1/1) before any record is put: no lease moves while records flow.
    wait_until("every worker holds a lease", || {
        let held: Vec<usize> = workers
            .iter()
            .map(|w| w.coordinator().held_lease_keys().len())
            .collect();
        held.iter().all(|&n| n >= 1) && held.iter().sum::<usize>() == 4
    })
    .await;
    let mut sent = Vec::new();
    for round in 0..6 {
        let batch = records(500, 50, 1, &format!("r{round}-"));
        put_records(&kinesis, &stream, &batch, 1).await;
        sent.extend(batch);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    wait_until("every record", || rec.count() >= sent.len()).await;
    // A little longer: anything delivered twice would show up now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for w in &workers {
        w.graceful_shutdown().await;
    }
    for r in runs {
        r.await.unwrap().unwrap();
    }

    let seen = rec.seen();
    assert_eq!(seen.len(), sent.len(), "every record exactly once");
    assert_eq!(distinct(&rec), sent.len());
    assert_shard_order(&seen);
    let by_worker = seen.iter().fold(HashMap::new(), |mut m, s| {
        *m.entry(s.worker.as_str()).or_insert(0usize) += 1;
        m
    });
    assert_eq!(by_worker.len(), 3, "every worker processed: {by_worker:?}");
    // Registered once, named after the application, left in place after shutdown.
    assert_eq!(
        stream_consumers(&kinesis, &stream).await,
        HashMap::from([(app.clone(), "ACTIVE".to_owned())])
    );
    // Checkpoints reached the last record of every shard.
    let mut last: HashMap<&str, (&str, u64)> = HashMap::new();
    for s in &seen {
        last.insert(&s.shard, (&s.sequence_number, s.sub_sequence_number));
    }
    let table = leases(&stack, &app).await;
    for (shard, (seq, sub)) in last {
        assert_eq!(table[shard].checkpoint, checkpoint_of(seq, sub), "{shard}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_split_and_merge_keep_parents_before_children() {
    // Small events: a closed parent's backlog comes in many events that each announce the
    // children (as ferrokinesis does), and only the last, empty one ends the shard.
    let stack = LocalStack::builder()
        .with_subscribe_event_records(10)
        .start_async()
        .await
        .expect("local stack");
    reshard_scenario(&stack, 20, 10, fan_out()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_killed_worker_leases_are_taken_with_no_loss() {
    killed_worker_scenario(&stack().await, fan_out()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_resumes_inside_an_aggregate_from_its_checkpoint() {
    let stack = stack_with_sessions(Duration::from_secs(2)).await;
    let stream = stack.create_stream("efo-resume", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("efo-resume-app");
    let kinesis = stack.kinesis_client();
    // Three aggregates of ten records of one key.
    let sent: Vec<Sent> = (0..30)
        .map(|i| Sent {
            partition_key: "k".to_owned(),
            data: Bytes::from(format!("r{i}")),
        })
        .collect();
    put_records(&kinesis, &stream, &sent, 10).await;
    // Find the first aggregate's sequence number, and checkpoint at its sub-record 4 as
    // an earlier worker would have.
    let shard = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .unwrap()
        .shards()[0]
        .shard_id()
        .to_owned();
    let it = kinesis
        .get_shard_iterator()
        .stream_name(&stream)
        .shard_id(&shard)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned();
    let first = kinesis
        .get_records()
        .shard_iterator(it)
        .send()
        .await
        .unwrap()
        .records()[0]
        .sequence_number()
        .to_owned();
    let table = LeaseTable::new(stack.dynamodb_client(), &app);
    table.create_table_if_not_exists().await.unwrap();
    let checkpoint = Checkpoint::at(&first, 4).unwrap();
    assert!(table
        .create_lease_if_not_exists(&Lease::new(&shard, checkpoint))
        .await
        .unwrap());

    let rec = Recorder::default();
    let worker = fan_out_worker(&stack, &app, &stream, "w", &rec);
    let run = spawn_run(&worker);
    wait_until("the records after the checkpoint", || rec.count() >= 25).await;
    // Past a renewal or two: nothing at or before the checkpoint comes again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    let got: Vec<Bytes> = rec.seen().into_iter().map(|s| s.data).collect();
    let want: Vec<Bytes> = sent[5..].iter().map(|s| s.data.clone()).collect();
    assert_eq!(
        got, want,
        "sub-records 5.. of the first aggregate, then the rest"
    );
    let first_seen = &rec.seen()[0];
    assert_eq!(
        (
            first_seen.sequence_number.as_str(),
            first_seen.sub_sequence_number
        ),
        (first.as_str(), 5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applications_read_one_stream_through_their_own_consumers() {
    let stack = stack().await;
    let stream = stack.create_stream("efo-two-apps", 2).await.unwrap();
    let kinesis = stack.kinesis_client();
    let sent = records(400, 40, 1, "x");
    put_records(&kinesis, &stream, &sent, 1).await;
    let (app_a, app_b) = (
        kinesis_emulators::unique_name("efo-app-a"),
        kinesis_emulators::unique_name("efo-app-b"),
    );
    let (rec_a, rec_b) = (Recorder::default(), Recorder::default());
    let a = scheduler_builder(
        &stack,
        &app_a,
        &stream,
        "a",
        &rec_a,
        Duration::from_secs(10),
    )
    .with_retrieval(fan_out())
    .build()
    .unwrap();
    // The second names its consumer itself.
    let b = scheduler_builder(
        &stack,
        &app_b,
        &stream,
        "b",
        &rec_b,
        Duration::from_secs(10),
    )
    .with_retrieval(Retrieval::FanOut(
        FanOutConfig::default().with_consumer_name("app-b-consumer"),
    ))
    .build()
    .unwrap();
    let (run_a, run_b) = (spawn_run(&a), spawn_run(&b));
    wait_until("both applications read everything", || {
        rec_a.count() >= sent.len() && rec_b.count() >= sent.len()
    })
    .await;
    a.graceful_shutdown().await;
    b.graceful_shutdown().await;
    run_a.await.unwrap().unwrap();
    run_b.await.unwrap().unwrap();
    for rec in [&rec_a, &rec_b] {
        assert_eq!(
            rec.count(),
            sent.len(),
            "each application reads each record once"
        );
        assert_eq!(distinct(rec), sent.len());
    }
    let consumers = stream_consumers(&kinesis, &stream).await;
    assert_eq!(
        consumers,
        HashMap::from([
            (app_a.clone(), "ACTIVE".to_owned()),
            ("app-b-consumer".to_owned(), "ACTIVE".to_owned()),
        ])
    );
    // A restart reuses the registered consumer: no third one.
    let rec = Recorder::default();
    let again = fan_out_worker(&stack, &app_a, &stream, "a2", &rec);
    let run = spawn_run(&again);
    // Everything was checkpointed: wait until the worker holds its leases, then stop.
    wait_until("the restarted worker holds both leases", || {
        again.coordinator().held_lease_keys().len() == 2
    })
    .await;
    again.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    assert_eq!(rec.count(), 0, "nothing after the checkpoints");
    assert_eq!(stream_consumers(&kinesis, &stream).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_being_deleted_is_waited_for_and_registered_again() {
    let stack = stack().await;
    let stream = stack.create_stream("efo-deleting", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("efo-deleting-app");
    let kinesis = stack.kinesis_client();
    let stream_arn = stream_arn(&kinesis, &stream).await;
    register_consumer(&kinesis, &stream_arn, &app).await;
    wait_until_status(&stack, &stream, &app, "ACTIVE").await;
    deregister_consumer(&kinesis, &stream_arn, &app).await;
    assert_eq!(
        stream_consumers(&kinesis, &stream)
            .await
            .get(&app)
            .map(String::as_str),
        Some("DELETING")
    );
    let sent = records(50, 5, 1, "d");
    put_records(&kinesis, &stream, &sent, 1).await;
    let rec = Recorder::default();
    let worker = fan_out_worker(&stack, &app, &stream, "w", &rec);
    let run = spawn_run(&worker);
    wait_until("every record", || rec.count() >= sent.len()).await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    assert_eq!(rec.count(), sent.len());
    assert_eq!(
        stream_consumers(&kinesis, &stream).await,
        HashMap::from([(app.clone(), "ACTIVE".to_owned())]),
        "registered again once the old one was gone"
    );
}

/// Waits until the consumer `name` of `stream` has `status`.
async fn wait_until_status(stack: &LocalStack, stream: &str, name: &str, status: &str) {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let now = stream_consumers(&stack.kinesis_client(), stream).await;
        if now.get(name).map(String::as_str) == Some(status) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "consumer {name}: {now:?}, waiting for {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_deregistered_while_workers_run_is_registered_again_and_reading_goes_on() {
    let stack = stack_with_sessions(Duration::from_secs(2)).await;
    let stream = stack.create_stream("efo-dereg", 1).await.unwrap();
    let app = kinesis_emulators::unique_name("efo-dereg-app");
    let kinesis = stack.kinesis_client();
    let rec = Recorder::default();
    let worker = fan_out_worker(&stack, &app, &stream, "w", &rec);
    let run = spawn_run(&worker);
    let first = records(20, 4, 1, "before");
    put_records(&kinesis, &stream, &first, 1).await;
    wait_until("the first records", || rec.count() >= 20).await;
    let stream_arn = stream_arn(&kinesis, &stream).await;
    deregister_consumer(&kinesis, &stream_arn, &app).await;
    // Past the open subscription's end (and the DELETING state): the renewal is refused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = records(20, 4, 1, "after");
    put_records(&kinesis, &stream, &second, 1).await;
    wait_until("the records put after the deregistration", || {
        rec.count() >= 40
    })
    .await;
    worker.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    assert_eq!(distinct(&rec), 40, "nothing lost");
    assert_eq!(
        stream_consumers(&kinesis, &stream)
            .await
            .get(&app)
            .map(String::as_str),
        Some("ACTIVE"),
        "registered again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_every_consumer_slot_taken_fails_the_start_with_a_clear_error() {
    let stack = stack().await;
    let stream = stack.create_stream("efo-full", 1).await.unwrap();
    let kinesis = stack.kinesis_client();
    let stream_arn = stream_arn(&kinesis, &stream).await;
    for i in 0..20 {
        register_consumer(&kinesis, &stream_arn, &format!("other-{i}")).await;
    }
    let rec = Recorder::default();
    let app = kinesis_emulators::unique_name("efo-full-app");
    let worker = fan_out_worker(&stack, &app, &stream, "w", &rec);
    let result = tokio::time::timeout(DEADLINE, worker.run())
        .await
        .expect("run returns instead of retrying for ever");
    let e = result.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("20 registered consumers"), "{e}");
}
