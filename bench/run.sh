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
    "$O/bench/$n"; r=$?
    if [ $r -eq 77 ]; then echo "$n skipped"; elif [ $r -ne 0 ]; then echo "$n failed"; rc=1; fi
done
for s in bench/bench_*.sh; do
    [ -e "$s" ] || continue
    echo "== $(basename "$s" .sh)"
    O="$O" bash "$s" || { echo "$s failed"; rc=1; }
done
exit $rc
