/* fog-controller: `init` creates the data directory (database, CA, first
 * admin key); `serve` runs the HTTPS API, the scheduler and health checks. */
#include "api/agentproto.h"
#include "common/benchwork.h"
#include "common/config.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/sdnotify.h"
#include "common/timeutil.h"
#include "billing/money.h"
#include "controller/accrual.h"
#include "controller/app.h"
#include "controller/edge.h"
#include "controller/pubzone.h"
#include "controller/catalog.h"
#include "controller/auth.h"
#include "controller/backup.h"
#include "controller/benchmark.h"
#include "controller/bstore.h"
#include "controller/bstore_s3.h"
#include "controller/guard.h"
#include "controller/handlers.h"
#include "controller/migrate.h"
#include "controller/netalloc.h"
#include "controller/pki.h"
#include "controller/probe.h"
#include "controller/relay.h"
#include "controller/reload.h"
#include "controller/scheduler.h"
#include "controller/schema.h"
#include "images/addrpolicy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>

extern int64_t node_heartbeat_s;

#define F(x) CONFIG_FIELD(struct app_settings, x)
static const struct config_opt options[] = {
    { "data-dir", CONFIG_STRING, F(data_dir), 0, 0, "/var/lib/fogfabric",
      "directory holding fog.db, the CA and the server certificate" },
    { "database", CONFIG_STRING, F(database), 0, 0, NULL,
      "postgresql://... to use PostgreSQL; default: sqlite DATA-DIR/fog.db" },
    { "listen", CONFIG_STRING, F(listen), 0, 0, "127.0.0.1:8443",
      "address:port to serve on ([v6]:port for IPv6)" },
    { "probe-port", CONFIG_INT, F(probe_port), 0, 65534, "0",
      "UDP port (and the port above it) on the listen address answering "
      "nodes' public address probes, which find their WireGuard port's NAT "
      "mapping and class (0: off)" },
    { "relay-port", CONFIG_INT, F(relay_port), 0, 65535, "0",
      "UDP port on the listen address relaying WireGuard packets between "
      "nodes that cannot reach each other directly, by their NAT classes "
      "(needs --probe-port; 0: off)" },
    { "plain-http", CONFIG_BOOL, F(plain_http), 0, 0, NULL,
      "serve plain HTTP instead of HTTPS (only on a loopback address)" },
    { "heartbeat", CONFIG_INT, F(heartbeat_s), 1, 3600, "5",
      "seconds between agent status posts; 3 missed = unreachable" },
    { "longpoll", CONFIG_INT, F(longpoll_s), 1, 300, "30",
      "longest hold of an agent's desired-state poll, seconds" },
    { "idempotency-ttl", CONFIG_INT, F(idempotency_ttl_s), 60, 30 * 86400,
      "86400", "seconds an Idempotency-Key's answer is kept and replayed" },
    { "event-retention", CONFIG_INT, F(event_retention_s), 3600,
      3650 * 86400, "7776000", "seconds events are kept (default 90 days)" },
    { "max-body", CONFIG_INT, F(max_body), 1024, 64 << 20, "65536",
      "largest accepted request body, bytes" },
    { "threads", CONFIG_INT, F(threads), 1, 256, "4",
      "HTTP connection threads" },
    { "write-threads", CONFIG_INT, F(write_threads), 1, 256, "4",
      "threads that run mutating calls, so reads never wait behind them" },
    { "write-nice", CONFIG_INT, F(write_nice), 0, 19, "19",
      "nice value of those threads: reads get the CPU first when it is short" },
    { "conn-slice-us", CONFIG_INT, F(conn_slice_us), 0, 100000, "100",
      "CPU slice the connection threads ask of the kernel, microseconds "
      "(Linux 6.12+; 0: the kernel's default)" },
    /* 255: the most the i440fx machine type takes (libvirt refuses more). */
    { "max-vcpus", CONFIG_INT, F(max_vcpus), 1, 255, "64",
      "largest VM, vCPUs (at most 255, the pc machine's limit)" },
    { "max-memory-mib", CONFIG_INT, F(max_memory_mib), 64, 1 << 24, "262144",
      "largest VM, MiB of memory" },
    { "max-disk-gib", CONFIG_INT, F(max_disk_gib), 1, 1 << 20, "4096",
      "largest VM, GiB of disk" },
    { "max-image-gib", CONFIG_INT, F(max_image_gib), 1, 1 << 16, "64",
      "largest image file accepted by the catalog, GiB" },
    { "max-backup-gib", CONFIG_INT, F(max_backup_gib), 1, 1 << 20, "256",
      "largest sealed VM backup the hub keeps, GiB" },
    { "backup-store", CONFIG_STRING, F(backup_store), 0, 0, NULL,
      "where backups are kept: s3://BUCKET or https://HOST[:PORT]/BUCKET "
      "for an S3-compatible object store (default: DATA/backups)" },
    { "s3-region", CONFIG_STRING, F(s3_region), 0, 0, "us-east-1",
      "region the S3 backup store's requests are signed for" },
    { "s3-access-key-file", CONFIG_STRING, F(s3_key_file), 0, 0, NULL,
      "file (mode 0600) holding KEY:SECRET for the S3 backup store" },
    { "s3-ca", CONFIG_STRING, F(s3_ca), 0, 0, NULL,
      "CA file the S3 backup store's certificate is checked with "
      "(default: the system's)" },
    { "mesh-cidr", CONFIG_STRING, F(mesh_cidr), 0, 0, "100.96.0.0/12",
      "address range of the WireGuard mesh" },
    { "inspect", CONFIG_BOOL, F(inspect), 0, 0, "true",
      "inspect imported images with libguestfs (OS, version, arch)" },
    { "import-allow", CONFIG_STRING, F(import_allow), 0, 0, NULL,
      "CIDR,... that image imports by URL may reach although loopback, "
      "private, link-local or otherwise internal (default: none)" },
    { "templates-dir", CONFIG_STRING, F(templates_dir), 0, 0, NULL,
      "directory of application templates (*.json); default: the "
      "program's PREFIX/share/fogfabric/templates, a checkout's "
      "images/templates, /usr/share or /usr/local/share/fogfabric/templates" },
    { "accrual-interval", CONFIG_INT, F(accrual_s), 1, 86400, "60",
      "seconds between billing accrual runs" },
    { "accrual-batch", CONFIG_INT, F(accrual_batch), 1, 1000000, "5000",
      "VMs accrued per store transaction: the longest a write request "
      "waits for an accrual pass (some 35 ms per 1,000 VMs on sqlite)" },
    { "fee-bps", CONFIG_INT, F(fee_bps), 0, 10000, "500",
      "platform fee in basis points of every charge (500 = 5%)" },
    { "grace", CONFIG_INT, F(grace_s), 0, 30 * 86400, "3600",
      "seconds of running a tenant's balance must cover to create or start "
      "VMs" },
    { "token-symbol", CONFIG_STRING, F(token_symbol), 0, 0, "FOG",
      "symbol printed after token amounts" },
    { "default-offer", CONFIG_STRING, F(default_offer), 0, 0,
      "vcpu=0.01,mem=0.005,disk=0.1,gpu=0.5,port=0.001",
      "prices of nodes without an offer, tokens per vCPU-hour, GiB-hour of "
      "memory, GiB-month of disk, GPU-hour, port-hour" },
    { "sla-credit-bps", CONFIG_INT, F(sla_credit_bps), 0, 1000000, "0",
      "SLA credit for an outage (a VM that should run on an unreachable "
      "node): basis points of the outage's price moved from the provider to "
      "the tenant when it ends (10000 = once the price, 0 = none)" },
    { "evacuate-after", CONFIG_INT, F(evacuate_after_s), 1, 30 * 86400, "300",
      "seconds a node must be unreachable (or removed) before its VMs with "
      "restart policy on-host-failure are restored on another node from "
      "their latest ready backup (without one they are marked lost)" },
    { "backup-abandon-after", CONFIG_INT, F(backup_abandon_s), 60,
      30 * 86400, "86400",
      "seconds a backup may wait for its node's next bytes before it is "
      "failed as abandoned and its partial upload removed" },
    { "backup-full-every", CONFIG_INT, F(backup_full_every), 1,
      BACKUP_CHAIN_MAX, "7",
      "a VM's backups are incremental (the clusters changed since its last "
      "one) except the first and one in this many, which are full (1: "
      "every backup is full)" },
    { "default-max-price", CONFIG_STRING, F(default_max_price), 0, 0, "100",
      "tokens per hour a VM may cost when its create names no max_price "
      "(\"none\": no cap)" },
    { "weight-price", CONFIG_INT, F(weight_price), 0, 1000000, "1",
      "placement weight of price: score falls this much per token an hour" },
    { "weight-spread", CONFIG_INT, F(weight_spread), -1000000, 1000000, "0",
      "placement weight of free room after placing: > 0 spreads VMs over "
      "emptier nodes, < 0 packs them onto fuller ones" },
    { "weight-reputation", CONFIG_INT, F(weight_reputation), 0, 1000000, "0",
      "placement weight of reputation: score rises this much from a node of "
      "reputation 0 to one of 100 (an unmeasured node counts as 0)" },
    { "weight-benchmark", CONFIG_INT, F(weight_benchmark), 0, 1000000, "0",
      "placement weight of the benchmark: score rises this much from a node "
      "whose benchmark_pct is 0 to one of 100 (a node not benchmarked yet "
      "counts as 0)" },
    { "reputation-half-life", CONFIG_INT, F(reputation_half_life_s), 60,
      31536000, "604800",
      "seconds after which what the hub observed of a node (availability, "
      "faults, capped claims, wrong benchmarks) weighs half as much" },
    { "bench-every", CONFIG_INT, F(bench_every_s), -1, 31536000, "-1",
      "seconds between benchmark challenges to each node, the first at "
      "approval (0: none; -1: a day when --bench-guest serves the probe "
      "guest, else none)" },
    { "bench-memory", CONFIG_INT, F(bench_memory_mib), BENCH_MEMORY_MIN_MIB,
      BENCH_MEMORY_MAX_MIB, "64",
      "MiB the benchmark's worker fills and reads (its probe guest gets "
      "that much more than its kernel needs)" },
    { "bench-rounds", CONFIG_INT, F(bench_rounds), 1, BENCH_ROUNDS_MAX, "1",
      "passes over the benchmark's memory each lane makes" },
    { "bench-lanes", CONFIG_INT, F(bench_lanes), 1, BENCH_LANES_MAX, "2",
      "vCPUs of the benchmark's probe guest, one chain each" },
    { "bench-timeout", CONFIG_INT, F(bench_timeout_s), 10,
      AGENT_BENCH_TIMEOUT_MAX_S, "600",
      "seconds a node has to answer a benchmark challenge" },
    { "bench-guest", CONFIG_STRING, F(bench_guest), 0, 0, "",
      "folder holding the benchmark's probe guest (vmlinuz and initrd.gz, "
      "images/probe/build.sh makes them) that nodes fetch from the hub; "
      "empty: the packaged one (<prefix>/share/fogfabric/probe beside the "
      "installed program) when there; needed for challenges "
      "(--bench-every)" },
    { "bench-ref", CONFIG_INT, F(bench_ref), 1, 1000000000, "1000000",
      "benchmark steps a second per vCPU that back one approved vCPU whole: "
      "a node offers at most floor(score x lanes / this) vCPUs, and a share "
      "below it lowers its reputation" },
    { "tenant-pools", CONFIG_STRING, F(tenant_pools), 0, 0,
      "10.0.0.0/9,172.16.0.0/12",
      "comma-separated ranges tenants' network CIDRs must lie in (never the "
      "mesh or 10.128.0.0/9, where default networks live)" },
    { "quota-networks", CONFIG_INT, F(quota_networks), -1, 1000000, "10",
      "networks per tenant (besides its default network)" },
    { "quota-vms", CONFIG_INT, F(quota_vms), -1, 1000000, "20",
      "VMs per tenant" },
    { "quota-ports", CONFIG_INT, F(quota_ports), -1, 1000000, "64",
      "published ports per tenant" },
    { "quota-images", CONFIG_INT, F(quota_images), -1, 1000000, "20",
      "images per tenant" },
    { "quota-ssh-keys", CONFIG_INT, F(quota_ssh_keys), -1, 1000000, "20",
      "SSH keys per tenant" },
    { "quota-api-keys", CONFIG_INT, F(quota_api_keys), -1, 1000000, "10",
      "API keys per account (admins have no quotas; -1 on any quota: no limit)" },
    { "per-ip-connections", CONFIG_INT, F(per_ip_connections), 0, 100000,
      "512", "open connections from one client address (0: no limit)" },
    { "tls-handshake-timeout", CONFIG_INT, F(tls_handshake_timeout_s), 1, 600,
      "30", "seconds a client has to finish its TLS handshake; one waiting "
      "for its client costs no CPU" },
    { "rate-ip", CONFIG_INT, F(rate_ip), 0, 1000000, "50",
      "requests per second from one client address (0: no limit)" },
    { "burst-ip", CONFIG_INT, F(burst_ip), 1, 1000000, "200",
      "requests one client address may make at once" },
    { "rate-agent-ip", CONFIG_INT, F(rate_agent_ip), 0, 1000000, "200",
      "node agents' requests per second from one address (nodes behind one "
      "NAT share it; 0: no limit)" },
    { "burst-agent-ip", CONFIG_INT, F(burst_agent_ip), 1, 1000000, "1000",
      "node agents' requests from one address at once" },
    { "rate-key", CONFIG_INT, F(rate_key), 0, 1000000, "20",
      "requests per second with one API key (0: no limit)" },
    { "burst-key", CONFIG_INT, F(burst_key), 1, 1000000, "100",
      "requests with one API key at once" },
    { "rate-node", CONFIG_INT, F(rate_node), 0, 1000000, "10",
      "requests per second of one node (a healthy one makes well under 1)" },
    { "burst-node", CONFIG_INT, F(burst_node), 1, 1000000, "100",
      "requests of one node at once" },
    { "log-level", CONFIG_STRING, F(log_level), 0, 0, "info",
      "least severe messages logged: error, warn, info or debug" },
    { "journal", CONFIG_STRING, F(journal), 0, 0, "auto",
      "log to the systemd journal with fields REQUEST_ID, NODE_ID, VM_ID: "
      "on, off, or auto (when stderr is the journal)" },
    { "journal-socket", CONFIG_STRING, F(journal_socket), 0, 0,
      "/run/systemd/journal/socket", "the journal's native socket" },
    { "ingress-config", CONFIG_STRING, F(ingress_config), 0, 0, "",
      "HAProxy configuration the web ingress edge is written to (temp file "
      "+ rename) on every change of routes, placement, ports or health, "
      "e.g. /var/lib/fogfabric/haproxy.cfg (empty: no edge)" },
    { "ingress-reload", CONFIG_STRING, F(ingress_reload), 0, 0, "",
      "shell command run after each write of --ingress-config, e.g. 'kill "
      "-USR2 $(cat /run/haproxy.pid)' for `haproxy -W -f CFG -p PID`" },
    { "ingress-https-bind", CONFIG_STRING, F(ingress_https_bind), 0, 0,
      ":443", "where the edge takes TLS (passthrough by SNI): [ADDR]:PORT" },
    { "ingress-http-bind", CONFIG_STRING, F(ingress_http_bind), 0, 0, ":80",
      "where the edge takes plain HTTP (routed by Host): [ADDR]:PORT" },
    { "public-zone", CONFIG_STRING, F(public_zone), 0, 0, "",
      "DNS domain of the hub's public names, e.g. fog.example.org: each "
      "published VM answers as VM.TENANT.DOMAIN with its node's public "
      "address (empty: no zone)" },
    { "public-zone-file", CONFIG_STRING, F(public_zone_file), 0, 0, "",
      "hosts file the public zone is written to (temp file + rename) on "
      "every change, for dnsmasq --auth-zone DOMAIN --addn-hosts FILE" },
    { "public-zone-reload", CONFIG_STRING, F(public_zone_reload), 0, 0, "",
      "shell command run after each write of --public-zone-file, e.g. "
      "'kill -HUP $(cat /run/fog-dns.pid)' (dnsmasq re-reads the file and "
      "raises the SOA serial)" },
};
#undef F

static void usage(FILE *out)
{
    fprintf(out,
            "usage: fog-controller init [--data-dir DIR] [--san NAME|IP]... "
            "[--ca-key-out PATH]\n"
            "       fog-controller serve [options]\n"
            "       fog-controller backup --to FILE [--data-dir DIR]\n"
            "       fog-controller restore --from FILE [--data-dir DIR] "
            "(controller stopped)\n"
            "       fog-controller migrate-store [--from FOG.DB] --to "
            "postgresql://... [--data-dir DIR]\n"
            "       fog-controller version\n\noptions (also as "
            "'name = value' lines in a file given with --config FILE):\n");
    config_print_help(options, ARRAY_SIZE(options), out);
}

static int cmd_init(struct app_settings *cfg, char **args, int nargs)
{
    /* Extra certificate names come as "--san X" pairs among the words,
     * the CA key's offline home as "--ca-key-out PATH". */
    char **sans = xcalloc((size_t)nargs + 1, sizeof(char *));
    size_t n_sans = 0;
    const char *ca_key_out = NULL;
    for (int i = 0; i < nargs; i++) {
        if (streq(args[i], "ca-key-out") && i + 1 < nargs && !ca_key_out &&
            *args[i + 1]) {
            ca_key_out = args[++i];
            continue;
        }
        if (!streq(args[i], "san") || i + 1 >= nargs) {
            fprintf(stderr, "fog-controller: unexpected argument '%s'\n", args[i]);
            free(sans);
            return 2;
        }
        sans[n_sans++] = args[++i];
    }
    struct stat st;
    if (ca_key_out && lstat(ca_key_out, &st) == 0) {
        fprintf(stderr, "fog-controller: '%s' exists: refusing to overwrite "
                        "a key\n", ca_key_out);
        free(sans);
        return 1;
    }
    int r = mkdir_p(cfg->data_dir, 0700);
    if (r == 0)
        r = fs_make_private(cfg->data_dir);
    if (r < 0) {
        fprintf(stderr, "fog-controller: cannot create '%s' or make it "
                        "private: %s\n", cfg->data_dir, strerror(-r));
        free(sans);
        return 1;
    }
    _cleanup_free_ char *db = cfg->database ? xstrdup(cfg->database)
                                            : xasprintf("%s/fog.db", cfg->data_dir);
    _cleanup_free_ char *ca_path = xasprintf("%s/ca.pem", cfg->data_dir);
    if (stat(ca_path, &st) == 0) {
        fprintf(stderr, "fog-controller: '%s' exists: already initialised\n",
                ca_path);
        free(sans);
        return 1;
    }
    r = pki_init(cfg->data_dir, ca_key_out, sans, n_sans);
    free(sans);
    if (r < 0)
        return 1;
    struct store *s;
    if (store_open(db, &s) < 0)
        return 1;
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    struct auth_key k;
    if (store_exec(s, "INSERT INTO accounts (id, name, role, created_at) "
                      "VALUES ($1, 'admin', 'admin', $2)", "si", id, now_s()) < 0 ||
        key_insert(s, id, "first admin key", &k) < 0) {
        store_close(s);
        return 1;
    }
    store_close(s);
    printf("initialised %s (schema version %u)\n", cfg->data_dir,
           schema_migration_count);
    printf("CA certificate: %s/ca.pem\n", cfg->data_dir);
    if (ca_key_out)
        printf("CA key (keep it offline; serving never needs it): %s\n",
               ca_key_out);
    printf("admin key: %s\n", k.token);
    auth_key_clear(&k);
    return 0;
}

/* backup --to FILE / restore --from FILE: the sqlite store only (a
 * PostgreSQL store has pg_dump). */
static int cmd_backup(struct app_settings *cfg, char **args, int nargs,
                      bool restore)
{
    const char *word = restore ? "from" : "to";
    if (nargs != 2 || !streq(args[0], word) || !*args[1]) {
        fprintf(stderr, "fog-controller: %s needs --%s FILE\n",
                restore ? "restore" : "backup", word);
        return 2;
    }
    if (cfg->database) {
        fprintf(stderr, "fog-controller: %s works on the sqlite store; for "
                        "PostgreSQL use pg_dump/pg_restore\n",
                restore ? "restore" : "backup");
        return 2;
    }
    _cleanup_free_ char *db = xasprintf("%s/fog.db", cfg->data_dir);
    int r = restore ? backup_sqlite_restore(args[1], db)
                    : backup_sqlite_take(db, args[1]);
    if (r < 0)
        return 1;
    printf("%s %s\n", restore ? "restored into" : "backed up to",
           restore ? db : args[1]);
    return 0;
}

/* migrate-store [--from FILE] --to postgresql://...: the sqlite store
 * (default DATA-DIR/fog.db; it may be serving) copied into an empty
 * PostgreSQL database, checked, then reported. */
static int cmd_migrate(struct app_settings *cfg, char **args, int nargs)
{
    const char *from = NULL, *to = NULL;
    for (int i = 0; i < nargs; i++) {
        const char **slot = streq(args[i], "from") ? &from
                            : streq(args[i], "to") ? &to : NULL;
        if (!slot || *slot || i + 1 >= nargs || !*args[i + 1]) {
            fprintf(stderr, "fog-controller: migrate-store: unexpected "
                            "argument '%s'\n", args[i]);
            return 2;
        }
        *slot = args[++i];
    }
    if (!to) {
        fprintf(stderr, "fog-controller: migrate-store needs --to "
                        "postgresql://...\n");
        return 2;
    }
    _cleanup_free_ char *db = from ? xstrdup(from)
                                   : xasprintf("%s/fog.db", cfg->data_dir);
    struct migrate_report rep;
    if (migrate_store(db, to, &rep) < 0)
        return 1;
    printf("migrated %s: %u tables, %lld rows; ledger: %u accounts, "
           "entries sum to %lld\n", db, rep.tables, (long long)rep.rows,
           rep.accounts, (long long)rep.ledger_total);
    printf("serve with: fog-controller serve --database <the same address> "
           "--data-dir %s\n", cfg->data_dir);
    return 0;
}

/* Another replica changed a node's desired state: wake its long poll here
 * if it is parked on this replica ("*": every node). */
static void on_remote_change(const char *node_id, void *data)
{
    app_nodes_wake(data, streq(node_id, "*") ? NULL : node_id);
}

/* The command line serve was started with, read again on SIGHUP. */
static int main_argc;
static char **main_argv;

static bool listen_is_loopback(const char *listen)
{
    return startswith(listen, "127.") || startswith(listen, "[::1]:") ||
           startswith(listen, "localhost:");
}

/* The backup store the settings name: the directory DATA/backups, or an
 * S3 bucket whose uploads spool in DATA/s3-spool (apart, so blobs of a
 * directory store used before are never taken for uploads). 0 or -errno
 * (message printed). */
static int backup_store_open(const struct app_settings *cfg,
                             struct bstore **ret)
{
    uint64_t max = (uint64_t)cfg->max_backup_gib << 30;
    if (!cfg->backup_store && (cfg->s3_key_file || cfg->s3_ca)) {
        fprintf(stderr, "fog-controller: --s3-access-key-file and --s3-ca "
                        "need --backup-store\n");
        return -EINVAL;
    }
    if (!cfg->backup_store) {
        _cleanup_free_ char *dir = xasprintf("%s/backups", cfg->data_dir);
        return bstore_dir_new(dir, max, ret);
    }
    _cleanup_free_ char *spool = xasprintf("%s/s3-spool", cfg->data_dir);
    struct bstore_s3_opts o = { .url = cfg->backup_store,
                                .region = cfg->s3_region,
                                .key_file = cfg->s3_key_file,
                                .ca_file = cfg->s3_ca,
                                .spool_dir = spool, .max_size = max };
    return bstore_s3_new(&o, ret);
}

static int cmd_serve(struct app *a)
{
    struct app_settings *cfg = &a->cfg;
    _cleanup_free_ char *db = cfg->database ? xstrdup(cfg->database)
                                            : xasprintf("%s/fog.db", cfg->data_dir);
    _cleanup_free_ char *ca = xasprintf("%s/ca.pem", cfg->data_dir);
    _cleanup_free_ char *crt = xasprintf("%s/server.pem", cfg->data_dir);
    _cleanup_free_ char *key = xasprintf("%s/server.key", cfg->data_dir);
    _cleanup_free_ char *crt_pem = NULL, *key_pem = NULL;
    sigset_t sigs;
    int sig, r;

    if (reload_logging(cfg) < 0)
        return 2;
    if (cfg->plain_http && !listen_is_loopback(cfg->listen)) {
        fprintf(stderr, "fog-controller: --plain-http is only allowed on a "
                        "loopback address, not '%s'\n", cfg->listen);
        return 2;
    }
    if (!cfg->templates_dir) {
        _cleanup_free_ char *exe = realpath("/proc/self/exe", NULL);
        cfg->templates_dir = catalog_templates_find(exe);
        log_info("templates from %s", cfg->templates_dir ? cfg->templates_dir
                                                          : "nowhere (none found)");
    }
    _cleanup_(addrpolicy_freep) struct addrpolicy *policy = NULL;
    _cleanup_free_ char *why = NULL;
    if (catalog_import_policy(a, &policy, &why) < 0) {
        fprintf(stderr, "fog-controller: import-allow: %s\n", why);
        return 2;
    }
    if (!edge_bind_ok(cfg->ingress_https_bind) ||
        !edge_bind_ok(cfg->ingress_http_bind)) {
        fprintf(stderr, "fog-controller: ingress-https-bind and "
                        "ingress-http-bind must be [ADDR]:PORT\n");
        return 2;
    }
    if (cfg->public_zone && *cfg->public_zone &&
        (!pubzone_domain_ok(cfg->public_zone) || !cfg->public_zone_file ||
         !*cfg->public_zone_file)) {
        fprintf(stderr, "fog-controller: public-zone '%s' must be a "
                        "lower-case DNS name of at least two labels (at "
                        "most 125 bytes), with public-zone-file set\n",
                cfg->public_zone);
        return 2;
    }
    /* Files an older version or an operator left readable by others
     * (fog.db holds user data, server.key the TLS identity) are closed
     * before anything is read or served. */
    if ((r = fs_make_private(cfg->data_dir)) < 0) {
        fprintf(stderr, "fog-controller: cannot make '%s' private (0700, "
                        "files 0600): %s\n", cfg->data_dir, strerror(-r));
        return 1;
    }
    if ((r = file_read(ca, 1 << 20, &a->ca_pem, NULL)) < 0 ||
        (r = file_read(crt, 1 << 20, &crt_pem, NULL)) < 0 ||
        (r = file_read(key, 1 << 20, &key_pem, NULL)) < 0) {
        fprintf(stderr, "fog-controller: cannot read the certificates in '%s' "
                        "(run 'fog-controller init' first): %s\n",
                cfg->data_dir, strerror(-r));
        return 1;
    }
    if (pki_fingerprint(a->ca_pem, a->ca_sha256) < 0) {
        fprintf(stderr, "fog-controller: '%s' is not a certificate\n", ca);
        return 1;
    }
    struct stat st;
    if (!cfg->database && stat(db, &st) < 0) {
        fprintf(stderr, "fog-controller: no database at '%s' (run "
                        "'fog-controller init' first)\n", db);
        return 1;
    }
    if (billing_configure(cfg->accrual_s, cfg->fee_bps, cfg->grace_s,
                          cfg->heartbeat_s, cfg->token_symbol,
                          cfg->default_offer) < 0)
        return 2;
    accrual_set_batch((size_t)cfg->accrual_batch);
    if (!reload_max_price_ok(cfg->default_max_price)) {
        fprintf(stderr, "fog-controller: default-max-price '%s' is not a "
                        "decimal amount of tokens or \"none\"\n",
                cfg->default_max_price);
        return 2;
    }
    _cleanup_free_ char *pools_why = NULL;
    if (netalloc_pools_check(cfg->tenant_pools, cfg->mesh_cidr,
                             &pools_why) < 0) {
        fprintf(stderr, "fog-controller: %s\n", pools_why);
        return 2;
    }
    if (backup_store_open(cfg, &a->backups) < 0)
        return 1;
    if (benchmark_probe_load(a) < 0)
        return 2;
    /* By default only a hub that serves the probe guest challenges its
     * nodes: a node on QEMU with no probe could not answer, and a silent
     * node is a fault. */
    if (cfg->bench_every_s < 0)
        cfg->bench_every_s = a->has_probe ? 86400 : 0;
    if (cfg->bench_every_s > 0 && !a->has_probe) {
        fprintf(stderr, "fog-controller: --bench-every %lld needs the probe "
                "guest (--bench-guest DIR): a node without one could not "
                "answer and would be faulted\n",
                (long long)cfg->bench_every_s);
        return 2;
    }
    /* Blocked before the store and the catalog start threads of their
     * own, so that those threads inherit the mask and the signals come
     * only to the sigwait below: a thread made before it, with SIGTERM
     * unblocked, took the signal's default action and ended the process
     * at once instead of shutting down. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (store_open(db, &a->store) < 0)
        return 1;
    if (netalloc_v6_backfill(a->store) < 0) {
        fprintf(stderr, "fog-controller: cannot give networks their IPv6 "
                "/64\n");
        return 1;
    }
    a->guard = guard_new(cfg);
    catalog_resume(a);
    store_listen(a->store, on_remote_change, a);
    node_heartbeat_s = cfg->heartbeat_s;

    /* Thousands of parked agent polls need as many descriptors. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* A signal that came while the store was opened and resumed: stop
     * here, before serving. */
    struct timespec now = { 0, 0 };
    if ((sig = sigtimedwait(&sigs, NULL, &now)) == SIGTERM || sig == SIGINT) {
        log_info("signal %d before serving: stopping", sig);
        if (catalog_shutdown())
            store_close(a->store);
        guard_free(a->guard);
        return 0;
    }

    struct http_server_opts o = {
        .listen = cfg->listen,
        .tls_cert_pem = cfg->plain_http ? NULL : crt_pem,
        .tls_key_pem = cfg->plain_http ? NULL : key_pem,
        .routes = app_routes,
        .n_routes = app_n_routes,
        .max_body = (size_t)cfg->max_body,
        .threads = (unsigned)cfg->threads,
        .write_threads = (unsigned)cfg->write_threads,
        .write_nice = (int)cfg->write_nice,
        .conn_slice_us = (unsigned)cfg->conn_slice_us,
        .per_ip_connections = (unsigned)cfg->per_ip_connections,
        .tls_handshake_timeout_ms = cfg->tls_handshake_timeout_s * 1000,
        .before = app_before,
        .begin = app_begin,
        .after = app_after,
        .park = app_park,
        .app = a,
    };
    if ((r = http_server_start(&o, &a->http)) < 0) {
        fprintf(stderr, "fog-controller: cannot serve on '%s': %s\n",
                cfg->listen, strerror(-r));
        store_close(a->store);
        return 1;
    }
    struct probe_server *probe = NULL;
    if (cfg->probe_port > 0 &&
        (r = probe_server_start(cfg->listen, (int)cfg->probe_port,
                                &probe)) < 0) {
        fprintf(stderr, "fog-controller: cannot answer probes on UDP port "
                        "%lld: %s\n", (long long)cfg->probe_port,
                strerror(-r));
        http_server_stop(a->http, 0);
        store_close(a->store);
        return 1;
    }
    a->probe = probe;
    struct relay_server *relay = NULL;
    /* Without probes no node has a class and every pair would be
     * relayed. */
    if (cfg->relay_port > 0 && cfg->probe_port == 0) {
        fprintf(stderr, "fog-controller: --relay-port needs --probe-port\n");
        probe_server_stop(probe);
        http_server_stop(a->http, 0);
        store_close(a->store);
        return 1;
    }
    if (cfg->relay_port > 0 &&
        (r = relay_server_start(cfg->listen, (int)cfg->relay_port,
                                &relay)) < 0) {
        fprintf(stderr, "fog-controller: cannot relay on UDP port %lld: %s\n",
                (long long)cfg->relay_port, strerror(-r));
        probe_server_stop(probe);
        http_server_stop(a->http, 0);
        store_close(a->store);
        return 1;
    }
    a->relay = relay;
    reconciler_start(a);
    accrual_start(a);
    log_info("serving %s on %s (port %d), data in %s",
             cfg->plain_http ? "HTTP" : "HTTPS", cfg->listen,
             http_server_port(a->http), cfg->data_dir);
    /* A line tests and scripts can wait for. */
    printf("listening on port %d\n", http_server_port(a->http));
    fflush(stdout);
    /* Under systemd (Type=notify): serving from here on. */
    sdnotifyf("READY=1\nSTATUS=serving on port %d",
              http_server_port(a->http));

    /* With WatchdogSec=, a keepalive at half the interval from this loop;
     * else a plain wait for the signal. */
    uint64_t wd_usec = 0;
    if (!sdnotify_watchdog(&wd_usec))
        wd_usec = 0;
    for (;;) {
        if (wd_usec == 0) {
            sigwait(&sigs, &sig);
        } else {
            struct timespec ts = { .tv_sec = (time_t)(wd_usec / 2000000),
                                   .tv_nsec = (long)(wd_usec / 2 % 1000000) *
                                              1000 };
            if ((sig = sigtimedwait(&sigs, NULL, &ts)) <= 0) {
                sdnotify("WATCHDOG=1");
                continue;
            }
        }
        if (sig != SIGHUP)
            break;
        /* systemd's reload protocol: RELOADING=1, then READY=1. */
        sdnotify("RELOADING=1");
        reload_settings(a, options, ARRAY_SIZE(options), main_argc, main_argv,
                        2);
        sdnotify("READY=1");
    }
    sdnotify("STOPPING=1");
    log_info("signal %d: shutting down", sig);
    accrual_stop();
    reconciler_stop();
    /* The relay's TCP streams are connections of the HTTP server: ended
     * while it still runs. */
    relay_server_stop(relay);
    http_server_stop(a->http, 5000);
    a->probe = NULL;
    probe_server_stop(probe);
    a->relay = NULL;
    relay_server_free(relay);
    if (catalog_shutdown())
        store_close(a->store);
    else
        log_warn("an image inspection is still running: leaving the store "
                 "to the exit");
    free(a->ca_pem);
    a->ca_pem = NULL;
    guard_free(a->guard);
    bstore_free(a->backups);
    a->backups = NULL;
    log_info("stopped");
    reload_free();
    return 0;
}

int main(int argc, char **argv)
{
    struct app a = { 0 };
    char **args = NULL;
    int nargs = 0, rc;

    log_set_ident("fog-controller");
    /* Whatever the controller creates (fog.db and its WAL, keys, images)
     * is for its own user only. */
    umask(077);
    if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (streq(argv[1], "version") || streq(argv[1], "--version")) {
        printf("fog-controller 0.1.0\n");
        return 0;
    }
    config_defaults(options, ARRAY_SIZE(options), &a.cfg);
    /* "--san X" and "--ca-key-out PATH" are init-only; turn them into
     * words before parsing. */
    for (int i = 2; i < argc; i++)
        if (streq(argv[i], "--san"))
            argv[i] = (char *)"san";
        else if (streq(argv[i], "--ca-key-out"))
            argv[i] = (char *)"ca-key-out";
        else if (streq(argv[i], "--to") || streq(argv[i], "--from"))
            argv[i] += 2;
    if (config_parse_args(options, ARRAY_SIZE(options), &a.cfg, argc, argv, 2,
                          &args, &nargs) < 0) {
        usage(stderr);
        config_free(options, ARRAY_SIZE(options), &a.cfg);
        return 2;
    }
    if (streq(argv[1], "init")) {
        rc = cmd_init(&a.cfg, args, nargs);
    } else if (streq(argv[1], "backup") || streq(argv[1], "restore")) {
        rc = cmd_backup(&a.cfg, args, nargs, streq(argv[1], "restore"));
    } else if (streq(argv[1], "migrate-store")) {
        rc = cmd_migrate(&a.cfg, args, nargs);
    } else if (streq(argv[1], "serve")) {
        if (nargs > 0) {
            fprintf(stderr, "fog-controller: unexpected argument '%s'\n", args[0]);
            rc = 2;
        } else {
            main_argc = argc;
            main_argv = argv;
            rc = cmd_serve(&a);
            /* What a refusal at start had already read or opened. */
            free(a.ca_pem);
            bstore_free(a.backups);
        }
    } else {
        fprintf(stderr, "fog-controller: unknown command '%s'\n", argv[1]);
        usage(stderr);
        rc = 2;
    }
    free(args);
    config_free(options, ARRAY_SIZE(options), &a.cfg);
    return rc;
}
