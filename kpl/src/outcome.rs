//! The one outcome every accepted record ends in, and the future that carries it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::FailureReason;
use crate::record::ProducerRecord;

/// A record Kinesis accepted, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The stream it was put to.
    pub stream: Arc<str>,
    /// The shard that holds it.
    pub shard_id: Arc<str>,
    /// The Kinesis record's sequence number (shared by all user records of an aggregate).
    pub sequence_number: Arc<str>,
    /// The user record's position inside its aggregate; 0 when it was sent alone. With
    /// the sequence number, it is what a consumer checkpoints.
    pub sub_sequence_number: u64,
    /// Whether it travelled inside an aggregate of several user records.
    pub aggregated: bool,
    /// `PutRecords` calls that carried it, the successful one included.
    pub attempts: u32,
}

/// One failed try at delivering a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Time from `put` to the moment the failure was known.
    pub elapsed: Duration,
    /// The error code (`ProvisionedThroughputExceededException`, `InternalFailure`, a
    /// transport error's kind, or `WrongShardAfterReshard` when an aggregate landed in a
    /// shard that does not own this record's hash key and the record had to be re-sent).
    pub code: String,
    /// The message that came with it.
    pub message: String,
    /// Whether it was throttling.
    pub throttled: bool,
}

/// A record the producer could not deliver: the reason, every attempt, and the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record for stream {stream:?} not delivered after {} attempt(s): {reason}", attempts.len())]
pub struct Failed {
    /// The stream it was meant for.
    pub stream: Arc<str>,
    /// Why the producer gave up.
    pub reason: FailureReason,
    /// The failed attempts, oldest first (the last one's error is the final one).
    pub attempts: Vec<Attempt>,
    /// The record, handed back so it can be sent elsewhere. `None` only if the producer's
    /// background task was torn down without settling it (the runtime shutting down).
    pub record: Option<Box<ProducerRecord>>,
}

/// The outcome of one record.
pub type Outcome = Result<Delivered, Failed>;

/// Resolves to the record's one outcome. Returned by [`Producer::put`](crate::Producer::put).
///
/// Dropping the handle does not cancel the record: it is still delivered (or fails), and
/// only the notification is lost.
#[derive(Debug)]
#[must_use = "the handle is how you learn whether the record was delivered"]
pub struct PutHandle {
    /// Settled by the producer's pipeline exactly once.
    rx: oneshot::Receiver<Outcome>,
    /// For the error when the pipeline vanished without settling.
    stream: Arc<str>,
}

impl PutHandle {
    pub(crate) fn new(rx: oneshot::Receiver<Outcome>, stream: Arc<str>) -> Self {
        PutHandle { rx, stream }
    }
}

impl Future for PutHandle {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(outcome)) => Poll::Ready(outcome),
            Poll::Ready(Err(_)) => Poll::Ready(Err(Failed {
                stream: self.stream.clone(),
                reason: FailureReason::ShutDown,
                attempts: Vec::new(),
                record: None,
            })),
        }
    }
}
