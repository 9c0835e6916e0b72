//! The lease-item fuzz body: what `fuzz/fuzz_targets/lease_item.rs` runs on every input and
//! what the corpus test (`integration-tests/tests/fuzz_bodies.rs`) runs on the checked-in
//! seeds. Not part of the API: its name and behaviour may change at any time.
//!
//! ```text
//!  bytes ─▶ item_from_bytes ─▶ DynamoDB item ─▶ other_entity? ─▶ left alone
//!           (attribute name, type, value)*       │ no
//!                                                ▼
//!                                   lease_from_item ─▶ Err(InvalidLease) | Ok(lease)
//!                                                           lease_to_item ─▶ lease_from_item
//!                                                           gives the same lease back
//! ```
//!
//! Bytes become an item as a run of attributes: one byte picks the name (one of the lease
//! table's names, or free text), one the type, then the value (a length byte and that many
//! bytes for text and binary, a count byte for sets, lists and maps). Every byte string
//! decodes to some item, so a fuzzer's mutations always reach the parser.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{attr, lease_from_item, lease_to_item, other_entity};
use crate::error::Error;

/// The names a byte picks from: the lease table's, plus `leaseKey` twice as often.
const NAMES: [&str; 16] = [
    attr::LEASE_KEY,
    attr::LEASE_KEY,
    attr::LEASE_OWNER,
    attr::LEASE_COUNTER,
    attr::CHECKPOINT,
    attr::CHECKPOINT_SUB,
    attr::PENDING,
    attr::PENDING_SUB,
    attr::PENDING_STATE,
    attr::OWNER_SWITCHES,
    attr::PARENTS,
    attr::CHILDREN,
    attr::STARTING_HASH_KEY,
    attr::ENDING_HASH_KEY,
    attr::CHECKPOINT_OWNER,
    attr::ENTITY_TYPE,
];

/// Reads bytes front to back; runs out as zeros.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn take(&mut self) -> &[u8] {
        let len = usize::from(self.byte()).min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        taken
    }

    fn text(&mut self) -> String {
        String::from_utf8_lossy(self.take()).into_owned()
    }

    fn value(&mut self, depth: u8) -> AttributeValue {
        match self.byte() % 10 {
            0 | 1 => AttributeValue::S(self.text()),
            2 | 3 => AttributeValue::N(self.text()),
            4 => AttributeValue::B(Blob::new(self.take())),
            5 => AttributeValue::Ss((0..self.byte() % 4).map(|_| self.text()).collect()),
            6 => AttributeValue::Ns((0..self.byte() % 4).map(|_| self.text()).collect()),
            7 if depth < 2 => AttributeValue::L(
                (0..self.byte() % 4)
                    .map(|_| self.value(depth + 1))
                    .collect(),
            ),
            7 => AttributeValue::Bool(self.byte() & 1 == 1),
            8 if depth < 2 => AttributeValue::M(
                (0..self.byte() % 4)
                    .map(|_| (self.text(), self.value(depth + 1)))
                    .collect(),
            ),
            _ => AttributeValue::Null(true),
        }
    }
}

/// Decodes bytes into a DynamoDB item (see the module's description); a later attribute
/// of the same name replaces an earlier one.
fn item_from_bytes(input: &[u8]) -> HashMap<String, AttributeValue> {
    let mut bytes = Reader(input);
    let mut item = HashMap::new();
    while !bytes.0.is_empty() {
        let pick = usize::from(bytes.byte());
        let name = match NAMES.get(pick % (NAMES.len() + 1)) {
            Some(name) => (*name).to_owned(),
            None => bytes.text(),
        };
        let value = bytes.value(0);
        item.insert(name, value);
    }
    item
}

/// Reads the item `input` decodes to as the lease table reads a scanned item.
///
/// # Panics
/// When reading panics, when an item that is not a lease (a KCL 3.5 `entityType`) would be
/// read as one, or when a lease read from an item does not come back the same through the
/// item it writes: what a fuzzer looks for. Returns normally for every input otherwise.
pub fn lease_item(input: &[u8]) {
    let item = item_from_bytes(input);
    if other_entity(&item).is_some() {
        return;
    }
    match lease_from_item(&item) {
        Ok(lease) => {
            let written = lease_to_item(&lease);
            assert_eq!(other_entity(&written), None);
            match lease_from_item(&written) {
                Ok(again) => assert_eq!(again, lease, "{item:?}"),
                Err(e) => panic!("a lease's own item does not read back: {e} ({lease:?})"),
            }
        }
        Err(Error::InvalidLease { lease_key, reason }) => {
            assert!(!reason.is_empty());
            // The key is named whenever the item has a readable one.
            if let Some(AttributeValue::S(key)) = item.get(attr::LEASE_KEY) {
                assert_eq!(lease_key.as_deref(), Some(key.as_str()));
            }
        }
        Err(other) => panic!("reading an item failed with {other:?}, not InvalidLease"),
    }
}
