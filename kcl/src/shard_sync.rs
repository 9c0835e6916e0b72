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
//! Children are found through `ListShards` parent links, which every Kinesis (and emulator)
//! returns; `ChildShards` from `GetRecords` is used too when the server sends it.
//!
//! # Usage
//! ```no_run
//! use std::sync::Arc;
//! use kinesis_consumer::{InitialPosition, LeaseStore, LeaseTable, ShardSync};
//!
//! # async fn demo(kinesis: aws_sdk_kinesis::Client, dynamodb: aws_sdk_dynamodb::Client) -> Result<(), kinesis_consumer::Error> {
//! let table = Arc::new(LeaseTable::new(dynamodb, "my-app"));
//! table.create_table_if_not_exists().await?;
//! let sync = ShardSync::new(kinesis, "my-stream", table, InitialPosition::TrimHorizon);
//! let outcome = sync.sync().await?;
//! println!("{} shards, created {:?}", outcome.shards, outcome.created);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_kinesis::types::Shard;
use backon::{ExponentialBuilder, Retryable};
use kinesis_agg::HashKeyRange;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::lease::{Checkpoint, Lease};
use crate::leases::LeaseStore;
use crate::metrics as m;

/// Delays between tries of one `ListShards` page that failed with a retryable error:
/// 200 ms doubling up to 3.2 s; the eighth failure is returned.
fn list_shards_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_millis(3_200))
        .with_max_times(7)
}

/// Where a worker starts reading shards that have no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InitialPosition {
    /// The oldest record still in the stream.
    #[default]
    TrimHorizon,
    /// Only records put after the lease is first started.
    Latest,
    /// Records that arrived at or after this time.
    AtTimestamp(SystemTime),
}

impl InitialPosition {
    pub(crate) fn checkpoint(self) -> Checkpoint {
        match self {
            InitialPosition::TrimHorizon => Checkpoint::TrimHorizon,
            InitialPosition::Latest => Checkpoint::Latest,
            InitialPosition::AtTimestamp(_) => Checkpoint::AtTimestamp,
        }
    }
}

/// A shard as the lease logic needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardInfo {
    /// The shard id.
    pub(crate) id: String,
    /// Parent and adjacent parent, when present.
    pub(crate) parents: Vec<String>,
    /// The hash key range.
    pub(crate) range: Option<HashKeyRange>,
    /// Whether the shard is closed (has an ending sequence number).
    pub(crate) closed: bool,
}

impl ShardInfo {
    fn from_sdk(s: &Shard) -> Self {
        let parents = [s.parent_shard_id(), s.adjacent_parent_shard_id()]
            .into_iter()
            .flatten()
            .map(str::to_owned)
            .collect();
        let range = s
            .hash_key_range()
            .and_then(|r| HashKeyRange::parse(r.starting_hash_key(), r.ending_hash_key()).ok());
        Self {
            id: s.shard_id().to_owned(),
            parents,
            range,
            closed: s
                .sequence_number_range()
                .and_then(|r| r.ending_sequence_number())
                .is_some(),
        }
    }
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
        }
    }

    /// Every shard of the stream (open and closed), following `NextToken`.
    ///
    /// # Cancellation
    /// Safe to drop: it only reads.
    ///
    /// # Errors
    /// [`Error::Kinesis`] at once for an error retrying cannot fix, or once retries run out
    /// ([`list_shards_backoff`]: 7 retries of a page, 200 ms doubling up to 3.2 s).
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
                    None => self.kinesis.list_shards().stream_name(&self.stream),
                };
                async move {
                    req.send()
                        .await
                        .map_err(|e| Error::kinesis("ListShards", &self.stream, &e))
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
        let shards = self.list_shards().await?;
        let leases = self.store.list_leases().await?;
        let plan = plan(&shards, &leases, self.initial_position);
        let mut outcome = SyncOutcome {
            shards: shards.len(),
            ..SyncOutcome::default()
        };
        for lease in plan.create {
            if self.store.create_lease_if_not_exists(&lease).await? {
                tracing::info!(stream = %self.stream, lease = %lease.lease_key, checkpoint = %lease.checkpoint, "created lease");
                outcome.created.push(lease.lease_key);
            }
        }
        for key in plan.delete {
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
            let lease = Lease::new(c.shard_id(), Checkpoint::TrimHorizon)
                .with_parents(c.parent_shards().to_vec())
                .with_hash_key_range(range);
            self.store.create_lease_if_not_exists(&lease).await?;
        }
        Ok(())
    }
}

/// What a sync should write.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Leases to create, parents before children.
    pub(crate) create: Vec<Lease>,
    /// Keys of `SHARD_END` leases to delete.
    pub(crate) delete: Vec<String>,
}

/// Decides which leases to create and delete. Pure, so it is unit tested directly.
pub(crate) fn plan(shards: &[ShardInfo], leases: &[Lease], initial: InitialPosition) -> Plan {
    let by_id: BTreeMap<&str, &ShardInfo> = shards.iter().map(|s| (s.id.as_str(), s)).collect();
    let existing: HashMap<&str, &Lease> =
        leases.iter().map(|l| (l.lease_key.as_str(), l)).collect();
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in shards {
        for p in &s.parents {
            children.entry(p.as_str()).or_default().push(s.id.as_str());
        }
    }

    // Shards with a leased descendant must never get a lease: they were finished and
    // cleaned up, or deliberately skipped.
    fn leased_below<'a>(
        id: &'a str,
        children: &HashMap<&'a str, Vec<&'a str>>,
        existing: &HashMap<&str, &Lease>,
        memo: &mut HashMap<&'a str, bool>,
    ) -> bool {
        if let Some(v) = memo.get(id) {
            return *v;
        }
        memo.insert(id, false); // cycles cannot happen, but never loop on bad data
        let v = children.get(id).is_some_and(|cs| {
            cs.iter()
                .any(|c| existing.contains_key(c) || leased_below(c, children, existing, memo))
        });
        memo.insert(id, v);
        v
    }
    let mut memo = HashMap::new();

    // Parents before children: depth-first over the parent links.
    let mut order: Vec<&str> = Vec::new();
    let mut visited: HashSet<&str> = HashSet::new();
    fn visit<'a>(
        id: &'a str,
        by_id: &BTreeMap<&'a str, &'a ShardInfo>,
        visited: &mut HashSet<&'a str>,
        order: &mut Vec<&'a str>,
    ) {
        if !visited.insert(id) {
            return;
        }
        if let Some(s) = by_id.get(id) {
            for p in &s.parents {
                visit(p.as_str(), by_id, visited, order);
            }
            order.push(id);
        }
    }
    for id in by_id.keys() {
        visit(id, &by_id, &mut visited, &mut order);
    }

    let mut plan = Plan::default();
    let mut leased: HashSet<&str> = existing.keys().copied().collect();
    for id in order {
        if leased.contains(id) || leased_below(id, &children, &existing, &mut memo) {
            continue;
        }
        let s = by_id[id];
        let checkpoint = if s.parents.iter().any(|p| leased.contains(p.as_str())) {
            Checkpoint::TrimHorizon
        } else {
            match initial {
                InitialPosition::Latest if s.closed => continue,
                other => other.checkpoint(),
            }
        };
        leased.insert(id);
        plan.create.push(
            Lease::new(id, checkpoint)
                .with_parents(s.parents.clone())
                .with_hash_key_range(s.range),
        );
    }

    for lease in leases {
        if !lease.checkpoint.is_shard_end() {
            continue;
        }
        let key = lease.lease_key.as_str();
        let gone = !by_id.contains_key(key);
        let kids = children.get(key).map(Vec::as_slice).unwrap_or_default();
        let children_started = !kids.is_empty()
            && kids.iter().all(|c| {
                existing
                    .get(c)
                    .is_some_and(|l| l.checkpoint.has_progressed())
            });
        if gone || children_started {
            plan.delete.push(lease.lease_key.clone());
        }
    }
    plan
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

    fn shard(id: &str, parents: &[&str], closed: bool) -> ShardInfo {
        ShardInfo {
            id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            range: None,
            closed,
        }
    }

    fn keys(plan: &Plan) -> Vec<(String, Checkpoint)> {
        plan.create
            .iter()
            .map(|l| (l.lease_key.clone(), l.checkpoint.clone()))
            .collect()
    }

    /// s0 split into s2, s3; s1 and s3 merged into s4.
    fn resharded() -> Vec<ShardInfo> {
        vec![
            shard("s4", &["s1", "s3"], false),
            shard("s3", &["s0"], true),
            shard("s2", &["s0"], false),
            shard("s1", &[], true),
            shard("s0", &[], true),
        ]
    }

    #[test]
    fn trim_horizon_leases_everything_parents_first() {
        let plan = plan(&resharded(), &[], InitialPosition::TrimHorizon);
        let got: Vec<String> = keys(&plan).into_iter().map(|(k, _)| k).collect();
        let pos = |k: &str| got.iter().position(|x| x == k).unwrap();
        assert_eq!(got.len(), 5);
        assert!(pos("s0") < pos("s2") && pos("s0") < pos("s3"));
        assert!(pos("s1") < pos("s4") && pos("s3") < pos("s4"));
        assert!(plan
            .create
            .iter()
            .all(|l| l.checkpoint == Checkpoint::TrimHorizon));
        let s4 = plan.create.iter().find(|l| l.lease_key == "s4").unwrap();
        assert_eq!(s4.parent_shard_ids, vec!["s1", "s3"]);
    }

    #[test]
    fn latest_leases_open_shards_only() {
        let plan = plan(&resharded(), &[], InitialPosition::Latest);
        let mut got = keys(&plan);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                ("s2".into(), Checkpoint::Latest),
                ("s4".into(), Checkpoint::Latest)
            ]
        );
    }

    #[test]
    fn children_of_leased_shards_start_at_trim_horizon() {
        let existing = vec![Lease::new("s0", Checkpoint::Latest)];
        let shards = vec![
            shard("s0", &[], true),
            shard("s1", &["s0"], false),
            shard("s2", &["s0"], false),
        ];
        let plan = plan(&shards, &existing, InitialPosition::Latest);
        let mut got = keys(&plan);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![
                ("s1".into(), Checkpoint::TrimHorizon),
                ("s2".into(), Checkpoint::TrimHorizon)
            ]
        );
    }

    #[test]
    fn ancestors_of_leased_shards_are_never_recreated() {
        // s0 was finished and deleted; its child s1 has a lease.
        let existing = vec![Lease::new("s1", Checkpoint::at("9", 0).unwrap())];
        let shards = vec![shard("s0", &[], true), shard("s1", &["s0"], false)];
        let plan = plan(&shards, &existing, InitialPosition::TrimHorizon);
        assert!(plan.create.is_empty(), "{:?}", plan.create);
    }

    #[test]
    fn finished_leases_are_deleted_when_gone_or_children_progressed() {
        let shards = vec![
            shard("s0", &[], true),
            shard("s1", &["s0"], false),
            shard("s5", &[], true),
            shard("s6", &["s5"], false),
        ];
        let existing = vec![
            Lease::new("s0", Checkpoint::ShardEnd),
            Lease::new("s1", Checkpoint::at("12", 0).unwrap()),
            Lease::new("gone", Checkpoint::ShardEnd),
            Lease::new("gone-not-finished", Checkpoint::at("1", 0).unwrap()),
            Lease::new("s5", Checkpoint::ShardEnd),
            Lease::new("s6", Checkpoint::TrimHorizon),
        ];
        let mut deleted = plan(&shards, &existing, InitialPosition::TrimHorizon).delete;
        deleted.sort();
        assert_eq!(deleted, vec!["gone", "s0"]);
    }
}
