#!/bin/sh
# make demo: a controller on its embedded sqlite store in a temp dir, a
# tenant with its own key, and the API answering through fogctl.
set -eu
cd "$(dirname "$0")/.."
BIN=$PWD/bin
DIR=$(mktemp -d /tmp/fogdemo.XXXXXX)
PORT=${FOG_DEMO_PORT:-18443}
CTL_PID=

cleanup() {
    [ -n "$CTL_PID" ] && kill "$CTL_PID" 2>/dev/null && wait "$CTL_PID" 2>/dev/null
    [ "${FOG_DEMO_KEEP:-0}" = 1 ] || rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

say() { printf '\n== %s\n' "$*"; }

say "fog-controller init --data-dir $DIR"
"$BIN/fog-controller" init --data-dir "$DIR" | tee "$DIR/init.out"
ADMIN=$(sed -n 's/^admin key: //p' "$DIR/init.out")

say "fog-controller serve --listen 127.0.0.1:$PORT (HTTPS, CA $DIR/ca.pem)"
"$BIN/fog-controller" serve --data-dir "$DIR" --listen "127.0.0.1:$PORT" \
    >"$DIR/controller.log" 2>&1 &
CTL_PID=$!
i=0
until curl -sf --cacert "$DIR/ca.pem" "https://127.0.0.1:$PORT/healthz" >/dev/null; do
    i=$((i + 1))
    [ $i -lt 50 ] || { echo "controller did not start:"; cat "$DIR/controller.log"; exit 1; }
    sleep 0.1
done
curl -s --cacert "$DIR/ca.pem" "https://127.0.0.1:$PORT/healthz"; echo

export FOG_URL="https://127.0.0.1:$PORT" FOG_CA="$DIR/ca.pem" FOG_KEY="$ADMIN"
say "fogctl account-create demo --role tenant"
"$BIN/fogctl" account-create demo --role tenant
TENANT=$("$BIN/fogctl" key-create --account demo | sed -n 's/^key: //p')

export FOG_KEY="$TENANT"
say "as the tenant: fogctl create web --cpus 1 --memory 128M --disk 1G --image tiny"
"$BIN/fogctl" create web --cpus 1 --memory 128M --disk 1G --image tiny --allow-tcg
say "fogctl dominfo web (no node has joined yet, so it waits)"
"$BIN/fogctl" dominfo web
say "fogctl list"
"$BIN/fogctl" list

export FOG_KEY="$ADMIN"
say "as the admin: fogctl events"
"$BIN/fogctl" events --limit 5
say "problem+json for a hostile name"
curl -s --cacert "$DIR/ca.pem" -H "Authorization: Bearer $TENANT" \
    -H "Content-Type: application/json" -d '{"name":"<x>","vcpus":1,"memory_mib":128,"disk_gib":1,"image":"tiny"}' \
    "https://127.0.0.1:$PORT/v1/vms"; echo
say "demo done"
