"""Encode/decode benchmark of the Python `aws_kinesis_agg` package on the exported workloads.

Usage: bench_py.py WORKLOAD_DIR   (prints one JSON document)

Encode: RecordAggregator(max_size) fed every (partition key, data) record, each full
aggregate serialized with get_contents() (protobuf + MD5). Decode: iter_deaggregate_records
(Boto3 record format, raw bytes in) over our aggregates of the same records, consumed fully.
Each is timed in-process, median of repeated runs after a warm-up run.
"""

import base64
import json
import os
import statistics
import sys
import time

from google.protobuf.internal import api_implementation
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

MIN_SECONDS = 3.0
MIN_RUNS = 5
MAX_RUNS = 200


def load(directory, name):
    with open(os.path.join(directory, "workload-%s.json" % name), encoding="utf-8") as f:
        w = json.load(f)
    w["records"] = [(pk, base64.b64decode(d)) for pk, d in w["records"]]
    w["aggregates"] = [(pk, base64.b64decode(d)) for pk, d in w["aggregates"]]
    return w


def encode(records, max_size):
    agg = RecordAggregator(max_size=max_size)
    out = []
    for pk, data in records:
        full = agg.add_user_record(pk, data)
        if full is not None:
            out.append(full.get_contents())
    last = agg.clear_and_get()
    if last is not None:
        out.append(last.get_contents())
    return out


def decode(boto3_records):
    n = 0
    for _ in iter_deaggregate_records(boto3_records, data_format="Boto3"):
        n += 1
    return n


def timed(fn):
    fn()  # warm-up
    runs = []
    start = time.perf_counter()
    while len(runs) < MAX_RUNS and (len(runs) < MIN_RUNS or time.perf_counter() - start < MIN_SECONDS):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), len(runs)


def main():
    directory = sys.argv[1]
    result = {"peer": "python", "protobuf_backend": api_implementation.Type(), "cases": {}, "wire": {}}
    for name in ["64B", "512B", "10KiB"]:
        w = load(directory, name)
        records, max_size = w["records"], w["max_size"]
        boto3_records = [
            {"SequenceNumber": str(i), "PartitionKey": pk, "ApproximateArrivalTimestamp": 0, "Data": data}
            for i, (pk, data) in enumerate(w["aggregates"])
        ]
        # Sanity: the peer takes our aggregates apart into every record.
        assert decode(boto3_records) == len(records), name
        enc_s, enc_runs = timed(lambda: encode(records, max_size))
        dec_s, dec_runs = timed(lambda: decode(boto3_records))
        result["cases"][name] = {
            "records": len(records),
            "payload_bytes": w["payload_bytes"],
            "encode_s": enc_s,
            "encode_runs": enc_runs,
            "decode_s": dec_s,
            "decode_runs": dec_runs,
        }
    for name in ["wire-seq", "wire-random"]:
        w = load(directory, name)
        out = encode(w["records"], w["max_size"])
        result["wire"][name] = {
            "payload_bytes": w["payload_bytes"],
            "encoded_bytes": sum(len(data) for _, _, data in out),
            "encoded_key_bytes": sum(len(pk.encode("utf-8")) for pk, _, _ in out),
            "kinesis_records": len(out),
        }
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
