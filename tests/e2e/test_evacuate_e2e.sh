#!/bin/bash
# A VM moves between two hosts with real QEMU, and outlives the loss of its
# host. Two provider hosts (namespaces, each with its own libvirtd and
# fog-nodeagent), one controller. The guest writes a tag and 1 MiB of
# random data to its own disk and prints their checksum, read back from the
# disk with O_DIRECT. Cold migration A -> B -> A: after each move the guest
# boots on the target from the moved disk and reads the same checksum, and
# the host it left holds no domain of it. Then a backup is taken, the
# guest writes something new, and node A's agent is killed for good
# (kill -9; its libvirtd and the running guest stay: a partition). With
# restart policy on-host-failure, once A has been unreachable for the
# hub's --evacuate-after the VM is restored on B from that backup, boots
# and reads the backup's checksum, at its address. When A's agent comes
# back, the stale domain there (an older placement) is destroyed and
# undefined, never started again; the VM runs on B only. Then B loses
# power (agent, libvirtd and QEMU killed): the VM comes back on A from the
# backup; when B boots again, neither its libvirtd's autostart nor its
# agent runs the stale domain, which is removed. Five boots.
set -u
. "$(dirname "$0")/lib.sh"

e2e_need_root_tools
e2e_need_bins
t0=$SECONDS
# Seconds a node must be silent before its VMs are restored elsewhere.
evac_after=${FOG_E2E_EVACUATE_AFTER:-5}
e2e_workdir_with_guest evac
work=$E2E_WORK

e2e_world_up "ev-world-$$"
e2e_controller_start "$work" --heartbeat 1 --longpoll 5 --grace 0 --inspect=false \
    --evacuate-after "$evac_after"

ns_a=ev-a-$$
ns_b=ev-b-$$
e2e_node_up "$ns_a" 10.214.0.11 node-a "$work/a" --image-dir "$work/images" --shutdown-timeout 5
uri_a=$E2E_URI
pid_a=$E2E_AGENT_PID
run_a=("${E2E_NODE_RUN_ARGS[@]}")
e2e_node_up "$ns_b" 10.214.0.12 node-b "$work/b" --image-dir "$work/images" --shutdown-timeout 5
uri_b=$E2E_URI
lv_b=$E2E_LIBVIRT_DIR
pid_b=$E2E_AGENT_PID
run_b=("${E2E_NODE_RUN_ARGS[@]}")

dump() {
    e2e_dump_node "$work/a" "$uri_a" "$ns_a"
    e2e_dump_node "$work/b" "$uri_b" "$ns_b"
    echo "--- controller log:"; tail -n 40 "$work/controller.log"
    echo "--- events:"; E2E_KEY='' e2e_fogctl events --limit 20 2>&1
}
E2E_ON_FAIL=dump

# Each phase's time, printed as it ends.
phase_t=$SECONDS
phase() { e2e_log "phase '$1': $((SECONDS - phase_t)) s (total $((SECONDS - t0)) s)"; phase_t=$SECONDS; }
phase setup

E2E_KEY=$(e2e_tenant_create alice)
export E2E_KEY

# The guest's disk (vda) is the overlay on the tiny image, whose FAT
# filesystem fills its first 18 MiB. /cgi-bin/blk?TAG writes TAG in the
# 512-byte block at 64 MiB and 1 MiB of random data after it, synchronously
# with O_DIRECT; every call then prints "tag=T sum=MD5" read back from the
# disk with O_DIRECT (what the disk holds, not the guest's page cache).
cat >"$work/ud" <<'EOF'
#cloud-config
write_files:
  - path: /www/cgi-bin/blk
    permissions: '0755'
    content: |
      #!/bin/sh
      printf 'Content-Type: text/plain\r\n\r\n'
      case "$QUERY_STRING" in *[!a-z0-9-]*) echo "bad tag"; exit 0 ;; esac
      if [ -n "$QUERY_STRING" ]; then
          { printf '%-512s' "$QUERY_STRING"; head -c 1048576 /dev/urandom; } |
              dd of=/dev/vda bs=512 seek=131072 count=2049 iflag=fullblock oflag=direct conv=notrunc,fsync 2>/dev/null ||
              { echo "write failed"; exit 0; }
      fi
      t=$(dd if=/dev/vda bs=512 skip=131072 count=1 iflag=direct 2>/dev/null | tr -d '\000' | sed 's/ *$//')
      s=$(dd if=/dev/vda bs=512 skip=131072 count=2049 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1)
      echo "tag=$t sum=$s"
EOF

# node-b is drained while the VM is placed: it lands on node-a.
E2E_KEY= e2e_fogctl node-drain node-b >/dev/null || e2e_fail "node-drain node-b failed"
e2e_fogctl create vm --cpus 1 --memory 128M --disk 1G --image tiny --allow-tcg \
    --restart-policy on-host-failure --user-data "$work/ud" >/dev/null ||
    e2e_fail "fogctl create vm failed"
E2E_KEY= e2e_fogctl node-undrain node-b >/dev/null || e2e_fail "node-undrain node-b failed"
[ "$(e2e_vm_field vm node_name)" = node-a ] ||
    e2e_fail "vm was placed on '$(e2e_vm_field vm node_name)' with node-b drained"
e2e_wait_vm_state vm running 90 || e2e_fail "vm is not running"
id=$(e2e_vm_id vm)
ip=$(e2e_vm_address vm)
[ -n "$ip" ] || e2e_fail "vm has no address"
dom=fog-$id

# blk NS [TAG]: asks the guest, from host namespace NS, to write TAG (none:
# only read); prints its answer.
blk() { # ns [tag]
    local q=${2:-}
    ip netns exec "$1" curl -fsS --noproxy '*' --connect-timeout 2 -m 30 \
        "http://$ip/cgi-bin/blk${q:+?$q}"
}
# serve_wait NS: waits for the guest's first answer from NS (it booted).
serve_wait() { # ns
    E2E_NETNS=$1 e2e_wait_http "http://$ip/cgi-bin/blk" 120
}
# runs_only ON OFF: the domain runs in libvirt URI ON and is absent from
# URI OFF (waits up to 30 s for the latter: its agent removes it).
runs_only() { # uri-on uri-off
    local s deadline=$((SECONDS + 30))
    s=$(virsh -c "$1" domstate "$dom" 2>&1)
    [ "$s" = running ] || e2e_fail "domain $dom is '$s' on its node"
    while [ -n "$(e2e_fog_domains "$2")" ] && ((SECONDS < deadline)); do sleep 0.5; done
    [ -z "$(e2e_fog_domains "$2")" ] ||
        e2e_fail "the host the VM left still has: $(virsh -c "$2" list --all 2>&1 | grep fog-)"
}
place_gen() { e2e_fogctl --json dominfo vm 2>/dev/null | grep -oE '"place_gen": *[0-9]+' | grep -oE '[0-9]+$'; }

serve_wait "$ns_a" >/dev/null || e2e_fail "no answer from vm at $ip on node-a"
tag1=first-$$
got=$(blk "$ns_a" "$tag1") || e2e_fail "the guest's blk CGI did not answer"
sum1=$(sed -n "s/^tag=$tag1 sum=\([0-9a-f]\{32\}\)$/\1/p" <<<"$got")
[ -n "$sum1" ] || e2e_fail "the guest answers '$got' after writing '$tag1'"
phase "boot on node-a and write"

# ---- cold migration A -> B -> A: same checksum after each move.
# migrate_to NODE NS URI-TO URI-FROM
migrate_to() {
    local out
    e2e_fogctl destroy vm >/dev/null || e2e_fail "fogctl destroy vm failed"
    e2e_wait_vm_state vm stopped 30 || e2e_fail "vm does not stop before its migration"
    out=$(e2e_fogctl migrate vm --node "$1" --wait --timeout 180 2>&1) ||
        e2e_fail "fogctl migrate vm --node $1 failed: $out"
    grep -q "to node $1" <<<"$out" || e2e_fail "fogctl migrate printed: $out"
    [ "$(e2e_vm_field vm node_name)" = "$1" ] ||
        e2e_fail "vm is on '$(e2e_vm_field vm node_name)' after its migration to $1"
    e2e_fogctl start vm >/dev/null || e2e_fail "fogctl start vm on $1 failed"
    e2e_wait_vm_state vm running 120 || e2e_fail "vm does not run on $1"
    [ "$(e2e_vm_address vm)" = "$ip" ] || e2e_fail "vm's address is '$(e2e_vm_address vm)' on $1, was $ip"
    got=$(serve_wait "$2") || e2e_fail "vm does not answer at $ip on $1"
    [ "$got" = "tag=$tag1 sum=$sum1" ] ||
        e2e_fail "on $1 the guest reads '$got', want 'tag=$tag1 sum=$sum1'"
    runs_only "$3" "$4"
}
migrate_to node-b "$ns_b" "$uri_b" "$uri_a"
phase "migrate to node-b and boot"
migrate_to node-a "$ns_a" "$uri_a" "$uri_b"
phase "migrate back to node-a and boot"

# ---- evacuation: a backup, then content it does not hold, then A is lost.
tag2=backed-up-$$
got=$(blk "$ns_a" "$tag2") || e2e_fail "the guest's blk CGI did not answer"
sum2=$(sed -n "s/^tag=$tag2 sum=\([0-9a-f]\{32\}\)$/\1/p" <<<"$got")
[ -n "$sum2" ] || e2e_fail "the guest answers '$got' after writing '$tag2'"
out=$(e2e_fogctl backup-create vm --wait --timeout 180 2>&1) ||
    e2e_fail "backup-create of the running vm failed: $out"
bk=$(sed -nE 's/^Backup ([0-9a-f-]{36}) of VM .* done.*/\1/p' <<<"$out")
[ -n "$bk" ] || e2e_fail "backup-create printed no backup id: $out"
tag3=after-backup-$$
got=$(blk "$ns_a" "$tag3") || e2e_fail "the guest's blk CGI did not answer"
grep -q "^tag=$tag3 sum=" <<<"$got" || e2e_fail "the guest answers '$got' after writing '$tag3'"
gen=$(place_gen)
[ -n "$gen" ] || e2e_fail "dominfo --json shows no place_gen"
phase "backup"

kill -9 "$pid_a" || e2e_fail "cannot kill node-a's agent"
lost=$SECONDS
e2e_log "node-a's agent killed; the VM's domain there stays '$(virsh -c "$uri_a" domstate "$dom" 2>&1)'"
deadline=$((SECONDS + evac_after + 60))
while [ "$(e2e_vm_field vm node_name)" != node-b ] && ((SECONDS < deadline)); do sleep 0.5; done
[ "$(e2e_vm_field vm node_name)" = node-b ] ||
    e2e_fail "vm is still on '$(e2e_vm_field vm node_name)' $((SECONDS - lost)) s after node-a's loss ($(e2e_vm_field vm state_reason))"
moved=$((SECONDS - lost))
((moved >= evac_after)) || e2e_fail "vm left node-a after $moved s, before evacuate-after ($evac_after s)"
e2e_wait_vm_state vm running 180 || e2e_fail "the evacuated vm does not run on node-b"
got=$(serve_wait "$ns_b") || e2e_fail "the evacuated vm does not answer at $ip on node-b"
[ "$got" = "tag=$tag2 sum=$sum2" ] ||
    e2e_fail "the evacuated vm reads '$got', want the backup's 'tag=$tag2 sum=$sum2'"
e2e_log "node lost -> restore placed on node-b after $moved s, answering after $((SECONDS - lost)) s (evacuate-after $evac_after s)"
[ "$(place_gen)" -gt "$gen" ] || e2e_fail "the evacuation did not move the placement on (place_gen $gen -> $(place_gen))"
E2E_KEY='' e2e_fogctl events --limit 50 2>/dev/null | grep -q 'vm.evacuate' ||
    e2e_fail "no vm.evacuate event"
# The partition: node-a's domain still runs, with nobody to stop it.
[ "$(virsh -c "$uri_a" domstate "$dom" 2>&1)" = running ] ||
    e2e_fail "node-a's domain is '$(virsh -c "$uri_a" domstate "$dom" 2>&1)' while its agent is dead"
phase "node-a lost, restored on node-b"

# ---- node-a comes back: its stale domain goes, and is never started.
back=$SECONDS
e2e_agent_start "$ns_a" "$work/a" "${run_a[@]}"
deadline=$((SECONDS + 60))
while [ -n "$(e2e_fog_domains "$uri_a")" ] && ((SECONDS < deadline)); do sleep 0.3; done
[ -z "$(e2e_fog_domains "$uri_a")" ] ||
    e2e_fail "node-a still has $(virsh -c "$uri_a" list --all 2>&1 | grep fog-) $((SECONDS - back)) s after its agent came back"
e2e_log "node-a's stale domain removed $((SECONDS - back)) s after its agent came back"
for _ in $(seq 10); do
    [ -z "$(e2e_fog_domains "$uri_a")" ] || e2e_fail "node-a defined the VM's domain again"
    sleep 0.5
done
runs_only "$uri_b" "$uri_a"
[ "$(e2e_vm_field vm node_name)" = node-b ] || e2e_fail "vm is on '$(e2e_vm_field vm node_name)' after node-a came back"
[ "$(e2e_vm_field vm state)" = running ] || e2e_fail "vm is '$(e2e_vm_field vm state)' after node-a came back"
got=$(blk "$ns_b") || e2e_fail "vm does not answer on node-b after node-a came back"
[ "$got" = "tag=$tag2 sum=$sum2" ] || e2e_fail "after node-a came back the vm reads '$got'"
grep -q "$id" "$work/a/agent.log" || e2e_fail "node-a's agent log says nothing of the stale domain"
phase "node-a back, fenced"

# ---- node-b loses power (agent, libvirtd and QEMU killed): the VM comes
# back on node-a from the same backup. When node-b boots again, its
# libvirtd runs its boot-time autostart before the agent is up: the stale
# domain must not run even then, and the agent removes it.
gen=$(place_gen)
kill -9 "$pid_b" || e2e_fail "cannot kill node-b's agent"
e2e_libvirtd_power_off "$lv_b"
lost=$SECONDS
deadline=$((SECONDS + evac_after + 60))
while [ "$(e2e_vm_field vm node_name)" != node-a ] && ((SECONDS < deadline)); do sleep 0.5; done
[ "$(e2e_vm_field vm node_name)" = node-a ] ||
    e2e_fail "vm is still on '$(e2e_vm_field vm node_name)' $((SECONDS - lost)) s after node-b's power loss"
moved=$((SECONDS - lost))
e2e_wait_vm_state vm running 180 || e2e_fail "the evacuated vm does not run on node-a"
got=$(serve_wait "$ns_a") || e2e_fail "the evacuated vm does not answer at $ip on node-a"
[ "$got" = "tag=$tag2 sum=$sum2" ] ||
    e2e_fail "the vm evacuated to node-a reads '$got', want the backup's 'tag=$tag2 sum=$sum2'"
[ "$(place_gen)" -gt "$gen" ] || e2e_fail "the second evacuation did not move the placement on"
e2e_log "node-b powered off -> restore placed on node-a after $moved s, answering after $((SECONDS - lost)) s"
phase "node-b powered off, restored on node-a"

back=$SECONDS
e2e_libvirtd_boot "$ns_b" "$lv_b"
# Watches the stale domain on node-b from its boot until it is gone.
watch=$work/b-domstate
( while :; do virsh -c "$uri_b" domstate "$dom" 2>/dev/null | head -n 1; sleep 0.2; done ) >"$watch" &
watch_pid=$!
e2e_cleanup_add "kill $watch_pid 2>/dev/null"
e2e_agent_start "$ns_b" "$work/b" "${run_b[@]}"
deadline=$((SECONDS + 60))
while [ -n "$(e2e_fog_domains "$uri_b")" ] && ((SECONDS < deadline)); do sleep 0.3; done
[ -z "$(e2e_fog_domains "$uri_b")" ] ||
    e2e_fail "node-b still has $(virsh -c "$uri_b" list --all 2>&1 | grep fog-) $((SECONDS - back)) s after it booted"
kill "$watch_pid" 2>/dev/null
wait "$watch_pid" 2>/dev/null
e2e_log "node-b booted; its stale domain was '$(sort -u "$watch" | grep . | tr '\n' ',')' and is gone after $((SECONDS - back)) s"
grep -qx running "$watch" && e2e_fail "node-b ran the stale domain of the VM after it booted"
runs_only "$uri_a" "$uri_b"
got=$(blk "$ns_a") || e2e_fail "vm does not answer on node-a after node-b came back"
[ "$got" = "tag=$tag2 sum=$sum2" ] || e2e_fail "after node-b came back the vm reads '$got'"
phase "node-b booted, fenced"

echo "evacuate e2e: pass ($((SECONDS - t0)) s)"
