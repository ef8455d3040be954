/* VM disks on the node: base images from the local image directory or the
 * cache, qcow2 overlays written on them directly and grown with qemu-img
 * (run without a shell, with only paths we built), and removal of a VM's
 * files. */
#pragma once

#include "common/util.h"

/* Per-VM files under the data dir; caller frees. */
char *disk_overlay_path(const char *data_dir, const char *vm_id);
char *disk_console_path(const char *data_dir, const char *vm_id);

/* Find base image `image` (a valid name) as IMAGE_DIR/<image>.qcow2 or
 * IMAGE_DIR/<image>.img and tell its format ("qcow2" or "raw") from its
 * header. A qcow2 base with a backing file of its own is refused.
 * 0, -EINVAL (bad name), -ENOENT, -EPERM (backing file) or -errno;
 * *ret_err gets a message (caller frees) on failure. */
int disk_base_find(const char *image_dir, const char *image, char **ret_path,
                   const char **ret_format, char **ret_err);

/* Create the overlay `path` (mode 0600) on `base` (absolute; qcow2 or raw,
 * told from its content) with virtual size size_gib unless it already
 * exists (a VM's disk is never recreated). Written under a temporary name
 * and renamed, so a crash never leaves half a disk. 0 or -errno with
 * *ret_err set (-EINVAL also when the base is larger than size_gib). */
int disk_overlay_create(const char *base, const char *path, int64_t size_gib,
                        char **ret_err);
/* Grow the qcow2 image at `path` to size_gib. 0 or -errno with *ret_err. */
int disk_grow(const char *qemu_img, const char *path, int64_t size_gib,
              char **ret_err);
/* Remove the VM's overlay, console log and seed; missing files are fine.
 * 0 or -errno. */
int disk_remove(const char *data_dir, const char *vm_id);

/* Run argv (argv[0] looked up in PATH, no shell) to completion. 0 when it
 * exits 0; otherwise -EIO with its stderr (trimmed) in *ret_err. */
int disk_run(char *const argv[], char **ret_err);
