#!/bin/sh
# Builds the benchmark's probe guest from installed Debian packages, with
# no network: Debian's cloud kernel and an initramfs of busybox-static, the
# static worker fog-bench (images/probe/fog-bench.c with common/benchwork.c,
# linked with libnettle.a) and an /init that runs the challenge from the
# kernel command line (fog.bench=...), prints the answer on the serial
# console and powers off. No disk, no network: the agent boots it straight
# from the kernel (nodeagent/benchjob.c, --bench-guest DIR).
# Outputs vmlinuz and initrd.gz in ${FOG_PROBE_DIR:-<repo>/build/probe};
# does nothing when a digest of every input matches the last build.
# FOG_GUEST_KERNEL=/boot/vmlinuz-... overrides the kernel. Prints the
# output folder on stdout, progress on stderr.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${FOG_PROBE_DIR:-$repo/build/probe}
stamp=$out/inputs.sha256

die() { echo "build.sh: $*" >&2; exit 1; }

kernel=${FOG_GUEST_KERNEL:-$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1)}
[ -n "$kernel" ] && [ -r "$kernel" ] || die "no /boot/vmlinuz-*-cloud-amd64 (install linux-image-cloud-amd64)"
busybox=/bin/busybox
case "$(LC_ALL=C ldd "$busybox" 2>&1 || true)" in
*"not a dynamic"*|*"statically linked"*) ;;
*) die "$busybox missing or not static (install busybox-static)" ;;
esac
for t in gcc cpio gzip sha256sum; do
    command -v "$t" >/dev/null 2>&1 || die "missing tool '$t'"
done

srcs="$here/fog-bench.c $repo/common/benchwork.c $repo/common/ids.c
$repo/common/util.c $repo/common/fs.c"
# shellcheck disable=SC2086
digest=$( { cat "$here/build.sh" $srcs $repo/common/*.h "$kernel" "$busybox";
    gcc -dumpfullversion; } | sha256sum | cut -d' ' -f1)
if [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.gz" ] &&
    [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ]; then
    echo "$out is up to date" >&2
    echo "$out"
    exit 0
fi

mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/root
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev"
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
# shellcheck disable=SC2086
gcc -static -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter \
    -I"$repo" -o "$root/bin/fog-bench" $srcs -l:libnettle.a -lpthread
strip "$root/bin/fog-bench" 2>/dev/null || true

cat >"$root/init" <<'INIT'
#!/bin/sh
# /init of the probe guest: answer the challenge, then power off.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo "fog-probe: up, $(grep -c ^processor /proc/cpuinfo) vCPUs"
fog-bench || echo "fog-probe: no answer (exit $?)"
sync
poweroff -f
INIT
chmod 755 "$root/init"

(cd "$root" && find . -print | sort | cpio -o -H newc -R 0:0 --quiet) |
    gzip -9n >"$work/initrd.gz"
cp "$kernel" "$work/vmlinuz"
rm -f "$stamp"
mv -f "$work/vmlinuz" "$out/vmlinuz"
mv -f "$work/initrd.gz" "$out/initrd.gz"
chmod 644 "$out/vmlinuz" "$out/initrd.gz"
echo "$digest" >"$stamp"
echo "probe guest in $out" >&2
echo "$out"
