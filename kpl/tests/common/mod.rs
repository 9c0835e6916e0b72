//! Shared by the producer's integration tests: reading a stream back goes through the
//! workspace's test support (`integration-tests`), which uses the real GetRecords API and
//! kinesis-agg's deaggregator.

#![allow(dead_code)]

use std::collections::HashMap;

pub(crate) use integration_tests::kinesis::{
    list_shards, read_user_records as read_all, ReadUserRecord as ReadRecord,
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
