//! [`DynamoTable`]: what the lease table and the fleet table share: creating a table keyed
//! by one string attribute (on-demand billing) and waiting until it is `ACTIVE`, counting
//! calls, and telling a refused condition from a failed call.
//!
//! ```text
//!  create_if_not_exists ─▶ DescribeTable ─missing─▶ CreateTable (ResourceInUse: another
//!                          worker was first) ─▶ DescribeTable until ACTIVE (50 ms doubling
//!                          to 2 s, at most 5 min)
//!  applied(result) ─▶ Ok(true) written | Ok(false) ConditionalCheckFailed | Err(Error::DynamoDb)
//! ```

use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use backon::{ExponentialBuilder, Retryable};

use crate::error::Error;
use crate::metric_names as m;

/// How long [`DynamoTable::create_if_not_exists`] waits for `ACTIVE`.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// Delays between looks at a table not `ACTIVE` yet: 50 ms doubling up to 2 s.
fn table_active_backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .without_max_times()
}

/// What `DescribeTable` says of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TableState {
    /// No such table.
    Missing,
    /// Being created (or updated, or deleted).
    NotActive,
    /// Usable.
    Active,
}

/// A DynamoDB table keyed by one string attribute, borrowed from its owner.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DynamoTable<'a> {
    /// The client every call goes through.
    pub(crate) client: &'a aws_sdk_dynamodb::Client,
    /// The table's name.
    pub(crate) table: &'a str,
    /// The name of its hash key attribute (type S).
    pub(crate) hash_key: &'static str,
    /// What it is, for logs ("lease table", "fleet table").
    pub(crate) what: &'static str,
}

impl DynamoTable<'_> {
    /// Counts one call to DynamoDB.
    pub(crate) fn count(operation: &'static str) {
        ::metrics::counter!(m::DYNAMODB_CALLS, "operation" => operation).increment(1);
    }

    /// `Ok(true)` if the write was applied, `Ok(false)` if its condition was refused.
    ///
    /// # Errors
    /// [`Error::DynamoDb`] for any other failure.
    pub(crate) fn applied<O, E>(
        &self,
        operation: &'static str,
        result: Result<O, SdkError<E, HttpResponse>>,
    ) -> Result<bool, Error>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_refused(&e) => Ok(false),
            Err(e) => Err(Error::dynamodb(operation, self.table, &e)),
        }
    }

    /// Creates the table unless it exists, then waits until it is `ACTIVE`.
    ///
    /// # Cancellation
    /// Safe to drop; a creation already sent goes ahead.
    ///
    /// # Errors
    /// DynamoDB errors; [`Error::TableNotActive`] after 5 minutes of waiting.
    pub(crate) async fn create_if_not_exists(&self) -> Result<(), Error> {
        if self.describe().await? == TableState::Missing {
            self.create().await?;
        }
        self.wait_until_active().await
    }

    /// The table's state.
    async fn describe(&self) -> Result<TableState, Error> {
        Self::count("DescribeTable");
        match self
            .client
            .describe_table()
            .table_name(self.table)
            .send()
            .await
        {
            Ok(out) if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) => {
                Ok(TableState::Active)
            }
            Ok(_) => Ok(TableState::NotActive),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_not_found_exception()) =>
            {
                Ok(TableState::Missing)
            }
            Err(e) => Err(Error::dynamodb("DescribeTable", self.table, &e)),
        }
    }

    /// Creates the table (on-demand billing); another worker creating it first is fine.
    async fn create(&self) -> Result<(), Error> {
        Self::count("CreateTable");
        let created = self
            .client
            .create_table()
            .table_name(self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(self.hash_key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("name and type are set"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(self.hash_key)
                    .key_type(KeyType::Hash)
                    .build()
                    .expect("name and type are set"),
            )
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::info!(table = %self.table, "created {}", self.what);
                Ok(())
            }
            // Another worker created it first.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(Error::dynamodb("CreateTable", self.table, &e)),
        }
    }

    /// Waits until the table is `ACTIVE`, for at most [`TABLE_ACTIVE_TIMEOUT`].
    async fn wait_until_active(&self) -> Result<(), Error> {
        let start = tokio::time::Instant::now();
        // Err(None): not ACTIVE (or not found) yet.
        let look = || async {
            match self.describe().await {
                Ok(TableState::Active) => Ok(()),
                Ok(_) => Err(None),
                Err(e) => Err(Some(e)),
            }
        };
        let active = look
            .retry(table_active_backoff())
            .when(|e: &Option<Error>| e.is_none() && start.elapsed() <= TABLE_ACTIVE_TIMEOUT)
            .await;
        match active {
            Ok(()) => Ok(()),
            Err(Some(e)) => Err(e),
            Err(None) => Err(Error::TableNotActive {
                table: self.table.to_owned(),
                waited_secs: TABLE_ACTIVE_TIMEOUT.as_secs(),
            }),
        }
    }
}

/// Whether a call failed only because its condition was refused.
pub(crate) fn is_condition_refused<E, R>(e: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    e.as_service_error().and_then(ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

#[cfg(test)]
mod tests {
    use backon::BackoffBuilder;

    use super::*;

    #[test]
    fn a_new_table_is_looked_at_50_ms_doubling_to_2_s_for_5_minutes() {
        let delays: Vec<u64> = table_active_backoff()
            .build()
            .take(10)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            vec![50, 100, 200, 400, 800, 1_600, 2_000, 2_000, 2_000, 2_000]
        );
        assert_eq!(TABLE_ACTIVE_TIMEOUT, Duration::from_secs(300));
    }
}
