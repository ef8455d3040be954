/* Host inventory: CPUs, memory, disk under the data directory, KVM, arch
 * and CPU model. Every /proc and /dev path goes through a root prefix so
 * tests can point it at a fake tree. */
#pragma once

#include "common/util.h"

#include <jansson.h>

struct inventory {
    int64_t vcpus;
    int64_t memory_mib;
    int64_t disk_gib;       /* size of the file system holding the data dir */
    int64_t free_disk_gib;  /* available to us there */
    bool kvm;
    char *arch;             /* uname machine, e.g. x86_64 */
    char *cpu_model;        /* may be "" */
    /* Kept for the host's owner (inventory_reserve), already subtracted. */
    int64_t reserved_vcpus, reserved_memory_mib, reserved_disk_gib;
};

/* Collect the inventory reading ROOT/proc/cpuinfo, ROOT/proc/meminfo,
 * ROOT/sys/devices/system/cpu/online and ROOT/dev/kvm, and statvfs() of
 * data_dir. 0, or -errno when a mandatory fact is unreadable (logged). */
int inventory_collect(const char *root, const char *data_dir,
                      struct inventory *ret);
void inventory_clear(struct inventory *inv);

/* Keep part of the host for its owner: subtract `vcpus`, `memory_mib` and
 * `disk_gib` (each >= 0) from what the inventory offers (disk_gib and
 * free_disk_gib floor at 0). -ERANGE (logged) when less than one vCPU or
 * 64 MiB would be left to offer, else 0. */
int inventory_reserve(struct inventory *inv, int64_t vcpus,
                      int64_t memory_mib, int64_t disk_gib);

/* Parsers, exposed for tests. Count of "processor" lines and the first
 * "model name" (or "cpu model"/"Processor") of a cpuinfo text; model is
 * NULL when absent (caller frees). */
void inventory_parse_cpuinfo(const char *text, int64_t *ret_cpus,
                             char **ret_model);
/* MemTotal of a meminfo text in MiB. 0 or -EINVAL. */
int inventory_parse_meminfo(const char *text, int64_t *ret_mib);
/* Number of CPUs in a cpu list "0-3,8,10-11". 0 or -EINVAL. */
int inventory_parse_cpulist(const char *text, int64_t *ret_n);

/* The inventory as the contract carries it at register and in status
 * posts (api/agentmsg.h): every fact given, memory at least
 * NODE_MIN_MEMORY_MIB; *ret owns copies of the strings. */
struct am_inventory;
void inventory_to_am(const struct inventory *inv, struct am_inventory *ret);

/* The inventory as JSON (new reference). `with_free` adds free_disk_gib. */
json_t *inventory_to_json(const struct inventory *inv, bool with_free);
