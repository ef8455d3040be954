/* fogctl verbs for a VM's backups in the hub's backup store:
 * backup-create, backup-list, backup-delete. The node seals and uploads
 * the disk after the API answers; --wait follows the backup until the
 * hub has verified it. */
#include "cli/cli.h"

#include <time.h>

static char *backup_path(const char *vm, const char *id)
{
    _cleanup_free_ char *v = cli_escape(vm);
    _cleanup_free_ char *b = id ? cli_escape(id) : NULL;
    return xasprintf("/v1/vms/%s/backups%s%s", v, b ? "/" : "", b ? b : "");
}

/* Poll backup `id` of `vm` until it is ready (CLI_OK) or failed, or the
 * --timeout passes (one-line error). *ret_backup: its last state. */
static int backup_wait(struct cli *c, const struct cli_verb *v,
                       struct cli_args *a, const char *vm, const char *id,
                       json_t **ret_backup)
{
    int64_t timeout_s = 3600;
    const char *t = cli_flag(a, "timeout");
    if (t && parse_int64(t, 1, 7 * 86400, &timeout_s) < 0)
        return cli_usage(v, "invalid --timeout '%s'", t);
    _cleanup_free_ char *p = backup_path(vm, id);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        json_auto_t *b = NULL;
        int r = cli_call(c, "GET", p, NULL, &b);
        if (r)
            return r;
        const char *st = json_string_value(json_object_get(b, "state"));
        if (streq(st, "failed"))
            return cli_fail("backup %s of VM '%s' failed: %s", id, vm,
                            json_string_value(json_object_get(b, "error"))
                                ?: "no reason given");
        if (streq(st, "ready")) {
            *ret_backup = TAKE_PTR(b);
            return CLI_OK;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= timeout_s)
            return cli_fail("backup %s of VM '%s' still %s after %llds", id,
                            vm, st ? st : "unknown", (long long)timeout_s);
        nanosleep(&(struct timespec){ 0, 500 * 1000 * 1000 }, NULL);
    }
}

static int backup_create(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("backup-create");
    json_auto_t *b = NULL;
    _cleanup_free_ char *p = backup_path(a->pos[0], NULL);
    int r = cli_call(c, "POST", p, NULL, &b);
    if (r)
        return r;
    _cleanup_free_ char *id = xstrdup(
        json_string_value(json_object_get(b, "id")) ?: "");
    if (cli_flag_bool(a, "wait")) {
        json_decref(b);
        b = NULL;
        if ((r = backup_wait(c, v, a, a->pos[0], id, &b)))
            return r;
    }
    if (c->json)
        cli_print_json(b);
    else if (cli_flag_bool(a, "wait"))
        printf("Backup %s of VM %s done (%lld bytes)\n", id, a->pos[0],
               (long long)json_integer_value(json_object_get(b, "size")));
    else
        printf("Backup %s of VM %s requested\n", id, a->pos[0]);
    return CLI_OK;
}

static int backup_list(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = backup_path(a->pos[0], NULL);
    return cli_list_print(c, p, "id,kind,mode,parent,state,size,created_at,"
                          "done_at", NULL);
}

static int backup_delete(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = backup_path(a->pos[0], a->pos[1]);
    int r = cli_call(c, "DELETE", p, NULL, NULL);
    if (r)
        return r;
    printf("Backup %s of VM %s deleted\n", a->pos[1], a->pos[0]);
    return CLI_OK;
}

int cli_backup_schedule_args(const struct cli_verb *v, const char *sched,
                             const char *keep, json_t *body,
                             const char *sched_key, const char *keep_key)
{
    static const char *const names[] = { "off", "hourly", "daily", "weekly" };
    bool known = false;
    for (size_t i = 0; sched && i < ARRAY_SIZE(names); i++)
        known = known || streq(sched, names[i]);
    if (sched && !known)
        return cli_usage(v, "the schedule is hourly, daily, weekly or off, "
                         "not '%s'", sched);
    int64_t n = 0;
    if (keep && parse_int64(keep, 1, 1000, &n) < 0)
        return cli_usage(v, "--keep takes a number of backups from 1 to "
                         "1000, not '%s'", keep);
    if (sched)
        json_object_set_new(body, sched_key, json_string(sched));
    if (keep)
        json_object_set_new(body, keep_key, json_integer(n));
    return 0;
}

/* fogctl backup-schedule NAME hourly|daily|weekly|off [--keep N] */
static int backup_schedule(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("backup-schedule");
    json_auto_t *body = json_object(), *vm = NULL;
    int r = cli_backup_schedule_args(v, a->pos[1], cli_flag(a, "keep"), body,
                                     "schedule", "keep");
    if (r)
        return r;
    _cleanup_free_ char *e = cli_escape(a->pos[0]);
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s/backup-schedule", e);
    if ((r = cli_call(c, "POST", p, body, &vm)))
        return r;
    if (c->json) {
        cli_print_json(vm);
        return CLI_OK;
    }
    const char *next = json_string_value(json_object_get(vm, "backup_next_at"));
    printf("Domain '%s' backup schedule %s, keeping %lld%s%s\n", a->pos[0],
           a->pos[1],
           (long long)json_integer_value(json_object_get(vm, "backup_keep")),
           next ? ", next at " : "", next ? next : "");
    return CLI_OK;
}

const struct cli_verb cli_backup_verbs[] = {
    { "backup-create", backup_create, 1, 1, "wait,timeout=",
      "NAME [--wait [--timeout S]]",
      "back up a VM's disk, encrypted with the VM's own key, into the hub's "
      "backup store (a running VM's too)", NULL },
    { "backup-list", backup_list, 1, 1, "", "NAME", "list a VM's backups",
      NULL },
    { "backup-delete", backup_delete, 2, 2, "", "NAME ID",
      "delete a backup and its stored bytes", NULL },
    { "backup-schedule", backup_schedule, 2, 2, "keep=",
      "NAME hourly|daily|weekly|off [--keep N]",
      "back a VM up on a schedule (at the VM's own minute of each hour, or "
      "in the first hour of each UTC day or week), keeping its newest N "
      "scheduled backups (default 7); the oldest past N are deleted, never "
      "one being restored; off stops it and keeps what it took", NULL },
    { NULL, NULL, 0, 0, NULL, NULL, NULL, NULL },
};
