/* nodeagent/backup: a VM overlay sealed for the hub hides its content,
 * carries the SHA-256 the store checks, and opens on another node into a
 * standalone qcow2 (no base image) with the same data; the wrong key
 * leaves no disk behind. Needs qemu-img and qemu-io. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            sealed_disk_hides_data_and_opens_standalone, tu_dir_setup,
            tu_dir_teardown),
        cmocka_unit_test_setup_teardown(wrong_key_or_damage_leaves_no_disk,
                                        tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
