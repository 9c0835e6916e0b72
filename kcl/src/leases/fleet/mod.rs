//! The fleet: which workers of an application are alive, told by one DynamoDB item that
//! every worker writes its heartbeat into and reads everyone's from, in the same call.
//!
//! ```text
//!  every heartbeat_interval (failover/5), each worker:
//!    UpdateItem fleet item: SET b:<me> = now (ms) IF b:<me> = last beat, DELETE handled notices,
//!               ReturnValues ALL_NEW ─▶ every worker's beat + the notices addressed to me
//!      ─▶ Liveness::observe (pure): a beat that changed ─▶ alive; unchanged for
//!         failover − heartbeat_interval/2 on my clock (counted from my look before I
//!         saw it change) ─▶ silent
//!      ─▶ notices "lease@counter": that lease moved from me ─▶ lost at once if my
//!         counter is below it (a take); else read it: a graceful handoff started
//!         (`leases::handoff`) ─▶ its consumer finishes, then hands it over
//!      refused (someone removed my entry: I was declared gone) ─▶ every lease lost, register again
//!      no beat landed for failover − 1.6 heartbeats (a timer, and each call's timeout) ─▶
//!         every lease lost and nothing taken until a beat lands (self-fencing), always
//!         before any other worker may declare this one gone
//!  a silent worker ─▶ REMOVE b:<it> IF b:<it> = its last beat ─▶ its leases are free to take
//!  a steal (a graceful handoff start, counter unchanged) ─▶ then ADD n:<victim>
//!             "lease@counter" ─▶ the victim hears at its next beat (not told: at its next
//!             scan; the new owner waits meanwhile)
//!  graceful shutdown ─▶ leases released, then REMOVE b:<me> ─▶ others take them at once
//! ```
//!
//! # Why one item
//! The Java KCL proves liveness per lease: every lease is renewed every failover/3 and a
//! full table scan every 2 × failover finds the leases whose counter stood still for the
//! failover time; a dead worker's shards wait for 1–2 scans on top of it (about 3.7 ×
//! failover measured). Renewing every lease costs 18.1 writes per lease per minute at the
//! default 10 s. Here a worker proves it is alive once per heartbeat for all its leases,
//! and the same call (`UpdateItem` with `ReturnValues=ALL_NEW`) reads every other
//! worker's heartbeat: 30 calls per worker per minute whatever it holds (at or below the
//! Java KCL's 18.1 per lease plus 3 from two leases per worker up), plus the taker's scan
//! every 2 × failover; no periodic write per lease. A death is seen within 1.1 × the
//! failover time at most (about the failover time on average), and the survivors'
//! takers are woken at once.
//!
//! # Safety and its price
//! A worker that cannot prove itself alive gives its leases up (fences) strictly before
//! any other worker may declare it gone and take them: after failover − 1.6 heartbeats
//! (6.8 s at the default 10 s) without a landed beat, counted from the beat's sending,
//! whereas the others wait for the silence threshold counted from up to a heartbeat
//! before the beat landed (7 s at the earliest). So two workers never process a shard at
//! once because of a partition. The price: a DynamoDB outage longer than about half the
//! failover time (4.8 s at the default) makes workers give their leases up (each takes
//! its own back at once when DynamoDB answers again; records after the last checkpoints
//! are processed again), and a DynamoDB answering more slowly than about a fifth of the
//! failover time keeps workers fenced. A worker that never landed a beat, or is fenced,
//! takes nothing.
//!
//! The item lives in its own table, `<lease table>-Workers` (hash key `fleet`, one item
//! `workers`), so that no KCL reading the lease table meets an item it does not know. It
//! holds a number `b:<worker id>` per live worker, a string set `n:<worker id>` of
//! notices per worker with notices pending, and a map `l:<worker id>` with the load the
//! worker reported at its last beat ([`WorkerLoad`]: records/s, bytes/s, its largest
//! `millis_behind_latest`; what `kinesis-cat leases` shows); its size grows by about
//! 2 × (the worker id's length + 20) bytes per worker: with the default 40-character ids,
//! 1 KB (one write unit per beat) up to about 8 workers, one more unit per KB after that.
//!
//! Lease counters no longer move while their owner is alive, so every worker of an
//! application must use heartbeats (the default) or none: a worker that renews leases
//! (the Java KCL, `kcl-rs`, or this library with heartbeats off) takes the leases of a
//! heartbeat worker as expired after the failover time. Leases of owners that are not in
//! the fleet (a Java KCL table being taken over, say) still expire by the Java rule.

mod fleet_table;
mod liveness;
mod load_meter;
#[cfg(any(test, feature = "test-util"))]
mod memory_fleet_store;

use std::collections::HashMap;

use async_trait::async_trait;

use crate::error::Error;
pub use fleet_table::FleetTable;
pub(crate) use liveness::Liveness;
pub use load_meter::{LoadMeter, ShardMeter, WorkerLoad};
#[cfg(any(test, feature = "test-util"))]
pub use memory_fleet_store::MemoryFleetStore;

/// What a heartbeat read back: every worker's heartbeat and the notices addressed to the
/// worker that beat. A heartbeat is the writer's wall clock in milliseconds since the Unix
/// epoch (one more than its last beat if the clock stood still or went back): only its
/// changes count for liveness, judged on the reader's own clock, but operators can read
/// roughly when a worker last beat.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct FleetView {
    /// Every registered worker's last heartbeat (an opaque counter), the caller's included.
    pub beats: HashMap<String, u64>,
    /// Notices for the caller: `lease_key@counter` for each lease taken from it.
    pub notices: Vec<String>,
    /// The load each worker reported with its last beat (workers of versions that do not
    /// report one are missing).
    pub loads: HashMap<String, WorkerLoad>,
}

/// Storage of the fleet's heartbeats: the seam between liveness logic and DynamoDB.
/// [`FleetTable`] is the DynamoDB implementation.
#[async_trait]
pub trait FleetStore: Send + Sync + std::fmt::Debug {
    /// Creates the table if it does not exist and waits until it can be used.
    ///
    /// # Cancellation
    /// Safe to drop; a creation already sent goes ahead.
    async fn create_table_if_not_exists(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Writes `worker`'s heartbeat `next`, if its entry holds one of `previous` (empty:
    /// registers it, whatever is there; more than one: the last beat, and one sent since
    /// that may or may not have landed), with its `load` if given, and deletes the notices
    /// in `handled`. Returns the
    /// fleet as it is after the write; `Ok(None)` when the entry holds none of them
    /// (another worker declared this one gone).
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still write the heartbeat.
    async fn beat(
        &self,
        worker: &str,
        previous: &[u64],
        next: u64,
        handled: &[String],
        load: Option<WorkerLoad>,
    ) -> Result<Option<FleetView>, Error>;

    /// The fleet as it is, without beating (for operators: `kinesis-cat leases`); empty
    /// when the fleet has no item yet. The notices are not read.
    ///
    /// # Cancellation
    /// Safe to drop: it only reads.
    async fn read(&self) -> Result<FleetView, Error>;

    /// Removes `worker`'s entry, notices and load if its heartbeat is still `beat`; `Ok(false)`
    /// if it is not (it beat since, or is gone already).
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still remove it.
    async fn remove(&self, worker: &str, beat: u64) -> Result<bool, Error>;

    /// Adds `notice` to `worker`'s notices, if the worker is registered (`Ok(false)` if
    /// not: a gone worker needs no notice).
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still add it.
    async fn notify(&self, worker: &str, notice: &str) -> Result<bool, Error>;
}

/// The notice that `lease_key` was taken from its owner, the take leaving its counter at
/// `counter`.
pub(crate) fn taken_notice(lease_key: &str, counter: u64) -> String {
    format!("{lease_key}@{counter}")
}

/// The lease key and counter of a notice made by [`taken_notice`].
pub(crate) fn parse_taken_notice(notice: &str) -> Option<(&str, u64)> {
    let (key, counter) = notice.rsplit_once('@')?;
    Some((key, counter.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_name_the_lease_and_the_counter_the_take_left() {
        let n = taken_notice("1:s@x:2:shardId-000000000001", 42);
        assert_eq!(
            parse_taken_notice(&n),
            Some(("1:s@x:2:shardId-000000000001", 42))
        );
        assert_eq!(parse_taken_notice("no-counter"), None);
        assert_eq!(parse_taken_notice("k@x"), None);
    }
}
