/* The benchmark challenge end to end on libvirt's test driver: the hub
 * issues a challenge at approval, the agent runs the worker and answers,
 * the hub verifies it and the score shows in nodeinfo and offers; a score
 * far below the hub's reference halves the reputation. Lying
 * nodes (hand-made posts with a node's credential) get no score and a
 * fault each: invented checkpoints, an answer after the deadline, a
 * second answer, no answer at all; another node's challenge is not
 * theirs to answer. A retried post of the same right answer is not a
 * replay, nor are posts of it at once, and the store is not held while
 * an answer is checked. By default only a hub that serves the probe guest
 * challenges, and one told to challenge without it is refused at start.
 * A verified score caps the vCPUs a node offers and weighs in placement. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "api/agentmsg.h"
#include "common/benchwork.h"
#include "common/ids.h"
#include "common/jsonutil.h"
#include "common/timeutil.h"
#include "tests/testutil.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

static struct tu_ctl ctl;
static struct tu_agent honest;
static char *probe_dir, *fault_file; /* the hub's probe; its test seams */

/* One integer from the hub's store (-1 for NULL or no row); arg, quoted,
 * replaces the query's one '?'. */
static int64_t db_int(const char *sql, const char *arg)
{
    const char *mark = strchr(sql, '?');
    char *quoted = arg ? sqlite3_mprintf("'%q'", arg) : NULL;
    _cleanup_free_ char *full =
        mark && quoted ? xasprintf("%.*s%s%s", (int)(mark - sql), sql, quoted,
                                   mark + 1)
                       : xstrdup(sql);
    sqlite3_free(quoted);
    _cleanup_free_ char *v = tu_sql_text(&ctl, "%s", full);
    return v ? strtoll(v, NULL, 10) : -1;
}

static int64_t faults_of(const char *name)
{
    return db_int("SELECT t.bench_wrong FROM node_trust t JOIN nodes n ON "
                  "n.id = t.node_id WHERE n.name = ?", name);
}

/* The challenge in the node's desired document on hub c, waiting for its
 * issue. */
static bool challenge_on(const struct tu_ctl *c, const char *cred,
                         struct am_bench *ret)
{
    for (int i = 0; i < 100; i++) {
        json_auto_t *doc = tu_api(c, cred, "GET", "/v1/agent/desired", NULL,
                                  NULL);
        struct am_desired d;
        struct jerr je = { 0 };
        if (doc && am_desired_decode(doc, &d, &je) == 0) {
            bool has = d.has_bench;
            if (has)
                *ret = d.bench;
            am_desired_clear(&d);
            if (has)
                return true;
        }
        jerr_clear(&je);
        usleep(100 * 1000);
    }
    return false;
}

static bool challenge_of(const char *cred, struct am_bench *ret)
{
    return challenge_on(&ctl, cred, ret);
}

/* The right answer to c, computed here, with elapsed_ms `ms`. */
static char *right_answer(const struct am_bench *c, int64_t ms)
{
    const struct bench_params *p = &c->params;
    _cleanup_free_ uint8_t *cp = xmalloc((size_t)p->lanes *
                                         (p->segments + 1) * BENCH_HASH_LEN);
    assert_int_equal(bench_run(p, cp), 0);
    return bench_answer_text(p, cp, ms);
}

/* Checkpoints invented past each lane's seed (the seed is public). */
static char *invented_answer(const struct am_bench *c)
{
    const struct bench_params *p = &c->params;
    size_t ncp = (size_t)p->segments + 1;
    _cleanup_free_ uint8_t *cp = xmalloc((size_t)p->lanes * ncp *
                                         BENCH_HASH_LEN);
    assert_int_equal(bench_run(p, cp), 0);
    for (uint32_t l = 0; l < p->lanes; l++)
        random_bytes(cp + ((size_t)l * ncp + 1) * BENCH_HASH_LEN,
                     (ncp - 1) * BENCH_HASH_LEN);
    return bench_answer_text(p, cp, 1);
}

static long post_on(const struct tu_ctl *c, const char *cred, const char *id,
                    const char *body, json_t **ret)
{
    _cleanup_free_ char *path = xasprintf("/v1/agent/benchmarks/%s", id);
    long st = 0;
    json_t *j = tu_api(c, cred, "POST", path, body, &st);
    if (ret)
        *ret = j;
    else
        json_decref(j);
    return st;
}

static long post(const char *cred, const char *id, const char *body,
                 json_t **ret)
{
    return post_on(&ctl, cred, id, body, ret);
}

static void assert_no_score(const char *name)
{
    _cleanup_free_ char *path = xasprintf("/v1/nodes/%s", name);
    long st;
    json_auto_t *n = tu_api(&ctl, ctl.admin_key, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    assert_true(json_is_null(json_object_get(n, "benchmark")));
}

static void honest_agent_is_scored_and_shown_in_offers(void **state)
{
    tu_agent_start(&honest, &ctl, "honest", 4, 4096);
    json_t *bench = NULL;
    json_auto_t *n = NULL;
    for (int i = 0; i < 600 && !json_is_integer(bench); i++) {
        usleep(100 * 1000);
        json_decref(n);
        n = tu_api(&ctl, ctl.admin_key, "GET", "/v1/nodes/honest", NULL, NULL);
        bench = json_object_get(n, "benchmark");
    }
    if (!json_is_integer(bench))
        fail_msg("no benchmark score; agent log %s, controller log %s",
                 honest.log, ctl.log);
    json_int_t score = json_integer_value(bench);
    assert_true(score > 0);
    /* The hub's reference is far above any real vCPU here: the score
     * backs none of the approved capacity, and the reputation says so
     * (at most half, for an always reachable node). */
    json_t *pct = json_object_get(n, "benchmark_pct");
    assert_true(json_is_integer(pct));
    assert_int_equal(json_integer_value(pct), 0);
    bench = pct = NULL; /* n is read again below */
    json_t *rep = NULL;
    for (int i = 0; i < 100; i++) {
        json_decref(n);
        n = tu_api(&ctl, ctl.admin_key, "GET", "/v1/nodes/honest", NULL, NULL);
        rep = json_object_get(n, "reputation");
        if (json_is_integer(rep) && json_object_get(n, "benchmark_pct"))
            break;
        usleep(100 * 1000);
    }
    assert_true(json_is_integer(rep));
    assert_true(json_integer_value(rep) <= 50);
    printf("# honest node: %lld steps/s per vCPU (4 MiB, 4 lanes, timed by "
           "the hub)\n", (long long)score);
    assert_int_equal(db_int("SELECT COUNT(*) FROM node_benchmarks b JOIN "
                            "nodes n ON n.id = b.node_id WHERE n.name = ? AND "
                            "b.state = 'passed'", "honest"), 1);
    assert_true(faults_of("honest") <= 0);
    /* A tenant sees the score in the offers. */
    free(tu_api_field(&ctl, ctl.admin_key, "POST", "/v1/accounts",
                      "{\"name\":\"ten\",\"role\":\"tenant\"}", 201, NULL));
    _cleanup_free_ char *tkey = tu_api_field(&ctl, ctl.admin_key, "POST",
                                             "/v1/keys", "{\"account\":"
                                             "\"ten\"}", 201, "secret");
    long st;
    json_auto_t *offers = tu_api(&ctl, tkey, "GET", "/v1/offers", NULL, &st);
    assert_int_equal(st, 200);
    json_t *o = tu_find(json_object_get(offers, "offers"), "node_name",
                        "honest");
    assert_non_null(o);
    assert_int_equal(json_int(o, "benchmark", -1), score);
    assert_int_equal(json_int(o, "benchmark_pct", -1), 0);
    /* fogctl nodeinfo shows both. */
    int rc = -1;
    _cleanup_free_ char *info = tu_fogctl(&ctl, ctl.admin_key, &rc,
                                          "nodeinfo", "honest", NULL);
    assert_int_equal(rc, 0);
    _cleanup_free_ char *shown = tu_field(info, "benchmark");
    _cleanup_free_ char *want = xasprintf("%lld", (long long)score);
    assert_string_equal(shown, want);
    _cleanup_free_ char *shown_pct = tu_field(info, "benchmark_pct");
    assert_string_equal(shown_pct, "0");
    /* The challenge left its document once answered. */
    assert_int_equal(tu_count_in_file(honest.log, "answer accepted"), 1);
}

static void invented_checkpoints_get_a_fault_and_no_score(void **state)
{
    _cleanup_free_ char *cred = tu_node_register(&ctl, "liar", NULL);
    struct am_bench c;
    assert_true(challenge_of(cred, &c));
    _cleanup_free_ char *lie = invented_answer(&c);
    json_auto_t *j = NULL;
    assert_int_equal(post(cred, c.id, lie, &j), 422);
    assert_string_equal(json_str(j, "type") + strlen(json_str(j, "type")) -
                        strlen("benchmark-wrong"), "benchmark-wrong");
    assert_no_score("liar");
    assert_int_equal(faults_of("liar"), 1000);
    /* The right answer now is a replay of a closed challenge: refused,
     * counted, still no score. */
    _cleanup_free_ char *right = right_answer(&c, 5);
    assert_int_equal(post(cred, c.id, right, NULL), 409);
    assert_no_score("liar");
    assert_int_equal(faults_of("liar"), 2000);
    /* Misshapen and truncated answers, and hostile ids. */
    _cleanup_free_ char *cred2 = tu_node_register(&ctl, "liar2", NULL);
    struct am_bench c2;
    assert_true(challenge_of(cred2, &c2));
    _cleanup_free_ char *r2 = right_answer(&c2, 5);
    r2[strlen(r2) / 2] = '\0';
    assert_int_equal(post(cred2, c2.id, r2, NULL), 400 /* not JSON */);
    assert_int_equal(post(cred2, "..%2f..%2fetc", "{}", NULL), 404);
    assert_int_equal(post(cred2, "not-a-uuid", "{}", NULL), 404);
    assert_int_equal(post(cred2, c2.id, "{\"checkpoints\":[],\"elapsed_ms\":1}",
                          NULL), 422);
    assert_no_score("liar2");
    assert_int_equal(faults_of("liar2"), 1000);
    /* Another node's challenge is not this node's to answer. */
    char *hid = NULL;
    hid = tu_sql_text(&ctl, "SELECT b.id FROM node_benchmarks b JOIN nodes "
                      "n ON n.id = b.node_id WHERE n.name = 'honest'");
    assert_non_null(hid);
    assert_int_equal(post(cred, hid, right, NULL), 404);
    free(hid);
}

static void right_answer_retried_is_not_a_replay(void **state)
{
    _cleanup_free_ char *cred = tu_node_register(&ctl, "exact", NULL);
    struct am_bench c;
    assert_true(challenge_of(cred, &c));
    _cleanup_free_ char *right = right_answer(&c, 5);
    json_auto_t *first = NULL, *again = NULL;
    assert_int_equal(post(cred, c.id, right, &first), 200);
    assert_string_equal(json_str(first, "state"), "passed");
    assert_true(json_int(first, "score", 0) > 0);
    assert_int_equal(post(cred, c.id, right, &again), 200);
    assert_int_equal(json_int(again, "score", -1), json_int(first, "score", 0));
    assert_true(faults_of("exact") <= 0);
    /* Other bytes for the same challenge are a replay. */
    _cleanup_free_ char *other = right_answer(&c, 6);
    assert_int_equal(post(cred, c.id, other, NULL), 409);
    assert_int_equal(faults_of("exact"), 1000);
}

/* For `ms`, take the hub's store's write lock every 50 ms and let it go:
 * the longest wait for it (a failure to get it within 2 s counts 2 s). */
static int64_t longest_write_wait(int ms)
{
    _cleanup_free_ char *path = xasprintf("%s/fog.db", ctl.dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    int64_t longest = 0;
    for (int64_t end = mono_ms() + ms; mono_ms() < end;) {
        int64_t t0 = mono_ms();
        int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        int64_t w = rc == SQLITE_OK ? mono_ms() - t0 : 2000;
        if (rc == SQLITE_OK)
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        if (w > longest)
            longest = w;
        usleep(50 * 1000);
    }
    sqlite3_close(db);
    return longest;
}

struct racer {
    const char *cred, *id, *body;
    long status;
    int64_t score;
};

static void *race_post(void *arg)
{
    struct racer *r = arg;
    json_auto_t *j = NULL;
    r->status = post(r->cred, r->id, r->body, &j);
    r->score = json_int(j, "score", -1);
    return NULL;
}

/* The answer is checked outside the store's transaction and recorded only
 * while its challenge is still open. With the check slowed down (a test
 * seam: a second after it), the store takes other writes meanwhile, and
 * the same right answer posted several times at once passes once: every
 * post gets that one result, with no fault. */
static void same_answer_posted_at_once_passes_once(void **state)
{
    _cleanup_free_ char *cred = tu_node_register(&ctl, "racer", NULL);
    struct am_bench c;
    assert_true(challenge_of(cred, &c));
    _cleanup_free_ char *right = right_answer(&c, 5);
    struct racer r[4];
    pthread_t t[ARRAY_SIZE(r)];
    tu_put_file(probe_dir, "fault", "bench-verify-slow");
    for (size_t i = 0; i < ARRAY_SIZE(r); i++) {
        r[i] = (struct racer){ cred, c.id, right, 0, 0 };
        assert_int_equal(pthread_create(&t[i], NULL, race_post, &r[i]), 0);
    }
    /* While the answers are checked, the store takes writes at once. */
    /* (sqlite's one write lock; PostgreSQL has row locks instead) */
    int64_t took = ctl.database ? 0 : longest_write_wait(2000);
    for (size_t i = 0; i < ARRAY_SIZE(r); i++)
        pthread_join(t[i], NULL);
    tu_put_file(probe_dir, "fault", "none");
    printf("# the longest wait for the store's write lock while 4 answers "
           "were checked: %lld ms\n", (long long)took);
    assert_true(took < 400);
    for (size_t i = 0; i < ARRAY_SIZE(r); i++) {
        assert_int_equal(r[i].status, 200);
        assert_true(r[i].score > 0);
        assert_int_equal(r[i].score, r[0].score);
    }
    assert_int_equal(db_int("SELECT COUNT(*) FROM node_benchmarks b JOIN "
                            "nodes n ON n.id = b.node_id WHERE n.name = ? AND "
                            "b.state = 'passed'", "racer"), 1);
    assert_int_equal(db_int("SELECT t.bench_score FROM node_trust t JOIN "
                            "nodes n ON n.id = t.node_id WHERE n.name = ?",
                            "racer"), r[0].score);
    assert_true(faults_of("racer") <= 0);
}

static void late_and_missing_answers_are_faults(void **state)
{
    _cleanup_free_ char *late = tu_node_register(&ctl, "late", NULL);
    _cleanup_free_ char *mute = tu_node_register(&ctl, "mute", NULL);
    struct am_bench cl, cm;
    assert_true(challenge_of(late, &cl));
    assert_true(challenge_of(mute, &cm));
    assert_int_equal(cl.timeout_s, 10);
    _cleanup_free_ char *right = right_answer(&cl, 5);
    sleep(12);
    /* Late (or, once the hub expired it, closed): refused either way. */
    assert_int_equal(post(late, cl.id, right, NULL), 409);
    assert_no_score("late");
    assert_true(faults_of("late") >= 1000);
    for (int i = 0; i < 50 && faults_of("mute") <= 0; i++)
        usleep(100 * 1000);
    assert_int_equal(faults_of("mute"), 1000);
    assert_int_equal(db_int("SELECT COUNT(*) FROM node_benchmarks WHERE id = "
                            "? AND state = 'expired'", cm.id), 1);
    /* Closed challenges leave the desired document. */
    json_auto_t *doc = tu_api(&ctl, mute, "GET", "/v1/agent/desired", NULL,
                              NULL);
    assert_null(json_object_get(doc, AGENT_BENCH));
}

/* Whether a challenge reaches cred's desired document within `ms`. */
static bool challenged_within(const struct tu_ctl *c, const char *cred,
                              int ms)
{
    for (int t = 0; t <= ms; t += 100) {
        json_auto_t *doc = tu_api(c, cred, "GET", "/v1/agent/desired", NULL,
                                  NULL);
        if (json_object_get(doc, AGENT_BENCH))
            return true;
        usleep(100 * 1000);
    }
    return false;
}

/* By default (--bench-every -1) only a hub that serves the probe guest
 * challenges its nodes: without one, a node on QEMU could not answer and
 * its silence would count against it. */
static void default_challenges_only_with_the_hubs_probe(void **state)
{
    static const char *const plain[] = { "--bench-every", "-1",
                                         "--heartbeat", "1", NULL };
    struct tu_ctl c = { 0 };
    tu_ctl_start(&c, plain);
    _cleanup_free_ char *cred = tu_node_register(&c, "unprobed", NULL);
    assert_false(challenged_within(&c, cred, 3000));
    tu_ctl_destroy(&c);

    _cleanup_free_ char *dir = xasprintf("%s/probe", ctl.dir);
    tu_put_file(dir, AGENT_BENCH_KERNEL, "kernel");
    tu_put_file(dir, AGENT_BENCH_INITRD, "initrd");
    const char *const served[] = { "--bench-every", "-1", "--heartbeat", "1",
                                   "--bench-guest", dir, NULL };
    struct tu_ctl c2 = { 0 };
    tu_ctl_start(&c2, served);
    _cleanup_free_ char *cred2 = tu_node_register(&c2, "probed", NULL);
    assert_true(challenged_within(&c2, cred2, 10000));
    tu_ctl_destroy(&c2);
}

/* A hub told to challenge without a probe guest to give its nodes is
 * refused at start, in one line: each node without one of its own would
 * be faulted for the hub's setting. */
static void bench_every_without_the_probe_is_refused(void **state)
{
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    char port[32];
    snprintf(port, sizeof(port), "127.0.0.1:%d", tu_free_port());
    char *argv[] = { bin, (char *)"serve", (char *)"--data-dir", ctl.dir,
                     (char *)"--listen", port, (char *)"--bench-every",
                     (char *)"60", ctl.database ? (char *)"--database" : NULL,
                     ctl.database, NULL };
    int st = 0;
    tu_run_with_stderr = true;
    _cleanup_free_ char *out = tu_run(argv, &st);
    tu_run_with_stderr = false;
    assert_int_equal(st, 2);
    /* One line, the last (after the log's startup lines). */
    const char *m = strstr(out, "fog-controller: --bench-every 60 needs the "
                                "probe guest (--bench-guest DIR)");
    assert_non_null(m);
    const char *nl = strchr(m, '\n');
    assert_true(nl && nl[1] == '\0');
}

/* An installed hub (<prefix>/bin/fog-controller) finds the packaged
 * probe guest in <prefix>/share/fogfabric/probe with no --bench-guest,
 * and so challenges its nodes by default. */
static void packaged_probe_is_found(void **state)
{
    _cleanup_free_ char *prefix = tu_tempdir("prefix");
    _cleanup_free_ char *bindir = xasprintf("%s/bin", prefix);
    _cleanup_free_ char *probe = xasprintf("%s/share/fogfabric/probe",
                                           prefix);
    _cleanup_free_ char *bin = tu_bin("fog-controller");
    _cleanup_free_ char *copy = xasprintf("%s/fog-controller", bindir);
    _cleanup_free_ char *data = xasprintf("%s/data", prefix);
    _cleanup_free_ char *log = xasprintf("%s/serve.log", prefix);
    tu_put_file(probe, AGENT_BENCH_KERNEL, "kernel");
    tu_put_file(probe, AGENT_BENCH_INITRD, "initrd");
    int st = -1;
    char *md[] = { (char *)"/bin/mkdir", (char *)"-p", bindir, NULL };
    free(tu_run(md, &st));
    assert_int_equal(st, 0);
    char *cp[] = { (char *)"/bin/cp", bin, copy, NULL };
    free(tu_run(cp, &st));
    assert_int_equal(st, 0);
    char *init[] = { copy, (char *)"init", (char *)"--data-dir", data, NULL };
    free(tu_run(init, &st));
    assert_int_equal(st, 0);
    int port = tu_free_port();
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    char *serve[] = { copy, (char *)"serve", (char *)"--data-dir", data,
                      (char *)"--listen", listen, (char *)"--bench-every",
                      (char *)"60", NULL };
    pid_t pid = tu_spawn(serve, log);
    assert_true(pid > 0);
    int up = tu_wait_port(port, 10000);
    tu_kill(pid, SIGTERM);
    if (up < 0)
        fail_msg("the installed hub did not start; log %s", log);
    _cleanup_free_ char *want = xasprintf("probe guest from %s", probe);
    assert_int_equal(tu_count_in_file(log, want), 1);
    tu_rmrf(prefix);
}

/* The vCPUs a node offers are capped by what its verified benchmark
 * backs (score x lanes / --bench-ref), the offer shows claimed, verified
 * and offered vCPUs, and placement weighs benchmark_pct. The nodes here
 * are hand-made: "slow" claims 8 vCPUs and answers right but late enough
 * to score like 2; "fast" answers at once. The weights favour the faster
 * of the two equal offers; the slow one receives at most 2 vCPUs of VMs. */
static void verified_benchmark_caps_the_offer_and_weighs(void **state)
{
    /* 4 MiB and one round: 131072 steps a lane. With the reference at
     * 52428 steps a second per vCPU, an answer 7 s after the issue on 8
     * lanes backs floor(131072 / 7 x 8 / 52428) = 2 vCPUs (anything
     * from 6.7 s to 10 s does), one within 2.5 s all 8. */
    struct bench_params p = { .memory_mib = 4, .rounds = 1, .lanes = 8,
                              .segments = BENCH_SEGMENTS_MAX };
    assert_int_equal(bench_steps(&p), 131072);
    _cleanup_free_ char *dir = xasprintf("%s/probe-cap", ctl.dir);
    tu_put_file(dir, AGENT_BENCH_KERNEL, "kernel");
    tu_put_file(dir, AGENT_BENCH_INITRD, "initrd");
    const char *const args[] = {
        "--bench-every", "3600", "--bench-memory", "4", "--bench-timeout",
        "60", "--heartbeat", "30", "--bench-ref", "52428", "--bench-guest",
        dir, "--weight-benchmark", "10", NULL };
    struct tu_ctl c = { 0 };
    tu_ctl_start(&c, args);
    _cleanup_free_ char *slow = tu_market_node(&c, "slow", NULL, "0.01");
    _cleanup_free_ char *fast = tu_market_node(&c, "fast", NULL, "0.01");
    struct am_bench cs, cf;
    assert_true(challenge_on(&c, slow, &cs));
    assert_true(challenge_on(&c, fast, &cf));
    /* One lane per claimed vCPU. */
    assert_int_equal(cs.params.lanes, 8);
    _cleanup_free_ char *af = right_answer(&cf, 5);
    assert_int_equal(post_on(&c, fast, cf.id, af, NULL), 200);
    _cleanup_free_ char *as = right_answer(&cs, 7000);
    _cleanup_free_ char *issued = tu_sql_text(
        &c, "SELECT issued_ms FROM node_benchmarks WHERE id = '%s'", cs.id);
    assert_non_null(issued);
    int64_t wait = strtoll(issued, NULL, 10) + 7000 - now_ms();
    if (wait > 0)
        usleep((useconds_t)wait * 1000);
    json_auto_t *res = NULL;
    assert_int_equal(post_on(&c, slow, cs.id, as, &res), 200);
    json_auto_t *ns = tu_api_want(&c, c.admin_key, "GET", "/v1/nodes/slow",
                                  NULL, 200);
    if (json_int(ns, "benchmark_vcpus", -1) != 2)
        fail_msg("slow node verified %lld vCPUs (score %lld), not 2",
                 (long long)json_int(ns, "benchmark_vcpus", -1),
                 (long long)json_int(ns, "benchmark", -1));
    json_auto_t *nf = tu_api_want(&c, c.admin_key, "GET", "/v1/nodes/fast",
                                  NULL, 200);
    /* The fast one backs more (all 8 unless this machine was slow to
     * answer) and more of a vCPU each. */
    int64_t fast_vcpus = json_int(nf, "benchmark_vcpus", 0);
    assert_true(fast_vcpus > 2);
    assert_true(json_int(nf, "benchmark_pct", 0) >
                json_int(ns, "benchmark_pct", 100));

    /* The offers show the cap. */
    _cleanup_free_ char *tkey = tu_account(&c, "capten", "tenant");
    json_auto_t *offers = tu_api_want(&c, tkey, "GET", "/v1/offers", NULL,
                                      200);
    json_t *os = tu_find(json_object_get(offers, "offers"), "node_name",
                         "slow");
    json_t *of = tu_find(json_object_get(offers, "offers"), "node_name",
                         "fast");
    assert_non_null(os);
    assert_non_null(of);
    json_t *vs = json_object_get(os, "vcpus");
    assert_int_equal(json_int(vs, "claimed", 0), 8);
    assert_int_equal(json_int(vs, "verified", 0), 2);
    assert_int_equal(json_int(vs, "offered", 0), 2);
    assert_int_equal(json_int(json_object_get(os, "free"), "vcpus", 0), 2);
    json_t *vf = json_object_get(of, "vcpus");
    assert_int_equal(json_int(vf, "claimed", 0), 8);
    assert_int_equal(json_int(vf, "verified", 0), fast_vcpus);
    assert_int_equal(json_int(vf, "offered", 0),
                     fast_vcpus < 8 ? fast_vcpus : 8);
    int rc = -1;
    _cleanup_free_ char *table = tu_fogctl(&c, tkey, &rc, "offers", NULL);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(table, "8/2/2"));
    _cleanup_free_ char *info = tu_fogctl(&c, c.admin_key, &rc, "nodeinfo",
                                          "slow", NULL);
    _cleanup_free_ char *shown = tu_field(info, "benchmark_vcpus");
    assert_string_equal(shown, "2");

    /* Equal prices, the older node first: the faster one is chosen. */
    json_auto_t *v0 = tu_vm_post(&c, tkey, "cap-0", 1, NULL, 201);
    assert_string_equal(json_str(v0, "node_name"), "fast");
    /* Without it, the slow node takes 2 vCPUs of VMs and no more. */
    free(tu_api_field(&c, c.admin_key, "POST", "/v1/nodes/fast/drain", NULL,
                      200, NULL));
    json_auto_t *v1 = tu_vm_post(&c, tkey, "cap-1", 1, NULL, 201);
    assert_string_equal(json_str(v1, "node_name"), "slow");
    json_auto_t *v3 = tu_vm_post(&c, tkey, "cap-3", 2, NULL, 201);
    assert_null(json_str(v3, "node_id"));
    assert_int_equal(json_int(json_object_get(json_object_get(v3,
                     "placement"), "filtered"), "benchmark", 0), 1);
    json_auto_t *v2 = tu_vm_post(&c, tkey, "cap-2", 1, NULL, 201);
    assert_string_equal(json_str(v2, "node_name"), "slow");
    json_auto_t *v4 = tu_vm_post(&c, tkey, "cap-4", 1, NULL, 201);
    assert_null(json_str(v4, "node_id"));
    assert_non_null(strstr(json_str(v4, "state_reason"),
                           "benchmark removed 1"));
    _cleanup_free_ char *used = tu_sql_text(
        &c, "SELECT SUM(v.vcpus) FROM vms v JOIN nodes n ON n.id = v.node_id "
        "WHERE n.name = 'slow' AND v.deleted_at IS NULL");
    assert_string_equal(used, "2");
    tu_ctl_destroy(&c);
}

static const char *const serve_args[] = {
    "--bench-every", "3600", "--bench-memory", "4", "--bench-timeout", "10",
    "--heartbeat", "1", "--bench-ref", "1000000000", "--threads", "16",
    "--bench-guest", NULL, NULL };

static int setup(void **state)
{
    /* The hub serves a probe (placeholder files: the agent here runs on
     * the test driver and works in-process). */
    static const char *args[ARRAY_SIZE(serve_args)];
    memcpy(args, serve_args, sizeof(args));
    probe_dir = tu_tempdir("probe");
    /* Test seams, armed by what a test writes there (none yet). */
    fault_file = xasprintf("%s/fault", probe_dir);
    setenv("FOG_TEST_FAULT", fault_file, 1);
    const char *dir = probe_dir;
    tu_put_file(dir, AGENT_BENCH_KERNEL, "kernel");
    tu_put_file(dir, AGENT_BENCH_INITRD, "initrd");
    args[ARRAY_SIZE(serve_args) - 2] = dir;
    tu_ctl_start(&ctl, args);
    return 0;
}

static int teardown(void **state)
{
    tu_agent_destroy(&honest);
    tu_ctl_destroy(&ctl);
    tu_rmrf(probe_dir);
    free(probe_dir);
    free(fault_file);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(honest_agent_is_scored_and_shown_in_offers),
        cmocka_unit_test(invented_checkpoints_get_a_fault_and_no_score),
        cmocka_unit_test(right_answer_retried_is_not_a_replay),
        cmocka_unit_test(same_answer_posted_at_once_passes_once),
        cmocka_unit_test(late_and_missing_answers_are_faults),
        cmocka_unit_test(default_challenges_only_with_the_hubs_probe),
        cmocka_unit_test(bench_every_without_the_probe_is_refused),
        cmocka_unit_test(packaged_probe_is_found),
        cmocka_unit_test(verified_benchmark_caps_the_offer_and_weighs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
