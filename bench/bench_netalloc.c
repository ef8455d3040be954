/* Address allocation as a network fills: a tenant network holding 60,000
 * VMs against an empty one, in the same run, on the controller's sqlite
 * store. Each round deletes a random VM of the network (its address goes
 * back to the free map) and creates one (which takes the lowest free
 * address), each in its own transaction as the API runs them: the churn
 * that made a crowded network's create walk its run of taken addresses.
 * Figures: median microseconds per create and per delete of 3 runs, and
 * the crowded/empty ratio (the goal: 1, a network creates as fast
 * whatever its size). Not pass/fail. FOG_BENCH_ROUNDS sets the rounds per
 * run (default 2000). */
#include "common/jsonutil.h"
#include "controller/netalloc.h"
#include "controller/store.h"
#include "bench/bench_util.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>

#define RUNS 3
#define CROWD 60000
#define NET_CROWD ((10u << 24) | (20u << 16)) /* 10.20.0.0/16 */
#define NET_EMPTY ((10u << 24) | (21u << 16)) /* 10.21.0.0/16 */

/* Network `id` at net/16, with n addresses taken by VMs "<id>-0".. from
 * its first host up, its free map's top past them. */
static void network_fill(struct store *s, const char *id, uint32_t net, int n)
{
    _cleanup_free_ char *cidr = xasprintf("%u.%u.0.0/16", net >> 24,
                                          (net >> 16) & 255);
    _cleanup_free_ char *gw = xasprintf("%u.%u.0.1", net >> 24,
                                        (net >> 16) & 255);
    if (store_tx_begin(s) < 0 ||
        store_exec(s, "INSERT INTO networks (id, account_id, name, cidr, "
                      "gateway, vxlan_id, created_at, addr_top) VALUES ($1, "
                      "'ba', $1, $2, $3, $4, 1, $5)", "sssii", id, cidr, gw,
                   (int64_t)(net >> 16), (int64_t)net + 2 + n) < 0)
        abort();
    for (int i = 0; i < n; i++) {
        _cleanup_free_ char *vm = xasprintf("%s-%d", id, i);
        if (store_exec(s, "INSERT INTO net_addrs (network_id, addr, vm_id) "
                          "VALUES ($1, $2, $3)", "sis", id,
                       (int64_t)net + 2 + i, vm) < 0)
            abort();
    }
    if (store_tx_commit(s) < 0)
        abort();
}

/* `rounds` of delete-a-random-VM then create-one in network id (whose VMs
 * are "<id>-0".."<id>-(n-1)"); median microseconds of each to *ret_del
 * and *ret_add. */
static void churn(struct store *s, const char *id, int n, int rounds,
                  double *ret_del, double *ret_add)
{
    double *del = xcalloc((size_t)rounds, sizeof(*del));
    double *add = xcalloc((size_t)rounds, sizeof(*add));
    for (int r = 0; r < rounds; r++) {
        /* The one deleted takes the last one's name, so names stay
         * "<id>-0".."<id>-(n-1)" (one VM per name in net_addrs). */
        int k = rand() % n;
        _cleanup_free_ char *gone = xasprintf("%s-%d", id, k);
        _cleanup_free_ char *last = xasprintf("%s-%d", id, n - 1);
        double t0 = bench_now_ms();
        if (store_tx_begin(s) < 0 || netalloc_release(s, gone) < 0 ||
            store_exec(s, "UPDATE net_addrs SET vm_id = $1 WHERE vm_id = $2",
                       "ss", gone, last) < 0 ||
            store_tx_commit(s) < 0)
            abort();
        double t1 = bench_now_ms();
        if (store_tx_begin(s) < 0)
            abort();
        _cleanup_free_ char *addr = netalloc_address(s, id, last);
        if (!addr || store_tx_commit(s) < 0)
            abort();
        double t2 = bench_now_ms();
        del[r] = (t1 - t0) * 1e3;
        add[r] = (t2 - t1) * 1e3;
    }
    qsort(del, (size_t)rounds, sizeof(*del), bench_cmp_double);
    qsort(add, (size_t)rounds, sizeof(*add), bench_cmp_double);
    *ret_del = del[rounds / 2];
    *ret_add = add[rounds / 2];
    free(del);
    free(add);
}

static double median3(double v[RUNS])
{
    qsort(v, RUNS, sizeof(double), bench_cmp_double);
    return v[RUNS / 2];
}

int main(void)
{
    const char *e = getenv("FOG_BENCH_ROUNDS");
    int rounds = e && atoi(e) > 0 ? atoi(e) : 2000;
    _cleanup_free_ char *dir = tu_tempdir("bench-netalloc");
    _cleanup_free_ char *db = xasprintf("%s/fog.db", dir);
    struct store *s;
    if (store_open(db, &s) < 0 ||
        store_exec(s, "INSERT INTO accounts (id, name, role, created_at) "
                      "VALUES ('ba', 'bench', 'tenant', 1)", "") < 0)
        return 1;
    srand(1);
    double tf = bench_now_ms();
    network_fill(s, "crowd", NET_CROWD, CROWD);
    double fill_s = (bench_now_ms() - tf) / 1e3;
    /* The empty network starts with one VM, so a round has one to delete. */
    network_fill(s, "empty", NET_EMPTY, 1);
    double cd[RUNS], ca[RUNS], ed[RUNS], ea[RUNS];
    for (int i = 0; i < RUNS; i++) {
        churn(s, "crowd", CROWD, rounds, &cd[i], &ca[i]);
        churn(s, "empty", 1, rounds, &ed[i], &ea[i]);
    }
    double c_add = median3(ca), e_add = median3(ea);
    double c_del = median3(cd), e_del = median3(ed);
    printf("| %-34s | %10s | %10s | %6s |\n", "network (sqlite, us median)",
           "60k VMs", "empty", "ratio");
    printf("| %-34s | %10s | %10s | %6s |\n", "---", "---", "---", "---");
    printf("| %-34s | %10.1f | %10.1f | %6.2f |\n",
           "create after a delete (address)", c_add, e_add, c_add / e_add);
    printf("| %-34s | %10.1f | %10.1f | %6.2f |\n",
           "delete (address back to the map)", c_del, e_del, c_del / e_del);
    double load[3];
    if (getloadavg(load, 3) == 3)
        printf("| %-34s | %d rounds x %d, fill %.1f s, load %.2f %.2f %.2f "
               "|\n", "(machine)", rounds, RUNS, fill_s, load[0], load[1],
               load[2]);
    store_close(s);
    tu_rmrf(dir);
    return 0;
}
