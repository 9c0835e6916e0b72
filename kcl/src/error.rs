//! The crate's error type.
//!
//! ```text
//!  DynamoDB / Kinesis SDK error ──classify(service)──▶ Error::DynamoDb / Error::Kinesis
//!                                  { retryable, throttled: is_throttling_code(service, code) }
//!  conditional write refused   ─────────────▶ Error::LeaseLost (checkpoints) or Ok(false) (lease ops)
//!  odd lease item              ─────────────▶ Error::InvalidLease (skipped with a warning by scans)
//!  bad builder setting         ─────────────▶ Error::Config(ConfigError)
//!  stream missing at start-up  ─────────────▶ Error::StreamNotFound
//! ```
//!
//! Retryable: service throttling, 5xx and transient codes, time-outs, and connection
//! failures (I/O errors reaching the endpoint). Not retryable: every other service error
//! (missing resources, access denied, rejected credentials, validation) and failures before
//! a request is sent (no credentials found, no region).

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::ProvideErrorMetadata;

use crate::config_error::ConfigError;

/// Everything that can go wrong in the consumer library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A DynamoDB call failed.
    #[error("DynamoDB {operation} on table {table} failed: {message}")]
    DynamoDb {
        /// The API operation, e.g. `UpdateItem`.
        operation: &'static str,
        /// The lease table.
        table: String,
        /// The SDK's error, rendered with its sources.
        message: String,
        /// Whether calling again may succeed (network trouble, throttling, 5xx).
        retryable: bool,
        /// Whether DynamoDB throttled the call.
        throttled: bool,
    },
    /// A Kinesis call failed.
    #[error("Kinesis {operation} on {target} failed: {message}")]
    Kinesis {
        /// The API operation, e.g. `GetRecords`.
        operation: &'static str,
        /// The stream or shard the call was about.
        target: String,
        /// The SDK's error, rendered with its sources.
        message: String,
        /// Whether calling again may succeed.
        retryable: bool,
        /// Whether Kinesis throttled the call.
        throttled: bool,
    },
    /// This worker no longer holds the lease (it was taken, stolen, evicted or expired):
    /// the write was refused so that the new owner's progress is never overwritten.
    #[error("lease {lease_key} is not held by this worker any more")]
    LeaseLost {
        /// The lease (shard id).
        lease_key: String,
    },
    /// An item in the lease table is not a lease this library can read.
    #[error("lease table item {lease_key:?} is invalid: {reason}")]
    InvalidLease {
        /// The item's `leaseKey`, when it has one.
        lease_key: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint position outside what may be checkpointed: before the current
    /// checkpoint, or after the last record handed to the processor.
    #[error("cannot checkpoint shard {shard_id} at {requested}: {reason}")]
    InvalidCheckpoint {
        /// The shard.
        shard_id: String,
        /// The position asked for.
        requested: String,
        /// Why it was refused.
        reason: String,
    },
    /// A record reported failed with
    /// [`Checkpointer::retry_from`](crate::Checkpointer::retry_from) that cannot be retried:
    /// not in the latest batch, or already checkpointed.
    #[error("cannot retry shard {shard_id} from {requested}: {reason}")]
    InvalidRetry {
        /// The shard.
        shard_id: String,
        /// The position reported.
        requested: String,
        /// Why it was refused.
        reason: String,
    },
    /// A setting given to a builder cannot work; the [`ConfigError`] names it and its value.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// [`Scheduler::run`](crate::Scheduler::run) was called on a worker that was already
    /// started (one worker runs once; build another to run again).
    #[error("this worker was already started")]
    AlreadyStarted,
    /// The stream does not exist (Kinesis answered `ResourceNotFoundException`): a typo,
    /// another account or another region, found at start-up before anything is created;
    /// or the stream was deleted while the worker ran, found by a shard sync (the worker
    /// then shuts down gracefully and `run` returns this).
    #[error("Kinesis stream {stream} does not exist (check its name, account and region)")]
    StreamNotFound {
        /// The stream name given.
        stream: String,
    },
    /// A multi-stream application's [`StreamTracker`](crate::StreamTracker) could not
    /// list its streams. Retryable: start-up asks it again with backoff; once running, the
    /// previous list stays in force until a later poll succeeds.
    #[error("the stream tracker failed: {message}")]
    StreamTracker {
        /// The tracker's error, rendered with its sources.
        message: String,
    },
    /// The lease table did not become `ACTIVE` in time.
    #[error("lease table {table} not ACTIVE after {waited_secs} s")]
    TableNotActive {
        /// The lease table.
        table: String,
        /// How long we waited.
        waited_secs: u64,
    },
    /// The worker was shut down while the call was in progress.
    #[error("the worker is shutting down")]
    ShuttingDown,
}

impl Error {
    /// Whether calling again may succeed: only [`Error::DynamoDb`] and [`Error::Kinesis`]
    /// failures classified retryable (see the module docs), and [`Error::StreamTracker`];
    /// never a configuration error,
    /// [`Error::StreamNotFound`] or [`Error::AlreadyStarted`].
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::DynamoDb { retryable, .. } | Error::Kinesis { retryable, .. } => *retryable,
            Error::StreamTracker { .. } => true,
            _ => false,
        }
    }

    /// Whether the service throttled the call (a retry should back off). Only ever true for
    /// [`Error::DynamoDb`] and [`Error::Kinesis`].
    pub fn is_throttling(&self) -> bool {
        match self {
            Error::DynamoDb { throttled, .. } | Error::Kinesis { throttled, .. } => *throttled,
            _ => false,
        }
    }

    /// `call`, or, if it takes longer than `within`, a retryable [`Error::DynamoDb`] saying
    /// so (the call is dropped; it may still land).
    pub(crate) async fn dynamodb_within<T>(
        operation: &'static str,
        table: &str,
        within: std::time::Duration,
        call: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::time::timeout(within, call)
            .await
            .unwrap_or_else(|_| {
                Err(Error::DynamoDb {
                    operation,
                    table: table.to_owned(),
                    message: format!("no answer within {within:?}"),
                    retryable: true,
                    throttled: false,
                })
            })
    }

    pub(crate) fn dynamodb<E>(operation: &'static str, table: &str, err: &SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = |raw: &HttpResponse| Some(raw.status().as_u16());
        let (retryable, throttled) = classify(Service::DynamoDb, err, status);
        Error::DynamoDb {
            operation,
            table: table.to_owned(),
            message: describe(err),
            retryable,
            throttled,
        }
    }

    pub(crate) fn kinesis<E>(operation: &'static str, target: &str, err: &SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        Self::kinesis_with_status(operation, target, err, |raw| Some(raw.status().as_u16()))
    }

    /// A failed receive on an event stream (`SubscribeToShard`): an error message the
    /// service sent in the stream (whose response was already `200`), or the stream
    /// breaking off.
    pub(crate) fn kinesis_event_stream<E, R>(
        operation: &'static str,
        target: &str,
        err: &SdkError<E, R>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        Self::kinesis_with_status(operation, target, err, |_| None)
    }

    /// [`Error::Kinesis`] for `err`, whose raw answer's HTTP status `status` reads.
    fn kinesis_with_status<E, R>(
        operation: &'static str,
        target: &str,
        err: &SdkError<E, R>,
        status: impl Fn(&R) -> Option<u16>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let (retryable, throttled) = classify(Service::Kinesis, err, status);
        Error::Kinesis {
            operation,
            target: target.to_owned(),
            message: describe(err),
            retryable,
            throttled,
        }
    }
}

/// A failed call of either SDK: both name the same smithy types. The raw answer is an
/// HTTP response, or one message of an event stream (`SubscribeToShard`).
type SdkError<E, R = HttpResponse> = aws_sdk_kinesis::error::SdkError<E, R>;

/// The AWS service a call went to: each says "slow down" with its own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    /// The lease table's.
    DynamoDb,
    /// The stream's.
    Kinesis,
}

/// Whether `service` throttled a call that failed with `code`.
fn is_throttling_code(service: Service, code: &str) -> bool {
    match service {
        Service::DynamoDb => matches!(
            code,
            "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
        ),
        Service::Kinesis => matches!(
            code,
            "ProvisionedThroughputExceededException"
                | "LimitExceededException"
                | "ThrottlingException"
                | "KMSThrottlingException"
        ),
    }
}

/// Other error codes worth retrying.
const TRANSIENT: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "InternalFailureException",
    "ServiceUnavailableException",
    "TransactionConflictException",
];

/// Sorts a failed call of `service`: (retryable, throttled). See the module docs.
/// `status` reads the HTTP status of a raw answer, if it has one.
fn classify<E: ProvideErrorMetadata, R>(
    service: Service,
    err: &SdkError<E, R>,
    status: impl Fn(&R) -> Option<u16>,
) -> (bool, bool) {
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            let status = status(se.raw()).unwrap_or(0);
            let throttled = is_throttling_code(service, code);
            (
                throttled || TRANSIENT.contains(&code) || status >= 500,
                throttled,
            )
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => (true, false),
        SdkError::DispatchFailure(f) => (f.as_connector_error().is_some_and(reconnectable), false),
        _ => (false, false),
    }
}

/// Whether a request that got no answer may get one when sent again: the endpoint could
/// not be reached or did not answer in time (I/O errors, time-outs), or the HTTP client
/// marked the failure with a retry kind. Not when no request could be made at all: no
/// credentials found, a malformed endpoint, other local failures.
fn reconnectable(e: &aws_sdk_kinesis::error::ConnectorError) -> bool {
    e.is_io() || e.is_timeout() || e.as_other().is_some()
}

/// Says what went wrong in one line: a service's code and message, or else the error's
/// chain (see `render`).
fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    // A service's answer: its code and message, as the service said them (an unmodelled
    // error's Display is "unhandled error (Code)" over a debug dump of its metadata).
    if let SdkError::ServiceError(se) = err {
        if let Some(code) = se.err().code() {
            return match se.err().message() {
                Some(message) if !message.is_empty() => format!("{code}: {message}"),
                _ => code.to_owned(),
            };
        }
    }
    render(err)
}

/// Renders an error with its chain of sources, each said once: the SDK's generic "service
/// error" is dropped (the service's code and message follow it), and a source that repeats
/// the text before it is skipped.
pub(crate) fn render(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        let repeated = parts.last().is_some_and(|p| p.contains(text.as_str()));
        if !repeated && !text.is_empty() {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.len() > 1 && parts[0] == "service error" {
        parts.remove(0);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryError;

    #[test]
    fn rendered_errors_say_each_part_once() {
        #[derive(Debug)]
        struct Chain(&'static str, Option<Box<Chain>>);
        impl std::fmt::Display for Chain {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Chain {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|c| c as _)
            }
        }
        let msg = "ResourceNotFoundException: Requested resource not found";
        let service = Chain(
            "service error",
            Some(Box::new(Chain(msg, Some(Box::new(Chain(msg, None)))))),
        );
        assert_eq!(render(&service), msg);
        let dispatch = Chain(
            "dispatch failure",
            Some(Box::new(Chain("Connection refused (os error 111)", None))),
        );
        assert_eq!(
            render(&dispatch),
            "dispatch failure: Connection refused (os error 111)"
        );
    }

    #[test]
    fn only_service_errors_are_retryable_or_throttling() {
        let lost = Error::LeaseLost {
            lease_key: "shardId-0".into(),
        };
        assert!(!lost.is_retryable());
        assert!(!lost.is_throttling());
        let throttled = Error::Kinesis {
            operation: "GetRecords",
            target: "s".into(),
            message: "m".into(),
            retryable: true,
            throttled: true,
        };
        assert!(throttled.is_retryable());
        assert!(throttled.is_throttling());
        assert!(lost.to_string().contains("shardId-0"));
    }

    #[test]
    fn start_up_and_configuration_errors_are_final() {
        let missing = Error::StreamNotFound {
            stream: "nope".into(),
        };
        assert!(!missing.is_retryable());
        assert!(!missing.is_throttling());
        assert!(missing.to_string().contains("nope"));
        assert!(!Error::AlreadyStarted.is_retryable());
        assert!(!Error::AlreadyStarted.is_throttling());
        let config = Error::from(ConfigError::ZeroDuration {
            setting: "failover_time",
        });
        assert!(!config.is_retryable());
        assert!(!config.is_throttling());
        assert_eq!(
            config.to_string(),
            "invalid configuration: failover_time must be longer than zero"
        );
    }

    fn service_error<E>(err: E, status: u16) -> SdkError<E> {
        let status = status.try_into().expect("an HTTP status");
        SdkError::service_error(err, HttpResponse::new(status, "".into()))
    }

    fn kinesis_error(code: &str, status: u16) -> Error {
        use aws_sdk_kinesis::operation::get_records::GetRecordsError;
        let err = GetRecordsError::generic(ErrorMetadata::builder().code(code).build());
        Error::kinesis("GetRecords", "shardId-0", &service_error(err, status))
    }

    fn dynamodb_error(code: &str, status: u16) -> Error {
        use aws_sdk_dynamodb::operation::get_item::GetItemError;
        let err = GetItemError::generic(ErrorMetadata::builder().code(code).build());
        Error::dynamodb("GetItem", "table", &service_error(err, status))
    }

    #[test]
    fn service_answers_are_said_as_code_and_message() {
        use aws_sdk_kinesis::operation::get_records::GetRecordsError;
        let meta = ErrorMetadata::builder()
            .code("UnrecognizedClientException")
            .message("The security token included in the request is invalid.")
            .build();
        let e = Error::kinesis(
            "GetRecords",
            "shardId-0",
            &service_error(GetRecordsError::generic(meta), 400),
        );
        assert_eq!(
            e.to_string(),
            "Kinesis GetRecords on shardId-0 failed: UnrecognizedClientException: The security \
             token included in the request is invalid."
        );
        assert!(kinesis_error("InternalFailure", 500)
            .to_string()
            .ends_with("failed: InternalFailure"));
    }

    #[test]
    fn one_classifier_tells_each_services_throttling() {
        for code in [
            "ProvisionedThroughputExceededException",
            "LimitExceededException",
            "ThrottlingException",
            "KMSThrottlingException",
        ] {
            let e = kinesis_error(code, 400);
            assert!(e.is_throttling() && e.is_retryable(), "Kinesis {code}");
        }
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
        ] {
            let e = dynamodb_error(code, 400);
            assert!(e.is_throttling() && e.is_retryable(), "DynamoDB {code}");
        }
        // DynamoDB's LimitExceededException (too many tables or table operations) is no
        // throttling, and waiting does not fix a table quota.
        let e = dynamodb_error("LimitExceededException", 400);
        assert!(!e.is_throttling() && !e.is_retryable());
        // Transient codes and 5xx are retried without being throttling.
        for e in [
            kinesis_error("InternalFailure", 400),
            dynamodb_error("TransactionConflictException", 400),
            dynamodb_error("Whatever", 503),
        ] {
            assert!(e.is_retryable() && !e.is_throttling(), "{e}");
        }
        let e = kinesis_error("ResourceNotFoundException", 400);
        assert!(!e.is_retryable() && !e.is_throttling());
    }

    fn dispatch(e: ConnectorError) -> Error {
        let err: SdkError<DescribeStreamSummaryError> = SdkError::dispatch_failure(e);
        Error::kinesis("DescribeStreamSummary", "s", &err)
    }

    #[test]
    fn unreachable_endpoints_are_retried_but_requests_never_made_are_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let io = dispatch(ConnectorError::io(Box::new(refused)));
        assert!(io.is_retryable());
        assert!(!io.is_throttling());
        assert!(io.to_string().contains("DescribeStreamSummary"));
        let slow = dispatch(ConnectorError::timeout("no answer".into()));
        assert!(slow.is_retryable());
        // What an identity resolver failure (no credentials anywhere) becomes.
        let no_credentials = dispatch(ConnectorError::other(
            "no credentials in the environment".into(),
            None,
        ));
        assert!(!no_credentials.is_retryable());
        assert!(no_credentials.to_string().contains("no credentials"));
    }
}
