/* Restore from a backup with the controller and two node agents (libvirt's
 * test driver, real qcow2 overlays): the overlay the new node gets holds
 * exactly the backed-up disk (qemu-img compare), the placement generation
 * moves and the old node's domain and files go when it comes back, only
 * the node the VM is placed on may fetch the blob, and a running VM,
 * another tenant, a backup not ready or not the VM's own are refused. All
 * of it twice: on the directory store, then with the hub's backups in an
 * S3 bucket (s3rver on loopback, when tools/npm-deps.sh installed it). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentproto.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/bstore.h"
#include "controller/bstore_s3.h"
#include "nodeagent/backup.h"
#include "tests/testutil.h"

#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static struct tu_ctl ctl;
static struct tu_agent node_a, node_b;
static char *tenant_key, *other_key, *tmp;

static struct tu_s3 s3;   /* pid > 0: the hub keeps backups there */
static char *s3_url;

static int setup(void **state)
{
    static const char *ctl_args[] = { "--heartbeat", "1", "--longpoll", "5",
                                      "--no-inspect", "--evacuate-after", "4",
                                      NULL, NULL, NULL, NULL, NULL };
    if (s3.pid > 0) {
        ctl_args[7] = "--backup-store";
        ctl_args[8] = s3_url;
        ctl_args[9] = "--s3-access-key-file";
        ctl_args[10] = s3.key_file;
    }
    tu_ctl_start(&ctl, ctl_args);
    tenant_key = tu_account(&ctl, "alice", "tenant");
    other_key = tu_account(&ctl, "mallory", "tenant");
    tmp = tu_tempdir("restore");
    return 0;
}

static int teardown(void **state)
{
    tu_agent_destroy(&node_a);
    tu_agent_destroy(&node_b);
    tu_ctl_destroy(&ctl);
    if (tmp)
        tu_rmrf(tmp);
    free(tmp);
    free(tenant_key);
    free(other_key);
    return 0;
}

/* One statement on the controller's store (WAL: it serves meanwhile). */
/* Wait until GET /v1/vms/NAME as the tenant has field == want. */
static bool wait_vm(const char *name, const char *field, const char *want,
                    int timeout_ms)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s", name);
    int64_t end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
        long st;
        json_auto_t *j = tu_api(&ctl, tenant_key, "GET", path, NULL, &st);
        if (st == 200 && streq(json_str(j, field), want))
            return true;
        usleep(100000);
    }
    json_auto_t *j = tu_api(&ctl, tenant_key, "GET", path, NULL, NULL);
    _cleanup_free_ char *t = j ? json_dumps(j, 0) : NULL;
    fprintf(stderr, "%s: %s never became %s: %s\n", path, field, want,
            t ? t : "(no answer)");
    return false;
}

static bool wait_gone(const char *path, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
        if (access(path, F_OK) != 0)
            return true;
        usleep(100000);
    }
    return false;
}

static void run_ok(char *const argv[])
{
    int st;
    _cleanup_free_ char *out = tu_run(argv, &st);
    if (st != 0)
        fail_msg("%s exited %d: %s", argv[0], st, out ? out : "");
}

/* A ready backup of VM vm_id's overlay at `overlay`, as the hub holds it:
 * sealed with a fresh key, committed in the hub's store, its
 * row ready and the key on the VM. Returns the backup's id (caller
 * frees). */
static char *make_backup(const char *vm_id, const char *overlay)
{
    uint8_t key[BKCRYPT_KEY_LEN];
    char key_hex[2 * BKCRYPT_KEY_LEN + 1], sha[65];
    _cleanup_free_ char *kh = random_hex(BKCRYPT_KEY_LEN);
    assert_int_equal(hex_decode(kh, key, sizeof(key)), 0);
    snprintf(key_hex, sizeof(key_hex), "%s", kh);
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    _cleanup_free_ char *sealed = xasprintf("%s/%s.sealed", tmp, id);
    _cleanup_free_ char *err = NULL;
    uint64_t size = 0;
    if (backup_seal_disk("qemu-img", overlay, false, key, sealed, &size, sha,
                         &err) < 0)
        fail_msg("seal: %s", err);

    _cleanup_free_ char *dir = xasprintf("%s/backups", ctl.dir);
    _cleanup_free_ char *spool = xasprintf("%s/writer", tmp);
    struct bstore_s3_opts o = { .url = s3_url, .key_file = s3.key_file,
                                .spool_dir = spool };
    struct bstore *bs = NULL;
    if (s3.pid > 0)
        assert_int_equal(bstore_s3_new(&o, &bs), 0);
    else
        assert_int_equal(bstore_dir_new(dir, 0, &bs), 0);
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    assert_int_equal(file_read(sealed, 64 << 20, &data, &len), 0);
    assert_int_equal(len, size);
    assert_int_equal(bs->ops->begin(bs, id), 0);
    assert_int_equal(bs->ops->append(bs, id, 0, data, len, NULL), 0);
    assert_int_equal(bs->ops->commit(bs, id, sha, size), 0);
    bstore_free(bs);

    tu_sql(&ctl, "INSERT INTO vm_backups (id, vm_id, kind, state, size, "
           "sha256, created_at, done_at) VALUES ('%s', '%s', 'manual', "
           "'ready', %llu, '%s', 1, 1)", id, vm_id, (unsigned long long)size,
           sha);
    tu_sql(&ctl, "UPDATE vms SET backup_key = '%s' WHERE id = '%s'", key_hex,
           vm_id);
    return xstrdup(id);
}

/* POST /v1/vms/NAME/restore as key with body: the status, and the
 * problem's type is urn:fog:problem:slug when slug is not NULL. */
static void restore_refused(const char *key, const char *name,
                            const char *body, long want, const char *slug)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s/restore", name);
    long code;
    json_auto_t *j = tu_api(&ctl, key, "POST", path, body, &code);
    _cleanup_free_ char *type = slug ? xasprintf("urn:fog:problem:%s", slug)
                                     : NULL;
    if (code != want || (type && !streq(json_str(j, "type"), type)))
        fail_msg("restore %s %s answered %ld (%s: %s), not %ld", name, body,
                 code, json_str(j, "type") ? json_str(j, "type") : "-",
                 json_str(j, "detail") ? json_str(j, "detail") : "-", want);
}

static void restore_moves_the_disk_and_fences_the_old_node(void **state)
{
    tu_agent_start(&node_a, &ctl, "rs-node-a", 8, 16384);
    json_auto_t *vm = tu_vm_post(&ctl, tenant_key, "web", 1, NULL, 201);
    const char *id = json_str(vm, "id");
    assert_true(wait_vm("web", "state", "running", 60000));
    /* Only now a second node: the VM is on A. */
    tu_agent_start(&node_b, &ctl, "rs-node-b", 8, 16384);
    json_auto_t *before = tu_api(&ctl, tenant_key, "GET", "/v1/vms/web", NULL,
                                 NULL);
    assert_string_equal(json_str(before, "node_name"), "rs-node-a");
    int64_t gen = json_int(before, "place_gen", 0);

    /* The disk as written by the guest: a pattern past the base. */
    _cleanup_free_ char *overlay_a = xasprintf("%s/disks/%s.qcow2",
                                               node_a.data_dir, id);
    char *wr[] = { "/usr/bin/qemu-io", "-f", "qcow2", "-c",
                   "write -P 0x5a 1M 2M", overlay_a, NULL };
    run_ok(wr);
    _cleanup_free_ char *bk = make_backup(id, overlay_a);
    /* What the backup holds, standalone, to compare with later. */
    _cleanup_free_ char *want = xasprintf("%s/want.qcow2", tmp);
    char *cv[] = { "/usr/bin/qemu-img", "convert", "-U", "-O", "qcow2", overlay_a,
                   want, NULL };
    run_ok(cv);

    _cleanup_free_ char *body = xasprintf("{\"backup\":\"%s\",\"node\":"
                                          "\"rs-node-b\"}", bk);
    /* Refused: running on a reachable node, another tenant's VM, a backup
     * that is not ready, one that is not this VM's, a node that is not
     * there, a malformed id. */
    restore_refused(tenant_key, "web", body, 409, "conflict");
    restore_refused(other_key, "web", body, 404, "not-found");
    json_auto_t *other = tu_vm_post(&ctl, tenant_key, "other", 1,
                                    "\"power_state\":\"stopped\"", 201);
    char pending[UUID_STR_LEN + 1], foreign[UUID_STR_LEN + 1];
    uuid_generate_str(pending);
    uuid_generate_str(foreign);
    /* Not ready: a failed one (an uploading one would be taken and sent
     * by the node, which the agent now does). */
    tu_sql(&ctl, "INSERT INTO vm_backups (id, vm_id, state, error, "
           "created_at) VALUES ('%s', '%s', 'failed', 'disk is missing', 1)",
           pending, id);
    tu_sql(&ctl, "INSERT INTO vm_backups (id, vm_id, state, size, sha256, "
           "created_at) VALUES ('%s', '%s', 'ready', 1, '%s', 1)", foreign,
           json_str(other, "id"), "00000000000000000000000000000000"
                                  "00000000000000000000000000000000");

    int st;
    _cleanup_free_ char *out = tu_fogctl(&ctl, tenant_key, &st, "destroy",
                                         "web", "--wait", NULL);
    assert_int_equal(st, 0);
    assert_true(wait_vm("web", "state", "stopped", 30000));
    _cleanup_free_ char *b_pending = xasprintf("{\"backup\":\"%s\"}", pending);
    _cleanup_free_ char *b_foreign = xasprintf("{\"backup\":\"%s\"}", foreign);
    _cleanup_free_ char *b_nonode = xasprintf("{\"backup\":\"%s\",\"node\":"
                                              "\"nowhere\"}", bk);
    restore_refused(tenant_key, "web", b_pending, 409, "conflict");
    restore_refused(tenant_key, "web", b_foreign, 404, "not-found");
    restore_refused(tenant_key, "web", b_nonode, 404, "not-found");
    restore_refused(tenant_key, "web", "{\"backup\":\"../../etc\"}", 400,
                    "validation");
    restore_refused(tenant_key, "web", "{}", 400, "validation");
    json_auto_t *still = tu_api(&ctl, tenant_key, "GET", "/v1/vms/web", NULL,
                                NULL);
    assert_int_equal(json_int(still, "place_gen", -1), gen);
    assert_string_equal(json_str(still, "node_name"), "rs-node-a");

    /* Hold node A still (its domain stays defined), then restore on B
     * through fogctl. */
    kill(node_a.pid, SIGSTOP);
    free(out);
    out = tu_fogctl(&ctl, tenant_key, &st, "restore", "web", "--backup", bk,
                    "--node", "rs-node-b", NULL);
    if (st != 0)
        fail_msg("fogctl restore exited %d: %s", st, out);
    assert_non_null(strstr(out, "restoring from backup"));
    assert_non_null(strstr(out, "rs-node-b"));
    json_auto_t *after = tu_api(&ctl, tenant_key, "GET", "/v1/vms/web", NULL,
                                NULL);
    assert_string_equal(json_str(after, "id"), id);
    assert_string_equal(json_str(after, "node_name"), "rs-node-b");
    assert_int_equal(json_int(after, "place_gen", 0), gen + 1);
    assert_true(json_equal(json_object_get(after, "addresses"),
                           json_object_get(before, "addresses")));
    /* The old deal closed, one open at B. */
    _cleanup_free_ char *open_deals = tu_sql_text(
        &ctl, "SELECT COUNT(*) FROM deals WHERE vm_id = '%s' AND closed_at "
        "IS NULL", id);
    assert_string_equal(open_deals, "1");
    _cleanup_free_ char *deal_node = tu_sql_text(
        &ctl, "SELECT n.name FROM deals d JOIN nodes n ON n.id = d.node_id "
        "WHERE d.vm_id = '%s' AND d.closed_at IS NULL", id);
    assert_string_equal(deal_node, "rs-node-b");
    _cleanup_free_ char *ev = tu_sql_text(
        &ctl, "SELECT detail FROM events WHERE action = 'vm.restore' AND "
        "target = '%s'", id);
    assert_non_null(ev);
    assert_non_null(strstr(ev, bk));

    /* B defines it from the backup: the same disk, and the placement no
     * longer restores once B reported it. */
    assert_true(wait_vm("web", "state", "stopped", 60000));
    _cleanup_free_ char *overlay_b = xasprintf("%s/disks/%s.qcow2",
                                               node_b.data_dir, id);
    char *cmp[] = { "/usr/bin/qemu-img", "compare", "-U", want, overlay_b, NULL };
    run_ok(cmp);
    char *info[] = { "/usr/bin/qemu-img", "info", "-U", overlay_b, NULL };
    _cleanup_free_ char *inf = tu_run(info, &st);
    assert_null(strstr(inf, "backing file"));
    int64_t end = mono_ms() + 20000;
    char *rb = NULL;
    while (mono_ms() < end) {
        free(rb);
        rb = tu_sql_text(&ctl, "SELECT COALESCE(restore_backup, 'none') "
                         "FROM vms WHERE id = '%s'", id);
        if (streq(rb, "none"))
            break;
        usleep(100000);
    }
    assert_string_equal(rb, "none");
    free(rb);

    /* Node A comes back: its domain of the earlier placement is destroyed
     * and its files removed, never started; the VM stays on B. */
    kill(node_a.pid, SIGCONT);
    assert_true(wait_gone(overlay_a, 30000));
    free(out);
    out = tu_fogctl(&ctl, tenant_key, &st, "start", "web", NULL);
    assert_int_equal(st, 0);
    assert_true(wait_vm("web", "state", "running", 30000));
    json_auto_t *last = tu_api(&ctl, tenant_key, "GET", "/v1/vms/web", NULL,
                               NULL);
    assert_string_equal(json_str(last, "node_name"), "rs-node-b");
    assert_int_equal(access(overlay_a, F_OK), -1);
}

/* The node of a VM with restart policy on-host-failure goes silent: after
 * evacuate-after the VM runs on the other node from its latest backup;
 * the silent node, back, drops its copy. A VM with no backup is lost,
 * with the reason. */
static void evacuation_restores_or_loses_after_the_node_goes_silent(void **state)
{
    _cleanup_free_ char *id = tu_sql_text(&ctl, "SELECT id FROM vms WHERE "
                                          "name = 'web'");
    assert_non_null(id);
    int st;
    _cleanup_free_ char *out = tu_fogctl(&ctl, tenant_key, &st,
                                         "restart-policy", "web",
                                         "on-host-failure", NULL);
    if (st != 0)
        fail_msg("restart-policy exited %d: %s", st, out);
    free(out);
    out = tu_fogctl(&ctl, tenant_key, &st, "restart-policy", "web", "sometimes",
                    NULL);
    assert_int_equal(st, 2);
    assert_true(wait_vm("web", "node_name", "rs-node-b", 1000));
    assert_true(wait_vm("web", "restart_policy", "on-host-failure", 1000));
    _cleanup_free_ char *overlay_b = xasprintf("%s/disks/%s.qcow2",
                                               node_b.data_dir, id);
    _cleanup_free_ char *overlay_a = xasprintf("%s/disks/%s.qcow2",
                                               node_a.data_dir, id);

    kill(node_b.pid, SIGSTOP);
    assert_true(wait_vm("web", "node_name", "rs-node-a", 30000));
    assert_true(wait_vm("web", "state", "running", 30000));
    _cleanup_free_ char *want = xasprintf("%s/want.qcow2", tmp);
    char *cmp[] = { "/usr/bin/qemu-img", "compare", "-U", want, overlay_a,
                    NULL };
    run_ok(cmp);
    _cleanup_free_ char *ev = tu_sql_text(
        &ctl, "SELECT detail FROM events WHERE action = 'vm.evacuate' AND "
        "target = '%s'", id);
    assert_non_null(ev);
    assert_non_null(strstr(ev, "rs-node-b"));
    kill(node_b.pid, SIGCONT);
    assert_true(wait_gone(overlay_b, 30000));

    /* No backup: lost, with why. */
    json_auto_t *vm = tu_vm_post(&ctl, tenant_key, "lonely", 1,
                                 "\"restart_policy\":\"on-host-failure\"",
                                 201);
    assert_true(wait_vm("lonely", "state", "running", 30000));
    json_auto_t *l = tu_api(&ctl, tenant_key, "GET", "/v1/vms/lonely", NULL,
                            NULL);
    pid_t host = streq(json_str(l, "node_name"), "rs-node-a") ? node_a.pid
                                                               : node_b.pid;
    kill(host, SIGSTOP);
    bool lost = wait_vm("lonely", "state", "lost", 30000);
    json_auto_t *l2 = tu_api(&ctl, tenant_key, "GET", "/v1/vms/lonely", NULL,
                             NULL);
    _cleanup_free_ char *why = tu_sql_text(
        &ctl, "SELECT detail FROM events WHERE action = 'vm.lost' AND "
        "target = '%s'", json_str(vm, "id"));
    /* Its node back, the VM it still holds is reported again. */
    kill(host, SIGCONT);
    assert_true(lost);
    assert_non_null(json_str(l2, "state_reason"));
    assert_non_null(strstr(json_str(l2, "state_reason"), "no ready backup"));
    assert_string_equal(json_str(l2, "node_name"), json_str(l, "node_name"));
    assert_non_null(why);
    assert_non_null(strstr(why, "no ready backup"));
}

/* Only the node the VM is placed on reads a backup's blob; the blob it
 * reads is the committed one, byte for byte. */
static void blob_is_served_only_to_the_vms_node(void **state)
{
    _cleanup_free_ char *id = tu_sql_text(&ctl, "SELECT id FROM vms WHERE "
                                          "name = 'web'");
    assert_non_null(id);
    _cleanup_free_ char *bk = tu_sql_text(
        &ctl, "SELECT id FROM vm_backups WHERE vm_id = '%s' AND state = "
        "'ready' ORDER BY created_at LIMIT 1", id);
    assert_non_null(bk);
    _cleanup_free_ char *path = xasprintf("%s/%s/blob", AGENT_BACKUP_PATH, bk);
    /* A node of the hub that does not host it. */
    _cleanup_free_ char *spy = tu_node_register(&ctl, "rs-spy", NULL);
    long code;
    json_auto_t *j = tu_api(&ctl, spy, "GET", path, NULL, &code);
    assert_int_equal(code, 404);
    /* Tenants and admins never reach the agent route. */
    json_auto_t *t = tu_api(&ctl, tenant_key, "GET", path, NULL, &code);
    assert_true(code == 401 || code == 403);
    _cleanup_free_ char *bad = xasprintf("%s/..%%2f..%%2fetc/blob",
                                         AGENT_BACKUP_PATH);
    json_auto_t *b = tu_api(&ctl, spy, "GET", bad, NULL, &code);
    assert_int_equal(code, 404);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(restore_moves_the_disk_and_fences_the_old_node),
        cmocka_unit_test(blob_is_served_only_to_the_vms_node),
        cmocka_unit_test(evacuation_restores_or_loses_after_the_node_goes_silent),
    };
    int r = cmocka_run_group_tests(tests, setup, teardown);
    if (tu_s3_start(&s3) < 0) {
        printf("node or s3rver missing: the S3 store is not tested\n");
        return r;
    }
    if (tu_s3_raw(&s3, "PUT", "fog-restore", NULL) != 200) {
        fprintf(stderr, "s3rver: cannot make the bucket\n");
        tu_s3_destroy(&s3);
        return 1;
    }
    s3_url = xasprintf("http://127.0.0.1:%d/fog-restore", s3.port);
    r |= cmocka_run_group_tests(tests, setup, teardown);
    tu_s3_destroy(&s3);
    free(s3_url);
    return r;
}
