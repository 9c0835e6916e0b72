//! A user record: what an application hands the producer, validated once.

use bytes::Bytes;

use crate::error::Error;
use crate::hash::HashKey;

/// Kinesis' limit on one record: data plus partition key, 1 MiB.
pub const MAX_RECORD_SIZE: usize = 1024 * 1024;

/// Kinesis' limit on a partition key, in Unicode characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// A record as the application sees it: partition key, optional explicit hash key, data.
///
/// A `UserRecord` is valid by construction: [`UserRecord::new`] checks the partition key
/// and the size, so an aggregate built from user records never holds one Kinesis would
/// refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Routes the record (through its MD5) unless an explicit hash key is given, and is
    /// handed back to the consumer.
    partition_key: String,
    /// Overrides the partition key's hash for routing.
    explicit_hash_key: Option<HashKey>,
    /// The payload; `Bytes` so that handing it around never copies it.
    data: Bytes,
}

impl UserRecord {
    /// A user record with the given partition key and data, checked against Kinesis'
    /// limits: a partition key of 1 to 256 Unicode characters, and data plus partition key
    /// of at most [`MAX_RECORD_SIZE`] bytes.
    ///
    /// # Errors
    /// [`Error::EmptyPartitionKey`], [`Error::PartitionKeyTooLong`] or
    /// [`Error::RecordTooLarge`].
    pub fn new(partition_key: impl Into<String>, data: impl Into<Bytes>) -> Result<Self, Error> {
        Self::with_size_limit(partition_key, data, MAX_RECORD_SIZE)
    }

    /// Like [`UserRecord::new`], for a stream whose record size limit was raised above
    /// 1 MiB (Kinesis allows up to 10 MiB on request).
    ///
    /// # Errors
    /// As [`UserRecord::new`], with `limit` in place of [`MAX_RECORD_SIZE`].
    #[inline]
    pub fn with_size_limit(
        partition_key: impl Into<String>,
        data: impl Into<Bytes>,
        limit: usize,
    ) -> Result<Self, Error> {
        let partition_key = partition_key.into();
        let data = data.into();
        check_partition_key(&partition_key)?;
        let size = data.len() + partition_key.len();
        if size > limit {
            return Err(Error::RecordTooLarge { size, limit });
        }
        Ok(UserRecord {
            partition_key,
            explicit_hash_key: None,
            data,
        })
    }

    /// Routes the record by this hash key instead of its partition key's MD5.
    pub fn with_explicit_hash_key(mut self, hash_key: HashKey) -> Self {
        self.explicit_hash_key = Some(hash_key);
        self
    }

    /// The partition key.
    pub fn partition_key(&self) -> &str {
        &self.partition_key
    }

    /// The explicit hash key, if one was given.
    pub fn explicit_hash_key(&self) -> Option<HashKey> {
        self.explicit_hash_key
    }

    /// The data.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The hash key that routes this record: the explicit one, or the partition key's MD5
    /// (computed on each call).
    pub fn hash_key(&self) -> HashKey {
        self.explicit_hash_key
            .unwrap_or_else(|| HashKey::from_partition_key(&self.partition_key))
    }

    /// Data plus partition key, in bytes: what counts against Kinesis' record and
    /// request size limits.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }

    /// Takes the record apart: partition key, explicit hash key, data.
    pub fn into_parts(self) -> (String, Option<HashKey>, Bytes) {
        (self.partition_key, self.explicit_hash_key, self.data)
    }
}

/// Checks a partition key against Kinesis' rule of 1 to 256 Unicode characters.
///
/// # Errors
/// [`Error::EmptyPartitionKey`] or [`Error::PartitionKeyTooLong`].
#[inline]
pub fn check_partition_key(partition_key: &str) -> Result<(), Error> {
    if partition_key.is_empty() {
        return Err(Error::EmptyPartitionKey);
    }
    // At most 4 bytes per char: only long keys need counting.
    if partition_key.len() > MAX_PARTITION_KEY_CHARS {
        let chars = partition_key.chars().count();
        if chars > MAX_PARTITION_KEY_CHARS {
            return Err(Error::PartitionKeyTooLong { chars });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_key_limits_count_characters_not_bytes() {
        assert_eq!(UserRecord::new("", "x"), Err(Error::EmptyPartitionKey));
        assert!(UserRecord::new("k".repeat(256), "x").is_ok());
        assert_eq!(
            UserRecord::new("k".repeat(257), "x"),
            Err(Error::PartitionKeyTooLong { chars: 257 })
        );
        // 256 three-byte characters: 768 bytes, still valid.
        assert!(UserRecord::new("€".repeat(256), "x").is_ok());
        assert_eq!(
            UserRecord::new("€".repeat(257), "x"),
            Err(Error::PartitionKeyTooLong { chars: 257 })
        );
    }

    #[test]
    fn size_limit_counts_data_and_partition_key() {
        assert_eq!(MAX_RECORD_SIZE, 1_048_576);
        assert!(UserRecord::new("k", vec![0u8; MAX_RECORD_SIZE - 1]).is_ok());
        assert_eq!(
            UserRecord::new("k", vec![0u8; MAX_RECORD_SIZE]),
            Err(Error::RecordTooLarge {
                size: MAX_RECORD_SIZE + 1,
                limit: MAX_RECORD_SIZE
            })
        );
        assert!(UserRecord::with_size_limit("k", vec![0u8; MAX_RECORD_SIZE], 10 << 20).is_ok());
        assert!(UserRecord::new("k", Bytes::new()).is_ok());
    }

    #[test]
    fn hash_key_prefers_the_explicit_one() {
        let r = UserRecord::new("a", "x").unwrap();
        assert_eq!(r.hash_key(), HashKey::from_partition_key("a"));
        let r = r.with_explicit_hash_key(HashKey(7));
        assert_eq!(r.hash_key(), HashKey(7));
    }
}
