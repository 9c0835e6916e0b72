//! The deaggregator: one Kinesis record in, its user records out.
//!
//! ```text
//!  Kinesis record ──magic?──no──────────────────────────────▶ 1 plain record, sub-sequence 0
//!                     │yes
//!                     ├─MD5 ok? protobuf ok? indexes ok?──no──▶ CorruptPolicy: pass through | error
//!                     │yes
//!                     └─▶ user records 0..n ──shard range filter──▶ kept (+ count dropped)
//! ```
//!
//! A record without the magic passes through unchanged, as the KCL does. Payloads are
//! slices of the input `Bytes`: nothing is copied.

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

use crate::compression;
use crate::error::{excerpt, CorruptReason, Error};
use crate::hash::{HashKey, HashKeyRange};
use crate::proto;
use crate::{DIGEST_LEN, MAGIC};

/// One user record taken out of a Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRecord {
    /// Position in its aggregate (0 for a plain record): with the Kinesis sequence number,
    /// it identifies the user record and is what the KCL checkpoints.
    pub sub_sequence_number: u64,
    /// The user record's partition key.
    pub partition_key: String,
    /// The user record's explicit hash key, when it had one inside an aggregate (a plain
    /// record's explicit hash key is not returned by Kinesis).
    pub explicit_hash_key: Option<HashKey>,
    /// The payload, sharing the input buffer.
    pub data: Bytes,
}

/// What kind of Kinesis record came in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordFormat {
    /// No aggregation magic: passed through as one user record.
    Plain,
    /// A valid KPL aggregate.
    Aggregated,
    /// The magic, but not a valid aggregate; passed through as one user record under
    /// [`CorruptPolicy::PassThrough`].
    Corrupt(CorruptReason),
}

/// The user records of one Kinesis record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deaggregated {
    /// The user records kept, in sub-sequence order.
    pub records: Vec<SubRecord>,
    /// What the input was.
    pub format: RecordFormat,
    /// User records dropped because their hash key lies outside the shard's range (they
    /// were routed by another record's key and have been re-sent by the producer).
    pub dropped_outside_range: usize,
    /// User records in the input, kept or dropped.
    pub total: usize,
    /// Whether the record was compressed by this crate's [`compression`](crate::compression)
    /// and has been inflated.
    pub compressed: bool,
}

/// What to do with a record that has the magic but is not a valid aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CorruptPolicy {
    /// Hand it on as one plain record (as the KCL does), with the reason in
    /// [`Deaggregated::format`] so the caller can count or log it. The default: the
    /// record may be a user payload that merely starts with the magic.
    #[default]
    PassThrough,
    /// Fail with [`Error::Corrupt`].
    Reject,
}

/// Takes Kinesis records apart into user records. Cheap to build and to clone.
///
/// # Usage
/// ```
/// use bytes::Bytes;
/// use kinesis_agg::{Aggregator, Deaggregator, HashKeyRange, UserRecord};
///
/// let mut agg = Aggregator::builder().build()?;
/// for i in 0..3 {
///     agg.try_add(UserRecord::new(format!("k{i}"), format!("v{i}"))?).unwrap();
/// }
/// let record = agg.finish().unwrap();
///
/// let out = Deaggregator::new()
///     .with_shard_range(HashKeyRange::ALL)
///     .deaggregate(&record.partition_key, record.data)?;
/// assert_eq!(out.records.len(), 3);
/// assert_eq!(out.records[2].sub_sequence_number, 2);
/// assert_eq!(out.records[2].data, Bytes::from("v2"));
/// # Ok::<(), kinesis_agg::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Deaggregator {
    /// When set, user records whose hash key lies outside it are dropped and counted.
    shard_range: Option<HashKeyRange>,
    /// What to do with a corrupt aggregate.
    on_corrupt: CorruptPolicy,
    /// Whether to inflate records marked by [`compression`](crate::compression); `None`
    /// leaves them as they are, `Some(limit)` inflates up to `limit` bytes.
    inflate_limit: Option<usize>,
}

impl Default for Deaggregator {
    fn default() -> Self {
        Deaggregator {
            shard_range: None,
            on_corrupt: CorruptPolicy::default(),
            inflate_limit: Some(DEFAULT_INFLATE_LIMIT),
        }
    }
}

/// Default upper bound on an inflated compressed record: 10 MiB, Kinesis' largest record.
pub const DEFAULT_INFLATE_LIMIT: usize = 10 * 1024 * 1024;

impl Deaggregator {
    /// A deaggregator with no shard filter, [`CorruptPolicy::PassThrough`], and
    /// decompression on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops (and counts) user records of an aggregate whose hash key lies outside the
    /// range of the shard the record was read from. Default: no filter.
    pub fn with_shard_range(mut self, range: HashKeyRange) -> Self {
        self.shard_range = Some(range);
        self
    }

    /// What to do with a record that has the magic but is not a valid aggregate.
    /// Default: [`CorruptPolicy::PassThrough`].
    pub fn with_corrupt_policy(mut self, policy: CorruptPolicy) -> Self {
        self.on_corrupt = policy;
        self
    }

    /// Whether to inflate records compressed by [`compression`](crate::compression)
    /// (the producer's opt-in compression). Default: on, up to [`DEFAULT_INFLATE_LIMIT`]
    /// bytes per record. Off, such records come out as opaque plain records.
    pub fn with_decompression(mut self, on: bool) -> Self {
        self.inflate_limit = on.then_some(DEFAULT_INFLATE_LIMIT);
        self
    }

    /// The user records of the Kinesis record with this partition key and data.
    ///
    /// # Errors
    /// [`Error::Corrupt`] only under [`CorruptPolicy::Reject`].
    pub fn deaggregate(&self, partition_key: &str, data: Bytes) -> Result<Deaggregated, Error> {
        let (inner, compressed) = match self.inflate_limit {
            Some(limit) => match compression::decompress(&data, limit) {
                Ok(Some(inflated)) => (inflated, true),
                Ok(None) => (data, false),
                Err(reason) => return self.corrupt(partition_key, data, reason),
            },
            None => (data, false),
        };
        let mut out = if !is_aggregated(&inner) {
            plain(partition_key, inner, RecordFormat::Plain)
        } else {
            match self.parse(&inner) {
                Ok(out) => out,
                Err(reason) => return self.corrupt(partition_key, inner, reason),
            }
        };
        out.compressed = compressed;
        Ok(out)
    }

    fn corrupt(
        &self,
        partition_key: &str,
        data: Bytes,
        reason: CorruptReason,
    ) -> Result<Deaggregated, Error> {
        match self.on_corrupt {
            CorruptPolicy::PassThrough => {
                Ok(plain(partition_key, data, RecordFormat::Corrupt(reason)))
            }
            CorruptPolicy::Reject => Err(Error::Corrupt(reason)),
        }
    }

    fn parse(&self, data: &Bytes) -> Result<Deaggregated, CorruptReason> {
        let body_end = data.len() - DIGEST_LEN;
        let digest: [u8; 16] = Md5::digest(&data[MAGIC.len()..body_end]).into();
        if digest[..] != data[body_end..] {
            return Err(CorruptReason::DigestMismatch);
        }
        let message = proto::AggregatedRecord::decode(data.slice(MAGIC.len()..body_end))
            .map_err(|e| CorruptReason::Protobuf(e.to_string()))?;
        let explicit_keys = message
            .explicit_hash_key_table
            .iter()
            .enumerate()
            .map(|(index, text)| {
                HashKey::parse_decimal(text).map_err(|_| CorruptReason::InvalidExplicitHashKey {
                    index,
                    input: excerpt(text),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Hash keys of the partition key table, computed once per key and only if filtering.
        let mut key_hashes: Vec<Option<HashKey>> = match self.shard_range {
            Some(_) => vec![None; message.partition_key_table.len()],
            None => Vec::new(),
        };
        let total = message.records.len();
        let mut records = Vec::with_capacity(total);
        let mut dropped = 0;
        for (position, r) in message.records.into_iter().enumerate() {
            let pk_index = usize::try_from(r.partition_key_index)
                .ok()
                .filter(|&i| i < message.partition_key_table.len())
                .ok_or(CorruptReason::PartitionKeyIndexOutOfRange {
                    record: position,
                    index: r.partition_key_index,
                    table_len: message.partition_key_table.len(),
                })?;
            let explicit_hash_key = match r.explicit_hash_key_index {
                None => None,
                Some(index) => Some(
                    usize::try_from(index)
                        .ok()
                        .and_then(|i| explicit_keys.get(i).copied())
                        .ok_or(CorruptReason::ExplicitHashKeyIndexOutOfRange {
                            record: position,
                            index,
                            table_len: explicit_keys.len(),
                        })?,
                ),
            };
            if let Some(range) = self.shard_range {
                let hash = explicit_hash_key.unwrap_or_else(|| {
                    *key_hashes[pk_index].get_or_insert_with(|| {
                        HashKey::from_partition_key(&message.partition_key_table[pk_index])
                    })
                });
                if !range.contains(hash) {
                    dropped += 1;
                    continue;
                }
            }
            records.push(SubRecord {
                sub_sequence_number: position as u64,
                partition_key: message.partition_key_table[pk_index].clone(),
                explicit_hash_key,
                data: r.data,
            });
        }
        Ok(Deaggregated {
            records,
            format: RecordFormat::Aggregated,
            dropped_outside_range: dropped,
            total,
            compressed: false,
        })
    }
}

fn plain(partition_key: &str, data: Bytes, format: RecordFormat) -> Deaggregated {
    Deaggregated {
        records: vec![SubRecord {
            sub_sequence_number: 0,
            partition_key: partition_key.to_owned(),
            explicit_hash_key: None,
            data,
        }],
        format,
        dropped_outside_range: 0,
        total: 1,
        compressed: false,
    }
}

/// Whether `data` is framed as a KPL aggregate: the magic, then at least one protobuf
/// byte and the 16-byte MD5 (the KCL's test). Says nothing of whether the digest matches.
pub fn is_aggregated(data: &[u8]) -> bool {
    data.len() > MAGIC.len() + DIGEST_LEN && data[..MAGIC.len()] == MAGIC
}

/// The user records of one Kinesis record, with no shard filter; corrupt aggregates are
/// passed through (see [`Deaggregator`] for the choices).
///
/// # Errors
/// None under the default policy; the `Result` is kept so that stricter policies fit.
pub fn deaggregate(partition_key: &str, data: Bytes) -> Result<Deaggregated, Error> {
    Deaggregator::new().deaggregate(partition_key, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Aggregator, UserRecord};

    fn aggregate(records: &[(&str, Option<u128>, &[u8])]) -> Bytes {
        let mut a = Aggregator::builder().build().unwrap();
        for (pk, ehk, data) in records {
            let mut r = UserRecord::new(*pk, data.to_vec()).unwrap();
            if let Some(h) = ehk {
                r = r.with_explicit_hash_key(HashKey(*h));
            }
            a.try_add(r).unwrap();
        }
        let out = a.finish().unwrap();
        assert!(out.is_aggregated());
        out.data
    }

    fn frame(body: &[u8]) -> Bytes {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(body);
        let d: [u8; 16] = Md5::digest(body).into();
        v.extend_from_slice(&d);
        Bytes::from(v)
    }

    #[test]
    fn plain_records_pass_through() {
        for data in [
            &b""[..],
            b"hello",
            &MAGIC,
            &[0xF3, 0x89, 0x9A, 0xC2, 1, 2, 3],
        ] {
            let out = deaggregate("pk", Bytes::copy_from_slice(data)).unwrap();
            assert_eq!(out.format, RecordFormat::Plain);
            assert_eq!(out.records.len(), 1);
            assert_eq!(out.records[0].data, data);
            assert_eq!(out.records[0].partition_key, "pk");
            assert_eq!(out.records[0].sub_sequence_number, 0);
        }
    }

    #[test]
    fn aggregates_come_apart_in_order_without_copying() {
        let data = aggregate(&[
            ("a", None, b"one"),
            ("b", Some(42), b"two"),
            ("a", None, b""),
        ]);
        let out = deaggregate("a", data.clone()).unwrap();
        assert_eq!(out.format, RecordFormat::Aggregated);
        assert_eq!(out.total, 3);
        let got: Vec<_> = out
            .records
            .iter()
            .map(|r| {
                (
                    r.sub_sequence_number,
                    r.partition_key.as_str(),
                    r.explicit_hash_key,
                    &r.data[..],
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "a", None, &b"one"[..]),
                (1, "b", Some(HashKey(42)), &b"two"[..]),
                (2, "a", None, &b""[..]),
            ]
        );
        // Zero copy: the payload points into the input buffer.
        let input = data.as_ptr_range();
        assert!(input.contains(&out.records[0].data.as_ptr()));
    }

    #[test]
    fn corruption_is_reported_or_rejected() {
        let good = aggregate(&[("a", None, b"one"), ("b", None, b"two")]);
        let mut bad_digest = good.to_vec();
        let last = bad_digest.len() - 1;
        bad_digest[last] ^= 1;
        let cases: Vec<(Bytes, fn(&CorruptReason) -> bool)> = vec![
            (Bytes::from(bad_digest), |r| {
                matches!(r, CorruptReason::DigestMismatch)
            }),
            (frame(&[0xFF, 0xFF, 0xFF]), |r| {
                matches!(r, CorruptReason::Protobuf(_))
            }),
            // records: [{pk index 3, data ""}] with an empty key table
            (frame(&[0x1A, 0x04, 0x08, 0x03, 0x1A, 0x00]), |r| {
                matches!(
                    r,
                    CorruptReason::PartitionKeyIndexOutOfRange {
                        record: 0,
                        index: 3,
                        table_len: 0
                    }
                )
            }),
            // key table ["k"], records: [{pk 0, ehk 0, data ""}], no ehk table
            (
                frame(&[
                    0x0A, 0x01, b'k', 0x1A, 0x06, 0x08, 0x00, 0x10, 0x00, 0x1A, 0x00,
                ]),
                |r| matches!(r, CorruptReason::ExplicitHashKeyIndexOutOfRange { .. }),
            ),
            // ehk table ["x1"]
            (frame(&[0x12, 0x02, b'x', b'1']), |r| {
                matches!(r, CorruptReason::InvalidExplicitHashKey { index: 0, .. })
            }),
        ];
        for (data, is_expected) in cases {
            let out = deaggregate("pk", data.clone()).unwrap();
            match &out.format {
                RecordFormat::Corrupt(reason) => assert!(is_expected(reason), "{reason:?}"),
                other => panic!("expected corrupt, got {other:?}"),
            }
            assert_eq!(out.records.len(), 1);
            assert_eq!(out.records[0].data, data, "passed through unchanged");
            let strict = Deaggregator::new().with_corrupt_policy(CorruptPolicy::Reject);
            match strict.deaggregate("pk", data) {
                Err(Error::Corrupt(reason)) => assert!(is_expected(&reason)),
                other => panic!("expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn filters_by_shard_range_and_counts_drops() {
        let h = |pk: &str| HashKey::from_partition_key(pk);
        let data = aggregate(&[
            ("a", None, b"1"),
            ("b", None, b"2"),
            ("c", Some(10), b"3"),
            ("a", None, b"4"),
        ]);
        let range = HashKeyRange::new(h("a"), h("a")).unwrap();
        let out = Deaggregator::new()
            .with_shard_range(range)
            .deaggregate("a", data.clone())
            .unwrap();
        assert_eq!(out.total, 4);
        let kept: Vec<_> = out.records.iter().map(|r| r.sub_sequence_number).collect();
        assert_eq!(kept, vec![0, 3]);
        assert_eq!(out.dropped_outside_range, 2);

        let low = HashKeyRange::new(HashKey(0), HashKey(10)).unwrap();
        let out = Deaggregator::new()
            .with_shard_range(low)
            .deaggregate("a", data)
            .unwrap();
        let kept: Vec<_> = out.records.iter().map(|r| r.sub_sequence_number).collect();
        assert_eq!(
            kept,
            vec![2],
            "explicit hash key decides, not the partition key"
        );
    }

    #[test]
    fn compressed_records_are_inflated_transparently() {
        let data = aggregate(&[("a", None, &[b'x'; 500]), ("b", None, &[b'y'; 500])]);
        let packed = compression::compress(&data, 6).unwrap();
        let out = deaggregate("a", packed.clone()).unwrap();
        assert!(out.compressed);
        assert_eq!(out.format, RecordFormat::Aggregated);
        assert_eq!(out.records[1].data, vec![b'y'; 500]);
        // Off: the compressed bytes come through opaque.
        let raw = Deaggregator::new()
            .with_decompression(false)
            .deaggregate("a", packed.clone())
            .unwrap();
        assert!(!raw.compressed);
        assert_eq!(raw.records[0].data, packed);
        // Damaged: reported, passed through unchanged.
        let mut bad = packed.to_vec();
        let n = bad.len();
        bad[n - 1] ^= 1;
        let out = deaggregate("a", Bytes::from(bad.clone())).unwrap();
        assert!(matches!(
            out.format,
            RecordFormat::Corrupt(CorruptReason::Compression(_))
        ));
        assert_eq!(out.records[0].data, bad);
    }

    #[test]
    fn plain_records_are_never_filtered() {
        let range = HashKeyRange::new(HashKey(0), HashKey(0)).unwrap();
        let out = Deaggregator::new()
            .with_shard_range(range)
            .deaggregate("zzz", Bytes::from_static(b"x"))
            .unwrap();
        assert_eq!(out.records.len(), 1);
        assert_eq!(out.dropped_outside_range, 0);
    }
}
