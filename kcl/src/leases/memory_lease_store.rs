//! [`MemoryLeaseStore`]: leases in a map, with the lease table's conditional semantics,
//! for tests of lease logic without DynamoDB (e.g. under `tokio::time::pause()`).
//! Built for this crate's own tests and, with the `test-util` feature, for others.
//!
//! ```text
//!  LeaseStore call ─▶ one lock of the map ─▶ update_lease: guard.admits(stored)?
//!                                              yes ─▶ LeaseUpdate::apply_to(stored), Ok(true)
//!                                              no (or missing) ─▶ Ok(false)
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lease_store::LeaseStore;
use super::lease_update::LeaseUpdate;
use crate::error::Error;
use crate::leases::Lease;

/// Leases in a map, guarded by a mutex; every operation is atomic and never fails.
#[derive(Debug, Default)]
pub struct MemoryLeaseStore {
    /// The table, by lease key.
    leases: Mutex<BTreeMap<String, Lease>>,
    /// Calls made, to check the cost of steady state.
    pub(crate) calls: AtomicU64,
}

impl MemoryLeaseStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many calls were made (each would be one DynamoDB request of the lease table).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Counts a call and runs `f` on the map.
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<String, Lease>) -> R) -> R {
        self.calls.fetch_add(1, Ordering::Relaxed);
        f(&mut self.leases.lock().expect("not poisoned"))
    }
}

#[async_trait]
impl LeaseStore for MemoryLeaseStore {
    async fn list_leases(&self) -> Result<Vec<Lease>, Error> {
        Ok(self.with(|m| m.values().cloned().collect()))
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, Error> {
        Ok(self.with(|m| m.get(lease_key).cloned()))
    }

    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, Error> {
        Ok(self.with(|m| {
            if m.contains_key(&lease.lease_key) {
                false
            } else {
                m.insert(lease.lease_key.clone(), lease.clone());
                true
            }
        }))
    }

    async fn update_lease(&self, update: &LeaseUpdate) -> Result<bool, Error> {
        Ok(self.with(|m| match m.get_mut(&update.lease_key) {
            Some(stored) if update.guard.admits(stored) => {
                update.apply_to(stored);
                true
            }
            _ => false,
        }))
    }

    async fn delete_finished_lease(&self, lease_key: &str) -> Result<bool, Error> {
        Ok(self.with(|m| match m.get(lease_key) {
            Some(l) if l.checkpoint.is_shard_end() => {
                m.remove(lease_key);
                true
            }
            _ => false,
        }))
    }

    async fn delete_lease(&self, lease: &Lease) -> Result<bool, Error> {
        Ok(self.with(|m| match m.get(&lease.lease_key) {
            Some(l) if l.counter == lease.counter => {
                m.remove(&lease.lease_key);
                true
            }
            _ => false,
        }))
    }
}
