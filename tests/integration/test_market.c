/* The market through the API of a real controller: a tenant sees offers
 * (and no node address, endpoint, key or credential), a dry run answers
 * the cheapest node and its price without creating anything, a VM is
 * never placed above its cap (it waits, naming the price filter), and a
 * provider's later price rise does not touch a placed VM's deal. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = { cmocka_unit_test(market) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
