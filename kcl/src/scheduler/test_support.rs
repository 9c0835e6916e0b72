//! Builders and clients shared by the scheduler's unit tests.

use super::{Scheduler, SchedulerBuilder};
use crate::config_error::ConfigError;
use crate::error::Error;
use crate::processor::RecordProcessor;

pub(super) fn factory(_: &str) -> Box<dyn RecordProcessor> {
    unreachable!("not called in these tests")
}

/// Clients with no endpoint, region or credentials: fine for anything that calls nothing.
pub(super) fn offline_clients() -> (aws_sdk_kinesis::Client, aws_sdk_dynamodb::Client) {
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .build();
    let dconf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .build();
    (
        aws_sdk_kinesis::Client::from_conf(conf),
        aws_sdk_dynamodb::Client::from_conf(dconf),
    )
}

/// Clients of `endpoint` with fixed test credentials and the SDK's own retries off, so
/// every try of a start-up step is one connection.
pub(super) fn clients_at(endpoint: &str) -> (aws_sdk_kinesis::Client, aws_sdk_dynamodb::Client) {
    use aws_sdk_kinesis::config::{retry::RetryConfig, Credentials, Region};
    let credentials = Credentials::new("test", "test", None, None, "test");
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials.clone())
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled())
        .build();
    let dconf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(endpoint)
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    (
        aws_sdk_kinesis::Client::from_conf(conf),
        aws_sdk_dynamodb::Client::from_conf(dconf),
    )
}

/// A builder that passes validation.
pub(super) fn valid() -> SchedulerBuilder {
    let (kinesis, dynamodb) = offline_clients();
    Scheduler::builder("app", "stream", factory).with_clients(kinesis, dynamodb)
}

/// What `validate` and `build` refuse `b` with (they must agree).
pub(super) fn refused(b: SchedulerBuilder) -> ConfigError {
    let from_validate = b.validate().expect_err("validate refuses it");
    match b.build() {
        Err(Error::Config(e)) => {
            assert_eq!(e, from_validate);
            e
        }
        other => panic!("build: {other:?}"),
    }
}
