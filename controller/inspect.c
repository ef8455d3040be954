/* Image inspection with libguestfs, loaded at run time: libguestfs0 pulls
 * an appliance's worth of packages (QEMU, LVM, file system tools), so the
 * hub's package only recommends it and runs without inspection when it is
 * missing. guestfs.h gives the types; dlsym gives the functions. */
#include "controller/inspect.h"
#include "common/cpuinfo.h"

#include <dlfcn.h>
#include <errno.h>
#include <guestfs.h>
#include <pthread.h>
#include <stdio.h>

/* The libguestfs entry points we call, resolved once. */
static struct {
    guestfs_h *(*create)(void);
    void (*close)(guestfs_h *);
    void (*set_error_handler)(guestfs_h *, guestfs_error_handler_cb, void *);
    int (*set_backend_settings)(guestfs_h *, char *const *);
    int (*add_drive_opts_argv)(guestfs_h *, const char *,
                               const struct guestfs_add_drive_opts_argv *);
    int (*launch)(guestfs_h *);
    const char *(*last_error)(guestfs_h *);
    char **(*inspect_os)(guestfs_h *);
    char *(*inspect_get_type)(guestfs_h *, const char *);
    char *(*inspect_get_distro)(guestfs_h *, const char *);
    char *(*inspect_get_arch)(guestfs_h *, const char *);
    int (*inspect_get_major_version)(guestfs_h *, const char *);
    int (*inspect_get_minor_version)(guestfs_h *, const char *);
} gfs;
static char *gfs_error; /* why loading failed; NULL when loaded */
static pthread_once_t gfs_once = PTHREAD_ONCE_INIT;

static void gfs_load(void)
{
    void *h = dlopen("libguestfs.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        gfs_error = xasprintf("libguestfs is not installed (%s); install "
                              "libguestfs0 or run with --no-inspect", dlerror());
        return;
    }
    struct { void **fn; const char *name; } syms[] = {
        { (void **)&gfs.create, "guestfs_create" },
        { (void **)&gfs.close, "guestfs_close" },
        { (void **)&gfs.set_error_handler, "guestfs_set_error_handler" },
        { (void **)&gfs.set_backend_settings, "guestfs_set_backend_settings" },
        { (void **)&gfs.add_drive_opts_argv, "guestfs_add_drive_opts_argv" },
        { (void **)&gfs.launch, "guestfs_launch" },
        { (void **)&gfs.last_error, "guestfs_last_error" },
        { (void **)&gfs.inspect_os, "guestfs_inspect_os" },
        { (void **)&gfs.inspect_get_type, "guestfs_inspect_get_type" },
        { (void **)&gfs.inspect_get_distro, "guestfs_inspect_get_distro" },
        { (void **)&gfs.inspect_get_arch, "guestfs_inspect_get_arch" },
        { (void **)&gfs.inspect_get_major_version,
          "guestfs_inspect_get_major_version" },
        { (void **)&gfs.inspect_get_minor_version,
          "guestfs_inspect_get_minor_version" },
    };
    for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        *syms[i].fn = dlsym(h, syms[i].name);
        if (!*syms[i].fn) {
            gfs_error = xasprintf("libguestfs lacks %s", syms[i].name);
            dlclose(h);
            return;
        }
    }
}

void inspect_result_clear(struct inspect_result *r)
{
    free(r->os_type);
    free(r->distro);
    free(r->version);
    free(r->arch);
    memset(r, 0, sizeof(*r));
}

static char *dup_or_null(char *s)
{
    /* libguestfs returns malloc'd strings; "unknown" carries nothing. */
    if (s && strcmp(s, "unknown") == 0) {
        free(s);
        return NULL;
    }
    return s;
}

int inspect_image(const char *path, const char *format,
                  struct inspect_result *ret, char **ret_error)
{
    pthread_once(&gfs_once, gfs_load);
    if (gfs_error) {
        *ret_error = xstrdup(gfs_error);
        return -ENOTSUP;
    }
    guestfs_h *g = gfs.create();
    int r = -EIO;
    char **roots = NULL;

    if (!g) {
        *ret_error = xstrdup("cannot create a libguestfs handle");
        return -ENOMEM;
    }
    gfs.set_error_handler(g, NULL, NULL);
    /* With a /dev/kvm the CPU cannot use (nested, no vmx/svm), QEMU's KVM
     * accelerator hangs the appliance: use TCG, which works, slowly. */
    if (!getenv("LIBGUESTFS_BACKEND_SETTINGS") && !cpuinfo_kvm_usable("/")) {
        char *settings[] = { (char *)"force_tcg", NULL };
        gfs.set_backend_settings(g, settings);
    }
    struct guestfs_add_drive_opts_argv opts = {
        .bitmask = GUESTFS_ADD_DRIVE_OPTS_FORMAT_BITMASK |
                   GUESTFS_ADD_DRIVE_OPTS_READONLY_BITMASK,
        .format = format,
        .readonly = 1,
    };
    if (gfs.add_drive_opts_argv(g, path, &opts) < 0 || gfs.launch(g) < 0) {
        const char *e = gfs.last_error(g);
        *ret_error = xstrdup(e ? e : "libguestfs appliance failed");
        goto out;
    }
    roots = gfs.inspect_os(g);
    if (!roots) {
        const char *e = gfs.last_error(g);
        *ret_error = xstrdup(e ? e : "inspection failed");
        goto out;
    }
    if (!roots[0]) {
        r = -ENOENT;
        goto out;
    }
    struct inspect_result res = { 0 };
    res.os_type = dup_or_null(gfs.inspect_get_type(g, roots[0]));
    res.distro = dup_or_null(gfs.inspect_get_distro(g, roots[0]));
    res.arch = dup_or_null(gfs.inspect_get_arch(g, roots[0]));
    int major = gfs.inspect_get_major_version(g, roots[0]);
    int minor = gfs.inspect_get_minor_version(g, roots[0]);
    if (major >= 0)
        res.version = xasprintf("%d.%d", major, minor < 0 ? 0 : minor);
    *ret = res;
    r = 0;
out:
    if (roots) {
        for (char **p = roots; *p; p++)
            free(*p);
        free(roots);
    }
    gfs.close(g);
    return r;
}
