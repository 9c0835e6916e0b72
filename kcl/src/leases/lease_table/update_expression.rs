//! [`UpdateExpression`]: a [`LeaseUpdate`] as the expressions of one conditional DynamoDB
//! `UpdateItem`.
//!
//! ```text
//!  LeaseUpdate ──UpdateExpression::new──▶ update:    SET … REMOVE … ADD #leaseCounter :one
//!                                         condition: [#leaseCounter = :expectedCounter]
//!                                                    [AND #leaseOwner = :expectedOwner
//!                                                     | AND attribute_not_exists(#leaseOwner)]
//!                                                    [AND #checkpointOwner = :expectedCheckpointOwner
//!                                                     | AND attribute_not_exists(#checkpointOwner)]
//!                                                    AND attribute_exists(#leaseKey)
//!                                         names (#…) and values (:…) of both
//! ```
//!
//! | change                     | clause                                                  |
//! |----------------------------|---------------------------------------------------------|
//! | `Owner(Some(w))`           | `SET leaseOwner = w`, `REMOVE checkpointOwner` (3.x)    |
//! | `Owner(None)`              | `REMOVE leaseOwner, checkpointOwner`                    |
//! | `CountOwnerSwitch`         | `ADD ownerSwitchesSinceCheckpoint 1`                    |
//! | `ResetOwnerSwitches`       | `SET ownerSwitchesSinceCheckpoint = 0`                  |
//! | `Checkpoint(c)`            | `SET checkpoint, checkpointSubSequenceNumber`           |
//! | `PendingCheckpoint(Some)`  | `SET pendingCheckpoint(SubSequenceNumber)`, `SET` or `REMOVE pendingCheckpointState` |
//! | `PendingCheckpoint(None)`  | `REMOVE` all three pending attributes                   |
//! | `ChildShardIds(ids)`       | `SET childShardIds` (`REMOVE` when empty)               |
//! | `Throughput(t)`            | `SET throughputKBps` (N, KB/s; the Java KCL 3.x's)       |
//! | `CheckpointOwner(Some(w))` | `SET checkpointOwner = w` (with `Owner(Some)`: no `REMOVE`) |
//! | `CheckpointOwner(None)`    | `REMOVE checkpointOwner`                                |
//!
//! The counter's `ADD` is left out when the update does not bump it (a handoff's start).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{attr, binary, num, string, throughput_number};
use crate::leases::{Change, CheckpointOwnerGuard, LeaseUpdate, OwnerGuard};

/// The pieces of one conditional `UpdateItem`.
#[derive(Debug, Default, PartialEq)]
pub(super) struct UpdateExpression {
    /// `SET` clauses.
    set: Vec<String>,
    /// `REMOVE` clauses.
    remove: Vec<String>,
    /// `ADD` clauses.
    add: Vec<String>,
    /// Conjuncts of the condition expression.
    condition: Vec<String>,
    /// `#placeholder` → attribute name.
    names: HashMap<String, String>,
    /// `:placeholder` → value.
    values: HashMap<String, AttributeValue>,
}

impl UpdateExpression {
    /// The expressions of `update`: its guard, its changes and the counter's increment.
    /// The condition also requires the item to exist, so that an update never creates a
    /// lease that was deleted.
    pub(super) fn new(update: &LeaseUpdate) -> Self {
        let mut u = Self::default();
        if let Some(expected) = update.guard.counter {
            let counter = u.name(attr::LEASE_COUNTER);
            let expected = u.value("expectedCounter", num(expected));
            u.condition.push(format!("{counter} = {expected}"));
        }
        match &update.guard.owner {
            OwnerGuard::Unchecked => {}
            OwnerGuard::Owner(owner) => {
                let n = u.name(attr::LEASE_OWNER);
                let p = u.value("expectedOwner", string(owner));
                u.condition.push(format!("{n} = {p}"));
            }
            OwnerGuard::Unowned => {
                let n = u.name(attr::LEASE_OWNER);
                u.condition.push(format!("attribute_not_exists({n})"));
            }
        }
        match &update.guard.checkpoint_owner {
            CheckpointOwnerGuard::Unchecked => {}
            CheckpointOwnerGuard::Absent => {
                let n = u.name(attr::CHECKPOINT_OWNER);
                u.condition.push(format!("attribute_not_exists({n})"));
            }
            CheckpointOwnerGuard::Is(w) => {
                let n = u.name(attr::CHECKPOINT_OWNER);
                let p = u.value("expectedCheckpointOwner", string(w));
                u.condition.push(format!("{n} = {p}"));
            }
        }
        let key = u.name(attr::LEASE_KEY);
        u.condition.push(format!("attribute_exists({key})"));
        // A handoff's start sets checkpointOwner itself: the owner change must not remove it.
        let sets_checkpoint_owner = update
            .changes
            .iter()
            .any(|c| matches!(c, Change::CheckpointOwner(_)));
        for change in &update.changes {
            match change {
                Change::Owner(Some(owner)) if sets_checkpoint_owner => {
                    u.set(attr::LEASE_OWNER, string(owner))
                }
                change => u.change(change),
            }
        }
        if update.bumps_counter {
            u.add_one(attr::LEASE_COUNTER);
        }
        u
    }

    /// Adds the clauses of one change.
    fn change(&mut self, change: &Change) {
        match change {
            // Any change of hands ends a Java KCL 3.x graceful handoff left pending (its
            // takes and evictions do the same): a 3.x worker would skip the lease forever.
            Change::Owner(Some(owner)) => {
                self.set(attr::LEASE_OWNER, string(owner));
                self.remove(attr::CHECKPOINT_OWNER);
            }
            Change::Owner(None) => {
                self.remove(attr::LEASE_OWNER);
                self.remove(attr::CHECKPOINT_OWNER);
            }
            Change::CountOwnerSwitch => self.add_one(attr::OWNER_SWITCHES),
            Change::ResetOwnerSwitches => self.set(attr::OWNER_SWITCHES, num(0)),
            Change::Checkpoint(checkpoint) => {
                self.set(attr::CHECKPOINT, string(checkpoint.as_attribute()));
                self.set(attr::CHECKPOINT_SUB, num(checkpoint.sub_sequence_number()));
            }
            Change::PendingCheckpoint(Some((pending, state))) => {
                self.set(attr::PENDING, string(pending.as_attribute()));
                self.set(attr::PENDING_SUB, num(pending.sub_sequence_number()));
                match state {
                    Some(state) => self.set(attr::PENDING_STATE, binary(state)),
                    None => self.remove(attr::PENDING_STATE),
                }
            }
            Change::PendingCheckpoint(None) => {
                self.remove(attr::PENDING);
                self.remove(attr::PENDING_SUB);
                self.remove(attr::PENDING_STATE);
            }
            Change::ChildShardIds(children) if children.is_empty() => self.remove(attr::CHILDREN),
            Change::ChildShardIds(children) => {
                self.set(attr::CHILDREN, AttributeValue::Ss(children.clone()))
            }
            Change::Throughput(throughput) => {
                self.set(attr::THROUGHPUT, throughput_number(*throughput))
            }
            Change::CheckpointOwner(Some(w)) => self.set(attr::CHECKPOINT_OWNER, string(w)),
            Change::CheckpointOwner(None) => self.remove(attr::CHECKPOINT_OWNER),
        }
    }

    /// The placeholder of an attribute name.
    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    /// The placeholder of a value.
    fn value(&mut self, key: &str, v: AttributeValue) -> String {
        let placeholder = format!(":{key}");
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    /// `SET attribute = v`.
    fn set(&mut self, attribute: &str, v: AttributeValue) {
        let (n, p) = (self.name(attribute), self.value(attribute, v));
        self.set.push(format!("{n} = {p}"));
    }

    /// `REMOVE attribute`.
    fn remove(&mut self, attribute: &str) {
        let n = self.name(attribute);
        self.remove.push(n);
    }

    /// `ADD attribute 1`.
    fn add_one(&mut self, attribute: &str) {
        let n = self.name(attribute);
        let p = self.value("one", num(1));
        self.add.push(format!("{n} {p}"));
    }

    /// The `UpdateExpression`.
    pub(super) fn update_expression(&self) -> String {
        let mut parts = Vec::new();
        if !self.set.is_empty() {
            parts.push(format!("SET {}", self.set.join(", ")));
        }
        if !self.remove.is_empty() {
            parts.push(format!("REMOVE {}", self.remove.join(", ")));
        }
        if !self.add.is_empty() {
            parts.push(format!("ADD {}", self.add.join(", ")));
        }
        parts.join(" ")
    }

    /// The `ConditionExpression`.
    pub(super) fn condition_expression(&self) -> String {
        self.condition.join(" AND ")
    }

    /// The `ExpressionAttributeNames` and `ExpressionAttributeValues`.
    pub(super) fn into_placeholders(
        self,
    ) -> (HashMap<String, String>, HashMap<String, AttributeValue>) {
        (self.names, self.values)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::leases::Lease;

    fn owned(owner: &str) -> Lease {
        let mut lease = Lease::new("shardId-1", Checkpoint::TrimHorizon);
        lease.owner = Some(owner.into());
        lease.counter = 7;
        lease
    }

    #[test]
    fn renewals_are_guarded_by_counter_and_owner() {
        let u = UpdateExpression::new(&owned("w1").renew());
        assert_eq!(u.update_expression(), "ADD #leaseCounter :one");
        assert_eq!(
            u.condition_expression(),
            "#leaseCounter = :expectedCounter AND #leaseOwner = :expectedOwner \
             AND attribute_not_exists(#checkpointOwner) AND attribute_exists(#leaseKey)"
        );
        let (names, values) = u.into_placeholders();
        assert_eq!(names["#leaseOwner"], "leaseOwner");
        assert_eq!(values[":expectedCounter"], num(7));
        assert_eq!(values[":expectedOwner"], string("w1"));
    }

    #[test]
    fn takes_are_guarded_by_the_counter_alone_and_count_owner_switches() {
        let u = UpdateExpression::new(&owned("w1").take("w2"));
        assert_eq!(
            u.update_expression(),
            "SET #leaseOwner = :leaseOwner REMOVE #checkpointOwner \
             ADD #ownerSwitchesSinceCheckpoint :one, #leaseCounter :one"
        );
        assert_eq!(
            u.condition_expression(),
            "#leaseCounter = :expectedCounter AND attribute_exists(#leaseKey)"
        );
        // Taking back one's own lease is no switch.
        let u = UpdateExpression::new(&owned("w1").take("w1"));
        assert_eq!(
            u.update_expression(),
            "SET #leaseOwner = :leaseOwner REMOVE #checkpointOwner ADD #leaseCounter :one"
        );
    }

    #[test]
    fn releases_remove_the_owner_and_unowned_leases_are_guarded_as_such() {
        let u = UpdateExpression::new(&owned("w1").release());
        assert_eq!(
            u.update_expression(),
            "REMOVE #leaseOwner, #checkpointOwner ADD #leaseCounter :one"
        );
        let free = Lease::new("shardId-1", Checkpoint::TrimHorizon);
        let u = UpdateExpression::new(&free.renew());
        assert!(
            u.condition_expression()
                .contains("attribute_not_exists(#leaseOwner)"),
            "{}",
            u.condition_expression()
        );
    }

    #[test]
    fn checkpoints_clear_the_pending_one_and_record_children() {
        let cp = Checkpoint::at("49", 3).unwrap();
        let u = UpdateExpression::new(&owned("w1").record_checkpoint(&cp, &[]));
        assert_eq!(
            u.update_expression(),
            "SET #checkpoint = :checkpoint, \
             #checkpointSubSequenceNumber = :checkpointSubSequenceNumber, \
             #ownerSwitchesSinceCheckpoint = :ownerSwitchesSinceCheckpoint \
             REMOVE #pendingCheckpoint, #pendingCheckpointSubSequenceNumber, \
             #pendingCheckpointState ADD #leaseCounter :one"
        );
        let (_, values) = u.into_placeholders();
        assert_eq!(values[":checkpoint"], string("49"));
        assert_eq!(values[":checkpointSubSequenceNumber"], num(3));
        let end = owned("w1").record_checkpoint(&Checkpoint::ShardEnd, &["c1".into()]);
        let (_, values) = UpdateExpression::new(&end).into_placeholders();
        assert_eq!(values[":checkpoint"], string("SHARD_END"));
        assert_eq!(
            values[":childShardIds"],
            AttributeValue::Ss(vec!["c1".into()])
        );
    }

    #[test]
    fn a_throughput_is_set_with_the_write_it_goes_with() {
        let t = crate::leases::Throughput::from_kbps(7.25).unwrap();
        let u = UpdateExpression::new(&owned("w1").renew().with(Change::Throughput(t)));
        assert_eq!(
            u.update_expression(),
            "SET #throughputKBps = :throughputKBps ADD #leaseCounter :one"
        );
        let (names, values) = u.into_placeholders();
        assert_eq!(names["#throughputKBps"], "throughputKBps");
        assert_eq!(values[":throughputKBps"], AttributeValue::N("7.250".into()));
    }

    #[test]
    fn a_handoff_starts_without_the_counter_and_ends_guarded_by_both_owners() {
        // The Java KCL 3.x's initiateGracefulLeaseHandoff: leaseOwner = old and no
        // checkpointOwner expected; both owners set; the counter neither checked nor moved.
        let start = owned("w1").start_handoff("w2").unwrap();
        let u = UpdateExpression::new(&start);
        assert_eq!(
            u.update_expression(),
            "SET #leaseOwner = :leaseOwner, #checkpointOwner = :checkpointOwner"
        );
        assert_eq!(
            u.condition_expression(),
            "#leaseOwner = :expectedOwner AND attribute_not_exists(#checkpointOwner) \
             AND attribute_exists(#leaseKey)"
        );
        let (_, values) = u.into_placeholders();
        assert_eq!(values[":leaseOwner"], string("w2"));
        assert_eq!(values[":checkpointOwner"], string("w1"));
        assert_eq!(values[":expectedOwner"], string("w1"));
        assert!(!values.contains_key(":one"));
        // Its end (by either side): checkpointOwner removed, the counter bumped, if both
        // owners are still as read (the Java KCL's assignLease by the previous owner).
        let mut pending = owned("w1");
        start.apply_to(&mut pending);
        let u = UpdateExpression::new(&pending.end_handoff().unwrap());
        assert_eq!(
            u.update_expression(),
            "REMOVE #checkpointOwner ADD #leaseCounter :one"
        );
        assert_eq!(
            u.condition_expression(),
            "#leaseOwner = :expectedOwner AND #checkpointOwner = :expectedCheckpointOwner \
             AND attribute_exists(#leaseKey)"
        );
        let (_, values) = u.into_placeholders();
        assert_eq!(values[":expectedOwner"], string("w2"));
        assert_eq!(values[":expectedCheckpointOwner"], string("w1"));
        // The previous owner's checkpoint meanwhile expects both owners as they are.
        let cp = Checkpoint::at("51", 0).unwrap();
        let u = UpdateExpression::new(&pending.record_checkpoint(&cp, &[]));
        assert_eq!(
            u.condition_expression(),
            "#leaseCounter = :expectedCounter AND #leaseOwner = :expectedOwner \
             AND #checkpointOwner = :expectedCheckpointOwner AND attribute_exists(#leaseKey)"
        );
        // No handoff to end on a plain lease, none to start on an unowned one.
        assert!(owned("w1").end_handoff().is_none());
        assert!(Lease::new("s", Checkpoint::TrimHorizon)
            .start_handoff("w2")
            .is_none());
    }

    #[test]
    fn prepared_checkpoints_set_or_remove_their_state() {
        let cp = Checkpoint::at("50", 0).unwrap();
        let state = Bytes::from_static(b"st");
        let u = UpdateExpression::new(&owned("w1").prepare_checkpoint(&cp, Some(&state)));
        assert_eq!(
            u.update_expression(),
            "SET #pendingCheckpoint = :pendingCheckpoint, \
             #pendingCheckpointSubSequenceNumber = :pendingCheckpointSubSequenceNumber, \
             #pendingCheckpointState = :pendingCheckpointState ADD #leaseCounter :one"
        );
        let u = UpdateExpression::new(&owned("w1").prepare_checkpoint(&cp, None));
        assert!(u
            .update_expression()
            .contains("REMOVE #pendingCheckpointState"));
    }
}
