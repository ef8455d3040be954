#!/bin/sh
# make bench: runs every benchmark binary and prints its table. Figures
# vary with the machine; compare ratios and medians, never single runs.
set -u
O=${O:-build}
rc=0
for src in bench/bench_*.c; do
    [ -e "$src" ] || continue
    n=$(basename "$src" .c)
    echo "== $n"
    "$O/bench/$n" || { echo "$n failed"; rc=1; }
done
for s in bench/bench_*.sh; do
    [ -e "$s" ] || continue
    echo "== $(basename "$s" .sh)"
    O="$O" bash "$s" || { echo "$s failed"; rc=1; }
done
exit $rc
