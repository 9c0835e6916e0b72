//! The lease table: a DynamoDB table in the Java KCL 2.x format, behind the [`LeaseStore`]
//! seam.
//!
//! ```text
//!  LeaseCoordinator / ShardSync / Checkpointer
//!        │ LeaseStore (trait: list, get, create, renew, take, evict, checkpoint, delete)
//!        ▼
//!  LeaseTable ──conditional UpdateItem / PutItem / DeleteItem (on leaseCounter, leaseOwner)──▶ DynamoDB
//!        └──Scan (consistent, paged) ──▶ items ──parse──▶ Lease | skipped with a warning
//! ```
//!
//! Every write is conditional on what the caller read: the counter for takes, the counter
//! and owner for renewals, evictions and checkpoints. A refused condition is `Ok(false)`,
//! never an error, so callers can tell "someone else moved first" from a failed call.
//!
//! # Usage
//! ```no_run
//! use kinesis_consumer::{Checkpoint, Lease, LeaseStore, LeaseTable};
//!
//! # async fn demo(client: aws_sdk_dynamodb::Client) -> Result<(), kinesis_consumer::Error> {
//! let table = LeaseTable::new(client, "my-app");
//! table.create_table_if_not_exists().await?;
//! table.create_lease_if_not_exists(&Lease::new("shardId-000000000000", Checkpoint::TrimHorizon)).await?;
//! let lease = table.get_lease("shardId-000000000000").await?.expect("just created");
//! assert!(table.take_lease(&lease, "worker-1").await?);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use bytes::Bytes;
use kinesis_agg::HashKeyRange;

use crate::error::Error;
use crate::lease::{Checkpoint, Lease};
use crate::metrics as m;

/// Attribute names of the Java KCL 2.x lease table.
pub(crate) mod attr {
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
}

/// Storage of leases: the seam between lease logic and DynamoDB.
///
/// [`LeaseTable`] is the DynamoDB implementation. Each write takes the lease as the caller
/// last read it and is applied only if the stored counter (and, where stated, owner) still
/// match; `Ok(false)` means the condition failed. On success the stored counter is one more
/// than `lease.counter`.
#[async_trait]
pub trait LeaseStore: Send + Sync + std::fmt::Debug {
    /// Creates the table if it does not exist and waits until it can be used.
    ///
    /// # Cancellation
    /// Safe to drop; a creation already sent goes ahead.
    async fn create_table_if_not_exists(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Every readable lease. Unreadable items are skipped with a warning.
    ///
    /// # Cancellation
    /// Safe to drop: it only reads.
    async fn list_leases(&self) -> Result<Vec<Lease>, Error>;

    /// One lease, `None` if there is no item with that key.
    ///
    /// # Cancellation
    /// Safe to drop: it only reads.
    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, Error>;

    /// Writes `lease` unless an item with its key exists; `Ok(false)` if one does.
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still create the lease.
    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, Error>;

    /// Bumps the counter if counter and owner still match `lease`.
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still renew the lease.
    async fn renew_lease(&self, lease: &Lease) -> Result<bool, Error>;

    /// Makes `new_owner` the owner and bumps the counter if the counter still matches
    /// (`ownerSwitchesSinceCheckpoint` grows by one when the owner changes).
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still take the lease.
    async fn take_lease(&self, lease: &Lease, new_owner: &str) -> Result<bool, Error>;

    /// Removes the owner and bumps the counter if counter and owner still match, so other
    /// workers can take the lease at once.
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still evict.
    async fn evict_lease(&self, lease: &Lease) -> Result<bool, Error>;

    /// Records `checkpoint` (clearing any pending checkpoint and the owner switch count,
    /// and recording `child_shard_ids` when not empty) if counter and owner still match.
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still checkpoint.
    async fn update_checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
        child_shard_ids: &[String],
    ) -> Result<bool, Error>;

    /// Records the first phase of a two-phase checkpoint if counter and owner still match.
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still write.
    async fn prepare_checkpoint(
        &self,
        lease: &Lease,
        pending: &Checkpoint,
        state: Option<&Bytes>,
    ) -> Result<bool, Error>;

    /// Deletes the lease if its checkpoint is `SHARD_END`.
    ///
    /// # Cancellation
    /// Dropping the future after the request was sent may still delete.
    async fn delete_finished_lease(&self, lease_key: &str) -> Result<bool, Error>;
}

/// How long [`LeaseTable::create_table_if_not_exists`] waits for `ACTIVE`.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// The lease table in DynamoDB.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    /// The DynamoDB client all calls go through.
    client: aws_sdk_dynamodb::Client,
    /// The table's name (the application name by default).
    table: String,
}

/// The pieces of one conditional `UpdateItem`, built up by the operations.
#[derive(Default)]
struct Update {
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

impl Update {
    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    fn value(&mut self, key: &str, v: AttributeValue) -> String {
        let placeholder = format!(":{key}");
        self.values.insert(placeholder.clone(), v);
        placeholder
    }

    fn set(&mut self, attribute: &str, v: AttributeValue) -> &mut Self {
        let (n, p) = (self.name(attribute), self.value(attribute, v));
        self.set.push(format!("{n} = {p}"));
        self
    }

    fn remove(&mut self, attribute: &str) -> &mut Self {
        let n = self.name(attribute);
        self.remove.push(n);
        self
    }

    fn add_one(&mut self, attribute: &str) -> &mut Self {
        let n = self.name(attribute);
        let p = self.value("one", AttributeValue::N("1".into()));
        self.add.push(format!("{n} {p}"));
        self
    }

    fn expect_counter(&mut self, lease: &Lease) -> &mut Self {
        let n = self.name(attr::LEASE_COUNTER);
        let p = self.value("expectedCounter", num(lease.counter));
        self.condition.push(format!("{n} = {p}"));
        self
    }

    fn expect_owner(&mut self, lease: &Lease) -> &mut Self {
        let n = self.name(attr::LEASE_OWNER);
        match &lease.owner {
            Some(owner) => {
                let p = self.value("expectedOwner", AttributeValue::S(owner.clone()));
                self.condition.push(format!("{n} = {p}"));
            }
            None => self.condition.push(format!("attribute_not_exists({n})")),
        }
        self
    }

    fn expression(&self) -> String {
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
}

fn num(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

impl LeaseTable {
    /// A lease table named `table_name` reached through `client`. Nothing is called yet.
    pub fn new(client: aws_sdk_dynamodb::Client, table_name: impl Into<String>) -> Self {
        Self {
            client,
            table: table_name.into(),
        }
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    fn count(operation: &'static str) {
        ::metrics::counter!(m::DYNAMODB_CALLS, "operation" => operation).increment(1);
    }

    async fn conditional_update(
        &self,
        operation: &'static str,
        lease_key: &str,
        update: Update,
    ) -> Result<bool, Error> {
        Self::count("UpdateItem");
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, AttributeValue::S(lease_key.to_owned()))
            .update_expression(update.expression());
        // The item must exist: a missing lease is never resurrected by an update.
        let mut condition = update.condition;
        condition.push("attribute_exists(#leaseKey)".to_owned());
        req = req
            .condition_expression(condition.join(" AND "))
            .expression_attribute_names("#leaseKey", attr::LEASE_KEY);
        for (k, v) in update.names {
            req = req.expression_attribute_names(k, v);
        }
        for (k, v) in update.values {
            req = req.expression_attribute_values(k, v);
        }
        let applied = self.applied("UpdateItem", req.send().await)?;
        if !applied {
            tracing::debug!(lease_key, operation, "conditional update refused");
        }
        Ok(applied)
    }

    /// The outcome of a conditional write: `true` if it was applied, `false` if its
    /// condition failed (another worker changed the item first), an error otherwise.
    fn applied<O, E>(
        &self,
        operation: &'static str,
        result: Result<O, SdkError<E, HttpResponse>>,
    ) -> Result<bool, Error>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().and_then(ProvideErrorMetadata::code)
                    == Some("ConditionalCheckFailedException") =>
            {
                Ok(false)
            }
            Err(e) => Err(Error::dynamodb(operation, &self.table, &e)),
        }
    }
}

#[async_trait]
impl LeaseStore for LeaseTable {
    async fn create_table_if_not_exists(&self) -> Result<(), Error> {
        Self::count("DescribeTable");
        let exists = match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                false
            }
            Err(e) => return Err(Error::dynamodb("DescribeTable", &self.table, &e)),
        };
        if !exists {
            Self::count("CreateTable");
            let created = self
                .client
                .create_table()
                .table_name(&self.table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(attr::LEASE_KEY)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .expect("name and type are set"),
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(attr::LEASE_KEY)
                        .key_type(KeyType::Hash)
                        .build()
                        .expect("name and type are set"),
                )
                .send()
                .await;
            match created {
                Ok(_) => tracing::info!(table = %self.table, "created lease table"),
                // Another worker created it first.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_resource_in_use_exception()) => {}
                Err(e) => return Err(Error::dynamodb("CreateTable", &self.table, &e)),
            }
        }
        let start = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            Self::count("DescribeTable");
            match self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
            {
                Ok(out) => {
                    if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                        return Ok(());
                    }
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|se| se.is_resource_not_found_exception()) => {}
                Err(e) => return Err(Error::dynamodb("DescribeTable", &self.table, &e)),
            }
            if start.elapsed() > TABLE_ACTIVE_TIMEOUT {
                return Err(Error::TableNotActive {
                    table: self.table.clone(),
                    waited_secs: TABLE_ACTIVE_TIMEOUT.as_secs(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    async fn list_leases(&self) -> Result<Vec<Lease>, Error> {
        let mut leases = Vec::new();
        let mut start_key = None;
        loop {
            Self::count("Scan");
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start_key.take())
                .send()
                .await
                .map_err(|e| Error::dynamodb("Scan", &self.table, &e))?;
            for item in out.items() {
                match lease_from_item(item) {
                    Ok(lease) => leases.push(lease),
                    Err(e) => {
                        ::metrics::counter!(m::INVALID_LEASES_SKIPPED).increment(1);
                        tracing::warn!(table = %self.table, error = %e, "skipping lease table item");
                    }
                }
            }
            match out.last_evaluated_key() {
                Some(k) if !k.is_empty() => start_key = Some(k.clone()),
                _ => break,
            }
        }
        Ok(leases)
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, Error> {
        Self::count("GetItem");
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, AttributeValue::S(lease_key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::dynamodb("GetItem", &self.table, &e))?;
        out.item().map(lease_from_item).transpose()
    }

    async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, Error> {
        Self::count("PutItem");
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lease_to_item(lease)))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", attr::LEASE_KEY)
            .send()
            .await;
        self.applied("PutItem", res)
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<bool, Error> {
        let mut u = Update::default();
        u.expect_counter(lease)
            .expect_owner(lease)
            .add_one(attr::LEASE_COUNTER);
        self.conditional_update("renew", &lease.lease_key, u).await
    }

    async fn take_lease(&self, lease: &Lease, new_owner: &str) -> Result<bool, Error> {
        let mut u = Update::default();
        u.expect_counter(lease)
            .set(attr::LEASE_OWNER, AttributeValue::S(new_owner.to_owned()))
            .add_one(attr::LEASE_COUNTER);
        if lease.owner.as_deref() != Some(new_owner) {
            u.add_one(attr::OWNER_SWITCHES);
        }
        self.conditional_update("take", &lease.lease_key, u).await
    }

    async fn evict_lease(&self, lease: &Lease) -> Result<bool, Error> {
        let mut u = Update::default();
        u.expect_counter(lease)
            .expect_owner(lease)
            .remove(attr::LEASE_OWNER)
            .add_one(attr::LEASE_COUNTER);
        self.conditional_update("evict", &lease.lease_key, u).await
    }

    async fn update_checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
        child_shard_ids: &[String],
    ) -> Result<bool, Error> {
        let mut u = Update::default();
        u.expect_counter(lease)
            .expect_owner(lease)
            .set(
                attr::CHECKPOINT,
                AttributeValue::S(checkpoint.as_attribute().to_owned()),
            )
            .set(attr::CHECKPOINT_SUB, num(checkpoint.sub_sequence_number()))
            .set(attr::OWNER_SWITCHES, num(0))
            .remove(attr::PENDING)
            .remove(attr::PENDING_SUB)
            .remove(attr::PENDING_STATE)
            .add_one(attr::LEASE_COUNTER);
        if !child_shard_ids.is_empty() {
            u.set(attr::CHILDREN, AttributeValue::Ss(child_shard_ids.to_vec()));
        }
        self.conditional_update("checkpoint", &lease.lease_key, u)
            .await
    }

    async fn prepare_checkpoint(
        &self,
        lease: &Lease,
        pending: &Checkpoint,
        state: Option<&Bytes>,
    ) -> Result<bool, Error> {
        let mut u = Update::default();
        u.expect_counter(lease)
            .expect_owner(lease)
            .set(
                attr::PENDING,
                AttributeValue::S(pending.as_attribute().to_owned()),
            )
            .set(attr::PENDING_SUB, num(pending.sub_sequence_number()))
            .add_one(attr::LEASE_COUNTER);
        match state {
            Some(s) => u.set(
                attr::PENDING_STATE,
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(s.to_vec())),
            ),
            None => u.remove(attr::PENDING_STATE),
        };
        self.conditional_update("prepareCheckpoint", &lease.lease_key, u)
            .await
    }

    async fn delete_finished_lease(&self, lease_key: &str) -> Result<bool, Error> {
        Self::count("DeleteItem");
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, AttributeValue::S(lease_key.to_owned()))
            .condition_expression("#c = :end")
            .expression_attribute_names("#c", attr::CHECKPOINT)
            .expression_attribute_values(
                ":end",
                AttributeValue::S(crate::lease::SHARD_END.to_owned()),
            )
            .send()
            .await;
        self.applied("DeleteItem", res)
    }
}

/// A lease as a DynamoDB item, with the Java KCL 2.x attribute names and types.
pub(crate) fn lease_to_item(lease: &Lease) -> HashMap<String, AttributeValue> {
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
        item.insert(
            attr::PENDING_STATE.to_owned(),
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(state.to_vec())),
        );
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
    item
}

/// Reads an item back, checking every attribute it uses; never panics on odd input.
pub(crate) fn lease_from_item(item: &HashMap<String, AttributeValue>) -> Result<Lease, Error> {
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
        lease_key,
    })
}

#[cfg(test)]
pub(crate) mod memory {
    //! An in-memory [`LeaseStore`] with the same conditional semantics, for unit tests of
    //! the lease logic under `tokio::time::pause()`.

    use super::*;
    use std::sync::Mutex;

    /// Leases in a map, guarded by a mutex; every operation is atomic.
    #[derive(Debug, Default)]
    pub(crate) struct MemoryLeaseStore {
        /// The table.
        leases: Mutex<std::collections::BTreeMap<String, Lease>>,
        /// Calls made, to check the cost of steady state.
        pub(crate) calls: std::sync::atomic::AtomicU64,
    }

    impl MemoryLeaseStore {
        fn with<R>(
            &self,
            f: impl FnOnce(&mut std::collections::BTreeMap<String, Lease>) -> R,
        ) -> R {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            f(&mut self.leases.lock().expect("not poisoned"))
        }

        fn update(&self, lease: &Lease, check_owner: bool, f: impl FnOnce(&mut Lease)) -> bool {
            self.with(|map| match map.get_mut(&lease.lease_key) {
                Some(stored)
                    if stored.counter == lease.counter
                        && (!check_owner || stored.owner == lease.owner) =>
                {
                    f(stored);
                    stored.counter += 1;
                    true
                }
                _ => false,
            })
        }
    }

    #[async_trait]
    impl LeaseStore for MemoryLeaseStore {
        async fn list_leases(&self) -> Result<Vec<Lease>, Error> {
            Ok(self.with(|m| m.values().cloned().collect()))
        }
        async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, Error> {
            Ok(self.with(|m| m.get(lease_key).cloned()))
        }
        async fn create_lease_if_not_exists(&self, lease: &Lease) -> Result<bool, Error> {
            Ok(self.with(|m| {
                if m.contains_key(&lease.lease_key) {
                    false
                } else {
                    m.insert(lease.lease_key.clone(), lease.clone());
                    true
                }
            }))
        }
        async fn renew_lease(&self, lease: &Lease) -> Result<bool, Error> {
            Ok(self.update(lease, true, |_| {}))
        }
        async fn take_lease(&self, lease: &Lease, new_owner: &str) -> Result<bool, Error> {
            Ok(self.update(lease, false, |l| {
                if l.owner.as_deref() != Some(new_owner) {
                    l.owner_switches_since_checkpoint += 1;
                }
                l.owner = Some(new_owner.to_owned());
            }))
        }
        async fn evict_lease(&self, lease: &Lease) -> Result<bool, Error> {
            Ok(self.update(lease, true, |l| l.owner = None))
        }
        async fn update_checkpoint(
            &self,
            lease: &Lease,
            checkpoint: &Checkpoint,
            child_shard_ids: &[String],
        ) -> Result<bool, Error> {
            Ok(self.update(lease, true, |l| {
                l.checkpoint = checkpoint.clone();
                l.pending_checkpoint = None;
                l.pending_checkpoint_state = None;
                l.owner_switches_since_checkpoint = 0;
                if !child_shard_ids.is_empty() {
                    l.child_shard_ids = child_shard_ids.to_vec();
                }
            }))
        }
        async fn prepare_checkpoint(
            &self,
            lease: &Lease,
            pending: &Checkpoint,
            state: Option<&Bytes>,
        ) -> Result<bool, Error> {
            Ok(self.update(lease, true, |l| {
                l.pending_checkpoint = Some(pending.clone());
                l.pending_checkpoint_state = state.cloned();
            }))
        }
        async fn delete_finished_lease(&self, lease_key: &str) -> Result<bool, Error> {
            Ok(self.with(|m| match m.get(lease_key) {
                Some(l) if l.checkpoint.is_shard_end() => {
                    m.remove(lease_key);
                    true
                }
                _ => false,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let item = lease_to_item(&lease);
        for name in [
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
        ] {
            assert!(item.contains_key(name), "{name} missing");
        }
        assert_eq!(item["leaseCounter"], AttributeValue::N("42".into()));
        assert!(matches!(item["parentShardId"], AttributeValue::Ss(_)));
        assert!(matches!(
            item["pendingCheckpointState"],
            AttributeValue::B(_)
        ));
        assert_eq!(lease_from_item(&item).unwrap(), lease);
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
