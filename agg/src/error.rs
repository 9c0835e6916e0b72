//! The crate's error type.

use crate::hash::HashKey;

/// Everything that can go wrong in this crate.
///
/// None of these errors is retryable: each names input that will be wrong however often it
/// is tried again (see [`Error::is_retryable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A decimal hash key (an `ExplicitHashKey` or a shard's range bound) did not parse.
    #[error("invalid hash key {input:?}: {reason}")]
    InvalidHashKey {
        /// The text as given (cut to 80 characters).
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A hash key range whose start lies after its end.
    #[error("invalid hash key range: start {start} is greater than end {end}")]
    InvalidHashKeyRange {
        /// The range's first hash key.
        start: HashKey,
        /// The range's last hash key.
        end: HashKey,
    },
    /// A partition key with no characters.
    #[error("partition key is empty; Kinesis requires 1 to 256 characters")]
    EmptyPartitionKey,
    /// A partition key longer than Kinesis allows.
    #[error("partition key has {chars} characters; Kinesis allows at most 256")]
    PartitionKeyTooLong {
        /// How many Unicode characters it has.
        chars: usize,
    },
    /// A user record larger than one Kinesis record may be.
    #[error("record of {size} bytes (data plus partition key) exceeds the limit of {limit} bytes")]
    RecordTooLarge {
        /// Data plus partition key, in bytes.
        size: usize,
        /// The limit that applied.
        limit: usize,
    },
    /// A setting outside its allowed range.
    #[error("invalid setting {setting} = {value}: {reason}")]
    InvalidConfig {
        /// Which setting.
        setting: &'static str,
        /// The value given.
        value: u64,
        /// The allowed range.
        reason: &'static str,
    },
    /// A record that carries the aggregation magic but is not a valid aggregate.
    #[error("corrupt aggregated record: {0}")]
    Corrupt(#[from] CorruptReason),
}

impl Error {
    /// Whether trying the same thing again could succeed. Always `false` for this crate's
    /// errors: they all describe the input itself.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Why a record that starts with the aggregation magic is not a valid aggregate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptReason {
    /// The MD5 trailer does not match the protobuf bytes.
    #[error("MD5 trailer does not match the protobuf message")]
    DigestMismatch,
    /// The protobuf message does not parse.
    #[error("protobuf message does not parse: {0}")]
    Protobuf(String),
    /// A user record points past the end of the partition key table.
    #[error("user record {record} names partition key {index}, but the table has {table_len}")]
    PartitionKeyIndexOutOfRange {
        /// Position of the user record in the aggregate.
        record: usize,
        /// The index it names.
        index: u64,
        /// How many partition keys the table has.
        table_len: usize,
    },
    /// A user record points past the end of the explicit hash key table.
    #[error("user record {record} names explicit hash key {index}, but the table has {table_len}")]
    ExplicitHashKeyIndexOutOfRange {
        /// Position of the user record in the aggregate.
        record: usize,
        /// The index it names.
        index: u64,
        /// How many explicit hash keys the table has.
        table_len: usize,
    },
    /// A record marked as compressed whose zlib stream is damaged or too large.
    #[error("compressed record does not inflate: {0}")]
    Compression(String),
    /// An entry of the explicit hash key table is not a decimal 128-bit number.
    #[error("explicit hash key table entry {index} is invalid: {input:?}")]
    InvalidExplicitHashKey {
        /// Position in the table.
        index: usize,
        /// The entry (cut to 80 characters).
        input: String,
    },
}

/// Cuts text quoted in an error so that a huge input cannot make a huge message.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        None => s.to_owned(),
        Some((at, _)) => format!("{}…", &s[..at]),
    }
}
