/* qcow2 v3 overlay writer. Layout (64 KiB clusters): 0 header, backing
 * format extension and backing file name; 1 refcount table; 2 refcount
 * block (16-bit counts); 3.. the L1 table, all entries empty, so every read
 * falls through to the base until the guest writes. */
#include "images/overlay.h"

#include "images/imgcheck.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#define OV_CLUSTER_BITS 16
#define OV_CLUSTER (1u << OV_CLUSTER_BITS)
#define OV_HEADER_LEN 104
#define OV_EXT_BACKING_FORMAT 0xe2792acau
#define OV_MAX_BACKING_NAME 1023
#define OV_MAX_L1_BYTES (32u << 20)

static void put32(uint8_t *b, size_t off, uint32_t v)
{
    v = htobe32(v);
    memcpy(b + off, &v, 4);
}

static void put64(uint8_t *b, size_t off, uint64_t v)
{
    v = htobe64(v);
    memcpy(b + off, &v, 8);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int overlay_create(const char *path, const char *base_path, uint64_t size,
                   mode_t mode, char **ret_reason)
{
    struct imgcheck_info info;
    _cleanup_free_ char *why = NULL;
    int e;

    if (!base_path || base_path[0] != '/' ||
        strlen(base_path) > OV_MAX_BACKING_NAME) {
        if (ret_reason)
            *ret_reason = xstrdup("base image path must be absolute and at "
                                  "most 1023 bytes");
        return -EINVAL;
    }
    if ((e = imgcheck_file(base_path, 0, &info, &why)) < 0) {
        if (ret_reason)
            *ret_reason = xasprintf("base image: %s", why ? why : "unusable");
        return e == -ENOENT ? e : -EINVAL;
    }
    if (size == 0)
        size = info.virtual_size;
    size = (size + 511) & ~511ULL;
    if (size < info.virtual_size) {
        if (ret_reason)
            *ret_reason = xasprintf("disk of %llu bytes is smaller than its "
                                    "image (%llu bytes)",
                                    (unsigned long long)size,
                                    (unsigned long long)info.virtual_size);
        return -EINVAL;
    }
    uint64_t per_l1 = (uint64_t)(OV_CLUSTER / 8) * OV_CLUSTER;
    uint64_t l1_size = (size + per_l1 - 1) / per_l1;
    if (l1_size * 8 > OV_MAX_L1_BYTES) {
        if (ret_reason)
            *ret_reason = xasprintf("disk of %llu bytes is too large",
                                    (unsigned long long)size);
        return -EINVAL;
    }
    size_t l1_clusters = (size_t)((l1_size * 8 + OV_CLUSTER - 1) / OV_CLUSTER);
    if (l1_clusters == 0)
        l1_clusters = 1;
    size_t nclusters = 3 + l1_clusters;
    size_t total = nclusters * OV_CLUSTER;
    _cleanup_free_ uint8_t *img = xcalloc(1, total);

    const char *fmt = imgcheck_format_name(info.format);
    size_t fl = strlen(fmt), bl = strlen(base_path);
    size_t ext = OV_HEADER_LEN;
    size_t name_off = ext + 8 + ((fl + 7) & ~(size_t)7) + 8;

    memcpy(img, "QFI\xfb", 4);
    put32(img, 4, 3);                          /* version */
    put64(img, 8, name_off);                   /* backing_file_offset */
    put32(img, 16, (uint32_t)bl);              /* backing_file_size */
    put32(img, 20, OV_CLUSTER_BITS);
    put64(img, 24, size);
    put32(img, 36, (uint32_t)l1_size);
    put64(img, 40, 3ULL * OV_CLUSTER);         /* l1_table_offset */
    put64(img, 48, 1ULL * OV_CLUSTER);         /* refcount_table_offset */
    put32(img, 56, 1);                         /* refcount_table_clusters */
    put32(img, 96, 4);                         /* refcount_order: 16 bits */
    put32(img, 100, OV_HEADER_LEN);
    put32(img, ext, OV_EXT_BACKING_FORMAT);
    put32(img, ext + 4, (uint32_t)fl);
    memcpy(img + ext + 8, fmt, fl);
    /* end-of-extensions marker: the zeros already there */
    memcpy(img + name_off, base_path, bl);

    put64(img + OV_CLUSTER, 0, 2ULL * OV_CLUSTER);
    for (size_t i = 0; i < nclusters; i++)
        img[2 * OV_CLUSTER + 2 * i + 1] = 1;

    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        e = -errno;
        if (ret_reason)
            *ret_reason = xasprintf("cannot create '%s': %s", path,
                                    strerror(-e));
        return e;
    }
    e = write_all(fd, img, total);
    if (e == 0 && fsync(fd) < 0)
        e = -errno;
    if (e < 0) {
        close(fd);
        unlink(path);
        if (ret_reason)
            *ret_reason = xasprintf("cannot write '%s': %s", path,
                                    strerror(-e));
        return e;
    }
    close(fd);
    return 0;
}
