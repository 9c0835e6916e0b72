//! The outcomes of a batch put with [`Producer::put_all`](crate::Producer::put_all): one
//! shared completion for the whole batch instead of one channel per record.
//!
//! ```text
//!  put_all ─▶ BatchShared (outcomes pre-filled "lost", remaining = n) ◀── BatchHandle
//!     │ one BatchSlot per Item                                            ▲ polled
//!     ▼                                                                   │
//!  pipeline settles an Item ─▶ slot.send(outcome): outcomes[i] = outcome, remaining -= 1
//!  Item dropped unsettled   ─▶ slot dropped:       outcomes[i] stays "lost", remaining -= 1
//!                                  remaining == 0 ─▶ wake the handle ─┘, release the batch's budget
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
use crate::pipeline::Budget;

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
    /// A handle for `len` records, whose streams are given as runs (`(end, stream)`: the
    /// records before index `end`, and after the previous run, are for `stream`); each
    /// record's outcome goes to its [`slot`](BatchHandle::slot).
    ///
    /// The batch's `budget` (one permit per record, its bytes) is held here, whole, and
    /// released when its last record is settled: one semaphore release per batch, instead
    /// of a share split off for each record and merged back as each settles.
    pub(crate) fn new(len: usize, streams: Vec<(usize, Arc<str>)>, budget: Option<Budget>) -> Self {
        debug_assert_eq!(streams.last().map_or(0, |(end, _)| *end), len);
        let mut outcomes = Vec::with_capacity(len);
        outcomes.resize_with(len, || None);
        let shared = Arc::new(BatchShared {
            state: Mutex::new(State {
                outcomes,
                remaining: len,
                waker: None,
                budget,
            }),
            streams,
        });
        BatchHandle { shared, len }
    }

    /// Where the outcome of the record at `index` goes. Exactly one slot must be made per
    /// record (a slot dropped unsettled counts its record as lost).
    pub(crate) fn slot(&self, index: usize) -> BatchSlot {
        debug_assert!(index < self.len);
        BatchSlot {
            shared: self.shared.clone(),
            index,
            settled: false,
        }
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
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.remaining == 0 {
            let outcomes = std::mem::take(&mut state.outcomes);
            drop(state);
            return Poll::Ready(shared.resolve(outcomes));
        }
        match &mut state.waker {
            Some(w) => w.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The outcome of a record dropped unsettled (the pipeline torn down, the runtime shutting
/// down), as a [`PutHandle`](crate::PutHandle) resolves then.
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
pub(crate) struct BatchShared {
    /// Locked once per run of the batch's records settled together (by the pipeline
    /// task), once per record dropped unsettled, and once per poll of the handle.
    state: Mutex<State>,
    /// The records' streams, as runs `(end, stream)`: only needed for records dropped
    /// unsettled, so kept once per run rather than once per record.
    streams: Vec<(usize, Arc<str>)>,
}

impl BatchShared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every record's outcome: its own, or "lost" (shut down) if it was dropped unsettled.
    fn resolve(&self, outcomes: Vec<Option<Outcome>>) -> Vec<Outcome> {
        let mut run = 0;
        outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                o.unwrap_or_else(|| {
                    while self.streams[run].0 <= i {
                        run += 1;
                    }
                    lost(self.streams[run].1.clone())
                })
            })
            .collect()
    }
}

#[derive(Debug)]
struct State {
    /// Each record's outcome, in input order; `None` until settled (and for good if the
    /// record was dropped unsettled: then it resolves as "lost").
    outcomes: Vec<Option<Outcome>>,
    /// Records not settled yet (a slot dropped unsettled counts as settled, as lost).
    remaining: usize,
    /// The task awaiting the handle, woken when `remaining` reaches 0.
    waker: Option<Waker>,
    /// The batch's memory budget, released when `remaining` reaches 0.
    budget: Option<Budget>,
}

impl State {
    /// `n` more records settled: if they were the last, the waker to wake and the budget
    /// to release (both outside the lock).
    fn done(&mut self, n: usize) -> Done {
        self.remaining -= n;
        if self.remaining == 0 {
            Done(self.waker.take(), self.budget.take())
        } else {
            Done(None, None)
        }
    }
}

/// What settling the last records of a batch leaves to do once its lock is released:
/// wake the handle, and give the budget back (dropping the permits).
struct Done(Option<Waker>, Option<Budget>);

impl Done {
    fn run(self) {
        drop(self.1);
        if let Some(w) = self.0 {
            w.wake();
        }
    }
}

/// Where one record's outcome goes: its place in the batch. Settled exactly once, by
/// [`send`](BatchSlot::send) or a [`BatchSettler`], or, if dropped unsettled, left "lost".
#[derive(Debug)]
pub(crate) struct BatchSlot {
    /// The batch it belongs to.
    shared: Arc<BatchShared>,
    /// Its record's position in the batch.
    index: usize,
    /// Set once settled, so that the drop does not count the record twice.
    settled: bool,
}

impl BatchSlot {
    /// Settles the record with `outcome` (one lock of its batch; see [`BatchSettler`] for
    /// many records at once).
    pub(crate) fn send(mut self, outcome: Outcome) {
        self.settled = true;
        let done = {
            let mut state = self.shared.lock();
            state.outcomes[self.index] = Some(outcome);
            state.done(1)
        };
        done.run();
    }
}

impl Drop for BatchSlot {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let done = self.shared.lock().done(1);
        done.run();
    }
}

/// Settles consecutive records of one batch together: one lock of the batch (and at most
/// one wake-up) per run instead of one per record. The records of an aggregate come mostly
/// in runs from one `put_all`.
///
/// ```text
///  push(slot, outcome) ─▶ same batch as the run? ─yes─▶ run += (index, outcome)
///                                               └no──▶ finish(run); new run
///  finish ─▶ lock once: outcomes[index] = outcome …, remaining -= run ─▶ 0? wake
/// ```
#[derive(Debug, Default)]
pub(crate) struct BatchSettler {
    /// The batch of the current run.
    current: Option<Arc<BatchShared>>,
    /// The run's outcomes by position (kept allocated between runs).
    outcomes: Vec<(usize, Outcome)>,
}

impl BatchSettler {
    /// Adds a record's outcome to the run (finishing the run of another batch first).
    pub(crate) fn push(&mut self, mut slot: BatchSlot, outcome: Outcome) {
        if !self
            .current
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, &slot.shared))
        {
            self.finish();
            self.current = Some(slot.shared.clone());
        }
        slot.settled = true;
        self.outcomes.push((slot.index, outcome));
    }

    /// Writes the current run's outcomes into its batch, waking its handle if they were
    /// the last. Must be called before the settler is left (or the run stays unsettled
    /// until the next `push` of another batch).
    pub(crate) fn finish(&mut self) {
        let Some(shared) = self.current.take() else {
            return;
        };
        let done = {
            let mut state = shared.lock();
            let n = self.outcomes.len();
            for (i, o) in self.outcomes.drain(..) {
                state.outcomes[i] = Some(o);
            }
            state.done(n)
        };
        done.run();
    }
}

impl Drop for BatchSettler {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outcome::Delivered;

    /// A batch and one slot per record.
    fn with_slots(len: usize, streams: Vec<(usize, Arc<str>)>) -> (BatchHandle, Vec<BatchSlot>) {
        let handle = BatchHandle::new(len, streams, None);
        let slots = (0..len).map(|i| handle.slot(i)).collect();
        (handle, slots)
    }

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
        let (handle, mut slots) = with_slots(3, vec![(3, Arc::from("s"))]);
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
        let (handle, mut slots) = with_slots(2, vec![(1, Arc::from("a")), (2, Arc::from("b"))]);
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
    async fn a_settler_writes_each_run_once_and_wakes_the_handle_after_the_last() {
        let (a, a_slots) = with_slots(3, vec![(3, Arc::from("s"))]);
        let (b, b_slots) = with_slots(2, vec![(2, Arc::from("s"))]);
        let mut a_slots = a_slots.into_iter();
        let mut b_slots = b_slots.into_iter();
        let (a0, a1, a2) = (
            a_slots.next().unwrap(),
            a_slots.next().unwrap(),
            a_slots.next().unwrap(),
        );
        let mut settler = BatchSettler::default();
        // An aggregate holding a1, a0, b0, then a2 and b1 later.
        settler.push(a1, delivered("a1"));
        settler.push(a0, delivered("a0"));
        assert_eq!(a.settled(), 0, "the run is written when it ends");
        settler.push(b_slots.next().unwrap(), delivered("b0"));
        assert_eq!((a.settled(), b.settled()), (2, 0));
        settler.finish();
        assert_eq!(b.settled(), 1);
        let waiting = tokio::spawn(a);
        settler.push(a2, delivered("a2"));
        settler.push(b_slots.next().unwrap(), delivered("b1"));
        drop(settler); // finishes its run
        assert_eq!(
            waiting.await.unwrap(),
            vec![delivered("a0"), delivered("a1"), delivered("a2")]
        );
        assert_eq!(b.await, vec![delivered("b0"), delivered("b1")]);
    }

    #[tokio::test]
    async fn an_empty_batch_resolves_at_once() {
        let (handle, slots) = with_slots(0, Vec::new());
        assert!(slots.is_empty() && handle.is_empty());
        assert!(handle.await.is_empty());
    }
}
