/* How the hub defends itself from the parties that call it: request
 * admission (rate limits per client address, API key and node) and the
 * bounds on what a node may report (capacity, addresses, endpoint). */
#pragma once

#include "api/agentproto.h"
#include "controller/app.h"

/* The rate limit tables for a.cfg's settings (caller owns; NULL-safe
 * free). */
struct guard *guard_new(const struct app_settings *cfg);
void guard_free(struct guard *g);
/* Take cfg's rates and bursts (a reload); buckets keep their tokens. */
void guard_reconfigure(struct guard *g, const struct app_settings *cfg);

/* First thing for every request: the client address's budget (requests
 * carrying a node credential draw on the agents' budget of that address).
 * false after answering 429 with Retry-After. */
bool guard_admit_peer(struct app *a, struct http_request *r);
/* Right after authentication: the API key's or the node's own budget.
 * false after answering 429 with Retry-After. */
bool guard_admit_caller(struct app *a, struct http_request *r,
                        const struct reqctx *c);

/* An address a node may give as where it is reached: an IP (v4 or v6)
 * that is not loopback, unspecified, multicast, link-local or broadcast. */
bool guard_ip_public(const char *ip);
/* "a.b.c.d:port" or "[v6]:port" with a guard_ip_public address and port
 * 1..65535. */
bool guard_endpoint_ok(const char *endpoint);
/* A JSON array of at most NODE_MAX_VM_ADDRESSES strings, each an IPv4 or
 * IPv6 address (a VM's own addresses may be private). */
bool guard_addresses_ok(json_t *addresses);
