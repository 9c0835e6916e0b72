//! Criterion benchmarks of the aggregation codec: encode (aggregate into 51,200-byte
//! Kinesis records, MD5 included) and decode (deaggregate, MD5 checked) at 64 B, 512 B and
//! 10 KiB records, and the single-core MD5 bound over the same bytes.
//!
//! The records are generated deterministically (SplitMix64): about 2 MiB of payload per
//! size, partition keys drawn at random from 1,000 distinct keys of 10 to 36 alphanumeric
//! characters. With `KINESIS_AGG_BENCH_EXPORT=<dir>` set, the binary instead writes those
//! records, our encoding of them and the wire-efficiency workloads to `<dir>` as JSON for
//! the peer benchmarks (`benches/peers/`), and exits: run it through
//! `scripts/bench-agg.sh`, which puts everything together.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use kinesis_agg::{deaggregate, Aggregator, KinesisRecord, UserRecord, DIGEST_LEN, MAGIC};
use md5::{Digest, Md5};
use serde_json::json;

/// The KPL's default aggregate size.
const MAX_SIZE: usize = 51_200;
/// Payload per workload, so that every size moves about the same number of bytes.
const PAYLOAD_PER_SIZE: usize = 2 << 20;
/// Record sizes benchmarked.
const SIZES: [(usize, &str); 3] = [(64, "64B"), (512, "512B"), (10 * 1024, "10KiB")];

/// SplitMix64: deterministic, so Rust and the peers see the very same records.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One benchmark workload: user records as (partition key, data).
struct Workload {
    name: &'static str,
    records: Vec<(String, Bytes)>,
}

impl Workload {
    fn payload_bytes(&self) -> u64 {
        self.records.iter().map(|(_, d)| d.len() as u64).sum()
    }
}

/// `count` records of `size` random bytes, keys drawn from 1,000 keys of 10..=36 chars.
fn random_keys_workload(name: &'static str, size: usize, count: usize, seed: u64) -> Workload {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = Rng(seed);
    let keys: Vec<String> = (0..1000)
        .map(|_| {
            let len = 10 + rng.below(27);
            (0..len)
                .map(|_| ALPHABET[rng.below(ALPHABET.len())] as char)
                .collect()
        })
        .collect();
    let records = (0..count)
        .map(|_| {
            let key = keys[rng.below(keys.len())].clone();
            let data: Vec<u8> = (0..size).map(|_| rng.next() as u8).collect();
            (key, Bytes::from(data))
        })
        .collect();
    Workload { name, records }
}

/// The wire-efficiency workload: 20,000 records of 100 B, keys `key-{i % 1000}`.
fn sequential_keys_workload() -> Workload {
    let records = (0..20_000usize)
        .map(|i| {
            (
                format!("key-{}", i % 1000),
                Bytes::from(vec![(i % 251) as u8; 100]),
            )
        })
        .collect();
    Workload {
        name: "wire-seq",
        records,
    }
}

fn throughput_workloads() -> Vec<Workload> {
    SIZES
        .iter()
        .enumerate()
        .map(|(i, &(size, name))| {
            let count = PAYLOAD_PER_SIZE.div_ceil(size);
            random_keys_workload(name, size, count, 0xC0DE_C000 + i as u64)
        })
        .collect()
}

/// Aggregates the workload with `agg` into Kinesis records of at most [`MAX_SIZE`] bytes,
/// handing each to `sink` as soon as it is finished (as a producer ships it).
fn encode_into(
    agg: &mut Aggregator,
    records: &[(String, Bytes)],
    mut sink: impl FnMut(KinesisRecord),
) {
    for (pk, data) in records {
        let record = UserRecord::new(pk.clone(), data.clone()).unwrap();
        if let Err(back) = agg.try_add(record) {
            sink(agg.finish().expect("a full aggregator is not empty"));
            agg.try_add(back).unwrap();
        }
    }
    if let Some(last) = agg.finish() {
        sink(last);
    }
}

/// Aggregates user records the caller holds (as the producer holds them until they are
/// delivered) with `agg`, by reference, handing each Kinesis record to `sink` once finished.
fn encode_refs(agg: &mut Aggregator, records: &[UserRecord], mut sink: impl FnMut(KinesisRecord)) {
    for record in records {
        if !agg.try_add_ref(record) {
            sink(agg.finish().expect("a full aggregator is not empty"));
            assert!(
                agg.try_add_ref(record),
                "an empty aggregator takes any record"
            );
        }
    }
    if let Some(last) = agg.finish() {
        sink(last);
    }
}

fn aggregator() -> Aggregator {
    Aggregator::builder()
        .with_max_size(MAX_SIZE)
        .build()
        .unwrap()
}

/// Aggregates the workload and keeps every Kinesis record.
fn encode(records: &[(String, Bytes)]) -> Vec<KinesisRecord> {
    let mut out = Vec::new();
    encode_into(&mut aggregator(), records, |k| out.push(k));
    out
}

/// Deaggregates every Kinesis record, returning how many user records came out.
fn decode(records: &[KinesisRecord]) -> usize {
    records
        .iter()
        .map(|k| {
            deaggregate(&k.partition_key, k.data.clone())
                .unwrap()
                .records
                .len()
        })
        .sum()
}

/// The protobuf bodies our aggregates hash (magic and digest stripped).
fn bodies(encoded: &[KinesisRecord]) -> Vec<Bytes> {
    encoded
        .iter()
        .filter(|k| k.is_aggregated())
        .map(|k| k.data.slice(MAGIC.len()..k.data.len() - DIGEST_LEN))
        .collect()
}

/// The payload cut into aggregate-sized chunks: MD5 over exactly the user's bytes.
fn payload_chunks(w: &Workload) -> Vec<Bytes> {
    let all: Vec<u8> = w
        .records
        .iter()
        .flat_map(|(_, d)| d.iter().copied())
        .collect();
    all.chunks(MAX_SIZE).map(Bytes::copy_from_slice).collect()
}

fn md5_all(chunks: &[Bytes]) -> u8 {
    chunks.iter().fold(0, |acc, c| acc ^ Md5::digest(c)[0])
}

fn benches(c: &mut Criterion) {
    for w in throughput_workloads() {
        let encoded = encode(&w.records);
        assert_eq!(decode(&encoded), w.records.len(), "round trip");
        let throughput = Throughput::ElementsAndBytes {
            elements: w.records.len() as u64,
            bytes: w.payload_bytes(),
        };

        // encode: the records are the caller's (made once, outside the timing, as the
        // peers' benchmarks start from records they hold) and are aggregated by reference,
        // as the producer does: the key is copied into the key table, the data shared. One
        // long-lived aggregator, and each Kinesis record dropped once finished (a producer
        // ships an aggregate and lets it go), so the output buffer is reused.
        let user_records: Vec<UserRecord> = w
            .records
            .iter()
            .map(|(pk, d)| UserRecord::new(pk.clone(), d.clone()).unwrap())
            .collect();
        let mut g = c.benchmark_group("encode");
        g.throughput(throughput.clone());
        let mut agg = aggregator();
        g.bench_function(BenchmarkId::from_parameter(w.name), |b| {
            b.iter(|| {
                let mut bytes = 0;
                encode_refs(&mut agg, black_box(&user_records), |k| {
                    bytes += black_box(k).data.len()
                });
                bytes
            })
        });
        g.finish();

        // encode-owned: each record made inside the timing from a copy of its key and a
        // handle on its data (`UserRecord::new`, validation included) and moved into the
        // aggregator (`try_add`): the cost of building owned records counts here.
        let mut g = c.benchmark_group("encode-owned");
        g.throughput(throughput.clone());
        g.bench_function(BenchmarkId::from_parameter(w.name), |b| {
            b.iter(|| {
                let mut bytes = 0;
                encode_into(&mut agg, black_box(&w.records), |k| {
                    bytes += black_box(k).data.len()
                });
                bytes
            })
        });
        g.finish();

        let mut g = c.benchmark_group("decode");
        g.throughput(throughput.clone());
        g.bench_function(BenchmarkId::from_parameter(w.name), |b| {
            b.iter(|| decode(black_box(&encoded)))
        });
        g.finish();

        // The MD5 bound, counted in the same elements and payload bytes: hashing the
        // payload alone (what the user hands over), and hashing the protobuf bodies that
        // encode and decode actually digest (payload plus keys and framing).
        let mut g = c.benchmark_group("md5");
        g.throughput(throughput);
        let chunks = payload_chunks(&w);
        g.bench_function(BenchmarkId::new("payload", w.name), |b| {
            b.iter(|| md5_all(black_box(&chunks)))
        });
        let bodies = bodies(&encoded);
        g.bench_function(BenchmarkId::new("bodies", w.name), |b| {
            b.iter(|| md5_all(black_box(&bodies)))
        });
        g.finish();
    }
}

/// Writes one workload, with our encoding of it, for the peer benchmarks.
fn export_one(dir: &Path, w: &Workload) {
    let encoded = encode(&w.records);
    let records: Vec<_> = w
        .records
        .iter()
        .map(|(pk, d)| json!([pk, B64.encode(d)]))
        .collect();
    let aggregates: Vec<_> = encoded
        .iter()
        .map(|k| json!([k.partition_key, B64.encode(&k.data)]))
        .collect();
    let doc = json!({
        "name": w.name,
        "max_size": MAX_SIZE,
        "payload_bytes": w.payload_bytes(),
        "records": records,
        "aggregates": aggregates,
        "encoded_bytes": encoded.iter().map(|k| k.data.len()).sum::<usize>(),
        "encoded_key_bytes": encoded.iter().map(|k| k.partition_key.len()).sum::<usize>(),
    });
    let path = dir.join(format!("workload-{}.json", w.name));
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn export(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut all = throughput_workloads();
    all.push(sequential_keys_workload());
    // The wire workload with the benchmark's own key pattern (random keys, 10-36 chars).
    all.push(random_keys_workload(
        "wire-random",
        100,
        20_000,
        0x5EED_0100,
    ));
    for w in &all {
        export_one(dir, w);
    }
    eprintln!("exported {} workloads to {}", all.len(), dir.display());
}

fn main() {
    if let Some(dir) = std::env::var_os("KINESIS_AGG_BENCH_EXPORT") {
        export(Path::new(&dir));
        return;
    }
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
}
