/* Dual-stack tenant networks through the API: every network shows its
 * ULA /64 (cidr6) and gateway (prefix::1) next to its IPv4 range, each
 * network its own /64 of the controller's one /48, and a VM its IPv6
 * address (addresses6) from its IPv4 host number. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static struct tu_ctl ctl;
static char *key;
static char *cred;

static int setup(void **state)
{
    (void)state;
    tu_ctl_start(&ctl, NULL);
    key = tu_account(&ctl, "v6-team", "tenant");
    cred = tu_market_node(&ctl, "v6-n1", NULL, "1");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_ctl_destroy(&ctl);
    free(key);
    free(cred);
    return 0;
}

/* The 16 bytes of an IPv6 text (the part before any '/'). */
static void v6(const char *text, struct in6_addr *ret)
{
    assert_non_null(text);
    char head[INET6_ADDRSTRLEN] = "";
    snprintf(head, sizeof(head), "%.*s", (int)strcspn(text, "/"), text);
    if (inet_pton(AF_INET6, head, ret) != 1)
        fail_msg("not IPv6: %s", text);
}

static void networks_and_vms_are_dual_stack(void **state)
{
    (void)state;
    json_auto_t *a = tu_api_want(&ctl, key, "POST", "/v1/networks",
                          "{\"name\":\"back\",\"cidr\":\"10.61.0.0/16\"}", 201);
    json_auto_t *b = tu_api_want(&ctl, key, "POST", "/v1/networks",
                          "{\"name\":\"front\",\"cidr\":\"10.62.0.0/24\"}", 201);
    struct in6_addr pa, pb, ga, x;
    v6(json_str(a, "cidr6"), &pa);
    v6(json_str(b, "cidr6"), &pb);
    v6(json_str(a, "gateway6"), &ga);
    assert_non_null(strstr(json_str(a, "cidr6"), "::/64"));
    /* RFC 4193: fd00::/8, one /48 for both, distinct /64s. */
    assert_int_equal(pa.s6_addr[0], 0xfd);
    assert_memory_equal(pa.s6_addr, pb.s6_addr, 6);
    assert_memory_not_equal(pa.s6_addr, pb.s6_addr, 8);
    /* gateway: prefix::1 */
    x = pa;
    x.s6_addr[15] = 1;
    assert_memory_equal(&x, &ga, 16);
    /* GET shows the same. */
    json_auto_t *g = tu_api_want(&ctl, key, "GET", "/v1/networks/back", NULL, 200);
    assert_string_equal(json_str(g, "cidr6"), json_str(a, "cidr6"));

    json_decref(tu_vm_post(&ctl, key, "dual", 1, "\"networks\":[\"back\"]",
                           201));
    json_auto_t *vm = tu_api_want(&ctl, key, "GET", "/v1/vms/dual", NULL, 200);
    json_t *a4 = json_object_get(vm, "addresses");
    json_t *a6 = json_object_get(vm, "addresses6");
    assert_int_equal(json_array_size(a4), 1);
    assert_int_equal(json_array_size(a6), 1);
    struct in_addr ip4;
    assert_int_equal(inet_pton(AF_INET, json_string_value(json_array_get(a4, 0)),
                               &ip4), 1);
    uint32_t host = ntohl(ip4.s_addr) - ((10u << 24) | (61u << 16));
    struct in6_addr got;
    v6(json_string_value(json_array_get(a6, 0)), &got);
    x = pa;
    x.s6_addr[14] = (uint8_t)(host >> 8);
    x.s6_addr[15] = (uint8_t)host;
    assert_memory_equal(&x, &got, 16);

    /* The node's desired document carries them: the network's /64 and
     * gateway, the NIC's address and gateway, the name's AAAA. */
    json_auto_t *sent = tu_api_want(&ctl, cred, "GET",
                                    "/v1/agent/desired?wait=0", NULL, 200);
    json_auto_t *d = tu_desired_read(sent);
    json_t *net = tu_find(json_object_get(d, "networks"), "cidr",
                          "10.61.0.0/16");
    assert_non_null(net);
    assert_string_equal(json_str(net, "cidr6"), json_str(a, "cidr6"));
    assert_string_equal(json_str(net, "gateway6"), json_str(a, "gateway6"));
    json_t *rec = tu_find(json_object_get(net, "records"), "name", "dual");
    assert_non_null(rec);
    const char *want6 = json_string_value(json_array_get(a6, 0));
    assert_string_equal(json_str(rec, "address6"), want6);
    json_t *dvm = tu_find(json_object_get(d, "vms"), "name", "dual");
    assert_non_null(dvm);
    json_t *nic = json_array_get(json_object_get(dvm, "nics"), 0);
    assert_string_equal(json_str(nic, "address6"), want6);
    assert_string_equal(json_str(nic, "gateway6"), json_str(a, "gateway6"));
}

/* The node reports its global IPv6 address; a published port shows it
 * next to the IPv4 one. Anything but a global IPv6 address is refused. */
static void published_ports_show_the_nodes_ipv6_address(void **state)
{
    (void)state;
    static const char *const bad[] = { "fd00::1", "::1", "fe80::1", "ff02::1",
                                       "1.2.3.4", "::ffff:1.2.3.4",
                                       "2001:db8::1; drop", "" };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        _cleanup_free_ char *body = xasprintf("{\"public_ip6\":\"%s\"}",
                                              bad[i]);
        json_auto_t *p = tu_api_want(&ctl, cred, "POST", "/v1/agent/status",
                                     body, 400);
        assert_string_equal(json_str(p, "field"), "public_ip6");
    }
    json_decref(tu_api_want(&ctl, key, "POST", "/v1/vms/dual/ports",
                            "{\"proto\":\"udp\",\"vm_port\":27015}", 201));
    /* Not reported yet: IPv4 only. */
    json_auto_t *l0 = tu_api_want(&ctl, key, "GET", "/v1/vms/dual/ports", NULL,
                                  200);
    json_t *p0 = json_array_get(json_object_get(l0, "items"), 0);
    assert_non_null(p0);
    assert_null(json_object_get(p0, "public_address6"));
    json_decref(tu_api_want(&ctl, cred, "POST", "/v1/agent/status",
                            "{\"public_ip6\":\"2001:db8::5\"}", 200));
    json_auto_t *l = tu_api_want(&ctl, key, "GET", "/v1/vms/dual/ports", NULL,
                                 200);
    json_t *p = json_array_get(json_object_get(l, "items"), 0);
    _cleanup_free_ char *want = xasprintf(
        "[2001:db8::5]:%lld",
        (long long)json_integer_value(json_object_get(p, "host_port")));
    assert_string_equal(json_str(p, "public_address6"), want);
    json_auto_t *vm = tu_api_want(&ctl, key, "GET", "/v1/vms/dual", NULL, 200);
    assert_string_equal(json_str(vm, "public_ip6"), "2001:db8::5");
    /* A node that stops reporting one (it lost it) shows none again. */
    json_decref(tu_api_want(&ctl, cred, "POST", "/v1/agent/status", "{}", 200));
    json_auto_t *l2 = tu_api_want(&ctl, key, "GET", "/v1/vms/dual/ports", NULL,
                                  200);
    assert_null(json_object_get(json_array_get(json_object_get(l2, "items"), 0),
                                "public_address6"));
    json_auto_t *vm2 = tu_api_want(&ctl, key, "GET", "/v1/vms/dual", NULL, 200);
    assert_null(json_object_get(vm2, "public_ip6"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(networks_and_vms_are_dual_stack),
        cmocka_unit_test(published_ports_show_the_nodes_ipv6_address),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
