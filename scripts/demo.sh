#!/usr/bin/env bash
# The main job, on a fresh machine: a producer and a fleet of three consumer worker processes
# on the embedded emulators (Kinesis: ferrokinesis, DynamoDB: dynoxide); midway a shard is
# split and a worker is killed with SIGKILL; it ends with a verified summary (exit status 1 if
# anything was lost or reordered). Needs only a Rust toolchain.
# Set AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL_DYNAMODB to run it against another emulator;
# pass --aws to run it on real AWS (it asks first; --yes does not). Extra arguments go to the
# demo, e.g.
#   scripts/demo.sh --efo                                  # enhanced fan-out
#   scripts/demo.sh --records 200000 --rate 5000 --shards 8 --workers 4
#   scripts/demo.sh --help
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -p kinesis-examples --bin demo -- "$@"
