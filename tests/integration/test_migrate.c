/* Cold migration through the API and fogctl, the nodes' side spoken by the
 * test: a migration takes a backup of kind 'migrate' listed to the VM's
 * node, and once its upload is committed the VM is placed on the node
 * named with the same id and addresses, the next placement generation, a
 * restore of that backup (size and sha256) in the new node's document and
 * one open deal there; a failed upload or a deleted backup ends the
 * migration 'failed' with the reason and the VM where it was; a running VM,
 * one on an unreachable node, a second migration, the current node named,
 * another tenant and a start meanwhile are refused; `fogctl migrate
 * --wait` prints the move or fails with the reason. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static struct tu_ctl ctl;
static char *alice, *bob;
static char *a_id, *a_cred, *b_id, *b_cred;
static const char *const serve_args[] = { "--heartbeat", "3600", NULL };

static json_t *api(const char *key, const char *method, const char *path,
                   const char *body, long want)
{
    return tu_api_want(&ctl, key, method, path, body, want);
}

/* A refusal: status want, and the problem's detail holds `text`. */
static void refused(const char *key, const char *method, const char *path,
                    const char *body, long want, const char *text)
{
    json_auto_t *j = api(key, method, path, body, want);
    const char *d = json_str(j, "detail");
    if (!d || !strstr(d, text))
        fail_msg("%s %s: detail '%s' lacks '%s'", method, path, d ? d : "-",
                 text);
}

/* Alice's VM `name`, created stopped or running. */
static json_t *vm_create(const char *name, bool stopped)
{
    _cleanup_free_ char *b = xasprintf(
        "{\"name\":\"%s\",\"vcpus\":1,\"memory_mib\":128,\"disk_gib\":1,"
        "\"allow_tcg\":true,\"image\":\"fog-tiny\"%s}", name,
        stopped ? ",\"power_state\":\"stopped\"" : "");
    return api(alice, "POST", "/v1/vms", b, 201);
}

/* "COUNT NODE" of VM vm_id's open deals (caller frees). */
static char *open_deals(const char *vm_id)
{
    return tu_sql_text(&ctl, "SELECT COUNT(*) || ' ' || MAX(node_id) FROM "
                       "deals WHERE vm_id = '%s' AND closed_at IS NULL",
                       vm_id);
}

static const char *cred_of(const char *node_id)
{
    return streq(node_id, a_id) ? a_cred : b_cred;
}

/* The pending backups listed for VM vm_id in the document of the node
 * holding cred: the first one's id (caller frees), or NULL. */
static char *listed_backup(const char *cred, const char *vm_id)
{
    long st;
    json_auto_t *d = tu_api(&ctl, cred, "GET", "/v1/agent/desired", NULL, &st);
    json_t *v = tu_find(json_object_get(d, "vms"), "id", vm_id);
    json_t *b = json_array_get(json_object_get(v, "backups"), 0);
    return json_str(b, "id") ? xstrdup(json_str(b, "id")) : NULL;
}

/* The node holding cred sends the backup's bytes and commits them, or
 * reports it failed with `fail`: the HTTP status of the last call. */
static long play_upload(const char *cred, const char *id, const char *fail,
                        char sha[65], size_t *ret_len)
{
    _cleanup_free_ char *base = xasprintf("%s/v1/agent/backups/%s", ctl.url,
                                          id);
    struct tu_resp r = { 0 };
    long st;
    if (fail) {
        _cleanup_free_ char *u = xasprintf("%s/fail", base);
        _cleanup_free_ char *b = xasprintf("{\"error\":\"%s\"}", fail);
        st = tu_http("POST", u, cred, ctl.ca, b, strlen(b), NULL, NULL, &r);
        tu_resp_clear(&r);
        return st;
    }
    uint8_t blob[50000];
    random_bytes(blob, sizeof(blob));
    sha256_hex(blob, sizeof(blob), sha);
    *ret_len = sizeof(blob);
    _cleanup_free_ char *u = xasprintf("%s?offset=0", base);
    st = tu_http("PUT", u, cred, ctl.ca, (const char *)blob, sizeof(blob),
                 "application/octet-stream", NULL, &r);
    tu_resp_clear(&r);
    if (st != 200)
        return st;
    _cleanup_free_ char *c = xasprintf("%s/commit", base);
    _cleanup_free_ char *b = xasprintf("{\"size\":%zu,\"sha256\":\"%s\"}",
                                       sizeof(blob), sha);
    st = tu_http("POST", c, cred, ctl.ca, b, strlen(b), NULL, NULL, &r);
    tu_resp_clear(&r);
    return st;
}

/* GET the migration of VM `name` until its state is not backing-up. */
static json_t *wait_migration(const char *name, int timeout_ms)
{
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/migration", name);
    int64_t end = mono_ms() + timeout_ms;
    for (;;) {
        json_t *m = api(alice, "GET", p, NULL, 200);
        if (!streq(json_str(m, "state"), "backing-up") || mono_ms() >= end)
            return m;
        json_decref(m);
        usleep(100000);
    }
}

/* A node played in a thread while fogctl waits: it finds the VM's listed
 * backup and uploads it, or fails it with `fail`. */
struct player {
    const char *cred, *vm_id, *fail;
    long status;
    pthread_t t;
};

static void *player_run(void *arg)
{
    struct player *p = arg;
    int64_t end = mono_ms() + 20000;
    p->status = -1;
    while (mono_ms() < end) {
        _cleanup_free_ char *id = listed_backup(p->cred, p->vm_id);
        if (id) {
            char sha[65];
            size_t len;
            p->status = play_upload(p->cred, id, p->fail, sha, &len);
            break;
        }
        usleep(100000);
    }
    return NULL;
}

/* A controller serving with args, two tenants, and two nodes that have
 * each reported once. */
static void start(const char *const *args)
{
    tu_ctl_start(&ctl, args);
    alice = tu_account(&ctl, "mg-alice", "tenant");
    bob = tu_account(&ctl, "mg-bob", "tenant");
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "mg-a", NULL, &a_id,
                                  &a_cred), 201);
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "mg-b", NULL, &b_id,
                                  &b_cred), 201);
    json_decref(api(a_cred, "POST", "/v1/agent/status", "{\"vms\":[]}", 200));
    json_decref(api(b_cred, "POST", "/v1/agent/status", "{\"vms\":[]}", 200));
}

static char *fault_dir, *fault_file;

static int setup(void **state)
{
    /* FOG_TEST_FAULT naming this file arms the controller's test seams
     * while the file exists. */
    fault_dir = tu_tempdir("mgfault");
    fault_file = xasprintf("%s/fault", fault_dir);
    setenv("FOG_TEST_FAULT", fault_file, 1);
    start(serve_args);
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    free(alice);
    free(bob);
    free(a_id);
    free(a_cred);
    free(b_id);
    free(b_cred);
    return 0;
}

static void migrate_moves_a_stopped_vm_or_fails_leaving_it(void **state)
{
    json_auto_t *vm = vm_create("mg-web", true);
    _cleanup_free_ char *id = xstrdup(json_str(vm, "id"));
    json_auto_t *before = api(alice, "GET", "/v1/vms/mg-web", NULL, 200);
    _cleanup_free_ char *from = xstrdup(json_str(before, "node_id"));
    const char *to = streq(from, a_id) ? b_id : a_id;
    const char *from_name = streq(from, a_id) ? "mg-a" : "mg-b";
    const char *to_name = streq(from, a_id) ? "mg-b" : "mg-a";
    int64_t gen = json_int(before, "place_gen", -1);
    _cleanup_free_ char *to_body = xasprintf("{\"node\":\"%s\"}", to_name);
    _cleanup_free_ char *from_body = xasprintf("{\"node\":\"%s\"}", from_name);

    /* Never migrated; another tenant sees nothing; the current node, a node
     * that is not there and a malformed body are refused. */
    json_auto_t *none = api(alice, "GET", "/v1/vms/mg-web/migration", NULL,
                            404);
    assert_string_equal(json_str(none, "type"),
                        "urn:fog:problem:no-migration");
    json_decref(api(bob, "POST", "/v1/vms/mg-web/migrate", to_body, 404));
    json_decref(api(bob, "GET", "/v1/vms/mg-web/migration", NULL, 404));
    refused(alice, "POST", "/v1/vms/mg-web/migrate", from_body, 409,
            "is on node");
    json_decref(api(alice, "POST", "/v1/vms/mg-web/migrate",
                    "{\"node\":\"nowhere\"}", 404));
    json_decref(api(alice, "POST", "/v1/vms/mg-web/migrate",
                    "{\"node\":7}", 400));
    json_decref(api(alice, "POST", "/v1/vms/mg-web/migrate",
                    "{\"node\":\"\"}", 400));
    json_decref(api(alice, "POST", "/v1/vms/mg-web/migrate",
                    "{\"node\":\"mg-a\",\"force\":true}", 400));
    json_decref(api(alice, "POST", "/v1/vms/..%2f..%2fetc/migrate", NULL,
                    404));

    /* A running VM must be stopped first. */
    json_auto_t *run = vm_create("mg-run", false);
    refused(alice, "POST", "/v1/vms/mg-run/migrate", NULL, 409,
            "stop it first");

    /* The migration begins with a backup of kind migrate on the VM's
     * node; a second one and a start are refused meanwhile. */
    json_auto_t *m = api(alice, "POST", "/v1/vms/mg-web/migrate", to_body,
                         202);
    assert_string_equal(json_str(m, "state"), "backing-up");
    assert_string_equal(json_str(m, "from"), from_name);
    assert_string_equal(json_str(m, "to"), to_name);
    assert_true(json_is_null(json_object_get(m, "error")));
    _cleanup_free_ char *bk = xstrdup(json_str(m, "backup"));
    _cleanup_free_ char *bpath = xasprintf("/v1/vms/mg-web/backups/%s", bk);
    json_auto_t *brow = api(alice, "GET", bpath, NULL, 200);
    assert_string_equal(json_str(brow, "kind"), "migrate");
    assert_string_equal(json_str(brow, "state"), "pending");
    refused(alice, "POST", "/v1/vms/mg-web/migrate", to_body, 409,
            "already under way");
    refused(alice, "POST", "/v1/vms/mg-web/start", NULL, 409,
            "being migrated");
    _cleanup_free_ char *listed = listed_backup(cred_of(from), id);
    assert_non_null(listed);
    assert_string_equal(listed, bk);

    /* The upload is committed: the VM moves. */
    char sha[65];
    size_t len = 0;
    assert_int_equal(play_upload(cred_of(from), bk, NULL, sha, &len), 200);
    json_auto_t *done = wait_migration("mg-web", 10000);
    assert_string_equal(json_str(done, "state"), "moved");
    assert_string_equal(json_str(done, "to"), to_name);
    assert_string_equal(json_str(done, "from"), from_name);
    json_auto_t *after = api(alice, "GET", "/v1/vms/mg-web", NULL, 200);
    assert_string_equal(json_str(after, "id"), id);
    assert_string_equal(json_str(after, "node_id"), to);
    assert_int_equal(json_int(after, "place_gen", -1), gen + 1);
    assert_string_equal(json_str(after, "desired_state"), "stopped");
    assert_true(json_equal(json_object_get(after, "addresses"),
                           json_object_get(before, "addresses")));
    /* The new node restores it from the backup; the old one no longer
     * holds it. */
    json_auto_t *d = api(cred_of(to), "GET", "/v1/agent/desired", NULL, 200);
    json_t *dv = tu_find(json_object_get(d, "vms"), "id", id);
    assert_non_null(dv);
    json_t *rs = json_object_get(dv, "restore");
    assert_non_null(rs);
    assert_string_equal(json_str(rs, "backup"), bk);
    assert_string_equal(json_str(rs, "sha256"), sha);
    assert_int_equal(json_int(rs, "size", -1), (int64_t)len);
    assert_true(is_lower_hex(json_str(dv, "backup_key"), 64));
    json_auto_t *od = api(cred_of(from), "GET", "/v1/agent/desired", NULL,
                          200);
    assert_null(tu_find(json_object_get(od, "vms"), "id", id));
    /* One open deal, on the new node; the event says from where to
     * where. */
    _cleanup_free_ char *deals = open_deals(id);
    _cleanup_free_ char *want_deal = xasprintf("1 %s", to);
    assert_string_equal(deals, want_deal);
    _cleanup_free_ char *ev = tu_sql_text(
        &ctl, "SELECT detail FROM events WHERE action = 'vm.migrate' AND "
        "target = '%s' AND status = 200", id);
    assert_non_null(ev);
    _cleanup_free_ char *ev_want = xasprintf("from node '%s' to node '%s'",
                                             from_name, to_name);
    assert_non_null(strstr(ev, ev_want));
    /* The backup it moved with is in use until the node reports it. */
    json_decref(api(alice, "DELETE", bpath, NULL, 409));

    /* Back without a pin: the upload fails, the migration says why and
     * the VM has not moved. */
    json_auto_t *m2 = api(alice, "POST", "/v1/vms/mg-web/migrate", NULL, 202);
    assert_true(json_is_null(json_object_get(m2, "to")));
    _cleanup_free_ char *bk2 = xstrdup(json_str(m2, "backup"));
    assert_int_equal(play_upload(cred_of(to), bk2, "qemu-img: read error",
                                 NULL, NULL), 204);
    json_auto_t *f = wait_migration("mg-web", 10000);
    assert_string_equal(json_str(f, "state"), "failed");
    assert_non_null(strstr(json_str(f, "error"), "qemu-img: read error"));
    json_auto_t *still = api(alice, "GET", "/v1/vms/mg-web", NULL, 200);
    assert_string_equal(json_str(still, "node_id"), to);
    assert_int_equal(json_int(still, "place_gen", -1), gen + 1);
    _cleanup_free_ char *fev = tu_sql_text(
        &ctl, "SELECT detail FROM events WHERE action = 'vm.migrate' AND "
        "target = '%s' AND status = 409", id);
    assert_non_null(fev);
    assert_non_null(strstr(fev, "read error"));

    /* Deleting the backup under way cancels the migration. */
    json_auto_t *m3 = api(alice, "POST", "/v1/vms/mg-web/migrate", NULL, 202);
    _cleanup_free_ char *b3 = xasprintf("/v1/vms/mg-web/backups/%s",
                                        json_str(m3, "backup"));
    json_decref(api(alice, "DELETE", b3, NULL, 204));
    json_auto_t *c = wait_migration("mg-web", 10000);
    assert_string_equal(json_str(c, "state"), "failed");
    assert_string_equal(json_str(c, "error"), "its backup was deleted");
    json_auto_t *still2 = api(alice, "GET", "/v1/vms/mg-web", NULL, 200);
    assert_string_equal(json_str(still2, "node_id"), to);

    /* The node named can no longer take it when the backup is in: failed
     * with why, and nothing moved (node, generation, deal). */
    _cleanup_free_ char *back = xasprintf("{\"node\":\"%s\"}", from_name);
    json_auto_t *m4 = api(alice, "POST", "/v1/vms/mg-web/migrate", back, 202);
    _cleanup_free_ char *drain = xasprintf("/v1/nodes/%s/drain", from);
    _cleanup_free_ char *undrain = xasprintf("/v1/nodes/%s/undrain", from);
    json_decref(api(ctl.admin_key, "POST", drain, NULL, 200));
    assert_int_equal(play_upload(cred_of(to), json_str(m4, "backup"), NULL,
                                 sha, &len), 200);
    json_auto_t *f4 = wait_migration("mg-web", 10000);
    assert_string_equal(json_str(f4, "state"), "failed");
    assert_non_null(strstr(json_str(f4, "error"), "cannot take the VM"));
    json_auto_t *still3 = api(alice, "GET", "/v1/vms/mg-web", NULL, 200);
    assert_string_equal(json_str(still3, "node_id"), to);
    assert_int_equal(json_int(still3, "place_gen", -1), gen + 1);
    _cleanup_free_ char *deals2 = open_deals(id);
    assert_string_equal(deals2, want_deal);
    json_decref(api(ctl.admin_key, "POST", undrain, NULL, 200));

    /* Started behind the API's back while the backup was taken: failed,
     * not moved. */
    json_auto_t *m5 = api(alice, "POST", "/v1/vms/mg-web/migrate", NULL, 202);
    tu_sql(&ctl, "UPDATE vms SET desired_state = 'running' WHERE id = '%s'",
           id);
    assert_int_equal(play_upload(cred_of(to), json_str(m5, "backup"), NULL,
                                 sha, &len), 200);
    json_auto_t *f5 = wait_migration("mg-web", 10000);
    assert_string_equal(json_str(f5, "state"), "failed");
    assert_string_equal(json_str(f5, "error"), "started during its migration");
    json_auto_t *still4 = api(alice, "GET", "/v1/vms/mg-web", NULL, 200);
    assert_string_equal(json_str(still4, "node_id"), to);
    tu_sql(&ctl, "UPDATE vms SET desired_state = 'stopped' WHERE id = '%s'",
           id);

    /* A VM deleted meanwhile: its migration is dropped. */
    json_auto_t *gone = vm_create("mg-gone", true);
    json_decref(api(alice, "POST", "/v1/vms/mg-gone/migrate", NULL, 202));
    json_decref(api(alice, "DELETE", "/v1/vms/mg-gone", NULL, 202));
    int64_t end = mono_ms() + 10000;
    char *ms = NULL;
    while (mono_ms() < end) {
        free(ms);
        ms = tu_sql_text(&ctl, "SELECT COALESCE(migrate_state, 'none') "
                         "FROM vms WHERE id = '%s'", json_str(gone, "id"));
        if (streq(ms, "none"))
            break;
        usleep(100000);
    }
    assert_string_equal(ms, "none");
    free(ms);

    /* Its node unreachable: restore, not migrate. */
    tu_sql(&ctl, "UPDATE nodes SET last_seen = 1 WHERE id = '%s'", to);
    refused(alice, "POST", "/v1/vms/mg-web/migrate", NULL, 409,
            "fogctl restore");
    json_decref(api(cred_of(to), "POST", "/v1/agent/status", "{\"vms\":[]}",
                    200));
    json_decref(api(alice, "DELETE", "/v1/vms/mg-run", NULL, 202));
    (void)run;

    /* Restored elsewhere while its backup was taken: the migration
     * fails, and the VM may be started again. */
    json_auto_t *m6 = api(alice, "POST", "/v1/vms/mg-web/migrate", NULL, 202);
    _cleanup_free_ char *rb = xasprintf("{\"backup\":\"%s\",\"node\":"
                                        "\"%s\"}", bk, from_name);
    json_decref(api(alice, "POST", "/v1/vms/mg-web/restore", rb, 202));
    json_auto_t *r = wait_migration("mg-web", 10000);
    assert_string_equal(json_str(r, "state"), "failed");
    assert_non_null(strstr(json_str(r, "error"), "moved meanwhile"));
    /* Its backup is no longer wanted: failed, listed to no node. */
    _cleanup_free_ char *b6 = xasprintf("/v1/vms/mg-web/backups/%s",
                                        json_str(m6, "backup"));
    json_auto_t *b6j = api(alice, "GET", b6, NULL, 200);
    assert_string_equal(json_str(b6j, "state"), "failed");
    assert_non_null(strstr(json_str(b6j, "error"), "its migration failed"));
    _cleanup_free_ char *l6 = listed_backup(cred_of(from), id);
    assert_null(l6);
    json_decref(api(alice, "POST", "/v1/vms/mg-web/start", NULL, 202));
    json_decref(api(alice, "POST", "/v1/vms/mg-web/destroy", NULL, 202));
}

static void fogctl_migrate_waits_for_the_move_or_says_why(void **state)
{
    json_auto_t *vm = api(alice, "GET", "/v1/vms/mg-web", NULL, 200);
    const char *on = json_str(vm, "node_id");
    const char *other = streq(on, a_id) ? "mg-b" : "mg-a";
    const char *here = streq(on, a_id) ? "mg-a" : "mg-b";
    int st;

    /* Usage and refusals: one line, non-zero exit. */
    tu_run_with_stderr = true;
    _cleanup_free_ char *u = tu_fogctl(&ctl, alice, &st, "migrate", "mg-web",
                                       "--timeout", "5", NULL);
    assert_int_equal(st, 2);
    free(u);
    u = tu_fogctl(&ctl, alice, &st, "migrate", "mg-web", "--wait",
                  "--timeout", "zero", NULL);
    assert_int_equal(st, 2);
    free(u);
    u = tu_fogctl(&ctl, bob, &st, "migrate", "mg-web", NULL);
    assert_int_equal(st, 1);
    assert_non_null(strstr(u, "fogctl: "));
    free(u);
    u = tu_fogctl(&ctl, alice, &st, "migrate", "mg-web", "--node", here, NULL);
    assert_int_equal(st, 1);
    assert_non_null(strstr(u, "already"));
    assert_null(strchr(strchr(u, '\n') ? strchr(u, '\n') + 1 : "", '\n'));
    free(u);

    /* --wait follows the upload to the move. */
    struct player p = { .cred = cred_of(on), .vm_id = json_str(vm, "id") };
    assert_int_equal(pthread_create(&p.t, NULL, player_run, &p), 0);
    u = tu_fogctl(&ctl, alice, &st, "migrate", "mg-web", "--node", other,
                  "--wait", "--timeout", "30", NULL);
    pthread_join(p.t, NULL);
    assert_int_equal(p.status, 200);
    if (st != 0)
        fail_msg("fogctl migrate --wait exited %d: %s", st, u);
    _cleanup_free_ char *moved = xasprintf("Domain 'mg-web' moved from node "
                                           "%s to node %s", here, other);
    assert_non_null(strstr(u, moved));
    free(u);

    /* A failed upload: exit 1 with the reason. */
    json_auto_t *vm2 = api(alice, "GET", "/v1/vms/mg-web", NULL, 200);
    assert_string_equal(json_str(vm2, "node_name"), other);
    struct player pf = { .cred = cred_of(json_str(vm2, "node_id")),
                         .vm_id = json_str(vm2, "id"),
                         .fail = "disk gone" };
    assert_int_equal(pthread_create(&pf.t, NULL, player_run, &pf), 0);
    u = tu_fogctl(&ctl, alice, &st, "migrate", "mg-web", "--wait", NULL);
    pthread_join(pf.t, NULL);
    assert_int_equal(pf.status, 204);
    assert_int_equal(st, 1);
    assert_non_null(strstr(u, "fogctl: migration of VM 'mg-web' failed: "));
    assert_non_null(strstr(u, "disk gone"));
    free(u);

    /* Nobody uploads: the wait ends after its timeout, exit 1. */
    u = tu_fogctl(&ctl, alice, &st, "migrate", "mg-web", "--wait",
                  "--timeout", "1", NULL);
    assert_int_equal(st, 1);
    assert_non_null(strstr(u, "not done after 1s"));
    tu_run_with_stderr = false;
    free(u);
    /* Without --wait it says it began. */
    json_auto_t *m = api(alice, "GET", "/v1/vms/mg-web/migration", NULL, 200);
    assert_string_equal(json_str(m, "state"), "backing-up");
    _cleanup_free_ char *bp = xasprintf("/v1/vms/mg-web/backups/%s",
                                        json_str(m, "backup"));
    json_decref(api(alice, "DELETE", bp, NULL, 204));
    json_auto_t *c = wait_migration("mg-web", 10000);
    assert_string_equal(json_str(c, "state"), "failed");
    u = tu_fogctl(&ctl, alice, &st, "migrate", "mg-web", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(u, "Domain 'mg-web' migrating from node "));
}

/* Migrate VM `name` (body: NULL or {"node":...}) and play its node's
 * upload: the migration once it is no longer backing up. */
static json_t *migrate_played(const char *name, const char *body)
{
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/migrate", name);
    _cleanup_free_ char *g = xasprintf("/v1/vms/%s", name);
    json_auto_t *vm = api(alice, "GET", g, NULL, 200);
    json_auto_t *m = api(alice, "POST", p, body, 202);
    char sha[65];
    size_t len;
    assert_int_equal(play_upload(cred_of(json_str(vm, "node_id")),
                                 json_str(m, "backup"), NULL, sha, &len),
                     200);
    return wait_migration(name, 10000);
}

/* The node each of VM vm_id's published ports is on and its host port,
 * "NODE:PORT ..." by VM port (caller frees). */
static char *ports_of(const char *vm_id)
{
    char *out = NULL;
    for (int i = 0;; i++) {
        _cleanup_free_ char *one = tu_sql_text(
            &ctl, "SELECT node_id || ':' || host_port FROM ports WHERE vm_id "
            "= '%s' ORDER BY vm_port LIMIT 1 OFFSET %d", vm_id, i);
        if (!one)
            return out;
        char *more = out ? xasprintf("%s %s", out, one) : xstrdup(one);
        free(out);
        out = more;
    }
}

/* Host ports go with the VM: a target that cannot give one refuses the
 * move (failed, ports where they were); once it can, they are the same
 * numbers on the new node. */
static void migrate_keeps_host_ports_or_refuses(void **state)
{
    json_auto_t *vm = vm_create("mg-pt", true);
    const char *id = json_str(vm, "id");
    json_auto_t *v = api(alice, "GET", "/v1/vms/mg-pt", NULL, 200);
    _cleanup_free_ char *x = xstrdup(json_str(v, "node_id"));
    const char *y = streq(x, a_id) ? b_id : a_id;
    const char *y_name = streq(x, a_id) ? "mg-b" : "mg-a";
    json_decref(api(alice, "POST", "/v1/vms/mg-pt/ports",
                    "{\"proto\":\"tcp\",\"vm_port\":80,\"host_port\":"
                    "20080}", 201));
    json_decref(api(alice, "POST", "/v1/vms/mg-pt/ports",
                    "{\"proto\":\"tcp\",\"vm_port\":81,\"host_port\":"
                    "20081}", 201));
    /* A VM on the other node holds 20081 there. */
    _cleanup_free_ char *drain = xasprintf("/v1/nodes/%s/drain", x);
    _cleanup_free_ char *undrain = xasprintf("/v1/nodes/%s/undrain", x);
    json_decref(api(ctl.admin_key, "POST", drain, NULL, 200));
    json_auto_t *blk = vm_create("mg-blk", true);
    json_decref(api(ctl.admin_key, "POST", undrain, NULL, 200));
    json_auto_t *bv = api(alice, "GET", "/v1/vms/mg-blk", NULL, 200);
    assert_string_equal(json_str(bv, "node_id"), y);
    json_auto_t *port = api(alice, "POST", "/v1/vms/mg-blk/ports",
                            "{\"proto\":\"tcp\",\"vm_port\":22,"
                            "\"host_port\":20081}", 201);
    _cleanup_free_ char *before = ports_of(id);
    _cleanup_free_ char *want_x = xasprintf("%s:20080 %s:20081", x, x);
    assert_string_equal(before, want_x);

    _cleanup_free_ char *to_y = xasprintf("{\"node\":\"%s\"}", y_name);
    json_auto_t *f = migrate_played("mg-pt", to_y);
    assert_string_equal(json_str(f, "state"), "failed");
    assert_non_null(strstr(json_str(f, "error"), "host port 20081/tcp"));
    _cleanup_free_ char *still = ports_of(id);
    assert_string_equal(still, want_x);
    json_auto_t *sv = api(alice, "GET", "/v1/vms/mg-pt", NULL, 200);
    assert_string_equal(json_str(sv, "node_id"), x);

    /* The port freed on the other node, the move keeps both numbers. */
    _cleanup_free_ char *pp = xasprintf("/v1/vms/mg-blk/ports/%s",
                                        json_str(port, "id"));
    json_decref(api(alice, "DELETE", pp, NULL, 204));
    json_auto_t *m = migrate_played("mg-pt", to_y);
    assert_string_equal(json_str(m, "state"), "moved");
    _cleanup_free_ char *after = ports_of(id);
    _cleanup_free_ char *want_y = xasprintf("%s:20080 %s:20081", y, y);
    assert_string_equal(after, want_y);
    (void)blk;
}

/* The new node's offer: above the VM's cap nothing moves; within it the
 * VM's open deal is at the new node's price. */
static void migrate_deals_at_the_new_price_within_the_cap(void **state)
{
    json_auto_t *v = api(alice, "GET", "/v1/vms/mg-pt", NULL, 200);
    const char *on = json_str(v, "node_id");
    const char *other = streq(on, a_id) ? "mg-b" : "mg-a";
    const char *other_id = streq(on, a_id) ? b_id : a_id;
    _cleanup_free_ char *offer = xasprintf("/v1/nodes/%s/offer", other);
    _cleanup_free_ char *body = xasprintf("{\"node\":\"%s\"}", other);
    json_decref(api(ctl.admin_key, "PUT", offer,
                    "{\"vcpu_hour\":\"500\"}", 200));
    json_auto_t *f = migrate_played("mg-pt", body);
    assert_string_equal(json_str(f, "state"), "failed");
    /* The price filter of placement: the cap is the VM's. */
    assert_non_null(strstr(json_str(f, "error"), "price removed 1"));
    json_auto_t *sv = api(alice, "GET", "/v1/vms/mg-pt", NULL, 200);
    json_t *deal = json_object_get(sv, "deal");
    assert_string_equal(json_str(deal, "node_id"), on);

    json_decref(api(ctl.admin_key, "PUT", offer,
                    "{\"vcpu_hour\":\"0.03\"}", 200));
    json_auto_t *m = migrate_played("mg-pt", body);
    assert_string_equal(json_str(m, "state"), "moved");
    json_auto_t *mv = api(alice, "GET", "/v1/vms/mg-pt", NULL, 200);
    json_t *nd = json_object_get(mv, "deal");
    assert_string_equal(json_str(nd, "node_id"), other_id);
    assert_string_equal(json_str(json_object_get(nd, "prices"), "vcpu_hour"),
                        "0.03");
    _cleanup_free_ char *deals = open_deals(json_str(mv, "id"));
    _cleanup_free_ char *want = xasprintf("1 %s", other_id);
    assert_string_equal(deals, want);
}

/* With each store commit taking a second, the new node's parked poll
 * answers with the VM once the move has committed: woken before, it would
 * read the old revision and park again until its wait ran out. */
static void a_move_wakes_the_new_node_after_its_commit(void **state)
{
    json_auto_t *vm = vm_create("mg-wake", true);
    const char *id = json_str(vm, "id");
    json_auto_t *v = api(alice, "GET", "/v1/vms/mg-wake", NULL, 200);
    const char *from = cred_of(json_str(v, "node_id"));
    const char *to = from == a_cred ? b_cred : a_cred;
    json_auto_t *m = api(alice, "POST", "/v1/vms/mg-wake/migrate", NULL, 202);
    _cleanup_free_ char *bk = xstrdup(json_str(m, "backup"));
    json_auto_t *d = api(to, "GET", "/v1/agent/desired", NULL, 200);
    struct tu_poll p;
    tu_poll_start(&p, &ctl, to, json_int(d, "revision", -1), 20);
    usleep(500 * 1000);
    assert_int_equal(file_write_atomic(fault_file, "commit-slow", 11, 0600),
                     0);
    int64_t start_ms = mono_ms();
    char sha[65];
    size_t len = 0;
    assert_int_equal(play_upload(from, bk, NULL, sha, &len), 200);
    _cleanup_free_ char *body = NULL;
    int64_t took = tu_poll_join(&p, start_ms, &body);
    unlink(fault_file);
    assert_non_null(body);
    if (!strstr(body, id) || took > 12000)
        fail_msg("the new node's poll answered after %lld ms, %s the VM",
                 (long long)took, strstr(body, id) ? "with" : "without");
    json_auto_t *done = wait_migration("mg-wake", 10000);
    assert_string_equal(json_str(done, "state"), "moved");
}

/* With heartbeats of 1 s: a node that goes silent before its backup is
 * in ends the migration (failed, saying so), so the VM is not left
 * unstartable. */
static void a_silent_node_ends_the_migration(void **state)
{
    static const char *const fast[] = { "--heartbeat", "1", NULL };
    teardown(state);
    start(fast);
    json_auto_t *vm = vm_create("mg-far", true);
    json_auto_t *v = api(alice, "GET", "/v1/vms/mg-far", NULL, 200);
    const char *host = cred_of(json_str(v, "node_id"));
    json_decref(api(host, "POST", "/v1/agent/status", "{\"vms\":[]}", 200));
    json_auto_t *m = api(alice, "POST", "/v1/vms/mg-far/migrate", NULL, 202);
    assert_string_equal(json_str(m, "state"), "backing-up");
    /* Nothing more from the node: after three heartbeats it fails. */
    json_auto_t *f = wait_migration("mg-far", 15000);
    assert_string_equal(json_str(f, "state"), "failed");
    assert_non_null(strstr(json_str(f, "error"), "became unreachable"));
    json_auto_t *still = api(alice, "GET", "/v1/vms/mg-far", NULL, 200);
    assert_string_equal(json_str(still, "node_id"), json_str(v, "node_id"));
    (void)vm;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(migrate_moves_a_stopped_vm_or_fails_leaving_it),
        cmocka_unit_test(fogctl_migrate_waits_for_the_move_or_says_why),
        cmocka_unit_test(migrate_keeps_host_ports_or_refuses),
        cmocka_unit_test(migrate_deals_at_the_new_price_within_the_cap),
        cmocka_unit_test(a_move_wakes_the_new_node_after_its_commit),
        cmocka_unit_test(a_silent_node_ends_the_migration),
    };
    int r = cmocka_run_group_tests(tests, setup, teardown);
    tu_rmrf(fault_dir);
    free(fault_dir);
    free(fault_file);
    return r;
}
