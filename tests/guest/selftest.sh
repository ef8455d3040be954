#!/bin/sh
# Checks the test guest's seed parsers (netconf.awk, cloudconfig.awk) on the
# host with busybox awk, the same awk the guest runs. Exit 0 = pass.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
AWK="busybox awk"

check() { # name got want
    if [ "$2" = "$3" ]; then
        echo "ok   $1"
    else
        echo "FAIL $1"; echo "  got:  $2"; echo "  want: $3"
        fails=$((fails + 1))
    fi
}

# ---- network-config
cat >"$tmp/n1" <<'EOF'
version: 2
ethernets:
  eth0:
    match: {macaddress: "52:54:00:12:34:56"}
    addresses: [10.1.0.5/24]
    gateway4: 10.1.0.1
    mtu: 1370
EOF
check "netconf flow style" "$($AWK -f "$here/netconf.awk" "$tmp/n1")" \
    "eth0|52:54:00:12:34:56|10.1.0.5/24|10.1.0.1|1370|||"

cat >"$tmp/n2" <<'EOF'
network:
  version: 2
  ethernets:
    id0:
      match:
        macaddress: '52:54:00:aa:bb:cc'   # the NIC
      set-name: eth0
      addresses:
        - 10.2.0.5/24
        - "10.2.0.6/24"
      routes:
        - to: default
          via: 10.2.0.1
      nameservers:
        addresses: [1.1.1.1, 9.9.9.9]
    eth1:
      dhcp4: true
EOF
check "netconf block style, routes, two NICs" "$($AWK -f "$here/netconf.awk" "$tmp/n2")" \
    "id0|52:54:00:aa:bb:cc|10.2.0.5/24,10.2.0.6/24|10.2.0.1|||1.1.1.1,9.9.9.9|
eth1|||||true||"

printf 'version: 2\nethernets:\n  eth0: {}\n' >"$tmp/n3"
check "netconf bare NIC" "$($AWK -f "$here/netconf.awk" "$tmp/n3")" "eth0|||||||"

# Dual stack as the node's seed writes it: both families' addresses, a
# default route each (the family is the gateway's), both resolvers.
cat >"$tmp/n4" <<'EOF'
version: 2
ethernets:
  eth0:
    match:
      macaddress: "52:54:00:12:34:56"
    set-name: eth0
    addresses:
      - 10.1.0.5/24
      - "fd12:3456:789a:1::5/64"
    mtu: 1370
    routes:
      - to: 0.0.0.0/0
        via: 10.1.0.1
      - to: "::/0"
        via: "fd12:3456:789a:1::1"
    nameservers:
      addresses:
        - 10.1.0.1
        - "fd12:3456:789a:1::1"
EOF
check "netconf dual stack" "$($AWK -f "$here/netconf.awk" "$tmp/n4")" \
    "eth0|52:54:00:12:34:56|10.1.0.5/24,fd12:3456:789a:1::5/64|10.1.0.1|1370||10.1.0.1,fd12:3456:789a:1::1|fd12:3456:789a:1::1"

# gateway6 (deprecated netplan key), "default" via either family, flow
# routes; a route whose prefix and gateway families differ sets nothing.
cat >"$tmp/n5" <<'EOF'
version: 2
ethernets:
  eth0:
    addresses: ["fd00::7/64", 10.3.0.7/24]
    gateway6: "fd00::1"
  eth1:
    routes:
      - {to: default, via: "fd00:1::1"}
      - {to: default, via: 10.4.0.1}
  eth2:
    routes:
      - {to: ::/0, via: 10.5.0.1}
      - {to: 0.0.0.0/0, via: "fd00:2::1"}
EOF
check "netconf gateway6 and mixed routes" "$($AWK -f "$here/netconf.awk" "$tmp/n5")" \
    "eth0||fd00::7/64,10.3.0.7/24|||||fd00::1
eth1|||10.4.0.1||||fd00:1::1
eth2|||||||"

# ---- cloud-config
cat >"$tmp/ud" <<'EOF'
#cloud-config
hostname: web1
write_files:
- path: ROOT/www/index.html
  content: |
    hello-from-user-data
    it's "quoted"
  permissions: '0600'
-   path: ROOT/a/b.txt
    content: "line1\nline2"
- content: aGVsbG8K
  encoding: b64
  path: ROOT/c.txt
runcmd:
  - echo one
  - [ sh, -c, "echo two; echo 'x, y'" ]
  - "echo three"
  - |
    echo four
    echo five
bootcmd:
  - echo ignored
EOF
sed -i "s#ROOT#$tmp/root#" "$tmp/ud"
mkdir -p "$tmp/out" "$tmp/root"
$AWK -v out="$tmp/out" -f "$here/cloudconfig.awk" "$tmp/ud"
sh "$tmp/out/write_files.sh"
check "write_files block" "$(cat "$tmp/root/www/index.html")" "hello-from-user-data
it's \"quoted\""
check "write_files permissions" "$(stat -c %a "$tmp/root/www/index.html")" "600"
check "write_files double-quoted escapes" "$(cat "$tmp/root/a/b.txt")" "line1
line2"
check "write_files b64" "$(cat "$tmp/root/c.txt")" "hello"
check "runcmd" "$(sh "$tmp/out/runcmd.sh")" "one
two
x, y
three
four
five"
check "hostname" "$(cat "$tmp/out/hostname")" "web1"

printf '#cloud-config\nruncmd: [ "sleep 0", "echo done" ]\n' >"$tmp/ud2"
rm -rf "$tmp/out2"; mkdir -p "$tmp/out2"
$AWK -v out="$tmp/out2" -f "$here/cloudconfig.awk" "$tmp/ud2"
check "runcmd flow list" "$(sh "$tmp/out2/runcmd.sh")" "done"

printf '#cloud-config\nwrite_files: []\n' >"$tmp/ud3"
rm -rf "$tmp/out3"; mkdir -p "$tmp/out3"
$AWK -v out="$tmp/out3" -f "$here/cloudconfig.awk" "$tmp/ud3"
check "no runcmd, no script" "$([ -e "$tmp/out3/runcmd.sh" ] && echo present || echo absent)" "absent"

[ "$fails" -eq 0 ] || { echo "selftest: $fails failed"; exit 1; }
echo "selftest: all passed"
