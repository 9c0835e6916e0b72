//! Errors: why `put` refused a record, why a record failed, and bad settings.

use std::time::Duration;

use crate::record::ProducerRecord;

/// Why [`Producer::put`](crate::Producer::put) or
/// [`Producer::try_put`](crate::Producer::try_put) did not accept a record. The record is
/// always handed back ([`PutError::into_record`]): nothing is lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// The record breaks a Kinesis rule (partition key length, size, explicit hash key).
    #[error("invalid record for stream {stream:?}: {source}")]
    InvalidRecord {
        /// The stream the record was meant for.
        stream: String,
        /// The record, handed back.
        record: Box<ProducerRecord>,
        /// What is wrong with it.
        #[source]
        source: kinesis_agg::Error,
    },
    /// The record alone needs more of the memory budget than the whole budget.
    #[error("record needs {needed} bytes of budget, but the whole budget is {budget} bytes")]
    LargerThanBudget {
        /// The record, handed back.
        record: Box<ProducerRecord>,
        /// Bytes the record would hold (data, partition key and bookkeeping).
        needed: usize,
        /// The configured byte budget.
        budget: usize,
    },
    /// `try_put` only: the memory budget is in use; try again later or use `put`.
    #[error("the producer's memory budget is full")]
    BufferFull {
        /// The record, handed back.
        record: Box<ProducerRecord>,
    },
    /// The producer was shut down.
    #[error("the producer is shut down")]
    ShutDown {
        /// The record, handed back.
        record: Box<ProducerRecord>,
    },
}

impl PutError {
    /// The record that was refused.
    pub fn into_record(self) -> ProducerRecord {
        match self {
            PutError::InvalidRecord { record, .. }
            | PutError::LargerThanBudget { record, .. }
            | PutError::BufferFull { record }
            | PutError::ShutDown { record } => *record,
        }
    }

    /// The record that was refused, by reference.
    pub fn record(&self) -> &ProducerRecord {
        match self {
            PutError::InvalidRecord { record, .. }
            | PutError::LargerThanBudget { record, .. }
            | PutError::BufferFull { record }
            | PutError::ShutDown { record } => record,
        }
    }

    /// Whether the same record could be accepted later (only [`PutError::BufferFull`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, PutError::BufferFull { .. })
    }
}

/// Why a record accepted by the producer was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailureReason {
    /// The record's time to live ran out before Kinesis accepted it.
    #[error("record TTL of {ttl:?} expired before delivery")]
    Expired {
        /// The configured record TTL.
        ttl: Duration,
    },
    /// The record was throttled and the producer was built with `fail_if_throttled`.
    #[error("throttled by Kinesis (fail_if_throttled is set)")]
    Throttled,
    /// Kinesis refused the request in a way retrying cannot fix (e.g. the stream does not
    /// exist, access denied).
    #[error("rejected by Kinesis: {code}: {message}")]
    Rejected {
        /// The error code, e.g. `ResourceNotFoundException`.
        code: String,
        /// Kinesis' message.
        message: String,
    },
    /// The producer was shut down or dropped before the record could be delivered.
    #[error("the producer shut down before the record was delivered")]
    ShutDown,
}

impl FailureReason {
    /// Whether sending the same record again later could succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, FailureReason::Rejected { .. })
    }

    /// Whether the record failed because of throttling.
    pub fn is_throttling(&self) -> bool {
        matches!(self, FailureReason::Throttled)
    }
}

/// A setting outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid producer setting {setting} = {value}: {reason}")]
#[non_exhaustive]
pub struct ConfigError {
    /// Which setting.
    pub setting: &'static str,
    /// The value given, as text.
    pub value: String,
    /// The allowed range.
    pub reason: &'static str,
}
