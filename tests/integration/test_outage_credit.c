/* SLA outage credits against a real controller (heartbeat every second,
 * --sla-credit-bps 20000): a VM that should run on a node that goes
 * silent gets one outage; when the node reports again the tenant receives
 * exactly twice the outage's price from the provider, as one balanced
 * ledger transaction naming node, VM and seconds, with an event on the
 * tenant's account; a stopped VM on a silent node is owed nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <string.h>
#include <unistd.h>

static const char *const ctl_args[] = { "--heartbeat", "1", "--longpoll", "1",
                                        "--grace", "0", "--sla-credit-bps",
                                        "20000", NULL };
static struct tu_ctl ctl;
static char *node_cred;

static void beat(void)
{
    json_decref(tu_api(&ctl, node_cred, "POST", "/v1/agent/status", "{}",
                       NULL));
}

/* The SLA credit transactions of the ledger (new ref). */
static json_t *sla_txs(const char *account)
{
    _cleanup_free_ char *path = xasprintf("/v1/ledger?account=%s&limit=100",
                                          account);
    json_auto_t *l = tu_api(&ctl, ctl.admin_key, "GET", path, NULL, NULL);
    json_t *out = json_array();
    size_t i;
    json_t *tx;
    json_array_foreach(json_object_get(l, "items"), i, tx)
        if (streq(json_str(tx, "actor"), "hub:sla"))
            json_array_append(out, tx);
    return out;
}

static const char *vm_field(const char *key, const char *id, const char *f,
                            json_t **keep)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s", id);
    json_decref(*keep);
    *keep = tu_api(&ctl, key, "GET", path, NULL, NULL);
    return json_str(*keep, f);
}

/* Keep the node silent until the VM reads `unknown`, then two more
 * seconds (the leader's outage pass runs every second). */
static void node_silent(const char *key, const char *vm_id)
{
    json_t *keep = NULL;
    int64_t deadline = mono_ms() + 60000;
    while (!streq(vm_field(key, vm_id, "state", &keep), "unknown")) {
        if (mono_ms() > deadline)
            fail_msg("VM never became unknown on the silent node");
        usleep(250000);
    }
    json_decref(keep);
    sleep(2);
}

static void outage_is_credited_once_from_provider_to_tenant(void **state)
{
    tu_ctl_start(&ctl, ctl_args);
    /* 3.6 tokens per vCPU-hour, nothing else priced: 1 vCPU costs
     * exactly 1,000,000 nano-tokens a second. */
    node_cred = tu_market_node(&ctl, "ou-node", NULL, "3.6");
    _cleanup_free_ char *key = tu_account(&ctl, "ou-tenant", "tenant");
    json_auto_t *vm = tu_vm_post(&ctl, key, "ou-web", 1, NULL, 201);
    const char *vm_id = json_str(vm, "id");
    json_t *keep = NULL;
    int64_t deadline = mono_ms() + 60000;
    while (!vm_field(key, vm_id, "node_id", &keep)) {
        if (mono_ms() > deadline)
            fail_msg("VM never placed");
        beat();
        usleep(250000);
    }
    _cleanup_free_ char *tenant = xstrdup(vm_field(key, vm_id, "account_id",
                                                   &keep));
    beat();
    json_auto_t *none = sla_txs(tenant);
    assert_int_equal(json_array_size(none), 0);

    node_silent(key, vm_id);
    /* Back: the outage closes and is credited. */
    json_t *txs = NULL;
    deadline = mono_ms() + 60000;
    for (;;) {
        beat();
        json_decref(txs);
        txs = sla_txs(tenant);
        if (json_array_size(txs) > 0)
            break;
        if (mono_ms() > deadline)
            fail_msg("no SLA credit after the node came back");
        usleep(250000);
    }
    /* More passes with the node up credit nothing more. */
    for (int i = 0; i < 12; i++) {
        beat();
        usleep(250000);
    }
    json_decref(txs);
    txs = sla_txs(tenant);
    assert_int_equal(json_array_size(txs), 1);
    json_t *tx = json_array_get(txs, 0);
    int64_t secs = json_int(tx, "seconds", 0);
    assert_true(secs >= 3); /* silent for at least three heartbeats */
    assert_string_equal(json_str(tx, "kind"), "credit");
    assert_string_equal(json_str(tx, "vm_id"), vm_id);
    assert_non_null(strstr(json_str(tx, "memo"), "'ou-node'"));
    assert_non_null(strstr(json_str(tx, "memo"), "'ou-web'"));
    _cleanup_free_ char *secs_text = xasprintf("for %lld s", (long long)secs);
    assert_non_null(strstr(json_str(tx, "memo"), secs_text));
    json_t *entries = json_object_get(tx, "entries");
    assert_int_equal(json_array_size(entries), 2);
    int64_t sum = 0, to_tenant = 0, from_other = 0;
    size_t i;
    json_t *en;
    json_array_foreach(entries, i, en) {
        int64_t amt = json_int(en, "amount_nano", 0);
        sum += amt;
        if (streq(json_str(en, "account"), tenant))
            to_tenant = amt;
        else
            from_other = amt;
    }
    assert_int_equal(sum, 0);
    assert_int_equal(to_tenant, 2 * 1000000 * secs);
    assert_int_equal(from_other, -2 * 1000000 * secs);

    /* The tenant is told. */
    json_auto_t *ev = tu_api(&ctl, key, "GET", "/v1/events?limit=100", NULL,
                             NULL);
    assert_non_null(tu_find(json_object_get(ev, "items"), "action",
                            "vm.outage_credit"));

    /* A VM the tenant stopped is owed nothing for a later outage. */
    _cleanup_free_ char *stop = xasprintf("/v1/vms/%s/stop", vm_id);
    json_decref(tu_api(&ctl, key, "POST", stop, "{}", NULL));
    deadline = mono_ms() + 60000;
    while (!streq(vm_field(key, vm_id, "desired_state", &keep), "stopped")) {
        if (mono_ms() > deadline)
            fail_msg("stop never recorded");
        usleep(250000);
    }
    beat();
    int64_t quiet_end = now_s() + 6;
    while (now_s() < quiet_end)
        usleep(250000);
    for (int k = 0; k < 12; k++) {
        beat();
        usleep(250000);
    }
    json_decref(txs);
    txs = sla_txs(tenant);
    assert_int_equal(json_array_size(txs), 1);
    json_decref(txs);
    json_decref(keep);
}

static int teardown(void **state)
{
    free(node_cred);
    tu_ctl_destroy(&ctl);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(outage_is_credited_once_from_provider_to_tenant,
                                  teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
