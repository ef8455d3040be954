/* What the host's CPU can do for virtual machines, read through a root
 * prefix so tests can point it at a fake tree. */
#pragma once

#include "common/util.h"

/* Whether a /proc/cpuinfo text shows hardware virtualisation: on x86 the
 * vmx or svm flag; on architectures without a "flags" line, true. */
bool cpuinfo_has_virt(const char *text);
/* Whether KVM guests can run: ROOT/dev/kvm is a character device and the
 * CPU shows the extensions (a /dev/kvm in a nested guest without them
 * starts guests that halt at once). */
bool cpuinfo_kvm_usable(const char *root);
