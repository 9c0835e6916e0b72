//! The stream consumer a fan-out worker subscribes for: found, or registered when missing,
//! and waited for until `ACTIVE`. One look per call; the start-up retries it.
//!
//! ```text
//!  DescribeStreamConsumer(stream ARN, name)
//!    ACTIVE ──────────────▶ Active(consumer ARN)
//!    CREATING ────────────▶ NotYet (looked at again)
//!    DELETING / unknown ──▶ NotYet (once gone, registered again)
//!    ResourceNotFound ────▶ RegisterStreamConsumer ─ok / ResourceInUse (another worker)─▶ NotYet
//! ```
//!
//! The library never deregisters a consumer: a registered consumer costs money while it
//! exists, and one application's fleet reuses it across restarts (`kinesis-cat stream
//! consumers deregister` removes it by hand).

use aws_sdk_kinesis::types::ConsumerStatus;

use crate::error::Error;
use crate::metric_names as m;

/// The registered consumer a worker subscribes for: its ARN, looked up again (and the
/// consumer registered again) when a subscription says it is not found, e.g. after it was
/// deregistered by hand while the worker ran.
#[derive(Debug)]
pub(crate) struct StreamConsumer {
    /// The stream's ARN, which names it to the consumer calls.
    stream_arn: String,
    /// The consumer's name.
    name: String,
    /// The ARN subscriptions use now; replaced when the consumer is found again under
    /// another.
    arn: std::sync::RwLock<String>,
}

impl StreamConsumer {
    /// The consumer `name` of `stream_arn`, ACTIVE under `arn`.
    pub(crate) fn new(stream_arn: String, name: String, arn: String) -> Self {
        Self {
            stream_arn,
            name,
            arn: std::sync::RwLock::new(arn),
        }
    }

    /// The ARN to subscribe with.
    pub(crate) fn arn(&self) -> String {
        self.arn.read().expect("not poisoned").clone()
    }

    /// Looks the consumer up again after a subscription was refused as not found,
    /// registering it when it is missing; the next subscription uses what was found.
    ///
    /// # Cancellation
    /// Safe to drop, as [`describe_or_register`] is.
    pub(crate) async fn refresh(&self, kinesis: &aws_sdk_kinesis::Client) {
        match describe_or_register(kinesis, &self.stream_arn, &self.name).await {
            Ok(ConsumerState::Active(arn)) => {
                let mut current = self.arn.write().expect("not poisoned");
                if *current != arn {
                    tracing::warn!(consumer = %self.name, %arn, "the stream consumer was deregistered and is registered again; subscribing with its new ARN");
                    *current = arn;
                }
            }
            Ok(ConsumerState::NotYet(why)) => {
                tracing::warn!(consumer = %self.name, %why, "the stream consumer was not found; it is being registered again")
            }
            Err(e) => {
                tracing::warn!(consumer = %self.name, error = %e, "could not look the stream consumer up again")
            }
        }
    }
}

/// What one look found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConsumerState {
    /// Ready for subscriptions: its ARN.
    Active(String),
    /// Not ready yet: why, to log.
    NotYet(String),
}

/// One look at the consumer `name` of the stream `stream_arn`, registering it when
/// missing.
///
/// # Cancellation
/// Safe to drop: a registration already sent completes on the service's side, and the
/// next look finds it.
///
/// # Errors
/// [`Error::Kinesis`] for a failed call (its `retryable` says whether looking again may
/// help; access denied and validation errors are final).
pub(crate) async fn describe_or_register(
    kinesis: &aws_sdk_kinesis::Client,
    stream_arn: &str,
    name: &str,
) -> Result<ConsumerState, Error> {
    ::metrics::counter!(m::KINESIS_CALLS, "operation" => "DescribeStreamConsumer").increment(1);
    let described = kinesis
        .describe_stream_consumer()
        .stream_arn(stream_arn)
        .consumer_name(name)
        .send()
        .await;
    match described {
        Ok(out) => {
            let Some(consumer) = out.consumer_description() else {
                return Ok(ConsumerState::NotYet(format!(
                    "DescribeStreamConsumer answered without a description of {name}"
                )));
            };
            Ok(state_of(
                name,
                consumer.consumer_status(),
                consumer.consumer_arn(),
            ))
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_not_found_exception()) =>
        {
            register(kinesis, stream_arn, name).await
        }
        Err(e) => Err(Error::kinesis("DescribeStreamConsumer", name, &e)),
    }
}

/// What a consumer's status means for a worker about to subscribe.
fn state_of(name: &str, status: &ConsumerStatus, arn: &str) -> ConsumerState {
    match status {
        ConsumerStatus::Active => ConsumerState::Active(arn.to_owned()),
        ConsumerStatus::Creating => ConsumerState::NotYet(format!(
            "stream consumer {name} is CREATING; waiting until ACTIVE"
        )),
        ConsumerStatus::Deleting => ConsumerState::NotYet(format!(
            "stream consumer {name} is being deleted; it is registered again once gone"
        )),
        other => ConsumerState::NotYet(format!(
            "stream consumer {name} has an unknown status {:?}; waiting for ACTIVE",
            other.as_str()
        )),
    }
}

/// `RegisterStreamConsumer` for `name`: registered (now `CREATING`), or being registered by
/// another worker at the same time; either way looked at again.
async fn register(
    kinesis: &aws_sdk_kinesis::Client,
    stream_arn: &str,
    name: &str,
) -> Result<ConsumerState, Error> {
    ::metrics::counter!(m::KINESIS_CALLS, "operation" => "RegisterStreamConsumer").increment(1);
    match kinesis
        .register_stream_consumer()
        .stream_arn(stream_arn)
        .consumer_name(name)
        .send()
        .await
    {
        Ok(out) => {
            tracing::info!(
                consumer = name,
                stream = stream_arn,
                "registered the stream consumer"
            );
            Ok(match out.consumer() {
                Some(c) => state_of(name, c.consumer_status(), c.consumer_arn()),
                None => ConsumerState::NotYet(format!("registered stream consumer {name}")),
            })
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_in_use_exception()) =>
        {
            Ok(ConsumerState::NotYet(format!(
                "stream consumer {name} is being registered by another worker"
            )))
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_limit_exceeded_exception()) =>
        {
            // Either too many registrations per second (wait), or the stream's quota of
            // registered consumers is used up (waiting will not help).
            match registered_consumers(kinesis, stream_arn).await {
                Ok(n) if n >= MAX_CONSUMERS_PER_STREAM => Err(Error::Kinesis {
                    operation: "RegisterStreamConsumer",
                    target: name.to_owned(),
                    message: format!(
                        "LimitExceededException: the stream has {n} registered consumers, the \
                         most Kinesis allows; deregister one (kinesis-cat stream consumers \
                         list / deregister) or read by polling"
                    ),
                    retryable: false,
                    throttled: false,
                }),
                _ => Ok(ConsumerState::NotYet(format!(
                    "registering stream consumer {name} was throttled"
                ))),
            }
        }
        Err(e) => Err(Error::kinesis("RegisterStreamConsumer", name, &e)),
    }
}

/// Registered consumers a stream may have (AWS: *Kinesis Data Streams quotas*).
const MAX_CONSUMERS_PER_STREAM: usize = 20;

/// How many consumers of `stream_arn` are registered and not being deleted (the first page
/// of `ListStreamConsumers`, which holds up to 100: more than the quota).
async fn registered_consumers(
    kinesis: &aws_sdk_kinesis::Client,
    stream_arn: &str,
) -> Result<usize, Error> {
    ::metrics::counter!(m::KINESIS_CALLS, "operation" => "ListStreamConsumers").increment(1);
    let out = kinesis
        .list_stream_consumers()
        .stream_arn(stream_arn)
        .send()
        .await
        .map_err(|e| Error::kinesis("ListStreamConsumers", stream_arn, &e))?;
    Ok(out
        .consumers()
        .iter()
        .filter(|c| c.consumer_status() != &ConsumerStatus::Deleting)
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_active_consumer_is_ready() {
        assert_eq!(
            state_of("c", &ConsumerStatus::Active, "arn:c"),
            ConsumerState::Active("arn:c".into())
        );
        for status in [
            ConsumerStatus::Creating,
            ConsumerStatus::Deleting,
            ConsumerStatus::from("SOMETHING_NEW"),
        ] {
            let state = state_of("c", &status, "arn:c");
            assert!(
                matches!(&state, ConsumerState::NotYet(why) if why.contains("stream consumer c")),
                "{status:?}: {state:?}"
            );
        }
    }
}
