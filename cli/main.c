/* fogctl: the virsh-like command line of fogfabric. With a verb it runs
 * it and exits 0 (done), 1 (failed, one line on stderr) or 2 (usage);
 * without one it is an interactive shell with history. */
#include "cli/cli.h"
#include "cli/settings.h"
#include "common/buf.h"

#include <readline/history.h>
#include <readline/readline.h>
#include <stdio.h>

/* Take the global options out of argv: --json wherever it stands (before
 * "--"), so `fogctl list --json` and `fogctl --json list` both work;
 * --url, --key and --ca only before the verb, so verbs keep their own
 * (`image-import NAME --url URL`). */
static int strip_globals(struct cli *c, int *argc, char **argv)
{
    int out = 0;
    bool rest = false, verb = false;
    for (int i = 0; i < *argc; i++) {
        const char *w = argv[i];
        if (rest || streq(w, "--")) {
            rest = true;
            argv[out++] = argv[i];
            continue;
        }
        if (streq(w, "--json")) {
            c->json = true;
            continue;
        }
        if (verb || w[0] != '-') {
            verb = true;
            argv[out++] = argv[i];
            continue;
        }
        static const char *const valued[] = { "--url", "--key", "--ca" };
        bool taken = false;
        for (size_t k = 0; k < ARRAY_SIZE(valued) && !taken; k++) {
            size_t n = strlen(valued[k]);
            const char *val = NULL;
            if (streq(w, valued[k])) {
                if (i + 1 >= *argc) {
                    fprintf(stderr, "fogctl: option '%s' needs a value\n", w);
                    return CLI_USAGE;
                }
                val = argv[++i];
            } else if (strncmp(w, valued[k], n) == 0 && w[n] == '=') {
                val = w + n + 1;
            } else {
                continue;
            }
            char **field = k == 0 ? &c->url : k == 1 ? &c->key : &c->ca;
            free(*field);
            *field = xstrdup(val);
            taken = true;
        }
        if (!taken)
            argv[out++] = argv[i];
    }
    *argc = out;
    argv[out] = NULL;
    return 0;
}

/* Split a shell line into words: blanks separate, '...' and "..." quote,
 * backslash escapes. false on an unterminated quote. */
static bool split_words(const char *line, char ***ret_words, int *ret_n)
{
    size_t cap = 8;
    int n = 0;
    char **words = xcalloc(cap, sizeof(char *));
    const char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            break;
        struct buf w = BUF_INIT;
        char quote = 0;
        for (; *p && (quote || (*p != ' ' && *p != '\t')); p++) {
            if (quote && *p == quote) {
                quote = 0;
            } else if (!quote && (*p == '\'' || *p == '"')) {
                quote = *p;
            } else if (*p == '\\' && p[1] && quote != '\'') {
                buf_append(&w, ++p, 1);
            } else {
                buf_append(&w, p, 1);
            }
        }
        if (quote) {
            buf_free(&w);
            for (int i = 0; i < n; i++)
                free(words[i]);
            free(words);
            return false;
        }
        if ((size_t)n + 2 > cap)
            words = xrealloc(words, (cap *= 2) * sizeof(char *));
        words[n++] = w.data ? buf_steal(&w) : xstrdup("");
    }
    words[n] = NULL;
    *ret_words = words;
    *ret_n = n;
    return true;
}

/* One line from readline (people) or plain stdin (scripts: no echo).
 * Caller frees; NULL at end of input. */
static char *read_line(bool tty)
{
    if (tty)
        return readline("fogctl# ");
    char *line = NULL;
    size_t cap = 0;
    if (getline(&line, &cap, stdin) < 0) {
        free(line);
        return NULL;
    }
    line[strcspn(line, "\n")] = '\0';
    return line;
}

static int shell(struct cli *c)
{
    _cleanup_free_ char *cfg = settings_path();
    _cleanup_free_ char *hist = xasprintf("%s.history", cfg);
    using_history();
    read_history(hist);
    c->interactive = true;
    if (isatty(STDIN_FILENO))
        printf("fogctl shell: 'help' for verbs, 'quit' to leave\n");
    int last = CLI_OK;
    bool tty = isatty(STDIN_FILENO);
    char *line;
    while ((line = read_line(tty)) != NULL) {
        char **words;
        int n;
        if (!split_words(line, &words, &n)) {
            fprintf(stderr, "fogctl: unterminated quote\n");
            free(line);
            last = CLI_USAGE;
            continue;
        }
        if (n > 0 && tty)
            add_history(line);
        free(line);
        bool quit = n > 0 && (streq(words[0], "quit") || streq(words[0], "exit"));
        if (n > 0 && !quit) {
            bool json = c->json;
            /* strip_globals compacts its array: give it a copy of the
             * pointers so every word is still freed below. */
            char **view = xcalloc((size_t)n + 1, sizeof(char *));
            memcpy(view, words, (size_t)n * sizeof(char *));
            if (strip_globals(c, &n, view) == 0)
                last = cli_dispatch(c, n, view);
            else
                last = CLI_USAGE;
            free(view);
            c->json = json;
            fflush(stdout);
        }
        for (int i = 0; words[i]; i++)
            free(words[i]);
        free(words);
        if (quit)
            break;
    }
    if (tty)
        write_history(hist);
    return last;
}

int main(int argc, char **argv)
{
    struct cli c = { 0 };
    int n = argc - 1;
    char **args = argv + 1;
    int r = strip_globals(&c, &n, args);
    if (r == 0 && n > 0 && (streq(args[0], "--version") || streq(args[0], "version"))) {
        printf("fogctl 0.1\n");
    } else if (r == 0) {
        if (settings_load(&c) < 0)
            r = CLI_FAIL;
        else if (n == 0)
            r = shell(&c);
        else
            r = cli_dispatch(&c, n, args);
    }
    api_client_free(c.api);
    free(c.url);
    free(c.key);
    free(c.ca);
    return r;
}
