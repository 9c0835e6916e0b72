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
    /// The renewer, waited for by [`stop`](Self::stop).
    tracker: TaskTracker,
    /// The taker and the shard sync, waited for by [`taking_stopped`](Self::taking_stopped)
    /// (and by [`stop`](Self::stop)): a taker round under way when taking stops may still
    /// take a lease, which must be held before the leases are released.
    takers: TaskTracker,
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
        let takers = TaskTracker::new();
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
            takers.spawn(async move { c.run_taker(stop, wake).await });
        }
        takers.spawn(sync(stop_taking.clone(), wake_taker));
        takers.close();
        Self {
            tracker,
            takers,
            stop_taking,
            stop_renewing,
        }
    }

    /// Stops the taker and the shard sync; the renewer goes on. A round under way is not
    /// cut short (a conditional write given up on may still have taken the lease): wait
    /// for [`taking_stopped`](Self::taking_stopped) before releasing the leases.
    pub(super) fn stop_taking(&self) {
        self.stop_taking.cancel();
    }

    /// Stops the taker and the shard sync, and waits until their rounds under way have
    /// ended: from then on, no lease is taken.
    ///
    /// # Cancellation
    /// Safe to drop: the tasks are asked to stop either way.
    pub(super) async fn taking_stopped(&self) {
        self.stop_taking.cancel();
        self.takers.wait().await;
    }

    /// Stops every task and waits until they have ended.
    ///
    /// # Cancellation
    /// Safe to drop: the tasks are asked to stop either way.
    pub(super) async fn stop(self) {
        self.stop_taking.cancel();
        self.stop_renewing.cancel();
        self.takers.wait().await;
        self.tracker.close();
        self.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::error::Error;
    use crate::leases::{Lease, LeaseConfig, LeaseStore, LeaseUpdate, MemoryLeaseStore};

    /// A memory store whose updates wait for a permit: a taker round can be held mid-take.
    #[derive(Debug)]
    struct GatedStore {
        /// Where the leases are.
        inner: MemoryLeaseStore,
        /// One permit per update let through.
        gate: Semaphore,
        /// Notified when an update starts waiting.
        waiting: Notify,
    }

    #[async_trait]
    impl LeaseStore for GatedStore {
        async fn list_leases(&self) -> Result<Vec<Lease>, Error> {
            self.inner.list_leases().await
        }
        async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, Error> {
            self.inner.get_lease(lease_key).await
        }
        async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, Error> {
            self.inner.create_lease_if_not_exists(lease).await
        }
        async fn update_lease(&self, update: &LeaseUpdate) -> Result<bool, Error> {
            self.waiting.notify_one();
            self.gate.acquire().await.expect("open").forget();
            self.inner.update_lease(update).await
        }
        async fn delete_finished_lease(&self, lease_key: &str) -> Result<bool, Error> {
            self.inner.delete_finished_lease(lease_key).await
        }
        async fn delete_lease(&self, lease: &Lease) -> Result<bool, Error> {
            self.inner.delete_lease(lease).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_take_under_way_when_taking_stops_ends_before_the_leases_are_released() {
        let store = Arc::new(GatedStore {
            inner: MemoryLeaseStore::default(),
            gate: Semaphore::new(0),
            waiting: Notify::new(),
        });
        let lease = Lease::new("shardId-000000000000", Checkpoint::TrimHorizon);
        assert!(store.create_lease_if_not_exists(&lease).await.unwrap());
        let coordinator = Arc::new(LeaseCoordinator::new(
            store.clone() as Arc<dyn LeaseStore>,
            "w".to_owned(),
            LeaseConfig::new(Duration::from_secs(10)),
        ));
        let background = Background::start(
            &coordinator,
            &CancellationToken::new(),
            |stop, _| async move { stop.cancelled().await },
        );
        // The taker's first round is writing its take.
        store.waiting.notified().await;
        background.stop_taking();
        {
            let mut stopped = std::pin::pin!(background.taking_stopped());
            tokio::select! {
                _ = &mut stopped => panic!("taking stopped with a take under way"),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            // The take lands: the lease is held once taking has stopped, so release_all
            // releases it.
            store.gate.add_permits(1);
            stopped.await;
        }
        assert_eq!(coordinator.held_lease_keys(), vec![lease.lease_key.clone()]);
        store.gate.add_permits(10);
        coordinator.release_all().await;
        let stored = store.get_lease(&lease.lease_key).await.unwrap().unwrap();
        assert_eq!(stored.owner, None, "released");
        background.stop().await;
    }
}
