//! The outcomes of a batch put with [`Producer::put_all`](crate::Producer::put_all): one
//! shared completion for the whole batch instead of one channel per record.
//!
//! ```text
//!  put_all ─▶ BatchShared (outcomes pre-filled "lost", remaining = n) ◀── BatchHandle
//!     │ one BatchSlot per Item                                            ▲ polled
//!     ▼                                                                   │
//!  pipeline settles an Item ─▶ slot.send(outcome): outcomes[i] = outcome, remaining -= 1
//!  Item dropped unsettled   ─▶ slot dropped:       outcomes[i] stays "lost", remaining -= 1
//!                                  remaining == 0 ─▶ wake the handle ─┘
//! ```
//!
//! # Usage
//! ```no_run
//! # async fn demo(producer: kinesis_producer::Producer) -> Result<(), kinesis_producer::PutAllError> {
//! use kinesis_producer::ProducerRecord;
//!
//! let records = (0..500).map(|i| ProducerRecord::new("my-stream", format!("key-{i}"), "data"));
//! let batch = producer.put_all(records).await?;
//! for (i, outcome) in batch.await.into_iter().enumerate() {
//!     if let Err(failed) = outcome {
//!         eprintln!("record {i}: {failed}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::error::FailureReason;
use crate::outcome::{Failed, Outcome};

/// Resolves, once every record of a batch is settled, to each record's one outcome, in the
/// order the records were given to [`Producer::put_all`](crate::Producer::put_all).
///
/// Dropping the handle does not cancel the records: they are still delivered (or fail),
/// and only the notification is lost.
#[derive(Debug)]
#[must_use = "the handle is how you learn whether the records were delivered"]
pub struct BatchHandle {
    /// Shared with every record of the batch in the pipeline.
    shared: Arc<BatchShared>,
    /// The number of records, kept here so that `len` needs no lock.
    len: usize,
}

impl BatchHandle {
    /// A handle for the records whose streams are `streams`, in order, and the slots their
    /// outcomes go to (the same order).
    pub(crate) fn new(streams: impl ExactSizeIterator<Item = Arc<str>>) -> (Self, Vec<BatchSlot>) {
        let len = streams.len();
        let outcomes: Vec<Outcome> = streams.map(lost).collect();
        let shared = Arc::new(BatchShared {
            state: Mutex::new(State {
                outcomes,
                remaining: len,
                waker: None,
            }),
        });
        let slots = (0..len)
            .map(|index| BatchSlot {
                shared: shared.clone(),
                index,
                settled: false,
            })
            .collect();
        (BatchHandle { shared, len }, slots)
    }

    /// The number of records in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch has no records (its handle resolves at once).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records of the batch settled so far (delivered or failed).
    pub fn settled(&self) -> usize {
        self.len - self.shared.lock().remaining
    }
}

impl Future for BatchHandle {
    type Output = Vec<Outcome>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<Outcome>> {
        let mut state = self.shared.lock();
        if state.remaining == 0 {
            return Poll::Ready(std::mem::take(&mut state.outcomes));
        }
        match &mut state.waker {
            Some(w) => w.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The outcome a record has until it is settled: the one it keeps if the pipeline is torn
/// down without settling it (the runtime shutting down), as a [`PutHandle`](crate::PutHandle)
/// resolves then.
fn lost(stream: Arc<str>) -> Outcome {
    Err(Failed {
        stream,
        reason: FailureReason::ShutDown,
        attempts: Vec::new(),
        record: None,
    })
}

/// What a batch's records and its handle share.
#[derive(Debug)]
struct BatchShared {
    /// Locked once per settled record (by the pipeline task) and per poll of the handle.
    state: Mutex<State>,
}

impl BatchShared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
struct State {
    /// Each record's outcome, in input order; "lost" until settled.
    outcomes: Vec<Outcome>,
    /// Records not settled yet (a slot dropped unsettled counts as settled, as lost).
    remaining: usize,
    /// The task awaiting the handle, woken when `remaining` reaches 0.
    waker: Option<Waker>,
}

/// Where one record's outcome goes: its place in the batch. Settled exactly once, by
/// [`send`](BatchSlot::send), or, if dropped unsettled, left "lost".
#[derive(Debug)]
pub(crate) struct BatchSlot {
    /// The batch it belongs to.
    shared: Arc<BatchShared>,
    /// Its record's position in the batch.
    index: usize,
    /// Set by `send`, so that the drop does not count the record twice.
    settled: bool,
}

impl BatchSlot {
    /// Settles the record with `outcome`.
    pub(crate) fn send(mut self, outcome: Outcome) {
        self.settled = true;
        let waker = {
            let mut state = self.shared.lock();
            state.outcomes[self.index] = outcome;
            done_one(&mut state)
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for BatchSlot {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let waker = done_one(&mut self.shared.lock());
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// One more record settled: the waker to wake if it was the last.
fn done_one(state: &mut State) -> Option<Waker> {
    state.remaining -= 1;
    if state.remaining == 0 {
        state.waker.take()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outcome::Delivered;

    fn delivered(seq: &str) -> Outcome {
        Ok(Delivered {
            stream: Arc::from("s"),
            shard_id: Arc::from("shard-0"),
            sequence_number: Arc::from(seq),
            sub_sequence_number: 0,
            aggregated: false,
            attempts: 1,
        })
    }

    #[tokio::test]
    async fn outcomes_come_in_input_order_whatever_order_they_settle_in() {
        let (handle, mut slots) = BatchHandle::new((0..3).map(|_| Arc::from("s")));
        assert_eq!((handle.len(), handle.settled()), (3, 0));
        let last = slots.pop().unwrap();
        let middle = slots.pop().unwrap();
        let first = slots.pop().unwrap();
        last.send(delivered("2"));
        first.send(delivered("0"));
        assert_eq!(handle.settled(), 2);
        let waiting = tokio::spawn(handle);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished(), "one record is still unsettled");
        middle.send(delivered("1"));
        let outcomes = waiting.await.unwrap();
        assert_eq!(
            outcomes,
            vec![delivered("0"), delivered("1"), delivered("2")]
        );
    }

    #[tokio::test]
    async fn a_record_dropped_unsettled_ends_as_shut_down_and_the_others_keep_theirs() {
        let (handle, mut slots) = BatchHandle::new(["a", "b"].into_iter().map(Arc::from));
        let b = slots.pop().unwrap();
        drop(slots); // "a" is torn down unsettled
        b.send(delivered("1"));
        let outcomes = handle.await;
        assert_eq!(outcomes[1], delivered("1"));
        let lost = outcomes[0].as_ref().unwrap_err();
        assert_eq!(
            (&*lost.stream, &lost.reason, lost.record.is_none()),
            ("a", &FailureReason::ShutDown, true)
        );
    }

    #[tokio::test]
    async fn an_empty_batch_resolves_at_once() {
        let (handle, slots) = BatchHandle::new(std::iter::empty());
        assert!(slots.is_empty() && handle.is_empty());
        assert!(handle.await.is_empty());
    }
}
