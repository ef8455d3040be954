/* fogctl's shared machinery: verb lookup and dispatch, per-verb flag
 * parsing from the verb's spec string, API calls with one-line errors,
 * and table / key-value output. */
#include "cli/cli.h"
#include "common/buf.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>

static const struct cli_verb *const groups[] = {
    cli_vm_verbs, cli_node_verbs, cli_account_verbs, cli_network_verbs,
    cli_settings_verbs, cli_image_verbs, cli_billing_verbs, cli_market_verbs,
    cli_gpu_verbs, cli_snapshot_verbs, cli_backup_verbs, cli_restore_verbs,
    cli_health_verbs, cli_ingress_verbs,
};

const struct cli_verb *cli_verb_find(const char *name)
{
    for (size_t g = 0; g < ARRAY_SIZE(groups); g++)
        for (const struct cli_verb *v = groups[g]; v->name; v++)
            if (streq(v->name, name))
                return v;
    return NULL;
}

void cli_help(FILE *out, const char *verb)
{
    if (verb) {
        const struct cli_verb *v = cli_verb_find(verb);
        if (!v) {
            fprintf(out, "fogctl: unknown verb '%s'\n", verb);
            return;
        }
        fprintf(out, "usage: fogctl %s %s\n\n  %s\n", v->name, v->usage,
                v->help);
        if (v->virsh)
            fprintf(out, "  (virsh %s)\n", v->virsh);
        return;
    }
    fprintf(out,
            "usage: fogctl [--url URL] [--key KEY] [--ca FILE] [--json] "
            "VERB [ARGS]\n"
            "       fogctl            (interactive shell)\n\n"
            "Settings come from flags, then FOG_URL, FOG_KEY, FOG_CA, then "
            "the file written by 'fogctl login'.\n\nVerbs (virsh name in "
            "brackets):\n");
    for (size_t g = 0; g < ARRAY_SIZE(groups); g++)
        for (const struct cli_verb *v = groups[g]; v->name; v++) {
            if (v->virsh)
                fprintf(out, "  %-16s [virsh %s] %s\n", v->name, v->virsh,
                        v->help);
            else
                fprintf(out, "  %-16s %s\n", v->name, v->help);
        }
    fprintf(out, "  %-16s %s\n", "help",
            "show this list, or 'help VERB' for one verb");
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fogctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_FAIL;
}

int cli_usage(const struct cli_verb *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fogctl: %s: ", v->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (usage: fogctl %s %s)\n", v->name, v->usage);
    va_end(ap);
    return CLI_USAGE;
}

/* Look a flag up in the spec: 0 bool, 1 value, 2 repeatable; -1 none. */
static int flag_kind(const char *spec, const char *name, size_t len)
{
    const char *p = spec ? spec : "";
    while (*p) {
        const char *end = strchrnul(p, ',');
        const char *eq = memchr(p, '=', (size_t)(end - p));
        size_t nlen = (size_t)((eq ? eq : end) - p);
        if (nlen == len && strncmp(p, name, len) == 0)
            return !eq ? 0 : (eq + 1 < end && eq[1] == '*') ? 2 : 1;
        p = *end ? end + 1 : end;
    }
    return -1;
}

int cli_args_parse(const struct cli_verb *v, int argc, char **argv,
                   struct cli_args *ret)
{
    struct cli_args a = { xcalloc((size_t)argc + 1, sizeof(char *)), 0,
                          json_object() };
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *w = argv[i];
        if (only_pos || w[0] != '-' || w[1] != '-' || w[2] == '\0') {
            if (!only_pos && streq(w, "--")) {
                only_pos = true;
                continue;
            }
            a.pos[a.npos++] = argv[i];
            continue;
        }
        const char *name = w + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int kind = flag_kind(v->flags, name, len);
        _cleanup_free_ char *key = xstrndup(name, len);
        if (kind < 0) {
            cli_args_free(&a);
            return cli_usage(v, "unknown option '--%s'", key);
        }
        if (kind == 0) {
            if (eq) {
                cli_args_free(&a);
                return cli_usage(v, "option '--%s' takes no value", key);
            }
            json_object_set_new(a.flags, key, json_true());
            continue;
        }
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val) {
            cli_args_free(&a);
            return cli_usage(v, "option '--%s' needs a value", key);
        }
        if (kind == 2) {
            json_t *list = json_object_get(a.flags, key);
            if (!list) {
                list = json_array();
                json_object_set_new(a.flags, key, list);
            }
            json_array_append_new(list, json_string(val));
        } else {
            if (json_object_get(a.flags, key)) {
                cli_args_free(&a);
                return cli_usage(v, "option '--%s' given twice", key);
            }
            json_t *s = json_string(val);
            if (!s) {
                cli_args_free(&a);
                return cli_usage(v, "option '--%s' is not valid UTF-8", key);
            }
            json_object_set_new(a.flags, key, s);
        }
    }
    if (a.npos < v->min_pos || a.npos > v->max_pos) {
        bool few = a.npos < v->min_pos;
        const char *extra = few ? NULL : a.pos[v->max_pos];
        _cleanup_free_ char *word = extra ? xstrdup(extra) : NULL;
        cli_args_free(&a);
        if (few)
            return cli_usage(v, "missing argument");
        return cli_usage(v, "unexpected argument '%s'", word);
    }
    *ret = a;
    return 0;
}

void cli_args_free(struct cli_args *a)
{
    free(a->pos);
    json_decref(a->flags);
    memset(a, 0, sizeof(*a));
}

const char *cli_flag(const struct cli_args *a, const char *name)
{
    return json_string_value(json_object_get(a->flags, name));
}

bool cli_flag_bool(const struct cli_args *a, const char *name)
{
    return json_is_true(json_object_get(a->flags, name));
}

json_t *cli_flag_list(const struct cli_args *a, const char *name)
{
    json_t *l = json_object_get(a->flags, name);
    if (!l) {
        l = json_array();
        json_object_set_new(a->flags, name, l);
    }
    return l;
}

int cli_dispatch(struct cli *c, int argc, char **argv)
{
    if (argc == 0)
        return CLI_OK;
    if (streq(argv[0], "help") || streq(argv[0], "--help") ||
        streq(argv[0], "-h")) {
        if (argc > 1 && !cli_verb_find(argv[1]))
            return cli_fail("unknown verb '%s' (try 'fogctl help')", argv[1]);
        cli_help(stdout, argc > 1 ? argv[1] : NULL);
        return CLI_OK;
    }
    const struct cli_verb *v = cli_verb_find(argv[0]);
    if (!v) {
        fprintf(stderr, "fogctl: unknown verb '%s' (try 'fogctl help')\n",
                argv[0]);
        return CLI_USAGE;
    }
    struct cli_args a;
    int r = cli_args_parse(v, argc - 1, argv + 1, &a);
    if (r != 0)
        return r;
    r = v->fn(c, &a);
    cli_args_free(&a);
    return r;
}

struct api_client *cli_api(struct cli *c)
{
    if (c->api)
        return c->api;
    if (!c->url) {
        cli_fail("no controller URL: set FOG_URL, pass --url or run "
                 "'fogctl login'");
        return NULL;
    }
    if (!c->key) {
        cli_fail("no API key: set FOG_KEY, pass --key or run 'fogctl login'");
        return NULL;
    }
    c->api = api_client_new(c->url, c->key, c->ca);
    if (!c->api)
        cli_fail("invalid controller URL '%s'", c->url);
    return c->api;
}

int cli_call(struct cli *c, const char *method, const char *path,
             const json_t *body, json_t **ret_json)
{
    struct api_client *api = cli_api(c);
    if (!api)
        return CLI_FAIL;
    struct api_reply rep;
    /* Creations carry an idempotency key so a retried call after a
     * transport error cannot create twice. */
    _cleanup_free_ char *idem = NULL;
    if (streq(method, "POST")) {
        uint8_t raw[16];
        FILE *f = fopen("/dev/urandom", "re");
        if (f && fread(raw, 1, sizeof(raw), f) == sizeof(raw)) {
            idem = xmalloc(33);
            for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(idem + 2 * i, 3, "%02x", raw[i]);
        }
        if (f)
            fclose(f);
    }
    int r = api_request(api, method, path, body, idem, &rep);
    for (int tries = 0; r < 0 && idem && tries < 2; tries++) {
        api_reply_clear(&rep);
        r = api_request(api, method, path, body, idem, &rep);
    }
    if (r < 0 || rep.status < 200 || rep.status > 299) {
        _cleanup_free_ char *msg = api_reply_describe(&rep);
        api_reply_clear(&rep);
        return cli_fail("%s", msg);
    }
    if (ret_json)
        *ret_json = rep.json ? json_incref(rep.json) : NULL;
    api_reply_clear(&rep);
    return 0;
}

int cli_list_all(struct cli *c, const char *path, size_t max,
                 json_t **ret_items)
{
    json_t *all = json_array();
    _cleanup_free_ char *cursor = NULL;
    const char *sep = strchr(path, '?') ? "&" : "?";
    while (json_array_size(all) < max) {
        _cleanup_free_ char *esc = cursor ? cli_escape(cursor) : NULL;
        _cleanup_free_ char *p = esc ? xasprintf("%s%slimit=500&cursor=%s",
                                                 path, sep, esc)
                                     : xasprintf("%s%slimit=500", path, sep);
        json_t *page = NULL;
        if (cli_call(c, "GET", p, NULL, &page) != 0) {
            json_decref(all);
            return CLI_FAIL;
        }
        json_t *items = json_object_get(page, "items");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            if (json_array_size(all) < max)
                json_array_append(all, it);
        }
        const char *next = json_string_value(json_object_get(page, "next_cursor"));
        free(cursor);
        cursor = next && json_array_size(items) ? xstrdup(next) : NULL;
        json_decref(page);
        if (!cursor)
            break;
    }
    *ret_items = all;
    return 0;
}

int cli_list_print(struct cli *c, const char *path, const char *columns,
                   void (*flatten)(json_t *item))
{
    json_t *items;
    if (cli_list_all(c, path, SIZE_MAX, &items) != 0)
        return CLI_FAIL;
    if (c->json) {
        cli_print_json(items);
    } else {
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            if (flatten)
                flatten(it);
        }
        cli_print_table(items, columns);
    }
    json_decref(items);
    return CLI_OK;
}

char *cli_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *out = xstrdup(e ? e : "");
    curl_free(e);
    return out;
}

void cli_print_json(const json_t *v)
{
    _cleanup_free_ char *s = json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS |
                                               JSON_ENCODE_ANY);
    puts(s ? s : "null");
}

char *cli_text(const json_t *v)
{
    if (!v)
        return xstrdup("-"); /* a member the answer left out */
    switch (json_typeof(v)) {
    case JSON_STRING:
        return xstrdup(json_string_value(v));
    case JSON_INTEGER:
        return xasprintf("%lld", (long long)json_integer_value(v));
    case JSON_REAL:
        return xasprintf("%g", json_real_value(v));
    case JSON_TRUE:
        return xstrdup("yes");
    case JSON_FALSE:
        return xstrdup("no");
    case JSON_ARRAY: {
        struct buf b = BUF_INIT;
        size_t i;
        json_t *it;
        json_array_foreach(v, i, it)
        {
            _cleanup_free_ char *t = cli_text(it);
            buf_printf(&b, "%s%s", i ? "," : "", t);
        }
        return b.data ? buf_steal(&b) : xstrdup("-");
    }
    case JSON_OBJECT: {
        char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        return s ? s : xstrdup("-");
    }
    default:
        return xstrdup("-");
    }
}

/* Split "a,b,c" into words (array of owned strings in a json array). */
static json_t *split_columns(const char *columns)
{
    json_t *cols = json_array();
    const char *p = columns;
    while (*p) {
        const char *end = strchrnul(p, ',');
        json_array_append_new(cols, json_stringn(p, (size_t)(end - p)));
        p = *end ? end + 1 : end;
    }
    return cols;
}

/* Terminal-safe copy: control characters from the server are shown as
 * '?', so a hostile name cannot drive the user's terminal. */
static char *printable(const char *s)
{
    char *o = xstrdup(s);
    for (char *p = o; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return o;
}

void cli_print_table(const json_t *items, const char *columns)
{
    json_auto_t *cols = split_columns(columns);
    size_t ncol = json_array_size(cols), nrow = json_array_size(items);
    size_t *width = xcalloc(ncol, sizeof(size_t));
    char **cell = xcalloc((nrow + 1) * ncol, sizeof(char *));
    for (size_t c = 0; c < ncol; c++) {
        const char *name = json_string_value(json_array_get(cols, c));
        cell[c] = xstrdup(name);
        for (char *p = cell[c]; *p; p++)
            *p = *p == '_' ? ' ' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        width[c] = strlen(cell[c]);
        for (size_t r = 0; r < nrow; r++) {
            _cleanup_free_ char *t =
                cli_text(json_object_get(json_array_get(items, r), name));
            char *s = printable(t);
            cell[(r + 1) * ncol + c] = s;
            if (strlen(s) > width[c])
                width[c] = strlen(s);
        }
    }
    for (size_t r = 0; r <= nrow; r++) {
        for (size_t c = 0; c < ncol; c++) {
            const char *s = cell[r * ncol + c];
            if (c + 1 < ncol)
                printf("%-*s  ", (int)width[c], s);
            else
                printf("%s", s);
        }
        putchar('\n');
    }
    for (size_t i = 0; i < (nrow + 1) * ncol; i++)
        free(cell[i]);
    free(cell);
    free(width);
}

void cli_print_fields(const json_t *obj, const char *fields)
{
    json_auto_t *cols = split_columns(fields);
    size_t w = 0, i;
    json_t *it;
    json_array_foreach(cols, i, it)
    {
        if (strlen(json_string_value(it)) > w)
            w = strlen(json_string_value(it));
    }
    json_array_foreach(cols, i, it)
    {
        const char *name = json_string_value(it);
        json_t *v = json_object_get(obj, name);
        if (!v)
            continue;
        _cleanup_free_ char *t = cli_text(v);
        _cleanup_free_ char *s = printable(t);
        _cleanup_free_ char *label = xasprintf("%s:", name);
        printf("%-*s %s\n", (int)w + 1, label, s);
    }
}

/* "[HOST:]VM[/PROTO]" into its parts; false when malformed. */
bool cli_port_spec(const char *spec, int64_t *host, int64_t *vm,
                      const char **proto)
{
    _cleanup_free_ char *s = xstrdup(spec);
    *proto = "tcp";
    *host = 0;
    char *slash = strchr(s, '/');
    if (slash) {
        *slash = '\0';
        if (streq(slash + 1, "udp"))
            *proto = "udp";
        else if (!streq(slash + 1, "tcp"))
            return false;
    }
    char *colon = strchr(s, ':');
    if (colon) {
        *colon = '\0';
        if (parse_int64(s, 1, 65535, host) < 0)
            return false;
    }
    return parse_int64(colon ? colon + 1 : s, 1, 65535, vm) == 0;
}
