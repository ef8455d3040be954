/* nodeagent/backup: a VM overlay sealed for the hub hides its content,
 * carries the SHA-256 the store checks, and opens on another node into a
 * standalone qcow2 (no base image) with the same data; the wrong key
 * leaves no disk behind. An incremental backup's copy is made standalone
 * (its backing reference dropped, its clusters kept), and a chain of them
 * stacks on its full one into one flat disk holding what the last one
 * saw. Needs qemu-img and qemu-io. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/ids.h"
#include "images/imgcheck.h"
#include "images/overlay.h"
#include "nodeagent/backup.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

static const uint8_t key[BKCRYPT_KEY_LEN] = { 42, 1, 2, 3 };

static bool have_qemu(void)
{
    return access("/usr/bin/qemu-img", X_OK) == 0 &&
           access("/usr/bin/qemu-io", X_OK) == 0;
}

/* An overlay on a zero raw base with 64 KiB of 0x6b at 2 MiB. */
static char *vm_overlay(void)
{
    _cleanup_free_ char *base = xasprintf("%s/base.raw", tu_dir);
    _cleanup_free_ uint8_t *d = xcalloc(1, 1 << 20);
    assert_int_equal(file_write_atomic(base, d, 1 << 20, 0644), 0);
    char *ov = xasprintf("%s/vm.qcow2", tu_dir);
    char *why = NULL;
    assert_int_equal(overlay_create(ov, base, 64ULL << 20, 0600, &why), 0);
    int st = -1;
    _cleanup_free_ char *out = tu_run((char *const[]){ "/usr/bin/qemu-io",
        "-c", "write -P 0x6b 2M 64k", ov, NULL }, &st);
    if (st != 0)
        fail_msg("qemu-io write: %s", out);
    return ov;
}

/* The overlay sealed into bk.sealed with `key`; fails the test on error. */
static void seal_vm_disk(char **ret_ov, char **ret_sealed, uint64_t *ret_size,
                         char *hex)
{
    char *ov = vm_overlay();
    char *sealed = xasprintf("%s/bk.sealed", tu_dir);
    char *err = NULL;
    if (backup_seal_disk("qemu-img", ov, false, key, sealed, ret_size, hex,
                         &err) < 0)
        fail_msg("seal: %s", err);
    *ret_ov = ov;
    *ret_sealed = sealed;
}

static void sealed_disk_hides_data_and_opens_standalone(void **state)
{
    (void)state;
    if (!have_qemu())
        skip();
    _cleanup_free_ char *ov = NULL, *sealed = NULL;
    uint64_t size = 0;
    char hex[65] = { 0 };
    char *err = NULL;
    seal_vm_disk(&ov, &sealed, &size, hex);
    _cleanup_free_ char *plain = xasprintf("%s.plain", sealed);
    assert_int_equal(access(plain, F_OK), -1); /* no clear copy left */
    struct stat st;
    assert_int_equal(stat(sealed, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal((uint64_t)st.st_size, size);
    _cleanup_free_ char *c = NULL;
    size_t clen = 0;
    assert_int_equal(file_read(sealed, 1 << 30, &c, &clen), 0);
    char want[65];
    sha256_hex(c, clen, want);
    assert_string_equal(hex, want);
    /* 64 KiB of 0x6b in the guest's disk appear nowhere in the blob */
    _cleanup_free_ uint8_t *pat = xmalloc(4096);
    memset(pat, 0x6b, 4096);
    assert_null(memmem(c, clen, pat, 4096));
    assert_null(memmem(c, clen, "QFI\xfb", 4));

    /* another node: no base image, only the key */
    _cleanup_free_ char *other = xasprintf("%s/restored.qcow2", tu_dir);
    int e = backup_open_disk(sealed, key, other, &err);
    if (e < 0)
        fail_msg("open: %s", err);
    struct imgcheck_info info;
    char *why = NULL;
    if (imgcheck_file(other, 0, &info, &why) < 0)
        fail_msg("restored disk: %s", why);
    int rc = -1;
    _cleanup_free_ char *r = tu_run((char *const[]){ "/usr/bin/qemu-io",
        "-r", "-c", "read -P 0x6b 2M 64k", other, NULL }, &rc);
    assert_int_equal(rc, 0);
    assert_null(strstr(r, "Pattern verification failed"));
    _cleanup_free_ char *cmp = tu_run((char *const[]){ "/usr/bin/qemu-img",
        "compare", ov, other, NULL }, &rc);
    if (rc != 0)
        fail_msg("qemu-img compare: %s", cmp);
}

static void wrong_key_or_damage_leaves_no_disk(void **state)
{
    (void)state;
    if (!have_qemu())
        skip();
    _cleanup_free_ char *ov = NULL, *sealed = NULL;
    uint64_t size = 0;
    char *err = NULL;
    seal_vm_disk(&ov, &sealed, &size, NULL);
    _cleanup_free_ char *target = xasprintf("%s/target.qcow2", tu_dir);
    uint8_t other[BKCRYPT_KEY_LEN] = { 43 };
    assert_int_equal(backup_open_disk(sealed, other, target, &err), -EBADMSG);
    assert_non_null(strstr(err, "key"));
    free(err);
    err = NULL;
    assert_int_equal(access(target, F_OK), -1);
    _cleanup_free_ char *tmp = xasprintf("%s.restore", target);
    assert_int_equal(access(tmp, F_OK), -1);
    /* a truncated download */
    assert_int_equal(truncate(sealed, (off_t)size - 1), 0);
    assert_int_equal(backup_open_disk(sealed, key, target, &err), -EBADMSG);
    free(err);
    assert_int_equal(access(target, F_OK), -1);
    /* a missing overlay is a clear error, nothing sealed */
    _cleanup_free_ char *gone = xasprintf("%s/none.qcow2", tu_dir);
    err = NULL;
    assert_true(backup_seal_disk("qemu-img", gone, false, key, sealed, &size,
                                 NULL, &err) < 0);
    assert_non_null(err);
    free(err);
}

/* Run qemu-io with one command on `img`; fails the test unless it exits
 * 0 and prints no error (a read with -P checks the pattern). */
static void qemu_io(const char *img, const char *cmd)
{
    int st = -1;
    _cleanup_free_ char *out = tu_run((char *const[]){ "/usr/bin/qemu-io",
        "-f", "qcow2", "-c", (char *)cmd, (char *)img, NULL }, &st);
    if (st != 0 || strstr(out, "fail") || strstr(out, "error"))
        fail_msg("qemu-io '%s' on %s: %s", cmd, img, out);
}

static char *qcow2(const char *name, const char *backing)
{
    char *p = xasprintf("%s/%s", tu_dir, name);
    int st = -1;
    _cleanup_free_ char *out = backing ?
        tu_run((char *const[]){ "/usr/bin/qemu-img", "create", "-q", "-f",
                                "qcow2", "-b", (char *)backing, "-F", "qcow2",
                                p, "64M", NULL }, &st) :
        tu_run((char *const[]){ "/usr/bin/qemu-img", "create", "-q", "-f",
                                "qcow2", p, "64M", NULL }, &st);
    if (st != 0)
        fail_msg("qemu-img create %s: %s", p, out);
    return p;
}

static void chain_stacks_into_what_the_last_backup_saw(void **state)
{
    if (!have_qemu())
        skip();
    /* The full backup; an increment written as libvirt leaves it (naming
     * the VM's disk, here the full one, as its backing), then detached;
     * a second increment. */
    _cleanup_free_ char *full = qcow2("full.qcow2", NULL);
    qemu_io(full, "write -P 0x11 0 1M");
    qemu_io(full, "write -P 0x22 4M 1M");
    _cleanup_free_ char *inc1 = qcow2("inc1.qcow2", full);
    qemu_io(inc1, "write -P 0x33 4M 64k");
    char *err = NULL;
    assert_int_equal(backup_detach("qemu-img", inc1, &err), 0);
    /* Standalone: what it did not change reads as zeros. */
    qemu_io(inc1, "read -P 0 0 1M");
    qemu_io(inc1, "read -P 0x33 4M 64k");
    _cleanup_free_ char *inc2 = qcow2("inc2.qcow2", NULL);
    qemu_io(inc2, "write -P 0x44 10M 64k");

    char *pieces[] = { full, inc1, inc2 };
    _cleanup_free_ char *out = xasprintf("%s/disk.qcow2", tu_dir);
    if (backup_stack("qemu-img", pieces, 3, out, &err) < 0)
        fail_msg("backup_stack: %s", err);
    qemu_io(out, "read -P 0x11 0 1M");
    qemu_io(out, "read -P 0x33 4M 64k");
    qemu_io(out, "read -P 0x22 4160k 960k");
    qemu_io(out, "read -P 0x44 10M 64k");
    qemu_io(out, "read -P 0 20M 1M");
    /* One flat disk: the pieces may go. */
    int st = -1;
    _cleanup_free_ char *info = tu_run((char *const[]){ "/usr/bin/qemu-img",
        "info", (char *)out, NULL }, &st);
    assert_int_equal(st, 0);
    assert_null(strstr(info, "backing file"));
    unlink(full);
    unlink(inc1);
    qemu_io(out, "read -P 0x11 0 1M");
    /* Nothing to stack is refused. */
    assert_int_equal(backup_stack("qemu-img", pieces, 0, out, &err),
                     -EINVAL);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            sealed_disk_hides_data_and_opens_standalone, tu_dir_setup,
            tu_dir_teardown),
        cmocka_unit_test_setup_teardown(wrong_key_or_damage_leaves_no_disk,
                                        tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(
            chain_stacks_into_what_the_last_backup_saw, tu_dir_setup,
            tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
