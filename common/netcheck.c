/* The validators of common/netcheck.h: pure string checks, no I/O. */
#include "common/netcheck.h"

#include "common/ids.h"
#include "common/util.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

bool net_mac_ok(const char *s)
{
    uint8_t mac[6];
    if (!s || strlen(s) != 17)
        return false;
    for (int i = 0; i < 6; i++) {
        char octet[3] = { s[3 * i], s[3 * i + 1], '\0' };
        if ((i < 5 && s[3 * i + 2] != ':') || hex_decode(octet, &mac[i], 1) < 0)
            return false;
    }
    return (mac[0] & 0x01) == 0 && (mac[0] & 0x02) != 0;
}

static bool label_ok(const char *s, size_t n)
{
    if (n == 0 || n > NET_DNS_LABEL_MAX || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

bool net_dns_label_ok(const char *s)
{
    return s && label_ok(s, strlen(s));
}

bool net_dns_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > NET_DNS_NAME_MAX)
        return false;
    for (const char *p = s;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (!label_ok(p, len))
            return false;
        if (!dot)
            return true;
        p = dot + 1;
    }
}

bool net_ifname_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > NET_IFNAME_MAX || streq(s, ".") || streq(s, ".."))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

bool net_ipv4_ok(const char *s)
{
    struct in_addr a;
    return s && inet_pton(AF_INET, s, &a) == 1;
}

bool net_ip_ok(const char *s)
{
    struct in6_addr a;
    return s && (inet_pton(AF_INET, s, &a) == 1 ||
                 inet_pton(AF_INET6, s, &a) == 1);
}

bool net_cidr_ok(const char *s)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    if (!slash || slash - s > 45)
        return false;
    char addr[46];
    memcpy(addr, s, (size_t)(slash - s));
    addr[slash - s] = '\0';
    struct in6_addr a;
    int max;
    if (inet_pton(AF_INET, addr, &a) == 1)
        max = 32;
    else if (inet_pton(AF_INET6, addr, &a) == 1)
        max = 128;
    else
        return false;
    const char *p = slash + 1;
    size_t n = strlen(p);
    if (n == 0 || n > 3 || (n > 1 && p[0] == '0'))
        return false;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    return v <= max;
}
