#!/bin/sh
# Builds a Debian 12 (bookworm) cloud image from Debian packages with
# mmdebstrap: systemd, cloud-init (NoCloud only), openssh-server, python3 and
# sudo (an Ansible target), nginx (installed, disabled: templates enable it),
# busybox and netcat (game-server style ports), qemu-guest-agent, netplan with
# systemd-networkd and systemd-resolved, and the run-time dependencies of our
# own packages (make deb), so that a VM with no network installs them with
# dpkg: the hub's libraries, the agent's libvirt (daemon installed, disabled
# until the agent asks for it), qemu-utils, WireGuard and nftables. No loop mount and no root-only
# device: the root file system is made with `mkfs.ext4 -d`, the boot
# partition is FAT with syslinux installed through mtools.
#
# Usage: tools/mkguest-debian.sh [OUT.qcow2]
#   Builds (or reuses) the cached image and prints its path on stdout
#   (progress goes to stderr). With OUT.qcow2, also copies the image there
#   and prints OUT.qcow2 instead. Never boot the cached image itself: give
#   each VM a copy-on-write overlay (qemu-img create -b ... -F qcow2).
#
# Cache: ${FOG_DEBIAN_DIR:-<repo>/build/debian}/debian-12.qcow2, rebuilt only
# when the digest of this script (its package list and configuration
# included) or of the mirror/suite changes; inputs.sha256 holds the digest,
# build-seconds the last build time, packages.txt the installed versions.
# FOG_DEBIAN_FORCE=1 rebuilds. FOG_DEBIAN_MIRROR overrides the mirror (default
# deb.debian.org; -updates and -security come from the same host).
#
# Layout: MBR; partition 1 FAT (64 MiB, /boot/efi-free: kernel, initrd,
# syslinux); partition 2 ext4 root, the last partition, so cloud-init's
# growpart grows it to the VM's disk size. Login: cloud-init's default user
# "debian" with the keys from meta-data public-keys; no passwords.
# Needs (tools/deps.sh): mmdebstrap, e2fsprogs, dosfstools, mtools, syslinux,
# syslinux-common, qemu-utils, fdisk.
set -eu
# Only the image's path goes to stdout (callers read it); every tool's
# chatter goes to stderr.
exec 3>&1 1>&2

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out=${FOG_DEBIAN_DIR:-$repo/build/debian}
qcow=$out/debian-12.qcow2
stamp=$out/inputs.sha256
suite=bookworm
mirror=${FOG_DEBIAN_MIRROR:-http://deb.debian.org/debian}

die() { echo "mkguest-debian: $*" >&2; exit 1; }
log() { echo "mkguest-debian: $*" >&2; }

# Everything the guest carries; the digest covers this list.
packages="systemd systemd-sysv systemd-resolved udev dbus
linux-image-cloud-amd64 initramfs-tools zstd
cloud-init cloud-guest-utils fdisk netplan.io
openssh-server sudo python3 python3-apt
nginx-light busybox netcat-openbsd curl ca-certificates
qemu-guest-agent iproute2 iputils-ping procps less
adduser libmicrohttpd12 libjansson4 libsqlite3-0 libcurl3-gnutls libgnutls30
libnettle8 libhogweed6 libnl-3-200 libnl-genl-3-200 libnl-route-3-200 libpq5
libsystemd0 libnftables1 libpci3 libvirt0 libxml2 libreadline8
libvirt-daemon-system libvirt-daemon-driver-qemu qemu-utils nftables
wireguard-tools wireguard-go dnsmasq-base"

# Modules the initramfs carries (MODULES=list: a small initrd loads faster
# under TCG); udev loads the virtio ones by modalias.
initrd_modules="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev
virtio_pci virtio_blk virtio_scsi sd_mod scsi_mod failover net_failover
virtio_net ext4 crc32c_generic"

# The options after mitigations=off shave seconds off a boot under TCG; the
# start timeout (device jobs' too, in systemd 252) gives a guest starved
# of CPU (TCG on a busy host) time for its devices and units instead of
# failing them after 90 s.
cmdline="console=tty0 console=ttyS0,115200n8 ro quiet net.ifnames=0 mitigations=off apparmor=0 nokaslr no_timer_check tsc=reliable cryptomgr.notests systemd.default_timeout_start_sec=600"

[ "$#" -le 1 ] || die "usage: $0 [OUT.qcow2]"
dest=${1:-}

for t in mmdebstrap mkfs.ext4 mkfs.vfat mcopy syslinux qemu-img sfdisk sha256sum; do
    command -v "$t" >/dev/null 2>&1 || die "missing tool '$t' (sh tools/deps.sh)"
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
[ -r "$mbr" ] || die "no $mbr (install syslinux-common)"

digest=$( { cat "$0"; echo "$suite $mirror"; } | sha256sum | cut -d' ' -f1)

finish() {
    if [ -n "$dest" ]; then
        cp --sparse=always "$qcow" "$dest.tmp" && mv "$dest.tmp" "$dest" ||
            die "cannot copy to $dest"
        echo "$dest" >&3
    else
        echo "$qcow" >&3
    fi
    exit 0
}

if [ "${FOG_DEBIAN_FORCE:-0}" != 1 ] && [ -f "$qcow" ] &&
    [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
    log "$qcow is up to date"
    finish
fi

[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap --mode=root builds the tree)"
mkdir -p "$out"
# The tree is built outside build/: make looks for *.d files there, and
# systemd's tree is full of *.d directories.
work=$(mktemp -d "${TMPDIR:-/var/tmp}/fog-mkguest-debian.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
start=$(date +%s)

# ------------------------------------------------------------- root tree
root=$work/root
# shellcheck disable=SC2086
pkgs=$(echo $packages | tr ' ' ',')
mods=$(echo $initrd_modules)
sec=${mirror%/debian}/debian-security
log "mmdebstrap $suite from $mirror"
# shellcheck disable=SC2016
mmdebstrap --mode=root --variant=apt --format=directory \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --include="$pkgs" \
    --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"' \
    --setup-hook='printf "MODULES=list\nCOMPRESS=zstd\n" >"$1/etc/initramfs-tools/conf.d/fog.conf"' \
    --setup-hook="printf '#!/bin/sh\nset -e\n[ \"\$1\" = prereqs ] && exit 0\n. /usr/share/initramfs-tools/hook-functions\nfor m in $mods; do manual_add_modules \$m; done\n' >\"\$1/etc/initramfs-tools/hooks/fog-virtio\"" \
    --setup-hook='chmod 755 "$1/etc/initramfs-tools/hooks/fog-virtio"' \
    --setup-hook='mkdir -p "$1/etc/systemd/system" && ln -s /dev/null "$1/etc/systemd/system/nginx.service"' \
    "$suite" "$root" "deb $mirror $suite main" \
    "deb $mirror $suite-updates main" "deb $sec $suite-security main" \
    </dev/null >&2 ||
    die "mmdebstrap failed"

# --------------------------------------------------------- configuration
cfg() { mkdir -p "$(dirname "$root/$1")"; cat >"$root/$1"; }

# nginx stays installed but disabled: the nginx template enables it
# (runcmd: systemctl enable --now nginx). It was masked during the install
# so that it never started in the build tree.
rm -f "$root/etc/systemd/system/nginx.service"
chroot "$root" systemctl disable nginx.service >/dev/null 2>&1 || true
# libvirtd likewise: a VM that runs no fogfabric agent does not pay for its
# start at boot; the agent's unit wants libvirtd.service and starts it.
chroot "$root" systemctl disable libvirtd.service libvirtd.socket \
    libvirtd-ro.socket libvirtd-admin.socket virtlogd.socket virtlockd.socket \
    libvirt-guests.service >/dev/null 2>&1 || true

# NoCloud only: no probing of network metadata services at boot.
cfg etc/cloud/cloud.cfg.d/90_dpkg.cfg <<'EOF'
datasource_list: [ NoCloud, None ]
EOF
# No apt at first boot unless user-data asks (VMs may have no internet).
# C.UTF-8 is built into glibc: no locales package, no locale-gen at boot.
# Host keys: ed25519 and ECDSA only; RSA key generation alone takes tens of
# seconds under TCG.
cfg etc/cloud/cloud.cfg.d/91_fog.cfg <<'EOF'
apt:
  preserve_sources_list: true
package_update: false
package_upgrade: false
package_reboot_if_required: false
locale: C.UTF-8
ssh_genkeytypes: [ed25519, ecdsa]
EOF
echo LANG=C.UTF-8 >"$root/etc/default/locale"

# Each VM gets its own machine-id and SSH host keys (cloud-init's ssh
# module makes them before ssh.service starts).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*

echo debian >"$root/etc/hostname"
cfg etc/hosts <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
EOF
uuid=$(cat /proc/sys/kernel/random/uuid)
cfg etc/fstab <<EOF
UUID=$uuid / ext4 rw,discard,errors=remount-ro,x-systemd.growfs 0 1
EOF
# systemd-resolved owns /etc/resolv.conf (stub), fed by networkd.
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service \
    >/dev/null 2>&1 || die "cannot enable networkd/resolved"
# Faster boots: no waiting for every link, no daily apt timers in tests.
chroot "$root" systemctl mask systemd-networkd-wait-online.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service \
    e2scrub_all.timer fstrim.timer man-db.timer dpkg-db-backup.timer \
    >/dev/null 2>&1 || true
cfg etc/systemd/journald.conf.d/fog.conf <<'EOF'
[Journal]
SystemMaxUse=64M
EOF

chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$work/packages.txt"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/tmp/* \
    "$root"/var/cache/debconf/*-old

# ------------------------------------------------------------ boot files
kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -n 1)
[ -f "$kernel" ] && [ -f "$initrd" ] || die "no kernel/initrd in the tree"
cat >"$work/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT debian
PROMPT 0
TIMEOUT 0
LABEL debian
  KERNEL vmlinuz
  INITRD initrd.img
  APPEND root=UUID=$uuid $cmdline
EOF

# ------------------------------------------------------------- the disk
boot_mib=64
root_mib=$(( $(du -sm "$root" | cut -f1) * 13 / 10 + 256 ))
total_mib=$(( 1 + boot_mib + root_mib ))
log "root tree $(du -sm "$root" | cut -f1) MiB, disk $total_mib MiB"

mkfs.vfat -n FOGBOOT -h 2048 -C "$work/boot.img" $(( boot_mib * 1024 )) >/dev/null
mcopy -i "$work/boot.img" "$kernel" ::vmlinuz
mcopy -i "$work/boot.img" "$initrd" ::initrd.img
mcopy -i "$work/boot.img" "$work/syslinux.cfg" ::syslinux.cfg
syslinux --install "$work/boot.img" || die "syslinux failed"

mkfs.ext4 -q -L rootfs -U "$uuid" -d "$root" -E root_owner=0:0 \
    "$work/root.img" "${root_mib}M" || die "mkfs.ext4 failed"

truncate -s "${total_mib}M" "$work/disk.img"
printf 'label: dos\nstart=2048, size=%s, type=c, bootable\nstart=%s, type=83\n' \
    $(( boot_mib * 2048 )) $(( 2048 + boot_mib * 2048 )) |
    sfdisk -q "$work/disk.img" || die "sfdisk failed"
dd if="$mbr" of="$work/disk.img" bs=440 count=1 conv=notrunc status=none
dd if="$work/boot.img" of="$work/disk.img" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$work/disk.img" bs=1M seek=$(( 1 + boot_mib )) \
    conv=notrunc,sparse status=none

qemu-img convert -c -O qcow2 "$work/disk.img" "$work/debian-12.qcow2" ||
    die "qemu-img convert failed"
mv "$work/debian-12.qcow2" "$qcow"
mv "$work/packages.txt" "$out/packages.txt"
echo "$digest" >"$stamp"
secs=$(( $(date +%s) - start ))
echo "$secs" >"$out/build-seconds"
log "built $qcow in ${secs} s ($(du -h "$qcow" | cut -f1))"
finish
