/* Placement throughput: pending VMs placed per second on 1k and 10k
 * approved, reachable nodes of varied capacity, with and without provider
 * policies, through the controller's own scheduler on a temporary sqlite
 * store, in-process (no HTTP requests; a route-less server on loopback
 * takes the long-poll wake-ups). Prints a markdown table of medians over
 * several runs, then a second table for a stream of creates (see
 * place_stream); fails only when a placement breaks a rule (capacity,
 * KVM, policy, locked price) or a VM stays pending (the fleet has room
 * for all).
 * Usage: bench_sched [VMS [RUNS [NODES...]]], default 1000 3 1000 10000. */
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "controller/accrual.h"
#include "controller/scheduler.h"
#include "tests/testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* What one run measured. */
struct sched_result {
    double setup_s;      /* inserting nodes and VMs */
    double wall_s;       /* placing every VM */
    double per_s;        /* placements per second */
    double per_cpu_s;    /* placements per second of the placing thread's
                            CPU time (steady on a loaded machine) */
    double p50_ms, p99_ms, max_ms; /* one scheduler_place (by_place only) */
    double stuck_ms;     /* a scheduler_run finding STUCK VMs room nowhere */
    int64_t placed, pending;
    /* The stream (by_stream only): placements per second, their p99 and
     * longest, and the longest wait of another writer's commit. */
    double s_per_s, s_p99_ms, s_max_ms, w_max_ms;
};

static void die(const char *what, int e)
{
    fprintf(stderr, "bench_sched: %s failed (%d)\n", what, e);
    exit(1);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* p-quantile of v[0..n) (sorted in place). */
static int64_t pct(int64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_i64);
    return v[(size_t)(p * (double)(n - 1) + 0.5)];
}

static int64_t cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A small deterministic generator, so every run sees the same fleet. */
static uint32_t rnd(uint64_t *st)
{
    *st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(*st >> 33);
}

static void exec_or_die(const char *what, int e)
{
    if (e < 0)
        die(what, e);
}

/* Providers own 10 nodes each: a home rig has 32 threads, a farm box 128.
 * One node in ten has no KVM; with `policy`, half accept only the nginx
 * template and the debian-12 image. Offers vary around the default. */
static void insert_nodes(struct app *a, int nodes, bool policy, int64_t now,
                         uint64_t *seed)
{
    static const int64_t vcpus[] = { 32, 48, 64, 96, 128 };
    static const int64_t disk[] = { 1000, 2000, 4000 };
    static const char *const models[] = { "AMD Ryzen 9 7950X",
                                          "Intel Xeon Gold 6338",
                                          "AMD EPYC 7543" };
    char provider[UUID_STR_LEN + 1] = "";
    for (int i = 0; i < nodes; i++) {
        if (i % 10 == 0) {
            uuid_generate_str(provider);
            _cleanup_free_ char *pname = xasprintf("miner-%d", i / 10);
            exec_or_die("insert provider",
                        store_exec(a->store, "INSERT INTO accounts (id, name, "
                                   "role, created_at) VALUES ($1, $2, "
                                   "'provider', $3)", "ssi", provider, pname,
                                   now - 86400 * 30));
        }
        char id[UUID_STR_LEN + 1];
        uuid_generate_str(id);
        int64_t cpus = vcpus[rnd(seed) % ARRAY_SIZE(vcpus)];
        int64_t mem = cpus * (2048 + 1024 * (rnd(seed) % 3));
        int64_t gib = disk[rnd(seed) % ARRAY_SIZE(disk)];
        bool kvm = rnd(seed) % 10 != 0;
        _cleanup_free_ char *name = xasprintf("rig-%d", i);
        _cleanup_free_ char *cred = xasprintf("fogn_%08x%04x", (unsigned)i,
                                              rnd(seed) & 0xffff);
        int m = i + 1;
        _cleanup_free_ char *mesh = xasprintf("100.%d.%d.%d", 96 + m / 65536,
                                              m / 256 % 256, m % 256);
        _cleanup_free_ char *pub = xasprintf("198.%d.%d.%d", 18 + i / 65536,
                                             i / 256 % 256, i % 256);
        _cleanup_free_ char *ep = xasprintf("%s:51820", pub);
        _cleanup_free_ char *wg = xasprintf("%08x%08x%08x%08x%08x%03x=",
                                            rnd(seed), rnd(seed), rnd(seed),
                                            rnd(seed), rnd(seed),
                                            rnd(seed) & 0xfff);
        /* Joined over the past month, oldest first; seen just now. */
        int64_t joined = now - 86400 * 30 + (int64_t)i * 86400 * 30 / nodes;
        exec_or_die("insert node",
                    store_exec(a->store,
                               "INSERT INTO nodes (id, name, account_id, "
                               "cred_id, cred_salt, cred_hash, approved, kvm, "
                               "arch, cpu_model, vcpus, memory_mib, disk_gib, "
                               "mesh_ip, wg_public_key, endpoint, "
                               "observed_endpoint, revision, last_seen, "
                               "created_at, public_ip) VALUES ($1, $2, $3, $4, "
                               "'00112233445566778899aabbccddeeff', "
                               "'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b93"
                               "4ca495991b7852b855', 1, $5, 'x86_64', $6, $7, "
                               "$8, $9, $10, $11, $12, $12, 1, $13, $14, $15)",
                               "ssssbsiiisssiis", id, name, provider, cred, kvm,
                               models[i % ARRAY_SIZE(models)], cpus, mem, gib,
                               mesh, wg, ep, now, joined, pub));
        exec_or_die("insert offer",
                    store_exec(a->store,
                               "INSERT INTO node_offers (node_id, vcpu_hour, "
                               "mem_gib_hour, disk_gib_month, gpu_hour, "
                               "port_hour, updated_at) VALUES ($1, $2, $3, $4, "
                               "0, 1000000, $5)", "siiii", id,
                               (int64_t)(5 + rnd(seed) % 10) * 1000000,
                               (int64_t)(2 + rnd(seed) % 5) * 1000000,
                               (int64_t)(50 + rnd(seed) % 100) * 1000000,
                               joined));
        /* Drawn with or without policies, so both fleets are alike. */
        bool restricted = rnd(seed) % 2 == 0;
        if (policy && restricted) {
            exec_or_die("insert policy",
                        store_exec(a->store,
                                   "INSERT INTO node_policy (node_id, kind, "
                                   "name) VALUES ($1, 'template', 'nginx'), "
                                   "($1, 'image', 'debian-12')", "s", id));
        }
    }
}

/* Tenants run 10 VMs each on their default network; shapes from 1 vCPU /
 * 1 GiB to 8 vCPUs / 16 GiB, a third from templates, one in five allows
 * TCG, one in ten publishes a port. Created a second apart, oldest first. */
static void insert_vms(struct app *a, int nvms, int64_t now, uint64_t *seed)
{
    static const struct { int64_t vcpus, mem, disk; } shapes[] = {
        { 1, 1024, 10 }, { 2, 2048, 20 }, { 2, 4096, 40 }, { 4, 8192, 80 },
        { 8, 16384, 160 },
    };
    static const char *const images[] = { "debian-12", "ubuntu-24.04",
                                          "debian-12", "alpine-3.20" };
    static const char *const templates[] = { "nginx", "minecraft", "nginx" };
    char tenant[UUID_STR_LEN + 1] = "", net[UUID_STR_LEN + 1] = "";
    for (int i = 0; i < nvms; i++) {
        int t = i / 10;
        if (i % 10 == 0) {
            uuid_generate_str(tenant);
            uuid_generate_str(net);
            _cleanup_free_ char *tname = xasprintf("tenant-%d", t);
            _cleanup_free_ char *cidr = xasprintf("10.%d.%d.0/24",
                                                  128 + t / 256, t % 256);
            _cleanup_free_ char *gw = xasprintf("10.%d.%d.1", 128 + t / 256,
                                                t % 256);
            exec_or_die("insert tenant",
                        store_exec(a->store, "INSERT INTO accounts (id, name, "
                                   "role, created_at) VALUES ($1, $2, "
                                   "'tenant', $3)", "ssi", tenant, tname,
                                   now - 86400));
            exec_or_die("insert network",
                        store_exec(a->store,
                                   "INSERT INTO networks (id, account_id, "
                                   "name, cidr, gateway, vxlan_id, is_default, "
                                   "created_at) VALUES ($1, $2, 'default', $3, "
                                   "$4, $5, 1, $6)", "ssssii", net, tenant,
                                   cidr, gw, (int64_t)1000 + t, now - 86400));
        }
        char id[UUID_STR_LEN + 1];
        uuid_generate_str(id);
        uint32_t pick = rnd(seed);
        int k = (int)(pick % ARRAY_SIZE(shapes));
        const char *image = images[(pick >> 8) % ARRAY_SIZE(images)];
        const char *tmpl = (pick >> 12) % 3 == 0 ?
                           templates[(pick >> 16) % ARRAY_SIZE(templates)] :
                           NULL;
        bool tcg = (pick >> 20) % 5 == 0;
        _cleanup_free_ char *name = xasprintf("vm-%d", i);
        _cleanup_free_ char *addr = xasprintf("10.%d.%d.%d", 128 + t / 256,
                                              t % 256, 2 + i % 10);
        _cleanup_free_ char *addrs = xasprintf("[\"%s\"]", addr);
        _cleanup_free_ char *mac = xasprintf("02:fb:%02x:%02x:%02x:%02x",
                                             (i >> 24) & 0xff, (i >> 16) & 0xff,
                                             (i >> 8) & 0xff, i & 0xff);
        int64_t created = now - nvms + i;
        exec_or_die("insert vm",
                    store_exec(a->store,
                               "INSERT INTO vms (id, account_id, name, vcpus, "
                               "memory_mib, disk_gib, image, allow_tcg, "
                               "user_data, desired_state, state, addresses, "
                               "created_at, updated_at, template) VALUES ($1, "
                               "$2, $3, $4, $5, $6, $7, $8, '#cloud-config\n', "
                               "'running', 'pending', $9, $10, $10, $11)",
                               "sssiiisbsis", id, tenant, name, shapes[k].vcpus,
                               shapes[k].mem, shapes[k].disk, image, tcg, addrs,
                               created, tmpl));
        exec_or_die("insert nic",
                    store_exec(a->store,
                               "INSERT INTO vm_nics (vm_id, idx, network_id, "
                               "mac, address) VALUES ($1, 0, $2, $3, $4)",
                               "ssss", id, net, mac, addr));
        if (i % 10 == 3) {
            char port[UUID_STR_LEN + 1];
            uuid_generate_str(port);
            exec_or_die("insert port",
                        store_exec(a->store,
                                   "INSERT INTO ports (id, vm_id, proto, "
                                   "vm_port, want_port, created_at) VALUES "
                                   "($1, $2, 'tcp', 80, NULLIF($3, 0), $4)",
                                   "ssii", port, id,
                                   (int64_t)(i % 20 == 3 ? 20080 : 0),
                                   created));
        }
    }
}

/* Rules every placement must keep; the number of broken ones. */
static int64_t violations(struct app *a)
{
    int64_t over = store_query_int(
        a->store, -1,
        "SELECT COUNT(*) FROM nodes n WHERE n.vcpus < (SELECT COALESCE(SUM("
        "v.vcpus), 0) FROM vms v WHERE v.node_id = n.id AND v.deleted_at IS "
        "NULL) OR n.memory_mib < (SELECT COALESCE(SUM(v.memory_mib), 0) FROM "
        "vms v WHERE v.node_id = n.id AND v.deleted_at IS NULL) OR n.disk_gib "
        "< (SELECT COALESCE(SUM(v.disk_gib), 0) FROM vms v WHERE v.node_id = "
        "n.id AND v.deleted_at IS NULL)", "");
    int64_t tcg = store_query_int(a->store, -1,
                                  "SELECT COUNT(*) FROM vms v JOIN nodes n ON "
                                  "n.id = v.node_id WHERE n.kvm = 0 AND "
                                  "v.allow_tcg = 0", "");
    int64_t refused = store_query_int(
        a->store, -1,
        "SELECT COUNT(*) FROM vms v WHERE v.node_id IN (SELECT node_id FROM "
        "node_policy) AND NOT EXISTS (SELECT 1 FROM node_policy p WHERE "
        "p.node_id = v.node_id AND ((p.kind = 'template' AND p.name = "
        "v.template) OR (p.kind = 'image' AND p.name = v.image)))", "");
    int64_t unpriced = store_query_int(a->store, -1,
                                       "SELECT COUNT(*) FROM vms WHERE node_id "
                                       "IS NOT NULL AND deal_id IS NULL", "");
    if (over < 0 || tcg < 0 || refused < 0 || unpriced < 0)
        die("checking placements", -EIO);
    if (over || tcg || refused || unpriced)
        fprintf(stderr, "bench_sched: %lld nodes overcommitted, %lld VMs on "
                        "TCG without leave, %lld on refusing nodes, %lld "
                        "without a deal\n", (long long)over, (long long)tcg,
                (long long)refused, (long long)unpriced);
    return over + tcg + refused + unpriced;
}

/* Until nothing pending fits: scheduler_run as the reconciler calls it.
 * Returns how many were placed. */
static int64_t place_by_run(struct app *a)
{
    int64_t placed = 0;
    int r;
    while ((r = scheduler_run(a)) > 0)
        placed += r;
    return placed;
}

/* Until nothing pending fits: scheduler_run's own loop (pending VMs oldest
 * first, 1000 at a time), each VM through scheduler_place as a create
 * does, with a clock around every call. */
static int64_t place_one_by_one(struct app *a, int64_t **lat, size_t *n)
{
    size_t cap = 1024;
    int64_t placed = 0;
    int e;
    *lat = xcalloc(cap, sizeof(**lat));
    *n = 0;
    for (;;) {
        json_auto_t *rows = NULL;
        size_t i;
        json_t *row;
        int batch = 0;
        if ((e = store_query(a->store, &rows,
                             "SELECT id FROM vms WHERE node_id IS NULL AND "
                             "deleted_at IS NULL AND desired_state <> "
                             "'deleted' ORDER BY created_at, id LIMIT 1000",
                             "")) < 0)
            die("pending query", e);
        json_array_foreach(rows, i, row) {
            int64_t t0 = mono_us();
            int r = scheduler_place(a, json_str(row, "id"));
            int64_t dt = mono_us() - t0;
            if (r < 0)
                die("scheduler_place", r);
            if (*n == cap) {
                cap *= 2;
                *lat = xrealloc(*lat, cap * sizeof(**lat));
            }
            (*lat)[(*n)++] = dt;
            batch += r;
        }
        placed += batch;
        if (batch == 0)
            return placed;
    }
}

/* A stream of creates: for STREAM_MS, pending VMs placed one at a time
 * by scheduler_place, as creates place theirs, with the reconciler's
 * fleet refresh ticking every second beside them, as in the controller,
 * and another writer committing a one-row transaction every 5 ms (an API
 * write). A fleet loaded inside a placing transaction shows as a long
 * wait of that writer, one loaded by a placement as a long placement
 * (the first, which finds no fleet loaded, aside). */
enum { STREAM_MS = 2000, STREAM_VMS = 10000 };

struct stream_side {
    struct app *a;
    atomic_bool stop;
    int64_t *waits;
    size_t n, cap;
};

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void *stream_refresh(void *arg)
{
    struct stream_side *side = arg;
    while (!atomic_load(&side->stop)) {
        scheduler_fleet_refresh(side->a);
        for (int i = 0; i < 100 && !atomic_load(&side->stop); i++)
            sleep_ms(10);
    }
    return NULL;
}

static void *stream_writer(void *arg)
{
    struct stream_side *side = arg;
    while (!atomic_load(&side->stop)) {
        int64_t t0 = mono_us();
        exec_or_die("writer begin", store_tx_begin(side->a->store));
        exec_or_die("writer update",
                    store_exec(side->a->store, "INSERT INTO settings (key, "
                               "value) VALUES ('bench', $1) ON CONFLICT (key) "
                               "DO UPDATE SET value = excluded.value", "i",
                               t0));
        exec_or_die("writer commit", store_tx_commit(side->a->store));
        if (side->n == side->cap) {
            side->cap = side->cap ? 2 * side->cap : 1024;
            side->waits = xrealloc(side->waits,
                                   side->cap * sizeof(*side->waits));
        }
        side->waits[side->n++] = mono_us() - t0;
        sleep_ms(5);
    }
    return NULL;
}

/* The stream on a's store: placements until STREAM_MS passed. */
static int64_t place_stream(struct app *a, struct sched_result *ret)
{
    struct stream_side side = { .a = a };
    pthread_t refresher, writer;
    if (pthread_create(&refresher, NULL, stream_refresh, &side) ||
        pthread_create(&writer, NULL, stream_writer, &side))
        die("pthread_create", -EAGAIN);
    json_auto_t *rows = NULL;
    if (store_query(a->store, &rows, "SELECT id FROM vms WHERE node_id IS "
                    "NULL ORDER BY created_at, id", "") < 0)
        die("pending query", -EIO);
    size_t n = json_array_size(rows), k = 0;
    int64_t *lat = xcalloc(n + 1, sizeof(*lat)), placed = 0;
    int64_t start = mono_us();
    while (k < n && mono_us() - start < STREAM_MS * 1000) {
        int64_t t0 = mono_us();
        int r = scheduler_place(a, json_str(json_array_get(rows, k), "id"));
        lat[k++] = mono_us() - t0;
        if (r < 0)
            die("scheduler_place", r);
        placed += r;
    }
    double wall = (double)(mono_us() - start) / 1e6;
    atomic_store(&side.stop, true);
    pthread_join(refresher, NULL);
    pthread_join(writer, NULL);
    if (k == n)
        fprintf(stderr, "bench_sched: the stream ran out of pending VMs\n");
    ret->s_per_s = (double)placed / (wall > 0 ? wall : 1e-9);
    /* The first placement loads the fleet, as the first create after a
     * quiet spell does: the longest is of the ones after it. */
    ret->s_p99_ms = k > 1 ? (double)pct(lat + 1, k - 1, 0.99) / 1e3 : 0;
    ret->s_max_ms = k > 1 ? (double)lat[k - 1] / 1e3 : 0;
    qsort(side.waits, side.n, sizeof(*side.waits), cmp_i64);
    ret->w_max_ms = side.n ? (double)side.waits[side.n - 1] / 1e3 : 0;
    free(lat);
    free(side.waits);
    return placed;
}

/* VMs too big for any node wait, and every reconciler tick tries them
 * again: how long one such tick takes with STUCK of them pending. */
enum { STUCK = 100 };

static double stuck_tick_ms(struct app *a, int64_t now)
{
    exec_or_die("begin", store_tx_begin(a->store));
    json_auto_t *owner = NULL;
    exec_or_die("tenant", store_query_one(a->store, &owner, "SELECT id FROM "
                                          "accounts WHERE role = 'tenant' "
                                          "LIMIT 1", ""));
    for (int i = 0; i < STUCK; i++) {
        char id[UUID_STR_LEN + 1];
        uuid_generate_str(id);
        _cleanup_free_ char *name = xasprintf("huge-%d", i);
        exec_or_die("insert huge vm",
                    store_exec(a->store,
                               "INSERT INTO vms (id, account_id, name, vcpus, "
                               "memory_mib, disk_gib, image, desired_state, "
                               "state, created_at, updated_at) VALUES ($1, $2, "
                               "$3, 1024, 4194304, 100000, 'debian-12', "
                               "'running', 'pending', $4, $4)", "sssi", id,
                               json_str(owner, "id"), name, now + i));
    }
    exec_or_die("commit", store_tx_commit(a->store));
    int64_t t = mono_us();
    int r = scheduler_run(a);
    double ms = (double)(mono_us() - t) / 1e3;
    if (r != 0)
        die("placing VMs that fit nowhere", -EINVAL);
    return ms;
}

enum sched_mode { BY_RUN, BY_PLACE, BY_STREAM };

/* One run on a fresh store: the fleet, the VMs, then placing them all
 * through scheduler_run, or one by one through scheduler_place, or a
 * stream of them (STREAM_VMS pending). Returns the number of broken
 * placement rules. */
static int64_t run_once(struct app *a, int nodes, int nvms, bool policy,
                        enum sched_mode mode, struct sched_result *ret)
{
    bool by_place = mode == BY_PLACE;
    char *dir = tu_tempdir("bench-sched");
    char *db = xasprintf("%s/fog.db", dir);
    uint64_t seed = 42;
    int64_t now = now_s(), t;
    int e;

    if ((e = store_open(db, &a->store)) < 0)
        die("store_open", e);
    t = mono_us();
    exec_or_die("begin", store_tx_begin(a->store));
    insert_nodes(a, nodes, policy, now, &seed);
    insert_vms(a, mode == BY_STREAM ? STREAM_VMS : nvms, now, &seed);
    exec_or_die("commit", store_tx_commit(a->store));
    ret->setup_s = (double)(mono_us() - t) / 1e6;

    int64_t *lat = NULL, placed;
    size_t n = 0;
    t = mono_us();
    int64_t cpu = cpu_us();
    placed = mode == BY_STREAM ? place_stream(a, ret)
             : by_place        ? place_one_by_one(a, &lat, &n)
                               : place_by_run(a);
    ret->wall_s = (double)(mono_us() - t) / 1e6;
    double cpu_s = (double)(cpu_us() - cpu) / 1e6;
    ret->per_s = (double)placed / (ret->wall_s > 0 ? ret->wall_s : 1e-9);
    ret->per_cpu_s = (double)placed / (cpu_s > 0 ? cpu_s : 1e-9);
    ret->p50_ms = (double)pct(lat, n, 0.5) / 1e3;
    ret->p99_ms = (double)pct(lat, n, 0.99) / 1e3;
    ret->max_ms = n ? (double)lat[n - 1] / 1e3 : 0;
    ret->placed = placed;
    /* A stream leaves VMs pending by design: it stops on time. */
    ret->pending = mode == BY_STREAM ? 0
                   : store_query_int(a->store, -1, "SELECT COUNT(*) FROM "
                                     "vms WHERE node_id IS NULL", "");
    int64_t bad = violations(a);
    if (mode == BY_RUN)
        ret->stuck_ms = stuck_tick_ms(a, now);
    free(lat);
    store_close(a->store);
    a->store = NULL;
    tu_rmrf(dir);
    free(dir);
    free(db);
    return bad;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    int nvms = argc > 1 ? atoi(argv[1]) : 1000;
    int runs = argc > 2 ? atoi(argv[2]) : 3;
    int fleets[8] = { 1000, 10000 }, nfleets = 2;
    if (argc > 3) {
        nfleets = 0;
        for (int i = 3; i < argc && nfleets < (int)ARRAY_SIZE(fleets); i++)
            fleets[nfleets++] = atoi(argv[i]);
    }
    bool usage_ok = nvms >= 1 && runs >= 1 && runs <= 15;
    for (int i = 0; i < nfleets; i++)
        usage_ok = usage_ok && fleets[i] >= 1;
    if (!usage_ok) {
        fprintf(stderr, "usage: bench_sched [VMS [RUNS (1..15) [NODES...]]]\n");
        return 2;
    }
    log_set_level(LOG_ERR);
    struct app a = { 0 };
    /* Nobody heartbeats during a run: a day-long interval keeps the fleet
     * reachable however long placing takes. */
    a.cfg.heartbeat_s = 86400;
    /* Every weight on: price, spread and reputation count alike. */
    a.cfg.weight_price = 1;
    a.cfg.weight_spread = 1;
    a.cfg.weight_reputation = 1;
    int e;
    if ((e = billing_configure(60, 500, 0, 5, "FOG",
                               "vcpu=0.01,mem=0.005,disk=0.1")) < 0)
        die("billing_configure", e);
    /* Placement wakes the node's parked long poll: a server with no routes
     * on loopback, so that path runs as in the controller. */
    struct http_server_opts o = { .listen = "127.0.0.1:0", .threads = 1,
                                  .max_body = 1024 };
    if ((e = http_server_start(&o, &a.http)) < 0)
        die("http_server_start", e);

    printf("Scheduler: %d pending VMs on a fleet of approved, reachable "
           "nodes, placed by scheduler_run (the reconciler's call) and, on a "
           "fresh copy, one by one by scheduler_place (a create's call); "
           "median of %d runs; sqlite, in-process\n\n", nvms, runs);
    double load[3] = { 0 };
    if (getloadavg(load, 3) < 1)
        load[0] = -1;
    printf("Load average before the runs: %.2f (%ld CPUs online); per "
           "CPU-second: placements over the placing thread's own CPU time, "
           "which other load on the machine does not lower\n\n", load[0],
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("| nodes | policies | VMs placed | scheduler_run placements/s | "
           "scheduler_run per CPU-s | all placed in (s) | scheduler_place "
           "placements/s | scheduler_place per CPU-s | placement p50 (ms) | "
           "placement p99 (ms) | tick, %d VMs fit nowhere (ms) | setup (s) "
           "|\n", STUCK);
    printf("|------:|:---------|-----------:|---------------------------:|"
           "------------------------:|------------------:|"
           "-----------------------------:|--------------------------:|"
           "-------------------:|-------------------:|"
           "------------------------------:|----------:|\n");
    fflush(stdout);
    int64_t bad = 0, left = 0;
    /* The stream's medians, printed after the first table: per fleet and
     * policy, placements/s, p99, longest, the writer's longest wait. */
    double stream[8][2][4];
    for (int f = 0; f < nfleets; f++) {
        for (int pol = 0; pol < 2; pol++) {
            double run_s[15], run_cpu[15], wall[15], place_s[15],
                   place_cpu[15], p50[15], p99[15], stuck[15], setup[15],
                   s_per[15], s_p99[15], s_max[15], w_max[15];
            int64_t placed = 0;
            for (int r = 0; r < runs; r++) {
                struct sched_result byrun = { 0 }, byone = { 0 },
                                    bys = { 0 };
                bad += run_once(&a, fleets[f], nvms, pol, BY_RUN, &byrun);
                bad += run_once(&a, fleets[f], nvms, pol, BY_PLACE, &byone);
                bad += run_once(&a, fleets[f], nvms, pol, BY_STREAM, &bys);
                s_per[r] = bys.s_per_s;
                s_p99[r] = bys.s_p99_ms;
                s_max[r] = bys.s_max_ms;
                w_max[r] = bys.w_max_ms;
                left += byrun.pending + byone.pending;
                run_s[r] = byrun.per_s;
                run_cpu[r] = byrun.per_cpu_s;
                place_cpu[r] = byone.per_cpu_s;
                wall[r] = byrun.wall_s;
                place_s[r] = byone.per_s;
                p50[r] = byone.p50_ms;
                p99[r] = byone.p99_ms;
                stuck[r] = byrun.stuck_ms;
                setup[r] = byrun.setup_s;
                placed = byrun.placed;
                if (getenv("BENCH_SCHED_VERBOSE"))
                    fprintf(stderr, "  run %d, %d nodes%s: scheduler_run "
                                    "placed %lld in %.2f s (%.0f/s); "
                                    "scheduler_place placed %lld in %.2f s "
                                    "(%.0f/s), p50 %.3f ms, p99 %.3f ms, "
                                    "max %.3f ms; stuck tick %.0f ms\n",
                            r + 1, fleets[f],
                            pol ? ", 50% with policy" : "",
                            (long long)byrun.placed, byrun.wall_s,
                            byrun.per_s, (long long)byone.placed,
                            byone.wall_s, byone.per_s, byone.p50_ms,
                            byone.p99_ms, byone.max_ms, byrun.stuck_ms);
            }
            printf("| %5d | %-8s | %10lld | %26.0f | %23.0f | %17.2f | "
                   "%28.0f | %25.0f | %18.3f | %18.3f | %29.0f | %9.2f |\n",
                   fleets[f], pol ? "50%" : "none", (long long)placed,
                   median(run_s, runs), median(run_cpu, runs),
                   median(wall, runs), median(place_s, runs),
                   median(place_cpu, runs), median(p50, runs),
                   median(p99, runs), median(stuck, runs),
                   median(setup, runs));
            fflush(stdout);
            stream[f][pol][0] = median(s_per, runs);
            stream[f][pol][1] = median(s_p99, runs);
            stream[f][pol][2] = median(s_max, runs);
            stream[f][pol][3] = median(w_max, runs);
        }
    }
    printf("\nA stream of creates: for %d ms, pending VMs (%d of them) "
           "placed one at a time by scheduler_place, the reconciler's fleet "
           "refresh ticking every second beside them and another writer "
           "committing a one-row transaction every 5 ms; median of %d "
           "runs. A fleet loaded inside a placing transaction shows as a "
           "long wait of that writer, one loaded by a placement as a long "
           "placement; the first placement, which loads the fleet as the "
           "first create after a quiet spell does, is left out.\n\n",
           STREAM_MS, STREAM_VMS, runs);
    printf("| nodes | policies | placements/s | placement p99 (ms) | "
           "longest placement (ms) | other writer's longest commit (ms) "
           "|\n");
    printf("|------:|:---------|-------------:|-------------------:|"
           "-----------------------:|-----------------------------------:|"
           "\n");
    for (int f = 0; f < nfleets; f++)
        for (int pol = 0; pol < 2; pol++)
            printf("| %5d | %-8s | %12.0f | %18.3f | %22.3f | %34.3f |\n",
                   fleets[f], pol ? "50%" : "none", stream[f][pol][0],
                   stream[f][pol][1], stream[f][pol][2], stream[f][pol][3]);
    http_server_stop(a.http, 0);
    if (left)
        fprintf(stderr, "bench_sched: %lld VMs left pending in all runs "
                        "together\n", (long long)left);
    return bad || left ? 1 : 0;
}
