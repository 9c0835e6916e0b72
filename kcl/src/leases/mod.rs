//! The building blocks of lease handling: the [`LeaseStore`] seam, its DynamoDB
//! implementation [`LeaseTable`], and the [`LeaseUpdate`]s every store applies.
//!
//! ```text
//!  Lease ──renew / take / release / record_checkpoint / prepare_checkpoint──▶ LeaseUpdate
//!    (pure: guard + changes)                                                    │
//!  LeaseStore (trait) ◀─────────────── update_lease, reads, create, delete ─────┘
//!    ├─ LeaseTable (DynamoDB): lease_table/{item: Lease ⇄ attributes,
//!    │                                      update_expression: LeaseUpdate ⇄ UpdateItem}
//!    └─ MemoryLeaseStore (tests; feature "test-util")
//! ```

mod coordinator;
mod held_lease;
mod lease_store;
mod lease_table;
mod lease_update;
#[cfg(any(test, feature = "test-util"))]
mod memory_lease_store;

pub use coordinator::{LeaseConfig, LeaseCoordinator, TakeOutcome};
pub(crate) use held_lease::HeldLease;
pub use lease_store::LeaseStore;
pub use lease_table::LeaseTable;
pub use lease_update::{Change, Guard, LeaseUpdate, OwnerGuard};
#[cfg(any(test, feature = "test-util"))]
pub use memory_lease_store::MemoryLeaseStore;
