//! A lease table as the Java KCL 3.5 writes it in single-table mode (the schema in
//! `../shared/notes/kcl3-facts.md`), for the suites that check our consumer continues it.
//!
//! ```text
//!  seed_single_table(dynamodb, table, leases)
//!    ├─ one lease item per (shard, checkpoint): entityType LEASE, a Java owner, a
//!    │  counter, throughputKBps, and a graceful handoff left pending (checkpointOwner)
//!    └─ the other items 3.5 keeps there: a worker-metrics item and the leader lock,
//!       returned so a suite can check they were left exactly as they were
//!  seed_pending_handoff(dynamodb, table, shard, checkpoint, next_owner)
//!    └─ one lease a 3.x leader is handing from a (dead) Java worker to `next_owner`:
//!       leaseOwner = next_owner, checkpointOwner = the Java worker
//! ```
//!
//! The table must exist (create it with the consumer's `LeaseTable`, so its key schema is
//! the one the consumer uses).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// The Java worker that owns every seeded lease.
pub const JAVA_OWNER: &str = "java-worker-1";
/// The `throughputKBps` every seeded lease carries (a 3.x attribute ours must keep).
pub const THROUGHPUT_KBPS: &str = "1.5";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_owned())
}

/// Writes one lease item per `(shard id, checkpoint sequence number)` and the non-lease
/// items of a 3.5 table into `table`; returns the non-lease items as written.
///
/// # Panics
/// When a write fails (this is test support).
pub async fn seed_single_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    leases: &[(String, String)],
) -> Vec<HashMap<String, AttributeValue>> {
    for (shard, checkpoint) in leases {
        dynamodb
            .put_item()
            .table_name(table)
            .item("leaseKey", s(shard))
            .item("entityType", s("LEASE"))
            .item("leaseOwner", s(JAVA_OWNER))
            .item("leaseCounter", n("41"))
            .item("checkpoint", s(checkpoint))
            .item("checkpointSubSequenceNumber", n("0"))
            .item("ownerSwitchesSinceCheckpoint", n("0"))
            .item("throughputKBps", n(THROUGHPUT_KBPS))
            // A graceful handoff the 3.x leader started and never finished.
            .item("checkpointOwner", s("java-worker-0"))
            .send()
            .await
            .expect("PutItem of a 3.x lease");
    }
    let others = vec![
        HashMap::from([
            ("leaseKey".to_owned(), s(JAVA_OWNER)),
            ("entityType".to_owned(), s("WORKER_METRIC_STATS")),
            ("lut".to_owned(), n("1764400000")),
            (
                "sts".to_owned(),
                AttributeValue::M(HashMap::from([(
                    "C".to_owned(),
                    AttributeValue::L(vec![n("12"), n("-1")]),
                )])),
            ),
        ]),
        HashMap::from([
            ("leaseKey".to_owned(), s("Leader")),
            ("entityType".to_owned(), s("LEADER")),
            ("ownerName".to_owned(), s(JAVA_OWNER)),
        ]),
    ];
    for item in &others {
        dynamodb
            .put_item()
            .table_name(table)
            .set_item(Some(item.clone()))
            .send()
            .await
            .expect("PutItem of a 3.x item");
    }
    others
}

/// The previous owner of the lease [`seed_pending_handoff`] writes (it never runs).
pub const HANDOFF_FROM: &str = "java-worker-0";

/// Writes the lease of `shard` as a Java KCL 3.x leader leaves it when it starts a graceful
/// handoff to `next_owner` (`leaseOwner` = `next_owner`, `checkpointOwner` =
/// [`HANDOFF_FROM`], counter 41), checkpointed at sequence number `checkpoint`.
///
/// # Panics
/// When the write fails (this is test support).
pub async fn seed_pending_handoff(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    shard: &str,
    checkpoint: &str,
    next_owner: &str,
) {
    dynamodb
        .put_item()
        .table_name(table)
        .item("leaseKey", s(shard))
        .item("entityType", s("LEASE"))
        .item("leaseOwner", s(next_owner))
        .item("checkpointOwner", s(HANDOFF_FROM))
        .item("leaseCounter", n("41"))
        .item("checkpoint", s(checkpoint))
        .item("checkpointSubSequenceNumber", n("0"))
        .item("ownerSwitchesSinceCheckpoint", n("0"))
        .item("throughputKBps", n(THROUGHPUT_KBPS))
        .send()
        .await
        .expect("PutItem of a 3.x lease pending a handoff");
}

/// Asserts that `others` are stored exactly as written and that each of `shards`' lease
/// items kept its 3.x attributes (`entityType`; `throughputKBps` still a number), with the pending handoff ended (a take removes
/// `checkpointOwner`, as a 3.x take does).
///
/// # Panics
/// When they are not (this is test support).
pub async fn assert_left_alone(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    others: &[HashMap<String, AttributeValue>],
    shards: impl IntoIterator<Item = &str>,
) {
    for item in others {
        let stored = dynamodb
            .get_item()
            .table_name(table)
            .key("leaseKey", item["leaseKey"].clone())
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem");
        assert_eq!(stored.item(), Some(item), "left alone");
    }
    for shard in shards {
        let stored = dynamodb
            .get_item()
            .table_name(table)
            .key("leaseKey", s(shard))
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem");
        let item = stored.item().expect("the lease item");
        assert_eq!(item.get("entityType"), Some(&s("LEASE")), "{shard}");
        // Still the 3.x attribute, a number of KB/s: by now our holder's measurement,
        // written with its renewals and checkpoints as a 3.x worker writes it.
        let kbps = item.get("throughputKBps").and_then(|v| v.as_n().ok());
        assert!(
            kbps.is_some_and(|k| k.parse::<f64>().is_ok_and(|k| k >= 0.0)),
            "{shard}: throughputKBps {kbps:?}"
        );
        assert_eq!(
            item.get("checkpointOwner"),
            None,
            "{shard}: the pending handoff ended with the take: a 3.x worker would skip the lease"
        );
    }
}
