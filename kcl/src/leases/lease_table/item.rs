//! The lease table's items: a [`Lease`] as DynamoDB attributes (the Java KCL 2.x names
//! and types) and back.
//!
//! ```text
//!  DynamoDB item (Java KCL 2.x names)            Lease
//!  leaseKey S ──────────────────────────────────▶ lease_key
//!  leaseOwner S?, leaseCounter N ───────────────▶ owner, counter
//!  checkpoint S + checkpointSubSequenceNumber N ─▶ checkpoint: Checkpoint
//!  pendingCheckpoint* S/N/B ────────────────────▶ pending_checkpoint, pending_checkpoint_state
//!  ownerSwitchesSinceCheckpoint N ──────────────▶ owner_switches_since_checkpoint
//!  parentShardId SS, childShardIds SS ──────────▶ parent_shard_ids, child_shard_ids
//!  startingHashKey / endingHashKey S ───────────▶ hash_key_range
//!  streamName S + shardId S (multi-stream) ─────▶ stream (checked against leaseKey)
//!  throughputKBps N (3.x) ──────────────────────▶ throughput
//! ```
//!
//! Items of the Java KCL 3.5's single-table format that are not leases (`entityType` other
//! than `LEASE`) are told apart by [`other_entity`] and never read as leases; attributes
//! this library does not know are never written, and its updates leave them in place.
//!
//! Reading checks every attribute it uses and never panics: an odd item is an
//! [`Error::InvalidLease`] saying what is wrong with it.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use kinesis_agg::HashKeyRange;

use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::leases::{Lease, Throughput};
use crate::multi_stream::StreamIdentifier;

/// Attribute names of the Java KCL 2.x lease table.
pub(super) mod attr {
    pub(crate) const LEASE_KEY: &str = "leaseKey";
    pub(crate) const LEASE_OWNER: &str = "leaseOwner";
    pub(crate) const LEASE_COUNTER: &str = "leaseCounter";
    pub(crate) const CHECKPOINT: &str = "checkpoint";
    pub(crate) const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
    pub(crate) const PENDING: &str = "pendingCheckpoint";
    pub(crate) const PENDING_SUB: &str = "pendingCheckpointSubSequenceNumber";
    pub(crate) const PENDING_STATE: &str = "pendingCheckpointState";
    pub(crate) const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
    pub(crate) const PARENTS: &str = "parentShardId";
    pub(crate) const CHILDREN: &str = "childShardIds";
    pub(crate) const STARTING_HASH_KEY: &str = "startingHashKey";
    pub(crate) const ENDING_HASH_KEY: &str = "endingHashKey";
    /// The Java KCL 3.x's old owner while a graceful handoff is pending.
    pub(crate) const CHECKPOINT_OWNER: &str = "checkpointOwner";
    /// The Java KCL 3.5's item kind in a single-table lease table: `LEASE` (or absent) for
    /// a lease; `WORKER_METRIC_STATS`, `LEADER`, ... for items that only reuse `leaseKey`.
    pub(crate) const ENTITY_TYPE: &str = "entityType";
    /// A multi-stream lease's serialized stream identifier, `account:stream:creationEpoch`.
    pub(crate) const STREAM_NAME: &str = "streamName";
    /// A multi-stream lease's bare shard id (its `leaseKey` is `streamName:shardId`).
    pub(crate) const SHARD_ID: &str = "shardId";
    /// The Java KCL 3.x's measured load of the shard: a number of KB (1,024 bytes) per
    /// second, written by the holder with its renewals.
    pub(crate) const THROUGHPUT: &str = "throughputKBps";
}

/// The kind of a lease table item that is not a lease (the Java KCL 3.5's single-table
/// items: worker metrics, coordinator state, ...), to be left alone; `None` for a lease.
pub(super) fn other_entity(item: &HashMap<String, AttributeValue>) -> Option<&str> {
    match item.get(attr::ENTITY_TYPE) {
        Some(AttributeValue::S(kind)) if kind != "LEASE" => Some(kind),
        _ => None,
    }
}

/// A number attribute.
pub(super) fn num(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// A string attribute.
pub(super) fn string(s: &str) -> AttributeValue {
    AttributeValue::S(s.to_owned())
}

/// A throughput as the number attribute `throughputKBps` holds (three decimals: a byte
/// per second is about 0.001 KB/s).
pub(super) fn throughput_number(t: Throughput) -> AttributeValue {
    AttributeValue::N(format!("{:.3}", t.kbps()))
}

/// A binary attribute.
pub(super) fn binary(b: &Bytes) -> AttributeValue {
    AttributeValue::B(Blob::new(b.to_vec()))
}

/// A lease as a DynamoDB item, with the Java KCL 2.x attribute names and types.
pub(super) fn lease_to_item(lease: &Lease) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::new();
    item.insert(
        attr::LEASE_KEY.to_owned(),
        AttributeValue::S(lease.lease_key.clone()),
    );
    if let Some(owner) = &lease.owner {
        item.insert(
            attr::LEASE_OWNER.to_owned(),
            AttributeValue::S(owner.clone()),
        );
    }
    item.insert(attr::LEASE_COUNTER.to_owned(), num(lease.counter));
    item.insert(
        attr::CHECKPOINT.to_owned(),
        AttributeValue::S(lease.checkpoint.as_attribute().to_owned()),
    );
    item.insert(
        attr::CHECKPOINT_SUB.to_owned(),
        num(lease.checkpoint.sub_sequence_number()),
    );
    item.insert(
        attr::OWNER_SWITCHES.to_owned(),
        num(lease.owner_switches_since_checkpoint),
    );
    if let Some(p) = &lease.pending_checkpoint {
        item.insert(
            attr::PENDING.to_owned(),
            AttributeValue::S(p.as_attribute().to_owned()),
        );
        item.insert(attr::PENDING_SUB.to_owned(), num(p.sub_sequence_number()));
    }
    if let Some(state) = &lease.pending_checkpoint_state {
        item.insert(attr::PENDING_STATE.to_owned(), binary(state));
    }
    if !lease.parent_shard_ids.is_empty() {
        item.insert(
            attr::PARENTS.to_owned(),
            AttributeValue::Ss(lease.parent_shard_ids.clone()),
        );
    }
    if !lease.child_shard_ids.is_empty() {
        item.insert(
            attr::CHILDREN.to_owned(),
            AttributeValue::Ss(lease.child_shard_ids.clone()),
        );
    }
    if let Some(t) = lease.throughput {
        item.insert(attr::THROUGHPUT.to_owned(), throughput_number(t));
    }
    if let Some(w) = &lease.checkpoint_owner {
        item.insert(attr::CHECKPOINT_OWNER.to_owned(), string(w));
    }
    if let Some(range) = &lease.hash_key_range {
        item.insert(
            attr::STARTING_HASH_KEY.to_owned(),
            AttributeValue::S(range.start().to_string()),
        );
        item.insert(
            attr::ENDING_HASH_KEY.to_owned(),
            AttributeValue::S(range.end().to_string()),
        );
    }
    if let Some(stream) = &lease.stream {
        item.insert(attr::STREAM_NAME.to_owned(), string(&stream.to_string()));
        item.insert(attr::SHARD_ID.to_owned(), string(lease.shard_id()));
    }
    item
}

/// Reads an item back, checking every attribute it uses; never panics on odd input.
pub(super) fn lease_from_item(item: &HashMap<String, AttributeValue>) -> Result<Lease, Error> {
    let lease_key = match item.get(attr::LEASE_KEY) {
        Some(AttributeValue::S(k)) => k.clone(),
        other => {
            return Err(Error::InvalidLease {
                lease_key: None,
                reason: format!("leaseKey is {other:?}, not a string"),
            })
        }
    };
    let bad = |reason: String| Error::InvalidLease {
        lease_key: Some(lease_key.clone()),
        reason,
    };
    let number = |name: &str| -> Result<Option<u64>, Error> {
        match item.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(n)) => n
                .parse::<u64>()
                .map(Some)
                .map_err(|_| bad(format!("{name} = {n:?} is not a non-negative integer"))),
            Some(other) => Err(bad(format!("{name} is {other:?}, not a number"))),
        }
    };
    let string = |name: &str| -> Result<Option<String>, Error> {
        match item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
            Some(other) => Err(bad(format!("{name} is {other:?}, not a string"))),
        }
    };
    let string_set = |name: &str| -> Result<Vec<String>, Error> {
        match item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
            Some(AttributeValue::Ss(v)) => Ok(v.clone()),
            Some(AttributeValue::S(s)) => Ok(vec![s.clone()]),
            Some(AttributeValue::L(v)) => v
                .iter()
                .map(|x| match x {
                    AttributeValue::S(s) => Ok(s.clone()),
                    other => Err(bad(format!("{name} holds {other:?}, not a string"))),
                })
                .collect(),
            Some(other) => Err(bad(format!("{name} is {other:?}, not a string set"))),
        }
    };
    let owner = string(attr::LEASE_OWNER)?;
    let counter =
        number(attr::LEASE_COUNTER)?.ok_or_else(|| bad("no leaseCounter attribute".into()))?;
    let checkpoint_text =
        string(attr::CHECKPOINT)?.ok_or_else(|| bad("no checkpoint attribute".into()))?;
    let checkpoint_sub = number(attr::CHECKPOINT_SUB)?.unwrap_or(0);
    let checkpoint = Checkpoint::from_attributes(&checkpoint_text, checkpoint_sub)
        .ok_or_else(|| bad(format!("checkpoint {checkpoint_text:?} is not understood")))?;
    let pending_checkpoint = match string(attr::PENDING)? {
        None => None,
        Some(text) => {
            let sub = number(attr::PENDING_SUB)?.unwrap_or(0);
            Some(
                Checkpoint::from_attributes(&text, sub)
                    .ok_or_else(|| bad(format!("pendingCheckpoint {text:?} is not understood")))?,
            )
        }
    };
    let pending_checkpoint_state = match item.get(attr::PENDING_STATE) {
        None | Some(AttributeValue::Null(_)) => None,
        Some(AttributeValue::B(b)) => Some(Bytes::copy_from_slice(b.as_ref())),
        // Some KCL versions wrote the state as a number: hand over its text.
        Some(AttributeValue::N(n)) | Some(AttributeValue::S(n)) => {
            Some(Bytes::copy_from_slice(n.as_bytes()))
        }
        Some(other) => {
            return Err(bad(format!(
                "pendingCheckpointState is {other:?}, not binary"
            )))
        }
    };
    let hash_key_range = match (
        string(attr::STARTING_HASH_KEY)?,
        string(attr::ENDING_HASH_KEY)?,
    ) {
        (Some(s), Some(e)) => Some(
            HashKeyRange::parse(&s, &e)
                .map_err(|err| bad(format!("hash key range {s}..{e}: {err}")))?,
        ),
        _ => None,
    };
    let stream = match (string(attr::STREAM_NAME)?, string(attr::SHARD_ID)?) {
        (None, _) => None,
        (Some(text), shard) => {
            let stream: StreamIdentifier =
                text.parse().map_err(|e| bad(format!("streamName: {e}")))?;
            let shard = shard.ok_or_else(|| bad("streamName without shardId".into()))?;
            if stream.lease_key(&shard) != lease_key {
                return Err(bad(format!(
                    "leaseKey is not streamName:shardId ({text}:{shard})"
                )));
            }
            Some(stream)
        }
    };
    let throughput = match item.get(attr::THROUGHPUT) {
        None | Some(AttributeValue::Null(_)) => None,
        Some(AttributeValue::N(n)) => Some(
            n.parse::<f64>()
                .ok()
                .and_then(Throughput::from_kbps)
                .ok_or_else(|| {
                    bad(format!(
                        "throughputKBps = {n:?} is not a non-negative number"
                    ))
                })?,
        ),
        Some(other) => return Err(bad(format!("throughputKBps is {other:?}, not a number"))),
    };
    Ok(Lease {
        owner,
        counter,
        checkpoint,
        pending_checkpoint,
        pending_checkpoint_state,
        owner_switches_since_checkpoint: number(attr::OWNER_SWITCHES)?.unwrap_or(0),
        parent_shard_ids: string_set(attr::PARENTS)?,
        child_shard_ids: string_set(attr::CHILDREN)?,
        hash_key_range,
        stream,
        throughput,
        checkpoint_owner: string(attr::CHECKPOINT_OWNER)?,
        lease_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kcl_3_5_items_that_are_not_leases_are_told_apart() {
        let item = |pairs: &[(&str, &str)]| -> HashMap<String, AttributeValue> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), AttributeValue::S((*v).to_owned())))
                .collect()
        };
        // A worker-metrics item as the Java KCL 3.5 writes it into the lease table.
        let metrics = item(&[
            ("leaseKey", "worker-1"),
            ("entityType", "WORKER_METRIC_STATS"),
        ]);
        assert_eq!(other_entity(&metrics), Some("WORKER_METRIC_STATS"));
        assert_eq!(
            other_entity(&item(&[("leaseKey", "Leader"), ("entityType", "LEADER")])),
            Some("LEADER")
        );
        // Leases: marked LEASE, or not marked (2.x and 3.0–3.4).
        let mut lease = lease_to_item(&Lease::new("shardId-1", Checkpoint::TrimHorizon));
        assert_eq!(other_entity(&lease), None);
        lease.insert("entityType".into(), AttributeValue::S("LEASE".into()));
        assert_eq!(other_entity(&lease), None);
        assert_eq!(lease_from_item(&lease).unwrap().lease_key, "shardId-1");
    }

    #[test]
    fn items_round_trip_with_java_names() {
        let mut lease = Lease::new("shardId-000000000007", Checkpoint::at("4959", 3).unwrap())
            .with_parents(vec![
                "shardId-000000000001".into(),
                "shardId-000000000002".into(),
            ])
            .with_hash_key_range(Some(HashKeyRange::parse("0", "1000").unwrap()));
        lease.owner = Some("w1".into());
        lease.counter = 42;
        lease.pending_checkpoint = Some(Checkpoint::at("5000", 0).unwrap());
        lease.pending_checkpoint_state = Some(Bytes::from_static(b"state"));
        lease.owner_switches_since_checkpoint = 2;
        lease.child_shard_ids = vec!["shardId-000000000009".into()];
        lease.throughput = Throughput::from_kbps(12.5);
        lease.checkpoint_owner = Some("w0".into());
        let item = lease_to_item(&lease);
        for name in [
            "checkpointOwner",
            "leaseKey",
            "leaseOwner",
            "leaseCounter",
            "checkpoint",
            "checkpointSubSequenceNumber",
            "pendingCheckpoint",
            "pendingCheckpointSubSequenceNumber",
            "pendingCheckpointState",
            "ownerSwitchesSinceCheckpoint",
            "parentShardId",
            "childShardIds",
            "startingHashKey",
            "endingHashKey",
            "throughputKBps",
        ] {
            assert!(item.contains_key(name), "{name} missing");
        }
        assert_eq!(item["leaseCounter"], AttributeValue::N("42".into()));
        assert!(matches!(item["parentShardId"], AttributeValue::Ss(_)));
        assert!(matches!(
            item["pendingCheckpointState"],
            AttributeValue::B(_)
        ));
        assert_eq!(item["throughputKBps"], AttributeValue::N("12.500".into()));
        assert_eq!(lease_from_item(&item).unwrap(), lease);
    }

    #[test]
    fn multi_stream_leases_round_trip_with_java_names() {
        let stream: StreamIdentifier = "123456789012:orders:1700000000".parse().unwrap();
        let lease = Lease::new_multi_stream(stream, "shardId-000000000001", Checkpoint::Latest)
            .with_parents(vec!["shardId-000000000000".into()]);
        let item = lease_to_item(&lease);
        assert_eq!(
            item["leaseKey"],
            string("123456789012:orders:1700000000:shardId-000000000001")
        );
        assert_eq!(item["streamName"], string("123456789012:orders:1700000000"));
        assert_eq!(item["shardId"], string("shardId-000000000001"));
        assert_eq!(lease_from_item(&item).unwrap(), lease);
        // Single-stream leases carry neither attribute.
        let single = lease_to_item(&Lease::new("shardId-1", Checkpoint::Latest));
        assert!(!single.contains_key("streamName") && !single.contains_key("shardId"));
        // Inconsistent multi-stream items are refused, saying why.
        for (name, value, says) in [
            ("streamName", "orders", "streamName"),
            (
                "shardId",
                "shardId-000000000009",
                "leaseKey is not streamName:shardId",
            ),
        ] {
            let mut odd = item.clone();
            odd.insert(name.into(), string(value));
            let e = lease_from_item(&odd).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
        let mut odd = item.clone();
        odd.remove("shardId");
        let e = lease_from_item(&odd).unwrap_err();
        assert!(e.to_string().contains("without shardId"), "{e}");
    }

    #[test]
    fn throughput_is_read_as_the_java_kcl_3_writes_it_and_checked() {
        let mut item = lease_to_item(&Lease::new("shardId-1", Checkpoint::TrimHorizon));
        assert!(
            !item.contains_key("throughputKBps"),
            "none measured: none written"
        );
        assert_eq!(lease_from_item(&item).unwrap().throughput, None);
        // A Java double as DynamoDB returns it.
        item.insert(
            "throughputKBps".into(),
            AttributeValue::N("0.3427734375".into()),
        );
        let t = lease_from_item(&item).unwrap().throughput.unwrap();
        assert_eq!(t.kbps(), 0.3427734375);
        for bad in [
            AttributeValue::N("-1".into()),
            AttributeValue::N("x".into()),
        ] {
            item.insert("throughputKBps".into(), bad);
            let e = lease_from_item(&item).unwrap_err();
            assert!(e.to_string().contains("throughputKBps"), "{e}");
        }
        item.insert("throughputKBps".into(), AttributeValue::S("1".into()));
        let e = lease_from_item(&item).unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
    }

    #[test]
    fn odd_items_give_clear_errors_not_panics() {
        let mut item = HashMap::new();
        assert!(matches!(
            lease_from_item(&item),
            Err(Error::InvalidLease {
                lease_key: None,
                ..
            })
        ));
        item.insert("leaseKey".to_owned(), AttributeValue::S("k".into()));
        let e = lease_from_item(&item).unwrap_err();
        assert!(e.to_string().contains("leaseCounter"), "{e}");
        item.insert("leaseCounter".to_owned(), AttributeValue::S("x".into()));
        assert!(lease_from_item(&item).is_err());
        item.insert("leaseCounter".to_owned(), AttributeValue::N("-1".into()));
        assert!(lease_from_item(&item).is_err());
        item.insert("leaseCounter".to_owned(), AttributeValue::N("3".into()));
        item.insert(
            "checkpoint".to_owned(),
            AttributeValue::S("nonsense".into()),
        );
        let e = lease_from_item(&item).unwrap_err();
        assert!(e.to_string().contains("nonsense"), "{e}");
        item.insert(
            "checkpoint".to_owned(),
            AttributeValue::S("TRIM_HORIZON".into()),
        );
        // A numeric pendingCheckpointState (older KCL) is accepted.
        item.insert(
            "pendingCheckpointState".to_owned(),
            AttributeValue::N("7".into()),
        );
        let lease = lease_from_item(&item).unwrap();
        assert_eq!(
            lease.pending_checkpoint_state,
            Some(Bytes::from_static(b"7"))
        );
        assert_eq!(lease.owner, None);
        item.insert("leaseOwner".to_owned(), AttributeValue::N("1".into()));
        assert!(lease_from_item(&item).is_err());
    }
}
