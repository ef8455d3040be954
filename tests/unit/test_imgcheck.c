/* images/imgcheck: hostile and broken disk images are refused by content,
 * good qcow2 and raw disks pass. Fixtures are crafted here byte by byte,
 * and also made with qemu-img when it is installed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/util.h"
#include "images/imgcheck.h"
#include "tests/testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* ---- a minimal qcow2 v3 (cluster size 64 KiB, from tu_qcow2) ----
 * cluster 0 header, 1 refcount table, 2 refcount block, 3 L1 table,
 * 4 L2 table, 5 one data cluster mapped at guest offset 0. */
#define CS TU_QCOW2_CLUSTER

struct q2 {
    uint8_t *img;
    size_t len;
};

static void q2_build(struct q2 *q, uint64_t vsize)
{
    q->img = tu_qcow2(vsize, &q->len);
}

static char *write_fixture(const char *name, const void *data, size_t len)
{
    char *path = xasprintf("%s/%s", tu_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

/* Check a fixture; on refusal return the reason (caller frees). */
static int check(const char *path, uint64_t max, struct imgcheck_info *info,
                 char **reason)
{
    *reason = NULL;
    int e = imgcheck_file(path, max, info, reason);
    if (e < 0) {
        assert_non_null(*reason);
        print_message("  %s: %s\n", strrchr(path, '/') + 1, *reason);
    } else {
        assert_null(*reason);
    }
    return e;
}

static void crafted_good_qcow2_is_accepted(void **state)
{
    struct q2 q;
    q2_build(&q, 1ULL << 30);
    _cleanup_free_ char *p = write_fixture("good.qcow2", q.img, q.len);
    struct imgcheck_info info;
    _cleanup_free_ char *why = NULL;
    assert_int_equal(check(p, 0, &info, &why), 0);
    assert_int_equal(info.format, IMGCHECK_QCOW2);
    assert_int_equal(info.virtual_size, 1ULL << 30);
    assert_int_equal(info.file_size, q.len);
    assert_string_equal(imgcheck_format_name(info.format), "qcow2");
    free(q.img);
}

static void qcow2_with_backing_file_on_host_path_is_refused(void **state)
{
    struct q2 q;
    q2_build(&q, 1ULL << 30);
    static const char target[] = "/etc/passwd";
    memcpy(q.img + 512, target, sizeof(target) - 1);
    tu_put_be64(q.img, 8, 512);
    tu_put_be32(q.img, 16, sizeof(target) - 1);
    _cleanup_free_ char *p = write_fixture("backing.qcow2", q.img, q.len);
    struct imgcheck_info info;
    _cleanup_free_ char *why = NULL;
    assert_int_equal(check(p, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "backing file"));

    /* offset zero but a size is still a backing file field in use */
    free(why);
    tu_put_be64(q.img, 8, 0);
    _cleanup_free_ char *p2 = write_fixture("backing2.qcow2", q.img, q.len);
    assert_int_equal(check(p2, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "backing file"));
    free(q.img);
}

static void qcow2_with_external_data_file_is_refused(void **state)
{
    struct q2 q;
    q2_build(&q, 1ULL << 30);
    tu_put_be64(q.img, 72, 1ULL << 2);
    _cleanup_free_ char *p = write_fixture("datafile.qcow2", q.img, q.len);
    struct imgcheck_info info;
    _cleanup_free_ char *why = NULL;
    assert_int_equal(check(p, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "external data file"));
    free(why);

    /* the name extension alone, without the feature bit, is refused too */
    tu_put_be64(q.img, 72, 0);
    tu_put_be32(q.img, 104, 0x44415441);
    tu_put_be32(q.img, 108, 11);
    memcpy(q.img + 112, "/etc/shadow", 11);
    _cleanup_free_ char *p2 = write_fixture("dataext.qcow2", q.img, q.len);
    assert_int_equal(check(p2, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "external data file"));
    free(q.img);
}

static void truncated_qcow2_is_refused(void **state)
{
    struct q2 q;
    q2_build(&q, 1ULL << 30);
    struct imgcheck_info info;
    /* cut inside the data cluster, inside the L2 table, inside the L1 */
    size_t cuts[] = { 5 * CS + 100, 4 * CS + 8, 3 * CS + 4, 100 };
    for (size_t i = 0; i < ARRAY_SIZE(cuts); i++) {
        _cleanup_free_ char *why = NULL;
        _cleanup_free_ char *name = xasprintf("trunc%zu.qcow2", i);
        _cleanup_free_ char *p = write_fixture(name, q.img, cuts[i]);
        assert_int_equal(check(p, 0, &info, &why), -EINVAL);
        assert_true(strstr(why, "truncated") != NULL);
    }
    free(q.img);
}

static void qcow2_header_lying_about_size_is_refused(void **state)
{
    struct q2 q;
    q2_build(&q, 1ULL << 30);
    struct imgcheck_info info;
    _cleanup_free_ char *why = NULL;

    /* 1 TiB claimed, but an L1 table of two entries covers 1 GiB only */
    tu_put_be64(q.img, 24, 1ULL << 40);
    _cleanup_free_ char *p = write_fixture("lie1.qcow2", q.img, q.len);
    assert_int_equal(check(p, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "lies about its size"));
    free(why);

    /* an absurd size with an L1 table that claims to match, beyond EOF */
    tu_put_be64(q.img, 24, 1ULL << 62);
    _cleanup_free_ char *p2 = write_fixture("lie2.qcow2", q.img, q.len);
    assert_int_equal(check(p2, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "lies about its size"));
    free(why);

    /* an L1 table that claims more entries than the file holds */
    tu_put_be64(q.img, 24, 1ULL << 30);
    tu_put_be32(q.img, 36, 1u << 20);
    _cleanup_free_ char *p3 = write_fixture("lie3.qcow2", q.img, q.len);
    assert_int_equal(check(p3, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "L1 table"));
    free(why);

    /* a virtual size of zero */
    tu_put_be32(q.img, 36, 1);
    tu_put_be64(q.img, 24, 0);
    _cleanup_free_ char *p4 = write_fixture("lie4.qcow2", q.img, q.len);
    assert_int_equal(check(p4, 0, &info, &why), -EINVAL);
    free(q.img);
}

static void qcow2_odd_headers_are_refused(void **state)
{
    struct q2 q;
    struct imgcheck_info info;
    struct {
        size_t off;
        int width;
        uint64_t v;
        const char *expect;
    } cases[] = {
        { 4, 32, 4, "version" },
        { 20, 32, 8, "cluster_bits" },
        { 20, 32, 30, "cluster_bits" },
        { 32, 32, 1, "encrypted" },
        { 60, 32, 1, "snapshots" },
        { 72, 64, 1ULL << 1, "corrupt" },
        { 72, 64, 1ULL << 9, "unknown" },
        { 100, 32, 4096 * 64, "header_length" },
        { 40, 64, 3 * CS + 8, "L1 table offset" },
        { 56, 32, 0, "refcount table" },
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        q2_build(&q, 1ULL << 30);
        if (cases[i].width == 32)
            tu_put_be32(q.img, cases[i].off, (uint32_t)cases[i].v);
        else
            tu_put_be64(q.img, cases[i].off, cases[i].v);
        _cleanup_free_ char *name = xasprintf("odd%zu.qcow2", i);
        _cleanup_free_ char *p = write_fixture(name, q.img, q.len);
        _cleanup_free_ char *why = NULL;
        assert_int_equal(check(p, 0, &info, &why), -EINVAL);
        if (!strstr(why, cases[i].expect))
            fail_msg("case %zu: '%s' lacks '%s'", i, why, cases[i].expect);
        free(q.img);
    }
}

static void l2_entry_pointing_past_eof_is_refused(void **state)
{
    struct q2 q;
    q2_build(&q, 1ULL << 30);
    tu_put_be64(q.img + 4 * CS, 8, (1ULL << 63) | 900ULL * CS);
    _cleanup_free_ char *p = write_fixture("l2eof.qcow2", q.img, q.len);
    struct imgcheck_info info;
    _cleanup_free_ char *why = NULL;
    assert_int_equal(check(p, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "data cluster"));
    free(q.img);
}

static void text_file_named_qcow2_is_refused(void **state)
{
    _cleanup_free_ char *text = xmalloc(8192);
    for (size_t i = 0; i < 8192; i++)
        text[i] = "root:x:0:0:root:/root:/bin/bash\n"[i % 32];
    _cleanup_free_ char *p = write_fixture("passwd.qcow2", text, 8192);
    struct imgcheck_info info;
    _cleanup_free_ char *why = NULL;
    assert_int_equal(check(p, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "text"));

    /* a short script of odd length */
    free(why);
    _cleanup_free_ char *p2 = write_fixture("script.qcow2", "#!/bin/sh\n", 10);
    assert_int_equal(check(p2, 0, &info, &why), -EINVAL);
}

static void raw_disk_is_accepted_and_bad_raw_refused(void **state)
{
    _cleanup_free_ uint8_t *disk = xcalloc(1, 1 << 20);
    disk[510] = 0x55;
    disk[511] = 0xaa;
    _cleanup_free_ char *p = write_fixture("disk.img", disk, 1 << 20);
    struct imgcheck_info info;
    _cleanup_free_ char *why = NULL;
    assert_int_equal(check(p, 0, &info, &why), 0);
    assert_int_equal(info.format, IMGCHECK_RAW);
    assert_int_equal(info.virtual_size, 1 << 20);

    /* not sector sized */
    _cleanup_free_ char *p2 = write_fixture("odd.img", disk, 1000);
    assert_int_equal(check(p2, 0, &info, &why), -EINVAL);
    free(why);
    /* empty */
    _cleanup_free_ char *p3 = write_fixture("empty.img", disk, 0);
    assert_int_equal(check(p3, 0, &info, &why), -EINVAL);
    free(why);
    /* other formats' magic */
    memcpy(disk, "KDMV", 4);
    _cleanup_free_ char *p4 = write_fixture("disk.vmdk", disk, 1 << 20);
    assert_int_equal(check(p4, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "vmdk"));
    free(why);
    memcpy(disk, "\x1f\x8b\x08\x00", 4);
    _cleanup_free_ char *p5 = write_fixture("disk.gz", disk, 1 << 20);
    assert_int_equal(check(p5, 0, &info, &why), -EINVAL);
    free(why);
    why = NULL;
}

static void size_limit_is_enforced(void **state)
{
    _cleanup_free_ uint8_t *disk = xcalloc(1, 1 << 20);
    _cleanup_free_ char *p = write_fixture("big.img", disk, 1 << 20);
    struct imgcheck_info info;
    _cleanup_free_ char *why = NULL;
    assert_int_equal(check(p, 512 * 1024, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "limit"));
    free(why);
    assert_int_equal(check(p, 1 << 20, &info, &why), 0);

    /* a small qcow2 whose virtual size is over the limit */
    struct q2 q;
    q2_build(&q, 1ULL << 30);
    _cleanup_free_ char *p2 = write_fixture("vbig.qcow2", q.img, q.len);
    assert_int_equal(check(p2, 1ULL << 29, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "limit"));
    free(q.img);
}

static void missing_file_reports_errno(void **state)
{
    struct imgcheck_info info;
    _cleanup_free_ char *why = NULL;
    _cleanup_free_ char *p = xasprintf("%s/nope", tu_dir);
    assert_int_equal(imgcheck_file(p, 0, &info, &why), -ENOENT);
    assert_non_null(why);
}

/* Random corruption of header and tables never crashes the checker and
 * never yields a result that escapes the file (a cheap in-suite fuzzer;
 * run it under `make asan` for out-of-bounds reads). */
static void mutated_qcow2_headers_never_crash(void **state)
{
    struct q2 q;
    q2_build(&q, 1ULL << 30);
    int fd = memfd_create("imgcheck", MFD_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, q.img, q.len, 0), (ssize_t)q.len);
    uint32_t seed = 12345;
    size_t accepted = 0;
    for (int it = 0; it < 3000; it++) {
        size_t offs[4];
        uint8_t old[4];
        for (int k = 0; k < 4; k++) {
            seed = seed * 1103515245u + 12345u;
            /* mostly the header, sometimes the L1 and L2 entries */
            size_t area = (seed >> 8) % 4;
            size_t base = area < 2 ? 0 : area == 2 ? 3 * CS : 4 * CS;
            size_t span = area < 2 ? 128 : 16;
            offs[k] = base + (seed >> 12) % span;
            old[k] = q.img[offs[k]];
            uint8_t v = (uint8_t)(seed >> 20);
            assert_int_equal(pwrite(fd, &v, 1, (off_t)offs[k]), 1);
        }
        struct imgcheck_info info;
        char *why = NULL;
        int e = imgcheck_fd(fd, 0, &info, &why);
        if (e == 0) {
            accepted++;
            assert_null(why);
            assert_true(info.virtual_size > 0);
        } else {
            assert_int_equal(e, -EINVAL);
            assert_non_null(why);
            free(why);
        }
        for (int k = 3; k >= 0; k--)
            assert_int_equal(pwrite(fd, &old[k], 1, (off_t)offs[k]), 1);
    }
    print_message("  %zu of 3000 mutants accepted\n", accepted);
    close(fd);
    free(q.img);
}

/* ---- the same through qemu-img, when installed ---- */

static bool have(const char *prog)
{
    _cleanup_free_ char *p = xasprintf("/usr/bin/%s", prog);
    return access(p, X_OK) == 0;
}

static void run_ok(char *const argv[])
{
    int st;
    _cleanup_free_ char *out = tu_run(argv, &st);
    if (st != 0)
        fail_msg("%s failed (%d): %s", argv[0], st, out ? out : "");
}

static void qemu_img_fixtures_are_judged_right(void **state)
{
    if (!have("qemu-img")) {
        print_message("  qemu-img not installed: crafted fixtures only\n");
        skip();
    }
    struct imgcheck_info info;
    _cleanup_free_ char *good3 = xasprintf("%s/q3.qcow2", tu_dir);
    _cleanup_free_ char *good2 = xasprintf("%s/q2.qcow2", tu_dir);
    _cleanup_free_ char *back = xasprintf("%s/qb.qcow2", tu_dir);
    _cleanup_free_ char *dfile = xasprintf("%s/qd.qcow2", tu_dir);
    _cleanup_free_ char *dfdata = xasprintf("%s/qd.data", tu_dir);
    _cleanup_free_ char *dfopt = xasprintf("data_file=%s", dfdata);
    _cleanup_free_ char *raw = xasprintf("%s/r.img", tu_dir);

    run_ok((char *const[]){ "/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", good3,
                            "1G", NULL });
    run_ok((char *const[]){ "/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", "-o",
                            "compat=0.10", good2, "64M", NULL });
    run_ok((char *const[]){ "/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", "-b",
                            "/etc/passwd", "-F", "raw", back, "1G", NULL });
    run_ok((char *const[]){ "/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", "-o",
                            dfopt, dfile, "64M", NULL });
    run_ok((char *const[]){ "/usr/bin/qemu-img", "create", "-q", "-f", "raw", raw,
                            "8M", NULL });

    if (have("qemu-io")) {
        /* data at both ends, so L2 tables and clusters exist to check */
        run_ok((char *const[]){ "/usr/bin/qemu-io", "-c", "write -P 0x55 0 64k", "-c",
                                "write -P 0x66 1073676288 512", good3, NULL });
    }

    _cleanup_free_ char *why = NULL;
    assert_int_equal(check(good3, 0, &info, &why), 0);
    assert_int_equal(info.format, IMGCHECK_QCOW2);
    assert_int_equal(info.virtual_size, 1ULL << 30);
    assert_int_equal(check(good2, 0, &info, &why), 0);
    assert_int_equal(info.virtual_size, 64ULL << 20);
    assert_int_equal(check(raw, 0, &info, &why), 0);
    assert_int_equal(info.format, IMGCHECK_RAW);

    /* compressed clusters, as image builders ship them */
    if (have("qemu-io")) {
        _cleanup_free_ char *comp = xasprintf("%s/qc.qcow2", tu_dir);
        run_ok((char *const[]){ "/usr/bin/qemu-io", "-f", "raw", "-c",
                                "write -P 0x42 0 2M", raw, NULL });
        run_ok((char *const[]){ "/usr/bin/qemu-img", "convert", "-c", "-O",
                                "qcow2", raw, comp, NULL });
        assert_int_equal(check(comp, 0, &info, &why), 0);
        assert_int_equal(info.virtual_size, 8 << 20);
    }

    assert_int_equal(check(back, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "backing file"));
    free(why);
    assert_int_equal(check(dfile, 0, &info, &why), -EINVAL);
    assert_non_null(strstr(why, "external data file"));
    free(why);
    why = NULL;

    if (have("qemu-io")) {
        struct stat st;
        assert_int_equal(stat(good3, &st), 0);
        assert_int_equal(truncate(good3, st.st_size - 4096), 0);
        assert_int_equal(check(good3, 0, &info, &why), -EINVAL);
        assert_non_null(strstr(why, "truncated"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crafted_good_qcow2_is_accepted),
        cmocka_unit_test(qcow2_with_backing_file_on_host_path_is_refused),
        cmocka_unit_test(qcow2_with_external_data_file_is_refused),
        cmocka_unit_test(truncated_qcow2_is_refused),
        cmocka_unit_test(qcow2_header_lying_about_size_is_refused),
        cmocka_unit_test(qcow2_odd_headers_are_refused),
        cmocka_unit_test(l2_entry_pointing_past_eof_is_refused),
        cmocka_unit_test(text_file_named_qcow2_is_refused),
        cmocka_unit_test(raw_disk_is_accepted_and_bad_raw_refused),
        cmocka_unit_test(size_limit_is_enforced),
        cmocka_unit_test(missing_file_reports_errno),
        cmocka_unit_test(mutated_qcow2_headers_never_crash),
        cmocka_unit_test(qemu_img_fixtures_are_judged_right),
    };
    return cmocka_run_group_tests(tests, tu_dir_setup, tu_dir_teardown);
}
