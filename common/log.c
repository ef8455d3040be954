/* Levelled logging: one line per message with time, program and level,
 * to stderr or, under systemd, to the journal's native socket as
 * structured fields (what the line is about: request, node, VM). */
#include "common/log.h"

#include "common/buf.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>


static enum log_level cur_level = LOG_INFO;
static const char *cur_ident = "fog";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread char ctx[LOG_CTX_MAX][LOG_CTX_LEN];
/* The journal socket, or -1 for stderr; its address. */
static int journal_fd = -1;
static struct sockaddr_un journal_addr;

static const char *const ctx_text[LOG_CTX_MAX] = { "request", "node", "vm" };
static const char *const ctx_field[LOG_CTX_MAX] = { "REQUEST_ID", "NODE_ID",
                                                    "VM_ID" };
static const char *const level_names[LOG_LEVEL_MAX] = { "error", "warn",
                                                        "info", "debug" };
/* syslog priorities: err, warning, info, debug. */
static const char level_prio[LOG_LEVEL_MAX] = { '3', '4', '6', '7' };

void log_set_level(enum log_level level)
{
    __atomic_store_n(&cur_level, level, __ATOMIC_RELAXED);
}
void log_set_ident(const char *ident) { cur_ident = ident; }
bool log_enabled(enum log_level level)
{
    return level <= __atomic_load_n(&cur_level, __ATOMIC_RELAXED);
}

int log_level_parse(const char *name, enum log_level *ret)
{
    for (int i = 0; i < LOG_LEVEL_MAX; i++)
        if (name && streq(name, level_names[i])) {
            *ret = (enum log_level)i;
            return 0;
        }
    return -EINVAL;
}

void log_ctx_set(enum log_ctx field, const char *value)
{
    if (field >= LOG_CTX_MAX)
        return;
    snprintf(ctx[field], LOG_CTX_LEN, "%s", value ? value : "");
}

void log_ctx_clear(void)
{
    for (int i = 0; i < LOG_CTX_MAX; i++)
        ctx[i][0] = '\0';
}

void log_ctx_save(struct log_ctx_saved *out)
{
    memcpy(out->v, ctx, sizeof(out->v));
}

void log_ctx_restore(const struct log_ctx_saved *in)
{
    memcpy(ctx, in->v, sizeof(ctx));
}

void log_set_journal(const char *socket_path)
{
    pthread_mutex_lock(&log_lock);
    if (journal_fd >= 0)
        close(journal_fd);
    journal_fd = -1;
    if (socket_path && strlen(socket_path) < sizeof(journal_addr.sun_path)) {
        journal_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        memset(&journal_addr, 0, sizeof(journal_addr));
        journal_addr.sun_family = AF_UNIX;
        memcpy(journal_addr.sun_path, socket_path, strlen(socket_path));
    }
    pthread_mutex_unlock(&log_lock);
}

bool log_stderr_is_journal(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 ||
        fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev &&
           (unsigned long long)st.st_ino == ino;
}

/* Append KEY=value as one field of the native protocol: the binary form
 * (name, newline, little-endian 64-bit length, bytes) when the value
 * holds a newline. */
static void journal_field(struct buf *b, const char *key, const char *value)
{
    if (!strchr(value, '\n')) {
        buf_printf(b, "%s=%s\n", key, value);
        return;
    }
    uint64_t n = strlen(value);
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(n >> (8 * i));
    buf_printf(b, "%s\n", key);
    buf_append(b, le, sizeof(le));
    buf_append(b, value, (size_t)n);
    buf_puts(b, "\n");
}

/* One entry to the journal: 0, or -errno (the caller writes stderr). */
static int journal_send(enum log_level level, const char *msg)
{
    struct buf b = BUF_INIT;
    char prio[2] = { level_prio[level], '\0' };
    journal_field(&b, "PRIORITY", prio);
    journal_field(&b, "SYSLOG_IDENTIFIER", cur_ident);
    journal_field(&b, "MESSAGE", msg);
    for (int i = 0; i < LOG_CTX_MAX; i++)
        if (ctx[i][0])
            journal_field(&b, ctx_field[i], ctx[i]);
    ssize_t w = sendto(journal_fd, b.data, b.len, MSG_NOSIGNAL,
                       (struct sockaddr *)&journal_addr, sizeof(journal_addr));
    int r = w < 0 ? -errno : 0;
    buf_free(&b);
    return r;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    struct timespec ts;
    struct tm tm;
    char when[32];
    va_list ap;

    if (!log_enabled(level) || level >= LOG_LEVEL_MAX)
        return;
    va_start(ap, fmt);
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    const char *msg = text ? text : fmt;
    pthread_mutex_lock(&log_lock);
    if (journal_fd >= 0 && journal_send(level, msg) == 0) {
        pthread_mutex_unlock(&log_lock);
        free(text);
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ld %s %s: %s", when, ts.tv_nsec / 1000000,
            cur_ident, level_names[level], msg);
    bool open = false;
    for (int i = 0; i < LOG_CTX_MAX; i++)
        if (ctx[i][0]) {
            fprintf(stderr, "%s%s=%s", open ? " " : " [", ctx_text[i], ctx[i]);
            open = true;
        }
    fputs(open ? "]\n" : "\n", stderr);
    pthread_mutex_unlock(&log_lock);
    free(text);
}
