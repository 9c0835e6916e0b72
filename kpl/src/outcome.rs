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
    /// The error code (`ProvisionedThroughputExceededException`, `InternalFailure`, one
    /// of the codes the producer gives errors with no answer, listed on
    /// [`CallFailure::code`](crate::CallFailure::code), or `WrongShardAfterReshard` when
    /// the record's aggregate landed in a shard that does not own every record of it, and
    /// the record was re-sent with all the others).
    pub code: String,
    /// The message that came with it: Kinesis' own message, or a short cause chain for
    /// an error with no answer (at most about 256 bytes; never the SDK's debug detail or
    /// HTTP headers, which are logged at `debug` level).
    pub message: String,
    /// Whether it was throttling.
    pub throttled: bool,
}

/// A record the producer could not deliver: the reason, every attempt, and the record.
///
/// Its display says the reason and, when the record was sent at least once, the last
/// attempt's error, e.g. `record for stream "s" not delivered after 12 attempt(s): record
/// TTL of 30s expired before delivery; last error: DispatchFailure: io error: Connection
/// refused (os error 111)`. The last error is left out when the reason already says it
/// (a [`FailureReason::Rejected`] with the same code and message).
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Failed {
    /// The last failed attempt (the most recent error), if the record was sent at all.
    pub fn last_attempt(&self) -> Option<&Attempt> {
        self.attempts.last()
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record for stream {:?} not delivered after {} attempt(s): {}",
            self.stream,
            self.attempts.len(),
            self.reason
        )?;
        let Some(last) = self.last_attempt() else {
            return Ok(());
        };
        let said = matches!(
            &self.reason,
            FailureReason::Rejected { code, message } if *code == last.code && *message == last.message
        );
        if !said {
            write!(f, "; last error: {}: {}", last.code, last.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Failed {}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(code: &str, message: &str) -> Attempt {
        Attempt {
            elapsed: Duration::from_millis(5),
            code: code.to_owned(),
            message: message.to_owned(),
            throttled: false,
        }
    }

    fn failed(reason: FailureReason, attempts: Vec<Attempt>) -> Failed {
        Failed {
            stream: Arc::from("s"),
            reason,
            attempts,
            record: None,
        }
    }

    #[test]
    fn the_display_names_the_last_error_once() {
        let refused = attempt(
            "DispatchFailure",
            "io error: Connection refused (os error 111)",
        );
        let expired = failed(
            FailureReason::Expired {
                ttl: Duration::from_secs(30),
            },
            vec![attempt("InternalFailure", "boom"), refused.clone()],
        );
        assert_eq!(expired.last_attempt(), Some(&refused));
        assert_eq!(
            expired.to_string(),
            "record for stream \"s\" not delivered after 2 attempt(s): record TTL of 30s \
             expired before delivery; last error: DispatchFailure: io error: Connection \
             refused (os error 111)"
        );
        // A rejection already says its error.
        let missing = attempt("ResourceNotFoundException", "Stream s not found.");
        let rejected = failed(
            FailureReason::Rejected {
                code: missing.code.clone(),
                message: missing.message.clone(),
            },
            vec![missing],
        );
        let text = rejected.to_string();
        assert_eq!(text.matches("Stream s not found.").count(), 1, "{text}");
        // Never sent: nothing more to say.
        let never = failed(FailureReason::ShutDown, Vec::new());
        assert_eq!(never.last_attempt(), None);
        assert!(!never.to_string().contains("last error"));
    }
}
