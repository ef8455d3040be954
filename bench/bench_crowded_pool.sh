#!/bin/bash
# A crowded default-network pool: N /24s of 10.128.0.0/9 already taken,
# then 8 new tenants create a VM each at once (each needs a default
# network). Prints the time of one create and of GET /healthz while the 8
# run. Usage: bench_crowded_pool.sh [N] (default 1000); FOG_BIN picks the
# controller's folder (default bin).
set -eu
N=${1:-1000}
BIN=${FOG_BIN:-bin}/fog-controller
for p in sqlite3 curl; do
    command -v $p >/dev/null || { echo "bench_crowded_pool: no $p, skipped"; exit 0; }
done
D=$(mktemp -d "${TMPDIR:-/tmp}/fog-bench-pool-XXXXXX")
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$D"; }
trap cleanup EXIT
KEY=$("$BIN" init --data-dir "$D" | sed -n 's/^admin key: //p')
{
    echo "BEGIN;"
    echo "INSERT INTO accounts (id, name, role, created_at) VALUES ('filler', 'filler', 'tenant', 0);"
    for ((k = 0; k < N; k++)); do
        c="10.$((128 + k / 256)).$((k % 256))"
        echo "INSERT INTO networks (id, account_id, name, cidr, gateway, vxlan_id, is_default, created_at) VALUES ('n$k', 'filler', 'n$k', '$c.0/24', '$c.1', $((1000 + k)), 0, 0);"
    done
    echo "COMMIT;"
} | sqlite3 "$D/fog.db"
"$BIN" serve --data-dir "$D" --listen 127.0.0.1:0 --plain-http --grace 0 \
    --rate-ip 0 --rate-key 0 >"$D/log" 2>&1 &
pid=$!
for ((i = 0; i < 100; i++)); do grep -q "listening on port" "$D/log" && break; sleep 0.1; done
U=http://127.0.0.1:$(sed -n 's/^listening on port //p' "$D/log")
J="Content-Type: application/json"
VM='{"name":"v","vcpus":1,"memory_mib":128,"disk_gib":1,"image":"tiny","allow_tcg":true}'
declare -a TK
for t in 0 1 2 3 4 5 6 7 8; do
    curl -sf -o /dev/null -H "Authorization: Bearer $KEY" -H "$J" \
        -d "{\"name\":\"t$t\",\"role\":\"tenant\"}" "$U/v1/accounts"
    TK[$t]=$(curl -sf -H "Authorization: Bearer $KEY" -H "$J" -d "{\"account\":\"t$t\"}" \
        "$U/v1/keys" | sed -n 's/.*"secret":"\([^"]*\)".*/\1/p')
done
one=$(curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer ${TK[0]}" \
    -H "$J" -d "$VM" "$U/v1/vms")
kids=()
for t in 1 2 3 4 5 6 7 8; do
    curl -s -o /dev/null -H "Authorization: Bearer ${TK[$t]}" -H "$J" -d "$VM" "$U/v1/vms" &
    kids+=($!)
done
sleep 0.2
hz=$(curl -s -o /dev/null -w '%{time_total}' "$U/healthz")
wait "${kids[@]}"
printf '| %-52s | %18s |\n' "POST /v1/vms, $N /24s of the default pool taken" "$one s"
printf '| %-52s | %18s |\n' "GET /healthz during 8 such creates at once" "$hz s"
