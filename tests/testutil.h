/* Helpers shared by test and benchmark binaries: temp dirs, spawning our
 * daemons on ephemeral ports, fogctl and the API as clients, image
 * fixtures and network namespaces. Not linked into the product. */
#pragma once

#include "common/util.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/types.h>

/* mkdtemp under $TMPDIR (or /tmp); caller frees; aborts on failure. */
char *tu_tempdir(const char *tag);
/* rm -rf a directory tree made by a test. */
void tu_rmrf(const char *path);
/* tu_rmrf(*p) and free(*p): for _cleanup_tempdir_, a temp dir removed
 * when its variable leaves scope. */
void tu_rmrf_freep(char **p);
#define _cleanup_tempdir_ _cleanup_(tu_rmrf_freep)
/* Path of a built binary: $O/../bin/NAME resolved from the repo root. */
char *tu_bin(const char *name);
/* A free TCP port on 127.0.0.1 (bound then released). */
int tu_free_port(void);
/* Spawn argv with stdout+stderr to logfile; returns pid or -errno. */
pid_t tu_spawn(char *const argv[], const char *logfile);
/* Run argv to completion capturing stdout (caller frees). Exit status in
 * *ret_status (-1 if killed). stdin from /dev/null. */
char *tu_run(char *const argv[], int *ret_status);
/* tu_run with envp (NULL-terminated "NAME=value") as the environment. */
char *tu_run_env(char *const argv[], char *const envp[], int *ret_status);
/* When true, tu_run* (and so tu_fogctl) return stderr with stdout, to check
 * an error's message. */
extern bool tu_run_with_stderr;
/* Full path of prog in $PATH (then /usr/sbin and /sbin), or NULL; caller
 * frees. */
char *tu_which(const char *prog);

/* Run `promtool CHECK` (e.g. "check metrics" reading `text` on its stdin,
 * or "check rules FILE" with text NULL) writing text to a file under dir
 * first; its exit status (its output on stderr when not 0). */
int tu_promtool(const char *promtool, const char *dir, const char *check,
                const char *text);
/* The value of the first line of Prometheus text that starts with
 * `prefix` (a series name, or a name and the start of its labels, e.g.
 * "fog_x{node=\"a\","), as a double; NAN when there is none. */
double tu_metric(const char *text, const char *prefix);
/* Send sig and reap: the exit status, or -1 when killed by a signal. */
int tu_kill(pid_t pid, int sig);
/* Wait until a TCP connect to 127.0.0.1:port succeeds. 0 or -ETIMEDOUT. */
int tu_wait_port(int port, int timeout_ms);

/* Empty /proc/net/{tcp,udp,route} tables under root: a fake host with no
 * listening socket and no route but the default, for an agent run with
 * --root (its policy reads them). Aborts on failure. */
void tu_fake_proc_net(const char *root);
/* Write text to DIR/REL (mode 0644), making its folders; aborts the test
 * on failure. */
void tu_put_file(const char *dir, const char *rel, const char *text);
/* A fake host under root for the agent's inventory: `cpus` CPUs named
 * "Fake CPU", `mem_mib` MiB, no /dev/kvm, and tu_fake_proc_net. */
void tu_fake_host(const char *root, int cpus, int64_t mem_mib);

/* ---- fake PCI sysfs (GPU inventory) ---- */
/* One PCI function under ROOT/sys/bus/pci/devices/ADDR with class, ids,
 * numa_node, local_cpulist, a `driver` link when driver is not NULL and an
 * `iommu_group` link (plus the group's devices entry) when group >= 0.
 * Aborts on failure. */
struct tu_pci_fn {
    const char *addr;
    unsigned cls, vendor, device;
    int group;               /* -1: none */
    int numa;
    const char *cpulist;     /* NULL: "" */
    const char *driver;      /* NULL: unbound */
};
void tu_fake_pci(const char *root, const struct tu_pci_fn *f);
/* ROOT/sys/module/NAME/refcnt = n (a host driver in use when n > 0). */
void tu_fake_module(const char *root, const char *name, int refcnt);

/* xorshift64*: the next number of a property test's reproducible stream
 * (*state must not be 0). */
uint64_t tu_xorshift(uint64_t *state);

/* ---- a scratch directory for a cmocka group ---- */
/* Made by tu_dir_setup, removed and freed (NULL again) by tu_dir_teardown:
 * cmocka group fixtures, named fog-NAME-XXXXXX after the program
 * (test_NAME). */
extern char *tu_dir;
int tu_dir_setup(void **state);
int tu_dir_teardown(void **state);

/* ---- image fixtures ---- */
/* v stored big-endian at b + off (qcow2 headers are big-endian). */
void tu_put_be32(uint8_t *b, size_t off, uint32_t v);
void tu_put_be64(uint8_t *b, size_t off, uint64_t v);
#define TU_QCOW2_CLUSTER 65536u
/* A minimal valid qcow2 v3 of vsize bytes in six 64 KiB clusters: header,
 * refcount table, refcount block, L1, L2, and one data cluster (byte i is
 * i * 7 mod 256) at guest offset 0. Length in *ret_len; caller frees. */
uint8_t *tu_qcow2(uint64_t vsize, size_t *ret_len);

/* ---- a controller under test ---- */
struct tu_ctl {
    char *dir;      /* data dir (temp) */
    char *url;      /* https://127.0.0.1:PORT */
    char *ca;       /* dir/ca.pem */
    char *admin_key;
    char *log;      /* log file path */
    int port;
    pid_t pid;
    const char *const *extra; /* serve's extra arguments (caller's array) */
    bool any_addr;  /* listen on 0.0.0.0 (tu_ctl_start_on) */
    char *database; /* its PostgreSQL database (tu_on_pg()); NULL: sqlite */
};
/* True when the suite runs its controllers on PostgreSQL
 * (FOG_TEST_DATABASE=postgresql, `make test-pg`): each tu_ctl_start*()
 * then gets a database of its own in one throwaway cluster per test
 * process, and tu_sql*() run there. */
bool tu_on_pg(void);
/* The address store_open() takes for ctl's store: its PostgreSQL database
 * or DIR/fog.db (caller frees). */
char *tu_store_address(const struct tu_ctl *ctl);
/* For a test that opens a store in process: a new empty PostgreSQL
 * database under tu_on_pg(), else DIR/fog.db (caller frees). */
char *tu_new_store_address(const char *dir);
/* In a test that reads sqlite files of its own making (the hub's online
 * backup, query plans): under tu_on_pg() print why and exit 77 (skip). */
void tu_sqlite_only(const char *why);
/* fog-controller init + serve on a free port; waits until it answers.
 * extra_args (NULL-terminated, may be NULL; must outlive the controller,
 * restarts reuse them) are added to `serve`, after "--grace 0" (balance
 * limits off) so a test can turn them on.
 * Aborts the test binary on failure. */
void tu_ctl_start(struct tu_ctl *c, const char *const *extra_args);
/* tu_ctl_start with extra arguments for `init` too (NULL-terminated, may
 * be NULL). */
void tu_ctl_start_init(struct tu_ctl *c, const char *const *init_args,
                       const char *const *extra_args);
/* tu_ctl_start with `addr` (an IP of this network namespace) also in the
 * server certificate and `serve` listening on every address, so agents
 * in other namespaces can reach it at https://ADDR:PORT; ctl->url stays
 * on 127.0.0.1. */
void tu_ctl_start_on(struct tu_ctl *c, const char *addr,
                     const char *const *extra_args);
/* Restart `serve` on the same data dir and port (after tu_ctl_stop). */
void tu_ctl_restart(struct tu_ctl *c);
/* SIGTERM (or sig) and reap; the data dir stays. */
void tu_ctl_stop(struct tu_ctl *c, int sig);
/* Stop if running and remove everything. */
void tu_ctl_destroy(struct tu_ctl *c);
/* GET ctl's /metrics as its admin (must answer 200); the text, caller
 * frees. */
char *tu_metrics_text(const struct tu_ctl *ctl);

/* ---- a node agent on libvirt's test driver ---- */
struct tu_agent {
    char *dir;       /* temp dir holding the rest */
    char *data_dir, *image_dir, *root, *log;
    pid_t pid;
    /* More arguments of `run` (NULL-terminated; the caller's array), for
     * tu_agent_restart; tu_agent_start clears it. */
    const char *const *extra;
    char *bin;       /* the agent binary (tu_agent_start_bin) or NULL */
};
/* Join ctl as node `name` with an admin token (approved at once) and run
 * fog-nodeagent on test:///default (heartbeat 1 s, no networking) over a
 * fake host of `cpus` CPUs and mem_mib MiB, with a 64 MiB qcow2 image
 * `tiny` in its image dir. Exits 77 when qemu-img is missing; aborts the
 * test on other failures. */
void tu_agent_start(struct tu_agent *a, const struct tu_ctl *ctl,
                    const char *name, int cpus, int64_t mem_mib);
/* tu_agent_start with another agent binary (an older build, say) for
 * join and run; NULL: this tree's. */
void tu_agent_start_bin(struct tu_agent *a, const struct tu_ctl *ctl,
                        const char *name, int cpus, int64_t mem_mib,
                        const char *bin);
/* Kill the agent (SIGKILL) and run it again on the same data dir, its
 * log appended to. The test driver's domains die with it: the agent
 * comes back to a host that has lost them. */
void tu_agent_restart(struct tu_agent *a);
/* Kill the agent and remove its directory; nothing when never started. */
void tu_agent_destroy(struct tu_agent *a);

/* ---- the controller's clients: fogctl and the API ---- */
/* Run fogctl with the words from `first` on (NULL-terminated) as the
 * holder of key, against ctl: FOG_URL, FOG_CA and FOG_KEY are set for the
 * child only, from ctl (NULL: neither) and key (NULL: none); the rest of
 * the environment (HOME, ...) is this process's. Returns stdout (caller
 * frees), exit status in *ret_status (-1 if killed). */
char *tu_fogctl(const struct tu_ctl *ctl, const char *key, int *ret_status,
                const char *first, ...) __attribute__((sentinel));
/* tu_fogctl with the words after `first` in ap. */
char *tu_fogctlv(const struct tu_ctl *ctl, const char *key, int *ret_status,
                 const char *first, va_list ap);
/* The value after "label:" (and spaces) on its own line of text, up to the
 * line's end; NULL when no line starts with it. Caller frees. */
char *tu_field(const char *text, const char *label);
/* method path (e.g. "/v1/vms") on the API at ctl->url, trusting ctl->ca
 * (the only members used), as key (NULL: anonymous) with
 * a JSON body (or NULL); the answer parsed (NULL when not JSON; caller
 * decrefs), the HTTP status (-1: no answer) in *ret_status if not NULL. */
json_t *tu_api(const struct tu_ctl *ctl, const char *key, const char *method,
               const char *path, const char *body, long *ret_status);
/* tu_api that must answer status `want`, else it prints the answer and
 * aborts; the answer parsed (NULL when not JSON; caller decrefs). */
json_t *tu_api_want(const struct tu_ctl *ctl, const char *key,
                    const char *method, const char *path, const char *body,
                    long want);
/* Upload a few bytes as backup `id` and commit them as its node (`cred`)
 * would, the commit body given `mode` and `full_reason` when not NULL;
 * the commit's status. */
long tu_backup_complete(const struct tu_ctl *ctl, const char *cred,
                        const char *id, const char *mode,
                        const char *full_reason);
/* tu_api that must answer status `want` (else it prints and aborts);
 * the answer's string member `field` ("" when absent; caller frees), or
 * NULL when field is NULL. */
char *tu_api_field(const struct tu_ctl *ctl, const char *key,
                   const char *method, const char *path, const char *body,
                   long want, const char *field);

/* GET path as key, which must answer 200: the list's items (a bare array
 * or the "items" member of a page), owned by the caller. Aborts
 * otherwise. */
json_t *tu_list(const struct tu_ctl *ctl, const char *key, const char *path);

/* A new account `name` of `role` made by ctl's admin through the API, and
 * one API key for it: the key's secret (caller frees). Aborts on failure. */
char *tu_account(const struct tu_ctl *ctl, const char *name,
                 const char *role);

/* A client that keeps creating tenant accounts PREFIX0, PREFIX1, ... one
 * after the other through ctl's admin, in a thread of its own, so a test
 * can take a copy of a store that is being written. */
struct tu_writer {
    const struct tu_ctl *ctl;
    const char *prefix;
    int on, written;   /* read and written atomically */
    unsigned long thread;
};
void tu_writer_start(struct tu_writer *w, const struct tu_ctl *ctl,
                     const char *prefix);
/* Wait until at least n accounts were written. */
void tu_writer_wait(struct tu_writer *w, int n);
/* Accounts written so far. */
int tu_writer_count(struct tu_writer *w);
/* Stop and join the writer: the number of accounts it wrote. */
int tu_writer_stop(struct tu_writer *w);

/* A node's long poll of its desired state (GET /v1/agent/desired?since=
 * SINCE&wait=WAIT) in a thread of its own: tu_poll_start() sends it,
 * tu_poll_join() waits for the answer and returns how many ms after
 * `from_ms` (a mono_ms() time) it came, its body (caller frees) in
 * *ret_body. */
struct tu_poll {
    const struct tu_ctl *ctl;
    const char *cred;
    int64_t since, wait_s;
    int64_t answered_ms;
    char *body;
    unsigned long thread;
};
void tu_poll_start(struct tu_poll *p, const struct tu_ctl *ctl,
                   const char *cred, int64_t since, int64_t wait_s);
int64_t tu_poll_join(struct tu_poll *p, int64_t from_ms, char **ret_body);

/* Register node `name` through POST /v1/agent/register with a fresh
 * admin join token (so it is approved at once) and an inventory of 8
 * vCPUs, 8 GiB and 100 GiB; `extra` (NULL or JSON members such as
 * "\"wg_public_key\":\"...\"") is added to the body. Aborts on failure;
 * returns the node's credential (caller frees). */
char *tu_node_register(const struct tu_ctl *ctl, const char *name,
                       const char *extra);

/* Register a node through POST /v1/agent/register with a join token made
 * by token_key's holder (admin: approved at once; provider: waits for an
 * admin). `fields` is more JSON members for the body without braces
 * (e.g. "\"endpoint\":\"192.0.2.1:51820\"", may be NULL); the inventory is
 * 4 vCPUs, 8192 MiB, 100 GiB, KVM. Returns the HTTP status; on 201 the
 * node's id and credential (caller frees). */
long tu_node_join(const struct tu_ctl *ctl, const char *token_key,
                  const char *name, const char *fields, char **ret_id,
                  char **ret_cred);

/* tu_node_register, then the node speaks once (so it counts as
 * reachable) and the admin sets its offer to vcpu_hour tokens per
 * vCPU-hour and nothing for memory, disk and ports. Returns the node's
 * credential (caller frees); aborts on failure. */
char *tu_market_node(const struct tu_ctl *ctl, const char *name,
                     const char *extra, const char *vcpu_hour);

/* POST /v1/vms as key's holder: VM `name` of `vcpus` vCPUs, 128 MiB,
 * 1 GiB, image tiny, TCG allowed, plus `extra` JSON members (no braces;
 * NULL: none). Fails the test unless the answer has status `want`;
 * returns the answer (caller decrefs). */
json_t *tu_vm_post(const struct tu_ctl *ctl, const char *key,
                   const char *name, int vcpus, const char *extra, long want);

/* The first object of array `arr` whose string member `field` is `value`
 * (borrowed), or NULL. */
json_t *tu_find(json_t *arr, const char *field, const char *value);
/* A node's desired document as the agent reads it (new reference): each
 * network's records and remote MACs made from AGENT_NET_VMS, where the
 * controller sent the network's VMs so (api/agentproto.h). Aborts when
 * the agent would refuse it. */
json_t *tu_desired_read(const json_t *doc);
/* An item of AGENT_NET_VMS: a VM of network vxlan named `name` with MAC
 * mac, address 10.1.0.9, at VTEP vtep (NULL: none). New reference. */
json_t *tu_net_vm(int vxlan, const char *name, const char *mac,
                  const char *vtep);

/* How many times needle occurs in the file at path (a log); 0 when it
 * cannot be read. */
int tu_count_in_file(const char *path, const char *needle);

/* ---- a plain HTTP server of fixed files, counting downloads ---- */
struct tu_file {
    const char *path;   /* "/disk.qcow2" */
    const void *body;
    size_t len;
};
struct tu_file_srv {
    const struct tu_file *files; /* the caller's array, n of them */
    size_t n;
    int delay_ms;                /* before each file's answer */
    int fd, port;
    int hits;                    /* files answered (tu_file_srv_hits) */
    int stop;
    pthread_t thr;
};
/* Serve s->files on addr (a loopback address), a free port in s->port:
 * GET of a file answers 200 with its body, anything else 404. Aborts on
 * failure. */
void tu_file_srv_start(struct tu_file_srv *s, const char *addr);
void tu_file_srv_stop(struct tu_file_srv *s);
/* How many times a file was served. */
int tu_file_srv_hits(struct tu_file_srv *s);

/* Arm the controller's test seam: write `step` to the file FOG_TEST_FAULT
 * names (path), or remove it when step is NULL. Aborts on failure. */
void tu_fault(const char *path, const char *step);

/* One statement on ctl's store (its sqlite fog.db, WAL, so the
 * controller serves meanwhile; or its PostgreSQL database), formatted as
 * sqlite3_mprintf() does (%q quotes). Aborts when it fails. */
void tu_sql(const struct tu_ctl *ctl, const char *fmt, ...) _printf_(2, 3);
/* The first column of the first row of a query on ctl's store as text
 * (caller frees), NULL when there is none or it is NULL. Aborts when the
 * query cannot be prepared. */
char *tu_sql_text(const struct tu_ctl *ctl, const char *fmt, ...)
    _printf_(2, 3);

/* ---- raw HTTPS for tests (libcurl): exact bytes, any headers ---- */
struct tu_resp {
    long status;
    char *body;          /* NUL-terminated */
    size_t len;
    char *content_type;
};
/* method + url + bearer key (or NULL) + CA file; body of body_len bytes
 * (body NULL = none) sent as content_type (NULL = application/json);
 * extra_header e.g. "Idempotency-Key: x", several such lines separated by
 * '\n', or NULL. Returns status or -1. */
long tu_http(const char *method, const char *url, const char *key,
             const char *ca, const char *body, size_t body_len,
             const char *content_type, const char *extra_header,
             struct tu_resp *ret);
void tu_resp_clear(struct tu_resp *r);
/* A libcurl write callback appending to the body of the struct tu_resp
 * passed as its data (body starts NULL or allocated, stays NUL-ended). */
size_t tu_resp_write(char *p, size_t size, size_t n, void *resp);

/* ---- network namespaces (root) ---- */
/* The `ip` program of iproute2, or NULL when it is not installed. */
const char *tu_ip_bin(void);
/* Run `ip` with a command line the test writes itself, split on spaces
 * (no word may hold one); a failure prints the line and ip's output.
 * Returns ip's exit status. */
int tu_ip(const char *fmt, ...) _printf_(1, 2);
/* Named namespace ns (ip netns add) with lo up: 0, or non-zero. */
int tu_ns_add(const char *ns);
/* Wire namespace ns to a bridge in namespace bridge_ns: a veth named veth
 * there, enslaved to bridge, its peer eth0 in ns with address cidr
 * ("192.0.2.1/24"), both up. 0, or non-zero at the first failed step. */
int tu_ns_wire(const char *bridge_ns, const char *bridge, const char *veth,
               const char *ns, const char *cidr);
/* Fork a child that enters named namespace ns (/run/netns/NS; NULL: a new
 * one with lo up) and exits with fn(arg), or 120 (121, 122) when it cannot
 * enter (make, bring up lo in) it. The child's pid, or -errno. */
pid_t tu_ns_fork(const char *ns, int (*fn)(void *), void *arg);
/* Wait for child pid: its exit status, 250 when a signal killed it, -1
 * when it cannot be waited for. */
int tu_reap(pid_t pid);
/* tu_reap(tu_ns_fork(...)): fn's result inside ns, or -1. */
int tu_in_ns(const char *ns, int (*fn)(void *), void *arg);
/* ICMP echo from namespace ns to dst, from address src unless NULL: true
 * when a reply comes within timeout_ms. */
bool tu_ping(const char *ns, const char *src, const char *dst,
             int timeout_ms);
/* True when wireguard-go is installed (in $PATH). */
bool tu_have_wireguard_go(void);
/* Remove WireGuard interface ifname of namespace ns through its UAPI
 * socket, which ends its wireguard-go; nothing when there is no such
 * link. 0, or the child's non-zero status. */
int tu_wg_remove(const char *ns, const char *ifname);

/* ---- NAT topologies (root): bridge "hubbr" in this namespace is the
 * internet; a node sits on it, or behind a router namespace doing
 * nftables masquerade on its eth0 ---- */
struct tu_nat_node {
    const char *name;       /* the node's name */
    const char *wan;        /* its (or its router's) address on hubbr */
    const char *lan;        /* "10.0.N": the router's LAN; NULL: no router */
    const char *router_nat; /* the router's masquerade statement */
    const char *endpoint;   /* --endpoint given at join; NULL: none */
    char ns[32], router[32], wg[16];
    char *data_dir, *log;   /* set by tu_nat_node_start */
    pid_t pid;
    /* More options for the agent's run, NULL-terminated (at most 16);
     * NULL: none. */
    const char *const *run_args;
};
/* Bridge hubbr, up, with hub_cidr ("198.51.100.1/24"). 0 or non-zero. */
int tu_nat_hub(const char *hub_cidr);
/* Name node n's namespaces and WireGuard interface from tag and idx and
 * make them, wired to hubbr (a /24 on wan), with the router's NAT. 0, or
 * non-zero at the first failed step. */
int tu_nat_node_build(struct tu_nat_node *n, const char *tag, int idx);
/* Join n to ctl, reached at https://hub_addr:PORT, and run its agent in
 * its namespace (libvirt test:///default, images in dir/images, data and
 * log under dir). 0, or non-zero with the reason printed. */
int tu_nat_node_start(const struct tu_ctl *ctl, const char *hub_addr,
                      const char *dir, struct tu_nat_node *n);
/* CPU seconds process pid has used so far (user and system); -1 when
 * /proc cannot tell. */
double tu_cpu_s(pid_t pid);
/* Stop n's agent, remove its interface and namespaces, free its paths. */
void tu_nat_node_destroy(struct tu_nat_node *n);
/* Desired document text `doc` as netfabric's state (*ret, for
 * nf_state_clear): 0, or non-zero after printing why it was refused. */
struct nf_state;
int tu_nf_state(const char *doc, struct nf_state *ret);
/* Start of a test that builds namespace hosts: 0 when running as root
 * with iproute2, else 77 after saying why (the test skips). *ret_shared
 * gets a zeroed mapping of `size` bytes shared with forked children (1
 * when none can be had). */
int tu_ns_test_begin(size_t size, void **ret_shared);
/* Start of a test whose hosts run wireguard-go in namespaces: 0 once this
 * process is in a network namespace of its own (loopback up), else 77
 * after saying why (not root, no iproute2 or wireguard-go, no unshare). */
int tu_wg_netns_enter(void);

/* ---- a throwaway PostgreSQL cluster (server binaries of Debian 12) ---- */
struct tu_pg {
    char *dir;  /* cluster and Unix socket directory */
    char *uri;  /* postgresql:///postgres?host=DIR&user=fog */
    pid_t pid;
};
/* initdb + postgres on a Unix socket only, as the postgres user; false
 * (nothing left running) when the server or root is not available. */
bool tu_pg_start(struct tu_pg *pg);
void tu_pg_stop(struct tu_pg *pg);
/* Stop the server (fast shutdown, cutting every session), keeping the
 * cluster; tu_pg_resume() starts it again and returns once it accepts
 * logins (false if it does not within 10 s). */
void tu_pg_halt(struct tu_pg *pg);
bool tu_pg_resume(struct tu_pg *pg);

/* An S3-compatible object store on loopback: s3rver from tools/js
 * ($O/js, else build/js) under node, its data in a temp dir, the
 * credentials S3RVER:S3RVER in key_file (mode 0600). */
struct tu_s3 {
    char *dir, *js, *node, *key_file;
    char *cert, *key; /* HTTPS with these; NULL: plain HTTP */
    int port;
    pid_t pid;
};
/* Start it: 0, or -ENOENT when node or s3rver is not installed (the
 * caller skips: exit 77). */
int tu_s3_start(struct tu_s3 *s);
/* The same over HTTPS with the certificate and key given (PEM files),
 * serving a bucket "fog-tls" made at its start. */
int tu_s3_start_tls(struct tu_s3 *s, const char *cert, const char *key);
/* Stop it (the data stays); tu_s3_resume() starts it again on its port. */
void tu_s3_halt(struct tu_s3 *s);
void tu_s3_resume(struct tu_s3 *s);
void tu_s3_destroy(struct tu_s3 *s);
/* A signed request to it, body (may be NULL) sent as is: the HTTP status. */
long tu_s3_raw(const struct tu_s3 *s, const char *method, const char *path,
               const char *body);
