//! Shared by the producer's integration tests: reading a stream back goes through the
//! workspace's test support (`integration-tests`), which uses the real GetRecords API and
//! kinesis-agg's deaggregator; checks on how failures are told (short messages, said
//! once) and a wait for a matching failure report.

// Each test binary uses a part of this module.
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::time::Duration;

use kinesis_producer::{CallFailure, Failed};

pub(crate) use integration_tests::kinesis::{
    list_shards, read_user_records as read_all, read_user_records_by, RangeRule,
    ReadUserRecord as ReadRecord,
};

/// Index of what was read by (shard, sequence, sub-sequence), asserting no position
/// holds two records.
pub(crate) fn by_position(read: &[ReadRecord]) -> HashMap<(String, String, u64), ReadRecord> {
    let mut map = HashMap::new();
    for r in read {
        let key = (
            r.shard_id.clone(),
            r.sequence_number.clone(),
            r.sub_sequence_number,
        );
        assert!(map.insert(key, r.clone()).is_none(), "position read twice");
    }
    map
}

/// Asserts that a failure's own message is short and said once: no SDK debug dump, no
/// HTTP detail, and the display does not repeat it.
pub(crate) fn assert_concise(failed: &Failed, message: &str) {
    let text = failed.to_string();
    assert!(message.len() < 300, "{} bytes: {message}", message.len());
    for noise in [
        "HTTP/",
        "x-amz",
        "content-type",
        "headers",
        "DispatchFailure {",
    ] {
        assert!(!text.contains(noise), "{noise:?} in {text}");
    }
    assert_eq!(text.matches(message).count(), 1, "said once: {text}");
    assert!(text.len() < 500, "{} bytes: {text}", text.len());
}

/// The next report that `matches`, waiting at most `within`.
pub(crate) async fn next_report(
    failures: &mut tokio::sync::broadcast::Receiver<CallFailure>,
    within: Duration,
    matches: impl Fn(&CallFailure) -> bool,
) -> CallFailure {
    tokio::time::timeout(within, async {
        loop {
            match failures.recv().await {
                Ok(report) if matches(&report) => return report,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("failure reports ended: {e}"),
            }
        }
    })
    .await
    .expect("a matching failure report")
}
