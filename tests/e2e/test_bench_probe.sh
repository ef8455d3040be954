#!/bin/bash
# The benchmark challenge with the probe guest on QEMU/TCG (KVM where
# usable): the controller issues a challenge at the node's approval, the
# agent fetches the hub's probe guest (images/probe/build.sh, served by the
# controller's --bench-guest, checked by digest) and boots it as a transient
# domain with the challenge on its kernel command line, reads the answer
# from its serial console and posts it; the controller verifies it and
# the score shows in nodeinfo and in a tenant's offers. The probe domain is
# gone afterwards (transient, powered off) and no VM domain was made. One
# boot of about 10 s under TCG (16 MiB, two vCPUs).
set -u
. "$(dirname "$0")/lib.sh"

e2e_need_root_tools
e2e_need_bins
t0=$SECONDS
work=$(mktemp -d /tmp/fog-e2e-bench.XXXXXX) || e2e_fail "mktemp failed"
chmod 755 "$work"
e2e_cleanup_add "rm -rf '$work'"
FOG_PROBE_DIR=$work/probe sh "$E2E_ROOT/images/probe/build.sh" >/dev/null ||
    e2e_fail "images/probe/build.sh failed"
chmod 755 "$work/probe"

e2e_world_up "bp-world-$$"
e2e_controller_start "$work" --heartbeat 1 --longpoll 5 --grace 0 --inspect=false \
    --bench-every 3600 --bench-memory 16 --bench-lanes 2 --bench-timeout 240 \
    --bench-guest "$work/probe"

host=bp-host-$$
agent=$work/agent
# No probe of its own (--bench-guest names an empty folder): the hub's.
mkdir -p "$work/no-probe"
e2e_node_up "$host" 10.214.0.31 node-p "$agent" --bench-guest "$work/no-probe"
uri=$E2E_URI
e2e_dump_on_fail "$agent" "$uri" "$host"

# The score, once verified (the guest boots and works in about 10 s
# under TCG; allow for a loaded machine).
score=
for ((i = 0; i < 900; i++)); do
    score=$(e2e_api GET /v1/nodes/node-p | tr -d '\n' |
        sed -n 's/.*"benchmark": *\([0-9][0-9]*\).*/\1/p')
    [ -n "$score" ] && break
    sleep 0.2
done
[ -n "$score" ] || e2e_fail "no benchmark score for node-p"
[ "$score" -gt 0 ] 2>/dev/null || e2e_fail "benchmark score '$score' is not a positive number"
grep -q "probe guest booted" "$agent/agent.log" ||
    e2e_fail "the agent did not boot the probe guest (test-driver path taken?)"
guest_ms=$(sed -n 's/.*probe guest done in \([0-9]*\) ms.*/\1/p' "$agent/agent.log" | tail -n 1)
[ -n "$guest_ms" ] || e2e_fail "the agent did not see the probe guest power off"
kernel_sha=$(sha256sum "$work/probe/vmlinuz" | cut -d' ' -f1)
[ -f "$agent/cache/$kernel_sha" ] ||
    e2e_fail "the hub's probe kernel is not in the agent's cache ($(ls "$agent/cache" 2>&1))"
log=$(ls "$agent"/console/fogbench-*.log 2>/dev/null | head -n 1)
[ -n "$log" ] && grep -q '^FOG-BENCH-ANSWER ' "$log" ||
    e2e_fail "no answer line on the probe's console ($log)"
grep -q "benchmark .* passed" "$E2E_CTL_DIR/controller.log" ||
    e2e_fail "the controller did not log the verified benchmark"

# A tenant sees it in the offers.
E2E_KEY=$(e2e_tenant_create bob)
export E2E_KEY
offers=$(e2e_api GET /v1/offers)
printf '%s' "$offers" | grep -q "\"benchmark\": *$score" ||
    e2e_fail "offers do not show benchmark $score: $offers"

# Transient and powered off: nothing left in libvirt, no VM domain made.
left=$(virsh -c "$uri" list --all --name 2>/dev/null | grep -c . || true)
[ "$left" = 0 ] || e2e_fail "domains left after the probe: $(virsh -c "$uri" list --all --name)"

echo "probe guest: ${guest_ms} ms of guest time; score $score steps/s per vCPU; test $((SECONDS - t0)) s"
echo "PASS"
