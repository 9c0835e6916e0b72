//! The CLI's error type.

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Kinesis call failed.
    #[error("{operation} for stream {stream} failed: {message}")]
    Kinesis {
        /// The API operation, e.g. "SplitShard".
        operation: &'static str,
        /// The stream it was about ("-" for account-wide calls).
        stream: String,
        /// The SDK error with its full cause chain.
        message: String,
    },
    /// The emulator stack could not start, or a stream did not become ACTIVE.
    #[error(transparent)]
    Emulators(#[from] kinesis_emulators::Error),
    /// The shard named on the command line is not in the stream.
    #[error("shard {shard} not found in stream {stream}")]
    ShardNotFound {
        /// The stream searched.
        stream: String,
        /// The shard asked for.
        shard: String,
    },
    /// A hash key argument or a server-provided hash key range is unusable.
    #[error("invalid hash key {value:?}: {reason}")]
    InvalidHashKey {
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Waiting for Ctrl-C / SIGTERM failed.
    #[error("could not listen for shutdown signals: {0}")]
    Signal(#[source] std::io::Error),
    /// Reading standard input failed.
    #[error("could not read standard input: {0}")]
    Input(#[source] std::io::Error),
    /// `produce`: records were not delivered, or the producer could not start.
    #[error("produce: {0}")]
    Produce(String),
    /// The consumer library failed (lease table, configuration, AWS calls).
    #[error(transparent)]
    Consumer(#[from] kinesis_consumer::Error),
    /// Writing to standard output failed.
    #[error("could not write to standard output: {0}")]
    Output(#[source] std::io::Error),
}

impl Error {
    /// Builds [`Error::Kinesis`] from any SDK error, keeping the whole cause chain as text.
    pub(crate) fn kinesis<E>(operation: &'static str, stream: &str, err: E) -> Self
    where
        E: std::error::Error + 'static,
    {
        Self::Kinesis {
            operation,
            stream: stream.to_owned(),
            message: aws_sdk_kinesis::error::DisplayErrorContext(err).to_string(),
        }
    }

    /// The process exit code for this error: 3 when a named stream or shard does not exist,
    /// 1 otherwise (clap uses 2 for usage errors).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ShardNotFound { .. } => 3,
            Self::Kinesis { message, .. } if message.contains("ResourceNotFoundException") => 3,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_separate_missing_resources() {
        let missing = Error::ShardNotFound {
            stream: "s".into(),
            shard: "shardId-000000000009".into(),
        };
        assert_eq!(missing.exit_code(), 3);
        let not_found = Error::Kinesis {
            operation: "DescribeStreamSummary",
            stream: "s".into(),
            message: "ResourceNotFoundException: Stream s under account 000000000000 not found."
                .into(),
        };
        assert_eq!(not_found.exit_code(), 3);
        let other = Error::InvalidHashKey {
            value: "x".into(),
            reason: "not a number".into(),
        };
        assert_eq!(other.exit_code(), 1);
    }
}
