//! The fleet table's conditional semantics on both emulator tiers: registration, beats
//! conditional on the last one, removal of a silent worker, notices added and deleted,
//! loads; and a running worker publishing its load with its heartbeats.

mod common;

use std::time::Duration;

use kinesis_consumer::leases::{FleetStore, FleetTable, WorkerLoad};
use kinesis_emulators::{Backend, LocalStack};

async fn fleet_table_scenario(stack: &LocalStack) {
    let lease_table = kinesis_emulators::unique_name("fleet-app");
    let table = FleetTable::for_lease_table(stack.dynamodb_client(), &lease_table);
    assert_eq!(table.table_name(), format!("{lease_table}-Workers"));
    table.create_table_if_not_exists().await.unwrap();
    table.create_table_if_not_exists().await.unwrap();

    // Registration is unconditional; later beats need the last one.
    let v = table
        .beat("w1", &[], 7, &[], None)
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(v.beats.len(), 1);
    assert_eq!(v.beats["w1"], 7);
    let v = table
        .beat("w:2", &[], u64::MAX, &[], None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v.beats["w1"], v.beats["w:2"]), (7, u64::MAX));
    assert!(
        table
            .beat("w1", &[6], 8, &[], None)
            .await
            .unwrap()
            .is_none(),
        "stale"
    );
    let v = table.beat("w1", &[7], 8, &[], None).await.unwrap().unwrap();
    assert_eq!(v.beats["w1"], 8);

    // Notices: only for registered workers; read by their owner; deleted when handled.
    assert!(table.notify("w1", "shardId-1@5").await.unwrap());
    assert!(table.notify("w1", "shardId-2@9").await.unwrap());
    assert!(!table.notify("nobody", "shardId-3@1").await.unwrap());
    let v = table.beat("w1", &[8], 9, &[], None).await.unwrap().unwrap();
    let mut notices = v.notices.clone();
    notices.sort();
    assert_eq!(notices, ["shardId-1@5", "shardId-2@9"]);
    let other = table
        .beat("w:2", &[u64::MAX], 0, &[], None)
        .await
        .unwrap()
        .unwrap();
    assert!(other.notices.is_empty());
    let v = table
        .beat("w1", &[9], 10, &notices, None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        v.notices.is_empty(),
        "handled notices deleted: {:?}",
        v.notices
    );

    // A beat may carry its worker's load; everyone reads it; removal removes it too.
    let load = WorkerLoad::new(1500.0, 150_000.0, Some(1200));
    let v = table
        .beat("w1", &[10], 10, &[], Some(load))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.loads["w1"], load);
    assert!(!v.loads.contains_key("w:2"), "w:2 reported none");
    assert_eq!(table.read().await.unwrap().loads["w1"], load);

    // Removal is conditional on the beat seen.
    assert!(!table.remove("w1", 9).await.unwrap());
    assert!(table.remove("w1", 10).await.unwrap());
    assert!(!table.remove("w1", 10).await.unwrap(), "gone already");
    assert!(!table.read().await.unwrap().loads.contains_key("w1"));
    assert!(
        table
            .beat("w1", &[10], 11, &[], None)
            .await
            .unwrap()
            .is_none(),
        "declared gone"
    );
    let v = table
        .beat("w:2", &[0], 1, &[], None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.beats.keys().collect::<Vec<_>>(), ["w:2"]);
    // A beat whose answer was lost: either value is accepted next time.
    let v = table
        .beat("w:2", &[5, 1], 2, &[], None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.beats["w:2"], 2);
    assert!(table
        .beat("w:2", &[5, 1], 3, &[], None)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn fleet_table_on_the_default_stack() {
    fleet_table_scenario(&common::stack().await).await;
}

#[tokio::test]
async fn fleet_table_on_the_fidelity_stack() {
    let stack = LocalStack::builder()
        .with_backend(Backend::Fidelity)
        .start_async()
        .await
        .expect("fidelity stack starts (needs node and npm)");
    fleet_table_scenario(&stack).await;
}

/// A worker reading records reports them with its heartbeats: records/s and bytes/s above
/// zero at some beat while it reads, and a lag (the emulator says `millis_behind_latest`).
#[tokio::test]
async fn a_running_worker_publishes_its_throughput_and_lag_with_its_heartbeats() {
    let stack = common::stack().await;
    let stream = stack.create_stream("load", 2).await.unwrap();
    let app = kinesis_emulators::unique_name("load-app");
    let rec = common::Recorder::default();
    let scheduler = common::scheduler(&stack, &app, &stream, "w1", &rec, Duration::from_secs(2));
    let run = tokio::spawn({
        let s = scheduler.clone();
        async move { s.run().await }
    });
    let fleet = FleetTable::for_lease_table(stack.dynamodb_client(), &app);
    // Records keep coming while we look, so some beat falls in a time with reads.
    let sent = common::records(4_000, 50, 1, "load");
    let mut seen: Option<WorkerLoad> = None;
    let start = std::time::Instant::now();
    for chunk in sent.chunks(200) {
        common::put_records(&stack.kinesis_client(), &stream, chunk, 1).await;
        if let Some(load) = fleet
            .read()
            .await
            .ok()
            .and_then(|v| v.loads.get("w1").copied())
        {
            if load.records_per_second > 0.0 {
                seen = Some(load);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while seen.is_none() && start.elapsed() < Duration::from_secs(60) {
        let view = fleet.read().await.unwrap();
        seen = view
            .loads
            .get("w1")
            .copied()
            .filter(|l| l.records_per_second > 0.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let load = seen.expect("a beat with records/s above zero within a minute");
    assert!(load.bytes_per_second > 0.0, "{load:?}");
    assert!(load.max_millis_behind_latest.is_some(), "{load:?}");
    scheduler.graceful_shutdown().await;
    run.await.unwrap().unwrap();
    // A worker that left takes its load with it.
    assert!(!fleet.read().await.unwrap().loads.contains_key("w1"));
}
