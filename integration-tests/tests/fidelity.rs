//! Fidelity tier: the server behaviours the consumer relies on and ferrokinesis gets wrong,
//! checked against npm kinesis-local + dynalite (or whatever `AWS_ENDPOINT_URL_*` points at).
//!
//! ```text
//!  OnceLock<LocalStack> (Backend::Fidelity, shared by the tests of this binary)
//!      --> checks::* (each on its own uniquely named stream/table)
//! ```
//! The peers are started once per test binary and exit with it (their stdin closes).

use std::sync::OnceLock;

use integration_tests::checks;
use kinesis_emulators::{Backend, LocalStack, ServiceKind};

fn stack() -> &'static LocalStack {
    static STACK: OnceLock<LocalStack> = OnceLock::new();
    STACK.get_or_init(|| {
        LocalStack::builder()
            .with_backend(Backend::Fidelity)
            .start()
            .expect("fidelity stack starts (needs node and npm)")
    })
}

#[tokio::test]
async fn fidelity_services_are_not_embedded() {
    let stack = stack();
    assert_ne!(stack.kinesis_kind(), ServiceKind::Embedded);
    assert_ne!(stack.dynamodb_kind(), ServiceKind::Embedded);
}

#[tokio::test]
async fn put_get_round_trip() {
    checks::put_get_round_trip(stack()).await;
}

#[tokio::test]
async fn resharding_lineage() {
    checks::resharding_lineage(stack()).await;
}

#[tokio::test]
async fn shard_end_has_null_iterator_and_child_shards() {
    checks::shard_end(stack(), true).await;
}

#[tokio::test]
async fn at_timestamp_positions() {
    checks::at_timestamp(stack()).await;
}

#[tokio::test]
async fn millis_behind_latest_when_behind() {
    checks::millis_behind_latest(stack()).await;
}

#[tokio::test]
async fn list_shards_paging_and_filters() {
    checks::list_shards_paging_and_filters(stack()).await;
}

#[tokio::test]
async fn fan_out_resume_after_continuation_sequence_number() {
    checks::fan_out_resume(stack()).await;
}

#[tokio::test]
async fn lease_table_conditional_writes() {
    checks::lease_table_conditional_writes(stack()).await;
}
