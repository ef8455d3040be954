/* A create in a tenant network spread over many nodes: what the
 * controller spends bringing every node of the network its next document
 * (each node's document carries the network's names, so each changes).
 * NODES approved nodes share one network of VMS placed VMs (round robin);
 * each of CREATES creates adds a VM to it on the next node, the way a
 * placement tells its change (app_vm_changed, vm_networks_changed), and
 * then every node's document is asked for as its long poll would
 * (desired_cache_get, with deltas, from the revision it holds): once
 * with every node's agent of contract 2 (each network entry carries its
 * names and MACs), then of today's (the network's VMs as items of
 * AGENT_NET_VMS). In-process on a temporary sqlite store, like
 * bench_sched. Prints a table of the median per create over the creates:
 * figures, not pass/fail. BENCH_DEBUG=1 prints the controller's debug log
 * (each build's and delta's time).
 *
 *   bench_netdns [NODES=50 [VMS=2000 [CREATES=20]]] */
#include "bench/bench_util.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/desired_cache.h"
#include "controller/handlers.h"
#include "tests/testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void die(const char *what, int e)
{
    fprintf(stderr, "bench_netdns: %s: %d\n", what, e);
    exit(1);
}

static void ok(const char *what, int e)
{
    if (e < 0)
        die(what, e);
}

static double thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* VM number i of the network, on node `node`. */
static void add_vm(struct app *a, const char *tenant, const char *net, int i,
                   const char *node, char id[UUID_STR_LEN + 1])
{
    uuid_generate_str(id);
    _cleanup_free_ char *name = xasprintf("web-%05d", i);
    _cleanup_free_ char *addr = xasprintf("10.200.%d.%d", (i + 2) / 256,
                                          (i + 2) % 256);
    _cleanup_free_ char *mac = xasprintf("02:fb:00:%02x:%02x:%02x",
                                         (i >> 16) & 0xff, (i >> 8) & 0xff,
                                         i & 0xff);
    int64_t now = now_s();
    ok("insert vm",
       store_exec(a->store,
                  "INSERT INTO vms (id, account_id, name, vcpus, memory_mib, "
                  "disk_gib, image, user_data, desired_state, state, "
                  "addresses, node_id, created_at, updated_at) VALUES ($1, "
                  "$2, $3, 1, 512, 5, 'debian-12', '#cloud-config\n', "
                  "'running', 'running', '[]', $4, $5, $5)", "ssssi", id,
                  tenant, name, node, now));
    ok("insert nic",
       store_exec(a->store,
                  "INSERT INTO vm_nics (vm_id, idx, network_id, mac, address) "
                  "VALUES ($1, 0, $2, $3, $4)", "ssss", id, net, mac, addr));
}

/* The medians of one run of creates. */
struct phase {
    double tx, cpu, wall, bytes;
};

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
    return v[n / 2];
}

/* Every node's document whole (the base of its deltas), then `creates`
 * creates, each followed by every node's next document. */
static void phase_run(struct app *a, const char *tenant, const char *net,
                      char (*node)[UUID_STR_LEN + 1], int64_t *rev, int nodes,
                      int *made, int creates, struct phase *ret)
{
    for (int k = 0; k < nodes; k++) {
        struct desired_text *t = NULL;
        ok("first document", desired_cache_get(a, node[k], -1, -1, true, &t));
        rev[k] = t->revision;
        desired_text_unref(t);
    }
    double *cpu = xcalloc((size_t)creates, sizeof(*cpu));
    double *wall = xcalloc((size_t)creates, sizeof(*wall));
    double *bytes = xcalloc((size_t)creates, sizeof(*bytes));
    double *tx = xcalloc((size_t)creates, sizeof(*tx));
    char id[UUID_STR_LEN + 1];
    for (int c = 0; c < creates; c++) {
        const char *on = node[*made % nodes];
        double tw = thread_cpu_ms();
        ok("begin", store_tx_begin(a->store));
        add_vm(a, tenant, net, (*made)++, on, id);
        app_vm_changed(a, on, id);
        vm_networks_changed(a, id);
        ok("commit", store_tx_commit(a->store));
        tx[c] = thread_cpu_ms() - tw;
        double w = bench_now_ms(), u = thread_cpu_ms();
        size_t sent = 0;
        for (int k = 0; k < nodes; k++) {
            struct desired_text *t = NULL;
            ok("document", desired_cache_get(a, node[k], rev[k], -1, true,
                                             &t));
            rev[k] = t->revision;
            sent += t->len;
            desired_text_unref(t);
        }
        cpu[c] = thread_cpu_ms() - u;
        wall[c] = bench_now_ms() - w;
        bytes[c] = (double)sent;
    }
    *ret = (struct phase){ median(tx, creates), median(cpu, creates),
                           median(wall, creates), median(bytes, creates) };
    free(cpu);
    free(wall);
    free(bytes);
    free(tx);
}

int main(int argc, char **argv)
{
    int nodes = argc > 1 ? atoi(argv[1]) : 50;
    int nvms = argc > 2 ? atoi(argv[2]) : 2000;
    int creates = argc > 3 ? atoi(argv[3]) : 20;
    if (nodes < 1 || nvms < 0 || nvms + 2 * creates > 60000 || creates < 1) {
        fprintf(stderr, "usage: bench_netdns [NODES [VMS [CREATES]]]\n");
        return 2;
    }
    log_set_level(getenv("BENCH_DEBUG") ? LOG_DEBUG : LOG_ERR);
    struct app a = { 0 };
    a.cfg.heartbeat_s = 86400;
    int e;
    if ((e = billing_configure(60, 500, 0, 5, "FOG",
                               "vcpu=0.01,mem=0.005,disk=0.1")) < 0)
        die("billing_configure", e);
    /* A change wakes the node's parked polls: a server with no routes. */
    struct http_server_opts o = { .listen = "127.0.0.1:0", .threads = 1,
                                  .max_body = 1024 };
    if ((e = http_server_start(&o, &a.http)) < 0)
        die("http_server_start", e);
    char *dir = tu_tempdir("bench-netdns");
    _cleanup_free_ char *db = xasprintf("%s/fog.db", dir);
    ok("store_open", store_open(db, &a.store));

    double t0 = bench_now_ms();
    char tenant[UUID_STR_LEN + 1], net[UUID_STR_LEN + 1],
         provider[UUID_STR_LEN + 1];
    char (*node)[UUID_STR_LEN + 1] = xcalloc((size_t)nodes, sizeof(*node));
    int64_t *rev = xcalloc((size_t)nodes, sizeof(*rev));
    uuid_generate_str(tenant);
    uuid_generate_str(net);
    uuid_generate_str(provider);
    ok("begin", store_tx_begin(a.store));
    ok("insert accounts",
       store_exec(a.store, "INSERT INTO accounts (id, name, role, created_at) "
                  "VALUES ($1, 'shop', 'tenant', 0), ($2, 'miner', "
                  "'provider', 0)", "ss", tenant, provider));
    ok("insert network",
       store_exec(a.store, "INSERT INTO networks (id, account_id, name, cidr, "
                  "gateway, vxlan_id, created_at) VALUES ($1, $2, 'web', "
                  "'10.200.0.0/16', '10.200.0.1', 1000, 0)", "ss", net,
                  tenant));
    for (int i = 0; i < nodes; i++) {
        uuid_generate_str(node[i]);
        _cleanup_free_ char *name = xasprintf("rig-%d", i);
        _cleanup_free_ char *mesh = xasprintf("100.96.%d.%d", (i + 1) / 256,
                                              (i + 1) % 256);
        _cleanup_free_ char *cred = xasprintf("fogn_%012x", (unsigned)i);
        ok("insert node",
           store_exec(a.store,
                      "INSERT INTO nodes (id, name, account_id, cred_id, "
                      "cred_salt, cred_hash, approved, kvm, arch, vcpus, "
                      "memory_mib, disk_gib, mesh_ip, wg_public_key, "
                      "endpoint, revision, last_seen, created_at) VALUES ($1, "
                      "$2, $3, $4, '00', '00', 1, 1, 'x86_64', 64, 262144, "
                      "4000, $5, 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', "
                      "'198.18.0.1:51820', 1, $6, 0)", "sssssi", node[i],
                      name, provider, cred, mesh, now_s()));
    }
    for (int i = 0; i < nvms; i++) {
        char id[UUID_STR_LEN + 1];
        add_vm(&a, tenant, net, i, node[i % nodes], id);
    }
    ok("commit", store_tx_commit(a.store));
    double setup_ms = bench_now_ms() - t0;

    /* Agents of each form: the networks' names and MACs in each network
     * entry (contract 2), then as items of AGENT_NET_VMS (today's). */
    static const int contracts[2] = { AGENT_CONTRACT_NET_VMS - 1,
                                      AGENT_CONTRACT_NET_VMS };
    struct phase ph[2];
    int made = nvms;
    for (int p = 0; p < 2; p++) {
        ok("contract", store_exec(a.store, "UPDATE nodes SET agent_contract "
                                  "= $1, revision = revision + 1, whole_rev = "
                                  "revision + 1", "i",
                                  (int64_t)contracts[p]));
        desired_cache_invalidate(NULL);
        phase_run(&a, tenant, net, node, rev, nodes, &made, creates, &ph[p]);
    }
    double load[3] = { 0 };
    if (getloadavg(load, 3) < 0)
        load[0] = -1;
    printf("A create in one network of %d VMs over %d nodes: every node's "
           "next document (sqlite, in-process; medians of %d creates; "
           "setup %.1f s; load %.2f), for agents of contract %d and %d\n\n",
           nvms, nodes, creates, setup_ms / 1e3, load[0], contracts[0],
           contracts[1]);
    printf("| per create | names and MACs in each network (contract %d) | "
           "the network's VMs as items (contract %d) |\n", contracts[0],
           contracts[1]);
    printf("|---|---|---|\n");
    printf("| the create's transaction (VM, NIC, its change told), CPU | "
           "%.3f ms | %.3f ms |\n", ph[0].tx, ph[1].tx);
    printf("| every node's next document, controller CPU | %.2f ms | "
           "%.2f ms |\n", ph[0].cpu, ph[1].cpu);
    printf("| every node's next document, wall clock | %.2f ms | %.2f ms |\n",
           ph[0].wall, ph[1].wall);
    printf("| CPU per node's document | %.1f us | %.1f us |\n",
           ph[0].cpu * 1e3 / nodes, ph[1].cpu * 1e3 / nodes);
    printf("| bytes sent, all nodes | %.0f | %.0f |\n", ph[0].bytes,
           ph[1].bytes);
    store_close(a.store);
    http_server_stop(a.http, 0);
    tu_rmrf(dir);
    free(dir);
    free(node);
    free(rev);
    return 0;
}
