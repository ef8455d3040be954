/* A VM placed from a backup (restore, migration, evacuation): its sealed
 * disk fetched from the hub and opened into the VM's overlay before the
 * domain is defined, so such a VM never starts on a fresh disk. */
#pragma once

#include "common/util.h"

#include <jansson.h>

struct fetch_cache;

/* Make the overlay `disk` of desired entry `vm` from its AGENT_VM_RESTORE
 * backup: GET AGENT_BACKUP_PATH/{backup}/blob from `controller` through
 * `cache` (resumed, size and sha256 checked before use), decrypted with
 * the entry's AGENT_VM_BACKUP_KEY (images/bkcrypt) by backup_open_disk.
 * The sealed copy is removed afterwards. 0, or -errno with *ret_err (caller
 * frees) beginning AGENT_RESTORE_FAILED_REASON; no overlay is left on
 * failure. With AGENT_RESTORE_CHAIN each backup of the chain is fetched
 * and opened the same way, and they are stacked and flattened into the
 * overlay with `qemu_img` (backup_stack). */
int restore_disk(struct fetch_cache *cache, const char *controller,
                 const char *qemu_img, const json_t *vm, const char *disk,
                 char **ret_err);
