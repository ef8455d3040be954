/* The hub defends itself: tenants' network ranges only from the allowed
 * pools, per-tenant quotas (also under parallel creates), unapproved nodes
 * learn nothing of their peers, node capacity capped at what an admin
 * approved, node addresses and endpoints checked, and per-address
 * connection and request limits answered with 429 and Retry-After. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentproto.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "tests/testutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

static struct tu_ctl ctl;
static struct tu_ctl lim; /* a second controller with tight limits */
static char *alice_key, *bob_key, *carol_key, *prov_key;
static const char *const ctl_args[] = {
    "--quota-networks", "3", "--quota-vms", "3", "--quota-ports", "4",
    "--quota-images", "2", "--quota-ssh-keys", "2", "--quota-api-keys", "2",
    NULL,
};

/* The last answer of call() (kept for checks after a create helper).
 * Racing threads call it too: the swap is locked, or two of them drop the
 * same answer and lose another. */
static json_t *last;
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;

static json_t *call(const char *key, const char *method, const char *path,
                    const char *body, long *st)
{
    json_t *j = tu_api(&ctl, key, method, path, body, st);
    pthread_mutex_lock(&last_lock);
    json_decref(last);
    last = json_incref(j);
    pthread_mutex_unlock(&last_lock);
    return j;
}

/* A new account of role with one API key; the key's secret. */
static char *account(const char *name, const char *role)
{
    long st;
    _cleanup_free_ char *b = xasprintf("{\"name\":\"%s\",\"role\":\"%s\"}",
                                       name, role);
    json_decref(call(ctl.admin_key, "POST", "/v1/accounts", b, &st));
    assert_int_equal(st, 201);
    _cleanup_free_ char *kb = xasprintf("{\"account\":\"%s\"}", name);
    json_auto_t *k = call(ctl.admin_key, "POST", "/v1/keys", kb, &st);
    assert_int_equal(st, 201);
    return xstrdup(json_str(k, "secret"));
}

static int setup(void **state)
{
    tu_ctl_start(&ctl, ctl_args);
    alice_key = account("alice", "tenant");
    bob_key = account("bob", "tenant");
    carol_key = account("carol", "tenant");
    prov_key = account("prov", "provider");
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    if (lim.dir) /* a test stopped halfway */
        tu_ctl_destroy(&lim);
    free(alice_key);
    free(bob_key);
    free(carol_key);
    free(prov_key);
    return 0;
}

/* The problem's type ends in slug and names field (when not NULL). */
static void assert_problem(json_t *j, long st, long want, const char *slug,
                           const char *field)
{
    if (st != want)
        fprintf(stderr, "got %ld: %s\n", st, json_str(j, "detail"));
    assert_int_equal(st, want);
    _cleanup_free_ char *type = xasprintf("urn:fog:problem:%s", slug);
    assert_string_equal(json_str(j, "type"), type);
    assert_non_null(json_str(j, "detail"));
    if (field)
        assert_string_equal(json_str(j, "field"), field);
}

static long net_create(const char *key, const char *name, const char *cidr,
                       json_t **ret)
{
    long st;
    _cleanup_free_ char *b = xasprintf("{\"name\":\"%s\",\"cidr\":\"%s\"}",
                                       name, cidr);
    json_t *j = call(key, "POST", "/v1/networks", b, &st);
    if (ret)
        *ret = j;
    else
        json_decref(j);
    return st;
}

static void hostile_cidrs_are_refused_and_pool_cidrs_accepted(void **state)
{
    static const char *const hostile[] = {
        "100.96.0.0/16",  /* the mesh */
        "127.0.0.0/16",   "169.254.0.0/16", "192.168.1.0/24",
        "224.0.0.0/16",   "0.0.0.0/16",     "8.8.0.0/16",
        "10.128.0.0/16",  /* where default networks live */
        "10.0.0.0/8",     "10.1.0.0/30",    "10.1.0.1/24",
        "172.32.0.0/16",  "junk",
    };
    for (size_t i = 0; i < ARRAY_SIZE(hostile); i++) {
        json_t *j;
        _cleanup_free_ char *name = xasprintf("bad%zu", i);
        long st = net_create(alice_key, name, hostile[i], &j);
        if (st != 400 && st != 409)
            fprintf(stderr, "%s accepted: %ld\n", hostile[i], st);
        assert_true(st == 400 || st == 409);
        assert_true(startswith(json_str(j, "type"), "urn:fog:problem:"));
        assert_string_equal(json_str(j, "field"), "cidr");
        json_decref(j);
    }
    json_t *j;
    assert_int_equal(net_create(alice_key, "bad-mesh", "100.96.0.0/16", &j),
                     409);
    assert_non_null(strstr(json_str(j, "detail"), "mesh"));
    json_decref(j);

    assert_int_equal(net_create(alice_key, "a1", "10.1.0.0/24", NULL), 201);
    assert_int_equal(net_create(alice_key, "a2", "172.16.0.0/16", NULL), 201);
    assert_int_equal(net_create(alice_key, "a3", "10.127.255.248/29", NULL),
                     201);
    long st;
    json_decref(call(alice_key, "DELETE", "/v1/networks/a2", NULL, &st));
    assert_int_equal(st, 204);
}

/* Creators of one object of a kind as key: the HTTP status. */
typedef long (*create_fn)(const char *key, int i);
static int net_seq;

static long make_net(const char *key, int i)
{
    _cleanup_free_ char *name = xasprintf("q%d", i);
    int n = net_seq++;
    _cleanup_free_ char *cidr = xasprintf("10.%d.%d.0/24", 20 + n / 250,
                                          n % 250);
    return net_create(key, name, cidr, NULL);
}

/* POST a body made from fmt to path as key: the HTTP status. */
static long post(const char *key, const char *path, const char *fmt, ...)
    _printf_(3, 4);
static long post(const char *key, const char *path, const char *fmt, ...)
{
    va_list ap;
    char *b;
    long st;
    va_start(ap, fmt);
    if (vasprintf(&b, fmt, ap) < 0)
        abort();
    va_end(ap);
    json_decref(call(key, "POST", path, b, &st));
    free(b);
    return st;
}

static long make_vm(const char *key, int i)
{
    return post(key, "/v1/vms",
                "{\"name\":\"vm%d\",\"vcpus\":1,\"memory_mib\":128,"
                "\"disk_gib\":1,\"image\":\"tiny\",\"allow_tcg\":true,"
                "\"power_state\":\"stopped\"}", i);
}

static long make_image(const char *key, int i)
{
    return post(key, "/v1/images", "{\"name\":\"img%d\"}", i);
}

static long make_sshkey(const char *key, int i)
{
    return post(key, "/v1/ssh-keys",
                "{\"name\":\"k%d\",\"public_key\":\"ssh-ed25519 "
                "AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                "AAAAAAA k%d\"}", i, i);
}

static long make_apikey(const char *key, int i)
{
    return post(key, "/v1/keys", "{\"description\":\"k%d\"}", i);
}

/* Fill bob's quota of a kind (he holds `already`), then see the next
 * create refused with a 403 that names the quota, its limit and use. */
static void fill_and_refuse(create_fn make, const char *quota, int limit,
                            int already)
{
    for (int i = already; i < limit; i++)
        assert_int_equal(make(bob_key, 100 + i), 201);
    long st = make(bob_key, 999);
    assert_problem(last, st, 403, "quota-exceeded", quota);
    assert_string_equal(json_str(last, "quota"), quota);
    assert_int_equal(json_int(last, "limit", -1), limit);
    assert_int_equal(json_int(last, "used", -1), limit);
    json_auto_t *q = call(bob_key, "GET", "/v1/accounts/bob/quotas", NULL, &st);
    assert_int_equal(st, 200);
    json_t *e = json_object_get(json_object_get(q, "quotas"), quota);
    assert_int_equal(json_int(e, "used", -1), limit);
    assert_int_equal(json_int(e, "limit", -1), limit);
}

static void quotas_refuse_with_403_naming_the_quota(void **state)
{
    fill_and_refuse(make_net, "networks", 3, 0);
    fill_and_refuse(make_vm, "vms", 3, 0);
    fill_and_refuse(make_image, "images", 2, 0);
    fill_and_refuse(make_sshkey, "ssh_keys", 2, 0);
    fill_and_refuse(make_apikey, "api_keys", 2, 1); /* his first key */

    /* Another tenant is unaffected by bob's use (alice holds a1, a3). */
    long st;
    assert_int_equal(make_vm(alice_key, 1), 201);
    assert_int_equal(make_image(alice_key, 1), 201);
    assert_int_equal(make_sshkey(alice_key, 1), 201);
    assert_int_equal(make_apikey(alice_key, 1), 201);
    assert_int_equal(net_create(alice_key, "a4", "10.2.0.0/24", NULL), 201);

    /* Published ports: alice's VM takes 4, a fifth is refused, and so is
     * a new VM asking for one more. */
    for (int p = 1; p <= 4; p++) {
        _cleanup_free_ char *b = xasprintf("{\"proto\":\"tcp\",\"vm_port\":%d}",
                                           p);
        json_decref(call(alice_key, "POST", "/v1/vms/vm1/ports", b, &st));
        assert_int_equal(st, 201);
    }
    json_auto_t *pj = call(alice_key, "POST", "/v1/vms/vm1/ports",
                           "{\"proto\":\"udp\",\"vm_port\":9}", &st);
    assert_problem(pj, st, 403, "quota-exceeded", "ports");
    assert_int_equal(json_int(pj, "limit", -1), 4);
    assert_int_equal(json_int(pj, "used", -1), 4);
    json_auto_t *vj = call(alice_key, "POST", "/v1/vms",
                           "{\"name\":\"vm2\",\"vcpus\":1,\"memory_mib\":128,"
                           "\"disk_gib\":1,\"image\":\"tiny\",\"ports\":["
                           "{\"proto\":\"tcp\",\"vm_port\":80}]}", &st);
    assert_problem(vj, st, 403, "quota-exceeded", "ports");

    /* Only an admin sets limits; bob's raised limit lets him on. */
    json_decref(call(bob_key, "PUT", "/v1/accounts/bob/quotas",
                     "{\"vms\":10}", &st));
    assert_int_equal(st, 403);
    json_decref(call(ctl.admin_key, "PUT", "/v1/accounts/bob/quotas",
                     "{\"vms\":\"x\"}", &st));
    assert_int_equal(st, 400);
    json_decref(call(ctl.admin_key, "PUT", "/v1/accounts/bob/quotas",
                     "{\"cpus\":4}", &st));
    assert_int_equal(st, 400);
    json_auto_t *q = call(ctl.admin_key, "PUT", "/v1/accounts/bob/quotas",
                          "{\"vms\":4}", &st);
    assert_int_equal(st, 200);
    json_t *vq = json_object_get(json_object_get(q, "quotas"), "vms");
    assert_int_equal(json_int(vq, "limit", 0), 4);
    assert_false(json_bool(vq, "default", true));
    assert_int_equal(make_vm(bob_key, 200), 201);
    assert_int_equal(make_vm(bob_key, 201), 403);
    /* null puts the default back */
    json_decref(call(ctl.admin_key, "PUT", "/v1/accounts/bob/quotas",
                     "{\"vms\":null}", &st));
    assert_int_equal(st, 200);
    json_auto_t *q2 = call(bob_key, "GET", "/v1/accounts/bob/quotas", NULL,
                           &st);
    assert_int_equal(json_int(json_object_get(json_object_get(q2, "quotas"),
                                              "vms"), "limit", 0), 3);

    /* The same through fogctl: an admin sets, the tenant reads. */
    int fst;
    _cleanup_free_ char *out = tu_fogctl(&ctl, ctl.admin_key, &fst,
                                         "quota-set", "bob", "images=5",
                                         "ports=none", NULL);
    assert_int_equal(fst, 0);
    _cleanup_free_ char *shown = tu_fogctl(&ctl, bob_key, &fst, "quota", "bob",
                                           "--json", NULL);
    assert_int_equal(fst, 0);
    json_auto_t *fj = json_loads(shown, 0, NULL);
    json_t *fq = json_object_get(fj, "quotas");
    assert_int_equal(json_int(json_object_get(fq, "images"), "limit", 0), 5);
    assert_int_equal(json_int(json_object_get(fq, "ports"), "limit", 0), -1);
    free(tu_fogctl(&ctl, ctl.admin_key, &fst, "quota-set", "bob", "vms=lots",
                   NULL));
    assert_int_equal(fst, 2);
    free(tu_fogctl(&ctl, bob_key, &fst, "quota-set", "bob", "vms=9", NULL));
    assert_int_equal(fst, 1);
}

struct racer {
    create_fn make;
    int i;
    long st;
};

static void *race(void *p)
{
    struct racer *r = p;
    r->st = r->make(carol_key, r->i);
    return NULL;
}

/* Parallel creates beyond the quota: exactly the limit succeed. */
static void parallel_creates_never_exceed_the_quota(void **state)
{
    create_fn kinds[] = { make_net, make_vm, make_image };
    const char *lists[] = { "/v1/networks", "/v1/vms", "/v1/images" };
    int limits[] = { 3, 3, 2 };
    enum { N = 8 };
    for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
        struct racer rs[N];
        pthread_t th[N];
        for (int i = 0; i < N; i++) {
            rs[i] = (struct racer){ kinds[k], 300 + i, 0 };
            assert_int_equal(pthread_create(&th[i], NULL, race, &rs[i]), 0);
        }
        int ok = 0, refused = 0;
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            ok += rs[i].st == 201;
            refused += rs[i].st == 403;
        }
        assert_int_equal(ok, limits[k]);
        assert_int_equal(refused, N - limits[k]);
        long st;
        json_auto_t *l = call(carol_key, "GET", lists[k], NULL, &st);
        assert_int_equal(json_array_size(json_object_get(l, "items")),
                         (size_t)limits[k]);
    }
}

static json_t *desired(const char *cred)
{
    long st;
    json_t *d = call(cred, "GET", "/v1/agent/desired?wait=0", NULL, &st);
    assert_int_equal(st, 200);
    return d;
}

static const char *const key_a = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
static const char *const key_b = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
static char *pend_id, *pend_cred, *ok_id, *ok_cred;

static void unapproved_node_learns_nothing_of_its_peers(void **state)
{
    _cleanup_free_ char *fa = xasprintf(
        "\"wg_public_key\":\"%s\",\"endpoint\":\"198.51.100.1:51820\"", key_a);
    _cleanup_free_ char *fb = xasprintf(
        "\"wg_public_key\":\"%s\",\"endpoint\":\"198.51.100.2:51820\"", key_b);
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "gd-ok", fa, &ok_id,
                                  &ok_cred), 201);
    assert_int_equal(tu_node_join(&ctl, prov_key, "gd-pend", fb, &pend_id,
                                  &pend_cred), 201);
    /* Before either is seen online: they take only this test's image, not
     * the VMs left pending by the quota tests. */
    const char *ids[] = { ok_id, pend_id };
    for (size_t i = 0; i < ARRAY_SIZE(ids); i++) {
        long st;
        _cleanup_free_ char *p = xasprintf("/v1/nodes/%s/policy", ids[i]);
        json_decref(call(ctl.admin_key, "PUT", p, "{\"images\":[\"gd-img\"]}",
                         &st));
        assert_int_equal(st, 200);
    }
    json_auto_t *d = desired(pend_cred);
    _cleanup_free_ char *text = json_dumps(d, JSON_COMPACT);
    assert_null(strstr(text, key_a));
    assert_null(strstr(text, "198.51.100.1"));
    assert_null(strstr(text, ok_id));
    assert_int_equal(json_array_size(json_object_get(d, "peers")), 0);
    assert_int_equal(json_array_size(json_object_get(d, "vms")), 0);
    assert_false(json_bool(d, "approved", true));
    /* nor does the approved one hear of it */
    json_auto_t *od = desired(ok_cred);
    _cleanup_free_ char *otext = json_dumps(od, JSON_COMPACT);
    assert_null(strstr(otext, key_b));

    /* Approved (with the capacity it reported), it sees its peer. */
    long st;
    int fst;
    free(tu_fogctl(&ctl, ctl.admin_key, &fst, "node-approve", pend_id,
                   "--cpus", "many", NULL));
    assert_int_equal(fst, 2);
    free(tu_fogctl(&ctl, ctl.admin_key, &fst, "node-approve", pend_id,
                   "--cpus", "2", "--memory-mib", "2048", "--disk-gib", "20",
                   NULL));
    assert_int_equal(fst, 0);
    _cleanup_free_ char *p = xasprintf("/v1/nodes/%s", pend_id);
    json_auto_t *n = call(ctl.admin_key, "GET", p, NULL, &st);
    assert_int_equal(st, 200);
    assert_true(json_bool(n, "approved", false));
    assert_int_equal(json_int(json_object_get(n, "approved_capacity"),
                              "vcpus", 0), 2);
    assert_int_equal(json_int(json_object_get(n, "capacity"), "vcpus", 0), 2);
    json_auto_t *d2 = desired(pend_cred);
    _cleanup_free_ char *text2 = json_dumps(d2, JSON_COMPACT);
    assert_non_null(strstr(text2, key_a));
    /* An endpoint stored before the checks existed is not handed out. */
    tu_sql(&ctl, "UPDATE nodes SET endpoint = '127.0.0.1:22' WHERE id = '%s'",
           ok_id);
    json_auto_t *d3 = desired(pend_cred);
    _cleanup_free_ char *text3 = json_dumps(d3, JSON_COMPACT);
    assert_non_null(strstr(text3, key_a));
    assert_null(strstr(text3, "127.0.0.1:22\""));

    /* Only the clamped node is left for the scheduler tests below. */
    _cleanup_free_ char *okp = xasprintf("/v1/nodes/%s", ok_id);
    json_decref(call(ctl.admin_key, "DELETE", okp, NULL, &st));
    assert_int_equal(st, 204);
}

static long status(const char *cred, const char *body)
{
    long st;
    json_decref(call(cred, "POST", "/v1/agent/status", body, &st));
    return st;
}

static void inflated_capacity_is_clamped_and_not_scheduled(void **state)
{
    /* Past any sane machine: refused outright. */
    assert_int_equal(status(pend_cred, "{\"inventory\":{\"vcpus\":4096}}"),
                     400);
    assert_int_equal(status(pend_cred, "{\"inventory\":{\"memory_mib\":"
                                       "4503599627370496}}"), 400);
    /* Above the approved 2 vCPUs: clamped, with an event. */
    assert_int_equal(status(pend_cred, "{\"inventory\":{\"vcpus\":512,"
                                       "\"memory_mib\":1048576,\"disk_gib\":"
                                       "100000,\"kvm\":true},\"vms\":[]}"),
                     200);
    long st;
    _cleanup_free_ char *p = xasprintf("/v1/nodes/%s", pend_id);
    json_auto_t *n = call(ctl.admin_key, "GET", p, NULL, &st);
    assert_int_equal(st, 200);
    json_t *cap = json_object_get(n, "capacity");
    assert_int_equal(json_int(cap, "vcpus", 0), 2);
    assert_int_equal(json_int(cap, "memory_mib", 0), 2048);
    assert_int_equal(json_int(cap, "disk_gib", 0), 20);
    assert_int_equal(json_int(json_object_get(n, "reported_capacity"),
                              "vcpus", 0), 512);
    json_auto_t *ev = call(ctl.admin_key, "GET", "/v1/events?limit=500", NULL,
                           &st);
    bool clamped = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(ev, "items"), i, e)
        if (streq(json_str(e, "action"), "node.capacity-clamped") &&
            streq(json_str(e, "target"), pend_id))
            clamped = true;
    assert_true(clamped);

    /* The scheduler believes the cap, not the 512 vCPUs: an 8-vCPU VM
     * finds no node; a 2-vCPU one lands on the clamped node (online: it
     * has just reported). */
    assert_int_equal(status(pend_cred, "{\"inventory\":{\"vcpus\":512},"
                                       "\"vms\":[]}"), 200);
    json_auto_t *big = call(alice_key, "POST", "/v1/vms",
                            "{\"name\":\"wide\",\"vcpus\":8,\"memory_mib\":"
                            "1024,\"disk_gib\":1,\"image\":\"gd-img\"}", &st);
    assert_int_equal(st, 201);
    assert_true(json_is_null(json_object_get(big, "node_id")));
    json_decref(call(alice_key, "DELETE", "/v1/vms/wide", NULL, &st));
    json_auto_t *fit = call(alice_key, "POST", "/v1/vms",
                            "{\"name\":\"narrow\",\"vcpus\":2,\"memory_mib\":"
                            "1024,\"disk_gib\":1,\"image\":\"gd-img\"}", &st);
    assert_int_equal(st, 201);
    if (!streq(json_str(fit, "node_id"), pend_id))
        fprintf(stderr, "not placed: %s\n", json_str(fit, "state_reason"));
    assert_true(streq(json_str(fit, "node_id"), pend_id));
}

static void bad_addresses_and_endpoints_are_refused(void **state)
{
    static const char *const bad_eps[] = {
        "127.0.0.1:22",      "0.0.0.0:51820",   "224.0.0.1:51820",
        "169.254.169.254:80", "255.255.255.255:1", "[::1]:51820",
        "[fe80::1]:51820",   "[::]:51820",      "[ff02::1]:51820",
        "example.com:51820", "198.51.100.7:0",  "198.51.100.7:70000",
        "198.51.100.7",      "127.0.0.1:22 x",  "[::ffff:127.0.0.1]:22",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad_eps); i++) {
        _cleanup_free_ char *b = xasprintf("{\"endpoint\":\"%s\",\"vms\":[]}",
                                           bad_eps[i]);
        long st;
        json_auto_t *j = call(pend_cred, "POST", "/v1/agent/status", b, &st);
        if (st != 400)
            fprintf(stderr, "endpoint %s: %ld\n", bad_eps[i], st);
        assert_problem(j, st, 400, "validation", "endpoint");
        /* at register too */
        _cleanup_free_ char *f = xasprintf("\"endpoint\":\"%s\"", bad_eps[i]);
        char *id = NULL, *cred = NULL;
        assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "gd-bad", f, &id,
                                      &cred), 400);
    }
    assert_int_equal(status(pend_cred, "{\"public_ip\":\"127.0.0.1\"}"), 400);
    assert_int_equal(status(pend_cred, "{\"public_ip\":\"169.254.1.1\"}"), 400);
    assert_int_equal(status(pend_cred, "{\"endpoint\":\"198.51.100.7:51820\","
                                       "\"public_ip\":\"198.51.100.7\"}"), 200);
    assert_int_equal(status(pend_cred, "{\"endpoint\":\"[2001:db8::7]:51820\"}"),
                     200);

    /* A VM's addresses: a bounded list of IPs. */
    long st;
    json_auto_t *vm = call(alice_key, "GET", "/v1/vms/narrow", NULL, &st);
    const char *id = json_str(vm, "id");
    static const char *const bad_addrs[] = {
        "[{\"x\":1}]", "[\"not-an-ip\"]", "[\"10.0.0.1; drop\"]", "[1]",
        "[\"10.0.0.1/24\"]",
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad_addrs); i++) {
        _cleanup_free_ char *b = xasprintf(
            "{\"vms\":[{\"id\":\"%s\",\"state\":\"running\",\"addresses\":%s}]}",
            id, bad_addrs[i]);
        json_auto_t *j = call(pend_cred, "POST", "/v1/agent/status", b, &st);
        assert_problem(j, st, 400, "validation", "vms");
    }
    char *many = xstrdup("");
    for (int i = 0; i < 65; i++) {
        char *n = xasprintf("%s%s\"10.0.0.%d\"", many, i ? "," : "", i + 1);
        free(many);
        many = n;
    }
    _cleanup_free_ char *b = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"running\",\"addresses\":[%s]}]}",
        id, many);
    free(many);
    assert_int_equal(status(pend_cred, b), 400);
    _cleanup_free_ char *good = xasprintf(
        "{\"vms\":[{\"id\":\"%s\",\"state\":\"running\",\"addresses\":"
        "[\"10.128.0.2\",\"fd00::2\"]}]}", id);
    assert_int_equal(status(pend_cred, good), 200);
    json_auto_t *vm2 = call(alice_key, "GET", "/v1/vms/narrow", NULL, &st);
    assert_int_equal(json_array_size(json_object_get(vm2, "addresses")), 2);
}

/* ---- a second controller with tight admission limits ---- */

static const char *const lim_args[] = {
    "--per-ip-connections", "4", "--rate-ip", "1", "--burst-ip", "3",
    "--rate-key", "1", "--burst-key", "3", "--rate-agent-ip", "1000",
    "--burst-agent-ip", "1000", NULL,
};

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
    char **retry = data;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        free(*retry);
        *retry = xstrndup(p + 12, len - 12);
    }
    return len;
}

/* GET path as key on lim: status, the body, Retry-After (caller frees). */
static long lim_get(const char *path, const char *key, char **ret_body,
                    char **ret_retry)
{
    CURL *c = curl_easy_init();
    struct tu_resp r = { 0 };
    _cleanup_free_ char *url = xasprintf("%s%s", lim.url, path);
    _cleanup_free_ char *auth = key ? xasprintf("Authorization: Bearer %s", key)
                                    : NULL;
    struct curl_slist *h = auth ? curl_slist_append(NULL, auth) : NULL;
    *ret_retry = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, lim.ca);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tu_resp_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, ret_retry);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    long st = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    *ret_body = r.body ? r.body : xstrdup("");
    return st;
}

/* Ask until a 429 comes (at most 500 times): true with its body checked. */
static bool until_429(const char *path, const char *key, const char *who)
{
    for (int i = 0; i < 500; i++) {
        _cleanup_free_ char *body = NULL, *retry = NULL;
        long st = lim_get(path, key, &body, &retry);
        if (st != 429)
            continue;
        json_auto_t *j = json_loads(body, 0, NULL);
        assert_string_equal(json_str(j, "type"), "urn:fog:problem:rate-limited");
        assert_non_null(strstr(json_str(j, "detail"), who));
        assert_non_null(retry);
        int64_t s;
        _cleanup_free_ char *t = xstrndup(retry + strspn(retry, " "),
                                          strcspn(retry + strspn(retry, " "),
                                                  "\r\n"));
        assert_int_equal(parse_int64(t, 1, 3600, &s), 0);
        assert_int_equal(json_int(j, "retry_after_s", 0), s);
        return true;
    }
    return false;
}

static void too_many_requests_get_429_with_retry_after(void **state)
{
    tu_ctl_start(&lim, lim_args);
    /* A node joins first (registration is anonymous, on the address's
     * budget). */
    char *nid = NULL, *ncred = NULL;
    assert_int_equal(tu_node_join(&lim, lim.admin_key, "gd-lim", NULL, &nid,
                                  &ncred), 201);
    /* Per address: anonymous requests run out. */
    assert_true(until_429("/healthz", NULL, "address"));
    /* A node's requests draw on the agents' budget, not the exhausted
     * one: its polls still answer. */
    for (int i = 0; i < 5; i++) {
        long st;
        json_decref(tu_api(&lim, ncred, "GET", "/v1/agent/desired?wait=0",
                           NULL, &st));
        assert_int_equal(st, 200);
    }
    free(nid);
    free(ncred);
    tu_ctl_destroy(&lim);

    /* Per key and per node: with the address unlimited, one key or one
     * node still runs out. */
    static const char *const key_args[] = { "--rate-key", "1", "--burst-key",
                                            "3", "--rate-node", "1",
                                            "--burst-node", "3", NULL };
    tu_ctl_start(&lim, key_args);
    assert_int_equal(tu_node_join(&lim, lim.admin_key, "gd-lim", NULL, &nid,
                                  &ncred), 201);
    assert_true(until_429("/v1/vms", lim.admin_key, "API key"));
    /* A node's backup transfers (chunks up, blobs down) are bounded by
     * their bytes, not counted as its requests: many blob fetches in a row
     * reach the handler (404: no such backup) and leave the node's
     * requests untouched (its burst of 3 is still there after them). The
     * pause first lets the node's bucket fill from its join's calls. */
    sleep(4);
    char bk[UUID_STR_LEN + 1];
    uuid_generate_str(bk);
    _cleanup_free_ char *blob = xasprintf("%s/%s/blob", AGENT_BACKUP_PATH, bk);
    for (int i = 0; i < 12; i++) {
        _cleanup_free_ char *body = NULL, *retry = NULL;
        assert_int_equal(lim_get(blob, ncred, &body, &retry), 404);
    }
    for (int i = 0; i < 3; i++) {
        _cleanup_free_ char *body = NULL, *retry = NULL;
        assert_int_equal(lim_get("/v1/agent/desired?wait=0", ncred, &body,
                                 &retry), 200);
    }
    assert_true(until_429("/v1/agent/desired?wait=0", ncred, "node"));
    free(nid);
    free(ncred);
    tu_ctl_destroy(&lim);
}

/* A connection to the server that the server has closed is replaced by a
 * new one: the server counts a client's connections as it notices them,
 * so on a busy machine it may still count an earlier one (the readiness
 * probe) when these arrive, and close one of these instead. */
static void conn_top_up(int *fds, size_t n, const struct sockaddr_in *sa)
{
    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            struct pollfd p = { .fd = fds[i], .events = POLLIN | POLLRDHUP };
            char c;
            if (poll(&p, 1, 0) == 0 ||
                recv(fds[i], &c, 1, MSG_PEEK | MSG_DONTWAIT) != 0)
                continue; /* still open */
            close(fds[i]);
        }
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fds[i] >= 0);
        assert_int_equal(connect(fds[i], (const struct sockaddr *)sa,
                                 sizeof(*sa)), 0);
    }
}

static void connections_per_address_are_limited(void **state)
{
    static const char *const conn_args[] = { "--per-ip-connections", "4",
                                             NULL };
    tu_ctl_start(&lim, conn_args);
    int fds[4] = { -1, -1, -1, -1 };
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)lim.port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* The server takes four idle connections; a fifth is closed. The
     * accept is asynchronous: retry (replacing any of the four the server
     * closed) until the fifth is refused. */
    bool refused = false;
    for (int i = 0; i < 200 && !refused; i++) {
        conn_top_up(fds, 4, &sa);
        long st;
        json_decref(tu_api(&lim, NULL, "GET", "/healthz", NULL, &st));
        refused = st == -1;
        if (!refused)
            nanosleep(&(struct timespec){ 0, 50 * 1000 * 1000 }, NULL);
    }
    assert_true(refused);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    /* Freed: answered again (the server notices the closes soon). */
    bool answered = false;
    for (int i = 0; i < 1200 && !answered; i++) {
        long st;
        json_decref(tu_api(&lim, NULL, "GET", "/healthz", NULL, &st));
        answered = st == 200;
        if (!answered)
            nanosleep(&(struct timespec){ 0, 50 * 1000 * 1000 }, NULL);
    }
    assert_true(answered);
    tu_ctl_destroy(&lim);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostile_cidrs_are_refused_and_pool_cidrs_accepted),
        cmocka_unit_test(quotas_refuse_with_403_naming_the_quota),
        cmocka_unit_test(parallel_creates_never_exceed_the_quota),
        cmocka_unit_test(unapproved_node_learns_nothing_of_its_peers),
        cmocka_unit_test(inflated_capacity_is_clamped_and_not_scheduled),
        cmocka_unit_test(bad_addresses_and_endpoints_are_refused),
        cmocka_unit_test(too_many_requests_get_429_with_retry_after),
        cmocka_unit_test(connections_per_address_are_limited),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    free(pend_id);
    free(pend_cred);
    free(ok_id);
    free(ok_cred);
    json_decref(last);
    curl_global_cleanup();
    return rc;
}
