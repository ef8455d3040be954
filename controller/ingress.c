/* Web ingress routes in the store (controller/ingress.h): who holds a
 * hostname, and where each route goes now (the VM's node, its published
 * port, its health), which the edge's writer (edge.c) reads. */
#include "controller/ingress.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/netcheck.h"
#include "common/timeutil.h"
#include "controller/store.h"

#include <errno.h>
#include <string.h>

char *ingress_hostname_norm(const char *in)
{
    if (!in || !net_dns_name_ok(in) || !strchr(in, '.'))
        return NULL;
    char *h = xstrdup(in);
    for (char *p = h; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    /* A last label of digits only reads as an IPv4 address. */
    const char *last = strrchr(h, '.') + 1;
    if (strspn(last, "0123456789") == strlen(last)) {
        free(h);
        return NULL;
    }
    return h;
}

/* "IP:PORT" (IPv6 in brackets) when ip is an address and port in range. */
static bool backend_addr(const char *ip, int64_t port, char out[64])
{
    if (!ip || !net_ip_ok(ip) || port < 1 || port > 65535)
        return false;
    int n = snprintf(out, 64, strchr(ip, ':') ? "[%s]:%lld" : "%s:%lld", ip,
                     (long long)port);
    return n > 0 && n < 64;
}

/* ---- the store ---- */

/* Each route with what decides where it goes. */
#define ROUTE_SELECT                                                           \
    "SELECT r.id, r.vm_id, r.hostname, r.port, r.vm_port, r.created_at, "     \
    "v.name AS vm_name, v.desired_state, v.deleted_at, p.host_port, "         \
    "n.public_ip, n.observed_endpoint, (SELECT COUNT(*) FROM health_checks h " \
    "WHERE h.vm_id = r.vm_id AND h.port = r.vm_port AND h.state = "           \
    "'unhealthy') AS sick FROM ingress_routes r JOIN vms v ON v.id = "       \
    "r.vm_id LEFT JOIN ports p ON p.vm_id = r.vm_id AND p.proto = 'tcp' AND " \
    "p.vm_port = r.vm_port AND p.node_id = v.node_id LEFT JOIN nodes n ON "  \
    "n.id = v.node_id "

/* Where a row's traffic goes (out, "" when down) and why not (NULL: up). */
static const char *route_target(const json_t *row, char out[64])
{
    *out = '\0';
    const char *ip = json_str(row, "public_ip");
    if (!ip)
        ip = json_str(row, "observed_endpoint");
    if (json_is_integer(json_object_get(row, "deleted_at")))
        return "the VM is deleted";
    if (!streq(json_str(row, "desired_state"), "running"))
        return "the VM is not meant to run";
    if (!json_is_integer(json_object_get(row, "host_port")))
        return "the VM port is not published on the VM's node";
    if (json_int(row, "sick", 0) > 0)
        return "a health check on the VM port is unhealthy";
    if (!backend_addr(ip, json_int(row, "host_port", 0), out))
        return "the node's public address is not known";
    return NULL;
}

static json_t *route_render(const json_t *row)
{
    char addr[64], t[21];
    const char *why = route_target(row, addr);
    time_format_rfc3339(json_int(row, "created_at", 0), t);
    return json_pack("{s:s, s:s, s:s?, s:s, s:I, s:I, s:s, s:s?, s:s?, s:s}",
                     "id", json_str(row, "id"), "vm_id",
                     json_str(row, "vm_id"), "vm_name",
                     json_str(row, "vm_name"), "hostname",
                     json_str(row, "hostname"), "port",
                     (json_int_t)json_int(row, "port", 0), "vm_port",
                     (json_int_t)json_int(row, "vm_port", 0), "status",
                     why ? "down" : "up", "reason", why, "backend",
                     why ? NULL : addr, "created_at", t);
}

json_t *ingress_list(struct store *s, const char *vm_id,
                     const char *account_id, bool admin)
{
    json_auto_t *rows = NULL;
    int e = vm_id ? store_query(s, &rows, ROUTE_SELECT "WHERE r.vm_id = $1 "
                                "ORDER BY r.hostname, r.port", "s", vm_id)
                  : store_query(s, &rows, ROUTE_SELECT "WHERE $1 = 1 OR "
                                "r.account_id = $2 ORDER BY r.hostname, "
                                "r.port", "is", (int64_t)admin,
                                account_id ? account_id : "");
    if (e < 0)
        return NULL;
    json_t *out = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
        json_array_append_new(out, route_render(row));
    return out;
}

int ingress_add(struct store *s, const json_t *vm, const json_t *body,
                json_t **ret_items, struct jerr *err)
{
    static const struct jfield fields[] = {
        { "hostname", JF_STRING, true, 1, NET_DNS_NAME_MAX, NULL },
        { "port", JF_INT, false, 80, 443, NULL },
        { "vm_port", JF_INT, false, 1, 65535, NULL },
    };
    int e = json_check(body, fields, ARRAY_SIZE(fields), err);
    if (e < 0)
        return e;
    _cleanup_free_ char *host = ingress_hostname_norm(json_str(body,
                                                               "hostname"));
    if (!host) {
        *err = (struct jerr){ xstrdup("hostname"), xasprintf(
            "'hostname' must be a DNS name of letters, digits and '-' in "
            "dot-separated labels of at most %d (at least two labels, at "
            "most %d bytes)", NET_DNS_LABEL_MAX, NET_DNS_NAME_MAX) };
        return -EINVAL;
    }
    int64_t port = json_int(body, "port", 443);
    if (port != 80 && port != 443) {
        *err = (struct jerr){ xstrdup("port"),
                              xstrdup("'port' must be 443 or 80") };
        return -EINVAL;
    }
    int64_t vm_port = json_int(body, "vm_port", port);
    const char *vm_id = json_str(vm, "id"), *acct = json_str(vm,
                                                             "account_id");
    /* One account per hostname: taken under the name's lock. */
    if ((e = store_lock(s, "ingress", host)) < 0)
        return e;
    if (store_query_int(s, 0, "SELECT COUNT(*) FROM ingress_routes WHERE "
                        "hostname = $1 AND (account_id <> $2 OR port = $3)",
                        "ssi", host, acct, port) > 0)
        return -EEXIST;
    if (store_query_int(s, 0, "SELECT COUNT(*) FROM ingress_routes WHERE "
                        "vm_id = $1", "s", vm_id) >= INGRESS_PER_VM_MAX)
        return -E2BIG;
    if (store_query_int(s, 0, "SELECT COUNT(*) FROM ports WHERE vm_id = $1 "
                        "AND proto = 'tcp' AND vm_port = $2", "si", vm_id,
                        vm_port) == 0)
        return -ENOENT;
    char id[UUID_STR_LEN + 1];
    uuid_generate_str(id);
    e = store_exec(s, "INSERT INTO ingress_routes (id, vm_id, account_id, "
                   "hostname, port, vm_port, created_at) VALUES ($1, $2, $3, "
                   "$4, $5, $6, $7)", "ssssiii", id, vm_id, acct, host, port,
                   vm_port, now_s());
    if (e < 0)
        return e;
    json_auto_t *row = NULL;
    if ((e = store_query_one(s, &row, ROUTE_SELECT "WHERE r.id = $1", "s",
                             id)) < 0)
        return e;
    *ret_items = route_render(row);
    return 0;
}

int ingress_remove(struct store *s, const char *vm_id, const char *hostname,
                   int port)
{
    _cleanup_free_ char *host = ingress_hostname_norm(hostname);
    if (!host)
        return 0;
    return port ? store_exec(s, "DELETE FROM ingress_routes WHERE vm_id = $1 "
                             "AND hostname = $2 AND port = $3", "ssi", vm_id,
                             host, (int64_t)port)
                : store_exec(s, "DELETE FROM ingress_routes WHERE vm_id = $1 "
                             "AND hostname = $2", "ss", vm_id, host);
}

void ingress_drop_vm(struct store *s, const char *vm_id)
{
    store_exec(s, "DELETE FROM ingress_routes WHERE vm_id = $1", "s", vm_id);
}

int ingress_routes_load(struct store *s, struct ingress_route **ret,
                        size_t *ret_n)
{
    json_auto_t *rows = NULL;
    if (store_query(s, &rows, ROUTE_SELECT "ORDER BY r.hostname, r.port, "
                    "r.id", "") < 0)
        return -EIO;
    size_t n = json_array_size(rows);
    struct ingress_route *routes = xcalloc(n ? n : 1, sizeof(*routes));
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        struct ingress_route *r = &routes[i];
        snprintf(r->id, sizeof(r->id), "%s", json_str(row, "id"));
        snprintf(r->hostname, sizeof(r->hostname), "%s",
                 json_str(row, "hostname"));
        r->port = (int)json_int(row, "port", 0);
        route_target(row, r->addr);
    }
    *ret = routes;
    *ret_n = n;
    return 0;
}
