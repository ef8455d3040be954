#!/bin/bash
# The Debian packages and the Ansible roles on real targets: three Debian 12
# VMs (tools/mkguest-debian.sh, each on its own copy-on-write overlay of the
# one cached image) booted under QEMU/TCG in a network namespace made for
# the test (a bridge and the VMs' tap devices live there; ssh and ansible
# run inside it), seeded with a NoCloud ISO carrying an SSH key made for the
# test. ansible/site.yml installs the packages of build/deb (make deb) on a
# hub and two providers, whose agents use libvirt's test driver (nested TCG
# would be too slow for real guests). Checked: the units are active under
# the VMs' systemd, the controller serves HTTPS with its CA, both agents
# joined as the provider account and were approved by the admin and are
# online, a second run of the playbook changes nothing on any host, and
# ansible-lint passes. Each phase's time is printed.
set -u
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || e2e_skip "needs root for the namespace and tap devices"
for t in qemu-system-x86_64 qemu-img mmdebstrap mkfs.ext4 mkfs.vfat mcopy syslinux; do
    command -v "$t" >/dev/null 2>&1 || e2e_skip "'$t' is not installed"
done
[ -e /dev/net/tun ] || e2e_skip "no /dev/net/tun for the VMs' NICs"
for t in ansible-playbook ansible-lint ssh ssh-keygen xorriso curl dpkg-buildpackage; do
    command -v "$t" >/dev/null 2>&1 || e2e_fail "'$t' is not installed (make deps)"
done

t0=$SECONDS
phase_t=$SECONDS
phase() { # name: prints the time since the previous phase
    e2e_log "figure: $1 $((SECONDS - phase_t)) s"
    phase_t=$SECONDS
}

# ---- packages: make deb unless build/deb is newer than every input
debs=$E2E_ROOT/build/deb
stale=yes
if ls "$debs"/fogfabric-controller_*.deb "$debs"/fogfabric-nodeagent_*.deb \
    "$debs"/fogctl_*.deb >/dev/null 2>&1; then
    oldest=$(ls -tr "$debs"/*.deb | head -n 1)
    newer=$(cd "$E2E_ROOT" && find Makefile api billing cli common controller debian images \
        netfabric nodeagent -newer "$oldest" -type f ! -path 'debian/fogfabric-*/*' \
        ! -path 'debian/fogctl/*' ! -path 'debian/.debhelper/*' ! -name '*.substvars' \
        ! -name '*.debhelper*' ! -name files ! -name debhelper-build-stamp | head -n 1)
    [ -z "$newer" ] && stale=no
fi
if [ "$stale" = yes ]; then
    (cd "$E2E_ROOT" && make deb) >"${TMPDIR:-/tmp}/fog-ansible-deb.log" 2>&1 ||
        { tail -n 30 "${TMPDIR:-/tmp}/fog-ansible-deb.log" >&2; e2e_fail "make deb failed"; }
fi
phase "packages (make deb: $stale)"

image=$("$E2E_ROOT/tools/mkguest-debian.sh") || e2e_fail "tools/mkguest-debian.sh failed"
[ -s "$image" ] || e2e_fail "no Debian image at '$image'"
phase "Debian image"

work=$(mktemp -d /tmp/fog-e2e-ansible.XXXXXX)
chmod 755 "$work"
e2e_cleanup_add "rm -rf '$work'"
ssh-keygen -q -t ed25519 -N '' -C ansible-e2e -f "$work/id" || e2e_fail "ssh-keygen failed"

# ---- the namespace: a bridge, the test's side of it and one tap per VM
ns=fog-ans-$$
e2e_netns_up "$ns"
ip -n "$ns" link add br0 type bridge || e2e_fail "cannot create the bridge in $ns"
ip -n "$ns" addr add 10.215.0.1/24 dev br0 || e2e_fail "cannot address br0"
ip -n "$ns" link set br0 up || e2e_fail "cannot bring br0 up"

names=(hub1 p1 p2)
ips=(10.215.0.10 10.215.0.11 10.215.0.12)
pids=()
stop_vms() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null
    done
}
e2e_cleanup_add stop_vms
dump() {
    local i
    for i in 0 1 2; do
        echo "--- ${names[$i]}: journal of the fogfabric units (last lines):"
        timeout 30 ip netns exec "$ns" ssh -n "${ssh_opts[@]}" "debian@${ips[$i]}" \
            sudo journalctl -u 'fogfabric-*' -n 25 --no-pager 2>/dev/null ||
            tail -n 15 "$work/${names[$i]}.console" 2>/dev/null
    done
}
E2E_ON_FAIL=dump

for i in 0 1 2; do
    n=${names[$i]}
    mac=$(printf '52:54:00:d7:15:%02x' $((i + 10)))
    mkdir -p "$work/seed-$n"
    printf 'instance-id: iid-%s-%s\nlocal-hostname: %s\n' "$n" "$$" "$n" >"$work/seed-$n/meta-data"
    printf '#cloud-config\nssh_authorized_keys:\n  - %s\n' "$(cat "$work/id.pub")" \
        >"$work/seed-$n/user-data"
    printf 'version: 2\nethernets:\n  eth0:\n    match: {macaddress: "%s"}\n    set-name: eth0\n    addresses: [%s/24]\n' \
        "$mac" "${ips[$i]}" >"$work/seed-$n/network-config"
    e2e_make_seed "$work/$n-seed.iso" "$work/seed-$n"
    qemu-img create -q -f qcow2 -F qcow2 -b "$image" "$work/$n.qcow2" 8G ||
        e2e_fail "cannot create the overlay of $n"
    ip -n "$ns" tuntap add dev "tap$i" mode tap || e2e_fail "cannot create tap$i"
    ip -n "$ns" link set "tap$i" master br0 up || e2e_fail "cannot plug tap$i"
    ip netns exec "$ns" qemu-system-x86_64 -machine pc -accel tcg -m 1024 -smp 1 \
        -display none -no-user-config -nodefaults -serial "file:$work/$n.console" \
        -drive "file=$work/$n.qcow2,if=virtio,format=qcow2" \
        -drive "file=$work/$n-seed.iso,if=virtio,format=raw,readonly=on" \
        -netdev "tap,id=n0,ifname=tap$i,script=no,downscript=no" \
        -device "virtio-net-pci,netdev=n0,mac=$mac,romfile=" \
        -daemonize -pidfile "$work/$n.pid" || e2e_fail "QEMU did not start $n"
    pids+=("$(cat "$work/$n.pid")")
done

ssh_opts=(-i "$work/id" -o BatchMode=yes -o ConnectTimeout=5 -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
vm() { # ip command...: runs COMMAND on the VM as debian
    local ip=$1
    shift
    ip netns exec "$ns" ssh -n "${ssh_opts[@]}" "debian@$ip" "$@"
}
# Every VM up: SSH answers and cloud-init has finished its boot.
deadline=$((SECONDS + 600))
for ip in "${ips[@]}"; do
    until vm "$ip" true 2>/dev/null; do
        ((SECONDS < deadline)) || e2e_fail "no SSH login to $ip in 600 s"
        sleep 3
    done
    st=$(timeout $((deadline - SECONDS)) ip netns exec "$ns" ssh -n "${ssh_opts[@]}" \
        "debian@$ip" cloud-init status --wait 2>/dev/null | tr -d .)
    grep -q 'status: done' <<<"$st" || e2e_fail "cloud-init on $ip: '$st'"
done
phase "three VMs booted in parallel (SSH and cloud-init done)"

# ---- the playbook, twice
cat >"$work/inventory.ini" <<EOF
[hub]
hub1 ansible_host=${ips[0]}

[providers]
p1 ansible_host=${ips[1]}
p2 ansible_host=${ips[2]} fogfabric_reserve_memory_mib=256

[all:vars]
ansible_user=debian
ansible_ssh_private_key_file=$work/id
fogfabric_deb_dir=$debs
fogfabric_provider_account=miners
fogfabric_libvirt_uri=test:///default
fogfabric_nodeagent_packages=["libvirt-daemon-system","qemu-utils","wireguard-tools","wireguard-go","nftables","dnsmasq-base"]
EOF
mkdir -p "$work/cp" "$work/tmp"
play() { # log: runs site.yml, output to LOG
    (cd "$E2E_ROOT/ansible" &&
        ANSIBLE_CONFIG=$E2E_ROOT/ansible/ansible.cfg ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 \
            ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_TIMEOUT=60 ANSIBLE_LOCAL_TEMP=$work/tmp \
            ANSIBLE_SSH_CONTROL_PATH_DIR=$work/cp ANSIBLE_RETRY_FILES_ENABLED=False \
            ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=300s -o UserKnownHostsFile=/dev/null" \
            ip netns exec "$ns" ansible-playbook -i "$work/inventory.ini" site.yml) >"$1" 2>&1
}
# Prints "host changed failed unreachable" for each host of a run's recap.
recap() {
    sed -n '/^PLAY RECAP/,$p' "$1" | awk '/ : ok=/ {
        c = f = u = ""
        for (i = 3; i <= NF; i++) {
            split($i, kv, "=")
            if (kv[1] == "changed") c = kv[2]
            if (kv[1] == "failed") f = kv[2]
            if (kv[1] == "unreachable") u = kv[2]
        }
        print $1, c, f, u
    }'
}
play "$work/play1.log" || { tail -n 40 "$work/play1.log" >&2; e2e_fail "the first run of site.yml failed"; }
r1=$(recap "$work/play1.log")
[ "$(wc -l <<<"$r1")" = 3 ] || e2e_fail "first run's recap: '$r1'"
while read -r h c f u; do
    [ "$f" = 0 ] && [ "$u" = 0 ] || e2e_fail "first run: $h failed=$f unreachable=$u"
    [ "$c" -gt 0 ] || e2e_fail "first run changed nothing on $h"
done <<<"$r1"
phase "first run of site.yml ($(tr '\n' ';' <<<"$r1" | sed 's/;$//'))"

# ---- what it built
[ "$(vm "${ips[0]}" systemctl is-active fogfabric-controller)" = active ] ||
    e2e_fail "fogfabric-controller is not active on the hub"
for ip in "${ips[1]}" "${ips[2]}"; do
    [ "$(vm "$ip" systemctl is-active fogfabric-nodeagent)" = active ] ||
        e2e_fail "fogfabric-nodeagent is not active on $ip: $(vm "$ip" sudo journalctl -u fogfabric-nodeagent -n 20 --no-pager)"
done
vm "${ips[0]}" sudo cat /var/lib/fogfabric/ca.pem >"$work/ca.pem" || e2e_fail "cannot read the hub's CA"
health=$(ip netns exec "$ns" curl -fsS --cacert "$work/ca.pem" -m 10 "https://${ips[0]}:8443/healthz") ||
    e2e_fail "the controller does not serve HTTPS at ${ips[0]}:8443 with its CA"
grep -q '"status": *"ok"' <<<"$health" || e2e_fail "healthz answered '$health'"
# Both nodes: joined as the provider account, approved, online.
nodes_ok() {
    vm "${ips[0]}" sudo fogctl --json nodelist >"$work/nodes.json" 2>&1 &&
        python3 - "$work/nodes.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
items = doc["items"] if isinstance(doc, dict) else doc
by = {n["name"]: n for n in items}
ok = all(n in by and by[n]["approved"] and by[n]["state"] == "online" for n in ("p1", "p2"))
sys.exit(0 if ok and len(by) == 2 else 1)
EOF
}
for _ in $(seq 60); do nodes_ok && break; sleep 2; done
nodes_ok || e2e_fail "p1 and p2 are not both approved and online: $(cat "$work/nodes.json")"
accounts=$(vm "${ips[0]}" sudo fogctl --json account-list)
miners=$(python3 -c 'import json,sys
d = json.loads(sys.argv[1]); d = d["items"] if isinstance(d, dict) else d
print(" ".join(a["id"] for a in d if a["name"] == "miners" and a["role"] == "provider"))' "$accounts")
[ -n "$miners" ] || e2e_fail "no provider account miners: $accounts"
for n in p1 p2; do
    owner=$(vm "${ips[0]}" sudo fogctl --json nodeinfo "$n" | python3 -c 'import json,sys; print(json.load(sys.stdin)["account_id"])')
    [ "$owner" = "$miners" ] || e2e_fail "node $n belongs to '$owner', not miners ($miners)"
done
mib=$(vm "${ips[2]}" sudo cat /etc/fogfabric/nodeagent.conf | sed -n 's/^reserve-memory-mib = //p')
[ "$mib" = 256 ] || e2e_fail "p2's reserve-memory-mib is '$mib'"
phase "checks: units active, HTTPS with the hub's CA, p1 and p2 joined as miners, approved, online"

# ---- a second run changes nothing
play "$work/play2.log" || { tail -n 40 "$work/play2.log" >&2; e2e_fail "the second run of site.yml failed"; }
r2=$(recap "$work/play2.log")
[ "$(wc -l <<<"$r2")" = 3 ] || e2e_fail "second run's recap: '$r2'"
while read -r h c f u; do
    [ "$c" = 0 ] && [ "$f" = 0 ] && [ "$u" = 0 ] || {
        grep -E '^(changed|failed|fatal)' "$work/play2.log" >&2
        e2e_fail "second run: $h changed=$c failed=$f unreachable=$u"
    }
done <<<"$r2"
phase "second run of site.yml (changed=0 on every host)"

(cd "$E2E_ROOT/ansible" && ANSIBLE_CONFIG=$E2E_ROOT/ansible/ansible.cfg ansible-lint --nocolor) \
    >"$work/lint.log" 2>&1 || { cat "$work/lint.log" >&2; e2e_fail "ansible-lint found problems"; }
phase "ansible-lint"
echo "ansible e2e: pass ($((SECONDS - t0)) s)"
