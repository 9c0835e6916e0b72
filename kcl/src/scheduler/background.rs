//! The background tasks of a running worker: the lease renewer, the lease taker and the
//! periodic shard sync.
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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::leases::LeaseCoordinator;
use crate::leases::ShardSync;

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
    /// Starts the renewer, the taker and the periodic shard sync (also run when
    /// `shard_ended` is woken; it cancels `stream_gone` when the stream no longer exists).
    /// Every task also stops when `hard_stop` is cancelled.
    pub(super) fn start(
        coordinator: &Arc<LeaseCoordinator>,
        shard_sync: &ShardSync,
        shard_sync_interval: Duration,
        shard_ended: Arc<Notify>,
        hard_stop: &CancellationToken,
        stream_gone: CancellationToken,
    ) -> Self {
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
        {
            let (sync, stop) = (shard_sync.clone(), stop_taking.clone());
            tracker.spawn(async move {
                sync.run(
                    shard_sync_interval,
                    stop,
                    shard_ended,
                    wake_taker,
                    stream_gone,
                )
                .await
            });
        }
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
