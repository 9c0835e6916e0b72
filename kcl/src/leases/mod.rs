//! The building blocks under the [`Scheduler`](crate::Scheduler): leases, where they are
//! kept, who holds them, and how they follow the stream's shards. Applications need them
//! only to look at or manage a lease table themselves (as `kinesis-cat leases` does), or to
//! test lease logic (`MemoryLeaseStore`, with the feature `test-util`).
//!
//! ```text
//!  ShardSync ── ListShards ─▶ sync_plan (pure) ─▶ create / delete leases ─────────┐
//!  LeaseCoordinator                                                                │
//!    heartbeat (default) ─▶ FleetStore::beat ─▶ Liveness (pure) ─▶ wake the taker  │
//!      (or, without a fleet, renewer ─▶ HeldLease::renew) ─────────────────────────┤
//!    taker ─▶ scan ─▶ fleet / ObservedCounters ─▶ plan_take (pure) ─▶ take ─▶ HeldLease
//!  Checkpointer ─▶ HeldLease::checkpoint / prepare_checkpoint / release ───────────┤
//!                                                                                  ▼
//!  handoff (pure): a lease moved between live workers ─▶ Outgoing (its consumer stops, then
//!    end_handoff) / Incoming (waits, then starts from the previous owner's checkpoint)
//!  Lease::renew / take / release / record_checkpoint / prepare_checkpoint /
//!    start_handoff / end_handoff ─▶ LeaseUpdate (pure)
//!    ─▶ LeaseStore::update_lease ─▶ LeaseTable: lease_table/{item, update_expression} ─▶ DynamoDB
//!                                   MemoryLeaseStore (tests)
//! ```
//!
//! # Usage
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use kinesis_consumer::leases::{LeaseConfig, LeaseCoordinator, LeaseStore, LeaseTable};
//!
//! # async fn demo(client: aws_sdk_dynamodb::Client) -> Result<(), kinesis_consumer::Error> {
//! let table = Arc::new(LeaseTable::new(client, "my-app"));
//! for lease in table.list_leases().await? {
//!     println!("{} owned by {:?} at {}", lease.lease_key, lease.owner, lease.checkpoint);
//! }
//! let coordinator = LeaseCoordinator::new(table, "worker-1", LeaseConfig::new(Duration::from_secs(10)));
//! coordinator.take_leases().await?;
//! # Ok(()) }
//! ```

mod coordinator;
mod dynamo_table;
mod fleet;
pub(crate) mod handoff;
mod held_lease;
mod lease;
mod lease_store;
mod lease_table;
mod lease_update;
#[cfg(any(test, feature = "test-util"))]
mod memory_lease_store;
mod shard_sync;
mod throughput;

pub use coordinator::{Balancing, LeaseConfig, LeaseCoordinator, TakeOutcome};
#[cfg(any(test, feature = "test-util"))]
pub use fleet::MemoryFleetStore;
pub use fleet::{FleetStore, FleetTable, FleetView, LoadMeter, ShardMeter, WorkerLoad};
pub(crate) use held_lease::HeldLease;
pub use lease::Lease;
pub use lease_store::LeaseStore;
/// The lease-item fuzz body (see `fuzz/README.md`); not part of the API.
#[doc(hidden)]
pub use lease_table::fuzzing::lease_item as fuzz_lease_item;
pub use lease_table::LeaseTable;
pub use lease_update::{Change, CheckpointOwnerGuard, Guard, LeaseUpdate, OwnerGuard};
#[cfg(any(test, feature = "test-util"))]
pub use memory_lease_store::MemoryLeaseStore;
pub(crate) use shard_sync::Synced;
pub use shard_sync::{ShardSync, SyncOutcome};
pub use throughput::Throughput;
