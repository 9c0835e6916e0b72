"""Interop peer: the Python `aws_kinesis_agg` package, driven through its public API.

Usage: py_peer.py aggregate|deaggregate IN.json OUT.json

aggregate    IN:  {"max_size": N, "records": [{"pk": str, "ehk": str|null, "data": base64}]}
             OUT: [{"pk": str, "ehk": str|null, "data": base64}]  (Kinesis records, in order)
deaggregate  IN:  [{"pk": str, "ehk": str|null, "data": base64}]  (Kinesis records)
             OUT: [[{"pk": str, "ehk": str|null, "ssn": int|null, "data": base64}]]  (one list per input)
"""

import base64
import json
import sys

from aws_kinesis_agg.aggregator import AggRecord, RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records


def b64(raw):
    return base64.b64encode(raw).decode("ascii")


def kinesis_record(pk, ehk, data):
    return {"pk": pk, "ehk": ehk or None, "data": b64(data)}


def fits_alone(max_size, pk, data, ehk):
    # The aggregator raises (or silently drops the record) when one record cannot fit in an
    # empty aggregate; the KPL sends such a record as it is, so the harness does the same.
    try:
        return AggRecord(max_size).add_user_record(pk, data, ehk)
    except ValueError:
        return False


def aggregate(spec):
    max_size = spec["max_size"]
    agg = RecordAggregator(max_size=max_size)
    out = []

    def emit(agg_record):
        if agg_record is not None:
            assert agg_record.get_num_user_records() > 0, "peer emitted an empty aggregate"
            out.append(kinesis_record(*agg_record.get_contents()))

    for r in spec["records"]:
        pk, ehk, data = r["pk"], r["ehk"], base64.b64decode(r["data"])
        if not fits_alone(max_size, pk, data, ehk):
            emit(agg.clear_and_get())
            out.append(kinesis_record(pk, ehk, data))
            continue
        emit(agg.add_user_record(pk, data, ehk))
    emit(agg.clear_and_get())
    return out


def deaggregate(records):
    out = []
    for i, r in enumerate(records):
        boto3_record = {
            "SequenceNumber": str(i),
            "PartitionKey": r["pk"],
            "ApproximateArrivalTimestamp": 0,
            "Data": base64.b64decode(r["data"]),
        }
        subs = []
        for u in iter_deaggregate_records([boto3_record], data_format="Boto3"):
            k = u["kinesis"]
            data = k["data"]
            # Aggregated sub-records come back base64-encoded, plain records as raw bytes.
            raw = base64.b64decode(data) if k.get("aggregated") else data
            subs.append(
                {
                    "pk": k["partitionKey"],
                    "ehk": k.get("explicitHashKey"),
                    "ssn": k.get("subSequenceNumber"),
                    "data": b64(raw),
                }
            )
        out.append(subs)
    return out


def main():
    mode, src, dst = sys.argv[1:4]
    with open(src, encoding="utf-8") as f:
        spec = json.load(f)
    result = {"aggregate": aggregate, "deaggregate": deaggregate}[mode](spec)
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
