//! The CLI's error type, what each failure is called, and the exit statuses.
//!
//! ```text
//!  SDK error ──ServiceFailure::from_sdk──▶ { kind, code, message, detail }
//!                                             │ kind ──▶ exit status + what to do (hint)
//!                                             └ detail (the SDK's whole chain) only with -v
//!  Error ──main──▶ "kinesis-cat: error: <what failed>: <code>: <message>"
//!                  "kinesis-cat: hint: <what to do>"      ──▶ exit status
//! ```
//!
//! # Exit statuses (one scheme for every subcommand)
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done; also a graceful stop on the first Ctrl-C/SIGTERM, `--exit-when-idle`, or a reader closing standard output |
//! | 1 | the command failed (records not delivered, a call refused, an unexpected error) |
//! | 2 | bad command line (unknown flag, a value out of range), or a bad `multilang` properties file or `consume --streams-file`: nothing was done |
//! | 3 | a named stream, shard, stream consumer or table does not exist |
//! | 4 | not allowed or not configured: no region, no credentials, credentials refused, access denied |
//! | 5 | the endpoint cannot be reached (connection refused, timed out) |
//! | 130 | interrupted: a second Ctrl-C/SIGTERM forced an immediate exit, or the first one came while a `stream` command was waiting (the operation already sent goes ahead) |

use std::fmt;

use aws_sdk_kinesis::config::http::HttpResponse;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: the command failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: bad command line (clap's own status for usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: a named stream, shard, stream consumer or table does not exist.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit status: no region, no or refused credentials, access denied.
pub const EXIT_ACCESS: u8 = 4;
/// Exit status: the endpoint cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 5;
/// Exit status: interrupted by a signal (128 + SIGINT): a second one, or the first during a
/// `stream` command's wait.
pub const EXIT_FORCED: u8 = 130;

/// What kind of failure a call met: decides the exit status and the hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The stream (or another named resource) does not exist.
    NotFound,
    /// The SDK found no credentials.
    NoCredentials,
    /// No region is configured, so requests cannot be signed.
    NoRegion,
    /// The service refused the credentials or the permission.
    AccessDenied,
    /// The endpoint could not be reached, or did not answer in time.
    Unreachable,
    /// The service throttled the call.
    Throttled,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// The exit status for a command that ends on this kind of failure.
    pub fn exit_code(self) -> u8 {
        match self {
            FailureKind::NotFound => EXIT_NOT_FOUND,
            FailureKind::NoCredentials | FailureKind::NoRegion | FailureKind::AccessDenied => {
                EXIT_ACCESS
            }
            FailureKind::Unreachable => EXIT_UNREACHABLE,
            FailureKind::Throttled | FailureKind::Other => EXIT_FAILED,
        }
    }

    /// Sorts an error code (a service's, or one of the producer's own, such as
    /// `NoCredentials` or `DispatchFailure`) into a kind.
    pub fn of_code(code: &str) -> FailureKind {
        match code {
            "ResourceNotFoundException" => FailureKind::NotFound,
            "NoCredentials" | "CredentialsError" | "InvalidCredentialsConfiguration" => {
                FailureKind::NoCredentials
            }
            "NoRegion" | "MissingRegion" => FailureKind::NoRegion,
            "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "IncompleteSignature"
            | "IncompleteSignatureException"
            | "MissingAuthenticationToken"
            | "MissingAuthenticationTokenException"
            | "ExpiredTokenException"
            | "ExpiredToken"
            | "KMSAccessDeniedException" => FailureKind::AccessDenied,
            "DispatchFailure" | "Timeout" | "TimeoutError" | "RequestTimeout" | "Unreachable" => {
                FailureKind::Unreachable
            }
            "ProvisionedThroughputExceededException"
            | "LimitExceededException"
            | "ThrottlingException"
            | "KMSThrottlingException" => FailureKind::Throttled,
            _ => FailureKind::Other,
        }
    }

    /// What the user can do about it, naming `service`'s endpoint variable (`KINESIS` or
    /// `DYNAMODB`). `None` when there is nothing general to say.
    pub fn hint(self, service: Service) -> Option<String> {
        let var = service.endpoint_var();
        match self {
            FailureKind::NoCredentials => Some(
                "no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                 or AWS_PROFILE, or run where a role is available (the standard AWS credential \
                 chain); local emulators accept any values, as printed by `kinesis-cat local`"
                    .to_owned(),
            ),
            FailureKind::NoRegion => Some(
                "no AWS region is configured: set AWS_REGION (e.g. us-east-1) or a region in \
                 your AWS profile; local emulators accept any region"
                    .to_owned(),
            ),
            FailureKind::AccessDenied => Some(
                "the service refused these credentials or this permission: check AWS_PROFILE / \
                 AWS_ACCESS_KEY_ID and the IAM policy; against a local emulator, check that \
                 AWS_ENDPOINT_URL_* points at it"
                    .to_owned(),
            ),
            FailureKind::Unreachable => Some(match endpoint_from_env(service) {
                Some(url) => format!(
                    "nothing answers at {url} (from {var} / AWS_ENDPOINT_URL): check the \
                     address, or start local emulators with `kinesis-cat local`"
                ),
                None => format!(
                    "the AWS endpoint for this region cannot be reached: check the network, \
                     AWS_REGION, or set {var} to a local emulator (`kinesis-cat local`)"
                ),
            }),
            FailureKind::NotFound => match service {
                Service::Kinesis => {
                    Some("`kinesis-cat stream list` shows the streams that exist".to_owned())
                }
                Service::DynamoDb => None,
            },
            FailureKind::Throttled | FailureKind::Other => None,
        }
    }
}

/// Which AWS service a failure came from (for hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Kinesis Data Streams.
    Kinesis,
    /// DynamoDB (the lease table).
    DynamoDb,
}

impl Service {
    fn endpoint_var(self) -> &'static str {
        match self {
            Service::Kinesis => "AWS_ENDPOINT_URL_KINESIS",
            Service::DynamoDb => "AWS_ENDPOINT_URL_DYNAMODB",
        }
    }
}

/// The endpoint the standard variables set for `service`, if any.
fn endpoint_from_env(service: Service) -> Option<String> {
    [service.endpoint_var(), "AWS_ENDPOINT_URL"]
        .into_iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// One failed AWS call, said briefly: its kind, a code and a one-line message. The SDK's
/// whole error chain is kept in `detail`, printed only with `-v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFailure {
    /// What kind of failure, for the exit status and the hint.
    pub kind: FailureKind,
    /// The service's error code, or `DispatchFailure` / `Timeout` / `NoCredentials` /
    /// `NoRegion` for failures before an answer.
    pub code: String,
    /// One line: the service's message, or the innermost cause of a transport failure.
    pub message: String,
    /// The SDK's whole error chain, for `-v`.
    pub detail: String,
    /// Whether the same call may succeed later (throttling, 5xx, network trouble).
    pub retryable: bool,
}

impl fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(&self.code)
        } else {
            write!(f, "{}: {}", self.code, self.message)
        }
    }
}

impl ServiceFailure {
    /// Describes an SDK error of any operation of any service (the Kinesis and DynamoDB
    /// SDKs share the error and response types).
    pub fn from_sdk<E>(err: &aws_sdk_kinesis::error::SdkError<E, HttpResponse>) -> Self
    where
        E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        use aws_sdk_kinesis::error::SdkError;
        let detail = format!("{}", aws_sdk_kinesis::error::DisplayErrorContext(err));
        let mut status_5xx = false;
        let (code, message) = match err {
            SdkError::ServiceError(se) => {
                status_5xx = se.raw().status().as_u16() >= 500;
                (
                    se.err().code().unwrap_or("UnknownError").to_owned(),
                    se.err().message().unwrap_or_default().to_owned(),
                )
            }
            SdkError::TimeoutError(_) => ("Timeout".to_owned(), innermost(err)),
            SdkError::DispatchFailure(d) => {
                let text = innermost(err);
                if chain_has::<aws_credential_types::provider::error::CredentialsError>(err) {
                    ("NoCredentials".to_owned(), first_line(&text))
                } else if text.contains("missing signing region") {
                    ("NoRegion".to_owned(), text)
                } else if d.is_timeout() {
                    ("Timeout".to_owned(), text)
                } else {
                    ("DispatchFailure".to_owned(), text)
                }
            }
            SdkError::ConstructionFailure(_) => ("ConstructionFailure".to_owned(), innermost(err)),
            _ => ("ResponseError".to_owned(), innermost(err)),
        };
        let kind = FailureKind::of_code(&code);
        let retryable = match kind {
            FailureKind::Unreachable | FailureKind::Throttled => true,
            FailureKind::Other => {
                status_5xx
                    || matches!(
                        code.as_str(),
                        "InternalFailure"
                            | "InternalFailureException"
                            | "InternalServerError"
                            | "ServiceUnavailable"
                            | "ServiceUnavailableException"
                            | "ResponseError"
                    )
            }
            _ => false,
        };
        ServiceFailure {
            kind,
            code,
            message,
            detail,
            retryable,
        }
    }
}

/// Whether any error in `err`'s source chain is a `T`.
fn chain_has<T: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if e.is::<T>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// The innermost cause's text (the useful part of a transport error), or the error's own.
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut last = err;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

/// The first line of a multi-line message (the credential chain lists every provider).
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Kinesis call failed.
    #[error("{operation}{} failed: {failure}", for_stream(stream))]
    Kinesis {
        /// The API operation, e.g. "SplitShard".
        operation: &'static str,
        /// The stream it was about ("-" for account-wide calls).
        stream: String,
        /// What went wrong.
        failure: Box<ServiceFailure>,
    },
    /// The AWS configuration is unusable: no region, or no credentials.
    #[error("{0}")]
    Config(Box<ServiceFailure>),
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
    /// The shard named on the command line is closed and cannot be resharded.
    #[error("shard {shard} of stream {stream} is closed (already split or merged); only open shards can be resharded")]
    ShardClosed {
        /// The stream.
        stream: String,
        /// The closed shard.
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
    /// The enhanced fan-out stream consumer named on the command line is not registered on
    /// the stream.
    #[error("stream consumer {consumer} is not registered on stream {stream}")]
    ConsumerNotFound {
        /// The stream.
        stream: String,
        /// The stream consumer asked for.
        consumer: String,
    },
    /// A stream consumer did not reach the state waited for within `--wait-secs`.
    #[error(
        "stream consumer {consumer} of stream {stream} is still {status} after {secs} s \
         (waited for it to be {target})"
    )]
    ConsumerWaitTimedOut {
        /// The stream.
        stream: String,
        /// The stream consumer.
        consumer: String,
        /// Its status at the last look (`CREATING`, `DELETING`, ...).
        status: String,
        /// What was waited for: `ACTIVE`, or `gone`.
        target: &'static str,
        /// How long was waited, in whole seconds.
        secs: u64,
    },
    /// Waiting for Ctrl-C / SIGTERM failed.
    #[error("could not listen for shutdown signals: {0}")]
    Signal(#[source] std::io::Error),
    /// `produce`: records were not delivered, or the producer could not start.
    #[error("produce: {message}")]
    Produce {
        /// What happened, with counts.
        message: String,
        /// The exit status (from the kind of failure that ended the run).
        exit_code: u8,
    },
    /// The consumer library failed (lease table, configuration, AWS calls).
    #[error(transparent)]
    Consumer(#[from] kinesis_consumer::Error),
    /// Writing to standard output failed (other than the reader going away, which ends
    /// the command successfully).
    #[error("could not write to standard output: {0}")]
    Output(#[source] std::io::Error),
    /// A signal interrupted a command that has nothing to finish gracefully.
    #[error("interrupted: {what}")]
    Interrupted {
        /// What happened to the work under way.
        what: &'static str,
    },
    /// `multilang`: the properties file cannot be used (it names the key and line).
    #[error(transparent)]
    Properties(#[from] crate::commands::multilang::properties::PropertiesError),
    /// `consume --streams-file`: the file cannot be read, or a line is not a stream (it
    /// names the file and line).
    #[error(transparent)]
    StreamsFile(#[from] crate::commands::streams_file::StreamsFileError),
    /// `--metrics-addr`: the address cannot be listened on, or a metrics recorder is
    /// already installed.
    #[error("cannot serve metrics on {addr}: {reason}")]
    Metrics {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why not (e.g. the address is in use).
        reason: String,
    },
    /// A bug: a task of the command panicked or was lost.
    #[error("internal error: {0}")]
    Internal(String),
    /// Retries of a call ran out.
    #[error(
        "{operation}{} still failing after {attempts} attempts over {secs} s; giving up: {failure}",
        for_stream(stream)
    )]
    GaveUp {
        /// The API operation.
        operation: &'static str,
        /// The stream.
        stream: String,
        /// How many calls were made.
        attempts: u32,
        /// For how long, in whole seconds.
        secs: u64,
        /// The last failure.
        failure: Box<ServiceFailure>,
    },
}

/// " for stream S", or nothing for account-wide calls (stream "-").
fn for_stream(stream: &str) -> String {
    if stream == "-" {
        String::new()
    } else {
        format!(" for stream {stream}")
    }
}

impl Error {
    /// Builds [`Error::Kinesis`] from any SDK error.
    pub(crate) fn kinesis<E>(
        operation: &'static str,
        stream: &str,
        err: aws_sdk_kinesis::error::SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        Self::Kinesis {
            operation,
            stream: stream.to_owned(),
            failure: Box::new(ServiceFailure::from_sdk(&err)),
        }
    }

    /// The AWS failure behind this error, if it is one.
    pub fn service_failure(&self) -> Option<&ServiceFailure> {
        match self {
            Self::Kinesis { failure, .. }
            | Self::GaveUp { failure, .. }
            | Self::Config(failure) => Some(failure),
            _ => None,
        }
    }

    /// The process exit status for this error (see the module's table).
    pub fn exit_code(&self) -> u8 {
        if let Some(f) = self.service_failure() {
            return f.kind.exit_code();
        }
        match self {
            Self::ShardNotFound { .. } | Self::ConsumerNotFound { .. } => EXIT_NOT_FOUND,
            Self::Interrupted { .. } => EXIT_FORCED,
            Self::Produce { exit_code, .. } => *exit_code,
            Self::Consumer(kinesis_consumer::Error::StreamNotFound { .. }) => EXIT_NOT_FOUND,
            Self::Consumer(kinesis_consumer::Error::Config(_)) => EXIT_USAGE,
            Self::Properties(_) | Self::StreamsFile(_) => EXIT_USAGE,
            Self::Consumer(e) => consumer_kind(e).exit_code(),
            _ => EXIT_FAILED,
        }
    }

    /// What the user can do about it, if there is something general to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Kinesis { failure, .. }
            | Self::GaveUp { failure, .. }
            | Self::Config(failure) => failure.kind.hint(Service::Kinesis),
            Self::ConsumerNotFound { stream, .. } => Some(format!(
                "`kinesis-cat stream consumers list --stream {stream}` shows the registered \
                 stream consumers"
            )),
            Self::ConsumerWaitTimedOut { stream, .. } => Some(format!(
                "the change goes ahead in Kinesis: look again with `kinesis-cat stream \
                 consumers list --stream {stream}`, or wait longer with --wait-secs"
            )),
            Self::Consumer(kinesis_consumer::Error::Config(
                kinesis_consumer::ConfigError::InvalidConsumerName { .. },
            )) => Some(
                "a stream consumer name is 1 to 128 characters of a-z, A-Z, 0-9, '_', '.' and \
                 '-'; --consumer-name sets it (default: the --app name)"
                    .to_owned(),
            ),
            Self::Consumer(e @ kinesis_consumer::Error::DynamoDb { .. }) => {
                consumer_kind(e).hint(Service::DynamoDb)
            }
            Self::Consumer(e) => consumer_kind(e).hint(Service::Kinesis),
            _ => None,
        }
    }

    /// The SDK's whole error chain, when there is more to say than the message (for `-v`).
    pub fn detail(&self) -> Option<&str> {
        self.service_failure().map(|f| f.detail.as_str())
    }
}

/// The kind of a consumer library error, read from its message (the library keeps the
/// SDK's rendering, not the error value).
fn consumer_kind(e: &kinesis_consumer::Error) -> FailureKind {
    let text = e.to_string();
    if text.contains("ResourceNotFoundException") {
        FailureKind::NotFound
    } else if text.contains("no credentials") || text.contains("credential provider") {
        FailureKind::NoCredentials
    } else if text.contains("missing signing region") {
        FailureKind::NoRegion
    } else if [
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredToken",
    ]
    .iter()
    .any(|c| text.contains(c))
    {
        FailureKind::AccessDenied
    } else if text.contains("dispatch failure") || text.contains("timed out") {
        FailureKind::Unreachable
    } else {
        FailureKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: FailureKind, code: &str) -> ServiceFailure {
        ServiceFailure {
            kind,
            code: code.into(),
            message: "m".into(),
            detail: "d".into(),
            retryable: false,
        }
    }

    #[test]
    fn exit_codes_follow_the_documented_scheme() {
        let missing = Error::ShardNotFound {
            stream: "s".into(),
            shard: "shardId-000000000009".into(),
        };
        assert_eq!(missing.exit_code(), EXIT_NOT_FOUND);
        let kinesis = |kind, code| Error::Kinesis {
            operation: "DescribeStreamSummary",
            stream: "s".into(),
            failure: Box::new(failure(kind, code)),
        };
        let not_found = kinesis(FailureKind::NotFound, "ResourceNotFoundException");
        assert_eq!(not_found.exit_code(), 3);
        assert_eq!(
            kinesis(FailureKind::NoCredentials, "NoCredentials").exit_code(),
            4
        );
        assert_eq!(kinesis(FailureKind::NoRegion, "NoRegion").exit_code(), 4);
        assert_eq!(
            kinesis(FailureKind::AccessDenied, "AccessDeniedException").exit_code(),
            4
        );
        assert_eq!(
            kinesis(FailureKind::Unreachable, "DispatchFailure").exit_code(),
            5
        );
        assert_eq!(kinesis(FailureKind::Other, "Boom").exit_code(), 1);
        let other = Error::InvalidHashKey {
            value: "x".into(),
            reason: "not a number".into(),
        };
        assert_eq!(other.exit_code(), 1);
        let consumer =
            Error::Consumer(kinesis_consumer::Error::StreamNotFound { stream: "s".into() });
        assert_eq!(consumer.exit_code(), 3);
        let missing = Error::ConsumerNotFound {
            stream: "s".into(),
            consumer: "c".into(),
        };
        assert_eq!(missing.exit_code(), EXIT_NOT_FOUND);
        let streams_file = Error::from(crate::commands::streams_file::StreamsFileError::Empty {
            path: "/etc/streams".into(),
        });
        assert_eq!(
            streams_file.exit_code(),
            EXIT_USAGE,
            "as a bad command line"
        );
        assert!(streams_file.to_string().contains("/etc/streams"));
        assert!(missing
            .hint()
            .unwrap()
            .contains("stream consumers list --stream s"));
        let slow = Error::ConsumerWaitTimedOut {
            stream: "s".into(),
            consumer: "c".into(),
            status: "CREATING".into(),
            target: "ACTIVE",
            secs: 120,
        };
        assert_eq!(slow.exit_code(), EXIT_FAILED);
        assert!(slow.to_string().contains("still CREATING after 120 s"));
    }

    #[test]
    fn a_bad_consumer_name_is_a_usage_error_with_the_rule() {
        let bad = Error::Consumer(kinesis_consumer::Error::Config(
            kinesis_consumer::ConfigError::InvalidConsumerName {
                name: "bad name".into(),
                reason: "contains ' '".into(),
            },
        ));
        assert_eq!(bad.exit_code(), EXIT_USAGE);
        assert!(bad.to_string().contains("\"bad name\""), "{bad}");
        assert!(bad.hint().unwrap().contains("--consumer-name"));
    }

    #[test]
    fn codes_sort_into_kinds() {
        for (code, kind) in [
            ("ResourceNotFoundException", FailureKind::NotFound),
            ("NoCredentials", FailureKind::NoCredentials),
            ("UnrecognizedClientException", FailureKind::AccessDenied),
            ("AccessDeniedException", FailureKind::AccessDenied),
            ("DispatchFailure", FailureKind::Unreachable),
            ("Timeout", FailureKind::Unreachable),
            (
                "ProvisionedThroughputExceededException",
                FailureKind::Throttled,
            ),
            ("ValidationException", FailureKind::Other),
        ] {
            assert_eq!(FailureKind::of_code(code), kind, "{code}");
        }
    }

    #[test]
    fn every_configuration_failure_says_what_to_do() {
        for kind in [
            FailureKind::NoCredentials,
            FailureKind::NoRegion,
            FailureKind::AccessDenied,
            FailureKind::Unreachable,
        ] {
            let hint = kind.hint(Service::Kinesis).expect("a hint");
            assert!(hint.contains("AWS_"), "{kind:?}: {hint}");
        }
        assert!(FailureKind::Unreachable
            .hint(Service::DynamoDb)
            .unwrap()
            .contains("DYNAMODB"));
    }

    #[test]
    fn failures_print_code_and_message_only() {
        let f = failure(FailureKind::NotFound, "ResourceNotFoundException");
        let e = Error::Kinesis {
            operation: "DescribeStreamSummary",
            stream: "nope".into(),
            failure: Box::new(f),
        };
        assert_eq!(
            e.to_string(),
            "DescribeStreamSummary for stream nope failed: ResourceNotFoundException: m"
        );
        assert_eq!(e.detail(), Some("d"));
    }
}
