/* VM disk backups on the node: a standalone copy of the VM's qcow2
 * overlay sealed with images/bkcrypt for the hub, and a sealed backup
 * opened back into a VM's overlay on any node. */
#pragma once

#include "common/util.h"
#include "images/bkcrypt.h"

#include <stdint.h>

/* Copy `overlay` into a standalone qcow2 (no backing file) with
 * `qemu-img convert` (-U, sharing the image with a running VM, when
 * `running`), encrypt it with `key` into `sealed` (mode 0600) and remove
 * the plain copy, which lives beside `sealed`. *ret_size and sha256 (65
 * chars) describe the ciphertext. 0 or -errno with *ret_err set (caller
 * frees); nothing is left behind on failure. */
int backup_seal_disk(const char *qemu_img, const char *overlay, bool running,
                     const uint8_t key[BKCRYPT_KEY_LEN], const char *sealed,
                     uint64_t *ret_size, char *sha256, char **ret_err);

/* The two halves of backup_seal_disk: the plain qcow2 copy into `plain`,
 * and sealing a plain qcow2 file (a copy, or the delta of an incremental
 * backup) into `sealed`, removing `plain` in every case. */
int backup_copy_disk(const char *qemu_img, const char *overlay, bool running,
                     const char *plain, char **ret_err);
int backup_seal_plain(const char *plain, const uint8_t key[BKCRYPT_KEY_LEN],
                      const char *sealed, uint64_t *ret_size, char *sha256,
                      char **ret_err);

/* Make qcow2 `plain` standalone: drop its backing file reference without
 * touching its clusters (`qemu-img rebase -u -b ""`), as the copy of an
 * incremental backup names the VM's disk as its backing. 0 or -errno with
 * *ret_err set. */
int backup_detach(const char *qemu_img, const char *plain, char **ret_err);

/* Stack the opened backups pieces[0..n-1] (a full one first, then each
 * incremental one on the one before: `qemu-img rebase -u`) and flatten
 * the top into `out`, a standalone qcow2 (written under a temporary name
 * and renamed). The pieces are left rebased. 0 or -errno with *ret_err
 * set. */
int backup_stack(const char *qemu_img, char *const *pieces, size_t n,
                 const char *out, char **ret_err);

/* Decrypt `sealed` with `key` into `overlay` (mode 0600): written under a
 * temporary name, checked to be a qcow2 with no backing file and renamed,
 * so a failure never leaves half a disk. 0 or -errno with *ret_err set
 * (-EBADMSG: wrong key or damaged backup). */
int backup_open_disk(const char *sealed, const uint8_t key[BKCRYPT_KEY_LEN],
                     const char *overlay, char **ret_err);
