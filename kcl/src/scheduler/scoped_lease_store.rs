//! [`ScopedLeaseStore`]: the lease table as the worker's lease coordinator sees it, with
//! only the leases of the streams the worker consumes in its scans.
//!
//! ```text
//!  LeaseCoordinator ─list_leases─▶ ScopedLeaseStore ─scan─▶ LeaseTable
//!                                    keeps what ActiveStreams::admits
//!                   ─every other call─▶ passed through unchanged
//! ```
//!
//! So the taker never takes, balances or counts a lease of another kind (a multi-stream
//! lease in a single-stream worker, and the other way round) or of a stream the worker no
//! longer consumes, without any change to the coordinator.

use std::sync::Arc;

use async_trait::async_trait;

use super::active_streams::ActiveStreams;
use crate::error::Error;
use crate::leases::{Lease, LeaseStore, LeaseUpdate};

/// A [`LeaseStore`] whose scans hold only the leases [`ActiveStreams`] admits.
#[derive(Debug)]
pub(super) struct ScopedLeaseStore {
    /// The lease table.
    pub(super) table: Arc<dyn LeaseStore>,
    /// Which leases the worker works on.
    pub(super) streams: Arc<ActiveStreams>,
}

#[async_trait]
impl LeaseStore for ScopedLeaseStore {
    async fn create_table_if_not_exists(&self) -> Result<(), Error> {
        self.table.create_table_if_not_exists().await
    }

    async fn list_leases(&self) -> Result<Vec<Lease>, Error> {
        let mut leases = self.table.list_leases().await?;
        leases.retain(|l| self.streams.admits(l));
        Ok(leases)
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, Error> {
        self.table.get_lease(lease_key).await
    }

    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, Error> {
        self.table.create_lease_if_not_exists(lease).await
    }

    async fn update_lease(&self, update: &LeaseUpdate) -> Result<bool, Error> {
        self.table.update_lease(update).await
    }

    async fn delete_finished_lease(&self, lease_key: &str) -> Result<bool, Error> {
        self.table.delete_finished_lease(lease_key).await
    }

    async fn delete_lease(&self, lease: &Lease) -> Result<bool, Error> {
        self.table.delete_lease(lease).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::leases::MemoryLeaseStore;

    #[tokio::test]
    async fn scans_hold_only_admitted_leases_and_writes_pass_through() {
        let table = Arc::new(MemoryLeaseStore::new());
        let single = Lease::new("shardId-0", Checkpoint::TrimHorizon);
        let multi = Lease::new_multi_stream(
            "1:a:1".parse().unwrap(),
            "shardId-0",
            Checkpoint::TrimHorizon,
        );
        let scoped = ScopedLeaseStore {
            table: table.clone(),
            streams: Arc::new(ActiveStreams::new(false, "w")),
        };
        assert!(scoped.create_lease_if_not_exists(&single).await.unwrap());
        assert!(scoped.create_lease_if_not_exists(&multi).await.unwrap());
        let seen = scoped.list_leases().await.unwrap();
        assert_eq!(seen, vec![single.clone()]);
        assert_eq!(table.list_leases().await.unwrap().len(), 2);
        assert!(scoped.take_lease(&single, "w").await.unwrap());
        assert!(scoped.get_lease(&multi.lease_key).await.unwrap().is_some());
        assert!(scoped.delete_lease(&multi).await.unwrap());
        assert!(table.get_lease(&multi.lease_key).await.unwrap().is_none());
    }
}
