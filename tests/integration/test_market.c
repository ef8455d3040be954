/* The market through the API of a real controller: a tenant sees offers
 * (and no node address, endpoint, key or credential), a dry run answers
 * the cheapest node and its price without creating anything, a VM is
 * never placed above its cap (it waits, naming the price filter), and a
 * provider's later price rise does not touch a placed VM's deal.
 * Availability windows: outside them a node takes no new VM (the pending
 * VM names the window filter) while its running VMs stay; a bad window is
 * refused naming the offending token. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <string.h>

static struct tu_ctl ctl;

static void market(void **state)
{
    tu_ctl_start(&ctl, NULL);
    _cleanup_free_ char *c1 = tu_market_node(
        &ctl, "of-cheap", "\"endpoint\":\"192.0.2.7:51820\"", "0.02");
    _cleanup_free_ char *c2 = tu_market_node(&ctl, "of-dear", NULL, "5");
    free(tu_api_field(&ctl, ctl.admin_key, "PUT", "/v1/nodes/of-cheap/market",
                      "{\"region\":\"eu\",\"labels\":{\"disk\":\"ssd\"}}",
                      200, NULL));
    free(tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                      "{\"name\":\"ten\",\"role\":\"tenant\"}", 201, NULL));
    _cleanup_free_ char *tkey = tu_api_field(&ctl, ctl.admin_key, "POST",
                                             "/v1/keys",
                                             "{\"account\":\"ten\"}", 201,
                                             "secret");
    /* A tenant sees both offers, and nothing that locates a node. */
    long st;
    json_auto_t *offers = tu_api(&ctl, tkey, "GET", "/v1/offers?sort=price",
                                 NULL, &st);
    assert_int_equal(st, 200);
    json_t *list = json_object_get(offers, "offers");
    if (json_array_size(list) != 2) fail_msg("offers: %s", json_dumps(offers, 0));
    json_t *first = json_array_get(list, 0);
    assert_string_equal(json_str(first, "node_name"), "of-cheap");
    assert_string_equal(json_str(first, "region"), "eu");
    assert_string_equal(json_str(json_object_get(first, "prices"),
                                 "vcpu_hour"), "0.02");
    _cleanup_free_ char *text = json_dumps(offers, 0);
    assert_null(strstr(text, "192.0.2.7"));
    assert_null(strstr(text, "endpoint"));
    assert_null(strstr(text, "key"));
    assert_null(strstr(text, "cred"));
    assert_null(strstr(text, "mesh"));
    json_auto_t *eu = tu_api(&ctl, tkey, "GET", "/v1/offers?label=disk=ssd",
                             NULL, &st);
    assert_int_equal(json_array_size(json_object_get(eu, "offers")), 1);

    /* Dry run: the cheap node at 2 x 0.02 an hour; nothing created. */
    json_auto_t *dry = tu_api(&ctl, tkey, "POST", "/v1/vms",
                              "{\"name\":\"d\",\"vcpus\":2,\"memory_mib\":128,"
                              "\"disk_gib\":1,\"image\":\"tiny\","
                              "\"allow_tcg\":true,\"dry_run\":true}", &st);
    assert_int_equal(st, 200);
    assert_string_equal(json_str(dry, "price_hour"), "0.04");
    json_auto_t *vms = tu_api(&ctl, tkey, "GET", "/v1/vms", NULL, &st);
    _cleanup_free_ char *vtext = json_dumps(vms, 0);
    assert_null(strstr(vtext, "\"d\""));

    /* Cap below every offer: pending, the price filter named. */
    json_auto_t *cheap = tu_api(&ctl, tkey, "POST", "/v1/vms",
                                "{\"name\":\"capped\",\"vcpus\":2,"
                                "\"memory_mib\":128,\"disk_gib\":1,\"image\":"
                                "\"tiny\",\"allow_tcg\":true,\"max_price\":"
                                "\"0.01\"}", &st);
    assert_int_equal(st, 201);
    assert_null(json_str(cheap, "node_id"));
    assert_non_null(strstr(json_str(cheap, "state_reason"), "price removed 2"));
    assert_int_equal(json_int(json_object_get(json_object_get(cheap,
                     "placement"), "filtered"), "price", 0), 2);

    /* Within the cap: the cheap node; a later rise keeps the deal. */
    json_auto_t *ok = tu_api(&ctl, tkey, "POST", "/v1/vms",
                             "{\"name\":\"ok\",\"vcpus\":2,\"memory_mib\":128,"
                             "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":"
                             "true,\"max_price\":\"1\"}", &st);
    assert_int_equal(st, 201);
    assert_string_equal(json_str(ok, "node_name"), "of-cheap");
    assert_string_equal(json_str(ok, "price_hour"), "0.04");
    free(tu_api_field(&ctl, ctl.admin_key, "PUT", "/v1/nodes/of-cheap/offer",
                      "{\"vcpu_hour\":\"9\"}", 200, NULL));
    json_auto_t *again = tu_api(&ctl, tkey, "GET", "/v1/vms/ok", NULL, &st);
    assert_string_equal(json_str(json_object_get(json_object_get(again,
                        "deal"), "prices"), "vcpu_hour"), "0.02");
    tu_ctl_destroy(&ctl);
}

static void windows_gate_new_placements(void **state)
{
    static const char *const days[] = { "mon", "tue", "wed", "thu", "fri",
                                        "sat", "sun" };
    tu_ctl_start(&ctl, NULL);
    _cleanup_free_ char *cred = tu_market_node(&ctl, "wn-one", NULL, "0.02");
    _cleanup_free_ char *key = tu_account(&ctl, "wn-ten", "tenant");
    json_auto_t *run = tu_vm_post(&ctl, key, "wn-run", 1, NULL, 201);
    assert_string_equal(json_str(run, "node_name"), "wn-one");

    /* A bad window is refused, naming what is wrong. */
    long st;
    json_auto_t *bad = tu_api(&ctl, ctl.admin_key, "PUT",
                              "/v1/nodes/wn-one/market",
                              "{\"windows\":[\"mon-fry 19:00-07:00\"]}", &st);
    assert_int_equal(st, 400);
    assert_non_null(strstr(json_str(bad, "detail"), "'mon-fry'"));
    json_auto_t *badtz = tu_api(&ctl, ctl.admin_key, "PUT",
                                "/v1/nodes/wn-one/market",
                                "{\"tz\":\"Mars/Olympus\"}", &st);
    assert_int_equal(st, 400);

    /* Open only the whole day after tomorrow (UTC): closed today. */
    int today = (int)((now_s() / 86400 + 3) % 7);
    _cleanup_free_ char *body = xasprintf(
        "{\"windows\":[\"%s 00:00-24:00\"],\"tz\":\"UTC\"}",
        days[(today + 2) % 7]);
    json_auto_t *set = tu_api(&ctl, ctl.admin_key, "PUT",
                              "/v1/nodes/wn-one/market", body, &st);
    assert_int_equal(st, 200);
    assert_int_equal(json_array_size(json_object_get(set, "windows")), 1);
    assert_string_equal(json_str(set, "tz"), "UTC");

    json_auto_t *wait = tu_vm_post(&ctl, key, "wn-wait", 1, NULL, 201);
    assert_true(json_is_null(json_object_get(wait, "node_id")));
    assert_int_equal(json_int(json_object_get(json_object_get(wait,
                     "placement"), "filtered"), "window", 0), 1);
    assert_non_null(strstr(json_str(wait, "state_reason"),
                           "window removed 1"));
    /* The running VM stays where it is. */
    json_auto_t *still = tu_api(&ctl, key, "GET", "/v1/vms/wn-run", NULL, &st);
    assert_string_equal(json_str(still, "node_name"), "wn-one");
    assert_string_equal(json_str(still, "desired_state"), "running");
    json_auto_t *ni = tu_api(&ctl, ctl.admin_key, "GET", "/v1/nodes/wn-one",
                             NULL, &st);
    assert_int_equal(json_array_size(json_object_get(ni, "windows")), 1);

    /* Open every day: the node takes new VMs again. */
    json_decref(tu_api(&ctl, cred, "POST", "/v1/agent/status", "{}", NULL));
    free(tu_api_field(&ctl, ctl.admin_key, "PUT", "/v1/nodes/wn-one/market",
                      "{\"windows\":[\"daily 00:00-24:00\"]}", 200, NULL));
    json_auto_t *now = tu_vm_post(&ctl, key, "wn-now", 1, NULL, 201);
    assert_string_equal(json_str(now, "node_name"), "wn-one");
    tu_ctl_destroy(&ctl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(market),
        cmocka_unit_test(windows_gate_new_placements),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
