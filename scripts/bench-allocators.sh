#!/usr/bin/env bash
# `kinesis-cat produce` with each global allocator, beside the producer library, in the
# same rounds of the produce bench (cli/benches/produce.rs):
#
#   scripts/bench-allocators.sh     # prints the produce bench's table with a row per build
#
# Builds the CLI three times as cargo builds it for benches (glibc malloc: no allocator
# feature; `mimalloc`; `jemalloc`, the default; bench profile, with the producer's benches selected too,
# as `cargo bench --no-run -p kinesis-producer -p kinesis-cat` does, so the dependencies
# built for the other benches are reused) and keeps each binary under
# $CARGO_TARGET_DIR/allocator-clis/, then runs the
# produce bench (whose own CLI build is the default, jemalloc) with PRODUCE_BENCH_CLIS
# naming them, plus the glibc build with
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
    # jemalloc is the CLI's default feature; the others build without it
    case "$alloc" in
        glibc) features=(--no-default-features) ;;
        mimalloc) features=(--no-default-features --features kinesis-cat/mimalloc) ;;
        jemalloc) features=() ;;
    esac
    printf '\n== build kinesis-cat with %s\n' "$alloc" >&2
    cargo bench --no-run -p kinesis-producer -p kinesis-cat "${features[@]}" >&2
    cp "$CARGO_TARGET_DIR/release/kinesis-cat" "$out/kinesis-cat-$alloc"
done

tunables="GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456:glibc.malloc.top_pad=67108864"
clis="glibc malloc|$out/kinesis-cat-glibc"
clis+=";glibc malloc|$out/kinesis-cat-glibc|MALLOC_ARENA_MAX=2"
clis+=";glibc malloc|$out/kinesis-cat-glibc|$tunables"
clis+=";mimalloc|$out/kinesis-cat-mimalloc"
clis+=";jemalloc|$out/kinesis-cat-jemalloc"
printf '\n== produce bench\n' >&2
PRODUCE_BENCH_CLIS="$clis" cargo bench -p kinesis-producer -p kinesis-cat --bench produce
