//! [`ActiveStreams`]: the streams a worker consumes now, each with what its shard
//! consumers need ([`StreamRuntime`]), and which leases the worker may work on.
//!
//! ```text
//!  start-up (single stream) ─insert(None ─▶ runtime)─┐
//!  MultiStreamSync (tracker) ─insert / remove(id)────┤
//!                                                    ▼
//!                    ActiveStreams { Option<StreamIdentifier> ─▶ StreamRuntime }
//!    Dispatcher: for_lease(lease) ─▶ its source, shard sync, AT_TIMESTAMP  (None: retire it)
//!    ScopedLeaseStore: admits(lease) ─▶ the coordinator sees, takes and balances only these
//! ```
//!
//! A single-stream worker admits the leases without a stream (a multi-stream lease is
//! never its own); a multi-stream worker admits the multi-stream leases of its tracked
//! streams, and those of untracked streams it still owns (so that the taker does not count
//! them lost before the dispatcher has stopped their consumers and released them).
//! Leases of the other kind are skipped with one warning per worker.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::consumer::RecordsSource;
use crate::leases::{Lease, ShardSync};
use crate::multi_stream::StreamIdentifier;

/// What the shard consumers of one stream need.
#[derive(Debug)]
pub(super) struct StreamRuntime {
    /// The stream's name, for logs.
    pub(super) name: String,
    /// Its multi-stream identifier; `None` for a single-stream worker's stream.
    pub(super) id: Option<StreamIdentifier>,
    /// Where its consumers read their shards from.
    pub(super) source: Arc<dyn RecordsSource>,
    /// Its shard sync, which its consumers use to create child leases at a shard end.
    pub(super) shard_sync: ShardSync,
    /// The timestamp of its `AT_TIMESTAMP` initial position, if that is its position.
    pub(super) at_timestamp: Option<SystemTime>,
}

/// The streams a worker consumes now.
#[derive(Debug)]
pub(super) struct ActiveStreams {
    /// Whether the worker is a multi-stream one: which kind of lease it admits.
    multi: bool,
    /// This worker: untracked streams' leases it still owns stay admitted.
    worker_id: String,
    /// The streams, by identifier (`None` for a single-stream worker's one stream).
    by_id: RwLock<HashMap<Option<StreamIdentifier>, Arc<StreamRuntime>>>,
    /// Set once the worker warned about leases of the other kind in its table.
    warned_other_kind: AtomicBool,
}

impl ActiveStreams {
    /// No stream yet, for a multi-stream worker (`multi`) or a single-stream one.
    pub(super) fn new(multi: bool, worker_id: &str) -> Self {
        Self {
            multi,
            worker_id: worker_id.to_owned(),
            by_id: RwLock::new(HashMap::new()),
            warned_other_kind: AtomicBool::new(false),
        }
    }

    /// Adds (or replaces) a stream.
    pub(super) fn insert(&self, stream: Arc<StreamRuntime>) {
        self.write().insert(stream.id.clone(), stream);
    }

    /// Retires a stream of a multi-stream worker; what it was, if it was active.
    pub(super) fn remove(&self, id: &StreamIdentifier) -> Option<Arc<StreamRuntime>> {
        self.write().remove(&Some(id.clone()))
    }

    /// The stream `lease` belongs to, if it is active.
    pub(super) fn for_lease(&self, lease: &Lease) -> Option<Arc<StreamRuntime>> {
        self.read().get(&lease.stream).cloned()
    }

    /// Whether the lease `lease_key` belongs to an active stream, told by its key: always
    /// for a single-stream worker; for a multi-stream one, whether the stream its key
    /// starts with is active.
    pub(super) fn is_active_key(&self, lease_key: &str) -> bool {
        !self.multi
            || StreamIdentifier::split_lease_key(lease_key)
                .is_some_and(|(id, _)| self.read().contains_key(&Some(id)))
    }

    /// Every active stream.
    pub(super) fn all(&self) -> Vec<Arc<StreamRuntime>> {
        self.read().values().cloned().collect()
    }

    /// The identifiers of the active streams of a multi-stream worker.
    pub(super) fn ids(&self) -> HashSet<StreamIdentifier> {
        self.read().keys().flatten().cloned().collect()
    }

    /// Whether the worker may work on `lease` (see the module docs).
    pub(super) fn admits(&self, lease: &Lease) -> bool {
        if lease.stream.is_some() != self.multi {
            if !self.warned_other_kind.swap(true, Ordering::Relaxed) {
                let (mine, other) = if self.multi {
                    ("multi-stream", "single-stream")
                } else {
                    ("single-stream", "multi-stream")
                };
                tracing::warn!(lease = %lease.lease_key, "the lease table holds {other} leases; this {mine} worker leaves them alone (said once)");
            }
            return false;
        }
        !self.multi || self.read().contains_key(&lease.stream) || lease.is_owned_by(&self.worker_id)
    }

    /// The map, read.
    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<Option<StreamIdentifier>, Arc<StreamRuntime>>> {
        self.by_id.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The map, to change.
    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<Option<StreamIdentifier>, Arc<StreamRuntime>>>
    {
        self.by_id.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::consumer::{Polling, PollingConfig};
    use crate::initial_position::InitialPosition;
    use crate::leases::MemoryLeaseStore;
    use crate::scheduler::test_support::offline_clients;

    fn runtime(id: Option<StreamIdentifier>) -> Arc<StreamRuntime> {
        let (kinesis, _) = offline_clients();
        Arc::new(StreamRuntime {
            name: "s".into(),
            id,
            source: Arc::new(Polling::new(kinesis.clone(), "s", PollingConfig::default())),
            shard_sync: ShardSync::new(
                kinesis,
                "s",
                Arc::new(MemoryLeaseStore::new()),
                InitialPosition::TrimHorizon,
            ),
            at_timestamp: None,
        })
    }

    #[test]
    fn each_kind_of_worker_admits_only_its_own_leases() {
        let a: StreamIdentifier = "1:a:1".parse().unwrap();
        let b: StreamIdentifier = "1:b:1".parse().unwrap();
        let single = Lease::new("shardId-0", Checkpoint::TrimHorizon);
        let of_a = Lease::new_multi_stream(a.clone(), "shardId-0", Checkpoint::TrimHorizon);
        let mut of_b = Lease::new_multi_stream(b.clone(), "shardId-0", Checkpoint::TrimHorizon);

        let one = ActiveStreams::new(false, "w");
        assert!(one.admits(&single), "even before its stream is known");
        assert!(!one.admits(&of_a));

        let multi = ActiveStreams::new(true, "w");
        multi.insert(runtime(Some(a.clone())));
        assert!(!multi.admits(&single));
        assert!(multi.admits(&of_a));
        assert!(!multi.admits(&of_b), "untracked");
        of_b.owner = Some("w".into());
        assert!(multi.admits(&of_b), "untracked but still mine");
        assert!(multi.for_lease(&of_a).is_some());
        assert!(multi.is_active_key(&of_a.lease_key));
        assert!(!multi.is_active_key(&of_b.lease_key));
        assert!(
            one.is_active_key("1:b:1:shardId-0"),
            "a single stream's leases all are"
        );
        assert!(multi.for_lease(&of_b).is_none());
        assert_eq!(multi.ids(), HashSet::from([a.clone()]));
        assert!(multi.remove(&a).is_some());
        assert!(!multi.admits(&Lease::new_multi_stream(a, "s", Checkpoint::TrimHorizon)));
    }
}
