/* Reputation end to end against a real controller (heartbeat every
 * second): two nodes at the same price, the flapping one registered
 * first (so the tie-break alone would pick it). It goes silent for a
 * while; its reputation, as offers and
 * nodeinfo show it, falls below the honest node's, placement with a
 * reputation weight picks the honest node, and min_reputation filters the
 * flapping one out; a VM start failure then lowers the honest node's.
 * A node that drops a VM it should run (reported stopped outside the guest,
 * or gone) has an eviction counted, its reputation falls and
 * min_reputation filters it out; a stop the tenant asked for, and a stale
 * report after the tenant started the VM again, count nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <unistd.h>

static const char *const ctl_args[] = { "--heartbeat", "1", "--longpoll", "1",
                                        "--weight-reputation", "100", NULL };
static struct tu_ctl ctl;

static void beat(const char *cred)
{
    json_decref(tu_api(&ctl, cred, "POST", "/v1/agent/status", "{}", NULL));
}

/* The node's reputation as a tenant's offers show it; -1 when null. */
static int64_t offer_rep(const char *key, const char *name)
{
    json_auto_t *o = tu_api(&ctl, key, "GET", "/v1/offers", NULL, NULL);
    json_t *row = tu_find(json_object_get(o, "offers"), "node_name", name);
    json_t *r = json_object_get(row, "reputation");
    return json_is_integer(r) ? json_integer_value(r) : -1;
}

static void flapping_node_loses_reputation_and_placement(void **state)
{
    tu_ctl_start(&ctl, ctl_args);
    _cleanup_free_ char *flap = tu_market_node(&ctl, "mk-flap", NULL, "0.02");
    _cleanup_free_ char *good = tu_market_node(&ctl, "mk-good", NULL, "0.02");
    _cleanup_free_ char *key = tu_account(&ctl, "mk-rep", "tenant");

    /* Both up until both are measured. */
    int64_t deadline = mono_ms() + 60000;
    while (offer_rep(key, "mk-flap") < 0 || offer_rep(key, "mk-good") < 0) {
        if (mono_ms() > deadline)
            fail_msg("reputation never measured");
        beat(flap);
        beat(good);
        usleep(250000);
    }
    /* The flapping node goes silent for several heartbeat windows (the
     * honest one keeps beating), then comes back. */
    int64_t quiet_end = now_s() + 8;
    while (now_s() < quiet_end) {
        beat(good);
        usleep(250000);
    }
    deadline = mono_ms() + 60000;
    for (;;) {
        beat(flap);
        beat(good);
        int64_t f = offer_rep(key, "mk-flap"), g = offer_rep(key, "mk-good");
        if (f >= 0 && g >= 0 && f < g && f < 90 && g >= 90)
            break;
        if (mono_ms() > deadline)
            fail_msg("flapping node at %lld, honest at %lld", (long long)f,
                     (long long)g);
        usleep(250000);
    }
    /* nodeinfo shows it too. */
    json_auto_t *ni = tu_api(&ctl, ctl.admin_key, "GET", "/v1/nodes/mk-flap",
                             NULL, NULL);
    assert_true(json_is_integer(json_object_get(ni, "reputation")));
    assert_true(json_int(ni, "reputation", 100) < 90);
    json_auto_t *sorted = tu_api(&ctl, key, "GET", "/v1/offers?sort=reputation",
                                 NULL, NULL);
    assert_string_equal(json_str(json_array_get(json_object_get(sorted,
                        "offers"), 0), "node_name"), "mk-good");

    /* Same price: the reputation weight picks the honest node. */
    beat(flap);
    beat(good);
    json_auto_t *vm = tu_vm_post(&ctl, key, "mk-w", 1, NULL, 201);
    assert_string_equal(json_str(vm, "node_name"), "mk-good");

    /* min_reputation 90 leaves only the honest node. */
    json_auto_t *dry = tu_vm_post(&ctl, key, "mk-d", 1,
                                  "\"min_reputation\":90,\"dry_run\":true",
                                  200);
    assert_string_equal(json_str(dry, "node_name"), "mk-good");
    assert_int_equal(json_int(json_object_get(dry, "filtered"), "reputation",
                              0), 1);

    /* A VM that fails to start counts against the node that hosts it. */
    int64_t before = offer_rep(key, "mk-good");
    _cleanup_free_ char *st_body = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"error\",\"reason\":"
        "\"cannot start\"}]}", json_str(vm, "id"));
    json_decref(tu_api(&ctl, good, "POST", "/v1/agent/status", st_body, NULL));
    deadline = mono_ms() + 60000;
    while (offer_rep(key, "mk-good") >= before) {
        if (mono_ms() > deadline)
            fail_msg("a start failure left the node at %lld",
                     (long long)before);
        beat(flap);
        beat(good);
        usleep(250000);
    }
    tu_ctl_destroy(&ctl);
}

/* Node `cred` reports VM `id` in `state` (the reason the agent gives
 * when a domain it should run is shut off behind its back). */
static void report(const char *cred, const char *id, const char *state)
{
    _cleanup_free_ char *body = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"%s\"%s}]}", id, state,
        streq(state, "stopped") ? ",\"reason\":\"stopped outside fogfabric\""
                                : "");
    long code;
    json_decref(tu_api(&ctl, cred, "POST", "/v1/agent/status", body, &code));
    assert_int_equal(code, 200);
}

static int64_t node_evictions(const char *name)
{
    _cleanup_free_ char *path = xasprintf("/v1/nodes/%s", name);
    json_auto_t *ni = tu_api(&ctl, ctl.admin_key, "GET", path, NULL, NULL);
    return json_int(ni, "evictions", -1);
}

static void vm_power(const char *key, const char *name, const char *verb)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s/%s", name, verb);
    long code;
    json_decref(tu_api(&ctl, key, "POST", path, "{}", &code));
    assert_in_range(code, 200, 299);
}

static void evicting_node_loses_reputation(void **state)
{
    tu_ctl_start(&ctl, ctl_args);
    _cleanup_free_ char *ev = tu_market_node(&ctl, "mk-evict", NULL, "0.02");
    _cleanup_free_ char *key = tu_account(&ctl, "mk-evt", "tenant");
    /* Three VMs on the evicting node (the only one yet), all running. */
    json_auto_t *v1 = tu_vm_post(&ctl, key, "mk-e1", 1, NULL, 201);
    json_auto_t *v2 = tu_vm_post(&ctl, key, "mk-e2", 1, NULL, 201);
    json_auto_t *v3 = tu_vm_post(&ctl, key, "mk-e3", 1, NULL, 201);
    const char *id1 = json_str(v1, "id"), *id2 = json_str(v2, "id"),
               *id3 = json_str(v3, "id");
    assert_string_equal(json_str(v1, "node_name"), "mk-evict");
    assert_string_equal(json_str(v3, "node_name"), "mk-evict");
    report(ev, id1, "running");
    report(ev, id2, "running");
    report(ev, id3, "running");
    _cleanup_free_ char *stay = tu_market_node(&ctl, "mk-stay", NULL, "0.02");
    int64_t deadline = mono_ms() + 60000;
    while (offer_rep(key, "mk-evict") < 90 || offer_rep(key, "mk-stay") < 90) {
        if (mono_ms() > deadline)
            fail_msg("reputation never measured");
        beat(ev);
        beat(stay);
        usleep(250000);
    }
    assert_int_equal(node_evictions("mk-evict"), 0);

    /* The tenant stops mk-e2: the node stopping it is no eviction. */
    vm_power(key, "mk-e2", "stop");
    report(ev, id2, "stopped");
    assert_int_equal(node_evictions("mk-evict"), 0);
    vm_power(key, "mk-e2", "start");
    report(ev, id2, "running");
    /* Stopped and started again before the node reported: its report of
     * the stop it carried out is stale, not an eviction. */
    vm_power(key, "mk-e2", "stop");
    vm_power(key, "mk-e2", "start");
    report(ev, id2, "stopped");
    assert_int_equal(node_evictions("mk-evict"), 0);

    /* The node shuts mk-e1 off behind the tenant's back: one eviction;
     * reported again, still one. mk-e3 vanishes (the node would create it
     * again): a second. */
    report(ev, id1, "stopped");
    assert_int_equal(node_evictions("mk-evict"), 1);
    report(ev, id1, "stopped");
    assert_int_equal(node_evictions("mk-evict"), 1);
    report(ev, id3, "creating");
    assert_int_equal(node_evictions("mk-evict"), 2);
    json_auto_t *offers = tu_api(&ctl, key, "GET", "/v1/offers", NULL, NULL);
    assert_int_equal(json_int(tu_find(json_object_get(offers, "offers"),
                                      "node_name", "mk-evict"),
                              "evictions", -1), 2);

    /* Its reputation falls below the honest node's... */
    deadline = mono_ms() + 60000;
    for (;;) {
        beat(ev);
        beat(stay);
        int64_t e = offer_rep(key, "mk-evict"), g = offer_rep(key, "mk-stay");
        if (e >= 0 && e < 90 && g >= 90)
            break;
        if (mono_ms() > deadline)
            fail_msg("evicting node at %lld, honest at %lld", (long long)e,
                     (long long)g);
        usleep(250000);
    }
    /* ...and a tenant's min_reputation filters it out. */
    json_auto_t *dry = tu_vm_post(&ctl, key, "mk-e4", 1,
                                  "\"min_reputation\":90,\"dry_run\":true",
                                  200);
    assert_string_equal(json_str(dry, "node_name"), "mk-stay");
    assert_int_equal(json_int(json_object_get(dry, "filtered"), "reputation",
                              0), 1);
    tu_ctl_destroy(&ctl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(flapping_node_loses_reputation_and_placement),
        cmocka_unit_test(evicting_node_loses_reputation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
