//! AWS configuration for the commands that call Kinesis or DynamoDB, checked before the
//! first call so that a missing region or missing credentials are said once, with what to
//! do, instead of surfacing as a failure of every request.
//!
//! ```text
//!  aws_config::defaults (env, profiles, AWS_ENDPOINT_URL_*) + --region/--profile/--endpoint-url ──▶ SdkConfig
//!      ├─ region?       none ──▶ Error::Config(NoRegion)        (exit 4)
//!      ├─ credentials?  none ──▶ Error::Config(NoCredentials)   (exit 4)
//!      └─ timeouts: 5 s to connect, 30 s per attempt (a silent endpoint is a timeout,
//!         retried or reported, never a hang)
//!                       some ──▶ their secrets registered with the log redactor
//!
//!  SubscribeToShard (consume --efo):  request ─▶ response headers ─▶ event stream (≤ 5 min)
//!                                     └── attempt timeout ──┘      not bounded by it
//! ```
//!
//! The attempt (and operation) timeouts of aws-smithy-runtime wrap the orchestrator's
//! attempt, which ends once a streaming response's headers are in: the event stream of a
//! `SubscribeToShard` is handed out as the body and read after the timeouts are done, so a
//! fan-out subscription is never cut at 30 s (the `stream_consumers` tests check it with
//! 1 s bounds). The consumer library turns stalled-stream protection off for those calls and
//! guards a silent subscription with its own idle timeout.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::provider::ProvideCredentials;

use crate::error::{FailureKind, ServiceFailure};
use crate::Error;

/// The global flags that take precedence over the standard AWS configuration chain.
///
/// Each is optional: left out, the chain decides (`AWS_REGION`, `AWS_PROFILE`,
/// `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_KINESIS` / `AWS_ENDPOINT_URL_DYNAMODB`, the
/// profile files, ...).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsOptions {
    /// AWS region of the calls (e.g. eu-west-1), over AWS_REGION and the profile's.
    #[arg(long, global = true, value_name = "REGION", value_parser = crate::args::non_empty)]
    pub region: Option<String>,
    /// Named profile of the AWS config and credentials files, over AWS_PROFILE.
    #[arg(long, global = true, value_name = "PROFILE", value_parser = crate::args::non_empty)]
    pub profile: Option<String>,
    /// One endpoint for both Kinesis and DynamoDB (e.g. http://127.0.0.1:4566, a
    /// LocalStack-style emulator serving both), over every AWS_ENDPOINT_URL* variable. The
    /// per-service variables AWS_ENDPOINT_URL_KINESIS and AWS_ENDPOINT_URL_DYNAMODB (and
    /// multilang's kinesisEndpoint / dynamoDBEndpoint) point the services apart.
    #[arg(long, global = true, value_name = "URL", value_parser = crate::args::endpoint_url)]
    pub endpoint_url: Option<String>,
}

/// Loads the standard AWS configuration, with the global flags of `options` over it, and
/// checks that requests can be signed.
///
/// # Cancellation
/// Safe to drop at any point: it only reads configuration (and may ask a credential
/// provider, such as a profile's SSO cache or an instance role, for credentials).
///
/// # Errors
/// [`Error::Config`] when no region is configured or no credentials can be found.
pub async fn load(options: &AwsOptions) -> Result<aws_config::SdkConfig, Error> {
    load_in(options, None).await
}

/// [`load`], with `region` (when given, and no `--region`) instead of the one the chain
/// finds (`multilang`'s `regionName`).
///
/// # Cancellation
/// As [`load`].
///
/// # Errors
/// As [`load`].
pub async fn load_in(
    options: &AwsOptions,
    region: Option<String>,
) -> Result<aws_config::SdkConfig, Error> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts());
    if let Some(profile) = &options.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = options.region.clone().or(region) {
        loader = loader.region(aws_config::Region::new(region));
    }
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(Error::Config(Box::new(ServiceFailure {
            kind: FailureKind::NoRegion,
            code: "NoRegion".into(),
            message: "no AWS region is configured".into(),
            detail: "aws-config found no region in AWS_REGION, AWS_DEFAULT_REGION or the profile"
                .into(),
            retryable: false,
        })));
    }
    let Some(provider) = config.credentials_provider() else {
        return Err(no_credentials(
            "no credential provider is configured".into(),
        ));
    };
    match provider.provide_credentials().await {
        Ok(creds) => {
            crate::logging::redact(creds.secret_access_key());
            if let Some(token) = creds.session_token() {
                crate::logging::redact(token);
            }
            Ok(config)
        }
        Err(e) => Err(no_credentials(
            aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
        )),
    }
}

/// Bounds on every call, so that an endpoint that accepts connections and never answers
/// is a (retryable) timeout instead of a hang: 5 s to connect, 30 s per attempt (until
/// the response headers: a streamed body, such as a fan-out subscription, is not cut).
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(30))
        .build()
}

fn no_credentials(detail: String) -> Error {
    Error::Config(Box::new(ServiceFailure {
        kind: FailureKind::NoCredentials,
        code: "NoCredentials".into(),
        message: "no AWS credentials were found".into(),
        detail,
        retryable: false,
    }))
}

/// A Kinesis client from [`load`].
///
/// # Cancellation
/// As [`load`].
///
/// # Errors
/// As [`load`].
pub async fn kinesis_client(options: &AwsOptions) -> Result<aws_sdk_kinesis::Client, Error> {
    Ok(aws_sdk_kinesis::Client::new(&load(options).await?))
}
