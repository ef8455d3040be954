/* The agent's Prometheus endpoint: figures recorded under one lock by the
 * main loop, rendered in the text exposition format (0.0.4) by
 * libmicrohttpd's thread on each scrape. */
#include "nodeagent/metrics.h"

#include "common/buf.h"
#include "common/log.h"
#include "common/promtext.h"
#include "common/timeutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <string.h>

struct agent_metrics {
    struct MHD_Daemon *daemon;
    int port;
    agent_metrics_mesh_fn mesh;
    void *mesh_data;

    pthread_mutex_t lock;
    json_t *vms;                /* state -> count */
    uint64_t passes;
    double pass_seconds_sum;
    double pass_seconds_last;
    int64_t last_contact_s;     /* 0: never */
    uint64_t pending;
    bool has_cache;
    struct fetch_stats cache;
    uint64_t cache_bytes;
};

char *agent_metrics_render(struct agent_metrics *m)
{
    struct buf b = BUF_INIT;
    pthread_mutex_lock(&m->lock);
    prom_family(&b, "fog_agent_vms", "gauge",
           "VMs of the desired state by the state this node reports.");
    const char *k;
    json_t *v;
    json_object_foreach(m->vms, k, v)
        buf_printf(&b, "fog_agent_vms{state=\"%s\"} %lld\n", k,
                   (long long)json_integer_value(v));
    prom_family(&b, "fog_agent_reconcile_passes_total", "counter",
           "Reconcile passes run.");
    buf_printf(&b, "fog_agent_reconcile_passes_total %llu\n",
               (unsigned long long)m->passes);
    prom_family(&b, "fog_agent_reconcile_seconds_total", "counter",
           "Time spent in reconcile passes.");
    buf_printf(&b, "fog_agent_reconcile_seconds_total %.6f\n",
               m->pass_seconds_sum);
    prom_family(&b, "fog_agent_reconcile_last_seconds", "gauge",
           "Duration of the last reconcile pass.");
    buf_printf(&b, "fog_agent_reconcile_last_seconds %.6f\n",
               m->pass_seconds_last);
    prom_family(&b, "fog_agent_last_contact_timestamp_seconds", "gauge",
           "When the controller last answered (0: never since start).");
    buf_printf(&b, "fog_agent_last_contact_timestamp_seconds %lld\n",
               (long long)m->last_contact_s);
    prom_family(&b, "fog_agent_pending_samples", "gauge",
           "Usage samples not yet acknowledged by the controller.");
    buf_printf(&b, "fog_agent_pending_samples %llu\n",
               (unsigned long long)m->pending);
    if (m->has_cache) {
        static const struct {
            const char *name, *help;
            size_t off;
        } c[] = {
            { "fog_agent_image_downloads_total", "Image transfers started.",
              offsetof(struct fetch_stats, downloads) },
            { "fog_agent_image_resumed_total",
              "Image transfers that continued a partial file.",
              offsetof(struct fetch_stats, resumed) },
            { "fog_agent_image_download_bytes_total",
              "Image bytes received.", offsetof(struct fetch_stats, bytes) },
            { "fog_agent_image_cache_hits_total",
              "Image requests answered from the cache.",
              offsetof(struct fetch_stats, hits) },
            { "fog_agent_image_cache_evictions_total",
              "Images evicted from the cache.",
              offsetof(struct fetch_stats, evicted) },
            { "fog_agent_image_digest_mismatches_total",
              "Downloads whose digest did not match.",
              offsetof(struct fetch_stats, mismatches) },
        };
        for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
            uint64_t x;
            memcpy(&x, (const char *)&m->cache + c[i].off, sizeof(x));
            prom_family(&b, c[i].name, "counter", c[i].help);
            buf_printf(&b, "%s %llu\n", c[i].name, (unsigned long long)x);
        }
        prom_family(&b, "fog_agent_image_cache_bytes", "gauge",
               "Bytes of complete images in the cache.");
        buf_printf(&b, "fog_agent_image_cache_bytes %llu\n",
                   (unsigned long long)m->cache_bytes);
    }
    pthread_mutex_unlock(&m->lock);

    size_t peers = 0;
    _cleanup_free_ int64_t *hs = NULL;
    if (m->mesh && m->mesh(m->mesh_data, &peers, &hs) == 0) {
        prom_family(&b, "fog_agent_mesh_peers", "gauge",
               "WireGuard peers configured on the mesh interface.");
        buf_printf(&b, "fog_agent_mesh_peers %zu\n", peers);
        /* Ages as a histogram-free summary: oldest and never. */
        int64_t now = now_s(), oldest = 0;
        size_t never = 0;
        for (size_t i = 0; i < peers; i++) {
            if (hs[i] <= 0)
                never++;
            else if (now - hs[i] > oldest)
                oldest = now - hs[i];
        }
        prom_family(&b, "fog_agent_mesh_peers_without_handshake", "gauge",
               "Mesh peers never handshaken with.");
        buf_printf(&b, "fog_agent_mesh_peers_without_handshake %zu\n", never);
        prom_family(&b, "fog_agent_mesh_handshake_age_max_seconds", "gauge",
               "Age of the oldest latest handshake among mesh peers.");
        buf_printf(&b, "fog_agent_mesh_handshake_age_max_seconds %lld\n",
                   (long long)oldest);
    }
    char *text = buf_steal(&b);
    return text ? text : xstrdup("");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_len, void **con_cls)
{
    struct agent_metrics *m = cls;
    struct MHD_Response *resp;
    unsigned code = MHD_HTTP_OK;
    if (!streq(method, "GET") && !streq(method, "HEAD")) {
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
        resp = MHD_create_response_from_buffer(0, (void *)"",
                                               MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(resp, "Allow", "GET, HEAD");
    } else if (!streq(url, "/metrics")) {
        static const char nf[] = "only /metrics is served here\n";
        code = MHD_HTTP_NOT_FOUND;
        resp = MHD_create_response_from_buffer(sizeof(nf) - 1, (void *)nf,
                                               MHD_RESPMEM_PERSISTENT);
    } else {
        char *text = agent_metrics_render(m);
        resp = MHD_create_response_from_buffer(strlen(text), text,
                                               MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(resp, "Content-Type",
                                "text/plain; version=0.0.4; charset=utf-8");
    }
    enum MHD_Result r = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return r;
}

struct agent_metrics *agent_metrics_start(const char *listen,
                                          agent_metrics_mesh_fn mesh,
                                          void *mesh_data)
{
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    int64_t port;
    struct sockaddr_in sin = { .sin_family = AF_INET };
    _cleanup_free_ char *host = colon ? xstrndup(listen, colon - listen) : NULL;
    if (!colon || parse_int64(colon + 1, 0, 65535, &port) < 0 ||
        inet_pton(AF_INET, host, &sin.sin_addr) != 1) {
        log_error("invalid --metrics-listen '%s' (want IPv4ADDR:PORT, e.g. "
                  "127.0.0.1:9310)", listen ? listen : "");
        return NULL;
    }
    sin.sin_port = htons((uint16_t)port);
    struct agent_metrics *m = xcalloc(1, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    m->vms = json_object();
    m->mesh = mesh;
    m->mesh_data = mesh_data;
    m->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_request, m, MHD_OPTION_SOCK_ADDR, &sin,
        MHD_OPTION_CONNECTION_LIMIT, 16, MHD_OPTION_CONNECTION_TIMEOUT, 10,
        MHD_OPTION_END);
    if (!m->daemon) {
        log_error("cannot serve metrics on '%s': %s", listen,
                  strerror(errno ? errno : EADDRINUSE));
        agent_metrics_free(m);
        return NULL;
    }
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    m->port = di ? di->port : (int)port;
    return m;
}

int agent_metrics_port(const struct agent_metrics *m) { return m->port; }

void agent_metrics_free(struct agent_metrics *m)
{
    if (!m)
        return;
    if (m->daemon)
        MHD_stop_daemon(m->daemon);
    json_decref(m->vms);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void agent_metrics_vms(struct agent_metrics *m, const json_t *by_state)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    json_decref(m->vms);
    m->vms = json_deep_copy(by_state);
    pthread_mutex_unlock(&m->lock);
}

void agent_metrics_reconcile(struct agent_metrics *m, int64_t ms)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->passes++;
    m->pass_seconds_last = (double)ms / 1000.0;
    m->pass_seconds_sum += m->pass_seconds_last;
    pthread_mutex_unlock(&m->lock);
}

void agent_metrics_contact(struct agent_metrics *m, int64_t when_s)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->last_contact_s = when_s;
    pthread_mutex_unlock(&m->lock);
}

void agent_metrics_pending(struct agent_metrics *m, size_t samples)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->pending = samples;
    pthread_mutex_unlock(&m->lock);
}

void agent_metrics_cache(struct agent_metrics *m, const struct fetch_stats *st,
                         uint64_t usage_bytes)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    m->has_cache = true;
    m->cache = *st;
    m->cache_bytes = usage_bytes;
    pthread_mutex_unlock(&m->lock);
}
