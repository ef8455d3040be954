/* Declarative configuration tables: defaults, file, flags, help. */
#include "common/config.h"

#include "common/fs.h"

#include <errno.h>
#include <stddef.h>

static const struct config_opt *find(const struct config_opt *opts, size_t n,
                                     const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

static int set_opt(const struct config_opt *o, void *settings,
                   const char *value)
{
    char *base = settings;
    switch (o->type) {
    case CONFIG_STRING: {
        char **p = (char **)(base + o->offset);
        free(*p);
        *p = value ? xstrdup(value) : NULL;
        return 0;
    }
    case CONFIG_INT: {
        int64_t v;
        if (parse_int64(value, o->min, o->max, &v) < 0) {
            fprintf(stderr, "invalid value '%s' for %s: expected an integer "
                            "from %lld to %lld\n", value ? value : "", o->name,
                    (long long)o->min, (long long)o->max);
            return -EINVAL;
        }
        *(int64_t *)(base + o->offset) = v;
        return 0;
    }
    case CONFIG_BOOL: {
        bool v;
        if (streq(value, "true") || streq(value, "yes") || streq(value, "1"))
            v = true;
        else if (streq(value, "false") || streq(value, "no") || streq(value, "0"))
            v = false;
        else {
            fprintf(stderr, "invalid value '%s' for %s: expected true or "
                            "false\n", value ? value : "", o->name);
            return -EINVAL;
        }
        *(bool *)(base + o->offset) = v;
        return 0;
    }
    case CONFIG_TYPE_MAX:
        break;
    }
    return -EINVAL;
}

void config_defaults(const struct config_opt *opts, size_t n, void *settings)
{
    for (size_t i = 0; i < n; i++) {
        if (opts[i].def)
            set_opt(&opts[i], settings, opts[i].def);
        else if (opts[i].type == CONFIG_BOOL)
            *(bool *)((char *)settings + opts[i].offset) = false;
    }
}

int config_set(const struct config_opt *opts, size_t n, void *settings,
               const char *name, const char *value)
{
    const struct config_opt *o = find(opts, n, name, strlen(name));
    if (!o) {
        fprintf(stderr, "unknown option '%s'\n", name);
        return -ENOENT;
    }
    return set_opt(o, settings, value);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t l = strlen(s);
    while (l && (s[l - 1] == ' ' || s[l - 1] == '\t' || s[l - 1] == '\r'))
        s[--l] = '\0';
    return s;
}

int config_load_file(const struct config_opt *opts, size_t n, void *settings,
                     const char *path)
{
    _cleanup_free_ char *text = NULL;
    int r = file_read(path, 1 << 20, &text, NULL);
    if (r < 0) {
        fprintf(stderr, "cannot read config '%s': %s\n", path, strerror(-r));
        return r;
    }
    unsigned lineno = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        char *l = trim(line);
        if (!*l || *l == '#')
            continue;
        char *eq = strchr(l, '=');
        if (!eq) {
            fprintf(stderr, "%s:%u: expected 'name = value'\n", path, lineno);
            return -EINVAL;
        }
        *eq = '\0';
        char *name = trim(l), *value = trim(eq + 1);
        size_t vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            value[vl - 1] = '\0';
            value++;
        }
        if ((r = config_set(opts, n, settings, name, value)) < 0) {
            fprintf(stderr, "%s:%u: rejected\n", path, lineno);
            return r;
        }
    }
    return 0;
}

int config_parse_args(const struct config_opt *opts, size_t n, void *settings,
                      int argc, char **argv, int start, char ***ret_args,
                      int *ret_nargs)
{
    char **args = xcalloc((size_t)argc + 1, sizeof(char *));
    int nargs = 0;
    for (int i = start; i < argc; i++) {
        const char *a = argv[i];
        if (!startswith(a, "--") || streq(a, "--")) {
            if (streq(a, "--")) {
                while (++i < argc)
                    args[nargs++] = argv[i];
                break;
            }
            args[nargs++] = argv[i];
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        if (len == 6 && strncmp(name, "config", 6) == 0) {
            const char *path = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!path || config_load_file(opts, n, settings, path) < 0)
                goto fail;
            continue;
        }
        const struct config_opt *o = find(opts, n, name, len);
        if (!o && startswith(name, "no-")) {
            o = find(opts, n, name + 3, len - 3);
            if (o && o->type == CONFIG_BOOL && !eq) {
                *(bool *)((char *)settings + o->offset) = false;
                continue;
            }
            o = NULL;
        }
        if (!o) {
            fprintf(stderr, "unknown option '--%.*s'\n", (int)len, name);
            goto fail;
        }
        const char *value;
        if (eq)
            value = eq + 1;
        else if (o->type == CONFIG_BOOL)
            value = "true";
        else if (i + 1 < argc)
            value = argv[++i];
        else {
            fprintf(stderr, "option '--%s' needs a value\n", o->name);
            goto fail;
        }
        if (set_opt(o, settings, value) < 0)
            goto fail;
    }
    *ret_args = args;
    *ret_nargs = nargs;
    return 0;
fail:
    free(args);
    return -EINVAL;
}

void config_print_help(const struct config_opt *opts, size_t n, FILE *out)
{
    for (size_t i = 0; i < n; i++) {
        const struct config_opt *o = &opts[i];
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s%s", o->name,
                 o->type == CONFIG_BOOL ? "" :
                 o->type == CONFIG_INT ? " N" : " TEXT");
        fprintf(out, "  %-26s %s", flag, o->help);
        if (o->type == CONFIG_INT)
            fprintf(out, " (%lld..%lld)", (long long)o->min, (long long)o->max);
        if (o->def)
            fprintf(out, " [default: %s]", o->def);
        fputc('\n', out);
    }
}

void config_free(const struct config_opt *opts, size_t n, void *settings)
{
    for (size_t i = 0; i < n; i++) {
        if (opts[i].type != CONFIG_STRING)
            continue;
        char **p = (char **)((char *)settings + opts[i].offset);
        free(*p);
        *p = NULL;
    }
}
