#!/bin/bash
# A tenant's VMs run on a provider's host end to end: controller, one
# fog-nodeagent and a real libvirtd with QEMU in a namespace "host". Two VMs
# from the tiny image answer HTTP from the host over their bridge; a
# power-off from inside a guest is reported stopped; kill -9 of the agent
# leaves both domains running, and the restarted agent adopts them without
# duplicates and applies what changed meanwhile; kill -9 of the controller
# disturbs no VM and the agent resumes with it; a health check on vm1's
# web server turns unhealthy (an event) once the guest's httpd is killed;
# after a host reboot (power cut) the agent, not libvirtd, starts the VM
# meant to run; undefine removes domain and disk.
set -u
. "$(dirname "$0")/lib.sh"

e2e_need_root_tools
e2e_need_bins
t0=$SECONDS
e2e_build_guest >/dev/null
[ -s "$E2E_GUEST_IMAGE" ] || e2e_fail "no $E2E_GUEST_IMAGE after build"

work=$(mktemp -d /tmp/fog-e2e-agent.XXXXXX)
chmod 755 "$work"
e2e_cleanup_add "rm -rf '$work'"
mkdir -p "$work/images"
cp --reflink=auto "$E2E_GUEST_IMAGE" "$work/images/tiny.qcow2"

e2e_world_up
tmpl=()
[ -d "$E2E_ROOT/images/templates" ] && tmpl=(--templates-dir "$E2E_ROOT/images/templates")
# --grace 0: no balance checks; this test is about running VMs.
e2e_controller_start "$work" --heartbeat 1 --longpoll 5 --grace 0 --inspect=false "${tmpl[@]}"

host=fog-e2e-host-$$
agent=$work/agent
e2e_node_up "$host" 10.214.0.11 node-a "$agent" --image-dir "$work/images" --shutdown-timeout 10
uri=$E2E_URI
lv=$E2E_LIBVIRT_DIR
run_args=("${E2E_NODE_RUN_ARGS[@]}")

dump() {
    e2e_dump_node "$agent" "$uri" "$host"
    echo "--- controller log:"; tail -n 20 "$work/controller.log"
}
E2E_ON_FAIL=dump

E2E_KEY=$(e2e_tenant_create alice)
export E2E_KEY

# VM one: its page from user-data. VM two: a CGI that powers it off from
# inside the guest when the test asks.
cat >"$work/ud1" <<'EOF'
#cloud-config
write_files:
  - path: /www/index.html
    content: |
      page of vm one
  - path: /www/cgi-bin/stophttpd
    permissions: '0755'
    content: |
      #!/bin/sh
      printf 'Content-Type: text/plain\r\n\r\nstopping\n'
      (sleep 1; killall httpd) </dev/null >/dev/null 2>&1 &
EOF
cat >"$work/ud2" <<'EOF'
#cloud-config
write_files:
  - path: /www/index.html
    content: |
      page of vm two
  - path: /www/cgi-bin/poweroff
    permissions: '0755'
    content: |
      #!/bin/sh
      printf 'Content-Type: text/plain\r\n\r\npowering off\n'
      (sleep 1; poweroff) </dev/null >/dev/null 2>&1 &
EOF
for n in 1 2; do
    e2e_fogctl create "vm$n" --cpus 1 --memory 128M --disk 1G --image tiny --allow-tcg \
        --user-data "$work/ud$n" >/dev/null || e2e_fail "fogctl create vm$n failed"
done
for n in 1 2; do
    e2e_wait_vm_state "vm$n" running 60 || e2e_fail "vm$n is not running"
done
[ "$(e2e_vm_field vm1 node_name)" = node-a ] || e2e_fail "vm1 is not on node-a"

id1=$(e2e_vm_id vm1)
id2=$(e2e_vm_id vm2)
ip1=$(e2e_vm_address vm1)
ip2=$(e2e_vm_address vm2)
[ -n "$ip1" ] && [ -n "$ip2" ] || e2e_fail "VMs have no addresses ('$ip1', '$ip2')"
[ "$ip1" != "$ip2" ] || e2e_fail "both VMs have address $ip1"
[ "$(e2e_domstate "fog-$id1")" = running ] || e2e_fail "domain fog-$id1 is not running"
[ "$(e2e_domstate "fog-$id2")" = running ] || e2e_fail "domain fog-$id2 is not running"
# libvirt never starts a domain at boot on its own: the agent does, once
# the hub's document still places the VM here (see the reboot below).
virsh -c "$uri" dominfo "fog-$id1" | grep -qE '^Autostart: +disable' ||
    e2e_fail "fog-$id1 is marked for libvirt's autostart"

# Each answers HTTP from the host, over the bridge the agent made.
body=$(E2E_NETNS=$host e2e_wait_http "http://$ip1/" 60) || e2e_fail "no HTTP answer from vm1 at $ip1"
[ "$body" = "page of vm one" ] || e2e_fail "vm1 answered '$body'"
body=$(E2E_NETNS=$host e2e_wait_http "http://$ip2/" 30) || e2e_fail "no HTTP answer from vm2 at $ip2"
[ "$body" = "page of vm two" ] || e2e_fail "vm2 answered '$body'"
e2e_log "both VMs serve their pages ($((SECONDS - t0)) s)"

# The serial console reaches the API (with the agent's next status post),
# and more of it straight from the node.
ok=0
for _ in $(seq 30); do
    e2e_fogctl console vm1 --log 2>/dev/null | grep -q "fog-guest: ready" && { ok=1; break; }
    sleep 0.3
done
[ "$ok" = 1 ] || e2e_fail "fogctl console vm1 --log does not show the guest's console"
# More than the controller keeps is read from the node: its answer holds
# the first line the node's log file holds (the guest's first boot line).
first=$(tr -d '\r\000' <"$agent/console/$id1.log" |
    grep -a -m 1 -E '^[[:print:]]{20,}$' | cut -c1-40)
[ -n "$first" ] || e2e_fail "vm1's console log on the node is empty"
e2e_fogctl console vm1 --log --bytes 1048576 >"$work/console.txt" ||
    e2e_fail "fogctl console vm1 --log --bytes failed: $(cat "$work/console.txt")"
grep -qF -- "$first" "$work/console.txt" ||
    e2e_fail "the node's log read lacks its first line '$first'"
grep -q "fog-guest: ready" "$work/console.txt" ||
    e2e_fail "the node's log read lacks 'fog-guest: ready'"

# kill -9 of the agent: both domains go on running and serving.
domid1=$(virsh -c "$uri" domid "fog-$id1")
domid2=$(virsh -c "$uri" domid "fog-$id2")
kill -9 "$E2E_AGENT_PID"
wait "$E2E_AGENT_PID" 2>/dev/null
sleep 2
[ "$(e2e_domstate "fog-$id1")" = running ] || e2e_fail "vm1's domain stopped with the agent"
[ "$(e2e_domstate "fog-$id2")" = running ] || e2e_fail "vm2's domain stopped with the agent"
E2E_NETNS=$host e2e_wait_http "http://$ip1/" 5 >/dev/null || e2e_fail "vm1 stopped serving without its agent"

# A change made while the agent is away: vm1 powered off.
e2e_fogctl destroy vm1 >/dev/null || e2e_fail "fogctl destroy vm1 failed"
sleep 1
[ "$(e2e_domstate "fog-$id1")" = running ] || e2e_fail "vm1 changed with no agent running"

e2e_agent_start "$host" "$agent" "${run_args[@]}"
e2e_wait_vm_state vm1 stopped 30 || e2e_fail "the restarted agent did not power vm1 off"
e2e_wait_domstate "fog-$id1" "shut off" 10 || e2e_fail "domain of vm1 is '$(e2e_domstate "fog-$id1")'"
[ "$(virsh -c "$uri" domid "fog-$id2")" = "$domid2" ] ||
    e2e_fail "vm2's domain was restarted by the agent's restart"
doms=$(e2e_fog_domains "$uri" | sort | tr '\n' ' ')
[ "$doms" = "$(printf 'fog-%s\n' "$id1" "$id2" | sort | tr '\n' ' ')" ] ||
    e2e_fail "domains after the restart: '$doms', want exactly vm1's and vm2's"
[ "$(e2e_vm_field vm2 state)" = running ] || e2e_fail "vm2 is reported '$(e2e_vm_field vm2 state)'"
e2e_log "agent restart converged; vm2 kept domain id $domid2 (vm1 had $domid1)"

# kill -9 of the controller: the VMs go on; once it is back, the agent
# finds it again and what the tenant asks is done.
kill -9 "$E2E_CTL_PID"
wait "$E2E_CTL_PID" 2>/dev/null
sleep 2
[ "$(virsh -c "$uri" domid "fog-$id2")" = "$domid2" ] || e2e_fail "vm2's domain changed while the controller was down"
E2E_NETNS=$host e2e_wait_http "http://$ip2/" 5 >/dev/null || e2e_fail "vm2 stopped serving without the controller"
e2e_controller_restart
e2e_fogctl start vm1 >/dev/null || e2e_fail "fogctl start vm1 failed"
e2e_wait_vm_state vm1 running 30 || e2e_fail "vm1 did not start again"
body=$(E2E_NETNS=$host e2e_wait_http "http://$ip1/" 60) || e2e_fail "vm1 does not serve after its start"
[ "$body" = "page of vm one" ] || e2e_fail "vm1 answered '$body' after its start"
[ "$(e2e_fog_domains "$uri" | wc -l)" = 2 ] || e2e_fail "a start made a duplicate domain"

# A health check of vm1's web server, run by its node: healthy while
# httpd answers, unhealthy within interval x fall once it is killed.
e2e_fogctl health-add vm1 "80:http:/index.html,interval=1,timeout=1,fall=2" >/dev/null ||
    e2e_fail "fogctl health-add vm1 failed"
health_is() { e2e_vm_field vm1 health | grep -q "80/http $1"; }
ok=0
for _ in $(seq 50); do health_is healthy && { ok=1; break; }; sleep 0.2; done
[ "$ok" = 1 ] || e2e_fail "vm1's check is not healthy: '$(e2e_vm_field vm1 health)'"
reply=$(ip netns exec "$host" curl -sS --noproxy '*' -m 5 "http://$ip1/cgi-bin/stophttpd") ||
    e2e_fail "vm1's stophttpd CGI did not answer"
[ "$reply" = stopping ] || e2e_fail "vm1's stophttpd CGI answered '$reply'"
kill_ns=$(date +%s%N)
ok=0
for _ in $(seq 50); do health_is unhealthy && { ok=1; break; }; sleep 0.2; done
[ "$ok" = 1 ] || e2e_fail "vm1's check is not unhealthy after httpd was killed: '$(e2e_vm_field vm1 health)'"
e2e_log "health check unhealthy $((($(date +%s%N) - kill_ns) / 1000000)) ms after the kill was asked (httpd dies 1 s later; interval 1 s, fall 2): $(e2e_vm_field vm1 health)"
e2e_api GET "/v1/events?limit=200" | grep -q '"action": *"vm.health"' ||
    e2e_fail "no vm.health event"

# A power-off from inside vm2 is reported stopped, and it stays off.
stop_ns=$(date +%s%N)
reply=$(ip netns exec "$host" curl -sS --noproxy '*' -m 5 "http://$ip2/cgi-bin/poweroff") ||
    e2e_fail "vm2's poweroff CGI did not answer"
[ "$reply" = "powering off" ] || e2e_fail "vm2's poweroff CGI answered '$reply'"
e2e_wait_domstate "fog-$id2" "shut off" 20 || e2e_fail "domain of vm2 is '$(e2e_domstate "fog-$id2")' after its power-off"
off_ns=$(date +%s%N)
e2e_wait_vm_state vm2 stopped 20 || e2e_fail "a guest power-off is not reported stopped"
e2e_log "guest power-off: domain off $(((off_ns - stop_ns) / 1000000)) ms after the request (the guest waits 1 s), reported stopped $((($(date +%s%N) - off_ns) / 1000000)) ms later"
sleep 3
[ "$(e2e_domstate "fog-$id2")" = "shut off" ] || e2e_fail "the agent restarted vm2 after its guest powered off"
[ "$(e2e_vm_field vm2 state)" = stopped ] || e2e_fail "vm2 is reported '$(e2e_vm_field vm2 state)' after its power-off"

# The host reboots (power cut: agent, libvirtd and QEMU killed; libvirtd
# boots with an empty /run). libvirtd starts nothing by itself; the agent
# starts vm1, still placed here and meant to run, and leaves vm2 off.
kill -9 "$E2E_AGENT_PID"
wait "$E2E_AGENT_PID" 2>/dev/null
e2e_libvirtd_power_off "$lv"
e2e_libvirtd_boot "$host" "$lv"
sleep 1
[ "$(e2e_domstate "fog-$id1")" = "shut off" ] || e2e_fail "libvirtd started vm1's domain at boot by itself"
boot=$SECONDS
e2e_agent_start "$host" "$agent" "${run_args[@]}"
e2e_wait_domstate "fog-$id1" running 30 || e2e_fail "the agent did not start vm1 again after the host's reboot"
body=$(E2E_NETNS=$host e2e_wait_http "http://$ip1/" 60) || e2e_fail "vm1 does not serve after the host's reboot"
[ "$body" = "page of vm one" ] || e2e_fail "vm1 answered '$body' after the host's reboot"
e2e_wait_vm_state vm1 running 20 || e2e_fail "vm1 is not reported running after the host's reboot"
[ "$(e2e_domstate "fog-$id2")" = "shut off" ] || e2e_fail "vm2, powered off from inside, ran again after the reboot"
[ "$(e2e_vm_field vm2 state)" = stopped ] || e2e_fail "vm2 is reported '$(e2e_vm_field vm2 state)' after the reboot"
e2e_log "host reboot: vm1 serves again $((SECONDS - boot)) s after the agent started; vm2 stays off"

# Undefine removes the domains and their disks.
disk1=$agent/disks/$id1.qcow2
[ -f "$disk1" ] || e2e_fail "no disk at $disk1"
for n in 1 2; do
    e2e_fogctl undefine "vm$n" --remove-all-storage --wait --timeout 30 >/dev/null || e2e_fail "fogctl undefine vm$n failed"
done
[ -z "$(e2e_fog_domains "$uri")" ] || e2e_fail "domains left after undefine: $(e2e_fog_domains "$uri" | tr '\n' ' ')"
left=$(find "$agent/disks" -name '*.qcow2' 2>/dev/null)
[ -z "$left" ] || e2e_fail "disks left after undefine: $left"
e2e_fogctl dominfo vm1 >/dev/null 2>&1 && e2e_fail "vm1 still exists after undefine"

echo "agent e2e: pass ($((SECONDS - t0)) s)"
