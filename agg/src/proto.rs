//! The protobuf messages of the KPL aggregation format (proto2), as prost structs.
//!
//! ```text
//! message AggregatedRecord { repeated string partition_key_table = 1;
//!                            repeated string explicit_hash_key_table = 2;
//!                            repeated Record records = 3; }
//! message Record { required uint64 partition_key_index = 1; optional uint64 explicit_hash_key_index = 2;
//!                  required bytes data = 3; repeated Tag tags = 4; }
//! message Tag { required string key = 1; optional string value = 2; }
//! ```
//!
//! The [`Aggregator`](crate::Aggregator) writes these bytes itself (it must know the exact
//! size before accepting a record); these structs decode them and pin, in tests, that
//! both encodings are byte for byte the same.

use bytes::Bytes;

/// The message that follows the magic in an aggregated Kinesis record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AggregatedRecord {
    /// Distinct partition keys, referenced by index from each record.
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    /// Distinct explicit hash keys (decimal), referenced by index from each record.
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    /// The user records, in order: their position is their sub-sequence number.
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<Record>,
}

/// One user record inside an aggregate.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Record {
    /// Index into `partition_key_table`.
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    /// Index into `explicit_hash_key_table`, when the record has an explicit hash key.
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    /// The user's payload; decoding from `Bytes` shares the input buffer, no copy.
    #[prost(bytes = "bytes", required, tag = "3")]
    pub data: Bytes,
    /// Key/value tags. Part of the format; neither the KPL nor this crate writes them.
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<Tag>,
}

/// A key/value tag on a user record.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Tag {
    /// The tag's key.
    #[prost(string, required, tag = "1")]
    pub key: String,
    /// The tag's value, if any.
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}
