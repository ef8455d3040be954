/* fogctl verbs for a VM's snapshots, with virsh's names: snapshot-create,
 * snapshot-list, snapshot-info, snapshot-revert, snapshot-delete. The
 * node does the work after the API answers; --wait follows it there. */
#include "cli/cli.h"

#include <time.h>

#define SNAP_FIELDS "name,id,state,consistency,created_at,taken_at,reverting"

static char *snap_path(const char *vm, const char *snap, const char *suffix)
{
    _cleanup_free_ char *v = cli_escape(vm);
    _cleanup_free_ char *s = snap ? cli_escape(snap) : NULL;
    return xasprintf("/v1/vms/%s/snapshots%s%s%s", v, s ? "/" : "",
                     s ? s : "", suffix ? suffix : "");
}

/* A snapshot's wait is over when done() says so; "gone" is a 404. */
enum snap_wait { SNAP_READY, SNAP_REVERTED, SNAP_GONE };

static bool snap_done(enum snap_wait w, const json_t *s)
{
    switch (w) {
    case SNAP_READY:
        return streq(json_string_value(json_object_get(s, "state")), "ready");
    case SNAP_REVERTED:
        return !json_is_true(json_object_get(s, "reverting"));
    default:
        return false;
    }
}

/* The VM's reason, when its node reports one (a failed snapshot shows
 * there), or NULL; caller frees. */
static char *vm_reason(struct cli *c, const char *vm)
{
    _cleanup_free_ char *e = cli_escape(vm);
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s", e);
    struct api_reply rep;
    struct api_client *api = cli_api(c);
    if (!api)
        return NULL;
    api_request(api, "GET", p, NULL, NULL, &rep);
    const char *why = rep.status == 200 ?
        json_string_value(json_object_get(rep.json, "state_reason")) : NULL;
    char *r = why ? xstrdup(why) : NULL;
    api_reply_clear(&rep);
    return r;
}

static int snap_wait(struct cli *c, const struct cli_verb *v,
                     struct cli_args *a, const char *vm, const char *snap,
                     enum snap_wait w)
{
    int64_t timeout_s = 300;
    const char *t = cli_flag(a, "timeout");
    if (t && parse_int64(t, 1, 86400, &timeout_s) < 0)
        return cli_usage(v, "invalid --timeout '%s'", t);
    _cleanup_free_ char *p = snap_path(vm, snap, NULL);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct api_reply rep;
        struct api_client *api = cli_api(c);
        if (!api)
            return CLI_FAIL;
        api_request(api, "GET", p, NULL, NULL, &rep);
        bool done = (rep.status == 404 && w == SNAP_GONE) ||
                    (rep.status == 200 && snap_done(w, rep.json));
        api_reply_clear(&rep);
        if (done)
            return CLI_OK;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= timeout_s) {
            _cleanup_free_ char *why = vm_reason(c, vm);
            return cli_fail("snapshot '%s' of VM '%s' not done after %llds%s%s",
                            snap, vm, (long long)timeout_s, why ? ": " : "",
                            why ? why : "");
        }
        nanosleep(&(struct timespec){ 0, 300 * 1000 * 1000 }, NULL);
    }
}

static int snapshot_create(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("snapshot-create");
    json_auto_t *body = json_object(), *snap = NULL;
    if (a->npos > 1)
        json_object_set_new(body, "name", json_string(a->pos[1]));
    _cleanup_free_ char *p = snap_path(a->pos[0], NULL, NULL);
    int r = cli_call(c, "POST", p, body, &snap);
    if (r)
        return r;
    /* A copy: snap is replaced below. */
    _cleanup_free_ char *name = xstrdup(
        json_string_value(json_object_get(snap, "name")) ?: "");
    if (cli_flag_bool(a, "wait")) {
        if ((r = snap_wait(c, v, a, a->pos[0], name, SNAP_READY)))
            return r;
        json_decref(snap);
        snap = NULL;
        _cleanup_free_ char *sp = snap_path(a->pos[0], name, NULL);
        if ((r = cli_call(c, "GET", sp, NULL, &snap)))
            return r;
    }
    if (c->json)
        cli_print_json(snap);
    else if (cli_flag_bool(a, "wait"))
        printf("Domain snapshot %s created (%s)\n", name,
               json_string_value(json_object_get(snap, "consistency")));
    else
        printf("Domain snapshot %s requested\n", name);
    return CLI_OK;
}

static int snapshot_list(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = snap_path(a->pos[0], NULL, NULL);
    return cli_list_print(c, p, "name,state,consistency,created_at", NULL);
}

static int snapshot_info(struct cli *c, struct cli_args *a)
{
    json_auto_t *snap = NULL;
    _cleanup_free_ char *p = snap_path(a->pos[0], a->pos[1], NULL);
    int r = cli_call(c, "GET", p, NULL, &snap);
    if (r)
        return r;
    if (c->json)
        cli_print_json(snap);
    else
        cli_print_fields(snap, SNAP_FIELDS);
    return CLI_OK;
}

static int snapshot_revert(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("snapshot-revert");
    json_auto_t *snap = NULL;
    _cleanup_free_ char *p = snap_path(a->pos[0], a->pos[1], "/revert");
    int r = cli_call(c, "POST", p, NULL, &snap);
    if (r)
        return r;
    if (cli_flag_bool(a, "wait") &&
        (r = snap_wait(c, v, a, a->pos[0], a->pos[1], SNAP_REVERTED)))
        return r;
    printf("Domain snapshot %s %s\n", a->pos[1],
           cli_flag_bool(a, "wait") ? "reverted" : "revert requested");
    return CLI_OK;
}

static int snapshot_delete(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("snapshot-delete");
    _cleanup_free_ char *p = snap_path(a->pos[0], a->pos[1], NULL);
    json_auto_t *snap = NULL;
    int r = cli_call(c, "DELETE", p, NULL, &snap);
    if (r)
        return r;
    if (cli_flag_bool(a, "wait") &&
        (r = snap_wait(c, v, a, a->pos[0], a->pos[1], SNAP_GONE)))
        return r;
    printf("Domain snapshot %s %s\n", a->pos[1],
           cli_flag_bool(a, "wait") ? "deleted" : "deletion requested");
    return CLI_OK;
}

const struct cli_verb cli_snapshot_verbs[] = {
    { "snapshot-create", snapshot_create, 1, 2, "wait,timeout=",
      "NAME [SNAP] [--wait [--timeout S]]",
      "snapshot a VM on its node (named by the time when SNAP is left out): "
      "memory and disk of a running VM, the disk of a stopped one",
      "snapshot-create-as" },
    { "snapshot-list", snapshot_list, 1, 1, "", "NAME",
      "list a VM's snapshots", "snapshot-list" },
    { "snapshot-info", snapshot_info, 2, 2, "", "NAME SNAP",
      "show one snapshot", "snapshot-info" },
    { "snapshot-revert", snapshot_revert, 2, 2, "wait,timeout=",
      "NAME SNAP [--wait [--timeout S]]",
      "return a VM to a snapshot (a running VM's snapshot resumes where it "
      "was; the VM's power state is kept)", "snapshot-revert" },
    { "snapshot-delete", snapshot_delete, 2, 2, "wait,timeout=",
      "NAME SNAP [--wait [--timeout S]]", "delete a snapshot",
      "snapshot-delete" },
    { NULL, NULL, 0, 0, NULL, NULL, NULL, NULL },
};
