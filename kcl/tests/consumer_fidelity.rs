//! The consumer against the fidelity peers (npm kinesis-local + dynalite), which get right
//! what the embedded ferrokinesis does not: `ChildShards` and a null iterator at a shard
//! end, real parent links after resharding, `ListShards` paging. Smaller volumes: the peers
//! are slow.

mod common;

use common::*;
use kinesis_emulators::{Backend, LocalStack};

async fn fidelity() -> LocalStack {
    LocalStack::builder()
        .with_backend(Backend::Fidelity)
        .start_async()
        .await
        .expect("fidelity stack starts (needs node and npm)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fidelity_lease_table_operations_are_conditional() {
    lease_table_scenario(&fidelity().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fidelity_split_and_merge_keep_parents_before_children() {
    reshard_scenario(&fidelity().await, 12, 5, polling()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fidelity_at_timestamp_starts_at_the_timestamp() {
    at_timestamp_scenario(&fidelity().await).await;
}
