/* The hub's edge: the HAProxy configuration written from the ingress
 * routes (controller/ingress.c) whenever they, a VM's placement, its
 * published ports or its health change (checked each reconciler round,
 * written only on a difference), then HAProxy asked to reload. */
#include "controller/edge.h"
#include "common/buf.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/netcheck.h"
#include "controller/cfgwrite.h"

#include <errno.h>
#include <string.h>

/* The route checks again before it reaches the file. */
static bool route_ok(const struct ingress_route *r)
{
    _cleanup_free_ char *h = ingress_hostname_norm(r->hostname);
    if (!uuid_is_valid(r->id) || !h || !streq(h, r->hostname) ||
        (r->port != 80 && r->port != 443))
        return false;
    if (!*r->addr)
        return true;
    /* "IP:PORT" or "[IP]:PORT" as backend_addr writes it. */
    const char *colon = strrchr(r->addr, ':');
    if (!colon)
        return false;
    _cleanup_free_ char *ip = xstrndup(r->addr, (size_t)(colon - r->addr));
    char *bare = ip;
    if (*bare == '[') {
        size_t n = strlen(bare);
        if (n < 2 || bare[n - 1] != ']')
            return false;
        bare[n - 1] = '\0';
        bare++;
    }
    int64_t port;
    return net_ip_ok(bare) && parse_int64(colon + 1, 1, 65535, &port) == 0;
}

bool edge_bind_ok(const char *s)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    int64_t port;
    return colon && strspn(s, "0123456789abcdefABCDEF.:[]*") == strlen(s) &&
           parse_int64(colon + 1, 1, 65535, &port) == 0;
}

char *edge_config_render(const struct ingress_route *r, size_t n,
                         const char *https_bind, const char *http_bind)
{
    struct buf b = { 0 };
    buf_printf(&b,
               "# Written by fog-controller from its store; every change of "
               "routes,\n# placement, published ports or health rewrites "
               "it. Do not edit.\n"
               "global\n"
               "    # maxconn follows the open-file limit HAProxy starts "
               "with\n"
               "\n"
               "defaults\n"
               "    timeout connect 5s\n"
               "    timeout client 60s\n"
               "    timeout server 60s\n"
               "    timeout http-request 10s\n");
    /* TLS passthrough: wait for the ClientHello and pick the backend
     * named after its SNI, HTTP the one named after its Host: one lookup
     * by name however many routes there are. A name with no backend
     * (HAProxy looks it up at run time) meets the default: closed, or a
     * 404. The prefixes keep each frontend to its own backends. */
    if (edge_bind_ok(https_bind))
        buf_printf(&b,
                   "\nfrontend fog_https\n"
                   "    mode tcp\n"
                   "    bind %s\n"
                   "    tcp-request inspect-delay 5s\n"
                   "    tcp-request content accept if { req.ssl_hello_type "
                   "1 }\n"
                   "    use_backend t_%%[req.ssl_sni,lower]\n"
                   "    default_backend fog_none_tcp\n", https_bind);
    if (edge_bind_ok(http_bind))
        buf_printf(&b,
                   "\nfrontend fog_http\n"
                   "    mode http\n"
                   "    bind %s\n"
                   "    option forwardfor\n"
                   "    use_backend h_%%[req.hdr(host),field(1,:),lower]\n"
                   "    default_backend fog_none_http\n", http_bind);
    buf_printf(&b, "\nbackend fog_none_tcp\n"
                   "    mode tcp\n"
                   "\nbackend fog_none_http\n"
                   "    mode http\n"
                   "    http-request deny deny_status 404\n");
    for (size_t i = 0; i < n; i++) {
        if (!route_ok(&r[i]))
            continue;
        bool tls = r[i].port == 443;
        buf_printf(&b, "\n# route %s\nbackend %s_%s\n    mode %s\n",
                   r[i].id, tls ? "t" : "h", r[i].hostname,
                   tls ? "tcp" : "http");
        /* A route that is down keeps its backend, without a server. */
        if (*r[i].addr)
            buf_printf(&b, "    server vm %s\n", r[i].addr);
    }
    return buf_steal(&b);
}

static struct cfgwrite written = CFGWRITE_INIT;

int edge_sync(struct app *a)
{
    const struct app_settings *cfg = &a->cfg;
    if (!cfg->ingress_config || !*cfg->ingress_config)
        return 0;
    _cleanup_free_ struct ingress_route *routes = NULL;
    size_t n = 0;
    int e = ingress_routes_load(a->store, &routes, &n);
    if (e < 0)
        return e;
    char *text = edge_config_render(routes, n, cfg->ingress_https_bind,
                                    cfg->ingress_http_bind);
    return cfgwrite_sync(&written, cfg->ingress_config, &text,
                         cfg->ingress_reload, "ingress configuration");
}
