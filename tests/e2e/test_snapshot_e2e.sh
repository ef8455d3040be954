#!/bin/bash
# Snapshots on a real libvirtd with QEMU: a running VM from the tiny image
# writes a known content to its own disk, a snapshot is taken (a checkpoint:
# memory and disk), the content is changed, the VM is reverted, and the old
# content is read back from the disk by the guest that kept running. The
# snapshot is held by libvirt, not only by the controller; deleting it
# removes it there. A stopped VM's snapshot holds its disk, and reverting a
# stopped VM leaves it stopped. The interactive console reaches a shell
# on the guest's serial line. A backup of the running VM is taken through
# QEMU's lock, and the VM restored from it reads the content of the
# backup's time, not what it wrote later; deleting the VM works
# afterwards. Three boots.
set -u
. "$(dirname "$0")/lib.sh"

e2e_need_root_tools
e2e_need_bins
t0=$SECONDS
e2e_workdir_with_guest snap
work=$E2E_WORK

e2e_world_up "se-world-$$"
tmpl=()
[ -d "$E2E_ROOT/images/templates" ] && tmpl=(--templates-dir "$E2E_ROOT/images/templates")
e2e_controller_start "$work" --heartbeat 1 --longpoll 5 --grace 0 --accrual-interval 1 \
    --inspect=false "${tmpl[@]}"

host=se-host-$$
agent=$work/agent
e2e_node_up "$host" 10.214.0.11 node-a "$agent" --image-dir "$work/images" --shutdown-timeout 10
uri=$E2E_URI
e2e_dump_on_fail "$agent" "$uri" "$host"

E2E_KEY=$(e2e_tenant_create alice)
export E2E_KEY

# The guest's disk (vda) is the 1 GiB overlay on the tiny image, whose FAT
# filesystem fills its first 18 MiB: the CGI keeps one 512-byte block at
# 64 MiB. ?TEXT writes TEXT there (synchronously, O_DIRECT) and in a file
# in the guest's memory (tmpfs); every call then prints "disk=D mem=M": D
# read from the disk with O_DIRECT (what the disk holds, not the guest's
# page cache), M from memory (empty after a reboot).
cat >"$work/ud" <<'EOF'
#cloud-config
write_files:
  - path: /www/cgi-bin/block
    permissions: '0755'
    content: |
      #!/bin/sh
      printf 'Content-Type: text/plain\r\n\r\n'
      if [ -n "$QUERY_STRING" ]; then
          echo "$QUERY_STRING" >/run/block.mem
          printf '%-512s' "$QUERY_STRING" |
              dd of=/dev/vda bs=512 seek=131072 count=1 oflag=direct conv=notrunc,fsync 2>/dev/null ||
              { echo "write failed"; exit 0; }
      fi
      d=$(dd if=/dev/vda bs=512 skip=131072 count=1 iflag=direct 2>/dev/null | tr -d '\000' | sed 's/ *$//')
      echo "disk=$d mem=$(cat /run/block.mem 2>/dev/null)"
runcmd:
  - sh </dev/ttyS0 >/dev/ttyS0 2>&1 &
EOF
e2e_fogctl create vm --cpus 1 --memory 128M --disk 1G --image tiny --allow-tcg \
    --user-data "$work/ud" >/dev/null || e2e_fail "fogctl create vm failed"
e2e_wait_vm_state vm running 60 || e2e_fail "vm is not running"
id=$(e2e_vm_id vm)
ip=$(e2e_vm_address vm)
[ -n "$ip" ] || e2e_fail "vm has no address"
dom=fog-$id

# Writes TEXT to the guest's block (empty: only reads) and prints what the
# disk then holds.
block() { # [text]
    local q=${1:-}
    ip netns exec "$host" curl -fsS --noproxy '*' --connect-timeout 2 -m 20 \
        "http://$ip/cgi-bin/block${q:+?$q}"
}
E2E_NETNS=$host e2e_wait_http "http://$ip/" 60 >/dev/null || e2e_fail "no HTTP answer from vm at $ip"
e2e_log "vm serves at $ip ($((SECONDS - t0)) s)"

# The interactive console: a shell the guest runs on its serial line (from
# runcmd above) answers through `fogctl console`, which the controller
# splices to the node's own outbound connection. The guest's tty echoes
# the command as typed; only the shell prints the computed word.
console_word() {
    { sleep 1; printf 'echo con$((6*7))sole\n'; sleep 4; } | e2e_fogctl console vm --force 2>&1
}
for try in 1 2 3; do
    out=$(console_word)
    grep -q con42sole <<<"$out" && break
    sleep 2
done
grep -q con42sole <<<"$out" || e2e_fail "no answer from the guest's shell through fogctl console: $out"
grep -q "Connected to domain 'vm'" <<<"$out" || e2e_fail "fogctl console printed no banner: $out"
e2e_log "console answers (try $try, $((SECONDS - t0)) s)"

old=before-snapshot-$$
new=after-snapshot-$$
got=$(block "$old") || e2e_fail "the guest's block CGI did not answer"
[ "$got" = "disk=$old mem=$old" ] || e2e_fail "the guest answers '$got' after writing '$old'"

# A checkpoint of the running VM, held by libvirt.
out=$(e2e_fogctl snapshot-create vm s1 --wait --timeout 120) || e2e_fail "snapshot-create s1 failed: $out"
e2e_log "$out ($((SECONDS - t0)) s)"
info=$(e2e_fogctl snapshot-info vm s1) || e2e_fail "snapshot-info vm s1 failed"
grep -qE '^state: +ready$' <<<"$info" || e2e_fail "snapshot s1 is not ready: $info"
grep -qE '^consistency: +checkpoint$' <<<"$info" ||
    e2e_fail "a running VM's snapshot is not a checkpoint: $info"
snaps=$(virsh -c "$uri" snapshot-list "$dom" --name 2>&1) || e2e_fail "virsh snapshot-list: $snaps"
grep -qx s1 <<<"$snaps" || e2e_fail "libvirt holds no snapshot s1 of $dom (has: $snaps)"
virsh -c "$uri" snapshot-info "$dom" s1 | grep -qE '^State: +running$' ||
    e2e_fail "libvirt's s1 is not a snapshot of the running domain"

# The content changes after the snapshot.
got=$(block "$new") || e2e_fail "the guest's block CGI did not answer after the snapshot"
[ "$got" = "disk=$new mem=$new" ] || e2e_fail "the guest answers '$got' after writing '$new'"

# Revert: the guest resumes where the snapshot left it, with the old disk.
domid=$(virsh -c "$uri" domid "$dom")
out=$(e2e_fogctl snapshot-revert vm s1 --wait --timeout 120) || e2e_fail "snapshot-revert s1 failed: $out"
e2e_log "$out ($((SECONDS - t0)) s)"
e2e_wait_domstate "$dom" running 30 || e2e_fail "domain is '$(e2e_domstate "$dom")' after the revert"
got=$(E2E_NETNS=$host e2e_wait_http "http://$ip/cgi-bin/block" 30) ||
    e2e_fail "the guest does not serve after the revert"
# The old content on the disk, and in memory: the guest was not rebooted.
[ "$got" = "disk=$old mem=$old" ] || e2e_fail "after the revert the guest answers '$got', want disk and memory '$old'"
# libvirt reverts a running domain by starting a new QEMU from the saved
# state (the domain id changes); the guest's network is back with it.
e2e_log "domain id $domid before the revert, $(virsh -c "$uri" domid "$dom") after"
e2e_wait_vm_state vm running 30 || e2e_fail "vm is not reported running after the revert"

# A backup of the running VM: its overlay is locked by QEMU, so the node
# copies it with qemu-img -U (crash-consistent), seals and uploads it.
out=$(e2e_fogctl backup-create vm --wait --timeout 120 2>&1) || e2e_fail "backup-create of the running vm failed: $out"
bk=$(sed -nE 's/^Backup ([0-9a-f-]{36}) of VM .* done.*/\1/p' <<<"$out")
[ -n "$bk" ] || e2e_fail "backup-create printed no backup id: $out"
e2e_log "$out ($((SECONDS - t0)) s)"

# Billed as running after the revert: its metered seconds keep growing.
usage_s() { e2e_fogctl --json usage --vm vm 2>/dev/null | grep -oE '"seconds": *[0-9]+' | head -n 1 | grep -oE '[0-9]+$'; }
s0=$(usage_s)
[ -n "$s0" ] || e2e_fail "no usage of vm: $(e2e_fogctl usage --vm vm 2>&1)"
deadline=$((SECONDS + 30))
while s1=$(usage_s); [ "${s1:-0}" -le "$s0" ] && ((SECONDS < deadline)); do sleep 0.5; done
[ "${s1:-0}" -gt "$s0" ] || e2e_fail "vm is not billed after the revert (usage stays at $s0 s)"
[ "$(e2e_vm_field vm state)" = running ] || e2e_fail "vm is '$(e2e_vm_field vm state)' after the revert"

# A stopped VM's snapshot holds its disk only (the seed is a raw read-only
# disk beside the qcow2 overlay).
e2e_fogctl destroy vm >/dev/null || e2e_fail "fogctl destroy vm failed"
e2e_wait_vm_state vm stopped 30 || e2e_fail "vm does not stop"
e2e_wait_domstate "$dom" "shut off" 30 || e2e_fail "domain is '$(e2e_domstate "$dom")' after destroy"
out=$(e2e_fogctl snapshot-create vm s2 --wait --timeout 120 2>&1) || e2e_fail "snapshot-create s2 of the stopped vm failed: $out"
e2e_fogctl snapshot-info vm s2 | grep -qE '^consistency: +powered-off$' ||
    e2e_fail "a stopped VM's snapshot is not powered-off: $(e2e_fogctl snapshot-info vm s2)"
virsh -c "$uri" snapshot-list "$dom" --name | grep -qx s2 || e2e_fail "libvirt holds no snapshot s2 of $dom"

# Reverting the stopped VM to the checkpoint keeps it stopped.
out=$(e2e_fogctl snapshot-revert vm s1 --wait --timeout 120 2>&1) || e2e_fail "snapshot-revert of the stopped vm failed: $out"
r0=$SECONDS
e2e_wait_domstate "$dom" "shut off" 60 || e2e_fail "domain is '$(e2e_domstate "$dom")' after reverting the stopped vm"
e2e_log "stopped vm reverted to s1: domain shut off $((SECONDS - r0)) s after the revert"
[ "$(e2e_vm_field vm state)" = stopped ] || e2e_fail "vm is '$(e2e_vm_field vm state)' after reverting it stopped"

# Deleting the snapshots removes them from libvirt; then the VM goes.
for s in s1 s2; do
    e2e_fogctl snapshot-delete vm $s --wait --timeout 60 >/dev/null || e2e_fail "snapshot-delete $s failed"
done
snaps=$(virsh -c "$uri" snapshot-list "$dom" --name 2>&1) || e2e_fail "virsh snapshot-list: $snaps"
[ -z "$(tr -d '[:space:]' <<<"$snaps")" ] || e2e_fail "libvirt still holds snapshots of $dom: $snaps"
e2e_fogctl snapshot-info vm s1 >/dev/null 2>&1 && e2e_fail "snapshot s1 is still listed after its deletion"
[ "$(e2e_domstate "$dom")" = "shut off" ] || e2e_fail "domain is '$(e2e_domstate "$dom")' after the snapshots' deletion"

# Restore: content written after the backup is gone once the VM is
# restored from it (here onto its own node, which must be named), and the
# guest boots from the restored disk.
e2e_fogctl start vm >/dev/null || e2e_fail "fogctl start vm failed"
e2e_wait_vm_state vm running 60 || e2e_fail "vm does not run again"
E2E_NETNS=$host e2e_wait_http "http://$ip/" 60 >/dev/null || e2e_fail "vm does not serve again"
later=after-backup-$$
got=$(block "$later") || e2e_fail "the guest's block CGI did not answer after the backup"
[ "$got" = "disk=$later mem=$later" ] || e2e_fail "the guest answers '$got' after writing '$later'"
e2e_fogctl destroy vm >/dev/null || e2e_fail "fogctl destroy vm failed"
e2e_wait_vm_state vm stopped 30 || e2e_fail "vm does not stop before its restore"
place_gen() { e2e_fogctl --json dominfo vm 2>/dev/null | grep -oE '"place_gen": *[0-9]+' | grep -oE '[0-9]+$'; }
gen=$(place_gen)
[ -n "$gen" ] || e2e_fail "dominfo --json shows no place_gen"
out=$(e2e_fogctl restore vm --backup "$bk" --node node-a 2>&1) || e2e_fail "fogctl restore failed: $out"
e2e_log "$out"
[ "$(place_gen)" = $((gen + 1)) ] || e2e_fail "the restore did not place the vm anew (place_gen $gen -> $(place_gen))"
e2e_fogctl start vm >/dev/null || e2e_fail "fogctl start vm after the restore failed"
e2e_wait_vm_state vm running 90 || e2e_fail "the restored vm does not run: $(e2e_vm_field vm state_reason)"
got=$(E2E_NETNS=$host e2e_wait_http "http://$ip/cgi-bin/block" 60) ||
    e2e_fail "the restored vm does not serve at $ip"
# The disk as the backup took it; memory empty: it booted afresh.
[ "$got" = "disk=$old mem=" ] || e2e_fail "the restored vm answers '$got', want disk '$old' from the backup"
e2e_log "restored from backup $bk: the guest reads '$old' ($((SECONDS - t0)) s)"
e2e_fogctl destroy vm >/dev/null || e2e_fail "fogctl destroy vm failed"
e2e_wait_vm_state vm stopped 30 || e2e_fail "vm does not stop after its restore"
e2e_fogctl undefine vm --remove-all-storage --wait --timeout 60 >/dev/null || e2e_fail "fogctl undefine vm failed"
[ -z "$(e2e_fog_domains "$uri")" ] || e2e_fail "domains left after undefine: $(e2e_fog_domains "$uri" | tr '\n' ' ')"

echo "snapshot e2e: pass ($((SECONDS - t0)) s)"
