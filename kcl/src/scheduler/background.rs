//! The background tasks of a running worker: the lease renewer, the lease taker and the
//! periodic shard sync (a single stream's `ShardSync::run`, or a multi-stream worker's
//! `MultiStreamSync::run`, which also polls the stream tracker).
//!
//! ```text
//!  LeaseCoordinator::run_renewer ── every renew_interval (or heartbeat: ── until stop()
//!                                   wakes the taker when a worker left or fell silent)
//!  LeaseCoordinator::run_taker ──── every taker_interval, or woken ◀──┐   until stop_taking()
//!  ShardSync::run ───────────────── every shard_sync_interval, or at ─┘   until stop_taking()
//!                                   a shard end; wakes the taker when leases changed;
//!                                   the stream gone (ListShards: not found) ─▶ stream_gone
//!  every task also stops when hard_stop is cancelled (run's future dropped)
//! ```

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::leases::LeaseCoordinator;

/// The running background tasks, stopped in two steps by a graceful shutdown.
#[derive(Debug)]
pub(super) struct Background {
    /// The tasks, waited for by [`stop`](Self::stop).
    tracker: TaskTracker,
    /// Stops the taker and the shard sync: the first step of a graceful shutdown, so that
    /// no lease is taken while consumers stop.
    stop_taking: CancellationToken,
    /// Stops the renewer: the last step, once the leases were released.
    stop_renewing: CancellationToken,
}

impl Background {
    /// Starts the renewer, the taker and the shard sync that `sync` makes from the token
    /// that stops it (with the taker's) and the taker's wake-up, to wake after leases
    /// changed. Every task also stops when `hard_stop` is cancelled.
    pub(super) fn start<F, Fut>(
        coordinator: &Arc<LeaseCoordinator>,
        hard_stop: &CancellationToken,
        sync: F,
    ) -> Self
    where
        F: FnOnce(CancellationToken, Arc<Notify>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let tracker = TaskTracker::new();
        let stop_taking = hard_stop.child_token();
        let stop_renewing = hard_stop.child_token();
        let wake_taker = Arc::new(Notify::new());
        {
            let (c, stop, wake) = (
                coordinator.clone(),
                stop_renewing.clone(),
                wake_taker.clone(),
            );
            tracker.spawn(async move { c.run_renewer(stop, wake).await });
        }
        {
            let (c, stop, wake) = (coordinator.clone(), stop_taking.clone(), wake_taker.clone());
            tracker.spawn(async move { c.run_taker(stop, wake).await });
        }
        tracker.spawn(sync(stop_taking.clone(), wake_taker));
        Self {
            tracker,
            stop_taking,
            stop_renewing,
        }
    }

    /// Stops the taker and the shard sync; the renewer goes on.
    pub(super) fn stop_taking(&self) {
        self.stop_taking.cancel();
    }

    /// Stops every task and waits until they have ended.
    ///
    /// # Cancellation
    /// Safe to drop: the tasks are asked to stop either way.
    pub(super) async fn stop(self) {
        self.stop_taking.cancel();
        self.stop_renewing.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
