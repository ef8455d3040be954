/* The controller's per-node and billing series in /metrics: capacity,
 * the provider's reservation and what placed VMs hold, GPUs by state,
 * accrual passes and ledger volume; a removed node's series vanish and a
 * hostile node name cannot break the text. The alert rules and the
 * dashboard in docs/ name only series the controller or an agent
 * exports, and promtool accepts the rules and a populated endpoint. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "nodeagent/metrics.h"
#include "tests/testutil.h"

#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <unistd.h>

static struct tu_ctl ctl;
static char *tmp, *promtool, *tenant_key, *cred_a;

/* Three GPUs: one to offer, one the provider keeps withdrawn, one
 * unusable (its IOMMU group is shared). */
#define MX_GPU(addr, usable, extra)                                            \
    "{\"address\":\"" addr "\",\"id\":\"10de:2684\",\"model\":"               \
    "\"GeForceRTX4090\",\"vendor\":\"NVIDIA Corporation\",\"name\":"          \
    "\"AD102\",\"functions\":[{\"address\":\"" addr "\"}],\"iommu_group\":"   \
    "12,\"numa_node\":0,\"cpulist\":\"0-7\",\"usable\":" usable extra "}"
#define MX_GPUS                                                                \
    "\"iommu\":true,\"gpus\":[" MX_GPU("0000:01:00.0", "true", "") ","        \
    MX_GPU("0000:81:00.0", "true", "") ","                                     \
    MX_GPU("0000:02:00.0", "false", ",\"reason\":\"group shared\"") "]"

static int setup(void **state)
{
    promtool = tu_which("promtool"); /* Debian 12: package prometheus */
    /* Nodes that spoke once stay reachable for the whole test. */
    static const char *ctl_args[] = { "--heartbeat", "60",
                                      "--accrual-interval", "1",
                                      "--no-inspect", NULL };
    tu_ctl_start(&ctl, ctl_args);
    tmp = tu_tempdir("mxmetrics");
    free(tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                      "{\"name\":\"mx-tenant\",\"role\":\"tenant\"}", 201,
                      NULL));
    tenant_key = tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/keys",
                              "{\"account\":\"mx-tenant\"}", 201, "secret");
    cred_a = tu_market_node(&ctl, "mx-a", MX_GPUS, "0");
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    if (tmp)
        tu_rmrf(tmp);
    free(tmp);
    free(promtool);
    free(tenant_key);
    free(cred_a);
    return 0;
}

/* The metrics text (caller frees). */
static char *metrics(void) { return tu_metrics_text(&ctl); }

/* The value of node `node`'s series of `family` (NAN: none). */
static double node_metric(const char *text, const char *family,
                          const char *node)
{
    _cleanup_free_ char *p = xasprintf("%s{node=\"%s\",", family, node);
    return tu_metric(text, p);
}

/* Poll /metrics until node's series of family reads want; the last
 * text (caller frees) in *ret_text. */
static bool wait_node_metric(const char *family, const char *node,
                             double want, char **ret_text)
{
    int64_t end = mono_ms() + 30000;
    char *text = NULL;
    do {
        free(text);
        text = metrics();
        if (node_metric(text, family, node) == want)
            break;
        usleep(100000);
    } while (mono_ms() < end);
    *ret_text = text;
    return node_metric(text, family, node) == want;
}

/* GPUs of node mx-a in `state` (0 when it has no such series). */
static int gpu_count(const char *text, const char *state)
{
    _cleanup_free_ char *tail = xasprintf(",state=\"%s\"} ", state);
    const char *head = "fog_node_gpus{node=\"mx-a\",";
    for (const char *p = strstr(text, head); p; p = strstr(p + 1, head)) {
        const char *eol = strchr(p, '\n'), *t = strstr(p, tail);
        if (t && eol && t < eol)
            return atoi(t + strlen(tail));
    }
    return 0;
}

static void node_series_show_capacity_reservation_use_and_gpus(void **state)
{
    long code;
    /* The node reports what its provider keeps back with its capacity. */
    json_decref(tu_api(&ctl, cred_a, "POST", "/v1/agent/status",
                       "{\"inventory\":{\"vcpus\":8,\"reserved_vcpus\":2,"
                       "\"reserved_memory_mib\":1024,\"reserved_disk_gib\":"
                       "10}}", &code));
    assert_int_equal(code, 200);
    /* Half a reservation is refused, naming the member missing. */
    json_auto_t *half = tu_api(&ctl, cred_a, "POST", "/v1/agent/status",
                               "{\"inventory\":{\"reserved_vcpus\":1}}",
                               &code);
    assert_int_equal(code, 400);
    assert_string_equal(json_str(half, "field"), "inventory");
    assert_non_null(strstr(json_str(half, "detail"), "reserved_memory_mib"));

    free(tu_api_field(&ctl, ctl.admin_key, "POST",
                      "/v1/nodes/mx-a/gpus/offer",
                      "{\"addresses\":[\"0000:01:00.0\"]}", 200,
                      NULL));
    json_decref(tu_vm_post(&ctl, tenant_key, "mx-v1", 1, NULL, 201));
    json_decref(tu_vm_post(&ctl, tenant_key, "mx-v3", 3, NULL, 201));

    _cleanup_free_ char *text = NULL;
    assert_true(wait_node_metric("fog_node_allocated_vcpus", "mx-a", 4,
                                 &text));
    /* Allocated is the placed VMs' sum, as the API lists them. */
    json_auto_t *vms = tu_list(&ctl, tenant_key, "/v1/vms");
    int64_t vcpus = 0, mem = 0, disk = 0;
    size_t i;
    json_t *vm;
    json_array_foreach(vms, i, vm) {
        assert_string_equal(json_str(vm, "node_name"), "mx-a");
        vcpus += json_int(vm, "vcpus", 0);
        mem += json_int(vm, "memory_mib", 0);
        disk += json_int(vm, "disk_gib", 0);
    }
    assert_int_equal(vcpus, 4);
    assert_true(node_metric(text, "fog_node_allocated_memory_bytes", "mx-a") ==
                (double)mem * 1048576);
    assert_true(node_metric(text, "fog_node_allocated_disk_bytes", "mx-a") ==
                (double)disk * 1073741824);
    assert_true(node_metric(text, "fog_node_capacity_vcpus", "mx-a") == 8);
    assert_true(node_metric(text, "fog_node_capacity_memory_bytes", "mx-a") ==
                8192.0 * 1048576);
    assert_true(node_metric(text, "fog_node_reserved_vcpus", "mx-a") == 2);
    assert_true(node_metric(text, "fog_node_reserved_memory_bytes", "mx-a") ==
                1024.0 * 1048576);
    assert_true(node_metric(text, "fog_node_reserved_disk_bytes", "mx-a") ==
                10.0 * 1073741824);
    assert_true(node_metric(text, "fog_node_last_seen_timestamp_seconds",
                            "mx-a") > 0);
    assert_true(node_metric(text, "fog_node_capped_usage_seconds_total",
                            "mx-a") == 0);
    /* One GPU per state; none assigned (no VM asked for one). */
    assert_non_null(strstr(text, "# TYPE fog_node_gpus gauge\n"));
    assert_int_equal(gpu_count(text, "offered"), 1);
    assert_int_equal(gpu_count(text, "withdrawn"), 1);
    assert_int_equal(gpu_count(text, "unusable"), 1);
    assert_int_equal(gpu_count(text, "assigned"), 0);
    /* A VM asking for one takes the offered GPU. */
    json_decref(tu_vm_post(&ctl, tenant_key, "mx-g", 1,
                           "\"gpu\":\"GeForceRTX4090:1\"", 201));
    int64_t end = mono_ms() + 30000;
    while (gpu_count(text, "assigned") != 1 && mono_ms() < end) {
        usleep(100000);
        free(text);
        text = metrics();
    }
    assert_int_equal(gpu_count(text, "assigned"), 1);
    assert_int_equal(gpu_count(text, "offered"), 0);
    assert_int_equal(gpu_count(text, "unusable"), 1);

    /* A capacity report without a reservation: nothing kept back. */
    json_decref(tu_api(&ctl, cred_a, "POST", "/v1/agent/status",
                       "{\"inventory\":{\"vcpus\":8}}", &code));
    assert_int_equal(code, 200);
    free(text);
    text = metrics();
    assert_true(node_metric(text, "fog_node_reserved_vcpus", "mx-a") == 0);
    assert_true(node_metric(text, "fog_node_reserved_disk_bytes", "mx-a") ==
                0);
    if (promtool)
        assert_int_equal(tu_promtool(promtool, tmp, "check metrics", text), 0);
}

static void a_removed_node_leaves_no_series(void **state)
{
    _cleanup_free_ char *cred = tu_node_register(&ctl, "mx-b", NULL);
    _cleanup_free_ char *text = metrics();
    assert_true(node_metric(text, "fog_node_capacity_vcpus", "mx-b") == 8);
    long code;
    json_decref(tu_api(&ctl, ctl.admin_key, "DELETE", "/v1/nodes/mx-b", NULL,
                       &code));
    assert_int_equal(code, 204);
    free(text);
    text = metrics();
    assert_null(strstr(text, "node=\"mx-b\""));
    assert_true(node_metric(text, "fog_node_capacity_vcpus", "mx-a") == 8);
}

/* A name written to the store by other means (an older release, a
 * migration) holding a quote, a backslash and a line feed. */
static void a_hostile_node_name_is_escaped(void **state)
{
    _cleanup_free_ char *cred = tu_node_register(&ctl, "mx-c", NULL);
    tu_sql(&ctl, "UPDATE nodes SET name = '%s' WHERE name = 'mx-c'",
           "mx-\"q\\z\nw");
    _cleanup_free_ char *text = metrics();
    assert_true(node_metric(text, "fog_node_capacity_vcpus",
                            "mx-\\\"q\\\\z\\nw") == 8);
    /* Every line still a comment or one series. */
    for (const char *p = text; *p; p = strchr(p, '\n') + 1) {
        assert_non_null(strchr(p, '\n'));
        assert_true(*p == '#' || strncmp(p, "fog_", 4) == 0);
    }
    if (promtool)
        assert_int_equal(tu_promtool(promtool, tmp, "check metrics", text), 0);
}

static void accrual_passes_and_ledger_volume_are_exported(void **state)
{
    json_auto_t *acct = tu_api(&ctl, ctl.admin_key, "GET",
                               "/v1/accounts/mx-tenant", NULL, NULL);
    const char *id = json_str(acct, "id");
    assert_non_null(id);
    _cleanup_free_ char *cpath = xasprintf("/v1/accounts/%s/credit", id);
    free(tu_api_field(&ctl, ctl.admin_key, "POST", cpath,
                      "{\"amount\":\"12.5\"}", 201, NULL));
    /* The accrual loop runs every second: wait for two passes. */
    int64_t end = mono_ms() + 30000;
    char *text = NULL;
    do {
        free(text);
        text = metrics();
        if (tu_metric(text, "fog_accrual_passes_total ") >= 2)
            break;
        usleep(100000);
    } while (mono_ms() < end);
    assert_true(tu_metric(text, "fog_accrual_passes_total ") >= 2);
    double lag = tu_metric(text, "fog_accrual_lag_seconds ");
    assert_true(isfinite(lag) && lag >= 0);
    assert_true(tu_metric(text, "fog_accrual_pass_duration_seconds ") >= 0);
    assert_true(tu_metric(text, "fog_accrual_batch_max_seconds ") >= 0);
    assert_true(tu_metric(text, "fog_accrual_batches_redone_total ") == 0);
    assert_true(tu_metric(text, "fog_accrual_interval_seconds ") == 1);
    assert_true(tu_metric(text, "fog_ledger_tokens{kind=\"credit\"}") == 12.5);
    assert_true(tu_metric(text, "fog_ledger_tokens{kind=\"reversal\"}") == 0);
    free(text);
}

/* Series names an expression uses (fog_...), each once, into *names. */
static void expr_names(const char *expr, json_t *names)
{
    regex_t re;
    assert_int_equal(regcomp(&re, "fog_[a-z0-9_]+", REG_EXTENDED), 0);
    regmatch_t m;
    for (const char *p = expr; regexec(&re, p, 1, &m, 0) == 0; p += m.rm_eo) {
        _cleanup_free_ char *n = xasprintf("%.*s", (int)(m.rm_eo - m.rm_so),
                                           p + m.rm_so);
        json_object_set_new(names, n, json_true());
    }
    regfree(&re);
}

static void walk_exprs(json_t *j, json_t *names, int *count)
{
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_object(j)) {
        json_object_foreach(j, k, v) {
            if (streq(k, "expr") && json_is_string(v)) {
                expr_names(json_string_value(v), names);
                (*count)++;
            } else {
                walk_exprs(v, names, count);
            }
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
            walk_exprs(v, names, count);
    }
}

static int fake_mesh(void *data, size_t *ret_peers, int64_t **ret_hs)
{
    *ret_peers = 1;
    *ret_hs = xcalloc(1, sizeof(int64_t));
    return 0;
}

/* Does `name` (a family, or a histogram's _bucket/_sum/_count) have a
 * "# TYPE" line in text? */
static bool exported(const char *text, const char *name)
{
    static const char *const suffixes[] = { "", "_bucket", "_sum", "_count" };
    for (size_t i = 0; i < ARRAY_SIZE(suffixes); i++) {
        size_t n = strlen(name), s = strlen(suffixes[i]);
        if (n <= s || strcmp(name + n - s, suffixes[i]) != 0)
            continue;
        _cleanup_free_ char *t = xasprintf("# TYPE %.*s ", (int)(n - s),
                                           name);
        if (strstr(text, t))
            return true;
    }
    return false;
}

static void docs_name_only_exported_series(void **state)
{
    /* What both daemons export: the controller's endpoint and an agent's
     * text with every optional family present. */
    _cleanup_free_ char *ctl_text = metrics();
    struct agent_metrics *am = agent_metrics_start("127.0.0.1:0", fake_mesh,
                                                   NULL);
    assert_non_null(am);
    struct fetch_stats fs = { 0 };
    agent_metrics_cache(am, &fs, 0);
    _cleanup_free_ char *agent_text = agent_metrics_render(am);
    agent_metrics_free(am);

    static const char *const files[] = { "docs/prometheus/fogfabric-rules.yml",
                                         "docs/grafana/fogfabric.json" };
    for (size_t f = 0; f < ARRAY_SIZE(files); f++) {
        _cleanup_free_ char *doc = NULL;
        assert_int_equal(file_read(files[f], 1 << 20, &doc, NULL), 0);
        json_auto_t *names = json_object();
        int count = 0;
        if (f == 1) {
            json_error_t err;
            json_auto_t *dash = json_loads(doc, 0, &err);
            if (!dash)
                fail_msg("%s: line %d: %s", files[f], err.line, err.text);
            walk_exprs(dash, names, &count);
        } else {
            /* The rules: every "expr:" (folded ones run to the next key). */
            for (const char *p = strstr(doc, "expr:"); p;
                 p = strstr(p + 1, "expr:")) {
                const char *end = strstr(p, "for:");
                _cleanup_free_ char *e = xasprintf(
                    "%.*s", end ? (int)(end - p) : (int)strlen(p), p);
                expr_names(e, names);
                count++;
            }
            if (promtool) {
                _cleanup_free_ char *chk = xasprintf("check rules %s",
                                                     files[f]);
                assert_int_equal(tu_promtool(promtool, tmp, chk, NULL), 0);
            }
        }
        assert_true(count >= 7);
        const char *n;
        json_t *v;
        json_object_foreach(names, n, v)
            if (!exported(ctl_text, n) && !exported(agent_text, n))
                fail_msg("%s names %s, which nothing exports", files[f], n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(node_series_show_capacity_reservation_use_and_gpus),
        cmocka_unit_test(a_removed_node_leaves_no_series),
        cmocka_unit_test(a_hostile_node_name_is_escaped),
        cmocka_unit_test(accrual_passes_and_ledger_volume_are_exported),
        cmocka_unit_test(docs_name_only_exported_series),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
