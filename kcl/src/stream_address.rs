//! [`StreamAddress`]: how a worker names a stream in its Kinesis calls — by name (a stream
//! of the account and region of its clients), or by ARN (any stream its credentials may
//! read, also of another account).
//!
//! ```text
//!  StreamRef::Name / StreamRef::Identifier ─▶ Name  ─▶ StreamName=…
//!  StreamRef::Arn ──────────────────────────▶ Arn   ─▶ StreamARN=…
//!     in DescribeStreamSummary, ListShards, GetShardIterator, GetRecords
//! ```
//!
//! Kinesis reads a stream of another account only when it is named by ARN (the stream's
//! resource policy grants the reader's role; AWS: *Share your data stream with another
//! account*, Kinesis Data Streams developer guide), which is why the Java KCL 3.x
//! addresses multi-stream streams given as ARNs by their ARN. Exactly one of the two
//! parameters is sent.

use std::fmt;

use crate::multi_stream::StreamRef;

/// How Kinesis calls name a stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum StreamAddress {
    /// By name, in the account and region of the worker's clients.
    Name(String),
    /// By ARN (sent as `StreamARN`), which may be of another account.
    Arn(String),
}

impl StreamAddress {
    /// The address of a stream listed as `stream`: its ARN when it was given as one, else
    /// its name.
    pub(crate) fn of(stream: &StreamRef) -> Self {
        match stream {
            StreamRef::Arn(arn) => StreamAddress::Arn(arn.clone()),
            StreamRef::Name(_) | StreamRef::Identifier(_) => {
                StreamAddress::Name(stream.stream_name().to_owned())
            }
        }
    }

    /// The `StreamName` parameter of a call: the name, unless the stream is named by ARN.
    pub(crate) fn stream_name_param(&self) -> Option<String> {
        match self {
            StreamAddress::Name(name) => Some(name.clone()),
            StreamAddress::Arn(_) => None,
        }
    }

    /// The `StreamARN` parameter of a call: the ARN, if the stream is named by one.
    pub(crate) fn stream_arn_param(&self) -> Option<String> {
        match self {
            StreamAddress::Name(_) => None,
            StreamAddress::Arn(arn) => Some(arn.clone()),
        }
    }
}

impl From<String> for StreamAddress {
    fn from(name: String) -> Self {
        StreamAddress::Name(name)
    }
}

impl From<&str> for StreamAddress {
    fn from(name: &str) -> Self {
        StreamAddress::Name(name.to_owned())
    }
}

impl From<&String> for StreamAddress {
    fn from(name: &String) -> Self {
        StreamAddress::Name(name.clone())
    }
}

impl fmt::Display for StreamAddress {
    /// The name, or the ARN.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamAddress::Name(name) => f.write_str(name),
            StreamAddress::Arn(arn) => f.write_str(arn),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_given_as_arns_are_named_by_arn_and_the_others_by_name() {
        let arn = "arn:aws:kinesis:eu-west-1:444455556666:stream/orders";
        let by_arn = StreamAddress::of(&arn.parse().unwrap());
        assert_eq!(by_arn, StreamAddress::Arn(arn.into()));
        assert_eq!(by_arn.stream_arn_param().as_deref(), Some(arn));
        assert_eq!(by_arn.stream_name_param(), None, "never both");
        assert_eq!(by_arn.to_string(), arn);

        for given in ["orders", "111122223333:orders:1700000000"] {
            let by_name = StreamAddress::of(&given.parse().unwrap());
            assert_eq!(by_name, StreamAddress::Name("orders".into()), "{given}");
            assert_eq!(by_name.stream_name_param().as_deref(), Some("orders"));
            assert_eq!(by_name.stream_arn_param(), None);
            assert_eq!(by_name.to_string(), "orders");
        }
        assert_eq!(StreamAddress::from("s"), StreamAddress::Name("s".into()));
    }
}
