#!/bin/bash
# A real distribution end to end: a Debian 12 cloud image built from Debian
# packages (tools/mkguest-debian.sh: systemd, cloud-init, openssh, nginx)
# imported into the catalog as debian-12, then launched through the API on
# a node with its own libvirtd and agent:
#   www  from the nginx template (a YAML cloud-config: write_files, runcmd
#        enabling nginx), its page read through the published port;
#   app  from the plain image with a MIME multipart user-data holding a
#        JSON-style cloud-config, a #! script and a gzip'ed cloud-config,
#        then shut down and started again on the same disk.
# Checked from outside the guests: SSH login as "debian" with the account's
# key, hostname, the VM's address, the node's resolver on the tenant
# gateway named by the seed and used by systemd-resolved (the VMs' own
# names, and another name forwarded to the node's upstream resolver),
# every user-data part applied, and per-instance work
# (runcmd) not run again at the second boot while per-boot work is.
# Boot and page times are printed as figures, not checked.
set -u
. "$(dirname "$0")/lib.sh"

e2e_need_root_tools
e2e_need_bins
for t in ssh ssh-keygen gzip base64 mmdebstrap dnsmasq; do
    command -v "$t" >/dev/null 2>&1 || e2e_fail "'$t' is not installed (make deps)"
done
t0=$SECONDS
image=$("$E2E_ROOT/tools/mkguest-debian.sh") || e2e_fail "tools/mkguest-debian.sh failed"
[ -s "$image" ] || e2e_fail "no Debian image at '$image'"
e2e_log "Debian image $image ready after $((SECONDS - t0)) s"

work=$(mktemp -d /tmp/fog-e2e-db.XXXXXX)
chmod 755 "$work"
e2e_cleanup_add "rm -rf '$work'"
mkdir -p "$work/empty-images"

e2e_world_up "db-world-$$"
# No --templates-dir: a controller run from a checkout finds images/templates.
e2e_controller_start "$work" --heartbeat 1 --longpoll 5 --grace 0 --inspect=false
node=db-node-$$
node_ip=10.214.0.41
agent=$work/agent
# The node's upstream resolver (its /etc/resolv.conf under `ip netns exec`)
# is a dnsmasq in the world that knows one name and answers NXDOMAIN for the
# rest (so the template's apt-get update fails fast as it would offline):
# the resolver on the tenant gateway forwards there, and no query leaves
# the test's namespaces.
upstream=192.0.2.53
mkdir -p "/etc/netns/$node" || e2e_fail "cannot make /etc/netns/$node"
e2e_cleanup_add "rm -rf '/etc/netns/$node'"
echo "nameserver $upstream" >"/etc/netns/$node/resolv.conf"
ip -n "$E2E_WORLD" addr add "$upstream/32" dev lo || e2e_fail "cannot hold $upstream in the world"
ip netns exec "$E2E_WORLD" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv \
    --no-hosts --bind-interfaces --user=root --pid-file="$work/dnsmasq.pid" \
    --address=/#/ --address=/db.fogfabric.test/10.214.0.77 --listen-address="$upstream" \
    >"$work/dnsmasq.log" 2>&1 &
e2e_cleanup_add "kill $! 2>/dev/null"
e2e_node_up "$node" "$node_ip" node-db "$agent" --image-dir "$work/empty-images" \
    --shutdown-timeout 120
uri=$E2E_URI
client=db-cli-$$
e2e_host_add "$client" 10.214.0.51
dump() {
    e2e_dump_node "$agent" "$uri" "$node"
    local f
    for f in "$agent"/console/*.log; do
        [ -f "$f" ] && { echo "--- console $f (errors):"; grep -aiE 'fail|error|warn' "$f" | tail -n 30; }
    done
    echo "--- controller log:"; tail -n 30 "$work/controller.log"
}
E2E_ON_FAIL=dump

# ---- the image into the catalog under the name the templates use
e2e_fogctl image-import debian-12 "$image" --public >/dev/null ||
    e2e_fail "image-import of the Debian image failed"
info=$(e2e_fogctl image-info debian-12) || e2e_fail "image-info debian-12 failed"
[ "$(sed -n 's/^state: *//p' <<<"$info")" = ready ] || e2e_fail "debian-12 is not ready: $info"

E2E_KEY=$(e2e_tenant_create dave)
export E2E_KEY
ssh-keygen -q -t ed25519 -N '' -C dave@db -f "$work/id" || e2e_fail "ssh-keygen failed"
e2e_fogctl key-add dave "$work/id.pub" >/dev/null || e2e_fail "fogctl key-add failed"

# SSH from the node's namespace as cloud-init's default user with the
# account's key; a fresh host key per VM, so none is remembered.
ssh_cmd=(ip netns exec "$node" ssh -n -i "$work/id" -o BatchMode=yes -o ConnectTimeout=5
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
    -o ServerAliveInterval=15)
vm_ssh() { # ip command...
    local ip=$1
    shift
    "${ssh_cmd[@]}" "debian@$ip" "$@"
}
# Waits up to TIMEOUT seconds until SSH logs in and cloud-init has finished
# this boot (`cloud-init status --wait`); prints cloud-init's status.
wait_ssh() { # ip timeout
    local deadline=$((SECONDS + $2)) out
    while ((SECONDS < deadline)); do
        vm_ssh "$1" true 2>/dev/null && break
        sleep 2
    done
    ((SECONDS < deadline)) || return 1
    out=$(timeout $((deadline - SECONDS)) "${ssh_cmd[@]}" "debian@$1" \
        cloud-init status --wait 2>/dev/null | tr -d .)
    grep -q '^status:' <<<"$out" || return 1
    printf '%s\n' "$out"
}

# ---- app: MIME multipart (JSON cloud-config, #! script, gzip'ed part)
gz_part=$(printf '%s\n' '#cloud-config' \
    '{"write_files": [{"path": "/srv/www/index.html", "content": "page from the gzip part\n"}]}' |
    gzip -9c | base64 -w 76)
cat >"$work/ud-app" <<EOF
Content-Type: multipart/mixed; boundary="==DBPART=="
MIME-Version: 1.0

--==DBPART==
Content-Type: text/cloud-config; charset="us-ascii"
MIME-Version: 1.0

#cloud-config
{"bootcmd": [["sh", "-c", "mkdir -p /var/lib/dbtest && date +%s >> /var/lib/dbtest/boots"]],
 "runcmd": [["sh", "-c", "echo once >> /var/lib/dbtest/runs"],
            ["sh", "-c", "busybox httpd -p 8080 -h /srv/www"]]}

--==DBPART==
Content-Type: text/x-shellscript; charset="us-ascii"
MIME-Version: 1.0

#!/bin/sh
mkdir -p /var/lib/dbtest
echo "script ran on \$(hostname)" >> /var/lib/dbtest/script

--==DBPART==
Content-Type: application/x-gzip
Content-Transfer-Encoding: base64
MIME-Version: 1.0

$gz_part

--==DBPART==--
EOF
t_app=$SECONDS
e2e_fogctl create app --cpus 1 --memory 1G --disk 4G --image debian-12 --allow-tcg \
    --user-data "$work/ud-app" --publish 8080/tcp --shutdown-timeout 120 >/dev/null ||
    e2e_fail "fogctl create app failed"

# The seed names the node's resolver on app's gateway.
id_app=$(e2e_vm_id app)
seed=
for _ in $(seq 300); do
    seed=$(find "$agent" -name "*$id_app*.iso" 2>/dev/null | head -n 1)
    [ -n "$seed" ] && break
    sleep 1
done
[ -f "$seed" ] || e2e_fail "no seed image for app under $agent"
xorriso -osirrox on -indev "$seed" -extract /network-config "$work/app-netcfg" >/dev/null 2>&1 ||
    e2e_fail "app's seed has no network-config"
# The network is dual-stack: the resolvers are the gateway's IPv4 and IPv6
# addresses (the routes' via: 0.0.0.0/0 first, then ::/0).
want=$(awk '/nameservers:/ {ns = 1; next} ns && /^ *- / {print $2; next} ns && /addresses:/ {next} {ns = 0}' \
    "$work/app-netcfg" | tr -d '"' | grep -E '^[0-9a-f.:]+$' | sort -u)
gw=$(awk '$1 == "via:" {print $2}' "$work/app-netcfg" | tr -d '"' | sort -u)
[ -n "$gw" ] && [ "$want" = "$gw" ] && [ "$(echo "$gw" | wc -l)" = 2 ] ||
    e2e_fail "the seed names resolvers '$want', not the gateway's two addresses '$gw': $(cat "$work/app-netcfg")"

# ---- www: the nginx template on the same image
t_www=$SECONDS
e2e_fogctl create www --template nginx --allow-tcg >/dev/null ||
    e2e_fail "fogctl create www --template nginx failed"

for v in app www; do
    e2e_wait_vm_state "$v" running 300 || e2e_fail "$v is not running"
done
app_ip=$(e2e_vm_address app)
www_ip=$(e2e_vm_address www)
[ -n "$app_ip" ] && [ -n "$www_ip" ] || e2e_fail "addresses app='$app_ip' www='$www_ip'"
e2e_fogctl --json dominfo www | grep -qE '"template": *"nginx"' ||
    e2e_fail "www is not recorded as the nginx template: $(e2e_fogctl --json dominfo www)"
[ "$(e2e_vm_field www image)" = debian-12 ] || e2e_fail "www's image is '$(e2e_vm_field www image)'"

# The published page of the template, from a client on the world.
www_port=$(e2e_vm_field www ports | grep -oE '[0-9]+->80/tcp' | cut -d- -f1)
[ -n "$www_port" ] || e2e_fail "www publishes no port 80: '$(e2e_vm_field www ports)'"
page=$(E2E_NETNS=$client e2e_wait_http "http://$node_ip:$www_port/" 1500) ||
    e2e_fail "the nginx template's page never answered on $node_ip:$www_port"
grep -q '<h1>nginx on fogfabric</h1>' <<<"$page" || e2e_fail "www served '$page'"
e2e_log "figure: www (nginx template) page through the published port $((SECONDS - t_www)) s after create"

st=$(wait_ssh "$app_ip" 1500) || e2e_fail "no SSH login to app at $app_ip as debian with the account's key"
e2e_log "figure: app SSH login and cloud-init final stage $((SECONDS - t_app)) s after create"
grep -q 'status: done' <<<"$st" || e2e_fail "cloud-init on app did not finish cleanly: $st"
app_port=$(e2e_vm_field app ports | grep -oE '[0-9]+->8080/tcp' | cut -d- -f1)
[ -n "$app_port" ] || e2e_fail "app publishes no port 8080: '$(e2e_vm_field app ports)'"
page=$(E2E_NETNS=$client e2e_wait_http "http://$node_ip:$app_port/" 60) ||
    e2e_fail "app's published port $node_ip:$app_port does not answer"
[ "$page" = "page from the gzip part" ] || e2e_fail "app's page (from the gzip'ed part) is '$page'"

# Hostname, address, the account's key and the parts, seen from inside.
[ "$(vm_ssh "$app_ip" hostname)" = app ] || e2e_fail "app's hostname is '$(vm_ssh "$app_ip" hostname)'"
vm_ssh "$app_ip" ip -4 -o addr show | grep -qF " $app_ip/" || e2e_fail "app does not hold $app_ip"
[ "$(vm_ssh "$app_ip" cat /var/lib/dbtest/script)" = "script ran on app" ] ||
    e2e_fail "the #! part did not run: '$(vm_ssh "$app_ip" cat /var/lib/dbtest/script 2>&1)'"
[ "$(vm_ssh "$app_ip" cat /var/lib/dbtest/runs)" = once ] ||
    e2e_fail "the JSON part's runcmd did not run once: '$(vm_ssh "$app_ip" cat /var/lib/dbtest/runs 2>&1)'"
[ "$(vm_ssh "$www_ip" hostname)" = www ] || e2e_fail "www's hostname is '$(vm_ssh "$www_ip" hostname 2>&1)'"

# Resolvers: the seed's (the node's resolver on the gateway) are what
# systemd-resolved uses; it answers the tenant's VM names and forwards a
# name only the node's upstream knows.
got=$(vm_ssh "$app_ip" cat /run/systemd/resolve/resolv.conf | awk '$1 == "nameserver" {print $2}' | sort -u)
[ "$got" = "$want" ] || e2e_fail "app resolves through '$got', the seed names '$want'"
# (ssh joins its arguments into one remote command line: quote as one.)
vm_ssh "$app_ip" "grep -q '^nameserver 127.0.0.53' /etc/resolv.conf" ||
    e2e_fail "app's /etc/resolv.conf is not systemd-resolved's stub"
res=$(vm_ssh "$app_ip" getent ahostsv4 db.fogfabric.test)
[ "$(awk 'NR == 1 {print $1}' <<<"$res")" = 10.214.0.77 ] ||
    e2e_fail "app resolved db.fogfabric.test to '$res' through $(echo $got)"
for pair in "app.dave.internal $app_ip" "www.dave.internal $www_ip"; do
    set -- $pair
    res=$(vm_ssh "$app_ip" getent ahostsv4 "$1")
    [ "$(awk 'NR == 1 {print $1}' <<<"$res")" = "$2" ] ||
        e2e_fail "app resolved $1 to '$res', want $2, through $(echo $got)"
done
e2e_log "app: hostname, address $app_ip, key login, all user-data parts, names resolved through $(echo $got)"

# ---- shutdown, then start on the same disk: per-instance work runs once
boots1=$(vm_ssh "$app_ip" wc -l /var/lib/dbtest/boots | cut -d' ' -f1)
[ "$boots1" = 1 ] || e2e_fail "app counted $boots1 boots before its restart"
vm_ssh "$app_ip" 'echo survivor | sudo tee /root/kept >/dev/null' || e2e_fail "sudo on app failed"
t_stop=$SECONDS
e2e_fogctl shutdown app >/dev/null || e2e_fail "fogctl shutdown app failed"
e2e_wait_vm_state app stopped 300 || e2e_fail "app did not stop"
e2e_log "figure: app shut down in $((SECONDS - t_stop)) s"
t_start=$SECONDS
e2e_fogctl start app >/dev/null || e2e_fail "fogctl start app failed"
e2e_wait_vm_state app running 300 || e2e_fail "app is not running again"
[ "$(e2e_vm_address app)" = "$app_ip" ] || e2e_fail "app's address moved from $app_ip to $(e2e_vm_address app)"
st=$(wait_ssh "$app_ip" 900) || e2e_fail "no SSH login to app after its start"
grep -q 'status: done' <<<"$st" || e2e_fail "cloud-init on app's second boot: $st"
boots2=$(vm_ssh "$app_ip" wc -l /var/lib/dbtest/boots | cut -d' ' -f1)
[ "$boots2" = 2 ] || e2e_fail "app did not boot a second time on its disk (boots: '$boots2')"
e2e_log "figure: app SSH login after start $((SECONDS - t_start)) s"
[ "$(vm_ssh "$app_ip" sudo cat /root/kept)" = survivor ] || e2e_fail "app's disk lost a file over the restart"
[ "$(vm_ssh "$app_ip" cat /var/lib/dbtest/runs)" = once ] ||
    e2e_fail "runcmd ran again at the second boot: '$(vm_ssh "$app_ip" cat /var/lib/dbtest/runs 2>&1)'"
[ "$(vm_ssh "$app_ip" cat /var/lib/dbtest/script)" = "script ran on app" ] ||
    e2e_fail "the #! part ran again at the second boot"
e2e_log "app: restarted on the same disk, per-instance work ran once, per-boot work twice"

for v in www app; do
    e2e_fogctl undefine "$v" --remove-all-storage --wait --timeout 120 >/dev/null ||
        e2e_fail "fogctl undefine $v failed"
done
echo "debian guest e2e: pass ($((SECONDS - t0)) s)"
