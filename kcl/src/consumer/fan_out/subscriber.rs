//! The subscriber task of one fan-out shard consumer: `SubscribeToShard` after
//! `SubscribeToShard`, each event's new records into the consumer's channel.
//!
//! ```text
//!  loop ─▶ subscribe(Continuation::position) ─ok─▶ session: events ─▶ accept ─▶ channel
//!   ▲            │ refused                              │ ends with
//!   │            ▼                                      ▼
//!   │     ResourceNotFound and the shard is gone ─▶ end batch, stop
//!   │     otherwise: a failure                    Ended (shard end sent) / Closed ─▶ stop
//!   │                                             Renew (renew_after passed) / Completed
//!   ├── at once (a session that delivered events) ◀──┘  (the server ended it)
//!   └── after the next backoff delay ◀── failure, idle, or a session with no event
//! ```

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::event_stream::EventReceiver;
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use aws_sdk_kinesis::types::{
    ShardIteratorType, StartingPosition as KinesisPosition, SubscribeToShardEventStream,
};
use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::continuation::{Continuation, SubscribePosition};
use super::{FanOutConfig, StreamConsumer};
use crate::consumer::{Batch, StartingPosition};
use crate::error::Error;
use crate::metric_names as m;
use crate::stream_address::StreamAddress;
use std::sync::Arc;

/// The operation name in errors and metrics.
const SUBSCRIBE: &str = "SubscribeToShard";

/// Pauses before subscribing again after a failure: 250 ms doubling up to 10 s, each plus
/// up to as much again of jitter; endless, started again by a session that delivered events.
/// The first pauses wait out the `ResourceInUseException` Kinesis answers within 5 s of a
/// successful call.
fn resubscribe_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(std::time::Duration::from_millis(250))
        .with_max_delay(std::time::Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
}

/// Why a subscription is made, for the subscriptions metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The shard consumer's first.
    Start,
    /// The one before ran its course (renewed, or ended by the server).
    Renewal,
    /// The one before failed, or went silent.
    AfterError,
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Renewal => "renewal",
            Reason::AfterError => "after_error",
        }
    }
}

/// How one subscription ended.
#[derive(Debug)]
enum SessionEnd {
    /// The shard's end was handed on: the task is done.
    Ended,
    /// The consumer dropped its receiver: the task is done.
    Closed,
    /// `renew_after` passed; `events` were received.
    Renew { events: usize },
    /// The server ended the event stream; `events` were received.
    Completed { events: usize },
    /// The call was refused, the stream failed, or it went silent: the error, the label it
    /// is counted under, and the events received before (a subscription that worked for a
    /// while starts the backoff over).
    Failed {
        error: Error,
        code: String,
        events: usize,
    },
    /// The shard is no longer in the stream (trimmed): it is finished.
    ShardGone,
}

/// Reads one shard for one shard consumer; see the module docs.
#[derive(Debug)]
pub(super) struct Subscriber {
    /// Kinesis client of the calls.
    pub(super) kinesis: aws_sdk_kinesis::Client,
    /// The stream, for the shard-gone check.
    pub(super) stream: StreamAddress,
    /// The registered consumer subscribed for.
    pub(super) consumer: Arc<StreamConsumer>,
    /// The shard read.
    pub(super) shard_id: String,
    /// Where the lease said to start.
    pub(super) start: StartingPosition,
    /// Renewal, idle timeout (the buffer is the channel's capacity).
    pub(super) config: FanOutConfig,
}

impl Subscriber {
    /// Subscribes into `tx` until the shard ends, `tx`'s receiver is dropped, or `stop`.
    pub(super) async fn run(self, tx: mpsc::Sender<Batch>, stop: CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = self.read(tx) => {}
        }
    }

    /// The loop of subscriptions; see the module docs.
    async fn read(&self, tx: mpsc::Sender<Batch>) {
        let mut ledger = Continuation::new(self.start.clone());
        let mut errors = resubscribe_backoff().build();
        let mut reason = Reason::Start;
        loop {
            ::metrics::counter!(m::FANOUT_SUBSCRIPTIONS, "shard" => self.shard_id.clone(), "reason" => reason.label()).increment(1);
            ::metrics::counter!(m::KINESIS_CALLS, "operation" => SUBSCRIBE).increment(1);
            let position = ledger.position();
            tracing::debug!(?position, reason = reason.label(), "subscribing");
            let session = match self.subscribe(&position).await {
                Ok(events) => self.session(events, &mut ledger, &tx).await,
                Err(end) => end,
            };
            let pause = match session {
                SessionEnd::Ended | SessionEnd::Closed => return,
                SessionEnd::ShardGone => {
                    tracing::info!("shard no longer in the stream: shard end");
                    let _ = tx.send(Batch::shard_gone()).await;
                    return;
                }
                SessionEnd::Renew { events } | SessionEnd::Completed { events } if events > 0 => {
                    reason = Reason::Renewal;
                    errors = resubscribe_backoff().build();
                    None
                }
                SessionEnd::Renew { .. } | SessionEnd::Completed { .. } => {
                    // Ended before a single event: do not call again at once.
                    reason = Reason::Renewal;
                    errors.next()
                }
                SessionEnd::Failed {
                    error,
                    code,
                    events,
                } => {
                    if events > 0 {
                        errors = resubscribe_backoff().build();
                    }
                    if code == "ResourceNotFoundException" {
                        // Not the shard (that was checked): the consumer is gone, or was
                        // registered again under another ARN.
                        self.consumer.refresh(&self.kinesis).await;
                    }
                    ::metrics::counter!(m::FANOUT_SUBSCRIPTION_ERRORS, "shard" => self.shard_id.clone(), "code" => code.clone())
                        .increment(1);
                    let delay = errors.next();
                    if error.is_retryable() || code == "ResourceInUseException" {
                        tracing::warn!(%error, %code, retry_in = ?delay, "subscription failed; subscribing again");
                    } else {
                        tracing::error!(%error, %code, retry_in = ?delay, "subscription failed and may keep failing; subscribing again");
                    }
                    reason = Reason::AfterError;
                    delay
                }
            };
            if let Some(delay) = pause {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// One `SubscribeToShard` call at `position`, with stalled-stream protection off (an
    /// event stream is quiet between pushes).
    async fn subscribe(
        &self,
        position: &SubscribePosition,
    ) -> Result<
        EventReceiver<SubscribeToShardEventStream, SubscribeToShardEventStreamError>,
        SessionEnd,
    > {
        let no_stall_check = aws_sdk_kinesis::config::Builder::default().stalled_stream_protection(
            aws_sdk_kinesis::config::StalledStreamProtectionConfig::disabled(),
        );
        let call = self
            .kinesis
            .subscribe_to_shard()
            .consumer_arn(self.consumer.arn())
            .shard_id(&self.shard_id)
            .starting_position(kinesis_position(position))
            .customize()
            .config_override(no_stall_check)
            .send();
        // The answer is only complete with the stream's first frame, which no SDK timeout
        // waits for: a server that sends its headers and then nothing is given up on here.
        let Ok(answer) = tokio::time::timeout(self.config.idle_timeout, call).await else {
            return Err(SessionEnd::Failed {
                error: self.idle_error("no answer"),
                code: "idle".to_owned(),
                events: 0,
            });
        };
        match answer {
            Ok(out) => Ok(out.event_stream),
            Err(e) => {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception());
                if not_found && self.shard_gone().await {
                    return Err(SessionEnd::ShardGone);
                }
                let code = e.code().unwrap_or("no_answer").to_owned();
                Err(SessionEnd::Failed {
                    error: Error::kinesis(SUBSCRIBE, &self.shard_id, &e),
                    code,
                    events: 0,
                })
            }
        }
    }

    /// Reads the events of one subscription into `tx`; see [`SessionEnd`].
    async fn session(
        &self,
        mut events: EventReceiver<SubscribeToShardEventStream, SubscribeToShardEventStreamError>,
        ledger: &mut Continuation,
        tx: &mpsc::Sender<Batch>,
    ) -> SessionEnd {
        let renew_at = Instant::now() + self.config.renew_after;
        let mut received = 0usize;
        loop {
            let next = tokio::select! {
                _ = tokio::time::sleep_until(renew_at) => {
                    return SessionEnd::Renew { events: received };
                }
                next = tokio::time::timeout(self.config.idle_timeout, events.recv()) => next,
            };
            let event = match next {
                Err(_) => {
                    return SessionEnd::Failed {
                        error: self.idle_error("no event"),
                        code: "idle".to_owned(),
                        events: received,
                    };
                }
                Ok(Err(e)) => {
                    let code = event_stream_error_code(&e);
                    return SessionEnd::Failed {
                        error: Error::kinesis_event_stream(SUBSCRIBE, &self.shard_id, &e),
                        code,
                        events: received,
                    };
                }
                Ok(Ok(None)) => return SessionEnd::Completed { events: received },
                Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)))) => event,
                Ok(Ok(Some(other))) => {
                    ::metrics::counter!(m::FANOUT_MALFORMED, "shard" => self.shard_id.clone())
                        .increment(1);
                    tracing::warn!(event = ?other, "skipped an event of an unknown kind");
                    continue;
                }
            };
            received += 1;
            ::metrics::counter!(m::FANOUT_EVENTS, "shard" => self.shard_id.clone()).increment(1);
            ::metrics::counter!(m::FANOUT_RECORDS, "shard" => self.shard_id.clone())
                .increment(event.records.len() as u64);
            let bytes: usize = event.records.iter().map(|r| r.data.as_ref().len()).sum();
            ::metrics::counter!(m::FANOUT_BYTES, "shard" => self.shard_id.clone())
                .increment(bytes as u64);
            let accepted = ledger.accept(event, Instant::now());
            if accepted.replayed > 0 {
                ::metrics::counter!(m::FANOUT_RECORDS_REPLAYED, "shard" => self.shard_id.clone())
                    .increment(accepted.replayed as u64);
                tracing::debug!(
                    replayed = accepted.replayed,
                    "dropped records sent again at or before what was delivered"
                );
            }
            if accepted.malformed > 0 {
                ::metrics::counter!(m::FANOUT_MALFORMED, "shard" => self.shard_id.clone())
                    .increment(accepted.malformed as u64);
                tracing::warn!(
                    records = accepted.malformed,
                    "dropped records whose sequence number is not a number"
                );
            }
            if !accepted.worth_sending() {
                continue;
            }
            let end = accepted.batch.end.is_some();
            if tx.send(accepted.batch).await.is_err() {
                return SessionEnd::Closed;
            }
            if end {
                tracing::debug!("shard end reached");
                return SessionEnd::Ended;
            }
        }
    }

    /// The error of a subscription that stayed silent for `idle_timeout`: `what` did not
    /// come.
    fn idle_error(&self, what: &str) -> Error {
        Error::Kinesis {
            operation: SUBSCRIBE,
            target: self.shard_id.clone(),
            message: format!("{what} for {:?} (idle_timeout)", self.config.idle_timeout),
            retryable: true,
            throttled: false,
        }
    }

    /// Whether the shard is gone from the stream, asked after a `ResourceNotFoundException`
    /// (which may also mean the consumer is gone): `GetShardIterator` finds no shard, or
    /// gives no iterator. Any other answer or failure: not known to be gone.
    async fn shard_gone(&self) -> bool {
        ::metrics::counter!(m::KINESIS_CALLS, "operation" => "GetShardIterator").increment(1);
        match self
            .kinesis
            .get_shard_iterator()
            .set_stream_name(self.stream.stream_name_param())
            .set_stream_arn(self.stream.stream_arn_param())
            .shard_id(&self.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
        {
            Ok(out) => out.shard_iterator().is_none(),
            Err(e) => e
                .as_service_error()
                .is_some_and(|se| se.is_resource_not_found_exception()),
        }
    }
}

/// The error code of an event-stream failure: the exception the service sent in the stream
/// (which the SDK does not expose as a code), or `stream_broken` when the stream itself
/// failed.
fn event_stream_error_code<R>(
    e: &aws_sdk_kinesis::error::SdkError<SubscribeToShardEventStreamError, R>,
) -> String {
    let Some(se) = e.as_service_error() else {
        return "stream_broken".to_owned();
    };
    let known = [
        (
            se.is_resource_not_found_exception(),
            "ResourceNotFoundException",
        ),
        (se.is_resource_in_use_exception(), "ResourceInUseException"),
        (
            se.is_internal_failure_exception(),
            "InternalFailureException",
        ),
        (se.is_kms_throttling_exception(), "KMSThrottlingException"),
        (se.is_kms_disabled_exception(), "KMSDisabledException"),
        (
            se.is_kms_invalid_state_exception(),
            "KMSInvalidStateException",
        ),
        (
            se.is_kms_access_denied_exception(),
            "KMSAccessDeniedException",
        ),
        (se.is_kms_not_found_exception(), "KMSNotFoundException"),
        (se.is_kms_opt_in_required(), "KMSOptInRequired"),
    ];
    known
        .iter()
        .find(|(is, _)| *is)
        .map(|(_, code)| (*code).to_owned())
        .or_else(|| se.code().map(str::to_owned))
        .unwrap_or_else(|| "stream_broken".to_owned())
}

/// The `StartingPosition` of a `SubscribeToShard` call at `position`.
fn kinesis_position(position: &SubscribePosition) -> KinesisPosition {
    let (kind, sequence, timestamp) = match position {
        SubscribePosition::Start(StartingPosition::TrimHorizon) => {
            (ShardIteratorType::TrimHorizon, None, None)
        }
        SubscribePosition::Start(StartingPosition::Latest) => {
            (ShardIteratorType::Latest, None, None)
        }
        SubscribePosition::Start(StartingPosition::AtTimestamp(t)) => (
            ShardIteratorType::AtTimestamp,
            None,
            Some(aws_sdk_kinesis::primitives::DateTime::from(*t)),
        ),
        // AT, not AFTER: later sub-records of the checkpointed aggregate are due.
        SubscribePosition::Start(StartingPosition::AtSequence(s)) => {
            (ShardIteratorType::AtSequenceNumber, Some(s.as_str()), None)
        }
        // AFTER the continuation too, as the Java KCL reconnects: Kinesis' continuation is
        // the position already reached.
        SubscribePosition::After(s) | SubscribePosition::AfterContinuation(s) => (
            ShardIteratorType::AfterSequenceNumber,
            Some(s.as_str()),
            None,
        ),
    };
    KinesisPosition::builder()
        .r#type(kind)
        .set_sequence_number(sequence.map(str::to_owned))
        .set_timestamp(timestamp)
        .build()
        .expect("the type, the one required field, is set")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::checkpoint::SequenceNumber;

    #[test]
    fn positions_map_to_the_subscribe_starting_position() {
        let seq = SequenceNumber::parse("42").unwrap();
        let p = kinesis_position(&SubscribePosition::After(seq.clone()));
        assert_eq!(
            (p.r#type(), p.sequence_number()),
            (&ShardIteratorType::AfterSequenceNumber, Some("42"))
        );
        let p = kinesis_position(&SubscribePosition::AfterContinuation(seq.clone()));
        assert_eq!(
            (p.r#type(), p.sequence_number()),
            (&ShardIteratorType::AfterSequenceNumber, Some("42"))
        );
        let p = kinesis_position(&SubscribePosition::Start(StartingPosition::AtSequence(seq)));
        assert_eq!(
            (p.r#type(), p.sequence_number()),
            (&ShardIteratorType::AtSequenceNumber, Some("42"))
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let p = kinesis_position(&SubscribePosition::Start(StartingPosition::AtTimestamp(t)));
        assert_eq!(p.r#type(), &ShardIteratorType::AtTimestamp);
        assert_eq!(p.timestamp().map(|d| d.secs()), Some(1_700_000_000));
        for (start, kind) in [
            (
                StartingPosition::TrimHorizon,
                ShardIteratorType::TrimHorizon,
            ),
            (StartingPosition::Latest, ShardIteratorType::Latest),
        ] {
            let p = kinesis_position(&SubscribePosition::Start(start));
            assert_eq!((p.r#type(), p.sequence_number()), (&kind, None));
        }
    }

    #[test]
    fn resubscriptions_back_off_without_end() {
        let delays: Vec<Duration> = resubscribe_backoff().build().take(12).collect();
        assert_eq!(delays.len(), 12);
        // Jitter adds up to as much again.
        assert!(delays[0] >= Duration::from_millis(250) && delays[0] <= Duration::from_millis(500));
        assert!(delays[11] >= Duration::from_secs(10) && delays[11] <= Duration::from_secs(20));
    }
}
