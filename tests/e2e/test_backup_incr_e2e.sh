#!/bin/bash
# Incremental backups on a real libvirtd with QEMU/TCG (one boot): a
# running VM from the tiny image writes 32 MiB of random data to its disk
# and prints their MD5; a first backup is full (libvirt's backup API, with
# a checkpoint); the guest changes 1 MiB; the second backup is
# incremental on the first and a small fraction of its size; the libvirt
# domain keeps one checkpoint, the newest; the first backup cannot be
# deleted while the second builds on it. The VM restored from the
# incremental backup (its chain fetched, stacked and flattened on the
# node) reads the second MD5. Prints the sizes and times.
set -u
. "$(dirname "$0")/lib.sh"

e2e_need_root_tools
e2e_need_bins
command -v jq >/dev/null 2>&1 || e2e_skip "no jq"
t0=$SECONDS
e2e_workdir_with_guest incr
work=$E2E_WORK

e2e_world_up "bi-world-$$"
e2e_controller_start "$work" --heartbeat 1 --longpoll 5 --grace 0 --inspect=false

host=bi-host-$$
agent=$work/agent
e2e_node_up "$host" 10.214.0.41 node-a "$agent" --image-dir "$work/images" --shutdown-timeout 10
uri=$E2E_URI
e2e_dump_on_fail "$agent" "$uri" "$host"

E2E_KEY=$(e2e_tenant_create alice)
export E2E_KEY

# The guest's disk (vda) is a 1 GiB overlay on the tiny image (its FAT
# filesystem fills the first 18 MiB): the CGIs use 32 MiB at 64 MiB.
# fill writes random data there, change 1 MiB of it (at 80 MiB), sum
# prints the MD5 of the 32 MiB as the disk holds them (O_DIRECT).
cat >"$work/ud" <<'EOF'
#cloud-config
write_files:
  - path: /www/cgi-bin/sum
    permissions: '0755'
    content: |
      #!/bin/sh
      printf 'Content-Type: text/plain\r\n\r\n'
      dd if=/dev/vda bs=1M skip=64 count=32 iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1
  - path: /www/cgi-bin/fill
    permissions: '0755'
    content: |
      #!/bin/sh
      dd if=/dev/urandom of=/dev/vda bs=1M seek=64 count=32 oflag=direct conv=notrunc,fsync 2>/dev/null
      exec /www/cgi-bin/sum
  - path: /www/cgi-bin/change
    permissions: '0755'
    content: |
      #!/bin/sh
      dd if=/dev/urandom of=/dev/vda bs=1M seek=80 count=1 oflag=direct conv=notrunc,fsync 2>/dev/null
      exec /www/cgi-bin/sum
EOF
e2e_fogctl create vm --cpus 1 --memory 128M --disk 1G --image tiny --allow-tcg \
    --user-data "$work/ud" >/dev/null || e2e_fail "fogctl create vm failed"
e2e_wait_vm_state vm running 60 || e2e_fail "vm is not running"
id=$(e2e_vm_id vm)
ip=$(e2e_vm_address vm)
[ -n "$ip" ] || e2e_fail "vm has no address"
dom=fog-$id

cgi() { # name
    ip netns exec "$host" curl -fsS --noproxy '*' --connect-timeout 2 -m 120 \
        "http://$ip/cgi-bin/$1" | tr -d '\r\n '
}
E2E_NETNS=$host e2e_wait_http "http://$ip/" 60 >/dev/null || e2e_fail "no HTTP answer from vm at $ip"

# Field F of backup ID as the API gives it.
bk_field() { # id field
    e2e_fogctl --json backup-list vm | jq -r --arg id "$1" --arg f "$2" \
        '(if type == "array" then .[] else .items[] end) | select(.id == $id) | .[$f] // empty'
}
# backup-create --wait: prints the id and the seconds it took.
backup() {
    local s=$SECONDS out b
    out=$(e2e_fogctl backup-create vm --wait --timeout 300 2>&1) || e2e_fail "backup-create failed: $out"
    b=$(sed -nE 's/^Backup ([0-9a-f-]{36}) of VM .* done.*/\1/p' <<<"$out")
    [ -n "$b" ] || e2e_fail "backup-create printed no backup id: $out"
    echo "$b $((SECONDS - s))"
}

md5a=$(cgi fill) || e2e_fail "the guest did not fill its disk"
[ ${#md5a} = 32 ] || e2e_fail "the guest printed '$md5a', not an MD5"
e2e_log "the guest wrote 32 MiB, MD5 $md5a"

read -r full full_s < <(backup)
[ "$(bk_field "$full" mode)" = full ] || e2e_fail "the first backup is '$(bk_field "$full" mode)', not full"
full_size=$(bk_field "$full" size)
e2e_log "full backup $full: $full_size bytes in $full_s s ($(bk_field "$full" full_reason))"
cps=$(virsh -c "$uri" checkpoint-list "$dom" --name | tr -d '[:space:]')
[ "$cps" = "$full" ] || e2e_fail "libvirt holds checkpoints '$cps' of $dom, want '$full'"

md5b=$(cgi change) || e2e_fail "the guest did not change its disk"
[ ${#md5b} = 32 ] && [ "$md5b" != "$md5a" ] || e2e_fail "the guest's MD5 after the change is '$md5b' (before: $md5a)"
e2e_log "the guest changed 1 MiB, MD5 $md5b"

read -r inc inc_s < <(backup)
mode=$(bk_field "$inc" mode)
[ "$mode" = incremental ] ||
    e2e_fail "the second backup is '$mode', not incremental: $(bk_field "$inc" full_reason)"
[ "$(bk_field "$inc" parent)" = "$full" ] || e2e_fail "the incremental backup's parent is '$(bk_field "$inc" parent)', not $full"
inc_size=$(bk_field "$inc" size)
e2e_log "incremental backup $inc: $inc_size bytes in $inc_s s"
# 1 MiB changed of ~50 MiB in use: the increment is a small fraction.
((inc_size * 8 < full_size)) || e2e_fail "the incremental backup ($inc_size bytes) is not a small fraction of the full one ($full_size)"
((inc_size >= 1048576)) || e2e_fail "the incremental backup ($inc_size bytes) cannot hold the 1 MiB changed"
cps=$(virsh -c "$uri" checkpoint-list "$dom" --name | tr -d '[:space:]')
[ "$cps" = "$inc" ] || e2e_fail "libvirt holds checkpoints '$cps' of $dom, want only '$inc'"
e2e_fogctl backup-list vm | grep -E "^$inc +manual +incremental +$full " >/dev/null ||
    e2e_fail "backup-list does not show the incremental one on its parent: $(e2e_fogctl backup-list vm)"

# The full one is the base of the other: not deleted alone.
out=$(e2e_fogctl backup-delete vm "$full" 2>&1) && e2e_fail "the base of an incremental backup was deleted"
grep -q "$inc" <<<"$out" || e2e_fail "the refusal does not name the incremental backup: $out"

# Restore from the incremental backup onto the same node: the disk as the
# second backup took it.
md5c=$(cgi change) || e2e_fail "the guest did not change its disk again"
e2e_fogctl destroy vm >/dev/null || e2e_fail "fogctl destroy vm failed"
e2e_wait_vm_state vm stopped 30 || e2e_fail "vm does not stop before its restore"
r0=$SECONDS
out=$(e2e_fogctl restore vm --backup "$inc" --node node-a 2>&1) || e2e_fail "fogctl restore failed: $out"
e2e_fogctl start vm >/dev/null || e2e_fail "fogctl start vm after the restore failed"
e2e_wait_vm_state vm running 120 || e2e_fail "the restored vm does not run: $(e2e_vm_field vm state_reason)"
E2E_NETNS=$host e2e_wait_http "http://$ip/" 60 >/dev/null || e2e_fail "the restored vm does not serve at $ip"
restore_s=$((SECONDS - r0))
got=$(cgi sum) || e2e_fail "the restored guest did not answer"
[ "$got" = "$md5b" ] || e2e_fail "the restored guest reads MD5 '$got', want '$md5b' (full: $md5a, later: $md5c)"
grep -q "disk restored from backup $inc" "$agent/agent.log" 2>/dev/null ||
    e2e_log "note: no restore line in $agent/agent.log"

# After a restore the disk holds no checkpoint: the next backup is full.
read -r next _ < <(backup)
[ "$(bk_field "$next" mode)" = full ] || e2e_fail "the backup after the restore is '$(bk_field "$next" mode)', not full"
e2e_log "after the restore: full backup $next ($(bk_field "$next" full_reason))"

e2e_fogctl destroy vm >/dev/null || e2e_fail "fogctl destroy vm failed"
e2e_wait_vm_state vm stopped 30 || e2e_fail "vm does not stop"
e2e_fogctl undefine vm --remove-all-storage --wait --timeout 60 >/dev/null || e2e_fail "fogctl undefine vm failed"
[ -z "$(e2e_fog_domains "$uri")" ] || e2e_fail "domains left after undefine: $(e2e_fog_domains "$uri" | tr '\n' ' ')"

echo "figures: full backup $full_size bytes in ${full_s} s; incremental after 1 MiB changed: $inc_size bytes in ${inc_s} s ($((inc_size * 100 / full_size))% of the full); restore of the chain to serving: ${restore_s} s"
echo "backup incr e2e: pass ($((SECONDS - t0)) s)"
