#!/bin/bash
# The mesh, tenant networks and published ports across hosts, end to end.
# Provider hosts (namespaces, each with its own libvirtd, fog-nodeagent and
# wireguard-go mesh interface) and an internet client namespace. The hosts
# reach each other over the mesh; a third joins and every host learns it
# without restarts, then it is removed and dropped. Tenant A's
# VMs on the two hosts reach each other over their private network (VXLAN
# in the WireGuard mesh); tenant B's VM, on the same host as one of them,
# reaches neither, nor do they reach it; a guest forging its source
# address gets no answer; a published TCP and a published UDP port answer
# the client; removing a port closes it, and deleting the VM closes the
# rest. Over IPv6 too: tenant A's VMs ping each other's ULA address across
# the hosts, and node-b (with a global IPv6 address) answers the published
# TCP port there.
set -u
. "$(dirname "$0")/lib.sh"

e2e_need_root_tools
e2e_need_bins
command -v nft >/dev/null || e2e_fail "nft is missing (make deps)"
t0=$SECONDS
e2e_build_guest >/dev/null
[ -s "$E2E_GUEST_IMAGE" ] || e2e_fail "no $E2E_GUEST_IMAGE after build"

work=$(mktemp -d /tmp/fog-e2e-net.XXXXXX)
chmod 755 "$work"
e2e_cleanup_add "rm -rf '$work'"
# The same guest under two names: each host accepts only "its" name, which
# is how the test places VMs (node policies).
mkdir -p "$work/images"
cp --reflink=auto "$E2E_GUEST_IMAGE" "$work/images/tiny-a.qcow2"
cp --reflink=auto "$E2E_GUEST_IMAGE" "$work/images/tiny-b.qcow2"

e2e_world_up
e2e_controller_start "$work" --heartbeat 1 --longpoll 5 --grace 0 --inspect=false

ns_a=fog-e2e-na-$$
ns_b=fog-e2e-nb-$$
ip_a=10.214.0.11
ip_b=10.214.0.12
e2e_node_up "$ns_a" "$ip_a" node-a "$work/a" --image-dir "$work/images" --shutdown-timeout 5
uri_a=$E2E_URI
# node-b and the client also hold global IPv6 addresses on the world.
ip6_b=2001:db8:214::12
ip6_client=2001:db8:214::50
e2e_node_up "$ns_b" "$ip_b" node-b "$work/b" --image-dir "$work/images" --shutdown-timeout 5 \
    --public-ip6 "$ip6_b"
uri_b=$E2E_URI
ip -n "$ns_b" addr add "$ip6_b/64" dev eth0 nodad || e2e_fail "cannot give node-b $ip6_b"
client=fog-e2e-nc-$$
e2e_host_add "$client" 10.214.0.50
ip -n "$client" addr add "$ip6_client/64" dev eth0 nodad || e2e_fail "cannot give the client $ip6_client"

dump() {
    e2e_dump_node "$work/a" "$uri_a" "$ns_a"
    e2e_dump_node "$work/b" "$uri_b" "$ns_b"
    echo "--- controller log:"; tail -n 20 "$work/controller.log"
    echo "--- nft on node-b:"; ip netns exec "$ns_b" nft list ruleset 2>/dev/null | head -n 80
}
E2E_ON_FAIL=dump

e2e_fogctl node-policy node-a --image tiny-a >/dev/null || e2e_fail "node-policy node-a failed"
e2e_fogctl node-policy node-b --image tiny-b >/dev/null || e2e_fail "node-policy node-b failed"

# ---- the mesh: each host reaches the other's mesh address
mesh_of() { e2e_fogctl nodelist | awk -v n="$1" '$1 == n' | grep -oE '[0-9]+(\.[0-9]+){3}' | tail -n 1; }
mesh_a=$(mesh_of node-a)
mesh_b=$(mesh_of node-b)
[ -n "$mesh_a" ] && [ -n "$mesh_b" ] && [ "$mesh_a" != "$mesh_b" ] ||
    e2e_fail "mesh addresses '$mesh_a' and '$mesh_b'"
ok=0
for _ in $(seq 40); do
    ip netns exec "$ns_a" busybox ping -c 1 -W 1 "$mesh_b" >/dev/null 2>&1 &&
        ip netns exec "$ns_b" busybox ping -c 1 -W 1 "$mesh_a" >/dev/null 2>&1 && { ok=1; break; }
    sleep 0.5
done
[ "$ok" = 1 ] || e2e_fail "the hosts do not reach each other over the mesh ($mesh_a, $mesh_b)"
e2e_log "mesh up: node-a $mesh_a <-> node-b $mesh_b"

# A third host joins: both others learn it with no restart; it is removed
# and both drop it.
ns_c=fog-e2e-nx-$$
e2e_node_up "$ns_c" 10.214.0.13 node-c "$work/c" --image-dir "$work/images"
agent_c=$E2E_AGENT_PID
mesh_c=$(mesh_of node-c)
[ -n "$mesh_c" ] || e2e_fail "node-c has no mesh address"
wg_if() { ip -n "$1" -o link show type tun 2>/dev/null | awk -F': ' '{print $2}'; ip -n "$1" -o link show type wireguard 2>/dev/null | awk -F': ' '{print $2}'; }
peers_of() { local i; for i in $(wg_if "$1"); do ip netns exec "$1" wg show "$i" peers; done; }
key_c=
for _ in $(seq 20); do
    key_c=$(for i in $(wg_if "$ns_c"); do ip netns exec "$ns_c" wg show "$i" public-key; done)
    [ -n "$key_c" ] && break
    sleep 0.5
done
[ -n "$key_c" ] || e2e_fail "node-c has no WireGuard interface"
ok=0
for _ in $(seq 40); do
    ip netns exec "$ns_a" busybox ping -c 1 -W 1 "$mesh_c" >/dev/null 2>&1 &&
        ip netns exec "$ns_b" busybox ping -c 1 -W 1 "$mesh_c" >/dev/null 2>&1 && { ok=1; break; }
    sleep 0.5
done
[ "$ok" = 1 ] || e2e_fail "node-a and node-b do not reach node-c ($mesh_c) over the mesh"
e2e_fogctl node-remove node-c >/dev/null || e2e_fail "node-remove node-c failed"
e2e__stop_pid "$agent_c"
ok=0
for _ in $(seq 40); do
    peers_of "$ns_a" | grep -qF "$key_c" || peers_of "$ns_b" | grep -qF "$key_c" || { ok=1; break; }
    sleep 0.5
done
[ "$ok" = 1 ] || e2e_fail "node-a or node-b still has removed node-c as a WireGuard peer"
peers_of "$ns_a" | grep -q . || e2e_fail "node-a lost all its peers when node-c left"
e2e_log "node-c joined the mesh and left it"

e2e_probe_user_data "$work/ud-a1" "page of a1"
e2e_probe_user_data "$work/ud-a2" "page of a2"
e2e_probe_user_data "$work/ud-b1" "page of b1"

E2E_KEY=$(e2e_tenant_create tenant-a)
key_a=$E2E_KEY
key_b=$(e2e_tenant_create tenant-b)

E2E_KEY=$key_a e2e_fogctl create a1 --cpus 1 --memory 128M --disk 1G --image tiny-a \
    --allow-tcg --user-data "$work/ud-a1" >/dev/null || e2e_fail "create a1 failed"
E2E_KEY=$key_a e2e_fogctl create a2 --cpus 1 --memory 128M --disk 1G --image tiny-b \
    --allow-tcg --user-data "$work/ud-a2" --publish 80/tcp --publish 27015/udp >/dev/null ||
    e2e_fail "create a2 failed"
E2E_KEY=$key_b e2e_fogctl create b1 --cpus 1 --memory 128M --disk 1G --image tiny-a \
    --allow-tcg --user-data "$work/ud-b1" >/dev/null || e2e_fail "create b1 failed"

for v in a1 a2; do
    E2E_KEY=$key_a e2e_wait_vm_state "$v" running 90 || e2e_fail "$v is not running"
done
E2E_KEY=$key_b e2e_wait_vm_state b1 running 90 || e2e_fail "b1 is not running"
[ "$(E2E_KEY=$key_a e2e_vm_field a1 node_name)" = node-a ] || e2e_fail "a1 is not on node-a"
[ "$(E2E_KEY=$key_a e2e_vm_field a2 node_name)" = node-b ] || e2e_fail "a2 is not on node-b"
[ "$(E2E_KEY=$key_b e2e_vm_field b1 node_name)" = node-a ] || e2e_fail "b1 is not on node-a"
a1=$(E2E_KEY=$key_a e2e_vm_address a1)
a2=$(E2E_KEY=$key_a e2e_vm_address a2)
b1=$(E2E_KEY=$key_b e2e_vm_address b1)
[ -n "$a1" ] && [ -n "$a2" ] && [ -n "$b1" ] || e2e_fail "addresses a1='$a1' a2='$a2' b1='$b1'"

# Each guest serves on its own host's bridge.
E2E_NETNS=$ns_a e2e_wait_http "http://$a1/" 60 >/dev/null || e2e_fail "a1 ($a1) does not answer on node-a"
E2E_NETNS=$ns_b e2e_wait_http "http://$a2/" 60 >/dev/null || e2e_fail "a2 ($a2) does not answer on node-b"
E2E_NETNS=$ns_a e2e_wait_http "http://$b1/" 60 >/dev/null || e2e_fail "b1 ($b1) does not answer on node-a"
e2e_log "three guests up ($((SECONDS - t0)) s): a1 $a1 on node-a, a2 $a2 on node-b, b1 $b1 on node-a"

# ---- tenant A across hosts, over its private network
got=$(e2e_guest_probe_wait "$ns_a" "$a1" "get-$a2" "page of a2") ||
    e2e_fail "a1 (node-a) cannot fetch from a2 (node-b): '$got'"
got=$(e2e_guest_probe "$ns_b" "$a2" "get-$a1")
[ "$got" = "page of a1" ] || e2e_fail "a2 (node-b) cannot fetch from a1 (node-a): '$got'"
e2e_log "tenant A's VMs reach each other across hosts"

# ---- tenant B is isolated: b1 works (it reaches itself) yet reaches
# neither of A's VMs, and they do not reach it.
got=$(e2e_guest_probe "$ns_a" "$b1" "get-$b1")
[ "$got" = "page of b1" ] || e2e_fail "b1's probe does not work: '$got'"
for t in "$a1" "$a2"; do
    got=$(e2e_guest_probe "$ns_a" "$b1" "get-$t")
    [ "$got" = unreachable ] || e2e_fail "b1 (tenant B) reached $t of tenant A: '$got'"
    got=$(e2e_guest_probe "$ns_a" "$b1" "ping-$t")
    [ "$got" = unreachable ] || e2e_fail "b1 (tenant B) pings $t of tenant A"
done
got=$(e2e_guest_probe "$ns_a" "$a1" "get-$b1")
[ "$got" = unreachable ] || e2e_fail "a1 (tenant A) reached b1 of tenant B: '$got'"
got=$(e2e_guest_probe "$ns_b" "$a2" "get-$b1")
[ "$got" = unreachable ] || e2e_fail "a2 (tenant A) reached b1 of tenant B: '$got'"
e2e_log "tenant B is isolated from tenant A"

# ---- anti-spoofing: a1 pings a2 from its own address, not from a forged one
got=$(e2e_guest_probe "$ns_a" "$a1" "ping-$a2")
[ "$got" = reachable ] || e2e_fail "a1 cannot ping a2: '$got'"
got=$(e2e_guest_probe "$ns_a" "$a1" "spoof-$a2")
[ "$got" = unreachable ] || e2e_fail "a1 forging source ${a2%.*}.250 got answers from a2: '$got'"
got=$(e2e_guest_probe "$ns_a" "$a1" "ping-$a2")
[ "$got" = reachable ] || e2e_fail "a1 cannot ping a2 after the forged attempt: '$got'"

# ---- IPv6: a1 pings a2's unique local address across the hosts (VXLAN)
a2_6=$(E2E_KEY=$key_a e2e_vm_field a2 addresses6 | grep -oE 'fd[0-9a-f:]+' | head -n 1)
[ -n "$a2_6" ] || e2e_fail "a2 has no IPv6 address"
got=$(e2e_guest_probe_wait "$ns_a" "$a1" "ping6-$a2_6" reachable) ||
    e2e_fail "a1 cannot ping a2 over IPv6 ($a2_6): '$got'"
e2e_log "tenant A's VMs reach each other over IPv6 ($a2_6)"

# ---- egress policy: the world here is a private range (10.214.0.0/24), so
# it stands for the provider's LAN: a1 reaches neither it (the controller's
# address) nor the hosts themselves, though it pings a2 above.
for t in "$E2E_WORLD_IP" "$ip_a" "$ip_b"; do
    got=$(e2e_guest_probe "$ns_a" "$a1" "ping-$t")
    [ "$got" = unreachable ] || e2e_fail "a1 reaches $t on the provider's LAN: '$got'"
done
e2e_log "a guest reaches neither the provider's LAN nor its hosts"

# ---- published ports, from the internet client
ports=$(E2E_KEY=$key_a e2e_vm_field a2 ports)
tcp_port=$(grep -oE '[0-9]+->80/tcp' <<<"$ports" | cut -d- -f1)
udp_port=$(grep -oE '[0-9]+->27015/udp' <<<"$ports" | cut -d- -f1)
[ -n "$tcp_port" ] && [ -n "$udp_port" ] || e2e_fail "a2's published ports are '$ports'"
body=$(E2E_NETNS=$client e2e_wait_http "http://$ip_b:$tcp_port/" 30) ||
    e2e_fail "published TCP $ip_b:$tcp_port does not answer the client"
[ "$body" = "page of a2" ] || e2e_fail "published TCP port answered '$body'"
reply=$(E2E_NETNS=$client e2e_udp_echo "$ip_b" "$udp_port" "fog-udp-$$") ||
    e2e_fail "published UDP $ip_b:$udp_port does not answer the client"
[ "$reply" = "fog-udp-$$" ] || e2e_fail "published UDP port echoed '$reply'"
six=$(E2E_KEY=$key_a e2e_fogctl port-list a2 | grep -oE "\[$ip6_b\]:$tcp_port")
[ -n "$six" ] || e2e_fail "port-list does not show [$ip6_b]:$tcp_port"
body=$(E2E_NETNS=$client e2e_wait_http "http://[$ip6_b]:$tcp_port/" 30) ||
    e2e_fail "published TCP [$ip6_b]:$tcp_port does not answer the client over IPv6"
[ "$body" = "page of a2" ] || e2e_fail "published TCP port over IPv6 answered '$body'"
e2e_log "published TCP port answers over IPv6 at [$ip6_b]:$tcp_port"
# Published on node-b only.
E2E_NETNS=$client e2e_wait_http "http://$ip_a:$tcp_port/" 2 >/dev/null &&
    e2e_fail "node-a answers a2's published port"
e2e_log "published ports answer: tcp $ip_b:$tcp_port, udp $ip_b:$udp_port"

# Removing the UDP port closes it; TCP stays.
E2E_KEY=$key_a e2e_fogctl port-remove a2 27015/udp >/dev/null || e2e_fail "port-remove failed"
closed=0
for _ in $(seq 20); do
    E2E_NETNS=$client e2e_udp_echo "$ip_b" "$udp_port" "after-remove" 1 >/dev/null || { closed=1; break; }
    sleep 0.5
done
[ "$closed" = 1 ] || e2e_fail "UDP $udp_port still answers after port-remove"
E2E_NETNS=$client e2e_wait_http "http://$ip_b:$tcp_port/" 10 >/dev/null ||
    e2e_fail "TCP $tcp_port stopped answering when the UDP port was removed"

# Deleting the VM closes the rest: no rule on node-b names the port.
ip netns exec "$ns_b" nft list ruleset | grep -qw "$tcp_port" ||
    e2e_fail "no nftables rule on node-b names TCP port $tcp_port"
E2E_KEY=$key_a e2e_fogctl undefine a2 --remove-all-storage --wait --timeout 30 >/dev/null || e2e_fail "undefine a2 failed"
gone=0
for _ in $(seq 25); do
    ip netns exec "$ns_b" nft list ruleset | grep -qw "$tcp_port" || { gone=1; break; }
    sleep 0.2
done
[ "$gone" = 1 ] || e2e_fail "node-b still has rules for port $tcp_port after the VM was deleted"
E2E_NETNS=$client e2e_wait_http "http://$ip_b:$tcp_port/" 2 >/dev/null &&
    e2e_fail "TCP $tcp_port answers after the VM was deleted"

echo "network e2e: pass ($((SECONDS - t0)) s)"
