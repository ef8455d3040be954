/* The controller's side of names inside tenant networks: each node's
 * desired document carries, for every tenant network it serves, the
 * tenant's DNS label and the names of all the network's VMs on any node
 * (sorted), each NIC the search domain; another tenant's VMs never appear;
 * a deleted VM's name goes, and the other node's revision moves, once
 * its node reports the domain gone. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentmsg.h"
#include "api/desired_delta.h"
#include "common/buf.h"
#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <string.h>

static struct tu_ctl ctl;
static char *team_key, *other_key;
static char *cred[2]; /* nodes dr-n1, dr-n2 */
static int web_node;  /* where the first test leaves VM web */

static int setup(void **state)
{
    tu_ctl_start(&ctl, NULL);
    team_key = tu_account(&ctl, "dr-team", "tenant");
    other_key = tu_account(&ctl, "dr-other", "tenant");
    cred[0] = tu_market_node(&ctl, "dr-n1", NULL, "1");
    cred[1] = tu_market_node(&ctl, "dr-n2", NULL, "1");
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    free(team_key);
    free(other_key);
    free(cred[0]);
    free(cred[1]);
    return 0;
}

/* tu_api that must answer `want`. */
static json_t *call(const char *key, const char *method, const char *path,
                    const char *body, long want)
{
    long st = 0;
    json_t *j = tu_api(&ctl, key, method, path, body, &st);
    if (st != want)
        fail_msg("%s %s: %ld, want %ld", method, path, st, want);
    return j;
}

/* As the agent asks: able to merge deltas, so the controller cuts each
 * document into parts (each network's VMs made once for all its nodes);
 * with no revision held, the answer is whole. Speaking today's contract,
 * the document carries the networks' VMs as AGENT_NET_VMS, and their
 * entries no names or MACs: the document as the agent reads it, with
 * the names and MACs it makes from them. */
static json_t *desired(int node)
{
    json_auto_t *raw = call(cred[node], "GET",
                            "/v1/agent/desired?wait=0&delta=1", NULL, 200);
    assert_true(json_is_array(json_object_get(raw, AGENT_NET_VMS)));
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(raw, "networks"), i, w) {
        assert_null(json_object_get(w, "records"));
        assert_null(json_object_get(w, "macs"));
    }
    return tu_desired_read(raw);
}

/* The MAC of the first NIC of VM `address` in node document d. */
static const char *mac_of(json_t *d, const char *address)
{
    size_t i;
    json_t *vm;
    json_array_foreach(json_object_get(d, "vms"), i, vm) {
        json_t *nic = json_array_get(json_object_get(vm, "nics"), 0);
        if (streq(json_str(nic, "address"), address))
            return json_str(nic, "mac");
    }
    return NULL;
}

/* The network entry of `d` with this CIDR (borrowed), or NULL. */
static json_t *network(json_t *d, const char *cidr)
{
    return tu_find(json_object_get(d, "networks"), "cidr", cidr);
}

/* Node index and first address of VM `name` of key's holder. */
static int vm_where(const char *key, const char *name, char **ret_addr)
{
    _cleanup_free_ char *path = xasprintf("/v1/vms/%s", name);
    json_auto_t *vm = call(key, "GET", path, NULL, 200);
    const char *node = json_str(vm, "node_name");
    assert_non_null(node);
    json_t *addrs = json_object_get(vm, "addresses");
    assert_int_equal(json_array_size(addrs), 1);
    *ret_addr = xstrdup(json_string_value(json_array_get(addrs, 0)));
    return streq(node, "dr-n2");
}

/* Records of `net` as "name=address;..." in their order. */
static char *records_text(json_t *net)
{
    struct buf b = BUF_INIT;
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(net, "records"), i, r)
        buf_printf(&b, "%s=%s;", json_str(r, "name"), json_str(r, "address"));
    return buf_steal(&b);
}

static void records_follow_the_network_on_every_node(void **state)
{
    json_decref(call(team_key, "POST", "/v1/networks",
                     "{\"name\":\"backend\",\"cidr\":\"10.77.0.0/24\"}", 201));
    json_decref(call(other_key, "POST", "/v1/networks",
                     "{\"name\":\"backend\",\"cidr\":\"10.78.0.0/24\"}", 201));
    const char *spread = "\"networks\":[\"backend\"],\"anti_affinity\":\"g\"";
    json_decref(tu_vm_post(&ctl, team_key, "web", 1, spread, 201));
    json_decref(tu_vm_post(&ctl, team_key, "db", 1, spread, 201));
    json_decref(tu_vm_post(&ctl, other_key, "secret", 1,
                           "\"networks\":[\"backend\"]", 201));

    _cleanup_free_ char *web_ip = NULL, *db_ip = NULL, *sec_ip = NULL;
    int web = vm_where(team_key, "web", &web_ip);
    web_node = web;
    int db = vm_where(team_key, "db", &db_ip);
    int sec = vm_where(other_key, "secret", &sec_ip);
    assert_int_not_equal(web, db); /* spread: the records cross nodes */

    _cleanup_free_ char *want = xasprintf("db=%s;web=%s;", db_ip, web_ip);
    for (int n = 0; n < 2; n++) {
        json_auto_t *d = desired(n);
        json_t *net = network(d, "10.77.0.0/24");
        assert_non_null(net);
        assert_string_equal(json_str(net, "dns_label"), "dr-team");
        _cleanup_free_ char *got = records_text(net);
        assert_string_equal(got, want);
        /* Every NIC of the team's network names its search domain. */
        size_t i, j;
        json_t *vm, *nic;
        int seen = 0;
        json_array_foreach(json_object_get(d, "vms"), i, vm)
            json_array_foreach(json_object_get(vm, "nics"), j, nic) {
                if (!json_str(nic, "address") ||
                    (!streq(json_str(nic, "address"), web_ip) &&
                     !streq(json_str(nic, "address"), db_ip)))
                    continue;
                assert_string_equal(json_str(nic, "dns_search"),
                                    "dr-team.internal");
                seen++;
            }
        assert_int_equal(seen, 1);
        /* The other tenant's network, where it is served, holds only its
         * own VM, under its own label. */
        json_t *o = network(d, "10.78.0.0/24");
        assert_true((o != NULL) == (n == sec));
        if (o) {
            assert_string_equal(json_str(o, "dns_label"), "dr-other");
            _cleanup_free_ char *og = records_text(o);
            _cleanup_free_ char *ow = xasprintf("secret=%s;", sec_ip);
            assert_string_equal(og, ow);
        }
    }

    /* Each node's remote MACs in the team's network: the other node's
     * VM, at that node's VTEP (its mesh address), never its own. */
    json_t *dn[2] = { desired(0), desired(1) };
    for (int n = 0; n < 2; n++) {
        json_t *macs = json_object_get(network(dn[n], "10.77.0.0/24"), "macs");
        json_t *other = dn[1 - n];
        const char *there = n == web ? db_ip : web_ip;
        assert_int_equal(json_array_size(macs), 1);
        json_t *m = json_array_get(macs, 0);
        assert_non_null(mac_of(other, there));
        assert_string_equal(json_str(m, "mac"), mac_of(other, there));
        assert_string_equal(json_str(m, "vtep"),
                            json_str(json_object_get(other, "mesh"), "address"));
        json_t *vteps = json_object_get(network(dn[n], "10.77.0.0/24"), "vteps");
        assert_int_equal(json_array_size(vteps), 1);
        assert_string_equal(json_string_value(json_array_get(vteps, 0)),
                            json_str(m, "vtep"));
    }
    json_decref(dn[0]);
    json_decref(dn[1]);

    /* A new VM of the network reaches each node as its one item: not the
     * networks again, nor any other VM of the network. */
    for (int n = 0; n < 2; n++) {
        json_auto_t *base = call(cred[n], "GET",
                                 "/v1/agent/desired?wait=0&delta=1", NULL, 200);
        char name[32];
        snprintf(name, sizeof(name), "cache%d", n);
        json_decref(tu_vm_post(&ctl, team_key, name, 1,
                               "\"networks\":[\"backend\"]", 201));
        _cleanup_free_ char *q = xasprintf(
            "/v1/agent/desired?since=%lld&wait=0&delta=1",
            (long long)json_int(base, "revision", -1));
        json_auto_t *d = call(cred[n], "GET", q, NULL, 200);
        assert_int_equal(json_int(d, DESIRED_DELTA_FROM, -1),
                         json_int(base, "revision", -2));
        assert_null(json_object_get(d, "networks"));
        json_t *items = json_object_get(d, AGENT_NET_VMS);
        assert_int_equal(json_array_size(items), 1);
        assert_string_equal(json_str(json_array_get(items, 0), "name"), name);
        assert_int_equal(json_array_size(json_object_get(
                             d, DESIRED_DELTA_REMOVED_NET_VMS)), 0);
        /* Merged into what the node holds, it is the whole document. */
        json_auto_t *merged = NULL;
        assert_int_equal(desired_delta_apply(base, d, &merged), 0);
        json_auto_t *now = call(cred[n], "GET", "/v1/agent/desired?wait=0",
                                NULL, 200);
        assert_true(json_equal(merged, now));
    }
    for (int n = 0; n < 2; n++) { /* gone once their nodes say so */
        _cleanup_free_ char *path = xasprintf("/v1/vms/cache%d", n);
        _cleanup_free_ char *addr = NULL;
        int on = vm_where(team_key, path + strlen("/v1/vms/"), &addr);
        _cleanup_free_ char *id = tu_api_field(&ctl, team_key, "GET", path,
                                               NULL, 200, "id");
        json_decref(call(team_key, "DELETE", path, NULL, 202));
        _cleanup_free_ char *gone = xasprintf(
            "{\"vms\":[{\"id\":\"%s\",\"state\":\"deleted\"}]}", id);
        json_decref(call(cred[on], "POST", "/v1/agent/status", gone, 200));
    }

    /* Deleting db changes web's node's document: db's name is gone. */
    json_auto_t *before = desired(web);
    json_int_t rev0 = json_integer_value(json_object_get(before, "revision"));
    _cleanup_free_ char *db_id = tu_api_field(&ctl, team_key, "GET",
                                              "/v1/vms/db", NULL, 200, "id");
    json_decref(call(team_key, "DELETE", "/v1/vms/db", NULL, 202));
    /* The deletion completes when db's node reports the domain gone. */
    _cleanup_free_ char *gone = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"deleted\"}]}", db_id);
    json_decref(call(cred[db], "POST", "/v1/agent/status", gone, 200));
    json_auto_t *after = desired(web);
    assert_true(json_integer_value(json_object_get(after, "revision")) > rev0);
    _cleanup_free_ char *left = records_text(network(after, "10.77.0.0/24"));
    _cleanup_free_ char *want2 = xasprintf("web=%s;", web_ip);
    assert_string_equal(left, want2);
}

/* node's status posted by an agent of contract `contract`. */
static void status_as(int node, int contract)
{
    _cleanup_free_ char *url = xasprintf("%s/v1/agent/status", ctl.url);
    _cleanup_free_ char *h = xasprintf("%s: %d", AGENT_CONTRACT_HEADER,
                                       contract);
    struct tu_resp r;
    long st = tu_http("POST", url, cred[node], ctl.ca, "{\"vms\":[]}", 10,
                      NULL, h, &r);
    tu_resp_clear(&r);
    assert_int_equal(st, 200);
}

/* The node's whole document as the controller sends it (delta=1). */
static json_t *raw(int node)
{
    return call(cred[node], "GET", "/v1/agent/desired?wait=0&delta=1", NULL,
                200);
}

/* An agent that goes back to a contract before AGENT_NET_VMS (a
 * downgrade), then forward again: each time the node's document moves
 * on, whole, in the form its agent takes. */
static void the_form_follows_the_agents_contract(void **state)
{
    (void)state;
    int n = web_node;
    json_auto_t *d0 = raw(n);
    json_t *w = network(d0, "10.77.0.0/24");
    assert_non_null(w);
    assert_null(json_object_get(w, "records"));
    status_as(n, AGENT_CONTRACT_NET_VMS - 1);
    json_auto_t *d1 = raw(n);
    assert_true(json_int(d1, "revision", -1) > json_int(d0, "revision", -1));
    assert_null(json_object_get(d1, AGENT_NET_VMS));
    _cleanup_free_ char *names = records_text(network(d1, "10.77.0.0/24"));
    assert_true(strstr(names, "web=") != NULL);
    assert_true(json_is_array(json_object_get(network(d1, "10.77.0.0/24"),
                                              "macs")));
    status_as(n, AGENT_CONTRACT);
    json_auto_t *d2 = raw(n);
    assert_true(json_int(d2, "revision", -1) > json_int(d1, "revision", -1));
    assert_true(json_is_array(json_object_get(d2, AGENT_NET_VMS)));
    assert_null(json_object_get(network(d2, "10.77.0.0/24"), "records"));
    /* Read as the agent reads it, the same names as the older form. */
    json_auto_t *as_read = tu_desired_read(d2);
    _cleanup_free_ char *names2 = records_text(network(as_read,
                                                       "10.77.0.0/24"));
    assert_string_equal(names, names2);
    assert_true(json_equal(json_object_get(network(as_read, "10.77.0.0/24"),
                                           "macs"),
                           json_object_get(network(d1, "10.77.0.0/24"),
                                           "macs")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(records_follow_the_network_on_every_node),
        cmocka_unit_test(the_form_follows_the_agents_contract),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
