#!/bin/bash
# Measures how fast the tiny test guest boots under a private libvirtd with
# QEMU/TCG: N boots (default 3) with a static-address seed, each timed from
# `virsh start` to "fog-guest: up" (userspace) and "fog-guest: ready"
# (services listening), then the medians. Not a test: a figure to quote.
#   bash tests/e2e/guest_boot_time.sh [N]      E2E_GUEST_BOOT=disk|kernel
set -u
. "$(dirname "$0")/lib.sh"

runs=${1:-3}
e2e_need_root_tools
e2e_build_guest >/dev/null
e2e_start_libvirtd
work=$(mktemp -d /tmp/fog-e2e-boottime.XXXXXX)
chmod 755 "$work"
e2e_cleanup_add "rm -rf '$work'"
bridge=fogbt$$
bridge=${bridge:0:15}
e2e_bridge_up "$bridge" 10.213.8.1/24
mkdir -p "$work/seed"
printf 'instance-id: iid-boottime\nlocal-hostname: boottime\n' >"$work/seed/meta-data"
printf 'version: 2\nethernets:\n  eth0:\n    addresses: [10.213.8.10/24]\n' \
    >"$work/seed/network-config"
e2e_make_seed "$work/seed.iso" "$work/seed"

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
ups=() readies=()
for ((i = 1; i <= runs; i++)); do
    name=fog-boottime-$$-$i
    serial=$work/serial-$i.log
    t=$(date +%s%N)
    e2e_guest_start "$name" "$work" "$work/seed.iso" "$bridge" 52:54:00:d7:08:0a "$serial"
    e2e_wait_console "$serial" "fog-guest: up" 60 || e2e_fail "boot $i: no userspace"
    up=$((($(date +%s%N) - t) / 1000000))
    e2e_wait_console "$serial" "fog-guest: ready" 60 || e2e_fail "boot $i: no services"
    ready=$((($(date +%s%N) - t) / 1000000))
    echo "boot $i: userspace ${up} ms, services ${ready} ms"
    ups+=("$up") readies+=("$ready")
    e2e_guest_remove "$name"
done
echo "median of $runs (${E2E_GUEST_BOOT:-disk} boot, TCG, from virsh start):" \
    "userspace $(printf '%s\n' "${ups[@]}" | median) ms," \
    "services $(printf '%s\n' "${readies[@]}" | median) ms"
