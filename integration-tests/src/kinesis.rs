//! Small Kinesis helpers used by the checks: put, read a shard, list shards, compare
//! sequence numbers.
//!
//! ```text
//!  put_batch --PutRecords--> [(shard, seq)]
//!  read_shard: GetShardIterator --> GetRecords* --> records + how the shard ended
//! ```

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{
    ChildShard, PutRecordsRequestEntry, Record, Shard, ShardIteratorType, StreamDescriptionSummary,
};
use aws_sdk_kinesis::Client;

/// Compares two Kinesis sequence numbers (decimal strings of up to ~56 digits, too long for
/// `u128`) numerically.
pub fn seq_cmp(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// One record written by [`put_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The payload.
    pub data: Vec<u8>,
    /// The shard Kinesis put it in.
    pub shard_id: String,
    /// Its sequence number.
    pub sequence_number: String,
}

/// Writes `payloads` with one `PutRecords` call (partition key = the payload's index
/// prefixed with `key_prefix`) and returns where each landed.
///
/// # Cancellation
/// Dropping the future may leave the records written.
///
/// # Panics
/// When the call fails or any record is rejected.
pub async fn put_batch(
    client: &Client,
    stream: &str,
    key_prefix: &str,
    payloads: &[Vec<u8>],
) -> Vec<Written> {
    let entries = payloads
        .iter()
        .enumerate()
        .map(|(i, data)| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(data.clone()))
                .partition_key(format!("{key_prefix}{i}"))
                .build()
                .expect("entry has data and key")
        })
        .collect::<Vec<_>>();
    let out = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(
        out.failed_record_count().unwrap_or(0),
        0,
        "PutRecords rejected records: {out:?}"
    );
    out.records()
        .iter()
        .zip(payloads)
        .map(|(r, data)| Written {
            data: data.clone(),
            shard_id: r.shard_id().expect("shard id").to_owned(),
            sequence_number: r.sequence_number().expect("sequence number").to_owned(),
        })
        .collect()
}

/// What reading a shard produced.
#[derive(Debug, Default)]
pub struct ShardRead {
    /// Every record returned, in order.
    pub records: Vec<Record>,
    /// `MillisBehindLatest` of each response, in order.
    pub millis_behind: Vec<Option<i64>>,
    /// True when a response had no `NextShardIterator` (the shard is closed and fully read).
    pub ended: bool,
    /// `ChildShards` of the response that ended the shard (empty when not ended or when
    /// the server does not send them).
    pub child_shards: Vec<ChildShard>,
}

/// Where [`read_shard`] starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// `TRIM_HORIZON`.
    TrimHorizon,
    /// `AT_TIMESTAMP` with this timestamp.
    AtTimestamp(DateTime),
    /// `AFTER_SEQUENCE_NUMBER` with this sequence number.
    AfterSequenceNumber(String),
}

/// Reads `shard_id` from `start` with `GetRecords` (at most `limit` records per call) until
/// the shard ends, `want` records have been read and a call came back empty, or `timeout`.
///
/// # Cancellation
/// Safe to drop at any point: it only reads.
///
/// # Panics
/// When a Kinesis call fails.
pub async fn read_shard(
    client: &Client,
    stream: &str,
    shard_id: &str,
    start: Start,
    limit: Option<i32>,
    want: usize,
    timeout: Duration,
) -> ShardRead {
    let request = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id);
    let request = match start {
        Start::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        Start::AtTimestamp(ts) => request
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(ts),
        Start::AfterSequenceNumber(seq) => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(seq),
    };
    let mut iterator = request
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator()
        .map(str::to_owned);
    let mut read = ShardRead::default();
    let deadline = Instant::now() + timeout;
    while let Some(it) = iterator.take() {
        let out = client
            .get_records()
            .shard_iterator(it)
            .set_limit(limit)
            .send()
            .await
            .expect("GetRecords");
        read.millis_behind.push(out.millis_behind_latest());
        let got = out.records().len();
        read.records.extend(out.records().iter().cloned());
        iterator = out.next_shard_iterator().map(str::to_owned);
        if iterator.is_none() {
            read.ended = true;
            read.child_shards = out.child_shards().to_vec();
            break;
        }
        if (got == 0 && read.records.len() >= want) || Instant::now() >= deadline {
            break;
        }
        if got == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    read
}

/// A Kinesis client for an emulator at `endpoint`: region `us-east-1`, the static test
/// credentials `test`/`test`, nothing read from the environment.
pub fn emulator_client(endpoint: &str) -> Client {
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "test", "test", None, None, "emulator",
        ))
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(conf)
}

/// Lists every shard of `stream` (no `MaxResults`, following `NextToken`).
///
/// # Cancellation
/// Safe to drop at any point: it only reads.
///
/// # Panics
/// When a `ListShards` call fails.
pub async fn list_shards(client: &Client, stream: &str) -> Vec<Shard> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let request = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let page = request.send().await.expect("ListShards");
        all.extend(page.shards().iter().cloned());
        match page.next_token() {
            Some(t) if !page.shards().is_empty() => token = Some(t.to_owned()),
            _ => return all,
        }
    }
}

/// Parses a shard's inclusive hash key range.
///
/// # Panics
/// When the shard has no range or it does not parse.
pub fn hash_range(shard: &Shard) -> (u128, u128) {
    let r = shard.hash_key_range().expect("hash key range");
    (
        r.starting_hash_key().parse().expect("starting hash key"),
        r.ending_hash_key().parse().expect("ending hash key"),
    )
}

/// Whether a shard is closed. Only the presence of `EndingSequenceNumber` counts: its value
/// differs between servers.
pub fn is_closed(shard: &Shard) -> bool {
    shard
        .sequence_number_range()
        .and_then(|r| r.ending_sequence_number())
        .is_some()
}

/// Returns the stream's `DescribeStreamSummary`.
///
/// # Cancellation
/// Safe to drop at any point: it only reads.
///
/// # Panics
/// When `DescribeStreamSummary` fails or says nothing.
pub async fn stream_summary(client: &Client, stream: &str) -> StreamDescriptionSummary {
    client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .expect("DescribeStreamSummary")
        .stream_description_summary
        .expect("summary")
}

/// Returns the stream's ARN.
///
/// # Cancellation
/// Safe to drop at any point: it only reads.
///
/// # Panics
/// When `DescribeStreamSummary` fails.
pub async fn stream_arn(client: &Client, stream: &str) -> String {
    stream_summary(client, stream).await.stream_arn
}

/// Returns the stream consumers registered on `stream` (one `ListStreamConsumers` page):
/// name → status (`CREATING`, `ACTIVE` or `DELETING`).
///
/// # Cancellation
/// Safe to drop at any point: it only reads.
///
/// # Panics
/// When `DescribeStreamSummary` or `ListStreamConsumers` fails.
pub async fn stream_consumers(client: &Client, stream: &str) -> HashMap<String, String> {
    let arn = stream_arn(client, stream).await;
    client
        .list_stream_consumers()
        .stream_arn(arn)
        .send()
        .await
        .expect("ListStreamConsumers")
        .consumers()
        .iter()
        .map(|c| {
            (
                c.consumer_name().to_owned(),
                c.consumer_status().as_str().to_owned(),
            )
        })
        .collect()
}

/// Registers the stream consumer `name` on the stream `stream_arn` and returns the
/// consumer's ARN; it does not wait for the consumer to become `ACTIVE`.
///
/// # Cancellation
/// Dropping the future after the request was sent may still register the consumer.
///
/// # Panics
/// When `RegisterStreamConsumer` fails.
pub async fn register_consumer(client: &Client, stream_arn: &str, name: &str) -> String {
    client
        .register_stream_consumer()
        .stream_arn(stream_arn)
        .consumer_name(name)
        .send()
        .await
        .expect("RegisterStreamConsumer")
        .consumer
        .expect("consumer")
        .consumer_arn
}

/// Deregisters the stream consumer `name` of the stream `stream_arn`; it does not wait for
/// the consumer to be gone.
///
/// # Cancellation
/// Dropping the future after the request was sent may still deregister the consumer.
///
/// # Panics
/// When `DeregisterStreamConsumer` fails.
pub async fn deregister_consumer(client: &Client, stream_arn: &str, name: &str) {
    client
        .deregister_stream_consumer()
        .stream_arn(stream_arn)
        .consumer_name(name)
        .send()
        .await
        .expect("DeregisterStreamConsumer");
}

/// Splits `shard_id` at the midpoint of its range and waits until the stream is ACTIVE.
///
/// # Cancellation
/// Dropping the future may leave the split under way.
///
/// # Panics
/// When a call fails or the stream does not become ACTIVE within two minutes.
pub async fn split_in_half(client: &Client, stream: &str, shard_id: &str) {
    let shards = list_shards(client, stream).await;
    let shard = shards
        .iter()
        .find(|s| s.shard_id() == shard_id)
        .expect("shard to split");
    let (start, end) = hash_range(shard);
    let mid = start + (end - start) / 2 + 1;
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(shard_id)
        .new_starting_hash_key(mid.to_string())
        .send()
        .await
        .expect("SplitShard");
    kinesis_emulators::wait_for_stream_active(client, stream, Duration::from_secs(120))
        .await
        .expect("ACTIVE after split");
}

/// Creates `stream` with `shards` provisioned shards and waits until it is ACTIVE.
///
/// # Cancellation
/// Dropping the future may leave the stream being created.
///
/// # Panics
/// When `CreateStream` fails or the stream is not ACTIVE within a minute.
pub async fn create_active_stream(client: &Client, stream: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream");
    kinesis_emulators::wait_for_stream_active(client, stream, Duration::from_secs(60))
        .await
        .expect("stream ACTIVE");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_numerically() {
        assert_eq!(seq_cmp("9", "10"), Ordering::Less);
        assert_eq!(
            seq_cmp(
                "49590338271490256608559692538361571095921575989136588898",
                "49590338271490256608559692538361571095921575989136588899"
            ),
            Ordering::Less
        );
        assert_eq!(seq_cmp("007", "7"), Ordering::Equal);
        assert_eq!(seq_cmp("100", "99"), Ordering::Greater);
    }
}

/// One user record read back from a stream: where it is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadUserRecord {
    /// The shard it was read from.
    pub shard_id: String,
    /// The Kinesis record's sequence number.
    pub sequence_number: String,
    /// Its position in an aggregate (0 for a plain record).
    pub sub_sequence_number: u64,
    /// Its partition key.
    pub partition_key: String,
    /// Its payload.
    pub data: bytes::Bytes,
}

/// How a reader treats the user records of an aggregate that lie outside the hash key
/// range of the shard it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRule {
    /// kinesis-agg's default (`OutsideRangePolicy::Drop`), what this project's consumer
    /// does: drop those records and keep the others, except in an aggregate sent under
    /// `kinesis_agg::WHOLE_RESEND_PARTITION_KEY`, which is dropped whole.
    Ours,
    /// The Java KCL's `AggregatorUtil.deaggregate`: at the first user record outside the
    /// range, the whole aggregate is discarded (the records taken from it before
    /// included). Plain records are never checked.
    JavaKcl,
}

/// Reads every shard of `stream` from `TRIM_HORIZON` to its current end (three empty pages
/// in a row, or the shard's end) and deaggregates with kinesis-agg, dropping sub-records
/// outside the shard's hash range as this project's consumer does
/// ([`RangeRule::Ours`]). Each shard's records come in stream order, shards one after
/// another.
///
/// # Cancellation
/// Safe to drop at any point: it only reads.
///
/// # Panics
/// When a Kinesis call fails or a record cannot be taken apart.
pub async fn read_user_records(client: &Client, stream: &str) -> Vec<ReadUserRecord> {
    read_user_records_by(client, stream, RangeRule::Ours).await
}

/// [`read_user_records`], treating user records outside their shard's range by `rule`.
///
/// # Cancellation
/// Safe to drop at any point: it only reads.
///
/// # Panics
/// When a Kinesis call fails or a record cannot be taken apart.
pub async fn read_user_records_by(
    client: &Client,
    stream: &str,
    rule: RangeRule,
) -> Vec<ReadUserRecord> {
    let mut out = Vec::new();
    for shard in list_shards(client, stream).await {
        let (start, end) = hash_range(&shard);
        let range =
            kinesis_agg::HashKeyRange::new(kinesis_agg::HashKey(start), kinesis_agg::HashKey(end))
                .expect("shard range");
        let deaggregator = match rule {
            RangeRule::Ours => kinesis_agg::Deaggregator::new().with_shard_range(range),
            // Kept and marked, to discard their whole aggregate below.
            RangeRule::JavaKcl => kinesis_agg::Deaggregator::new()
                .with_shard_range(range)
                .with_outside_range_policy(kinesis_agg::OutsideRangePolicy::Keep),
        };
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator()
            .map(str::to_owned);
        let mut empty_pages = 0;
        while let Some(it) = iterator.take() {
            let page = client
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await
                .expect("GetRecords");
            empty_pages = if page.records().is_empty() {
                empty_pages + 1
            } else {
                0
            };
            for r in page.records() {
                let data = bytes::Bytes::copy_from_slice(r.data().as_ref());
                let taken = deaggregator
                    .deaggregate(r.partition_key().unwrap_or_default(), data)
                    .expect("deaggregate");
                if taken.kept_outside_range > 0 {
                    continue; // RangeRule::JavaKcl: the whole aggregate is discarded
                }
                out.extend(taken.records.into_iter().map(|s| ReadUserRecord {
                    shard_id: shard.shard_id().to_owned(),
                    sequence_number: r.sequence_number().to_owned(),
                    sub_sequence_number: s.sub_sequence_number,
                    partition_key: s.partition_key.into(),
                    data: s.data,
                }));
            }
            if empty_pages < 3 {
                iterator = page.next_shard_iterator().map(str::to_owned);
            }
        }
    }
    out
}
