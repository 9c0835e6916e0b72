//! The lease table: a DynamoDB table in the Java KCL 2.x format, the [`LeaseStore`] of a
//! running worker.
//!
//! ```text
//!  LeaseStore calls
//!   ├─ update_lease(LeaseUpdate) ──UpdateExpression──▶ conditional UpdateItem ─┐
//!   ├─ create_lease_if_not_exists ──lease_to_item──▶ PutItem if no such key ───┤
//!   ├─ delete_finished_lease ──▶ DeleteItem if checkpoint = SHARD_END ─────────┼─▶ DynamoDB
//!   ├─ delete_lease ──▶ DeleteItem if leaseCounter = as read ──────────────────┤
//!   ├─ get_lease ──▶ GetItem (consistent) ──lease_from_item──▶ Lease            │
//!   └─ list_leases ──▶ Scan (consistent, paged) ──lease_from_item──▶ Lease ─────┘
//!                                    unreadable item ─▶ skipped with a warning
//! ```
//!
//! Every write is conditional on what the caller read: the counter for takes, the counter
//! and owner for renewals, evictions and checkpoints. A refused condition is `Ok(false)`,
//! never an error, so callers can tell "someone else moved first" from a failed call.
//!
//! # Usage
//! ```no_run
//! use kinesis_consumer::leases::{LeaseStore, LeaseTable};
//! use kinesis_consumer::{Checkpoint, Lease};
//!
//! # async fn demo(client: aws_sdk_dynamodb::Client) -> Result<(), kinesis_consumer::Error> {
//! let table = LeaseTable::new(client, "my-app");
//! table.create_table_if_not_exists().await?;
//! table.create_lease_if_not_exists(&Lease::new("shardId-000000000000", Checkpoint::TrimHorizon)).await?;
//! let lease = table.get_lease("shardId-000000000000").await?.expect("just created");
//! assert!(table.take_lease(&lease, "worker-1").await?);
//! # Ok(()) }
//! ```

pub(super) mod fuzzing;
mod item;
mod update_expression;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use super::dynamo_table::DynamoTable;
use super::lease_store::LeaseStore;
use super::lease_update::LeaseUpdate;
use crate::error::Error;
use crate::leases::Lease;
use crate::metric_names as m;
use item::{attr, lease_from_item, lease_to_item, other_entity};
use update_expression::UpdateExpression;

/// The lease table in DynamoDB.
#[derive(Debug, Clone)]
pub struct LeaseTable {
    /// The DynamoDB client all calls go through.
    client: aws_sdk_dynamodb::Client,
    /// The table's name (the application name by default).
    table: String,
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

    /// Counts one call to DynamoDB.
    fn count(operation: &'static str) {
        DynamoTable::count(operation);
    }

    /// The table's life cycle and conditional-write helpers.
    fn dynamo(&self) -> DynamoTable<'_> {
        DynamoTable {
            client: &self.client,
            table: &self.table,
            hash_key: attr::LEASE_KEY,
            what: "lease table",
        }
    }

    /// `Ok(false)` for a refused condition (see [`DynamoTable::applied`]).
    fn applied<O, E>(
        &self,
        operation: &'static str,
        result: Result<O, SdkError<E, HttpResponse>>,
    ) -> Result<bool, Error>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.dynamo().applied(operation, result)
    }
}

#[async_trait]
impl LeaseStore for LeaseTable {
    async fn create_table_if_not_exists(&self) -> Result<(), Error> {
        self.dynamo().create_if_not_exists().await
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
                if let Some(kind) = other_entity(item) {
                    tracing::trace!(table = %self.table, entity_type = kind, "not a lease; left alone");
                    continue;
                }
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

    async fn update_lease(&self, update: &LeaseUpdate) -> Result<bool, Error> {
        Self::count("UpdateItem");
        let expression = UpdateExpression::new(update);
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, AttributeValue::S(update.lease_key.clone()))
            .update_expression(expression.update_expression())
            .condition_expression(expression.condition_expression());
        let (names, values) = expression.into_placeholders();
        for (k, v) in names {
            req = req.expression_attribute_names(k, v);
        }
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        let applied = self.applied("UpdateItem", req.send().await)?;
        if !applied {
            tracing::debug!(lease_key = %update.lease_key, operation = update.operation, "conditional update refused");
        }
        Ok(applied)
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
                AttributeValue::S(crate::checkpoint::SHARD_END.to_owned()),
            )
            .send()
            .await;
        self.applied("DeleteItem", res)
    }

    async fn delete_lease(&self, lease: &Lease) -> Result<bool, Error> {
        Self::count("DeleteItem");
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, AttributeValue::S(lease.lease_key.clone()))
            .condition_expression("#n = :n")
            .expression_attribute_names("#n", attr::LEASE_COUNTER)
            .expression_attribute_values(":n", item::num(lease.counter))
            .send()
            .await;
        self.applied("DeleteItem", res)
    }
}
