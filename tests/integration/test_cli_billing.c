/* Billing through fogctl against the real controller with accrual every
 * second: an admin credits a tenant, a provider's node (this test speaks
 * the agent protocol itself) runs the tenant's VM for a few seconds, and
 * the tenant's invoice and the provider's payout reconcile with the ledger
 * to the nano-token. An exhausted balance stops the VM until a top-up, and
 * nobody but an admin can credit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "billing/money.h"
#include "billing/period.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <stdio.h>

static struct tu_ctl ctl;
static char *home;
static char *tenant_key, *provider_key, *node_cred;

/* ---- fogctl ---- */

/* fogctl with the words from `first` on as the holder of `key`; fails the
 * test unless it exits `want`. Returns stdout (caller frees). */
static char *fogctl_want(int want, const char *key, const char *first,
                         va_list ap)
{
    int st;
    char *out = tu_fogctlv(&ctl, key, &st, first, ap);
    if (st != want)
        fail_msg("fogctl %s exited %d, want %d: %s", first, st, want, out);
    return out;
}

/* fogctl --json VERB WORDS... as the holder of `key`, parsed; fails the
 * test unless it exits 0. */
#define fogctl_json(key, ...) fogctl_json_(key, "--json", __VA_ARGS__, NULL)
static json_t *fogctl_json_(const char *key, const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    _cleanup_free_ char *out = fogctl_want(0, key, first, ap);
    va_end(ap);
    json_error_t err;
    json_t *j = json_loads(out, JSON_DECODE_ANY, &err);
    if (!j)
        fail_msg("fogctl --json printed no JSON: %s", out);
    return j;
}

/* Run fogctl and insist on an exit status; returns stdout. */
#define fogctl_st(want, key, ...) fogctl_st_(want, key, __VA_ARGS__, NULL)
static char *fogctl_st_(int want, const char *key, const char *verb, ...)
{
    va_list ap;
    va_start(ap, verb);
    char *out = fogctl_want(want, key, verb, ap);
    va_end(ap);
    return out;
}

/* The value after "label:" on its own line; "(missing)" when absent, so a
 * failed comparison names it. Caller frees. */
static char *field(const char *out, const char *label)
{
    char *v = tu_field(out, label);
    return v ? v : xstrdup("(missing)");
}

/* An account and a key for it, made by the admin through fogctl. */
static char *make_account(const char *name, const char *role)
{
    free(fogctl_st(0, ctl.admin_key, "account-create", name, "--role", role));
    _cleanup_free_ char *out = fogctl_st(0, ctl.admin_key, "key-create",
                                         "--account", name);
    char *key = field(out, "key");
    assert_true(startswith(key, "fog_"));
    return key;
}

/* ---- the node: this test is its agent ---- */

static json_t *agent_call(const char *method, const char *path,
                          const char *body, long want)
{
    long st;
    json_t *j = tu_api(&ctl, node_cred, method, path, body, &st);
    if (st != want)
        fail_msg("%s %s: status %ld, want %ld: %s", method, path, st, want,
                 json_str(j, "detail") ? json_str(j, "detail") : "");
    return j;
}

/* What the node has told the controller about each VM: the last sample's
 * sequence number and the end of the running time it has claimed. */
static json_t *claims; /* vm id -> [seq, end] */

/* One round of the agent: read the desired state, "run" what should run
 * and report it running with a sample covering the time since the last
 * one; report the rest stopped. Returns the desired state (caller frees). */
static json_t *agent_tick(void)
{
    json_t *desired = agent_call("GET", "/v1/agent/desired?wait=0", NULL, 200);
    json_auto_t *vms = json_array(), *samples = json_array();
    int64_t now = now_s();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(desired, "vms"), i, v) {
        const char *id = json_str(v, "id");
        if (json_bool(v, "deleted", false))
            continue;
        bool run = streq(json_str(v, "power"), "running");
        json_array_append_new(vms, json_pack("{s:s, s:s}", "id", id, "state",
                                             run ? "running" : "stopped"));
        json_t *c = json_object_get(claims, id);
        if (!run) {
            if (c)
                json_array_set_new(c, 1, json_integer(-1));
            continue;
        }
        if (!c) {
            c = json_pack("[i, I]", 0, (json_int_t)-1);
            json_object_set_new(claims, id, c);
        }
        int64_t seq = json_integer_value(json_array_get(c, 0));
        int64_t from = json_integer_value(json_array_get(c, 1));
        if (from < 0) {
            /* Just started: running time is claimed from this report on. */
            json_array_set_new(c, 1, json_integer((json_int_t)now));
        } else if (now > from) {
            json_array_append_new(samples,
                                  json_pack("{s:s, s:I, s:I, s:I}", "vm", id,
                                            "seq", (json_int_t)seq + 1, "start",
                                            (json_int_t)from, "end",
                                            (json_int_t)now));
            json_array_set_new(c, 0, json_integer((json_int_t)seq + 1));
            json_array_set_new(c, 1, json_integer((json_int_t)now));
        }
    }
    json_auto_t *body = json_pack("{s:O, s:O}", "vms", vms, "samples", samples);
    _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
    json_decref(agent_call("POST", "/v1/agent/status", text, 200));
    return desired;
}

static void nap_ms(int ms) { usleep((useconds_t)ms * 1000); }

/* Tick until the VM named `name` is desired with power `power`. */
static bool tick_until(const char *name, const char *power, int timeout_ms)
{
    int64_t end = mono_ms() + timeout_ms;
    while (mono_ms() < end) {
        json_auto_t *d = agent_tick();
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(d, "vms"), i, v)
            if (streq(json_str(v, "name"), name) &&
                streq(json_str(v, "power"), power))
                return true;
        nap_ms(250);
    }
    return false;
}

/* The sum of one ledger account's entries in transactions of `kind`. */
static int64_t ledger_sum(json_t *ledger, const char *account, const char *kind)
{
    int64_t sum = 0;
    size_t i, k;
    json_t *tx, *e;
    json_array_foreach(json_object_get(ledger, "items"), i, tx) {
        if (kind && !streq(json_str(tx, "kind"), kind))
            continue;
        json_array_foreach(json_object_get(tx, "entries"), k, e)
            if (streq(json_str(e, "account"), account))
                sum += json_int(e, "amount_nano", 0);
    }
    return sum;
}

static json_t *ledger_total_of(json_t *ledger, const char *account)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(ledger, "totals"), i, t)
        if (streq(json_str(t, "account"), account))
            return t;
    return NULL;
}

static char *account_id(const char *name)
{
    json_auto_t *a = fogctl_json(ctl.admin_key, "balance", name);
    return xstrdup(json_str(a, "account_id"));
}

static int setup(void **state)
{
    /* Accrual every second, balance limits on with a short grace, a 10%
     * fee, heartbeats every second (a node silent for 3 s is not
     * observed running). */
    static const char *const args[] = { "--accrual-interval", "1", "--grace",
                                        "2", "--fee-bps", "1000",
                                        "--heartbeat", "1", "--longpoll", "1",
                                        NULL };
    tu_ctl_start(&ctl, args);
    home = tu_tempdir("fogctl-billing");
    setenv("HOME", home, 1);
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("FOG_CONFIG");
    claims = json_object();

    tenant_key = make_account("acme", "tenant");
    provider_key = make_account("miner", "provider");
    /* The provider's node joins with the provider's token; the admin
     * approves it. */
    _cleanup_free_ char *t = fogctl_st(0, provider_key, "join-token");
    _cleanup_free_ char *tok = field(t, "token");
    _cleanup_free_ char *reg = xasprintf(
        "{\"token\":\"%s\",\"name\":\"rig-1\",\"inventory\":{\"vcpus\":8,"
        "\"memory_mib\":16384,\"disk_gib\":100,\"kvm\":false}}", tok);
    json_auto_t *j = agent_call("POST", "/v1/agent/register", reg, 201);
    node_cred = xstrdup(json_str(j, "credential"));
    assert_non_null(node_cred);
    free(fogctl_st(0, ctl.admin_key, "node-approve", "rig-1"));
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    tu_rmrf(home);
    free(home);
    free(tenant_key);
    free(provider_key);
    free(node_cred);
    json_decref(claims);
    return 0;
}

static void provider_prices_a_node_and_only_admins_credit(void **state)
{
    /* 36 per vCPU-hour, 3.6 per GiB-hour, 2592 per GiB-month: 0.01, 0.001
     * and 0.001 tokens a second. */
    _cleanup_free_ char *o = fogctl_st(
        0, provider_key, "offer-set", "rig-1", "--vcpu-hour", "36",
        "--mem-gib-hour", "3.6", "--disk-gib-month", "2592", "--gpu-hour",
        "RTX4090=2.5", "--port-hour", "0.000000001");
    _cleanup_free_ char *vcpu = field(o, "vcpu_hour");
    assert_string_equal(vcpu, "36 FOG");
    /* Changing one price keeps the others. */
    _cleanup_free_ char *o2 = fogctl_st(0, provider_key, "offer-set", "rig-1",
                                        "--port-hour", "0.01");
    _cleanup_free_ char *show = fogctl_st(0, provider_key, "offer-show", "rig-1");
    _cleanup_free_ char *vcpu2 = field(show, "vcpu_hour");
    _cleanup_free_ char *mem = field(show, "mem_gib_hour");
    _cleanup_free_ char *port = field(show, "port_hour");
    _cleanup_free_ char *gpus = field(show, "gpu_models");
    assert_string_equal(vcpu2, "36 FOG");
    assert_string_equal(mem, "3.6 FOG");
    assert_string_equal(port, "0.01 FOG");
    assert_string_equal(gpus, "RTX4090=2.5 FOG");
    /* Malformed or missing prices are usage errors, before any call. */
    free(fogctl_st(2, provider_key, "offer-set", "rig-1", "--vcpu-hour",
                   "0.0000000001"));
    free(fogctl_st(2, provider_key, "offer-set", "rig-1", "--vcpu-hour", "-1"));
    free(fogctl_st(2, provider_key, "offer-set", "rig-1", "--vcpu-hour", "1e3"));
    free(fogctl_st(2, provider_key, "offer-set", "rig-1"));
    /* A tenant can neither price a node nor credit itself. */
    free(fogctl_st(1, tenant_key, "offer-set", "rig-1", "--vcpu-hour", "0"));
    free(fogctl_st(1, tenant_key, "credit", "acme", "100", "--memo", "free"));
    free(fogctl_st(2, ctl.admin_key, "credit", "acme", "0", "--memo", "zero"));
    free(fogctl_st(2, ctl.admin_key, "credit", "acme", "100"));
    free(fogctl_st(2, ctl.admin_key, "credit", "acme", "1.5.0", "--memo", "x"));
    free(fogctl_st(1, ctl.admin_key, "credit", "nobody", "1", "--memo", "x"));
    json_auto_t *b0 = fogctl_json(tenant_key, "balance");
    assert_int_equal(json_int(b0, "balance_nano", -1), 0);

    _cleanup_free_ char *cr = fogctl_st(0, ctl.admin_key, "credit", "acme",
                                        "100", "--memo", "welcome");
    assert_non_null(strstr(cr, "credited 100 FOG to acme"));
    _cleanup_free_ char *b = fogctl_st(0, tenant_key, "balance");
    _cleanup_free_ char *bal = field(b, "balance");
    assert_string_equal(bal, "100 FOG");
    /* The admin sees every account's balance and their total. */
    _cleanup_free_ char *all = fogctl_st(0, ctl.admin_key, "balance");
    assert_non_null(strstr(all, "acme"));
    assert_non_null(strstr(all, "TOTAL"));
}

static void invoice_and_payout_reconcile_with_the_ledger(void **state)
{
    /* The node heartbeats, so the VM is placed on it. */
    json_decref(agent_tick());
    free(fogctl_st(0, tenant_key, "create", "web", "--cpus", "1", "--memory",
                   "1G", "--disk", "1G", "--image", "tiny", "--allow-tcg"));
    assert_true(tick_until("web", "running", 10000));
    /* It runs for a few seconds, reported every quarter second. */
    int64_t end = mono_ms() + 4500;
    while (mono_ms() < end) {
        json_decref(agent_tick());
        nap_ms(250);
    }
    /* The node stops reporting; accrual catches up with what it saw. */
    json_t *use = NULL;
    for (int i = 0; i < 100; i++) {
        json_decref(use);
        use = fogctl_json(tenant_key, "usage", "--vm", "web");
        json_t *u = json_array_get(json_object_get(use, "items"), 0);
        if (json_int(u, "seconds", 0) > 0 &&
            json_int(u, "seconds", 0) == json_int(u, "billable_seconds_total", -1))
            break;
        nap_ms(200);
    }
    json_t *u = json_array_get(json_object_get(use, "items"), 0);
    int64_t secs = json_int(u, "seconds", 0);
    assert_true(secs >= 3);
    assert_int_equal(secs, json_int(u, "billable_seconds_total", -1));
    /* An honest node loses at most the heartbeat before the controller
     * first saw the VM running (more on a slow, sanitised controller
     * would be a bug: the capping is for time nobody observed). */
    int64_t capped = json_int(u, "capped_seconds_total", -1);
    assert_true(capped >= 0 && capped <= 1);
    /* 1 vCPU + 1 GiB + 1 GiB of disk: 0.012 tokens a second, exactly. */
    int64_t charge = secs * 12000000;
    assert_int_equal(json_int(use, "charged_nano", -1), charge);
    json_decref(use);

    char period[8];
    period_of(now_s(), period);
    json_auto_t *inv = fogctl_json(tenant_key, "invoice", "--period", period);
    json_auto_t *pay = fogctl_json(provider_key, "payouts", "--period", period);
    json_auto_t *led = fogctl_json(ctl.admin_key, "ledger", "--limit", "1000");
    _cleanup_free_ char *acme = account_id("acme");
    _cleanup_free_ char *miner = account_id("miner");

    /* The tenant's invoice: the charge, the credit, the balances. */
    assert_int_equal(json_int(inv, "charges_nano", -1), charge);
    assert_int_equal(json_int(inv, "seconds", -1), secs);
    assert_int_equal(json_int(inv, "credits_total_nano", -1),
                     INT64_C(100000000000));
    assert_int_equal(json_int(inv, "closing_balance_nano", -1),
                     INT64_C(100000000000) - charge);
    /* The provider's payout: gross = net + fee, the fee 10%. */
    int64_t gross = json_int(pay, "gross_nano", -1);
    int64_t fee = json_int(pay, "fees_nano", -1);
    int64_t net = json_int(pay, "net_nano", -1);
    assert_int_equal(gross, charge);
    assert_int_equal(fee, charge / 10);
    assert_int_equal(gross, net + fee);
    /* Both against the ledger, to the nano: the tenant was charged what
     * the provider was credited plus the fee. */
    assert_int_equal(-ledger_sum(led, acme, "accrual"), charge);
    assert_int_equal(ledger_sum(led, miner, "accrual"), net);
    assert_int_equal(ledger_sum(led, "hub:fees", "accrual"), fee);
    assert_int_equal(-ledger_sum(led, acme, "accrual"),
                     ledger_sum(led, miner, "accrual") +
                         ledger_sum(led, "hub:fees", "accrual"));
    assert_int_equal(json_int(led, "sum_nano", -1), 0);
    json_t *ta = ledger_total_of(led, acme);
    assert_non_null(ta);
    assert_int_equal(json_int(ta, "net_nano", -1),
                     json_int(inv, "closing_balance_nano", -2));
    assert_int_equal(json_int(ledger_total_of(led, miner), "net_nano", -1),
                     json_int(pay, "closing_balance_nano", -2));
    assert_int_equal(json_int(ledger_total_of(led, "hub:fees"), "net_nano", -1),
                     fee);
    /* Filtered to one account, the ledger agrees too. */
    json_auto_t *mine = fogctl_json(ctl.admin_key, "ledger", "--account",
                                    "miner");
    assert_int_equal(ledger_sum(mine, miner, NULL), net);

    /* The tables carry the totals and the symbol. */
    _cleanup_free_ char *it = fogctl_st(0, tenant_key, "invoice", "--period",
                                        period);
    _cleanup_free_ char *want_close = money_format(
        INT64_C(100000000000) - charge, "FOG");
    _cleanup_free_ char *close_ = field(it, "closing balance");
    assert_string_equal(close_, want_close);
    assert_non_null(strstr(it, "TOTAL"));
    assert_non_null(strstr(it, "welcome"));
    _cleanup_free_ char *pt = fogctl_st(0, provider_key, "payouts", "--period",
                                        period);
    _cleanup_free_ char *want_net = money_format(net, "FOG");
    _cleanup_free_ char *net_t = field(pt, "net earned");
    assert_string_equal(net_t, want_net);
    assert_non_null(strstr(pt, "rig-1"));
    _cleanup_free_ char *lt = fogctl_st(0, ctl.admin_key, "ledger", "--limit",
                                        "2");
    assert_non_null(strstr(lt, "(balanced)"));
    assert_non_null(strstr(lt, "the last 2 of"));
    _cleanup_free_ char *ut = fogctl_st(0, tenant_key, "usage", "--from",
                                        "2000-01-01", "--to", "2999-12-31");
    assert_non_null(strstr(ut, "TOTAL"));
    _cleanup_free_ char *want_ch = money_format(charge, "FOG");
    assert_non_null(strstr(ut, want_ch));

    /* Who may read what, and what is a usage error. */
    free(fogctl_st(1, tenant_key, "ledger"));
    free(fogctl_st(1, tenant_key, "payouts", "--period", period));
    free(fogctl_st(1, provider_key, "invoice", "--period", period));
    free(fogctl_st(2, tenant_key, "invoice"));
    free(fogctl_st(2, tenant_key, "invoice", "--period", "2026-13"));
    free(fogctl_st(2, tenant_key, "usage", "--from", "yesterday"));
    free(fogctl_st(2, tenant_key, "usage", "--from", "2026-02-02", "--to",
                   "2026-02-01"));
    free(fogctl_st(2, ctl.admin_key, "ledger", "--limit", "0"));

    /* The tenant stops its VM, so the next test has the node to itself. */
    free(fogctl_st(0, tenant_key, "destroy", "web"));
    assert_true(tick_until("web", "stopped", 5000));
}

static void exhausted_balance_stops_the_vm_until_a_top_up(void **state)
{
    _cleanup_free_ char *poor = make_account("poor", "tenant");
    free(fogctl_st(0, ctl.admin_key, "credit", "poor", "0.05", "--memo",
                   "trial"));
    free(fogctl_st(0, poor, "create", "hog", "--cpus", "2", "--memory", "1G",
                   "--disk", "1G", "--image", "tiny", "--allow-tcg"));
    assert_true(tick_until("hog", "running", 10000));
    /* 0.022 tokens a second against 0.05: gone within a few seconds, and
     * the controller wants the VM stopped. */
    assert_true(tick_until("hog", "stopped", 20000));
    json_decref(agent_tick());
    json_auto_t *vm = fogctl_json(poor, "dominfo", "hog");
    assert_string_equal(json_str(vm, "desired_state"), "stopped");
    json_auto_t *b = fogctl_json(poor, "balance");
    assert_true(json_int(b, "balance_nano", 1) <= 0);
    _cleanup_free_ char *ev = fogctl_st(0, ctl.admin_key, "events", "--limit",
                                        "500");
    assert_non_null(strstr(ev, "billing.vm-stopped"));

    /* No start without funds, and no crediting oneself. */
    free(fogctl_st(1, poor, "start", "hog"));
    free(fogctl_st(1, poor, "credit", "poor", "100", "--memo", "please"));
    json_auto_t *b2 = fogctl_json(poor, "balance");
    assert_true(json_int(b2, "balance_nano", 1) <=
                json_int(b, "balance_nano", 0));
    /* A top-up, and it starts again. */
    free(fogctl_st(0, ctl.admin_key, "credit", "poor", "10", "--memo",
                   "top-up"));
    free(fogctl_st(0, poor, "start", "hog"));
    json_auto_t *vm2 = fogctl_json(poor, "dominfo", "hog");
    assert_string_equal(json_str(vm2, "desired_state"), "running");
    assert_true(tick_until("hog", "running", 5000));
    /* The tenant's statement still reconciles: the credits less the
     * charges are the balance. */
    char period[8];
    period_of(now_s(), period);
    json_auto_t *inv = fogctl_json(poor, "invoice", "--period", period);
    assert_int_equal(json_int(inv, "credits_total_nano", -1),
                     INT64_C(10050000000));
    assert_int_equal(json_int(inv, "credits_total_nano", 0) -
                         json_int(inv, "charges_nano", 0),
                     json_int(inv, "closing_balance_nano", -1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(provider_prices_a_node_and_only_admins_credit),
        cmocka_unit_test(invoice_and_payout_reconcile_with_the_ledger),
        cmocka_unit_test(exhausted_balance_stops_the_vm_until_a_top_up),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
