/* Health check specs: one reader (with every bound) and one writer for
 * the API body, the desired document and the agent, and the text form
 * fogctl takes. */
#include "api/healthcheck.h"
#include "common/ids.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = { "tcp", "http", "udp", NULL };
static const char *const action_names[] = { "none", "restart", NULL };
static const char *const state_names[] = { "unknown", "healthy", "unhealthy",
                                           NULL };

const char *hc_type_name(enum hc_type t)
{
    return t < HC_TYPE_MAX ? type_names[t] : "?";
}

const char *hc_action_name(enum hc_action a)
{
    return a < HC_ACTION_MAX ? action_names[a] : "?";
}

const char *hc_state_name(enum hc_state s)
{
    return s < HC_STATE_MAX ? state_names[s] : "?";
}

static int name_index(const char *const *names, const char *s)
{
    for (int i = 0; s && names[i]; i++)
        if (streq(names[i], s))
            return i;
    return -1;
}

int hc_state_from_name(const char *s, enum hc_state *ret)
{
    int i = name_index(state_names, s);
    if (i < 0)
        return -EINVAL;
    *ret = (enum hc_state)i;
    return 0;
}

_printf_(3, 4) static int bad(struct jerr *err, const char *field,
                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *why = NULL;
    if (vasprintf(&why, fmt, ap) < 0)
        abort();
    va_end(ap);
    *err = (struct jerr){ xstrdup(field), why };
    return -EINVAL;
}

/* Member k as an int in min..max (def when absent or null). */
static int get_int(const json_t *j, const char *k, int min, int max, int def,
                   int *ret, struct jerr *err)
{
    const json_t *v = json_object_get(j, k);
    if (!v || json_is_null(v)) {
        *ret = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min ||
        json_integer_value(v) > max)
        return bad(err, k, "'%s' must be an integer from %d to %d", k, min,
                   max);
    *ret = (int)json_integer_value(v);
    return 0;
}

static int get_text(const json_t *j, const char *k, size_t max,
                    const char **ret, struct jerr *err)
{
    const json_t *v = json_object_get(j, k);
    *ret = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v))
        return bad(err, k, "'%s' must be a string of at most %zu bytes", k,
                   max);
    *ret = json_string_value(v);
    return 0;
}

/* Hex member k into *ret (1..HC_PAYLOAD_MAX bytes). */
static int get_hex(const json_t *j, const char *k, uint8_t **ret,
                   size_t *ret_len, struct jerr *err)
{
    const char *h;
    int e = get_text(j, k, 2 * HC_PAYLOAD_MAX, &h, err);
    if (e < 0 || !h)
        return e;
    size_t n = strlen(h);
    if (n == 0 || n % 2 || !is_hex(h, n))
        return bad(err, k, "'%s' must be 2 to %d hex digits, an even count",
                   k, 2 * HC_PAYLOAD_MAX);
    *ret = xmalloc(n / 2);
    if (hex_decode(h, *ret, n / 2) < 0) {
        free(*ret);
        *ret = NULL;
        return bad(err, k, "'%s' must be hex digits", k);
    }
    *ret_len = n / 2;
    return 0;
}

static bool path_ok(const char *p)
{
    if (p[0] != '/')
        return false;
    for (const char *c = p; *c; c++)
        if ((unsigned char)*c < 0x21 || (unsigned char)*c > 0x7e)
            return false;
    return true;
}

int hc_spec_from_json(const json_t *j, bool strict, struct hc_spec *ret,
                      struct jerr *err)
{
    static const char *const known[] = {
        "id", "type", "port", "path", "status_min", "status_max",
        "payload_hex", "expect_hex", "interval_s", "timeout_s", "rise",
        "fall", "action", "restart_after", NULL
    };
    if (!json_is_object(j))
        return bad(err, "health_checks", "a health check must be an object");
    if (strict) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v)
            if (name_index(known, k) < 0)
                return bad(err, k, "unknown field '%s'", k);
    }
    struct hc_spec s = { 0 };
    const char *t;
    int e;
    if ((e = get_text(j, "id", 36, &t, err)) < 0)
        return e;
    if (t) {
        if (!uuid_is_valid(t))
            return bad(err, "id", "'id' must be a UUID");
        memcpy(s.id, t, 37);
    }
    if ((e = get_text(j, "type", 16, &t, err)) < 0)
        return e;
    int ti = name_index(type_names, t);
    if (ti < 0)
        return bad(err, "type", "'type' must be tcp, http or udp");
    s.type = (enum hc_type)ti;
    if ((e = get_int(j, "port", 1, 65535, 0, &s.port, err)) < 0)
        return e;
    if (s.port == 0)
        return bad(err, "port", "'port' is required (1 to 65535)");
    if ((e = get_int(j, "interval_s", 1, HC_INTERVAL_MAX_S,
                     HC_INTERVAL_DEFAULT_S, &s.interval_s, err)) < 0 ||
        (e = get_int(j, "timeout_s", 1, HC_TIMEOUT_MAX_S,
                     HC_TIMEOUT_DEFAULT_S < s.interval_s
                         ? HC_TIMEOUT_DEFAULT_S : s.interval_s,
                     &s.timeout_s, err)) < 0 ||
        (e = get_int(j, "rise", 1, HC_THRESHOLD_MAX, HC_RISE_DEFAULT, &s.rise,
                     err)) < 0 ||
        (e = get_int(j, "fall", 1, HC_THRESHOLD_MAX, HC_FALL_DEFAULT, &s.fall,
                     err)) < 0 ||
        (e = get_int(j, "restart_after", 1, HC_RESTART_AFTER_MAX,
                     HC_RESTART_AFTER_DEFAULT, &s.restart_after, err)) < 0)
        return e;
    if (s.timeout_s > s.interval_s)
        return bad(err, "timeout_s", "'timeout_s' must not exceed "
                   "'interval_s' (%d)", s.interval_s);
    if ((e = get_text(j, "action", 16, &t, err)) < 0)
        return e;
    int ai = t ? name_index(action_names, t) : HC_ACTION_NONE;
    if (ai < 0)
        return bad(err, "action", "'action' must be none or restart");
    s.action = (enum hc_action)ai;
    /* Members of another type's check are refused, not ignored: a path on
     * a tcp check is a mistake the caller should hear of. */
    const json_t *path = json_object_get(j, "path");
    const json_t *smin = json_object_get(j, "status_min");
    const json_t *smax = json_object_get(j, "status_max");
    const json_t *pl = json_object_get(j, "payload_hex");
    const json_t *ex = json_object_get(j, "expect_hex");
    if (s.type != HC_HTTP && (path || smin || smax))
        return bad(err, path ? "path" : smin ? "status_min" : "status_max",
                   "'%s' is for http checks only",
                   path ? "path" : smin ? "status_min" : "status_max");
    if (s.type != HC_UDP && (pl || ex))
        return bad(err, pl ? "payload_hex" : "expect_hex",
                   "'%s' is for udp checks only",
                   pl ? "payload_hex" : "expect_hex");
    if (s.type == HC_HTTP) {
        if ((e = get_text(j, "path", HC_PATH_MAX, &t, err)) < 0)
            return e;
        if (t && !path_ok(t))
            return bad(err, "path", "'path' must start with '/' and hold "
                       "printable ASCII without spaces or line breaks");
        if ((e = get_int(j, "status_min", 100, 599, 200, &s.status_min,
                         err)) < 0 ||
            (e = get_int(j, "status_max", 100, 599,
                         smin ? s.status_min : 399, &s.status_max, err)) < 0)
            return e;
        if (s.status_min > s.status_max)
            return bad(err, "status_max", "'status_max' must not be below "
                       "'status_min'");
        s.path = xstrdup(t ? t : "/");
    }
    if (s.type == HC_UDP) {
        if ((e = get_hex(j, "payload_hex", &s.payload, &s.payload_len,
                         err)) < 0)
            goto fail;
        if (!s.payload) {
            e = bad(err, "payload_hex", "'payload_hex' is required for udp "
                    "checks (the request to send)");
            goto fail;
        }
        if ((e = get_hex(j, "expect_hex", &s.expect, &s.expect_len, err)) < 0)
            goto fail;
    }
    *ret = s;
    return 0;
fail:
    hc_spec_clear(&s);
    return e;
}

static json_t *hex_json(const uint8_t *p, size_t n)
{
    _cleanup_free_ char *h = xmalloc(2 * n + 1);
    hex_encode(p, n, h);
    return json_string(h);
}

json_t *hc_spec_to_json(const struct hc_spec *s)
{
    json_t *o = json_object();
    if (*s->id)
        json_object_set_new(o, "id", json_string(s->id));
    json_object_set_new(o, "type", json_string(hc_type_name(s->type)));
    json_object_set_new(o, "port", json_integer(s->port));
    if (s->type == HC_HTTP) {
        json_object_set_new(o, "path", json_string(s->path ? s->path : "/"));
        json_object_set_new(o, "status_min", json_integer(s->status_min));
        json_object_set_new(o, "status_max", json_integer(s->status_max));
    }
    if (s->type == HC_UDP) {
        json_object_set_new(o, "payload_hex",
                            hex_json(s->payload, s->payload_len));
        if (s->expect)
            json_object_set_new(o, "expect_hex",
                                hex_json(s->expect, s->expect_len));
    }
    json_object_set_new(o, "interval_s", json_integer(s->interval_s));
    json_object_set_new(o, "timeout_s", json_integer(s->timeout_s));
    json_object_set_new(o, "rise", json_integer(s->rise));
    json_object_set_new(o, "fall", json_integer(s->fall));
    json_object_set_new(o, "action", json_string(hc_action_name(s->action)));
    json_object_set_new(o, "restart_after", json_integer(s->restart_after));
    return o;
}

void hc_spec_clear(struct hc_spec *s)
{
    free(s->path);
    free(s->payload);
    free(s->expect);
    *s = (struct hc_spec){ 0 };
}

int64_t hc_restart_grace_s(const struct hc_spec *s)
{
    return (int64_t)s->restart_after * s->interval_s;
}

int64_t hc_restart_backoff_s(const struct hc_spec *s, int64_t restarts)
{
    int64_t w = hc_restart_grace_s(s);
    for (int64_t i = 1; i < restarts && w < HC_RESTART_BACKOFF_MAX_S; i++)
        w *= 2;
    return w < HC_RESTART_BACKOFF_MAX_S ? w : HC_RESTART_BACKOFF_MAX_S;
}

/* ---- fogctl's text form ---- */

_printf_(2, 3) static int why(char **ret, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(ret, fmt, ap) < 0)
        abort();
    va_end(ap);
    return -EINVAL;
}

static int text_int(const char *key, const char *v, int64_t max, json_t *o,
                    const char *field, char **ret_why)
{
    int64_t n;
    size_t len = strlen(v);
    /* "10s" reads as 10 for the second-valued keys. */
    _cleanup_free_ char *t = xstrdup(v);
    if (len > 1 && t[len - 1] == 's' && strstr(field, "_s"))
        t[len - 1] = 0;
    if (parse_int64(t, 1, max, &n) < 0)
        return why(ret_why, "%s must be a number from 1 to %lld, not '%s'",
                   key, (long long)max, v);
    json_object_set_new(o, field, json_integer(n));
    return 0;
}

static json_t *text_hex(const char *v)
{
    size_t n = strlen(v);
    _cleanup_free_ char *h = xmalloc(2 * n + 1);
    hex_encode(v, n, h);
    return json_string(h);
}

int hc_spec_parse_text(const char *text, json_t **ret, char **ret_why)
{
    _cleanup_free_ char *s = xstrdup(text);
    char *opts = strchr(s, ',');
    if (opts)
        *opts++ = 0;
    char *type = strchr(s, ':');
    if (!type)
        return why(ret_why, "'%s' must be PORT:TYPE[:PATH][,KEY=VALUE]...",
                   text);
    *type++ = 0;
    char *path = strchr(type, ':');
    if (path)
        *path++ = 0;
    int64_t port;
    if (parse_int64(s, 1, 65535, &port) < 0)
        return why(ret_why, "port '%s' must be a number from 1 to 65535", s);
    if (name_index(type_names, type) < 0)
        return why(ret_why, "check type '%s' must be tcp, http or udp", type);
    if (path && !streq(type, "http"))
        return why(ret_why, "only http checks take a path");
    json_auto_t *o = json_pack("{s:I, s:s}", "port", (json_int_t)port, "type",
                               type);
    if (path)
        json_object_set_new(o, "path", json_string(path));
    for (char *kv = opts, *next; kv && *kv; kv = next) {
        next = strchr(kv, ',');
        if (next)
            *next++ = 0;
        char *v = strchr(kv, '=');
        if (!v)
            return why(ret_why, "'%s' must be KEY=VALUE", kv);
        *v++ = 0;
        int e = 0;
        if (streq(kv, "status")) {
            char *dash = strchr(v, '-');
            if (dash)
                *dash++ = 0;
            int64_t lo, hi;
            if (parse_int64(v, 100, 599, &lo) < 0 ||
                parse_int64(dash ? dash : v, 100, 599, &hi) < 0)
                return why(ret_why, "status must be N or N-M with HTTP "
                           "status codes (100 to 599)");
            json_object_set_new(o, "status_min", json_integer(lo));
            json_object_set_new(o, "status_max", json_integer(hi));
        } else if (streq(kv, "interval"))
            e = text_int(kv, v, HC_INTERVAL_MAX_S, o, "interval_s", ret_why);
        else if (streq(kv, "timeout"))
            e = text_int(kv, v, HC_TIMEOUT_MAX_S, o, "timeout_s", ret_why);
        else if (streq(kv, "rise"))
            e = text_int(kv, v, HC_THRESHOLD_MAX, o, "rise", ret_why);
        else if (streq(kv, "fall"))
            e = text_int(kv, v, HC_THRESHOLD_MAX, o, "fall", ret_why);
        else if (streq(kv, "restart-after"))
            e = text_int(kv, v, HC_RESTART_AFTER_MAX, o, "restart_after",
                         ret_why);
        else if (streq(kv, "action"))
            json_object_set_new(o, "action", json_string(v));
        else if (streq(kv, "send"))
            json_object_set_new(o, "payload_hex", text_hex(v));
        else if (streq(kv, "expect"))
            json_object_set_new(o, "expect_hex", text_hex(v));
        else if (streq(kv, "send-hex"))
            json_object_set_new(o, "payload_hex", json_string(v));
        else if (streq(kv, "expect-hex"))
            json_object_set_new(o, "expect_hex", json_string(v));
        else
            return why(ret_why, "unknown health check option '%s' (status, "
                       "interval, timeout, rise, fall, action, restart-after, "
                       "send, send-hex, expect, expect-hex)", kv);
        if (e < 0)
            return e;
    }
    *ret = TAKE_PTR(o);
    return 0;
}
