#!/bin/bash
# GPU passthrough domains on a real libvirtd: the documents test_gpu_xml
# builds from fake sysfs trees (one card with its audio function, two
# cards with ROM file, huge pages and hidden KVM, cards on two NUMA nodes)
# are defined by a private libvirtd's QEMU driver, which keeps every
# managed hostdev, the q35 machine, the pinning and the NUMA binding.
# Starting them needs the hardware, so the test stops at define.
set -u
. "$(dirname "$0")/lib.sh"

e2e_need_root_tools
O=${O:-build}
bin=$E2E_ROOT/$O/tests/test_gpu_xml
[ -x "$bin" ] || e2e_fail "no $bin (make $O/tests/test_gpu_xml)"
work=$(mktemp -d /tmp/fog-e2e-gp.XXXXXX)
e2e_cleanup_add "rm -rf '$work'"
FOG_GPU_XML_DIR=$work "$bin" >"$work/unit.log" 2>&1 ||
    { cat "$work/unit.log" >&2; e2e_fail "test_gpu_xml failed"; }
e2e_start_libvirtd

n=0
for f in "$work"/*.xml; do
    name=$(sed -n 's|.*<name>\(.*\)</name>.*|\1|p' "$f" | head -n1)
    want=$(grep -c '<hostdev ' "$f")
    out=$(virsh -c "$E2E_URI" define "$f" 2>&1) ||
        e2e_fail "libvirtd refused $(basename "$f"): $out"
    virsh -c "$E2E_URI" dumpxml --inactive "$name" >"$f.back" ||
        e2e_fail "no definition of $name"
    got=$(grep -c "<hostdev mode='subsystem' type='pci' managed='yes'" "$f.back")
    [ "$got" = "$want" ] ||
        e2e_fail "$(basename "$f"): $got managed hostdevs defined, $want wanted"
    grep -q "machine='pc-q35" "$f.back" || e2e_fail "$(basename "$f"): not q35"
    grep -q "<emulatorpin cpuset=" "$f.back" ||
        e2e_fail "$(basename "$f"): emulator not pinned"
    grep -q "<memory mode='strict' nodeset=" "$f.back" ||
        e2e_fail "$(basename "$f"): memory not bound to the GPUs' node"
    virsh -c "$E2E_URI" undefine "$name" >/dev/null ||
        e2e_fail "cannot undefine $name"
    n=$((n + 1))
done
[ "$n" -ge 3 ] || e2e_fail "only $n documents to define"
echo "PASS: $n GPU domains defined on a real libvirtd (start needs hardware)"
