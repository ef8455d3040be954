#!/bin/bash
# The packages' systemd units: `systemd-analyze verify` finds nothing wrong
# (with ExecStart pointed at this tree's binaries, which it checks exist),
# and `systemd-analyze security` rates each unit's sandbox no worse than
# the level it has today (controller 1.6, agent 3.1 out of 10 when this
# was written; the ceilings leave room for rounding, not for a lost
# protection such as ProtectSystem or a widened capability set). Prints
# both figures. Skipped when systemd-analyze is missing.
set -eu
command -v systemd-analyze >/dev/null 2>&1 || {
    echo "systemd-analyze is not installed: skipped"; exit 77; }
bin=${FOG_BIN:-bin}
bin=$(cd "$bin" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fog-units-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
for pair in controller:2.0 nodeagent:3.5; do
    unit=${pair%%:*} ceiling=${pair#*:}
    f=fogfabric-$unit.service
    [ -x "$bin/fog-$unit" ] || { echo "$bin/fog-$unit is missing (make first)"; exit 1; }
    sed "s|/usr/bin/fog-$unit|$bin/fog-$unit|" "debian/$f" >"$tmp/$f"
    if ! out=$(systemd-analyze verify "$tmp/$f" 2>&1) || [ -n "$out" ]; then
        echo "$f: systemd-analyze verify:"; echo "$out"; fail=1
    fi
    level=$(systemd-analyze security --offline=yes --no-pager "$tmp/$f" 2>&1 |
            sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    [ -n "$level" ] || { echo "$f: no exposure level read"; fail=1; continue; }
    echo "$f: exposure $level (ceiling $ceiling)"
    awk -v l="$level" -v c="$ceiling" 'BEGIN { exit !(l <= c) }' || {
        echo "$f: exposure $level is above $ceiling"; fail=1; }
done
exit $fail
