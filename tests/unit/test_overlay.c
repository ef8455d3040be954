/* images/overlay: a VM disk written as a qcow2 overlay reads its base's
 * bytes, is grown to the requested size, never shrinks below the image,
 * and passes `qemu-img check` when qemu-img is installed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "images/imgcheck.h"
#include "images/overlay.h"
#include "tests/testutil.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/stat.h>

static bool have(const char *path)
{
    return access(path, X_OK) == 0;
}

static char *run(char *const argv[], int *st)
{
    return tu_run(argv, st);
}

static char *raw_base(void)
{
    char *p = xasprintf("%s/base.raw", tu_dir);
    _cleanup_free_ uint8_t *d = xcalloc(1, 1 << 20);
    memset(d, 0xa5, 65536);
    assert_int_equal(file_write_atomic(p, d, 1 << 20, 0644), 0);
    return p;
}

static void overlay_header_names_base_and_size(void **state)
{
    _cleanup_free_ char *base = raw_base();
    _cleanup_free_ char *ov = xasprintf("%s/disk1.qcow2", tu_dir);
    char *why = NULL;
    assert_int_equal(overlay_create(ov, base, 8ULL << 30, 0600, &why), 0);
    /* our own parser sees a qcow2 that points at a backing file */
    struct imgcheck_info info;
    assert_int_equal(imgcheck_file(ov, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "backing file"));
    free(why);
    why = NULL;
    _cleanup_free_ char *data = NULL;
    size_t len;
    assert_int_equal(file_read(ov, 1 << 20, &data, &len), 0);
    assert_memory_equal(data, "QFI\xfb", 4);
    assert_non_null(memmem(data, len, base, strlen(base)));
    assert_non_null(memmem(data, len, "raw", 3));
    /* an existing file is never overwritten */
    assert_int_equal(overlay_create(ov, base, 0, 0600, &why), -EEXIST);
    free(why);
}

static void overlay_refuses_shrinking_and_bad_bases(void **state)
{
    _cleanup_free_ char *base = raw_base();
    _cleanup_free_ char *ov = xasprintf("%s/disk2.qcow2", tu_dir);
    char *why = NULL;
    assert_int_equal(overlay_create(ov, base, 4096, 0600, &why), -EINVAL);
    assert_non_null(strstr(why, "smaller"));
    free(why);
    why = NULL;
    assert_int_equal(overlay_create(ov, "relative.raw", 0, 0600, &why), -EINVAL);
    free(why);
    why = NULL;
    _cleanup_free_ char *txt = xasprintf("%s/notes.txt", tu_dir);
    assert_int_equal(file_write_atomic(txt, "hello\n", 6, 0644), 0);
    assert_int_equal(overlay_create(ov, txt, 0, 0600, &why), -EINVAL);
    assert_non_null(strstr(why, "text"));
    free(why);
    assert_int_equal(access(ov, F_OK), -1);
}

static void qemu_reads_base_through_overlay(void **state)
{
    if (!have("/usr/bin/qemu-img") || !have("/usr/bin/qemu-io")) {
        print_message("  qemu-img/qemu-io not installed\n");
        skip();
    }
    int st;
    _cleanup_free_ char *base = xasprintf("%s/base.qcow2", tu_dir);
    _cleanup_free_ char *ov = xasprintf("%s/disk3.qcow2", tu_dir);
    _cleanup_free_ char *o1 = run((char *const[]){ "/usr/bin/qemu-img",
        "create", "-q", "-f", "qcow2", base, "64M", NULL }, &st);
    assert_int_equal(st, 0);
    _cleanup_free_ char *o2 = run((char *const[]){ "/usr/bin/qemu-io", "-c",
        "write -P 0x5a 1M 64k", base, NULL }, &st);
    assert_int_equal(st, 0);
    char *why = NULL;
    assert_int_equal(overlay_create(ov, base, 10ULL << 30, 0600, &why), 0);

    _cleanup_free_ char *chk = run((char *const[]){ "/usr/bin/qemu-img",
        "check", ov, NULL }, &st);
    if (st != 0)
        fail_msg("qemu-img check: %s", chk);
    _cleanup_free_ char *info = run((char *const[]){ "/usr/bin/qemu-img",
        "info", "--output=json", ov, NULL }, &st);
    assert_int_equal(st, 0);
    json_t *j = json_loads(info, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "backing-filename")), base);
    assert_string_equal(json_string_value(json_object_get(j, "backing-filename-format")), "qcow2");
    assert_int_equal(json_integer_value(json_object_get(j, "virtual-size")), 10LL << 30);
    json_decref(j);

    /* base bytes show through; writes land in the overlay only, also past
     * the base's end */
    _cleanup_free_ char *r1 = run((char *const[]){ "/usr/bin/qemu-io", "-c",
        "read -P 0x5a 1M 64k", "-c", "write -P 0x77 9G 4k", "-c",
        "read -P 0x77 9G 4k", ov, NULL }, &st);
    if (st != 0 || strstr(r1, "Pattern verification failed"))
        fail_msg("qemu-io on overlay: %s", r1);
    _cleanup_free_ char *r2 = run((char *const[]){ "/usr/bin/qemu-io", "-r",
        "-c", "read -P 0x5a 1M 64k", base, NULL }, &st);
    assert_int_equal(st, 0);
    assert_null(strstr(r2, "Pattern verification failed"));
    _cleanup_free_ char *chk2 = run((char *const[]){ "/usr/bin/qemu-img",
        "check", ov, NULL }, &st);
    if (st != 0)
        fail_msg("qemu-img check after writes: %s", chk2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(overlay_header_names_base_and_size),
        cmocka_unit_test(overlay_refuses_shrinking_and_bad_bases),
        cmocka_unit_test(qemu_reads_base_through_overlay),
    };
    return cmocka_run_group_tests(tests, tu_dir_setup, tu_dir_teardown);
}
