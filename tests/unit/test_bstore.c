/* controller/bstore_dir: the bstore contract (tests/bstore_contract.h,
 * which test_bstore_s3 runs on the S3 store too), then what is the
 * directory store's own: the digest runs with the upload, or is taken of
 * the whole file when the store did not see it all; blobs live in a
 * private directory under names the store made; the sweep's listing
 * names only its own files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/ids.h"
#include "controller/bstore.h"
#include "tests/testutil.h"
#include "tests/bstore_contract.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct bstore *open_store(uint64_t max)
{
    _cleanup_free_ char *dir = xasprintf("%s/backups", tu_dir);
    struct bstore *s = NULL;
    assert_int_equal(bstore_dir_new(dir, max, &s), 0);
    return s;
}

static struct bstore *bstore_contract_open(uint64_t max)
{
    return open_store(max);
}

/* Ids, list, remove and the limit are the contract's; here the files. */
static void private_dir_own_ids_list_remove_and_limit(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = open_store(8);
    _cleanup_free_ char *dir = xasprintf("%s/backups", tu_dir);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    _cleanup_free_ char *part = xasprintf("%s/%s.part", dir, ID1);
    assert_int_equal(stat(part, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(s->ops->append(s, ID1, 0, "12345", 5, NULL), 0);
    char hex[65];
    sha256_hex("12345", 5, hex);
    assert_int_equal(s->ops->commit(s, ID1, hex, 5), 0);
    _cleanup_free_ char *fin = xasprintf("%s/%s", dir, ID1);
    assert_int_equal(stat(fin, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 5);
    assert_int_equal(access(part, F_OK), -1);
    assert_int_equal(s->ops->remove(s, ID1), 0);
    assert_int_equal(access(fin, F_OK), -1);
}

/* The sweep's view: committed blobs and uploads with their age; files
 * and links that are not the store's are left out. */
static void entries_name_blobs_and_uploads_only(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = open_store(0);
    _cleanup_free_ char *dir = xasprintf("%s/backups", tu_dir);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    char hex[65];
    sha256_hex("", 0, hex);
    assert_int_equal(s->ops->commit(s, ID1, hex, 0), 0);
    assert_int_equal(s->ops->begin(s, ID2), 0);
    tu_put_file(dir, "notes.txt", "x");
    tu_put_file(dir, "0b5c2a2e-6d5f-4c61-9d0a-1c6f6b0f7a11.tmp", "x");
    _cleanup_free_ char *link = xasprintf("%s/%s", dir,
                                          "7e8f0c1d-2b3a-4e5f-8a9b-"
                                          "0c1d2e3f4a53");
    assert_int_equal(symlink("/etc/passwd", link), 0);

    _cleanup_free_ struct bstore_entry *en = NULL;
    size_t n = 0;
    time_t now = time(NULL);
    assert_int_equal(s->ops->entries(s, &en, &n), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        assert_true(streq(en[i].id, ID1) || streq(en[i].id, ID2));
        assert_true(en[i].committed == streq(en[i].id, ID1));
        assert_true(en[i].mtime >= now - 60 && en[i].mtime <= now + 60);
    }
}

/* The digest is taken of the bytes as they arrive, so a commit reads
 * nothing back; an upload whose start the store did not see (it
 * restarted) is hashed whole at its commit, and one sent again from 0
 * after a refused commit gets a new running digest. */
static void commit_digest_runs_with_the_upload_or_reads_it_whole(void **state)
{
    (void)state;
    char hex[65], other[65];
    sha256_hex("hello world", 11, hex);
    sha256_hex("hellO world", 11, other);
    _cleanup_free_ char *part = xasprintf("%s/backups/%s.part", tu_dir, ID1);
    {
        _cleanup_(bstore_freep) struct bstore *s = open_store(0);
        assert_int_equal(s->ops->begin(s, ID1), 0);
        assert_int_equal(s->ops->append(s, ID1, 0, "hello ", 6, NULL), 0);
        assert_int_equal(s->ops->append(s, ID1, 6, "world", 5, NULL), 0);
        /* Changed on disk behind the store's back: the commit checks the
         * running digest of what arrived, not the file. */
        FILE *f = fopen(part, "r+");
        assert_non_null(f);
        assert_int_equal(fseek(f, 4, SEEK_SET), 0);
        assert_int_equal(fputc('O', f), 'O');
        fclose(f);
        assert_int_equal(s->ops->commit(s, ID1, other, 11), -EBADMSG);
        /* Refused and discarded; sent again from 0, it commits. */
        assert_int_equal(s->ops->begin(s, ID1), 0);
        assert_int_equal(s->ops->append(s, ID1, 0, "hello world", 11, NULL), 0);
        assert_int_equal(s->ops->commit(s, ID1, hex, 11), 0);
        /* The first half before a restart of the store ... */
        assert_int_equal(s->ops->begin(s, ID2), 0);
        assert_int_equal(s->ops->append(s, ID2, 0, "hellO ", 6, NULL), 0);
    }
    /* ... the rest after it: the commit hashes the file. */
    _cleanup_(bstore_freep) struct bstore *s = open_store(0);
    assert_int_equal(s->ops->begin(s, ID2), 0);
    assert_int_equal(s->ops->append(s, ID2, 6, "world", 5, NULL), 0);
    assert_int_equal(s->ops->commit(s, ID2, hex, 11), -EBADMSG);
    assert_int_equal(s->ops->begin(s, ID2), 0);
    assert_int_equal(s->ops->append(s, ID2, 0, "hellO ", 6, NULL), 0);
    {
        _cleanup_(bstore_freep) struct bstore *s2 = open_store(0);
        assert_int_equal(s2->ops->append(s2, ID2, 6, "world", 5, NULL), 0);
        assert_int_equal(s2->ops->commit(s2, ID2, other, 11), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        BSTORE_CONTRACT_TESTS(tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(private_dir_own_ids_list_remove_and_limit,
                                        tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(entries_name_blobs_and_uploads_only,
                                        tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(commit_digest_runs_with_the_upload_or_reads_it_whole,
                                        tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
