//! [`LeaseStore`]: the seam between the lease logic and where leases are kept.
//!
//! ```text
//!  LeaseCoordinator / HeldLease / ShardSync / Dispatcher
//!        │ reads: list_leases, get_lease
//!        │ writes: create_lease_if_not_exists, delete_finished_lease, delete_lease,
//!        │         update_lease(LeaseUpdate) ◀── renew / take / evict / checkpoint /
//!        ▼                                       prepare_checkpoint (provided: Lease's own)
//!  LeaseTable (DynamoDB) | MemoryLeaseStore (tests, feature "test-util")
//! ```

use async_trait::async_trait;
use bytes::Bytes;

use super::lease_update::LeaseUpdate;
use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::leases::Lease;

/// Storage of leases: the seam between lease logic and DynamoDB.
///
/// [`LeaseTable`](super::LeaseTable) is the DynamoDB implementation. Each write takes the
/// lease as the caller last read it and is applied only if the stored counter (and, where
/// stated, owner) still match; `Ok(false)` means the condition failed. On success the
/// stored counter is one more than `lease.counter`.
///
/// A store implements the reads, creation, deletion and [`update_lease`](Self::update_lease);
/// the named writes are provided, each the [`LeaseUpdate`] its [`Lease`] method decides.
#[async_trait]
pub trait LeaseStore: Send + Sync + std::fmt::Debug {
    /// Creates the table if it does not exist and waits until it can be used.
    ///
    /// # Cancellation
    /// Safe to drop; a creation already sent goes ahead.
    async fn create_table_if_not_exists(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Every readable lease. Unreadable items are skipped with a warning.
    ///
    /// # Cancellation
    /// Safe to drop: it only reads.
    async fn list_leases(&self) -> Result<Vec<Lease>, Error>;

    /// One lease, `None` if there is no item with that key.
    ///
    /// # Cancellation
    /// Safe to drop: it only reads.
    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, Error>;

    /// Writes `lease` unless an item with its key exists; `Ok(false)` if one does.
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still create the lease.
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, Error>;

    /// Applies `update` if the stored lease exists and meets its guard; `Ok(false)` if not.
    /// A missing lease is never created by an update.
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still apply the update.
    async fn update_lease(&self, update: &LeaseUpdate) -> Result<bool, Error>;

    /// Deletes the lease if its checkpoint is `SHARD_END`.
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still delete.
    async fn delete_finished_lease(&self, lease_key: &str) -> Result<bool, Error>;

    /// Deletes `lease` whatever its checkpoint, if the stored counter still matches
    /// `lease.counter` (nobody took, renewed or checkpointed it since it was read);
    /// `Ok(false)` if not, or if it is gone. Used for the leases of streams a multi-stream
    /// application no longer consumes.
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still delete.
    async fn delete_lease(&self, lease: &Lease) -> Result<bool, Error>;

    /// Bumps the counter if counter and owner still match `lease` ([`Lease::renew`]).
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still renew the lease.
    async fn renew_lease(&self, lease: &Lease) -> Result<bool, Error> {
        self.update_lease(&lease.renew()).await
    }

    /// Makes `new_owner` the owner and bumps the counter if the counter still matches
    /// (`ownerSwitchesSinceCheckpoint` grows by one when the owner changes;
    /// [`Lease::take`]).
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still take the lease.
    async fn take_lease(&self, lease: &Lease, new_owner: &str) -> Result<bool, Error> {
        self.update_lease(&lease.take(new_owner)).await
    }

    /// Removes the owner and bumps the counter if counter and owner still match, so other
    /// workers can take the lease at once ([`Lease::release`]).
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still evict.
    async fn evict_lease(&self, lease: &Lease) -> Result<bool, Error> {
        self.update_lease(&lease.release()).await
    }

    /// Records `checkpoint` (clearing any pending checkpoint and the owner switch count,
    /// and recording `child_shard_ids` when not empty) if counter and owner still match
    /// ([`Lease::record_checkpoint`]).
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still checkpoint.
    async fn update_checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
        child_shard_ids: &[String],
    ) -> Result<bool, Error> {
        self.update_lease(&lease.record_checkpoint(checkpoint, child_shard_ids))
            .await
    }

    /// Records the first phase of a two-phase checkpoint if counter and owner still match
    /// ([`Lease::prepare_checkpoint`]).
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still write.
    async fn prepare_checkpoint(
        &self,
        lease: &Lease,
        pending: &Checkpoint,
        state: Option<&Bytes>,
    ) -> Result<bool, Error> {
        self.update_lease(&lease.prepare_checkpoint(pending, state))
            .await
    }
}
