/* Disk image content checks: a qcow2 header walk (header, extensions, L1,
 * L2 and refcount tables) and the raw-disk heuristics. Everything read here
 * comes from outside, so every offset and size is checked before use. */
#include "images/imgcheck.h"

#include "common/buf.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_MAX_L1_BYTES (32u << 20)       /* qemu's QCOW_MAX_L1_SIZE */
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)  /* QCOW_MAX_REFTABLE_SIZE */
#define QCOW2_MAX_VIRTUAL_SIZE (1ULL << 56)  /* offsets are 56 bits */

#define QCOW2_INCOMPAT_DIRTY (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ULL << 4)
#define QCOW2_INCOMPAT_KNOWN                                                   \
    (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DATA_FILE | \
     QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2)

#define QCOW2_EXT_END 0x00000000u
#define QCOW2_EXT_DATA_FILE 0x44415441u

#define QCOW2_OFLAG_COMPRESSED (1ULL << 62)
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ULL /* bits 9..55 */

#define TEXT_PROBE_BYTES 4096

const char *imgcheck_format_name(enum imgcheck_format f)
{
    static const char *const names[IMGCHECK_FORMAT_MAX] = { "raw", "qcow2" };
    return f < IMGCHECK_FORMAT_MAX ? names[f] : "unknown";
}

struct probe {
    int fd;
    uint64_t file_size;
    char *reason;
};

static int refuse(struct probe *p, int err, const char *fmt, ...) _printf_(3, 4);
static int refuse(struct probe *p, int err, const char *fmt, ...)
{
    va_list ap;
    free(p->reason);
    va_start(ap, fmt);
    if (vasprintf(&p->reason, fmt, ap) < 0)
        abort();
    va_end(ap);
    return err;
}

/* Read exactly len bytes at off. 0, -ENODATA at end of file, -errno. */
static int read_at(struct probe *p, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(p->fd, (char *)buf + done, len - done,
                          (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            return refuse(p, e, "cannot read the image: %s", strerror(-e));
        }
        if (n == 0)
            return refuse(p, -EINVAL, "image is truncated: %zu bytes missing "
                                      "at offset %llu", len - done,
                          (unsigned long long)(off + done));
        done += (size_t)n;
    }
    return 0;
}

static uint32_t be32_at(const uint8_t *b, size_t off)
{
    uint32_t v;
    memcpy(&v, b + off, sizeof(v));
    return be32toh(v);
}

static uint64_t be64_at(const uint8_t *b, size_t off)
{
    uint64_t v;
    memcpy(&v, b + off, sizeof(v));
    return be64toh(v);
}

/* True when [off, off+len) lies inside the file (no overflow). */
static bool in_file(const struct probe *p, uint64_t off, uint64_t len)
{
    return off <= p->file_size && len <= p->file_size - off;
}

struct qcow2 {
    uint32_t version;
    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint64_t virtual_size;
    uint32_t l1_size;
    uint64_t l1_offset;
    uint64_t reftable_offset;
    uint32_t reftable_clusters;
    uint64_t incompat;
    uint32_t header_len;
    size_t l2_entry_size;
};

/* Header extensions live in the first cluster after the header. */
static int qcow2_check_extensions(struct probe *p, const struct qcow2 *q)
{
    size_t csize = (size_t)q->cluster_size;
    _cleanup_free_ uint8_t *c0 = xmalloc(csize);
    int e;
    if (!in_file(p, 0, csize))
        return refuse(p, -EINVAL, "image is truncated: the qcow2 header "
                                  "cluster is incomplete");
    if ((e = read_at(p, c0, csize, 0)) < 0)
        return e;
    size_t pos = q->header_len;
    while (pos + 8 <= csize) {
        uint32_t type = be32_at(c0, pos), len = be32_at(c0, pos + 4);
        if (type == QCOW2_EXT_END)
            return 0;
        if (type == QCOW2_EXT_DATA_FILE)
            return refuse(p, -EINVAL, "qcow2 has an external data file");
        uint64_t next = pos + 8 + (((uint64_t)len + 7) & ~7ULL);
        if (next > csize)
            return refuse(p, -EINVAL, "qcow2 header extension 0x%08x runs "
                                      "past the header cluster", type);
        pos = (size_t)next;
    }
    return refuse(p, -EINVAL, "qcow2 header extensions have no end marker");
}

/* Every L2 table and data cluster the L1 table points at must be inside the
 * file: a short file is a truncated download or a header that lies. */
static int qcow2_check_l1_l2(struct probe *p, const struct qcow2 *q,
                             uint64_t l1_needed)
{
    size_t csize = (size_t)q->cluster_size;
    size_t l1_bytes = (size_t)q->l1_size * 8;
    _cleanup_free_ uint8_t *l1 = xmalloc(l1_bytes ? l1_bytes : 1);
    _cleanup_free_ uint8_t *l2 = xmalloc(csize);
    int e;

    if (l1_bytes > 0 && (e = read_at(p, l1, l1_bytes, q->l1_offset)) < 0)
        return e;
    for (uint64_t i = 0; i < q->l1_size; i++) {
        uint64_t l2_off = be64_at(l1, (size_t)i * 8) & QCOW2_OFFSET_MASK;
        if (l2_off == 0)
            continue;
        if (i >= l1_needed)
            return refuse(p, -EINVAL, "qcow2 L1 entry %llu maps beyond the "
                                      "virtual size", (unsigned long long)i);
        if (l2_off & (q->cluster_size - 1))
            return refuse(p, -EINVAL, "qcow2 L2 table offset %llu is not "
                                      "cluster aligned",
                          (unsigned long long)l2_off);
        if (!in_file(p, l2_off, csize))
            return refuse(p, -EINVAL, "image is truncated: L2 table at %llu "
                                      "is beyond the end of the file (%llu "
                                      "bytes)", (unsigned long long)l2_off,
                          (unsigned long long)p->file_size);
        if ((e = read_at(p, l2, csize, l2_off)) < 0)
            return e;
        for (size_t j = 0; j + q->l2_entry_size <= csize; j += q->l2_entry_size) {
            uint64_t ent = be64_at(l2, j);
            if (ent & QCOW2_OFLAG_COMPRESSED) {
                unsigned x = 62 - (q->cluster_bits - 8);
                uint64_t off = ent & ((1ULL << x) - 1);
                if (off >= p->file_size)
                    return refuse(p, -EINVAL, "image is truncated: compressed "
                                              "cluster at %llu is beyond the "
                                              "end of the file",
                                  (unsigned long long)off);
                continue;
            }
            uint64_t off = ent & QCOW2_OFFSET_MASK;
            if (off == 0)
                continue;
            if (off & (q->cluster_size - 1))
                return refuse(p, -EINVAL, "qcow2 data cluster offset %llu is "
                                          "not cluster aligned",
                              (unsigned long long)off);
            if (!in_file(p, off, csize))
                return refuse(p, -EINVAL, "image is truncated: data cluster "
                                          "at %llu is beyond the end of the "
                                          "file (%llu bytes)",
                              (unsigned long long)off,
                              (unsigned long long)p->file_size);
        }
    }
    return 0;
}

static int qcow2_check_refcounts(struct probe *p, const struct qcow2 *q)
{
    size_t bytes = (size_t)q->reftable_clusters * (size_t)q->cluster_size;
    _cleanup_free_ uint8_t *t = xmalloc(bytes ? bytes : 1);
    int e;
    if (bytes > 0 && (e = read_at(p, t, bytes, q->reftable_offset)) < 0)
        return e;
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t off = be64_at(t, i) & ~511ULL;
        if (off == 0)
            continue;
        if (!in_file(p, off, q->cluster_size))
            return refuse(p, -EINVAL, "image is truncated: refcount block at "
                                      "%llu is beyond the end of the file",
                          (unsigned long long)off);
    }
    return 0;
}

static int qcow2_check(struct probe *p, const uint8_t *h, size_t hlen,
                       uint64_t max_bytes, struct imgcheck_info *ret)
{
    struct qcow2 q = { 0 };
    int e;

    if (hlen < QCOW2_V2_HEADER_LEN)
        return refuse(p, -EINVAL, "image is truncated: qcow2 header is %zu "
                                  "bytes", hlen);
    q.version = be32_at(h, 4);
    if (q.version != 2 && q.version != 3)
        return refuse(p, -EINVAL, "qcow2 version %u is not supported",
                      q.version);
    if (be64_at(h, 8) != 0 || be32_at(h, 16) != 0)
        return refuse(p, -EINVAL, "qcow2 has a backing file");
    q.cluster_bits = be32_at(h, 20);
    if (q.cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
        q.cluster_bits > QCOW2_MAX_CLUSTER_BITS)
        return refuse(p, -EINVAL, "qcow2 cluster_bits %u is outside %d..%d",
                      q.cluster_bits, QCOW2_MIN_CLUSTER_BITS,
                      QCOW2_MAX_CLUSTER_BITS);
    q.cluster_size = 1ULL << q.cluster_bits;
    q.virtual_size = be64_at(h, 24);
    if (be32_at(h, 32) != 0)
        return refuse(p, -EINVAL, "qcow2 is encrypted");
    q.l1_size = be32_at(h, 36);
    q.l1_offset = be64_at(h, 40);
    q.reftable_offset = be64_at(h, 48);
    q.reftable_clusters = be32_at(h, 56);
    if (be32_at(h, 60) != 0)
        return refuse(p, -EINVAL, "qcow2 has internal snapshots");
    q.header_len = QCOW2_V2_HEADER_LEN;
    q.l2_entry_size = 8;

    if (q.version == 3) {
        if (hlen < QCOW2_V3_HEADER_LEN)
            return refuse(p, -EINVAL, "image is truncated: qcow2 v3 header "
                                      "is %zu bytes", hlen);
        q.incompat = be64_at(h, 72);
        q.header_len = be32_at(h, 100);
        if (q.incompat & QCOW2_INCOMPAT_DATA_FILE)
            return refuse(p, -EINVAL, "qcow2 has an external data file");
        if (q.incompat & ~QCOW2_INCOMPAT_KNOWN)
            return refuse(p, -EINVAL, "qcow2 uses unknown incompatible "
                                      "features 0x%llx",
                          (unsigned long long)(q.incompat &
                                               ~QCOW2_INCOMPAT_KNOWN));
        if (q.incompat & QCOW2_INCOMPAT_CORRUPT)
            return refuse(p, -EINVAL, "qcow2 is marked corrupt");
        if (q.incompat & QCOW2_INCOMPAT_DIRTY)
            return refuse(p, -EINVAL, "qcow2 is marked dirty (repair it "
                                      "with 'qemu-img check -r all')");
        if (q.incompat & QCOW2_INCOMPAT_EXTL2)
            q.l2_entry_size = 16;
        uint32_t order = be32_at(h, 96);
        if (order > 6)
            return refuse(p, -EINVAL, "qcow2 refcount_order %u is invalid",
                          order);
        if (q.header_len < QCOW2_V3_HEADER_LEN || (q.header_len & 7) ||
            q.header_len > q.cluster_size)
            return refuse(p, -EINVAL, "qcow2 header_length %u is invalid",
                          q.header_len);
    }

    if (q.virtual_size == 0)
        return refuse(p, -EINVAL, "qcow2 virtual size is zero");
    if (q.virtual_size > QCOW2_MAX_VIRTUAL_SIZE)
        return refuse(p, -EINVAL, "qcow2 header lies about its size: "
                                  "virtual size %llu is impossible",
                      (unsigned long long)q.virtual_size);
    if (max_bytes && q.virtual_size > max_bytes)
        return refuse(p, -EINVAL, "qcow2 virtual size %llu bytes is over the "
                                  "limit of %llu bytes",
                      (unsigned long long)q.virtual_size,
                      (unsigned long long)max_bytes);

    /* The L1 table must be able to address the whole virtual disk. */
    uint64_t per_l2 = (q.cluster_size / q.l2_entry_size) * q.cluster_size;
    uint64_t l1_needed = (q.virtual_size + per_l2 - 1) / per_l2;
    if (q.l1_size < l1_needed)
        return refuse(p, -EINVAL, "qcow2 header lies about its size: an L1 "
                                  "table of %u entries cannot address %llu "
                                  "bytes", q.l1_size,
                      (unsigned long long)q.virtual_size);
    if ((uint64_t)q.l1_size * 8 > QCOW2_MAX_L1_BYTES)
        return refuse(p, -EINVAL, "qcow2 L1 table of %u entries is too large",
                      q.l1_size);
    if (q.l1_offset == 0 || (q.l1_offset & (q.cluster_size - 1)))
        return refuse(p, -EINVAL, "qcow2 L1 table offset %llu is invalid",
                      (unsigned long long)q.l1_offset);
    if (!in_file(p, q.l1_offset, (uint64_t)q.l1_size * 8))
        return refuse(p, -EINVAL, "image is truncated: the L1 table at %llu "
                                  "is beyond the end of the file (%llu bytes)",
                      (unsigned long long)q.l1_offset,
                      (unsigned long long)p->file_size);

    uint64_t reft_bytes = (uint64_t)q.reftable_clusters * q.cluster_size;
    if (q.reftable_clusters == 0 || reft_bytes > QCOW2_MAX_REFTABLE_BYTES)
        return refuse(p, -EINVAL, "qcow2 refcount table of %u clusters is "
                                  "invalid", q.reftable_clusters);
    if (q.reftable_offset == 0 || (q.reftable_offset & (q.cluster_size - 1)))
        return refuse(p, -EINVAL, "qcow2 refcount table offset %llu is invalid",
                      (unsigned long long)q.reftable_offset);
    if (!in_file(p, q.reftable_offset, reft_bytes))
        return refuse(p, -EINVAL, "image is truncated: the refcount table at "
                                  "%llu is beyond the end of the file (%llu "
                                  "bytes)",
                      (unsigned long long)q.reftable_offset,
                      (unsigned long long)p->file_size);

    if ((e = qcow2_check_extensions(p, &q)) < 0 ||
        (e = qcow2_check_refcounts(p, &q)) < 0 ||
        (e = qcow2_check_l1_l2(p, &q, l1_needed)) < 0)
        return e;

    ret->format = IMGCHECK_QCOW2;
    ret->file_size = p->file_size;
    ret->virtual_size = q.virtual_size;
    return 0;
}

/* Printable ASCII and whitespace only: a script, a config, an HTML page. */
static bool looks_like_text(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = b[i];
        if (!((c >= 0x20 && c < 0x7f) || c == '\n' || c == '\r' ||
              c == '\t' || c == '\f'))
            return false;
    }
    return n > 0;
}

/* Magic numbers of formats we do not take (they would otherwise pass the
 * raw checks and boot as garbage). */
static const char *foreign_format(const uint8_t *b, size_t n)
{
    static const struct {
        size_t off;
        const char *magic;
        size_t len;
        const char *name;
    } magics[] = {
        { 0, "QFI\xfb", 4, "qcow2" },
        { 0, "QED\0", 4, "qed" },
        { 0, "KDMV", 4, "vmdk" },
        { 0, "# Disk DescriptorFile", 21, "vmdk descriptor" },
        { 0, "vhdxfile", 8, "vhdx" },
        { 0, "conectix", 8, "vpc" },
        { 0, "LUKS\xba\xbe", 6, "luks" },
        { 64, "\x7f\x10\xda\xbe", 4, "vdi" },
        { 0, "\x1f\x8b", 2, "gzip" },
        { 0, "\xfd" "7zXZ", 6, "xz" },
        { 0, "\x28\xb5\x2f\xfd", 4, "zstd" },
        { 0, "BZh", 3, "bzip2" },
        { 0, "PK\x03\x04", 4, "zip" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(magics); i++)
        if (n >= magics[i].off + magics[i].len &&
            memcmp(b + magics[i].off, magics[i].magic, magics[i].len) == 0)
            return magics[i].name;
    /* tar: "ustar" at 257 */
    if (n >= 262 && memcmp(b + 257, "ustar", 5) == 0)
        return "tar";
    return NULL;
}

static int raw_check(struct probe *p, const uint8_t *h, size_t hlen,
                     uint64_t max_bytes, struct imgcheck_info *ret)
{
    const char *other = foreign_format(h, hlen);
    if (other)
        return refuse(p, -EINVAL, "%s images are not accepted (only qcow2 "
                                  "and raw)", other);
    if (looks_like_text(h, hlen))
        return refuse(p, -EINVAL, "file is text, not a disk image");
    if (p->file_size % 512)
        return refuse(p, -EINVAL, "file of %llu bytes is neither qcow2 nor a "
                                  "raw disk (not a multiple of 512 bytes)",
                      (unsigned long long)p->file_size);
    ret->format = IMGCHECK_RAW;
    ret->file_size = p->file_size;
    ret->virtual_size = p->file_size;
    (void)max_bytes;
    return 0;
}

int imgcheck_fd(int fd, uint64_t max_bytes, struct imgcheck_info *ret,
                char **ret_reason)
{
    struct probe p = { .fd = fd };
    struct imgcheck_info info = { 0 };
    struct stat st;
    uint8_t head[TEXT_PROBE_BYTES];
    int e;

    if (fstat(fd, &st) < 0) {
        e = refuse(&p, -errno, "cannot stat the image: %s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        e = refuse(&p, -EINVAL, "image is not a regular file");
        goto out;
    }
    p.file_size = (uint64_t)st.st_size;
    if (p.file_size == 0) {
        e = refuse(&p, -EINVAL, "image is empty");
        goto out;
    }
    if (max_bytes && p.file_size > max_bytes) {
        e = refuse(&p, -EINVAL, "image of %llu bytes is over the limit of "
                                "%llu bytes", (unsigned long long)p.file_size,
                   (unsigned long long)max_bytes);
        goto out;
    }
    size_t hlen = p.file_size < sizeof(head) ? (size_t)p.file_size
                                             : sizeof(head);
    if ((e = read_at(&p, head, hlen, 0)) < 0)
        goto out;
    if (hlen >= 4 && be32_at(head, 0) == QCOW2_MAGIC)
        e = qcow2_check(&p, head, hlen, max_bytes, &info);
    else
        e = raw_check(&p, head, hlen, max_bytes, &info);
out:
    if (e < 0) {
        if (ret_reason)
            *ret_reason = TAKE_PTR(p.reason);
        free(p.reason);
        return e;
    }
    free(p.reason);
    *ret = info;
    return 0;
}

int imgcheck_file(const char *path, uint64_t max_bytes,
                  struct imgcheck_info *ret, char **ret_reason)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int e = -errno;
        if (ret_reason)
            *ret_reason = xasprintf("cannot open the image: %s", strerror(-e));
        return e;
    }
    return imgcheck_fd(fd, max_bytes, ret, ret_reason);
}
