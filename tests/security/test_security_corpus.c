/* The hostile-input corpus (tests/security/corpus/, one JSON entry a
 * line) against a real controller: every entry is sent as the caller it
 * names, and must get no 5xx, leave the controller alive, get the status
 * it expects, and store nothing it says must not be stored (checked in
 * the sqlite file). Entries whose defence is not built yet name it in
 * "needs" and are skipped while that name is listed in
 * tests/security/pending (or in $FOG_SECURITY_PENDING, which replaces the
 * file; set it empty to run everything). The format is described in
 * tests/security/README.md. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "common/fs.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define CORPUS_DIR "tests/security/corpus"
#define PENDING_FILE "tests/security/pending"
#define CORPUS_MIN 150

enum who { ANON, ADMIN, TA, TB, PA, PB, NODE, NODE_UNAPPROVED, WHO_MAX };
static const char *const who_name[WHO_MAX] = {
    "anonymous", "admin", "tenant_a", "tenant_b", "provider", "provider_b",
    "node", "unapproved_node"
};

/* The node's WireGuard key: an unapproved node must never be shown it. */
#define NODE_A_WG "Zm9nZmFicmljLXNlY2NvcnB1cy1wZWVyLWtleS0hISE="

static struct tu_ctl ctl;
static char *keys[WHO_MAX];

/* Placeholders for ids made in setup, replaced in paths, bodies, headers
 * and checks. */
enum ph { PH_VMA, PH_VMB, PH_NETA, PH_NETB, PH_PORTA, PH_NODEA, PH_NODEB,
          PH_ACCTA, PH_ACCTB, PH_KEYA, PH_IMGA, PH_SSHA, PH_MAX };
static const char *const ph_name[PH_MAX] = {
    "{vmA}", "{vmB}", "{netA}", "{netB}", "{portA}", "{nodeA}", "{nodeB}",
    "{acctA}", "{acctB}", "{keyA}", "{imgA}", "{sshA}"
};
static char *ph_value[PH_MAX];

/* The API as caller w; MUST fails the test unless the status is want. */
#define API(w, ...) tu_api(&ctl, keys[w], __VA_ARGS__)
#define MUST(w, ...) tu_api_field(&ctl, keys[w], __VA_ARGS__)

static char *expand(const char *tmpl)
{
    char *s = xstrdup(tmpl);
    for (size_t i = 0; i < PH_MAX; i++) {
        char *p;
        while ((p = strstr(s, ph_name[i]))) {
            *p = '\0';
            char *n = xasprintf("%s%s%s", s, ph_value[i],
                                p + strlen(ph_name[i]));
            free(s);
            s = n;
        }
    }
    return s;
}

static char *register_node(enum who provider, const char *name,
                           const char *extra, char **ret_cred)
{
    _cleanup_free_ char *tok =
        MUST(provider, "POST", "/v1/join-tokens", "{}", 201, "token");
    _cleanup_free_ char *reg = xasprintf(
        "{\"token\":\"%s\",\"name\":\"%s\",\"inventory\":{\"vcpus\":8,"
        "\"memory_mib\":8192,\"disk_gib\":100,\"kvm\":false}%s}", tok, name,
        extra);
    long st;
    json_auto_t *j = API(ANON, "POST", "/v1/agent/register", reg, &st);
    assert_int_equal(st, 201);
    *ret_cred = xstrdup(json_str(j, "credential"));
    return xstrdup(json_str(j, "node_id"));
}

static char *make_account(const char *name, const char *role,
                          char **ret_secret)
{
    _cleanup_free_ char *body =
        xasprintf("{\"name\":\"%s\",\"role\":\"%s\"}", name, role);
    char *id = MUST(ADMIN, "POST", "/v1/accounts", body, 201, "id");
    _cleanup_free_ char *kb = xasprintf("{\"account\":\"%s\"}", name);
    *ret_secret = MUST(ADMIN, "POST", "/v1/keys", kb, 201, "secret");
    return id;
}

static int setup(void **state)
{
    /* The corpus compares rows before and after each input, so the
     * reconciler must not change one meanwhile: with a heartbeat of an
     * hour node A never goes stale on a slow machine (at 5 s it did,
     * and its VM turned "unknown" in the middle of an input). */
    static const char *const args[] = { "--heartbeat", "3600", NULL };
    tu_ctl_start(&ctl, args);
    keys[ADMIN] = xstrdup(ctl.admin_key);
    ph_value[PH_ACCTA] = make_account("tenant-a", "tenant", &keys[TA]);
    ph_value[PH_ACCTB] = make_account("tenant-b", "tenant", &keys[TB]);
    free(make_account("prov-a", "provider", &keys[PA]));
    free(make_account("prov-b", "provider", &keys[PB]));
    ph_value[PH_KEYA] = MUST(TA, "POST", "/v1/keys",
                             "{\"description\":\"spare\"}", 201, "id");

    ph_value[PH_NODEA] = register_node(
        PA, "node-a",
        ",\"wg_public_key\":\"" NODE_A_WG "\",\"endpoint\":\"192.0.2.10:51820\"",
        &keys[NODE]);
    ph_value[PH_NODEB] = register_node(PB, "node-b", "",
                                       &keys[NODE_UNAPPROVED]);
    free(MUST(ADMIN, "POST", "/v1/nodes/node-a/approve", NULL, 200, NULL));

    ph_value[PH_VMA] = MUST(TA, "POST", "/v1/vms",
                            "{\"name\":\"web\",\"vcpus\":1,\"memory_mib\":128,"
                            "\"disk_gib\":1,\"image\":\"fog-tiny\","
                            "\"allow_tcg\":true,\"ports\":[{\"proto\":\"tcp\","
                            "\"vm_port\":80}]}", 201, "id");
    ph_value[PH_VMB] = MUST(TB, "POST", "/v1/vms",
                            "{\"name\":\"bweb\",\"vcpus\":1,\"memory_mib\":128,"
                            "\"disk_gib\":1,\"image\":\"fog-tiny\","
                            "\"allow_tcg\":true}", 201, "id");
    long st;
    /* Node A hosts tenant A's VM, so its status may speak of it: it
     * heartbeats until the scheduler has placed it (a generous deadline
     * for a loaded machine). */
    int64_t deadline = now_ms() + 120 * 1000;
    for (;;) {
        json_decref(API(NODE, "POST", "/v1/agent/status", "{\"vms\":[]}", &st));
        json_auto_t *v = API(TA, "GET", "/v1/vms/web", NULL, &st);
        if (json_str(v, "node_id"))
            break;
        if (now_ms() > deadline)
            fail_msg("tenant A's VM was never placed: %s",
                     json_str(v, "state_reason") ?: "(no reason)");
        usleep(200 * 1000);
    }
    ph_value[PH_NETA] = MUST(TA, "GET", "/v1/networks/default", NULL, 200, "id");
    ph_value[PH_NETB] = MUST(TB, "GET", "/v1/networks/default", NULL, 200, "id");
    json_auto_t *ports = API(TA, "GET", "/v1/vms/web/ports", NULL, &st);
    json_t *p0 = json_array_get(json_object_get(ports, "items"), 0);
    assert_non_null(p0);
    ph_value[PH_PORTA] = xstrdup(json_str(p0, "id"));
    ph_value[PH_SSHA] = MUST(TA, "POST", "/v1/ssh-keys",
                             "{\"name\":\"laptop\",\"public_key\":\"ssh-ed25519 "
                             "AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERIT"
                             "FBUWFxgZGhscHR4f sc@test\"}", 201, "id");

    /* An uploaded image of tenant A, for the download route's Range. */
    ph_value[PH_IMGA] = MUST(TA, "POST", "/v1/images", "{\"name\":\"disk\"}",
                             201, "id");
    size_t len;
    _cleanup_free_ uint8_t *img = tu_qcow2(64ULL << 20, &len);
    _cleanup_free_ char *up = xasprintf("%s/v1/images/%s/file", ctl.url,
                                        ph_value[PH_IMGA]);
    st = tu_http("PUT", up, keys[TA], ctl.ca, (const char *)img, len,
                 "application/octet-stream", NULL, NULL);
    assert_true(st >= 200 && st < 300);
    return 0;
}

static int teardown(void **state)
{
    tu_ctl_destroy(&ctl);
    for (int i = 0; i < WHO_MAX; i++)
        free(keys[i]);
    for (int i = 0; i < PH_MAX; i++)
        free(ph_value[i]);
    return 0;
}

/* ---- pending defences ---- */

static char **pending;
static size_t npending;

/* Names from $FOG_SECURITY_PENDING (which replaces the file, so that an
 * empty value runs everything) or the pending file: words separated by
 * spaces, commas or newlines; '#' starts a comment line. */
static void pending_load(void)
{
    const char *env = getenv("FOG_SECURITY_PENDING");
    _cleanup_free_ char *text = NULL;
    size_t len;
    if (env)
        text = xstrdup(env);
    else if (file_read(PENDING_FILE, 1 << 16, &text, &len) < 0)
        return;
    char *save_line = NULL;
    for (char *line = strtok_r(text, "\n", &save_line); line;
         line = strtok_r(NULL, "\n", &save_line)) {
        if (line[0] == '#')
            continue;
        char *save_word = NULL;
        for (char *w = strtok_r(line, " \t,", &save_word); w;
             w = strtok_r(NULL, " \t,", &save_word)) {
            pending = xrealloc(pending, (npending + 1) * sizeof(*pending));
            pending[npending++] = xstrdup(w);
        }
    }
}

static bool is_pending(const char *needs)
{
    for (size_t i = 0; needs && i < npending; i++)
        if (streq(pending[i], needs))
            return true;
    return false;
}

/* ---- reading the store ---- */

static sqlite3 *db;

/* A check's SQL (placeholders expanded) with ?1.. bound to its args, all
 * rows and columns as one text. NULL when the SQL is broken (a corpus bug,
 * which fails the run). */
static char *store_text(const json_t *check)
{
    const char *sql =
        json_is_string(check)  ? json_string_value(check)
        : json_is_array(check) ? json_string_value(json_array_get(check, 0))
                               : json_str(check, "sql");
    json_t *args = json_is_array(check) ? (json_t *)check
                 : json_object_get(check, "args");
    size_t first = json_is_array(check) ? 1 : 0;
    if (!sql)
        return NULL;
    _cleanup_free_ char *q = expand(sql);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "corpus SQL '%s': %s\n", q, sqlite3_errmsg(db));
        return NULL;
    }
    for (size_t i = first; i < json_array_size(args); i++) {
        const char *arg = json_string_value(json_array_get(args, i));
        char *v = expand(arg ? arg : "");
        sqlite3_bind_text(st, (int)(i - first + 1), v, -1, free);
    }
    char *out = xstrdup("");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const char *t = (const char *)sqlite3_column_text(st, c);
            char *n = xasprintf("%s%s|", out, t ? t : "NULL");
            free(out);
            out = n;
        }
        char *n = xasprintf("%s\n", out);
        free(out);
        out = n;
    }
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "corpus SQL '%s': %s\n", q, sqlite3_errmsg(db));
        free(out);
        out = NULL;
    }
    sqlite3_finalize(st);
    return out;
}

static bool check_skipped(const json_t *check)
{
    return json_is_object(check) && is_pending(json_str(check, "needs"));
}

/* ---- one entry ---- */

struct tally {
    int inputs, server_errors, crashes, stored_wrongly, wrong_status,
        leaked, skipped, checks_skipped, corpus_errors;
};

static bool status_matches(const json_t *want, long st)
{
    if (!want)
        return st >= 400 && st < 500;
    if (json_is_integer(want))
        return json_integer_value(want) == st;
    if (json_is_string(want)) {
        const char *s = json_string_value(want);
        /* The server answered (413) and closed before the body was all
         * sent: the client sees no status, and that is fine. */
        if (streq(s, "closed"))
            return st == -1;
        return strlen(s) == 3 && s[1] == 'x' && s[2] == 'x' &&
               st / 100 == s[0] - '0';
    }
    size_t i;
    json_t *w;
    json_array_foreach(want, i, w) if (status_matches(w, st)) return true;
    return false;
}

static enum who who_of(const char *s)
{
    for (int i = 0; s && i < WHO_MAX; i++)
        if (streq(s, who_name[i]))
            return i;
    return WHO_MAX;
}

/* The request body of an entry: "body" (JSON, sent compact), "raw" (the
 * string's bytes, NUL included), "hex" (bytes that are not UTF-8) or "gen"
 * (a list of [text, count] repeated in order, for sizes and depths no
 * file should hold). */
static char *entry_body(const json_t *e, size_t *ret_len)
{
    json_t *b = json_object_get(e, "body"), *raw = json_object_get(e, "raw");
    json_t *gen = json_object_get(e, "gen"), *hex = json_object_get(e, "hex");
    if (b) {
        _cleanup_free_ char *t = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
        char *s = expand(t);
        *ret_len = strlen(s);
        return s;
    }
    if (raw) {
        size_t n = json_string_length(raw);
        char *s = xmalloc(n + 1);
        memcpy(s, json_string_value(raw), n);
        s[n] = '\0';
        *ret_len = n;
        return s;
    }
    if (gen) {
        size_t n = 0, i;
        json_t *part;
        json_array_foreach(gen, i, part)
            n += strlen(json_string_value(json_array_get(part, 0)) ?: "") *
                 (size_t)json_integer_value(json_array_get(part, 1));
        char *s = xmalloc(n + 1), *p = s;
        json_array_foreach(gen, i, part) {
            const char *text = json_string_value(json_array_get(part, 0)) ?: "";
            size_t lt = strlen(text);
            json_int_t count = json_integer_value(json_array_get(part, 1));
            for (json_int_t k = 0; k < count; k++)
                memcpy(p, text, lt), p += lt;
        }
        *p = '\0';
        *ret_len = n;
        return s;
    }
    if (hex) {
        const char *h = json_string_value(hex);
        size_t n = strlen(h) / 2;
        char *s = xmalloc(n + 1);
        for (size_t i = 0; i < n; i++) {
            unsigned v;
            sscanf(h + 2 * i, "%2x", &v);
            s[i] = (char)v;
        }
        s[n] = '\0';
        *ret_len = n;
        return s;
    }
    *ret_len = 0;
    return NULL;
}

static char *entry_headers(const json_t *e)
{
    json_t *hs = json_object_get(e, "headers");
    char *all = NULL;
    size_t i;
    json_t *h;
    json_array_foreach(hs, i, h) {
        const char *text = json_string_value(h);
        _cleanup_free_ char *line = expand(text ? text : "");
        char *n = all ? xasprintf("%s\n%s", all, line) : xstrdup(line);
        free(all);
        all = n;
    }
    return all;
}

/* tu_http, sent again while the answer is 429: the hub's rate limits
 * (per address and per key) answer before any handler runs, so nothing
 * was applied, and on a fast machine the corpus outruns them. Limits
 * themselves are test_guard's business, not the corpus's. */
static long send_patiently(const char *method, const char *url,
                           const char *key, const char *body, size_t len,
                           const char *ctype, const char *hdrs,
                           struct tu_resp *ret)
{
    for (int tries = 0;; tries++) {
        struct tu_resp r;
        long st = tu_http(method, url, key, ctl.ca, body, len, ctype, hdrs,
                          &r);
        if (st != 429 || tries == 120) {
            if (ret)
                *ret = r;
            else
                tu_resp_clear(&r);
            return st;
        }
        tu_resp_clear(&r);
        usleep(500 * 1000);
    }
}

/* Is the controller alive and answering? Restarts it when not, so one
 * crash does not hide what the rest of the corpus would find. */
static bool controller_alive(void)
{
    int status;
    bool exited = waitpid(ctl.pid, &status, WNOHANG) == ctl.pid;
    if (!exited) {
        _cleanup_free_ char *url = xasprintf("%s/healthz", ctl.url);
        if (send_patiently("GET", url, NULL, NULL, 0, NULL, NULL, NULL) == 200)
            return true;
        kill(ctl.pid, SIGKILL);
        waitpid(ctl.pid, &status, 0);
    }
    _cleanup_free_ char *log = NULL;
    size_t len;
    if (file_read(ctl.log, 1 << 20, &log, &len) == 0)
        fprintf(stderr, "controller log tail:\n%s\n",
                len > 4096 ? log + len - 4096 : log);
    ctl.pid = 0;
    tu_ctl_restart(&ctl);
    return false;
}

static void run_entry(const json_t *e, const char *where, struct tally *t)
{
    const char *id = json_str(e, "id");
    const char *method = json_str(e, "method"), *path = json_str(e, "path");
    enum who w = who_of(json_str(e, "as"));
    if (!id || !method || !path || w == WHO_MAX) {
        fprintf(stderr, "%s: entry without id, method, path or a known "
                        "\"as\"\n", where);
        t->corpus_errors++;
        return;
    }
    const char *needs = json_str(e, "needs");
    if (is_pending(needs)) {
        t->skipped++;
        return;
    }
    t->inputs++;

    json_t *unchanged = json_object_get(e, "unchanged");
    size_t nun = json_array_size(unchanged);
    char **before = xcalloc(nun + 1, sizeof(*before));
    for (size_t i = 0; i < nun; i++)
        if (!check_skipped(json_array_get(unchanged, i)) &&
            !(before[i] = store_text(json_array_get(unchanged, i))))
            t->corpus_errors++;

    _cleanup_free_ char *p = expand(path);
    _cleanup_free_ char *url = xasprintf("%s%s", ctl.url, p);
    _cleanup_free_ char *hdrs = entry_headers(e);
    size_t blen;
    _cleanup_free_ char *body = entry_body(e, &blen);
    struct tu_resp r;
    long st = send_patiently(method, url, keys[w], body, blen,
                      json_str(e, "ctype"), hdrs, &r);

    json_t *expect = json_object_get(e, "expect");
    if ((st < 0 && !status_matches(expect, st)) || st >= 500) {
        fprintf(stderr, "5XX %s (%s): %s %s as %s -> %ld %.300s\n", id, where,
                method, path, who_name[w], st, r.body);
        t->server_errors++;
    } else if (!status_matches(expect, st)) {
        _cleanup_free_ char *want = json_dumps(expect, JSON_ENCODE_ANY);
        fprintf(stderr, "STATUS %s (%s): %s %s as %s -> %ld, want %s: %.300s\n",
                id, where, method, path, who_name[w], st,
                want ? want : "\"4xx\"", r.body);
        t->wrong_status++;
    } else if (st >= 400 && json_bool(e, "problem", true)) {
        json_auto_t *j = json_loadb(r.body, r.len, 0, NULL);
        if (!strstr(r.content_type, "application/problem+json") ||
            !json_str(j, "type") || !json_str(j, "detail")) {
            fprintf(stderr, "NOT PROBLEM %s (%s): %ld %s %.200s\n", id, where,
                    st, r.content_type, r.body);
            t->wrong_status++;
        }
    }
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(e, "reply_lacks"), i, s) {
        const char *lack = json_string_value(s);
        _cleanup_free_ char *x = expand(lack ? lack : "");
        if (r.body && strstr(r.body, x)) {
            fprintf(stderr, "LEAK %s (%s): the reply holds '%s'\n", id, where, x);
            t->leaked++;
        }
    }
    tu_resp_clear(&r);

    if (!controller_alive()) {
        fprintf(stderr, "CRASH %s (%s): %s %s as %s\n", id, where, method,
                path, who_name[w]);
        t->crashes++;
    }

    bool wrong = false;
    json_array_foreach(json_object_get(e, "absent"), i, s) {
        if (check_skipped(s)) {
            t->checks_skipped++;
            continue;
        }
        _cleanup_free_ char *got = store_text(s);
        if (!got) {
            t->corpus_errors++;
        } else if (strtoll(got, NULL, 10) != 0) {
            _cleanup_free_ char *c = json_dumps(s, JSON_ENCODE_ANY);
            fprintf(stderr, "STORED %s (%s): %s counts %s", id, where, c, got);
            wrong = true;
        }
    }
    for (i = 0; i < nun; i++) {
        if (!before[i]) {
            t->checks_skipped += check_skipped(json_array_get(unchanged, i));
            continue;
        }
        _cleanup_free_ char *after = store_text(json_array_get(unchanged, i));
        if (after && !streq(after, before[i])) {
            _cleanup_free_ char *c = json_dumps(json_array_get(unchanged, i),
                                                JSON_ENCODE_ANY);
            fprintf(stderr, "CHANGED %s (%s): %s\nbefore: %safter:  %s", id,
                    where, c, before[i], after);
            wrong = true;
        }
        free(before[i]);
    }
    free(before);
    t->stored_wrongly += wrong;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void run_file(const char *path, struct tally *t)
{
    _cleanup_free_ char *text = NULL;
    size_t len;
    assert_int_equal(file_read(path, 16 << 20, &text, &len), 0);
    int lineno = 0;
    for (char *line = text; *line;) {
        size_t n = strcspn(line, "\n");
        bool more = line[n] == '\n';
        line[n] = '\0';
        lineno++;
        _cleanup_free_ char *where = xasprintf("%s:%d", path, lineno);
        const char *q = line + strspn(line, " \t");
        if (*q && *q != '#') {
            json_error_t err;
            json_auto_t *e = json_loads(
                q, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err);
            if (!e || !json_is_object(e)) {
                fprintf(stderr, "%s: not a JSON object: %s\n", where, err.text);
                t->corpus_errors++;
            } else {
                run_entry(e, where, t);
            }
        }
        line += n + more;
    }
}

static void hostile_corpus_gets_no_5xx_no_crash_and_stores_nothing(void **state)
{
    _cleanup_free_ char *dbpath = xasprintf("%s/fog.db", ctl.dir);
    assert_int_equal(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    pending_load();

    struct tally t = { 0 };
    struct dirent **names;
    int n = scandir(CORPUS_DIR, &names, NULL, by_name);
    assert_true(n > 0);
    for (int i = 0; i < n; i++) {
        const char *dot = strrchr(names[i]->d_name, '.');
        if (dot && streq(dot, ".jsonl")) {
            _cleanup_free_ char *path = xasprintf("%s/%s", CORPUS_DIR,
                                                  names[i]->d_name);
            run_file(path, &t);
        }
        free(names[i]);
    }
    free(names);
    sqlite3_close(db);

    printf("security corpus: %d inputs, %d 5xx, %d crashes, %d stored wrongly\n",
           t.inputs, t.server_errors, t.crashes, t.stored_wrongly);
    printf("security corpus: %d wrong status, %d leaks, %d corpus errors; "
           "%d skipped and %d checks skipped, pending:",
           t.wrong_status, t.leaked, t.corpus_errors, t.skipped,
           t.checks_skipped);
    for (size_t i = 0; i < npending; i++)
        printf(" %s", pending[i]);
    printf("\n");
    fflush(stdout);
    for (size_t i = 0; i < npending; i++)
        free(pending[i]);
    free(pending);

    assert_int_equal(t.server_errors, 0);
    assert_int_equal(t.crashes, 0);
    assert_int_equal(t.stored_wrongly, 0);
    assert_int_equal(t.wrong_status, 0);
    assert_int_equal(t.leaked, 0);
    assert_int_equal(t.corpus_errors, 0);
    assert_true(t.inputs >= CORPUS_MIN);
}

int main(void)
{
    tu_sqlite_only("the corpus's store checks are sqlite SQL read from the "
                   "controller's file");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hostile_corpus_gets_no_5xx_no_crash_and_stores_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
