# Shared helpers of the end-to-end tests (bash): skipping when the machine
# lacks QEMU/libvirt, a private libvirtd started and stopped by the test,
# host bridges and network namespaces for test guests, NoCloud seed ISOs
# for the tiny guest, and cleanup traps. Source it from
# tests/e2e/test_<name>.sh; exit 0 = pass, 77 = skip (the last line says
# why), anything else = fail.

E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_GUEST_DIR=$E2E_ROOT/tests/guest
# Where tests/guest/build.sh puts the tiny guest (FOG_GUEST_DIR overrides).
E2E_GUEST_OUT=${FOG_GUEST_DIR:-$E2E_ROOT/build/guest}
E2E_GUEST_IMAGE=$E2E_GUEST_OUT/fog-tiny.qcow2
# Set by e2e_start_libvirtd to the private instance's URI; also exported as
# LIBVIRT_DEFAULT_URI so that a bare `virsh` talks to it.
E2E_URI=
E2E_LIBVIRT_DIR=
E2E_CLEANUPS=()

e2e_log() { echo "e2e: $*" >&2; }

# Ends the test as failed with a message. When E2E_ON_FAIL names a command
# (e.g. one printing a guest's serial console), it runs first, so the FAIL
# line stays last in the log.
E2E_ON_FAIL=
e2e_fail() {
    if [ -n "$E2E_ON_FAIL" ]; then
        local hook=$E2E_ON_FAIL
        E2E_ON_FAIL=
        eval "$hook" >&2 || true
    fi
    echo "FAIL: $*" >&2
    exit 1
}

# Ends the test as skipped; the reason is the last line printed.
e2e_skip() {
    echo "SKIP: $*"
    exit 77
}

# Registers a shell command to run at exit; they run last-registered first.
e2e_cleanup_add() {
    E2E_CLEANUPS+=("$1")
}

e2e__run_cleanups() {
    local rc=$? i
    trap - EXIT INT TERM
    for ((i = ${#E2E_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${E2E_CLEANUPS[$i]}" || true
    done
    exit "$rc"
}
trap e2e__run_cleanups EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Skips (exit 77) unless this is root with QEMU, libvirtd and /dev/net/tun;
# fails when another tool the project declares (tools/deps.sh) is missing.
e2e_need_root_tools() {
    local t
    [ "$(id -u)" = 0 ] || e2e_skip "needs root to run libvirtd and bridges"
    for t in qemu-system-x86_64 libvirtd; do
        command -v "$t" >/dev/null 2>&1 || e2e_skip "'$t' is not installed"
    done
    [ -e /dev/net/tun ] || e2e_skip "no /dev/net/tun for guest NICs"
    for t in qemu-img virsh ip curl xorriso unshare; do
        command -v "$t" >/dev/null 2>&1 || e2e_fail "'$t' is not installed (make deps)"
    done
}

# Starts a private libvirtd for this test and sets E2E_URI to it:
# "qemu:///system?socket=DIR/run/libvirt-sock". It runs in its own mount
# namespace where /etc/libvirt, /run/libvirt, /var/lib/libvirt and
# /var/log/libvirt are fresh directories under DIR, so it shares no state
# with the host's libvirtd (running or not) nor with other tests, and
# changes nothing on the host. QEMU runs as root with its stdio logged to
# files (no virtlogd). At exit its domains are destroyed and it is stopped.
e2e_start_libvirtd() {
    local d i
    d=$(mktemp -d /tmp/fog-e2e-libvirt.XXXXXX) || e2e_fail "mktemp failed"
    chmod 755 "$d"
    E2E_LIBVIRT_DIR=$d
    E2E_URI="qemu:///system?socket=$d/run/libvirt-sock"
    export LIBVIRT_DEFAULT_URI=$E2E_URI
    e2e_cleanup_add "e2e__stop_libvirtd '$d'"
    mkdir -p "$d/etc" "$d/run" "$d/lib" "$d/log"
    printf '%s\n' 'unix_sock_rw_perms = "0700"' 'auth_unix_rw = "none"' \
        'auth_unix_ro = "none"' "log_outputs = \"3:file:$d/libvirtd.log\"" \
        >"$d/etc/libvirtd.conf"
    printf '%s\n' 'user = "root"' 'group = "root"' 'dynamic_ownership = 0' \
        'remember_owner = 0' 'security_driver = "none"' 'namespaces = []' \
        'stdio_handler = "file"' >"$d/etc/qemu.conf"
    # The QEMU driver looks up its built-in default user and group
    # (libvirt-qemu) before it reads qemu.conf: the namespace gets a passwd
    # and group holding them when the host has none.
    cp /etc/passwd "$d/passwd" && cp /etc/group "$d/group" ||
        e2e_fail "cannot copy passwd/group"
    getent group libvirt-qemu >/dev/null || echo "libvirt-qemu:x:64055:" >>"$d/group"
    getent group kvm >/dev/null || echo "kvm:x:64056:" >>"$d/group"
    getent passwd libvirt-qemu >/dev/null ||
        echo "libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin" >>"$d/passwd"
    mkdir -p /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt ||
        e2e_fail "cannot create libvirt mount points"
    # shellcheck disable=SC2016
    unshare --mount --propagation slave -- sh -c '
        set -e
        d=$1
        [ -n "$d" ] && [ -d "$d/etc" ]
        mount --bind "$d/etc" /etc/libvirt
        mount --bind "$d/run" /run/libvirt
        mount --bind "$d/lib" /var/lib/libvirt
        mount --bind "$d/log" /var/log/libvirt
        mount --bind "$d/passwd" /etc/passwd
        mount --bind "$d/group" /etc/group
        exec libvirtd -d -p "$d/libvirtd.pid"' sh "$d" ||
        e2e_fail "private libvirtd did not start (see $d/libvirtd.log)"
    for ((i = 0; i < 100; i++)); do
        timeout 10 virsh -c "$E2E_URI" version >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    tail -n 20 "$d/libvirtd.log" >&2 2>/dev/null
    e2e_fail "private libvirtd does not answer on $E2E_URI"
}

# Destroys the domains of the private libvirtd in DIR, stops it, removes DIR.
e2e__stop_libvirtd() { # dir
    local d=$1 uri pid dom i
    uri="qemu:///system?socket=$d/run/libvirt-sock"
    pid=$(cat "$d/libvirtd.pid" 2>/dev/null) || pid=
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        for dom in $(timeout 10 virsh -c "$uri" list --name 2>/dev/null); do
            timeout 10 virsh -c "$uri" destroy "$dom" >/dev/null 2>&1
        done
        kill "$pid" 2>/dev/null
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null
    fi
    [ -n "$d" ] && rm -rf "$d"
}

# Creates bridge NAME (at most 15 characters, starting with "fog") with
# address CIDR (e.g. 10.213.7.1/24), up, no uplink; removed at exit. A
# bridge of the same name, or a "fog*" bridge left holding the same
# address by a killed run, is removed first.
e2e_bridge_up() {
    local name=$1 cidr=$2 other
    if ip link show "$name" >/dev/null 2>&1; then
        ip link del "$name" || e2e_fail "cannot remove stale bridge $name"
    fi
    for other in $(ip -o addr show to "${cidr%/*}" | awk '{print $2}'); do
        case "$other" in
        fog*) [ -d "/sys/class/net/$other/bridge" ] && ip link del "$other" ;;
        esac
        ip link show "$other" >/dev/null 2>&1 &&
            e2e_fail "address ${cidr%/*} is already on $other"
    done
    ip link add "$name" type bridge || e2e_fail "cannot create bridge $name"
    e2e_cleanup_add "e2e_bridge_down $name"
    ip link set "$name" type bridge stp_state 0 forward_delay 0 2>/dev/null || true
    ip addr add "$cidr" dev "$name" || e2e_fail "cannot add $cidr to $name"
    ip link set "$name" up || e2e_fail "cannot bring $name up"
}

# Removes bridge NAME if present.
e2e_bridge_down() {
    ip link del "$1" 2>/dev/null || true
}

# Creates network namespace NAME with loopback up; removed at exit.
e2e_netns_up() {
    ip netns del "$1" 2>/dev/null
    ip netns add "$1" || e2e_fail "cannot create netns $1"
    e2e_cleanup_add "ip netns del '$1' 2>/dev/null"
    ip -n "$1" link set lo up || e2e_fail "cannot bring lo up in $1"
}

# Plugs namespace NETNS into BRIDGE with a veth pair: the namespace end is
# eth0 with address CIDR, the host end HOSTIF (at most 15 characters) is a
# port of the bridge. Both go away with the namespace.
e2e_netns_to_bridge() { # netns bridge hostif cidr
    local ns=$1 br=$2 hif=$3 cidr=$4
    ip link del "$hif" 2>/dev/null
    ip link add "$hif" type veth peer name eth0 netns "$ns" ||
        e2e_fail "cannot create veth $hif"
    ip link set "$hif" master "$br" || e2e_fail "cannot plug $hif into $br"
    ip link set "$hif" up || e2e_fail "cannot bring $hif up"
    ip -n "$ns" addr add "$cidr" dev eth0 || e2e_fail "cannot add $cidr in $ns"
    ip -n "$ns" link set eth0 up || e2e_fail "cannot bring eth0 up in $ns"
}

# Polls URL until it answers 2xx within TIMEOUT seconds (default 60); prints
# the body. Returns 1 on timeout. With E2E_NETNS set, curl runs inside
# that namespace.
e2e_wait_http() {
    local url=$1 timeout=${2:-60} deadline body pre=()
    [ -n "${E2E_NETNS:-}" ] && pre=(ip netns exec "$E2E_NETNS")
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
        if body=$("${pre[@]}" curl -fsS --noproxy '*' --connect-timeout 0.5 -m 3 "$url" 2>/dev/null); then
            printf '%s\n' "$body"
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# Sends PAYLOAD to HOST:PORT over UDP and prints the reply (2 s per try,
# TRIES tries, default 5). Returns 1 without a reply. bash's /dev/udp is a
# connected socket, so only the peer's datagrams are read.
e2e_udp_echo() { # host port payload [tries]
    local host=$1 port=$2 payload=$3 tries=${4:-5} i reply
    for ((i = 0; i < tries; i++)); do
        # One dd block is one recv(): exactly one datagram.
        reply=$(
            exec 3<>"/dev/udp/$host/$port" || exit 1
            printf '%s' "$payload" >&3 || exit 1
            timeout 2 dd bs=65536 count=1 status=none <&3 2>/dev/null
        )
        if [ -n "$reply" ]; then
            printf '%s\n' "$reply"
            return 0
        fi
    done
    return 1
}

# Builds the tiny guest (cached; a no-op when its inputs did not change)
# and prints the path of its qcow2 disk image.
e2e_build_guest() {
    FOG_GUEST_DIR=$E2E_GUEST_OUT sh "$E2E_GUEST_DIR/build.sh" ||
        e2e_fail "tests/guest/build.sh failed"
}

# Makes a NoCloud seed ISO (volume label cidata) at OUT from a directory
# holding meta-data, user-data and network-config (missing ones are empty,
# except network-config which is left out when absent).
e2e_make_seed() { # out dir
    local out=$1 dir=$2 files=()
    [ -f "$dir/meta-data" ] || : >"$dir/meta-data"
    [ -f "$dir/user-data" ] || : >"$dir/user-data"
    files=("$dir/meta-data" "$dir/user-data")
    [ -f "$dir/network-config" ] && files+=("$dir/network-config")
    xorriso -as mkisofs -quiet -V cidata -J -r -o "$out" "${files[@]}" >/dev/null 2>&1 ||
        e2e_fail "xorriso could not write seed $out"
}

# Defines and starts a QEMU/TCG domain NAME from the guest: the seed as a
# second virtio disk (vdb), one virtio NIC on BRIDGE with MAC, serial
# console logged to SERIAL. WORKDIR holds the files. E2E_GUEST_BOOT picks
# how it boots: "disk" (default; a qcow2 overlay on fog-tiny.qcow2, booted
# by SeaBIOS + syslinux) or "kernel" (vmlinuz + initrd.gz + cmdline given
# to QEMU, no boot disk). Destroyed and undefined at exit.
e2e_guest_start() { # name workdir seed bridge mac serial [memory_mib]
    local name=$1 dir=$2 seed=$3 bridge=$4 mac=$5 serial=$6 mem=${7:-256}
    local os boot_disk=
    case "${E2E_GUEST_BOOT:-disk}" in
    disk)
        qemu-img create -q -f qcow2 -F qcow2 -b "$E2E_GUEST_IMAGE" "$dir/$name.qcow2" ||
            e2e_fail "cannot create overlay"
        os="<type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/>"
        boot_disk="<disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$dir/$name.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>"
        ;;
    kernel)
        os="<type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$E2E_GUEST_OUT/vmlinuz</kernel>
    <initrd>$E2E_GUEST_OUT/initrd.gz</initrd>
    <cmdline>$(cat "$E2E_GUEST_OUT/cmdline")</cmdline>"
        ;;
    *) e2e_fail "E2E_GUEST_BOOT must be disk or kernel" ;;
    esac
    cat >"$dir/$name.xml" <<EOF
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>$mem</memory>
  <vcpu>1</vcpu>
  <os>
    $os
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <controller type='usb' model='none'/>
    $boot_disk
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$seed'/>
      <target dev='vdb' bus='virtio'/>
      <readonly/>
    </disk>
    <interface type='bridge'>
      <source bridge='$bridge'/>
      <mac address='$mac'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
    <serial type='file'>
      <source path='$serial'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
    e2e_cleanup_add "e2e_guest_remove $name"
    virsh -c "$E2E_URI" define "$dir/$name.xml" >/dev/null || e2e_fail "virsh define $name failed"
    virsh -c "$E2E_URI" start "$name" >/dev/null || e2e_fail "virsh start $name failed"
}

# Destroys and undefines domain NAME if it exists.
e2e_guest_remove() {
    virsh -c "$E2E_URI" destroy "$1" >/dev/null 2>&1 || true
    virsh -c "$E2E_URI" undefine "$1" >/dev/null 2>&1 || true
}

# Waits up to TIMEOUT seconds for a line containing TEXT in FILE (a guest's
# serial log). Returns 1 on timeout.
e2e_wait_console() { # file text timeout
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Prints the state of domain NAME ("running", "shut off", ...).
e2e_domstate() {
    virsh -c "$E2E_URI" domstate "$1" 2>/dev/null | head -n 1
}

# Waits up to TIMEOUT seconds for domain NAME to reach STATE.
e2e_wait_domstate() { # name state timeout
    local deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        [ "$(e2e_domstate "$1")" = "$2" ] && return 0
        sleep 0.2
    done
    return 1
}
