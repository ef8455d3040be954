/* Host inventory read through a configurable root (STYLE.md: every /proc,
 * /sys and /dev path is built from a root prefix). */
#include "nodeagent/inventory.h"

#include "api/agentmsg.h"
#include "common/cpuinfo.h"

#include "common/fs.h"
#include "common/log.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>

/* Value after "key<spaces>:" on a line starting with key, or NULL. */
static const char *line_value(const char *line, const char *key)
{
    size_t kl = strlen(key);
    if (strncmp(line, key, kl) != 0)
        return NULL;
    const char *p = line + kl;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != ':')
        return NULL;
    p++;
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static char *clean_model(const char *s, size_t len)
{
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (len > 128)
        len = 128;
    char *m = xstrndup(s, len);
    for (char *p = m; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    return m;
}

void inventory_parse_cpuinfo(const char *text, int64_t *ret_cpus,
                             char **ret_model)
{
    static const char *const model_keys[] = { "model name", "cpu model",
                                              "Processor", "cpu" };
    int64_t n = 0;
    char *model = NULL;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        _cleanup_free_ char *l = xstrndup(line, len);
        if (line_value(l, "processor"))
            n++;
        for (size_t k = 0; !model && k < ARRAY_SIZE(model_keys); k++) {
            const char *v = line_value(l, model_keys[k]);
            if (v && *v)
                model = clean_model(v, strlen(v));
        }
        line = end ? end + 1 : NULL;
    }
    *ret_cpus = n;
    *ret_model = model;
}

int inventory_parse_meminfo(const char *text, int64_t *ret_mib)
{
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        _cleanup_free_ char *l = xstrndup(line, len);
        const char *v = line_value(l, "MemTotal");
        if (v) {
            char *unit;
            errno = 0;
            unsigned long long kib = strtoull(v, &unit, 10);
            if (errno || unit == v)
                return -EINVAL;
            while (*unit == ' ')
                unit++;
            if (*unit && !startswith(unit, "kB"))
                return -EINVAL;
            *ret_mib = (int64_t)(kib / 1024);
            return 0;
        }
        line = end ? end + 1 : NULL;
    }
    return -EINVAL;
}

int inventory_parse_cpulist(const char *text, int64_t *ret_n)
{
    int64_t n = 0;
    const char *p = text;
    while (*p && *p != '\n') {
        char *end;
        errno = 0;
        long a = strtol(p, &end, 10), b;
        if (errno || end == p || a < 0)
            return -EINVAL;
        b = a;
        p = end;
        if (*p == '-') {
            const char *q = p + 1;
            b = strtol(q, &end, 10);
            if (errno || end == q || b < a)
                return -EINVAL;
            p = end;
        }
        n += b - a + 1;
        if (*p == ',')
            p++;
        else if (*p && *p != '\n')
            return -EINVAL;
    }
    if (n == 0)
        return -EINVAL;
    *ret_n = n;
    return 0;
}

static int read_rooted(const char *root, const char *path, char **ret)
{
    _cleanup_free_ char *full = path_join_root(root, path);
    return file_read(full, 4 << 20, ret, NULL);
}

int inventory_collect(const char *root, const char *data_dir,
                      struct inventory *ret)
{
    struct inventory inv = { 0 };
    _cleanup_free_ char *cpuinfo = NULL, *meminfo = NULL, *online = NULL;
    char *model = NULL;
    int r;

    if (read_rooted(root, "/proc/cpuinfo", &cpuinfo) == 0)
        inventory_parse_cpuinfo(cpuinfo, &inv.vcpus, &model);
    if (read_rooted(root, "/sys/devices/system/cpu/online", &online) == 0) {
        int64_t n;
        if (inventory_parse_cpulist(online, &n) == 0)
            inv.vcpus = n;
    }
    if (inv.vcpus <= 0) {
        log_error("cannot count CPUs under root '%s'", root);
        free(model);
        return -ENOENT;
    }
    if ((r = read_rooted(root, "/proc/meminfo", &meminfo)) < 0 ||
        (r = inventory_parse_meminfo(meminfo, &inv.memory_mib)) < 0) {
        log_error("cannot read the memory size from '%s/proc/meminfo': %s",
                  streq(root, "/") ? "" : root, strerror(-r));
        free(model);
        return r;
    }
    struct statvfs sv;
    if (statvfs(data_dir, &sv) < 0) {
        r = -errno;
        log_error("statvfs '%s': %m", data_dir);
        free(model);
        return r;
    }
    inv.disk_gib = (int64_t)(((uint64_t)sv.f_blocks * sv.f_frsize) >> 30);
    inv.free_disk_gib = (int64_t)(((uint64_t)sv.f_bavail * sv.f_frsize) >> 30);

    inv.kvm = cpuinfo_kvm_usable(root);

    struct utsname u;
    inv.arch = xstrdup(uname(&u) == 0 ? u.machine : "unknown");
    inv.cpu_model = model ? model : xstrdup("");
    *ret = inv;
    return 0;
}

void inventory_clear(struct inventory *inv)
{
    free(inv->arch);
    free(inv->cpu_model);
    *inv = (struct inventory){ 0 };
}

int inventory_reserve(struct inventory *inv, int64_t vcpus,
                      int64_t memory_mib, int64_t disk_gib)
{
    if (inv->vcpus - vcpus < 1 || inv->memory_mib - memory_mib < 64) {
        log_error("the reservation (%lld vCPUs, %lld MiB) leaves nothing to "
                  "offer of this host's %lld vCPUs and %lld MiB",
                  (long long)vcpus, (long long)memory_mib,
                  (long long)inv->vcpus, (long long)inv->memory_mib);
        return -ERANGE;
    }
    inv->vcpus -= vcpus;
    inv->memory_mib -= memory_mib;
    inv->reserved_vcpus = vcpus;
    inv->reserved_memory_mib = memory_mib;
    inv->reserved_disk_gib = inv->disk_gib > disk_gib ? disk_gib : inv->disk_gib;
    inv->disk_gib = inv->disk_gib > disk_gib ? inv->disk_gib - disk_gib : 0;
    inv->free_disk_gib = inv->free_disk_gib > disk_gib ?
                             inv->free_disk_gib - disk_gib : 0;
    return 0;
}

void inventory_to_am(const struct inventory *inv, struct am_inventory *ret)
{
    *ret = (struct am_inventory){
        .has = AM_INV_ALL,
        .vcpus = inv->vcpus,
        .memory_mib = inv->memory_mib < NODE_MIN_MEMORY_MIB ?
                          NODE_MIN_MEMORY_MIB : inv->memory_mib,
        .disk_gib = inv->disk_gib,
        .kvm = inv->kvm,
        .arch = xstrdup(inv->arch ? inv->arch : ""),
        .cpu_model = xstrdup(inv->cpu_model ? inv->cpu_model : ""),
    };
    /* Sent only when there is one, so a controller that predates the
     * reservation members still accepts an agent keeping nothing back. */
    if (inv->reserved_vcpus || inv->reserved_memory_mib ||
        inv->reserved_disk_gib) {
        ret->has |= AM_INV_RESERVED;
        ret->reserved_vcpus = inv->reserved_vcpus;
        ret->reserved_memory_mib = inv->reserved_memory_mib;
        ret->reserved_disk_gib = inv->reserved_disk_gib;
    }
}

json_t *inventory_to_json(const struct inventory *inv, bool with_free)
{
    json_t *j = json_pack("{s:I, s:I, s:I, s:b, s:s, s:s}", "vcpus",
                          (json_int_t)inv->vcpus, "memory_mib",
                          (json_int_t)(inv->memory_mib < 64 ? 64 :
                                                              inv->memory_mib),
                          "disk_gib", (json_int_t)inv->disk_gib, "kvm",
                          inv->kvm, "arch", inv->arch ? inv->arch : "",
                          "cpu_model", inv->cpu_model ? inv->cpu_model : "");
    if (with_free)
        json_object_set_new(j, "free_disk_gib",
                            json_integer(inv->free_disk_gib));
    return j;
}
