/* cloud-init NoCloud documents. Every value that reaches YAML is either
 * checked to a strict shape (names, addresses, MACs) or written as a JSON
 * string, which YAML reads as a double-quoted scalar. The tenant's own
 * user-data is never parsed nor changed: it is the user-data file byte for
 * byte, and the account's SSH keys go in meta-data `public-keys`. */
#include "images/cloudinit.h"
#include "common/netcheck.h"

#include "common/buf.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "images/seed.h"

#include <arpa/inet.h>
#include <nettle/base64.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#define CLOUDINIT_MAX_KEYS 64
#define CLOUDINIT_MAX_KEY_LEN 16384
#define CLOUDINIT_MAX_NICS 8
#define CLOUDINIT_MAX_DNS 4

struct render {
    char *reason;
};

static int fail(struct render *r, const char *fmt, ...) _printf_(2, 3);
static int fail(struct render *r, const char *fmt, ...)
{
    va_list ap;
    free(r->reason);
    va_start(ap, fmt);
    if (vasprintf(&r->reason, fmt, ap) < 0)
        abort();
    va_end(ap);
    return -EINVAL;
}

/* A YAML double-quoted scalar (JSON string syntax, ASCII only). */
static void yaml_quoted(struct buf *b, const char *s)
{
    json_auto_t *j = json_string(s);
    _cleanup_free_ char *q = j ? json_dumps(j, JSON_ENCODE_ANY |
                                               JSON_ENSURE_ASCII)
                               : NULL;
    buf_puts(b, q ? q : "\"\"");
}

static bool key_ok(const char *k, size_t len)
{
    if (len == 0 || len > CLOUDINIT_MAX_KEY_LEN || strlen(k) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)k[i] < 0x20 || k[i] == 0x7f)
            return false;
    return true;
}

/* meta-data `public-keys` (NoCloud): cloud-init's `ssh` module installs
 * them for the default user. They stay out of user-data, which is the
 * tenant's alone. */
static void keys_meta(struct buf *b, const json_t *keys)
{
    size_t i;
    json_t *k;
    if (json_array_size(keys) == 0)
        return;
    buf_puts(b, "public-keys:\n");
    json_array_foreach(keys, i, k) {
        buf_puts(b, "  - ");
        yaml_quoted(b, json_string_value(k));
        buf_puts(b, "\n");
    }
}

static int check_keys(struct render *r, const json_t *keys)
{
    size_t i;
    json_t *k;
    if (!keys || json_is_null(keys))
        return 0;
    if (!json_is_array(keys) || json_array_size(keys) > CLOUDINIT_MAX_KEYS)
        return fail(r, "ssh_keys must be an array of at most %d keys",
                    CLOUDINIT_MAX_KEYS);
    json_array_foreach(keys, i, k)
        if (!json_is_string(k) ||
            !key_ok(json_string_value(k), json_string_length(k)))
            return fail(r, "SSH key %zu is not a single line of text", i);
    return 0;
}

/* The tenant's user-data, byte for byte: `user_data` (text) or
 * `user_data_base64` (any bytes, gzip included). cloud-init tells the
 * formats apart itself; we never parse or rewrite them. */
static int render_user_data(struct render *r, const json_t *vm, size_t max,
                            char **ret, size_t *ret_len)
{
    const json_t *ud = json_object_get(vm, "user_data");
    const json_t *b64 = json_object_get(vm, "user_data_base64");
    bool have_ud = ud && !json_is_null(ud), have_b64 = b64 && !json_is_null(b64);

    if (have_ud && have_b64)
        return fail(r, "user_data and user_data_base64 are exclusive");
    if (have_b64) {
        if (!json_is_string(b64))
            return fail(r, "user_data_base64 must be a string");
        size_t n = json_string_length(b64);
        if (n / 4 * 3 > max + 2)
            return fail(r, "user_data of about %zu bytes is over the limit "
                           "of %zu bytes", n / 4 * 3, max);
        uint8_t *out = xmalloc(BASE64_DECODE_LENGTH(n) + 1);
        size_t olen = 0;
        struct base64_decode_ctx ctx;
        base64_decode_init(&ctx);
        if (!base64_decode_update(&ctx, &olen, out,
                                  n, json_string_value(b64)) ||
            !base64_decode_final(&ctx)) {
            free(out);
            return fail(r, "user_data_base64 is not valid base64");
        }
        if (olen > max) {
            free(out);
            return fail(r, "user_data of %zu bytes is over the limit of %zu "
                           "bytes", olen, max);
        }
        out[olen] = 0;
        *ret = (char *)out;
        *ret_len = olen;
        return 0;
    }
    if (have_ud) {
        if (!json_is_string(ud))
            return fail(r, "user_data must be a string");
        const char *tenant = json_string_value(ud);
        size_t tlen = json_string_length(ud);
        if (strlen(tenant) != tlen)
            return fail(r, "user_data must not contain NUL bytes");
        if (tlen > max)
            return fail(r, "user_data of %zu bytes is over the limit of %zu "
                           "bytes", tlen, max);
        if (tlen > 0) {
            *ret = xstrdup(tenant);
            *ret_len = tlen;
            return 0;
        }
    }
    /* Nothing from the tenant: an empty cloud-config, so cloud-init still
     * runs its modules with meta-data's hostname and keys. */
    *ret = xstrdup("#cloud-config\n");
    *ret_len = strlen(*ret);
    return 0;
}

static int check_dns(struct render *r, const json_t *dns, const char *what)
{
    size_t i;
    json_t *d;
    if (!dns || json_is_null(dns))
        return 0;
    if (!json_is_array(dns) || json_array_size(dns) > CLOUDINIT_MAX_DNS)
        return fail(r, "%s must be an array of at most %d addresses", what,
                    CLOUDINIT_MAX_DNS);
    json_array_foreach(dns, i, d)
        if (!net_ipv4_ok(json_string_value(d)))
            return fail(r, "%s entry %zu is not an IPv4 address", what, i);
    return 0;
}

static bool ipv6_ok(const char *s)
{
    return s && strchr(s, ':') && net_ip_ok(s);
}

static int render_network(struct render *r, const json_t *vm, char **ret)
{
    const json_t *nics = json_object_get(vm, "nics");
    const json_t *dns = json_object_get(vm, "dns");
    bool gateway_dns = json_is_true(json_object_get(vm, "gateway_dns"));
    struct buf b = BUF_INIT;
    bool dns_done = false;
    size_t i;
    json_t *nic;
    int e;

    if (nics && !json_is_null(nics) &&
        (!json_is_array(nics) || json_array_size(nics) > CLOUDINIT_MAX_NICS))
        return fail(r, "nics must be an array of at most %d interfaces",
                    CLOUDINIT_MAX_NICS);
    if ((e = check_dns(r, dns, "dns")) < 0)
        return e;
    json_array_foreach(nics, i, nic) {
        const char *mac = json_str(nic, "mac");
        const char *addr = json_str(nic, "address");
        const char *gw = json_str(nic, "gateway");
        int64_t prefix = json_int(nic, "prefix", -1);
        int64_t mtu = json_int(nic, "mtu", 0);
        if (!net_mac_ok(mac))
            return fail(r, "nic %zu: mac is not like 52:54:00:ab:cd:ef", i);
        if (!net_ipv4_ok(addr))
            return fail(r, "nic %zu: address is not an IPv4 address", i);
        if (prefix < 1 || prefix > 32)
            return fail(r, "nic %zu: prefix must be 1..32", i);
        if (gw && !net_ipv4_ok(gw))
            return fail(r, "nic %zu: gateway is not an IPv4 address", i);
        const char *a6 = json_str(nic, "address6");
        const char *gw6 = json_str(nic, "gateway6");
        if (json_object_get(nic, "address6") && !ipv6_ok(a6))
            return fail(r, "nic %zu: address6 is not an IPv6 address", i);
        if (json_object_get(nic, "gateway6") && (!a6 || !ipv6_ok(gw6)))
            return fail(r, "nic %zu: gateway6 is not an IPv6 address (or "
                           "comes without address6)", i);
        if (mtu && (mtu < 576 || mtu > 9000))
            return fail(r, "nic %zu: mtu must be 576..9000", i);
        if ((e = check_dns(r, json_object_get(nic, "dns"), "nic dns")) < 0)
            return e;
        const char *search = json_str(nic, "dns_search");
        if (json_object_get(nic, "dns_search") &&
            !json_is_null(json_object_get(nic, "dns_search")) &&
            !net_dns_name_ok(search))
            return fail(r, "nic %zu: dns_search is not a DNS name", i);
    }

    buf_puts(&b, "version: 2\n");
    if (json_array_size(nics) > 0)
        buf_puts(&b, "ethernets:\n");
    json_array_foreach(nics, i, nic) {
        const char *gw = json_str(nic, "gateway");
        buf_printf(&b, "  eth%zu:\n    match:\n      macaddress: \"", i);
        for (const char *c = json_str(nic, "mac"); *c; c++)
            buf_printf(&b, "%c", (*c >= 'A' && *c <= 'F') ? *c + 32 : *c);
        buf_printf(&b, "\"\n    set-name: eth%zu\n    addresses:\n"
                       "      - %s/%lld\n", i, json_str(nic, "address"),
                   (long long)json_int(nic, "prefix", 0));
        /* IPv6: the network's /64 (AGENT_NIC_ADDRESS6). */
        const char *gw6 = json_str(nic, "gateway6");
        if (json_str(nic, "address6"))
            buf_printf(&b, "      - \"%s/64\"\n", json_str(nic, "address6"));
        if (json_int(nic, "mtu", 0))
            buf_printf(&b, "    mtu: %lld\n",
                       (long long)json_int(nic, "mtu", 0));
        if (gw && !dns_done) {
            /* One default route and one set of resolvers: the first NIC
             * with a gateway. Resolvers: the network's own, else the
             * hub's, else the node's resolver on the gateway address (with
             * the tenant's search domain) when the node runs one, else
             * public ones. */
            const json_t *use = json_object_get(nic, "dns");
            if (json_array_size(use) == 0)
                use = dns;
            const char *search = json_str(nic, "dns_search");
            buf_printf(&b, "    routes:\n      - to: 0.0.0.0/0\n"
                           "        via: %s\n", gw);
            if (gw6)
                buf_printf(&b, "      - to: \"::/0\"\n        via: \"%s\"\n",
                           gw6);
            buf_puts(&b, "    nameservers:\n      addresses:\n");
            if (json_array_size(use) > 0) {
                size_t k;
                json_t *d;
                json_array_foreach(use, k, d)
                    buf_printf(&b, "        - %s\n", json_string_value(d));
            } else if (gateway_dns) {
                buf_printf(&b, "        - %s\n", gw);
                if (gw6)
                    buf_printf(&b, "        - \"%s\"\n", gw6);
                if (search)
                    buf_printf(&b, "      search:\n        - %s\n", search);
            } else {
                buf_puts(&b, "        - " CLOUDINIT_DEFAULT_DNS1 "\n"
                             "        - " CLOUDINIT_DEFAULT_DNS2 "\n");
            }
            dns_done = true;
        }
    }
    *ret = buf_steal(&b);
    return 0;
}

int cloudinit_render(const json_t *vm, size_t max_user_data,
                     struct cloudinit_docs *ret, char **ret_reason)
{
    struct render r = { 0 };
    struct cloudinit_docs d = { 0 };
    const char *id = json_str(vm, "id"), *name = json_str(vm, "name");
    struct buf m = BUF_INIT;
    _cleanup_free_ char *host = NULL;
    int e;

    if (!max_user_data)
        max_user_data = CLOUDINIT_MAX_USER_DATA;
    if (!json_is_object(vm)) {
        e = fail(&r, "VM must be an object");
        goto out;
    }
    if (!uuid_is_valid(id) && !name_is_valid(id)) {
        e = fail(&r, "VM id is missing or malformed");
        goto out;
    }
    /* Names made before the hostname rule refused a trailing '-' still
     * boot: the hostname drops it. */
    host = name ? xstrdup(name) : NULL;
    for (size_t hl = host ? strlen(host) : 0; hl > 1 && host[hl - 1] == '-';)
        host[--hl] = '\0';
    if (!name_is_valid(host)) {
        e = fail(&r, "VM name is not a valid hostname");
        goto out;
    }
    buf_puts(&m, "instance-id: ");
    char *iid = xasprintf("fog-%s", id);
    yaml_quoted(&m, iid);
    free(iid);
    buf_puts(&m, "\nlocal-hostname: ");
    yaml_quoted(&m, host);
    buf_puts(&m, "\n");
    if ((e = check_keys(&r, json_object_get(vm, "ssh_keys"))) < 0) {
        buf_free(&m);
        goto out;
    }
    keys_meta(&m, json_object_get(vm, "ssh_keys"));
    d.meta_data = buf_steal(&m);

    if ((e = render_user_data(&r, vm, max_user_data, &d.user_data,
                              &d.user_data_len)) < 0 ||
        (e = render_network(&r, vm, &d.network_config)) < 0)
        goto out;
    *ret = d;
    return 0;
out:
    cloudinit_docs_clear(&d);
    if (ret_reason)
        *ret_reason = TAKE_PTR(r.reason);
    free(r.reason);
    return e;
}

void cloudinit_docs_clear(struct cloudinit_docs *d)
{
    if (!d)
        return;
    free(d->meta_data);
    free(d->user_data);
    free(d->network_config);
    d->meta_data = d->user_data = d->network_config = NULL;
    d->user_data_len = 0;
}

int cloudinit_seed_write(const char *path, const struct cloudinit_docs *d,
                         mode_t mode)
{
    const struct seed_file files[] = {
        { "meta-data", d->meta_data, strlen(d->meta_data) },
        { "user-data", d->user_data, d->user_data_len },
        { "network-config", d->network_config, strlen(d->network_config) },
    };
    return seed_iso_write(path, "cidata", files, ARRAY_SIZE(files), mode);
}
