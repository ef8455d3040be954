/* fogctl verbs for virtual machines, named as virsh names them and
 * answering as virsh does: list, create, dominfo, domstate, start,
 * shutdown, destroy, reboot, suspend, resume, autostart, undefine, resize,
 * console. */
#include "cli/cli.h"
#include "common/fs.h"
#include "common/termtext.h"

#include "api/agentproto.h"
#include "common/timeutil.h"

#include <errno.h>
#include <poll.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define CREATE_FLAGS                                                           \
    "cpus=,memory=,disk=,image=,template=,network=*,publish=*,user-data=,"     \
    "allow-tcg,stopped,wait,timeout=,shutdown-timeout=,max-price=,region=,"    \
    "label=*,anti-affinity=,min-reputation=,dry-run,gpu=,restart-policy=,"     \
    "health=*,backup-schedule=,backup-keep=,schedule=,keep="

#define VM_TABLE "name,state,vcpus,memory_mib,disk_gib,image,node_name,addresses"
#define VM_FIELDS                                                              \
    "id,name,state,state_reason,desired_state,vcpus,memory_mib,disk_gib,"      \
    "image,allow_tcg,node_name,node_id,addresses,addresses6,public_ip6,"      \
    "ports,gpu,gpus,"                                                          \
    "price,"                                                                   \
    "autostart,health,restart_policy,backup_schedule,backup_keep,"            \
    "backup_next_at,created_at"

static char *vm_path(const char *ref, const char *suffix)
{
    _cleanup_free_ char *e = cli_escape(ref);
    return xasprintf("/v1/vms/%s%s", e, suffix ? suffix : "");
}

/* As virsh: running means the VM runs or is meant to run. */
static bool vm_is_active(const json_t *vm)
{
    const char *d = json_string_value(json_object_get(vm, "desired_state"));
    const char *s = json_string_value(json_object_get(vm, "state"));
    return streq(s, "running") || (streq(d, "running") && !streq(s, "error"));
}

/* As virsh: paused once suspended (asked for, or seen on the node). */
static bool vm_is_paused(const json_t *vm)
{
    const char *s = json_string_value(json_object_get(vm, "state"));
    return vm_is_active(vm) &&
           (streq(s, "paused") || json_is_true(json_object_get(vm, "paused")));
}

bool cli_vm_list_keep(const json_t *vm, unsigned flags)
{
    bool act = vm_is_active(vm);
    const char *s = json_string_value(json_object_get(vm, "state"));
    unsigned states = flags & (CLI_LIST_RUNNING | CLI_LIST_PAUSED |
                               CLI_LIST_SHUTOFF);
    /* The --state-* flags pick by state, any of them (as virsh's). */
    if (states)
        return ((flags & CLI_LIST_RUNNING) && act && streq(s, "running")) ||
               ((flags & CLI_LIST_PAUSED) && vm_is_paused(vm)) ||
               ((flags & CLI_LIST_SHUTOFF) && !act);
    if (flags & CLI_LIST_INACTIVE)
        return !act || (flags & CLI_LIST_ALL);
    return (flags & CLI_LIST_ALL) || act;
}

static int vm_list(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("list");
    json_t *items;
    static const struct {
        const char *flag;
        unsigned bit;
    } bits[] = { { "all", CLI_LIST_ALL },
                 { "inactive", CLI_LIST_INACTIVE },
                 { "state-running", CLI_LIST_RUNNING },
                 { "state-paused", CLI_LIST_PAUSED },
                 { "state-shutoff", CLI_LIST_SHUTOFF } };
    unsigned flags = 0;
    for (size_t k = 0; k < ARRAY_SIZE(bits); k++)
        if (cli_flag_bool(a, bits[k].flag))
            flags |= bits[k].bit;
    if (cli_flag_bool(a, "name") && cli_flag_bool(a, "uuid"))
        return cli_usage(v, "--name and --uuid are exclusive");
    if (cli_list_all(c, "/v1/vms", SIZE_MAX, &items) != 0)
        return CLI_FAIL;
    json_t *keep = json_array();
    size_t i;
    json_t *vm;
    json_array_foreach(items, i, vm)
        if (cli_vm_list_keep(vm, flags))
            json_array_append(keep, vm);
    json_decref(items);
    items = keep;
    if (c->json) {
        cli_print_json(items);
    } else if (cli_flag_bool(a, "name") || cli_flag_bool(a, "uuid")) {
        const char *f = cli_flag_bool(a, "name") ? "name" : "id";
        json_array_foreach(items, i, vm)
            printf("%s\n", json_string_value(json_object_get(vm, f)));
    } else {
        cli_print_table(items, VM_TABLE);
    }
    json_decref(items);
    return CLI_OK;
}

/* "8080:80/tcp", "80", "27015/udp" -> {proto, vm_port[, host_port]} */
static json_t *publish_parse(const char *spec)
{
    int64_t host, vm;
    const char *proto;
    if (!cli_port_spec(spec, &host, &vm, &proto))
        return NULL;
    json_t *p = json_pack("{s:s, s:I}", "proto", proto, "vm_port", (json_int_t)vm);
    if (host)
        json_object_set_new(p, "host_port", json_integer(host));
    return p;
}

static int size_flag(const struct cli_verb *v, struct cli_args *a,
                     const char *flag, uint64_t unit, json_t *body,
                     const char *field)
{
    const char *s = cli_flag(a, flag);
    uint64_t n;
    if (!s)
        return 0;
    if (parse_size(s, unit, &n) < 0 || n == 0 || n > INT32_MAX)
        return cli_usage(v, "invalid size '%s' for --%s", s, flag);
    json_object_set_new(body, field, json_integer((json_int_t)n));
    return 0;
}

static int int_flag(const struct cli_verb *v, struct cli_args *a,
                    const char *flag, json_t *body, const char *field)
{
    const char *s = cli_flag(a, flag);
    int64_t n;
    if (!s)
        return 0;
    if (parse_int64(s, 1, 4096, &n) < 0)
        return cli_usage(v, "invalid number '%s' for --%s", s, flag);
    json_object_set_new(body, field, json_integer(n));
    return 0;
}

static void print_vm(struct cli *c, json_t *vm)
{
    if (c->json)
        cli_print_json(vm);
    else
        cli_print_fields(vm, VM_FIELDS);
}

/* Poll until the VM reaches `state` (or "gone"); prints it at the end. */
static int vm_wait(struct cli *c, const char *ref, const char *state,
                   int64_t timeout_s, json_t **ret_vm)
{
    _cleanup_free_ char *p = vm_path(ref, NULL);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct api_reply rep;
        struct api_client *api = cli_api(c);
        if (!api)
            return CLI_FAIL;
        api_request(api, "GET", p, NULL, NULL, &rep);
        if (rep.status == 404 && streq(state, "gone")) {
            api_reply_clear(&rep);
            return CLI_OK;
        }
        if (rep.status == 200) {
            const char *s = json_string_value(json_object_get(rep.json, "state"));
            if (streq(s, state)) {
                if (ret_vm)
                    *ret_vm = json_incref(rep.json);
                api_reply_clear(&rep);
                return CLI_OK;
            }
            if (streq(s, "error")) {
                const char *why = json_string_value(
                    json_object_get(rep.json, "state_reason"));
                cli_fail("VM '%s' failed: %s", ref, why ? why : "unknown error");
                api_reply_clear(&rep);
                return CLI_FAIL;
            }
        }
        api_reply_clear(&rep);
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= timeout_s)
            return cli_fail("VM '%s' not %s after %llds", ref, state,
                            (long long)timeout_s);
        nanosleep(&(struct timespec){ 0, 300 * 1000 * 1000 }, NULL);
    }
}

static int wait_timeout(const struct cli_verb *v, struct cli_args *a,
                        int64_t *ret)
{
    const char *t = cli_flag(a, "timeout");
    *ret = 300;
    if (t && parse_int64(t, 1, 86400, ret) < 0)
        return cli_usage(v, "invalid --timeout '%s'", t);
    return 0;
}

/* The market constraints of create: a cap per hour for the whole VM,
 * region, label selectors, an anti-affinity group, a minimum reputation
 * (0-100), GPUs by model (MODEL[:COUNT]) and a dry run. The hub checks the values; only shapes here. */
static int market_flags(const struct cli_verb *v, struct cli_args *a,
                        json_t *body)
{
    static const char *const str[][2] = { { "max-price", "max_price" },
                                          { "region", "region" },
                                          { "anti-affinity", "anti_affinity" },
                                          { "gpu", "gpu" } };
    for (size_t i = 0; i < ARRAY_SIZE(str); i++) {
        const char *s = cli_flag(a, str[i][0]);
        json_t *j = s ? json_string(s) : NULL;
        if (s && !j)
            return cli_usage(v, "--%s is not valid UTF-8", str[i][0]);
        if (j)
            json_object_set_new(body, str[i][1], j);
    }
    json_t *sel = cli_flag_list(a, "label");
    size_t i;
    json_t *it;
    json_array_foreach(sel, i, it) {
        const char *kv = json_string_value(it), *eq = strchr(kv, '=');
        if (!eq || eq == kv || !eq[1])
            return cli_usage(v, "invalid --label '%s' (KEY=VALUE)", kv);
    }
    if (json_array_size(sel))
        json_object_set(body, "labels", sel);
    const char *m = cli_flag(a, "min-reputation");
    int64_t n;
    if (m && parse_int64(m, 0, 100, &n) < 0)
        return cli_usage(v, "invalid --min-reputation '%s' (0 to 100)", m);
    if (m)
        json_object_set_new(body, "min_reputation", json_integer(n));
    if (cli_flag_bool(a, "dry-run"))
        json_object_set_new(body, "dry_run", json_true());
    return 0;
}

/* A dry run's answer: the chosen offer and its price, or why none. */
static int dry_run_print(struct cli *c, json_t *ans)
{
    bool ok = json_is_true(json_object_get(ans, "placeable"));
    if (c->json)
        cli_print_json(ans);
    else if (ok)
        printf("would place on node %s (%s) at %s per hour\n",
               json_string_value(json_object_get(ans, "node_name")),
               json_string_value(json_object_get(ans, "node_id")),
               json_string_value(json_object_get(ans, "price_hour")));
    if (!ok)
        return cli_fail("no offer fits: %s",
                        json_string_value(json_object_get(ans, "reason")));
    return CLI_OK;
}

static int vm_create(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("create");
    json_auto_t *body = json_object();
    json_t *name = json_string(a->pos[0]);
    if (!name)
        return cli_usage(v, "the name is not valid UTF-8");
    json_object_set_new(body, "name", name);
    int r;
    if ((r = int_flag(v, a, "cpus", body, "vcpus")) ||
        (r = size_flag(v, a, "memory", 1u << 20, body, "memory_mib")) ||
        (r = size_flag(v, a, "disk", 1u << 30, body, "disk_gib")) ||
        (r = int_flag(v, a, "shutdown-timeout", body, "shutdown_timeout_s")))
        return r;
    const char *tmpl = cli_flag(a, "template");
    if (tmpl)
        json_object_set_new(body, "template", json_string(tmpl));
    if (cli_flag(a, "image"))
        json_object_set_new(body, "image", json_string(cli_flag(a, "image")));
    if (!tmpl) {
        static const char *const need[] = { "vcpus", "memory_mib", "disk_gib",
                                            "image" };
        static const char *const flag[] = { "--cpus", "--memory", "--disk",
                                            "--image" };
        for (size_t i = 0; i < ARRAY_SIZE(need); i++)
            if (!json_object_get(body, need[i]))
                return cli_usage(v, "%s is required (or --template)", flag[i]);
    }
    if (cli_flag_bool(a, "allow-tcg"))
        json_object_set_new(body, "allow_tcg", json_true());
    if (cli_flag_bool(a, "stopped"))
        json_object_set_new(body, "power_state", json_string("stopped"));
    if (cli_flag(a, "restart-policy"))
        json_object_set_new(body, "restart_policy",
                            json_string(cli_flag(a, "restart-policy")));
    /* --schedule and --keep: the names the issue tracker and Incus users
     * bring. */
    const char *bsch = cli_flag(a, "backup-schedule") ?: cli_flag(a, "schedule");
    const char *bkeep = cli_flag(a, "backup-keep") ?: cli_flag(a, "keep");
    int br = cli_backup_schedule_args(v, bsch, bkeep, body, "backup_schedule",
                                      "backup_keep");
    if (br)
        return br;
    const char *ud = cli_flag(a, "user-data");
    if (ud) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        int e = file_read(ud, 65536, &text, &len);
        if (e < 0)
            return cli_fail("cannot read user-data '%s': %s", ud,
                            e == -EFBIG ? "larger than 64 KiB" : strerror(-e));
        json_t *s = json_string(text);
        if (!s)
            return cli_fail("user-data '%s' is not UTF-8 text", ud);
        json_object_set_new(body, "user_data", s);
    }
    json_t *nets = cli_flag_list(a, "network");
    if (json_array_size(nets))
        json_object_set(body, "networks", nets);
    json_t *pubs = cli_flag_list(a, "publish"), *ports = json_array();
    json_object_set_new(body, "ports", ports);
    size_t i;
    json_t *it;
    json_array_foreach(pubs, i, it)
    {
        json_t *p = publish_parse(json_string_value(it));
        if (!p)
            return cli_usage(v, "invalid --publish '%s' (HOST:VM/PROTO, VM/PROTO "
                                "or VM)", json_string_value(it));
        json_array_append_new(ports, p);
    }
    if (json_array_size(ports) == 0)
        json_object_del(body, "ports");
    json_t *checks = NULL;
    if ((r = cli_health_flags(v, a, &checks)))
        return r;
    if (checks)
        json_object_set_new(body, "health_checks", checks);
    if ((r = market_flags(v, a, body)))
        return r;
    json_auto_t *vm = NULL;
    if (cli_call(c, "POST", "/v1/vms", body, &vm) != 0)
        return CLI_FAIL;
    if (cli_flag_bool(a, "dry-run"))
        return dry_run_print(c, vm);
    if (cli_flag_bool(a, "wait") && !cli_flag_bool(a, "stopped")) {
        int64_t t;
        if ((r = wait_timeout(v, a, &t)))
            return r;
        json_t *done = NULL;
        if (vm_wait(c, json_string_value(json_object_get(vm, "id")), "running",
                    t, &done) != 0)
            return CLI_FAIL;
        json_decref(vm);
        vm = done;
    }
    if (c->json)
        cli_print_json(vm);
    else
        printf("VM %s created (%s), state %s\n", a->pos[0],
               json_string_value(json_object_get(vm, "id")),
               json_string_value(json_object_get(vm, "state")));
    return CLI_OK;
}

static int vm_dominfo(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = vm_path(a->pos[0], NULL);
    _cleanup_free_ char *pp = vm_path(a->pos[0], "/ports");
    json_auto_t *vm = NULL, *ports = NULL;
    if (cli_call(c, "GET", p, NULL, &vm) != 0)
        return CLI_FAIL;
    if (cli_call(c, "GET", pp, NULL, &ports) == 0) {
        json_t *list = json_array();
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(ports, "items"), i, it)
        {
            json_t *hp = json_object_get(it, "host_port");
            json_array_append_new(
                list, json_sprintf("%lld->%lld/%s",
                                   (long long)json_integer_value(hp),
                                   (long long)json_integer_value(
                                       json_object_get(it, "vm_port")),
                                   json_string_value(json_object_get(it, "proto"))));
        }
        json_object_set_new(vm, "ports", list);
    }
    if (!c->json && json_array_size(json_object_get(vm, "gpus")) > 0) {
        json_t *list = json_array();
        size_t i;
        json_t *g;
        json_array_foreach(json_object_get(vm, "gpus"), i, g)
            json_array_append_new(list, json_sprintf(
                "%s (%s)", json_string_value(json_object_get(g, "address")),
                json_string_value(json_object_get(g, "model"))));
        json_object_set_new(vm, "gpus", list);
    }
    if (!c->json) {
        json_t *list = json_array();
        size_t i;
        json_t *h;
        json_array_foreach(json_object_get(vm, "health_checks"), i, h) {
            _cleanup_free_ char *line = cli_health_line(h);
            json_array_append_new(list, json_string(line));
        }
        json_object_set_new(vm, "health", list);
    }
    print_vm(c, vm);
    return CLI_OK;
}

/* Fetch the VM to check a verb against its state, as virsh does before
 * acting. NULL after reporting the failure. */
static json_t *vm_get(struct cli *c, const char *ref)
{
    _cleanup_free_ char *p = vm_path(ref, NULL);
    json_t *vm = NULL;
    if (cli_call(c, "GET", p, NULL, &vm) != 0)
        return NULL;
    return vm;
}

/* start / shutdown / destroy / reboot / undefine share one shape. The API
 * is idempotent (a retried start is harmless); the CLI answers as virsh:
 * starting an active VM or stopping an inactive one is an error. */
static int vm_action(struct cli *c, struct cli_args *a, const char *method,
                     const char *suffix, const char *wait_for, const char *done)
{
    const struct cli_verb *v = cli_verb_find(suffix ? suffix + 1 : "undefine");
    _cleanup_free_ char *p = vm_path(a->pos[0], suffix);
    json_auto_t *vm = NULL;
    if (suffix) {
        json_auto_t *cur = vm_get(c, a->pos[0]);
        if (!cur)
            return CLI_FAIL;
        bool act = vm_is_active(cur);
        if (streq(suffix, "/start") && act)
            return cli_fail("Domain '%s' is already active", a->pos[0]);
        if (streq(suffix, "/resume") && act && !vm_is_paused(cur))
            return cli_fail("Failed to resume domain '%s': domain is not "
                            "paused", a->pos[0]);
        if (!streq(suffix, "/start") && !act)
            return cli_fail("Failed to %s domain '%s': domain is not running",
                            streq(suffix, "/stop") ? "shutdown" : suffix + 1,
                            a->pos[0]);
    }
    if (cli_call(c, method, p, NULL, &vm) != 0)
        return CLI_FAIL;
    if (wait_for && cli_flag_bool(a, "wait")) {
        int64_t t;
        int r = wait_timeout(v ? v : cli_verb_find("start"), a, &t);
        if (r)
            return r;
        json_t *last = NULL;
        if (vm_wait(c, json_string_value(json_object_get(vm, "id")), wait_for,
                    t, &last) != 0)
            return CLI_FAIL;
        if (last) {
            json_decref(vm);
            vm = last;
        }
    }
    if (c->json)
        cli_print_json(vm);
    else
        printf("VM %s %s\n", a->pos[0], done);
    return CLI_OK;
}

static int vm_start(struct cli *c, struct cli_args *a)
{
    return vm_action(c, a, "POST", "/start", "running", "started");
}
static int vm_shutdown(struct cli *c, struct cli_args *a)
{
    return vm_action(c, a, "POST", "/stop", "stopped", "is being shut down");
}
static int vm_destroy(struct cli *c, struct cli_args *a)
{
    return vm_action(c, a, "POST", "/destroy", "stopped", "destroyed");
}
static int vm_reboot(struct cli *c, struct cli_args *a)
{
    return vm_action(c, a, "POST", "/reboot", NULL, "is being rebooted");
}
/* virsh suspend / resume: held paused on the node (billed as running). */
static int vm_suspend(struct cli *c, struct cli_args *a)
{
    return vm_action(c, a, "POST", "/suspend", "paused", "suspended");
}
static int vm_resume(struct cli *c, struct cli_args *a)
{
    return vm_action(c, a, "POST", "/resume", "running", "resumed");
}

/* virsh autostart NAME [--disable]: whether the VM comes back when its
 * node reboots. */
static int vm_autostart(struct cli *c, struct cli_args *a)
{
    bool on = !cli_flag_bool(a, "disable");
    _cleanup_free_ char *p = vm_path(a->pos[0], "/autostart");
    json_auto_t *body = json_pack("{s:b}", "autostart", on);
    json_auto_t *vm = NULL;
    if (cli_call(c, "POST", p, body, &vm) != 0)
        return CLI_FAIL;
    if (c->json)
        cli_print_json(vm);
    else
        printf("Domain '%s' %s as autostarted\n", a->pos[0],
               on ? "marked" : "unmarked");
    return CLI_OK;
}

/* Incus / OpenStack `delete`: the VM and its disks. */
static int vm_delete(struct cli *c, struct cli_args *a)
{
    return vm_action(c, a, "DELETE", NULL, "gone", "undefined");
}
/* virsh undefine keeps storage unless --remove-all-storage; a VM's disks
 * cannot outlive it here, so undefine keeps nothing silently: it asks for
 * the flag (or `delete`) rather than deleting disks unasked. */
static int vm_undefine(struct cli *c, struct cli_args *a)
{
    if (!cli_flag_bool(a, "remove-all-storage"))
        return cli_fail("undefining '%s' would delete its disks (they cannot "
                        "outlive the VM): give --remove-all-storage, or use "
                        "'fogctl delete %s'", a->pos[0], a->pos[0]);
    return vm_delete(c, a);
}

/* virsh domstate: one word. */
static int vm_domstate(struct cli *c, struct cli_args *a)
{
    json_auto_t *vm = vm_get(c, a->pos[0]);
    if (!vm)
        return CLI_FAIL;
    const char *s = json_string_value(json_object_get(vm, "state"));
    if (c->json) {
        json_auto_t *o = json_pack("{s:s?, s:s?}", "state", s, "reason",
                                   json_string_value(json_object_get(
                                       vm, "state_reason")));
        cli_print_json(o ? o : json_null());
    } else {
        printf("%s\n", s ? s : "unknown");
    }
    return CLI_OK;
}

/* Incus / OpenStack spelling: `stop` is a graceful shutdown, `stop
 * --force` a destroy. */
static int vm_stop(struct cli *c, struct cli_args *a)
{
    return cli_flag_bool(a, "force") ? vm_destroy(c, a) : vm_shutdown(c, a);
}

/* virsh domifaddr: the VM's addresses, one per line. */
static int vm_domifaddr(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = vm_path(a->pos[0], NULL);
    json_auto_t *vm = NULL;
    if (cli_call(c, "GET", p, NULL, &vm) != 0)
        return CLI_FAIL;
    json_t *addrs = json_object_get(vm, "addresses");
    if (c->json) {
        cli_print_json(addrs ? addrs : json_array());
        return CLI_OK;
    }
    json_auto_t *rows = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(addrs, i, it)
    {
        _cleanup_free_ char *name = xasprintf("eth%zu", i);
        json_array_append_new(rows, json_pack("{s:s, s:s, s:O}", "interface",
                                              name, "protocol", "ipv4",
                                              "address", it));
        /* Its IPv6 address on a dual-stack network, next to it. */
        json_t *six = json_array_get(json_object_get(vm, "addresses6"), i);
        if (json_is_string(six))
            json_array_append_new(rows, json_pack("{s:s, s:s, s:O}",
                                                  "interface", name,
                                                  "protocol", "ipv6",
                                                  "address", six));
    }
    cli_print_table(rows, "interface,protocol,address");
    return CLI_OK;
}

/* POST the resize body for VM ref and print the VM it answers. */
static int vm_resize_with(struct cli *c, const char *ref, json_t *body)
{
    _cleanup_free_ char *p = vm_path(ref, "/resize");
    json_auto_t *vm = NULL;
    if (cli_call(c, "POST", p, body, &vm) != 0)
        return CLI_FAIL;
    print_vm(c, vm);
    return CLI_OK;
}

static int vm_resize(struct cli *c, struct cli_args *a)
{
    const struct cli_verb *v = cli_verb_find("resize");
    json_auto_t *body = json_object();
    int r;
    if ((r = int_flag(v, a, "cpus", body, "vcpus")) ||
        (r = size_flag(v, a, "memory", 1u << 20, body, "memory_mib")) ||
        (r = size_flag(v, a, "disk", 1u << 30, body, "disk_gib")))
        return r;
    if (json_object_size(body) == 0)
        return cli_usage(v, "give at least one of --cpus, --memory, --disk");
    return vm_resize_with(c, a->pos[0], body);
}

/* virsh setvcpus NAME COUNT --config: a stopped VM's vCPUs (the server
 * refuses a running VM and a count past the machine or the node). */
static int vm_setvcpus(struct cli *c, struct cli_args *a)
{
    int64_t n;
    if (parse_int64(a->pos[1], 1, 4096, &n) < 0)
        return cli_usage(cli_verb_find("setvcpus"),
                         "invalid vCPU count '%s'", a->pos[1]);
    json_auto_t *body = json_pack("{s:I}", "vcpus", (json_int_t)n);
    return vm_resize_with(c, a->pos[0], body);
}

/* virsh setmem NAME SIZE --config: a stopped VM's memory; as in virsh a
 * bare number is KiB, else a K/M/G/T suffix. */
static int vm_setmem(struct cli *c, struct cli_args *a)
{
    const char *s = a->pos[1];
    _cleanup_free_ char *kib = s[0] && s[strspn(s, "0123456789")] == '\0'
                                   ? xasprintf("%sK", s) : xstrdup(s);
    uint64_t mib;
    if (parse_size(kib, 1u << 20, &mib) < 0 || mib == 0 || mib > INT32_MAX)
        return cli_usage(cli_verb_find("setmem"), "invalid size '%s'", s);
    json_auto_t *body = json_pack("{s:I}", "memory_mib", (json_int_t)mib);
    return vm_resize_with(c, a->pos[0], body);
}

/* GET a VM's text resource (suffix of its path) into *rep, which the
 * caller clears on CLI_OK; else the failure is reported. */
static int vm_get_text(struct cli *c, const char *ref, const char *suffix,
                       struct api_reply *rep)
{
    struct api_client *api = cli_api(c);
    if (!api)
        return CLI_FAIL;
    _cleanup_free_ char *p = vm_path(ref, suffix);
    if (api_request(api, "GET", p, NULL, NULL, rep) < 0 || rep->status != 200) {
        _cleanup_free_ char *msg = api_reply_describe(rep);
        api_reply_clear(rep);
        return cli_fail("%s", msg);
    }
    return CLI_OK;
}

/* Ctrl-], as virsh and telnet: leaves an interactive console. */
#define CONSOLE_ESCAPE 0x1d
/* After stdin ends (a pipe), wait for the guest's answer until it has
 * been quiet this long, CONSOLE_DRAIN_MAX_MS at most. */
#define CONSOLE_QUIET_MS 2000
#define CONSOLE_DRAIN_MAX_MS 30000

static struct termios console_saved;
static bool console_raw;

static void console_restore(void)
{
    if (console_raw)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &console_saved);
    console_raw = false;
}

/* Move what the console sent to stdout until none is left now: 1 when
 * something came, 0 when nothing, -1 when the session ended. */
static int console_down(struct api_stream *s)
{
    char buf[16384];
    int got = 0;
    for (;;) {
        ssize_t n = api_stream_recv(s, buf, sizeof(buf));
        if (n == -EAGAIN)
            return got;
        if (n <= 0)
            return -1;
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
            return -1;
        fflush(stdout);
        got = 1;
    }
}

/* virsh console: the VM's serial console on this terminal (raw mode,
 * Ctrl-] leaves) or, when stdin is not a terminal, stdin's bytes in and
 * the console's out until stdin ends and the guest falls quiet. */
static int vm_console_attach(struct cli *c, const char *ref, bool force)
{
    struct api_client *api = cli_api(c);
    if (!api)
        return CLI_FAIL;
    _cleanup_free_ char *p = vm_path(ref, force ? "/console/attach?force=true"
                                                : "/console/attach");
    /* The controller waits for the node to connect before it answers. */
    api_client_set_timeout(api, CONSOLE_JOIN_TIMEOUT_S + 30);
    struct api_reply rep;
    struct api_stream *s = NULL;
    if (api_upgrade(api, p, CONSOLE_UPGRADE_PROTOCOL, &rep, &s) < 0) {
        _cleanup_free_ char *msg = api_reply_describe(&rep);
        api_reply_clear(&rep);
        return cli_fail("%s", msg);
    }
    api_reply_clear(&rep);

    bool tty = isatty(STDIN_FILENO);
    printf("Connected to domain '%s'\nEscape character is ^] (Ctrl + ])\n",
           ref);
    fflush(stdout);
    if (tty && tcgetattr(STDIN_FILENO, &console_saved) == 0) {
        struct termios raw = console_saved;
        cfmakeraw(&raw);
        console_raw = tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0;
        atexit(console_restore);
    }
    bool in_eof = false, ended = false;
    int64_t quiet_since = 0, eof_at = 0;
    while (!ended) {
        int64_t now = mono_ms();
        if (in_eof && (now - quiet_since >= CONSOLE_QUIET_MS ||
                       now - eof_at >= CONSOLE_DRAIN_MAX_MS))
            break;
        struct pollfd pf[2] = { { api_stream_fd(s), POLLIN, 0 },
                                { STDIN_FILENO, POLLIN, 0 } };
        if (poll(pf, in_eof ? 1 : 2, 200) < 0 && errno != EINTR)
            break;
        int d = console_down(s);
        if (d < 0)
            break;
        if (d > 0)
            quiet_since = mono_ms();
        if (in_eof || !(pf[1].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        char buf[4096];
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n <= 0) {
            in_eof = true;
            eof_at = quiet_since = mono_ms();
            continue;
        }
        const char *esc = tty ? memchr(buf, CONSOLE_ESCAPE, (size_t)n) : NULL;
        if (esc) {
            n = esc - buf;
            ended = true;
        }
        if (n > 0 && api_stream_send_all(s, buf, (size_t)n, 10000) < 0)
            break;
    }
    console_restore();
    if (tty)
        putchar('\n');
    fflush(stdout);
    api_stream_free(s);
    return CLI_OK;
}

static int vm_console(struct cli *c, struct cli_args *a)
{
    const char *bytes = cli_flag(a, "bytes");
    if (!cli_flag_bool(a, "log") && !bytes)
        return vm_console_attach(c, a->pos[0], cli_flag_bool(a, "force"));
    int64_t n_bytes = 0;
    if (bytes && parse_int64(bytes, 1, CONSOLE_LOG_MAX, &n_bytes) < 0)
        return cli_fail("--bytes must be a number from 1 to %u",
                        CONSOLE_LOG_MAX);
    _cleanup_free_ char *suffix =
        n_bytes ? xasprintf("/console?bytes=%lld", (long long)n_bytes)
                : xstrdup("/console");
    struct api_reply rep;
    int r = vm_get_text(c, a->pos[0], suffix, &rep);
    if (r != CLI_OK)
        return r;
    /* The node keeps the guest's bytes; the view is plain text. */
    size_t n;
    _cleanup_free_ char *text = term_strip(rep.body, rep.body_len, &n);
    if (c->json) {
        json_auto_t *o = json_pack("{s:s%}", "console", text, n);
        cli_print_json(o ? o : json_null());
    } else {
        fwrite(text, 1, n, stdout);
        if (n && text[n - 1] != '\n')
            putchar('\n');
    }
    api_reply_clear(&rep);
    return CLI_OK;
}

/* virsh dumpxml: the domain XML as the VM's node reported it. */
static int vm_dumpxml(struct cli *c, struct cli_args *a)
{
    struct api_reply rep;
    int r = vm_get_text(c, a->pos[0], "/xml", &rep);
    if (r != CLI_OK)
        return r;
    if (c->json) {
        json_auto_t *o = json_pack("{s:s%}", "xml", rep.body, rep.body_len);
        cli_print_json(o ? o : json_null());
    } else {
        fwrite(rep.body, 1, rep.body_len, stdout);
        if (rep.body_len && rep.body[rep.body_len - 1] != '\n')
            putchar('\n');
    }
    api_reply_clear(&rep);
    return CLI_OK;
}

/* A table as virsh prints one: a space before each cell, columns three
 * apart, a line of dashes under the header. cells: nrow rows of ncol,
 * the header first. */
static void virsh_table(const char *const *cells, size_t nrow, size_t ncol)
{
    _cleanup_free_ size_t *w = xcalloc(ncol, sizeof(*w));
    size_t total = 0;
    for (size_t r = 0; r < nrow; r++)
        for (size_t k = 0; k < ncol; k++)
            if (strlen(cells[r * ncol + k]) > w[k])
                w[k] = strlen(cells[r * ncol + k]);
    for (size_t k = 0; k < ncol; k++)
        total += w[k] + 3;
    for (size_t r = 0; r < nrow; r++) {
        for (size_t k = 0; k < ncol; k++)
            printf(" %-*s%s", k + 1 < ncol ? (int)w[k] : 0,
                   cells[r * ncol + k], k + 1 < ncol ? "  " : "");
        putchar('\n');
        for (size_t i = 0; r == 0 && i < total; i++)
            putchar(i + 1 < total ? '-' : '\n');
    }
}

/* virsh domiflist: Interface, Type, Source, Model, MAC of each interface
 * the VM's node read from the domain ("-" where it has none). */
static int vm_domiflist(struct cli *c, struct cli_args *a)
{
    _cleanup_free_ char *p = vm_path(a->pos[0], NULL);
    json_auto_t *vm = NULL;
    if (cli_call(c, "GET", p, NULL, &vm) != 0)
        return CLI_FAIL;
    json_t *ifs = json_object_get(vm, "interfaces");
    if (c->json) {
        cli_print_json(json_is_array(ifs) ? ifs : json_array());
        return CLI_OK;
    }
    static const char *const col[] = { "target", "type", "source", "model",
                                       "mac" };
    size_t n = json_array_size(ifs), nc = ARRAY_SIZE(col);
    _cleanup_free_ const char **cells = xcalloc((n + 1) * nc, sizeof(*cells));
    static const char *const head[] = { "Interface", "Type", "Source",
                                        "Model", "MAC" };
    for (size_t k = 0; k < nc; k++) {
        cells[k] = head[k];
        for (size_t r = 0; r < n; r++) {
            const char *v = json_string_value(
                json_object_get(json_array_get(ifs, r), col[k]));
            cells[(r + 1) * nc + k] = v && *v ? v : "-";
        }
    }
    virsh_table(cells, n + 1, nc);
    return CLI_OK;
}

const struct cli_verb cli_vm_verbs[] = {
    { "list", vm_list, 0, 0,
      "all,inactive,state-running,state-paused,state-shutoff,name,uuid",
      "[--all | --inactive] [--state-running] [--state-paused] "
      "[--state-shutoff] [--name | --uuid]",
      "list VMs (active ones; --all every VM, --inactive the stopped, "
      "--state-* those in any of the states named, --name/--uuid print "
      "only names or ids)", "list" },
    { "create", vm_create, 1, 1,
      CREATE_FLAGS,
      "NAME --cpus N --memory 512M --disk 10G --image IMG [--template T] "
      "[--network NET]... [--publish [HOST:]PORT[/tcp|udp]]... "
      "[--user-data FILE] [--allow-tcg] [--stopped] [--wait [--timeout S]] "
      "[--shutdown-timeout S] [--max-price P] [--region R] [--label K=V]... "
      "[--anti-affinity GROUP] [--min-reputation 0-100] [--gpu MODEL[:COUNT]] "
      "[--restart-policy none|on-host-failure] "
      "[--health PORT:TYPE[:PATH][,KEY=VALUE]...]... "
      "[--backup-schedule hourly|daily|weekly [--backup-keep N]] [--dry-run]",
      "create a VM (and start it unless --stopped); a shutdown is forced "
      "after --shutdown-timeout seconds (default 60); --max-price caps the "
      "whole VM's price per hour, --dry-run prints the offer it would take "
      "and its price per hour without creating; --health checks a "
      "service from the VM's node (see health-add); --backup-schedule (or "
      "--schedule) backs it up on a schedule keeping --backup-keep (or "
      "--keep) scheduled backups, as backup-schedule does",
      "define + start" },
    { "dominfo", vm_dominfo, 1, 1, "", "NAME",
      "show a VM: state and reason, size, node, addresses, ports, health "
      "checks",
      "dominfo" },
    { "domstate", vm_domstate, 1, 1, "", "NAME", "print a VM's state",
      "domstate" },
    { "start", vm_start, 1, 1, "wait,timeout=", "NAME [--wait]",
      "start a VM (an error if it is already active)", "start" },
    { "shutdown", vm_shutdown, 1, 1, "wait,timeout=", "NAME [--wait]",
      "shut a VM down gracefully (forced after a timeout; an error if it "
      "is not running)", "shutdown" },
    { "destroy", vm_destroy, 1, 1, "wait,timeout=", "NAME [--wait]",
      "power a VM off at once", "destroy" },
    { "reboot", vm_reboot, 1, 1, "", "NAME", "reboot a running VM",
      "reboot" },
    { "suspend", vm_suspend, 1, 1, "wait,timeout=", "NAME [--wait]",
      "hold a running VM paused (still billed as running)", "suspend" },
    { "resume", vm_resume, 1, 1, "wait,timeout=", "NAME [--wait]",
      "resume a paused VM", "resume" },
    { "autostart", vm_autostart, 1, 1, "disable", "NAME [--disable]",
      "start the VM again when its node reboots (the default), or not",
      "autostart" },
    { "undefine", vm_undefine, 1, 1, "remove-all-storage,wait,timeout=",
      "NAME --remove-all-storage [--wait]",
      "delete a VM and its disks (refused without --remove-all-storage)",
      "undefine --remove-all-storage" },
    { "resize", vm_resize, 1, 1, "cpus=,memory=,disk=",
      "NAME [--cpus N] [--memory SIZE] [--disk SIZE]",
      "change vCPUs or memory (while stopped) or grow the disk",
      "setvcpus/setmem --config, vol-resize" },
    { "setvcpus", vm_setvcpus, 2, 2, "config", "NAME COUNT [--config]",
      "set a stopped VM's vCPUs", "setvcpus --config" },
    { "setmem", vm_setmem, 2, 2, "config", "NAME SIZE [--config]",
      "set a stopped VM's memory (a bare SIZE is KiB, as in virsh)",
      "setmem --config" },
    { "console", vm_console, 1, 1, "log,force,bytes=",
      "NAME [--force] [--log [--bytes N]]",
      "attach to the VM's serial console (Ctrl-] leaves; --force takes it "
      "over from another client); with --log print its last 64 KiB, or the "
      "last N bytes (up to 1 MiB, read from its node)",
      "console" },
    { "domifaddr", vm_domifaddr, 1, 1, "", "NAME", "show a VM's addresses",
      "domifaddr" },
    { "dumpxml", vm_dumpxml, 1, 1, "", "NAME",
      "print the VM's domain XML as its node last reported it", "dumpxml" },
    { "domiflist", vm_domiflist, 1, 1, "", "NAME",
      "list the VM's interfaces (from the domain its node reported)",
      "domiflist" },
    /* The names people bring from Incus and OpenStack. */
    { "launch", vm_create, 1, 1,
      CREATE_FLAGS,
      "NAME (as create)", "alias of create", NULL },
    { "info", vm_dominfo, 1, 1, "", "NAME", "alias of dominfo", NULL },
    { "stop", vm_stop, 1, 1, "force,wait,timeout=", "NAME [--force] [--wait]",
      "alias of shutdown; with --force, of destroy", NULL },
    { "restart", vm_reboot, 1, 1, "", "NAME", "alias of reboot", NULL },
    { "delete", vm_delete, 1, 1, "wait,timeout=", "NAME [--wait]",
      "delete a VM and its disks (undefine --remove-all-storage)", NULL },
    { NULL, NULL, 0, 0, NULL, NULL, NULL, NULL },
};
