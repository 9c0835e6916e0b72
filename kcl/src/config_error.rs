//! What [`SchedulerBuilder::build`](crate::SchedulerBuilder::build) refuses, and why.
//!
//! ```text
//!  SchedulerBuilder::validate ──first bad setting──▶ ConfigError ──build()──▶ Error::Config
//! ```
//!
//! Every variant names the setting (by its builder method without `with_`, e.g.
//! `failover_time`, or `polling.max_records` for a field of
//! [`PollingConfig`](crate::PollingConfig)) and the value given, so the message alone says
//! what to change.

/// Kinesis stream names: 1 to 128 characters.
pub(crate) const STREAM_NAME_LEN: (usize, usize) = (1, 128);
/// Kinesis stream consumer names: 1 to 128 characters.
pub(crate) const CONSUMER_NAME_LEN: (usize, usize) = (1, 128);
/// DynamoDB table names: 3 to 255 characters.
pub(crate) const TABLE_NAME_LEN: (usize, usize) = (3, 255);

/// A setting given to a builder that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Neither [`with_clients`](crate::SchedulerBuilder::with_clients) nor
    /// [`with_sdk_config`](crate::SchedulerBuilder::with_sdk_config) was called.
    #[error("no AWS clients: call with_clients or with_sdk_config")]
    MissingClients,
    /// The stream name breaks the Kinesis rule: 1 to 128 characters of `A-Z a-z 0-9 _ . -`.
    #[error("invalid stream name {name:?}: {reason}")]
    InvalidStreamName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The application name names the lease table (no
    /// [`with_table_name`](crate::SchedulerBuilder::with_table_name) was given) and breaks
    /// the DynamoDB table name rule: 3 to 255 characters of `A-Z a-z 0-9 _ . -`.
    #[error("invalid application name {name:?} (it names the lease table): {reason}")]
    InvalidApplicationName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The lease table name breaks the DynamoDB rule: 3 to 255 characters of
    /// `A-Z a-z 0-9 _ . -`.
    #[error("invalid lease table name {name:?}: {reason}")]
    InvalidTableName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The fan-out stream consumer's name breaks the Kinesis rule: 1 to 128 characters of
    /// `A-Z a-z 0-9 _ . -`. With no name given, the application name is the consumer's
    /// name and is checked against the same rule.
    #[error("invalid stream consumer name {name:?}: {reason}")]
    InvalidConsumerName {
        /// The name given (or the application name).
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`SchedulerBuilder::build`](crate::SchedulerBuilder::build) on a builder from
    /// [`Scheduler::stream_builder`](crate::Scheduler::stream_builder) or
    /// [`Scheduler::multi_stream_stream_builder`](crate::Scheduler::multi_stream_stream_builder),
    /// which have no processor factory: build it with `build_stream`.
    #[error("this builder reads records as a stream: build it with build_stream")]
    NoProcessorFactory,
    /// [`SchedulerBuilder::build_stream`](crate::SchedulerBuilder::build_stream) on a
    /// builder made with a processor factory: build it with `build`.
    #[error("this builder has a record processor factory: build it with build")]
    ProcessorFactoryGiven,
    /// The worker id is empty (it is written as the `leaseOwner` of held leases).
    #[error("invalid worker id {id:?}: {reason}")]
    InvalidWorkerId {
        /// The id given.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A duration that must be positive is zero.
    #[error("{setting} must be longer than zero")]
    ZeroDuration {
        /// The setting, e.g. `failover_time`.
        setting: &'static str,
    },
    /// A number outside its allowed range.
    #[error("{setting} = {value} is out of range (allowed: {allowed})")]
    OutOfRange {
        /// The setting, e.g. `max_leases_per_worker`.
        setting: &'static str,
        /// The value given.
        value: i64,
        /// The allowed values, e.g. `1 to 10000`.
        allowed: &'static str,
    },
    /// A stream of a multi-stream application given as text (a serialized
    /// `account:stream:creationEpoch` identifier, a stream ARN, or a name) that cannot be
    /// read.
    #[error("invalid stream {value:?}: {reason}")]
    InvalidStreamIdentifier {
        /// The text given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A list of streams for a multi-stream application that cannot work (empty, or one
    /// stream twice).
    #[error("invalid stream list: {reason}")]
    InvalidStreamList {
        /// What is wrong with it.
        reason: String,
    },
    /// An initial position given as text (e.g. on a command line) that cannot be read.
    #[error("invalid initial position {value:?}: {reason}")]
    InvalidInitialPosition {
        /// The text given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Checks `name` against the naming rule shared by Kinesis streams and DynamoDB tables:
/// `len.0` to `len.1` characters of `A-Z a-z 0-9 _ . -`. The error is the reason.
pub(crate) fn check_name(name: &str, len: (usize, usize)) -> Result<(), String> {
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "contains {c:?}; only A-Z, a-z, 0-9, '_', '.' and '-' are allowed"
        ));
    }
    // Only ASCII is left, so bytes are characters.
    let (min, max) = len;
    match name.len() {
        0 => Err("is empty".to_owned()),
        n if n < min => Err(format!("has {n} characters; at least {min} are required")),
        n if n > max => Err(format!("has {n} characters; at most {max} are allowed")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_aws_rules() {
        assert_eq!(check_name("my-stream_1.0", STREAM_NAME_LEN), Ok(()));
        assert_eq!(check_name("a", STREAM_NAME_LEN), Ok(()));
        assert_eq!(check_name(&"s".repeat(128), STREAM_NAME_LEN), Ok(()));
        let long = check_name(&"s".repeat(129), STREAM_NAME_LEN).unwrap_err();
        assert!(long.contains("129") && long.contains("128"), "{long}");
        assert_eq!(check_name("", STREAM_NAME_LEN).unwrap_err(), "is empty");
        let space = check_name("my stream", STREAM_NAME_LEN).unwrap_err();
        assert!(space.contains("' '"), "{space}");
        let accent = check_name("café", STREAM_NAME_LEN).unwrap_err();
        assert!(accent.contains("'é'"), "{accent}");

        assert_eq!(check_name("abc", TABLE_NAME_LEN), Ok(()));
        assert_eq!(check_name(&"t".repeat(255), TABLE_NAME_LEN), Ok(()));
        let short = check_name("ab", TABLE_NAME_LEN).unwrap_err();
        assert!(short.contains("at least 3"), "{short}");
        assert!(check_name(&"t".repeat(256), TABLE_NAME_LEN).is_err());
        assert!(check_name("app/leases", TABLE_NAME_LEN).is_err());
    }

    #[test]
    fn messages_name_the_setting_and_value() {
        let zero = ConfigError::ZeroDuration {
            setting: "failover_time",
        };
        assert_eq!(zero.to_string(), "failover_time must be longer than zero");
        let range = ConfigError::OutOfRange {
            setting: "polling.max_records",
            value: 0,
            allowed: "1 to 10000",
        };
        assert_eq!(
            range.to_string(),
            "polling.max_records = 0 is out of range (allowed: 1 to 10000)"
        );
        let name = ConfigError::InvalidStreamName {
            name: "a b".into(),
            reason: "contains ' '".into(),
        };
        assert!(name.to_string().contains("\"a b\""));
    }
}
