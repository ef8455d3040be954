/* The controller's side of the mesh: every node's desired state lists
 * every other approved node as a WireGuard peer; a node that joins, moves
 * (reports another endpoint) or leaves reaches every peer's document at
 * once, waking parked long polls; the address the controller sees a node
 * at is used when the node reports none; the paths a node reports for
 * its relayed peers are kept per pair. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <time.h>

static struct tu_ctl ctl;

struct node {
    char *id, *cred;
    const char *name, *key, *endpoint;
};
static struct node nodes[3] = {
    { NULL, NULL, "mesh-a", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "192.0.2.1:51820" },
    { NULL, NULL, "mesh-b", "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=", "192.0.2.2:51820" },
    { NULL, NULL, "mesh-c", "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=", NULL },
};

static void join(struct node *n)
{
    long st;
    json_auto_t *t =
        tu_api(&ctl, ctl.admin_key, "POST", "/v1/join-tokens", "{}", &st);
    assert_int_equal(st, 201);
    _cleanup_free_ char *ep = n->endpoint ? xasprintf(",\"endpoint\":\"%s\"",
                                                      n->endpoint)
                                          : xstrdup("");
    _cleanup_free_ char *body = xasprintf(
        "{\"token\":\"%s\",\"name\":\"%s\",\"wg_public_key\":\"%s\"%s,"
        "\"inventory\":{\"vcpus\":2,\"memory_mib\":2048,\"disk_gib\":20,"
        "\"kvm\":false}}",
        json_str(t, "token"), n->name, n->key, ep);
    json_auto_t *reg =
        tu_api(&ctl, NULL, "POST", "/v1/agent/register", body, &st);
    assert_int_equal(st, 201);
    n->id = xstrdup(json_str(reg, "node_id"));
    n->cred = xstrdup(json_str(reg, "credential"));
}

static json_t *desired(struct node *n, json_int_t since, long wait)
{
    long st;
    _cleanup_free_ char *p =
        since < 0 ? xstrdup("/v1/agent/desired")
                  : xasprintf("/v1/agent/desired?since=%lld&wait=%ld",
                              (long long)since, wait);
    json_t *d = tu_api(&ctl, n->cred, "GET", p, NULL, &st);
    assert_int_equal(st, 200);
    return d;
}

/* The peer entry for node `of` in document d, or NULL. */
static json_t *peer(json_t *d, const struct node *of)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(d, "peers"), i, p)
    {
        if (streq(json_str(p, "node_id"), of->id))
            return p;
    }
    return NULL;
}

static json_int_t rev(json_t *d)
{
    return json_integer_value(json_object_get(d, "revision"));
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int setup(void **state)
{
    tu_ctl_start(&ctl, NULL);
    return 0;
}

static int teardown(void **state)
{
    for (size_t i = 0; i < ARRAY_SIZE(nodes); i++) {
        free(nodes[i].id);
        free(nodes[i].cred);
    }
    tu_ctl_destroy(&ctl);
    return 0;
}

static void peers_follow_joins_moves_and_leaves(void **state)
{
    join(&nodes[0]);
    join(&nodes[1]);
    json_auto_t *a0 = desired(&nodes[0], -1, 0);
    json_t *pb = peer(a0, &nodes[1]);
    assert_non_null(pb);
    assert_string_equal(json_str(pb, "public_key"), nodes[1].key);
    assert_string_equal(json_str(pb, "endpoint"), nodes[1].endpoint);
    const char *allowed = json_string_value(
        json_array_get(json_object_get(pb, "allowed_ips"), 0));
    assert_non_null(allowed);
    assert_non_null(strstr(allowed, "/32"));
    /* A node is never its own peer. */
    assert_null(peer(a0, &nodes[0]));

    /* A third joins while A is parked: A wakes with it as a peer, at the
     * address the controller saw it at (it reported none). */
    double t0 = now_s();
    join(&nodes[2]);
    json_auto_t *a1 = desired(&nodes[0], rev(a0), 20);
    assert_true(now_s() - t0 < 10);
    json_t *pc = peer(a1, &nodes[2]);
    assert_non_null(pc);
    assert_string_equal(json_str(pc, "endpoint"), "127.0.0.1:51820");

    /* B moves: its status reports a new endpoint; A learns it. */
    long st;
    json_auto_t *ok =
        tu_api(&ctl, nodes[1].cred, "POST", "/v1/agent/status",
               "{\"endpoint\":\"192.0.2.99:51820\",\"vms\":[]}", &st);
    assert_int_equal(st, 200);
    json_auto_t *a2 = desired(&nodes[0], rev(a1), 20);
    assert_true(rev(a2) > rev(a1));
    assert_string_equal(json_str(peer(a2, &nodes[1]), "endpoint"),
                        "192.0.2.99:51820");
    /* Reporting the same again changes nothing for the peers. */
    json_auto_t *ok2 =
        tu_api(&ctl, nodes[1].cred, "POST", "/v1/agent/status",
               "{\"endpoint\":\"192.0.2.99:51820\",\"vms\":[]}", &st);
    assert_int_equal(st, 200);
    json_auto_t *a3 = desired(&nodes[0], rev(a2), 1);
    assert_int_equal(rev(a3), rev(a2));

    /* C leaves: A and B drop it. */
    _cleanup_free_ char *p = xasprintf("/v1/nodes/%s", nodes[2].id);
    json_auto_t *gone = tu_api(&ctl, ctl.admin_key, "DELETE", p, NULL, &st);
    assert_int_equal(st, 204);
    json_auto_t *a4 = desired(&nodes[0], rev(a3), 20);
    assert_null(peer(a4, &nodes[2]));
    assert_non_null(peer(a4, &nodes[1]));
    json_auto_t *b4 = desired(&nodes[1], -1, 0);
    assert_null(peer(b4, &nodes[2]));
    assert_non_null(peer(b4, &nodes[0]));

    /* A hostile public address is refused, not stored. */
    json_auto_t *bad =
        tu_api(&ctl, nodes[1].cred, "POST", "/v1/agent/status",
               "{\"public_ip\":\"1.2.3.4; drop\",\"vms\":[]}", &st);
    assert_int_equal(st, 400);
}

/* B's post of its relayed peers' paths (mesh_paths). */
static void paths_post(const char *list, long want)
{
    long st;
    _cleanup_free_ char *body = xasprintf("{\"vms\":[],\"mesh_paths\":%s}",
                                          list);
    json_auto_t *ans = tu_api(&ctl, nodes[1].cred, "POST", "/v1/agent/status",
                              body, &st);
    assert_int_equal(st, want);
}

/* B's paths as the node view shows them. */
static json_t *paths_shown(void)
{
    long st;
    _cleanup_free_ char *p = xasprintf("/v1/nodes/%s", nodes[1].id);
    json_auto_t *o = tu_api(&ctl, ctl.admin_key, "GET", p, NULL, &st);
    assert_int_equal(st, 200);
    json_t *a = json_object_get(json_object_get(o, "reachability"),
                                "mesh_paths");
    assert_true(json_is_array(a));
    return json_incref(a);
}

/* How many events with this action are about B. */
static size_t events_of(const char *action)
{
    long st;
    json_auto_t *o = tu_api(&ctl, ctl.admin_key, "GET", "/v1/events?limit=200",
                            NULL, &st);
    assert_int_equal(st, 200);
    size_t i, n = 0;
    json_t *e;
    json_array_foreach(json_object_get(o, "items"), i, e)
        n += streq(json_str(e, "action"), action) &&
             streq(json_str(e, "target"), nodes[1].id);
    return n;
}

/* The paths a node reports for its relayed peers are kept per pair, only
 * for peers that are approved nodes other than itself; going direct and
 * leaving direct are events; a peer no longer listed is forgotten. */
static void reported_paths_are_kept_per_pair(void **state)
{
    (void)state;
    _cleanup_free_ char *list = xasprintf(
        "[{\"node_id\":\"%s\",\"path\":\"direct\",\"since\":100},"
        "{\"node_id\":\"%s\",\"path\":\"direct\",\"since\":100},"
        "{\"node_id\":\"%s\",\"path\":\"direct\",\"since\":100},"
        "{\"node_id\":\"00000000-0000-4000-8000-000000000001\","
        "\"path\":\"direct\",\"since\":100}]",
        nodes[0].id, nodes[1].id, nodes[2].id);
    paths_post(list, 200);
    json_auto_t *a = paths_shown();
    assert_int_equal(json_array_size(a), 1);
    json_t *p = json_array_get(a, 0);
    assert_string_equal(json_str(p, "peer"), "mesh-a");
    assert_string_equal(json_str(p, "node_id"), nodes[0].id);
    assert_string_equal(json_str(p, "path"), "direct");
    assert_int_equal(json_int(p, "since", 0), 100);
    assert_int_equal(events_of("node.mesh-direct"), 1);
    /* The same again: nothing new. */
    paths_post(list, 200);
    assert_int_equal(events_of("node.mesh-direct"), 1);
    /* Back to the relay (one event), then from UDP to TCP (none). */
    _cleanup_free_ char *udp = xasprintf(
        "[{\"node_id\":\"%s\",\"path\":\"relay-udp\",\"since\":200}]",
        nodes[0].id);
    _cleanup_free_ char *tcp = xasprintf(
        "[{\"node_id\":\"%s\",\"path\":\"relay-tcp\",\"since\":300}]",
        nodes[0].id);
    paths_post(udp, 200);
    paths_post(tcp, 200);
    json_auto_t *b = paths_shown();
    assert_string_equal(json_str(json_array_get(b, 0), "path"), "relay-tcp");
    assert_int_equal(json_int(json_array_get(b, 0), "since", 0), 300);
    assert_int_equal(events_of("node.mesh-relayed"), 1);
    /* A post without the member leaves them; an empty list clears them. */
    long st;
    json_auto_t *ok = tu_api(&ctl, nodes[1].cred, "POST", "/v1/agent/status",
                             "{\"vms\":[]}", &st);
    assert_int_equal(st, 200);
    json_auto_t *c = paths_shown();
    assert_int_equal(json_array_size(c), 1);
    paths_post("[]", 200);
    json_auto_t *d = paths_shown();
    assert_int_equal(json_array_size(d), 0);
    /* Malformed: refused whole, nothing kept. */
    _cleanup_free_ char *bad = xasprintf(
        "[{\"node_id\":\"%s\",\"path\":\"sideways\",\"since\":1}]",
        nodes[0].id);
    paths_post(bad, 400);
    paths_post("[{\"node_id\":\"'; DROP TABLE nodes; --\","
               "\"path\":\"direct\",\"since\":1}]", 400);
    json_auto_t *e = paths_shown();
    assert_int_equal(json_array_size(e), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(peers_follow_joins_moves_and_leaves),
        cmocka_unit_test(reported_paths_are_kept_per_pair),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
