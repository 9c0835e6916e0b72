//! What the coordinator's tests share: a memory lease table of fresh shards.

use std::sync::Arc;

use crate::checkpoint::Checkpoint;
use crate::leases::{Lease, LeaseStore, MemoryLeaseStore};

/// A memory lease table with a fresh lease (from TRIM_HORIZON) for each of `shards` shards,
/// `shardId-000000000000` on, each asserted created.
pub(super) async fn fresh_table(shards: usize) -> Arc<MemoryLeaseStore> {
    let store = Arc::new(MemoryLeaseStore::default());
    for i in 0..shards {
        let lease = Lease::new(format!("shardId-{i:012}"), Checkpoint::TrimHorizon);
        assert!(store.create_lease_if_not_exists(&lease).await.unwrap());
    }
    store
}
