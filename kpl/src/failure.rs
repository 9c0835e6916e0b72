//! Failed calls: how an SDK error is sorted (retryable or not, throttling or not, about
//! the whole stream or not), the short message a record's outcome carries, and the
//! report sent to [`Producer::failures`](crate::Producer::failures) subscribers.
//!
//! ```text
//!  SdkError ─▶ classify ─▶ CallError { code, message (short), throttled, fatal, stream_level }
//!                │ the full SDK detail goes to tracing::debug! only
//!                ▼
//!   records' Attempt / FailureReason::Rejected        CallFailure report (one per call,
//!                                                     or per distinct code of a call's
//!                                                     per-record errors) ─▶ broadcast
//! ```

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::sync::Arc;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::endpoint::error::ResolveEndpointError;

/// Capacity of the channel behind [`Producer::failures`](crate::Producer::failures):
/// reports a subscriber may fall behind by before it misses some.
pub const FAILURE_REPORTS_CAPACITY: usize = 1024;

/// Longest message kept from an error, in bytes; longer ones are cut at a character
/// boundary and end with `…`.
const MAX_MESSAGE_BYTES: usize = 256;

/// Code of a call that failed because the client has no usable credentials (none found,
/// or no credentials provider configured): the SDK fails before sending anything.
pub(crate) const NO_CREDENTIALS: &str = "NoCredentials";

/// Code of a call that failed because the credentials provider is misconfigured or
/// returned something unusable.
pub(crate) const INVALID_CREDENTIALS: &str = "InvalidCredentialsConfiguration";

/// Code of a call that failed because the credentials provider could not load
/// credentials this time (it timed out, or a service it asks failed): retried.
pub(crate) const CREDENTIALS_UNAVAILABLE: &str = "CredentialsProviderError";

/// Code of a call the SDK could not build: no region, an endpoint it cannot resolve, a
/// request it cannot serialize.
pub(crate) const CONSTRUCTION_FAILURE: &str = "ConstructionFailure";

/// Code of a call that could not be sent or whose connection broke (connection refused,
/// reset, DNS): retried.
pub(crate) const DISPATCH_FAILURE: &str = "DispatchFailure";

/// Code of a call that timed out inside the SDK (connect or read timeout): retried.
pub(crate) const TIMEOUT: &str = "Timeout";

/// Error code given to an HTTP 413 answer (request body larger than the endpoint takes).
pub(crate) const REQUEST_TOO_LARGE: &str = "RequestEntityTooLarge";

/// Code of a call that got no answer within the producer's own request timeout: retried.
pub(crate) const REQUEST_TIMEOUT: &str = "RequestTimeout";

/// Code of a `ListShards` answer the producer cannot use (no shards, a bad hash key
/// range): retried.
pub(crate) const UNUSABLE_SHARD_LIST: &str = "UnusableShardList";

/// Code of an answer the SDK could not read: retried.
pub(crate) const RESPONSE_ERROR: &str = "ResponseError";

/// Error codes that say something about the whole stream (it does not exist, or this
/// client may not write to it, or its KMS key is unusable), not about one record: every
/// record of the stream would be refused the same way.
const STREAM_LEVEL_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "InvalidClientTokenId",
    "MissingAuthenticationToken",
    "ExpiredTokenException",
    "ExpiredToken",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSNotFoundException",
    "KMSOptInRequired",
    "KMSInvalidStateException",
    NO_CREDENTIALS,
    INVALID_CREDENTIALS,
    CONSTRUCTION_FAILURE,
];

/// Whether an error with this code concerns the whole stream (see
/// [`FailureReason::is_stream_level`](crate::FailureReason::is_stream_level)).
pub(crate) fn is_stream_level_code(code: &str) -> bool {
    STREAM_LEVEL_CODES.contains(&code)
}

/// Whether an error with this code is throttling.
pub(crate) fn is_throttling_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "KMSThrottlingException"
            | "ThrottlingException"
            | "LimitExceededException"
    )
}

/// One failed call (or a failed record of a call), told by one of the producer's
/// background calls to Kinesis as it happens, so that an application learns why records
/// are not delivered before their TTL runs out.
///
/// Received from [`Producer::failures`](crate::Producer::failures). The same error is
/// also recorded, per user record, in [`Failed::attempts`](crate::Failed::attempts).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallFailure {
    /// The stream the call was for.
    pub stream: Arc<str>,
    /// The Kinesis operation: `"PutRecords"` or `"ListShards"`.
    pub operation: &'static str,
    /// The error code: Kinesis' own (`ResourceNotFoundException`,
    /// `ProvisionedThroughputExceededException`, ...), or one the producer gives when
    /// there was no answer: `DispatchFailure` (connection refused, reset, DNS), `Timeout`,
    /// `RequestTimeout` (the producer's own request timeout), `ResponseError` (an answer
    /// that could not be read), `NoCredentials`, `InvalidCredentialsConfiguration`,
    /// `CredentialsProviderError`, `ConstructionFailure` (no region, or an endpoint or
    /// request the SDK cannot build), `MissingResult` (fewer per-record results than
    /// records), `UnusableShardList` (a `ListShards` answer with no shards or a bad hash
    /// key range).
    pub code: String,
    /// A short message: the service's own message for a Kinesis error, or a short cause
    /// chain for a transport error (e.g. `io error: Connection refused (os error 111)`).
    /// At most about 256 bytes; the SDK's full detail is logged at `debug` level.
    pub message: String,
    /// Whether the affected records are tried again (until their TTL). `false` means
    /// they failed with [`FailureReason::Rejected`](crate::FailureReason::Rejected) (or
    /// `Throttled` under `fail_if_throttled`). For `ListShards` it says whether the
    /// failure is temporary; records are then still sent, unaggregated, meanwhile.
    pub retryable: bool,
    /// Whether the error is throttling.
    pub throttled: bool,
    /// User records affected: for `PutRecords`, those in the call (or, for a per-record
    /// error, those in the Kinesis records that got this code), plus, when the error is
    /// [stream-level](crate::FailureReason::is_stream_level), the records of the stream
    /// that were waiting in the producer and failed with it. For `ListShards`, the
    /// records of the stream that failed with it (0 when the failure only delays them).
    pub records: usize,
}

/// The error of one failed call (or of one Kinesis record in a call), sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallError {
    /// The error code (Kinesis' own, or one of the producer's constants above).
    pub(crate) code: String,
    /// A short message (see [`CallFailure::message`]).
    pub(crate) message: String,
    /// Throttling, counted apart from errors.
    pub(crate) throttled: bool,
    /// Not worth retrying: the records fail at once.
    pub(crate) fatal: bool,
    /// Fatal for every record of the stream, not only this call's.
    pub(crate) stream_level: bool,
}

impl CallError {
    /// An error the producer noticed itself (no SDK error behind it).
    pub(crate) fn retryable(code: &str, message: impl Into<String>) -> Self {
        CallError {
            code: code.to_owned(),
            message: message.into(),
            throttled: is_throttling_code(code),
            fatal: false,
            stream_level: false,
        }
    }
}

/// Sorts a failed SDK call: its code, a short message, and whether retrying can help.
///
/// Service errors keep Kinesis' code and message. Errors with no answer are told apart by
/// what the SDK puts in the source chain; the SDK reports every error raised before
/// sending as `SdkError::DispatchFailure` with a `ConnectorError` of kind "other":
/// - missing credentials: a [`CredentialsError`] (`CredentialsNotLoaded` when the
///   default chain found none: "no credentials found in chain") → `NoCredentials`;
///   invalid provider configuration → `InvalidCredentialsConfiguration`; both fatal. A
///   provider that timed out or failed this time → `CredentialsProviderError`, retried;
/// - no credentials provider on the client at all: "no identity resolver" for SigV4
///   (a private SDK error, recognised by its text) → `NoCredentials`, fatal;
/// - no region, or an endpoint that cannot be used: a `ResolveEndpointError` ("Invalid
///   Configuration: Missing Region"), or, from private SDK errors, "failed to apply
///   endpoint" or "missing signing region" (no region, with an endpoint URL set) →
///   `ConstructionFailure`, fatal, like the SDK's own `ConstructionFailure` (a request it
///   cannot build);
/// - connection errors (refused, reset, DNS) → `DispatchFailure`, and timeouts →
///   `Timeout`, retried; so is anything unrecognised.
pub(crate) fn classify<E>(err: &SdkError<E>) -> CallError
where
    E: ProvideErrorMetadata + StdError + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let e = se.err();
            if status == 413 {
                return CallError {
                    code: REQUEST_TOO_LARGE.to_owned(),
                    message: "the endpoint refused the request body as too large (HTTP 413)"
                        .to_owned(),
                    throttled: false,
                    fatal: true,
                    stream_level: false,
                };
            }
            let code = e.code().unwrap_or("Unknown").to_owned();
            let message = match e.message() {
                Some(m) if !m.is_empty() => shorten(m),
                _ => format!("(no message; HTTP status {status})"),
            };
            let throttled = is_throttling_code(&code);
            let stream_level = is_stream_level_code(&code);
            let fatal = stream_level
                || matches!(
                    code.as_str(),
                    "ValidationException" | "InvalidArgumentException" | "SerializationException"
                );
            CallError {
                code,
                message,
                throttled,
                fatal,
                stream_level,
            }
        }
        SdkError::ConstructionFailure(_) => {
            fatal_error(CONSTRUCTION_FAILURE, cause_chain(err.source()))
        }
        SdkError::TimeoutError(_) => CallError::retryable(TIMEOUT, cause_chain(err.source())),
        SdkError::DispatchFailure(df) => {
            let chain = cause_chain(err.source());
            if df.is_timeout() {
                return CallError::retryable(TIMEOUT, chain);
            }
            if !df.is_other() {
                return CallError::retryable(DISPATCH_FAILURE, chain);
            }
            if let Some(ce) = find_source::<CredentialsError>(err) {
                let message = credentials_message(ce);
                return match ce {
                    CredentialsError::CredentialsNotLoaded(_) => {
                        fatal_error(NO_CREDENTIALS, message)
                    }
                    CredentialsError::InvalidConfiguration(_) | CredentialsError::Unhandled(_) => {
                        fatal_error(INVALID_CREDENTIALS, message)
                    }
                    _ => CallError::retryable(CREDENTIALS_UNAVAILABLE, message),
                };
            }
            if mentions(err, "no identity resolver") {
                // The client was built without a credentials provider: the SDK's message
                // (a paragraph on auth schemes) says only that.
                return fatal_error(
                    NO_CREDENTIALS,
                    "the client has no credentials provider (no identity resolver for SigV4)"
                        .to_owned(),
                );
            }
            if find_source::<aws_smithy_http::endpoint::ResolveEndpointError>(err).is_some()
                || find_source::<ResolveEndpointError>(err).is_some()
                || BEFORE_SENDING.iter().any(|m| mentions(err, m))
            {
                return fatal_error(CONSTRUCTION_FAILURE, chain);
            }
            CallError::retryable(DISPATCH_FAILURE, chain)
        }
        _ => CallError::retryable(RESPONSE_ERROR, cause_chain(err.source())),
    }
}

/// What a credentials error says, short: the default chain's error lists every provider
/// it tried, each after the same phrase, which is said once here.
fn credentials_message(ce: &CredentialsError) -> String {
    const NOT_ENABLED: &str = "the credential provider was not enabled";
    let chain = match ce {
        // "not enabled" then the list of what was tried: the list says it all.
        CredentialsError::CredentialsNotLoaded(_) if ce.source().is_some() => {
            whole_chain(ce.source())
        }
        _ => whole_chain(Some(ce)),
    };
    let chain = chain.replace(&format!("{NOT_ENABLED}: "), "");
    shorten(&chain.replace(NOT_ENABLED, "not enabled"))
}

/// A fatal error; stream-level when its code says so (see [`is_stream_level_code`]).
fn fatal_error(code: &str, message: String) -> CallError {
    CallError {
        code: code.to_owned(),
        message,
        throttled: false,
        fatal: true,
        stream_level: is_stream_level_code(code),
    }
}

/// The first error of type `T` in the source chain of `err` (itself included).
fn find_source<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// What the SDK's private errors about a client it cannot send with (an endpoint it
/// cannot use, no region to sign for) say.
const BEFORE_SENDING: &[&str] = &["failed to apply endpoint", "missing signing region"];

/// Whether any error in the source chain of `err` (itself included) says `needle`.
fn mentions(err: &(dyn StdError + 'static), needle: &str) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.to_string().contains(needle) {
            return true;
        }
        next = e.source();
    }
    false
}

/// A short cause chain on one line: each error's message once, joined with `: `,
/// skipping messages already said by an outer error (many errors repeat their source in
/// their own message) and the SDK's bare error kind `other`, and cut at
/// [`MAX_MESSAGE_BYTES`].
pub(crate) fn cause_chain(err: Option<&(dyn StdError + 'static)>) -> String {
    shorten(&whole_chain(err))
}

/// [`cause_chain`] before it is cut.
fn whole_chain(err: Option<&(dyn StdError + 'static)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = err;
    while let Some(e) = next {
        let text = one_line(&e.to_string());
        if !text.is_empty() && text != "other" && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.is_empty() {
        return "(no detail)".to_owned();
    }
    parts.join(": ")
}

/// A multi-line message (the credentials chain lists one provider per line) on one
/// line: lines trimmed, joined with a space after a colon and with `; ` otherwise.
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.is_empty() {
            out.push_str(if out.ends_with(':') { " " } else { "; " });
        }
        out.push_str(line);
    }
    out
}

/// `text` cut to at most [`MAX_MESSAGE_BYTES`] bytes, on a character boundary.
pub(crate) fn shorten(text: &str) -> String {
    if text.len() <= MAX_MESSAGE_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_MESSAGE_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 3);
    out.push_str(&text[..end]);
    let _ = write!(out, "…");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);

    impl std::fmt::Display for Chain {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Chain {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|c| c as _)
        }
    }

    #[test]
    fn cause_chains_say_each_cause_once() {
        let e = Chain(
            "io error",
            Some(Box::new(Chain(
                "client error (Connect): tcp connect error: Connection refused",
                Some(Box::new(Chain(
                    "tcp connect error: Connection refused",
                    Some(Box::new(Chain("Connection refused", None))),
                ))),
            ))),
        );
        assert_eq!(
            cause_chain(Some(&e)),
            "io error: client error (Connect): tcp connect error: Connection refused"
        );
        assert_eq!(cause_chain(None), "(no detail)");
        let listing = Chain(
            "other",
            Some(Box::new(Chain(
                "no credentials found in chain. Attempted:\n  Environment: not set\n  Profile: not enabled",
                None,
            ))),
        );
        assert_eq!(
            cause_chain(Some(&listing)),
            "no credentials found in chain. Attempted: Environment: not set; Profile: not enabled"
        );
    }

    /// A client for `endpoint` that fails before sending when asked to, and does not
    /// retry on its own.
    fn client(
        region: Option<&str>,
        endpoint: Option<&str>,
        credentials: Option<aws_sdk_kinesis::config::SharedCredentialsProvider>,
    ) -> aws_sdk_kinesis::Client {
        use aws_sdk_kinesis::config::{retry::RetryConfig, BehaviorVersion, Region};
        let mut conf = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled());
        conf.set_endpoint_url(endpoint.map(str::to_owned));
        conf.set_region(region.map(|r| Region::new(r.to_owned())));
        conf.set_credentials_provider(credentials);
        let conf = conf.build();
        aws_sdk_kinesis::Client::from_conf(conf)
    }

    /// A credentials provider that always fails with `error`.
    #[derive(Debug)]
    struct Failing(fn() -> CredentialsError);

    impl aws_sdk_kinesis::config::ProvideCredentials for Failing {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            aws_credential_types::provider::future::ProvideCredentials::ready(Err((self.0)()))
        }
    }

    fn failing(
        error: fn() -> CredentialsError,
    ) -> aws_sdk_kinesis::config::SharedCredentialsProvider {
        aws_sdk_kinesis::config::SharedCredentialsProvider::new(Failing(error))
    }

    fn static_credentials() -> aws_sdk_kinesis::config::SharedCredentialsProvider {
        aws_sdk_kinesis::config::SharedCredentialsProvider::new(
            aws_sdk_kinesis::config::Credentials::new("a", "b", None, None, "test"),
        )
    }

    /// A loopback port nothing listens on.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    async fn list_shards_error(client: aws_sdk_kinesis::Client) -> CallError {
        let err = client
            .list_shards()
            .stream_name("s")
            .send()
            .await
            .expect_err("cannot succeed");
        classify(&err)
    }

    /// Real SDK errors, raised before anything is sent or against a closed loopback port.
    #[tokio::test]
    async fn errors_with_no_answer_are_sorted_by_their_cause() {
        let closed = format!("http://127.0.0.1:{}", closed_port());
        let cases: Vec<(&str, aws_sdk_kinesis::Client, &str, bool)> = vec![
            (
                "no credentials provider",
                client(Some("us-east-1"), Some(&closed), None),
                NO_CREDENTIALS,
                true,
            ),
            (
                "the default chain found nothing",
                client(
                    Some("us-east-1"),
                    Some(&closed),
                    Some(failing(|| {
                        CredentialsError::not_loaded("no credentials found in chain")
                    })),
                ),
                NO_CREDENTIALS,
                true,
            ),
            (
                "a misconfigured provider",
                client(
                    Some("us-east-1"),
                    Some(&closed),
                    Some(failing(|| {
                        CredentialsError::invalid_configuration("profile loops")
                    })),
                ),
                INVALID_CREDENTIALS,
                true,
            ),
            (
                "a provider that timed out",
                client(
                    Some("us-east-1"),
                    Some(&closed),
                    Some(failing(|| {
                        CredentialsError::provider_timed_out(std::time::Duration::from_secs(5))
                    })),
                ),
                CREDENTIALS_UNAVAILABLE,
                false,
            ),
            (
                "no region",
                client(None, None, Some(static_credentials())),
                CONSTRUCTION_FAILURE,
                true,
            ),
            (
                "no region, with an endpoint",
                client(None, Some(&closed), Some(static_credentials())),
                CONSTRUCTION_FAILURE,
                true,
            ),
            (
                "an endpoint that is no URL",
                client(
                    Some("us-east-1"),
                    Some("not a url"),
                    Some(static_credentials()),
                ),
                CONSTRUCTION_FAILURE,
                true,
            ),
            (
                "connection refused",
                client(Some("us-east-1"), Some(&closed), Some(static_credentials())),
                DISPATCH_FAILURE,
                false,
            ),
        ];
        for (case, client, code, fatal) in cases {
            let e = list_shards_error(client).await;
            assert_eq!((e.code.as_str(), e.fatal), (code, fatal), "{case}: {e:?}");
            assert_eq!(e.stream_level, fatal, "{case}: {e:?}");
            assert!(!e.throttled, "{case}");
            assert!(e.message.len() <= MAX_MESSAGE_BYTES, "{case}: {e:?}");
            assert!(!e.message.contains('\n'), "{case}: {e:?}");
            assert!(!e.message.starts_with("other"), "{case}: {e:?}");
        }
        let refused = list_shards_error(client(
            Some("us-east-1"),
            Some(&closed),
            Some(static_credentials()),
        ))
        .await;
        assert!(
            refused
                .message
                .ends_with("Connection refused (os error 111)"),
            "{refused:?}"
        );
        assert!(refused.message.starts_with("io error: "), "{refused:?}");
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(300);
        let short = shorten(&long);
        assert!(short.len() <= MAX_MESSAGE_BYTES, "{}", short.len());
        assert!(short.ends_with('…'));
        assert_eq!(shorten("short"), "short");
    }

    #[test]
    fn stream_level_codes_are_fatal_and_per_record_ones_are_not() {
        for code in [
            "ResourceNotFoundException",
            "AccessDeniedException",
            "KMSAccessDeniedException",
            NO_CREDENTIALS,
        ] {
            assert!(is_stream_level_code(code), "{code}");
        }
        for code in [
            "ValidationException",
            "ProvisionedThroughputExceededException",
            "InternalFailure",
            DISPATCH_FAILURE,
        ] {
            assert!(!is_stream_level_code(code), "{code}");
        }
        assert!(is_throttling_code("ProvisionedThroughputExceededException"));
        assert!(!is_throttling_code("InternalFailure"));
    }
}
