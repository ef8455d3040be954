#!/bin/bash
# Reachable web and game servers on hosts behind NAT, end to end with real
# guests. The world namespace is the internet: the controller there answers
# address probes and relays WireGuard (--probe-port, --relay-port), and an
# internet client sits beside it. Two provider hosts, each with its own
# libvirtd, fog-nodeagent and wireguard-go, sit behind home routers: A's
# masquerades keeping ports (endpoint-independent), B's draws a port per
# destination (`masquerade fully-random`, symmetric); each router forwards
# the agent's port range to its host, as a provider would. Neither agent is
# told its endpoint; A's provider gives the router's address as
# --public-ip, B's leaves it to the address the controller sees. The
# controller classifies both NATs and puts the pair on the relay; one
# tenant's VMs, one on each host, reach each other over their private
# network through the relay (the hub's relay counters grow, both WireGuard
# peers are relay sockets). Each VM publishes UDP 27015 (the guest's game
# echo) and TCP 80 on requested host ports; from the client they answer at
# exactly the public address the API shows. After B's agent restarts and
# its VM is powered off and on, the requested ports stay the same in the
# API and answer again, and the VMs still reach each other; and so again
# once the controller restarts, with a new relay secret.
set -u
. "$(dirname "$0")/lib.sh"

e2e_need_root_tools
e2e_need_bins
for t in nft wg wireguard-go busybox; do
    command -v "$t" >/dev/null 2>&1 || e2e_skip "'$t' is not installed"
done
t0=$SECONDS
tp=$SECONDS
phase() { e2e_log "$1 ($((SECONDS - tp)) s, $((SECONDS - t0)) s in all)"; tp=$SECONDS; }

e2e_build_guest >/dev/null
[ -s "$E2E_GUEST_IMAGE" ] || e2e_fail "no $E2E_GUEST_IMAGE after build"
work=$(mktemp -d /tmp/fog-e2e-nat.XXXXXX) || e2e_fail "mktemp failed"
chmod 755 "$work"
e2e_cleanup_add "rm -rf '$work'"
# The same guest under two names: each host accepts only "its" name, which
# is how the test places VMs (node policies).
mkdir -p "$work/images"
cp --reflink=auto "$E2E_GUEST_IMAGE" "$work/images/tiny-a.qcow2"
cp --reflink=auto "$E2E_GUEST_IMAGE" "$work/images/tiny-b.qcow2"

# The internet (a range no other test uses); the home LANs stay out of the
# controller's default pool of tenant networks (10.128.0.0/9).
E2E_WORLD_IP=198.18.17.1
wan_a=198.18.17.11
wan_b=198.18.17.12
lan_a=10.61.1
lan_b=10.61.2
udp_port=27015
tcp_port=28080
e2e_world_up "fog-e2e-natw-$$"
e2e_controller_start "$work" --heartbeat 1 --longpoll 5 --grace 0 --inspect=false \
    --probe-port 3478 --relay-port 3480

ns_a=fog-e2e-nata-$$
ns_b=fog-e2e-natb-$$
e2e_nat_node_up "fog-e2e-ra-$$" "$wan_a" "$ns_a" "$lan_a" masquerade 20000-29999 \
    node-a "$work/a" --image-dir "$work/images" --shutdown-timeout 5 --public-ip "$wan_a"
uri_a=$E2E_URI
wg_a=$E2E_MESH_IF
e2e_nat_node_up "fog-e2e-rb-$$" "$wan_b" "$ns_b" "$lan_b" "masquerade fully-random" \
    20000-29999 node-b "$work/b" --image-dir "$work/images" --shutdown-timeout 5
uri_b=$E2E_URI
wg_b=$E2E_MESH_IF
run_args_b=("${E2E_NODE_RUN_ARGS[@]}")
client=fog-e2e-natc-$$
e2e_host_add "$client" 198.18.17.50

# The value of fog_relay_packets_total{result="forwarded"} (or, with an
# empty argument, every relay series) from the controller's metrics.
relay_metric() {
    local m
    m=$(E2E_KEY='' e2e_api GET /metrics) || return 1
    if [ -z "$1" ]; then
        grep '^fog_relay' <<<"$m"
    else
        sed -n "s/^fog_relay_packets_total{result=\"$1\"} \([0-9]*\)$/\1/p" <<<"$m"
    fi
}

dump() {
    e2e_dump_node "$work/a" "$uri_a" "$ns_a"
    e2e_dump_node "$work/b" "$uri_b" "$ns_b"
    echo "--- controller log:"; tail -n 30 "$work/controller.log"
    echo "--- nodeinfo node-a:"; e2e_fogctl nodeinfo node-a 2>&1
    echo "--- nodeinfo node-b:"; e2e_fogctl nodeinfo node-b 2>&1
    echo "--- relay metrics:"; relay_metric '' 2>&1
    echo "--- nft on node-b:"; ip netns exec "$ns_b" nft list ruleset 2>&1 | head -n 80
}
E2E_ON_FAIL=dump

e2e_fogctl node-policy node-a --image tiny-a >/dev/null || e2e_fail "node-policy node-a failed"
e2e_fogctl node-policy node-b --image tiny-b >/dev/null || e2e_fail "node-policy node-b failed"
phase "hub, two routers, two hosts up"

# ---- the controller classifies both NATs and relays the pair
node_field() { e2e_fogctl nodeinfo "$1" 2>/dev/null | sed -n "s/^$2: *//p"; }
wait_node_field() { # node field value timeout
    local deadline=$((SECONDS + $4)) v=
    while ((SECONDS < deadline)); do
        v=$(node_field "$1" "$2")
        [ "$v" = "$3" ] && return 0
        sleep 0.3
    done
    e2e_log "$1's $2 is '$v', want '$3'"
    return 1
}
wait_node_field node-a nat endpoint-independent 40 || e2e_fail "node-a's NAT is not endpoint-independent"
wait_node_field node-b nat endpoint-dependent 40 || e2e_fail "node-b's NAT is not endpoint-dependent"
# Published ports answer at the router's address: node-a's provider
# declares it (--public-ip), node-b's is the one the controller sees.
[ "$(node_field node-a public_ip)/$(node_field node-a public_ip_source)" = "$wan_a/configured" ] ||
    e2e_fail "node-a's public_ip is not $wan_a as configured"
[ "$(node_field node-b public_ip)/$(node_field node-b public_ip_source)" = "$wan_b/observed" ] ||
    e2e_fail "node-b's public_ip is not $wan_b as observed"
wait_node_field node-a relayed_peers node-b 20 || e2e_fail "node-a does not reach node-b through the relay"
wait_node_field node-b relayed_peers node-a 20 || e2e_fail "node-b does not reach node-a through the relay"
phase "NATs classified, the pair relayed"

# Each host's WireGuard has the other as a peer behind a local relay socket.
peer_endpoint() { # ns wg-if peer-ns peer-wg-if
    local key
    key=$(ip netns exec "$3" wg show "$4" public-key 2>/dev/null) || return 1
    ip netns exec "$1" wg show "$2" endpoints 2>/dev/null | awk -v k="$key" '$1 == k {print $2}'
}
ok=0
for _ in $(seq 40); do
    ep_a=$(peer_endpoint "$ns_a" "$wg_a" "$ns_b" "$wg_b")
    ep_b=$(peer_endpoint "$ns_b" "$wg_b" "$ns_a" "$wg_a")
    case "$ep_a/$ep_b" in
    127.0.0.1:*/127.0.0.1:*) ok=1; break ;;
    esac
    sleep 0.5
done
[ "$ok" = 1 ] || e2e_fail "the hosts' WireGuard peers are not relay sockets: '$ep_a' / '$ep_b'"

# ---- one tenant, a VM on each host, each publishing requested ports
for v in a b; do
    e2e_probe_user_data "$work/ud-$v" "page of v$v"
done
tenant=$(e2e_tenant_create gamer)
# fogctl as the tenant.
t() { E2E_KEY=$tenant "$@"; }
for v in a b; do
    t e2e_fogctl create "v$v" --cpus 1 --memory 128M --disk 1G --image "tiny-$v" --allow-tcg \
        --user-data "$work/ud-$v" --publish "$udp_port:27015/udp" --publish "$tcp_port:80/tcp" \
        >/dev/null || e2e_fail "create v$v failed"
done
for v in a b; do
    t e2e_wait_vm_state "v$v" running 90 || e2e_fail "v$v is not running"
    [ "$(t e2e_vm_field "v$v" node_name)" = "node-$v" ] || e2e_fail "v$v is not on node-$v"
done
va=$(t e2e_vm_address va)
vb=$(t e2e_vm_address vb)
[ -n "$va" ] && [ -n "$vb" ] || e2e_fail "addresses va='$va' vb='$vb'"
E2E_NETNS=$ns_a e2e_wait_http "http://$va/" 60 >/dev/null || e2e_fail "va ($va) does not answer on node-a"
E2E_NETNS=$ns_b e2e_wait_http "http://$vb/" 60 >/dev/null || e2e_fail "vb ($vb) does not answer on node-b"
phase "va $va on node-a, vb $vb on node-b serving"

# ---- the VMs reach each other through the relay
got=$(e2e_guest_probe_wait "$ns_a" "$va" "get-$vb" "page of vb") ||
    e2e_fail "va (node-a) cannot fetch from vb (node-b): '$got'"
before=$(relay_metric forwarded)
got=$(e2e_guest_probe "$ns_b" "$vb" "ping-$va")
[ "$got" = reachable ] || e2e_fail "vb (node-b) does not ping va (node-a): '$got'"
after=$(relay_metric forwarded)
[ -n "$before" ] && [ -n "$after" ] || e2e_fail "no fog_relay_packets_total in the metrics"
# Two echoes and their replies, each a frame relayed by the hub.
((after - before >= 4)) || e2e_fail "the relay forwarded $((after - before)) frames for 2 pings"
phase "va and vb reach each other through the relay ($((after - before)) frames forwarded for 2 echoes)"

# ---- the published ports answer the internet where the API says
# Prints the public_address of VM's published PORT/PROTO (fogctl port-list).
public_address() { # vm vm-port proto
    t e2e_fogctl port-list "$1" | awk -v p="$2" -v t="$3" '$1 == t && $2 == p {print $4}'
}
check_ports() { # vm wan label
    local v=$1 wan=$2 addr body reply
    addr=$(public_address "$v" 27015 udp)
    [ "$addr" = "$wan:$udp_port" ] || { t e2e_fogctl port-list "$v" >&2
        e2e_fail "$3: $v's UDP 27015 is published at '$addr', want $wan:$udp_port"; }
    reply=$(E2E_NETNS=$client e2e_udp_echo "${addr%:*}" "${addr##*:}" "game-$v-$$" 10) ||
        e2e_fail "$3: $v's game port $addr does not answer the internet"
    [ "$reply" = "game-$v-$$" ] || e2e_fail "$3: $v's game port $addr echoed '$reply'"
    addr=$(public_address "$v" 80 tcp)
    [ "$addr" = "$wan:$tcp_port" ] || e2e_fail "$3: $v's TCP 80 is published at '$addr', want $wan:$tcp_port"
    body=$(E2E_NETNS=$client e2e_wait_http "http://$addr/" 30) ||
        e2e_fail "$3: $v's web port $addr does not answer the internet"
    [ "$body" = "page of $v" ] || e2e_fail "$3: $v's web port $addr answered '$body'"
}
check_ports va "$wan_a" "behind the endpoint-independent NAT"
check_ports vb "$wan_b" "behind the symmetric NAT"
phase "published ports answer the internet at $wan_a and $wan_b"

# ---- B's agent restarts and its VM powers off and on: same ports
e2e__stop_pid "$E2E_AGENT_PID"
e2e_agent_start "$ns_b" "$work/b" "${run_args_b[@]}"
# The new agent has talked to the controller once it probed its NAT again.
ok=0
for _ in $(seq 100); do
    (($(grep -c 'address probe from UDP port' "$work/b/agent.log") >= 2)) && { ok=1; break; }
    sleep 0.2
done
[ "$ok" = 1 ] || e2e_fail "node-b's restarted agent did not probe its NAT"
wait_node_field node-b state online 10 || e2e_fail "node-b is not online after its agent restarted"
t e2e_fogctl destroy vb >/dev/null || e2e_fail "destroy vb failed"
t e2e_wait_vm_state vb stopped 60 || e2e_fail "vb did not stop"
t e2e_fogctl start vb >/dev/null || e2e_fail "start vb failed"
t e2e_wait_vm_state vb running 60 || e2e_fail "vb is not running again"
E2E_NETNS=$ns_b e2e_wait_http "http://$vb/" 60 >/dev/null || e2e_fail "vb ($vb) does not answer after its restart"
check_ports vb "$wan_b" "after the restart"
got=$(e2e_guest_probe_wait "$ns_b" "$vb" "get-$va" "page of va") ||
    e2e_fail "vb cannot fetch from va after the restart: '$got'"
phase "after the restart vb keeps $wan_b:$udp_port and $wan_b:$tcp_port"

# ---- the controller restarts (a new relay secret): the same again
e2e__stop_pid "$E2E_CTL_PID"
e2e_controller_restart
check_ports va "$wan_a" "after the controller's restart"
check_ports vb "$wan_b" "after the controller's restart"
got=$(e2e_guest_probe_wait "$ns_a" "$va" "get-$vb" "page of vb" 20) ||
    e2e_fail "va cannot fetch from vb after the controller's restart: '$got'"
# The new process counts from zero: what it forwarded went through it.
fwd=$(relay_metric forwarded)
((fwd > 0)) || e2e_fail "the restarted controller relayed nothing ('$fwd')"
phase "after the controller's restart: same ports, the VMs reach each other ($fwd frames relayed)"

echo "nat e2e: pass ($((SECONDS - t0)) s)"
