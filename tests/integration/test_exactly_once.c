/* Exactly once under retry: keyed calls retried across kill -9s of the
 * controller apply once, concurrent duplicates of a key apply once, a key
 * reused for another body is refused, secrets are never at rest, and
 * unauthenticated calls write nothing. */
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/app.h"
#include "controller/store.h"
#include "tests/testutil.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>
#include <unistd.h>

static struct tu_ctl ctl;
static char *tenant_id, *tenant_key;

static char *must(const char *key, const char *method, const char *path,
                  const char *body, long want, const char *field)
{
    return tu_api_field(&ctl, key, method, path, body, want, field);
}

static int setup(void **state)
{
    tu_ctl_start(&ctl, NULL);
    tenant_id = must(ctl.admin_key, "POST", "/v1/accounts",
                     "{\"name\":\"tenant-x\",\"role\":\"tenant\"}", 201, "id");
    tenant_key = must(ctl.admin_key, "POST", "/v1/keys",
                      "{\"account\":\"tenant-x\"}", 201, "secret");
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    free(tenant_id);
    free(tenant_key);
    return 0;
}

static struct store *open_store(void)
{
    _cleanup_free_ char *db = tu_store_address(&ctl);
    struct store *s = NULL;
    assert_int_equal(store_open(db, &s), 0);
    return s;
}

/* One keyed call, retried with the same key until the controller answers
 * something that is not a server error (it may be dead or restarting). */
static long keyed(pthread_mutex_t *lock, const char *key, const char *method,
                  const char *path, const char *body, const char *ikey,
                  json_t **ret)
{
    _cleanup_free_ char *hdr = xasprintf("Idempotency-Key: %s", ikey);
    _cleanup_free_ char *url = NULL;
    for (int tries = 0; tries < 2000; tries++) {
        struct tu_resp resp = { 0 };
        if (lock)
            pthread_mutex_lock(lock);
        free(url);
        url = xasprintf("%s%s", ctl.url, path);
        if (lock)
            pthread_mutex_unlock(lock);
        long st = tu_http(method, url, key, ctl.ca, body,
                          body ? strlen(body) : 0, NULL, hdr, &resp);
        if (st > 0 && st < 500) {
            if (st >= 300)
                print_message("%s %s -> %ld %s\n", method, path, st,
                              resp.body ? resp.body : "");
            if (ret)
                *ret = json_loads(resp.body ? resp.body : "", 0, NULL);
            tu_resp_clear(&resp);
            return st;
        }
        tu_resp_clear(&resp);
        usleep(20 * 1000);
    }
    return -1;
}

/* ---- the kill -9 campaign ------------------------------------------------ */

static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile bool campaign_done;
static int kills;

static void *killer(void *arg)
{
    unsigned seed = 20261203;
    while (!campaign_done) {
        /* Often enough to land inside calls, seldom enough that calls
         * also get through between restarts on a loaded machine. */
        usleep((useconds_t)(150 + rand_r(&seed) % 500) * 1000);
        if (campaign_done)
            break;
        pthread_mutex_lock(&ctl_lock);
        tu_ctl_stop(&ctl, SIGKILL);
        tu_ctl_restart(&ctl);
        kills++;
        pthread_mutex_unlock(&ctl_lock);
    }
    return NULL;
}

/* 8 keyed calls a cycle: 320 in all. A sanitizer build restarts the
 * controller several times slower, so it runs a shorter campaign (the
 * same code paths; the full one runs in the plain build). */
#ifdef __SANITIZE_ADDRESS__
enum { CYCLES = 8 };
#else
enum { CYCLES = 40 };
#endif

static void kill9_campaign_applies_every_keyed_call_exactly_once(void **state)
{
    char vm_ids[CYCLES][40], net_ids[CYCLES][40];
    int wrong = 0, calls = 0;
    _cleanup_free_ char *credit_path =
        xasprintf("/v1/accounts/%s/credit", tenant_id);
    pthread_t thr;

    campaign_done = false;
    assert_int_equal(pthread_create(&thr, NULL, killer, NULL), 0);
    for (int i = 0; i < CYCLES; i++) {
        json_t *j = NULL;
        for (int k = 0; k < 4; k++) {
            _cleanup_free_ char *body = xasprintf(
                "{\"amount\":\"1\",\"memo\":\"eo-%d-%d\"}", i, k);
            _cleanup_free_ char *ik = xasprintf("credit-%d-%d", i, k);
            wrong += keyed(&ctl_lock, ctl.admin_key, "POST", credit_path, body,
                           ik, NULL) != 201;
            calls++;
        }
        _cleanup_free_ char *vbody = xasprintf(
            "{\"name\":\"eo-vm-%d\",\"vcpus\":1,\"memory_mib\":64,"
            "\"disk_gib\":1,\"allow_tcg\":true,\"image\":\"tiny\"}", i);
        _cleanup_free_ char *vk = xasprintf("vm-create-%d", i);
        wrong += keyed(&ctl_lock, tenant_key, "POST", "/v1/vms", vbody, vk,
                       &j) != 201;
        calls++;
        snprintf(vm_ids[i], sizeof(vm_ids[i]), "%s",
                 json_str(j, "id") ? json_str(j, "id") : "");
        json_decref(j);
        j = NULL;
        _cleanup_free_ char *nbody = xasprintf(
            "{\"name\":\"eo-net-%d\",\"cidr\":\"10.77.%d.0/24\"}", i, i);
        _cleanup_free_ char *nk = xasprintf("net-create-%d", i);
        wrong += keyed(&ctl_lock, tenant_key, "POST", "/v1/networks", nbody, nk,
                       &j) != 201;
        calls++;
        snprintf(net_ids[i], sizeof(net_ids[i]), "%s",
                 json_str(j, "id") ? json_str(j, "id") : "");
        json_decref(j);
        _cleanup_free_ char *vpath = xasprintf("/v1/vms/%s", vm_ids[i]);
        _cleanup_free_ char *vdk = xasprintf("vm-delete-%d", i);
        long st = keyed(&ctl_lock, tenant_key, "DELETE", vpath, NULL, vdk,
                        NULL);
        wrong += st != 200 && st != 202 && st != 204;
        calls++;
        _cleanup_free_ char *npath = xasprintf("/v1/networks/%s", net_ids[i]);
        _cleanup_free_ char *ndk = xasprintf("net-delete-%d", i);
        st = keyed(&ctl_lock, tenant_key, "DELETE", npath, NULL, ndk, NULL);
        wrong += st != 200 && st != 202 && st != 204;
        calls++;
    }
    campaign_done = true;
    pthread_join(thr, NULL);
    print_message("%d keyed calls, %d controller kill -9s, %d wrong answers\n",
                  calls, kills, wrong);
    assert_true(calls >= CYCLES * 8);
    assert_true(kills >= CYCLES / 4);
    assert_int_equal(wrong, 0);

    tu_ctl_stop(&ctl, SIGTERM);
    struct store *s = open_store();
    /* Every credit posted once: 160 transactions, one per memo. */
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM ledger_tx "
                                     "WHERE kind = 'credit' AND memo LIKE "
                                     "'eo-%'", ""), CYCLES * 4);
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(DISTINCT memo) FROM "
                                     "ledger_tx WHERE kind = 'credit' AND "
                                     "memo LIKE 'eo-%'", ""), CYCLES * 4);
    /* The ledger balances per transaction, in total, and in the running
     * balances. */
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM (SELECT "
                                     "tx_id FROM ledger_entry GROUP BY tx_id "
                                     "HAVING SUM(amount) <> 0) t", ""), 0);
    assert_int_equal(store_query_int(s, -1, "SELECT COALESCE(SUM(amount), 0) "
                                     "FROM ledger_entry", ""), 0);
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM "
                                     "ledger_balances b WHERE b.balance <> "
                                     "(SELECT COALESCE(SUM(amount), 0) FROM "
                                     "ledger_entry e WHERE e.account = "
                                     "b.account)", ""), 0);
    for (int i = 0; i < CYCLES; i++) {
        /* Created once (no second VM or network under another id), with
         * exactly one event for the effect, and deleted. */
        assert_true(uuid_is_valid(vm_ids[i]) && uuid_is_valid(net_ids[i]));
        _cleanup_free_ char *vname = xasprintf("eo-vm-%d", i);
        _cleanup_free_ char *nname = xasprintf("eo-net-%d", i);
        assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM vms "
                                         "WHERE name = $1", "s", vname), 1);
        assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM vms "
                                         "WHERE id = $1 AND desired_state = "
                                         "'deleted'", "s", vm_ids[i]), 1);
        assert_true(store_query_int(s, -1, "SELECT COUNT(*) FROM networks "
                                    "WHERE name = $1", "s", nname) <= 1);
        assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM networks "
                                         "WHERE id = $1 AND deleted_at IS "
                                         "NULL", "s", net_ids[i]), 0);
        assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM events "
                                         "WHERE target = $1 AND action = "
                                         "'POST /v1/vms' AND status = 201 AND "
                                         "detail <> 'replayed'", "s",
                                         vm_ids[i]), 1);
        assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM events "
                                         "WHERE target = $1 AND action = "
                                         "'POST /v1/networks' AND status = 201 "
                                         "AND detail <> 'replayed'", "s",
                                         net_ids[i]), 1);
    }
    json_auto_t *ic = NULL;
    if (!ctl.database) { /* sqlite's own check of its file */
        assert_int_equal(store_query_one(s, &ic, "PRAGMA integrity_check",
                                         ""), 0);
        assert_string_equal(json_str(ic, "integrity_check"), "ok");
    }
    store_close(s);
    tu_ctl_restart(&ctl);
}

/* ---- concurrent duplicates ----------------------------------------------- */

enum { DUP_KEYS = 100, DUP_CLIENTS = 4 };
static long dup_status[DUP_CLIENTS][DUP_KEYS];

static void *dup_client(void *arg)
{
    int me = (int)(intptr_t)arg;
    _cleanup_free_ char *path = xasprintf("/v1/accounts/%s/credit", tenant_id);
    for (int k = 0; k < DUP_KEYS; k++) {
        _cleanup_free_ char *body = xasprintf(
            "{\"amount\":\"2\",\"memo\":\"dup-%d\"}", k);
        _cleanup_free_ char *ik = xasprintf("dup-%d", k);
        dup_status[me][k] = keyed(NULL, ctl.admin_key, "POST", path, body, ik,
                                  NULL);
    }
    return NULL;
}

static void one_key_sent_by_four_clients_at_once_applies_once(void **state)
{
    pthread_t thr[DUP_CLIENTS];
    for (int i = 0; i < DUP_CLIENTS; i++)
        assert_int_equal(pthread_create(&thr[i], NULL, dup_client,
                                        (void *)(intptr_t)i), 0);
    for (int i = 0; i < DUP_CLIENTS; i++)
        pthread_join(thr[i], NULL);
    for (int i = 0; i < DUP_CLIENTS; i++)
        for (int k = 0; k < DUP_KEYS; k++)
            assert_int_equal(dup_status[i][k], 201);
    struct store *s = open_store();
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM ledger_tx "
                                     "WHERE kind = 'credit' AND memo LIKE "
                                     "'dup-%'", ""), DUP_KEYS);
    store_close(s);
}

static void key_reused_with_another_body_is_refused(void **state)
{
    _cleanup_free_ char *path = xasprintf("/v1/accounts/%s/credit", tenant_id);
    json_auto_t *j = NULL;
    assert_int_equal(keyed(NULL, ctl.admin_key, "POST", path,
                           "{\"amount\":\"3\",\"memo\":\"reuse\"}", "reuse-1",
                           NULL), 201);
    assert_int_equal(keyed(NULL, ctl.admin_key, "POST", path,
                           "{\"amount\":\"300\",\"memo\":\"reuse\"}",
                           "reuse-1", &j), 422);
    assert_string_equal(json_str(j, "type"),
                        "urn:fog:problem:idempotency-key-reused");
    /* The same key under another path is another request too. */
    assert_int_equal(keyed(NULL, ctl.admin_key, "POST", "/v1/accounts",
                           "{\"name\":\"reuse\",\"role\":\"tenant\"}",
                           "reuse-1", NULL), 422);
}

/* Bytes of the database and its WAL, to search for a secret in. */
static bool store_files_hold(const char *needle)
{
    static const char *const names[] = { "fog.db", "fog.db-wal" };
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        _cleanup_free_ char *p = xasprintf("%s/%s", ctl.dir, names[i]);
        _cleanup_free_ char *data = NULL;
        size_t len;
        if (file_read(p, 256 << 20, &data, &len) < 0)
            continue;
        if (memmem(data, len, needle, strlen(needle)))
            return true;
    }
    return false;
}

static void replies_with_secrets_are_never_stored(void **state)
{
    json_auto_t *first = NULL, *again = NULL;
    assert_int_equal(keyed(NULL, tenant_key, "POST", "/v1/keys",
                           "{\"description\":\"ci\"}", "key-1", &first), 201);
    const char *secret = json_str(first, "secret");
    assert_non_null(secret);
    /* The secret part after the key id: what must never be at rest. */
    const char *tail = strrchr(secret, '_');
    assert_non_null(tail);
    assert_int_equal(keyed(NULL, tenant_key, "POST", "/v1/keys",
                           "{\"description\":\"ci\"}", "key-1", &again), 201);
    assert_string_equal(json_str(again, "id"), json_str(first, "id"));
    assert_null(json_str(again, "secret"));
    /* The sqlite file and its WAL (a PostgreSQL store's rows are written
     * by the same code). */
    assert_false(store_files_hold(secret));
    assert_false(store_files_hold(tail + 1));
}

static void unauthenticated_flood_writes_no_row(void **state)
{
    struct store *s = open_store();
    int64_t before = store_query_int(s, -1, "SELECT COUNT(*) FROM events", "");
    store_close(s);
    _cleanup_free_ char *url = xasprintf("%s/v1/vms", ctl.url);
    for (int i = 0; i < 200; i++) {
        struct tu_resp resp = { 0 };
        const char *key = i % 2 ? "fog_bogus_bogus" : NULL;
        assert_int_equal(tu_http("POST", url, key, ctl.ca, "{\"name\":\"x\"}",
                                 13, NULL, "Idempotency-Key: flood", &resp),
                         401);
        tu_resp_clear(&resp);
    }
    s = open_store();
    assert_int_equal(store_query_int(s, -1, "SELECT COUNT(*) FROM events", ""),
                     before);
    store_close(s);
}

/* Events and idempotency keys do not pile up: past their retention they
 * are pruned, newer ones stay. */
static void old_events_and_keys_are_pruned(void **state)
{
    struct app a = { 0 };
    a.store = open_store();
    a.cfg.event_retention_s = 3600;
    a.cfg.idempotency_ttl_s = 600;
    int64_t now = now_s();
    for (int i = 0; i < 2500; i++) {
        char id[UUID_STR_LEN + 1], key[32];
        uuid_generate_str(id);
        assert_int_equal(store_exec(a.store, "INSERT INTO events (id, time_ms, "
                                    "action, status, detail) VALUES ($1, $2, "
                                    "'old', 200, '')", "si", id,
                                    (now - 7200) * 1000), 1);
        snprintf(key, sizeof(key), "old-%d", i);
        assert_int_equal(store_exec(a.store, "INSERT INTO idempotency "
                                    "(account_id, key, method, path, status, "
                                    "content_type, body, created_at) VALUES "
                                    "($1, $2, 'POST', '/', 201, '', '', $3)",
                                    "ssi", tenant_id, key, now - 1200), 1);
    }
    int64_t recent = store_query_int(a.store, -1, "SELECT COUNT(*) FROM "
                                     "events WHERE action <> 'old'", "");
    assert_true(recent > 0);
    app_prune(&a);
    assert_int_equal(store_query_int(a.store, -1, "SELECT COUNT(*) FROM events "
                                     "WHERE action = 'old'", ""), 0);
    assert_int_equal(store_query_int(a.store, -1, "SELECT COUNT(*) FROM events "
                                     "WHERE action <> 'old'", ""), recent);
    assert_int_equal(store_query_int(a.store, -1, "SELECT COUNT(*) FROM "
                                     "idempotency WHERE key LIKE 'old-%'", ""),
                     0);
    assert_true(store_query_int(a.store, -1, "SELECT COUNT(*) FROM "
                                "idempotency", "") > 0);
    store_close(a.store);
}

/* A controller whose disk fills up answers writes 507 and changes
 * nothing, keeps answering reads, and takes writes again once there is
 * room. Needs root to mount a small tmpfs. */
static void full_disk_answers_507_and_keeps_serving_reads(void **state)
{
    _cleanup_free_ char *mnt = tu_tempdir("full");
    _cleanup_free_ char *mount_bin = tu_which("mount");
    _cleanup_free_ char *umount_bin = tu_which("umount");
    /* The disk filled here is the sqlite store's; a PostgreSQL store's is
     * the database server's (its disk_full also answers 507). */
    if (!mount_bin || !umount_bin || geteuid() != 0 || tu_on_pg()) {
        tu_rmrf(mnt);
        skip();
    }
    char *mount_argv[] = { mount_bin, (char *)"-t", (char *)"tmpfs",
                           (char *)"-o", (char *)"size=16m", (char *)"tmpfs",
                           mnt, NULL };
    int st;
    free(tu_run(mount_argv, &st));
    if (st != 0) {
        tu_rmrf(mnt);
        skip();
    }
    const char *old_tmp = getenv("TMPDIR");
    _cleanup_free_ char *saved = old_tmp ? xstrdup(old_tmp) : NULL;
    setenv("TMPDIR", mnt, 1);
    struct tu_ctl full;
    tu_ctl_start(&full, NULL);
    if (saved)
        setenv("TMPDIR", saved, 1);
    else
        unsetenv("TMPDIR");

    /* Fill the file system to the last byte. */
    _cleanup_free_ char *ballast = xasprintf("%s/ballast", mnt);
    FILE *f = fopen(ballast, "w");
    assert_non_null(f);
    static char block[65536];
    while (fwrite(block, 1, sizeof(block), f) == sizeof(block))
        ;
    while (fwrite(block, 1, 512, f) == 512)
        ;
    fclose(f);

    /* The WAL may still have room from before: write until it has none. */
    long got = 0;
    json_auto_t *problem = NULL;
    for (int i = 0; i < 4000 && got != 507; i++) {
        _cleanup_free_ char *body = xasprintf(
            "{\"name\":\"filler-%d-%040d\",\"role\":\"tenant\"}", i, i);
        json_decref(problem);
        problem = tu_api(&full, full.admin_key, "POST", "/v1/accounts", body,
                         &got);
        assert_true(got == 201 || got == 507);
    }
    assert_int_equal(got, 507);
    assert_string_equal(json_str(problem, "type"),
                        "urn:fog:problem:store-full");
    long rst;
    json_auto_t *list = tu_api(&full, full.admin_key, "GET",
                               "/v1/accounts?limit=5", NULL, &rst);
    assert_int_equal(rst, 200);
    assert_true(json_array_size(json_object_get(list, "items")) > 0);

    unlink(ballast);
    json_decref(tu_api(&full, full.admin_key, "POST", "/v1/accounts",
                       "{\"name\":\"after-room\",\"role\":\"tenant\"}",
                       &rst));
    assert_int_equal(rst, 201);
    tu_ctl_destroy(&full);
    char *umount_argv[] = { umount_bin, mnt, NULL };
    free(tu_run(umount_argv, &st));
    tu_rmrf(mnt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_key_sent_by_four_clients_at_once_applies_once),
        cmocka_unit_test(key_reused_with_another_body_is_refused),
        cmocka_unit_test(replies_with_secrets_are_never_stored),
        cmocka_unit_test(unauthenticated_flood_writes_no_row),
        cmocka_unit_test(full_disk_answers_507_and_keeps_serving_reads),
        cmocka_unit_test(old_events_and_keys_are_pruned),
        cmocka_unit_test(kill9_campaign_applies_every_keyed_call_exactly_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
