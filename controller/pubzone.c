/* The hub's public DNS zone (controller/pubzone.h): which published VMs
 * have a name, the hosts file dnsmasq serves them from, written each
 * reconciler round only when its text changed, like the edge (edge.c). */
#include "controller/pubzone.h"
#include "common/buf.h"
#include "common/ids.h"
#include "common/netcheck.h"
#include "controller/cfgwrite.h"
#include "controller/desired.h"
#include "controller/store.h"

#include <errno.h>
#include <string.h>

bool pubzone_domain_ok(const char *domain)
{
    /* Room for two labels of 63 and their dots in front. */
    if (!domain || !net_dns_name_ok(domain) || !strchr(domain, '.') ||
        strlen(domain) > NET_DNS_NAME_MAX - 2 * (NET_DNS_LABEL_MAX + 1))
        return false;
    for (const char *p = domain; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            return false;
    const char *last = strrchr(domain, '.') + 1;
    return strspn(last, "0123456789") != strlen(last);
}

/* "name.label.domain" into out when both are valid labels. */
static bool rec_name(const char *vm, const char *label, const char *domain,
                     char out[254])
{
    if (!name_is_valid(vm) || !name_is_valid(label))
        return false;
    int n = snprintf(out, 254, "%s.%s.%s", vm, label, domain);
    return n > 0 && n < 254 && net_dns_name_ok(out);
}

int pubzone_records_load(struct store *s, const char *domain,
                         struct pubzone_rec **ret, size_t *ret_n)
{
    json_auto_t *accts = NULL, *rows = NULL, *owner = json_object(),
                *seen = json_object();
    /* COALESCE keeps sqlite on ports(vm_id, ...): on node_id it would
     * scan each node's ports for every VM (25 s instead of 0.8 s for
     * 100,000 VMs on 100 nodes, bench/bench_pubzone). */
    if (store_query(s, &accts, "SELECT id, name FROM accounts ORDER BY "
                    "created_at, id", "") < 0 ||
        store_query(s, &rows,
                    "SELECT v.name, v.account_id, ac.name AS account_name, "
                    "n.public_ip, n.observed_endpoint FROM vms v JOIN "
                    "accounts ac ON ac.id = v.account_id JOIN nodes n ON "
                    "n.id = v.node_id WHERE v.deleted_at IS NULL AND "
                    "v.desired_state = 'running' AND (EXISTS (SELECT 1 FROM "
                    "ports p WHERE p.vm_id = v.id AND COALESCE(p.node_id, "
                    "'') = v.node_id) OR EXISTS (SELECT 1 FROM "
                    "ingress_routes r WHERE r.vm_id = v.id)) ORDER BY "
                    "v.created_at, v.id", "") < 0)
        return -EIO;
    /* Account names that differ can map to one label ("Acme", "acme"):
     * the account named exactly so holds it (names are unique), else the
     * oldest, whoever publishes first. */
    size_t i;
    json_t *row;
    for (int exact = 1; exact >= 0; exact--)
        json_array_foreach(accts, i, row) {
            char label[AGENT_DNS_LABEL_MAX + 1];
            desired_dns_label(json_str(row, "name"), label);
            if ((!exact || streq(label, json_str(row, "name"))) &&
                !json_object_get(owner, label))
                json_object_set_new(owner, label,
                                    json_string(json_str(row, "id")));
        }
    struct pubzone_rec *recs = xcalloc(json_array_size(rows) + 1,
                                       sizeof(*recs));
    size_t n = 0;
    json_array_foreach(rows, i, row) {
        char label[AGENT_DNS_LABEL_MAX + 1];
        desired_dns_label(json_str(row, "account_name"), label);
        const char *acct = json_str(row, "account_id");
        if (!acct || !streq(json_str(owner, label), acct))
            continue;
        const char *ip = json_str(row, "public_ip");
        if (!ip)
            ip = json_str(row, "observed_endpoint");
        struct pubzone_rec *r = &recs[n];
        if (!ip || !net_ip_ok(ip) || strlen(ip) >= sizeof(r->addr) ||
            !rec_name(json_str(row, "name"), label, domain, r->name) ||
            json_object_get(seen, r->name))
            continue;
        json_object_set_new(seen, r->name, json_true());
        snprintf(r->addr, sizeof(r->addr), "%s", ip);
        n++;
    }
    *ret = recs;
    *ret_n = n;
    return 0;
}

char *pubzone_render(const char *domain, const struct pubzone_rec *r,
                     size_t n)
{
    struct buf b = { 0 };
    buf_printf(&b, "# Public names of %s, written by fog-controller from "
                   "its store.\n# Served by dnsmasq --auth-zone; every "
                   "change rewrites it. Do not edit.\n", domain);
    size_t dl = strlen(domain);
    for (size_t i = 0; i < n; i++) {
        size_t nl = strnlen(r[i].name, sizeof(r[i].name));
        if (nl == sizeof(r[i].name) || !net_dns_name_ok(r[i].name) ||
            nl <= dl + 1 || r[i].name[nl - dl - 1] != '.' ||
            !streq(r[i].name + nl - dl, domain) ||
            strnlen(r[i].addr, sizeof(r[i].addr)) == sizeof(r[i].addr) ||
            !net_ip_ok(r[i].addr))
            continue;
        buf_printf(&b, "%s %s\n", r[i].addr, r[i].name);
    }
    return buf_steal(&b);
}

static struct cfgwrite written = CFGWRITE_INIT;

int pubzone_sync(struct app *a)
{
    const struct app_settings *cfg = &a->cfg;
    if (!cfg->public_zone || !*cfg->public_zone)
        return 0;
    _cleanup_free_ struct pubzone_rec *recs = NULL;
    size_t n = 0;
    int e = pubzone_records_load(a->store, cfg->public_zone, &recs, &n);
    if (e < 0)
        return e;
    char *text = pubzone_render(cfg->public_zone, recs, n);
    return cfgwrite_sync(&written, cfg->public_zone_file, &text,
                         cfg->public_zone_reload, "public zone");
}
