//! Shared by the producer's integration tests: reading a stream back goes through the
//! workspace's test support (`integration-tests`), which uses the real GetRecords API and
//! kinesis-agg's deaggregator; checks on how failures are told (short messages, said
//! once) and a wait for a matching failure report.

// Each test binary uses a part of this module.
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::time::Duration;

use kinesis_emulators::LocalStack;
use kinesis_producer::{
    BatchHandle, CallFailure, Delivered, Failed, FailureReason, Outcome, ProducerRecord,
};

pub(crate) use integration_tests::kinesis::{
    list_shards, read_user_records as read_all, read_user_records_by, RangeRule,
    ReadUserRecord as ReadRecord,
};

/// An embedded stack with its default settings.
pub(crate) async fn stack() -> LocalStack {
    LocalStack::builder()
        .start_async()
        .await
        .expect("local stack")
}

/// Record `i` of a numbered run to `stream`: key `key-<i mod 97>`, data `<tag>-<i>`, so
/// that a run spreads over the shards and each record is told apart by its data.
pub(crate) fn numbered_record(stream: &str, tag: &str, i: usize) -> ProducerRecord {
    ProducerRecord::new(stream, format!("key-{}", i % 97), format!("{tag}-{i}"))
}

/// Pairs each record with its outcome, asserting there is one outcome per record and
/// every one was delivered.
pub(crate) fn all_delivered(
    records: Vec<ProducerRecord>,
    outcomes: Vec<Outcome>,
) -> Vec<(ProducerRecord, Delivered)> {
    assert_eq!(records.len(), outcomes.len(), "one outcome per record");
    records
        .into_iter()
        .zip(outcomes)
        .map(|(r, o)| (r, o.unwrap_or_else(|f| panic!("not delivered: {f}"))))
        .collect()
}

/// Awaits each batch's handle and pairs the batch's records with their outcomes,
/// asserting every one was delivered (see [`all_delivered`]).
pub(crate) async fn batches_delivered(
    batches: Vec<Vec<ProducerRecord>>,
    handles: Vec<BatchHandle>,
) -> Vec<(ProducerRecord, Delivered)> {
    assert_eq!(batches.len(), handles.len(), "one handle per batch");
    let mut delivered = Vec::new();
    for (batch, handle) in batches.into_iter().zip(handles) {
        delivered.extend(all_delivered(batch, handle.await));
    }
    delivered
}

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

/// Each delivered record is in the stream exactly once, at the reported position, and
/// nothing else is.
pub(crate) async fn assert_read_back_exactly(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    delivered: &[(ProducerRecord, Delivered)],
) {
    let read = read_all(client, stream).await;
    assert_eq!(read.len(), delivered.len(), "user records read back");
    assert_at_reported_positions(&read, delivered);
}

/// Each delivered record is among `read` at the position its outcome reported (with its
/// own key and data); `read` may hold other records too.
pub(crate) fn assert_at_reported_positions(
    read: &[ReadRecord],
    delivered: &[(ProducerRecord, Delivered)],
) {
    let positions = by_position(read);
    for (r, d) in delivered {
        let key = (
            d.shard_id.to_string(),
            d.sequence_number.to_string(),
            d.sub_sequence_number,
        );
        let got = positions
            .get(&key)
            .unwrap_or_else(|| panic!("nothing at reported position {key:?}"));
        assert_eq!(got.partition_key, r.partition_key);
        assert_eq!(got.data, r.data);
    }
}

/// A client whose endpoint accepts connections and never answers.
pub(crate) async fn stalled_client() -> (aws_sdk_kinesis::Client, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = listener.accept().await {
            held.push(sock);
        }
    });
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(format!("http://{addr}"))
        .build();
    (aws_sdk_kinesis::Client::from_conf(conf), task)
}

/// Asserts that every outcome failed with a stream-level, non-retryable `Rejected` of
/// `code`, each record handed back.
pub(crate) fn assert_all_rejected(outcomes: Vec<Result<Delivered, Failed>>, code: &str) {
    for outcome in outcomes {
        let failed = outcome.expect_err(code);
        match &failed.reason {
            FailureReason::Rejected { code: got, .. } => {
                assert_eq!(got, code, "{failed}");
                assert!(failed.reason.is_stream_level());
                assert!(!failed.reason.is_retryable());
            }
            other => panic!("want Rejected, got {other:?}"),
        }
        assert!(
            failed.record.is_some(),
            "handed back for the caller to keep"
        );
    }
}

/// Puts records `range` of `stream` (data `r<i>`, key `k<i mod 50>`) one by one and waits
/// for every outcome, in put order, failing the test after `deadline`.
pub(crate) async fn put_numbered(
    producer: &kinesis_producer::Producer,
    stream: &str,
    range: std::ops::Range<usize>,
    deadline: Duration,
) -> Vec<Result<Delivered, Failed>> {
    let mut handles = Vec::with_capacity(range.len());
    for i in range {
        let record = ProducerRecord::new(stream, format!("k{}", i % 50), format!("r{i}"));
        handles.push(producer.put(record).await.expect("accepted"));
    }
    tokio::time::timeout(deadline, futures::future::join_all(handles))
        .await
        .expect("every outcome before the deadline")
}
