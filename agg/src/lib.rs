//! The KPL aggregation wire format, shared by the producer, the consumer and Lambda-free
//! readers: hash keys, an exact-size [`Aggregator`] and a verifying [`Deaggregator`].
//!
//! ```text
//!  producer side                                          consumer side
//!  UserRecord ─▶ Aggregator ─▶ KinesisRecord ─▶ Kinesis ─▶ Deaggregator ─▶ SubRecord
//!   (pk, ehk,     dedupes keys,  F3 89 9A C2      (one       checks magic,   (sub-sequence,
//!    data)        exact size     + protobuf       shard)     MD5, protobuf;  pk, data)
//!                                + MD5(protobuf)             filters range
//! ```
//!
//! An aggregated Kinesis record is the 4-byte magic `F3 89 9A C2`, a protobuf
//! [`proto::AggregatedRecord`], and the 16-byte MD5 of the protobuf bytes. One user record
//! alone is sent raw. A record without the magic is read as a single user record with
//! sub-sequence number 0, so readers handle aggregated and plain records alike.
//!
//! No async runtime and no AWS SDK: this crate is plain synchronous code.
//!
//! # Usage
//! ```
//! use kinesis_agg::{deaggregate, Aggregator, HashKey, UserRecord};
//!
//! let mut agg = Aggregator::builder().build()?;
//! agg.try_add(UserRecord::new("user-1", "first")?).unwrap();
//! agg.try_add(UserRecord::new("user-2", "second")?.with_explicit_hash_key(HashKey(7))).unwrap();
//! let record = agg.finish().expect("two records were added");
//! assert!(record.is_aggregated());
//!
//! let out = deaggregate(&record.partition_key, record.data)?;
//! assert_eq!(out.records[1].partition_key, "user-2");
//! assert_eq!(out.records[1].explicit_hash_key, Some(HashKey(7)));
//! # Ok::<(), kinesis_agg::Error>(())
//! ```

#![deny(unsafe_code, rust_2018_idioms)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod aggregator;
pub mod compression;
pub mod deaggregate;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod key;
pub mod proto;
pub mod record;
mod wire;

pub use aggregator::{Aggregator, AggregatorBuilder, KinesisRecord};
pub use deaggregate::{
    deaggregate, is_aggregated, CorruptPolicy, Deaggregated, Deaggregator, OutsideRangePolicy,
    RecordFormat, SubRecord, DEFAULT_INFLATE_LIMIT, WHOLE_RESEND_PARTITION_KEY,
};
pub use error::{CorruptReason, Error};
pub use hash::{HashKey, HashKeyRange};
pub use key::PartitionKey;
pub use record::{check_partition_key, UserRecord, MAX_PARTITION_KEY_CHARS, MAX_RECORD_SIZE};

/// The four bytes that open every aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Length of the MD5 trailer.
pub const DIGEST_LEN: usize = 16;
