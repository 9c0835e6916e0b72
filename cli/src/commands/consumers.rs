//! `kinesis-cat stream consumers ...`: the enhanced fan-out stream consumers registered on a
//! stream (what `consume --efo` reads through), listed, registered and deregistered.
//!
//! ```text
//!  --stream S ─ DescribeStreamSummary ─▶ stream ARN (missing stream: status 3, with a hint)
//!     list        ListStreamConsumers (paged) ─▶ NAME \t STATUS \t ARN \t CREATED, by name
//!     register    RegisterStreamConsumer ─┬─ ok ──────────────────────────────┐
//!                                         └─ ResourceInUse ─ DescribeStreamConsumer
//!                                              CREATING / ACTIVE: "already registered" ─┤
//!                                              DELETING: wait until gone, register again
//!                 DescribeStreamConsumer every 250 ms … 5 s until ACTIVE ◀─────────────┘
//!                 (at most --wait-secs) ─▶ the consumer ARN on stdout
//!     deregister  DeregisterStreamConsumer ─ ResourceNotFound ─▶ status 3
//!                 [--wait] DescribeStreamConsumer until ResourceNotFound (at most --wait-secs)
//! ```
//!
//! A registered consumer costs money per shard and hour while it exists, whether anything
//! reads through it or not; `consume --efo` registers one when missing and never removes
//! it, so `deregister` is how it goes. Messages go to standard error; standard output
//! carries only the results (the list, the ARN, what was deregistered), for scripts.

use std::io::Write;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::{ConsumerDescription, ConsumerStatus};
use aws_sdk_kinesis::Client;
use backon::{BackoffBuilder, ExponentialBuilder};
use clap::Subcommand;

use crate::error::FailureKind;
use crate::retry::RetryPolicy;
use crate::{args, Error};

/// The `stream consumers` subcommands.
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum ConsumersAction {
    /// List the stream consumers registered on a stream, one per line: name, status,
    /// ARN and creation time (RFC 3339, UTC), separated by tabs, sorted by name, without
    /// a header (as `stream list`).
    #[command(after_help = crate::help::CONSUMERS_LIST)]
    List {
        /// Stream name.
        #[arg(short, long, value_parser = args::stream_name)]
        stream: String,
    },
    /// Register a stream consumer and wait until it is ACTIVE (at most --wait-secs); print
    /// its ARN. Already registered: says so on standard error, waits for ACTIVE and
    /// succeeds.
    ///
    /// AWS charges for each registered consumer per shard and hour until it is
    /// deregistered; at most 20 can be registered on a stream.
    #[command(after_help = crate::help::CONSUMERS_REGISTER)]
    Register {
        /// Stream name.
        #[arg(short, long, value_parser = args::stream_name)]
        stream: String,
        /// Stream consumer name: 1 to 128 characters of a-z A-Z 0-9 _ . -
        /// (`consume --efo` uses its --consumer-name, else its --app name).
        #[arg(value_parser = args::consumer_name)]
        name: String,
    },
    /// Deregister a stream consumer (its subscriptions end). Not registered: exit status 3.
    #[command(after_help = crate::help::CONSUMERS_DEREGISTER)]
    Deregister {
        /// Stream name.
        #[arg(short, long, value_parser = args::stream_name)]
        stream: String,
        /// Stream consumer name.
        #[arg(value_parser = args::consumer_name)]
        name: String,
        /// Wait until it is gone (at most --wait-secs) instead of returning while it is
        /// DELETING. Default: off.
        #[arg(long)]
        wait: bool,
    },
}

/// Runs a `stream consumers` subcommand; waits are bounded by `wait`.
///
/// # Cancellation
/// Dropping the future stops waiting; a registration or deregistration already sent goes
/// ahead in Kinesis.
///
/// # Errors
/// [`Error::Kinesis`] / [`Error::GaveUp`] for failed calls (a missing stream exits with
/// status 3), [`Error::ConsumerNotFound`] when deregistering a consumer that is not
/// registered, [`Error::ConsumerWaitTimedOut`] when `wait` runs out, [`Error::Output`].
pub async fn run(
    client: &Client,
    action: ConsumersAction,
    wait: Duration,
    out: &mut impl Write,
) -> Result<(), Error> {
    match action {
        ConsumersAction::List { stream } => {
            let arn = stream_arn(client, &stream).await?;
            let mut consumers = list_all(client, &stream, &arn).await?;
            consumers.sort_by(|a, b| a.consumer_name().cmp(b.consumer_name()));
            let text: String = consumers
                .iter()
                .map(|c| {
                    line(
                        c.consumer_name(),
                        c.consumer_status(),
                        c.consumer_arn(),
                        c.consumer_creation_timestamp(),
                    )
                })
                .collect();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(Error::Output)
        }
        ConsumersAction::Register { stream, name } => {
            let deadline = deadline_after(wait);
            let arn = stream_arn(client, &stream).await?;
            let consumer = Consumer {
                client,
                stream: &stream,
                stream_arn: &arn,
                name: &name,
            };
            let consumer_arn = consumer.register(deadline, wait).await?;
            writeln!(out, "{consumer_arn}")
                .and_then(|()| out.flush())
                .map_err(Error::Output)
        }
        ConsumersAction::Deregister {
            stream,
            name,
            wait: wait_until_gone,
        } => {
            let deadline = deadline_after(wait);
            let arn = stream_arn(client, &stream).await?;
            let consumer = Consumer {
                client,
                stream: &stream,
                stream_arn: &arn,
                name: &name,
            };
            consumer.deregister().await?;
            let said = if wait_until_gone {
                consumer.wait_until_gone(deadline, wait).await?;
                format!("deregistered stream consumer {name} of stream {stream}: gone")
            } else {
                format!("deregistering stream consumer {name} of stream {stream}")
            };
            writeln!(out, "{said}")
                .and_then(|()| out.flush())
                .map_err(Error::Output)
        }
    }
}

/// `wait` from now; a wait too long for the clock is as good as forever (a century).
fn deadline_after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// One line of `list`: name, status, ARN and creation time, tab-separated.
fn line(
    name: &str,
    status: &ConsumerStatus,
    arn: &str,
    created: &aws_sdk_kinesis::primitives::DateTime,
) -> String {
    let created = created
        .fmt(aws_sdk_kinesis::primitives::DateTimeFormat::DateTime)
        .unwrap_or_else(|_| "-".to_owned());
    format!("{name}\t{}\t{arn}\t{created}\n", status.as_str())
}

/// The stream's ARN, which names it to the stream consumer calls.
///
/// # Errors
/// [`Error::Kinesis`] (a missing stream: not found, status 3, with a hint).
async fn stream_arn(client: &Client, stream: &str) -> Result<String, Error> {
    Ok(super::stream::summary(client, stream).await?.stream_arn)
}

/// Every consumer of the stream `arn`, following `NextToken`. A page that repeats its
/// token or is empty ends the listing (some emulators hand out a token that never moves).
///
/// # Errors
/// [`Error::Kinesis`] / [`Error::GaveUp`] when a `ListStreamConsumers` call fails.
async fn list_all(
    client: &Client,
    stream: &str,
    arn: &str,
) -> Result<Vec<aws_sdk_kinesis::types::Consumer>, Error> {
    let mut consumers = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = RetryPolicy::default()
            .run("ListStreamConsumers", stream, || {
                client
                    .list_stream_consumers()
                    .stream_arn(arn)
                    .set_next_token(token.clone())
                    .send()
            })
            .await?;
        consumers.extend(page.consumers().iter().cloned());
        match page.next_token() {
            Some(next)
                if !next.is_empty()
                    && !page.consumers().is_empty()
                    && token.as_deref() != Some(next) =>
            {
                token = Some(next.to_owned());
            }
            _ => return Ok(consumers),
        }
    }
}

/// A named consumer of one stream, and the client to call about it.
#[derive(Debug, Clone, Copy)]
struct Consumer<'a> {
    /// The Kinesis client.
    client: &'a Client,
    /// The stream's name (for messages).
    stream: &'a str,
    /// The stream's ARN (for the calls).
    stream_arn: &'a str,
    /// The consumer's name.
    name: &'a str,
}

/// Delays between looks at a consumer's status: 250 ms doubling to 5 s, with jitter.
fn poll_delays() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

impl Consumer<'_> {
    /// Registers the consumer (or finds it registered) and waits until it is ACTIVE, by
    /// `deadline`: its ARN.
    ///
    /// # Errors
    /// [`Error::Kinesis`] / [`Error::GaveUp`] for failed calls,
    /// [`Error::ConsumerWaitTimedOut`] past `deadline` (`wait` is its length, for the
    /// message).
    async fn register(&self, deadline: Instant, wait: Duration) -> Result<String, Error> {
        let mut delays = poll_delays();
        let mut said_deleting = false;
        loop {
            let sent = self
                .client
                .register_stream_consumer()
                .stream_arn(self.stream_arn)
                .consumer_name(self.name)
                .send()
                .await;
            let in_use = match sent {
                Ok(_) => {
                    crate::say!(
                        "kinesis-cat: registered stream consumer {} on stream {}; waiting until it is ACTIVE",
                        self.name,
                        self.stream
                    );
                    break;
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_resource_in_use_exception()) =>
                {
                    Error::kinesis("RegisterStreamConsumer", self.stream, e)
                }
                Err(e) => return Err(Error::kinesis("RegisterStreamConsumer", self.stream, e)),
            };
            // In use: registered already, being deleted, or the stream is not ACTIVE. What
            // to fail with if that lasts past the deadline:
            let give_up_with = match self.describe(deadline).await? {
                Some(c) if *c.consumer_status() != ConsumerStatus::Deleting => {
                    crate::say!(
                        "kinesis-cat: stream consumer {} is already registered on stream {} ({})",
                        self.name,
                        self.stream,
                        c.consumer_status().as_str()
                    );
                    break;
                }
                Some(c) => {
                    if !said_deleting {
                        crate::say!(
                            "kinesis-cat: stream consumer {} of stream {} is being deleted; registering it again once it is gone",
                            self.name,
                            self.stream
                        );
                        said_deleting = true;
                    }
                    let status = c.consumer_status().as_str().to_owned();
                    self.timed_out(status, "gone, to register it again", wait)
                }
                None => {
                    tracing::info!(stream = self.stream, error = %in_use, "the stream is busy; registering again");
                    in_use
                }
            };
            let delay = delays.next().unwrap_or(Duration::from_secs(5));
            if deadline.saturating_duration_since(Instant::now()) < delay {
                return Err(give_up_with);
            }
            tokio::time::sleep(delay).await;
        }
        self.wait_until_active(deadline, wait).await
    }

    /// Looks at the consumer until it is ACTIVE, by `deadline`: its ARN.
    ///
    /// # Errors
    /// [`Error::ConsumerNotFound`] when it disappears (deregistered meanwhile), failed
    /// calls, [`Error::ConsumerWaitTimedOut`] past `deadline`.
    async fn wait_until_active(&self, deadline: Instant, wait: Duration) -> Result<String, Error> {
        let mut delays = poll_delays();
        loop {
            let Some(c) = self.describe(deadline).await? else {
                return Err(self.not_found());
            };
            if *c.consumer_status() == ConsumerStatus::Active {
                return Ok(c.consumer_arn().to_owned());
            }
            let status = c.consumer_status().as_str().to_owned();
            tracing::debug!(consumer = self.name, %status, "waiting until ACTIVE");
            self.pause(&mut delays, deadline, status, "ACTIVE", wait)
                .await?;
        }
    }

    /// `DeregisterStreamConsumer` by stream ARN and name.
    ///
    /// # Errors
    /// [`Error::ConsumerNotFound`] when it is not registered, [`Error::Kinesis`] otherwise.
    async fn deregister(&self) -> Result<(), Error> {
        match self
            .client
            .deregister_stream_consumer()
            .stream_arn(self.stream_arn)
            .consumer_name(self.name)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Err(self.not_found())
            }
            Err(e) => Err(Error::kinesis("DeregisterStreamConsumer", self.stream, e)),
        }
    }

    /// Looks at the consumer until it is gone, by `deadline`.
    ///
    /// # Errors
    /// Failed calls, [`Error::ConsumerWaitTimedOut`] past `deadline`.
    async fn wait_until_gone(&self, deadline: Instant, wait: Duration) -> Result<(), Error> {
        let mut delays = poll_delays();
        while let Some(c) = self.describe(deadline).await? {
            let status = c.consumer_status().as_str().to_owned();
            self.pause(&mut delays, deadline, status, "gone", wait)
                .await?;
        }
        Ok(())
    }

    /// Sleeps the next of `delays`, or fails when that would pass `deadline`.
    ///
    /// # Errors
    /// [`Error::ConsumerWaitTimedOut`] with the last `status` seen.
    async fn pause(
        &self,
        delays: &mut impl Iterator<Item = Duration>,
        deadline: Instant,
        status: String,
        target: &'static str,
        wait: Duration,
    ) -> Result<(), Error> {
        let now = Instant::now();
        if now >= deadline {
            return Err(self.timed_out(status, target, wait));
        }
        let delay = delays
            .next()
            .unwrap_or(Duration::from_secs(5))
            .min(deadline - now);
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// One `DescribeStreamConsumer` (retryable failures retried until `deadline`, at least
    /// once): the consumer, or `None` when it is not registered.
    ///
    /// # Errors
    /// [`Error::Kinesis`] for a failure retrying cannot fix, [`Error::GaveUp`].
    async fn describe(&self, deadline: Instant) -> Result<Option<ConsumerDescription>, Error> {
        let retry = RetryPolicy {
            give_up_after: deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1)),
            ..RetryPolicy::default()
        };
        let described = retry
            .run("DescribeStreamConsumer", self.stream, || {
                self.client
                    .describe_stream_consumer()
                    .stream_arn(self.stream_arn)
                    .consumer_name(self.name)
                    .send()
            })
            .await;
        match described {
            Ok(out) => Ok(out.consumer_description().cloned()),
            Err(e)
                if e.service_failure()
                    .is_some_and(|f| f.kind == FailureKind::NotFound) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn not_found(&self) -> Error {
        Error::ConsumerNotFound {
            stream: self.stream.to_owned(),
            consumer: self.name.to_owned(),
        }
    }

    fn timed_out(&self, status: String, target: &'static str, wait: Duration) -> Error {
        Error::ConsumerWaitTimedOut {
            stream: self.stream.to_owned(),
            consumer: self.name.to_owned(),
            status,
            target,
            secs: wait.as_secs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::primitives::DateTime;

    #[test]
    fn list_lines_are_tab_separated_with_an_rfc3339_time() {
        let l = line(
            "billing",
            &ConsumerStatus::Active,
            "arn:aws:kinesis:us-east-1:1:stream/s/consumer/billing:1",
            &DateTime::from_secs(1_704_164_645),
        );
        assert_eq!(
            l,
            "billing\tACTIVE\tarn:aws:kinesis:us-east-1:1:stream/s/consumer/billing:1\t2024-01-02T03:04:05Z\n"
        );
    }

    #[test]
    fn any_wait_has_a_deadline() {
        let soon = deadline_after(Duration::from_secs(2));
        assert!(soon > Instant::now() && soon <= Instant::now() + Duration::from_secs(2));
        assert!(deadline_after(Duration::MAX) > Instant::now() + Duration::from_secs(86_400));
    }

    #[test]
    fn status_is_looked_at_more_slowly_up_to_5_s() {
        let d: Vec<Duration> = poll_delays().take(12).collect();
        assert!(d[0] >= Duration::from_millis(250) && d[0] <= Duration::from_millis(500));
        assert!(d.iter().all(|d| *d <= Duration::from_secs(10)), "{d:?}");
        assert!(d[11] >= Duration::from_secs(5), "{d:?}");
    }
}
