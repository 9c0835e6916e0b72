//! [`MemoryFleetStore`]: the fleet item in a map, with the fleet table's conditional
//! semantics, for tests of liveness logic without DynamoDB (e.g. under
//! `tokio::time::pause()`); it can be made unavailable to act out an outage.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{FleetStore, FleetView, WorkerLoad};
use crate::error::Error;

/// The fleet item in a map, guarded by a mutex; every operation is atomic.
#[derive(Debug, Default)]
pub struct MemoryFleetStore {
    /// Worker id → (heartbeat, notices).
    workers: Mutex<BTreeMap<String, (u64, BTreeSet<String>)>>,
    /// Worker id → the load it reported with its last beat.
    loads: Mutex<BTreeMap<String, WorkerLoad>>,
    /// While set, every call fails as an unreachable DynamoDB would.
    unavailable: AtomicBool,
    /// While set, every call waits without end, as a DynamoDB that never answers.
    hanging: AtomicBool,
    /// Set: the next beat is written, then reported failed (its answer lost).
    lose_next_answer: AtomicBool,
}

impl MemoryFleetStore {
    /// An empty fleet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail (`true`) or work again (`false`).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Makes every call wait without end (`true`), or answer again (`false`; calls already
    /// waiting go on waiting).
    pub fn set_hanging(&self, hanging: bool) {
        self.hanging.store(hanging, Ordering::SeqCst);
    }

    /// Writes the next beat but reports it failed, as when its answer is lost.
    pub fn lose_next_answer(&self) {
        self.lose_next_answer.store(true, Ordering::SeqCst);
    }

    /// The registered workers, sorted.
    pub fn workers(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (u64, BTreeSet<String>)>> {
        self.workers.lock().expect("not poisoned")
    }

    async fn check(&self, operation: &'static str) -> Result<(), Error> {
        if self.hanging.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(Error::DynamoDb {
                operation,
                table: "memory fleet".into(),
                message: "unavailable (test)".into(),
                retryable: true,
                throttled: false,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl FleetStore for MemoryFleetStore {
    async fn beat(
        &self,
        worker: &str,
        previous: &[u64],
        next: u64,
        handled: &[String],
        load: Option<WorkerLoad>,
    ) -> Result<Option<FleetView>, Error> {
        self.check("UpdateItem").await?;
        let mut workers = self.lock();
        if !previous.is_empty()
            && !workers
                .get(worker)
                .is_some_and(|(b, _)| previous.contains(b))
        {
            return Ok(None);
        }
        let entry = workers.entry(worker.to_owned()).or_default();
        entry.0 = next;
        for h in handled {
            entry.1.remove(h);
        }
        let mut loads = self.loads.lock().expect("not poisoned");
        if let Some(load) = load {
            loads.insert(worker.to_owned(), load);
        }
        if self.lose_next_answer.swap(false, Ordering::SeqCst) {
            return Err(Error::DynamoDb {
                operation: "UpdateItem",
                table: "memory fleet".into(),
                message: "answer lost (test)".into(),
                retryable: true,
                throttled: false,
            });
        }
        Ok(Some(FleetView {
            beats: workers.iter().map(|(w, (b, _))| (w.clone(), *b)).collect(),
            notices: workers[worker].1.iter().cloned().collect(),
            loads: loads.iter().map(|(w, l)| (w.clone(), *l)).collect(),
        }))
    }

    async fn read(&self) -> Result<FleetView, Error> {
        self.check("GetItem").await?;
        Ok(FleetView {
            beats: self
                .lock()
                .iter()
                .map(|(w, (b, _))| (w.clone(), *b))
                .collect(),
            notices: Vec::new(),
            loads: self
                .loads
                .lock()
                .expect("not poisoned")
                .iter()
                .map(|(w, l)| (w.clone(), *l))
                .collect(),
        })
    }

    async fn remove(&self, worker: &str, beat: u64) -> Result<bool, Error> {
        self.check("UpdateItem").await?;
        let mut workers = self.lock();
        if workers.get(worker).map(|(b, _)| *b) != Some(beat) {
            return Ok(false);
        }
        workers.remove(worker);
        self.loads.lock().expect("not poisoned").remove(worker);
        Ok(true)
    }

    async fn notify(&self, worker: &str, notice: &str) -> Result<bool, Error> {
        self.check("UpdateItem").await?;
        Ok(self
            .lock()
            .get_mut(worker)
            .map(|(_, notices)| notices.insert(notice.to_owned()))
            .is_some())
    }
}
