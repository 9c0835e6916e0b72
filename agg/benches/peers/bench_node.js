// Encode/decode benchmark of the Node `aws-kinesis-agg` package on the exported workloads.
//
// Usage: NODE_PATH=<node_modules> node bench_node.js WORKLOAD_DIR   (prints one JSON document)
//
// Encode: RecordAggregator fed every record; the package always fills to 1 MiB, so each
// aggregate is cut at max_size with the package's own size accounting
// (calculateUserRecordSize, totalBytes, plus 20 bytes of magic and MD5) and encoded with
// build() (protobuf + MD5). Decode: deaggregateSync with checksums on, over our aggregates
// of the same records (the API takes base64 in, prepared beforehand, and hands base64
// out). Timed in-process, median of repeated runs after a warm-up run.
'use strict';

const fs = require('fs');
const path = require('path');
const agg = require('aws-kinesis-agg');

const MIN_SECONDS = 3.0;
const MIN_RUNS = 5;
const MAX_RUNS = 200;
const FRAMING = 20;

function load(dir, name) {
  const w = JSON.parse(fs.readFileSync(path.join(dir, `workload-${name}.json`), 'utf8'));
  w.records = w.records.map(([pk, d]) => ({ partitionKey: pk, data: Buffer.from(d, 'base64') }));
  w.aggregates = w.aggregates.map(([pk, d], i) => ({ partitionKey: pk, data: d, sequenceNumber: String(i) }));
  return w;
}

function encode(records, maxSize) {
  const out = [];
  const ra = new agg.RecordAggregator();
  for (const r of records) {
    if (ra.length() > 0 && ra.totalBytes + ra.calculateUserRecordSize(r) + FRAMING > maxSize) {
      out.push(ra.build());
    }
    ra.addUserRecord(r);
  }
  if (ra.length() > 0) {
    out.push(ra.build());
  }
  return out;
}

function decode(aggregates) {
  let n = 0;
  for (const k of aggregates) {
    agg.deaggregateSync(k, true, (err, userRecords) => {
      if (err) {
        throw err;
      }
      n += userRecords.length;
    });
  }
  return n;
}

function timed(fn) {
  fn(); // warm-up
  const runs = [];
  const start = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - start) / 1e9;
  while (runs.length < MAX_RUNS && (runs.length < MIN_RUNS || elapsed() < MIN_SECONDS)) {
    const t0 = process.hrtime.bigint();
    fn();
    runs.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  runs.sort((a, b) => a - b);
  const mid = Math.floor(runs.length / 2);
  const median = runs.length % 2 ? runs[mid] : (runs[mid - 1] + runs[mid]) / 2;
  return [median, runs.length];
}

function main() {
  const dir = process.argv[2];
  const result = { peer: 'node', node: process.version, cases: {}, wire: {} };
  for (const name of ['64B', '512B', '10KiB']) {
    const w = load(dir, name);
    // Sanity: the peer takes our aggregates apart into every record.
    if (decode(w.aggregates) !== w.records.length) {
      throw new Error(`${name}: decode lost records`);
    }
    const [encS, encRuns] = timed(() => encode(w.records, w.max_size));
    const [decS, decRuns] = timed(() => decode(w.aggregates));
    result.cases[name] = {
      records: w.records.length,
      payload_bytes: w.payload_bytes,
      encode_s: encS,
      encode_runs: encRuns,
      decode_s: decS,
      decode_runs: decRuns,
    };
  }
  for (const name of ['wire-seq', 'wire-random']) {
    const w = load(dir, name);
    const out = encode(w.records, w.max_size);
    result.wire[name] = {
      payload_bytes: w.payload_bytes,
      encoded_bytes: out.reduce((s, k) => s + k.data.length, 0),
      encoded_key_bytes: out.reduce((s, k) => s + Buffer.byteLength(k.partitionKey), 0),
      kinesis_records: out.length,
    };
  }
  console.log(JSON.stringify(result));
}

main();
