#!/bin/sh
# Builds the tiny bootable test guest from installed Debian packages, with no
# network: Debian's cloud kernel + an initramfs of busybox-static, the virtio
# modules, udp-echo and /init, on a FAT disk made bootable with syslinux.
# Outputs, in ${FOG_GUEST_DIR:-<repo>/build/guest}: fog-tiny.qcow2 (bootable
# disk), fog-tiny.img (the same, raw), and vmlinuz, initrd.gz, cmdline for a
# direct kernel boot. Does nothing when a digest of every input matches the
# last build. Needs: linux-image-cloud-amd64, busybox-static, gcc (static
# libc), cpio, dosfstools, mtools, syslinux, syslinux-common, qemu-utils.
# FOG_GUEST_KERNEL=/boot/vmlinuz-... overrides the kernel; FOG_GUEST_FORCE=1
# rebuilds. Prints the path of fog-tiny.qcow2 on stdout, progress on stderr.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${FOG_GUEST_DIR:-$(cd "$here/../.." && pwd)/build/guest}
img=$out/fog-tiny.img
qcow=$out/fog-tiny.qcow2
stamp=$out/inputs.sha256

die() { echo "build.sh: $*" >&2; exit 1; }

kernel=${FOG_GUEST_KERNEL:-$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1)}
[ -n "$kernel" ] && [ -r "$kernel" ] || die "no /boot/vmlinuz-*-cloud-amd64 (install linux-image-cloud-amd64)"
kver=${kernel#*/vmlinuz-}
moddir=/lib/modules/$kver
[ -d "$moddir" ] || die "no $moddir for $kernel"
busybox=/bin/busybox
[ -x "$busybox" ] && file_is_static=$(LC_ALL=C ldd "$busybox" 2>&1 || true)
case "${file_is_static:-}" in
*"not a dynamic"*|*"statically linked"*) ;;
*) die "$busybox missing or not static (install busybox-static)" ;;
esac
for t in gcc cpio gzip mkfs.vfat mcopy syslinux qemu-img sha256sum; do
    command -v "$t" >/dev/null 2>&1 || die "missing tool '$t'"
done

# Kernel command line, for syslinux.cfg and for a direct kernel boot. The
# options after "quiet" shave about 0.4 s off a boot under TCG.
cmdline="console=ttyS0 quiet loglevel=3 8250.nr_uarts=1 mitigations=off lsm= apparmor=0 nokaslr no_timer_check tsc=reliable cryptomgr.notests"

# Modules copied into the initramfs; /init loads them in dependency order.
modules="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev
virtio_pci failover net_failover virtio_net virtio_blk cdrom isofs
scsi_common scsi_mod sr_mod sd_mod libata ata_piix virtio_scsi button evdev"

inputs="$here/build.sh $here/init $here/netconf.awk $here/cloudconfig.awk
$here/udp-echo.c $kernel $busybox"

# shellcheck disable=SC2086
digest=$( { cat $inputs; echo "$kernel $cmdline"; gcc -dumpfullversion;
    ls -l --time-style=+%s "$moddir/modules.dep"; } | sha256sum | cut -d' ' -f1)
if [ "${FOG_GUEST_FORCE:-0}" != 1 ] && [ -f "$qcow" ] && [ -f "$img" ] &&
    [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
    echo "$qcow is up to date" >&2
    echo "$qcow"
    exit 0
fi

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# ---------------------------------------------------------------- initramfs
root=$work/root
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" \
    "$root/lib/modules" "$root/etc/fog" "$root/etc/acpi/PWRF" "$root/www" \
    "$root/proc" "$root/sys" "$root/dev" "$root/run" "$root/tmp" "$root/mnt"
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$here/init" "$root/init"
chmod 755 "$root/init"
cp "$here/netconf.awk" "$here/cloudconfig.awk" "$root/etc/fog/"

gcc -static -Os -Wall -Wextra -Werror -o "$root/bin/udp-echo" "$here/udp-echo.c"
strip "$root/bin/udp-echo" 2>/dev/null || true

for m in $modules; do
    ko=$(find "$moddir/kernel" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n 1)
    [ -n "$ko" ] || die "module $m not found under $moddir"
    case "$ko" in
    *.xz) xz -dc "$ko" >"$root/lib/modules/$m.ko" ;;
    *.zst) zstd -qdc "$ko" >"$root/lib/modules/$m.ko" ;;
    *) cp "$ko" "$root/lib/modules/$m.ko" ;;
    esac
done

# Power button (QEMU system_powerdown, virsh shutdown) -> clean poweroff.
# busybox acpid maps KEY_POWER to the PWRF/00000080 action.
cat >"$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "fog-guest: power button" >/dev/console
kill -USR2 1
EOF
chmod 755 "$root/etc/acpi/PWRF/00000080"

cat >"$root/etc/udhcpc.script" <<'EOF'
#!/bin/sh
# udhcpc hook: apply a lease to $interface.
case "$1" in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "${mtu:-}" ] && ip link set "$interface" mtu "$mtu"
    for r in ${router:-}; do ip route add default via "$r" dev "$interface"; break; done
    : >/etc/resolv.conf
    for d in ${dns:-}; do echo "nameserver $d" >>/etc/resolv.conf; done
    echo "fog-guest: dhcp $ip/${mask:-24} on $interface" >/dev/console
    ;;
esac
exit 0
EOF
chmod 755 "$root/etc/udhcpc.script"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"
echo "fog-guest" >"$root/www/index.html"

(cd "$root" && find . -print | sort | cpio -o -H newc -R 0:0 --quiet) |
    gzip -9n >"$work/initrd.gz"

# ---------------------------------------------------------------- disk
cat >"$work/syslinux.cfg" <<EOF
DEFAULT fog
PROMPT 0
TIMEOUT 0
LABEL fog
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND $cmdline
EOF

ksize=$(($(stat -c %s "$kernel") / 1024))
isize=$(($(stat -c %s "$work/initrd.gz") / 1024))
size=$(((ksize + isize + 2048) / 1024 + 1))   # MiB, with ~2 MiB slack
truncate -s "${size}M" "$work/disk.img"
mkfs.vfat -n FOGGUEST "$work/disk.img" >/dev/null
syslinux --install "$work/disk.img"
mcopy -i "$work/disk.img" "$kernel" ::vmlinuz
mcopy -i "$work/disk.img" "$work/initrd.gz" ::initrd.gz
mcopy -i "$work/disk.img" "$work/syslinux.cfg" ::syslinux.cfg

qemu-img convert -f raw -O qcow2 "$work/disk.img" "$work/disk.qcow2"
cp "$kernel" "$work/vmlinuz"
printf '%s\n' "$cmdline" >"$work/cmdline"
# Each file is replaced atomically; the stamp goes last, so an interrupted
# build is redone.
rm -f "$stamp"
for f in vmlinuz initrd.gz cmdline; do
    mv -f "$work/$f" "$out/$f"
done
mv -f "$work/disk.img" "$img"
mv -f "$work/disk.qcow2" "$qcow"
echo "$digest" >"$stamp"
echo "built $qcow ($(du -k "$qcow" | cut -f1) KiB; kernel $kver)" >&2
echo "$qcow"
