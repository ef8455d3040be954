/* fogctl and the market against a real controller: a tenant lists offers
 * (table and --json, filtered by region, label and price, sorted by
 * price), a dry run names the offer and its price per hour without
 * creating, create's constraints reach the VM (a cap below every offer
 * keeps it pending), and malformed flags are usage errors (exit 2). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <string.h>

static struct tu_ctl ctl;

static void tenant_chooses_offers_with_fogctl(void **state)
{
    tu_ctl_start(&ctl, NULL);
    _cleanup_free_ char *c1 = tu_market_node(&ctl, "mk-cheap", NULL, "0.02");
    _cleanup_free_ char *c2 = tu_market_node(&ctl, "mk-dear", NULL, "5");
    free(tu_api_field(&ctl, ctl.admin_key, "PUT", "/v1/nodes/mk-dear/market",
                      "{\"region\":\"eu\",\"labels\":{\"disk\":\"ssd\"}}",
                      200, NULL));
    _cleanup_free_ char *key = tu_account(&ctl, "mk-ten", "tenant");
    int st;

    _cleanup_free_ char *all = tu_fogctl(&ctl, key, &st, "offers", "--sort",
                                         "price", NULL);
    assert_int_equal(st, 0);
    char *cheap = strstr(all, "mk-cheap"), *dear = strstr(all, "mk-dear");
    assert_non_null(cheap);
    assert_non_null(dear);
    assert_true(cheap < dear);
    assert_non_null(strstr(all, "REPUTATION"));
    assert_non_null(strstr(all, "disk=ssd"));

    _cleanup_free_ char *ssd = tu_fogctl(&ctl, key, &st, "offers", "--label",
                                         "disk=ssd", "--json", NULL);
    assert_int_equal(st, 0);
    json_auto_t *js = json_loads(ssd, 0, NULL);
    assert_int_equal(json_array_size(js), 1);
    assert_string_equal(json_str(json_array_get(js, 0), "node_name"),
                        "mk-dear");
    _cleanup_free_ char *eu = tu_fogctl(&ctl, key, &st, "offers", "--region",
                                        "eu", NULL);
    assert_null(strstr(eu, "mk-cheap"));
    assert_non_null(strstr(eu, "mk-dear"));
    _cleanup_free_ char *lo = tu_fogctl(&ctl, key, &st, "offers",
                                        "--max-price", "1", NULL);
    assert_non_null(strstr(lo, "mk-cheap"));
    assert_null(strstr(lo, "mk-dear"));
    _cleanup_free_ char *gpu = tu_fogctl(&ctl, key, &st, "offers", "--gpu",
                                         "A100", "--json", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(gpu, "[]"));
    /* A malformed GPU selector is the hub's 400, and fogctl fails. */
    tu_run_with_stderr = true;
    _cleanup_free_ char *badgpu = tu_fogctl(&ctl, key, &st, "offers", "--gpu",
                                            "A100:x/y", NULL);
    tu_run_with_stderr = false;
    assert_int_not_equal(st, 0);
    assert_non_null(strstr(badgpu, "gpu"));

    /* A dry run names the cheap node and 2 x 0.02 an hour; nothing made. */
    _cleanup_free_ char *dry = tu_fogctl(
        &ctl, key, &st, "create", "d", "--cpus", "2", "--memory", "128M",
        "--disk", "1G", "--image", "tiny", "--allow-tcg", "--dry-run", NULL);
    assert_int_equal(st, 0);
    assert_non_null(strstr(dry, "mk-cheap"));
    assert_non_null(strstr(dry, "0.04 per hour"));
    _cleanup_free_ char *none = tu_fogctl(&ctl, key, &st, "list", "--all",
                                          "--name", NULL);
    assert_null(strstr(none, "d\n"));
    /* In region eu only the dear node; under a cap of 1 none: exit 1. */
    _cleanup_free_ char *eud = tu_fogctl(
        &ctl, key, &st, "create", "d", "--cpus", "2", "--memory", "128M",
        "--disk", "1G", "--image", "tiny", "--allow-tcg", "--region", "eu",
        "--max-price", "1", "--dry-run", NULL);
    assert_int_equal(st, 1);

    /* The constraints reach the VM: capped below every offer, it waits. */
    _cleanup_free_ char *cr = tu_fogctl(
        &ctl, key, &st, "create", "w", "--cpus", "2", "--memory", "128M",
        "--disk", "1G", "--image", "tiny", "--allow-tcg", "--max-price",
        "0.01", "--label", "disk=ssd", "--anti-affinity", "web",
        "--min-reputation", "0", NULL);
    assert_int_equal(st, 0);
    json_auto_t *vm = tu_api(&ctl, key, "GET", "/v1/vms/w", NULL, NULL);
    assert_string_equal(json_str(vm, "state"), "pending");
    assert_string_equal(json_str(vm, "max_price"), "0.01");
    assert_string_equal(json_str(vm, "anti_affinity"), "web");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(vm, "labels"), 0)), "disk=ssd");

    _cleanup_free_ char *b1 = tu_fogctl(&ctl, key, &st, "create", "x",
                                        "--template", "t", "--label", "ssd",
                                        NULL);
    assert_int_equal(st, 2);
    _cleanup_free_ char *b2 = tu_fogctl(&ctl, key, &st, "create", "x",
                                        "--template", "t", "--min-reputation",
                                        "101", NULL);
    assert_int_equal(st, 2);
    _cleanup_free_ char *b3 = tu_fogctl(&ctl, key, &st, "offers", "--sort",
                                        "name", NULL);
    assert_int_equal(st, 2);
    tu_ctl_destroy(&ctl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tenant_chooses_offers_with_fogctl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
