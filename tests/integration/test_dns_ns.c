/* Integration test of the resolvers on tenant gateways, in network
 * namespaces this test makes: a node namespace given two tenant networks
 * of two tenants through netfabric_apply (bridges, firewall and one real
 * dnsmasq each), and a "VM" namespace on each bridge that asks its
 * gateway with dig. Names of its own network answer, the other tenant's
 * do not, a record added to the document answers after the reload, the
 * resolver answers on no other node address, and it is gone with its
 * network. No upstream is configured: no query leaves the namespaces.
 * Needs root and dnsmasq; skips (77) without them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/timeutil.h"
#include "netfabric/apply.h"
#include "netfabric/resolver.h"
#include "tests/testutil.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>

#define GW1 "10.81.0.1"
#define GW2 "10.82.0.1"
#define WEB "10.81.0.5"
#define API "10.81.0.6"
#define DB "10.82.0.5"
#define UPLINK "198.18.81.1"
#define BR1 "fogbr8101"
#define BR2 "fogbr8102"

static char P[16];
static char ns_node[32], ns_vm1[32], ns_vm2[32];
static char *dns_dir;

#define NET1(records)                                                        \
    "{\"vxlan_id\": 8101, \"cidr\": \"10.81.0.0/24\", \"gateway\": \"" GW1  \
    "\", \"bridge\": \"" BR1 "\", \"dns_label\": \"alpha\", \"records\": ["  \
    records "]}"
#define NET2                                                                 \
    "{\"vxlan_id\": 8102, \"cidr\": \"10.82.0.0/24\", \"gateway\": \"" GW2  \
    "\", \"bridge\": \"" BR2 "\", \"dns_label\": \"beta\", \"records\": ["   \
    "{\"name\": \"db\", \"address\": \"" DB "\"}]}"
#define REC_WEB "{\"name\": \"web\", \"address\": \"" WEB "\"}"
#define REC_API "{\"name\": \"api\", \"address\": \"" API "\"}"

static const char *DOC_BOTH =
    "{\"mesh\": null, \"networks\": [" NET1(REC_WEB) ", " NET2 "]}";
static const char *DOC_ADDED =
    "{\"mesh\": null, \"networks\": [" NET1(REC_API ", " REC_WEB) ", " NET2
    "]}";
static const char *DOC_ONE =
    "{\"mesh\": null, \"networks\": [" NET1(REC_API ", " REC_WEB) "]}";

/* In the node namespace: netfabric_apply of the document in arg, with
 * resolvers under dns_dir and no upstream. */
static int apply_fn(void *arg)
{
    struct nf_state s;
    if (tu_nf_state(arg, &s) != 0)
        return 1;
    s.dns_dir = dns_dir;
    s.dns_user = "nobody";
    s.resolv_conf = "";
    int r = netfabric_apply(&s);
    if (r < 0)
        fprintf(stderr, "netfabric_apply: %s\n", strerror(-r));
    nf_state_clear(&s);
    return r < 0;
}

static void apply(const char *doc)
{
    assert_int_equal(tu_in_ns(ns_node, apply_fn, (void *)doc), 0);
}

static pid_t pid_of(const char *bridge)
{
    struct nf_state s = { .dns_dir = dns_dir };
    return resolver_pid(&s, bridge);
}

/* dig from namespace ns; its whole output (caller frees). */
static char *dig(const char *ns, const char *server, const char *name,
                 bool tcp, const char *tries)
{
    _cleanup_free_ char *at = xasprintf("@%s", server);
    char *argv[] = { (char *)tu_ip_bin(), "netns", "exec", (char *)ns, "dig",
                     at, tcp ? "+tcp" : "+notcp", "+time=2", (char *)tries,
                     "+norecurse", (char *)name, "A", NULL };
    int status;
    char *out = tu_run(argv, &status);
    return out ? out : xstrdup("");
}

/* The status of an answer ("NOERROR", "NXDOMAIN", ...) and whether
 * address `addr` is in its answer section. */
static bool answers(const char *out, const char *name, const char *addr)
{
    _cleanup_free_ char *line = xasprintf("%s.\t", name);
    const char *ans = strstr(out, ";; ANSWER SECTION:");
    return strstr(out, "status: NOERROR") && ans && strstr(ans, line) &&
           strstr(ans, addr);
}

static void assert_answers(const char *ns, const char *server,
                           const char *name, const char *addr, bool tcp)
{
    _cleanup_free_ char *out = dig(ns, server, name, tcp, "+tries=5");
    if (!answers(out, name, addr))
        fprintf(stderr, "dig @%s %s:\n%s\n", server, name, out);
    assert_true(answers(out, name, addr));
}

static void assert_unknown(const char *ns, const char *server,
                           const char *name)
{
    _cleanup_free_ char *out = dig(ns, server, name, false, "+tries=5");
    bool refused = strstr(out, "status: NXDOMAIN") ||
                   strstr(out, "status: REFUSED");
    if (!refused)
        fprintf(stderr, "dig @%s %s:\n%s\n", server, name, out);
    assert_true(refused);
    assert_null(strstr(out, "ANSWER SECTION"));
}

/* No DNS server answers at server for ns (timed out, unreachable). One
 * try: the same namespace's queries to its own gateway answer. */
static void assert_no_server(const char *ns, const char *server)
{
    _cleanup_free_ char *out = dig(ns, server, "web", false, "+tries=1");
    if (strstr(out, "status:"))
        fprintf(stderr, "dig @%s web answered:\n%s\n", server, out);
    assert_null(strstr(out, "status:"));
}

static void web_and_its_tenant_name_resolve_on_the_gateway(void **state)
{
    (void)state;
    assert_answers(ns_vm1, GW1, "web", WEB, false);
    assert_answers(ns_vm1, GW1, "web.alpha.internal", WEB, false);
    assert_answers(ns_vm1, GW1, "web.alpha.internal", WEB, true);
    assert_answers(ns_vm2, GW2, "db.beta.internal", DB, false);
}

static void other_tenants_names_do_not_resolve(void **state)
{
    (void)state;
    assert_unknown(ns_vm1, GW1, "db");
    assert_unknown(ns_vm1, GW1, "db.beta.internal");
    assert_unknown(ns_vm1, GW1, "web.beta.internal");
    assert_unknown(ns_vm2, GW2, "web");
    assert_unknown(ns_vm2, GW2, "web.alpha.internal");
    /* No upstream: nothing else is answered (nor sent anywhere). */
    assert_unknown(ns_vm1, GW1, "example.org");
}

static void resolver_answers_on_no_other_node_address(void **state)
{
    (void)state;
    /* The other network's gateway has a resolver, but not for this one;
     * the uplink address has none. */
    assert_no_server(ns_vm1, GW2);
    assert_no_server(ns_vm1, UPLINK);
    assert_no_server(ns_vm2, GW1);
}

static void added_record_answers_after_reload(void **state)
{
    (void)state;
    pid_t before = pid_of(BR1);
    assert_true(before > 0);
    assert_unknown(ns_vm1, GW1, "api");
    apply(DOC_ADDED);
    assert_answers(ns_vm1, GW1, "api", API, false);
    assert_answers(ns_vm1, GW1, "api.alpha.internal", API, false);
    assert_int_equal(pid_of(BR1), before); /* reloaded, not restarted */
}

static void dead_resolver_is_restarted(void **state)
{
    (void)state;
    pid_t before = pid_of(BR2);
    assert_true(before > 0);
    assert_int_equal(kill(before, SIGKILL), 0);
    for (int64_t end = now_ms() + 20000; pid_of(BR2) && now_ms() < end;)
        poll(NULL, 0, 50);
    assert_int_equal(pid_of(BR2), 0);
    apply(DOC_ADDED);
    assert_true(pid_of(BR2) > 0);
    assert_answers(ns_vm2, GW2, "db", DB, false);
}

static void resolver_goes_with_its_network(void **state)
{
    (void)state;
    pid_t pid = pid_of(BR2);
    assert_true(pid > 0);
    apply(DOC_ONE);
    assert_int_equal(pid_of(BR2), 0);
    /* Gone, not just forgotten: the process left (a zombie has no
     * command line) and its folder too. */
    _cleanup_free_ char *cmdline = NULL;
    _cleanup_free_ char *path = xasprintf("/proc/%d/cmdline", (int)pid);
    size_t len = 0;
    for (int64_t end = now_ms() + 20000; now_ms() < end; poll(NULL, 0, 50)) {
        free(cmdline);
        cmdline = NULL;
        if (file_read(path, 4096, &cmdline, &len) < 0 || len == 0)
            break;
    }
    assert_true(!cmdline || len == 0);
    _cleanup_free_ char *dir = xasprintf("%s/" BR2, dns_dir);
    assert_int_not_equal(access(dir, F_OK), 0);
    assert_answers(ns_vm1, GW1, "web", WEB, false);
}

static int topo_setup(void **state)
{
    (void)state;
    snprintf(ns_node, sizeof(ns_node), "%s-node", P);
    snprintf(ns_vm1, sizeof(ns_vm1), "%s-vm1", P);
    snprintf(ns_vm2, sizeof(ns_vm2), "%s-vm2", P);
    dns_dir = tu_tempdir("dn");
    /* dnsmasq reads its hosts file as "nobody". */
    if (chmod(dns_dir, 0711) < 0 || tu_ns_add(ns_node) != 0)
        return -1;
    /* An uplink address of the node (a veth pair: no dummy module). */
    if (tu_ip("-n %s link add dnup type veth peer name dnup2", ns_node) ||
        tu_ip("-n %s addr add " UPLINK "/24 dev dnup", ns_node) ||
        tu_ip("-n %s link set dnup up", ns_node) ||
        tu_ip("-n %s link set dnup2 up", ns_node))
        return -1;
    if (tu_in_ns(ns_node, apply_fn, (void *)DOC_BOTH) != 0)
        return -1;
    if (tu_ns_add(ns_vm1) || tu_ns_add(ns_vm2) ||
        tu_ns_wire(ns_node, BR1, "dnv1", ns_vm1, WEB "/24") ||
        tu_ns_wire(ns_node, BR2, "dnv2", ns_vm2, DB "/24") ||
        tu_ip("-n %s route add default via " GW1, ns_vm1) ||
        tu_ip("-n %s route add default via " GW2, ns_vm2))
        return -1;
    return 0;
}

static int topo_teardown(void **state)
{
    (void)state;
    if (access("/run/netns", F_OK) == 0 && ns_node[0]) {
        /* Stop the resolvers through the code that runs them. */
        struct nf_state s = { .dns_dir = dns_dir };
        resolver_stop_all(&s);
    }
    const char *all[] = { ns_vm1, ns_vm2, ns_node };
    for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
        _cleanup_free_ char *path = xasprintf("/run/netns/%s", all[i]);
        if (all[i][0] && access(path, F_OK) == 0)
            tu_ip("netns del %s", all[i]);
    }
    if (dns_dir)
        tu_rmrf(dns_dir);
    free(dns_dir);
    return 0;
}

int main(void)
{
    void *shared;
    int r = tu_ns_test_begin(1, &shared);
    if (r != 0)
        return r;
    _cleanup_free_ char *dig_bin = tu_which("dig");
    if (access(RESOLVER_DNSMASQ, X_OK) != 0 || !dig_bin) {
        printf("needs %s and dig\n", RESOLVER_DNSMASQ);
        return 77;
    }
    snprintf(P, sizeof(P), "dn%d", (int)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(web_and_its_tenant_name_resolve_on_the_gateway),
        cmocka_unit_test(other_tenants_names_do_not_resolve),
        cmocka_unit_test(resolver_answers_on_no_other_node_address),
        cmocka_unit_test(added_record_answers_after_reload),
        cmocka_unit_test(dead_resolver_is_restarted),
        cmocka_unit_test(resolver_goes_with_its_network),
    };
    return cmocka_run_group_tests_name("resolvers on tenant gateways", tests,
                                       topo_setup, topo_teardown);
}
