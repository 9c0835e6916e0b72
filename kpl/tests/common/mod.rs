//! Shared by the producer's integration tests: read a whole stream back, user record by
//! user record, through the real GetRecords API and kinesis-agg's deaggregator.

#![allow(dead_code)]

use std::collections::HashMap;

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use bytes::Bytes;
use kinesis_agg::{Deaggregator, HashKeyRange};

/// One user record as read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadRecord {
    pub(crate) shard_id: String,
    pub(crate) sequence_number: String,
    pub(crate) sub_sequence_number: u64,
    pub(crate) partition_key: String,
    pub(crate) data: Bytes,
}

/// All shards of a stream with their ranges and parents (paged ListShards).
pub(crate) async fn list_shards(
    client: &Client,
    stream: &str,
) -> Vec<aws_sdk_kinesis::types::Shard> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let page = req.send().await.expect("ListShards");
        out.extend(page.shards().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            return out;
        }
    }
}

/// Reads every shard from TRIM_HORIZON to its current end and deaggregates, dropping
/// sub-records outside the shard's range as the KCL does. Records of each shard come in
/// stream order.
pub(crate) async fn read_all(client: &Client, stream: &str) -> Vec<ReadRecord> {
    let mut out = Vec::new();
    for shard in list_shards(client, stream).await {
        let range = shard.hash_key_range().expect("range");
        let range =
            HashKeyRange::parse(range.starting_hash_key(), range.ending_hash_key()).unwrap();
        let deagg = Deaggregator::new().with_shard_range(range);
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator
            .expect("iterator");
        let mut empty_reads = 0;
        loop {
            let page = client
                .get_records()
                .shard_iterator(&iterator)
                .limit(10_000)
                .send()
                .await
                .expect("GetRecords");
            if page.records().is_empty() {
                empty_reads += 1;
            } else {
                empty_reads = 0;
            }
            for r in page.records() {
                let data = Bytes::copy_from_slice(r.data().as_ref());
                let d = deagg
                    .deaggregate(r.partition_key().unwrap_or_default(), data)
                    .unwrap();
                for s in d.records {
                    out.push(ReadRecord {
                        shard_id: shard.shard_id().to_owned(),
                        sequence_number: r.sequence_number().to_owned(),
                        sub_sequence_number: s.sub_sequence_number,
                        partition_key: s.partition_key,
                        data: s.data,
                    });
                }
            }
            match page.next_shard_iterator() {
                Some(next) if empty_reads < 2 => iterator = next.to_owned(),
                _ => break,
            }
        }
    }
    out
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
