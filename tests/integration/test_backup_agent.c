/* Backups taken by the real node agent (libvirt's test driver): `fogctl
 * backup-create --wait` ends with a blob on the hub that opens with the
 * VM's key into a disk equal to the VM's overlay; an upload cut by an
 * agent killed mid-way resumes where the hub's copy ends after a
 * restart; a VM whose disk is gone gets a failed backup with the reason,
 * reported once; a backup deleted while it uploads is abandoned; the node
 * keeps no sealed file once a backup is done. A backup asked for as an
 * increment that the node cannot take so (no backup API, no checkpoint)
 * is taken whole, and the hub records it as full with the node's
 * reason. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "controller/store.h"
#include "nodeagent/backup.h"
#include "nodeagent/disk.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>

static struct tu_ctl ctl;
static struct tu_agent agent;
static char *tenant_key;
static char *tmp, *fault_file; /* FOG_TEST_FAULT's file (app.h) */

static char *fogctl(int *st, const char *first, ...) __attribute__((sentinel));
static char *fogctl(int *st, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    tu_run_with_stderr = true;
    char *out = tu_fogctlv(&ctl, tenant_key, st, first, ap);
    tu_run_with_stderr = false;
    va_end(ap);
    return out;
}

static void dump_logs(void)
{
    char *cat[] = { "/usr/bin/tail", "-n", "40", ctl.log, agent.log, NULL };
    int st;
    _cleanup_free_ char *t = tu_run(cat, &st);
    fprintf(stderr, "%s\n", t);
}

#define FOGCTL_OK(...)                                                         \
    do {                                                                       \
        int st_;                                                               \
        _cleanup_free_ char *o_ = fogctl(&st_, __VA_ARGS__, NULL);             \
        if (st_ != 0) {                                                        \
            dump_logs();                                                       \
            fail_msg("fogctl exited %d: %s", st_, o_);                        \
        }                                                                      \
    } while (0)

static int setup(void **state)
{
    static const char *ctl_args[] = { "--heartbeat", "1", "--longpoll", "5",
                                      "--no-inspect", NULL };
    tmp = tu_tempdir("bkagent");
    fault_file = xasprintf("%s/fault", tmp);
    setenv("FOG_TEST_FAULT", fault_file, 1);
    tu_ctl_start(&ctl, ctl_args);
    unsetenv("FOG_TEST_FAULT"); /* the controller's alone */
    tenant_key = tu_account(&ctl, "alice", "tenant");
    tu_agent_start(&agent, &ctl, "bk-node-1", 8, 16384);
    return 0;
}

static int teardown(void **state)
{
    tu_agent_destroy(&agent);
    tu_ctl_destroy(&ctl);
    free(tenant_key);
    tu_rmrf(tmp);
    free(tmp);
    free(fault_file);
    return 0;
}

static char *vm_id_of(const char *name)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s", name);
    return tu_api_field(&ctl, tenant_key, "GET", path, NULL, 200, "id");
}

/* The VM's backup key as the controller keeps it. */
static void vm_key(const char *vm_id, uint8_t key[BKCRYPT_KEY_LEN])
{
    _cleanup_free_ char *db = tu_store_address(&ctl);
    struct store *s = NULL;
    assert_int_equal(store_open(db, &s), 0);
    json_auto_t *row = NULL;
    assert_int_equal(store_query_one(s, &row, "SELECT backup_key FROM vms "
                                     "WHERE id = $1", "s", vm_id), 0);
    const char *hex = json_str(row, "backup_key");
    assert_non_null(hex);
    assert_int_equal(hex_decode(hex, key, BKCRYPT_KEY_LEN), 0);
    store_close(s);
}

/* `backup-create NAME` (no wait): the new backup's id. */
static char *backup_request(const char *name)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s/backups", name);
    return tu_api_field(&ctl, tenant_key, "POST", path, "{}", 202, "id");
}

/* GET the backup until its state is not pending/uploading (or timeout):
 * the answer (caller decrefs). */
static json_t *backup_wait(const char *name, const char *id, int timeout_ms)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s/backups/%s", name, id);
    int64_t end = mono_ms() + timeout_ms;
    for (;;) {
        long st;
        json_t *j = tu_api(&ctl, tenant_key, "GET", path, NULL, &st);
        const char *state = json_str(j, "state");
        if (st == 200 && !streq(state, "pending") &&
            !streq(state, "uploading"))
            return j;
        if (mono_ms() > end) {
            dump_logs();
            fail_msg("backup %s is still %s", id, state ? state : "absent");
        }
        json_decref(j);
        usleep(50000);
    }
}

/* The hub's blob of backup `id` opens with the VM's key into a disk
 * with the same content as the VM's overlay on the node. */
static void assert_blob_is_overlay(const char *vm_id, const char *id)
{
    uint8_t key[BKCRYPT_KEY_LEN];
    vm_key(vm_id, key);
    _cleanup_free_ char *blob = xasprintf("%s/backups/%s", ctl.dir, id);
    _cleanup_free_ char *out = xasprintf("%s/restored-%s.qcow2", agent.dir, id);
    _cleanup_free_ char *err = NULL;
    int e = backup_open_disk(blob, key, out, &err);
    if (e < 0)
        fail_msg("backup %s does not open: %s", id, err);
    _cleanup_free_ char *overlay = disk_overlay_path(agent.data_dir, vm_id);
    _cleanup_free_ char *qemu_img = tu_which("qemu-img");
    char *cmp[] = { qemu_img, "compare", "-q", "-U", out, overlay, NULL };
    int st;
    free(tu_run(cmp, &st));
    assert_int_equal(st, 0);
    /* Another key does not open it. */
    key[0] ^= 1;
    free(err);
    err = NULL;
    assert_int_equal(backup_open_disk(blob, key, out, &err), -EBADMSG);
    unlink(out);
}

/* Files under the agent's DATA/backups. */
static int sealed_files(void)
{
    _cleanup_free_ char *dir = xasprintf("%s/backups", agent.data_dir);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *de;
    /* Each sealed file has a small one beside it saying what it holds. */
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' && !strstr(de->d_name, ".mode"))
            n++;
    closedir(d);
    return n;
}

/* A running VM `name` whose overlay got `write` (a qemu-io command) on
 * top of its base, so the disk has content of its own: its id (caller
 * frees). */
static char *vm_with_data(const char *name, const char *write)
{
    _cleanup_free_ char *qemu_io = tu_which("qemu-io");
    if (!qemu_io)
        skip();
    FOGCTL_OK("create", name, "--cpus", "1", "--memory", "128M", "--disk",
              "1G", "--image", "tiny", "--allow-tcg", "--wait", "--timeout",
              "60");
    char *vm = vm_id_of(name);
    _cleanup_free_ char *overlay = disk_overlay_path(agent.data_dir, vm);
    char *io[] = { qemu_io, "-f", "qcow2", "-c", (char *)write, overlay,
                   NULL };
    int st;
    free(tu_run(io, &st));
    assert_int_equal(st, 0);
    return vm;
}

static void backup_of_a_vm_opens_into_its_disk(void **state)
{
    _cleanup_free_ char *vm = vm_with_data("web", "write -P 0x5a 1M 2M");
    int st;
    _cleanup_free_ char *out = fogctl(&st, "backup-create", "web", "--wait",
                                      "--timeout", "60", NULL);
    if (st != 0) {
        dump_logs();
        fail_msg("backup-create exited %d: %s", st, out);
    }
    assert_non_null(strstr(out, "done"));
    json_auto_t *list = tu_list(&ctl, tenant_key, "/v1/vms/web/backups");
    assert_int_equal(json_array_size(list), 1);
    json_t *b = json_array_get(list, 0);
    assert_string_equal(json_str(b, "state"), "ready");
    const char *id = json_str(b, "id");
    assert_true(json_int(b, "size", 0) > 2 << 20);
    assert_blob_is_overlay(vm, id);
    assert_int_equal(tu_count_in_file(agent.log, "committed"), 1);
    assert_int_equal(sealed_files(), 0);
    assert_string_equal(json_str(b, "mode"), "full");
    assert_non_null(strstr(json_str(b, "full_reason"), "no ready backup"));

    /* The next one is asked for as an increment on the first, but this
     * hypervisor (libvirt's test driver) has no backup API and the domain
     * no checkpoint of it: the node takes the whole disk and says why,
     * and the hub records a full backup that depends on nothing. */
    _cleanup_free_ char *id2 = backup_request("web");
    json_auto_t *b2 = backup_wait("web", id2, 60000);
    assert_string_equal(json_str(b2, "state"), "ready");
    assert_string_equal(json_str(b2, "mode"), "full");
    assert_null(json_str(b2, "parent"));
    assert_non_null(strstr(json_str(b2, "full_reason"),
                           "no checkpoint of backup"));
    assert_non_null(strstr(json_str(b2, "full_reason"), id));
    assert_blob_is_overlay(vm, id2);
    assert_int_equal(tu_count_in_file(agent.log, "sealed: full"), 2);
    /* fogctl backup-list shows the mode and parent columns. */
    _cleanup_free_ char *lst = fogctl(&st, "backup-list", "web", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(lst, "MODE"));
    assert_non_null(strstr(lst, "PARENT"));
    _cleanup_free_ char *row = xasprintf("%s  manual  full", id2);
    assert_non_null(strstr(lst, row));
    /* Nothing depends on the first: it may go. */
    _cleanup_free_ char *del = fogctl(&st, "backup-delete", "web", id, NULL);
    assert_int_equal(st, 0);
    assert_int_equal(sealed_files(), 0);
}

static void vm_without_disk_gets_a_failed_backup(void **state)
{
    FOGCTL_OK("create", "nodisk", "--cpus", "1", "--memory", "128M",
              "--disk", "1G", "--image", "tiny", "--allow-tcg", "--wait",
              "--timeout", "60");
    _cleanup_free_ char *vm = vm_id_of("nodisk");
    _cleanup_free_ char *overlay = disk_overlay_path(agent.data_dir, vm);
    assert_int_equal(unlink(overlay), 0);
    int st;
    _cleanup_free_ char *out = fogctl(&st, "backup-create", "nodisk",
                                      "--wait", "--timeout", "60", NULL);
    assert_int_not_equal(st, 0);
    json_auto_t *list = tu_list(&ctl, tenant_key, "/v1/vms/nodisk/backups");
    assert_int_equal(json_array_size(list), 1);
    json_t *b = json_array_get(list, 0);
    assert_string_equal(json_str(b, "state"), "failed");
    assert_non_null(strstr(json_str(b, "error"), "disk is missing"));
    /* Failed once: no second report after the first. */
    usleep(1500000);
    _cleanup_free_ char *failed = xasprintf("backup %s of VM %s failed",
                                            json_str(b, "id"), vm);
    assert_int_equal(tu_count_in_file(agent.log, failed), 1);
    assert_int_equal(sealed_files(), 0);
}

/* Size of the hub's partial upload of `id` (-1: none). */
static int64_t hub_part(const char *id)
{
    _cleanup_free_ char *p = xasprintf("%s/backups/%s.part", ctl.dir, id);
    struct stat sb;
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

static void upload_cut_by_a_restart_resumes(void **state)
{
    /* Small chunks make the upload long enough to cut. */
    static const char *const small[] = { "--backup-chunk-kib", "4", NULL };
    agent.extra = small;
    tu_agent_restart(&agent);
    _cleanup_free_ char *vm = vm_with_data("big", "write -P 0xa5 0 24M");
    _cleanup_free_ char *id = backup_request("big");
    /* Killed once the hub holds part of it. */
    int64_t end = mono_ms() + 60000, part = -1;
    while ((part = hub_part(id)) < (1 << 20) && mono_ms() < end)
        usleep(2000);
    assert_true(part >= (1 << 20));
    tu_kill(agent.pid, SIGKILL);
    agent.pid = -1;
    int64_t cut = hub_part(id);
    assert_true(cut > 0 && cut < (25 << 20));
    fprintf(stderr, "# the hub held %lld bytes when the agent was killed\n",
            (long long)cut);
    /* The sealed file stays for the next run. */
    assert_int_equal(sealed_files(), 1);

    agent.extra = NULL;
    tu_agent_restart(&agent);
    json_auto_t *b = backup_wait("big", id, 90000);
    assert_string_equal(json_str(b, "state"), "ready");
    assert_int_equal(tu_count_in_file(agent.log, "resuming at"), 1);
    /* Not sealed again: the bytes the hub had are part of the result. */
    _cleanup_free_ char *sealed = xasprintf("backup %s of VM %s sealed", id,
                                            vm);
    assert_int_equal(tu_count_in_file(agent.log, sealed), 1);
    assert_blob_is_overlay(vm, id);
    assert_int_equal(sealed_files(), 0);
}

static void deleted_backup_is_abandoned_on_the_node(void **state)
{
    static const char *const small[] = { "--backup-chunk-kib", "4", NULL };
    agent.extra = small;
    tu_agent_restart(&agent);
    _cleanup_free_ char *id = backup_request("big");
    int64_t end = mono_ms() + 60000;
    while (hub_part(id) < (1 << 20) && mono_ms() < end)
        usleep(2000);
    assert_true(hub_part(id) >= (1 << 20));
    /* A chunk in flight across the delete: it read the row before and
     * reaches the store after the delete dropped the upload. */
    assert_int_equal(file_write_atomic(fault_file, "backup-put-slow", 15,
                                       0644), 0);
    usleep(200000);
    _cleanup_free_ char *path = xasprintf("/v1/vms/big/backups/%s", id);
    long st;
    json_decref(tu_api(&ctl, tenant_key, "DELETE", path, NULL, &st));
    assert_int_equal(st, 204);
    usleep(600000); /* the paused chunk goes on */
    unlink(fault_file);
    _cleanup_free_ char *gone = xasprintf("backup %s of VM", id);
    end = mono_ms() + 30000;
    /* The file goes just before the line saying so is written. */
    while ((sealed_files() > 0 || tu_count_in_file(agent.log, gone) == 0 ||
            tu_count_in_file(agent.log, "abandoned") == 0) &&
           mono_ms() < end)
        usleep(50000);
    assert_int_equal(sealed_files(), 0);
    assert_true(tu_count_in_file(agent.log, "abandoned") >= 1);
    /* Nothing more reaches the hub for it. */
    usleep(1000000);
    assert_int_equal(hub_part(id), -1);
    _cleanup_free_ char *blob = xasprintf("%s/backups/%s", ctl.dir, id);
    assert_int_equal(access(blob, F_OK), -1);
    agent.extra = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backup_of_a_vm_opens_into_its_disk),
        cmocka_unit_test(vm_without_disk_gets_a_failed_backup),
        cmocka_unit_test(upload_cut_by_a_restart_resumes),
        cmocka_unit_test(deleted_backup_is_abandoned_on_the_node),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
