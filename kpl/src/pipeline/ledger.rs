//! The pipeline's accounts of unsettled records: arrival order, flush epochs and their
//! waiters, and the memory budget of settled records, handed back once per round.
//!
//! ```text
//!  accept(item) ─▶ seq, epoch ─▶ epoch_counts[epoch] += 1
//!  flush(tx)    ─▶ epoch += 1; records of older epochs are urgent; tx waits for them
//!  accept_all(batch) ─▶ seq, epoch each ─▶ epoch_counts[epoch] += n (once)
//!  settle(epoch, budget) ─▶ epoch_counts[epoch] -= 1 ─▶ 0: answer the waiters it held
//!  (or release(budget) per record, settled(epoch, n) per run of one epoch)
//!                       └─▶ budget merged into `released` ─▶ end of round: one release
//! ```

use std::collections::{BTreeMap, VecDeque};

use tokio::sync::oneshot;

use super::message::{Budget, Item};

/// Unsettled records by flush epoch, flush waiters, and the budget to release.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// The next record's arrival number.
    next_seq: u64,
    /// The current flush epoch: records accepted now belong to it.
    epoch: u64,
    /// Unsettled records per epoch (no entry once an epoch has none).
    epoch_counts: BTreeMap<u64, usize>,
    /// Flush waiters, by the epoch they wait for, oldest first.
    flush_waiters: VecDeque<(u64, oneshot::Sender<()>)>,
    /// Records of epochs up to this one are sent without lingering.
    urgent_epoch: Option<u64>,
    /// Budget of the records settled since the last round, merged into one permit per
    /// semaphore and released once per round: one semaphore release (and wake-up of
    /// waiting `put`s) per round instead of two per record.
    released: Option<Budget>,
}

impl Ledger {
    /// Numbers a new record and counts it in the current epoch.
    pub(crate) fn accept(&mut self, item: &mut Item) {
        item.seq = self.next_seq;
        self.next_seq += 1;
        item.epoch = self.epoch;
        *self.epoch_counts.entry(self.epoch).or_default() += 1;
    }

    /// Numbers the records of a batch, in order, and counts them in the current epoch
    /// (one count update for all of them).
    pub(crate) fn accept_all(&mut self, items: &mut [Item]) {
        if items.is_empty() {
            return;
        }
        for item in items.iter_mut() {
            item.seq = self.next_seq;
            self.next_seq += 1;
            item.epoch = self.epoch;
        }
        *self.epoch_counts.entry(self.epoch).or_default() += items.len();
    }

    /// Closes the current epoch: its records become urgent, and `tx` (if any) is answered
    /// once they are all settled (at once if they are).
    pub(crate) fn flush(&mut self, tx: Option<oneshot::Sender<()>>) {
        let epoch = self.epoch;
        self.epoch += 1;
        self.urgent_epoch = Some(epoch);
        if let Some(tx) = tx {
            self.flush_waiters.push_back((epoch, tx));
        }
        self.answer_flush_waiters();
    }

    /// Records of epochs up to this one are due at once.
    pub(crate) fn urgent_epoch(&self) -> Option<u64> {
        self.urgent_epoch
    }

    /// A record of `epoch` is settled: its budget is kept until [`Self::end_round`], and
    /// the flush waiters it held are answered.
    pub(crate) fn settle(&mut self, epoch: u64, budget: Option<Budget>) {
        self.release(budget);
        self.settled(epoch, 1);
    }

    /// A settled record's budget, if it holds its own: kept until [`Self::end_round`].
    pub(crate) fn release(&mut self, budget: Option<Budget>) {
        let Some(budget) = budget else {
            return;
        };
        match &mut self.released {
            Some((records, bytes)) => {
                records.merge(budget.0);
                bytes.merge(budget.1);
            }
            None => self.released = Some(budget),
        }
    }

    /// `n` records of `epoch` are settled (their budget given to [`Self::release`]): the
    /// flush waiters they held are answered.
    pub(crate) fn settled(&mut self, epoch: u64, n: usize) {
        if let Some(count) = self.epoch_counts.get_mut(&epoch) {
            *count -= n;
            if *count == 0 {
                self.epoch_counts.remove(&epoch);
                self.answer_flush_waiters();
            }
        }
    }

    /// Releases the budget of the records settled this round (before the pipeline waits).
    pub(crate) fn end_round(&mut self) {
        self.released = None;
    }

    /// Records accepted and not settled.
    pub(crate) fn outstanding(&self) -> usize {
        self.epoch_counts.values().sum()
    }

    /// Answers every flush waiter: called when nothing is left to settle.
    pub(crate) fn answer_all(&mut self) {
        for (_, tx) in self.flush_waiters.drain(..) {
            let _ = tx.send(());
        }
    }

    fn answer_flush_waiters(&mut self) {
        let oldest_unsettled = self.epoch_counts.keys().next().copied();
        while let Some((epoch, _)) = self.flush_waiters.front() {
            if oldest_unsettled.is_some_and(|o| o <= *epoch) {
                break;
            }
            let (_, tx) = self.flush_waiters.pop_front().expect("front exists");
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;
    use crate::pipeline::test_support::item_with_budget;

    #[test]
    fn a_flush_is_answered_when_its_epoch_and_every_older_one_are_settled() {
        let budget = (Arc::new(Semaphore::new(10)), Arc::new(Semaphore::new(10)));
        let mut ledger = Ledger::default();
        let accept = |ledger: &mut Ledger| {
            let (mut item, _rx) = item_with_budget("k", 1, &budget);
            ledger.accept(&mut item);
            item
        };
        let a = accept(&mut ledger);
        let (tx0, mut first) = oneshot::channel();
        ledger.flush(Some(tx0));
        let b = accept(&mut ledger);
        let (tx1, mut second) = oneshot::channel();
        ledger.flush(Some(tx1));
        assert_eq!((a.seq, a.epoch, b.seq, b.epoch), (0, 0, 1, 1));
        assert_eq!(ledger.urgent_epoch(), Some(1));
        assert_eq!(ledger.outstanding(), 2);

        // The newer epoch settles first: its waiter still waits for the older one.
        ledger.settle(b.epoch, b.budget);
        assert!(first.try_recv().is_err() && second.try_recv().is_err());
        ledger.settle(a.epoch, a.budget);
        assert!(first.try_recv().is_ok() && second.try_recv().is_ok());
        assert_eq!(ledger.outstanding(), 0);

        // A flush with nothing unsettled is answered at once.
        let (tx, mut now) = oneshot::channel();
        ledger.flush(Some(tx));
        assert!(now.try_recv().is_ok());
    }

    #[test]
    fn settled_budget_goes_back_once_per_round() {
        let budget = (Arc::new(Semaphore::new(3)), Arc::new(Semaphore::new(30)));
        let mut ledger = Ledger::default();
        let items: Vec<_> = (0..3)
            .map(|_| {
                let (mut item, _rx) = item_with_budget("k", 10, &budget);
                ledger.accept(&mut item);
                item
            })
            .collect();
        assert_eq!(budget.0.available_permits(), 0);
        for item in items {
            ledger.settle(item.epoch, item.budget);
        }
        assert_eq!(
            (budget.0.available_permits(), budget.1.available_permits()),
            (0, 0),
            "held until the round ends"
        );
        ledger.end_round();
        assert_eq!(
            (budget.0.available_permits(), budget.1.available_permits()),
            (3, 30)
        );
    }
}
