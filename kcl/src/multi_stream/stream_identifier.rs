//! [`StreamIdentifier`]: one stream of a multi-stream application, as the Java KCL names it
//! in the lease table (`account:stream:creationEpoch`), and the lease keys built on it.
//!
//! ```text
//!  "123456789012:orders:1700000000" ──parse──▶ StreamIdentifier { account_id, stream_name,
//!  arn:aws:kinesis:REGION:ACCOUNT:stream/NAME + creation epoch ─▶   creation_epoch }
//!  DescribeStreamSummary (StreamARN, StreamCreationTimestamp) ─▶       │
//!                                            lease_key(shard) ◀───────┘──▶ "acct:orders:1700000000:shardId-000000000001"
//!  split_lease_key("acct:orders:1700000000:shardId-…") ─▶ (StreamIdentifier, "shardId-…")
//! ```
//!
//! The format is the Java KCL's (`StreamIdentifier.serialize`, `MultiStreamLease`; read
//! from awslabs/amazon-kinesis-client, 2026-11): the identifier matches
//! `[0-9]+:[^:]+:[0-9]+`, the creation epoch is in seconds, and a multi-stream lease key is
//! the identifier, a colon and the shard id. Stream names cannot hold a colon, so a key
//! splits one way only.
//!
//! # Usage
//! ```
//! use kinesis_consumer::StreamIdentifier;
//!
//! let id: StreamIdentifier = "123456789012:orders:1700000000".parse()?;
//! assert_eq!(id.stream_name(), "orders");
//! let key = id.lease_key("shardId-000000000001");
//! assert_eq!(key, "123456789012:orders:1700000000:shardId-000000000001");
//! let (back, shard) = StreamIdentifier::split_lease_key(&key).expect("a multi-stream key");
//! assert_eq!((back, shard), (id, "shardId-000000000001"));
//! # Ok::<(), kinesis_consumer::ConfigError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use crate::config_error::{check_name, ConfigError, STREAM_NAME_LEN};

/// One stream of a multi-stream application: the account that owns it, its name, and when
/// it was created (so that a stream deleted and created again under the same name is
/// another stream, with leases of its own).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamIdentifier {
    /// The AWS account id owning the stream (digits): the first field of the identifier.
    account_id: String,
    /// The stream's name (1 to 128 characters of `A-Z a-z 0-9 _ . -`).
    stream_name: String,
    /// The stream's creation time in seconds since the Unix epoch
    /// (`StreamCreationTimestamp`), telling apart streams that reused a name.
    creation_epoch: u64,
}

impl StreamIdentifier {
    /// An identifier from its parts.
    ///
    /// # Errors
    /// [`ConfigError::InvalidStreamIdentifier`] when `account_id` is not a non-empty run of
    /// ASCII digits, or `stream_name` breaks the Kinesis rule (1 to 128 characters of
    /// `A-Z a-z 0-9 _ . -`).
    pub fn new(
        account_id: impl Into<String>,
        stream_name: impl Into<String>,
        creation_epoch: u64,
    ) -> Result<Self, ConfigError> {
        let (account_id, stream_name) = (account_id.into(), stream_name.into());
        let bad = |reason: String| ConfigError::InvalidStreamIdentifier {
            value: format!("{account_id}:{stream_name}:{creation_epoch}"),
            reason,
        };
        if account_id.is_empty() || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!(
                "the account id {account_id:?} is not a run of digits"
            )));
        }
        check_name(&stream_name, STREAM_NAME_LEN)
            .map_err(|reason| bad(format!("the stream name {stream_name:?} {reason}")))?;
        Ok(Self {
            account_id,
            stream_name,
            creation_epoch,
        })
    }

    /// The identifier of the stream `arn` names
    /// (`arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME`), created at `creation_epoch`
    /// (seconds since the Unix epoch).
    ///
    /// # Errors
    /// [`ConfigError::InvalidStreamIdentifier`] when `arn` is not a Kinesis stream ARN, or
    /// its account or name is invalid.
    pub fn from_arn(arn: &str, creation_epoch: u64) -> Result<Self, ConfigError> {
        let (account, name) = parse_stream_arn(arn)?;
        Self::new(account, name, creation_epoch).map_err(|e| match e {
            ConfigError::InvalidStreamIdentifier { reason, .. } => {
                ConfigError::InvalidStreamIdentifier {
                    value: arn.to_owned(),
                    reason,
                }
            }
            other => other,
        })
    }

    /// The AWS account id owning the stream.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }

    /// When the stream was created, in seconds since the Unix epoch.
    pub fn creation_epoch(&self) -> u64 {
        self.creation_epoch
    }

    /// The lease key of `shard_id` of this stream: `account:stream:epoch:shardId`.
    pub fn lease_key(&self, shard_id: &str) -> String {
        format!("{self}:{shard_id}")
    }

    /// A multi-stream lease key split into its stream and shard id; `None` for any other
    /// key (a single-stream lease's key is the bare shard id).
    pub fn split_lease_key(lease_key: &str) -> Option<(Self, &str)> {
        let mut parts = lease_key.splitn(4, ':');
        let (account, name, epoch, shard) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if shard.is_empty() {
            return None;
        }
        let id = format!("{account}:{name}:{epoch}").parse().ok()?;
        Some((id, shard))
    }
}

impl fmt::Display for StreamIdentifier {
    /// The serialized form the lease table holds: `account:stream:creationEpoch`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.account_id, self.stream_name, self.creation_epoch
        )
    }
}

impl FromStr for StreamIdentifier {
    type Err = ConfigError;

    /// Reads `account:stream:creationEpoch` (the pattern `[0-9]+:[^:]+:[0-9]+`, with a
    /// stream name that follows the Kinesis rule).
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &str| ConfigError::InvalidStreamIdentifier {
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = s.split(':').collect();
        let [account, name, epoch] = parts[..] else {
            return Err(bad(
                "expected account:stream:creationEpoch (three fields separated by ':')",
            ));
        };
        if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the creation epoch is not a run of digits (seconds)"));
        }
        let epoch = epoch
            .parse::<u64>()
            .map_err(|_| bad("the creation epoch does not fit in 64 bits"))?;
        Self::new(account, name, epoch).map_err(|e| match e {
            ConfigError::InvalidStreamIdentifier { reason, .. } => bad(&reason),
            other => other,
        })
    }
}

/// The account and name of a Kinesis stream ARN
/// (`arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME`).
pub(crate) fn parse_stream_arn(arn: &str) -> Result<(&str, &str), ConfigError> {
    let bad = |reason: &str| ConfigError::InvalidStreamIdentifier {
        value: arn.to_owned(),
        reason: reason.to_owned(),
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, _partition, service, _region, account, resource] = parts[..] else {
        return Err(bad(
            "not an ARN (arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME)",
        ));
    };
    if prefix != "arn" || service != "kinesis" {
        return Err(bad("not a Kinesis ARN (arn:PARTITION:kinesis:...)"));
    }
    let Some(name) = resource.strip_prefix("stream/") else {
        return Err(bad("not a stream ARN (its resource is not stream/NAME)"));
    };
    Ok((account, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(e: ConfigError) -> String {
        match e {
            ConfigError::InvalidStreamIdentifier { reason, .. } => reason,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn identifiers_round_trip_in_the_java_format() {
        let id: StreamIdentifier = "123456789012:orders.v2:1700000000".parse().unwrap();
        assert_eq!(id.account_id(), "123456789012");
        assert_eq!(id.stream_name(), "orders.v2");
        assert_eq!(id.creation_epoch(), 1_700_000_000);
        assert_eq!(id.to_string(), "123456789012:orders.v2:1700000000");
        assert_eq!(
            StreamIdentifier::new("000000000000", "s", 0)
                .unwrap()
                .to_string(),
            "000000000000:s:0"
        );
    }

    #[test]
    fn bad_identifiers_say_what_is_wrong() {
        for (text, says) in [
            ("orders", "three fields"),
            ("1:2", "three fields"),
            ("1:a:2:3", "three fields"),
            ("acct:orders:1", "account id"),
            (":orders:1", "account id"),
            ("1::1", "is empty"),
            ("1:my stream:1", "' '"),
            ("1:orders:", "creation epoch"),
            ("1:orders:-5", "creation epoch"),
            ("1:orders:99999999999999999999999", "64 bits"),
        ] {
            let e = text.parse::<StreamIdentifier>().unwrap_err();
            assert!(e.to_string().contains(text), "{e} names {text}");
            let why = reason(e);
            assert!(why.contains(says), "{text}: {why}");
        }
    }

    #[test]
    fn arns_give_the_account_and_name() {
        let id = StreamIdentifier::from_arn(
            "arn:aws:kinesis:eu-west-1:123456789012:stream/orders",
            1_700_000_000,
        )
        .unwrap();
        assert_eq!(id.to_string(), "123456789012:orders:1700000000");
        let china =
            StreamIdentifier::from_arn("arn:aws-cn:kinesis:cn-north-1:111122223333:stream/s", 7)
                .unwrap();
        assert_eq!(china.account_id(), "111122223333");
        for (arn, says) in [
            ("orders", "not an ARN"),
            ("arn:aws:sqs:eu-west-1:1:stream/q", "not a Kinesis ARN"),
            ("arn:aws:kinesis:eu-west-1:1:consumer/c", "not a stream ARN"),
            ("arn:aws:kinesis:eu-west-1:x:stream/s", "account id"),
        ] {
            let why = reason(StreamIdentifier::from_arn(arn, 1).unwrap_err());
            assert!(why.contains(says), "{arn}: {why}");
        }
        // An error names the ARN as given, not an identifier made up of its pieces.
        for (arn, says) in [
            ("arn:aws:kinesis:us-east-1:123:stream/", "is empty"),
            ("arn:aws:kinesis:us-east-1::stream/s", "account id"),
        ] {
            match StreamIdentifier::from_arn(arn, 0).unwrap_err() {
                ConfigError::InvalidStreamIdentifier { value, reason } => {
                    assert_eq!(value, arn);
                    assert!(reason.contains(says), "{arn}: {reason}");
                }
                other => panic!("{arn}: {other:?}"),
            }
        }
    }

    #[test]
    fn lease_keys_join_and_split_one_way_only() {
        let id = StreamIdentifier::new("1", "s", 2).unwrap();
        assert_eq!(
            id.lease_key("shardId-000000000003"),
            "1:s:2:shardId-000000000003"
        );
        let (back, shard) = StreamIdentifier::split_lease_key("1:s:2:shardId-3").unwrap();
        assert_eq!((back, shard), (id, "shardId-3"));
        // Single-stream keys and other odd keys are not multi-stream keys.
        for key in [
            "shardId-000000000000",
            "1:s:2",
            "1:s:2:",
            "a:s:2:shardId-1",
            "1:s:x:shardId-1",
        ] {
            assert_eq!(StreamIdentifier::split_lease_key(key), None, "{key}");
        }
    }
}
