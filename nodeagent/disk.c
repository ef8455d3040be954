/* Base images and qcow2 overlays. Overlays are written directly
 * (images/overlay); qemu-img, run only to grow a stopped VM's disk, gets an
 * argv built from paths we generate. */
#include "nodeagent/disk.h"

#include "common/buf.h"
#include "common/fs.h"
#include "common/ids.h"
#include "images/overlay.h"
#include "nodeagent/guestseed.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

char *disk_overlay_path(const char *data_dir, const char *vm_id)
{
    return xasprintf("%s/disks/%s.qcow2", data_dir, vm_id);
}

char *disk_console_path(const char *data_dir, const char *vm_id)
{
    return xasprintf("%s/console/%s.log", data_dir, vm_id);
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

int disk_base_find(const char *image_dir, const char *image, char **ret_path,
                   const char **ret_format, char **ret_err)
{
    if (!name_is_valid(image)) {
        *ret_err = xstrdup("invalid image name");
        return -EINVAL;
    }
    static const char *const exts[] = { "qcow2", "img" };
    for (size_t i = 0; i < ARRAY_SIZE(exts); i++) {
        _cleanup_free_ char *p = xasprintf("%s/%s.%s", image_dir, image, exts[i]);
        _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT)
                continue;
            int r = -errno;
            *ret_err = xasprintf("cannot open base image '%s': %s", p,
                                 strerror(-r));
            return r;
        }
        unsigned char hdr[16] = { 0 };
        ssize_t n = read(fd, hdr, sizeof(hdr));
        if (n == (ssize_t)sizeof(hdr) && memcmp(hdr, "QFI\xfb", 4) == 0) {
            if (be64(hdr + 8) != 0) {
                *ret_err = xasprintf("base image '%s' has a backing file: "
                                     "refused", p);
                return -EPERM;
            }
            *ret_format = "qcow2";
        } else
            *ret_format = "raw";
        *ret_path = TAKE_PTR(p);
        return 0;
    }
    *ret_err = xasprintf("image '%s' not found in %s", image, image_dir);
    return -ENOENT;
}

int disk_run(char *const argv[], char **ret_err)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        int r = -errno;
        *ret_err = xasprintf("pipe: %s", strerror(-r));
        return r;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
    pid_t pid;
    int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    if (e != 0) {
        close(pfd[0]);
        *ret_err = xasprintf("cannot run %s: %s", argv[0], strerror(e));
        return -e;
    }
    struct buf err = BUF_INIT;
    char chunk[512];
    for (;;) {
        ssize_t n = read(pfd[0], chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (err.len < 4096)
            buf_append(&err, chunk, (size_t)n);
    }
    close(pfd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            status = -1;
            break;
        }
    if (status == 0) {
        buf_free(&err);
        return 0;
    }
    char *msg = buf_steal(&err);
    size_t l = msg ? strlen(msg) : 0;
    while (l && (msg[l - 1] == '\n' || msg[l - 1] == ' '))
        msg[--l] = '\0';
    *ret_err = xasprintf("%s failed%s%s", argv[0], l ? ": " : "",
                         l ? msg : "");
    free(msg);
    return -EIO;
}

int disk_overlay_create(const char *base, const char *path, int64_t size_gib,
                        char **ret_err)
{
    if (access(path, F_OK) == 0)
        return 0;
    _cleanup_free_ char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        int r = mkdir_p(dir, 0711);
        if (r < 0) {
            *ret_err = xasprintf("cannot create '%s': %s", dir, strerror(-r));
            return r;
        }
    }
    _cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
    _cleanup_free_ char *why = NULL;
    unlink(tmp);
    if (size_gib < 1 || size_gib > (INT64_C(1) << 30)) {
        *ret_err = xasprintf("invalid disk size %" PRId64 " GiB", size_gib);
        return -EINVAL;
    }
    /* The guest writes tenant data here: readable by its owner only
     * (libvirt hands it to the hypervisor). */
    int r = overlay_create(tmp, base, (uint64_t)size_gib << 30, 0600, &why);
    if (r < 0) {
        unlink(tmp);
        *ret_err = xasprintf("cannot create the disk on '%s': %s", base,
                             why ? why : strerror(-r));
        return r;
    }
    if (rename(tmp, path) < 0) {
        r = -errno;
        unlink(tmp);
        *ret_err = xasprintf("rename '%s': %s", path, strerror(-r));
        return r;
    }
    return 0;
}

int disk_grow(const char *qemu_img, const char *path, int64_t size_gib,
              char **ret_err)
{
    _cleanup_free_ char *size = xasprintf("%" PRId64 "G", size_gib);
    char *argv[] = { (char *)qemu_img, "resize", "-q", "-f", "qcow2",
                     (char *)path, size, NULL };
    return disk_run(argv, ret_err);
}

int disk_remove(const char *data_dir, const char *vm_id)
{
    _cleanup_free_ char *disk = disk_overlay_path(data_dir, vm_id);
    _cleanup_free_ char *tmp = xasprintf("%s.tmp", disk);
    _cleanup_free_ char *con = disk_console_path(data_dir, vm_id);
    _cleanup_free_ char *seed = guestseed_path(data_dir, vm_id);
    /* A backup copy QEMU was writing when the agent stopped. */
    _cleanup_free_ char *bk = xasprintf("%s.backup", disk);
    const char *paths[] = { disk, tmp, con, seed, bk };
    int r = 0;
    for (size_t i = 0; i < ARRAY_SIZE(paths); i++)
        if (unlink(paths[i]) < 0 && errno != ENOENT && r == 0)
            r = -errno;
    return r;
}
