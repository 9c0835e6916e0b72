//! Server behaviours the libraries rely on, each as one check over a running stack.
//!
//! ```text
//!  check(&stack) --> create uniquely named stream/table --> exercise --> assert --> delete
//! ```
//!
//! Every check creates its own uniquely named resources, so checks can run in parallel
//! against one stack. The docs of each check say which servers are known to get it wrong.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus,
};
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardFilter, ShardFilterType, ShardIteratorType, StartingPosition,
    SubscribeToShardEventStream,
};
use kinesis_emulators::LocalStack;

use crate::kinesis::{
    hash_range, is_closed, list_shards, put_batch, read_shard, seq_cmp, split_in_half, stream_arn,
    Start,
};

/// Generous bound for reads that should finish at once locally (kinesis-local is slow).
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether `e` is DynamoDB's `ConditionalCheckFailedException`.
fn conditional_failed<E, R>(e: &aws_sdk_dynamodb::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    match e {
        aws_sdk_dynamodb::error::SdkError::ServiceError(se) => {
            se.err().code() == Some("ConditionalCheckFailedException")
        }
        _ => false,
    }
}

fn payloads(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{tag}-{i}").into_bytes()).collect()
}

fn first_shard(shards: &[aws_sdk_kinesis::types::Shard]) -> String {
    shards
        .first()
        .expect("at least one shard")
        .shard_id()
        .to_owned()
}

/// PutRecords then GetRecords from `TRIM_HORIZON` on every shard returns each record once,
/// in the shard it was reported in, in sequence-number order. All servers.
///
/// # Cancellation
/// Dropping the future leaves the stream behind.
///
/// # Panics
/// When the behaviour is wrong or a call fails.
pub async fn put_get_round_trip(stack: &LocalStack) {
    let client = stack.kinesis_client();
    let stream = stack
        .create_stream("roundtrip", 3)
        .await
        .expect("create stream");
    let sent = put_batch(&client, &stream, "k", &payloads("rt", 30)).await;
    let shards = list_shards(&client, &stream).await;
    assert_eq!(shards.len(), 3);
    let mut seen = 0;
    for shard in &shards {
        let expected: Vec<_> = sent
            .iter()
            .filter(|w| w.shard_id == shard.shard_id())
            .collect();
        let read = read_shard(
            &client,
            &stream,
            shard.shard_id(),
            Start::TrimHorizon,
            None,
            expected.len(),
            READ_TIMEOUT,
        )
        .await;
        let got: Vec<(&[u8], &str)> = read
            .records
            .iter()
            .map(|r| (r.data().as_ref(), r.sequence_number()))
            .collect();
        let want: Vec<(&[u8], &str)> = expected
            .iter()
            .map(|w| (w.data.as_slice(), w.sequence_number.as_str()))
            .collect();
        assert_eq!(got, want, "shard {}", shard.shard_id());
        assert!(read.records.windows(2).all(|w| seq_cmp(
            w[0].sequence_number(),
            w[1].sequence_number()
        )
        .is_lt()));
        seen += got.len();
    }
    assert_eq!(seen, sent.len());
    stack.delete_stream(&stream).await.expect("delete");
}

/// SplitShard then MergeShards: `ListShards` shows the parent closed, two split children
/// whose ranges tile the parent's and point at it with `ParentShardId` only, and a merged
/// child whose `ParentShardId`/`AdjacentParentShardId` are the two children and whose range
/// is their union. ferrokinesis, kinesis-local and Kinesis agree here (ferrokinesis only
/// loses lineage on `UpdateShardCount`).
///
/// # Cancellation
/// Dropping the future leaves the stream behind.
///
/// # Panics
/// When the behaviour is wrong or a call fails.
pub async fn resharding_lineage(stack: &LocalStack) {
    let client = stack.kinesis_client();
    let stream = stack
        .create_stream("lineage", 1)
        .await
        .expect("create stream");
    let parent = first_shard(&list_shards(&client, &stream).await);
    let parent_range = hash_range(&list_shards(&client, &stream).await[0]);
    split_in_half(&client, &stream, &parent).await;

    let shards = list_shards(&client, &stream).await;
    let parent_now = shards
        .iter()
        .find(|s| s.shard_id() == parent)
        .expect("parent listed");
    assert!(
        is_closed(parent_now),
        "split parent must be closed: {parent_now:?}"
    );
    let mut children: Vec<_> = shards
        .iter()
        .filter(|s| s.parent_shard_id() == Some(parent.as_str()))
        .collect();
    assert_eq!(children.len(), 2, "{shards:?}");
    children.sort_by_key(|s| hash_range(s).0);
    for c in &children {
        assert_eq!(c.adjacent_parent_shard_id(), None, "{c:?}");
        assert!(!is_closed(c), "{c:?}");
    }
    let (low, high) = (hash_range(children[0]), hash_range(children[1]));
    assert_eq!(low.0, parent_range.0);
    assert_eq!(low.1 + 1, high.0, "children must tile the parent range");
    assert_eq!(high.1, parent_range.1);

    let (a, b) = (
        children[0].shard_id().to_owned(),
        children[1].shard_id().to_owned(),
    );
    client
        .merge_shards()
        .stream_name(&stream)
        .shard_to_merge(&a)
        .adjacent_shard_to_merge(&b)
        .send()
        .await
        .expect("MergeShards");
    kinesis_emulators::wait_for_stream_active(&client, &stream, Duration::from_secs(120))
        .await
        .expect("ACTIVE after merge");

    let shards = list_shards(&client, &stream).await;
    let merged: Vec<_> = shards
        .iter()
        .filter(|s| s.adjacent_parent_shard_id().is_some())
        .collect();
    assert_eq!(merged.len(), 1, "{shards:?}");
    let merged = merged[0];
    let parents: BTreeSet<&str> = [merged.parent_shard_id(), merged.adjacent_parent_shard_id()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(parents, BTreeSet::from([a.as_str(), b.as_str()]));
    assert_eq!(hash_range(merged), parent_range);
    assert!(!is_closed(merged));
    for id in [&a, &b] {
        let s = shards
            .iter()
            .find(|s| s.shard_id() == id)
            .expect("merged parent listed");
        assert!(is_closed(s), "merged parent must be closed: {s:?}");
    }
    let open: Vec<_> = shards.iter().filter(|s| !is_closed(s)).collect();
    assert_eq!(open.len(), 1);
    stack.delete_stream(&stream).await.expect("delete");
}

/// Reading a closed shard to its end returns every record, then a response without
/// `NextShardIterator`. With `expect_child_shards`, that response must also carry
/// `ChildShards` naming both split children with the parent among their parents
/// (Kinesis and kinesis-local do; ferrokinesis never sends `ChildShards`).
///
/// # Cancellation
/// Dropping the future leaves the stream behind.
///
/// # Panics
/// When the behaviour is wrong or a call fails.
pub async fn shard_end(stack: &LocalStack, expect_child_shards: bool) {
    let client = stack.kinesis_client();
    let stream = stack
        .create_stream("shardend", 1)
        .await
        .expect("create stream");
    let parent = first_shard(&list_shards(&client, &stream).await);
    let sent = put_batch(&client, &stream, "k", &payloads("end", 5)).await;
    split_in_half(&client, &stream, &parent).await;

    let read = read_shard(
        &client,
        &stream,
        &parent,
        Start::TrimHorizon,
        Some(2),
        sent.len(),
        READ_TIMEOUT,
    )
    .await;
    assert!(
        read.ended,
        "a closed shard must end with a null NextShardIterator"
    );
    let got: Vec<&[u8]> = read.records.iter().map(|r| r.data().as_ref()).collect();
    let want: Vec<&[u8]> = sent.iter().map(|w| w.data.as_slice()).collect();
    assert_eq!(got, want);
    if expect_child_shards {
        let children: BTreeSet<String> = list_shards(&client, &stream)
            .await
            .iter()
            .filter(|s| s.parent_shard_id() == Some(parent.as_str()))
            .map(|s| s.shard_id().to_owned())
            .collect();
        let reported: BTreeSet<String> = read
            .child_shards
            .iter()
            .map(|c| c.shard_id().to_owned())
            .collect();
        assert_eq!(reported, children, "ChildShards at shard end");
        for c in &read.child_shards {
            assert!(c.parent_shards().contains(&parent), "{c:?}");
        }
    }
    stack.delete_stream(&stream).await.expect("delete");
}

/// `AT_TIMESTAMP` starts at the first record that arrived at or after the timestamp: from a
/// record's own arrival time it yields that record and the later ones only; from a (past)
/// time after the last record it yields nothing (not the whole shard). ferrokinesis gets this
/// wrong (whole-second arrival times, `TRIM_HORIZON` fallback).
///
/// # Cancellation
/// Dropping the future leaves the stream behind.
///
/// # Panics
/// When the behaviour is wrong or a call fails.
pub async fn at_timestamp(stack: &LocalStack) {
    let client = stack.kinesis_client();
    let stream = stack
        .create_stream("attimestamp", 1)
        .await
        .expect("create stream");
    let shard = first_shard(&list_shards(&client, &stream).await);
    let early = put_batch(&client, &stream, "a", &payloads("early", 3)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let late = put_batch(&client, &stream, "b", &payloads("late", 3)).await;
    let all = read_shard(
        &client,
        &stream,
        &shard,
        Start::TrimHorizon,
        None,
        6,
        READ_TIMEOUT,
    )
    .await;
    assert_eq!(all.records.len(), early.len() + late.len());
    let first_late = &all.records[early.len()];
    let ts = *first_late
        .approximate_arrival_timestamp()
        .expect("arrival timestamp");

    let from_late = read_shard(
        &client,
        &stream,
        &shard,
        Start::AtTimestamp(ts),
        None,
        3,
        READ_TIMEOUT,
    )
    .await;
    let got: Vec<&[u8]> = from_late
        .records
        .iter()
        .map(|r| r.data().as_ref())
        .collect();
    let want: Vec<&[u8]> = late.iter().map(|w| w.data.as_slice()).collect();
    assert_eq!(got, want, "AT_TIMESTAMP of the first late record");

    let last_ts = *all.records[all.records.len() - 1]
        .approximate_arrival_timestamp()
        .expect("arrival timestamp");
    // After the last record but not in the future (servers reject future timestamps).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after_all = DateTime::from_millis(last_ts.to_millis().expect("millis") + 500);
    let none = read_shard(
        &client,
        &stream,
        &shard,
        Start::AtTimestamp(after_all),
        None,
        0,
        Duration::from_secs(2),
    )
    .await;
    assert!(
        none.records.is_empty(),
        "AT_TIMESTAMP after every record returned {:?}",
        none.records
    );
    stack.delete_stream(&stream).await.expect("delete");
}

/// `MillisBehindLatest` is positive while a reader is behind older records and lower once it
/// has caught up. ferrokinesis always reports 0.
///
/// # Cancellation
/// Dropping the future leaves the stream behind.
///
/// # Panics
/// When the behaviour is wrong or a call fails.
pub async fn millis_behind_latest(stack: &LocalStack) {
    let client = stack.kinesis_client();
    let stream = stack
        .create_stream("behind", 1)
        .await
        .expect("create stream");
    let shard = first_shard(&list_shards(&client, &stream).await);
    put_batch(&client, &stream, "a", &payloads("old", 3)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    put_batch(&client, &stream, "b", &payloads("new", 3)).await;
    let read = read_shard(
        &client,
        &stream,
        &shard,
        Start::TrimHorizon,
        Some(1),
        6,
        READ_TIMEOUT,
    )
    .await;
    assert_eq!(read.records.len(), 6);
    let first = read.millis_behind[0].expect("MillisBehindLatest on GetRecords");
    assert!(
        first > 0,
        "reader one record into a 1.5 s old backlog reports {first} ms behind"
    );
    let last = read
        .millis_behind
        .last()
        .copied()
        .flatten()
        .expect("MillisBehindLatest");
    assert!(
        last < first,
        "caught up ({last} ms) must be less behind than at start ({first} ms)"
    );
    stack.delete_stream(&stream).await.expect("delete");
}

/// `ListShards` pages with `MaxResults` + `NextToken` (every shard exactly once, same as
/// the unpaged list), and honours `ShardFilter` `AT_LATEST` (open shards only),
/// `AT_TRIM_HORIZON` (all shards) and `AFTER_SHARD_ID`. ferrokinesis breaks paging and
/// ignores filters.
///
/// # Cancellation
/// Dropping the future leaves the stream behind.
///
/// # Panics
/// When the behaviour is wrong or a call fails.
pub async fn list_shards_paging_and_filters(stack: &LocalStack) {
    let client = stack.kinesis_client();
    let stream = stack
        .create_stream("listshards", 4)
        .await
        .expect("create stream");
    let initial = list_shards(&client, &stream).await;
    split_in_half(&client, &stream, initial[0].shard_id()).await;
    let all: Vec<String> = list_shards(&client, &stream)
        .await
        .iter()
        .map(|s| s.shard_id().to_owned())
        .collect();
    assert_eq!(all.len(), 6);

    let mut paged = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let request = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(&stream),
        };
        let page = request
            .max_results(4)
            .send()
            .await
            .expect("ListShards page");
        pages += 1;
        assert!(page.shards().len() <= 4);
        paged.extend(page.shards().iter().map(|s| s.shard_id().to_owned()));
        match page.next_token() {
            Some(t) if paged.len() < all.len() => token = Some(t.to_owned()),
            _ => break,
        }
        assert!(pages < 10, "paging does not terminate");
    }
    assert!(pages >= 2, "6 shards at MaxResults=4 need two pages");
    assert_eq!(paged, all);

    let filtered = |filter: ShardFilter| {
        let client = client.clone();
        let stream = stream.clone();
        async move {
            client
                .list_shards()
                .stream_name(stream)
                .shard_filter(filter)
                .send()
                .await
                .expect("ListShards with filter")
                .shards()
                .iter()
                .map(|s| s.shard_id().to_owned())
                .collect::<BTreeSet<_>>()
        }
    };
    let latest = filtered(
        ShardFilter::builder()
            .r#type(ShardFilterType::AtLatest)
            .build()
            .expect("filter"),
    )
    .await;
    let open: BTreeSet<String> = all
        .iter()
        .filter(|id| **id != initial[0].shard_id())
        .cloned()
        .collect();
    assert_eq!(latest, open, "AT_LATEST lists open shards only");
    let horizon = filtered(
        ShardFilter::builder()
            .r#type(ShardFilterType::AtTrimHorizon)
            .build()
            .expect("filter"),
    )
    .await;
    assert_eq!(horizon, all.iter().cloned().collect::<BTreeSet<_>>());
    let after = filtered(
        ShardFilter::builder()
            .r#type(ShardFilterType::AfterShardId)
            .shard_id(&all[2])
            .build()
            .expect("filter"),
    )
    .await;
    assert_eq!(after, all[3..].iter().cloned().collect::<BTreeSet<_>>());
    stack.delete_stream(&stream).await.expect("delete");
}

async fn register_consumer(client: &aws_sdk_kinesis::Client, stream_arn: &str) -> String {
    let arn = crate::kinesis::register_consumer(
        client,
        stream_arn,
        &kinesis_emulators::unique_name("efo"),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = client
            .describe_stream_consumer()
            .consumer_arn(&arn)
            .send()
            .await
            .expect("DescribeStreamConsumer");
        if d.consumer_description().map(|c| c.consumer_status()) == Some(&ConsumerStatus::Active) {
            return arn;
        }
        assert!(Instant::now() < deadline, "consumer never became ACTIVE");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads a subscription until `want` records arrived and then for `quiet` more (to catch
/// records that should not be there), returning the payloads and the continuation sequence
/// number of the last event that carried records.
///
/// Kinesis refuses a new subscription for the same consumer and shard for about five
/// seconds after the previous one (`ResourceInUseException`); that is retried for up to 20 s.
async fn drain_subscription(
    client: &aws_sdk_kinesis::Client,
    consumer_arn: &str,
    shard_id: &str,
    position: StartingPosition,
    want: usize,
    quiet: Duration,
) -> (Vec<Vec<u8>>, Option<String>) {
    let mut got = Vec::new();
    let mut continuation = None;
    let retry_until = Instant::now() + Duration::from_secs(20);
    'subscribe: loop {
        let sub = client
            .subscribe_to_shard()
            .consumer_arn(consumer_arn)
            .shard_id(shard_id)
            .starting_position(position.clone())
            .send()
            .await;
        let mut sub = match sub {
            Ok(sub) => sub,
            Err(e)
                if Instant::now() < retry_until
                    && e.as_service_error()
                        .is_some_and(|se| se.is_resource_in_use_exception()) =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue 'subscribe;
            }
            Err(e) => panic!(
                "SubscribeToShard: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(e)
            ),
        };
        let deadline = Instant::now() + READ_TIMEOUT;
        // Servers send events (often empty) every second or so: the quiet period runs from
        // the moment `want` records were in, not from the last event.
        let mut quiet_until: Option<Instant> = None;
        loop {
            if got.len() >= want && quiet_until.is_none() {
                quiet_until = Some(Instant::now() + quiet);
            }
            let until = quiet_until.unwrap_or(deadline);
            let wait = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, sub.event_stream.recv()).await {
                Err(_) | Ok(Ok(None)) => break 'subscribe,
                Ok(Err(e))
                    if got.is_empty()
                        && Instant::now() < retry_until
                        && matches!(
                            e.as_service_error(),
                            Some(SubscribeToShardEventStreamError::ResourceInUseException(_))
                        ) =>
                {
                    drop(sub);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue 'subscribe;
                }
                Ok(Err(e)) => panic!(
                    "subscription failed: {}",
                    aws_sdk_kinesis::error::DisplayErrorContext(e)
                ),
                Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(ev)))) => {
                    if !ev.records().is_empty() {
                        got.extend(ev.records().iter().map(|r| r.data().as_ref().to_vec()));
                        continuation = Some(ev.continuation_sequence_number().to_owned());
                    }
                }
                Ok(Ok(Some(_))) => {}
            }
            if Instant::now() >= quiet_until.unwrap_or(deadline) {
                break 'subscribe;
            }
        }
    }
    (got, continuation)
}

/// Enhanced fan-out: after `RegisterStreamConsumer`, a `SubscribeToShard` from
/// `TRIM_HORIZON` delivers the first batch; a new subscription from
/// `AFTER_SEQUENCE_NUMBER` = the last `ContinuationSequenceNumber` delivers exactly the
/// records written after it, in order. ferrokinesis ignores the starting position.
///
/// # Cancellation
/// Dropping the future leaves the stream and consumer behind.
///
/// # Panics
/// When the behaviour is wrong or a call fails.
pub async fn fan_out_resume(stack: &LocalStack) {
    let client = stack.kinesis_client();
    let stream = stack
        .create_stream("fanout", 1)
        .await
        .expect("create stream");
    let shard = first_shard(&list_shards(&client, &stream).await);
    let arn = stream_arn(&client, &stream).await;
    let consumer = register_consumer(&client, &arn).await;

    let first = payloads("first", 5);
    put_batch(&client, &stream, "a", &first).await;
    let (got, continuation) = drain_subscription(
        &client,
        &consumer,
        &shard,
        StartingPosition::builder()
            .r#type(ShardIteratorType::TrimHorizon)
            .build()
            .expect("position"),
        first.len(),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(got, first, "first subscription from TRIM_HORIZON");
    let continuation = continuation.expect("continuation sequence number");

    let rest = payloads("rest", 4);
    put_batch(&client, &stream, "b", &rest).await;
    let (got, _) = drain_subscription(
        &client,
        &consumer,
        &shard,
        StartingPosition::builder()
            .r#type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(continuation)
            .build()
            .expect("position"),
        rest.len(),
        Duration::from_millis(1500),
    )
    .await;
    assert_eq!(
        got, rest,
        "resumed subscription must deliver exactly the rest"
    );
    stack.delete_stream(&stream).await.expect("delete");
}

/// The conditional writes a KCL-style lease table uses: create-if-absent, renew/take
/// conditioned on `leaseCounter`, checkpoint, evict with `REMOVE`, lineage as a string set,
/// conditional delete, and a consistent scan. dynoxide, dynalite and DynamoDB agree.
///
/// # Cancellation
/// Dropping the future leaves the table behind.
///
/// # Panics
/// When the behaviour is wrong or a call fails.
pub async fn lease_table_conditional_writes(stack: &LocalStack) {
    let db = stack.dynamodb_client();
    let table = kinesis_emulators::unique_name("leases");
    db.create_table()
        .table_name(&table)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("leaseKey")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("leaseKey")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attr"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let t = db
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .expect("DescribeTable");
        if t.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            break;
        }
        assert!(Instant::now() < deadline, "table never became ACTIVE");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: i64| AttributeValue::N(v.to_string());
    let create = || {
        db.put_item()
            .table_name(&table)
            .item("leaseKey", s("shardId-000000000000"))
            .item("leaseCounter", n(0))
            .item("checkpoint", s("TRIM_HORIZON"))
            .item("ownerSwitchesSinceCheckpoint", n(0))
            .condition_expression("attribute_not_exists(leaseKey)")
    };
    create().send().await.expect("create lease");
    let again = create().send().await.expect_err("second create must fail");
    assert!(conditional_failed(&again), "{again:?}");

    let take = |owner: &str, expected: i64| {
        db.update_item()
            .table_name(&table)
            .key("leaseKey", s("shardId-000000000000"))
            .update_expression(
                "SET leaseOwner = :owner ADD leaseCounter :one, ownerSwitchesSinceCheckpoint :one",
            )
            .condition_expression("leaseCounter = :expected")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expected", n(expected))
            .return_values(ReturnValue::AllNew)
    };
    let taken = take("worker-a", 0).send().await.expect("take by a");
    let attrs = taken.attributes().expect("ALL_NEW");
    assert_eq!(attrs.get("leaseCounter"), Some(&n(1)));
    assert_eq!(attrs.get("leaseOwner"), Some(&s("worker-a")));
    let stale = take("worker-b", 0)
        .send()
        .await
        .expect_err("stale counter must fail");
    assert!(conditional_failed(&stale), "{stale:?}");

    db.update_item()
        .table_name(&table)
        .key("leaseKey", s("shardId-000000000000"))
        .update_expression("SET checkpoint = :cp, checkpointSubSequenceNumber = :zero, ownerSwitchesSinceCheckpoint = :zero ADD childShardIds :children")
        .condition_expression("leaseCounter = :expected AND leaseOwner = :owner")
        .expression_attribute_values(":cp", s("49590338271490256608559692538361571095921575989136588898"))
        .expression_attribute_values(":zero", n(0))
        .expression_attribute_values(":children", AttributeValue::Ss(vec!["shardId-000000000001".into(), "shardId-000000000002".into()]))
        .expression_attribute_values(":expected", n(1))
        .expression_attribute_values(":owner", s("worker-a"))
        .send()
        .await
        .expect("checkpoint by owner");
    let wrong_owner = db
        .update_item()
        .table_name(&table)
        .key("leaseKey", s("shardId-000000000000"))
        .update_expression("SET checkpoint = :cp")
        .condition_expression("leaseOwner = :owner")
        .expression_attribute_values(":cp", s("SHARD_END"))
        .expression_attribute_values(":owner", s("worker-b"))
        .send()
        .await
        .expect_err("checkpoint by non-owner must fail");
    assert!(conditional_failed(&wrong_owner), "{wrong_owner:?}");

    db.update_item()
        .table_name(&table)
        .key("leaseKey", s("shardId-000000000000"))
        .update_expression("REMOVE leaseOwner ADD leaseCounter :one")
        .condition_expression("leaseCounter = :expected")
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":expected", n(1))
        .send()
        .await
        .expect("evict");
    let item = db
        .get_item()
        .table_name(&table)
        .key("leaseKey", s("shardId-000000000000"))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem");
    let item = item.item().expect("lease exists");
    assert_eq!(item.get("leaseOwner"), None);
    assert_eq!(item.get("leaseCounter"), Some(&n(2)));
    assert_eq!(item.get("ownerSwitchesSinceCheckpoint"), Some(&n(0)));
    let children: HashSet<&str> = match item.get("childShardIds") {
        Some(AttributeValue::Ss(v)) => v.iter().map(String::as_str).collect(),
        other => panic!("childShardIds: {other:?}"),
    };
    assert_eq!(
        children,
        HashSet::from(["shardId-000000000001", "shardId-000000000002"])
    );

    let scan = db
        .scan()
        .table_name(&table)
        .consistent_read(true)
        .send()
        .await
        .expect("Scan");
    assert_eq!(scan.count(), 1);

    let bad_delete = db
        .delete_item()
        .table_name(&table)
        .key("leaseKey", s("shardId-000000000000"))
        .condition_expression("leaseCounter = :expected")
        .expression_attribute_values(":expected", n(1))
        .send()
        .await
        .expect_err("delete with stale counter must fail");
    assert!(conditional_failed(&bad_delete), "{bad_delete:?}");
    db.delete_item()
        .table_name(&table)
        .key("leaseKey", s("shardId-000000000000"))
        .condition_expression("leaseCounter = :expected")
        .expression_attribute_values(":expected", n(2))
        .send()
        .await
        .expect("delete with current counter");
    db.delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("DeleteTable");
}
