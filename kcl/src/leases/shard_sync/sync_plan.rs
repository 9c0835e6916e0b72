//! [`plan`]: what a shard sync writes, decided without I/O from the stream's shards and
//! the table's leases.
//!
//! ```text
//!  shards (ListShards) + leases (scan) + InitialPosition ─▶ plan ─▶ Plan { create, delete }
//!   create, parents before children: a child of a leased shard ─▶ TRIM_HORIZON
//!                                     a root ─▶ the initial position (LATEST: open only)
//!                                     an ancestor of a leased shard ─▶ never
//!   delete: SHARD_END leases whose shard left the stream, or whose children all progressed
//!  shards + leases ─▶ ended_lease_of_open_shard ─▶ the shards are another stream's (re-created)
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_kinesis::types::Shard;
use kinesis_agg::HashKeyRange;

use crate::checkpoint::Checkpoint;
use crate::initial_position::InitialPosition;
use crate::leases::Lease;

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
    /// The shard as `ListShards` describes it.
    pub(crate) fn from_sdk(s: &Shard) -> Self {
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

/// A `SHARD_END` lease whose shard `ListShards` lists open, if any (its shard id): a shard
/// once closed never opens again, so the shards listed are those of another stream of the
/// same name (deleted and created again since the leases were written). Pure.
pub(crate) fn ended_lease_of_open_shard<'a>(
    shards: &[ShardInfo],
    leases: &'a [Lease],
) -> Option<&'a str> {
    let open: HashSet<&str> = shards
        .iter()
        .filter(|s| !s.closed)
        .map(|s| s.id.as_str())
        .collect();
    leases
        .iter()
        .find(|l| l.checkpoint.is_shard_end() && open.contains(l.lease_key.as_str()))
        .map(|l| l.lease_key.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_lease_of_an_open_shard_tells_another_stream() {
        let ended = |id: &str| Lease::new(id, Checkpoint::ShardEnd);
        let reading = |id: &str| Lease::new(id, Checkpoint::TrimHorizon);
        // Resharded: the ended leases are of closed shards, or of shards gone.
        let leases = [ended("s0"), ended("s1"), ended("s9"), reading("s2")];
        assert_eq!(ended_lease_of_open_shard(&resharded(), &leases), None);
        assert_eq!(ended_lease_of_open_shard(&[], &leases), None);
        // Created again: its first shard is open under the id of an ended one.
        let again = [shard("s0", &[], false)];
        assert_eq!(ended_lease_of_open_shard(&again, &leases), Some("s0"));
        // A lease still reading an open shard says nothing.
        assert_eq!(ended_lease_of_open_shard(&again, &[reading("s0")]), None);
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
