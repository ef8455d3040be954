/* Admission of requests and the checks on what nodes report. Rate limits
 * are token buckets (ratelimit.c): one table per client address for
 * anonymous, tenant and admin traffic (an IPv6 client by its /64), one
 * per address for node agents (nodes behind one NAT share it), one per API
 * key and one per node. */
#include "controller/guard.h"

#include "common/log.h"
#include "common/timeutil.h"
#include "controller/ratelimit.h"
#include "netfabric/wg.h"

#include <arpa/inet.h>
#include <stdio.h>

/* Keys each table remembers; a forgotten one starts with a full bucket. */
#define GUARD_MAX_KEYS 65536

struct guard {
    struct ratelimit *ip, *agent_ip, *key, *node;
};

struct guard *guard_new(const struct app_settings *cfg)
{
    struct guard *g = xcalloc(1, sizeof(*g));
    g->ip = ratelimit_new(cfg->rate_ip, cfg->burst_ip, GUARD_MAX_KEYS);
    g->agent_ip = ratelimit_new(cfg->rate_agent_ip, cfg->burst_agent_ip,
                                GUARD_MAX_KEYS);
    g->key = ratelimit_new(cfg->rate_key, cfg->burst_key, GUARD_MAX_KEYS);
    g->node = ratelimit_new(cfg->rate_node, cfg->burst_node, GUARD_MAX_KEYS);
    return g;
}

void guard_reconfigure(struct guard *g, const struct app_settings *cfg)
{
    ratelimit_set(g->ip, cfg->rate_ip, cfg->burst_ip);
    ratelimit_set(g->agent_ip, cfg->rate_agent_ip, cfg->burst_agent_ip);
    ratelimit_set(g->key, cfg->rate_key, cfg->burst_key);
    ratelimit_set(g->node, cfg->rate_node, cfg->burst_node);
}

void guard_free(struct guard *g)
{
    if (!g)
        return;
    ratelimit_free(g->ip);
    ratelimit_free(g->agent_ip);
    ratelimit_free(g->key);
    ratelimit_free(g->node);
    free(g);
}

static bool admit(struct http_request *r, struct ratelimit *rl,
                  const char *key, const char *who)
{
    int64_t retry;
    if (ratelimit_take(rl, key, mono_ms(), &retry))
        return true;
    char t[24];
    snprintf(t, sizeof(t), "%lld", (long long)retry);
    http_reply_header(r, "Retry-After", t);
    http_reply_problem_ext(r, 429, "rate-limited", NULL,
                           json_pack("{s:I}", "retry_after_s",
                                     (json_int_t)retry),
                           "too many requests from this %s: retry in %lld s",
                           who, (long long)retry);
    return false;
}

/* The bucket key of a client address: an IPv4 address, or the /64 of an
 * IPv6 one (one host usually holds a whole /64 and could rotate through
 * it). */
static void peer_key(const char *peer, char out[INET6_ADDRSTRLEN + 4])
{
    struct in6_addr v6;
    if (peer && inet_pton(AF_INET6, peer, &v6) == 1 &&
        !IN6_IS_ADDR_V4MAPPED(&v6)) {
        memset(v6.s6_addr + 8, 0, 8);
        char t[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &v6, t, sizeof(t));
        snprintf(out, INET6_ADDRSTRLEN + 4, "%s/64", t);
        return;
    }
    snprintf(out, INET6_ADDRSTRLEN + 4, "%s", peer ? peer : "");
}

bool guard_admit_peer(struct app *a, struct http_request *r)
{
    if (!a->guard)
        return true;
    char key[INET6_ADDRSTRLEN + 4];
    peer_key(http_req_peer(r), key);
    const char *h = http_req_header(r, "Authorization");
    bool agent = h && strncasecmp(h, "Bearer fogn_", 12) == 0;
    return admit(r, agent ? a->guard->agent_ip : a->guard->ip, key,
                 "address");
}

bool guard_admit_caller(struct app *a, struct http_request *r,
                        const struct reqctx *c)
{
    if (!a->guard)
        return true;
    if (c->role == ROLE_NODE)
        return admit(r, a->guard->node, c->actor, "node");
    return admit(r, a->guard->key, c->actor, "API key");
}

bool guard_ip_public(const char *ip)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (!ip)
        return false;
    if (inet_pton(AF_INET, ip, &v4) == 1) {
        uint32_t x = ntohl(v4.s_addr);
        return (x >> 24) != 0 &&               /* 0.0.0.0/8 */
               (x >> 24) != 127 &&             /* loopback */
               (x >> 16) != 0xa9fe &&          /* 169.254/16 link-local */
               (x >> 28) != 0xe &&             /* 224/4 multicast */
               x != 0xffffffffu;               /* broadcast */
    }
    if (inet_pton(AF_INET6, ip, &v6) == 1) {
        const uint8_t *b = v6.s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&v6)) {
            char t[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, b + 12, t, sizeof(t));
            return guard_ip_public(t);
        }
        return !IN6_IS_ADDR_UNSPECIFIED(&v6) && !IN6_IS_ADDR_LOOPBACK(&v6) &&
               !IN6_IS_ADDR_MULTICAST(&v6) && !IN6_IS_ADDR_LINKLOCAL(&v6);
    }
    return false;
}

bool guard_endpoint_ok(const char *endpoint)
{
    union wg_endpoint e;
    char t[INET6_ADDRSTRLEN];
    if (!endpoint || wg_endpoint_parse(endpoint, &e) < 0)
        return false;
    if (e.sa.sa_family == AF_INET)
        return ntohs(e.in.sin_port) != 0 &&
               inet_ntop(AF_INET, &e.in.sin_addr, t, sizeof(t)) &&
               guard_ip_public(t);
    if (e.sa.sa_family == AF_INET6)
        return ntohs(e.in6.sin6_port) != 0 &&
               inet_ntop(AF_INET6, &e.in6.sin6_addr, t, sizeof(t)) &&
               guard_ip_public(t);
    return false;
}

bool guard_addresses_ok(json_t *addresses)
{
    size_t i;
    json_t *v;
    if (!json_is_array(addresses) ||
        json_array_size(addresses) > NODE_MAX_VM_ADDRESSES)
        return false;
    json_array_foreach(addresses, i, v) {
        const char *s = json_string_value(v);
        struct in6_addr x;
        if (!s || strlen(s) > 45 || (inet_pton(AF_INET, s, &x) != 1 &&
                                     inet_pton(AF_INET6, s, &x) != 1))
            return false;
    }
    return true;
}
