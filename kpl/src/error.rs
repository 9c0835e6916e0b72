//! Errors: why `put` refused a record, why a record failed, and bad settings.
//!
//! A record `put` accepted ends in one outcome; when it fails, [`FailureReason`] says why
//! the producer gave up, and [`Failed`](crate::Failed) also lists every failed attempt
//! (its display names the last one's error). Errors that concern a whole stream (it does
//! not exist, access denied, no usable credentials, an unusable KMS key: see
//! [`FailureReason::is_stream_level`]) fail every record of that stream waiting in the
//! producer at once, instead of each record being sent and refused in turn. Failed calls
//! are also reported as they happen, before any record's TTL runs out, through
//! [`Producer::failures`](crate::Producer::failures).

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
    /// The stream name breaks Kinesis' rule: 1 to 128 characters, each an ASCII letter,
    /// digit, `_`, `.` or `-`.
    #[error("invalid stream name {}: {reason}", quoted_prefix(stream))]
    InvalidStreamName {
        /// The stream name given.
        stream: String,
        /// The record, handed back.
        record: Box<ProducerRecord>,
        /// What is wrong with the name.
        reason: &'static str,
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
            | PutError::InvalidStreamName { record, .. }
            | PutError::LargerThanBudget { record, .. }
            | PutError::BufferFull { record }
            | PutError::ShutDown { record } => *record,
        }
    }

    /// The record that was refused, by reference.
    pub fn record(&self) -> &ProducerRecord {
        match self {
            PutError::InvalidRecord { record, .. }
            | PutError::InvalidStreamName { record, .. }
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

/// Why [`Producer::put_all`](crate::Producer::put_all) did not accept a batch. Nothing of
/// the batch was accepted, and every record is handed back, in input order
/// ([`PutAllError::into_records`]): nothing is lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutAllError {
    /// The record at `index` breaks a Kinesis rule (partition key length, size, explicit
    /// hash key); the records before it passed, those after it were not checked.
    #[error("record {index} of the batch, for stream {stream:?}, is invalid: {source}")]
    InvalidRecord {
        /// Its position in the batch (0-based).
        index: usize,
        /// The stream it was meant for.
        stream: String,
        /// Every record of the batch, handed back in input order.
        records: Vec<ProducerRecord>,
        /// What is wrong with it.
        #[source]
        source: kinesis_agg::Error,
    },
    /// The record at `index` names a stream that breaks Kinesis' rule: 1 to 128
    /// characters, each an ASCII letter, digit, `_`, `.` or `-`.
    #[error(
        "record {index} of the batch has an invalid stream name {}: {reason}",
        quoted_prefix(stream)
    )]
    InvalidStreamName {
        /// Its position in the batch (0-based).
        index: usize,
        /// The stream name given.
        stream: String,
        /// Every record of the batch, handed back in input order.
        records: Vec<ProducerRecord>,
        /// What is wrong with the name.
        reason: &'static str,
    },
    /// The batch needs more of the memory budget than the whole budget: more records than
    /// `max_outstanding_records`, or more bytes (data, partition keys and
    /// [`RECORD_OVERHEAD_BYTES`](crate::RECORD_OVERHEAD_BYTES) per record) than
    /// `max_outstanding_bytes`. Split it, or use `put` for each record.
    #[error(
        "batch needs {needed_records} records and {needed_bytes} bytes of budget, but the whole \
         budget is {record_budget} records and {byte_budget} bytes"
    )]
    LargerThanBudget {
        /// Every record of the batch, handed back in input order.
        records: Vec<ProducerRecord>,
        /// Records in the batch.
        needed_records: usize,
        /// Bytes the batch would hold (data, partition keys and bookkeeping).
        needed_bytes: usize,
        /// The configured record budget (`max_outstanding_records`).
        record_budget: usize,
        /// The configured byte budget (`max_outstanding_bytes`).
        byte_budget: usize,
    },
    /// The producer was shut down.
    #[error("the producer is shut down")]
    ShutDown {
        /// Every record of the batch, handed back in input order.
        records: Vec<ProducerRecord>,
    },
}

impl PutAllError {
    /// The records of the batch, in input order.
    pub fn into_records(self) -> Vec<ProducerRecord> {
        match self {
            PutAllError::InvalidRecord { records, .. }
            | PutAllError::InvalidStreamName { records, .. }
            | PutAllError::LargerThanBudget { records, .. }
            | PutAllError::ShutDown { records } => records,
        }
    }

    /// The records of the batch, in input order, by reference.
    pub fn records(&self) -> &[ProducerRecord] {
        match self {
            PutAllError::InvalidRecord { records, .. }
            | PutAllError::InvalidStreamName { records, .. }
            | PutAllError::LargerThanBudget { records, .. }
            | PutAllError::ShutDown { records } => records,
        }
    }

    /// The `put` error of the record at `index` (its own record taken out of `records`),
    /// turned into the batch's error with every record handed back.
    pub(crate) fn of_record(index: usize, err: PutError, mut records: Vec<ProducerRecord>) -> Self {
        match err {
            PutError::InvalidRecord {
                stream,
                record,
                source,
            } => {
                records.insert(index, *record);
                PutAllError::InvalidRecord {
                    index,
                    stream,
                    records,
                    source,
                }
            }
            PutError::InvalidStreamName {
                stream,
                record,
                reason,
            } => {
                records.insert(index, *record);
                PutAllError::InvalidStreamName {
                    index,
                    stream,
                    records,
                    reason,
                }
            }
            // `check` raises only the two above; the others mean the producer refused
            // everything, which is what shutting down does.
            other => {
                records.insert(index, other.into_record());
                PutAllError::ShutDown { records }
            }
        }
    }
}

/// Checks a stream name against Kinesis' rule (1 to 128 characters of `a-z`, `A-Z`,
/// `0-9`, `_`, `.`, `-`), saying what is wrong.
pub(crate) fn check_stream_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty (1 to 128 characters are allowed)");
    }
    if name.len() > 128 {
        return Err("longer than 128 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("only ASCII letters, digits, '_', '.' and '-' are allowed");
    }
    Ok(())
}

/// `s` quoted, its first 128 characters only (a bad name can be arbitrarily long).
fn quoted_prefix(s: &str) -> String {
    match s.char_indices().nth(128) {
        Some((end, _)) => format!("{:?}…", &s[..end]),
        None => format!("{s:?}"),
    }
}

/// Why a record accepted by the producer was not delivered.
///
/// [`Failed`](crate::Failed) carries it together with every failed attempt; the last
/// attempt's error (also in `Failed`'s display) is the cause behind `Expired`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FailureReason {
    /// The record's time to live ran out before Kinesis accepted it. What kept it from
    /// being delivered is its last attempt's error:
    /// [`Failed::last_attempt`](crate::Failed::last_attempt), named in `Failed`'s display.
    #[error("record TTL of {ttl:?} expired before delivery")]
    Expired {
        /// The configured record TTL.
        ttl: Duration,
    },
    /// The record was throttled and the producer was built with `fail_if_throttled`.
    #[error("throttled by Kinesis (fail_if_throttled is set)")]
    Throttled,
    /// Kinesis (or the SDK, before sending) refused the request in a way retrying cannot
    /// fix: the stream does not exist, access denied, no usable credentials, an unusable
    /// KMS key, a record Kinesis refuses (`ValidationException`, once the record was sent
    /// alone: a refused call is split to find it first).
    ///
    /// When the reason concerns the whole stream ([`is_stream_level`](Self::is_stream_level)),
    /// every record of that stream waiting in the producer fails at once with the same
    /// reason, whether or not it was sent; records put to the stream afterwards are tried
    /// again normally (the stream may have been created, or access granted, meanwhile).
    #[error("rejected: {code}: {message}")]
    Rejected {
        /// The error code: Kinesis' own, e.g. `ResourceNotFoundException`, or, for errors
        /// raised before anything was sent, `NoCredentials`,
        /// `InvalidCredentialsConfiguration` or `ConstructionFailure` (no region, or an
        /// endpoint the SDK cannot use).
        code: String,
        /// Kinesis' own message, or a short cause chain for an error raised by the SDK
        /// (at most about 256 bytes; no HTTP detail).
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

    /// Whether the reason concerns the whole stream rather than this record: a
    /// [`Rejected`](Self::Rejected) whose code says the stream does not exist
    /// (`ResourceNotFoundException`), this client may not write to it
    /// (`AccessDeniedException`, `AccessDenied`), its credentials are missing or refused
    /// (`NoCredentials`, `InvalidCredentialsConfiguration`, `UnrecognizedClientException`,
    /// `InvalidSignatureException`, `IncompleteSignature`, `InvalidClientTokenId`,
    /// `MissingAuthenticationToken`, `ExpiredTokenException`, `ExpiredToken`), its KMS key
    /// is unusable (`KMSAccessDeniedException`, `KMSDisabledException`,
    /// `KMSNotFoundException`, `KMSOptInRequired`, `KMSInvalidStateException`), or the
    /// client cannot build requests (`ConstructionFailure`). Every record of the stream
    /// that was waiting in the producer failed with it.
    ///
    /// `false` for a record Kinesis refused on its own (`ValidationException`) and for
    /// every other reason.
    pub fn is_stream_level(&self) -> bool {
        match self {
            FailureReason::Rejected { code, .. } => crate::failure::is_stream_level_code(code),
            _ => false,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_follow_the_kinesis_rule() {
        for good in ["s", "my-stream_1.v2", &"a".repeat(128)] {
            assert_eq!(check_stream_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            &"a".repeat(129),
            "has space",
            "slash/no",
            "ünï",
            "arn:aws:x",
        ] {
            assert!(check_stream_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_stream_name_is_shown_cut_to_128_characters() {
        let name = "x".repeat(10_000);
        let err = PutError::InvalidStreamName {
            stream: name.clone(),
            record: Box::new(ProducerRecord::new(name, "k", "d")),
            reason: "longer than 128 characters",
        };
        let text = err.to_string();
        assert!(text.len() < 200, "{text}");
        assert!(text.ends_with("…: longer than 128 characters"), "{text}");
        assert!(!err.is_retryable());
        assert_eq!(err.record().partition_key, "k");
    }

    #[test]
    fn only_rejections_about_the_stream_are_stream_level() {
        let rejected = |code: &str| FailureReason::Rejected {
            code: code.to_owned(),
            message: "m".to_owned(),
        };
        assert!(rejected("ResourceNotFoundException").is_stream_level());
        assert!(rejected("NoCredentials").is_stream_level());
        assert!(rejected("KMSDisabledException").is_stream_level());
        assert!(!rejected("ValidationException").is_stream_level());
        assert!(!FailureReason::Throttled.is_stream_level());
        assert!(!FailureReason::Expired {
            ttl: Duration::from_secs(1)
        }
        .is_stream_level());
    }
}
