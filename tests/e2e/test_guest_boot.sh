#!/bin/bash
# The tiny test guest boots under a private libvirtd (QEMU/TCG), applies its
# NoCloud seed (hostname, static address, user-data write_files and runcmd),
# serves HTTP and echoes UDP on its bridge, powers off cleanly on `virsh
# shutdown`; a second guest takes its address by DHCP, serves its default
# page, and stops itself with `poweroff` from user-data.
set -u
. "$(dirname "$0")/lib.sh"

e2e_need_root_tools

# The guest's seed parsers first: cheap, and they run on the host's busybox.
sh "$E2E_GUEST_DIR/selftest.sh" >/dev/null || e2e_fail "guest seed parser self-test failed"

t0=$SECONDS
e2e_build_guest >/dev/null
[ -s "$E2E_GUEST_IMAGE" ] || e2e_fail "no $E2E_GUEST_IMAGE after build"
e2e_start_libvirtd

name=fog-e2e-guest-$$
bridge=fogbr$$
bridge=${bridge:0:15}
guest_ip=10.213.7.10
mac=52:54:00:d7:07:0a
work=$(mktemp -d /tmp/fog-e2e-guest.XXXXXX)
chmod 755 "$work"
e2e_cleanup_add "rm -rf '$work'"

e2e_bridge_up "$bridge" 10.213.7.1/24
# A client host in its own namespace on the same bridge.
netns=fog-e2e-cli-$$
e2e_netns_up "$netns"
e2e_netns_to_bridge "$netns" "$bridge" "fogv$$" 10.213.7.20/24

# Guest 1: static address, page and hostname from the seed.
mkdir -p "$work/seed"
cat >"$work/seed/meta-data" <<EOF
instance-id: iid-$name
local-hostname: e2e-guest
EOF
cat >"$work/seed/network-config" <<EOF
version: 2
ethernets:
  eth0:
    match: {macaddress: "$mac"}
    addresses: [$guest_ip/24]
    gateway4: 10.213.7.1
    mtu: 1400
EOF
cat >"$work/seed/user-data" <<'EOF'
#cloud-config
write_files:
  - path: /www/index.html
    content: |
      hello-from-user-data
runcmd:
  - echo "fog-guest: runcmd saw $(hostname) mtu $(cat /sys/class/net/eth0/mtu)"
EOF
e2e_make_seed "$work/seed.iso" "$work/seed"

# Guest 2: no network-config, so DHCP, answered by busybox udhcpd in the
# client namespace; its default page names it; it powers itself off with
# `poweroff` once the client namespace serves /stop.
name2=$name-b
mac2=52:54:00:d7:07:0b
guest2_ip=10.213.7.11
mkdir -p "$work/seed2" "$work/www2"
printf 'instance-id: iid-%s\nlocal-hostname: self-stop\n' "$name2" >"$work/seed2/meta-data"
cat >"$work/seed2/user-data" <<'EOF'
#cloud-config
runcmd:
  - until wget -q -O /dev/null http://10.213.7.20:8080/stop; do sleep 0.3; done
  - poweroff
EOF
e2e_make_seed "$work/seed2.iso" "$work/seed2"
cat >"$work/udhcpd.conf" <<EOF
start 10.213.7.100
end 10.213.7.110
interface eth0
lease_file $work/udhcpd.leases
pidfile $work/udhcpd.pid
static_lease $mac2 $guest2_ip
option subnet 255.255.255.0
option lease 600
EOF
: >"$work/udhcpd.leases"
: >"$work/www2/stop"
ip netns exec "$netns" busybox udhcpd -f "$work/udhcpd.conf" >"$work/udhcpd.log" 2>&1 &
e2e_cleanup_add "kill $! 2>/dev/null"

serial=$work/serial.log
serial2=$work/serial2.log
dump_serial() {
    local f
    for f in "$serial" "$serial2"; do
        echo "--- serial console $f:"; tail -n 40 "$f" 2>/dev/null; echo "---"
    done
    for f in "$E2E_LIBVIRT_DIR"/log/qemu/*.log; do
        [ -f "$f" ] && { echo "--- $f:"; tail -n 10 "$f"; echo "---"; }
    done
}
E2E_ON_FAIL=dump_serial

start_ns=$(date +%s%N)
e2e_guest_start "$name" "$work" "$work/seed.iso" "$bridge" "$mac" "$serial"

e2e_wait_console "$serial" "fog-guest: up" 60 || e2e_fail "guest did not reach userspace within 60 s"
up_ms=$((($(date +%s%N) - start_ns) / 1000000))
e2e_wait_console "$serial" "fog-guest: ready" 30 || e2e_fail "guest did not start its services"
ready_ms=$((($(date +%s%N) - start_ns) / 1000000))
body=$(e2e_wait_http "http://$guest_ip/" 30) || e2e_fail "no HTTP answer from $guest_ip"
http_ms=$((($(date +%s%N) - start_ns) / 1000000))
echo "boot: userspace ${up_ms} ms, services ${ready_ms} ms, HTTP answered ${http_ms} ms after virsh start (TCG, ${E2E_GUEST_BOOT:-disk} boot)"
[ "$body" = "hello-from-user-data" ] || e2e_fail "HTTP body is '$body', want 'hello-from-user-data'"

# Guest 2 boots while guest 1 is checked.
e2e_guest_start "$name2" "$work" "$work/seed2.iso" "$bridge" "$mac2" "$serial2"

body=$(E2E_NETNS=$netns e2e_wait_http "http://$guest_ip/" 10) ||
    e2e_fail "no HTTP answer from $guest_ip inside namespace $netns"
[ "$body" = "hello-from-user-data" ] || e2e_fail "HTTP body from $netns is '$body'"

reply=$(e2e_udp_echo "$guest_ip" 7 "fog-seven-$$") || e2e_fail "no UDP echo from $guest_ip:7"
[ "$reply" = "fog-seven-$$" ] || e2e_fail "UDP echo on 7 returned '$reply'"
reply=$(e2e_udp_echo "$guest_ip" 27015 "fog-ping-$$ with spaces") || e2e_fail "no UDP echo from $guest_ip:27015"
[ "$reply" = "fog-ping-$$ with spaces" ] || e2e_fail "UDP echo on 27015 returned '$reply'"

grep -q "fog-guest: hostname e2e-guest" "$serial" || e2e_fail "guest did not take the seed's hostname"
e2e_wait_console "$serial" "fog-guest: runcmd saw e2e-guest mtu 1400" 10 ||
    e2e_fail "runcmd did not run with the seed's hostname and mtu"

# ACPI power button.
virsh -c "$E2E_URI" shutdown "$name" >/dev/null || e2e_fail "virsh shutdown failed"
e2e_wait_domstate "$name" "shut off" 30 ||
    e2e_fail "$name is '$(e2e_domstate "$name")' 30 s after virsh shutdown"
grep -q "fog-guest: powering off" "$serial" || e2e_fail "$name did not log its power-off"

# Guest 2: DHCP lease, default page, then `poweroff` from inside.
body=$(E2E_NETNS=$netns e2e_wait_http "http://$guest2_ip/" 40) ||
    e2e_fail "no HTTP answer from $guest2_ip (DHCP) inside namespace $netns"
[ "$body" = "fog-guest self-stop" ] || e2e_fail "default page of $name2 is '$body'"
grep -q "fog-guest: dhcp $guest2_ip/24 on eth0" "$serial2" || e2e_fail "$name2 did not log its lease"
ip netns exec "$netns" busybox httpd -f -p 10.213.7.20:8080 -h "$work/www2" &
e2e_cleanup_add "kill $! 2>/dev/null"
e2e_wait_domstate "$name2" "shut off" 30 ||
    e2e_fail "$name2 is '$(e2e_domstate "$name2")' 30 s after /stop, want shut off by its runcmd"
grep -q "fog-guest: running runcmd" "$serial2" || e2e_fail "$name2 stopped without running its runcmd"
grep -q "fog-guest: powering off" "$serial2" || e2e_fail "$name2 did not power off cleanly"

echo "guest boot: pass ($((SECONDS - t0)) s)"
