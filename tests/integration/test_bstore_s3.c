/* controller/bstore_s3 against a real S3 implementation (s3rver, from
 * tools/js, on loopback): the same contract checks as the directory store
 * (tests/bstore_contract.h), then what only this store does: a blob
 * larger than a part goes up as a multipart upload and reads back whole,
 * a commit whose send failed (the object store down) keeps the upload
 * and the next commit sends it, objects the store did not name are left
 * out of its listings, a refused key is -EACCES, and the options are
 * checked (URL, region, key file mode). Each test gets a bucket of its
 * own. Skipped (77) when node or s3rver is not installed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "controller/bstore_s3.h"
#include "tests/testutil.h"
#include "tests/bstore_contract.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static struct tu_s3 srv;
static char bucket[32]; /* this test's */
static unsigned n_bucket;

static char *key_file(const char *name, const char *text, mode_t mode)
{
    char *p = xasprintf("%s/%s", tu_dir, name);
    assert_int_equal(file_write_atomic(p, text, strlen(text), mode), 0);
    assert_int_equal(chmod(p, mode), 0);
    return p;
}

static int s3_setup(void **state)
{
    tu_dir_setup(state);
    snprintf(bucket, sizeof(bucket), "fogtest-%u", ++n_bucket);
    assert_int_equal(tu_s3_raw(&srv, "PUT", bucket, NULL), 200);
    return 0;
}

static struct bstore *open_s3(uint64_t max, uint64_t part, const char *keys)
{
    _cleanup_free_ char *url = xasprintf("http://127.0.0.1:%d/%s", srv.port,
                                         bucket);
    _cleanup_free_ char *spool = xasprintf("%s/spool", tu_dir);
    _cleanup_free_ char *kf = key_file("s3.key", keys, 0600);
    struct bstore_s3_opts o = { .url = url, .key_file = kf,
                                .spool_dir = spool, .max_size = max,
                                .part_size = part };
    struct bstore *s = NULL;
    assert_int_equal(bstore_s3_new(&o, &s), 0);
    return s;
}

static struct bstore *bstore_contract_open(uint64_t max)
{
    return open_s3(max, 0, "S3RVER:S3RVER\n");
}

static void multipart_above_part_size_reads_back_whole(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = open_s3(0, 5 << 20,
                                                       "S3RVER:S3RVER");
    size_t len = (11 << 20) + 12345; /* three parts, the last short */
    _cleanup_free_ uint8_t *data = xmalloc(len);
    uint64_t seed = 7;
    for (size_t i = 0; i < len; i++)
        data[i] = (uint8_t)tu_xorshift(&seed);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    /* in the agent's chunks, not aligned to parts */
    for (size_t off = 0; off < len; off += 1000003) {
        size_t n = len - off < 1000003 ? len - off : 1000003;
        assert_int_equal(s->ops->append(s, ID1, off, data + off, n, NULL), 0);
    }
    char hex[65];
    sha256_hex(data, len, hex);
    assert_int_equal(s->ops->commit(s, ID1, hex, len), 0);
    uint64_t n = 0;
    bool committed = false;
    assert_int_equal(s->ops->stat(s, ID1, &n, &committed), 0);
    assert_true(committed);
    assert_int_equal(n, len);
    int fd = -1;
    assert_int_equal(s->ops->open(s, ID1, &fd, &n), 0);
    assert_int_equal(n, len);
    _cleanup_free_ uint8_t *back = xmalloc(len);
    assert_int_equal(fd_read_full(fd, back, len), (ssize_t)len);
    close(fd);
    assert_memory_equal(back, data, len);
    /* nothing of it is left in the spool */
    _cleanup_free_ char *spooled = xasprintf("%s/spool/%s", tu_dir, ID1);
    assert_int_equal(access(spooled, F_OK), -1);
}

static void failed_send_keeps_the_upload(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = bstore_contract_open(0);
    char hex[65], other[65];
    sha256_hex("hello world", 11, hex);
    sha256_hex("hellO world", 11, other);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    assert_int_equal(s->ops->append(s, ID1, 0, "hello world", 11, NULL), 0);
    tu_s3_halt(&srv);
    assert_int_equal(s->ops->commit(s, ID1, hex, 11), -EIO);
    tu_s3_resume(&srv);
    uint64_t n = 0;
    bool committed = true;
    assert_int_equal(s->ops->stat(s, ID1, &n, &committed), 0);
    assert_int_equal(n, 11);
    assert_false(committed);
    /* still the store's: the sweep sees an open upload */
    struct bstore_entry *en = NULL;
    size_t count = 0;
    assert_int_equal(s->ops->entries(s, &en, &count), 0);
    assert_int_equal(count, 1);
    assert_false(en[0].committed);
    free(en);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    /* the digest is checked again at the retry */
    assert_int_equal(s->ops->begin(s, ID2), 0);
    assert_int_equal(s->ops->append(s, ID2, 0, "hello world", 11, NULL), 0);
    tu_s3_halt(&srv);
    assert_int_equal(s->ops->commit(s, ID2, hex, 11), -EIO);
    tu_s3_resume(&srv);
    assert_int_equal(s->ops->commit(s, ID2, other, 11), -EBADMSG);
    assert_int_equal(s->ops->stat(s, ID2, &n, NULL), -ENOENT);

    assert_int_equal(s->ops->commit(s, ID1, hex, 11), 0);
    int fd = -1;
    assert_int_equal(s->ops->open(s, ID1, &fd, &n), 0);
    char back[16] = { 0 };
    assert_int_equal(read(fd, back, sizeof(back)), 11);
    close(fd);
    assert_memory_equal(back, "hello world", 11);
}

static void foreign_objects_left_out(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = bstore_contract_open(0);
    _cleanup_free_ char *p1 = xasprintf("%s/notes.txt", bucket);
    _cleanup_free_ char *p2 = xasprintf("%s/0B5C2A2E-6D5F-4C61-9D0A-"
                                        "1C6F6B0F7A11", bucket);
    _cleanup_free_ char *p3 = xasprintf("%s/%s.part", bucket, ID2);
    assert_int_equal(tu_s3_raw(&srv, "PUT", p1, "x"), 200);
    assert_int_equal(tu_s3_raw(&srv, "PUT", p2, "x"), 200);
    assert_int_equal(tu_s3_raw(&srv, "PUT", p3, "x"), 200);
    char hex[65];
    sha256_hex("", 0, hex);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    assert_int_equal(s->ops->commit(s, ID1, hex, 0), 0);
    char **ids = NULL;
    size_t n = 0;
    assert_int_equal(s->ops->list(s, &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], ID1);
    bstore_ids_free(ids);
    struct bstore_entry *en = NULL;
    assert_int_equal(s->ops->entries(s, &en, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(en[0].id, ID1);
    free(en);
    /* an empty blob reads back empty */
    int fd = -1;
    uint64_t size = 9;
    assert_int_equal(s->ops->open(s, ID1, &fd, &size), 0);
    assert_int_equal(size, 0);
    close(fd);
}

static void refused_key_and_bad_options(void **state)
{
    (void)state;
    {
        _cleanup_(bstore_freep) struct bstore *s = open_s3(0, 0, "NOPE:x");
        char **ids = NULL;
        assert_int_equal(s->ops->list(s, &ids, NULL), -EACCES);
        assert_int_equal(s->ops->begin(s, ID1), -EACCES);
    }
    _cleanup_free_ char *spool = xasprintf("%s/spool", tu_dir);
    _cleanup_free_ char *good = key_file("good.key", "A:B\n", 0600);
    _cleanup_free_ char *open_mode = key_file("open.key", "A:B\n", 0644);
    _cleanup_free_ char *no_colon = key_file("nc.key", "AB\n", 0600);
    _cleanup_free_ char *two = key_file("two.key", "A:B\nC:D\n", 0600);
    _cleanup_free_ char *missing = xasprintf("%s/none.key", tu_dir);
    struct {
        const char *url, *region, *key, *ca;
        uint64_t part;
        int want;
    } bad[] = {
        { "s3://Bad_Bucket", NULL, good, NULL, 0, -EINVAL },
        { "s3://ab", NULL, good, NULL, 0, -EINVAL },
        { "s3://fog-backups", "us east", good, NULL, 0, -EINVAL },
        { "ftp://host/bucket", NULL, good, NULL, 0, -EINVAL },
        { "https://host", NULL, good, NULL, 0, -EINVAL },
        { "https://host/", NULL, good, NULL, 0, -EINVAL },
        { "https://host/b/../x", NULL, good, NULL, 0, -EINVAL },
        { "https://h@st/bucket", NULL, good, NULL, 0, -EINVAL },
        { "https://host/bucket?x=1", NULL, good, NULL, 0, -EINVAL },
        { "https://host/bucket", NULL, open_mode, NULL, 0, -EPERM },
        { "https://host/bucket", NULL, no_colon, NULL, 0, -EINVAL },
        { "https://host/bucket", NULL, two, NULL, 0, -EINVAL },
        { "https://host/bucket", NULL, missing, NULL, 0, -ENOENT },
        { "https://host/bucket", NULL, NULL, NULL, 0, -EINVAL },
        { "https://host/bucket", NULL, good, missing, 0, -ENOENT },
        { "https://host/bucket", NULL, good, NULL, 1 << 20, -EINVAL },
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        struct bstore_s3_opts o = { .url = bad[i].url,
                                    .region = bad[i].region,
                                    .key_file = bad[i].key,
                                    .ca_file = bad[i].ca,
                                    .spool_dir = spool,
                                    .part_size = bad[i].part };
        struct bstore *s = NULL;
        assert_int_equal(bstore_s3_new(&o, &s), bad[i].want);
        assert_null(s);
    }
    struct bstore_s3_opts o = { .url = "s3://fog-backups.eu",
                                .region = "eu-west-1", .key_file = good,
                                .spool_dir = spool };
    struct bstore *s = NULL;
    assert_int_equal(bstore_s3_new(&o, &s), 0);
    bstore_free(s);
}

int main(void)
{
    if (tu_s3_start(&srv) < 0) {
        printf("node or s3rver missing: run sh tools/npm-deps.sh\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        BSTORE_CONTRACT_TESTS(s3_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(multipart_above_part_size_reads_back_whole,
                                        s3_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(failed_send_keeps_the_upload,
                                        s3_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(foreign_objects_left_out, s3_setup,
                                        tu_dir_teardown),
        cmocka_unit_test_setup_teardown(refused_key_and_bad_options,
                                        s3_setup, tu_dir_teardown),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    tu_s3_destroy(&srv);
    return r;
}
