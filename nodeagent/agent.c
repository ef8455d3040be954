/* The agent's main loop. Three threads: one long-polls the desired state,
 * libvirt's event loop delivers lifecycle events, and the main thread
 * reconciles and posts status whenever either wakes it, a shutdown timeout
 * or the heartbeat comes due. Signals are taken by sigwait() on a thread
 * of their own. */
#include "nodeagent/agent.h"
#include "nodeagent/meshdirect.h"
#include "nodeagent/meshrelay.h"
#include "nodeagent/natprobe.h"

#include "api/agentmsg.h"
#include "api/client.h"
#include "api/desired_delta.h"
#include "common/buf.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/log.h"
#include "common/sdnotify.h"
#include "common/timeutil.h"
#include "images/fetch.h"
#include "netfabric/apply.h"
#include "netfabric/resolver.h"
#include "netfabric/state.h"
#include "netfabric/wg.h"
#include "netfabric/wgkey.h"
#include "nodeagent/backupjob.h"
#include "nodeagent/benchjob.h"
#include "nodeagent/conrelay.h"
#include "nodeagent/console.h"
#include "nodeagent/disk.h"
#include "nodeagent/gpu.h"
#include "nodeagent/hcheck.h"
#include "nodeagent/inventory.h"
#include "nodeagent/meter.h"
#include "nodeagent/metrics.h"
#include "nodeagent/nodestate.h"
#include "nodeagent/policy.h"
#include "nodeagent/reconcile.h"
#include "nodeagent/snapshot.h"
#include "nodeagent/vmseen.h"
#include "nodeagent/vmxml.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

/* What console tails may take of one status post: with AGENT_SAMPLES_MAX
 * samples (about 100 bytes each) the post stays far below the
 * AGENT_STATUS_BODY_MAX the controller reads. */
#define STATUS_BODY_MAX 60000

int agent_print_inventory(const struct agent_settings *s)
{
    struct inventory inv;
    int r = agent_config_inventory(s, &inv);
    if (r < 0)
        return r;
    _cleanup_json_ json_t *j = inventory_to_json(&inv, true);
    inventory_clear(&inv);
    /* Read-only: the GPUs, their groups and drivers as found. */
    struct gpu_inventory gpus;
    if ((r = gpu_inventory_collect(s->root, &gpus)) < 0)
        return r;
    json_object_set_new(j, "iommu", json_boolean(gpus.iommu));
    json_object_set_new(j, "gpus", gpu_inventory_to_json(&gpus));
    gpu_inventory_clear(&gpus);
    _cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2));
    printf("%s\n", text);
    return 0;
}

/* ---- run ---- */

/* At most this many VMs are remembered as touched between two passes;
 * past it, every domain's XML is read again. */
#define TOUCHED_MAX 1024

struct agent {
    const struct agent_settings *cfg;
    struct node_state node;
    char *ca_path;
    char *image_dir;
    char *arch;         /* the inventory's, kept for the reconciler */
    const char *uri;
    struct virt *virt;
    struct reconcile_ctx rc;
    struct inventory inv;
    int64_t heartbeat_ms;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    json_t *doc;        /* latest desired document (lock) */
    bool doc_new;       /* (lock) */
    /* The VMs the deltas since the last document taken named (lock);
     * NULL: a whole document came, every VM is looked at. */
    json_t *delta_ids;
    /* The domains as last listed, kept up to date by looking up those a
     * delta or an action names; valid only when known_ok. */
    struct virt_dom *known;
    size_t n_known;
    bool known_ok;
    bool events;        /* lifecycle event seen (lock) */
    char (*touched)[37]; /* VMs whose domain had an event (lock) */
    size_t n_touched;    /* (lock) */
    bool touched_all;    /* more than TOUCHED_MAX of them (lock) */
    atomic_bool stop;

    struct vm_seen_set seen; /* what the controller has of each VM */
    char *last_sig;     /* states last posted successfully */
    struct meter *meter;
    struct agent_metrics *metrics; /* NULL without --metrics-listen */

    /* Digests of the images desired VMs sit on: never evicted. */
    pthread_mutex_t digests_lock;
    char (*digests)[65];
    size_t n_digests;

    /* Host networking (unless --network none). */
    bool host_net;
    bool has_wg_key;
    uint8_t wg_key[WGKEY_LEN];
    uint32_t public_addr;   /* host order; 0 = any */
    char public_ip6[46];    /* --public-ip6, else detected; "": none */
    struct ipam_cidr *egress_allow; /* --allow-egress; owned */
    size_t n_egress_allow;
    struct vmxml_limits limits; /* per-VM limits from the settings */
    char *dns_dir;          /* resolvers' folder; NULL: no dnsmasq here */
    const char *dns_user;   /* the user dnsmasq drops to (NULL: ours) */
    char *net_error;        /* last netfabric failure, for the status */
    int64_t net_retry_at;   /* monotonic ms; 0 = none pending */

    /* What the node's policy refused of the current document: reported
     * once to the controller (refused_sent), and per VM in its status. */
    json_t *refused;
    bool refused_sent;
    /* How long after a failed status post to try again: what a 429 or
     * 503 answer's Retry-After said, else 2 s. */
    int64_t status_retry_ms;

    /* The GPU report (gpu_report) as of the last heartbeat. */
    json_t *gpus;

    struct conrelay *consoles; /* interactive console sessions */
    struct natprobe *probe;    /* address probes; NULL: none */
    struct meshrelay *relay;   /* relayed mesh peers; NULL: none */
    struct meshdirect *direct; /* their direct tries; NULL: none */
    bool paths_wanted;         /* the controller takes AGENT_MESH_PATHS */
    struct backupjob *backups; /* the backup worker */
    struct benchjob *bench;    /* the benchmark worker */
    struct hcheck_runner *health; /* health checks; NULL: none run */
    char *health_key;          /* the checks last handed to it */
};

static void wake(struct agent *a, bool event)
{
    pthread_mutex_lock(&a->lock);
    if (event)
        a->events = true;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

static void on_event(void *userdata, const char *vm_id, int event, int detail)
{
    struct agent *a = userdata;
    log_debug("vm %s: libvirt event %d/%d", vm_id, event, detail);
    pthread_mutex_lock(&a->lock);
    bool listed = false;
    for (size_t i = 0; i < a->n_touched && !listed; i++)
        listed = streq(a->touched[i], vm_id);
    if (!listed && a->n_touched >= TOUCHED_MAX) {
        a->touched_all = true;
    } else if (!listed) {
        if (!a->touched)
            a->touched = xcalloc(TOUCHED_MAX, sizeof(*a->touched));
        snprintf(a->touched[a->n_touched++], sizeof(*a->touched), "%s",
                 vm_id);
    }
    a->events = true;
    pthread_cond_signal(&a->cond);
    pthread_mutex_unlock(&a->lock);
}

/* A health check changed state: report it now. */
static void on_health(void *userdata)
{
    wake(userdata, true);
}

/* Hand the checker the checks of every VM whose domain runs, at its first
 * address (the node reaches its VMs' private addresses; nobody else
 * can), when they differ from the last set. */
static void health_sync(struct agent *a, const json_t *doc,
                        struct virt_dom *doms, size_t n)
{
    if (!a->health)
        return;
    size_t max = 0, i;
    json_t *vm;
    json_array_foreach(json_object_get(doc, "vms"), i, vm)
        max += json_array_size(json_object_get(vm, AGENT_VM_HEALTH_CHECKS));
    struct hcheck_target *t = xcalloc(max + 1, sizeof(*t));
    struct hc_spec *specs = xcalloc(max + 1, sizeof(*specs));
    size_t nt = 0;
    struct buf key = BUF_INIT;
    json_array_foreach(json_object_get(doc, "vms"), i, vm) {
        const char *id = json_str(vm, "id");
        const char *addr = json_str(json_array_get(json_object_get(vm, "nics"),
                                                   0), "address");
        const struct virt_dom *d = uuid_is_valid(id) ?
                                       virt_doms_find(doms, n, id) : NULL;
        if (!d || d->state != VIRT_RUNNING || !addr ||
            strlen(addr) >= sizeof(t->address))
            continue;
        size_t k;
        json_t *c;
        json_array_foreach(json_object_get(vm, AGENT_VM_HEALTH_CHECKS), k, c) {
            struct jerr je = { 0 };
            if (nt >= max || hc_spec_from_json(c, false, &specs[nt], &je) < 0 ||
                !*specs[nt].id) {
                jerr_clear(&je);
                hc_spec_clear(&specs[nt]);
                continue;
            }
            snprintf(t[nt].vm_id, sizeof(t[nt].vm_id), "%s", id);
            snprintf(t[nt].address, sizeof(t[nt].address), "%s", addr);
            t[nt].gen = json_int(vm, "reboot_gen", 0);
            t[nt].spec = &specs[nt];
            _cleanup_free_ char *cj = json_dumps_compact(c);
            buf_printf(&key, "%s|%s|%lld|%s;", id, addr,
                       (long long)t[nt].gen, cj);
            nt++;
        }
    }
    const char *k = key.data ? key.data : "";
    if (!a->health_key || !streq(a->health_key, k)) {
        hcheck_runner_sync(a->health, t, nt);
        free(a->health_key);
        a->health_key = xstrdup(k);
    }
    buf_free(&key);
    for (size_t j = 0; j < nt; j++)
        hc_spec_clear(&specs[j]);
    free(specs);
    free(t);
}

/* The states of VM o's checks, into its status entry and the signature
 * (a change of state is worth a post; a new output alone is not). */
static void health_status(struct agent *a, struct am_vm_status *o,
                          struct buf *sig)
{
    if (!a->health || !streq(o->state, "running"))
        return;
    struct hcheck_result *res;
    size_t n;
    hcheck_runner_results(a->health, o->id, &res, &n);
    if (n == 0) { /* no checks (yet): nothing to say */
        free(res);
        return;
    }
    o->has_health = true;
    o->health = xcalloc(n + 1, sizeof(*o->health));
    for (size_t i = 0; i < n; i++) {
        o->health[o->n_health++] = res[i].h;
        res[i].h.output = NULL; /* moved */
        buf_printf(sig, "%s:%s;", res[i].h.id, hc_state_name(res[i].h.state));
    }
    hcheck_results_free(res, n);
}

/* Sleep up to ms unless asked to stop. */
static void nap(struct agent *a, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&a->lock);
    if (!atomic_load(&a->stop))
        pthread_cond_timedwait(&a->cond, &a->lock, &ts);
    pthread_mutex_unlock(&a->lock);
}

/* The wait the controller announced, or `def`. */
static int64_t poll_wait_of(const struct api_reply *rep, int64_t def)
{
    size_t len;
    const char *v = api_reply_header(rep, AGENT_POLL_WAIT_HEADER, &len);
    int64_t w;
    if (!v || len == 0 || len > 8)
        return def;
    _cleanup_free_ char *text = xstrndup(v, len);
    return parse_int64(text, 1, 3600, &w) == 0 ? w : def;
}

/* Next pause after a failed poll: doubling from 500 ms up to `cap`, with
 * up to a quarter more at random so a fleet does not retry in step. */
static int64_t backoff_next(int64_t prev, int64_t cap)
{
    int64_t b = prev ? prev * 2 : 500;
    if (b > cap)
        b = cap;
    uint32_t r;
    random_bytes(&r, sizeof(r));
    return b + (int64_t)(r % (uint32_t)(b / 4 + 1));
}

/* Add the ids of the VMs delta `d` names (changed or removed) to
 * a->delta_ids (a->lock held). */
static void delta_ids_add(struct agent *a, const json_t *d)
{
    if (!a->delta_ids)
        a->delta_ids = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(d, "vms"), i, v)
        json_array_append(a->delta_ids, json_object_get(v, "id"));
    json_array_foreach(json_object_get(d, DESIRED_DELTA_REMOVED), i, v)
        json_array_append(a->delta_ids, v);
}

/* Bring a->known up to date for the VMs named in `ids` (JSON strings) or
 * `plan` (its actions), looking each domain up: 0, or -errno when one
 * could not be looked up (then a->known is no longer trusted). */
static int known_refresh(struct agent *a, const json_t *ids,
                         const struct reconcile_plan *plan)
{
    size_t n = ids ? json_array_size(ids) : plan->n;
    for (size_t i = 0; i < n; i++) {
        const char *id = ids ? json_string_value(json_array_get(ids, i))
                             : plan->actions[i].vm_id;
        if (!id || !uuid_is_valid(id))
            continue;
        struct virt_dom d;
        int r = virt_lookup(a->virt, id, &d);
        if (r < 0 && r != -ENOENT) {
            a->known_ok = false;
            return r;
        }
        bool found;
        size_t at = virt_doms_at(a->known, a->n_known, id, &found);
        struct virt_dom *old = found ? &a->known[at] : NULL;
        if (old)
            virt_dom_clear(old);
        if (r == -ENOENT) {
            if (found) {
                memmove(old, old + 1, (a->n_known - at - 1) * sizeof(*old));
                a->n_known--;
            }
            continue;
        }
        if (!old) /* where it keeps a->known in order */
            old = sorted_insert(&a->known, &a->n_known, sizeof(*old), at);
        *old = d;
    }
    return 0;
}

/* Document `doc` with only the VMs whose ids `ids` (JSON strings) holds:
 * a shallow copy, new reference. */
static json_t *named_vms(const json_t *doc, const json_t *ids)
{
    json_auto_t *set = json_object();
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
        if (json_is_string(v))
            json_object_set(set, json_string_value(v), json_true());
    json_t *out = json_copy((json_t *)doc);
    json_t *vms = json_array();
    json_array_foreach(json_object_get(doc, "vms"), i, v) {
        const char *id = json_str(v, "id");
        if (id && json_object_get(set, id))
            json_array_append(vms, v);
    }
    json_object_set_new(out, "vms", vms);
    return out;
}

/* The domains of doms[n] the ids name, as shallow copies into *ret (the
 * array the caller's to free, not what its members point to): their
 * count. */
static size_t named_doms(const struct virt_dom *doms, size_t n,
                         const json_t *ids, struct virt_dom **ret)
{
    struct virt_dom *out = xcalloc(json_array_size(ids) + 1, sizeof(*out));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j;
        json_t *v;
        bool named = false;
        json_array_foreach(ids, j, v)
            if (!named && streq(json_string_value(v), doms[i].meta.vm_id))
                named = true;
        if (named && k < json_array_size(ids))
            out[k++] = doms[i];
    }
    *ret = out;
    return k;
}

static void *poller_main(void *arg)
{
    struct agent *a = arg;
    struct api_client *c = api_client_new(a->node.controller,
                                          a->node.credential, a->ca_path);
    api_client_set_key_pin(c, a->node.key_pin);
    /* A partition must not leave the poll hanging: a short connect, and a
     * poll silent for longer than the announced wait is given up. */
    api_client_set_connect_timeout(c, 5);
    _cleanup_free_ char *node_id = xstrdup(a->node.node_id);
    int64_t rev = -1, backoff = 0, wait = AGENT_POLL_WAIT_DEFAULT_S;
    /* The whole document at `rev` deltas are merged into; the next ask
     * for the whole one (monotonic ms; 0: none but at start). */
    json_auto_t *held = NULL;
    int64_t resync_ms = a->cfg->resync_interval_s * 1000;
    int64_t resync_at = resync_ms > 0 ? mono_ms() + resync_ms : 0;
    while (!atomic_load(&a->stop)) {
        int64_t now = mono_ms();
        bool whole = rev < 0 || (resync_at > 0 && now >= resync_at);
        /* A poll held no longer than the next resync is due. */
        int64_t hold = wait;
        if (resync_at > 0 && !whole && (resync_at - now + 999) / 1000 < hold)
            hold = (resync_at - now + 999) / 1000;
        api_client_set_timeout(c, wait + AGENT_POLL_MARGIN_S);
        api_client_set_stall(c, wait + AGENT_POLL_MARGIN_S);
        /* An old controller ignores delta=1 and answers whole. */
        _cleanup_free_ char *path = whole ?
            xstrdup("/v1/agent/desired?" DESIRED_DELTA_QUERY "=1") :
            xasprintf("/v1/agent/desired?since=%lld&wait=%lld&"
                      DESIRED_DELTA_QUERY "=1", (long long)rev,
                      (long long)hold);
        struct api_reply rep;
        int r = api_request(c, "GET", path, NULL, NULL, &rep);
        int64_t answered = now_ms();
        if (atomic_load(&a->stop)) {
            api_reply_clear(&rep);
            break;
        }
        _cleanup_free_ char *refusal = NULL;
        json_auto_t *doc = NULL;
        bool delta = r == 0 && rep.status == 200 && desired_delta_is(rep.json);
        if (delta) {
            /* Only what the delta carries is decoded (at 200 VMs the
             * whole document took about a millisecond). */
            int m = reconcile_delta_read(held, rep.json, node_id, &doc,
                                         &refusal);
            if (m == -ESTALE || m == -EINVAL) {
                log_warn("desired state delta from revision %lld not "
                         "applied to revision %lld (%s): asking for the "
                         "whole document", (long long)json_int(
                             rep.json, DESIRED_DELTA_FROM, -1),
                         (long long)rev, m == -ESTALE ? "another base" :
                                                        "malformed");
                rev = -1;
                api_reply_clear(&rep);
                continue;
            }
        } else if (r == 0 && rep.status == 200)
            doc = reconcile_doc_read(rep.json, node_id, &refusal);
        if (refusal)
            log_warn("desired state refused, the current one stays: %s",
                     refusal);
        if (doc) {
            int64_t nrev = json_int(doc, "revision", -1);
            wait = poll_wait_of(&rep, wait);
            agent_metrics_contact(a->metrics, now_s());
            if (backoff)
                log_info("controller reachable again");
            backoff = 0;
            if (whole && resync_ms > 0)
                resync_at = mono_ms() + resync_ms;
            if (whole && rev >= 0)
                log_debug("full resync: the whole document at revision %lld",
                          (long long)nrev);
            /* A whole document asked for again is applied whole even at
             * the revision held: the full resync. */
            if (nrev != rev || whole) {
                rev = nrev;
                json_decref(held);
                held = json_incref(doc);
                pthread_mutex_lock(&a->lock);
                if (!atomic_load(&a->stop)) {
                    json_decref(a->doc);
                    a->doc = json_incref(doc);
                    if (delta && (!a->doc_new || a->delta_ids))
                        delta_ids_add(a, rep.json);
                    else {
                        json_decref(a->delta_ids);
                        a->delta_ids = NULL;
                    }
                    a->doc_new = true;
                    pthread_cond_signal(&a->cond);
                }
                pthread_mutex_unlock(&a->lock);
                /* The wall clock, for timing a change's way to libvirt. */
                log_debug("desired state revision %lld%s: %zu bytes, "
                          "answered at %" PRId64 ", read at %" PRId64
                          " (unix ms)", (long long)rev,
                          delta ? " (delta)" : "", rep.body_len, answered,
                          now_ms());
            }
            api_reply_clear(&rep);
            continue;
        }
        if (backoff == 0) {
            _cleanup_free_ char *why = r == 0 && rep.status == 200 ?
                xstrdup("incomplete document") : api_reply_describe(&rep);
            log_warn("desired state unavailable: %s; keeping revision %lld",
                     why, (long long)rev);
        }
        /* Removed or refused nodes wait longer than unreachable ones. */
        int64_t cap = (r == 0 && (rep.status == 401 || rep.status == 403 ||
                                  rep.status == 404)) ? 30000 : 3000;
        backoff = backoff_next(backoff, cap);
        /* A busy hub says when to come back. */
        if (r == 0 && (rep.status == 429 || rep.status == 503) &&
            api_reply_header(&rep, "Retry-After", &(size_t){ 0 }))
            backoff = api_reply_retry_ms(&rep, backoff, 1000, 60000);
        api_reply_clear(&rep);
        nap(a, backoff);
    }
    api_client_free(c);
    return NULL;
}

static void *signal_main(void *arg)
{
    struct agent *a = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    sigwait(&set, &sig);
    log_info("signal %d: stopping", sig);
    pthread_mutex_lock(&a->lock);
    atomic_store(&a->stop, true);
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

static int ensure_virt(struct agent *a)
{
    if (a->virt && virt_alive(a->virt))
        return 0;
    if (a->virt) {
        log_warn("libvirt connection lost; reconnecting");
        virt_free(a->virt);
        a->virt = NULL;
    }
    a->known_ok = false; /* what happened meanwhile is unknown */
    int r = virt_open(a->uri, on_event, a, &a->virt);
    if (r < 0)
        return r;
    a->rc.virt = a->virt;
    return 0;
}

static struct vm_seen *seen_get(struct agent *a, const char *id)
{
    return vm_seen_get(&a->seen, id);
}

/* The digest of status entry vm without what travels once (domain XML,
 * its interfaces, the console tail). */
static void entry_digest(const json_t *vm, char out[65])
{
    json_auto_t *e = json_copy((json_t *)vm);
    json_object_del(e, AGENT_VM_DOMAIN_XML);
    json_object_del(e, AGENT_VM_INTERFACES);
    json_object_del(e, "console_tail");
    _cleanup_free_ char *text = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
    sha256_hex(text ? text : "", text ? strlen(text) : 0, out);
}

/* A report made for an event or a new document lists only the VMs whose
 * entry changed since the controller took it (or that carry domain XML or
 * a console tail): the controller reads each listed VM inside its
 * writer's transaction, and most of a node's VMs did not change. The
 * heartbeat's report lists them all. */
static void status_changed_only(struct agent *a, json_t *body)
{
    json_t *vms = json_object_get(body, "vms");
    json_auto_t *kept = json_array();
    size_t i;
    json_t *vm;
    json_array_foreach(vms, i, vm) {
        char d[65];
        entry_digest(vm, d);
        if (json_object_get(vm, AGENT_VM_DOMAIN_XML) ||
            json_object_get(vm, "console_tail") ||
            !streq(d, seen_get(a, json_str(vm, "id"))->entry_posted))
            json_array_append(kept, vm);
    }
    json_object_set(body, "vms", kept);
}

/* Whether the plan has an action for VM id. */
static bool plan_names(const struct reconcile_plan *p, const char *id)
{
    for (size_t i = 0; i < p->n; i++)
        if (streq(p->actions[i].vm_id, id))
            return true;
    return false;
}

/* Something may have changed VM id's domain (NULL: every VM's): its XML
 * is read for the next report. */
static void xml_touched(struct agent *a, const char *id)
{
    vm_seen_touched(&a->seen, id);
}

/* Why the policy refused VM `id` of the current document, or NULL
 * (caller frees). */
static char *vm_refusal(struct agent *a, const char *id)
{
    size_t i;
    json_t *r;
    json_array_foreach(a->refused, i, r) {
        const char *obj = json_str(r, "object");
        if (startswith(obj, "vm ") && streq(obj + 3, id))
            return xasprintf("refused by this node's policy: %s",
                             json_str(r, "reason"));
    }
    return NULL;
}

/* Add VM o's domain XML and its interfaces when they changed since the
 * controller last took them and fit in what is *used of the post's
 * budget (else *pending). */
static void domain_xml_add(struct agent *a, struct am_vm_status *o,
                           size_t *used, bool *pending)
{
    _cleanup_free_ char *xml = NULL;
    if (virt_xml(a->virt, o->id, &xml) < 0)
        return; /* gone meanwhile, or libvirt away: the next pass */
    size_t len = strlen(xml);
    if (len == 0 || len > AGENT_DOMAIN_XML_MAX) {
        log_debug("VM %s: domain XML of %zu bytes not reported", o->id, len);
        return;
    }
    struct vm_seen *s = seen_get(a, o->id);
    char digest[65];
    sha256_hex(xml, len, digest);
    if (streq(digest, s->xml_posted)) {
        s->xml_known = true;
        return;
    }
    json_t *valid = json_string(xml); /* NULL unless UTF-8 */
    json_decref(valid);
    if (!valid)
        return;
    size_t cost = console_escaped_size(xml) + 64 * AGENT_VM_NICS_MAX;
    if (*used + cost > AGENT_DOMAIN_XML_BUDGET) {
        *pending = true;
        return;
    }
    if (vmxml_ifaces_parse(xml, &o->ifaces, &o->n_ifaces) < 0)
        return;
    *used += cost;
    memcpy(s->xml_sent, digest, sizeof(digest));
    o->domain_xml = TAKE_PTR(xml);
}

/* Build the status body; *ret_sig summarises the VM states so an unchanged
 * report can wait for the heartbeat. With consoles, changed console logs
 * are added within the body budget; *ret_pending tells whether some had
 * to wait. */
static json_t *status_build(struct agent *a, const json_t *doc,
                            struct virt_dom *doms, size_t n, bool consoles,
                            bool fresh, char **ret_sig, bool *ret_pending)
{
    json_t *dvms = json_object_get(doc, "vms");
    struct am_status out = {
        .vms = xcalloc(json_array_size(dvms) + 1, sizeof(*out.vms)),
        .endpoint = a->cfg->endpoint && *a->cfg->endpoint ?
                        xstrdup(a->cfg->endpoint) : NULL,
        .public_ip = a->cfg->public_ip ? xstrdup(a->cfg->public_ip) : NULL,
        .public_ip6 = *a->public_ip6 ? xstrdup(a->public_ip6) : NULL,
        .has_inventory = true,
    };
    inventory_to_am(&a->inv, &out.inventory);
    json_auto_t *by_state = json_object();
    struct buf sig = BUF_INIT;
    size_t i;
    json_t *vm;
    json_array_foreach(dvms, i, vm) {
        const char *id = json_str(vm, "id");
        if (!uuid_is_valid(id))
            continue;
        const struct virt_dom *d = virt_doms_find(doms, n, id);
        const char *state, *reason;
        _cleanup_free_ char *refusal = vm_refusal(a, id);
        const char *err = reconcile_vm_error(&a->rc, id);
        reconcile_status(vm, d, refusal ? refusal : err ? err :
                                reconcile_vm_note(&a->rc, id),
                         &state, &reason);
        /* A VM on a tenant network shares the node's network trouble. */
        if (!reason && a->net_error &&
            json_array_size(json_object_get(vm, "nics")) > 0)
            reason = a->net_error;
        struct am_vm_status *o = &out.vms[out.n_vms++];
        o->id = xstrdup(id);
        o->state = xstrdup(state);
        o->by_guest = reconcile_down_by_itself(vm, d);
        if (o->by_guest)
            o->start_gen = d->meta.start_gen;
        if (reason)
            o->reason = console_sanitize(reason, strlen(reason),
                                         AGENT_REASON_MAX, AGENT_REASON_MAX);
        buf_printf(&sig, "%s=%s:%s:%d;", id, state, reason ? reason : "",
                   o->by_guest);
        snapshot_status(d, o, &sig);
        health_status(a, o, &sig);
        json_object_set_new(by_state, state,
                            json_integer(json_int(by_state, state, 0) + 1));
    }
    agent_metrics_vms(a->metrics, by_state);
    /* Domain XML is read when something may have changed it: a new
     * document, an event, a changed state, or at the heartbeat. */
    *ret_pending = false;
    if (consoles || fresh || !a->last_sig || !sig.data ||
        !streq(sig.data, a->last_sig)) {
        /* For an event or a new document, only the domains touched since
         * their XML was read; every one at the heartbeat, or when a state
         * changed with neither. */
        bool all = consoles || !fresh || !a->last_sig;
        size_t xml_used = 0;
        for (size_t k = 0; k < out.n_vms; k++)
            if ((all || !seen_get(a, out.vms[k].id)->xml_known) &&
                virt_doms_find(doms, n, out.vms[k].id))
                domain_xml_add(a, &out.vms[k], &xml_used, ret_pending);
    }
    out.has_permit_ports = agent_config_permit_ports(a->cfg, &out.permit_ports,
                                                    &out.n_permit_ports) == 0;
    size_t n_ref = a->refused_sent ? 0 : json_array_size(a->refused);
    out.refused = xcalloc(n_ref + 1, sizeof(*out.refused));
    for (size_t k = 0; k < n_ref; k++) {
        json_t *f = json_array_get(a->refused, k);
        out.refused[out.n_refused++] = (struct am_refusal){
            xstrdup(json_str(f, "object") ? json_str(f, "object") : ""),
            xstrdup(json_str(f, "reason") ? json_str(f, "reason") : "") };
    }
    /* What the last address probe found. */
    enum probe_nat nat;
    char mapped[PROBE_EP_TEXT_MAX];
    if (natprobe_result(a->probe, &nat, mapped)) {
        out.has_reach = true;
        out.nat = xstrdup(probe_nat_name(nat));
        out.mapped_endpoint = *mapped ? xstrdup(mapped) : NULL;
    }
    /* The relayed peers' paths, where the controller takes them. */
    if (a->paths_wanted && a->direct) {
        size_t np;
        struct meshdirect_state *ps = meshdirect_paths(a->direct, &np);
        bool tcp = meshrelay_over_tcp(a->relay);
        out.has_mesh_paths = true;
        out.mesh_paths = xcalloc(np + 1, sizeof(*out.mesh_paths));
        for (size_t k = 0; k < np; k++)
            out.mesh_paths[out.n_mesh_paths++] = (struct am_mesh_path){
                xstrdup(ps[k].node_id),
                xstrdup(ps[k].path == MESHDIRECT_DIRECT ? AGENT_MESH_PATH_DIRECT
                        : tcp ? AGENT_MESH_PATH_RELAY_TCP
                              : AGENT_MESH_PATH_RELAY_UDP),
                ps[k].since };
        free(ps);
    }
    /* The GPU report (gpu_report: {gpus, iommu}) travels as it was read. */
    out.iommu = -1;
    if (a->gpus) {
        out.gpus = json_incref(json_object_get(a->gpus, AGENT_GPUS));
        json_t *io = json_object_get(a->gpus, AGENT_IOMMU);
        if (json_is_boolean(io))
            out.iommu = json_is_true(io);
    }
    json_t *body = am_status_encode(&out);
    am_status_clear(&out);
    json_t *vms = json_object_get(body, "vms");
    if (consoles) {
        _cleanup_free_ char *base = json_dumps_compact(body);
        size_t used = strlen(base);
        json_array_foreach(vms, i, vm) {
            const char *id = json_str(vm, "id");
            _cleanup_free_ char *path = disk_console_path(a->cfg->data_dir, id);
            struct stat st;
            if (stat(path, &st) < 0)
                continue;
            struct vm_seen *s = seen_get(a, id);
            int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 +
                         st.st_mtim.tv_nsec;
            if (s->posted && s->size == st.st_size && s->mtime_ns == mt)
                continue;
            if (used + 64 >= STATUS_BODY_MAX) {
                *ret_pending = true;
                continue;
            }
            char *text = NULL;
            off_t size;
            int64_t mtime;
            if (console_tail(path, STATUS_BODY_MAX - used - 64,
                             AGENT_CONSOLE_TAIL_MAX, &text, &size, &mtime) < 0)
                continue;
            json_object_set_new(vm, "console_tail", json_string(text));
            used += 20 + console_escaped_size(text);
            if (used > STATUS_BODY_MAX)
                used = STATUS_BODY_MAX;
            s->size = size;
            s->mtime_ns = mtime;
            s->posted = false; /* set once the post succeeds */
            free(text);
        }
    }
    *ret_sig = buf_steal(&sig);
    if (!*ret_sig)
        *ret_sig = xstrdup("");
    return body;
}

/* Whether a status body carries domain XML the controller has not got. */
static bool status_has_xml(const json_t *body)
{
    size_t i;
    json_t *vm;
    json_array_foreach(json_object_get(body, "vms"), i, vm)
        if (json_object_get(vm, AGENT_VM_DOMAIN_XML))
            return true;
    return false;
}

/* 0, or -EBADMSG when the controller refused the body as such (then
 * *ret_problem, if not NULL, holds its problem+json: new reference or
 * NULL), or -EIO / another -errno when it could not take it now. */
static int status_post(struct agent *a, struct api_client *c, json_t *body,
                       json_t **ret_problem)
{
    struct api_reply rep;
    int r = api_request(c, "POST", "/v1/agent/status", body, NULL, &rep);
    if (r < 0 || rep.status != 200) {
        _cleanup_free_ char *why = api_reply_describe(&rep);
        log_warn("status post failed: %s", why);
        bool refused = r == 0 && rep.status >= 400 && rep.status < 500 &&
                       rep.status != 401 && rep.status != 408 &&
                       rep.status != 429;
        a->status_retry_ms =
            r == 0 && (rep.status == 429 || rep.status == 503)
                ? api_reply_retry_ms(&rep, 2000, 1000, 60000)
                : 2000;
        if (refused && ret_problem)
            *ret_problem = json_incref(rep.json);
        api_reply_clear(&rep);
        return r < 0 ? r : refused ? -EBADMSG : -EIO;
    }
    /* The controller names its probe port when it answers probes. */
    json_t *pp = json_object_get(rep.json, AGENT_PROBE_PORT);
    natprobe_target(a->probe, a->node.controller,
                    json_is_integer(pp) && json_integer_value(pp) > 0 &&
                    json_integer_value(pp) < 65535
                        ? (int)json_integer_value(pp) : 0);
    /* And its relay port with this node's token when it relays. */
    json_t *rp = json_object_get(rep.json, AGENT_RELAY_PORT);
    meshrelay_target(a->relay, a->node.controller,
                     json_is_integer(rp) && json_integer_value(rp) > 0 &&
                     json_integer_value(rp) < 65536
                         ? (int)json_integer_value(rp) : 0,
                     json_str(rep.json, AGENT_RELAY_TOKEN));
    a->paths_wanted = json_is_true(json_object_get(rep.json,
                                                   AGENT_MESH_PATHS));
    api_reply_clear(&rep);
    if (json_object_get(body, "refused"))
        a->refused_sent = true;
    /* Console tails and domain XML in this body have now reached the
     * controller. */
    size_t i;
    json_t *vm;
    json_array_foreach(json_object_get(body, "vms"), i, vm) {
        if (json_object_get(vm, "console_tail"))
            seen_get(a, json_str(vm, "id"))->posted = true;
        entry_digest(vm, seen_get(a, json_str(vm, "id"))->entry_posted);
        if (json_object_get(vm, AGENT_VM_DOMAIN_XML)) {
            struct vm_seen *s = seen_get(a, json_str(vm, "id"));
            memcpy(s->xml_posted, s->xml_sent, sizeof(s->xml_posted));
            s->xml_known = true;
        }
    }
    return 0;
}

/* fetch_in_use_fn: is the digest the base of a desired VM? */
static bool digest_in_use(const char *sha256, void *data)
{
    struct agent *a = data;
    bool used = false;
    pthread_mutex_lock(&a->digests_lock);
    for (size_t i = 0; i < a->n_digests && !used; i++)
        used = streq(a->digests[i], sha256);
    pthread_mutex_unlock(&a->digests_lock);
    return used;
}

/* Remember the images of the VMs in `doc`, then let the cache shrink to
 * its budget (images of VMs just deleted may go). */
static void digests_update(struct agent *a, const json_t *doc)
{
    json_t *vms = json_object_get(doc, "vms");
    char (*d)[65] = xcalloc(json_array_size(vms) + 1, 65);
    size_t n = 0, i;
    json_t *vm;
    json_array_foreach(vms, i, vm) {
        const char *sha = json_str(json_object_get(vm, "image_source"),
                                   "sha256");
        if (sha && strlen(sha) == 64)
            snprintf(d[n++], 65, "%s", sha);
    }
    pthread_mutex_lock(&a->digests_lock);
    free(a->digests);
    a->digests = d;
    a->n_digests = n;
    pthread_mutex_unlock(&a->digests_lock);
    if (a->rc.cache)
        fetch_cache_evict(a->rc.cache, 0);
}

/* Post a status body with the usage samples due; they are forgotten once
 * the controller has them. A body refused for some of its samples names
 * them: those are dropped and the others sent again at once. A body
 * refused without naming any is sent again without samples, which stay
 * for the next post (bounded in the meter). */
static int status_send(struct agent *a, struct api_client *c, json_t *body)
{
    json_auto_t *samples = meter_take(a->meter, now_s(), AGENT_SAMPLES_MAX);
    if (json_array_size(samples) > 0)
        json_object_set(body, "samples", samples);
    json_auto_t *problem = NULL;
    int r = status_post(a, c, body, &problem);
    /* A controller that does not take refusal lists still gets the
     * status (and the samples); the refusals stay in the agent's log and
     * the VMs' reasons. */
    if (r == -EBADMSG && json_object_get(body, "refused") &&
        !json_object_get(problem, AGENT_REJECTED_SAMPLES)) {
        json_object_del(body, "refused");
        json_decref(problem);
        problem = NULL;
        if ((r = status_post(a, c, body, &problem)) == 0) {
            log_warn("the controller refused the list of refusals: dropped");
            a->refused_sent = true;
        }
    }
    if (r == -EBADMSG && json_array_size(samples) > 0) {
        json_t *named = json_object_get(problem, AGENT_REJECTED_SAMPLES);
        size_t dropped = 0;
        if (json_array_size(named) > 0) {
            json_t *rest = meter_refused(a->meter, samples, named, &dropped);
            json_decref(samples);
            samples = rest;
        }
        if (dropped > 0 && json_array_size(samples) > 0) {
            json_object_set(body, "samples", samples);
        } else {
            json_object_del(body, "samples");
            if (dropped == 0) {
                json_decref(samples);
                samples = json_array(); /* kept pending, not acknowledged */
            }
        }
        r = status_post(a, c, body, NULL);
    }
    if (r == 0)
        meter_ack(a->meter, samples);
    return r;
}

/* Check new desired document `doc` against the node's policy before
 * anything of it is applied: the part that passes is returned (new
 * reference; accepted_write() keeps it for the operator); what
 * does not is logged and kept for the next status post; `applied` is the
 * part accepted of the previous document (or NULL). Host facts are
 * read again each time, as listening ports and routes come and go. */
static json_t *policy_check(struct agent *a, const json_t *doc,
                            const json_t *applied)
{
    /* The range and port the controller was told at join; the flags for
     * a node joined before node.json kept them. */
    bool joined = a->node.port_min > 0 && a->node.port_max > 0;
    int64_t wg = a->node.wg_port > 0 ? a->node.wg_port : a->cfg->wg_port;
    struct policy_host h = {
        .port_min = joined ? a->node.port_min : a->cfg->port_min,
        .port_max = joined ? a->node.port_max : a->cfg->port_max,
        .wg_port = (uint16_t)wg,
        .controller = a->node.controller,
        .applied = applied,
        .vcpus = a->inv.vcpus,
        .memory_mib = a->inv.memory_mib,
        .disk_gib = a->inv.disk_gib,
    };
    _cleanup_free_ uint16_t *permit = NULL;
    if (agent_config_permit_ports(a->cfg, &permit, &h.n_permit) == 0)
        h.permit_ports = permit;
    int r = policy_host_collect(a->cfg->root, &h);
    if (r < 0)
        log_warn("cannot read the host's ports and routes under '%s': %s; "
                 "no port is published and no network built", a->cfg->root,
                 strerror(-r));
    json_t *accepted = NULL, *refused = NULL;
    if (policy_filter(doc, &h, &accepted, &refused) < 0) {
        /* doc_ok() let only objects through. */
        accepted = json_incref((json_t *)doc);
        refused = json_array();
    }
    policy_host_clear(&h);
    if (!json_equal(refused, a->refused)) {
        size_t i;
        json_t *e;
        json_array_foreach(refused, i, e)
            log_warn("policy: refused %s: %s", json_str(e, "object"),
                     json_str(e, "reason"));
        a->refused_sent = false;
    }
    json_decref(a->refused);
    a->refused = refused;
    return accepted;
}

/* accepted.json is written at most once in this long: a stream of
 * changes (a VM created every few ms) writes it once a second, not once
 * per change with a whole document's text and an fsync each. */
#define ACCEPTED_EVERY_MS 1000

/* What the policy accepted, into DATA-DIR/accepted.json for the operator:
 * written once the pass has acted and reported, not before, and at most
 * ACCEPTED_EVERY_MS after a change. */
static void accepted_write(struct agent *a, const json_t *accepted)
{
    _cleanup_free_ char *path = xasprintf("%s/accepted.json",
                                          a->cfg->data_dir);
    _cleanup_free_ char *text = json_dumps(accepted, JSON_INDENT(1) |
                                                     JSON_SORT_KEYS);
    int r;
    if (text && (r = file_write_atomic(path, text, strlen(text), 0600)) < 0)
        log_warn("cannot write '%s': %s", path, strerror(-r));
}

/* What the agent adds to a document's network state. */
static void net_local(const struct agent *a, struct nf_state *st)
{
    st->dns_dir = a->dns_dir;
    st->dns_user = a->dns_user;
}

/* Restart the resolvers that died since the last apply (dnsmasq runs on
 * its own; a crash must not leave a network without names until the next
 * document). Failures wait for the next heartbeat. */
static void net_resolvers_check(struct agent *a, const json_t *doc)
{
    struct nf_state st;
    _cleanup_free_ char *err = NULL;
    if (!a->dns_dir ||
        netfabric_state_from_json(doc, a->cfg->mesh_ifname, &st, &err) < 0)
        return;
    net_local(a, &st);
    int r = resolver_sync(&st);
    if (r < 0)
        log_warn("resolvers: %s", strerror(-r));
    nf_state_clear(&st);
}

/* Peers the document puts on the relay path get a local relay socket as
 * their WireGuard endpoint, or their direct one where meshdirect found
 * it works; the relay drops the others. Called under meshdirect_hold. */
static void net_relay(struct agent *a, const json_t *doc, struct nf_state *st)
{
    if (!a->relay)
        return;
    json_t *peers = json_object_get(doc, "peers");
    size_t n = 0, i;
    json_t *p;
    const char **ids = xcalloc(json_array_size(peers) + 1, sizeof(*ids));
    json_array_foreach(peers, i, p)
        if (streq(json_str(p, AGENT_PEER_PATH), "relay") &&
            json_str(p, "node_id"))
            ids[n++] = json_str(p, "node_id");
    uint16_t *ports = xcalloc(n + 1, sizeof(*ports));
    meshrelay_sync(a->relay, ids, n, ports);
    struct meshdirect_peer *md = xcalloc(n + 1, sizeof(*md));
    struct nf_peer **at = xcalloc(n + 1, sizeof(*at));
    size_t m = 0;
    for (size_t k = 0; k < n; k++)
        for (size_t j = 0; ports[k] && j < st->n_peers; j++)
            if (streq(st->peers[j].node_id, ids[k])) {
                struct nf_peer *q = &st->peers[j];
                at[m] = q;
                md[m++] = (struct meshdirect_peer){
                    .node_id = ids[k], .public_key = q->public_key,
                    .candidate = q->endpoint, .relay_port = ports[k],
                    .mesh_ip = q->n_allowed_ips ? q->allowed_ips[0].net : 0 };
                break;
            }
    char **eps = xcalloc(m + 1, sizeof(*eps));
    if (a->direct) {
        meshdirect_sync(a->direct, md, m, eps);
    } else {
        for (size_t k = 0; k < m; k++)
            eps[k] = xasprintf("127.0.0.1:%u", (unsigned)md[k].relay_port);
    }
    for (size_t k = 0; k < m; k++) {
        free(at[k]->endpoint);
        at[k]->endpoint = eps[k];
    }
    free(eps);
    free(at);
    free(md);
    free(ports);
    free(ids);
}

/* Make the host's network match desired document `doc`: the mesh, the
 * tenant bridges (before any domain on them starts), the firewall and the
 * networks' resolvers. Failures are kept for the status and retried
 * later, never fatal. */
static void net_apply(struct agent *a, const json_t *doc, int64_t now)
{
    struct nf_state st;
    _cleanup_free_ char *err = NULL, *msg = NULL;
    int r = netfabric_state_from_json(doc, a->cfg->mesh_ifname, &st, &err);
    if (r < 0) {
        msg = xasprintf("network state unusable: %s", err ? err : "invalid");
    } else {
        net_local(a, &st);
        meshdirect_hold(a->direct);
        net_relay(a, doc, &st);
        st.has_private_key = a->has_wg_key;
        if (a->has_wg_key)
            memcpy(st.private_key, a->wg_key, WGKEY_LEN);
        st.public_addr = a->public_addr;
        /* The global IPv6 address: configured, else looked up on each
         * apply (addresses come and go with the router's prefix). */
        if (a->cfg->public_ip6 && *a->cfg->public_ip6)
            snprintf(a->public_ip6, sizeof(a->public_ip6), "%s",
                     a->cfg->public_ip6);
        else if (agent_detect_public_ip6(NULL, a->public_ip6) < 0)
            a->public_ip6[0] = '\0';
        st.has_public_addr6 = *a->public_ip6 &&
                              inet_pton(AF_INET6, a->public_ip6,
                                        &st.public_addr6) == 1;
        st.underlay_mtu = (unsigned)a->cfg->underlay_mtu;
        st.wireguard_go = a->cfg->wireguard_go;
        st.egress_allow = a->egress_allow;
        st.n_egress_allow = a->n_egress_allow;
        if (!a->has_wg_key && st.has_mesh)
            msg = xstrdup("network setup failed: no mesh key");
        r = netfabric_apply(&st);
        meshdirect_release(a->direct);
        if (r < 0 && !msg)
            msg = xasprintf("network setup failed: %s", strerror(-r));
        explicit_bzero(st.private_key, sizeof(st.private_key));
        nf_state_clear(&st);
    }
    if (msg) {
        if (!streq(msg, a->net_error))
            log_warn("%s", msg);
        free(a->net_error);
        a->net_error = TAKE_PTR(msg);
        a->net_retry_at = now + 10000;
        return;
    }
    if (a->net_error)
        log_info("network set up");
    free(a->net_error);
    a->net_error = NULL;
    a->net_retry_at = 0;
}

/* The mesh peers' latest handshakes, read from WireGuard at scrape time. */
static int mesh_peers(void *data, size_t *ret_peers, int64_t **ret_handshakes)
{
    struct agent *a = data;
    struct wg_opts o = { .wireguard_go = a->cfg->wireguard_go };
    struct wg_device d;
    int r = wg_backend_pick()->get(&o, a->cfg->mesh_ifname, &d);
    if (r < 0)
        return r;
    int64_t *hs = xcalloc(d.n_peers + 1, sizeof(*hs));
    for (size_t i = 0; i < d.n_peers; i++)
        hs[i] = d.peers[i].last_handshake_sec;
    *ret_peers = d.n_peers;
    *ret_handshakes = hs;
    wg_device_clear(&d);
    return 0;
}

/* Read the GPUs again, cross-checked with libvirt's node devices. */
static void gpus_refresh(struct agent *a)
{
    char **devs = NULL;
    if (a->virt && virt_pci_devices(a->virt, &devs) < 0 && !a->gpus)
        log_info("libvirt lists no PCI devices (%s): GPUs are not "
                 "cross-checked", virt_error());
    json_t *rep = NULL;
    int r = gpu_report(a->cfg->root, devs, &rep);
    vmxml_strv_free(devs);
    if (r < 0) {
        log_warn("cannot read the GPUs under '%s': %s", a->cfg->root,
                 strerror(-r));
        return;
    }
    json_decref(a->gpus);
    a->gpus = rep;
}

static int agent_setup(struct agent *a, const struct agent_settings *s)
{
    int r = node_state_load(s->data_dir, &a->node);
    if (r == -ENOENT) {
        log_error("'%s' holds no node identity: run 'fog-nodeagent join' "
                  "first", s->data_dir);
        return r;
    }
    if (r < 0) {
        if (r != -EINVAL)
            log_error("cannot read the node identity in '%s': %s",
                      s->data_dir, strerror(-r));
        return r;
    }
    a->ca_path = node_state_ca_path(s->data_dir);
    _cleanup_free_ char *dir = agent_config_image_dir(s);
    char *abs = realpath(dir, NULL);
    a->image_dir = abs ? abs : TAKE_PTR(dir);
    a->uri = s->libvirt_uri ? s->libvirt_uri :
             a->node.libvirt_uri ? a->node.libvirt_uri : "qemu:///system";
    a->heartbeat_ms = 1000 * (s->heartbeat_s ? s->heartbeat_s :
                                               a->node.heartbeat_s);
    if ((r = agent_config_inventory(s, &a->inv)) < 0)
        return r;
    a->arch = xstrdup(a->inv.arch);
    _cleanup_free_ char *meter_path = xasprintf("%s/meter.json", s->data_dir);
    a->meter = meter_new(meter_path, now_s());
    a->host_net = agent_config_host_network(s);
    if (a->host_net) {
        _cleanup_free_ char *key_path = node_state_wg_key_path(s->data_dir);
        if ((r = wgkey_load_or_create(key_path, a->wg_key)) < 0)
            log_error("cannot read the mesh key '%s': %s; the mesh stays "
                      "down", key_path, strerror(-r));
        else
            a->has_wg_key = true;
        struct in_addr in;
        if (s->public_ip && *s->public_ip &&
            inet_pton(AF_INET, s->public_ip, &in) == 1)
            a->public_addr = ntohl(in.s_addr);
        if ((r = agent_config_allow_egress(s, &a->egress_allow,
                                           &a->n_egress_allow)) < 0)
            return r;
        /* Names inside tenant networks need dnsmasq (dnsmasq-base). */
        if (access(RESOLVER_DNSMASQ, X_OK) == 0) {
            a->dns_dir = xasprintf("%s/dns", s->data_dir);
            if (geteuid() == 0)
                a->dns_user = getpwnam("dnsmasq") ? "dnsmasq" : "nobody";
        } else {
            log_warn("no %s: VMs resolve through public resolvers, not "
                     "their gateway", RESOLVER_DNSMASQ);
        }
    }
    a->rc = (struct reconcile_ctx){
        .data_dir = s->data_dir,
        .image_dir = a->image_dir,
        .qemu_img = s->qemu_img,
        .arch = a->arch,
        .root = s->root,
        .kvm = a->inv.kvm,
        .allow_tcg = s->allow_tcg,
        .shutdown_timeout_ms = s->shutdown_timeout_s * 1000,
        .retry_ms = 10000,
        .controller = a->node.controller,
        .limits = &a->limits,
        .gateway_dns = a->dns_dir != NULL,
    };
    a->limits = (struct vmxml_limits){
        .cpu_shares = s->cpu_shares,
        .cpu_cap_pct = s->cpu_cap_pct,
        .disk_iops = s->disk_iops,
        .disk_bytes_sec = s->disk_mbps << 20,
        .net_kbps = s->net_kbps,
    };
    _cleanup_free_ char *cache_dir = xasprintf("%s/cache", s->data_dir);
    _cleanup_free_ char *why = NULL;
    struct fetch_opts fo = { .dir = cache_dir, .ca_file = a->ca_path,
                             .key_pin = a->node.key_pin,
                             .bearer = a->node.credential,
                             .budget_bytes = (uint64_t)s->cache_max_gib << 30,
                             .in_use = digest_in_use, .in_use_data = a };
    a->rc.cache = fetch_cache_new(&fo, &why);
    if (!a->rc.cache)
        log_warn("no image cache (%s): only local images can be used", why);
    return 0;
}

static void agent_teardown(struct agent *a)
{
    agent_metrics_free(a->metrics);
    a->metrics = NULL;
    virt_free(a->virt);
    a->virt = NULL;
    fetch_cache_free(a->rc.cache);
    a->rc.cache = NULL;
    reconcile_ctx_free(&a->rc);
    free(a->dns_dir);
    a->dns_dir = NULL;
    inventory_clear(&a->inv);
    node_state_clear(&a->node);
    free(a->ca_path);
    free(a->image_dir);
    free(a->arch);
    vm_seen_free(&a->seen);
    free(a->touched);
    free(a->last_sig);
    free(a->net_error);
    free(a->egress_allow);
    a->egress_allow = NULL;
    json_decref(a->refused);
    a->refused = NULL;
    json_decref(a->gpus);
    a->gpus = NULL;
    free(a->digests);
    a->digests = NULL;
    a->n_digests = 0;
    meter_free(a->meter);
    a->meter = NULL;
    explicit_bzero(a->wg_key, sizeof(a->wg_key));
    pthread_mutex_lock(&a->lock);
    json_decref(a->doc);
    a->doc = NULL;
    pthread_mutex_unlock(&a->lock);
}

static void deadline_to_timespec(int64_t mono_deadline, struct timespec *ts)
{
    int64_t left = mono_deadline - mono_ms();
    if (left < 0)
        left = 0;
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += left / 1000;
    ts->tv_nsec += (left % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

int agent_run(const struct agent_settings *s)
{
    static struct agent a; /* threads left behind at exit may still use it */
    a = (struct agent){ .cfg = s };
    /* One malloc arena: the agent's few threads seldom allocate at the
     * same time, and an arena per thread kept its own free pages (the
     * poller's held 3.4 MiB with 200 VMs). Set before the first thread. */
    mallopt(M_ARENA_MAX, 1);
    pthread_mutex_init(&a.lock, NULL);
    pthread_mutex_init(&a.digests_lock, NULL);
    pthread_cond_init(&a.cond, NULL);
    int r = agent_setup(&a, s);
    if (r < 0) {
        agent_teardown(&a);
        return r;
    }
    /* Signals go to the signal thread only. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if ((r = virt_events_start()) < 0 || (r = ensure_virt(&a)) < 0) {
        virt_events_stop();
        agent_teardown(&a);
        return r;
    }
    gpus_refresh(&a);
    if (s->metrics_listen && *s->metrics_listen) {
        a.metrics = agent_metrics_start(s->metrics_listen,
                                        a.host_net ? mesh_peers : NULL, &a);
        if (!a.metrics) {
            virt_events_stop();
            agent_teardown(&a);
            return -EADDRNOTAVAIL;
        }
        log_info("metrics on http://%s/metrics (port %d)", s->metrics_listen,
                 agent_metrics_port(a.metrics));
    }
    if (a.host_net)
        log_info("network: mesh on %s (%s), tenant bridges and firewall",
                 s->mesh_ifname, netfabric_mesh_backend());
    else
        log_info("network: none (host networking left alone)");
    if (!a.inv.kvm)
        log_info("no /dev/kvm: domains run under TCG%s",
                 s->allow_tcg ? "" : " (not allowed: --no-allow-tcg)");
    log_info("node %s (%s) running against %s (%s), controller %s",
             a.node.name, a.node.node_id, a.uri, virt_driver(a.virt),
             a.node.controller);

    /* The mapping of the mesh's WireGuard port, where a NAT sits. */
    if (a.host_net && s->probe_interval_s > 0) {
        int64_t wg = a.node.wg_port > 0 ? a.node.wg_port : s->wg_port;
        a.probe = natprobe_start((uint16_t)wg, s->probe_interval_s);
    }
    /* Peers reached through the hub's relay, when it gives any. */
    if (a.host_net) {
        int64_t wg = a.node.wg_port > 0 ? a.node.wg_port : s->wg_port;
        a.relay = meshrelay_start(a.node.node_id, (uint16_t)wg,
                                  a.node.credential, a.ca_path,
                                  a.node.key_pin);
        struct meshdirect_opts dop = {
            s->direct_first_s, s->direct_retry_s,
            s->direct_retry_max_s > s->direct_retry_s ? s->direct_retry_max_s
                                                      : s->direct_retry_s,
            s->direct_window_s, s->direct_timeout_s };
        if (a.relay && s->direct_retry_s > 0)
            a.direct = meshdirect_start(s->mesh_ifname, s->wireguard_go,
                                        &dop);
    }
    pthread_t poller, sigt;
    pthread_create(&sigt, NULL, signal_main, &a);
    pthread_detach(sigt);
    pthread_create(&poller, NULL, poller_main, &a);
    pthread_detach(poller); /* may sit in a long poll when we stop */

    a.consoles = conrelay_new(a.node.controller, a.node.credential,
                              a.ca_path, a.node.key_pin, a.uri,
                              a.cfg->data_dir);
    a.backups = backupjob_new(&(struct backupjob_opts){
        .data_dir = s->data_dir, .qemu_img = s->qemu_img,
        .controller = a.node.controller, .credential = a.node.credential,
        .ca_path = a.ca_path, .key_pin = a.node.key_pin,
        .chunk = (size_t)s->backup_chunk_kib << 10, .uri = a.uri });
    a.bench = benchjob_new(&(struct benchjob_opts){
        .uri = a.uri, .test_driver = startswith(a.uri, "test:"),
        .kvm = a.inv.kvm, .host_vcpus = a.inv.vcpus + a.inv.reserved_vcpus,
        .guest_dir = s->bench_guest, .cache = a.rc.cache,
        .data_dir = s->data_dir, .controller = a.node.controller,
        .credential = a.node.credential, .ca_path = a.ca_path,
        .key_pin = a.node.key_pin });
    a.health = hcheck_runner_start(on_health, &a);
    if (!a.health)
        log_warn("health checks will not run: cannot start their thread");
    struct api_client *c = api_client_new(a.node.controller,
                                          a.node.credential, a.ca_path);
    api_client_set_key_pin(c, a.node.key_pin);
    api_client_set_timeout(c, 20);
    api_client_set_stall(c, 10);
    api_client_set_connect_timeout(c, 5);
    json_t *doc = NULL, *accepted = NULL; /* as sent; as the policy lets */
    int64_t rev = -1, next_hb = mono_ms(), retry_at = 0;
    /* Ready once libvirt answers: VMs must keep being tended when the
     * controller is out of reach, so contact is not waited for. With
     * WatchdogSec=, the loop below wakes at least every half interval. */
    uint64_t wd_usec = 0;
    if (!sdnotify_watchdog(&wd_usec))
        wd_usec = 0;
    int64_t wd_ms = (int64_t)(wd_usec / 2000), next_wd = mono_ms();
    sdnotifyf("READY=1\nSTATUS=node %s against %s", a.node.name, a.uri);
    bool post_failed = false, consoles_pending = false;
    bool accepted_unwritten = false; /* accepted.json lags `accepted` */
    int64_t accepted_at = INT64_MIN / 2; /* mono ms of its last write */
    json_t *accepted_acted = NULL; /* acted on, its write left to later */
    for (;;) {
        int64_t wake_at = next_hb;
        int64_t dl = reconcile_next_deadline(&a.rc);
        if (dl > 0 && dl < wake_at)
            wake_at = dl;
        if (retry_at > 0 && retry_at < wake_at)
            wake_at = retry_at;
        if (a.net_retry_at > 0 && a.net_retry_at < wake_at)
            wake_at = a.net_retry_at;
        if (accepted_acted && accepted_at + ACCEPTED_EVERY_MS < wake_at)
            wake_at = accepted_at + ACCEPTED_EVERY_MS;
        if (wd_ms > 0) {
            if (mono_ms() >= next_wd) {
                sdnotify("WATCHDOG=1");
                next_wd = mono_ms() + wd_ms;
            }
            if (next_wd < wake_at)
                wake_at = next_wd;
        }
        struct timespec ts;
        deadline_to_timespec(wake_at, &ts);
        pthread_mutex_lock(&a.lock);
        while (!atomic_load(&a.stop) && !a.doc_new && !a.events &&
               mono_ms() < wake_at)
            if (pthread_cond_timedwait(&a.cond, &a.lock, &ts) == ETIMEDOUT)
                break;
        bool events = a.events, doc_new = a.doc_new, acted = false;
        a.events = a.doc_new = false;
        for (size_t i = 0; i < a.n_touched; i++)
            xml_touched(&a, a.touched[i]);
        if (a.touched_all)
            xml_touched(&a, NULL);
        a.n_touched = 0;
        a.touched_all = false;
        json_auto_t *ids = NULL; /* what the deltas named; NULL: all */
        if (doc_new) {
            json_decref(doc);
            doc = json_incref(a.doc);
            ids = TAKE_PTR(a.delta_ids);
        }
        pthread_mutex_unlock(&a.lock);
        int64_t woke = now_ms();
        if (doc_new) {
            json_t *applied = accepted;
            accepted = policy_check(&a, doc, applied);
            json_decref(applied);
            accepted_unwritten = true;
        }
        int64_t checked = now_ms();
        if (atomic_load(&a.stop))
            break;
        int64_t now = mono_ms();
        if (ensure_virt(&a) < 0) {
            retry_at = now + 2000;
            continue;
        }
        retry_at = 0;
        struct virt_dom *doms = NULL;
        size_t n = 0;
        bool listed = true;
        /* A pass for deltas alone looks up the domains they name and
         * keeps the rest as last seen (an event, a deadline or the
         * heartbeat lists them all); doms is then a.known. */
        bool partial = doc_new && ids && doc && a.known_ok && !events &&
                       now < next_hb && known_refresh(&a, ids, NULL) == 0;
        if (partial) {
            doms = a.known;
            n = a.n_known;
        } else if (virt_list(a.virt, &doms, &n) < 0) {
            log_warn("cannot list domains: %s", virt_error());
            retry_at = now + 2000;
            continue;
        }
        int64_t listed_at = now_ms();
        if (doc) {
            conrelay_sync(a.consoles, doc);
            if (doc_new) {
                benchjob_sync(a.bench, doc);
                rev = json_int(doc, "revision", -1);
                reconcile_forget(&a.rc, accepted);
                vm_seen_forget(&a.seen, doc);
                digests_update(&a, accepted);
            }
            /* Only what the policy accepted is applied. Bridges first: a
             * domain on one cannot start without it. */
            if (a.host_net && (doc_new || (a.net_retry_at > 0 &&
                                           now >= a.net_retry_at)))
                net_apply(&a, accepted, now);
            int64_t pass_start = mono_ms();
            reconcile_annotate(&a.rc, doms, n);
            struct reconcile_plan plan;
            if (partial) {
                /* Only the VMs and domains the deltas named. */
                json_auto_t *sub = named_vms(accepted, ids);
                _cleanup_free_ struct virt_dom *nd = NULL;
                size_t nn = named_doms(doms, n, ids, &nd);
                reconcile_plan(sub, nd, nn, a.inv.kvm, now, &plan);
                reconcile_plan_orphans(doc, nd, nn, &plan);
            } else {
                reconcile_plan(accepted, doms, n, a.inv.kvm, now, &plan);
                /* Domains the controller no longer lists here (deleted,
                 * or placed elsewhere, while this node was away) go,
                 * whatever the policy made of the rest. */
                reconcile_plan_orphans(doc, doms, n, &plan);
            }
            if (plan.n > 0) {
                log_debug("pass: woke at %" PRId64 ", policy checked at %"
                          PRId64 ", %zu domains %s at %" PRId64 ", %zu "
                          "actions planned at %" PRId64 " (unix ms)", woke,
                          checked, n, partial ? "known, those named looked "
                          "up" : "listed", listed_at, plan.n, now_ms());
                acted = true;
                reconcile_execute(&a.rc, &plan, doms, n, rev, now);
                for (size_t i = 0; i < plan.n; i++)
                    xml_touched(&a, plan.actions[i].vm_id);
                /* The events of the domains just acted on, raised by the
                 * actions themselves, are in the listing below and the
                 * report that follows: no pass of their own. */
                pthread_mutex_lock(&a.lock);
                bool others = a.touched_all;
                for (size_t i = 0; i < a.n_touched && !others; i++)
                    others = !plan_names(&plan, a.touched[i]);
                if (!others) {
                    a.events = false;
                    a.n_touched = 0;
                }
                pthread_mutex_unlock(&a.lock);
                if (partial && known_refresh(&a, NULL, &plan) == 0) {
                    doms = a.known;
                    n = a.n_known;
                } else {
                    if (!partial)
                        virt_doms_free(doms, n);
                    partial = false;
                    doms = NULL;
                    n = 0;
                    if (virt_list(a.virt, &doms, &n) < 0) {
                        log_warn("cannot list domains: %s", virt_error());
                        listed = false;
                        retry_at = now + 2000; /* the events' pass, then */
                    }
                }
                /* Failed VMs are retried after a pause. */
                for (size_t i = 0; i < plan.n; i++)
                    if (reconcile_vm_error(&a.rc, plan.actions[i].vm_id))
                        retry_at = now + a.rc.retry_ms;
            }
            reconcile_plan_free(&plan);
            agent_metrics_reconcile(a.metrics, mono_ms() - pass_start);
            /* Backups run in their own thread; it only gets the list. */
            if (listed) {
                backupjob_sync(a.backups, accepted, doms, n);
                health_sync(&a, accepted, doms, n);
            }
        }
        if (doc) {
            /* Running time is metered from what libvirt shows. */
            if (doc_new)
                meter_retain(a.meter, json_object_get(doc, "vms"));
            int64_t wall = now_s();
            size_t i;
            json_t *vm;
            json_array_foreach(json_object_get(doc, "vms"), i, vm) {
                const char *id = json_str(vm, "id");
                if (!listed || !uuid_is_valid(id))
                    continue;
                const struct virt_dom *d = virt_doms_find(doms, n, id);
                /* A paused VM keeps its memory on the node: billed as
                 * running (as clouds bill a suspended server). */
                meter_observe(a.meter, id,
                              d && (d->state == VIRT_RUNNING ||
                                    d->state == VIRT_PAUSED),
                              wall);
            }
        }
        bool hb = now >= next_hb;
        if (hb) {
            struct inventory inv;
            if (agent_config_inventory(s, &inv) == 0) {
                inventory_clear(&a.inv);
                a.inv = inv;
            }
            gpus_refresh(&a);
            if (a.host_net && doc && !a.net_error)
                net_resolvers_check(&a, accepted);
        }
        if (doc || hb) {
            _cleanup_free_ char *sig = NULL;
            bool pending = false;
            _cleanup_json_ json_t *body = status_build(
                &a, doc, doms, n, hb || consoles_pending,
                events || doc_new || post_failed, &sig, &pending);
            if (hb || events || post_failed || doc_new ||
                status_has_xml(body) ||
                !streq(sig, a.last_sig)) {
                if (!hb && !consoles_pending)
                    status_changed_only(&a, body);
                int64_t built = now_ms();
                int sr = status_send(&a, c, body);
                log_debug("status of %zu VMs built at %" PRId64 ", posted at "
                          "%" PRId64 " (unix ms)",
                          json_array_size(json_object_get(body, "vms")),
                          built, now_ms());
                if (sr == 0) {
                    agent_metrics_contact(a.metrics, now_s());
                    free(a.last_sig);
                    a.last_sig = TAKE_PTR(sig);
                    post_failed = false;
                    consoles_pending = pending;
                    if (pending)
                        retry_at = now + 1000;
                } else {
                    post_failed = true;
                    retry_at = now + (a.status_retry_ms > 0
                                          ? a.status_retry_ms : 2000);
                }
            }
            if (hb)
                next_hb = now + a.heartbeat_ms;
        }
        /* accepted.json (some 2 ms with its fsync at 200 VMs) at most once
         * in ACCEPTED_EVERY_MS; a write left for later wakes the loop when
         * it is due. A newer document already waiting is the next pass's
         * to act on at once: the heap trim is left to that pass. */
        pthread_mutex_lock(&a.lock);
        bool newer = a.doc_new && !atomic_load(&a.stop);
        pthread_mutex_unlock(&a.lock);
        if (accepted_unwritten &&
            mono_ms() >= accepted_at + ACCEPTED_EVERY_MS) {
            accepted_write(&a, accepted);
            accepted_at = mono_ms();
            accepted_unwritten = false;
            json_decref(TAKE_PTR(accepted_acted));
        } else if (accepted_unwritten) {
            json_decref(accepted_acted);
            accepted_acted = json_incref(accepted);
        }
        agent_metrics_pending(a.metrics, meter_pending(a.meter));
        if (hb && a.metrics && a.rc.cache) {
            struct fetch_stats fs;
            fetch_cache_stats(a.rc.cache, &fs);
            agent_metrics_cache(a.metrics, &fs,
                                fetch_cache_usage(a.rc.cache));
        }
        if (!partial) { /* a full listing: the domains as known now */
            virt_doms_free(a.known, a.n_known);
            a.known = doms;
            a.n_known = n;
            a.known_ok = listed;
        }
        /* A new document, domains defined or a heartbeat's report left
         * freed pages behind: give them back, so the resident memory of
         * an idle agent is what it holds, not its last peak. Costs a walk
         * of the free lists, only after such passes. */
        if ((doc_new || acted || hb) && !newer)
            malloc_trim(0);
    }
    if (accepted_acted) /* stopped before the pass that was to write it */
        accepted_write(&a, accepted_acted);
    json_decref(accepted_acted);
    sdnotify("STOPPING=1");
    benchjob_free(a.bench);
    hcheck_runner_stop(a.health);
    free(a.health_key);
    backupjob_free(a.backups);
    natprobe_stop(a.probe);
    meshdirect_stop(a.direct);
    meshrelay_stop(a.relay);
    conrelay_free(a.consoles);
    json_decref(doc);
    json_decref(accepted);
    virt_doms_free(a.known, a.n_known);
    a.known = NULL;
    a.n_known = 0;
    api_client_free(c);
    virt_free(a.virt);
    a.virt = NULL;
    virt_events_stop();
    agent_teardown(&a);
    log_info("stopped");
    return 0;
}
