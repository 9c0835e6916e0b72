//! [`StreamTracker`]: where a multi-stream application's list of streams comes from, polled
//! while the worker runs (the Java KCL's `MultiStreamTracker`).
//!
//! ```text
//!  every stream_tracker_interval: StreamTracker::stream_configs()
//!    ─▶ [StreamConfig { stream: StreamRef (name | ARN | identifier), initial_position }]
//!    ─▶ the scheduler: new streams resolved and synced, removed ones retired
//!  StaticStreamTracker: a fixed list, checked when made
//! ```
//!
//! # Usage
//! ```
//! use kinesis_consumer::{InitialPosition, StaticStreamTracker, StreamConfig};
//!
//! let tracker = StaticStreamTracker::new(vec![
//!     StreamConfig::new("orders")?,
//!     StreamConfig::new("123456789012:payments:1700000000")?
//!         .with_initial_position(InitialPosition::Latest),
//! ])?;
//! # Ok::<(), kinesis_consumer::ConfigError>(())
//! ```

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;

use super::stream_identifier::{parse_stream_arn, StreamIdentifier};
use crate::config_error::{check_name, ConfigError, STREAM_NAME_LEN};
use crate::initial_position::InitialPosition;

/// A stream as the application names it: by name (the account and creation time are then
/// looked up with `DescribeStreamSummary` when the stream is added), by ARN (the creation
/// time is looked up), or by its full [`StreamIdentifier`] (nothing is looked up).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamRef {
    /// A stream name of the worker's account and region.
    Name(String),
    /// A stream ARN (`arn:PARTITION:kinesis:REGION:ACCOUNT:stream/NAME`); the worker's
    /// calls about the stream name it by this ARN, so it may be of another account.
    Arn(String),
    /// A serialized identifier `account:stream:creationEpoch`.
    Identifier(StreamIdentifier),
}

impl StreamRef {
    /// The stream's name, whichever way it was given.
    pub fn stream_name(&self) -> &str {
        match self {
            StreamRef::Name(name) => name,
            StreamRef::Arn(arn) => parse_stream_arn(arn).map(|(_, name)| name).unwrap_or(arn),
            StreamRef::Identifier(id) => id.stream_name(),
        }
    }
}

impl FromStr for StreamRef {
    type Err = ConfigError;

    /// An ARN when the text starts with `arn:`, an identifier when it holds a `:`, a name
    /// otherwise.
    ///
    /// # Errors
    /// [`ConfigError::InvalidStreamIdentifier`] for a bad ARN or identifier,
    /// [`ConfigError::InvalidStreamName`] for a name outside the Kinesis rule (1 to 128
    /// characters of `A-Z a-z 0-9 _ . -`).
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        if s.starts_with("arn:") {
            StreamIdentifier::from_arn(s, 0)?;
            Ok(StreamRef::Arn(s.to_owned()))
        } else if s.contains(':') {
            Ok(StreamRef::Identifier(s.parse()?))
        } else {
            check_name(s, STREAM_NAME_LEN).map_err(|reason| ConfigError::InvalidStreamName {
                name: s.to_owned(),
                reason,
            })?;
            Ok(StreamRef::Name(s.to_owned()))
        }
    }
}

impl fmt::Display for StreamRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamRef::Name(s) | StreamRef::Arn(s) => f.write_str(s),
            StreamRef::Identifier(id) => id.fmt(f),
        }
    }
}

/// One stream of a multi-stream application and where its new shards start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamConfig {
    /// The stream.
    pub stream: StreamRef,
    /// Where this stream's shards without a checkpoint start; `None` follows the builder's
    /// [`with_initial_position`](crate::SchedulerBuilder::with_initial_position).
    pub initial_position: Option<InitialPosition>,
}

impl StreamConfig {
    /// The stream given as a name, an ARN or an identifier (see [`StreamRef`]'s parsing),
    /// starting at the builder's initial position.
    ///
    /// # Errors
    /// As [`StreamRef`]'s `from_str`.
    pub fn new(stream: &str) -> Result<Self, ConfigError> {
        Ok(Self::from_ref(stream.parse()?))
    }

    /// The stream given as a [`StreamRef`], starting at the builder's initial position.
    pub fn from_ref(stream: StreamRef) -> Self {
        Self {
            stream,
            initial_position: None,
        }
    }

    /// Where this stream's shards without a checkpoint start. Default: the builder's.
    pub fn with_initial_position(mut self, position: InitialPosition) -> Self {
        self.initial_position = Some(position);
        self
    }
}

/// Where a multi-stream application's streams come from: the scheduler asks at start-up
/// and then every
/// [`stream_tracker_interval`](crate::SchedulerBuilder::with_stream_tracker_interval).
/// A stream that appears is added (its leases created at its initial position); one that
/// disappears is retired: its consumers stop, its leases are released, and they are
/// deleted as the [`FormerStreamsLeasesDeletionStrategy`](crate::FormerStreamsLeasesDeletionStrategy)
/// says. Every worker of an application should see the same list.
#[async_trait]
pub trait StreamTracker: Send + Sync + fmt::Debug + 'static {
    /// The streams to consume now. An error keeps the previous list in force (start-up
    /// asks again with backoff). A stream listed twice counts once (the first entry).
    ///
    /// # Cancellation
    /// The scheduler drops the future when it shuts down; implementations must allow it.
    async fn stream_configs(
        &self,
    ) -> Result<Vec<StreamConfig>, Box<dyn std::error::Error + Send + Sync>>;
}

/// A fixed list of streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticStreamTracker {
    /// The streams, checked when made: at least one, none twice.
    streams: Vec<StreamConfig>,
}

impl StaticStreamTracker {
    /// A tracker that always lists `streams`.
    ///
    /// # Errors
    /// [`ConfigError::InvalidStreamList`] when `streams` is empty or names a stream twice
    /// (by the same name, ARN or identifier).
    pub fn new(streams: Vec<StreamConfig>) -> Result<Self, ConfigError> {
        if streams.is_empty() {
            return Err(ConfigError::InvalidStreamList {
                reason: "no stream given".to_owned(),
            });
        }
        let mut seen = HashSet::new();
        if let Some(twice) = streams.iter().find(|s| !seen.insert(&s.stream)) {
            return Err(ConfigError::InvalidStreamList {
                reason: format!("{} is listed twice", twice.stream),
            });
        }
        Ok(Self { streams })
    }

    /// The streams listed.
    pub fn streams(&self) -> &[StreamConfig] {
        &self.streams
    }
}

#[async_trait]
impl StreamTracker for StaticStreamTracker {
    async fn stream_configs(
        &self,
    ) -> Result<Vec<StreamConfig>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.streams.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trait is object-safe: the scheduler keeps it as `Arc<dyn StreamTracker>`.
    const _: fn(&dyn StreamTracker) = |_| {};

    #[test]
    fn streams_are_read_as_names_arns_or_identifiers() {
        assert_eq!(
            StreamConfig::new("orders").unwrap().stream,
            StreamRef::Name("orders".into())
        );
        let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/orders";
        let by_arn = StreamConfig::new(arn).unwrap().stream;
        assert_eq!(by_arn, StreamRef::Arn(arn.into()));
        assert_eq!(by_arn.stream_name(), "orders");
        let by_id = StreamConfig::new("1:orders:5").unwrap().stream;
        assert_eq!(by_id.stream_name(), "orders");
        assert_eq!(by_id.to_string(), "1:orders:5");
        assert!(matches!(
            StreamConfig::new("my stream"),
            Err(ConfigError::InvalidStreamName { .. })
        ));
        assert!(matches!(
            StreamConfig::new("a:orders:5"),
            Err(ConfigError::InvalidStreamIdentifier { .. })
        ));
        assert!(matches!(
            StreamConfig::new("arn:aws:sqs:us-east-1:1:q"),
            Err(ConfigError::InvalidStreamIdentifier { .. })
        ));
        let c = StreamConfig::new("s").unwrap();
        assert_eq!(c.initial_position, None, "default: the builder's");
        assert_eq!(
            c.with_initial_position(InitialPosition::Latest)
                .initial_position,
            Some(InitialPosition::Latest)
        );
    }

    #[tokio::test]
    async fn a_static_tracker_lists_what_it_was_given_and_refuses_bad_lists() {
        let list = vec![
            StreamConfig::new("a").unwrap(),
            StreamConfig::new("b").unwrap(),
        ];
        let tracker = StaticStreamTracker::new(list.clone()).unwrap();
        assert_eq!(tracker.stream_configs().await.unwrap(), list);
        let e = StaticStreamTracker::new(Vec::new()).unwrap_err();
        assert!(e.to_string().contains("no stream"), "{e}");
        let e = StaticStreamTracker::new(vec![
            StreamConfig::new("a").unwrap(),
            StreamConfig::new("a").unwrap(),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("a is listed twice"), "{e}");
    }
}
