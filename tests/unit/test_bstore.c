/* controller/bstore_dir: a blob is appended only at its received size,
 * commits only when its bytes hash to the digest given (else the upload
 * is discarded; the digest runs with the upload, or is taken of the whole
 * file when the store did not see it all), reads back whole, and lives in
 * a private directory under names the store made; the sweep's listing
 * names only its own files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/ids.h"
#include "controller/bstore.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ID1 "0b5c2a2e-6d5f-4c61-9d0a-1c6f6b0f7a11"
#define ID2 "5e8f0c1d-2b3a-4e5f-8a9b-0c1d2e3f4a52"

static struct bstore *open_store(uint64_t max)
{
    _cleanup_free_ char *dir = xasprintf("%s/backups", tu_dir);
    struct bstore *s = NULL;
    assert_int_equal(bstore_dir_new(dir, max, &s), 0);
    return s;
}

static void append_only_at_received_size_and_resume(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = open_store(0);
    uint64_t n = 99;
    assert_int_equal(s->ops->append(s, ID1, 0, "x", 1, &n), -ENOENT);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    assert_int_equal(s->ops->append(s, ID1, 0, "hello ", 6, &n), 0);
    assert_int_equal(n, 6);
    /* a resent chunk (offset behind) and a gap (ahead) are both refused
     * with the size the sender should continue from */
    n = 0;
    assert_int_equal(s->ops->append(s, ID1, 0, "hello ", 6, &n), -ESPIPE);
    assert_int_equal(n, 6);
    assert_int_equal(s->ops->append(s, ID1, 9, "zzz", 3, &n), -ESPIPE);
    assert_int_equal(n, 6);
    /* begin again (a restarted sender) keeps what was received */
    assert_int_equal(s->ops->begin(s, ID1), 0);
    bool committed = true;
    assert_int_equal(s->ops->stat(s, ID1, &n, &committed), 0);
    assert_int_equal(n, 6);
    assert_false(committed);
    assert_int_equal(s->ops->append(s, ID1, 6, "world", 5, &n), 0);
    assert_int_equal(n, 11);

    char hex[65];
    sha256_hex("hello world", 11, hex);
    assert_int_equal(s->ops->commit(s, ID1, hex, 11), 0);
    assert_int_equal(s->ops->stat(s, ID1, &n, &committed), 0);
    assert_true(committed);
    assert_int_equal(n, 11);
    /* sealed: no more appends, no second upload under the same id */
    assert_int_equal(s->ops->append(s, ID1, 11, "!", 1, &n), -ENOENT);
    assert_int_equal(s->ops->begin(s, ID1), -EEXIST);

    int fd = -1;
    uint64_t size = 0;
    assert_int_equal(s->ops->open(s, ID1, &fd, &size), 0);
    char back[32] = { 0 };
    assert_int_equal(read(fd, back, sizeof(back)), 11);
    close(fd);
    assert_int_equal(size, 11);
    assert_memory_equal(back, "hello world", 11);
}

static void commit_with_wrong_digest_or_size_discards(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = open_store(0);
    char hex[65];
    sha256_hex("abc", 3, hex);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    assert_int_equal(s->ops->append(s, ID1, 0, "abd", 3, NULL), 0);
    assert_int_equal(s->ops->commit(s, ID1, hex, 3), -EBADMSG);
    uint64_t n;
    assert_int_equal(s->ops->stat(s, ID1, &n, NULL), -ENOENT);
    int fd;
    assert_int_equal(s->ops->open(s, ID1, &fd, &n), -ENOENT);

    assert_int_equal(s->ops->begin(s, ID2), 0);
    assert_int_equal(s->ops->append(s, ID2, 0, "abc", 3, NULL), 0);
    assert_int_equal(s->ops->commit(s, ID2, hex, 4), -EBADMSG);
    assert_int_equal(s->ops->stat(s, ID2, &n, NULL), -ENOENT);
    /* no open upload: nothing to commit */
    assert_int_equal(s->ops->commit(s, ID2, hex, 3), -ENOENT);
}

static void private_dir_own_ids_list_remove_and_limit(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = open_store(8);
    _cleanup_free_ char *dir = xasprintf("%s/backups", tu_dir);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    static const char *const bad[] = { "../etc", "x", "", "0B5C2A2E-6D5F-"
                                       "4C61-9D0A-1C6F6B0F7A11" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(s->ops->begin(s, bad[i]), -EINVAL);
        assert_int_equal(s->ops->remove(s, bad[i]), -EINVAL);
    }

    assert_int_equal(s->ops->begin(s, ID1), 0);
    _cleanup_free_ char *part = xasprintf("%s/%s.part", dir, ID1);
    assert_int_equal(stat(part, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(s->ops->append(s, ID1, 0, "12345", 5, NULL), 0);
    uint64_t n = 0;
    assert_int_equal(s->ops->append(s, ID1, 5, "6789", 4, &n), -EFBIG);
    assert_int_equal(s->ops->stat(s, ID1, &n, NULL), 0);
    assert_int_equal(n, 5);
    char hex[65];
    sha256_hex("12345", 5, hex);
    assert_int_equal(s->ops->commit(s, ID1, hex, 5), 0);
    assert_int_equal(s->ops->begin(s, ID2), 0);

    char **ids = NULL;
    size_t count = 0;
    assert_int_equal(s->ops->list(s, &ids, &count), 0);
    assert_int_equal(count, 1); /* uploads are not blobs yet */
    assert_string_equal(ids[0], ID1);
    assert_null(ids[1]);
    bstore_ids_free(ids);

    assert_int_equal(s->ops->remove(s, ID1), 0);
    assert_int_equal(s->ops->remove(s, ID2), 0);
    assert_int_equal(s->ops->remove(s, ID1), -ENOENT);
    assert_int_equal(s->ops->list(s, &ids, &count), 0);
    assert_int_equal(count, 0);
    bstore_ids_free(ids);
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
        cmocka_unit_test_setup_teardown(append_only_at_received_size_and_resume,
                                        tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(commit_with_wrong_digest_or_size_discards,
                                        tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(private_dir_own_ids_list_remove_and_limit,
                                        tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(entries_name_blobs_and_uploads_only,
                                        tu_dir_setup, tu_dir_teardown),
        cmocka_unit_test_setup_teardown(commit_digest_runs_with_the_upload_or_reads_it_whole,
                                        tu_dir_setup, tu_dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
