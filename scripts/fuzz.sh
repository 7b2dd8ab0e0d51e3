#!/usr/bin/env bash
# Runs the libFuzzer drivers of fuzz/ (built by `make fuzz` in build-fuzz/ with clang), one
# target at a time and at the lowest priority, each for FUZZ_RUNS executions (default 10
# million), then merges what it found into fuzz/corpus/<target>, minimised (-merge=1: the
# smallest set of inputs that keeps the coverage). The last line of each run goes to
# build-fuzz/fuzz-results.tsv: the figures docs/fuzzing.md records.
#
#   scripts/fuzz.sh [target...]      every target of fuzz/ when none is named
#
# A crash or a failed invariant stops the run; the input is left in
# build-fuzz/fuzz-work/<target>/ (crash-*, leak-*, timeout-*) to go into fuzz/regress/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${KCHAT_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
RUNS=${FUZZ_RUNS:-10000000}
results=$BUILD/fuzz-results.tsv

targets=("$@")
if ((${#targets[@]} == 0)); then
    for f in "$ROOT"/fuzz/fuzz_*.c; do
        t=${f##*/fuzz_}
        targets+=("${t%.c}")
    done
fi
[[ -f $results ]] || printf 'target\texecutions\tseconds\texec_per_s\tcov\tft\tcorpus_files\tcorpus_bytes\tfinished\n' >"$results"

for t in "${targets[@]}"; do
    bin=$BUILD/fuzz/fuzz_$t
    [[ -x $bin ]] || { echo "fuzz: $bin is missing (make fuzz builds it)" >&2; exit 1; }
    corpus=$ROOT/fuzz/corpus/$t
    work=$BUILD/fuzz-work/$t
    rm -rf "$work"
    mkdir -p "$work/new" "$work/min" "$corpus"
    opts=(-runs="$RUNS" -print_final_stats=1 -artifact_prefix="$work/")
    [[ -f $ROOT/fuzz/$t.dict ]] && opts+=(-dict="$ROOT/fuzz/$t.dict")
    dirs=("$work/new" "$corpus")
    [[ -d $ROOT/fuzz/regress/$t ]] && dirs+=("$ROOT/fuzz/regress/$t")
    echo "== $t: $RUNS executions"
    start=$(date +%s)
    if ! (cd "$work" && nice -n 19 "$bin" "${opts[@]}" "${dirs[@]}") >"$work/log" 2>&1; then
        tail -40 "$work/log" >&2
        echo "fuzz: $t failed; the input is in $work" >&2
        exit 1
    fi
    secs=$(($(date +%s) - start))
    # The minimised corpus replaces the committed one.
    (cd "$work" && nice -n 19 "$bin" -merge=1 "$work/min" "$corpus" "$work/new") >"$work/merge.log" 2>&1
    find "$corpus" -type f -delete
    cp "$work/min"/* "$corpus"/
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/log" | tail -1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    files=$(find "$corpus" -type f | wc -l)
    bytes=$(find "$corpus" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$execs" "$secs" "$eps" "$cov" "$ft" \
        "$files" "$bytes" "$(date -u +%FT%TZ)" | tee -a "$results"
    echo "   $done_line"
done
