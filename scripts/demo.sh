#!/usr/bin/env bash
# The main job, on a fresh machine: one producer and a fleet of consumer workers on the
# embedded emulators (Kinesis: ferrokinesis, DynamoDB: dynoxide), in one process.
# Set AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL_DYNAMODB to run it against real AWS or
# another emulator instead. Extra arguments go to the demo, e.g.
#   scripts/demo.sh --records 100000 --shards 8 --workers 4 --reshard
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release -p kinesis-examples --bin demo -- "$@"
