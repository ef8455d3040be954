#!/bin/sh
# make demo: a controller on sqlite, a provider node (its own libvirtd and
# fog-nodeagent) and a tenant who launches the tiny web VM from a template
# with its page set by user-data, then reads that page over the node's
# bridge and through the published port. Everything is removed at the end.
#
# The "internet" and the node are network namespaces made for the demo, so
# the bridge, WireGuard interface and firewall rules the agent creates, and
# the libvirtd the node uses, leave this machine as they found it.
# FOG_DEMO_KEEP=1 keeps the temp dir (logs) afterwards.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$self")/.." || exit 1
if [ "$(id -u)" != 0 ]; then
    echo "demo: root is needed for libvirtd, namespaces and bridges; using sudo"
    exec sudo -E bash "$self" "$@"
fi
. tests/e2e/lib.sh

say() { printf '\n== %s\n' "$*"; }
# Shows a command the way a person would type it, then runs it.
show() { printf '$ %s\n' "$*"; }
ctl() { # fogctl arguments, shown and run as E2E_KEY
    show "fogctl $*"
    e2e_fogctl "$@"
}

t0=$SECONDS
e2e_need_root_tools
e2e_need_bins
DIR=$(mktemp -d /tmp/fogdemo.XXXXXX)
chmod 755 "$DIR"
if [ "${FOG_DEMO_KEEP:-0}" = 1 ]; then
    e2e_cleanup_add "echo 'demo: logs kept in $DIR'"
else
    e2e_cleanup_add "rm -rf '$DIR'"
fi
e2e_cleanup_add "say 'demo: cleaned up (controller, agent, libvirtd, VM, namespaces)'"

say "the tiny guest image (kernel + busybox, cached)"
image=$(e2e_build_guest | tail -n 1)
[ -s "$image" ] || e2e_fail "no guest image"
ls -l "$image"

e2e_world_up "fogdemo-world-$$"
say "an 'internet' (namespace $E2E_WORLD, 10.214.0.0/24) with the controller on it"
show "fog-controller init --data-dir $DIR/ctl --san $E2E_WORLD_IP"
show "fog-controller serve --data-dir $DIR/ctl --listen $E2E_WORLD_IP:PORT"
e2e_controller_start "$DIR" --heartbeat 2 --longpoll 10 --inspect=false --accrual-interval 2 \
    --templates-dir "$E2E_ROOT/images/templates"
sed -n '/^CA certificate/p' "$DIR/init.out"
echo "controller: $E2E_CTL_URL (sqlite: $DIR/ctl/fog.db)"

say "a provider's node: namespace with its own libvirtd and fog-nodeagent"
node_ns=fogdemo-node-$$
node_ip=10.214.0.11
agent=$DIR/agent
show "fogctl join-token"
show "fog-nodeagent join --controller $E2E_CTL_URL --token fogjoin.... --data-dir $agent --port-min 8000 --port-max 8999"
show "fog-nodeagent run --data-dir $agent --public-ip $node_ip"
E2E_NODE_JOIN_ARGS=(--port-min 8000 --port-max 8999)
e2e_node_up "$node_ns" "$node_ip" demo-node "$agent" --shutdown-timeout 10
uri=$E2E_URI
dump() {
    e2e_dump_node "$agent" "$uri" "$node_ns"
    echo "--- controller log:"; tail -n 20 "$DIR/controller.log"
}
E2E_ON_FAIL=dump
echo "libvirtd: $uri"
for _ in $(seq 50); do
    e2e_fogctl nodelist 2>/dev/null | grep -q demo-node && break
    sleep 0.2
done
ctl nodelist

say "the admin makes a tenant, credits it and publishes the image"
ctl account-create demo --role tenant || e2e_fail "account-create failed"
TENANT=$(e2e_fogctl key-create --account demo | sed -n 's/^key: //p')
[ -n "$TENANT" ] || e2e_fail "no tenant key"
echo "$ fogctl key-create --account demo    # key: fog_... (kept for the tenant)"
ctl credit demo 100 --memo welcome || e2e_fail "credit failed"
ctl image-import fog-tiny "$image" --public || e2e_fail "image-import failed"

export E2E_KEY=$TENANT
say "the tenant launches the web VM from a template, page set by user-data"
cat >"$DIR/page.yaml" <<'EOF'
#cloud-config
write_files:
  - path: /www/index.html
    content: |
      Hello from inside the fogfabric VM "web" (page from user-data)
EOF
echo "--- page.yaml:"; cat "$DIR/page.yaml"; echo "---"
if e2e_fogctl template-info tiny-web >/dev/null 2>&1; then
    ctl template-list
    ctl create web --template tiny-web --user-data "$DIR/page.yaml" \
        --publish 8080:80/tcp || e2e_fail "create failed"
else
    echo "(no template tiny-web on this controller: launching the image directly)"
    ctl create web --image fog-tiny --cpus 1 --memory 128M --disk 1G --allow-tcg \
        --user-data "$DIR/page.yaml" --publish 8080:80/tcp || e2e_fail "create failed"
fi
echo "waiting for the node to fetch the image and boot the VM..."
e2e_wait_vm_state web running 90 || e2e_fail "web did not reach running"
ctl dominfo web
vm_ip=$(e2e_vm_address web)
[ -n "$vm_ip" ] || e2e_fail "web has no address"

say "HTTP from the node, over the tenant's bridge, to $vm_ip:80"
show "curl http://$vm_ip/    # on the node"
page=$(E2E_NETNS=$node_ns e2e_wait_http "http://$vm_ip/" 60) || e2e_fail "no answer from $vm_ip"
printf '%s\n' "$page"

say "HTTP from the internet through the published port $node_ip:8080"
show "curl http://$node_ip:8080/    # from the internet namespace"
page2=$(E2E_NETNS=$E2E_WORLD e2e_wait_http "http://$node_ip:8080/" 30) ||
    e2e_fail "no answer through the published port $node_ip:8080"
ip netns exec "$node_ns" nft list ruleset 2>/dev/null | grep -qw 8080 ||
    e2e_fail "no firewall rule on the node mentions port 8080"
printf '%s\n' "$page2"
case "$page2" in
*"page from user-data"*) ;;
*) e2e_fail "the published port answered something else" ;;
esac

say "the guest's serial console, through the API"
ctl console web --log | grep 'fog-guest:' | tail -n 8

say "what the VM has cost the tenant so far (per-second metering, accrued every 2 s here)"
sleep 3
ctl balance

say "the tenant deletes the VM"
ctl delete web --wait --timeout 60 || e2e_fail "delete failed"
for _ in $(seq 50); do
    ip netns exec "$node_ns" nft list ruleset 2>/dev/null | grep -qw 8080 || break
    sleep 0.2
done
ip netns exec "$node_ns" nft list ruleset 2>/dev/null | grep -qw 8080 &&
    e2e_fail "the node still forwards port 8080 after the VM is gone"
echo "the node no longer forwards port 8080"
E2E_KEY='' ctl events --limit 8

say "demo done in $((SECONDS - t0)) s; cleaning up"
