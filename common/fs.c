/* File helpers. */
#include "common/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int file_read(const char *path, size_t max, char **ret_data, size_t *ret_len)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 4096, len = 0;
    _cleanup_free_ char *data = xmalloc(cap + 1);
    for (;;) {
        if (len == cap) {
            if (cap >= max + 1)
                return -EFBIG;
            cap *= 2;
            data = xrealloc(data, cap + 1);
        }
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max)
            return -EFBIG;
    }
    data[len] = '\0';
    if (ret_len)
        *ret_len = len;
    *ret_data = TAKE_PTR(data);
    return 0;
}

int file_write_atomic(const char *path, const void *data, size_t len,
                      mode_t mode)
{
    _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int r = -errno;
            close(fd);
            unlink(tmp);
            return r;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0) {
        int r = -errno;
        close(fd);
        unlink(tmp);
        return r;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        int r = -errno;
        unlink(tmp);
        return r;
    }
    return 0;
}

int mkdir_p(const char *path, mode_t mode)
{
    _cleanup_free_ char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

char *path_join_root(const char *root, const char *path)
{
    if (!root || !*root)
        return xstrdup(path);
    return xasprintf("%s%s", root, path);
}

/* dfd's directory 0700 and, below it, directories 0700 and files without
 * group or other bits. Links are never followed (opened O_NOFOLLOW,
 * changed with fchmodat on the entry itself). Consumes dfd. */
static int make_private_at(int dfd)
{
    struct stat st;
    if (fstat(dfd, &st) < 0 || ((st.st_mode & 07777) != 0700 &&
                                fchmod(dfd, 0700) < 0)) {
        int r = -errno;
        close(dfd);
        return r;
    }
    DIR *d = fdopendir(dfd);
    if (!d) {
        int r = -errno;
        close(dfd);
        return r;
    }
    int r = 0;
    struct dirent *de;
    while (r == 0 && (errno = 0, de = readdir(d))) {
        const char *n = de->d_name;
        if (streq(n, ".") || streq(n, ".."))
            continue;
        if (fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            r = errno == ENOENT ? 0 : -errno; /* gone meanwhile */
        } else if (S_ISDIR(st.st_mode)) {
            int fd = openat(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                                        O_CLOEXEC);
            r = fd < 0 ? -errno : make_private_at(fd);
        } else if (S_ISREG(st.st_mode) && (st.st_mode & 077)) {
            if (fchmodat(dfd, n, st.st_mode & 07700, 0) < 0)
                r = -errno;
        }
    }
    if (r == 0 && errno)
        r = -errno;
    closedir(d);
    return r;
}

int fs_make_private(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return make_private_at(fd);
}

ssize_t fd_read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (uint8_t *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int fd_write_full(int fd, const void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, (const uint8_t *)buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        done += (size_t)w;
    }
    return 0;
}

bool fs_test_fault(const char *env, const char *step)
{
    const char *path = getenv(env);
    if (!path || !*path)
        return false;
    _cleanup_free_ char *text = NULL;
    if (file_read(path, 256, &text, NULL) < 0)
        return false;
    text[strcspn(text, " \n")] = '\0';
    return !*text || streq(text, step);
}
