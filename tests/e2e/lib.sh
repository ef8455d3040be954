# Shared helpers of the end-to-end tests (bash): skipping when the machine
# lacks QEMU/libvirt, a private libvirtd started and stopped by the test,
# host bridges and network namespaces for test guests, NoCloud seed ISOs
# for the tiny guest, cleanup traps, and (second half) fogfabric's own
# controller, agents and fogctl in namespace "hosts". Source it from
# tests/e2e/test_<name>.sh (tools/demo.sh uses it too); exit 0 = pass,
# 77 = skip (the last line says why), anything else = fail.

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
# line stays last in the log. E2E_HOLD_ON_FAIL=SECONDS waits that long
# before the cleanups, to look at the namespaces and daemons by hand.
E2E_ON_FAIL=
e2e_fail() {
    if [ -n "$E2E_ON_FAIL" ]; then
        local hook=$E2E_ON_FAIL
        E2E_ON_FAIL=
        eval "$hook" >&2 || true
    fi
    echo "FAIL: $*" >&2
    # For a look inside before the cleanups run.
    if [ -n "${E2E_HOLD_ON_FAIL:-}" ]; then
        e2e_log "holding for ${E2E_HOLD_ON_FAIL} s (E2E_HOLD_ON_FAIL)"
        sleep "$E2E_HOLD_ON_FAIL"
        echo "FAIL: $*" >&2
    fi
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
    e2e__libvirtd_exec "$d"
}

# Starts the private libvirtd of DIR (made by e2e_start_libvirtd) and
# waits until it answers.
e2e__libvirtd_exec() { # dir
    local d=$1 uri i
    uri="qemu:///system?socket=$d/run/libvirt-sock"
    # E2E_LIBVIRTD_PREFIX (e.g. "ip netns exec NS", see
    # e2e_start_libvirtd_in) runs it inside another network namespace.
    # shellcheck disable=SC2016,SC2086
    ${E2E_LIBVIRTD_PREFIX:-} unshare --mount --propagation slave -- sh -c '
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
        timeout 10 virsh -c "$uri" version >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    tail -n 20 "$d/libvirtd.log" >&2 2>/dev/null
    e2e_fail "private libvirtd does not answer on $uri"
}

# A host's power loss: kills (SIGKILL) the private libvirtd of DIR and
# every QEMU it ran, as a power cut would; the domains stay defined.
e2e_libvirtd_power_off() { # dir
    local d=$1 pid f
    pid=$(cat "$d/libvirtd.pid" 2>/dev/null) && kill -9 "$pid" 2>/dev/null
    for f in "$d"/run/qemu/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null) && kill -9 "$pid" 2>/dev/null
    done
    return 0
}

# The host of e2e_libvirtd_power_off boots again: the private libvirtd of
# DIR starts in namespace NS with its /run emptied as a boot leaves it, so
# it runs its boot-time work again (autostart of domains marked so).
e2e_libvirtd_boot() { # ns dir
    local saved=${E2E_LIBVIRTD_PREFIX:-}
    find "$2/run" -mindepth 1 -delete 2>/dev/null
    E2E_LIBVIRTD_PREFIX="ip netns exec $1"
    e2e__libvirtd_exec "$2"
    E2E_LIBVIRTD_PREFIX=$saved
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
# connected socket, so only the peer's datagrams are read. With E2E_NETNS
# set, it is sent from inside that namespace.
e2e_udp_echo() { # host port payload [tries]
    local host=$1 port=$2 payload=$3 tries=${4:-5} i reply pre=()
    [ -n "${E2E_NETNS:-}" ] && pre=(ip netns exec "$E2E_NETNS")
    for ((i = 0; i < tries; i++)); do
        # One dd block is one recv(): exactly one datagram.
        # shellcheck disable=SC2016
        reply=$("${pre[@]}" bash -c '
            exec 3<>"/dev/udp/$1/$2" || exit 1
            printf "%s" "$3" >&3 || exit 1
            timeout 2 dd bs=65536 count=1 status=none <&3 2>/dev/null' sh "$host" "$port" "$payload")
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

# ------------------------------------------------------------------------
# fogfabric's own daemons in test "hosts" made of network namespaces.
#
# Topology: e2e_world_up makes the "world" namespace, holding bridge br0
# (E2E_WORLD_IP, 10.214.0.1/24) that stands for the internet between
# hosts; the controller runs there (e2e_controller_start) and fogctl talks
# to it from there (e2e_fogctl). e2e_host_add makes a namespace per
# provider host with eth0 on br0; its libvirtd, agent and guests live in it,
# so bridges, WireGuard interfaces and nftables rules the agent creates
# touch neither the machine nor other tests.

# Where the binaries are (make builds them there; FOG_BIN overrides).
E2E_BIN=${FOG_BIN:-$E2E_ROOT/bin}
E2E_WORLD=
E2E_WORLD_IP=10.214.0.1
E2E_CTL_URL=
E2E_CTL_CA=
E2E_CTL_DIR=
E2E_CTL_PID=
E2E_ADMIN_KEY=
E2E_AGENT_PID=

# Fails unless fog-controller, fog-nodeagent and fogctl are built.
e2e_need_bins() {
    local b
    for b in fog-controller fog-nodeagent fogctl; do
        [ -x "$E2E_BIN/$b" ] || e2e_fail "$E2E_BIN/$b is missing (make first)"
    done
}

# Runs a command in namespace NS (plain when NS is empty).
e2e_in() { # ns command...
    local ns=$1
    shift
    if [ -n "$ns" ]; then
        ip netns exec "$ns" "$@"
    else
        "$@"
    fi
}

# Makes the world namespace (default name fog-e2e-world-PID) with bridge
# br0 holding E2E_WORLD_IP/24.
e2e_world_up() { # [ns-name]
    E2E_WORLD=${1:-fog-e2e-world-$$}
    e2e_netns_up "$E2E_WORLD"
    ip -n "$E2E_WORLD" link add br0 type bridge || e2e_fail "cannot create br0"
    # A bridge without an address of its own takes its lowest port's, so
    # a host plugged in later could change it under the neighbours cached
    # by hosts already there (frames to the old one go out that port).
    ip -n "$E2E_WORLD" link set br0 address 02:00:5e:10:00:01 ||
        e2e_fail "cannot set the address of br0"
    ip -n "$E2E_WORLD" link set br0 type bridge stp_state 0 forward_delay 0 2>/dev/null
    ip -n "$E2E_WORLD" addr add "$E2E_WORLD_IP/24" dev br0 || e2e_fail "cannot address br0"
    ip -n "$E2E_WORLD" link set br0 up || e2e_fail "cannot bring br0 up"
}

# Makes host namespace NS with eth0 = IP/24 on the world's br0 and a
# default route through the world. NS is removed at exit.
e2e_host_add() { # ns ip
    local ns=$1 ip=$2 peer
    [ -n "$E2E_WORLD" ] || e2e_fail "e2e_host_add before e2e_world_up"
    e2e_netns_up "$ns"
    peer=h${ip##*.}
    ip link add eth0 netns "$ns" type veth peer name "$peer" netns "$E2E_WORLD" ||
        e2e_fail "cannot create veth for $ns"
    ip -n "$E2E_WORLD" link set "$peer" master br0 up || e2e_fail "cannot plug $ns into br0"
    ip -n "$ns" addr add "$ip/24" dev eth0 || e2e_fail "cannot address eth0 in $ns"
    ip -n "$ns" link set eth0 up || e2e_fail "cannot bring eth0 up in $ns"
    ip -n "$ns" route add default via "$E2E_WORLD_IP" || e2e_fail "no default route in $ns"
}

# Starts libvirtd (e2e_start_libvirtd) inside namespace NS, so that the
# taps of its guests are created there. Sets E2E_URI like it.
e2e_start_libvirtd_in() { # ns
    local saved=${E2E_LIBVIRTD_PREFIX:-}
    E2E_LIBVIRTD_PREFIX="ip netns exec $1"
    e2e_start_libvirtd
    E2E_LIBVIRTD_PREFIX=$saved
}

# Initialises a controller in DIR and serves it in the world namespace
# (on loopback without one) on a free port; extra arguments go to
# `serve`. Sets E2E_CTL_URL, E2E_CTL_CA, E2E_CTL_DIR, E2E_CTL_PID and
# E2E_ADMIN_KEY (and E2E_CTL_SERVE, for e2e_controller_restart). Stopped
# at exit.
e2e_controller_start() { # dir [serve-args...]
    local dir=$1 addr=127.0.0.1 port='' i
    shift
    [ -n "$E2E_WORLD" ] && addr=$E2E_WORLD_IP
    E2E_CTL_DIR=$dir
    mkdir -p "$dir"
    "$E2E_BIN/fog-controller" init --data-dir "$dir/ctl" --san "$addr" >"$dir/init.out" 2>&1 ||
        { cat "$dir/init.out" >&2; e2e_fail "fog-controller init failed"; }
    E2E_ADMIN_KEY=$(sed -n 's/^admin key: //p' "$dir/init.out")
    [ -n "$E2E_ADMIN_KEY" ] || e2e_fail "fog-controller init printed no admin key"
    E2E_CTL_CA=$dir/ctl/ca.pem
    local pre=()
    [ -n "$E2E_WORLD" ] && pre=(ip netns exec "$E2E_WORLD")
    "${pre[@]}" "$E2E_BIN/fog-controller" serve --data-dir "$dir/ctl" \
        --listen "$addr:0" "$@" >"$dir/controller.log" 2>&1 &
    E2E_CTL_PID=$!
    e2e_cleanup_add "e2e__stop_pid $E2E_CTL_PID"
    for ((i = 0; i < 100; i++)); do
        port=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$dir/controller.log" 2>/dev/null)
        [ -n "$port" ] && break
        kill -0 "$E2E_CTL_PID" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$port" ] || { tail -n 20 "$dir/controller.log" >&2; e2e_fail "controller did not start"; }
    E2E_CTL_URL=https://$addr:$port
    E2E_CTL_SERVE=(--data-dir "$dir/ctl" --listen "$addr:$port" "$@")
    : >"$dir/fogctl.conf"
}

# Starts the controller of e2e_controller_start again (after it was
# stopped or killed) on the same address, port and data; updates
# E2E_CTL_PID. Fails unless it answers within 10 s.
e2e_controller_restart() {
    local pre=() i
    [ -n "$E2E_WORLD" ] && pre=(ip netns exec "$E2E_WORLD")
    echo "--- restart $(date +%T.%N)" >>"$E2E_CTL_DIR/controller.log"
    "${pre[@]}" "$E2E_BIN/fog-controller" serve "${E2E_CTL_SERVE[@]}" \
        >>"$E2E_CTL_DIR/controller.log" 2>&1 &
    E2E_CTL_PID=$!
    e2e_cleanup_add "e2e__stop_pid $E2E_CTL_PID"
    for ((i = 0; i < 100; i++)); do
        "${pre[@]}" curl -sf --noproxy '*' --cacert "$E2E_CTL_CA" "$E2E_CTL_URL/healthz" \
            >/dev/null 2>&1 && return 0
        kill -0 "$E2E_CTL_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$E2E_CTL_DIR/controller.log" >&2
    e2e_fail "the controller did not come back on $E2E_CTL_URL"
}

# Stops process PID (TERM, then KILL after 5 s) if it still runs.
e2e__stop_pid() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    return 0
}

# Runs fogctl against the test's controller from the world namespace, as
# the account whose key is in E2E_KEY (default: the admin).
e2e_fogctl() {
    FOG_URL=$E2E_CTL_URL FOG_CA=$E2E_CTL_CA FOG_KEY=${E2E_KEY:-$E2E_ADMIN_KEY} \
        FOG_CONFIG=$E2E_CTL_DIR/fogctl.conf e2e_in "$E2E_WORLD" "$E2E_BIN/fogctl" "$@"
}

# Calls the API with curl as E2E_KEY (default: admin) and prints the body;
# fails the test unless the status is 2xx. Extra arguments go to curl.
e2e_api() { # method path [curl-args...]
    local m=$1 p=$2
    shift 2
    e2e_in "$E2E_WORLD" curl -sS --fail-with-body --noproxy '*' --cacert "$E2E_CTL_CA" \
        -H "Authorization: Bearer ${E2E_KEY:-$E2E_ADMIN_KEY}" -X "$m" "$@" \
        "$E2E_CTL_URL$p" || e2e_fail "$m $p failed"
}

# Creates tenant account NAME and prints a key of it.
e2e_tenant_create() { # name
    local key
    E2E_KEY='' e2e_fogctl account-create "$1" --role tenant >/dev/null ||
        e2e_fail "cannot create tenant $1"
    key=$(E2E_KEY='' e2e_fogctl key-create --account "$1" | sed -n 's/^key: //p')
    [ -n "$key" ] || e2e_fail "no key for tenant $1"
    printf '%s\n' "$key"
}

# True when fog-nodeagent knows option --NAME.
e2e_agent_has_opt() {
    "$E2E_BIN/fog-nodeagent" --help 2>/dev/null | grep -q -- "^ *--$1 "
}

# True when QEMU can use KVM here: /dev/kvm exists and the CPU shows
# hardware virtualisation (vmx/svm). Some sandboxes expose a /dev/kvm on
# which guests die at once ("KVM internal error ... emulation failure").
# E2E_KVM=0 or 1 overrides.
e2e_kvm_usable() {
    case "${E2E_KVM:-}" in
    0) return 1 ;;
    1) return 0 ;;
    esac
    [ -c /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo
}

# Sets array E2E_PREFIX to what runs a fogfabric daemon in namespace NS
# (may be empty): `ip netns exec NS`, and when KVM is not usable
# (e2e_kvm_usable) a mount namespace where /dev/kvm is an empty file, so
# the agent sees no KVM and runs its domains under TCG. Every step execs,
# so `"${E2E_PREFIX[@]}" cmd &` leaves the daemon's own PID in $!.
e2e__daemon_prefix() { # ns
    E2E_PREFIX=()
    [ -n "$1" ] && E2E_PREFIX=(ip netns exec "$1")
    if [ -e /dev/kvm ] && ! e2e_kvm_usable; then
        if [ -z "${E2E_NOKVM_FILE:-}" ]; then
            E2E_NOKVM_FILE=$(mktemp /tmp/fog-e2e-nokvm.XXXXXX) || e2e_fail "mktemp failed"
            e2e_cleanup_add "rm -f '$E2E_NOKVM_FILE'"
        fi
        # shellcheck disable=SC2016
        E2E_PREFIX+=(unshare --mount --propagation private --
            sh -c 'mount --bind "$0" /dev/kvm && exec "$@"' "$E2E_NOKVM_FILE")
    fi
}

# Joins an agent with data dir DIR, named NAME, in namespace NS (may be
# empty) with an admin join token (approved at once). Extra arguments go to
# `join`.
e2e_agent_join() { # ns dir name [join-args...]
    local ns=$1 dir=$2 name=$3 tok
    shift 3
    tok=$(E2E_KEY='' e2e_fogctl join-token | sed -n 's/^token: //p')
    [ -n "$tok" ] || e2e_fail "fogctl join-token printed no token"
    mkdir -p "$dir"
    e2e__daemon_prefix "$ns"
    "${E2E_PREFIX[@]}" "$E2E_BIN/fog-nodeagent" join --controller "$E2E_CTL_URL" --token "$tok" \
        --data-dir "$dir" --name "$name" "$@" >"$dir/join.log" 2>&1 ||
        { cat "$dir/join.log" >&2; e2e_fail "fog-nodeagent join ($name) failed"; }
}

# Starts `fog-nodeagent run` with data dir DIR in namespace NS, logging to
# DIR/agent.log (appended); extra arguments go to `run`. Sets
# E2E_AGENT_PID; stopped at exit (its VMs keep running until the
# libvirtd that runs them is stopped).
e2e_agent_start() { # ns dir [run-args...]
    local ns=$1 dir=$2
    shift 2
    echo "--- agent start $(date +%T.%N)" >>"$dir/agent.log"
    e2e__daemon_prefix "$ns"
    "${E2E_PREFIX[@]}" "$E2E_BIN/fog-nodeagent" run --data-dir "$dir" "$@" >>"$dir/agent.log" 2>&1 &
    E2E_AGENT_PID=$!
    # Cleanups run last-registered first: the agent stops, then the
    # resolvers it started, which outlive it as its VMs do.
    e2e_cleanup_add "e2e__stop_resolvers '$dir'"
    e2e_cleanup_add "e2e__stop_pid $E2E_AGENT_PID"
}

# Stops the per-network dnsmasq processes of the agent whose data dir is
# DIR: each pid in DIR/dns/*/pid whose command line names that pid file.
e2e__stop_resolvers() { # dir
    local f pid
    for f in "$1"/dns/*/pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f" 2>/dev/null) || continue
        case $pid in '' | *[!0-9]*) continue ;; esac
        tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null |
            grep -qxF -- "--pid-file=$f" || continue
        e2e__stop_pid "$pid"
    done
}

# Prints field FIELD of `fogctl dominfo VM` (as E2E_KEY), e.g. state,
# addresses, node_name, state_reason. Empty when the VM is unknown.
e2e_vm_field() { # vm field
    e2e_fogctl dominfo "$1" 2>/dev/null | sed -n "s/^$2: *//p"
}

# Waits up to TIMEOUT seconds for VM to be in STATE as fogctl reports it;
# returns 1 at once when it is in state error (unless that is STATE).
e2e_wait_vm_state() { # vm state timeout
    local deadline=$((SECONDS + $3)) s=
    while ((SECONDS < deadline)); do
        s=$(e2e_vm_field "$1" state)
        [ "$s" = "$2" ] && return 0
        # error is final until something changes: no use waiting.
        [ "$s" = error ] && break
        sleep 0.3
    done
    e2e_log "VM $1 is '$s' ($(e2e_vm_field "$1" state_reason)), want '$2'"
    return 1
}

# The first IPv4 address fogctl reports for VM.
e2e_vm_address() { # vm
    e2e_vm_field "$1" addresses | grep -oE '[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+' | head -n 1
}

# Prints the id of VM as the controller knows it.
e2e_vm_id() { # vm
    e2e_vm_field "$1" id
}

# Names of the fog-* domains of libvirt URI (all states), one a line.
e2e_fog_domains() { # uri
    virsh -c "$1" list --all --name 2>/dev/null | grep '^fog-' || true
}

# Kills the wireguard-go serving interface IFNAME (its socket under
# /var/run/wireguard names it) and removes the socket; for cleanups,
# since wireguard-go outlives the agent that started it.
e2e_wg_go_stop() { # ifname
    local sock=/var/run/wireguard/$1.sock pid
    for pid in $(pgrep -x wireguard-go 2>/dev/null); do
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qw -- "$1" &&
            kill "$pid" 2>/dev/null
    done
    rm -f "$sock"
}

# Host networking options of fog-nodeagent for a node in namespace NS at
# address IP (those this agent build has), into array E2E_NET_ARGS: host
# networking, a WireGuard interface name unique to the test and the node
# (wireguard-go's sockets share /var/run/wireguard), endpoint and public
# address. With a second argument "nat" (a host behind a router, IP on its
# LAN) neither endpoint nor public address is given, as a provider behind
# NAT does: the controller's address probes find the mapping and the
# address it sees stands for the public one. E2E_MESH_IF is set to the
# interface's name. The wireguard-go behind it is stopped at exit.
e2e_node_net_args() { # ip [nat]
    local ip=$1 ifname l3
    ifname=fw$$x${ip##*.}
    # Hosts behind NAT may share a LAN address: their LANs differ.
    l3=${ip%.*}
    [ "${2:-}" = nat ] && ifname=fw$$n${l3##*.}
    ifname=${ifname:0:15}
    E2E_NET_ARGS=()
    e2e_agent_has_opt network && E2E_NET_ARGS+=(--network host)
    E2E_MESH_IF=
    if e2e_agent_has_opt mesh-ifname; then
        E2E_MESH_IF=$ifname
        E2E_NET_ARGS+=(--mesh-ifname "$ifname")
        e2e_cleanup_add "e2e_wg_go_stop $ifname"
    fi
    e2e_agent_has_opt wg-port && E2E_NET_ARGS+=(--wg-port 51820)
    [ "${2:-}" = nat ] && return 0
    e2e_agent_has_opt endpoint && E2E_NET_ARGS+=(--endpoint "$ip:51820")
    e2e_agent_has_opt public-ip && E2E_NET_ARGS+=(--public-ip "$ip")
    return 0
}

# A provider host: namespace NS with address IP on the world, its own
# libvirtd, and fog-nodeagent NAME joined with data dir DIR and running;
# extra arguments go to `run` (host networking options are added), the
# array E2E_NODE_JOIN_ARGS (if set) to `join` as well. Sets
# E2E_URI to its libvirtd, E2E_AGENT_PID, and E2E_NODE_RUN_ARGS to the
# `run` arguments (for restarting it with e2e_agent_start NS DIR
# "${E2E_NODE_RUN_ARGS[@]}").
e2e_node_up() { # ns ip name dir [run-args...]
    local ns=$1 ip=$2 name=$3 dir=$4
    shift 4
    e2e_host_add "$ns" "$ip"
    e2e_start_libvirtd_in "$ns"
    e2e_node_net_args "$ip"
    e2e_agent_join "$ns" "$dir" "$name" --libvirt "$E2E_URI" "${E2E_NET_ARGS[@]}" \
        ${E2E_NODE_JOIN_ARGS[@]+"${E2E_NODE_JOIN_ARGS[@]}"}
    E2E_NODE_RUN_ARGS=(--heartbeat 1 "${E2E_NET_ARGS[@]}" "$@")
    e2e_agent_start "$ns" "$dir" "${E2E_NODE_RUN_ARGS[@]}"
}

# A home router: namespace RNS with eth0 = WAN/24 on the world
# (e2e_host_add) and lan0 = LAN.1/24 towards a new host namespace NS
# (eth0 = LAN.2/24, default route through the router; LAN is the first
# three octets). The router forwards, masquerades what leaves by eth0 with
# NAT, an nftables statement: "masquerade" keeps the source port where it
# can (endpoint-independent mapping), "masquerade fully-random" draws a
# new one per destination (endpoint-dependent, "symmetric"); and it
# forwards TCP and UDP ports PORTS (e.g. 20000-29999) arriving on its WAN
# address to the host, as a provider forwards the agent's port range.
# Both namespaces are removed at exit.
e2e_nat_router_up() { # rns wan ns lan nat ports
    local rns=$1 wan=$2 ns=$3 lan=$4 nat=$5 ports=$6
    e2e_host_add "$rns" "$wan"
    e2e_netns_up "$ns"
    ip -n "$rns" link add lan0 type veth peer name eth0 netns "$ns" ||
        e2e_fail "cannot create the LAN of $rns"
    ip -n "$rns" addr add "$lan.1/24" dev lan0 && ip -n "$rns" link set lan0 up &&
        ip -n "$ns" addr add "$lan.2/24" dev eth0 && ip -n "$ns" link set eth0 up &&
        ip -n "$ns" route add default via "$lan.1" ||
        e2e_fail "cannot address the LAN of $rns"
    ip netns exec "$rns" sysctl -qw net.ipv4.ip_forward=1 ||
        e2e_fail "cannot turn forwarding on in $rns"
    ip netns exec "$rns" nft -f - <<EOF || e2e_fail "cannot set the NAT of $rns"
table ip homenat {
    chain pre {
        type nat hook prerouting priority dstnat;
        iifname "eth0" ip daddr $wan meta l4proto { tcp, udp } th dport $ports dnat to $lan.2
    }
    chain post {
        type nat hook postrouting priority srcnat;
        oifname "eth0" $nat
    }
}
EOF
}

# A provider host behind a home router (e2e_nat_router_up RNS WAN NS LAN
# NAT PORTS) with its own libvirtd and fog-nodeagent NAME joined with data
# dir DIR and running, neither endpoint nor public address configured
# (e2e_node_net_args LAN.2 nat); extra arguments go to `run`. Sets E2E_URI,
# E2E_AGENT_PID, E2E_MESH_IF and E2E_NODE_RUN_ARGS as e2e_node_up does.
e2e_nat_node_up() { # rns wan ns lan nat ports name dir [run-args...]
    local rns=$1 wan=$2 ns=$3 lan=$4 nat=$5 ports=$6 name=$7 dir=$8
    shift 8
    e2e_nat_router_up "$rns" "$wan" "$ns" "$lan" "$nat" "$ports"
    e2e_start_libvirtd_in "$ns"
    e2e_node_net_args "$lan.2" nat
    e2e_agent_join "$ns" "$dir" "$name" --libvirt "$E2E_URI" "${E2E_NET_ARGS[@]}"
    E2E_NODE_RUN_ARGS=(--heartbeat 1 "${E2E_NET_ARGS[@]}" "$@")
    e2e_agent_start "$ns" "$dir" "${E2E_NODE_RUN_ARGS[@]}"
}

# Writes to FILE user-data for the tiny guest serving PAGE as its index
# page and a probe: /cgi-bin/probe?get-IP fetches http://IP/, ?ping-IP
# pings IP (twice), ?ping6-IPV6 the same over IPv6, ?spoof-IP pings IP
# from a forged source address (.250 of the guest's /24); each answers
# what it found (the page, "reachable"
# or "unreachable").
e2e_probe_user_data() { # file page
    cat >"$1" <<'EOF'
#cloud-config
write_files:
  - path: /www/cgi-bin/probe
    permissions: '0755'
    content: |
      #!/bin/sh
      printf 'Content-Type: text/plain\r\n\r\n'
      op=${QUERY_STRING%%-*}
      ip=${QUERY_STRING#*-}
      case "$op:$ip" in
      ping6:|ping6:*[!0-9a-f:]*) echo "bad query"; exit 0 ;;
      ping6:*) ;;
      *:|*:*[!0-9.]*) echo "bad query"; exit 0 ;;
      esac
      case "$op" in
      get) timeout 5 wget -q -O - "http://$ip/" 2>/dev/null || echo "unreachable" ;;
      ping) ping -c 2 -W 2 "$ip" >/dev/null 2>&1 && echo "reachable" || echo "unreachable" ;;
      ping6) { ping -6 -c 2 -W 2 "$ip" || ping6 -c 2 -W 2 "$ip"; } >/dev/null 2>&1 &&
        echo "reachable" || echo "unreachable" ;;
      spoof)
        src=${ip%.*}.250
        ip addr add "$src/32" dev eth0 2>/dev/null
        ping -c 2 -W 2 -I "$src" "$ip" >/dev/null 2>&1 && echo "reachable" || echo "unreachable"
        ip addr del "$src/32" dev eth0 2>/dev/null ;;
      *) echo "bad op" ;;
      esac
EOF
    printf '  - path: /www/index.html\n    content: |\n      %s\n' "$2" >>"$1"
}

# Asks the probe (e2e_probe_user_data) of the guest at GUEST-IP, from
# namespace NS (its host, which reaches it on its bridge), for QUERY and
# prints the answer.
e2e_guest_probe() { # ns guest-ip query
    ip netns exec "$1" curl -sS --noproxy '*' -m 20 "http://$2/cgi-bin/probe?$3" 2>&1
}

# Asks as e2e_guest_probe until the answer is WANT, up to TRIES times (a
# second apart, default 10); prints the last answer, returns 1 unless WANT.
e2e_guest_probe_wait() { # ns guest-ip query want [tries]
    local i got=
    for ((i = 0; i < ${5:-10}; i++)); do
        ((i > 0)) && sleep 1
        got=$(e2e_guest_probe "$1" "$2" "$3")
        [ "$got" = "$4" ] && break
    done
    printf '%s\n' "$got"
    [ "$got" = "$4" ]
}

# Prints, for a failing test, the tail of an agent's log, its guests'
# consoles, the domains of libvirt URI and the links of namespace NS.
e2e_dump_node() { # dir uri ns
    local f
    echo "--- agent log $1/agent.log:"; tail -n 40 "$1/agent.log" 2>/dev/null
    for f in "$1"/console/*.log; do
        [ -f "$f" ] && { echo "--- console $f:"; tail -n 25 "$f"; }
    done
    echo "--- domains:"; virsh -c "$2" list --all 2>/dev/null
    echo "--- links of $3:"; ip -n "$3" -br addr 2>/dev/null
    echo "--- routes of $3:"; ip -n "$3" route 2>/dev/null
    for f in $(ip -n "$3" -o link show type wireguard 2>/dev/null | awk -F': ' '{print $2}') \
        $(ip -n "$3" -o link show type tun 2>/dev/null | awk -F': ' '{print $2}'); do
        echo "--- wg $f:"; ip netns exec "$3" wg show "$f" 2>&1
    done
    return 0
}

# Makes a failing test print e2e_dump_node's view of one node (agent data
# dir DIR, libvirt URI, namespace NS) and the tail of the controller's log.
e2e_dump_on_fail() { # dir uri ns
    E2E_ON_FAIL="e2e_dump_node '$1' '$2' '$3'; echo '--- controller log:';"
    E2E_ON_FAIL+=" tail -n 30 '$E2E_CTL_DIR/controller.log'"
}

# Builds the tiny guest and makes the test's scratch directory (removed at
# exit) with images/tiny.qcow2, a copy of the guest for an agent's
# --image-dir; sets E2E_WORK to it. TAG names it /tmp/fog-e2e-TAG.XXXXXX.
e2e_workdir_with_guest() { # tag
    e2e_build_guest >/dev/null
    [ -s "$E2E_GUEST_IMAGE" ] || e2e_fail "no $E2E_GUEST_IMAGE after build"
    E2E_WORK=$(mktemp -d "/tmp/fog-e2e-$1.XXXXXX") || e2e_fail "mktemp failed"
    chmod 755 "$E2E_WORK"
    e2e_cleanup_add "rm -rf '$E2E_WORK'"
    mkdir -p "$E2E_WORK/images"
    cp --reflink=auto "$E2E_GUEST_IMAGE" "$E2E_WORK/images/tiny.qcow2" ||
        e2e_fail "cannot copy the guest image"
}
