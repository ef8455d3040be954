/* Image inspection for real: a controller with libguestfs inspection on
 * imports a small Debian 12 disk (an ext4 file system built here) and an
 * all-zero disk; the first is named linux/debian/12.7 with the host's
 * architecture, the second is recorded as having no OS while the image
 * itself stays ready. Each appliance boot takes 20-30 s under TCG. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "common/cpuinfo.h"
#include "tests/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <guestfs.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>

/* Longest wait for one image's inspection, queued behind the other's. */
#define INSPECT_TIMEOUT_MS (150 * 1000)

static const char *const ctl_args[] = { "--inspect", NULL };

static struct tu_ctl ctl;
static char *work, *mkfs;
static char *debian_id, *zero_id;

/* ---- helpers ---- */

static void write_file(const char *dir, const char *name, const char *text)
{
    _cleanup_free_ char *p = xasprintf("%s/%s", dir, name);
    assert_int_equal(file_write_atomic(p, text, strlen(text), 0644), 0);
}

/* A 32 MiB raw disk holding one ext4 file system laid out like a Debian
 * 12.7 root: os-release, debian_version, fstab, and a real /bin/ls (from
 * the host) from which the architecture is read. mkfs.ext4 -d fills it
 * from a directory without mounting anything. Path; caller frees. */
static char *make_debian_disk(void)
{
    _cleanup_free_ char *root = xasprintf("%s/root", work);
    static const char *const dirs[] = { "etc", "bin", "sbin", "usr/bin",
                                        "usr/lib", "var/lib", "root", "tmp" };
    for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
        _cleanup_free_ char *d = xasprintf("%s/%s", root, dirs[i]);
        assert_int_equal(mkdir_p(d, 0755), 0);
    }
    write_file(root, "etc/os-release",
               "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"
               "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n"
               "VERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\n"
               "ID=debian\nHOME_URL=\"https://www.debian.org/\"\n");
    write_file(root, "etc/debian_version", "12.7\n");
    write_file(root, "etc/fstab", "/dev/sda / ext4 errors=remount-ro 0 1\n");
    write_file(root, "etc/hostname", "inspected\n");
    write_file(root, "etc/hosts", "127.0.0.1 localhost\n");
    char *ls;
    size_t ls_len;
    assert_int_equal(file_read("/bin/ls", 16 << 20, &ls, &ls_len), 0);
    _cleanup_free_ char *ls_path = xasprintf("%s/bin/ls", root);
    assert_int_equal(file_write_atomic(ls_path, ls, ls_len, 0755), 0);
    free(ls);

    char *img = xasprintf("%s/debian12.raw", work);
    int fd = open(img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 32 << 20), 0);
    close(fd);
    char *argv[] = { mkfs, (char *)"-q", (char *)"-F", (char *)"-L",
                     (char *)"root", (char *)"-d", root, img, NULL };
    int st;
    free(tu_run(argv, &st));
    assert_int_equal(st, 0);
    return img;
}

/* POST an image record and PUT the file as its content; the image id
 * (caller frees). The upload's answer must come before inspection has
 * finished: inspection is off the request path. */
static char *import(const char *name, const char *path)
{
    _cleanup_free_ char *body = xasprintf("{\"name\": \"%s\"}", name);
    long st;
    json_t *j = tu_api(&ctl, ctl.admin_key, "POST", "/v1/images", body, &st);
    assert_int_equal(st, 201);
    assert_non_null(json_str(j, "id"));
    char *id = xstrdup(json_str(j, "id"));
    json_decref(j);

    _cleanup_free_ char *data = NULL;
    size_t len;
    assert_int_equal(file_read(path, 64 << 20, &data, &len), 0);
    _cleanup_free_ char *put = xasprintf("%s/v1/images/%s/file", ctl.url, id);
    struct tu_resp resp;
    st = tu_http("PUT", put, ctl.admin_key, ctl.ca, data, len,
                 "application/octet-stream", NULL, &resp);
    if (st != 200)
        fprintf(stderr, "upload of %s: HTTP %ld %s\n", name, st, resp.body);
    assert_int_equal(st, 200);
    j = json_loads(resp.body, 0, NULL);
    assert_string_equal(json_str(j, "state"), "ready");
    assert_string_equal(json_str(j, "format"), "raw");
    const char *insp = json_str(j, "inspection");
    assert_true(streq(insp, "pending") || streq(insp, "running"));
    json_decref(j);
    tu_resp_clear(&resp);
    return id;
}

static json_t *image_get(const char *id)
{
    _cleanup_free_ char *path = xasprintf("/v1/images/%s", id);
    long st;
    json_t *j = tu_api(&ctl, ctl.admin_key, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_non_null(j);
    return j;
}

/* Boot a libguestfs appliance on an empty scratch disk, in a child of
 * its own process group (QEMU included) killed after `timeout_s`. NULL
 * when it comes up, else why not (caller frees). */
static char *appliance_probe(int timeout_s)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        setpgid(0, 0);
        guestfs_h *g = guestfs_create();
        const char *why = "cannot create a libguestfs handle";
        int rc = 1;
        if (g) {
            guestfs_set_error_handler(g, NULL, NULL);
            if (!cpuinfo_kvm_usable("/")) {
                char *settings[] = { (char *)"force_tcg", NULL };
                guestfs_set_backend_settings(g, settings);
            }
            if (guestfs_add_drive_scratch(g, 16 << 20, -1) == 0 &&
                guestfs_launch(g) == 0)
                rc = 0;
            else
                why = guestfs_last_error(g);
        }
        if (rc && why && write(p[1], why, strlen(why)) < 0)
            rc = 2;
        if (g)
            guestfs_close(g); /* stops QEMU */
        _exit(rc);
    }
    setpgid(pid, pid);
    close(p[1]);
    char buf[1024];
    ssize_t n = 0;
    struct pollfd pfd = { .fd = p[0], .events = POLLIN };
    bool timed_out = poll(&pfd, 1, timeout_s * 1000) == 0;
    if (timed_out)
        kill(-pid, SIGKILL);
    else
        n = read(p[0], buf, sizeof(buf) - 1);
    close(p[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (timed_out)
        return xasprintf("the appliance did not come up within %d s",
                         timeout_s);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return NULL;
    return n > 0 ? xstrndup(buf, (size_t)n) : xstrdup("launch failed");
}

/* Poll until the image's inspection leaves pending/running. When it
 * failed, or never ended, and a libguestfs appliance cannot boot on this
 * machine at all, the whole binary is skipped (77) with the reason. */
static json_t *wait_inspected(const char *id)
{
    int64_t end = mono_ms() + INSPECT_TIMEOUT_MS;
    json_t *j = NULL;
    const char *insp = NULL;
    for (;;) {
        json_decref(j);
        j = image_get(id);
        insp = json_str(j, "inspection");
        if (!streq(insp, "pending") && !streq(insp, "running"))
            break;
        if (mono_ms() > end)
            break;
        nanosleep(&(struct timespec){ 0, 500 * 1000 * 1000 }, NULL);
    }
    if (streq(insp, "failed") || streq(insp, "pending") ||
        streq(insp, "running")) {
        _cleanup_free_ char *why = appliance_probe(90);
        if (why) {
            /* A controller with an inspection still running may not exit
             * cleanly; that is not what is tested here. */
            tu_kill(ctl.pid, SIGTERM);
            ctl.pid = 0;
            tu_ctl_destroy(&ctl);
            tu_rmrf(work);
            /* The runner shows the last line: keep the reason on one. */
            why[strcspn(why, "\n")] = '\0';
            printf("libguestfs cannot launch its appliance here: %s\n", why);
            exit(77);
        }
        fprintf(stderr, "inspection of %s ended '%s' though an appliance "
                "boots here; see %s\n", id, insp, ctl.log);
    }
    return j;
}

/* ---- tests ---- */

static void inspection_names_the_os_of_a_debian_12_disk(void **state)
{
    (void)state;
    json_auto_t *j = wait_inspected(debian_id);
    assert_string_equal(json_str(j, "inspection"), "done");
    assert_string_equal(json_str(j, "state"), "ready");
    json_t *os = json_object_get(j, "os");
    assert_non_null(os);
    assert_string_equal(json_str(os, "type"), "linux");
    assert_string_equal(json_str(os, "distro"), "debian");
    /* From the image's /etc/debian_version, not the host's. */
    assert_string_equal(json_str(os, "version"), "12.7");
    struct utsname u;
    assert_int_equal(uname(&u), 0);
    assert_string_equal(json_str(os, "arch"), u.machine);
}

static void a_disk_without_an_os_is_recorded_and_stays_ready(void **state)
{
    (void)state;
    json_auto_t *j = wait_inspected(zero_id);
    assert_string_equal(json_str(j, "inspection"), "no-os");
    assert_string_equal(json_str(j, "state"), "ready");
    json_t *os = json_object_get(j, "os");
    assert_non_null(os);
    assert_true(json_is_null(json_object_get(os, "type")));
    assert_true(json_is_null(json_object_get(os, "distro")));

    /* The image is still usable: its content is served. */
    _cleanup_free_ char *url = xasprintf("%s/v1/images/%s/file", ctl.url,
                                         zero_id);
    struct tu_resp resp = { 0 };
    assert_int_equal(tu_http("GET", url, ctl.admin_key, ctl.ca, NULL, 0, NULL,
                             "Range: bytes=0-511", &resp), 206);
    assert_int_equal(resp.len, 512);
    tu_resp_clear(&resp);
}

/* ---- fixture ---- */

static int setup(void **state)
{
    (void)state;
    tu_ctl_start(&ctl, ctl_args);
    work = tu_tempdir("inspect");
    _cleanup_free_ char *debian = make_debian_disk();
    _cleanup_free_ char *zero = xasprintf("%s/zero.raw", work);
    int fd = open(zero, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 16 << 20), 0);
    close(fd);
    /* Both queued at once: the worker inspects one after the other while
     * the first test waits. */
    debian_id = import("debian12", debian);
    zero_id = import("zeros", zero);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_ctl_destroy(&ctl);
    tu_rmrf(work);
    free(work);
    free(debian_id);
    free(zero_id);
    return 0;
}

/* The controller chooses TCG itself where KVM cannot work; only the
 * backend is set here, for the controller and the probe alike. */
static void appliance_env(void)
{
    if (!getenv("LIBGUESTFS_BACKEND"))
        setenv("LIBGUESTFS_BACKEND", "direct", 1);
}

int main(void)
{
    mkfs = tu_which("mkfs.ext4");
    if (!mkfs) {
        printf("mkfs.ext4 not found (Debian package e2fsprogs)\n");
        return 77;
    }
    appliance_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(inspection_names_the_os_of_a_debian_12_disk),
        cmocka_unit_test(a_disk_without_an_os_is_recorded_and_stays_ready),
    };
    int r = cmocka_run_group_tests(tests, setup, teardown);
    free(mkfs);
    return r;
}
