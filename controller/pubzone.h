/* The hub's public DNS zone: NAME.TENANT.DOMAIN -> the public address of
 * the node a published VM runs on, written from the store as a hosts file
 * that an authoritative dnsmasq (--auth-zone DOMAIN --addn-hosts FILE)
 * serves, then the operator's reload command (SIGHUP: dnsmasq re-reads
 * the file and raises the zone's SOA serial). */
#pragma once

#include "controller/app.h"

#include <stdbool.h>
#include <stddef.h>

/* One name of the zone and the address it answers with (IPv4: A, IPv6:
 * AAAA). */
struct pubzone_rec {
    char name[254];
    char addr[46];
};

/* DOMAIN for --public-zone: an RFC 1123 name of at least two labels,
 * leaving room for VM.TENANT in front of it. */
bool pubzone_domain_ok(const char *domain);

/* The records for zone `domain` (lower-case): every VM that is not
 * deleted, is placed and meant to run, and has a port published on its
 * node or an ingress route, as VMNAME.TENANTLABEL.DOMAIN with its node's
 * public address (the provider's, else the one it connects from). Only
 * names made of valid labels; a tenant label belongs to the account
 * named exactly so, else to the oldest that maps to it, and a name to the
 * oldest VM, so no tenant's name answers with another's node. *ret
 * (caller frees), *ret_n; 0 or -EIO. */
int pubzone_records_load(struct store *s, const char *domain,
                         struct pubzone_rec **ret, size_t *ret_n);

/* The hosts file for r[0..n) (caller frees), sorted as given; records
 * whose name is not under `domain` or whose address does not parse are
 * left out. */
char *pubzone_render(const char *domain, const struct pubzone_rec *r,
                     size_t n);

/* Write the zone's file when it differs from what was last written (temp
 * file + rename) and run the reload command. A no-op without
 * --public-zone. 1 when written, 0 unchanged, -errno. */
int pubzone_sync(struct app *a);
