// Interop peer: the Node `aws-kinesis-agg` package, driven through its public API.
//
// Usage: node node_peer.js aggregate|aggregate-native|deaggregate IN.json OUT.json
// (NODE_PATH must point at the node_modules holding aws-kinesis-agg.)
//
// aggregate         IN:  {"max_size": N, "records": [{"pk", "ehk": str|null, "data": base64}]}
//                   OUT: [{"pk", "ehk": str|null, "data": base64}]  (Kinesis records, in order)
//                   The package has no size setting (it fills to 1 MiB), so aggregates are cut
//                   at max_size using its own size accounting (calculateUserRecordSize,
//                   totalBytes) plus the 20 bytes of magic and MD5.
// aggregate-native  as aggregate, through RecordAggregator.aggregateRecords (1 MiB aggregates).
// deaggregate       IN:  [{"pk", "ehk": str|null, "data": base64}]  (Kinesis records)
//                   OUT: [[{"pk", "ehk": str|null, "ssn": int|null, "data": base64}]]
'use strict';

const fs = require('fs');
const agg = require('aws-kinesis-agg');

const FRAMING = 20; // magic (4) + MD5 (16), not counted by the package's size accounting

function userRecord(r) {
  const u = { partitionKey: r.pk, data: Buffer.from(r.data, 'base64') };
  if (r.ehk !== null && r.ehk !== undefined) {
    u.explicitHashKey = r.ehk;
  }
  return u;
}

function kinesisRecord(encoded) {
  return {
    pk: encoded.partitionKey,
    ehk: encoded.ExplicitHashKey === undefined ? null : encoded.ExplicitHashKey,
    data: encoded.data.toString('base64'),
  };
}

function aggregate(spec) {
  const out = [];
  const ra = new agg.RecordAggregator();
  const flush = () => {
    if (ra.length() > 0) {
      out.push(kinesisRecord(ra.build()));
    }
  };
  for (const r of spec.records) {
    const u = userRecord(r);
    let size = ra.calculateUserRecordSize(u);
    if (ra.length() > 0 && ra.totalBytes + size + FRAMING > spec.max_size) {
      flush();
      size = ra.calculateUserRecordSize(u);
    }
    if (size + FRAMING > spec.max_size) {
      // Too big for any aggregate: sent as it is, as the KPL does.
      out.push({ pk: r.pk, ehk: r.ehk, data: r.data });
      continue;
    }
    ra.addUserRecord(u);
  }
  flush();
  return out;
}

function aggregateNative(spec) {
  const out = [];
  const ra = new agg.RecordAggregator();
  ra.aggregateRecords(spec.records.map(userRecord), true, (err, encoded) => {
    if (err) {
      throw err;
    }
    out.push(kinesisRecord(encoded));
  });
  return out;
}

function deaggregate(records) {
  return records.map((r, i) => {
    const input = { partitionKey: r.pk, data: r.data, sequenceNumber: String(i) };
    let subs;
    agg.deaggregateSync(input, true, (err, userRecords) => {
      if (err) {
        throw err;
      }
      subs = userRecords.map((u) => ({
        pk: u.partitionKey,
        ehk: u.explicitPartitionKey === undefined ? null : u.explicitPartitionKey,
        ssn: u.subSequenceNumber === undefined ? null : u.subSequenceNumber,
        data: u.data,
      }));
    });
    return subs;
  });
}

function main() {
  const [mode, src, dst] = process.argv.slice(2);
  const spec = JSON.parse(fs.readFileSync(src, 'utf8'));
  const modes = { aggregate, 'aggregate-native': aggregateNative, deaggregate };
  if (!modes[mode]) {
    throw new Error(`unknown mode ${mode}`);
  }
  fs.writeFileSync(dst, JSON.stringify(modes[mode](spec)));
}

main();
