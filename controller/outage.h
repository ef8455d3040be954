/* Outages and SLA credits: while a VM should run and its node is
 * unreachable the tenant pays nothing (accrual bills only what the node
 * reported while heartbeating); the leading replica also records each such
 * outage as the hub observed it and, when it ends, moves sla_credit_bps /
 * 10000 of the outage's price from the provider to the tenant. */
#pragma once

#include "controller/app.h"

/* One pass, run by the leader after the health check: open an outage for
 * every VM that should run on a node silent for three heartbeats (from the
 * node's last report, never before `since`, the time this replica began
 * judging), close the ones whose node reports again or whose VM is no
 * longer wanted there, and credit each closed one exactly once (one store
 * transaction per outage, with an event on the tenant's account). Returns
 * the number closed, or -errno. */
int outage_tick(struct app *a, int64_t since);
