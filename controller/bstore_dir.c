/* The directory backup store: one file per blob under the controller's
 * data dir, `<id>.part` while it uploads, renamed to `<id>` once its
 * digest checked out. A process-wide lock serialises writers, so an
 * append's offset check and its write are one step. The digest of an
 * upload is kept up to date as its bytes arrive, so a commit need not
 * read the whole blob again (it does after a restart, or when more
 * uploads are open than are tracked). */
#include "controller/bstore.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

/* Uploads whose running digest is kept; one past these is hashed whole
 * at its commit. */
#define RUNNING_MAX 32

/* The SHA-256 of an upload's first `bytes` bytes, as they were written. */
struct running {
    char id[UUID_STR_LEN + 1]; /* "" when the slot is free */
    struct sha256_ctx ctx;
    uint64_t bytes;
};

struct bstore_dir {
    struct bstore pub;
    char *dir;
    pthread_mutex_t lock;
    struct running run[RUNNING_MAX]; /* under lock */
};

#define DIR_OF(s) ((struct bstore_dir *)(s))

bool bstore_id_ok(const char *id)
{
    return id && uuid_is_valid(id);
}

void bstore_ids_free(char **ids)
{
    for (char **p = ids; p && *p; p++)
        free(*p);
    free(ids);
}

static char *dir_path(struct bstore_dir *d, const char *id, bool part)
{
    return xasprintf("%s/%s%s", d->dir, id, part ? ".part" : "");
}

/* Under lock: the running digest of `id`, or NULL. */
static struct running *running_find(struct bstore_dir *d, const char *id)
{
    for (size_t i = 0; i < RUNNING_MAX; i++)
        if (streq(d->run[i].id, id))
            return &d->run[i];
    return NULL;
}

/* Under lock: forget the running digest of `id`, if any. */
static void running_drop(struct bstore_dir *d, const char *id)
{
    struct running *r = running_find(d, id);
    if (r)
        r->id[0] = '\0';
}

/* Under lock: bytes `data` were written at `offset` of upload `id`. The
 * digest follows when it covered everything before them; one begins at
 * offset 0 in a free slot. */
static void running_add(struct bstore_dir *d, const char *id,
                        uint64_t offset, const void *data, size_t len)
{
    struct running *r = running_find(d, id);
    if (!r && offset == 0) {
        for (size_t i = 0; i < RUNNING_MAX && !r; i++)
            if (!d->run[i].id[0])
                r = &d->run[i];
        if (!r)
            return;
        snprintf(r->id, sizeof(r->id), "%s", id);
        sha256_init(&r->ctx);
        r->bytes = 0;
    }
    if (!r)
        return;
    if (r->bytes != offset) {
        r->id[0] = '\0'; /* not all of it seen: hashed at the commit */
        return;
    }
    sha256_update(&r->ctx, len, data);
    r->bytes += len;
}

static int size_of(const char *path, uint64_t *ret)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    *ret = (uint64_t)st.st_size;
    return 0;
}

static int dir_begin(struct bstore *s, const char *id)
{
    struct bstore_dir *d = DIR_OF(s);
    if (!bstore_id_ok(id))
        return -EINVAL;
    _cleanup_free_ char *fin = dir_path(d, id, false);
    _cleanup_free_ char *part = dir_path(d, id, true);
    pthread_mutex_lock(&d->lock);
    int e = 0;
    if (access(fin, F_OK) == 0) {
        e = -EEXIST;
    } else {
        int fd = open(part, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                      0600);
        if (fd < 0)
            e = -errno;
        else
            close(fd);
    }
    pthread_mutex_unlock(&d->lock);
    return e;
}

static int dir_append(struct bstore *s, const char *id, uint64_t offset,
                      const void *data, size_t len, uint64_t *ret_size)
{
    struct bstore_dir *d = DIR_OF(s);
    if (!bstore_id_ok(id))
        return -EINVAL;
    _cleanup_free_ char *part = dir_path(d, id, true);
    pthread_mutex_lock(&d->lock);
    uint64_t have = 0;
    int e = size_of(part, &have);
    if (e == 0 && offset != have)
        e = -ESPIPE;
    else if (e == 0 && s->max_size && (len > s->max_size ||
                                       have > s->max_size - len))
        e = -EFBIG;
    /* Test seam: a disk that takes 3 s a write. */
    if (e == 0 && fs_test_fault("FOG_TEST_FAULT", "bstore-slow"))
        nanosleep(&(struct timespec){ 3, 0 }, NULL);
    if (e == 0 && len > 0) {
        _cleanup_close_ int fd = open(part, O_WRONLY | O_CLOEXEC |
                                      O_NOFOLLOW);
        if (fd < 0)
            e = -errno;
        size_t done = 0;
        while (e == 0 && done < len) {
            ssize_t n = pwrite(fd, (const uint8_t *)data + done, len - done,
                               (off_t)(offset + done));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                e = n < 0 ? -errno : -EIO;
            else
                done += (size_t)n;
        }
        /* A short write leaves no partial chunk: the sender resends it. */
        if (e < 0 && ftruncate(fd, (off_t)have) < 0)
            e = -errno;
        if (e == 0) {
            running_add(d, id, have, data, len);
            have += len;
        }
    }
    pthread_mutex_unlock(&d->lock);
    if (ret_size && (e == 0 || e == -ESPIPE))
        *ret_size = have;
    return e;
}

static int dir_stat(struct bstore *s, const char *id, uint64_t *ret_size,
                    bool *ret_committed)
{
    struct bstore_dir *d = DIR_OF(s);
    if (!bstore_id_ok(id))
        return -EINVAL;
    _cleanup_free_ char *fin = dir_path(d, id, false);
    _cleanup_free_ char *part = dir_path(d, id, true);
    uint64_t n = 0;
    bool committed = true;
    pthread_mutex_lock(&d->lock);
    int e = size_of(fin, &n);
    if (e == -ENOENT) {
        committed = false;
        e = size_of(part, &n);
    }
    pthread_mutex_unlock(&d->lock);
    if (e < 0)
        return e;
    if (ret_size)
        *ret_size = n;
    if (ret_committed)
        *ret_committed = committed;
    return 0;
}

static int dir_commit(struct bstore *s, const char *id, const char *sha256,
                      uint64_t size)
{
    struct bstore_dir *d = DIR_OF(s);
    if (!bstore_id_ok(id))
        return -EINVAL;
    _cleanup_free_ char *fin = dir_path(d, id, false);
    _cleanup_free_ char *part = dir_path(d, id, true);
    pthread_mutex_lock(&d->lock);
    int e = 0;
    _cleanup_close_ int fd = open(part, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        e = -errno;
    char got[65];
    uint64_t n = 0;
    struct running *r = e == 0 ? running_find(d, id) : NULL;
    if (r && size_of(part, &n) == 0 && n == r->bytes) {
        /* Every byte of the file went through the running digest. */
        struct sha256_ctx c = r->ctx;
        uint8_t dig[SHA256_DIGEST_SIZE];
        sha256_digest(&c, sizeof(dig), dig);
        hex_encode(dig, sizeof(dig), got);
    } else if (e == 0) {
        e = sha256_fd(fd, &n, got);
    }
    running_drop(d, id);
    if (e == 0 && (n != size || !sha256 || !streq(got, sha256))) {
        unlink(part);
        e = -EBADMSG;
    }
    if (e == 0 && fdatasync(fd) < 0)
        e = -errno;
    if (e == 0 && rename(part, fin) < 0)
        e = -errno;
    pthread_mutex_unlock(&d->lock);
    return e;
}

static int dir_open(struct bstore *s, const char *id, int *ret_fd,
                    uint64_t *ret_size)
{
    struct bstore_dir *d = DIR_OF(s);
    if (!bstore_id_ok(id))
        return -EINVAL;
    _cleanup_free_ char *fin = dir_path(d, id, false);
    int fd = open(fin, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    *ret_fd = fd;
    *ret_size = (uint64_t)st.st_size;
    return 0;
}

static int dir_remove(struct bstore *s, const char *id)
{
    struct bstore_dir *d = DIR_OF(s);
    if (!bstore_id_ok(id))
        return -EINVAL;
    _cleanup_free_ char *fin = dir_path(d, id, false);
    _cleanup_free_ char *part = dir_path(d, id, true);
    pthread_mutex_lock(&d->lock);
    running_drop(d, id);
    int e1 = unlink(fin) < 0 ? -errno : 0;
    int e2 = unlink(part) < 0 ? -errno : 0;
    pthread_mutex_unlock(&d->lock);
    if (e1 == 0 || e2 == 0)
        return 0;
    return e1 != -ENOENT ? e1 : e2;
}

static int dir_list(struct bstore *s, char ***ret_ids, size_t *ret_n)
{
    struct bstore_dir *d = DIR_OF(s);
    DIR *dh = opendir(d->dir);
    if (!dh)
        return -errno;
    size_t n = 0, cap = 8;
    char **ids = xcalloc(cap, sizeof(*ids));
    struct dirent *de;
    while ((de = readdir(dh))) {
        if (!bstore_id_ok(de->d_name))
            continue; /* uploads (.part) and anything not ours */
        if (n + 1 >= cap)
            ids = xrealloc(ids, (cap *= 2) * sizeof(*ids));
        ids[n++] = xstrdup(de->d_name);
        ids[n] = NULL;
    }
    closedir(dh);
    *ret_ids = ids;
    if (ret_n)
        *ret_n = n;
    return 0;
}

static int dir_entries(struct bstore *s, struct bstore_entry **ret,
                       size_t *ret_n)
{
    struct bstore_dir *d = DIR_OF(s);
    DIR *dh = opendir(d->dir);
    if (!dh)
        return -errno;
    size_t n = 0, cap = 8;
    struct bstore_entry *v = xcalloc(cap, sizeof(*v));
    struct dirent *de;
    while ((de = readdir(dh))) {
        char id[UUID_STR_LEN + 1];
        size_t len = strlen(de->d_name);
        bool part = len == UUID_STR_LEN + 5 &&
                    streq(de->d_name + UUID_STR_LEN, ".part");
        if (len != UUID_STR_LEN && !part)
            continue;
        memcpy(id, de->d_name, UUID_STR_LEN);
        id[UUID_STR_LEN] = '\0';
        struct stat st;
        if (!bstore_id_ok(id) ||
            fstatat(dirfd(dh), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode))
            continue; /* not ours, or gone meanwhile */
        if (n == cap)
            v = xrealloc(v, (cap *= 2) * sizeof(*v));
        memcpy(v[n].id, id, sizeof(id));
        v[n].committed = !part;
        v[n].mtime = (int64_t)st.st_mtime;
        n++;
    }
    closedir(dh);
    *ret = v;
    *ret_n = n;
    return 0;
}

static void dir_free(struct bstore *s)
{
    struct bstore_dir *d = DIR_OF(s);
    pthread_mutex_destroy(&d->lock);
    free(d->dir);
    free(d);
}

static const struct bstore_ops dir_ops = {
    .begin = dir_begin,
    .append = dir_append,
    .stat = dir_stat,
    .commit = dir_commit,
    .open = dir_open,
    .remove = dir_remove,
    .list = dir_list,
    .entries = dir_entries,
    .free = dir_free,
};

int bstore_dir_new(const char *dir, uint64_t max_size, struct bstore **ret)
{
    int e = mkdir_p(dir, 0700);
    if (e == 0 && chmod(dir, 0700) < 0)
        e = -errno;
    if (e < 0) {
        log_error("backup store %s: %s", dir, strerror(-e));
        return e;
    }
    struct bstore_dir *d = xcalloc(1, sizeof(*d));
    d->pub.ops = &dir_ops;
    d->pub.max_size = max_size;
    d->dir = xstrdup(dir);
    pthread_mutex_init(&d->lock, NULL);
    *ret = &d->pub;
    return 0;
}
