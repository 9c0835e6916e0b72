#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/ (checked in; run again only to change them).

Each target's seeds are valid inputs and the bad inputs of the reliability suite, so a
fuzzer (and the corpus tests) start from every kind of input the parser must handle.
"""
import hashlib
import json
import os
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = bytes([0xF3, 0x89, 0x9A, 0xC2])
COMPRESSED_MAGIC = bytes([0xF3, 0x89, 0x9A, 0xC3])


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, wire, payload):
    key = varint((number << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def record(pk_index, data, ehk_index=None, tags=()):
    body = field(1, 0, pk_index)
    if ehk_index is not None:
        body += field(2, 0, ehk_index)
    body += field(3, 2, data)
    for key, value in tags:
        tag = field(1, 2, key.encode())
        if value is not None:
            tag += field(2, 2, value.encode())
        body += field(4, 2, tag)
    return field(3, 2, body)


def aggregate(keys, ehks, records):
    body = b"".join(field(1, 2, k.encode()) for k in keys)
    body += b"".join(field(2, 2, h.encode()) for h in ehks)
    return body + b"".join(records)


def frame(body):
    return MAGIC + body + hashlib.md5(body).digest()


def write(target, name, data):
    folder = os.path.join(HERE, "seeds", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def deaggregate():
    two = aggregate(["user-1", "user-2"], [], [record(0, b"first"), record(1, b"second")])
    ehk = aggregate(["k", "\u00e9\u00e9"], ["0", str(2**128 - 1)],
                    [record(0, b"a", 0, [("t", "v"), ("u", None)]), record(1, b"", 1), record(0, b"z")])
    bodies = {
        "two_records": two,
        "explicit_hash_keys_and_tags": ehk,
        "zero_records": aggregate(["k"], [], []),
        "partition_key_index_out_of_range": aggregate(["k"], [], [record(1, b"x")]),
        "explicit_hash_key_index_out_of_range": aggregate(["k"], ["5"], [record(0, b"x", 1)]),
        "explicit_hash_key_not_decimal": aggregate(["k"], ["12a"], [record(0, b"x", 0)]),
        "explicit_hash_key_negative": aggregate(["k"], ["-1"], [record(0, b"x", 0)]),
        "explicit_hash_key_too_big": aggregate(["k"], [str(2**128)], [record(0, b"x", 0)]),
        "explicit_hash_key_empty": aggregate(["k"], [""], [record(0, b"x", 0)]),
        "huge_declared_length": field(1, 2, b"k")[:1] + varint(2**62) + b"k",
        "truncated": two[:-3],
        "missing_data_field": aggregate(["k"], [], [field(3, 2, field(1, 0, 0))]),
    }
    for name, body in bodies.items():
        write("deaggregate", "body_" + name, body)
        write("deaggregate", "framed_" + name, frame(body))
    framed = frame(two)
    write("deaggregate", "bad_magic", bytes([0xF3, 0x89, 0x9A, 0xC1]) + framed[4:])
    write("deaggregate", "bad_md5", framed[:-1] + bytes([framed[-1] ^ 1]))
    write("deaggregate", "magic_only", MAGIC)
    write("deaggregate", "plain", b"just a record")
    write("deaggregate", "compressed_aggregate", COMPRESSED_MAGIC + zlib.compress(framed))
    write("deaggregate", "compressed_corrupt_aggregate",
          COMPRESSED_MAGIC + zlib.compress(framed[:-1] + b"\0"))
    write("deaggregate", "compressed_damaged", COMPRESSED_MAGIC + zlib.compress(framed)[:-4])


# Attribute name bytes and type bytes of kcl/src/leases/lease_table/fuzzing.rs.
NAME = {"leaseKey": 0, "leaseOwner": 2, "leaseCounter": 3, "checkpoint": 4,
        "checkpointSubSequenceNumber": 5, "pendingCheckpoint": 6,
        "pendingCheckpointSubSequenceNumber": 7, "pendingCheckpointState": 8,
        "ownerSwitchesSinceCheckpoint": 9, "parentShardId": 10, "childShardIds": 11,
        "startingHashKey": 12, "endingHashKey": 13, "checkpointOwner": 14, "entityType": 15}
TYPE = {"S": 0, "N": 2, "B": 4, "SS": 5, "NS": 6, "L": 7, "M": 8, "NULL": 9}


def text(s):
    b = s.encode() if isinstance(s, str) else s
    return bytes([len(b)]) + b


def attr(name, kind, value=None):
    out = bytes([NAME[name] if name in NAME else 16, TYPE[kind]])
    if name not in NAME:
        out = bytes([16]) + text(name) + bytes([TYPE[kind]])
    if kind in ("S", "N", "B"):
        return out + text(value)
    if kind in ("SS", "NS"):
        return out + bytes([len(value)]) + b"".join(text(v) for v in value)
    return out


def lease_item():
    lease = (attr("leaseKey", "S", "shardId-000000000001") + attr("leaseCounter", "N", "7")
             + attr("checkpoint", "S", "49590338271490256608559692538361571095921575989136588898")
             + attr("checkpointSubSequenceNumber", "N", "3") + attr("leaseOwner", "S", "worker-1")
             + attr("ownerSwitchesSinceCheckpoint", "N", "1")
             + attr("parentShardId", "SS", ["shardId-000000000000"])
             + attr("startingHashKey", "S", "0") + attr("endingHashKey", "S", str(2**127)))
    seeds = {
        "valid_lease": lease,
        "valid_pending": lease + attr("pendingCheckpoint", "S", "123")
        + attr("pendingCheckpointSubSequenceNumber", "N", "0")
        + attr("pendingCheckpointState", "B", b"\x00\x01"),
        "kcl3_entity_lease": lease + attr("entityType", "S", "LEASE"),
        "kcl3_worker_metrics": attr("leaseKey", "S", "worker-1")
        + attr("entityType", "S", "WORKER_METRIC_STATS"),
        "missing_counter": attr("leaseKey", "S", "k") + attr("checkpoint", "S", "LATEST"),
        "missing_key": attr("leaseCounter", "N", "1") + attr("checkpoint", "S", "LATEST"),
        "counter_not_number": attr("leaseKey", "S", "k") + attr("leaseCounter", "S", "one")
        + attr("checkpoint", "S", "LATEST"),
        "counter_negative": attr("leaseKey", "S", "k") + attr("leaseCounter", "N", "-1")
        + attr("checkpoint", "S", "LATEST"),
        "checkpoint_unknown": attr("leaseKey", "S", "k") + attr("leaseCounter", "N", "1")
        + attr("checkpoint", "S", "SOMEWHERE"),
        "hash_range_reversed": attr("leaseKey", "S", "k") + attr("leaseCounter", "N", "1")
        + attr("checkpoint", "S", "TRIM_HORIZON") + attr("startingHashKey", "S", "9")
        + attr("endingHashKey", "S", "1"),
        "foreign_schema": attr("id", "S", "x") + attr("payload", "B", b"\xff")
        + attr("leaseKey", "N", "5"),
    }
    for name, data in seeds.items():
        write("lease_item", name, data)


def produce_json_line():
    lines = {
        "text": {"partition_key": "p", "data": "h\u00e9llo"},
        "base64": {"partition_key": "p", "data_b64": "AAEC"},
        "explicit_hash_key": {"partition_key": "p", "explicit_hash_key": "5", "data": "x"},
        "explicit_hash_key_too_big": {"partition_key": "p", "explicit_hash_key": str(2**128), "data": "x"},
        "explicit_hash_key_negative": {"partition_key": "p", "explicit_hash_key": "-1", "data": "x"},
        "partition_key_empty": {"partition_key": "", "data": "x"},
        "partition_key_257": {"partition_key": "\u00e9" * 257, "data": "x"},
        "both_data": {"partition_key": "p", "data": "a", "data_b64": "AA=="},
        "no_data": {"partition_key": "p"},
        "unknown_field": {"partition_key": "p", "data": "a", "extra": 1},
        "bad_base64": {"partition_key": "p", "data_b64": "!!"},
    }
    for name, obj in lines.items():
        write("produce_json_line", name, json.dumps(obj, ensure_ascii=False))
    write("produce_json_line", "not_json", "not json")
    write("produce_json_line", "array", '[{"partition_key": "p"}]')
    # serde reads a struct from an array of its fields: such a line must be refused.
    write("produce_json_line", "array_of_fields", '["p", null, "hello", null]')


def multilang_line():
    lines = {
        "status": '{"action": "status", "responseFor": "initialize"}',
        "checkpoint_nulls": '{"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null}',
        "checkpoint_number": '{"action":"checkpoint","sequenceNumber":495,"subSequenceNumber":"3"}',
        "checkpoint_bad_sub": '{"action":"checkpoint","sequenceNumber":"1","subSequenceNumber":-1}',
        "checkpoint_object": '{"action":"checkpoint","sequenceNumber":{"a":1}}',
        "status_no_response_for": '  {"action":"status"}  ',
        "other_action": '{"action":"shutdown"}',
        "log_line": "INFO something happened",
        "unterminated": '{"action": "status", "responseFor": "in',
    }
    for name, line in lines.items():
        write("multilang_line", name, line)


deaggregate()
lease_item()
produce_json_line()
multilang_line()
