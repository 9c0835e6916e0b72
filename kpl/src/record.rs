//! What an application hands the producer.

use bytes::Bytes;

/// A user record for [`Producer::put`](crate::Producer::put): the stream, a partition key,
/// optionally an explicit hash key, and the data.
///
/// Nothing is checked here; `put` checks everything and hands the record back inside a
/// typed error when something is wrong, so building a record never fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The stream to put to: one producer serves any number of streams.
    pub stream: String,
    /// Routes the record (by its MD5) and is handed to consumers; 1 to 256 Unicode
    /// characters, counted as characters, not bytes (AWS's rule: a key of 256 three-byte
    /// characters, 768 bytes, is valid). Some emulators count bytes and refuse such a key
    /// when it is sent as a Kinesis record's own (ferrokinesis 0.7, the embedded emulator
    /// of this project's tests, does); inside an aggregate it never is (see the crate
    /// documentation), so it fails at most its own record, sent alone.
    pub partition_key: String,
    /// A decimal hash key (0 to 2^128 - 1) that routes the record instead of the
    /// partition key's MD5.
    pub explicit_hash_key: Option<String>,
    /// The payload; with the partition key at most the stream's record size limit.
    pub data: Bytes,
}

impl ProducerRecord {
    /// A record for `stream` with this partition key and data.
    pub fn new(
        stream: impl Into<String>,
        partition_key: impl Into<String>,
        data: impl Into<Bytes>,
    ) -> Self {
        ProducerRecord {
            stream: stream.into(),
            partition_key: partition_key.into(),
            explicit_hash_key: None,
            data: data.into(),
        }
    }

    /// Routes the record by this decimal hash key instead of the partition key's MD5.
    pub fn with_explicit_hash_key(mut self, hash_key: impl Into<String>) -> Self {
        self.explicit_hash_key = Some(hash_key.into());
        self
    }
}
