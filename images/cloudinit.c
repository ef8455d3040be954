/* cloud-init NoCloud documents. Every value that reaches YAML is either
 * checked to a strict shape (names, addresses, MACs) or written as a JSON
 * string, which YAML reads as a double-quoted scalar. The tenant's own
 * user-data is never parsed: it is passed on whole, with our SSH keys
 * appended or beside it in a MIME multipart. */
#include "images/cloudinit.h"

#include "common/buf.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "images/seed.h"

#include <arpa/inet.h>
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

static bool ipv4_ok(const char *s)
{
    struct in_addr a;
    return s && inet_pton(AF_INET, s, &a) == 1;
}

static bool mac_ok(const char *s)
{
    if (!s || strlen(s) != 17)
        return false;
    for (int i = 0; i < 17; i++) {
        char c = s[i];
        if (i % 3 == 2) {
            if (c != ':')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
                     (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
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

static void keys_block(struct buf *b, const json_t *keys)
{
    size_t i;
    json_t *k;
    buf_puts(b, "ssh_authorized_keys:\n");
    json_array_foreach(keys, i, k) {
        buf_puts(b, "  - ");
        yaml_quoted(b, json_string_value(k));
        buf_puts(b, "\n");
    }
}

/* True when a line of `doc` starts with `word`. */
static bool has_line_starting(const char *doc, const char *word)
{
    size_t wl = strlen(word);
    for (const char *p = doc; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (strncmp(p, word, wl) == 0)
            return true;
    return false;
}

static bool is_doc_marker_line(const char *doc)
{
    /* beyond the first line: "---" or "..." start another document */
    const char *nl = strchr(doc, '\n');
    return nl && (has_line_starting(nl + 1, "---") ||
                  has_line_starting(nl + 1, "..."));
}

static int render_user_data(struct render *r, const json_t *vm, size_t max,
                            char **ret)
{
    const json_t *ud = json_object_get(vm, "user_data");
    const json_t *keys = json_object_get(vm, "ssh_keys");
    const char *tenant = NULL;
    size_t tlen = 0;
    struct buf b = BUF_INIT;

    if (ud && !json_is_null(ud)) {
        if (!json_is_string(ud))
            return fail(r, "user_data must be a string");
        tenant = json_string_value(ud);
        tlen = json_string_length(ud);
        if (strlen(tenant) != tlen)
            return fail(r, "user_data must not contain NUL bytes");
        if (tlen > max)
            return fail(r, "user_data of %zu bytes is over the limit of %zu "
                           "bytes", tlen, max);
    }
    if (keys && !json_is_null(keys)) {
        size_t i;
        json_t *k;
        if (!json_is_array(keys) || json_array_size(keys) > CLOUDINIT_MAX_KEYS)
            return fail(r, "ssh_keys must be an array of at most %d keys",
                        CLOUDINIT_MAX_KEYS);
        json_array_foreach(keys, i, k)
            if (!json_is_string(k) ||
                !key_ok(json_string_value(k), json_string_length(k)))
                return fail(r, "SSH key %zu is not a single line of text", i);
    }
    bool have_keys = json_array_size(keys) > 0;

    if (tlen == 0) {
        buf_puts(&b, "#cloud-config\n");
        if (have_keys)
            keys_block(&b, keys);
    } else if (!have_keys) {
        buf_append(&b, tenant, tlen);
    } else if (startswith(tenant, "#cloud-config") &&
               !has_line_starting(tenant, "ssh_authorized_keys") &&
               !is_doc_marker_line(tenant)) {
        buf_append(&b, tenant, tlen);
        if (tenant[tlen - 1] != '\n')
            buf_puts(&b, "\n");
        keys_block(&b, keys);
    } else {
        /* Two parts; cloud-init merges ours into the tenant's config by
         * appending to lists rather than replacing them. */
        _cleanup_free_ char *rnd = random_hex(12);
        _cleanup_free_ char *bound = xasprintf("==fog-%s==", rnd);
        if (strstr(tenant, bound)) {
            buf_free(&b);
            return fail(r, "user_data contains the MIME boundary");
        }
        buf_printf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\n"
                       "MIME-Version: 1.0\n\n--%s\n"
                       "Content-Type: text/plain; charset=\"utf-8\"\n"
                       "MIME-Version: 1.0\n\n", bound, bound);
        buf_append(&b, tenant, tlen);
        if (tenant[tlen - 1] != '\n')
            buf_puts(&b, "\n");
        buf_printf(&b, "--%s\n"
                       "Content-Type: text/cloud-config; charset=\"utf-8\"\n"
                       "MIME-Version: 1.0\n"
                       "Merge-Type: list(append)+dict(no_replace,recurse_list)"
                       "+str()\n\n#cloud-config\n", bound);
        keys_block(&b, keys);
        buf_printf(&b, "--%s--\n", bound);
    }
    *ret = buf_steal(&b);
    return 0;
}

static int render_network(struct render *r, const json_t *vm, char **ret)
{
    const json_t *nics = json_object_get(vm, "nics");
    const json_t *dns = json_object_get(vm, "dns");
    struct buf b = BUF_INIT;
    bool dns_done = false;
    size_t i;
    json_t *nic;

    if (nics && !json_is_null(nics) &&
        (!json_is_array(nics) || json_array_size(nics) > CLOUDINIT_MAX_NICS))
        return fail(r, "nics must be an array of at most %d interfaces",
                    CLOUDINIT_MAX_NICS);
    if (dns && !json_is_null(dns)) {
        json_t *d;
        if (!json_is_array(dns) || json_array_size(dns) > CLOUDINIT_MAX_DNS)
            return fail(r, "dns must be an array of at most %d addresses",
                        CLOUDINIT_MAX_DNS);
        json_array_foreach(dns, i, d)
            if (!ipv4_ok(json_string_value(d)))
                return fail(r, "dns entry %zu is not an IPv4 address", i);
    }
    json_array_foreach(nics, i, nic) {
        const char *mac = json_str(nic, "mac");
        const char *addr = json_str(nic, "address");
        const char *gw = json_str(nic, "gateway");
        int64_t prefix = json_int(nic, "prefix", -1);
        int64_t mtu = json_int(nic, "mtu", 0);
        if (!mac_ok(mac))
            return fail(r, "nic %zu: mac is not like 52:54:00:ab:cd:ef", i);
        if (!ipv4_ok(addr))
            return fail(r, "nic %zu: address is not an IPv4 address", i);
        if (prefix < 1 || prefix > 32)
            return fail(r, "nic %zu: prefix must be 1..32", i);
        if (gw && !ipv4_ok(gw))
            return fail(r, "nic %zu: gateway is not an IPv4 address", i);
        if (mtu && (mtu < 576 || mtu > 9000))
            return fail(r, "nic %zu: mtu must be 576..9000", i);
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
        if (json_int(nic, "mtu", 0))
            buf_printf(&b, "    mtu: %lld\n",
                       (long long)json_int(nic, "mtu", 0));
        if (gw && !dns_done) {
            /* One default route and one set of resolvers: the first NIC
             * with a gateway. */
            buf_printf(&b, "    routes:\n      - to: 0.0.0.0/0\n"
                           "        via: %s\n    nameservers:\n"
                           "      addresses:\n", gw);
            if (json_array_size(dns) > 0) {
                size_t k;
                json_t *d;
                json_array_foreach(dns, k, d)
                    buf_printf(&b, "        - %s\n", json_string_value(d));
            } else {
                buf_puts(&b, "        - 1.1.1.1\n        - 9.9.9.9\n");
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
    if (!name_is_valid(name)) {
        e = fail(&r, "VM name is not a valid hostname");
        goto out;
    }
    buf_puts(&m, "instance-id: ");
    char *iid = xasprintf("fog-%s", id);
    yaml_quoted(&m, iid);
    free(iid);
    buf_puts(&m, "\nlocal-hostname: ");
    yaml_quoted(&m, name);
    buf_puts(&m, "\n");
    d.meta_data = buf_steal(&m);

    if ((e = render_user_data(&r, vm, max_user_data, &d.user_data)) < 0 ||
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
}

int cloudinit_seed_write(const char *path, const struct cloudinit_docs *d,
                         mode_t mode)
{
    const struct seed_file files[] = {
        { "meta-data", d->meta_data, strlen(d->meta_data) },
        { "user-data", d->user_data, strlen(d->user_data) },
        { "network-config", d->network_config, strlen(d->network_config) },
    };
    return seed_iso_write(path, "cidata", files, ARRAY_SIZE(files), mode);
}
