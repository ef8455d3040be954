/* Image inspection with libguestfs. */
#include "controller/inspect.h"
#include "common/cpuinfo.h"

#include <errno.h>
#include <guestfs.h>
#include <stdio.h>

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
    guestfs_h *g = guestfs_create();
    int r = -EIO;
    char **roots = NULL;

    if (!g) {
        *ret_error = xstrdup("cannot create a libguestfs handle");
        return -ENOMEM;
    }
    guestfs_set_error_handler(g, NULL, NULL);
    /* With a /dev/kvm the CPU cannot use (nested, no vmx/svm), QEMU's KVM
     * accelerator hangs the appliance: use TCG, which works, slowly. */
    if (!getenv("LIBGUESTFS_BACKEND_SETTINGS") && !cpuinfo_kvm_usable("/")) {
        char *settings[] = { (char *)"force_tcg", NULL };
        guestfs_set_backend_settings(g, settings);
    }
    if (guestfs_add_drive_opts(g, path, GUESTFS_ADD_DRIVE_OPTS_FORMAT, format,
                               GUESTFS_ADD_DRIVE_OPTS_READONLY, 1, -1) < 0 ||
        guestfs_launch(g) < 0) {
        const char *e = guestfs_last_error(g);
        *ret_error = xstrdup(e ? e : "libguestfs appliance failed");
        goto out;
    }
    roots = guestfs_inspect_os(g);
    if (!roots) {
        const char *e = guestfs_last_error(g);
        *ret_error = xstrdup(e ? e : "inspection failed");
        goto out;
    }
    if (!roots[0]) {
        r = -ENOENT;
        goto out;
    }
    struct inspect_result res = { 0 };
    res.os_type = dup_or_null(guestfs_inspect_get_type(g, roots[0]));
    res.distro = dup_or_null(guestfs_inspect_get_distro(g, roots[0]));
    res.arch = dup_or_null(guestfs_inspect_get_arch(g, roots[0]));
    int major = guestfs_inspect_get_major_version(g, roots[0]);
    int minor = guestfs_inspect_get_minor_version(g, roots[0]);
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
    guestfs_close(g);
    return r;
}
