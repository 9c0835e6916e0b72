//! The fleet table's conditional semantics on both emulator tiers: registration, beats
//! conditional on the last one, removal of a silent worker, notices added and deleted.

mod common;

use kinesis_consumer::leases::{FleetStore, FleetTable};
use kinesis_emulators::{Backend, LocalStack};

async fn fleet_table_scenario(stack: &LocalStack) {
    let lease_table = kinesis_emulators::unique_name("fleet-app");
    let table = FleetTable::for_lease_table(stack.dynamodb_client(), &lease_table);
    assert_eq!(table.table_name(), format!("{lease_table}-Workers"));
    table.create_table_if_not_exists().await.unwrap();
    table.create_table_if_not_exists().await.unwrap();

    // Registration is unconditional; later beats need the last one.
    let v = table
        .beat("w1", &[], 7, &[])
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(v.beats.len(), 1);
    assert_eq!(v.beats["w1"], 7);
    let v = table
        .beat("w:2", &[], u64::MAX, &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v.beats["w1"], v.beats["w:2"]), (7, u64::MAX));
    assert!(
        table.beat("w1", &[6], 8, &[]).await.unwrap().is_none(),
        "stale"
    );
    let v = table.beat("w1", &[7], 8, &[]).await.unwrap().unwrap();
    assert_eq!(v.beats["w1"], 8);

    // Notices: only for registered workers; read by their owner; deleted when handled.
    assert!(table.notify("w1", "shardId-1@5").await.unwrap());
    assert!(table.notify("w1", "shardId-2@9").await.unwrap());
    assert!(!table.notify("nobody", "shardId-3@1").await.unwrap());
    let v = table.beat("w1", &[8], 9, &[]).await.unwrap().unwrap();
    let mut notices = v.notices.clone();
    notices.sort();
    assert_eq!(notices, ["shardId-1@5", "shardId-2@9"]);
    let other = table
        .beat("w:2", &[u64::MAX], 0, &[])
        .await
        .unwrap()
        .unwrap();
    assert!(other.notices.is_empty());
    let v = table.beat("w1", &[9], 10, &notices).await.unwrap().unwrap();
    assert!(
        v.notices.is_empty(),
        "handled notices deleted: {:?}",
        v.notices
    );

    // Removal is conditional on the beat seen.
    assert!(!table.remove("w1", 9).await.unwrap());
    assert!(table.remove("w1", 10).await.unwrap());
    assert!(!table.remove("w1", 10).await.unwrap(), "gone already");
    assert!(
        table.beat("w1", &[10], 11, &[]).await.unwrap().is_none(),
        "declared gone"
    );
    let v = table.beat("w:2", &[0], 1, &[]).await.unwrap().unwrap();
    assert_eq!(v.beats.keys().collect::<Vec<_>>(), ["w:2"]);
    // A beat whose answer was lost: either value is accepted next time.
    let v = table.beat("w:2", &[5, 1], 2, &[]).await.unwrap().unwrap();
    assert_eq!(v.beats["w:2"], 2);
    assert!(table.beat("w:2", &[5, 1], 3, &[]).await.unwrap().is_none());
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
