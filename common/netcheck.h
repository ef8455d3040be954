/* One check per network fact that crosses a boundary (MAC, interface
 * name, address, CIDR): the API, the agent contract, the XML and
 * cloud-init writers and the WireGuard backends all ask here, so no two
 * of them can disagree on what is valid. */
#pragma once

#include <stdbool.h>

/* The longest interface name the kernel takes (IFNAMSIZ - 1). */
#define NET_IFNAME_MAX 15

/* "xx:xx:xx:xx:xx:xx" in hex (either case) naming a unicast, locally
 * administered address: the only kind the hub hands out (52:54:00:...)
 * and the only kind a guest NIC may carry, since a multicast source is
 * invalid on Ethernet and a global one could collide with real hardware. */
bool net_mac_ok(const char *s);

/* A Linux interface name: 1..15 of [A-Za-z0-9_.-], not "." or "..". */
bool net_ifname_ok(const char *s);

/* The longest DNS label and name (RFC 1035). */
#define NET_DNS_LABEL_MAX 63
#define NET_DNS_NAME_MAX 253

/* One RFC 1123 host name label: 1..63 ASCII letters, digits and '-', not
 * starting or ending with '-'. */
bool net_dns_label_ok(const char *s);

/* A DNS name of such labels joined by single dots (no trailing dot), at
 * most NET_DNS_NAME_MAX bytes. */
bool net_dns_name_ok(const char *s);

/* An IPv4 address in dotted quad. */
bool net_ipv4_ok(const char *s);

/* An IPv4 or IPv6 address in its text form. */
bool net_ip_ok(const char *s);

/* ADDRESS/PREFIX with an IPv4 or IPv6 address and a prefix in range for
 * its family (0..32 or 0..128, decimal without sign or leading zeros). */
bool net_cidr_ok(const char *s);
