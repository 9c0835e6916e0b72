#!/usr/bin/env bash
# Runs every fuzz target (or those named) one after the other for SECS seconds each
# (default 600), on stable Rust without a sanitizer (-s none), starting from the
# checked-in seeds; the corpus grows in corpus/<target>, crashes land in
# artifacts/<target>, each run's libFuzzer log in logs/<target>.log.
#
#   fuzz/run.sh                       # all four, 10 minutes each
#   SECS=60 fuzz/run.sh deaggregate   # one, one minute
set -euo pipefail
cd "$(dirname "$0")"
secs=${SECS:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(deaggregate lease_item produce_json_line multilang_line)
mkdir -p logs
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "=== $t: ${secs}s"
    cargo fuzz run -s none "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 2>&1 | tee "logs/$t.log" | grep -E "^(#[0-9]+\s+DONE|stat::|==|SUMMARY|Test unit|artifact)" || true
done
