/* Where fogctl finds the controller and its key: flags, then FOG_URL,
 * FOG_KEY and FOG_CA, then the file `fogctl login` writes (mode 0600,
 * under $FOG_CONFIG or ~/.config/fogctl/). */
#include "cli/cli.h"
#include "cli/settings.h"
#include "common/buf.h"
#include "common/fs.h"

#include <errno.h>
#include <libgen.h>

char *settings_path(void)
{
    const char *p = getenv("FOG_CONFIG");
    if (p && *p)
        return xstrdup(p);
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && *xdg)
        return xasprintf("%s/fogctl/config", xdg);
    const char *home = getenv("HOME");
    return xasprintf("%s/.config/fogctl/config", home && *home ? home : ".");
}

static void set_if_unset(char **field, const char *value)
{
    if (!*field && value && *value)
        *field = xstrdup(value);
}

int settings_load(struct cli *c)
{
    set_if_unset(&c->url, getenv("FOG_URL"));
    set_if_unset(&c->key, getenv("FOG_KEY"));
    set_if_unset(&c->ca, getenv("FOG_CA"));
    _cleanup_free_ char *path = settings_path();
    _cleanup_free_ char *text = NULL;
    size_t len;
    int e = file_read(path, 1 << 16, &text, &len);
    if (e == -ENOENT)
        return 0;
    if (e < 0) {
        fprintf(stderr, "fogctl: cannot read '%s': %s\n", path, strerror(-e));
        return e;
    }
    int lineno = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        while (*line == ' ' || *line == '\t')
            line++;
        if (*line == '#' || *line == '\0')
            continue;
        char *eq = strchr(line, '=');
        if (!eq) {
            fprintf(stderr, "fogctl: %s:%d: expected 'name = value'\n", path,
                    lineno);
            return -EINVAL;
        }
        char *end = eq;
        while (end > line && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        *end = '\0';
        char *val = eq + 1;
        while (*val == ' ' || *val == '\t')
            val++;
        if (streq(line, "url"))
            set_if_unset(&c->url, val);
        else if (streq(line, "key"))
            set_if_unset(&c->key, val);
        else if (streq(line, "ca"))
            set_if_unset(&c->ca, val);
        else {
            fprintf(stderr, "fogctl: %s:%d: unknown setting '%s'\n", path,
                    lineno, line);
            return -EINVAL;
        }
    }
    return 0;
}

/* Check the settings against the server, copy the CA beside the file and
 * write url, key and ca there. */
static int login(struct cli *c, struct cli_args *a)
{
    const char *url = cli_flag(a, "url"), *key = cli_flag(a, "key"),
               *ca = cli_flag(a, "ca");
    if (url) {
        free(c->url);
        c->url = xstrdup(url);
    }
    if (key) {
        free(c->key);
        c->key = xstrdup(key);
    }
    if (ca) {
        free(c->ca);
        c->ca = xstrdup(ca);
    }
    api_client_free(c->api);
    c->api = NULL;
    json_auto_t *page = NULL;
    if (cli_call(c, "GET", "/v1/keys?limit=1", NULL, &page) != 0)
        return CLI_FAIL;
    _cleanup_free_ char *path = settings_path();
    _cleanup_free_ char *dir_copy = xstrdup(path);
    const char *dir = dirname(dir_copy);
    int e = mkdir_p(dir, 0700);
    if (e < 0)
        return cli_fail("cannot create '%s': %s", dir, strerror(-e));
    _cleanup_free_ char *ca_copy = NULL;
    if (c->ca) {
        _cleanup_free_ char *pem = NULL;
        size_t len;
        e = file_read(c->ca, 1 << 20, &pem, &len);
        if (e < 0)
            return cli_fail("cannot read CA '%s': %s", c->ca, strerror(-e));
        ca_copy = xasprintf("%s/ca.pem", dir);
        e = file_write_atomic(ca_copy, pem, len, 0644);
        if (e < 0)
            return cli_fail("cannot write '%s': %s", ca_copy, strerror(-e));
    }
    struct buf b = BUF_INIT;
    buf_printf(&b, "# written by fogctl login\nurl = %s\nkey = %s\n", c->url,
               c->key);
    if (ca_copy)
        buf_printf(&b, "ca = %s\n", ca_copy);
    e = file_write_atomic(path, b.data, b.len, 0600);
    explicit_bzero(b.data, b.len);
    buf_free(&b);
    if (e < 0)
        return cli_fail("cannot write '%s': %s", path, strerror(-e));
    if (c->json) {
        json_auto_t *o = json_pack("{s:s, s:s}", "config", path, "url", c->url);
        cli_print_json(o);
    } else
        printf("logged in to %s (settings in %s)\n", c->url, path);
    return CLI_OK;
}

const struct cli_verb cli_settings_verbs[] = {
    { "login", login, 0, 0, "url=,key=,ca=",
      "[--url URL] [--key KEY] [--ca FILE]",
      "check and save the controller URL, key and CA for later calls" },
    { NULL, NULL, 0, 0, NULL, NULL, NULL },
};
