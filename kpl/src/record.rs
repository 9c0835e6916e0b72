//! What an application hands the producer, and its conversions to and from the
//! pipeline's form.
//!
//! ```text
//!  ProducerRecord ─▶ check(max_record_size) ─▶ Checked ─▶ (budget) ─▶ Accepted ─▶ Item
//!        ▲              │ typed error, record inside                    (UserRecord,
//!        │              ▼                                                hash key)
//!        └── from_user_record ◀── a failed record, or one the pipeline could not take
//! ```

use bytes::Bytes;
use kinesis_agg::{check_partition_key, HashKey, UserRecord};

use crate::error::{check_stream_name, PutError};

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

impl ProducerRecord {
    /// Rebuilds the user's record from the pipeline's parts (handed back on failure).
    pub(crate) fn from_user_record(stream: impl Into<String>, record: UserRecord) -> Self {
        let (partition_key, explicit_hash_key, data) = record.into_parts();
        ProducerRecord {
            stream: stream.into(),
            partition_key,
            explicit_hash_key: explicit_hash_key.map(|h| h.to_string()),
            data,
        }
    }

    /// Checks everything Kinesis would refuse it for, in this order: the stream name,
    /// the partition key, the explicit hash key, and the size (data plus key) against
    /// `max_record_size`.
    ///
    /// # Errors
    /// [`PutError::InvalidStreamName`] or [`PutError::InvalidRecord`], with the record
    /// inside.
    pub(crate) fn check(self, max_record_size: usize) -> Result<Checked, PutError> {
        if let Err(reason) = check_stream_name(&self.stream) {
            return Err(PutError::InvalidStreamName {
                stream: self.stream.clone(),
                record: Box::new(self),
                reason,
            });
        }
        let invalid = |record: ProducerRecord, source| PutError::InvalidRecord {
            stream: record.stream.clone(),
            record: Box::new(record),
            source,
        };
        if let Err(e) = check_partition_key(&self.partition_key) {
            return Err(invalid(self, e));
        }
        let explicit_hash_key = match self
            .explicit_hash_key
            .as_deref()
            .map(HashKey::parse_decimal)
        {
            None => None,
            Some(Ok(h)) => Some(h),
            Some(Err(e)) => return Err(invalid(self, e)),
        };
        let size = self.data.len() + self.partition_key.len();
        if size > max_record_size {
            let e = kinesis_agg::Error::RecordTooLarge {
                size,
                limit: max_record_size,
            };
            return Err(invalid(self, e));
        }
        Ok(Checked {
            record: self,
            explicit_hash_key,
            size,
            max_record_size,
        })
    }
}

/// A record that passed [`ProducerRecord::check`], still as the user gave it (so that an
/// error raised before it is accepted hands it back unchanged).
#[derive(Debug)]
pub(crate) struct Checked {
    /// The record, unchanged.
    pub(crate) record: ProducerRecord,
    /// Its explicit hash key, parsed.
    explicit_hash_key: Option<HashKey>,
    /// Data plus partition key, in bytes.
    pub(crate) size: usize,
    /// The limit it was checked against, to build the `UserRecord` under the same one.
    max_record_size: usize,
}

impl Checked {
    /// The pipeline's form of the record, its hash key computed here (on the caller's
    /// thread, not the pipeline task's).
    pub(crate) fn accept(self) -> Accepted {
        let ProducerRecord {
            stream,
            partition_key,
            data,
            ..
        } = self.record;
        let record = UserRecord::with_size_limit(partition_key, data, self.max_record_size)
            .expect("checked by ProducerRecord::check");
        let record = match self.explicit_hash_key {
            Some(h) => record.with_explicit_hash_key(h),
            None => record,
        };
        Accepted {
            stream,
            hash_key: record.hash_key(),
            record,
        }
    }
}

/// A checked record in the pipeline's form, before it has budget.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The stream name, as the user gave it.
    pub(crate) stream: String,
    /// The record.
    pub(crate) record: UserRecord,
    /// Its hash key: the explicit one, or the partition key's MD5.
    pub(crate) hash_key: HashKey,
}

impl Accepted {
    /// The user's record again (when no budget could be had).
    pub(crate) fn into_producer_record(self) -> ProducerRecord {
        ProducerRecord::from_user_record(self.stream, self.record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_goes_to_the_pipeline_form_and_back_unchanged() {
        let hash = "170141183460469231731687303715884105728";
        let record = ProducerRecord::new("s", "k", "data").with_explicit_hash_key(hash);
        let checked = record.clone().check(1024).unwrap();
        assert_eq!(checked.size, 5);
        let accepted = checked.accept();
        assert_eq!(accepted.hash_key, HashKey::parse_decimal(hash).unwrap());
        assert_eq!(accepted.into_producer_record(), record);
        let plain = ProducerRecord::new("s", "k", "data");
        let accepted = plain.clone().check(1024).unwrap().accept();
        assert_eq!(accepted.hash_key, HashKey::from_partition_key("k"));
        assert_eq!(accepted.into_producer_record(), plain);
    }

    #[test]
    fn check_names_the_first_thing_wrong_and_hands_the_record_back() {
        let cases = [
            (ProducerRecord::new("bad name", "k", "d"), "stream"),
            (ProducerRecord::new("s", "", "d"), "key"),
            (
                ProducerRecord::new("s", "k", "d").with_explicit_hash_key("x"),
                "hash",
            ),
            (ProducerRecord::new("s", "k", vec![0u8; 1024]), "size"),
        ];
        for (record, what) in cases {
            let err = record.clone().check(1024).unwrap_err();
            match (&err, what) {
                (PutError::InvalidStreamName { .. }, "stream") => {}
                (PutError::InvalidRecord { .. }, "key" | "hash" | "size") => {}
                _ => panic!("{what}: {err:?}"),
            }
            assert_eq!(err.into_record(), record, "{what}");
        }
    }
}
