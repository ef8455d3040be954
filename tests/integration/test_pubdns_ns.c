/* The hub's public DNS zone, end to end in a network namespace of the
 * test's own: the controller (--public-zone fog.test) writes the zone's
 * hosts file and SIGHUPs a real dnsmasq serving it authoritatively on the
 * hub's address; a node agent on libvirt's test driver reports a public
 * address. dig finds a published VM as VM.TENANT.fog.test at its node's
 * address with the zone's SOA and NS, an unpublished VM and another
 * tenant's label find nothing, the name follows the VM to another node
 * (as a restore or migration leaves it) within seconds while the SOA
 * serial rises (AAAA when the node's address is IPv6), a label two
 * accounts map to stays with the one named so, a hostile name in the
 * store never reaches the file, a stopped VM's name goes until it starts,
 * a deleted VM's name answers NXDOMAIN, and a bad --public-zone stops the
 * controller. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HUB "192.0.2.53"
#define NODE_IP "198.51.100.7"
#define NODE_IP2 "203.0.113.9"
#define ZONE "fog.test"

static struct tu_ctl ctl;
static struct tu_agent agent;
static char *dir, *zone_path, *pid_path, *tenant_key, *rival_key, *vm_id,
    *dnsmasq, *dig;
static pid_t dns_pid = -1;
static char *serve_args[16];
static const char *agent_args[] = { "--public-ip", NODE_IP, NULL };

/* dig @HUB name type, authoritative only; its output (caller frees). */
static char *ask(const char *name, const char *type, bool short_form)
{
    char *argv[] = { dig, "@" HUB, (char *)name, (char *)type, "+norec",
                     "+time=1", "+tries=2",
                     short_form ? "+short" : "+noall", short_form ? NULL
                                                                 : "+comments",
                     short_form ? NULL : "+answer", NULL };
    int st = -1;
    char *out = tu_run(argv, &st);
    if (st != 0)
        fail_msg("dig %s %s: %s", name, type, out);
    return out;
}

/* The first line of dig +short's answer ("" when none). */
static char *answer(const char *name, const char *type)
{
    char *out = ask(name, type, true);
    out[strcspn(out, "\n")] = '\0';
    return out;
}

static bool nxdomain(const char *name)
{
    _cleanup_free_ char *out = ask(name, "A", false);
    return strstr(out, "status: NXDOMAIN") != NULL;
}

/* Wait up to ms until name's A answer is want ("" : none); ms or -1. */
static int64_t wait_answer(const char *name, const char *want, int64_t ms)
{
    int64_t t0 = mono_ms();
    while (mono_ms() - t0 < ms) {
        _cleanup_free_ char *a = answer(name, "A");
        if (streq(a, want))
            return mono_ms() - t0;
        usleep(100 * 1000);
    }
    return -1;
}

static int64_t soa_serial(void)
{
    _cleanup_free_ char *soa = answer(ZONE, "SOA");
    /* "ns.fog.test. hostmaster.ns.fog.test. SERIAL REFRESH ..." */
    char mname[256], rname[256];
    long long serial = -1;
    if (sscanf(soa, "%255s %255s %lld", mname, rname, &serial) != 3)
        fail_msg("no SOA for " ZONE ": '%s'", soa);
    assert_string_equal(mname, "ns." ZONE ".");
    return serial;
}

/* ---- setup ---- */

static int setup(void **state)
{
    (void)state;
    dir = tu_tempdir("pubdns");
    zone_path = xasprintf("%s/zone.hosts", dir);
    pid_path = xasprintf("%s/dnsmasq.pid", dir);
    int n = 0;
    serve_args[n++] = "--heartbeat";
    serve_args[n++] = "1";
    serve_args[n++] = "--public-zone";
    serve_args[n++] = ZONE;
    serve_args[n++] = "--public-zone-file";
    serve_args[n++] = zone_path;
    serve_args[n++] = "--public-zone-reload";
    serve_args[n++] = xasprintf("kill -HUP $(cat %s)", pid_path);
    serve_args[n] = NULL;
    tu_ctl_start(&ctl, (const char *const *)serve_args);
    /* dnsmasq starts from the controller's first file. */
    for (int i = 0; i < 100 && access(zone_path, F_OK) < 0; i++)
        usleep(100 * 1000);
    assert_int_equal(access(zone_path, F_OK), 0);
    _cleanup_free_ char *hosts = xasprintf("--addn-hosts=%s", zone_path);
    _cleanup_free_ char *pidf = xasprintf("--pid-file=%s", pid_path);
    char *dm[] = { dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null",
                   "--user=root", "--no-resolv", "--no-hosts",
                   "--listen-address=" HUB, "--bind-interfaces",
                   "--auth-server=ns." ZONE "," HUB, "--auth-zone=" ZONE,
                   "--auth-ttl=30", "--local-ttl=30", hosts, pidf, NULL };
    _cleanup_free_ char *dlog = xasprintf("%s/dnsmasq.log", dir);
    dns_pid = tu_spawn(dm, dlog);
    assert_true(dns_pid > 0);
    for (int i = 0; i < 100 && access(pid_path, F_OK) < 0; i++)
        usleep(50 * 1000);
    assert_int_equal(access(pid_path, F_OK), 0);

    tenant_key = tu_account(&ctl, "acme", "tenant");
    rival_key = tu_account(&ctl, "rival", "tenant");
    tu_agent_start(&agent, &ctl, "n1", 8, 8192);
    agent.extra = agent_args; /* the node's public address */
    tu_agent_restart(&agent);
    json_auto_t *vm = tu_vm_post(&ctl, tenant_key, "web", 1,
                                 "\"ports\":[{\"proto\":\"tcp\",\"vm_port\":"
                                 "80}]", 201);
    vm_id = xstrdup(json_str(vm, "id"));
    json_decref(tu_vm_post(&ctl, tenant_key, "quiet", 1, NULL, 201));
    json_decref(tu_vm_post(&ctl, rival_key, "game", 1,
                           "\"ports\":[{\"proto\":\"udp\",\"vm_port\":"
                           "27015}]", 201));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (dns_pid > 0)
        tu_kill(dns_pid, SIGTERM);
    tu_agent_destroy(&agent);
    tu_ctl_destroy(&ctl);
    if (dir)
        tu_rmrf(dir);
    return 0;
}

/* ---- the zone ---- */

static void a_published_vm_answers_with_its_node_address(void **state)
{
    (void)state;
    int64_t ms = wait_answer("web.acme." ZONE, NODE_IP, 10000);
    assert_true(ms >= 0);
    printf("published VM resolvable %lld ms after the first look\n",
           (long long)ms);
    /* Case does not matter in DNS; a short TTL so moves propagate. */
    _cleanup_free_ char *full = ask("WEB.Acme." ZONE, "A", false);
    assert_non_null(strstr(full, "status: NOERROR"));
    assert_non_null(strstr(full, "flags: qr aa"));
    assert_non_null(strstr(full, "\t30\tIN\tA\t" NODE_IP));
    _cleanup_free_ char *ns = answer(ZONE, "NS");
    assert_string_equal(ns, "ns." ZONE ".");
    assert_true(soa_serial() > 0);
    /* No AAAA for a node with an IPv4 address only. */
    _cleanup_free_ char *aaaa = answer("web.acme." ZONE, "AAAA");
    assert_string_equal(aaaa, "");
    /* The other tenant's published VM, under its own label only. */
    assert_true(wait_answer("game.rival." ZONE, NODE_IP, 5000) >= 0);
}

static void unpublished_and_foreign_names_do_not_resolve(void **state)
{
    (void)state;
    assert_true(nxdomain("quiet.acme." ZONE));
    assert_true(nxdomain("game.acme." ZONE));
    assert_true(nxdomain("web.rival." ZONE));
    assert_true(nxdomain("web.nobody." ZONE));
    _cleanup_free_ char *t = NULL;
    assert_int_equal(file_read(zone_path, 1 << 20, &t, NULL), 0);
    assert_null(strstr(t, "quiet"));
}

static void a_shared_label_stays_with_the_account_named_so(void **state)
{
    (void)state;
    /* "Acme" maps to the label acme too; the account named acme keeps
     * it. */
    tu_sql(&ctl, "UPDATE accounts SET name = 'Acme' WHERE name = 'rival'");
    /* Its old label goes once the file is rewritten; the new one was
     * never given to it. */
    assert_true(wait_answer("game.rival." ZONE, "", 5000) >= 0);
    assert_true(nxdomain("game.acme." ZONE));
    _cleanup_free_ char *a = answer("web.acme." ZONE, "A");
    assert_string_equal(a, NODE_IP);
    tu_sql(&ctl, "UPDATE accounts SET name = 'rival' WHERE name = 'Acme'");
    assert_true(wait_answer("game.rival." ZONE, NODE_IP, 5000) >= 0);
    assert_true(nxdomain("game.acme." ZONE));
}

static void a_hostile_name_in_the_store_never_reaches_the_zone(void **state)
{
    (void)state;
    /* Past the API's checks (an older row, a hand edit): a name that
     * would add a line of its own to the hosts file. */
    tu_sql(&ctl, "UPDATE vms SET name = 'x\n203.0.113.66 web.acme.fog.test' "
           "WHERE name = 'game'");
    assert_true(wait_answer("game.rival." ZONE, "", 5000) >= 0);
    _cleanup_free_ char *t = NULL;
    assert_int_equal(file_read(zone_path, 1 << 20, &t, NULL), 0);
    assert_null(strstr(t, "203.0.113.66"));
    _cleanup_free_ char *a = answer("web.acme." ZONE, "A");
    assert_string_equal(a, NODE_IP);
    tu_sql(&ctl, "UPDATE vms SET name = 'game' WHERE name LIKE 'x%%'");
    assert_true(wait_answer("game.rival." ZONE, NODE_IP, 5000) >= 0);
}

static void the_name_follows_the_vm_to_another_node(void **state)
{
    (void)state;
    int64_t before = soa_serial();
    char *n2_id = NULL, *n2_cred = NULL;
    assert_int_equal(tu_node_join(&ctl, ctl.admin_key, "n2",
                                  "\"public_ip\":\"" NODE_IP2 "\"", &n2_id,
                                  &n2_cred), 201);
    /* As a restore or migration leaves it: the VM and its port there. */
    tu_sql(&ctl, "UPDATE nodes SET public_ip = '%s' WHERE id = '%s'",
           NODE_IP2, n2_id);
    tu_sql(&ctl, "UPDATE vms SET node_id = '%s' WHERE id = '%s'", n2_id,
           vm_id);
    tu_sql(&ctl, "UPDATE ports SET node_id = '%s', host_port = 31080 WHERE "
           "vm_id = '%s'", n2_id, vm_id);
    /* ...and as a move tells the VM's networks (netrecords_vm_changed). */
    tu_sql(&ctl, "UPDATE networks SET dns_rev = dns_rev + 1 WHERE id IN "
           "(SELECT network_id FROM vm_nics WHERE vm_id = '%s')", vm_id);
    tu_sql(&ctl, "INSERT INTO net_dns_log (network_id, dns_rev, vm_id) "
           "SELECT id, dns_rev, '%s' FROM networks WHERE id IN (SELECT "
           "network_id FROM vm_nics WHERE vm_id = '%s')", vm_id, vm_id);
    int64_t ms = wait_answer("web.acme." ZONE, NODE_IP2, 10000);
    assert_true(ms >= 0);
    printf("public name followed the VM to its new node in %lld ms\n",
           (long long)ms);
    int64_t after = soa_serial();
    printf("SOA serial %lld -> %lld\n", (long long)before,
           (long long)after);
    assert_true(after > before);
    /* A node with an IPv6 public address: AAAA instead of A. */
    tu_sql(&ctl, "UPDATE nodes SET public_ip = '2001:db8::9' WHERE id = "
           "'%s'", n2_id);
    assert_true(wait_answer("web.acme." ZONE, "", 5000) >= 0);
    _cleanup_free_ char *aaaa = answer("web.acme." ZONE, "AAAA");
    assert_string_equal(aaaa, "2001:db8::9");
    tu_sql(&ctl, "UPDATE nodes SET public_ip = '%s' WHERE id = '%s'",
           NODE_IP2, n2_id);
    assert_true(wait_answer("web.acme." ZONE, NODE_IP2, 5000) >= 0);
    free(n2_id);
    free(n2_cred);
}

static void a_stopped_vm_has_no_name_until_it_starts(void **state)
{
    (void)state;
    json_decref(tu_api_want(&ctl, rival_key, "POST", "/v1/vms/game/stop",
                            NULL, 202));
    assert_true(wait_answer("game.rival." ZONE, "", 5000) >= 0);
    assert_true(nxdomain("game.rival." ZONE));
    json_decref(tu_api_want(&ctl, rival_key, "POST", "/v1/vms/game/start",
                            NULL, 202));
    assert_true(wait_answer("game.rival." ZONE, NODE_IP, 5000) >= 0);
}

static void a_deleted_vm_answers_nxdomain(void **state)
{
    (void)state;
    int64_t before = soa_serial();
    _cleanup_free_ char *p = xasprintf("/v1/vms/%s", vm_id);
    json_decref(tu_api_want(&ctl, tenant_key, "DELETE", p, NULL, 202));
    int64_t t0 = mono_ms();
    while (!nxdomain("web.acme." ZONE) && mono_ms() - t0 < 10000)
        usleep(100 * 1000);
    assert_true(nxdomain("web.acme." ZONE));
    assert_true(soa_serial() > before);
    /* The other tenant's name is untouched. */
    _cleanup_free_ char *a = answer("game.rival." ZONE, "A");
    assert_string_equal(a, NODE_IP);
}

static void a_bad_zone_is_refused_at_start(void **state)
{
    (void)state;
    static const char *const bad[] = { "localhost", "fog.test\nx",
                                       "Fog.Test", "fog.123", "-a.fog.test",
                                       "fog..test", "fog.test.",
                                       "a b.fog.test" };
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        char *argv[] = { bin, "serve", "--data-dir", ctl.dir,
                         "--public-zone", (char *)bad[i],
                         "--public-zone-file", zone_path, NULL };
        int st = -1;
        _cleanup_free_ char *out = tu_run(argv, &st);
        if (st != 2)
            fail_msg("--public-zone '%s' exited %d: %s", bad[i], st, out);
    }
}

int main(void)
{
    if (unshare(CLONE_NEWNET) < 0) {
        printf("cannot make a network namespace (needs root): skipped\n");
        return 77;
    }
    if (!tu_ip_bin() || tu_ip("link set lo up") != 0 ||
        tu_ip("addr add " HUB "/32 dev lo") != 0) {
        printf("no ip(8): skipped\n");
        return 77;
    }
    dnsmasq = tu_which("dnsmasq");
    dig = tu_which("dig");
    if (!dnsmasq || !dig) {
        printf("needs dnsmasq and dig: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_published_vm_answers_with_its_node_address),
        cmocka_unit_test(unpublished_and_foreign_names_do_not_resolve),
        cmocka_unit_test(a_shared_label_stays_with_the_account_named_so),
        cmocka_unit_test(a_hostile_name_in_the_store_never_reaches_the_zone),
        cmocka_unit_test(the_name_follows_the_vm_to_another_node),
        cmocka_unit_test(a_stopped_vm_has_no_name_until_it_starts),
        cmocka_unit_test(a_deleted_vm_answers_nxdomain),
        cmocka_unit_test(a_bad_zone_is_refused_at_start),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
