//! Shard sync: keeps the lease table in step with the stream's shards.
//!
//! ```text
//!  ListShards (paged by NextToken, no MaxResults) ─▶ shards + parent links
//!        │                                                   │
//!        ▼                                                   ▼
//!  lineage: parents before children          leases missing ─▶ create (parents first):
//!        │                                     child of a leased shard → TRIM_HORIZON
//!        │                                     root → initial position (LATEST: open only)
//!        │                                     ancestor of a leased shard → never
//!        ▼
//!  SHARD_END leases ─▶ delete when the shard left the stream, or every child has progressed
//! ```
//!
//! What to create and delete is decided by the pure `sync_plan::plan`; [`ShardSync`]
//! lists, scans and carries the plan out. A shard sync looks only at the leases of its own
//! stream: for a single-stream sync the leases without a stream (keyed by shard id), for a
//! multi-stream sync ([`ShardSync::new_multi_stream`]) the leases of its
//! [`StreamIdentifier`], whose keys it maps to shard ids for the plan and back. Children are found through `ListShards` parent
//! links, which every Kinesis (and emulator) returns; `ChildShards` from `GetRecords` is
//! used too when the server sends it.
//!
//! # Usage
//! ```no_run
//! use std::sync::Arc;
//! use kinesis_consumer::leases::{LeaseStore, LeaseTable, ShardSync};
//! use kinesis_consumer::InitialPosition;
//!
//! # async fn demo(kinesis: aws_sdk_kinesis::Client, dynamodb: aws_sdk_dynamodb::Client) -> Result<(), kinesis_consumer::Error> {
//! let table = Arc::new(LeaseTable::new(dynamodb, "my-app"));
//! table.create_table_if_not_exists().await?;
//! let sync = ShardSync::new(kinesis, "my-stream", table, InitialPosition::TrimHorizon);
//! let outcome = sync.sync().await?;
//! println!("{} shards, created {:?}", outcome.shards, outcome.created);
//! # Ok(()) }
//! ```

mod sync_plan;

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use kinesis_agg::HashKeyRange;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::initial_position::InitialPosition;
use crate::leases::{Lease, LeaseStore};
use crate::metric_names as m;
use crate::multi_stream::StreamIdentifier;
use sync_plan::{ended_lease_of_open_shard, plan, ShardInfo};

/// Delays between tries of one `ListShards` page that failed with a retryable error:
/// 200 ms doubling up to 3.2 s; the eighth failure is returned.
fn list_shards_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_millis(3_200))
        .with_max_times(7)
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncOutcome {
    /// Leases created.
    pub created: Vec<String>,
    /// Finished leases deleted.
    pub deleted: Vec<String>,
    /// Shards in the stream.
    pub shards: usize,
}

/// What [`ShardSync::sync_unless_replaced`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Synced {
    /// The leases were synced with the stream's shards.
    Done(SyncOutcome),
    /// The stream listed is not the one the leases are of: `shard` has a `SHARD_END`
    /// lease and is listed open. Nothing was written.
    Replaced {
        /// The shard whose ended lease gave it away, for logs.
        shard: String,
    },
}

/// Lists a stream's shards and creates and cleans up their leases.
#[derive(Debug, Clone)]
pub struct ShardSync {
    /// Kinesis client for `ListShards`.
    kinesis: aws_sdk_kinesis::Client,
    /// The stream.
    stream: String,
    /// The lease table.
    store: Arc<dyn LeaseStore>,
    /// Position for shards with no leased ancestor.
    initial_position: InitialPosition,
    /// The stream's identifier in a multi-stream application: its leases are keyed
    /// `identifier:shardId`. `None`: single-stream leases, keyed by shard id.
    stream_id: Option<StreamIdentifier>,
    /// The stream's ARN, when `ListShards` names it by ARN (a multi-stream stream given
    /// as an ARN, possibly of another account); `None`: by name.
    stream_arn: Option<String>,
}

impl ShardSync {
    /// A shard sync for `stream` writing leases to `store`.
    pub fn new(
        kinesis: aws_sdk_kinesis::Client,
        stream: impl Into<String>,
        store: Arc<dyn LeaseStore>,
        initial_position: InitialPosition,
    ) -> Self {
        Self {
            kinesis,
            stream: stream.into(),
            store,
            initial_position,
            stream_id: None,
            stream_arn: None,
        }
    }

    /// A shard sync for `stream` of a multi-stream application: it reads the stream by its
    /// name and keeps the leases keyed `account:stream:epoch:shardId` (with `streamName` and
    /// `shardId`) in `store`, leaving every other lease alone.
    pub fn new_multi_stream(
        kinesis: aws_sdk_kinesis::Client,
        stream: StreamIdentifier,
        store: Arc<dyn LeaseStore>,
        initial_position: InitialPosition,
    ) -> Self {
        Self {
            kinesis,
            stream: stream.stream_name().to_owned(),
            store,
            initial_position,
            stream_id: Some(stream),
            stream_arn: None,
        }
    }

    /// The same sync, naming the stream by `arn` in `ListShards` (so that a stream of
    /// another account is listed with a role it granted).
    pub(crate) fn with_stream_arn(mut self, arn: Option<String>) -> Self {
        self.stream_arn = arn;
        self
    }

    /// This stream's leases out of `leases`, keyed by shard id for the plan.
    fn own_leases(&self, leases: &[Lease]) -> Vec<Lease> {
        leases
            .iter()
            .filter(|l| l.stream.as_ref() == self.stream_id.as_ref())
            .map(|l| {
                let mut own = l.clone();
                own.lease_key = l.shard_id().to_owned();
                own.stream = None;
                own
            })
            .collect()
    }

    /// A lease of the plan (keyed by shard id) as it is stored.
    fn stored(&self, mut lease: Lease) -> Lease {
        if let Some(id) = &self.stream_id {
            lease.lease_key = id.lease_key(&lease.lease_key);
            lease.stream = Some(id.clone());
        }
        lease
    }

    /// Every shard of the stream (open and closed), following `NextToken`.
    ///
    /// # Cancellation
    /// Safe to drop: it only reads.
    ///
    /// # Errors
    /// [`Error::StreamNotFound`] when Kinesis answers `ResourceNotFoundException` (the
    /// stream was deleted); [`Error::Kinesis`] at once for another error retrying cannot
    /// fix, or once retries run out ([`list_shards_backoff`]: 7 retries of a page, 200 ms
    /// doubling up to 3.2 s).
    pub(crate) async fn list_shards(&self) -> Result<Vec<ShardInfo>, Error> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = || {
                ::metrics::counter!(m::KINESIS_CALLS, "operation" => "ListShards").increment(1);
                // MaxResults is left out on purpose: the server's default page is fine and
                // some emulators break NextToken paging when it is given.
                let req = match &token {
                    Some(t) => self.kinesis.list_shards().next_token(t),
                    None => match &self.stream_arn {
                        Some(arn) => self.kinesis.list_shards().stream_arn(arn),
                        None => self.kinesis.list_shards().stream_name(&self.stream),
                    },
                };
                async move {
                    req.send().await.map_err(|e| {
                        if e.as_service_error()
                            .is_some_and(|se| se.is_resource_not_found_exception())
                        {
                            Error::StreamNotFound {
                                stream: self.stream.clone(),
                            }
                        } else {
                            Error::kinesis("ListShards", &self.stream, &e)
                        }
                    })
                }
            };
            let out = page
                .retry(list_shards_backoff())
                .when(Error::is_retryable)
                .await?;
            shards.extend(out.shards().iter().map(ShardInfo::from_sdk));
            match out.next_token() {
                Some(t) if !t.is_empty() && !out.shards().is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(shards)
    }

    /// Creates missing leases and deletes finished ones.
    ///
    /// # Cancellation
    /// Safe to drop; what was written stays, and the next sync carries on.
    ///
    /// # Errors
    /// The first Kinesis or DynamoDB error.
    pub async fn sync(&self) -> Result<SyncOutcome, Error> {
        let leases = self.store.list_leases().await?;
        self.sync_with(&leases).await
    }

    /// [`sync`](Self::sync) on `leases`, a scan of the whole table made just before (one
    /// scan serves the syncs of every stream of a multi-stream application).
    ///
    /// # Cancellation
    /// As [`sync`](Self::sync).
    ///
    /// # Errors
    /// The first Kinesis or DynamoDB error.
    pub(crate) async fn sync_with(&self, leases: &[Lease]) -> Result<SyncOutcome, Error> {
        let shards = self.list_shards().await?;
        self.carry_out(&shards, self.own_leases(leases)).await
    }

    /// [`sync_with`](Self::sync_with), unless the shards listed are not those of the
    /// stream the leases were written for: a `SHARD_END` lease of a shard listed open
    /// ([`ended_lease_of_open_shard`]) means the stream of this name was deleted and
    /// created again, and nothing is written then (a multi-stream worker looks the
    /// stream up again).
    ///
    /// # Cancellation
    /// As [`sync`](Self::sync).
    ///
    /// # Errors
    /// As [`sync_with`](Self::sync_with).
    pub(crate) async fn sync_unless_replaced(&self, leases: &[Lease]) -> Result<Synced, Error> {
        let shards = self.list_shards().await?;
        let leases = self.own_leases(leases);
        if let Some(shard) = ended_lease_of_open_shard(&shards, &leases) {
            return Ok(Synced::Replaced {
                shard: shard.to_owned(),
            });
        }
        self.carry_out(&shards, leases).await.map(Synced::Done)
    }

    /// Writes what [`plan`] decides for `shards` and this stream's `leases`.
    async fn carry_out(
        &self,
        shards: &[ShardInfo],
        leases: Vec<Lease>,
    ) -> Result<SyncOutcome, Error> {
        let plan = plan(shards, &leases, self.initial_position);
        tracing::debug!(
            stream = %self.stream,
            shards = shards.len(),
            leases = leases.len(),
            create = plan.create.len(),
            delete = plan.delete.len(),
            "shard sync"
        );
        let mut outcome = SyncOutcome {
            shards: shards.len(),
            ..SyncOutcome::default()
        };
        for lease in plan.create {
            let lease = self.stored(lease);
            if self.store.create_lease_if_not_exists(&lease).await? {
                tracing::info!(stream = %self.stream, lease = %lease.lease_key, checkpoint = %lease.checkpoint, "created lease");
                outcome.created.push(lease.lease_key);
            }
        }
        for shard in plan.delete {
            let key = self
                .stored(Lease::new(shard, Checkpoint::ShardEnd))
                .lease_key;
            if self.store.delete_finished_lease(&key).await? {
                tracing::info!(stream = %self.stream, lease = %key, "deleted finished lease");
                outcome.deleted.push(key);
            }
        }
        Ok(outcome)
    }

    /// Syncs every `interval`, and whenever `shard_ended` is woken, until `cancel` fires;
    /// wakes `changed` after a sync that created or deleted leases. Failures are logged and
    /// the next sync tries again.
    ///
    /// # Cancellation
    /// Returns when `cancel` fires; dropping it is equally safe (as [`sync`](Self::sync)).
    pub(crate) async fn run(
        &self,
        interval: Duration,
        cancel: CancellationToken,
        shard_ended: Arc<Notify>,
        changed: Arc<Notify>,
        stream_gone: CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
                _ = shard_ended.notified() => {}
            }
            match self.sync().await {
                Ok(o) if !o.created.is_empty() || !o.deleted.is_empty() => changed.notify_one(),
                Ok(_) => {}
                Err(Error::StreamNotFound { stream }) => {
                    tracing::error!(stream = %stream, "the stream no longer exists (deleted?); the worker stops");
                    stream_gone.cancel();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "shard sync failed"),
            }
        }
    }

    /// Creates leases for children that `GetRecords` reported at a shard end (real Kinesis
    /// and some emulators send them; the next sync finds them through `ListShards` anyway).
    ///
    /// # Cancellation
    /// Safe to drop.
    ///
    /// # Errors
    /// The first DynamoDB error.
    pub(crate) async fn create_child_leases(
        &self,
        children: &[aws_sdk_kinesis::types::ChildShard],
    ) -> Result<(), Error> {
        for c in children {
            let range = c
                .hash_key_range()
                .and_then(|r| HashKeyRange::parse(r.starting_hash_key(), r.ending_hash_key()).ok());
            let lease = self.stored(
                Lease::new(c.shard_id(), Checkpoint::TrimHorizon)
                    .with_parents(c.parent_shards().to_vec())
                    .with_hash_key_range(range),
            );
            self.store.create_lease_if_not_exists(&lease).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use backon::BackoffBuilder;

    use super::*;

    #[test]
    fn list_shards_retries_seven_times_doubling_from_200_ms_to_3_2_s() {
        let delays: Vec<u64> = list_shards_backoff()
            .build()
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![200, 400, 800, 1_600, 3_200, 3_200, 3_200]);
    }
}
