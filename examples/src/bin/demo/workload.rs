//! The records the demo produces: JSON events of an online shop, keyed by user, with the
//! producer's per-key sequence number and the time they were handed to the producer.
//!
//! ```text
//!  Workload::next() ─▶ key  "user-00042"  (Zipf over --keys: a few hot users, a long tail)
//!                  ─▶ data {"user":"user-00042","seq":17,"sent_us":…,"kind":"add_to_cart",
//!                           "item":"sku-8812","body":"…"}      (log-normal size, 80 B – 16 KiB)
//!  EventView::decode(data) ─▶ (user, seq, sent_us): what the workers report back
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Zipf};
use serde::{Deserialize, Serialize};

/// Smallest and largest payload, in bytes.
const SIZE_RANGE: (usize, usize) = (80, 16 * 1024);
/// Median payload size, in bytes.
const MEDIAN_SIZE: f64 = 400.0;
/// Event kinds and their weights.
const KINDS: [(&str, u32); 5] = [
    ("page_view", 60),
    ("search", 20),
    ("add_to_cart", 12),
    ("checkout", 5),
    ("login", 3),
];
/// Text the bodies are cut from.
const FILLER: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud \
exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. ";

/// One event as written into a record's data.
#[derive(Debug, Serialize)]
struct Event<'a> {
    /// The partition key.
    user: &'a str,
    /// The producer's sequence number for this key (0, 1, 2, ...).
    seq: u64,
    /// Microseconds since the Unix epoch when the record was handed to the producer.
    sent_us: u64,
    /// What happened.
    kind: &'a str,
    /// The item it happened to.
    item: String,
    /// Padding to a realistic size.
    body: &'a str,
}

/// What a worker reads back from an event (other fields are skipped).
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct EventView<'a> {
    /// The partition key the producer used.
    pub(crate) user: &'a str,
    /// The producer's per-key sequence number.
    pub(crate) seq: u64,
    /// When it was handed to the producer (µs since the Unix epoch).
    pub(crate) sent_us: u64,
}

impl<'a> EventView<'a> {
    /// Reads the fields the demo checks from a record's data.
    ///
    /// # Errors
    /// The JSON error when the data is not such an event.
    pub(crate) fn decode(data: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(data)
    }
}

/// One record to put.
#[derive(Debug)]
pub(crate) struct NextRecord {
    /// Partition key.
    pub(crate) key: String,
    /// The producer's sequence number for the key.
    pub(crate) seq: u64,
    /// The JSON event.
    pub(crate) data: Vec<u8>,
}

/// A deterministic stream of records for a seed.
#[derive(Debug)]
pub(crate) struct Workload {
    /// The random source.
    rng: StdRng,
    /// Key popularity.
    keys: Zipf<f64>,
    /// Payload sizes.
    sizes: LogNormal<f64>,
    /// Next sequence number per key.
    next_seq: Vec<u64>,
    /// Total of the kind weights.
    kind_total: u32,
}

impl Workload {
    /// A workload over `keys` keys (at least 1).
    pub(crate) fn new(keys: u32, seed: u64) -> Self {
        let keys = keys.max(1);
        Self {
            rng: StdRng::seed_from_u64(seed),
            // s = 1.1: the hottest user gets ~10 % of the events at 1,000 users.
            keys: Zipf::new(f64::from(keys), 1.1).expect("n >= 1 and s > 0 are valid"),
            sizes: LogNormal::new(MEDIAN_SIZE.ln(), 0.8).expect("sigma > 0 is valid"),
            next_seq: vec![0; keys as usize],
            kind_total: KINDS.iter().map(|(_, w)| w).sum(),
        }
    }

    /// The key of an index, as the producer and the workers see it.
    pub(crate) fn key_name(index: u32) -> String {
        format!("user-{index:05}")
    }

    /// The next record, stamped with the current time.
    pub(crate) fn next_record(&mut self) -> NextRecord {
        // Zipf yields 1..=n as a float.
        let key_index = (self.keys.sample(&mut self.rng) as u32).saturating_sub(1);
        let key_index = key_index.min(self.next_seq.len() as u32 - 1);
        let key = Self::key_name(key_index);
        let seq = self.next_seq[key_index as usize];
        self.next_seq[key_index as usize] += 1;
        let mut pick = self.rng.random_range(0..self.kind_total);
        let kind = KINDS
            .iter()
            .find(|(_, w)| {
                let hit = pick < *w;
                pick = pick.saturating_sub(*w);
                hit
            })
            .map_or(KINDS[0].0, |(k, _)| k);
        let size = (self.sizes.sample(&mut self.rng) as usize).clamp(SIZE_RANGE.0, SIZE_RANGE.1);
        let item = format!("sku-{}", self.rng.random_range(1000..10_000));
        let mut body = String::with_capacity(size);
        while body.len() < size.saturating_sub(100) {
            let left = size - 100 - body.len();
            body.push_str(&FILLER[..left.min(FILLER.len())]);
        }
        let data = serde_json::to_vec(&Event {
            user: &key,
            seq,
            sent_us: now_us(),
            kind,
            item,
            body: &body,
        })
        .expect("an event always serialises");
        NextRecord { key, seq, data }
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_per_key_sequences_and_realistic_sizes() {
        let mut w = Workload::new(100, 7);
        let mut last = std::collections::HashMap::new();
        let mut sizes = Vec::new();
        for _ in 0..5_000 {
            let r = w.next_record();
            let view = EventView::decode(&r.data).expect("decodes");
            assert_eq!(view.user, r.key);
            assert_eq!(view.seq, r.seq);
            let expected = last.get(&r.key).map_or(0, |s| s + 1);
            assert_eq!(r.seq, expected, "per-key sequence without gaps");
            last.insert(r.key.clone(), r.seq);
            sizes.push(r.data.len());
        }
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2];
        assert!((250..600).contains(&median), "median size {median}");
        assert!(*sizes.last().unwrap() <= SIZE_RANGE.1 + 200);
        // Zipf: the hottest key is far above the average (50 per key).
        let hottest = last.values().max().copied().unwrap_or(0);
        assert!(hottest > 400, "hottest key only {hottest}");
    }

    #[test]
    fn the_same_seed_gives_the_same_keys() {
        let keys = |seed| {
            let mut w = Workload::new(1_000, seed);
            (0..100).map(|_| w.next_record().key).collect::<Vec<_>>()
        };
        assert_eq!(keys(1), keys(1));
        assert_ne!(keys(1), keys(2));
    }

    #[test]
    fn foreign_data_is_refused() {
        assert!(EventView::decode(b"not json").is_err());
        assert!(EventView::decode(br#"{"user":"u"}"#).is_err());
    }
}
