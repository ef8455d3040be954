#!/bin/bash
# Images end to end: the tiny guest uploaded into the controller's catalog,
# a VM made from it (the node fetches the image by digest, builds an overlay
# and a NoCloud seed) whose user-data writes the page it serves over HTTP.
# Hostile images: a URL import whose server hands out tampered bytes is
# refused by the controller, and a catalog file altered on the controller's
# disk after import is refused by the node's fetch, the VM showing why,
# with no domain ever defined from it.
set -u
. "$(dirname "$0")/lib.sh"

e2e_need_root_tools
e2e_need_bins
command -v sha256sum >/dev/null || e2e_fail "sha256sum is missing"
t0=$SECONDS
e2e_build_guest >/dev/null
[ -s "$E2E_GUEST_IMAGE" ] || e2e_fail "no $E2E_GUEST_IMAGE after build"
raw_image=$E2E_GUEST_OUT/fog-tiny.img
[ -s "$raw_image" ] || e2e_fail "no $raw_image after build"

work=$(mktemp -d /tmp/fog-e2e-images.XXXXXX)
chmod 755 "$work"
e2e_cleanup_add "rm -rf '$work'"
mkdir -p "$work/empty-images"

e2e_world_up
# The URL import below serves from the world's private address, which is
# also the controller's own there: only naming it exactly opens it.
e2e_controller_start "$work" --heartbeat 1 --longpoll 5 --grace 0 --inspect=false \
    --import-allow "$E2E_WORLD_IP/32"
host=fog-e2e-img-$$
agent=$work/agent
# No local images on this node: every disk comes from the catalog.
e2e_node_up "$host" 10.214.0.21 node-i "$agent" --image-dir "$work/empty-images" --shutdown-timeout 5
uri=$E2E_URI
dump() {
    e2e_dump_node "$agent" "$uri" "$host"
    echo "--- controller log:"; tail -n 30 "$work/controller.log"
}
E2E_ON_FAIL=dump

E2E_KEY=$(e2e_tenant_create carol)
export E2E_KEY

# ---- upload into the catalog
sha=$(sha256sum "$E2E_GUEST_IMAGE" | cut -d' ' -f1)
e2e_fogctl image-import tinycat "$E2E_GUEST_IMAGE" >/dev/null || e2e_fail "image-import of the tiny guest failed"
info=$(e2e_fogctl image-info tinycat) || e2e_fail "image-info tinycat failed"
st=$(sed -n 's/^state: *//p' <<<"$info")
[ "$st" = ready ] || e2e_fail "uploaded image is '$st': $info"
grep -q "^sha256: *$sha\$" <<<"$info" || e2e_fail "catalog digest differs from the file's $sha: $info"
grep -q '^format: *qcow2$' <<<"$info" || e2e_fail "uploaded image is not recorded as qcow2: $info"

# ---- a VM from the catalog image; user-data writes the pages it serves
cat >"$work/ud-web" <<'EOF'
#cloud-config
write_files:
  - path: /www/index.html
    content: |
      catalog page from user-data
runcmd:
  - echo "runcmd ran on $(hostname)" > /www/run.txt
EOF
# An SSH key on the account goes into every new VM's seed.
pubkey="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g carol@e2e"
printf '%s\n' "$pubkey" >"$work/carol.pub"
e2e_fogctl key-add carol "$work/carol.pub" >/dev/null || e2e_fail "fogctl key-add failed"
e2e_fogctl create web --cpus 1 --memory 128M --disk 1G --image tinycat --allow-tcg \
    --user-data "$work/ud-web" >/dev/null || e2e_fail "fogctl create web failed"
e2e_wait_vm_state web running 90 || e2e_fail "VM web from the catalog image is not running"
ip=$(e2e_vm_address web)
[ -n "$ip" ] || e2e_fail "VM web has no address"
body=$(E2E_NETNS=$host e2e_wait_http "http://$ip/" 60) || e2e_fail "no HTTP answer from web at $ip"
[ "$body" = "catalog page from user-data" ] || e2e_fail "web answered '$body'"
body=$(E2E_NETNS=$host e2e_wait_http "http://$ip/run.txt" 20) || e2e_fail "runcmd's page never appeared"
[ "$body" = "runcmd ran on web" ] || e2e_fail "runcmd page is '$body'"
id=$(e2e_vm_id web)
# The seed the node wrote: the account's key, the hostname, an address.
seed=$agent/seeds/$id.iso
[ -f "$seed" ] || seed=$(find "$agent" -name "*$id*.iso" | head -n 1)
[ -f "$seed" ] || e2e_fail "no seed image for web under $agent"
mkdir -p "$work/seed-out"
for f in user-data meta-data network-config; do
    xorriso -osirrox on -indev "$seed" -extract "/$f" "$work/seed-out/$f" >/dev/null 2>&1 ||
        e2e_fail "the seed has no $f"
done
grep -qF "${pubkey% *}" "$work/seed-out/meta-data" || e2e_fail "the account's SSH key is not in the seed's meta-data"
grep -q '^public-keys:' "$work/seed-out/meta-data" || e2e_fail "meta-data has no public-keys"
cmp -s "$work/ud-web" "$work/seed-out/user-data" || e2e_fail "the seed's user-data is not the tenant's byte for byte"
grep -qE '^local-hostname: *["'\'']?web["'\'']?$' "$work/seed-out/meta-data" || e2e_fail "meta-data does not name the host web"
grep -qF "$ip" "$work/seed-out/network-config" || e2e_fail "network-config does not carry the address $ip"
# The node keeps the base by digest; the VM's disk is an overlay on it.
backing=$(qemu-img info -U --output=json "$agent/disks/$id.qcow2" 2>/dev/null |
    sed -n 's/.*"backing-filename": *"\([^"]*\)".*/\1/p' | head -n 1)
[ -n "$backing" ] || e2e_fail "the VM's disk is not an overlay"
[ "$(sha256sum "$backing" 2>/dev/null | cut -d' ' -f1)" = "$sha" ] ||
    e2e_fail "the overlay's base $backing is not the catalog image"
e2e_fogctl image-delete tinycat >/dev/null 2>&1 && e2e_fail "image-delete succeeded while a VM uses it"
e2e_log "catalog VM serves its user-data page ($((SECONDS - t0)) s)"

# ---- a URL import whose server serves tampered bytes
mkdir -p "$work/www"
cp "$raw_image" "$work/www/tiny.img"
raw_sha=$(sha256sum "$raw_image" | cut -d' ' -f1)
printf 'TAMPERED' | dd of="$work/www/tiny.img" bs=1 seek=1048576 conv=notrunc status=none
ip netns exec "$E2E_WORLD" busybox httpd -f -p "$E2E_WORLD_IP:8099" -h "$work/www" &
e2e_cleanup_add "kill $! 2>/dev/null"
for _ in 1 2 3 4 5 6 7 8 9 10; do
    ip netns exec "$E2E_WORLD" curl -fsS -o /dev/null "http://$E2E_WORLD_IP:8099/tiny.img" && break
    sleep 0.2
done
# (Through the API: fogctl's own --url is its global option.)
E2E_KEY='' e2e_api POST /v1/images -H 'Content-Type: application/json' \
    -d "{\"name\":\"byurl\",\"visibility\":\"public\",\"url\":\"http://$E2E_WORLD_IP:8099/tiny.img\",\"sha256\":\"$raw_sha\"}" \
    >"$work/byurl.out"
for _ in $(seq 100); do
    st=$(e2e_fogctl image-info byurl 2>/dev/null | sed -n 's/^state: *//p')
    [ "$st" = importing ] || [ "$st" = pending ] || break
    sleep 0.3
done
info=$(e2e_fogctl image-info byurl) || e2e_fail "image-info byurl failed; the import said: $(cat "$work/byurl.out")"
[ "$(sed -n 's/^state: *//p' <<<"$info")" = error ] || e2e_fail "tampered URL import is not in error: $info"
grep -qiE 'sha-?256|digest|mismatch' <<<"$info" || e2e_fail "tampered URL import does not say why: $info"

# ---- a catalog file altered after import: the node's fetch refuses it
e2e_fogctl image-import rawcat "$raw_image" >/dev/null || e2e_fail "image-import of the raw guest failed"
stored=
while IFS= read -r f; do
    [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$raw_sha" ] && { stored=$f; break; }
done < <(find "$work/ctl" -type f -size +1M)
[ -n "$stored" ] || e2e_fail "cannot find the stored file of image rawcat under $work/ctl"
printf 'TAMPERED' | dd of="$stored" bs=1 seek=1048576 conv=notrunc status=none
e2e_fogctl create bad --cpus 1 --memory 128M --disk 1G --image rawcat --allow-tcg >/dev/null ||
    e2e_fail "fogctl create bad failed"
e2e_wait_vm_state bad error 60 || e2e_fail "a VM on a tampered image is not in error"
reason=$(e2e_vm_field bad state_reason)
grep -qiE 'sha-?256|digest|mismatch' <<<"$reason" || e2e_fail "the VM's reason does not say why: '$reason'"
bad_id=$(e2e_vm_id bad)
virsh -c "$uri" dominfo "fog-$bad_id" >/dev/null 2>&1 && e2e_fail "a domain was defined on the tampered image"
[ -e "$agent/disks/$bad_id.qcow2" ] && e2e_fail "a disk was made on the tampered image"
while IFS= read -r f; do
    [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$raw_sha" ] && e2e_fail "the node cached $f under the original digest"
    cmp -s "$f" "$stored" && e2e_fail "the node kept the tampered bytes in $f"
done < <(find "$agent" -type f -size +1M ! -path "$agent/disks/*")
# The good VM was not disturbed.
[ "$(e2e_vm_field web state)" = running ] || e2e_fail "web is '$(e2e_vm_field web state)'"
e2e_log "tampered images refused: $reason"

# ---- undefine removes the overlay, the cached base stays for reuse
e2e_fogctl undefine web --remove-all-storage --wait --timeout 30 >/dev/null || e2e_fail "fogctl undefine web failed"
[ ! -e "$agent/disks/$id.qcow2" ] || e2e_fail "web's disk is still there"
[ -f "$backing" ] || e2e_fail "the cached base went with the VM"

echo "images e2e: pass ($((SECONDS - t0)) s)"
