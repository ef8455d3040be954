/* The bstore contract (controller/bstore.h), checked the same way on
 * every store: a test defines bstore_contract_open() (a new store over
 * the same place each call, `max` as its max_size) and runs these. */
#pragma once

#include "common/ids.h"
#include "controller/bstore.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

#define ID1 "0b5c2a2e-6d5f-4c61-9d0a-1c6f6b0f7a11"
#define ID2 "5e8f0c1d-2b3a-4e5f-8a9b-0c1d2e3f4a52"

static struct bstore *bstore_contract_open(uint64_t max);

static void bstore_contract_append_and_resume(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = bstore_contract_open(0);
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

static void bstore_contract_bad_commit(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = bstore_contract_open(0);
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

/* Ids, list, remove, the size limit and the sweep's entries. */
static void bstore_contract_list_remove_entries(void **state)
{
    (void)state;
    _cleanup_(bstore_freep) struct bstore *s = bstore_contract_open(8);
    static const char *const bad[] = { "../etc", "x", "", "0B5C2A2E-6D5F-"
                                       "4C61-9D0A-1C6F6B0F7A11" };
    uint64_t n = 0;
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(s->ops->begin(s, bad[i]), -EINVAL);
        assert_int_equal(s->ops->remove(s, bad[i]), -EINVAL);
        assert_int_equal(s->ops->stat(s, bad[i], &n, NULL), -EINVAL);
    }
    assert_int_equal(s->ops->stat(s, ID1, &n, NULL), -ENOENT);
    assert_int_equal(s->ops->remove(s, ID1), -ENOENT);

    assert_int_equal(s->ops->begin(s, ID1), 0);
    assert_int_equal(s->ops->append(s, ID1, 0, "12345", 5, NULL), 0);
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

    struct bstore_entry *en = NULL;
    time_t now = time(NULL);
    assert_int_equal(s->ops->entries(s, &en, &count), 0);
    assert_int_equal(count, 2);
    for (size_t i = 0; i < count; i++) {
        assert_true(streq(en[i].id, ID1) || streq(en[i].id, ID2));
        assert_true(en[i].committed == streq(en[i].id, ID1));
        assert_true(en[i].mtime >= now - 60 && en[i].mtime <= now + 60);
    }
    free(en);

    assert_int_equal(s->ops->remove(s, ID1), 0);
    assert_int_equal(s->ops->remove(s, ID2), 0);
    assert_int_equal(s->ops->remove(s, ID1), -ENOENT);
    assert_int_equal(s->ops->remove(s, ID2), -ENOENT);
    assert_int_equal(s->ops->list(s, &ids, &count), 0);
    assert_int_equal(count, 0);
    bstore_ids_free(ids);
    assert_int_equal(s->ops->entries(s, &en, &count), 0);
    assert_int_equal(count, 0);
    free(en);
}

/* An upload outlives its store: a new one over the same place (the
 * controller restarted) stats what was received and takes the rest. */
static void bstore_contract_resume_after_restart(void **state)
{
    (void)state;
    {
        _cleanup_(bstore_freep) struct bstore *s = bstore_contract_open(0);
        assert_int_equal(s->ops->begin(s, ID1), 0);
        assert_int_equal(s->ops->append(s, ID1, 0, "hello ", 6, NULL), 0);
    }
    _cleanup_(bstore_freep) struct bstore *s = bstore_contract_open(0);
    assert_int_equal(s->ops->begin(s, ID1), 0);
    uint64_t n = 0;
    bool committed = true;
    assert_int_equal(s->ops->stat(s, ID1, &n, &committed), 0);
    assert_int_equal(n, 6);
    assert_false(committed);
    assert_int_equal(s->ops->append(s, ID1, 0, "hello ", 6, &n), -ESPIPE);
    assert_int_equal(n, 6);
    assert_int_equal(s->ops->append(s, ID1, 6, "world", 5, &n), 0);
    char hex[65];
    sha256_hex("hello world", 11, hex);
    assert_int_equal(s->ops->commit(s, ID1, hex, 11), 0);
    assert_int_equal(s->ops->begin(s, ID1), -EEXIST);
    assert_int_equal(s->ops->remove(s, ID1), 0);
}

#define BSTORE_CONTRACT_TESTS(setup, teardown)                                 \
    cmocka_unit_test_setup_teardown(bstore_contract_append_and_resume,         \
                                    setup, teardown),                          \
    cmocka_unit_test_setup_teardown(bstore_contract_bad_commit, setup,         \
                                    teardown),                                 \
    cmocka_unit_test_setup_teardown(bstore_contract_list_remove_entries,       \
                                    setup, teardown),                          \
    cmocka_unit_test_setup_teardown(bstore_contract_resume_after_restart,      \
                                    setup, teardown)
