//! [`FleetTable`]: the fleet's heartbeats in one DynamoDB item (see the module above).
//!
//! ```text
//!  table <lease table>-Workers, hash key fleet (S); one item fleet = "workers":
//!    b:<worker id>  N   the worker's last heartbeat
//!    n:<worker id>  SS  notices for it ("lease@counter")
//!    l:<worker id>  M   its load at its last beat: r (records/s), by (bytes/s), lag (ms)
//!  beat   ─▶ UpdateItem SET b:<me>[, l:<me>] [IF b:<me> IN (prev, …)] [DELETE n:<me> handled],
//!             ALL_NEW
//!  read   ─▶ GetItem (consistent), for operators
//!  remove ─▶ UpdateItem REMOVE b:<w>, n:<w>, l:<w> IF b:<w> = beat
//!  notify ─▶ UpdateItem ADD n:<w> {notice} IF attribute_exists(b:<w>)
//! ```

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{FleetStore, FleetView, WorkerLoad};
use crate::error::Error;
use crate::leases::dynamo_table::{is_condition_refused, DynamoTable};

/// The hash key attribute of the fleet table.
const FLEET: &str = "fleet";
/// The key of the one item.
const ITEM: &str = "workers";
/// Prefix of a worker's heartbeat attribute.
const BEAT: &str = "b:";
/// Prefix of a worker's notices attribute.
const NOTICES: &str = "n:";
/// Prefix of a worker's load attribute.
const LOAD: &str = "l:";

/// A load as the map attribute it is stored as.
fn load_attribute(load: &WorkerLoad) -> AttributeValue {
    let mut m = HashMap::from([
        (
            "r".to_owned(),
            AttributeValue::N(format!("{:.1}", load.records_per_second)),
        ),
        (
            "by".to_owned(),
            AttributeValue::N(format!("{:.0}", load.bytes_per_second)),
        ),
    ]);
    if let Some(lag) = load.max_millis_behind_latest {
        m.insert("lag".to_owned(), AttributeValue::N(lag.to_string()));
    }
    AttributeValue::M(m)
}

/// A load read back from its map attribute; `None` if it is not one (figures that do not
/// parse count as zero, or as no lag).
fn load_of(value: &AttributeValue) -> Option<WorkerLoad> {
    let m = value.as_m().ok()?;
    let n = |k: &str| m.get(k).and_then(|v| v.as_n().ok());
    Some(WorkerLoad::new(
        n("r").and_then(|v| v.parse().ok()).unwrap_or(0.0),
        n("by").and_then(|v| v.parse().ok()).unwrap_or(0.0),
        n("lag").and_then(|v| v.parse().ok()),
    ))
}

/// The fleet table in DynamoDB.
#[derive(Debug, Clone)]
pub struct FleetTable {
    /// The DynamoDB client all calls go through.
    client: aws_sdk_dynamodb::Client,
    /// The table's name.
    table: String,
}

impl FleetTable {
    /// The fleet table of the lease table `lease_table`: `<lease_table>-Workers`, or, for
    /// a name too long for that (DynamoDB allows 255 characters), its first 230
    /// characters, a hash of the whole name and `-Workers`.
    pub fn for_lease_table(client: aws_sdk_dynamodb::Client, lease_table: &str) -> Self {
        Self {
            client,
            table: fleet_table_name(lease_table),
        }
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The table's life cycle and condition helpers.
    fn dynamo(&self) -> DynamoTable<'_> {
        DynamoTable {
            client: &self.client,
            table: &self.table,
            hash_key: FLEET,
            what: "fleet table",
        }
    }

    /// An update of the one item.
    fn update(
        &self,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(FLEET, AttributeValue::S(ITEM.to_owned()))
    }
}

/// The fleet table's name for a lease table (see [`FleetTable::for_lease_table`]). Lease
/// table names are ASCII (DynamoDB's rule), so cutting at a byte is cutting at a character.
fn fleet_table_name(lease_table: &str) -> String {
    const SUFFIX: &str = "-Workers";
    if lease_table.len() + SUFFIX.len() <= 255 {
        return format!("{lease_table}{SUFFIX}");
    }
    // FNV-1a, 64 bits: stable across versions and platforms.
    let hash = lease_table.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let prefix: String = lease_table.chars().take(230).collect();
    format!("{prefix}-{hash:016x}{SUFFIX}")
}

/// Every worker's beat and `me`'s notices, from the item's attributes.
fn view_of(item: &HashMap<String, AttributeValue>, me: &str) -> FleetView {
    let mut view = FleetView::default();
    for (name, value) in item {
        if let Some(worker) = name.strip_prefix(BEAT) {
            if let Some(beat) = value.as_n().ok().and_then(|n| n.parse().ok()) {
                view.beats.insert(worker.to_owned(), beat);
            }
        } else if let Some(worker) = name.strip_prefix(LOAD) {
            if let Some(load) = load_of(value) {
                view.loads.insert(worker.to_owned(), load);
            }
        } else if name.strip_prefix(NOTICES) == Some(me) {
            if let Ok(notices) = value.as_ss() {
                view.notices = notices.clone();
            }
        }
    }
    view
}

#[async_trait]
impl FleetStore for FleetTable {
    async fn create_table_if_not_exists(&self) -> Result<(), Error> {
        self.dynamo().create_if_not_exists().await
    }

    async fn beat(
        &self,
        worker: &str,
        previous: &[u64],
        next: u64,
        handled: &[String],
        load: Option<WorkerLoad>,
    ) -> Result<Option<FleetView>, Error> {
        DynamoTable::count("UpdateItem");
        let mut expression = "SET #b = :next".to_owned();
        let mut req = self
            .update()
            .expression_attribute_names("#b", format!("{BEAT}{worker}"))
            .expression_attribute_values(":next", AttributeValue::N(next.to_string()))
            .return_values(ReturnValue::AllNew);
        if let Some(load) = &load {
            expression.push_str(", #l = :load");
            req = req
                .expression_attribute_names("#l", format!("{LOAD}{worker}"))
                .expression_attribute_values(":load", load_attribute(load));
        }
        if !handled.is_empty() {
            expression.push_str(" DELETE #n :handled");
            req = req
                .expression_attribute_names("#n", format!("{NOTICES}{worker}"))
                .expression_attribute_values(":handled", AttributeValue::Ss(handled.to_vec()));
        }
        if !previous.is_empty() {
            let mut placeholders = Vec::new();
            for (i, p) in previous.iter().enumerate() {
                let name = format!(":previous{i}");
                req = req.expression_attribute_values(&name, AttributeValue::N(p.to_string()));
                placeholders.push(name);
            }
            req = req.condition_expression(format!("#b IN ({})", placeholders.join(", ")));
        }
        // No retries inside the call: a beat that fails is followed by the next one a
        // heartbeat later, whereas the SDK's backoff could outlast the fence deadline.
        let once = aws_sdk_dynamodb::config::Builder::default()
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled());
        match req
            .update_expression(expression)
            .customize()
            .config_override(once)
            .send()
            .await
        {
            Ok(out) => Ok(Some(view_of(
                out.attributes().unwrap_or(&HashMap::new()),
                worker,
            ))),
            Err(e) if is_condition_refused(&e) => Ok(None),
            Err(e) => Err(Error::dynamodb("UpdateItem", &self.table, &e)),
        }
    }

    async fn read(&self) -> Result<FleetView, Error> {
        DynamoTable::count("GetItem");
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(FLEET, AttributeValue::S(ITEM.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::dynamodb("GetItem", &self.table, &e))?;
        Ok(out.item().map(|i| view_of(i, "")).unwrap_or_default())
    }

    async fn remove(&self, worker: &str, beat: u64) -> Result<bool, Error> {
        DynamoTable::count("UpdateItem");
        let res = self
            .update()
            .update_expression("REMOVE #b, #n, #l")
            .condition_expression("#b = :beat")
            .expression_attribute_names("#b", format!("{BEAT}{worker}"))
            .expression_attribute_names("#n", format!("{NOTICES}{worker}"))
            .expression_attribute_names("#l", format!("{LOAD}{worker}"))
            .expression_attribute_values(":beat", AttributeValue::N(beat.to_string()))
            .send()
            .await;
        self.dynamo().applied("UpdateItem", res)
    }

    async fn notify(&self, worker: &str, notice: &str) -> Result<bool, Error> {
        DynamoTable::count("UpdateItem");
        let res = self
            .update()
            .update_expression("ADD #n :notice")
            .condition_expression("attribute_exists(#b)")
            .expression_attribute_names("#b", format!("{BEAT}{worker}"))
            .expression_attribute_names("#n", format!("{NOTICES}{worker}"))
            .expression_attribute_values(":notice", AttributeValue::Ss(vec![notice.to_owned()]))
            .send()
            .await;
        self.dynamo().applied("UpdateItem", res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_table_names_fit_dynamodb_whatever_the_lease_table_name() {
        assert_eq!(fleet_table_name("my-app"), "my-app-Workers");
        let at_limit = "a".repeat(247);
        assert_eq!(fleet_table_name(&at_limit).len(), 255);
        let long = "a".repeat(255);
        let other = format!("{}b", "a".repeat(254));
        let (x, y) = (fleet_table_name(&long), fleet_table_name(&other));
        assert_eq!((x.len(), y.len()), (255, 255));
        assert_ne!(x, y, "names that share their start differ");
        assert!(x.ends_with("-Workers"));
    }

    #[test]
    fn the_view_reads_every_beat_and_only_my_notices() {
        let item: HashMap<String, AttributeValue> = [
            ("fleet", AttributeValue::S("workers".into())),
            ("b:w1", AttributeValue::N("7".into())),
            ("b:w:2", AttributeValue::N("18446744073709551615".into())),
            ("b:odd", AttributeValue::S("x".into())),
            ("n:w1", AttributeValue::Ss(vec!["s-1@3".into()])),
            ("n:w:2", AttributeValue::Ss(vec!["s-2@4".into()])),
            (
                "l:w1",
                load_attribute(&WorkerLoad::new(12.5, 2048.0, Some(750))),
            ),
            ("l:w:2", load_attribute(&WorkerLoad::new(0.0, 0.0, None))),
            ("l:odd", AttributeValue::S("x".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let view = view_of(&item, "w1");
        assert_eq!(view.beats.len(), 2);
        assert_eq!(view.beats["w1"], 7);
        assert_eq!(view.beats["w:2"], u64::MAX);
        assert_eq!(view.notices, vec!["s-1@3".to_owned()]);
        assert_eq!(view.loads.len(), 2);
        assert_eq!(view.loads["w1"], WorkerLoad::new(12.5, 2048.0, Some(750)));
        assert_eq!(view.loads["w:2"], WorkerLoad::new(0.0, 0.0, None));
    }
}
