/* The benchmark worker thread (benchjob.h). */
#include "nodeagent/benchjob.h"

#include "api/agentmsg.h"
#include "api/client.h"
#include "common/benchwork.h"
#include "common/fs.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "nodeagent/vmxml.h"

#include <errno.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* Memory the probe's kernel and initramfs need beside the worker's. */
#define PROBE_BASE_MIB 96

struct benchjob {
    char *uri, *guest_dir, *data_dir;
    char *controller, *credential, *ca_path, *key_pin;
    bool test_driver, kvm;
    int64_t host_vcpus;
    struct fetch_cache *cache;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_bool stop;
    bool has_next;
    struct am_bench next;   /* the challenge to run */
    char done[37];          /* the last one run (never run twice) */
};

char *benchjob_answer_in_log(const char *log, size_t n)
{
    size_t mark = strlen(BENCH_ANSWER_MARK);
    const char *p = memmem(log, n, BENCH_ANSWER_MARK, mark);
    if (!p)
        return NULL;
    p += mark;
    const char *end = memchr(p, '\n', n - (size_t)(p - log));
    if (!end)
        return NULL; /* cut short: not the whole answer */
    size_t len = (size_t)(end - p);
    if (len && p[len - 1] == '\r')
        len--;
    if (len == 0 || len > AGENT_BENCH_ANSWER_MAX)
        return NULL;
    return xstrndup(p, len);
}

/* The test-driver path: the worker in this process. */
static char *run_here(const struct am_bench *c)
{
    const struct bench_params *p = &c->params;
    _cleanup_free_ uint8_t *cp = xmalloc((size_t)p->lanes *
                                         (p->segments + 1) * BENCH_HASH_LEN);
    int64_t t0 = mono_ms();
    int e = bench_run(p, cp);
    if (e < 0) {
        log_warn("benchmark %s: cannot run: %s", c->id, strerror(-e));
        return NULL;
    }
    return bench_answer_text(p, cp, mono_ms() - t0);
}

/* The answer in the probe's console log so far, or NULL. Bounded: the
 * answer and the boot messages before it. */
static char *answer_from(const char *log)
{
    _cleanup_free_ char *text = NULL;
    size_t n = 0;
    if (file_read(log, 4 * AGENT_BENCH_ANSWER_MAX, &text, &n) < 0)
        return NULL;
    return benchjob_answer_in_log(text, n);
}

/* The hub's probe file `name`, fetched into the cache unless there by its
 * digest already: 0 and its path, or -errno (logged). */
static int probe_fetch(struct benchjob *b, const char *id, const char *name,
                       const struct am_probe_file *f, char **ret_path)
{
    if (!b->cache) {
        log_warn("benchmark %s: no cache to fetch the hub's probe guest to",
                 id);
        return -ENOENT;
    }
    _cleanup_free_ char *url = xasprintf("%s" AGENT_BENCH_PROBE_PATH "/%s",
                                         b->controller, name);
    _cleanup_free_ char *why = NULL;
    int e = fetch_get(b->cache, url, f->sha256, (uint64_t)f->size, ret_path,
                      &why);
    if (e < 0)
        log_warn("benchmark %s: cannot fetch the probe's %s: %s", id, name,
                 why ? why : strerror(-e));
    return e;
}

/* Boot the probe guest, wait for it to power off (or the deadline), and
 * read its answer from the console log. */
static char *run_probe(struct benchjob *b, const struct am_bench *c,
                       int64_t deadline_ms)
{
    const struct bench_params *p = &c->params;
    _cleanup_free_ char *name = xasprintf("fogbench-%s", c->id);
    _cleanup_free_ char *condir = xasprintf("%s/console", b->data_dir);
    _cleanup_free_ char *log = xasprintf("%s/%s.log", condir, name);
    _cleanup_free_ char *kernel = NULL, *initrd = NULL;
    if (c->has_probe) {
        if (probe_fetch(b, c->id, AGENT_BENCH_KERNEL, &c->kernel, &kernel) < 0 ||
            probe_fetch(b, c->id, AGENT_BENCH_INITRD, &c->initrd, &initrd) < 0)
            return NULL;
    } else {
        kernel = xasprintf("%s/" AGENT_BENCH_KERNEL, b->guest_dir);
        initrd = xasprintf("%s/" AGENT_BENCH_INITRD, b->guest_dir);
    }
    char nonce[2 * BENCH_NONCE_LEN + 1];
    hex_encode(p->nonce, sizeof(p->nonce), nonce);
    _cleanup_free_ char *cmdline = xasprintf(
        "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off "
        "fog.bench=%u,%u,%u,%u,%s", p->memory_mib, p->rounds, p->lanes,
        p->segments, nonce);
    int e = mkdir_p(condir, 0711);
    if (e < 0) {
        log_warn("benchmark %s: cannot create '%s': %s", c->id, condir,
                 strerror(-e));
        return NULL;
    }
    if (access(kernel, R_OK) < 0 || access(initrd, R_OK) < 0) {
        log_warn("benchmark %s: no probe guest in '%s' (vmlinuz, initrd.gz: "
                 "images/probe/build.sh makes them)", c->id, b->guest_dir);
        return NULL;
    }
    unlink(log);
    struct vmxml_probe px = {
        .name = name, .kvm = b->kvm,
        .vcpus = p->lanes < b->host_vcpus ? p->lanes : b->host_vcpus,
        .memory_mib = p->memory_mib + PROBE_BASE_MIB, .kernel = kernel,
        .initrd = initrd, .cmdline = cmdline, .console_log = log };
    _cleanup_free_ char *xml = NULL;
    if (vmxml_probe_build(&px, &xml) < 0) {
        log_warn("benchmark %s: cannot describe the probe guest (%s)", c->id,
                 b->guest_dir);
        return NULL;
    }
    virConnectPtr conn = virConnectOpen(b->uri);
    if (!conn) {
        log_warn("benchmark %s: cannot connect to %s", c->id, b->uri);
        return NULL;
    }
    char *answer = NULL;
    int64_t t0 = mono_ms();
    virDomainPtr d = virDomainCreateXML(conn, xml, VIR_DOMAIN_NONE);
    if (!d) {
        log_warn("benchmark %s: cannot boot the probe guest: %s", c->id,
                 virGetLastErrorMessage());
        goto out_close;
    }
    log_info("benchmark %s: probe guest booted (%lld vCPUs, %lld MiB)",
             c->id, (long long)px.vcpus, (long long)px.memory_mib);
    /* Until it powers off, or its answer is complete on the console (a
     * guest that fails to power off still answered), or the deadline. */
    bool active = true;
    while (!atomic_load(&b->stop) && mono_ms() < deadline_ms && !answer &&
           (active = virDomainIsActive(d) == 1)) {
        usleep(250 * 1000);
        answer = answer_from(log);
    }
    if (!answer)
        answer = answer_from(log);
    if (virDomainIsActive(d) == 1) {
        if (!answer)
            log_warn("benchmark %s: probe guest still running at the "
                     "deadline: destroyed", c->id);
        virDomainDestroy(d);
    }
    if (answer)
        log_info("benchmark %s: probe guest done in %lld ms", c->id,
                 (long long)(mono_ms() - t0));
    else
        log_warn("benchmark %s: no answer on the probe's console%s", c->id,
                 active ? "" : " (it powered off)");
    virDomainFree(d);
out_close:
    virConnectClose(conn);
    return answer;
}

/* Post the answer; a few tries while the connection fails. */
static void post(struct benchjob *b, const char *id, const char *answer)
{
    struct api_client *c = api_client_new(b->controller, b->credential,
                                          b->ca_path);
    api_client_set_key_pin(c, b->key_pin);
    api_client_set_timeout(c, 30);
    _cleanup_free_ char *path = xasprintf(AGENT_BENCH_PATH "/%s", id);
    for (int i = 0; i < 5 && !atomic_load(&b->stop); i++) {
        struct api_reply r = { 0 };
        int e = api_request_raw(c, "POST", path, answer, strlen(answer),
                                "application/json", &r);
        if (e == 0 && r.status > 0 && r.status < 500) {
            if (r.status == 200)
                log_info("benchmark %s: answer accepted: %lld steps/s per "
                         "vCPU", id, (long long)json_int(r.json, "score", 0));
            else
                log_warn("benchmark %s: answer refused (%ld)", id, r.status);
            api_reply_clear(&r);
            break;
        }
        api_reply_clear(&r);
        sleep(2);
    }
    api_client_free(c);
}

static void *worker(void *arg)
{
    struct benchjob *b = arg;
    pthread_mutex_lock(&b->lock);
    while (!atomic_load(&b->stop)) {
        if (!b->has_next) {
            pthread_cond_wait(&b->cond, &b->lock);
            continue;
        }
        struct am_bench c = b->next;
        b->has_next = false;
        memcpy(b->done, c.id, sizeof(b->done));
        pthread_mutex_unlock(&b->lock);
        /* The hub's deadline counts from the issue, a little earlier:
         * a guest still running at ours would be late there anyway. */
        int64_t deadline = mono_ms() + c.timeout_s * 1000;
        log_info("benchmark %s: %u MiB, %u rounds, %u lanes", c.id,
                 c.params.memory_mib, c.params.rounds, c.params.lanes);
        _cleanup_free_ char *answer = b->test_driver ? run_here(&c) :
                                      run_probe(b, &c, deadline);
        if (answer && !atomic_load(&b->stop))
            post(b, c.id, answer);
        pthread_mutex_lock(&b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

struct benchjob *benchjob_new(const struct benchjob_opts *o)
{
    struct benchjob *b = xcalloc(1, sizeof(*b));
    b->uri = xstrdup(o->uri);
    b->guest_dir = xstrdup(o->guest_dir ? o->guest_dir : "");
    b->data_dir = xstrdup(o->data_dir);
    b->controller = xstrdup(o->controller);
    b->credential = xstrdup(o->credential);
    b->ca_path = o->ca_path ? xstrdup(o->ca_path) : NULL;
    b->key_pin = o->key_pin ? xstrdup(o->key_pin) : NULL;
    b->test_driver = o->test_driver;
    b->kvm = o->kvm;
    b->cache = o->cache;
    b->host_vcpus = o->host_vcpus > 0 ? o->host_vcpus : 1;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    if (pthread_create(&b->thread, NULL, worker, b)) {
        log_error("cannot start the benchmark worker");
        abort();
    }
    return b;
}

void benchjob_free(struct benchjob *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    atomic_store(&b->stop, true);
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
    pthread_join(b->thread, NULL);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    free(b->uri);
    free(b->guest_dir);
    free(b->data_dir);
    free(b->controller);
    free(b->credential);
    free(b->ca_path);
    free(b->key_pin);
    free(b);
}

void benchjob_sync(struct benchjob *b, const json_t *doc)
{
    if (!json_object_get(doc, AGENT_BENCH))
        return;
    struct am_desired d;
    struct jerr je = { 0 };
    if (am_desired_decode(doc, &d, &je) < 0) {
        jerr_clear(&je); /* reported by the reconciler already */
        return;
    }
    pthread_mutex_lock(&b->lock);
    if (d.has_bench && !streq(d.bench.id, b->done) &&
        !(b->has_next && streq(d.bench.id, b->next.id))) {
        b->next = d.bench;
        b->has_next = true;
        pthread_cond_signal(&b->cond);
    }
    pthread_mutex_unlock(&b->lock);
    am_desired_clear(&d);
}
