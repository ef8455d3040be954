/* Which network addresses a fetch made on a tenant's behalf may connect
 * to: a classifier of IPv4/IPv6 socket addresses (loopback, private,
 * link-local, CGNAT, multicast, ...) and a policy that refuses those and
 * the host's own addresses unless an operator's allow-list permits them. */
#pragma once

#include "common/util.h"

#include <sys/socket.h>

enum addr_class {
    ADDR_PUBLIC,
    ADDR_UNSPECIFIED,  /* 0.0.0.0/8, :: */
    ADDR_LOOPBACK,     /* 127.0.0.0/8, ::1 */
    ADDR_PRIVATE,      /* 10/8, 172.16/12, 192.168/16, fec0::/10 */
    ADDR_LINK_LOCAL,   /* 169.254/16, fe80::/10 */
    ADDR_CGNAT,        /* 100.64/10 (the mesh lives there too) */
    ADDR_MULTICAST,    /* 224/4, ff00::/8 */
    ADDR_BROADCAST,    /* 255.255.255.255 */
    ADDR_UNIQUE_LOCAL, /* fc00::/7 */
    ADDR_RESERVED,     /* 240/4, documentation and benchmark ranges,
                          192.0.0/24, 100::/64, 2001:db8::/32, not IP */
    ADDR_CLASS_MAX
};

/* The class of an AF_INET or AF_INET6 socket address of `len` bytes.
 * IPv6 forms that carry an IPv4 address (mapped ::ffff:0:0/96,
 * compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16) are classed by
 * that IPv4 address. Anything else is ADDR_RESERVED. */
enum addr_class addr_classify(const struct sockaddr *sa, socklen_t len);
/* "loopback", "private", ...; "public" for ADDR_PUBLIC. */
const char *addr_class_name(enum addr_class c);

struct addrpolicy;

/* A policy allowing public addresses and the ranges in `allow`: "CIDR,..."
 * of IPv4 or IPv6 networks, a bare address meaning /32 or /128, spaces
 * ignored; NULL or "" for none. 0 and *ret (free with addrpolicy_free),
 * or -EINVAL and *ret_reason (caller frees) naming the bad entry. */
int addrpolicy_new(const char *allow, struct addrpolicy **ret,
                   char **ret_reason);
/* Accepts NULL. */
void addrpolicy_free(struct addrpolicy *p);
static inline void addrpolicy_freep(struct addrpolicy **p)
{
    addrpolicy_free(*p);
}

/* Mark an address as the host's own: refused even inside an allowed range,
 * unless the allow-list names exactly that address. Ignores other
 * families. */
void addrpolicy_add_own(struct addrpolicy *p, const struct sockaddr *sa,
                        socklen_t len);
/* Mark every address of the host's network interfaces as its own.
 * 0 or -errno from getifaddrs. */
int addrpolicy_add_interfaces(struct addrpolicy *p);
/* Mark the address of a listen string ("1.2.3.4:443", "[v6]:443") as
 * the host's own; names and the wildcard address add nothing (the
 * interfaces cover them). */
void addrpolicy_add_listen(struct addrpolicy *p, const char *listen);

/* May a connection go to `sa`? 0, or -EACCES and, when ret_why is not
 * NULL, *ret_why (caller frees) saying which address and why. */
int addrpolicy_check(const struct addrpolicy *p, const struct sockaddr *sa,
                     socklen_t len, char **ret_why);
/* Judge a URL before any lookup: when its host is an IP literal (in any
 * spelling libcurl accepts), as addrpolicy_check; a host name is allowed
 * here, as only the connection can judge it. -EINVAL with *ret_why when
 * the URL does not parse. */
int addrpolicy_check_url(const struct addrpolicy *p, const char *url,
                         char **ret_why);
