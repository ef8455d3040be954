#!/bin/sh
# Run every libFuzzer target built in $O/fuzz for FUZZ_SECONDS each, as
# many at a time as there are cores, from its committed seed corpus, and
# print one line per target: runs, seconds, corpus size, findings.
# Non-zero exit on a finding.
#   FUZZ_TARGETS="meter wg_uapi"  only these (names without fuzz_)
#   FUZZ_JOBS_NICE=19             niceness of the fuzzer processes
#   FUZZ_JOBS=1                   targets run at a time (default: one per core)
# Findings (crash-*, leak-*, timeout-*, oom-*) land in $O/fuzz/findings/<t>/;
# the grown corpus in $O/fuzz/corpus/<t>/ (the seeds stay untouched).
set -u
O=${O:-build-fuzz}
S=${FUZZ_SECONDS:-60}
NICE=${FUZZ_JOBS_NICE:-0}
here=$(dirname "$0")
targets=${FUZZ_TARGETS:-$(for f in "$here"/fuzz_*.c; do
    n=${f##*/fuzz_}; echo "${n%.c}"; done)}

# One target: runs it, then writes its table row to $O/fuzz/logs/<t>.row.
fuzz_one() { # target
    t=$1
    bin=$O/fuzz/fuzz_$t
    work=$O/fuzz/corpus/$t
    found=$O/fuzz/findings/$t
    log=$O/fuzz/logs/$t.log
    mkdir -p "$work" "$found" "$(dirname "$log")"
    start=$(date +%s)
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
    nice -n "$NICE" "$bin" -max_total_time="$S" -timeout=30 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$found/" \
        "$work" "$here/corpus/$t" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    size=$(find "$work" -type f | wc -l)
    n=$(find "$found" -type f | wc -l)
    [ "$rc" -ne 0 ] && [ "$n" -eq 0 ] && n=1
    printf '%-14s %12s %8s %8s %9s\n' "$t" "${runs:-?}" "$secs" "$size" "$n" \
        >"$O/fuzz/logs/$t.row"
}

for t in $targets; do
    if [ ! -x "$O/fuzz/fuzz_$t" ]; then
        echo "fuzz: $O/fuzz/fuzz_$t not built (make fuzz-build)" >&2
        exit 2
    fi
done
mkdir -p "$O/fuzz/logs"
# FUZZ_JOBS targets at a time (one per core); each runs for S seconds, so
# they are started in groups of that size.
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
i=0
for t in $targets; do
    rm -f "$O/fuzz/logs/$t.row"
    fuzz_one "$t" &
    i=$((i + 1))
    [ $((i % jobs)) -eq 0 ] && wait
done
wait

total=0
printf '%-14s %12s %8s %8s %9s\n' target runs seconds corpus findings
for t in $targets; do
    row=$O/fuzz/logs/$t.row
    if [ ! -s "$row" ]; then
        echo "$t: no result (see $O/fuzz/logs/$t.log)" >&2
        total=$((total + 1))
        continue
    fi
    cat "$row"
    n=$(awk '{print $5}' "$row")
    if [ "$n" -gt 0 ]; then
        echo "  see $O/fuzz/logs/$t.log and $O/fuzz/findings/$t/" >&2
        total=$((total + n))
    fi
done
[ "$total" -eq 0 ]
