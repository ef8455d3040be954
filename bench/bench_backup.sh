#!/bin/bash
# Backups, restore and evacuation with real QEMU on two namespace hosts
# (tests/e2e/lib.sh): a VM whose disk (BENCH_DISK_GIB, default 2) holds
# random data past the tiny guest's boot area. Medians of BENCH_RUNS
# (default 3) of:
# - a backup through our path (fogctl backup-create --wait: the node
#   copies the running VM's disk with qemu-img -U, seals it, uploads it in
#   resumable chunks; the hub verifies the hash), against the same disk
#   copied with `qemu-img convert -U` and sent with `curl -T` to the same
#   controller (an image upload, streamed to its disk with its hash), as
#   MB/s of the disk's virtual size and their ratio. qemu-img cannot write
#   a pipe (its file driver needs a regular file): it writes a file that
#   curl then sends, as our node does;
#   Each of those backups is full: the one before goes first, so the VM
#   has no backup to build an incremental one on;
# - an incremental backup after the guest changed 1% of the disk (random
#   data written from inside): its size and time beside the full one's;
# - a restore of that incremental backup onto the node (its chain: the
#   full one and the increment, fetched, opened, stacked and flattened;
#   fogctl restore + start, until the VM is reported running);
# - a node's loss (its agent, libvirtd and QEMU killed) to the VM answering
#   HTTP on the other node, restored there from its latest backup by the
#   hub after --evacuate-after BENCH_EVACUATE_AFTER (default 5) s.
# Then every run in ms, and the node's log lines saying how long each
# backup's sealing took (the rest, to its commit, is the upload).
# Needs root, QEMU and libvirtd (else skipped); run as make bench does:
# O=build bash bench/bench_backup.sh. About 12 min on 2 shared cores.
set -u
. "$(dirname "$0")/../tests/e2e/lib.sh"

gib=${BENCH_DISK_GIB:-2}
runs=${BENCH_RUNS:-3}
evac_after=${BENCH_EVACUATE_AFTER:-5}
skip() { echo "bench_backup: $*, skipped"; exit 0; }
[ "$(id -u)" = 0 ] || skip "needs root"
for t in qemu-system-x86_64 libvirtd qemu-img virsh curl xorriso jq; do
    command -v "$t" >/dev/null 2>&1 || skip "no $t"
done
[ -e /dev/net/tun ] || skip "no /dev/net/tun"
e2e_need_bins
e2e_workdir_with_guest bench-backup
work=$E2E_WORK

e2e_world_up "bb-world-$$"
e2e_controller_start "$work" --heartbeat 1 --longpoll 5 --grace 0 --inspect=false \
    --evacuate-after "$evac_after" --rate-key 0 --rate-ip 0
ns=(bb-a-$$ bb-b-$$)
name=(node-a node-b)
uri=() lv=() pid=() runargs=()
for k in 0 1; do
    e2e_node_up "${ns[$k]}" "10.214.0.1$((k + 1))" "${name[$k]}" "$work/n$k" \
        --image-dir "$work/images" --shutdown-timeout 5
    uri[$k]=$E2E_URI
    lv[$k]=$E2E_LIBVIRT_DIR
    pid[$k]=$E2E_AGENT_PID
    runargs[$k]="${E2E_NODE_RUN_ARGS[*]}"
done
E2E_ON_FAIL="e2e_dump_node '$work/n0' '${uri[0]}' '${ns[0]}'; e2e_dump_node '$work/n1' '${uri[1]}' '${ns[1]}'; tail -n 30 '$work/controller.log'"

# Milliseconds since the epoch; medians of a list of numbers.
ms() { date +%s%3N; }
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# The guest changes N MiB of its disk at 1 GiB with random data when
# asked: /cgi-bin/change?N.
cat >"$work/ud" <<'EOF'
#cloud-config
write_files:
  - path: /www/cgi-bin/change
    permissions: '0755'
    content: |
      #!/bin/sh
      printf 'Content-Type: text/plain\r\n\r\n'
      dd if=/dev/urandom of=/dev/vda bs=1M seek=1024 count="${QUERY_STRING:-1}" oflag=direct conv=notrunc,fsync 2>/dev/null && echo changed
EOF
E2E_KEY= e2e_fogctl node-drain node-b >/dev/null || e2e_fail "node-drain failed"
e2e_fogctl create vm --cpus 1 --memory 128M --disk "${gib}G" --image tiny --allow-tcg \
    --user-data "$work/ud" --restart-policy on-host-failure --stopped >/dev/null ||
    e2e_fail "create vm failed"
E2E_KEY= e2e_fogctl node-undrain node-b >/dev/null || e2e_fail "node-undrain failed"
e2e_wait_vm_state vm stopped 60 || e2e_fail "vm is not defined stopped"
id=$(e2e_vm_id vm)
disk=$work/n0/disks/$id.qcow2
[ -f "$disk" ] || e2e_fail "no disk at $disk"

# The disk: the tiny guest's boot area, then random data to its end.
qemu-img convert -O raw "$E2E_GUEST_IMAGE" "$work/src.raw" || e2e_fail "qemu-img convert failed"
truncate -s 64M "$work/src.raw"
head -c $(((gib * 1024 - 64) * 1048576)) /dev/urandom >>"$work/src.raw"
qemu-img convert -n -f raw -O qcow2 "$work/src.raw" "$disk" || e2e_fail "cannot fill $disk"
rm -f "$work/src.raw"
mib=$((gib * 1024))
e2e_fogctl start vm >/dev/null || e2e_fail "start vm failed"
e2e_wait_vm_state vm running 120 || e2e_fail "vm does not run"
ip=$(e2e_vm_address vm)
E2E_NETNS=${ns[0]} e2e_wait_http "http://$ip/" 120 >/dev/null || e2e_fail "vm does not serve at $ip"

# ---- backups: ours, then qemu-img + curl to the same controller.
ours=() base=() bk=
for ((r = 0; r < runs; r++)); do
    [ -n "$bk" ] && { e2e_fogctl backup-delete vm "$bk" >/dev/null || e2e_fail "backup-delete failed"; }
    t=$(ms)
    out=$(e2e_fogctl backup-create vm --wait --timeout 1800 2>&1) || e2e_fail "backup-create failed: $out"
    ours+=($(($(ms) - t)))
    bk=$(sed -nE 's/^Backup ([0-9a-f-]{36}) of VM .* done.*/\1/p' <<<"$out")
    [ -n "$bk" ] || e2e_fail "no backup id in: $out"
done
bk_field() { # id field
    E2E_KEY= e2e_fogctl --json backup-list vm | jq -r --arg id "$1" --arg f "$2" \
        '(if type == "array" then .[] else .items[] end) | select(.id == $id) | .[$f] // empty'
}
size=$(bk_field "$bk" size)
[ "$(bk_field "$bk" mode)" = full ] || e2e_fail "backup $bk is not full"

# ---- an incremental backup after 1% of the disk changed.
chg=$((gib * 1024 / 100))
ip netns exec "${ns[0]}" curl -fsS --noproxy '*' -m 600 "http://$ip/cgi-bin/change?$chg" | grep -q changed ||
    e2e_fail "the guest did not change $chg MiB of its disk"
t=$(ms)
out=$(e2e_fogctl backup-create vm --wait --timeout 1800 2>&1) || e2e_fail "backup-create failed: $out"
inc_ms=$(($(ms) - t))
inc=$(sed -nE 's/^Backup ([0-9a-f-]{36}) of VM .* done.*/\1/p' <<<"$out")
[ "$(bk_field "$inc" mode)" = incremental ] || e2e_fail "backup $inc is not incremental: $(bk_field "$inc" full_reason)"
inc_size=$(bk_field "$inc" size)
for ((r = 0; r < runs; r++)); do
    img=$(E2E_KEY= e2e_api POST /v1/images -H 'Content-Type: application/json' \
        -d "{\"name\":\"copy$r\"}" | grep -oE '"id": *"[0-9a-f-]{36}"' | grep -oE '[0-9a-f-]{36}')
    [ -n "$img" ] || e2e_fail "no image id"
    t=$(ms)
    ip netns exec "${ns[0]}" qemu-img convert -U -O qcow2 "$disk" "$work/copy.qcow2" ||
        e2e_fail "qemu-img convert -U failed"
    ip netns exec "${ns[0]}" curl -sS --fail-with-body --noproxy '*' --cacert "$E2E_CTL_CA" \
        -H "Authorization: Bearer $E2E_ADMIN_KEY" -H 'Content-Type: application/octet-stream' \
        -T "$work/copy.qcow2" "$E2E_CTL_URL/v1/images/$img/file" >/dev/null ||
        e2e_fail "curl -T of the copy failed"
    base+=($(($(ms) - t)))
    rm -f "$work/copy.qcow2"
    E2E_KEY= e2e_fogctl image-delete "copy$r" >/dev/null
done
# Where our backups' time went, from the node's log.
grep -E 'backup [0-9a-f-]{36} of VM .* (sealed|committed)|backup [0-9a-f-]{36}: .*(failed|again)' \
    "$work/n0/agent.log" | sed -E 's/, sha256 [0-9a-f]{64}//; s/^/  node-a: /' >"$work/backup-steps"

# ---- restores of the incremental backup (and its chain) onto node-a,
# until reported running.
rest=()
for ((r = 0; r < runs; r++)); do
    e2e_fogctl destroy vm >/dev/null || e2e_fail "destroy vm failed"
    e2e_wait_vm_state vm stopped 60 || e2e_fail "vm does not stop"
    t=$(ms)
    e2e_fogctl restore vm --backup "$inc" --node node-a >/dev/null || e2e_fail "restore failed"
    e2e_fogctl start vm >/dev/null || e2e_fail "start after restore failed"
    e2e_wait_vm_state vm running 1800 || e2e_fail "restored vm does not run"
    rest+=($(($(ms) - t)))
done
E2E_NETNS=${ns[0]} e2e_wait_http "http://$ip/" 120 >/dev/null || e2e_fail "restored vm does not serve"

# ---- a node's loss to the VM answering on the other node.
evac=()
on=0
for ((r = 0; r < runs; r++)); do
    to=$((1 - on))
    kill -9 "${pid[$on]}"
    e2e_libvirtd_power_off "${lv[$on]}"
    t=$(ms)
    E2E_NETNS=${ns[$to]} e2e_wait_http "http://$ip/" $((evac_after + 1800)) >/dev/null ||
        e2e_fail "vm does not answer on ${name[$to]} after ${name[$on]}'s loss"
    evac+=($(($(ms) - t)))
    # The lost node boots again; its stale domain goes before the next run.
    e2e_libvirtd_boot "${ns[$on]}" "${lv[$on]}"
    # shellcheck disable=SC2086
    e2e_agent_start "${ns[$on]}" "$work/n$on" ${runargs[$on]}
    pid[$on]=$E2E_AGENT_PID
    for _ in $(seq 120); do
        [ -z "$(e2e_fog_domains "${uri[$on]}")" ] && break
        sleep 0.5
    done
    [ -z "$(e2e_fog_domains "${uri[$on]}")" ] || e2e_fail "${name[$on]} keeps the stale domain"
    on=$to
done

mbs() { awk -v mib="$mib" -v t="$1" 'BEGIN {printf "%.1f", mib * 1000 / t * 1.048576}'; }
mo=$(median "${ours[@]}") mb=$(median "${base[@]}") mr=$(median "${rest[@]}") me=$(median "${evac[@]}")
row() { printf '| %-58s | %22s |\n' "$1" "$2"; }
row "disk: ${gib} GiB, random data; sealed backup $((${size:-0} / 1048576)) MiB" "runs: $runs (median)"
row "backup through fogfabric (backup-create --wait)" "$(awk -v t="$mo" 'BEGIN {printf "%.1f", t / 1000}') s, $(mbs "$mo") MB/s"
row "qemu-img convert -U, then curl -T to the controller" "$(awk -v t="$mb" 'BEGIN {printf "%.1f", t / 1000}') s, $(mbs "$mb") MB/s"
row "ratio fogfabric / qemu-img + curl (throughput)" "$(awk -v a="$mo" -v b="$mb" 'BEGIN {printf "%.2f", b / a}')x"
row "incremental backup after ${chg} MiB (1%) changed" "$((${inc_size:-0} / 1048576)) MiB, $(awk -v t="$inc_ms" 'BEGIN {printf "%.1f", t / 1000}') s"
row "incremental / full: size, time" "$(awk -v a="$inc_size" -v b="$size" -v t="$inc_ms" -v f="$mo" 'BEGIN {printf "%.1f%%, %.1f%%", a * 100 / b, t * 100 / f}')"
row "restore of the incremental one (chain of 2), to running" "$(awk -v t="$mr" 'BEGIN {printf "%.1f", t / 1000}') s"
row "node lost -> VM answering on another (evacuate-after ${evac_after} s)" "$(awk -v t="$me" 'BEGIN {printf "%.1f", t / 1000}') s"
echo "ours: ${ours[*]}; incremental: $inc_ms ms ($inc_size bytes); qemu-img+curl: ${base[*]}; restore: ${rest[*]}; evacuation: ${evac[*]}"
cat "$work/backup-steps"
