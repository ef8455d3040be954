/* The write side of a download: what arrives is copied into one of a
 * few page-aligned buffers, and a thread beside the transfer hashes each
 * full buffer from memory and writes it with O_DIRECT where the file
 * system takes it. A large image then neither costs the copy into the
 * page cache and its writeback nor pushes out of it what the host's VMs
 * use, and the final fdatasync finds nothing left to write. Where
 * O_DIRECT is refused, the same thread writes through the page cache and
 * starts writeback every FLUSH_EVERY bytes. */
#include "images/fetch_sink.h"

#include <errno.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#define SINK_BUF (2u << 20)
#define SINK_NBUF 4
/* O_DIRECT wants file offsets, lengths and memory aligned to the device's
 * logical block size; 4096 covers every common one. */
#define DIO_ALIGN 4096u
#define FLUSH_EVERY (16ull << 20)
#define PREFIX_CHUNK (1u << 20)

struct fetch_sink {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t work;      /* a buffer was queued, or stop */
    pthread_cond_t room;      /* the thread finished a buffer, or failed */
    int fd;                   /* the .part file */
    int dfd;                  /* the same file opened O_DIRECT, or -1 */
    struct sha256_ctx sha;
    uint64_t hashed;          /* the file's first bytes hashed */
    uint64_t prefix;          /* bytes in the file before this download,
                                 read back and hashed first */
    uint64_t flushed;         /* bytes handed to writeback (page cache) */
    uint64_t synced;          /* bytes known to be in the file */
    uint8_t *mem;             /* SINK_NBUF buffers of SINK_BUF bytes */
    uint64_t off[SINK_NBUF];  /* file offset of each buffer's first byte */
    size_t len[SINK_NBUF];
    size_t head, queued;      /* buffers handed to the thread, in order */
    size_t fill;              /* the one being filled (the writer's own) */
    int err;                  /* a write or read error, -errno */
    bool busy;                /* the thread is hashing or writing */
    bool stop;                /* every buffer handed over: end */
};

static uint8_t *buf_at(const struct fetch_sink *s, size_t i)
{
    return s->mem + i * (size_t)SINK_BUF;
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int read_all(int fd, uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -EIO;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Hash what an earlier attempt or process left in the file. */
static int hash_prefix(struct fetch_sink *s)
{
    if (s->prefix == 0)
        return 0;
    uint8_t *b = xmalloc(PREFIX_CHUNK);
    int e = 0;
    while (e == 0 && s->hashed < s->prefix) {
        uint64_t left = s->prefix - s->hashed;
        size_t n = left < PREFIX_CHUNK ? (size_t)left : PREFIX_CHUNK;
        if ((e = read_all(s->fd, b, n, s->hashed)) == 0) {
            sha256_update(&s->sha, n, b);
            s->hashed += n;
        }
    }
    free(b);
    return e;
}

/* Buffer i: hash its bytes not hashed yet (it may start with the end of
 * what was already in the file), then write it. 0 or -errno. */
static int put(struct fetch_sink *s, size_t i)
{
    const uint8_t *p = buf_at(s, i);
    uint64_t off = s->off[i], end = off + s->len[i];
    size_t len = s->len[i], direct = 0;
    if (end > s->hashed) {
        size_t skip = (size_t)(s->hashed - off);
        sha256_update(&s->sha, len - skip, p + skip);
        s->hashed = end;
    }
    if (s->dfd >= 0 && off % DIO_ALIGN == 0) {
        direct = len & ~(size_t)(DIO_ALIGN - 1);
        int e = direct ? write_all(s->dfd, p, direct, off) : 0;
        if (e == -EINVAL) {
            /* Refused after all: the page cache from here on. */
            close(s->dfd);
            s->dfd = -1;
            direct = 0;
        } else if (e < 0) {
            return e;
        }
    }
    if (direct < len) {
        int e = write_all(s->fd, p + direct, len - direct, off + direct);
        if (e < 0)
            return e;
        if (end > s->flushed && end - s->flushed >= FLUSH_EVERY) {
            /* Start writeback without waiting for it (a hint: an error
             * here shows again at the final fdatasync). */
            sync_file_range(s->fd, (off_t)s->flushed,
                            (off_t)(end - s->flushed), SYNC_FILE_RANGE_WRITE);
            s->flushed = end;
        }
    }
    return 0;
}

static void *sink_main(void *arg)
{
    struct fetch_sink *s = arg;
    int e = hash_prefix(s);
    pthread_mutex_lock(&s->lock);
    s->err = e;
    s->busy = false;
    pthread_cond_broadcast(&s->room);
    while (!s->err) {
        while (!s->queued && !s->stop)
            pthread_cond_wait(&s->work, &s->lock);
        if (!s->queued)
            break;
        size_t i = s->head;
        s->busy = true;
        pthread_mutex_unlock(&s->lock);
        e = put(s, i);
        pthread_mutex_lock(&s->lock);
        s->busy = false;
        s->err = e;
        s->head = (s->head + 1) % SINK_NBUF;
        s->queued--;
        pthread_cond_broadcast(&s->room);
    }
    pthread_cond_broadcast(&s->room);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* The buffer being filled starts at the last aligned offset at or before
 * `end`, holding the file's bytes from there (written already). */
static int refill(struct fetch_sink *s, uint64_t end)
{
    size_t f = s->fill;
    s->off[f] = end & ~(uint64_t)(DIO_ALIGN - 1);
    s->len[f] = (size_t)(end - s->off[f]);
    return read_all(s->fd, buf_at(s, f), s->len[f], s->off[f]);
}

int fetch_sink_new(int fd, int dfd, uint64_t have, struct fetch_sink **ret)
{
    struct fetch_sink *s = xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->room, NULL);
    s->fd = fd;
    s->dfd = dfd;
    sha256_init(&s->sha);
    s->prefix = s->flushed = s->synced = have;
    s->busy = true; /* until the prefix is hashed */
    s->mem = mmap(NULL, (size_t)SINK_NBUF * SINK_BUF, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int e = s->mem == MAP_FAILED ? -ENOMEM : refill(s, have);
    if (e == 0 && pthread_create(&s->thread, NULL, sink_main, s) != 0)
        e = -EAGAIN;
    if (e < 0) {
        if (s->mem != MAP_FAILED)
            munmap(s->mem, (size_t)SINK_NBUF * SINK_BUF);
        if (dfd >= 0)
            close(dfd);
        pthread_cond_destroy(&s->room);
        pthread_cond_destroy(&s->work);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return e;
    }
    *ret = s;
    return 0;
}

/* Hand the full buffer to the thread and take the next one. 0 or the
 * thread's error. */
static int submit(struct fetch_sink *s)
{
    uint64_t end = s->off[s->fill] + s->len[s->fill];
    pthread_mutex_lock(&s->lock);
    s->queued++;
    pthread_cond_signal(&s->work);
    while (s->queued == SINK_NBUF && !s->err)
        pthread_cond_wait(&s->room, &s->lock);
    int e = s->err;
    pthread_mutex_unlock(&s->lock);
    s->fill = (s->fill + 1) % SINK_NBUF;
    s->off[s->fill] = end;
    s->len[s->fill] = 0;
    return e;
}

/* Wait until the thread is idle. 0 or its error. */
static int idle(struct fetch_sink *s)
{
    pthread_mutex_lock(&s->lock);
    while ((s->queued || s->busy) && !s->err)
        pthread_cond_wait(&s->room, &s->lock);
    int e = s->err;
    pthread_mutex_unlock(&s->lock);
    return e;
}

int fetch_sink_add(struct fetch_sink *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        size_t f = s->fill, n = SINK_BUF - s->len[f];
        if (n > len)
            n = len;
        memcpy(buf_at(s, f) + s->len[f], p, n);
        s->len[f] += n;
        p += n;
        len -= n;
        if (s->len[f] == SINK_BUF) {
            int e = submit(s);
            if (e < 0)
                return e;
        }
    }
    return 0;
}

int fetch_sink_sync(struct fetch_sink *s)
{
    uint64_t end = s->off[s->fill] + s->len[s->fill];
    if (end == s->synced)
        return idle(s);
    int e = submit(s);
    if (e < 0 || (e = idle(s)) < 0)
        return e;
    s->synced = end;
    return refill(s, end);
}

int fetch_sink_reset(struct fetch_sink *s)
{
    int e = idle(s);
    if (e < 0)
        return e;
    if (ftruncate(s->fd, 0) < 0)
        return -errno;
    sha256_init(&s->sha);
    s->hashed = s->prefix = s->flushed = s->synced = 0;
    s->off[s->fill] = 0;
    s->len[s->fill] = 0;
    return 0;
}

int fetch_sink_finish(struct fetch_sink *s, uint8_t digest[SHA256_LEN])
{
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    int e = s->err;
    if (e == 0)
        sha256_digest(&s->sha, SHA256_LEN, digest);
    if (s->dfd >= 0)
        close(s->dfd);
    munmap(s->mem, (size_t)SINK_NBUF * SINK_BUF);
    pthread_cond_destroy(&s->room);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return e;
}
