#!/usr/bin/env bash
# `kinesis-cat produce` with each global allocator, beside the producer library, in the
# same rounds of the produce bench (cli/benches/produce.rs):
#
#   scripts/bench-allocators.sh     # prints the produce bench's table with a row per build
#
# Builds the release CLI three times (glibc malloc: no allocator feature; `mimalloc`;
# `jemalloc`) and keeps each binary under $CARGO_TARGET_DIR/allocator-clis/, then runs the
# produce bench with PRODUCE_BENCH_CLIS naming them, plus the glibc build with
# MALLOC_ARENA_MAX=2 and with glibc's trim threshold and top pad raised (the two settings a
# library user can apply to a glibc process without rebuilding it). Each build only
# recompiles the kinesis-cat crate and the allocator.
#
# Environment: CARGO_TARGET_DIR (default <repo>/target); PRODUCE_BENCH_ROUNDS (default 3)
# and PRODUCE_BENCH_LINES (default 300000), as for the bench.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
out="$CARGO_TARGET_DIR/allocator-clis"
mkdir -p "$out"
cd "$repo"

for alloc in glibc mimalloc jemalloc; do
    features=(--no-default-features)
    [ "$alloc" = glibc ] || features+=(--features "$alloc")
    printf '\n== build kinesis-cat with %s\n' "$alloc" >&2
    cargo build --release -p kinesis-cat --bin kinesis-cat "${features[@]}" >&2
    cp "$CARGO_TARGET_DIR/release/kinesis-cat" "$out/kinesis-cat-$alloc"
done

tunables="GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456:glibc.malloc.top_pad=67108864"
clis="glibc malloc|$out/kinesis-cat-glibc"
clis+=";glibc malloc|$out/kinesis-cat-glibc|MALLOC_ARENA_MAX=2"
clis+=";glibc malloc|$out/kinesis-cat-glibc|$tunables"
clis+=";mimalloc|$out/kinesis-cat-mimalloc"
clis+=";jemalloc|$out/kinesis-cat-jemalloc"
printf '\n== produce bench\n' >&2
PRODUCE_BENCH_CLIS="$clis" cargo bench -p kinesis-cat --bench produce
