/* Property tests of the controller–agent contract (api/agentmsg): random
 * valid desired documents, status bodies and register bodies survive
 * encode → text → decode unchanged, and random damage to an encoded
 * document (a member dropped, of the wrong type, an array or string past
 * its bound, a huge number, a NUL inside a string) is either decoded to
 * the same struct, save the damaged member, or refused with an error
 * naming that member and nothing written to the result. The seed is
 * printed; FOG_SEED=N repeats a run, FOG_ITERS=N changes its length. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentmsg.h"
#include "common/ids.h"
#include "common/netcheck.h"

#include "tests/testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

static uint64_t rng_state, seed;
static int iters;

static uint64_t rnd(void)
{
    return tu_xorshift(&rng_state);
}

/* Uniform in [lo, hi]. */
static int64_t rr(int64_t lo, int64_t hi)
{
    uint64_t span = (uint64_t)hi - (uint64_t)lo;
    if (span == UINT64_MAX)
        return (int64_t)rnd();
    return (int64_t)((uint64_t)lo + rnd() % (span + 1));
}

static bool coin(void)
{
    return rnd() & 1;
}

/* A number from the edges of [lo, hi] as often as from inside. */
static int64_t rnum(int64_t lo, int64_t hi)
{
    switch (rnd() % 4) {
    case 0: return lo;
    case 1: return hi;
    default: return rr(lo, hi);
    }
}

/* Text of at most max bytes: ASCII, quotes, controls and two-byte UTF-8
 * characters (never cut inside one). */
static char *rtext(size_t max)
{
    size_t n = (size_t)rr(0, (int64_t)(max < 24 ? max : 24));
    if (max > 24 && rnd() % 16 == 0)
        n = max; /* right at the bound */
    char *s = xmalloc(n + 1);
    size_t i = 0;
    while (i < n) {
        uint64_t k = rnd() % 20;
        if (k == 0 && i + 2 <= n) {
            s[i++] = (char)0xc3; /* é */
            s[i++] = (char)0xa9;
        } else if (k == 1) {
            s[i++] = "\"\\\n\t/"[rnd() % 5];
        } else {
            s[i++] = (char)rr(0x20, 0x7e);
        }
    }
    s[i] = 0;
    return s;
}

static char *ropt(size_t max)
{
    return coin() ? rtext(max) : NULL;
}

static char *rname(void)
{
    size_t n = (size_t)rr(1, 63);
    char *s = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = "abcdefghijklmnopqrstuvwxyz0123456789-"[rnd() % (i == 0 || i + 1 == n ? 36 : 37)];
    s[n] = 0;
    return s;
}

static char *ruuid(void)
{
    return xasprintf("%08" PRIx64 "-%04" PRIx64 "-4%03" PRIx64 "-8%03" PRIx64
                     "-%012" PRIx64, rnd() & 0xffffffff, rnd() & 0xffff,
                     rnd() & 0xfff, rnd() & 0xfff, rnd() & 0xffffffffffff);
}

static char *rip(void)
{
    if (coin())
        return xasprintf("%d.%d.%d.%d", (int)rr(1, 254), (int)rr(0, 255),
                         (int)rr(0, 255), (int)rr(1, 254));
    return xasprintf("fd%02x::%x:%x", (unsigned)rr(0, 255),
                     (unsigned)rr(0, 0xffff), (unsigned)rr(1, 0xffff));
}

static char **rtexts(size_t max_items, size_t max_len, size_t *ret_n)
{
    *ret_n = (size_t)rr(0, (int64_t)max_items);
    if (*ret_n == 0)
        return NULL;
    char **v = xcalloc(*ret_n, sizeof(*v));
    for (size_t i = 0; i < *ret_n; i++)
        v[i] = rtext(max_len);
    return v;
}

/* An interface text: 1..AGENT_IFACE_TEXT_MAX printable ASCII bytes. */
static char *riface_text(void)
{
    size_t n = rnd() % 8 == 0 ? AGENT_IFACE_TEXT_MAX
                              : (size_t)rr(1, AGENT_IFACE_TEXT_MAX);
    char *s = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)rr(0x21, 0x7e);
    s[n] = 0;
    return s;
}

/* A domain XML and, with it, its interfaces (or neither). */
static void rdomain(struct am_vm_status *v)
{
    if (coin())
        return;
    v->domain_xml = rtext(AGENT_DOMAIN_XML_MAX);
    if (!*v->domain_xml) {
        free(v->domain_xml);
        v->domain_xml = xstrdup("<domain/>");
    }
    v->n_ifaces = (size_t)rr(0, 3);
    v->ifaces = v->n_ifaces ? xcalloc(v->n_ifaces, sizeof(*v->ifaces)) : NULL;
    for (size_t i = 0; i < v->n_ifaces; i++) {
        struct am_iface *f = &v->ifaces[i];
        f->target = coin() ? riface_text() : NULL;
        f->type = riface_text();
        f->source = coin() ? riface_text() : NULL;
        f->model = coin() ? riface_text() : NULL;
        f->mac = xasprintf("%02" PRIx64 ":%02" PRIx64 ":%02" PRIx64
                           ":%02" PRIx64 ":%02" PRIX64 ":%02" PRIX64,
                           rnd() & 0xff, rnd() & 0xff, rnd() & 0xff,
                           rnd() & 0xff, rnd() & 0xff, rnd() & 0xff);
    }
}

static bool eq_s(const char *a, const char *b);

static bool eq_ifaces(const struct am_vm_status *x,
                      const struct am_vm_status *y)
{
    if (!eq_s(x->domain_xml, y->domain_xml) || x->n_ifaces != y->n_ifaces)
        return false;
    for (size_t i = 0; i < x->n_ifaces; i++) {
        const struct am_iface *a = &x->ifaces[i], *b = &y->ifaces[i];
        if (!eq_s(a->target, b->target) || !eq_s(a->type, b->type) ||
            !eq_s(a->source, b->source) || !eq_s(a->model, b->model) ||
            !eq_s(a->mac, b->mac))
            return false;
    }
    return true;
}

static uint16_t *rports(bool *has, size_t *ret_n)
{
    *has = coin();
    *ret_n = 0;
    if (!*has)
        return NULL;
    size_t n = (size_t)rr(0, 5);
    uint16_t *p = xcalloc(n + 1, sizeof(*p));
    for (size_t i = 0; i < n; i++) {
        uint16_t v = (uint16_t)rr(1, 65535);
        bool dup = false;
        for (size_t k = 0; k < *ret_n; k++)
            dup |= p[k] == v;
        if (!dup)
            p[(*ret_n)++] = v;
    }
    return p;
}

/* The raw JSON parts of a node's body: GPU reports (checked by the
 * controller, not here) and usage samples. */
static json_t *rgpus(int *iommu)
{
    *iommu = -1;
    if (coin())
        return NULL;
    json_t *a = json_array();
    for (int64_t i = rr(0, 3); i > 0; i--)
        json_array_append_new(a, json_pack("{s:s, s:I, s:b}", "address",
                                           "0000:01:00.0", "numa_node",
                                           (json_int_t)rr(-1, 3), "usable",
                                           coin()));
    *iommu = (int)rr(-1, 1);
    return a;
}

/* Usage samples of one or two VMs, time going forward with seq. */
static struct am_sample *rsamples(size_t *ret_n)
{
    *ret_n = (size_t)rr(0, 5);
    if (*ret_n == 0)
        return NULL;
    struct am_sample *v = xcalloc(*ret_n, sizeof(*v));
    char *vms[2] = { ruuid(), ruuid() };
    int64_t seq[2] = { rr(0, 1000), rr(0, 1000) };
    int64_t t[2] = { rr(0, AGENT_SAMPLE_TIME_MAX - 1000),
                     rr(0, AGENT_SAMPLE_TIME_MAX - 1000) };
    for (size_t i = 0; i < *ret_n; i++) {
        size_t k = rnd() % 2;
        int64_t len = rr(0, 60);
        v[i] = (struct am_sample){ xstrdup(vms[k]), seq[k] += rr(1, 3), t[k],
                                   t[k] + len, NULL };
        t[k] += len + rr(0, 3);
    }
    free(vms[0]);
    free(vms[1]);
    return v;
}

/* ---- random valid documents --------------------------------------------- */

static char *rpci(void)
{
    return xasprintf("%04" PRIx64 ":%02" PRIx64 ":%02" PRIx64 ".%" PRIx64,
                     rnd() & 0xffff, rnd() & 0xff, rnd() & 0x1f, rnd() & 7);
}

/* Snapshots as the hub asks for them (held false) or a node reports
 * them (held true). */
static struct am_snapshot *rsnapshots(bool held, size_t *ret_n)
{
    size_t n = (size_t)rr(0, 3);
    struct am_snapshot *v = n ? xcalloc(n, sizeof(*v)) : NULL;
    for (size_t i = 0; i < n; i++) {
        v[i].id = ruuid();
        v[i].name = rname();
        if (held) {
            v[i].consistency = xstrdup(coin() ? SNAPSHOT_CONSISTENCY_CHECKPOINT
                                              : SNAPSHOT_CONSISTENCY_POWERED_OFF);
            v[i].created_at = rnum(0, INT64_MAX);
        } else {
            v[i].taken = coin();
        }
    }
    *ret_n = n;
    return v;
}

static struct am_vm_gpu *rvm_gpus(size_t *ret_n)
{
    size_t n = (size_t)rr(0, 2);
    struct am_vm_gpu *v = n ? xcalloc(n, sizeof(*v)) : NULL;
    for (size_t i = 0; i < n; i++) {
        v[i].address = rpci();
        v[i].n_functions = (size_t)rr(1, 3);
        v[i].functions = xcalloc(v[i].n_functions, sizeof(char *));
        for (size_t k = 0; k < v[i].n_functions; k++)
            v[i].functions[k] = rpci();
        v[i].numa_node = rr(-1, 3);
        int64_t lo = rr(0, 63);
        v[i].cpulist = coin() ? xstrdup("")
                              : xasprintf("%" PRId64 "-%" PRId64, lo,
                                          lo + rr(0, 63));
    }
    *ret_n = n;
    return v;
}

static void rdesired(struct am_desired *d)
{
    *d = (struct am_desired){ 0 };
    d->revision = rnum(0, INT64_MAX);
    d->node_id = rtext(64);
    d->has_mesh = coin();
    if (d->has_mesh)
        d->mesh = (struct am_mesh){ rtext(45), rnum(0, 128), rnum(0, 65535) };
    d->unapproved = rnd() % 4 == 0;
    d->n_vms = (size_t)rr(0, 3);
    d->vms = d->n_vms ? xcalloc(d->n_vms, sizeof(*d->vms)) : NULL;
    for (size_t i = 0; i < d->n_vms; i++) {
        struct am_vm *v = &d->vms[i];
        v->id = rtext(64);
        v->name = rtext(255);
        v->vcpus = rnum(1, NODE_MAX_VCPUS);
        v->memory_mib = rnum(VM_MIN_MEMORY_MIB, NODE_MAX_MEMORY_MIB);
        v->disk_gib = rnum(1, NODE_MAX_DISK_GIB);
        v->image = ropt(255);
        v->has_source = coin();
        if (v->has_source)
            v->source = (struct am_image_source){ rtext(AGENT_TEXT_MAX),
                                                  rtext(64), rtext(16),
                                                  rtext(AGENT_TEXT_MAX),
                                                  rnum(0, INT64_MAX) };
        v->ssh_keys = rtexts(3, AGENT_TEXT_MAX * 4, &v->n_ssh_keys);
        v->running = coin();
        v->stop_force = coin();
        v->deleted = coin();
        v->reboot_gen = rnum(0, INT64_MAX);
        v->start_gen = rnum(0, INT64_MAX);
        v->place_gen = rnum(0, INT64_MAX);
        v->shutdown_timeout_s = rnum(0, VM_SHUTDOWN_TIMEOUT_MAX_S);
        v->user_data = ropt(AGENT_USER_DATA_MAX);
        v->paused = coin();
        v->no_autostart = coin();
        v->snapshots = rsnapshots(false, &v->n_snapshots);
        v->has_revert = coin();
        if (v->has_revert) {
            v->revert_gen = rnum(0, INT64_MAX);
            v->revert_snapshot_id = ruuid();
        }
        v->gpus = rvm_gpus(&v->n_gpus);
        v->n_backups = (size_t)rr(0, VM_BACKUPS_PENDING_MAX);
        v->backups = v->n_backups ? xcalloc(v->n_backups, sizeof(char *))
                                  : NULL;
        v->backup_parents = v->n_backups ?
            xcalloc(v->n_backups, sizeof(char *)) : NULL;
        for (size_t k = 0; k < v->n_backups; k++) {
            v->backups[k] = ruuid();
            v->backup_parents[k] = coin() ? ruuid() : NULL;
        }
        if (v->n_backups || coin())
            v->backup_key = random_hex(32);
        v->has_restore = coin();
        if (v->has_restore) {
            v->n_chain = (size_t)rr(0, 3);
            v->chain = v->n_chain ? xcalloc(v->n_chain, sizeof(*v->chain))
                                  : NULL;
            for (size_t k = 0; k <= v->n_chain; k++) {
                struct am_restore *p = k < v->n_chain ? &v->chain[k]
                                                      : &v->restore;
                _cleanup_free_ char *u = ruuid(), *h = random_hex(32);
                snprintf(p->backup, sizeof(p->backup), "%s", u);
                snprintf(p->sha256, sizeof(p->sha256), "%s", h);
                p->size = rnum(1, INT64_MAX);
            }
        }
        v->n_nics = (size_t)rr(0, 3);
        v->nics = v->n_nics ? xcalloc(v->n_nics, sizeof(*v->nics)) : NULL;
        for (size_t k = 0; k < v->n_nics; k++) {
            v->nics[k] = (struct am_nic){ ropt(AGENT_TEXT_MAX), rtext(17),
                                          rtext(45), rnum(0, 128), ropt(45),
                                          rnum(0, 65535),
                                          rtext(NET_IFNAME_MAX) };
            v->nics[k].address6 = ropt(45);
            v->nics[k].gateway6 = ropt(45);
        }
    }
    d->n_networks = (size_t)rr(0, 3);
    d->networks = d->n_networks ? xcalloc(d->n_networks,
                                          sizeof(*d->networks)) : NULL;
    for (size_t i = 0; i < d->n_networks; i++) {
        struct am_network *w = &d->networks[i];
        w->id = rtext(AGENT_TEXT_MAX);
        w->vxlan_id = rnum(1, (1 << 24) - 1);
        w->cidr = rtext(49);
        w->gateway = rtext(45);
        w->cidr6 = ropt(49);
        w->gateway6 = ropt(45);
        w->mtu = rnum(0, 65535);
        w->bridge = rtext(NET_IFNAME_MAX);
        w->vteps = rtexts(3, 45, &w->n_vteps);
        w->n_macs = (size_t)rr(0, 3);
        w->macs = w->n_macs ? xcalloc(w->n_macs, sizeof(*w->macs)) : NULL;
        for (size_t k = 0; k < w->n_macs; k++)
            w->macs[k] = (struct am_remote_mac){ rtext(17), rtext(45) };
    }
    d->n_ports = (size_t)rr(0, 3);
    d->ports = d->n_ports ? xcalloc(d->n_ports, sizeof(*d->ports)) : NULL;
    for (size_t i = 0; i < d->n_ports; i++)
        d->ports[i] = (struct am_port){ rtext(64), rtext(16), rtext(45),
                                        rnum(0, 65535), rnum(0, 65535) };
    d->n_peers = (size_t)rr(0, 3);
    d->peers = d->n_peers ? xcalloc(d->n_peers, sizeof(*d->peers)) : NULL;
    for (size_t i = 0; i < d->n_peers; i++) {
        struct am_peer *p = &d->peers[i];
        p->node_id = rtext(64);
        p->name = ropt(255);
        p->public_key = rtext(44);
        p->endpoint = ropt(80);
        p->allowed_ips = rtexts(3, 49, &p->n_allowed_ips);
        p->keepalive = rnum(0, 65535);
    }
}

static void rinventory(struct am_inventory *inv, bool all)
{
    inv->has = all ? AM_INV_ALL : (unsigned)rr(0, AM_INV_ALL);
    if (inv->has & AM_INV_VCPUS)
        inv->vcpus = rnum(1, NODE_MAX_VCPUS);
    if (inv->has & AM_INV_MEMORY)
        inv->memory_mib = rnum(NODE_MIN_MEMORY_MIB, NODE_MAX_MEMORY_MIB);
    if (inv->has & AM_INV_DISK)
        inv->disk_gib = rnum(0, NODE_MAX_DISK_GIB);
    if (inv->has & AM_INV_KVM)
        inv->kvm = coin();
    inv->arch = ropt(32);
    inv->cpu_model = ropt(128);
}

static char *rendpoint(void)
{
    char *e = ropt(80);
    if (e && !*e) {
        free(e);
        e = xstrdup("[fd00::1]:51820");
    }
    return e;
}

static void rstatus(struct am_status *s)
{
    static const size_t n_states = 7;
    *s = (struct am_status){ 0 };
    s->has_inventory = coin();
    if (s->has_inventory)
        rinventory(&s->inventory, false);
    s->n_vms = (size_t)rr(0, 3);
    s->vms = s->n_vms ? xcalloc(s->n_vms, sizeof(*s->vms)) : NULL;
    for (size_t i = 0; i < s->n_vms; i++) {
        struct am_vm_status *v = &s->vms[i];
        v->id = ruuid();
        v->state = xstrdup(am_vm_states[rnd() % n_states]);
        v->reason = ropt(AGENT_REASON_MAX);
        v->console_tail = ropt(AGENT_CONSOLE_TAIL_MAX);
        if (coin()) {
            v->addresses = json_array();
            for (int64_t k = rr(0, 3); k > 0; k--) {
                _cleanup_free_ char *ip = rip();
                json_array_append_new(v->addresses, json_string(ip));
            }
        }
        v->by_guest = coin();
        v->start_gen = rnum(0, INT64_MAX);
        v->has_snapshots = coin();
        if (v->has_snapshots)
            v->snapshots = rsnapshots(true, &v->n_snapshots);
        v->revert_gen = coin() ? rnum(0, INT64_MAX) : 0;
        rdomain(v);
    }
    s->endpoint = rendpoint();
    s->public_ip = coin() ? rip() : NULL;
    s->public_ip6 = coin() ? xstrdup(coin() ? "2001:db8::5" : "2a01:4f8::1")
                           : NULL;
    s->n_refused = (size_t)rr(0, 3);
    s->refused = s->n_refused ? xcalloc(s->n_refused, sizeof(*s->refused))
                              : NULL;
    for (size_t i = 0; i < s->n_refused; i++)
        s->refused[i] = (struct am_refusal){ ropt(AGENT_REFUSED_OBJECT_MAX),
                                             ropt(AGENT_REFUSED_REASON_MAX) };
    s->permit_ports = rports(&s->has_permit_ports, &s->n_permit_ports);
    s->samples = rsamples(&s->n_samples);
    s->gpus = rgpus(&s->iommu);
}

static void rregister(struct am_register *g)
{
    *g = (struct am_register){ 0 };
    g->token = rtext(200);
    if (!*g->token) {
        free(g->token);
        g->token = xstrdup("t");
    }
    g->name = rname();
    rinventory(&g->inventory, true);
    if (coin()) {
        g->wg_public_key = xmalloc(45);
        for (size_t i = 0; i < 44; i++)
            g->wg_public_key[i] = "ABCDEFabcdef0123456789+/"[rnd() % 24];
        g->wg_public_key[43] = '=';
        g->wg_public_key[44] = 0;
    }
    g->endpoint = rendpoint();
    g->public_ip = coin() ? rip() : NULL;
    g->wg_port = coin() ? rnum(1, 65535) : 0;
    g->port_min = coin() ? rnum(1, 65535) : 0;
    g->port_max = coin() ? rnum(1, 65535) : 0;
    g->permit_ports = rports(&g->has_permit_ports, &g->n_permit_ports);
    g->gpus = rgpus(&g->iommu);
}

/* ---- equality, member by member ----------------------------------------- */

static bool eq_s(const char *a, const char *b)
{
    return (!a && !b) || (a && b && streq(a, b));
}

static bool eq_ss(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!eq_s(a[i], b[i]))
            return false;
    return true;
}

static bool eq_j(const json_t *a, const json_t *b)
{
    return (!a && !b) || (a && b && json_equal((json_t *)a, (json_t *)b));
}

static bool eq_ports(const uint16_t *a, size_t na, const uint16_t *b,
                     size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof(*a)) == 0);
}

static bool eq_snapshots(const struct am_snapshot *a, size_t na,
                         const struct am_snapshot *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!eq_s(a[i].id, b[i].id) || !eq_s(a[i].name, b[i].name) ||
            a[i].taken != b[i].taken ||
            !eq_s(a[i].consistency, b[i].consistency) ||
            a[i].created_at != b[i].created_at)
            return false;
    return true;
}

static bool eq_vm_gpus(const struct am_vm_gpu *a, size_t na,
                       const struct am_vm_gpu *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!eq_s(a[i].address, b[i].address) ||
            !eq_ss(a[i].functions, a[i].n_functions, b[i].functions,
                   b[i].n_functions) ||
            a[i].numa_node != b[i].numa_node ||
            !eq_s(a[i].cpulist, b[i].cpulist))
            return false;
    return true;
}

static bool eq_piece(const struct am_restore *a, const struct am_restore *b)
{
    return streq(a->backup, b->backup) && streq(a->sha256, b->sha256) &&
           a->size == b->size;
}

/* The restore entries and their chains. */
static bool eq_restore(const struct am_vm *a, const struct am_vm *b)
{
    if (!eq_piece(&a->restore, &b->restore) || a->n_chain != b->n_chain)
        return false;
    for (size_t i = 0; i < a->n_chain; i++)
        if (!eq_piece(&a->chain[i], &b->chain[i]))
            return false;
    return true;
}

static bool eq_vm(const struct am_vm *a, const struct am_vm *b)
{
    if (!eq_s(a->id, b->id) || !eq_s(a->name, b->name) ||
        a->vcpus != b->vcpus || a->memory_mib != b->memory_mib ||
        a->disk_gib != b->disk_gib || !eq_s(a->image, b->image) ||
        a->has_source != b->has_source ||
        !eq_ss(a->ssh_keys, a->n_ssh_keys, b->ssh_keys, b->n_ssh_keys) ||
        a->running != b->running || a->stop_force != b->stop_force ||
        a->deleted != b->deleted || a->reboot_gen != b->reboot_gen ||
        a->start_gen != b->start_gen || a->place_gen != b->place_gen ||
        a->shutdown_timeout_s != b->shutdown_timeout_s ||
        !eq_s(a->user_data, b->user_data) || a->n_nics != b->n_nics ||
        a->paused != b->paused || a->no_autostart != b->no_autostart ||
        !eq_snapshots(a->snapshots, a->n_snapshots, b->snapshots,
                      b->n_snapshots) ||
        a->has_revert != b->has_revert ||
        (a->has_revert && (a->revert_gen != b->revert_gen ||
                           !eq_s(a->revert_snapshot_id,
                                 b->revert_snapshot_id))) ||
        !eq_vm_gpus(a->gpus, a->n_gpus, b->gpus, b->n_gpus) ||
        !eq_ss(a->backups, a->n_backups, b->backups, b->n_backups) ||
        !eq_s(a->backup_key, b->backup_key) ||
        a->has_restore != b->has_restore ||
        (a->has_restore && !eq_restore(a, b)))
        return false;
    for (size_t i = 0; i < a->n_backups; i++)
        if (!eq_s(a->backup_parents[i], b->backup_parents[i]))
            return false;
    if (a->has_source &&
        (!eq_s(a->source.id, b->source.id) ||
         !eq_s(a->source.sha256, b->source.sha256) ||
         !eq_s(a->source.format, b->source.format) ||
         !eq_s(a->source.url, b->source.url) || a->source.size != b->source.size))
        return false;
    for (size_t i = 0; i < a->n_nics; i++) {
        const struct am_nic *x = &a->nics[i], *y = &b->nics[i];
        if (!eq_s(x->network_id, y->network_id) || !eq_s(x->mac, y->mac) ||
            !eq_s(x->address, y->address) || x->prefix != y->prefix ||
            !eq_s(x->gateway, y->gateway) || x->mtu != y->mtu ||
            !eq_s(x->bridge, y->bridge) || !eq_s(x->address6, y->address6) ||
            !eq_s(x->gateway6, y->gateway6))
            return false;
    }
    return true;
}

static bool eq_desired(const struct am_desired *a, const struct am_desired *b)
{
    if (a->revision != b->revision || !eq_s(a->node_id, b->node_id) ||
        a->has_mesh != b->has_mesh || a->unapproved != b->unapproved ||
        a->n_vms != b->n_vms || a->n_networks != b->n_networks ||
        a->n_ports != b->n_ports || a->n_peers != b->n_peers)
        return false;
    if (a->has_mesh && (!eq_s(a->mesh.address, b->mesh.address) ||
                        a->mesh.prefix != b->mesh.prefix ||
                        a->mesh.listen_port != b->mesh.listen_port))
        return false;
    for (size_t i = 0; i < a->n_vms; i++)
        if (!eq_vm(&a->vms[i], &b->vms[i]))
            return false;
    for (size_t i = 0; i < a->n_networks; i++) {
        const struct am_network *x = &a->networks[i], *y = &b->networks[i];
        if (!eq_s(x->id, y->id) || x->vxlan_id != y->vxlan_id ||
            !eq_s(x->cidr, y->cidr) || !eq_s(x->gateway, y->gateway) ||
            !eq_s(x->cidr6, y->cidr6) || !eq_s(x->gateway6, y->gateway6) ||
            x->mtu != y->mtu || !eq_s(x->bridge, y->bridge) ||
            !eq_ss(x->vteps, x->n_vteps, y->vteps, y->n_vteps) ||
            x->n_macs != y->n_macs)
            return false;
        for (size_t k = 0; k < x->n_macs; k++)
            if (!eq_s(x->macs[k].mac, y->macs[k].mac) ||
                !eq_s(x->macs[k].vtep, y->macs[k].vtep))
                return false;
    }
    for (size_t i = 0; i < a->n_ports; i++) {
        const struct am_port *x = &a->ports[i], *y = &b->ports[i];
        if (!eq_s(x->vm_id, y->vm_id) || !eq_s(x->proto, y->proto) ||
            !eq_s(x->vm_address, y->vm_address) ||
            x->host_port != y->host_port || x->vm_port != y->vm_port)
            return false;
    }
    for (size_t i = 0; i < a->n_peers; i++) {
        const struct am_peer *x = &a->peers[i], *y = &b->peers[i];
        if (!eq_s(x->node_id, y->node_id) || !eq_s(x->name, y->name) ||
            !eq_s(x->public_key, y->public_key) ||
            !eq_s(x->endpoint, y->endpoint) ||
            !eq_ss(x->allowed_ips, x->n_allowed_ips, y->allowed_ips,
                   y->n_allowed_ips) || x->keepalive != y->keepalive)
            return false;
    }
    return true;
}

static bool eq_inventory(const struct am_inventory *a,
                         const struct am_inventory *b)
{
    return a->has == b->has && a->vcpus == b->vcpus &&
           a->memory_mib == b->memory_mib && a->disk_gib == b->disk_gib &&
           a->kvm == b->kvm && eq_s(a->arch, b->arch) &&
           eq_s(a->cpu_model, b->cpu_model);
}

static bool eq_status(const struct am_status *a, const struct am_status *b)
{
    if (a->has_inventory != b->has_inventory ||
        (a->has_inventory && !eq_inventory(&a->inventory, &b->inventory)) ||
        a->n_vms != b->n_vms || !eq_s(a->endpoint, b->endpoint) ||
        !eq_s(a->public_ip, b->public_ip) ||
        !eq_s(a->public_ip6, b->public_ip6) || a->n_refused != b->n_refused ||
        a->has_permit_ports != b->has_permit_ports ||
        !eq_ports(a->permit_ports, a->n_permit_ports, b->permit_ports,
                  b->n_permit_ports) ||
        a->n_samples != b->n_samples || !eq_j(a->gpus, b->gpus) ||
        a->iommu != b->iommu)
        return false;
    for (size_t i = 0; i < a->n_vms; i++) {
        const struct am_vm_status *x = &a->vms[i], *y = &b->vms[i];
        if (!eq_s(x->id, y->id) || !eq_s(x->state, y->state) ||
            !eq_s(x->reason, y->reason) ||
            !eq_s(x->console_tail, y->console_tail) ||
            !eq_j(x->addresses, y->addresses) || x->by_guest != y->by_guest ||
            x->start_gen != y->start_gen ||
            x->has_snapshots != y->has_snapshots ||
            !eq_snapshots(x->snapshots, x->n_snapshots, y->snapshots,
                          y->n_snapshots) ||
            x->revert_gen != y->revert_gen || !eq_ifaces(x, y))
            return false;
    }
    for (size_t i = 0; i < a->n_samples; i++) {
        const struct am_sample *x = &a->samples[i], *y = &b->samples[i];
        if (!eq_s(x->vm, y->vm) || x->seq != y->seq || x->start != y->start ||
            x->end != y->end || !eq_s(x->refused, y->refused))
            return false;
    }
    for (size_t i = 0; i < a->n_refused; i++)
        if (!eq_s(a->refused[i].object, b->refused[i].object) ||
            !eq_s(a->refused[i].reason, b->refused[i].reason))
            return false;
    return true;
}

static bool eq_register(const struct am_register *a,
                        const struct am_register *b)
{
    return eq_s(a->token, b->token) && eq_s(a->name, b->name) &&
           eq_inventory(&a->inventory, &b->inventory) &&
           eq_s(a->wg_public_key, b->wg_public_key) &&
           eq_s(a->endpoint, b->endpoint) && eq_s(a->public_ip, b->public_ip) &&
           a->wg_port == b->wg_port && a->port_min == b->port_min &&
           a->port_max == b->port_max &&
           a->has_permit_ports == b->has_permit_ports &&
           eq_ports(a->permit_ports, a->n_permit_ports, b->permit_ports,
                    b->n_permit_ports) &&
           eq_j(a->gpus, b->gpus) && a->iommu == b->iommu;
}

/* ---- the three documents behind one interface --------------------------- */

union doc {
    struct am_desired d;
    struct am_status s;
    struct am_register g;
};

struct kind {
    const char *name;
    void (*gen)(union doc *);
    json_t *(*encode)(const union doc *);
    int (*decode)(const json_t *, union doc *, struct jerr *);
    bool (*eq)(const union doc *, const union doc *);
    void (*clear)(union doc *);
};

#define KIND(NAME, M, GEN, PFX)                                                \
    static void NAME##_gen(union doc *u) { GEN(&u->M); }                       \
    static json_t *NAME##_enc(const union doc *u)                              \
    { return PFX##_encode(&u->M); }                                            \
    static int NAME##_dec(const json_t *j, union doc *u, struct jerr *e)       \
    { return PFX##_decode(j, &u->M, e); }                                      \
    static bool NAME##_eq(const union doc *a, const union doc *b)              \
    { return eq_##NAME(&a->M, &b->M); }                                        \
    static void NAME##_clear(union doc *u) { PFX##_clear(&u->M); }             \
    static const struct kind kind_##NAME = { #NAME, NAME##_gen, NAME##_enc,    \
                                             NAME##_dec, NAME##_eq,           \
                                             NAME##_clear };

KIND(desired, d, rdesired, am_desired)
KIND(status, s, rstatus, am_status)
KIND(register, g, rregister, am_register)

/* Encode, write as text, read back and decode: the struct must be equal. */
static void roundtrip(const struct kind *k)
{
    for (int i = 0; i < iters; i++) {
        union doc a, b;
        memset(&b, 0, sizeof(b));
        k->gen(&a);
        json_auto_t *j = k->encode(&a);
        _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
        json_error_t je;
        json_auto_t *back = json_loads(text, 0, &je);
        struct jerr err = { 0 };
        if (!back || k->decode(back, &b, &err) < 0)
            fail_msg("%s %d (FOG_SEED=%" PRIu64 "): refused: %s: %s\n%s",
                     k->name, i, seed, err.field, err.detail, text);
        if (!k->eq(&a, &b))
            fail_msg("%s %d (FOG_SEED=%" PRIu64 "): decoded differently\n%s",
                     k->name, i, seed, text);
        k->clear(&a);
        k->clear(&b);
    }
}

/* A newer controller's member in every object of j. */
static void add_future_members(json_t *j)
{
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_object(j)) {
        json_object_foreach(j, k, v)
            add_future_members(v);
        json_object_set_new(j, "x_added_later",
                            coin() ? json_string("new") : json_object());
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
            add_future_members(v);
    }
}

/* The contract's forward rule (api/agentproto.h AGENT_CONTRACT): an agent
 * reads a desired document holding members it does not know, anywhere,
 * exactly as it reads the same document without them. */
static void desired_from_a_newer_controller_decodes_the_same(void **state)
{
    (void)state;
    for (int i = 0; i < iters; i++) {
        union doc a, b;
        memset(&b, 0, sizeof(b));
        desired_gen(&a);
        json_auto_t *j = desired_enc(&a);
        add_future_members(j);
        struct jerr err = { 0 };
        if (desired_dec(j, &b, &err) < 0) {
            _cleanup_free_ char *text = json_dumps(j, JSON_COMPACT);
            fail_msg("desired %d (FOG_SEED=%" PRIu64 "): refused: %s: %s\n%s",
                     i, seed, err.field, err.detail, text);
        }
        if (!desired_eq(&a, &b))
            fail_msg("desired %d (FOG_SEED=%" PRIu64 "): read differently",
                     i, seed);
        desired_clear(&a);
        desired_clear(&b);
    }
}

static json_t *net_entry(int vxlan)
{
    char bridge[16];
    snprintf(bridge, sizeof(bridge), "fogbr%d", vxlan);
    /* What an entry says of names and MACs is not what is read. */
    return json_pack("{s:s, s:i, s:s, s:s, s:s, s:[], s:[{s:s, s:s}], "
                     "s:[{s:s, s:s}]}", "id", "n", "vxlan_id", vxlan, "cidr",
                     "10.1.0.0/24", "gateway", "10.1.0.1", "bridge", bridge,
                     "vteps", "macs", "mac", "02:00:00:00:00:99", "vtep",
                     "100.96.0.9", "records", "name", "stale", "address",
                     "10.1.0.99");
}

/* A document whose networks' VMs come as AGENT_NET_VMS items is read with
 * each network's names (every item of it, by name) and remote MACs (the
 * items at another VTEP than the node's own, by VTEP then MAC), whatever
 * its entries say; an item whose id is not its network's and MAC's is
 * refused, naming it. */
static void net_vms_are_read_as_names_and_remote_macs(void **state)
{
    (void)state;
    json_auto_t *items = json_array();
    json_array_append_new(items, tu_net_vm(1000, "b", "02:00:00:00:00:02",
                                        "100.96.0.2"));
    json_array_append_new(items, tu_net_vm(1000, "a", "02:00:00:00:00:01",
                                        "100.96.0.1")); /* this node's */
    json_array_append_new(items, tu_net_vm(1000, "c", "02:00:00:00:00:03", NULL));
    json_array_append_new(items, tu_net_vm(1000, "d", "02:00:00:00:00:04",
                                        "100.96.0.0"));
    json_array_append_new(items, tu_net_vm(1001, "x", "02:00:00:00:00:05",
                                        "100.96.0.2"));
    json_auto_t *j = json_pack("{s:i, s:s, s:{s:s}, s:[], s:[o, o], s:O, "
                               "s:[], s:[]}", "revision", 3, "node_id", "n1",
                               "mesh", "address", "100.96.0.1", "vms",
                               "networks", net_entry(1000), net_entry(1001),
                               AGENT_NET_VMS, items, "ports", "peers");
    struct am_desired d;
    struct jerr err = { 0 };
    if (am_desired_decode(j, &d, &err) < 0)
        fail_msg("refused: %s: %s", err.field, err.detail);
    assert_true(d.has_net_vms);
    assert_int_equal(d.n_net_vms, 5);
    const struct am_network *w = &d.networks[0];
    assert_int_equal(w->n_records, 4);
    const char *names[] = { "a", "b", "c", "d" };
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(w->records[i].name, names[i]);
    assert_int_equal(w->n_macs, 2);
    assert_string_equal(w->macs[0].vtep, "100.96.0.0");
    assert_string_equal(w->macs[0].mac, "02:00:00:00:00:04");
    assert_string_equal(w->macs[1].vtep, "100.96.0.2");
    assert_string_equal(w->macs[1].mac, "02:00:00:00:00:02");
    assert_int_equal(d.networks[1].n_records, 1);
    assert_int_equal(d.networks[1].n_macs, 1);
    /* Written again, the list goes with it. */
    json_auto_t *again = am_desired_encode(&d);
    assert_true(json_equal(json_object_get(again, AGENT_NET_VMS), items));
    am_desired_clear(&d);

    json_object_set_new(json_array_get(items, 0), "vxlan_id",
                        json_integer(1001));
    json_object_set(j, AGENT_NET_VMS, items);
    assert_true(am_desired_decode(j, &d, &err) < 0);
    assert_string_equal(err.field, AGENT_NET_VMS);
    assert_non_null(strstr(err.detail, AGENT_NET_VMS "[0]: 'id'"));
    jerr_clear(&err);
}

/* ---- damage ------------------------------------------------------------- */

/* Where a member sits: the keys and indexes from the top to it. */
struct step {
    const char *key; /* NULL: an array index */
    size_t idx;
};
struct where {
    struct step steps[8];
    size_t n;
};

/* Every object member of j, depth first, as paths (at most cap). */
static void members(json_t *j, struct where *at, struct where *out,
                    size_t *n, size_t cap)
{
    if (at->n == ARRAY_SIZE(at->steps))
        return;
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_object(j)) {
        json_object_foreach(j, k, v) {
            at->steps[at->n++] = (struct step){ k, 0 };
            if (*n < cap)
                out[(*n)++] = *at;
            members(v, at, out, n, cap);
            at->n--;
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) {
            at->steps[at->n++] = (struct step){ NULL, i };
            members(v, at, out, n, cap);
            at->n--;
        }
    }
}

/* The value at w in j (NULL if there is none); its parent in *ret_parent. */
static json_t *lookup(json_t *j, const struct where *w, json_t **ret_parent)
{
    json_t *parent = NULL;
    for (size_t i = 0; i < w->n && j; i++) {
        parent = j;
        j = w->steps[i].key ? json_object_get(j, w->steps[i].key)
                            : json_array_get(j, w->steps[i].idx);
    }
    if (ret_parent)
        *ret_parent = parent;
    return j;
}

static void drop_at(json_t *j, const struct where *w)
{
    json_t *parent;
    if (lookup(j, w, &parent))
        json_object_del(parent, w->steps[w->n - 1].key);
}

static json_t *wrong_type(const json_t *v)
{
    switch (rnd() % 6) {
    case 0: return json_is_string(v) ? json_integer(7) : json_string("x");
    case 1: return json_is_integer(v) ? json_true() : json_integer(-1);
    case 2: return json_is_array(v) ? json_object() : json_array();
    case 3: return json_is_object(v) ? json_string("{}") : json_object();
    case 4: return json_null();
    default: return json_real(0.5);
    }
}

static json_t *huge(void)
{
    switch (rnd() % 5) {
    case 0: return json_integer(INT64_MAX);
    case 1: return json_integer(INT64_MIN);
    case 2: return json_integer(-1);
    case 3: return json_real(1e300);
    default: return json_integer((json_int_t)1 << 53);
    }
}

/* A string past every text bound but the refusal list's. */
static json_t *long_string(void)
{
    size_t n = AGENT_USER_DATA_MAX + 1 + (size_t)rr(0, 64);
    _cleanup_free_ char *s = xmalloc(n + 1);
    memset(s, 'a', n);
    s[n] = 0;
    return json_string(s);
}

static json_t *with_nul(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v), at = (size_t)rr(0, (int64_t)n);
    _cleanup_free_ char *t = xmalloc(n + 2);
    memcpy(t, s, at);
    t[at] = 0;
    memcpy(t + at + 1, s + at, n - at);
    return json_stringn(t, n + 1);
}

/* Damage the value at w (whose parent is an object, member `key`): a new
 * value, or NULL when the member is dropped. */
static json_t *damage(const json_t *v, bool *over_list)
{
    *over_list = false;
    switch (rnd() % 6) {
    case 0:
        return NULL;
    case 1:
        return wrong_type(v);
    case 2:
        return huge();
    default:
        break;
    }
    if (json_is_string(v))
        return coin() ? long_string() : with_nul(v);
    if (json_is_array(v) && json_array_size(v) > 0) {
        json_t *a = json_deep_copy(v);
        size_t i = (size_t)rr(0, (int64_t)json_array_size(a) - 1);
        switch (rnd() % 4) {
        case 0:
            json_array_remove(a, i);
            break;
        case 1:
            json_array_set_new(a, i, wrong_type(json_array_get(a, i)));
            break;
        case 2:
            if (json_is_string(json_array_get(a, i))) {
                json_array_set_new(a, i, with_nul(json_array_get(a, i)));
                break;
            }
            /* fall through */
        default:
            if (rnd() % 8 == 0) {
                *over_list = true;
                while (json_array_size(a) <= AGENT_LIST_MAX)
                    json_array_append_new(a, json_null());
            } else {
                while (json_array_size(a) <= AGENT_VM_NICS_MAX)
                    json_array_append(a, json_array_get(a, 0));
            }
        }
        return a;
    }
    return wrong_type(v);
}

/* A value the encoder leaves out because it is the default. */
static bool omitted_default(const json_t *v)
{
    return json_is_boolean(v) || (json_is_integer(v) && !json_integer_value(v)) ||
           (json_is_array(v) && json_array_size(v) == 0);
}

/* The first usage sample the status decoder refused, or NULL. */
static const struct am_sample *sample_refused(const struct am_status *s)
{
    for (size_t i = 0; i < s->n_samples; i++)
        if (s->samples[i].refused)
            return &s->samples[i];
    return NULL;
}

static void damaged(const struct kind *k)
{
    size_t refused = 0, accepted = 0;
    for (int i = 0; i < iters; i++) {
        union doc a, b, zero;
        memset(&b, 0, sizeof(b));
        memset(&zero, 0, sizeof(zero));
        k->gen(&a);
        json_auto_t *orig = k->encode(&a);
        json_auto_t *j = json_deep_copy(orig);
        struct where all[512], top = { .n = 0 };
        size_t n = 0;
        members(j, &top, all, &n, ARRAY_SIZE(all));
        /* The keys belong to j, which the damage may free: copied. */
        struct where copy = all[rnd() % n], *w = &copy;
        char *keys[ARRAY_SIZE(copy.steps)] = { 0 };
        for (size_t s = 0; s < w->n; s++)
            if (w->steps[s].key)
                w->steps[s].key = keys[s] = xstrdup(w->steps[s].key);
        json_t *parent;
        json_t *old = lookup(j, w, &parent);
        const char *key = w->steps[w->n - 1].key;
        bool over_list;
        json_t *nv = damage(old, &over_list);
        if (nv)
            json_object_set_new(parent, key, nv);
        else
            json_object_del(parent, key);
        _cleanup_free_ char *text = over_list ? xstrdup("(long list)") :
                                    json_dumps(j, JSON_COMPACT);
        struct jerr err = { 0 };
        if (k->decode(j, &b, &err) < 0) {
            refused++;
            if (!err.field || !err.detail)
                fail_msg("%s %d (FOG_SEED=%" PRIu64 "): refused without "
                         "naming a member\n%s", k->name, i, seed, text);
            if (!streq(err.field, w->steps[0].key) || !strstr(err.detail, key))
                fail_msg("%s %d (FOG_SEED=%" PRIu64 "): damage to '%s' "
                         "refused as %s: %s\n%s", k->name, i, seed, key,
                         err.field, err.detail, text);
            if (memcmp(&b, &zero, sizeof(b)) != 0)
                fail_msg("%s %d (FOG_SEED=%" PRIu64 "): refused but the "
                         "result was written", k->name, i, seed);
            jerr_clear(&err);
        } else if (k == &kind_status && sample_refused(&b.s)) {
            /* One sample refused on its own: the damaged one, named. */
            refused++;
            const struct am_sample *x = sample_refused(&b.s);
            size_t at = (size_t)(x - b.s.samples);
            if (!streq(w->steps[0].key, "samples") ||
                (w->n > 2 && w->steps[1].idx != at) ||
                !strstr(x->refused, key))
                fail_msg("%s %d (FOG_SEED=%" PRIu64 "): damage to '%s' "
                         "refused samples[%zu]: %s\n%s", k->name, i, seed,
                         key, at, x->refused, text);
            k->clear(&b);
        } else {
            /* Accepted: the member as sent, everything else as before. */
            accepted++;
            json_auto_t *again = k->encode(&b);
            json_t *got = lookup(again, w, NULL);
            json_t *sent = lookup(j, w, NULL);
            if (sent && !json_is_null(sent) &&
                !(got ? json_equal(got, sent) : omitted_default(sent)))
                fail_msg("%s %d (FOG_SEED=%" PRIu64 "): '%s' accepted but "
                         "not as sent\n%s", k->name, i, seed, key, text);
            drop_at(again, w);
            drop_at(orig, w);
            if (!json_equal(again, orig))
                fail_msg("%s %d (FOG_SEED=%" PRIu64 "): damage to '%s' "
                         "changed other members\n%s", k->name, i, seed, key,
                         text);
            k->clear(&b);
        }
        k->clear(&a);
        for (size_t s = 0; s < w->n; s++)
            free(keys[s]);
    }
    print_message("%s: %zu damaged documents refused, %zu accepted\n",
                  k->name, refused, accepted);
    assert_true(refused > 0);
}

static void desired_roundtrips_unchanged(void **state)
{
    roundtrip(&kind_desired);
}

static void status_roundtrips_unchanged(void **state)
{
    roundtrip(&kind_status);
}

static void register_roundtrips_unchanged(void **state)
{
    roundtrip(&kind_register);
}

static void damaged_desired_is_refused_naming_the_member(void **state)
{
    damaged(&kind_desired);
}

static void damaged_status_is_refused_naming_the_member(void **state)
{
    damaged(&kind_status);
}

static void damaged_register_is_refused_naming_the_member(void **state)
{
    damaged(&kind_register);
}

/* A desired document with one VM carrying `extra` members (",\"k\":v"). */
static int decode_vm_with(const char *extra, struct am_desired *d,
                          struct jerr *je)
{
    _cleanup_free_ char *text = xasprintf(
        "{\"revision\":1,\"node_id\":\"n1\",\"mesh\":null,\"vms\":[{"
        "\"id\":\"6f1c2a5e-8d1b-4c4e-9b7a-0c2d3e4f5a6b\",\"name\":\"web\","
        "\"vcpus\":1,\"memory_mib\":%d,\"disk_gib\":1,\"power\":"
        "\"running\"%s}],\"networks\":[],\"ports\":[],\"peers\":[]}",
        VM_MIN_MEMORY_MIB, extra);
    json_auto_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    *d = (struct am_desired){ 0 };
    return am_desired_decode(j, d, je);
}

static void backup_members_are_checked_before_use(void **state)
{
    static const char key[] =
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    static const char id[] = "0b1c2a5e-8d1b-4c4e-9b7a-0c2d3e4f5a6b";
    struct am_desired d;
    struct jerr je = { 0 };
    _cleanup_free_ char *good = xasprintf(
        ",\"backups\":[{\"id\":\"%s\"}],\"backup_key\":\"%s\"", id, key);
    assert_int_equal(decode_vm_with(good, &d, &je), 0);
    assert_int_equal(d.vms[0].n_backups, 1);
    assert_string_equal(d.vms[0].backups[0], id);
    assert_string_equal(d.vms[0].backup_key, key);
    am_desired_clear(&d);
    /* A member a newer controller added is not this agent's to read
     * (api/agentproto.h): ignored, never used. */
    _cleanup_free_ char *newer = xasprintf(
        ",\"backups\":[{\"id\":\"%s\",\"url\":\"x\"}],\"backup_key\":\"%s\"",
        id, key);
    assert_int_equal(decode_vm_with(newer, &d, &je), 0);
    assert_int_equal(d.vms[0].n_backups, 1);
    assert_string_equal(d.vms[0].backups[0], id);
    am_desired_clear(&d);
    /* A key alone (a restore's) is fine; no backups, no key is too. */
    _cleanup_free_ char *key_only = xasprintf(",\"backup_key\":\"%s\"", key);
    assert_int_equal(decode_vm_with(key_only, &d, &je), 0);
    assert_int_equal(d.vms[0].n_backups, 0);
    am_desired_clear(&d);
    assert_int_equal(decode_vm_with("", &d, &je), 0);
    assert_null(d.vms[0].backup_key);
    am_desired_clear(&d);

    char upper[65];
    memcpy(upper, key, sizeof(upper));
    upper[10] = 'A';
    _cleanup_free_ char *five = xasprintf(
        ",\"backups\":[{\"id\":\"%s\"},{\"id\":\"%s\"},{\"id\":\"%s\"},"
        "{\"id\":\"%s\"},{\"id\":\"%s\"}],\"backup_key\":\"%s\"",
        id, id, id, id, id, key);
    char *bad[] = {
        xasprintf(",\"backups\":[{\"id\":\"%s\"}]", id), /* no key */
        xasprintf(",\"backup_key\":\"%.63s\"", key),       /* short */
        xasprintf(",\"backup_key\":\"%s0\"", key),         /* long */
        xasprintf(",\"backup_key\":\"%s\"", upper),
        xasprintf(",\"backup_key\":\"%.62sxz\"", key),
        xasprintf(",\"backup_key\":32"),
        xasprintf(",\"backups\":[{\"id\":\"../x\"}],\"backup_key\":\"%s\"",
                  key),
        xasprintf(",\"backups\":[\"%s\"],\"backup_key\":\"%s\"", id, key),
        xasprintf(",\"backups\":{},\"backup_key\":\"%s\"", key),
        xstrdup(five),
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (decode_vm_with(bad[i], &d, &je) != -EINVAL)
            fail_msg("accepted %s", bad[i]);
        if (!je.field || strncmp(je.field, "vms", 3) != 0)
            fail_msg("%s: refused naming '%s'", bad[i],
                     je.field ? je.field : "(none)");
        jerr_clear(&je);
        free(bad[i]);
    }
}

static int reseed(void **state)
{
    rng_state = seed;
    return 0;
}

int main(void)
{
    const char *s = getenv("FOG_SEED"), *n = getenv("FOG_ITERS");
    seed = s ? strtoull(s, NULL, 10) : 20261203;
    if (!seed)
        seed = 1;
    iters = n && atoi(n) > 0 ? atoi(n) : 2000;
    printf("agentmsg properties: FOG_SEED=%" PRIu64 " FOG_ITERS=%d\n", seed,
           iters);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(desired_roundtrips_unchanged, reseed),
        cmocka_unit_test_setup(status_roundtrips_unchanged, reseed),
        cmocka_unit_test_setup(register_roundtrips_unchanged, reseed),
        cmocka_unit_test_setup(damaged_desired_is_refused_naming_the_member,
                               reseed),
        cmocka_unit_test_setup(damaged_status_is_refused_naming_the_member,
                               reseed),
        cmocka_unit_test_setup(damaged_register_is_refused_naming_the_member,
                               reseed),
        cmocka_unit_test(backup_members_are_checked_before_use),
        cmocka_unit_test(net_vms_are_read_as_names_and_remote_macs),
        cmocka_unit_test_setup(desired_from_a_newer_controller_decodes_the_same,
                               reseed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
