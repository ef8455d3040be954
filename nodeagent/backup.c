/* Sealing a VM's disk for the hub and opening it back (see backup.h).
 * qemu-img gets an argv of paths we built, never a shell. */
#include "nodeagent/backup.h"

#include "images/imgcheck.h"
#include "nodeagent/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int backup_copy_disk(const char *qemu_img, const char *overlay, bool running,
                     const char *plain, char **ret_err)
{
    unlink(plain);
    const char *argv[10];
    size_t n = 0;
    argv[n++] = qemu_img;
    argv[n++] = "convert";
    argv[n++] = "-q";
    argv[n++] = "-O";
    argv[n++] = "qcow2";
    if (running)
        argv[n++] = "-U";
    argv[n++] = overlay;
    argv[n++] = plain;
    argv[n] = NULL;
    int e = disk_run((char *const *)argv, ret_err);
    if (e < 0)
        unlink(plain);
    return e;
}

int backup_seal_plain(const char *plain, const uint8_t key[BKCRYPT_KEY_LEN],
                      const char *sealed, uint64_t *ret_size, char *sha256,
                      char **ret_err)
{
    _cleanup_close_ int in = open(plain, O_RDONLY | O_CLOEXEC);
    /* The plain copy goes at once: only the open fd reads it now. */
    unlink(plain);
    int e;
    if (in < 0) {
        e = -errno;
        *ret_err = xasprintf("cannot open the disk copy: %s", strerror(-e));
        return e;
    }
    _cleanup_close_ int out = open(sealed, O_WRONLY | O_CREAT | O_TRUNC |
                                   O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0) {
        e = -errno;
        *ret_err = xasprintf("cannot create '%s': %s", sealed, strerror(-e));
        return e;
    }
    e = bkcrypt_encrypt_fd(key, in, out, 0, ret_size, sha256);
    if (e == 0 && fdatasync(out) < 0)
        e = -errno;
    if (e < 0) {
        unlink(sealed);
        *ret_err = xasprintf("cannot encrypt the backup: %s", strerror(-e));
    }
    return e;
}

int backup_seal_disk(const char *qemu_img, const char *overlay, bool running,
                     const uint8_t key[BKCRYPT_KEY_LEN], const char *sealed,
                     uint64_t *ret_size, char *sha256, char **ret_err)
{
    _cleanup_free_ char *plain = xasprintf("%s.plain", sealed);
    int e = backup_copy_disk(qemu_img, overlay, running, plain, ret_err);
    return e < 0 ? e : backup_seal_plain(plain, key, sealed, ret_size, sha256,
                                         ret_err);
}

int backup_detach(const char *qemu_img, const char *plain, char **ret_err)
{
    const char *argv[] = { qemu_img, "rebase", "-q", "-u", "-f", "qcow2",
                           "-b", "", plain, NULL };
    return disk_run((char *const *)argv, ret_err);
}

int backup_stack(const char *qemu_img, char *const *pieces, size_t n,
                 const char *out, char **ret_err)
{
    if (n == 0) {
        *ret_err = xstrdup("no backup to restore");
        return -EINVAL;
    }
    int e = 0;
    for (size_t i = 1; i < n && e == 0; i++) {
        const char *argv[] = { qemu_img, "rebase", "-q", "-u", "-f", "qcow2",
                               "-F", "qcow2", "-b", pieces[i - 1], pieces[i],
                               NULL };
        e = disk_run((char *const *)argv, ret_err);
    }
    if (e < 0)
        return e;
    _cleanup_free_ char *tmp = xasprintf("%s.stack", out);
    unlink(tmp);
    const char *argv[] = { qemu_img, "convert", "-q", "-f", "qcow2", "-O",
                           "qcow2", pieces[n - 1], tmp, NULL };
    if ((e = disk_run((char *const *)argv, ret_err)) == 0 &&
        rename(tmp, out) < 0) {
        e = -errno;
        *ret_err = xasprintf("cannot place the disk: %s", strerror(-e));
    }
    if (e < 0)
        unlink(tmp);
    return e;
}

int backup_open_disk(const char *sealed, const uint8_t key[BKCRYPT_KEY_LEN],
                     const char *overlay, char **ret_err)
{
    _cleanup_close_ int in = open(sealed, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        int e = -errno;
        *ret_err = xasprintf("cannot open backup '%s': %s", sealed,
                             strerror(-e));
        return e;
    }
    _cleanup_free_ char *tmp = xasprintf("%s.restore", overlay);
    _cleanup_close_ int out = open(tmp, O_RDWR | O_CREAT | O_TRUNC |
                                   O_CLOEXEC | O_NOFOLLOW, 0600);
    if (out < 0) {
        int e = -errno;
        *ret_err = xasprintf("cannot create '%s': %s", tmp, strerror(-e));
        return e;
    }
    int e = bkcrypt_decrypt_fd(key, in, out);
    if (e == -EBADMSG)
        *ret_err = xstrdup("the backup does not open with this VM's key "
                           "or is damaged");
    else if (e < 0)
        *ret_err = xasprintf("cannot decrypt the backup: %s", strerror(-e));
    struct imgcheck_info info;
    if (e == 0 && lseek(out, 0, SEEK_SET) == 0 &&
        (e = imgcheck_fd(out, 0, &info, ret_err)) < 0) {
        char *why = *ret_err;
        *ret_err = xasprintf("restored disk refused: %s", why);
        free(why);
    }
    if (e == 0 && fdatasync(out) < 0)
        e = -errno, *ret_err = xasprintf("cannot sync the disk: %s",
                                         strerror(-e));
    if (e == 0 && rename(tmp, overlay) < 0)
        e = -errno, *ret_err = xasprintf("cannot place the disk: %s",
                                         strerror(-e));
    if (e < 0)
        unlink(tmp);
    return e;
}
