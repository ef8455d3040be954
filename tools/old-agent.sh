#!/bin/sh
# Build the node agent as it was at an older commit (the last release of
# an older agent contract), for the contract-compatibility test: an agent
# of an older contract than the controller's must keep working.
#   tools/old-agent.sh OUTDIR [COMMIT]
# Prints the agent binary's path. Cached: an OUTDIR that already holds the
# binary built from COMMIT is reused. Exits 77 when the checkout has no git
# history holding COMMIT (a tarball, a shallow clone): nothing to build.
set -eu
mkdir -p "$1"
out=$(cd "$1" && pwd)
# The agent of contract 1 (before agents named their contract).
commit=${2:-e6b1a286e78a63c597a3ee114652a908a0100fe4}
root=$(cd "$(dirname "$0")/.." && pwd)
if ! git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null; then
    echo "old-agent: commit $commit is not in this checkout's history" >&2
    exit 77
fi
bin="$out/$commit/bin/fog-nodeagent"
if [ ! -x "$bin" ]; then
    rm -rf "$out/$commit"
    mkdir -p "$out/$commit/src"
    git -C "$root" archive "$commit" | tar -x -C "$out/$commit/src"
    if ! make -j2 -C "$out/$commit/src" O="$out/$commit/build" \
        BINDIR="$out/$commit/bin" "$out/$commit/bin/fog-nodeagent" \
        >"$out/$commit/build.log" 2>&1; then
        tail -n 20 "$out/$commit/build.log" >&2
        echo "old-agent: building the agent of $commit failed" >&2
        exit 1
    fi
fi
echo "$bin"
