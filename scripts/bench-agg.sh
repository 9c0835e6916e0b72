#!/usr/bin/env bash
# Benchmarks kinesis-agg against the Python and Node aggregation peers and the MD5 bound.
#
#   scripts/bench-agg.sh            # prints a markdown table; also saved to
#                                   # $CARGO_TARGET_DIR/bench-agg/summary.md
#
# Steps: (1) the interop tests, which install the pinned peers under
# $CARGO_TARGET_DIR/interop and prove both directions agree; (2) the codec bench exports its
# workloads (same records for everyone); (3) the criterion benchmarks (encode, decode, MD5);
# (4) the Python and Node benchmarks; (5) the table. Takes about 5 minutes on 2 cores.
#
# Environment: CARGO_TARGET_DIR (default <repo>/target); WORKSPACE_DIR, the directory to
# run cargo from (default the repository root: any workspace with kinesis-agg as a member).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
workspace="${WORKSPACE_DIR:-$repo}"
out="$CARGO_TARGET_DIR/bench-agg"
peers="$CARGO_TARGET_DIR/interop"
mkdir -p "$out"

step() { printf '\n== %s\n' "$*" >&2; }

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

step "interop tests (install the peers, check both directions)"
(cd "$workspace" && cargo test -p kinesis-agg --test interop) >&2

step "export the workloads"
rm -rf "$out/workloads"
(cd "$workspace" && KINESIS_AGG_BENCH_EXPORT="$out/workloads" cargo bench -p kinesis-agg --bench codec) >&2

step "criterion: encode, decode, MD5 bound"
rm -rf "$CARGO_TARGET_DIR/criterion/encode" "$CARGO_TARGET_DIR/criterion/encode-owned" "$CARGO_TARGET_DIR/criterion/decode" "$CARGO_TARGET_DIR/criterion/md5"
(cd "$workspace" && cargo bench -p kinesis-agg --bench codec) >&2

step "Python peer"
"$peers/venv/bin/python" "$repo/agg/benches/peers/bench_py.py" "$out/workloads" > "$out/python.json"

step "Node peer"
NODE_PATH="$peers/node/node_modules" node "$repo/agg/benches/peers/bench_node.js" "$out/workloads" > "$out/node.json"

step "summary"
{
  python3 "$repo/agg/benches/peers/summarize.py" "$CARGO_TARGET_DIR/criterion" "$out"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')); load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)."
} | tee "$out/summary.md"
